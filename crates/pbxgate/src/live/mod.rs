//! Live call state pushed to `/websockify` subscribers: every `notify` the
//! server sends goes through one [`Hub`]. [`start`] runs the task that turns
//! Asterisk's events into notifications (`calls` holds the state).

pub mod calls;

use std::sync::Arc;

use asterisk::ami::Ami;
use asterisk::ari::{Ari, Event};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

pub const ACTIVE_CALL_STATUS: &str = "ActiveCallStatus";
pub const EXTENSION_STATUS: &str = "ExtensionStatus";

/// The event names a client may subscribe to (those of a UCM). Only
/// `ActiveCallStatus` and `ExtensionStatus` are ever sent.
pub const EVENT_NAMES: &[&str] = &[
    ACTIVE_CALL_STATUS,
    EXTENSION_STATUS,
    "PbxStatus",
    "TrunkStatus",
    "PresenceStatus",
    "VoiceMailStatus",
    "ResourceUsageStatus",
    "InterfaceStatus",
    "EquipmentCapacityStatus",
    "CallQueueStatus",
];

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

fn publish_calls(hub: &Hub, items: Vec<serde_json::Value>) {
    if !items.is_empty() {
        hub.publish(Notify {
            eventname: ACTIVE_CALL_STATUS,
            body: serde_json::Value::Array(items),
        });
    }
}

/// Starts the task that follows Asterisk's channels: AMI channel events and
/// ARI `StasisStart` become `ActiveCallStatus`, AMI `ExtensionStatus` becomes
/// `ExtensionStatus`. Each event is published as soon as it is read (no
/// batching: the announcement of a held inbound call must be immediate).
/// Whenever AMI (re)connects, or events were missed, the legs are resynced
/// from `CoreShowChannels`.
pub fn start(hub: Hub, ami: &Ami, ari: Option<&Ari>, tz: jiff::tz::TimeZone) {
    let ami = ami.clone();
    let mut ami_events = ami.subscribe();
    let mut ari_events = ari.map(Ari::subscribe);
    let mut ami_state = ami.state();
    tokio::spawn(async move {
        let mut tracker = calls::Tracker::new(tz);
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
                            publish_calls(&hub, items);
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
                            publish_calls(&hub, items);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "live calls: AMI events missed; resyncing");
                        resync(&ami, &mut tracker, &hub).await;
                    }
                    Err(RecvError::Closed) => return,
                },
                changed = ami_state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let up = ami_state.borrow_and_update().is_up();
                    if up {
                        resync(&ami, &mut tracker, &hub).await;
                    }
                }
            }
        }
    });
}

async fn resync(ami: &Ami, tracker: &mut calls::Tracker, hub: &Hub) {
    match ami.action("CoreShowChannels", &[]).await {
        Ok(reply) if reply.is_success() => {
            let channels: Vec<_> = reply
                .events
                .into_iter()
                .filter(|m| m.event() == Some("CoreShowChannel"))
                .collect();
            let items = tracker.resync(&channels, jiff::Timestamp::now());
            tracing::info!(
                channels = tracker.len(),
                changes = items.len(),
                "live calls resynced"
            );
            publish_calls(hub, items);
        }
        Ok(reply) => tracing::warn!(
            message = reply.response.get("Message").unwrap_or(""),
            "live calls: CoreShowChannels refused; keeping what is known"
        ),
        Err(e) => tracing::warn!(error = %e, "live calls: cannot resync; keeping what is known"),
    }
}
