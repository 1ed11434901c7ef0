//! The tracker behind `ActiveCallStatus` and the two channel lists, and the
//! mapping of AMI `ExtensionStatus` events. Pure: events in, notification
//! items out; the task that feeds it is in `live::start`.
//!
//! The tracker keeps every channel Asterisk reports (keyed by uniqueid: ARI's
//! channel id is the same value, so AMI and ARI, two sockets without a common
//! order, describe one channel) with its bridge. After each event it draws
//! the [`Projection`] clients see and sends the difference to the last one
//! drawn (`model::diff`); the lists answer from that same projection. Uniqueids of hung-up
//! channels are remembered for a while, so that an event arriving after the
//! hangup (ARI's, or one queued behind a resync) cannot bring one back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use asterisk::ami::Message;
use asterisk::ari::Channel as AriChannel;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::model::{self, Chan, Projection, created_at, party};

/// How many hung-up uniqueids are remembered against late events.
const GONE_REMEMBERED: usize = 4096;

/// A channel and what the tracker knows beyond Asterisk's snapshot.
struct Live {
    chan: Chan,
    /// Set when call control announced the leg (state Ring) before AMI had
    /// reported it past Down: AMI's older states do not undo the announcement.
    held_ring: bool,
}

/// The channel fields every AMI channel event carries (Asterisk 12+
/// snapshots).
struct Snapshot<'a> {
    channel: &'a str,
    uniqueid: &'a str,
    linkedid: &'a str,
    state: &'a str,
    callername: String,
    callernum: String,
    connectedname: String,
    connectednum: String,
}

impl<'a> Snapshot<'a> {
    fn of(m: &'a Message) -> Option<Snapshot<'a>> {
        let channel = m
            .get("Channel")
            .filter(|c| !c.is_empty() && !is_internal(c))?;
        let uniqueid = m.get("Uniqueid").filter(|u| !u.is_empty())?;
        Some(Snapshot {
            channel,
            uniqueid,
            linkedid: m
                .get("Linkedid")
                .filter(|l| !l.is_empty())
                .unwrap_or(uniqueid),
            state: m.get("ChannelStateDesc").unwrap_or(""),
            callername: party(m.get("CallerIDName")),
            callernum: party(m.get("CallerIDNum")),
            connectedname: party(m.get("ConnectedLineName")),
            connectednum: party(m.get("ConnectedLineNum")),
        })
    }

    /// Copies the snapshot into `leg`; the channel name is left to the caller.
    fn apply(self, leg: &mut Live) {
        let c = &mut leg.chan;
        self.linkedid.clone_into(&mut c.linkedid);
        if leg.held_ring && matches!(self.state, "Down" | "Rsrvd" | "") {
            // Older than call control's announcement: keep "Ring".
        } else {
            leg.held_ring = false;
            if !self.state.is_empty() {
                self.state.clone_into(&mut c.state);
            }
        }
        c.caller_name = self.callername;
        c.caller_num = self.callernum;
        c.connected_name = self.connectedname;
        c.connected_num = self.connectednum;
    }
}

/// The live channels and what clients were last shown of them.
pub struct Tracker {
    legs: HashMap<String, Live>,
    gone: VecDeque<String>,
    gone_set: HashSet<String>,
    tz: TimeZone,
    /// `[dialing] trunk_contexts`: a channel created ringing in one of these
    /// is an inbound call on a trunk.
    trunk_contexts: Vec<String>,
    shown: Arc<Projection>,
}

impl Tracker {
    pub fn new(tz: TimeZone, trunk_contexts: Vec<String>) -> Tracker {
        Tracker {
            legs: HashMap::new(),
            gone: VecDeque::new(),
            gone_set: HashSet::new(),
            tz,
            trunk_contexts,
            shown: Arc::default(),
        }
    }

    /// How many channels are tracked (Local and other hidden ones included).
    pub fn len(&self) -> usize {
        self.legs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }

    pub fn chan(&self, uniqueid: &str) -> Option<&Chan> {
        self.legs.get(uniqueid).map(|l| &l.chan)
    }

    /// What clients were last shown: the lists' answer.
    pub fn shown(&self) -> Arc<Projection> {
        self.shown.clone()
    }

    /// Draws the projection again; the items that take clients to it.
    fn redraw(&mut self) -> Vec<Value> {
        let chans: Vec<&Chan> = self.legs.values().map(|l| &l.chan).collect();
        let next = model::project(&chans, &self.tz);
        if next == *self.shown {
            return Vec::new();
        }
        let items = model::diff(&self.shown, &next);
        self.shown = Arc::new(next);
        items
    }

    fn forget(&mut self, uniqueid: &str) -> bool {
        if self.legs.remove(uniqueid).is_none() {
            return false;
        }
        if self.gone_set.insert(uniqueid.to_owned()) {
            self.gone.push_back(uniqueid.to_owned());
            while self.gone.len() > GONE_REMEMBERED {
                if let Some(old) = self.gone.pop_front() {
                    self.gone_set.remove(&old);
                }
            }
        }
        true
    }

    /// One AMI event; the `ActiveCallStatus` items it causes, in order.
    /// `now` dates what the event does not (no `Timestamp` header).
    pub fn ami(&mut self, m: &Message, now: Timestamp) -> Vec<Value> {
        if self.apply(m, now) {
            self.redraw()
        } else {
            Vec::new()
        }
    }

    /// Applies an event; whether anything changed.
    fn apply(&mut self, m: &Message, now: Timestamp) -> bool {
        let Some(event) = m.event() else {
            return false;
        };
        let at = event_time(m).unwrap_or(now);
        match event {
            "Newchannel" | "Newstate" | "NewCallerid" | "NewConnectedLine" | "Newexten"
            | "BridgeEnter" | "BridgeLeave" | "DialEnd" => {
                let Some(s) = Snapshot::of(m) else {
                    return false;
                };
                let uid = s.uniqueid.to_owned();
                let mut changed = self.upsert(s, m, at);
                if let Some(leg) = self.legs.get_mut(&uid) {
                    let c = &mut leg.chan;
                    let before = (c.service, c.bridge.clone(), c.bridged_at);
                    match event {
                        "Newexten" => {
                            if let Some(app) = m.get("Application") {
                                c.service = model::service(app);
                            }
                        }
                        "BridgeEnter" => {
                            if let Some(id) = m.get("BridgeUniqueid").filter(|b| !b.is_empty())
                                && c.bridge != id
                            {
                                id.clone_into(&mut c.bridge);
                                c.bridged_at = at.as_second();
                            }
                        }
                        // Only the bridge it is in: a late BridgeLeave (queued
                        // behind a resync) of an earlier bridge changes nothing.
                        "BridgeLeave" if m.get("BridgeUniqueid") == Some(c.bridge.as_str()) => {
                            c.bridge.clear();
                            c.bridged_at = 0;
                        }
                        _ => {}
                    }
                    changed |= before != (c.service, c.bridge.clone(), c.bridged_at);
                }
                changed
            }
            "Rename" => {
                let (Some(uid), Some(new)) = (m.get("Uniqueid"), m.get("Newname")) else {
                    return false;
                };
                match self.legs.get_mut(uid) {
                    Some(leg) if leg.chan.name != new && !new.is_empty() => {
                        new.clone_into(&mut leg.chan.name);
                        true
                    }
                    _ => false,
                }
            }
            "Hangup" => m.get("Uniqueid").is_some_and(|uid| self.forget(uid)),
            "DialBegin" => self.dial_begin(m),
            _ => false,
        }
    }

    /// Applies a snapshot, creating the channel if it is new; whether
    /// anything changed.
    fn upsert(&mut self, s: Snapshot<'_>, m: &Message, at: Timestamp) -> bool {
        if self.gone_set.contains(s.uniqueid) {
            return false;
        }
        if let Some(leg) = self.legs.get_mut(s.uniqueid) {
            let before = leg.chan.clone();
            if leg.chan.name != s.channel {
                s.channel.clone_into(&mut leg.chan.name);
            }
            s.apply(leg);
            return leg.chan != before;
        }
        let (created, seq) = created_at(s.uniqueid, Some(at.as_second()), at.as_second());
        // A trunk's inbound call starts ringing in the trunk's context; a
        // channel dialled out through a trunk starts Down there.
        let inbound_trunk = if m.event() == Some("Newchannel")
            && s.state == "Ring"
            && m.get("Context")
                .is_some_and(|c| self.trunk_contexts.iter().any(|t| t == c))
        {
            channel_endpoint(s.channel)
        } else {
            None
        };
        let mut leg = Live {
            chan: Chan {
                name: s.channel.to_owned(),
                uniqueid: s.uniqueid.to_owned(),
                service: "normal",
                created,
                seq,
                inbound_trunk,
                ..Chan::default()
            },
            held_ring: false,
        };
        let uid = s.uniqueid.to_owned();
        s.apply(&mut leg);
        self.legs.insert(uid, leg);
        true
    }

    /// `Dial(PJSIP/<number>@<endpoint>)` is how a dialplan sends a call to a
    /// trunk (a phone is dialled as `PJSIP/<endpoint>`): the new channel of
    /// that endpoint is an outbound trunk leg.
    fn dial_begin(&mut self, m: &Message) -> bool {
        let (Some(dest_uid), Some(dest), Some(dial)) = (
            m.get("DestUniqueid"),
            m.get("DestChannel"),
            m.get("DialString"),
        ) else {
            return false;
        };
        let Some((_, endpoint)) = dial.rsplit_once('@') else {
            return false;
        };
        if endpoint.is_empty()
            || endpoint.contains('/')
            || channel_endpoint(dest).as_deref() != Some(endpoint)
        {
            return false;
        }
        match self.legs.get_mut(dest_uid) {
            Some(leg) if leg.chan.outbound_trunk.as_deref() != Some(endpoint) => {
                leg.chan.outbound_trunk = Some(endpoint.to_owned());
                true
            }
            _ => false,
        }
    }

    /// ARI `StasisStart`. For an inbound call held by call control (`args`
    /// = `inbound`, DID) the leg is announced at once with its trunk and
    /// state `Ring`, whether AMI reported it already or not. Other Stasis
    /// channels are added if AMI has not done so.
    pub fn stasis_start(
        &mut self,
        channel: &AriChannel,
        args: &[String],
        now: Timestamp,
    ) -> Vec<Value> {
        if channel.id.is_empty()
            || channel.name.is_empty()
            || is_internal(&channel.name)
            || self.gone_set.contains(&channel.id)
        {
            return Vec::new();
        }
        let inbound = args.first().is_some_and(|a| a == "inbound");
        let trunk = if inbound {
            channel_endpoint(&channel.name)
        } else {
            None
        };
        if let Some(leg) = self.legs.get_mut(&channel.id) {
            if !inbound {
                return Vec::new();
            }
            leg.chan.inbound_trunk = trunk;
            if matches!(leg.chan.state.as_str(), "Down" | "Rsrvd" | "") {
                leg.chan.state = "Ring".into();
                leg.held_ring = true;
            }
            return self.redraw();
        }
        let (created, seq) = created_at(&channel.id, Some(now.as_second()), now.as_second());
        let leg = Live {
            chan: Chan {
                name: channel.name.clone(),
                uniqueid: channel.id.clone(),
                // AMI's Newchannel brings the real linkedid; an inbound trunk
                // channel starts its call, so its linkedid is its own id.
                linkedid: channel.id.clone(),
                state: if inbound || channel.state.is_empty() {
                    "Ring".into()
                } else {
                    channel.state.clone()
                },
                caller_name: channel.caller.name.clone(),
                caller_num: channel.caller.number.clone(),
                connected_name: channel.connected.name.clone(),
                connected_num: channel.connected.number.clone(),
                service: "normal",
                created,
                seq,
                inbound_trunk: trunk,
                ..Chan::default()
            },
            held_ring: inbound,
        };
        self.legs.insert(channel.id.clone(), leg);
        self.redraw()
    }

    /// Brings the channels in line with `CoreShowChannels` (after a
    /// reconnect or missed events): channels Asterisk no longer has go,
    /// new ones come, changed ones change. `bridge_times` (bridge id -> Unix
    /// seconds, from ARI) dates bridges joined while events were missed;
    /// without it, the channel's creation stands in.
    pub fn resync(
        &mut self,
        channels: &[Message],
        bridge_times: &HashMap<String, i64>,
        now: Timestamp,
    ) -> Vec<Value> {
        let listed: Vec<Chan> = channels
            .iter()
            .filter_map(|m| Chan::from_event(m, now.as_second()))
            .filter(|c| !c.uniqueid.is_empty() && !is_internal(&c.name))
            .collect();
        let live: HashSet<&str> = listed.iter().map(|c| c.uniqueid.as_str()).collect();
        let stale: Vec<String> = self
            .legs
            .keys()
            .filter(|u| !live.contains(u.as_str()))
            .cloned()
            .collect();
        for uid in stale {
            self.forget(&uid);
        }
        for mut c in listed {
            if self.gone_set.contains(&c.uniqueid) {
                continue;
            }
            match self.legs.get_mut(&c.uniqueid) {
                Some(leg) => {
                    let old = &leg.chan;
                    c.bridged_at = if c.bridge.is_empty() {
                        0
                    } else if c.bridge == old.bridge {
                        old.bridged_at
                    } else {
                        bridge_times.get(&c.bridge).copied().unwrap_or(c.created)
                    };
                    // What only events tell: kept.
                    c.created = old.created;
                    c.seq = old.seq;
                    c.inbound_trunk = old.inbound_trunk.clone();
                    c.outbound_trunk = old.outbound_trunk.clone();
                    if leg.held_ring && matches!(c.state.as_str(), "Down" | "Rsrvd" | "") {
                        c.state = "Ring".into();
                    }
                    leg.chan = c;
                }
                None => {
                    if !c.bridge.is_empty() {
                        c.bridged_at = bridge_times.get(&c.bridge).copied().unwrap_or(c.created);
                    }
                    self.legs.insert(
                        c.uniqueid.clone(),
                        Live {
                            chan: c,
                            held_ring: false,
                        },
                    );
                }
            }
        }
        self.redraw()
    }
}

/// pbxgate's own helper channels (the ARI snoop that plays hold music),
/// which are not calls.
fn is_internal(channel: &str) -> bool {
    channel.starts_with("Snoop/")
}

/// `trunk` of `PJSIP/trunk-00000002` (the CDR's `channel_ext` rule); `None`
/// for a name without the technology or the channel's sequence suffix.
pub fn channel_endpoint(channel: &str) -> Option<String> {
    let (_, rest) = channel.split_once('/')?;
    rest.rsplit_once('-')?;
    Some(asterisk::channel::channel_ext(channel)).filter(|e| !e.is_empty())
}

/// The event's `Timestamp` header (`manager.conf` `timestampevents = yes`).
fn event_time(m: &Message) -> Option<Timestamp> {
    let t = m.get("Timestamp")?;
    let (secs, frac) = t.split_once('.').unwrap_or((t, "0"));
    let secs = secs.parse::<i64>().ok()?;
    let micros = format!("{frac:0<6}").get(..6)?.parse::<i32>().ok()?;
    Timestamp::new(secs, micros.checked_mul(1000)?).ok()
}

/// An AMI `ExtensionStatus` event as an `ExtensionStatus` item
/// `{extension, status}`, with the UCM's spellings.
pub fn extension_status(m: &Message) -> Option<Value> {
    let extension = m.get("Exten").filter(|e| !e.is_empty())?;
    let status = match m.get("StatusText") {
        Some(text) => ucm_extension_status(text),
        None => match m.get("Status")?.trim().parse::<i32>().ok()? {
            0 => "Idle",
            1 => "InUse",
            2 => "Busy",
            8 | 9 => "Ringing",
            16 | 17 => "Hold",
            _ => "Unavailable",
        },
    };
    Some(json!({ "extension": extension, "status": status }))
}

/// Asterisk's extension state names -> the UCM's.
fn ucm_extension_status(text: &str) -> &'static str {
    match text {
        "Idle" | "NotInUse" => "Idle",
        "InUse" => "InUse",
        "Busy" => "Busy",
        "Ringing" | "InUse&Ringing" => "Ringing",
        "Hold" | "OnHold" | "InUse&Hold" => "Hold",
        // Unavailable, Unknown, Removed, Deactivated, ...
        _ => "Unavailable",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use asterisk::ami::Frame;
    use asterisk::ami::codec::{DEFAULT_MAX_MESSAGE, Decoder};

    fn recorded(text: &str) -> Vec<Message> {
        let mut d = Decoder::without_banner(DEFAULT_MAX_MESSAGE);
        d.extend(text.as_bytes());
        let mut out = Vec::new();
        while let Some(f) = d.next_frame() {
            if let Frame::Message(m) = f {
                out.push(m);
            }
        }
        out
    }

    fn msg(pairs: &[(&str, &str)]) -> Message {
        let mut m = Message::new();
        for (k, v) in pairs {
            m.push(*k, *v);
        }
        m
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    fn tracker(tz: TimeZone) -> Tracker {
        Tracker::new(tz, vec!["from-trunk".into()])
    }

    /// What a client builds from the items: it refuses an `add` of a key it
    /// has, and an `update` or `delete` of one it does not.
    #[derive(Default)]
    struct Client {
        unbridged: BTreeMap<String, Value>,
        bridged: BTreeMap<(String, String), Value>,
    }

    impl Client {
        fn apply(&mut self, item: &Value) {
            let action = item["action"].as_str().unwrap();
            let mut fields = item.as_object().unwrap().clone();
            fields.remove("chantype");
            fields.remove("action");
            match item["chantype"].as_str().unwrap() {
                "unbridge" => {
                    let key = item["channel"].as_str().unwrap().to_owned();
                    match action {
                        "add" => assert!(
                            self.unbridged.insert(key, fields.into()).is_none(),
                            "second add: {item}"
                        ),
                        "update" => {
                            *self.unbridged.get_mut(&key).expect("update of unknown") =
                                fields.into()
                        }
                        "delete" => {
                            assert_eq!(item.as_object().unwrap().len(), 3, "{item}");
                            assert!(
                                self.unbridged.remove(&key).is_some(),
                                "delete of unknown: {item}"
                            )
                        }
                        other => panic!("{other}"),
                    }
                }
                "bridge" => {
                    let key = match action {
                        "delete" => (&item["channel"], &item["channel2"]),
                        _ => (&item["channel1"], &item["channel2"]),
                    };
                    let key = (
                        key.0.as_str().unwrap().to_owned(),
                        key.1.as_str().unwrap().to_owned(),
                    );
                    match action {
                        "add" => assert!(
                            self.bridged.insert(key, fields.into()).is_none(),
                            "second add: {item}"
                        ),
                        "update" => {
                            *self.bridged.get_mut(&key).expect("update of unknown") = fields.into()
                        }
                        "delete" => {
                            assert_eq!(item.as_object().unwrap().len(), 4, "{item}");
                            assert!(
                                self.bridged.remove(&key).is_some(),
                                "delete of unknown: {item}"
                            )
                        }
                        other => panic!("{other}"),
                    }
                }
                other => panic!("chantype {other}: {item}"),
            }
        }

        /// The lists' answers are what the items built.
        fn agrees_with(&self, shown: &Projection) {
            let unbridged: BTreeMap<String, Value> = shown
                .unbridged
                .iter()
                .map(|u| (u.channel.clone(), u.list_item().into()))
                .collect();
            let bridged: BTreeMap<(String, String), Value> = shown
                .bridged
                .iter()
                .map(|b| {
                    (
                        (b.channel1.clone(), b.channel2.clone()),
                        b.list_item().into(),
                    )
                })
                .collect();
            assert_eq!(self.unbridged, unbridged);
            assert_eq!(self.bridged, bridged);
        }
    }

    /// Every item of a recorded call, checked against the lists after each
    /// event, with the ExtensionStatus items apart.
    fn replay(t: &mut Tracker, c: &mut Client, events: &[Message]) -> (Vec<Value>, Vec<Value>) {
        let mut items = Vec::new();
        let mut ext = Vec::new();
        for m in events {
            let new = t.ami(m, now());
            for i in &new {
                c.apply(i);
            }
            c.agrees_with(&t.shown());
            items.extend(new);
            if m.event() == Some("ExtensionStatus") {
                ext.extend(extension_status(m));
            }
        }
        (items, ext)
    }

    /// `chantype action channel[/channel2]` of the items about channels
    /// starting with one of `prefixes`.
    fn story(items: &[Value], prefixes: &[&str]) -> Vec<String> {
        let of = |v: &Value| {
            prefixes
                .iter()
                .any(|p| v.as_str().is_some_and(|s| s.starts_with(p)))
        };
        items
            .iter()
            .filter(|i| of(&i["channel"]) || of(&i["channel1"]) || of(&i["channel2"]))
            .map(|i| {
                let name = |v: &Value| {
                    let s = v.as_str().unwrap_or("");
                    s.split('-').next().unwrap_or(s).to_owned()
                };
                let who = match i["chantype"].as_str().unwrap() {
                    "bridge" if i["action"] == "delete" => {
                        format!("{}+{}", name(&i["channel"]), name(&i["channel2"]))
                    }
                    "bridge" => format!("{}+{}", name(&i["channel1"]), name(&i["channel2"])),
                    _ => name(&i["channel"]),
                };
                format!(
                    "{} {} {who}",
                    i["chantype"].as_str().unwrap(),
                    i["action"].as_str().unwrap()
                )
            })
            .collect()
    }

    fn without_updates(story: Vec<String>) -> Vec<String> {
        story
            .into_iter()
            .filter(|s| !s.contains(" update "))
            .collect()
    }

    const INTERNAL_STORY: &[&str] = &[
        "unbridge add PJSIP/1001",
        "unbridge add PJSIP/1000",
        "bridge add PJSIP/1001+PJSIP/1000",
        "unbridge delete PJSIP/1001",
        "unbridge delete PJSIP/1000",
        "bridge delete PJSIP/1001+PJSIP/1000",
        "unbridge add PJSIP/1001",
        "unbridge delete PJSIP/1001",
    ];

    #[test]
    fn an_internal_call_rings_connects_and_ends() {
        let events = recorded(include_str!("testdata/internal.ami"));
        let mut t = tracker(berlin());
        let mut c = Client::default();
        let (items, ext) = replay(&mut t, &mut c, &events);
        assert!(t.is_empty(), "every channel gone at hangup");
        assert!(c.unbridged.is_empty() && c.bridged.is_empty());
        assert_eq!(
            without_updates(story(&items, &["PJSIP/1001-", "PJSIP/1000-"])),
            INTERNAL_STORY
        );
        let add = items
            .iter()
            .find(|i| {
                i["channel"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("PJSIP/1001-"))
            })
            .unwrap();
        assert_eq!(add["chantype"], "unbridge");
        assert_eq!(add["action"], "add");
        assert_eq!(add["state"], "Ring");
        assert_eq!(add["callernum"], "1001");
        // The endpoint's caller ID (pjsip.conf), not the simulator's.
        assert_eq!(add["callername"], "Ext 1001");
        assert_eq!(add["uniqueid"], "1795774507.1");
        assert_eq!(add["linkedid"], "1795774507.1");
        assert_eq!(add["callid"], "1795774507.1");
        assert_eq!(add["service"], "normal");
        assert_eq!(add["inbound_trunk_name"], Value::Null);
        assert_eq!(add["outbound_trunk_name"], Value::Null);
        assert_eq!(add["feature_calleenum"], "");
        // Timestamp 1795774507.x is 2026-11-27 10:15:07 UTC.
        assert_eq!(add["alloc_time"], "2026-11-27 11:15:07");
        let bridge = items.iter().find(|i| i["chantype"] == "bridge").unwrap();
        assert_eq!(bridge["action"], "add");
        assert!(
            bridge["channel1"]
                .as_str()
                .unwrap()
                .starts_with("PJSIP/1001-")
        );
        assert!(
            bridge["channel2"]
                .as_str()
                .unwrap()
                .starts_with("PJSIP/1000-")
        );
        assert_eq!(bridge["callerid1"], "1001");
        assert_eq!(bridge["callerid2"], "1000");
        assert_eq!(bridge["linkedid"], "1795774507.1");
        // When the second party entered the bridge (event Timestamp).
        assert!(bridge["bridge_time"].as_str().unwrap() >= add["alloc_time"].as_str().unwrap());
        // The callee rang before it was connected.
        let callee: Vec<&str> = items
            .iter()
            .filter(|i| {
                i["chantype"] == "unbridge"
                    && i["channel"].as_str().unwrap().starts_with("PJSIP/1000-")
            })
            .filter_map(|i| i["state"].as_str())
            .collect();
        assert!(callee.contains(&"Ringing"), "{callee:?}");
        // Updates only when something changed.
        for w in items.windows(2) {
            assert_ne!(w[0], w[1]);
        }
        assert_eq!(
            ext,
            [
                json!({"extension":"1000","status":"Ringing"}),
                json!({"extension":"1001","status":"InUse"}),
                json!({"extension":"1000","status":"InUse"}),
                json!({"extension":"1000","status":"Unavailable"}),
                json!({"extension":"1001","status":"Unavailable"}),
            ]
        );
    }

    #[test]
    fn a_held_inbound_call_answered_then_transferred() {
        let events = recorded(include_str!("testdata/transfer.ami"));
        let mut t = tracker(berlin());
        let mut c = Client::default();
        let (items, _) = replay(&mut t, &mut c, &events);
        assert!(t.is_empty(), "every channel gone at hangup");
        let legs = ["PJSIP/trunk-", "PJSIP/1000-", "PJSIP/1001-"];
        assert_eq!(without_updates(story(&items, &legs)), TRANSFER_STORY);
        // The first item of the call: the trunk leg ringing, its trunk named
        // (a channel created ringing in a trunk context), from AMI alone.
        let first = &items[story_start(&items, "PJSIP/trunk-")];
        assert_eq!(first["chantype"], "unbridge");
        assert_eq!(first["action"], "add");
        assert_eq!(first["state"], "Ring");
        assert_eq!(first["inbound_trunk_name"], "trunk");
        assert_eq!(first["callernum"], "+15551234567");
        // The bridges: both channels; the second connected later.
        let bridges: Vec<&Value> = items
            .iter()
            .filter(|i| i["chantype"] == "bridge" && i["action"] == "add")
            .collect();
        assert_eq!(bridges.len(), 2, "{bridges:#?}");
        for b in &bridges {
            assert!(
                b["channel1"].as_str().unwrap().starts_with("PJSIP/trunk-"),
                "{b}"
            );
            assert_eq!(b["callerid1"], "+15551234567");
            assert_eq!(b["inbound_trunk_name"], "trunk");
        }
        assert!(
            bridges[0]["channel2"]
                .as_str()
                .unwrap()
                .starts_with("PJSIP/1000-")
        );
        assert!(
            bridges[1]["channel2"]
                .as_str()
                .unwrap()
                .starts_with("PJSIP/1001-")
        );
        assert!(bridges[0]["bridge_time"].as_str() < bridges[1]["bridge_time"].as_str());
    }

    fn story_start(items: &[Value], prefix: &str) -> usize {
        items
            .iter()
            .position(|i| i["channel"].as_str().is_some_and(|c| c.starts_with(prefix)))
            .unwrap()
    }

    const TRANSFER_STORY: &[&str] = &[
        "unbridge add PJSIP/trunk",
        "unbridge add PJSIP/1000",
        "bridge add PJSIP/trunk+PJSIP/1000",
        "unbridge delete PJSIP/trunk",
        "unbridge delete PJSIP/1000",
        "bridge delete PJSIP/trunk+PJSIP/1000",
        "unbridge add PJSIP/trunk",
        "unbridge add PJSIP/1000",
        "unbridge delete PJSIP/1000",
        "unbridge add PJSIP/1001",
        "bridge add PJSIP/trunk+PJSIP/1001",
        "unbridge delete PJSIP/trunk",
        "unbridge delete PJSIP/1001",
        "bridge delete PJSIP/trunk+PJSIP/1001",
        "unbridge add PJSIP/trunk",
        "unbridge add PJSIP/1001",
        "unbridge delete PJSIP/trunk",
        "unbridge delete PJSIP/1001",
    ];

    #[test]
    fn call_control_announces_a_held_call_whether_ami_or_ari_comes_first() {
        let events = recorded(include_str!("testdata/inbound.ami"));
        let trunk_new = events
            .iter()
            .position(|m| {
                m.event() == Some("Newchannel")
                    && m.get("Channel").unwrap().starts_with("PJSIP/trunk-")
            })
            .unwrap();
        let channel: AriChannel = serde_json::from_value(json!({
            "id": "1795774524.6",
            "name": "PJSIP/trunk-00000005",
            "state": "Ring",
            "caller": {"name": "Bob", "number": "+15551234567"},
        }))
        .unwrap();
        let args = vec!["inbound".to_owned(), "5550100".to_owned()];

        // Without trunk contexts, AMI alone does not know the trunk: ARI's
        // StasisStart after AMI's Newchannel is an update naming it.
        let mut t = Tracker::new(TimeZone::UTC, Vec::new());
        let mut c = Client::default();
        let mut items = Vec::new();
        for (i, m) in events.iter().enumerate() {
            let new = t.ami(m, now());
            new.iter().for_each(|i| c.apply(i));
            items.extend(new);
            if i == trunk_new {
                let announced = t.stasis_start(&channel, &args, now());
                assert_eq!(announced.len(), 1);
                assert_eq!(announced[0]["action"], "update");
                assert_eq!(announced[0]["chantype"], "unbridge");
                assert_eq!(announced[0]["inbound_trunk_name"], "trunk");
                assert_eq!(announced[0]["state"], "Ring");
                assert_eq!(announced[0]["callernum"], "+15551234567");
                announced.iter().for_each(|i| c.apply(i));
                items.extend(announced);
            }
            c.agrees_with(&t.shown());
        }
        assert_eq!(
            items[story_start(&items, "PJSIP/trunk-")]["inbound_trunk_name"],
            Value::Null
        );
        // A StasisStart arriving after the hangup changes nothing.
        assert!(t.stasis_start(&channel, &args, now()).is_empty());

        // With them (the default), AMI's add already names it, and the
        // StasisStart says nothing new.
        let mut t = tracker(TimeZone::UTC);
        for m in &events[..=trunk_new] {
            t.ami(m, now());
        }
        assert!(t.stasis_start(&channel, &args, now()).is_empty());

        // ARI before AMI: the announcement is the add; AMI's Newchannel
        // (state Ring) does not add again.
        let mut t = Tracker::new(TimeZone::UTC, Vec::new());
        let mut c = Client::default();
        let first = t.stasis_start(&channel, &args, now());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["action"], "add");
        assert_eq!(first[0]["chantype"], "unbridge");
        assert_eq!(first[0]["state"], "Ring");
        assert_eq!(first[0]["inbound_trunk_name"], "trunk");
        assert_eq!(first[0]["alloc_time"], "2026-11-26 10:00:00");
        c.apply(&first[0]);
        let (items, _) = replay(&mut t, &mut c, &events);
        assert!(
            items
                .iter()
                .filter(|i| i["channel"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("PJSIP/trunk-")))
                .all(|i| i["action"] != "add"),
            "{items:#?}"
        );
        assert!(t.is_empty());
    }

    #[test]
    fn ami_states_older_than_the_announcement_do_not_undo_it() {
        let mut t = tracker(TimeZone::UTC);
        let channel = AriChannel {
            id: "1.1".into(),
            name: "PJSIP/trunk-00000001".into(),
            state: "Ring".into(),
            ..AriChannel::default()
        };
        t.stasis_start(&channel, &["inbound".into(), "555".into()], now());
        let snapshot = |state: &str| {
            msg(&[
                ("Event", "Newchannel"),
                ("Channel", "PJSIP/trunk-00000001"),
                ("ChannelStateDesc", state),
                ("CallerIDNum", "555123"),
                ("Uniqueid", "1.1"),
                ("Linkedid", "1.1"),
            ])
        };
        let items = t.ami(&snapshot("Down"), now());
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["action"], "update");
        assert_eq!(items[0]["state"], "Ring");
        assert_eq!(items[0]["callernum"], "555123");
        let items = t.ami(&snapshot("Up"), now());
        assert_eq!(items[0]["state"], "Up");
        // Past the announcement, AMI's state is taken as it is.
        let items = t.ami(&snapshot("Down"), now());
        assert_eq!(items[0]["state"], "Down");
    }

    #[test]
    fn an_outbound_trunk_leg_is_named_from_the_dial_string() {
        let events = recorded(include_str!("testdata/outbound.ami"));
        let mut t = tracker(TimeZone::UTC);
        let mut c = Client::default();
        let (items, _) = replay(&mut t, &mut c, &events);
        let trunk: Vec<&Value> = items
            .iter()
            .filter(|i| {
                i["channel"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("PJSIP/trunk-"))
            })
            .collect();
        // Created Down in the trunk context: dialled out, not inbound.
        assert_eq!(trunk[0]["action"], "add");
        assert_eq!(trunk[0]["inbound_trunk_name"], Value::Null);
        assert_eq!(trunk[0]["outbound_trunk_name"], Value::Null);
        let named = trunk
            .iter()
            .find(|i| i["outbound_trunk_name"] == "trunk")
            .unwrap();
        // The callee leg's caller ID is the number dialled.
        assert_eq!(named["callernum"], "5550123");
        assert_eq!(named["connectednum"], "1001");
        let bridge = items
            .iter()
            .find(|i| i["chantype"] == "bridge" && i["action"] == "add")
            .unwrap();
        assert!(
            bridge["channel1"]
                .as_str()
                .unwrap()
                .starts_with("PJSIP/1001-")
        );
        assert_eq!(bridge["outbound_trunk_name"], "trunk");
        assert_eq!(bridge["inbound_trunk_name"], Value::Null);
        // Phones are dialled without @: no trunk.
        assert!(
            items
                .iter()
                .filter(|i| i["channel"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("PJSIP/1001-")))
                .all(|i| i["outbound_trunk_name"].is_null())
        );
    }

    #[test]
    fn resync_removes_the_vanished_and_adds_the_unknown() {
        let mut t = tracker(TimeZone::UTC);
        let mut c = Client::default();
        let chan = |name: &str, uid: &str, state: &str| {
            msg(&[
                ("Event", "Newchannel"),
                ("Channel", name),
                ("ChannelStateDesc", state),
                ("CallerIDNum", "1001"),
                ("Uniqueid", uid),
                ("Linkedid", "9.1"),
            ])
        };
        for m in [
            chan("PJSIP/1001-00000001", "9.1", "Up"),
            chan("PJSIP/1002-00000002", "9.2", "Ringing"),
        ] {
            t.ami(&m, now()).iter().for_each(|i| c.apply(i));
        }
        let listed = |m: Message, bridge: &str, duration: &str| {
            let mut m = m;
            m.headers[0].1 = "CoreShowChannel".into();
            m.push("BridgeId", bridge);
            m.push("Duration", duration);
            m
        };
        let items = t.resync(
            &[
                listed(chan("PJSIP/1002-00000002", "9.2", "Up"), "b1", "00:00:01"),
                listed(chan("PJSIP/1003-00000003", "9.3", "Up"), "b1", "00:01:05"),
            ],
            &HashMap::from([("b1".to_owned(), now().as_second() - 30)]),
            now(),
        );
        items.iter().for_each(|i| c.apply(i));
        c.agrees_with(&t.shown());
        assert_eq!(
            items,
            [
                json!({
                    "chantype": "bridge", "action": "add",
                    "channel1": "PJSIP/1003-00000003", "callerid1": "1001", "name1": "",
                    "channel2": "PJSIP/1002-00000002", "callerid2": "1001", "name2": "",
                    "bridge_time": "2026-11-26 09:59:30", "linkedid": "9.1",
                    "inbound_trunk_name": null, "outbound_trunk_name": null,
                }),
                json!({"channel": "PJSIP/1001-00000001", "chantype": "unbridge", "action": "delete"}),
                json!({"channel": "PJSIP/1002-00000002", "chantype": "unbridge", "action": "delete"}),
            ]
        );
        assert_eq!(t.len(), 2);
        // A late event of the removed channel does not bring it back.
        assert!(
            t.ami(&chan("PJSIP/1001-00000001", "9.1", "Up"), now())
                .is_empty()
        );
        // A late BridgeLeave of another bridge changes nothing.
        let mut leave = chan("PJSIP/1002-00000002", "9.2", "Up");
        leave.headers[0].1 = "BridgeLeave".into();
        leave.push("BridgeUniqueid", "b0");
        assert!(t.ami(&leave, now()).is_empty());
        // An empty list clears everything.
        let items = t.resync(&[], &HashMap::new(), now());
        assert_eq!(items.len(), 1, "{items:?}");
        items.iter().for_each(|i| c.apply(i));
        c.agrees_with(&t.shown());
        assert!(t.is_empty());
    }

    #[test]
    fn a_rename_ends_the_old_name_and_starts_the_new() {
        let mut t = tracker(TimeZone::UTC);
        t.ami(
            &msg(&[
                ("Event", "Newchannel"),
                ("Channel", "PJSIP/x-0001"),
                ("ChannelStateDesc", "Down"),
                ("Uniqueid", "5.1"),
            ]),
            now(),
        );
        let items = t.ami(
            &msg(&[
                ("Event", "Rename"),
                ("Channel", "PJSIP/x-0001"),
                ("Newname", "PJSIP/1000-00000009"),
                ("Uniqueid", "5.1"),
            ]),
            now(),
        );
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["action"], "add");
        assert_eq!(items[0]["channel"], "PJSIP/1000-00000009");
        assert_eq!(items[0]["linkedid"], "5.1");
        assert_eq!(
            items[1],
            json!({"channel": "PJSIP/x-0001", "chantype": "unbridge", "action": "delete"})
        );
    }

    #[test]
    fn local_and_snoop_channels_are_never_shown() {
        let mut t = tracker(berlin());
        for m in [
            msg(&[
                ("Event", "Newchannel"),
                ("Channel", "Snoop/1795774014.7-00000001"),
                ("Uniqueid", "1795774020.9"),
                ("ChannelStateDesc", "Up"),
            ]),
            msg(&[
                ("Event", "Newchannel"),
                ("Channel", "Local/1000@from-internal-00000001;1"),
                ("Uniqueid", "1795774020.10"),
                ("ChannelStateDesc", "Down"),
            ]),
        ] {
            assert!(t.ami(&m, now()).is_empty(), "{m:?}");
        }
        // The Local half is followed (a chain of a call), the snoop not at all.
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn odd_events_are_ignored_not_fatal() {
        let mut t = tracker(TimeZone::UTC);
        for m in [
            msg(&[]),
            msg(&[("Event", "Newchannel")]),
            msg(&[("Event", "Newchannel"), ("Channel", "PJSIP/x-1")]),
            msg(&[("Event", "Hangup"), ("Uniqueid", "nope")]),
            msg(&[("Event", "Rename"), ("Uniqueid", "nope"), ("Newname", "x")]),
            msg(&[("Event", "BridgeEnter"), ("Uniqueid", "nope")]),
            msg(&[
                ("Event", "DialBegin"),
                ("DestUniqueid", "nope"),
                ("DestChannel", "PJSIP/trunk-1"),
                ("DialString", "1@trunk"),
            ]),
            msg(&[("Event", "ExtensionStatus")]),
        ] {
            assert!(t.ami(&m, now()).is_empty(), "{m:?}");
            let _ = extension_status(&m);
        }
        // A bad timestamp falls back to `now`.
        let items = t.ami(
            &msg(&[
                ("Event", "Newchannel"),
                ("Channel", "PJSIP/x-00000001"),
                ("Uniqueid", "1.2"),
                ("Timestamp", "soon"),
            ]),
            now(),
        );
        assert_eq!(items[0]["alloc_time"], "2026-11-26 10:00:00");
        assert_eq!(items[0]["state"], "");
        assert!(
            t.stasis_start(&AriChannel::default(), &[], now())
                .is_empty()
        );
    }

    #[test]
    fn extension_states_get_ucm_spellings() {
        for (text, ucm) in [
            ("Idle", "Idle"),
            ("InUse", "InUse"),
            ("Busy", "Busy"),
            ("Unavailable", "Unavailable"),
            ("Ringing", "Ringing"),
            ("InUse&Ringing", "Ringing"),
            ("Hold", "Hold"),
            ("OnHold", "Hold"),
            ("InUse&Hold", "Hold"),
            ("Unknown", "Unavailable"),
        ] {
            let m = msg(&[
                ("Event", "ExtensionStatus"),
                ("Exten", "1000"),
                ("StatusText", text),
            ]);
            assert_eq!(
                extension_status(&m),
                Some(json!({"extension":"1000","status":ucm}))
            );
        }
        // Without StatusText, the numeric Status.
        for (status, ucm) in [
            ("0", "Idle"),
            ("1", "InUse"),
            ("8", "Ringing"),
            ("-1", "Unavailable"),
        ] {
            let m = msg(&[
                ("Event", "ExtensionStatus"),
                ("Exten", "7"),
                ("Status", status),
            ]);
            assert_eq!(extension_status(&m).unwrap()["status"], ucm);
        }
    }

    /// Random event sequences from AMI and ARI, in any order, with bridges
    /// and Local chains: a client building from the items always holds what
    /// the lists show, and never sees an add twice or a change of the unknown.
    #[test]
    fn random_event_orders_keep_items_and_lists_in_step() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let states = ["Down", "Ring", "Ringing", "Up", "Busy", ""];
        for _ in 0..300 {
            let mut t = tracker(TimeZone::UTC);
            let mut c = Client::default();
            for _ in 0..80 {
                let uid = format!("1.{}", next(8));
                let name = match next(4) {
                    0 => format!("Local/r@ctx-0001;{}", 1 + next(2)),
                    _ => format!("PJSIP/e{}-{}", next(2), uid),
                };
                let items = match next(10) {
                    0..=2 => t.ami(
                        &msg(&[
                            (
                                "Event",
                                ["Newchannel", "Newstate", "NewCallerid", "Newexten"]
                                    [next(4) as usize],
                            ),
                            ("Channel", &name),
                            ("ChannelStateDesc", states[next(6) as usize]),
                            ("CallerIDNum", &next(3).to_string()),
                            ("Application", ["Dial", "Queue", "Wait"][next(3) as usize]),
                            ("Context", ["from-trunk", "x"][next(2) as usize]),
                            ("Uniqueid", &uid),
                        ]),
                        now(),
                    ),
                    3 => t.ami(&msg(&[("Event", "Hangup"), ("Uniqueid", &uid)]), now()),
                    4 => t.ami(
                        &msg(&[
                            ("Event", "Rename"),
                            ("Uniqueid", &uid),
                            ("Newname", &format!("PJSIP/r{}-{uid}", next(3))),
                        ]),
                        now(),
                    ),
                    5 | 6 => t.ami(
                        &msg(&[
                            ("Event", ["BridgeEnter", "BridgeLeave"][next(2) as usize]),
                            ("Channel", &name),
                            ("Uniqueid", &uid),
                            ("BridgeUniqueid", &format!("b{}", next(3))),
                        ]),
                        now(),
                    ),
                    7 => t.ami(
                        &msg(&[
                            ("Event", "DialBegin"),
                            ("DestUniqueid", &uid),
                            ("DestChannel", &name),
                            ("DialString", "5@e1"),
                        ]),
                        now(),
                    ),
                    8 => {
                        let listed: Vec<Message> = (0..next(4))
                            .map(|k| {
                                msg(&[
                                    ("Event", "CoreShowChannel"),
                                    ("Channel", &format!("PJSIP/e{k}-1.{k}")),
                                    ("Uniqueid", &format!("1.{k}")),
                                    ("ChannelStateDesc", "Up"),
                                    ("BridgeId", &format!("b{}", next(2))),
                                ])
                            })
                            .collect();
                        t.resync(&listed, &HashMap::new(), now())
                    }
                    _ => {
                        let channel: AriChannel = serde_json::from_value(
                            json!({"id": uid, "name": name, "state": states[next(6) as usize]}),
                        )
                        .unwrap();
                        let args = if next(2) == 0 {
                            vec!["inbound".to_owned(), "5".to_owned()]
                        } else {
                            Vec::new()
                        };
                        t.stasis_start(&channel, &args, now())
                    }
                };
                for i in &items {
                    c.apply(i);
                }
                c.agrees_with(&t.shown());
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(
            channel_endpoint("PJSIP/trunk-00000002").as_deref(),
            Some("trunk")
        );
        assert_eq!(
            channel_endpoint("PJSIP/my-trunk-00000002").as_deref(),
            Some("my-trunk")
        );
        assert_eq!(channel_endpoint("PJSIP/trunk"), None);
        assert_eq!(channel_endpoint("trunk-1"), None);
        let ts = event_time(&msg(&[("Timestamp", "1795774507.5")])).unwrap();
        assert_eq!(ts.as_millisecond(), 1_795_774_507_500);
    }
}
