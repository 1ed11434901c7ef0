//! CDR ingest: the AMI `Cdr` events of each call are collected until the call
//! is over ([`assemble`]), reduced to the legs of one UCM entry ([`flow`]) and
//! written in batches (one transaction per batch, deduplicated on a stable
//! key), so a burst of calls costs few writes.

pub mod assemble;
pub mod csv;
pub mod derive;
pub mod flow;
pub mod history;
pub mod recording_desc;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use asterisk::ami::Message;
use asterisk::pbx::Manager;
use store::{CdrStore, NewCdr, Store};

use crate::outbox::Queue;
use tokio::sync::{Notify, broadcast, mpsc, watch};

/// Most records written in one transaction.
const BATCH_MAX: usize = 5000;

/// The running ingest. [`Ingest::stop`] stops reading events and waits until
/// every record already read is stored.
pub struct Ingest {
    stop: watch::Sender<bool>,
    writer: tokio::task::JoinHandle<()>,
    stats: Arc<Stats>,
}

/// What the admin Status page shows of the ingest.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from AMI and not stored yet.
    pending: AtomicU64,
    /// When a batch was last stored (Unix ms; 0: never).
    last_stored_ms: AtomicI64,
    /// The last failed write: when (Unix ms) and why.
    last_error: std::sync::Mutex<Option<(i64, String)>>,
}

impl Stats {
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn last_stored_ms(&self) -> Option<i64> {
        Some(self.last_stored_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    pub fn last_error(&self) -> Option<(i64, String)> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl Ingest {
    /// `describe`: where the recordings named by the CDRs are, to fill
    /// `recordfiles_desc` (`None`: left empty).
    pub fn start(
        ami: &Arc<dyn Manager>,
        store: Store,
        tz: jiff::tz::TimeZone,
        cdr_csv: Option<PathBuf>,
        describe: Option<recording_desc::Describer>,
        queue: Queue,
    ) -> Ingest {
        let (tx, rx) = mpsc::channel::<Vec<NewCdr>>(BATCH_MAX);
        let (stop, stop_rx) = watch::channel(false);
        let missed = Arc::new(Notify::new());
        let stats = Arc::new(Stats::default());
        if let Some(path) = cdr_csv {
            let recovery = Recovery {
                ami: ami.clone(),
                store: store.clone(),
                tz: tz.clone(),
                path,
                describe: describe.clone(),
                queue: queue.clone(),
            };
            tokio::spawn(recover_on_connect(
                recovery,
                missed.clone(),
                stop_rx.clone(),
            ));
        }
        tokio::spawn(read_events(
            ami.subscribe(),
            ami.state(),
            tx,
            tz,
            missed,
            stop_rx,
            stats.clone(),
        ));
        let writer = tokio::spawn(write_batches(rx, store, stats.clone(), describe, queue));
        Ingest {
            stop,
            writer,
            stats,
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.writer).await.is_err() {
            tracing::error!("CDR ingest did not finish storing within the shutdown grace time");
        }
    }
}

/// How often finished calls are looked for.
const TICK: Duration = Duration::from_millis(200);

async fn read_events(
    mut events: broadcast::Receiver<Arc<Message>>,
    mut state: watch::Receiver<asterisk::ConnState>,
    tx: mpsc::Sender<Vec<NewCdr>>,
    tz: jiff::tz::TimeZone,
    missed: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let mut calls = assemble::Assembler::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            e = events.recv() => e,
            _ = tick.tick() => {
                let done = calls.finished(std::time::Instant::now());
                if !send_calls(done, &tx, &tz, &stats).await {
                    return;
                }
                continue;
            }
            r = state.changed() => {
                if r.is_err() || !state.borrow_and_update().is_up() {
                    calls.forget_channels();
                }
                continue;
            }
            _ = stop.changed() => {
                // Stopping: every call held is stored as far as it got.
                send_calls(calls.drain(), &tx, &tz, &stats).await;
                return;
            }
        };
        let now = std::time::Instant::now();
        match next {
            Ok(m) if m.event() == Some("Cdr") => {
                stats.pending.fetch_add(1, Ordering::Relaxed);
                calls.add(derive::AsteriskCdr::from_ami(&m), now);
            }
            Ok(m) => calls.observe(&m, now),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                // The same catch-up as after a reconnection fills the gap;
                // channel events were missed too.
                tracing::warn!(
                    missed = n,
                    "CDR ingest fell behind the AMI event stream; recovering from the CSV"
                );
                calls.forget_channels();
                missed.notify_one();
            }
            Err(broadcast::error::RecvError::Closed) => {
                send_calls(calls.drain(), &tx, &tz, &stats).await;
                return;
            }
        }
    }
}

/// Hands finished calls to the writer, each as one unit (its legs land in
/// one batch, AcctIds in order). False when the writer is gone.
async fn send_calls(
    done: Vec<assemble::Finished>,
    tx: &mpsc::Sender<Vec<NewCdr>>,
    tz: &jiff::tz::TimeZone,
    stats: &Stats,
) -> bool {
    for f in done {
        let records = records_of(&f.call, tz);
        // CDRs merged away or left out (helper channels) are done with.
        let taken = f.call.cdr_count as u64;
        stats.pending.fetch_sub(
            taken.saturating_sub(records.len() as u64),
            Ordering::Relaxed,
        );
        if records.is_empty() {
            tracing::debug!(
                linkedid = f.linkedid,
                "no call in these CDRs (helper channels)"
            );
            continue;
        }
        let n = records.len() as u64;
        if tx.send(records).await.is_err() {
            stats.pending.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
    }
    true
}

/// The stored records of a call's legs.
pub fn records_of(call: &flow::Call, tz: &jiff::tz::TimeZone) -> Vec<NewCdr> {
    call.legs
        .iter()
        .map(|l| derive::to_ucm_leg(&l.cdr, &l.key, &call.owner, tz))
        .collect()
}

async fn write_batches(
    mut rx: mpsc::Receiver<Vec<NewCdr>>,
    store: Store,
    stats: Arc<Stats>,
    describe: Option<recording_desc::Describer>,
    queue: Queue,
) {
    // PostgreSQL takes two batches at once (one is encoded while the server
    // writes the other), SQLite has a single writer connection anyway.
    // AcctIds then follow arrival order per batch, not across two batches.
    let in_flight = match store.backend() {
        store::Backend::Postgres => 2,
        store::Backend::Sqlite => 1,
    };
    let mut writing: std::collections::VecDeque<tokio::task::JoinHandle<()>> =
        std::collections::VecDeque::new();
    let mut batch: Vec<NewCdr> = Vec::with_capacity(BATCH_MAX);
    let mut open = true;
    loop {
        if batch.is_empty() {
            if !open {
                break;
            }
            match rx.recv().await {
                Some(c) => batch.extend(c),
                None => break,
            }
        }
        // Group commit: what is already waiting joins the batch, and so does
        // what arrives while the previous batches are being written; a call
        // that finds the writer idle is written at once (no fixed wait, so
        // the CDR output pushes it within milliseconds).
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(c) => batch.extend(c),
                Err(_) => break,
            }
        }
        while writing.len() >= in_flight {
            let Some(oldest) = writing.front_mut() else {
                break;
            };
            tokio::select! {
                _ = oldest => {
                    writing.pop_front();
                }
                c = rx.recv(), if open && batch.len() < BATCH_MAX => match c {
                    Some(c) => batch.extend(c),
                    None => open = false,
                },
            }
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_MAX));
        writing.push_back(tokio::spawn(store_batch(
            store.clone(),
            full,
            stats.clone(),
            describe.clone(),
            queue.clone(),
        )));
    }
    // Shutdown: everything read is stored before the writer ends.
    for w in writing {
        let _ = w.await;
    }
}

/// Stores `batch`, queued for the CDR output's receivers in the same
/// transaction, and wakes their workers.
pub async fn insert(store: &Store, batch: &[NewCdr], queue: &Queue) -> Result<u64, store::Error> {
    let receivers = queue.receivers();
    if receivers.is_empty() {
        return store.insert_cdrs(batch).await;
    }
    let stored = store
        .insert_cdrs_queued(batch, &receivers, crate::clock::now_ms())
        .await?;
    if stored > 0 {
        queue.stored();
    }
    Ok(stored)
}

/// A batch is never dropped: on a database error it is retried until it lands.
async fn store_batch(
    store: Store,
    mut batch: Vec<NewCdr>,
    stats: Arc<Stats>,
    describe: Option<recording_desc::Describer>,
    queue: Queue,
) {
    if let Some(d) = &describe {
        describe_recordings(d, &mut batch).await;
    }
    let mut backoff = Duration::from_millis(200);
    loop {
        match insert(&store, &batch, &queue).await {
            Ok(inserted) => {
                tracing::debug!(records = batch.len(), inserted, "CDR batch stored");
                stats
                    .pending
                    .fetch_sub(batch.len() as u64, Ordering::Relaxed);
                stats
                    .last_stored_ms
                    .store(crate::clock::now_ms(), Ordering::Relaxed);
                return;
            }
            Err(e) => {
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = Some((crate::clock::now_ms(), e.to_string()));
                }
                tracing::error!(records = batch.len(), error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot store CDRs; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Recordings looked at at once while a batch is described (each costs a
/// look-up and a header read: a round trip each on S3).
const DESCRIBE_AT_ONCE: usize = 16;

/// Fills `recordfiles_desc` of the records that name recordings.
pub async fn describe_recordings(d: &recording_desc::Describer, records: &mut [NewCdr]) {
    let mut running = tokio::task::JoinSet::new();
    let mut described: Vec<(usize, String)> = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let files = r.record.get("recordfiles");
        if files.is_empty() {
            continue;
        }
        if running.len() >= DESCRIBE_AT_ONCE
            && let Some(Ok(done)) = running.join_next().await
        {
            described.push(done);
        }
        let (d, files) = (d.clone(), files.to_owned());
        running.spawn(async move { (i, d.describe(&files).await) });
    }
    while let Some(done) = running.join_next().await {
        if let Ok(done) = done {
            described.push(done);
        }
    }
    for (i, desc) in described {
        if let Some(r) = records.get_mut(i) {
            r.record.set("recordfiles_desc", desc);
        }
    }
}

/// Each time AMI (re)connects — at start, after an Asterisk restart, after a
/// network cut — the CDRs written to Asterisk's CSV since the last checkpoint
/// are stored, so nothing produced while pbxgate was not listening is lost.
/// Live events arriving meanwhile are deduplicated against them.
/// What the recovery on each connection needs.
struct Recovery {
    ami: Arc<dyn Manager>,
    store: Store,
    tz: jiff::tz::TimeZone,
    path: PathBuf,
    describe: Option<recording_desc::Describer>,
    queue: Queue,
}

async fn recover_on_connect(r: Recovery, missed: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let Recovery {
        ami,
        store,
        tz,
        path,
        describe,
        queue,
    } = r;
    let mut state = ami.state();
    loop {
        if state.borrow_and_update().is_up()
            && let Err(e) = recover(&ami, &store, &tz, &path, describe.as_ref(), &queue).await
        {
            tracing::error!(path = %path.display(), error = %e, "CDR recovery from CSV failed; will retry at the next connection");
        }
        // Next time: a new connection, or events the reader missed.
        loop {
            tokio::select! {
                r = state.changed() => {
                    if r.is_err() { return }
                    if state.borrow().is_up() { break }
                }
                _ = missed.notified() => break,
                _ = stop.changed() => return,
            }
        }
    }
}

/// Catches up with the CSV from the stored checkpoint (`<inode>:<offset>`);
/// a replaced or truncated file is read from the start.
pub async fn recover(
    ami: &Arc<dyn Manager>,
    store: &Store,
    tz: &jiff::tz::TimeZone,
    path: &std::path::Path,
    describe: Option<&recording_desc::Describer>,
    queue: &Queue,
) -> crate::error::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Say why, or recovery silently does nothing for good.
            let why = crate::pbxcheck::csv_writer_problem(ami, path)
                .await
                .unwrap_or_else(|| {
                    "Asterisk has not written it (yet): check that the file named by                      [asterisk] cdr_csv is the one cdr_custom_pbxgate.conf (or cdr_csv's                      Master.csv) writes, as seen from pbxgate"
                        .to_owned()
                });
            tracing::warn!(path = %path.display(), "no CDR CSV to recover from: {why}");
            return Ok(());
        }
        Err(e) => {
            return Err(crate::error::Error::io(
                format!("cannot read {}", path.display()),
                e,
            ));
        }
    };
    let key = format!("cdr_csv:{}", path.display());
    let offset = match store.checkpoint(&key).await? {
        Some(v) => match v.split_once(':') {
            Some((ino, off)) if ino == meta.ino().to_string() => {
                off.parse::<u64>().unwrap_or(0).min(meta.len())
            }
            _ => 0,
        },
        None => 0,
    };
    let summary = csv::import(path, offset, store, tz, describe, queue, |_| {}).await?;
    store
        .set_checkpoint(&key, &format!("{}:{}", meta.ino(), summary.end_offset))
        .await?;
    if summary.imported > 0 || !summary.rejected.is_empty() {
        tracing::info!(
            path = %path.display(),
            recovered = summary.imported,
            already_stored = summary.duplicates,
            rejected = summary.rejected.len(),
            "CDRs recovered from CSV"
        );
    }
    Ok(())
}
