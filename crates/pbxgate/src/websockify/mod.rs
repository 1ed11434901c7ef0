//! `/websockify`: the UCM's event websocket. A client asks for a
//! `challenge`, logs in with `md5(challenge + password)` (the socket is the
//! session: no cookie), `subscribe`s to event names, sends `heartbeat`s, and
//! receives `notify` frames for what it subscribed to. The protocol and the
//! choices made are in docs/compatibility.md (`## websockify`).
//!
//! Each socket is one task: it reads the client's frames, answers them, and
//! forwards the [`Hub`](crate::live::Hub)'s notifications. A slow client only
//! delays itself (each socket has its own receiver of the broadcast, and a
//! send that does not complete in [`SEND_TIMEOUT`] ends the socket).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use ucm::Status;
use ucm::auth::{format_challenge, login_token, token_matches};
use ucm::websockify as frame;

use crate::error::ActionError;
use crate::live::{EVENT_NAMES, Notify};

/// Largest frame or message a client may send.
pub const MAX_FRAME: usize = 64 * 1024;
/// A send to the client that takes longer than this ends the socket.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// What the audit trail and the log call logins made here.
const VIA: &str = "websockify";
/// How often a logged-in socket checks that the API settings still let it in.
const SETTINGS_CHECK: Duration = Duration::from_secs(1);

/// What `/websockify` needs, built once at start-up.
pub struct Websockify {
    pub auth: std::sync::Arc<crate::sessions::Auth>,
    /// The API settings in force (API and websocket users), changed live.
    pub api: std::sync::Arc<crate::apiconfig::ApiConfig>,
    pub live: crate::live::Hub,
    /// `websockify.idle_timeout`.
    pub idle: Duration,
    /// `session.challenge_ttl`.
    pub challenge_ttl: Duration,
}

type App = std::sync::Arc<Websockify>;

pub async fn handle(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let ip = peer.ip().to_canonical();
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_failed_upgrade(move |e| tracing::warn!(%ip, error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| run(app, ip, socket))
}

/// A challenge handed out on this socket: single use, for one user name.
struct Challenge {
    username: String,
    value: String,
    expires: Instant,
}

/// Which kind of account a socket logged in as.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Account {
    /// A user of the new API (`[https_api]`): only while the API is on.
    Api,
    /// A websocket user (`[[websockify.users]]`, the admin page): whatever
    /// the API switch, limited to its events.
    Websocket,
}

struct Session {
    app: App,
    ip: IpAddr,
    user: Option<String>,
    account: Account,
    /// The password the user logged in with: a new one ends the socket.
    password: crate::config::Secret,
    challenge: Option<Challenge>,
    subscribed: HashSet<&'static str>,
}

async fn run(app: App, ip: IpAddr, mut socket: WebSocket) {
    let idle = app.idle;
    let mut notifications = app.live.subscribe();
    let mut s = Session {
        app,
        ip,
        user: None,
        account: Account::Api,
        password: crate::config::Secret::default(),
        challenge: None,
        subscribed: HashSet::new(),
    };
    tracing::debug!(%ip, "websocket connected");
    let connected = Instant::now();
    let mut last_frame = connected;
    let mut next_check = connected + SETTINGS_CHECK;
    let why = loop {
        // Silent for `idle`, or not logged in within `idle` of connecting: closed.
        let deadline = if s.user.is_some() {
            last_frame + idle
        } else {
            connected + idle
        };
        tokio::select! {
            // A logged-in socket ends when the API settings take its right away
            // (API off, user removed, new password, address no longer permitted).
            () = tokio::time::sleep_until(next_check), if s.user.is_some() => {
                next_check = Instant::now() + SETTINGS_CHECK;
                if !s.still_allowed() {
                    let _ = tokio::time::timeout(
                        SEND_TIMEOUT,
                        socket.send(Message::Close(Some(CloseFrame {
                            code: axum::extract::ws::close_code::POLICY,
                            reason: "logged out: the API settings changed".into(),
                        }))),
                    )
                    .await;
                    break "logged out: the API settings changed";
                }
            }
            frame = socket.recv() => {
                let text = match frame {
                    None => break "closed by the client",
                    Some(Err(e)) => {
                        tracing::debug!(%ip, error = %e, "websocket read failed");
                        break "read failed (or frame over the size limit)";
                    }
                    Some(Ok(Message::Close(_))) => break "closed by the client",
                    Some(Ok(Message::Text(t))) => Some(t.as_str().to_owned()),
                    Some(Ok(Message::Binary(b))) => Some(String::from_utf8_lossy(&b).into_owned()),
                    // Pings are answered by the websocket layer; they count as activity.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                };
                last_frame = Instant::now();
                if let Some(text) = text {
                    let answer = s.answer(&text).await;
                    if !send(&mut socket, answer).await {
                        break "send failed or timed out";
                    }
                }
            }
            n = notifications.recv() => match n {
                Ok(n) => {
                    if s.user.is_some() && s.subscribed.contains(n.eventname) && s.still_allowed() && s.may_receive(n.eventname) {
                        let Notify { eventname, body } = &*n;
                        if !send(&mut socket, frame::notify(eventname, body)).await {
                            break "send failed or timed out";
                        }
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(%ip, user = s.user.as_deref().unwrap_or(""), missed, "websocket client too slow: notifications skipped");
                }
                Err(RecvError::Closed) => break "server stopping",
            },
            () = tokio::time::sleep_until(deadline) => {
                let _ = tokio::time::timeout(
                    SEND_TIMEOUT,
                    socket.send(Message::Close(Some(CloseFrame {
                        code: axum::extract::ws::close_code::NORMAL,
                        reason: "idle".into(),
                    }))),
                )
                .await;
                break if s.user.is_some() { "idle" } else { "no login in time" };
            }
        }
    };
    tracing::info!(%ip, user = s.user.as_deref().unwrap_or(""), reason = why, "websocket closed");
}

/// Sends a text frame; false if the socket is gone or too slow.
async fn send(socket: &mut WebSocket, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

impl Session {
    /// The response frame to one client frame.
    async fn answer(&mut self, text: &str) -> String {
        let req = match frame::parse(text) {
            Ok(r) => r,
            Err(m) => {
                tracing::debug!(ip = %self.ip, "malformed websocket frame");
                return frame::response(
                    m.transactionid.as_ref(),
                    m.action.as_deref(),
                    Status::InvalidParameters,
                    &[],
                );
            }
        };
        let (status, fields) = match self.dispatch(&req).await {
            Ok(fields) => (Status::Success, fields),
            Err(refusal) => {
                if let ActionError::Internal(e) = &refusal {
                    tracing::error!(ip = %self.ip, action = %crate::net::loggable(&req.action), error = %e, "websocket request failed");
                }
                (refusal.status(), Vec::new())
            }
        };
        frame::response(
            req.transactionid.as_ref(),
            Some(&req.action),
            status,
            &fields,
        )
    }

    async fn dispatch(
        &mut self,
        req: &frame::Request,
    ) -> Result<Vec<(&'static str, Value)>, ActionError> {
        let invalid = || ActionError::Status(Status::InvalidParameters);
        match req.action.as_str() {
            "challenge" => {
                let username = required(req, "username")?;
                // The rule of /api: a name no user can have is refused.
                if !crate::sessions::plausible_username(username) {
                    return Err(invalid());
                }
                self.allowed().await?;
                let value = format_challenge(crate::random::u64()?);
                self.challenge = Some(Challenge {
                    username: username.to_owned(),
                    value: value.clone(),
                    expires: Instant::now() + self.app.challenge_ttl,
                });
                Ok(vec![("challenge", json!(value))])
            }
            "login" => {
                let username = required(req, "username")?;
                let token = required(req, "token")?;
                self.allowed().await?;
                let outcome = self.check_login(username, token);
                self.app
                    .auth
                    .record_login(
                        username,
                        self.ip,
                        outcome.as_ref().map(|_| ()).map_err(|e| *e),
                        VIA,
                    )
                    .await?;
                match outcome {
                    Ok((account, password)) => {
                        self.user = Some(username.to_owned());
                        self.account = account;
                        self.password = password;
                        Ok(Vec::new())
                    }
                    Err(_) => Err(ActionError::Status(Status::WrongAccountOrPassword)),
                }
            }
            "subscribe" | "unsubscribe" | "heartbeat" if self.user.is_none() => {
                Err(ActionError::Status(Status::NeedAuthentication))
            }
            "heartbeat" => Ok(Vec::new()),
            "subscribe" | "unsubscribe" => {
                let names = req.names("eventnames").map_err(|_| invalid())?;
                let mut known = Vec::with_capacity(names.len());
                for name in names {
                    match EVENT_NAMES.iter().find(|n| **n == name) {
                        Some(n) => known.push(*n),
                        // One unknown name refuses the whole request, as on a UCM.
                        None => return Err(ActionError::Status(Status::AbnormalSystemError)),
                    }
                }
                // A name the user may not receive refuses the whole
                // subscribe too (unsubscribing it is harmless).
                if req.action == "subscribe"
                    && let Some(n) = known.iter().find(|n| !self.may_receive(n))
                {
                    tracing::info!(ip = %self.ip, user = self.user.as_deref().unwrap_or(""), eventname = %n, "subscribe refused: event not permitted for this websocket user");
                    return Err(ActionError::Status(Status::NoPermission));
                }
                for n in known {
                    if req.action == "subscribe" {
                        self.subscribed.insert(n);
                    } else {
                        self.subscribed.remove(n);
                    }
                }
                Ok(Vec::new())
            }
            // Everything else, /api's actions included, is not served here.
            _ => Err(ActionError::Status(Status::Unsupported)),
        }
    }

    /// Whether the logged-in user may still use the socket.
    fn still_allowed(&self) -> bool {
        let Some(name) = &self.user else {
            return false;
        };
        match self.account {
            Account::Api => {
                let api = self.app.api.new_api();
                api.enabled
                    && api.user(name).is_some_and(|u| {
                        u.password == self.password && u.permitted_ips.permits_or_empty(self.ip)
                    })
            }
            Account::Websocket => self.app.api.ws_users().user(name).is_some_and(|u| {
                u.password == self.password && u.permitted_ips.permits_or_empty(self.ip)
            }),
        }
    }

    /// Whether the logged-in user may receive `eventname` (an API user: every
    /// event; a websocket user: its `events`, as in force now).
    fn may_receive(&self, eventname: &str) -> bool {
        match (&self.user, self.account) {
            (None, _) => false,
            (Some(_), Account::Api) => true,
            (Some(name), Account::Websocket) => self
                .app
                .api
                .ws_users()
                .user(name)
                .is_some_and(|u| u.may_receive(eventname)),
        }
    }

    /// The API switch and the login restriction, for challenge and login.
    /// With the API off the socket still serves websocket users; then every
    /// name gets a challenge (which names exist is not told) and an API
    /// user's login fails as any other.
    async fn allowed(&self) -> Result<(), ActionError> {
        if !self.app.api.new_api().enabled && self.app.api.ws_users().users.is_empty() {
            return Err(ActionError::Status(Status::NoPermission));
        }
        self.app.auth.restriction(self.ip).await
    }

    /// Checks a login against this socket's challenge, which it uses up;
    /// the account and the password it proved.
    fn check_login(
        &mut self,
        username: &str,
        token: &str,
    ) -> Result<(Account, crate::config::Secret), &'static str> {
        let challenge = self
            .challenge
            .take()
            .filter(|c| c.username == username && c.expires > Instant::now());
        // Names are unique across both kinds (configuration and page refuse a clash).
        let ws = self.app.api.ws_users();
        let api = self.app.api.new_api();
        let (account, password, permitted) = match (ws.user(username), api.user(username)) {
            (Some(w), _) => (Account::Websocket, &w.password, &w.permitted_ips),
            (None, Some(_)) if !api.enabled => return Err("api-disabled"),
            (None, Some(a)) => (Account::Api, &a.password, &a.permitted_ips),
            (None, None) => return Err("unknown-user"),
        };
        if password.is_empty() {
            return Err("no-password-configured");
        }
        if !permitted.permits_or_empty(self.ip) {
            return Err("ip-not-permitted");
        }
        let Some(c) = challenge else {
            return Err("no-open-challenge");
        };
        let expected = login_token(&c.value, password.expose().as_bytes());
        if token_matches(&expected, token) {
            Ok((account, password.clone()))
        } else {
            Err("wrong-password")
        }
    }
}

fn required<'a>(req: &'a frame::Request, key: &str) -> Result<&'a str, ActionError> {
    match req.str(key) {
        Ok(Some(v)) if !v.is_empty() => Ok(v),
        _ => Err(ActionError::Status(Status::InvalidParameters)),
    }
}
