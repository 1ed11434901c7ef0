//! Test support: every store test runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL is used when `PBXGATE_TEST_POSTGRES_URL` names a server (an admin
//! URL such as `postgres://postgres@127.0.0.1:25432/postgres`); each call makes
//! a new, empty database there. Under CI the variable is required, so that the
//! PostgreSQL half can never be skipped silently.

use std::path::{Path, PathBuf};

use sqlx::{Connection, SqlSafeStr};

use crate::connection::Backend;
use crate::error::Error;

pub const POSTGRES_ENV: &str = "PBXGATE_TEST_POSTGRES_URL";

/// A database for one test: its URL and which backend it is.
#[derive(Debug, Clone)]
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    // Falls back to the clock if the OS RNG is unavailable: names need only be unique.
    if getrandom::fill(&mut b).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b = (nanos as u64).to_le_bytes();
    }
    ucm::auth::hex(&b)
}

/// The PostgreSQL admin URL, if tests should use PostgreSQL.
/// Returns an error under CI when it is missing.
pub fn postgres_admin_url() -> Result<Option<String>, String> {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => Ok(Some(url)),
        _ if std::env::var_os("CI").is_some() => Err(format!(
            "{POSTGRES_ENV} must be set under CI: store tests run on both backends"
        )),
        _ => Ok(None),
    }
}

/// Creates an empty PostgreSQL database and returns its URL.
pub async fn create_postgres_database(admin_url: &str) -> Result<String, Error> {
    let name = format!("pbxgate_test_{}", random_suffix());
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    // The name is made of [a-z0-9_] only, so interpolating it is safe.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")).into_sql_str())
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let base = match base.rfind('/') {
        Some(i) if i > base.find("://").map(|j| j + 2).unwrap_or(0) => &base[..i],
        _ => base,
    };
    Ok(format!("{base}/{name}{query}"))
}

/// A fresh SQLite database file under `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    let path: PathBuf = dir.join(format!("test-{}.db", random_suffix()));
    format!("sqlite://{}", path.display())
}

/// One fresh database per available backend: SQLite always, PostgreSQL when
/// configured (and always under CI).
pub async fn databases(dir: &Path) -> Vec<TestDb> {
    let mut out = vec![TestDb {
        backend: Backend::Sqlite,
        url: sqlite_url(dir),
    }];
    match postgres_admin_url() {
        Ok(Some(admin)) => match create_postgres_database(&admin).await {
            Ok(url) => out.push(TestDb {
                backend: Backend::Postgres,
                url,
            }),
            Err(e) => fail(&format!("cannot create a PostgreSQL test database: {e}")),
        },
        Ok(None) => record_skip(&format!(
            "PostgreSQL half: {POSTGRES_ENV} is not set (scripts/postgres.sh start)"
        )),
        Err(msg) => fail(&msg),
    }
    out
}

/// The file `scripts/test` names to collect skipped tests (one line each:
/// reason, tab, test), so that it can report them after the run: libtest
/// shows a skipped test's message only with `--nocapture`.
pub const SKIPS_ENV: &str = "PBXGATE_TEST_SKIPS";

/// Tells the person running the tests (and `scripts/test`'s summary) that
/// the current test did not run all it could, and why.
pub fn record_skip(reason: &str) {
    use std::io::Write;
    eprintln!("skipped: {reason}");
    let Some(path) = std::env::var_os(SKIPS_ENV) else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("?")
        .replace(['\t', '\n'], " ");
    let line = format!("{}\t{test}\n", reason.replace(['\t', '\n'], " "));
    // One write of a short line to an O_APPEND file: lines of parallel tests
    // never interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

#[allow(clippy::panic)]
fn fail(msg: &str) -> ! {
    panic!("{msg}")
}

/// Runs `sql` on the test database behind the store's back (rows changed by
/// hand, as an operator might); returns the rows affected.
pub async fn execute(db: &TestDb, sql: &str) -> Result<u64, Error> {
    macro_rules! q {
        () => {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()).into_sql_str())
        };
    }
    let n = match db.backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await?;
            q!().execute(&mut c).await?.rows_affected()
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            q!().execute(&mut c).await?.rows_affected()
        }
    };
    Ok(n)
}
