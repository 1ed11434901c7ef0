//! recapi listing profiles (issue 16 point 3): `flat` lists the bare names a
//! UCM62xx client splits on `-` and sends back, on the new API and the old
//! `GET /recapi`; `month` (the default) stays as it was; a user's own
//! profile beats `recordings.listing`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::{recapi, wav};
use crate::kit::*;
use crate::legacy::Old;

const OLD_PW: &str = "old-secret";

/// The month listing of [`spool`]'s monitor folder (relative paths, as today).
const MONTH_NAMES: [&str; 5] = [
    "2024-04/auto-1717093784-1001-2100.wav",
    "2024-05/auto-1717093784-1001-2100.wav",
    "2024-05/auto-1717093790-1001-2101.wav",
    "2024-06/auto-1718000000-1002-2102.wav",
    "auto-1718000000-1002-2102.wav",
];

/// monitor/ in month folders, with two names that are twice there: one in a
/// wrong month too (its own month wins, as the download's month search
/// finds it first), one directly in the folder too (which wins: the
/// download looks there first). Returns bare name -> the bytes a download
/// of it gives, and every file's bytes by relative path.
fn spool(dir: &Path) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let mon = dir.join("monitor");
    for m in ["2024-04", "2024-05", "2024-06"] {
        std::fs::create_dir_all(mon.join(m)).unwrap();
    }
    let files: BTreeMap<String, Vec<u8>> = MONTH_NAMES
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), wav(1 + i as u32, i as u8 + 10)))
        .collect();
    for (rel, data) in &files {
        std::fs::write(mon.join(rel), data).unwrap();
    }
    let vm = dir.join("voicemail/default/1000/INBOX");
    std::fs::create_dir_all(&vm).unwrap();
    std::fs::write(vm.join("msg0000.wav"), b"voicemail").unwrap();
    let by_bare: BTreeMap<String, Vec<u8>> = [
        (
            "auto-1717093784-1001-2100.wav",
            "2024-05/auto-1717093784-1001-2100.wav",
        ),
        (
            "auto-1717093790-1001-2101.wav",
            "2024-05/auto-1717093790-1001-2101.wav",
        ),
        (
            "auto-1718000000-1002-2102.wav",
            "auto-1718000000-1002-2102.wav",
        ),
    ]
    .into_iter()
    .map(|(bare, rel)| (bare.to_owned(), files[rel].clone()))
    .collect();
    (by_bare, files)
}

/// Column 1 (`filename`) and column 2 (`size`) of a file listing's rows,
/// read as the UCM62xx client does: header skipped, split on `,`.
fn rows(csv: &str) -> Vec<(String, u64)> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("filedir,filename,size,mtime"), "{csv}");
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            assert_eq!(cols.len(), 4, "{l}");
            (cols[1].to_owned(), cols[2].parse().unwrap())
        })
        .collect()
}

/// What a UCM62xx client does with a listed name: `auto`, the epoch, the
/// caller and the callee (with `.wav`).
fn split_as_ucm62xx(name: &str) -> (i64, String, String) {
    assert!(!name.contains('/'), "a folder in a flat name: {name}");
    let parts: Vec<&str> = name.split('-').collect();
    assert_eq!(parts.len(), 4, "{name}");
    assert_eq!(parts[0], "auto", "{name}");
    let epoch: i64 = parts[1].parse().unwrap();
    assert_eq!(parts[1].len(), 10, "{name}");
    let callee = parts[3].strip_suffix(".wav").unwrap();
    assert!(callee.bytes().all(|b| b.is_ascii_digit()), "{name}");
    assert!(parts[2].bytes().all(|b| b.is_ascii_digit()), "{name}");
    (epoch, parts[2].to_owned(), callee.to_owned())
}

async fn new_listing(srv: &Server, user: &str, pw: &str, filedir: &str) -> String {
    let c = client(None);
    let cookie = srv.login(&c, user, pw).await.unwrap();
    let resp = recapi(srv, &c, &cookie, json!({ "filedir": filedir }), &[]).await;
    assert_eq!(resp.status(), 200);
    assert!(header_of(&resp, "content-type").starts_with("text/csv"));
    resp.text().await.unwrap()
}

fn header_of(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn new_download(srv: &Server, user: &str, pw: &str, name: &str) -> Vec<u8> {
    let c = client(None);
    let cookie = srv.login(&c, user, pw).await.unwrap();
    let resp = recapi(
        srv,
        &c,
        &cookie,
        json!({"filedir": "monitor", "filename": name}),
        &[],
    )
    .await;
    assert_eq!(resp.status(), 200, "{name}");
    assert_eq!(header_of(&resp, "content-type"), "audio/x-wav", "{name}");
    resp.bytes().await.unwrap().to_vec()
}

/// A flat listing of monitor: names a UCM62xx client splits, each listed
/// once with the size of, and downloading byte for byte, the file its bare
/// name finds (on the new API as `user`, and on the old API).
async fn check_flat(
    srv: &Server,
    old: &Old,
    user: &str,
    pw: &str,
    csv: &str,
    by_bare: &BTreeMap<String, Vec<u8>>,
) {
    let listed = rows(csv);
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    let mut want: Vec<&str> = by_bare.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    want.sort_unstable();
    assert_eq!(sorted, want, "each name once: {csv}");
    for (name, size) in &listed {
        let (epoch, caller, callee) = split_as_ucm62xx(name);
        assert!(
            epoch > 1_700_000_000 && !caller.is_empty() && !callee.is_empty(),
            "{name}"
        );
        let file = &by_bare[name];
        assert_eq!(
            *size,
            file.len() as u64,
            "{name}: the size of the file listed"
        );
        assert_eq!(&new_download(srv, user, pw, name).await, file, "{name}");
        let resp = old
            .basic(
                &format!("/recapi?filedir=monitor&filename={name}"),
                "cdrapi",
                OLD_PW,
            )
            .await;
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(
            &resp.bytes().await.unwrap().to_vec(),
            file,
            "old API {name}"
        );
    }
}

/// The month listing: every file by its relative path, as before profiles.
/// `monitor` as listed to the first API user (`cdrapi`) and the old API:
/// flat; to `month_user` (password `pw2`): by month.
async fn check_profiles(
    srv: &Server,
    old: &Old,
    month_user: &str,
    by_bare: &BTreeMap<String, Vec<u8>>,
    files: &BTreeMap<String, Vec<u8>>,
) {
    let csv = new_listing(srv, "cdrapi", "pw", "monitor").await;
    check_flat(srv, old, "cdrapi", "pw", &csv, by_bare).await;
    let csv = old_listing(old, "monitor").await;
    check_flat(srv, old, "cdrapi", "pw", &csv, by_bare).await;
    check_month(&new_listing(srv, month_user, "pw2", "monitor").await, files);
}

fn check_month(csv: &str, files: &BTreeMap<String, Vec<u8>>) {
    let listed = rows(csv);
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, MONTH_NAMES, "{csv}");
    for (name, size) in &listed {
        assert_eq!(*size, files[name].len() as u64, "{name}");
    }
}

async fn old_listing(old: &Old, filedir: &str) -> String {
    let resp = old
        .basic(&format!("/recapi?filedir={filedir}"), "cdrapi", OLD_PW)
        .await;
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

fn old_api(port: u16, listing: &str) -> String {
    format!(
        "[https_api_old]\nenable = true\ntls_bind_address = \"127.0.0.1:{port}\"\n\
         username = \"cdrapi\"\npassword = \"{OLD_PW}\"\npermitted_ips = [\"127.0.0.1\"]\n{listing}"
    )
}

#[tokio::test]
async fn the_flat_listing_profile_lists_names_a_ucm62xx_client_can_split_and_download() {
    for db in dbs().await {
        let spool_dir = tempfile::tempdir().unwrap();
        let (by_bare, files) = spool(spool_dir.path());
        let spool_line = format!("spool_dir = \"{}\"\n", spool_dir.path().display());

        // Global flat: the first user and the old API follow it; a user with
        // its own "month" gets the month listing.
        let port = free_port();
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"pw\"\n\
                 [[https_api.users]]\nusername = \"modern\"\npassword = \"pw2\"\nrecordings_listing = \"month\"\n\
                 {}\n[recordings]\nlisting = \"flat\"\n{spool_line}",
                old_api(port, "")
            ),
        )
        .await;
        let old = Old::new(port, None);
        check_profiles(&srv, &old, "modern", &by_bare, &files).await;
        // Folders other than months keep their path (it downloads as listed).
        let vm = new_listing(&srv, "cdrapi", "pw", "voicemail/default").await;
        assert_eq!(rows(&vm), [("1000/INBOX/msg0000.wav".to_owned(), 9)]);
        // Several directories: each in the profile's shape.
        let both = new_listing(&srv, "cdrapi", "pw", "monitor@voicemail/default").await;
        assert_eq!(rows(&both).len(), by_bare.len() + 1, "{both}");
        let log = srv.stop().await;
        assert!(
            log.contains("recapi flat listing: files left out")
                && log.contains("left_out=2")
                && log.contains("2024-04/auto-1717093784-1001-2100.wav"),
            "{log}"
        );

        // Global default (month): a user's and the old API's own "flat" beat
        // it; a user without one keeps the month listing.
        let port = free_port();
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"pw\"\nrecordings_listing = \"flat\"\n\
                 [[https_api.users]]\nusername = \"plain\"\npassword = \"pw2\"\n\
                 {}\n[recordings]\n{spool_line}",
                old_api(port, "recordings_listing = \"flat\"\n")
            ),
        )
        .await;
        let old = Old::new(port, None);
        check_profiles(&srv, &old, "plain", &by_bare, &files).await;
        // The month names download too, each exactly its file.
        for (rel, data) in &files {
            assert_eq!(
                &new_download(&srv, "plain", "pw2", rel).await,
                data,
                "{rel}"
            );
        }
        srv.stop().await;
    }
}

#[tokio::test]
async fn unknown_listing_profiles_are_configuration_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "[recordings]\nlisting = \"ucm62xx\"\n",
            "recordings.listing",
        ),
        ("[recordings]\nlisting = \"\"\n", "recordings.listing"),
        (
            "[https_api]\nrecordings_listing = \"Flat\"\n",
            "https_api.recordings_listing",
        ),
        (
            "[[https_api.users]]\nusername = \"u\"\npassword = \"p\"\nrecordings_listing = \"bare\"\n",
            "https_api.users[0].recordings_listing",
        ),
        (
            "[https_api_old]\nrecordings_listing = \"yes\"\n",
            "https_api_old.recordings_listing",
        ),
    ] {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(err.contains(key) && err.contains("flat"), "{text}: {err}");
    }
}

/// The same over S3: the month prefixes and the folder's own objects are
/// what the look-ups see.
#[cfg(feature = "s3")]
#[tokio::test]
async fn the_flat_listing_of_an_s3_bucket_is_the_local_one() {
    use object_store::ObjectStoreExt;
    use object_store::path::Path as Key;

    let Some(url) = super::s3::s3_url() else {
        return;
    };
    let name = super::s3::bucket(&url).await;
    let s3 = super::s3::s3_client(&url, &name);
    let local = tempfile::tempdir().unwrap();
    let (by_bare, files) = spool(local.path());
    for (rel, data) in &files {
        s3.put(
            &Key::from(format!("site1/monitor/{rel}")),
            data.clone().into(),
        )
        .await
        .unwrap();
    }
    for db in dbs().await {
        let port = free_port();
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"pw\"\n\
                 [[https_api.users]]\nusername = \"modern\"\npassword = \"pw2\"\nrecordings_listing = \"month\"\n\
                 {}\n[recordings]\nlisting = \"flat\"\nstore = \"s3\"\n\
                 [recordings.s3]\nbucket = \"{name}\"\nendpoint = \"{url}\"\nprefix = \"site1\"\n\
                 access_key_id = \"test\"\nsecret_access_key = \"test\"\n",
                old_api(port, "")
            ),
        )
        .await;
        let old = Old::new(port, None);
        check_profiles(&srv, &old, "modern", &by_bare, &files).await;
        let log = srv.stop().await;
        assert!(log.contains("left_out=2"), "{log}");
    }
}
