//! The PBX directory actions (spec §3.1–3.3): per-user permissions, the
//! configuration family's write actions, and (in the submodules) the lists
//! read from the real Asterisk.

mod accounts;
mod groups;

use serde_json::{Value, json};

use crate::kit::*;

/// A logged-in API call as `user`: the whole answer.
async fn call(
    srv: &Server,
    c: &reqwest::Client,
    cookie: &str,
    action: &str,
    extra: Value,
) -> Value {
    let mut req = json!({"action": action, "cookie": cookie});
    for (k, v) in extra.as_object().unwrap() {
        req[k] = v.clone();
    }
    srv.api(c, req).await
}

#[tokio::test]
async fn permissions_are_per_user_with_the_ucms_default() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n\
             [[https_api.users]]\nusername = \"billing\"\npassword = \"pw2\"\ndeny = [\"call\", \"recapi\"]\n\
             [[https_api.users]]\nusername = \"admin2\"\npassword = \"pw3\"\nallow = [\"listRingGroup\", \"secrets\"]\n\
             [[https_api.users]]\nusername = \"nothing\"\npassword = \"pw4\"\ndeny = [\"all\"]\n",
        )
        .await;
        let c = client(None);
        let default = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let billing = srv.login(&c, "billing", "pw2").await.unwrap();
        let admin2 = srv.login(&c, "admin2", "pw3").await.unwrap();
        let nothing = srv.login(&c, "nothing", "pw4").await.unwrap();
        let status = |v: &Value| v["status"].as_i64().unwrap_or_else(|| panic!("{v}"));

        // The default: what the UCM's API user has; permission-gated lists -47.
        let r = call(&srv, &c, &default, "listRingGroup", json!({})).await;
        assert_eq!(status(&r), -47, "{r}");
        assert!(
            r["response"]["error_msg"]
                .as_str()
                .unwrap()
                .contains("listRingGroup")
        );
        let r = call(&srv, &c, &default, "listDigitalTrunk", json!({})).await;
        assert_eq!(status(&r), -47, "{r}");
        // cdrapi answers its own container, not the envelope.
        let r = call(&srv, &c, &default, "cdrapi", json!({"format":"json"})).await;
        assert!(r.get("cdr_root").is_some(), "{r}");
        // Allowed on top of the default.
        let r = call(&srv, &c, &admin2, "listRingGroup", json!({})).await;
        assert_ne!(status(&r), -47, "{r}");
        // Denied groups and actions.
        let r = call(&srv, &c, &billing, "Hangup", json!({"channel":"PJSIP/x-1"})).await;
        assert_eq!(status(&r), -47, "{r}");
        let r = call(&srv, &c, &billing, "recapi", json!({"filename":"x.wav"})).await;
        assert_eq!(status(&r), -47, "{r}");
        let r = call(&srv, &c, &billing, "cdrapi", json!({"format":"json"})).await;
        assert!(r.get("cdr_root").is_some(), "{r}");
        // Nothing allowed, but the session actions stay open.
        for action in ["cdrapi", "pmsapi", "listAccount", "dialExtension"] {
            let r = call(&srv, &c, &nothing, action, json!({})).await;
            assert_eq!(status(&r), -47, "{action}: {r}");
        }
        let r = call(&srv, &c, &nothing, "getSystemStatus", json!({})).await;
        assert_eq!(status(&r), 0, "{r}");
        // A denied action is still -6 without a valid session (no probing).
        let r = call(&srv, &c, "sid1-1", "listRingGroup", json!({})).await;
        assert_eq!(status(&r), -6, "{r}");
        srv.stop().await;
    }
}

#[tokio::test]
async fn configuration_writes_are_answered_unsupported() {
    let db = last_db(dbs().await);
    let srv = Server::start(&db, "[https_api]\npassword = \"pw\"\n").await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    for action in [
        "addSIPAccount",
        "updateSIPAccount",
        "deleteSIPTrunk",
        "addQueue",
        "applyChanges",
        "updateOutboundRoute",
    ] {
        let r = call(&srv, &c, &cookie, action, json!({"extension":"1000"})).await;
        assert_eq!(r["status"], -19, "{action}: {r}");
        let msg = r["response"]["error_msg"].as_str().unwrap();
        assert!(
            msg.contains(action) && msg.contains("not supported"),
            "{msg}"
        );
    }
    // Unknown actions stay -1, as on the UCM; without a session -6.
    let r = call(&srv, &c, &cookie, "listEverything", json!({})).await;
    assert_eq!(r["status"], -1, "{r}");
    let r = call(&srv, &c, "sid1-1", "addSIPAccount", json!({})).await;
    assert_eq!(r["status"], -6, "{r}");
    srv.stop().await;
}

#[tokio::test]
async fn an_unknown_permission_name_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "[https_api]\npassword = \"pw\"\nallow = [\"cdr\", \"listEverything\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("https_api.allow[1]") && err.contains("listEverything"),
        "{err}"
    );
}
