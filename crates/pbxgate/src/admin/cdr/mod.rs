//! The CDR page (`/admin/cdr`): the cdrapi's filters as a GET form (so the
//! address of a search can be shared), a page of calls newest first with
//! their legs, calls per hour, exports and recordings.
//!
//! Everything goes through the cdrapi's code: its parameter rules (the form
//! shows its error messages), its filter resolution in the PBX time zone, its
//! grouping of legs into calls, its streamed export (`cdrExport`), and the
//! recapi's look-ups and ranges for recordings.
//!
//! - `form`: the parameters, their checks, the links that keep them;
//! - `table`: the calls and their legs; `chart`: calls per hour as SVG.

mod chart;
mod form;
mod table;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use jiff::ToSpan;
use store::{CdrStore, Order, PageQuery};
use ucm::cdrapi::{Mode, query_pairs_lenient};

use super::page::{Admin, AdminApi, Page, escape, internal, json_error, redirect, secure_headers};
use crate::admin::App;
use crate::recordings::Miss;
use form::Form;

/// The recapi directory the recordings of CDRs are in (`recordfiles`: the
/// dialplan's MixMonitor files under `monitor/`).
const RECORDINGS_DIR: &str = "monitor";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/admin/cdr", get(show))
        .route("/admin/cdr/export", get(export))
        .route("/admin/cdr/recording", get(recording))
}

/// `YYYY-MM-DD` six days before today in the PBX time zone: the first
/// visit shows a week (a bounded window stays fast on a large table).
fn week_ago(tz: &jiff::tz::TimeZone) -> String {
    let today = jiff::Timestamp::now().to_zoned_datetime(tz.clone()).date();
    today
        .checked_sub(6.days())
        .unwrap_or(today)
        .strftime("%Y-%m-%d")
        .to_string()
}

async fn show(admin: Admin, State(app): State<App>, RawQuery(raw): RawQuery) -> Response {
    let tz = &app.settings.timezone;
    let form = form::parse(raw.as_deref().unwrap_or(""), || week_ago(tz));
    let mut body = String::from("<h2>Call detail records</h2>");
    body.push_str(&form::render(&form));
    let status = match &form.query {
        None => {
            body.push_str(&problems(&form));
            StatusCode::BAD_REQUEST
        }
        Some(q) => match results(&app, &form, q).await {
            Ok(html) => {
                body.push_str(&html);
                StatusCode::OK
            }
            Err(e) => return internal(&e),
        },
    };
    Page::new("CDR")
        .status(status)
        .session(&admin.session, "cdr")
        .scripts(&["common.js", "cdr.js"])
        .render(&body)
}

/// What is wrong with the request, above the (empty) results.
fn problems(form: &Form) -> String {
    let mut out = String::from("<div class=\"error\" role=\"alert\" id=\"cdr-problems\">");
    match &form.problem {
        Some(p) => out.push_str(&escape(p)),
        None => {
            out.push_str("No search was run: ");
            let names: Vec<String> = form.errors().map(|(n, _)| escape(n)).collect();
            out.push_str(&format!(
                "fix {} (the cdrapi would answer an empty result).",
                names.join(", ")
            ));
            out.push_str(&form.unplaced_errors());
        }
    }
    out.push_str("</div>");
    out
}

/// The count, the chart, the exports and the page of calls, from three
/// queries run side by side.
async fn results(
    app: &App,
    form: &Form,
    q: &ucm::cdrapi::CdrQuery,
) -> Result<String, store::Error> {
    let tz = &app.settings.timezone;
    let settings = &app.settings.cdrapi;
    let filter = crate::cdrapi::filter(q, settings, tz);
    let grouping = crate::cdrapi::grouping(settings.output);
    let order = if form.newest_first {
        Order::NewestFirst
    } else {
        Order::OldestFirst
    };
    let page_query = PageQuery {
        filter: &filter,
        grouping,
        after: None,
        offset: form.offset,
        limit: form.page_size,
    };
    let (page, count, buckets) = tokio::join!(
        app.store.cdr_page_in(&page_query, order),
        app.store.cdr_entry_count(&filter, grouping),
        app.store.cdr_call_buckets(&filter, chart::BUCKET_MS),
    );
    let (page, count, buckets) = (page?, count?, buckets?);
    let now = jiff::Timestamp::now().as_millisecond();
    let bars = chart::bars(&buckets, filter.from_ms, filter.to_ms, now, tz);

    let mut out = String::new();
    let what = if grouping == store::Grouping::Sessions {
        "call"
    } else {
        "CDR"
    };
    let shown = page.legs()?.len();
    out.push_str(&format!(
        "<p class=\"cdr-summary\" id=\"cdr-summary\"><strong id=\"cdr-count\" data-count=\"{count}\">{}</strong> {what}{} match",
        chart::group(count),
        if count == 1 { "" } else { "s" },
    ));
    if count > 0 {
        out.push_str(&format!(
            " · export all of them: <a class=\"button secondary export\" href=\"{}\" download>CSV</a> \
             <a class=\"button secondary export\" href=\"{}\" download>XML</a> \
             <a class=\"button secondary export\" href=\"{}\" download>JSON</a>",
            escape(&form.export_href("csv")),
            escape(&form.export_href("xml")),
            escape(&form.export_href("json")),
        ));
    }
    out.push_str("</p>");
    out.push_str(&chart::render(
        bars.as_ref(),
        tz,
        &app.settings.timezone_name,
    ));
    out.push_str("<h3>Calls</h3>");
    let pager = pager(form, count);
    if shown == 0 {
        out.push_str(&format!(
            "<p class=\"muted\" id=\"cdr-none\">{}</p>",
            if count == 0 {
                "No calls match this filter."
            } else {
                "No calls on this page."
            }
        ));
        // Past the last page: the way back.
        if count > 0 {
            out.push_str(&pager);
        }
        return Ok(out);
    }
    out.push_str(&pager);
    out.push_str(&table::render(
        &page,
        grouping,
        tz,
        &app.settings.timezone_name,
    )?);
    out.push_str(&pager);
    Ok(out)
}

/// First / previous / next / last, and where this page is. The offset
/// comes from the address: anything up to `u64::MAX`.
fn pager(form: &Form, count: u64) -> String {
    let size = u64::from(form.page_size.max(1));
    let offset = form.offset;
    let pages = count.div_ceil(size).max(1);
    let current = (offset / size).saturating_add(1);
    let last_offset = (pages - 1) * size;
    let next = offset.saturating_add(size);
    let shown_to = count.min(next);
    let link = |label: &str, rel: &str, to: Option<u64>| match to {
        Some(o) => format!(
            "<a class=\"button secondary\" rel=\"{rel}\" href=\"{}\">{label}</a>",
            escape(&form.page_href(o))
        ),
        None => format!("<span class=\"button disabled\" aria-disabled=\"true\">{label}</span>"),
    };
    let (newer, older, order) = if form.newest_first {
        ("Newer", "Older", "newest first")
    } else {
        ("Earlier", "Later", "oldest first")
    };
    let first_shown = if shown_to > offset { offset + 1 } else { 0 };
    format!(
        "<nav class=\"pager\" aria-label=\"Pages\">{} {} <span class=\"where\">{order}: {}–{} of {} · \
         page {} of {}</span> {} {}</nav>",
        link("« First", "first", (offset > 0).then_some(0)),
        link(
            &format!("‹ {newer}"),
            "prev",
            (offset > 0).then(|| offset.saturating_sub(size))
        ),
        chart::group(first_shown),
        chart::group(shown_to),
        chart::group(count),
        chart::group(current),
        chart::group(pages),
        link(
            &format!("{older} ›"),
            "next",
            (next < count).then_some(next)
        ),
        link(
            "Last »",
            "last",
            (offset < last_offset).then_some(last_offset)
        ),
    )
}

/// `/admin/cdr/export?<filter>&format=csv|xml|json`: the cdrapi's
/// `cdrExport` for the filter, streamed as an attachment. An invalid filter
/// leads back to the page, which says what is wrong.
async fn export(admin: Admin, State(app): State<App>, RawQuery(raw): RawQuery) -> Response {
    let raw = raw.unwrap_or_default();
    let tz = &app.settings.timezone;
    let form = form::parse(&raw, || week_ago(tz));
    let query = match (
        &form.query,
        crate::cdrapi::parse(Ok(form.export_pairs()), None, Mode::New),
    ) {
        (Some(_), Ok(q)) => q,
        _ => {
            let back = match query_pairs_lenient(&raw) {
                Ok(_) => format!("/admin/cdr?{raw}"),
                Err(_) => "/admin/cdr".into(),
            };
            return redirect(&back);
        }
    };
    tracing::info!(user = %admin.session.username, format = ?query.format, "admin CDR export");
    let mut resp = crate::cdrapi::export(app.store.clone(), app.settings.cdrapi, tz.clone(), query);
    secure_headers(&mut resp);
    resp
}

/// `/admin/cdr/recording?file=<recordfiles entry>`: one recording of the
/// monitor directory through the recapi (its name checks keep every read
/// inside the directory; ranges, validators). 401 without a session.
async fn recording(
    _admin: AdminApi,
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs = match query_pairs_lenient(raw.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let files: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| n == "file")
        .map(|(_, v)| v.as_str())
        .collect();
    let [file] = files[..] else {
        return json_error(StatusCode::BAD_REQUEST, "give one file");
    };
    // One recording: the recapi would answer several `@`-joined names with a tar.
    let file = file.strip_suffix('@').unwrap_or(file);
    if file.is_empty() || file.contains('@') {
        return json_error(StatusCode::BAD_REQUEST, "give one file");
    }
    match app
        .recordings
        .answer(Some(RECORDINGS_DIR), Some(file), &headers, None)
        .await
    {
        Ok(mut resp) => {
            secure_headers(&mut resp);
            resp
        }
        Err(Miss::Failed(e)) => {
            tracing::error!(error = %e, "admin recording failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error, see the pbxgate log",
            )
        }
        Err(miss) => json_error(miss.http_status(), &miss.to_string()),
    }
}
