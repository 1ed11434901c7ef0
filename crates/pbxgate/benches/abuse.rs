//! Abuse benchmark (issue 15): the release `pbxgate`, started under
//! `ulimit -n 1024` (systemd's default), against each attack class an
//! unauthenticated client can mount, one fresh server per row. For each row:
//! the server's peak RSS during the attack, its RSS afterwards, and the
//! slowest time a normal client (new connection, challenge, login,
//! getSystemStatus) took while the attack ran.
//!
//! Every connection goes to 127.0.0.1 (source addresses in 127.0.0.0/8), is
//! bounded in count, and every row ends by itself within its time limit.
//!
//! Environment: BENCH_ABUSE_ROWS (comma list of argon2,slow-h1,h2-streams,
//! silent,challenges; default all), BENCH_ABUSE_HOLD_SECS (how long body
//! attacks hold, default 10).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/kit/tls.rs"]
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::channel::Channel;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "benchpass";
const RSS_TARGET_MIB: f64 = 256.0;
const CLIENT_TARGET: Duration = Duration::from_secs(1);
const SILENT_CLOSE_TARGET: Duration = Duration::from_secs(60);
const DB_GROWTH_TARGET_MB: f64 = 10.0;

struct Srv {
    child: Child,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Srv {
    async fn start(base: &Path, label: &str) -> Srv {
        let dir = base.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "[database]\nurl = \"sqlite://{db}\"\n[web]\nlisten = \"127.0.0.1:{port}\"\n\
             data_dir = \"{data}\"\n[https_api]\npassword = \"{PASSWORD}\"\n[log]\nlevel = \"info\"\n",
            db = dir.join("pbxgate.db").display(),
            data = dir.join("data").display(),
        );
        let path = dir.join("pbxgate.toml");
        std::fs::write(&path, config).unwrap();
        let bin = env!("CARGO_BIN_EXE_pbxgate");
        // The admin account the argon2 row attacks.
        let mut set = Command::new(bin)
            .args(["admin", "set-password", "--username", "root", "--config"])
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = set.stdin.take().unwrap();
            writeln!(stdin, "a good admin password").unwrap();
        }
        assert!(set.wait().unwrap().success(), "admin set-password failed");
        let log = dir.join("server.log");
        let child = Command::new("sh")
            .args(["-c", "ulimit -n 1024 && exec \"$0\" \"$@\"", bin])
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let srv = Srv {
            child,
            port,
            dir,
            log,
        };
        let c = client();
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.post(srv.url("/api")).body("{}").send().await.is_err() {
            assert!(Instant::now() < deadline, "pbxgate did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        srv
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn rss_mib(&self) -> f64 {
        rss_mib(self.child.id())
    }

    fn db_bytes(&self) -> u64 {
        ["pbxgate.db", "pbxgate.db-wal", "pbxgate.db-shm"]
            .iter()
            .filter_map(|f| std::fs::metadata(self.dir.join(f)).ok())
            .map(|m| m.len())
            .sum()
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn md5_hex(s: &str) -> String {
    ucm::auth::hex(&Md5::digest(s.as_bytes()))
}

/// A normal client: new connection, challenge, login, getSystemStatus.
async fn normal_client(port: u16) -> Result<Duration, String> {
    let started = Instant::now();
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("https://127.0.0.1:{port}/api");
    let api = |body: Value| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let r = c
                .post(url)
                .body(json!({ "request": body }).to_string())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            r.json::<Value>().await.map_err(|e| e.to_string())
        }
    };
    let ch = api(json!({"action":"challenge","user":"cdrapi","version":"1.0"})).await?;
    let ch = ch["response"]["challenge"]
        .as_str()
        .ok_or(format!("challenge: {ch}"))?
        .to_owned();
    let token = md5_hex(&format!("{ch}{PASSWORD}"));
    let r = api(json!({"action":"login","user":"cdrapi","token":token})).await?;
    let cookie = r["response"]["cookie"]
        .as_str()
        .ok_or(format!("login: {r}"))?
        .to_owned();
    let r = api(json!({"action":"getSystemStatus","cookie":cookie})).await?;
    if r["status"] != 0 {
        return Err(format!("getSystemStatus: {r}"));
    }
    Ok(started.elapsed())
}

/// Samples the server's RSS and runs the normal client every 500 ms until
/// `stop`: (peak RSS MiB, slowest normal client, failures).
fn watch(
    pid: u32,
    port: u16,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(f64, Duration, Vec<String>)> {
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let kib = (rss_mib(pid) * 1024.0) as u64;
                peak.fetch_max(kib, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        let mut failures = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            match normal_client(port).await {
                Ok(d) => slowest = slowest.max(d),
                Err(e) => failures.push(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let _ = sampler.join();
        (
            peak.load(Ordering::Relaxed) as f64 / 1024.0,
            slowest,
            failures,
        )
    })
}

struct Row {
    name: &'static str,
    peak_mib: f64,
    after_mib: f64,
    slowest: Duration,
    failures: usize,
    extra: Vec<(String, String, bool)>,
    panicked: bool,
}

fn hold_secs() -> u64 {
    std::env::var("BENCH_ABUSE_HOLD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .clamp(2, 60)
}

/// Runs `attack` against a fresh server while watching it.
async fn row<F, Fut>(base: &Path, name: &'static str, attack: F) -> Row
where
    F: FnOnce(u16, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Vec<(String, String, bool)>>,
{
    eprintln!("abuse: {name} ...");
    let srv = Srv::start(base, name).await;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch(srv.child.id(), srv.port, stop.clone());
    let db_before = srv.db_bytes();
    let mut extra =
        tokio::time::timeout(Duration::from_secs(150), attack(srv.port, srv.dir.clone()))
            .await
            .unwrap_or_else(|_| vec![("attack".into(), "did not end in 150 s".into(), false)]);
    stop.store(true, Ordering::Relaxed);
    let (peak_mib, slowest, failures) = watcher.await.unwrap();
    if name == "challenge flood" {
        let mb = (srv.db_bytes().saturating_sub(db_before)) as f64 / 1e6;
        extra.push((
            "database growth".into(),
            format!("{mb:.1} MB (target <= {DB_GROWTH_TARGET_MB} MB)"),
            mb <= DB_GROWTH_TARGET_MB,
        ));
    }
    // Memory back after the attack: give the connections time to close
    // (a stalled body is dropped at the body deadline, 30 s by default).
    let settle = if name.contains("bodies") || name.contains("streams") {
        32
    } else {
        3
    };
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let after_mib = srv.rss_mib();
    for f in failures.iter().take(3) {
        eprintln!("abuse: {name}: normal client failed: {f}");
    }
    let log = srv.stop();
    Row {
        name,
        peak_mib,
        after_mib,
        slowest,
        failures: failures.len(),
        extra,
        panicked: log.contains("panicked"),
    }
}

/// 500 concurrent wrong admin logins: 250 from 127.0.0.2, and one from each
/// of 250 other addresses (the restriction does not stop those). The normal
/// client is 127.0.0.1, which the restriction does not concern.
async fn argon2_burst(port: u16, _: PathBuf) -> Vec<(String, String, bool)> {
    let url = format!("https://127.0.0.1:{port}/admin/login");
    // The login form's token is issued by the server (and valid for an hour):
    // an attacker fetches one and replays it from every address.
    let token = {
        let c = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let page = c.get(&url).send().await.unwrap();
        let cookie = page
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("pbxgate_admin_csrf="))
            .and_then(|v| v.split(';').next())
            .unwrap()
            .to_owned();
        let html = page.text().await.unwrap();
        assert!(
            html.contains(&cookie),
            "the form carries the cookie's token"
        );
        cookie
    };
    let mut tasks = Vec::new();
    for i in 0..500u32 {
        let source = if i < 250 {
            "127.0.0.2".to_owned()
        } else {
            format!("127.0.{}.{}", 1 + (i - 250) / 200, 3 + (i - 250) % 200)
        };
        let (url, token) = (url.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(30))
                .local_address(source.parse::<std::net::IpAddr>().unwrap())
                .build()
                .unwrap();
            c.post(&url)
                .header("cookie", format!("pbxgate_admin_csrf={token}"))
                .form(&[
                    ("csrf", token.as_str()),
                    ("username", "root"),
                    ("password", "wrong password"),
                ])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap_or(0)).or_insert(0u32) += 1;
    }
    // Every attempt must reach the password check, the restriction or the
    // busy answer: a 403 (token refused) would not test hashing at all.
    let expected = counts.contains_key(&401) && counts.keys().all(|k| [401, 429, 503].contains(k));
    vec![(
        "answers".into(),
        format!("{counts:?} (401 checked, 429 restricted, 503 busy)"),
        expected,
    )]
}

/// HTTP/1.1 bodies that never finish: 600 connections each declaring 1 MiB
/// and sending 512 KiB, held open.
async fn slow_h1(port: u16, _: PathBuf) -> Vec<(String, String, bool)> {
    let mut held = Vec::new();
    let chunk = vec![b' '; 512 * 1024];
    for _ in 0..600 {
        let chunk = chunk.clone();
        held.push(tokio::spawn(async move {
            let Ok(Ok(mut s)) =
                tokio::time::timeout(Duration::from_secs(5), tls::try_raw_tls_alpn(port, &[]))
                    .await
            else {
                return;
            };
            let head = "POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_secs(hold_secs()), async {
                let _ = s.write_all(&chunk).await;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
            })
            .await;
        }));
    }
    tokio::time::sleep(Duration::from_secs(hold_secs())).await;
    for h in held {
        h.abort();
    }
    Vec::new()
}

/// h2: 8 connections x 200 streams, each declaring 1 MiB and sending 64 KiB.
async fn h2_streams(port: u16, _: PathBuf) -> Vec<(String, String, bool)> {
    let mut conns = Vec::new();
    let mut senders = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..8 {
        let Ok(io) = tls::try_raw_tls_alpn(port, &[b"h2"]).await else {
            continue;
        };
        let Ok((send, conn)) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await
        else {
            continue;
        };
        conns.push(tokio::spawn(conn));
        for _ in 0..200 {
            let (mut tx, body) = Channel::<Bytes, std::convert::Infallible>::new(4);
            let _ = tx.try_send(hyper::body::Frame::data(Bytes::from(vec![b' '; 64 * 1024])));
            senders.push(tx);
            let req = hyper::Request::post(format!("https://127.0.0.1:{port}/api"))
                .header("content-length", "1048576")
                .body(body)
                .unwrap();
            let mut send = send.clone();
            answers.push(tokio::spawn(async move {
                send.send_request(req).await.map(|r| r.status().as_u16())
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(hold_secs())).await;
    let (mut refused, mut answered, mut open) = (0, 0, 0);
    for a in answers {
        if a.is_finished() {
            match a.await {
                Ok(Ok(_)) => answered += 1,
                _ => refused += 1,
            }
        } else {
            open += 1;
            a.abort();
        }
    }
    drop(senders);
    for c in conns {
        c.abort();
    }
    vec![(
        "streams".into(),
        format!(
            "of 1600: {answered} answered, {refused} refused/reset, {open} still waiting \
             (at most 16 per connection at once) after the hold"
        ),
        true,
    )]
}

/// Silent connections beyond 1024 descriptors: 400 mid-handshake (TCP
/// only), 300 after the handshake (HTTP/1.1), 300 after the handshake with
/// ALPN h2, 100 h2 with their preface; then how long until all are closed.
async fn silent(port: u16, _: PathBuf) -> Vec<(String, String, bool)> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let closed = |mut s: Box<dyn tokio::io::AsyncRead + Unpin + Send>| async move {
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    for _ in 0..400 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            tasks.push(tokio::spawn(closed(Box::new(s))));
        }
    }
    for i in 0..600 {
        let alpn: &[&[u8]] = if i % 2 == 0 { &[] } else { &[b"h2"] };
        let connect =
            tokio::time::timeout(Duration::from_secs(5), tls::try_raw_tls_alpn(port, alpn));
        if let Ok(Ok(s)) = connect.await {
            tasks.push(tokio::spawn(closed(Box::new(s))));
        }
    }
    for _ in 0..100 {
        let io = tokio::time::timeout(
            Duration::from_secs(5),
            tls::try_raw_tls_alpn(port, &[b"h2"]),
        )
        .await;
        let Ok(Ok(io)) = io else { continue };
        if let Ok((send, conn)) = hyper::client::conn::http2::handshake::<
            _,
            _,
            http_body_util::Empty<Bytes>,
        >(TokioExecutor::new(), TokioIo::new(io))
        .await
        {
            tasks.push(tokio::spawn(async move {
                let _ = conn.await;
                drop(send);
            }));
        }
    }
    let opened = tasks.len();
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    let done = tokio::time::timeout(SILENT_CLOSE_TARGET + Duration::from_secs(10), all).await;
    let took = started.elapsed();
    vec![(
        "all silent closed".into(),
        match done {
            Ok(()) => format!(
                "{} connections in {:.1} s (target <= 60 s)",
                opened,
                took.as_secs_f64()
            ),
            Err(_) => format!("{opened} connections: NOT all closed after 70 s"),
        },
        done.is_ok() && took <= SILENT_CLOSE_TARGET,
    )]
}

/// 10,000 challenges, a third with 1000-character user names, from
/// 127.0.0.2 (the normal client is 127.0.0.1: an address holds a bounded
/// number of challenges, so a flood from the client's own address would
/// compete with its challenges by design).
async fn challenges(port: u16, _: PathBuf) -> Vec<(String, String, bool)> {
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/api");
    let long = "u".repeat(1000);
    let mut ok = 0u32;
    for batch in 0..(10_000 / 50) {
        let mut tasks = Vec::new();
        for i in 0..50 {
            let n = batch * 50 + i;
            let user = if n % 3 == 0 {
                format!("{long}{n}")
            } else {
                format!("user{n}")
            };
            let (c, url) = (c.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                c.post(url)
                    .body(
                        json!({"request":{"action":"challenge","user":user,"version":"1.0"}})
                            .to_string(),
                    )
                    .send()
                    .await
                    .is_ok()
            }));
        }
        for t in tasks {
            if t.await.unwrap_or(false) {
                ok += 1;
            }
        }
    }
    vec![(
        "challenges sent".into(),
        format!("{ok} of 10000 answered"),
        true,
    )]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows_wanted = std::env::var("BENCH_ABUSE_ROWS")
        .unwrap_or_else(|_| "argon2,slow-h1,h2-streams,silent,challenges".into());
    let wanted = |r: &str| rows_wanted.split(',').any(|w| w.trim() == r);
    let base = tempfile::tempdir().unwrap();
    let base = base.path().to_path_buf();
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        if wanted("argon2") {
            rows.push(row(&base, "argon2 login burst", argon2_burst).await);
        }
        if wanted("slow-h1") {
            rows.push(row(&base, "unfinished bodies h1", slow_h1).await);
        }
        if wanted("h2-streams") {
            rows.push(row(&base, "h2 streams unfinished", h2_streams).await);
        }
        if wanted("silent") {
            rows.push(row(&base, "silent TLS connections", silent).await);
        }
        if wanted("challenges") {
            rows.push(row(&base, "challenge flood", challenges).await);
        }
        rows
    });
    println!();
    println!(
        "pbxgate abuse benchmark (release, ulimit -n 1024, 127.0.0.1; body attacks held {} s)",
        hold_secs()
    );
    println!(
        "{:<24} {:>22} {:>12} {:>28} {:>9}",
        "attack", "peak RSS (<= 256 MiB)", "RSS after*", "normal client (<= 1 s)", "panicked"
    );
    let mut all_met = true;
    for r in &rows {
        let rss_ok = r.peak_mib <= RSS_TARGET_MIB;
        let client_ok = r.slowest <= CLIENT_TARGET && r.failures == 0;
        let met = |b: bool| if b { "MET" } else { "NOT MET" };
        println!(
            "{:<24} {:>14} {:>7} {:>8.1} MiB {:>15} {:>12} {:>9}",
            r.name,
            format!("{:.1} MiB", r.peak_mib),
            met(rss_ok),
            r.after_mib,
            format!(
                "{:.0} ms{}",
                r.slowest.as_secs_f64() * 1000.0,
                if r.failures > 0 {
                    format!(", {} failed", r.failures)
                } else {
                    String::new()
                }
            ),
            met(client_ok),
            if r.panicked { "YES" } else { "no" },
        );
        for (what, value, ok) in &r.extra {
            println!("    {what}: {value} {}", met(*ok));
            all_met &= *ok;
        }
        all_met &= rss_ok && client_ok && !r.panicked;
    }
    println!(
        "* RSS 3 s after the attack ends; 32 s after for body attacks (the body deadline is 30 s)"
    );
    println!();
    println!(
        "{}",
        if all_met {
            "all targets MET"
        } else {
            "some targets NOT MET"
        }
    );
}
