//! Who may open `/websockify`: websocket users of their own (the file's
//! `[[websockify.users]]` and the API Configuration page's), beside the API
//! users; their permitted IPs and events, and the end of their sockets when
//! the page takes their right away. Events come from real calls on the rig.

use std::time::Duration;

use asterisk::ami::Ami;
use asterisk::testing::{Rig, rig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use store::AuditStore;

use super::Client;
use crate::admin::apiconfig::{AdminClient, assert_refused};
use crate::calls::{CALLS, call, connected_ami, pbx_config, wait_connected};
use crate::channels::hang_up_everything;
use crate::kit::*;

/// The `[asterisk]` section of a pbxgate on the rig.
fn asterisk_section(rig: &Rig) -> String {
    pbx_config(rig, "").replace("[https_api]\npassword = \"pw\"\n", "")
}

/// The event names of one notify frame.
fn notified(frame: &Value) -> Vec<String> {
    assert_eq!(frame["type"], "request", "{frame}");
    frame["message"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["eventname"].as_str().unwrap().to_owned())
        .collect()
}

/// Places a real call (1001 -> 1000: its channels are `ActiveCallStatus`,
/// 1000's hint an `ExtensionStatus`, published after the first channel) and
/// checks that `only` (subscribed to both, allowed `ExtensionStatus` only)
/// receives the extension's states and never a channel, while `all`
/// (allowed both) receives both.
/// The socket closes within `limit`. Extension states of a call just made
/// (events the user may have) may still come first; nothing else.
async fn closes(c: &mut Client, limit: Duration) {
    while let Some(f) = c.frame(limit).await {
        assert_eq!(
            notified(&f),
            vec!["ExtensionStatus"],
            "before the close: {f}"
        );
    }
}

async fn check_only_extension_status(ami: &Ami, only: &mut Client, all: &mut Client) {
    call(ami, "phone-1001", "1000", "\"Alice\" <1001>", 1).await;
    let notes = all
        .notes_until(Duration::from_secs(10), |n| {
            n.iter().any(|(name, _)| name == "ExtensionStatus")
        })
        .await;
    assert!(
        notes.iter().any(|(name, _)| name == "ActiveCallStatus"),
        "the call was published: {notes:?}"
    );
    // The call's first event is a channel: the first frame `only` gets is
    // an extension's state.
    let f = only
        .frame(Duration::from_secs(10))
        .await
        .expect("socket open");
    assert_eq!(notified(&f), vec!["ExtensionStatus"], "{f}");
    let r = only.request("heartbeat", json!({})).await;
    assert_eq!(r["status"], 0, "{r}");
    assert!(
        only.notes
            .iter()
            .all(|(name, _)| name != "ActiveCallStatus"),
        "{:?}",
        only.notes
    );
}

#[tokio::test]
async fn websocket_users_of_the_file_log_in_and_receive_only_their_events() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        // No call of an earlier test still ending: its events would reach
        // sockets before their events are narrowed.
        hang_up_everything(&ami).await;
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"api pw 1\"\n{}\
                 [[websockify.users]]\nusername = \"cti\"\npassword = \"cti secret\"\nevents = [\"ExtensionStatus\"]\n\
                 [[websockify.users]]\nusername = \"wall\"\npassword = \"wall secret\"\n\
                 [[websockify.users]]\nusername = \"far\"\npassword = \"far secret\"\npermitted_ips = [\"10.9.9.9\"]\n\
                 [login_restriction]\nmax_failures = 4\n",
                asterisk_section(&rig)
            ),
        )
        .await;
        wait_connected(&srv).await;

        let mut cti = Client::connect(&srv).await;
        assert_eq!(cti.login("cti", "cti secret").await, 0);
        // A name it may not receive refuses the whole subscribe (-47); an
        // unknown name is still -9; nothing was subscribed by either.
        assert_eq!(
            cti.subscribe(&["ExtensionStatus", "ActiveCallStatus"])
                .await,
            -47
        );
        assert_eq!(cti.subscribe(&["ExtensionStatus", "NoSuchEvent"]).await, -9);
        let r = cti
            .request("unsubscribe", json!({"eventnames":["ActiveCallStatus"]}))
            .await;
        assert_eq!(r["status"], 0, "unsubscribing is harmless: {r}");
        assert_eq!(cti.subscribe(&["ExtensionStatus"]).await, 0);

        // A websocket user without `events` may have them all.
        let mut wall = Client::connect(&srv).await;
        assert_eq!(wall.login("wall", "wall secret").await, 0);
        assert_eq!(
            wall.subscribe(&["ActiveCallStatus", "ExtensionStatus", "PbxStatus"])
                .await,
            0
        );
        // The API user still logs in and subscribes as before.
        let mut api = Client::connect(&srv).await;
        assert_eq!(api.login("cdrapi", "api pw 1").await, 0);
        assert_eq!(
            api.subscribe(&["ActiveCallStatus", "ExtensionStatus"])
                .await,
            0
        );
        check_only_extension_status(&ami, &mut cti, &mut api).await;
        let notes = wall
            .notes_until(Duration::from_secs(10), |n| {
                n.iter().any(|(name, _)| name == "ExtensionStatus")
            })
            .await;
        assert!(notes.iter().any(|(name, _)| name == "ActiveCallStatus"));

        // Refused with -37 and counted: a wrong password, an address outside
        // the permitted IPs, a websocket user's password for an API user.
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("cti", "wrong").await, -37);
        assert_eq!(c.login("far", "far secret").await, -37);
        assert_eq!(c.login("cdrapi", "cti secret").await, -37);
        assert_eq!(c.login("cti", "api pw 1").await, -37);
        let r = c.request("challenge", json!({"username":"cti"})).await;
        assert_eq!(r["status"], -68, "the login restriction counts them: {r}");

        let store = store::Store::connect(&srv.db_url, &store::ConnectOptions::default())
            .await
            .unwrap();
        let audit = store.recent_audit(50).await.unwrap();
        let reasons: Vec<String> = audit
            .iter()
            .filter(|e| e.event == "login")
            .map(|e| format!("{} {} {}", e.username, e.result, e.detail))
            .collect();
        for expect in ["cti", "wall", "cdrapi"] {
            assert!(
                reasons.iter().any(|r| r.starts_with(&format!("{expect} "))),
                "{reasons:?}"
            );
        }
        ami.shutdown();
        let log = srv.stop().await;
        assert!(log.contains("ip-not-permitted"), "{log}");
        assert!(log.contains("wrong-password"), "{log}");
        for secret in ["cti secret", "wall secret", "far secret", "api pw 1"] {
            assert!(!log.contains(secret), "{secret} in the log");
        }
    }
}

#[tokio::test]
async fn websocket_users_log_in_while_the_api_is_switched_off() {
    let db = last_db(dbs().await);
    let srv = Server::start(
        &db,
        "[https_api]\nenable = false\npassword = \"api pw 1\"\n\
         [[websockify.users]]\nusername = \"cti\"\npassword = \"cti secret\"\n",
    )
    .await;
    let mut c = Client::connect(&srv).await;
    // Every name gets a challenge (which exist is not told); the API user's
    // login fails as any other, the websocket user's succeeds.
    assert_eq!(c.login("cdrapi", "api pw 1").await, -37);
    assert_eq!(c.login("nobody", "x").await, -37);
    assert_eq!(c.login("cti", "cti secret").await, 0);
    assert_eq!(c.subscribe(&["ActiveCallStatus"]).await, 0);
    // /api itself stays off.
    let r = srv
        .api(
            &client(None),
            json!({"action":"challenge","user":"cdrapi","version":"1"}),
        )
        .await;
    assert_eq!(r["status"], -47, "{r}");
    let log = srv.stop().await;
    assert!(log.contains("api-disabled"), "{log}");
}

fn ws_fields<'a>(
    index: &'a str,
    name: &'a str,
    password: &'a str,
    ips: &'a str,
    events: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("index", index),
        ("username", name),
        ("password", password),
        ("permitted_ips", ips),
        ("events", events),
    ]
}

#[tokio::test]
async fn websocket_users_of_the_page_are_checked_applied_and_end_their_sockets() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        // No call of an earlier test still ending: its events would reach
        // sockets before their events are narrowed.
        hang_up_everything(&ami).await;
        let srv = Server::start(
            &db,
            &format!(
                "[https_api]\npassword = \"api pw 1\"\n{}\
                 [[websockify.users]]\nusername = \"filecti\"\npassword = \"file secret\"\n",
                asterisk_section(&rig)
            ),
        )
        .await;
        wait_connected(&srv).await;
        let admin = AdminClient::new(&srv).await;
        let page = admin.page().await;
        assert!(page.contains("Websocket users (/websockify)"), "{page}");
        // The file's user is shown read-only, without its password.
        assert!(
            page.contains("data-ws-user=\"filecti\"") && page.contains("websockify.users"),
            "{page}"
        );
        assert!(!page.contains("file secret"));

        // Every rule, beside its field; nothing saved.
        let add = "/admin/api-config/ws-user";
        for (fields, field, expect) in [
            (
                ws_fields("", "wall", "", "", ""),
                "password",
                "needs a password",
            ),
            (
                ws_fields("", "wall", "short", "", ""),
                "password",
                "at least 8",
            ),
            (
                ws_fields("", "bad name", "long enough 1", "", ""),
                "username",
                "only letters",
            ),
            (
                ws_fields("", "wall", "long enough 1", "10.0.0.1\nnope", ""),
                "permitted_ips",
                "entry 2",
            ),
            (
                ws_fields("", "wall", "long enough 1", "", "ExtensionStatus, Bogus"),
                "events",
                "entry 2",
            ),
            (
                ws_fields("", "cdrapi", "long enough 1", "", ""),
                "username",
                "API user",
            ),
            (
                ws_fields("", "filecti", "long enough 1", "", ""),
                "username",
                "already exists",
            ),
        ] {
            let a = admin.post(add, &fields).await;
            assert_refused(&a, field, expect);
            assert!(!a.1.contains("long enough 1"), "password echoed");
        }
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("wall", "long enough 1").await, -37);

        // Added: it logs in and subscribes at once.
        let a = admin
            .post(
                add,
                &ws_fields(
                    "",
                    "wall",
                    "long enough 1",
                    "127.0.0.1",
                    "ActiveCallStatus, ExtensionStatus",
                ),
            )
            .await;
        assert_eq!(
            a,
            (
                StatusCode::SEE_OTHER,
                "/admin/api-config?saved=ws-user#ws".into()
            )
        );
        // An API user cannot take its name.
        let a = admin
            .post(
                "/admin/api-config/user",
                &[
                    ("index", ""),
                    ("username", "wall"),
                    ("password", "long enough 2"),
                    ("permitted_ips", ""),
                ],
            )
            .await;
        assert_refused(&a, "username", "websocket user");
        let mut wall = Client::connect(&srv).await;
        assert_eq!(wall.login("wall", "long enough 1").await, 0);
        assert_eq!(
            wall.subscribe(&["ActiveCallStatus", "ExtensionStatus"])
                .await,
            0
        );
        let mut file = Client::connect(&srv).await;
        assert_eq!(file.login("filecti", "file secret").await, 0);
        assert_eq!(
            file.subscribe(&["ActiveCallStatus", "ExtensionStatus"])
                .await,
            0
        );

        // Its events narrowed (password kept): the open socket stays, the
        // subscription made before no longer brings ActiveCallStatus.
        let a = admin
            .post(
                add,
                &ws_fields("0", "wall", "", "127.0.0.1", "ExtensionStatus"),
            )
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        assert_eq!(
            wall.subscribe(&["ActiveCallStatus"]).await,
            -47,
            "in force at once"
        );
        check_only_extension_status(&ami, &mut wall, &mut file).await;

        // A new password closes its socket; the other user's stays.
        let a = admin
            .post(add, &ws_fields("0", "wall", "second pass 2", "", ""))
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        closes(&mut wall, Duration::from_secs(5)).await;
        let r = file.request("heartbeat", json!({})).await;
        assert_eq!(r["status"], 0, "{r}");
        let mut wall = Client::connect(&srv).await;
        assert_eq!(wall.login("wall", "long enough 1").await, -37);
        assert_eq!(wall.login("wall", "second pass 2").await, 0);
        // Its address no longer permitted: closed.
        let a = admin
            .post(add, &ws_fields("0", "wall", "", "10.1.2.3", ""))
            .await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        closes(&mut wall, Duration::from_secs(5)).await;
        let a = admin.post(add, &ws_fields("0", "wall", "", "", "")).await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.1);
        let mut wall = Client::connect(&srv).await;
        assert_eq!(wall.login("wall", "second pass 2").await, 0);

        // A second node on the same database follows within its poll.
        let other = Server::start(&db, "[https_api]\npassword = \"api pw 1\"\n").await;
        let mut there = Client::connect(&other).await;
        assert_eq!(there.login("wall", "second pass 2").await, 0);

        // Removed: its sockets close here and there, logins are refused.
        let a = admin
            .post(
                "/admin/api-config/ws-user/remove",
                &[("index", "0"), ("username", "wall")],
            )
            .await;
        assert_eq!(
            a,
            (
                StatusCode::SEE_OTHER,
                "/admin/api-config?saved=ws-removed#ws".into()
            )
        );
        closes(&mut wall, Duration::from_secs(5)).await;
        closes(&mut there, Duration::from_secs(10)).await;
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("wall", "second pass 2").await, -37);
        let a = admin
            .post(
                "/admin/api-config/ws-user/remove",
                &[("index", "0"), ("username", "wall")],
            )
            .await;
        assert_eq!(a.0, StatusCode::BAD_REQUEST);
        assert!(a.1.contains("no longer exists"), "{}", a.1);
        // The API user was never affected.
        let mut api = Client::connect(&srv).await;
        assert_eq!(api.login("cdrapi", "api pw 1").await, 0);
        other.stop().await;

        // Audited with key names, never values.
        let store = store::Store::connect(&srv.db_url, &store::ConnectOptions::default())
            .await
            .unwrap();
        let events = store.recent_audit(100).await.unwrap();
        let details: Vec<&str> = events
            .iter()
            .filter(|e| e.event == "settings" && e.username == "admin")
            .map(|e| e.detail.as_str())
            .collect();
        for expect in [
            "websockify.user.wall.added",
            "websockify.user.wall.events",
            "websockify.user.wall.password",
            "websockify.user.wall.permitted_ips",
            "websockify.user.wall.removed",
        ] {
            assert!(
                details.iter().any(|d| d.contains(expect)),
                "{expect}: {details:?}"
            );
        }
        for e in &events {
            assert!(!e.detail.contains("second pass") && !e.detail.contains("long enough"));
        }
        let row = store::WebSettingsStore::web_settings(&store, "websockify")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.updated_by, "admin");
        ami.shutdown();
        let log = srv.stop().await;
        assert!(!log.contains("second pass 2") && !log.contains("long enough 1"));
    }
}
