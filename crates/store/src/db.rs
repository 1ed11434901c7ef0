use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use crate::Error;
use crate::traits::*;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

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
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
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
            Inner::Sqlite { read: $pool, .. } => $body,
            Inner::Postgres($pool) => $body,
        }
    };
    ($store:expr, write $pool:ident => $body:expr) => {
        match &$store.inner {
            Inner::Sqlite { write: $pool, .. } => $body,
            Inner::Postgres($pool) => $body,
        }
    };
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
    ),
    (2, "cdr", include_str!("../migrations/sqlite/0002_cdr.sql")),
    (
        3,
        "cdr query",
        include_str!("../migrations/sqlite/0003_cdr_query.sql"),
    ),
    (
        4,
        "cdr separators",
        include_str!("../migrations/sqlite/0004_cdr_separators.sql"),
    ),
    (
        5,
        "cdr session",
        include_str!("../migrations/sqlite/0005_cdr_session.sql"),
    ),
    (
        6,
        "call decisions",
        include_str!("../migrations/sqlite/0006_call_decisions.sql"),
    ),
    (7, "pms", include_str!("../migrations/sqlite/0007_pms.sql")),
    (
        8,
        "admin",
        include_str!("../migrations/sqlite/0008_admin.sql"),
    ),
    (
        9,
        "web settings",
        include_str!("../migrations/sqlite/0009_web_settings.sql"),
    ),
    (
        10,
        "challenge limits",
        include_str!("../migrations/sqlite/0010_challenge_limits.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "cdr",
        include_str!("../migrations/postgres/0002_cdr.sql"),
    ),
    (
        3,
        "cdr query",
        include_str!("../migrations/postgres/0003_cdr_query.sql"),
    ),
    (
        4,
        "cdr separators",
        include_str!("../migrations/postgres/0004_cdr_separators.sql"),
    ),
    (
        5,
        "cdr session",
        include_str!("../migrations/postgres/0005_cdr_session.sql"),
    ),
    (
        6,
        "call decisions",
        include_str!("../migrations/postgres/0006_call_decisions.sql"),
    ),
    (
        7,
        "pms",
        include_str!("../migrations/postgres/0007_pms.sql"),
    ),
    (
        8,
        "admin",
        include_str!("../migrations/postgres/0008_admin.sql"),
    ),
    (
        9,
        "web settings",
        include_str!("../migrations/postgres/0009_web_settings.sql"),
    ),
    (
        10,
        "challenge limits",
        include_str!("../migrations/postgres/0010_challenge_limits.sql"),
    ),
];

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The backend a database URL names, without connecting.
pub fn backend_of(url: &str) -> Result<Backend, Error> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        // Nothing of the URL but a plain scheme is shown: a mistyped URL
        // may be anything, even the password alone.
        let scheme = url.split_once("://").map(|(s, _)| s).filter(|s| {
            !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric())
        });
        Err(Error::UnsupportedUrl(match scheme {
            Some(s) => format!("its scheme is \"{s}://\""),
            None => "it has no scheme".to_owned(),
        }))
    }
}

/// The backend a database URL names and, for PostgreSQL, its form checked
/// as [`Store::connect`] reads it, without connecting. Messages never show
/// the URL's password.
pub fn check_url(url: &str) -> Result<Backend, Error> {
    let backend = backend_of(url)?;
    if backend == Backend::Postgres {
        pg_options(url)?;
    }
    Ok(backend)
}

/// The URL parameters sqlx reads; it logs any other with its value (a
/// mistyped `pasword=` would reach the log), so they are refused here.
const PG_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

fn pg_options(url: &str) -> Result<PgConnectOptions, Error> {
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, named) = pair
                .split_once('=')
                .map_or((pair, false), |(k, _)| (k, true));
            if !PG_PARAMETERS.contains(&name) {
                // The name only when it is one (`name=...`) and a plain word:
                // anything else may be a value.
                let shown = if named
                    && name.len() <= 32
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    format!(" \"{}\"", scrub_url_secrets(name, url))
                } else {
                    String::new()
                };
                return Err(Error::BadUrl(format!(
                    "unknown parameter{shown} (known: {})",
                    PG_PARAMETERS.join(", ")
                )));
            }
        }
    }
    PgConnectOptions::from_str(url)
        .map_err(|e| Error::BadUrl(scrub_url_secrets(&e.to_string(), url)))
}

/// The parts of a database URL that may be a password: the user-info after
/// its first ':' (whatever the URL's form, even without a scheme) and any
/// `password=` parameter. Empty parts are left out.
pub fn url_secrets(url: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    if let Some(at) = rest.rfind('@') {
        let userinfo = &rest[..at];
        // Without ':' it is a user name: not scrubbed (it may be a word such
        // as "postgres" that messages need).
        if let Some((_, pass)) = userinfo.split_once(':') {
            out.push(pass);
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k.eq_ignore_ascii_case("password")
            {
                out.push(v);
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// `text` with every password part of `url` replaced by `***`.
pub fn scrub_url_secrets(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    let mut secrets = url_secrets(url);
    // Longest first, so a password containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s, "***");
    }
    out
}

/// The SQLite file of a URL (relative paths against `base_dir`); `None` for
/// an in-memory database or another backend.
pub fn sqlite_file(url: &str, base_dir: &Path) -> Option<PathBuf> {
    sqlite_path(url, base_dir)
}

/// The database holds sessions, CSRF tokens and password hashes: its folder
/// must already exist (a mistyped path is not silently created anywhere),
/// and the file is created, or narrowed, to 0600. SQLite gives the -wal and
/// -shm files the database file's mode; existing ones are narrowed too.
fn prepare_sqlite_file(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::Directory {
            path: parent.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the folder does not exist (create it, or fix database.url)",
            ),
        });
    }
    let io = |source| Error::Directory {
        path: path.display().to_string(),
        source,
    };
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::metadata(&file) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

fn sqlite_path(url: &str, base_dir: &Path) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    if rest.is_empty() || rest == ":memory:" {
        return None;
    }
    let path = PathBuf::from(rest);
    Some(if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    })
}

/// Databases of at most this size made before incremental auto-vacuum are
/// converted at start (a `VACUUM`, which rewrites the file); larger ones are
/// left for the operator, with a warning.
const CONVERT_AUTO_VACUUM_BYTES: i64 = 256 * 1024 * 1024;

/// A SQLite `PRAGMA` that answers one integer.
async fn pragma(write: &SqlitePool, name: &'static str) -> Result<i64, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")).into_sql_str())
        .fetch_one(write)
        .await?;
    Ok(row.try_get(0)?)
}

/// Bytes the SQLite database file holds in pages.
async fn page_bytes(write: &SqlitePool) -> Result<i64, Error> {
    Ok(pragma(write, "page_count")
        .await?
        .saturating_mul(pragma(write, "page_size").await?))
}

/// Switches a database made without auto-vacuum to incremental auto-vacuum.
async fn incremental_auto_vacuum(write: &SqlitePool) -> Result<(), Error> {
    let mode = pragma(write, "auto_vacuum").await?;
    // 0 = none, 1 = full, 2 = incremental.
    if mode == 2 {
        return Ok(());
    }
    let bytes = page_bytes(write).await?;
    if bytes > CONVERT_AUTO_VACUUM_BYTES {
        tracing::warn!(
            bytes,
            "the SQLite database was made without incremental auto-vacuum and is too large to convert at start: \
             space of deleted rows is reused but not given back; stop pbxgate and run \
             sqlite3 FILE 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;' to convert it"
        );
        return Ok(());
    }
    sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
        .execute(write)
        .await?;
    sqlx::query("VACUUM").execute(write).await?;
    tracing::info!(
        bytes,
        "SQLite database converted to incremental auto-vacuum"
    );
    Ok(())
}

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
                migrator(SQLITE_MIGRATIONS).run(&write).await?;
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
                let connect = pg_options(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(options.max_connections.max(1))
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(connect)
                    .await?;
                // The migrator takes an advisory lock, so concurrent starts are safe.
                migrator(POSTGRES_MIGRATIONS).run(&pool).await?;
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
        Ok((done == 1).then_some(next))
    }
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

#[async_trait]
impl AuditStore for Store {
    async fn record_audit(&self, e: &AuditEvent) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO audit_log (at_ms, event, username, ip, result, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(e.at_ms).bind(&e.event).bind(&e.username).bind(&e.ip).bind(&e.result).bind(&e.detail)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditEvent>, Error> {
        let events = with_pool!(self, read pool => {
            let rows = sqlx::query(
                "SELECT at_ms, event, username, ip, result, detail FROM audit_log ORDER BY id DESC LIMIT $1")
                .bind(limit).fetch_all(pool).await?;
            rows.iter().map(|r| -> Result<_, sqlx::Error> {
                Ok(AuditEvent {
                    at_ms: r.try_get(0)?,
                    event: r.try_get(1)?,
                    username: r.try_get(2)?,
                    ip: r.try_get(3)?,
                    result: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            }).collect::<Result<Vec<_>, _>>()?
        });
        Ok(events)
    }
}

#[async_trait]
impl DecisionStore for Store {
    async fn record_decision(&self, d: &CallDecision) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO call_decisions (held_at_ms, decided_at_ms, channel, channel_id, caller, did, \
             outcome, decided_by, apply_us, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(d.held_at_ms).bind(d.decided_at_ms).bind(&d.channel).bind(&d.channel_id)
            .bind(&d.caller).bind(&d.did).bind(&d.outcome).bind(&d.decided_by)
            .bind(d.apply_us).bind(&d.detail)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    async fn recent_decisions(&self, limit: i64) -> Result<Vec<CallDecision>, Error> {
        let rows = with_pool!(self, read pool => {
            let rows = sqlx::query(
                "SELECT held_at_ms, decided_at_ms, channel, channel_id, caller, did, outcome, \
                 decided_by, apply_us, detail FROM call_decisions ORDER BY id DESC LIMIT $1")
                .bind(limit).fetch_all(pool).await?;
            rows.iter().map(|r| -> Result<_, sqlx::Error> {
                Ok(CallDecision {
                    held_at_ms: r.try_get(0)?,
                    decided_at_ms: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    channel_id: r.try_get(3)?,
                    caller: r.try_get(4)?,
                    did: r.try_get(5)?,
                    outcome: r.try_get(6)?,
                    decided_by: r.try_get(7)?,
                    apply_us: r.try_get(8)?,
                    detail: r.try_get(9)?,
                })
            }).collect::<Result<Vec<_>, _>>()?
        });
        Ok(rows)
    }
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

/// Rows per multi-row INSERT on SQLite: 46 bound values each, under its
/// default limit of 32,766 parameters per statement.
const CDR_ROWS_PER_STATEMENT: usize = 200;

/// The column list of an insert: `dedupe_key, start_ms, call_ms, end_ms, "accountcode", ...`.
fn cdr_insert_columns() -> String {
    let mut cols = String::from("INSERT INTO cdr (dedupe_key, start_ms, call_ms, end_ms");
    for f in &ucm::cdr::FIELDS[1..] {
        cols.push_str(", \"");
        cols.push_str(f);
        cols.push('"');
    }
    cols.push(')');
    cols
}

/// SQLite: `INSERT ... VALUES (?, ...), ...` for `rows` rows. Anonymous `?`
/// placeholders: sqlx-sqlite resolves `$N` by name, a linear search per
/// parameter, which made an 8,800-parameter statement cost more than its rows.
fn cdr_insert_sql_sqlite(rows: usize) -> String {
    let per_row = 4 + ucm::cdr::FIELDS.len() - 1;
    let mut row = String::from("(?");
    for _ in 1..per_row {
        row.push_str(", ?");
    }
    row.push(')');
    // OR IGNORE rather than ON CONFLICT DO NOTHING: with no constraint left
    // that can abort the statement, SQLite skips the statement journal it
    // otherwise writes (to a temporary file) for every page a multi-row
    // INSERT touches. Only the dedupe_key can conflict; no value is NULL.
    let mut sql = cdr_insert_columns().replacen("INSERT", "INSERT OR IGNORE", 1);
    sql.push_str(" VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&row);
    }
    sql
}

/// PostgreSQL: one statement per chunk whatever its size, each column bound
/// as one array and unnested in the select list (a ProjectSet, which streams
/// rows, where `FROM UNNEST(...)` would first materialise them); rows keep the
/// chunk's order, so AcctIds follow it.
fn cdr_insert_sql_postgres() -> String {
    let mut sql = cdr_insert_columns();
    sql.push_str(
        " SELECT unnest($1::text[]), unnest($2::bigint[]), unnest($3::bigint[]), unnest($4::bigint[])",
    );
    for i in 1..ucm::cdr::FIELDS.len() {
        sql.push_str(&format!(", unnest(${}::text[])", i + 4));
    }
    sql.push_str(" ON CONFLICT (dedupe_key) DO NOTHING");
    sql
}

/// The distinct (call_ms, session) entries of a batch, for `cdr_session`
/// (migration 0005), in key order.
fn session_pairs(batch: &[NewCdr]) -> Vec<(i64, &str)> {
    let mut pairs: Vec<(i64, &str)> = batch
        .iter()
        .map(|c| {
            (
                c.call_ms,
                c.record.values()[crate::cdr_query::SESSION].as_str(),
            )
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// Entries per `cdr_session` insert on SQLite (two parameters each).
const CDR_SESSION_ROWS_PER_STATEMENT: usize = 2000;

/// Rows per UNNEST statement on PostgreSQL: a batch is cut in a few
/// statements so that encoding one overlaps the execution of the previous.
const CDR_ROWS_PER_UNNEST: usize = 500;

fn unnest_query(
    chunk: &[NewCdr],
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut columns: Vec<Vec<&str>> = (1..ucm::cdr::FIELDS.len())
        .map(|_| Vec::with_capacity(chunk.len()))
        .collect();
    for c in chunk {
        for (column, v) in columns.iter_mut().zip(&c.record.values()[1..]) {
            column.push(v.as_str());
        }
    }
    let keys: Vec<&str> = chunk.iter().map(|c| c.dedupe_key.as_str()).collect();
    let starts: Vec<i64> = chunk.iter().map(|c| c.start_ms).collect();
    let calls: Vec<i64> = chunk.iter().map(|c| c.call_ms).collect();
    let ends: Vec<i64> = chunk.iter().map(|c| c.end_ms).collect();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(cdr_insert_sql_postgres()).into_sql_str())
        .bind(keys)
        .bind(starts)
        .bind(calls)
        .bind(ends);
    for column in columns {
        q = q.bind(column);
    }
    q
}

fn cdr_select_sql(tail: &str) -> String {
    let mut sql = String::from("SELECT acctid");
    for f in &ucm::cdr::FIELDS[1..] {
        sql.push_str(", \"");
        sql.push_str(f);
        sql.push('"');
    }
    sql.push_str(" FROM cdr ");
    sql.push_str(tail);
    sql
}

/// Binds `binds` (a `Vec<cdr_query::Bind>`) to `q` in order.
macro_rules! bind_all {
    ($q:expr, $binds:expr) => {{
        let mut q = $q;
        for b in $binds.iter() {
            q = match b {
                crate::cdr_query::Bind::Text(t) => q.bind(t.clone()),
                crate::cdr_query::Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

impl Store {
    /// The database's plan of a query, one line per step.
    async fn plan_of(&self, sql: crate::cdr_query::Sql) -> Result<String, Error> {
        let plan = match &self.inner {
            Inner::Sqlite { read, .. } => {
                let text = format!("EXPLAIN QUERY PLAN {}", sql.text);
                let rows = bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(text).into_sql_str()),
                    sql.binds
                )
                .fetch_all(read)
                .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>(3))
                    .collect::<Result<Vec<_>, _>>()?
            }
            Inner::Postgres(pool) => {
                let text = format!("EXPLAIN {}", sql.text);
                let rows = bind_all!(
                    sqlx::query(sqlx::AssertSqlSafe(text).into_sql_str()),
                    sql.binds
                )
                .fetch_all(pool)
                .await?;
                rows.iter()
                    .map(|r| r.try_get::<String, _>(0))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(plan.join("\n"))
    }
}

#[async_trait]
impl CdrStore for Store {
    async fn insert_cdrs(&self, batch: &[NewCdr]) -> Result<u64, Error> {
        if batch.is_empty() {
            return Ok(0);
        }
        // Page separators are replaced (see cdr_query); copying only the
        // rare batch that holds one keeps the common path copy-free.
        let cleaned: Vec<NewCdr>;
        let batch = if batch.iter().any(crate::cdr_query::needs_cleaning) {
            cleaned = batch.iter().map(crate::cdr_query::cleaned).collect();
            &cleaned[..]
        } else {
            batch
        };
        let inserted = match &self.inner {
            Inner::Sqlite { write, .. } => {
                let build = |chunk: &[NewCdr]| {
                    let sql = cdr_insert_sql_sqlite(chunk.len());
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str());
                    for c in chunk {
                        q = q
                            .bind(c.dedupe_key.as_str())
                            .bind(c.start_ms)
                            .bind(c.call_ms)
                            .bind(c.end_ms);
                        for v in &c.record.values()[1..] {
                            q = q.bind(v.as_str());
                        }
                    }
                    q
                };
                let mut tx = write.begin().await?;
                let mut n = 0;
                let mut chunks = batch.chunks(CDR_ROWS_PER_STATEMENT);
                let mut next = chunks.next().map(build);
                // Binding copies every value; that is done for the next
                // statement while SQLite's worker thread runs this one.
                while let Some(q) = next.take() {
                    let (done, following) =
                        tokio::join!(q.execute(&mut *tx), async { chunks.next().map(build) });
                    n += done?.rows_affected();
                    next = following;
                }
                let pairs = session_pairs(batch);
                for chunk in pairs.chunks(CDR_SESSION_ROWS_PER_STATEMENT) {
                    let mut sql = String::from(
                        "INSERT OR IGNORE INTO cdr_session (call_ms, \"session\") VALUES (?, ?)",
                    );
                    for _ in 1..chunk.len() {
                        sql.push_str(", (?, ?)");
                    }
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str());
                    for (call_ms, session) in chunk {
                        q = q.bind(*call_ms).bind(*session);
                    }
                    q.execute(&mut *tx).await?;
                }
                tx.commit().await?;
                n
            }
            Inner::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let mut n = 0;
                let mut chunks = batch.chunks(CDR_ROWS_PER_UNNEST);
                let mut next = chunks.next().map(unnest_query);
                // Encoding the arrays of the next statement overlaps the
                // server's work on this one.
                while let Some(q) = next.take() {
                    let (done, following) = tokio::join!(q.execute(&mut *tx), async {
                        chunks.next().map(unnest_query)
                    });
                    n += done?.rows_affected();
                    next = following;
                }
                let (calls, sessions): (Vec<i64>, Vec<&str>) =
                    session_pairs(batch).into_iter().unzip();
                sqlx::query(
                    "INSERT INTO cdr_session (call_ms, \"session\") \
                     SELECT unnest($1::bigint[]), unnest($2::text[]) ON CONFLICT DO NOTHING",
                )
                .bind(calls)
                .bind(sessions)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                n
            }
        };
        Ok(inserted)
    }

    async fn cdr_page(&self, q: &crate::PageQuery<'_>) -> Result<crate::CdrPage, Error> {
        let sql = crate::cdr_query::page_sql(self.backend(), q);
        let packed = with_pool!(self, read pool => {
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
                .fetch_one(pool).await?.try_get::<Option<String>, _>(0)?
        });
        Ok(crate::CdrPage::from_packed(packed))
    }

    fn cdr_export(
        &self,
        filter: crate::CdrFilter,
        after: Option<crate::PageKey>,
        page: u32,
    ) -> tokio::sync::mpsc::Receiver<Result<crate::CdrPage, Error>> {
        crate::cdr_export::start(self, filter, after, page)
    }

    async fn cdr_query_plan(&self, q: &crate::PageQuery<'_>) -> Result<String, Error> {
        self.plan_of(crate::cdr_query::page_sql(self.backend(), q))
            .await
    }

    async fn cdr_page_in(
        &self,
        q: &crate::PageQuery<'_>,
        order: crate::Order,
    ) -> Result<crate::CdrPage, Error> {
        let sql = crate::cdr_query::page_sql_in(self.backend(), q, order);
        let packed = with_pool!(self, read pool => {
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
                .fetch_one(pool).await?.try_get::<Option<String>, _>(0)?
        });
        Ok(crate::CdrPage::from_packed(packed))
    }

    async fn cdr_entry_count(
        &self,
        filter: &crate::CdrFilter,
        grouping: crate::Grouping,
    ) -> Result<u64, Error> {
        let sql = crate::cdr_query::count_sql(self.backend(), filter, grouping);
        let n = with_pool!(self, read pool => {
            bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
                .fetch_one(pool).await?.try_get::<i64, _>(0)?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn cdr_call_buckets(
        &self,
        filter: &crate::CdrFilter,
        bucket_ms: i64,
    ) -> Result<Vec<crate::CallBucket>, Error> {
        let sql = crate::cdr_query::buckets_sql(self.backend(), filter, bucket_ms);
        let rows: Vec<(i64, i64, i64)> = with_pool!(self, read pool => {
            let rows = bind_all!(sqlx::query(sqlx::AssertSqlSafe(sql.text).into_sql_str()), sql.binds)
                .fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?, r.try_get::<i64, _>(2)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        // Rows come in bucket order, answered (1) after unanswered (0).
        let mut out: Vec<crate::CallBucket> = Vec::new();
        for (start_ms, answered, calls) in rows {
            let calls = u64::try_from(calls).unwrap_or(0);
            if out.last().is_none_or(|b| b.start_ms != start_ms) {
                out.push(crate::CallBucket {
                    start_ms,
                    answered: 0,
                    unanswered: 0,
                });
            }
            if let Some(b) = out.last_mut() {
                if answered != 0 {
                    b.answered += calls;
                } else {
                    b.unanswered += calls;
                }
            }
        }
        Ok(out)
    }

    async fn cdr_browse_plans(
        &self,
        q: &crate::PageQuery<'_>,
    ) -> Result<Vec<(&'static str, String)>, Error> {
        use crate::cdr_query::{buckets_sql, count_sql, page_sql_in};
        let b = self.backend();
        Ok(vec![
            (
                "newest page",
                self.plan_of(page_sql_in(b, q, crate::Order::NewestFirst))
                    .await?,
            ),
            (
                "entry count",
                self.plan_of(count_sql(b, q.filter, q.grouping)).await?,
            ),
            (
                "call buckets",
                self.plan_of(buckets_sql(b, q.filter, 900_000)).await?,
            ),
        ])
    }

    async fn cdr_count(&self) -> Result<i64, Error> {
        Ok(
            with_pool!(self, read pool => sqlx::query("SELECT COUNT(*) FROM cdr")
            .fetch_one(pool).await?.try_get::<i64, _>(0)?),
        )
    }

    async fn recent_cdrs(&self, limit: i64) -> Result<Vec<ucm::cdr::CdrRecord>, Error> {
        let sql = cdr_select_sql("ORDER BY acctid DESC LIMIT $1");
        let records = with_pool!(self, read pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql).into_sql_str())
                .bind(limit).fetch_all(pool).await?;
            rows.iter().map(|r| -> Result<_, sqlx::Error> {
                let mut values = Vec::with_capacity(ucm::cdr::FIELDS.len());
                values.push(r.try_get::<i64, _>(0)?.to_string());
                for i in 1..ucm::cdr::FIELDS.len() {
                    values.push(r.try_get::<String, _>(i)?);
                }
                Ok(ucm::cdr::CdrRecord::from_values(values))
            }).collect::<Result<Vec<_>, _>>()?
        });
        Ok(records)
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<String>, Error> {
        let v = with_pool!(self, read pool => {
            let row = sqlx::query("SELECT value FROM checkpoints WHERE name = $1")
                .bind(name).fetch_optional(pool).await?;
            row.map(|r| r.try_get::<String, _>(0)).transpose()?
        });
        Ok(v)
    }

    async fn set_checkpoint(&self, name: &str, value: &str) -> Result<(), Error> {
        with_pool!(self, write pool => sqlx::query(
            "INSERT INTO checkpoints (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name).bind(value).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}

macro_rules! room_columns {
    () => {
        "address, extension, checked_in, guest_name, language, vip, arrival, departure, cos, dnd, \
         room_status, mwi, checked_in_ms, updated_ms, version"
    };
}

fn room_of<R: Row>(r: &R) -> Result<Room, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Room {
        address: r.try_get(0)?,
        extension: r.try_get(1)?,
        checked_in: r.try_get::<i64, _>(2)? != 0,
        guest_name: r.try_get(3)?,
        language: r.try_get(4)?,
        vip: r.try_get::<i64, _>(5)? != 0,
        arrival: r.try_get(6)?,
        departure: r.try_get(7)?,
        cos: r.try_get(8)?,
        dnd: r.try_get::<i64, _>(9)? != 0,
        room_status: r.try_get(10)?,
        mwi: r.try_get::<i64, _>(11)? != 0,
        checked_in_ms: r.try_get(12)?,
        updated_ms: r.try_get(13)?,
        version: r.try_get(14)?,
    })
}

macro_rules! wakeup_columns {
    () => {
        "id, address, due_ms, status, attempts, outcome, next_attempt_ms, claimed_by, \
         claim_until_ms, created_ms, updated_ms"
    };
}

fn wakeup_of<R: Row>(r: &R) -> Result<Wakeup, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Wakeup {
        id: r.try_get(0)?,
        address: r.try_get(1)?,
        due_ms: r.try_get(2)?,
        status: r.try_get(3)?,
        attempts: r.try_get(4)?,
        outcome: r.try_get(5)?,
        next_attempt_ms: r.try_get(6)?,
        claimed_by: r.try_get(7)?,
        claim_until_ms: r.try_get(8)?,
        created_ms: r.try_get(9)?,
        updated_ms: r.try_get(10)?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl PmsStore for Store {
    async fn room(&self, address: &str) -> Result<Option<Room>, Error> {
        let sql = concat!(
            "SELECT ",
            room_columns!(),
            " FROM pms_rooms WHERE address = $1"
        );
        Ok(with_pool!(self, read pool => {
            sqlx::query(sql).bind(address).fetch_optional(pool).await?
                .map(|r| room_of(&r)).transpose()?
        }))
    }

    async fn room_by_extension(&self, extension: &str) -> Result<Option<Room>, Error> {
        let sql = concat!(
            "SELECT ",
            room_columns!(),
            " FROM pms_rooms WHERE extension = $1"
        );
        Ok(with_pool!(self, read pool => {
            sqlx::query(sql).bind(extension).fetch_optional(pool).await?
                .map(|r| room_of(&r)).transpose()?
        }))
    }

    async fn rooms(&self) -> Result<Vec<Room>, Error> {
        let sql = concat!(
            "SELECT ",
            room_columns!(),
            " FROM pms_rooms ORDER BY address"
        );
        Ok(with_pool!(self, read pool => {
            sqlx::query(sql).fetch_all(pool).await?
                .iter().map(room_of).collect::<Result<Vec<_>, _>>()?
        }))
    }

    async fn write_room(&self, room: &Room) -> Result<RoomWrite, Error> {
        let b = |v: bool| i64::from(v);
        let result = with_pool!(self, write pool => {
            let q = if room.version == 0 {
                sqlx::query(
                    "INSERT INTO pms_rooms (address, extension, checked_in, guest_name, language, vip, \
                     arrival, departure, cos, dnd, room_status, mwi, checked_in_ms, updated_ms, version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1) \
                     ON CONFLICT (address) DO NOTHING")
            } else {
                sqlx::query(
                    "UPDATE pms_rooms SET extension = $2, checked_in = $3, guest_name = $4, language = $5, \
                     vip = $6, arrival = $7, departure = $8, cos = $9, dnd = $10, room_status = $11, \
                     mwi = $12, checked_in_ms = $13, updated_ms = $14, version = version + 1 \
                     WHERE address = $1 AND version = $15")
            };
            q.bind(&room.address).bind(&room.extension).bind(b(room.checked_in))
                .bind(&room.guest_name).bind(&room.language).bind(b(room.vip))
                .bind(&room.arrival).bind(&room.departure).bind(room.cos).bind(b(room.dnd))
                .bind(&room.room_status).bind(b(room.mwi)).bind(room.checked_in_ms)
                .bind(room.updated_ms).bind(room.version)
                .execute(pool).await.map(|done| done.rows_affected())
        });
        match result {
            Ok(1) => Ok(RoomWrite::Written(room.version + 1)),
            Ok(_) => Ok(RoomWrite::Conflict),
            Err(e) if is_unique_violation(&e) => Ok(RoomWrite::ExtensionTaken),
            Err(e) => Err(e.into()),
        }
    }

    async fn add_wakeup(
        &self,
        address: &str,
        due_ms: i64,
        now_ms: i64,
    ) -> Result<Option<i64>, Error> {
        Ok(with_pool!(self, write pool => {
            sqlx::query(
                "INSERT INTO pms_wakeups (address, due_ms, status, attempts, outcome, next_attempt_ms, \
                 claimed_by, claim_until_ms, created_ms, updated_ms) \
                 VALUES ($1, $2, 'pending', 0, '', $2, '', 0, $3, $3) ON CONFLICT DO NOTHING RETURNING id")
                .bind(address).bind(due_ms).bind(now_ms)
                .fetch_optional(pool).await?
                .map(|r| r.try_get::<i64, _>(0)).transpose()?
        }))
    }

    async fn wakeup(&self, id: i64) -> Result<Option<Wakeup>, Error> {
        let sql = concat!(
            "SELECT ",
            wakeup_columns!(),
            " FROM pms_wakeups WHERE id = $1"
        );
        Ok(with_pool!(self, read pool => {
            sqlx::query(sql).bind(id).fetch_optional(pool).await?
                .map(|r| wakeup_of(&r)).transpose()?
        }))
    }

    async fn wakeups_of(
        &self,
        address: &str,
        from_ms: i64,
        limit: i64,
    ) -> Result<Vec<Wakeup>, Error> {
        let sql = concat!(
            "SELECT ",
            wakeup_columns!(),
            " FROM pms_wakeups WHERE address = $1 AND due_ms >= $2 \
             ORDER BY due_ms, id LIMIT $3"
        );
        Ok(with_pool!(self, read pool => {
            sqlx::query(sql).bind(address).bind(from_ms).bind(limit)
                .fetch_all(pool).await?
                .iter().map(wakeup_of).collect::<Result<Vec<_>, _>>()?
        }))
    }

    async fn cancel_wakeups(
        &self,
        address: &str,
        due_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<u64, Error> {
        Ok(with_pool!(self, write pool => {
            sqlx::query(
                "UPDATE pms_wakeups SET status = 'cancelled', claimed_by = '', updated_ms = $3 \
                 WHERE address = $1 AND status IN ('pending', 'dialing') AND ($2 < 0 OR due_ms = $2)")
                .bind(address).bind(due_ms.unwrap_or(-1)).bind(now_ms)
                .execute(pool).await?.rows_affected()
        }))
    }

    async fn due_wakeups(&self, now_ms: i64, limit: i64) -> Result<Vec<Wakeup>, Error> {
        let sql = concat!(
            "SELECT ",
            wakeup_columns!(),
            " FROM pms_wakeups WHERE status = 'pending' \
             AND next_attempt_ms <= $1 ORDER BY next_attempt_ms, id LIMIT $2"
        );
        Ok(with_pool!(self, read pool => {
            sqlx::query(sql).bind(now_ms).bind(limit)
                .fetch_all(pool).await?
                .iter().map(wakeup_of).collect::<Result<Vec<_>, _>>()?
        }))
    }

    async fn claim_wakeup(
        &self,
        id: i64,
        node: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<i64>, Error> {
        Ok(with_pool!(self, write pool => {
            sqlx::query(
                "UPDATE pms_wakeups SET status = 'dialing', attempts = attempts + 1, claimed_by = $2, \
                 claim_until_ms = $4, updated_ms = $3 \
                 WHERE id = $1 AND status = 'pending' AND next_attempt_ms <= $3 RETURNING attempts")
                .bind(id).bind(node).bind(now_ms).bind(until_ms)
                .fetch_optional(pool).await?
                .map(|r| r.try_get::<i64, _>(0)).transpose()?
        }))
    }

    async fn finish_wakeup(
        &self,
        id: i64,
        node: &str,
        attempt: i64,
        status: &str,
        outcome: &str,
        next_attempt_ms: i64,
        now_ms: i64,
    ) -> Result<bool, Error> {
        let n = with_pool!(self, write pool => {
            sqlx::query(
                "UPDATE pms_wakeups SET status = $4, outcome = $5, next_attempt_ms = $6, claimed_by = '', \
                 claim_until_ms = 0, updated_ms = $7 \
                 WHERE id = $1 AND status = 'dialing' AND claimed_by = $2 AND attempts = $3")
                .bind(id).bind(node).bind(attempt).bind(status).bind(outcome)
                .bind(next_attempt_ms).bind(now_ms)
                .execute(pool).await?.rows_affected()
        });
        Ok(n == 1)
    }

    async fn miss_wakeup(&self, id: i64, now_ms: i64) -> Result<bool, Error> {
        let n = with_pool!(self, write pool => {
            sqlx::query(
                "UPDATE pms_wakeups SET status = 'missed', outcome = 'missed', updated_ms = $2 \
                 WHERE id = $1 AND status = 'pending'")
                .bind(id).bind(now_ms)
                .execute(pool).await?.rows_affected()
        });
        Ok(n == 1)
    }

    async fn release_stale_wakeups(&self, now_ms: i64, max_attempts: i64) -> Result<u64, Error> {
        Ok(with_pool!(self, write pool => {
            sqlx::query(
                "UPDATE pms_wakeups SET \
                 status = CASE WHEN attempts >= $2 THEN 'failed' ELSE 'pending' END, \
                 outcome = 'interrupted', next_attempt_ms = $1, claimed_by = '', claim_until_ms = 0, \
                 updated_ms = $1 \
                 WHERE status = 'dialing' AND claim_until_ms < $1")
                .bind(now_ms).bind(max_attempts)
                .execute(pool).await?.rows_affected()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(backend_of("sqlite://data/x.db").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(backend_of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(
            backend_of("postgresql://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(backend_of("mysql://u@h/db").is_err());
    }

    #[test]
    fn passwords_are_redacted_from_url_errors() {
        let err = backend_of("mysql://bob:hunter2@host/db")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2") && !err.contains("bob"), "{err}");
        assert!(err.contains("its scheme is \"mysql://\""), "{err}");
        // Password parts of any URL shape, for messages of the driver.
        for (url, parts) in [
            ("postgres://bob:hunter2@h/db", vec!["hunter2"]),
            ("bob:hunter2@h/db", vec!["hunter2"]),
            (
                "postgres://h/db?sslmode=require&password=hunter2",
                vec!["hunter2"],
            ),
            ("postgres://bob@h/db", vec![]),
            ("postgres://h/db", vec![]),
        ] {
            assert_eq!(url_secrets(url), parts, "{url}");
        }
        assert_eq!(
            scrub_url_secrets("cannot use p:hunter2@h", "postgres://p:hunter2@h"),
            "cannot use p:***@h"
        );
    }

    #[test]
    fn relative_sqlite_paths_resolve_against_the_base_dir() {
        let base = Path::new("/etc/pbxgate");
        assert_eq!(
            sqlite_path("sqlite://data/pbxgate.db", base).unwrap(),
            PathBuf::from("/etc/pbxgate/data/pbxgate.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/p.db", base).unwrap(),
            PathBuf::from("/var/lib/p.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:", base), None);
    }
}
