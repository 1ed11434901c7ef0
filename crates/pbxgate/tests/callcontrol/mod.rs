//! Call control on real calls: inbound calls from the rig's carrier held in
//! pbxgate's Stasis application, decided by acceptCall / refuseCall, the
//! timer, or — when pbxgate is killed — by Asterisk's own hold limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use asterisk::ami::{Ami, Message};
use asterisk::testing::{Rig, rig};
use serde_json::{Value, json};
use store::{CallDecision, CdrStore, ConnectOptions, DecisionStore, Store};
use tokio::time::Instant;
use ucm::cdr::CdrRecord;

use crate::calls::{CALLS, pbx_config, wait_connected};
use crate::kit::*;

mod cluster;

type Seen = Vec<(Instant, Arc<Message>)>;

/// Every AMI event, with the time this test received it.
#[derive(Clone)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
}

impl Recorder {
    fn start(ami: &Ami) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut rx = ami.subscribe();
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok(m) = rx.recv().await {
                s.lock().unwrap().push((Instant::now(), m));
            }
        });
        Recorder { seen }
    }

    async fn wait(
        &self,
        what: &str,
        limit: Duration,
        pred: impl Fn(&Message) -> bool,
    ) -> (Instant, Arc<Message>) {
        // The time of each event is the time it was received, not found here.
        wait_until(format!("the AMI event: {what}"), limit, async || {
            let seen = self.seen.lock().unwrap();
            match seen.iter().find(|(_, m)| pred(m)) {
                Some(hit) => Ok(hit.clone()),
                None => Err(format!("{} other events", seen.len())),
            }
        })
        .await
    }

    /// The inbound channel of `caller` entering Stasis: (when, channel name).
    async fn held(&self, caller: &str) -> (Instant, String) {
        let (t, m) = self
            .wait(
                &format!("Stasis for {caller}"),
                Duration::from_secs(15),
                |m| {
                    m.event() == Some("Newexten")
                        && m.get("Application") == Some("Stasis")
                        && m.get("CallerIDNum") == Some(caller)
                },
            )
            .await;
        (t, m.get("Channel").unwrap().to_owned())
    }

    /// When `channel` goes on to the DID routing's Dial().
    async fn dialled(&self, channel: &str, limit: Duration) -> Instant {
        self.wait(&format!("Dial on {channel}"), limit, |m| {
            m.event() == Some("Newexten")
                && m.get("Application") == Some("Dial")
                && m.get("Channel") == Some(channel)
        })
        .await
        .0
    }

    fn was_dialled(&self, channel: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|(_, m)| {
            m.event() == Some("Newexten")
                && m.get("Application") == Some("Dial")
                && m.get("Channel") == Some(channel)
        })
    }
}

/// An inbound call from the carrier to `did`; the carrier's side stays
/// `ring_ms` ringing at most, and `secs` once answered.
pub(crate) async fn inbound(ami: &Ami, did: &str, caller: &str, ring_ms: u32, secs: u32) {
    let r = ami
        .action(
            "Originate",
            &[
                ("Channel", &format!("PJSIP/{did}@carrier")),
                ("CallerID", &format!("\"Caller\" <{caller}>")),
                ("Application", "Wait"),
                ("Data", &secs.to_string()),
                ("Timeout", &ring_ms.to_string()),
                ("Async", "true"),
            ],
        )
        .await
        .unwrap();
    assert!(r.is_success(), "{:?}", r.response);
}

fn config(rig: &Rig, timeout_secs: f64) -> String {
    pbx_config(rig, "").replace(
        "[https_api]\npassword = \"pw\"\n",
        &format!(
            "[https_api]\nusername = \"crm\"\npassword = \"pw\"\ncall_control = true\n\
             [[https_api.users]]\nusername = \"billing\"\npassword = \"pw2\"\n\
             [call_control]\ntimeout_secs = {timeout_secs}\n"
        ),
    )
}

async fn decide(
    srv: &Server,
    c: &reqwest::Client,
    cookie: &str,
    action: &str,
    channel: &str,
) -> Value {
    srv.api(
        c,
        json!({"action": action, "cookie": cookie, "channel": channel}),
    )
    .await
}

/// The decision recorded for `channel` (recording is asynchronous).
async fn decision(store: &Store, channel: &str) -> CallDecision {
    wait_until(
        format!("a decision recorded for {channel}"),
        Duration::from_secs(10),
        async || {
            let all = store.recent_decisions(1000).await.unwrap();
            let n = all.len();
            let mine: Vec<_> = all.into_iter().filter(|d| d.channel == channel).collect();
            match mine.first() {
                Some(d) => {
                    assert_eq!(mine.len(), 1, "one decision per call: {mine:?}");
                    Ok(d.clone())
                }
                None => Err(format!("{n} decisions of other calls")),
            }
        },
    )
    .await
}

/// The caller's inbound CDR, once stored.
pub(crate) async fn cdr_of(store: &Store, src: &str) -> CdrRecord {
    wait_until(
        format!("a CDR from {src}"),
        Duration::from_secs(30),
        async || {
            let all = store.recent_cdrs(1000).await.unwrap();
            let n = all.len();
            all.into_iter()
                .find(|r| r.get("src") == src)
                .ok_or(format!("{n} CDRs from others"))
        },
    )
    .await
}

/// Waits until pbxgate has moved Asterisk's own hold limit of the held
/// `channel` (its backstop, set over AMI once the call is held) down to
/// `secs` or less: from then on the call goes on by itself even if pbxgate
/// goes away. Before, the dialplan's limit (12 s) is in force.
async fn wait_backstop(ami: &Ami, channel: &str, secs: f64) {
    wait_until(
        format!("pbxgate to set the hold limit of {channel} to {secs} s"),
        Duration::from_secs(10),
        async || {
            let r = ami
                .action(
                    "Getvar",
                    &[("Channel", channel), ("Variable", "TIMEOUT(absolute)")],
                )
                .await
                .unwrap();
            let value = r.response.get("Value").unwrap_or("").to_owned();
            match value.parse::<f64>() {
                Ok(left) if left > 0.0 && left <= secs + 0.001 => Ok(()),
                _ => Err(format!("TIMEOUT(absolute) = {value:?}: {:?}", r.response)),
            }
        },
    )
    .await;
}

async fn open(srv: &Server) -> Store {
    Store::connect(&srv.db_url, &ConnectOptions::default())
        .await
        .unwrap()
}

/// pbxgate on the rig with call control on, logged in as `crm`.
struct Setup {
    srv: Server,
    c: reqwest::Client,
    cookie: String,
    ami: Ami,
    rec: Recorder,
    store: Store,
}

async fn setup(rig: &Rig, db: &store::testing::TestDb, timeout_secs: f64) -> Setup {
    let srv = Server::start(db, &config(rig, timeout_secs)).await;
    wait_connected(&srv).await;
    let c = client(None);
    let cookie = srv.login(&c, "crm", "pw").await.unwrap();
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    let store = open(&srv).await;
    Setup {
        srv,
        c,
        cookie,
        ami,
        rec,
        store,
    }
}

#[tokio::test]
async fn accept_refuse_and_timeout_decide_real_inbound_calls() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let Setup {
            srv,
            c,
            cookie,
            ami,
            rec,
            store,
        } = setup(&rig, &db, 3.0).await;

        // Accept: the call waits (not routed) until acceptCall, then reaches 1000.
        inbound(&ami, "5550100", "+15557000001", 20_000, 2).await;
        let (_, ch) = rec.held("+15557000001").await;
        assert!(ch.starts_with("PJSIP/trunk-"), "{ch}");
        // A sleep on purpose: that nothing happens (the call is not routed)
        // can only be seen by letting some time pass.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !rec.was_dialled(&ch),
            "the held call went on before a decision"
        );
        let r = decide(&srv, &c, &cookie, "acceptCall", &ch).await;
        assert_eq!(r, json!({"response": {}, "status": 0}));
        rec.dialled(&ch, Duration::from_secs(2)).await;
        let cdr = cdr_of(&store, "+15557000001").await;
        assert_eq!(
            (
                cdr.get("disposition"),
                cdr.get("dst"),
                cdr.get("src_trunk_name")
            ),
            ("ANSWERED", "1000", "trunk")
        );
        let d = decision(&store, &ch).await;
        assert_eq!(
            (d.outcome.as_str(), d.decided_by.as_str()),
            ("accepted", "crm")
        );
        assert_eq!(
            (d.caller.as_str(), d.did.as_str()),
            ("+15557000001", "5550100")
        );
        assert!(d.decided_at_ms >= d.held_at_ms && d.apply_us > 0, "{d:?}");
        // A second decision on the same call: a clear error, nothing happens.
        let r = decide(&srv, &c, &cookie, "refuseCall", &ch).await;
        assert_eq!(r["status"], -43, "{r}");
        assert!(
            r["response"]["error_msg"]
                .as_str()
                .unwrap()
                .contains("already accepted"),
            "{r}"
        );

        // Refuse: the caller is rejected, the CDR shows the call ended in Stasis.
        inbound(&ami, "5550101", "+15557000002", 20_000, 2).await;
        let (_, ch) = rec.held("+15557000002").await;
        let r = decide(&srv, &c, &cookie, "refuseCall", &ch).await;
        assert_eq!(r["status"], 0, "{r}");
        let cdr = cdr_of(&store, "+15557000002").await;
        assert_ne!(cdr.get("disposition"), "ANSWERED");
        assert_eq!(cdr.get("lastapp"), "Stasis");
        assert!(!rec.was_dialled(&ch));
        let d = decision(&store, &ch).await;
        assert_eq!((d.outcome.as_str(), d.detail.as_str()), ("refused", "busy"));

        // No decision: accepted by the timer after 3 s (tolerance: scheduling
        // and two AMI hops).
        inbound(&ami, "5550100", "+15557000003", 20_000, 1).await;
        let (held_at, ch) = rec.held("+15557000003").await;
        let went_on = rec.dialled(&ch, Duration::from_secs(8)).await;
        let waited = went_on - held_at;
        assert!(
            waited >= Duration::from_millis(2900) && waited <= Duration::from_millis(3600),
            "accepted after {waited:?}, expected 3 s"
        );
        let d = decision(&store, &ch).await;
        assert_eq!(
            (d.outcome.as_str(), d.decided_by.as_str()),
            ("timeout", "timer")
        );
        let cdr = cdr_of(&store, "+15557000003").await;
        assert_eq!(cdr.get("disposition"), "ANSWERED");
        // Too late: the call was already accepted automatically.
        let r = decide(&srv, &c, &cookie, "refuseCall", &ch).await;
        assert_eq!(r["status"], -43, "{r}");
        assert!(
            r["response"]["error_msg"]
                .as_str()
                .unwrap()
                .contains("automatically"),
            "{r}"
        );

        // Bad input.
        let r = decide(&srv, &c, &cookie, "acceptCall", "PJSIP/trunk-7fffffff").await;
        assert_eq!(r["status"], -16, "{r}");
        let r = srv
            .api(&c, json!({"action":"acceptCall","cookie":cookie}))
            .await;
        assert_eq!(r["status"], -1, "{r}");
        let r = srv
            .api(
                &c,
                json!({"action":"acceptCall","cookie":cookie,"channel":{"x":1}}),
            )
            .await;
        assert_eq!(r["status"], -1, "{r}");
        let r = decide(
            &srv,
            &c,
            &cookie,
            "acceptCall",
            "PJSIP/trunk-1\r\nAction: Hangup",
        )
        .await;
        assert_eq!(r["status"], -16, "{r}");
        // A user without Call Control: no permission, whatever the channel.
        let other = srv.login(&c, "billing", "pw2").await.unwrap();
        let r = decide(&srv, &c, &other, "acceptCall", &ch).await;
        assert_eq!(r["status"], -47, "{r}");
        let r = decide(&srv, &c, "sid1-1", "acceptCall", &ch).await;
        assert_eq!(r["status"], -6, "{r}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_caller_hanging_up_while_held_is_recorded_and_cannot_be_decided() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let db = dbs().await.remove(0);
    let Setup {
        srv,
        c,
        cookie,
        ami,
        rec,
        store,
    } = setup(&rig, &db, 10.0).await;
    let dir = srv.dir.clone();

    // The carrier gives up after 1.5 s of ringing.
    inbound(&ami, "5550100", "+15557000011", 1500, 1).await;
    let (_, ch) = rec.held("+15557000011").await;
    let d = decision(&store, &ch).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("hangup", "caller")
    );
    let held_ms = d.decided_at_ms - d.held_at_ms;
    assert!((1000..5000).contains(&held_ms), "{d:?}");
    let r = decide(&srv, &c, &cookie, "acceptCall", &ch).await;
    assert_eq!(r["status"], -43, "{r}");
    assert!(
        r["response"]["error_msg"]
            .as_str()
            .unwrap()
            .contains("ended by the caller"),
        "{r}"
    );
    assert!(!rec.was_dialled(&ch));
    srv.stop().await;

    // The operator sees it with `pbxgate decisions`.
    let out = std::process::Command::new(BIN)
        .args(["decisions", "--limit", "5", "--config"])
        .arg(dir.path().join("pbxgate-0.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains(&ch))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("+15557000011") && line.contains("hangup") && line.contains("caller"),
        "{line}"
    );
}

#[tokio::test]
async fn twenty_simultaneous_held_calls_decided_in_mixed_order() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let Setup {
            srv,
            c,
            cookie,
            ami,
            rec,
            store,
        } = setup(&rig, &db, 30.0).await;

        let callers: Vec<String> = (0..20).map(|i| format!("+1555800{i:04}")).collect();
        for caller in &callers {
            inbound(&ami, "5550100", caller, 40_000, 1).await;
        }
        let mut held = Vec::new();
        for caller in &callers {
            held.push(rec.held(caller).await.1);
        }
        // Mixed order (a fixed permutation), all at once; even: accept, odd: refuse.
        let order: Vec<usize> = (0..20).map(|i| (i * 7 + 3) % 20).collect();
        let answers = futures_util::future::join_all(order.iter().map(|&i| {
            let action = if i % 2 == 0 {
                "acceptCall"
            } else {
                "refuseCall"
            };
            let (srv, c, cookie, ch) = (&srv, &c, &cookie, held[i].clone());
            async move { (i, decide(srv, c, cookie, action, &ch).await) }
        }))
        .await;
        for (i, r) in &answers {
            assert_eq!(r["status"], 0, "call {i}: {r}");
        }
        for (i, ch) in held.iter().enumerate() {
            let d = decision(&store, ch).await;
            let want = if i % 2 == 0 { "accepted" } else { "refused" };
            assert_eq!(d.outcome, want, "call {i} {ch}");
            assert_eq!(d.caller, callers[i]);
            if i % 2 == 0 {
                rec.dialled(ch, Duration::from_secs(5)).await;
            }
        }
        for (i, caller) in callers.iter().enumerate() {
            let cdr = cdr_of(&store, caller).await;
            assert_eq!(
                cdr.get("disposition") == "ANSWERED",
                i % 2 == 0,
                "{caller}: {cdr:?}"
            );
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn killed_pbxgate_never_strands_held_calls() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let db = dbs().await.remove(0);
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    // Timeout 4 s, grace 1 s: Asterisk's own limit is 5 s after the hold.
    let cfg = config(&rig, 4.0);

    // 1. Killed, not restarted: the held calls go on by themselves at the limit.
    let srv = Server::start(&db, &cfg).await;
    wait_connected(&srv).await;
    inbound(&ami, "5550100", "+15557000021", 20_000, 1).await;
    inbound(&ami, "5550100", "+15557000022", 20_000, 1).await;
    let (t1, ch1) = rec.held("+15557000021").await;
    let (t2, ch2) = rec.held("+15557000022").await;
    // Killed once pbxgate has set Asterisk's own limit (4 + 1 s) on both.
    wait_backstop(&ami, &ch1, 5.0).await;
    wait_backstop(&ami, &ch2, 5.0).await;
    srv.kill().await;
    // A call arriving while pbxgate is away is not held at all.
    let t3 = Instant::now();
    inbound(&ami, "5550100", "+15557000023", 20_000, 1).await;
    let (_, ch3) = rec
        .wait("Stasis for the third call", Duration::from_secs(10), |m| {
            m.event() == Some("Newexten")
                && m.get("Application") == Some("Stasis")
                && m.get("CallerIDNum") == Some("+15557000023")
        })
        .await;
    let ch3 = ch3.get("Channel").unwrap().to_owned();
    let went_on = rec.dialled(&ch3, Duration::from_secs(3)).await;
    assert!(went_on - t3 < Duration::from_secs(2), "{:?}", went_on - t3);
    for (t, ch) in [(t1, &ch1), (t2, &ch2)] {
        let went_on = rec.dialled(ch, Duration::from_secs(10)).await;
        let waited = went_on - t;
        assert!(
            waited >= Duration::from_millis(4500) && waited <= Duration::from_millis(6500),
            "{ch} went on after {waited:?}, expected Asterisk's limit of 5 s"
        );
    }

    // 2. Killed and restarted: the new process takes the held calls over,
    //    acceptCall works on them and the rest are accepted on time.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let port = free_port();
    let srv = Server::start_in(&db, &cfg, dir.clone(), port).await;
    wait_connected(&srv).await;
    inbound(&ami, "5550100", "+15557000024", 20_000, 1).await;
    inbound(&ami, "5550100", "+15557000025", 20_000, 1).await;
    let (_, ch4) = rec.held("+15557000024").await;
    let (t5, ch5) = rec.held("+15557000025").await;
    srv.kill().await;
    let srv = Server::start_in(&db, &cfg, dir, port).await;
    wait_connected(&srv).await;
    let c = client(None);
    let cookie = srv.login(&c, "crm", "pw").await.unwrap();
    let r = decide(&srv, &c, &cookie, "acceptCall", &ch4).await;
    assert_eq!(r["status"], 0, "{r}\n{}", srv.log_text());
    rec.dialled(&ch4, Duration::from_secs(2)).await;
    let went_on = rec.dialled(&ch5, Duration::from_secs(8)).await;
    let waited = went_on - t5;
    assert!(
        waited >= Duration::from_millis(3800) && waited <= Duration::from_millis(4800),
        "the taken-over call went on after {waited:?}, expected the 4 s timeout"
    );
    let store = open(&srv).await;
    let d = decision(&store, &ch4).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("accepted", "crm")
    );
    let d = decision(&store, &ch5).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("timeout", "restart")
    );
    let log = srv.stop().await;
    assert!(
        log.contains("took over a call held in the application"),
        "{log}"
    );
}

#[tokio::test]
async fn stopping_pbxgate_lets_held_calls_go_on_at_once() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let db = dbs().await.remove(0);
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    let srv = Server::start(&db, &config(&rig, 30.0)).await;
    let dir = srv.dir.clone();
    wait_connected(&srv).await;
    inbound(&ami, "5550100", "+15557000031", 20_000, 1).await;
    inbound(&ami, "5550100", "+15557000032", 20_000, 1).await;
    let (_, ch1) = rec.held("+15557000031").await;
    let (_, ch2) = rec.held("+15557000032").await;
    // Both held, as /healthz shows.
    health_until(&srv, "2 held calls", Duration::from_secs(3), |h| {
        h["held_calls"] == 2
    })
    .await;
    let stopped = Instant::now();
    let log = srv.stop().await;
    for ch in [&ch1, &ch2] {
        let went_on = rec.dialled(ch, Duration::from_secs(5)).await;
        assert!(
            went_on - stopped < Duration::from_secs(2),
            "{ch}: {:?}\n{log}",
            went_on - stopped
        );
    }
    assert!(
        log.contains("stopping: letting the held calls go on"),
        "{log}"
    );
    let store = Store::connect(&db.url, &ConnectOptions::default())
        .await
        .unwrap();
    for ch in [&ch1, &ch2] {
        let d = decision(&store, ch).await;
        assert_eq!(
            (d.outcome.as_str(), d.decided_by.as_str()),
            ("accepted", "shutdown")
        );
    }
    drop(dir);
}

/// A TCP relay to Asterisk's HTTP port that can be cut (every connection
/// dropped, new ones refused) and restored: the ARI websocket lost while
/// pbxgate keeps running.
struct Relay {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (c, k) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: connection closed at once
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                k.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_lost_ari_websocket_never_strands_held_calls() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let db = dbs().await.remove(0);
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    let http = rig.http_url();
    let relay = Relay::start(http.trim_start_matches("http://").to_owned()).await;
    let cfg = config(&rig, 3.0).replace(&http, &format!("http://127.0.0.1:{}", relay.port));
    let srv = Server::start(&db, &cfg).await;
    wait_connected(&srv).await;
    let c = client(None);
    let cookie = srv.login(&c, "crm", "pw").await.unwrap();
    let store = open(&srv).await;

    // Cut off for 6 s while a call is held: Asterisk's limit (3 + 1 s) lets it go on.
    inbound(&ami, "5550100", "+15557000041", 20_000, 20).await;
    let (t, ch) = rec.held("+15557000041").await;
    // Cut once pbxgate holds the call and has set Asterisk's limit (3 + 1 s).
    wait_backstop(&ami, &ch, 4.0).await;
    relay.cut();
    let went_on = rec.dialled(&ch, Duration::from_secs(8)).await;
    let waited = went_on - t;
    assert!(
        waited >= Duration::from_millis(3500) && waited <= Duration::from_millis(5500),
        "went on after {waited:?}, expected Asterisk's limit of 4 s"
    );
    // The outage goes on a while after the call went on (the stimulus: a
    // sleep on purpose; pbxgate learns how the call ended only once back).
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.restore();
    wait_connected(&srv).await;
    let d = decision(&store, &ch).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("backstop", "asterisk"),
        "{d:?}"
    );
    let r = decide(&srv, &c, &cookie, "acceptCall", &ch).await;
    assert_eq!(r["status"], -43, "{r}");

    // Cut off for a moment: the call stays held and can still be decided.
    inbound(&ami, "5550100", "+15557000042", 20_000, 1).await;
    let (_, ch) = rec.held("+15557000042").await;
    relay.cut();
    // Restored once pbxgate has noticed the outage.
    health_until(&srv, "ARI not up", Duration::from_secs(10), |h| {
        h["ari"] != "up"
    })
    .await;
    relay.restore();
    wait_connected(&srv).await;
    assert!(!rec.was_dialled(&ch));
    let r = decide(&srv, &c, &cookie, "acceptCall", &ch).await;
    assert_eq!(r["status"], 0, "{r}\n{}", srv.log_text());
    rec.dialled(&ch, Duration::from_secs(2)).await;
    srv.stop().await;
}

/// `/healthz` once `pred` holds, within `limit`.
async fn health_until(
    srv: &Server,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let c = client(None);
    wait_until(format!("/healthz to show {what}"), limit, async || {
        let h: Value = c
            .get(srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if pred(&h) {
            Ok(h)
        } else {
            Err(Text(format!("{h}\n{}", srv.log_text())))
        }
    })
    .await
}

/// Another ARI client subscribing to pbxgate's application name (as the
/// rig's smoke.py does) takes it over: pbxgate shows it, leaves the name to
/// that client while it is there, and registers again once it leaves, so
/// inbound calls are held again.
#[tokio::test]
async fn another_client_taking_the_ari_application_over_is_shown_and_undone() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let db = dbs().await.remove(0);
    let Setup {
        srv,
        c,
        cookie,
        ami,
        rec,
        ..
    } = setup(&rig, &db, 30.0).await;
    let admin = crate::admin::live::admin_login(&srv).await;
    const TAKEN: &str = "taken over by another ARI client";

    let intruder = asterisk::ari::Ari::start(asterisk::ari::AriConfig::new(
        rig.http_url(),
        rig.get("ARI_USER"),
        rig.get("ARI_PASSWORD"),
        rig.get("ARI_APP"),
    ))
    .unwrap();
    let mut intruder_events = intruder.subscribe();
    let h = health_until(&srv, "the replacement", Duration::from_secs(10), |h| {
        h["ari"].as_str().is_some_and(|a| a.contains(TAKEN))
    })
    .await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["ari"].as_str().unwrap().starts_with("down: "), "{h}");
    let st = admin.get_json(&srv, "/admin/api/status").await;
    let ari = &st["asterisk"]["ari"];
    assert_eq!(
        (ari["state"].as_str(), ari["up"].as_bool()),
        (Some("down"), Some(false)),
        "{ari}"
    );
    assert!(ari["reason"].as_str().unwrap().contains(TAKEN), "{ari}");

    // While the other client holds the name, calls reach it, not pbxgate,
    // and pbxgate does not take the name back.
    inbound(&ami, "5550100", "+15557000051", 20_000, 1).await;
    let until = Instant::now() + Duration::from_secs(15);
    let taken = loop {
        let left = until.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, intruder_events.recv())
            .await
            .expect("the other client got no StasisStart for the call")
            .unwrap();
        if let asterisk::ari::Event::StasisStart { channel, .. } = &*e
            && channel.caller.number == "+15557000051"
        {
            break channel.clone();
        }
    };
    // pbxgate does not hold it, so it cannot decide it.
    let r = decide(&srv, &c, &cookie, "acceptCall", &taken.name).await;
    assert_eq!(r["status"], -16, "{r}");
    let h = health_until(&srv, "the state", Duration::from_secs(2), |_| true).await;
    assert!(h["ari"].as_str().unwrap().contains(TAKEN), "{h}");
    // Let it go on (clean-up: it may be gone already).
    let _ = intruder.continue_in_dialplan(&taken.id).await;

    // The other client leaves: pbxgate registers again within its check
    // interval (5 s) and holds the next inbound call.
    intruder.shutdown();
    health_until(&srv, "ARI up again", Duration::from_secs(15), |h| {
        h["ari"] == "up" && h["status"] == "ok"
    })
    .await;
    inbound(&ami, "5550100", "+15557000052", 20_000, 1).await;
    let (_, ch) = rec.held("+15557000052").await;
    health_until(&srv, "the call held", Duration::from_secs(5), |h| {
        h["held_calls"].as_u64().is_some_and(|n| n >= 1)
    })
    .await;
    let r = decide(&srv, &c, &cookie, "acceptCall", &ch).await;
    assert_eq!(r["status"], 0, "{r}");
    rec.dialled(&ch, Duration::from_secs(2)).await;
    let st = admin.get_json(&srv, "/admin/api/status").await;
    let ari = &st["asterisk"]["ari"];
    assert_eq!(ari["state"], "up", "{ari}");
    assert!(
        ari["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains(TAKEN),
        "{ari}"
    );
    let log = srv.stop().await;
    assert!(log.contains("ARI application replaced"), "{log}");
    assert!(log.contains("ARI application free again"), "{log}");
}
