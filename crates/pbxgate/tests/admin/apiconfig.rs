//! The API Configuration page: every validation rule answered beside its
//! field, saves applied live (logins, sessions, the old listener), audited,
//! kept across a restart and seen by a second node; keys fixed in the file
//! read-only.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE};
use serde_json::json;
use store::{AuditStore, DecisionStore, Store};

use super::admin_browser;
use super::{
    PASSWORD, browser, csrf_field, get, location, log_in, open_store, set_cookie, set_password,
};
use crate::kit::*;
use crate::legacy::{Old, cert_pair, hup, peer_cert, refused, rustls_pki_der, wait_refused};

/// Fields, files, the field whose error is expected, the expected message.
type OldCase = (
    Vec<(&'static str, String)>,
    Vec<(&'static str, Vec<u8>)>,
    &'static str,
    &'static str,
);

/// A logged-in admin.
pub(crate) struct AdminClient {
    pub c: reqwest::Client,
    pub cookie: String,
    pub url: String,
}

impl AdminClient {
    pub(crate) async fn new(srv: &Server) -> AdminClient {
        let (code, out, err) = set_password(srv, None, &format!("{PASSWORD}\n")).await;
        assert_eq!(code, 0, "{out}{err}");
        Self::log_in(srv).await
    }

    pub(crate) async fn log_in(srv: &Server) -> AdminClient {
        let c = browser("127.0.0.1");
        let resp = log_in(srv, &c, "admin", PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let (cookie, _) = set_cookie(&resp, "pbxgate_admin").unwrap();
        AdminClient {
            c,
            cookie,
            url: srv.url(""),
        }
    }

    pub(crate) async fn page(&self) -> String {
        let r = self
            .c
            .get(format!("{}/admin/api-config", self.url))
            .header(COOKIE, &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    async fn csrf(&self) -> String {
        csrf_field(&self.page().await)
    }

    /// A form POST with the CSRF token: status and page (or redirect target).
    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let token = self.csrf().await;
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        let r = self
            .c
            .post(format!("{}{path}", self.url))
            .header(COOKIE, &self.cookie)
            .form(&all)
            .send()
            .await
            .unwrap();
        answer(r).await
    }

    /// The old API form (multipart): text fields and files.
    pub(crate) async fn post_old(
        &self,
        fields: &[(&str, &str)],
        files: &[(&str, &[u8])],
    ) -> (StatusCode, String) {
        let token = self.csrf().await;
        let boundary = "pbxgateTestBoundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        let mut part = |headers: String, content: &[u8]| {
            body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        };
        part(
            "Content-Disposition: form-data; name=\"csrf\"".into(),
            token.as_bytes(),
        );
        for (k, v) in fields {
            part(
                format!("Content-Disposition: form-data; name=\"{k}\""),
                v.as_bytes(),
            );
        }
        for (k, v) in files {
            part(
                format!(
                    "Content-Disposition: form-data; name=\"{k}\"; filename=\"{k}.pem\"\r\nContent-Type: application/x-pem-file"
                ),
                v,
            );
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let r = self
            .c
            .post(format!("{}/admin/api-config/old", self.url))
            .header(COOKIE, &self.cookie)
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        answer(r).await
    }
}

async fn answer(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    if status == StatusCode::SEE_OTHER {
        let to = location(&r).to_owned();
        (status, to)
    } else {
        (status, r.text().await.unwrap())
    }
}

/// The message shown beside `field` (the first such field on the page).
fn error_beside(page: &str, field: &str) -> Option<String> {
    let marker = format!("data-field=\"{field}\">");
    let at = page.find(&marker)? + marker.len();
    Some(page[at..].split("</span>").next()?.to_owned())
}

#[track_caller]
pub(crate) fn assert_refused(answer: &(StatusCode, String), field: &str, expect: &str) {
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{field}: {}", answer.1);
    let msg = error_beside(&answer.1, field)
        .unwrap_or_else(|| panic!("no error beside {field}: {}", answer.1));
    assert!(msg.contains(expect), "{field}: {msg:?} lacks {expect:?}");
}

fn user_fields<'a>(
    index: &'a str,
    name: &'a str,
    password: &'a str,
    call_control: bool,
    ips: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut f = vec![
        ("index", index),
        ("username", name),
        ("password", password),
        ("permitted_ips", ips),
    ];
    if call_control {
        f.push(("call_control", "on"));
    }
    f
}

#[tokio::test]
async fn new_api_users_are_validated_and_applied_at_once() {
    for db in dbs().await {
        let srv = Server::start(&db, "").await;
        let admin = AdminClient::new(&srv).await;
        let page = admin.page().await;
        assert!(page.contains("HTTPS API Settings (New)"), "{page}");
        assert!(page.contains("HTTPS API Settings (Old)"), "{page}");
        assert!(!page.contains("Set in the configuration file"), "{page}");

        // Every rule of a user, beside its field; nothing saved.
        let add = "/admin/api-config/user";
        for (fields, field, expect) in [
            (
                user_fields("", "crm", "", false, ""),
                "password",
                "needs a password",
            ),
            (
                user_fields("", "crm", "short", false, ""),
                "password",
                "at least 8",
            ),
            (
                user_fields("", "crm", &"x".repeat(65), false, ""),
                "password",
                "at most 64",
            ),
            (
                user_fields("", "", "long enough 1", false, ""),
                "username",
                "1 to 64",
            ),
            (
                user_fields("", "bad name", "long enough 1", false, ""),
                "username",
                "only letters, digits",
            ),
            (
                user_fields(
                    "",
                    "crm",
                    "long enough 1",
                    false,
                    "10.0.0.300/255.255.255.0",
                ),
                "permitted_ips",
                "entry 1",
            ),
            (
                user_fields("", "crm", "long enough 1", false, "127.0.0.1\nnot-an-ip"),
                "permitted_ips",
                "entry 2",
            ),
            (
                user_fields("", "crm", "long enough 1", false, "10.0.0.0/255.0.255.0"),
                "permitted_ips",
                "entry 1",
            ),
        ] {
            let a = admin.post(add, &fields).await;
            assert_refused(&a, field, expect);
            // What was typed is shown again, never the password.
            assert!(!a.1.contains("long enough 1"), "password echoed");
        }
        let c = client(Some("127.0.0.1"));
        assert!(srv.login(&c, "crm", "long enough 1").await.is_err());

        // A valid user logs in at once.
        let a = admin
            .post(
                add,
                &user_fields(
                    "",
                    "crm",
                    "long enough 1",
                    false,
                    "127.0.0.1/255.255.255.255",
                ),
            )
            .await;
        assert_eq!(
            a,
            (
                StatusCode::SEE_OTHER,
                "/admin/api-config?saved=user#new".into()
            )
        );
        let cookie = srv.login(&c, "crm", "long enough 1").await.unwrap();
        let ok = json!({"action":"getSystemStatus","cookie":cookie});
        assert_eq!(srv.api(&c, ok.clone()).await["status"], 0);
        // A second user with the same name is refused.
        let a = admin
            .post(add, &user_fields("", "crm", "long enough 2", false, ""))
            .await;
        assert_refused(&a, "username", "already exists");

        // Permitted IPs without 127.0.0.1: the logged-in client is refused
        // at its next request, and cannot log in again.
        let a = admin
            .post(
                add,
                &user_fields("0", "crm", "", false, "127.0.0.2/255.255.255.255"),
            )
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        assert_eq!(srv.api(&c, ok.clone()).await["status"], -6);
        assert!(srv.login(&c, "crm", "long enough 1").await.is_err());
        // From the permitted address the old password still works (empty = kept).
        let c2 = client(Some("127.0.0.2"));
        let cookie2 = srv.login(&c2, "crm", "long enough 1").await.unwrap();
        // A new password ends that session; the new one works.
        let a = admin
            .post(
                add,
                &user_fields("0", "crm", "second password", true, "127.0.0.2"),
            )
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        let ok2 = json!({"action":"getSystemStatus","cookie":cookie2});
        assert_eq!(srv.api(&c2, ok2).await["status"], -6);
        assert!(srv.login(&c2, "crm", "long enough 1").await.is_err());
        let cookie2 = srv.login(&c2, "crm", "second password").await.unwrap();

        // The switch: off → -47 for everybody, on again → served.
        let a = admin.post("/admin/api-config/new", &[]).await;
        assert_eq!(
            a,
            (
                StatusCode::SEE_OTHER,
                "/admin/api-config?saved=new#new".into()
            )
        );
        let ok2 = json!({"action":"getSystemStatus","cookie":cookie2});
        assert_eq!(srv.api(&c2, ok2.clone()).await["status"], -47);
        let a = admin
            .post("/admin/api-config/new", &[("enable", "on")])
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER);
        assert_eq!(srv.api(&c2, ok2.clone()).await["status"], 0);

        // Remove: sessions end, logins fail; a stale remove is refused.
        let a = admin
            .post(
                "/admin/api-config/user/remove",
                &[("index", "0"), ("username", "crm")],
            )
            .await;
        assert_eq!(
            a,
            (
                StatusCode::SEE_OTHER,
                "/admin/api-config?saved=removed#new".into()
            )
        );
        assert_eq!(srv.api(&c2, ok2).await["status"], -6);
        assert!(srv.login(&c2, "crm", "second password").await.is_err());
        let a = admin
            .post(
                "/admin/api-config/user/remove",
                &[("index", "0"), ("username", "crm")],
            )
            .await;
        assert_eq!(a.0, StatusCode::BAD_REQUEST);
        assert!(a.1.contains("no longer exists"), "{}", a.1);

        // Audited by the admin, with key names and never a value.
        let store = open_store(&srv).await;
        let events = store.recent_audit(50).await.unwrap();
        let saved: Vec<_> = events
            .iter()
            .filter(|e| e.event == "settings" && e.username == "admin")
            .collect();
        assert!(
            saved
                .iter()
                .any(|e| e.detail.contains("https_api.user.crm.added")),
            "{saved:?}"
        );
        assert!(
            saved
                .iter()
                .any(|e| e.detail.contains("https_api.user.crm.permitted_ips")),
            "{saved:?}"
        );
        assert!(
            saved
                .iter()
                .any(|e| e.detail.contains("https_api.user.crm.password")),
            "{saved:?}"
        );
        assert!(
            saved.iter().any(|e| e.detail.contains("https_api.enable")),
            "{saved:?}"
        );
        assert!(
            saved
                .iter()
                .any(|e| e.detail.contains("https_api.user.crm.removed")),
            "{saved:?}"
        );
        for e in &events {
            assert!(!e.detail.contains("second password") && !e.detail.contains("long enough"));
        }
        let log = srv.log_text();
        assert!(
            !log.contains("second password") && !log.contains("long enough 1"),
            "{log}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn websockify_sockets_end_when_the_settings_take_their_right_away() {
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "").await;
    let admin = AdminClient::new(&srv).await;
    let add = "/admin/api-config/user";
    for name in ["crm", "bi"] {
        let a = admin
            .post(add, &user_fields("", name, "long enough 1", false, ""))
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    }
    let mut crm = crate::websockify::Client::connect(&srv).await;
    assert_eq!(crm.login("crm", "long enough 1").await, 0);
    let mut bi = crate::websockify::Client::connect(&srv).await;
    assert_eq!(bi.login("bi", "long enough 1").await, 0);
    // A new password for crm: its socket is closed, bi's stays.
    let a = admin
        .post(add, &user_fields("0", "crm", "another pass 2", false, ""))
        .await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    assert_eq!(
        crm.frame(Duration::from_secs(5)).await,
        None,
        "crm's socket closed"
    );
    assert_eq!(bi.subscribe(&["ActiveCallStatus"]).await, 0);
    // bi's address no longer permitted: closed too.
    let a = admin
        .post(add, &user_fields("1", "bi", "", false, "10.1.2.3"))
        .await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    assert_eq!(
        bi.frame(Duration::from_secs(5)).await,
        None,
        "bi's socket closed"
    );
    srv.stop().await;
}

#[tokio::test]
async fn page_users_get_their_permissions_from_the_page() {
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "").await;
    let admin = AdminClient::new(&srv).await;
    let add = "/admin/api-config/user";
    let mut f = user_fields("", "billing", "long enough 1", false, "");
    f.push(("allow", "listEverything"));
    let a = admin.post(add, &f).await;
    assert_refused(&a, "allow", "entry 1");
    let mut f = user_fields("", "billing", "long enough 1", false, "");
    f.push(("deny", "cdr, Hangup"));
    f.push(("allow", "listRingGroup"));
    let a = admin.post(add, &f).await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    let page = admin.page().await;
    assert!(
        page.contains("id=\"user-0-deny\" name=\"deny\" value=\"cdr, Hangup\""),
        "{page}"
    );
    let c = client(None);
    let cookie = srv.login(&c, "billing", "long enough 1").await.unwrap();
    let r = srv
        .api(
            &c,
            json!({"action":"cdrapi","cookie":cookie,"format":"json"}),
        )
        .await;
    assert_eq!(r["status"], -47, "{r}");
    let r = srv
        .api(
            &c,
            json!({"action":"Hangup","cookie":cookie,"channel":"PJSIP/x-1"}),
        )
        .await;
    assert_eq!(r["status"], -47, "{r}");
    // listRingGroup is allowed (no Asterisk here: not -47).
    let r = srv
        .api(&c, json!({"action":"listRingGroup","cookie":cookie}))
        .await;
    assert_ne!(r["status"], -47, "{r}");
    // Taking the deny away applies at once.
    let a = admin
        .post(add, &user_fields("0", "billing", "", false, ""))
        .await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    let r = srv
        .api(
            &c,
            json!({"action":"cdrapi","cookie":cookie,"format":"json"}),
        )
        .await;
    assert!(r.get("cdr_root").is_some(), "{r}");
    srv.stop().await;
}

#[tokio::test]
async fn forms_need_a_session_and_the_csrf_token() {
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "").await;
    let admin = AdminClient::new(&srv).await;
    // No session: to the login page, nothing saved.
    let c = browser("127.0.0.1");
    let r = get(&srv, &c, "/admin/api-config", None).await;
    assert_eq!(location(&r), "/admin/login");
    let r = c
        .post(srv.url("/admin/api-config/user"))
        .form(&[("username", "x"), ("password", "long enough 1")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/admin/login");
    // A session but no or a wrong token: 403.
    for token in [None, Some("0".repeat(64))] {
        let mut fields = vec![
            ("username", "x".to_owned()),
            ("password", "long enough 1".to_owned()),
        ];
        if let Some(t) = token {
            fields.push(("csrf", t));
        }
        let r = admin
            .c
            .post(srv.url("/admin/api-config/user"))
            .header(COOKIE, &admin.cookie)
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let body = "--b\r\nContent-Disposition: form-data; name=\"enable\"\r\n\r\non\r\n--b--\r\n";
    let r = admin
        .c
        .post(srv.url("/admin/api-config/old"))
        .header(COOKIE, &admin.cookie)
        .header(CONTENT_TYPE, "multipart/form-data; boundary=b")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        srv.login(&client(None), "x", "long enough 1")
            .await
            .is_err()
    );
    srv.stop().await;
}

#[tokio::test]
async fn old_api_settings_are_validated_and_applied_live() {
    for db in dbs().await {
        let srv = Server::start(&db, "").await;
        let admin = AdminClient::new(&srv).await;
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let web = format!("127.0.0.1:{}", srv.port);
        let web_any = format!("0.0.0.0:{}", srv.port);
        let (cert, key) = cert_pair(2020, 2090);
        let (other_cert, _) = cert_pair(2020, 2090);
        let (old_cert, old_key) = cert_pair(1999, 2001);
        let big = vec![b'a'; 2 * 1024 * 1024 + 1];
        let base = |b: &str| {
            vec![
                ("enable", "on".to_owned()),
                ("tls_bind_address", b.to_owned()),
                ("username", "billing".to_owned()),
                ("password", "Sekr1t-old".to_owned()),
                ("permitted_ips", "127.0.0.1/255.255.255.255".to_owned()),
            ]
        };
        let cases: Vec<OldCase> = vec![
            (
                base("nonsense"),
                vec![],
                "tls_bind_address",
                "is not IP[:port]",
            ),
            (
                base("127.0.0.1:0"),
                vec![],
                "tls_bind_address",
                "port must be 1 to 65535",
            ),
            (
                base(&web),
                vec![],
                "tls_bind_address",
                "collides with web.listen",
            ),
            (
                base(&web_any),
                vec![],
                "tls_bind_address",
                "collides with web.listen",
            ),
            (
                {
                    let mut f = base(&bind);
                    f[3].1 = "has space".into();
                    f
                },
                vec![],
                "password",
                "without spaces",
            ),
            (
                {
                    let mut f = base(&bind);
                    f[3].1 = "x".into();
                    f
                },
                vec![],
                "password",
                "at least 2",
            ),
            (
                {
                    let mut f = base(&bind);
                    f[2].1 = "bill ing".into();
                    f
                },
                vec![],
                "username",
                "only letters",
            ),
            (
                {
                    let mut f = base(&bind);
                    f[4].1 = "127.0.0.1\n999.1.1.1".into();
                    f
                },
                vec![],
                "permitted_ips",
                "entry 2",
            ),
            (
                base(&bind),
                vec![
                    ("tls_cert", b"not a pem file".to_vec()),
                    ("tls_private_key", key.clone().into_bytes()),
                ],
                "tls_cert",
                "no PEM certificate",
            ),
            (
                base(&bind),
                vec![
                    ("tls_cert", other_cert.clone().into_bytes()),
                    ("tls_private_key", key.clone().into_bytes()),
                ],
                "tls_private_key",
                "does not match",
            ),
            (
                base(&bind),
                vec![
                    ("tls_cert", old_cert.clone().into_bytes()),
                    ("tls_private_key", old_key.clone().into_bytes()),
                ],
                "tls_cert",
                "expired",
            ),
            (
                base(&bind),
                vec![("tls_cert", cert.clone().into_bytes())],
                "tls_private_key",
                "upload the private key",
            ),
            (
                base(&bind),
                vec![
                    ("tls_cert", big.clone()),
                    ("tls_private_key", key.clone().into_bytes()),
                ],
                "tls_cert",
                "larger than",
            ),
            (
                {
                    let mut f = base(&bind);
                    f.push(("tls_generated", "on".into()));
                    f
                },
                vec![
                    ("tls_cert", cert.clone().into_bytes()),
                    ("tls_private_key", key.clone().into_bytes()),
                ],
                "tls_cert",
                "either uploaded files or a generated",
            ),
        ];
        for (i, (fields, files, field, expect)) in cases.into_iter().enumerate() {
            eprintln!("old API case {i}: {field} {expect}");
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let up: Vec<(&str, &[u8])> = files.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            let a = admin.post_old(&f, &up).await;
            assert!(
                !a.1.contains("could not be read"),
                "case {i}: the form was not read:\n{}",
                srv.log_text()
            );
            assert_refused(&a, field, expect);
            assert!(
                !a.1.contains("Sekr1t-old"),
                "password echoed: {field} {expect}: {}",
                a.1
            );
            assert!(!a.1.contains("PRIVATE KEY"), "key echoed");
            assert!(refused(port), "nothing may listen after a refused save");
        }

        // Valid, with an uploaded pair: listening at once, presenting it,
        // Basic auth with the new credentials, the permitted IPs applied.
        let a = admin
            .post_old(
                &[
                    ("enable", "on"),
                    ("tls_bind_address", &bind),
                    ("username", "billing"),
                    ("password", "Sekr1t-old"),
                    ("permitted_ips", "127.0.0.1/255.255.255.255\n"),
                ],
                &[
                    ("tls_cert", cert.as_bytes()),
                    ("tls_private_key", key.as_bytes()),
                ],
            )
            .await;
        assert_eq!(
            a,
            (
                StatusCode::SEE_OTHER,
                "/admin/api-config?saved=old#old".into()
            )
        );
        let url = format!("https://{bind}/cdrapi?format=json");
        assert_eq!(peer_cert(&url).await, rustls_pki_der(&cert));
        let old = Old::new(port, Some("127.0.0.1"));
        assert_eq!(
            old.basic("/cdrapi?format=json", "billing", "Sekr1t-old")
                .await
                .status(),
            200
        );
        assert_eq!(
            old.basic("/cdrapi?format=json", "billing", "wrong")
                .await
                .status(),
            401
        );
        let page = admin.page().await;
        assert!(
            page.contains("An uploaded certificate, valid until 2090-01-01"),
            "{page}"
        );
        assert!(!page.contains("Sekr1t-old"));
        // Only 127.0.0.2 permitted now (password kept: empty field).
        let a = admin
            .post_old(
                &[
                    ("enable", "on"),
                    ("tls_bind_address", &bind),
                    ("username", "billing"),
                    ("password", ""),
                    ("permitted_ips", "127.0.0.2"),
                ],
                &[],
            )
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        assert_eq!(
            old.basic("/cdrapi?format=json", "billing", "Sekr1t-old")
                .await
                .status(),
            403
        );
        let from2 = Old::new(port, Some("127.0.0.2"));
        assert_eq!(
            from2
                .basic("/cdrapi?format=json", "billing", "Sekr1t-old")
                .await
                .status(),
            200
        );
        // Back to a generated certificate, then off.
        let a = admin
            .post_old(
                &[
                    ("enable", "on"),
                    ("tls_bind_address", &bind),
                    ("username", "billing"),
                    ("permitted_ips", "127.0.0.2"),
                    ("tls_generated", "on"),
                ],
                &[],
            )
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        assert_ne!(peer_cert(&url).await, rustls_pki_der(&cert));
        assert!(
            admin
                .page()
                .await
                .contains("self-signed certificate generated by pbxgate")
        );
        let a = admin
            .post_old(
                &[
                    ("tls_bind_address", &bind),
                    ("username", "billing"),
                    ("permitted_ips", "127.0.0.2"),
                ],
                &[],
            )
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        wait_refused(port).await;

        // Audited (names only).
        let store = open_store(&srv).await;
        let events = store.recent_audit(50).await.unwrap();
        assert!(
            events.iter().any(|e| e.username == "admin"
                && e.detail.contains("https_api_old.enable")
                && e.detail.contains("https_api_old.tls")),
            "{events:?}"
        );
        assert!(events.iter().all(|e| !e.detail.contains("Sekr1t-old")));
        srv.stop().await;
    }
}

#[tokio::test]
async fn keys_of_the_configuration_file_are_read_only() {
    let db = last_db(dbs().await);
    let port = free_port();
    let srv = Server::start(
        &db,
        &format!(
            "[https_api]\nenable = true\nusername = \"fileuser\"\npassword = \"file password 1\"\n\
             [https_api_old]\ntls_bind_address = \"127.0.0.1:{port}\"\nenable_pmsapi = true\n"
        ),
    )
    .await;
    let admin = AdminClient::new(&srv).await;
    let page = admin.page().await;
    // The switch and the file's user: read-only, with a note.
    assert!(
        page.contains("name=\"enable\" id=\"new-enable-box\" checked disabled"),
        "{page}"
    );
    assert!(page.contains("(<code>https_api.enable</code>)"), "{page}");
    assert!(page.contains("data-user=\"fileuser\""), "{page}");
    assert!(!page.contains("file password 1"));
    assert!(
        page.contains("id=\"old-bind\" name=\"tls_bind_address\""),
        "{page}"
    );
    assert!(
        page.contains("(<code>https_api_old.tls_bind_address</code>)"),
        "{page}"
    );
    assert!(
        page.contains("id=\"old-pmsapi\" checked disabled"),
        "{page}"
    );
    // Saving them anyway is refused with the reason.
    let a = admin.post("/admin/api-config/new", &[]).await;
    assert_refused(&a, "enable", "configuration file");
    let a = admin
        .post_old(
            &[
                ("tls_bind_address", "127.0.0.1:9443"),
                ("username", "cdrapi"),
            ],
            &[],
        )
        .await;
    assert_refused(&a, "tls_bind_address", "configuration file");
    // A page user cannot take the file user's name; another one can be added.
    let a = admin
        .post(
            "/admin/api-config/user",
            &user_fields("", "fileuser", "long enough 1", false, ""),
        )
        .await;
    assert_refused(&a, "username", "already exists");
    let a = admin
        .post(
            "/admin/api-config/user",
            &user_fields("", "web", "long enough 1", false, ""),
        )
        .await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    let c = client(None);
    assert!(srv.login(&c, "fileuser", "file password 1").await.is_ok());
    assert!(srv.login(&c, "web", "long enough 1").await.is_ok());
    srv.stop().await;
}

#[tokio::test]
async fn saved_settings_survive_a_restart_and_reach_a_second_node() {
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "").await;
    let admin = AdminClient::new(&srv).await;
    let a = admin
        .post(
            "/admin/api-config/user",
            &user_fields("", "crm", "long enough 1", false, ""),
        )
        .await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    // A second node on the same database.
    let other = Server::start(&db, "").await;
    let c = client(None);
    assert!(other.login(&c, "crm", "long enough 1").await.is_ok());
    // A change on the first reaches the second within its poll (2 s).
    let a = admin
        .post(
            "/admin/api-config/user",
            &user_fields("0", "crm", "", false, "127.0.0.2"),
        )
        .await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    wait_until(
        "the second node to apply the new permitted IPs",
        Duration::from_secs(5),
        async || match other.login(&c, "crm", "long enough 1").await {
            Err(status) => Ok(status),
            Ok(_) => Err("the second node kept the old permitted IPs: login works"),
        },
    )
    .await;
    other.stop().await;
    // Restarted: still in force.
    let dir = srv.dir.clone();
    let port = srv.port;
    let log = srv.stop().await;
    assert!(!log.contains("long enough 1"));
    let srv = Server::start_in(&db, "", dir, port).await;
    let c2 = client(Some("127.0.0.2"));
    assert!(srv.login(&c2, "crm", "long enough 1").await.is_ok());
    assert!(
        srv.login(&client(None), "crm", "long enough 1")
            .await
            .is_err()
    );
    // The stored row holds the section, versioned.
    let store = Store::connect(&srv.db_url, &store::ConnectOptions::default())
        .await
        .unwrap();
    let row = store::WebSettingsStore::web_settings(&store, "https_api")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.version, row.updated_by.as_str()), (2, "admin"));
    srv.stop().await;
}

/// Browser: add an API user, then take its address out of the permitted IPs:
/// the client logged in from it is refused at its next request.
#[tokio::test]
async fn the_page_in_a_browser_changes_permitted_ips_at_once() {
    if !browser_available() {
        return;
    }
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "").await;
    let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_port = receiver.local_addr().unwrap().port().to_string();
    let mut run = admin_browser(
        &srv,
        "apiconfig.mjs",
        &[("RECEIVER_PORT", receiver_port.as_str())],
    );
    run.step("user-added", Duration::from_secs(60)).await;
    let c = client(Some("127.0.0.1"));
    let cookie = srv.login(&c, "crm", "browser pass 1").await.unwrap();
    let status = json!({"action":"getSystemStatus","cookie":cookie});
    assert_eq!(srv.api(&c, status.clone()).await["status"], 0);
    run.go("user-checked").await;

    run.step("ips-changed", Duration::from_secs(60)).await;
    assert_eq!(srv.api(&c, status).await["status"], -6);
    assert!(srv.login(&c, "crm", "browser pass 1").await.is_err());
    let c2 = client(Some("127.0.0.2"));
    assert!(srv.login(&c2, "crm", "browser pass 1").await.is_ok());
    run.go("ips-checked").await;
    run.step("receiver-added", Duration::from_secs(60)).await;
    // The receiver saved in the browser is in force: pbxgate connects to it.
    tokio::time::timeout(Duration::from_secs(20), receiver.accept())
        .await
        .expect("pbxgate connects to the receiver saved on the page")
        .unwrap();
    run.finish(Duration::from_secs(60)).await;
    srv.stop().await;
}

/// SIGHUP re-reads the file's `[https_api_old]`: keys the file now sets win,
/// the page's values stay for the others.
#[tokio::test]
async fn a_reload_keeps_the_pages_old_api_values_for_keys_the_file_leaves_out() {
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "# legacy\n").await;
    let admin = AdminClient::new(&srv).await;
    let (p1, p2) = (free_port(), free_port());
    let bind1 = format!("127.0.0.1:{p1}");
    let a = admin
        .post_old(
            &[
                ("enable", "on"),
                ("tls_bind_address", &bind1),
                ("username", "billing"),
                ("password", "Sekr1t-old"),
                ("permitted_ips", "127.0.0.1"),
            ],
            &[],
        )
        .await;
    assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
    let old = Old::new(p1, None);
    assert_eq!(
        old.basic("/cdrapi?format=json", "billing", "Sekr1t-old")
            .await
            .status(),
        200
    );

    // The file sets enable_pmsapi only: the page's listener stays as it was.
    hup(&srv, "# legacy\n[https_api_old]\nenable_pmsapi = true\n").await;
    assert_eq!(
        old.basic("/cdrapi?format=json", "billing", "Sekr1t-old")
            .await
            .status(),
        200
    );
    assert!(
        admin
            .page()
            .await
            .contains("id=\"old-pmsapi\" checked disabled")
    );

    // The file now sets the address: it wins; the page's credentials stay.
    hup(
        &srv,
        &format!("# legacy\n[https_api_old]\ntls_bind_address = \"127.0.0.1:{p2}\"\n"),
    )
    .await;
    wait_refused(p1).await;
    let old2 = Old::new(p2, None);
    assert_eq!(
        old2.basic("/cdrapi?format=json", "billing", "Sekr1t-old")
            .await
            .status(),
        200
    );
    let page = admin.page().await;
    assert!(
        page.contains("(<code>https_api_old.tls_bind_address</code>)"),
        "{page}"
    );
    srv.stop().await;
}

/// Browser, real calls: Call Control switched on for a user on the page makes
/// the next inbound call wait; it is accepted by clicking on the Live calls
/// page; switched off again, inbound calls go on at once.
#[tokio::test]
async fn call_control_switched_on_the_page_holds_calls_accepted_by_clicking() {
    use super::live::{cdr_of, connected_ami, decision, hang_up_everything, inbound};
    let Some(rig) = asterisk::testing::rig() else {
        return;
    };
    if !browser_available() {
        return;
    }
    let _one_at_a_time = crate::calls::CALLS.lock().await;
    let ami = connected_ami(&rig).await;
    hang_up_everything(&ami).await;
    let db = last_db(dbs().await);
    // No API user in the file: the page's users are the only ones.
    let config = crate::calls::pbx_config(&rig, "").replace(
        "[https_api]\npassword = \"pw\"\n",
        "[call_control]\ntimeout_secs = 40\n",
    );
    let srv = Server::start(&db, &config).await;
    crate::calls::wait_connected(&srv).await;
    let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    let store = open_store(&srv).await;
    let (held_caller, free_caller) = ("+15557300001", "+15557300002");
    let mut run = admin_browser(&srv, "callcontrol.mjs", &[("CALLER", held_caller)]);
    run.step("cc-on", Duration::from_secs(60)).await;
    inbound(&ami, "5550100", held_caller, 60_000, 2).await;
    run.go("call-placed").await;
    run.step("accepted", Duration::from_secs(60)).await;
    let cdr = cdr_of(&store, held_caller).await;
    assert_eq!(
        (cdr.get("disposition"), cdr.get("dst")),
        ("ANSWERED", "1000")
    );
    let d = decision(&store, held_caller).await;
    assert_eq!(
        (d.outcome.as_str(), d.decided_by.as_str()),
        ("accepted", "admin:admin")
    );

    run.step("cc-off", Duration::from_secs(60)).await;
    run.finish(Duration::from_secs(30)).await;
    // Off: the next call is not held (it would wait 40 s) and reaches 1000.
    let placed = tokio::time::Instant::now();
    inbound(&ami, "5550100", free_caller, 60_000, 2).await;
    let cdr = cdr_of(&store, free_caller).await;
    assert_eq!(
        (cdr.get("disposition"), cdr.get("dst")),
        ("ANSWERED", "1000")
    );
    assert!(
        placed.elapsed() < Duration::from_secs(30),
        "the call waited for a decision: {:?}",
        placed.elapsed()
    );
    assert!(
        !store
            .recent_decisions(1000)
            .await
            .unwrap()
            .iter()
            .any(|d| d.caller == free_caller && d.outcome == "timeout"),
        "the call was held"
    );
    srv.stop().await;
}

/// A setting saved on one node is in force on another within a second
/// (PostgreSQL's NOTIFY; the 2 s poll alone misses most of these deadlines):
/// the new API switched off and on four times on node A, node B answering
/// `challenge` with -47 / 0 each time.
#[tokio::test]
async fn a_setting_saved_on_one_node_is_in_force_on_another_within_a_second() {
    let Some(db) = dbs()
        .await
        .into_iter()
        .find(|d| d.backend == store::Backend::Postgres)
    else {
        store::testing::record_skip("several nodes need PostgreSQL");
        return;
    };
    let a = Server::start(&db, "").await;
    let b = Server::start(&db, "").await;
    let admin = AdminClient::new(&a).await;
    let c = client(None);
    for round in 0..4 {
        let on = round % 2 == 1;
        let fields: &[(&str, &str)] = if on { &[("enable", "on")] } else { &[] };
        let saved = admin.post("/admin/api-config/new", fields).await;
        assert_eq!(saved.0, StatusCode::SEE_OTHER, "{}", saved.1);
        let expect = if on { 0 } else { -47 };
        let asked = std::time::Instant::now();
        wait_until(
            format!("node B to answer challenge with {expect} (round {round})"),
            Duration::from_secs(1),
            async || {
                let r = b
                    .api(&c, json!({"action": "challenge", "user": "cdrapi"}))
                    .await;
                if r["status"] == expect {
                    Ok(())
                } else {
                    Err(r)
                }
            },
        )
        .await;
        assert!(asked.elapsed() < Duration::from_secs(1));
    }
    b.stop().await;
    a.stop().await;
}
