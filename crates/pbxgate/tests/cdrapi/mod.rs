//! `cdrapi` and `cdrExport` through the HTTPS API, on SQLite and PostgreSQL:
//! real calls on the rig read back in CSV, XML and JSON (parsed by a CSV
//! library, an XML parser and serde), and the rules of spec §4 on stored data.

use std::time::Duration;

use asterisk::ami::Ami;
use asterisk::testing::rig;
use serde_json::{Value, json};
use store::{CdrStore, ConnectOptions, NewCdr, Store};

use crate::calls::{CALLS, call, pbx_config, wait_connected, wait_for_cdrs};
use crate::kit::*;

/// A cdrapi request; (content type, body).
async fn cdrapi(
    srv: &Server,
    c: &reqwest::Client,
    cookie: &str,
    params: Value,
) -> (String, String) {
    let mut req = json!({"action": "cdrapi", "cookie": cookie});
    for (k, v) in params.as_object().unwrap() {
        req[k] = v.clone();
    }
    post(srv, c, req).await
}

async fn post(srv: &Server, c: &reqwest::Client, request: Value) -> (String, String) {
    let resp = c
        .post(srv.url("/api"))
        .json(&json!({ "request": request }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (ct, resp.text().await.unwrap())
}

fn csv_rows(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(body.as_bytes());
    let header = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// The flat records of a JSON answer: each entry's record, or its sub_cdr_N.
fn json_legs(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for e in v["cdr_root"].as_array().unwrap() {
        if e.get("main_cdr").is_some() {
            for (k, leg) in e.as_object().unwrap() {
                if k.starts_with("sub_cdr_") {
                    out.push(leg.clone());
                }
            }
        } else {
            out.push(e.clone());
        }
    }
    out
}

fn header() -> Vec<String> {
    ucm::cdr::FIELDS.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn real_calls_are_read_back_in_every_format() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let srv = Server::start(&db, &pbx_config(&rig, "")).await;
        wait_connected(&srv).await;
        let ami = Ami::start(rig.ami_config());
        call(&ami, "phone-1001", "1000", "\"Alice\" <1001>", 2).await;
        call(&ami, "phone-1001", "1098", "\"Alice\" <1001>", 1).await;
        // The carrier passes the caller's name on: one with a comma.
        call(&ami, "carrier", "5550100", "\"Bob, B.\" <+15551234567>", 2).await;
        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        wait_for_cdrs(&store, 3, Duration::from_secs(20)).await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();

        // JSON: every call, values strings, the answered one with its recording.
        let (ct, body) = cdrapi(&srv, &c, &cookie, json!({"format": "JSON"})).await;
        assert!(ct.starts_with("application/json"), "{ct}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            v.get("status").is_none() && v.get("response").is_none(),
            "{body}"
        );
        let legs = json_legs(&v);
        assert!(legs.len() >= 3, "{db:?}: {body}");
        for leg in &legs {
            assert_eq!(
                leg.as_object().unwrap().len(),
                43 + usize::from(leg.get("cdr").is_some())
            );
            assert!(
                leg.as_object().unwrap().values().all(Value::is_string),
                "{leg}"
            );
        }
        let answered = legs
            .iter()
            .find(|l| l["src"] == "1001" && l["dst"] == "1000")
            .unwrap_or_else(|| panic!("{body}"));
        assert_eq!(answered["disposition"], "ANSWERED");
        assert_eq!(answered["userfield"], "Internal");
        let rec = answered["recordfiles"].as_str().unwrap();
        assert!(
            std::path::Path::new(rig.get("MONITOR_DIR"))
                .join(rec.trim_end_matches('@'))
                .is_file(),
            "{rec}"
        );
        let inbound = legs
            .iter()
            .find(|l| l["src"] == "+15551234567")
            .unwrap_or_else(|| panic!("{body}"));
        assert_eq!(inbound["userfield"], "Inbound");
        assert_eq!(inbound["src_trunk_name"], "trunk");
        assert_eq!(inbound["caller_name"], "Bob, B.", "{inbound}");

        // CSV: the same records, quoting intact (clid holds quotes and a comma).
        let (ct, body) = cdrapi(
            &srv,
            &c,
            &cookie,
            json!({"format": "csv", "caller": "1001,+15551234567"}),
        )
        .await;
        assert!(ct.starts_with("text/csv"), "{ct}");
        let (head, rows) = csv_rows(&body);
        assert_eq!(head, header());
        assert_eq!(rows.len(), 3, "{db:?}: {body}");
        let src = head.iter().position(|h| h == "src").unwrap();
        let clid = head.iter().position(|h| h == "clid").unwrap();
        assert_eq!(rows.iter().filter(|r| r[src] == "1001").count(), 2);
        assert!(
            rows.iter().any(|r| r[clid] == "\"Bob, B.\" <+15551234567>"),
            "{body}"
        );

        // XML: well-formed, one element per record with the fields as children.
        let (ct, body) = cdrapi(
            &srv,
            &c,
            &cookie,
            json!({"format": "xml", "callee": "1098"}),
        )
        .await;
        assert!(ct.starts_with("application/xml"), "{ct}");
        let doc = roxmltree::Document::parse(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let dispositions: Vec<&str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("disposition"))
            .filter_map(|n| n.text())
            .collect();
        assert_eq!(dispositions, ["BUSY"], "{body}");

        // Filters on real data: billsec bounds, answeredby, time window.
        let (_, body) = cdrapi(&srv, &c, &cookie, json!({"format": "json", "minDur": 1})).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            json_legs(&v).iter().all(|l| l["disposition"] == "ANSWERED"),
            "{body}"
        );
        assert_eq!(json_legs(&v).len(), 2, "{body}");
        let (_, body) = cdrapi(
            &srv,
            &c,
            &cookie,
            json!({"format": "json", "answeredby": "1000"}),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json_legs(&v).len(), 2, "{body}");
        let (_, body) = cdrapi(
            &srv,
            &c,
            &cookie,
            json!({"format": "json", "startTime": "2000-01-01T00:00:00", "endTime": "2001-01-01T00:00"}),
        )
        .await;
        assert_eq!(body, "{\"cdr_root\":[]}", "nothing in 2000");
        let (_, body) = cdrapi(
            &srv,
            &c,
            &cookie,
            json!({"format": "json", "startTime": (jiff::Timestamp::now().as_second() - 600).to_string(), "endTime": "now"}),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json_legs(&v).len(), legs.len(), "last ten minutes: {body}");

        // The export gives the same records as one page.
        let (ct, body) = post(
            &srv,
            &c,
            json!({"action": "cdrExport", "cookie": cookie, "format": "csv"}),
        )
        .await;
        assert!(ct.starts_with("text/csv"), "{ct}");
        assert_eq!(csv_rows(&body).1.len(), legs.len());

        ami.shutdown();
        store.close().await;
        srv.stop().await;
    }
}

pub const T0: i64 = 1_774_700_000_000; // 2026-03-28 12:13:20 UTC

/// A stored leg: `session` groups legs, `start_ms` in UTC.
pub fn leg(
    n: usize,
    session: &str,
    call_ms: i64,
    start_ms: i64,
    (src, dst): (&str, &str),
    billsec: u32,
    tz: &jiff::tz::TimeZone,
) -> NewCdr {
    let mut r = ucm::cdr::CdrRecord::new();
    let local = jiff::Timestamp::from_millisecond(start_ms)
        .unwrap()
        .to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    r.set("src", src);
    r.set("dst", dst);
    r.set("start", local);
    r.set("billsec", billsec.to_string());
    r.set("duration", (billsec + 3).to_string());
    r.set(
        "disposition",
        if billsec > 0 { "ANSWERED" } else { "NO ANSWER" },
    );
    r.set("session", session);
    r.set("action_type", "DIAL");
    r.set("lastdata", "PJSIP/1000,60,b(x^s^1)");
    NewCdr {
        dedupe_key: format!("t{n}"),
        start_ms,
        call_ms,
        end_ms: start_ms + 1000 * (i64::from(billsec) + 3),
        record: r,
    }
}

pub async fn seed(srv: &Server, cdrs: &[NewCdr]) {
    let store = Store::connect(&srv.db_url, &ConnectOptions::default())
        .await
        .unwrap();
    store.insert_cdrs(cdrs).await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn the_rules_of_the_ucm_cdr_api_hold_on_stored_data() {
    let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    // Around the DST change of 2026-03-29 (02:00 CET → 03:00 CEST): one call
    // an hour from 2026-03-28 12:13 UTC; call 3 has three legs.
    let mut cdrs = Vec::new();
    for i in 0..30usize {
        let call_ms = T0 + i as i64 * 3_600_000;
        let session = format!("{}{i:02}-10{i:02}", call_ms / 1000);
        let legs = if i == 3 { 3 } else { 1 };
        for l in 0..legs {
            cdrs.push(leg(
                cdrs.len(),
                &session,
                call_ms,
                call_ms + l as i64 * 2000,
                (&format!("10{i:02}"), &format!("20{:02}", (i + l) % 7)),
                (i as u32 % 5) * 10 + l as u32,
                &berlin,
            ));
        }
    }
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[pbx]\ntimezone = \"Europe/Berlin\"\n[cdrapi]\nexport_page = 4\n",
        )
        .await;
        seed(&srv, &cdrs).await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let get = |params: Value| {
            let (srv, c, cookie) = (&srv, &c, &cookie);
            async move { cdrapi(srv, c, cookie, params).await }
        };

        // §4.4: invalid input → the empty container of the requested format.
        let empty_csv = format!("{}\n", header().join(","));
        for (params, want) in [
            (json!({"caller": "10 01"}), empty_csv.as_str()),
            (
                json!({"format": "json", "caller": "1000,,1001"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "caller": ",1000"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "callee": "5300-5301-"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "numRecords": "ten"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "offset": "-1"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "minDur": "1.5"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "startTime": "2026-02-30T00:00"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "timeFilterType": "Middle"}),
                "{\"cdr_root\":[]}",
            ),
            (
                json!({"format": "json", "caller": ["1000", {"x": 1}]}),
                "{\"cdr_root\":[]}",
            ),
            // An invalid format: the CSV header alone (§4.2, §4.4).
            (json!({"format": "yaml"}), empty_csv.as_str()),
            (
                json!({"format": "jsonp", "caller": "1000"}),
                empty_csv.as_str(),
            ),
        ] {
            let (ct, body) = get(params.clone()).await;
            assert_eq!(body, want, "{db:?} {params}");
            if want == empty_csv {
                assert!(ct.starts_with("text/csv"), "{params}: {ct}");
            }
        }
        let (ct, body) = get(json!({"format": "xml", "caller": "a b"})).await;
        assert!(ct.starts_with("application/xml"));
        let doc = roxmltree::Document::parse(&body).unwrap();
        assert_eq!(
            doc.root_element()
                .children()
                .filter(|n| n.is_element())
                .count(),
            0,
            "{body}"
        );

        // Entries: 30 calls, call 3 grouped with a main_cdr summing its legs.
        let (_, body) = get(json!({"format": "json"})).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let entries = v["cdr_root"].as_array().unwrap();
        assert_eq!(entries.len(), 30, "{db:?}");
        let grouped = &entries[3];
        let keys: Vec<&str> = grouped
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["cdr", "main_cdr", "sub_cdr_1", "sub_cdr_2", "sub_cdr_3"]
        );
        let main = &grouped["main_cdr"];
        assert_eq!(main["billsec"], "93", "30 + 31 + 32: {main}"); // i=3: (3 % 5) * 10 + leg
        assert_eq!(main["duration"], "102", "33 + 34 + 35");
        assert_eq!(main["src"], "1003");
        assert_eq!(main["AcctId"], "");
        assert_eq!(main["session"], grouped["cdr"]);
        assert_eq!(grouped["sub_cdr_1"]["start"], main["start"]);
        // Ordered by start.
        let starts: Vec<&str> = entries
            .iter()
            .map(|e| e.get("main_cdr").unwrap_or(e)["start"].as_str().unwrap())
            .collect();
        let mut sorted = starts.clone();
        sorted.sort();
        assert_eq!(starts, sorted);

        // numRecords / offset count entries (a grouped call is one).
        let (_, body) = get(json!({"format": "json", "numRecords": 2, "offset": "2"})).await;
        let page: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(page["cdr_root"].as_array().unwrap(), &entries[2..4]);
        let (_, body) = get(json!({"format": "json", "numRecords": 0})).await;
        assert_eq!(body, "{\"cdr_root\":[]}");
        let (_, body) = get(json!({"format": "csv", "numRecords": 1, "offset": 3})).await;
        assert_eq!(
            csv_rows(&body).1.len(),
            3,
            "the three legs of the grouped call"
        );

        // Time zones: times are shown in Berlin time; naive filter times are
        // Berlin time, offsets are honoured. Calls 13 and 14 straddle the
        // switch to CEST: calls 12 and 13, at 01:13 CET and 03:13 CEST.
        let (_, body) = get(json!({"format": "json", "startTime": "2026-03-29T01:00", "endTime": "2026-03-29T03:30"})).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let shown: Vec<&str> = v["cdr_root"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["start"].as_str().unwrap())
            .collect();
        assert_eq!(
            shown,
            ["2026-03-29 01:13:20", "2026-03-29 03:13:20"],
            "{db:?}"
        );
        let (_, body) = get(json!({"format": "json", "startTime": "2026-03-29T00:00:00Z", "endTime": "2026-03-29T00:30:00+00:00"})).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let shown: Vec<&str> = v["cdr_root"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["start"].as_str().unwrap())
            .collect();
        assert_eq!(shown, ["2026-03-29 01:13:20"], "00:13 UTC is 01:13 CET");
        // Date only, space instead of T, epoch; 02:30 does not exist that
        // night and is read as 02:30 CET (01:30 UTC).
        let (_, a) = get(
            json!({"format": "json", "startTime": "2026-03-29", "endTime": "2026-03-29 02:30:00"}),
        )
        .await;
        let (_, b) = get(
            json!({"format": "json", "startTime": "1774738800", "endTime": "2026-03-29T01:30:00Z"}),
        )
        .await;
        assert_eq!(a, b, "2026-03-29 00:00 Berlin = 1774738800");
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_eq!(
            v["cdr_root"].as_array().unwrap().len(),
            3,
            "calls 11-13: {a}"
        );

        // Early-firmware profile on another server over the same data.
        let old = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[pbx]\ntimezone = \"Europe/Berlin\"\n[cdrapi]\nprofile = \"ucm6100\"\n",
        )
        .await;
        let cookie_old = old.login(&c, "cdrapi", "pw").await.unwrap();
        let (_, body) = cdrapi(&old, &c, &cookie_old, json!({"format": "json"})).await;
        let v: Value = serde_json::from_str(&body).unwrap();
        let flat = v["cdr"].as_array().unwrap_or_else(|| panic!("{body}"));
        assert_eq!(flat.len(), 32, "every leg its own entry");
        assert!(flat.iter().all(|e| e.as_object().unwrap().len() == 22));
        let (_, body) = cdrapi(
            &old,
            &c,
            &cookie_old,
            json!({"format": "json", "numRecords": 1, "offset": 4}),
        )
        .await;
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["cdr"][0], flat[4], "legs are counted");
        let (_, body) = cdrapi(&old, &c, &cookie_old, json!({"numRecords": 0})).await;
        assert_eq!(body.trim_end().split(',').count(), 22, "{body}");
        old.stop().await;

        // cdrExport: everything, in pages of 4 entries underneath, the same
        // bytes as one big page would give.
        let (ct, body) = post(
            &srv,
            &c,
            json!({"action": "cdrExport", "cookie": cookie, "format": "json"}),
        )
        .await;
        assert!(ct.starts_with("application/json"));
        let export: Value = serde_json::from_str(&body).unwrap();
        let all = v_all(&get).await;
        assert_eq!(export, all);
        // offset counts entries; the grouped call 3 (three legs) spans the
        // pages of four legs read underneath.
        for offset in [2, 3, 4, 29, 30, 31] {
            let (_, body) = post(
                &srv,
                &c,
                json!({"action": "cdrExport", "cookie": cookie, "format": "json", "offset": offset}),
            )
            .await;
            let v: Value = serde_json::from_str(&body).unwrap();
            let want: Vec<Value> = all["cdr_root"]
                .as_array()
                .unwrap()
                .iter()
                .skip(offset)
                .cloned()
                .collect();
            assert_eq!(
                v["cdr_root"].as_array().unwrap(),
                &want,
                "offset {offset} on {db:?}"
            );
        }
        let (_, body) = post(&srv, &c, json!({"action": "cdrExport", "cookie": cookie, "format": "csv", "caller": "1000-1009"})).await;
        assert_eq!(
            csv_rows(&body).1.len(),
            12,
            "calls 0-9, call 3 with three legs"
        );
        // A NUL (PostgreSQL refuses it even as a parameter) matches nothing
        // on both backends, in pages and exports alike.
        for action in ["cdrapi", "cdrExport"] {
            let (_, body) = post(
                &srv,
                &c,
                json!({"action": action, "cookie": cookie, "format": "json", "callerName": "a\0b"}),
            )
            .await;
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v, json!({"cdr_root": []}), "{action} on {db:?}");
        }
        // Without a session cookie: refused like any action.
        let (_, body) = post(&srv, &c, json!({"action": "cdrExport", "format": "csv"})).await;
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["status"], -6);
        srv.stop().await;
    }
}

async fn v_all<F, Fut>(get: &F) -> Value
where
    F: Fn(Value) -> Fut,
    Fut: std::future::Future<Output = (String, String)>,
{
    let (_, body) = get(json!({"format": "json"})).await;
    serde_json::from_str(&body).unwrap()
}
