//! The AMI and ARI clients against the real Asterisk of the test rig.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use asterisk::ConnState;
use asterisk::ami::{Ami, AmiConfig};
use asterisk::ari::{Ari, AriConfig, Event};
use asterisk::testing::{Rig, rig};

/// Tests that restart Asterisk must not overlap the others.
static RIG_LOCK: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

async fn wait_up(mut state: tokio::sync::watch::Receiver<ConnState>, secs: u64) -> ConnState {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = state.borrow_and_update().clone();
        if s.is_up() || matches!(s, ConnState::Down(ref r) if r.contains("authentication")) {
            return s;
        }
        if tokio::time::timeout_at(deadline, state.changed())
            .await
            .is_err()
        {
            return state.borrow().clone();
        }
    }
}

fn ami(rig: &Rig, secret: &str) -> Ami {
    Ami::start(AmiConfig {
        secret: secret.to_owned(),
        ..rig.ami_config()
    })
}

#[tokio::test]
async fn ami_logs_in_with_md5_and_correlates_actions() {
    let Some(rig) = rig() else { return };
    let _shared = RIG_LOCK.read().await;
    let ami = ami(&rig, rig.get("AMI_SECRET"));
    assert!(wait_up(ami.state(), 10).await.is_up());

    // Concurrent actions each get their own response.
    let (a, b, c) = tokio::join!(
        ami.action("Ping", &[]),
        ami.action("CoreStatus", &[]),
        ami.action("Getvar", &[("Variable", "ASTERISK_VERSION_NUM")]),
    );
    assert!(a.unwrap().is_success());
    let core = b.unwrap();
    assert!(core.is_success());
    assert!(
        core.response.get("CoreStartupTime").is_some(),
        "{:?}",
        core.response
    );
    assert!(c.unwrap().is_success());

    // An EventList action collects its events until the Complete event.
    let list = ami.action("PJSIPShowEndpoints", &[]).await.unwrap();
    assert!(list.is_success(), "{:?}", list.response);
    let names: Vec<&str> = list
        .events
        .iter()
        .filter_map(|e| e.get("ObjectName"))
        .collect();
    assert!(
        names.contains(&"trunk") && names.contains(&"1000"),
        "{names:?}"
    );

    // A header that would inject a second action is refused before sending.
    let err = ami
        .action("Hangup", &[("Channel", "x\r\nAction: Logoff")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("line break"), "{err}");
    assert!(ami.action("Ping", &[]).await.unwrap().is_success());
    ami.shutdown();
}

#[tokio::test]
async fn a_wrong_ami_secret_is_reported_not_retried_silently() {
    let Some(rig) = rig() else { return };
    let _shared = RIG_LOCK.read().await;
    let ami = ami(&rig, "not-the-secret");
    let mut state = ami.state();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let reason = loop {
        if let ConnState::Down(r) = state.borrow_and_update().clone() {
            break r;
        }
        tokio::time::timeout_at(deadline, state.changed())
            .await
            .unwrap()
            .unwrap();
    };
    assert!(reason.contains("authentication"), "{reason}");
    assert!(ami.action("Ping", &[]).await.is_err());
    ami.shutdown();
}

#[tokio::test]
async fn ari_registers_the_app_and_delivers_stasis_start() {
    let Some(rig) = rig() else { return };
    let _shared = RIG_LOCK.read().await;
    let app = format!("pbxgate-test-{}", std::process::id());
    let ari = Ari::start(AriConfig::new(
        rig.http_url(),
        rig.get("ARI_USER"),
        rig.get("ARI_PASSWORD"),
        app.clone(),
    ))
    .unwrap();
    assert!(wait_up(ari.state(), 10).await.is_up());
    let apps = ari.applications().await.unwrap();
    assert!(apps.contains(&app), "{apps:?}");

    // Send a channel into our app with AMI Originate (Application: Stasis).
    let mut events = ari.subscribe();
    let ami = ami(&rig, rig.get("AMI_SECRET"));
    assert!(wait_up(ami.state(), 10).await.is_up());
    let r = ami
        .action(
            "Originate",
            &[
                ("Channel", "Local/1000@rig-sim"),
                ("Application", "Stasis"),
                ("Data", &format!("{app},probe,42")),
                ("Async", "true"),
            ],
        )
        .await
        .unwrap();
    assert!(r.is_success(), "{:?}", r.response);
    let start = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(e) = events.recv().await
                && let Event::StasisStart { channel, args } = &*e
            {
                return (channel.clone(), args.clone());
            }
        }
    })
    .await
    .expect("StasisStart within 10 s");
    assert_eq!(start.1, ["probe", "42"]);
    ari.hangup(&start.0.id, "normal").await.unwrap();
    // A channel that does not exist is a clear error.
    let err = ari.hangup("no-such-channel", "normal").await.unwrap_err();
    assert!(matches!(err, asterisk::Error::NotFound(_)), "{err}");
    ari.shutdown();
    ami.shutdown();
}

#[tokio::test]
async fn ami_and_ari_reconnect_after_an_asterisk_restart() {
    let Some(rig) = rig() else { return };
    let _exclusive = RIG_LOCK.write().await;
    let ami = ami(&rig, rig.get("AMI_SECRET"));
    let ari = Ari::start(AriConfig::new(
        rig.http_url(),
        rig.get("ARI_USER"),
        rig.get("ARI_PASSWORD"),
        "pbxgate-restart-test",
    ))
    .unwrap();
    assert!(wait_up(ami.state(), 10).await.is_up());
    assert!(wait_up(ari.state(), 10).await.is_up());

    let mut ami_state = ami.state();
    ami_state.borrow_and_update();
    // Restart Asterisk in place: every connection drops.
    let _ = ami
        .action("Command", &[("Command", "core restart now")])
        .await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while ami_state.borrow_and_update().is_up() {
            ami_state.changed().await.unwrap();
        }
    })
    .await
    .expect("the AMI connection drops when Asterisk restarts");

    assert!(wait_up(ami.state(), 60).await.is_up(), "AMI reconnects");
    assert!(wait_up(ari.state(), 60).await.is_up(), "ARI reconnects");
    // Give Asterisk a moment to finish loading modules after the banner.
    // (A poll until a deadline, failing with the last answer seen.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ping = ami.action("Ping", &[]).await;
        if ping.as_ref().is_ok_and(|r| r.is_success()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "actions work again after the reconnect: last Ping answer {ping:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ami.shutdown();
    ari.shutdown();
}
