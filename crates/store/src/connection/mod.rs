//! The [`Store`] value: its connection pools on SQLite or PostgreSQL, the
//! migrations run at connect, and maintenance of the database as a whole.
//! Every store trait is implemented on it in the module of its concern,
//! through [`with_pool!`].

mod migrations;
mod sqlite_file;
mod url;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::error::Error;
use sqlite_file::{incremental_auto_vacuum, page_bytes, pragma, prepare_sqlite_file};
pub use url::{Backend, backend_of, check_url, scrub_url_secrets, sqlite_file, url_secrets};
use url::{pg_options, sqlite_path};

/// How to open the database.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub max_connections: u32,
    /// Relative SQLite paths are resolved against this directory.
    pub base_dir: PathBuf,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 8,
            base_dir: PathBuf::from("."),
        }
    }
}

/// The database behind every store trait.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Inner,
}

#[derive(Clone)]
pub(crate) enum Inner {
    /// SQLite allows one writer at a time. Writes go through a pool of one
    /// connection, so they queue in-process instead of meeting SQLITE_BUSY and
    /// its sleeping retries; reads run in parallel on the other pool (WAL).
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

impl std::fmt::Debug for Store {
    // Connection URLs may hold a password: show the backend only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// Runs the same statement text on whichever pool the store holds: `read`
/// for queries, `write` for anything that changes data.
macro_rules! with_pool {
    ($store:expr, read $pool:ident => $body:expr) => {
        match &$store.inner {
            $crate::connection::Inner::Sqlite { read: $pool, .. } => $body,
            $crate::connection::Inner::Postgres($pool) => $body,
        }
    };
    ($store:expr, write $pool:ident => $body:expr) => {
        match &$store.inner {
            $crate::connection::Inner::Sqlite { write: $pool, .. } => $body,
            $crate::connection::Inner::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Store {
    /// Connects and runs the backend's migrations.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Store, Error> {
        let inner = match backend_of(url)? {
            Backend::Sqlite => {
                let (connect, max) = match sqlite_path(url, &options.base_dir) {
                    Some(path) => {
                        prepare_sqlite_file(&path)?;
                        (
                            SqliteConnectOptions::new().filename(path),
                            options.max_connections.max(1),
                        )
                    }
                    // Every pooled connection would get its own empty in-memory database.
                    None => (SqliteConnectOptions::from_str("sqlite::memory:")?, 1),
                };
                let connect = connect
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    // Set before the first table exists, so new databases can
                    // give deleted rows' pages back (`reclaim_space`).
                    .auto_vacuum(SqliteAutoVacuum::Incremental)
                    .foreign_keys(true);
                // A connection is only handed out after a round trip when
                // asked; the default ping before every acquire doubles the cost
                // of a one-row query.
                // The writer gets a 64 MiB page cache (default 2 MiB): CDR
                // batches insert into indexes on random keys (dedupe_key,
                // session), whose pages must stay cached once the table holds
                // millions of rows. Checkpoints every 80 MiB of WAL instead of
                // 4 MiB: index pages dirtied by many batches are copied back once.
                let write = SqlitePoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .connect_with(
                        connect
                            .clone()
                            .pragma("cache_size", "-65536")
                            .pragma("wal_autocheckpoint", "20000")
                            // When a checkpointed WAL restarts, it is cut back to
                            // 4 MiB: a burst of writes does not leave it at 80 MiB.
                            .pragma("journal_size_limit", "4194304"),
                    )
                    .await?;
                migrations::sqlite().run(&write).await?;
                incremental_auto_vacuum(&write).await?;
                let read = if max == 1 {
                    write.clone()
                } else {
                    SqlitePoolOptions::new()
                        .max_connections(max)
                        .test_before_acquire(false)
                        .connect_with(connect)
                        .await?
                };
                Inner::Sqlite { read, write }
            }
            Backend::Postgres => {
                // No JIT: a page over a year of monthly partitions is planned
                // above jit_above_cost, and compiling its expressions took
                // longer than running it (156 ms against 11 ms at 10 M legs).
                // No parallel workers: a filtered day page planned with them
                // took 24 ms instead of 17 (10 M legs), and an API server's
                // concurrent requests are its parallelism.
                let connect = pg_options(url)?
                    .options([("jit", "off"), ("max_parallel_workers_per_gather", "0")]);
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections.max(1))
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(connect)
                    .await?;
                // The migrator takes an advisory lock, so concurrent starts are safe.
                migrations::postgres().run(&pool).await?;
                Inner::Postgres(pool)
            }
        };
        Ok(Store { inner })
    }

    /// Gives the pages of deleted rows back to the file system (SQLite with
    /// incremental auto-vacuum; run after deleting expired rows). PostgreSQL:
    /// nothing, its autovacuum makes dead rows' space reusable. Returns the
    /// pages given back.
    pub async fn reclaim_space(&self) -> Result<u64, Error> {
        let Inner::Sqlite { write, .. } = &self.inner else {
            return Ok(0);
        };
        let free = pragma(write, "freelist_count").await?;
        if free == 0 {
            return Ok(0);
        }
        sqlx::query("PRAGMA incremental_vacuum")
            .execute(write)
            .await?;
        let left = pragma(write, "freelist_count").await?;
        Ok(u64::try_from(free - left).unwrap_or(0))
    }

    /// SQLite: copies what the WAL holds back into the database file if no
    /// reader is in the way, without waiting for one, so that the next write
    /// restarts the WAL (cut to `journal_size_limit`). For bursts of small
    /// writes that must not grow the WAL to its 80 MiB checkpoint size.
    /// PostgreSQL: nothing.
    pub async fn checkpoint_wal(&self) -> Result<(), Error> {
        if let Inner::Sqlite { write, .. } = &self.inner {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(write)
                .await?;
        }
        Ok(())
    }

    /// Bytes the SQLite database file holds in pages (`None` on PostgreSQL).
    pub async fn sqlite_size(&self) -> Result<Option<u64>, Error> {
        let Inner::Sqlite { write, .. } = &self.inner else {
            return Ok(None);
        };
        Ok(Some(u64::try_from(page_bytes(write).await?).unwrap_or(0)))
    }

    /// Refreshes the planner's statistics (after a bulk import, so that
    /// the first queries pick the right indexes).
    pub async fn analyze(&self) -> Result<(), Error> {
        with_pool!(self, write pool => {
            sqlx::query("ANALYZE").execute(pool).await?;
        });
        Ok(())
    }

    pub(crate) fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.inner {
            Inner::Postgres(pool) => Some(pool),
            Inner::Sqlite { .. } => None,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite { .. } => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        match &self.inner {
            Inner::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Inner::Postgres(pool) => pool.close().await,
        }
    }

    /// A trivial round trip, for health checks.
    pub async fn ping(&self) -> Result<(), Error> {
        with_pool!(self, read pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
