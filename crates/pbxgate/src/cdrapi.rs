//! `cdrapi` (one page of at most 1000 entries, spec §4) and `cdrExport`
//! (every matching entry, streamed with keyset paging): request → query →
//! store pages → encoder. The parameter rules live in `ucm::cdrapi`, the SQL
//! in `store`; this module joins them and owns the HTTP answer.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use store::{CdrFilter, CdrStore, Grouping, PageKey, PageQuery, Store};
use tokio::sync::mpsc;
use ucm::cdrapi::encode::{Encoder, Leg, Options, Profile};
use ucm::cdrapi::{CdrQuery, Format, Mode, QueryError, TimeSpec, parse_params};

use crate::config::CdrApiSettings;
use crate::ingest::derive::civil_to_utc_ms;

/// Parses the request's parameters (everything but `action` and `cookie`).
/// `pairs` is an error when a value could not be read as text; the answer
/// is then still in the format asked for.
pub fn parse(
    pairs: Result<Vec<(String, String)>, String>,
    format: Option<&str>,
    mode: Mode,
) -> Result<CdrQuery, QueryError> {
    match pairs {
        Ok(pairs) => parse_params(&pairs, mode),
        Err(reason) => {
            let format = match format.map(str::to_ascii_lowercase).as_deref() {
                Some("json") => Format::Json,
                Some("xml") => Format::Xml,
                _ => Format::Csv,
            };
            Err(QueryError { format, reason })
        }
    }
}

/// The empty container of `format`: the UCM's answer to any invalid request.
pub fn empty_answer(settings: &CdrApiSettings, format: Format, name: &str) -> Response {
    let body = ucm::cdrapi::encode::empty(format, settings.output);
    respond(format, Body::from(body), name, false)
}

fn respond(format: Format, body: Body, name: &str, attachment: bool) -> Response {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if attachment {
        let ext = match format {
            Format::Csv => "csv",
            Format::Xml => "xml",
            Format::Json => "json",
        };
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.{ext}\"")) {
            headers.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}

/// The query's filter with its times resolved in the PBX time zone (or UTC).
pub fn filter(q: &CdrQuery, settings: &CdrApiSettings, tz: &jiff::tz::TimeZone) -> CdrFilter {
    let zone = if settings.naive_utc {
        jiff::tz::TimeZone::UTC
    } else {
        tz.clone()
    };
    let resolve = |t: &TimeSpec| -> i64 {
        match t {
            TimeSpec::Now => jiff::Timestamp::now().as_millisecond(),
            TimeSpec::Instant(ts) => ts.as_millisecond(),
            // Out of jiff's range: clamp to its ends.
            TimeSpec::Naive(dt) => civil_to_utc_ms(*dt, &zone).unwrap_or(if dt.year() < 0 {
                jiff::Timestamp::MIN.as_millisecond()
            } else {
                jiff::Timestamp::MAX.as_millisecond()
            }),
        }
    };
    CdrFilter {
        caller: q.caller.clone(),
        callee: q.callee.clone(),
        answered_by: q.answered_by.clone(),
        caller_name: q.caller_name.clone(),
        time_field: q.time_field,
        from_ms: q.start_time.as_ref().map(resolve),
        to_ms: q.end_time.as_ref().map(resolve),
        min_billsec: q.min_dur,
        max_billsec: q.max_dur,
    }
}

pub(crate) fn grouping(options: Options) -> Grouping {
    if options.profile == Profile::Ucm6100 {
        Grouping::Legs
    } else {
        Grouping::Sessions
    }
}

/// The entries among `legs` (call start, values), as index ranges:
/// consecutive legs of one session form one entry; with `Grouping::Legs`
/// every leg is one.
pub(crate) fn entry_bounds(legs: &[(i64, Leg<'_>)], grouping: Grouping) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let mut start = 0;
    for i in 1..=legs.len() {
        let same = i < legs.len()
            && grouping == Grouping::Sessions
            && legs[i].0 == legs[start].0
            && legs[i].1[SESSION] == legs[start].1[SESSION];
        if !same {
            bounds.push((start, i));
            start = i;
        }
    }
    bounds
}

/// Writes `bounds` of `legs` as entries.
fn encode_entries(
    enc: &mut Encoder,
    legs: &[(i64, Leg<'_>)],
    bounds: &[(usize, usize)],
    out: &mut Vec<u8>,
) {
    let mut group: Vec<Leg<'_>> = Vec::new();
    for &(a, b) in bounds {
        group.clear();
        group.extend(legs[a..b].iter().map(|(_, v)| *v));
        enc.entry(&group, out);
    }
}

/// What `cdrapi` and `cdrExport` need, built once at start-up: the store, the
/// cdrapi settings and the PBX's time zone (the old listener and the admin
/// CDR page read through the same handle).
#[derive(Clone)]
pub struct Cdrapi {
    pub store: Store,
    pub settings: CdrApiSettings,
    pub tz: jiff::tz::TimeZone,
}

impl Cdrapi {
    /// One page ([`page`]).
    pub async fn page(&self, q: &CdrQuery) -> Result<Response, store::Error> {
        page(&self.store, &self.settings, &self.tz, q).await
    }

    /// Every matching entry, streamed ([`export`]).
    pub fn export(&self, q: CdrQuery) -> Response {
        export(self.store.clone(), self.settings, self.tz.clone(), q)
    }
}

/// `cdrapi`: one page.
pub async fn page(
    store: &Store,
    settings: &CdrApiSettings,
    tz: &jiff::tz::TimeZone,
    q: &CdrQuery,
) -> Result<Response, store::Error> {
    let options = settings.output;
    let mut enc = Encoder::new(q.format, options);
    let mut out = Vec::new();
    enc.begin(&mut out);
    if q.num_records > 0 {
        let f = filter(q, settings, tz);
        let page = store
            .cdr_page(&PageQuery {
                filter: &f,
                grouping: grouping(options),
                after: None,
                offset: q.offset,
                limit: q.num_records,
            })
            .await?;
        out.reserve(page.size() + page.size() / 4);
        let legs: Vec<(i64, Leg<'_>)> =
            page.legs()?.iter().map(|l| (l.call_ms, l.values)).collect();
        encode_entries(
            &mut enc,
            &legs,
            &entry_bounds(&legs, grouping(options)),
            &mut out,
        );
    }
    enc.finish(&mut out);
    Ok(respond(q.format, Body::from(out), "cdr", false))
}

/// `cdrExport`: every matching entry (from `offset`), without the 1000 cap,
/// streamed page by page with keyset paging, so memory stays flat.
pub fn export(
    store: Store,
    settings: CdrApiSettings,
    tz: jiff::tz::TimeZone,
    q: CdrQuery,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let format = q.format;
    tokio::spawn(async move {
        if let Err(e) = export_pages(&store, &settings, &tz, &q, &tx).await {
            tracing::error!(error = %e, "cdrExport failed; the response is cut short");
            // An error chunk aborts the HTTP body, so the client sees a
            // failed transfer instead of a complete-looking short file.
            let _ = tx.send(Err(std::io::Error::other("export failed"))).await;
        }
    });
    respond(
        format,
        Body::from_stream(ChannelBody(rx)),
        "cdr-export",
        true,
    )
}

async fn export_pages(
    store: &Store,
    settings: &CdrApiSettings,
    tz: &jiff::tz::TimeZone,
    q: &CdrQuery,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), store::Error> {
    let options = settings.output;
    let sessions = grouping(options) == Grouping::Sessions;
    let f = filter(q, settings, tz);
    let mut enc = Encoder::new(q.format, options);
    let mut out = Vec::new();
    enc.begin(&mut out);
    // `offset` counts entries: start after the last leg of entry `offset - 1`.
    let mut after: Option<PageKey> = None;
    if q.offset > 0 {
        let skip = store
            .cdr_page(&PageQuery {
                filter: &f,
                grouping: grouping(options),
                after: None,
                offset: q.offset - 1,
                limit: 1,
            })
            .await?;
        match skip.legs()?.last() {
            Some(leg) => after = Some(PageKey::of(leg)?),
            None => {
                enc.finish(&mut out);
                let _ = tx.send(Ok(Bytes::from(out))).await;
                return Ok(());
            }
        }
    }
    // Legs arrive in entry order, in pages that may cut a call: the last
    // entry of each page is held back and completed with the next.
    let mut pages = store.cdr_export(f, after, settings.export_page);
    let mut carry: Vec<(i64, [String; 43])> = Vec::new();
    while let Some(page) = pages.recv().await {
        let page = page?;
        let legs = page.legs()?;
        let mut all = Vec::with_capacity(carry.len() + legs.len());
        all.extend(borrowed(&carry));
        all.extend(legs.iter().map(|l| (l.call_ms, l.values)));
        let mut bounds = entry_bounds(&all, grouping(options));
        let held = if sessions { bounds.pop() } else { None };
        encode_entries(&mut enc, &all, &bounds, &mut out);
        carry = held
            .map(|(a, b)| {
                all[a..b]
                    .iter()
                    .map(|(call, v)| (*call, v.map(str::to_owned)))
                    .collect()
            })
            .unwrap_or_default();
        // The next chunk is about as big: one allocation instead of doubling.
        let next = Vec::with_capacity(out.len());
        if tx
            .send(Ok(Bytes::from(std::mem::replace(&mut out, next))))
            .await
            .is_err()
        {
            tracing::info!(entries = enc.entries(), "cdrExport: client went away");
            return Ok(());
        }
    }
    let last: Vec<_> = borrowed(&carry).collect();
    encode_entries(
        &mut enc,
        &last,
        &entry_bounds(&last, grouping(options)),
        &mut out,
    );
    enc.finish(&mut out);
    let _ = tx.send(Ok(Bytes::from(out))).await;
    tracing::info!(entries = enc.entries(), "cdrExport finished");
    Ok(())
}

/// The legs held back from the previous page, as legs again.
fn borrowed(carry: &[(i64, [String; 43])]) -> impl Iterator<Item = (i64, Leg<'_>)> {
    carry
        .iter()
        .map(|(call, v)| (*call, v.each_ref().map(String::as_str)))
}

/// Position of `session` in a leg's values.
const SESSION: usize = 27;

/// The receiving end of the export channel as a body stream.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for ChannelBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_is_where_the_record_has_it() {
        assert_eq!(ucm::cdr::FIELDS[super::SESSION], "session");
    }
}
