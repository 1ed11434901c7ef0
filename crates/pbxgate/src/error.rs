//! The crate's error types: [`Error`] (what failed inside pbxgate) and
//! [`ActionError`] (why an API action was not done). [`ActionError::answer`]
//! is the one place an action's failure becomes a UCM status and
//! `error_msg` (for `/api` and `/websockify`); the old listener turns the same
//! value into an HTTP status in `legacy::http::http_status`.

use ucm::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("storage: {0}")]
    Store(#[from] store::Error),
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    /// Hashing an admin password failed (never carries the password).
    #[error("cannot hash the password: {0}")]
    PasswordHash(String),
    #[error("Asterisk: {0}")]
    Asterisk(#[from] asterisk::Error),
    #[error("TLS: {0}")]
    Tls(String),
    /// A value pbxgate keeps in the database is not in its own format.
    #[error("database value {0}")]
    StoredValue(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The status an API client sees when this error ends its request.
    pub fn status(&self) -> Status {
        match self {
            // A busy pool is worth a retry; clients retry on -8.
            Error::Store(store::Error::Database(sqlx_error)) if is_timeout(sqlx_error) => {
                Status::SystemTimeout
            }
            Error::Asterisk(e) => pbx_status(e),
            _ => Status::AbnormalSystemError,
        }
    }
}

/// Asterisk unreachable or the connection lost under the request: -7 (a
/// client retries); no answer in time: -8.
fn pbx_status(e: &asterisk::Error) -> Status {
    match e {
        asterisk::Error::NotConnected | asterisk::Error::Closed | asterisk::Error::Io(_) => {
            Status::ConnectionClosed
        }
        asterisk::Error::Timeout(_) => Status::SystemTimeout,
        _ => Status::AbnormalSystemError,
    }
}

fn is_timeout(e: &store::SqlxError) -> bool {
    matches!(e, store::SqlxError::PoolTimedOut)
}

/// Why an action was not done: what went wrong, not yet how a listener says
/// it (see [`ActionError::answer`]).
#[derive(Debug)]
pub enum ActionError {
    /// A refusal whose UCM status is decided where it happens (envelope,
    /// login and session rules, permissions).
    Status(Status),
    /// The same with an explanation for the client (`response.error_msg`).
    Explained(Status, String),
    /// pbxgate failed (database, files): the operator's problem.
    Internal(Error),
    /// No `[asterisk]` connection is configured.
    PbxNotConfigured,
    /// AMI or ARI is down, broke, or Asterisk did not answer in time.
    Pbx(asterisk::Error),
    /// Asterisk answered `Response: Error`; `changing` for actions that act
    /// on a call (they report -45/-16), not for reads (-44).
    PbxRefused {
        action: String,
        message: String,
        changing: bool,
    },
    /// The directory item asked for does not exist.
    NoSuchItem(String),
    /// The channel named does not exist.
    NoSuchChannel(String),
    /// The number matches no extension in the dialing context.
    NotInDialplan(String),
    /// The channel is in no two-party call (hold).
    NotInCall(String),
    /// A channel whose name ChanSpy cannot take (it would split its arguments).
    Unspyable(String),
    /// A parameter's value is unusable (-15), with the reason.
    InvalidValue(String),
}

impl From<Error> for ActionError {
    fn from(e: Error) -> Self {
        ActionError::Internal(e)
    }
}

impl From<store::Error> for ActionError {
    fn from(e: store::Error) -> Self {
        ActionError::Internal(Error::Store(e))
    }
}

impl ActionError {
    /// The UCM status of this failure.
    pub fn status(&self) -> Status {
        self.answer().0
    }

    /// The one mapping of a failure to what a UCM client sees: the status
    /// and, where there is one, the explanation for `error_msg`. Failures of
    /// Asterisk or of pbxgate are logged as warnings; a client's mistake (an
    /// unknown item, a bad value) only at debug level.
    pub fn answer(&self) -> (Status, Option<String>) {
        let (status, message) = match self {
            ActionError::Status(s) => return (*s, None),
            ActionError::Explained(s, m) => return (*s, Some(m.clone())),
            ActionError::Internal(e) => return (e.status(), None),
            ActionError::PbxNotConfigured => (
                Status::ConnectionClosed,
                "pbxgate has no connection to Asterisk configured ([asterisk] ami_secret)".into(),
            ),
            ActionError::Pbx(e) => (pbx_status(e), format!("Asterisk: {e}")),
            ActionError::PbxRefused {
                action,
                message,
                changing: true,
            } => {
                let gone = message.to_ascii_lowercase();
                let status = if gone.contains("no such channel") || gone.contains("does not exist")
                {
                    Status::NoSuchItem
                } else {
                    Status::FailedToOperateData
                };
                (status, format!("Asterisk refused {action}: {message}"))
            }
            ActionError::PbxRefused {
                action,
                message,
                changing: false,
            } => (
                Status::FailedToGetData,
                format!("Asterisk refused {action}: {}", printable(message)),
            ),
            ActionError::NoSuchItem(what) => (Status::NoSuchItem, format!("no such item: {what}")),
            ActionError::NoSuchChannel(c) => (Status::NoSuchItem, format!("no such channel: {c}")),
            ActionError::NotInDialplan(n) => (
                Status::NoSuchItem,
                format!("{n} is not a number of the dialing context"),
            ),
            ActionError::NotInCall(c) => (
                Status::FailedToOperateData,
                format!("{c} is not in a two-party call"),
            ),
            ActionError::Unspyable(c) => (
                Status::InvalidValue,
                format!("{c} cannot be spied on (its name has ',', '(', ')' or '|')"),
            ),
            ActionError::InvalidValue(m) => return (Status::InvalidValue, Some(m.clone())),
        };
        if matches!(status, Status::NoSuchItem | Status::InvalidValue) {
            tracing::debug!(status = status.code(), reason = %message, "action refused");
        } else {
            tracing::warn!(status = status.code(), reason = %message, "action failed");
        }
        (status, Some(message))
    }
}

/// Text from Asterisk as it may reach a client: no control characters, bounded.
pub fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(256).collect()
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
