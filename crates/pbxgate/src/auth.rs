//! The login flow of the new HTTPS API: challenge, MD5 token login, sessions
//! with a sliding idle timeout, per-user permitted IPs and the login
//! restriction (lockout of an IP after repeated failures).
//!
//! Everything lives in the store, so sessions survive a restart and several
//! pbxgate processes on one PostgreSQL share them.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use store::{
    AuditEvent, AuditStore, ChallengeStore, LoginGuardStore, Session, SessionStore, Store,
};
use ucm::Status;
use ucm::auth::{format_challenge, format_cookie, is_cookie_syntax, login_token, token_matches};

use crate::config::{ApiUser, Settings};
use crate::error::Error;
use crate::random;

/// How many of a user's open challenges a login is checked against: enough for
/// clients that log in from several workers at once, bounded against floods.
const OPEN_CHALLENGES_CHECKED: i64 = 16;

/// Why a request was refused, as the client sees it.
#[derive(Debug)]
pub enum Refusal {
    Status(Status),
    Internal(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Internal(e)
    }
}

impl From<store::Error> for Refusal {
    fn from(e: store::Error) -> Self {
        Refusal::Internal(Error::Store(e))
    }
}

impl Refusal {
    pub fn status(&self) -> Status {
        match self {
            Refusal::Status(s) => *s,
            Refusal::Internal(e) => e.status(),
        }
    }
}

/// A request that presented a valid session cookie.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub username: String,
    pub call_control: bool,
}

pub struct Auth {
    settings: Arc<Settings>,
    store: Store,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Auth {
    pub fn new(settings: Arc<Settings>, store: Store) -> Self {
        Auth { settings, store }
    }

    /// `-68` while `ip` is under a login restriction.
    async fn check_ban(&self, ip: IpAddr, now: i64) -> Result<(), Refusal> {
        let lock = &self.settings.lockout;
        if lock.max_failures == 0 || lock.whitelist.contains(ip) {
            return Ok(());
        }
        if let Some(until) = self.store.active_ban(&ip.to_string(), now).await? {
            tracing::warn!(%ip, remaining_secs = (until - now) / 1000, "login refused: address is under login restriction");
            return Err(Refusal::Status(Status::LoginRestriction));
        }
        Ok(())
    }

    /// Issues a challenge. Unknown users get one too, so that the answer does
    /// not tell which user names exist.
    pub async fn challenge(&self, user: &str, ip: IpAddr) -> Result<String, Refusal> {
        let now = now_ms();
        self.check_ban(ip, now).await?;
        let challenge = format_challenge(random::u64()?);
        let expires = now.saturating_add(ms(self.settings.challenge_ttl));
        self.store
            .insert_challenge(&challenge, user, &ip.to_string(), expires)
            .await?;
        Ok(challenge)
    }

    /// Checks `token` against the user's open challenges and opens a session.
    pub async fn login(&self, user: &str, token: &str, ip: IpAddr) -> Result<String, Refusal> {
        let now = now_ms();
        self.check_ban(ip, now).await?;
        let ip_text = ip.to_string();
        let candidates = self
            .store
            .open_challenges(user, &ip_text, now, OPEN_CHALLENGES_CHECKED)
            .await?;
        let account = self.settings.user(user);
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
                self.audit("login", user, &ip_text, "ok", "").await;
                tracing::info!(user, %ip, "login");
                Ok(cookie)
            }
            Err(reason) => {
                // A failed attempt burns the challenges it could have used, so
                // each guess costs a new challenge.
                for c in &candidates {
                    self.store.consume_challenge(c).await?;
                }
                self.audit("login", user, &ip_text, reason, "").await;
                tracing::warn!(user, %ip, reason, "login failed");
                self.record_failure(ip, now).await?;
                Err(Refusal::Status(Status::WrongAccountOrPassword))
            }
        }
    }

    async fn record_failure(&self, ip: IpAddr, now: i64) -> Result<(), Refusal> {
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
                "login-restriction",
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
    pub async fn session(&self, cookie: &str, ip: IpAddr) -> Result<Authenticated, Refusal> {
        if !is_cookie_syntax(cookie) {
            return Err(Refusal::Status(Status::CookieError));
        }
        let Some(s) = self.store.session(cookie).await? else {
            return Err(Refusal::Status(Status::CookieError));
        };
        let now = now_ms();
        let timeout = ms(self.settings.idle_timeout);
        let Some(user) = self.settings.user(&s.username) else {
            // The user was removed from the configuration.
            self.store.delete_session(cookie).await?;
            return Err(Refusal::Status(Status::CookieError));
        };
        if now - s.last_seen_ms > timeout {
            self.store.delete_session(cookie).await?;
            return Err(Refusal::Status(Status::CookieError));
        }
        if s.ip != ip.to_string() {
            tracing::warn!(user = s.username, issued_to = s.ip, used_from = %ip, "cookie refused: used from another address than it was issued to");
            return Err(Refusal::Status(Status::CookieError));
        }
        if !user.permitted_ips.permits_or_empty(ip) {
            return Err(Refusal::Status(Status::CookieError));
        }
        // Write the sliding timeout only now and then: precision of a twentieth
        // of the timeout (at most 5 s) for far fewer writes.
        let granularity = (timeout / 20).min(5_000);
        if now - s.last_seen_ms >= granularity {
            self.store.touch_session(cookie, now).await?;
        }
        Ok(Authenticated {
            username: s.username,
            call_control: user.call_control,
        })
    }

    pub async fn logout(&self, cookie: &str, ip: IpAddr) -> Result<(), Refusal> {
        let who = self.session(cookie, ip).await?;
        self.store.delete_session(cookie).await?;
        self.audit("logout", &who.username, &ip.to_string(), "ok", "")
            .await;
        Ok(())
    }

    /// Drops what has expired. Run periodically.
    pub async fn prune(&self) -> Result<(), store::Error> {
        let now = now_ms();
        self.store
            .delete_idle_sessions(now - ms(self.settings.idle_timeout))
            .await?;
        self.store.delete_expired_challenges(now).await?;
        self.store
            .prune_login_guard(now - ms(self.settings.lockout.window), now)
            .await?;
        Ok(())
    }

    async fn audit(&self, event: &str, user: &str, ip: &str, result: &str, detail: &str) {
        let e = AuditEvent {
            at_ms: now_ms(),
            event: event.into(),
            username: user.into(),
            ip: ip.into(),
            result: result.into(),
            detail: detail.into(),
        };
        // The audit trail must not turn a login into an error; say so loudly instead.
        if let Err(err) = self.store.record_audit(&e).await {
            tracing::error!(event, user, ip, error = %err, "cannot write the audit trail");
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
