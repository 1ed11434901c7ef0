//! What every store test file uses: a store per backend.

use store::testing::TestDb;
use store::{ConnectOptions, Store};

pub async fn open(db: &TestDb) -> Store {
    Store::connect(&db.url, &ConnectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{:?}: {e}", db.backend))
}

/// Runs the body once per backend (SQLite, and PostgreSQL when configured;
/// always under CI) on a fresh database, naming the backend on failure.
#[macro_export]
macro_rules! on_every_backend {
    (|$store:ident, $db:ident| $body:block) => {{
        let dir = tempfile::tempdir().unwrap();
        let dbs = store::testing::databases(dir.path()).await;
        for $db in &dbs {
            let $store = common::open($db).await;
            $body
            $store.close().await;
        }
    }};
}

/// Whether `plan` reads the CDR index `name` (`cdr_src`, `cdr_start_ms`,
/// ...): on PostgreSQL the table is partitioned by month (migration 0015),
/// so the plan names a partition's copy of it, such as
/// `cdr_p202612_src_start_ms_idx` or `cdr_default_src_start_ms_idx`.
#[allow(dead_code)]
pub fn uses_index(plan: &str, name: &str) -> bool {
    if plan.split_whitespace().any(|w| w == name) {
        return true;
    }
    let suffix = match name {
        "cdr_start_ms" => "_start_ms_src_dst_call_ms_session_idx",
        "cdr_src" => "_src_start_ms_idx",
        "cdr_dst" => "_dst_start_ms_idx",
        "cdr_end_ms" => "_end_ms_idx",
        "cdr_entry" => "_call_ms_session_start_ms_acctid_idx",
        _ => return false,
    };
    plan.split_whitespace().any(|w| {
        let Some(mid) = w.strip_prefix("cdr_").and_then(|w| w.strip_suffix(suffix)) else {
            return false;
        };
        mid == "default"
            || (mid.len() == 7
                && mid.starts_with('p')
                && mid[1..].bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A sequential scan of the CDR table or one of its partitions, in a
/// PostgreSQL plan; an empty partition (nothing to read: cost 0) aside.
#[allow(dead_code)]
pub fn scans_cdr_table(plan: &str) -> bool {
    plan.lines()
        .filter(|l| !l.contains("(cost=0.00..0.00 "))
        .any(|l| {
            l.split_once("Seq Scan on ")
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""))
                .is_some_and(|t| {
                    t == "cdr"
                        || t == "cdr_default"
                        || (t.starts_with("cdr_p") && t[5..].bytes().all(|b| b.is_ascii_digit()))
                })
        })
}
