//! Persistence for pbxgate. One [`Store`] value talks to SQLite (the embedded
//! default) or PostgreSQL, chosen by the database URL; the rest of the program
//! sees only the traits in [`traits`]. Both backends run the same SQL text
//! (`$N` placeholders work on both through sqlx) with migrations per backend.

mod cdr_export;
mod cdr_query;
mod db;
mod error;
mod recordings;
pub mod traits;

pub use cdr_query::{CallBucket, CdrFilter, CdrPage, Grouping, Order, PageKey, PageLeg, PageQuery};
pub use db::{
    Backend, ConnectOptions, Store, backend_of, check_url, scrub_url_secrets, sqlite_file,
    url_secrets,
};
pub use error::Error;
pub use recordings::{RecordedCdr, RecordedCursor};
pub use sqlx::Error as SqlxError;
pub use traits::{
    AdminSession, AdminStore, AuditEvent, AuditStore, CallDecision, CdrStore, ChallengeStore,
    DecisionStore, LoginAttempt, LoginGuardStore, MetaStore, NewCdr, PmsStore, Room, RoomWrite,
    Session, SessionStore, SettingsStore, Wakeup, WebSettings, WebSettingsStore,
};

#[cfg(feature = "testing")]
pub mod testing;
