//! cdrapi queries on SQLite and PostgreSQL: the SQL agrees with the pattern
//! rules of `ucm::cdrapi`, entries group the legs of a session, offsets and
//! keyset pages agree, and filters seek indexes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use store::*;
use ucm::cdrapi::TimeField;
use ucm::cdrapi::pattern::{list_matches, parse_list};

const T0: i64 = 1_795_736_000_000;

/// Values the patterns are tried on: numbers with and without leading zeros,
/// names, symbols, empty, unicode, GLOB/LIKE metacharacters.
const VALUES: &[&str] = &[
    "1001",
    "1002",
    "1010",
    "1099",
    "999",
    "5303",
    "05303",
    "0",
    "00",
    "",
    "abc",
    "Abc",
    "+4930123",
    "*97",
    "#31#",
    "1_2",
    "1%2",
    "10-20",
    "2079460001",
    "02079460001",
    "12345678901234567890123",
    "Jürgen",
    "a*b",
    "a?b",
    "[x]",
    "100",
    "10",
    "1",
    // Around the text comparisons of ranges (`store::cdr::query::range_sql`).
    "101:",
    "10000",
    "1049",
    "1050",
    "0001049",
    "01",
    "001000",
    "0000",
    "9",
    "99",
    "100a",
    "1 00",
    "049",
    "00049",
    "12",
    "1200",
];

struct Leg {
    key: String,
    src: String,
    dst: String,
    answered: String,
    name: String,
    session: String,
    call_ms: i64,
    start_ms: i64,
    billsec: u64,
}

/// Sessions of 1–3 legs; every value appears as src, dst and dstanswer.
fn legs() -> Vec<Leg> {
    let mut out = Vec::new();
    let mut n = 0usize;
    for (i, src) in VALUES.iter().enumerate() {
        let session = format!("{}{i:03}-{src}", T0 / 1000);
        let call_ms = T0 + (i as i64 % 7) * 60_000;
        for leg in 0..(1 + i % 3) {
            let dst = VALUES[(i * 7 + leg * 3) % VALUES.len()];
            let answered = VALUES[(i * 5 + leg) % VALUES.len()];
            out.push(Leg {
                key: format!("k{n}"),
                src: src.to_string(),
                dst: dst.to_string(),
                answered: answered.to_string(),
                name: format!("Name {}", VALUES[(i + leg) % VALUES.len()]),
                session: session.clone(),
                call_ms,
                start_ms: call_ms + leg as i64 * 1000,
                billsec: (i * 3 + leg) as u64 % 40,
            });
            n += 1;
        }
    }
    out
}

fn new_cdr(l: &Leg) -> NewCdr {
    let mut record = ucm::cdr::CdrRecord::new();
    record.set("src", l.src.clone());
    record.set("dst", l.dst.clone());
    record.set("dstanswer", l.answered.clone());
    record.set("caller_name", l.name.clone());
    record.set("session", l.session.clone());
    record.set("billsec", l.billsec.to_string());
    record.set("lastdata", "PJSIP/1000,60,\"q\" 'x'");
    NewCdr {
        dedupe_key: l.key.clone(),
        start_ms: l.start_ms,
        call_ms: l.call_ms,
        end_ms: l.start_ms + 1000 * l.billsec as i64,
        record,
    }
}

async fn store_legs(s: &Store, data: &[Leg]) {
    s.insert_cdrs(&data.iter().map(new_cdr).collect::<Vec<_>>())
        .await
        .unwrap();
}

/// A page of sessions.
fn page_of<'a>(
    filter: &'a CdrFilter,
    after: Option<&'a PageKey>,
    offset: u64,
    limit: u32,
) -> PageQuery<'a> {
    PageQuery {
        filter,
        grouping: Grouping::Sessions,
        after,
        offset,
        limit,
    }
}

/// Every leg the filter selects, as (src, dst, dstanswer) in page order.
async fn select(store: &Store, f: &CdrFilter) -> Vec<(String, String, String)> {
    let page = store
        .cdr_page(&PageQuery {
            grouping: Grouping::Legs,
            ..page_of(f, None, 0, 100_000)
        })
        .await
        .unwrap();
    page.legs()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l.values[2].to_owned(),
                l.values[3].to_owned(),
                l.values[24].to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn pattern_sql_agrees_with_the_pattern_rules() {
    let lists = [
        "1001",
        "1001,1002",
        "1000-1010",
        "0-0",
        "999-1001",
        "5303",
        "5300-5310",
        "05303",
        "_0@",
        "10@",
        "@1",
        "1_2",
        "1@2",
        "@",
        "_",
        "*97",
        "a*b",
        "J@",
        "J_rgen",
        "2079460000-2079460003",
        "02079460000-02079460003",
        "10-20",
        "12345678901234567890000-12345678901234567890999",
        "0-5",
        "+4930123",
        "#31#",
        "a_b",
        "a*@",
        "*9_",
        "1000-1049",
        "1000-1049,12@",
        "5-150",
        "9-1000",
        "0-99",
        "1-12345",
        "49-49",
        "100-10000",
        "7-7",
        "0-1049",
        "999-1000",
    ];
    let data = legs();
    on_every_backend!(|s, db| {
        let b = db.backend;
        store_legs(&s, &data).await;
        for text in lists {
            let list = parse_list(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            for field in ["src", "dst", "dstanswer"] {
                let mut f = CdrFilter::default();
                let pick = |l: &Leg| match field {
                    "src" => l.src.clone(),
                    "dst" => l.dst.clone(),
                    _ => l.answered.clone(),
                };
                match field {
                    "src" => f.caller = list.clone(),
                    "dst" => f.callee = list.clone(),
                    _ => f.answered_by = list.clone(),
                }
                let mut got: Vec<String> = select(&s, &f)
                    .await
                    .into_iter()
                    .map(|(src, dst, ans)| match field {
                        "src" => src,
                        "dst" => dst,
                        _ => ans,
                    })
                    .collect();
                let mut want: Vec<String> = data
                    .iter()
                    .filter(|l| list_matches(&list, &pick(l)))
                    .map(pick)
                    .collect();
                got.sort();
                want.sort();
                assert_eq!(got, want, "{field} matching {text:?} on {b:?}");
            }
        }
        // callerName: exact and wildcard.
        for (text, pattern) in [
            ("Name 1001", ucm::cdrapi::Pattern::Exact("Name 1001".into())),
            ("Name J@", ucm::cdrapi::Pattern::Wildcard("Name J@".into())),
            (
                "Name a_b",
                ucm::cdrapi::Pattern::Wildcard("Name a_b".into()),
            ),
        ] {
            let f = CdrFilter {
                caller_name: Some(pattern.clone()),
                ..Default::default()
            };
            let got = select(&s, &f).await.len();
            let want = data.iter().filter(|l| pattern.matches(&l.name)).count();
            assert_eq!(got, want, "callerName {text:?} on {b:?}");
            assert!(want > 0, "{text}");
        }
    });
}

/// (from, to, time field, min billsec, max billsec)
type Window = (
    Option<i64>,
    Option<i64>,
    TimeField,
    Option<u64>,
    Option<u64>,
);

#[tokio::test]
async fn times_and_durations_are_inclusive_bounds() {
    let data = legs();
    on_every_backend!(|s, db| {
        let b = db.backend;
        store_legs(&s, &data).await;
        let cases: [Window; 6] = [
            (
                Some(T0 + 60_000),
                Some(T0 + 120_000),
                TimeField::Start,
                None,
                None,
            ),
            (Some(T0 + 60_000), None, TimeField::Start, Some(5), Some(20)),
            (None, Some(T0 + 61_000), TimeField::Start, None, None),
            (
                Some(T0 + 70_000),
                Some(T0 + 200_000),
                TimeField::End,
                None,
                None,
            ),
            (None, None, TimeField::Start, Some(0), Some(0)),
            (Some(T0 + 999_999), None, TimeField::Start, None, None),
        ];
        for (from, to, field, min, max) in cases {
            let f = CdrFilter {
                from_ms: from,
                to_ms: to,
                time_field: field,
                min_billsec: min,
                max_billsec: max,
                ..Default::default()
            };
            let got = select(&s, &f).await.len();
            let want = data
                .iter()
                .filter(|l| {
                    let t = match field {
                        TimeField::Start => l.start_ms,
                        TimeField::End => l.start_ms + 1000 * l.billsec as i64,
                    };
                    from.is_none_or(|v| t >= v)
                        && to.is_none_or(|v| t <= v)
                        && min.is_none_or(|v| l.billsec >= v)
                        && max.is_none_or(|v| l.billsec <= v)
                })
                .count();
            assert_eq!(
                got, want,
                "{from:?}..{to:?} {field:?} billsec {min:?}..{max:?} on {b:?}"
            );
        }
    });
}

#[tokio::test]
async fn entries_are_sessions_and_every_way_of_paging_agrees() {
    let data = legs();
    on_every_backend!(|s, db| {
        let b = db.backend;
        store_legs(&s, &data).await;
        let f = CdrFilter::default();
        // One page with everything: entries are contiguous, ordered by call
        // start then session, legs by start.
        let all = s.cdr_page(&page_of(&f, None, 0, 1000)).await.unwrap();
        let legs = all.legs().unwrap();
        assert_eq!(legs.len(), data.len(), "{b:?}");
        let sessions: Vec<(i64, &str)> = legs.iter().map(|l| (l.call_ms, l.session())).collect();
        let mut sorted = sessions.clone();
        sorted.sort();
        assert_eq!(
            sessions, sorted,
            "entries in (call start, session) order on {b:?}"
        );
        let mut distinct = sessions.clone();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            VALUES.len(),
            "one entry per session on {b:?}"
        );
        for w in legs.windows(2) {
            if w[0].session() == w[1].session() {
                assert!(w[0].start_ms <= w[1].start_ms, "legs by start on {b:?}");
            }
        }
        // Pages of 4 by offset and by keyset give the same entries.
        let mut by_offset = Vec::new();
        let mut by_key = Vec::new();
        let mut after: Option<PageKey> = None;
        for page in 0..(VALUES.len() as u64).div_ceil(4) + 1 {
            let p = s.cdr_page(&page_of(&f, None, page * 4, 4)).await.unwrap();
            by_offset.extend(p.legs().unwrap().iter().map(|l| l.session().to_owned()));
            let k = s
                .cdr_page(&page_of(&f, after.as_ref(), 0, 4))
                .await
                .unwrap();
            let k_legs = k.legs().unwrap();
            by_key.extend(k_legs.iter().map(|l| l.session().to_owned()));
            let Some(next) = k_legs.last().map(|l| PageKey::of(l).unwrap()) else {
                break;
            };
            after = Some(next);
        }
        let whole: Vec<String> = legs.iter().map(|l| l.session().to_owned()).collect();
        assert_eq!(by_offset, whole, "offset paging on {b:?}");
        assert_eq!(by_key, whole, "keyset paging on {b:?}");
        // Past the end: empty, not an error.
        assert!(
            s.cdr_page(&page_of(&f, None, 10_000, 10))
                .await
                .unwrap()
                .is_empty()
        );
        // Legs grouping counts legs.
        let legs_page = s
            .cdr_page(&PageQuery {
                grouping: Grouping::Legs,
                ..page_of(&f, None, 3, 5)
            })
            .await
            .unwrap();
        let got: Vec<String> = legs_page
            .legs()
            .unwrap()
            .iter()
            .map(|l| l.values[0].to_owned())
            .collect();
        let want: Vec<String> = legs[3..8].iter().map(|l| l.values[0].to_owned()).collect();
        assert_eq!(got, want, "legs paging on {b:?}");
        // A filter that selects one leg of a multi-leg session returns only that leg.
        let one = CdrFilter {
            callee: parse_list(&data[2].dst).unwrap(),
            caller: parse_list(&data[2].src).unwrap(),
            ..Default::default()
        };
        let p = s
            .cdr_page(&PageQuery {
                filter: &one,
                ..page_of(&f, None, 0, 1000)
            })
            .await
            .unwrap();
        for l in p.legs().unwrap() {
            assert_eq!(l.values[2], data[2].src);
            assert_eq!(l.values[3], data[2].dst);
        }
        // Values round-trip exactly, quotes and all.
        assert_eq!(legs[0].values[9], "PJSIP/1000,60,\"q\" 'x'");
    });
}

/// 20,000 one-leg calls a minute apart from extensions 1000-1499 to
/// 2000-2699: enough rows that PostgreSQL prefers an index where one applies.
fn minute_calls() -> Vec<NewCdr> {
    (0..20_000)
        .map(|i| {
            new_cdr(&Leg {
                key: format!("p{i}"),
                src: format!("{}", 1000 + i % 500),
                dst: format!("{}", 2000 + i % 700),
                answered: String::new(),
                name: String::new(),
                session: format!("{}-{}", 1_795_736_000 + i, 1000 + i % 500),
                call_ms: T0 + i as i64 * 60_000,
                start_ms: T0 + i as i64 * 60_000,
                billsec: 10,
            })
        })
        .collect()
}

#[tokio::test]
async fn filters_seek_indexes_instead_of_scanning_the_table() {
    let rows = minute_calls();
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs(&rows).await.unwrap();
        s.analyze().await.unwrap();
        let day = CdrFilter {
            from_ms: Some(T0),
            to_ms: Some(T0 + 86_400_000),
            ..Default::default()
        };
        let caller = CdrFilter {
            caller: parse_list("1001,1002").unwrap(),
            ..day.clone()
        };
        let prefix = CdrFilter {
            callee: parse_list("201@").unwrap(),
            ..Default::default()
        };
        let end = CdrFilter {
            time_field: TimeField::End,
            ..day.clone()
        };
        let range = CdrFilter {
            caller: parse_list("1000-1049,12@").unwrap(),
            ..day.clone()
        };
        let none = CdrFilter::default();
        let cases = [
            ("one-day window", &day, "cdr_start_ms"),
            ("caller ranges in a window", &range, "cdr_start_ms"),
            ("caller list in a window", &caller, "cdr_src"),
            ("callee prefix", &prefix, "cdr_dst"),
            ("end-time window", &end, "cdr_end_ms"),
            ("no filter", &none, "cdr_entry"),
        ];
        for (what, f, index) in cases {
            let plan = s.cdr_query_plan(&page_of(f, None, 0, 1000)).await.unwrap();
            println!("--- {what} on {b:?}:\n{plan}");
            assert!(
                common::uses_index(&plan, index),
                "{what} on {b:?} should use {index}:\n{plan}"
            );
            match b {
                Backend::Sqlite => {
                    // A full table scan reads "SCAN i" / "SCAN c" with no index.
                    // Unfiltered, "SCAN i" walks cdr_session in key order (the
                    // table is its own index) and stops at the page.
                    for line in plan.lines() {
                        let scan =
                            (line.contains("SCAN i") && !f.is_empty()) || line.contains("SCAN c");
                        assert!(
                            !scan || line.contains("USING"),
                            "{what} on {b:?} scans the table:\n{plan}"
                        );
                    }
                }
                Backend::Postgres => {
                    assert!(
                        !common::scans_cdr_table(&plan),
                        "{what} on {b:?} scans the table:\n{plan}"
                    );
                    // The window's legs are filtered and grouped from the
                    // index alone (migration 0016).
                    if index == "cdr_start_ms" {
                        assert!(
                            plan.contains("Index Only Scan using cdr_"),
                            "{what} on {b:?}: not an index-only scan:\n{plan}"
                        );
                    }
                }
            }
        }
    });
}

#[tokio::test]
async fn page_separators_in_values_are_replaced_not_trusted() {
    let mut l = new_cdr(&legs()[0]);
    l.record.set("lastdata", "a\u{1f}b\u{1e}c\0d");
    on_every_backend!(|s, db| {
        s.insert_cdrs(std::slice::from_ref(&l)).await.unwrap();
        let page = s
            .cdr_page(&page_of(&CdrFilter::default(), None, 0, 10))
            .await
            .unwrap();
        let legs = page.legs().unwrap();
        assert_eq!(legs.len(), 1, "{:?}", db.backend);
        assert_eq!(legs[0].values[9], "a\u{fffd}b\u{fffd}c\u{fffd}d");
    });
}

/// (AcctId, src, lastdata, caller_name) of a leg.
fn export_fields(l: &PageLeg<'_>) -> (String, String, String, String) {
    (
        l.values[0].to_owned(),
        l.values[2].to_owned(),
        l.values[9].to_owned(),
        l.values[22].to_owned(),
    )
}

/// Every leg of an export, in order: its `export_fields`.
async fn export_all(
    s: &Store,
    f: &CdrFilter,
    after: Option<PageKey>,
    page: u32,
) -> Vec<(String, String, String, String)> {
    let mut rx = s.cdr_export(f.clone(), after, page);
    let mut out = Vec::new();
    while let Some(p) = rx.recv().await {
        let p = p.unwrap();
        assert!(
            p.leg_count() <= page as usize,
            "pages hold at most {page} legs"
        );
        out.extend(p.legs().unwrap().iter().map(export_fields));
    }
    out
}

#[tokio::test]
async fn export_streams_the_same_legs_as_pages_whatever_the_values_and_filters() {
    assert_eq!(ucm::cdr::FIELDS[9], "lastdata");
    assert_eq!(ucm::cdr::FIELDS[22], "caller_name");
    let mut data: Vec<NewCdr> = legs().iter().map(new_cdr).collect();
    // Values that COPY's text format escapes, and quotes for the literals.
    let awkward = [
        "tab\there",
        "new\nline",
        "back\\slash\\",
        "cr\rlf\r\n",
        "\u{8}\u{b}\u{c}",
        "\\N",
        "O'Brien \\' OR '1'='1",
        "Jürgen «ü»",
        "",
    ];
    for (i, v) in awkward.iter().enumerate() {
        let mut c = new_cdr(&legs()[i]);
        c.dedupe_key = format!("awkward{i}");
        c.record.set("lastdata", *v);
        c.record.set("caller_name", *v);
        data.push(c);
    }
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs(&data).await.unwrap();
        let name = |p: ucm::cdrapi::Pattern| CdrFilter {
            caller_name: Some(p),
            ..Default::default()
        };
        let filters = [
            CdrFilter::default(),
            CdrFilter {
                caller: parse_list("1@,999-1010").unwrap(),
                ..Default::default()
            },
            CdrFilter {
                from_ms: Some(T0 + 60_000),
                to_ms: Some(T0 + 240_000),
                min_billsec: Some(3),
                ..Default::default()
            },
            name(ucm::cdrapi::Pattern::Exact("O'Brien \\' OR '1'='1".into())),
            name(ucm::cdrapi::Pattern::Wildcard("back\\@".into())),
            name(ucm::cdrapi::Pattern::Wildcard("@'@".into())),
            name(ucm::cdrapi::Pattern::Exact("x' OR '1'='1".into())),
            // PostgreSQL refuses a NUL even as a parameter: matches nothing.
            name(ucm::cdrapi::Pattern::Exact("nul\0byte".into())),
        ];
        for f in &filters {
            let want: Vec<_> = {
                let page = s
                    .cdr_page(&PageQuery {
                        grouping: Grouping::Legs,
                        ..page_of(f, None, 0, 100_000)
                    })
                    .await
                    .unwrap();
                page.legs().unwrap().iter().map(export_fields).collect()
            };
            for page in [1, 7, 1000] {
                assert_eq!(
                    export_all(&s, f, None, page).await,
                    want,
                    "export of {f:?} in pages of {page} on {b:?}"
                );
            }
            // From a key: the legs after it.
            if want.len() > 3 {
                let legs_page = s
                    .cdr_page(&PageQuery {
                        grouping: Grouping::Legs,
                        ..page_of(f, None, 2, 1)
                    })
                    .await
                    .unwrap();
                let key = PageKey::of(&legs_page.legs().unwrap()[0]).unwrap();
                assert_eq!(
                    export_all(&s, f, Some(key), 5).await,
                    want[3..].to_vec(),
                    "export after a key on {b:?}"
                );
            }
        }
        let quoted = export_all(&s, &filters[3], None, 10).await;
        assert_eq!(quoted.len(), 1, "a quote in a filter is a value on {b:?}");
        assert!(export_all(&s, &filters[6], None, 10).await.is_empty());
        let values: Vec<String> = export_all(&s, &CdrFilter::default(), None, 1000)
            .await
            .into_iter()
            .map(|l| l.2)
            .collect();
        for v in awkward {
            assert!(values.iter().any(|x| x == v), "{v:?} round-trips on {b:?}");
        }
        // An export abandoned after its first page leaves the store usable.
        for _ in 0..3 {
            let mut rx = s.cdr_export(CdrFilter::default(), None, 1);
            assert!(rx.recv().await.unwrap().is_ok());
            drop(rx);
            let n = export_all(&s, &CdrFilter::default(), None, 1000)
                .await
                .len();
            assert_eq!(n, data.len(), "export after an abandoned one on {b:?}");
        }
    });
}

/// Sessions, in page order, of every entry `f` selects.
async fn sessions_of(s: &Store, f: &CdrFilter) -> Vec<(String, usize)> {
    let page = s.cdr_page(&page_of(f, None, 0, 100_000)).await.unwrap();
    let mut out: Vec<(String, usize)> = Vec::new();
    for l in page.legs().unwrap() {
        match out.last_mut() {
            Some((sess, n)) if sess == l.session() => *n += 1,
            _ => out.push((l.session().to_owned(), 1)),
        }
    }
    out
}

#[tokio::test]
async fn unfiltered_entries_follow_legs_inserted_changed_and_deleted() {
    let data = legs();
    on_every_backend!(|s, db| {
        let b = db.backend;
        store_legs(&s, &data).await;
        // Again: duplicates change nothing.
        store_legs(&s, &data).await;
        // A filter that keeps every leg takes the grouping path; the
        // unfiltered page reads the entry table. They must agree.
        let all = CdrFilter {
            min_billsec: Some(0),
            ..Default::default()
        };
        let check = |what: &'static str| {
            let s = &s;
            let all = &all;
            async move {
                let grouped = sessions_of(s, all).await;
                assert_eq!(
                    sessions_of(s, &CdrFilter::default()).await,
                    grouped,
                    "{what} on {b:?}"
                );
                for offset in [0, 1, 5, 17] {
                    let p = s
                        .cdr_page(&page_of(&CdrFilter::default(), None, offset, 3))
                        .await
                        .unwrap();
                    let q = s.cdr_page(&page_of(all, None, offset, 3)).await.unwrap();
                    assert_eq!(
                        p.legs().unwrap(),
                        q.legs().unwrap(),
                        "{what}, offset {offset} on {b:?}"
                    );
                }
                grouped
            }
        };
        let before = check("inserted").await;
        assert_eq!(before.len(), VALUES.len());
        // Every leg of one session deleted, one leg of another moved to a
        // new session, by hand.
        let gone = &data[0].session;
        let moved = data
            .iter()
            .find(|l| {
                l.session != data[0].session
                    && data.iter().filter(|m| m.session == l.session).count() > 1
            })
            .unwrap();
        let q = |v: &str| v.replace('\'', "''");
        store::testing::execute(
            db,
            &format!("DELETE FROM cdr WHERE \"session\" = '{}'", q(gone)),
        )
        .await
        .unwrap();
        store::testing::execute(
            db,
            &format!(
                "UPDATE cdr SET \"session\" = 'moved-away' WHERE dedupe_key = '{}'",
                q(&moved.key)
            ),
        )
        .await
        .unwrap();
        let after = check("deleted and moved").await;
        assert_eq!(
            after.len(),
            before.len(),
            "one entry gone, one new on {b:?}"
        );
        assert!(!after.iter().any(|(sess, _)| sess == gone));
        assert!(
            after
                .iter()
                .any(|(sess, n)| sess == "moved-away" && *n == 1)
        );
    });
}

/// Lists of 1000 and 5000 items of every kind (clients page with lists that
/// long): one expression per item made SQLite refuse the query ("Expression
/// tree is too large"). Pages, counts and exports agree with the pattern
/// rules on both backends.
#[tokio::test]
async fn long_lists_of_every_kind_work_and_agree_with_the_pattern_rules() {
    let data = legs();
    // Items that match some of the data, then filler of every kind.
    let matching = [
        "1001",
        "05303",
        "10@",
        "J_rgen",
        "1000-1010",
        "2079460000-2079460003",
        "12345678901234567890000-12345678901234567890999",
        "*97",
        "a*b",
    ];
    let long_list = |n: usize, with_zero: bool| -> String {
        let mut items: Vec<String> = matching.iter().map(|s| s.to_string()).collect();
        if with_zero {
            items.push("0-0".into());
        }
        let mut k = 0;
        while items.len() < n {
            // 15 % ranges and wildcards: at most 1000 in 5000 items.
            items.push(match k % 20 {
                0 => format!("7{k}@"),
                1 => format!("{}-{}", 400_000 + k * 10, 400_000 + k * 10 + 5),
                2 => format!("x{k}_y"),
                _ => format!("{}", 300_000 + k),
            });
            k += 1;
        }
        // Matching items spread through the list, not only at its start.
        items.rotate_left(n / 3);
        items.join(",")
    };
    on_every_backend!(|s, db| {
        let b = db.backend;
        store_legs(&s, &data).await;
        for n in [1000, 5000] {
            for with_zero in [false, true] {
                let text = long_list(n, with_zero);
                let list = parse_list(&text).unwrap();
                assert_eq!(list.len(), n);
                for field in ["src", "dst", "dstanswer"] {
                    let mut f = CdrFilter::default();
                    match field {
                        "src" => f.caller = list.clone(),
                        "dst" => f.callee = list.clone(),
                        _ => f.answered_by = list.clone(),
                    }
                    let pick = |l: &(String, String, String)| match field {
                        "src" => l.0.clone(),
                        "dst" => l.1.clone(),
                        _ => l.2.clone(),
                    };
                    let mut want: Vec<String> = data
                        .iter()
                        .map(|l| (l.src.clone(), l.dst.clone(), l.answered.clone()))
                        .map(|l| pick(&l))
                        .filter(|v| list_matches(&list, v))
                        .collect();
                    assert!(
                        !want.is_empty(),
                        "the data has {field} values the list matches"
                    );
                    let mut got: Vec<String> = select(&s, &f).await.iter().map(pick).collect();
                    got.sort();
                    want.sort();
                    assert_eq!(got, want, "{field}: {n} items (0-0: {with_zero}) on {b:?}");
                    // Sessions, their count and the export take the same filter.
                    let sessions = sessions_of(&s, &f).await;
                    let counted = s.cdr_entry_count(&f, Grouping::Sessions).await.unwrap();
                    assert_eq!(
                        counted,
                        sessions.len() as u64,
                        "count of {n} items on {b:?}"
                    );
                    let exported = export_all(&s, &f, None, 7).await;
                    assert_eq!(exported.len(), want.len(), "export of {n} items on {b:?}");
                }
            }
        }
    });
}

#[tokio::test]
async fn postgres_export_pages_are_cut_by_size_not_only_by_legs() {
    // 400 legs of about 1.5 KB: one page of 1000 legs by count, but
    // PostgreSQL's COPY stream is cut into pages of about 64 KB (memory per
    // export stays small whatever `cdrapi.export_page` says).
    let data: Vec<NewCdr> = (0..400)
        .map(|i| {
            let mut c = new_cdr(&legs()[i % legs().len()]);
            c.dedupe_key = format!("big{i}");
            c.start_ms = T0 + i as i64 * 1000;
            c.call_ms = c.start_ms;
            c.record.set("session", format!("big-{i:04}"));
            c.record
                .set("lastdata", format!("{i:04}-{}", "x".repeat(1500)));
            c
        })
        .collect();
    on_every_backend!(|s, db| {
        let b = db.backend;
        s.insert_cdrs(&data).await.unwrap();
        let mut rx = s.cdr_export(CdrFilter::default(), None, 1000);
        let (mut pages, mut largest) = (0, 0);
        let mut got = Vec::new();
        while let Some(p) = rx.recv().await {
            let p = p.unwrap();
            pages += 1;
            largest = largest.max(p.size());
            got.extend(
                p.legs()
                    .unwrap()
                    .iter()
                    .map(|l| l.values[9][..4].to_owned()),
            );
        }
        let want: Vec<String> = (0..400).map(|i| format!("{i:04}")).collect();
        assert_eq!(got, want, "every leg once, in order, on {b:?}");
        if b == Backend::Postgres {
            assert!(pages >= 8, "{pages} pages on {b:?}");
            assert!(largest < 64 * 1024 + 4096, "a page of {largest} bytes");
        } else {
            assert_eq!(pages, 1, "SQLite pages are keyset pages of `page` legs");
        }
    });
}

#[tokio::test]
async fn postgres_pages_are_planned_without_parallel_workers() {
    // The database is told that parallel plans cost nothing, as a server
    // with other defaults might: pbxgate's connections must still plan a
    // day page without workers (2 cores: a Gather made it slower).
    let rows = minute_calls();
    let dir = tempfile::tempdir().unwrap();
    for db in store::testing::databases(dir.path()).await {
        if db.backend != Backend::Postgres {
            continue;
        }
        store::testing::execute(
            &db,
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET parallel_setup_cost = 0', current_database()); \
             EXECUTE format('ALTER DATABASE %I SET parallel_tuple_cost = 0', current_database()); \
             EXECUTE format('ALTER DATABASE %I SET min_parallel_index_scan_size = 0', current_database()); \
             EXECUTE format('ALTER DATABASE %I SET min_parallel_table_scan_size = 0', current_database()); END $$",
        )
        .await
        .unwrap();
        let s = common::open(&db).await;
        s.insert_cdrs(&rows).await.unwrap();
        s.analyze().await.unwrap();
        let f = CdrFilter {
            caller: parse_list("1000-1049,12@").unwrap(),
            from_ms: Some(T0),
            to_ms: Some(T0 + 86_400_000),
            ..Default::default()
        };
        let plan = s.cdr_query_plan(&page_of(&f, None, 0, 1000)).await.unwrap();
        assert!(!plan.contains("Gather"), "parallel workers:\n{plan}");
        assert!(plan.contains("Index Only Scan using cdr_"), "{plan}");
        s.close().await;
    }
}
