//! Asterisk REST Interface: a few REST calls (continue, hangup, answer,
//! applications) and the events websocket of one Stasis application, kept
//! connected with back-off.
//!
//! Another websocket that subscribes to the same application name takes it
//! over: Asterisk sends this one `ApplicationReplaced` and stops delivering
//! to it, and when the other leaves the application stays registered but
//! inactive (Stasis() then fails and calls go on unheld) for as long as any
//! channel is in it. So the registration is watched, not assumed: a
//! replacement is reported as `Down` and, while another client holds the
//! name, pbxgate waits instead of taking it back (that would silence the
//! other client); every [`AriConfig::check_interval`] it asks Asterisk who
//! holds the name (`ari show websocket sessions` over AMI; without AMI, or
//! on an Asterisk without that command, whether the application still
//! exists) and registers again once nobody does. While connected, the same
//! interval checks that the application still exists.

mod events;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage, client::IntoClientRequest};

pub use events::{Channel, Dialplan, Event, Party};

use crate::ami::Ami;
use crate::reconnect::Reconnect;
use crate::{ConnState, Error};

#[derive(Clone)]
pub struct AriConfig {
    /// `http://127.0.0.1:8088` (the `/ari` prefix is added).
    pub url: String,
    pub username: String,
    pub password: String,
    pub app: String,
    pub request_timeout: Duration,
    pub max_backoff: Duration,
    /// How often the registration is checked (see the module comment).
    pub check_interval: Duration,
    /// Asks Asterisk which websocket holds the application after another
    /// client replaced this one.
    pub ami: Option<Ami>,
    /// Holds the application only while this says so (this node owns the
    /// Asterisk); always when `None`. REST requests work either way.
    pub active: Option<watch::Receiver<bool>>,
}

impl std::fmt::Debug for AriConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AriConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("app", &self.app)
            .field("check_interval", &self.check_interval)
            .finish_non_exhaustive()
    }
}

impl AriConfig {
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
        app: impl Into<String>,
    ) -> Self {
        AriConfig {
            url: url
                .into()
                .trim_end_matches('/')
                .trim_end_matches("/ari")
                .to_owned(),
            username: username.into(),
            password: password.into(),
            app: app.into(),
            request_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30),
            check_interval: Duration::from_secs(5),
            ami: None,
            active: None,
        }
    }

    /// Holds the application only while `active` is true.
    pub fn with_gate(mut self, active: watch::Receiver<bool>) -> Self {
        self.active = Some(active);
        self
    }

    /// Uses `ami` to see who holds the application after a replacement.
    pub fn with_ami(mut self, ami: Ami) -> Self {
        self.ami = Some(ami);
        self
    }

    fn basic_auth(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Handle to ARI; cheap to clone.
#[derive(Clone)]
pub struct Ari {
    config: Arc<AriConfig>,
    http: reqwest::Client,
    events: broadcast::Sender<Arc<Event>>,
    state: watch::Receiver<ConnState>,
    shutdown: Arc<watch::Sender<bool>>,
}

/// Percent-encodes a path segment or query value (channel ids are plain, but
/// nothing from outside is trusted).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Ari {
    /// Starts the events websocket task.
    pub fn start(config: AriConfig) -> Result<Ari, Error> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Protocol(format!("cannot build the ARI HTTP client: {e}")))?;
        let (events, _) = broadcast::channel(1024);
        let (state_tx, state) = watch::channel(ConnState::Connecting);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let config = Arc::new(config);
        tokio::spawn(run(
            config.clone(),
            http.clone(),
            events.clone(),
            state_tx,
            shutdown_rx,
        ));
        Ok(Ari {
            config,
            http,
            events,
            state,
            shutdown: Arc::new(shutdown),
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    pub fn app(&self) -> &str {
        &self.config.app
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::Response, Error> {
        request(&self.http, &self.config, method, path).await
    }

    /// Lets a channel leave Stasis and go on in the dialplan where it was.
    pub async fn continue_in_dialplan(&self, channel_id: &str) -> Result<(), Error> {
        self.request(
            reqwest::Method::POST,
            &format!("/channels/{}/continue", encode(channel_id)),
        )
        .await
        .map(|_| ())
    }

    /// Hangs a channel up with a reason (`normal`, `busy`, `congestion`, `no_answer`, ...).
    pub async fn hangup(&self, channel_id: &str, reason: &str) -> Result<(), Error> {
        self.request(
            reqwest::Method::DELETE,
            &format!("/channels/{}?reason={}", encode(channel_id), encode(reason)),
        )
        .await
        .map(|_| ())
    }

    /// Sends ringing to the caller (SIP 180) while the channel waits in Stasis.
    pub async fn ring(&self, channel_id: &str) -> Result<(), Error> {
        self.request(
            reqwest::Method::POST,
            &format!("/channels/{}/ring", encode(channel_id)),
        )
        .await
        .map(|_| ())
    }

    /// Sets a channel variable or writes a dialplan function such as
    /// `TIMEOUT(absolute)`. Not for a channel in the application that will
    /// run more dialplan: Asterisk 22.10+ leaves that channel's thread unable
    /// to read dangerous functions such as `DB()` (unless `live_dangerously`);
    /// AMI `Setvar` does not.
    pub async fn set_variable(
        &self,
        channel_id: &str,
        name: &str,
        value: &str,
    ) -> Result<(), Error> {
        self.request(
            reqwest::Method::POST,
            &format!(
                "/channels/{}/variable?variable={}&value={}",
                encode(channel_id),
                encode(name),
                encode(value)
            ),
        )
        .await
        .map(|_| ())
    }

    /// One channel, by id.
    pub async fn channel(&self, channel_id: &str) -> Result<Channel, Error> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/channels/{}", encode(channel_id)),
            )
            .await?;
        resp.json()
            .await
            .map_err(|e| Error::Protocol(format!("ARI channel: {e}")))
    }

    /// The ids of the channels in this Stasis application now (also those
    /// that entered while no websocket was connected to it).
    pub async fn app_channel_ids(&self) -> Result<Vec<String>, Error> {
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/applications/{}", encode(&self.config.app)),
            )
            .await?;
        let app: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("ARI application: {e}")))?;
        Ok(app
            .get("channel_ids")
            .and_then(|v| v.as_array())
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn answer(&self, channel_id: &str) -> Result<(), Error> {
        self.request(
            reqwest::Method::POST,
            &format!("/channels/{}/answer", encode(channel_id)),
        )
        .await
        .map(|_| ())
    }

    /// Creates a Snoop channel on `channel_id` (any channel, in Stasis or not)
    /// that enters this application with `app_args`. `spy` and `whisper` are
    /// `none`, `in`, `out` or `both`; `snoop_id` becomes the new channel's id.
    pub async fn snoop(
        &self,
        channel_id: &str,
        spy: &str,
        whisper: &str,
        snoop_id: &str,
        app_args: &str,
    ) -> Result<(), Error> {
        self.request(
            reqwest::Method::POST,
            &format!(
                "/channels/{}/snoop?app={}&spy={}&whisper={}&snoopId={}&appArgs={}",
                encode(channel_id),
                encode(&self.config.app),
                encode(spy),
                encode(whisper),
                encode(snoop_id),
                encode(app_args)
            ),
        )
        .await
        .map(|_| ())
    }

    /// Starts music on hold (the channel's default class) on a channel in Stasis.
    pub async fn start_moh(&self, channel_id: &str) -> Result<(), Error> {
        self.request(
            reqwest::Method::POST,
            &format!("/channels/{}/moh", encode(channel_id)),
        )
        .await
        .map(|_| ())
    }

    /// Every bridge Asterisk has (not only this application's): its id and
    /// creation time as ARI writes it (`2026-01-05T10:30:12.345+0000`).
    pub async fn bridge_times(&self) -> Result<Vec<(String, String)>, Error> {
        let resp = self.request(reqwest::Method::GET, "/bridges").await?;
        let bridges: Vec<serde_json::Value> = resp
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("ARI bridges: {e}")))?;
        Ok(bridges
            .iter()
            .filter_map(|b| {
                let id = b.get("id")?.as_str()?;
                let t = b.get("creationtime")?.as_str()?;
                Some((id.to_owned(), t.to_owned()))
            })
            .collect())
    }

    /// The Stasis applications Asterisk knows (names).
    pub async fn applications(&self) -> Result<Vec<String>, Error> {
        let resp = self.request(reqwest::Method::GET, "/applications").await?;
        let apps: Vec<serde_json::Value> = resp
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("ARI applications: {e}")))?;
        Ok(apps
            .iter()
            .filter_map(|a| a.get("name").and_then(|n| n.as_str()).map(str::to_owned))
            .collect())
    }
}

async fn request(
    http: &reqwest::Client,
    config: &AriConfig,
    method: reqwest::Method,
    path: &str,
) -> Result<reqwest::Response, Error> {
    let url = format!("{}/ari{path}", config.url);
    let resp = http
        .request(method, url)
        .header(reqwest::header::AUTHORIZATION, config.basic_auth())
        .send()
        .await
        .map_err(|e| Error::Protocol(format!("ARI request failed: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(match status.as_u16() {
        401 | 403 => Error::Auth(format!("ARI answered {status}")),
        // 409: the channel exists but is not (any longer) in the application.
        404 | 409 => Error::NotFound(body.chars().take(200).collect()),
        _ => Error::Protocol(format!(
            "ARI answered {status}: {}",
            body.chars().take(200).collect::<String>()
        )),
    })
}

/// Whether Asterisk knows the application (registered, or inactive with
/// channels still in it); `None` when it could not be asked.
async fn app_exists(http: &reqwest::Client, config: &AriConfig) -> Option<bool> {
    let path = format!("/applications/{}", encode(&config.app));
    match request(http, config, reqwest::Method::GET, &path).await {
        Ok(_) => Some(true),
        Err(Error::NotFound(_)) => Some(false),
        Err(_) => None,
    }
}

/// Who holds the application name while this client is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Another,
    Nobody,
    Unknown,
}

/// Whether a websocket session lists `app`, from the output of Asterisk's
/// `ari show websocket sessions` (columns: id, type, remote address,
/// state, comma-separated applications); `None` when it is not that table.
fn sessions_hold(output: &str, app: &str) -> Option<bool> {
    let mut lines = output
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("Connection ID"));
    lines.next()?;
    Some(
        lines
            .filter(|l| !l.starts_with("---"))
            .filter_map(|l| l.split_whitespace().nth(4))
            .any(|apps| apps.split(',').any(|a| a == app)),
    )
}

async fn holder(http: &reqwest::Client, config: &AriConfig) -> Holder {
    if let Some(ami) = &config.ami
        && ami.state().borrow().is_up()
        && let Ok(reply) = ami
            .action("Command", &[("Command", "ari show websocket sessions")])
            .await
    {
        let output: Vec<&str> = reply.response.get_all("Output").collect();
        if let Some(held) = sessions_hold(&output.join("\n"), &config.app) {
            return if held {
                Holder::Another
            } else {
                Holder::Nobody
            };
        }
    }
    // An application that is gone is free; one that exists may be held or
    // merely inactive, which only the session list tells apart.
    match app_exists(http, config).await {
        Some(false) => Holder::Nobody,
        Some(true) => Holder::Another,
        None => Holder::Unknown,
    }
}

/// How a connected session ended without an error.
enum Ended {
    Closed,
    Replaced,
    /// The gate closed: another node owns the Asterisk now.
    Standby,
}

fn gate_open(gate: &Option<watch::Receiver<bool>>) -> bool {
    gate.as_ref().is_none_or(|g| *g.borrow())
}

/// Until the gate opens (reported as `Standby`); false when shutting down.
async fn wait_until_active(
    config: &AriConfig,
    gate: &mut Option<watch::Receiver<bool>>,
    state: &watch::Sender<ConnState>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let Some(g) = gate.as_mut() else {
        return true;
    };
    loop {
        if *shutdown.borrow() {
            return false;
        }
        if *g.borrow_and_update() {
            return true;
        }
        if *state.borrow() != ConnState::Standby {
            tracing::info!(
                app = config.app,
                "standing by: another pbxgate node holds the ARI application"
            );
            let _ = state.send(ConnState::Standby);
        }
        tokio::select! {
            changed = g.changed() => {
                if changed.is_err() {
                    *gate = None;
                    return true;
                }
            }
            _ = shutdown.changed() => return false,
        }
    }
}

async fn run(
    config: Arc<AriConfig>,
    http: reqwest::Client,
    events: broadcast::Sender<Arc<Event>>,
    state: watch::Sender<ConnState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reconnect = Reconnect::new("ARI events", &config.url, config.max_backoff);
    let mut gate = config.active.clone();
    loop {
        if !wait_until_active(&config, &mut gate, &state, &mut shutdown).await {
            let _ = state.send(ConnState::Stopped);
            return;
        }
        let result = session(&config, &http, &events, &state, &mut shutdown, &mut gate).await;
        if let Ok(Ended::Standby) = result {
            continue;
        }
        if let Ok(Ended::Replaced) = result {
            if !wait_while_replaced(&config, &http, &state, &mut shutdown, &gate).await {
                let _ = state.send(ConnState::Stopped);
                return;
            }
            let _ = state.send(ConnState::Connecting);
            continue;
        }
        if !reconnect
            .after_session(result.map(|_| ()), &state, &mut shutdown, || {})
            .await
        {
            return;
        }
    }
}

/// Reports the replacement and waits until no other client holds the
/// application; false when shutting down.
async fn wait_while_replaced(
    config: &AriConfig,
    http: &reqwest::Client,
    state: &watch::Sender<ConnState>,
    shutdown: &mut watch::Receiver<bool>,
    gate: &Option<watch::Receiver<bool>>,
) -> bool {
    let reason = format!(
        "Stasis application \"{}\" taken over by another ARI client; registering again when it leaves",
        config.app
    );
    tracing::error!(
        url = config.url,
        app = config.app,
        "ARI application replaced by another client subscribing to the same name: \
         calls entering Stasis go to it, not to pbxgate"
    );
    let _ = state.send(ConnState::Down(reason));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.check_interval) => {}
            _ = shutdown.changed() => return false,
        }
        if *shutdown.borrow() {
            return false;
        }
        if !gate_open(gate) {
            // Standing by now: the gate decides when to register again.
            return true;
        }
        match holder(http, config).await {
            Holder::Nobody => {
                tracing::info!(
                    app = config.app,
                    "ARI application free again; registering it"
                );
                return true;
            }
            Holder::Another | Holder::Unknown => {}
        }
    }
}

async fn session(
    config: &AriConfig,
    http: &reqwest::Client,
    events: &broadcast::Sender<Arc<Event>>,
    state: &watch::Sender<ConnState>,
    shutdown: &mut watch::Receiver<bool>,
    gate: &mut Option<watch::Receiver<bool>>,
) -> Result<Ended, Error> {
    let ws_url = format!(
        "{}/ari/events?app={}&subscribeAll=false",
        config.url.replacen("http", "ws", 1),
        encode(&config.app)
    );
    let mut request = ws_url
        .into_client_request()
        .map_err(|e| Error::Protocol(format!("bad ARI URL: {e}")))?;
    let auth = config
        .basic_auth()
        .parse()
        .map_err(|_| Error::Protocol("ARI credentials are not a valid header".into()))?;
    request.headers_mut().insert("Authorization", auth);
    let (ws, _) = tokio::time::timeout(
        config.request_timeout,
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| Error::Timeout("ARI websocket".into()))?
    .map_err(|e| match e {
        tungstenite::Error::Http(r) if r.status().as_u16() == 401 => {
            Error::Auth("ARI refused the credentials".into())
        }
        e => Error::Protocol(format!("ARI websocket: {e}")),
    })?;
    tracing::info!(url = config.url, app = config.app, "ARI events connected");
    let _ = state.send(ConnState::Up);
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval(Duration::from_secs(20));
    ping.tick().await;
    let mut check = tokio::time::interval(config.check_interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    // The running registration check, polled beside the events so that a
    // slow answer never holds them up.
    let mut checking: Option<std::pin::Pin<Box<dyn Future<Output = Option<bool>> + Send + '_>>> =
        None;
    loop {
        tokio::select! {
            msg = stream.next() => {
                match msg {
                    None => return Ok(Ended::Closed),
                    Some(Err(e)) => return Err(Error::Protocol(format!("ARI websocket: {e}"))),
                    Some(Ok(WsMessage::Text(text))) => {
                        match Event::parse(text.as_str()) {
                            Ok(event) => {
                                let replaced = event.replaces(&config.app);
                                let _ = events.send(Arc::new(event));
                                if replaced {
                                    // A stalled peer must not hold up the report.
                                    let _ = tokio::time::timeout(
                                        config.request_timeout,
                                        sink.send(WsMessage::Close(None)),
                                    )
                                    .await;
                                    return Ok(Ended::Replaced);
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "ARI event that is not JSON skipped"),
                        }
                    }
                    Some(Ok(WsMessage::Close(_))) => return Ok(Ended::Closed),
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                sink.send(WsMessage::Ping(Vec::new().into())).await
                    .map_err(|e| Error::Protocol(format!("ARI websocket: {e}")))?;
            }
            _ = check.tick(), if checking.is_none() => {
                checking = Some(Box::pin(app_exists(http, config)));
            }
            Some(exists) = async {
                match checking.as_mut() {
                    Some(f) => Some(f.await),
                    None => None,
                }
            } => {
                checking = None;
                if exists == Some(false) {
                    let _ = tokio::time::timeout(
                        config.request_timeout,
                        sink.send(WsMessage::Close(None)),
                    )
                    .await;
                    return Err(Error::Protocol(format!(
                        "Stasis application \"{}\" no longer registered in Asterisk",
                        config.app
                    )));
                }
            }
            _ = shutdown.changed() => {
                let _ = sink.send(WsMessage::Close(None)).await;
                return Ok(Ended::Closed);
            }
            _ = gate_closed(gate) => {
                // Stop holding the application at once (fencing); a stalled
                // peer must not hold that up.
                let _ = tokio::time::timeout(
                    config.request_timeout,
                    sink.send(WsMessage::Close(None)),
                )
                .await;
                tracing::info!(app = config.app, "ARI application given up: this node no longer owns the Asterisk");
                return Ok(Ended::Standby);
            }
        }
    }
}

/// Completes when the gate closes; never without a gate (one whose sender
/// is gone is no gate any more).
async fn gate_closed(gate: &mut Option<watch::Receiver<bool>>) {
    if let Some(g) = gate.as_mut() {
        if g.wait_for(|open| !*open).await.is_ok() {
            return;
        }
        *gate = None;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_list_tells_who_holds_the_application() {
        let table = "Connection ID                         Type            RemoteAddr                       State Apps            
------------------------------------- --------------- -------------------------------- ----- ----------------
21cf1ae0-c5d1-4649-b06e-f767cf6c8bf0  inbound         127.0.0.1:55744                  Up    other
3585a69e-31f0-4253-8d35-5457acb9288f  inbound         127.0.0.1:55760                  Up    pbxgate,x
";
        assert_eq!(sessions_hold(table, "pbxgate"), Some(true));
        assert_eq!(sessions_hold(table, "x"), Some(true));
        assert_eq!(sessions_hold(table, "other"), Some(true));
        assert_eq!(sessions_hold(table, "pbx"), Some(false));
        // Only the header: nobody.
        let empty: String = table.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(sessions_hold(&empty, "pbxgate"), Some(false));
        // A session without applications has no fifth column.
        let bare = format!("{empty}\nabc  inbound  127.0.0.1:1  Up\n");
        assert_eq!(sessions_hold(&bare, "pbxgate"), Some(false));
        // Not that table (an older Asterisk: no such command).
        assert_eq!(
            sessions_hold("No such command 'ari show websocket sessions'", "pbxgate"),
            None
        );
    }
}
