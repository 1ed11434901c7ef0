//! A reconnecting AMI client: MD5 challenge login, ActionID correlation,
//! EventList collection, keep-alive pings and a broadcast of events.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::codec::{self, Decoder, Frame, Message};
use crate::reconnect::Reconnect;
use crate::{ConnState, Error};

/// How to reach and log in to AMI.
#[derive(Clone)]
pub struct AmiConfig {
    pub address: String,
    pub username: String,
    pub secret: String,
    pub max_message: usize,
    pub ping_interval: Duration,
    pub action_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_backoff: Duration,
}

impl std::fmt::Debug for AmiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmiConfig")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl AmiConfig {
    pub fn new(
        address: impl Into<String>,
        username: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        AmiConfig {
            address: address.into(),
            username: username.into(),
            secret: secret.into(),
            max_message: codec::DEFAULT_MAX_MESSAGE,
            ping_interval: Duration::from_secs(20),
            action_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The answer to an action: the response, plus the events of an EventList.
#[derive(Debug, Clone)]
pub struct Reply {
    pub response: Message,
    pub events: Vec<Message>,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        matches!(self.response.response(), Some(r) if r.eq_ignore_ascii_case("Success") || r.eq_ignore_ascii_case("Follows"))
    }
}

struct Request {
    headers: Vec<(String, String)>,
    reply: oneshot::Sender<Result<Reply, Error>>,
}

/// Handle to the AMI connection; cheap to clone. The connection lives in a
/// background task that reconnects with back-off until the handle set is dropped
/// or [`Ami::shutdown`] is called.
#[derive(Clone)]
pub struct Ami {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<Message>>,
    state: watch::Receiver<ConnState>,
    shutdown: Arc<watch::Sender<bool>>,
    action_timeout: Duration,
}

impl Ami {
    /// Starts the connection task.
    pub fn start(config: AmiConfig) -> Ami {
        let (requests, rx) = mpsc::channel(256);
        let (events, _) = broadcast::channel(4096);
        let (state_tx, state) = watch::channel(ConnState::Connecting);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let action_timeout = config.action_timeout;
        tokio::spawn(run(config, rx, events.clone(), state_tx, shutdown_rx));
        Ami {
            requests,
            events,
            state,
            shutdown: Arc::new(shutdown),
            action_timeout,
        }
    }

    /// Every event from now on. A slow subscriber that falls behind by more
    /// than the channel holds gets `Lagged` and must recover (e.g. from CSV).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.events.subscribe()
    }

    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    /// Sends an action and waits for its response (and its EventList, if any).
    pub async fn action(&self, action: &str, headers: &[(&str, &str)]) -> Result<Reply, Error> {
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push(("Action".to_owned(), action.to_owned()));
        all.extend(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        // Refuse unsafe values here, before they reach the connection task.
        let borrowed: Vec<(&str, &str)> =
            all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        codec::encode(&borrowed)?;
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request {
                headers: all,
                reply: tx,
            })
            .await
            .map_err(|_| Error::Closed)?;
        match tokio::time::timeout(self.action_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(action.to_owned())),
        }
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

struct Pending {
    reply: oneshot::Sender<Result<Reply, Error>>,
    response: Option<Message>,
    events: Vec<Message>,
}

async fn run(
    config: AmiConfig,
    mut requests: mpsc::Receiver<Request>,
    events: broadcast::Sender<Arc<Message>>,
    state: watch::Sender<ConnState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reconnect = Reconnect::new("AMI", &config.address, config.max_backoff);
    loop {
        let result = session(&config, &mut requests, &events, &state, &mut shutdown).await;
        // Answer queued actions at once instead of letting them time out.
        let drain = || {
            while let Ok(r) = requests.try_recv() {
                let _ = r.reply.send(Err(Error::NotConnected));
            }
        };
        if !reconnect
            .after_session(result, &state, &mut shutdown, drain)
            .await
        {
            return;
        }
    }
}

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// One connection: connect, log in, then serve until it breaks.
async fn session(
    config: &AmiConfig,
    requests: &mut mpsc::Receiver<Request>,
    events: &broadcast::Sender<Arc<Message>>,
    state: &watch::Sender<ConnState>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut stream =
        tokio::time::timeout(config.connect_timeout, TcpStream::connect(&config.address))
            .await
            .map_err(|_| Error::Timeout("connect".into()))??;
    stream.set_nodelay(true)?;
    let mut decoder = Decoder::new(config.max_message);
    let mut buf = vec![0u8; 64 * 1024];
    let ids = AtomicU64::new(1);
    let next_id = || format!("pbxgate-{}", ids.fetch_add(1, Ordering::Relaxed));

    // Banner, then MD5 login, before anything else is sent.
    let mut read_frame =
        async |stream: &mut TcpStream, decoder: &mut Decoder| -> Result<Frame, Error> {
            loop {
                if let Some(f) = decoder.next_frame() {
                    return Ok(f);
                }
                let n = tokio::time::timeout(config.action_timeout, stream.read(&mut buf))
                    .await
                    .map_err(|_| Error::Timeout("login".into()))??;
                if n == 0 {
                    return Err(Error::Closed);
                }
                decoder.extend(&buf[..n]);
            }
        };
    let banner = match read_frame(&mut stream, &mut decoder).await? {
        Frame::Banner(b) => b,
        _ => return Err(Error::Protocol("no AMI banner".into())),
    };
    if !banner.starts_with("Asterisk Call Manager") {
        return Err(Error::Protocol(format!("unexpected banner {banner:?}")));
    }
    let id = next_id();
    stream
        .write_all(&codec::encode(&[
            ("Action", "Challenge"),
            ("AuthType", "MD5"),
            ("ActionID", &id),
        ])?)
        .await?;
    let challenge = loop {
        if let Frame::Message(m) = read_frame(&mut stream, &mut decoder).await?
            && m.action_id() == Some(id.as_str())
        {
            break m.get("Challenge").map(str::to_owned).ok_or_else(|| {
                Error::Protocol(format!(
                    "Challenge refused: {}",
                    m.get("Message").unwrap_or("")
                ))
            })?;
        }
    };
    let key = md5_hex(&format!("{challenge}{}", config.secret));
    let id = next_id();
    stream
        .write_all(&codec::encode(&[
            ("Action", "Login"),
            ("AuthType", "MD5"),
            ("Username", &config.username),
            ("Key", &key),
            ("Events", "on"),
            ("ActionID", &id),
        ])?)
        .await?;
    loop {
        if let Frame::Message(m) = read_frame(&mut stream, &mut decoder).await?
            && m.action_id() == Some(id.as_str())
        {
            if m.response()
                .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
            {
                break;
            }
            return Err(Error::Auth(
                m.get("Message").unwrap_or("login refused").to_owned(),
            ));
        }
    }
    tracing::info!(address = config.address, banner, "AMI connected");
    let _ = state.send(ConnState::Up);

    let (mut reader, mut writer) = stream.into_split();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.tick().await;
    let mut ping_outstanding: Option<(String, tokio::time::Instant)> = None;

    let result = loop {
        // Frames already buffered (from the login exchange or the last read).
        while let Some(frame) = decoder.next_frame() {
            match frame {
                Frame::Message(m) => dispatch(m, &mut pending, events, &mut ping_outstanding),
                Frame::Oversized { bytes } => {
                    tracing::warn!(
                        bytes,
                        limit = config.max_message,
                        "AMI message over the size limit skipped"
                    );
                }
                Frame::Banner(_) => {}
            }
        }
        tokio::select! {
            n = reader.read(&mut buf) => {
                match n {
                    Ok(0) => break Ok(()),
                    Ok(n) => decoder.extend(&buf[..n]),
                    Err(e) => break Err(Error::Io(e)),
                }
            }
            req = requests.recv() => {
                let Some(req) = req else { break Ok(()) };
                let id = next_id();
                let mut headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                headers.push(("ActionID", &id));
                match codec::encode(&headers) {
                    Ok(bytes) => {
                        if let Err(e) = writer.write_all(&bytes).await {
                            let _ = req.reply.send(Err(Error::NotConnected));
                            break Err(Error::Io(e));
                        }
                        pending.insert(id, Pending { reply: req.reply, response: None, events: Vec::new() });
                    }
                    Err(e) => { let _ = req.reply.send(Err(e.into())); }
                }
            }
            _ = ping.tick() => {
                if let Some((_, sent)) = &ping_outstanding {
                    if sent.elapsed() > config.action_timeout {
                        break Err(Error::Timeout("keep-alive Ping".into()));
                    }
                    continue;
                }
                let id = format!("pbxgate-ping-{}", ids.fetch_add(1, Ordering::Relaxed));
                let bytes = codec::encode(&[("Action", "Ping"), ("ActionID", &id)])?;
                if let Err(e) = writer.write_all(&bytes).await { break Err(Error::Io(e)); }
                ping_outstanding = Some((id, tokio::time::Instant::now()));
            }
            _ = shutdown.changed() => {
                let _ = writer.write_all(b"Action: Logoff\r\n\r\n").await;
                break Ok(());
            }
        }
    };
    for (_, p) in pending.drain() {
        let _ = p.reply.send(Err(Error::NotConnected));
    }
    result
}

fn dispatch(
    m: Message,
    pending: &mut HashMap<String, Pending>,
    events: &broadcast::Sender<Arc<Message>>,
    ping: &mut Option<(String, tokio::time::Instant)>,
) {
    let id = m.action_id().map(str::to_owned);
    if let (Some(id), Some((ping_id, _))) = (&id, ping.as_ref())
        && id == ping_id
    {
        *ping = None;
        return;
    }
    let Some(id) = id.filter(|id| pending.contains_key(id)) else {
        if m.event().is_some() {
            // No receivers is not an error: nobody is listening yet.
            let _ = events.send(Arc::new(m));
        }
        return;
    };
    let Some(p) = pending.get_mut(&id) else {
        return;
    };
    if m.response().is_some() {
        let list = m
            .get("EventList")
            .is_some_and(|v| v.eq_ignore_ascii_case("start"));
        if list
            && m.response()
                .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
        {
            p.response = Some(m);
            return;
        }
        if let Some(p) = pending.remove(&id) {
            let _ = p.reply.send(Ok(Reply {
                response: m,
                events: Vec::new(),
            }));
        }
        return;
    }
    // An event of a running EventList.
    let complete = m
        .get("EventList")
        .is_some_and(|v| v.eq_ignore_ascii_case("Complete"));
    if complete {
        if let Some(p) = pending.remove(&id) {
            let response = p.response.unwrap_or_default();
            let _ = p.reply.send(Ok(Reply {
                response,
                events: p.events,
            }));
        }
    } else {
        p.events.push(m);
    }
}
