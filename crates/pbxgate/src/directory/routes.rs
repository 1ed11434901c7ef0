//! listInboundRoute, listOutboundRoute.
//!
//! Asterisk has no route objects: a route is an extension (a DID or a dial
//! pattern) of a dialplan context. The `[general]` section of the directory
//! file (`contrib::DIRECTORY_FILE`) names those contexts
//! (`inbound_context`, `outbound_context`, each may repeat); pbxgate lists
//! their extensions as the running Asterisk has them (AMI `ShowDialPlan`).

use asterisk::ami::Message;
use asterisk::pbx::Manager;
use serde_json::{Map, Value, json};
use ucm::{Params, Status};

use super::Directory;
use super::contrib;
use crate::error::ActionError;
use crate::listing::{Paging, page};
use crate::sessions::Authenticated;

/// Applications that only prepare a call: a route's destination is the last
/// priority that is not one of them.
const NOT_A_DESTINATION: &[&str] = &[
    "Gosub", "Set", "NoOp", "Verbose", "ExecIf", "Return", "Hangup", "Answer", "Wait",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Inbound,
    Outbound,
}

impl Way {
    fn context_key(self) -> &'static str {
        match self {
            Way::Inbound => "inbound_context",
            Way::Outbound => "outbound_context",
        }
    }

    fn list_key(self) -> &'static str {
        match self {
            Way::Inbound => "inbound_route",
            Way::Outbound => "outbound_route",
        }
    }
}

pub async fn dispatch(
    dir: &Directory,
    action: &str,
    params: &Params,
    _who: &Authenticated,
) -> Result<Value, ActionError> {
    let way = match action {
        "listInboundRoute" => Way::Inbound,
        "listOutboundRoute" => Way::Outbound,
        _ => return Err(ActionError::Status(Status::Unsupported)),
    };
    let paging = Paging::from_params(params)?;
    let items = routes(dir, way).await?;
    Ok(page(items, way.list_key(), &paging))
}

async fn routes(dir: &Directory, way: Way) -> Result<Vec<Map<String, Value>>, ActionError> {
    let ami = contrib::ami(dir)?;
    let sections = contrib::directory(ami).await?;
    let contexts: Vec<String> = sections
        .iter()
        .filter(|s| s.name.eq_ignore_ascii_case("general"))
        .flat_map(|s| s.list(way.context_key()))
        .collect();
    let mut items = Vec::new();
    for context in contexts {
        // The name goes back to Asterisk as a header: only plain names.
        if !contrib::is_name(&context) {
            tracing::warn!(context = %context.escape_debug(), "{}: not a context name, skipped", way.context_key());
            continue;
        }
        for ext in extensions(ami, &context).await? {
            items.push(ext.item(way, items.len() + 1));
        }
    }
    Ok(items)
}

/// One extension of a context: its priorities' applications, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exten {
    context: String,
    pattern: String,
    steps: Vec<(String, String)>,
}

impl Exten {
    /// Where the route goes: `App(data)` of its last real step.
    fn destination(&self) -> String {
        self.steps
            .iter()
            .rev()
            .find(|(app, _)| {
                !NOT_A_DESTINATION
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(app))
            })
            .or(self.steps.last())
            .map(|(app, data)| format!("{app}({data})"))
            .unwrap_or_default()
    }

    /// The trunk of an outbound route: the second argument of the contrib's
    /// `Gosub(pbxgate-to-trunk,s,1(<number>,<trunk>))`, else the endpoint of
    /// a `Dial(PJSIP/<number>@<trunk>)`.
    fn trunk(&self) -> String {
        for (app, data) in &self.steps {
            if app.eq_ignore_ascii_case("Gosub")
                && let Some(args) = data.strip_prefix("pbxgate-to-trunk,s,1(")
                && let Some(trunk) = args.trim_end_matches(')').split(',').nth(1)
            {
                return trunk.trim().to_owned();
            }
        }
        for (app, data) in &self.steps {
            if app.eq_ignore_ascii_case("Dial")
                && let Some((_, rest)) = data
                    .split(['&', ','])
                    .next()
                    .and_then(|d| d.split_once('@'))
            {
                return rest.to_owned();
            }
        }
        String::new()
    }

    fn item(&self, way: Way, index: usize) -> Map<String, Value> {
        let mut m = Map::new();
        match way {
            Way::Inbound => {
                m.insert("inbound_rt_index".into(), json!(index.to_string()));
                m.insert("did_pattern_match".into(), json!(self.pattern));
                m.insert("destination".into(), json!(self.destination()));
            }
            Way::Outbound => {
                m.insert("outbound_rt_index".into(), json!(index.to_string()));
                m.insert(
                    "outbound_rt_name".into(),
                    json!(format!("{}/{}", self.context, self.pattern)),
                );
                m.insert("pattern".into(), json!(self.pattern));
                m.insert("trunk_name".into(), json!(self.trunk()));
            }
        }
        m.insert("context".into(), json!(self.context));
        m
    }
}

/// The extensions of `context` itself (not of its includes), in Asterisk's
/// order. A context Asterisk does not have is an empty one (logged).
async fn extensions(ami: &dyn Manager, context: &str) -> Result<Vec<Exten>, ActionError> {
    let reply = contrib::request(ami, "ShowDialPlan", &[("Context", context)]).await?;
    if !reply.is_success() {
        tracing::warn!(
            context,
            message = reply.response.get("Message").unwrap_or(""),
            "a route context of {} is not in Asterisk's dialplan",
            contrib::DIRECTORY_FILE
        );
        return Ok(Vec::new());
    }
    Ok(from_events(&reply.events, context))
}

fn from_events(events: &[Message], context: &str) -> Vec<Exten> {
    let mut out: Vec<Exten> = Vec::new();
    for e in events {
        if e.event() != Some("ListDialplan") || e.get("Context") != Some(context) {
            continue;
        }
        let (Some(pattern), Some(priority)) = (e.get("Extension"), e.get("Priority")) else {
            continue;
        };
        // Hints are device states, not steps.
        if priority.parse::<u32>().is_err() {
            continue;
        }
        let step = (
            e.get("Application").unwrap_or_default().to_owned(),
            e.get("AppData").unwrap_or_default().to_owned(),
        );
        match out.iter_mut().find(|x| x.pattern == pattern) {
            Some(x) => x.steps.push(step),
            None => out.push(Exten {
                context: context.to_owned(),
                pattern: pattern.to_owned(),
                steps: vec![step],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ext: &str, prio: &str, app: &str, data: &str) -> Message {
        let mut m = Message::new();
        for (k, v) in [
            ("Event", "ListDialplan"),
            ("Context", "out"),
            ("Extension", ext),
            ("Priority", prio),
            ("Application", app),
            ("AppData", data),
        ] {
            m.push(k, v);
        }
        m
    }

    #[test]
    fn dialplan_extensions_become_routes() {
        let events = vec![
            ev("_X.", "1", "Gosub", "pbxgate-to-trunk,s,1(${EXTEN},trunk)"),
            ev("_X.", "2", "Dial", "PJSIP/${EXTEN}@trunk,30"),
            ev(
                "_00X.",
                "1",
                "Dial",
                "PJSIP/${EXTEN}@intl&PJSIP/${EXTEN}@b,30",
            ),
            ev("1000", "hint", "PJSIP/1000", ""),
        ];
        let x = from_events(&events, "out");
        assert_eq!(x.len(), 2);
        assert_eq!(x[0].trunk(), "trunk");
        assert_eq!(x[0].destination(), "Dial(PJSIP/${EXTEN}@trunk,30)");
        assert_eq!(x[1].trunk(), "intl");
        let item = x[1].item(Way::Outbound, 2);
        assert_eq!(item["outbound_rt_index"], "2");
        assert_eq!(item["pattern"], "_00X.");
        assert!(from_events(&events, "other").is_empty());
    }
}
