//! Test kit: starts the real binary with a temporary configuration and talks
//! to it over HTTPS.

use std::fmt::{Debug, Display};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod browser;
mod tls;

pub use browser::*;
pub use tls::{raw_tls, raw_tls_alpn};

use md5::{Digest, Md5};
use serde_json::{Value, json};
use store::testing::{TestDb, databases};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_pbxgate");

/// How often [`wait_until`] looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// Waits for something to happen instead of sleeping for a guessed time:
/// calls `probe` every [`POLL`] until it returns `Ok` (its value is returned),
/// for at most `limit`. At the deadline the test fails, naming `what` it waited
/// for and the last value `probe` observed (its `Err`). Deadlines are generous
/// (a loaded CI machine): they only matter when the test fails anyway.
pub async fn wait_until<T, L: Debug>(
    what: impl Display,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, L>,
) -> T {
    let start = Instant::now();
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        if start.elapsed() >= limit {
            panic!("waited {limit:?} for {what}; never happened; last observed: {last:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A last observed value for [`wait_until`] shown as it is (a server log, a
/// JSON document), not quoted and escaped as `Debug` would.
pub struct Text(pub String);

impl Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Waits until the value a watch channel holds satisfies `pred` (an actual
/// notification, no polling), for at most `limit`; fails naming `what` and
/// the last value seen.
pub async fn wait_watch<T: Debug>(
    what: impl Display,
    limit: Duration,
    rx: &mut tokio::sync::watch::Receiver<T>,
    pred: impl FnMut(&T) -> bool,
) {
    if tokio::time::timeout(limit, rx.wait_for(pred))
        .await
        .is_err()
    {
        panic!(
            "waited {limit:?} for {what}; never happened; last observed: {:?}",
            *rx.borrow()
        );
    }
}

/// A quiet period: nothing asserted to happen may happen within `window`
/// (counted from `since`). This one is a sleep on purpose: the absence of an
/// event can only be observed by letting time pass.
pub async fn quiet_window(since: impl Into<tokio::time::Instant>, window: Duration) {
    tokio::time::sleep_until(since.into() + window).await;
}

/// One fresh database per backend (PostgreSQL when configured; always under CI).
pub async fn dbs() -> Vec<TestDb> {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    databases(dir.path()).await
}

/// PostgreSQL when configured (several pbxgate on one database), else SQLite.
pub fn last_db(dbs: Vec<TestDb>) -> TestDb {
    dbs.into_iter().last().unwrap()
}

pub fn md5_hex(s: &str) -> String {
    ucm::auth::hex(&Md5::digest(s.as_bytes()))
}

/// An HTTPS client that trusts the self-signed certificate, optionally bound
/// to a source address (127.0.0.2 plays a second host).
pub fn client(source: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .timeout(Duration::from_secs(20));
    if let Some(ip) = source {
        b = b.local_address(ip.parse::<IpAddr>().unwrap());
    }
    b.build().unwrap()
}

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: Arc<tempfile::TempDir>,
    pub db_url: String,
    /// The configuration file it was started with.
    pub config: PathBuf,
    log: PathBuf,
}

/// Waits until the log file at `path` has a line containing `needle`; the line.
pub async fn wait_log_file(path: &Path, needle: &str, limit: Duration) -> String {
    wait_until(format!("a log line with {needle:?}"), limit, async || {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        match log.lines().find(|l| l.contains(needle)) {
            Some(line) => Ok(line.to_owned()),
            None => Err(Text(format!("the log:\n{log}"))),
        }
    })
    .await
}

/// A port nothing listens on now, never one handed out before in this
/// process: the kernel may give a port just released again, and a test
/// that asks twice (pbxgate's port and its old API's) would get a clash.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

impl Server {
    pub async fn start(db: &TestDb, config: &str) -> Server {
        Self::start_in(
            db,
            config,
            Arc::new(tempfile::tempdir().unwrap()),
            free_port(),
        )
        .await
    }

    /// Starts in an existing directory (to restart over the same data).
    pub async fn start_in(
        db: &TestDb,
        config: &str,
        dir: Arc<tempfile::TempDir>,
        port: u16,
    ) -> Server {
        Self::start_with(db, config, dir, port, None).await
    }

    /// Starts under an open-files limit: `ulimit` arguments such as `-n 256`
    /// (soft and hard) or `-Sn 200` (soft only, as systemd leaves it).
    pub async fn start_with_ulimit(db: &TestDb, config: &str, ulimit: &str) -> Server {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Self::start_with(db, config, dir, free_port(), Some(ulimit)).await
    }

    async fn start_with(
        db: &TestDb,
        config: &str,
        dir: Arc<tempfile::TempDir>,
        port: u16,
        ulimit: Option<&str>,
    ) -> Server {
        let n = std::fs::read_dir(dir.path()).unwrap().count();
        let path = dir.path().join(format!("pbxgate-{n}.toml"));
        // The [web] and [database] sections are prepended unless the test sets keys there.
        let mut text = format!("[database]\nurl = \"{}\"\n", db.url);
        if config.contains("[web]") {
            text.push_str(&config.replace(
                "[web]\n",
                &format!("[web]\nlisten = \"127.0.0.1:{port}\"\n"),
            ));
        } else {
            text.push_str(&format!("[web]\nlisten = \"127.0.0.1:{port}\"\n"));
            text.push_str(config);
        }
        std::fs::write(&path, text).unwrap();
        let log = dir.path().join(format!("server-{n}.log"));
        let mut cmd = match ulimit {
            None => Command::new(BIN),
            Some(u) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit {u} && exec \"$0\" \"$@\""), BIN]);
                c
            }
        };
        let child = cmd
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut srv = Server {
            child,
            port,
            dir,
            db_url: db.url.clone(),
            config: path,
            log,
        };
        srv.wait_ready().await;
        srv
    }

    async fn wait_ready(&mut self) {
        let c = client(None);
        let url = self.url("/api");
        let log = self.log.clone();
        let child = &mut self.child;
        wait_until(
            "pbxgate to answer on /api",
            Duration::from_secs(30),
            async || {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "pbxgate exited with {status}:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                match c.post(&url).body("{}").send().await {
                    Ok(_) => Ok(()),
                    Err(e) => Err(Text(format!(
                        "{e}; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ))),
                }
            },
        )
        .await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's log file (read it while [`Server::stop`] owns the server).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until the server's log has a line containing `needle`; the line.
    pub async fn wait_log(&self, needle: &str, limit: Duration) -> String {
        wait_log_file(&self.log, needle, limit).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub async fn raw(&self, c: &reqwest::Client, path: &str, body: Vec<u8>) -> Value {
        let resp = c.post(self.url(path)).body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    pub async fn api_at(&self, c: &reqwest::Client, path: &str, request: Value) -> Value {
        self.raw(
            c,
            path,
            json!({ "request": request }).to_string().into_bytes(),
        )
        .await
    }

    pub async fn api(&self, c: &reqwest::Client, request: Value) -> Value {
        self.api_at(c, "/api", request).await
    }

    pub async fn challenge(&self, c: &reqwest::Client, user: &str) -> String {
        let r = self
            .api(c, json!({"action":"challenge","user":user,"version":"1.0"}))
            .await;
        assert_eq!(r["status"], 0, "challenge: {r}");
        r["response"]["challenge"].as_str().unwrap().to_owned()
    }

    /// challenge + login; the cookie, or the failing status.
    pub async fn login(
        &self,
        c: &reqwest::Client,
        user: &str,
        password: &str,
    ) -> Result<String, i64> {
        let r = self
            .api(c, json!({"action":"challenge","user":user,"version":"1.0"}))
            .await;
        if r["status"] != 0 {
            return Err(r["status"].as_i64().unwrap());
        }
        let ch = r["response"]["challenge"].as_str().unwrap();
        let token = md5_hex(&format!("{ch}{password}"));
        let r = self
            .api(c, json!({"action":"login","user":user,"token":token}))
            .await;
        match r["status"].as_i64().unwrap() {
            0 => Ok(r["response"]["cookie"].as_str().unwrap().to_owned()),
            s => Err(s),
        }
    }

    /// `GET /healthz`'s JSON.
    pub async fn healthz(&self) -> Value {
        client(None)
            .get(self.url("/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The DER certificate the server presents.
    pub async fn peer_certificate(&self) -> Vec<u8> {
        let resp = client(None)
            .post(self.url("/api"))
            .body("{}")
            .send()
            .await
            .unwrap();
        let info = resp.extensions().get::<reqwest::tls::TlsInfo>().unwrap();
        info.peer_certificate().unwrap().to_vec()
    }

    /// The server's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// SIGKILL (a crash: nothing is cleaned up), and the server's log.
    pub async fn kill(mut self) -> String {
        self.child.kill().await.unwrap();
        self.log_text()
    }

    /// SIGTERM, wait for a clean exit, and return the server's log.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .expect("pbxgate did not stop within 40 s of SIGTERM")
            .unwrap();
        let log = self.log_text();
        assert!(
            exit.success(),
            "pbxgate exited with {exit} after SIGTERM:\n{log}"
        );
        log
    }
}
