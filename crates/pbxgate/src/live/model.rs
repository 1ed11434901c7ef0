//! What clients see of Asterisk's channels: the legs and two-party calls of
//! `listUnBridgedChannels` / `listBridgedChannels` and of the websocket's
//! `ActiveCallStatus` items (`chantype` `"unbridge"` / `"bridge"`, spec
//! §6.2). Both are drawn from one [`Projection`] of the channels, so the
//! lists and the events cannot disagree. Pure: channels in, items out.
//!
//! What is shown:
//! - A *bridged* item is a two-party call: two channels in one bridge of
//!   exactly two members. Local channels are plumbing and never shown: a
//!   chain `A = Local;2 … Local;1 = B` (click-to-call, queue members, anything
//!   dialled through a `Local/` channel whose pair is not optimised away) is
//!   one item `A`–`B`. `Snoop/` channels (spying, pbxgate's hold) are not
//!   shown either.
//! - Every other channel is *unbridged*: ringing or dialling legs, legs
//!   hanging up after their partner left, channels running an application
//!   alone (IVR, voicemail, waiting in a queue through a Local channel), and
//!   the members of bridges of one or of three and more channels
//!   (conferences). `service` comes from the application at the far end of
//!   the channel's Local chain, else its own.
//! - `channel1` is the older channel of a pair (the caller, or the phone a
//!   click-to-call rang first).

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use asterisk::ami::Message;
use serde_json::{Map, Value, json};

/// One channel, as Asterisk reports it (AMI snapshots, `CoreShowChannels`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chan {
    pub name: String,
    pub uniqueid: String,
    pub linkedid: String,
    /// Asterisk's ChannelStateDesc: Down, Rsrvd, Ring, Ringing, Up, Busy, ...
    pub state: String,
    pub caller_num: String,
    pub caller_name: String,
    pub connected_num: String,
    pub connected_name: String,
    /// The UCM `service` of the application the channel runs.
    pub service: &'static str,
    /// Empty when the channel is in no bridge.
    pub bridge: String,
    /// Unix seconds when it entered `bridge`; 0 when unknown.
    pub bridged_at: i64,
    /// Unix seconds at creation.
    pub created: i64,
    /// Order among channels created in the same second (the uniqueid's counter).
    pub seq: u64,
    /// The trunk an inbound call came in on (this is its trunk leg).
    pub inbound_trunk: Option<String>,
    /// The trunk this leg dials out through.
    pub outbound_trunk: Option<String>,
}

/// A caller ID field; Asterisk writes `<unknown>` for an empty one.
/// AMI writes caller names C-escaped (`ast_escape_c`: `"` as `\"`, `\` as
/// `\\`, a newline as `\n`); clients get the name itself.
pub fn party(v: Option<&str>) -> String {
    match v {
        None | Some("<unknown>") => String::new(),
        Some(v) if !v.contains('\\') => v.to_owned(),
        Some(v) => {
            let mut out = String::with_capacity(v.len());
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('a') => out.push('\u{7}'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('v') => out.push('\u{b}'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            out
        }
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
    n(h)?
        .checked_mul(3600)?
        .checked_add(n(m)?.checked_mul(60)?)?
        .checked_add(n(sec)?)
}

/// When a channel was created. Asterisk's uniqueids are `[system-]<unix
/// seconds>.<counter>` unless someone chose the id (Originate `ChannelId`,
/// ARI), so the uniqueid is trusted when it agrees with the estimate
/// (`now - Duration`, or the event's time); else the estimate is used.
pub fn created_at(uniqueid: &str, estimate: Option<i64>, now: i64) -> (i64, u64) {
    let tail = uniqueid.rsplit('-').next().unwrap_or(uniqueid);
    if let Some((s, n)) = tail.split_once('.')
        && let (Ok(s), Ok(n)) = (s.parse::<i64>(), n.parse::<u64>())
        && estimate.is_none_or(|e| s.abs_diff(e) <= 2)
    {
        return (s, n);
    }
    (estimate.unwrap_or(now), 0)
}

/// The UCM `service` of a channel running `application`.
pub fn service(application: &str) -> &'static str {
    match application.to_ascii_lowercase().as_str() {
        "queue" => "queue",
        "confbridge" => "confbridge",
        "meetme" => "meetme",
        "voicemail" | "voicemailmain" => "voicemail",
        _ => "normal",
    }
}

impl Chan {
    /// A `CoreShowChannel` event; `None` for anything else.
    pub fn from_event(m: &Message, now: i64) -> Option<Chan> {
        if !m.event()?.eq_ignore_ascii_case("CoreShowChannel") {
            return None;
        }
        let name = m.get("Channel").filter(|n| !n.is_empty())?.to_owned();
        let uniqueid = m.get("Uniqueid").unwrap_or_default().to_owned();
        let estimate = m
            .get("Duration")
            .and_then(duration_secs)
            .and_then(|d| now.checked_sub(d));
        let (created, seq) = created_at(&uniqueid, estimate, now);
        Some(Chan {
            name,
            linkedid: m
                .get("Linkedid")
                .filter(|l| !l.is_empty())
                .unwrap_or(&uniqueid)
                .to_owned(),
            state: m.get("ChannelStateDesc").unwrap_or_default().to_owned(),
            caller_num: party(m.get("CallerIDNum")),
            caller_name: party(m.get("CallerIDName")),
            connected_num: party(m.get("ConnectedLineNum")),
            connected_name: party(m.get("ConnectedLineName")),
            uniqueid,
            service: service(m.get("Application").unwrap_or_default()),
            bridge: m.get("BridgeId").unwrap_or_default().to_owned(),
            bridged_at: 0,
            created,
            seq,
            inbound_trunk: None,
            outbound_trunk: None,
        })
    }

    fn is_local(&self) -> bool {
        self.name.starts_with("Local/")
    }

    /// Channels that are not a party of a call: Local halves, Snoop channels.
    fn is_plumbing(&self) -> bool {
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
    /// Every channel of the chain, `a` and `b` included.
    pub members: Vec<usize>,
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
    /// Another party: a non-Local channel in a two-party bridge with the
    /// chain; the bridges and channels on the way.
    Party(usize, Vec<String>, Vec<usize>),
    /// The chain stops at this channel (maybe the start): not bridged, in a
    /// bridge of 1 or 3+ members, or a Local half whose twin is gone.
    Stop(usize),
}

struct Index<'a, C> {
    chans: &'a [C],
    by_name: HashMap<&'a str, usize>,
    members: HashMap<&'a str, Vec<usize>>,
}

impl<'a, C: Borrow<Chan>> Index<'a, C> {
    fn new(chans: &'a [C]) -> Self {
        let mut by_name = HashMap::new();
        let mut members: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, c) in chans.iter().enumerate() {
            let c = c.borrow();
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

    fn chan(&self, i: usize) -> &'a Chan {
        self.chans[i].borrow()
    }

    /// The other member of a two-party bridge.
    fn peer(&self, i: usize) -> Option<usize> {
        let m = self.members.get(self.chan(i).bridge.as_str())?;
        match m.as_slice() {
            [x, y] if *x == i => Some(*y),
            [x, y] if *y == i => Some(*x),
            _ => None,
        }
    }

    fn follow(&self, start: usize) -> End {
        let mut seen = HashSet::from([start]);
        let mut bridges = Vec::new();
        let mut path = vec![start];
        let mut cur = start;
        loop {
            let Some(p) = self.peer(cur) else {
                return End::Stop(cur);
            };
            bridges.push(self.chan(cur).bridge.clone());
            let pc = self.chan(p);
            if !pc.is_local() {
                return if pc.is_plumbing() || seen.contains(&p) {
                    End::Stop(cur)
                } else {
                    path.push(p);
                    End::Party(p, bridges, path)
                };
            }
            let twin = pc
                .local_twin()
                .and_then(|t| self.by_name.get(t.as_str()).copied());
            match twin {
                Some(t) if seen.insert(p) && seen.insert(t) => {
                    path.extend([p, t]);
                    cur = t;
                }
                _ => return End::Stop(p),
            }
        }
    }
}

/// Groups the channels into calls. Plumbing channels appear in neither list.
pub fn resolve<C: Borrow<Chan>>(chans: &[C]) -> View {
    let index = Index::new(chans);
    let mut order: Vec<usize> = (0..chans.len()).collect();
    // Creation order; the name settles ties, so that the answer never
    // depends on the order the channels were given in.
    order.sort_by(|x, y| {
        let (x, y) = (index.chan(*x), index.chan(*y));
        x.order().cmp(&y.order()).then_with(|| x.name.cmp(&y.name))
    });
    let mut used = HashSet::new();
    let mut view = View::default();
    for &i in &order {
        if index.chan(i).is_plumbing() || used.contains(&i) {
            continue;
        }
        match index.follow(i) {
            End::Party(p, bridges, members) if !used.contains(&p) => {
                used.insert(i);
                used.insert(p);
                // `order` is sorted, so `i` is the older one.
                view.pairs.push(Pair {
                    a: i,
                    b: p,
                    bridges,
                    members,
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
pub fn far_end<C: Borrow<Chan>>(chans: &[C], i: usize) -> Option<usize> {
    match Index::new(chans).follow(i) {
        End::Party(p, ..) => Some(p),
        End::Stop(_) => None,
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

/// `chantype` of the items of legs alone.
pub const UNBRIDGE: &str = "unbridge";
/// `chantype` of the items of two-party calls.
pub const BRIDGE: &str = "bridge";

/// A leg alone: ringing, dialling, hanging up, or in an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbridged {
    pub channel: String,
    pub uniqueid: String,
    pub linkedid: String,
    pub state: String,
    pub service: &'static str,
    pub callername: String,
    pub callernum: String,
    pub connectedname: String,
    pub connectednum: String,
    /// `YYYY-MM-DD HH:MM:SS` in the PBX time zone.
    pub alloc_time: String,
    pub inbound_trunk: Option<String>,
    pub outbound_trunk: Option<String>,
}

impl Unbridged {
    fn fields(&self, m: &mut Map<String, Value>) {
        for (k, v) in [
            ("uniqueid", json!(self.uniqueid)),
            ("linkedid", json!(self.linkedid)),
            ("state", json!(self.state)),
            ("service", json!(self.service)),
            ("callername", json!(self.callername)),
            ("callernum", json!(self.callernum)),
            ("connectedname", json!(self.connectedname)),
            ("connectednum", json!(self.connectednum)),
            // All legs of one call share it (see docs/compatibility.md).
            ("callid", json!(self.linkedid)),
            ("alloc_time", json!(self.alloc_time)),
            ("inbound_trunk_name", json!(self.inbound_trunk)),
            ("outbound_trunk_name", json!(self.outbound_trunk)),
            // The feature (queue, ring group, ...) number called: no source.
            ("feature_calleenum", json!("")),
        ] {
            m.insert(k.to_owned(), v);
        }
    }

    /// The `listUnBridgedChannels` item.
    pub fn list_item(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("channel".into(), json!(self.channel));
        self.fields(&mut m);
        m
    }

    /// The `ActiveCallStatus` `add` / `update` item.
    pub fn event(&self, action: &str) -> Value {
        let mut m = Map::new();
        m.insert("channel".into(), json!(self.channel));
        m.insert("chantype".into(), json!(UNBRIDGE));
        m.insert("action".into(), json!(action));
        self.fields(&mut m);
        Value::Object(m)
    }

    /// A `delete` item carries only the channel.
    pub fn delete(&self) -> Value {
        json!({"channel": self.channel, "chantype": UNBRIDGE, "action": "delete"})
    }
}

/// Two parties connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridged {
    pub channel1: String,
    pub callerid1: String,
    pub name1: String,
    pub channel2: String,
    pub callerid2: String,
    pub name2: String,
    /// When the two were connected, `YYYY-MM-DD HH:MM:SS` in the PBX time zone.
    pub bridge_time: String,
    pub linkedid: String,
    pub inbound_trunk: Option<String>,
    pub outbound_trunk: Option<String>,
}

impl Bridged {
    fn fields(&self, m: &mut Map<String, Value>) {
        for (k, v) in [
            ("channel1", json!(self.channel1)),
            ("callerid1", json!(self.callerid1)),
            ("name1", json!(self.name1)),
            ("channel2", json!(self.channel2)),
            ("callerid2", json!(self.callerid2)),
            ("name2", json!(self.name2)),
            ("bridge_time", json!(self.bridge_time)),
            ("linkedid", json!(self.linkedid)),
            ("inbound_trunk_name", json!(self.inbound_trunk)),
            ("outbound_trunk_name", json!(self.outbound_trunk)),
        ] {
            m.insert(k.to_owned(), v);
        }
    }

    /// The `listBridgedChannels` item.
    pub fn list_item(&self) -> Map<String, Value> {
        let mut m = Map::new();
        self.fields(&mut m);
        m
    }

    /// The `ActiveCallStatus` `add` / `update` item.
    pub fn event(&self, action: &str) -> Value {
        let mut m = Map::new();
        m.insert("chantype".into(), json!(BRIDGE));
        m.insert("action".into(), json!(action));
        self.fields(&mut m);
        Value::Object(m)
    }

    /// A `delete` item names the two channels only: `channel` (the first)
    /// and `channel2`, as a UCM's.
    pub fn delete(&self) -> Value {
        json!({
            "channel": self.channel1,
            "channel2": self.channel2,
            "chantype": BRIDGE,
            "action": "delete",
        })
    }

    fn key(&self) -> (&str, &str) {
        (&self.channel1, &self.channel2)
    }
}

/// Everything clients are shown, oldest first in each list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    pub bridged: Vec<Bridged>,
    pub unbridged: Vec<Unbridged>,
}

/// What clients see of `chans`.
pub fn project<C: Borrow<Chan>>(chans: &[C], tz: &jiff::tz::TimeZone) -> Projection {
    let view = resolve(chans);
    let chan = |i: usize| -> &Chan { chans[i].borrow() };
    let bridged = view
        .pairs
        .iter()
        .map(|p| {
            let (a, b) = (chan(p.a), chan(p.b));
            // Connected when the last of the chain entered its bridge.
            let entered = p
                .members
                .iter()
                .map(|i| chan(*i).bridged_at)
                .max()
                .unwrap_or(0);
            let when = if entered > 0 {
                entered
            } else {
                a.created.max(b.created)
            };
            Bridged {
                channel1: a.name.clone(),
                callerid1: a.caller_num.clone(),
                name1: a.caller_name.clone(),
                channel2: b.name.clone(),
                callerid2: b.caller_num.clone(),
                name2: b.caller_name.clone(),
                bridge_time: format_time(when, tz),
                linkedid: a.linkedid.clone(),
                inbound_trunk: a.inbound_trunk.clone().or_else(|| b.inbound_trunk.clone()),
                outbound_trunk: b
                    .outbound_trunk
                    .clone()
                    .or_else(|| a.outbound_trunk.clone()),
            }
        })
        .collect();
    let unbridged = view
        .singles
        .iter()
        .map(|s| {
            let c = chan(s.chan);
            Unbridged {
                channel: c.name.clone(),
                uniqueid: c.uniqueid.clone(),
                linkedid: c.linkedid.clone(),
                state: c.state.clone(),
                service: chan(s.end).service,
                callername: c.caller_name.clone(),
                callernum: c.caller_num.clone(),
                connectedname: c.connected_name.clone(),
                connectednum: c.connected_num.clone(),
                alloc_time: format_time(c.created, tz),
                inbound_trunk: c.inbound_trunk.clone(),
                outbound_trunk: c.outbound_trunk.clone(),
            }
        })
        .collect();
    Projection { bridged, unbridged }
}

/// The `ActiveCallStatus` items that take a client from `before` to
/// `after`. Order: calls that ended, calls connected, calls changed, then
/// legs that appeared, changed and went. A pair's `add` thus comes before
/// the `delete`s of its ringing legs, and a pair's `delete` before its legs
/// reappear alone (hanging up, or transferred).
pub fn diff(before: &Projection, after: &Projection) -> Vec<Value> {
    let old_b: HashMap<(&str, &str), &Bridged> =
        before.bridged.iter().map(|b| (b.key(), b)).collect();
    let new_b: HashMap<(&str, &str), &Bridged> =
        after.bridged.iter().map(|b| (b.key(), b)).collect();
    let old_u: HashMap<&str, &Unbridged> = before
        .unbridged
        .iter()
        .map(|u| (u.channel.as_str(), u))
        .collect();
    let new_u: HashMap<&str, &Unbridged> = after
        .unbridged
        .iter()
        .map(|u| (u.channel.as_str(), u))
        .collect();
    let mut out = Vec::new();
    out.extend(
        before
            .bridged
            .iter()
            .filter(|b| !new_b.contains_key(&b.key()))
            .map(Bridged::delete),
    );
    out.extend(
        after
            .bridged
            .iter()
            .filter(|b| !old_b.contains_key(&b.key()))
            .map(|b| b.event("add")),
    );
    out.extend(
        after
            .bridged
            .iter()
            .filter(|b| old_b.get(&b.key()).is_some_and(|o| *o != *b))
            .map(|b| b.event("update")),
    );
    out.extend(
        after
            .unbridged
            .iter()
            .filter(|u| !old_u.contains_key(u.channel.as_str()))
            .map(|u| u.event("add")),
    );
    out.extend(
        after
            .unbridged
            .iter()
            .filter(|u| old_u.get(u.channel.as_str()).is_some_and(|o| *o != *u))
            .map(|u| u.event("update")),
    );
    out.extend(
        before
            .unbridged
            .iter()
            .filter(|u| !new_u.contains_key(u.channel.as_str()))
            .map(Unbridged::delete),
    );
    out
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
    fn ami_escapes_in_caller_names_are_undone() {
        assert_eq!(party(Some(r#"Bob \\\"Q\\\" B"#)), r#"Bob \"Q\" B"#);
        assert_eq!(party(Some(r#"a\"b\\c\nd"#)), "a\"b\\c\nd");
        assert_eq!(party(Some("plain")), "plain");
        assert_eq!(party(Some("<unknown>")), "");
        assert_eq!(party(Some("trailing\\")), "trailing\\");
        assert_eq!(party(None), "");
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
        let shown = project(&chans, &tz);
        assert_eq!(shown.unbridged[0].service, "queue");
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
        let items: Vec<_> = project(&chans, &jiff::tz::TimeZone::UTC)
            .unbridged
            .iter()
            .map(Unbridged::list_item)
            .collect();
        assert_eq!(items[0]["service"], "confbridge");
        assert_eq!(items[3]["service"], "normal");
        assert_eq!(items[0]["alloc_time"], "2026-11-27 10:16:30");
        assert_eq!(items[0]["callername"], "");
        assert_eq!(items[0]["linkedid"], "1795774590.1");
        assert_eq!(items[0]["inbound_trunk_name"], Value::Null);
    }

    #[test]
    fn bridge_time_is_when_the_last_party_entered_else_the_younger_channel() {
        let mut chans = vec![
            chan("PJSIP/1001-00000001", "1795774590.1", "b1", "Dial"),
            chan("PJSIP/1000-00000002", "1795774591.2", "b1", "AppDial"),
        ];
        let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let items = |chans: &[Chan]| -> Vec<Map<String, Value>> {
            project(chans, &tz)
                .bridged
                .iter()
                .map(Bridged::list_item)
                .collect()
        };
        assert_eq!(items(&chans)[0]["bridge_time"], "2026-11-27 11:16:31");
        let t = parse_ari_time("2026-11-27T10:16:35.815+0000").unwrap();
        chans[0].bridged_at = t - 2;
        chans[1].bridged_at = t;
        let items = items(&chans);
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
                "bridge_time",
                "linkedid",
                "inbound_trunk_name",
                "outbound_trunk_name",
            ]
        );
    }

    fn leg(name: &str, state: &str) -> Unbridged {
        Unbridged {
            channel: name.into(),
            uniqueid: format!("u-{name}"),
            linkedid: "l".into(),
            state: state.into(),
            service: "normal",
            callername: String::new(),
            callernum: "1000".into(),
            connectedname: String::new(),
            connectednum: "555".into(),
            alloc_time: "2026-11-27 10:16:30".into(),
            inbound_trunk: None,
            outbound_trunk: None,
        }
    }

    fn pair(a: &str, b: &str) -> Bridged {
        Bridged {
            channel1: a.into(),
            callerid1: "555".into(),
            name1: String::new(),
            channel2: b.into(),
            callerid2: "1000".into(),
            name2: String::new(),
            bridge_time: "2026-11-27 10:16:40".into(),
            linkedid: "l".into(),
            inbound_trunk: Some("trunk".into()),
            outbound_trunk: None,
        }
    }

    fn kinds(items: &[Value]) -> Vec<String> {
        items
            .iter()
            .map(|i| {
                format!(
                    "{} {} {}",
                    i["chantype"].as_str().unwrap(),
                    i["action"].as_str().unwrap(),
                    i["channel"].as_str().or(i["channel1"].as_str()).unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn the_diff_connects_before_it_removes_and_ends_before_it_adds() {
        let ringing = Projection {
            bridged: vec![],
            unbridged: vec![leg("T", "Ring"), leg("E", "Ringing")],
        };
        let talking = Projection {
            bridged: vec![pair("T", "E")],
            unbridged: vec![],
        };
        let hanging = Projection {
            bridged: vec![],
            unbridged: vec![leg("T", "Up"), leg("E", "Up")],
        };
        assert!(diff(&ringing, &ringing).is_empty());
        let items = diff(&Projection::default(), &ringing);
        assert_eq!(kinds(&items), ["unbridge add T", "unbridge add E"]);
        assert_eq!(items[0]["state"], "Ring");
        let items = diff(&ringing, &talking);
        assert_eq!(
            kinds(&items),
            ["bridge add T", "unbridge delete T", "unbridge delete E"]
        );
        assert_eq!(items[0]["channel2"], "E");
        assert_eq!(items[0]["inbound_trunk_name"], "trunk");
        // A delete carries the names only.
        assert_eq!(
            items[1],
            json!({"channel": "T", "chantype": "unbridge", "action": "delete"})
        );
        let items = diff(&talking, &hanging);
        assert_eq!(
            kinds(&items),
            ["bridge delete T", "unbridge add T", "unbridge add E"]
        );
        assert_eq!(
            items[0],
            json!({"channel": "T", "channel2": "E", "chantype": "bridge", "action": "delete"})
        );
        // A changed field is an update of the same key.
        let mut later = talking.clone();
        later.bridged[0].callerid2 = "1001".into();
        let items = diff(&talking, &later);
        assert_eq!(kinds(&items), ["bridge update T"]);
        assert_eq!(items[0]["callerid2"], "1001");
        // A new partner is another call: the old pair ends first.
        let transferred = Projection {
            bridged: vec![pair("T", "F")],
            unbridged: vec![leg("E", "Up")],
        };
        assert_eq!(
            kinds(&diff(&talking, &transferred)),
            ["bridge delete T", "bridge add T", "unbridge add E"]
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
        let object = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
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
