//! Inbound call control. Inbound trunk calls enter pbxgate's Stasis
//! application (dialplan `pbxgate-inbound`); with call control on for an API
//! user, each is held (ringing) until `acceptCall` / `refuseCall` or the
//! timeout (accept). With call control off they go on at once.
//!
//! A call is never stuck: the dialplan sets an absolute timeout before
//! `Stasis()` (pbxgate moves it to its own timeout plus a grace) and its `T`
//! extension lets the call go on when pbxgate has gone away; calls arriving
//! while no pbxgate is connected fail `Stasis()` at once and go on; on
//! (re)connection pbxgate takes over the calls still held in the application.

mod engine;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ucm::{Params, Status};

pub use engine::{By, DecideError, Decided, Decision, Engine, HeldCall, Outcome};

use crate::auth::{Authenticated, Refusal};
use crate::server::App;

/// How long `acceptCall` waits for a channel that is not held yet: a client
/// that reacts to the channel's `add` event faster than the call reaches
/// `Stasis()` gets its decision applied when it does.
const EARLY_DECISION_WAIT: Duration = Duration::from_millis(500);

/// Starts the engine on the ARI connection.
pub fn start(
    app_settings: &crate::config::Settings,
    ari: &asterisk::ari::Ari,
    ami: &asterisk::ami::Ami,
    store: &store::Store,
) -> Arc<Engine> {
    let enabled = app_settings.api_enabled && app_settings.users.iter().any(|u| u.call_control);
    if enabled {
        tracing::info!(
            timeout_ms = u64::try_from(app_settings.call_control.timeout.as_millis()).unwrap_or(0),
            "call control on: inbound calls wait for acceptCall/refuseCall"
        );
    }
    Engine::start(
        Arc::new(ari.clone()),
        Arc::new(ami.clone()),
        Arc::new(store.clone()),
        app_settings.call_control.clone(),
        enabled,
    )
}

/// `acceptCall` / `refuseCall` {channel}.
pub async fn api(
    app: &App,
    action: &str,
    params: &Params,
    user: &Authenticated,
) -> Result<Value, Refusal> {
    if !user.call_control {
        return Err(Refusal::Status(Status::NoPermission));
    }
    let channel = match params.str("channel") {
        Ok(Some(c)) if !c.is_empty() && c.len() <= 256 => c,
        _ => return Err(Refusal::Status(Status::InvalidParameters)),
    };
    let Some(engine) = app.pbx.as_ref().and_then(|p| p.calls.clone()) else {
        return Err(Refusal::Explained(
            Status::AbnormalSystemError,
            "call control needs the connection to Asterisk's ARI (asterisk.ari_password)".into(),
        ));
    };
    let decision = if action == "refuseCall" {
        Decision::Refuse
    } else {
        Decision::Accept
    };
    let by = By::User(user.username.clone());
    let started = Instant::now();
    let result = loop {
        match engine.decide(&channel, decision, by.clone()).await {
            Err(DecideError::Unknown) if started.elapsed() < EARLY_DECISION_WAIT => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other,
        }
    };
    match result {
        Ok(_) => Ok(json!({})),
        Err(e) => Err(refusal(&channel, e)),
    }
}

/// The one place where call-control errors become UCM statuses.
fn refusal(channel: &str, e: DecideError) -> Refusal {
    let printable: String = channel
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    match e {
        DecideError::Unknown => Refusal::Explained(
            Status::NoSuchItem,
            format!("no inbound call is held on channel {printable}"),
        ),
        DecideError::AlreadyDecided(o) => Refusal::Explained(
            Status::DataModified,
            format!("the call on {printable} was already {}", o.describe()),
        ),
        DecideError::InProgress => Refusal::Explained(
            Status::DataModified,
            format!("a decision for {printable} is being applied"),
        ),
        DecideError::Gone => Refusal::Explained(
            Status::DataModified,
            format!("the call on {printable} ended before the decision reached it"),
        ),
        DecideError::Failed(e) => Refusal::Explained(
            Status::AbnormalSystemError,
            format!("Asterisk did not confirm: {e}"),
        ),
    }
}
