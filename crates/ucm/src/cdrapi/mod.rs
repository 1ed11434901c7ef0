//! `cdrapi`: the UCM CDR query language (spec §4.2–4.4) and its output shapes
//! (§4.5). Pure: the store turns a [`CdrQuery`] into SQL, the server streams
//! what [`encode`] writes.
//!
//! - [`params`]: request parameters → [`CdrQuery`] (new-API leniency and the
//!   strict old-API rules), or a [`QueryError`] that still knows the format,
//!   because every error is answered with the empty container of that format.
//! - [`pattern`]: caller/callee/answeredby lists (exact, range, wildcard, `0-0`).
//! - [`time`]: startTime/endTime formats.
//! - [`encode`]: CSV / XML / JSON writers, flat or grouped entries, profiles.

pub mod encode;
pub mod params;
pub mod pattern;
pub mod time;

pub use params::{Mode, parse_params, query_pairs, query_pairs_lenient};
pub use pattern::Pattern;
pub use time::TimeSpec;

/// Most records one `cdrapi` answer holds (`numRecords` maximum and default).
pub const MAX_RECORDS: u32 = 1000;

/// Output format (`format`, case-insensitive; anything else → CSV, §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Csv,
    Xml,
    Json,
}

impl Format {
    /// `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xml => "application/xml; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
        }
    }
}

/// Which call time `startTime`/`endTime` bound (`timeFilterType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeField {
    #[default]
    Start,
    End,
}

/// A parsed, validated `cdrapi` request. Every filter that is set must match
/// (AND); an empty pattern list means "no filter".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CdrQuery {
    pub format: Format,
    /// 0..=MAX_RECORDS for `cdrapi`; the export ignores the cap.
    pub num_records: u32,
    pub offset: u64,
    /// Matches `src`. Items are alternatives (OR).
    pub caller: Vec<Pattern>,
    /// Matches `dst`.
    pub callee: Vec<Pattern>,
    /// Matches `dstanswer`.
    pub answered_by: Vec<Pattern>,
    /// Inclusive lower bound on the call time chosen by `time_field`.
    pub start_time: Option<TimeSpec>,
    /// Inclusive upper bound.
    pub end_time: Option<TimeSpec>,
    /// Inclusive bounds on `billsec`.
    pub min_dur: Option<u64>,
    pub max_dur: Option<u64>,
    pub time_field: TimeField,
    /// Matches `caller_name`: the whole value exactly, or as a wildcard when it holds `@` or `_`.
    pub caller_name: Option<Pattern>,
}

/// A request that must be answered with the empty container of `format`.
/// `reason` is for the log (the UCM writes it to the Asterisk log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub format: Format,
    pub reason: String,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}
