//! What the admin CDR page asks the store, on SQLite and PostgreSQL: pages of
//! entries newest first, the number of entries a filter matches, calls per
//! bucket of time (answered or not), all through indexes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use store::*;
use ucm::cdrapi::pattern::parse_list;

const T0: i64 = 1_795_736_000_000;
const MIN: i64 = 60_000;

/// Calls `i` of 1–3 legs, a call every 7 minutes; legs answered when
/// `(i + leg) % 4 == 0`.
fn calls(n: usize) -> Vec<NewCdr> {
    let mut out = Vec::new();
    for i in 0..n {
        let call_ms = T0 + i as i64 * 7 * MIN;
        let session = format!("{}-{}", call_ms / 1000, 1000 + i % 13);
        for leg in 0..(1 + i % 3) {
            let mut r = ucm::cdr::CdrRecord::new();
            r.set("src", (1000 + i % 13).to_string());
            r.set("dst", (2000 + (i + leg) % 5).to_string());
            r.set("session", session.clone());
            let answered = (i + leg) % 4 == 0;
            r.set(
                "disposition",
                if answered { "ANSWERED" } else { "NO ANSWER" },
            );
            r.set("billsec", if answered { "10" } else { "0" });
            let start_ms = call_ms + leg as i64 * 1000;
            out.push(NewCdr {
                dedupe_key: format!("k{i}-{leg}"),
                start_ms,
                call_ms,
                end_ms: start_ms + 10_000,
                record: r,
            });
        }
    }
    out
}

fn query(filter: &CdrFilter, grouping: Grouping, offset: u64, limit: u32) -> PageQuery<'_> {
    PageQuery {
        filter,
        grouping,
        after: None,
        offset,
        limit,
    }
}

/// (session, AcctId) of every leg of a page, in page order.
fn ids(p: &CdrPage) -> Vec<(String, String)> {
    p.legs()
        .unwrap()
        .iter()
        .map(|l| (l.session().to_owned(), l.values[0].to_owned()))
        .collect()
}

/// Entries of a page: runs of legs of one session.
fn entries(legs: &[(String, String)]) -> Vec<Vec<(String, String)>> {
    let mut out: Vec<Vec<(String, String)>> = Vec::new();
    for l in legs {
        match out.last_mut() {
            Some(e) if e[0].0 == l.0 => e.push(l.clone()),
            _ => out.push(vec![l.clone()]),
        }
    }
    out
}

#[tokio::test]
async fn newest_first_pages_are_the_entries_reversed_with_their_legs_in_order() {
    let data = calls(40);
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs(&data).await.unwrap();
        let none = CdrFilter::default();
        let window = CdrFilter {
            from_ms: Some(T0 + 50 * MIN),
            to_ms: Some(T0 + 200 * MIN),
            ..Default::default()
        };
        let caller = CdrFilter {
            caller: parse_list("1001-1004").unwrap(),
            ..Default::default()
        };
        for f in [&none, &window, &caller] {
            for grouping in [Grouping::Sessions, Grouping::Legs] {
                let all = s.cdr_page(&query(f, grouping, 0, 1000)).await.unwrap();
                let all = ids(&all);
                // Entries reversed; legs within an entry stay in start order.
                let mut want = match grouping {
                    Grouping::Sessions => entries(&all),
                    Grouping::Legs => all.iter().map(|l| vec![l.clone()]).collect(),
                };
                want.reverse();
                let want: Vec<(String, String)> = want.into_iter().flatten().collect();
                let newest = s
                    .cdr_page_in(&query(f, grouping, 0, 1000), Order::NewestFirst)
                    .await
                    .unwrap();
                assert_eq!(ids(&newest), want, "{f:?} {grouping:?} on {b:?}");
                // The count is what a page of everything holds.
                let n = match grouping {
                    Grouping::Sessions => entries(&all).len(),
                    Grouping::Legs => all.len(),
                };
                assert_eq!(
                    s.cdr_entry_count(f, grouping).await.unwrap(),
                    n as u64,
                    "{f:?} {grouping:?} on {b:?}"
                );
                // Pages of 3 from the newest cover the same entries.
                let mut paged = Vec::new();
                for page in 0..(n as u64).div_ceil(3) + 1 {
                    let p = s
                        .cdr_page_in(&query(f, grouping, page * 3, 3), Order::NewestFirst)
                        .await
                        .unwrap();
                    paged.extend(ids(&p));
                }
                assert_eq!(paged, want, "{f:?} {grouping:?} on {b:?} by pages");
                // The oldest-first order is the cdrapi's.
                let oldest = s
                    .cdr_page_in(&query(f, grouping, 0, 1000), Order::OldestFirst)
                    .await
                    .unwrap();
                assert_eq!(ids(&oldest), all);
            }
        }
        // A key from the newest-first order pages on towards the oldest.
        let first = s
            .cdr_page_in(&query(&none, Grouping::Sessions, 0, 2), Order::NewestFirst)
            .await
            .unwrap();
        let key = first.last_key().unwrap().unwrap();
        let next = s
            .cdr_page_in(
                &PageQuery {
                    after: Some(&key),
                    ..query(&none, Grouping::Sessions, 0, 2)
                },
                Order::NewestFirst,
            )
            .await
            .unwrap();
        let by_offset = s
            .cdr_page_in(&query(&none, Grouping::Sessions, 2, 2), Order::NewestFirst)
            .await
            .unwrap();
        assert_eq!(ids(&next), ids(&by_offset), "{b:?}");
        assert_eq!(
            s.cdr_entry_count(&CdrFilter::default(), Grouping::Sessions)
                .await
                .unwrap(),
            40
        );
    });
}

#[tokio::test]
async fn calls_per_bucket_count_each_call_once_answered_or_not() {
    let data = calls(40);
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs(&data).await.unwrap();
        for (f, bucket) in [
            (CdrFilter::default(), 3_600_000),
            (CdrFilter::default(), 900_000),
            (
                CdrFilter {
                    from_ms: Some(T0 + 30 * MIN),
                    to_ms: Some(T0 + 150 * MIN),
                    ..Default::default()
                },
                3_600_000,
            ),
            (
                CdrFilter {
                    callee: parse_list("2000").unwrap(),
                    ..Default::default()
                },
                1_800_000,
            ),
        ] {
            // The same counts worked out here from the legs a page holds.
            let page = s
                .cdr_page(&query(&f, Grouping::Sessions, 0, 1000))
                .await
                .unwrap();
            let mut want: Vec<CallBucket> = Vec::new();
            let legs = page.legs().unwrap();
            let mut i = 0;
            while i < legs.len() {
                let mut j = i;
                let mut answered = false;
                while j < legs.len() && legs[j].session() == legs[i].session() {
                    answered |= legs[j].values[15] == "ANSWERED";
                    j += 1;
                }
                let start = legs[i].call_ms - legs[i].call_ms.rem_euclid(bucket);
                if want.last().is_none_or(|w| w.start_ms != start) {
                    want.push(CallBucket {
                        start_ms: start,
                        answered: 0,
                        unanswered: 0,
                    });
                }
                let w = want.last_mut().unwrap();
                if answered {
                    w.answered += 1;
                } else {
                    w.unanswered += 1;
                }
                i = j;
            }
            let got = s.cdr_call_buckets(&f, bucket).await.unwrap();
            assert_eq!(got, want, "{f:?} per {bucket} ms on {b:?}");
            assert!(got.iter().all(|g| g.answered + g.unanswered > 0));
        }
        // Before 1970 buckets still start at the floor.
        let mut old = calls(1);
        old[0].call_ms = -1;
        old[0].start_ms = -1;
        old[0].dedupe_key = "old".into();
        old[0].record.set("session", "old");
        s.insert_cdrs(&old).await.unwrap();
        let f = CdrFilter {
            to_ms: Some(0),
            ..Default::default()
        };
        let got = s.cdr_call_buckets(&f, 3_600_000).await.unwrap();
        assert_eq!(
            got,
            [CallBucket {
                start_ms: -3_600_000,
                answered: 1,
                unanswered: 0
            }],
            "{b:?}"
        );
    });
}

#[tokio::test]
async fn browsing_queries_seek_indexes() {
    let rows: Vec<NewCdr> = calls(20_000);
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs(&rows).await.unwrap();
        s.analyze().await.unwrap();
        let day = CdrFilter {
            from_ms: Some(T0 + 20 * 86_400_000),
            to_ms: Some(T0 + 21 * 86_400_000),
            ..Default::default()
        };
        let caller = CdrFilter {
            caller: parse_list("1001,1002").unwrap(),
            ..day.clone()
        };
        // Either index serves a caller list in a window; the planner picks.
        for (what, f, indexes) in [
            ("one-day window", &day, &["cdr_start_ms"][..]),
            (
                "caller list in a window",
                &caller,
                &["cdr_src", "cdr_start_ms"][..],
            ),
        ] {
            let plans = s
                .cdr_browse_plans(&query(f, Grouping::Sessions, 0, 50))
                .await
                .unwrap();
            for (query, plan) in plans {
                println!("--- {query}, {what} on {b:?}:\n{plan}");
                assert!(
                    indexes.iter().any(|i| common::uses_index(&plan, i)),
                    "{query}, {what} on {b:?} should use {indexes:?}:\n{plan}"
                );
                scans_nothing(b, &plan, &format!("{query}, {what}"));
            }
        }
        // Unfiltered, the newest page walks the entry table backwards.
        let none = CdrFilter::default();
        let plans = s
            .cdr_browse_plans(&query(&none, Grouping::Sessions, 0, 50))
            .await
            .unwrap();
        let (_, newest) = &plans[0];
        println!("--- newest page, no filter on {b:?}:\n{newest}");
        if b == Backend::Postgres {
            assert!(newest.contains("cdr_session"), "{newest}");
            assert!(!newest.contains("Seq Scan"), "{newest}");
            assert!(
                !newest.contains("Sort"),
                "no sort of every entry:\n{newest}"
            );
        } else {
            // (The page's own legs are sorted for group_concat.)
            assert!(
                !newest.contains("TEMP B-TREE FOR ORDER BY"),
                "no sort of every entry:\n{newest}"
            );
        }
    });
}

fn scans_nothing(b: Backend, plan: &str, what: &str) {
    match b {
        Backend::Sqlite => {
            for line in plan.lines() {
                let scan = line.contains("SCAN i") || line.contains("SCAN c");
                assert!(
                    !scan || line.contains("USING"),
                    "{what} on {b:?} scans the table:\n{plan}"
                );
            }
        }
        Backend::Postgres => assert!(
            !common::scans_cdr_table(plan),
            "{what} on {b:?} scans the table:\n{plan}"
        ),
    }
}
