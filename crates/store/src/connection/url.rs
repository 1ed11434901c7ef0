//! Which database a URL names, and which parts of it are secret: checked
//! without connecting.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::error::Error;

/// Which database a [`Store`](crate::Store) talks to.
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
/// as [`Store::connect`](crate::Store::connect) reads it, without connecting. Messages never show
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

pub(super) fn pg_options(url: &str) -> Result<PgConnectOptions, Error> {
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

pub(super) fn sqlite_path(url: &str, base_dir: &Path) -> Option<PathBuf> {
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
