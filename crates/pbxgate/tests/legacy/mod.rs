//! End-to-end tests of the old API listener (`[https_api_old]`): HTTP Digest
//! (computed here, by a small client of this file) and Basic, stale and
//! replayed nonces, the login restriction, permitted IPs, the §4.4 rules of
//! `GET /cdrapi` on SQLite and PostgreSQL, `/recapi`, `/pmsapi`'s switch,
//! certificates, and SIGHUP applying the section while a new-API session
//! keeps working.

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use store::{AuditStore, ConnectOptions, Store};

use crate::cdrapi::{T0, leg, seed};
use crate::kit::*;

const OLD_PW: &str = "old-secret";

/// The `[https_api_old]` section: enabled on 127.0.0.1:`port` with
/// [`OLD_PW`], permitting `permit`; `extra` lines are added to it. The
/// marker line lets [`hup`] rewrite everything after it.
fn old_section(port: u16, permit: &[&str], extra: &str) -> String {
    let permit: Vec<String> = permit.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "# legacy\n[https_api]\npassword = \"pw\"\n[https_api_old]\nenable = true\n\
         tls_bind_address = \"127.0.0.1:{port}\"\nusername = \"cdrapi\"\npassword = \"{OLD_PW}\"\n\
         permitted_ips = [{}]\n{extra}",
        permit.join(", ")
    )
}

async fn first_db() -> store::testing::TestDb {
    dbs().await.into_iter().next().unwrap()
}

/// A Digest challenge, read the way clients read it.
#[derive(Debug, Clone)]
struct Challenge {
    realm: String,
    nonce: String,
    opaque: String,
    qop: String,
    algorithm: String,
    stale: bool,
}

/// `name=value` / `name="value"` pairs of a challenge or header.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches([',', ' ']);
        let Some((name, after)) = rest.split_once('=') else {
            break;
        };
        let (value, after) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap();
            (q[..end].to_owned(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.push((name.trim().to_ascii_lowercase(), value));
        rest = after;
    }
    out
}

fn challenge_of(header: &str) -> Challenge {
    let body = header
        .strip_prefix("Digest ")
        .unwrap_or_else(|| panic!("{header}"));
    let p = params(body);
    let get = |k: &str| {
        p.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Challenge {
        realm: get("realm"),
        nonce: get("nonce"),
        opaque: get("opaque"),
        qop: get("qop"),
        algorithm: get("algorithm"),
        stale: get("stale") == "true",
    }
}

fn www_authenticate(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The Authorization a Digest client sends: `nc` `Some` for qop=auth,
/// `None` for an RFC 2069 client.
fn digest(
    user: &str,
    pw: &str,
    method: &str,
    uri: &str,
    ch: &Challenge,
    nc: Option<u32>,
) -> String {
    let ha1 = md5_hex(&format!("{user}:{}:{pw}", ch.realm));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match nc {
        Some(nc) => {
            let nc = format!("{nc:08x}");
            let cnonce = "0a4f113b";
            let response = md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce));
            format!(
                "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
                 algorithm=MD5, response=\"{response}\", opaque=\"{}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
                ch.realm, ch.nonce, ch.opaque
            )
        }
        None => {
            let response = md5_hex(&format!("{ha1}:{}:{ha2}", ch.nonce));
            format!(
                "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\"",
                ch.realm, ch.nonce
            )
        }
    }
}

/// A client of the old listener.
pub(crate) struct Old {
    c: reqwest::Client,
    port: u16,
}

impl Old {
    pub(crate) fn new(port: u16, source: Option<&str>) -> Old {
        Old {
            c: client(source),
            port,
        }
    }

    fn url(&self, pq: &str) -> String {
        format!("https://127.0.0.1:{}{pq}", self.port)
    }

    /// The request target as the client sends it (the `url` crate's form).
    fn target(&self, pq: &str) -> String {
        let u = reqwest::Url::parse(&self.url(pq)).unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        }
    }

    async fn send(&self, method: Method, pq: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self.c.request(method, self.url(pq));
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, pq: &str, auth: Option<&str>) -> reqwest::Response {
        self.send(Method::GET, pq, auth).await
    }

    pub(crate) async fn basic(&self, pq: &str, user: &str, pw: &str) -> reqwest::Response {
        self.c
            .get(self.url(pq))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .unwrap()
    }

    /// A fresh challenge (from an unauthenticated request).
    async fn challenge(&self) -> Challenge {
        let resp = self.get("/cdrapi", None).await;
        assert_eq!(resp.status(), 401);
        challenge_of(&www_authenticate(&resp)[0])
    }

    /// Challenge, then the request with Digest (qop=auth, nc=1).
    async fn digest(&self, method: Method, pq: &str, pw: &str) -> reqwest::Response {
        let ch = self.challenge().await;
        let auth = digest(
            "cdrapi",
            pw,
            method.as_str(),
            &self.target(pq),
            &ch,
            Some(1),
        );
        self.send(method, pq, Some(&auth)).await
    }
}

pub(crate) fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Waits until nothing listens on `port` any more (a listener let go).
pub(crate) async fn wait_refused(port: u16) {
    wait_until(
        format!("port {port} to be let go"),
        Duration::from_secs(10),
        async || {
            if refused(port) {
                Ok(())
            } else {
                Err("still open")
            }
        },
    )
    .await;
}

/// Writes a new body (after the `# legacy` marker) into the server's
/// configuration, sends SIGHUP and waits until the reload is done; the log.
pub(crate) async fn hup(srv: &Server, body: &str) -> String {
    let text = std::fs::read_to_string(&srv.config).unwrap();
    let prefix = &text[..text.find("# legacy\n").expect("marker")];
    std::fs::write(&srv.config, format!("{prefix}{body}")).unwrap();
    let done = |log: &str| {
        log.matches("configuration reloaded: https_api_old in force")
            .count()
            + log.matches("configuration reload refused").count()
            + log.matches("https_api_old could not be applied").count()
    };
    let before = done(&srv.log_text());
    let status = std::process::Command::new("kill")
        .args(["-HUP", &srv.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until(
        "the reload after SIGHUP",
        Duration::from_secs(20),
        async || {
            let log = srv.log_text();
            if done(&log) > before {
                Ok(log)
            } else {
                Err(Text(format!("the log:\n{log}")))
            }
        },
    )
    .await
}

#[tokio::test]
async fn legacy_digest_and_basic_authentication() {
    for db in dbs().await {
        let port = free_port();
        let body = old_section(
            port,
            &["127.0.0.1", "127.0.0.3"],
            "[login_restriction]\nmax_failures = 3\n",
        );
        let srv = Server::start(&db, &body).await;
        let old = Old::new(port, None);

        // No credentials: 401 with a Digest challenge first, then Basic.
        let resp = old.get("/cdrapi?format=json", None).await;
        assert_eq!(resp.status(), 401);
        let challenges = www_authenticate(&resp);
        assert_eq!(challenges.len(), 2, "{challenges:?}");
        assert!(
            challenges[0].starts_with("Digest realm=\"pbxgate\", qop=\"auth\", nonce=\""),
            "{challenges:?}"
        );
        assert_eq!(challenges[1], "Basic realm=\"pbxgate\"");
        let ch = challenge_of(&challenges[0]);
        assert_eq!((ch.qop.as_str(), ch.algorithm.as_str()), ("auth", "MD5"));
        assert!(!ch.stale && !ch.opaque.is_empty() && ch.nonce.len() >= 32);
        // python-requests joins the two headers with ", ", drops the first
        // "Digest " and reads the rest as a dict: the Digest values win.
        let joined = challenges.join(", ");
        let as_dict = params(joined.strip_prefix("Digest ").unwrap());
        let first = |k: &str| as_dict.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(first("nonce"), ch.nonce);
        assert_eq!(first("qop"), "auth");
        assert!(resp.text().await.unwrap().starts_with("401 Unauthorized"));

        // Digest, qop=auth: nc 1, then 2 on the same nonce.
        let pq = "/cdrapi?format=json&caller=1001";
        let target = old.target(pq);
        let a1 = digest("cdrapi", OLD_PW, "GET", &target, &ch, Some(1));
        let resp = old.get(pq, Some(&a1)).await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(resp.text().await.unwrap().trim(), r#"{"cdr_root":[]}"#);
        let a2 = digest("cdrapi", OLD_PW, "GET", &target, &ch, Some(2));
        assert_eq!(old.get(pq, Some(&a2)).await.status(), 200);
        // Replays (same nc, lower nc): 401 stale=true, a fresh nonce.
        for replay in [&a2, &a1] {
            let resp = old.get(pq, Some(replay)).await;
            assert_eq!(resp.status(), 401);
            let again = challenge_of(&www_authenticate(&resp)[0]);
            assert!(again.stale, "{again:?}");
            assert_ne!(again.nonce, ch.nonce);
        }
        // The nonce is bound to nothing but itself: another URL, nc 3.
        let other = old.target("/cdrapi?format=xml");
        let a3 = digest("cdrapi", OLD_PW, "GET", &other, &ch, Some(3));
        assert_eq!(old.get("/cdrapi?format=xml", Some(&a3)).await.status(), 200);

        // RFC 2069 (no qop): one use per nonce.
        let ch2 = old.challenge().await;
        let plain = digest("cdrapi", OLD_PW, "GET", &target, &ch2, None);
        assert_eq!(old.get(pq, Some(&plain)).await.status(), 200);
        let resp = old.get(pq, Some(&plain)).await;
        assert_eq!(resp.status(), 401);
        assert!(challenge_of(&www_authenticate(&resp)[0]).stale);

        // A nonce that is not ours, with a right response: stale.
        let mut forged = old.challenge().await;
        forged.nonce = forged.nonce.chars().rev().collect();
        let resp = old
            .get(
                pq,
                Some(&digest("cdrapi", OLD_PW, "GET", &target, &forged, Some(1))),
            )
            .await;
        assert_eq!(resp.status(), 401);
        assert!(challenge_of(&www_authenticate(&resp)[0]).stale);

        // Wrong password, Digest and Basic: 401, not stale, challenges again.
        let ch3 = old.challenge().await;
        let resp = old
            .get(
                pq,
                Some(&digest("cdrapi", "nope", "GET", &target, &ch3, Some(1))),
            )
            .await;
        assert_eq!(resp.status(), 401);
        assert!(!challenge_of(&www_authenticate(&resp)[0]).stale);
        let resp = old.basic(pq, "cdrapi", "nope").await;
        assert_eq!(resp.status(), 401);
        assert_eq!(www_authenticate(&resp).len(), 2);

        // Basic (curl's default, PHP user:pass@host): pre-emptive. This success
        // also clears the two failures above from the login restriction...
        let resp = old.basic(pq, "cdrapi", OLD_PW).await;
        assert_eq!(resp.status(), 200);
        // ...so two more failures do not restrict 127.0.0.1 (max_failures = 3).
        assert_eq!(old.basic(pq, "someone", OLD_PW).await.status(), 401);
        assert_eq!(old.basic(pq, "cdrapi", "").await.status(), 401);

        // A Digest uri for another request: 400.
        let ch4 = old.challenge().await;
        let wrong_uri = digest("cdrapi", OLD_PW, "GET", "/cdrapi?format=csv", &ch4, Some(1));
        assert_eq!(old.get(pq, Some(&wrong_uri)).await.status(), 400);

        // HEAD is part of the response; routes and methods.
        assert_eq!(
            old.digest(Method::HEAD, "/cdrapi", OLD_PW).await.status(),
            200
        );
        let resp = old.basic("/nothing", "cdrapi", OLD_PW).await;
        assert_eq!(resp.status(), 404);
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("/cdrapi, /recapi and /pmsapi")
        );
        let resp = old
            .c
            .post(old.url("/cdrapi"))
            .basic_auth("cdrapi", Some(OLD_PW))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "GET, HEAD");

        // The login restriction is shared with the new API: three failures
        // from 127.0.0.3 and even the right password is refused there, and
        // so is a new-API login.
        let third = Old::new(port, Some("127.0.0.3"));
        for _ in 0..3 {
            assert_eq!(third.basic(pq, "cdrapi", "guess").await.status(), 401);
        }
        let resp = third.basic(pq, "cdrapi", OLD_PW).await;
        assert_eq!(resp.status(), 403);
        assert!(resp.text().await.unwrap().contains("login restriction"));
        assert_eq!(
            srv.login(&client(Some("127.0.0.3")), "cdrapi", "pw").await,
            Err(-68)
        );
        // ...while 127.0.0.1 is not restricted.
        assert_eq!(old.basic(pq, "cdrapi", OLD_PW).await.status(), 200);

        let log = srv.stop().await;
        assert!(log.contains("api=\"old\""), "{log}");
        assert!(
            log.contains("path=/cdrapi") && log.contains("user=cdrapi"),
            "{log}"
        );
        assert!(
            log.contains("via=\"old-api\"") || log.contains("via=old-api"),
            "{log}"
        );
        for secret in [OLD_PW, "Y2RyYXBp", "format=json&caller", "response="] {
            assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        }
    }
}

#[tokio::test]
async fn legacy_permitted_ips_and_empty_settings_refuse() {
    let db = first_db().await;
    let port = free_port();
    let srv = Server::start(&db, &old_section(port, &["127.0.0.2"], "")).await;
    let outsider = Old::new(port, Some("127.0.0.1"));
    let insider = Old::new(port, Some("127.0.0.2"));
    // Checked before authentication: right credentials do not help.
    for resp in [
        outsider.get("/cdrapi", None).await,
        outsider.basic("/cdrapi", "cdrapi", OLD_PW).await,
        outsider.basic("/recapi", "cdrapi", OLD_PW).await,
    ] {
        assert_eq!(resp.status(), 403);
        assert!(resp.headers().get(WWW_AUTHENTICATE).is_none());
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("the address 127.0.0.1 is not permitted"),
            "{body}"
        );
    }
    assert_eq!(insider.get("/cdrapi", None).await.status(), 401);
    assert_eq!(
        insider.basic("/cdrapi", "cdrapi", OLD_PW).await.status(),
        200
    );
    let log = srv.stop().await;
    assert!(
        log.contains("not in https_api_old.permitted_ips") && log.contains("ip=127.0.0.1"),
        "{log}"
    );

    // An empty list refuses everybody (the UCM's rule); an empty password
    // refuses every request; both are said once at start.
    let port = free_port();
    let body = old_section(port, &[], "").replace(&format!("\"{OLD_PW}\""), "\"\"");
    let srv = Server::start(&db, &body).await;
    let old = Old::new(port, None);
    let resp = old.basic("/cdrapi", "cdrapi", "").await;
    assert_eq!(resp.status(), 403);
    let log = srv.stop().await;
    assert_eq!(
        log.matches("https_api_old.permitted_ips is empty").count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("https_api_old.password is empty").count(),
        1,
        "{log}"
    );

    let port = free_port();
    let body = old_section(port, &["127.0.0.1"], "").replace(&format!("\"{OLD_PW}\""), "\"\"");
    let srv = Server::start(&db, &body).await;
    let old = Old::new(port, None);
    for _ in 0..3 {
        let resp = old.basic("/cdrapi", "cdrapi", "").await;
        assert_eq!(resp.status(), 401);
    }
    let ch = old.challenge().await;
    let auth = digest("cdrapi", "", "GET", "/cdrapi", &ch, Some(1));
    assert_eq!(old.get("/cdrapi", Some(&auth)).await.status(), 401);
    let log = srv.stop().await;
    assert_eq!(
        log.matches("https_api_old.password is empty").count(),
        1,
        "{log}"
    );
}

#[tokio::test]
async fn legacy_disabled_listener_refuses_connections() {
    let db = first_db().await;
    let port = free_port();
    let body = old_section(port, &["127.0.0.1"], "").replace("enable = true", "enable = false");
    let srv = Server::start(&db, &body).await;
    assert!(refused(port));
    let log = srv.stop().await;
    assert!(!log.contains("old API listening"), "{log}");
}

#[tokio::test]
async fn legacy_cdrapi_follows_the_old_rules() {
    let utc = jiff::tz::TimeZone::UTC;
    let cdrs = vec![
        leg(0, "s0", T0, T0, ("1001", "2000"), 5, &utc),
        leg(1, "s1", T0 + 60_000, T0 + 60_000, ("1002", "2001"), 0, &utc),
        leg(
            2,
            "s2",
            T0 + 120_000,
            T0 + 120_000,
            ("1003", "2002"),
            30,
            &utc,
        ),
        leg(
            3,
            "s2",
            T0 + 120_000,
            T0 + 125_000,
            ("1003", "2003"),
            12,
            &utc,
        ),
        leg(
            4,
            "s3",
            T0 + 180_000,
            T0 + 180_000,
            ("+4930123", "2000"),
            7,
            &utc,
        ),
    ];
    for db in dbs().await {
        let port = free_port();
        let srv = Server::start(&db, &old_section(port, &["127.0.0.1"], "")).await;
        seed(&srv, &cdrs).await;

        let old = Old::new(port, None);
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let new_api = |params: Value| {
            let mut req = json!({"action": "cdrapi", "cookie": cookie});
            for (k, v) in params.as_object().unwrap() {
                req[k] = v.clone();
            }
            let c = c.clone();
            let url = srv.url("/api");
            async move {
                let resp = c
                    .post(url)
                    .json(&json!({"request": req}))
                    .send()
                    .await
                    .unwrap();
                resp.text().await.unwrap()
            }
        };
        let get = |pq: String| {
            let old = &old;
            async move {
                let resp = old.basic(&pq, "cdrapi", OLD_PW).await;
                assert_eq!(resp.status(), 200, "{pq}");
                resp.text().await.unwrap()
            }
        };

        // Valid queries: the same answer as the new API's, and data.
        for (pq, params) in [
            (
                "format=json&caller=1001",
                json!({"format":"json","caller":"1001"}),
            ),
            (
                "format=JSON&caller=1001&caller=1003",
                json!({"format":"JSON","caller":"1001,1003"}),
            ),
            (
                "caller=1001-1002&minDur=0",
                json!({"caller":"1001-1002","minDur":"0"}),
            ),
            (
                "format=xml&callee=200@&maxDur=10",
                json!({"format":"xml","callee":"200@","maxDur":"10"}),
            ),
            (
                "format=json&numrecords=1&offset=1",
                json!({"format":"json","numRecords":"1","offset":"1"}),
            ),
            (
                "format=json&startTime=2026-03-28T12:14:00%2B00:00&endTime=2026-03-28T12:30:00Z",
                json!({"format":"json","startTime":"2026-03-28T12:14:00+00:00","endTime":"2026-03-28T12:30:00Z"}),
            ),
            // '+' is a space: the UCM's documented trap, read as the offset it was.
            (
                "format=json&startTime=2026-03-28T12:14:00+00:00",
                json!({"format":"json","startTime":"2026-03-28T12:14:00+00:00"}),
            ),
            (
                "format=json&caller=%2B4930123",
                json!({"format":"json","caller":"+4930123"}),
            ),
        ] {
            let old_body = get(format!("/cdrapi?{pq}")).await;
            assert_eq!(old_body, new_api(params).await, "{db:?} {pq}");
            assert!(
                old_body.contains("\"src\"")
                    || old_body.contains("<src>")
                    || old_body.lines().count() > 1,
                "{db:?} {pq}: no data: {old_body}"
            );
        }
        let v: Value =
            serde_json::from_str(&get("/cdrapi?format=json&caller=1003".into()).await).unwrap();
        assert_eq!(v["cdr_root"][0]["sub_cdr_2"]["dst"], "2003", "{v}");

        // §4.4: every error is the empty container of the requested format, HTTP 200.
        let empty_json = new_api(json!({"format":"json","caller":"1,,2"})).await;
        let empty_xml = new_api(json!({"format":"xml","caller":"1,,2"})).await;
        let empty_csv = new_api(json!({"format":"csv","caller":"1,,2"})).await;
        assert_eq!(empty_json.trim(), r#"{"cdr_root":[]}"#);
        assert_eq!(empty_csv.lines().count(), 1);
        assert!(empty_xml.contains("cdr_root") && !empty_xml.contains("<src>"));
        for (pq, empty) in [
            ("format=json&caler=1001", &empty_json),
            ("format=json&minDur=5&minDur=10", &empty_json),
            ("format=json&format=json", &empty_json),
            ("format=json&caller=1001&", &empty_json),
            ("format=json&caller=", &empty_json),
            ("format=json&caller=,1001", &empty_json),
            ("format=json&caller=1001,,1003", &empty_json),
            ("format=json&caller=1001-1002-", &empty_json),
            ("format=json&numRecords=abc", &empty_json),
            ("format=json&minDur=%205", &empty_json),
            ("format=json&caller=10%2001", &empty_json),
            ("format=json&startTime=2026-02-30", &empty_json),
            ("format=json&&caller=1001", &empty_json),
            ("format=json&caller", &empty_json),
            ("format=xml&caler=1", &empty_xml),
            ("format=XML&caller=1001&", &empty_xml),
            ("caler=1", &empty_csv),
            ("format=yaml&caler=1", &empty_csv),
            ("caller=1001&start_date=2026-01-01", &empty_csv),
        ] {
            assert_eq!(&get(format!("/cdrapi?{pq}")).await, empty, "{db:?} {pq}");
        }
        // An invalid format alone: the CSV header alone (§4.2, §4.4), as on /api.
        for pq in ["format=yaml", "format=jsonx&caller=1001", "format=%20json"] {
            assert_eq!(
                &get(format!("/cdrapi?{pq}")).await,
                &empty_csv,
                "{db:?} {pq}"
            );
        }
        assert_eq!(new_api(json!({"format":"yaml"})).await, empty_csv);
        // No query at all: everything, CSV.
        assert_eq!(get("/cdrapi".into()).await.lines().count(), 1 + cdrs.len());

        let log = srv.stop().await;
        assert!(log.contains("old API cdrapi request refused; answering an empty result"));
        assert!(
            log.contains("unknown parameter \\\"caler\\\"") || log.contains("unknown parameter"),
            "{log}"
        );
    }
}

#[tokio::test]
async fn legacy_recapi_serves_recordings() {
    let db = first_db().await;
    let spool = tempfile::tempdir().unwrap();
    let month = spool.path().join("monitor/2024-05");
    std::fs::create_dir_all(&month).unwrap();
    let a = crate::recapi::wav(2, 1);
    let b = crate::recapi::wav(1, 2);
    std::fs::write(month.join("auto-1717093784-1001-2100.wav"), &a).unwrap();
    std::fs::write(month.join("auto-1717093790-1001-2101.wav"), &b).unwrap();
    let port = free_port();
    let extra = format!("[recordings]\nspool_dir = \"{}\"\n", spool.path().display());
    let srv = Server::start(&db, &old_section(port, &["127.0.0.1"], &extra)).await;
    let old = Old::new(port, None);

    // Bare name (filedir defaults to monitor) and relative path, by Digest.
    for pq in [
        "/recapi?filename=auto-1717093784-1001-2100.wav",
        "/recapi?filedir=monitor&filename=2024-05/auto-1717093784-1001-2100.wav",
        "/recapi?filedir=monitor&filename=2024-05%2Fauto-1717093784-1001-2100.wav",
    ] {
        let resp = old.digest(Method::GET, pq, OLD_PW).await;
        assert_eq!(resp.status(), 200, "{pq}");
        assert_eq!(resp.headers()["content-type"], "audio/x-wav");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), a.as_slice(), "{pq}");
    }
    // HEAD: the headers of the download, no body (Digest over HEAD).
    let resp = old
        .digest(
            Method::HEAD,
            "/recapi?filename=auto-1717093784-1001-2100.wav",
            OLD_PW,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-length"],
        a.len().to_string().as_str()
    );
    assert!(resp.bytes().await.unwrap().is_empty());
    // A range.
    let resp = old
        .c
        .get(old.url("/recapi?filename=auto-1717093784-1001-2100.wav"))
        .basic_auth("cdrapi", Some(OLD_PW))
        .header("range", "bytes=0-43")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &a[..44]);
    // Several names: a tar of both.
    let resp = old
        .basic(
            "/recapi?filename=auto-1717093784-1001-2100.wav@auto-1717093790-1001-2101.wav",
            "cdrapi",
            OLD_PW,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-tar");
    assert!(resp.bytes().await.unwrap().len() > a.len() + b.len());
    // Listings: directories, then a directory's files.
    let resp = old.basic("/recapi", "cdrapi", OLD_PW).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("monitor"));
    let listing = old.basic("/recapi?filedir=monitor", "cdrapi", OLD_PW).await;
    assert_eq!(listing.status(), 200);
    assert!(
        listing
            .text()
            .await
            .unwrap()
            .contains("auto-1717093790-1001-2101.wav")
    );
    // Misses: the HTTP status the recordings engine gives.
    for (pq, status) in [
        ("/recapi?filename=auto-1-2-3.wav", 404),
        ("/recapi?filedir=nope&filename=a.wav", 404),
        ("/recapi?filename=../../etc/passwd", 400),
        ("/recapi?filename=a.wav&filename=b.wav", 400),
        ("/recapi?filename=%zz", 400),
    ] {
        let resp = old.basic(pq, "cdrapi", OLD_PW).await;
        assert_eq!(resp.status().as_u16(), status, "{pq}");
        let body = resp.text().await.unwrap();
        assert!(body.starts_with(&status.to_string()), "{pq}: {body}");
    }
    srv.stop().await;
}

/// A certificate (PEM) and its key, valid from `from` to `to` (years).
pub(crate) fn cert_pair(from: i32, to: i32) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn check_config(dir: &Path, text: &str) -> (i32, String, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) async fn peer_cert(url: &str) -> Vec<u8> {
    let resp = client(None).get(url).send().await.unwrap();
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
    info.peer_certificate().unwrap().to_vec()
}

#[tokio::test]
async fn legacy_certificates_are_checked_or_generated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (good_cert, good_key) = cert_pair(2020, 2090);
    let (_, other_key) = cert_pair(2020, 2090);
    let (old_cert, old_key) = cert_pair(2000, 2001);
    for (name, data) in [
        ("good.pem", good_cert.as_bytes()),
        ("good.key", good_key.as_bytes()),
        ("other.key", other_key.as_bytes()),
        ("old.pem", old_cert.as_bytes()),
        ("old.key", old_key.as_bytes()),
        ("text.pem", b"not a certificate\n".as_slice()),
    ] {
        std::fs::write(d.join(name), data).unwrap();
    }
    std::fs::write(d.join("big.pem"), vec![b'A'; 2 * 1024 * 1024 + 10]).unwrap();
    let section = |cert: &str, key: &str| {
        format!(
            "[https_api_old]\nenable = true\ntls_bind_address = \"127.0.0.1:1\"\n\
             password = \"x1\"\npermitted_ips = [\"127.0.0.1\"]\ntls_cert = \"{cert}\"\ntls_private_key = \"{key}\"\n"
        )
    };
    for (cert, key, needle) in [
        (
            "old.pem",
            "old.key",
            "config key `https_api_old.tls_cert`: the certificate in",
        ),
        ("old.pem", "old.key", "expired on 2001-01-01 00:00:00 UTC"),
        (
            "good.pem",
            "other.key",
            "config key `https_api_old.tls_private_key`: the key in",
        ),
        ("good.pem", "other.key", "does not match the certificate in"),
        (
            "text.pem",
            "good.key",
            "config key `https_api_old.tls_cert`:",
        ),
        ("text.pem", "good.key", "holds no PEM certificate"),
        ("good.pem", "text.pem", "holds no PEM private key"),
        ("big.pem", "good.key", "is larger than 2 MB"),
        (
            "good.pem",
            "missing.key",
            "config key `https_api_old.tls_private_key`:",
        ),
    ] {
        let (code, _, stderr) = check_config(d, &section(cert, key));
        assert_eq!(code, 2, "{cert} {key}: {stderr}");
        assert!(stderr.contains(needle), "{cert} {key}: {stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    }
    // Disabled: the files are only required to exist.
    let (code, out, err) = check_config(
        d,
        &section("old.pem", "old.key").replace("enable = true", "enable = false"),
    );
    assert_eq!(code, 0, "{out}{err}");
    // Valid: check-config shows it.
    let (code, out, err) = check_config(d, &section("good.pem", "good.key"));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("https_api_old       enabled on 127.0.0.1:1"),
        "{out}"
    );
    assert!(
        out.contains("old api tls") && out.contains("good.pem"),
        "{out}"
    );
    assert!(
        out.contains(
            "old api user        cdrapi (password set, permitted IPs: 127.0.0.1, pmsapi off)"
        ),
        "{out}"
    );

    let db = first_db().await;
    // serve refuses to start on a bad certificate, naming the key.
    let port = free_port();
    let path = d.join("serve.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"{}\"\n[web]\nlisten = \"127.0.0.1:{}\"\n{}",
            db.url,
            free_port(),
            section(
                &d.join("old.pem").display().to_string(),
                &d.join("old.key").display().to_string()
            )
            .replace("127.0.0.1:1", &format!("127.0.0.1:{port}"))
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config key `https_api_old.tls_cert`") && stderr.contains("expired"),
        "{stderr}"
    );

    // A configured certificate is what the old listener presents.
    let port = free_port();
    let body = old_section(
        port,
        &["127.0.0.1"],
        &format!(
            "tls_cert = \"{}\"\ntls_private_key = \"{}\"\n",
            d.join("good.pem").display(),
            d.join("good.key").display()
        ),
    );
    let srv = Server::start(&db, &body).await;
    let presented = peer_cert(&format!("https://127.0.0.1:{port}/cdrapi")).await;
    let der = rustls_pki_der(&good_cert);
    assert_eq!(presented, der);
    assert_ne!(srv.peer_certificate().await, der);
    srv.stop().await;

    // None configured: a self-signed one of its own in data/tls-old.
    let port = free_port();
    let srv = Server::start(&db, &old_section(port, &["127.0.0.1"], "")).await;
    let presented = peer_cert(&format!("https://127.0.0.1:{port}/cdrapi")).await;
    let generated = std::fs::read_to_string(srv.dir.path().join("data/tls-old/cert.pem")).unwrap();
    assert_eq!(presented, rustls_pki_der(&generated));
    assert_ne!(presented, srv.peer_certificate().await);
    srv.stop().await;
}

/// The DER of the first certificate in a PEM text.
pub(crate) fn rustls_pki_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn legacy_sighup_applies_the_section_live() {
    let db = first_db().await;
    let (p1, p2) = (free_port(), free_port());
    let body = |port: u16, permit: &[&str], pw: &str, extra: &str| {
        old_section(port, permit, extra).replace(OLD_PW, pw)
    };
    let disabled =
        body(p1, &["127.0.0.1"], "pw-one", "").replace("enable = true", "enable = false");
    let srv = Server::start(&db, &disabled).await;
    assert!(refused(p1));
    // A new-API session, over one keep-alive client, throughout.
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let new_api_works = || async {
        let r = srv
            .api(&c, json!({"action":"getSystemStatus","cookie":cookie}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
    };

    // Enable.
    hup(&srv, &body(p1, &["127.0.0.1"], "pw-one", "")).await;
    let old = Old::new(p1, None);
    assert_eq!(old.basic("/cdrapi", "cdrapi", "pw-one").await.status(), 200);
    assert_eq!(
        old.digest(Method::GET, "/cdrapi", "pw-one").await.status(),
        200
    );
    new_api_works().await;

    // A new password: the old one is refused at once, on the same connection.
    let log = hup(&srv, &body(p1, &["127.0.0.1"], "pw-two", "")).await;
    assert!(log.contains("changed=https_api_old.password"), "{log}");
    assert_eq!(old.basic("/cdrapi", "cdrapi", "pw-one").await.status(), 401);
    assert_eq!(old.basic("/cdrapi", "cdrapi", "pw-two").await.status(), 200);
    new_api_works().await;

    // An invalid file changes nothing.
    let log = hup(&srv, &body(p1, &["no-such-address"], "pw-three", "")).await;
    assert!(
        log.contains("configuration reload refused")
            && log.contains("https_api_old.permitted_ips[0]"),
        "{log}"
    );
    assert_eq!(old.basic("/cdrapi", "cdrapi", "pw-two").await.status(), 200);

    // Other sections are only reported, by key name.
    let log = hup(
        &srv,
        &body(
            p1,
            &["127.0.0.1"],
            "pw-two",
            "[session]\nidle_timeout_secs = 300\n",
        )
        .replace("password = \"pw\"", "password = \"new-api-pw\""),
    )
    .await;
    assert!(
        log.contains("keys=https_api.password, session.idle_timeout_secs")
            && log.contains("need a restart"),
        "{log}"
    );
    assert!(
        !log.contains("new-api-pw") && !log.contains("pw-two"),
        "{log}"
    );
    new_api_works().await;

    // Permitted IPs, then a new address and pmsapi switched on.
    hup(&srv, &body(p1, &["127.0.0.2"], "pw-two", "")).await;
    assert_eq!(old.basic("/cdrapi", "cdrapi", "pw-two").await.status(), 403);
    let other = Old::new(p1, Some("127.0.0.2"));
    let resp = other.basic("/pmsapi?format=xml", "cdrapi", "pw-two").await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("pmsapi is not enabled"));

    hup(
        &srv,
        &body(p2, &["127.0.0.2"], "pw-two", "enable_pmsapi = true\n"),
    )
    .await;
    let moved = Old::new(p2, Some("127.0.0.2"));
    assert_eq!(
        moved.basic("/cdrapi", "cdrapi", "pw-two").await.status(),
        200
    );
    let resp = moved.basic("/pmsapi?format=xml", "cdrapi", "pw-two").await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains("pmsapi is not enabled"), "{text}");
    // The old port is let go.
    wait_refused(p1).await;
    new_api_works().await;

    // Disable.
    hup(
        &srv,
        &body(p2, &["127.0.0.2"], "pw-two", "").replace("enable = true", "enable = false"),
    )
    .await;
    wait_refused(p2).await;
    new_api_works().await;

    let log = srv.stop().await;
    assert_eq!(log.matches("old API listening").count(), 2, "{log}");
    // The audit trail has the applied changes (names only).
    let store = Store::connect(&db.url, &ConnectOptions::default())
        .await
        .unwrap();
    let events = store.recent_audit(1000).await.unwrap();
    store.close().await;
    let reloads: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "settings" && e.result == "reloaded")
        .map(|e| e.detail.as_str())
        .collect();
    assert!(reloads.contains(&"https_api_old.password"), "{reloads:?}");
    assert!(
        reloads.contains(
            &"https_api_old.enable, https_api_old.tls_bind_address, https_api_old.enable_pmsapi"
        ) || reloads.iter().any(|d| d.contains("tls_bind_address")),
        "{reloads:?}"
    );
    assert!(!reloads.iter().any(|d| d.contains("pw-two")));
}

/// Hostile cdrapi input on `/api` cdrapi, `cdrExport` and the old `GET
/// /cdrapi`, on both databases: 1000- and 5000-item lists (clients page with
/// them) answer the matching calls; range bounds of 65,536 digits (a panic in
/// the store once, the connection dropped) answer the empty container and the
/// server goes on; an invalid format answers the CSV header alone.
#[tokio::test]
async fn hostile_cdrapi_input_is_answered_on_both_apis() {
    let utc = jiff::tz::TimeZone::UTC;
    let cdrs = vec![
        leg(0, "s0", T0, T0, ("1001", "2000"), 5, &utc),
        leg(1, "s1", T0 + 60_000, T0 + 60_000, ("1002", "2001"), 0, &utc),
        leg(
            2,
            "s2",
            T0 + 120_000,
            T0 + 120_000,
            ("+4930123", "2002"),
            9,
            &utc,
        ),
        leg(
            3,
            "s3",
            T0 + 180_000,
            T0 + 180_000,
            ("1500", "2003"),
            7,
            &utc,
        ),
    ];
    // Matches s0 (exact), s1 (range), s2 (wildcard); never s3.
    let list = |n: usize| -> String {
        // A sixth ranges and wildcards (at most 1000 a list), the rest exact.
        let mut items: Vec<String> = (0..n - 3)
            .map(|i| match i % 12 {
                0 => format!("7{i}@"),
                1 => format!("{}-{}", 800_000 + i * 10, 800_000 + i * 10 + 5),
                _ => format!("{}", 600_000 + i),
            })
            .collect();
        items.insert(n / 2, "1001".into());
        items.insert(n / 3, "1002-1002".into());
        items.push("+49@".into());
        items.join(",")
    };
    let srcs = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let mut out: Vec<String> = v["cdr_root"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["src"].as_str().unwrap().to_owned())
            .collect();
        out.sort();
        out
    };
    let want = vec!["+4930123".to_owned(), "1001".into(), "1002".into()];
    let huge = format!("{}-{}", "1".repeat(65_536), "2".repeat(65_536));
    for db in dbs().await {
        let port = free_port();
        let srv = Server::start(&db, &old_section(port, &["127.0.0.1"], "")).await;
        seed(&srv, &cdrs).await;
        let old = Old::new(port, None);
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let api = |action: &'static str, params: Value| {
            let mut req = json!({"action": action, "cookie": cookie});
            for (k, v) in params.as_object().unwrap() {
                req[k] = v.clone();
            }
            let c = c.clone();
            let url = srv.url("/api");
            async move {
                let resp = c
                    .post(url)
                    .json(&json!({"request": req}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{action}");
                resp.text().await.unwrap()
            }
        };
        let get = |pq: String| {
            let old = &old;
            async move {
                let resp = old.basic(&pq, "cdrapi", OLD_PW).await;
                assert_eq!(resp.status(), 200);
                resp.text().await.unwrap()
            }
        };

        for n in [1000, 5000] {
            let items = list(n);
            for field in ["caller", "callee"] {
                // callee: the same list matches no dst (20xx), so nothing.
                let want = if field == "caller" {
                    want.clone()
                } else {
                    vec![]
                };
                let params = json!({"format": "json", field: items});
                assert_eq!(
                    srcs(&api("cdrapi", params.clone()).await),
                    want,
                    "{db:?} /api {field} {n}"
                );
                assert_eq!(
                    srcs(&api("cdrExport", params).await),
                    want,
                    "{db:?} cdrExport {field} {n}"
                );
                let pq = format!("/cdrapi?format=json&{field}={}", items.replace('+', "%2B"));
                assert_eq!(srcs(&get(pq).await), want, "{db:?} old {field} {n}");
            }
            // Repeated parameters are joined into one list, as long (5000
            // would pass the 64 KiB an URI can have in the client).
            if n > 1000 {
                continue;
            }
            let repeated: Vec<String> = items
                .split(',')
                .map(|i| format!("caller={}", i.replace('+', "%2B")))
                .collect();
            let pq = format!("/cdrapi?format=json&{}", repeated.join("&"));
            assert_eq!(srcs(&get(pq).await), want, "{db:?} old repeated {n}");
        }

        // 65,536-digit bounds, in every list and in callerName: the empty
        // container, and the same connection goes on.
        let empty_json = r#"{"cdr_root":[]}"#;
        for field in ["caller", "callee", "answeredby"] {
            let params = json!({"format": "json", field: huge});
            assert_eq!(
                api("cdrapi", params.clone()).await.trim(),
                empty_json,
                "{db:?} {field}"
            );
            assert_eq!(
                api("cdrExport", params).await.trim(),
                empty_json,
                "{db:?} {field}"
            );
            // An URI holds at most 64 KiB (the `http` crate, both ends).
            let body = get(format!("/cdrapi?format=json&{field}={}", &huge[..30_001])).await;
            assert_eq!(body.trim(), empty_json, "{db:?} old {field}");
        }
        // More than 1000 ranges and wildcards in one list: refused (documented).
        let many: Vec<String> = (0..1001).map(|i| format!("{i}@")).collect();
        let params = json!({"format": "json", "caller": many.join(",")});
        assert_eq!(
            api("cdrapi", params).await.trim(),
            empty_json,
            "{db:?} 1001 wildcards"
        );
        let long_name = "x".repeat(100_000);
        let params = json!({"format": "json", "callerName": long_name});
        assert_eq!(
            api("cdrapi", params).await.trim(),
            empty_json,
            "{db:?} callerName"
        );
        assert_eq!(
            srcs(&api("cdrapi", json!({"format": "json"})).await).len(),
            4
        );
        assert_eq!(srcs(&get("/cdrapi?format=json".into()).await).len(), 4);

        // An invalid format: the CSV header alone, also for the export.
        let header = format!("{}\n", ucm::cdr::FIELDS.join(","));
        assert_eq!(api("cdrapi", json!({"format": "yaml"})).await, header);
        assert_eq!(api("cdrExport", json!({"format": "yaml"})).await, header);
        assert_eq!(get("/cdrapi?format=yaml".into()).await, header);

        let log = srv.stop().await;
        assert!(log.contains("item longer than 64 characters"), "{db:?}");
        assert!(
            log.contains("1001 ranges or wildcards in one list"),
            "{db:?}"
        );
        assert!(log.contains("format: expected csv, xml or json"), "{db:?}");
        assert!(!log.contains("panicked"), "{db:?}");
    }
}
