//! The release `pbxgate` as a child process of a benchmark (its memory and
//! CPU are its own), and the HTTPS client that logs in to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::{Value, json};

/// The API password of the benchmark servers (user `cdrapi`).
pub const PASSWORD: &str = "benchpass";

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    /// Its own directory (config, data, log, curl's answers).
    pub dir: PathBuf,
}

pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

pub fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Server {
    /// Starts `pbxgate serve` over `db_url` with `extra` configuration and
    /// waits until it answers.
    pub async fn start(
        dir: &Path,
        label: &str,
        db_url: &str,
        extra: &str,
        client: &reqwest::Client,
    ) -> Result<Server, String> {
        let dir = dir.join(label);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = free_port()?;
        let config = format!(
            "[database]\nurl = {}\n\n[web]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {}\n\n\
             [https_api]\npassword = \"{PASSWORD}\"\n\n[pbx]\ntimezone = \"UTC\"\n\n\
             [log]\nlevel = \"info\"\n\n{extra}",
            toml_string(db_url),
            toml_string(&dir.join("data").display().to_string()),
        );
        let path = dir.join("pbxgate.toml");
        std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        let log = dir.join("server.log");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = Command::new(env!("CARGO_BIN_EXE_pbxgate"))
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start pbxgate: {e}"))?;
        let mut srv = Server {
            child,
            port,
            log,
            dir: dir.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = srv.child.try_wait() {
                return Err(format!("pbxgate exited with {status}:\n{}", srv.log_text()));
            }
            if client
                .post(srv.url())
                .body("{}")
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .is_ok()
            {
                return Ok(srv);
            }
            if Instant::now() > deadline {
                return Err(format!("pbxgate did not come up:\n{}", srv.log_text()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/api", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Handler times (ms) of the last `n` requests for `action`, from the
    /// access log: the server's share of the latency, without transport.
    pub fn handler_ms(&self, action: &str, n: usize) -> Vec<f64> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!("action={action} ");
        let mut all: Vec<f64> = text
            .lines()
            .filter(|l| l.contains("pbxgate::access") && l.contains(&needle))
            .filter_map(|l| l.split(" us=").nth(1))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .map(|us| us / 1000.0)
            .collect();
        all.split_off(all.len().saturating_sub(n))
    }

    pub fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM and a bounded wait; killed when it does not stop.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "bench: pbxgate {} did not stop after SIGTERM; killing it",
            self.pid()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
pub fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(key)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("cannot build the HTTPS client")
}

pub async fn post(
    c: &reqwest::Client,
    url: &str,
    body: String,
    timeout: Duration,
) -> Result<reqwest::Response, String> {
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("HTTP status {}", resp.status()));
    }
    Ok(resp)
}

pub async fn api(c: &reqwest::Client, url: &str, request: Value) -> Result<Value, String> {
    let body = json!({ "request": request }).to_string();
    let resp = post(c, url, body, Duration::from_secs(30)).await?;
    let bytes = resp.bytes().await.map_err(|e| format!("reading: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON ({e})"))
}

pub async fn login(c: &reqwest::Client, url: &str) -> Result<String, String> {
    login_as(c, url, "cdrapi").await
}

/// Logs `user` (password [`PASSWORD`]) in; the cookie.
pub async fn login_as(c: &reqwest::Client, url: &str, user: &str) -> Result<String, String> {
    let r = api(
        c,
        url,
        json!({"action":"challenge","user":user,"version":"1.0"}),
    )
    .await?;
    let challenge = r["response"]["challenge"]
        .as_str()
        .ok_or_else(|| format!("challenge refused: {r}"))?;
    let token = ucm::auth::hex(&Md5::digest(format!("{challenge}{PASSWORD}").as_bytes()));
    let r = api(c, url, json!({"action":"login","user":user,"token":token})).await?;
    r["response"]["cookie"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("login refused: {r}"))
}

/// Samples a process's VmRSS every 50 ms until stopped; returns the highest.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut max = 0;
            while !flag.load(Ordering::Relaxed) {
                max = max.max(proc_kib(pid, "VmRSS").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            max.max(proc_kib(pid, "VmRSS").unwrap_or(0))
        });
        RssSampler { stop, thread }
    }

    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Resets the peak RSS of `pid` (Linux >= 4.0), so that VmHWM afterwards is
/// the peak of what follows. False when the kernel refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The configuration of a call-control benchmark on the rig: API user `cc`
/// with call control, held calls accepted by the timer after
/// `timeout_secs`, the rig's AMI and ARI.
pub fn call_control_config(rig: &asterisk::testing::Rig, timeout_secs: u32) -> String {
    format!(
        "[[https_api.users]]\nusername = \"cc\"\npassword = \"{PASSWORD}\"\ncall_control = true\n\n\
         [call_control]\ntimeout_secs = {timeout_secs}\n\n\
         [asterisk]\nami_address = {}\nami_username = {}\nami_secret = {}\n\
         ari_url = {}\nari_username = {}\nari_password = {}\nari_app = {}\ncdr_csv = \"\"\n",
        toml_string(&rig.ami_address()),
        toml_string(rig.get("AMI_USER")),
        toml_string(rig.get("AMI_SECRET")),
        toml_string(&rig.http_url()),
        toml_string(rig.get("ARI_USER")),
        toml_string(rig.get("ARI_PASSWORD")),
        toml_string(rig.get("ARI_APP")),
    )
}
