//! The SQLite file: its folder and mode, and the pragmas read at start.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqlitePool;
use sqlx::{Row, SqlSafeStr};

use crate::error::Error;

/// The database holds sessions, CSRF tokens and password hashes: its folder
/// must already exist (a mistyped path is not silently created anywhere),
/// and the file is created, or narrowed, to 0600. SQLite gives the -wal and
/// -shm files the database file's mode; existing ones are narrowed too.
pub(super) fn prepare_sqlite_file(path: &Path) -> Result<(), Error> {
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

/// Databases of at most this size made before incremental auto-vacuum are
/// converted at start (a `VACUUM`, which rewrites the file); larger ones are
/// left for the operator, with a warning.
const CONVERT_AUTO_VACUUM_BYTES: i64 = 256 * 1024 * 1024;

/// A SQLite `PRAGMA` that answers one integer.
pub(super) async fn pragma(write: &SqlitePool, name: &'static str) -> Result<i64, Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")).into_sql_str())
        .fetch_one(write)
        .await?;
    Ok(row.try_get(0)?)
}

/// Bytes the SQLite database file holds in pages.
pub(super) async fn page_bytes(write: &SqlitePool) -> Result<i64, Error> {
    Ok(pragma(write, "page_count")
        .await?
        .saturating_mul(pragma(write, "page_size").await?))
}

/// Switches a database made without auto-vacuum to incremental auto-vacuum.
pub(super) async fn incremental_auto_vacuum(write: &SqlitePool) -> Result<(), Error> {
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
