//! CSV / XML / JSON output of `cdrapi` (spec §4.5), streamed.
//!
//! An [`Encoder`] writes one answer: [`Encoder::begin`], any number of
//! [`Encoder::entry`] (one per session: its legs in order), then
//! [`Encoder::finish`]. Every call appends to the caller's buffer, which the
//! server may flush and clear between calls.
//!
//! Shapes (the `Ucm6100` profile in brackets):
//!
//! - **JSON**: `{"cdr_root":[` … `]}` (`{"cdr":[` … `]}`), one entry per line,
//!   no `status`/`response` wrapper, every value a string. A flat entry is
//!   `{"cdr":KEY,"AcctId":…,…}` (`{"AcctId":…,…}`); a session of several legs
//!   is `{"cdr":KEY,"main_cdr":{…},"sub_cdr_1":{…},…,"sub_cdr_N":{…}}`
//!   (never grouped). KEY is the session id, or `""` with [`CdrKey::Empty`].
//! - **CSV**: the header line (the profile's field names), then one line per
//!   leg — CSV has no nesting, so a grouped session is written leg by leg and
//!   has no `main_cdr` line. RFC 4180 quoting where needed.
//! - **XML**: `<?xml …?>` and `<cdr_root>`, one `<cdr session="KEY">` element
//!   per entry (no attribute with `Ucm6100`) holding either the fields as
//!   child elements or `<main_cdr>` and `<sub_cdr_N>` elements that do.
//!   Characters XML 1.0 cannot carry are replaced by U+FFFD, so the output is
//!   always well-formed.
//!
//! Values are escaped byte-wise with lookup tables, copying runs that need no
//! escaping; nothing is allocated per value or per leg.

use super::Format;
use crate::cdr::FIELDS;

/// Output flavours of UCM firmware generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// UCM630X: 43 fields, JSON `{"cdr_root":[...]}`, sessions grouped
    /// (`main_cdr` + `sub_cdr_N`).
    #[default]
    Ucm630x,
    /// UCM62xx/6510: the first 32 fields, `{"cdr_root":[...]}`, grouped.
    Ucm62xx,
    /// Early UCM6100 firmware: the first 22 fields, JSON `{"cdr":[...]}`,
    /// every leg a flat entry (no grouping).
    Ucm6100,
}

impl Profile {
    /// How many of [`FIELDS`] this profile emits (always a prefix).
    pub fn field_count(self) -> usize {
        match self {
            Profile::Ucm630x => 43,
            Profile::Ucm62xx => 32,
            Profile::Ucm6100 => 22,
        }
    }

    /// Whether the legs of one session are grouped into one entry.
    pub fn groups(self) -> bool {
        !matches!(self, Profile::Ucm6100)
    }

    /// The field names this profile emits, in order.
    pub fn fields(self) -> &'static [&'static str] {
        FIELDS.get(..self.field_count()).unwrap_or(&FIELDS)
    }
}

/// Value of the `cdr` key of each JSON entry (and of the `session` attribute
/// in XML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CdrKey {
    /// The session id (of the first leg of a grouped entry).
    #[default]
    Session,
    /// Always `""`, as on UCM6302 1.0.17.11.
    Empty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub profile: Profile,
    pub cdr_key: CdrKey,
}

/// One leg: the 43 values in [`FIELDS`] order (`AcctId` first).
pub type Leg<'a> = [&'a str; FIELDS.len()];

/// Line ending of CSV output.
pub const CSV_NEWLINE: &[u8] = b"\n";

const XML_DECLARATION: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Index of `name` in [`FIELDS`] at compile time (an unknown name gives an
/// out-of-range index, which fails to compile where it is used on a `Leg`).
const fn field(name: &str) -> usize {
    let name = name.as_bytes();
    let mut i = 0;
    while i < FIELDS.len() {
        let f = FIELDS[i].as_bytes();
        if f.len() == name.len() {
            let mut j = 0;
            while j < f.len() && f[j] == name[j] {
                j += 1;
            }
            if j == f.len() {
                return i;
            }
        }
        i += 1;
    }
    FIELDS.len()
}

const SRC: usize = field("src");
const DST: usize = field("dst");
const START: usize = field("start");
const DURATION: usize = field("duration");
const BILLSEC: usize = field("billsec");
const SESSION: usize = field("session");
const ACTION_TYPE: usize = field("action_type");

/// Streaming writer of one `cdrapi` answer: [`begin`](Self::begin), then
/// [`entry`](Self::entry) per session, then [`finish`](Self::finish).
#[derive(Debug, Clone)]
pub struct Encoder {
    format: Format,
    options: Options,
    /// Fields per record (the profile's field count).
    n: usize,
    /// `n + 1` separators: `seps[i]` goes before value `i`, `seps[n]` after
    /// the last one. JSON: `"AcctId":"`, `","accountcode":"`, …, `"`;
    /// XML: `<AcctId>`, `</AcctId><accountcode>`, …; CSV: nothing, `,`, …,
    /// [`CSV_NEWLINE`].
    seps: Vec<Vec<u8>>,
    /// Total length of `seps` (bytes a record takes besides its values).
    overhead: usize,
    entries: u64,
}

impl Encoder {
    pub fn new(format: Format, options: Options) -> Encoder {
        let names = options.profile.fields();
        let n = names.len();
        let mut seps: Vec<Vec<u8>> = Vec::with_capacity(n + 1);
        for i in 0..=n {
            let prev = i.checked_sub(1).and_then(|p| names.get(p));
            let next = names.get(i);
            let mut sep = Vec::new();
            match format {
                Format::Json => {
                    if prev.is_some() {
                        sep.extend_from_slice(b"\",");
                    }
                    match next {
                        Some(name) => {
                            sep.push(b'"');
                            sep.extend_from_slice(name.as_bytes());
                            sep.extend_from_slice(b"\":\"");
                        }
                        None if prev.is_some() => sep.truncate(1),
                        None => {}
                    }
                }
                Format::Xml => {
                    if let Some(name) = prev {
                        sep.extend_from_slice(b"</");
                        sep.extend_from_slice(name.as_bytes());
                        sep.push(b'>');
                    }
                    if let Some(name) = next {
                        sep.push(b'<');
                        sep.extend_from_slice(name.as_bytes());
                        sep.push(b'>');
                    }
                }
                Format::Csv => match (prev, next) {
                    (Some(_), Some(_)) => sep.push(b','),
                    (_, None) => sep.extend_from_slice(CSV_NEWLINE),
                    (None, Some(_)) => {}
                },
            }
            seps.push(sep);
        }
        let overhead = seps.iter().map(Vec::len).sum();
        Encoder {
            format,
            options,
            n,
            seps,
            overhead,
            entries: 0,
        }
    }

    /// Writes what precedes the entries (CSV: the header line).
    pub fn begin(&mut self, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => out.extend_from_slice(if self.options.profile.groups() {
                b"{\"cdr_root\":["
            } else {
                b"{\"cdr\":["
            }),
            Format::Xml => {
                out.extend_from_slice(XML_DECLARATION);
                out.extend_from_slice(b"<cdr_root>\n");
            }
            Format::Csv => {
                let names = self.options.profile.fields();
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    csv_value(out, name);
                }
                out.extend_from_slice(CSV_NEWLINE);
            }
        }
    }

    /// One top-level entry: the legs of one session in order. With a grouping
    /// profile and more than one leg: a grouped entry (CSV: one line per leg);
    /// otherwise flat. With [`Profile::Ucm6100`] every leg is its own flat
    /// entry. No legs: nothing is written.
    pub fn entry(&mut self, legs: &[Leg<'_>], out: &mut Vec<u8>) {
        let Some(first) = legs.first() else {
            return;
        };
        if !self.options.profile.groups() {
            for leg in legs {
                self.flat(leg, None, out);
            }
            return;
        }
        let key = match self.options.cdr_key {
            CdrKey::Session => first[SESSION],
            CdrKey::Empty => "",
        };
        if legs.len() == 1 {
            self.flat(first, Some(key), out);
        } else {
            self.grouped(legs, key, out);
        }
    }

    /// Writes what follows the entries.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => {
                if self.entries > 0 {
                    out.push(b'\n');
                }
                out.extend_from_slice(b"]}");
            }
            Format::Xml => out.extend_from_slice(b"</cdr_root>\n"),
            Format::Csv => {}
        }
    }

    /// Top-level entries written so far, as JSON and XML count them: one per
    /// [`entry`](Self::entry) call with legs, or one per leg with
    /// [`Profile::Ucm6100`] (whatever the format).
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Starts a top-level entry in JSON (separator and line break).
    fn json_entry_start(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.entries > 0 { b",\n" } else { b"\n" });
    }

    fn flat(&mut self, leg: &Leg<'_>, key: Option<&str>, out: &mut Vec<u8>) {
        out.reserve(self.record_len(leg) + 32 + key.map_or(0, str::len));
        match self.format {
            Format::Json => {
                self.json_entry_start(out);
                out.push(b'{');
                if let Some(key) = key {
                    out.extend_from_slice(b"\"cdr\":\"");
                    json_value(out, key);
                    out.extend_from_slice(b"\",");
                }
                self.record(leg, out, json_value);
                out.push(b'}');
            }
            Format::Xml => {
                xml_cdr_open(out, key);
                self.record(leg, out, xml_value);
                out.extend_from_slice(b"</cdr>\n");
            }
            Format::Csv => self.csv_row(leg, out),
        }
        self.entries += 1;
    }

    fn grouped(&mut self, legs: &[Leg<'_>], key: &str, out: &mut Vec<u8>) {
        match self.format {
            Format::Json => {
                let (mut duration, mut billsec) = (NumBuf::new(), NumBuf::new());
                let main = main_values(legs, &mut duration, &mut billsec);
                out.reserve(self.record_len(&main) + 32 + key.len());
                self.json_entry_start(out);
                out.extend_from_slice(b"{\"cdr\":\"");
                json_value(out, key);
                out.extend_from_slice(b"\",\"main_cdr\":{");
                self.record(&main, out, json_value);
                for (i, leg) in legs.iter().enumerate() {
                    out.reserve(self.record_len(leg) + 24);
                    out.extend_from_slice(b"},\"sub_cdr_");
                    push_u64(out, i as u64 + 1);
                    out.extend_from_slice(b"\":{");
                    self.record(leg, out, json_value);
                }
                out.extend_from_slice(b"}}");
            }
            Format::Xml => {
                let (mut duration, mut billsec) = (NumBuf::new(), NumBuf::new());
                let main = main_values(legs, &mut duration, &mut billsec);
                out.reserve(self.record_len(&main) + 64 + key.len());
                xml_cdr_open(out, Some(key));
                out.extend_from_slice(b"<main_cdr>");
                self.record(&main, out, xml_value);
                out.extend_from_slice(b"</main_cdr>");
                for (i, leg) in legs.iter().enumerate() {
                    out.reserve(self.record_len(leg) + 48);
                    let number = i as u64 + 1;
                    out.extend_from_slice(b"<sub_cdr_");
                    push_u64(out, number);
                    out.push(b'>');
                    self.record(leg, out, xml_value);
                    out.extend_from_slice(b"</sub_cdr_");
                    push_u64(out, number);
                    out.push(b'>');
                }
                out.extend_from_slice(b"</cdr>\n");
            }
            Format::Csv => {
                for leg in legs {
                    out.reserve(self.record_len(leg) + 16);
                    self.csv_row(leg, out);
                }
            }
        }
        self.entries += 1;
    }

    /// Bytes one record takes unescaped.
    fn record_len(&self, values: &Leg<'_>) -> usize {
        self.overhead + values.iter().take(self.n).map(|v| v.len()).sum::<usize>()
    }

    /// One CSV line (a 1-byte separator is pushed rather than copied).
    fn csv_row(&self, values: &Leg<'_>, out: &mut Vec<u8>) {
        for (i, value) in values.iter().take(self.n).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            csv_value(out, value);
        }
        out.extend_from_slice(CSV_NEWLINE);
    }

    /// The profile's fields of one record, each preceded by its separator.
    #[inline]
    fn record(&self, values: &Leg<'_>, out: &mut Vec<u8>, escape: impl Fn(&mut Vec<u8>, &str)) {
        for (value, sep) in values.iter().take(self.n).zip(&self.seps) {
            copy(out, sep);
            escape(out, value);
        }
        if let Some(last) = self.seps.last() {
            out.extend_from_slice(last);
        }
    }
}

/// The whole answer for an error or an empty result: begin + finish.
pub fn empty(format: Format, options: Options) -> Vec<u8> {
    let mut encoder = Encoder::new(format, options);
    let mut out = Vec::with_capacity(1024);
    encoder.begin(&mut out);
    encoder.finish(&mut out);
    out
}

/// The `main_cdr` summary of a grouped entry (spec §4.5): `src`, `dst`,
/// `start`, `action_type` and `session` from the first leg, `duration` and
/// `billsec` the sums over all legs (decimal; a non-numeric value counts as
/// 0); every other field `""`. All 43 values, in [`FIELDS`] order.
pub fn main_cdr(legs: &[Leg<'_>]) -> Vec<String> {
    let (mut duration, mut billsec) = (NumBuf::new(), NumBuf::new());
    main_values(legs, &mut duration, &mut billsec)
        .iter()
        .map(|v| (*v).to_owned())
        .collect()
}

fn main_values<'a>(legs: &[Leg<'a>], duration: &'a mut NumBuf, billsec: &'a mut NumBuf) -> Leg<'a> {
    let mut main: Leg<'a> = [""; FIELDS.len()];
    let (mut dur, mut bill) = (0u64, 0u64);
    for leg in legs {
        dur = dur.saturating_add(seconds(leg[DURATION]));
        bill = bill.saturating_add(seconds(leg[BILLSEC]));
    }
    if let Some(first) = legs.first() {
        for i in [SRC, DST, START, SESSION, ACTION_TYPE] {
            main[i] = first[i];
        }
    }
    main[DURATION] = duration.format(dur);
    main[BILLSEC] = billsec.format(bill);
    main
}

/// A count of seconds; anything but a decimal number counts as 0.
fn seconds(value: &str) -> u64 {
    value.trim().parse().unwrap_or(0)
}

/// Decimal formatting of a `u64` without allocation.
struct NumBuf([u8; 20]);

impl NumBuf {
    fn new() -> Self {
        NumBuf([0; 20])
    }

    fn format(&mut self, mut n: u64) -> &str {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        std::str::from_utf8(&self.0[i..]).unwrap_or("0")
    }
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(NumBuf::new().format(n).as_bytes());
}

fn xml_cdr_open(out: &mut Vec<u8>, key: Option<&str>) {
    match key {
        Some(key) => {
            out.extend_from_slice(b"<cdr session=\"");
            xml_value(out, key);
            out.extend_from_slice(b"\">");
        }
        None => out.extend_from_slice(b"<cdr>"),
    }
}

/// Appends `bytes`; short runs (most values and separators) without a call
/// to `memcpy`.
#[inline(always)]
fn copy(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() <= 16 {
        out.extend(bytes.iter().copied());
    } else {
        out.extend_from_slice(bytes);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

// Word-at-a-time search: a value is scanned 8 bytes at a time for bytes that
// need escaping, and only a word that holds one is looked at byte by byte.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of `word` is below `n` (`n` <= 128).
#[inline(always)]
fn has_less(word: u64, n: u8) -> bool {
    word.wrapping_sub(LO * u64::from(n)) & !word & HI != 0
}

/// Whether some byte of `word` equals `b`.
#[inline(always)]
fn has_byte(word: u64, b: u8) -> bool {
    has_less(word ^ (LO * u64::from(b)), 1)
}

/// Index of the first byte at or after `from` whose `table` entry is not 0,
/// or `bytes.len()`. `hit(word)` must be true for every 8-byte word holding
/// such a byte (it only makes the search fast; the table decides).
#[inline(always)]
fn next_special(bytes: &[u8], from: usize, table: &[u8; 256], hit: impl Fn(u64) -> bool) -> usize {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if hit(word) {
            break;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if table[usize::from(b)] != 0 {
            return i;
        }
        i += 1;
    }
    i
}

/// JSON escapes by byte: 0 = copy; `u` = `\u00XX`; else the letter after `\`.
static JSON_ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

#[inline(always)]
fn json_next(bytes: &[u8], from: usize) -> usize {
    next_special(bytes, from, &JSON_ESCAPE, |w| {
        has_less(w, 0x20) | has_byte(w, b'"') | has_byte(w, b'\\')
    })
}

/// Appends `value` escaped as the inside of a JSON string.
#[inline(always)]
fn json_value(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut run = 0;
    let mut i = json_next(bytes, 0);
    while let Some(&b) = bytes.get(i) {
        copy(out, &bytes[run..i]);
        let esc = JSON_ESCAPE[usize::from(b)];
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(esc);
        }
        run = i + 1;
        i = json_next(bytes, run);
    }
    copy(out, &bytes[run..]);
}

/// Bytes that make a CSV field quoted.
static CSV_SPECIAL: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = 1;
    t[b'"' as usize] = 1;
    t[b'\r' as usize] = 1;
    t[b'\n' as usize] = 1;
    t
};

/// Appends `value` as a CSV field (RFC 4180): quoted, with `""` for `"`, when
/// it holds `,` `"` CR or LF or starts or ends with a space or tab.
#[inline(always)]
fn csv_value(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let edge_space = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    let needs_quotes = edge_space(bytes.first())
        || edge_space(bytes.last())
        || next_special(bytes, 0, &CSV_SPECIAL, |w| {
            has_byte(w, b',') | has_byte(w, b'"') | has_byte(w, b'\r') | has_byte(w, b'\n')
        }) < bytes.len();
    if !needs_quotes {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'"');
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' {
            out.extend_from_slice(&bytes[run..=i]);
            run = i;
        }
    }
    copy(out, &bytes[run..]);
    out.push(b'"');
}

/// XML handling by byte: 0 = copy; 1 = invalid in XML 1.0 (→ U+FFFD);
/// 2 = 0xEF, the lead byte of U+FFFE/U+FFFF; else an index into
/// [`XML_ENTITIES`] plus 3.
static XML_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 1;
        i += 1;
    }
    t[0xef] = 2;
    t[b'&' as usize] = 3;
    t[b'<' as usize] = 4;
    t[b'>' as usize] = 5;
    t[b'"' as usize] = 6;
    t[b'\'' as usize] = 7;
    t[b'\t' as usize] = 8;
    t[b'\n' as usize] = 9;
    t[b'\r' as usize] = 10;
    t
};

/// Tab, LF and CR are written as character references so that they survive
/// XML end-of-line and attribute-value normalisation.
const XML_ENTITIES: [&[u8]; 8] = [
    b"&amp;", b"&lt;", b"&gt;", b"&quot;", b"&apos;", b"&#9;", b"&#10;", b"&#13;",
];

const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

#[inline(always)]
fn xml_next(bytes: &[u8], from: usize) -> usize {
    next_special(bytes, from, &XML_CLASS, |w| {
        has_less(w, 0x20)
            | has_byte(w, b'&')
            | has_byte(w, b'<')
            | has_byte(w, b'>')
            | has_byte(w, b'"')
            | has_byte(w, b'\'')
            | has_byte(w, 0xef)
    })
}

/// Appends `value` escaped as XML text or attribute content.
#[inline(always)]
fn xml_value(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    let mut run = 0;
    let mut i = xml_next(bytes, 0);
    while let Some(&b) = bytes.get(i) {
        let (replacement, len): (&[u8], usize) = match XML_CLASS[usize::from(b)] {
            1 => (REPLACEMENT, 1),
            2 => match bytes.get(i + 1..i + 3) {
                // U+FFFE and U+FFFF are not XML characters.
                Some([0xbf, 0xbe | 0xbf]) => (REPLACEMENT, 3),
                _ => {
                    i = xml_next(bytes, i + 1);
                    continue;
                }
            },
            c => (
                XML_ENTITIES
                    .get(usize::from(c).wrapping_sub(3))
                    .copied()
                    .unwrap_or(REPLACEMENT),
                1,
            ),
        };
        copy(out, &bytes[run..i]);
        out.extend_from_slice(replacement);
        run = i + len;
        i = xml_next(bytes, run);
    }
    copy(out, &bytes[run..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_indices() {
        assert_eq!(FIELDS[SRC], "src");
        assert_eq!(FIELDS[DST], "dst");
        assert_eq!(FIELDS[START], "start");
        assert_eq!(FIELDS[DURATION], "duration");
        assert_eq!(FIELDS[BILLSEC], "billsec");
        assert_eq!(FIELDS[SESSION], "session");
        assert_eq!(FIELDS[ACTION_TYPE], "action_type");
        assert_eq!(field("nonsense"), FIELDS.len());
    }

    #[test]
    fn escapes() {
        let run = |f: fn(&mut Vec<u8>, &str), s: &str| {
            let mut out = Vec::new();
            f(&mut out, s);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(run(json_value, "a\"b\\c\n\u{1}é"), "a\\\"b\\\\c\\n\\u0001é");
        assert_eq!(run(csv_value, "plain"), "plain");
        assert_eq!(run(csv_value, "\"x\" <1>"), "\"\"\"x\"\" <1>\"");
        assert_eq!(run(csv_value, " lead"), "\" lead\"");
        assert_eq!(run(csv_value, "a,b"), "\"a,b\"");
        assert_eq!(
            run(xml_value, "<&>\"'\u{0}\u{FFFE}\u{FFFF}\u{FFFD}é\r"),
            "&lt;&amp;&gt;&quot;&apos;\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}é&#13;"
        );
        let mut n = NumBuf::new();
        assert_eq!(n.format(0), "0");
        assert_eq!(n.format(u64::MAX), "18446744073709551615");
    }
}
