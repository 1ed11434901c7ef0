//! The accept loop both HTTPS listeners share (new API and old API), built to
//! survive hostile, unauthenticated clients:
//!
//! - a process-wide connection cap ([`Connections`]); when it is reached the
//!   connection idle the longest (no request in flight, TLS handshake
//!   included) is closed to make room, so silent clients cannot lock out new
//!   ones; only when every connection has a request in flight is the new one
//!   refused;
//! - a TLS handshake deadline, then hyper (HTTP/1.1 or h2) with a timer, so
//!   the header-read timeout really applies, bounded h2 streams, windows and
//!   send buffers, and h2 keep-alive pings;
//! - an idle deadline: a connection without a request in flight for
//!   `web.idle_timeout_secs` is closed (HTTP/1.1 keep-alive and h2 alike; an
//!   h2 client that answers pings is still idle);
//! - request bodies with a total read deadline and a global byte budget
//!   ([`body`]); HSTS on every answer;
//! - graceful shutdown: stop accepting, let requests in flight finish for the
//!   grace time, then close what is left.
//!
//! A connection's slot is held by its IO, so an upgraded socket (websocket)
//! keeps counting against the cap until it closes.

mod body;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use axum_server::tls_rustls::RustlsConfig;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tower_service::Service;

use crate::config::Settings;

pub use body::BodyTimedOut;

/// File descriptors kept free of connections: database, log, certificate and
/// recording files, Asterisk connections.
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit of open files to the hard one (systemd's default
/// soft limit, 1024, is what silent clients exhaust first). Returns the soft
/// limit in force afterwards, `None` when unlimited or unknown.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let before = lim.current;
        lim.current = lim.maximum;
        match setrlimit(Resource::Nofile, lim) {
            Ok(()) => tracing::info!(
                from = ?before,
                to = ?lim.maximum,
                "raised the open-files limit (RLIMIT_NOFILE) to its hard limit"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open-files limit (RLIMIT_NOFILE)");
                lim.current = before;
            }
        }
    }
    lim.current
}

/// The connection cap in force: `web.max_connections`, lowered when the
/// open-files limit would be reached first.
pub fn effective_cap(configured: usize, open_files: Option<u64>) -> usize {
    match open_files {
        Some(n) => {
            let room = usize::try_from(n.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
            let cap = configured.min(room.max(16));
            if cap < configured {
                tracing::warn!(
                    configured,
                    cap,
                    open_files = n,
                    "web.max_connections lowered to fit the open-files limit (RLIMIT_NOFILE)"
                );
            }
            cap
        }
        None => configured,
    }
}

/// Connections of both listeners against one cap, and the request-body budget.
pub struct Connections {
    max: usize,
    epoch: Instant,
    registry: Mutex<Registry>,
    body_budget: Arc<Semaphore>,
    body_budget_bytes: usize,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    conns: BTreeMap<u64, Arc<ConnState>>,
}

struct ConnState {
    in_flight: AtomicUsize,
    /// Requests whose body is still being received.
    reading: AtomicUsize,
    /// Milliseconds since `Connections::epoch` of the last request's end (or
    /// of the connection's start).
    last_active: AtomicU64,
    /// Upgraded or finished: not the accept loop's any more, never evicted.
    detached: AtomicBool,
    close: Notify,
}

impl Connections {
    pub fn new(max: usize, body_budget_bytes: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            epoch: Instant::now(),
            registry: Mutex::new(Registry::default()),
            body_budget: Arc::new(Semaphore::new(body_budget_bytes)),
            body_budget_bytes,
        })
    }

    pub fn from_settings(settings: &Settings, open_files: Option<u64>) -> Arc<Connections> {
        Connections::new(
            effective_cap(settings.net.max_connections, open_files),
            settings.net.body_buffer_bytes,
        )
    }

    /// Open connections (both listeners, upgraded sockets included).
    pub fn open(&self) -> usize {
        self.registry.lock().map(|r| r.conns.len()).unwrap_or(0)
    }

    pub fn cap(&self) -> usize {
        self.max
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for a new connection: a free one, or the one of the connection
    /// idle the longest, which is told to close. `None`: every connection
    /// has a request in flight.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut reg = self.registry.lock().ok()?;
        if reg.conns.len() >= self.max {
            let evictable = |c: &ConnState| !c.detached.load(Ordering::Acquire);
            // First the connection idle the longest (a silent client, a
            // handshake that does not finish): a client that just connected
            // is the last to go, so it has time to send its request.
            let idle = reg
                .conns
                .iter()
                .filter(|(_, c)| evictable(c) && c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.last_active.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            // Then the oldest connection still receiving a request body (a
            // client holding a slot with a body that does not come).
            let victim = idle.or_else(|| {
                reg.conns
                    .iter()
                    .find(|(_, c)| evictable(c) && c.reading.load(Ordering::Acquire) > 0)
                    .map(|(id, _)| *id)
            });
            let victim = victim?;
            if let Some(c) = reg.conns.remove(&victim) {
                c.close.notify_one();
            }
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            reading: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_ms()),
            detached: AtomicBool::new(false),
            close: Notify::new(),
        });
        reg.conns.insert(id, state.clone());
        Some(Slot {
            conns: self.clone(),
            id,
            state,
        })
    }
}

/// A connection's place under the cap; freed when dropped (with the IO).
struct Slot {
    conns: Arc<Connections>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut reg) = self.conns.registry.lock() {
            reg.conns.remove(&self.id);
        }
    }
}

/// The TLS stream with the connection's slot: the slot lives as long as the
/// socket, through a websocket upgrade too.
struct SlotIo<T> {
    io: T,
    _slot: Slot,
}

impl<T: AsyncRead + Unpin> AsyncRead for SlotIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SlotIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Timeouts and limits of one listener.
#[derive(Clone)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub h2_max_streams: u32,
    pub hsts: Option<HeaderValue>,
    /// Request bytes each request may buffer outside the global budget, so
    /// that small requests never wait for it.
    pub body_free_bytes: usize,
    /// The largest request head (request line and headers) a connection
    /// reads; larger ones are refused with 431.
    pub max_head_bytes: u32,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Limits {
        let n = &s.net;
        Limits {
            handshake_timeout: n.handshake_timeout,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: n.idle_timeout,
            body_read_timeout: n.body_read_timeout,
            h2_max_streams: n.h2_max_streams,
            hsts: (n.hsts_max_age_secs > 0)
                .then(|| HeaderValue::from_str(&format!("max-age={}", n.hsts_max_age_secs)).ok())
                .flatten(),
            body_free_bytes: 8 * 1024,
            max_head_bytes: 32 * 1024,
        }
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            // The read buffer per connection (headers beyond it are refused
            // with 431): 600 connections stalled mid-body held ~330 KiB each
            // with hyper's default (~400 KiB).
            .max_buf_size(self.max_head_bytes as usize);
        b.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_streams)
            // What a client may send ahead of the handler's reading, per
            // stream and per connection: bounded memory per connection.
            .initial_stream_window_size(64 * 1024)
            .initial_connection_window_size(256 * 1024)
            .max_send_buf_size(64 * 1024)
            .max_header_list_size(self.max_head_bytes)
            .max_pending_accept_reset_streams(Some(32))
            .max_local_error_reset_streams(Some(256))
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        b
    }
}

/// Stops a listener: no new connections, requests in flight get the grace
/// time. The TLS configuration can be swapped in place.
#[derive(Clone)]
pub struct Handle {
    stop: watch::Sender<Option<Duration>>,
}

impl Default for Handle {
    fn default() -> Self {
        Handle {
            stop: watch::Sender::new(None),
        }
    }
}

impl Handle {
    pub fn new() -> Handle {
        Handle::default()
    }

    /// Stops accepting now; open connections are asked to finish and are
    /// closed after `grace`.
    pub fn graceful_shutdown(&self, grace: Duration) {
        self.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(grace);
                true
            } else {
                false
            }
        });
    }
}

/// What a listener serves.
pub struct Listener {
    pub name: &'static str,
    pub tcp: std::net::TcpListener,
    pub tls: RustlsConfig,
    pub router: Router,
    pub limits: Limits,
    pub conns: Arc<Connections>,
    pub handle: Handle,
}

impl Listener {
    /// Accepts until the handle stops it, then waits for the connections
    /// (at most the grace time).
    pub async fn serve(self) -> std::io::Result<()> {
        let Listener {
            name,
            tcp,
            tls,
            router,
            limits,
            conns,
            handle,
        } = self;
        tcp.set_nonblocking(true)?;
        let tcp = TcpListener::from_std(tcp)?;
        let builder = Arc::new(limits.builder());
        let limits = Arc::new(limits);
        let mut stop = handle.stop.subscribe();
        let mut tasks = JoinSet::new();
        let mut refused_logged: Option<Instant> = None;
        let grace = loop {
            if let Some(g) = *stop.borrow_and_update() {
                break g;
            }
            let accepted = tokio::select! {
                a = tcp.accept() => a,
                r = stop.changed() => match r {
                    Ok(()) => continue,
                    // The handle is gone: nobody can stop this listener
                    // gracefully any more, so stop now.
                    Err(_) => break Duration::ZERO,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = conns.admit() else {
                if refused_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(
                        listener = name,
                        %peer,
                        cap = conns.cap(),
                        "connection refused: web.max_connections reached and every connection has a request in flight"
                    );
                    refused_logged = Some(Instant::now());
                }
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            tasks.spawn(connection(Conn {
                stream,
                peer,
                slot,
                acceptor: tokio_rustls::TlsAcceptor::from(tls.get_inner()),
                router: router.clone(),
                builder: builder.clone(),
                limits: limits.clone(),
                conns: conns.clone(),
                stop: handle.stop.subscribe(),
            }));
        };
        drop(tcp);
        let all = async { while tasks.join_next().await.is_some() {} };
        // Connections finish themselves within the grace time; a second
        // more, then whatever is left is closed.
        if tokio::time::timeout(grace + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            tasks.shutdown().await;
        }
        Ok(())
    }
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: Arc<Limits>,
    conns: Arc<Connections>,
    stop: watch::Receiver<Option<Duration>>,
}

async fn connection(c: Conn) {
    let Conn {
        stream,
        peer,
        slot,
        acceptor,
        router,
        builder,
        limits,
        conns,
        mut stop,
    } = c;
    let state = slot.state.clone();
    let tls = tokio::select! {
        r = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake not completed within web.handshake_timeout_secs: closed");
                return;
            }
        },
        _ = state.close.notified() => return,
        _ = stop.wait_for(Option::is_some) => return,
    };
    let service = Svc {
        router,
        peer,
        state: state.clone(),
        limits: limits.clone(),
        conns: conns.clone(),
    };
    let io = TokioIo::new(SlotIo {
        io: tls,
        _slot: slot,
    });
    let conn = builder.serve_connection_with_upgrades(
        io,
        hyper::service::service_fn(move |r| service.clone().call(r)),
    );
    tokio::pin!(conn);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let idle_check = idle_deadline(&state, &conns, limits.idle_timeout);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = state.close.notified() => {
                tracing::debug!(%peer, "idle connection closed to make room (web.max_connections reached)");
                break;
            }
            _ = tokio::time::sleep_until(closing.unwrap_or(idle_check)) => {
                if closing.is_some() {
                    // Did not finish in time after being asked to.
                    break;
                }
                let idle = state.in_flight.load(Ordering::Acquire) == 0
                    && conns.now_ms().saturating_sub(state.last_active.load(Ordering::Relaxed))
                        >= u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
                if idle {
                    tracing::debug!(%peer, "connection idle for web.idle_timeout_secs: closed");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
            }
            r = stop.wait_for(Option::is_some), if closing.is_none() => {
                let grace = r.map(|g| g.unwrap_or_default()).unwrap_or_default();
                conn.as_mut().graceful_shutdown();
                closing = Some(tokio::time::Instant::now() + grace);
            }
        }
    }
    // Upgraded (the socket lives on in the websocket) or closed: either way
    // no longer this loop's to evict.
    state.detached.store(true, Ordering::Release);
}

/// When the connection becomes idle for long enough, if nothing happens
/// before: checked again then.
fn idle_deadline(
    state: &ConnState,
    conns: &Connections,
    timeout: Duration,
) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    if state.in_flight.load(Ordering::Acquire) > 0 {
        return now + timeout;
    }
    let since = conns
        .now_ms()
        .saturating_sub(state.last_active.load(Ordering::Relaxed));
    now + timeout.saturating_sub(Duration::from_millis(since))
}

/// Marks a request in flight from its start to the end of its answer's body.
struct InFlight {
    state: Arc<ConnState>,
    conns: Arc<Connections>,
}

impl InFlight {
    fn new(state: Arc<ConnState>, conns: Arc<Connections>) -> InFlight {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { state, conns }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state
            .last_active
            .store(self.conns.now_ms(), Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Clone)]
struct Svc {
    router: Router,
    peer: SocketAddr,
    state: Arc<ConnState>,
    limits: Arc<Limits>,
    conns: Arc<Connections>,
}

impl Svc {
    async fn call(mut self, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        let in_flight = InFlight::new(self.state.clone(), self.conns.clone());
        let version = req.version();
        let timed_out = Arc::new(AtomicBool::new(false));
        let mut req = req.map(|b| {
            Body::new(body::Limited::new(
                b,
                self.limits.body_read_timeout,
                self.conns.body_budget.clone(),
                self.conns.body_budget_bytes,
                self.limits.body_free_bytes,
                timed_out.clone(),
                body::Reading::new(self.state.clone()),
            ))
        });
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let path = req.uri().path().to_owned();
        let mut resp = match self.router.call(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        if timed_out.load(Ordering::Acquire) {
            tracing::warn!(
                ip = %self.peer.ip().to_canonical(),
                path = %loggable(&path),
                "request refused: body not received within web.body_read_timeout_secs (408)"
            );
            resp = body_timeout_response(version);
        }
        if let Some(v) = &self.limits.hsts {
            resp.headers_mut()
                .entry(header::STRICT_TRANSPORT_SECURITY)
                .or_insert_with(|| v.clone());
        }
        Ok(resp.map(|b| Body::new(body::Tracked::new(b, in_flight))))
    }
}

fn body_timeout_response(version: Version) -> Response<Body> {
    let mut resp = Response::new(Body::from("request body not received in time\n"));
    *resp.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The rest of the body may still arrive: this connection is done.
    if version < Version::HTTP_2 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A client-supplied value as it may appear in a log line: plain tokens as
/// they are (cheap), anything else escaped, so that no client can forge a line.
pub fn loggable(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(format!("{:?}", s.chars().take(128).collect::<String>()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn log_values_cannot_forge_lines() {
        assert_eq!(loggable("cdrapi"), "cdrapi");
        assert_eq!(loggable("getSystemStatus"), "getSystemStatus");
        assert_eq!(loggable("a\nINFO forged"), "\"a\\nINFO forged\"");
        assert_eq!(loggable("x y"), "\"x y\"");
        assert_eq!(loggable(""), "");
        assert!(loggable(&"z".repeat(1000)).len() < 140);
    }

    #[test]
    fn the_longest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let c = Connections::new(2, 1 << 20);
        let a = c.admit().unwrap();
        let b = c.admit().unwrap();
        a.state.in_flight.store(1, Ordering::Release);
        // b is idle: it is evicted for the third.
        let third = c.admit().unwrap();
        assert_eq!(c.open(), 2);
        third.state.in_flight.store(1, Ordering::Release);
        // Every connection busy: refused.
        assert!(c.admit().is_none());
        // Unless one is still waiting for a request body.
        a.state.reading.store(1, Ordering::Release);
        let fourth = c.admit().unwrap();
        assert_eq!(c.open(), 2);
        drop(fourth);
        drop(b);
        assert_eq!(c.open(), 1);
        drop(a);
        assert_eq!(c.open(), 1);
        assert!(c.admit().is_some());
    }

    #[test]
    fn the_cap_fits_the_open_files_limit() {
        assert_eq!(effective_cap(512, Some(1024)), 512);
        assert_eq!(
            effective_cap(5000, Some(1024)),
            1024 - RESERVED_FDS as usize
        );
        assert_eq!(effective_cap(5000, None), 5000);
        assert_eq!(effective_cap(512, Some(10)), 16);
    }
}
