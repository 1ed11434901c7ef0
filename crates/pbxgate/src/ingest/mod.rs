//! CDR ingest: every AMI `Cdr` event becomes one stored UCM record. Events are
//! turned into records at once and written in batches (one transaction per
//! batch, deduplicated on a stable key), so a burst of calls costs few writes.

pub mod derive;

use std::sync::Arc;
use std::time::Duration;

use asterisk::ami::{Ami, Message};
use store::{CdrStore, NewCdr, Store};
use tokio::sync::{broadcast, mpsc, watch};

/// Most records written in one transaction.
const BATCH_MAX: usize = 1000;
/// Longest a record waits for its batch to fill.
const BATCH_WAIT: Duration = Duration::from_millis(50);

/// The running ingest. [`Ingest::stop`] stops reading events and waits until
/// every record already read is stored.
pub struct Ingest {
    stop: watch::Sender<bool>,
    writer: tokio::task::JoinHandle<()>,
}

impl Ingest {
    pub fn start(ami: &Ami, store: Store, tz: jiff::tz::TimeZone) -> Ingest {
        let (tx, rx) = mpsc::channel::<NewCdr>(BATCH_MAX * 8);
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(read_events(ami.subscribe(), tx, tz, stop_rx));
        let writer = tokio::spawn(write_batches(rx, store));
        Ingest { stop, writer }
    }

    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.writer).await.is_err() {
            tracing::error!("CDR ingest did not finish storing within the shutdown grace time");
        }
    }
}

async fn read_events(
    mut events: broadcast::Receiver<Arc<Message>>,
    tx: mpsc::Sender<NewCdr>,
    tz: jiff::tz::TimeZone,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let next = tokio::select! {
            e = events.recv() => e,
            _ = stop.changed() => return,
        };
        match next {
            Ok(m) if m.event() == Some("Cdr") => {
                let cdr = derive::AsteriskCdr::from_ami(&m);
                match derive::to_ucm(&cdr, &tz) {
                    Some(record) => {
                        if tx.send(record).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        tracing::debug!(channel = cdr.channel, "CDR of a helper channel skipped")
                    }
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::error!(
                    missed = n,
                    "CDR ingest fell behind the AMI event stream; events were missed"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn write_batches(mut rx: mpsc::Receiver<NewCdr>, store: Store) {
    let mut batch: Vec<NewCdr> = Vec::with_capacity(BATCH_MAX);
    loop {
        if batch.is_empty() {
            match rx.recv().await {
                Some(c) => batch.push(c),
                None => return,
            }
        }
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_MAX {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(c)) => batch.push(c),
                Ok(None) | Err(_) => break,
            }
        }
        // A batch is never dropped: on a database error it is retried until it lands.
        let mut backoff = Duration::from_millis(200);
        loop {
            match store.insert_cdrs(&batch).await {
                Ok(inserted) => {
                    tracing::debug!(records = batch.len(), inserted, "CDR batch stored");
                    break;
                }
                Err(e) => {
                    tracing::error!(records = batch.len(), error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot store CDRs; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        batch.clear();
    }
}
