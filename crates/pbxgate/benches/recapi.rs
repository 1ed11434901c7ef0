//! `recapi` downloads through the real server.
//!
//! A seeded WAV recording of `BENCH_RECORDING_MB` MiB (default 200) is
//! written under `monitor/2025-01/` of a temporary spool directory, and the
//! release `pbxgate` binary is started as a child process over it (SQLite,
//! `[recordings] spool_dir`), so that its memory is its own. Clients are
//! `curl` processes (HTTPS/1.1 over loopback, `POST /api` with
//! `action=recapi`, body to /dev/null).
//!
//! Rows:
//! 1. `cat` of the file to /dev/null (the raw rate, page cache warm), one
//!    download through the API, and one from a reference TLS file server
//!    (`openssl s_server -WWW` over the same folder, the same curl);
//!    `BENCH_RUNS` (default 3) of each, alternating, medians compared. The
//!    first download is checked byte for byte against the file (untimed).
//!    Target: >= 100% of the reference's rate in the same run: no TLS server
//!    reaches `cat`'s rate from the page cache (both ends' AES-GCM share the
//!    machine's cores), so the raw row is information. Beside them, the
//!    machine's AES-GCM limit: `openssl speed -evp aes-128-gcm` and
//!    `aes-256-gcm` on one core, 16 KiB blocks (TLS records), one second each
//!    (a loopback download encrypts and decrypts every byte on these cores).
//! 2. `BENCH_CONCURRENT` (default 50) downloads of the same recording at
//!    once, each checked for its full size; aggregate rate, and the server's
//!    peak RSS (VmHWM after a reset through `/proc/<pid>/clear_refs`; a
//!    50 ms VmRSS sampler beside it). Target: peak RSS < 100 MB.
//!
//! Run with `cargo bench -p pbxgate --bench recapi` or `scripts/bench`.
//! Exits with status 1 on a wrong result (a failed or short download, bytes
//! that differ from the file); a missed target is printed as NOT MET.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::server::{RssSampler, Server, client, login, mib, proc_kib, reset_peak_rss};
use common::{Rng, env_number};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::json;

const SEED: u64 = 0x7ec0_7d1e_5eed_2025;
const NAME: &str = "auto-1735700000-1000-2000.wav";
/// Of the reference TLS file server's rate in the same run.
const TARGET_RATIO: f64 = 1.0;
const TARGET_RSS_MB: f64 = 100.0;

/// Writes a valid RIFF/WAVE file (8 kHz, 16-bit mono) of about `bytes`.
fn write_recording(path: &Path, bytes: u64) {
    let data_len = (bytes.saturating_sub(44) & !1) as u32;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    f.write_all(b"RIFF").unwrap();
    f.write_all(&(36 + data_len).to_le_bytes()).unwrap();
    f.write_all(b"WAVEfmt ").unwrap();
    f.write_all(&16u32.to_le_bytes()).unwrap();
    f.write_all(&1u16.to_le_bytes()).unwrap(); // PCM
    f.write_all(&1u16.to_le_bytes()).unwrap(); // mono
    f.write_all(&8000u32.to_le_bytes()).unwrap();
    f.write_all(&16000u32.to_le_bytes()).unwrap();
    f.write_all(&2u16.to_le_bytes()).unwrap();
    f.write_all(&16u16.to_le_bytes()).unwrap();
    f.write_all(b"data").unwrap();
    f.write_all(&data_len.to_le_bytes()).unwrap();
    let mut rng = Rng(SEED);
    let mut block = vec![0u8; 1 << 16];
    let mut left = u64::from(data_len);
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// One core's AES-GCM encryption rate in MiB/s (`openssl speed`, 16 KiB
/// blocks as TLS records are); `None` when openssl is missing or says
/// something else.
fn aes_gcm_rate(cipher: &str) -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-mr", "-evp", cipher, "-seconds", "1", "-bytes", "16384",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // `+F:<n>:<NAME>:<bytes per second>`
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("+F:"))?;
    let bytes: f64 = line.rsplit(':').next()?.trim().parse().ok()?;
    Some(bytes / (1 << 20) as f64)
}

/// `cat FILE > /dev/null`: seconds.
fn cat(path: &Path) -> f64 {
    let t = Instant::now();
    let status = Command::new("cat")
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("cannot run cat");
    assert!(status.success(), "cat failed");
    t.elapsed().as_secs_f64()
}

/// A curl that downloads the recording through `/api` to `out`; prints
/// `size_download time_total`.
fn curl(srv: &Server, cookie: &str, out: &Path) -> Command {
    let body = json!({"request": {"action": "recapi", "cookie": cookie,
        "filedir": "monitor", "filename": NAME}})
    .to_string();
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-k",
        "--http1.1",
        "-H",
        "Content-Type: application/json",
    ])
    .args(["--data-binary", &body, "-o"])
    .arg(out)
    .args(["-w", "%{http_code} %{size_download} %{time_total}"])
    .arg(srv.url())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// Reads curl's `-w` line: (bytes, seconds); an error unless HTTP 200 with
/// `want` bytes.
fn curl_result(out: std::process::Output, want: u64) -> Result<(u64, f64), String> {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let parts: Vec<&str> = text.split_whitespace().collect();
    if !out.status.success() || parts.len() != 3 {
        return Err(format!(
            "curl failed ({}): {text} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let bytes: u64 = parts[1].parse().map_err(|_| format!("curl: {text}"))?;
    let secs: f64 = parts[2].parse().map_err(|_| format!("curl: {text}"))?;
    if parts[0] != "200" || bytes != want {
        return Err(format!("HTTP {}, {bytes} bytes of {want}", parts[0]));
    }
    Ok((bytes, secs))
}

/// `openssl s_server -WWW` serving `dir` over TLS on a free port.
struct Reference {
    child: std::process::Child,
    port: u16,
}

impl Reference {
    fn start(tmp: &Path, dir: &Path) -> Result<Reference, String> {
        let (key, cert) = (tmp.join("ref-key.pem"), tmp.join("ref-cert.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if !made.success() {
            return Err("openssl req failed".into());
        }
        let port = common::server::free_port()?;
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &port.to_string(),
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run openssl s_server: {e}"))?;
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("openssl s_server did not come up".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(Reference { child, port })
    }

    /// One download of the recording to /dev/null: seconds.
    fn download(&self, size: u64) -> Result<f64, String> {
        let o = Command::new("curl")
            .args(["-sS", "-k", "--http1.1", "-o", "/dev/null", "-w"])
            .arg("%{http_code} %{size_download} %{time_total}")
            .arg(format!("https://127.0.0.1:{}/{NAME}", self.port))
            .output()
            .map_err(|e| format!("cannot run curl: {e}"))?;
        curl_result(o, size).map(|(_, secs)| secs)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn same_bytes(a: &Path, b: &Path) -> Result<(), String> {
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut x, mut y) = (open(a)?, open(b)?);
    let (mut bx, mut by) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut at = 0u64;
    loop {
        let n = x.read(&mut bx).map_err(|e| e.to_string())?;
        let mut m = 0;
        while m < n {
            let k = y.read(&mut by[m..n]).map_err(|e| e.to_string())?;
            if k == 0 {
                return Err(format!("download ends at {} of more", at + m as u64));
            }
            m += k;
        }
        if bx[..n] != by[..n] {
            return Err(format!("download differs from the file near byte {at}"));
        }
        if n == 0 {
            return if y.read(&mut by).map_err(|e| e.to_string())? == 0 {
                Ok(())
            } else {
                Err("download is longer than the file".into())
            };
        }
        at += n as u64;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Outcome {
    lines: Vec<String>,
    failures: Vec<String>,
    missed: usize,
}

impl Outcome {
    fn row(&mut self, scenario: &str, figures: String, target: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "MET",
            Some(false) => {
                self.missed += 1;
                "NOT MET"
            }
            None => "-",
        };
        let line = format!("{scenario:<44} {figures:<64} {target:<20} {verdict}");
        println!("{line}");
        self.lines.push(line);
    }
}

async fn run(tmp: &Path, out: &mut Outcome) -> Result<(), String> {
    let mb = env_number("BENCH_RECORDING_MB", 200, 1, 100_000);
    let runs = env_number("BENCH_RUNS", 3, 1, 100) as usize;
    let concurrent = env_number("BENCH_CONCURRENT", 50, 1, 1000) as usize;
    let spool = tmp.join("spool");
    let month = spool.join("monitor").join("2025-01");
    std::fs::create_dir_all(&month).map_err(|e| e.to_string())?;
    let file = month.join(NAME);
    let t = Instant::now();
    write_recording(&file, mb << 20);
    let size = std::fs::metadata(&file).map_err(|e| e.to_string())?.len();
    println!(
        "  info: wrote a {:.0} MiB recording in {:.1} s",
        mib(size / 1024),
        t.elapsed().as_secs_f64()
    );

    let c = client();
    let extra = format!(
        "[recordings]\nspool_dir = {}\n",
        common::server::toml_string(&spool.display().to_string())
    );
    let db = format!("sqlite://{}", tmp.join("pbxgate.db").display());
    let srv = Server::start(tmp, "recapi", &db, &extra, &c).await?;
    let cookie = login(&c, &srv.url()).await?;

    // Row 1: raw rate vs one download, alternating.
    let dl: PathBuf = tmp.join("download.wav");
    let first = curl(&srv, &cookie, &dl)
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    curl_result(first, size)?;
    same_bytes(&file, &dl)?;
    let _ = std::fs::remove_file(&dl);
    let null = PathBuf::from("/dev/null");
    let reference = Reference::start(tmp, &month)?;
    let (mut raw, mut api, mut refs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        raw.push(cat(&file));
        let o = curl(&srv, &cookie, &null)
            .output()
            .map_err(|e| format!("cannot run curl: {e}"))?;
        api.push(curl_result(o, size)?.1);
        refs.push(reference.download(size)?);
    }
    drop(reference);
    let rate = |secs: f64| size as f64 / secs / (1 << 20) as f64;
    let (raw_rate, api_rate) = (rate(median(raw)), rate(median(api)));
    out.row(
        "raw: cat to /dev/null",
        format!("{raw_rate:.0} MiB/s (median of {runs})"),
        "",
        None,
    );
    let ref_rate = rate(median(refs));
    out.row(
        "reference: openssl s_server -WWW, TLS",
        format!("{ref_rate:.0} MiB/s (median of {runs})"),
        "",
        None,
    );
    for cipher in ["aes-128-gcm", "aes-256-gcm"] {
        out.row(
            &format!("machine limit: {cipher}, one core"),
            match aes_gcm_rate(cipher) {
                Some(r) => format!("{r:.0} MiB/s (openssl speed, 16 KiB blocks)"),
                None => "not measured (openssl speed unavailable)".to_owned(),
            },
            "",
            None,
        );
    }
    let ratio = api_rate / ref_rate;
    out.row(
        &format!("recapi download, {mb} MiB, TLS loopback"),
        format!(
            "{api_rate:.0} MiB/s (median of {runs}); {:.0}% of the reference, {:.0}% of raw",
            ratio * 100.0,
            api_rate / raw_rate * 100.0
        ),
        &format!(">= {:.0}% of reference", TARGET_RATIO * 100.0),
        Some(ratio >= TARGET_RATIO),
    );

    // Row 2: concurrent downloads and the server's peak memory.
    let pid = srv.pid();
    let before = proc_kib(pid, "VmRSS").unwrap_or(0);
    let reset = reset_peak_rss(pid);
    let sampler = RssSampler::start(pid);
    let t = Instant::now();
    let children: Vec<_> = (0..concurrent)
        .map(|_| curl(&srv, &cookie, &null).spawn())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let mut failed = Vec::new();
    for child in children {
        let o = child.wait_with_output().map_err(|e| e.to_string())?;
        if let Err(e) = curl_result(o, size) {
            failed.push(e);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let sampled = sampler.finish();
    let peak = if reset {
        proc_kib(pid, "VmHWM").unwrap_or(sampled)
    } else {
        sampled
    };
    srv.stop();
    if !failed.is_empty() {
        return Err(format!(
            "{} of {concurrent} concurrent downloads failed: {}",
            failed.len(),
            failed[0]
        ));
    }
    out.row(
        &format!("{concurrent} concurrent downloads"),
        format!(
            "{:.0} MiB/s together ({:.1} s for {:.1} GiB)",
            (size * concurrent as u64) as f64 / secs / (1 << 20) as f64,
            secs,
            (size * concurrent as u64) as f64 / (1u64 << 30) as f64
        ),
        "",
        None,
    );
    let peak_mb = peak as f64 * 1024.0 / 1e6;
    out.row(
        "server peak RSS during them",
        format!(
            "{peak_mb:.1} MB = {:.1} MiB ({}; {:.1} MiB before)",
            mib(peak),
            if reset {
                "VmHWM after reset"
            } else {
                "sampled VmRSS"
            },
            mib(before)
        ),
        &format!("< {TARGET_RSS_MB:.0} MB"),
        Some(peak_mb < TARGET_RSS_MB),
    );
    Ok(())
}

fn main() {
    println!(
        "pbxgate recapi benchmark: release pbxgate as a child process, curl clients over loopback HTTPS/1.1; {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot build the runtime");
    let tmp = tempfile::Builder::new()
        .prefix("pbxgate-bench-recapi")
        .tempdir_in("/var/tmp")
        .expect("cannot create a temporary directory");
    let mut out = Outcome {
        lines: Vec::new(),
        failures: Vec::new(),
        missed: 0,
    };
    if let Err(e) = rt.block_on(run(tmp.path(), &mut out)) {
        out.failures.push(e);
    }
    println!("\nsummary:");
    for l in &out.lines {
        println!("{l}");
    }
    println!(
        "targets: {} NOT MET",
        if out.missed == 0 {
            "none".to_string()
        } else {
            out.missed.to_string()
        }
    );
    if !out.failures.is_empty() {
        println!("\nWRONG RESULTS ({}):", out.failures.len());
        for f in &out.failures {
            println!("  {f}");
        }
        std::process::exit(1);
    }
}
