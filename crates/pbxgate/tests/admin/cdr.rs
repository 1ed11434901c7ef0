//! The CDR page of the admin interface on SQLite and PostgreSQL: filters and
//! paging against the cdrapi's own answers, every validation message beside
//! its field, exports byte for byte as `cdrExport`, calls per hour, the
//! recording player's endpoint (ranges, traversal), sessions; and the page in
//! a real browser.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION};
use serde_json::{Value, json};
use store::NewCdr;
use ucm::cdrapi::{Mode, parse_params};

use super::admin_browser;
use super::{PASSWORD, browser, log_in, set_cookie, set_password};
use crate::cdrapi::{T0, leg, seed};
use crate::kit::*;
use crate::recapi::wav;

const HOUR: i64 = 3_600_000;

/// The cdrapi tests' calls, more filled in: one call an hour from T0
/// (2026-03-28 13:13:20 in Berlin) across the switch to summer time, call 3
/// of three legs, calls 0, 5, 10, … not answered, call 4 recorded.
fn calls(tz: &jiff::tz::TimeZone) -> Vec<NewCdr> {
    let mut cdrs = Vec::new();
    for i in 0..30usize {
        let call_ms = T0 + i as i64 * HOUR;
        let session = format!("{}{i:02}-10{i:02}", call_ms / 1000);
        let legs = if i == 3 { 3 } else { 1 };
        for l in 0..legs {
            let mut c = leg(
                cdrs.len(),
                &session,
                call_ms,
                call_ms + l as i64 * 2000,
                (&format!("10{i:02}"), &format!("20{:02}", (i + l) % 7)),
                (i as u32 % 5) * 10 + l as u32,
                tz,
            );
            let name = if i == 7 {
                "Doe, John".to_owned()
            } else {
                format!("Caller {i}")
            };
            c.record.set("caller_name", name);
            if c.record.get("disposition") == "ANSWERED" {
                let dst = c.record.get("dst").to_owned();
                c.record.set("dstanswer", dst);
            }
            c.record.set("userfield", "Internal");
            if i == 4 {
                c.record.set("recordfiles", recording_of_call_4());
            }
            cdrs.push(c);
        }
    }
    cdrs
}

fn recording_of_call_4() -> String {
    format!("2026-03/auto-{}-1004-2004.wav@", (T0 + 4 * HOUR) / 1000)
}

fn session_of(i: usize) -> String {
    format!("{}{i:02}-10{i:02}", (T0 + i as i64 * HOUR) / 1000)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A pbxgate with the calls stored, an API user, Berlin time and a monitor
/// folder holding call 4's recording; the spool folder, the admin session
/// cookie and a client that does not follow redirects.
async fn setup(
    db: &store::testing::TestDb,
) -> (Server, tempfile::TempDir, String, reqwest::Client) {
    let spool = tempfile::tempdir().unwrap();
    let month = spool.path().join("monitor/2026-03");
    std::fs::create_dir_all(&month).unwrap();
    let rec = recording_of_call_4();
    std::fs::write(
        spool.path().join("monitor").join(rec.trim_end_matches('@')),
        wav(2, 7),
    )
    .unwrap();
    let srv = Server::start(
        db,
        &format!(
            "[https_api]\npassword = \"pw\"\n[pbx]\ntimezone = \"Europe/Berlin\"\n\
             [cdrapi]\nexport_page = 4\n[recordings]\nspool_dir = \"{}\"\n",
            spool.path().display()
        ),
    )
    .await;
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    seed(&srv, &calls(&berlin)).await;
    let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    let c = browser("127.0.0.1");
    let resp = log_in(&srv, &c, "admin", PASSWORD).await;
    let (cookie, _) = set_cookie(&resp, "pbxgate_admin").expect("session cookie");
    (srv, spool, cookie, c)
}

/// GET a page with the session: status and body.
async fn page(srv: &Server, c: &reqwest::Client, cookie: &str, q: &str) -> (StatusCode, String) {
    let resp = c
        .get(srv.url(&format!("/admin/cdr?{q}")))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.text().await.unwrap())
}

/// The sessions of the call rows of a page, in order.
fn rows(html: &str) -> Vec<String> {
    html.split("<tr class=\"call")
        .skip(1)
        .map(|r| {
            let at = r.find("data-session=\"").unwrap() + "data-session=\"".len();
            r[at..].split('"').next().unwrap().to_owned()
        })
        .collect()
}

/// A request to the JSON API: content type, content disposition, body bytes.
async fn api(srv: &Server, c: &reqwest::Client, request: Value) -> (String, String, Vec<u8>) {
    let resp = c
        .post(srv.url("/api"))
        .json(&json!({ "request": request }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (ct, cd) = (h("content-type"), h("content-disposition"));
    (ct, cd, resp.bytes().await.unwrap().to_vec())
}

/// The sessions of the entries of a cdrapi JSON answer, in order.
fn cdrapi_sessions(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["cdr_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e.get("main_cdr").unwrap_or(e)["session"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn request(action: &str, cookie: &str, params: &[(&str, &str)]) -> Value {
    let mut r = json!({"action": action, "cookie": cookie});
    for (k, v) in params {
        // A repeated parameter as a list (the cdrapi joins it with commas).
        let value = match &r[*k] {
            Value::String(first) => json!([first, v]),
            Value::Array(a) => {
                let mut a = a.clone();
                a.push(json!(v));
                Value::Array(a)
            }
            _ => json!(v),
        };
        r[*k] = value;
    }
    r
}

/// The bars of the chart: (data-start, answered, not answered).
fn bars(html: &str) -> Vec<(String, u64, u64)> {
    html.split("<g class=\"bar\" ")
        .skip(1)
        .map(|g| {
            let attr = |name: &str| {
                let at = g.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                g[at..].split('"').next().unwrap().to_owned()
            };
            (
                attr("data-start"),
                attr("data-answered").parse().unwrap(),
                attr("data-unanswered").parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_cdr_page_filters_and_pages_as_the_cdrapi_does() {
    for db in dbs().await {
        let (srv, _spool, cookie, c) = setup(&db).await;
        let api_cookie = srv.login(&client(None), "cdrapi", "pw").await.unwrap();

        // The first visit: the last seven days in PBX time, newest first.
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let week = || {
            jiff::Timestamp::now()
                .to_zoned_datetime(berlin.clone())
                .date()
                .checked_sub(jiff::ToSpan::days(6))
                .unwrap()
                .strftime("%Y-%m-%d")
                .to_string()
        };
        // (the day may turn during the request)
        let before = week();
        let (status, html) = page(&srv, &c, &cookie, "").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            [before, week()]
                .iter()
                .any(|w| html.contains(&format!("name=\"startTime\" value=\"{w}\""))),
            "{html}"
        );
        assert!(html.contains("<select id=\"f-numRecords\" name=\"numRecords\""));
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "CSP: {html}"
        );
        assert!(html.contains("<script src=\"/admin/assets/cdr.js\" defer></script>"));

        // Everything, newest first, seven a page: the pages cover every call once.
        let all: Vec<String> = (0..30).rev().map(session_of).collect();
        let (status, html) = page(&srv, &c, &cookie, "startTime=2026-03-01&numRecords=7").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("data-count=\"30\""), "{html}");
        assert!(html.contains("page 1 of 5"), "{html}");
        assert!(
            html.contains("href=\"/admin/cdr?startTime=2026-03-01&amp;numRecords=7&amp;offset=7\""),
            "{html}"
        );
        let mut paged = rows(&html);
        for offset in [7, 14, 21, 28] {
            let (_, html) = page(
                &srv,
                &c,
                &cookie,
                &format!("startTime=2026-03-01&numRecords=7&offset={offset}"),
            )
            .await;
            assert!(
                html.contains(&format!("page {} of 5", offset / 7 + 1)),
                "{html}"
            );
            paged.extend(rows(&html));
        }
        assert_eq!(paged, all, "{db:?}");
        // Times in the PBX time zone: call 12 at 01:13 CET, call 13 at 03:13 CEST.
        let (_, html) = page(
            &srv,
            &c,
            &cookie,
            "startTime=2026-03-29T01:00&endTime=2026-03-29T03:30",
        )
        .await;
        assert_eq!(rows(&html), [session_of(13), session_of(12)]);
        assert!(
            html.contains("<td class=\"time\">2026-03-29 03:13:20</td>"),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"time\">2026-03-29 01:13:20</td>"),
            "{html}"
        );
        assert!(html.contains("(Europe/Berlin)"));

        // Every filter gives the cdrapi's entries, in its order (oldest
        // first) or reversed (newest first).
        let filters: &[&[(&str, &str)]] = &[
            &[],
            &[("caller", "1001-1004")],
            &[("caller", "1001"), ("caller", "1012")],
            &[("callee", "2003")],
            &[("callee", "200@")],
            &[("answeredby", "2001,2002")],
            &[("callerName", "Doe, John")],
            &[("callerName", "Caller 1@")],
            &[("minDur", "20")],
            &[("maxDur", "10")],
            &[("minDur", "10"), ("maxDur", "30")],
            &[
                ("startTime", "2026-03-28T20:00"),
                ("endTime", "2026-03-29T06:00:00+02:00"),
            ],
            &[
                ("timeFilterType", "End"),
                ("startTime", "2026-03-28T14:13:40"),
                ("endTime", "2026-03-28 16:14"),
            ],
            &[
                ("startTime", "1774700000"),
                ("endTime", "now"),
                ("caller", "0-0"),
            ],
        ];
        for f in filters {
            let mut q = f.to_vec();
            q.extend([("numRecords", "1000"), ("order", "oldest")]);
            let (status, html) = page(&srv, &c, &cookie, &query(&q)).await;
            assert_eq!(status, StatusCode::OK, "{f:?}: {html}");
            let mut params = f.to_vec();
            params.push(("format", "json"));
            let (_, _, body) = api(&srv, &c, request("cdrapi", &api_cookie, &params)).await;
            let want = cdrapi_sessions(&body);
            assert_eq!(rows(&html), want, "{f:?} on {db:?}");
            assert!(
                html.contains(&format!("data-count=\"{}\"", want.len())),
                "{f:?}"
            );
            let (_, html) = page(&srv, &c, &cookie, &query(f)).await;
            let mut newest = want.clone();
            newest.reverse();
            // (the first visit's default window applies to an empty query)
            if !f.is_empty() {
                assert_eq!(rows(&html), newest, "{f:?} newest first on {db:?}");
            }
        }
        // The early firmware's profile counts legs: one row each, in the
        // cdrapi's order, on a second server over the same data.
        let flat = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[pbx]\ntimezone = \"Europe/Berlin\"\n[cdrapi]\nprofile = \"ucm6100\"\n",
        )
        .await;
        let resp = log_in(&flat, &c, "admin", PASSWORD).await;
        let (flat_cookie, _) = set_cookie(&resp, "pbxgate_admin").unwrap();
        let (_, html) = page(&flat, &c, &flat_cookie, "caller=1002-1004&order=oldest").await;
        assert!(html.contains("data-count=\"5\""), "{html}");
        assert_eq!(
            rows(&html),
            [2, 3, 3, 3, 4].map(session_of),
            "three rows for call 3's legs"
        );
        assert!(!html.contains("legs-toggle"));
        flat.stop().await;

        // A grouped call is one row; its legs are hidden rows the button controls.
        let (_, html) = page(&srv, &c, &cookie, "caller=1003").await;
        assert_eq!(rows(&html), [session_of(3)]);
        assert!(html.contains("data-legs=\"3\""), "{html}");
        assert!(
            html.contains("aria-controls=\"leg-0-1 leg-0-2 leg-0-3\""),
            "{html}"
        );
        assert_eq!(html.matches("<tr class=\"leg\" id=\"leg-0-").count(), 3);
        assert_eq!(html.matches(" hidden>").count(), 3);
        // Summed durations as in the cdrapi's main_cdr: 93 s of talk.
        assert!(html.contains("<td class=\"num\">1:33</td>"), "{html}");

        srv.stop().await;
    }
}

#[tokio::test]
async fn invalid_filters_show_the_cdrapis_message_beside_the_field() {
    for db in dbs().await {
        let (srv, _spool, cookie, c) = setup(&db).await;
        let api_cookie = srv.login(&client(None), "cdrapi", "pw").await.unwrap();
        let invalid: &[(&str, &str)] = &[
            ("caller", "10 01"),
            ("callee", "5300,,5301"),
            ("answeredby", ",1000"),
            ("callerName", "a\u{1}b"),
            ("startTime", "2026-02-30"),
            ("endTime", "yesterday"),
            ("timeFilterType", "Middle"),
            ("minDur", "1.5"),
            ("maxDur", "-3"),
            ("numRecords", "ten"),
            ("offset", "-1"),
        ];
        for (name, value) in invalid {
            let reason = parse_params(&[(name.to_string(), value.to_string())], Mode::New)
                .unwrap_err()
                .reason;
            let (status, html) = page(&srv, &c, &cookie, &query(&[(name, value)])).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name}");
            let shown = format!(
                "<span class=\"field-error\" id=\"e-{name}\" role=\"alert\">{}</span>",
                escape(&reason)
            );
            assert!(html.contains(&shown), "{name}: {shown} in {html}");
            // (offset has no field: the page links set it)
            if *name != "offset" {
                assert!(html.contains("aria-invalid=\"true\""), "{name}");
            }
            assert!(!html.contains("id=\"cdr-table\""), "no results: {name}");
            assert!(html.contains("id=\"cdr-problems\""), "{name}");
            // The cdrapi refuses the same value (an empty result).
            let (_, _, body) = api(
                &srv,
                &c,
                request("cdrapi", &api_cookie, &[(name, value), ("format", "json")]),
            )
            .await;
            assert_eq!(body, b"{\"cdr_root\":[]}", "{name}");
        }
        // All at once: every field says what is wrong with it.
        let (status, html) = page(&srv, &c, &cookie, &query(invalid)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        for (name, _) in invalid {
            assert!(html.contains(&format!("id=\"e-{name}\"")), "{name}");
        }
        // The page's own parameters.
        let (status, html) = page(&srv, &c, &cookie, "order=sideways").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            html.contains("order: expected newest or oldest, got &quot;sideways&quot;"),
            "{html}"
        );
        let (status, html) = page(&srv, &c, &cookie, "numRecords=0").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("a page holds 1 to 1000"), "{html}");
        let (status, html) = page(&srv, &c, &cookie, "caller=%zz").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(html.contains("invalid percent-encoding"), "{html}");
        // Unknown parameters are ignored, as on the cdrapi's new API; odd
        // input never breaks the page.
        for q in [
            "disposition=ANSWERED&startTime=2026-03-01",
            "startTime=%00",
            "caller=%E2%80%AE1001",
            "offset=99999999999999999999",
            "numRecords=99999999999999999999&offset=18446744073709551615",
            "startTime=2026-03-29T02:30&endTime=2026-03-29T02:30",
            "&&&=&caller",
            "startTime=-99999-01-01",
        ] {
            let (status, html) = page(&srv, &c, &cookie, q).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST,
                "{q}: {status}"
            );
            assert!(html.contains("<h2>Call detail records</h2>"), "{q}");
        }
        // An export of an invalid filter leads back to the page and its messages.
        let resp = c
            .get(srv.url("/admin/cdr/export?caller=10%2001&format=csv"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            resp.headers()[LOCATION],
            "/admin/cdr?caller=10%2001&format=csv"
        );
        let log = srv.stop().await;
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[tokio::test]
async fn exports_are_the_cdrapis_bytes_for_the_filter() {
    for db in dbs().await {
        let (srv, _spool, cookie, c) = setup(&db).await;
        let api_cookie = srv.login(&client(None), "cdrapi", "pw").await.unwrap();
        let filters: &[&[(&str, &str)]] = &[
            &[],
            &[("caller", "1001-1004")],
            &[("minDur", "20"), ("startTime", "2026-03-28T18:00")],
            &[("callerName", "Doe, John")],
            &[("callee", "9999")],
        ];
        for f in filters {
            for format in ["csv", "xml", "json"] {
                let mut q = f.to_vec();
                q.push(("format", format));
                let resp = c
                    .get(srv.url(&format!("/admin/cdr/export?{}", query(&q))))
                    .header(COOKIE, &cookie)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK, "{q:?}");
                let h = |n: &str| resp.headers()[n].to_str().unwrap().to_owned();
                let disposition = h("content-disposition");
                assert_eq!(
                    disposition,
                    format!("attachment; filename=\"cdr-export.{format}\"")
                );
                let ct = h("content-type");
                assert!(
                    resp.headers().get("content-length").is_none(),
                    "streamed, not built whole"
                );
                let body = resp.bytes().await.unwrap().to_vec();
                let (api_ct, api_cd, export) =
                    api(&srv, &c, request("cdrExport", &api_cookie, &q)).await;
                assert_eq!((&ct, &disposition), (&api_ct, &api_cd));
                assert_eq!(
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&export),
                    "{q:?} on {db:?}"
                );
                // Under 1000 entries that is also one cdrapi page.
                let (_, _, one_page) = api(&srv, &c, request("cdrapi", &api_cookie, &q)).await;
                assert_eq!(body, one_page, "{q:?} on {db:?}");
            }
        }
        // The page links its exports with its filter, without page or order.
        let (_, html) = page(
            &srv,
            &c,
            &cookie,
            "caller=1001-1004&numRecords=25&order=oldest&offset=2",
        )
        .await;
        assert!(
            html.contains(
                "href=\"/admin/cdr/export?caller=1001-1004&amp;format=csv\" download>CSV</a>"
            ),
            "{html}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn the_chart_counts_calls_per_local_hour() {
    for db in dbs().await {
        let (srv, _spool, cookie, c) = setup(&db).await;
        // 13:00 to midnight on 2026-03-28: calls 0 to 10, one an hour at
        // HH:13; calls 0, 5 and 10 were not answered.
        let (status, html) = page(
            &srv,
            &c,
            &cookie,
            "startTime=2026-03-28T13:00&endTime=2026-03-28T23:59",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let got = bars(&html);
        let want: Vec<(String, u64, u64)> = (0..11u64)
            .map(|i| {
                let answered = u64::from(i % 5 != 0);
                (
                    format!("2026-03-28T{:02}:00+01:00", 13 + i),
                    answered,
                    1 - answered,
                )
            })
            .collect();
        assert_eq!(got, want, "{db:?}");
        assert!(html.contains("data-unit=\"hour\""));
        assert!(html.contains("8 answered"), "{html}");
        assert!(html.contains("3 not answered"), "{html}");
        assert!(html.contains("<svg class=\"chart\""));
        // The night clocks go forward: 00:00, 01:00, then 03:00.
        let (_, html) = page(
            &srv,
            &c,
            &cookie,
            "startTime=2026-03-29T00:00&endTime=2026-03-29T04:00",
        )
        .await;
        assert_eq!(
            bars(&html),
            [
                ("2026-03-29T00:00+01:00".to_owned(), 1, 0),
                ("2026-03-29T01:00+01:00".to_owned(), 1, 0),
                ("2026-03-29T03:00+02:00".to_owned(), 1, 0),
            ],
            "{db:?}"
        );
        // A grouped call counts once; a filter applies to the chart too.
        let (_, html) = page(&srv, &c, &cookie, "caller=1000-1009&startTime=2026-03-28").await;
        let got = bars(&html);
        assert_eq!(got.iter().map(|b| b.1 + b.2).sum::<u64>(), 10);
        assert_eq!(got.iter().map(|b| b.2).sum::<u64>(), 2, "calls 0 and 5");
        // Nothing matches: no chart, no table.
        let (_, html) = page(&srv, &c, &cookie, "caller=9999").await;
        assert!(
            html.contains("No calls in this window.")
                && html.contains("No calls match this filter.")
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn recordings_play_with_ranges_and_never_leave_the_monitor_folder() {
    for db in dbs().await {
        let (srv, spool, cookie, c) = setup(&db).await;
        let rec = recording_of_call_4();
        let name = rec.trim_end_matches('@');
        let bytes = wav(2, 7);
        let get = |file: String, headers: Vec<(&'static str, String)>| {
            let (srv, c, cookie) = (&srv, &c, &cookie);
            async move {
                let mut req = c
                    .get(srv.url(&format!("/admin/cdr/recording?file={file}")))
                    .header(COOKIE, cookie.as_str());
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                req.send().await.unwrap()
            }
        };
        // The page's player points at it.
        let (_, html) = page(&srv, &c, &cookie, "caller=1004").await;
        let src = format!("/admin/cdr/recording?file={}", encode(name));
        assert!(
            html.contains(&format!(
                "<audio controls preload=\"none\" src=\"{}\"",
                escape(&src)
            )),
            "{html}"
        );

        // Whole, and by ranges.
        let resp = get(encode(name), vec![]).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["accept-ranges"], "bytes");
        assert_eq!(resp.headers()["content-type"], "audio/x-wav");
        assert_eq!(resp.bytes().await.unwrap().to_vec(), bytes);
        let resp = get(encode(&rec), vec![("range", "bytes=0-99".into())]).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes 0-99/{}", bytes.len())
        );
        assert_eq!(resp.bytes().await.unwrap().to_vec(), &bytes[..100]);
        let resp = get(encode(name), vec![("range", "bytes=-10".into())]).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            resp.bytes().await.unwrap().to_vec(),
            &bytes[bytes.len() - 10..]
        );
        let resp = get(
            encode(name),
            vec![("range", format!("bytes={}-", bytes.len()))],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes */{}", bytes.len())
        );
        // The bare name is found in its month folder, as by the recapi.
        let bare = name.rsplit('/').next().unwrap();
        assert_eq!(get(encode(bare), vec![]).await.status(), StatusCode::OK);

        // Nothing outside the monitor folder, whatever the spelling.
        std::fs::write(spool.path().join("secret.txt"), b"secret").unwrap();
        std::os::unix::fs::symlink(
            spool.path().join("secret.txt"),
            spool.path().join("monitor/evil.wav"),
        )
        .unwrap();
        for (file, want) in [
            ("..%2Fsecret.txt", StatusCode::BAD_REQUEST),
            ("2026-03%2F..%2F..%2Fsecret.txt", StatusCode::BAD_REQUEST),
            ("%2Fetc%2Fpasswd", StatusCode::BAD_REQUEST),
            ("%252e%252e%252fsecret.txt", StatusCode::BAD_REQUEST),
            ("..%5Csecret.txt", StatusCode::BAD_REQUEST),
            ("a.wav%00.txt", StatusCode::BAD_REQUEST),
            ("evil.wav", StatusCode::FORBIDDEN),
            ("nothing.wav", StatusCode::NOT_FOUND),
            ("2026-03", StatusCode::NOT_FOUND),
            // One file at a time (several would be a tar).
            ("a.wav%40b.wav", StatusCode::BAD_REQUEST),
            ("", StatusCode::BAD_REQUEST),
            ("%40", StatusCode::BAD_REQUEST),
        ] {
            let resp = get(file.into(), vec![]).await;
            assert_eq!(resp.status(), want, "{file}");
            let body = resp.text().await.unwrap();
            assert!(
                !body.contains("secret") || body.contains("error"),
                "{file}: {body}"
            );
            assert!(!body.starts_with("secret"), "{file}");
        }
        let resp = c
            .get(srv.url("/admin/cdr/recording?file=a.wav&file=b.wav"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let log = srv.stop().await;
        assert!(
            log.contains("a symlink leads out of the directory"),
            "{log}"
        );
    }
}

#[tokio::test]
async fn without_a_session_the_cdr_page_is_closed() {
    for db in dbs().await {
        let (srv, _spool, cookie, c) = setup(&db).await;
        for path in [
            "/admin/cdr",
            "/admin/cdr?caller=1001",
            "/admin/cdr/export?format=csv",
        ] {
            let resp = c.get(srv.url(path)).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(resp.headers()[LOCATION], "/admin/login", "{path}");
        }
        let resp = c
            .get(srv.url(&format!(
                "/admin/cdr/recording?file={}",
                encode(&recording_of_call_4())
            )))
            .header("range", "bytes=0-9")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let v: Value = resp.json().await.unwrap();
        assert!(v["error"].as_str().unwrap().contains("not logged in"));
        // A session from another address is no session.
        let other = browser("127.0.0.2");
        let resp = other
            .get(srv.url("/admin/cdr"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.headers()[LOCATION], "/admin/login");
        srv.stop().await;
    }
}

/// Browser: log in, filter, open a call's legs, play a recording (loaded by
/// ranges), export CSV, screenshot. Calls of the last two days, so that the
/// first visit's week shows them; the recording is a generated WAV file.
#[tokio::test]
async fn the_cdr_page_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let db = last_db(dbs().await);
    let spool = tempfile::tempdir().unwrap();
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    // 48 calls over the last two days, more in office hours.
    let now = jiff::Timestamp::now().as_millisecond();
    let base = now - 47 * HOUR - now % HOUR;
    let mut cdrs: Vec<NewCdr> = Vec::new();
    let mut recorded = String::new();
    for i in 0..48usize {
        let hour = base + i as i64 * HOUR;
        let local = jiff::Timestamp::from_millisecond(hour)
            .unwrap()
            .to_zoned_datetime(tz.clone())
            .hour();
        let per_hour = if (8..18).contains(&local) {
            3 + i % 4
        } else {
            i % 2
        };
        for k in 0..per_hour {
            let call_ms = hour + (k as i64 * 11 + 3) * 60_000;
            let src = format!("10{:02}", (i + k) % 12);
            let dst = format!("20{:02}", (i * 3 + k) % 9);
            let session = format!("{}-{src}", call_ms / 1000);
            let billsec = if (i + k) % 4 == 0 {
                0
            } else {
                30 + ((i * 7 + k * 13) % 300) as u32
            };
            let legs = if (i + k) % 9 == 4 { 2 } else { 1 };
            for l in 0..legs {
                let mut c = leg(
                    cdrs.len(),
                    &session,
                    call_ms,
                    call_ms + l as i64 * 9000,
                    (&src, &dst),
                    billsec + l as u32,
                    &tz,
                );
                c.record.set("caller_name", format!("Ext {src}"));
                c.record
                    .set("userfield", if i % 5 == 0 { "Inbound" } else { "Internal" });
                if billsec > 0 {
                    c.record.set("dstanswer", dst.clone());
                }
                if src == "1001" && billsec > 0 && legs == 1 && recorded.is_empty() {
                    recorded = format!(
                        "{}/auto-{}-{src}-{dst}.wav@",
                        jiff::Timestamp::from_millisecond(call_ms)
                            .unwrap()
                            .to_zoned_datetime(tz.clone())
                            .strftime("%Y-%m"),
                        call_ms / 1000
                    );
                    c.record.set("recordfiles", recorded.clone());
                }
                cdrs.push(c);
            }
        }
    }
    assert!(!recorded.is_empty());
    let file = spool
        .path()
        .join("monitor")
        .join(recorded.trim_end_matches('@'));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, wav(3, 1)).unwrap();
    let srv = Server::start(
        &db,
        &format!(
            "[https_api]\npassword = \"pw\"\n[pbx]\ntimezone = \"Europe/Berlin\"\n[recordings]\nspool_dir = \"{}\"\n",
            spool.path().display()
        ),
    )
    .await;
    seed(&srv, &cdrs).await;
    let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{out}{err}");

    // What the script must find for caller 1001-1003: the cdrapi's entries
    // (newest first on the page) and its CSV export.
    let c = client(None);
    let api_cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let filter = [("caller", "1001-1003"), ("startTime", "2000-01-01")];
    let mut params = filter.to_vec();
    params.push(("format", "json"));
    let (_, _, body) = api(&srv, &c, request("cdrapi", &api_cookie, &params)).await;
    let mut sessions = cdrapi_sessions(&body);
    sessions.reverse();
    let mut params = filter.to_vec();
    params.push(("format", "csv"));
    let (_, _, csv) = api(&srv, &c, request("cdrExport", &api_cookie, &params)).await;
    let expected_csv = spool.path().join("expected.csv");
    std::fs::write(&expected_csv, &csv).unwrap();
    let grouped = cdrs
        .iter()
        .filter(|c| ["1001", "1002", "1003"].contains(&c.record.get("src")))
        .fold(
            std::collections::BTreeMap::<String, usize>::new(),
            |mut m, c| {
                *m.entry(c.record.get("session").to_owned()).or_default() += 1;
                m
            },
        );
    assert!(
        grouped.values().any(|n| *n > 1),
        "a grouped call among them"
    );

    let sessions = serde_json::to_string(&sessions).unwrap();
    let mut run = admin_browser(
        &srv,
        "cdr.mjs",
        &[
            ("CALLER", "1001-1003"),
            ("EXPECT_SESSIONS", sessions.as_str()),
            ("EXPECT_CSV", expected_csv.to_str().unwrap()),
            ("RECORDING", recorded.trim_end_matches('@')),
        ],
    );
    run.step("filtered", Duration::from_secs(90)).await;
    let seen = run.finish(Duration::from_secs(90)).await;
    assert!(
        seen.iter().any(|l| l.starts_with("range 206 bytes ")),
        "{seen:?}"
    );
    srv.stop().await;
}
