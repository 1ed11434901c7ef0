//! Live call state: the `notify`s pushed to `/websockify` subscribers (every
//! one goes through one [`Hub`]) and the channel lists of `/api`
//! (`listBridgedChannels`, `listUnBridgedChannels`, read from the [`Board`]).
//! [`start`] runs the task that turns Asterisk's events into both (`calls`
//! holds the state, `model` draws what clients see of it).

pub mod calls;
pub mod model;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use asterisk::ari::Event;
use asterisk::pbx::{Manager, Stasis};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

pub use model::Projection;

pub use ucm::websockify::{ACTIVE_CALL_STATUS, EVENT_NAMES, EXTENSION_STATUS};
/// How soon a failed resync is tried again.
const RESYNC_RETRY: Duration = Duration::from_secs(5);

/// One `notify` message: an event name (`ActiveCallStatus`,
/// `ExtensionStatus`, ...) and its `eventbody` (a JSON array of items).
#[derive(Debug, Clone)]
pub struct Notify {
    pub eventname: &'static str,
    pub body: serde_json::Value,
}

/// Fan-out of notifications to every connected websocket; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Notify>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (tx, _) = broadcast::channel(4096);
        Hub { tx }
    }

    pub fn publish(&self, n: Notify) {
        // No subscriber is not an error.
        let _ = self.tx.send(Arc::new(n));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Notify>> {
        self.tx.subscribe()
    }
}

/// What the channel lists show: the projection the last `ActiveCallStatus`
/// items led to, and whether it follows Asterisk (false from an AMI
/// disconnect until the resync after the reconnect).
#[derive(Debug, Clone, Default)]
pub struct Shown {
    pub synced: bool,
    pub calls: Arc<Projection>,
}

/// The lists' read side of the live state; cheap to clone.
#[derive(Clone)]
pub struct Board(watch::Receiver<Shown>);

impl Board {
    /// The current projection, once it follows Asterisk: waits up to
    /// `limit` for a resync in progress; `None` if it does not come.
    pub async fn synced(&self, limit: Duration) -> Option<Arc<Projection>> {
        let mut rx = self.0.clone();
        let shown = tokio::time::timeout(limit, rx.wait_for(|s| s.synced))
            .await
            .ok()?
            .ok()?;
        Some(shown.calls.clone())
    }
}

/// The task's side: the board is updated before the items are published, so
/// that a client reading a list after an item sees at least that item's state.
struct Publisher {
    hub: Hub,
    board: watch::Sender<Shown>,
}

impl Publisher {
    fn calls(&self, tracker: &calls::Tracker, items: Vec<serde_json::Value>, synced: bool) {
        let moved = !items.is_empty();
        self.board.send_if_modified(|s| {
            let changed = moved || s.synced != synced;
            if changed {
                s.synced = synced;
                s.calls = tracker.shown();
            }
            changed
        });
        if moved {
            self.hub.publish(Notify {
                eventname: ACTIVE_CALL_STATUS,
                body: serde_json::Value::Array(items),
            });
        }
    }
}

/// Starts the task that follows Asterisk's channels: AMI channel and bridge
/// events and ARI `StasisStart` become `ActiveCallStatus` and the lists'
/// [`Board`], AMI `ExtensionStatus` becomes `ExtensionStatus`. Each event is
/// published as soon as it is read (no batching: the announcement of a held
/// inbound call must be immediate). Whenever AMI (re)connects, or events
/// were missed, the channels are resynced from `CoreShowChannels`.
pub fn start(
    hub: Hub,
    ami: &Arc<dyn Manager>,
    ari: Option<&Arc<dyn Stasis>>,
    tz: jiff::tz::TimeZone,
    trunk_contexts: Vec<String>,
) -> Board {
    let ami = ami.clone();
    let ari = ari.cloned();
    let mut ami_events = ami.subscribe();
    let mut ari_events = ari.as_ref().map(|a| a.subscribe());
    let mut ami_state = ami.state();
    let (board, shown) = watch::channel(Shown::default());
    let out = Publisher { hub, board };
    tokio::spawn(async move {
        let hub = out.hub.clone();
        let mut tracker = calls::Tracker::new(tz, trunk_contexts);
        let mut synced = false;
        // A resync that failed (or was never started) is tried again.
        let mut retry = tokio::time::interval(RESYNC_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Call control's announcement first.
                biased;
                e = async {
                    match ari_events.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match e {
                    Ok(e) => {
                        if let Event::StasisStart { channel, args } = &*e {
                            let items = tracker.stasis_start(channel, args, jiff::Timestamp::now());
                            out.calls(&tracker, items, synced);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "live calls: ARI events missed");
                    }
                    Err(RecvError::Closed) => ari_events = None,
                },
                e = ami_events.recv() => match e {
                    Ok(m) => {
                        if m.event() == Some("ExtensionStatus") {
                            if let Some(item) = calls::extension_status(&m) {
                                hub.publish(Notify {
                                    eventname: EXTENSION_STATUS,
                                    body: serde_json::Value::Array(vec![item]),
                                });
                            }
                        } else {
                            let items = tracker.ami(&m, jiff::Timestamp::now());
                            out.calls(&tracker, items, synced);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "live calls: AMI events missed; resyncing");
                        synced = resync(ami.as_ref(), ari.as_deref(), &mut tracker, &out).await;
                    }
                    Err(RecvError::Closed) => return,
                },
                changed = ami_state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let up = ami_state.borrow_and_update().is_up();
                    if up {
                        synced = resync(ami.as_ref(), ari.as_deref(), &mut tracker, &out).await;
                    } else if synced {
                        synced = false;
                        out.calls(&tracker, Vec::new(), synced);
                    }
                }
                _ = retry.tick() => {
                    if !synced && ami_state.borrow().is_up() {
                        synced = resync(ami.as_ref(), ari.as_deref(), &mut tracker, &out).await;
                    }
                }
            }
        }
    });
    Board(shown)
}

/// Resyncs the tracker from `CoreShowChannels`; whether it worked (else
/// the lists stay unavailable until the next reconnect or missed events).
async fn resync(
    ami: &dyn Manager,
    ari: Option<&dyn Stasis>,
    tracker: &mut calls::Tracker,
    out: &Publisher,
) -> bool {
    match ami.action("CoreShowChannels", &[]).await {
        Ok(reply) if reply.is_success() => {
            let channels: Vec<_> = reply
                .events
                .into_iter()
                .filter(|m| m.event() == Some("CoreShowChannel"))
                .collect();
            let bridge_times = match ari {
                Some(ari)
                    if channels
                        .iter()
                        .any(|c| c.get("BridgeId").is_some_and(|b| !b.is_empty())) =>
                {
                    match ari.bridge_times().await {
                        Ok(all) => all
                            .into_iter()
                            .filter_map(|(id, t)| Some((id, model::parse_ari_time(&t)?)))
                            .collect(),
                        Err(e) => {
                            tracing::warn!(error = %e, "ARI bridges unavailable: approximate bridge_time after the resync");
                            HashMap::new()
                        }
                    }
                }
                _ => HashMap::new(),
            };
            let items = tracker.resync(&channels, &bridge_times, jiff::Timestamp::now());
            tracing::info!(
                channels = tracker.len(),
                changes = items.len(),
                "live calls resynced"
            );
            out.calls(tracker, items, true);
            true
        }
        Ok(reply) => {
            tracing::warn!(
                message = reply.response.get("Message").unwrap_or(""),
                "live calls: CoreShowChannels refused; the channel lists are unavailable until the next resync"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "live calls: cannot resync; the channel lists are unavailable until the next resync");
            false
        }
    }
}
