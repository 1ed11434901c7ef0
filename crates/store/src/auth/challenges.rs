//! Login challenges of the HTTPS API: single use, short-lived, bound to
//! a user and a source address.

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Backend, Store, with_pool};
use crate::error::Error;

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

#[async_trait]
impl ChallengeStore for Store {
    async fn insert_challenge(
        &self,
        challenge: &str,
        username: &str,
        ip: &str,
        expires_ms: i64,
    ) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO challenges (challenge, username, ip, expires_ms) VALUES ($1, $2, $3, $4)")
            .bind(challenge).bind(username).bind(ip).bind(expires_ms).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn insert_challenge_bounded(
        &self,
        challenge: &str,
        username: &str,
        ip: &str,
        group: &str,
        expires_ms: i64,
        max_per_group: u32,
    ) -> Result<u64, Error> {
        let dropped = with_pool!(self, write pool => {
            let mut tx = pool.begin().await?;
            // Concurrent inserts of one group would each keep the newest max
            // they see and leave more; one at a time per group (SQLite's
            // single writer is that already).
            if self.backend() == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(group).execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO challenges (challenge, username, ip, ip_group, expires_ms) \
                 VALUES ($1, $2, $3, $4, $5)")
                .bind(challenge).bind(username).bind(ip).bind(group).bind(expires_ms)
                .execute(&mut *tx).await?;
            // Everything from the (max+1)-th newest of the group on; nothing
            // while the group holds no more than max.
            let n = sqlx::query(
                "DELETE FROM challenges WHERE ip_group = $1 AND (expires_ms, challenge) <= \
                 (SELECT expires_ms, challenge FROM challenges WHERE ip_group = $1 \
                  ORDER BY expires_ms DESC, challenge DESC LIMIT 1 OFFSET $2)")
                .bind(group).bind(i64::from(max_per_group))
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        });
        Ok(dropped)
    }

    async fn challenges_of_group(&self, group: &str) -> Result<u64, Error> {
        let n: i64 = with_pool!(self, read pool => sqlx::query(
            "SELECT COUNT(*) FROM challenges WHERE ip_group = $1")
            .bind(group).fetch_one(pool).await?.try_get(0)?);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn open_challenges(
        &self,
        username: &str,
        ip: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<String>, Error> {
        let rows = with_pool!(self, read pool => {
            let rows = sqlx::query(
                "SELECT challenge FROM challenges WHERE username = $1 AND ip = $2 AND expires_ms > $3 \
                 ORDER BY expires_ms DESC LIMIT $4")
                .bind(username).bind(ip).bind(now_ms).bind(limit).fetch_all(pool).await?;
            rows.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }

    async fn consume_challenge(&self, challenge: &str) -> Result<bool, Error> {
        let n = with_pool!(self, write pool => sqlx::query("DELETE FROM challenges WHERE challenge = $1")
            .bind(challenge).execute(pool).await?.rows_affected());
        Ok(n == 1)
    }

    async fn delete_expired_challenges(&self, now_ms: i64) -> Result<u64, Error> {
        Ok(
            with_pool!(self, write pool => sqlx::query("DELETE FROM challenges WHERE expires_ms <= $1")
            .bind(now_ms).execute(pool).await?.rows_affected()),
        )
    }
}
