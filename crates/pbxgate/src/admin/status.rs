//! The Status page (`/admin/status`, the admin home page): Asterisk's AMI and
//! ARI connections, the database, the CDR ingest, call control, the latest
//! API requests and audit events, and the certificates in use. The page's
//! script reads `GET /admin/api/status` every few seconds.

use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use store::{AuditStore, CdrStore};

use super::page::{Admin, AdminApi, Page, json};
use crate::admin::App;
use crate::clock::now_ms;
use crate::health::{ConnRecord, state_name};
use crate::tls::CertInfo;

/// Audit events and API requests shown.
const LATEST: usize = 25;
/// A certificate that ends sooner than this is flagged.
pub const WARN_DAYS: i64 = 30;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/status", get(show))
        .route("/admin/api/status", get(current))
}

async fn show(admin: Admin) -> Response {
    Page::new("Status")
        .session(&admin.session, "status")
        .scripts(&["common.js", "status.js"])
        .render(
            "<h2>Status</h2>\
             <noscript><p class=\"error\">This page needs JavaScript.</p></noscript>\
             <p id=\"status-state\" class=\"muted\" role=\"status\">Loading…</p>\
             <p id=\"status-error\" class=\"error\" role=\"alert\" hidden></p>\
             <div id=\"status-cards\" class=\"status-cards\"></div>\
             <section><h3>Certificates</h3>\
             <table id=\"certs\"><thead><tr><th>Listener</th><th>Certificate</th><th>Source</th>\
             <th>Valid until</th><th class=\"num\">Days left</th></tr></thead><tbody></tbody></table></section>\
             <section><h3>Latest API requests</h3>\
             <p class=\"help\">The last requests to <code>/api</code> and to the old API, as the access log \
             records them (kept in memory: empty after a restart).</p>\
             <table id=\"requests\"><thead><tr><th>Time</th><th>API</th><th>Address</th><th>User</th>\
             <th>Action</th><th class=\"num\">Status</th><th class=\"num\">Took</th></tr></thead><tbody></tbody></table>\
             <p id=\"requests-empty\" class=\"muted\" hidden>No request since pbxgate started.</p></section>\
             <section><h3>Audit trail</h3>\
             <p class=\"help\">Logins (API, websocket, admin), logouts, settings changes and admin call actions.</p>\
             <table id=\"audit\"><thead><tr><th>Time</th><th>Event</th><th>User</th><th>Address</th>\
             <th>Result</th><th>Detail</th></tr></thead><tbody></tbody></table>\
             <p id=\"audit-empty\" class=\"muted\" hidden>The audit trail is empty.</p></section>",
        )
}

async fn current(State(app): State<App>, _admin: AdminApi) -> Response {
    json(status(&app).await)
}

/// `http://user:pw@host:8088/` without the user information.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

fn connection(
    target: Option<String>,
    state: Option<&asterisk::ConnState>,
    log: Option<ConnRecord>,
) -> Value {
    let log = log.unwrap_or_default();
    json!({
        "configured": state.is_some(),
        "target": target,
        "state": state_name(state),
        "up": state.is_some_and(asterisk::ConnState::is_up),
        "reason": match state {
            Some(asterisk::ConnState::Down(r)) => Some(r.as_str()),
            _ => None,
        },
        "since_ms": (log.since_ms > 0).then_some(log.since_ms),
        "last_error": log.last_error.map(|(at, message)| json!({"at_ms": at, "message": message})),
    })
}

fn asterisk(app: &App) -> Value {
    let Some(pbx) = &app.pbx else {
        return json!({
            "configured": false,
            "ami": connection(None, None, None),
            "ari": connection(None, None, None),
        });
    };
    let settings = app.settings.asterisk.as_ref();
    let ami = pbx.ami.state().borrow().clone();
    let ari = pbx.ari.as_ref().map(|a| a.state().borrow().clone());
    json!({
        "configured": true,
        "ami": connection(
            settings.map(|a| a.ami_address.clone()),
            Some(&ami),
            Some(pbx.ami_log.get()),
        ),
        "ari": connection(
            settings.and_then(|a| a.ari.as_ref()).map(|a| without_userinfo(&a.url)),
            ari.as_ref(),
            pbx.ari_log.as_ref().map(crate::health::ConnLog::get),
        ),
    })
}

async fn database(app: &App) -> Value {
    let started = Instant::now();
    let ping = app.store.ping().await;
    let latency = started.elapsed().as_secs_f64() * 1000.0;
    json!({
        "backend": app.store.backend().name(),
        "reachable": ping.is_ok(),
        "latency_ms": (latency * 100.0).round() / 100.0,
        "error": ping.err().map(|e| e.to_string()),
    })
}

/// A CDR or channel list time (`YYYY-MM-DD HH:MM:SS` in the PBX time zone) in Unix ms.
pub(super) fn local_time_ms(text: &str, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let dt = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", text).ok()?;
    let zoned = tz.to_ambiguous_zoned_datetime(dt).compatible().ok()?;
    Some(zoned.timestamp().as_millisecond())
}

async fn ingest(app: &App, now: i64) -> Value {
    let newest = match app.store.recent_cdrs(1).await {
        Ok(records) => records.into_iter().next().map(|r| {
            let end = r.get("end");
            let end = if end.is_empty() { r.get("start") } else { end };
            let at = local_time_ms(end, &app.settings.timezone);
            json!({
                "acctid": r.get("AcctId"),
                "src": r.get("src"),
                "dst": r.get("dst"),
                "end": end,
                "end_ms": at,
                "age_secs": at.map(|t| (now - t).max(0) / 1000),
            })
        }),
        Err(e) => {
            tracing::warn!(error = %e, "admin status: cannot read the newest CDR");
            None
        }
    };
    let stats = app.pbx.as_ref().map(|p| p.ingest_stats.clone());
    json!({
        "running": app.pbx.is_some(),
        "csv_recovery": app.settings.asterisk.as_ref().and_then(|a| a.cdr_csv.as_ref()).map(|p| p.display().to_string()),
        "newest_cdr": newest,
        "backlog": stats.as_ref().map(|s| s.pending()),
        "last_stored_ms": stats.as_ref().and_then(|s| s.last_stored_ms()),
        "last_error": stats.as_ref().and_then(|s| s.last_error()).map(|(at, message)| json!({"at_ms": at, "message": message})),
    })
}

/// Days left from `now` (Unix seconds) to `not_after`, rounded down.
fn days_left(not_after: i64, now: i64) -> i64 {
    (not_after - now).div_euclid(86_400)
}

fn certificate(listener: &str, address: String, cert: Option<CertInfo>, now: i64) -> Value {
    let Some(cert) = cert else {
        return json!({"listener": listener, "address": address, "enabled": false});
    };
    let (not_after, error) = match &cert.validity {
        Ok((_, not_after)) => (Some(*not_after), None),
        Err(e) => (None, Some(e.clone())),
    };
    let days = not_after.map(|t| days_left(t, now));
    json!({
        "listener": listener,
        "address": address,
        "enabled": true,
        "path": cert.path.display().to_string(),
        "source": if cert.generated { "generated" } else { "configured" },
        "not_after_ms": not_after.map(|t| t.saturating_mul(1000)),
        "days_left": days,
        "expired": not_after.is_some_and(|t| t <= now),
        "warning": days.is_none_or(|d| d < WARN_DAYS),
        "error": error,
    })
}

async fn status(app: &App) -> Value {
    let now = now_ms();
    let (database, ingest, audit) = tokio::join!(
        database(app),
        ingest(app, now),
        app.store
            .recent_audit(i64::try_from(LATEST).unwrap_or(i64::MAX))
    );
    let audit: Vec<Value> = match audit {
        Ok(events) => events
            .into_iter()
            .map(|e| {
                json!({
                    "at_ms": e.at_ms, "event": e.event.as_str(), "username": e.username,
                    "ip": e.ip, "result": e.result, "detail": e.detail,
                })
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "admin status: cannot read the audit trail");
            Vec::new()
        }
    };
    let engine = app.calls.engine();
    let secs = now / 1000;
    json!({
        "now_ms": now,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": app.started.elapsed().as_secs(),
        "asterisk": asterisk(app),
        "database": database,
        "ingest": ingest,
        "call_control": {
            "available": engine.is_some(),
            "enabled": engine.is_some_and(|e| e.enabled()),
            "held": engine.map(|e| e.held()),
        },
        "certificates": [
            certificate("web", app.settings.listen.to_string(), app.certs.web(), secs),
            match app.certs.old_api() {
                Some((bind, cert)) => certificate("old API", bind.to_string(), Some(cert), secs),
                None => certificate("old API", String::new(), None, secs),
            },
        ],
        "cdr_output": {
            "enabled": app.settings.cdr_output.enabled,
            "receivers": app.outbox.status().iter().map(|r| r.json()).collect::<Vec<_>>(),
        },
        "cluster": match &app.pbx {
            Some(p) => p.member.status().await,
            None => Value::Null,
        },
        "requests": crate::recent::latest(LATEST),
        "audit": audit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_is_left_out_of_urls() {
        assert_eq!(
            without_userinfo("http://u:p@127.0.0.1:8088/ari"),
            "http://127.0.0.1:8088/ari"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:8088/a@b"),
            "http://127.0.0.1:8088/a@b"
        );
        assert_eq!(without_userinfo("host:1"), "host:1");
    }

    #[test]
    fn certificates_ending_within_thirty_days_are_flagged() {
        let now = 1_800_000_000;
        let cert = |validity| CertInfo {
            path: "/x/cert.pem".into(),
            generated: false,
            validity,
        };
        let v = certificate(
            "web",
            "a".into(),
            Some(cert(Ok((0, now + 29 * 86_400 + 5)))),
            now,
        );
        assert_eq!(
            (v["days_left"].as_i64(), v["warning"].as_bool()),
            (Some(29), Some(true))
        );
        assert_eq!(v["source"], "configured");
        let v = certificate(
            "web",
            "a".into(),
            Some(cert(Ok((0, now + 31 * 86_400)))),
            now,
        );
        assert_eq!(
            (v["days_left"].as_i64(), v["warning"].as_bool()),
            (Some(31), Some(false))
        );
        let v = certificate("web", "a".into(), Some(cert(Ok((0, now - 10)))), now);
        assert_eq!(
            (v["days_left"].as_i64(), v["expired"].as_bool()),
            (Some(-1), Some(true))
        );
        let v = certificate("web", "a".into(), Some(cert(Err("gone".into()))), now);
        assert_eq!(
            (v["warning"].as_bool(), v["error"].as_str()),
            (Some(true), Some("gone"))
        );
        let v = certificate("old API", "b".into(), None, now);
        assert_eq!(v["enabled"], false);
    }

    #[test]
    fn cdr_times_are_read_in_the_pbx_time_zone() {
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap_or(jiff::tz::TimeZone::UTC);
        assert_eq!(
            local_time_ms("2026-01-05 10:00:00", &tz),
            Some(1_767_603_600_000)
        );
        assert_eq!(local_time_ms("", &tz), None);
    }
}
