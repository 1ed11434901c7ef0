//! What the benchmarks share: `BENCH_*` settings, the seeded generator, and
//! removing the databases they create.
// Each benchmark uses a part of this module.
#![allow(dead_code)]

pub mod ami_stream;
pub mod db;
pub mod server;

use std::path::Path;
use std::process::{Command, Stdio};

/// A whole number from the environment, or `default`; anything else stops the
/// benchmark with a message.
pub fn env_number(name: &str, default: u64, min: u64, max: u64) -> u64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                eprintln!("bench: {name}={text:?} is not a whole number in {min}..={max}");
                std::process::exit(2);
            }
        },
    }
}

/// Whether to run the informational rows: `BENCH_DIAGNOSE=1` always, `=0`
/// never, otherwise only when a target was missed.
pub fn diagnose(targets_met: bool) -> bool {
    match std::env::var("BENCH_DIAGNOSE").as_deref() {
        Ok("1") => true,
        Ok("0") => false,
        _ => !targets_met,
    }
}

/// xorshift64: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..n` for test data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Deletes a SQLite database file with its WAL and shared-memory files.
pub fn remove_sqlite_files(file: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = file.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Drops the PostgreSQL database `url` names, through `psql` on `admin_url`
/// (the store has no API for it); says so when the database stays.
pub fn drop_postgres_database(admin_url: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap_or("");
    let name = name.split('?').next().unwrap_or("");
    // create_postgres_database names it from [a-z0-9_] only.
    let safe = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    let dropped = safe
        && Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("DROP DATABASE {name} WITH (FORCE)"))
            .arg("-d")
            .arg(admin_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !dropped {
        println!(
            "  (PostgreSQL database {name} could not be dropped (psql); it is left on the server)"
        );
    }
}

/// The `p` quantile (0..=1, nearest rank) of `v`, which it sorts; NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}
