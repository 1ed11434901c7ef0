//! The `cdrapi` query → SQL translation, the same on SQLite and PostgreSQL
//! apart from the pattern operators, and the packed page format.
//!
//! A page is one value built by the database: the values of a leg (`call_ms`,
//! `AcctId`, the other 42 UCM fields, `start_ms`) joined by U+001F, legs
//! joined by U+001E. One value per page instead of 45 per leg keeps the
//! driver's per-value cost (an allocation and a copy each) out of exports of
//! millions of rows. The store guarantees that no stored value holds either
//! separator ([`clean`] at insert; migration 0004 for older rows).

use ucm::cdr::FIELDS;
use ucm::cdrapi::{Pattern, TimeField};

use super::record::NewCdr;
use crate::connection::Backend;
use crate::error::Error;

/// A `cdrapi` filter with its times resolved to UTC milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrFilter {
    pub caller: Vec<Pattern>,
    pub callee: Vec<Pattern>,
    pub answered_by: Vec<Pattern>,
    pub caller_name: Option<Pattern>,
    pub time_field: TimeField,
    /// Inclusive bounds on the leg's start (or end) time.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Inclusive bounds on `billsec`.
    pub min_billsec: Option<u64>,
    pub max_billsec: Option<u64>,
}

impl CdrFilter {
    /// No condition at all: every leg matches.
    pub fn is_empty(&self) -> bool {
        self.caller.is_empty()
            && self.callee.is_empty()
            && self.answered_by.is_empty()
            && self.caller_name.is_none()
            && self.from_ms.is_none()
            && self.to_ms.is_none()
            && self.min_billsec.is_none()
            && self.max_billsec.is_none()
    }
}

/// What `numRecords` / `offset` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Grouping {
    /// Sessions: the legs of one call are one entry (UCM62xx and later).
    #[default]
    Sessions,
    /// Every leg is an entry (early firmware).
    Legs,
}

/// Where a page ends, for keyset paging: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageKey {
    pub call_ms: i64,
    pub session: String,
    /// Legs grouping only.
    pub start_ms: i64,
    pub acctid: i64,
}

/// One page request.
#[derive(Debug, Clone, Copy)]
pub struct PageQuery<'a> {
    pub filter: &'a CdrFilter,
    pub grouping: Grouping,
    /// Keyset position: entries after this one.
    pub after: Option<&'a PageKey>,
    /// Entries to skip (after `after`).
    pub offset: u64,
    /// Entries to return.
    pub limit: u32,
}

/// The legs of a page, in entry order (entries contiguous, legs by start).
#[derive(Debug, Clone, Default)]
pub struct CdrPage {
    packed: String,
}

/// One leg of a page, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLeg<'a> {
    pub call_ms: i64,
    pub start_ms: i64,
    /// The 43 UCM values in `FIELDS` order.
    pub values: [&'a str; 43],
}

impl PageLeg<'_> {
    pub fn session(&self) -> &str {
        self.values[SESSION]
    }
}

pub(crate) const SESSION: usize = 27;
/// Values per packed leg: call_ms, the 43 UCM values (AcctId first), start_ms.
const ROW_VALUES: usize = 1 + 43 + 1;

impl CdrPage {
    pub(crate) fn from_packed(packed: Option<String>) -> CdrPage {
        CdrPage {
            packed: packed.unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// Number of legs, without decoding them.
    pub fn leg_count(&self) -> usize {
        if self.packed.is_empty() {
            0
        } else {
            self.packed.bytes().filter(|&b| b == ROW_SEP as u8).count() + 1
        }
    }

    /// The key after the last leg, decoding only that leg.
    pub fn last_key(&self) -> Result<Option<PageKey>, Error> {
        let last = match self.packed.rfind(ROW_SEP) {
            Some(i) => CdrPage {
                packed: self.packed[i + ROW_SEP.len_utf8()..].to_owned(),
            },
            None if self.packed.is_empty() => return Ok(None),
            None => CdrPage {
                packed: self.packed.clone(),
            },
        };
        match last.legs()?.first() {
            Some(leg) => PageKey::of(leg).map(Some),
            None => Ok(None),
        }
    }

    /// Bytes held (for memory accounting in tests and benchmarks).
    pub fn size(&self) -> usize {
        self.packed.len()
    }

    /// Decodes the legs. An error means the database sent something this
    /// format cannot have produced.
    pub fn legs(&self) -> Result<Vec<PageLeg<'_>>, Error> {
        if self.packed.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(self.leg_count());
        for row in self.packed.split(ROW_SEP) {
            let mut leg = PageLeg {
                call_ms: 0,
                start_ms: 0,
                values: [""; 43],
            };
            let mut n = 0;
            for (i, v) in row.split(VALUE_SEP).enumerate() {
                match i {
                    0 => leg.call_ms = v.parse().map_err(|_| Error::Corrupt("call_ms"))?,
                    1..=43 => leg.values[i - 1] = v,
                    44 => leg.start_ms = v.parse().map_err(|_| Error::Corrupt("start_ms"))?,
                    _ => return Err(Error::Corrupt("too many values in a leg")),
                }
                n = i + 1;
            }
            if n != ROW_VALUES {
                return Err(Error::Corrupt("too few values in a leg"));
            }
            out.push(leg);
        }
        Ok(out)
    }
}

impl PageKey {
    /// The key of `leg`, to page on after it.
    pub fn of(leg: &PageLeg<'_>) -> Result<PageKey, Error> {
        Ok(PageKey {
            call_ms: leg.call_ms,
            session: leg.session().to_owned(),
            start_ms: leg.start_ms,
            acctid: leg.values[0]
                .parse()
                .map_err(|_| Error::Corrupt("AcctId"))?,
        })
    }
}

const ROW_SEP: char = '\u{1e}';
const VALUE_SEP: char = '\u{1f}';

pub(crate) fn needs_cleaning(c: &NewCdr) -> bool {
    c.record
        .values()
        .iter()
        .any(|v| v.contains([ROW_SEP, VALUE_SEP, '\0']))
}

/// `c` with every value [`clean`].
pub(crate) fn cleaned(c: &NewCdr) -> NewCdr {
    NewCdr {
        record: ucm::cdr::CdrRecord::from_values(
            c.record.values().iter().map(|v| clean(v).into_owned()),
        ),
        ..c.clone()
    }
}

/// A value as stored: the page separators replaced by U+FFFD (they never
/// occur in real CDRs, and a stored one would corrupt every page it is in),
/// and NUL too (PostgreSQL refuses it: one would stop the ingest).
pub(crate) fn clean(v: &str) -> std::borrow::Cow<'_, str> {
    if v.contains([ROW_SEP, VALUE_SEP, '\0']) {
        std::borrow::Cow::Owned(v.replace([ROW_SEP, VALUE_SEP, '\0'], "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(v)
    }
}

/// A bound value.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// SQL text and its binds, `$1`.. in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
    /// Values are written into the text as literals (PostgreSQL's `COPY`
    /// takes no parameters).
    literals: bool,
}

impl Sql {
    fn bind(&mut self, b: Bind) -> String {
        if self.literals {
            return match b {
                Bind::Int(i) => i.to_string(),
                Bind::Text(t) => pg_literal(&t),
            };
        }
        self.binds.push(b);
        format!("${}", self.binds.len())
    }
}

/// A PostgreSQL escape-string literal: `E'…'` reads the same whatever
/// `standard_conforming_strings` says.
fn pg_literal(t: &str) -> String {
    let mut out = String::with_capacity(t.len() + 3);
    out.push_str("E'");
    for c in t.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            // Never in a filter that reaches SQL (see `pattern_sql`).
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn quoted(field: &str) -> String {
    format!("\"{field}\"")
}

/// The values of a packed row for alias `t`, in order.
fn row_columns(t: &str) -> Vec<String> {
    let mut cols = vec![format!("{t}.call_ms"), format!("{t}.acctid")];
    for f in &FIELDS[1..] {
        cols.push(format!("{t}.{}", quoted(f)));
    }
    cols.push(format!("{t}.start_ms"));
    cols
}

/// The packed row expression for alias `t`.
fn row_expr(backend: Backend, t: &str) -> String {
    let cols = row_columns(t);
    match backend {
        Backend::Sqlite => format!("concat_ws(char(31), {})", cols.join(", ")),
        Backend::Postgres => format!("concat_ws(chr(31), {})", cols.join(", ")),
    }
}

/// Turns `@` / `_` wildcards into the backend's pattern syntax, everything
/// else literal.
fn wildcard(backend: Backend, w: &str) -> String {
    let mut out = String::with_capacity(w.len() + 4);
    for ch in w.chars() {
        match (backend, ch) {
            (Backend::Sqlite, '@') => out.push('*'),
            (Backend::Sqlite, '_') => out.push('?'),
            (Backend::Sqlite, '*') => out.push_str("[*]"),
            (Backend::Sqlite, '?') => out.push_str("[?]"),
            (Backend::Sqlite, '[') => out.push_str("[[]"),
            (Backend::Postgres, '@') => out.push('%'),
            (Backend::Postgres, '_') => out.push('_'),
            (Backend::Postgres, '%') => out.push_str("\\%"),
            (Backend::Postgres, '\\') => out.push_str("\\\\"),
            (_, c) => out.push(c),
        }
    }
    out
}

/// `s` left-padded with zeros to `width` characters (never shortened).
/// By hand: `format!`'s width is a `u16` and panics beyond it.
fn zero_pad(s: &str, width: usize) -> String {
    let mut out = "0".repeat(width.saturating_sub(s.chars().count()));
    out.push_str(s);
    out
}

/// The number in `col` without leading zeros, and that left-padded with zeros
/// to `width`: digit strings that fit compare as text, whatever their length.
fn padded_number(backend: Backend, col: &str, width: usize) -> (String, String) {
    let trimmed = format!("ltrim({col}, '0')");
    let padded = match backend {
        Backend::Sqlite => format!("substr('{}' || {trimmed}, -{width})", "0".repeat(width)),
        Backend::Postgres => format!("lpad({trimmed}, {width}, '0')"),
    };
    (trimmed, padded)
}

/// A plain string function, cheaper per row than a regular expression
/// (PostgreSQL) or a character-class GLOB (SQLite).
fn all_digits(col: &str) -> String {
    format!("({col} <> '' AND ltrim({col}, '0123456789') = '')")
}

fn pattern_sql(backend: Backend, sql: &mut Sql, col: &str, p: &Pattern) -> String {
    match p {
        // No stored value holds a NUL ([`clean`]), and PostgreSQL refuses
        // one even as a parameter.
        Pattern::Exact(v) | Pattern::Wildcard(v) if v.contains('\0') => "1 = 0".into(),
        Pattern::Exact(v) => format!("{col} = {}", sql.bind(Bind::Text(v.clone()))),
        Pattern::Wildcard(w) => {
            let op = match backend {
                Backend::Sqlite => "GLOB",
                Backend::Postgres => "LIKE",
            };
            format!("{col} {op} {}", sql.bind(Bind::Text(wildcard(backend, w))))
        }
        Pattern::NonNumeric => format!("NOT {}", all_digits(col)),
        Pattern::Range { lo, hi } => range_sql(backend, sql, col, lo, hi),
    }
}

/// Widest spread of bound lengths a range is split by (`9-1000`: 4 lengths);
/// wider ranges take the general form alone.
const RANGE_LENGTHS: usize = 4;

/// `lo-hi` (bounds without leading zeros). The general form pads every value
/// (`ltrim`/`lpad` per row: most of a filtered page's time when tried on
/// every leg of a day). Values without a leading zero are first tested with
/// plain comparisons, one per length of number in the range: an `L`-digit
/// string compares as text the way its number does (byte order: the columns
/// are `COLLATE "C"` on PostgreSQL, SQLite compares bytes). Values with a
/// leading zero keep the general form behind the same kind of test on their
/// last `width` characters.
fn range_sql(backend: Backend, sql: &mut Sql, col: &str, lo: &str, hi: &str) -> String {
    let width = hi.len().max(lo.len()).max(1);
    let (trimmed, padded) = padded_number(backend, col, width);
    let lo_pad = sql.bind(Bind::Text(zero_pad(lo, width)));
    let hi_pad = sql.bind(Bind::Text(zero_pad(hi, width)));
    let general = format!(
        "({} AND length({trimmed}) <= {width} AND {padded} >= {lo_pad} AND {padded} <= {hi_pad})",
        all_digits(col)
    );
    let lo_len = lo.len().max(1);
    if width + 1 - lo_len > RANGE_LENGTHS {
        return general;
    }
    let mut branches = Vec::new();
    for len in lo_len..=width {
        let from = if len == lo_len {
            lo.to_owned()
        } else {
            format!("1{}", "0".repeat(len - 1))
        };
        let to = if len == width {
            hi.to_owned()
        } else {
            "9".repeat(len)
        };
        let (from, to) = (sql.bind(Bind::Text(from)), sql.bind(Bind::Text(to)));
        // Cheapest test first: `AND` stops at the first false.
        branches.push(format!(
            "({col} >= {from} AND {col} <= {to} AND length({col}) = {len} AND {})",
            all_digits(col)
        ));
    }
    let last = match backend {
        Backend::Sqlite => format!("substr({col}, -{width})"),
        Backend::Postgres => format!("right({col}, {width})"),
    };
    // With leading zeros, the last `width` characters of a match are its
    // padded number.
    branches.push(format!(
        "({col} >= '0' AND {col} < '1' AND (length({col}) < {width} OR \
         ({last} >= {lo_pad} AND {last} <= {hi_pad})) AND {general})"
    ));
    format!("({})", branches.join(" OR "))
}

/// Items of one kind up to this many are one expression each (the planner
/// sees plain comparisons); beyond it they are one JSON array parameter
/// joined in SQL. One expression per item made lists of about a thousand
/// items fail on SQLite ("Expression tree is too large", depth 1000).
const INLINE_ITEMS: usize = 8;

/// A JSON array of strings (the parameter of the grouped forms).
fn json_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from("[");
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in item.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// The rows of a JSON array of strings as a one-column table `a(v)`.
fn array_rows(backend: Backend, param: &str) -> String {
    match backend {
        Backend::Sqlite => format!("(SELECT value AS v FROM json_each({param})) a"),
        Backend::Postgres => format!("jsonb_array_elements_text(CAST({param} AS jsonb)) a(v)"),
    }
}

fn list_sql(backend: Backend, sql: &mut Sql, col: &str, list: &[Pattern]) -> Option<String> {
    if list.is_empty() {
        return None;
    }
    let mut exact = Vec::new();
    let mut wild = Vec::new();
    let mut ranges = Vec::new();
    let mut non_numeric = false;
    for p in list {
        match p {
            // Matches nothing (see `pattern_sql`).
            Pattern::Exact(v) | Pattern::Wildcard(v) if v.contains('\0') => {}
            Pattern::Exact(v) => exact.push(v.as_str()),
            Pattern::Wildcard(w) => wild.push(w.as_str()),
            Pattern::Range { lo, hi } => ranges.push((lo.as_str(), hi.as_str())),
            Pattern::NonNumeric => non_numeric = true,
        }
    }
    let mut items: Vec<String> = Vec::new();
    if exact.len() <= INLINE_ITEMS {
        for v in exact {
            items.push(format!("{col} = {}", sql.bind(Bind::Text(v.to_owned()))));
        }
    } else {
        let b = sql.bind(Bind::Text(json_array(exact.into_iter())));
        items.push(format!(
            "{col} IN (SELECT a.v FROM {})",
            array_rows(backend, &b)
        ));
    }
    if wild.len() <= INLINE_ITEMS {
        for w in wild {
            items.push(pattern_sql(
                backend,
                sql,
                col,
                &Pattern::Wildcard(w.to_owned()),
            ));
        }
    } else {
        let translated: Vec<String> = wild.iter().map(|w| wildcard(backend, w)).collect();
        let b = sql.bind(Bind::Text(json_array(
            translated.iter().map(String::as_str),
        )));
        let op = match backend {
            Backend::Sqlite => "GLOB",
            Backend::Postgres => "LIKE",
        };
        items.push(format!(
            "EXISTS (SELECT 1 FROM {} WHERE {col} {op} a.v)",
            array_rows(backend, &b)
        ));
    }
    if ranges.len() <= INLINE_ITEMS {
        for (lo, hi) in ranges {
            let p = Pattern::Range {
                lo: lo.to_owned(),
                hi: hi.to_owned(),
            };
            items.push(pattern_sql(backend, sql, col, &p));
        }
    } else {
        // Every bound padded to the widest: a number that fits compares as
        // text against all of them. An item is `lo` then `hi`, `width` each.
        let width = ranges
            .iter()
            .map(|(lo, hi)| lo.len().max(hi.len()))
            .max()
            .unwrap_or(1)
            .max(1);
        let packed: Vec<String> = ranges
            .iter()
            .map(|(lo, hi)| zero_pad(lo, width) + &zero_pad(hi, width))
            .collect();
        let b = sql.bind(Bind::Text(json_array(packed.iter().map(String::as_str))));
        let (trimmed, padded) = padded_number(backend, col, width);
        items.push(format!(
            "({} AND length({trimmed}) <= {width} AND EXISTS (SELECT 1 FROM {} \
             WHERE {padded} >= substr(a.v, 1, {width}) AND {padded} <= substr(a.v, {next})))",
            all_digits(col),
            array_rows(backend, &b),
            next = width + 1
        ));
    }
    if non_numeric {
        items.push(pattern_sql(backend, sql, col, &Pattern::NonNumeric));
    }
    if items.is_empty() {
        return Some("1 = 0".into());
    }
    Some(format!("({})", items.join(" OR ")))
}

/// The WHERE conditions of `f` on alias `t` (`TRUE` when none).
fn filter_sql(backend: Backend, sql: &mut Sql, t: &str, f: &CdrFilter) -> String {
    let col = |name: &str| format!("{t}.{}", quoted(name));
    let mut conds = Vec::new();
    conds.extend(list_sql(backend, sql, &col("src"), &f.caller));
    conds.extend(list_sql(backend, sql, &col("dst"), &f.callee));
    conds.extend(list_sql(backend, sql, &col("dstanswer"), &f.answered_by));
    if let Some(p) = &f.caller_name {
        conds.push(pattern_sql(backend, sql, &col("caller_name"), p));
    }
    let time_col = match f.time_field {
        TimeField::Start => format!("{t}.start_ms"),
        TimeField::End => format!("{t}.end_ms"),
    };
    if let Some(ms) = f.from_ms {
        conds.push(format!("{time_col} >= {}", sql.bind(Bind::Int(ms))));
    }
    if let Some(ms) = f.to_ms {
        conds.push(format!("{time_col} <= {}", sql.bind(Bind::Int(ms))));
    }
    let billsec = match backend {
        Backend::Sqlite => format!("CAST({} AS INTEGER)", col("billsec")),
        Backend::Postgres => format!(
            "(CASE WHEN {b} ~ '^[0-9]{{1,15}}$' THEN {b}::bigint ELSE 0 END)",
            b = col("billsec")
        ),
    };
    let clamp = |v: u64| Bind::Int(i64::try_from(v).unwrap_or(i64::MAX));
    if let Some(v) = f.min_billsec {
        conds.push(format!("{billsec} >= {}", sql.bind(clamp(v))));
    }
    if let Some(v) = f.max_billsec {
        conds.push(format!("{billsec} <= {}", sql.bind(clamp(v))));
    }
    if conds.is_empty() {
        "1 = 1".into()
    } else {
        conds.join(" AND ")
    }
}

/// Which end of the entry order a page starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// The cdrapi's order: call start, then session (`offset` from the oldest).
    #[default]
    OldestFirst,
    /// The reverse, for people browsing calls (`offset` from the newest).
    /// Legs within an entry stay in start order.
    NewestFirst,
}

/// Calls (sessions) whose call started in one bucket of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallBucket {
    /// Start of the bucket, UTC milliseconds (a multiple of the bucket size).
    pub start_ms: i64,
    /// Calls with at least one leg `ANSWERED` among the legs that match.
    pub answered: u64,
    pub unanswered: u64,
}

/// The one-value page query, oldest entries first.
pub(crate) fn page_sql(backend: Backend, q: &PageQuery<'_>) -> Sql {
    page_sql_in(backend, q, Order::OldestFirst)
}

/// The one-value page query in either order.
pub(crate) fn page_sql_in(backend: Backend, q: &PageQuery<'_>, order: Order) -> Sql {
    let mut sql = Sql::default();
    let agg = |expr: &str, order: &str| match backend {
        Backend::Sqlite => format!("group_concat({expr}, char(30) ORDER BY {order})"),
        Backend::Postgres => format!("string_agg({expr}, chr(30) ORDER BY {order})"),
    };
    // Descending walks the same indexes backwards.
    let (dir, cmp) = match order {
        Order::OldestFirst => ("", ">"),
        Order::NewestFirst => (" DESC", "<"),
    };
    let limit = Bind::Int(i64::from(q.limit));
    let offset = Bind::Int(i64::try_from(q.offset).unwrap_or(i64::MAX));
    match q.grouping {
        Grouping::Sessions => {
            let inner = filter_sql(backend, &mut sql, "i", q.filter);
            let after = match q.after {
                Some(k) => {
                    let a = sql.bind(Bind::Int(k.call_ms));
                    let b = sql.bind(Bind::Text(k.session.clone()));
                    format!(" AND (i.call_ms, i.\"session\") {cmp} ({a}, {b})")
                }
                None => String::new(),
            };
            let (l, o) = (sql.bind(limit), sql.bind(offset));
            // Without a filter every entry counts: they are rows of
            // cdr_session (migration 0005), walked without grouping legs.
            let unfiltered = q.filter.is_empty();
            let entries = if unfiltered && backend == Backend::Postgres {
                // With the range of its legs' starts, so that they are read
                // from those months' partitions only (migration 0015).
                format!(
                    "SELECT i.call_ms, i.\"session\", i.min_start_ms, i.max_start_ms FROM cdr_session i \
                     WHERE {inner}{after} ORDER BY i.call_ms{dir}, i.\"session\"{dir} LIMIT {l} OFFSET {o}"
                )
            } else if unfiltered {
                format!(
                    "SELECT i.call_ms, i.\"session\" FROM cdr_session i WHERE {inner}{after} \
                     ORDER BY i.call_ms{dir}, i.\"session\"{dir} LIMIT {l} OFFSET {o}"
                )
            } else {
                format!(
                    "SELECT i.call_ms, i.\"session\" FROM cdr i WHERE {inner}{after} \
                     GROUP BY i.call_ms, i.\"session\" ORDER BY i.call_ms{dir}, i.\"session\"{dir} LIMIT {l} OFFSET {o}"
                )
            };
            let mut outer = filter_sql(backend, &mut sql, "c", q.filter);
            if unfiltered && backend == Backend::Postgres {
                // A filtered page's own time window already prunes them.
                outer = "c.start_ms BETWEEN e.min_start_ms AND e.max_start_ms".into();
            }
            // The legs of each entry are fetched through the (call_ms,
            // session) index. PostgreSQL is told so with LATERAL: left to
            // itself it hashes the entries and reads the whole table
            // (OFFSET 0 keeps it from flattening the subquery back).
            let legs = match backend {
                Backend::Sqlite => format!(
                    "JOIN cdr c ON c.call_ms = e.call_ms AND c.\"session\" = e.\"session\" WHERE {outer}"
                ),
                Backend::Postgres => format!(
                    "CROSS JOIN LATERAL (SELECT * FROM cdr c WHERE c.call_ms = e.call_ms \
                     AND c.\"session\" = e.\"session\" AND {outer} OFFSET 0) c"
                ),
            };
            sql.text = format!(
                "SELECT {agg} FROM ({entries}) e {legs}",
                agg = agg(
                    &row_expr(backend, "c"),
                    &format!("c.call_ms{dir}, c.\"session\"{dir}, c.start_ms, c.acctid")
                ),
            );
        }
        Grouping::Legs => {
            let inner = filter_sql(backend, &mut sql, "i", q.filter);
            let after = match q.after {
                Some(k) => {
                    let a = sql.bind(Bind::Int(k.call_ms));
                    let b = sql.bind(Bind::Text(k.session.clone()));
                    let c = sql.bind(Bind::Int(k.start_ms));
                    let d = sql.bind(Bind::Int(k.acctid));
                    format!(
                        " AND (i.call_ms, i.\"session\", i.start_ms, i.acctid) {cmp} ({a}, {b}, {c}, {d})"
                    )
                }
                None => String::new(),
            };
            let (l, o) = (sql.bind(limit), sql.bind(offset));
            // Offsets are counted on the keys alone (an index-only walk
            // without filters), and only the page's rows are read whole.
            // The start as well: on PostgreSQL it names the leg's monthly
            // partition (and completes its primary key).
            sql.text = format!(
                "SELECT {agg} FROM (SELECT i.acctid, i.start_ms FROM cdr i WHERE {inner}{after} \
                 ORDER BY i.call_ms{dir}, i.\"session\"{dir}, i.start_ms{dir}, i.acctid{dir} LIMIT {l} OFFSET {o}) e \
                 JOIN cdr c ON c.acctid = e.acctid AND c.start_ms = e.start_ms",
                agg = agg(
                    &row_expr(backend, "c"),
                    &format!("c.call_ms{dir}, c.\"session\"{dir}, c.start_ms{dir}, c.acctid{dir}")
                ),
            );
        }
    }
    sql
}

/// How many entries match `filter` (what `numRecords` and `offset` count).
pub(crate) fn count_sql(backend: Backend, filter: &CdrFilter, grouping: Grouping) -> Sql {
    let mut sql = Sql::default();
    let cond = filter_sql(backend, &mut sql, "i", filter);
    sql.text = match grouping {
        // One row per entry, kept in step with the legs (migration 0005).
        Grouping::Sessions if filter.is_empty() => "SELECT COUNT(*) FROM cdr_session".into(),
        Grouping::Sessions => format!(
            "SELECT COUNT(*) FROM (SELECT i.call_ms FROM cdr i WHERE {cond} \
             GROUP BY i.call_ms, i.\"session\") e"
        ),
        Grouping::Legs => format!("SELECT COUNT(*) FROM cdr i WHERE {cond}"),
    };
    sql
}

/// Calls matching `filter` per `bucket_ms` of their start (`call_ms`),
/// answered or not: one row per (bucket, answered) that has calls, in
/// bucket order. A call counts as answered when one of its matching legs is.
pub(crate) fn buckets_sql(backend: Backend, filter: &CdrFilter, bucket_ms: i64) -> Sql {
    let mut sql = Sql::default();
    let cond = filter_sql(backend, &mut sql, "i", filter);
    let b = sql.bind(Bind::Int(bucket_ms.max(1)));
    // The floor, also before 1970 (`%` truncates toward zero on both).
    sql.text = format!(
        "SELECT e.bucket, e.answered, COUNT(*) FROM (\
         SELECT i.call_ms - (((i.call_ms % {b}) + {b}) % {b}) AS bucket, \
         CAST(MAX(CASE WHEN i.\"disposition\" = 'ANSWERED' THEN 1 ELSE 0 END) AS BIGINT) AS answered \
         FROM cdr i WHERE {cond} GROUP BY i.call_ms, i.\"session\") e \
         GROUP BY e.bucket, e.answered ORDER BY e.bucket, e.answered"
    );
    sql
}

/// PostgreSQL: one `COPY … TO STDOUT` (text format) of every leg matching
/// `filter` after `after`, in entry order, columns as in a packed row.
pub(crate) fn export_copy_sql(filter: &CdrFilter, after: Option<&PageKey>) -> String {
    let mut sql = Sql {
        literals: true,
        ..Sql::default()
    };
    let cond = filter_sql(Backend::Postgres, &mut sql, "c", filter);
    let after = match after {
        Some(k) => {
            let a = sql.bind(Bind::Int(k.call_ms));
            let b = sql.bind(Bind::Text(k.session.clone()));
            let c = sql.bind(Bind::Int(k.start_ms));
            let d = sql.bind(Bind::Int(k.acctid));
            format!(" AND (c.call_ms, c.\"session\", c.start_ms, c.acctid) > ({a}, {b}, {c}, {d})")
        }
        None => String::new(),
    };
    format!(
        "COPY (SELECT {} FROM cdr c WHERE {cond}{after} \
         ORDER BY c.call_ms, c.\"session\", c.start_ms, c.acctid) TO STDOUT",
        row_columns("c").join(", ")
    )
}

/// Packs rows of `COPY … TO STDOUT` text format (tab-separated, backslash
/// escapes, one row per line) into the page format, across chunks cut
/// anywhere.
#[derive(Debug, Default)]
pub(crate) struct CopyPacker {
    packed: Vec<u8>,
    rows: usize,
    /// A row is open (its bytes are in `packed`, its newline not yet seen).
    in_row: bool,
    /// The previous chunk ended with a backslash.
    escape: bool,
}

impl CopyPacker {
    /// Complete rows packed so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held, complete rows and an open one.
    pub(crate) fn bytes(&self) -> usize {
        self.packed.len()
    }

    /// Bytes of an unfinished row are held.
    pub(crate) fn is_open(&self) -> bool {
        self.in_row || self.escape
    }

    pub(crate) fn push(&mut self, mut chunk: &[u8]) -> Result<(), Error> {
        while !chunk.is_empty() {
            if !self.in_row {
                if self.rows > 0 {
                    self.packed.push(ROW_SEP as u8);
                }
                self.in_row = true;
            }
            if self.escape {
                self.escape = false;
                let b = match chunk[0] {
                    b'\\' => b'\\',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    // `\N` (NULL) or octal: never produced for these NOT NULL text columns.
                    _ => return Err(Error::Corrupt("unexpected escape in COPY data")),
                };
                self.packed.push(b);
                chunk = &chunk[1..];
                continue;
            }
            let special = chunk
                .iter()
                .position(|&b| matches!(b, b'\t' | b'\n' | b'\\'))
                .unwrap_or(chunk.len());
            self.packed.extend_from_slice(&chunk[..special]);
            match chunk.get(special) {
                Some(b'\t') => self.packed.push(VALUE_SEP as u8),
                Some(b'\n') => {
                    self.rows += 1;
                    self.in_row = false;
                }
                Some(_) => self.escape = true,
                None => {}
            }
            chunk = chunk.get(special + 1..).unwrap_or_default();
        }
        Ok(())
    }

    /// The last rows, at the end of the data.
    pub(crate) fn finish(mut self) -> Result<CdrPage, Error> {
        if self.in_row || self.escape {
            return Err(Error::Corrupt("COPY data ends inside a row"));
        }
        self.take()
    }

    /// The complete rows as a page; an open row stays for the next chunk.
    pub(crate) fn take(&mut self) -> Result<CdrPage, Error> {
        let rest = if self.in_row {
            let cut = self
                .packed
                .iter()
                .rposition(|&b| b == ROW_SEP as u8)
                .unwrap_or(0);
            let mut rest = self.packed.split_off(cut);
            if !rest.is_empty() && self.rows > 0 {
                rest.remove(0);
            }
            rest
        } else {
            Vec::new()
        };
        // The next page is about as big: one allocation instead of doubling.
        let mut next = Vec::with_capacity(self.packed.len().max(rest.len()));
        next.extend_from_slice(&rest);
        let packed = String::from_utf8(std::mem::replace(&mut self.packed, next))
            .map_err(|_| Error::Corrupt("COPY data is not UTF-8"))?;
        self.rows = 0;
        Ok(CdrPage::from_packed(Some(packed)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_is_where_the_record_has_it() {
        assert_eq!(FIELDS[SESSION], "session");
    }

    #[test]
    fn copy_rows_are_packed_whatever_the_chunk_boundaries() {
        let copy = b"1\tab\\\\c\td\\te\n2\t\\n\\t\\r\\b\\f\\v\t\n";
        let want = "1\u{1f}ab\\c\u{1f}d\te\u{1e}2\u{1f}\n\t\r\u{8}\u{c}\u{b}\u{1f}";
        for cut in 0..=copy.len() {
            for page_at in [1, 2] {
                let mut p = CopyPacker::default();
                let mut packed = String::new();
                for part in [&copy[..cut], &copy[cut..]] {
                    p.push(part).unwrap();
                    if p.rows() >= page_at {
                        let page = p.take().unwrap();
                        if !packed.is_empty() {
                            packed.push(ROW_SEP);
                        }
                        packed.push_str(&page.packed);
                    }
                }
                assert!(!p.is_open(), "cut at {cut}");
                let last = p.finish().unwrap();
                if !last.packed.is_empty() {
                    if !packed.is_empty() {
                        packed.push(ROW_SEP);
                    }
                    packed.push_str(&last.packed);
                }
                assert_eq!(packed, want, "cut at {cut}, pages of {page_at}");
            }
        }
    }

    #[test]
    fn copy_data_that_cannot_be_ours_is_refused() {
        let mut p = CopyPacker::default();
        assert!(p.push(b"1\t\\N\n").is_err(), "NULL in a NOT NULL column");
        let mut p = CopyPacker::default();
        p.push(b"1\t2").unwrap();
        assert!(p.finish().is_err(), "a last row without its newline");
        let mut p = CopyPacker::default();
        p.push(b"\xff\n").unwrap();
        assert!(p.take().is_err(), "not UTF-8");
    }

    #[test]
    fn literals_are_escaped_and_nul_matches_nothing() {
        assert_eq!(pg_literal("a'b\\c"), "E'a''b\\\\c'");
        let f = CdrFilter {
            caller_name: Some(Pattern::Exact("x\0".into())),
            ..Default::default()
        };
        assert!(export_copy_sql(&f, None).contains("1 = 0"));
        let f = CdrFilter {
            caller: vec![Pattern::Exact("1'2".into())],
            from_ms: Some(-5),
            ..Default::default()
        };
        let sql = export_copy_sql(&f, None);
        assert!(sql.contains("= E'1''2'") && sql.contains(">= -5"), "{sql}");
        assert!(sql.starts_with("COPY (SELECT c.call_ms, c.acctid,") && sql.ends_with("TO STDOUT"));
    }

    use super::*;

    #[test]
    fn wildcards_are_translated_with_literals_escaped() {
        assert_eq!(wildcard(Backend::Sqlite, "_4@*?[x"), "?4*[*][?][[]x");
        assert_eq!(wildcard(Backend::Postgres, "_4@%\\*"), "_4%\\%\\\\*");
    }

    #[test]
    fn pages_split_on_the_separators_and_check_their_shape() {
        let row = |acct: &str, extra: &str| {
            let mut v = vec!["1000".to_owned(), acct.to_owned()];
            v.extend((0..42).map(|i| format!("v{i}{extra}")));
            v.push("2000".to_owned());
            v.join("\u{1f}")
        };
        let page = CdrPage::from_packed(Some(format!(
            "{}\u{1e}{}",
            row("1", ""),
            row("2", ", \"x\"")
        )));
        let legs = page.legs().unwrap();
        assert_eq!(legs.len(), 2);
        assert_eq!((legs[1].call_ms, legs[1].start_ms), (1000, 2000));
        assert_eq!(legs[1].values[0], "2");
        assert_eq!(legs[1].values[42], "v41, \"x\"");
        assert!(CdrPage::from_packed(None).legs().unwrap().is_empty());
        assert!(
            CdrPage::from_packed(Some("1\u{1f}2".into()))
                .legs()
                .is_err()
        );
        let long = format!("{}\u{1f}x", row("1", ""));
        assert!(CdrPage::from_packed(Some(long)).legs().is_err());
    }

    #[test]
    fn huge_range_bounds_build_sql_without_panicking() {
        // Beyond `format!`'s u16 width (the store takes filters from other
        // callers than the cdrapi parser, which bounds items).
        let big = "9".repeat(70_000);
        let f = CdrFilter {
            caller: vec![Pattern::Range {
                lo: "1".into(),
                hi: big.clone(),
            }],
            callee: (0..20)
                .map(|i| Pattern::Range {
                    lo: i.to_string(),
                    hi: big.clone(),
                })
                .collect(),
            ..Default::default()
        };
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let sql = count_sql(backend, &f, Grouping::Sessions);
            assert!(sql.text.contains("length(ltrim("), "{backend:?}");
        }
        assert!(export_copy_sql(&f, None).starts_with("COPY"));
        assert_eq!(zero_pad("12", 5), "00012");
        assert_eq!(zero_pad("123456", 2), "123456");
    }

    #[test]
    fn long_lists_are_a_bounded_number_of_expressions() {
        let list: Vec<Pattern> = (0..5000)
            .map(|i| match i % 4 {
                0 => Pattern::Exact(i.to_string()),
                1 => Pattern::Wildcard(format!("{i}@")),
                2 => Pattern::Range {
                    lo: i.to_string(),
                    hi: (i + 9).to_string(),
                },
                _ => Pattern::NonNumeric,
            })
            .collect();
        let f = CdrFilter {
            caller: list,
            ..Default::default()
        };
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let sql = count_sql(backend, &f, Grouping::Legs);
            assert_eq!(sql.binds.len(), 3, "one array per kind on {backend:?}");
            assert!(sql.text.len() < 2000, "{}", sql.text);
        }
        let copy = export_copy_sql(&f, None);
        assert!(
            copy.contains("CAST(E'[\"0\",\"4\""),
            "{}",
            &copy[..copy.len().min(600)]
        );
        assert_eq!(
            json_array(["a\"b\\", "\u{1}"].into_iter()),
            "[\"a\\\"b\\\\\",\"\\u0001\"]"
        );
    }

    /// Seeded hostile parameter values through the cdrapi parser of both
    /// APIs into every SQL builder: never a panic, and what reaches SQL is
    /// bounded (numbers of binds and of expressions).
    #[test]
    fn hostile_cdrapi_parameters_never_panic_the_sql_builders() {
        use ucm::cdrapi::{Mode, TimeSpec, parse_params};
        let names = [
            "caller",
            "callee",
            "answeredby",
            "callerName",
            "startTime",
            "endTime",
            "minDur",
            "maxDur",
            "numRecords",
            "offset",
            "format",
            "timeFilterType",
        ];
        let pieces: Vec<String> = vec![
            "1".into(),
            "0".into(),
            "-".into(),
            ",".into(),
            "@".into(),
            "_".into(),
            "9".repeat(65_536),
            "1".repeat(64),
            "0".repeat(63),
            "18446744073709551616".into(),
            "'".into(),
            "\\".into(),
            "%".into(),
            "*".into(),
            "[".into(),
            "\0".into(),
            "ä".into(),
            " ".into(),
            "now".into(),
            "2024-05-01T00:00:00".into(),
            "+99:99".into(),
            "json".into(),
        ];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut built, mut long_built) = (0, 0);
        for round in 0..800 {
            let mut params = Vec::new();
            for _ in 0..1 + next(4) {
                // Mostly the list parameters, where the SQL grows.
                let name = names[if next(3) == 0 {
                    next(names.len())
                } else {
                    next(3)
                }]
                .to_owned();
                let mut value = String::new();
                if next(3) == 0 {
                    // Soup, sometimes long.
                    let parts = if next(10) == 0 {
                        1000 + next(4000)
                    } else {
                        next(8)
                    };
                    for _ in 0..parts {
                        value.push_str(&pieces[next(pieces.len())]);
                        if next(3) == 0 {
                            value.push(',');
                        }
                    }
                } else {
                    // A well-formed list (also what callerName and the
                    // numbers get), sometimes of thousands of items, with
                    // bounds up to the longest item allowed.
                    let items = if next(8) == 0 {
                        1000 + next(4000)
                    } else {
                        1 + next(6)
                    };
                    let digits = |len: usize, next: &mut dyn FnMut(usize) -> usize| -> String {
                        (0..len)
                            .map(|_| char::from(b'0' + next(10) as u8))
                            .collect()
                    };
                    for i in 0..items {
                        if i > 0 {
                            value.push(',');
                        }
                        let len = 1 + next(31);
                        // Long lists mostly exact (at most 1000 patterns).
                        let kind = if items > 1000 && next(8) != 0 {
                            0
                        } else {
                            next(5)
                        };
                        match kind {
                            0 => value.push_str(&digits(len, &mut next)),
                            1 => {
                                let lo = digits(len, &mut next);
                                value.push_str(&format!("{lo}-{}", "9".repeat(len + next(2))));
                            }
                            2 => value.push_str(&format!("{}@", digits(len, &mut next))),
                            3 => value.push_str("0-0"),
                            _ => value.push_str(&format!("_{}", digits(len, &mut next))),
                        }
                    }
                }
                params.push((name, value));
            }
            let mode = if round % 2 == 0 { Mode::New } else { Mode::Old };
            let Ok(q) = parse_params(&params, mode) else {
                continue;
            };
            built += 1;
            if q.caller.len() + q.callee.len() + q.answered_by.len() > 1000 {
                long_built += 1;
            }
            let ms = |t: &Option<TimeSpec>| match t {
                Some(TimeSpec::Instant(ts)) => Some(ts.as_millisecond()),
                Some(_) => Some(0),
                None => None,
            };
            let f = CdrFilter {
                caller: q.caller,
                callee: q.callee,
                answered_by: q.answered_by,
                caller_name: q.caller_name,
                time_field: q.time_field,
                from_ms: ms(&q.start_time),
                to_ms: ms(&q.end_time),
                min_billsec: q.min_dur,
                max_billsec: q.max_dur,
            };
            let key = PageKey {
                call_ms: i64::MIN,
                session: "'".into(),
                start_ms: i64::MAX,
                acctid: -1,
            };
            for backend in [Backend::Sqlite, Backend::Postgres] {
                for grouping in [Grouping::Sessions, Grouping::Legs] {
                    for order in [Order::OldestFirst, Order::NewestFirst] {
                        let page = PageQuery {
                            filter: &f,
                            grouping,
                            after: Some(&key),
                            offset: q.offset,
                            limit: q.num_records,
                        };
                        let sql = page_sql_in(backend, &page, order);
                        // Each list is at most 3 × INLINE_ITEMS + 1 expressions.
                        assert!(sql.binds.len() < 100, "{} binds", sql.binds.len());
                    }
                    let _ = count_sql(backend, &f, grouping);
                }
                let _ = buckets_sql(backend, &f, i64::MAX);
            }
            let _ = export_copy_sql(&f, Some(&key));
        }
        eprintln!("{built} of 800 requests were valid, {long_built} with long lists");
        assert!(
            built > 150,
            "the generator reaches the SQL builders ({built})"
        );
        assert!(
            long_built > 10,
            "long lists reach the SQL builders ({long_built})"
        );
    }

    #[test]
    fn separators_never_reach_the_store() {
        assert_eq!(clean("plain"), "plain");
        assert!(matches!(clean("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(clean("a\u{1f}b\u{1e}c"), "a\u{fffd}b\u{fffd}c");
    }
}
