//! Sessions of the HTTPS API (the `cdrapi` login cookie).

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

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
impl SessionStore for Store {
    async fn create_session(&self, s: &Session) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO sessions (cookie, username, ip, created_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&s.cookie).bind(&s.username).bind(&s.ip).bind(s.created_ms).bind(s.last_seen_ms)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn session(&self, cookie: &str) -> Result<Option<Session>, Error> {
        let row = with_pool!(self, read pool => {
            let row = sqlx::query(
                "SELECT username, ip, created_ms, last_seen_ms FROM sessions WHERE cookie = $1")
                .bind(cookie).fetch_optional(pool).await?;
            row.map(|r| -> Result<_, sqlx::Error> {
                Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?,
                    r.try_get::<i64, _>(2)?, r.try_get::<i64, _>(3)?))
            }).transpose()?
        });
        Ok(row.map(|(username, ip, created_ms, last_seen_ms)| Session {
            cookie: cookie.to_owned(),
            username,
            ip,
            created_ms,
            last_seen_ms,
        }))
    }

    async fn touch_session(&self, cookie: &str, last_seen_ms: i64) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "UPDATE sessions SET last_seen_ms = $2 WHERE cookie = $1 AND last_seen_ms < $2")
            .bind(cookie).bind(last_seen_ms).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn delete_session(&self, cookie: &str) -> Result<bool, Error> {
        let done = with_pool!(self, write pool => sqlx::query("DELETE FROM sessions WHERE cookie = $1")
            .bind(cookie).execute(pool).await?.rows_affected());
        Ok(done > 0)
    }

    async fn delete_sessions_of(&self, username: &str) -> Result<u64, Error> {
        Ok(
            with_pool!(self, write pool => sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(username).execute(pool).await?.rows_affected()),
        )
    }

    async fn delete_idle_sessions(&self, last_seen_before_ms: i64) -> Result<u64, Error> {
        Ok(
            with_pool!(self, write pool => sqlx::query("DELETE FROM sessions WHERE last_seen_ms < $1")
            .bind(last_seen_before_ms).execute(pool).await?.rows_affected()),
        )
    }
}
