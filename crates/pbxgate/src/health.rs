//! `GET /healthz` (no authentication): database, AMI and ARI state. HTTP 200
//! while pbxgate can serve stored data (database up), 503 otherwise; Asterisk
//! being down makes it "degraded", not unhealthy.

use asterisk::ConnState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

/// What `/healthz` needs, built once at start-up.
pub struct Health {
    pub store: store::Store,
    /// The state of AMI and ARI (when configured).
    pub ami: Option<tokio::sync::watch::Receiver<ConnState>>,
    pub ari: Option<tokio::sync::watch::Receiver<ConnState>>,
    pub calls: crate::callcontrol::CallControl,
    pub outbox: std::sync::Arc<crate::outbox::Outbox>,
    /// This node among the nodes serving the Asterisk.
    pub member: Option<crate::cluster::Membership>,
}

fn describe(state: Option<ConnState>) -> String {
    match state {
        None => "disabled".into(),
        Some(ConnState::Up) => "up".into(),
        Some(ConnState::Connecting) => "connecting".into(),
        Some(ConnState::Down(reason)) => format!("down: {reason}"),
        Some(ConnState::Standby) => "standby (another node owns this Asterisk)".into(),
        Some(ConnState::Stopped) => "stopped".into(),
    }
}

pub async fn healthz(State(app): State<std::sync::Arc<Health>>) -> (StatusCode, Json<Value>) {
    let db = app.store.ping().await;
    let ami = app.ami.as_ref().map(|s| s.borrow().clone());
    let ari = app.ari.as_ref().map(|s| s.borrow().clone());
    // A standby node holds no ARI application on purpose.
    let asterisk_ok = ami.as_ref().is_none_or(ConnState::is_up)
        && ari
            .as_ref()
            .is_none_or(|s| s.is_up() || *s == ConnState::Standby);
    let status = match (&db, asterisk_ok) {
        (Err(_), _) => "unhealthy",
        (Ok(()), false) => "degraded",
        (Ok(()), true) => "ok",
    };
    let code = if db.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({
            "status": status,
            "database": match &db { Ok(()) => "up".to_owned(), Err(e) => format!("down: {e}") },
            "ami": describe(ami),
            "ari": describe(ari),
            "held_calls": app.calls.engine().map(|c| c.held()),
            "cdr_output": app.outbox.status().iter().map(|r| r.json()).collect::<Vec<_>>(),
            "cluster": match &app.member {
                Some(m) => m.status().await,
                None => Value::Null,
            },
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
}

/// When a connection to Asterisk last came up or went down, and its last
/// failure: what the state itself does not keep (admin Status page).
#[derive(Clone, Default)]
pub struct ConnLog(std::sync::Arc<std::sync::Mutex<ConnRecord>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnRecord {
    pub up: bool,
    /// Since when it has been up, or not up (Unix ms); 0 before the first state.
    pub since_ms: i64,
    /// The last failure: when (Unix ms) and why.
    pub last_error: Option<(i64, String)>,
}

impl ConnRecord {
    fn observe(&mut self, state: &ConnState, now_ms: i64) {
        let up = state.is_up();
        if self.since_ms == 0 || up != self.up {
            self.up = up;
            self.since_ms = now_ms;
        }
        if let ConnState::Down(reason) = state {
            self.last_error = Some((now_ms, reason.clone()));
        }
    }
}

impl ConnLog {
    /// Follows `state` until its connection is dropped.
    pub fn follow(mut state: tokio::sync::watch::Receiver<ConnState>) -> ConnLog {
        let log = ConnLog::default();
        let record = log.0.clone();
        tokio::spawn(async move {
            loop {
                let now = state.borrow_and_update().clone();
                if let Ok(mut r) = record.lock() {
                    r.observe(&now, crate::clock::now_ms());
                }
                if state.changed().await.is_err() {
                    return;
                }
            }
        });
        log
    }

    pub fn get(&self) -> ConnRecord {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// How `/healthz` and the admin Status page name a state.
pub fn state_name(state: Option<&ConnState>) -> &'static str {
    match state {
        None => "disabled",
        Some(ConnState::Up) => "up",
        Some(ConnState::Connecting) => "connecting",
        Some(ConnState::Down(_)) => "down",
        Some(ConnState::Standby) => "standby",
        Some(ConnState::Stopped) => "stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_keeps_when_the_connection_changed_and_its_last_failure() {
        let mut r = ConnRecord::default();
        r.observe(&ConnState::Connecting, 10);
        assert_eq!((r.up, r.since_ms, r.last_error.clone()), (false, 10, None));
        r.observe(&ConnState::Down("refused".into()), 20);
        // Still not up: the outage started at 10.
        assert_eq!(r.since_ms, 10);
        assert_eq!(r.last_error, Some((20, "refused".into())));
        r.observe(&ConnState::Up, 30);
        assert_eq!((r.up, r.since_ms), (true, 30));
        // The last failure stays known once up again.
        assert_eq!(r.last_error, Some((20, "refused".into())));
        r.observe(&ConnState::Up, 40);
        assert_eq!(r.since_ms, 30);
        assert_eq!(state_name(None), "disabled");
        assert_eq!(state_name(Some(&ConnState::Down("x".into()))), "down");
    }
}
