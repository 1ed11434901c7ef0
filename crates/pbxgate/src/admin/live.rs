//! The Live calls page (`/admin/live`): the channels as `listBridgedChannels`
//! and `listUnBridgedChannels` give them, the inbound calls call control
//! holds, with Accept / Refuse (what `acceptCall` / `refuseCall` do, decided
//! by `admin:<name>`) and Hang up (what `Hangup` does).
//!
//! The page follows a Server-Sent Events stream: a snapshot when it connects,
//! then a fresh one whenever the live call tracker publishes a channel change
//! (the Hub behind `/websockify`), the held calls change, or AMI / ARI go up
//! or down. Snapshots rather than deltas: the lists' grouping of channels
//! into calls needs bridge membership, which only `CoreShowChannels` tells.
//!
//! Endpoints: `GET /admin/api/live` (one snapshot), `GET
//! /admin/api/live/events` (the stream), `POST /admin/api/live/{accept,
//! refuse,hangup}` with `{"channel": name}` and the CSRF header.

use std::convert::Infallible;
use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{mpsc, watch};
use ucm::{Params, Status};

use super::login::current_session;
use super::page::{Admin, AdminApi, Page, json, json_error, secure_headers};
use crate::admin::App;
use crate::clock::now_ms;
use crate::error::ActionError;
use crate::sessions::Authenticated;

/// Held calls a standby looks up for the page (one ARI request each).
const HELD_LISTED: usize = 100;
/// Longest channel name accepted (as the channel actions).
const MAX_CHANNEL: usize = 256;
/// A burst of channel events (a call being set up) becomes one snapshot.
const SETTLE: Duration = Duration::from_millis(100);
/// How often an open stream checks that its session is still valid.
const SESSION_CHECK: Duration = Duration::from_secs(15);
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/live", get(show))
        .route("/admin/api/live", get(current))
        .route("/admin/api/live/events", get(events))
        .route("/admin/api/live/accept", post(accept))
        .route("/admin/api/live/refuse", post(refuse))
        .route("/admin/api/live/hangup", post(hangup))
}

async fn show(admin: Admin) -> Response {
    Page::new("Live calls")
        .session(&admin.session, "live")
        .scripts(&["common.js", "live.js"])
        .render(
            "<h2>Live calls</h2>\
             <noscript><p class=\"error\">This page needs JavaScript.</p></noscript>\
             <p id=\"live-state\" class=\"pill\" role=\"status\">Connecting…</p>\
             <p id=\"live-error\" class=\"error\" role=\"alert\" hidden></p>\
             <p id=\"live-notice\" class=\"success\" role=\"status\" hidden></p>\
             <p id=\"live-asterisk\" class=\"error\" hidden></p>\
             <section id=\"held-section\"><h3>Held inbound calls</h3>\
             <p id=\"held-note\" class=\"help\"></p>\
             <table id=\"held\"><thead><tr><th>Caller</th><th>DID</th><th>Trunk</th><th>Channel</th>\
             <th class=\"num\">Accepted automatically in</th><th>Decision</th></tr></thead><tbody></tbody></table>\
             <p id=\"held-empty\" class=\"muted\">No inbound call is held.</p></section>\
             <section><h3>Bridged calls</h3>\
             <table id=\"bridged\"><thead><tr><th>Caller</th><th>Channel</th><th>Callee</th><th>Channel</th>\
             <th>Bridged at</th><th class=\"num\">Duration</th></tr></thead><tbody></tbody></table>\
             <p id=\"bridged-empty\" class=\"muted\">No bridged call.</p></section>\
             <section><h3>Unbridged channels</h3>\
             <table id=\"unbridged\"><thead><tr><th>Channel</th><th>Caller</th><th>Connected to</th><th>State</th>\
             <th>Service</th><th>Since</th><th></th></tr></thead><tbody></tbody></table>\
             <p id=\"unbridged-empty\" class=\"muted\">No unbridged channel.</p></section>",
        )
}

// ---------------------------------------------------------------- snapshot

/// The channel lists ask nothing of the user; the lists are open to every API user.
fn list_user() -> Authenticated {
    Authenticated {
        username: "admin".into(),
        call_control: false,
        permissions: crate::permissions::Permissions::all(),
    }
}

/// The user a decision or a hang-up is made as: `admin:<name>`.
fn acting_user(admin: &AdminApi) -> Authenticated {
    Authenticated {
        username: format!("admin:{}", admin.session.username),
        call_control: true,
        permissions: crate::permissions::Permissions::all(),
    }
}

/// A channel list's items, or why there are none.
async fn list(app: &App, action: &str) -> Result<Value, String> {
    match crate::channels::dispatch(&app.channels, action, &Params::default(), &list_user()).await {
        Ok(v) => Ok(v.get("channel").cloned().unwrap_or_else(|| json!([]))),
        Err(ActionError::Internal(e)) => {
            tracing::error!(error = %e, "admin live calls: cannot list the channels");
            Err("internal error, see the pbxgate log".into())
        }
        Err(r) => Err(refusal_text(&r)),
    }
}

/// What the page shows: the channels, the held calls, the connections.
async fn snapshot(app: &App) -> Value {
    let ami = app.pbx.as_ref().map(|p| p.ami.state().borrow().clone());
    let ari = app
        .pbx
        .as_ref()
        .and_then(|p| p.ari.as_ref())
        .map(|a| a.state().borrow().clone());
    let (mut bridged, unbridged, error) = match &ami {
        None => (
            json!([]),
            json!([]),
            Some(
                "pbxgate has no connection to Asterisk configured ([asterisk] ami_secret)"
                    .to_owned(),
            ),
        ),
        Some(asterisk::ConnState::Up) => {
            let (b, u) = tokio::join!(
                list(app, "listBridgedChannels"),
                list(app, "listUnBridgedChannels")
            );
            match (b, u) {
                (Ok(b), Ok(u)) => (b, u, None),
                (Err(e), _) | (_, Err(e)) => (json!([]), json!([]), Some(e)),
            }
        }
        // Not asked while down: the answer is known, and each failed action is logged.
        Some(state) => (
            json!([]),
            json!([]),
            Some(format!(
                "Asterisk's AMI is {}: the channels cannot be listed",
                describe(state)
            )),
        ),
    };
    let now = now_ms();
    // How long each pair has been bridged: the list's time is PBX-local,
    // which the browser's clock and zone cannot be trusted to read.
    if let Value::Array(items) = &mut bridged {
        for item in items.iter_mut() {
            let at = item["bridge_time"]
                .as_str()
                .and_then(|t| super::status::local_time_ms(t, &app.settings.timezone));
            item["bridged_secs"] = json!(at.map(|t| (now - t).max(0) / 1000));
        }
    }
    let engine = app.calls.engine();
    let names: std::collections::HashMap<&str, &str> = unbridged
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| Some((i["channel"].as_str()?, i["callername"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    // A standby lists the owner's held calls through ARI's REST interface.
    let held_calls = match engine {
        Some(e) => e.held_calls_anywhere(HELD_LISTED).await,
        None => Vec::new(),
    };
    let held: Vec<Value> = held_calls
        .into_iter()
        .map(|h| {
            json!({
                "channel": h.channel,
                "caller": h.caller,
                "callername": names.get(h.channel.as_str()).copied().unwrap_or(""),
                "did": h.did,
                "trunk": crate::live::calls::channel_endpoint(&h.channel),
                "held_at_ms": h.held_at_ms,
                "remaining_ms": u64::try_from(h.remaining.as_millis()).unwrap_or(u64::MAX),
                "deciding": h.deciding,
            })
        })
        .collect();
    json!({
        "now_ms": now,
        "asterisk": {
            "configured": app.pbx.is_some(),
            "ami": crate::health::state_name(ami.as_ref()),
            "ari": crate::health::state_name(ari.as_ref()),
        },
        "error": error,
        "call_control": {
            "available": engine.is_some(),
            "enabled": engine.is_some_and(|e| e.enabled()),
        },
        "held": held,
        "bridged": bridged,
        "unbridged": unbridged,
    })
}

fn describe(state: &asterisk::ConnState) -> String {
    match state {
        asterisk::ConnState::Down(reason) => format!("down ({reason})"),
        other => crate::health::state_name(Some(other)).to_owned(),
    }
}

async fn current(State(app): State<App>, _admin: AdminApi) -> Response {
    json(snapshot(&app).await)
}

// ---------------------------------------------------------------- the stream

async fn events(State(app): State<App>, admin: AdminApi, headers: HeaderMap) -> Response {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(feed(app, headers, admin.ip, tx));
    let stream = crate::recordings::resolve::ChannelStream(rx);
    let mut resp = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    secure_headers(&mut resp);
    // Proxies must pass each event on at once.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

type Events = mpsc::Sender<Result<Event, Infallible>>;

/// Sends a snapshot now and after every change, until the page goes away,
/// its session ends (an `expired` event) or pbxgate stops.
async fn feed(app: App, headers: HeaderMap, ip: IpAddr, tx: Events) {
    let mut hub = app.live.subscribe();
    let mut held = app.calls.engine().map(|e| e.changes());
    let mut ami = app.pbx.as_ref().map(|p| p.ami.state());
    let mut ari = app
        .pbx
        .as_ref()
        .and_then(|p| p.ari.as_ref())
        .map(|a| a.state());
    let mut stopping = app.stopping.clone();
    let mut check =
        tokio::time::interval_at(tokio::time::Instant::now() + SESSION_CHECK, SESSION_CHECK);
    let mut first = true;
    let mut dirty = true;
    loop {
        if *stopping.borrow() {
            return;
        }
        if dirty {
            if !first {
                tokio::time::sleep(SETTLE).await;
                while let Ok(_) | Err(TryRecvError::Lagged(_)) = hub.try_recv() {}
                seen(&mut held);
                seen(&mut ami);
                seen(&mut ari);
            }
            first = false;
            dirty = false;
            let Ok(event) = Event::default()
                .event("snapshot")
                .json_data(snapshot(&app).await)
            else {
                return;
            };
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            r = stopping.changed() => if r.is_err() { return },
            n = hub.recv() => match n {
                Ok(n) => dirty = n.eventname == crate::live::ACTIVE_CALL_STATUS,
                Err(RecvError::Lagged(_)) => dirty = true,
                Err(RecvError::Closed) => return,
            },
            () = changed(&mut held) => dirty = true,
            () = changed(&mut ami) => dirty = true,
            () = changed(&mut ari) => dirty = true,
            _ = check.tick() => match current_session(&app, &headers, ip).await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let _ = tx.send(Ok(Event::default().event("expired").data("session ended"))).await;
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "admin live calls: cannot check the session; will retry"),
            },
        }
    }
}

/// Completes when the value changes; never when there is no value to watch.
async fn changed<T>(rx: &mut Option<watch::Receiver<T>>) {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return;
        }
        *rx = None;
    }
    std::future::pending().await
}

fn seen<T>(rx: &mut Option<watch::Receiver<T>>) {
    if let Some(r) = rx {
        r.borrow_and_update();
    }
}

// ---------------------------------------------------------------- actions

#[derive(Deserialize)]
struct ChannelBody {
    channel: String,
}

/// The channel named in the body, checked as the API checks it; else why not.
fn channel_of(body: Result<Json<ChannelBody>, JsonRejection>) -> Result<String, &'static str> {
    let Ok(Json(ChannelBody { channel })) = body else {
        return Err("expected a JSON body {\"channel\": \"<channel name>\"}");
    };
    if channel.is_empty()
        || channel.len() > MAX_CHANNEL
        || channel.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("not a channel name");
    }
    Ok(channel)
}

/// The parameters an API request with `channel` would carry.
fn params(action: &str, channel: &str) -> Params {
    let body = json!({"request": {"action": action, "channel": channel}}).to_string();
    ucm::parse_request(body.as_bytes())
        .map(|r| r.params)
        .unwrap_or_default()
}

async fn accept(
    State(app): State<App>,
    admin: AdminApi,
    body: Result<Json<ChannelBody>, JsonRejection>,
) -> Response {
    decide(app, admin, body, "acceptCall").await
}

async fn refuse(
    State(app): State<App>,
    admin: AdminApi,
    body: Result<Json<ChannelBody>, JsonRejection>,
) -> Response {
    decide(app, admin, body, "refuseCall").await
}

/// `acceptCall` / `refuseCall` as `admin:<name>`.
async fn decide(
    app: App,
    admin: AdminApi,
    body: Result<Json<ChannelBody>, JsonRejection>,
    action: &str,
) -> Response {
    let channel = match channel_of(body) {
        Ok(c) => c,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    if app.pbx.is_none() {
        return not_configured();
    }
    if app.calls.engine().is_none() {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "call control needs the connection to Asterisk's ARI (asterisk.ari_password)",
        );
    }
    let user = acting_user(&admin);
    let result =
        crate::callcontrol::api(&app.calls, action, &params(action, &channel), &user).await;
    let verb = if action == "refuseCall" {
        "refuse"
    } else {
        "accept"
    };
    done(&app, &admin, verb, &channel, result).await
}

/// `Hangup` as `admin:<name>`.
async fn hangup(
    State(app): State<App>,
    admin: AdminApi,
    body: Result<Json<ChannelBody>, JsonRejection>,
) -> Response {
    let channel = match channel_of(body) {
        Ok(c) => c,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    if app.pbx.is_none() {
        return not_configured();
    }
    let user = acting_user(&admin);
    let result =
        crate::channels::dispatch(&app.channels, "Hangup", &params("Hangup", &channel), &user)
            .await;
    done(&app, &admin, "hangup", &channel, result).await
}

fn not_configured() -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "pbxgate has no connection to Asterisk configured ([asterisk] ami_secret)",
    )
}

/// Records the action in the audit trail and answers the page.
async fn done(
    app: &App,
    admin: &AdminApi,
    verb: &str,
    channel: &str,
    result: Result<Value, ActionError>,
) -> Response {
    let (outcome, resp) = match result {
        Ok(_) => {
            tracing::info!(user = %admin.session.username, ip = %admin.ip, action = verb, channel, "admin call action");
            (
                "ok".to_owned(),
                json(json!({"ok": true, "channel": channel})),
            )
        }
        Err(r) => {
            let text = refusal_text(&r);
            let resp = refused(r);
            (format!("failed: {text}"), resp)
        }
    };
    use store::AuditStore;
    let e = store::AuditEvent {
        at_ms: now_ms(),
        event: store::AuditEventKind::AdminCall,
        username: admin.session.username.clone(),
        ip: admin.ip.to_string(),
        result: outcome.chars().take(200).collect(),
        detail: format!("{verb} {channel}"),
    };
    if let Err(err) = app.store.record_audit(&e).await {
        tracing::error!(user = %admin.session.username, error = %err, "cannot write the audit trail");
    }
    resp
}

fn refusal_text(r: &ActionError) -> String {
    match r {
        ActionError::Internal(_) => "internal error, see the pbxgate log".into(),
        other => {
            let (status, message) = other.answer();
            message.unwrap_or_else(|| status.message().to_owned())
        }
    }
}

/// A refusal as the page sees it: an HTTP status that says what kind of
/// failure it is, the message, and the UCM status the API would have given.
fn refused(r: ActionError) -> Response {
    let status = match &r {
        ActionError::Internal(e) => {
            tracing::error!(error = %e, "admin call action failed");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error, see the pbxgate log",
            );
        }
        other => other.answer(),
    };
    let (status, message) = status;
    let http = match status {
        Status::InvalidParameters | Status::InvalidValue => StatusCode::BAD_REQUEST,
        Status::NoSuchItem => StatusCode::NOT_FOUND,
        Status::DataModified => StatusCode::CONFLICT,
        Status::NoPermission => StatusCode::FORBIDDEN,
        Status::ConnectionClosed => StatusCode::SERVICE_UNAVAILABLE,
        Status::SystemTimeout => StatusCode::GATEWAY_TIMEOUT,
        // Asterisk refused or did not confirm.
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut resp = (
        http,
        Json(json!({"error": message.unwrap_or_else(|| status.message().to_owned()), "status": status.code()})),
    )
        .into_response();
    secure_headers(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_http_statuses_with_their_message() {
        let cases = [
            (Status::NoSuchItem, StatusCode::NOT_FOUND),
            (Status::DataModified, StatusCode::CONFLICT),
            (Status::ConnectionClosed, StatusCode::SERVICE_UNAVAILABLE),
            (Status::SystemTimeout, StatusCode::GATEWAY_TIMEOUT),
            (Status::InvalidValue, StatusCode::BAD_REQUEST),
            (Status::FailedToOperateData, StatusCode::BAD_GATEWAY),
        ];
        for (ucm, http) in cases {
            assert_eq!(
                refused(ActionError::Explained(ucm, "x".into())).status(),
                http
            );
        }
        assert_eq!(
            refusal_text(&ActionError::Status(Status::NoPermission)),
            Status::NoPermission.message()
        );
    }

    #[test]
    fn channel_names_are_checked_and_passed_as_api_parameters() {
        let body = |c: &str| Ok(Json(ChannelBody { channel: c.into() }));
        assert_eq!(
            channel_of(body("PJSIP/trunk-00000001")).ok().as_deref(),
            Some("PJSIP/trunk-00000001")
        );
        for bad in ["", "a b", "a\r\nAction: x", &"x".repeat(MAX_CHANNEL + 1)] {
            assert!(channel_of(body(bad)).is_err(), "{bad:?}");
        }
        let p = params("Hangup", "PJSIP/1000-00000002");
        assert_eq!(
            p.str("channel").ok().flatten().as_deref(),
            Some("PJSIP/1000-00000002")
        );
    }
}
