//! CDR ingest rate: a recorded-style AMI event stream replayed through the
//! production path — codec (`asterisk::ami::codec::Decoder`) → calls
//! (`pbxgate::ingest::assemble`, fed every event, on the stream's clock: one
//! message per 50 µs) → legs (`pbxgate::ingest::flow`) → model
//! (`pbxgate::ingest::derive`) → store (`store::CdrStore::insert_cdrs`) —
//! into SQLite and into PostgreSQL.
//!
//! The stream is generated before timing, seeded and deterministic: `Cdr`
//! events shaped like those of the project's Asterisk 22 rig (internal,
//! outbound and inbound calls; ANSWERED / NO ANSWER / BUSY / FAILED), with
//! about 10% other events (`Newchannel`, `VarSet`, `Newstate`, `Hangup`) that
//! the ingest ignores. It is fed to the decoder in 64 KiB chunks, as a socket
//! read would deliver it.
//!
//! As in `src/ingest/mod.rs`, decoding and deriving run in one tokio task and
//! the store writes in another, joined by a bounded channel holding
//! `2 × BATCH_MAX` records (here: 2 batches of 5000). Every batch is one
//! `insert_cdrs` call (one transaction). Time runs from the first byte fed to
//! the last batch committed; afterwards `cdr_count` must equal the number of
//! CDRs generated (every record stored exactly once).
//!
//! Rows: SQLite (a file in a temporary directory, the store's production
//! pragmas), PostgreSQL (a fresh database on the server named by
//! `PBXGATE_TEST_POSTGRES_URL`, e.g. from `scripts/postgres.sh start`; skipped
//! when unset), and decode+derive alone without a store. Target: >= 20,000
//! CDRs/s per backend. On PostgreSQL the legs go to their monthly partition
//! (made before the run, as the hourly task makes them ahead). An extra
//! PostgreSQL row runs two pipelines at once over the same stream, each with
//! its own pool, as two nodes each ingesting over its own AMI connection: every
//! CDR must be stored once, and its wall time against the single row is the
//! cost of letting every node ingest (issue 20).
//!
//! The note of each backend row gives the share of the wall time the writer
//! spent inside `insert_cdrs` and the decoder task spent decoding and deriving.
//! Informational rows (`BENCH_DIAGNOSE`: unset = only when a target is missed,
//! `1` = always, `0` = never) show where the time goes: the decoder alone, and
//! per backend `insert_cdrs` alone on the first 50,000 CDRs (derived
//! beforehand, untimed) as the ingest calls it (batches of 5000), with batches
//! of 20 (the cost of a commit), with batches of 1000, and with two batches in
//! flight at once.
//!
//! Each row gets a fresh database, removed afterwards (PostgreSQL: `DROP
//! DATABASE` through `psql` when it is installed; otherwise the name is
//! printed).
//!
//! Environment: `BENCH_CDRS` (number of `Cdr` events, default 200000),
//! `BENCH_DIAGNOSE`, `PBXGATE_TEST_POSTGRES_URL`.
//! Run with `cargo bench -p pbxgate --bench ingest` or `scripts/bench`.
//! Exits non-zero (panics) if a record is lost or stored twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::ami_stream::{Batches, CHUNK, SEED, Stream, check_decoded, derive_batches, generate};
use common::db::Db;
use common::{diagnose, env_number};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asterisk::ami::codec::{DEFAULT_MAX_MESSAGE, Decoder, Frame};
use store::{Backend, CdrStore, NewCdr, Store};
use tokio::sync::mpsc;

/// CDRs per second each backend must sustain.
const TARGET_RATE: f64 = 20_000.0;
/// Records per `insert_cdrs` call: `BATCH_MAX` in src/ingest/mod.rs.
const BATCH: usize = 5000;
/// Batches the channel between the decoder task and the writer task holds
/// (production: `BATCH_MAX * 2` records).
const CHANNEL_BATCHES: usize = 2;
const POSTGRES_ENV: &str = "PBXGATE_TEST_POSTGRES_URL";
/// CDRs each informational store row writes (at most), to bound its run time.
const DIAGNOSE_CDRS: usize = 50_000;

// ---------------------------------------------------------------------------
// Measurements.

struct Row {
    name: String,
    cdrs: usize,
    batches: usize,
    secs: f64,
    /// Whether the row is held to the target.
    target: bool,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.cdrs as f64 / self.secs
        } else {
            0.0
        }
    }

    fn met(&self) -> bool {
        self.rate() >= TARGET_RATE
    }
}

fn decode_derive_only(stream: &Stream) -> Row {
    let start = Instant::now();
    let mut batches = Batches::new(stream.bytes.clone(), BATCH);
    let mut n = 0;
    let mut count = 0;
    for b in batches.by_ref() {
        n += b.len();
        count += 1;
        std::hint::black_box(b);
    }
    let secs = start.elapsed().as_secs_f64();
    check_decoded(&batches.stats, stream);
    assert_eq!(n, stream.cdrs);
    Row {
        name: "decode+derive only (no store)".into(),
        cdrs: n,
        batches: count,
        secs,
        target: false,
        note: "breakdown: codec + assemble + reduce + to_ucm, one thread".into(),
    }
}

fn decode_only(stream: &Stream) -> Row {
    let start = Instant::now();
    let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE);
    let mut cdrs = 0;
    for chunk in stream.bytes.chunks(CHUNK) {
        decoder.extend(chunk);
        while let Some(frame) = decoder.next_frame() {
            if let Frame::Message(m) = frame
                && m.event() == Some("Cdr")
            {
                cdrs += 1;
                std::hint::black_box(m);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(cdrs, stream.cdrs);
    Row {
        name: "info: decode only (codec, no derive)".into(),
        cdrs,
        batches: 0,
        secs,
        target: false,
        note: String::new(),
    }
}

/// The ingest pipeline: a decode+derive task feeding batches through a
/// bounded channel to a writer task. The note gives the share of the wall
/// time the writer spent inside `insert_cdrs` and the producer spent decoding
/// and deriving (not waiting on the channel).
async fn ingest(name: &str, store: &Store, stream: &Stream) -> Row {
    assert_eq!(store.cdr_count().await.unwrap(), 0, "a fresh database");
    let run = pipeline(store, stream).await;
    let (inserted, batches, store_busy, secs, decode_busy) = (
        run.inserted,
        run.batches,
        run.store_busy,
        run.secs,
        run.decode_busy,
    );
    assert_eq!(inserted, stream.cdrs as u64, "{name}: records inserted");
    let stored = store.cdr_count().await.unwrap();
    assert_eq!(
        stored, stream.cdrs as i64,
        "{name}: every CDR stored exactly once"
    );
    Row {
        name: name.into(),
        cdrs: stream.cdrs,
        batches,
        secs,
        target: true,
        note: format!(
            "verified: {stored} rows; writer busy {:.0}%, decoder busy {:.0}%",
            100.0 * store_busy.as_secs_f64() / secs,
            100.0 * decode_busy.as_secs_f64() / secs,
        ),
    }
}

/// Two nodes ingesting the same stream at once, each over its own AMI
/// connection and connection pool (issue 20): the dedupe key keeps one copy.
async fn two_nodes(name: &str, url: &str, store: &Store, stream: &Stream) -> Row {
    assert_eq!(store.cdr_count().await.unwrap(), 0, "a fresh database");
    let other = Store::connect(url, &store::ConnectOptions::default())
        .await
        .expect("the second node's store");
    let start = Instant::now();
    let (a, b) = tokio::join!(pipeline(store, stream), pipeline(&other, stream));
    let secs = start.elapsed().as_secs_f64();
    other.close().await;
    let stored = store.cdr_count().await.unwrap();
    assert_eq!(
        a.inserted + b.inserted,
        stream.cdrs as u64,
        "{name}: stored by one node each"
    );
    assert_eq!(
        stored, stream.cdrs as i64,
        "{name}: every CDR stored exactly once"
    );
    Row {
        name: name.into(),
        cdrs: stream.cdrs,
        batches: a.batches,
        secs,
        target: false,
        note: format!(
            "verified: {stored} rows, {} stored by one node and {} by the other; each node's pipeline {:.1} s / {:.1} s",
            a.inserted, b.inserted, a.secs, b.secs
        ),
    }
}

struct Run {
    inserted: u64,
    batches: usize,
    store_busy: Duration,
    secs: f64,
    decode_busy: Duration,
}

/// The production pipeline over `stream` into `store`.
async fn pipeline(store: &Store, stream: &Stream) -> Run {
    let bytes = stream.bytes.clone();
    let start = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Vec<NewCdr>>(CHANNEL_BATCHES);
    let producer = tokio::spawn(async move {
        let mut batches = Batches::new(bytes, BATCH);
        let mut busy = Duration::ZERO;
        loop {
            let t = Instant::now();
            let next = batches.next();
            busy += t.elapsed();
            let Some(batch) = next else { break };
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        (batches.stats, busy)
    });
    let writer_store = store.clone();
    // As `write_batches` in src/ingest/mod.rs: two batches in flight on
    // PostgreSQL, one on SQLite. "Busy" is the time at least one is in flight.
    let in_flight = match store.backend() {
        store::Backend::Postgres => 2,
        store::Backend::Sqlite => 1,
    };
    let writer = tokio::spawn(async move {
        let mut inserted = 0u64;
        let mut count = 0usize;
        let mut busy = Duration::ZERO;
        let mut writing: std::collections::VecDeque<tokio::task::JoinHandle<u64>> =
            std::collections::VecDeque::new();
        let mut since: Option<Instant> = None;
        while let Some(batch) = rx.recv().await {
            while writing.len() >= in_flight {
                let n = writing.pop_front().unwrap().await.expect("insert task");
                inserted += n;
                if writing.is_empty()
                    && let Some(t) = since.take()
                {
                    busy += t.elapsed();
                }
            }
            since.get_or_insert_with(Instant::now);
            let s = writer_store.clone();
            writing.push_back(tokio::spawn(async move {
                s.insert_cdrs(&batch)
                    .await
                    .unwrap_or_else(|e| panic!("insert_cdrs failed: {e}"))
            }));
            count += 1;
        }
        for w in writing {
            inserted += w.await.expect("insert task");
        }
        if let Some(t) = since.take() {
            busy += t.elapsed();
        }
        (inserted, count, busy)
    });
    let (inserted, batches, store_busy) = writer.await.expect("writer task");
    let secs = start.elapsed().as_secs_f64();
    let (stats, decode_busy) = producer.await.expect("producer task");
    check_decoded(&stats, stream);
    Run {
        inserted,
        batches,
        store_busy,
        secs,
        decode_busy,
    }
}

/// The monthly partitions of the stream's time (PostgreSQL; the migration
/// made those of the current months only), so that the legs go to theirs.
async fn months(store: &Store) {
    let first = common::ami_stream::FIRST_EPOCH * 1000;
    let months: Vec<i64> = (0..2)
        .filter_map(|m| pbxgate::ingest::history::month_start_ms(first, m))
        .collect();
    store::CdrHistoryStore::cdr_months_make(store, &months)
        .await
        .expect("the monthly partitions");
}

/// A store variant of the informational rows.
struct StoreOnly {
    batch_size: usize,
    /// Concurrent `insert_cdrs` callers (the ingest has one).
    writers: usize,
    note: &'static str,
}

const STORE_ONLY: &[StoreOnly] = &[
    StoreOnly {
        batch_size: BATCH,
        writers: 1,
        note: "as the ingest: 5000 per transaction",
    },
    StoreOnly {
        batch_size: 20,
        writers: 1,
        note: "one small INSERT per transaction, 250x the commits",
    },
    StoreOnly {
        batch_size: 1000,
        writers: 1,
        note: "5x the commits",
    },
    StoreOnly {
        batch_size: BATCH,
        writers: 2,
        note: "two insert_cdrs calls at a time",
    },
];

/// `insert_cdrs` alone on the first `limit` CDRs: records derived beforehand
/// (untimed); time runs from the first call to the last commit.
async fn store_only(
    name: &str,
    store: &Store,
    stream: &Stream,
    variant: &StoreOnly,
    limit: usize,
) -> Row {
    assert_eq!(store.cdr_count().await.unwrap(), 0, "a fresh database");
    let mut batches = derive_batches(stream, variant.batch_size, limit);
    let cdrs: usize = batches.iter().map(Vec::len).sum();
    let count = batches.len();
    batches.reverse();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let start = Instant::now();
    let writers: Vec<_> = (0..variant.writers)
        .map(|_| {
            let (store, queue) = (store.clone(), queue.clone());
            tokio::spawn(async move {
                let mut inserted = 0u64;
                loop {
                    let Some(batch) = queue.lock().unwrap().pop() else {
                        return inserted;
                    };
                    inserted += store
                        .insert_cdrs(&batch)
                        .await
                        .unwrap_or_else(|e| panic!("insert_cdrs failed: {e}"));
                }
            })
        })
        .collect();
    let mut inserted = 0;
    for w in writers {
        inserted += w.await.expect("writer task");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(inserted, cdrs as u64, "{name}: records inserted");
    assert_eq!(store.cdr_count().await.unwrap(), cdrs as i64);
    Row {
        name: format!(
            "info: {name} insert_cdrs, batch {}, {} writer{}",
            variant.batch_size,
            variant.writers,
            if variant.writers == 1 { "" } else { "s" }
        ),
        cdrs,
        batches: count,
        secs,
        target: false,
        note: variant.note.into(),
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<52} {:>8} {:>8} {:>8} {:>10} {:>11}  notes",
        "backend / scenario",
        "CDRs",
        "batches",
        "seconds",
        "CDRs/s",
        format!(">= {}k/s", TARGET_RATE as u64 / 1000)
    );
    for r in rows {
        let met = if r.cdrs == 0 {
            "-"
        } else if r.met() {
            "yes"
        } else {
            "no"
        };
        let met = if r.target || r.cdrs == 0 {
            met.to_string()
        } else {
            format!("({met})")
        };
        if r.cdrs == 0 {
            println!(
                "{:<52} {:>8} {:>8} {:>8} {:>10} {:>11}  {}",
                r.name, "-", "-", "-", "-", met, r.note
            );
            continue;
        }
        println!(
            "{:<52} {:>8} {:>8} {:>8.2} {:>10.0} {:>11}  {}",
            r.name,
            r.cdrs,
            r.batches,
            r.secs,
            r.rate(),
            met,
            r.note
        );
    }
}

fn main() {
    let cdrs = env_number("BENCH_CDRS", 200_000, 1, 10_000_000) as usize;
    let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty());
    println!(
        "pbxgate CDR ingest benchmark: AMI stream -> codec -> derive -> store, batches of {BATCH}, \
         {CHANNEL_BATCHES} batches in flight; 2-worker runtime on {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let t = Instant::now();
    let stream = generate(cdrs);
    println!(
        "generated: {} Cdr events + {} other events, {:.1} MB, in {:.1} s (seed {SEED:#x})",
        stream.cdrs,
        stream.others,
        stream.bytes.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-ingest")
        .enable_all()
        .build()
        .expect("cannot build the runtime");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");

    let mut rows = Vec::new();
    let mut backends = vec![Backend::Sqlite];
    println!("running: decode+derive only");
    let breakdown = decode_derive_only(&stream);

    for kind in [Backend::Sqlite, Backend::Postgres] {
        if kind == Backend::Postgres && admin_url.is_none() {
            rows.push(Row {
                name: "PostgreSQL".into(),
                cdrs: 0,
                batches: 0,
                secs: 0.0,
                target: true,
                note: format!(
                    "SKIPPED: set {POSTGRES_ENV}=<admin URL> (`scripts/postgres.sh start` prints one)"
                ),
            });
            continue;
        }
        if kind == Backend::Postgres {
            backends.push(kind);
        }
        println!("running: {} pipeline", kind.name());
        rows.push(rt.block_on(async {
            let db = Db::create(kind, dir.path(), admin_url.as_deref()).await;
            months(&db.store).await;
            let row = ingest(kind.name(), &db.store, &stream).await;
            db.remove().await;
            row
        }));
        if kind == Backend::Postgres {
            println!("running: PostgreSQL, two nodes ingesting the same stream");
            rows.push(rt.block_on(async {
                let db = Db::create(kind, dir.path(), admin_url.as_deref()).await;
                months(&db.store).await;
                let row = two_nodes(
                    "PostgreSQL, 2 nodes, same stream",
                    &db.url,
                    &db.store,
                    &stream,
                )
                .await;
                db.remove().await;
                row
            }));
        }
    }
    rows.push(breakdown);

    let all_met = rows
        .iter()
        .filter(|r| r.target)
        .all(|r| r.cdrs > 0 && r.met());
    let mut extra = Vec::new();
    if diagnose(all_met) {
        println!("running: decode only");
        extra.push(decode_only(&stream));
        let limit = cdrs.min(DIAGNOSE_CDRS);
        for &kind in &backends {
            for variant in STORE_ONLY {
                println!(
                    "running: {} insert_cdrs only, batch {}, {} writer(s), first {limit} CDRs",
                    kind.name(),
                    variant.batch_size,
                    variant.writers
                );
                extra.push(rt.block_on(async {
                    let db = Db::create(kind, dir.path(), admin_url.as_deref()).await;
                    let row = store_only(kind.name(), &db.store, &stream, variant, limit).await;
                    db.remove().await;
                    row
                }));
            }
        }
    }

    println!();
    print_table(&rows);
    for r in rows.iter().filter(|r| r.target && r.cdrs > 0) {
        println!(
            "target: {} >= {} CDRs/s: {} ({:.0} CDRs/s)",
            r.name,
            TARGET_RATE as u64,
            if r.met() { "MET" } else { "NOT MET" },
            r.rate()
        );
    }
    if !extra.is_empty() {
        println!(
            "\ninformational rows (not part of the target; BENCH_DIAGNOSE=0 skips them, =1 always runs them):"
        );
        print_table(&extra);
    }
}
