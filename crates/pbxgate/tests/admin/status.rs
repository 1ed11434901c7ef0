//! The Status page: what `GET /admin/api/status` reports is true (Asterisk
//! unreachable, the database, the ingest, the latest API requests of both
//! APIs, the audit trail, the certificates and their days left), and the page
//! in a real browser.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::admin_browser;
use super::live::admin_login;
use crate::kit::*;

/// A certificate (PEM) and its key for 127.0.0.1, valid until `days` from now.
fn cert_pair(days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap();
    let ymd = |d: i64| {
        let t = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * d);
        let date = jiff::tz::TimeZone::UTC.to_datetime(t).date();
        rcgen::date_time_ymd(
            i32::from(date.year()),
            date.month().try_into().unwrap(),
            date.day().try_into().unwrap(),
        )
    };
    params.not_before = ymd(-2);
    params.not_after = ymd(days);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A configuration with a web certificate that ends in 10 days, the old API
/// on `old_port` with a generated one, and an AMI nobody answers.
fn config(dir: &Path, old_port: u16) -> String {
    let (cert, key) = cert_pair(10);
    let (cert_path, key_path) = (dir.join("web-cert.pem"), dir.join("web-key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    format!(
        "[web]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
         [https_api]\npassword = \"pw\"\n\
         [https_api_old]\nenable = true\ntls_bind_address = \"127.0.0.1:{old_port}\"\n\
         username = \"cdrapi\"\npassword = \"old-secret\"\npermitted_ips = [\"127.0.0.1\"]\n\
         [asterisk]\nami_address = \"127.0.0.1:9\"\nami_secret = \"x\"\n\
         [cdr_output]\nenable = true\n[[cdr_output.receivers]]\nname = \"billing\"\n\
         address = \"127.0.0.1\"\nport = 9\n",
        cert_path.display(),
        key_path.display()
    )
}

async fn start(db: &store::testing::TestDb) -> (Server, u16) {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let old_port = free_port();
    let srv = Server::start_in(db, &config(dir.path(), old_port), dir.clone(), free_port()).await;
    (srv, old_port)
}

/// Requests of both APIs for the list of latest requests.
async fn some_requests(srv: &Server, old_port: u16) -> String {
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let r = srv
        .api(&c, json!({"action": "getSystemStatus", "cookie": "sid1-1"}))
        .await;
    assert_eq!(r["status"], -6);
    let r = c
        .get(format!("https://127.0.0.1:{old_port}/cdrapi?format=json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    cookie
}

#[tokio::test]
async fn the_status_endpoint_tells_what_is_true() {
    for db in dbs().await {
        let (srv, old_port) = start(&db).await;
        let anon = client(None);
        let r = anon.get(srv.url("/admin/api/status")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        some_requests(&srv, old_port).await;
        let admin = admin_login(&srv).await;
        let r = admin.get(&srv, "/admin/status").await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("<script src=\"/admin/assets/status.js\" defer></script>"));
        assert!(!html.contains("<script>") && !html.contains(" style="));

        // AMI: configured, not up, and its failure known once it has tried.
        let st = wait_until(
            "the status page to show AMI's last error",
            Duration::from_secs(10),
            async || {
                let st = admin.get_json(&srv, "/admin/api/status").await;
                if st["asterisk"]["ami"]["last_error"].is_null() {
                    Err(Text(st.to_string()))
                } else {
                    Ok(st)
                }
            },
        )
        .await;
        let ami = &st["asterisk"]["ami"];
        assert_eq!(st["asterisk"]["configured"], true);
        assert_eq!(
            (ami["configured"].as_bool(), ami["up"].as_bool()),
            (Some(true), Some(false)),
            "{ami}"
        );
        assert!(
            ["down", "connecting"].contains(&ami["state"].as_str().unwrap()),
            "{ami}"
        );
        assert_eq!(ami["target"], "127.0.0.1:9");
        assert!(
            ami["last_error"]["message"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("refused"),
            "{ami}"
        );
        assert!(ami["since_ms"].as_i64().unwrap() <= st["now_ms"].as_i64().unwrap());
        let ari = &st["asterisk"]["ari"];
        assert_eq!(
            (ari["configured"].as_bool(), ari["state"].as_str()),
            (Some(false), Some("disabled"))
        );

        // The database in use, reachable.
        let database = &st["database"];
        let backend = if srv.db_url.starts_with("postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        assert_eq!(database["backend"], backend, "{database}");
        assert_eq!(database["reachable"], true);
        let latency = database["latency_ms"].as_f64().unwrap();
        assert!((0.0..1000.0).contains(&latency), "{database}");

        // Ingest: started (AMI configured), nothing stored yet.
        assert_eq!(st["ingest"]["running"], true);
        assert_eq!(st["ingest"]["newest_cdr"], Value::Null);
        assert_eq!(st["ingest"]["backlog"], 0);
        assert_eq!(st["call_control"]["available"], false);

        // Certificates: the configured one ends within 10 days: a warning.
        let web = &st["certificates"][0];
        assert_eq!(
            (web["listener"].as_str(), web["source"].as_str()),
            (Some("web"), Some("configured")),
            "{web}"
        );
        assert!(web["path"].as_str().unwrap().ends_with("web-cert.pem"));
        let days = web["days_left"].as_i64().unwrap();
        assert!((9..=10).contains(&days), "{web}");
        assert_eq!(
            (web["warning"].as_bool(), web["expired"].as_bool()),
            (Some(true), Some(false))
        );
        let old = &st["certificates"][1];
        assert_eq!(
            (old["listener"].as_str(), old["source"].as_str()),
            (Some("old API"), Some("generated")),
            "{old}"
        );
        assert_eq!(old["enabled"], true);
        assert_eq!(old["address"], format!("127.0.0.1:{old_port}"));
        assert!(
            old["path"].as_str().unwrap().ends_with("tls-old/cert.pem"),
            "{old}"
        );
        assert!(old["days_left"].as_i64().unwrap() > 365, "{old}");
        assert_eq!(old["warning"], false);

        // The latest requests of both APIs, newest first.
        let requests = st["requests"].as_array().unwrap();
        let find = |api: &str, action: &str| {
            requests
                .iter()
                .find(|r| r["api"] == api && r["action"] == action)
                .unwrap_or_else(|| panic!("{api} {action}: {requests:#?}"))
        };
        let login = find("new", "login");
        assert_eq!(
            (
                login["user"].as_str(),
                login["status"].as_i64(),
                login["ip"].as_str()
            ),
            (Some("cdrapi"), Some(0), Some("127.0.0.1"))
        );
        assert_eq!(find("new", "getSystemStatus")["status"], -6);
        assert_eq!(find("old", "GET /cdrapi")["status"], 401);
        let times: Vec<i64> = requests
            .iter()
            .map(|r| r["at_ms"].as_i64().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

        // The audit trail: the API login and the admin's.
        let audit = st["audit"].as_array().unwrap();
        assert!(
            audit
                .iter()
                .any(|e| e["event"] == "login" && e["username"] == "cdrapi" && e["result"] == "ok"),
            "{audit:#?}"
        );
        assert!(
            audit.iter().any(|e| e["event"] == "login"
                && e["username"] == "admin"
                && e["detail"] == "admin"),
            "{audit:#?}"
        );
        srv.stop().await;
    }
}

#[tokio::test]
async fn without_asterisk_the_status_says_not_configured() {
    let db = dbs().await.remove(0);
    let srv = Server::start(&db, "[https_api]\npassword = \"pw\"\n").await;
    let admin = admin_login(&srv).await;
    let st = admin.get_json(&srv, "/admin/api/status").await;
    assert_eq!(st["asterisk"]["configured"], false);
    for conn in ["ami", "ari"] {
        let c = &st["asterisk"][conn];
        assert_eq!(
            (c["state"].as_str(), c["up"].as_bool()),
            (Some("disabled"), Some(false)),
            "{c}"
        );
    }
    assert_eq!(st["ingest"]["running"], false);
    assert_eq!(st["ingest"]["backlog"], Value::Null);
    // Generated web certificate; the old API is off.
    let web = &st["certificates"][0];
    assert_eq!(
        (web["source"].as_str(), web["warning"].as_bool()),
        (Some("generated"), Some(false)),
        "{web}"
    );
    assert_eq!(st["certificates"][1]["enabled"], false);
    srv.stop().await;
}

/// Browser: the status page shows the facts, refreshes by itself, and the
/// Live calls page says that Asterisk is unreachable.
#[tokio::test]
async fn the_status_page_works_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let db = last_db(dbs().await);
    let (srv, old_port) = start(&db).await;
    let cookie = some_requests(&srv, old_port).await;
    // The account the script logs in with.
    drop(admin_login(&srv).await);
    let mut run = admin_browser(&srv, "status.mjs", &[]);
    run.step("shown", Duration::from_secs(60)).await;
    // A new request shows up without a reload.
    let c = client(None);
    let r = srv
        .api(
            &c,
            json!({"action": "getSystemGeneralStatus", "cookie": cookie}),
        )
        .await;
    assert_eq!(r["status"], 0, "{r}");
    run.finish(Duration::from_secs(60)).await;
    srv.stop().await;
}
