//! The channel actions of `/api` (spec §3.4): lists of live channels,
//! hang-up, click-to-call, transfers, mute, hold and barge, done over AMI.

use serde_json::Value;
use ucm::{Params, Status};

use crate::auth::{Authenticated, Refusal};
use crate::server::App;

/// The action names this module answers (case-sensitive, as on a UCM).
pub const ACTIONS: &[&str] = &[
    "listBridgedChannels",
    "listUnBridgedChannels",
    "Hangup",
    "dialExtension",
    "dialOutbound",
    "callTransfer",
    "transferNumberInbound",
    "transferNumberOutbound",
    "mute",
    "unmute",
    "hold",
    "unhold",
    "callbarge",
    "dialIVR",
    "dialQueue",
    "dialRinggroup",
];

pub async fn dispatch(
    _app: &App,
    _action: &str,
    _params: &Params,
    _user: &Authenticated,
) -> Result<Value, Refusal> {
    Err(Refusal::Status(Status::Unsupported))
}
