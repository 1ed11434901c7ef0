//! The latest requests to both APIs, kept in memory for the admin Status
//! page. API requests are not written to the audit trail (only logins are):
//! this is a copy of the access log's last lines, taken by a `tracing` layer
//! from the events of target `pbxgate::access` (whatever `log.level` shows),
//! so it says exactly what the access log says. Lost at restart.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::sync::Mutex;

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::filter::{FilterFn, LevelFilter, filter_fn};
use tracing_subscriber::layer::{Context, Layer};

/// The access log's target.
pub const TARGET: &str = "pbxgate::access";
/// How many requests are kept.
pub const KEPT: usize = 200;

/// One access-log line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Request {
    pub at_ms: i64,
    /// `new` (`/api`) or `old` (the old API's listener).
    pub api: &'static str,
    pub ip: String,
    pub user: String,
    /// The action (`/api`), or method and path (old API).
    pub action: String,
    /// The UCM status (`/api`) or the HTTP status (old API).
    pub status: i64,
    /// Microseconds taken.
    pub us: u64,
}

static RING: Mutex<VecDeque<Request>> = Mutex::new(VecDeque::new());

fn push(r: Request) {
    if let Ok(mut ring) = RING.lock() {
        if ring.len() >= KEPT {
            ring.pop_front();
        }
        ring.push_back(r);
    }
}

/// The newest `limit` requests, newest first.
pub fn latest(limit: usize) -> Vec<Request> {
    RING.lock()
        .map(|ring| ring.iter().rev().take(limit).cloned().collect())
        .unwrap_or_default()
}

/// The layer to install beside the log's own (it has its own filter).
pub fn layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    Recorder.with_filter(access_only())
}

fn access_only() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(|m| m.target() == TARGET).with_max_level_hint(LevelFilter::INFO)
}

struct Recorder;

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let mut v = Fields::default();
        event.record(&mut v);
        push(v.into_request(crate::clock::now_ms()));
    }
}

#[derive(Default)]
struct Fields {
    old: bool,
    ip: String,
    user: String,
    action: String,
    method: String,
    path: String,
    status: i64,
    us: u64,
}

impl Fields {
    fn into_request(self, at_ms: i64) -> Request {
        Request {
            at_ms,
            api: if self.old { "old" } else { "new" },
            ip: self.ip,
            user: self.user,
            action: if self.old {
                format!("{} {}", self.method, self.path)
            } else {
                self.action
            },
            status: self.status,
            us: self.us,
        }
    }

    fn set(&mut self, field: &Field, value: String) {
        match field.name() {
            "api" => self.old = value == "old",
            "ip" => self.ip = value,
            "user" => self.user = value,
            "action" => self.action = value,
            "method" => self.method = value,
            "path" => self.path = value,
            _ => {}
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        // `%value` fields arrive here, formatted with Display.
        self.set(field, format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field, value.to_owned());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "status" => self.status = value,
            "us" => self.us = u64::try_from(value).unwrap_or(0),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "status" => self.status = i64::try_from(value).unwrap_or(i64::MAX),
            "us" => self.us = value,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn access_log_events_are_kept_newest_first_and_others_are_not() {
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: TARGET, ip = %"10.0.0.1", user = %"crm", action = %"getSystemStatus", status = 0, us = 12u64);
            tracing::info!(target: TARGET, api = "old", ip = %"10.0.0.2", user = %"cdrapi", method = %"GET", path = %"/cdrapi", status = 401u16, us = 5u64);
            tracing::info!(target: "pbxgate::other", ip = %"10.0.0.3", "not a request");
        });
        let two = latest(2);
        assert_eq!(
            (two[0].api, two[0].ip.as_str(), two[0].user.as_str()),
            ("old", "10.0.0.2", "cdrapi")
        );
        assert_eq!(
            (two[0].action.as_str(), two[0].status),
            ("GET /cdrapi", 401)
        );
        assert_eq!(
            (two[1].api, two[1].action.as_str(), two[1].status, two[1].us),
            ("new", "getSystemStatus", 0, 12)
        );
        assert!(two[0].at_ms >= two[1].at_ms && two[1].at_ms > 0);

        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..KEPT {
                tracing::info!(target: TARGET, ip = %"10.0.0.4", user = %"u", action = %format!("a{i}"), status = -6, us = 1u64);
            }
        });
        let all = latest(KEPT + 10);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].action, format!("a{}", KEPT - 1));
        assert_eq!(all[0].status, -6);
        // The first ones were pushed out; the other target never came in.
        assert!(all.iter().all(|r| r.ip == "10.0.0.4"));

        // With the access log switched off in log.level, requests are still kept.
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::EnvFilter::new(
                "info,pbxgate::access=off",
            ));
        let subscriber = tracing_subscriber::registry().with(layer()).with(log);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: TARGET, ip = %"10.0.0.5", user = %"u", action = %"quiet", status = 0, us = 1u64);
        });
        assert_eq!(latest(1)[0].action, "quiet");
    }
}
