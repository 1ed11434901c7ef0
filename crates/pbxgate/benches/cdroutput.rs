//! CDR Real-Time Output: generated CDRs (the ingest benchmark's seeded AMI
//! stream, decoded and derived as the ingest does) stored through the
//! ingest's store path (`pbxgate::ingest::insert`: queued for the receiver in
//! the storing transaction, the worker woken) and pushed by the production
//! outbox (`pbxgate::outbox::Outbox`, its real TCP and HTTPS transports) to a
//! local receiver in this process, per backend (SQLite; PostgreSQL when
//! `PBXGATE_TEST_POSTGRES_URL` is set).
//!
//! Rows, each on a fresh database:
//! - baseline: the same records stored without an outbox (`insert_cdrs`);
//! - throughput: records stored as fast as the store takes them (batches of
//!   5000, as the ingest writes under load) while the outbox pushes them
//!   (`batch` = 1000 per write / per HTTP body); time from the first insert
//!   to the last record received. Targets: TCP >= 20,000 CDRs/s, HTTPS
//!   (batched) >= 5,000 CDRs/s;
//! - latency at 100 CDRs/s: one record stored every 10 ms; from the moment
//!   the ingest hands the record to the store to its receipt (p50/p99;
//!   target p99 <= 50 ms). And the same through the whole ingest (AMI `Cdr`
//!   event emitted on a fake AMI connection -> `ingest::Ingest` -> store ->
//!   outbox -> receiver), which includes the ingest's wait for a call to be
//!   over (`ingest::assemble::GRACE`, 1 s, so that a call's legs are reduced
//!   together; plus its 200 ms tick);
//! - catch-up: a backlog of `BENCH_BACKLOG` records (default 1,000,000)
//!   queued while no worker runs, then the outbox started; time until all are
//!   received.
//!
//! Every row checks that each record arrived exactly once (count and the
//! last AcctId); the benchmark fails (panics) otherwise.
//!
//! Environment: `BENCH_CDRS` (records of the throughput rows, default
//! 200000), `BENCH_LATENCY_CDRS` (default 1000), `BENCH_BACKLOG` (default
//! 1000000), `BENCH_BACKENDS` (sqlite,postgres), `PBXGATE_TEST_POSTGRES_URL`.
//! Run with `cargo bench -p pbxgate --bench cdroutput` or `scripts/bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asterisk::ami::codec::{DEFAULT_MAX_MESSAGE, Decoder, Frame};
use asterisk::pbx::Manager;
use asterisk::pbx::fake::FakeManager;
use common::ami_stream::{SEED, derive_batches, generate};
use common::db::Db;
use common::env_number;
use pbxgate::config::Secret;
use pbxgate::config::cdr_output::{CdrOutputSettings, Delivery, ReceiverSettings};
use pbxgate::outbox::Outbox;
use store::{Backend, CdrStore, NewCdr};
use tokio::io::AsyncReadExt;

/// As the server (src/main.rs): the allocator is part of what is measured.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POSTGRES_ENV: &str = "PBXGATE_TEST_POSTGRES_URL";
const TCP_TARGET: f64 = 20_000.0;
const HTTPS_TARGET: f64 = 5_000.0;
const P99_TARGET_MS: f64 = 50.0;
/// Records per write (TCP) or per body (HTTPS) in the throughput rows
/// (`BENCH_OUTPUT_BATCH`).
fn output_batch() -> u32 {
    env_number("BENCH_OUTPUT_BATCH", 1000, 1, 10_000) as u32
}
const STORE_BATCH: usize = 5000;

// ---------------------------------------------------------------------------
// Receivers.

/// What a receiver counts; in latency mode also when each `uniqueid` came.
#[derive(Default)]
struct Received {
    records: AtomicU64,
    last_acctid: AtomicU64,
    latency_mode: std::sync::atomic::AtomicBool,
    arrivals: Mutex<HashMap<String, Instant>>,
}

/// The value of `"key":"…"` at each occurrence in `text`.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let needle = format!("\"{key}\":\"");
    text.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &text[i + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

impl Received {
    fn take(&self, text: &str) {
        let ids = values(text, "AcctId");
        if let Some(last) = ids.last().and_then(|v| v.parse::<u64>().ok()) {
            self.last_acctid.fetch_max(last, Ordering::SeqCst);
        }
        if self.latency_mode.load(Ordering::SeqCst) {
            let now = Instant::now();
            let mut a = self.arrivals.lock().unwrap();
            for u in values(text, "uniqueid") {
                a.entry(u.to_owned()).or_insert(now);
            }
        }
        self.records.fetch_add(ids.len() as u64, Ordering::SeqCst);
    }

    fn reset(&self, latency: bool) {
        self.records.store(0, Ordering::SeqCst);
        self.last_acctid.store(0, Ordering::SeqCst);
        self.latency_mode.store(latency, Ordering::SeqCst);
        self.arrivals.lock().unwrap().clear();
    }

    async fn wait(&self, n: u64, limit: Duration) -> Instant {
        let start = Instant::now();
        loop {
            let have = self.records.load(Ordering::SeqCst);
            if have >= n {
                return Instant::now();
            }
            assert!(
                start.elapsed() < limit,
                "only {have} of {n} records received within {limit:?}"
            );
            if std::env::var_os("BENCH_TRACE").is_some() && start.elapsed().as_millis() % 2000 < 3 {
                eprintln!("  waiting: {have} of {n} received");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A TCP receiver of JSON lines (records split across reads are joined at
/// line ends).
async fn tcp_receiver(got: Arc<Received>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let got = got.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let mut carry: Vec<u8> = Vec::new();
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    carry.extend_from_slice(&buf[..n]);
                    if let Some(end) = carry.iter().rposition(|b| *b == b'\n') {
                        let rest = carry.split_off(end + 1);
                        got.take(std::str::from_utf8(&carry).unwrap());
                        carry = rest;
                    }
                }
            });
        }
    });
    port
}

/// An HTTPS receiver of JSON batches (`POST /cdr`); returns its port and
/// certificate (PEM).
async fn https_receiver(got: Arc<Received>) -> (u16, String) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = key.cert.pem();
    let config = axum_server::tls_rustls::RustlsConfig::from_pem(
        cert.clone().into_bytes(),
        key.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let app = axum::Router::new()
        .route(
            "/cdr",
            axum::routing::post(move |body: axum::body::Bytes| {
                let got = got.clone();
                async move {
                    got.take(std::str::from_utf8(&body).unwrap());
                    axum::http::StatusCode::OK
                }
            }),
        )
        // Batches of thousands of records are larger than axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::disable());
    tokio::spawn(async move {
        axum_server::from_tcp_rustls(listener, config)
            .unwrap()
            .serve(app.into_make_service())
            .await
            .unwrap();
    });
    (port, cert)
}

// ---------------------------------------------------------------------------
// The outbox under test.

fn receiver(
    delivery: Delivery,
    port: u16,
    ca: Option<&std::path::Path>,
    batch: u32,
) -> ReceiverSettings {
    ReceiverSettings {
        name: delivery.as_str().to_owned(),
        delivery,
        address: if delivery == Delivery::Tcp {
            "127.0.0.1".into()
        } else {
            "localhost".into()
        },
        port,
        path: "/cdr".into(),
        format: ucm::cdrapi::Format::Json,
        username: String::new(),
        password: Secret::default(),
        signing_secret: if delivery == Delivery::Https {
            Secret::new("bench-signing-secret-0123456789")
        } else {
            Secret::default()
        },
        tls_verify: true,
        ca_file: ca.map(std::path::Path::to_path_buf),
        batch,
        grouped: false,
        only_answered: false,
        directions: Vec::new(),
        max_backlog: 10_000_000,
        max_age: None,
        timeout: Duration::from_secs(30),
    }
}

fn settings(r: ReceiverSettings) -> CdrOutputSettings {
    CdrOutputSettings {
        enabled: true,
        lease: Duration::from_secs(15),
        receivers: vec![r],
    }
}

fn options() -> ucm::cdrapi::encode::Options {
    ucm::cdrapi::encode::Options {
        profile: ucm::cdrapi::encode::Profile::Ucm630x,
        ..Default::default()
    }
}

/// Copies of `records` with keys of their own (`#copy`), for a backlog
/// larger than the generated stream.
fn copies(records: &[NewCdr], copy: usize) -> Vec<NewCdr> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.dedupe_key = format!("{}#{copy}", r.dedupe_key);
            r
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Rows.

struct Row {
    name: String,
    cdrs: u64,
    secs: f64,
    /// (target, rate or ms, met) of the row's main figure.
    figure: String,
    met: Option<bool>,
    note: String,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn baseline(
    kind: Backend,
    dir: &std::path::Path,
    admin: Option<&str>,
    batches: &[Vec<NewCdr>],
) -> Row {
    let db = Db::create(kind, dir, admin).await;
    let n: usize = batches.iter().map(Vec::len).sum();
    let t = Instant::now();
    for b in batches {
        db.store.insert_cdrs(b).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(db.store.cdr_count().await.unwrap(), n as i64);
    db.remove().await;
    Row {
        name: format!("{}: store alone, no outbox (baseline)", kind.name()),
        cdrs: n as u64,
        secs,
        figure: format!("{:.0}/s", n as f64 / secs),
        met: None,
        note: format!("batches of {STORE_BATCH}"),
    }
}

/// Stores `batches` through the ingest's path while the outbox pushes them.
async fn throughput(
    kind: Backend,
    dir: &std::path::Path,
    admin: Option<&str>,
    batches: &[Vec<NewCdr>],
    r: ReceiverSettings,
    got: &Arc<Received>,
    baseline_rate: f64,
) -> Row {
    let delivery = r.delivery;
    let target = if delivery == Delivery::Tcp {
        TCP_TARGET
    } else {
        HTTPS_TARGET
    };
    let db = Db::create(kind, dir, admin).await;
    got.reset(false);
    let outbox = Outbox::start(&db.store, &settings(r), options(), "bench");
    let queue = outbox.queue();
    let n: u64 = batches.iter().map(|b| b.len() as u64).sum();
    let t = Instant::now();
    for b in batches {
        pbxgate::ingest::insert(&db.store, b, &queue).await.unwrap();
    }
    let stored = t.elapsed().as_secs_f64();
    let done = got.wait(n, Duration::from_secs(900)).await;
    let secs = done.duration_since(t).as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.records.load(Ordering::SeqCst), n, "each record once");
    assert_eq!(got.last_acctid.load(Ordering::SeqCst), n, "the last AcctId");
    outbox.stop(Duration::from_secs(5)).await;
    db.remove().await;
    let rate = n as f64 / secs;
    let store_rate = n as f64 / stored;
    Row {
        name: format!(
            "{}: stored + pushed, {} batch {}",
            kind.name(),
            delivery.as_str(),
            output_batch()
        ),
        cdrs: n,
        secs,
        figure: format!("{rate:.0}/s (>= {:.0}k)", target / 1000.0),
        met: Some(rate >= target),
        note: format!(
            "storing with queuing {store_rate:.0}/s = {:.2}x the baseline",
            store_rate / baseline_rate
        ),
    }
}

/// One record every 10 ms through `pbxgate::ingest::insert`; ms from the
/// insert call to receipt.
async fn latency_stored(
    kind: Backend,
    dir: &std::path::Path,
    admin: Option<&str>,
    records: &[NewCdr],
    r: ReceiverSettings,
    got: &Arc<Received>,
) -> Row {
    let delivery = r.delivery;
    let db = Db::create(kind, dir, admin).await;
    got.reset(true);
    let outbox = Outbox::start(&db.store, &settings(r), options(), "bench");
    let queue = outbox.queue();
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(records.len());
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for rec in records {
        tick.tick().await;
        sent.push((rec.record.get("uniqueid").to_owned(), Instant::now()));
        pbxgate::ingest::insert(&db.store, std::slice::from_ref(rec), &queue)
            .await
            .unwrap();
    }
    got.wait(records.len() as u64, Duration::from_secs(60))
        .await;
    outbox.stop(Duration::from_secs(5)).await;
    db.remove().await;
    latency_row(
        format!(
            "{}: stored -> received at 100/s, {}",
            kind.name(),
            delivery.as_str()
        ),
        &sent,
        got,
        true,
        "from the ingest's insert call to receipt",
    )
}

fn latency_row(
    name: String,
    sent: &[(String, Instant)],
    got: &Received,
    target: bool,
    note: &str,
) -> Row {
    let arrivals = got.arrivals.lock().unwrap();
    let mut ms: Vec<f64> = sent
        .iter()
        .map(|(u, at)| {
            let came = arrivals
                .get(u)
                .unwrap_or_else(|| panic!("uniqueid {u} never received"));
            came.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&ms, 0.50), percentile(&ms, 0.99));
    Row {
        name,
        cdrs: sent.len() as u64,
        secs: f64::NAN,
        figure: format!("p50 {p50:.1} ms, p99 {p99:.1} ms"),
        met: target.then_some(p99 <= P99_TARGET_MS),
        note: format!(
            "{note}; max {:.1} ms",
            ms.last().copied().unwrap_or(f64::NAN)
        ),
    }
}

/// The whole ingest: `Cdr` events on a fake AMI connection, one every 10 ms.
async fn latency_from_event(
    kind: Backend,
    dir: &std::path::Path,
    admin: Option<&str>,
    events: &[asterisk::ami::Message],
    r: ReceiverSettings,
    got: &Arc<Received>,
) -> Row {
    let delivery = r.delivery;
    let db = Db::create(kind, dir, admin).await;
    got.reset(true);
    let outbox = Outbox::start(&db.store, &settings(r), options(), "bench");
    let fake = FakeManager::new();
    fake.set_state(asterisk::ConnState::Up);
    let manager: Arc<dyn Manager> = fake.clone();
    let ingest = pbxgate::ingest::Ingest::start(
        &manager,
        db.store.clone(),
        jiff::tz::TimeZone::UTC,
        None,
        None,
        outbox.queue(),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut sent = Vec::with_capacity(events.len());
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for e in events {
        tick.tick().await;
        sent.push((e.get("UniqueID").unwrap_or("").to_owned(), Instant::now()));
        fake.emit(e.clone());
    }
    got.wait(events.len() as u64, Duration::from_secs(60)).await;
    ingest.stop(Duration::from_secs(5)).await;
    outbox.stop(Duration::from_secs(5)).await;
    db.remove().await;
    latency_row(
        format!(
            "{}: AMI Cdr event -> received at 100/s, {}",
            kind.name(),
            delivery.as_str()
        ),
        &sent,
        got,
        false,
        "includes the ingest's 1 s wait for the call to be over and its 200 ms tick",
    )
}

/// A backlog queued with no worker running, then the outbox started.
async fn catch_up(
    kind: Backend,
    dir: &std::path::Path,
    admin: Option<&str>,
    records: &[NewCdr],
    backlog: usize,
    r: ReceiverSettings,
    got: &Arc<Received>,
) -> Row {
    let delivery = r.delivery;
    let name = r.name.clone();
    let db = Db::create(kind, dir, admin).await;
    got.reset(false);
    let t = Instant::now();
    let mut queued = 0usize;
    let mut copy = 0;
    while queued < backlog {
        let part = copies(&records[..records.len().min(backlog - queued)], copy);
        for b in part.chunks(STORE_BATCH) {
            db.store
                .insert_cdrs_queued(b, std::slice::from_ref(&name), 0)
                .await
                .unwrap();
        }
        queued += part.len();
        copy += 1;
    }
    let fill = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let outbox = Outbox::start(&db.store, &settings(r), options(), "bench");
    let done = got.wait(backlog as u64, Duration::from_secs(3600)).await;
    let secs = done.duration_since(t).as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        got.records.load(Ordering::SeqCst),
        backlog as u64,
        "each record once"
    );
    outbox.stop(Duration::from_secs(5)).await;
    db.remove().await;
    Row {
        name: format!(
            "{}: catch-up of a backlog, {} batch {}",
            kind.name(),
            delivery.as_str(),
            output_batch()
        ),
        cdrs: backlog as u64,
        secs,
        figure: format!("{:.0}/s", backlog as f64 / secs),
        met: None,
        note: format!("backlog queued in {fill:.1} s beforehand"),
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<62} {:>9} {:>8}  {:<34} {:>4}  notes",
        "backend: scenario", "CDRs", "seconds", "result (target)", "met"
    );
    for r in rows {
        println!(
            "{:<62} {:>9} {:>8}  {:<34} {:>4}  {}",
            r.name,
            r.cdrs,
            if r.secs.is_nan() {
                "-".to_owned()
            } else {
                format!("{:.2}", r.secs)
            },
            r.figure,
            match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            },
            r.note
        );
    }
}

fn main() {
    if std::env::var_os("BENCH_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("debug,sqlx=warn,hyper=warn,reqwest=warn,rustls=warn")
            .init();
    }
    let cdrs = env_number("BENCH_CDRS", 200_000, 1000, 5_000_000) as usize;
    let latency_cdrs = env_number("BENCH_LATENCY_CDRS", 1000, 10, 100_000) as usize;
    let backlog = env_number("BENCH_BACKLOG", 1_000_000, 1000, 20_000_000) as usize;
    let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty());
    let wanted = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!(
        "pbxgate CDR Real-Time Output benchmark: ingest store path -> outbox -> local TCP / HTTPS receiver; \
         2-worker runtime on {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    let t = Instant::now();
    let stream = generate(cdrs);
    let batches = derive_batches(&stream, STORE_BATCH, cdrs);
    let records: Vec<NewCdr> = batches.iter().flatten().cloned().collect();
    // The first Cdr events as messages, for the whole-ingest latency rows.
    let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE);
    decoder.extend(&stream.bytes[..stream.bytes.len().min(latency_cdrs * 2000)]);
    let mut events = Vec::new();
    while let Some(frame) = decoder.next_frame() {
        if let Frame::Message(m) = frame
            && m.event() == Some("Cdr")
            && events.len() < latency_cdrs
        {
            events.push(m);
        }
    }
    println!(
        "generated: {} records from {} Cdr events in {:.1} s (seed {SEED:#x})",
        records.len(),
        stream.cdrs,
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-cdroutput")
        .enable_all()
        .build()
        .expect("cannot build the runtime");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let mut rows = Vec::new();
    rt.block_on(async {
        let tcp_got = Arc::new(Received::default());
        let https_got = Arc::new(Received::default());
        let tcp_port = tcp_receiver(tcp_got.clone()).await;
        let (https_port, cert) = https_receiver(https_got.clone()).await;
        let ca = dir.path().join("receiver.pem");
        std::fs::write(&ca, cert).unwrap();
        let tcp = |batch| receiver(Delivery::Tcp, tcp_port, None, batch);
        let https = |batch| receiver(Delivery::Https, https_port, Some(&ca), batch);
        for kind in [Backend::Sqlite, Backend::Postgres] {
            let short = match kind {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            };
            if !wanted.split(',').any(|w| w.trim() == short) {
                continue;
            }
            if kind == Backend::Postgres && admin_url.is_none() {
                println!("PostgreSQL rows SKIPPED: set {POSTGRES_ENV}=<admin URL> (`scripts/postgres.sh start` prints one)");
                continue;
            }
            let admin = admin_url.as_deref();
            let d = dir.path();
            println!("running: {} baseline", kind.name());
            let base = baseline(kind, d, admin, &batches).await;
            let base_rate = base.cdrs as f64 / base.secs;
            rows.push(base);
            println!("running: {} throughput", kind.name());
            rows.push(throughput(kind, d, admin, &batches, tcp(output_batch()), &tcp_got, base_rate).await);
            rows.push(throughput(kind, d, admin, &batches, https(output_batch()), &https_got, base_rate).await);
            println!("running: {} latency", kind.name());
            let few = &records[..latency_cdrs.min(records.len())];
            rows.push(latency_stored(kind, d, admin, few, tcp(100), &tcp_got).await);
            rows.push(latency_stored(kind, d, admin, few, https(100), &https_got).await);
            rows.push(latency_from_event(kind, d, admin, &events, tcp(100), &tcp_got).await);
            println!("running: {} catch-up of {backlog}", kind.name());
            rows.push(catch_up(kind, d, admin, &records, backlog, tcp(output_batch()), &tcp_got).await);
            rows.push(catch_up(kind, d, admin, &records, backlog, https(output_batch()), &https_got).await);
        }
    });
    println!();
    print_table(&rows);
    if rows.iter().any(|r| r.met == Some(false)) {
        println!("\nsome targets were missed (rows marked NO)");
    }
}
