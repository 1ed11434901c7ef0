//! End-to-end tests: the real `pbxgate` binary, started with a temporary
//! configuration, driven over HTTPS, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod callcontrol;
mod calls;
mod cdrapi;
mod cdroutput;
mod channels;
mod config;
mod directory;
mod flows;
mod kit;
mod legacy;
mod net;
mod pms;
mod recapi;
mod websockify;

use std::time::Duration;

use futures_util::StreamExt;
use kit::*;
use serde_json::{Value, json};
use store::{AuditStore, CdrStore, ChallengeStore, ConnectOptions, Store};

/// A challenge flood (issue 15): names no user can have are refused with
/// `-1` and stored nowhere (nor logged whole); one address holds at most
/// `session.max_challenges_per_address` challenges however many it asks for,
/// other addresses keep theirs, and a login right after the flood works. The
/// SQLite file barely grows.
#[tokio::test]
async fn a_challenge_flood_is_bounded_per_address() {
    const FLOOD: usize = 1500;
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[session]\nmax_challenges_per_address = 8\n",
        )
        .await;
        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        let before = store.sqlite_size().await.unwrap();
        let c = client(None);
        let other = client(Some("127.0.0.2"));
        let theirs = srv.challenge(&other, "cdrapi").await;

        let huge = "x".repeat(1_000_000);
        for name in [huge.as_str(), &"y".repeat(65), "a b", "ä", "a\u{0}"] {
            let r = srv.api(&c, json!({"action":"challenge","user":name})).await;
            assert_eq!(r["status"], -1, "{db:?}: {r}");
            assert!(
                r["response"]["error_msg"].as_str().unwrap().contains("64"),
                "{r}"
            );
        }
        let names: Vec<String> = (0..FLOOD).map(|i| format!("{i:0>64}")).collect();
        // SQLite: the WAL is checkpointed during the flood, not left to grow
        // toward its 80 MiB automatic checkpoint (a few pages per challenge).
        let wal_path = format!("{}-wal", srv.db_url.trim_start_matches("sqlite://"));
        let wal_size = || std::fs::metadata(&wal_path).map_or(0, |m| m.len());
        let mut peak_wal = 0;
        {
            let srv = &srv;
            let mut pending = futures_util::stream::iter(names.iter().map(|n| {
                let c = c.clone();
                async move { srv.challenge(&c, n).await }
            }))
            .buffer_unordered(8);
            let mut issued = 0;
            while let Some(ch) = pending.next().await {
                assert_eq!(ch.len(), 16);
                issued += 1;
                if issued % 100 == 0 {
                    peak_wal = peak_wal.max(wal_size());
                }
            }
            assert_eq!(issued, FLOOD);
        }
        assert_eq!(
            store.challenges_of_group("127.0.0.1").await.unwrap(),
            8,
            "{db:?}"
        );
        assert_eq!(
            store.challenges_of_group("127.0.0.2").await.unwrap(),
            1,
            "{db:?}"
        );
        // The other address's challenge still logs in; so does a fresh one here.
        let token = md5_hex(&format!("{theirs}pw"));
        let r = srv
            .api(
                &other,
                json!({"action":"login","user":"cdrapi","token":token}),
            )
            .await;
        assert_eq!(r["status"], 0, "{db:?}: {r}");
        srv.login(&c, "cdrapi", "pw").await.unwrap();
        if let (Some(before), Some(after)) = (before, store.sqlite_size().await.unwrap()) {
            assert!(
                after.saturating_sub(before) < 512 * 1024,
                "{FLOOD} challenges grew the database from {before} to {after} bytes"
            );
            assert!(
                peak_wal < 6 * 1024 * 1024,
                "WAL of {peak_wal} bytes during {FLOOD} challenges"
            );
        }
        store.close().await;
        let log = srv.stop().await;
        assert!(
            log.contains("challenge refused: not a possible user name"),
            "{db:?}"
        );
        // Cut short everywhere (the access log keeps 128 characters).
        let x200 = "x".repeat(200);
        let whole = log
            .lines()
            .find(|l| l.contains(&x200))
            .map(|l| l.chars().take(300).collect::<String>());
        assert_eq!(whole, None, "a long name is logged cut short");
    }
}

#[tokio::test]
async fn the_whole_login_flow() {
    for db in dbs().await {
        let srv = Server::start(&db, "[https_api]\npassword = \"s3cret\"\n").await;
        let c = client(None);

        // challenge: 16 zero-padded digits; version is optional and may be a number.
        let r = srv
            .api(
                &c,
                json!({"action":"challenge","user":"cdrapi","version":1.0}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");
        let ch = r["response"]["challenge"].as_str().unwrap().to_owned();
        assert_eq!(ch.len(), 16);
        assert!(ch.bytes().all(|b| b.is_ascii_digit()));

        // login with an upper-case token and the optional url field.
        let token = md5_hex(&format!("{ch}s3cret")).to_ascii_uppercase();
        let r = srv
            .api(&c, json!({"action":"login","user":"cdrapi","token":token,"url":"https://example.invalid/api"}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        let cookie = r["response"]["cookie"].as_str().unwrap().to_owned();
        let (a, b) = cookie.strip_prefix("sid").unwrap().split_once('-').unwrap();
        assert!(
            a.bytes().all(|x| x.is_ascii_digit()) && b.bytes().all(|x| x.is_ascii_digit()),
            "{cookie}"
        );

        // The raw answer: HTTP 200, UCM content type, "response" before "status".
        let raw = c
            .post(srv.url("/api"))
            .body(json!({"request":{"action":"getSystemStatus","cookie":cookie}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), 200);
        assert_eq!(
            raw.headers()["content-type"],
            "application/json;charset=UTF-8"
        );
        let text = raw.text().await.unwrap();
        assert!(text.starts_with("{\"response\":{\"part-number\""), "{text}");
        assert!(text.ends_with(",\"status\":0}"), "{text}");
        let status: Value = serde_json::from_str(&text).unwrap();
        let resp = &status["response"];
        for key in [
            "part-number",
            "serial-number",
            "up-time",
            "idle-time",
            "system-time",
            "bindcode",
            "mac",
        ] {
            assert!(resp[key].is_string(), "{key} missing in {text}");
        }
        let t = resp["system-time"].as_str().unwrap();
        assert!(
            t.ends_with(" UTC+00:00") && t.len() == "23-11-2022 14:37:26 UTC+00:00".len(),
            "{t}"
        );
        assert_eq!(resp["bindcode"].as_str().unwrap().len(), 64);

        let r = srv
            .api(
                &c,
                json!({"action":"getSystemGeneralStatus","cookie":cookie}),
            )
            .await;
        assert_eq!(r["status"], 0);
        assert_eq!(r["response"]["product-model"], "UCM6304");
        assert!(r["response"]["prog-version"].is_string());

        // /api/v1 is the same endpoint.
        let r = srv
            .api_at(
                &c,
                "/api/v1",
                json!({"action":"getSystemStatus","cookie":cookie}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");

        // logout ends the session.
        let r = srv
            .api(&c, json!({"action":"logout","cookie":cookie}))
            .await;
        assert_eq!(r, json!({"response":{},"status":0}));
        let r = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
            .await;
        assert_eq!(r, json!({"response":{},"status":-6}));
        let r = srv
            .api(&c, json!({"action":"logout","cookie":cookie}))
            .await;
        assert_eq!(r["status"], -6);

        let events = audit(&srv).await;
        assert!(
            events.iter().any(|(e, r)| e == "login" && r == "ok"),
            "{events:?}"
        );
        assert!(
            events.iter().any(|(e, r)| e == "logout" && r == "ok"),
            "{events:?}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn wrong_password_unknown_user_and_reused_challenge_all_get_minus_37() {
    for db in dbs().await {
        let srv = Server::start(&db, "[https_api]\npassword = \"right\"\n").await;
        let c = client(None);
        assert_eq!(srv.login(&c, "cdrapi", "wrong").await, Err(-37));
        // An unknown user gets a challenge like anybody else, then -37.
        let r = srv
            .api(&c, json!({"action":"challenge","user":"ghost"}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        assert_eq!(srv.login(&c, "ghost", "right").await, Err(-37));

        // A challenge is single use.
        let ch = srv.challenge(&c, "cdrapi").await;
        let token = md5_hex(&format!("{ch}right"));
        let login = json!({"action":"login","user":"cdrapi","token":token});
        assert_eq!(srv.api(&c, login.clone()).await["status"], 0);
        assert_eq!(srv.api(&c, login).await["status"], -37);

        // Login without any challenge.
        let r = srv
            .api(
                &c,
                json!({"action":"login","user":"cdrapi","token":md5_hex("x")}),
            )
            .await;
        assert_eq!(r["status"], -37);

        let events = audit(&srv).await;
        for reason in ["wrong-password", "unknown-user", "no-open-challenge"] {
            assert!(
                events.iter().any(|(e, r)| e == "login" && r == reason),
                "{reason}: {events:?}"
            );
        }
        let log = srv.stop().await;
        assert!(!log.contains("right\""), "the password must not be logged");
    }
}

#[tokio::test]
async fn sessions_and_challenges_expire() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[session]\nidle_timeout_secs = 2\nchallenge_ttl_secs = 1\n",
        )
        .await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        // Each use slides the idle timeout. These sleeps are the behaviour
        // under test (real time passing between uses, 3 x 1.2 s > the 2 s
        // timeout): nothing to wait for instead.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(1200)).await;
            let r = srv
                .api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
                .await;
            assert_eq!(r["status"], 0, "session should still be alive: {r}");
        }
        // Idle past the 2 s timeout. A sleep on purpose: polling the session
        // would use it, and each use slides its idle timeout.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        let r = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
            .await;
        assert_eq!(r["status"], -6, "idle session must expire: {r}");

        // An expired challenge cannot be used.
        let ch = srv.challenge(&c, "cdrapi").await;
        // Past the 1 s challenge TTL. A sleep on purpose: trying the challenge
        // earlier would log in with it (and use it up).
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let r = srv
            .api(
                &c,
                json!({"action":"login","user":"cdrapi","token":md5_hex(&format!("{ch}pw"))}),
            )
            .await;
        assert_eq!(r["status"], -37, "{r}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn permitted_ips_allow_and_deny() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\npermitted_ips = [\"127.0.0.2/255.255.255.255\"]\n\
             [[https_api.users]]\nusername = \"open\"\npassword = \"pw2\"\n",
        )
        .await;
        let from1 = client(Some("127.0.0.1"));
        let from2 = client(Some("127.0.0.2"));
        assert_eq!(
            srv.login(&from1, "cdrapi", "pw").await,
            Err(-37),
            "127.0.0.1 is not permitted"
        );
        let cookie = srv
            .login(&from2, "cdrapi", "pw")
            .await
            .expect("127.0.0.2 is permitted");
        let ask = json!({"action":"getSystemStatus","cookie":cookie});
        assert_eq!(srv.api(&from2, ask.clone()).await["status"], 0);
        // A cookie used from another address than it was issued to is refused...
        assert_eq!(srv.api(&from1, ask.clone()).await["status"], -6);
        // ...without ending it for its owner.
        assert_eq!(srv.api(&from2, ask).await["status"], 0);

        // A user without permitted IPs may log in from anywhere.
        assert!(srv.login(&from1, "open", "pw2").await.is_ok());
        assert!(srv.login(&from2, "open", "pw2").await.is_ok());
        let events = audit(&srv).await;
        assert!(
            events
                .iter()
                .any(|(e, r)| e == "login" && r == "ip-not-permitted"),
            "{events:?}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn repeated_failures_lock_an_address_out_until_the_ban_ends() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n\
             [login_restriction]\nmax_failures = 3\nwindow_secs = 60\nban_secs = 2\nwhitelist = [\"127.0.0.3\"]\n",
        )
        .await;
        let bad = client(Some("127.0.0.1"));
        let other = client(Some("127.0.0.2"));
        let trusted = client(Some("127.0.0.3"));
        for _ in 0..3 {
            assert_eq!(srv.login(&bad, "cdrapi", "guess").await, Err(-37));
        }
        // Locked out: even the right password and a challenge get -68.
        let r = srv
            .api(&bad, json!({"action":"challenge","user":"cdrapi"}))
            .await;
        assert_eq!(r["status"], -68, "{r}");
        assert_eq!(srv.login(&bad, "cdrapi", "pw").await, Err(-68));
        // Other addresses are not affected.
        assert!(srv.login(&other, "cdrapi", "pw").await.is_ok());
        // Whitelisted addresses are never locked out.
        for _ in 0..5 {
            assert_eq!(srv.login(&trusted, "cdrapi", "guess").await, Err(-37));
        }
        assert!(srv.login(&trusted, "cdrapi", "pw").await.is_ok());

        // The ban (2 s) ends by itself: attempts refused during a ban are not
        // counted, so trying again until it works does not prolong it.
        let login = wait_until(
            "the 2 s ban on 127.0.0.1 to end",
            Duration::from_secs(20),
            async || match srv.login(&bad, "cdrapi", "pw").await {
                Err(-68) => Err(-68),
                other => Ok(other),
            },
        )
        .await;
        assert!(login.is_ok(), "ban should have expired: {login:?}");
        let events = audit(&srv).await;
        assert!(
            events
                .iter()
                .any(|(e, r)| e == "login-restriction" && r == "banned"),
            "{events:?}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_disabled_api_refuses_everything() {
    for db in dbs().await {
        let srv = Server::start(&db, "[https_api]\nenable = false\npassword = \"pw\"\n").await;
        let c = client(None);
        for action in [
            json!({"action":"challenge","user":"cdrapi"}),
            json!({"action":"login","user":"cdrapi","token":md5_hex("x")}),
            json!({"action":"getSystemStatus","cookie":"sid1-1"}),
        ] {
            let r = srv.api(&c, action).await;
            assert_ne!(r["status"], 0, "{r}");
            assert_eq!(r["status"], -47, "{r}");
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn malformed_requests_get_minus_1_and_the_server_keeps_serving() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[web]\nmax_body_bytes = 4096\n",
        )
        .await;
        let c = client(None);
        let invalid = json!({"response":{"error_msg":"Invalid parameters!"},"status":-1});
        for body in [
            "not json",
            "",
            "[]",
            "{}",
            "{\"request\":\"challenge\"}",
            "{\"request\":{}}",
            "{\"request\":{\"action\":7}}",
            "{\"request\":{\"action\":\"noSuchAction\",\"cookie\":\"sid1-1\"}}",
            "{\"request\":{\"action\":\"challenge\"}}",
            "{\"request\":{\"action\":\"challenge\",\"user\":{\"x\":1}}}",
            "{\"request\":{\"action\":\"login\",\"user\":\"cdrapi\",\"token\":[1,2]}}",
            "{\"request\":{\"action\":\"challenge\",\"user\":\"cdrapi\"",
        ] {
            let r = srv.raw(&c, "/api", body.as_bytes().to_vec()).await;
            assert_eq!(r, invalid, "body {body:?}");
        }
        // Posting to sub-paths, as confused clients do, and GET.
        assert_eq!(srv.raw(&c, "/api/challenge", b"{}".to_vec()).await, invalid);
        let r: Value = c
            .get(srv.url("/api"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r, invalid);
        // A body over the limit is refused without being read whole.
        let big = format!(
            "{{\"request\":{{\"action\":\"challenge\",\"user\":\"{}\"}}}}",
            "a".repeat(100_000)
        );
        assert_eq!(srv.raw(&c, "/api", big.into_bytes()).await, invalid);
        // A cookie of the wrong shape or type.
        let r = srv
            .api(
                &c,
                json!({"action":"getSystemStatus","cookie":"'; DROP TABLE sessions; --"}),
            )
            .await;
        assert_eq!(r["status"], -6);
        let r = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":{"a":1}}))
            .await;
        assert_eq!(r["status"], -1);
        let r = srv.api(&c, json!({"action":"getSystemStatus"})).await;
        assert_eq!(r["status"], -6);
        // Still serving.
        assert!(srv.login(&c, "cdrapi", "pw").await.is_ok());
        srv.stop().await;
    }
}

#[tokio::test]
async fn sessions_and_the_certificate_survive_a_restart() {
    for db in dbs().await {
        let config = "[https_api]\npassword = \"pw\"\n";
        let srv = Server::start(&db, config).await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let cert_before = srv.peer_certificate().await;
        let status_before = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
            .await;
        let (dir, port) = (srv.dir.clone(), srv.port);
        let log = srv.stop().await;
        assert!(log.contains("pbxgate stopped"), "graceful shutdown: {log}");

        let srv = Server::start_in(&db, config, dir, port).await;
        let c = client(None);
        let r = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
            .await;
        assert_eq!(r["status"], 0, "session must survive the restart: {r}");
        // Same identity and same generated certificate.
        assert_eq!(
            r["response"]["serial-number"],
            status_before["response"]["serial-number"]
        );
        assert_eq!(
            r["response"]["bindcode"],
            status_before["response"]["bindcode"]
        );
        assert_eq!(srv.peer_certificate().await, cert_before);
        srv.stop().await;
    }
}

#[tokio::test]
async fn a_password_change_ends_the_users_sessions() {
    for db in dbs().await {
        let srv = Server::start(&db, "[https_api]\npassword = \"old\"\n[[https_api.users]]\nusername = \"keep\"\npassword = \"same\"\n").await;
        let c = client(None);
        let changed = srv.login(&c, "cdrapi", "old").await.unwrap();
        let kept = srv.login(&c, "keep", "same").await.unwrap();
        let (dir, port) = (srv.dir.clone(), srv.port);
        srv.stop().await;

        let srv = Server::start_in(
            &db,
            "[https_api]\npassword = \"new\"\n[[https_api.users]]\nusername = \"keep\"\npassword = \"same\"\n",
            dir,
            port,
        )
        .await;
        let c = client(None);
        let r = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":changed}))
            .await;
        assert_eq!(r["status"], -6, "{r}");
        let r = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":kept}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        assert!(srv.login(&c, "cdrapi", "new").await.is_ok());
        let events = audit(&srv).await;
        assert!(
            events
                .iter()
                .any(|(e, r)| e == "settings" && r == "changed"),
            "{events:?}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn two_processes_on_one_database_share_sessions() {
    for db in dbs().await {
        let config = "[https_api]\npassword = \"pw\"\n";
        let a = Server::start(&db, config).await;
        let b = Server::start(&db, config).await;
        let c = client(None);
        // Challenge on one process, login on the other (a load balancer may do that).
        let ch = a.challenge(&c, "cdrapi").await;
        let r = b
            .api(
                &c,
                json!({"action":"login","user":"cdrapi","token":md5_hex(&format!("{ch}pw"))}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");
        let cookie = r["response"]["cookie"].as_str().unwrap().to_owned();
        assert_eq!(
            a.api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
                .await["status"],
            0
        );
        assert_eq!(
            b.api(&c, json!({"action":"logout","cookie":cookie})).await["status"],
            0
        );
        // The other process trusts its session cache for session.cache_ms
        // (1 s): it sees the logout once that has run out.
        let status = wait_until(
            "the other process to see the logout",
            Duration::from_secs(20),
            async || {
                let r = a
                    .api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
                    .await;
                if r["status"] == 0 {
                    Err(Text(r.to_string()))
                } else {
                    Ok(r["status"].clone())
                }
            },
        )
        .await;
        assert_eq!(status, -6);
        a.stop().await;
        b.stop().await;
    }
}

#[tokio::test]
async fn configuration_errors_stop_start_up_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[https_api]\npassword = \"hunter2-secret\"\npermitted_ips = [\"10.0.0.0/255.0.255.0\"]\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("https_api.permitted_ips[0]") && err.contains("netmask"),
        "{err}"
    );
    assert!(!err.contains("hunter2-secret"), "{err}");

    let out = tokio::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    std::fs::write(&path, "[https_api]\npassword = \"hunter2-secret\"\n").unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("cdrapi") && text.contains("password set"),
        "{text}"
    );
    assert!(!text.contains("hunter2-secret"), "{text}");

    let out = tokio::process::Command::new(BIN)
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("serve") && help.contains("check-config"),
        "{help}"
    );
}

#[tokio::test]
async fn a_busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, format!("[web]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

async fn audit(srv: &Server) -> Vec<(String, String)> {
    let store = Store::connect(&srv.db_url, &ConnectOptions::default())
        .await
        .unwrap();
    let events = store.recent_audit(1000).await.unwrap();
    store.close().await;
    events
        .into_iter()
        .map(|e| (e.event.to_string(), e.result))
        .collect()
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = &dbs().await[0];
    let srv = Server::start(db, "[https_api]\npassword = \"pw\"\n").await;
    let body = br#"{"request":{"action":"challenge","user":"cdrapi","version":"1.0"}}"#;
    let mut tls = raw_tls(srv.port).await;
    let head = format!(
        "POST /api HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body[..20]).await.unwrap();
    tls.flush().await.unwrap();
    // In flight: the server answers `100 Continue` once its handler starts
    // reading the body (the head was read, the request is being served).
    let mut interim = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !interim.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            assert_eq!(tls.read(&mut byte).await.unwrap(), 1, "connection closed");
            interim.push(byte[0]);
        }
    })
    .await
    .expect("no 100 Continue: the request never started");
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");

    // SIGTERM while the request is half sent; the rest of the body is sent
    // once the server says it is shutting down.
    let log = srv.log_path().to_owned();
    let stopping = tokio::spawn(srv.stop());
    wait_log_file(
        &log,
        "shutting down: finishing in-flight requests",
        Duration::from_secs(20),
    )
    .await;
    tls.write_all(&body[20..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"challenge\":\"") && answer.ends_with("\"status\":0}"),
        "{answer}"
    );
    let log = stopping.await.unwrap();
    assert!(
        log.contains("shutting down") && log.contains("pbxgate stopped"),
        "{log}"
    );
}

#[tokio::test]
async fn import_csv_backfills_history_once() {
    let master = [
        r#""","1001","1000","ext-local","""Ext 1001"" <1001>","PJSIP/1001-00000001","PJSIP/1000-00000002","Dial","PJSIP/1000,8","2026-11-27 00:48:20","2026-11-27 00:48:21","2026-11-27 00:48:23",3,2,"ANSWERED","DOCUMENTATION","1795740500.1","""#,
        r#""","1001","1099","ext-local","""Ext 1001"" <1001>","PJSIP/1001-00000003","PJSIP/1099-00000004","Dial","PJSIP/1099,8","2026-11-27 00:49:00",,"2026-11-27 00:49:08",8,0,"NO ANSWER","DOCUMENTATION","1795740540.3","""#,
        // the same CDR again (a file concatenated twice)
        r#""","1001","1000","ext-local","""Ext 1001"" <1001>","PJSIP/1001-00000001","PJSIP/1000-00000002","Dial","PJSIP/1000,8","2026-11-27 00:48:20","2026-11-27 00:48:21","2026-11-27 00:48:23",3,2,"ANSWERED","DOCUMENTATION","1795740500.1","""#,
        "this line is not a CDR",
        // a test originate's Local half: not a call
        r#""","","s","test","","Local/1000@test-00000000;1","","Wait","2","2026-11-27 00:50:00","2026-11-27 00:50:00","2026-11-27 00:50:02",2,2,"ANSWERED","DOCUMENTATION","1795740600.5","""#,
        r#""","+15551234567","1000","ext-local","""Bob"" <+15551234567>","PJSIP/trunk-00000006","PJSIP/1000-00000007","Dial","PJSIP/1000,8","2026-11-27 00:51:00","2026-11-27 00:51:01","2026-11-27 00:51:04",4,3,"ANSWERED","DOCUMENTATION","1795740660.6","","1795740660.6","9","Inbound","DIAL","trunk","","5550100","2026-11/auto-1795740660-+15551234567-1000.wav@""#,
    ];
    for db in dbs().await {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("Master.csv");
        std::fs::write(&csv, master.join("\n") + "\n").unwrap();
        let config = dir.path().join("p.toml");
        std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", db.url)).unwrap();
        let run = || async {
            let out = tokio::process::Command::new(BIN)
                .args(["import-csv", "--config"])
                .arg(&config)
                .arg(&csv)
                .output()
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let first = run().await;
        assert!(
            first.contains(
                "imported 3, skipped as duplicate 1, merged into another leg or helper-channel CDRs 1, rejected 1"
            ),
            "{first}"
        );
        assert!(first.contains("line 4:"), "{first}");
        let second = run().await;
        assert!(
            second.contains("imported 0, skipped as duplicate 4"),
            "{second}"
        );

        let store = Store::connect(&db.url, &ConnectOptions::default())
            .await
            .unwrap();
        let records = store.recent_cdrs(10).await.unwrap();
        assert_eq!(records.len(), 3);
        let inbound = &records[0];
        assert_eq!(inbound.get("userfield"), "Inbound");
        assert_eq!(inbound.get("src_trunk_name"), "trunk");
        assert_eq!(inbound.get("session"), "17957406606-+15551234567");
        assert_eq!(
            inbound.get("recordfiles"),
            "2026-11/auto-1795740660-+15551234567-1000.wav@"
        );
        let unanswered = &records[1];
        assert_eq!(unanswered.get("disposition"), "NO ANSWER");
        assert_eq!(unanswered.get("answer"), "");
        store.close().await;
    }
}
