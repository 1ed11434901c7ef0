//! listQueue, getQueue, listRingGroup, listExtensionGroup, listDepartment.
//!
//! Queues are Asterisk's own (app_queue, AMI `QueueStatus`): members and
//! their state are live. Ring groups, extension groups and departments have
//! no object in Asterisk: they are the sections of the directory file
//! (`contrib::DIRECTORY_FILE`) of `type` `ringgroup`, `extension_group` and
//! `department`; a `type = queue` section only names a queue.

use asterisk::ami::Message;
use asterisk::pbx::Manager;
use serde_json::{Map, Value, json};
use ucm::{Params, Status};

use super::Directory;
use super::contrib::{self, Section};
use crate::error::ActionError;
use crate::listing::{Paging, page};
use crate::sessions::Authenticated;

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Queues(Paging),
    Queue(String),
    /// Sections of a directory type, listed under a key.
    Described {
        kind: Kind,
        paging: Paging,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    RingGroup,
    ExtensionGroup,
    Department,
}

impl Kind {
    /// The `type` of its sections in the directory file.
    fn section_type(self) -> &'static str {
        match self {
            Kind::RingGroup => "ringgroup",
            Kind::ExtensionGroup => "extension_group",
            Kind::Department => "department",
        }
    }

    /// The list key of the answer.
    fn list_key(self) -> &'static str {
        match self {
            Kind::RingGroup => "ringgroup",
            Kind::ExtensionGroup => "extension_group",
            Kind::Department => "department",
        }
    }

    /// One listed item of a section.
    fn item(self, s: &Section) -> Map<String, Value> {
        let members = json!(s.list("members").join(","));
        let name = |key: &str| json!(s.get(key).unwrap_or(&s.name));
        let mut m = Map::new();
        match self {
            Kind::RingGroup => {
                m.insert("extension".into(), name("extension"));
                m.insert("ringgroup_name".into(), name("name"));
                m.insert(
                    "strategy".into(),
                    json!(s.get("strategy").unwrap_or("ringall")),
                );
                m.insert("members".into(), members);
            }
            Kind::ExtensionGroup => {
                m.insert("group_id".into(), json!(s.name));
                m.insert("group_name".into(), name("name"));
                m.insert("members".into(), members);
            }
            Kind::Department => {
                m.insert("department_id".into(), json!(s.name));
                m.insert("department_name".into(), name("name"));
                m.insert("members".into(), members);
            }
        }
        m
    }
}

fn parse(action: &str, params: &Params) -> Result<Op, ActionError> {
    let described = |kind| -> Result<Op, ActionError> {
        Ok(Op::Described {
            kind,
            paging: Paging::from_params(params)?,
        })
    };
    match action {
        "listQueue" => Ok(Op::Queues(Paging::from_params(params)?)),
        "getQueue" => contrib::name_param(params, "queue").map(Op::Queue),
        "listRingGroup" => described(Kind::RingGroup),
        "listExtensionGroup" => described(Kind::ExtensionGroup),
        "listDepartment" => described(Kind::Department),
        _ => Err(ActionError::Status(Status::Unsupported)),
    }
}

pub async fn dispatch(
    dir: &Directory,
    action: &str,
    params: &Params,
    _who: &Authenticated,
) -> Result<Value, ActionError> {
    let op = parse(action, params)?;
    run(dir, op).await
}

async fn run(dir: &Directory, op: Op) -> Result<Value, ActionError> {
    let ami = contrib::ami(dir)?;
    match op {
        Op::Queues(paging) => {
            let queues = queues(ami, None).await?;
            Ok(page(queues, "queue", &paging))
        }
        Op::Queue(name) => {
            let mut queues = queues(ami, Some(&name)).await?;
            // QueueStatus with Queue matches that name only, but a stray
            // answer for another queue must not be taken for it.
            queues.retain(|q| q.get("extension").and_then(Value::as_str) == Some(&name));
            match queues.pop() {
                Some(q) => Ok(json!({ "queue": q })),
                None => Err(ActionError::NoSuchItem(format!("queue {name}"))),
            }
        }
        Op::Described { kind, paging } => {
            let sections = contrib::directory(ami).await?;
            let items = contrib::of_type(&sections, kind.section_type())
                .map(|s| kind.item(s))
                .collect();
            Ok(page(items, kind.list_key(), &paging))
        }
    }
}

/// The queues (or the one named), with their members, as UCM items.
async fn queues(
    ami: &dyn Manager,
    only: Option<&str>,
) -> Result<Vec<Map<String, Value>>, ActionError> {
    let headers: Vec<(&str, &str)> = only.map(|q| ("Queue", q)).into_iter().collect();
    let reply = contrib::send(ami, "QueueStatus", &headers).await?;
    // Names given in the directory file; a missing or unreadable file only
    // costs the names.
    let names: Vec<Section> = match contrib::directory(ami).await {
        Ok(s) => contrib::of_type(&s, "queue").cloned().collect(),
        Err(e) => {
            tracing::warn!(error = ?e, "queue names from the directory file unavailable");
            Vec::new()
        }
    };
    Ok(from_events(&reply.events, &names))
}

/// `QueueParams` and `QueueMember` events as UCM queue items.
fn from_events(events: &[Message], names: &[Section]) -> Vec<Map<String, Value>> {
    let mut queues: Vec<(String, Map<String, Value>, Vec<Value>)> = Vec::new();
    for e in events {
        let Some(queue) = e.get("Queue").filter(|q| !q.is_empty()) else {
            continue;
        };
        match e.event() {
            Some(ev) if ev.eq_ignore_ascii_case("QueueParams") => {
                let field = |k: &str| json!(e.get(k).unwrap_or_default());
                let name = names
                    .iter()
                    .find(|s| s.name == queue)
                    .and_then(|s| s.get("name"))
                    .unwrap_or(queue);
                let mut m = Map::new();
                m.insert("extension".into(), json!(queue));
                m.insert("queue_name".into(), json!(name));
                m.insert("strategy".into(), field("Strategy"));
                m.insert("calls".into(), field("Calls"));
                m.insert("completed".into(), field("Completed"));
                m.insert("abandoned".into(), field("Abandoned"));
                m.insert("holdtime".into(), field("Holdtime"));
                m.insert("talktime".into(), field("TalkTime"));
                queues.push((queue.to_owned(), m, Vec::new()));
            }
            Some(ev) if ev.eq_ignore_ascii_case("QueueMember") => {
                if let Some((_, _, members)) = queues.iter_mut().find(|(q, _, _)| q == queue) {
                    members.push(member(e));
                }
            }
            _ => {}
        }
    }
    queues
        .into_iter()
        .map(|(_, mut m, mut members)| {
            // Asterisk keeps members in a hash table: a stable order for clients.
            members.sort_by(|a, b| {
                // Extensions numerically (999 before 1000), then other names.
                let key = |v: &Value| {
                    let member = v["member"].as_str().unwrap_or_default().to_owned();
                    let number = member.parse::<u64>().ok();
                    let interface = v["interface"].as_str().unwrap_or_default().to_owned();
                    (number.is_none(), number, member, interface)
                };
                key(a).cmp(&key(b))
            });
            let numbers: Vec<&str> = members
                .iter()
                .filter_map(|v| v["member"].as_str())
                .collect();
            m.insert("members".into(), json!(numbers.join(",")));
            m.insert("member_list".into(), Value::Array(members));
            m
        })
        .collect()
}

/// One `QueueMember` event.
fn member(e: &Message) -> Value {
    let interface = e
        .get("StateInterface")
        .or_else(|| e.get("Location"))
        .or_else(|| e.get("Name"))
        .unwrap_or_default();
    let location = e.get("Location").unwrap_or(interface);
    json!({
        "member": member_number(location),
        "member_name": e.get("Name").unwrap_or_default(),
        "interface": location,
        "status": device_state(e.get("Status").unwrap_or_default()),
        "paused": if e.get("Paused") == Some("1") { "yes" } else { "no" },
        "in_call": if e.get("InCall") == Some("1") { "yes" } else { "no" },
        "membership": e.get("Membership").unwrap_or_default(),
        "penalty": e.get("Penalty").unwrap_or_default(),
        "calls_taken": e.get("CallsTaken").unwrap_or_default(),
    })
}

/// The extension of a member interface: `PJSIP/1000`, `Local/1000@ctx/n`
/// → `1000`; anything else as it is.
fn member_number(interface: &str) -> &str {
    match interface.split_once('/') {
        Some((_, rest)) => {
            let end = rest.find(['@', '/']).unwrap_or(rest.len());
            match &rest[..end] {
                "" => interface,
                n => n,
            }
        }
        None => interface,
    }
}

/// Asterisk's device state numbers (`enum ast_device_state`) in the words of
/// a UCM's extension status.
fn device_state(n: &str) -> &'static str {
    match n {
        "1" => "Idle",
        "2" => "InUse",
        "3" => "Busy",
        "4" | "5" => "Unavailable",
        "6" => "Ringing",
        "7" => "InUse&Ringing",
        "8" => "Hold",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn msg(pairs: &[(&str, &str)]) -> Message {
        let mut m = Message::new();
        for (k, v) in pairs {
            m.push(*k, *v);
        }
        m
    }

    #[test]
    fn queue_status_events_become_items() {
        let events = vec![
            msg(&[
                ("Event", "QueueParams"),
                ("Queue", "6000"),
                ("Strategy", "ringall"),
                ("Calls", "0"),
            ]),
            msg(&[
                ("Event", "QueueMember"),
                ("Queue", "6000"),
                ("Name", "Local/1000@ext-local/n"),
                ("Location", "Local/1000@ext-local/n"),
                ("Status", "1"),
                ("Paused", "0"),
            ]),
            msg(&[
                ("Event", "QueueMember"),
                ("Queue", "6000"),
                ("Location", "PJSIP/1001"),
                ("Status", "6"),
                ("Paused", "1"),
            ]),
            msg(&[
                ("Event", "QueueMember"),
                ("Queue", "6000"),
                ("Location", "PJSIP/999"),
                ("Status", "2"),
            ]),
            // a member of a queue not announced: dropped
            msg(&[
                ("Event", "QueueMember"),
                ("Queue", "7"),
                ("Location", "PJSIP/1"),
            ]),
        ];
        let names = vec![Section {
            name: "6000".into(),
            lines: vec![
                ("type".into(), "queue".into()),
                ("name".into(), "Support".into()),
            ],
        }];
        let q = from_events(&events, &names);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0]["extension"], "6000");
        assert_eq!(q[0]["queue_name"], "Support");
        assert_eq!(q[0]["members"], "999,1000,1001");
        assert_eq!(q[0]["member_list"][0]["status"], "InUse");
        assert_eq!(q[0]["member_list"][1]["status"], "Idle");
        assert_eq!(q[0]["member_list"][2]["status"], "Ringing");
        assert_eq!(q[0]["member_list"][2]["paused"], "yes");
    }

    #[test]
    fn member_numbers() {
        assert_eq!(member_number("PJSIP/1000"), "1000");
        assert_eq!(member_number("Local/1000@ext-local/n"), "1000");
        assert_eq!(member_number("weird"), "weird");
        assert_eq!(member_number("PJSIP/"), "PJSIP/");
    }

    #[test]
    fn get_queue_checks_its_parameter_first() {
        let p = |v: Value| {
            let mut req = v;
            req["action"] = json!("getQueue");
            ucm::parse_request(json!({ "request": req }).to_string().as_bytes())
                .unwrap()
                .params
        };
        let status = |r: Result<Op, ActionError>| match r {
            Err(ActionError::Status(s) | ActionError::Explained(s, _)) => s,
            _ => Status::Success,
        };
        assert_eq!(
            status(parse("getQueue", &p(json!({})))),
            Status::InvalidParameters
        );
        assert_eq!(
            status(parse("getQueue", &p(json!({"queue": ""})))),
            Status::InvalidParameters
        );
        assert_eq!(
            status(parse(
                "getQueue",
                &p(json!({"queue": "6000\r\nAction: Logoff"}))
            )),
            Status::InvalidValue
        );
        assert_eq!(
            parse("getQueue", &p(json!({"queue": 6000}))).unwrap(),
            Op::Queue("6000".into())
        );
    }
}
