//! Live call state pushed to `/websockify` subscribers: every `notify` the
//! server sends goes through one [`Hub`].

use std::sync::Arc;

use tokio::sync::broadcast;

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
