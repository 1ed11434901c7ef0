//! Stable identity of this installation (serial number, bind code, ...).

use async_trait::async_trait;
use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

#[async_trait]
pub trait MetaStore: Send + Sync {
    /// The value stored under `key`; `init` is stored first when there is none,
    /// so that concurrent processes agree on one value.
    async fn meta_get_or_init(&self, key: &str, init: &str) -> Result<String, Error>;
}

#[async_trait]
impl MetaStore for Store {
    async fn meta_get_or_init(&self, key: &str, init: &str) -> Result<String, Error> {
        let value = with_pool!(self, write pool => {
            sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key).bind(init).execute(pool).await?;
            sqlx::query("SELECT value FROM meta WHERE key = $1")
                .bind(key).fetch_one(pool).await?.try_get::<String, _>(0)?
        });
        Ok(value)
    }
}
