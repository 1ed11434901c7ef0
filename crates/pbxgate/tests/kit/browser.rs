//! Browser tests: a script of `tests/browser/` run by Node.js with
//! playwright-core in Debian's chromium, against a running pbxgate. The test
//! reads the script's progress lines (`STEP name`) to act between its steps
//! (place a call, check the API), and fails with the script's output when the
//! script fails; `go()` lets a script waiting in `proceed(name)` go on.
//! Without chromium, Node.js or `npm ci` the test is skipped,
//! except under CI, where that is a failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub const CHROMIUM: &str = "/usr/bin/chromium";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Where screenshots go: `$PBXGATE_SCREENSHOTS`, else `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("PBXGATE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
        })
}

/// Whether browser tests can run here; panics under CI when they cannot.
pub fn browser_available() -> bool {
    let missing = if !std::path::Path::new(CHROMIUM).exists() {
        Some(format!(
            "{CHROMIUM} is not installed (apt-get install chromium)"
        ))
    } else if !dir().join("node_modules/playwright-core").exists() {
        Some(format!(
            "playwright-core is not installed (npm ci --prefix {})",
            dir().display()
        ))
    } else if std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        Some("Node.js is not installed".to_owned())
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("browser tests are required under CI: {why} (scripts/test installs them)")
        }
        Some(why) => {
            store::testing::record_skip(&format!("browser test: {why}"));
            false
        }
    }
}

/// A running browser script.
pub struct BrowserRun {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl BrowserRun {
    /// Starts `tests/browser/<script>` with `env` (plus `PBXGATE_SCREENSHOTS`
    /// and `CHROMIUM`).
    pub fn start(script: &str, env: &[(&str, &str)]) -> BrowserRun {
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(dir().join(script))
            .current_dir(dir())
            .env("PBXGATE_SCREENSHOTS", &shots)
            .env("CHROMIUM", CHROMIUM)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        BrowserRun {
            name: script.to_owned(),
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// Waits for the script to print `STEP <step>`; panics with what it
    /// printed if it ends or takes longer than `within`.
    pub async fn step(&mut self, step: &str, within: Duration) {
        let want = format!("STEP {step}");
        let until = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    eprintln!("[{}] {line}", self.name);
                    let done = line == want;
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = self.child.wait().await;
                    panic!(
                        "{} ended ({status:?}) before step {step}:\n{}",
                        self.name,
                        self.seen.join("\n")
                    );
                }
                Err(_) => panic!(
                    "{} did not reach step {step} within {within:?}:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Lets the script, waiting in `proceed(name)`, go on.
    pub async fn go(&mut self, name: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("GO {name}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits for the script to end and asserts that it succeeded.
    pub async fn finish(mut self, within: Duration) -> Vec<String> {
        drop(self.stdin.take());
        let until = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    eprintln!("[{}] {line}", self.name);
                    self.seen.push(line);
                }
                Ok(Ok(None)) | Ok(Err(_)) => break,
                Err(_) => panic!(
                    "{} did not end within {within:?}:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
        let status = self.child.wait().await.unwrap();
        assert!(
            status.success(),
            "{} failed ({status}):\n{}",
            self.name,
            self.seen.join("\n")
        );
        self.seen
    }
}
