//! The hotel PMS API (`pmsapi`, spec §7): check-in/out, guest data, class of
//! service, DND, wake-up calls, room status, message waiting — applied on
//! Asterisk.
//!
//! - the protocol (`<pms_data_request>`, answers, token) is `ucm::pms`;
//! - [`rooms`] runs a command: the room's state in the database (the truth,
//!   shared by every pbxgate on it), then on Asterisk ([`pbx`]: AstDB keys the
//!   shipped dialplan reads, the lamp, the mailbox);
//! - [`Service`] runs with the AMI connection: it rewrites every room into
//!   AstDB whenever the connection comes up, and places wake-up calls
//!   ([`wakeup`]).
//!
//! Both endpoints answer in XML (default) or JSON (`format=json`). On `/api`
//! the session authenticates and a `token` is checked only when present; the
//! old `/pmsapi` needs the token. See `docs/compatibility.md`, `## PMS API`.

pub use ucm::pms::cos;
pub mod pbx;
pub mod rooms;
mod wakeup;

use asterisk::pbx::Manager;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use store::{PmsStore, Store};
use ucm::pms::{Format, PmsError, Reply};
use ucm::{Params, Status};

use crate::config::PmsSettings;
use crate::error::ActionError;
use crate::sessions::Authenticated;

const XML: &str = "text/xml;charset=UTF-8";
const JSON: &str = "application/json;charset=UTF-8";

fn respond(body: impl Into<Body>, content_type: &'static str) -> Response {
    let mut resp = Response::new(body.into());
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The answer on `/api`: XML as is; JSON inside the UCM envelope, whose
/// `status` is the command's.
fn api_answer(reply: &Reply, format: Format) -> Response {
    let mut resp = match format {
        Format::Xml => respond(reply.to_xml(), XML),
        Format::Json => respond(ucm::encode_response(reply.status, &reply.to_json()), JSON),
    };
    // The command's status, for the access log line.
    resp.extensions_mut().insert(reply.status);
    resp
}

/// The answer on the old endpoint: no envelope.
fn old_answer(reply: &Reply, format: Format) -> Response {
    match format {
        Format::Xml => respond(reply.to_xml(), XML),
        Format::Json => respond(reply.to_json().to_string(), JSON),
    }
}

fn token_error(s: &PmsSettings, token: Option<&str>) -> Option<PmsError> {
    if s.password.is_empty() {
        return Some(PmsError::new(
            Status::NoPermission,
            "no PMS password is configured ([pms] password): PMS tokens are refused",
        ));
    }
    match token {
        Some(t) if ucm::pms::token_matches(&s.username, s.password.expose().as_bytes(), t) => None,
        Some(_) => Some(PmsError::new(
            Status::WrongAccountOrPassword,
            "wrong PMS token",
        )),
        None => Some(PmsError::new(
            Status::WrongAccountOrPassword,
            "token is required",
        )),
    }
}

/// What the hotel functions need, built once at start-up: the store, the PMS
/// settings, the PBX's time zone and its AMI connection (none when
/// `[asterisk]` is not configured).
#[derive(Clone)]
pub struct Pms {
    store: Store,
    settings: Arc<PmsSettings>,
    tz: jiff::tz::TimeZone,
    ami: Option<Arc<dyn Manager>>,
}

impl Pms {
    pub fn new(
        store: Store,
        settings: PmsSettings,
        tz: jiff::tz::TimeZone,
        ami: Option<Arc<dyn Manager>>,
    ) -> Pms {
        Pms {
            store,
            settings: Arc::new(settings),
            tz,
            ami,
        }
    }
}

/// `action: "pmsapi"` on `/api`: `data` (the `<pms_data_request>` XML),
/// `format` (xml, json), `token` (optional; checked when present).
pub async fn api(
    pms: &Pms,
    params: &Params,
    user: &Authenticated,
) -> Result<Response, ActionError> {
    let get = |key: &str| {
        params.str(key).map_err(|_| {
            ActionError::Explained(Status::InvalidParameters, format!("{key} must be a string"))
        })
    };
    let format = Format::parse(get("format")?.as_deref())
        .map_err(|e| ActionError::Explained(e.status, e.message))?;
    let (token, data) = (get("token")?, get("data")?);
    let reply = match token.as_deref() {
        Some(t) => match token_error(&pms.settings, Some(t)) {
            Some(e) => {
                tracing::warn!(user = %user.username, "pmsapi refused: {}", e.message);
                Reply::failed(None, None, &e)
            }
            None => execute(pms, data.as_deref()).await,
        },
        None => execute(pms, data.as_deref()).await,
    };
    Ok(api_answer(&reply, format))
}

/// `GET /pmsapi?token=…&format=…&data=…` on the old listener, once its HTTP
/// authentication and permitted IPs have passed: the query's pairs in order.
/// Other parameters are ignored; each of the three may appear once.
pub async fn old_api(pms: &Pms, query: &[(String, String)]) -> Response {
    let mut token = None;
    let mut format = None;
    let mut data = None;
    let mut twice = None;
    for (k, v) in query {
        let slot = match k.as_str() {
            "token" => &mut token,
            "format" => &mut format,
            "data" => &mut data,
            _ => continue,
        };
        if slot.is_some() {
            twice = Some(k.clone());
        }
        *slot = Some(v.as_str());
    }
    let (format, format_error) = match Format::parse(format) {
        Ok(f) => (f, None),
        Err(e) => (Format::Xml, Some(e)),
    };
    let error = match (twice, format_error) {
        (Some(k), _) => Some(PmsError::new(
            Status::InvalidParameters,
            format!("parameter {k} is given twice"),
        )),
        (None, Some(e)) => Some(e),
        (None, None) => token_error(&pms.settings, token),
    };
    let reply = match error {
        Some(e) => {
            tracing::warn!("old pmsapi request refused: {}", e.message);
            Reply::failed(None, None, &e)
        }
        None => execute(pms, data).await,
    };
    old_answer(&reply, format)
}

/// Parses and runs one request's `data`.
async fn execute(pms: &Pms, data: Option<&str>) -> Reply {
    let Some(data) = data else {
        return Reply::failed(
            None,
            None,
            &PmsError::new(
                Status::InvalidParameters,
                "data (the <pms_data_request> XML) is required",
            ),
        );
    };
    let cmd = match ucm::pms::parse(data) {
        Ok(c) => c,
        Err(r) => {
            tracing::info!(
                command = r.command.unwrap_or(""),
                status = r.error.status.code(),
                reason = %crate::net::loggable(&r.error.message),
                "pmsapi request refused"
            );
            return Reply::rejected(&r);
        }
    };
    let Some(ami) = pms.ami.as_ref() else {
        return Reply::failed(
            Some(cmd.name()),
            Some(cmd.address()),
            &PmsError::new(
                Status::AbnormalSystemError,
                "pbxgate is not connected to Asterisk (asterisk.ami_secret is not set)",
            ),
        );
    };
    let ctx = rooms::Ctx {
        store: &pms.store,
        ami: ami.as_ref(),
        settings: &pms.settings,
        tz: &pms.tz,
    };
    match rooms::run(&ctx, &cmd).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::info!(
                command = cmd.name(),
                address = cmd.address(),
                status = e.status.code(),
                reason = %crate::net::loggable(&e.message),
                "pmsapi command failed"
            );
            Reply::failed(Some(cmd.name()), Some(cmd.address()), &e)
        }
    }
}

/// The PMS tasks that run with the AMI connection: AstDB resync on every
/// connection, and the wake-up call scheduler. Stopped when dropped.
pub struct Service {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    pub fn start(ami: &Arc<dyn Manager>, store: &Store, settings: &PmsSettings) -> Service {
        let pms = Arc::new(settings.clone());
        let node = crate::random::string(b"0123456789abcdefghijklmnopqrstuvwxyz", 12)
            .unwrap_or_else(|_| format!("pid{}", std::process::id()));
        let tasks = vec![
            tokio::spawn(resync_on_connect(ami.clone(), store.clone(), pms.clone())),
            tokio::spawn(wakeup::run(store.clone(), ami.clone(), pms, node)),
        ];
        Service { tasks }
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whenever AMI comes up: the number classes and every room into AstDB, and
/// the lamps that are on (Asterisk forgets them when it restarts).
async fn resync_on_connect(ami: Arc<dyn Manager>, store: Store, s: Arc<PmsSettings>) {
    let mut state = ami.state();
    let mut was_up = false;
    loop {
        let up = state.borrow_and_update().is_up();
        if up && !was_up {
            match resync(ami.as_ref(), &store, &s).await {
                Ok(rooms) => tracing::info!(rooms, "pmsapi: hotel rooms written to Asterisk"),
                Err(e) => {
                    tracing::warn!(error = %e, "pmsapi: could not write the hotel rooms to Asterisk; retrying at the next connection")
                }
            }
        }
        was_up = up;
        if state.changed().await.is_err() {
            return;
        }
    }
}

async fn resync(ami: &dyn Manager, store: &Store, s: &PmsSettings) -> Result<usize, String> {
    pbx::write_cos(ami, s).await?;
    let rooms = store.rooms().await.map_err(|e| e.to_string())?;
    for room in &rooms {
        pbx::write_room(ami, room, None).await?;
    }
    for room in rooms.iter().filter(|r| r.mwi) {
        if let Err(e) = pbx::set_mwi(ami, s, &room.extension, true).await {
            tracing::warn!(extension = %room.extension, error = %e, "pmsapi: lamp not restored");
        }
    }
    Ok(rooms.len())
}
