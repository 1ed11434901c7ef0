//! The CDR outbox: rows queued in the transaction that stores the CDRs (only
//! the CDRs actually stored), taken in order, delivered only under the
//! receiver's lease, retried after a backoff without being overtaken, and
//! bounded by a quota that says what it dropped — on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use store::*;

fn cdr(key: &str) -> NewCdr {
    let mut record = ucm::cdr::CdrRecord::new();
    record.set("src", "1001");
    record.set("dst", "1000");
    record.set("session", key);
    NewCdr {
        dedupe_key: key.into(),
        start_ms: 1_795_736_002_000,
        call_ms: 1_795_736_002_000,
        end_ms: 1_795_736_007_000,
        record,
    }
}

fn batch(from: usize, n: usize) -> Vec<NewCdr> {
    (from..from + n).map(|i| cdr(&format!("k{i}"))).collect()
}

fn receivers(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[tokio::test]
async fn stored_cdrs_are_queued_once_per_receiver_in_order() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let both = receivers(&["billing", "crm"]);
        // More rows than one statement carries on either backend.
        assert_eq!(
            s.insert_cdrs_queued(&batch(0, 600), &both, 10)
                .await
                .unwrap(),
            600,
            "{b:?}"
        );
        // Already stored: skipped, and not queued again; new ones are.
        let again = [batch(590, 20), batch(0, 5)].concat();
        assert_eq!(
            s.insert_cdrs_queued(&again, &both, 20).await.unwrap(),
            10,
            "{b:?}"
        );
        // Stored without receivers: queued nowhere.
        assert_eq!(s.insert_cdrs(&batch(1000, 3)).await.unwrap(), 3, "{b:?}");
        for r in ["billing", "crm"] {
            let backlog = s.outbox_backlog(r).await.unwrap();
            assert_eq!(
                backlog,
                Backlog {
                    items: 610,
                    oldest_ms: Some(10)
                },
                "{b:?} {r}"
            );
            let due = s.outbox_due(r, 0, 1000).await.unwrap();
            assert_eq!(due.len(), 610, "{b:?}");
            assert!(
                due.windows(2)
                    .all(|w| w[0].id < w[1].id && w[0].acctid < w[1].acctid),
                "{b:?}"
            );
            assert_eq!(due[600].queued_ms, 20, "{b:?}");
        }
        assert_eq!(
            s.outbox_backlog("nobody").await.unwrap(),
            Backlog::default(),
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn one_holder_at_a_time_delivers() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs_queued(&batch(0, 4), &receivers(&["billing"]), 1)
            .await
            .unwrap();
        assert!(
            s.outbox_lease("billing", "node-a", 1_000, 500)
                .await
                .unwrap(),
            "{b:?}"
        );
        assert!(
            !s.outbox_lease("billing", "node-b", 1_200, 500)
                .await
                .unwrap(),
            "{b:?}"
        );
        // The holder renews its own lease.
        assert!(
            s.outbox_lease("billing", "node-a", 1_400, 500)
                .await
                .unwrap(),
            "{b:?}"
        );
        let due = s.outbox_due("billing", 1_400, 2).await.unwrap();
        assert_eq!(due.len(), 2, "{b:?}");
        let ids: Vec<i64> = due.iter().map(|i| i.id).collect();
        // Not the holder: nothing is removed.
        assert_eq!(
            s.outbox_delivered("billing", "node-b", 1_450, &ids)
                .await
                .unwrap(),
            0,
            "{b:?}"
        );
        assert_eq!(
            s.outbox_delivered("billing", "node-a", 1_450, &ids)
                .await
                .unwrap(),
            2,
            "{b:?}"
        );
        // node-a's lease lapses (it died): node-b takes over, and node-a's
        // late confirmation of the next items removes nothing.
        assert!(
            s.outbox_lease("billing", "node-b", 1_900, 500)
                .await
                .unwrap(),
            "{b:?}"
        );
        let rest: Vec<i64> = s
            .outbox_due("billing", 1_900, 10)
            .await
            .unwrap()
            .iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(rest.len(), 2, "{b:?}");
        assert_eq!(
            s.outbox_delivered("billing", "node-a", 1_950, &rest)
                .await
                .unwrap(),
            0,
            "{b:?}"
        );
        assert_eq!(
            s.outbox_delivered("billing", "node-b", 1_950, &rest)
                .await
                .unwrap(),
            2,
            "{b:?}"
        );
        assert_eq!(s.outbox_backlog("billing").await.unwrap().items, 0, "{b:?}");
        // Released at shutdown: another node need not wait for it to lapse.
        s.outbox_release("billing", "node-b").await.unwrap();
        assert!(
            s.outbox_lease("billing", "node-a", 2_000, 500)
                .await
                .unwrap(),
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn a_failed_item_is_retried_after_its_backoff_and_never_overtaken() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs_queued(&batch(0, 3), &receivers(&["billing"]), 1)
            .await
            .unwrap();
        let due = s.outbox_due("billing", 100, 10).await.unwrap();
        let first = due[0].id;
        s.outbox_failed("billing", &[first], 5_000, "connection refused")
            .await
            .unwrap();
        // The oldest waits: nothing after it goes first.
        assert!(
            s.outbox_due("billing", 4_999, 10).await.unwrap().is_empty(),
            "{b:?}"
        );
        let due = s.outbox_due("billing", 5_000, 10).await.unwrap();
        assert_eq!(due.len(), 3, "{b:?}");
        assert_eq!(
            (due[0].id, due[0].attempts, due[0].next_ms),
            (first, 1, 5_000),
            "{b:?}"
        );
        assert_eq!(due[1].attempts, 0, "{b:?}");
    });
}

#[tokio::test]
async fn the_quota_drops_the_oldest_and_counts_them() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let r = receivers(&["billing", "crm"]);
        s.insert_cdrs_queued(&batch(0, 6), &r, 100).await.unwrap();
        s.insert_cdrs_queued(&batch(6, 4), &r, 200).await.unwrap();
        // At most 4 items: the 6 oldest go; the other receiver keeps its own.
        assert_eq!(s.outbox_trim("billing", 4, 0).await.unwrap(), 6, "{b:?}");
        let kept: Vec<i64> = s
            .outbox_due("billing", 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|i| i.queued_ms)
            .collect();
        assert_eq!(kept, vec![200; 4], "{b:?}");
        assert_eq!(s.outbox_backlog("crm").await.unwrap().items, 10, "{b:?}");
        // By age: everything queued before 150.
        assert_eq!(s.outbox_trim("crm", 1_000, 150).await.unwrap(), 6, "{b:?}");
        // Within the quota: nothing.
        assert_eq!(s.outbox_trim("crm", 1_000, 0).await.unwrap(), 0, "{b:?}");
        assert_eq!(
            s.outbox_backlog("crm").await.unwrap(),
            Backlog {
                items: 4,
                oldest_ms: Some(200)
            },
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn items_come_with_their_stored_cdr() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs_queued(&batch(0, 3), &receivers(&["billing"]), 1)
            .await
            .unwrap();
        let records = s.outbox_records("billing", 0, 2).await.unwrap();
        assert_eq!(records.len(), 2, "{b:?}");
        for (item, values) in &records {
            let v = values.as_ref().unwrap();
            assert_eq!(v.len(), ucm::cdr::FIELDS.len(), "{b:?}");
            assert_eq!(v[0], item.acctid.to_string(), "{b:?}");
            let src = ucm::cdr::FIELDS.iter().position(|f| *f == "src").unwrap();
            assert_eq!(v[src], "1001", "{b:?}");
        }
        let session = ucm::cdr::FIELDS
            .iter()
            .position(|f| *f == "session")
            .unwrap();
        let sessions: Vec<&str> = records
            .iter()
            .map(|(_, v)| v.as_ref().unwrap()[session].as_str())
            .collect();
        assert_eq!(sessions, ["k0", "k1"], "{b:?}");
        // Waiting out a backoff: nothing.
        s.outbox_failed("billing", &[records[0].0.id], 500, "down")
            .await
            .unwrap();
        assert!(
            s.outbox_records("billing", 100, 2)
                .await
                .unwrap()
                .is_empty(),
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn a_time_range_is_replayed_behind_the_backlog() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let mut early = batch(0, 3);
        for (i, c) in early.iter_mut().enumerate() {
            c.start_ms = 1_000 + i as i64;
        }
        let mut late = batch(3, 2);
        for c in &mut late {
            c.start_ms = 5_000;
        }
        s.insert_cdrs(&early).await.unwrap();
        s.insert_cdrs_queued(&late, &receivers(&["billing"]), 10)
            .await
            .unwrap();
        // [1001, 5000): the last two of the early calls, not the late ones.
        assert_eq!(
            s.outbox_replay("billing", 1_001, 5_000, 20).await.unwrap(),
            2,
            "{b:?}"
        );
        assert_eq!(s.outbox_replay("crm", 0, 10_000, 30).await.unwrap(), 5);
        let due = s.outbox_records("billing", 0, 10).await.unwrap();
        let sessions: Vec<&str> = due
            .iter()
            .map(|(_, v)| {
                let v = v.as_ref().unwrap();
                v[ucm::cdr::FIELDS
                    .iter()
                    .position(|f| *f == "session")
                    .unwrap()]
                .as_str()
            })
            .collect();
        assert_eq!(sessions, ["k3", "k4", "k1", "k2"], "{b:?}");
        assert_eq!(
            s.outbox_receivers().await.unwrap(),
            vec![
                (
                    "billing".to_owned(),
                    Backlog {
                        items: 4,
                        oldest_ms: Some(10)
                    }
                ),
                (
                    "crm".to_owned(),
                    Backlog {
                        items: 5,
                        oldest_ms: Some(30)
                    }
                ),
            ],
            "{b:?}"
        );
        // The audit trail takes the CDR output's events (migration 0013).
        s.record_audit(&AuditEvent {
            at_ms: 1,
            event: AuditEventKind::CdrOutput,
            username: String::new(),
            ip: String::new(),
            result: "dropped".into(),
            detail: "billing: 3".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            s.recent_audit(1).await.unwrap()[0].event,
            AuditEventKind::CdrOutput
        );
    });
}
