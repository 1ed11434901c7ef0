//! Login restriction: failed attempts per source address and the bans
//! they lead to.

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

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

#[async_trait]
impl LoginGuardStore for Store {
    async fn record_login_failure(
        &self,
        ip: &str,
        now_ms: i64,
        window_ms: i64,
        max_failures: i64,
        ban_ms: i64,
    ) -> Result<Option<i64>, Error> {
        let banned = with_pool!(self, write pool => {
            let mut tx = pool.begin().await?;
            // Writing first takes the write lock at once (no SQLite lock upgrade).
            sqlx::query("INSERT INTO login_failures (ip, at_ms) VALUES ($1, $2)")
                .bind(ip).bind(now_ms).execute(&mut *tx).await?;
            let count: i64 = sqlx::query(
                "SELECT COUNT(*) FROM login_failures WHERE ip = $1 AND at_ms > $2")
                .bind(ip).bind(now_ms - window_ms).fetch_one(&mut *tx).await?.try_get(0)?;
            let banned = if count >= max_failures {
                let until = now_ms + ban_ms;
                sqlx::query(
                    "INSERT INTO login_bans (ip, until_ms) VALUES ($1, $2) \
                     ON CONFLICT (ip) DO UPDATE SET until_ms = excluded.until_ms")
                    .bind(ip).bind(until).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM login_failures WHERE ip = $1")
                    .bind(ip).execute(&mut *tx).await?;
                Some(until)
            } else {
                None
            };
            tx.commit().await?;
            banned
        });
        Ok(banned)
    }

    async fn begin_login_attempt(
        &self,
        ip: &str,
        now_ms: i64,
        window_ms: i64,
        max_failures: i64,
        ban_ms: i64,
    ) -> Result<LoginAttempt, Error> {
        let attempt = with_pool!(self, write pool => {
            let mut tx = pool.begin().await?;
            // Locks the address's ban row (created expired, until_ms 0, if
            // missing) so that concurrent attempts from one address, from any
            // process, take turns; on SQLite, writing first takes the write
            // lock at once (no lock upgrade).
            sqlx::query(
                "INSERT INTO login_bans (ip, until_ms) VALUES ($1, 0) \
                 ON CONFLICT (ip) DO UPDATE SET until_ms = login_bans.until_ms")
                .bind(ip).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO login_failures (ip, at_ms) VALUES ($1, $2)")
                .bind(ip).bind(now_ms).execute(&mut *tx).await?;
            let ban = sqlx::query("SELECT until_ms FROM login_bans WHERE ip = $1 AND until_ms > $2")
                .bind(ip).bind(now_ms).fetch_optional(&mut *tx).await?
                .map(|r| r.try_get::<i64, _>(0)).transpose()?;
            if let Some(until) = ban {
                tx.rollback().await?;
                LoginAttempt::Refused(until)
            } else {
                let count: i64 = sqlx::query(
                    "SELECT COUNT(*) FROM login_failures WHERE ip = $1 AND at_ms > $2")
                    .bind(ip).bind(now_ms - window_ms).fetch_one(&mut *tx).await?.try_get(0)?;
                let attempt = if count >= max_failures {
                    sqlx::query(
                        "INSERT INTO login_bans (ip, until_ms) VALUES ($1, $2) \
                         ON CONFLICT (ip) DO UPDATE SET until_ms = excluded.until_ms")
                        .bind(ip).bind(now_ms + ban_ms).execute(&mut *tx).await?;
                    sqlx::query("DELETE FROM login_failures WHERE ip = $1")
                        .bind(ip).execute(&mut *tx).await?;
                    LoginAttempt::Last
                } else {
                    LoginAttempt::Allowed
                };
                tx.commit().await?;
                attempt
            }
        });
        Ok(attempt)
    }

    async fn active_ban(&self, ip: &str, now_ms: i64) -> Result<Option<i64>, Error> {
        let until = with_pool!(self, read pool => {
            let row = sqlx::query("SELECT until_ms FROM login_bans WHERE ip = $1 AND until_ms > $2")
                .bind(ip).bind(now_ms).fetch_optional(pool).await?;
            row.map(|r| r.try_get::<i64, _>(0)).transpose()?
        });
        Ok(until)
    }

    async fn clear_login_failures(&self, ip: &str) -> Result<(), Error> {
        // Nearly always there is nothing to clear: look before taking the write lock.
        let any = with_pool!(self, read pool => sqlx::query(
            "SELECT 1 FROM login_failures WHERE ip = $1 \
             UNION ALL SELECT 1 FROM login_bans WHERE ip = $1 LIMIT 1")
            .bind(ip).fetch_optional(pool).await?.is_some());
        if any {
            with_pool!(self, write pool => {
                sqlx::query("DELETE FROM login_failures WHERE ip = $1")
                    .bind(ip).execute(pool).await?;
                sqlx::query("DELETE FROM login_bans WHERE ip = $1")
                    .bind(ip).execute(pool).await?;
            });
        }
        Ok(())
    }

    async fn prune_login_guard(&self, failures_before_ms: i64, now_ms: i64) -> Result<(), Error> {
        with_pool!(self, write pool => {
            sqlx::query("DELETE FROM login_failures WHERE at_ms <= $1")
                .bind(failures_before_ms).execute(pool).await?;
            sqlx::query("DELETE FROM login_bans WHERE until_ms <= $1")
                .bind(now_ms).execute(pool).await?;
        });
        Ok(())
    }
}
