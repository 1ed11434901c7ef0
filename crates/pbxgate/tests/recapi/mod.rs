//! `recapi` through the HTTPS API: listings, downloads with ranges and
//! conditional requests, tar archives read back by tar(1), every traversal
//! attempt refused; `pbxgate recordings check`; a real recorded call on the
//! rig downloaded by the name its CDR gives; the same over S3 (moto).

use std::path::Path;
use std::time::Duration;

use asterisk::ami::Ami;
use asterisk::testing::rig;
use serde_json::{Value, json};
use store::{CdrStore, ConnectOptions, NewCdr, Store};

use crate::calls::{CALLS, call, pbx_config, wait_connected, wait_for_cdrs};
use crate::kit::*;

mod flat;

/// A recapi request with extra HTTP headers.
pub async fn recapi(
    srv: &Server,
    c: &reqwest::Client,
    cookie: &str,
    params: Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = json!({"action": "recapi", "cookie": cookie});
    for (k, v) in params.as_object().unwrap() {
        req[k] = v.clone();
    }
    let mut b = c.post(srv.url("/api")).json(&json!({ "request": req }));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.send().await.unwrap()
}

/// The JSON status of a refused request (HTTP 200, envelope).
async fn status_of(resp: reqwest::Response) -> i64 {
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["status"].as_i64().unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A PCM WAV (8 kHz, 16-bit mono) of `secs` seconds with a varying signal.
pub fn wav(secs: u32, seed: u8) -> Vec<u8> {
    let data_len = secs * 16_000;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    w.extend((0..data_len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    w
}

/// Seconds of audio in a RIFF/WAVE file, from its fmt and data chunks;
/// panics unless it is well-formed and complete.
pub fn wav_seconds(bytes: &[u8]) -> f64 {
    assert!(bytes.len() >= 12, "too short: {} bytes", bytes.len());
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    let riff = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(riff + 8, bytes.len(), "RIFF size");
    let mut pos = 12;
    let mut byte_rate = 0u32;
    let mut data = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
        let body = &bytes[pos + 8..(pos + 8 + size).min(bytes.len())];
        match id {
            b"fmt " => {
                let format = u16::from_le_bytes(body[0..2].try_into().unwrap());
                assert_eq!(format, 1, "PCM");
                byte_rate = u32::from_le_bytes(body[8..12].try_into().unwrap());
            }
            b"data" => {
                assert_eq!(body.len(), size, "data chunk complete");
                data = Some(size);
            }
            _ => {}
        }
        pos += 8 + size + (size & 1);
    }
    assert!(byte_rate > 0, "fmt chunk");
    data.expect("data chunk") as f64 / f64::from(byte_rate)
}

/// spool/monitor/2024-05 with two recordings, spool/meetme with one, and
/// things that must never be served.
fn spool(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mon = dir.join("monitor");
    std::fs::create_dir_all(mon.join("2024-05")).unwrap();
    std::fs::create_dir_all(dir.join("meetme")).unwrap();
    let a = wav(20, 1);
    let b = wav(3, 2);
    let m = wav(1, 3);
    std::fs::write(mon.join("2024-05/auto-1717093784-1001-2100.wav"), &a).unwrap();
    std::fs::write(mon.join("2024-05/auto-1717093790-1001-2101.wav"), &b).unwrap();
    std::fs::write(
        dir.join("meetme/meetme-conf-rec-6300-1411501234.0-6300.wav"),
        &m,
    )
    .unwrap();
    std::fs::write(dir.join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), mon.join("evil.wav")).unwrap();
    std::os::unix::fs::symlink("/dev/null", mon.join("null.wav")).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(mon.join("fifo.wav"))
            .status()
            .unwrap()
            .success()
    );
    (a, b, m)
}

#[tokio::test]
async fn recordings_are_listed_and_downloaded_with_ranges_conditions_and_tar() {
    let db = dbs().await.remove(0);
    let spool_dir = tempfile::tempdir().unwrap();
    let (a, b, m) = spool(spool_dir.path());
    let srv = Server::start(
        &db,
        &format!(
            "[https_api]\npassword = \"pw\"\n[recordings]\nspool_dir = \"{}\"\n",
            spool_dir.path().display()
        ),
    )
    .await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    check_http(&srv, &c, &cookie, (&a, &b, &m)).await;

    // Nothing outside the directories, whatever the spelling.
    let refusals: &[(Value, i64)] = &[
        (json!({"filename": "../../secret.txt"}), -50),
        (json!({"filename": "2024-05/../../secret.txt"}), -50),
        (json!({"filename": "/etc/passwd"}), -50),
        (json!({"filename": "%2e%2e%2fsecret.txt"}), -50),
        (json!({"filename": "%252e%252e%252fsecret.txt"}), -50),
        (json!({"filename": "..%2fsecret.txt"}), -50),
        (json!({"filename": "a.wav\u{0}.txt"}), -50),
        (json!({"filename": "..\\secret.txt"}), -50),
        (json!({"filedir": "..", "filename": "secret.txt"}), -50),
        (
            json!({"filedir": "monitor/..", "filename": "secret.txt"}),
            -50,
        ),
        (json!({"filedir": "/etc"}), -50),
        (json!({"filename": "evil.wav"}), -47),
        (json!({"filename": "null.wav"}), -47),
        (json!({"filename": "fifo.wav"}), -47),
        (json!({"filename": "2024-05"}), -16),
        (json!({"filename": "auto-1-2-3.wav"}), -16),
        (json!({"filedir": "nope", "filename": "a.wav"}), -16),
        (json!({"filedir": "nope"}), -16),
        (
            json!({"filedir": "monitor@meetme", "filename": "a.wav"}),
            -1,
        ),
        (json!({"filename": ""}), -1),
        (json!({"filename": "@"}), -1),
        (json!({"filename": ["a.wav"]}), -1),
    ];
    for (params, want) in refusals {
        let resp = recapi(&srv, &c, &cookie, params.clone(), &[]).await;
        assert_eq!(status_of(resp).await, *want, "{params}");
    }
    // no session
    let resp = recapi(
        &srv,
        &c,
        "sid1-1",
        json!({"filename": "auto-1717093784-1001-2100.wav"}),
        &[],
    )
    .await;
    assert_eq!(status_of(resp).await, -6);

    let log = srv.stop().await;
    assert!(log.contains("recapi request refused"), "{log}");
    assert!(
        log.contains("a symlink leads out of the directory"),
        "{log}"
    );
    assert!(log.contains("not a regular file"), "{log}");
    assert!(log.contains("contains '%'"), "{log}");
    // the name is escaped in the log
    assert!(
        log.contains("a.wav\\0.txt") || log.contains("a.wav\\u{0}.txt"),
        "{log}"
    );
}

/// Listings, single files, ranges, conditional requests, tar and concurrent
/// downloads, against a server whose monitor folder holds `a` and `b`
/// (`2024-05/auto-1717093784-1001-2100.wav`, `…790-1001-2101.wav`) and whose
/// meetme folder holds `m`, on whichever storage.
pub async fn check_http(
    srv: &Server,
    c: &reqwest::Client,
    cookie: &str,
    (a, b, m): (&[u8], &[u8], &[u8]),
) {
    let a_rel = "2024-05/auto-1717093784-1001-2100.wav";
    let a_bare = "auto-1717093784-1001-2100.wav";
    let b_bare = "auto-1717093790-1001-2101.wav";
    // Recording `a` by its bare name, with request headers.
    let a_with = async |headers: &[(&str, &str)]| {
        recapi(srv, c, cookie, json!({"filename": a_bare}), headers).await
    };

    // Case 1: the directories, name in column 1.
    let resp = recapi(srv, c, cookie, json!({}), &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "content-type").starts_with("text/csv"));
    let text = resp.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("type,filedir"));
    let dirs: Vec<&str> = lines.map(|l| l.split(',').nth(1).unwrap()).collect();
    for d in ["monitor", "queue", "meetme", "voicemail/default"] {
        assert!(dirs.contains(&d), "{text}");
    }

    // Case 2: the files of two directories (the relative name in column 1).
    let resp = recapi(srv, c, cookie, json!({"filedir": "monitor@meetme@"}), &[]).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let mut rows = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        rows.headers().unwrap().iter().collect::<Vec<_>>(),
        ["filedir", "filename", "size", "mtime"]
    );
    let rows: Vec<Vec<String>> = rows
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    let listed: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
        .collect();
    let (a_len, b_len, m_len) = (
        a.len().to_string(),
        b.len().to_string(),
        m.len().to_string(),
    );
    assert_eq!(
        listed,
        [
            ("monitor", a_rel, a_len.as_str()),
            (
                "monitor",
                "2024-05/auto-1717093790-1001-2101.wav",
                b_len.as_str()
            ),
            (
                "meetme",
                "meetme-conf-rec-6300-1411501234.0-6300.wav",
                m_len.as_str()
            ),
        ],
        "{text}"
    );
    assert!(rows.iter().all(|r| r[3].len() == 19), "{text}");

    // Case 4: a bare name, found in its month folder; then the relative path
    // with the trailing @ of recordfiles: the same file.
    let resp = recapi(srv, c, cookie, json!({"filename": a_bare}), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "audio/x-wav");
    assert_eq!(
        header(&resp, "content-disposition"),
        format!("attachment; filename=\"{a_bare}\"")
    );
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(header(&resp, "content-length"), a.len().to_string());
    let etag = header(&resp, "etag");
    let modified = header(&resp, "last-modified");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert!(modified.ends_with(" GMT"), "{modified}");
    assert_eq!(resp.bytes().await.unwrap(), a);
    let resp = recapi(
        srv,
        c,
        cookie,
        json!({"filedir": "monitor", "filename": format!("{a_rel}@")}),
        &[],
    )
    .await;
    assert_eq!(header(&resp, "etag"), etag);
    assert_eq!(resp.bytes().await.unwrap(), a);
    // queue is the monitor folder; meetme has its own.
    let resp = recapi(
        srv,
        c,
        cookie,
        json!({"filedir": "queue", "filename": a_bare}),
        &[],
    )
    .await;
    assert_eq!(resp.bytes().await.unwrap(), a);
    let resp = recapi(
        srv,
        c,
        cookie,
        json!({"filedir": "meetme", "filename": "meetme-conf-rec-6300-1411501234.0-6300.wav"}),
        &[],
    )
    .await;
    assert_eq!(resp.bytes().await.unwrap(), m);

    // Ranges.
    let len = a.len();
    for (range, want, content_range) in [
        ("bytes=0-99", &a[..100], format!("bytes 0-99/{len}")),
        (
            "bytes=-100",
            &a[len - 100..],
            format!("bytes {}-{}/{len}", len - 100, len - 1),
        ),
        (
            "bytes=1000-",
            &a[1000..],
            format!("bytes 1000-{}/{len}", len - 1),
        ),
        ("bytes=5-5", &a[5..6], format!("bytes 5-5/{len}")),
    ] {
        let resp = a_with(&[("range", range)]).await;
        assert_eq!(resp.status(), 206, "{range}");
        assert_eq!(header(&resp, "content-range"), content_range, "{range}");
        assert_eq!(header(&resp, "content-length"), want.len().to_string());
        assert_eq!(resp.bytes().await.unwrap(), want, "{range}");
    }
    let resp = a_with(&[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(resp.status(), 416);
    assert_eq!(header(&resp, "content-range"), format!("bytes */{len}"));
    // several ranges: the whole file
    let resp = a_with(&[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), a);

    // Conditional requests.
    let resp = a_with(&[("if-none-match", &etag)]).await;
    assert_eq!(resp.status(), 304);
    assert_eq!(header(&resp, "etag"), etag);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = a_with(&[("if-none-match", "\"other\"")]).await;
    assert_eq!(resp.status(), 200);
    let resp = a_with(&[("if-modified-since", &modified)]).await;
    assert_eq!(resp.status(), 304);
    let resp = a_with(&[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), a);
    let resp = a_with(&[("range", "bytes=0-9"), ("if-range", &etag)]).await;
    assert_eq!(resp.status(), 206);
    let resp = a_with(&[("range", "bytes=0-9"), ("if-range", "\"stale\"")]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), a);

    // Several files: a tar named after the request time, entries named as
    // asked; a missing name among them is left out.
    let before = jiff::Timestamp::now().as_second();
    let resp = recapi(
        srv,
        c,
        cookie,
        json!({"filedir": "monitor", "filename": format!("{a_rel}@{b_bare}@missing.wav@")}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/x-tar");
    let disposition = header(&resp, "content-disposition");
    let stamp: i64 = disposition
        .strip_prefix("attachment; filename=\"")
        .and_then(|s| s.strip_suffix(".tar\""))
        .unwrap_or_else(|| panic!("{disposition}"))
        .parse()
        .unwrap();
    assert!(stamp >= before && stamp <= jiff::Timestamp::now().as_second());
    let declared: usize = header(&resp, "content-length").parse().unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), declared);
    let dir = tempfile::tempdir().unwrap();
    let tar_path = dir.path().join("x.tar");
    std::fs::write(&tar_path, &body).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{a_rel}\n{b_bare}\n")
    );
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(x.success());
    assert_eq!(std::fs::read(dir.path().join(a_rel)).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join(b_bare)).unwrap(), b);
    // The same file asked twice (bare and relative) is one file, not a tar.
    let resp = recapi(
        srv,
        c,
        cookie,
        json!({"filename": format!("{a_bare}@{a_rel}")}),
        &[],
    )
    .await;
    assert_eq!(header(&resp, "content-type"), "audio/x-wav");
    assert_eq!(resp.bytes().await.unwrap(), a);

    // Many downloads at once, each complete.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        let url = srv.url("/api");
        let cookie = cookie.to_owned();
        let name = if i % 2 == 0 { a_bare } else { a_rel };
        tasks.push(tokio::spawn(async move {
            let body = json!({"request": {"action": "recapi", "cookie": cookie, "filename": name}});
            c.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), a);
    }

    // Not found: the JSON envelope, which a client tells from audio by its first byte.
    let resp = recapi(
        srv,
        c,
        cookie,
        json!({"filename": "auto-1717000000-1-2.wav"}),
        &[],
    )
    .await;
    assert!(header(&resp, "content-type").starts_with("application/json"));
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"response":{},"status":-16}"#
    );
}

fn recorded(n: usize, start_ms: i64, recordfiles: &str) -> NewCdr {
    let mut r = ucm::cdr::CdrRecord::new();
    r.set("src", "1001");
    r.set("dst", "2100");
    r.set("start", "2024-05-30 18:29:44");
    r.set("billsec", "5");
    r.set("disposition", "ANSWERED");
    r.set("session", format!("s{n}"));
    r.set("recordfiles", recordfiles);
    NewCdr {
        dedupe_key: format!("rec{n}"),
        start_ms,
        call_ms: start_ms,
        end_ms: start_ms + 5000,
        record: r,
    }
}

#[tokio::test]
async fn recordings_check_reports_missing_and_unreferenced_files() {
    for db in dbs().await {
        let spool_dir = tempfile::tempdir().unwrap();
        spool(spool_dir.path());
        std::fs::write(spool_dir.path().join("monitor/2024-05/orphan.wav"), b"o").unwrap();
        let config = spool_dir.path().join("check.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"{}\"\n[recordings]\nspool_dir = \"{}\"\n",
                db.url,
                spool_dir.path().display()
            ),
        )
        .unwrap();
        let run = || async {
            tokio::process::Command::new(BIN)
                .args(["recordings", "check", "--config"])
                .arg(&config)
                .output()
                .await
                .unwrap()
        };
        // An empty database: every file is unreferenced, nothing is missing.
        let out = run().await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("unreferenced (no CDR names them): 3"),
            "{text}"
        );

        let store = Store::connect(&db.url, &ConnectOptions::default())
            .await
            .unwrap();
        let t = 1_717_093_784_000;
        store
            .insert_cdrs(&[
                // relative path, as the dialplan writes it
                recorded(1, t, "2024-05/auto-1717093784-1001-2100.wav@"),
                // bare name and a missing file in one value
                recorded(2, t + 1, "auto-1717093790-1001-2101.wav@2024-05/gone.wav@"),
                recorded(3, t + 2, ""),
                recorded(4, t + 3, "never-written.wav@"),
            ])
            .await
            .unwrap();
        store.close().await;
        let out = run().await;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(1), "{db:?}: {text}");
        assert!(
            text.contains("CDRs with recordings: 3 naming 4 files"),
            "{text}"
        );
        assert!(
            text.contains("missing (named by a CDR, not found): 2"),
            "{text}"
        );
        assert!(text.contains("\t2024-05/gone.wav\n"), "{text}");
        assert!(text.contains("\tnever-written.wav\n"), "{text}");
        assert!(
            text.contains("unreferenced (no CDR names them): 1"),
            "{text}"
        );
        assert!(text.contains("  2024-05/orphan.wav\n"), "{text}");
        // the symlink out and the FIFO are not recordings at all
        assert!(
            !text.contains("evil.wav") && !text.contains("fifo.wav"),
            "{text}"
        );

        // A directory that is not configured: the check cannot run.
        let out = tokio::process::Command::new(BIN)
            .args(["recordings", "check", "--dir", "nope", "--config"])
            .arg(&config)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
}

/// Whether this process ignores file permissions (root): unreadable files
/// can only be made for an unprivileged user.
fn privileged(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join("probe");
    std::fs::write(&probe, b"p").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).unwrap();
    let readable = std::fs::read(&probe).is_ok();
    std::fs::remove_file(&probe).unwrap();
    readable
}

/// Beside spool()'s recordings, every kind of entry that cannot be served:
/// symlink loops (one in a month folder, over a name that is a recording in
/// an older month), a dangling link, a name that is not UTF-8, a socket, a
/// device (as root), and an unreadable file and month folder (not as root).
/// True when permissions are enforced.
fn bad_entries(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let mon = dir.join("monitor");
    let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, mon.join(at)).unwrap();
    link("loop.wav", "loop.wav");
    link("pong.wav", "ping.wav");
    link("ping.wav", "pong.wav");
    link("nowhere.wav", "dangling.wav");
    std::fs::create_dir_all(mon.join("2024-07")).unwrap();
    link("custom.wav", "2024-07/custom.wav");
    std::fs::create_dir_all(mon.join("2019-01")).unwrap();
    std::fs::write(mon.join("2019-01/custom.wav"), b"custom").unwrap();
    std::fs::write(
        mon.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9.wav")),
        b"x",
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(mon.join("socket.wav")).unwrap());
    let _ = std::process::Command::new("mknod")
        .arg(mon.join("dev.wav"))
        .args(["c", "1", "3"])
        .status();
    std::fs::create_dir_all(mon.join("2024-09")).unwrap();
    std::fs::write(mon.join("2024-09/locked.wav"), b"l").unwrap();
    std::fs::set_permissions(mon.join("2024-09"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::write(mon.join("unreadable.wav"), b"u").unwrap();
    std::fs::set_permissions(
        mon.join("unreadable.wav"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    !privileged(dir)
}

/// A request that must answer within 10 s (a FIFO opened for reading would
/// block forever).
async fn bounded(resp: impl std::future::Future<Output = reqwest::Response>) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .expect("recapi did not answer within 10 s")
}

#[tokio::test]
async fn bad_entries_never_spoil_listings_downloads_archives_or_the_check() {
    let db = dbs().await.remove(0);
    let spool_dir = tempfile::tempdir().unwrap();
    let (a, b, _) = spool(spool_dir.path());
    let enforced = bad_entries(spool_dir.path());
    // More bad entries than a listing logs one by one.
    for i in 0..25 {
        let name = spool_dir.path().join(format!("monitor/loop-{i}.wav"));
        std::os::unix::fs::symlink(&name, &name).unwrap();
    }
    let srv = Server::start(
        &db,
        &format!(
            "[https_api]\npassword = \"pw\"\n[recordings]\nspool_dir = \"{}\"\n",
            spool_dir.path().display()
        ),
    )
    .await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let a_rel = "2024-05/auto-1717093784-1001-2100.wav";
    let b_bare = "auto-1717093790-1001-2101.wav";

    // The listing has every servable file, whatever lies beside them.
    let resp = bounded(recapi(
        &srv,
        &c,
        &cookie,
        json!({"filedir": "monitor"}),
        &[],
    ))
    .await;
    assert_eq!(resp.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the listing did not end within 10 s")
        .unwrap();
    let names: Vec<String> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap()[1].to_owned())
        .collect();
    let mut want = vec![
        "2019-01/custom.wav",
        a_rel,
        "2024-05/auto-1717093790-1001-2101.wav",
    ];
    if !enforced {
        want.insert(3, "2024-09/locked.wav");
        want.push("unreadable.wav");
    }
    assert_eq!(names, want, "{text}");

    // Single files: refused with the reason, never a server error or a hang.
    let mut refused = vec![
        "loop.wav",
        "ping.wav",
        "2024-07/custom.wav",
        "socket.wav",
        "fifo.wav",
    ];
    if enforced {
        refused.extend(["unreadable.wav", "2024-09/locked.wav", "locked.wav"]);
    }
    for name in &refused {
        let resp = bounded(recapi(&srv, &c, &cookie, json!({"filename": name}), &[])).await;
        assert_eq!(status_of(resp).await, -47, "{name}");
    }
    for name in ["dangling.wav", "nowhere.wav"] {
        let resp = bounded(recapi(&srv, &c, &cookie, json!({"filename": name}), &[])).await;
        assert_eq!(status_of(resp).await, -16, "{name}");
    }
    // The loop in the newest month does not hide the recording in an older one.
    let resp = bounded(recapi(
        &srv,
        &c,
        &cookie,
        json!({"filename": "custom.wav"}),
        &[],
    ))
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"custom");

    // Several files: the archive holds the servable ones.
    let resp = bounded(recapi(
        &srv,
        &c,
        &cookie,
        json!({"filedir": "monitor", "filename": format!("loop.wav@{a_rel}@fifo.wav@socket.wav@{b_bare}@ping.wav@unreadable.wav")}),
        &[],
    ))
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "application/x-tar");
    let body = resp.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.tar"), &body).unwrap();
    let x = std::process::Command::new("tar")
        .arg("-xf")
        .arg(dir.path().join("x.tar"))
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(x.success());
    assert_eq!(std::fs::read(dir.path().join(a_rel)).unwrap(), a);
    assert_eq!(std::fs::read(dir.path().join(b_bare)).unwrap(), b);
    assert!(!dir.path().join("loop.wav").exists());

    // Many missing names in one request: one log line for all of them.
    let many: Vec<String> = (0..300).map(|i| format!("gone-{i}.wav")).collect();
    let resp = bounded(recapi(
        &srv,
        &c,
        &cookie,
        json!({"filename": many.join("@")}),
        &[],
    ))
    .await;
    assert_eq!(status_of(resp).await, -16);

    let log = srv.stop().await;
    assert_eq!(
        log.matches("recapi: recordings not found").count(),
        // the dangling and nowhere names, and the 300
        3,
        "{log}"
    );
    assert!(log.contains("missing=300"), "{log}");
    assert!(log.contains("gone-0.wav, gone-1.wav"), "{log}");
    assert!(log.contains("and 295 more"), "{log}");
    // The first 20 skipped entries one by one, then their number.
    assert_eq!(
        log.matches("recordings listing: entry skipped").count(),
        20,
        "{log}"
    );
    assert!(
        log.contains("recordings listing: more entries skipped than logged"),
        "{log}"
    );
    assert!(log.contains("a symlink loop"), "{log}");
    assert!(log.contains("not UTF-8"), "{log}");
    assert!(log.contains("recapi: recordings refused"), "{log}");

    // `recordings check` lists the same files and is not stopped either.
    let config = spool_dir.path().join("check.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[recordings]\nspool_dir = \"{}\"\n",
            db.url,
            spool_dir.path().display()
        ),
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(BIN)
            .args(["recordings", "check", "--config"])
            .arg(&config)
            .output(),
    )
    .await
    .expect("recordings check did not finish")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("unreferenced (no CDR names them): {}", want.len())),
        "{text}"
    );
    assert!(text.contains("  2019-01/custom.wav\n"), "{text}");
}

/// The figures of issue 15 point 12 through the real binary (run with
/// --ignored --nocapture): 1000 missing bare names in one request against
/// 24 month folders of 200 recordings.
#[tokio::test]
#[ignore = "prints timings"]
async fn time_a_request_for_1000_missing_bare_names() {
    let db = dbs().await.remove(0);
    let spool_dir = tempfile::tempdir().unwrap();
    for m in 0..24 {
        let month = format!("{}-{:02}", 2023 + m / 12, m % 12 + 1);
        let dir = spool_dir.path().join("monitor").join(&month);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..200 {
            std::fs::write(dir.join(format!("rec-{month}-{i}.wav")), b"w").unwrap();
        }
    }
    let srv = Server::start(
        &db,
        &format!(
            "[https_api]\npassword = \"pw\"\n[recordings]\nspool_dir = \"{}\"\n",
            spool_dir.path().display()
        ),
    )
    .await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let names: Vec<String> = (0..1000)
        .map(|i| {
            if i % 2 == 0 {
                format!("auto-{}-1001-2100.wav", 1_714_600_000 + i)
            } else {
                format!("gone-{i}.wav")
            }
        })
        .collect();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let resp = recapi(&srv, &c, &cookie, json!({"filename": names.join("@")}), &[]).await;
        assert_eq!(status_of(resp).await, -16);
        println!(
            "1000 missing bare names, 24 months x 200 files: {:?}",
            started.elapsed()
        );
    }
    let log = srv.stop().await;
    println!(
        "log lines about the misses: {}",
        log.lines()
            .filter(|l| l.contains("recapi") && !l.contains("access"))
            .count()
    );
}

#[tokio::test]
async fn a_real_recorded_call_is_downloaded_by_its_cdr_recordfiles() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let monitor = Path::new(rig.get("MONITOR_DIR")).to_path_buf();
    let spool = monitor.parent().unwrap().display().to_string();
    for db in dbs().await {
        let config = format!(
            "{}[recordings]\nspool_dir = \"{spool}\"\n",
            pbx_config(&rig, "")
        );
        let srv = Server::start(&db, &config).await;
        wait_connected(&srv).await;
        let ami = Ami::start(rig.ami_config());
        call(&ami, "phone-1001", "1000", "\"Alice\" <1001>", 4).await;
        let store = Store::connect(&srv.db_url, &ConnectOptions::default())
            .await
            .unwrap();
        wait_for_cdrs(&store, 1, Duration::from_secs(20)).await;
        assert!(store.cdr_count().await.unwrap() >= 1);
        store.close().await;

        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let resp = c
            .post(srv.url("/api"))
            .json(&json!({"request": {"action": "cdrapi", "cookie": cookie, "format": "json"}}))
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        let mut legs = Vec::new();
        for e in v["cdr_root"].as_array().unwrap() {
            match e.get("main_cdr") {
                Some(_) => legs.extend(
                    e.as_object()
                        .unwrap()
                        .iter()
                        .filter(|(k, _)| k.starts_with("sub_cdr_"))
                        .map(|(_, l)| l.clone()),
                ),
                None => legs.push(e.clone()),
            }
        }
        let leg = legs
            .iter()
            .find(|l| l["src"] == "1001" && l["dst"] == "1000" && l["disposition"] == "ANSWERED")
            .unwrap_or_else(|| panic!("{v}"));
        let recordfiles = leg["recordfiles"].as_str().unwrap().to_owned();
        let billsec: f64 = leg["billsec"].as_str().unwrap().parse().unwrap();
        assert!(billsec >= 2.0, "{leg}");
        let relative = recordfiles.trim_end_matches('@').to_owned();
        let (folder, bare) = relative
            .split_once('/')
            .unwrap_or_else(|| panic!("{recordfiles}"));
        assert_eq!(folder.len(), 7, "YYYY-MM folder: {recordfiles}");

        // MixMonitor completes the header when it closes the file, which
        // may be a moment after the CDR.
        let on_disk = monitor.join(&relative);
        wait_until(
            format!(
                "MixMonitor to complete the WAV header of {}",
                on_disk.display()
            ),
            Duration::from_secs(5),
            async || {
                let bytes = std::fs::read(&on_disk).unwrap_or_default();
                let riff = (bytes.len() > 44)
                    .then(|| u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize + 8);
                if riff == Some(bytes.len()) {
                    Ok(())
                } else {
                    Err(format!("{} bytes, RIFF size + 8 = {riff:?}", bytes.len()))
                }
            },
        )
        .await;
        // The way each client sends it: the recordfiles value as it is, the
        // path without @, the bare name (erxes) with and without filedir.
        let mut bodies = Vec::new();
        for params in [
            json!({"filedir": "monitor", "filename": recordfiles}),
            json!({"filedir": "monitor", "filename": relative}),
            json!({"filedir": "monitor", "filename": bare}),
            json!({"filename": format!("{bare}@")}),
        ] {
            let resp = recapi(&srv, &c, &cookie, params.clone(), &[]).await;
            assert_eq!(resp.status(), 200, "{params}");
            assert_eq!(header(&resp, "content-type"), "audio/x-wav");
            assert_eq!(
                header(&resp, "content-disposition"),
                format!("attachment; filename=\"{bare}\"")
            );
            bodies.push(resp.bytes().await.unwrap());
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(bodies[0], std::fs::read(&on_disk).unwrap());
        let secs = wav_seconds(&bodies[0]);
        eprintln!(
            "{:?}: {recordfiles}: {secs:.2} s of audio, billsec {billsec}",
            db.backend
        );
        assert!(
            (secs - billsec).abs() <= 1.0,
            "{:?}: recording {secs:.2} s, billsec {billsec}",
            db.backend
        );

        // The check finds this call's recording (the rig's folder holds
        // other tests' recordings too, which no CDR here names).
        let config_path = srv.dir.path().join("pbxgate-0.toml");
        let out = tokio::process::Command::new(BIN)
            .args(["recordings", "check", "--config"])
            .arg(&config_path)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(
            text.contains("missing (named by a CDR, not found): 0"),
            "{text}"
        );
        assert!(!text.contains(&format!("  {relative}\n")), "{text}");

        ami.shutdown();
        srv.stop().await;
    }
}

#[cfg(feature = "s3")]
mod s3 {
    use std::sync::Arc;

    use object_store::aws::AmazonS3Builder;
    use object_store::path::Path as Key;
    use object_store::{ObjectStore, ObjectStoreExt};
    use serde_json::json;

    use super::*;

    pub const S3_ENV: &str = "PBXGATE_TEST_S3_URL";

    /// The S3-compatible test server (scripts/s3.sh), or `None` (skipped)
    /// outside CI.
    pub(super) fn s3_url() -> Option<String> {
        match std::env::var(S3_ENV) {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some() => {
                panic!("{S3_ENV} must be set under CI (scripts/s3.sh start)")
            }
            _ => {
                store::testing::record_skip(&format!(
                    "S3: {S3_ENV} is not set (scripts/s3.sh start)"
                ));
                None
            }
        }
    }

    /// A client of `bucket` on the test server.
    pub(super) fn s3_client(url: &str, bucket: &str) -> object_store::aws::AmazonS3 {
        AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(url)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap()
    }

    /// A new bucket on the test server (moto takes unsigned requests).
    pub(super) async fn bucket(url: &str) -> String {
        let name = format!("pbxgate-test-{}", jiff::Timestamp::now().as_nanosecond());
        let resp = reqwest::Client::new()
            .put(format!("{url}/{name}"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{:?}", resp.text().await);
        name
    }

    #[tokio::test]
    async fn recordings_in_an_s3_bucket_are_served_the_same_way() {
        let Some(url) = s3_url() else { return };
        let name = bucket(&url).await;
        let s3: Arc<dyn ObjectStore> = Arc::new(s3_client(&url, &name));
        let (a, b, m) = (wav(20, 1), wav(3, 2), wav(1, 3));
        for (key, data) in [
            ("site1/monitor/2024-05/auto-1717093784-1001-2100.wav", &a),
            ("site1/monitor/2024-05/auto-1717093790-1001-2101.wav", &b),
            (
                "site1/meetme/meetme-conf-rec-6300-1411501234.0-6300.wav",
                &m,
            ),
            // outside every directory's folder
            ("site1/secret.txt", &b"secret".to_vec()),
            ("other/monitor/x.wav", &b"x".to_vec()),
        ] {
            s3.put(&Key::from(key), data.clone().into()).await.unwrap();
        }
        let db = dbs().await.remove(0);
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"pw\"\n[recordings]\nstore = \"s3\"\n\
                 [recordings.s3]\nbucket = \"{name}\"\nendpoint = \"{url}\"\nprefix = \"site1\"\n\
                 access_key_id = \"test\"\nsecret_access_key = \"test\"\n"
            ),
        )
        .await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        check_http(&srv, &c, &cookie, (&a, &b, &m)).await;
        for (params, want) in [
            (json!({"filename": "../secret.txt"}), -50),
            (json!({"filedir": "..", "filename": "secret.txt"}), -50),
            (json!({"filename": "/other/monitor/x.wav"}), -50),
            (json!({"filename": "x.wav"}), -16),
        ] {
            let resp = recapi(&srv, &c, &cookie, params.clone(), &[]).await;
            assert_eq!(status_of(resp).await, want, "{params}");
        }
        // Many missing bare names: the month prefixes are listed once, and
        // the one that exists is still found.
        s3.put(
            &Key::from("site1/monitor/2023-01/custom.wav"),
            b"custom".to_vec().into(),
        )
        .await
        .unwrap();
        let mut names: Vec<String> = (0..100).map(|i| format!("gone-{i}.wav")).collect();
        names.push("custom.wav".into());
        let resp = recapi(&srv, &c, &cookie, json!({"filename": names.join("@")}), &[]).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), b"custom");
        let log = srv.stop().await;
        assert!(!log.contains("\"test\""), "no secret in the log");
        assert!(log.contains("missing=100"), "{log}");
    }
}
