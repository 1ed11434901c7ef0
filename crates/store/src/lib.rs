//! Persistence for pbxgate. One [`Store`] value talks to SQLite (the embedded
//! default) or PostgreSQL, chosen by the database URL; the rest of the program
//! sees only the traits in [`traits`]. Both backends run the same SQL text
//! (`$N` placeholders work on both through sqlx) with migrations per backend.
//!
//! Layout, lowest layer first (a module imports only from the ones above it):
//!
//! - `error`: the one error type.
//! - `states`: the enum macro of columns with a fixed set of words.
//! - `connection`: the [`Store`] value, its pools and migrations, URL checks.
//! - one module per concern, each with its trait, its row types and the
//!   trait's implementation on [`Store`]:
//!   - `auth`: sessions, login challenges and the login guard of the HTTPS API;
//!   - `admin`: accounts, sessions and saved settings of the admin web interface;
//!   - `audit`: the audit trail;
//!   - `call_decisions`: how calls held by call control ended, and the
//!     cluster-wide claim of each decision;
//!   - `cluster`: which node owns each Asterisk, and the nodes seen;
//!   - `settings_digests`: what changed in the settings between starts;
//!   - `meta`: identity of the installation;
//!   - `pms`: hotel rooms and wake-up calls;
//!   - `cdr`: call detail records, their queries, export and recordings.
//! - [`traits`]: every trait in one place.

mod admin;
mod audit;
mod auth;
mod call_decisions;
mod cdr;
mod cluster;
mod connection;
mod error;
mod meta;
mod outbox;
mod pms;
mod settings_digests;
mod states;
pub mod traits;

pub use admin::{AdminSession, AdminStore, WebSettings, WebSettingsStore};
pub use audit::{AuditEvent, AuditEventKind, AuditStore};
pub use auth::{ChallengeStore, LoginAttempt, LoginGuardStore, Session, SessionStore};
pub use call_decisions::{CallDecision, Claim, DecisionOutcome, DecisionStore};
pub use cdr::{
    CallBucket, CdrFilter, CdrHistoryStore, CdrMonth, CdrPage, CdrStore, Grouping, NewCdr, Order,
    PageKey, PageLeg, PageQuery, RecordedCdr, RecordedCursor, Retention,
};
pub use cluster::{ClusterStore, ClusterView, Lease, NodeSeen, Owner};
pub use connection::{
    Backend, ConnectOptions, Store, backend_of, check_url, scrub_url_secrets, sqlite_file,
    url_secrets,
};
pub use error::Error;
pub use meta::MetaStore;
pub use outbox::{Backlog, OutboxItem, OutboxStore};
pub use pms::{PmsStore, Room, RoomWrite, Wakeup, WakeupStatus};
pub use settings_digests::SettingsStore;
pub use sqlx::Error as SqlxError;

#[cfg(feature = "testing")]
pub mod testing;
