//! Every store behaviour, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::open;

use store::*;

fn session(cookie: &str, user: &str, at: i64) -> Session {
    Session {
        cookie: cookie.into(),
        username: user.into(),
        ip: "127.0.0.1".into(),
        created_ms: at,
        last_seen_ms: at,
    }
}

#[tokio::test]
async fn sessions_are_created_read_touched_and_deleted() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.create_session(&session("sid1-1", "cdrapi", 1_000))
            .await
            .unwrap();
        s.create_session(&session("sid2-1", "cdrapi", 2_000))
            .await
            .unwrap();
        s.create_session(&session("sid3-1", "other", 3_000))
            .await
            .unwrap();
        let got = s.session("sid1-1").await.unwrap().expect("session exists");
        assert_eq!(got, session("sid1-1", "cdrapi", 1_000), "{b:?}");
        assert_eq!(s.session("sid9-9").await.unwrap(), None, "{b:?}");

        s.touch_session("sid1-1", 5_000).await.unwrap();
        // Never backwards: a slow request must not undo a newer touch.
        s.touch_session("sid1-1", 4_000).await.unwrap();
        assert_eq!(
            s.session("sid1-1").await.unwrap().unwrap().last_seen_ms,
            5_000,
            "{b:?}"
        );

        assert_eq!(s.delete_idle_sessions(2_500).await.unwrap(), 1, "{b:?}");
        assert!(s.session("sid2-1").await.unwrap().is_none(), "{b:?}");

        assert!(s.delete_session("sid1-1").await.unwrap(), "{b:?}");
        assert!(!s.delete_session("sid1-1").await.unwrap(), "{b:?}");
        assert_eq!(s.delete_sessions_of("other").await.unwrap(), 1, "{b:?}");
        assert!(s.session("sid3-1").await.unwrap().is_none(), "{b:?}");
    });
}

#[tokio::test]
async fn a_duplicate_cookie_is_refused() {
    on_every_backend!(|s, db| {
        s.create_session(&session("sid1-1", "a", 1)).await.unwrap();
        assert!(
            s.create_session(&session("sid1-1", "b", 2)).await.is_err(),
            "{:?}",
            db.backend
        );
        assert_eq!(s.session("sid1-1").await.unwrap().unwrap().username, "a");
    });
}

#[tokio::test]
async fn sessions_survive_reconnecting() {
    on_every_backend!(|s, db| {
        s.create_session(&session("sid5-5", "cdrapi", 10))
            .await
            .unwrap();
        s.close().await;
        let again = open(db).await;
        assert!(
            again.session("sid5-5").await.unwrap().is_some(),
            "{:?}",
            db.backend
        );
        again.close().await;
    });
}

#[tokio::test]
async fn challenges_are_scoped_expire_and_are_consumed_once() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_challenge("0000000000000001", "cdrapi", "127.0.0.1", 1_000)
            .await
            .unwrap();
        s.insert_challenge("0000000000000002", "cdrapi", "127.0.0.1", 3_000)
            .await
            .unwrap();
        s.insert_challenge("0000000000000003", "cdrapi", "127.0.0.2", 3_000)
            .await
            .unwrap();
        s.insert_challenge("0000000000000004", "other", "127.0.0.1", 3_000)
            .await
            .unwrap();

        let open_now = s
            .open_challenges("cdrapi", "127.0.0.1", 500, 10)
            .await
            .unwrap();
        assert_eq!(
            open_now,
            vec!["0000000000000002", "0000000000000001"],
            "{b:?}"
        );
        let later = s
            .open_challenges("cdrapi", "127.0.0.1", 1_000, 10)
            .await
            .unwrap();
        assert_eq!(
            later,
            vec!["0000000000000002"],
            "expired one is not offered ({b:?})"
        );
        assert_eq!(
            s.open_challenges("cdrapi", "127.0.0.1", 500, 1)
                .await
                .unwrap()
                .len(),
            1
        );

        // Two concurrent consumers: exactly one wins.
        let (a, c) = tokio::join!(
            s.consume_challenge("0000000000000002"),
            s.consume_challenge("0000000000000002")
        );
        assert!(a.unwrap() ^ c.unwrap(), "{b:?}");
        assert!(
            !s.consume_challenge("0000000000000002").await.unwrap(),
            "{b:?}"
        );

        assert_eq!(
            s.delete_expired_challenges(3_000).await.unwrap(),
            3,
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn repeated_failures_ban_an_ip_until_the_ban_ends() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let (window, max, ban) = (600_000, 5, 600_000);
        // An old failure outside the window does not count.
        assert_eq!(
            s.record_login_failure("10.0.0.1", 0, window, max, ban)
                .await
                .unwrap(),
            None
        );
        for i in 0..4 {
            let t = 700_000 + i;
            assert_eq!(
                s.record_login_failure("10.0.0.1", t, window, max, ban)
                    .await
                    .unwrap(),
                None,
                "{b:?}"
            );
        }
        // Failures of another IP are separate.
        assert_eq!(
            s.record_login_failure("10.0.0.2", 700_010, window, max, ban)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.active_ban("10.0.0.1", 700_010).await.unwrap(),
            None,
            "{b:?}"
        );

        let until = s
            .record_login_failure("10.0.0.1", 700_020, window, max, ban)
            .await
            .unwrap();
        assert_eq!(until, Some(1_300_020), "{b:?}");
        assert_eq!(
            s.active_ban("10.0.0.1", 1_300_019).await.unwrap(),
            Some(1_300_020),
            "{b:?}"
        );
        assert_eq!(
            s.active_ban("10.0.0.1", 1_300_020).await.unwrap(),
            None,
            "ban ends ({b:?})"
        );
        assert_eq!(
            s.active_ban("10.0.0.2", 700_020).await.unwrap(),
            None,
            "{b:?}"
        );

        // The ban reset the count: one more failure does not ban again.
        assert_eq!(
            s.record_login_failure("10.0.0.1", 1_300_030, window, max, ban)
                .await
                .unwrap(),
            None
        );

        // A success clears the count.
        for i in 0..4 {
            s.record_login_failure("10.0.0.3", 10 + i, window, max, ban)
                .await
                .unwrap();
        }
        s.clear_login_failures("10.0.0.3").await.unwrap();
        assert_eq!(
            s.record_login_failure("10.0.0.3", 20, window, max, ban)
                .await
                .unwrap(),
            None,
            "{b:?}"
        );

        s.prune_login_guard(1_300_025, 1_300_021).await.unwrap();
        assert_eq!(
            s.active_ban("10.0.0.1", 0).await.unwrap(),
            None,
            "pruned ({b:?})"
        );
    });
}

#[tokio::test]
async fn login_attempts_are_counted_before_they_are_checked() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let (window, max, ban) = (600_000, 3, 60_000);
        // Concurrent attempts: exactly `max` are let through, however many run at once.
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let s = s.clone();
            set.spawn(async move {
                s.begin_login_attempt("10.1.0.1", 1_000, window, max, ban)
                    .await
                    .unwrap()
            });
        }
        let outcomes: Vec<LoginAttempt> = set.join_all().await;
        let allowed = outcomes
            .iter()
            .filter(|o| **o == LoginAttempt::Allowed)
            .count();
        let last = outcomes
            .iter()
            .filter(|o| **o == LoginAttempt::Last)
            .count();
        let refused = outcomes
            .iter()
            .filter(|o| **o == LoginAttempt::Refused(61_000))
            .count();
        assert_eq!((allowed, last, refused), (2, 1, 17), "{b:?}: {outcomes:?}");
        assert_eq!(
            s.active_ban("10.1.0.1", 1_001).await.unwrap(),
            Some(61_000),
            "{b:?}"
        );
        // The last allowed attempt succeeded: its ban is lifted with the failures.
        s.clear_login_failures("10.1.0.1").await.unwrap();
        assert_eq!(
            s.active_ban("10.1.0.1", 1_001).await.unwrap(),
            None,
            "{b:?}"
        );
        assert_eq!(
            s.begin_login_attempt("10.1.0.1", 1_002, window, max, ban)
                .await
                .unwrap(),
            LoginAttempt::Allowed,
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn audit_events_are_kept_newest_first() {
    on_every_backend!(|s, db| {
        for (i, result) in ["wrong-password", "ok"].iter().enumerate() {
            s.record_audit(&AuditEvent {
                at_ms: i as i64,
                event: AuditEventKind::Login,
                username: "cdrapi".into(),
                ip: "127.0.0.1".into(),
                result: (*result).into(),
                detail: String::new(),
            })
            .await
            .unwrap();
        }
        let events = s.recent_audit(10).await.unwrap();
        assert_eq!(events.len(), 2, "{:?}", db.backend);
        assert_eq!(events[0].result, "ok");
        assert_eq!(events[1].result, "wrong-password");
        assert_eq!(s.recent_audit(1).await.unwrap().len(), 1);
    });
}

#[tokio::test]
async fn call_decisions_are_kept_newest_first_with_every_field() {
    on_every_backend!(|s, db| {
        let first = CallDecision {
            held_at_ms: 1_795_736_002_000,
            decided_at_ms: 1_795_736_012_000,
            channel: "PJSIP/trunk-00000002".into(),
            channel_id: "1795736002.4".into(),
            caller: "+15551234567".into(),
            did: "5550100".into(),
            outcome: DecisionOutcome::Timeout,
            decided_by: "timer".into(),
            apply_us: 1234,
            detail: String::new(),
        };
        let second = CallDecision {
            outcome: DecisionOutcome::Refused,
            decided_by: "crm".into(),
            channel: "PJSIP/trunk-00000003".into(),
            detail: "reason busy; it's \"quoted\"".into(),
            apply_us: i64::MAX,
            ..first.clone()
        };
        s.record_decision(&first).await.unwrap();
        s.record_decision(&second).await.unwrap();
        let got = s.recent_decisions(10).await.unwrap();
        assert_eq!(got, vec![second.clone(), first], "{:?}", db.backend);
        assert_eq!(s.recent_decisions(1).await.unwrap(), vec![second]);
    });
}

#[tokio::test]
async fn settings_digests_report_what_changed() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let v = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, d)| ((*k).into(), (*d).into()))
                .collect()
        };
        let first = s
            .replace_settings_digests(&v(&[("a", "1"), ("b", "2")]))
            .await
            .unwrap();
        assert_eq!(first, vec!["a", "b"], "{b:?}");
        let same = s
            .replace_settings_digests(&v(&[("a", "1"), ("b", "2")]))
            .await
            .unwrap();
        assert!(same.is_empty(), "{b:?}");
        let changed = s
            .replace_settings_digests(&v(&[("a", "9"), ("c", "3")]))
            .await
            .unwrap();
        assert_eq!(changed, vec!["a", "b", "c"], "{b:?}");
        assert_eq!(
            s.settings_digests().await.unwrap(),
            v(&[("a", "9"), ("c", "3")]),
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn meta_values_are_initialised_once() {
    on_every_backend!(|s, db| {
        assert_eq!(
            s.meta_get_or_init("serial", "first").await.unwrap(),
            "first"
        );
        assert_eq!(
            s.meta_get_or_init("serial", "second").await.unwrap(),
            "first",
            "{:?}",
            db.backend
        );
        s.ping().await.unwrap();
    });
}

#[tokio::test]
async fn migrations_run_once_when_reopened() {
    on_every_backend!(|s, db| {
        let again = open(db).await;
        again.ping().await.unwrap();
        again.close().await;
        s.ping().await.unwrap();
    });
}

#[tokio::test]
async fn bad_urls_are_clear_errors() {
    let err = Store::connect("mysql://u:secret@h/db", &ConnectOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unsupported database URL"), "{msg}");
    assert!(!msg.contains("secret"), "{msg}");

    // Malformed URLs of every shape: the password is never in the message,
    // whether connecting or only checking.
    for url in [
        "postgres://u:S3cretPw@h:notaport/db",
        "postgres://u:S3cretPw@[::1/db",
        "postgres://u:S3cretPw@h:99999/db",
        "postgresql://u@h/db?password=S3cretPw&sslmode=S3cretPw",
        // sqlx would log an unknown parameter with its value: refused first.
        "postgresql://u@h/db?pasword=S3cretPw",
        "postgresql://u@h/db?S3cretPw",
        "postgres:/u:S3cretPw@h/db",
        "postgres//u:S3cretPw@h/db",
        "S3cretPw",
        "u:S3cretPw@h/db",
    ] {
        let checked = store::check_url(url).map(|_| ()).unwrap_err().to_string();
        let connected = Store::connect(url, &ConnectOptions::default())
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        for msg in [checked, connected] {
            assert!(msg.contains("database URL"), "{url}: {msg}");
            assert!(!msg.contains("S3cretPw"), "{url}: {msg}");
        }
    }
}

fn cdr(key: &str, src: &str) -> NewCdr {
    let mut record = ucm::cdr::CdrRecord::new();
    record.set("src", src);
    record.set("dst", "1000");
    record.set("lastdata", "PJSIP/1000,60,\"quoted\" 'x'; DROP TABLE cdr");
    record.set("end", "2026-11-26 10:00:05");
    record.set("session", "1795736002123-1001");
    record.set(
        "recordfiles_desc",
        "duration=31,size=489324B,start-time=1661157307@",
    );
    NewCdr {
        dedupe_key: key.into(),
        start_ms: 1_795_736_002_000,
        call_ms: 1_795_736_002_000,
        end_ms: 1_795_736_007_000,
        record,
    }
}

#[tokio::test]
async fn cdrs_are_stored_once_whatever_the_batches() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let first: Vec<NewCdr> = (0..450)
            .map(|i| cdr(&format!("k{i}"), &format!("{}", 1000 + i)))
            .collect();
        assert_eq!(s.insert_cdrs(&first).await.unwrap(), 450, "{b:?}");
        // Overlapping batch: 50 old keys, 50 new, one duplicated inside the batch.
        let mut second: Vec<NewCdr> = (400..500).map(|i| cdr(&format!("k{i}"), "x")).collect();
        second.push(cdr("k499", "dup"));
        assert_eq!(s.insert_cdrs(&second).await.unwrap(), 50, "{b:?}");
        assert_eq!(s.insert_cdrs(&[]).await.unwrap(), 0);
        assert_eq!(s.cdr_count().await.unwrap(), 500, "{b:?}");

        let recent = s.recent_cdrs(2).await.unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].get("src"), "x", "{b:?}");
        let newest_id: i64 = recent[0].get("AcctId").parse().unwrap();
        let older_id: i64 = recent[1].get("AcctId").parse().unwrap();
        assert!(newest_id > older_id, "{b:?}");
        // Every field round-trips exactly, quotes and all.
        let expected = cdr("k0", "x").record;
        for (name, value) in expected.fields().skip(1) {
            assert_eq!(recent[0].get(name), value, "{name} on {b:?}");
        }
    });
}

#[tokio::test]
async fn a_large_batch_keeps_its_order_in_acctids() {
    // Larger than one statement on either backend (SQLite 200 rows, PostgreSQL
    // 500), with a partial last statement: AcctIds follow the batch order.
    on_every_backend!(|s, db| {
        let b = db.backend;
        let batch: Vec<NewCdr> = (0..1234)
            .map(|i| cdr(&format!("order{i}"), &format!("{i}")))
            .collect();
        assert_eq!(s.insert_cdrs(&batch).await.unwrap(), 1234, "{b:?}");
        let recent = s.recent_cdrs(2000).await.unwrap();
        assert_eq!(recent.len(), 1234, "{b:?}");
        for (i, r) in recent.iter().rev().enumerate() {
            assert_eq!(r.get("src"), i.to_string(), "{b:?}");
        }
        // Re-sending the whole batch stores nothing.
        assert_eq!(s.insert_cdrs(&batch).await.unwrap(), 0, "{b:?}");
    });
}

#[tokio::test]
async fn checkpoints_are_kept_and_replaced() {
    on_every_backend!(|s, db| {
        assert_eq!(s.checkpoint("csv").await.unwrap(), None);
        s.set_checkpoint("csv", "100").await.unwrap();
        s.set_checkpoint("csv", "250").await.unwrap();
        assert_eq!(
            s.checkpoint("csv").await.unwrap().as_deref(),
            Some("250"),
            "{:?}",
            db.backend
        );
    });
}

fn admin_session(id: &str, user: &str, at: i64) -> AdminSession {
    AdminSession {
        id: id.into(),
        username: user.into(),
        csrf: format!("csrf-{id}"),
        ip: "127.0.0.1".into(),
        created_ms: at,
        last_seen_ms: at,
    }
}

#[tokio::test]
async fn admin_accounts_store_a_hash_and_replace_it() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        assert_eq!(s.admin_password_hash("admin").await.unwrap(), None, "{b:?}");
        assert!(
            s.set_admin_password("admin", "$argon2id$one", 1_000)
                .await
                .unwrap(),
            "{b:?}"
        );
        assert_eq!(
            s.admin_password_hash("admin").await.unwrap().as_deref(),
            Some("$argon2id$one"),
            "{b:?}"
        );
        // Setting it again replaces the hash; the account is not new.
        assert!(
            !s.set_admin_password("admin", "$argon2id$two", 2_000)
                .await
                .unwrap(),
            "{b:?}"
        );
        assert_eq!(
            s.admin_password_hash("admin").await.unwrap().as_deref(),
            Some("$argon2id$two"),
            "{b:?}"
        );
        assert_eq!(s.admin_password_hash("other").await.unwrap(), None, "{b:?}");
    });
}

#[tokio::test]
async fn admin_sessions_are_created_read_touched_and_deleted() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.create_admin_session(&admin_session("a1", "admin", 1_000))
            .await
            .unwrap();
        s.create_admin_session(&admin_session("a2", "admin", 2_000))
            .await
            .unwrap();
        s.create_admin_session(&admin_session("a3", "root", 3_000))
            .await
            .unwrap();
        assert!(
            s.create_admin_session(&admin_session("a1", "x", 9))
                .await
                .is_err(),
            "{b:?}"
        );
        assert_eq!(
            s.admin_session("a1").await.unwrap(),
            Some(admin_session("a1", "admin", 1_000)),
            "{b:?}"
        );
        assert_eq!(s.admin_session("nope").await.unwrap(), None, "{b:?}");
        // Admin sessions are not API sessions.
        assert_eq!(s.session("a1").await.unwrap(), None, "{b:?}");

        s.touch_admin_session("a1", 5_000).await.unwrap();
        s.touch_admin_session("a1", 4_000).await.unwrap();
        assert_eq!(
            s.admin_session("a1").await.unwrap().unwrap().last_seen_ms,
            5_000,
            "{b:?}"
        );

        assert_eq!(
            s.delete_idle_admin_sessions(2_500).await.unwrap(),
            1,
            "{b:?}"
        );
        assert!(s.admin_session("a2").await.unwrap().is_none(), "{b:?}");
        assert!(s.delete_admin_session("a1").await.unwrap(), "{b:?}");
        assert!(!s.delete_admin_session("a1").await.unwrap(), "{b:?}");
        assert_eq!(
            s.delete_admin_sessions_of("root").await.unwrap(),
            1,
            "{b:?}"
        );
        assert!(s.admin_session("a3").await.unwrap().is_none(), "{b:?}");

        // Debug output never shows the id or the CSRF token.
        let shown = format!("{:?}", admin_session("secret-id", "admin", 1));
        assert!(!shown.contains("secret-id"), "{shown}");
    });
}

#[tokio::test]
async fn web_settings_are_saved_only_over_the_version_they_were_based_on() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        assert_eq!(s.web_settings("https_api").await.unwrap(), None, "{b:?}");
        // First save: version 1; a second "first" save loses.
        assert_eq!(
            s.save_web_settings("https_api", "{\"a\":1}", 0, 1_000, "admin")
                .await
                .unwrap(),
            Some(1),
            "{b:?}"
        );
        assert_eq!(
            s.save_web_settings("https_api", "{\"a\":2}", 0, 1_001, "other")
                .await
                .unwrap(),
            None,
            "{b:?}"
        );
        // A save based on version 1 wins once; the same base again loses.
        assert_eq!(
            s.save_web_settings("https_api", "{\"a\":3}", 1, 2_000, "admin")
                .await
                .unwrap(),
            Some(2),
            "{b:?}"
        );
        assert_eq!(
            s.save_web_settings("https_api", "{\"a\":4}", 1, 2_001, "other")
                .await
                .unwrap(),
            None,
            "{b:?}"
        );
        let got = s.web_settings("https_api").await.unwrap().unwrap();
        assert_eq!(
            (
                got.body.as_str(),
                got.version,
                got.updated_ms,
                got.updated_by.as_str()
            ),
            ("{\"a\":3}", 2, 2_000, "admin"),
            "{b:?}"
        );
        assert!(
            !format!("{got:?}").contains("\"a\""),
            "body redacted in Debug"
        );
        // Sections are independent.
        assert_eq!(
            s.web_settings("https_api_old").await.unwrap(),
            None,
            "{b:?}"
        );
    });
}

/// A challenge flood: each group (address) holds at most its limit, the
/// newest kept, other groups untouched; expired rows are deleted and, on
/// SQLite, their pages given back to the file system.
#[tokio::test]
async fn challenges_are_bounded_per_group_and_their_space_comes_back() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_challenge_bounded("k0", "cdrapi", "127.0.0.2", "127.0.0.2", 5_000, 4)
            .await
            .unwrap();
        let mut dropped = 0;
        for i in 0..300u32 {
            // Same expiry for runs of ten: ties are broken by the challenge.
            let expires = 1_000 + i64::from(i / 10);
            dropped += s
                .insert_challenge_bounded(
                    &format!("c{i:05}"),
                    "cdrapi",
                    "127.0.0.1",
                    "127.0.0.1",
                    expires,
                    4,
                )
                .await
                .unwrap();
        }
        assert_eq!(dropped, 296, "{b:?}");
        assert_eq!(
            s.challenges_of_group("127.0.0.1").await.unwrap(),
            4,
            "{b:?}"
        );
        assert_eq!(
            s.challenges_of_group("127.0.0.2").await.unwrap(),
            1,
            "{b:?}"
        );
        let open = s
            .open_challenges("cdrapi", "127.0.0.1", 0, 10)
            .await
            .unwrap();
        assert_eq!(open.len(), 4, "{b:?}");
        assert!(
            open.iter().all(|c| c.as_str() >= "c00296"),
            "the newest stay: {open:?} ({b:?})"
        );

        // Rows with long names (as a flood before the name limit made), then
        // expired: the file shrinks back.
        let name = "n".repeat(100_000);
        for i in 0..200u32 {
            s.insert_challenge_bounded(
                &format!("big{i}"),
                &name,
                "10.0.0.1",
                &format!("g{i}"),
                2_000,
                4,
            )
            .await
            .unwrap();
        }
        let grown = s.sqlite_size().await.unwrap();
        s.delete_expired_challenges(10_000).await.unwrap();
        let given_back = s.reclaim_space().await.unwrap();
        let after = s.sqlite_size().await.unwrap();
        match (grown, after) {
            (Some(grown), Some(after)) => {
                assert!(grown > 15_000_000, "{grown}");
                assert!(given_back > 0, "{b:?}");
                assert!(after < 2_000_000, "{after} bytes after reclaiming ({b:?})");
            }
            (None, None) => assert_eq!(given_back, 0),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            s.challenges_of_group("127.0.0.2").await.unwrap(),
            0,
            "{b:?}"
        );
    });
}

/// A SQLite file made before incremental auto-vacuum (no auto-vacuum, rows
/// deleted) is converted at start and its free pages given back.
#[tokio::test]
async fn old_sqlite_files_are_converted_to_incremental_auto_vacuum() {
    use sqlx::sqlite::{SqliteAutoVacuum, SqliteConnectOptions, SqlitePoolOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let old = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .auto_vacuum(SqliteAutoVacuum::None),
        )
        .await
        .unwrap();
    sqlx::query("CREATE TABLE filler (v TEXT)")
        .execute(&old)
        .await
        .unwrap();
    let row = "f".repeat(10_000);
    for _ in 0..300 {
        sqlx::query("INSERT INTO filler VALUES ($1)")
            .bind(&row)
            .execute(&old)
            .await
            .unwrap();
    }
    sqlx::query("DELETE FROM filler")
        .execute(&old)
        .await
        .unwrap();
    old.close().await;
    let before = std::fs::metadata(&path).unwrap().len();
    assert!(before > 3_000_000, "{before}");

    let url = format!("sqlite://{}", path.display());
    let s = Store::connect(&url, &ConnectOptions::default())
        .await
        .unwrap();
    let size = s.sqlite_size().await.unwrap().unwrap();
    assert!(size < 1_000_000, "converted and compacted: {size} bytes");
    // From now on, deleted rows' pages go back: challenges with long names.
    let name = "n".repeat(50_000);
    for i in 0..100u32 {
        s.insert_challenge_bounded(&format!("c{i}"), &name, "10.0.0.1", &format!("g{i}"), 1, 4)
            .await
            .unwrap();
    }
    assert!(s.sqlite_size().await.unwrap().unwrap() > 4_000_000);
    s.delete_expired_challenges(10).await.unwrap();
    assert!(s.reclaim_space().await.unwrap() > 1000);
    assert!(s.sqlite_size().await.unwrap().unwrap() < 1_500_000);
    s.close().await;
}

/// PostgreSQL: every store listening hears each save of another (the
/// settings of all nodes follow at once); SQLite has nothing to hear.
#[tokio::test]
async fn saved_settings_are_announced_to_the_other_nodes() {
    on_every_backend!(|s, db| {
        let other = common::open(db).await;
        match (db.backend, other.web_settings_saved()) {
            (Backend::Sqlite, heard) => assert!(heard.is_none()),
            (Backend::Postgres, None) => panic!("PostgreSQL stores listen"),
            (Backend::Postgres, Some(mut heard)) => {
                // The first message: listening started (anything saved
                // before may have been missed).
                tokio::time::timeout(std::time::Duration::from_secs(5), heard.recv())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    s.save_web_settings("https_api", "{}", 0, 1, "admin")
                        .await
                        .unwrap(),
                    Some(1)
                );
                tokio::time::timeout(std::time::Duration::from_secs(2), heard.recv())
                    .await
                    .expect("the save is announced")
                    .unwrap();
                // A refused save (stale version) is not announced.
                assert_eq!(
                    s.save_web_settings("https_api", "{}", 0, 2, "admin")
                        .await
                        .unwrap(),
                    None
                );
                assert!(
                    tokio::time::timeout(std::time::Duration::from_millis(500), heard.recv())
                        .await
                        .is_err()
                );
            }
        }
        other.close().await;
    });
}
