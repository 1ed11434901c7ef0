//! The channel tracker behind `ActiveCallStatus` and the mapping of AMI
//! `ExtensionStatus` events. Pure: events in, notification items out; the
//! task that feeds it is in `live::start`.
//!
//! A channel is keyed by its uniqueid (ARI's channel id is the same value),
//! so AMI and ARI, two sockets without a common order, describe one leg.
//! Every leg gets exactly one `add` (whichever source sees it first), then
//! `update`s when a field clients see changes, then one `delete` on AMI
//! `Hangup`. Uniqueids of deleted legs are remembered for a while, so that
//! an ARI event arriving after the hangup cannot bring a leg back.

use std::collections::{HashMap, HashSet, VecDeque};

use asterisk::ami::Message;
use asterisk::ari::Channel as AriChannel;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

/// How many hung-up uniqueids are remembered against late ARI events.
const GONE_REMEMBERED: usize = 4096;

/// What clients see of one channel (spec §6.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leg {
    pub channel: String,
    pub uniqueid: String,
    pub linkedid: String,
    /// Asterisk's ChannelStateDesc: Down, Rsrvd, Ring, Ringing, Up, Busy, ...
    pub state: String,
    pub callername: String,
    pub callernum: String,
    pub connectedname: String,
    pub connectednum: String,
    /// "YYYY-MM-DD HH:MM:SS" in the PBX time zone.
    pub alloc_time: String,
    pub inbound_trunk: Option<String>,
    pub outbound_trunk: Option<String>,
    /// Set when call control announced the leg (state Ring) before AMI had
    /// reported it past Down: AMI's older states do not undo the announcement.
    held_ring: bool,
}

impl Leg {
    /// `PJSIP` of `PJSIP/trunk-00000002`.
    pub fn chantype(&self) -> &str {
        self.channel.split_once('/').map_or("", |(t, _)| t)
    }

    /// The `add` / `update` item: every field of spec §6.2.
    pub fn item(&self, action: &str) -> Value {
        json!({
            "channel": self.channel,
            "chantype": self.chantype(),
            "action": action,
            "uniqueid": self.uniqueid,
            "linkedid": self.linkedid,
            "state": self.state,
            "service": "normal",
            "callername": self.callername,
            "callernum": self.callernum,
            "connectedname": self.connectedname,
            "connectednum": self.connectednum,
            // All legs of one call share it (see docs/compatibility.md).
            "callid": self.linkedid,
            "alloc_time": self.alloc_time,
            "inbound_trunk_name": self.inbound_trunk,
            "outbound_trunk_name": self.outbound_trunk,
            // The feature (queue, ring group, ...) number called: none yet.
            "feature_calleenum": "",
        })
    }

    /// Whether clients would see the same item.
    fn same_for_clients(&self, other: &Leg) -> bool {
        Leg {
            held_ring: other.held_ring,
            ..self.clone()
        } == *other
    }

    /// A `delete` item carries only these three fields.
    pub fn delete_item(&self) -> Value {
        json!({
            "channel": self.channel,
            "chantype": self.chantype(),
            "action": "delete",
        })
    }
}

/// The channel fields every AMI channel event carries (Asterisk 12+
/// snapshots), optionally with a prefix (`Dest` in `DialBegin`).
struct Snapshot<'a> {
    channel: &'a str,
    uniqueid: &'a str,
    linkedid: &'a str,
    state: &'a str,
    callername: &'a str,
    callernum: &'a str,
    connectedname: &'a str,
    connectednum: &'a str,
}

/// Asterisk writes `<unknown>` for an unset caller ID part.
fn party(v: Option<&str>) -> &str {
    match v {
        Some("<unknown>") | None => "",
        Some(v) => v,
    }
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
    fn apply(&self, leg: &mut Leg) {
        leg.linkedid = self.linkedid.to_owned();
        if leg.held_ring && matches!(self.state, "Down" | "Rsrvd" | "") {
            // Older than call control's announcement: keep "Ring".
        } else {
            leg.held_ring = false;
            if !self.state.is_empty() {
                leg.state = self.state.to_owned();
            }
        }
        leg.callername = self.callername.to_owned();
        leg.callernum = self.callernum.to_owned();
        leg.connectedname = self.connectedname.to_owned();
        leg.connectednum = self.connectednum.to_owned();
    }
}

/// The live legs.
pub struct Tracker {
    legs: HashMap<String, Leg>,
    gone: VecDeque<String>,
    gone_set: HashSet<String>,
    tz: TimeZone,
}

impl Tracker {
    pub fn new(tz: TimeZone) -> Tracker {
        Tracker {
            legs: HashMap::new(),
            gone: VecDeque::new(),
            gone_set: HashSet::new(),
            tz,
        }
    }

    pub fn len(&self) -> usize {
        self.legs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.legs.is_empty()
    }

    pub fn leg(&self, uniqueid: &str) -> Option<&Leg> {
        self.legs.get(uniqueid)
    }

    fn format_time(&self, t: Timestamp) -> String {
        self.tz
            .to_datetime(t)
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string()
    }

    fn forget(&mut self, uniqueid: &str) -> Option<Leg> {
        let leg = self.legs.remove(uniqueid)?;
        if self.gone_set.insert(uniqueid.to_owned()) {
            self.gone.push_back(uniqueid.to_owned());
            while self.gone.len() > GONE_REMEMBERED {
                if let Some(old) = self.gone.pop_front() {
                    self.gone_set.remove(&old);
                }
            }
        }
        Some(leg)
    }

    /// One AMI event; the `ActiveCallStatus` items it causes, in order.
    /// `now` dates legs whose event has no `Timestamp` header.
    pub fn ami(&mut self, m: &Message, now: Timestamp) -> Vec<Value> {
        let Some(event) = m.event() else {
            return Vec::new();
        };
        match event {
            "Newchannel" | "Newstate" | "NewCallerid" | "NewConnectedLine" => {
                let Some(s) = Snapshot::of(m) else {
                    return Vec::new();
                };
                let at = event_time(m).unwrap_or(now);
                self.upsert(&s, at)
            }
            "Rename" => {
                let (Some(uid), Some(new)) = (m.get("Uniqueid"), m.get("Newname")) else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                if let Some(leg) = self.legs.get_mut(uid)
                    && leg.channel != new
                    && !new.is_empty()
                {
                    // Clients know a leg by its name: the old one ends, the new one starts.
                    out.push(leg.delete_item());
                    leg.channel = new.to_owned();
                    out.push(leg.item("add"));
                }
                out
            }
            "Hangup" => {
                let Some(uid) = m.get("Uniqueid") else {
                    return Vec::new();
                };
                self.forget(uid)
                    .map(|leg| vec![leg.delete_item()])
                    .unwrap_or_default()
            }
            "DialBegin" => self.dial_begin(m),
            _ => Vec::new(),
        }
    }

    fn upsert(&mut self, s: &Snapshot<'_>, at: Timestamp) -> Vec<Value> {
        if self.gone_set.contains(s.uniqueid) {
            return Vec::new();
        }
        match self.legs.get_mut(s.uniqueid) {
            Some(leg) => {
                let before = leg.clone();
                s.apply(leg);
                let mut out = Vec::new();
                if leg.channel != s.channel {
                    out.push(before.delete_item());
                    leg.channel = s.channel.to_owned();
                    out.push(leg.item("add"));
                } else if !leg.same_for_clients(&before) {
                    out.push(leg.item("update"));
                }
                out
            }
            None => {
                let mut leg = Leg {
                    channel: s.channel.to_owned(),
                    uniqueid: s.uniqueid.to_owned(),
                    alloc_time: self.format_time(at),
                    ..Leg::default()
                };
                s.apply(&mut leg);
                let item = leg.item("add");
                self.legs.insert(s.uniqueid.to_owned(), leg);
                vec![item]
            }
        }
    }

    /// `Dial(PJSIP/<number>@<endpoint>)` is how a dialplan sends a call to a
    /// trunk (a phone is dialled as `PJSIP/<endpoint>`): the new channel of
    /// that endpoint is an outbound trunk leg.
    fn dial_begin(&mut self, m: &Message) -> Vec<Value> {
        let (Some(dest_uid), Some(dest), Some(dial)) = (
            m.get("DestUniqueid"),
            m.get("DestChannel"),
            m.get("DialString"),
        ) else {
            return Vec::new();
        };
        let Some((_, endpoint)) = dial.rsplit_once('@') else {
            return Vec::new();
        };
        if endpoint.is_empty()
            || endpoint.contains('/')
            || channel_endpoint(dest).as_deref() != Some(endpoint)
        {
            return Vec::new();
        }
        match self.legs.get_mut(dest_uid) {
            Some(leg) if leg.outbound_trunk.as_deref() != Some(endpoint) => {
                leg.outbound_trunk = Some(endpoint.to_owned());
                vec![leg.item("update")]
            }
            _ => Vec::new(),
        }
    }

    /// ARI `StasisStart`. For an inbound call held by call control (`args`
    /// = `inbound`, DID) the leg is announced at once with its trunk and
    /// state `Ring`: as an `add` if AMI has not reported it yet, else as an
    /// `update`. Other Stasis channels are added if AMI has not done so.
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
            leg.inbound_trunk = trunk;
            if matches!(leg.state.as_str(), "Down" | "Rsrvd" | "") {
                leg.state = "Ring".into();
                leg.held_ring = true;
            }
            return vec![leg.item("update")];
        }
        let leg = Leg {
            channel: channel.name.clone(),
            uniqueid: channel.id.clone(),
            // AMI's Newchannel brings the real linkedid; an inbound trunk
            // channel starts its call, so its linkedid is its own id.
            linkedid: channel.id.clone(),
            state: if inbound || channel.state.is_empty() {
                "Ring".into()
            } else {
                channel.state.clone()
            },
            callername: channel.caller.name.clone(),
            callernum: channel.caller.number.clone(),
            connectedname: channel.connected.name.clone(),
            connectednum: channel.connected.number.clone(),
            alloc_time: self.format_time(now),
            inbound_trunk: trunk,
            outbound_trunk: None,
            held_ring: inbound,
        };
        let item = leg.item("add");
        self.legs.insert(channel.id.clone(), leg);
        vec![item]
    }

    /// Brings the legs in line with `CoreShowChannels` (after a reconnect or
    /// missed events): legs Asterisk no longer has are deleted, new ones
    /// added, changed ones updated.
    pub fn resync(&mut self, channels: &[Message], now: Timestamp) -> Vec<Value> {
        let live: HashSet<&str> = channels.iter().filter_map(|m| m.get("Uniqueid")).collect();
        let stale: Vec<String> = self
            .legs
            .keys()
            .filter(|u| !live.contains(u.as_str()))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for uid in stale {
            if let Some(leg) = self.forget(&uid) {
                out.push(leg.delete_item());
            }
        }
        for m in channels {
            if let Some(s) = Snapshot::of(m) {
                let age = m.get("Duration").and_then(hms_seconds).unwrap_or(0);
                let at = now
                    .checked_sub(jiff::SignedDuration::from_secs(age))
                    .unwrap_or(now);
                out.extend(self.upsert(&s, at));
            }
        }
        out
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
    Some(crate::ingest::derive::channel_ext(channel)).filter(|e| !e.is_empty())
}

/// The event's `Timestamp` header (`manager.conf` `timestampevents = yes`).
fn event_time(m: &Message) -> Option<Timestamp> {
    let t = m.get("Timestamp")?;
    let (secs, frac) = t.split_once('.').unwrap_or((t, "0"));
    let secs = secs.parse::<i64>().ok()?;
    let micros = format!("{frac:0<6}").get(..6)?.parse::<i32>().ok()?;
    Timestamp::new(secs, micros.checked_mul(1000)?).ok()
}

/// `01:02:03` -> 3723.
fn hms_seconds(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    for part in s.split(':') {
        total = total
            .checked_mul(60)?
            .checked_add(part.parse::<i64>().ok()?)?;
    }
    Some(total)
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

    /// Every item of a recorded call, with the ExtensionStatus items apart.
    fn replay(tracker: &mut Tracker, events: &[Message]) -> (Vec<Value>, Vec<Value>) {
        let mut items = Vec::new();
        let mut ext = Vec::new();
        for m in events {
            items.extend(tracker.ami(m, now()));
            if m.event() == Some("ExtensionStatus") {
                ext.extend(extension_status(m));
            }
        }
        (items, ext)
    }

    fn of_channel<'a>(items: &'a [Value], prefix: &str) -> Vec<&'a Value> {
        items
            .iter()
            .filter(|i| i["channel"].as_str().unwrap().starts_with(prefix))
            .collect()
    }

    fn actions(items: &[&Value]) -> Vec<String> {
        items
            .iter()
            .map(|i| i["action"].as_str().unwrap().to_owned())
            .collect()
    }

    /// add first, delete last and alone, updates in between; nothing twice.
    fn assert_lifecycle(items: &[&Value]) {
        let a = actions(items);
        assert_eq!(a.first().map(String::as_str), Some("add"), "{a:?}");
        assert_eq!(a.last().map(String::as_str), Some("delete"), "{a:?}");
        assert_eq!(a.iter().filter(|x| *x == "add").count(), 1, "{a:?}");
        assert_eq!(a.iter().filter(|x| *x == "delete").count(), 1, "{a:?}");
    }

    #[test]
    fn an_internal_call_as_asterisk_22_reports_it() {
        let events = recorded(include_str!("testdata/internal.ami"));
        let mut t = Tracker::new(berlin());
        let (items, ext) = replay(&mut t, &events);
        assert!(t.is_empty(), "every leg deleted at hangup");

        // The caller's leg (phone 1001 calling 1000).
        let caller = of_channel(&items, "PJSIP/1001-");
        assert_lifecycle(&caller);
        let add = caller[0];
        assert_eq!(add["chantype"], "PJSIP");
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
        let up = caller
            .iter()
            .rev()
            .find(|i| i["action"] == "update")
            .unwrap();
        assert_eq!(up["state"], "Up");
        assert_eq!(up["connectednum"], "1000");
        let delete = caller.last().unwrap();
        assert_eq!(
            **delete,
            json!({"channel": add["channel"], "chantype": "PJSIP", "action": "delete"})
        );

        // The callee's leg: linked to the caller's, rings, is answered.
        let callee = of_channel(&items, "PJSIP/1000-");
        assert_lifecycle(&callee);
        assert_eq!(callee[0]["linkedid"], "1795774507.1");
        let states: Vec<&str> = callee.iter().filter_map(|i| i["state"].as_str()).collect();
        assert_eq!(states, ["Down", "Down", "Ringing", "Up"], "{callee:#?}");

        // Updates only when something changed.
        for w in callee.windows(2) {
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
    fn an_inbound_call_announced_by_call_control_before_or_after_ami() {
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

        // ARI after AMI's Newchannel: an update carrying the trunk.
        let mut t = Tracker::new(TimeZone::UTC);
        let mut items = Vec::new();
        for (i, m) in events.iter().enumerate() {
            items.extend(t.ami(m, now()));
            if i == trunk_new {
                let announced = t.stasis_start(&channel, &args, now());
                assert_eq!(announced.len(), 1);
                assert_eq!(announced[0]["action"], "update");
                assert_eq!(announced[0]["inbound_trunk_name"], "trunk");
                assert_eq!(announced[0]["state"], "Ring");
                assert_eq!(announced[0]["callernum"], "+15551234567");
                items.extend(announced);
            }
        }
        let trunk = of_channel(&items, "PJSIP/trunk-");
        assert_lifecycle(&trunk);
        assert_eq!(trunk[0]["inbound_trunk_name"], Value::Null);
        // Once known, every later update carries the trunk.
        for i in &trunk[1..trunk.len() - 1] {
            assert_eq!(i["inbound_trunk_name"], "trunk", "{i}");
        }
        // A StasisStart arriving after the hangup changes nothing.
        assert!(t.stasis_start(&channel, &args, now()).is_empty());

        // ARI before AMI: the announcement is the add; AMI's Newchannel
        // (state Ring) does not add again.
        let mut t = Tracker::new(TimeZone::UTC);
        let first = t.stasis_start(&channel, &args, now());
        assert_eq!(first.len(), 1);
        assert_eq!(first[0]["action"], "add");
        assert_eq!(first[0]["state"], "Ring");
        assert_eq!(first[0]["inbound_trunk_name"], "trunk");
        assert_eq!(first[0]["alloc_time"], "2026-11-26 10:00:00");
        // AMI's Newchannel says nothing new: no item.
        for m in &events[..=trunk_new] {
            let items = t.ami(m, now());
            assert!(of_channel(&items, "PJSIP/trunk-").is_empty(), "{items:?}");
        }
        let (items, _) = replay(&mut t, &events[trunk_new + 1..]);
        let mut trunk = of_channel(&first, "PJSIP/trunk-");
        trunk.extend(of_channel(&items, "PJSIP/trunk-"));
        assert_lifecycle(&trunk);
        assert!(
            trunk
                .iter()
                .all(|i| i["action"] == "delete" || i["inbound_trunk_name"] == "trunk")
        );
        assert!(t.is_empty());
    }

    #[test]
    fn ami_states_older_than_the_announcement_do_not_undo_it() {
        let mut t = Tracker::new(TimeZone::UTC);
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
        let mut t = Tracker::new(TimeZone::UTC);
        let (items, _) = replay(&mut t, &events);
        let trunk = of_channel(&items, "PJSIP/trunk-");
        assert_lifecycle(&trunk);
        assert_eq!(trunk[0]["outbound_trunk_name"], Value::Null);
        // From DialBegin on, every update names the trunk.
        let named = trunk
            .iter()
            .position(|i| i["outbound_trunk_name"] == "trunk")
            .unwrap();
        assert!(
            trunk[named..trunk.len() - 1]
                .iter()
                .all(|i| i["outbound_trunk_name"] == "trunk"),
            "{trunk:#?}"
        );
        // The callee leg's caller ID is the number dialled.
        assert_eq!(trunk[named]["callernum"], "5550123");
        assert_eq!(trunk[named]["connectednum"], "1001");
        // Phones are dialled without @: no trunk.
        let phone = of_channel(&items, "PJSIP/1001-");
        assert!(phone.iter().all(|i| i["outbound_trunk_name"].is_null()));
    }

    #[test]
    fn resync_deletes_the_vanished_and_adds_the_unknown() {
        let mut t = Tracker::new(TimeZone::UTC);
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
        t.ami(&chan("PJSIP/1001-00000001", "9.1", "Up"), now());
        t.ami(&chan("PJSIP/1002-00000002", "9.2", "Ringing"), now());
        let mut listed = chan("PJSIP/1002-00000002", "9.2", "Up");
        listed.headers[0].1 = "CoreShowChannel".into();
        let mut new = chan("PJSIP/1003-00000003", "9.3", "Up");
        new.headers[0].1 = "CoreShowChannel".into();
        new.push("Duration", "00:01:05");
        let items = t.resync(&[listed, new], now());
        assert_eq!(
            items,
            [
                json!({"channel":"PJSIP/1001-00000001","chantype":"PJSIP","action":"delete"}),
                Leg {
                    channel: "PJSIP/1002-00000002".into(),
                    uniqueid: "9.2".into(),
                    linkedid: "9.1".into(),
                    state: "Up".into(),
                    callernum: "1001".into(),
                    alloc_time: "2026-11-26 10:00:00".into(),
                    ..Leg::default()
                }
                .item("update"),
                Leg {
                    channel: "PJSIP/1003-00000003".into(),
                    uniqueid: "9.3".into(),
                    linkedid: "9.1".into(),
                    state: "Up".into(),
                    callernum: "1001".into(),
                    alloc_time: "2026-11-26 09:58:55".into(),
                    ..Leg::default()
                }
                .item("add"),
            ]
        );
        assert_eq!(t.len(), 2);
        // A late event of the deleted leg does not bring it back.
        assert!(
            t.ami(&chan("PJSIP/1001-00000001", "9.1", "Up"), now())
                .is_empty()
        );
        // An empty list clears everything.
        assert_eq!(t.resync(&[], now()).len(), 2);
        assert!(t.is_empty());
    }

    #[test]
    fn a_rename_ends_the_old_name_and_starts_the_new() {
        let mut t = Tracker::new(TimeZone::UTC);
        t.ami(
            &msg(&[
                ("Event", "Newchannel"),
                ("Channel", "Local/1000@x-0001;1"),
                ("ChannelStateDesc", "Down"),
                ("Uniqueid", "5.1"),
            ]),
            now(),
        );
        let items = t.ami(
            &msg(&[
                ("Event", "Rename"),
                ("Channel", "Local/1000@x-0001;1"),
                ("Newname", "PJSIP/1000-00000009"),
                ("Uniqueid", "5.1"),
            ]),
            now(),
        );
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["action"], "delete");
        assert_eq!(items[0]["chantype"], "Local");
        assert_eq!(items[1]["action"], "add");
        assert_eq!(items[1]["channel"], "PJSIP/1000-00000009");
        assert_eq!(items[1]["linkedid"], "5.1");
    }

    #[test]
    fn hold_music_snoop_channels_are_not_calls() {
        let mut t = Tracker::new(berlin());
        let (items, _) = replay(
            &mut t,
            &[msg(&[
                ("Event", "Newchannel"),
                ("Channel", "Snoop/1795774014.7-00000001"),
                ("Uniqueid", "1795774020.9"),
                ("ChannelStateDesc", "Up"),
            ])],
        );
        assert!(items.is_empty(), "{items:?}");
        assert!(t.is_empty());
    }

    #[test]
    fn odd_events_are_ignored_not_fatal() {
        let mut t = Tracker::new(TimeZone::UTC);
        for m in [
            msg(&[]),
            msg(&[("Event", "Newchannel")]),
            msg(&[("Event", "Newchannel"), ("Channel", "PJSIP/x-1")]),
            msg(&[("Event", "Hangup"), ("Uniqueid", "nope")]),
            msg(&[("Event", "Rename"), ("Uniqueid", "nope"), ("Newname", "x")]),
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

    /// Random event sequences from AMI and ARI, in any order: every item
    /// stream stays well-formed per channel name (add, updates, delete).
    #[test]
    fn random_event_orders_keep_every_channel_well_formed() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let states = ["Down", "Ring", "Ringing", "Up", "Busy", ""];
        for _ in 0..300 {
            let mut t = Tracker::new(TimeZone::UTC);
            let mut live: HashSet<String> = HashSet::new();
            for _ in 0..60 {
                let uid = format!("1.{}", next(6));
                let name = format!("PJSIP/e{}-{}", next(2), uid);
                let items = match next(7) {
                    0..=2 => t.ami(
                        &msg(&[
                            (
                                "Event",
                                ["Newchannel", "Newstate", "NewCallerid"][next(3) as usize],
                            ),
                            ("Channel", &name),
                            ("ChannelStateDesc", states[next(6) as usize]),
                            ("CallerIDNum", &next(3).to_string()),
                            ("Uniqueid", &uid),
                        ]),
                        now(),
                    ),
                    3 => t.ami(&msg(&[("Event", "Hangup"), ("Uniqueid", &uid)]), now()),
                    4 => t.ami(
                        &msg(&[
                            ("Event", "Rename"),
                            ("Uniqueid", &uid),
                            ("Newname", &format!("Local/r{}-{uid}", next(3))),
                        ]),
                        now(),
                    ),
                    5 => t.ami(
                        &msg(&[
                            ("Event", "DialBegin"),
                            ("DestUniqueid", &uid),
                            ("DestChannel", &name),
                            ("DialString", "5@e1"),
                        ]),
                        now(),
                    ),
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
                for i in items {
                    let ch = i["channel"].as_str().unwrap().to_owned();
                    match i["action"].as_str().unwrap() {
                        "add" => assert!(live.insert(ch), "second add: {i}"),
                        "update" => assert!(live.contains(&ch), "update of unknown: {i}"),
                        "delete" => assert!(live.remove(&ch), "delete of unknown: {i}"),
                        other => panic!("{other}"),
                    }
                }
                assert_eq!(t.len(), live.len());
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
        assert_eq!(hms_seconds("01:02:03"), Some(3723));
        assert_eq!(hms_seconds("x"), None);
        let ts = event_time(&msg(&[("Timestamp", "1795774507.5")])).unwrap();
        assert_eq!(ts.as_millisecond(), 1_795_774_507_500);
    }
}
