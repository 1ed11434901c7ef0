//! CDR Real-Time Output (issue 19), on SQLite and PostgreSQL: real calls on
//! the rig reach a TCP and an HTTPS receiver as `cdrapi` has them; a
//! receiver that is down (or refuses the credentials) is shown as such and
//! gets everything once, in order, when it is back; SIGKILL in a burst loses
//! nothing; the quota drops the oldest with an audit event; two processes on
//! one PostgreSQL deliver each record once.

pub(crate) mod receivers;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use asterisk::ami::Ami;
use asterisk::testing::rig;
use base64::Engine;
use serde_json::{Value, json};
use store::{AuditEventKind, AuditStore, CdrStore, ConnectOptions, NewCdr, Store};

use crate::calls::{CALLS, call, pbx_config, wait_connected, wait_for_cdrs};
use crate::cdrapi::{T0, leg, seed};
use crate::kit::*;
use receivers::{HttpsReceiver, TcpReceiver};

const SECRET: &str = "0123456789abcdef-signing";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `[cdr_output]` with a TCP receiver "tcp" (when `tcp`) and an HTTPS
/// receiver "https" (when `https`: its certificate written to `dir`).
fn output_config(
    tcp: Option<u16>,
    https: Option<&HttpsReceiver>,
    dir: &std::path::Path,
    extra: &str,
) -> String {
    let mut out = "[cdr_output]\nenable = true\nlease_secs = 3\n".to_owned();
    if let Some(port) = tcp {
        out.push_str(&format!(
            "[[cdr_output.receivers]]\nname = \"tcp\"\ndelivery = \"tcp\"\naddress = \"127.0.0.1\"\n\
             port = {port}\nusername = \"pbx\"\npassword = \"tcp-pass-1\"\n{extra}"
        ));
    }
    if let Some(r) = https {
        let ca = dir.join("receiver-ca.pem");
        std::fs::write(&ca, &r.cert_pem).unwrap();
        out.push_str(&format!(
            "[[cdr_output.receivers]]\nname = \"https\"\ndelivery = \"https\"\naddress = \"localhost\"\n\
             port = {}\npath = \"/cdr\"\nusername = \"billing\"\npassword = \"http-pass-1\"\n\
             signing_secret = \"{SECRET}\"\nca_file = \"{}\"\n{extra}",
            r.port,
            ca.display()
        ));
    }
    out
}

/// `/healthz`'s view of each receiver, by name.
async fn receivers_health(srv: &Server) -> BTreeMap<String, Value> {
    let h = srv.healthz().await;
    h["cdr_output"]
        .as_array()
        .unwrap_or_else(|| panic!("{h}"))
        .iter()
        .map(|r| (r["receiver"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

/// Waits until `/healthz` shows receiver `name` in `state`, with
/// `last_error` containing `error` (when given).
async fn wait_receiver(srv: &Server, name: &str, state: &str, error: Option<&str>) -> Value {
    wait_until(
        format!("receiver {name} to be {state} ({error:?})"),
        Duration::from_secs(20),
        async || {
            let all = receivers_health(srv).await;
            let r = all[name].clone();
            let message = r["last_error"]["message"].as_str().unwrap_or("");
            if r["state"] == state && error.is_none_or(|e| message.contains(e)) {
                Ok(r)
            } else {
                Err(Text(r.to_string()))
            }
        },
    )
    .await
}

/// Runs `pbxgate outbox` with `args`: (exit code, stdout, stderr).
async fn outbox_cli(srv: &Server, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .arg("outbox")
        .arg("--config")
        .arg(&srv.config)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `n` stored legs of calls in March 2026 (UTC), numbered from `from`.
fn history(from: usize, n: usize, day: i64) -> Vec<NewCdr> {
    (from..from + n)
        .map(|i| {
            let at = T0 + day * 86_400_000 + i as i64 * 1000;
            leg(
                i,
                &format!("{at}.{i}"),
                at,
                at,
                ("1001", "1000"),
                (i % 7) as u32,
                &jiff::tz::TimeZone::UTC,
            )
        })
        .collect()
}

async fn stored_acctids(store: &Store) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .recent_cdrs(100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("AcctId").parse().unwrap())
        .collect();
    ids.sort();
    ids
}

fn without_cdr_key(v: &Value) -> Value {
    let mut v = v.clone();
    v.as_object_mut().unwrap().remove("cdr");
    v
}

#[tokio::test]
async fn real_calls_reach_a_tcp_and_an_https_receiver_as_cdrapi_has_them() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let https = HttpsReceiver::start().await;
        https.delay_ms.store(0, Ordering::SeqCst);
        let mut tcp = TcpReceiver::new(free_port());
        tcp.start().await;
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "{}{}",
            pbx_config(&rig, ""),
            output_config(Some(tcp.port), Some(&https), dir.path(), "batch = 10\n")
        );
        let srv = Server::start(&db, &config).await;
        wait_connected(&srv).await;
        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        // When each CDR became visible in the database (polled).
        let seen: std::sync::Arc<std::sync::Mutex<BTreeMap<i64, Instant>>> = Default::default();
        let watcher = {
            let (store, seen) = (store.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    for id in stored_acctids(&store).await {
                        seen.lock().unwrap().entry(id).or_insert_with(Instant::now);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let ami = Ami::start(rig.ami_config());
        call(&ami, "phone-1001", "1000", "\"Alice\" <1001>", 2).await;
        call(&ami, "phone-1001", "1098", "\"Alice\" <1001>", 1).await;
        call(&ami, "carrier", "5550100", "\"Bob, B.\" <+15551234567>", 1).await;
        wait_for_cdrs(&store, 3, Duration::from_secs(30)).await;
        let ids = stored_acctids(&store).await;
        tcp.log
            .wait(ids.len(), Duration::from_secs(10), "tcp")
            .await;
        https
            .log
            .wait(ids.len(), Duration::from_secs(10), "https")
            .await;
        watcher.abort();

        // What cdrapi answers, leg by leg.
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let answer: Value = c
            .post(srv.url("/api"))
            .json(&json!({"request": {"action": "cdrapi", "cookie": cookie, "format": "JSON"}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut cdrapi: BTreeMap<i64, Value> = BTreeMap::new();
        for entry in answer["cdr_root"].as_array().unwrap() {
            for l in receivers::legs_of(entry) {
                cdrapi.insert(l["AcctId"].as_str().unwrap().parse().unwrap(), l);
            }
        }
        assert_eq!(cdrapi.keys().copied().collect::<Vec<_>>(), ids, "{db:?}");
        let seen = seen.lock().unwrap().clone();
        for (name, log) in [("tcp", &tcp.log), ("https", &https.log)] {
            assert_eq!(log.acctids(), ids, "{db:?} {name}: once each, in order");
            for got in log.records() {
                let id: i64 = got.record["AcctId"].as_str().unwrap().parse().unwrap();
                assert_eq!(
                    without_cdr_key(&got.record),
                    without_cdr_key(&cdrapi[&id]),
                    "{db:?} {name}"
                );
                let late = got.at.saturating_duration_since(seen[&id]);
                assert!(
                    late <= Duration::from_secs(1),
                    "{db:?} {name}: AcctId {id} arrived {late:?} after it was stored"
                );
            }
        }
        // Credentials as documented; every HTTPS body signed.
        assert!(
            tcp.log
                .auth
                .lock()
                .unwrap()
                .iter()
                .all(|a| *a == b64("pbx:tcp-pass-1")),
            "{:?}",
            tcp.log.auth
        );
        let basic = format!("Basic {}", b64("billing:http-pass-1"));
        assert!(https.log.auth.lock().unwrap().iter().all(|a| *a == basic));
        let now = jiff::Timestamp::now().as_second();
        for (sig, body) in https.log.signed.lock().unwrap().iter() {
            assert!(
                ucm::cdr_output::verify(SECRET.as_bytes(), sig, body, now, 300),
                "{sig}"
            );
            assert!(!ucm::cdr_output::verify(
                b"another-secret-0000",
                sig,
                body,
                now,
                300
            ));
        }
        // Batches of up to 10: the first and last AcctId of each body.
        for g in https.log.records() {
            let id: i64 = g.record["AcctId"].as_str().unwrap().parse().unwrap();
            let (first, last) = g.key.split_once('-').unwrap_or((&g.key, &g.key));
            let (first, last): (i64, i64) = (first.parse().unwrap(), last.parse().unwrap());
            assert!((first..=last).contains(&id), "{} for {id}", g.key);
        }
        for name in ["tcp", "https"] {
            let r = wait_receiver(&srv, name, "up", None).await;
            assert!(r["last_success_ms"].as_i64().is_some(), "{r}");
            assert_eq!(r["delivered"], ids.len(), "{r}");
        }
        let log = srv.stop().await;
        for secret in ["tcp-pass-1", "http-pass-1", SECRET] {
            assert!(!log.contains(secret), "{log}");
        }
    }
}

#[tokio::test]
async fn a_receiver_down_or_refusing_is_shown_and_then_gets_everything_once_in_order() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let https = HttpsReceiver::start().await;
        // Wrong credentials, as the receiver sees them.
        https.status.store(401, Ordering::SeqCst);
        // Nothing listens on the TCP receiver's port yet.
        let mut tcp = TcpReceiver::new(free_port());
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "{}{}",
            pbx_config(&rig, ""),
            output_config(Some(tcp.port), Some(&https), dir.path(), "batch = 2\n")
        );
        let srv = Server::start(&db, &config).await;
        wait_connected(&srv).await;
        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        let ami = Ami::start(rig.ami_config());
        call(&ami, "phone-1001", "1000", "\"Alice\" <1001>", 1).await;
        call(&ami, "phone-1001", "1098", "\"Alice\" <1001>", 1).await;
        call(&ami, "carrier", "5550100", "<+15551234567>", 1).await;
        wait_for_cdrs(&store, 3, Duration::from_secs(30)).await;
        let ids = stored_acctids(&store).await;

        let t = wait_receiver(&srv, "tcp", "failing", Some("connect")).await;
        assert!(
            t["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{t}"
        );
        wait_receiver(&srv, "https", "failing", Some("HTTP 401")).await;
        // The admin Status page says the same.
        let admin = crate::admin::live::admin_login(&srv).await;
        let status = admin.get_json(&srv, "/admin/api/status").await;
        let shown: Vec<&Value> = status["cdr_output"]["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(shown.len(), 2, "{status}");
        for r in shown {
            assert_eq!(r["state"], "failing", "{r}");
            assert!(r["backlog"].as_u64().is_some(), "{r}");
        }
        assert!(srv.log_text().contains("CDR output: delivery failed"));

        // Back: everything queued arrives once, in order.
        tcp.start().await;
        https.status.store(200, Ordering::SeqCst);
        tcp.log
            .wait(ids.len(), Duration::from_secs(60), "tcp")
            .await;
        https
            .log
            .wait(ids.len(), Duration::from_secs(60), "https")
            .await;
        quiet_window(Instant::now(), Duration::from_millis(1500)).await;
        assert_eq!(tcp.log.acctids(), ids, "{db:?}");
        assert_eq!(https.log.acctids(), ids, "{db:?}");
        wait_receiver(&srv, "tcp", "up", None).await;
        wait_receiver(&srv, "https", "up", None).await;
        srv.stop().await;
    }
}

#[tokio::test]
async fn sigkill_in_a_delivery_burst_loses_nothing_and_repeats_keep_their_key() {
    const N: usize = 150;
    for db in dbs().await {
        let https = HttpsReceiver::start().await;
        https.delay_ms.store(15, Ordering::SeqCst);
        let dir = tempfile::tempdir().unwrap();
        let config = output_config(None, Some(&https), dir.path(), "batch = 1\n");
        let srv = Server::start(&db, &config).await;
        seed(&srv, &history(0, N, 0)).await;
        // The day again for the receiver, from the command line.
        let (code, out, err) = outbox_cli(
            &srv,
            &[
                "--receiver",
                "https",
                "--from",
                "2026-03-28",
                "--to",
                "2026-03-29",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(&format!("queued {N} CDR(s)")), "{out}");
        https
            .log
            .wait(30, Duration::from_secs(20), "before the kill")
            .await;
        let (dir_kept, port) = (srv.dir.clone(), srv.port);
        srv.kill().await;
        let before = https.log.records().len();
        assert!(before < N, "{db:?}: all {before} delivered before the kill");

        let srv = Server::start_in(&db, &config, dir_kept, port).await;
        wait_until(
            "every record delivered after the restart",
            Duration::from_secs(30),
            async || {
                let got: BTreeSet<i64> = https.log.acctids().into_iter().collect();
                if got.len() == N {
                    Ok(())
                } else {
                    Err(got.len())
                }
            },
        )
        .await;
        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        let ids = stored_acctids(&store).await;
        let records = https.log.records();
        let got: BTreeSet<i64> = https.log.acctids().into_iter().collect();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ids, "{db:?}");
        // A repeat (sent, not confirmed before the kill) has its key.
        for g in &records {
            let id = g.record["AcctId"].as_str().unwrap();
            assert_eq!(g.key, id, "{db:?}: the record's AcctId");
        }
        let repeats = records.len() - N;
        assert!(repeats <= 2, "{db:?}: {repeats} records sent twice");
        srv.stop().await;
    }
}

#[tokio::test]
async fn the_quota_drops_the_oldest_with_an_audit_event_and_a_log_line() {
    for db in dbs().await {
        let mut tcp = TcpReceiver::new(free_port());
        let dir = tempfile::tempdir().unwrap();
        let config = output_config(Some(tcp.port), None, dir.path(), "max_backlog = 20\n");
        let srv = Server::start(&db, &config).await;
        seed(&srv, &history(0, 50, 0)).await;
        let (code, out, err) = outbox_cli(
            &srv,
            &[
                "--receiver",
                "tcp",
                "--from",
                "2026-03-28 00:00:00",
                "--to",
                "2026-03-29",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        let line = srv.wait_log("quota reached", Duration::from_secs(20)).await;
        assert!(line.contains("dropped=30"), "{line}");
        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        let audit = store.recent_audit(20).await.unwrap();
        let event = audit
            .iter()
            .find(|e| e.event == AuditEventKind::CdrOutput && e.result == "dropped")
            .unwrap_or_else(|| panic!("{audit:?}"));
        assert!(event.detail.contains("tcp: 30 undelivered"), "{event:?}");
        assert!(
            audit
                .iter()
                .any(|e| e.event == AuditEventKind::CdrOutput && e.result == "replay"),
            "{audit:?}"
        );
        // The command line shows the backlog left, then its oldest records.
        let (code, out, _) = outbox_cli(&srv, &[]).await;
        assert_eq!(code, 0);
        assert!(
            out.lines().any(|l| l.starts_with("tcp ")
                && l.contains(&format!("tcp://127.0.0.1:{}", tcp.port))
                && l.contains(" 20 ")),
            "{out}"
        );
        let (code, out, _) = outbox_cli(&srv, &["--receiver", "tcp", "--limit", "3"]).await;
        assert_eq!(code, 0);
        assert!(out.contains("AcctId"), "{out}");
        let (code, _, err) = outbox_cli(&srv, &["--receiver", "nobody"]).await;
        assert_eq!(code, 2);
        assert!(
            err.contains("no receiver named \"nobody\"") && err.contains("tcp"),
            "{err}"
        );
        let (code, _, err) = outbox_cli(
            &srv,
            &[
                "--receiver",
                "tcp",
                "--from",
                "yesterday",
                "--to",
                "2026-03-29",
            ],
        )
        .await;
        assert_eq!(code, 2);
        assert!(err.contains("is not a time"), "{err}");

        // The newest 20 arrive once the receiver is up.
        let ids = stored_acctids(&store).await;
        tcp.start().await;
        tcp.log.wait(20, Duration::from_secs(40), "tcp").await;
        quiet_window(Instant::now(), Duration::from_millis(1000)).await;
        assert_eq!(tcp.log.acctids(), ids[30..], "{db:?}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn two_processes_on_one_postgresql_deliver_each_record_once() {
    let Some(db) = dbs()
        .await
        .into_iter()
        .find(|d| d.backend == store::Backend::Postgres)
    else {
        store::testing::record_skip("two processes need PostgreSQL");
        return;
    };
    let https = HttpsReceiver::start().await;
    https.delay_ms.store(5, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let config = output_config(None, Some(&https), dir.path(), "batch = 1\n");
    let a = Server::start(&db, &config).await;
    let b = Server::start(&db, &config).await;
    seed(&a, &history(0, 200, 0)).await;
    let (code, out, err) = outbox_cli(
        &a,
        &[
            "--receiver",
            "https",
            "--from",
            "2026-03-28",
            "--to",
            "2026-03-29",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    https
        .log
        .wait(200, Duration::from_secs(30), "both nodes")
        .await;
    quiet_window(Instant::now(), Duration::from_millis(1500)).await;
    let ids = https.log.acctids();
    assert_eq!(ids.len(), 200, "each record once");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");
    // One holds the receiver, the other stands by.
    let ha = wait_until(
        "one node to hold the receiver",
        Duration::from_secs(10),
        async || {
            let ha = receivers_health(&a).await["https"]["state"].clone();
            let hb = receivers_health(&b).await["https"]["state"].clone();
            let states = [ha.as_str().unwrap_or(""), hb.as_str().unwrap_or("")];
            if states.contains(&"standby") && states.contains(&"up") {
                Ok(ha)
            } else {
                Err(Text(format!("{states:?}")))
            }
        },
    )
    .await;
    // The holder dies: the other takes over once its lease lapses.
    let (holder, survivor) = if ha == "up" { (a, b) } else { (b, a) };
    holder.kill().await;
    seed(&survivor, &history(1000, 100, 1)).await;
    let (code, out, err) = outbox_cli(
        &survivor,
        &[
            "--receiver",
            "https",
            "--from",
            "2026-03-29",
            "--to",
            "2026-03-30",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    https
        .log
        .wait(300, Duration::from_secs(30), "the survivor")
        .await;
    quiet_window(Instant::now(), Duration::from_millis(1000)).await;
    let ids: Vec<i64> = https.log.acctids();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        300,
        "every record delivered"
    );
    assert_eq!(ids.len(), 300, "each once");
    wait_receiver(&survivor, "https", "up", None).await;
    survivor.stop().await;
}

#[tokio::test]
async fn bad_cdr_output_settings_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key, message) in [
        (
            "[[cdr_output.receivers]]\nname = \"b\"\ndelivery = \"udp\"\naddress = \"h\"\nport = 1\n",
            "cdr_output.receivers[0].delivery",
            "must be \"tcp\", \"http\" or \"https\"",
        ),
        (
            "[[cdr_output.receivers]]\nname = \"b\"\naddress = \"tcp://h:9000\"\nport = 9000\n",
            "cdr_output.receivers[0].address",
            "host name or an IP address",
        ),
        (
            "[cdr_output]\nenable = true\n",
            "cdr_output.enable",
            "no [[cdr_output.receivers]]",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        for command in ["check-config", "serve"] {
            let out = tokio::process::Command::new(BIN)
                .args([command, "--config"])
                .arg(&path)
                .output()
                .await
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{command} {text}: {err}");
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(message),
                "{command}: {err}"
            );
        }
    }
}

/// SIGHUP puts a changed `[cdr_output]` in force without a restart (and
/// audits it); an invalid file changes nothing.
#[tokio::test]
async fn sighup_puts_cdr_output_changes_in_force() {
    for db in dbs().await {
        let mut first = TcpReceiver::new(free_port());
        first.start().await;
        let mut second = TcpReceiver::new(free_port());
        second.start().await;
        let dir = tempfile::tempdir().unwrap();
        let off = output_config(Some(first.port), None, dir.path(), "")
            .replace("enable = true", "enable = false");
        let srv = Server::start(&db, &format!("# legacy\n{off}")).await;
        assert!(
            receivers_health(&srv).await.is_empty(),
            "disabled: no worker"
        );
        seed(&srv, &history(0, 5, 0)).await;

        // Enabled: the first receiver gets a replayed day.
        let on = output_config(Some(first.port), None, dir.path(), "");
        let log = crate::legacy::hup(&srv, &format!("# legacy\n{on}")).await;
        assert!(log.contains("CDR output: settings in force"), "{log}");
        assert!(!log.contains("need a restart"), "{log}");
        wait_receiver(&srv, "tcp", "up", None).await;
        let (code, out, err) = outbox_cli(
            &srv,
            &[
                "--receiver",
                "tcp",
                "--from",
                "2026-03-28",
                "--to",
                "2026-03-29",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        first.log.wait(5, Duration::from_secs(10), "first").await;

        // Another address: the next replay goes there.
        let moved = output_config(Some(second.port), None, dir.path(), "");
        crate::legacy::hup(&srv, &format!("# legacy\n{moved}")).await;
        wait_until(
            "the new target in force",
            Duration::from_secs(10),
            async || {
                let r = receivers_health(&srv).await["tcp"].clone();
                if r["target"] == format!("tcp://127.0.0.1:{}", second.port) {
                    Ok(())
                } else {
                    Err(Text(r.to_string()))
                }
            },
        )
        .await;
        let (code, out, err) = outbox_cli(
            &srv,
            &[
                "--receiver",
                "tcp",
                "--from",
                "2026-03-28",
                "--to",
                "2026-03-29",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        second.log.wait(5, Duration::from_secs(10), "second").await;
        assert_eq!(first.log.records().len(), 5, "{db:?}");

        // An invalid file changes nothing.
        let log = crate::legacy::hup(&srv, "# legacy\n[cdr_output]\nenable = true\n").await;
        assert!(log.contains("configuration reload refused"), "{log}");
        let r = receivers_health(&srv).await["tcp"].clone();
        assert_eq!(r["target"], format!("tcp://127.0.0.1:{}", second.port));

        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        let audit = store.recent_audit(20).await.unwrap();
        for detail in ["cdr_output: enable", "cdr_output: receiver tcp"] {
            assert!(
                audit
                    .iter()
                    .any(|e| e.event == AuditEventKind::Settings && e.detail == detail),
                "{detail}: {audit:?}"
            );
        }
        srv.stop().await;
    }
}

/// The admin API Configuration page's third table: each refused value is
/// answered beside its field; a saved receiver and the switch are in force
/// at once (and audited), listed by `pbxgate outbox`, reach a second node,
/// and a removed receiver stops.
#[tokio::test]
async fn receivers_added_on_the_admin_page_are_validated_and_in_force_at_once() {
    use crate::admin::apiconfig::{AdminClient, assert_refused};
    use reqwest::StatusCode;
    for db in dbs().await {
        let mut tcp = TcpReceiver::new(free_port());
        tcp.start().await;
        let srv = Server::start(&db, "[https_api]\npassword = \"pw\"\n").await;
        let admin = AdminClient::new(&srv).await;
        let page = admin.page().await;
        assert!(page.contains("CDR Real-Time Output Settings"), "{page}");
        let port = tcp.port.to_string();
        let fields = |overrides: &[(&'static str, &'static str)]| {
            let mut f: Vec<(&str, String)> = vec![
                ("index", String::new()),
                ("name", "billing".into()),
                ("delivery", "tcp".into()),
                ("address", "127.0.0.1".into()),
                ("port", port.clone()),
                ("path", "/".into()),
                ("format", "json".into()),
                ("username", String::new()),
                ("password", String::new()),
                ("signing_secret", String::new()),
                ("tls_verify", "on".into()),
                ("ca_file", String::new()),
                ("batch", "100".into()),
                ("directions", String::new()),
                ("max_backlog", "1000000".into()),
                ("max_age_days", "30".into()),
                ("timeout_secs", "10".into()),
            ];
            for (k, v) in overrides {
                match f.iter_mut().find(|(n, _)| n == k) {
                    Some(slot) => slot.1 = (*v).to_owned(),
                    None => f.push((k, (*v).to_owned())),
                }
            }
            f
        };
        let post = async |f: Vec<(&str, String)>| {
            let borrowed: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            admin
                .post("/admin/api-config/cdr-receiver", &borrowed)
                .await
        };
        for (bad, field, message) in [
            (vec![("port", "0")], "port", "between 1 and 65535"),
            (vec![("port", "http")], "port", "whole number"),
            (
                vec![("delivery", "udp")],
                "delivery",
                "or &quot;https&quot;",
            ),
            (vec![("address", "https://x/")], "address", "host name"),
            (vec![("name", "a b")], "name", "letters, digits"),
            (vec![("format", "yaml")], "format", "or &quot;csv&quot;"),
            (vec![("batch", "0")], "batch", "between 1 and 10000"),
            (vec![("directions", "sideways")], "directions", "inbound"),
            (
                vec![("signing_secret", "0123456789abcdefXYZ")],
                "signing_secret",
                "HTTP deliveries only",
            ),
            (vec![("password", "pw-no-user")], "username", "needed"),
            (
                vec![("delivery", "https"), ("ca_file", "/nonexistent.pem")],
                "ca_file",
                "cannot read",
            ),
        ] {
            let answer = post(fields(&bad)).await;
            assert_refused(&answer, field, message);
            assert!(!answer.1.contains("pw-no-user") && !answer.1.contains("0123456789abcdefXYZ"));
        }
        assert!(receivers_health(&srv).await.is_empty(), "{db:?}");

        // Saved: in force at once (the switch is still off: no worker).
        let (code, to) = post(fields(&[])).await;
        assert_eq!(
            (code, to.as_str()),
            (
                StatusCode::SEE_OTHER,
                "/admin/api-config?saved=cdr-receiver#cdr-output"
            )
        );
        assert!(receivers_health(&srv).await.is_empty());
        let (code, _) = admin
            .post("/admin/api-config/cdr-output", &[("enable", "on")])
            .await;
        assert_eq!(code, StatusCode::SEE_OTHER);
        wait_receiver(&srv, "billing", "up", None).await;
        // Another receiver may not take its name.
        assert_refused(&post(fields(&[])).await, "name", "already named");

        // The command line knows it; a replayed day arrives.
        seed(&srv, &history(0, 4, 0)).await;
        let (code, out, err) = outbox_cli(
            &srv,
            &[
                "--receiver",
                "billing",
                "--from",
                "2026-03-28",
                "--to",
                "2026-03-29",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        tcp.log.wait(4, Duration::from_secs(10), "billing").await;

        // A second node on the same database: PostgreSQL only (SQLite is one process).
        if db.backend == store::Backend::Postgres {
            let other = Server::start(&db, "[https_api]\npassword = \"pw\"\n").await;
            let states = receivers_health(&other).await;
            assert!(states.contains_key("billing"), "{states:?}");
            other.stop().await;
        }

        // Removed: its worker ends.
        let (code, _) = admin
            .post(
                "/admin/api-config/cdr-receiver/remove",
                &[("index", "0"), ("username", "billing")],
            )
            .await;
        assert_eq!(code, StatusCode::SEE_OTHER);
        assert!(receivers_health(&srv).await.is_empty());

        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        let audit = store.recent_audit(30).await.unwrap();
        for detail in ["receiver billing", "enable"] {
            assert!(
                audit.iter().any(|e| e.event == AuditEventKind::Settings
                    && e.detail.contains("cdr_output")
                    && e.detail.contains(detail)),
                "{detail}: {audit:?}"
            );
        }
        srv.stop().await;
    }
}
