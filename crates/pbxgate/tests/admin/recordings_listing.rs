//! The recapi listing profile of a page user (issue 16 point 3): chosen on
//! the API Configuration page, validated beside its field, applied to the
//! user's next listing; a file user's shown read-only.

use reqwest::StatusCode;
use serde_json::json;

use super::apiconfig::AdminClient;
use crate::kit::*;

fn user<'a>(index: &'a str, listing: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("index", index),
        ("username", "crm"),
        (
            "password",
            if index.is_empty() {
                "long enough 1"
            } else {
                ""
            },
        ),
        ("permitted_ips", ""),
        ("recordings_listing", listing),
    ]
}

/// The `filename` column of the monitor listing as `who` sees it.
async fn names(srv: &Server, who: &str, pw: &str) -> Vec<String> {
    let c = client(None);
    let cookie = srv.login(&c, who, pw).await.unwrap();
    let resp = crate::recapi::recapi(srv, &c, &cookie, json!({"filedir": "monitor"}), &[]).await;
    assert_eq!(resp.status(), 200);
    resp.text()
        .await
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_page_user_gets_the_listing_profile_chosen_on_the_page() {
    for db in dbs().await {
        let spool = tempfile::tempdir().unwrap();
        let month = spool.path().join("monitor/2024-05");
        std::fs::create_dir_all(&month).unwrap();
        std::fs::write(month.join("auto-1717093784-1001-2100.wav"), b"a").unwrap();
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"pw\"\nrecordings_listing = \"flat\"\n\
                 [recordings]\nspool_dir = \"{}\"\n",
                spool.path().display()
            ),
        )
        .await;
        let admin = AdminClient::new(&srv).await;
        let page = admin.page().await;
        assert!(
            page.contains("<th>Recording listing</th><td>flat</td>"),
            "the file user's profile, read-only: {page}"
        );
        let add = "/admin/api-config/user";
        let (status, page) = admin.post(add, &user("", "bare")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
        assert!(
            page.contains("data-field=\"recordings_listing\">")
                && page.contains("recordings.listing applies"),
            "{page}"
        );
        let (status, page) = admin.post(add, &user("", "flat")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        assert!(
            admin
                .page()
                .await
                .contains("<option value=\"flat\" selected>")
        );
        assert_eq!(
            names(&srv, "crm", "long enough 1").await,
            ["auto-1717093784-1001-2100.wav"]
        );
        // Back to the default (recordings.listing = month): applied at once,
        // to the session already open too.
        let (status, page) = admin.post(add, &user("0", "")).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(
            names(&srv, "crm", "long enough 1").await,
            ["2024-05/auto-1717093784-1001-2100.wav"]
        );
        assert_eq!(
            names(&srv, "cdrapi", "pw").await,
            ["auto-1717093784-1001-2100.wav"]
        );
        let log = srv.stop().await;
        assert!(log.contains("user.crm.recordings_listing"), "{log}");
    }
}
