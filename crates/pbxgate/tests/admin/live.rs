//! The Live calls page: its endpoints (session, CSRF token, errors), the
//! Server-Sent Events stream, and — on the rig — held inbound calls accepted
//! and refused, and channels hung up, through the page's endpoints and by
//! clicking in a real browser.

use std::time::Duration;

use asterisk::ami::Ami;
use asterisk::testing::{Rig, rig};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE};
use serde_json::{Value, json};
use store::{AuditStore, CallDecision, DecisionStore, Store};

use super::admin_browser;
use super::{PASSWORD, log_in, open_store, set_cookie, set_password};
pub(super) use crate::callcontrol::cdr_of;
pub(super) use crate::callcontrol::inbound;
pub(super) use crate::calls::connected_ami;
use crate::calls::{CALLS, call, pbx_config, wait_connected};
use crate::kit::*;

/// A logged-in admin: the session cookie (`pbxgate_admin=…`) and the page's CSRF token.
pub(crate) struct AdminClient {
    pub c: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

/// The `content` of `<meta name="csrf">`.
fn csrf_meta(html: &str) -> String {
    let at = html.find("<meta name=\"csrf\" content=\"").unwrap()
        + "<meta name=\"csrf\" content=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// An HTTPS client without a total timeout (event streams stay open).
fn streaming_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address("127.0.0.1".parse::<std::net::IpAddr>().unwrap())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Sets the `admin` password and logs in.
pub(crate) async fn admin_login(srv: &Server) -> AdminClient {
    let (code, out, err) = set_password(srv, None, &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    let c = streaming_client();
    let resp = log_in(srv, &c, "admin", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (cookie, _) = set_cookie(&resp, "pbxgate_admin").unwrap();
    let html = c
        .get(srv.url("/admin/live"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    AdminClient {
        csrf: csrf_meta(&html),
        c,
        cookie,
    }
}

impl AdminClient {
    pub async fn get(&self, srv: &Server, path: &str) -> reqwest::Response {
        self.c
            .get(srv.url(path))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, srv: &Server, path: &str) -> Value {
        let r = self.get(srv, path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.json().await.unwrap()
    }

    /// POSTs `body` with the session and `csrf` (none: no header).
    pub async fn post(
        &self,
        srv: &Server,
        path: &str,
        body: &Value,
        csrf: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .c
            .post(srv.url(path))
            .header(COOKIE, &self.cookie)
            .json(body);
        if let Some(t) = csrf {
            req = req.header("X-CSRF-Token", t);
        }
        req.send().await.unwrap()
    }

    /// POSTs `{"channel": channel}` to `/admin/api/live/<action>` with the token:
    /// the HTTP status and the JSON answer.
    pub async fn act(&self, srv: &Server, action: &str, channel: &str) -> (StatusCode, Value) {
        let r = self
            .post(
                srv,
                &format!("/admin/api/live/{action}"),
                &json!({ "channel": channel }),
                Some(&self.csrf),
            )
            .await;
        let status = r.status();
        (status, r.json().await.unwrap())
    }
}

/// An open `/admin/api/live/events` stream.
pub(super) struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    pub async fn open(srv: &Server, admin: &AdminClient) -> Events {
        let resp = admin.get(srv, "/admin/api/live/events").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event (name, data), comments skipped.
    pub async fn next(&mut self, within: Duration) -> (String, String) {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (String::new(), Vec::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if !name.is_empty() || !data.is_empty() {
                    return (name, data.join("\n"));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(until, self.resp.chunk())
                .await
                .expect("no event in time")
                .unwrap()
                .expect("the stream ended");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Snapshots until one satisfies `pred`.
    pub async fn until(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = tokio::time::Instant::now() + within;
        let mut last = Value::Null;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "{what}: not seen; last snapshot: {last:#}");
            let (name, data) = match tokio::time::timeout(left, self.next(left)).await {
                Ok(e) => e,
                Err(_) => panic!("{what}: not seen; last snapshot: {last:#}"),
            };
            assert_eq!(name, "snapshot", "{data}");
            last = serde_json::from_str(&data).unwrap();
            if pred(&last) {
                return last;
            }
        }
    }
}

fn held<'a>(snap: &'a Value, caller: &str) -> Option<&'a Value> {
    snap["held"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["caller"] == caller)
}

#[tokio::test]
async fn the_live_endpoints_need_a_session_and_the_csrf_token() {
    for db in dbs().await {
        let srv = Server::start(&db, "[https_api]\npassword = \"pw\"\n").await;
        let anon = streaming_client();

        // No session: the page redirects, the endpoints answer 401.
        let r = anon.get(srv.url("/admin/live")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/admin/login");
        for path in ["/admin/api/live", "/admin/api/live/events"] {
            let r = anon.get(srv.url(path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
            let body: Value = r.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("not logged in"));
        }
        for action in ["accept", "refuse", "hangup"] {
            let r = anon
                .post(srv.url(&format!("/admin/api/live/{action}")))
                .header("X-CSRF-Token", "x")
                .json(&json!({"channel": "PJSIP/trunk-00000001"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{action}");
        }

        let admin = admin_login(&srv).await;
        // The page: its script from /admin/assets, no inline script or style.
        let r = admin.get(&srv, "/admin/live").await;
        assert_eq!(r.status(), StatusCode::OK);
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let html = r.text().await.unwrap();
        assert!(html.contains("<script src=\"/admin/assets/live.js\" defer></script>"));
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "{html}"
        );
        for id in ["held", "bridged", "unbridged", "live-error"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        let js = admin.get(&srv, "/admin/assets/live.js").await;
        assert_eq!(js.status(), StatusCode::OK);
        assert!(js.text().await.unwrap().contains("EventSource"));

        // Without or with a wrong CSRF token: 403, whatever the action.
        for action in ["accept", "refuse", "hangup"] {
            let path = format!("/admin/api/live/{action}");
            let body = json!({"channel": "PJSIP/trunk-00000001"});
            for token in [None, Some("0".repeat(64).as_str()), Some("")] {
                let r = admin.post(&srv, &path, &body, token).await;
                assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action} {token:?}");
                let e: Value = r.json().await.unwrap();
                assert!(e["error"].as_str().unwrap().contains("CSRF"), "{e}");
            }
        }

        // With the token: bad bodies are refused before anything else.
        for body in [
            json!({}),
            json!({"channel": ""}),
            json!({"channel": "a b"}),
            json!({"channel": 5}),
        ] {
            let r = admin
                .post(&srv, "/admin/api/live/hangup", &body, Some(&admin.csrf))
                .await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        }
        // No Asterisk configured: said so, clearly.
        for action in ["accept", "refuse", "hangup"] {
            let (status, e) = admin.act(&srv, action, "PJSIP/trunk-00000001").await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{action}: {e}");
            assert!(
                e["error"]
                    .as_str()
                    .unwrap()
                    .contains("no connection to Asterisk configured"),
                "{e}"
            );
        }
        let snap = admin.get_json(&srv, "/admin/api/live").await;
        assert_eq!(snap["asterisk"]["configured"], false, "{snap}");
        assert_eq!(snap["asterisk"]["ami"], "disabled");
        assert_eq!(snap["call_control"]["available"], false);
        assert!(
            snap["error"]
                .as_str()
                .unwrap()
                .contains("no connection to Asterisk")
        );
        assert_eq!(snap["held"], json!([]));
        assert_eq!(snap["bridged"], json!([]));

        // The stream starts with a snapshot.
        let mut events = Events::open(&srv, &admin).await;
        let (name, data) = events.next(Duration::from_secs(5)).await;
        assert_eq!(name, "snapshot");
        let first: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(first["asterisk"], snap["asterisk"]);

        // A stream left open does not hold up shutdown (30 s grace).
        let started = std::time::Instant::now();
        srv.stop().await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stopped after {:?}",
            started.elapsed()
        );
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(Some(_)) = events.resp.chunk().await {}
        })
        .await;
        assert!(ended.is_ok(), "the stream ended with pbxgate");
    }
}

#[tokio::test]
async fn without_a_reachable_asterisk_the_live_page_says_so() {
    let db = dbs().await.remove(0);
    // AMI nobody answers, no ARI.
    let srv = Server::start(
        &db,
        "[https_api]\npassword = \"pw\"\n[asterisk]\nami_address = \"127.0.0.1:9\"\nami_secret = \"x\"\n",
    )
    .await;
    let admin = admin_login(&srv).await;
    let snap = admin.get_json(&srv, "/admin/api/live").await;
    assert_eq!(snap["asterisk"]["configured"], true);
    assert_ne!(snap["asterisk"]["ami"], "up");
    assert!(snap["error"].as_str().unwrap().contains("AMI is"), "{snap}");
    let (status, e) = admin.act(&srv, "hangup", "PJSIP/1000-00000001").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(e["status"], -7, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("not connected"),
        "{e}"
    );
    let (status, e) = admin.act(&srv, "accept", "PJSIP/trunk-00000001").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(e["error"].as_str().unwrap().contains("ARI"), "{e}");
    // An action that reached Asterisk's side is in the audit trail, failed, as the admin.
    let store = open_store(&srv).await;
    let audit = store.recent_audit(50).await.unwrap();
    store.close().await;
    assert!(
        audit.iter().any(|e| e.event == "admin-call"
            && e.username == "admin"
            && e.detail == "hangup PJSIP/1000-00000001"
            && e.result.starts_with("failed: Asterisk: not connected")),
        "{audit:?}"
    );
    srv.stop().await;
}

// ---------------------------------------------------------------- on the rig

/// The rig's configuration with call control on for `crm`, held calls
/// accepted by the timer after `timeout_secs`.
fn cc_config(rig: &Rig, timeout_secs: u32) -> String {
    pbx_config(rig, "").replace(
        "[https_api]\npassword = \"pw\"\n",
        &format!(
            "[https_api]\nusername = \"crm\"\npassword = \"pw\"\ncall_control = true\n\
             [call_control]\ntimeout_secs = {timeout_secs}\n"
        ),
    )
}

/// Ends every call on the rig and waits until no channel is left.
pub(super) async fn hang_up_everything(ami: &Ami) {
    let _ = ami.action("Hangup", &[("Channel", "/.*/")]).await;
    wait_until(
        "no channel left on the rig",
        Duration::from_secs(10),
        async || {
            let r = ami.action("CoreShowChannels", &[]).await.unwrap();
            let left: Vec<&str> = r
                .events
                .iter()
                .filter(|e| e.event() == Some("CoreShowChannel"))
                .map(|e| e.get("Channel").unwrap_or(""))
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
}

/// The decision recorded for the call on `channel`, or from caller
/// `channel` (recording is asynchronous).
pub(super) async fn decision(store: &Store, channel: &str) -> CallDecision {
    wait_until(
        format!("a decision recorded for {channel}"),
        Duration::from_secs(10),
        async || {
            let all = store.recent_decisions(1000).await.unwrap();
            let n = all.len();
            all.into_iter()
                .find(|d| d.channel == channel || d.caller == channel)
                .ok_or(format!("{n} decisions of other calls"))
        },
    )
    .await
}

#[tokio::test]
async fn held_calls_and_channels_are_pushed_live_and_acted_on_through_the_page_endpoints() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let ami = connected_ami(&rig).await;
    for db in dbs().await {
        hang_up_everything(&ami).await;
        let srv = Server::start(&db, &cc_config(&rig, 20)).await;
        wait_connected(&srv).await;
        let store = open_store(&srv).await;
        let admin = admin_login(&srv).await;
        let mut events = Events::open(&srv, &admin).await;
        let first = events
            .until("AMI and ARI up", Duration::from_secs(10), |s| {
                s["asterisk"]["ami"] == "up" && s["asterisk"]["ari"] == "up"
            })
            .await;
        assert_eq!(
            first["call_control"],
            json!({"available": true, "enabled": true})
        );
        assert_eq!(first["error"], Value::Null);

        // A held call is pushed with its DID, trunk and time left.
        inbound(&ami, "5550100", "+15557100001", 30_000, 2).await;
        let snap = events
            .until("the held call", Duration::from_secs(10), |s| {
                held(s, "+15557100001").is_some()
            })
            .await;
        let h = held(&snap, "+15557100001").unwrap().clone();
        let ch = h["channel"].as_str().unwrap().to_owned();
        assert!(ch.starts_with("PJSIP/trunk-"), "{h}");
        assert_eq!(
            (h["did"].as_str(), h["trunk"].as_str()),
            (Some("5550100"), Some("trunk")),
            "{h}"
        );
        let left = h["remaining_ms"].as_u64().unwrap();
        assert!((15_000..=20_000).contains(&left), "{h}");
        assert_eq!(h["deciding"], false);

        // Without the token nothing happens; with it the call is accepted as admin:admin.
        let r = admin
            .post(
                &srv,
                "/admin/api/live/accept",
                &json!({"channel": ch}),
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let again = admin.get_json(&srv, "/admin/api/live").await;
        assert!(held(&again, "+15557100001").is_some(), "{again}");
        let (status, body) = admin.act(&srv, "accept", &ch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        events
            .until(
                "the accepted call gone from the held list",
                Duration::from_secs(5),
                |s| held(s, "+15557100001").is_none(),
            )
            .await;
        let cdr = cdr_of(&store, "+15557100001").await;
        assert_eq!(
            (cdr.get("disposition"), cdr.get("dst")),
            ("ANSWERED", "1000")
        );
        let d = decision(&store, &ch).await;
        assert_eq!(
            (d.outcome.as_str(), d.decided_by.as_str()),
            ("accepted", "admin:admin")
        );
        // Deciding again, either way: a clear error.
        for action in ["accept", "refuse"] {
            let (status, e) = admin.act(&srv, action, &ch).await;
            assert_eq!(status, StatusCode::CONFLICT, "{e}");
            assert!(
                e["error"].as_str().unwrap().contains("already accepted"),
                "{e}"
            );
            assert_eq!(e["status"], -43);
        }
        // An unknown channel.
        let (status, e) = admin.act(&srv, "accept", "PJSIP/trunk-7fffffff").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("no inbound call is held"),
            "{e}"
        );

        // Refused: the caller is rejected.
        inbound(&ami, "5550101", "+15557100002", 30_000, 2).await;
        let snap = events
            .until("the second held call", Duration::from_secs(10), |s| {
                held(s, "+15557100002").is_some()
            })
            .await;
        let ch2 = held(&snap, "+15557100002").unwrap()["channel"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = admin.act(&srv, "refuse", &ch2).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let cdr = cdr_of(&store, "+15557100002").await;
        assert_ne!(cdr.get("disposition"), "ANSWERED");
        assert_eq!(cdr.get("lastapp"), "Stasis");
        let d = decision(&store, &ch2).await;
        assert_eq!(
            (d.outcome.as_str(), d.decided_by.as_str()),
            ("refused", "admin:admin")
        );

        // A bridged call appears; hung up through the page, it disappears.
        call(&ami, "phone-1001", "1000", "\"Live\" <1001>", 60).await;
        let pair = |s: &Value| {
            s["bridged"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| {
                    b["channel1"].as_str().unwrap().starts_with("PJSIP/1001-")
                        && b["channel2"].as_str().unwrap().starts_with("PJSIP/1000-")
                })
                .cloned()
        };
        let snap = events
            .until("the bridged call", Duration::from_secs(15), |s| {
                pair(s).is_some()
            })
            .await;
        let b = pair(&snap).unwrap();
        assert!(b["bridged_secs"].as_i64().unwrap() < 30, "{b}");
        let callee = b["channel2"].as_str().unwrap().to_owned();
        let (status, body) = admin.act(&srv, "hangup", &callee).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        events
            .until("the hung-up call gone", Duration::from_secs(10), |s| {
                pair(s).is_none()
            })
            .await;
        let (status, e) = admin.act(&srv, "hangup", &callee).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
        assert!(
            e["error"].as_str().unwrap().contains("no such channel"),
            "{e}"
        );

        // A call that ends by itself disappears too.
        call(&ami, "phone-1001", "1000", "\"Short\" <1001>", 2).await;
        events
            .until("the short call", Duration::from_secs(15), |s| {
                pair(s).is_some()
            })
            .await;
        events
            .until("the short call ended", Duration::from_secs(15), |s| {
                pair(s).is_none() && s["unbridged"].as_array().unwrap().is_empty()
            })
            .await;

        // The status page agrees, and the audit trail names the admin.
        let st = admin.get_json(&srv, "/admin/api/status").await;
        for conn in ["ami", "ari"] {
            let c = &st["asterisk"][conn];
            assert_eq!(
                (c["state"].as_str(), c["up"].as_bool()),
                (Some("up"), Some(true)),
                "{c}"
            );
            assert!(c["since_ms"].as_i64().unwrap() <= st["now_ms"].as_i64().unwrap());
        }
        let newest = &st["ingest"]["newest_cdr"];
        assert!(newest["age_secs"].as_i64().unwrap() < 120, "{st:#}");
        assert_eq!(st["ingest"]["running"], true);
        let audit = store.recent_audit(50).await.unwrap();
        for detail in [
            format!("accept {ch}"),
            format!("refuse {ch2}"),
            format!("hangup {callee}"),
        ] {
            assert!(
                audit
                    .iter()
                    .any(|e| e.event == "admin-call" && e.detail == detail && e.result == "ok"),
                "{detail}: {audit:?}"
            );
        }
        store.close().await;
        srv.stop().await;
    }
    hang_up_everything(&ami).await;
    ami.shutdown();
}

/// Browser: a held call shown with its countdown, hang-up, accept and refuse
/// by clicking, an error when the call was decided elsewhere meanwhile, and a
/// bridged call appearing and disappearing without a reload.
#[tokio::test]
async fn the_live_calls_page_works_in_a_real_browser() {
    let Some(rig) = rig() else { return };
    if !browser_available() {
        return;
    }
    let _one_at_a_time = CALLS.lock().await;
    let ami = connected_ami(&rig).await;
    hang_up_everything(&ami).await;
    let db = last_db(dbs().await);
    let srv = Server::start(&db, &cc_config(&rig, 40)).await;
    wait_connected(&srv).await;
    let store = open_store(&srv).await;
    let admin = admin_login(&srv).await;
    let api = client(None);
    let crm = srv.login(&api, "crm", "pw").await.unwrap();
    let (accept, refuse, race) = ("+15557200001", "+15557200002", "+15557200003");
    let mut run = admin_browser(
        &srv,
        "live.mjs",
        &[
            ("ACCEPT_CALLER", accept),
            ("REFUSE_CALLER", refuse),
            ("RACE_CALLER", race),
        ],
    );
    run.step("ready", Duration::from_secs(60)).await;

    // A bridged call and a held call at once.
    call(&ami, "phone-1001", "1000", "\"Live\" <1001>", 120).await;
    inbound(&ami, "5550100", accept, 60_000, 2).await;
    run.step("hung-up", Duration::from_secs(40)).await;
    wait_until(
        "the bridged call to end",
        Duration::from_secs(5),
        async || {
            let left = ami.action("CoreShowChannels", &[]).await.unwrap();
            let up: Vec<&str> = left
                .events
                .iter()
                .filter_map(|e| e.get("Channel"))
                .filter(|c| c.starts_with("PJSIP/1000-") || c.starts_with("PJSIP/1001-"))
                .collect();
            if up.is_empty() {
                Ok(())
            } else {
                Err(format!("the bridged call is still up: {up:?}"))
            }
        },
    )
    .await;
    run.step("accepted", Duration::from_secs(30)).await;
    let cdr = cdr_of(&store, accept).await;
    assert_eq!(
        (cdr.get("disposition"), cdr.get("dst")),
        ("ANSWERED", "1000")
    );
    let d = decision(&store, accept).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("accepted", "admin:admin")
    );

    inbound(&ami, "5550100", refuse, 60_000, 2).await;
    run.step("refused", Duration::from_secs(30)).await;
    let cdr = cdr_of(&store, refuse).await;
    assert_ne!(cdr.get("disposition"), "ANSWERED");
    assert_eq!(cdr.get("lastapp"), "Stasis");
    let d = decision(&store, refuse).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("refused", "admin:admin")
    );

    // The page's Accept waits in the browser while crm accepts through the API.
    inbound(&ami, "5550100", race, 60_000, 2).await;
    run.step("accept-pending", Duration::from_secs(30)).await;
    let snap = admin.get_json(&srv, "/admin/api/live").await;
    let ch = held(&snap, race).unwrap()["channel"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = srv
        .api(
            &api,
            json!({"action": "acceptCall", "cookie": crm, "channel": ch}),
        )
        .await;
    assert_eq!(r["status"], 0, "{r}");
    run.step("already-decided", Duration::from_secs(30)).await;
    let d = decision(&store, &ch).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("accepted", "crm")
    );

    // A call that ends by itself comes and goes on the page.
    call(&ami, "phone-1001", "1000", "\"Short\" <1001>", 3).await;
    run.step("bridged-ended", Duration::from_secs(40)).await;
    run.finish(Duration::from_secs(30)).await;
    store.close().await;
    srv.stop().await;
    hang_up_everything(&ami).await;
    ami.shutdown();
}
