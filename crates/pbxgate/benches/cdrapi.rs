//! `cdrapi` and `cdrExport` over large CDR tables, through the real server.
//!
//! For each size of `BENCH_SIZES` (CDR rows = legs, default 1,000,000) and
//! each backend (SQLite always; PostgreSQL when `PBXGATE_TEST_POSTGRES_URL`
//! names a server, e.g. from `scripts/postgres.sh start`), a generated table
//! is loaded through `Store::insert_cdrs` (batches of 5000, untimed; the load
//! rate is printed) and `Store::analyze`, then the release `pbxgate` binary is
//! started as a child process over that database (`[pbx] timezone = "UTC"`,
//! `[log] level = "info"`: its access log gives the handler time of the
//! filtered pages), so that its memory is its own. Pages are timed through
//! `curl` (one keep-alive HTTPS/1.1 connection, requests one after the
//! other, `time_total` of each); logins and the export use reqwest.
//!
//! The data (seeded, deterministic): legs grouped in sessions — about 70% of
//! one leg, 30% of 2-4 legs a few seconds apart sharing `session` and
//! `call_ms`. Multi-leg sessions have the call shapes of docs/compatibility.md
//! ("Calls with several legs"): queues (`QUEUE[600x]`, `Queue`, members
//! rung), ring groups (`RINGGROUP[6400]`), an IVR leg before the calls
//! (`IVR[7000]`), voicemail after the last (`VM`), blind transfers (later
//! legs' `src` is the previous callee), trunk fail-over for outbound calls;
//! 5% of one-leg sessions are conference (`CONFERENCE[800]`, `ConfBridge`)
//! and 3% retrieved parked calls (`PARKEDCALL`); 45% internal calls between
//! extensions 1000-1499, 25% outbound over `trunk_1`..`trunk_4` to
//! `0049301234xxxx` / `+1555xxxxxxx`, 30% inbound from such numbers, with the
//! channels, `channel_ext`, trunk names and `userfield` (direction) to match;
//! dispositions 60% ANSWERED, 20% NO ANSWER, 10% BUSY, 10% FAILED (`billsec`
//! 0 unless answered); recordings on 40% of answered legs; caller names, some
//! with commas; `lastdata` with commas. Calls are spread uniformly over the
//! 365 days of 2025 (about N/365 legs a day; `BENCH_DAYS` below); times are UTC.
//!
//! Rows per backend and size (targets apply at 1,000,000 legs; other sizes
//! are reported with the verdict in brackets):
//!
//! 1. `page: caller + 1 day, JSON`: `cdrapi` with `caller=1000-1049,12@`, a
//!    one-day `startTime`/`endTime` window on a seeded random day of 2025,
//!    `format=json`, `numRecords=1000`; 20 warm-up requests, then
//!    `BENCH_PAGE_REQUESTS` (default 200). Every answer must parse and hold
//!    exactly the number of entries the generator counted for that day.
//!    Target: p50 <= 20 ms, p99 <= 50 ms.
//! 2. Deep paging, 3 warm-up + 30 measured requests per offset, 1000 entries
//!    each, no filter: (a) the default profile (entries are sessions) at
//!    offset 0 and at offset 900,000 (90% of the entries when there are
//!    fewer, as at 1 M legs = 625,606 sessions), on the server of row 1
//!    (its RSS afterwards is an info row); (b) a server with `[cdrapi]
//!    profile = "ucm6100"` (every leg an entry) at offset 0 and at offset
//!    900,000 (likewise). The first entry of every page is checked against the
//!    generator. Target: the deep page's p50 <= 10x the first page's.
//! 3. `export`, on a fresh server so that its memory figures are the
//!    export's: one `cdrExport` CSV of every row, streamed; rows (lines minus
//!    the header), rows/s, and the server's peak RSS during the export (its
//!    VmHWM after resetting it through `/proc/<pid>/clear_refs` just before
//!    the request; VmRSS before is shown too). Beside it, the database's own
//!    CSV export of the same rows, columns and order, run just before:
//!    `sqlite3 -csv -header` / `psql -c "\copy (...) to stdout csv header"`.
//!    The first 1000 rows of both must hold the same values. Targets: >= 70%
//!    of the native rate, peak RSS <= 64 MiB.
//!
//! When a target is missed (or `BENCH_DIAGNOSE=1`; `0` never), informational
//! rows show where the time goes: the same page queries through
//! `Store::cdr_page` in this process (database + unpacking, no encoding, no
//! HTTP), the export's pages from the store alone, and the databases'
//! query plans.
//!
//! SQLite databases are cached under `BENCH_CACHE_DIR` (default
//! `/var/tmp/pbxgate-bench`), keyed by size, seed, generator version and a
//! digest of the SQLite migrations, and reused by later runs (about 600 MB per
//! million legs; delete the directory to reclaim it). `BENCH_CACHE=0` builds
//! a fresh database in a temporary directory instead. PostgreSQL gets a fresh
//! database per run, loaded, then `VACUUM (ANALYZE)` through `psql` (the
//! steady state of an old table, rather than autovacuum working during the
//! measurements), and dropped afterwards with `psql` (`BENCH_KEEP_DB=1` keeps
//! it and prints its URL, for investigation).
//!
//! Environment: `BENCH_SIZES` (comma list, `k`/`M` suffixes allowed, default
//! `1M`), `BENCH_BACKENDS` (`sqlite,postgres`, default both),
//! `BENCH_PAGE_REQUESTS`, `BENCH_ROWS` (`pages,export,legs`: rows 1+2a, 3,
//! 2b; default all), `BENCH_CACHE`, `BENCH_CACHE_DIR`, `BENCH_KEEP_DB`,
//! `BENCH_DIAGNOSE`, `PBXGATE_TEST_POSTGRES_URL`, `BENCH_PG_MONTHS` (`0`: the
//! generated year's legs all in one partition, as the unpartitioned table
//! before migration 0015; by default the year's monthly partitions are made
//! before loading), `BENCH_DAYS` (days the calls are spread over from
//! 2025-01-01, default 365: more legs make busier days; more days make a
//! longer history at the same rate a day).
//! Run with `cargo bench -p pbxgate --bench cdrapi` or `scripts/bench`.
//! Exits with status 1 on a wrong result (a failed or unparsable answer, a
//! wrong number of entries or rows, an export that differs from the
//! database's); a missed target is printed as NOT MET but does not fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::server::{RssSampler, Server, client, login, mib, post, proc_kib, reset_peak_rss};
use common::{Rng, diagnose, drop_postgres_database, env_number, remove_sqlite_files};

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store::{Backend, CdrFilter, CdrStore, ConnectOptions, Grouping, NewCdr, PageQuery, Store};
use ucm::cdr::{CdrRecord, FIELDS};

const SEED: u64 = 0xcd7a_915e_ed20_2025;
/// Bump when the generated data changes: cached databases are keyed by it.
const GEN_VERSION: u32 = 2;
/// The seed of the call shapes' stream.
const SHAPE_SEED: u64 = 0x5a4e_ca11_f10e_5eed;
/// 2025-01-01 00:00:00 UTC.
const YEAR_START: i64 = 1_735_689_600;
const DAY: i64 = 86_400;

/// Days the generated calls are spread over from `YEAR_START`
/// (`BENCH_DAYS`, default 365: N legs make N/365 legs a day; 1095 with 30 M
/// legs keeps the 10 M rate a day and makes the history three years long).
fn days() -> i64 {
    env_number("BENCH_DAYS", 365, 1, 36_500) as i64
}
/// Legs per `insert_cdrs` call while loading.
const BATCH: usize = 5000;
/// Asterisk-style uniqueid sequence numbers start here, so that they all
/// have the same width and sessions of one second sort in generation order.
const SEQ_BASE: u64 = 1_000_000_000;
const POSTGRES_ENV: &str = "PBXGATE_TEST_POSTGRES_URL";
const DEFAULT_CACHE_DIR: &str = "/var/tmp/pbxgate-bench";

/// The caller filter of row 1; the expected counts use the product's own
/// matcher (`ucm::cdrapi::pattern`), which the store tests hold equal to the SQL.
const CALLER: &str = "1000-1049,12@";

const PAGE_WARMUP: usize = 20;
const OFFSET_REQUESTS: usize = 30;
const OFFSET_WARMUP: usize = 3;
const PAGE_SIZE: u64 = 1000;
/// Offset of the deep page in legs (the figure).
const LEG_OFFSET: u64 = 900_000;
/// Rows of both exports compared value by value.
const HEAD_ROWS: u64 = 1000;

/// Targets, at `TARGET_LEGS`.
const TARGET_LEGS: u64 = 1_000_000;
const TARGET_P50_MS: f64 = 20.0;
const TARGET_P99_MS: f64 = 50.0;
const TARGET_DEEP_RATIO: f64 = 10.0;
const TARGET_EXPORT_RATIO: f64 = 0.70;
const TARGET_RSS_MIB: f64 = 64.0;

// ---------------------------------------------------------------------------
// Data.

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Internal,
    Outbound,
    Inbound,
}

const FIRST: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Mallory",
    "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter", "Zoe",
];
const LAST: &[&str] = &[
    "Smith", "Müller", "Jones", "Schmidt", "Brown", "Meyer", "Garcia", "Weber", "Miller", "Wagner",
    "Davis", "Becker", "Lopez", "Hoffmann", "Wilson",
];

/// A phone number from its code: extensions are their own code; external
/// numbers are `+1555xxxxxxx` (10,000,000..) or `0049301234xxxx` (20,000,000..).
fn number(code: u32) -> String {
    match code {
        0..10_000_000 => code.to_string(),
        10_000_000..20_000_000 => format!("+1555{:07}", code - 10_000_000),
        _ => format!("0049301234{:04}", code % 10_000),
    }
}

/// The code of a leg's src: the session's caller, or (after a transfer) an
/// extension, which is its own code.
fn leg_src_code(leg_src: &str, caller: u32) -> u32 {
    leg_src.parse().unwrap_or(caller)
}

/// The directory name of an extension; every seventh is "Last, First".
fn ext_name(code: u32) -> String {
    let c = code as usize;
    let (first, last) = (FIRST[c % FIRST.len()], LAST[(c / FIRST.len()) % LAST.len()]);
    if code.is_multiple_of(7) {
        format!("{last}, {first}")
    } else {
        format!("{first} {last}")
    }
}

/// `YYYY-MM-DD HH:MM:SS` of an epoch second, UTC (civil-from-days; checked
/// against jiff at start-up).
fn utc_text(epoch: i64) -> String {
    let days = epoch.div_euclid(DAY);
    let secs = epoch.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// What the checks need to know of a session.
#[derive(Clone, Copy)]
struct SessionMeta {
    /// Seconds since `YEAR_START`.
    call_s: u32,
    first_leg: u32,
    /// Caller (see [`number`]).
    src: u32,
}

impl SessionMeta {
    /// The UCM `session` value of this session, as the generator wrote it.
    fn key(&self) -> String {
        format!(
            "{}{}-{}",
            YEAR_START + i64::from(self.call_s),
            SEQ_BASE + u64::from(self.first_leg),
            number(self.src)
        )
    }
}

/// The generated table, as the checks need it.
struct Dataset {
    legs: u64,
    sessions: Vec<SessionMeta>,
    /// Per day of 2025 (and one beyond): sessions with a leg that starts
    /// that day and whose caller matches [`CALLER`].
    day_matches: Vec<u32>,
    /// The src code of every leg (a transferred call's later legs differ
    /// from the session's caller).
    leg_src: Vec<u32>,
}

/// Session kinds and sizes, drawn from their own stream so that the number
/// of sessions is known before the times are spread over the year.
fn plan(legs: u64) -> Vec<u8> {
    let mut rng = Rng(SEED ^ 0x5e55_1075_0f5e_ed00);
    let mut out = Vec::with_capacity((legs * 5 / 8 + 16) as usize);
    let mut n = 0;
    while n < legs {
        // Internal 45%, outbound 25%, inbound 30%; several legs: internal
        // 25% (ring groups), outbound 15% (trunk fail-over), inbound 50%.
        let (kind, multi) = match rng.below(100) {
            0..45 => (0u8, 25),
            45..70 => (1, 15),
            _ => (2, 50),
        };
        let k = if rng.below(100) < multi {
            2 + rng.below(3)
        } else {
            1
        };
        let k = k.min(legs - n);
        n += k;
        out.push(kind << 3 | k as u8);
    }
    out
}

struct Generator {
    rng: Rng,
    plan: Vec<u8>,
    next: usize,
    /// Seconds between session starts (each starts at a random second of its slot).
    step: i64,
    leg: u64,
    chan: u32,
    sessions: Vec<SessionMeta>,
    day_matches: Vec<u32>,
    /// The src code of every leg, in generation order.
    leg_src: Vec<u32>,
    caller: Vec<ucm::cdrapi::Pattern>,
}

impl Generator {
    fn new(legs: u64) -> Generator {
        let plan = plan(legs);
        let step = ((days() * DAY) / plan.len().max(1) as i64).max(1);
        Generator {
            rng: Rng(SEED),
            sessions: Vec::with_capacity(plan.len()),
            plan,
            next: 0,
            step,
            leg: 0,
            chan: 0,
            day_matches: vec![0; days() as usize + 2],
            leg_src: Vec::with_capacity(legs as usize),
            caller: ucm::cdrapi::pattern::parse_list(CALLER).expect("CALLER parses"),
        }
    }

    /// Whole sessions until at least `max` legs (or the end).
    fn batch(&mut self, max: usize) -> Vec<NewCdr> {
        let mut out = Vec::with_capacity(max + 4);
        while out.len() < max && self.next < self.plan.len() {
            self.session(&mut out);
        }
        out
    }

    fn finish(self) -> Dataset {
        Dataset {
            legs: self.leg,
            sessions: self.sessions,
            day_matches: self.day_matches,
            leg_src: self.leg_src,
        }
    }

    fn session(&mut self, out: &mut Vec<NewCdr>) {
        let index = self.next;
        self.next += 1;
        let p = self.plan[index];
        let kind = match p >> 3 {
            0 => Kind::Internal,
            1 => Kind::Outbound,
            _ => Kind::Inbound,
        };
        let legs = u64::from(p & 7);
        let rng = &mut self.rng;
        let call_s = YEAR_START + index as i64 * self.step + rng.below(self.step as u64) as i64;
        let first_leg = self.leg;
        let src_code = match kind {
            Kind::Inbound if rng.below(2) == 0 => 10_000_000 + rng.below(10_000_000) as u32,
            Kind::Inbound => 20_000_000 + rng.below(10_000) as u32,
            _ => 1000 + rng.below(500) as u32,
        };
        let src = number(src_code);
        let name = match kind {
            Kind::Inbound => match rng.below(3) {
                0 => String::new(),
                1 => format!("{}, {}", rng.pick(LAST), rng.pick(FIRST)),
                _ => format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
            },
            _ => ext_name(src_code),
        };
        let clid = format!("\"{name}\" <{src}>");
        let session = format!("{call_s}{}-{src}", SEQ_BASE + first_leg);
        let trunk0 = rng.below(4);
        let external = if rng.below(2) == 0 {
            format!("0049301234{:04}", rng.below(10_000))
        } else {
            format!("+1555{:07}", rng.below(10_000_000))
        };
        let direction = match kind {
            Kind::Internal => "Internal",
            Kind::Outbound => "Outbound",
            Kind::Inbound => "Inbound",
        };
        let mut start = call_s;
        // Days of the legs the caller filter matches (a transferred call's
        // later legs have another src).
        let mut days = [u32::MAX; 2];
        let mut prev_dst: Option<String> = None;
        for l in 0..legs {
            let rng = &mut self.rng;
            if l > 0 {
                start += 2 + rng.below(7) as i64;
            }
            let seq = SEQ_BASE + self.leg;
            let trunk = format!("trunk_{}", 1 + (trunk0 + l) % 4);
            let dst = match kind {
                Kind::Outbound => external.clone(),
                _ => {
                    let mut d = 1000 + rng.below(500) as u32;
                    if d == src_code {
                        d = 1000 + (d - 1000 + 1) % 500;
                    }
                    d.to_string()
                }
            };
            let disposition = match rng.below(100) {
                0..60 => "ANSWERED",
                60..80 => "NO ANSWER",
                80..90 => "BUSY",
                _ => "FAILED",
            };
            let answered = disposition == "ANSWERED";
            let (ring, talk) = match disposition {
                "ANSWERED" => (
                    1 + rng.below(15) as i64,
                    if rng.below(10) == 0 {
                        600 + rng.below(3000) as i64
                    } else {
                        1 + rng.below(300) as i64
                    },
                ),
                "NO ANSWER" => (10 + rng.below(21) as i64, 0),
                "BUSY" => (rng.below(3) as i64, 0),
                _ => (0, 0),
            };
            let end = start + ring + talk;
            self.chan += 2;
            let (chan_a, chan_b) = (self.chan - 1, self.chan);
            // A callee without a registered phone: no channel at all.
            let unreachable = disposition == "FAILED" && rng.below(2) == 0;
            let channel = match kind {
                Kind::Inbound => format!("PJSIP/{trunk}-{chan_a:08x}"),
                _ => format!("PJSIP/{src}-{chan_a:08x}"),
            };
            let (dstchannel, dstchannel_ext) = match (unreachable, kind) {
                (true, _) => (String::new(), String::new()),
                (false, Kind::Outbound) => (format!("PJSIP/{trunk}-{chan_b:08x}"), trunk.clone()),
                (false, _) => (format!("PJSIP/{dst}-{chan_b:08x}"), dst.clone()),
            };
            let channel_ext = match kind {
                Kind::Inbound => trunk.clone(),
                _ => src.clone(),
            };
            let lastdata = match kind {
                Kind::Outbound => format!("PJSIP/{dst}@{trunk},60,T"),
                _ => format!("PJSIP/{dst},30,tTkK"),
            };
            // The call shape (its own stream: the other fields are as before).
            let shape = splitmix(index as u64 ^ SHAPE_SEED) % 100;
            let external_dst = kind == Kind::Outbound;
            let (action_type, lastapp, dst, lastdata, leg_src) = if legs == 1 {
                match shape {
                    0..5 if !external_dst => (
                        "CONFERENCE[800]".to_owned(),
                        "ConfBridge",
                        "800".to_owned(),
                        "800".to_owned(),
                        src.clone(),
                    ),
                    5..8 if !external_dst => (
                        "PARKEDCALL".to_owned(),
                        "ParkedCall",
                        "701".to_owned(),
                        "default,701".to_owned(),
                        src.clone(),
                    ),
                    _ => ("DIAL".to_owned(), "Dial", dst, lastdata, src.clone()),
                }
            } else if external_dst {
                ("DIAL".to_owned(), "Dial", dst, lastdata, src.clone())
            } else {
                match shape {
                    0..30 => {
                        let q = format!("600{}", shape % 5);
                        let data = format!("{q},,,,30");
                        (format!("QUEUE[{q}]"), "Queue", q, data, src.clone())
                    }
                    30..50 => (
                        "RINGGROUP[6400]".to_owned(),
                        "Dial",
                        "6400".to_owned(),
                        lastdata,
                        src.clone(),
                    ),
                    50..65 if l == 0 => (
                        "IVR[7000]".to_owned(),
                        "BackGround",
                        "7000".to_owned(),
                        "custom/menu".to_owned(),
                        src.clone(),
                    ),
                    65..80 if l == legs - 1 => (
                        "VM".to_owned(),
                        "VoiceMail",
                        dst.clone(),
                        format!("{dst}@default,u"),
                        src.clone(),
                    ),
                    80.. if l > 0 => {
                        // Blind transfer: the previous callee calls on.
                        let from = prev_dst.clone().unwrap_or_else(|| src.clone());
                        ("DIAL".to_owned(), "Dial", dst, lastdata, from)
                    }
                    _ => ("DIAL".to_owned(), "Dial", dst, lastdata, src.clone()),
                }
            };
            prev_dst = Some(dst.clone());
            let start_text = utc_text(start);
            let recordfiles = if answered && rng.below(10) < 4 {
                format!("{}/auto-{start}-{src}-{dst}.wav@", &start_text[..7])
            } else {
                String::new()
            };
            let values: [String; 43] = [
                String::new(), // AcctId: assigned by the store
                String::new(), // accountcode
                leg_src.clone(),
                dst,
                match kind {
                    Kind::Inbound => "from-trunk",
                    _ => "from-internal",
                }
                .into(),
                clid.clone(),
                channel,
                dstchannel,
                lastapp.into(),
                lastdata,
                start_text,
                if answered {
                    utc_text(start + ring)
                } else {
                    String::new()
                },
                utc_text(end),
                (end - start).to_string(),
                talk.to_string(),
                disposition.into(),
                "DOCUMENTATION".into(),
                format!("{start}.{seq}"),
                direction.into(),
                channel_ext,
                dstchannel_ext.clone(),
                "s".into(),
                name.clone(),
                recordfiles,
                if answered {
                    dstchannel_ext
                } else {
                    String::new()
                },
                String::new(), // chanext
                String::new(), // dstchanext
                session.clone(),
                leg_src.clone(), // action_owner
                action_type,
                if kind == Kind::Inbound {
                    trunk.clone()
                } else {
                    String::new()
                },
                if kind == Kind::Outbound {
                    trunk
                } else {
                    String::new()
                },
                String::new(), // nat_call
                String::new(), // nat_call_peer
                String::new(), // video_call
                String::new(), // gdms_unique_code
                String::new(), // gds_call
                String::new(), // gsc_call
                String::new(), // wave_src_seqid
                String::new(), // wave_dst_seqid
                String::new(), // device_info
                String::new(), // device_info_peer
                String::new(), // recordfiles_desc
            ];
            out.push(NewCdr {
                dedupe_key: format!("{:010}{:016x}", self.leg, splitmix(self.leg ^ SEED)),
                start_ms: start * 1000,
                call_ms: call_s * 1000,
                end_ms: end * 1000,
                record: CdrRecord::from_values(values),
            });
            let day = ((start - YEAR_START) / DAY) as u32;
            if ucm::cdrapi::pattern::list_matches(&self.caller, &leg_src) {
                if days[0] == u32::MAX {
                    days[0] = day;
                } else if day != days[0] {
                    days[1] = day;
                }
            }
            self.leg_src.push(leg_src_code(&leg_src, src_code));
            self.leg += 1;
        }
        for d in days.into_iter().filter(|&d| d != u32::MAX) {
            if let Some(c) = self.day_matches.get_mut(d as usize) {
                *c += 1;
            }
        }
        self.sessions.push(SessionMeta {
            call_s: (call_s - YEAR_START) as u32,
            first_leg: first_leg as u32,
            src: src_code,
        });
    }
}

// ---------------------------------------------------------------------------
// Databases.

/// A loaded database and how to remove it.
struct Db {
    kind: Backend,
    url: String,
    /// SQLite: the database file.
    file: Option<PathBuf>,
    /// SQLite: kept for later runs.
    cached: bool,
    admin_url: Option<String>,
}

/// FNV-1a over the SQLite migrations (names and contents), so that a schema
/// change invalidates cached databases. `None` when they cannot be read.
fn schema_digest() -> Option<u64> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for f in files {
        let name = f.file_name()?.to_string_lossy().into_owned();
        for b in name.bytes().chain(std::fs::read(&f).ok()?) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    Some(h)
}

fn store_options(dir: &Path) -> ConnectOptions {
    ConnectOptions {
        max_connections: 2,
        base_dir: dir.to_path_buf(),
    }
}

/// Generates the table into `store` (or, with `insert` false, only runs the
/// generator for the checks), timed.
async fn generate_into(store: Option<&Store>, legs: u64) -> Result<(Dataset, f64), String> {
    let mut g = Generator::new(legs);
    let t = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let batch = g.batch(BATCH);
        if batch.is_empty() {
            break;
        }
        if let Some(store) = store {
            store
                .insert_cdrs(&batch)
                .await
                .map_err(|e| format!("insert_cdrs: {e}"))?;
            if last_print.elapsed() > Duration::from_secs(15) {
                last_print = Instant::now();
                println!(
                    "  ... {} of {legs} legs loaded ({:.0}/s)",
                    g.leg,
                    g.leg as f64 / t.elapsed().as_secs_f64()
                );
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((g.finish(), secs))
}

async fn load(store: &Store, legs: u64, label: &str) -> Result<Dataset, String> {
    println!(
        "  loading {legs} generated legs over {} days ({:.0} a day) into {label} (insert_cdrs, batches of {BATCH})",
        days(),
        legs as f64 / days() as f64
    );
    let (data, secs) = generate_into(Some(store), legs).await?;
    let t = Instant::now();
    store.analyze().await.map_err(|e| format!("analyze: {e}"))?;
    println!(
        "  info: loaded {} legs ({} sessions) in {secs:.1} s = {:.0} legs/s (generation included); ANALYZE {:.1} s",
        data.legs,
        data.sessions.len(),
        data.legs as f64 / secs,
        t.elapsed().as_secs_f64()
    );
    check_count(store, legs).await?;
    Ok(data)
}

async fn check_count(store: &Store, legs: u64) -> Result<(), String> {
    let n = store
        .cdr_count()
        .await
        .map_err(|e| format!("cdr_count: {e}"))?;
    if n == legs as i64 {
        Ok(())
    } else {
        Err(format!("the table holds {n} rows, {legs} expected"))
    }
}

/// The database of one backend and size, loaded, with the generator's view
/// of it, and the bench's own store on it.
async fn prepare(
    kind: Backend,
    legs: u64,
    tmp: &Path,
    admin_url: Option<&str>,
) -> Result<(Db, Store, Dataset), String> {
    match kind {
        Backend::Sqlite => {
            let cache = std::env::var("BENCH_CACHE").map_or(true, |v| v != "0");
            let digest = schema_digest();
            let (file, cached) = match (cache, digest) {
                (true, Some(digest)) => {
                    let dir = std::env::var("BENCH_CACHE_DIR")
                        .map_or_else(|_| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from);
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                    (
                        dir.join(format!(
                            "cdrapi-{legs}-{SEED:016x}-g{GEN_VERSION}-s{digest:016x}{}.db",
                            if days() == 365 {
                                String::new()
                            } else {
                                format!("-d{}", days())
                            }
                        )),
                        true,
                    )
                }
                _ => (tmp.join(format!("cdrapi-{legs}.db")), false),
            };
            let marker = file.with_extension("db.complete");
            let url = format!("sqlite://{}", file.display());
            let db = Db {
                kind,
                url: url.clone(),
                file: Some(file.clone()),
                cached,
                admin_url: None,
            };
            if cached && marker.exists() {
                println!("  reusing the cached database {}", file.display());
                let store = Store::connect(&url, &store_options(tmp))
                    .await
                    .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
                let (data, secs) = generate_into(None, legs).await?;
                println!("  info: generator re-run for the checks in {secs:.1} s");
                check_count(&store, legs).await?;
                return Ok((db, store, data));
            }
            remove_sqlite_files(&file);
            let _ = std::fs::remove_file(&marker);
            let store = Store::connect(&url, &store_options(tmp))
                .await
                .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            let data = load(&store, legs, &format!("SQLite {}", file.display())).await?;
            if cached {
                std::fs::write(&marker, b"")
                    .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
            }
            Ok((db, store, data))
        }
        Backend::Postgres => {
            let admin = admin_url.ok_or("no PostgreSQL admin URL")?;
            let url = store::testing::create_postgres_database(admin)
                .await
                .map_err(|e| format!("cannot create a PostgreSQL database: {e}"))?;
            let db = Db {
                kind,
                url: url.clone(),
                file: None,
                cached: false,
                admin_url: Some(admin.to_owned()),
            };
            let store = match Store::connect(&url, &store_options(tmp)).await {
                Ok(s) => s,
                Err(e) => {
                    remove(db);
                    return Err(format!("cannot open the PostgreSQL database: {e}"));
                }
            };
            // The monthly partitions of the generated year, as an operator's
            // history has them (the migration made those of its legs; these
            // are made ahead of loading here).
            // BENCH_PG_MONTHS=0 leaves them unmade: every leg in the default
            // partition, as one unpartitioned table (the layout before issue 20).
            let months: Vec<i64> = if std::env::var("BENCH_PG_MONTHS").is_ok_and(|v| v == "0") {
                println!(
                    "  BENCH_PG_MONTHS=0: no monthly partition, every leg in one (the old layout)"
                );
                Vec::new()
            } else {
                let end_ms = (YEAR_START + days() * DAY) * 1000;
                (0..)
                    .map_while(|m| {
                        pbxgate::ingest::history::month_start_ms(YEAR_START * 1000, m)
                            .filter(|&start| start < end_ms)
                    })
                    .collect()
            };
            if let Err(e) = store::CdrHistoryStore::cdr_months_make(&store, &months).await {
                store.close().await;
                remove(db);
                return Err(format!("cannot make the monthly partitions: {e}"));
            }
            match load(&store, legs, "a fresh PostgreSQL database").await {
                Ok(data) => {
                    vacuum(&db.url);
                    Ok((db, store, data))
                }
                Err(e) => {
                    store.close().await;
                    remove(db);
                    Err(e)
                }
            }
        }
    }
}

/// PostgreSQL after the bulk load: `VACUUM (ANALYZE)`, so that the table is
/// in the steady state of an old table (visibility map set, as autovacuum
/// leaves it) instead of autovacuum working on it during the measurements.
fn vacuum(url: &str) {
    let t = Instant::now();
    let ok = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            "VACUUM (ANALYZE) cdr",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        println!(
            "  info: VACUUM (ANALYZE) cdr in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    } else {
        println!("  (VACUUM through psql failed; autovacuum may run during the measurements)");
    }
}

/// Deletes a database that is not kept: the temporary SQLite file, or the
/// PostgreSQL database (`DROP DATABASE` through `psql`; the name is printed
/// when that fails).
fn remove(db: Db) {
    if std::env::var("BENCH_KEEP_DB").is_ok_and(|v| v == "1") && db.kind == Backend::Postgres {
        println!("  (BENCH_KEEP_DB=1: the database {} is kept)", db.url);
        return;
    }
    match db.kind {
        Backend::Sqlite => {
            if let (Some(file), false) = (&db.file, db.cached) {
                remove_sqlite_files(file);
            }
        }
        Backend::Postgres => drop_postgres_database(db.admin_url.as_deref().unwrap_or(""), &db.url),
    }
}

/// The entries of a JSON answer (`cdr_root`, or `cdr` with the ucm6100 profile).
fn entries(body: &[u8], root: &str) -> Result<Vec<Value>, String> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "answer is not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    match v.get_mut(root).map(Value::take) {
        Some(Value::Array(a)) => Ok(a),
        _ => Err(format!(
            "answer without a `{root}` array: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

/// Percentile of sorted values (nearest rank).
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn day_text(day: u32) -> String {
    utc_text(YEAR_START + i64::from(day) * DAY)[..10].to_owned()
}

// ---------------------------------------------------------------------------
// Table.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Met,
    NotMet,
    /// A target figure at a size the target is not set for.
    Reported(bool),
    Info,
    Skipped,
    Failed,
}

impl Verdict {
    fn judge(met: bool, legs: u64) -> Verdict {
        match (legs == TARGET_LEGS, met) {
            (true, true) => Verdict::Met,
            (true, false) => Verdict::NotMet,
            (false, m) => Verdict::Reported(m),
        }
    }

    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "MET",
            Verdict::NotMet => "NOT MET",
            Verdict::Reported(true) => "(met)",
            Verdict::Reported(false) => "(not met)",
            Verdict::Info => "-",
            Verdict::Skipped => "SKIPPED",
            Verdict::Failed => "FAILED",
        }
    }
}

struct Row {
    backend: &'static str,
    legs: u64,
    scenario: String,
    figures: String,
    target: String,
    verdict: Verdict,
}

impl Row {
    fn new(backend: &'static str, legs: u64, scenario: impl Into<String>) -> Row {
        Row {
            backend,
            legs,
            scenario: scenario.into(),
            figures: String::new(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    fn figures(mut self, f: impl Into<String>) -> Row {
        self.figures = f.into();
        self
    }

    fn target(mut self, t: impl Into<String>, verdict: Verdict) -> Row {
        self.target = t.into();
        self.verdict = verdict;
        self
    }

    fn print(&self) {
        let legs = if self.legs == 0 {
            "-".to_string()
        } else {
            self.legs.to_string()
        };
        println!(
            "{:<10} {:>9}  {:<42} {:<62} {:<24} {}",
            self.backend,
            legs,
            self.scenario,
            self.figures,
            self.target,
            self.verdict.text()
        );
    }
}

fn print_header() {
    println!(
        "{:<10} {:>9}  {:<42} {:<62} {:<24} result",
        "backend", "legs", "scenario", "figures", "target"
    );
}

/// Rows and wrong results of one backend/size.
struct Outcome {
    rows: Vec<Row>,
    failures: Vec<String>,
    /// Printed after the tables when diagnosing.
    notes: Vec<String>,
}

impl Outcome {
    fn push(&mut self, row: Row) {
        row.print();
        self.rows.push(row);
    }

    fn fail(&mut self, backend: &'static str, legs: u64, scenario: &str, why: String) {
        let row = Row::new(backend, legs, scenario)
            .figures(why.chars().take(62).collect::<String>())
            .target("", Verdict::Failed);
        self.push(row);
        self.failures
            .push(format!("{backend} {legs} legs, {scenario}: {why}"));
    }
}

// ---------------------------------------------------------------------------
// Scenarios.

struct PageStats {
    p50: f64,
    p99: f64,
    max: f64,
    mean_entries: f64,
    mean_kib: f64,
}

fn page_stats(times: Vec<f64>, entries: u64, bytes: u64) -> PageStats {
    let n = times.len().max(1) as f64;
    let s = sorted(times);
    PageStats {
        p50: pct(&s, 0.50),
        p99: pct(&s, 0.99),
        max: s.last().copied().unwrap_or(f64::NAN),
        mean_entries: entries as f64 / n,
        mean_kib: bytes as f64 / n / 1024.0,
    }
}

/// Days of 2025 for the filtered pages: warm-up first, then measured.
fn page_days(n: usize) -> Vec<u32> {
    let mut rng = Rng(SEED ^ 0xda7e_da7e_da7e_da7e);
    (0..n).map(|_| rng.below(days() as u64) as u32).collect()
}

fn day_request(cookie: &str, day: u32) -> String {
    let d = day_text(day);
    json!({"request": {
        "action": "cdrapi", "cookie": cookie, "format": "json", "numRecords": PAGE_SIZE,
        "caller": CALLER, "startTime": format!("{d}T00:00:00"), "endTime": format!("{d}T23:59:59"),
    }})
    .to_string()
}

/// Row 1: filtered one-day pages.
async fn day_pages(
    srv: &Server,
    cookie: &str,
    data: &Dataset,
    requests: usize,
) -> Result<PageStats, String> {
    let days = page_days(PAGE_WARMUP + requests);
    let bodies: Vec<String> = days.iter().map(|&d| day_request(cookie, d)).collect();
    let answers = curl_batch(srv, &bodies)?;
    let mut times = Vec::with_capacity(requests);
    let (mut total_entries, mut total_bytes) = (0u64, 0u64);
    for (i, (&day, (ms, body))) in days.iter().zip(answers).enumerate() {
        let got = entries(&body, "cdr_root")?.len() as u64;
        let want = u64::from(data.day_matches[day as usize]).min(PAGE_SIZE);
        if got != want {
            return Err(format!("{}: {got} entries, {want} expected", day_text(day)));
        }
        if i >= PAGE_WARMUP {
            times.push(ms);
            total_entries += got;
            total_bytes += body.len() as u64;
        }
    }
    Ok(page_stats(times, total_entries, total_bytes))
}

/// Sends `bodies` to `/api` one after the other on one keep-alive
/// connection of `curl` (libcurl, the HTTP stack of most PHP billing
/// clients) and returns each answer with its time from sending to the last
/// byte (`time_total`). Measured with curl rather than this process's
/// reqwest: reqwest stalled about one large answer in a hundred for ~40 ms
/// inside the body transfer (the server's own handler time showed no such
/// tail; curl and Python's http.client see none either).
fn curl_batch(srv: &Server, bodies: &[String]) -> Result<Vec<(f64, Vec<u8>)>, String> {
    let dir = srv.dir.join(format!("curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut cfg = String::new();
    for (i, body) in bodies.iter().enumerate() {
        if i > 0 {
            cfg.push_str("next\n");
        }
        let out = dir.join(format!("{i}.out"));
        cfg.push_str(&format!(
            "url = {}\ninsecure\nsilent\nshow-error\nhttp1.1\nheader = \"Content-Type: application/json\"\n\
             data-binary = {}\noutput = {}\nwrite-out = \"%{{time_total}}\\n\"\n",
            quote(&srv.url()),
            quote(body),
            quote(&out.display().to_string())
        ));
    }
    let cfg_path = dir.join("curl.cfg");
    std::fs::write(&cfg_path, cfg).map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let run = Command::new("curl")
        .arg("-K")
        .arg(&cfg_path)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !run.status.success() {
        return Err(format!(
            "curl failed ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    let times: Vec<f64> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .map(|s| s * 1000.0)
        .collect();
    if times.len() != bodies.len() {
        return Err(format!(
            "curl timed {} of {} requests",
            times.len(),
            bodies.len()
        ));
    }
    let mut out = Vec::with_capacity(bodies.len());
    for (i, ms) in times.into_iter().enumerate() {
        let f = dir.join(format!("{i}.out"));
        let body = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        out.push((ms, body));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

/// Row 2: unfiltered pages at `offset`; checks the first entry against the
/// generator.
async fn offset_pages(
    srv: &Server,
    cookie: &str,
    data: &Dataset,
    grouping: Grouping,
    offset: u64,
) -> Result<PageStats, String> {
    let body = json!({"request": {
        "action": "cdrapi", "cookie": cookie, "format": "json",
        "numRecords": PAGE_SIZE, "offset": offset,
    }})
    .to_string();
    let (root, total) = match grouping {
        Grouping::Sessions => ("cdr_root", data.sessions.len() as u64),
        Grouping::Legs => ("cdr", data.legs),
    };
    let want = total.saturating_sub(offset).min(PAGE_SIZE);
    let mut times = Vec::with_capacity(OFFSET_REQUESTS);
    let (mut total_entries, mut total_bytes) = (0u64, 0u64);
    let answers = curl_batch(srv, &vec![body; OFFSET_WARMUP + OFFSET_REQUESTS])?;
    for (i, (ms, answer)) in answers.into_iter().enumerate() {
        let list = entries(&answer, root)?;
        if list.len() as u64 != want {
            return Err(format!(
                "offset {offset}: {} entries, {want} expected",
                list.len()
            ));
        }
        if let Some(first) = list.first() {
            match grouping {
                Grouping::Sessions => {
                    let expected = data.sessions[offset as usize].key();
                    if first["cdr"] != expected.as_str() {
                        return Err(format!(
                            "offset {offset}: first entry is session {}, {expected} expected",
                            first["cdr"]
                        ));
                    }
                }
                Grouping::Legs => {
                    let expected = number(data.leg_src[offset as usize]);
                    if first["src"] != expected.as_str() {
                        return Err(format!(
                            "offset {offset}: first leg has src {}, {expected} expected",
                            first["src"]
                        ));
                    }
                }
            }
        }
        if i >= OFFSET_WARMUP {
            times.push(ms);
            total_entries += list.len() as u64;
            total_bytes += answer.len() as u64;
        }
    }
    Ok(page_stats(times, total_entries, total_bytes))
}

/// Counts CSV records (newlines outside quotes) and keeps the first ones.
#[derive(Default)]
struct CsvCount {
    bytes: u64,
    lines: u64,
    in_quotes: bool,
    head: Vec<u8>,
    head_done: bool,
}

impl CsvCount {
    fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        let mut head_end = None;
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'"' {
                self.in_quotes = !self.in_quotes;
            } else if b == b'\n' && !self.in_quotes {
                self.lines += 1;
                if !self.head_done && head_end.is_none() && self.lines == HEAD_ROWS + 1 {
                    head_end = Some(i + 1);
                }
            }
        }
        if !self.head_done {
            let end = head_end.unwrap_or(chunk.len());
            self.head.extend_from_slice(&chunk[..end]);
            self.head_done = head_end.is_some();
        }
    }

    /// Data rows (lines after the header).
    fn rows(&self) -> u64 {
        self.lines.saturating_sub(1)
    }
}

struct ExportRun {
    secs: f64,
    count: CsvCount,
    /// Server only: VmHWM after resetting it just before the request (KiB).
    peak_kib: Option<u64>,
    /// Server only: the highest VmRSS sampled every 50 ms (KiB).
    sampled_kib: u64,
    /// Server only: VmRSS just before the request (KiB).
    before_kib: u64,
}

impl ExportRun {
    fn rate(&self) -> f64 {
        self.count.rows() as f64 / self.secs
    }
}

/// Row 3, ours: one streamed `cdrExport` of everything.
async fn api_export(c: &reqwest::Client, srv: &Server, cookie: &str) -> Result<ExportRun, String> {
    let pid = srv.pid();
    // "5" resets the peak RSS (Linux >= 4.0), so VmHWM afterwards is the
    // peak during the export alone.
    let before_kib = proc_kib(pid, "VmRSS").unwrap_or(0);
    let reset = reset_peak_rss(pid);
    let sampler = RssSampler::start(pid);
    let body =
        json!({"request": {"action": "cdrExport", "cookie": cookie, "format": "csv"}}).to_string();
    let t = Instant::now();
    let result = async {
        let mut resp = post(c, &srv.url(), body, Duration::from_secs(4 * 3600)).await?;
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !ct.starts_with("text/csv") {
            return Err(format!("content type {ct:?}, text/csv expected"));
        }
        let mut count = CsvCount::default();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("export cut short after {} bytes: {e}", count.bytes))?
        {
            count.feed(&chunk);
        }
        Ok(count)
    }
    .await;
    let secs = t.elapsed().as_secs_f64();
    let sampled_kib = sampler.finish();
    let count = result?;
    Ok(ExportRun {
        secs,
        count,
        peak_kib: if reset { proc_kib(pid, "VmHWM") } else { None },
        sampled_kib,
        before_kib,
    })
}

/// The SELECT both native exports run: the 43 UCM columns in `FIELDS` order,
/// in the export's order.
fn native_select() -> String {
    let cols: Vec<String> = FIELDS
        .iter()
        .map(|f| {
            if *f == "AcctId" {
                "acctid AS \"AcctId\"".to_owned()
            } else {
                format!("\"{f}\"")
            }
        })
        .collect();
    format!(
        "SELECT {} FROM cdr ORDER BY call_ms, \"session\", start_ms, acctid",
        cols.join(", ")
    )
}

/// Row 3, native: the database's own CSV export, read from its stdout.
fn native_export(db: &Db) -> Result<(ExportRun, String), String> {
    let select = native_select();
    let (mut cmd, label) = match db.kind {
        Backend::Sqlite => {
            let mut cmd = Command::new("sqlite3");
            cmd.args(["-batch", "-csv", "-header"])
                .arg(db.file.as_ref().ok_or("no SQLite file")?)
                .arg(&select);
            (cmd, "sqlite3 -csv")
        }
        Backend::Postgres => {
            let mut cmd = Command::new("psql");
            cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &db.url, "-c"])
                .arg(format!("\\copy ({select}) to stdout csv header"));
            (cmd, "psql \\copy csv")
        }
    };
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {label}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut count = CsvCount::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => count.feed(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{label}: reading: {e}")),
        }
    }
    let status = child.wait().map_err(|e| format!("{label}: {e}"))?;
    let secs = t.elapsed().as_secs_f64();
    let err = errors.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{label} failed ({status}): {}", err.trim()));
    }
    Ok((
        ExportRun {
            secs,
            count,
            peak_kib: None,
            sampled_kib: 0,
            before_kib: 0,
        },
        label.to_owned(),
    ))
}

/// The first rows of both exports hold the same values (quoting and line
/// ends may differ).
fn compare_heads(ours: &[u8], native: &[u8]) -> Result<(), String> {
    let read = |b: &[u8]| -> Result<Vec<csv::StringRecord>, String> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(b)
            .records()
            .collect::<Result<_, _>>()
            .map_err(|e| format!("unparsable CSV: {e}"))
    };
    let (a, b) = (read(ours)?, read(native)?);
    if a.len() != b.len() {
        return Err(format!(
            "first rows: {} records in ours, {} in the native export",
            a.len(),
            b.len()
        ));
    }
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if x != y {
            return Err(format!(
                "row {i} differs from the native export:\n    ours:   {x:?}\n    native: {y:?}"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Diagnostics: the store alone, in this process.

fn day_filter(day: u32) -> CdrFilter {
    let from = (YEAR_START + i64::from(day) * DAY) * 1000;
    CdrFilter {
        caller: ucm::cdrapi::pattern::parse_list(CALLER).expect("the caller pattern"),
        from_ms: Some(from),
        to_ms: Some(from + (DAY - 1) * 1000),
        ..CdrFilter::default()
    }
}

/// p50 of `cdr_page` + unpacking, `runs` times (after 2 warm-ups).
async fn store_page_p50(
    store: &Store,
    filters: &[CdrFilter],
    grouping: Grouping,
    offset: u64,
) -> Result<(f64, u64), String> {
    let mut times = Vec::new();
    let mut legs = 0;
    for (i, f) in filters.iter().cycle().take(filters.len() + 2).enumerate() {
        let t = Instant::now();
        let page = store
            .cdr_page(&PageQuery {
                filter: f,
                grouping,
                after: None,
                offset,
                limit: PAGE_SIZE as u32,
            })
            .await
            .map_err(|e| format!("cdr_page: {e}"))?;
        let n = page.legs().map_err(|e| format!("unpacking: {e}"))?.len();
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            legs += n as u64;
        }
    }
    let runs = times.len().max(1) as u64;
    Ok((pct(&sorted(times), 0.5), legs / runs))
}

/// The export's source against the store alone (no encoding, no HTTP):
/// `Store::cdr_export` as `cdrExport` reads it.
async fn store_export(store: &Store) -> Result<(f64, u64), String> {
    let t = Instant::now();
    let mut pages = store.cdr_export(CdrFilter::default(), None, 1000);
    let mut rows = 0u64;
    while let Some(page) = pages.recv().await {
        let page = page.map_err(|e| format!("cdr_export: {e}"))?;
        rows += page.legs().map_err(|e| format!("unpacking: {e}"))?.len() as u64;
    }
    Ok((t.elapsed().as_secs_f64(), rows))
}

async fn plan_text(store: &Store, filter: &CdrFilter, grouping: Grouping, offset: u64) -> String {
    let q = PageQuery {
        filter,
        grouping,
        after: None,
        offset,
        limit: PAGE_SIZE as u32,
    };
    match store.cdr_query_plan(&q).await {
        Ok(p) => p
            .lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("      (no plan: {e})"),
    }
}

// ---------------------------------------------------------------------------
// One backend at one size.

struct Settings {
    page_requests: usize,
    /// `BENCH_ROWS`: which rows run (`pages`, `export`, `legs`; default all).
    rows: Vec<String>,
}

impl Settings {
    fn runs(&self, row: &str) -> bool {
        self.rows.iter().any(|r| r == row)
    }
}

/// What one backend/size run shares between its scenarios.
struct Ctx<'a> {
    b: &'static str,
    legs: u64,
    tmp: &'a Path,
    db: &'a Db,
    data: &'a Dataset,
    c: reqwest::Client,
    /// Whether a target was missed (runs the diagnostics).
    missed: bool,
}

fn page_figures(s: &PageStats) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1}, max {:.1}; {:.0} entries, {:.0} KiB",
        s.p50, s.p99, s.max, s.mean_entries, s.mean_kib
    )
}

/// Starts a server with `extra` configuration and logs in.
async fn server(
    ctx: &Ctx<'_>,
    out: &mut Outcome,
    profile: &str,
    extra: &str,
) -> Option<(Server, String)> {
    let (b, legs) = (ctx.b, ctx.legs);
    let label = format!("{b}-{legs}-{profile}-{}", out.rows.len());
    let srv = match Server::start(ctx.tmp, &label, &ctx.db.url, extra, &ctx.c).await {
        Ok(s) => s,
        Err(e) => {
            out.fail(b, legs, &format!("server ({profile})"), e);
            return None;
        }
    };
    match login(&ctx.c, &srv.url()).await {
        Ok(cookie) => Some((srv, cookie)),
        Err(e) => {
            out.fail(b, legs, &format!("login ({profile})"), e);
            srv.stop();
            None
        }
    }
}

/// First page and deep page of one grouping; the ratio is judged.
async fn paging(
    ctx: &mut Ctx<'_>,
    out: &mut Outcome,
    srv: &Server,
    cookie: &str,
    grouping: Grouping,
    deep: u64,
) {
    let (b, legs) = (ctx.b, ctx.legs);
    let (what, total) = match grouping {
        Grouping::Sessions => ("sessions", ctx.data.sessions.len() as u64),
        Grouping::Legs => ("legs (ucm6100)", ctx.data.legs),
    };
    let mut first = f64::NAN;
    for offset in [0, deep] {
        let scenario = format!("page: offset {offset}, {what}, JSON");
        println!("  running: {scenario}");
        let result = offset_pages(srv, cookie, ctx.data, grouping, offset).await;
        let handler = sorted(srv.handler_ms("cdrapi", OFFSET_REQUESTS));
        let server = format!("server p50 {:.1}", pct(&handler, 0.5));
        match result {
            Err(e) => out.fail(b, legs, &scenario, e),
            Ok(s) if offset == 0 => {
                first = s.p50;
                out.push(
                    Row::new(b, legs, scenario).figures(format!("{}; {server}", page_figures(&s))),
                );
            }
            Ok(s) => {
                let ratio = s.p50 / first;
                let met = ratio <= TARGET_DEEP_RATIO;
                ctx.missed |= !met;
                out.push(
                    Row::new(b, legs, scenario)
                        .figures(format!("{}; {server}; {ratio:.1}x first", page_figures(&s)))
                        .target(
                            format!(
                                "<= {TARGET_DEEP_RATIO:.0}x first ({}% deep)",
                                offset * 100 / total.max(1)
                            ),
                            Verdict::judge(met, legs),
                        ),
                );
            }
        }
    }
}

/// Rows 1 and 2a on one server of the default profile.
async fn pages(ctx: &mut Ctx<'_>, out: &mut Outcome, settings: &Settings, deep: u64) {
    let (b, legs) = (ctx.b, ctx.legs);
    let Some((srv, cookie)) = server(ctx, out, "ucm630x", "").await else {
        return;
    };
    let scenario = format!(
        "page: caller + 1 day, JSON ({} req)",
        settings.page_requests
    );
    println!("  running: {scenario}");
    match day_pages(&srv, &cookie, ctx.data, settings.page_requests).await {
        Err(e) => out.fail(b, legs, &scenario, e),
        Ok(s) => {
            let handler = sorted(srv.handler_ms("cdrapi", settings.page_requests));
            if handler.len() == settings.page_requests {
                out.push(
                    Row::new(b, legs, "info: server handler time of these pages").figures(format!(
                        "p50 {:.1} ms, p99 {:.1}, max {:.1} (access log; no TLS or transfer)",
                        pct(&handler, 0.5),
                        pct(&handler, 0.99),
                        handler.last().copied().unwrap_or(f64::NAN)
                    )),
                );
            }
            let met = s.p50 <= TARGET_P50_MS && s.p99 <= TARGET_P99_MS;
            ctx.missed |= !met;
            out.push(
                Row::new(b, legs, scenario)
                    .figures(page_figures(&s))
                    .target(
                        format!("p50<={TARGET_P50_MS:.0}, p99<={TARGET_P99_MS:.0} ms"),
                        Verdict::judge(met, legs),
                    ),
            );
        }
    }
    paging(ctx, out, &srv, &cookie, Grouping::Sessions, deep).await;
    let pid = srv.pid();
    out.push(
        Row::new(b, legs, "info: server RSS after these pages").figures(format!(
            "VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            mib(proc_kib(pid, "VmRSS").unwrap_or(0)),
            mib(proc_kib(pid, "VmHWM").unwrap_or(0))
        )),
    );
    srv.stop();
}

/// Row 3 on a fresh server of the default profile, so that its memory
/// figures are the export's: the database's own export first, then ours.
async fn export(ctx: &mut Ctx<'_>, out: &mut Outcome) {
    let (b, legs) = (ctx.b, ctx.legs);
    let Some((srv, cookie)) = server(ctx, out, "export", "").await else {
        return;
    };
    println!("  running: native CSV export");
    let native = match native_export(ctx.db) {
        Err(e) => {
            out.fail(b, legs, "export: native", e);
            None
        }
        Ok((run, label)) => {
            if run.count.rows() != legs {
                let why = format!("{} rows, {legs} expected", run.count.rows());
                out.fail(b, legs, "export: native", why);
            }
            out.push(
                Row::new(b, legs, format!("export: native {label}")).figures(format!(
                    "{} rows in {:.2} s = {:.0} rows/s, {:.0} MB",
                    run.count.rows(),
                    run.secs,
                    run.rate(),
                    run.count.bytes as f64 / 1e6
                )),
            );
            Some(run)
        }
    };
    println!("  running: cdrExport CSV");
    let run = api_export(&ctx.c, &srv, &cookie).await;
    srv.stop();
    let run = match run {
        Ok(r) => r,
        Err(e) => return out.fail(b, legs, "export: cdrExport CSV", e),
    };
    if run.count.rows() != legs {
        let why = format!("{} rows, {legs} expected", run.count.rows());
        out.fail(b, legs, "export: cdrExport CSV", why);
    }
    if let Some(n) = &native
        && let Err(e) = compare_heads(&run.count.head, &n.count.head)
    {
        out.fail(b, legs, "export: cdrExport CSV", e);
    }
    let mut row = Row::new(b, legs, "export: cdrExport CSV, all rows").figures(format!(
        "{} rows in {:.2} s = {:.0} rows/s, {:.0} MB",
        run.count.rows(),
        run.secs,
        run.rate(),
        run.count.bytes as f64 / 1e6
    ));
    match &native {
        Some(n) => {
            let ratio = run.rate() / n.rate();
            let met = ratio >= TARGET_EXPORT_RATIO;
            ctx.missed |= !met;
            row.figures
                .push_str(&format!("; {:.0}% of native", ratio * 100.0));
            row = row.target(
                format!(">= {:.0}% of native", TARGET_EXPORT_RATIO * 100.0),
                Verdict::judge(met, legs),
            );
        }
        None => row = row.target("(no native figure)", Verdict::Failed),
    }
    out.push(row);
    let (peak, how) = match run.peak_kib {
        Some(p) => (p, "VmHWM during the export"),
        None => (run.sampled_kib, "sampled VmRSS, no VmHWM reset"),
    };
    let met = mib(peak) <= TARGET_RSS_MIB;
    ctx.missed |= !met;
    out.push(
        Row::new(b, legs, "export: server peak RSS")
            .figures(format!(
                "{:.1} MiB ({how}; {:.1} MiB before)",
                mib(peak),
                mib(run.before_kib)
            ))
            .target(
                format!("<= {TARGET_RSS_MIB:.0} MiB"),
                Verdict::judge(met, legs),
            ),
    );
}

/// Row 2b on a server of the ucm6100 profile (every leg an entry).
async fn leg_pages(ctx: &mut Ctx<'_>, out: &mut Outcome, deep: u64) {
    let extra = "[cdrapi]\nprofile = \"ucm6100\"\n";
    let Some((srv, cookie)) = server(ctx, out, "ucm6100", extra).await else {
        return;
    };
    paging(ctx, out, &srv, &cookie, Grouping::Legs, deep).await;
    srv.stop();
}

async fn run(
    kind: Backend,
    legs: u64,
    tmp: &Path,
    admin_url: Option<&str>,
    settings: &Settings,
) -> Outcome {
    let b = kind.name();
    let mut out = Outcome {
        rows: Vec::new(),
        failures: Vec::new(),
        notes: Vec::new(),
    };
    let (db, store, data) = match prepare(kind, legs, tmp, admin_url).await {
        Ok(x) => x,
        Err(e) => {
            out.fail(b, legs, "load", e);
            return out;
        }
    };
    // The offset, 900,000, where the table has that many entries
    // and a page more; else 90% of them.
    let deep = |entries: u64| {
        if entries >= LEG_OFFSET + PAGE_SIZE {
            LEG_OFFSET
        } else {
            entries * 9 / 10
        }
    };
    let deep_sessions = deep(data.sessions.len() as u64);
    let deep_legs = deep(legs);
    let mut ctx = Ctx {
        b,
        legs,
        tmp,
        db: &db,
        data: &data,
        c: client(),
        missed: false,
    };
    if settings.runs("pages") {
        pages(&mut ctx, &mut out, settings, deep_sessions).await;
    }
    if settings.runs("export") {
        export(&mut ctx, &mut out).await;
    }
    if settings.runs("legs") {
        leg_pages(&mut ctx, &mut out, deep_legs).await;
    }
    if diagnose(!ctx.missed) {
        diagnostics(&mut out, b, legs, &store, &data, deep_sessions, deep_legs).await;
    }
    store.close().await;
    remove(db);
    out
}

/// Informational rows: the store alone, and the query plans.
async fn diagnostics(
    out: &mut Outcome,
    b: &'static str,
    legs: u64,
    store: &Store,
    data: &Dataset,
    deep_sessions: u64,
    deep_legs: u64,
) {
    println!("  running: diagnostics (store alone, in the bench process)");
    let days: Vec<CdrFilter> = page_days(30).into_iter().map(day_filter).collect();
    let none = [CdrFilter::default()];
    let cases: [(&str, &[CdrFilter], Grouping, u64); 5] = [
        ("caller + 1 day", &days[..], Grouping::Sessions, 0),
        ("offset 0, sessions", &none, Grouping::Sessions, 0),
        ("deep, sessions", &none, Grouping::Sessions, deep_sessions),
        ("offset 0, legs", &none, Grouping::Legs, 0),
        ("deep, legs", &none, Grouping::Legs, deep_legs),
    ];
    for (name, filters, grouping, offset) in cases {
        let scenario = format!("info: store.cdr_page {name}");
        match store_page_p50(store, filters, grouping, offset).await {
            Ok((p50, n)) => out.push(Row::new(b, legs, scenario).figures(format!(
                "p50 {p50:.1} ms (query + unpacking, {n} legs; offset {offset})"
            ))),
            Err(e) => out.notes.push(format!("{b} {legs}: {scenario}: {e}")),
        }
        out.notes.push(format!(
            "{b} {legs} legs, plan of {name} (offset {offset}):\n{}",
            plan_text(store, &filters[0], grouping, offset).await
        ));
    }
    match store_export(store).await {
        Ok((secs, rows)) => {
            if rows != data.legs {
                out.failures.push(format!(
                    "{b} {legs} legs, store export: {rows} rows, {} expected",
                    data.legs
                ));
            }
            out.push(
                Row::new(b, legs, "info: export pages from the store alone").figures(format!(
                    "{rows} rows in {secs:.2} s = {:.0} rows/s (pages of 1000 legs)",
                    rows as f64 / secs
                )),
            );
        }
        Err(e) => out.notes.push(format!("{b} {legs}: store export: {e}")),
    }
}

// ---------------------------------------------------------------------------

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().replace('_', "");
    let (num, mul) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1_000),
        Some('m' | 'M') => (&s[..s.len() - 1], 1_000_000),
        _ => (s.as_str(), 1),
    };
    num.parse::<u64>()
        .ok()
        .map(|n| n * mul)
        .filter(|n| (1_000..=100_000_000).contains(n))
}

fn sizes_from_env() -> Vec<u64> {
    let text = std::env::var("BENCH_SIZES").unwrap_or_else(|_| "1000000".into());
    let sizes: Option<Vec<u64>> = text.split(',').map(parse_size).collect();
    match sizes {
        Some(s) if !s.is_empty() => s,
        _ => {
            eprintln!(
                "bench: BENCH_SIZES={text:?} is not a comma list of sizes in 1000..=100000000 (k/M suffixes allowed)"
            );
            std::process::exit(2);
        }
    }
}

fn backends_from_env() -> Vec<Backend> {
    let text = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let mut out = Vec::new();
    for name in text.split(',').map(|s| s.trim().to_ascii_lowercase()) {
        match name.as_str() {
            "sqlite" => out.push(Backend::Sqlite),
            "postgres" | "postgresql" => out.push(Backend::Postgres),
            _ => {
                eprintln!("bench: BENCH_BACKENDS={text:?}: sqlite and/or postgres");
                std::process::exit(2);
            }
        }
    }
    out
}

fn main() {
    for epoch in [
        0,
        YEAR_START,
        YEAR_START + 59 * DAY + 3661,
        1_774_700_000,
        4_102_444_799,
    ] {
        let want = jiff::Timestamp::from_second(epoch)
            .expect("time in range")
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert_eq!(utc_text(epoch), want, "civil time of {epoch}");
    }
    let sizes = sizes_from_env();
    let backends = backends_from_env();
    let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty());
    let settings = Settings {
        page_requests: env_number("BENCH_PAGE_REQUESTS", 200, 10, 100_000) as usize,
        rows: std::env::var("BENCH_ROWS")
            .unwrap_or_else(|_| "pages,export,legs".into())
            .split(',')
            .map(|r| r.trim().to_ascii_lowercase())
            .collect(),
    };
    println!(
        "pbxgate cdrapi benchmark: release pbxgate as a child process, one keep-alive HTTPS/1.1 \
         connection, sequential requests; {} CPUs; seed {SEED:#x}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    println!(
        "targets at {TARGET_LEGS} legs: filtered page p50 <= {TARGET_P50_MS} ms, p99 <= {TARGET_P99_MS} ms; \
         deep page <= {TARGET_DEEP_RATIO}x the first; export >= {:.0}% of the native rate, peak RSS <= {TARGET_RSS_MIB} MiB",
        TARGET_EXPORT_RATIO * 100.0
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-cdrapi")
        .enable_all()
        .build()
        .expect("cannot build the runtime");
    let tmp = tempfile::tempdir().expect("cannot create a temporary directory");

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for &legs in &sizes {
        for &kind in &backends {
            println!();
            if kind == Backend::Postgres && admin_url.is_none() {
                let row = Row::new(kind.name(), legs, "all").figures(format!(
                    "set {POSTGRES_ENV}=<admin URL> (`scripts/postgres.sh start`)"
                ));
                let row = row.target("", Verdict::Skipped);
                row.print();
                rows.push(row);
                continue;
            }
            println!("{} with {legs} legs:", kind.name());
            print_header();
            let outcome = rt.block_on(run(kind, legs, tmp.path(), admin_url.as_deref(), &settings));
            rows.extend(outcome.rows);
            failures.extend(outcome.failures);
            notes.extend(outcome.notes);
        }
    }

    println!("\nsummary:");
    print_header();
    for r in &rows {
        r.print();
    }
    if !notes.is_empty() {
        println!("\nnotes (BENCH_DIAGNOSE=0 skips the diagnostics, =1 always runs them):");
        for n in &notes {
            println!("  {n}");
        }
    }
    println!();
    let met = rows.iter().filter(|r| r.verdict == Verdict::Met).count();
    let not_met: Vec<&Row> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::NotMet)
        .collect();
    println!(
        "targets at {TARGET_LEGS} legs: {met} MET, {} NOT MET",
        not_met.len()
    );
    for r in &not_met {
        println!(
            "  NOT MET: {} {}: {} ({})",
            r.backend, r.scenario, r.figures, r.target
        );
    }
    drop(rt);
    drop(tmp);
    if !failures.is_empty() {
        println!("\nWRONG RESULTS ({}):", failures.len());
        for f in &failures {
            println!("  {f}");
        }
        std::process::exit(1);
    }
}
