//! Test kit: starts the real binary with a temporary configuration and talks
//! to it over HTTPS.

use std::net::IpAddr;
use std::path::PathBuf;
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

/// A TCP port nothing listens on right now.
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("pbxgate exited with {status}:\n{}", self.log_text());
            }
            if c.post(self.url("/api")).body("{}").send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pbxgate did not come up:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
