//! What the rest of pbxgate needs from persistence. Times are Unix milliseconds.

use async_trait::async_trait;

use crate::Error;

/// A logged-in session of the new HTTPS API.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub cookie: String,
    pub username: String,
    pub ip: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

// The cookie is a bearer secret: keep it out of Debug output and logs.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("cookie", &"<redacted>")
            .field("username", &self.username)
            .field("ip", &self.ip)
            .field("created_ms", &self.created_ms)
            .field("last_seen_ms", &self.last_seen_ms)
            .finish()
    }
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> Result<(), Error>;
    async fn session(&self, cookie: &str) -> Result<Option<Session>, Error>;
    /// Moves `last_seen_ms` forward (never backward).
    async fn touch_session(&self, cookie: &str, last_seen_ms: i64) -> Result<(), Error>;
    /// Returns whether a session was removed.
    async fn delete_session(&self, cookie: &str) -> Result<bool, Error>;
    async fn delete_sessions_of(&self, username: &str) -> Result<u64, Error>;
    /// Removes sessions idle since before `last_seen_before_ms`.
    async fn delete_idle_sessions(&self, last_seen_before_ms: i64) -> Result<u64, Error>;
}

#[async_trait]
pub trait ChallengeStore: Send + Sync {
    async fn insert_challenge(
        &self,
        challenge: &str,
        username: &str,
        ip: &str,
        expires_ms: i64,
    ) -> Result<(), Error>;
    /// The newest unexpired challenges issued to `username` at `ip`, at most `limit`.
    async fn open_challenges(
        &self,
        username: &str,
        ip: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, Error>;
    /// Consumes a challenge; false if another request consumed it first.
    async fn consume_challenge(&self, challenge: &str) -> Result<bool, Error>;
    async fn delete_expired_challenges(&self, now_ms: i64) -> Result<u64, Error>;
}

#[async_trait]
pub trait LoginGuardStore: Send + Sync {
    /// Records a failed login from `ip`. When `max_failures` failures fall
    /// within the window, the IP is banned until `now_ms + ban_ms`, its
    /// failures are cleared, and the end of the ban is returned.
    async fn record_login_failure(
        &self,
        ip: &str,
        now_ms: i64,
        window_ms: i64,
        max_failures: i64,
        ban_ms: i64,
    ) -> Result<Option<i64>, Error>;
    /// The end of the ban on `ip`, if one is in force at `now_ms`.
    async fn active_ban(&self, ip: &str, now_ms: i64) -> Result<Option<i64>, Error>;
    async fn clear_login_failures(&self, ip: &str) -> Result<(), Error>;
    /// Drops failures older than the window and bans that have ended.
    async fn prune_login_guard(&self, failures_before_ms: i64, now_ms: i64) -> Result<(), Error>;
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at_ms: i64,
    /// `login`, `logout`, `settings`, ...
    pub event: String,
    pub username: String,
    pub ip: String,
    /// `ok`, `wrong-password`, `ip-not-permitted`, `changed`, ...
    pub result: String,
    pub detail: String,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn record_audit(&self, event: &AuditEvent) -> Result<(), Error>;
    /// The newest `limit` events, newest first.
    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEvent>, Error>;
}

/// How one inbound call held by call control ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallDecision {
    pub held_at_ms: i64,
    pub decided_at_ms: i64,
    /// The channel name the API uses, e.g. `PJSIP/trunk-00000002`.
    pub channel: String,
    /// Asterisk's unique id of the channel.
    pub channel_id: String,
    pub caller: String,
    pub did: String,
    /// `accepted`, `refused`, `timeout`, `hangup`, `backstop` or `failed`.
    pub outcome: String,
    /// The API user, or `timer`, `restart`, `asterisk`, `caller`.
    pub decided_by: String,
    /// Microseconds from the decision to Asterisk's confirmation.
    pub apply_us: i64,
    pub detail: String,
}

#[async_trait]
pub trait DecisionStore: Send + Sync {
    async fn record_decision(&self, decision: &CallDecision) -> Result<(), Error>;
    /// The newest `limit` decisions, newest first.
    async fn recent_decisions(&self, limit: i64) -> Result<Vec<CallDecision>, Error>;
}

#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// Replaces the stored settings digests with `digests` and returns the keys
    /// whose digest changed, appeared or disappeared, sorted.
    async fn replace_settings_digests(
        &self,
        digests: &[(String, String)],
    ) -> Result<Vec<String>, Error>;
}

#[async_trait]
pub trait MetaStore: Send + Sync {
    /// The value stored under `key`; `init` is stored first when there is none,
    /// so that concurrent processes agree on one value.
    async fn meta_get_or_init(&self, key: &str, init: &str) -> Result<String, Error>;
}

/// A CDR ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCdr {
    /// Stable identity of the Asterisk CDR: the same whichever way it arrives.
    pub dedupe_key: String,
    /// Leg start, UTC milliseconds.
    pub start_ms: i64,
    /// Start of the call (session) the leg belongs to, UTC milliseconds: the
    /// same for every leg of a session (cdrapi orders and pages entries by it).
    pub call_ms: i64,
    /// Leg end, UTC milliseconds (`timeFilterType=End`).
    pub end_ms: i64,
    /// The UCM record; its `AcctId` is assigned by the store.
    pub record: ucm::cdr::CdrRecord,
}

#[async_trait]
pub trait CdrStore: Send + Sync {
    /// Stores a batch in one transaction; records whose key is already stored
    /// are skipped. Returns how many were new.
    async fn insert_cdrs(&self, batch: &[NewCdr]) -> Result<u64, Error>;
    /// One page of `cdrapi` entries, legs in entry order.
    async fn cdr_page(&self, q: &crate::PageQuery<'_>) -> Result<crate::CdrPage, Error>;
    /// The database's plan for that page query, one line per step (tests and
    /// docs show that filters seek indexes).
    async fn cdr_query_plan(&self, q: &crate::PageQuery<'_>) -> Result<String, Error>;
    /// Every leg matching `filter` after `after`, in entry order, as pages
    /// of about `page` legs sent one at a time; dropping the receiver stops
    /// the export. An error ends the stream.
    fn cdr_export(
        &self,
        filter: crate::CdrFilter,
        after: Option<crate::PageKey>,
        page: u32,
    ) -> tokio::sync::mpsc::Receiver<Result<crate::CdrPage, Error>>;
    async fn cdr_count(&self) -> Result<i64, Error>;
    /// The newest `limit` records, newest first, with `AcctId` filled in.
    async fn recent_cdrs(&self, limit: i64) -> Result<Vec<ucm::cdr::CdrRecord>, Error>;
    async fn checkpoint(&self, name: &str) -> Result<Option<String>, Error>;
    async fn set_checkpoint(&self, name: &str, value: &str) -> Result<(), Error>;
}
