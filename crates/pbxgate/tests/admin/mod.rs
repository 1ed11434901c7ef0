//! The admin web interface: `pbxgate admin set-password`, login with CSRF
//! tokens, the session cookie, lockout shared with the API, logout.

pub(crate) mod apiconfig;

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use store::{AdminStore, AuditStore, ConnectOptions, Store};
use tokio::io::AsyncWriteExt;

use crate::kit::*;

mod cdr;
pub(crate) mod live;
mod recordings_listing;
mod status;

/// Form fields of a POST.
type Fields<'a> = Vec<(&'a str, &'a str)>;

const PASSWORD: &str = "correct horse battery";

/// A browser-like client that shows redirects instead of following them.
/// HTTP/1.1: twice in CI (2 of 5 full runs) an old-API form posted over h2
/// right after another reached the handler cut short ("incomplete multipart
/// stream"), not reproduced alone; h2 is covered by the Chromium tests, and
/// the cause is noted for a closer look (hyper ends an h2 request body
/// cleanly on a NO_ERROR reset).
fn browser(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .http1_only()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Runs `pbxgate admin set-password` with `input` on stdin: exit code, stdout, stderr.
async fn set_password(srv: &Server, username: Option<&str>, input: &str) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["admin", "set-password", "--config"])
        .arg(&srv.config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = username {
        cmd.args(["--username", u]);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn open_store(srv: &Server) -> Store {
    Store::connect(&srv.db_url, &ConnectOptions::default())
        .await
        .unwrap()
}

/// The `name=value` part of the Set-Cookie header for `name`, and the whole header.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| {
            let pair = v.split(';').next().unwrap().to_owned();
            (pair, v.to_owned())
        })
}

/// The value of the hidden `csrf` field of a page.
fn csrf_field(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// GET /admin/login: the login CSRF cookie (`name=value`) and the form's token.
async fn login_form(srv: &Server, c: &reqwest::Client) -> (String, String) {
    let resp = c.get(srv.url("/admin/login")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (cookie, _) = set_cookie(&resp, "pbxgate_admin_csrf").expect("login CSRF cookie");
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("<form method=\"post\" action=\"/admin/login\">"),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets: {html}"
    );
    (cookie, csrf_field(&html))
}

async fn post_login(
    srv: &Server,
    c: &reqwest::Client,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = c.post(srv.url("/admin/login")).form(fields);
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    req.send().await.unwrap()
}

/// A full login: the session cookie (`pbxgate_admin=...`) and its Set-Cookie header.
async fn log_in(
    srv: &Server,
    c: &reqwest::Client,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let (cookie, token) = login_form(srv, c).await;
    post_login(
        srv,
        c,
        Some(&cookie),
        &[("csrf", &token), ("username", user), ("password", password)],
    )
    .await
}

async fn get(
    srv: &Server,
    c: &reqwest::Client,
    path: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut req = c.get(srv.url(path));
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    req.send().await.unwrap()
}

fn location(resp: &reqwest::Response) -> &str {
    resp.headers()[LOCATION].to_str().unwrap()
}

#[tokio::test]
async fn set_password_login_session_and_logout() {
    for db in dbs().await {
        let srv = Server::start(&db, "").await;
        let c = browser("127.0.0.1");

        // Too short and empty passwords are refused with a clear message; nothing is stored.
        let (code, _, err) = set_password(&srv, None, "short\n").await;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("too short: at least 8 characters"), "{err}");
        let (code, _, err) = set_password(&srv, None, "\n").await;
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("empty"), "{err}");
        let store = open_store(&srv).await;
        assert_eq!(store.admin_password_hash("admin").await.unwrap(), None);

        let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("admin account admin: password created"),
            "{out}"
        );
        assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
        // An argon2id PHC string, never the password.
        let hash = store.admin_password_hash("admin").await.unwrap().unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains(PASSWORD));

        // Without a session every admin path leads to the login page.
        for path in ["/admin/", "/admin", "/admin/config", "/admin/x/y"] {
            let r = get(&srv, &c, path, None).await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
            assert_eq!(location(&r), "/admin/login", "{path}");
        }
        // A cookie the server never issued is no session.
        let r = get(&srv, &c, "/admin/", Some("pbxgate_admin=00ff")).await;
        assert_eq!(location(&r), "/admin/login");

        // Log in: a redirect to /admin/ with the session cookie.
        let resp = log_in(&srv, &c, "admin", PASSWORD).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&resp), "/admin/");
        let (session, header) = set_cookie(&resp, "pbxgate_admin").expect("session cookie");
        let id = session.strip_prefix("pbxgate_admin=").unwrap();
        assert_eq!(id.len(), 64, "32 random bytes in hex: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/admin"] {
            assert!(
                header.split("; ").any(|a| a == attr),
                "{attr} missing: {header}"
            );
        }

        // The home page is the status page; every page says who is logged in
        // and offers a logout form.
        let r = get(&srv, &c, "/admin/", Some(&session)).await;
        assert_eq!(location(&r), "/admin/status");
        let r = get(&srv, &c, "/admin/status", Some(&session)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        assert!(
            html.contains("<span>admin</span> <button type=\"submit\">Log out</button>"),
            "{html}"
        );
        assert!(html.contains("action=\"/admin/logout\""), "{html}");
        let logout_token = csrf_field(&html);
        // The login page sends a logged-in admin home.
        let r = get(&srv, &c, "/admin/login", Some(&session)).await;
        assert_eq!(location(&r), "/admin/");
        let r = get(&srv, &c, "/admin/nothing-here", Some(&session)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        // The session is bound to the address it was issued to.
        let elsewhere = browser("127.0.0.2");
        let r = get(&srv, &elsewhere, "/admin/", Some(&session)).await;
        assert_eq!(location(&r), "/admin/login");

        // Logout without or with a wrong CSRF token: 403, the session lives on.
        for fields in [vec![], vec![("csrf", "0".repeat(64))]] {
            let r = c
                .post(srv.url("/admin/logout"))
                .header(COOKIE, &session)
                .form(&fields)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN);
            assert_eq!(
                get(&srv, &c, "/admin/status", Some(&session))
                    .await
                    .status(),
                StatusCode::OK
            );
        }
        // The login form's token is not the session's.
        let (_, login_token) = login_form(&srv, &c).await;
        let r = c
            .post(srv.url("/admin/logout"))
            .header(COOKIE, &session)
            .form(&[("csrf", &login_token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);

        let r = c
            .post(srv.url("/admin/logout"))
            .header(COOKIE, &session)
            .form(&[("csrf", &logout_token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/admin/login");
        let (cleared, _) = set_cookie(&r, "pbxgate_admin").unwrap();
        assert_eq!(cleared, "pbxgate_admin=");
        // The old cookie is dead on the server, not only in the browser.
        let r = get(&srv, &c, "/admin/", Some(&session)).await;
        assert_eq!(location(&r), "/admin/login");
        assert!(store.admin_session(id).await.unwrap().is_none());

        // Audit trail: the login (marked admin) and the logout.
        let events = store.recent_audit(100).await.unwrap();
        assert!(
            events.iter().any(|e| e.event == "login"
                && e.result == "ok"
                && e.detail == "admin"
                && e.username == "admin"),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.event == "logout" && e.detail == "admin"),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|e| e.event == "admin-password" && e.result == "created"),
            "{events:?}"
        );

        // Changing the password ends open sessions; the old password stops working.
        let resp = log_in(&srv, &c, "admin", PASSWORD).await;
        let (session, _) = set_cookie(&resp, "pbxgate_admin").unwrap();
        let (code, out, err) = set_password(&srv, Some("admin"), "another password 2\r\n").await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains("password changed; 1 open admin sessions ended"),
            "{out}"
        );
        assert_eq!(
            location(&get(&srv, &c, "/admin/", Some(&session)).await),
            "/admin/login"
        );
        assert_eq!(
            log_in(&srv, &c, "admin", PASSWORD).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            log_in(&srv, &c, "admin", "another password 2")
                .await
                .status(),
            StatusCode::SEE_OTHER
        );
        let hash2 = store.admin_password_hash("admin").await.unwrap().unwrap();
        store.close().await;

        // Neither passwords nor hashes nor session ids reach the log.
        let log = srv.stop().await;
        for secret in [PASSWORD, "another password 2", &hash, &hash2, id] {
            assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        }
        assert!(log.contains("login"), "{log}");
    }
}

#[tokio::test]
async fn login_tokens_must_be_issued_by_the_server() {
    use store::MetaStore;
    for db in dbs().await {
        let srv = Server::start(&db, "").await;
        let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
        assert_eq!(code, 0, "{out}{err}");
        let c = browser("127.0.0.1");
        // The form's token is signed by the installation's key, kept in the database.
        let (_, issued) = login_form(&srv, &c).await;
        let store = open_store(&srv).await;
        let hex = store
            .meta_get_or_init("admin_login_token_key", "unused")
            .await
            .unwrap();
        store.close().await;
        assert_eq!(hex.len(), 64, "{hex}");
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
        let key = ucm::httpauth::NonceKey::new(bytes);
        let now = u64::try_from(pbxgate::clock::now_ms()).unwrap();
        let other = ucm::httpauth::NonceKey::new([7; 32]);
        let mut tampered = issued.clone().into_bytes();
        tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).unwrap();
        // Cookie and field agree in every case: only the server's signature
        // and the token's age decide.
        for (what, token) in [
            ("a pair the client made up", "ab".repeat(32)),
            ("a short made-up pair", "x".to_owned()),
            ("another key's token", other.mint(now, 1)),
            ("a tampered token", tampered),
            (
                "a token issued two hours ago",
                key.mint(now - 2 * 3600 * 1000, 2),
            ),
            ("a token from the future", key.mint(now + 3600 * 1000, 3)),
        ] {
            let cookie = format!("pbxgate_admin_csrf={token}");
            let r = post_login(
                &srv,
                &c,
                Some(&cookie),
                &[
                    ("csrf", &token),
                    ("username", "admin"),
                    ("password", PASSWORD),
                ],
            )
            .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
            assert!(set_cookie(&r, "pbxgate_admin").is_none(), "{what}");
        }
        // A token the key signed a minute ago is accepted (the form is not
        // special: the signature is what is checked).
        let token = key.mint(now - 60_000, 4);
        let cookie = format!("pbxgate_admin_csrf={token}");
        let r = post_login(
            &srv,
            &c,
            Some(&cookie),
            &[
                ("csrf", &token),
                ("username", "admin"),
                ("password", PASSWORD),
            ],
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        // And so is the form's own.
        let cookie = format!("pbxgate_admin_csrf={issued}");
        let r = post_login(
            &srv,
            &c,
            Some(&cookie),
            &[
                ("csrf", &issued),
                ("username", "admin"),
                ("password", PASSWORD),
            ],
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let log = srv.stop().await;
        assert!(
            log.contains("CSRF token not issued by pbxgate or expired"),
            "{log}"
        );
    }
}

#[tokio::test]
async fn wrong_passwords_csrf_failures_and_lockout() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"apipw\"\n\
             [login_restriction]\nmax_failures = 3\nwindow_secs = 60\nban_secs = 3\n",
        )
        .await;
        let (code, out, err) = set_password(&srv, Some("root"), &format!("{PASSWORD}\n")).await;
        assert_eq!(code, 0, "{out}{err}");
        let c = browser("127.0.0.1");

        // CSRF: missing cookie, missing field, mismatch: 403 whatever the password.
        let (cookie, token) = login_form(&srv, &c).await;
        let cases: Vec<(Option<&str>, Fields)> = vec![
            (
                None,
                vec![
                    ("csrf", &token),
                    ("username", "root"),
                    ("password", PASSWORD),
                ],
            ),
            (
                Some(&cookie),
                vec![("username", "root"), ("password", PASSWORD)],
            ),
            (
                Some(&cookie),
                vec![
                    ("csrf", "abc"),
                    ("username", "root"),
                    ("password", PASSWORD),
                ],
            ),
            (
                Some("pbxgate_admin_csrf="),
                vec![("csrf", ""), ("username", "root"), ("password", PASSWORD)],
            ),
        ];
        for (cookie, fields) in &cases {
            let r = post_login(&srv, &c, *cookie, fields).await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{cookie:?} {fields:?}");
            assert!(set_cookie(&r, "pbxgate_admin").is_none());
        }
        // CSRF refusals do not count as failed logins.
        let ok = log_in(&srv, &c, "root", PASSWORD).await;
        assert_eq!(ok.status(), StatusCode::SEE_OTHER);

        // A wrong password and an unknown user look the same.
        let wrong = log_in(&srv, &c, "root", "wrong password").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(set_cookie(&wrong, "pbxgate_admin").is_none());
        let wrong = wrong.text().await.unwrap();
        assert!(wrong.contains("Wrong user name or password."), "{wrong}");
        let unknown = log_in(&srv, &c, "nobody", "wrong password").await;
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
        let unknown = unknown.text().await.unwrap();
        let strip = |html: &str| {
            html.replace(&csrf_field(html), "")
                .replace("nobody", "root")
        };
        assert_eq!(strip(&wrong), strip(&unknown));
        // API user credentials are not admin credentials.
        let third = log_in(&srv, &c, "cdrapi", "apipw").await;
        assert_eq!(third.status(), StatusCode::UNAUTHORIZED);

        // Three failures: the address is locked out, even with the right password,
        // and the lockout is the one the API shares.
        let locked = log_in(&srv, &c, "root", PASSWORD).await;
        assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(set_cookie(&locked, "pbxgate_admin").is_none());
        assert!(
            locked
                .text()
                .await
                .unwrap()
                .contains("Too many failed logins")
        );
        let api = client(Some("127.0.0.1"));
        assert_eq!(srv.login(&api, "cdrapi", "apipw").await, Err(-68));
        // Another address is not affected.
        let other = browser("127.0.0.2");
        assert_eq!(
            log_in(&srv, &other, "root", PASSWORD).await.status(),
            StatusCode::SEE_OTHER
        );

        // The ban (3 s) ends by itself: attempts refused during a ban are not
        // counted, so trying again until one is let through does not prolong it.
        let status = wait_until(
            "the 3 s ban on 127.0.0.1 to end",
            Duration::from_secs(20),
            async || match log_in(&srv, &c, "root", PASSWORD).await.status() {
                StatusCode::TOO_MANY_REQUESTS => Err(StatusCode::TOO_MANY_REQUESTS),
                other => Ok(other),
            },
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);

        let store = open_store(&srv).await;
        let events = store.recent_audit(100).await.unwrap();
        store.close().await;
        for result in ["wrong-password", "unknown-user", "banned"] {
            assert!(
                events.iter().any(|e| e.result == result),
                "{result}: {events:?}"
            );
        }
        assert!(
            events.iter().any(|e| e.result == "wrong-password"
                && e.detail == "admin"
                && e.username == "root"),
            "{events:?}"
        );
        let log = srv.stop().await;
        assert!(!log.contains(PASSWORD), "{log}");
        assert!(!log.contains("wrong password"), "{log}");
    }
}

#[tokio::test]
async fn admin_sessions_expire_when_idle() {
    for db in dbs().await {
        let srv = Server::start(&db, "[session]\nidle_timeout_secs = 1\n").await;
        let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
        assert_eq!(code, 0, "{out}{err}");
        let c = browser("127.0.0.1");
        let resp = log_in(&srv, &c, "admin", PASSWORD).await;
        let (session, _) = set_cookie(&resp, "pbxgate_admin").unwrap();
        assert_eq!(
            get(&srv, &c, "/admin/status", Some(&session))
                .await
                .status(),
            StatusCode::OK
        );
        // Idle past the 1 s timeout. A sleep on purpose: polling with the
        // session would use it, and each use slides its idle timeout.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert_eq!(
            location(&get(&srv, &c, "/admin/", Some(&session)).await),
            "/admin/login"
        );
        srv.stop().await;
    }
}

/// A browser script logged in as `admin` / [`PASSWORD`] against `srv`, with `extra` variables.
pub(crate) fn admin_browser(srv: &Server, script: &str, extra: &[(&str, &str)]) -> BrowserRun {
    let url = srv.url("");
    let mut env = vec![
        ("PBXGATE_URL", url.as_str()),
        ("ADMIN_USER", "admin"),
        ("ADMIN_PASSWORD", PASSWORD),
    ];
    env.extend_from_slice(extra);
    BrowserRun::start(script, &env)
}

/// Browser: the login page in chromium, a wrong then the right password, logout.
#[tokio::test]
async fn the_login_page_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "").await;
    let (code, out, err) = set_password(&srv, None, &format!("{PASSWORD}\n")).await;
    assert_eq!(code, 0, "{out}{err}");
    let mut run = admin_browser(&srv, "login.mjs", &[]);
    run.step("logged-in", Duration::from_secs(60)).await;
    let store = open_store(&srv).await;
    // The script goes on to log out without waiting: the login need not be the newest event.
    let events = store.recent_audit(10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == "login" && e.result == "ok" && e.detail == "admin"),
        "{events:?}"
    );
    run.finish(Duration::from_secs(30)).await;
    let events = store.recent_audit(10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event == "logout" && e.detail == "admin"),
        "{events:?}"
    );
    srv.stop().await;
}

/// Issue 15 point 1: a burst of concurrent wrong logins from one address gets
/// no more password checks than the login restriction allows (each attempt is
/// counted before it is checked), and the argon2 checks that do run are
/// bounded: beyond `web.password_checks` attempts wait, and those that wait
/// longer than `web.password_check_wait_secs` get 503 with Retry-After.
#[tokio::test]
async fn admin_login_bursts_are_bounded() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"apipw\"\n\
             [web]\npassword_checks = 1\npassword_check_wait_secs = 0\n\
             [login_restriction]\nmax_failures = 4\nwindow_secs = 60\nban_secs = 60\n\
             whitelist = [\"127.0.0.3\"]\n",
        )
        .await;
        let (code, out, err) = set_password(&srv, Some("root"), &format!("{PASSWORD}\n")).await;
        assert_eq!(code, 0, "{out}{err}");

        // 60 at once from 127.0.0.1: at most 4 are checked (401 or 503), the rest 429.
        let c = browser("127.0.0.1");
        let (cookie, token) = login_form(&srv, &c).await;
        let burst = (0..60).map(|i| {
            let (c, cookie, token, srv) = (c.clone(), cookie.clone(), token.clone(), &srv);
            async move {
                let pw = format!("wrong password {i}");
                let fields = [
                    ("csrf", token.as_str()),
                    ("username", "root"),
                    ("password", pw.as_str()),
                ];
                post_login(srv, &c, Some(&cookie), &fields).await.status()
            }
        });
        let statuses = futures_util::future::join_all(burst).await;
        let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
        let (checked, busy, refused) = (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::SERVICE_UNAVAILABLE),
            count(StatusCode::TOO_MANY_REQUESTS),
        );
        assert_eq!(checked + busy + refused, 60, "{statuses:?}");
        assert!(checked >= 1 && checked + busy <= 4, "{statuses:?}");
        let store = open_store(&srv).await;
        let events = store.recent_audit(1000).await.unwrap();
        let wrong = events
            .iter()
            .filter(|e| e.result == "wrong-password" && e.ip == "127.0.0.1")
            .count();
        assert_eq!(wrong, checked, "{events:?}");

        // A whitelisted address is not restricted, but the checks still queue:
        // with one slot and no wait, a burst gets 503s with Retry-After.
        let w = browser("127.0.0.3");
        let (cookie, token) = login_form(&srv, &w).await;
        let burst = (0..20).map(|_| {
            let (w, cookie, token, srv) = (w.clone(), cookie.clone(), token.clone(), &srv);
            async move {
                let fields = [
                    ("csrf", token.as_str()),
                    ("username", "root"),
                    ("password", "wrong password"),
                ];
                let r = post_login(srv, &w, Some(&cookie), &fields).await;
                (r.status(), r.headers().get("retry-after").cloned())
            }
        });
        let answers = futures_util::future::join_all(burst).await;
        let busy: Vec<_> = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE)
            .collect();
        assert!(!busy.is_empty(), "{answers:?}");
        assert!(busy.iter().all(|(_, ra)| ra.is_some()), "{answers:?}");
        assert!(
            answers
                .iter()
                .all(|(s, _)| *s == StatusCode::UNAUTHORIZED
                    || *s == StatusCode::SERVICE_UNAVAILABLE),
            "{answers:?}"
        );
        // And the right password still works once the burst is over.
        assert_eq!(
            log_in(&srv, &w, "root", PASSWORD).await.status(),
            StatusCode::SEE_OTHER
        );
        store.close().await;
        let log = srv.stop().await;
        assert!(log.contains("every password check slot busy"), "{log}");
        assert!(!log.contains("panicked"), "{log}");
    }
}
