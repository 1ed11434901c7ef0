//! Several pbxgate nodes for the rig's Asterisk on one PostgreSQL database
//! (issue 20): one owner holds the ARI application and the held calls; a
//! standby answers acceptCall / refuseCall for them, shows their events to
//! its websocket clients, and takes them over when the owner is killed or
//! cut off from the database — each call decided exactly once.

use super::*;

/// A fresh PostgreSQL test database (these tests need one).
async fn postgres() -> Option<store::testing::TestDb> {
    let found = dbs()
        .await
        .into_iter()
        .find(|d| d.backend == store::Backend::Postgres);
    if found.is_none() {
        store::testing::record_skip("several nodes need PostgreSQL");
    }
    found
}

fn node_config(rig: &Rig, timeout_secs: f64, node: &str) -> String {
    format!(
        "{}[cluster]\nnode_name = \"{node}\"\n",
        config(rig, timeout_secs)
    )
}

/// `node` standing by: no ARI application on purpose, healthy, and it sees
/// `owner` owning the Asterisk.
async fn standing_by(srv: &Server, owner: &str) {
    health_until(
        srv,
        &format!("standby, {owner} owning"),
        Duration::from_secs(10),
        |h| {
            h["cluster"]["role"] == "standby"
                && h["status"] == "ok"
                && h["ari"].as_str().unwrap_or("").starts_with("standby")
                && h["cluster"]["owner"]["node"] == owner
        },
    )
    .await;
}

/// Node A owning the Asterisk (ARI up), node B standing by, and a store on
/// their database.
async fn two_nodes(
    rig: &Rig,
    db: &store::testing::TestDb,
    timeout_secs: f64,
) -> (Server, Server, Store) {
    let a = Server::start(db, &node_config(rig, timeout_secs, "node-a")).await;
    wait_connected(&a).await;
    let b = Server::start(db, &node_config(rig, timeout_secs, "node-b")).await;
    standing_by(&b, "node-a").await;
    let store = open(&b).await;
    (a, b, store)
}

async fn owning(srv: &Server, limit: Duration) {
    health_until(srv, "owner, ARI up", limit, |h| {
        h["cluster"]["role"] == "owner" && h["ari"] == "up"
    })
    .await;
}

/// Three nodes; the owner SIGKILLed with three calls held: exactly one of
/// the two others owns the Asterisk within 5 s and takes the calls over, the
/// third stands by; one call is accepted by an API call sent to that standby,
/// one refused at the new owner, the third accepted by the new owner's timer
/// at the original deadline. One decision each, none by the dead node.
#[tokio::test]
async fn the_owner_killed_with_held_calls_another_node_takes_them_over() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let Some(db) = postgres().await else { return };
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    // Timeout 8 s: the failover (about 3.5 s) leaves the calls held.
    let a = Server::start(&db, &node_config(&rig, 8.0, "node-a")).await;
    wait_connected(&a).await;
    let b = Server::start(&db, &node_config(&rig, 8.0, "node-b")).await;
    let c3 = Server::start(&db, &node_config(&rig, 8.0, "node-c")).await;
    standing_by(&b, "node-a").await;
    standing_by(&c3, "node-a").await;
    let store = open(&b).await;

    let callers = ["+15557100001", "+15557100002", "+15557100003"];
    let mut held = Vec::new();
    for caller in callers {
        inbound(&ami, "5550100", caller, 30_000, 1).await;
        held.push(rec.held(caller).await);
    }
    for (_, ch) in &held {
        // Node A holds them: it has set Asterisk's own limit (8 + 1 s).
        wait_backstop(&ami, ch, 9.0).await;
    }
    let killed = Instant::now();
    a.kill().await;
    // Exactly one of B and C owns it (ARI up), the other stands by.
    let c = client(None);
    let roles = async |srv: &Server| -> Value {
        c.get(srv.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let (new_owner, standby) = wait_until(
        "one of nodes B and C to own the Asterisk",
        Duration::from_secs(8),
        async || {
            let (hb, hc) = (roles(&b).await, roles(&c3).await);
            let owns = |h: &Value| h["cluster"]["role"] == "owner" && h["ari"] == "up";
            match (owns(&hb), owns(&hc)) {
                (true, false) if hc["cluster"]["role"] == "standby" => Ok((&b, &c3)),
                (false, true) if hb["cluster"]["role"] == "standby" => Ok((&c3, &b)),
                _ => Err(format!("B: {}\nC: {}", hb["cluster"], hc["cluster"])),
            }
        },
    )
    .await;
    let failover = killed.elapsed();
    assert!(
        failover <= Duration::from_secs(5),
        "a node owned the Asterisk {failover:?} after node A was killed"
    );
    let owner_name = if std::ptr::eq(new_owner, &b) {
        "node-b"
    } else {
        "node-c"
    };
    standing_by(standby, owner_name).await;

    let cookie_owner = new_owner.login(&c, "crm", "pw").await.unwrap();
    let cookie_standby = standby.login(&c, "crm", "pw").await.unwrap();
    let (t3, ch3) = &held[2];
    let r = decide(standby, &c, &cookie_standby, "acceptCall", &held[0].1).await;
    assert_eq!(r["status"], 0, "{r}\n{}", standby.log_text());
    rec.dialled(&held[0].1, Duration::from_secs(2)).await;
    let r = decide(new_owner, &c, &cookie_owner, "refuseCall", &held[1].1).await;
    assert_eq!(r["status"], 0, "{r}\n{}", new_owner.log_text());
    // The third: the new owner's timer, at the deadline A had started.
    let went_on = rec.dialled(ch3, Duration::from_secs(10)).await;
    let waited = went_on - *t3;
    assert!(
        waited >= Duration::from_millis(7500) && waited <= Duration::from_millis(8800),
        "the taken-over call went on after {waited:?}, expected the 8 s timeout"
    );
    assert!(!rec.was_dialled(&held[1].1), "the refused call went on");
    let want = [
        ("accepted", "crm"),
        ("refused", "crm"),
        ("timeout", "restart"),
    ];
    for ((_, ch), (outcome, by)) in held.iter().zip(want) {
        // One decision per call (`decision` fails on a second).
        let d = decision(&store, ch).await;
        assert_eq!(
            (d.outcome.as_str(), d.decided_by.as_str()),
            (outcome, by),
            "{ch}"
        );
    }
    let owner_log = new_owner.log_text();
    assert!(
        owner_log.contains("took over a call held in the application"),
        "{owner_log}"
    );
    b.stop().await;
    c3.stop().await;
    store.close().await;
}

/// Notifications of one websocket client: (received, eventname, item).
type Notes = Arc<Mutex<Vec<(Instant, Value)>>>;

async fn listen(srv: &Server) -> Notes {
    let mut c = crate::websockify::Client::connect(srv).await;
    assert_eq!(c.login("crm", "pw").await, 0);
    assert_eq!(c.subscribe(&["ActiveCallStatus"]).await, 0);
    let notes: Notes = Arc::default();
    let keep = notes.clone();
    tokio::spawn(async move {
        while let Some(frame) = c.frame(Duration::from_secs(3600)).await {
            let at = Instant::now();
            for n in frame["message"].as_array().into_iter().flatten() {
                for item in n["eventbody"].as_array().into_iter().flatten() {
                    keep.lock().unwrap().push((at, item.clone()));
                }
            }
        }
    });
    notes
}

/// The actions a client saw for `channel`, in order, with their times.
fn story(notes: &Notes, channel: &str) -> Vec<(Instant, String)> {
    notes
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, i)| i["chantype"] == "unbridge" && i["channel"] == channel)
        .map(|(t, i)| (*t, i["action"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// The story of `channel` on a client of node `node`, once it ends with its delete.
async fn deleted_story(notes: &Notes, node: &str, channel: &str) -> Vec<(Instant, String)> {
    wait_until(
        format!("node {node}'s client to see {channel} deleted"),
        Duration::from_secs(15),
        async || {
            let s = story(notes, channel);
            if s.last().is_some_and(|(_, a)| a == "delete") {
                Ok(s)
            } else {
                Err(format!(
                    "{:?}",
                    s.iter().map(|(_, a)| a).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await
}

/// acceptCall / refuseCall sent to the standby decide calls the owner
/// holds, once (a second decision at the owner is refused); a websocket
/// client of the standby sees each call's add, updates and delete in order
/// (the same story as a client of the owner), each within 50 ms of it.
#[tokio::test]
async fn a_standby_node_decides_the_owners_calls_and_shows_their_events() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let Some(db) = postgres().await else { return };
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    let (a, b, store) = two_nodes(&rig, &db, 30.0).await;
    // The operator's view from the command line, on either node's file.
    let cli = |json: bool| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["cluster", "--config"]).arg(&b.config);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = cli(false);
    assert!(text.contains("owner    node-a (epoch 1)"), "{text}");
    assert!(text.contains("lease renewed"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("node ") && l.contains("node-b") && l.contains("standby")),
        "{text}"
    );
    let view: Value = serde_json::from_str(&cli(true)).unwrap();
    assert_eq!(view["owner"]["node"], "node-a", "{view}");
    assert!(
        view["owner"]["lease_age_ms"].as_i64().unwrap() < 3000,
        "{view}"
    );
    assert_eq!(view["nodes"].as_array().unwrap().len(), 2, "{view}");
    let on_a = listen(&a).await;
    let on_b = listen(&b).await;
    let c = client(None);
    let cookie_a = a.login(&c, "crm", "pw").await.unwrap();
    let cookie_b = b.login(&c, "crm", "pw").await.unwrap();

    inbound(&ami, "5550100", "+15557100011", 30_000, 1).await;
    let (_, ch) = rec.held("+15557100011").await;
    health_until(&a, "the call held by node A", Duration::from_secs(5), |h| {
        h["held_calls"] == 1
    })
    .await;
    let r = decide(&b, &c, &cookie_b, "acceptCall", &ch).await;
    assert_eq!(r, json!({"response": {}, "status": 0}), "{}", b.log_text());
    rec.dialled(&ch, Duration::from_secs(2)).await;
    let d = decision(&store, &ch).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("accepted", "crm")
    );
    // Decided: the owner refuses a second decision.
    let r = decide(&a, &c, &cookie_a, "refuseCall", &ch).await;
    assert_eq!(r["status"], -43, "{r}");

    inbound(&ami, "5550100", "+15557100012", 30_000, 1).await;
    let (_, ch2) = rec.held("+15557100012").await;
    health_until(
        &a,
        "the second call held by node A",
        Duration::from_secs(5),
        |h| h["held_calls"] == 1,
    )
    .await;
    // Node B's Live calls page lists the call node A holds.
    let admin = crate::admin::live::admin_login(&b).await;
    wait_until(
        "node B's Live calls page to list node A's held call",
        Duration::from_secs(5),
        async || {
            let snap = admin.get_json(&b, "/admin/api/live").await;
            let listed = snap["held"].as_array().is_some_and(|h| {
                h.iter().any(|h| {
                    h["channel"] == ch2.as_str()
                        && h["did"] == "5550100"
                        && h["remaining_ms"].as_u64().is_some_and(|r| r > 20_000)
                })
            });
            if listed { Ok(()) } else { Err(snap) }
        },
    )
    .await;
    let r = decide(&b, &c, &cookie_b, "refuseCall", &ch2).await;
    assert_eq!(r["status"], 0, "{r}\n{}", b.log_text());
    let d = decision(&store, &ch2).await;
    assert_eq!((d.outcome.as_str(), d.detail.as_str()), ("refused", "busy"));
    assert!(!rec.was_dialled(&ch2));
    health_until(&a, "no call held by node A", Duration::from_secs(5), |h| {
        h["held_calls"] == 0
    })
    .await;

    // Both calls' stories on node B's socket: add, updates, delete, in order,
    // as on node A's.
    for channel in [&ch, &ch2] {
        let on_b_story = deleted_story(&on_b, "B", channel).await;
        let on_a_story = deleted_story(&on_a, "A", channel).await;
        let actions: Vec<&str> = on_b_story.iter().map(|(_, a)| a.as_str()).collect();
        assert_eq!(actions.first(), Some(&"add"), "{actions:?}");
        if channel == &ch {
            // Accepted: it rings on; the refused one only comes and goes.
            assert!(actions.contains(&"update"), "{actions:?}");
        }
        assert_eq!(
            actions.iter().filter(|a| **a == "delete").count(),
            1,
            "{actions:?}"
        );
        let a_actions: Vec<&str> = on_a_story.iter().map(|(_, a)| a.as_str()).collect();
        assert_eq!(actions, a_actions, "node B's story differs from node A's");
        for ((tb, action), (ta, _)) in on_b_story.iter().zip(&on_a_story) {
            let gap = if tb > ta { *tb - *ta } else { *ta - *tb };
            assert!(
                gap <= Duration::from_millis(50),
                "{channel} {action}: node B's client {gap:?} apart from node A's"
            );
        }
    }
    b.stop().await;
    a.stop().await;
    store.close().await;
}

/// The owner cut off from PostgreSQL for 10 s (a TCP relay the test cuts):
/// it stops acting (its ARI application let go) before its lease lapses,
/// the other node takes over within 5 s and decides the held call; when the
/// owner is back it stands by, and no call is decided twice.
#[tokio::test]
async fn an_owner_cut_off_from_the_database_stops_and_another_takes_over() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let Some(db) = postgres().await else { return };
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    let (host_port, rest) = db
        .url
        .trim_start_matches("postgres://")
        .split_once('@')
        .map(|(_, r)| r.split_once('/').unwrap())
        .unwrap();
    let relay = Relay::start(host_port.to_owned()).await;
    let relayed = store::testing::TestDb {
        backend: store::Backend::Postgres,
        url: db.url.replace(
            &format!("{host_port}/{rest}"),
            &format!("127.0.0.1:{}/{rest}", relay.port),
        ),
    };
    assert_ne!(relayed.url, db.url);
    let a = Server::start(&relayed, &node_config(&rig, 30.0, "node-a")).await;
    wait_connected(&a).await;
    let b = Server::start(&db, &node_config(&rig, 30.0, "node-b")).await;
    standing_by(&b, "node-a").await;
    let store = open(&b).await;
    let c = client(None);
    let cookie_b = b.login(&c, "crm", "pw").await.unwrap();

    inbound(&ami, "5550100", "+15557100021", 40_000, 1).await;
    let (_, ch) = rec.held("+15557100021").await;
    wait_backstop(&ami, &ch, 31.0).await;
    let cut = Instant::now();
    relay.cut();
    // Node A stops acting on its own clock, before its lease can lapse.
    health_until(&a, "node A no longer acting", Duration::from_secs(4), |h| {
        h["cluster"]["role"] == "standby"
    })
    .await;
    let stopped = cut.elapsed();
    owning(&b, Duration::from_secs(8)).await;
    let taken = cut.elapsed();
    assert!(
        stopped < taken && taken <= Duration::from_secs(5),
        "node A stopped {stopped:?} and node B owned {taken:?} after the cut"
    );
    let r = decide(&b, &c, &cookie_b, "acceptCall", &ch).await;
    assert_eq!(r["status"], 0, "{r}\n{}", b.log_text());
    rec.dialled(&ch, Duration::from_secs(2)).await;

    // A call arriving during the outage: held by node B.
    inbound(&ami, "5550100", "+15557100022", 40_000, 1).await;
    let (_, ch2) = rec.held("+15557100022").await;
    health_until(
        &b,
        "the new call held by node B",
        Duration::from_secs(5),
        |h| h["held_calls"] == 1,
    )
    .await;
    // The outage lasts 10 s (the stimulus: a sleep on purpose).
    tokio::time::sleep_until(cut + Duration::from_secs(10)).await;
    relay.restore();
    health_until(
        &a,
        "node A back, standing by",
        Duration::from_secs(10),
        |h| h["database"] == "up" && h["cluster"]["role"] == "standby",
    )
    .await;
    // Node A, standing by, decides node B's call.
    let cookie_a = a.login(&c, "crm", "pw").await.unwrap();
    let r = decide(&a, &c, &cookie_a, "acceptCall", &ch2).await;
    assert_eq!(r["status"], 0, "{r}\n{}", a.log_text());
    rec.dialled(&ch2, Duration::from_secs(2)).await;
    for ch in [&ch, &ch2] {
        let d = decision(&store, ch).await;
        assert_eq!(
            (d.outcome.as_str(), d.decided_by.as_str()),
            ("accepted", "crm")
        );
    }
    let log = a.stop().await;
    assert!(log.contains("no longer acting as its owner"), "{log}");
    b.stop().await;
    // Nothing decided twice once both are gone.
    for ch in [&ch, &ch2] {
        let all = store.recent_decisions(1000).await.unwrap();
        assert_eq!(
            all.iter().filter(|d| &d.channel == ch).count(),
            1,
            "{all:?}"
        );
    }
    store.close().await;
}

/// A stopping owner (SIGTERM) with another node there hands over at once:
/// its lease given up, the other node owns the Asterisk within a second and
/// holds the call, which the stopping node did not accept on its way out.
#[tokio::test]
async fn a_stopping_owner_hands_its_held_calls_over() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let Some(db) = postgres().await else { return };
    let ami = Ami::start(rig.ami_config());
    let rec = Recorder::start(&ami);
    let (a, b, store) = two_nodes(&rig, &db, 30.0).await;

    inbound(&ami, "5550100", "+15557100031", 40_000, 1).await;
    let (_, ch) = rec.held("+15557100031").await;
    wait_backstop(&ami, &ch, 31.0).await;
    let stopping = Instant::now();
    let stopped = tokio::spawn(a.stop());
    // Well before the lease (3 s) would lapse by itself.
    health_until(
        &b,
        "node B owning, the call held",
        Duration::from_secs(2),
        |h| h["cluster"]["role"] == "owner" && h["held_calls"] == 1,
    )
    .await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "handed over after {:?}",
        stopping.elapsed()
    );
    let log = stopped.await.unwrap();
    assert!(
        log.contains("handing the Asterisk and its held calls over"),
        "{log}"
    );
    assert!(
        !rec.was_dialled(&ch),
        "the stopping node let the call go on"
    );
    let c = client(None);
    let cookie = b.login(&c, "crm", "pw").await.unwrap();
    let r = decide(&b, &c, &cookie, "acceptCall", &ch).await;
    assert_eq!(r["status"], 0, "{r}\n{}", b.log_text());
    rec.dialled(&ch, Duration::from_secs(2)).await;
    let d = decision(&store, &ch).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("accepted", "crm")
    );
    b.stop().await;
    store.close().await;
}
