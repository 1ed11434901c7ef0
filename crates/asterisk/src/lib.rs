//! Asterisk clients for pbxgate: AMI (the manager protocol: actions and
//! events, including `Cdr`) and ARI (REST plus the events websocket, for call
//! control), and the seam over both that features and their tests use
//! (`pbx`). Nothing here knows about the UCM.

pub mod ami;
pub mod ari;
pub mod channel;
pub mod pbx;
mod reconnect;

#[cfg(feature = "testing")]
pub mod testing;

/// Connection state, for health reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    Connecting,
    Up,
    /// Disconnected; retrying. The reason of the last failure.
    Down(String),
    /// Not connected on purpose: another pbxgate node owns this Asterisk.
    Standby,
    Stopped,
}

impl ConnState {
    pub fn is_up(&self) -> bool {
        matches!(self, ConnState::Up)
    }
}

/// The crate's one error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("authentication refused: {0}")]
    Auth(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    UnsafeHeader(#[from] ami::codec::UnsafeHeader),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("not connected to Asterisk")]
    NotConnected,
    #[error("the connection task has stopped")]
    Closed,
}
