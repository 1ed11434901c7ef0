//! The login flow of the new HTTPS API: challenge, MD5 token login, sessions
//! with a sliding idle timeout, per-user permitted IPs and the login
//! restriction (lockout of an IP after repeated failures).
//!
//! Everything lives in the store, so sessions survive a restart and several
//! pbxgate processes on one PostgreSQL share them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{
    AuditEvent, AuditEventKind, AuditStore, ChallengeStore, LoginGuardStore, Session, SessionStore,
    Store,
};
use ucm::Status;
use ucm::auth::{format_challenge, format_cookie, is_cookie_syntax, login_token, token_matches};

use crate::clock::now_ms;
use crate::config::{ApiUser, Settings};
use crate::error::ActionError;
use crate::random;

/// How many of a user's open challenges a login is checked against: enough for
/// clients that log in from several workers at once, bounded against floods.
const OPEN_CHALLENGES_CHECKED: i64 = 16;

/// Longest user name a client can log in with: the rule for configured users
/// (`config::validate`), 1 to 64 of `A-Z a-z 0-9 _ -`.
pub const MAX_USERNAME_LEN: usize = 64;

/// Whether `name` could be a configured user's. Other names cannot log in,
/// so nothing is stored for them, and they are cut short in logs and audit.
pub fn plausible_username(name: &str) -> bool {
    (1..=MAX_USERNAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A client-sent user name as logged and audited: at most 64 characters.
pub fn shown_username(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(MAX_USERNAME_LEN) {
        Some((cut, _)) => format!("{}…", &name[..cut]).into(),
        None => name.into(),
    }
}

/// What the per-address challenge bound counts: the IPv4 address, or the /64
/// of an IPv6 one (one client usually holds a whole /64).
pub fn address_group(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// A challenge flood writes a few WAL pages per challenge; a checkpoint every
/// this many keeps the WAL (and so the database's files) from growing toward
/// its 80 MiB automatic checkpoint.
const CHALLENGES_PER_CHECKPOINT: u64 = 64;

/// A request that presented a valid session cookie.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub username: String,
    pub call_control: bool,
    pub permissions: crate::permissions::Permissions,
}

/// What the sessions need of the settings (`[session]`, `[login_restriction]`).
struct SessionSettings {
    idle_timeout: Duration,
    challenge_ttl: Duration,
    session_cache: Duration,
    max_challenges_per_address: u32,
    lockout: crate::config::LockoutSettings,
}

pub struct Auth {
    /// Challenges issued, to checkpoint the SQLite WAL every
    /// [`CHALLENGES_PER_CHECKPOINT`] of them.
    challenges: std::sync::atomic::AtomicU64,
    settings: SessionSettings,
    /// The new API's users and switch in force (changed live by the admin page).
    api: Arc<crate::apiconfig::Current>,
    store: Store,
    cache: SessionCache,
}

/// Sessions recently read from the store. An entry is trusted for
/// `session.cache_ms`, then read again, so a logout or expiry seen by another
/// process sharing the database takes effect here within that time; this
/// process's own logouts take effect at once. It saves a database round trip
/// on nearly every request of a busy client.
#[derive(Default)]
struct SessionCache {
    entries: Mutex<HashMap<String, Cached>>,
}

#[derive(Clone)]
struct Cached {
    username: Arc<str>,
    /// The address the session was issued to; `None` if the stored text is
    /// not an address (then no client can match it).
    ip: Option<IpAddr>,
    /// `last_seen_ms` as last written to or read from the store.
    stored_last_seen: i64,
    /// The latest use seen by this process.
    last_use: i64,
    fetched: Instant,
}

impl SessionCache {
    fn get(&self, cookie: &str, ttl: Duration) -> Option<Cached> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(cookie)
            .filter(|c| c.fetched.elapsed() < ttl)
            .cloned()
    }

    fn put(&self, cookie: &str, entry: Cached) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(cookie.to_owned(), entry);
        }
    }

    fn update(&self, cookie: &str, f: impl FnOnce(&mut Cached)) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.get_mut(cookie)
        {
            f(e);
        }
    }

    fn remove(&self, cookie: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(cookie);
        }
    }

    fn remove_user(&self, username: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| &*e.username != username);
        }
    }

    fn prune(&self, ttl: Duration) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| e.fetched.elapsed() < ttl);
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Auth {
    pub fn new(settings: &Settings, api: Arc<crate::apiconfig::Current>, store: Store) -> Self {
        Auth {
            challenges: std::sync::atomic::AtomicU64::new(0),
            settings: SessionSettings {
                idle_timeout: settings.idle_timeout,
                challenge_ttl: settings.challenge_ttl,
                session_cache: settings.session_cache,
                max_challenges_per_address: settings.max_challenges_per_address,
                lockout: settings.lockout.clone(),
            },
            api,
            store,
            cache: SessionCache::default(),
        }
    }

    /// `-68` while `ip` is under a login restriction.
    async fn check_ban(&self, ip: IpAddr, now: i64) -> Result<(), ActionError> {
        let lock = &self.settings.lockout;
        if lock.max_failures == 0 || lock.whitelist.contains(ip) {
            return Ok(());
        }
        if let Some(until) = self.store.active_ban(&ip.to_string(), now).await? {
            tracing::warn!(%ip, remaining_secs = (until - now) / 1000, "login refused: address is under login restriction");
            return Err(ActionError::Status(Status::LoginRestriction));
        }
        Ok(())
    }

    /// Issues a challenge. Unknown users get one too, so that the answer does
    /// not tell which user names exist; a name no configured user can have
    /// (by syntax) gets `-1` and nothing is stored. An address holds at most
    /// `session.max_challenges_per_address`.
    pub async fn challenge(&self, user: &str, ip: IpAddr) -> Result<String, ActionError> {
        if !plausible_username(user) {
            tracing::warn!(user = %shown_username(user), bytes = user.len(), %ip, "challenge refused: not a possible user name");
            return Err(ActionError::Explained(
                Status::InvalidParameters,
                format!("user: 1 to {MAX_USERNAME_LEN} letters, digits, '_' or '-'"),
            ));
        }
        let now = now_ms();
        self.check_ban(ip, now).await?;
        let challenge = format_challenge(random::u64()?);
        let expires = now.saturating_add(ms(self.settings.challenge_ttl));
        let dropped = self
            .store
            .insert_challenge_bounded(
                &challenge,
                user,
                &ip.to_string(),
                &address_group(ip),
                expires,
                self.settings.max_challenges_per_address,
            )
            .await?;
        if dropped > 0 {
            tracing::debug!(%ip, dropped, "challenge: the address's oldest open challenges dropped");
        }
        let n = self
            .challenges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % CHALLENGES_PER_CHECKPOINT == CHALLENGES_PER_CHECKPOINT - 1 {
            self.store.checkpoint_wal().await?;
        }
        Ok(challenge)
    }

    /// Checks `token` against the user's open challenges and opens a session.
    pub async fn login(&self, user: &str, token: &str, ip: IpAddr) -> Result<String, ActionError> {
        let now = now_ms();
        // Counted before it is checked: concurrent logins cannot outrun the restriction.
        self.begin_attempt(ip).await?;
        let ip_text = ip.to_string();
        let candidates = self
            .store
            .open_challenges(user, &ip_text, now, OPEN_CHALLENGES_CHECKED)
            .await?;
        let api = self.api.get();
        let account = api.user(user);
        let outcome = match account {
            None => Err("unknown-user"),
            Some(a) if a.password.is_empty() => Err("no-password-configured"),
            Some(a) if !a.permitted_ips.permits_or_empty(ip) => Err("ip-not-permitted"),
            Some(_) if candidates.is_empty() => Err("no-open-challenge"),
            Some(a) => match matching_challenge(a, &candidates, token) {
                Some(ch) => {
                    if self.store.consume_challenge(ch).await? {
                        Ok(())
                    } else {
                        Err("challenge-already-used")
                    }
                }
                None => Err("wrong-password"),
            },
        };
        match outcome {
            Ok(()) => {
                let cookie = format_cookie(random::u64()?, now / 1000);
                self.store
                    .create_session(&Session {
                        cookie: cookie.clone(),
                        username: user.to_owned(),
                        ip: ip_text.clone(),
                        created_ms: now,
                        last_seen_ms: now,
                    })
                    .await?;
                if self.settings.lockout.max_failures > 0 {
                    self.store.clear_login_failures(&ip_text).await?;
                }
                self.audit(AuditEventKind::Login, user, &ip_text, "ok", "")
                    .await;
                tracing::info!(user = %shown_username(user), %ip, "login");
                Ok(cookie)
            }
            Err(reason) => {
                // A failed attempt burns the challenges it could have used, so
                // each guess costs a new challenge.
                for c in &candidates {
                    self.store.consume_challenge(c).await?;
                }
                self.audit(AuditEventKind::Login, user, &ip_text, reason, "")
                    .await;
                tracing::warn!(user = %shown_username(user), %ip, reason, "login failed");
                Err(ActionError::Status(Status::WrongAccountOrPassword))
            }
        }
    }

    /// Counts a login attempt from `ip` before its password is checked,
    /// atomically with the restriction check, so that concurrent attempts
    /// cannot outrun the restriction: `-68` while `ip` is restricted or once
    /// it has used up its attempts. End it with [`Auth::finish_attempt`].
    pub async fn begin_attempt(&self, ip: IpAddr) -> Result<(), ActionError> {
        let lock = &self.settings.lockout;
        if lock.max_failures == 0 || lock.whitelist.contains(ip) {
            return Ok(());
        }
        let attempt = self
            .store
            .begin_login_attempt(
                &ip.to_string(),
                now_ms(),
                ms(lock.window),
                i64::from(lock.max_failures),
                ms(lock.ban),
            )
            .await?;
        match attempt {
            store::LoginAttempt::Allowed => Ok(()),
            store::LoginAttempt::Last => {
                tracing::warn!(%ip, failures = lock.max_failures, ban_secs = lock.ban.as_secs(), "login restriction: address refused after repeated failed logins (unless this last attempt succeeds)");
                self.audit(
                    AuditEventKind::LoginRestriction,
                    "",
                    &ip.to_string(),
                    "banned",
                    &format!("{} s", lock.ban.as_secs()),
                )
                .await;
                Ok(())
            }
            store::LoginAttempt::Refused(until) => {
                tracing::warn!(%ip, remaining_secs = (until - now_ms()) / 1000, "login refused: address is under login restriction");
                Err(ActionError::Status(Status::LoginRestriction))
            }
        }
    }

    /// The outcome of an attempt begun with [`Auth::begin_attempt`]: the
    /// audit trail and log line; a success clears the address's count (a
    /// failure was already counted when the attempt began).
    pub async fn finish_attempt(
        &self,
        user: &str,
        ip: IpAddr,
        outcome: Result<(), &str>,
        detail: &str,
    ) -> Result<(), ActionError> {
        let ip_text = ip.to_string();
        match outcome {
            Ok(()) => {
                if self.settings.lockout.max_failures > 0 {
                    self.store.clear_login_failures(&ip_text).await?;
                }
                self.audit(AuditEventKind::Login, user, &ip_text, "ok", detail)
                    .await;
                tracing::info!(user = %shown_username(user), %ip, via = detail, "login");
            }
            Err(reason) => {
                self.audit(AuditEventKind::Login, user, &ip_text, reason, detail)
                    .await;
                tracing::warn!(user = %shown_username(user), %ip, reason, via = detail, "login failed");
            }
        }
        Ok(())
    }

    /// The login restriction for a login checked elsewhere (the event
    /// websocket, whose challenge lives in the socket): `-68` while `ip` is
    /// restricted.
    pub async fn restriction(&self, ip: IpAddr) -> Result<(), ActionError> {
        self.check_ban(ip, now_ms()).await
    }

    /// Records the outcome of a login checked elsewhere, as [`Auth::login`]
    /// does for its own: the audit trail (`detail` says where), the log line,
    /// and the failure count of the login restriction.
    pub async fn record_login(
        &self,
        user: &str,
        ip: IpAddr,
        outcome: Result<(), &str>,
        detail: &str,
    ) -> Result<(), ActionError> {
        self.finish_attempt(user, ip, outcome, detail).await?;
        if outcome.is_err() {
            self.record_failure(ip, now_ms()).await?;
        }
        Ok(())
    }

    async fn record_failure(&self, ip: IpAddr, now: i64) -> Result<(), ActionError> {
        let lock = &self.settings.lockout;
        if lock.max_failures == 0 || lock.whitelist.contains(ip) {
            return Ok(());
        }
        let banned = self
            .store
            .record_login_failure(
                &ip.to_string(),
                now,
                ms(lock.window),
                i64::from(lock.max_failures),
                ms(lock.ban),
            )
            .await?;
        if banned.is_some() {
            tracing::warn!(%ip, failures = lock.max_failures, ban_secs = lock.ban.as_secs(), "login restriction: address refused after repeated failed logins");
            self.audit(
                AuditEventKind::LoginRestriction,
                "",
                &ip.to_string(),
                "banned",
                &format!("{} s", lock.ban.as_secs()),
            )
            .await;
        }
        Ok(())
    }

    /// Validates a cookie presented from `ip` and slides its idle timeout.
    pub async fn session(&self, cookie: &str, ip: IpAddr) -> Result<Authenticated, ActionError> {
        if !is_cookie_syntax(cookie) {
            return Err(ActionError::Status(Status::CookieError));
        }
        let now = now_ms();
        let timeout = ms(self.settings.idle_timeout);
        let ttl = self.settings.session_cache;
        let mut entry = match self.cache.get(cookie, ttl) {
            // A session that looks expired is checked against the store: another
            // process may have used it since.
            Some(c) if now - c.last_use.max(c.stored_last_seen) <= timeout => c,
            cached => match self.load(cookie, cached.as_ref()).await? {
                Some(c) => c,
                None => return Err(ActionError::Status(Status::CookieError)),
            },
        };
        let api = self.api.get();
        let Some(user) = api.user(&entry.username) else {
            // The user was removed from the configuration.
            self.end(cookie).await?;
            return Err(ActionError::Status(Status::CookieError));
        };
        if now - entry.last_use.max(entry.stored_last_seen) > timeout {
            self.end(cookie).await?;
            return Err(ActionError::Status(Status::CookieError));
        }
        if entry.ip != Some(ip) {
            tracing::warn!(user = %entry.username, issued_to = ?entry.ip, used_from = %ip, "cookie refused: used from another address than it was issued to");
            return Err(ActionError::Status(Status::CookieError));
        }
        if !user.permitted_ips.permits_or_empty(ip) {
            return Err(ActionError::Status(Status::CookieError));
        }
        entry.last_use = now;
        // Write the sliding timeout only now and then: precision of a twentieth
        // of the timeout (at most 5 s) for far fewer writes.
        let granularity = (timeout / 20).min(5_000);
        let write = now - entry.stored_last_seen >= granularity;
        if write {
            self.store.touch_session(cookie, now).await?;
            entry.stored_last_seen = now;
        }
        self.cache.update(cookie, |c| {
            c.last_use = c.last_use.max(now);
            if write {
                c.stored_last_seen = c.stored_last_seen.max(now);
            }
        });
        Ok(Authenticated {
            username: entry.username.to_string(),
            call_control: user.call_control,
            permissions: user.permissions.clone(),
        })
    }

    /// Reads a session from the store into the cache.
    async fn load(
        &self,
        cookie: &str,
        previous: Option<&Cached>,
    ) -> Result<Option<Cached>, ActionError> {
        let Some(s) = self.store.session(cookie).await? else {
            self.cache.remove(cookie);
            return Ok(None);
        };
        let entry = Cached {
            last_use: previous.map_or(s.last_seen_ms, |p| p.last_use.max(s.last_seen_ms)),
            username: Arc::from(s.username),
            ip: s.ip.parse().ok(),
            stored_last_seen: s.last_seen_ms,
            fetched: Instant::now(),
        };
        if !self.settings.session_cache.is_zero() {
            self.cache.put(cookie, entry.clone());
        }
        Ok(Some(entry))
    }

    async fn end(&self, cookie: &str) -> Result<(), ActionError> {
        self.cache.remove(cookie);
        self.store.delete_session(cookie).await?;
        Ok(())
    }

    /// Ends the sessions of `users` (their password changed or they were
    /// removed), logging what it did.
    pub async fn end_sessions_of_users(&self, users: &[String]) {
        for user in users {
            match self.end_sessions_of(user).await {
                Ok(n) if n > 0 => tracing::info!(
                    user = %user,
                    sessions = n,
                    "ended sessions: the user's password changed or the user was removed"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(user = %user, error = %e, "cannot end the user's sessions")
                }
            }
        }
    }

    /// Ends every session of `username` (its password changed or it was
    /// removed): in the store and in this process's cache.
    pub async fn end_sessions_of(&self, username: &str) -> Result<u64, store::Error> {
        self.cache.remove_user(username);
        let n = self.store.delete_sessions_of(username).await?;
        self.cache.remove_user(username);
        Ok(n)
    }

    pub async fn logout(&self, cookie: &str, ip: IpAddr) -> Result<(), ActionError> {
        let who = self.session(cookie, ip).await?;
        self.end(cookie).await?;
        self.audit(
            AuditEventKind::Logout,
            &who.username,
            &ip.to_string(),
            "ok",
            "",
        )
        .await;
        Ok(())
    }

    /// Drops what has expired. Run periodically.
    pub async fn prune(&self) -> Result<(), store::Error> {
        self.cache.prune(self.settings.session_cache);
        let now = now_ms();
        self.store
            .delete_idle_sessions(now - ms(self.settings.idle_timeout))
            .await?;
        self.store.delete_expired_challenges(now).await?;
        self.store
            .prune_login_guard(now - ms(self.settings.lockout.window), now)
            .await?;
        // What the deletes freed goes back to the file system (SQLite).
        self.store.reclaim_space().await?;
        Ok(())
    }

    async fn audit(&self, event: AuditEventKind, user: &str, ip: &str, result: &str, detail: &str) {
        let e = AuditEvent {
            at_ms: now_ms(),
            event,
            // Failed logins are audited with whatever name was sent.
            username: shown_username(user).into_owned(),
            ip: ip.into(),
            result: result.into(),
            detail: detail.into(),
        };
        // The audit trail must not turn a login into an error; say so loudly instead.
        if let Err(err) = self.store.record_audit(&e).await {
            tracing::error!(event = event.as_str(), user = %e.username, ip, error = %err, "cannot write the audit trail");
        }
    }
}

fn matching_challenge<'a>(
    user: &ApiUser,
    candidates: &'a [String],
    token: &str,
) -> Option<&'a str> {
    // Check every candidate, so the time taken does not depend on which matched.
    let mut found = None;
    for c in candidates {
        let expected = login_token(c, user.password.expose().as_bytes());
        if token_matches(&expected, token) && found.is_none() {
            found = Some(c.as_str());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_the_configured_users_rule() {
        for ok in ["cdrapi", "a", "A_b-9", &"x".repeat(64)] {
            assert!(plausible_username(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "ä",
            "a\0",
            "a;b",
            &"x".repeat(65),
            &"x".repeat(1 << 20),
        ] {
            assert!(!plausible_username(bad), "{:?}", &bad[..bad.len().min(10)]);
        }
    }

    #[test]
    fn names_are_cut_for_logs_and_audit() {
        assert_eq!(shown_username("cdrapi"), "cdrapi");
        let long = "é".repeat(100_000);
        let shown = shown_username(&long);
        assert_eq!(shown.chars().count(), 65);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn challenges_are_counted_per_ipv4_address_and_ipv6_64() {
        let g = |s: &str| address_group(s.parse().unwrap());
        assert_eq!(g("127.0.0.1"), "127.0.0.1");
        assert_ne!(g("127.0.0.1"), g("127.0.0.2"));
        assert_eq!(g("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(g("2001:db8:1:2:ffff::9"), g("2001:db8:1:2::1"));
        assert_ne!(g("2001:db8:1:3::1"), g("2001:db8:1:2::1"));
        assert_eq!(g("::ffff:10.0.0.1"), "10.0.0.1");
    }
}
