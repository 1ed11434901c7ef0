//! Configuration and files end to end: no secret in any message of
//! `check-config` or `serve` nor in the log, private database and key files,
//! what `check-config` shows, derived durations of `getSystemStatus`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::kit::*;

const SECRET: &str = "Zq7secretVal";

/// Runs the binary with `args` and extra environment: exit code and all output.
async fn run(args: &[&str], config: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).arg("--config").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("pbxgate did not exit within 60 s")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A configuration file's text, `PBXGATE_*` variables, and what the error must name.
type Case<'a> = (String, Vec<(&'a str, String)>, &'a str);

#[tokio::test]
async fn configuration_errors_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    // (file, environment, key the message must name)
    let cases: Vec<Case> = vec![
        (
            format!("[asterisk]\nami_secret = \"{SECRET}\"\nari_password = 987654321\n"),
            vec![],
            "asterisk.ari_password",
        ),
        (
            String::new(),
            vec![(
                "PBXGATE_DATABASE__URL",
                format!("postgres://pbx:{SECRET}@db.example:port/pbx"),
            )],
            "database.url",
        ),
        (
            String::new(),
            vec![(
                "PBXGATE_DATABASE__URL",
                format!("postgres//pbx:{SECRET}@db/pbx"),
            )],
            "database.url",
        ),
        (
            String::new(),
            vec![(
                "PBXGATE_HTTPS_API__USERS",
                format!("[{{ username = \"crm\", password = \"{SECRET}\""),
            )],
            "PBXGATE_HTTPS_API__USERS",
        ),
        (
            String::new(),
            vec![("PBXGATE_HTTPS_API__USERS", format!("[\"{SECRET}\"]"))],
            "https_api.users",
        ),
        (
            format!("[https_api]\npassword = \"{SECRET}\ncall_control = true\n"),
            vec![],
            "line 2",
        ),
        (
            format!("[https_api_old]\npassword = {SECRET}\n"),
            vec![],
            "line 2",
        ),
        (
            format!("[pms]\npassword = [\"{SECRET}\"]\n"),
            vec![],
            "pms.password",
        ),
        (
            format!("[recordings.s3]\nsecret_access_key = {{ k = \"{SECRET}\" }}\n"),
            vec![],
            "recordings.s3.secret_access_key",
        ),
        (
            format!("[https_api]\npassword = \"{SECRET}\"\n[pbx]\ntimezone = \"{SECRET}\"\n"),
            vec![],
            "pbx.timezone",
        ),
        (
            "[web]\nlisten = \"127.0.0.1:0\"\n".to_owned(),
            vec![("PBXGATE_ASTERISK__AMI_SECRET", SECRET.to_owned())],
            "web.listen",
        ),
    ];
    for (text, env, key) in &cases {
        std::fs::write(&path, text).unwrap();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for cmd in ["check-config", "serve"] {
            let (code, out) = run(&[cmd], &path, &env).await;
            assert_eq!(code, Some(2), "{cmd} {text} {env:?}: {out}");
            assert!(out.contains(key), "{cmd} {text} {env:?}: {out}");
            assert!(
                !out.contains(SECRET) && !out.contains("987654321"),
                "{cmd} {text} {env:?}: {out}"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_database_is_reported_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let port = free_port();
    std::fs::write(
        &path,
        format!(
            "[web]\nlisten = \"127.0.0.1:{}\"\n[database]\nurl = \"postgres://pbx:{SECRET}@127.0.0.1:{port}/pbx\"\n",
            free_port()
        ),
    )
    .unwrap();
    let (code, out) = run(&["serve"], &path, &[("RUST_LOG", "debug")]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("database"), "{out}");
    assert!(!out.contains(SECRET), "{out}");
}

#[tokio::test]
async fn a_running_server_never_logs_a_secret() {
    for db in dbs().await {
        let mut db = db;
        // PostgreSQL of the tests trusts local connections: a password in the
        // URL is accepted and must not show either.
        if let Some(rest) = db.url.strip_prefix("postgres://postgres@") {
            db.url = format!("postgres://postgres:{SECRET}db@{rest}");
        }
        let ami = free_port();
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"{SECRET}api\"\n\
                 [[https_api.users]]\nusername = \"crm\"\npassword = \"{SECRET}crm\"\n\
                 [https_api_old]\npassword = \"{SECRET}old\"\n\
                 [pms]\nusername = \"pms\"\npassword = \"{SECRET}pms\"\n\
                 [asterisk]\nami_address = \"127.0.0.1:{ami}\"\nami_secret = \"{SECRET}ami\"\n\
                 ari_url = \"http://127.0.0.1:{ami}\"\nari_password = \"{SECRET}ari\"\n"
            ),
        )
        .await;
        let c = client(None);
        srv.login(&c, "cdrapi", &format!("{SECRET}api"))
            .await
            .unwrap();
        assert_eq!(srv.login(&c, "crm", "wrong").await, Err(-37));
        let log = srv.stop().await;
        assert!(log.contains("AMI") || log.contains("ami"), "{log}");
        assert!(!log.contains(SECRET), "{log}");
    }
}

#[tokio::test]
async fn check_config_shows_asterisk_and_recordings_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!(
            "[asterisk]\nami_address = \"pbx.example:5038\"\nami_username = \"gate\"\n\
             ami_secret = \"{SECRET}\"\nari_url = \"http://pbx.example:8088\"\n\
             ari_password = \"{SECRET}2\"\ncdr_csv = \"/nowhere/pbxgate.csv\"\n\
             [recordings]\nspool_dir = \"/srv/spool\"\n[recordings.dirs]\nsca = \"\"\n"
        ),
    )
    .unwrap();
    let (code, out) = run(&["check-config"], &path, &[]).await;
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "asterisk ami        gate@pbx.example:5038 (secret set)",
        "asterisk ari        pbxgate@http://pbx.example:8088 app pbxgate (password set)",
        "/nowhere/pbxgate.csv (not there yet)",
        "spool_dir /srv/spool (6 directories)",
        "monitor",
        "/srv/spool/monitor",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    assert!(!out.contains(SECRET), "{out}");
    assert!(!out.contains("    sca "), "{out}");

    std::fs::write(&path, "").unwrap();
    let (code, out) = run(&["check-config"], &path, &[]).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("asterisk            not connected"), "{out}");
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn database_and_key_files_are_private() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // An installation made by an older pbxgate: readable by everyone.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db_file = data.join("pbxgate.db");
    std::fs::write(&db_file, b"").unwrap();
    std::fs::set_permissions(&db_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let db = store::testing::TestDb {
        backend: store::Backend::Sqlite,
        url: "sqlite://data/pbxgate.db".to_owned(),
    };
    let srv = Server::start_in(
        &db,
        "[https_api]\npassword = \"pw\"\n",
        dir.clone(),
        free_port(),
    )
    .await;
    let c = client(None);
    srv.login(&c, "cdrapi", "pw").await.unwrap();
    assert_eq!(mode(&data), 0o700);
    for f in [
        "pbxgate.db",
        "pbxgate.db-wal",
        "pbxgate.db-shm",
        "tls/key.pem",
    ] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&data.join("tls")), 0o700);
    srv.stop().await;

    // A fresh installation: `admin set-password` before the first start
    // creates the data folder, private.
    let fresh = tempfile::tempdir().unwrap();
    let path = fresh.path().join("p.toml");
    std::fs::write(&path, "").unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["admin", "set-password", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"a long password\n").await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&fresh.path().join("data")), 0o700);
    assert_eq!(mode(&fresh.path().join("data/pbxgate.db")), 0o600);
}

#[tokio::test]
async fn a_database_folder_that_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "[database]\nurl = \"sqlite://typo/sub/pbxgate.db\"\n",
    )
    .unwrap();
    for cmd in ["check-config", "serve"] {
        let (code, out) = run(&[cmd], &path, &[]).await;
        assert_eq!(code, Some(2), "{cmd}: {out}");
        assert!(
            out.contains("database.url") && out.contains("does not exist"),
            "{cmd}: {out}"
        );
    }
    assert!(!dir.path().join("typo").exists());
}

/// `HH:MM:SS` (hours may exceed 24) in seconds.
fn seconds(hms: &str) -> u64 {
    let parts: Vec<u64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "{hms}");
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

#[tokio::test]
async fn system_status_idle_time_never_exceeds_up_time() {
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "[https_api]\npassword = \"pw\"\n").await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    // Right after start the machine has been up far longer than pbxgate:
    // an idle time read from the whole machine would exceed the up-time.
    for _ in 0..3 {
        let r = srv
            .api(&c, json!({"action": "getSystemStatus", "cookie": cookie}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        let up = seconds(r["response"]["up-time"].as_str().unwrap());
        let idle = seconds(r["response"]["idle-time"].as_str().unwrap());
        assert!(idle <= up, "idle {idle} > up {up}: {r}");
    }
    srv.stop().await;
}
