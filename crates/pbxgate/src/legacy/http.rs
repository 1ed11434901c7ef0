//! The old API's requests, in order: the permitted IPs (403), HTTP
//! authentication (401, or 403 under the login restriction), then the route:
//! `/cdrapi`, `/recapi`, `/pmsapi`, anything else 404. One access-log line per
//! request (never the query string, which can carry a PMS token, nor the
//! `Authorization` header).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use ucm::Status;
use ucm::cdrapi::{Mode, query_pairs, query_pairs_lenient};

use super::App;
use super::Shared;
use crate::config::OldApiSettings;
use crate::error::ActionError;
use crate::error::Error;
use crate::net::loggable;
use crate::recordings::Miss;
use crate::sessions::digest::Verdict;

#[derive(Clone)]
struct Legacy {
    app: App,
    shared: Arc<Shared>,
}

pub(super) fn router(app: App, shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Legacy { app, shared })
}

/// A plain-text answer (errors: the body says what is wrong).
fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(
    State(l): State<Legacy>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let ip = peer.ip().to_canonical();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut user = String::new();
    let response = serve(&l, ip, request, &mut user).await;
    tracing::info!(
        target: "pbxgate::access",
        api = "old",
        %ip,
        user = %loggable(&user),
        method = %loggable(method.as_str()),
        path = %loggable(&path),
        status = response.status().as_u16(),
        us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    );
    response
}

async fn serve(l: &Legacy, ip: IpAddr, request: Request, user: &mut String) -> Response {
    match route(l, ip, request, user).await {
        Ok(response) => response,
        Err(refused) => answer(l, refused),
    }
}

/// Why the old listener did not serve a request. [`answer`] is the one place
/// these become HTTP statuses and texts.
enum Refused {
    /// A connection kept open across a reload that disabled the API.
    Disabled,
    NotPermitted(IpAddr),
    NoSuchRoute,
    Method,
    /// The login restriction holds the address.
    Restricted,
    /// No or wrong credentials: 401 with fresh challenges.
    Unauthorized {
        stale: bool,
    },
    DigestUriMismatch,
    /// A query string the route cannot read (the reason, safe to show).
    BadQuery(String),
    /// `/pmsapi`'s query is malformed (its text may hold the PMS token).
    BadPmsQuery,
    PmsapiOff,
    /// An action failed (the database, the login restriction's store).
    Action(ActionError),
    /// recapi found nothing to send, or failed.
    Recording(Miss),
}

/// The one mapping of the old listener's refusals to HTTP.
fn answer(l: &Legacy, refused: Refused) -> Response {
    match refused {
        Refused::Disabled => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: the old API is disabled (https_api_old.enable = false)\n",
        ),
        Refused::NotPermitted(ip) => text(
            StatusCode::FORBIDDEN,
            format!(
                "403 Forbidden: the address {ip} is not permitted to use this API \
                 (Permitted IP(s) of the HTTPS API (Old), https_api_old.permitted_ips)\n"
            ),
        ),
        Refused::NoSuchRoute => text(
            StatusCode::NOT_FOUND,
            "404 Not Found: the old API serves /cdrapi, /recapi and /pmsapi\n",
        ),
        Refused::Method => {
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: use GET (or HEAD)\n",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        Refused::Restricted => text(
            StatusCode::FORBIDDEN,
            "403 Forbidden: too many failed logins from this address; \
             try again later (login restriction)\n",
        ),
        Refused::Unauthorized { stale } => unauthorized(l, stale),
        Refused::DigestUriMismatch => text(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: the Digest uri does not match the request\n",
        ),
        Refused::BadQuery(reason) => text(
            StatusCode::BAD_REQUEST,
            format!("400 Bad Request: {reason}\n"),
        ),
        Refused::BadPmsQuery => text(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: malformed query string (percent-encoding or UTF-8)\n",
        ),
        Refused::PmsapiOff => text(
            StatusCode::FORBIDDEN,
            "403 Forbidden: pmsapi is not enabled (\"Enable PMSAPI\", https_api_old.enable_pmsapi)\n",
        ),
        Refused::Action(e) => match e.status() {
            Status::LoginRestriction => answer(l, Refused::Restricted),
            // A busy database is worth a retry.
            Status::SystemTimeout => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: the database is busy; retry\n",
            ),
            _ => internal(),
        },
        Refused::Recording(miss) => {
            let status = miss.http_status();
            let detail = match &miss {
                Miss::Failed(_) => String::new(),
                other => format!(": {other}"),
            };
            text(
                status,
                format!(
                    "{} {}{detail}\n",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or("")
                ),
            )
        }
    }
}

async fn route(
    l: &Legacy,
    ip: IpAddr,
    request: Request,
    user: &mut String,
) -> Result<Response, Refused> {
    let settings = l.shared.settings();
    if !settings.enable {
        return Err(Refused::Disabled);
    }
    if !settings.permitted_ips.contains(ip) {
        tracing::warn!(
            %ip,
            "old API: request refused: the address is not in https_api_old.permitted_ips"
        );
        return Err(Refused::NotPermitted(ip));
    }
    let (parts, _body) = request.into_parts();
    authenticate(
        l,
        &settings,
        ip,
        &parts.method,
        &parts.uri,
        &parts.headers,
        user,
    )
    .await?;

    let route = parts.uri.path();
    if !matches!(route, "/cdrapi" | "/recapi" | "/pmsapi") {
        return Err(Refused::NoSuchRoute);
    }
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(Refused::Method);
    }
    let raw = parts.uri.query().unwrap_or("");
    match route {
        "/cdrapi" => cdrapi(&l.app, ip, user, raw).await,
        "/recapi" => recapi(&l.app, &settings, ip, raw, &parts.headers).await,
        _ => pmsapi(&l.app, &settings, ip, raw).await,
    }
}

/// `Ok` when the request carries the old API's credentials; else the answer.
async fn authenticate(
    l: &Legacy,
    settings: &OldApiSettings,
    ip: IpAddr,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    user: &mut String,
) -> Result<(), Refused> {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let verdict = l.shared.auth.check(settings, method, target, headers);
    // The login restriction: attempts with credentials from a restricted
    // address are refused, right or wrong.
    if !matches!(verdict, Verdict::Challenge(_)) {
        match l.app.auth.restriction(ip).await {
            Ok(()) => {}
            Err(e @ ActionError::Status(Status::LoginRestriction)) => {
                return Err(Refused::Action(e));
            }
            Err(e) => {
                tracing::error!(%ip, error = ?e, "old API: cannot check the login restriction");
                return Err(Refused::Action(e));
            }
        }
    }
    match verdict {
        Verdict::Ok(name) => {
            *user = name;
            if l.shared.auth.succeeded_after_failure(ip)
                && let Err(e) = l.app.auth.record_login(user, ip, Ok(()), "old-api").await
            {
                tracing::warn!(%ip, error = ?e, "old API: cannot record the login");
            }
            Ok(())
        }
        Verdict::Challenge(reason) => {
            tracing::debug!(%ip, reason, "old API: authentication required");
            Err(Refused::Unauthorized { stale: false })
        }
        Verdict::Stale(name) => {
            *user = name;
            tracing::debug!(%ip, "old API: stale Digest nonce");
            Err(Refused::Unauthorized { stale: true })
        }
        Verdict::NoPassword(name) => {
            *user = name;
            tracing::debug!(%ip, "old API: refused: https_api_old.password is empty");
            Err(Refused::Unauthorized { stale: false })
        }
        Verdict::Wrong(name, reason) => {
            *user = name;
            l.shared.auth.failed(ip);
            if let Err(e) = l
                .app
                .auth
                .record_login(user, ip, Err(reason), "old-api")
                .await
            {
                tracing::warn!(%ip, error = ?e, "old API: cannot record the failed login");
            }
            Err(Refused::Unauthorized { stale: false })
        }
        Verdict::UriMismatch(name) => {
            *user = name;
            Err(Refused::DigestUriMismatch)
        }
    }
}

fn internal() -> Response {
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 Internal Server Error\n",
    )
}

/// 401 with a fresh Digest challenge, then a Basic one.
fn unauthorized(l: &Legacy, stale: bool) -> Response {
    let random = match crate::random::u64() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "old API: cannot make a nonce");
            return internal();
        }
    };
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "401 Unauthorized: HTTP Digest or Basic authentication with the old API's \
         username and password required\n",
    );
    for challenge in l.shared.auth.challenges(random, stale) {
        match HeaderValue::from_str(&challenge) {
            Ok(v) => {
                r.headers_mut().append(header::WWW_AUTHENTICATE, v);
            }
            Err(_) => return internal(),
        }
    }
    r
}

/// The `format` value as sent, for the empty answer to a query string the
/// strict splitter refuses (`…&format=json&` still answers JSON).
fn format_hint(raw: &str) -> Option<String> {
    raw.split('&').find_map(|part| {
        let (name, value) = part.split_once('=')?;
        name.eq_ignore_ascii_case("format")
            .then(|| value.to_owned())
    })
}

/// `GET /cdrapi`: the new API's engine with the strict rules of §4.4.
async fn cdrapi(app: &App, ip: IpAddr, user: &str, raw: &str) -> Result<Response, Refused> {
    let settings = &app.cdrapi.settings;
    let hint = format_hint(raw);
    let query = match crate::cdrapi::parse(query_pairs(raw), hint.as_deref(), Mode::Old) {
        Ok(q) => q,
        Err(e) => {
            // As on a UCM: the empty container, the reason in the log.
            tracing::warn!(%ip, user = %loggable(user), reason = %e, "old API cdrapi request refused; answering an empty result");
            return Ok(crate::cdrapi::empty_answer(settings, e.format, "cdr"));
        }
    };
    // A failure is not an empty result: a billing system would book "no calls".
    app.cdrapi.page(&query).await.map_err(|e| {
        let e = Error::Store(e);
        tracing::error!(%ip, error = %e, "old API cdrapi failed");
        Refused::Action(ActionError::Internal(e))
    })
}

/// `GET /recapi?filedir=…&filename=…` (spec §5.1): the recordings engine's
/// answer, a miss as its HTTP status.
async fn recapi(
    app: &App,
    settings: &OldApiSettings,
    ip: IpAddr,
    raw: &str,
    headers: &HeaderMap,
) -> Result<Response, Refused> {
    let pairs = query_pairs_lenient(raw).map_err(|e| {
        tracing::warn!(%ip, reason = %e, "old API recapi request refused");
        Refused::BadQuery(e.to_string())
    })?;
    let (mut filedir, mut filename) = (None, None);
    for (name, value) in pairs {
        let slot = if name.eq_ignore_ascii_case("filedir") {
            &mut filedir
        } else if name.eq_ignore_ascii_case("filename") {
            &mut filename
        } else {
            tracing::debug!(%ip, param = %loggable(&name), "old API recapi: unknown parameter ignored");
            continue;
        };
        if slot.replace(value).is_some() {
            return Err(Refused::BadQuery(format!(
                "{} given twice",
                name.to_ascii_lowercase()
            )));
        }
    }
    app.recordings
        .answer(
            filedir.as_deref(),
            filename.as_deref(),
            headers,
            settings.recordings_listing,
        )
        .await
        .map_err(Refused::Recording)
}

/// `GET /pmsapi` (spec §7): only with `enable_pmsapi`.
async fn pmsapi(
    app: &App,
    settings: &OldApiSettings,
    ip: IpAddr,
    raw: &str,
) -> Result<Response, Refused> {
    if !settings.enable_pmsapi {
        tracing::warn!(%ip, "old API: pmsapi refused: https_api_old.enable_pmsapi is off");
        return Err(Refused::PmsapiOff);
    }
    match query_pairs_lenient(raw) {
        Ok(pairs) => Ok(crate::pms::old_api(&app.pms, &pairs).await),
        Err(_) => {
            // The reason would quote the query, which holds the PMS token.
            tracing::warn!(%ip, "old API pmsapi request refused: malformed query string");
            Err(Refused::BadPmsQuery)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format_hint;

    #[test]
    fn format_hint_reads_the_raw_query() {
        assert_eq!(
            format_hint("caller=1&FORMAT=json&").as_deref(),
            Some("json")
        );
        assert_eq!(format_hint("caller=1&&format=xml").as_deref(), Some("xml"));
        assert_eq!(format_hint("caller=1"), None);
        assert_eq!(format_hint(""), None);
    }
}
