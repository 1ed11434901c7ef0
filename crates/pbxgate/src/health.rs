//! `GET /healthz` (no authentication): database, AMI and ARI state. HTTP 200
//! while pbxgate can serve stored data (database up), 503 otherwise; Asterisk
//! being down makes it "degraded", not unhealthy.

use asterisk::ConnState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::server::App;

fn describe(state: Option<ConnState>) -> String {
    match state {
        None => "disabled".into(),
        Some(ConnState::Up) => "up".into(),
        Some(ConnState::Connecting) => "connecting".into(),
        Some(ConnState::Down(reason)) => format!("down: {reason}"),
        Some(ConnState::Stopped) => "stopped".into(),
    }
}

pub async fn healthz(State(app): State<App>) -> (StatusCode, Json<Value>) {
    let db = app.store.ping().await;
    let ami = app.pbx.as_ref().map(|p| p.ami.state().borrow().clone());
    let ari = app
        .pbx
        .as_ref()
        .and_then(|p| p.ari.as_ref())
        .map(|a| a.state().borrow().clone());
    let asterisk_ok =
        ami.as_ref().is_none_or(ConnState::is_up) && ari.as_ref().is_none_or(ConnState::is_up);
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
            "held_calls": app.pbx.as_ref().and_then(|p| p.calls.as_ref()).map(|c| c.held()),
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
}
