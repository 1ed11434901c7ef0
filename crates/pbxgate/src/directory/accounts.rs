//! listAccount, getSIPAccount, and the PJSIP reading they share with
//! `trunks`: every endpoint (`PJSIPShowEndpoints`) with its details
//! (`PJSIPShowEndpoint`: context, callerid, auth, contacts) and the outbound
//! registrations (`PJSIPShowRegistrationsOutbound`).
//!
//! Which endpoint is what: an endpoint with an outbound registration (one
//! naming it with `endpoint=`, or else one of the same name), or in
//! one of `[dialing] trunk_contexts`, is a trunk; else one in
//! `[dialing] context` is an extension; any other (a simulator, a fax
//! gateway in its own context, …) is in neither list.

use asterisk::pbx::Manager;
use serde_json::{Map, Value, json};
use ucm::{Params, Status};

use super::Directory;
use super::contrib::{ami, clean, events, name_param};
use crate::config::DialingSettings;
use crate::error::ActionError;
use crate::listing::{Paging, page};
use crate::sessions::Authenticated;

/// What getSIPAccount shows instead of a secret without the `secrets` permission.
pub(super) const MASK: &str = "******";

/// One PJSIP endpoint as pbxgate sees it.
#[derive(Clone, Default)]
pub(super) struct Endpoint {
    pub name: String,
    pub context: String,
    pub callerid: String,
    pub device_state: String,
    pub mailboxes: String,
    /// Auth username and password (the password never goes to logs).
    pub auth_user: String,
    pub password: String,
    /// Registered (dynamic) contacts' `host:port`.
    pub registered: Vec<String>,
    /// Static contacts' `host[:port]` (a peer trunk's far end).
    pub static_hosts: Vec<String>,
    /// The first contact's qualify status (`Reachable`, `NonQualified`, …).
    pub contact_status: String,
    /// Outbound registration of this endpoint, if any.
    pub registration: Option<Registration>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Default, Debug)]
pub(super) struct Registration {
    pub server_uri: String,
    pub client_uri: String,
    pub status: String,
}

impl Endpoint {
    pub fn is_trunk(&self, d: &DialingSettings) -> bool {
        self.registration.is_some() || d.trunk_contexts.contains(&self.context)
    }

    pub fn is_account(&self, d: &DialingSettings) -> bool {
        !self.is_trunk(d) && self.context == d.context
    }
}

/// `sip:user@host:port;params` → `host:port`.
pub(super) fn uri_host(uri: &str) -> String {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let end = rest.find([';', '>', '?']).unwrap_or(rest.len());
    clean(&rest[..end])
}

/// The name in `"Name" <number>` (or the whole value without quotes).
pub(super) fn callerid_name(cid: &str) -> String {
    let name = match cid.find('<') {
        Some(i) => &cid[..i],
        None => cid,
    };
    clean(name.trim().trim_matches('"').trim())
}

/// Every PJSIP endpoint, with details and outbound registrations, in the
/// order Asterisk lists them (by name).
pub(super) async fn endpoints(ami: &dyn Manager) -> Result<Vec<Endpoint>, ActionError> {
    let list = events(ami, "PJSIPShowEndpoints", &[])
        .await?
        .unwrap_or_default();
    let regs = registrations(ami).await?;
    let mut out = Vec::new();
    for e in list.iter().filter(|e| e.event() == Some("EndpointList")) {
        let Some(name) = e.get("ObjectName").filter(|n| !n.is_empty()) else {
            continue;
        };
        let mut ep = detail(ami, name).await?.unwrap_or_default();
        ep.name = clean(name);
        if ep.device_state.is_empty() {
            ep.device_state = clean(e.get("DeviceState").unwrap_or(""));
        }
        ep.registration = registration_of(&regs, name);
        out.push(ep);
    }
    Ok(out)
}

/// The registration belonging to endpoint `name`.
pub(super) fn registration_of(regs: &[(String, Registration)], name: &str) -> Option<Registration> {
    regs.iter().find(|(n, _)| n == name).map(|(_, r)| r.clone())
}

/// The outbound registrations, each with the endpoint it belongs to (the
/// `AuthDetail` events of this list, with passwords, are skipped).
pub(super) async fn registrations(
    ami: &dyn Manager,
) -> Result<Vec<(String, Registration)>, ActionError> {
    let mut regs: Vec<(String, Registration)> = Vec::new();
    for e in events(ami, "PJSIPShowRegistrationsOutbound", &[])
        .await?
        .unwrap_or_default()
    {
        if e.event() != Some("OutboundRegistrationDetail") {
            continue;
        }
        // With line support the registration names its endpoint; without,
        // the convention is to name the registration as the endpoint.
        let endpoint = match e.get("Endpoint").map(str::trim) {
            Some(ep) if !ep.is_empty() => ep.to_owned(),
            _ => e.get("ObjectName").unwrap_or("").to_owned(),
        };
        regs.push((
            endpoint,
            Registration {
                server_uri: clean(e.get("ServerUri").unwrap_or("")),
                client_uri: clean(e.get("ClientUri").unwrap_or("")),
                status: clean(e.get("Status").unwrap_or("")),
            },
        ));
    }
    Ok(regs)
}

/// One endpoint's details; `None` when Asterisk does not know it.
pub(super) async fn detail(ami: &dyn Manager, name: &str) -> Result<Option<Endpoint>, ActionError> {
    let Some(evs) = events(ami, "PJSIPShowEndpoint", &[("Endpoint", name)]).await? else {
        return Ok(None);
    };
    let mut ep = Endpoint {
        name: clean(name),
        ..Endpoint::default()
    };
    let mut found = false;
    for e in &evs {
        let get = |k: &str| clean(e.get(k).unwrap_or(""));
        match e.event() {
            Some("EndpointDetail") => {
                found = true;
                ep.context = get("Context");
                ep.callerid = get("Callerid");
                ep.device_state = get("DeviceState");
                ep.mailboxes = get("Mailboxes");
            }
            Some("AuthDetail") if ep.auth_user.is_empty() => {
                ep.auth_user = get("Username");
                // Kept as sent: a password may contain anything printable.
                ep.password = e.get("Password").unwrap_or("").to_owned();
            }
            Some("ContactStatusDetail") => {
                let host = uri_host(e.get("URI").unwrap_or(""));
                if ep.contact_status.is_empty() {
                    ep.contact_status = get("Status");
                }
                // Static contacts have no expiry; registered ones do.
                match e.get("RegExpire").map(str::trim) {
                    None | Some("" | "0") => ep.static_hosts.push(host),
                    Some(_) => ep.registered.push(host),
                }
            }
            _ => {}
        }
    }
    Ok(found.then_some(ep))
}

/// UCM spelling of an Asterisk device state.
fn ucm_status(state: &str) -> &'static str {
    match state.to_ascii_lowercase().as_str() {
        "not_inuse" | "not in use" => "Idle",
        "inuse" | "in use" => "InUse",
        "busy" => "Busy",
        "ringing" => "Ringing",
        "ringinuse" | "ring+inuse" => "InUse",
        "onhold" | "on hold" => "Hold",
        _ => "Unavailable",
    }
}

/// The mailbox to count: the endpoint's first `mailboxes`, else `<ext>@default`.
fn mailbox(ep: &Endpoint) -> String {
    ep.mailboxes
        .split(',')
        .map(str::trim)
        .find(|m| !m.is_empty())
        .map_or_else(|| format!("{}@default", ep.name), str::to_owned)
}

/// (urgent, new, old) messages; zeros when Asterisk has no such mailbox.
async fn messages(ami: &dyn Manager, ep: &Endpoint) -> Result<(u64, u64, u64), ActionError> {
    let mb = mailbox(ep);
    let reply = ami
        .action("MailboxCount", &[("Mailbox", &mb)])
        .await
        .map_err(ActionError::Pbx)?;
    if !reply.is_success() {
        return Ok((0, 0, 0));
    }
    let n = |k: &str| {
        reply
            .response
            .get(k)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((n("UrgMessages"), n("NewMessages"), n("OldMessages")))
}

/// The §3.2 item of an extension.
fn account_item(ep: &Endpoint, msgs: (u64, u64, u64)) -> Map<String, Value> {
    let addr = ep
        .registered
        .first()
        .cloned()
        .unwrap_or_else(|| "-".to_owned());
    let item = json!({
        "extension": ep.name,
        "account_type": "SIP",
        "fullname": callerid_name(&ep.callerid),
        "out_of_service": "no",
        "status": ucm_status(&ep.device_state),
        "addr": addr,
        "urgemsg": msgs.0,
        "newmsg": msgs.1,
        "oldmsg": msgs.2,
        "lockflag": 0,
        "presence_status": "available",
        "presence_def_script": "",
        "user_name": ep.name,
        "email_to_user": "no",
        "enable_contact": 1,
    });
    match item {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub async fn dispatch(
    dir: &Directory,
    action: &str,
    params: &Params,
    who: &Authenticated,
) -> Result<Value, ActionError> {
    let dialing = &dir.dialing;
    match action {
        "listAccount" => {
            let paging = Paging::from_params(params)?;
            let ami = ami(dir)?;
            let mut items = Vec::new();
            for ep in endpoints(ami).await? {
                if ep.is_account(dialing) {
                    let msgs = messages(ami, &ep).await?;
                    items.push(account_item(&ep, msgs));
                }
            }
            Ok(page(items, "account", &paging))
        }
        "getSIPAccount" => {
            let ext = name_param(params, "extension")?;
            let ami = ami(dir)?;
            let regs = registrations(ami).await?;
            let ep = detail(ami, &ext)
                .await?
                .map(|mut ep| {
                    ep.registration = registration_of(&regs, &ext);
                    ep
                })
                .filter(|ep| ep.is_account(dialing))
                .ok_or_else(|| {
                    ActionError::Explained(Status::NoSuchItem, format!("no such extension: {ext}"))
                })?;
            let msgs = messages(ami, &ep).await?;
            let mut item = account_item(&ep, msgs);
            let cidnumber = ep
                .callerid
                .split_once('<')
                .map_or("", |(_, r)| r.trim_end_matches('>').trim());
            let secrets = who.permissions.secrets();
            let shown = |s: &str| {
                if secrets {
                    s.to_owned()
                } else {
                    MASK.to_owned()
                }
            };
            item.insert("cidnumber".into(), json!(clean(cidnumber)));
            item.insert("context".into(), json!(ep.context));
            item.insert("permission".into(), json!("internal"));
            item.insert("secret".into(), json!(shown(&ep.password)));
            // Asterisk's AMI does not expose voicemail passwords.
            item.insert("vmsecret".into(), json!(shown("")));
            item.insert("mailbox".into(), json!(mailbox(&ep)));
            Ok(json!({ "extension": item }))
        }
        _ => Err(ActionError::Status(Status::Unsupported)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_callerids() {
        assert_eq!(uri_host("sip:1000@10.0.0.5:5060;ob"), "10.0.0.5:5060");
        assert_eq!(uri_host("sip:127.0.0.1:15161"), "127.0.0.1:15161");
        assert_eq!(uri_host("sips:a@[::1]:5061>"), "[::1]:5061");
        assert_eq!(callerid_name("\"Ext 1000\" <1000>"), "Ext 1000");
        assert_eq!(callerid_name("Bob"), "Bob");
        assert_eq!(callerid_name("\"a\u{1b}b\" <1>"), "ab");
    }

    #[test]
    fn device_states_take_ucm_spellings() {
        assert_eq!(ucm_status("Not in use"), "Idle");
        assert_eq!(ucm_status("In use"), "InUse");
        assert_eq!(ucm_status("Unavailable"), "Unavailable");
        assert_eq!(ucm_status("Ringing"), "Ringing");
        assert_eq!(ucm_status("Ring+Inuse"), "InUse");
        assert_eq!(ucm_status("Busy"), "Busy");
        assert_eq!(ucm_status("Invalid"), "Unavailable");
    }

    #[test]
    fn endpoints_are_extensions_trunks_or_neither() {
        let d = DialingSettings {
            context: "from-internal".into(),
            outbound_prefix: String::new(),
            ring: std::time::Duration::from_secs(30),
            trunk_contexts: vec!["from-trunk".into()],
        };
        let ep = |ctx: &str, reg: bool| Endpoint {
            context: ctx.into(),
            registration: reg.then(Registration::default),
            ..Endpoint::default()
        };
        assert!(ep("from-internal", false).is_account(&d));
        assert!(!ep("from-internal", true).is_account(&d));
        assert!(ep("from-internal", true).is_trunk(&d));
        assert!(ep("from-trunk", false).is_trunk(&d));
        let sim = ep("rig-sim", false);
        assert!(!sim.is_trunk(&d) && !sim.is_account(&d));
    }

    #[test]
    fn passwords_stay_out_of_debug() {
        let e = Endpoint {
            name: "1000".into(),
            password: "hunter2".into(),
            ..Endpoint::default()
        };
        assert!(!format!("{e:?}").contains("hunter2"));
    }
}
