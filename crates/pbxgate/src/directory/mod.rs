//! The PBX directory and status actions of `/api` (spec §3.1–3.3): accounts,
//! trunks, queues, groups and routes, read from the real Asterisk over AMI
//! (and the contrib dialplan for what Asterisk has no object for), with the
//! list conventions of §2.5 (`crate::listing`).
//!
//! - `accounts`: `listAccount`, `getSIPAccount` (PJSIP endpoints, contacts,
//!   device states, mailboxes).
//! - `trunks`: `listVoIPTrunk`, `getSIPTrunk` (registrations),
//!   `listAnalogTrunk`, `listDigitalTrunk` (empty: no such hardware).
//! - `groups`: `listQueue`, `getQueue`, `listRingGroup`,
//!   `listExtensionGroup`, `listDepartment`.
//! - `routes`: `listInboundRoute`, `listOutboundRoute`.
//! - `contrib`: what `groups` and `routes` read (AMI, and the operator's
//!   `pbxgate_directory.conf` through AMI `GetConfig`), and their statuses.
//!
//! The configuration family's write actions (`addSIPAccount`, …) are answered
//! `-19` with a message: Asterisk's configuration lives in its files.

mod accounts;
mod contrib;
mod groups;
mod routes;
mod trunks;

use serde_json::Value;
use ucm::{Params, Status};

use crate::auth::{Authenticated, Refusal};
use crate::server::App;

/// The read actions this module answers (case-sensitive, as on a UCM).
pub const ACTIONS: &[&str] = &[
    "listAccount",
    "getSIPAccount",
    "listVoIPTrunk",
    "getSIPTrunk",
    "listAnalogTrunk",
    "listDigitalTrunk",
    "listQueue",
    "getQueue",
    "listRingGroup",
    "listExtensionGroup",
    "listDepartment",
    "listInboundRoute",
    "listOutboundRoute",
];

/// UCM configuration actions pbxgate does not perform: answered -19.
pub const UNSUPPORTED: &[&str] = &[
    "applyChanges",
    "addSIPAccount",
    "updateSIPAccount",
    "deleteSIPAccount",
    "listUser",
    "getUser",
    "updateUser",
    "listPinSets",
    "addSIPTrunk",
    "updateSIPTrunk",
    "deleteSIPTrunk",
    "getAnalogTrunk",
    "addAnalogTrunk",
    "updateAnalogTrunk",
    "deleteAnalogTrunk",
    "getDigitalTrunk",
    "addDigitalTrunk",
    "updateDigitalTrunk",
    "deleteDigitalTrunk",
    "addSLATrunk",
    "updateSLATrunk",
    "getInboundRoute",
    "addInboundRoute",
    "updateInboundRoute",
    "deleteInboundRoute",
    "getOutboundRoute",
    "addOutboundRoute",
    "updateOutboundRoute",
    "deleteOutboundRoute",
    "listIVR",
    "getIVR",
    "addIVR",
    "updateIVR",
    "deleteIVR",
    "addQueue",
    "updateQueue",
    "deleteQueue",
    "loginLogoffQueueAgent",
    "pauseUnpauseQueueAgent",
    "listVoicemailGroup",
    "listConference",
    "listPaginggroup",
    "getPaginggroup",
    "addPaginggroup",
    "updatePaginggroup",
    "deletePaginggroup",
    "MulticastPaging",
    "MulticastPagingHangup",
    "playPromptByOrg",
    "listIPC",
    "listZeroConfig",
];

/// Runs one of [`ACTIONS`].
pub async fn dispatch(
    app: &App,
    action: &str,
    params: &Params,
    who: &Authenticated,
) -> Result<Value, Refusal> {
    match action {
        "listAccount" | "getSIPAccount" => accounts::dispatch(app, action, params, who).await,
        "listVoIPTrunk" | "getSIPTrunk" | "listAnalogTrunk" | "listDigitalTrunk" => {
            trunks::dispatch(app, action, params, who).await
        }
        "listQueue" | "getQueue" | "listRingGroup" | "listExtensionGroup" | "listDepartment" => {
            groups::dispatch(app, action, params, who).await
        }
        "listInboundRoute" | "listOutboundRoute" => {
            routes::dispatch(app, action, params, who).await
        }
        _ => Err(unsupported(action)),
    }
}

/// The answer to one of [`UNSUPPORTED`].
pub fn unsupported(action: &str) -> Refusal {
    Refusal::Explained(
        Status::Unsupported,
        format!(
            "{action} is not supported by pbxgate: the PBX's configuration is kept in Asterisk's files (see docs/compatibility.md)"
        ),
    )
}
