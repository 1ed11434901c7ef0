//! Digests of the effective settings, to audit what changed between starts.

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

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
impl SettingsStore for Store {
    async fn settings_digests(&self) -> Result<Vec<(String, String)>, Error> {
        let digests = with_pool!(self, read pool => {
            sqlx::query("SELECT key, digest FROM settings_digests WHERE key <> '' ORDER BY key")
                .fetch_all(pool).await?
                .iter()
                .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
                .collect::<Result<Vec<_>, Error>>()?
        });
        Ok(digests)
    }

    async fn replace_settings_digests(
        &self,
        digests: &[(String, String)],
    ) -> Result<Vec<String>, Error> {
        let mut changed = with_pool!(self, write pool => {
            let mut tx = pool.begin().await?;
            // Take the write lock first so two processes starting together serialise here.
            sqlx::query("DELETE FROM settings_digests WHERE key = ''").execute(&mut *tx).await?;
            let rows = sqlx::query("SELECT key, digest FROM settings_digests")
                .fetch_all(&mut *tx).await?;
            let mut old = std::collections::BTreeMap::new();
            for r in &rows {
                old.insert(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?);
            }
            let mut changed = Vec::new();
            for (key, digest) in digests {
                if old.remove(key).as_ref() != Some(digest) {
                    changed.push(key.clone());
                    sqlx::query(
                        "INSERT INTO settings_digests (key, digest) VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET digest = excluded.digest")
                        .bind(key).bind(digest).execute(&mut *tx).await?;
                }
            }
            for key in old.into_keys() {
                sqlx::query("DELETE FROM settings_digests WHERE key = $1")
                    .bind(&key).execute(&mut *tx).await?;
                changed.push(key);
            }
            tx.commit().await?;
            changed
        });
        changed.sort();
        Ok(changed)
    }
}
