//! The walk over CDRs that name recordings, on SQLite and PostgreSQL: every
//! recorded leg once, in entry order, whatever the page size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use store::*;

const T0: i64 = 1_795_736_000_000;

fn cdr(n: usize, session: usize, recordfiles: &str) -> NewCdr {
    let mut r = ucm::cdr::CdrRecord::new();
    r.set("src", "1001");
    r.set("dst", "1000");
    r.set("start", format!("2026-11-26 10:00:{:02}", n % 60));
    r.set("session", format!("s{session}"));
    r.set("recordfiles", recordfiles);
    let start_ms = T0 + n as i64 * 1000;
    NewCdr {
        dedupe_key: format!("k{n}"),
        start_ms,
        call_ms: T0 + session as i64 * 1000,
        end_ms: start_ms + 1000,
        record: r,
    }
}

#[tokio::test]
async fn every_recorded_leg_is_seen_once_in_order() {
    on_every_backend!(|s, db| {
        // 40 legs in 20 sessions; every third leg recorded, one with two files.
        let mut batch = Vec::new();
        let mut want = Vec::new();
        for n in 0..40 {
            let files = match n % 3 {
                0 => format!("2026-11/auto-{}-1001-1000.wav@", 1_795_736_000 + n),
                _ => String::new(),
            };
            let files = if n == 9 {
                format!("{files}2026-11/second-{n}.wav@")
            } else {
                files
            };
            if !files.is_empty() {
                want.push(files.clone());
            }
            batch.push(cdr(n as usize, n as usize / 2, &files));
        }
        s.insert_cdrs(&batch).await.unwrap();
        for page in [1, 3, 7, 100] {
            let mut cursor = RecordedCursor::default();
            let mut seen = Vec::new();
            let mut acctids = Vec::new();
            loop {
                let got = s.recorded_cdrs(&mut cursor, page).await.unwrap();
                if got.is_empty() {
                    assert!(cursor.is_done());
                    break;
                }
                for c in got {
                    acctids.push(c.acctid);
                    seen.push(c.recordfiles.clone());
                    assert!(c.start.starts_with("2026-11-26 10:00:"), "{c:?}");
                }
            }
            assert_eq!(seen, want, "{:?}, page {page}", db.backend);
            let mut sorted = acctids.clone();
            sorted.dedup();
            assert_eq!(sorted.len(), acctids.len());
        }
        let mut cursor = RecordedCursor::default();
        let first = s.recorded_cdrs(&mut cursor, 1000).await.unwrap();
        let two = first
            .iter()
            .find(|c| c.recordfiles.contains("second"))
            .unwrap();
        assert_eq!(
            two.names().collect::<Vec<_>>(),
            [
                "2026-11/auto-1795736009-1001-1000.wav",
                "2026-11/second-9.wav"
            ]
        );
    });
}

#[tokio::test]
async fn an_empty_table_ends_the_walk_at_once() {
    on_every_backend!(|s, _db| {
        let mut cursor = RecordedCursor::default();
        assert!(s.recorded_cdrs(&mut cursor, 10).await.unwrap().is_empty());
        assert!(cursor.is_done());
    });
}
