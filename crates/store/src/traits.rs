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
    /// Stores a challenge for `ip`, whose `group` (the address, or an IPv6
    /// /64) then holds at most `max_per_group` challenges: the oldest beyond
    /// are dropped, in the same transaction. Returns how many were dropped.
    async fn insert_challenge_bounded(
        &self,
        challenge: &str,
        username: &str,
        ip: &str,
        group: &str,
        expires_ms: i64,
        max_per_group: u32,
    ) -> Result<u64, Error>;
    /// Challenges held by `group` (tests and benchmarks).
    async fn challenges_of_group(&self, group: &str) -> Result<u64, Error>;
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

/// What [`LoginGuardStore::begin_login_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted; check it.
    Allowed,
    /// Counted as the last one allowed: the ban is already set (lifted if
    /// this attempt succeeds); check it.
    Last,
    /// Under a ban until this time: refuse without checking (not counted).
    Refused(i64),
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
    /// Counts a login attempt from `ip` as a failure *before* it is checked,
    /// in one transaction with the ban check, so that concurrent attempts
    /// cannot all pass a check made before any of them failed. A success
    /// then clears it ([`LoginGuardStore::clear_login_failures`]).
    async fn begin_login_attempt(
        &self,
        ip: &str,
        now_ms: i64,
        window_ms: i64,
        max_failures: i64,
        ban_ms: i64,
    ) -> Result<LoginAttempt, Error>;
    /// The end of the ban on `ip`, if one is in force at `now_ms`.
    async fn active_ban(&self, ip: &str, now_ms: i64) -> Result<Option<i64>, Error>;
    /// A successful login: forgets `ip`'s failures and lifts a ban its own
    /// last allowed attempt set ([`LoginAttempt::Last`]).
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
    /// The stored settings digests, by key.
    async fn settings_digests(&self) -> Result<Vec<(String, String)>, Error>;

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
    /// A page of entries as [`cdr_page`](Self::cdr_page) gives them, or
    /// newest first (`offset` and `after` then count from the newest).
    async fn cdr_page_in(
        &self,
        q: &crate::PageQuery<'_>,
        order: crate::Order,
    ) -> Result<crate::CdrPage, Error>;
    /// How many entries match `filter` (what `numRecords`/`offset` count).
    async fn cdr_entry_count(
        &self,
        filter: &crate::CdrFilter,
        grouping: crate::Grouping,
    ) -> Result<u64, Error>;
    /// Calls (sessions) matching `filter` per `bucket_ms` of their start,
    /// answered or not; buckets without calls are left out.
    async fn cdr_call_buckets(
        &self,
        filter: &crate::CdrFilter,
        bucket_ms: i64,
    ) -> Result<Vec<crate::CallBucket>, Error>;
    /// The database's plans of the newest-first page, the entry count and
    /// the call buckets for `q`'s filter (tests check they use indexes).
    async fn cdr_browse_plans(
        &self,
        q: &crate::PageQuery<'_>,
    ) -> Result<Vec<(&'static str, String)>, Error>;
    /// The newest `limit` records, newest first, with `AcctId` filled in.
    async fn recent_cdrs(&self, limit: i64) -> Result<Vec<ucm::cdr::CdrRecord>, Error>;
    async fn checkpoint(&self, name: &str) -> Result<Option<String>, Error>;
    async fn set_checkpoint(&self, name: &str, value: &str) -> Result<(), Error>;
}

/// A hotel room driven by the PMS API. Booleans are stored as 0/1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Room {
    /// The room number the PMS uses (`<address>`).
    pub address: String,
    /// The room's phone.
    pub extension: String,
    pub checked_in: bool,
    pub guest_name: String,
    pub language: String,
    pub vip: bool,
    /// `YYYYMMDD`; empty when vacant.
    pub arrival: String,
    pub departure: String,
    /// Class of service, 1 to 4.
    pub cos: i64,
    pub dnd: bool,
    /// Maid status code; empty when never set.
    pub room_status: String,
    pub mwi: bool,
    /// The last check-in; 0 never.
    pub checked_in_ms: i64,
    pub updated_ms: i64,
    /// Incremented by every write; 0 for a room not stored yet.
    pub version: i64,
}

/// What [`PmsStore::write_room`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomWrite {
    /// Stored; the row's new version.
    Written(i64),
    /// Another writer changed (or created) the room since it was read.
    Conflict,
    /// Another room has this extension.
    ExtensionTaken,
}

/// A wake-up call. `status`: `pending`, `dialing`, `answered`, `failed`,
/// `cancelled` or `missed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wakeup {
    pub id: i64,
    pub address: String,
    pub due_ms: i64,
    pub status: String,
    /// Calls placed so far.
    pub attempts: i64,
    /// How the last attempt ended: `answered`, `no answer`, `busy`, `failed`, ...
    pub outcome: String,
    pub next_attempt_ms: i64,
    /// The pbxgate process dialling it (status `dialing`).
    pub claimed_by: String,
    pub claim_until_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[async_trait]
pub trait PmsStore: Send + Sync {
    async fn room(&self, address: &str) -> Result<Option<Room>, Error>;
    async fn room_by_extension(&self, extension: &str) -> Result<Option<Room>, Error>;
    /// Every room, by address.
    async fn rooms(&self) -> Result<Vec<Room>, Error>;
    /// Stores `room` if the stored row still has version `room.version`
    /// (0: no row yet). `updated_ms` is taken from `room`.
    async fn write_room(&self, room: &Room) -> Result<RoomWrite, Error>;
    /// A pending wake-up call; `None` when the room already has an open one
    /// at that time.
    async fn add_wakeup(
        &self,
        address: &str,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, Error>;
    async fn wakeup(&self, id: i64) -> Result<Option<Wakeup>, Error>;
    /// The room's wake-up calls due at or after `from_ms`, earliest first, at most `limit`.
    async fn wakeups_of(
        &self,
        address: &str,
        from_ms: i64,
        limit: i64,
    ) -> Result<Vec<Wakeup>, Error>;
    /// Cancels the room's open (pending or dialing) calls, or only the one
    /// due at `due_ms`. Returns how many.
    async fn cancel_wakeups(
        &self,
        address: &str,
        due_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<u64, Error>;
    /// Pending calls whose next attempt is due at `now_ms`, earliest first.
    async fn due_wakeups(&self, now_ms: i64, limit: i64) -> Result<Vec<Wakeup>, Error>;
    /// Claims a due pending call for `node` until `until_ms` (status
    /// `dialing`, one more attempt). `None` when another process claimed it
    /// first or it is no longer pending; else the attempt's number.
    async fn claim_wakeup(
        &self,
        id: i64,
        node: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<i64>, Error>;
    /// Ends attempt `attempt` of a call `node` holds: `status` `pending`
    /// (retried at `next_attempt_ms`), `answered` or `failed`. False when the
    /// call was cancelled meanwhile or is not held by `node`.
    #[allow(clippy::too_many_arguments)]
    async fn finish_wakeup(
        &self,
        id: i64,
        node: &str,
        attempt: i64,
        status: &str,
        outcome: &str,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<bool, Error>;
    /// Marks a pending call `missed` (too late to place). False when it is no longer pending.
    async fn miss_wakeup(&self, id: i64, now_ms: i64) -> Result<bool, Error>;
    /// Calls left `dialing` by a process that stopped: claims that ran out
    /// before `now_ms` go back to `pending` (due now), or to `failed` when
    /// they had `max_attempts` attempts. Returns how many.
    async fn release_stale_wakeups(&self, now_ms: i64, max_attempts: i64) -> Result<u64, Error>;
}

/// A session of the admin web interface.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminSession {
    /// The cookie value: a bearer secret.
    pub id: String,
    pub username: String,
    /// The token every form of the session must carry.
    pub csrf: String,
    pub ip: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}

// The id and the CSRF token are secrets: keep them out of Debug output and logs.
impl std::fmt::Debug for AdminSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSession")
            .field("id", &"<redacted>")
            .field("username", &self.username)
            .field("csrf", &"<redacted>")
            .field("ip", &self.ip)
            .field("created_ms", &self.created_ms)
            .field("last_seen_ms", &self.last_seen_ms)
            .finish()
    }
}

/// A section of settings saved by the admin web interface.
#[derive(Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// JSON; may hold secrets (API passwords, a TLS key).
    pub body: String,
    pub version: i64,
    pub updated_ms: i64,
    pub updated_by: String,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("body", &"<redacted>")
            .field("version", &self.version)
            .field("updated_ms", &self.updated_ms)
            .field("updated_by", &self.updated_by)
            .finish()
    }
}

#[async_trait]
pub trait WebSettingsStore: Send + Sync {
    async fn web_settings(&self, section: &str) -> Result<Option<WebSettings>, Error>;
    /// Saves `body` if the stored version is still `expected_version` (0: no
    /// row yet). Returns the new version, or `None` when someone else saved
    /// first.
    async fn save_web_settings(
        &self,
        section: &str,
        body: &str,
        expected_version: i64,
        updated_ms: i64,
        updated_by: &str,
    ) -> Result<Option<i64>, Error>;
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Stores the password hash of an admin account, creating the account if
    /// needed. Returns true when the account is new.
    async fn set_admin_password(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, Error>;
    /// The stored password hash (PHC string) of an admin account.
    async fn admin_password_hash(&self, username: &str) -> Result<Option<String>, Error>;
    async fn create_admin_session(&self, session: &AdminSession) -> Result<(), Error>;
    async fn admin_session(&self, id: &str) -> Result<Option<AdminSession>, Error>;
    /// Moves `last_seen_ms` forward (never backward).
    async fn touch_admin_session(&self, id: &str, last_seen_ms: i64) -> Result<(), Error>;
    /// Returns whether a session was removed.
    async fn delete_admin_session(&self, id: &str) -> Result<bool, Error>;
    async fn delete_admin_sessions_of(&self, username: &str) -> Result<u64, Error>;
    /// Removes sessions idle since before `last_seen_before_ms`.
    async fn delete_idle_admin_sessions(&self, last_seen_before_ms: i64) -> Result<u64, Error>;
}
