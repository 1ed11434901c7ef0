//! What the rest of pbxgate needs from persistence, in one place. Times are
//! Unix milliseconds. Each trait is defined, with its row types and its
//! implementation on [`Store`](crate::Store), in the module of its concern.

pub use crate::admin::{AdminSession, AdminStore, WebSettings, WebSettingsStore};
pub use crate::audit::{AuditEvent, AuditEventKind, AuditStore};
pub use crate::auth::{ChallengeStore, LoginAttempt, LoginGuardStore, Session, SessionStore};
pub use crate::call_decisions::{CallDecision, Claim, DecisionOutcome, DecisionStore};
pub use crate::cdr::{CdrHistoryStore, CdrMonth, CdrStore, NewCdr, Retention};
pub use crate::cluster::{ClusterStore, ClusterView, Lease, NodeSeen, Owner};
pub use crate::meta::MetaStore;
pub use crate::pms::{PmsStore, Room, RoomWrite, Wakeup, WakeupStatus};
pub use crate::settings_digests::SettingsStore;
