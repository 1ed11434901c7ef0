//! One recording over HTTP: content type, attachment name, validators
//! (`ETag`, `Last-Modified`), conditional requests (`If-None-Match`,
//! `If-Modified-Since`, `If-Range`) and single byte ranges (RFC 9110).
//! Several ranges in one request get the whole file (200), which RFC 9110
//! allows; nobody asks a recording for a multipart answer.

use std::ops::Range;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::resolve::{ByteStream, FileMeta};

/// What a request gets, given the file's validators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    NotModified,
    Full,
    Partial(Range<u64>),
    Unsatisfiable,
}

/// `Content-Type` by extension (case-insensitive).
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("wav") => "audio/x-wav",
        Some("mp3") => "audio/mpeg",
        Some("gsm") => "audio/x-gsm",
        Some("ogg") | Some("oga") => "audio/ogg",
        Some("opus") => "audio/opus",
        Some("ulaw") | Some("ul") | Some("mulaw") => "audio/basic",
        Some("tar") => "application/x-tar",
        _ => "application/octet-stream",
    }
}

/// `attachment; filename="…"`: the file name (no folder); non-ASCII names
/// also as RFC 8187 `filename*`, with `_` in the ASCII fallback. The name
/// rules already keep out `"`, `\` and control characters.
pub fn disposition(name: &str) -> HeaderValue {
    let base = name.rsplit('/').next().unwrap_or(name);
    let ascii: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut value = format!("attachment; filename=\"{ascii}\"");
    if ascii != base {
        value.push_str("; filename*=UTF-8''");
        for b in base.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                value.push(b as char);
            } else {
                value.push_str(&format!("%{b:02X}"));
            }
        }
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) of a time.
pub fn http_date(t: SystemTime) -> Option<String> {
    let ts = jiff::Timestamp::try_from(t).ok()?;
    Some(ts.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

/// An HTTP date in any of RFC 9110's three forms, in whole seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    let s = s.trim();
    for form in [
        "%a, %d %b %Y %H:%M:%S GMT",
        "%A, %d-%b-%y %H:%M:%S GMT",
        "%a %b %e %H:%M:%S %Y",
    ] {
        if let Ok(dt) = jiff::civil::DateTime::strptime(form, s) {
            return jiff::tz::TimeZone::UTC
                .to_timestamp(dt)
                .ok()
                .map(|t| t.as_second());
        }
    }
    None
}

fn secs(t: SystemTime) -> i64 {
    jiff::Timestamp::try_from(t).map_or(0, |ts| ts.as_second())
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Whether an `If-None-Match` / `If-Range` list holds `etag` (`weak`: W/
/// prefixes ignored, as If-None-Match compares).
fn etag_listed(list: &str, etag: &str, weak: bool) -> bool {
    list.split(',').map(str::trim).any(|t| {
        t == "*"
            || if weak {
                t.trim_start_matches("W/") == etag
            } else {
                t == etag
            }
    })
}

/// A single `bytes=` range against `len`: `Some(Ok(range))`, `Some(Err(()))`
/// when unsatisfiable, `None` when the header is to be ignored (malformed,
/// several ranges, another unit).
fn parse_range(value: &str, len: u64) -> Option<Result<Range<u64>, ()>> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if a.is_empty() {
        // suffix: the last n bytes
        let n = num(b)?;
        if n == 0 || len == 0 {
            return Some(Err(()));
        }
        return Some(Ok(len.saturating_sub(n)..len));
    }
    let start = num(a)?;
    let end = if b.is_empty() {
        u64::MAX
    } else {
        let end = num(b)?;
        if end < start {
            return None; // invalid, so ignored
        }
        end
    };
    if start >= len {
        return Some(Err(()));
    }
    Some(Ok(start..end.saturating_add(1).min(len)))
}

/// The answer RFC 9110 prescribes for these request headers.
pub fn plan(req: &HeaderMap, file: &FileMeta) -> Plan {
    let modified = secs(file.modified);
    // If-None-Match wins over If-Modified-Since.
    if let Some(inm) = header_str(req, header::IF_NONE_MATCH) {
        if etag_listed(inm, &file.etag, true) {
            return Plan::NotModified;
        }
    } else if let Some(since) = header_str(req, header::IF_MODIFIED_SINCE).and_then(parse_http_date)
        && modified <= since
    {
        return Plan::NotModified;
    }
    let Some(range) = header_str(req, header::RANGE) else {
        return Plan::Full;
    };
    if let Some(cond) = header_str(req, header::IF_RANGE) {
        let cond = cond.trim();
        let current = if cond.starts_with('"') || cond.starts_with("W/") {
            // strong comparison: a weak tag never matches
            etag_listed(cond, &file.etag, false) && !cond.starts_with("W/")
        } else {
            parse_http_date(cond) == Some(modified)
        };
        if !current {
            return Plan::Full;
        }
    }
    match parse_range(range, file.size) {
        None => Plan::Full,
        Some(Ok(r)) => Plan::Partial(r),
        Some(Err(())) => Plan::Unsatisfiable,
    }
}

fn set(resp: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// The validators every answer about the file carries.
fn validators(resp: &mut Response, file: &FileMeta) {
    set(resp, header::ETAG, &file.etag);
    if let Some(d) = http_date(file.modified) {
        set(resp, header::LAST_MODIFIED, &d);
    }
    set(resp, header::ACCEPT_RANGES, "bytes");
}

/// A header-only answer (304 or 416).
pub fn bodiless(plan: &Plan, file: &FileMeta) -> Response {
    let mut resp = Response::new(Body::empty());
    validators(&mut resp, file);
    if *plan == Plan::Unsatisfiable {
        *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
        set(
            &mut resp,
            header::CONTENT_RANGE,
            &format!("bytes */{}", file.size),
        );
    } else {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
    }
    resp
}

/// The byte range a plan sends (`Full` = everything).
pub fn bytes_of(plan: &Plan, file: &FileMeta) -> Range<u64> {
    match plan {
        Plan::Partial(r) => r.clone(),
        _ => 0..file.size,
    }
}

/// A 200 or 206 answer streaming `body` (the plan's bytes of `file`).
pub fn with_body(plan: &Plan, file: &FileMeta, name: &str, body: ByteStream) -> Response {
    let range = bytes_of(plan, file);
    let mut resp = Response::new(Body::from_stream(body));
    validators(&mut resp, file);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    headers.insert(header::CONTENT_DISPOSITION, disposition(name));
    set(
        &mut resp,
        header::CONTENT_LENGTH,
        &(range.end - range.start).to_string(),
    );
    if let Plan::Partial(r) = plan {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        set(
            &mut resp,
            header::CONTENT_RANGE,
            &format!(
                "bytes {}-{}/{}",
                r.start,
                r.end.saturating_sub(1),
                file.size
            ),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recordings::resolve::FileId;

    fn file(size: u64) -> FileMeta {
        FileMeta {
            rel: ucm::recapi::RelPath::parse("a.wav").unwrap(),
            size,
            modified: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_717_093_784),
            etag: "\"abc\"".into(),
            id: FileId::Local {
                path: "/nonexistent".into(),
                dev: 0,
                ino: 0,
            },
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ranges() {
        let f = file(1000);
        let p = |r: &str| plan(&headers(&[("range", r)]), &f);
        assert_eq!(p("bytes=0-99"), Plan::Partial(0..100));
        assert_eq!(p("bytes=-100"), Plan::Partial(900..1000));
        assert_eq!(p("bytes=-5000"), Plan::Partial(0..1000));
        assert_eq!(p("bytes=990-"), Plan::Partial(990..1000));
        assert_eq!(p("bytes=990-5000"), Plan::Partial(990..1000));
        assert_eq!(p("bytes=999-999"), Plan::Partial(999..1000));
        assert_eq!(p("bytes=1000-"), Plan::Unsatisfiable);
        assert_eq!(p("bytes=-0"), Plan::Unsatisfiable);
        // ignored: several ranges, other units, nonsense, reversed
        assert_eq!(p("bytes=0-1,5-6"), Plan::Full);
        assert_eq!(p("items=0-1"), Plan::Full);
        assert_eq!(p("bytes=a-b"), Plan::Full);
        assert_eq!(p("bytes=5-1"), Plan::Full);
        assert_eq!(p("bytes=-"), Plan::Full);
        assert_eq!(
            plan(&headers(&[("range", "bytes=0-")]), &file(0)),
            Plan::Unsatisfiable
        );
    }

    #[test]
    fn conditionals() {
        let f = file(1000);
        let date = http_date(f.modified).unwrap();
        assert_eq!(date, "Thu, 30 May 2024 18:29:44 GMT");
        let p = |h: &[(&'static str, &str)]| plan(&headers(h), &f);
        assert_eq!(p(&[("if-none-match", "\"abc\"")]), Plan::NotModified);
        assert_eq!(
            p(&[("if-none-match", "\"x\", W/\"abc\"")]),
            Plan::NotModified
        );
        assert_eq!(p(&[("if-none-match", "*")]), Plan::NotModified);
        assert_eq!(p(&[("if-none-match", "\"x\"")]), Plan::Full);
        assert_eq!(p(&[("if-modified-since", &date)]), Plan::NotModified);
        assert_eq!(
            p(&[("if-modified-since", "Thursday, 30-May-24 18:29:44 GMT")]),
            Plan::NotModified
        );
        assert_eq!(
            p(&[("if-modified-since", "Thu May 30 18:29:44 2024")]),
            Plan::NotModified
        );
        assert_eq!(
            p(&[("if-modified-since", "Thu, 30 May 2024 18:29:43 GMT")]),
            Plan::Full
        );
        assert_eq!(p(&[("if-modified-since", "garbage")]), Plan::Full);
        // If-None-Match takes precedence over If-Modified-Since.
        assert_eq!(
            p(&[("if-none-match", "\"x\""), ("if-modified-since", &date)]),
            Plan::Full
        );
        // If-Range: the range only while the validator is current.
        let r = ("range", "bytes=0-9");
        assert_eq!(p(&[r, ("if-range", "\"abc\"")]), Plan::Partial(0..10));
        assert_eq!(p(&[r, ("if-range", "\"old\"")]), Plan::Full);
        assert_eq!(p(&[r, ("if-range", "W/\"abc\"")]), Plan::Full);
        assert_eq!(p(&[r, ("if-range", &date)]), Plan::Partial(0..10));
        assert_eq!(
            p(&[r, ("if-range", "Thu, 30 May 2024 18:29:45 GMT")]),
            Plan::Full
        );
    }

    #[test]
    fn content_types_and_names() {
        assert_eq!(content_type("2024-05/a.wav"), "audio/x-wav");
        assert_eq!(content_type("MSG0000.WAV"), "audio/x-wav");
        assert_eq!(content_type("a.gsm"), "audio/x-gsm");
        assert_eq!(content_type("a.mp3"), "audio/mpeg");
        assert_eq!(content_type("1717093784.tar"), "application/x-tar");
        assert_eq!(content_type("noext"), "application/octet-stream");
        assert_eq!(
            disposition("2024-05/auto-1-2.wav"),
            "attachment; filename=\"auto-1-2.wav\""
        );
        assert_eq!(
            disposition("Grüße.wav"),
            "attachment; filename=\"Gr__e.wav\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.wav"
        );
    }
}
