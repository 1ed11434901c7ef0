//! What the AMI and ARI connection tasks do between two sessions: report the
//! state, log why the connection ended, and wait with back-off.

use std::time::Duration;

use tokio::sync::watch;

use crate::{ConnState, Error};

const FIRST_RETRY: Duration = Duration::from_millis(500);

pub(crate) struct Reconnect {
    what: &'static str,
    target: String,
    backoff: Duration,
    max_backoff: Duration,
}

impl Reconnect {
    pub(crate) fn new(what: &'static str, target: &str, max_backoff: Duration) -> Self {
        Reconnect {
            what,
            target: target.to_owned(),
            backoff: FIRST_RETRY,
            max_backoff,
        }
    }

    /// Called when a session has ended. Reports the state (`on_down` runs
    /// right after `Down` is published), waits before the next attempt and
    /// returns false when the task must stop. The delay starts again from the
    /// shortest after a session that got connected, and doubles up to
    /// `max_backoff` while connecting keeps failing.
    pub(crate) async fn after_session(
        &mut self,
        result: Result<(), Error>,
        state: &watch::Sender<ConnState>,
        shutdown: &mut watch::Receiver<bool>,
        on_down: impl FnOnce(),
    ) -> bool {
        if *shutdown.borrow() {
            let _ = state.send(ConnState::Stopped);
            return false;
        }
        let was_up = state.borrow().is_up();
        if was_up {
            self.backoff = FIRST_RETRY;
        }
        let reason = match result {
            Ok(()) => "connection closed by Asterisk".to_owned(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(
            target_address = self.target,
            reason,
            retry_in_ms = self.backoff.as_millis() as u64,
            "{} disconnected",
            self.what
        );
        let _ = state.send(ConnState::Down(reason));
        on_down();
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => {}
            _ = shutdown.changed() => {
                let _ = state.send(ConnState::Stopped);
                return false;
            }
        }
        if !was_up {
            self.backoff = (self.backoff * 2).min(self.max_backoff);
        }
        let _ = state.send(ConnState::Connecting);
        true
    }
}
