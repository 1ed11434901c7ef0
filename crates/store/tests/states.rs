//! Columns of a fixed set of words (audit event kind, call decision outcome,
//! wake-up status): every enum value round-trips through the store, the
//! database refuses any other word (migration 0011), and a word the enum
//! does not know, read back, is an error — on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use store::testing::{TestDb, execute};
use store::*;

fn audit(event: AuditEventKind) -> AuditEvent {
    AuditEvent {
        at_ms: 1,
        event,
        username: "cdrapi".into(),
        ip: "127.0.0.1".into(),
        result: "ok".into(),
        detail: String::new(),
    }
}

fn decision(outcome: DecisionOutcome) -> CallDecision {
    CallDecision {
        held_at_ms: 1,
        decided_at_ms: 2,
        channel: "PJSIP/trunk-00000002".into(),
        channel_id: "1795736002.4".into(),
        caller: "+15551234567".into(),
        did: "5550100".into(),
        outcome,
        decided_by: "timer".into(),
        apply_us: 3,
        detail: String::new(),
    }
}

/// Whether `e` is the database refusing a row for a CHECK constraint.
fn is_check_violation(e: &Error) -> bool {
    match e {
        Error::Database(SqlxError::Database(d)) => format!("{:?}", d.kind()) == "CheckViolation",
        _ => false,
    }
}

/// Runs `sql` by hand and expects the database to refuse it.
async fn refused(db: &TestDb, sql: &str) {
    match execute(db, sql).await {
        Err(e) => assert!(is_check_violation(&e), "{:?}: {sql}: {e}", db.backend),
        Ok(n) => panic!("{:?}: {sql}: accepted ({n} rows)", db.backend),
    }
}

#[tokio::test]
async fn every_value_round_trips() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        for kind in AuditEventKind::ALL {
            s.record_audit(&audit(*kind)).await.unwrap();
        }
        let mut kinds: Vec<_> = s
            .recent_audit(100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect();
        kinds.reverse();
        assert_eq!(kinds, AuditEventKind::ALL, "{b:?}");

        for outcome in DecisionOutcome::ALL {
            s.record_decision(&decision(*outcome)).await.unwrap();
        }
        let mut outcomes: Vec<_> = s
            .recent_decisions(100)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.outcome)
            .collect();
        outcomes.reverse();
        assert_eq!(outcomes, DecisionOutcome::ALL, "{b:?}");

        // Each status written by finish_wakeup (the one call that takes any)
        // and read back.
        for (i, status) in WakeupStatus::ALL.iter().enumerate() {
            let due = 1_000 * (i as i64 + 1);
            let id = s.add_wakeup("101", due, 0).await.unwrap().unwrap();
            assert_eq!(
                s.claim_wakeup(id, "a", due, due + 60_000).await.unwrap(),
                Some(1)
            );
            assert!(
                s.finish_wakeup(id, "a", 1, *status, "x", due, due)
                    .await
                    .unwrap(),
                "{b:?}: {status}"
            );
            let w = s.wakeup(id).await.unwrap().unwrap();
            assert_eq!(w.status, *status, "{b:?}");
        }
        // And the states the store sets itself.
        let id = s.add_wakeup("102", 500, 0).await.unwrap().unwrap();
        assert_eq!(
            s.wakeup(id).await.unwrap().unwrap().status,
            WakeupStatus::Pending
        );
        assert_eq!(s.cancel_wakeups("102", None, 1).await.unwrap(), 1);
        assert_eq!(
            s.wakeup(id).await.unwrap().unwrap().status,
            WakeupStatus::Cancelled
        );
        let id = s.add_wakeup("102", 600, 0).await.unwrap().unwrap();
        assert!(s.miss_wakeup(id, 700).await.unwrap());
        assert_eq!(
            s.wakeup(id).await.unwrap().unwrap().status,
            WakeupStatus::Missed
        );
    });
}

#[tokio::test]
async fn the_database_refuses_unknown_words() {
    on_every_backend!(|s, db| {
        // The same statements with a known word pass: the refusal below is the constraint.
        let audit_row = |event: &str| {
            format!(
                "INSERT INTO audit_log (at_ms, event, username, ip, result, detail) \
                 VALUES (1, '{event}', 'u', '127.0.0.1', 'ok', '')"
            )
        };
        let decision_row = |outcome: &str| {
            format!(
                "INSERT INTO call_decisions (held_at_ms, decided_at_ms, channel, channel_id, caller, \
                 did, outcome, decided_by, apply_us, detail) \
                 VALUES (1, 2, 'c', 'i', 'a', 'd', '{outcome}', 'timer', 0, '')"
            )
        };
        let wakeup_row = |due: i64, status: &str| {
            format!(
                "INSERT INTO pms_wakeups (address, due_ms, status, attempts, outcome, \
                 next_attempt_ms, claimed_by, claim_until_ms, created_ms, updated_ms) \
                 VALUES ('101', {due}, '{status}', 0, '', 0, '', 0, 0, 0)"
            )
        };
        assert_eq!(execute(db, &audit_row("login")).await.unwrap(), 1);
        assert_eq!(execute(db, &decision_row("accepted")).await.unwrap(), 1);
        assert_eq!(execute(db, &wakeup_row(1, "pending")).await.unwrap(), 1);

        for bad in ["Login", "login ", "", "logged-in"] {
            refused(db, &audit_row(bad)).await;
        }
        for bad in ["Accepted", "rejected", ""] {
            refused(db, &decision_row(bad)).await;
        }
        for bad in ["PENDING", "done", ""] {
            refused(db, &wakeup_row(2, bad)).await;
        }
        // Updates too.
        refused(db, "UPDATE audit_log SET event = 'x'").await;
        refused(db, "UPDATE call_decisions SET outcome = 'x'").await;
        refused(db, "UPDATE pms_wakeups SET status = 'x'").await;

        // Nothing of the refused rows got in.
        assert_eq!(s.recent_audit(100).await.unwrap().len(), 1);
        assert_eq!(s.recent_decisions(100).await.unwrap().len(), 1);
        assert_eq!(s.wakeups_of("101", 0, 100).await.unwrap().len(), 1);
    });
}

#[tokio::test]
async fn an_unknown_word_read_back_is_an_error() {
    on_every_backend!(|s, db| {
        // Words the constraints would refuse, put in behind their back (an
        // older or newer pbxgate, an operator's hand).
        let bypass = match db.backend {
            Backend::Sqlite => "PRAGMA ignore_check_constraints = ON; ",
            Backend::Postgres => "",
        };
        if db.backend == Backend::Postgres {
            for (table, constraint) in [
                ("audit_log", "audit_log_event_known"),
                ("call_decisions", "call_decisions_outcome_known"),
                ("pms_wakeups", "pms_wakeups_status_known"),
            ] {
                execute(
                    db,
                    &format!("ALTER TABLE {table} DROP CONSTRAINT {constraint}"),
                )
                .await
                .unwrap();
            }
        }
        execute(
            db,
            &format!(
                "{bypass}INSERT INTO audit_log (at_ms, event, username, ip, result, detail) \
                 VALUES (1, 'time-travel', 'u', '127.0.0.1', 'ok', '')"
            ),
        )
        .await
        .unwrap();
        execute(
            db,
            &format!(
                "{bypass}INSERT INTO call_decisions (held_at_ms, decided_at_ms, channel, \
                 channel_id, caller, did, outcome, decided_by, apply_us, detail) \
                 VALUES (1, 2, 'c', 'i', 'a', 'd', 'transferred', 'timer', 0, '')"
            ),
        )
        .await
        .unwrap();
        execute(
            db,
            &format!(
                "{bypass}INSERT INTO pms_wakeups (address, due_ms, status, attempts, outcome, \
                 next_attempt_ms, claimed_by, claim_until_ms, created_ms, updated_ms) \
                 VALUES ('101', 1, 'snoozed', 0, '', 0, '', 0, 0, 0)"
            ),
        )
        .await
        .unwrap();

        let unknown = |e: Error, column: &str, value: &str| match e {
            Error::UnknownValue {
                column: c,
                value: v,
            } => {
                assert_eq!((c, v.as_str()), (column, value), "{:?}", db.backend)
            }
            other => panic!("{:?}: {other}", db.backend),
        };
        unknown(
            s.recent_audit(10).await.unwrap_err(),
            "audit_log.event",
            "time-travel",
        );
        unknown(
            s.recent_decisions(10).await.unwrap_err(),
            "call_decisions.outcome",
            "transferred",
        );
        unknown(
            s.wakeups_of("101", 0, 10).await.unwrap_err(),
            "pms_wakeups.status",
            "snoozed",
        );
    });
}
