//! Sections of settings saved by the admin web interface.

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

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
impl WebSettingsStore for Store {
    async fn web_settings(&self, section: &str) -> Result<Option<WebSettings>, Error> {
        let row = with_pool!(self, read pool => {
            let row = sqlx::query(
                "SELECT body, version, updated_ms, updated_by FROM web_settings WHERE section = $1")
                .bind(section).fetch_optional(pool).await?;
            row.map(|r| -> Result<_, sqlx::Error> {
                Ok(WebSettings {
                    body: r.try_get(0)?,
                    version: r.try_get(1)?,
                    updated_ms: r.try_get(2)?,
                    updated_by: r.try_get(3)?,
                })
            }).transpose()?
        });
        Ok(row)
    }

    async fn save_web_settings(
        &self,
        section: &str,
        body: &str,
        expected_version: i64,
        updated_ms: i64,
        updated_by: &str,
    ) -> Result<Option<i64>, Error> {
        let next = expected_version.saturating_add(1);
        let done = if expected_version == 0 {
            // First save: the primary key refuses a concurrent first save.
            with_pool!(self, write pool => sqlx::query(
                "INSERT INTO web_settings (section, body, version, updated_ms, updated_by) \
                 VALUES ($1, $2, 1, $3, $4) ON CONFLICT (section) DO NOTHING")
                .bind(section).bind(body).bind(updated_ms).bind(updated_by)
                .execute(pool).await?.rows_affected())
        } else {
            with_pool!(self, write pool => sqlx::query(
                "UPDATE web_settings SET body = $2, version = $3, updated_ms = $4, updated_by = $5 \
                 WHERE section = $1 AND version = $6")
                .bind(section).bind(body).bind(next).bind(updated_ms).bind(updated_by)
                .bind(expected_version)
                .execute(pool).await?.rows_affected())
        };
        if done == 1
            && let Some(pool) = self.postgres_pool()
        {
            // Other nodes listening re-read the settings at once (the poll
            // stays as the backstop for a lost notification).
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(WEB_SETTINGS_CHANNEL)
                .bind(section)
                .execute(pool)
                .await?;
        }
        Ok((done == 1).then_some(next))
    }
}

/// The PostgreSQL `NOTIFY` channel of saved settings (payload: the section).
pub const WEB_SETTINGS_CHANNEL: &str = "pbxgate_web_settings";

impl Store {
    /// PostgreSQL: a message each time any node saves settings (and after
    /// the listening connection was re-established, when one may have been
    /// missed). `None` on SQLite: one process, nothing to hear.
    pub fn web_settings_saved(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        let pool = self.postgres_pool()?.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for saved settings; retrying");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(WEB_SETTINGS_CHANNEL).await {
                    tracing::warn!(error = %e, "cannot listen for saved settings; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
                // Whatever was saved while not listening.
                if tx.try_send(()).is_err() && tx.is_closed() {
                    return;
                }
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => {
                            if tx.try_send(()).is_err() && tx.is_closed() {
                                return;
                            }
                        }
                        // The connection was lost (and is re-established by
                        // the next call): something may have been missed.
                        Ok(None) => {
                            if tx.try_send(()).is_err() && tx.is_closed() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for saved settings failed; listening again");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            break;
                        }
                    }
                }
            }
        });
        Some(rx)
    }
}
