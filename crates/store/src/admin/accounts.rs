//! Accounts and sessions of the admin web interface.

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

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

#[async_trait]
impl AdminStore for Store {
    async fn set_admin_password(
        &self,
        username: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<bool, Error> {
        let created = with_pool!(self, write pool => {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(
                "UPDATE admin_accounts SET password_hash = $2, updated_ms = $3 WHERE username = $1")
                .bind(username).bind(password_hash).bind(now_ms)
                .execute(&mut *tx).await?.rows_affected();
            if updated == 0 {
                sqlx::query(
                    "INSERT INTO admin_accounts (username, password_hash, created_ms, updated_ms) \
                     VALUES ($1, $2, $3, $3)")
                    .bind(username).bind(password_hash).bind(now_ms)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            updated == 0
        });
        Ok(created)
    }

    async fn admin_password_hash(&self, username: &str) -> Result<Option<String>, Error> {
        let hash = with_pool!(self, read pool => {
            let row = sqlx::query("SELECT password_hash FROM admin_accounts WHERE username = $1")
                .bind(username).fetch_optional(pool).await?;
            row.map(|r| r.try_get::<String, _>(0)).transpose()?
        });
        Ok(hash)
    }

    async fn create_admin_session(&self, s: &AdminSession) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO admin_sessions (id, username, csrf, ip, created_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&s.id).bind(&s.username).bind(&s.csrf).bind(&s.ip)
            .bind(s.created_ms).bind(s.last_seen_ms)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn admin_session(&self, id: &str) -> Result<Option<AdminSession>, Error> {
        let row = with_pool!(self, read pool => {
            let row = sqlx::query(
                "SELECT username, csrf, ip, created_ms, last_seen_ms FROM admin_sessions WHERE id = $1")
                .bind(id).fetch_optional(pool).await?;
            row.map(|r| -> Result<_, sqlx::Error> {
                Ok(AdminSession {
                    id: id.to_owned(),
                    username: r.try_get(0)?,
                    csrf: r.try_get(1)?,
                    ip: r.try_get(2)?,
                    created_ms: r.try_get(3)?,
                    last_seen_ms: r.try_get(4)?,
                })
            }).transpose()?
        });
        Ok(row)
    }

    async fn touch_admin_session(&self, id: &str, last_seen_ms: i64) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "UPDATE admin_sessions SET last_seen_ms = $2 WHERE id = $1 AND last_seen_ms < $2")
            .bind(id).bind(last_seen_ms).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn delete_admin_session(&self, id: &str) -> Result<bool, Error> {
        let done = with_pool!(self, write pool => sqlx::query("DELETE FROM admin_sessions WHERE id = $1")
            .bind(id).execute(pool).await?.rows_affected());
        Ok(done > 0)
    }

    async fn delete_admin_sessions_of(&self, username: &str) -> Result<u64, Error> {
        Ok(
            with_pool!(self, write pool => sqlx::query("DELETE FROM admin_sessions WHERE username = $1")
            .bind(username).execute(pool).await?.rows_affected()),
        )
    }

    async fn delete_idle_admin_sessions(&self, last_seen_before_ms: i64) -> Result<u64, Error> {
        Ok(
            with_pool!(self, write pool => sqlx::query("DELETE FROM admin_sessions WHERE last_seen_ms < $1")
            .bind(last_seen_before_ms).execute(pool).await?.rows_affected()),
        )
    }
}
