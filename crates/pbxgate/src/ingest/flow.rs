//! The CDRs of one call (one Asterisk linkedid) → the legs of one UCM entry.
//!
//! Asterisk writes one CDR per pair of channels that met, plus one per
//! application a channel ran after a finished Dial. Read one by one they bill
//! some seconds twice and lose what kind of call it was; read together they
//! are the call as the caller lived it. The rules, per flow, are the table in
//! docs/compatibility.md ("Calls with several legs"); in short:
//!
//! - a Local channel pair is one hop, not two calls: the CDR of the half that
//!   dials (`Local/…;2`) is merged into the CDR that reached its other half
//!   (queue members, followme, click-to-call), so the bridged seconds are
//!   billed once;
//! - legs are ordered as Asterisk created them (`sequence`);
//! - a later CDR of the same channel does not inherit what belonged to the
//!   one before (its recording, its action type, its outbound trunk);
//! - the kind of call comes from the dialplan's `pbx_action_type` where it
//!   set one, else from the application (`Queue` → `QUEUE[n]`, `VoiceMail`
//!   → `VM`, …); the direction of a leg without one is the call's;
//! - every leg carries the session of the call's first leg.

use super::derive::{AsteriskCdr, channel_ext};

/// One leg of a call, ready for [`super::derive::to_ucm_leg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub cdr: AsteriskCdr,
    /// The identity of the Asterisk CDR the leg was made from: unchanged by
    /// merges, so that the same CDR arriving again is still recognised.
    pub key: String,
}

/// The legs of one call, in order, and the caller that names its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub legs: Vec<Leg>,
    pub owner: String,
    /// How many Asterisk CDRs the legs were made from.
    pub cdr_count: usize,
}

/// The legs of the call that `cdrs` (all of one linkedid) describe. Helper
/// channels that are not calls are left out; an empty input gives no legs.
pub fn reduce(cdrs: Vec<AsteriskCdr>) -> Call {
    let cdr_count = cdrs.len();
    let mut legs: Vec<Leg> = cdrs
        .into_iter()
        .map(|cdr| Leg {
            key: cdr.dedupe_key(),
            cdr,
        })
        .collect();
    legs.sort_by_cached_key(|l| order(&l.cdr));
    undo_inherited(&mut legs);
    bridges_through_local_pairs(&mut legs);
    merge_local_pairs(&mut legs);
    legs.retain(|l| !l.cdr.is_artefact());
    picked_up(&mut legs);
    parked(&mut legs);
    drop_empty_followers(&mut legs);
    let direction = call_direction(&legs);
    for l in &mut legs {
        fill_in(&mut l.cdr, &direction);
    }
    let owner = legs.first().map(|l| l.cdr.src.clone()).unwrap_or_default();
    Call {
        legs,
        owner,
        cdr_count,
    }
}

/// Creation order: Asterisk's sequence where the source has it (AMI, the
/// pbxgate CSV), else start time and the uniqueid's counter (Master.csv).
fn order(c: &AsteriskCdr) -> (u64, String, u64) {
    let counter = |s: &str| s.rsplit('.').next().and_then(|n| n.parse::<u64>().ok());
    let seq = c.sequence.trim().parse::<u64>().unwrap_or(u64::MAX);
    (
        seq,
        c.start.clone(),
        counter(&c.uniqueid).unwrap_or(u64::MAX),
    )
}

/// `Local/1000@ctx-00000003;2` → (`Local/1000@ctx-00000003`, `2`).
fn local_half(channel: &str) -> Option<(&str, &str)> {
    if !channel.starts_with("Local/") {
        return None;
    }
    channel.rsplit_once(';')
}

fn merge_local_pairs(legs: &mut Vec<Leg>) {
    let mut i = 0;
    while i < legs.len() {
        let dialling = &legs[i].cdr;
        let Some((base, "2")) = local_half(&dialling.channel) else {
            i += 1;
            continue;
        };
        if !dialling.lastapp.eq_ignore_ascii_case("Dial") {
            i += 1;
            continue;
        }
        let one = format!("{base};1");
        // The hop into the pair: whoever dialled the ;1 half (a queue, a
        // followme, a Dial to a Local channel).
        let parent = legs
            .iter()
            .position(|l| l.cdr.dstchannel.eq_ignore_ascii_case(&one));
        // No such hop: the pair was originated (click-to-call: dialExtension,
        // dialQueue, dialIVR...), ;2 rang the caller and ;1 then ran the
        // call's dialplan: each CDR of ;1 is the caller's.
        let halves: Vec<usize> = legs
            .iter()
            .enumerate()
            .filter(|(_, l)| l.cdr.channel.eq_ignore_ascii_case(&one))
            .map(|(j, _)| j)
            .collect();
        if parent.is_none() && halves.is_empty() {
            // Nothing to merge with: the leg stands for itself.
            i += 1;
            continue;
        }
        let child = legs.remove(i).cdr;
        let shifted = |j: usize| if j > i { j - 1 } else { j };
        match parent {
            Some(p) => absorb_callee(&mut legs[shifted(p)].cdr, &child),
            None => {
                for (n, j) in halves.into_iter().enumerate() {
                    let leg = &mut legs[shifted(j)].cdr;
                    if n == 0 {
                        absorb_caller(leg, &child);
                    } else if !child.dstchannel.is_empty() {
                        leg.channel.clone_from(&child.dstchannel);
                    }
                }
            }
        }
    }
}

/// The `;1` half of a Local pair bridged with another party without having
/// dialled it (no application): an attended transfer by feature code joined the transferee
/// (`dstchannel`) with the party the pair's `;2` half reached. That is a
/// call of its own, between those two: it keeps its seconds (the `;2` half's
/// CDR, merged into the consultation call, does not).
fn bridges_through_local_pairs(legs: &mut [Leg]) {
    let far: Vec<(String, AsteriskCdr)> = legs
        .iter()
        .filter_map(|l| match local_half(&l.cdr.channel) {
            Some((base, "2")) if l.cdr.lastapp.eq_ignore_ascii_case("Dial") => {
                Some((format!("{base};1"), l.cdr.clone()))
            }
            _ => None,
        })
        .collect();
    for l in legs.iter_mut() {
        let c = &mut l.cdr;
        let Some((_, "1")) = local_half(&c.channel) else {
            continue;
        };
        // Such a half runs no dialplan (no application): a half that ran
        // one (a click-to-call's queue, IVR...) is the caller's side.
        if c.dstchannel.is_empty() || !c.lastapp.is_empty() {
            continue;
        }
        let Some((_, two)) = far
            .iter()
            .find(|(one, _)| one.eq_ignore_ascii_case(&c.channel))
        else {
            continue;
        };
        c.channel = two.dstchannel.clone();
        c.src = channel_ext(&two.dstchannel);
        c.dst = channel_ext(&c.dstchannel);
        c.lastapp = "Dial".into();
        c.action_type = "TRANSFER".into();
        if c.direction.is_empty() {
            c.direction.clone_from(&two.direction);
        }
    }
}

/// A call picked up by another phone (`*8`, `PickupChan`): Asterisk writes
/// the ringing phone's channel as a CDR of its own (`AppDial`, nobody, 0 s),
/// the caller's leg to it as answered with 0 s, and the caller's next leg
/// as the call with the phone that picked up. The ringing leg was not
/// answered; the next is a pickup.
fn picked_up(legs: &mut Vec<Leg>) {
    let picked: Vec<String> = legs
        .iter()
        .filter(|l| {
            is_app(&l.cdr, &["AppDial"]) && l.cdr.dstchannel.is_empty() && secs_billed(&l.cdr) == 0
        })
        .map(|l| l.cdr.channel.clone())
        .collect();
    if picked.is_empty() {
        return;
    }
    legs.retain(|l| !(is_app(&l.cdr, &["AppDial"]) && picked.contains(&l.cdr.channel)));
    for i in 0..legs.len() {
        let c = &legs[i].cdr;
        if !picked.contains(&c.dstchannel) || secs_billed(c) != 0 {
            continue;
        }
        let uid = c.uniqueid.clone();
        legs[i].cdr.disposition = "NO ANSWER".into();
        legs[i].cdr.answer.clear();
        // The caller's recording goes on through the pickup: it is the
        // picked-up call's.
        let rec = std::mem::take(&mut legs[i].cdr.recordfiles);
        if let Some(next) = legs[i + 1..].iter_mut().find(|l| l.cdr.uniqueid == uid) {
            next.cdr.action_type = "PICKUP".into();
            next.cdr.recordfiles = rec + &next.cdr.recordfiles;
        }
    }
}

/// A parked call retrieved: Asterisk writes the parked channel's time with
/// the phone that retrieved it as a `Park` leg to that phone, and the
/// retrieving phone's own `ParkedCall` CDR with nobody and 0 s. One leg:
/// the retrieval, `PARKEDCALL`, to the space dialled.
fn parked(legs: &mut Vec<Leg>) {
    let retrievals: Vec<(String, String)> = legs
        .iter()
        .filter(|l| {
            is_app(&l.cdr, &["ParkedCall"])
                && l.cdr.dstchannel.is_empty()
                && secs_billed(&l.cdr) == 0
        })
        .map(|l| (l.cdr.channel.clone(), l.cdr.dst.clone()))
        .collect();
    let mut used: Vec<String> = Vec::new();
    for l in legs.iter_mut() {
        let c = &mut l.cdr;
        if !is_app(c, &["Park"]) || c.dstchannel.is_empty() {
            continue;
        }
        c.action_type = "PARKEDCALL".into();
        if let Some((chan, space)) = retrievals.iter().find(|(ch, _)| *ch == c.dstchannel) {
            c.dst.clone_from(space);
            used.push(chan.clone());
        }
    }
    legs.retain(|l| !(is_app(&l.cdr, &["ParkedCall"]) && used.contains(&l.cdr.channel)));
}

fn secs_billed(c: &AsteriskCdr) -> u64 {
    c.billsec.trim().parse().unwrap_or(0)
}

/// `parent` reached a Local pair whose far half dialled `child.dstchannel`:
/// the parent reached that party, from when that party answered.
fn absorb_callee(parent: &mut AsteriskCdr, child: &AsteriskCdr) {
    if !child.dstchannel.is_empty() {
        parent.dstchannel = child.dstchannel.clone();
    }
    // A Dial that did not dial this pair (the Local channel of an attended
    // transfer's consultation call): the number is the pair's.
    if parent.lastapp.eq_ignore_ascii_case("Dial")
        && !parent.lastdata.to_ascii_lowercase().contains("local/")
    {
        parent.dst.clone_from(&child.dst);
    }
    // The Local channel answers the parent at once; the party, later.
    if !child.answer.is_empty() && !parent.answer.is_empty() && child.answer > parent.answer {
        parent.answer.clone_from(&child.answer);
        if let (Some(a), Some(e)) = (secs(&parent.answer), secs(&parent.end)) {
            parent.billsec = (e - a).max(0).to_string();
        }
    }
    // Neither answered: how the party's side ended, and when.
    if parent.disposition != "ANSWERED" && child.disposition != "ANSWERED" {
        parent.disposition.clone_from(&child.disposition);
        if child.end > parent.end {
            parent.end.clone_from(&child.end);
            if let (Some(s), Some(e)) = (secs(&parent.start), secs(&parent.end)) {
                parent.duration = (e - s).max(0).to_string();
            }
        }
    }
    parent.recordfiles.push_str(&child.recordfiles);
    for (mine, theirs) in [
        (&mut parent.direction, &child.direction),
        (&mut parent.dst_trunk, &child.dst_trunk),
        (&mut parent.src_trunk, &child.src_trunk),
        (&mut parent.did, &child.did),
    ] {
        if mine.is_empty() {
            mine.clone_from(theirs);
        }
    }
    if parent.action_type.is_empty() && app_type(parent).is_none() {
        parent.action_type.clone_from(&child.action_type);
    }
}

/// An originated pair: `twin` (the ;1 half) dialled the callee, `child` (the
/// ;2 half) rang the caller's phone. One leg: from the caller's phone to the
/// callee, from the moment the caller's phone was rung.
fn absorb_caller(twin: &mut AsteriskCdr, child: &AsteriskCdr) {
    if !child.dstchannel.is_empty() {
        twin.channel = child.dstchannel.clone();
    }
    if !child.start.is_empty() && (twin.start.is_empty() || child.start < twin.start) {
        twin.start = child.start.clone();
        if let (Some(s), Some(e)) = (secs(&twin.start), secs(&twin.end)) {
            twin.duration = (e - s).max(0).to_string();
        }
    }
    // The phone's leg was recorded too: the same conversation, from its side.
    twin.recordfiles.push_str(&child.recordfiles);
    if twin.direction.is_empty() {
        twin.direction.clone_from(&child.direction);
    }
}

/// Seconds of a `YYYY-MM-DD HH:MM:SS` time (zone-free: only differences
/// are taken).
fn secs(t: &str) -> Option<i64> {
    super::derive::local_to_utc_ms(t, &jiff::tz::TimeZone::UTC).map(|ms| ms / 1000)
}

/// A later CDR of a channel starts with the variables of the CDR before it
/// (Asterisk copies them): what belonged to that earlier leg is taken off.
/// Backwards, so that each leg is compared with its predecessor as Asterisk
/// wrote it.
fn undo_inherited(legs: &mut [Leg]) {
    for i in (1..legs.len()).rev() {
        let (before, rest) = legs.split_at_mut(i);
        let leg = &mut rest[0].cdr;
        let Some(prev) = before
            .iter()
            .rev()
            .map(|l| &l.cdr)
            .find(|p| p.uniqueid == leg.uniqueid && !p.uniqueid.is_empty())
        else {
            continue;
        };
        if !prev.recordfiles.is_empty()
            && let Some(own) = leg.recordfiles.strip_prefix(prev.recordfiles.as_str())
        {
            leg.recordfiles = own.to_owned();
        }
        let dialled_out = leg.lastapp.eq_ignore_ascii_case("Dial")
            && !leg.dst_trunk.is_empty()
            && channel_ext(&leg.dstchannel) == leg.dst_trunk;
        if leg.dst_trunk == prev.dst_trunk && !dialled_out {
            leg.dst_trunk.clear();
        }
        if leg.action_type == prev.action_type && app_type(leg).is_some() {
            leg.action_type.clear();
        }
    }
}

/// After an unanswered Dial, any application the dialplan runs (Hangup,
/// Playback without answering, …) makes Asterisk write another CDR of the
/// caller's channel that reached nobody and billed nothing: not a leg.
/// Voicemail is a leg even when it fails.
fn drop_empty_followers(legs: &mut Vec<Leg>) {
    let mut seen: Vec<String> = Vec::new();
    legs.retain(|l| {
        let c = &l.cdr;
        let follower = seen.contains(&c.uniqueid);
        seen.push(c.uniqueid.clone());
        let empty = c.dstchannel.is_empty()
            && c.disposition != "ANSWERED"
            && secs_billed(c) == 0
            && !is_app(c, &["VoiceMail"]);
        !(follower && empty)
    });
}

/// The direction of the call: the first leg's that has one, else what its
/// trunks say.
fn call_direction(legs: &[Leg]) -> String {
    if let Some(d) = legs.iter().find(|l| !l.cdr.direction.is_empty()) {
        return d.cdr.direction.clone();
    }
    let first = legs.first().map(|l| &l.cdr);
    match first {
        Some(c) if !c.src_trunk.is_empty() => "Inbound".into(),
        Some(c) if !c.dst_trunk.is_empty() => "Outbound".into(),
        Some(_) => "Internal".into(),
        None => String::new(),
    }
}

fn is_app(c: &AsteriskCdr, apps: &[&str]) -> bool {
    apps.iter().any(|a| c.lastapp.eq_ignore_ascii_case(a))
}

/// The action type an application stands for, where the application names
/// the flow whatever the dialplan tagged.
fn app_type(c: &AsteriskCdr) -> Option<String> {
    if is_app(c, &["VoiceMail", "VoiceMailMain"]) {
        return Some("VM".into());
    }
    if is_app(c, &["Queue"]) {
        let q = c.lastdata.split([',', '|']).next().unwrap_or("").trim();
        return Some(if q.is_empty() {
            "QUEUE".into()
        } else {
            format!("QUEUE[{q}]")
        });
    }
    if is_app(c, &["ParkedCall"]) {
        return Some("PARKEDCALL".into());
    }
    if is_app(c, &["Park"]) && !c.dstchannel.is_empty() {
        return Some("PARKEDCALL".into());
    }
    if is_app(c, &["Park"]) {
        return Some("PARK".into());
    }
    if is_app(c, &["ConfBridge", "MeetMe"]) {
        return Some("CONFERENCE".into());
    }
    if is_app(c, &["Pickup", "PickupChan"]) {
        return Some("PICKUP".into());
    }
    None
}

fn fill_in(c: &mut AsteriskCdr, direction: &str) {
    // The application decides unless the dialplan named this very flow
    // (e.g. QUEUE[6000] set before Queue(), RINGGROUP[6400] before Dial()).
    if let Some(t) = app_type(c) {
        let family = t.split('[').next().unwrap_or(&t);
        if !c.action_type.starts_with(family) {
            c.action_type = t;
        }
    }
    if c.action_type.is_empty() && is_app(c, &["Dial"]) {
        c.action_type = "DIAL".into();
    }
    if c.direction.is_empty() {
        c.direction = direction.to_owned();
    }
    // `s`: the dialplan's start extension, not a number; the flow's target
    // is. An IVR's own leg ends on whatever the caller keyed in: the IVR is
    // what was dialled.
    let ivr_leg = c.action_type.starts_with("IVR[") && !is_app(c, &["Dial"]);
    if (c.dst == "s" || ivr_leg)
        && let Some(target) = c
            .action_type
            .split_once('[')
            .and_then(|(_, t)| t.strip_suffix(']'))
        && !target.is_empty()
    {
        c.dst = target.to_owned();
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
