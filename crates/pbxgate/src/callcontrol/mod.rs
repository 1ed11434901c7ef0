//! Inbound calls reach pbxgate's Stasis application (dialplan
//! `pbxgate-inbound`). Until third-party call control is built, every call is
//! accepted at once: holding the ARI application must never hold a call.

use asterisk::ari::{Ari, Event};
use tokio::sync::broadcast::error::RecvError;

pub fn start(ari: &Ari) {
    let ari = ari.clone();
    let mut events = ari.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    // Only the dialplan's Stasis(<app>,inbound,...) is an
                    // inbound call; other channels of the application (the
                    // hold music of `channels`) are not ours to move.
                    if let Event::StasisStart { channel, args } = &*e
                        && args.first().map(String::as_str) == Some("inbound")
                    {
                        tracing::info!(
                            channel = channel.name,
                            caller = channel.caller.number,
                            ?args,
                            "inbound call accepted"
                        );
                        if let Err(err) = ari.continue_in_dialplan(&channel.id).await {
                            tracing::warn!(channel = channel.name, error = %err, "cannot let the call continue");
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => tracing::warn!(missed = n, "ARI events missed"),
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// `acceptCall` / `refuseCall`.
pub async fn api(
    _app: &crate::server::App,
    _action: &str,
    _params: &ucm::Params,
    _user: &crate::auth::Authenticated,
) -> Result<serde_json::Value, crate::auth::Refusal> {
    Err(crate::auth::Refusal::Status(ucm::Status::Unsupported))
}
