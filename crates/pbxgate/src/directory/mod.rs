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

use asterisk::pbx::Manager;
use serde_json::Value;
use std::sync::Arc;
use ucm::{Params, Status};

use crate::error::ActionError;
use crate::sessions::Authenticated;

pub use ucm::actions::DIRECTORY as ACTIONS;

pub use ucm::actions::UNSUPPORTED;

/// What the directory actions need, built once at start-up: the AMI
/// connection of the PBX they read (none when `[asterisk]` is not configured)
/// and the dialing rules that tell extensions from trunks.
#[derive(Clone)]
pub struct Directory {
    ami: Option<Arc<dyn Manager>>,
    dialing: std::sync::Arc<crate::config::DialingSettings>,
}

impl Directory {
    pub fn new(ami: Option<Arc<dyn Manager>>, dialing: crate::config::DialingSettings) -> Self {
        Directory {
            ami,
            dialing: std::sync::Arc::new(dialing),
        }
    }
}

/// Runs one of [`ACTIONS`].
pub async fn dispatch(
    dir: &Directory,
    action: &str,
    params: &Params,
    who: &Authenticated,
) -> Result<Value, ActionError> {
    match action {
        "listAccount" | "getSIPAccount" => accounts::dispatch(dir, action, params, who).await,
        "listVoIPTrunk" | "getSIPTrunk" | "listAnalogTrunk" | "listDigitalTrunk" => {
            trunks::dispatch(dir, action, params, who).await
        }
        "listQueue" | "getQueue" | "listRingGroup" | "listExtensionGroup" | "listDepartment" => {
            groups::dispatch(dir, action, params, who).await
        }
        "listInboundRoute" | "listOutboundRoute" => {
            routes::dispatch(dir, action, params, who).await
        }
        _ => Err(unsupported(action)),
    }
}

/// The answer to one of [`UNSUPPORTED`].
pub fn unsupported(action: &str) -> ActionError {
    ActionError::Explained(
        Status::Unsupported,
        format!(
            "{action} is not supported by pbxgate: the PBX's configuration is kept in Asterisk's files (see docs/compatibility.md)"
        ),
    )
}
