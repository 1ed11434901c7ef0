//! Where the ingest stands in each of its sources (a named value each).

use sqlx::Row;

use crate::connection::{Store, with_pool};
use crate::error::Error;

pub(super) async fn checkpoint(store: &Store, name: &str) -> Result<Option<String>, Error> {
    let v = with_pool!(store, read pool => {
        let row = sqlx::query("SELECT value FROM checkpoints WHERE name = $1")
            .bind(name).fetch_optional(pool).await?;
        row.map(|r| r.try_get::<String, _>(0)).transpose()?
    });
    Ok(v)
}

pub(super) async fn set_checkpoint(store: &Store, name: &str, value: &str) -> Result<(), Error> {
    with_pool!(store, write pool => sqlx::query(
        "INSERT INTO checkpoints (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value")
        .bind(name).bind(value).execute(pool).await.map(|_| ()))?;
    Ok(())
}
