//! listVoIPTrunk, getSIPTrunk, listAnalogTrunk, listDigitalTrunk.
//!
//! VoIP trunks are the PJSIP endpoints `accounts` classifies as trunks.
//! Asterisk has no trunk numbers: `trunk_index` is derived from the name, so
//! it stays the same across restarts and when other trunks come and go.
//! Analog and digital trunks are always empty (no such hardware).

use serde_json::{Map, Value, json};
use ucm::{Params, Status};

use super::Directory;
use super::accounts::{Endpoint, detail, endpoints, uri_host};
use super::contrib::{ami, clean, name_param};
use crate::error::ActionError;
use crate::listing::{Paging, page};
use crate::sessions::Authenticated;

/// Indices are 1..=INDEX_RANGE.
const INDEX_RANGE: u64 = 999_983;

/// FNV-1a of the name: a stable index.
fn hashed_index(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    1 + h % INDEX_RANGE
}

/// The trunks with their indices, in name order; a collision (rare) moves
/// the later name to the next free index.
fn indexed(mut trunks: Vec<Endpoint>) -> Vec<(u64, Endpoint)> {
    trunks.sort_by(|a, b| a.name.cmp(&b.name));
    let mut used = std::collections::HashSet::new();
    trunks
        .into_iter()
        .map(|t| {
            let mut i = hashed_index(&t.name);
            while !used.insert(i) {
                i = i % INDEX_RANGE + 1;
            }
            (i, t)
        })
        .collect()
}

/// The user part of `sip:user@host`.
fn uri_user(uri: &str) -> String {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .unwrap_or(uri);
    rest.split_once('@')
        .map_or_else(String::new, |(u, _)| clean(u))
}

/// UCM trunk status: the registration's state for a `register` trunk, the
/// qualify result for a `peer`.
fn status(t: &Endpoint) -> String {
    match &t.registration {
        Some(r) if !r.status.is_empty() => r.status.clone(),
        Some(_) => "Unregistered".into(),
        None => match t.contact_status.as_str() {
            "Reachable" => "Reachable".into(),
            "Unreachable" => "Unreachable".into(),
            _ => "Unmonitored".into(),
        },
    }
}

fn trunk_item(index: u64, t: &Endpoint, full: bool) -> Map<String, Value> {
    let (trunk_type, host, username) = match &t.registration {
        Some(r) => ("register", uri_host(&r.server_uri), uri_user(&r.client_uri)),
        None => (
            "peer",
            t.static_hosts
                .first()
                .or(t.registered.first())
                .cloned()
                .unwrap_or_default(),
            String::new(),
        ),
    };
    let mut m = Map::new();
    m.insert("trunk_index".into(), json!(index));
    m.insert("trunk_name".into(), json!(t.name));
    m.insert("host".into(), json!(host));
    m.insert("trunk_type".into(), json!(trunk_type));
    m.insert("username".into(), json!(username));
    m.insert("out_of_service".into(), json!("no"));
    if full {
        m.insert("status".into(), json!(status(t)));
        m.insert("context".into(), json!(t.context));
        m.insert("technology".into(), json!("SIP"));
    }
    m
}

/// Only the paging keys: an empty list.
fn empty(params: &Params, key: &str) -> Result<Value, ActionError> {
    let paging = Paging::from_params(params)?;
    Ok(page(Vec::new(), key, &paging))
}

pub async fn dispatch(
    dir: &Directory,
    action: &str,
    params: &Params,
    _who: &Authenticated,
) -> Result<Value, ActionError> {
    let dialing = &dir.dialing;
    match action {
        "listAnalogTrunk" => empty(params, "analogtrunk"),
        "listDigitalTrunk" => empty(params, "digital_trunks"),
        "listVoIPTrunk" => {
            let paging = Paging::from_params(params)?;
            let ami = ami(dir)?;
            let trunks = endpoints(ami)
                .await?
                .into_iter()
                .filter(|e| e.is_trunk(dialing))
                .collect();
            let items = indexed(trunks)
                .iter()
                .map(|(i, t)| trunk_item(*i, t, false))
                .collect();
            Ok(page(items, "voip_trunk", &paging))
        }
        "getSIPTrunk" => {
            // The trunk's index (as listVoIPTrunk gives it) or its name.
            let key = name_param(params, "trunk")?;
            let ami = ami(dir)?;
            let all = endpoints(ami).await?;
            let trunks: Vec<Endpoint> = all.into_iter().filter(|e| e.is_trunk(dialing)).collect();
            let found = indexed(trunks)
                .into_iter()
                .find(|(i, t)| t.name == key || i.to_string() == key);
            let Some((i, t)) = found else {
                return Err(ActionError::Explained(
                    Status::NoSuchItem,
                    format!("no such trunk: {key}"),
                ));
            };
            // Fresh details: the list above may be a moment old.
            let t = match detail(ami, &t.name).await? {
                Some(mut fresh) => {
                    fresh.registration = t.registration;
                    fresh
                }
                None => t,
            };
            Ok(json!({ "trunk": trunk_item(i, &t, true) }))
        }
        _ => Err(ActionError::Status(Status::Unsupported)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::accounts::Registration;
    use super::*;

    #[test]
    fn indices_are_stable_and_distinct() {
        let ep = |n: &str| Endpoint {
            name: n.into(),
            ..Endpoint::default()
        };
        let a = indexed(vec![ep("b"), ep("a")]);
        let b = indexed(vec![ep("a"), ep("c"), ep("b")]);
        let of = |v: &[(u64, Endpoint)], n: &str| v.iter().find(|(_, t)| t.name == n).map(|x| x.0);
        assert_eq!(of(&a, "a"), of(&b, "a"));
        assert_eq!(of(&a, "b"), of(&b, "b"));
        assert_ne!(of(&b, "a"), of(&b, "b"));
        assert!(b.iter().all(|(i, _)| (1..=INDEX_RANGE).contains(i)));
    }

    #[test]
    fn register_and_peer_trunks() {
        let reg = Endpoint {
            name: "carrier".into(),
            registration: Some(Registration {
                server_uri: "sip:sip.example.net:5060".into(),
                client_uri: "sip:4930123@sip.example.net".into(),
                status: "Rejected".into(),
            }),
            ..Endpoint::default()
        };
        let m = trunk_item(7, &reg, true);
        assert_eq!(m["trunk_type"], "register");
        assert_eq!(m["host"], "sip.example.net:5060");
        assert_eq!(m["username"], "4930123");
        assert_eq!(m["status"], "Rejected");
        let peer = Endpoint {
            name: "trunk".into(),
            static_hosts: vec!["127.0.0.1:5061".into()],
            contact_status: "NonQualified".into(),
            ..Endpoint::default()
        };
        let m = trunk_item(1, &peer, true);
        assert_eq!(m["trunk_type"], "peer");
        assert_eq!(m["host"], "127.0.0.1:5061");
        assert_eq!(m["status"], "Unmonitored");
        assert!(trunk_item(1, &peer, false).get("status").is_none());
    }
}
