/// The store's one error type. The HTTP layer maps every variant to the UCM
/// status for a failed data operation; the message never contains bound values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported database URL (expected sqlite:// or postgres://): {0}")]
    UnsupportedUrl(String),
    #[error("malformed database URL: {0}")]
    BadUrl(String),
    #[error("cannot prepare the SQLite database {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the database returned a malformed CDR page ({0})")]
    Corrupt(&'static str),
    /// A column of a fixed set of words (see the `states` module) holds
    /// one this program does not know.
    #[error("the database holds an unknown value in {column}: {value:?}")]
    UnknownValue { column: &'static str, value: String },
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}
