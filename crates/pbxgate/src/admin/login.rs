//! Admin accounts (argon2id hashes set by `pbxgate admin set-password`),
//! login and logout, and the sessions kept in the store with their CSRF token.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use store::{AdminSession, AdminStore, MetaStore};
use subtle::ConstantTimeEq;

use super::page::{Page, escape, forbidden, internal, redirect};
use crate::admin::App;
use crate::clock::now_ms;
use crate::error::ActionError;
use crate::error::{Error, Result};

/// The session cookie.
pub const SESSION_COOKIE: &str = "pbxgate_admin";
/// The CSRF token of the login form, in a cookie and the form's field. The
/// server issues it (an HMAC over its issue time and a random part, see
/// [`login_token`]): a value the server did not sign, or older than
/// [`LOGIN_TOKEN_TTL_MS`], is refused even when cookie and field agree.
pub const LOGIN_CSRF_COOKIE: &str = "pbxgate_admin_csrf";
/// How long a login form may stay open before its token is refused.
pub const LOGIN_TOKEN_TTL_MS: u64 = 60 * 60 * 1000;
/// The `meta` key of the login tokens' HMAC key: in the database, so that
/// every process sharing it accepts the others' forms.
const LOGIN_KEY_META: &str = "admin_login_token_key";
/// The account `pbxgate admin set-password` sets when no `--username` is given.
pub const DEFAULT_USERNAME: &str = "admin";
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longer passwords are refused before hashing (bounds the work per attempt).
pub const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_USERNAME_CHARS: usize = 64;

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
}

// ---------------------------------------------------------------- passwords

/// Why a new admin password is refused.
pub fn check_new_password(password: &str) -> std::result::Result<(), String> {
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Why an admin user name is refused.
pub fn check_username(username: &str) -> std::result::Result<(), String> {
    if username.is_empty() {
        return Err("the user name is empty".into());
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(format!(
            "the user name is too long: at most {MAX_USERNAME_CHARS} characters"
        ));
    }
    if username
        .chars()
        .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("the user name must not contain spaces or control characters".into());
    }
    Ok(())
}

/// An argon2id hash of `password` with a fresh random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Random(e.to_string()))?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::PasswordHash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`; false for a malformed hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A hash that no password typed at the login form matches, verified for
/// unknown users so that the time taken does not tell which users exist.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        let mut b = [0u8; 32];
        let random = getrandom::fill(&mut b).is_ok();
        let seed: String = b.iter().map(|x| format!("{x:02x}")).collect();
        // Longer than any password the form accepts, so it can never match.
        let password = format!("{seed}{}", "x".repeat(MAX_PASSWORD_BYTES));
        match (random, hash_password(&password)) {
            (true, Ok(h)) => h,
            // Unparsable: verification fails (faster, but still never succeeds).
            _ => String::new(),
        }
    })
}

/// Every password check slot stayed busy for `web.password_check_wait_secs`.
struct Busy;

/// Checks a login off the async threads (argon2 takes tens of milliseconds
/// and 19 MiB each): at most `web.password_checks` at once, so that a burst
/// of attempts queues (and times out) instead of taking memory and threads.
async fn password_matches(
    app: &App,
    username: &str,
    password: &str,
) -> std::result::Result<Result<Option<bool>>, Busy> {
    let wait = app.settings.net.password_check_wait;
    let permit = match tokio::time::timeout(wait, app.password_checks.clone().acquire_owned()).await
    {
        Ok(Ok(p)) => p,
        _ => return Err(Busy),
    };
    let stored = match app.store.admin_password_hash(username).await {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.into())),
    };
    let known = stored.is_some();
    let hash = stored.unwrap_or_else(|| decoy_hash().to_owned());
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        verify_password(&password, &hash)
    })
    .await
    .unwrap_or(false);
    Ok(Ok(known.then_some(ok)))
}

async fn too_many_failures(app: &App, username: &str) -> Response {
    login_form(
        app,
        StatusCode::TOO_MANY_REQUESTS,
        Some("Too many failed logins from your address. Try again later."),
        username,
    )
    .await
}

// ---------------------------------------------------------------- tokens and cookies

fn random_token() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Error::Random(e.to_string()))?;
    Ok(ucm::auth::hex(&b))
}

pub(crate) fn tokens_match(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> Option<HeaderValue> {
    let age = max_age.map_or(String::new(), |a| format!("; Max-Age={a}"));
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/admin{age}"
    ))
    .ok()
}

fn clear_cookie(name: &str) -> Option<HeaderValue> {
    set_cookie(name, "", Some(0))
}

// ---------------------------------------------------------------- sessions

/// The session the request presents, if valid; slides its idle timeout.
pub(crate) async fn current_session(
    app: &App,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Option<AdminSession>> {
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    Ok(app.sessions.current(id, ip).await?)
}

/// Drops admin sessions idle for longer than `session.idle_timeout_secs`.
pub async fn prune(app: &App) -> std::result::Result<(), store::Error> {
    app.sessions.prune().await
}

/// The key login tokens are signed with, created on first start: in the
/// database, so that every process sharing it accepts the others' forms. Read
/// once at start (`server::prepare`), not per request.
pub async fn login_key(store: &store::Store) -> Result<ucm::httpauth::NonceKey> {
    let fresh = random_token()?;
    let hex = store.meta_get_or_init(LOGIN_KEY_META, &fresh).await?;
    let key = ucm::auth::unhex(&hex)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            Error::StoredValue(format!(
                "{LOGIN_KEY_META} is not 64 hex digits; delete that meta row to make a new one"
            ))
        })?;
    Ok(ucm::httpauth::NonceKey::new(key))
}

/// A fresh login token: issue time (ms) and a random part, signed.
fn login_token(app: &App) -> Result<String> {
    let issued = u64::try_from(now_ms()).unwrap_or(0);
    Ok(app.admin_login_key.mint(issued, crate::random::u64()?))
}

/// Whether `token` is one this installation issued within the last
/// [`LOGIN_TOKEN_TTL_MS`] (a small allowance for another node's clock).
fn login_token_valid(app: &App, token: &str) -> bool {
    let now = u64::try_from(now_ms()).unwrap_or(0);
    app.admin_login_key.check(token).is_some_and(|issued| {
        issued <= now.saturating_add(60_000) && now.saturating_sub(issued) <= LOGIN_TOKEN_TTL_MS
    })
}

/// The login form with a fresh CSRF token (also set as a cookie).
async fn login_form(
    app: &App,
    status: StatusCode,
    error: Option<&str>,
    username: &str,
) -> Response {
    let token = match login_token(app) {
        Ok(t) => t,
        Err(e) => return internal(&e),
    };
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let body = format!(
        "<h2>Log in</h2>{error}<form method=\"post\" action=\"/admin/login\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <label for=\"username\">User name</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{user}\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>",
        user = escape(username),
    );
    let mut resp = Page::new("Log in").status(status).render(&body);
    if let Some(c) = set_cookie(LOGIN_CSRF_COOKIE, &token, None) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

async fn login_page(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    match current_session(&app, &headers, peer.ip().to_canonical()).await {
        Ok(Some(_)) => redirect("/admin/"),
        Ok(None) => login_form(&app, StatusCode::OK, None, DEFAULT_USERNAME).await,
        Err(e) => internal(&e),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: std::result::Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let ip = peer.ip().to_canonical();
    let Ok(Form(form)) = form else {
        return forbidden();
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if !tokens_match(expected, &form.csrf) {
        tracing::warn!(%ip, "admin login refused: missing or wrong CSRF token");
        return forbidden();
    }
    if !login_token_valid(&app, &form.csrf) {
        tracing::warn!(%ip, "admin login refused: CSRF token not issued by pbxgate or expired");
        return forbidden();
    }
    let user = form.username.trim();
    // Counted before the password is checked, so that a burst of concurrent
    // attempts from one address gets no more checks than the restriction allows.
    match app.auth.begin_attempt(ip).await {
        Ok(()) => {}
        Err(ActionError::Internal(e)) => return internal(&e),
        Err(_) => return too_many_failures(&app, &form.username).await,
    }
    let checked = if check_username(user).is_err() || form.password.len() > MAX_PASSWORD_BYTES {
        Ok(None)
    } else {
        match password_matches(&app, user, &form.password).await {
            Err(Busy) => {
                tracing::warn!(%ip, user = %crate::net::loggable(user), "admin login refused: every password check slot busy for web.password_check_wait_secs (503)");
                let mut resp = login_form(
                    &app,
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("The server is busy checking other logins. Try again in a few seconds."),
                    user,
                )
                .await;
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                return resp;
            }
            Ok(r) => r,
        }
    };
    let outcome = match checked {
        Ok(Some(true)) => Ok(()),
        Ok(Some(false)) => Err("wrong-password"),
        Ok(None) => Err("unknown-user"),
        Err(e) => return internal(&e),
    };
    // The audit trail; a success clears the address's failure count.
    if let Err(ActionError::Internal(e)) = app.auth.finish_attempt(user, ip, outcome, "admin").await
    {
        return internal(&e);
    }
    if outcome.is_err() {
        return login_form(
            &app,
            StatusCode::UNAUTHORIZED,
            Some("Wrong user name or password."),
            user,
        )
        .await;
    }
    let (id, csrf) = match (random_token(), random_token()) {
        (Ok(id), Ok(csrf)) => (id, csrf),
        (Err(e), _) | (_, Err(e)) => return internal(&e),
    };
    let now = now_ms();
    let session = AdminSession {
        id,
        username: user.to_owned(),
        csrf,
        ip: ip.to_string(),
        created_ms: now,
        last_seen_ms: now,
    };
    if let Err(e) = app.sessions.create(&session).await {
        return internal(&e);
    }
    let mut resp = redirect("/admin/");
    let h = resp.headers_mut();
    if let Some(c) = set_cookie(SESSION_COOKIE, &session.id, None) {
        h.append(header::SET_COOKIE, c);
    }
    if let Some(c) = clear_cookie(LOGIN_CSRF_COOKIE) {
        h.append(header::SET_COOKIE, c);
    }
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: std::result::Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let ip = peer.ip().to_canonical();
    let s = match current_session(&app, &headers, ip).await {
        Ok(Some(s)) => s,
        Ok(None) => return redirect("/admin/login"),
        Err(e) => return internal(&e),
    };
    let Ok(Form(form)) = form else {
        return forbidden();
    };
    if !tokens_match(&s.csrf, &form.csrf) {
        tracing::warn!(%ip, user = %s.username, "admin logout refused: missing or wrong CSRF token");
        return forbidden();
    }
    if let Err(e) = app.sessions.end(&s.id).await {
        return internal(&e);
    }
    audit_logout(&app, &s.username, ip).await;
    tracing::info!(user = %s.username, %ip, "admin logout");
    let mut resp = redirect("/admin/login");
    if let Some(c) = clear_cookie(SESSION_COOKIE) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

async fn audit_logout(app: &App, user: &str, ip: IpAddr) {
    use store::AuditStore;
    let e = store::AuditEvent {
        at_ms: now_ms(),
        event: store::AuditEventKind::Logout,
        username: user.into(),
        ip: ip.to_string(),
        result: "ok".into(),
        detail: "admin".into(),
    };
    if let Err(err) = app.store.record_audit(&e).await {
        tracing::error!(user, %ip, error = %err, "cannot write the audit trail");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        // A fresh salt each time.
        assert_ne!(h, hash_password("correct horse").unwrap());
        assert!(!verify_password("anything", decoy_hash()));
    }

    #[test]
    fn new_passwords_must_be_long_enough() {
        assert!(check_new_password("").is_err());
        assert!(check_new_password("1234567").is_err());
        assert!(check_new_password("12345678").is_ok());
        // Characters, not bytes.
        assert!(check_new_password("ééééééé").is_err());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; pbxgate_admin=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, "pbxgate_admin"), Some("xyz"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "pbxgate"), None);
    }
}
