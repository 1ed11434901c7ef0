//! Hotel rooms and wake-up calls (pmsapi), on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::open;

use store::*;

fn room(address: &str, extension: &str) -> Room {
    Room {
        address: address.into(),
        extension: extension.into(),
        checked_in: true,
        guest_name: "Jane O'Doe".into(),
        language: "de".into(),
        vip: true,
        arrival: "20261127".into(),
        departure: "20261130".into(),
        cos: 2,
        dnd: true,
        room_status: "dirty".into(),
        mwi: true,
        checked_in_ms: 1_000,
        updated_ms: 1_000,
        version: 0,
    }
}

#[tokio::test]
async fn rooms_are_stored_with_every_field_and_versioned() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let r = room("1100", "2100");
        assert_eq!(
            s.write_room(&r).await.unwrap(),
            RoomWrite::Written(1),
            "{b:?}"
        );
        let got = s.room("1100").await.unwrap().unwrap();
        assert_eq!(
            got,
            Room {
                version: 1,
                ..r.clone()
            },
            "{b:?}"
        );
        assert_eq!(
            s.room_by_extension("2100").await.unwrap(),
            Some(got.clone())
        );
        assert_eq!(s.room("9999").await.unwrap(), None);
        assert_eq!(s.room_by_extension("1100").await.unwrap(), None);

        // A second creation of the same room loses.
        assert_eq!(
            s.write_room(&r).await.unwrap(),
            RoomWrite::Conflict,
            "{b:?}"
        );
        // An update from the current version wins, a stale one loses.
        let vacant = Room {
            checked_in: false,
            guest_name: String::new(),
            vip: false,
            dnd: false,
            mwi: false,
            updated_ms: 2_000,
            ..got.clone()
        };
        assert_eq!(s.write_room(&vacant).await.unwrap(), RoomWrite::Written(2));
        assert_eq!(s.write_room(&vacant).await.unwrap(), RoomWrite::Conflict);
        let now = s.room("1100").await.unwrap().unwrap();
        assert_eq!(
            now,
            Room {
                version: 2,
                ..vacant
            },
            "{b:?}"
        );

        // An extension belongs to one room.
        assert_eq!(
            s.write_room(&room("1101", "2100")).await.unwrap(),
            RoomWrite::ExtensionTaken,
            "{b:?}"
        );
        assert_eq!(s.room("1101").await.unwrap(), None);
        assert_eq!(
            s.write_room(&room("1101", "2101")).await.unwrap(),
            RoomWrite::Written(1)
        );
        let moved = Room {
            extension: "2101".into(),
            ..s.room("1100").await.unwrap().unwrap()
        };
        assert_eq!(
            s.write_room(&moved).await.unwrap(),
            RoomWrite::ExtensionTaken
        );
        let addresses: Vec<String> = s
            .rooms()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.address)
            .collect();
        assert_eq!(addresses, ["1100", "1101"], "{b:?}");

        // Survives reconnecting.
        s.close().await;
        let again = open(db).await;
        assert_eq!(
            again.room("1100").await.unwrap().unwrap().version,
            2,
            "{b:?}"
        );
        again.close().await;
    });
}

#[tokio::test]
async fn two_processes_on_one_database_never_both_win() {
    on_every_backend!(|s, db| {
        let other = open(db).await;
        s.write_room(&room("1100", "2100")).await.unwrap();
        let seen = other.room("1100").await.unwrap().unwrap();
        assert_eq!(seen.guest_name, "Jane O'Doe");
        // Both read version 1 and write: exactly one wins.
        let a = Room {
            guest_name: "A".into(),
            ..seen.clone()
        };
        let bb = Room {
            guest_name: "B".into(),
            ..seen.clone()
        };
        let (ra, rb) = tokio::join!(s.write_room(&a), other.write_room(&bb));
        let results = [ra.unwrap(), rb.unwrap()];
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == RoomWrite::Written(2))
                .count(),
            1,
            "{:?}: {results:?}",
            db.backend
        );
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == RoomWrite::Conflict)
                .count(),
            1
        );

        // Both try to claim the same due wake-up call many times: one wins each.
        for i in 0..10 {
            let id = s.add_wakeup("1100", 10_000 + i, 1).await.unwrap().unwrap();
            let (x, y) = tokio::join!(
                s.claim_wakeup(id, "node-a", 20_000, 80_000),
                other.claim_wakeup(id, "node-b", 20_000, 80_000)
            );
            let claims = [x.unwrap(), y.unwrap()];
            assert_eq!(
                claims.iter().flatten().count(),
                1,
                "{:?}: {claims:?}",
                db.backend
            );
            assert!(claims.contains(&Some(1)));
        }
        other.close().await;
    });
}

#[tokio::test]
async fn wakeups_are_added_listed_and_cancelled() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let first = s.add_wakeup("1100", 7_000, 1).await.unwrap().unwrap();
        let second = s.add_wakeup("1100", 9_000, 2).await.unwrap().unwrap();
        let other = s.add_wakeup("1101", 7_000, 3).await.unwrap().unwrap();
        assert!(first < second && second < other, "{b:?}");
        // One open call per room and time.
        assert_eq!(s.add_wakeup("1100", 7_000, 4).await.unwrap(), None, "{b:?}");

        let w = s.wakeup(first).await.unwrap().unwrap();
        assert_eq!(
            w,
            Wakeup {
                id: first,
                address: "1100".into(),
                due_ms: 7_000,
                status: WakeupStatus::Pending,
                attempts: 0,
                outcome: String::new(),
                next_attempt_ms: 7_000,
                claimed_by: String::new(),
                claim_until_ms: 0,
                created_ms: 1,
                updated_ms: 1,
            }
        );
        let list: Vec<i64> = s
            .wakeups_of("1100", 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|w| w.id)
            .collect();
        assert_eq!(list, [first, second], "{b:?}");
        assert_eq!(s.wakeups_of("1100", 8_000, 10).await.unwrap().len(), 1);

        assert_eq!(s.cancel_wakeups("1100", Some(9_000), 5).await.unwrap(), 1);
        assert_eq!(s.wakeup(second).await.unwrap().unwrap().status, "cancelled");
        // Cancelled: a new call at that time may be set again.
        assert!(s.add_wakeup("1100", 9_000, 6).await.unwrap().is_some());
        assert_eq!(s.cancel_wakeups("1100", None, 7).await.unwrap(), 2, "{b:?}");
        assert_eq!(s.cancel_wakeups("1100", None, 8).await.unwrap(), 0);
        assert_eq!(s.wakeup(other).await.unwrap().unwrap().status, "pending");
    });
}

#[tokio::test]
async fn a_wakeup_is_claimed_retried_answered_missed_or_released() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let id = s.add_wakeup("1100", 1_000, 0).await.unwrap().unwrap();
        // Not due yet.
        assert!(s.due_wakeups(999, 10).await.unwrap().is_empty());
        assert_eq!(
            s.claim_wakeup(id, "a", 999, 5_000).await.unwrap(),
            None,
            "{b:?}"
        );
        assert_eq!(s.due_wakeups(1_000, 10).await.unwrap().len(), 1);

        assert_eq!(
            s.claim_wakeup(id, "a", 1_000, 5_000).await.unwrap(),
            Some(1)
        );
        assert_eq!(s.claim_wakeup(id, "b", 1_000, 5_000).await.unwrap(), None);
        assert!(s.due_wakeups(1_000, 10).await.unwrap().is_empty());
        let w = s.wakeup(id).await.unwrap().unwrap();
        assert_eq!(
            (w.status.as_str(), w.attempts, w.claimed_by.as_str()),
            ("dialing", 1, "a")
        );

        // Only the holder of this attempt may finish it.
        assert!(
            !s.finish_wakeup(id, "b", 1, WakeupStatus::Answered, "answered", 0, 2_000)
                .await
                .unwrap()
        );
        assert!(
            !s.finish_wakeup(id, "a", 2, WakeupStatus::Answered, "answered", 0, 2_000)
                .await
                .unwrap()
        );
        // No answer: retried later.
        assert!(
            s.finish_wakeup(id, "a", 1, WakeupStatus::Pending, "no answer", 3_000, 2_000)
                .await
                .unwrap()
        );
        assert!(s.due_wakeups(2_999, 10).await.unwrap().is_empty(), "{b:?}");
        assert_eq!(
            s.claim_wakeup(id, "b", 3_000, 9_000).await.unwrap(),
            Some(2)
        );
        assert!(
            s.finish_wakeup(id, "b", 2, WakeupStatus::Answered, "answered", 0, 3_500)
                .await
                .unwrap()
        );
        let w = s.wakeup(id).await.unwrap().unwrap();
        assert_eq!(
            (w.status.as_str(), w.outcome.as_str(), w.attempts),
            ("answered", "answered", 2)
        );

        // Cancelled while ringing: the attempt's end does not undo it.
        let c = s.add_wakeup("1100", 4_000, 0).await.unwrap().unwrap();
        assert_eq!(s.claim_wakeup(c, "a", 4_000, 9_000).await.unwrap(), Some(1));
        assert_eq!(s.cancel_wakeups("1100", None, 4_100).await.unwrap(), 1);
        assert!(
            !s.finish_wakeup(c, "a", 1, WakeupStatus::Answered, "answered", 0, 4_200)
                .await
                .unwrap()
        );
        assert_eq!(
            s.wakeup(c).await.unwrap().unwrap().status,
            "cancelled",
            "{b:?}"
        );

        // Too late: missed, once.
        let m = s.add_wakeup("1100", 5_000, 0).await.unwrap().unwrap();
        assert!(s.miss_wakeup(m, 90_000).await.unwrap());
        assert!(!s.miss_wakeup(m, 90_001).await.unwrap());
        let w = s.wakeup(m).await.unwrap().unwrap();
        assert_eq!(
            (w.status.as_str(), w.outcome.as_str()),
            ("missed", "missed")
        );

        // A process that stopped while dialling: its claims run out.
        let x = s.add_wakeup("1101", 6_000, 0).await.unwrap().unwrap();
        let y = s.add_wakeup("1102", 6_000, 0).await.unwrap().unwrap();
        assert_eq!(
            s.claim_wakeup(x, "gone", 6_000, 10_000).await.unwrap(),
            Some(1)
        );
        assert_eq!(
            s.claim_wakeup(y, "gone", 6_000, 10_000).await.unwrap(),
            Some(1)
        );
        s.finish_wakeup(y, "gone", 1, WakeupStatus::Pending, "busy", 6_500, 6_400)
            .await
            .unwrap();
        assert_eq!(
            s.claim_wakeup(y, "gone", 6_500, 10_000).await.unwrap(),
            Some(2)
        );
        assert_eq!(s.release_stale_wakeups(9_999, 2).await.unwrap(), 0, "{b:?}");
        assert_eq!(
            s.release_stale_wakeups(10_001, 2).await.unwrap(),
            2,
            "{b:?}"
        );
        let (wx, wy) = (
            s.wakeup(x).await.unwrap().unwrap(),
            s.wakeup(y).await.unwrap().unwrap(),
        );
        assert_eq!(
            (wx.status.as_str(), wx.outcome.as_str()),
            ("pending", "interrupted")
        );
        assert_eq!(wx.next_attempt_ms, 10_001);
        assert_eq!(wy.status, "failed", "{b:?}: two attempts made, two allowed");
        assert_eq!(
            s.claim_wakeup(x, "a", 10_001, 20_000).await.unwrap(),
            Some(2)
        );
    });
}
