//! The crate's one error type and, in [`Error::status`], the one place where
//! internal failures become UCM status codes.

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
            // Asterisk unreachable or the connection lost under the request.
            Error::Asterisk(
                asterisk::Error::NotConnected | asterisk::Error::Closed | asterisk::Error::Io(_),
            ) => Status::ConnectionClosed,
            Error::Asterisk(asterisk::Error::Timeout(_)) => Status::SystemTimeout,
            _ => Status::AbnormalSystemError,
        }
    }
}

fn is_timeout(e: &store::SqlxError) -> bool {
    matches!(e, store::SqlxError::PoolTimedOut)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
