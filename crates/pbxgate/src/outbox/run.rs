//! One worker per receiver: steps its delivery while there is work, waits
//! for the ingest's word that CDRs were stored (or a short poll: another
//! node may have stored them), applies the quota, and keeps what the Status
//! page and `/healthz` show.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{AuditEvent, AuditEventKind, AuditStore, Backlog, OutboxStore, Store};
use tokio::sync::{Notify, watch};
use ucm::cdrapi::encode::Options;

use super::{Delivery, Filter, Framing, Receiver, Step, Transport};
use crate::clock::now_ms;
use crate::config::cdr_output::{CdrOutputSettings, Delivery as Kind, ReceiverSettings};

/// How often an idle worker looks for records stored by another process.
const POLL: Duration = Duration::from_millis(250);
/// How often the backlog is counted and the quota applied.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// What the ingest needs: the receivers to queue new CDRs for, and a way
/// to wake their workers once stored. It follows the settings in force.
#[derive(Clone, Default)]
pub struct Queue(Arc<std::sync::RwLock<Targets>>);

#[derive(Default)]
struct Targets {
    receivers: Vec<String>,
    wake: Vec<Arc<Notify>>,
}

impl Queue {
    /// The receivers in force (none while the output is disabled).
    pub fn receivers(&self) -> Vec<String> {
        self.0
            .read()
            .map(|t| t.receivers.clone())
            .unwrap_or_default()
    }

    /// CDRs were stored (and queued): the workers look at once.
    pub fn stored(&self) {
        if let Ok(t) = self.0.read() {
            for w in &t.wake {
                w.notify_one();
            }
        }
    }

    fn set(&self, targets: Targets) {
        if let Ok(mut t) = self.0.write() {
            *t = targets;
        }
    }
}

/// A receiver's state as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    /// Delivered its last records (or had none to deliver).
    Up,
    /// The last attempt failed; retried after a backoff.
    Failing,
    /// Another pbxgate process on the same database delivers to it.
    Standby,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Up => "up",
            State::Failing => "failing",
            State::Standby => "standby",
            State::Stopped => "stopped",
        }
    }
}

/// What the Status page and `/healthz` show of one receiver.
#[derive(Debug, Clone)]
pub struct ReceiverStatus {
    pub name: String,
    /// Where it goes (no credentials).
    pub target: String,
    pub state: State,
    /// As last counted (every few seconds).
    pub backlog: Backlog,
    pub delivered: u64,
    /// Dropped by the quota since start.
    pub dropped: u64,
    pub last_success_ms: Option<i64>,
    /// When (Unix ms) and why the last attempt failed.
    pub last_error: Option<(i64, String)>,
}

impl ReceiverStatus {
    /// As the Status page and `/healthz` show it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "receiver": self.name,
            "target": self.target,
            "state": self.state.as_str(),
            "backlog": self.backlog.items,
            "oldest_queued_ms": self.backlog.oldest_ms,
            "delivered": self.delivered,
            "dropped": self.dropped,
            "last_success_ms": self.last_success_ms,
            "last_error": self.last_error.as_ref().map(|(at, e)| serde_json::json!({"at_ms": at, "message": e})),
        })
    }
}

/// The running CDR Real-Time Output of this process. [`Outbox::apply`]
/// puts new settings in force without a restart (SIGHUP).
pub struct Outbox {
    store: Store,
    options: Options,
    holder: String,
    queue: Queue,
    status: std::sync::RwLock<Vec<Arc<Mutex<ReceiverStatus>>>>,
    running: tokio::sync::Mutex<Running>,
}

struct Running {
    settings: CdrOutputSettings,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How long a replaced worker may take to finish its delivery.
const REPLACE_GRACE: Duration = Duration::from_secs(5);

impl Outbox {
    /// Starts a worker per receiver (none while disabled). `holder` names
    /// this process in the leases.
    pub fn start(
        store: &Store,
        settings: &CdrOutputSettings,
        options: Options,
        holder: &str,
    ) -> Outbox {
        let mut outbox = Outbox {
            store: store.clone(),
            options,
            holder: holder.to_owned(),
            queue: Queue::default(),
            status: std::sync::RwLock::new(Vec::new()),
            running: tokio::sync::Mutex::new(Running {
                settings: CdrOutputSettings::default(),
                stop: watch::channel(false).0,
                tasks: Vec::new(),
            }),
        };
        let running = outbox.spawn(settings);
        *outbox.running.get_mut() = running;
        outbox
    }

    fn spawn(&self, settings: &CdrOutputSettings) -> Running {
        let (stop, stop_rx) = watch::channel(false);
        let mut targets = Targets::default();
        let mut status = Vec::new();
        let mut tasks = Vec::new();
        for r in settings.active() {
            let wake = Arc::new(Notify::new());
            let s = Arc::new(Mutex::new(ReceiverStatus {
                name: r.name.clone(),
                target: r.target(),
                state: State::Starting,
                backlog: Backlog::default(),
                delivered: 0,
                dropped: 0,
                last_success_ms: None,
                last_error: None,
            }));
            targets.receivers.push(r.name.clone());
            targets.wake.push(wake.clone());
            status.push(s.clone());
            let worker = Worker {
                store: self.store.clone(),
                settings: r.clone(),
                status: s,
                wake,
            };
            tasks.push(tokio::spawn(worker.run(
                self.options,
                self.holder.clone(),
                settings.lease,
                stop_rx.clone(),
            )));
        }
        self.queue.set(targets);
        if let Ok(mut st) = self.status.write() {
            *st = status;
        }
        Running {
            settings: settings.clone(),
            stop,
            tasks,
        }
    }

    /// Puts `settings` in force: the workers end (each finishes its step
    /// and gives its lease up) and new ones start. Returns what changed, by
    /// name (`enable`, `receiver NAME`); nothing changes when they are equal.
    pub async fn apply(&self, settings: &CdrOutputSettings) -> Vec<String> {
        let mut running = self.running.lock().await;
        let changes = changes(&running.settings, settings);
        if changes.is_empty() {
            return changes;
        }
        finish(&mut running, REPLACE_GRACE).await;
        *running = self.spawn(settings);
        tracing::info!(changed = %changes.join(", "), receivers = settings.receivers.len(), enabled = settings.enabled, "CDR output: settings in force");
        changes
    }

    pub fn queue(&self) -> Queue {
        self.queue.clone()
    }

    pub fn status(&self) -> Vec<ReceiverStatus> {
        self.status
            .read()
            .map(|all| {
                all.iter()
                    .filter_map(|s| s.lock().ok().map(|s| s.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Lets each worker finish its step and give its lease up.
    pub async fn stop(&self, grace: Duration) {
        let mut running = self.running.lock().await;
        finish(&mut running, grace).await;
    }
}

/// Ends the workers of `running`: told to stop, then awaited together for
/// up to `grace` (a worker still sending after that is aborted: its records
/// stay queued and are sent again).
async fn finish(running: &mut Running, grace: Duration) {
    let _ = running.stop.send(true);
    let deadline = tokio::time::Instant::now() + grace;
    for mut t in std::mem::take(&mut running.tasks) {
        if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
            t.abort();
            tracing::warn!(
                "CDR output: a delivery did not end within the grace time; it is sent again later"
            );
        }
    }
}

/// What differs between two settings, by name.
fn changes(before: &CdrOutputSettings, after: &CdrOutputSettings) -> Vec<String> {
    let mut out = Vec::new();
    if before.enabled != after.enabled {
        out.push("enable".to_owned());
    }
    if before.lease != after.lease {
        out.push("lease_secs".to_owned());
    }
    for r in &after.receivers {
        if before.receivers.iter().find(|b| b.name == r.name) != Some(r) {
            out.push(format!("receiver {}", r.name));
        }
    }
    for b in &before.receivers {
        if !after.receivers.iter().any(|r| r.name == b.name) {
            out.push(format!("receiver {} (removed)", b.name));
        }
    }
    out
}

/// A unique name for this process in the leases: host, pid, random.
pub fn holder_name() -> String {
    let host = crate::host::hostname().unwrap_or_default();
    let tag = crate::random::u64().unwrap_or_default();
    format!("{host}:{}:{tag:016x}", std::process::id())
}

struct Worker {
    store: Store,
    settings: ReceiverSettings,
    status: Arc<Mutex<ReceiverStatus>>,
    wake: Arc<Notify>,
}

impl Worker {
    fn update(&self, f: impl FnOnce(&mut ReceiverStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    async fn run(
        self,
        options: Options,
        holder: String,
        lease: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let r = &self.settings;
        let transport: Box<dyn Transport> = match super::transport::build(r) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(receiver = %r.name, error = %e, "CDR output: receiver cannot start");
                self.update(|s| {
                    s.state = State::Failing;
                    s.last_error = Some((now_ms(), e));
                });
                return;
            }
        };
        let delivery = Delivery {
            store: self.store.clone(),
            receiver: Receiver {
                name: r.name.clone(),
                format: r.format,
                options,
                framing: match r.delivery {
                    Kind::Tcp => Framing::Lines,
                    Kind::Http | Kind::Https => Framing::Batch,
                },
                batch: r.batch,
                filter: Filter {
                    only_answered: r.only_answered,
                    directions: r.directions.clone(),
                },
                grouped: r.grouped,
            },
            holder: holder.clone(),
            transport,
            lease,
            held_until: Default::default(),
        };
        tracing::info!(receiver = %r.name, target = %r.target(), "CDR output: receiver started");
        let mut housekeeping = Instant::now();
        let mut last_logged: Option<String> = None;
        // Whether the state says "failing" because of the probe (not of a
        // delivery, which only a delivery clears).
        let mut probe_failed = false;
        while !*stop.borrow() {
            if housekeeping <= Instant::now() {
                self.housekeeping().await;
                self.probe(&delivery.transport, &mut last_logged, &mut probe_failed)
                    .await;
                housekeeping = Instant::now() + HOUSEKEEPING;
            }
            let wait = match delivery.step(now_ms()).await {
                Ok(Step::Delivered(n)) => {
                    self.update(|s| {
                        s.state = State::Up;
                        s.delivered += n as u64;
                        s.backlog.items = s.backlog.items.saturating_sub(n as u64);
                        s.last_success_ms = Some(now_ms());
                    });
                    if last_logged.take().is_some() {
                        tracing::info!(receiver = %r.name, "CDR output: receiver takes deliveries again");
                    }
                    Duration::ZERO
                }
                Ok(Step::Idle) => {
                    self.update(|s| {
                        if s.state != State::Failing {
                            s.state = State::Up;
                        }
                    });
                    POLL
                }
                Ok(Step::NotHolder) => {
                    self.update(|s| s.state = State::Standby);
                    lease / 3
                }
                Ok(Step::Failed {
                    records,
                    error,
                    retry_in,
                }) => {
                    // Logged when the reason changes, not at every retry.
                    if last_logged.as_deref() != Some(error.as_str()) {
                        tracing::warn!(receiver = %r.name, target = %r.target(), records, error = %error, retry_in_secs = retry_in.as_secs(), "CDR output: delivery failed; will retry");
                        last_logged = Some(error.clone());
                    }
                    self.update(|s| {
                        s.state = State::Failing;
                        s.last_error = Some((now_ms(), error));
                    });
                    // The lease is renewed while waiting (an idle step).
                    retry_in.min(lease / 3)
                }
                Err(e) => {
                    tracing::error!(receiver = %r.name, error = %e, "CDR output: cannot read or update the outbox");
                    self.update(|s| s.last_error = Some((now_ms(), format!("database: {e}"))));
                    Duration::from_secs(1)
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
        if let Err(e) = self.store.outbox_release(&r.name, &holder).await {
            tracing::warn!(receiver = %r.name, error = %e, "CDR output: cannot give the lease up");
        }
        self.update(|s| s.state = State::Stopped);
    }

    /// Between deliveries (the holder only): can the receiver be reached?
    async fn probe(
        &self,
        transport: &dyn Transport,
        last_logged: &mut Option<String>,
        probe_failed: &mut bool,
    ) {
        let state = self
            .status
            .lock()
            .map(|s| s.state)
            .unwrap_or(State::Starting);
        if state == State::Standby {
            return;
        }
        let r = &self.settings;
        match transport.ready().await {
            Ok(()) => {
                if state == State::Starting || (state == State::Failing && *probe_failed) {
                    self.update(|s| s.state = State::Up);
                }
                *probe_failed = false;
            }
            Err(error) => {
                if last_logged.as_deref() != Some(error.as_str()) {
                    tracing::warn!(receiver = %r.name, target = %r.target(), error = %error, "CDR output: receiver cannot be reached");
                    *last_logged = Some(error.clone());
                }
                self.update(|s| {
                    s.state = State::Failing;
                    s.last_error = Some((now_ms(), error));
                });
                *probe_failed = true;
            }
        }
    }

    /// The quota (by the lease holder only, so one node audits a drop) and
    /// the backlog count.
    async fn housekeeping(&self) {
        let r = &self.settings;
        let standby = self
            .status
            .lock()
            .map(|s| s.state == State::Standby)
            .unwrap_or(false);
        if !standby {
            let before = r.max_age.map_or(i64::MIN, |age| {
                now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
            });
            match self.store.outbox_trim(&r.name, r.max_backlog, before).await {
                Ok(0) => {}
                Ok(dropped) => {
                    tracing::warn!(receiver = %r.name, dropped, max_backlog = r.max_backlog, max_age_days = r.max_age.map_or(0, |a| a.as_secs() / 86_400), "CDR output: quota reached; the oldest undelivered CDRs were dropped");
                    self.update(|s| s.dropped += dropped);
                    let event = AuditEvent {
                        at_ms: now_ms(),
                        event: AuditEventKind::CdrOutput,
                        username: String::new(),
                        ip: String::new(),
                        result: "dropped".into(),
                        detail: format!(
                            "receiver {}: {dropped} undelivered CDRs dropped by the quota",
                            r.name
                        ),
                    };
                    if let Err(e) = self.store.record_audit(&event).await {
                        tracing::error!(error = %e, "cannot record the audit event of a quota drop");
                    }
                }
                Err(e) => {
                    tracing::warn!(receiver = %r.name, error = %e, "CDR output: cannot apply the quota");
                }
            }
        }
        match self.store.outbox_backlog(&r.name).await {
            Ok(b) => self.update(|s| s.backlog = b),
            Err(e) => {
                tracing::warn!(receiver = %r.name, error = %e, "CDR output: cannot count the backlog")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn settings(text: &str) -> CdrOutputSettings {
        crate::config::load_str(text, "t.toml", std::path::Path::new("/"), Vec::new())
            .unwrap()
            .cdr_output
    }

    #[test]
    fn changes_name_the_switch_and_each_receiver() {
        let a = settings(
            "[cdr_output]\nenable = true\n[[cdr_output.receivers]]\nname = \"a\"\naddress = \"h\"\nport = 1\n\
             [[cdr_output.receivers]]\nname = \"b\"\naddress = \"h\"\nport = 2\n",
        );
        assert!(changes(&a, &a).is_empty());
        let b = settings(
            "[cdr_output]\nenable = false\n[[cdr_output.receivers]]\nname = \"a\"\naddress = \"h\"\nport = 9\n\
             [[cdr_output.receivers]]\nname = \"c\"\naddress = \"h\"\nport = 2\n",
        );
        assert_eq!(
            changes(&a, &b),
            ["enable", "receiver a", "receiver c", "receiver b (removed)"]
        );
        // A secret alone is a change too (it is compared, never shown).
        let c = settings(
            "[cdr_output]\nenable = true\n[[cdr_output.receivers]]\nname = \"a\"\naddress = \"h\"\nport = 1\n\
             username = \"u\"\npassword = \"p1\"\n\
             [[cdr_output.receivers]]\nname = \"b\"\naddress = \"h\"\nport = 2\n",
        );
        let d = settings(
            "[cdr_output]\nenable = true\n[[cdr_output.receivers]]\nname = \"a\"\naddress = \"h\"\nport = 1\n\
             username = \"u\"\npassword = \"p2\"\n\
             [[cdr_output.receivers]]\nname = \"b\"\naddress = \"h\"\nport = 2\n",
        );
        assert_eq!(changes(&c, &d), ["receiver a"]);
    }
}
