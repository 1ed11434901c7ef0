//! `listBridgedChannels` / `listUnBridgedChannels`: Asterisk's channels
//! (AMI `CoreShowChannels`) as a UCM lists them, and the list conventions of
//! spec §2.5 (page, item_num, sidx, sord, options).
//!
//! What is listed:
//! - A *bridged* item is a two-party call: two channels in one bridge of
//!   exactly two members. Local channels are plumbing and never listed: a
//!   chain `A = Local;2 … Local;1 = B` (click-to-call, queue members, anything
//!   dialled through a `Local/` channel whose pair is not optimised away) is
//!   one item `A`–`B`. `Snoop/` channels (spying, pbxgate's hold) are not
//!   listed either.
//! - Every other channel is *unbridged*: ringing or dialling legs, channels
//!   running an application alone (IVR, voicemail, waiting in a queue through
//!   a Local channel), and the members of bridges of one or of three and more
//!   channels (conferences). `service` comes from the application at the far
//!   end of the channel's Local chain, else its own.
//! - `channel1` is the older channel of a pair (the caller, or the phone a
//!   click-to-call rang first).

use std::collections::{HashMap, HashSet};

use asterisk::ami::Message;
use serde_json::{Map, Value, json};

/// One channel of a `CoreShowChannels` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chan {
    pub name: String,
    pub state: String,
    pub caller_num: String,
    pub caller_name: String,
    pub connected_num: String,
    pub connected_name: String,
    pub uniqueid: String,
    pub application: String,
    /// Empty when the channel is in no bridge.
    pub bridge: String,
    /// Unix seconds at creation.
    pub created: i64,
    /// Order among channels created in the same second (the uniqueid's counter).
    seq: u64,
}

/// A caller ID field; Asterisk writes `<unknown>` for an empty one.
fn party(v: Option<&str>) -> String {
    match v {
        None | Some("<unknown>") => String::new(),
        Some(v) => v.to_owned(),
    }
}

/// `HH:MM:SS` (hours may have more digits) in seconds.
fn duration_secs(s: &str) -> Option<i64> {
    let mut parts = s.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let n = |p: &str| p.parse::<i64>().ok().filter(|v| *v >= 0);
    Some(n(h)? * 3600 + n(m)? * 60 + n(sec)?)
}

/// When a channel was created. Asterisk's uniqueids are `[system-]<unix
/// seconds>.<counter>` unless someone chose the id (Originate `ChannelId`,
/// ARI), so the uniqueid is trusted when it agrees with `now - Duration`;
/// else that estimate is used (one-second precision).
fn created_at(uniqueid: &str, duration: Option<i64>, now: i64) -> (i64, u64) {
    let estimate = duration.map(|d| now - d);
    let tail = uniqueid.rsplit('-').next().unwrap_or(uniqueid);
    if let Some((s, n)) = tail.split_once('.')
        && let (Ok(s), Ok(n)) = (s.parse::<i64>(), n.parse::<u64>())
        && estimate.is_none_or(|e| (s - e).abs() <= 2)
    {
        return (s, n);
    }
    (estimate.unwrap_or(now), 0)
}

impl Chan {
    /// A `CoreShowChannel` event; `None` for anything else.
    pub fn from_event(m: &Message, now: i64) -> Option<Chan> {
        if !m.event()?.eq_ignore_ascii_case("CoreShowChannel") {
            return None;
        }
        let name = m.get("Channel").filter(|n| !n.is_empty())?.to_owned();
        let uniqueid = m.get("Uniqueid").unwrap_or_default().to_owned();
        let (created, seq) = created_at(&uniqueid, m.get("Duration").and_then(duration_secs), now);
        Some(Chan {
            name,
            state: m.get("ChannelStateDesc").unwrap_or_default().to_owned(),
            caller_num: party(m.get("CallerIDNum")),
            caller_name: party(m.get("CallerIDName")),
            connected_num: party(m.get("ConnectedLineNum")),
            connected_name: party(m.get("ConnectedLineName")),
            uniqueid,
            application: m.get("Application").unwrap_or_default().to_owned(),
            bridge: m.get("BridgeId").unwrap_or_default().to_owned(),
            created,
            seq,
        })
    }

    fn is_local(&self) -> bool {
        self.name.starts_with("Local/")
    }

    /// Channels that are not a party of a call: Local halves, Snoop channels.
    pub fn is_plumbing(&self) -> bool {
        self.is_local() || self.name.starts_with("Snoop/")
    }

    /// The other half of a Local channel (`…;1` <-> `…;2`).
    fn local_twin(&self) -> Option<String> {
        if !self.is_local() {
            return None;
        }
        let (base, half) = self.name.rsplit_once(';')?;
        let other = match half {
            "1" => "2",
            "2" => "1",
            _ => return None,
        };
        Some(format!("{base};{other}"))
    }

    fn order(&self) -> (i64, u64) {
        (self.created, self.seq)
    }
}

/// The channels as calls: pairs of parties and lone channels (indexes into
/// the slice given to [`resolve`]).
#[derive(Debug, Default)]
pub struct View {
    pub pairs: Vec<Pair>,
    pub singles: Vec<Single>,
}

#[derive(Debug)]
pub struct Pair {
    /// The older channel first.
    pub a: usize,
    pub b: usize,
    /// The bridges between them (one, or one per Local pair on the way).
    pub bridges: Vec<String>,
}

#[derive(Debug)]
pub struct Single {
    pub chan: usize,
    /// Where the channel's Local chain ends (the channel itself without one):
    /// its application is the service.
    pub end: usize,
}

/// Where following a channel's bridge peer (and Local pairs) leads.
enum End {
    /// Another party: a non-Local channel in a two-party bridge with the chain.
    Party(usize, Vec<String>),
    /// The chain stops at this channel (maybe the start): not bridged, in a
    /// bridge of 1 or 3+ members, or a Local half whose twin is gone.
    Stop(usize),
}

struct Index<'a> {
    chans: &'a [Chan],
    by_name: HashMap<&'a str, usize>,
    members: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Index<'a> {
    fn new(chans: &'a [Chan]) -> Self {
        let mut by_name = HashMap::new();
        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, c) in chans.iter().enumerate() {
            by_name.insert(c.name.as_str(), i);
            if !c.bridge.is_empty() {
                members.entry(c.bridge.as_str()).or_default().push(i);
            }
        }
        Index {
            chans,
            by_name,
            members,
        }
    }

    /// The other member of a two-party bridge.
    fn peer(&self, i: usize) -> Option<usize> {
        let m = self.members.get(self.chans[i].bridge.as_str())?;
        match m.as_slice() {
            [x, y] if *x == i => Some(*y),
            [x, y] if *y == i => Some(*x),
            _ => None,
        }
    }

    fn follow(&self, start: usize) -> End {
        let mut seen = HashSet::from([start]);
        let mut bridges = Vec::new();
        let mut cur = start;
        loop {
            let Some(p) = self.peer(cur) else {
                return End::Stop(cur);
            };
            bridges.push(self.chans[cur].bridge.clone());
            let pc = &self.chans[p];
            if !pc.is_local() {
                return if pc.is_plumbing() || seen.contains(&p) {
                    End::Stop(cur)
                } else {
                    End::Party(p, bridges)
                };
            }
            let twin = pc
                .local_twin()
                .and_then(|t| self.by_name.get(t.as_str()).copied());
            match twin {
                Some(t) if seen.insert(p) && seen.insert(t) => cur = t,
                _ => return End::Stop(p),
            }
        }
    }
}

/// Groups the channels into calls. Plumbing channels appear in neither list.
pub fn resolve(chans: &[Chan]) -> View {
    let index = Index::new(chans);
    let mut order: Vec<usize> = (0..chans.len()).collect();
    order.sort_by_key(|i| chans[*i].order());
    let mut used = HashSet::new();
    let mut view = View::default();
    for &i in &order {
        if chans[i].is_plumbing() || used.contains(&i) {
            continue;
        }
        match index.follow(i) {
            End::Party(p, bridges) if !used.contains(&p) => {
                used.insert(i);
                used.insert(p);
                // `order` is sorted, so `i` is the older one.
                view.pairs.push(Pair {
                    a: i,
                    b: p,
                    bridges,
                });
            }
            End::Party(..) => view.singles.push(Single { chan: i, end: i }),
            End::Stop(end) => view.singles.push(Single { chan: i, end }),
        }
    }
    view
}

/// The party at the other end of `i`'s call, through Local chains, if it is
/// in a two-party call.
pub fn far_end(chans: &[Chan], i: usize) -> Option<usize> {
    match Index::new(chans).follow(i) {
        End::Party(p, _) => Some(p),
        End::Stop(_) => None,
    }
}

/// The UCM `service` of a channel running `application`.
fn service(application: &str) -> &'static str {
    match application.to_ascii_lowercase().as_str() {
        "queue" => "queue",
        "confbridge" => "confbridge",
        "meetme" => "meetme",
        "voicemail" | "voicemailmain" => "voicemail",
        _ => "normal",
    }
}

fn format_time(unix: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// An ARI `creationtime` (`2026-01-05T10:30:12.345+0000`) in Unix seconds.
pub fn parse_ari_time(s: &str) -> Option<i64> {
    jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%z", s)
        .or_else(|_| s.parse::<jiff::Timestamp>())
        .ok()
        .map(|t| t.as_second())
}

/// The `listBridgedChannels` items, oldest first. `bridge_times` (bridge id
/// -> Unix seconds, from ARI) gives `bridge_time`; without it, the time the
/// younger party's channel was created stands in (it rang before it was
/// bridged, so this is a little early).
pub fn bridged_items(
    chans: &[Chan],
    view: &View,
    bridge_times: &HashMap<String, i64>,
    tz: &jiff::tz::TimeZone,
) -> Vec<Map<String, Value>> {
    view.pairs
        .iter()
        .map(|p| {
            let (a, b) = (&chans[p.a], &chans[p.b]);
            let when = p
                .bridges
                .iter()
                .filter_map(|id| bridge_times.get(id).copied())
                .max()
                .unwrap_or(a.created.max(b.created));
            object(json!({
                "channel1": a.name,
                "callerid1": a.caller_num,
                "name1": a.caller_name,
                "channel2": b.name,
                "callerid2": b.caller_num,
                "name2": b.caller_name,
                "bridge_time": format_time(when, tz),
            }))
        })
        .collect()
}

/// The `listUnBridgedChannels` items, oldest first.
pub fn unbridged_items(
    chans: &[Chan],
    view: &View,
    tz: &jiff::tz::TimeZone,
) -> Vec<Map<String, Value>> {
    view.singles
        .iter()
        .map(|s| {
            let c = &chans[s.chan];
            object(json!({
                "channel": c.name,
                "callernum": c.caller_num,
                "callername": c.caller_name,
                "connectednum": c.connected_num,
                "connectedname": c.connected_name,
                "state": c.state,
                "service": service(&chans[s.end].application),
                "alloc_time": format_time(c.created, tz),
            }))
        })
        .collect()
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::{Paging, page};
    use ucm::{Params, Status};

    const NOW: i64 = 1_795_774_600;

    fn chan(name: &str, uniqueid: &str, bridge: &str, app: &str) -> Chan {
        let mut m = Message::new();
        for (k, v) in [
            ("Event", "CoreShowChannel"),
            ("Channel", name),
            ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "1001"),
            ("CallerIDName", "<unknown>"),
            ("ConnectedLineNum", "1000"),
            ("ConnectedLineName", "Ext 1000"),
            ("Uniqueid", uniqueid),
            ("Application", app),
            ("Duration", "00:00:10"),
            ("BridgeId", bridge),
        ] {
            m.push(k, v);
        }
        Chan::from_event(&m, NOW).unwrap()
    }

    fn names(chans: &[Chan], v: &View) -> (Vec<(String, String)>, Vec<String>) {
        (
            v.pairs
                .iter()
                .map(|p| (chans[p.a].name.clone(), chans[p.b].name.clone()))
                .collect(),
            v.singles
                .iter()
                .map(|s| chans[s.chan].name.clone())
                .collect(),
        )
    }

    #[test]
    fn event_fields_and_creation_time() {
        let c = chan("PJSIP/1001-00000001", "1795774590.7", "b1", "Dial");
        assert_eq!(c.caller_name, "");
        assert_eq!(c.connected_name, "Ext 1000");
        assert_eq!((c.created, c.seq), (1_795_774_590, 7));
        // A chosen id, or one far from now - Duration: the estimate.
        let c = chan("PJSIP/1001-00000001", "pbxgate-x", "", "");
        assert_eq!(c.created, NOW - 10);
        let c = chan("PJSIP/1001-00000001", "1000000000.1", "", "");
        assert_eq!(c.created, NOW - 10);
        let c = chan("PJSIP/1001-00000001", "host-1795774591.3", "", "");
        assert_eq!(c.created, 1_795_774_591);
        assert_eq!(duration_secs("100:00:01"), Some(360_001));
        assert_eq!(duration_secs("1:2"), None);
        let mut m = Message::new();
        m.push("Event", "CoreShowChannelsComplete");
        assert!(Chan::from_event(&m, NOW).is_none());
    }

    #[test]
    fn a_plain_call_is_one_pair_oldest_first() {
        let chans = vec![
            chan("PJSIP/1000-00000002", "1795774590.2", "b1", "AppDial"),
            chan("PJSIP/1001-00000001", "1795774590.1", "b1", "Dial"),
            chan("PJSIP/1099-00000003", "1795774591.3", "", "AppDial"),
        ];
        let v = resolve(&chans);
        let (pairs, singles) = names(&chans, &v);
        assert_eq!(
            pairs,
            vec![("PJSIP/1001-00000001".into(), "PJSIP/1000-00000002".into())]
        );
        assert_eq!(singles, vec!["PJSIP/1099-00000003".to_owned()]);
    }

    #[test]
    fn local_chains_are_followed_and_hidden() {
        // Click-to-call: 1001 <-> Local;2 | Local;1 <-> 1000 (recordings keep
        // the Local pair from being optimised away).
        let chans = vec![
            chan(
                "Local/1001@from-internal-00000000;1",
                "1795774590.5",
                "b2",
                "Dial",
            ),
            chan(
                "Local/1001@from-internal-00000000;2",
                "1795774590.6",
                "b1",
                "Dial",
            ),
            chan("PJSIP/1001-00000004", "1795774590.7", "b1", "AppDial"),
            chan("PJSIP/1000-00000006", "1795774591.9", "b2", "AppDial"),
            chan(
                "Snoop/1795774591.9-00000000",
                "pbxgate-hold-x",
                "",
                "Stasis",
            ),
        ];
        let v = resolve(&chans);
        let (pairs, singles) = names(&chans, &v);
        assert_eq!(
            pairs,
            vec![("PJSIP/1001-00000004".into(), "PJSIP/1000-00000006".into())]
        );
        assert!(singles.is_empty(), "{singles:?}");
        assert_eq!(v.pairs[0].bridges, vec!["b1".to_owned(), "b2".to_owned()]);
        assert_eq!(far_end(&chans, 3), Some(2));
        assert_eq!(far_end(&chans, 2), Some(3));

        // The callee still ringing: 1001 is alone, the service is what the
        // far Local half runs (here a queue).
        let chans = vec![
            chan(
                "Local/6000@from-internal-00000001;1",
                "1795774590.5",
                "",
                "Queue",
            ),
            chan(
                "Local/6000@from-internal-00000001;2",
                "1795774590.6",
                "b1",
                "Dial",
            ),
            chan("PJSIP/1001-00000004", "1795774590.7", "b1", "AppDial"),
        ];
        let v = resolve(&chans);
        let (pairs, singles) = names(&chans, &v);
        assert!(pairs.is_empty());
        assert_eq!(singles, vec!["PJSIP/1001-00000004".to_owned()]);
        let tz = jiff::tz::TimeZone::UTC;
        let items = unbridged_items(&chans, &v, &tz);
        assert_eq!(items[0]["service"], "queue");
        assert_eq!(far_end(&chans, 2), None);
    }

    #[test]
    fn conferences_and_lone_bridge_members_are_unbridged() {
        let chans = vec![
            chan("PJSIP/1000-00000001", "1795774590.1", "c", "ConfBridge"),
            chan("PJSIP/1001-00000002", "1795774590.2", "c", "ConfBridge"),
            chan("PJSIP/1002-00000003", "1795774590.3", "c", "ConfBridge"),
            chan("PJSIP/1003-00000004", "1795774590.4", "alone", "BridgeWait"),
        ];
        let v = resolve(&chans);
        assert!(v.pairs.is_empty());
        assert_eq!(v.singles.len(), 4);
        let items = unbridged_items(&chans, &v, &jiff::tz::TimeZone::UTC);
        assert_eq!(items[0]["service"], "confbridge");
        assert_eq!(items[3]["service"], "normal");
        assert_eq!(items[0]["alloc_time"], "2026-11-27 10:16:30");
        assert_eq!(items[0]["callername"], "");
    }

    #[test]
    fn bridge_time_from_ari_else_the_younger_channel() {
        let chans = vec![
            chan("PJSIP/1001-00000001", "1795774590.1", "b1", "Dial"),
            chan("PJSIP/1000-00000002", "1795774591.2", "b1", "AppDial"),
        ];
        let v = resolve(&chans);
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let items = bridged_items(&chans, &v, &HashMap::new(), &tz);
        assert_eq!(items[0]["bridge_time"], "2026-11-27 11:16:31");
        let t = parse_ari_time("2026-11-27T10:16:35.815+0000").unwrap();
        let items = bridged_items(&chans, &v, &HashMap::from([("b1".into(), t)]), &tz);
        assert_eq!(items[0]["bridge_time"], "2026-11-27 11:16:35");
        assert_eq!(items[0]["callerid1"], "1001");
        assert_eq!(items[0]["channel2"], "PJSIP/1000-00000002");
        assert_eq!(
            items[0].keys().collect::<Vec<_>>(),
            [
                "channel1",
                "callerid1",
                "name1",
                "channel2",
                "callerid2",
                "name2",
                "bridge_time"
            ]
        );
    }

    fn params(v: Value) -> Params {
        let mut req = v;
        req["action"] = json!("x");
        ucm::parse_request(json!({ "request": req }).to_string().as_bytes())
            .unwrap()
            .params
    }

    #[test]
    fn paging_sorting_and_options() {
        let items: Vec<Map<String, Value>> = ["3", "10", "2"]
            .iter()
            .map(|n| object(json!({"callerid1": n, "name1": format!("n{n}")})))
            .collect();
        let p = Paging::from_params(&params(
            json!({"page": "2", "item_num": 2, "sidx": "callerid1", "sord": "asc"}),
        ))
        .unwrap();
        let out = page(items.clone(), "channel", &p);
        assert_eq!(
            out,
            json!({"channel": [{"callerid1": "10", "name1": "n10"}], "total_item": 3, "total_page": 2, "page": 2})
        );
        let p = Paging::from_params(&params(
            json!({"sidx": "callerid1", "sord": "DESC", "options": "name1"}),
        ))
        .unwrap();
        let out = page(items.clone(), "channel", &p);
        assert_eq!(
            out["channel"],
            json!([{"name1": "n10"}, {"name1": "n3"}, {"name1": "n2"}])
        );
        assert_eq!(out["total_page"], 1);
        // Unknown sort field: the given order.
        let p = Paging::from_params(&params(json!({"sidx": "nope"}))).unwrap();
        assert_eq!(page(items, "channel", &p)["channel"][0]["callerid1"], "3");
        // Empty list.
        let p = Paging::from_params(&params(json!({}))).unwrap();
        assert_eq!(
            page(Vec::new(), "channel", &p),
            json!({"channel": [], "total_item": 0, "total_page": 0, "page": 1})
        );
        for bad in [
            json!({"page": 0}),
            json!({"item_num": "x"}),
            json!({"page": -1}),
        ] {
            let e = Paging::from_params(&params(bad.clone())).unwrap_err();
            assert_eq!(e.status(), Status::InvalidValue, "{bad}");
        }
        assert_eq!(
            Paging::from_params(&params(json!({"sidx": {"a": 1}})))
                .unwrap_err()
                .status(),
            Status::InvalidParameters
        );
    }
}
