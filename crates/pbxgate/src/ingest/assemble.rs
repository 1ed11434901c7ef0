//! Collects the CDRs of each call until the call is over, so that they are
//! reduced together ([`super::flow::reduce`]) and stored as one entry.
//!
//! A call is its Asterisk linkedid. It is over when no channel of it is up
//! (followed through the AMI channel events) and no CDR of it came for a
//! moment: Asterisk sends a channel's CDRs around its hangup, in no fixed
//! order with the Hangup event. Where the channels are not known (pbxgate
//! started or reconnected mid-call) the quiet moment alone decides; a CDR
//! that comes after its call was stored still joins the call's entry (same
//! session), it is only reduced alone.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use asterisk::ami::Message;

use super::derive::AsteriskCdr;
use super::flow::{Call, reduce};

/// How long a call stays open after its last channel hung up or its last CDR
/// came.
pub const GRACE: Duration = Duration::from_secs(1);
/// A call whose channels still look up after this long is stored anyway
/// (e.g. a Hangup event lost while AMI lagged); later CDRs join its entry.
pub const MAX_HOLD: Duration = Duration::from_secs(4 * 3600);
/// Most CDRs held at once; past it the oldest call is stored as it is.
pub const MAX_HELD: usize = 100_000;
/// How many finished calls remember their session owner for late CDRs.
const OWNERS_KEPT: usize = 50_000;

#[derive(Default)]
pub struct Assembler {
    pending: HashMap<String, Pending>,
    held: usize,
    /// Live channels: uniqueid → linkedid.
    channels: HashMap<String, String>,
    /// Live channels per linkedid.
    open: HashMap<String, usize>,
    /// Session owners of calls already stored, oldest first.
    owners: HashMap<String, String>,
    owner_order: VecDeque<String>,
}

struct Pending {
    cdrs: Vec<AsteriskCdr>,
    first: Instant,
    last: Instant,
}

/// A finished call: its linkedid and its legs.
pub struct Finished {
    pub linkedid: String,
    pub call: Call,
}

impl Assembler {
    /// Follows channels from AMI events (Newchannel, Hangup, and the
    /// Linkedid of every channel event: it changes when calls are joined).
    pub fn observe(&mut self, m: &Message, now: Instant) {
        let (Some(uid), Some(lid)) = (m.get("Uniqueid"), m.get("Linkedid")) else {
            return;
        };
        match m.event() {
            Some("Hangup") => {
                if let Some(lid) = self.channels.remove(uid) {
                    self.close(&lid, now);
                }
            }
            _ => match self.channels.get(uid) {
                Some(known) if known == lid => {}
                Some(_) => {
                    if let Some(old) = self.channels.insert(uid.to_owned(), lid.to_owned()) {
                        self.close(&old, now);
                    }
                    *self.open.entry(lid.to_owned()).or_default() += 1;
                }
                None if m.event() == Some("Newchannel") => {
                    self.channels.insert(uid.to_owned(), lid.to_owned());
                    *self.open.entry(lid.to_owned()).or_default() += 1;
                }
                None => {}
            },
        }
    }

    fn close(&mut self, lid: &str, now: Instant) {
        if let Some(n) = self.open.get_mut(lid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open.remove(lid);
            }
        }
        if let Some(p) = self.pending.get_mut(lid) {
            p.last = now;
        }
    }

    /// The AMI connection was lost: which channels are up is not known any
    /// more.
    pub fn forget_channels(&mut self) {
        self.channels.clear();
        self.open.clear();
    }

    pub fn add(&mut self, cdr: AsteriskCdr, now: Instant) {
        let lid = if cdr.linkedid.is_empty() {
            cdr.uniqueid.clone()
        } else {
            cdr.linkedid.clone()
        };
        let p = self.pending.entry(lid).or_insert_with(|| Pending {
            cdrs: Vec::new(),
            first: now,
            last: now,
        });
        p.cdrs.push(cdr);
        p.last = now;
        self.held += 1;
    }

    /// Calls that are over (or held too long, or past the memory bound).
    pub fn finished(&mut self, now: Instant) -> Vec<Finished> {
        // Oldest first: records land in the order the calls began.
        let mut done: Vec<(Instant, String)> = self
            .pending
            .iter()
            .filter(|(lid, p)| {
                let quiet = now.duration_since(p.last) >= GRACE && !self.open.contains_key(*lid);
                quiet || now.duration_since(p.first) >= MAX_HOLD
            })
            .map(|(lid, p)| (p.first, lid.clone()))
            .collect();
        let mut left = self
            .held
            .saturating_sub(done.iter().map(|(_, lid)| self.len(lid)).sum::<usize>());
        if left > MAX_HELD {
            let taken: std::collections::HashSet<&String> = done.iter().map(|(_, l)| l).collect();
            let mut by_age: Vec<(Instant, String)> = self
                .pending
                .iter()
                .filter(|(lid, _)| !taken.contains(lid))
                .map(|(lid, p)| (p.first, lid.clone()))
                .collect();
            by_age.sort();
            let mut over = Vec::new();
            for (first, lid) in by_age {
                if left <= MAX_HELD {
                    break;
                }
                left = left.saturating_sub(self.len(&lid));
                over.push((first, lid));
            }
            done.extend(over);
        }
        done.sort();
        done.into_iter()
            .filter_map(|(_, lid)| self.take(lid))
            .collect()
    }

    fn len(&self, lid: &str) -> usize {
        self.pending.get(lid).map_or(0, |p| p.cdrs.len())
    }

    /// Every call held, finished or not (shutdown).
    pub fn drain(&mut self) -> Vec<Finished> {
        let mut all: Vec<(Instant, String)> = self
            .pending
            .iter()
            .map(|(lid, p)| (p.first, lid.clone()))
            .collect();
        all.sort();
        all.into_iter()
            .filter_map(|(_, lid)| self.take(lid))
            .collect()
    }

    pub fn held(&self) -> usize {
        self.held
    }

    fn take(&mut self, lid: String) -> Option<Finished> {
        let p = self.pending.remove(&lid)?;
        self.held = self.held.saturating_sub(p.cdrs.len());
        let mut call = reduce(p.cdrs);
        match self.owners.get(&lid) {
            Some(owner) => call.owner.clone_from(owner),
            None if !call.owner.is_empty() => {
                self.owners.insert(lid.clone(), call.owner.clone());
                self.owner_order.push_back(lid.clone());
                while self.owner_order.len() > OWNERS_KEPT {
                    if let Some(old) = self.owner_order.pop_front() {
                        self.owners.remove(&old);
                    }
                }
            }
            None => {}
        }
        Some(Finished {
            linkedid: lid,
            call,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, uid: &str, lid: &str) -> Message {
        let mut m = Message::new();
        m.push("Event", name);
        m.push("Uniqueid", uid);
        m.push("Linkedid", lid);
        m
    }

    fn cdr(uid: &str, lid: &str, src: &str, seq: &str) -> AsteriskCdr {
        AsteriskCdr {
            uniqueid: uid.into(),
            linkedid: lid.into(),
            src: src.into(),
            dst: "1000".into(),
            channel: format!("PJSIP/{src}-0000000{seq}"),
            dstchannel: "PJSIP/1000-00000009".into(),
            lastapp: "Dial".into(),
            start: "2026-12-07 14:00:00".into(),
            disposition: "ANSWERED".into(),
            billsec: "3".into(),
            sequence: seq.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_call_is_held_while_a_channel_of_it_is_up() {
        let t0 = Instant::now();
        let mut a = Assembler::default();
        a.observe(&event("Newchannel", "1.1", "1.1"), t0);
        a.observe(&event("Newchannel", "1.2", "1.1"), t0);
        a.add(cdr("1.1", "1.1", "1001", "1"), t0);
        a.observe(&event("Hangup", "1.1", "1.1"), t0);
        assert!(a.finished(t0 + GRACE * 5).is_empty(), "1.2 is still up");
        // A transfer's next leg, later.
        let t1 = t0 + Duration::from_secs(30);
        a.add(cdr("1.2", "1.1", "1000", "2"), t1);
        a.observe(&event("Hangup", "1.2", "1.1"), t1);
        assert!(a.finished(t1 + GRACE / 2).is_empty(), "within the grace");
        let done = a.finished(t1 + GRACE);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].call.legs.len(), 2);
        assert_eq!(done[0].call.owner, "1001");
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn a_late_cdr_joins_the_session_of_its_stored_call() {
        let t0 = Instant::now();
        let mut a = Assembler::default();
        a.add(cdr("2.1", "2.1", "1001", "1"), t0);
        assert_eq!(a.finished(t0 + GRACE)[0].call.owner, "1001");
        a.add(cdr("2.5", "2.1", "1000", "9"), t0 + GRACE * 3);
        let late = a.finished(t0 + GRACE * 4);
        assert_eq!(late[0].call.owner, "1001", "not its own src");
    }

    #[test]
    fn linkedid_changes_move_the_channel() {
        let t0 = Instant::now();
        let mut a = Assembler::default();
        a.observe(&event("Newchannel", "3.1", "3.1"), t0);
        a.observe(&event("Newchannel", "4.1", "4.1"), t0);
        a.add(cdr("4.0", "4.1", "1002", "1"), t0);
        // 3.1 joins call 4.1 (an attended transfer joined the two calls).
        a.observe(&event("BridgeEnter", "3.1", "4.1"), t0);
        a.observe(&event("Hangup", "4.1", "4.1"), t0);
        assert!(
            a.finished(t0 + GRACE * 2).is_empty(),
            "3.1 is still up in 4.1"
        );
        a.observe(&event("Hangup", "3.1", "4.1"), t0 + GRACE * 2);
        assert_eq!(a.finished(t0 + GRACE * 3).len(), 1);
        a.forget_channels();
    }

    #[test]
    fn held_cdrs_are_bounded() {
        let t0 = Instant::now();
        let mut a = Assembler::default();
        for i in 0..MAX_HELD + 10 {
            let lid = format!("5.{i}");
            a.observe(&event("Newchannel", &lid, &lid), t0);
            a.add(
                cdr(&lid, &lid, "1001", "1"),
                t0 + Duration::from_nanos(i as u64),
            );
        }
        let out = a.finished(t0 + Duration::from_secs(1));
        assert_eq!(out.len(), 10, "the oldest calls go");
        assert_eq!(out[0].linkedid, "5.0");
        assert_eq!(a.held(), MAX_HELD);
        assert_eq!(a.drain().len(), MAX_HELD);
    }
}
