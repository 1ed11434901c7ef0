//! Throughput of the HTTPS API over keep-alive TLS (HTTP/1.1) on loopback,
//! side by side with a bare axum TLS endpoint as the baseline.
//!
//! Scenarios, each with a warm-up and then a measured window:
//! 1. a bare axum 0.8 + axum-server TLS endpoint answering `POST /api` with a
//!    fixed JSON body (the baseline);
//! 2. pbxgate `getSystemStatus` with a valid cookie (sessions in SQLite);
//! 3. pbxgate challenge+login pairs.
//!
//! Every server runs in its own tokio runtime (2 workers) on its own OS
//! thread; the load generator runs in a third runtime, so server and client
//! never share executor threads. The load generator is a bare hyper 1 HTTP/1.1
//! client over tokio-rustls: one TLS connection per simulated client, each
//! sending its requests one after the other until the deadline.
//!
//! pbxgate's per-request log lines are formatted at info level into
//! `std::io::sink()`, so that their cost is counted.
//!
//! When the target (getSystemStatus at >= 60% of the bare rate) is missed,
//! informational rows follow that show where pbxgate's time goes: an action
//! without the /proc reads, an answer without any database access, the same
//! with log level warn, and the SQLite session look-up alone.
//!
//! Request bodies are fixed, so every run sends the same inputs; only the
//! challenges and cookies the server draws differ.
//!
//! Environment: `BENCH_CONNECTIONS` (default 16), `BENCH_SECS` (measured
//! seconds per scenario, default 8), `BENCH_WARMUP_SECS` (default 1),
//! `BENCH_DIAGNOSE` (unset: informational rows only when the target is
//! missed; `1`: always; `0`: never).
//! Run with `cargo bench -p pbxgate --bench api` or `scripts/bench`.
//! Exits with status 1 if any request failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{diagnose, env_number};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";
const BARE_BODY: &str = r#"{"response":{"challenge":"0000001496038514"},"status":0}"#;
const PASSWORD: &str = "benchpass";
/// pbxgate checks a login against at most 16 open challenges of one user from
/// one address; beyond that many connections, spread them over several users.
const CONNECTIONS_PER_USER: usize = 16;
/// What every successful answer ends with (serde_json writes no spaces).
const OK_SUFFIX: &[u8] = br#""status":0}"#;

/// Bounds on every loop, whatever the clock does.
const MAX_OPS_PER_CONNECTION: u64 = 5_000_000;
const MAX_RECONNECTS: u32 = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

const TARGET_RATIO: f64 = 0.60;

struct BenchConfig {
    connections: usize,
    warmup: Duration,
    measure: Duration,
}

impl BenchConfig {
    fn from_env() -> Self {
        BenchConfig {
            connections: env_number("BENCH_CONNECTIONS", 16, 1, 512) as usize,
            warmup: Duration::from_secs(env_number("BENCH_WARMUP_SECS", 1, 0, 60)),
            measure: Duration::from_secs(env_number("BENCH_SECS", 8, 1, 600)),
        }
    }
}

// ---------------------------------------------------------------------------
// Servers, each in its own runtime on its own thread.

thread_local! {
    static LOG_GUARD: RefCell<Option<tracing::dispatcher::DefaultGuard>> = const { RefCell::new(None) };
}

/// A 2-worker runtime. With `log`, its threads log through that subscriber
/// instead of the global one (for the informational log-level rows).
fn server_runtime(name: &str, log: Option<tracing::Dispatch>) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(2).thread_name(name).enable_all();
    if let Some(dispatch) = log {
        builder
            .on_thread_start(move || {
                let guard = tracing::dispatcher::set_default(&dispatch);
                LOG_GUARD.with(|g| *g.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| {
                LOG_GUARD.with(|g| g.borrow_mut().take());
            });
    }
    builder.build().expect("cannot build a server runtime")
}

struct ServerThread {
    name: &'static str,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl ServerThread {
    /// Asks the server to stop and waits (bounded) for its thread to end.
    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !thread.is_finished() {
            eprintln!(
                "bench: {} did not stop within {STOP_TIMEOUT:?}; leaving it",
                self.name
            );
            return;
        }
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("bench: {} failed: {e}", self.name),
            Err(_) => eprintln!("bench: {} panicked", self.name),
        }
    }
}

/// Waits for the server thread to report its address, or for it to fail.
fn await_listening(
    name: &'static str,
    addr_rx: std::sync::mpsc::Receiver<SocketAddr>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), String>>,
) -> ServerThread {
    match addr_rx.recv_timeout(SETUP_TIMEOUT) {
        Ok(addr) => ServerThread {
            name,
            addr,
            stop: Some(stop),
            thread: Some(thread),
        },
        Err(_) => {
            let why = if thread.is_finished() {
                match thread.join() {
                    Ok(Err(e)) => e,
                    Ok(Ok(())) => "stopped before listening".into(),
                    Err(_) => "panicked".into(),
                }
            } else {
                format!("not listening after {SETUP_TIMEOUT:?}")
            };
            panic!("{name} did not start: {why}");
        }
    }
}

async fn bare_api() -> Response {
    let mut resp = Response::new(Body::from(Bytes::from_static(BARE_BODY.as_bytes())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(JSON_CONTENT_TYPE),
    );
    resp
}

/// The baseline: axum + axum-server TLS with a self-signed certificate,
/// answering a fixed body. Returns the server and its certificate.
fn start_bare() -> (ServerThread, CertificateDer<'static>) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .expect("cannot generate a certificate");
    let cert_der = generated.cert.der().clone();
    let cert_pem = generated.cert.pem().into_bytes();
    let key_pem = generated.signing_key.serialize_pem().into_bytes();

    let (addr_tx, addr_rx) = sync_channel::<SocketAddr>(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("bare-main".into())
        .spawn(move || -> Result<(), String> {
            let rt = server_runtime("bare-srv", None);
            rt.block_on(async move {
                let tls = axum_server::tls_rustls::RustlsConfig::from_pem(cert_pem, key_pem)
                    .await
                    .map_err(|e| format!("TLS config: {e}"))?;
                let listener =
                    std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
                listener
                    .set_nonblocking(true)
                    .map_err(|e| format!("nonblocking: {e}"))?;
                let addr = listener
                    .local_addr()
                    .map_err(|e| format!("local_addr: {e}"))?;
                let handle = axum_server::Handle::<SocketAddr>::new();
                let server = axum_server::from_tcp_rustls(listener, tls)
                    .map_err(|e| format!("listener: {e}"))?
                    .handle(handle.clone());
                tokio::spawn(async move {
                    let _ = stop_rx.await;
                    handle.graceful_shutdown(Some(Duration::from_secs(2)));
                });
                let _ = addr_tx.send(addr);
                let router = Router::new().route("/api", post(bare_api));
                server
                    .serve(router.into_make_service())
                    .await
                    .map_err(|e| format!("serve: {e}"))
            })
        })
        .expect("cannot spawn the bare server thread");
    (
        await_listening("bare axum server", addr_rx, stop_tx, thread),
        cert_der,
    )
}

/// The users a run needs: one per `CONNECTIONS_PER_USER` connections.
fn user_names(connections: usize) -> Vec<String> {
    let n = connections.div_ceil(CONNECTIONS_PER_USER).max(1);
    (0..n)
        .map(|i| {
            if i == 0 {
                "cdrapi".to_owned()
            } else {
                format!("bench{i}")
            }
        })
        .collect()
}

fn pbxgate_config(connections: usize) -> String {
    let mut text = format!(
        "[web]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 2\n\
         [https_api]\nusername = \"cdrapi\"\npassword = \"{PASSWORD}\"\n"
    );
    for name in user_names(connections).iter().skip(1) {
        text.push_str(&format!(
            "[[https_api.users]]\nusername = \"{name}\"\npassword = \"{PASSWORD}\"\n"
        ));
    }
    text.push_str("[log]\nlevel = \"info\"\n");
    text
}

/// pbxgate as the binary runs it, with a fresh SQLite database in `dir`.
/// `log` replaces the global subscriber on the server's threads.
fn start_pbxgate(
    dir: &Path,
    connections: usize,
    log: Option<tracing::Dispatch>,
) -> (ServerThread, CertificateDer<'static>) {
    let settings = pbxgate::config::load_str(
        &pbxgate_config(connections),
        "bench.toml",
        dir,
        std::iter::empty::<(String, String)>(),
    )
    .expect("bench config refused");
    let (cert_path, _) = settings.generated_tls_paths();

    let (addr_tx, addr_rx) = sync_channel::<SocketAddr>(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pbxgate-main".into())
        .spawn(move || -> Result<(), String> {
            let _guard = log.as_ref().map(tracing::dispatcher::set_default);
            let rt = server_runtime("pbxgate-srv", log.clone());
            rt.block_on(pbxgate::server::run(
                settings,
                async move {
                    let _ = stop_rx.await;
                },
                move |addr| {
                    let _ = addr_tx.send(addr);
                },
            ))
            .map_err(|e| e.to_string())
        })
        .expect("cannot spawn the pbxgate thread");
    let server = await_listening("pbxgate", addr_rx, stop_tx, thread);
    let cert = CertificateDer::from_pem_file(&cert_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", cert_path.display()));
    (server, cert)
}

// ---------------------------------------------------------------------------
// Load generator.

fn tls_connector(cert: CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("certificate not usable as a root");
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The same body again and again; the answer must end in `"status":0}`.
    Fixed,
    /// Log in once per connection, then this action with the cookie.
    WithCookie(&'static str),
    /// challenge then login, again and again.
    Pairs,
}

struct Target {
    addr: SocketAddr,
    tls: TlsConnector,
    kind: Kind,
    /// The body for `Kind::Fixed`.
    body: Bytes,
    /// How every answer of `Kind::Fixed` must end.
    expect: &'static [u8],
}

/// Why an operation failed; a transport failure needs a new connection.
enum OpError {
    Transport(String),
    Api(String),
}

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(target: &Target) -> Result<Conn, String> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = target
        .tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { sender, driver })
}

/// One request on the connection; the body of a `200` answer.
async fn post_api(conn: &mut Conn, body: Bytes) -> Result<Bytes, OpError> {
    let exchange = async {
        conn.sender
            .ready()
            .await
            .map_err(|e| OpError::Transport(format!("connection closed: {e}")))?;
        let request = Request::post("/api")
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| OpError::Api(format!("request: {e}")))?;
        let response = conn
            .sender
            .send_request(request)
            .await
            .map_err(|e| OpError::Transport(format!("request failed: {e}")))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| OpError::Transport(format!("reading the answer: {e}")))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(OpError::Api(format!("HTTP {status}")));
        }
        Ok(bytes)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(OpError::Transport(format!(
            "no answer within {REQUEST_TIMEOUT:?}"
        ))),
    }
}

fn check_answer(body: &[u8], expect: &[u8]) -> Result<(), OpError> {
    if body.ends_with(expect) {
        Ok(())
    } else {
        Err(OpError::Api(format!(
            "answer {}",
            String::from_utf8_lossy(body)
        )))
    }
}

/// A string field of `response` in a successful answer.
fn response_field(body: &[u8], field: &str) -> Result<String, OpError> {
    let bad = || OpError::Api(format!("answer {}", String::from_utf8_lossy(body)));
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
    if v.get("status").and_then(serde_json::Value::as_i64) != Some(0) {
        return Err(bad());
    }
    v.get("response")
        .and_then(|r| r.get(field))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(bad)
}

/// Lowercase hex MD5 of challenge + password.
fn login_token(challenge: &str, password: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Md5::new()
        .chain_update(challenge.as_bytes())
        .chain_update(password.as_bytes())
        .finalize();
    let mut out = String::with_capacity(32);
    for b in digest.iter() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// challenge then login; the cookie.
async fn login_pair(conn: &mut Conn, user: &str) -> Result<String, OpError> {
    let challenge_body =
        format!(r#"{{"request":{{"action":"challenge","user":"{user}","version":"1.0"}}}}"#);
    let answer = post_api(conn, Bytes::from(challenge_body)).await?;
    let challenge = response_field(&answer, "challenge")?;
    let token = login_token(&challenge, PASSWORD);
    let login_body =
        format!(r#"{{"request":{{"action":"login","user":"{user}","token":"{token}"}}}}"#);
    let answer = post_api(conn, Bytes::from(login_body)).await?;
    response_field(&answer, "cookie")
}

/// A connection ready for the measured loop.
struct Client {
    conn: Conn,
    user: String,
    /// The request body of `Kind::Fixed` and `Kind::WithCookie`.
    body: Bytes,
}

async fn open_client(target: &Target, user: &str) -> Result<Client, OpError> {
    let mut conn = connect(target).await.map_err(OpError::Transport)?;
    let body = match target.kind {
        Kind::Fixed | Kind::Pairs => target.body.clone(),
        Kind::WithCookie(action) => {
            let cookie = login_pair(&mut conn, user).await?;
            Bytes::from(format!(
                r#"{{"request":{{"action":"{action}","cookie":"{cookie}"}}}}"#
            ))
        }
    };
    Ok(Client {
        conn,
        user: user.to_owned(),
        body,
    })
}

async fn one_op(kind: Kind, expect: &[u8], client: &mut Client) -> Result<(), OpError> {
    match kind {
        Kind::Fixed | Kind::WithCookie(_) => {
            let answer = post_api(&mut client.conn, client.body.clone()).await?;
            check_answer(&answer, expect)
        }
        Kind::Pairs => login_pair(&mut client.conn, &client.user).await.map(|_| ()),
    }
}

#[derive(Default)]
struct Tally {
    /// Operations started in the measured window that succeeded.
    ok: u64,
    /// Failed operations, warm-up included.
    errors: u64,
    latencies_us: Vec<u32>,
    last_done: Option<Instant>,
    samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, e: OpError) {
        self.errors += 1;
        let text = match e {
            OpError::Transport(t) | OpError::Api(t) => t,
        };
        if self.samples.len() < 3 && !self.samples.contains(&text) {
            self.samples.push(text);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        self.last_done = self.last_done.max(other.last_done);
        for s in other.samples {
            if self.samples.len() < 8 && !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
    }
}

/// Sequential operations until `end`; those started from `measure_from` on count.
async fn drive(
    target: Arc<Target>,
    mut client: Client,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(64 * 1024),
        ..Tally::default()
    };
    let mut reconnects = 0;
    let mut ops = 0u64;
    while ops < MAX_OPS_PER_CONNECTION {
        let started = Instant::now();
        if started >= end {
            break;
        }
        ops += 1;
        let result = one_op(target.kind, target.expect, &mut client).await;
        let done = Instant::now();
        match result {
            Ok(()) => {
                if started >= measure_from {
                    tally.ok += 1;
                    let us = done.duration_since(started).as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(us).unwrap_or(u32::MAX));
                    tally.last_done = Some(done);
                }
            }
            Err(e @ OpError::Api(_)) => tally.error(e),
            Err(e @ OpError::Transport(_)) => {
                tally.error(e);
                // A broken connection: open another, a bounded number of times.
                loop {
                    if reconnects >= MAX_RECONNECTS || Instant::now() >= end {
                        if reconnects >= MAX_RECONNECTS {
                            tally.error(OpError::Transport(format!(
                                "connection given up after {MAX_RECONNECTS} reconnects"
                            )));
                        }
                        return tally;
                    }
                    reconnects += 1;
                    match open_client(&target, &client.user).await {
                        Ok(c) => {
                            client = c;
                            break;
                        }
                        Err(e) => tally.error(e),
                    }
                }
            }
        }
    }
    tally
}

struct Row {
    scenario: String,
    unit: &'static str,
    connections: usize,
    count: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    samples: Vec<String>,
    cpu: Option<CpuShare>,
}

/// CPU counters in USER_HZ ticks: this process, and the whole host.
#[derive(Clone, Copy)]
struct CpuSample {
    process: u64,
    host_busy: u64,
    host_total: u64,
}

fn cpu_sample() -> Option<CpuSample> {
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After "(comm) ", the fields start at field 3; utime and stime are 14 and 15.
    let fields: Vec<&str> = own.get(own.rfind(')')? + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let host = std::fs::read_to_string("/proc/stat").ok()?;
    // cpu user nice system idle iowait irq softirq steal (guest is inside user).
    let ticks: Vec<u64> = host
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4)?;
    Some(CpuSample {
        process: utime + stime,
        host_busy: total - idle,
        host_total: total,
    })
}

/// Shares of the whole machine's CPU over a window: this process (servers,
/// load generator, SQLite threads) and everything on the host.
#[derive(Clone, Copy)]
struct CpuShare {
    bench: f64,
    host: f64,
}

fn cpu_share(from: Option<CpuSample>, to: Option<CpuSample>) -> Option<CpuShare> {
    let (a, b) = (from?, to?);
    let total = b.host_total.checked_sub(a.host_total)?;
    if total == 0 {
        return None;
    }
    Some(CpuShare {
        bench: b.process.saturating_sub(a.process) as f64 / total as f64,
        host: b.host_busy.saturating_sub(a.host_busy) as f64 / total as f64,
    })
}

/// Samples the CPU counters at `from` and at `to`.
fn spawn_cpu_window(from: Instant, to: Instant) -> tokio::task::JoinHandle<Option<CpuShare>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
        let a = cpu_sample();
        tokio::time::sleep_until(tokio::time::Instant::from_std(to)).await;
        cpu_share(a, cpu_sample())
    })
}

impl Row {
    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }
}

fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    f64::from(sorted_us[i]) / 1000.0
}

/// Opens the connections, then runs warm-up and measurement on all of them at once.
async fn measure(scenario: &str, unit: &'static str, target: Target, cfg: &BenchConfig) -> Row {
    let target = Arc::new(target);
    let users = user_names(cfg.connections);

    let mut setups = tokio::task::JoinSet::new();
    for i in 0..cfg.connections {
        let target = target.clone();
        let user = users[i / CONNECTIONS_PER_USER].clone();
        setups.spawn(async move { open_client(&target, &user).await });
    }
    let mut clients = Vec::with_capacity(cfg.connections);
    let mut tally = Tally::default();
    let setup_deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(setup_deadline, setups.join_next()).await {
        match joined {
            Ok(Ok(client)) => clients.push(client),
            Ok(Err(e)) => tally.error(e),
            Err(e) => tally.error(OpError::Transport(format!("setup task: {e}"))),
        }
    }
    if clients.len() < cfg.connections {
        tally.error(OpError::Transport(format!(
            "only {} of {} connections could be opened",
            clients.len(),
            cfg.connections
        )));
    }
    setups.abort_all();

    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.measure;
    let cpu = spawn_cpu_window(measure_from, end);
    let mut runs = tokio::task::JoinSet::new();
    for client in clients {
        runs.spawn(drive(target.clone(), client, measure_from, end));
    }
    let run_deadline =
        tokio::time::Instant::from_std(end + REQUEST_TIMEOUT * 2 + Duration::from_secs(5));
    loop {
        match tokio::time::timeout_at(run_deadline, runs.join_next()).await {
            Ok(Some(Ok(t))) => tally.merge(t),
            Ok(Some(Err(e))) => tally.error(OpError::Transport(format!("load task: {e}"))),
            Ok(None) => break,
            Err(_) => {
                tally.error(OpError::Transport(
                    "load tasks did not finish in time".into(),
                ));
                runs.abort_all();
                break;
            }
        }
    }

    let seconds = tally
        .last_done
        .map_or(0.0, |t| t.duration_since(measure_from).as_secs_f64());
    let cpu = cpu.await.ok().flatten();
    tally.latencies_us.sort_unstable();
    Row {
        scenario: scenario.to_owned(),
        unit,
        connections: cfg.connections,
        count: tally.ok,
        seconds,
        p50_ms: percentile_ms(&tally.latencies_us, 0.50),
        p99_ms: percentile_ms(&tally.latencies_us, 0.99),
        errors: tally.errors,
        samples: tally.samples,
        cpu,
    }
}

// ---------------------------------------------------------------------------

/// The table. `cpu%`: share of the machine used by this process (servers,
/// load generator and SQLite threads together); `host%`: share busy on the
/// whole host (more than `cpu%` means something else was running too).
fn print_table(rows: &[Row], baseline: f64) {
    println!();
    println!(
        "{:<50} {:>5} {:>9} {:>5} {:>6} {:>9} {:>7} {:>7} {:>6} {:>7} {:>5} {:>5}",
        "scenario",
        "conns",
        "count",
        "unit",
        "secs",
        "rate/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "vs bare",
        "cpu%",
        "host%"
    );
    println!("{}", "-".repeat(133));
    let percent = |x: f64| format!("{:.0}", 100.0 * x);
    for r in rows {
        let ratio = if r.unit == "req" && baseline > 0.0 {
            format!("{:.1}%", 100.0 * r.rate() / baseline)
        } else {
            "-".to_owned()
        };
        let (cpu, host) = r.cpu.map_or(("?".to_owned(), "?".to_owned()), |c| {
            (percent(c.bench), percent(c.host))
        });
        println!(
            "{:<50} {:>5} {:>9} {:>5} {:>6.2} {:>9.1} {:>7.3} {:>7.3} {:>6} {:>7} {:>5} {:>5}",
            r.scenario,
            r.connections,
            r.count,
            r.unit,
            r.seconds,
            r.rate(),
            r.p50_ms,
            r.p99_ms,
            r.errors,
            ratio,
            cpu,
            host
        );
    }
    println!();
}

/// Informational: the session look-up of `getSystemStatus` alone, straight
/// on the store (SQLite, default pool), from as many tasks as there are
/// connections, in a 2-worker runtime of its own. No TLS, HTTP or JSON.
fn measure_store_lookup(cfg: &BenchConfig) -> Row {
    use store::{ConnectOptions, Session, SessionStore, Store};
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let rt = server_runtime("store-bench", None);
    rt.block_on(async {
        let store = Store::connect(
            "sqlite://data/pbxgate.db",
            &ConnectOptions {
                base_dir: dir.path().to_path_buf(),
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("cannot open the store");
        let mut tasks = tokio::task::JoinSet::new();
        let start = Instant::now();
        let measure_from = start + cfg.warmup;
        let end = measure_from + cfg.measure;
        let cpu = spawn_cpu_window(measure_from, end);
        for i in 0..cfg.connections {
            let cookie = format!("sid{}-1700000000", 1_000_000 + i);
            store
                .create_session(&Session {
                    cookie: cookie.clone(),
                    username: "cdrapi".into(),
                    ip: "127.0.0.1".into(),
                    created_ms: 1_700_000_000_000,
                    last_seen_ms: 1_700_000_000_000,
                })
                .await
                .expect("cannot create a session");
            let store = store.clone();
            tasks.spawn(async move {
                let mut tally = Tally::default();
                let mut ops = 0u64;
                while ops < MAX_OPS_PER_CONNECTION {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    ops += 1;
                    let found = store.session(&cookie).await;
                    let done = Instant::now();
                    match found {
                        Ok(Some(_)) if started >= measure_from => {
                            tally.ok += 1;
                            let us = done.duration_since(started).as_micros();
                            tally
                                .latencies_us
                                .push(u32::try_from(us).unwrap_or(u32::MAX));
                            tally.last_done = Some(done);
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => tally.error(OpError::Api("session not found".into())),
                        Err(e) => tally.error(OpError::Api(e.to_string())),
                    }
                }
                tally
            });
        }
        let mut tally = Tally::default();
        let deadline = tokio::time::Instant::from_std(end + REQUEST_TIMEOUT);
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
            match joined {
                Ok(t) => tally.merge(t),
                Err(e) => tally.error(OpError::Api(format!("task: {e}"))),
            }
        }
        tasks.abort_all();
        let cpu = cpu.await.ok().flatten();
        store.close().await;
        tally.latencies_us.sort_unstable();
        Row {
            scenario: "info: store session look-up alone (no TLS/HTTP)".into(),
            unit: "query",
            connections: cfg.connections,
            count: tally.ok,
            seconds: tally
                .last_done
                .map_or(0.0, |t| t.duration_since(measure_from).as_secs_f64()),
            p50_ms: percentile_ms(&tally.latencies_us, 0.50),
            p99_ms: percentile_ms(&tally.latencies_us, 0.99),
            errors: tally.errors,
            samples: tally.samples,
            cpu,
        }
    })
}

fn fixed(
    addr: SocketAddr,
    tls: &TlsConnector,
    body: &'static [u8],
    expect: &'static [u8],
) -> Target {
    Target {
        addr,
        tls: tls.clone(),
        kind: Kind::Fixed,
        body: Bytes::from_static(body),
        expect,
    }
}

fn with_kind(addr: SocketAddr, tls: &TlsConnector, kind: Kind) -> Target {
    Target {
        addr,
        tls: tls.clone(),
        kind,
        body: Bytes::new(),
        expect: OK_SUFFIX,
    }
}

/// Without a cookie pbxgate answers -6 before any database access, after
/// parsing the request and with the same access-log line.
const NO_COOKIE_BODY: &[u8] = br#"{"request":{"action":"getSystemStatus"}}"#;
const COOKIE_ERROR_SUFFIX: &[u8] = br#""status":-6}"#;

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // pbxgate's log lines are formatted as in production, then thrown away.
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_env_filter("info")
        .init();

    let cfg = BenchConfig::from_env();
    println!(
        "pbxgate API benchmark: HTTP/1.1 keep-alive over TLS on loopback, {} connections, \
         {} s warm-up + {} s measured per scenario; servers and load generator in separate \
         2-worker runtimes on {} CPUs",
        cfg.connections,
        cfg.warmup.as_secs(),
        cfg.measure.as_secs(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .expect("cannot build the client runtime");
    let run = |scenario: &str, unit: &'static str, target: Target| {
        println!("running: {scenario}");
        client_rt.block_on(measure(scenario, unit, target, &cfg))
    };

    let mut rows = Vec::new();

    // 1. The baseline. It gets a challenge request, as the size of a typical request.
    let (bare, bare_cert) = start_bare();
    let bare_tls = tls_connector(bare_cert);
    rows.push(run(
        "bare axum TLS endpoint (fixed JSON)",
        "req",
        fixed(
            bare.addr,
            &bare_tls,
            br#"{"request":{"action":"challenge","user":"cdrapi","version":"1.0"}}"#,
            OK_SUFFIX,
        ),
    ));
    bare.stop();

    // 2 and 3. pbxgate with SQLite in a fresh directory.
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let (pbx, pbx_cert) = start_pbxgate(dir.path(), cfg.connections, None);
    let pbx_tls = tls_connector(pbx_cert);
    rows.push(run(
        "pbxgate getSystemStatus (valid cookie)",
        "req",
        with_kind(pbx.addr, &pbx_tls, Kind::WithCookie("getSystemStatus")),
    ));
    rows.push(run(
        "pbxgate challenge+login",
        "pair",
        with_kind(pbx.addr, &pbx_tls, Kind::Pairs),
    ));

    let baseline = rows[0].rate();
    let ratio = if baseline > 0.0 {
        rows[1].rate() / baseline
    } else {
        0.0
    };
    let met = ratio >= TARGET_RATIO;

    // Informational: where the time goes.
    let mut extra = Vec::new();
    if diagnose(met) {
        extra.push(run(
            "info: pbxgate getSystemGeneralStatus (cookie)",
            "req",
            with_kind(
                pbx.addr,
                &pbx_tls,
                Kind::WithCookie("getSystemGeneralStatus"),
            ),
        ));
        extra.push(run(
            "info: pbxgate, no cookie (-6; no database access)",
            "req",
            fixed(pbx.addr, &pbx_tls, NO_COOKIE_BODY, COOKIE_ERROR_SUFFIX),
        ));
        pbx.stop();
        let quiet = tracing::Dispatch::new(
            tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .with_env_filter("warn")
                .finish(),
        );
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let (pbx, pbx_cert) = start_pbxgate(dir.path(), cfg.connections, Some(quiet));
        let pbx_tls = tls_connector(pbx_cert);
        extra.push(run(
            "info: pbxgate getSystemStatus, log level warn",
            "req",
            with_kind(pbx.addr, &pbx_tls, Kind::WithCookie("getSystemStatus")),
        ));
        extra.push(run(
            "info: pbxgate, no cookie, log level warn",
            "req",
            fixed(pbx.addr, &pbx_tls, NO_COOKIE_BODY, COOKIE_ERROR_SUFFIX),
        ));
        client_rt.shutdown_timeout(Duration::from_secs(2));
        pbx.stop();
        println!("running: store session look-up alone");
        extra.push(measure_store_lookup(&cfg));
    } else {
        // Close the client connections before asking the server to stop.
        client_rt.shutdown_timeout(Duration::from_secs(2));
        pbx.stop();
    }

    print_table(&rows, baseline);
    println!(
        "target: pbxgate getSystemStatus >= {:.0}% of the bare endpoint: {} ({:.1}% = {:.1} / {:.1} req/s)",
        TARGET_RATIO * 100.0,
        if met { "MET" } else { "NOT MET" },
        ratio * 100.0,
        rows[1].rate(),
        baseline,
    );
    if !extra.is_empty() {
        println!(
            "\ninformational rows (not part of the target; BENCH_DIAGNOSE=0 skips them, =1 always runs them):"
        );
        print_table(&extra, baseline);
    }
    rows.extend(extra);

    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    if errors > 0 {
        let banner = "!".repeat(78);
        for out in [
            &mut std::io::stdout() as &mut dyn std::io::Write,
            &mut std::io::stderr(),
        ] {
            let _ = writeln!(
                out,
                "\n{banner}\nERRORS: {errors} failed requests; the figures above are NOT valid"
            );
            for r in rows.iter().filter(|r| r.errors > 0) {
                let _ = writeln!(out, "  {}: {} errors", r.scenario, r.errors);
                for s in &r.samples {
                    let _ = writeln!(out, "    e.g. {s}");
                }
            }
            let _ = writeln!(out, "{banner}");
        }
        std::process::exit(1);
    }
    println!("errors: none");
}
