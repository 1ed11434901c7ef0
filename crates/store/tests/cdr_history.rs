//! CDR history at scale: on PostgreSQL the table is partitioned by month
//! (a day's page reads one month's partition, as the plan shows; legs of
//! months not made yet wait in the default partition and move when their
//! month is made); retention removes only whole old months. SQLite keeps
//! one table and deletes old legs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use store::*;
use ucm::cdrapi::pattern::parse_list;

/// 2026-09-01, 2026-10-01, 2026-11-01 (UTC).
const SEP: i64 = 1_788_220_800_000;
const OCT: i64 = 1_790_812_800_000;
const NOV: i64 = 1_793_491_200_000;
const DAY: i64 = 86_400_000;

fn leg(key: &str, src: &str, start_ms: i64) -> NewCdr {
    let mut record = ucm::cdr::CdrRecord::new();
    record.set("src", src);
    record.set("dst", "1000");
    record.set("session", key);
    NewCdr {
        dedupe_key: key.into(),
        start_ms,
        call_ms: start_ms,
        end_ms: start_ms + 5000,
        record,
    }
}

/// Ten legs a day from September to mid-December, and one whose start
/// Asterisk could not give (0).
fn history() -> Vec<NewCdr> {
    let mut legs: Vec<NewCdr> = (0..105)
        .flat_map(|d| {
            (0..10).map(move |i| {
                leg(
                    &format!("d{d}-{i}"),
                    &format!("{}", 1001 + i % 3),
                    SEP + d * DAY + i * 60_000,
                )
            })
        })
        .collect();
    legs.push(leg("zero", "1001", 0));
    legs
}

/// The first page of up to 5000 entries of `filter`.
fn first_page(filter: &CdrFilter, grouping: Grouping) -> PageQuery<'_> {
    PageQuery {
        filter,
        grouping,
        after: None,
        offset: 0,
        limit: 5000,
    }
}

fn count_from(months: &[CdrMonth], name: &str) -> bool {
    months.iter().any(|m| m.name == name)
}

#[tokio::test]
async fn a_day_window_reads_one_month_and_months_move_out_of_the_default_partition() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let legs = history();
        assert_eq!(s.insert_cdrs(&legs).await.unwrap(), legs.len() as u64);
        let made = s.cdr_months_make(&[SEP, OCT + 5 * DAY, NOV]).await.unwrap();
        let months = s.cdr_months().await.unwrap();
        if b == Backend::Sqlite {
            assert!(made.is_empty() && months.is_empty());
            continue;
        }
        assert_eq!(made, ["cdr_p202609", "cdr_p202610", "cdr_p202611"]);
        for m in ["cdr_p202609", "cdr_p202610", "cdr_p202611", "cdr_p202612"] {
            assert!(count_from(&months, m), "{m}: {months:?}");
        }
        let oct = months.iter().find(|m| m.name == "cdr_p202610").unwrap();
        assert_eq!((oct.from_ms, oct.to_ms), (OCT, NOV));
        // Made twice: nothing changes.
        assert_eq!(s.cdr_months_make(&[OCT]).await.unwrap(), ["cdr_p202610"]);
        // Every leg still there, the moved ones included.
        let all = CdrFilter::default();
        let q = first_page(&all, Grouping::Sessions);
        assert_eq!(
            s.cdr_page(&q).await.unwrap().legs().unwrap().len(),
            legs.len()
        );
        s.analyze().await.unwrap();

        // A day in October with a caller list: only October's partition is
        // read for the filter (alias i); the legs of the entries found are
        // fetched by entry (alias c) from any month.
        let day = CdrFilter {
            caller: parse_list("1001,1002").unwrap(),
            from_ms: Some(OCT + 9 * DAY),
            to_ms: Some(OCT + 10 * DAY - 1),
            ..Default::default()
        };
        let q = PageQuery { filter: &day, ..q };
        let plan = s.cdr_query_plan(&q).await.unwrap();
        let filtered: std::collections::BTreeSet<&str> = plan
            .lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once(" on ")?;
                let mut words = rest.split_whitespace();
                let table = words.next()?;
                let alias = words.next().unwrap_or("");
                (table.starts_with("cdr_") && (alias == "i" || alias.starts_with("i_")))
                    .then_some(table)
            })
            .collect();
        assert_eq!(
            filtered.into_iter().collect::<Vec<_>>(),
            ["cdr_p202610"],
            "the day's filter should read October only:\n{plan}"
        );
        let page = s.cdr_page(&q).await.unwrap();
        let got = page.legs().unwrap();
        assert_eq!(got.len(), 7, "days' legs from 1001/1002");
        assert!(
            got.iter()
                .all(|l| l.start_ms >= OCT + 9 * DAY && l.start_ms < OCT + 10 * DAY)
        );
    });
}

#[tokio::test]
async fn retention_removes_only_whole_old_months() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        let legs = history();
        s.insert_cdrs(&legs).await.unwrap();
        s.cdr_months_make(&[SEP, OCT, NOV]).await.unwrap();
        // Keep from November on: September and October go, whole.
        let r = s.drop_cdrs_before(NOV).await.unwrap();
        let all = CdrFilter::default();
        let q = first_page(&all, Grouping::Sessions);
        let page = s.cdr_page(&q).await.unwrap();
        let left = page.legs().unwrap();
        // November (30 days) and December's 14 days stay.
        assert_eq!(left.len(), 440, "{b:?}");
        assert!(left.iter().all(|l| l.start_ms >= NOV), "{b:?}");
        match b {
            Backend::Postgres => {
                assert_eq!(r.months_dropped, ["cdr_p202609", "cdr_p202610"]);
                // The leg without a start, kept in the default partition.
                assert_eq!(r.legs_deleted, 1);
                let months = s.cdr_months().await.unwrap();
                assert!(!count_from(&months, "cdr_p202610") && count_from(&months, "cdr_p202611"));
            }
            Backend::Sqlite => {
                assert!(r.months_dropped.is_empty());
                assert_eq!(r.legs_deleted, 611);
            }
        }
        // The entries of the removed legs are gone too: counting entries
        // (cdr_session on the unfiltered path) agrees with the legs.
        assert_eq!(
            s.cdr_entry_count(&all, Grouping::Sessions).await.unwrap(),
            440,
            "{b:?}"
        );
        // A second pass removes nothing more.
        let again = s.drop_cdrs_before(NOV).await.unwrap();
        assert_eq!(
            (again.months_dropped.len(), again.legs_deleted),
            (0, 0),
            "{b:?}"
        );
    });
}

/// The legs of an entry are found whatever months they started in: an
/// entry across the end of October, one whose legs come in two batches (the
/// second widening its range), one with a leg whose start Asterisk could not
/// give (default partition) — on every page shape.
#[tokio::test]
async fn an_entrys_legs_are_found_across_months_and_batches() {
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.cdr_months_make(&[OCT, NOV]).await.unwrap();
        let session = |key: &str, session: &str, call_ms: i64, start_ms: i64| {
            let mut l = leg(key, "1001", start_ms);
            l.call_ms = call_ms;
            l.record.set("session", session);
            l
        };
        let eve = NOV - 60_000;
        s.insert_cdrs(&[
            session("x1", "across", eve, eve),
            session("x2", "across", eve, NOV + 60_000),
            session("y1", "later", OCT + DAY, OCT + DAY),
            session("z1", "unknown", OCT + 2 * DAY, OCT + 2 * DAY),
            session("z2", "unknown", OCT + 2 * DAY, 0),
        ])
        .await
        .unwrap();
        // The second batch brings a leg of "later" a month on.
        s.insert_cdrs(&[session("y2", "later", OCT + DAY, NOV + DAY)])
            .await
            .unwrap();
        let all = CdrFilter::default();
        for grouping in [Grouping::Sessions, Grouping::Legs] {
            for order in [Order::OldestFirst, Order::NewestFirst] {
                let q = first_page(&all, grouping);
                let page = s.cdr_page_in(&q, order).await.unwrap();
                let mut keys: Vec<String> = page
                    .legs()
                    .unwrap()
                    .iter()
                    .map(|l| {
                        format!(
                            "{}@{}",
                            l.values[ucm::cdr::FIELDS
                                .iter()
                                .position(|f| *f == "session")
                                .unwrap()],
                            l.start_ms
                        )
                    })
                    .collect();
                keys.sort();
                assert_eq!(keys.len(), 6, "{b:?} {grouping:?} {order:?}: {keys:?}");
            }
        }
    });
}
