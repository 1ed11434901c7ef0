//! `POST /api`: the UCM envelope, the action dispatcher and one access-log
//! line per request. HTTP status is 200 for every API-level answer, as on a UCM.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};
use ucm::{Params, Status};

use crate::callcontrol::{self, CallControl};
use crate::cdrapi::{self, Cdrapi};
use crate::channels::{self, Channels};
use crate::directory::{self, Directory};
use crate::error::ActionError;
use crate::net::loggable;
use crate::pms::{self, Pms};
use crate::recordings::Miss;
use crate::recordings::Recordings;
use crate::sessions::Auth;
use crate::sessions::Authenticated;
use crate::system::System;

const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// A successful answer: a response object, or a whole envelope already
/// encoded (cached answers).
enum Answer {
    Json(Value),
    Encoded(Bytes),
    /// A whole HTTP answer outside the envelope (cdrapi's CSV/XML/JSON).
    Raw(Response),
}

type Outcome = Result<Answer, ActionError>;

fn json_response(body: impl Into<Body>, close: bool) -> Response {
    let mut resp = Response::new(body.into());
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    if close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The answer to anything that is not a well-formed request to `/api`.
pub async fn invalid() -> Response {
    json_response(ucm::error_response(Status::InvalidParameters), false)
}

/// What `/api` needs: one handle per feature, built once at start-up (in
/// `server::prepare`), for the PBX the listener serves.
pub struct Api {
    pub auth: Arc<Auth>,
    /// The API settings in force (users, enable switch), changed live.
    pub settings: Arc<crate::apiconfig::ApiConfig>,
    pub max_body_bytes: usize,
    pub system: System,
    pub cdrapi: Cdrapi,
    pub recordings: Arc<Recordings>,
    pub calls: CallControl,
    pub channels: Channels,
    pub directory: Directory,
    pub pms: Pms,
}

pub async fn handle(
    State(app): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let started = Instant::now();
    let ip = peer.ip().to_canonical();
    let limit = app.max_body_bytes;

    // Refuse oversized bodies before reading them.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        tracing::warn!(%ip, bytes = declared, limit, "request refused: body larger than web.max_body_bytes");
        return json_response(ucm::error_response(Status::InvalidParameters), true);
    }
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            tracing::warn!(%ip, limit, "request refused: body larger than web.max_body_bytes or unreadable");
            return json_response(ucm::error_response(Status::InvalidParameters), true);
        }
    };

    let mut action = String::new();
    let mut user = String::new();
    let outcome = if !app.settings.new_api().enabled {
        Err(ActionError::Status(Status::NoPermission))
    } else {
        match ucm::parse_request(&bytes) {
            Err(e) => {
                tracing::debug!(%ip, error = %e, "malformed request");
                Err(ActionError::Status(e.status()))
            }
            Ok(req) => {
                action = req.action;
                dispatch(&app, ip, &action, &req.params, headers, &mut user).await
            }
        }
    };

    let (status, response) = match outcome {
        // A raw answer may carry its own status for the access log (pmsapi).
        Ok(Answer::Raw(response)) => (
            response
                .extensions()
                .get::<Status>()
                .copied()
                .unwrap_or(Status::Success),
            response,
        ),
        Ok(Answer::Json(response)) => (
            Status::Success,
            json_response(ucm::encode_response(Status::Success, &response), false),
        ),
        Ok(Answer::Encoded(bytes)) => (Status::Success, json_response(bytes, false)),
        Err(refusal) => {
            if let ActionError::Internal(e) = &refusal {
                tracing::error!(%ip, action, error = %e, "request failed");
            }
            let (s, message) = refusal.answer();
            let body = match message {
                Some(msg) => ucm::error_response_with(s, &msg),
                None => ucm::error_response(s),
            };
            (s, json_response(body, false))
        }
    };
    tracing::info!(
        target: "pbxgate::access",
        %ip,
        user = %loggable(&user),
        action = %loggable(&action),
        status = status.code(),
        us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
    );
    response
}

fn required(params: &Params, key: &str) -> Result<String, ActionError> {
    match params.str(key) {
        Ok(Some(v)) if !v.is_empty() => Ok(v),
        _ => Err(ActionError::Status(Status::InvalidParameters)),
    }
}

async fn authenticate(
    app: &Api,
    ip: IpAddr,
    params: &Params,
) -> Result<Authenticated, ActionError> {
    match params.str("cookie") {
        Ok(Some(cookie)) => app.auth.session(&cookie, ip).await,
        Ok(None) => Err(ActionError::Status(Status::CookieError)),
        Err(_) => Err(ActionError::Status(Status::InvalidParameters)),
    }
}

/// [`authenticate`], then the user's permission for `action` (`-47`).
async fn authorize(
    app: &Api,
    ip: IpAddr,
    params: &Params,
    action: &str,
    user: &mut String,
) -> Result<Authenticated, ActionError> {
    let who = authenticate(app, ip, params).await?;
    *user = who.username.clone();
    if who.permissions.may(action) {
        Ok(who)
    } else {
        Err(ActionError::Explained(
            Status::NoPermission,
            format!("the API user has no permission for {action}"),
        ))
    }
}

async fn dispatch(
    app: &Api,
    ip: IpAddr,
    action: &str,
    params: &Params,
    headers: &HeaderMap,
    user: &mut String,
) -> Outcome {
    match action {
        "challenge" => {
            // `version` is sent by most clients and ignored, as on the UCM.
            *user = required(params, "user")?;
            let challenge = app.auth.challenge(user, ip).await?;
            Ok(Answer::Json(json!({ "challenge": challenge })))
        }
        "login" => {
            // `url` (a push target the UCM no longer uses) is accepted and ignored.
            *user = required(params, "user")?;
            let token = required(params, "token")?;
            let cookie = app.auth.login(user, &token, ip).await?;
            Ok(Answer::Json(json!({ "cookie": cookie })))
        }
        "logout" => {
            let cookie =
                required(params, "cookie").map_err(|_| ActionError::Status(Status::CookieError))?;
            app.auth.logout(&cookie, ip).await?;
            Ok(Answer::Json(json!({})))
        }
        "getSystemStatus" => {
            *user = authenticate(app, ip, params).await?.username;
            Ok(Answer::Encoded(app.system.status()))
        }
        "getSystemGeneralStatus" => {
            *user = authenticate(app, ip, params).await?.username;
            Ok(Answer::Json(app.system.general()))
        }
        "cdrapi" | "cdrExport" => {
            authorize(app, ip, params, action, user).await?;
            let pairs = params
                .string_pairs()
                .map(|pairs| {
                    pairs
                        .into_iter()
                        .filter(|(k, _)| k != "action" && k != "cookie")
                        .collect()
                })
                .map_err(|e| e.to_string());
            let settings = &app.cdrapi.settings;
            let format = params.str("format").ok().flatten();
            let query = match cdrapi::parse(pairs, format.as_deref(), ucm::cdrapi::Mode::New) {
                Ok(q) => q,
                Err(e) => {
                    // As on a UCM: the empty container, the reason in the log.
                    tracing::warn!(%ip, user = %loggable(user), action, reason = %e, "cdrapi request refused; answering an empty result");
                    return Ok(Answer::Raw(cdrapi::empty_answer(settings, e.format, "cdr")));
                }
            };
            Ok(Answer::Raw(if action == "cdrapi" {
                app.cdrapi.page(&query).await?
            } else {
                app.cdrapi.export(query)
            }))
        }
        "recapi" => {
            let who = authorize(app, ip, params, action, user).await?;
            let listing = app
                .settings
                .new_api()
                .user(&who.username)
                .and_then(|u| u.recordings_listing);
            let param = |key| {
                params.str(key).map_err(|e| {
                    tracing::warn!(%ip, reason = %e, "recapi request refused");
                    ActionError::Status(Status::InvalidParameters)
                })
            };
            let (filedir, filename) = (param("filedir")?, param("filename")?);
            // Success is the raw file, listing or archive; a miss is a JSON
            // status (a client tells the two apart by the body's first byte).
            match app
                .recordings
                .answer(filedir.as_deref(), filename.as_deref(), headers, listing)
                .await
            {
                Ok(response) => Ok(Answer::Raw(response)),
                Err(Miss::Failed(e)) => Err(ActionError::Internal(e)),
                Err(miss) => Err(ActionError::Status(miss.status())),
            }
        }
        "pmsapi" => {
            let who = authorize(app, ip, params, action, user).await?;
            pms::api(&app.pms, params, &who).await.map(Answer::Raw)
        }
        "acceptCall" | "refuseCall" => {
            let who = authenticate(app, ip, params).await?;
            *user = who.username.clone();
            callcontrol::api(&app.calls, action, params, &who)
                .await
                .map(Answer::Json)
        }
        a if channels::ACTIONS.contains(&a) => {
            let who = authorize(app, ip, params, a, user).await?;
            channels::dispatch(&app.channels, a, params, &who)
                .await
                .map(Answer::Json)
        }
        a if directory::ACTIONS.contains(&a) => {
            let who = authorize(app, ip, params, a, user).await?;
            directory::dispatch(&app.directory, a, params, &who)
                .await
                .map(Answer::Json)
        }
        a if directory::UNSUPPORTED.contains(&a) => {
            authorize(app, ip, params, a, user).await?;
            Err(directory::unsupported(a))
        }
        _ => Err(ActionError::Status(Status::InvalidParameters)),
    }
}
