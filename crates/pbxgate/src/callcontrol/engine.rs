//! The hold of inbound calls: one entry per channel in pbxgate's Stasis
//! application, exactly one outcome each.
//!
//! Every transition happens under one lock: a call is `Held`, then one
//! decision (API, timer, restart) marks it `deciding` before the ARI request,
//! so a second decision, the timer or a late event cannot act on it twice.
//! Whatever removes a call from the table records its outcome, once.
//!
//! Asterisk is reached through the PBX seam (`asterisk::pbx::{Stasis,
//! Manager}`) and decisions go to a `DecisionStore`, so that the engine runs
//! on the in-memory fakes in its unit tests (engine_tests.rs); time is
//! tokio's, which those tests pause.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use asterisk::ConnState;
use asterisk::ari::{Channel, Event};
use asterisk::pbx::{Manager, Stasis};
use store::{CallDecision, Claim, DecisionStore};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
// tokio's clock, which tests can pause; the same as std's otherwise.
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::cluster::Membership;
use crate::config::CallControlSettings;

/// How many decided channels are remembered, to tell "already decided" from
/// "unknown channel".
const REMEMBERED: usize = 10_000;
/// Channels of the application a standby looks up to find a held call.
const REMOTE_LOOKUPS: usize = 1000;
/// How long a failed `continue` by the timer waits before it is tried again.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Refuse,
}

impl Decision {
    /// As claimed in the database.
    fn word(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Refuse => "refuse",
        }
    }

    /// The outcome of a decision another node claimed.
    fn claimed_outcome(word: &str) -> Outcome {
        if word == "refuse" {
            Outcome::Refused
        } else {
            Outcome::Accepted
        }
    }
}

/// Who decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    User(String),
    /// No decision within the timeout.
    Timer,
    /// Found held when pbxgate (re)connected, past its timeout.
    Restart,
    /// pbxgate is stopping: held calls go on rather than wait for
    /// Asterisk's own limit.
    Shutdown,
}

impl By {
    fn name(&self) -> &str {
        match self {
            By::User(u) => u,
            By::Timer => "timer",
            By::Restart => "restart",
            By::Shutdown => "shutdown",
        }
    }
}

/// How a held call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
    /// Accepted because nobody decided in time.
    Timeout,
    /// The caller hung up while held (or while the decision was on its way).
    Hangup,
    /// Left the hold without pbxgate: Asterisk's own limit (the dialplan's
    /// `TIMEOUT(absolute)`), while pbxgate was away.
    Backstop,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::Hangup => "hangup",
            Outcome::Backstop => "backstop",
        }
    }

    /// The outcome as the store records it.
    pub fn stored(self) -> store::DecisionOutcome {
        match self {
            Outcome::Accepted => store::DecisionOutcome::Accepted,
            Outcome::Refused => store::DecisionOutcome::Refused,
            Outcome::Timeout => store::DecisionOutcome::Timeout,
            Outcome::Hangup => store::DecisionOutcome::Hangup,
            Outcome::Backstop => store::DecisionOutcome::Backstop,
        }
    }

    /// Words for an error message: "the call was already …".
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Refused => "refused",
            Outcome::Timeout => "accepted automatically (no decision within the timeout)",
            Outcome::Hangup => "ended by the caller",
            Outcome::Backstop => "accepted by Asterisk while pbxgate was away",
        }
    }
}

#[derive(Debug)]
pub enum DecideError {
    /// No held call on that channel, now or recently.
    Unknown,
    /// Decided before (or a decision is being applied right now).
    AlreadyDecided(Outcome),
    InProgress,
    /// The channel was gone when the decision reached Asterisk.
    Gone,
    /// Asterisk did not confirm; the call stays held (the timer still runs).
    Failed(asterisk::Error),
    /// The database did not take the claim; the call stays held.
    Store(String),
    /// This node does not own the Asterisk (any more).
    NotOwner,
}

struct Held {
    id: String,
    name: String,
    caller: String,
    did: String,
    held_at: Instant,
    held_at_ms: i64,
    deciding: bool,
    timer: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct Table {
    /// Held calls by channel name (the name clients use).
    held: HashMap<String, Held>,
    /// Channel id -> name, for ARI events.
    names: HashMap<String, String>,
    /// Recently ended holds by channel name.
    done: HashMap<String, Outcome>,
    done_order: VecDeque<String>,
}

impl Table {
    fn remove(&mut self, name: &str, outcome: Outcome) -> Option<Held> {
        let held = self.held.remove(name)?;
        self.names.remove(&held.id);
        if let Some(t) = &held.timer {
            t.abort();
        }
        if self.done.insert(name.to_owned(), outcome).is_none() {
            self.done_order.push_back(name.to_owned());
        }
        while self.done_order.len() > REMEMBERED {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
        Some(held)
    }
}

/// Longest a stop waits for decisions being recorded.
const RECORD_WAIT: Duration = Duration::from_secs(5);

pub struct Engine {
    ari: Arc<dyn Stasis>,
    /// Moves the hold limit of held calls (see `hold`).
    ami: Arc<dyn Manager>,
    store: Arc<dyn DecisionStore>,
    settings: CallControlSettings,
    /// This node and its role for the Asterisk: only its owner holds calls.
    member: Membership,
    /// Call control is on for at least one API user (switched live by the
    /// API settings; calls already held stay held until decided).
    enabled: std::sync::atomic::AtomicBool,
    /// pbxgate is stopping: calls are no longer held.
    stopping: std::sync::atomic::AtomicBool,
    table: Mutex<Table>,
    /// Bumped whenever the held calls change (the admin Live calls page follows it).
    changes: watch::Sender<u64>,
    /// Decisions being written to the store: a stop waits for them, so that
    /// none is lost when the database closes.
    recording: Arc<watch::Sender<usize>>,
}

/// A held call as the admin Live calls page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCall {
    pub channel: String,
    pub caller: String,
    pub did: String,
    pub held_at_ms: i64,
    /// Until the timer accepts the call.
    pub remaining: Duration,
    /// A decision is being applied.
    pub deciding: bool,
}

/// What a successful decision reports.
#[derive(Debug, Clone, Copy)]
pub struct Decided {
    pub outcome: Outcome,
    /// From the decision to Asterisk's confirmation.
    pub apply: Duration,
}

impl Engine {
    /// The engine of the only node (tests).
    #[cfg(test)]
    pub fn start(
        ari: Arc<dyn Stasis>,
        ami: Arc<dyn Manager>,
        store: Arc<dyn DecisionStore>,
        settings: CallControlSettings,
        enabled: bool,
    ) -> Arc<Engine> {
        let member = Membership::sole(&crate::config::ClusterSettings {
            node: "local".into(),
            pbx: String::new(),
            lease: Duration::from_secs(3),
        });
        Engine::start_as(member, ari, ami, store, settings, enabled)
    }

    pub fn start_as(
        member: Membership,
        ari: Arc<dyn Stasis>,
        ami: Arc<dyn Manager>,
        store: Arc<dyn DecisionStore>,
        settings: CallControlSettings,
        enabled: bool,
    ) -> Arc<Engine> {
        let engine = Arc::new(Engine {
            ari,
            ami,
            store,
            settings,
            member,
            enabled: std::sync::atomic::AtomicBool::new(enabled),
            stopping: std::sync::atomic::AtomicBool::new(false),
            table: Mutex::new(Table::default()),
            changes: watch::Sender::new(0),
            recording: Arc::new(watch::Sender::new(0)),
        });
        tokio::spawn(run_events(engine.clone()));
        tokio::spawn(run_adoption(engine.clone()));
        tokio::spawn(run_fencing(engine.clone()));
        engine
    }

    /// The only node (embedded database): nobody else decides its calls, so
    /// decisions need no claim in the database.
    fn alone(&self) -> bool {
        self.member.role() == crate::cluster::Role::Sole
    }

    /// The fence to claim under while this node may act on held calls.
    fn acting(&self) -> Option<Option<(&str, i64)>> {
        let fence = self.member.role().acting()?;
        Some(fence.map(|epoch| (self.member.pbx.as_str(), epoch)))
    }

    /// This node lost the Asterisk: its held calls are the new owner's
    /// (adopted with what is left of their timeout); nothing is decided or
    /// recorded here any more.
    fn forget_all(&self) {
        let n = {
            let mut t = self.table();
            for h in t.held.values() {
                if let Some(timer) = &h.timer {
                    timer.abort();
                }
            }
            let n = t.held.len();
            t.held.clear();
            t.names.clear();
            n
        };
        if n > 0 {
            tracing::warn!(
                calls = n,
                "no longer the owner of the Asterisk: its held calls are left to the new owner"
            );
        }
        self.changed();
    }

    /// Decides the held call on channel `name` from any node: the owner
    /// decides from its table, a standby finds the call in Asterisk.
    pub async fn decide_any(
        self: &Arc<Self>,
        name: &str,
        decision: Decision,
        by: By,
    ) -> Result<Decided, DecideError> {
        if self.acting().is_some() {
            match self.decide(name, decision, by.clone()).await {
                Err(DecideError::NotOwner) => {}
                other => return other,
            }
        }
        self.decide_remote(name, decision, by).await
    }

    /// A standby's decision: the call is held by the owner's application;
    /// the first claim in the database wins, cluster-wide.
    async fn decide_remote(
        self: &Arc<Self>,
        name: &str,
        decision: Decision,
        by: By,
    ) -> Result<Decided, DecideError> {
        let calls = self
            .app_inbound_calls(REMOTE_LOOKUPS)
            .await
            .map_err(DecideError::Failed)?;
        let Some((channel, did)) = calls.into_iter().find(|(c, _)| c.name == name) else {
            return Err(DecideError::Unknown);
        };
        match self
            .store
            .claim_call(&channel.id, &self.member.node, decision.word(), None)
            .await
        {
            Ok(Claim::Won) => {}
            Ok(Claim::Taken { decision, .. }) => {
                return Err(DecideError::AlreadyDecided(Decision::claimed_outcome(
                    &decision,
                )));
            }
            Ok(Claim::Fenced) => return Err(DecideError::Unknown),
            Err(e) => return Err(DecideError::Store(e.to_string())),
        }
        let started = Instant::now();
        let result = match decision {
            Decision::Accept => self.ari.continue_in_dialplan(&channel.id).await,
            Decision::Refuse => {
                self.ari
                    .hangup(&channel.id, &self.settings.refuse_reason)
                    .await
            }
        };
        let apply = started.elapsed();
        let age = channel_age(&channel.creationtime).unwrap_or(Duration::ZERO);
        let held = Held {
            id: channel.id.clone(),
            name: channel.name.clone(),
            caller: channel.caller.number.clone(),
            did,
            held_at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            held_at_ms: now_ms() - i64::try_from(age.as_millis()).unwrap_or(0),
            deciding: true,
            timer: None,
        };
        match result {
            Ok(()) => {
                let outcome = match decision {
                    Decision::Accept => Outcome::Accepted,
                    Decision::Refuse => Outcome::Refused,
                };
                let detail = match outcome {
                    Outcome::Refused => self.settings.refuse_reason.as_str(),
                    _ => "",
                };
                self.record(&held, outcome, by.name(), apply, detail);
                Ok(Decided { outcome, apply })
            }
            Err(asterisk::Error::NotFound(_)) => {
                // Our claim stands: the owner leaves the record to us.
                self.record(
                    &held,
                    Outcome::Hangup,
                    "caller",
                    apply,
                    "the channel had left when the decision came",
                );
                Err(DecideError::Gone)
            }
            Err(e) => {
                self.unclaim(&channel.id);
                Err(DecideError::Failed(e))
            }
        }
    }

    /// Withdraws this node's claim after Asterisk did not apply it, so that
    /// a retry (or the timer) can claim again.
    fn unclaim(&self, id: &str) {
        if self.alone() {
            return;
        }
        let store = self.store.clone();
        let node = self.member.node.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.unclaim_call(&id, &node).await {
                tracing::warn!(channel_id = id, error = %e, "cannot withdraw a call control claim");
            }
        });
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.enabled
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-changed
        // in a way that matters more than stopping call control would.
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn holding(&self) -> bool {
        self.enabled() && !self.stopping.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// pbxgate is stopping: no call is held any more, and every held call
    /// goes on now rather than at Asterisk's own limit.
    pub async fn release_all(self: &Arc<Self>) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let names: Vec<String> = self.table().held.keys().cloned().collect();
        if !names.is_empty() {
            tracing::info!(
                calls = names.len(),
                "stopping: letting the held calls go on"
            );
        }
        let mut all = tokio::task::JoinSet::new();
        for name in names {
            let engine = self.clone();
            all.spawn(async move {
                if let Err(DecideError::Failed(e)) =
                    engine.decide(&name, Decision::Accept, By::Shutdown).await
                {
                    tracing::warn!(channel = name, error = %e, "cannot let a held call go on; Asterisk's own limit will");
                }
            });
        }
        while all.join_next().await.is_some() {}
        // The decisions are recorded by tasks of their own: the database
        // closes after this returns.
        let mut writing = self.recording.subscribe();
        if tokio::time::timeout(RECORD_WAIT, writing.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::error!(
                "stopping: call control decisions still not recorded after {RECORD_WAIT:?}"
            );
        }
    }

    /// Number of calls held now.
    pub fn held(&self) -> usize {
        self.table().held.len()
    }

    /// The calls held now, oldest first.
    pub fn held_calls(&self) -> Vec<HeldCall> {
        let t = self.table();
        let mut calls: Vec<HeldCall> = t
            .held
            .values()
            .map(|h| HeldCall {
                channel: h.name.clone(),
                caller: h.caller.clone(),
                did: h.did.clone(),
                held_at_ms: h.held_at_ms,
                remaining: self.settings.timeout.saturating_sub(h.held_at.elapsed()),
                deciding: h.deciding,
            })
            .collect();
        calls.sort_by(|a, b| (a.held_at_ms, &a.channel).cmp(&(b.held_at_ms, &b.channel)));
        calls
    }

    /// The calls held now, from any node: the owner's table, or on a
    /// standby the inbound calls in the owner's application as ARI's REST
    /// interface lists them (at most `limit` looked up, for a second at most).
    pub async fn held_calls_anywhere(&self, limit: usize) -> Vec<HeldCall> {
        if self.acting().is_some() {
            return self.held_calls();
        }
        let lookup = async {
            let mut calls: Vec<HeldCall> = self
                .app_inbound_calls(limit)
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(channel, did)| {
                    let age = channel_age(&channel.creationtime).unwrap_or(Duration::ZERO);
                    HeldCall {
                        channel: channel.name,
                        caller: channel.caller.number,
                        did,
                        held_at_ms: now_ms() - i64::try_from(age.as_millis()).unwrap_or(0),
                        remaining: self.settings.timeout.saturating_sub(age),
                        deciding: false,
                    }
                })
                .collect();
            calls.sort_by(|a, b| (a.held_at_ms, &a.channel).cmp(&(b.held_at_ms, &b.channel)));
            calls
        };
        tokio::time::timeout(Duration::from_secs(1), lookup)
            .await
            .unwrap_or_default()
    }

    /// The inbound calls in the application (the owner's, when this node
    /// stands by) as ARI's REST interface lists them, with their DID: at
    /// most `limit` channels looked up. None when the application is gone.
    async fn app_inbound_calls(
        &self,
        limit: usize,
    ) -> Result<Vec<(Channel, String)>, asterisk::Error> {
        let ids = match self.ari.app_channel_ids().await {
            Ok(ids) => ids,
            Err(asterisk::Error::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut calls = Vec::new();
        for id in ids.into_iter().take(limit) {
            match self.ari.channel(&id).await {
                Ok(c) => {
                    if let Some(did) = inbound_did(&c) {
                        let did = did.to_owned();
                        calls.push((c, did));
                    }
                }
                Err(asterisk::Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(calls)
    }

    /// Changes whenever a call is held, a decision starts or fails, or a
    /// held call ends.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Applies a decision to the held call on channel `name`.
    pub async fn decide(
        self: &Arc<Self>,
        name: &str,
        decision: Decision,
        by: By,
    ) -> Result<Decided, DecideError> {
        let id = {
            let mut t = self.table();
            match t.held.get_mut(name) {
                Some(h) if h.deciding => return Err(DecideError::InProgress),
                Some(h) => {
                    h.deciding = true;
                    h.id.clone()
                }
                None => {
                    return Err(match t.done.get(name) {
                        Some(o) => DecideError::AlreadyDecided(*o),
                        None => DecideError::Unknown,
                    });
                }
            }
        };
        self.changed();
        self.claim(name, &id, decision).await?;
        let started = Instant::now();
        let result = match decision {
            Decision::Accept => self.ari.continue_in_dialplan(&id).await,
            Decision::Refuse => self.ari.hangup(&id, &self.settings.refuse_reason).await,
        };
        let apply = started.elapsed();
        let left = matches!(result, Err(asterisk::Error::NotFound(_)));
        let outcome = match (left, decision, &by) {
            // Not in the application any more: still up means it went on
            // without us (Asterisk's limit while we were cut off).
            (true, Decision::Accept, _) if self.ari.channel(&id).await.is_ok() => Outcome::Backstop,
            (true, _, _) => Outcome::Hangup,
            (false, Decision::Refuse, _) => Outcome::Refused,
            (false, Decision::Accept, By::User(_) | By::Shutdown) => Outcome::Accepted,
            (false, Decision::Accept, _) => Outcome::Timeout,
        };
        match result {
            Ok(()) | Err(asterisk::Error::NotFound(_)) => {
                let held = self.table().remove(name, outcome);
                self.changed();
                if let Some(h) = held {
                    let (by, detail) = match outcome {
                        Outcome::Hangup => {
                            ("caller", "the channel had left when the decision came")
                        }
                        Outcome::Backstop => (
                            "asterisk",
                            "left the hold without pbxgate (Asterisk's hold limit) while cut off",
                        ),
                        Outcome::Refused => (by.name(), self.settings.refuse_reason.as_str()),
                        _ => (by.name(), ""),
                    };
                    self.record(&h, outcome, by, apply, detail);
                }
                match outcome {
                    Outcome::Hangup => Err(DecideError::Gone),
                    Outcome::Backstop => Err(DecideError::AlreadyDecided(outcome)),
                    _ => Ok(Decided { outcome, apply }),
                }
            }
            Err(e) => {
                self.undecided(name);
                self.unclaim(&id);
                tracing::warn!(channel = name, by = by.name(), error = %e, "call control: Asterisk did not confirm the decision; the call stays held");
                Err(DecideError::Failed(e))
            }
        }
    }

    /// The decision in flight on `name` did not happen: the call is held as before.
    fn undecided(&self, name: &str) {
        if let Some(h) = self.table().held.get_mut(name) {
            h.deciding = false;
        }
        self.changed();
    }

    /// Claims the decision on the held call `name` (channel `id`) under
    /// this node's lease: exactly one decision per call, cluster-wide.
    async fn claim(&self, name: &str, id: &str, decision: Decision) -> Result<(), DecideError> {
        let Some(fence) = self.acting() else {
            self.undecided(name);
            return Err(DecideError::NotOwner);
        };
        if self.alone() {
            // No other node can decide: the table's `deciding` mark is the claim.
            return Ok(());
        }
        match self
            .store
            .claim_call(id, &self.member.node, decision.word(), fence)
            .await
        {
            Ok(Claim::Won) => Ok(()),
            // Our own earlier claim (a retry after its withdrawal failed).
            Ok(Claim::Taken { node, .. }) if node == self.member.node => Ok(()),
            Ok(Claim::Taken { decision, .. }) => {
                // Decided on another node, which records it.
                let outcome = Decision::claimed_outcome(&decision);
                self.table().remove(name, outcome);
                self.changed();
                Err(DecideError::AlreadyDecided(outcome))
            }
            Ok(Claim::Fenced) => {
                self.undecided(name);
                Err(DecideError::NotOwner)
            }
            Err(e) => {
                self.undecided(name);
                tracing::warn!(channel = name, error = %e, "call control: cannot claim the decision in the database; the call stays held");
                Err(DecideError::Store(e.to_string()))
            }
        }
    }

    fn record(&self, h: &Held, outcome: Outcome, by: &str, apply: Duration, detail: &str) {
        let held_ms = h.held_at.elapsed().as_millis();
        tracing::info!(
            target: "pbxgate::callcontrol",
            channel = h.name,
            caller = h.caller,
            did = h.did,
            outcome = outcome.as_str(),
            by,
            held_ms = u64::try_from(held_ms).unwrap_or(u64::MAX),
            apply_us = u64::try_from(apply.as_micros()).unwrap_or(u64::MAX),
            "call control decision"
        );
        let row = CallDecision {
            held_at_ms: h.held_at_ms,
            decided_at_ms: now_ms(),
            channel: h.name.clone(),
            channel_id: h.id.clone(),
            caller: h.caller.clone(),
            did: h.did.clone(),
            outcome: outcome.stored(),
            decided_by: by.to_owned(),
            apply_us: i64::try_from(apply.as_micros()).unwrap_or(i64::MAX),
            detail: detail.to_owned(),
        };
        let store = self.store.clone();
        let recording = self.recording.clone();
        recording.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            if let Err(e) = store.record_decision(&row).await {
                tracing::error!(channel = row.channel, outcome = row.outcome.as_str(), error = %e, "cannot record a call control decision");
            }
            recording.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// A channel entered the application (or was found there on
    /// reconnection, `age` old).
    fn hold(self: &Arc<Self>, channel: &Channel, did: &str, age: Duration, restart: bool) {
        let remaining = self.settings.timeout.saturating_sub(age);
        {
            let mut t = self.table();
            if t.names.contains_key(&channel.id) {
                return;
            }
            t.names.insert(channel.id.clone(), channel.name.clone());
            let held_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
            let held_at_ms = now_ms() - i64::try_from(age.as_millis()).unwrap_or(0);
            let engine = self.clone();
            let name = channel.name.clone();
            let by = if restart { By::Restart } else { By::Timer };
            let timer = tokio::spawn(async move {
                tokio::time::sleep(remaining).await;
                engine.accept_by_timer(&name, by).await;
            });
            t.held.insert(
                channel.name.clone(),
                Held {
                    id: channel.id.clone(),
                    name: channel.name.clone(),
                    caller: channel.caller.number.clone(),
                    did: did.to_owned(),
                    held_at,
                    held_at_ms,
                    deciding: false,
                    timer: Some(timer.abort_handle()),
                },
            );
        }
        self.changed();
        tracing::debug!(
            channel = channel.name,
            did,
            remaining_ms = u64::try_from(remaining.as_millis()).unwrap_or(0),
            "inbound call held for call control"
        );
        {
            // Ringback for the caller, and Asterisk's own limit in case
            // pbxgate goes away: both off the announcement's path.
            // The limit goes over AMI (Setvar runs on the manager's thread),
            // never over ARI: Asterisk (GHSA-vrfp-mg3q-3959) runs an ARI
            // variable write on the channel's own thread with dangerous
            // functions inhibited and never lifts that again, so the rest of
            // the call's dialplan could not read DB() (do-not-disturb, class
            // of service) unless `live_dangerously` is set.
            let engine = self.clone();
            let id = channel.id.clone();
            let name = channel.name.clone();
            tokio::spawn(async move {
                let limit = remaining + engine.settings.backstop_grace;
                let limit = format!("{:.3}", limit.as_secs_f64());
                let setvar = engine.ami.set_var(&name, "TIMEOUT(absolute)", &limit);
                let (ring, backstop) = tokio::join!(engine.ari.ring(&id), setvar);
                if let Err(e) = ring {
                    tracing::debug!(channel = name, error = %e, "cannot ring a held call");
                }
                // Without it Asterisk lets the call go on at the dialplan's
                // limit (PBXGATE_HOLD_LIMIT), possibly before pbxgate decides.
                let failed = match backstop {
                    Ok(r) if r.is_success() => None,
                    Ok(r) => Some(r.response.get("Message").unwrap_or("").to_owned()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = failed {
                    tracing::warn!(
                        channel = name,
                        error = %why,
                        "cannot move the hold limit of a held call over AMI: Asterisk may let it go on at the dialplan's PBXGATE_HOLD_LIMIT"
                    );
                }
            });
        }
    }

    async fn accept_by_timer(self: &Arc<Self>, name: &str, by: By) {
        loop {
            match self.decide(name, Decision::Accept, by.clone()).await {
                Err(DecideError::Failed(_) | DecideError::Store(_)) => {
                    tokio::time::sleep(RETRY).await
                }
                // Decided by someone else, or ended: nothing left to do.
                _ => return,
            }
        }
    }

    /// The channel left the application or hung up without a decision of ours.
    fn ended(self: &Arc<Self>, channel: &Channel, outcome: Outcome, by: &str, detail: &str) {
        let mut t = self.table();
        let Some(name) = t.names.get(&channel.id).cloned() else {
            return;
        };
        if t.held.get(&name).is_some_and(|h| h.deciding) {
            // The decision in flight records the outcome.
            return;
        }
        if let Some(h) = t.remove(&name, outcome) {
            drop(t);
            self.changed();
            self.record_unless_claimed(h, outcome, by, detail);
        }
    }

    /// Records how a held call ended without a decision of this node —
    /// unless another node claimed its decision (a standby's acceptCall
    /// ends the hold here too): that node records it.
    fn record_unless_claimed(self: &Arc<Self>, h: Held, outcome: Outcome, by: &str, detail: &str) {
        if self.alone() {
            self.record(&h, outcome, by, Duration::ZERO, detail);
            return;
        }
        let engine = self.clone();
        let by = by.to_owned();
        let detail = detail.to_owned();
        let recording = self.recording.clone();
        recording.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            match engine.store.call_claim(&h.id).await {
                Ok(Some((node, decision))) if node != engine.member.node => {
                    let mut t = engine.table();
                    if t.done.contains_key(&h.name) {
                        t.done
                            .insert(h.name.clone(), Decision::claimed_outcome(&decision));
                    }
                }
                _ => engine.record(&h, outcome, &by, Duration::ZERO, &detail),
            }
            recording.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    fn on_event(self: &Arc<Self>, event: &Event) {
        match event {
            // Only the dialplan's Stasis(<app>,inbound,<did>) is an inbound
            // call; other channels in the application (e.g. the snoop
            // channels of the channel actions) are not call control's.
            Event::StasisStart { channel, args }
                if args.first().map(String::as_str) == Some("inbound") =>
            {
                let did = args.get(1).map_or("", String::as_str);
                if self.acting().is_none() {
                    // The owner's call (events seen while the application
                    // is being let go).
                    return;
                }
                if self.holding() {
                    self.hold(channel, did, Duration::ZERO, false);
                } else {
                    let ari = self.ari.clone();
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        if let Err(e) = ari.continue_in_dialplan(&channel.id).await {
                            tracing::warn!(channel = channel.name, error = %e, "cannot let the call continue");
                        }
                    });
                }
            }
            Event::ChannelHangupRequest { channel, .. }
            | Event::ChannelDestroyed { channel, .. } => {
                self.ended(
                    channel,
                    Outcome::Hangup,
                    "caller",
                    "the caller hung up while held",
                );
            }
            Event::StasisEnd { channel } => {
                self.ended(
                    channel,
                    Outcome::Backstop,
                    "asterisk",
                    "left the hold without a decision of pbxgate (Asterisk's hold limit)",
                );
            }
            _ => {}
        }
    }

    /// After (re)connecting: calls that entered the application while no
    /// websocket was there, or that were held by a previous pbxgate, are
    /// taken over with what is left of their timeout; calls that left while
    /// pbxgate was away are recorded.
    async fn adopt(self: &Arc<Self>) {
        if self.acting().is_none() {
            return;
        }
        let ids = match self.ari.app_channel_ids().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "call control: cannot list the calls held in the application");
                return;
            }
        };
        let known: Vec<(String, String)> = {
            let t = self.table();
            t.names
                .iter()
                .map(|(i, n)| (i.clone(), n.clone()))
                .collect()
        };
        for (id, _) in known.iter().filter(|(id, _)| !ids.contains(id)) {
            // Gone while we were not listening: still up means Asterisk let it go on.
            let channel = Channel {
                id: id.clone(),
                ..Channel::default()
            };
            match self.ari.channel(id).await {
                Ok(_) => self.ended(
                    &channel,
                    Outcome::Backstop,
                    "asterisk",
                    "left the hold while pbxgate was disconnected from ARI",
                ),
                Err(asterisk::Error::NotFound(_)) => self.ended(
                    &channel,
                    Outcome::Hangup,
                    "caller",
                    "hung up while pbxgate was disconnected from ARI",
                ),
                Err(e) => {
                    tracing::warn!(channel = id, error = %e, "call control: cannot look up a held call")
                }
            }
        }
        for id in ids {
            if self.table().names.contains_key(&id) {
                continue;
            }
            let channel = match self.ari.channel(&id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(channel = id, error = %e, "call control: cannot look up a held call");
                    continue;
                }
            };
            let Some(did) = inbound_did(&channel).map(str::to_owned) else {
                continue;
            };
            if !self.holding() {
                if let Err(e) = self.ari.continue_in_dialplan(&id).await {
                    tracing::warn!(channel = channel.name, error = %e, "cannot let the call continue");
                }
                continue;
            }
            let age = channel_age(&channel.creationtime).unwrap_or(self.settings.timeout);
            tracing::info!(
                channel = channel.name,
                age_ms = u64::try_from(age.as_millis()).unwrap_or(0),
                "call control: took over a call held in the application"
            );
            self.hold(&channel, &did, age, true);
        }
    }
}

/// The DID of a call the dialplan holds with `Stasis(<app>,inbound,<did>)`;
/// `None` for the application's other channels (e.g. the snoop channels of
/// the channel actions).
fn inbound_did(channel: &Channel) -> Option<&str> {
    let mut args = channel.dialplan.app_data.split(',');
    if args.nth(1) == Some("inbound") {
        Some(args.next().unwrap_or(""))
    } else {
        None
    }
}

/// Time since an ARI timestamp such as `2026-11-26T10:00:00.000+0000`.
fn channel_age(creationtime: &str) -> Option<Duration> {
    let ts = jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%.f%z", creationtime)
        .ok()?
        .to_timestamp()
        .ok()?;
    let age = jiff::Timestamp::now().duration_since(ts);
    Some(Duration::try_from(age).unwrap_or(Duration::ZERO))
}

async fn run_events(engine: Arc<Engine>) {
    let mut events = engine.ari.subscribe();
    loop {
        match events.recv().await {
            Ok(e) => engine.on_event(&e),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "ARI events missed; re-reading the held calls");
                engine.adopt().await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Forgets the held calls when this node stops acting as the owner.
async fn run_fencing(engine: Arc<Engine>) {
    let mut roles = engine.member.roles();
    let mut acting = roles.borrow_and_update().acting().is_some();
    loop {
        let next = roles.borrow_and_update().acting().is_some();
        if acting && !next {
            engine.forget_all();
        }
        acting = next;
        // The lease can lapse without a change of role being sent yet.
        let until = match &*roles.borrow() {
            crate::cluster::Role::Owner { until, .. } if *until > Instant::now() => Some(*until),
            _ => None,
        };
        tokio::select! {
            changed = roles.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = async {
                match until {
                    Some(u) => tokio::time::sleep_until(u).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Adopts on every (re)connection of the events websocket; adopting twice is
/// harmless, missing a reconnection is not.
async fn run_adoption(engine: Arc<Engine>) {
    let mut state = engine.ari.state();
    loop {
        if state.borrow_and_update().is_up() {
            engine.adopt().await;
        }
        if matches!(*state.borrow(), ConnState::Stopped) || state.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod engine_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ari_timestamps_give_an_age() {
        let now = jiff::Timestamp::now();
        let earlier = now - jiff::SignedDuration::from_millis(2500);
        let text = earlier.strftime("%Y-%m-%dT%H:%M:%S%.3f%z").to_string();
        let age = channel_age(&text).unwrap();
        assert!(
            age >= Duration::from_millis(2400) && age < Duration::from_secs(10),
            "{text} {age:?}"
        );
        assert!(channel_age("not a time").is_none());
        assert!(channel_age("").is_none());
    }

    #[test]
    fn the_table_remembers_a_bounded_number_of_outcomes() {
        let mut t = Table::default();
        for i in 0..REMEMBERED + 5 {
            let name = format!("PJSIP/trunk-{i:08x}");
            t.names.insert(format!("id{i}"), name.clone());
            t.held.insert(
                name.clone(),
                Held {
                    id: format!("id{i}"),
                    name: name.clone(),
                    caller: String::new(),
                    did: String::new(),
                    held_at: Instant::now(),
                    held_at_ms: 0,
                    deciding: false,
                    timer: None,
                },
            );
            assert!(t.remove(&name, Outcome::Accepted).is_some());
            // A second removal finds nothing: one outcome per call.
            assert!(t.remove(&name, Outcome::Refused).is_none());
        }
        assert_eq!(t.done.len(), REMEMBERED);
        assert!(t.held.is_empty() && t.names.is_empty());
        assert!(!t.done.contains_key("PJSIP/trunk-00000000"));
        assert_eq!(
            t.done.get(&format!("PJSIP/trunk-{:08x}", REMEMBERED + 4)),
            Some(&Outcome::Accepted)
        );
    }
}
