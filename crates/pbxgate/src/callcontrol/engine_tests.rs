//! The call-control engine on the in-memory PBX (`asterisk::pbx::fake`), on
//! tokio's paused clock: every transition and race of a held call, which the
//! real-Asterisk tests (tests/callcontrol) can only sample.
//!
//! Decisions are recorded into an in-memory `DecisionStore`: a real
//! database's I/O runs on threads the paused clock does not wait for (it
//! would jump to the next timer meanwhile). The last test runs on the real
//! clock and a real SQLite store.

use std::sync::Mutex as StdMutex;

use asterisk::pbx::fake::{Failure, FakeManager, FakeStasis, Fate};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(1);

/// Decisions as they are recorded, and the claims of decisions (the
/// database every node shares).
#[derive(Default)]
struct Recorded(
    StdMutex<Vec<CallDecision>>,
    StdMutex<std::collections::HashMap<String, (String, String)>>,
);

#[async_trait::async_trait]
impl DecisionStore for Recorded {
    async fn record_decision(&self, d: &CallDecision) -> Result<(), store::Error> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(d.clone());
        Ok(())
    }

    async fn recent_decisions(&self, limit: i64) -> Result<Vec<CallDecision>, store::Error> {
        let all = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(all
            .iter()
            .rev()
            .take(usize::try_from(limit).unwrap_or(0))
            .cloned()
            .collect())
    }

    async fn claim_call(
        &self,
        channel_id: &str,
        node: &str,
        decision: &str,
        fence: Option<(&str, i64)>,
    ) -> Result<store::Claim, store::Error> {
        // The lease itself is the cluster tests' (store tests, e2e); here a
        // fence with epoch 0 stands for a lapsed one.
        if fence.is_some_and(|(_, epoch)| epoch == 0) {
            return Ok(store::Claim::Fenced);
        }
        let mut claims = self.1.lock().unwrap();
        if let Some((node, decision)) = claims.get(channel_id) {
            return Ok(store::Claim::Taken {
                node: node.clone(),
                decision: decision.clone(),
            });
        }
        claims.insert(channel_id.into(), (node.into(), decision.into()));
        Ok(store::Claim::Won)
    }

    async fn unclaim_call(&self, channel_id: &str, node: &str) -> Result<(), store::Error> {
        let mut claims = self.1.lock().unwrap();
        if claims.get(channel_id).is_some_and(|(n, _)| n == node) {
            claims.remove(channel_id);
        }
        Ok(())
    }

    async fn call_claim(&self, channel_id: &str) -> Result<Option<(String, String)>, store::Error> {
        Ok(self.1.lock().unwrap().get(channel_id).cloned())
    }

    async fn prune_claims(&self, _before_ms: i64) -> Result<u64, store::Error> {
        Ok(0)
    }
}

impl Recorded {
    fn all(&self) -> Vec<CallDecision> {
        self.0.lock().unwrap().clone()
    }

    /// The decisions recorded for a channel.
    fn of(&self, channel: &str) -> Vec<CallDecision> {
        self.all()
            .into_iter()
            .filter(|d| d.channel == channel)
            .collect()
    }

    /// The one decision of a channel: (outcome, decided_by, detail).
    fn one(&self, channel: &str) -> (String, String, String) {
        let mut all = self.of(channel);
        assert_eq!(all.len(), 1, "{channel}: {all:#?}");
        let d = all.remove(0);
        (d.outcome.to_string(), d.decided_by, d.detail)
    }
}

fn settings(timeout: Duration) -> CallControlSettings {
    CallControlSettings {
        timeout,
        refuse_reason: "busy".into(),
        backstop_grace: GRACE,
    }
}

struct Pbx {
    ari: Arc<FakeStasis>,
    ami: Arc<FakeManager>,
    store: Arc<Recorded>,
}

impl Pbx {
    fn new() -> Pbx {
        Pbx::on(FakeStasis::new("pbxgate"))
    }

    fn on(ari: Arc<FakeStasis>) -> Pbx {
        let ami = FakeManager::new();
        ami.link(ari.clone());
        Pbx {
            ari,
            ami,
            store: Arc::new(Recorded::default()),
        }
    }

    /// An engine (a pbxgate process) on this PBX, running once this returns.
    async fn engine(&self, timeout: Duration, enabled: bool) -> Arc<Engine> {
        self.engine_with(settings(timeout), enabled).await
    }

    /// The engine of node `node`, whose role the test drives.
    async fn node(&self, node: &str, role: watch::Receiver<crate::cluster::Role>) -> Arc<Engine> {
        let engine = Engine::start_as(
            Membership::driven(node, "pbx", role),
            self.ari.clone(),
            self.ami.clone(),
            self.store.clone(),
            settings(TIMEOUT),
            true,
        );
        settle().await;
        engine
    }

    async fn engine_with(&self, settings: CallControlSettings, enabled: bool) -> Arc<Engine> {
        let engine = Engine::start(
            self.ari.clone(),
            self.ami.clone(),
            self.store.clone(),
            settings,
            enabled,
        );
        settle().await;
        engine
    }

    /// A trunk call entering the application: (id, name).
    async fn call(&self, caller: &str) -> (String, String) {
        let id = self.ari.inbound(caller, "5550100");
        settle().await;
        let name = self.ari.name(&id).unwrap();
        (id, name)
    }

    fn continues(&self, id: &str) -> usize {
        self.ari.calls_on("continue_in_dialplan", id).len()
    }

    fn hangups(&self, id: &str) -> usize {
        self.ari.calls_on("hangup", id).len()
    }
}

/// Lets every task that can run, run (the paused clock moves 1 ms).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn user() -> By {
    By::User("crm".into())
}

fn outcome(o: &str, by: &str, detail: &str) -> (String, String, String) {
    (o.into(), by.into(), detail.into())
}

#[tokio::test(start_paused = true)]
async fn held_then_accepted_by_the_api() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550001").await;
    assert_eq!(engine.held(), 1);
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Held));
    // Ringback, and Asterisk's own limit moved to the timeout plus the grace.
    assert_eq!(pbx.ari.calls_on("ring", &id).len(), 1);
    let setvar = pbx.ami.actions_named("Setvar");
    assert_eq!(setvar.len(), 1);
    assert_eq!(setvar[0].get("Channel"), Some(name.as_str()));
    assert_eq!(setvar[0].get("Variable"), Some("TIMEOUT(absolute)"));
    assert_eq!(setvar[0].get("Value"), Some("11.000"));
    let calls = engine.held_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].caller.as_str(), calls[0].did.as_str()),
        ("+15550001", "5550100")
    );

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        engine.held_calls()[0].remaining,
        TIMEOUT - held_for(&pbx, &id)
    );
    let d = engine
        .decide(&name, Decision::Accept, user())
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Accepted);
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Continued));
    assert_eq!(engine.held(), 0);
    assert!(matches!(
        engine.decide(&name, Decision::Refuse, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Accepted))
    ));
    // The timer is gone with the call.
    tokio::time::sleep(TIMEOUT).await;
    assert_eq!(pbx.continues(&id), 1);
    assert_eq!(pbx.store.one(&name), outcome("accepted", "crm", ""));
    let d = &pbx.store.of(&name)[0];
    assert_eq!(
        (d.channel_id.as_str(), d.caller.as_str()),
        (id.as_str(), "+15550001")
    );
}

#[tokio::test(start_paused = true)]
async fn held_then_refused_by_the_api() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550002").await;
    let d = engine
        .decide(&name, Decision::Refuse, user())
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Refused);
    assert_eq!(pbx.ari.fate(&id), Some(Fate::HungUp("busy".into())));
    settle().await;
    // The hangup's own events (hangup request, StasisEnd, destroyed) add nothing.
    tokio::time::sleep(TIMEOUT).await;
    assert_eq!((pbx.hangups(&id), pbx.continues(&id)), (1, 0));
    assert_eq!(pbx.store.one(&name), outcome("refused", "crm", "busy"));
    assert!(matches!(
        engine.decide(&name, Decision::Accept, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Refused))
    ));
}

#[tokio::test(start_paused = true)]
async fn held_then_accepted_by_the_timer() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550003").await;
    tokio::time::sleep(TIMEOUT - Duration::from_millis(5)).await;
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Held));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Continued));
    assert_eq!(engine.held(), 0);
    let at = pbx.ari.calls_on("continue_in_dialplan", &id)[0].at;
    assert_eq!(engine_time(&pbx, &id, at), TIMEOUT);
    assert_eq!(pbx.store.one(&name), outcome("timeout", "timer", ""));
    assert!(matches!(
        engine.decide(&name, Decision::Accept, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Timeout))
    ));
}

/// How long after the hold (its ringback) `at` is.
fn engine_time(pbx: &Pbx, id: &str, at: Instant) -> Duration {
    at - pbx.ari.calls_on("ring", id)[0].at
}

/// How long the call has been held.
fn held_for(pbx: &Pbx, id: &str) -> Duration {
    engine_time(pbx, id, Instant::now())
}

#[tokio::test(start_paused = true)]
async fn a_decision_in_flight_when_the_timer_fires_wins_alone() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550004").await;
    pbx.ari
        .set_latency("continue_in_dialplan", Duration::from_millis(500));
    tokio::time::sleep(TIMEOUT - Duration::from_millis(200)).await;
    let e = engine.clone();
    let n = name.clone();
    let user_decision = tokio::spawn(async move { e.decide(&n, Decision::Accept, user()).await });
    settle().await;
    assert!(engine.held_calls()[0].deciding);
    // The timer fires while the decision is on its way: it gets InProgress
    // and gives up; the API decision is the one outcome.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d = user_decision.await.unwrap().unwrap();
    assert_eq!(d.outcome, Outcome::Accepted);
    assert_eq!(d.apply, Duration::from_millis(500));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pbx.continues(&id), 1);
    assert_eq!(pbx.store.one(&name), outcome("accepted", "crm", ""));
}

#[tokio::test(start_paused = true)]
async fn a_decision_while_the_timer_applies_gets_in_progress_then_already_decided() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550005").await;
    pbx.ari
        .set_latency("continue_in_dialplan", Duration::from_millis(500));
    tokio::time::sleep(TIMEOUT + Duration::from_millis(100)).await;
    assert!(matches!(
        engine.decide(&name, Decision::Refuse, user()).await,
        Err(DecideError::InProgress)
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(matches!(
        engine.decide(&name, Decision::Refuse, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Timeout))
    ));
    assert_eq!((pbx.continues(&id), pbx.hangups(&id)), (1, 0));
    assert_eq!(pbx.store.one(&name), outcome("timeout", "timer", ""));
}

#[tokio::test(start_paused = true)]
async fn two_decisions_at_once_give_one_outcome() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    pbx.ari.set_default_latency(Duration::from_millis(50));
    let (id, name) = pbx.call("+15550006").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (a, b) = tokio::join!(
        engine.decide(&name, Decision::Refuse, By::User("a".into())),
        engine.decide(&name, Decision::Accept, By::User("b".into())),
    );
    assert_eq!(a.unwrap().outcome, Outcome::Refused);
    assert!(matches!(b, Err(DecideError::InProgress)), "{b:?}");
    assert_eq!((pbx.hangups(&id), pbx.continues(&id)), (1, 0));
    tokio::time::sleep(TIMEOUT).await;
    assert_eq!(pbx.store.one(&name), outcome("refused", "a", "busy"));
}

#[tokio::test(start_paused = true)]
async fn the_caller_hanging_up_while_held_ends_the_hold() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550007").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pbx.ari.caller_hangup(&id));
    settle().await;
    assert_eq!(engine.held(), 0);
    assert!(matches!(
        engine.decide(&name, Decision::Accept, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Hangup))
    ));
    tokio::time::sleep(TIMEOUT).await;
    assert_eq!(pbx.continues(&id), 0);
    assert_eq!(
        pbx.store.one(&name),
        outcome("hangup", "caller", "the caller hung up while held")
    );
}

#[tokio::test(start_paused = true)]
async fn the_caller_hanging_up_while_a_decision_is_applied_is_gone() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550008").await;
    pbx.ari
        .set_latency("continue_in_dialplan", Duration::from_millis(300));
    let e = engine.clone();
    let n = name.clone();
    let decision = tokio::spawn(async move { e.decide(&n, Decision::Accept, user()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Its events reach the engine while the decision is in flight.
    assert!(pbx.ari.caller_hangup(&id));
    settle().await;
    assert_eq!(
        engine.held(),
        1,
        "the decision in flight records the outcome"
    );
    assert!(matches!(decision.await.unwrap(), Err(DecideError::Gone)));
    assert_eq!(engine.held(), 0);
    tokio::time::sleep(TIMEOUT).await;
    assert_eq!(
        pbx.store.one(&name),
        outcome(
            "hangup",
            "caller",
            "the channel had left when the decision came"
        )
    );
    assert!(matches!(
        engine.decide(&name, Decision::Accept, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Hangup))
    ));
}

#[tokio::test(start_paused = true)]
async fn asterisk_failing_a_decision_keeps_the_call_held() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550009").await;
    let mut changes = engine.changes();
    changes.borrow_and_update();

    pbx.ari.fail_once(
        "continue_in_dialplan",
        Failure::Protocol("ARI answered 500".into()),
    );
    let r = engine.decide(&name, Decision::Accept, user()).await;
    assert!(
        matches!(r, Err(DecideError::Failed(asterisk::Error::Protocol(_)))),
        "{r:?}"
    );
    assert!(changes.has_changed().unwrap());
    pbx.ari.fail_once("hangup", Failure::Timeout);
    let r = engine.decide(&name, Decision::Refuse, user()).await;
    assert!(
        matches!(r, Err(DecideError::Failed(asterisk::Error::Timeout(_)))),
        "{r:?}"
    );
    // Still held, not deciding, nothing recorded.
    let calls = engine.held_calls();
    assert_eq!((calls.len(), calls[0].deciding), (1, false));
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Held));
    assert!(pbx.store.all().is_empty());
    // The next decision goes through.
    let d = engine
        .decide(&name, Decision::Refuse, user())
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Refused);
    tokio::time::sleep(TIMEOUT).await;
    assert_eq!(pbx.store.one(&name), outcome("refused", "crm", "busy"));
}

#[tokio::test(start_paused = true)]
async fn the_timer_retries_until_asterisk_confirms() {
    let pbx = Pbx::new();
    // Asterisk's own limit far enough for the retries (with the usual 1 s
    // grace, it lets the call go on at 11 s: the next test).
    let engine = pbx
        .engine_with(
            CallControlSettings {
                backstop_grace: Duration::from_secs(30),
                ..settings(TIMEOUT)
            },
            true,
        )
        .await;
    let (id, name) = pbx.call("+15550010").await;
    pbx.ari.fail(
        "continue_in_dialplan",
        Failure::Protocol("ARI answered 503".into()),
    );
    tokio::time::sleep(TIMEOUT + Duration::from_millis(2500)).await;
    // At 10, 11 and 12 s.
    assert_eq!(pbx.continues(&id), 3);
    assert_eq!(engine.held(), 1);
    pbx.ari.clear_faults();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tries = pbx.ari.calls_on("continue_in_dialplan", &id);
    assert_eq!(
        tries.iter().map(|c| c.ok).collect::<Vec<_>>(),
        [false, false, false, true]
    );
    assert_eq!(engine_time(&pbx, &id, tries[3].at), Duration::from_secs(13));
    assert_eq!(engine.held(), 0);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(pbx.continues(&id), 4);
    assert_eq!(pbx.store.one(&name), outcome("timeout", "timer", ""));
}

#[tokio::test(start_paused = true)]
async fn a_reconnection_keeps_held_calls_and_records_what_ended_meanwhile() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (a, name_a) = pbx.call("+15550011").await;
    let (b, name_b) = pbx.call("+15550012").await;
    let (c, name_c) = pbx.call("+15550013").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pbx.ari.disconnect("connection reset");
    settle().await;
    // While pbxgate is cut off: B's caller hangs up, Asterisk lets C go on,
    // and a new call is not held at all. The engine hears of none of it.
    assert!(pbx.ari.caller_hangup(&b));
    assert!(pbx.ari.backstop(&c));
    let (d, name_d) = pbx.call("+15550014").await;
    assert_eq!(pbx.ari.fate(&d), Some(Fate::NotHeld));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(engine.held(), 3);
    assert!(pbx.store.all().is_empty());

    pbx.ari.reconnect();
    settle().await;
    assert_eq!(engine.held(), 1);
    assert_eq!(
        pbx.store.one(&name_b),
        outcome(
            "hangup",
            "caller",
            "hung up while pbxgate was disconnected from ARI"
        )
    );
    assert_eq!(
        pbx.store.one(&name_c),
        outcome(
            "backstop",
            "asterisk",
            "left the hold while pbxgate was disconnected from ARI"
        )
    );
    assert!(pbx.store.of(&name_d).is_empty());
    // A keeps its own timer: 10 s from its hold, not from the reconnection.
    let held = engine.held_calls();
    assert_eq!(held[0].channel, name_a);
    assert_eq!(held[0].remaining, TIMEOUT - held_for(&pbx, &a));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let at = pbx.ari.calls_on("continue_in_dialplan", &a)[0].at;
    assert_eq!(engine_time(&pbx, &a, at), TIMEOUT);
    assert_eq!(pbx.store.one(&name_a), outcome("timeout", "timer", ""));
    // No REST call on D, ever.
    assert!(pbx.ari.calls().iter().all(|x| x.channel_id != d));
    assert!(matches!(
        engine.decide(&name_c, Decision::Accept, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Backstop))
    ));
}

/// The real-Asterisk test a_lost_ari_websocket_never_strands_held_calls, on
/// the fake: cut off past the timeout, Asterisk's limit (moved over AMI to
/// timeout + grace) lets the call go on, and that is its one outcome.
#[tokio::test(start_paused = true)]
async fn cut_off_past_the_timeout_the_call_goes_on_at_asterisks_limit() {
    let pbx = Pbx::new();
    // The dialplan's own limit until pbxgate moves it.
    pbx.ari.set_hold_limit(Some(Duration::from_secs(120)));
    let timeout = Duration::from_secs(3);
    let engine = pbx.engine(timeout, true).await;
    let (id, name) = pbx.call("+15550015").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    pbx.ari.disconnect("relay cut");
    // The timer fires at 3 s and fails; Asterisk's limit is 3 + 1 s.
    tokio::time::sleep(Duration::from_millis(3700)).await;
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Held));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Backstop));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        pbx.ari
            .calls_on("continue_in_dialplan", &id)
            .iter()
            .all(|c| !c.ok)
    );
    pbx.ari.reconnect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(engine.held(), 0);
    let (o, by, _) = pbx.store.one(&name);
    assert_eq!((o.as_str(), by.as_str()), ("backstop", "asterisk"));
    assert!(matches!(
        engine.decide(&name, Decision::Accept, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Backstop))
    ));

    // Cut off for a moment: the call stays held and can still be decided.
    let (id, name) = pbx.call("+15550016").await;
    pbx.ari.disconnect("relay cut");
    tokio::time::sleep(Duration::from_millis(300)).await;
    pbx.ari.reconnect();
    settle().await;
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Held));
    let d = engine
        .decide(&name, Decision::Accept, user())
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Accepted);
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Continued));
}

#[tokio::test(start_paused = true)]
async fn a_new_engine_takes_over_the_calls_held_before_a_restart() {
    // Calls held by a pbxgate that is gone: in the application, no client.
    let pbx = Pbx::new();
    let old = pbx.ari.inbound("+15550017", "5550100");
    let snooped = pbx.ari.enter("Snoop/x", "", "", &["snoop", "1"]);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let a = pbx.ari.inbound("+15550018", "5550101");
    let b = pbx.ari.inbound("+15550019", "5550102");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let engine = pbx.engine(TIMEOUT, true).await;
    // The call past its timeout goes on at once; the others are held with
    // what is left of theirs (7 s); the snoop channel is not call control's.
    let name = |id: &str| pbx.ari.name(id).unwrap();
    assert_eq!(pbx.ari.fate(&old), Some(Fate::Continued));
    assert_eq!(
        pbx.store.one(&name(&old)),
        outcome("timeout", "restart", "")
    );
    assert_eq!(pbx.ari.fate(&snooped), Some(Fate::Held));
    assert!(
        pbx.ari
            .calls()
            .iter()
            .all(|c| c.channel_id != snooped || c.method == "channel")
    );
    let held = engine.held_calls();
    assert_eq!(
        held.iter().map(|h| h.channel.clone()).collect::<Vec<_>>(),
        [name(&a), name(&b)]
    );
    assert_eq!(
        held.iter().map(|h| h.did.as_str()).collect::<Vec<_>>(),
        ["5550101", "5550102"]
    );
    let remaining = held[0].remaining;
    assert!(
        remaining <= Duration::from_secs(7) && remaining > Duration::from_millis(6900),
        "{remaining:?}"
    );
    // Asterisk's limit moved to what is left plus the grace.
    let limits: Vec<f64> = pbx
        .ami
        .actions_named("Setvar")
        .iter()
        .filter_map(|s| s.get("Value")?.parse().ok())
        .collect();
    assert_eq!(limits.len(), 3, "{limits:?}");
    assert!(limits[1] > 7.9 && limits[1] <= 8.0, "{limits:?}");

    let d = engine
        .decide(&name(&a), Decision::Accept, user())
        .await
        .unwrap();
    assert_eq!(d.outcome, Outcome::Accepted);
    tokio::time::sleep(Duration::from_millis(6800)).await;
    assert_eq!(pbx.ari.fate(&b), Some(Fate::Held));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pbx.ari.fate(&b), Some(Fate::Continued));
    assert_eq!(pbx.store.one(&name(&a)), outcome("accepted", "crm", ""));
    assert_eq!(pbx.store.one(&name(&b)), outcome("timeout", "restart", ""));
    assert_eq!(pbx.store.all().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn missed_events_are_made_up_for_by_reading_the_application() {
    let pbx = Pbx::on(FakeStasis::with_capacity("pbxgate", 8));
    let engine = pbx.engine(TIMEOUT, true).await;
    // 30 calls before the engine runs again: its event receiver lags.
    let ids: Vec<String> = (0..30)
        .map(|i| pbx.ari.inbound(&format!("+1555100{i:04}"), "5550100"))
        .collect();
    settle().await;
    assert_eq!(engine.held(), 30);
    for id in &ids {
        let name = pbx.ari.name(id).unwrap();
        engine
            .decide(&name, Decision::Refuse, user())
            .await
            .unwrap();
    }
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!(pbx.store.all().len(), 30);
    for id in &ids {
        assert_eq!(pbx.hangups(id), 1);
        assert_eq!(pbx.continues(id), 0);
    }
}

#[tokio::test(start_paused = true)]
async fn release_all_lets_every_held_call_go_on_once() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let mut calls = Vec::new();
    for i in 0..3 {
        calls.push(pbx.call(&format!("+1555002{i}")).await);
    }
    // One decision already on its way when pbxgate stops.
    pbx.ari
        .set_latency("continue_in_dialplan", Duration::from_millis(200));
    let e = engine.clone();
    let first = calls[0].1.clone();
    let early = tokio::spawn(async move { e.decide(&first, Decision::Accept, user()).await });
    settle().await;
    engine.release_all().await;
    assert_eq!(engine.held(), 0);
    assert!(early.await.unwrap().is_ok());
    assert_eq!(pbx.store.one(&calls[0].1), outcome("accepted", "crm", ""));
    for (id, name) in &calls[1..] {
        assert_eq!(pbx.ari.fate(id), Some(Fate::Continued));
        assert_eq!(pbx.store.one(name), outcome("accepted", "shutdown", ""));
    }
    // Stopping: a call arriving now is not held.
    let (late, late_name) = pbx.call("+15550029").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pbx.ari.fate(&late), Some(Fate::Continued));
    assert_eq!(engine.held(), 0);
    tokio::time::sleep(TIMEOUT).await;
    assert!(pbx.store.of(&late_name).is_empty());
    for (id, _) in &calls {
        assert_eq!(pbx.continues(id), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn release_all_leaves_to_asterisk_what_it_cannot_release() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let (id, name) = pbx.call("+15550030").await;
    pbx.ari.fail("continue_in_dialplan", Failure::Timeout);
    engine.release_all().await;
    // Not confirmed: still held (Asterisk's limit lets it go on), no record.
    assert_eq!(engine.held(), 1);
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Held));
    assert!(pbx.store.of(&name).is_empty());
}

#[tokio::test(start_paused = true)]
async fn with_call_control_off_calls_go_on_at_once() {
    let pbx = Pbx::new();
    // A call already in the application when the engine starts.
    let waiting = pbx.ari.inbound("+15550031", "5550100");
    let engine = pbx.engine(TIMEOUT, false).await;
    assert_eq!(pbx.ari.fate(&waiting), Some(Fate::Continued));
    let (id, name) = pbx.call("+15550032").await;
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Continued));
    assert_eq!(engine.held(), 0);
    assert!(matches!(
        engine.decide(&name, Decision::Accept, user()).await,
        Err(DecideError::Unknown)
    ));
    // Neither rung nor limited, nor recorded.
    assert!(pbx.ari.calls_on("ring", &id).is_empty());
    assert!(pbx.ami.actions_named("Setvar").is_empty());
    tokio::time::sleep(TIMEOUT * 2).await;
    assert!(pbx.store.all().is_empty());

    // Switched on live: the next call is held.
    engine.set_enabled(true);
    let (id, name) = pbx.call("+15550033").await;
    assert_eq!(pbx.ari.fate(&id), Some(Fate::Held));
    engine.set_enabled(false);
    // Calls already held stay held until decided.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(engine.held(), 1);
    engine
        .decide(&name, Decision::Accept, user())
        .await
        .unwrap();
    settle().await;
    assert_eq!(pbx.store.one(&name), outcome("accepted", "crm", ""));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_channel_and_other_applications_channels() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    assert!(matches!(
        engine
            .decide("PJSIP/nobody-00000001", Decision::Accept, user())
            .await,
        Err(DecideError::Unknown)
    ));
    // A snoop channel of the channel actions enters the same application.
    let (target, _) = pbx.call("+15550034").await;
    pbx.ari
        .snoop(&target, "both", "none", "snoop-1", "snoop,spy")
        .await
        .unwrap();
    settle().await;
    assert_eq!(engine.held(), 1);
    assert_eq!(pbx.ari.fate("snoop-1"), Some(Fate::Held));
    assert!(
        pbx.ari
            .calls_on("continue_in_dialplan", "snoop-1")
            .is_empty()
    );
    // Its end is nobody's outcome.
    assert!(pbx.ari.caller_hangup("snoop-1"));
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!(pbx.store.all().len(), 1);
}

/// Many calls, every way a hold ends, decisions racing each other, the
/// timer and the callers: one record per call, matching what happened.
#[tokio::test(start_paused = true)]
async fn every_call_gets_exactly_one_outcome() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    pbx.ari.set_default_latency(Duration::from_millis(40));
    let mut calls = Vec::new();
    for i in 0..40 {
        calls.push(pbx.call(&format!("+1555300{i:04}")).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (id, name)) in calls.iter().cloned().enumerate() {
        let engine = engine.clone();
        let ari = pbx.ari.clone();
        tasks.spawn(async move {
            // Spread over the hold, some right at the timeout.
            let at = Duration::from_millis(250 * (i as u64 % 41));
            tokio::time::sleep(at).await;
            match i % 5 {
                0 => {
                    let _ = engine.decide(&name, Decision::Accept, user()).await;
                }
                1 => {
                    let _ = engine.decide(&name, Decision::Refuse, user()).await;
                }
                2 => {
                    ari.caller_hangup(&id);
                }
                3 => {
                    // Two users at once, and the caller hanging up meanwhile.
                    let (_, _, hung) = tokio::join!(
                        engine.decide(&name, Decision::Accept, By::User("a".into())),
                        engine.decide(&name, Decision::Refuse, By::User("b".into())),
                        async {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            ari.caller_hangup(&id)
                        }
                    );
                    let _ = hung;
                }
                _ => {} // the timer
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!(engine.held(), 0);
    assert_eq!(pbx.store.all().len(), calls.len());
    for (id, name) in &calls {
        let (o, _, _) = pbx.store.one(name);
        let fate = pbx.ari.fate(id).unwrap();
        let consistent = match o.as_str() {
            "accepted" | "timeout" => fate == Fate::Continued,
            "refused" => fate == Fate::HungUp("busy".into()),
            "hangup" => fate == Fate::CallerHungUp,
            _ => false,
        };
        assert!(consistent, "{name}: recorded {o}, but {fate:?}");
        assert!(pbx.continues(id) + pbx.hangups(id) <= 1, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_engine_remembers_a_bounded_number_of_outcomes() {
    let pbx = Pbx::new();
    let engine = pbx.engine(TIMEOUT, true).await;
    let mut names = Vec::new();
    for i in 0..REMEMBERED + 2 {
        let id = pbx.ari.inbound(&format!("+1{i}"), "5550100");
        names.push(pbx.ari.name(&id).unwrap());
        if i % 500 == 499 {
            settle().await;
            for n in &names[names.len() - 500..] {
                engine.decide(n, Decision::Accept, user()).await.unwrap();
            }
        }
    }
    settle().await;
    for n in &names[names.len() - 2..] {
        engine.decide(n, Decision::Accept, user()).await.unwrap();
    }
    // The oldest two are forgotten, the rest remembered.
    for n in &names[..2] {
        assert!(matches!(
            engine.decide(n, Decision::Accept, user()).await,
            Err(DecideError::Unknown)
        ));
    }
    for n in [&names[2], &names[names.len() - 1]] {
        assert!(matches!(
            engine.decide(n, Decision::Accept, user()).await,
            Err(DecideError::AlreadyDecided(Outcome::Accepted))
        ));
    }
    settle().await;
    assert_eq!(pbx.store.all().len(), REMEMBERED + 2);
}

/// On the real clock and a real SQLite store: the decisions are written,
/// once each, and a stop waits for them.
#[tokio::test]
async fn decisions_reach_a_real_store_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let db = store::Store::connect(&url, &store::ConnectOptions::default())
        .await
        .unwrap();
    let ari = FakeStasis::new("pbxgate");
    let ami = FakeManager::new();
    let engine = Engine::start(
        ari.clone(),
        ami,
        Arc::new(db.clone()),
        settings(Duration::from_millis(300)),
        true,
    );
    let until = |engine: &Arc<Engine>, n: usize| {
        let engine = engine.clone();
        async move {
            for _ in 0..200 {
                if engine.held() == n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("never {n} held");
        }
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ids: Vec<String> = (0..4)
        .map(|i| ari.inbound(&format!("+155540{i}"), "5550100"))
        .collect();
    until(&engine, 4).await;
    let name = |id: &String| ari.name(id).unwrap();
    engine
        .decide(&name(&ids[0]), Decision::Accept, user())
        .await
        .unwrap();
    engine
        .decide(&name(&ids[1]), Decision::Refuse, user())
        .await
        .unwrap();
    ari.caller_hangup(&ids[2]);
    // The fourth: the timer.
    until(&engine, 0).await;
    engine.release_all().await;
    let mut got: Vec<(String, String, String)> = db
        .recent_decisions(100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.channel, d.outcome.to_string(), d.decided_by))
        .collect();
    got.sort();
    let mut want: Vec<(String, String, String)> = [
        (0, "accepted", "crm"),
        (1, "refused", "crm"),
        (2, "hangup", "caller"),
        (3, "timeout", "timer"),
    ]
    .iter()
    .map(|(i, o, by)| (name(&ids[*i]), (*o).to_owned(), (*by).to_owned()))
    .collect();
    want.sort();
    assert_eq!(got, want);
    db.close().await;
}

fn owner(epoch: i64, for_: Duration) -> crate::cluster::Role {
    crate::cluster::Role::Owner {
        epoch,
        since_ms: 0,
        until: Instant::now() + for_,
    }
}

/// A standby decides a call the owner holds: one claim, one record (the
/// standby's); the owner lets go of the call without recording it, and its
/// timer decides nothing.
#[tokio::test(start_paused = true)]
async fn a_standby_decides_a_call_the_owner_holds_exactly_once() {
    let pbx = Pbx::new();
    let (_a_role, a_rx) = watch::channel(owner(1, Duration::from_secs(3600)));
    let (_b_role, b_rx) = watch::channel(crate::cluster::Role::Standby);
    let a = pbx.node("a", a_rx).await;
    let b = pbx.node("b", b_rx).await;
    let (id, name) = pbx.call("+15550101").await;
    // Only the owner holds it (both see the event on the fake).
    assert_eq!((a.held(), b.held()), (1, 0));
    let d = b.decide_any(&name, Decision::Refuse, user()).await.unwrap();
    assert_eq!(d.outcome, Outcome::Refused);
    settle().await;
    assert_eq!(a.held(), 0, "the owner let go of the call");
    assert!(matches!(
        a.decide_any(&name, Decision::Accept, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Refused))
    ));
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!((pbx.hangups(&id), pbx.continues(&id)), (1, 0));
    assert_eq!(pbx.store.one(&name), outcome("refused", "crm", "busy"));
    // A second standby decision finds the call gone.
    assert!(matches!(
        b.decide_any(&name, Decision::Accept, user()).await,
        Err(DecideError::Unknown)
    ));
}

/// Claimed by another node first (it applies it): the owner's decision and
/// timer do nothing, and nothing is recorded here.
#[tokio::test(start_paused = true)]
async fn a_call_claimed_elsewhere_is_not_decided_here() {
    let pbx = Pbx::new();
    let (_role, rx) = watch::channel(owner(1, Duration::from_secs(3600)));
    let a = pbx.node("a", rx).await;
    let (id, name) = pbx.call("+15550102").await;
    pbx.store
        .claim_call(&id, "b", "accept", None)
        .await
        .unwrap();
    assert!(matches!(
        a.decide_any(&name, Decision::Refuse, user()).await,
        Err(DecideError::AlreadyDecided(Outcome::Accepted))
    ));
    assert_eq!(a.held(), 0);
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!((pbx.hangups(&id), pbx.continues(&id)), (0, 0));
    assert!(pbx.store.of(&name).is_empty());
}

/// Losing the ownership (another node took over, or the lease lapsed
/// without renewal) stops this node at once: its calls are forgotten, its
/// timers decide nothing, a decision asked of it goes the standby's way.
#[tokio::test(start_paused = true)]
async fn a_node_that_stops_owning_decides_nothing_more() {
    let pbx = Pbx::new();
    let (role, rx) = watch::channel(owner(1, Duration::from_secs(3600)));
    let a = pbx.node("a", rx).await;
    let (id, name) = pbx.call("+15550103").await;
    assert_eq!(a.held(), 1);
    role.send_replace(crate::cluster::Role::Standby);
    settle().await;
    assert_eq!(a.held(), 0);
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!((pbx.hangups(&id), pbx.continues(&id)), (0, 0));
    assert!(pbx.store.of(&name).is_empty());

    // A lease that lapses without a word from the database: the same, at
    // the moment it lapses, before the timer would fire.
    let (_role2, rx2) = watch::channel(owner(2, Duration::from_secs(4)));
    let pbx2 = Pbx::new();
    let c = pbx2.node("c", rx2).await;
    let (id2, name2) = pbx2.call("+15550104").await;
    assert_eq!(c.held(), 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(c.held(), 0);
    assert!(matches!(
        c.decide(&name2, Decision::Accept, user()).await,
        Err(DecideError::Unknown)
    ));
    tokio::time::sleep(TIMEOUT * 2).await;
    assert_eq!(pbx2.continues(&id2), 0);
    assert!(pbx2.store.of(&name2).is_empty());
}

/// A claim the database refuses under the lease (fenced: the lease lapsed
/// there first) leaves the call held and decides nothing.
#[tokio::test(start_paused = true)]
async fn a_fenced_claim_applies_nothing() {
    let pbx = Pbx::new();
    // Epoch 0 is what the fake store fences.
    let (_role, rx) = watch::channel(owner(0, Duration::from_secs(3600)));
    let a = pbx.node("a", rx).await;
    let (id, name) = pbx.call("+15550105").await;
    assert!(matches!(
        a.decide(&name, Decision::Accept, user()).await,
        Err(DecideError::NotOwner)
    ));
    assert_eq!(a.held(), 1);
    assert_eq!(pbx.continues(&id), 0);
    assert!(pbx.store.of(&name).is_empty());
}
