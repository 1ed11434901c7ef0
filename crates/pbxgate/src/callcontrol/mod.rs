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

use crate::error::ActionError;
use crate::sessions::Authenticated;

/// How long `acceptCall` waits for a channel that is not held yet: a client
/// that reacts to the channel's `add` event faster than the call reaches
/// `Stasis()` gets its decision applied when it does.
const EARLY_DECISION_WAIT: Duration = Duration::from_millis(500);

/// Starts the engine on the ARI connection; `enabled` when the API is on
/// and some API user has call control (the API settings in force decide).
pub fn start(
    member: &crate::cluster::Membership,
    settings: &crate::config::CallControlSettings,
    ari: &Arc<dyn asterisk::pbx::Stasis>,
    ami: &Arc<dyn asterisk::pbx::Manager>,
    store: &store::Store,
    enabled: bool,
) -> Arc<Engine> {
    if enabled {
        tracing::info!(
            timeout_ms = u64::try_from(settings.timeout.as_millis()).unwrap_or(0),
            "call control on: inbound calls wait for acceptCall/refuseCall"
        );
    }
    Engine::start_as(
        member.clone(),
        ari.clone(),
        ami.clone(),
        Arc::new(store.clone()),
        settings.clone(),
        enabled,
    )
}

impl crate::apiconfig::CallControlSwitch for Engine {
    fn enabled(&self) -> bool {
        Engine::enabled(self)
    }

    fn set_enabled(&self, enabled: bool) {
        Engine::set_enabled(self, enabled);
    }
}

/// What `acceptCall` / `refuseCall` need: the engine of the PBX they act on
/// (none without ARI).
#[derive(Clone, Default)]
pub struct CallControl {
    engine: Option<Arc<Engine>>,
}

impl CallControl {
    pub fn new(engine: Option<Arc<Engine>>) -> CallControl {
        CallControl { engine }
    }

    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }
}

/// `acceptCall` / `refuseCall` {channel}.
pub async fn api(
    calls: &CallControl,
    action: &str,
    params: &Params,
    user: &Authenticated,
) -> Result<Value, ActionError> {
    if !user.call_control {
        return Err(ActionError::Status(Status::NoPermission));
    }
    let channel = match params.str("channel") {
        Ok(Some(c)) if !c.is_empty() && c.len() <= 256 => c,
        _ => return Err(ActionError::Status(Status::InvalidParameters)),
    };
    let Some(engine) = calls.engine.clone() else {
        return Err(ActionError::Explained(
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
        match engine.decide_any(&channel, decision, by.clone()).await {
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
fn refusal(channel: &str, e: DecideError) -> ActionError {
    let printable: String = channel
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    match e {
        DecideError::Unknown => ActionError::Explained(
            Status::NoSuchItem,
            format!("no inbound call is held on channel {printable}"),
        ),
        DecideError::AlreadyDecided(o) => ActionError::Explained(
            Status::DataModified,
            format!("the call on {printable} was already {}", o.describe()),
        ),
        DecideError::InProgress => ActionError::Explained(
            Status::DataModified,
            format!("a decision for {printable} is being applied"),
        ),
        DecideError::Gone => ActionError::Explained(
            Status::DataModified,
            format!("the call on {printable} ended before the decision reached it"),
        ),
        DecideError::Failed(e) => ActionError::Explained(
            Status::AbnormalSystemError,
            format!("Asterisk did not confirm: {e}"),
        ),
        DecideError::Store(e) => ActionError::Explained(
            Status::AbnormalSystemError,
            format!("the decision could not be recorded in the database: {e}"),
        ),
        // Only while the ownership changes hands: the caller may retry.
        DecideError::NotOwner => ActionError::Explained(
            Status::AbnormalSystemError,
            "the node holding this call changed; try again".into(),
        ),
    }
}
