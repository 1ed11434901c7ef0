//! CDR Real-Time Output: the delivery of each receiver's outbox
//! (docs/cdr-output.md). One step ([`Delivery::step`]) takes the receiver's
//! lease, reads the oldest queued records, frames them
//! (`ucm::cdr_output`), hands them to the receiver's [`Transport`], and marks
//! them delivered, or failed with a backoff that nothing behind them
//! overtakes. [`Outbox`] runs one worker per receiver (`run.rs`);
//! `transport.rs` holds the TCP and HTTP(S) transports.

mod run;
#[cfg(test)]
mod tests;
pub mod transport;

pub use run::{Outbox, Queue, ReceiverStatus, State, holder_name};

use std::time::Duration;

use store::{OutboxStore, Store};
use ucm::cdr::FIELDS;
use ucm::cdrapi::Format;
use ucm::cdrapi::encode::{Leg, Options};

/// How one receiver takes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One entry per line on a kept-open TCP connection.
    Lines,
    /// A batch as one `cdrapi` answer (an HTTP(S) `POST` body).
    Batch,
}

/// A receiver as the delivery sees it.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub name: String,
    pub format: Format,
    pub options: Options,
    pub framing: Framing,
    /// Records per step (per HTTP body).
    pub batch: u32,
    pub filter: Filter,
    /// The legs of one call (same `session`) as one entry (`main_cdr`,
    /// `sub_cdr_N`), as `cdrapi` groups them; else each leg its own.
    pub grouped: bool,
}

/// Where `session` is among a record's values.
fn session_index() -> usize {
    FIELDS.iter().position(|f| *f == "session").unwrap_or(0)
}

/// Which records a receiver takes; the others leave its outbox unsent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only `disposition` ANSWERED.
    pub only_answered: bool,
    /// Only these `userfield` values (lower case); empty: all.
    pub directions: Vec<String>,
}

impl Filter {
    fn wants(&self, values: &[String]) -> bool {
        let field = |name: &str| {
            FIELDS
                .iter()
                .position(|f| *f == name)
                .and_then(|i| values.get(i))
                .map_or("", String::as_str)
        };
        (!self.only_answered || field("disposition").eq_ignore_ascii_case("ANSWERED"))
            && (self.directions.is_empty()
                || self
                    .directions
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(field("userfield"))))
    }
}

/// One payload for a transport: the bytes, and a key that names them (the
/// record's `AcctId`, a batch's first and last), the same when the same
/// records are sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub body: Vec<u8>,
    pub idempotency_key: String,
    pub records: usize,
}

/// What sends a payload to a receiver (TCP connection, HTTP client, or a
/// test's recorder). `Err` is the reason, for the Status page and the log.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    async fn send(&self, payload: &Payload) -> Result<(), String>;

    /// Checks, between deliveries, that the receiver can be reached (TCP:
    /// the kept-open connection is there, or can be opened), so that a
    /// wrong address shows before the first record does.
    async fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl Transport for Box<dyn Transport> {
    async fn send(&self, payload: &Payload) -> Result<(), String> {
        (**self).send(payload).await
    }

    async fn ready(&self) -> Result<(), String> {
        (**self).ready().await
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Another process holds the receiver's lease.
    NotHolder,
    /// Nothing due (empty, or the oldest waits out its backoff).
    Idle,
    Delivered(usize),
    /// The transport refused; retried after the backoff.
    Failed {
        records: usize,
        error: String,
        retry_in: Duration,
    },
}

/// The delivery of one receiver's outbox by one process (`holder`).
pub struct Delivery<T> {
    pub store: Store,
    pub receiver: Receiver,
    pub holder: String,
    pub transport: T,
    /// How long the lease lasts without renewal (a dead holder's is taken
    /// over after this).
    pub lease: Duration,
    /// Until when (Unix ms) this process is known to hold the lease: while
    /// more than two thirds of it are left, a step does not renew it (one
    /// write less per step).
    pub held_until: std::sync::atomic::AtomicI64,
}

/// Backoff after `attempts` failed attempts: 1 s, doubling, at most 5 min.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 9)).unwrap_or(9);
    Duration::from_secs(2u64.pow(exp)).min(Duration::from_secs(300))
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl<T: Transport> Delivery<T> {
    /// One step at `now_ms`.
    pub async fn step(&self, now_ms: i64) -> Result<Step, store::Error> {
        let name = &self.receiver.name;
        let ttl = ms(self.lease);
        let held = self.held_until.load(std::sync::atomic::Ordering::Relaxed);
        if held.saturating_sub(now_ms) <= ttl / 3 * 2 {
            if !self
                .store
                .outbox_lease(name, &self.holder, now_ms, ttl)
                .await?
            {
                self.held_until
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                return Ok(Step::NotHolder);
            }
            self.held_until.store(
                now_ms.saturating_add(ttl),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let limit = self.receiver.batch.max(1);
        let mut records = self.store.outbox_records(name, now_ms, limit).await?;
        if self.receiver.grouped && records.len() == limit as usize {
            // The last call may go on past what this step read: it goes
            // whole with the next step (unless it is all there is). A call's
            // legs are queued in one transaction, so a short read has them all.
            let s = session_index();
            let session = |r: &(store::OutboxItem, Option<Vec<String>>)| {
                r.1.as_ref().and_then(|v| v.get(s).cloned())
            };
            if let Some(last) = records.last().and_then(session)
                && !last.is_empty()
                && let Some(end) = records
                    .iter()
                    .rposition(|r| session(r).as_ref() != Some(&last))
            {
                records.truncate(end + 1);
            }
        }
        let Some((first, _)) = records.first() else {
            return Ok(Step::Idle);
        };
        let attempts = first.attempts;
        let ids: Vec<i64> = records.iter().map(|(i, _)| i.id).collect();
        // A record deleted from the CDR table by hand cannot be sent: it
        // leaves the outbox as if delivered (the log says so).
        let gone = records.iter().filter(|(_, v)| v.is_none()).count();
        if gone > 0 {
            tracing::warn!(receiver = %name, records = gone, "CDR output: queued CDRs no longer stored; skipped");
        }
        let legs: Vec<Leg<'_>> = records
            .iter()
            .filter_map(|(_, v)| v.as_ref())
            .filter(|v| self.receiver.filter.wants(v))
            .map(|v| {
                let mut leg: Leg<'_> = [""; FIELDS.len()];
                for (slot, value) in leg.iter_mut().zip(v) {
                    *slot = value.as_str();
                }
                leg
            })
            .collect();
        if !legs.is_empty() {
            let payload = self.payload(&legs);
            if let Err(error) = self.transport.send(&payload).await {
                let retry_in = backoff(attempts);
                self.store
                    .outbox_failed(name, &ids, now_ms.saturating_add(ms(retry_in)), &error)
                    .await?;
                return Ok(Step::Failed {
                    records: ids.len(),
                    error,
                    retry_in,
                });
            }
        }
        let done = self
            .store
            .outbox_delivered(name, &self.holder, now_ms, &ids)
            .await?;
        Ok(Step::Delivered(usize::try_from(done).unwrap_or(0)))
    }

    fn payload(&self, legs: &[Leg<'_>]) -> Payload {
        let r = &self.receiver;
        let s = session_index();
        let entries: Vec<&[Leg<'_>]> = legs
            .chunk_by(|a, b| r.grouped && !a[s].is_empty() && a[s] == b[s])
            .collect();
        let body = match r.framing {
            Framing::Lines => entries
                .iter()
                .flat_map(|entry| ucm::cdr_output::line(r.format, r.options, entry))
                .collect(),
            Framing::Batch => ucm::cdr_output::body(r.format, r.options, &entries),
        };
        // The record's AcctId; a batch's first and last.
        let first = legs.first().map_or("", |l| l[0]);
        let last = legs.last().map_or("", |l| l[0]);
        let idempotency_key = if legs.len() == 1 {
            first.to_owned()
        } else {
            format!("{first}-{last}")
        };
        Payload {
            body,
            idempotency_key,
            records: legs.len(),
        }
    }
}
