//! End-to-end tests of `channels` (on the rig): each action on real calls
//! through the rig's Asterisk, its effect observed over AMI and through the
//! channel lists; bad input for every action.

use std::sync::Arc;
use std::time::Duration;

use asterisk::ami::{Ami, Message};
use asterisk::testing::{Rig, rig};
use serde_json::{Value, json};
use store::testing::TestDb;
use tokio::sync::broadcast;

use crate::calls::{CALLS, call, pbx_config, wait_connected};
use crate::kit::*;

/// pbxgate on the rig, logged in, plus a test AMI connection whose events
/// are all kept.
struct Bench {
    srv: Server,
    _db: TestDb,
    c: reqwest::Client,
    cookie: String,
    ami: Ami,
    rx: broadcast::Receiver<Arc<Message>>,
    log: Vec<Arc<Message>>,
}

const TZ: &str = "Europe/Berlin";

async fn bench(rig: &Rig) -> Bench {
    bench_with(rig, "").await
}

async fn bench_with(rig: &Rig, extra: &str) -> Bench {
    let ami = crate::calls::connected_ami(rig).await;
    hang_up_everything(&ami).await;
    let db = dbs().await.remove(0);
    let config = format!(
        "[pbx]\ntimezone = \"{TZ}\"\n{}[dialing]\noutbound_prefix = \"9\"\nring_secs = 20\n{extra}",
        pbx_config(rig, "")
    );
    let srv = Server::start(&db, &config).await;
    wait_connected(&srv).await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let rx = ami.subscribe();
    Bench {
        srv,
        _db: db,
        c,
        cookie,
        ami,
        rx,
        log: Vec::new(),
    }
}

/// Ends every call on the rig (the simulated phones keep theirs up for
/// minutes) and waits until no channel is left.
pub(crate) async fn hang_up_everything(ami: &Ami) {
    let _ = ami.action("Hangup", &[("Channel", "/.*/")]).await;
    wait_until(
        "no channel left on the rig",
        Duration::from_secs(10),
        async || {
            let left = ami_channels(ami).await;
            if left.is_empty() { Ok(()) } else { Err(left) }
        },
    )
    .await;
}

async fn ami_channels(ami: &Ami) -> Vec<Message> {
    ami.action("CoreShowChannels", &[])
        .await
        .unwrap()
        .events
        .into_iter()
        .filter(|e| e.event() == Some("CoreShowChannel"))
        .collect()
}

impl Bench {
    async fn api(&self, action: &str, params: Value) -> Value {
        let mut req = params;
        req["action"] = json!(action);
        req["cookie"] = json!(self.cookie);
        self.srv.api(&self.c, req).await
    }

    /// Asks for `action` and checks it succeeded.
    async fn ok(&self, action: &str, params: Value) {
        let r = self.api(action, params.clone()).await;
        assert_eq!(
            r,
            json!({"response": {}, "status": 0}),
            "{action} {params}:\n{}",
            self.srv.log_text()
        );
    }

    async fn status(&self, action: &str, params: Value) -> i64 {
        let r = self.api(action, params.clone()).await;
        r["status"].as_i64().unwrap_or_else(|| panic!("{r}"))
    }

    async fn list(&self, action: &str) -> Vec<Value> {
        let r = self.api(action, json!({"item_num": 1000, "page": 1})).await;
        assert_eq!(r["status"], 0, "{r}");
        r["response"]["channel"].as_array().unwrap().clone()
    }

    /// Polls `listBridgedChannels` until an item satisfies `pred`.
    async fn wait_bridged(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(
            format!("{what} in listBridgedChannels"),
            Duration::from_secs(15),
            async || {
                let last = self.list("listBridgedChannels").await;
                match last.iter().find(|i| pred(i)) {
                    Some(item) => Ok(item.clone()),
                    None => Err(Text(format!(
                        "{last:#?}\nchannels: {:#?}",
                        ami_channels(&self.ami).await
                    ))),
                }
            },
        )
        .await
    }

    /// Waits until an AMI event (received since the bench started, or since
    /// the last [`Bench::forget`]) satisfies `pred`.
    async fn event(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Arc<Message> {
        let until = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(m) = self.log.iter().find(|m| pred(m)) {
                return m.clone();
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Ok(m)) => self.log.push(m),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("{what}: AMI events: {e}"),
                Err(_) => panic!(
                    "{what}: no such AMI event; seen: {:#?}",
                    self.log
                        .iter()
                        .map(|m| format!(
                            "{} {} {}",
                            m.event().unwrap_or(""),
                            m.get("Channel").unwrap_or(""),
                            m.get("Application").unwrap_or("")
                        ))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    fn forget(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.log.push(m);
        }
        self.log.clear();
    }

    async fn done(self) {
        hang_up_everything(&self.ami).await;
        self.ami.shutdown();
        self.srv.stop().await;
    }
}

fn is(v: &Value, key: &str, prefix: &str) -> bool {
    v[key].as_str().is_some_and(|s| s.starts_with(prefix))
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

fn ev(m: &Message, key: &str) -> String {
    m.get(key).unwrap_or_default().to_owned()
}

/// A `YYYY-MM-DD HH:MM:SS` time within a minute of now in the test's zone.
fn assert_recent(t: &str) {
    let dt = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", t)
        .unwrap_or_else(|e| panic!("{t:?}: {e}"));
    let parsed = jiff::tz::TimeZone::get(TZ)
        .unwrap()
        .to_ambiguous_zoned_datetime(dt)
        .compatible()
        .unwrap();
    let age = jiff::Timestamp::now().as_second() - parsed.timestamp().as_second();
    assert!((-5..60).contains(&age), "{t} is {age} s ago");
}

#[tokio::test]
async fn channel_lists_show_calls_as_a_ucm_does() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let b = bench(&rig).await;
    call(&b.ami, "phone-1001", "1000", "\"Lists\" <1001>", 60).await;
    let pair = b
        .wait_bridged("1001 -> 1000", |i| {
            is(i, "channel1", "PJSIP/1001-") && is(i, "channel2", "PJSIP/1000-")
        })
        .await;
    assert_eq!(pair["callerid1"], "1001", "{pair}");
    assert_eq!(pair["name1"], "Ext 1001", "{pair}");
    assert_eq!(pair["callerid2"], "1000", "{pair}");
    assert_eq!(pair["name2"], "Ext 1000", "{pair}");
    assert_recent(&text(&pair, "bridge_time"));
    // 1099 never answers: both legs are unbridged while it rings.
    call(&b.ami, "phone-1001", "1099", "\"Lists\" <1001>", 60).await;
    let ringing = wait_until(
        "1099 ringing in listUnBridgedChannels",
        Duration::from_secs(10),
        async || {
            let items = b.list("listUnBridgedChannels").await;
            items
                .iter()
                .find(|i| is(i, "channel", "PJSIP/1099-") && i["state"] == "Ringing")
                .cloned()
                .ok_or_else(|| Text(format!("{items:#?}")))
        },
    )
    .await;
    assert_eq!(ringing["callernum"], "1099", "{ringing}");
    assert_eq!(ringing["connectednum"], "1001", "{ringing}");
    assert_eq!(ringing["service"], "normal", "{ringing}");
    assert_recent(&text(&ringing, "alloc_time"));
    let unbridged = b.list("listUnBridgedChannels").await;
    assert!(
        unbridged
            .iter()
            .any(|i| is(i, "channel", "PJSIP/1001-") && i["connectednum"] == "1099"),
        "the caller dialling 1099: {unbridged:#?}"
    );
    assert!(
        !unbridged.iter().any(|i| is(i, "channel", "PJSIP/1000-")),
        "a bridged channel is not unbridged: {unbridged:#?}"
    );
    // Paging and sorting (§2.5).
    let total = unbridged.len();
    let r = b
        .api(
            "listUnBridgedChannels",
            json!({"page": 2, "item_num": 1, "sidx": "channel", "sord": "desc", "options": "channel,state"}),
        )
        .await;
    assert_eq!(r["status"], 0, "{r}");
    let resp = &r["response"];
    assert_eq!(resp["total_item"], total);
    assert_eq!(resp["total_page"], total);
    assert_eq!(resp["page"], 2);
    let mut names: Vec<String> = unbridged.iter().map(|i| text(i, "channel")).collect();
    names.sort();
    names.reverse();
    assert_eq!(
        resp["channel"],
        json!([{"channel": names[1], "state": unbridged.iter().find(|i| i["channel"] == names[1].as_str()).unwrap()["state"]}])
    );
    b.done().await;
}

#[tokio::test]
async fn hangup_ends_the_channel_and_nothing_else() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;
    call(&b.ami, "phone-1001", "1000", "\"Hangup\" <1001>", 60).await;
    let pair = b
        .wait_bridged("1001 -> 1000", |i| is(i, "channel2", "PJSIP/1000-"))
        .await;
    // Not a regular expression, not an unknown channel: -16, the call stays.
    for bad in ["/.*/", "PJSIP/1000-ffffffff", "Local/x@y-00000000;1"] {
        assert_eq!(
            b.status("Hangup", json!({"channel": bad})).await,
            -16,
            "{bad}"
        );
    }
    b.wait_bridged("still up", |i| i["channel2"] == pair["channel2"])
        .await;
    let callee = text(&pair, "channel2");
    b.ok("Hangup", json!({"channel": callee})).await;
    let h = b
        .event("Hangup of the callee", |m| {
            m.event() == Some("Hangup") && m.get("Channel") == Some(callee.as_str())
        })
        .await;
    assert_eq!(ev(&h, "Cause"), "16");
    let caller = text(&pair, "channel1");
    b.event("the caller hangs up too", |m| {
        m.event() == Some("Hangup") && m.get("Channel") == Some(caller.as_str())
    })
    .await;
    // pbxgate reads the hang-up on its own AMI connection: the list follows
    // within moments of the event this test saw, not necessarily before it.
    wait_until(
        "the callee gone from listBridgedChannels",
        Duration::from_secs(5),
        async || {
            let items = b.list("listBridgedChannels").await;
            if items.iter().any(|i| i["channel2"] == callee.as_str()) {
                Err(Text(format!("{items:#?}")))
            } else {
                Ok(())
            }
        },
    )
    .await;
    assert_eq!(b.status("Hangup", json!({"channel": callee})).await, -16);
    b.done().await;
}

#[tokio::test]
async fn dial_extension_rings_the_caller_then_bridges_the_callee() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;
    b.ok("dialExtension", json!({"caller": "1001", "callee": 1000}))
        .await;
    let first = b
        .event("1001 rings", |m| {
            m.event() == Some("Newchannel")
                && m.get("Channel")
                    .is_some_and(|c| c.starts_with("PJSIP/1001-"))
        })
        .await;
    let second = b
        .event("then 1000", |m| {
            m.event() == Some("Newchannel")
                && m.get("Channel")
                    .is_some_and(|c| c.starts_with("PJSIP/1000-"))
        })
        .await;
    let pos = |m: &Arc<Message>| b.log.iter().position(|x| Arc::ptr_eq(x, m)).unwrap();
    assert!(pos(&first) < pos(&second), "1001 must ring before 1000");
    let pair = b
        .wait_bridged("click-to-call 1001 -> 1000", |i| {
            i["channel1"] == ev(&first, "Channel").as_str()
                && i["channel2"] == ev(&second, "Channel").as_str()
        })
        .await;
    assert_eq!(pair["callerid1"], "1001");
    assert_eq!(pair["callerid2"], "1000");
    // What each phone was shown: 1001 sees 1000, 1000 sees 1001 (the
    // simulated phones' incoming legs carry the caller ID they received).
    for (phone, sees) in [("1001", "1000"), ("1000", "1001")] {
        let leg = b
            .event(&format!("phone {phone} rung"), |m| {
                m.event() == Some("Newchannel")
                    && m.get("Channel")
                        .is_some_and(|c| c.starts_with("PJSIP/sim-"))
                    && m.get("Exten") == Some(phone)
            })
            .await;
        assert_eq!(ev(&leg, "CallerIDNum"), sees, "what {phone} was shown");
    }
    // No Local channel in either list.
    for action in ["listBridgedChannels", "listUnBridgedChannels"] {
        let items = b.list(action).await;
        assert!(
            !json!(items).to_string().contains("Local/"),
            "{action}: {items:#?}"
        );
    }
    b.done().await;
}

#[tokio::test]
async fn dial_outbound_goes_out_through_the_trunk_with_the_prefix() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;
    b.ok(
        "dialOutbound",
        json!({"caller": "1001", "outbound": "5550123"}),
    )
    .await;
    let dial = b
        .event("dial to the trunk", |m| {
            m.event() == Some("DialBegin")
                && m.get("DestChannel")
                    .is_some_and(|c| c.starts_with("PJSIP/trunk-"))
        })
        .await;
    assert_eq!(ev(&dial, "DialString"), "5550123@trunk");
    let pair = b
        .wait_bridged("1001 -> trunk", |i| {
            is(i, "channel1", "PJSIP/1001-") && is(i, "channel2", "PJSIP/trunk-")
        })
        .await;
    assert_eq!(pair["callerid2"], "5550123", "{pair}");
    b.done().await;
}

#[tokio::test]
async fn dial_ivr_queue_and_ring_group_reach_their_applications() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;

    b.ok("dialIVR", json!({"caller": "1001", "ivrnumber": "7000"}))
        .await;
    let prompt = b
        .event("the IVR prompt", |m| {
            m.event() == Some("Newexten")
                && m.get("Context") == Some("rig-ivr")
                && m.get("Application") == Some("BackGround")
        })
        .await;
    assert!(ev(&prompt, "Channel").starts_with("Local/1001@from-internal-"));
    hang_up_everything(&b.ami).await;
    b.forget();

    b.ok("dialQueue", json!({"outcaller": "1001", "queue": "6000"}))
        .await;
    let join = b
        .event("the queue", |m| m.event() == Some("QueueCallerJoin"))
        .await;
    assert_eq!(ev(&join, "Queue"), "6000");
    assert_eq!(ev(&join, "CallerIDNum"), "1001");
    // The queue's member (1000) answers: 1001 and 1000 talk.
    b.wait_bridged("queue call", |i| {
        is(i, "channel1", "PJSIP/1001-") && is(i, "channel2", "PJSIP/1000-")
    })
    .await;
    hang_up_everything(&b.ami).await;
    b.forget();

    // `caller` is accepted for `outcaller`.
    b.ok(
        "dialRinggroup",
        json!({"caller": "1000", "ringgroup": "6400"}),
    )
    .await;
    for member in ["PJSIP/1000/", "PJSIP/1001/"] {
        b.event(member, |m| {
            m.event() == Some("DialBegin")
                && m.get("Context") == Some("rig-ringgroup")
                && m.get("DialString")
                    .is_some_and(|d| format!("PJSIP/{d}").starts_with(member))
        })
        .await;
    }
    b.done().await;
}

#[tokio::test]
async fn call_transfer_sends_the_other_party_to_the_extension() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;
    call(&b.ami, "phone-1001", "1000", "\"Xfer\" <1001>", 60).await;
    let pair = b
        .wait_bridged("1001 -> 1000", |i| is(i, "channel2", "PJSIP/1000-"))
        .await;
    let (caller, callee) = (text(&pair, "channel1"), text(&pair, "channel2"));
    // 1000 transfers 1001 to extension 1000 (`exten`, the other spelling).
    b.ok("callTransfer", json!({"channel": callee, "exten": "1000"}))
        .await;
    let t = b
        .event("BlindTransfer", |m| m.event() == Some("BlindTransfer"))
        .await;
    assert_eq!(ev(&t, "Extension"), "1000");
    assert_eq!(ev(&t, "TransfereeChannel"), caller);
    b.event("the transferring party leaves", |m| {
        m.event() == Some("Hangup") && m.get("Channel") == Some(callee.as_str())
    })
    .await;
    let new = b
        .wait_bridged("1001 with a new 1000", |i| {
            i["channel1"] == caller.as_str() && is(i, "channel2", "PJSIP/1000-")
        })
        .await;
    assert_ne!(new["channel2"], callee.as_str());

    // A channel in no call is itself redirected (`extension`).
    call(&b.ami, "phone-1001", "1099", "\"Xfer\" <1001>", 60).await;
    let ringing = b
        .event("1099 rings", |m| {
            m.event() == Some("Newchannel")
                && m.get("Channel")
                    .is_some_and(|c| c.starts_with("PJSIP/1099-"))
        })
        .await;
    let dialling = b
        .event("the caller of 1099", |m| {
            m.event() == Some("DialBegin") && m.get("DestChannel") == ringing.get("Channel")
        })
        .await;
    let from = ev(&dialling, "Channel");
    b.ok(
        "callTransfer",
        json!({"channel": from, "extension": "1000"}),
    )
    .await;
    b.wait_bridged("redirected to 1000", |i| {
        i["channel1"] == from.as_str() && is(i, "channel2", "PJSIP/1000-")
    })
    .await;
    b.done().await;
}

#[tokio::test]
async fn transfer_number_inbound_moves_a_ringing_external_call() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;
    // DID 5550199 -> 1099, which never answers.
    call(
        &b.ami,
        "carrier",
        "5550199",
        "\"Customer\" <+15551234567>",
        60,
    )
    .await;
    let dial = b
        .event("the inbound call rings 1099", |m| {
            m.event() == Some("DialBegin")
                && m.get("DestChannel")
                    .is_some_and(|c| c.starts_with("PJSIP/1099-"))
        })
        .await;
    let trunk = ev(&dial, "Channel");
    assert!(trunk.starts_with("PJSIP/trunk-"), "{trunk}");
    b.ok(
        "transferNumberInbound",
        json!({"channel": trunk, "callee": "1000"}),
    )
    .await;
    let pair = b
        .wait_bridged("the customer with 1000", |i| {
            i["channel1"] == trunk.as_str() && is(i, "channel2", "PJSIP/1000-")
        })
        .await;
    assert_eq!(pair["callerid1"], "+15551234567");
    b.done().await;
}

#[tokio::test]
async fn transfer_number_outbound_moves_the_caller_to_another_number() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let b = bench(&rig).await;
    call(&b.ami, "phone-1001", "95550123", "\"Out\" <1001>", 60).await;
    let pair = b
        .wait_bridged("1001 -> 5550123", |i| i["callerid2"] == "5550123")
        .await;
    let caller = text(&pair, "channel1");
    b.ok(
        "transferNumberOutbound",
        json!({"channel": caller, "outbound": "5550124"}),
    )
    .await;
    b.wait_bridged("1001 -> 5550124", |i| {
        i["channel1"] == caller.as_str() && i["callerid2"] == "5550124"
    })
    .await;
    assert!(
        !b.list("listBridgedChannels")
            .await
            .iter()
            .any(|i| i["callerid2"] == "5550123"),
        "the first number is gone"
    );
    b.done().await;
}

#[tokio::test]
async fn mute_and_hold_keep_the_call_and_play_music_to_the_other_party() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;
    call(&b.ami, "phone-1001", "1000", "\"Hold\" <1001>", 60).await;
    let pair = b
        .wait_bridged("1001 -> 1000", |i| is(i, "channel2", "PJSIP/1000-"))
        .await;
    let (a, other) = (text(&pair, "channel1"), text(&pair, "channel2"));
    let var = |name: &'static str, value: &'static str, chan: String| {
        move |m: &Message| {
            m.event() == Some("VarSet")
                && m.get("Channel") == Some(chan.as_str())
                && m.get("Variable") == Some(name)
                && m.get("Value") == Some(value)
        }
    };

    b.ok("mute", json!({"channel": a})).await;
    b.event("muted", var("PBXGATE_MUTED", "1", a.clone())).await;

    b.ok("hold", json!({"channel": a})).await;
    let snoop = b
        .event("a Snoop channel on the other party", |m| {
            m.event() == Some("Newchannel")
                && m.get("Channel").is_some_and(|c| c.starts_with("Snoop/"))
        })
        .await;
    let moh = b
        .event("music on hold", |m| m.event() == Some("MusicOnHoldStart"))
        .await;
    assert_eq!(ev(&moh, "Channel"), ev(&snoop, "Channel"));
    // Snoop/<uniqueid of the channel it whispers to>-<n>: the other party.
    let other_id = ami_channels(&b.ami)
        .await
        .into_iter()
        .find(|c| c.get("Channel") == Some(other.as_str()))
        .map(|c| ev(&c, "Uniqueid"))
        .unwrap();
    assert!(
        ev(&snoop, "Channel").starts_with(&format!("Snoop/{other_id}-")),
        "{} on {other_id}",
        ev(&snoop, "Channel")
    );
    b.event("held", var("PBXGATE_HELD", "1", a.clone())).await;
    // Holding twice is harmless; the call is still bridged, the Snoop
    // channel is in neither list.
    b.ok("hold", json!({"channel": a})).await;
    b.wait_bridged("still bridged", |i| i["channel2"] == other.as_str())
        .await;
    let unbridged = b.list("listUnBridgedChannels").await;
    assert!(
        !json!(unbridged).to_string().contains("Snoop/"),
        "{unbridged:#?}"
    );

    b.ok("unhold", json!({"channel": a})).await;
    b.event("the music channel ends", |m| {
        m.event() == Some("Hangup") && m.get("Channel") == snoop.get("Channel")
    })
    .await;
    b.event("not held", var("PBXGATE_HELD", "", a.clone()))
        .await;
    b.ok("unmute", json!({"channel": a})).await;
    b.event("unmuted", var("PBXGATE_MUTED", "", a.clone()))
        .await;
    b.ok("unhold", json!({"channel": a})).await;

    // The held party hangs up: the music ends with it.
    b.forget();
    b.ok("hold", json!({"channel": other})).await;
    let snoop = b
        .event("music again", |m| m.event() == Some("MusicOnHoldStart"))
        .await;
    b.ok("Hangup", json!({"channel": other})).await;
    b.event("the music channel ends", |m| {
        m.event() == Some("Hangup") && m.get("Channel") == snoop.get("Channel")
    })
    .await;

    // Only a channel in a two-party call can be held.
    call(&b.ami, "phone-1001", "1099", "\"Hold\" <1001>", 60).await;
    let ringing = b
        .event("1099 rings", |m| {
            m.event() == Some("Newchannel")
                && m.get("Channel")
                    .is_some_and(|c| c.starts_with("PJSIP/1099-"))
        })
        .await;
    let r = b
        .api("hold", json!({"channel": ev(&ringing, "Channel")}))
        .await;
    assert_eq!(r["status"], -24, "{r}");
    assert!(
        r["response"]["error_msg"]
            .as_str()
            .unwrap()
            .contains("two-party")
    );
    b.done().await;
}

#[tokio::test]
async fn callbarge_spies_on_the_channel_from_another_extension() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let mut b = bench(&rig).await;
    call(&b.ami, "phone-1001", "1000", "\"Spied\" <1001>", 60).await;
    let pair = b
        .wait_bridged("1001 -> 1000", |i| is(i, "channel2", "PJSIP/1000-"))
        .await;
    let spied = text(&pair, "channel1");
    for (mode, params) in [
        (
            "B",
            json!({"channel": spied, "exten": "1000", "barge-exten": "1000@0", "mode": "B"}),
        ),
        (
            "W",
            json!({"channel": spied, "barge-exten": "1001@1", "mode": "W"}),
        ),
        ("", json!({"channel": spied, "exten": 1000})),
    ] {
        b.forget();
        b.ok("callbarge", params).await;
        let start = b
            .event("ChanSpyStart", |m| m.event() == Some("ChanSpyStart"))
            .await;
        assert_eq!(ev(&start, "SpyeeChannel"), spied, "mode {mode:?}");
        // The spying leg runs ChanSpy with the mode's options.
        let spy = ev(&start, "SpyerChannel");
        let leg = ami_channels(&b.ami)
            .await
            .into_iter()
            .find(|c| c.get("Channel") == Some(spy.as_str()))
            .expect("the spying channel");
        assert_eq!(ev(&leg, "Application"), "ChanSpy");
        let expected = format!("{spied},qE{}", mode.to_lowercase().replace('b', "B"));
        assert_eq!(ev(&leg, "ApplicationData"), expected);
        // The barging phone's leg is marked as on a UCM.
        let unbridged = b.list("listUnBridgedChannels").await;
        assert!(
            unbridged
                .iter()
                .any(|i| i["connectedname"] == "Call Bargin" && is(i, "channel", "PJSIP/10")),
            "{unbridged:#?}"
        );
        b.ok("Hangup", json!({"channel": spy})).await;
        b.event("the spy leaves", |m| {
            m.event() == Some("ChanSpyStop") && m.get("SpyerChannel") == Some(spy.as_str())
        })
        .await;
    }
    b.done().await;
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_happens() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let b = bench(&rig).await;
    let ch = "PJSIP/1001-00000001";
    let cases: Vec<(&str, Value, i64)> = vec![
        // Missing parameters: -1.
        ("Hangup", json!({}), -1),
        ("dialExtension", json!({"caller": "1001"}), -1),
        ("dialExtension", json!({"callee": "1000"}), -1),
        ("dialOutbound", json!({"caller": "1001"}), -1),
        ("dialIVR", json!({"caller": "1001"}), -1),
        ("dialQueue", json!({"queue": "6000"}), -1),
        ("dialRinggroup", json!({"outcaller": "1001"}), -1),
        ("callTransfer", json!({"channel": ch}), -1),
        ("callTransfer", json!({"extension": "1000"}), -1),
        ("transferNumberInbound", json!({"channel": ch}), -1),
        ("transferNumberOutbound", json!({"outbound": "5550123"}), -1),
        ("mute", json!({}), -1),
        ("unmute", json!({"channel": ""}), -1),
        ("hold", json!({"channel": null}), -1),
        ("unhold", json!({}), -1),
        ("callbarge", json!({"channel": ch}), -1),
        ("callbarge", json!({"exten": "1000"}), -1),
        (
            "dialExtension",
            json!({"caller": {"x": 1}, "callee": "1000"}),
            -1,
        ),
        // Values that could inject dialplan syntax or AMI headers: -15.
        (
            "dialExtension",
            json!({"caller": "1001", "callee": "1000&PJSIP/1099"}),
            -15,
        ),
        (
            "dialExtension",
            json!({"caller": "1001@rig-sim", "callee": "1000"}),
            -15,
        ),
        (
            "dialOutbound",
            json!({"caller": "1001", "outbound": "555,t"}),
            -15,
        ),
        (
            "dialOutbound",
            json!({"caller": "1001", "outbound": "555 0123"}),
            -15,
        ),
        (
            "dialIVR",
            json!({"caller": "1001", "ivrnumber": "${EXTEN}"}),
            -15,
        ),
        (
            "dialQueue",
            json!({"outcaller": "1001\r\nAction: Command", "queue": "6000"}),
            -15,
        ),
        (
            "dialRinggroup",
            json!({"outcaller": "1001", "ringgroup": "6400/n"}),
            -15,
        ),
        (
            "callTransfer",
            json!({"channel": ch, "extension": "1000@rig-sim"}),
            -15,
        ),
        (
            "transferNumberInbound",
            json!({"channel": ch, "callee": "10;00"}),
            -15,
        ),
        (
            "transferNumberOutbound",
            json!({"channel": ch, "outbound": "x"}),
            -15,
        ),
        (
            "Hangup",
            json!({"channel": "PJSIP/1001-1\r\nAction: Command"}),
            -15,
        ),
        ("mute", json!({"channel": "PJSIP/1001 1"}), -15),
        (
            "callbarge",
            json!({"channel": ch, "exten": "1000", "mode": "Q"}),
            -15,
        ),
        (
            "callbarge",
            json!({"channel": ch, "barge-exten": "1000@9"}),
            -15,
        ),
        ("listBridgedChannels", json!({"page": 0}), -15),
        ("listUnBridgedChannels", json!({"item_num": "ten"}), -15),
        // Unknown channels and numbers: -16.
        ("Hangup", json!({"channel": ch}), -16),
        ("mute", json!({"channel": ch}), -16),
        ("unmute", json!({"channel": ch}), -16),
        ("hold", json!({"channel": ch}), -16),
        ("unhold", json!({"channel": ch}), -16),
        (
            "callTransfer",
            json!({"channel": ch, "extension": "1000"}),
            -16,
        ),
        (
            "transferNumberInbound",
            json!({"channel": ch, "callee": "1000"}),
            -16,
        ),
        (
            "transferNumberOutbound",
            json!({"channel": ch, "outbound": "5550123"}),
            -16,
        ),
        ("callbarge", json!({"channel": ch, "exten": "1000"}), -16),
        (
            "dialExtension",
            json!({"caller": "4444", "callee": "1000"}),
            -16,
        ),
        (
            "dialExtension",
            json!({"caller": "1001", "callee": "4444"}),
            -16,
        ),
        (
            "dialOutbound",
            json!({"caller": "1001", "outbound": "*5"}),
            -16,
        ),
        (
            "dialIVR",
            json!({"caller": "1001", "ivrnumber": "7001"}),
            -16,
        ),
        (
            "dialQueue",
            json!({"outcaller": "1001", "queue": "6001"}),
            -16,
        ),
        (
            "dialRinggroup",
            json!({"outcaller": "1001", "ringgroup": "6499"}),
            -16,
        ),
    ];
    for (action, params, expected) in cases {
        let r = b.api(action, params.clone()).await;
        assert_eq!(r["status"], expected, "{action} {params}: {r}");
        if expected == -1 {
            assert_eq!(r["response"]["error_msg"], "Invalid parameters!");
        }
    }
    // Nothing was dialled.
    assert!(
        ami_channels(&b.ami).await.is_empty(),
        "{:#?}",
        ami_channels(&b.ami).await
    );
    // Without a session: -6, whatever the parameters.
    let r = b
        .srv
        .api(
            &b.c,
            json!({"action": "Hangup", "cookie": "sid1-1", "channel": ch}),
        )
        .await;
    assert_eq!(r["status"], -6);
    b.done().await;
}

#[tokio::test]
async fn without_asterisk_channel_actions_say_so() {
    let db = dbs().await.remove(0);
    let c = client(None);
    // No [asterisk] at all, then an AMI nobody answers.
    for asterisk in [
        "",
        "[asterisk]\nami_address = \"127.0.0.1:9\"\nami_secret = \"x\"\n",
    ] {
        let srv = Server::start(&db, &format!("[https_api]\npassword = \"pw\"\n{asterisk}")).await;
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        let ask = |action: &str, params: Value| {
            let mut req = params;
            req["action"] = json!(action);
            req["cookie"] = json!(cookie);
            srv.api(&c, req)
        };
        for (action, params) in [
            ("listBridgedChannels", json!({})),
            ("listUnBridgedChannels", json!({})),
            ("Hangup", json!({"channel": "PJSIP/1001-00000001"})),
            ("dialExtension", json!({"caller": "1001", "callee": "1000"})),
            ("hold", json!({"channel": "PJSIP/1001-00000001"})),
        ] {
            let r = ask(action, params).await;
            assert_eq!(r["status"], -7, "{asterisk:?} {action}: {r}");
            assert!(r["response"]["error_msg"].is_string(), "{r}");
        }
        // Parameters are still checked first.
        assert_eq!(ask("Hangup", json!({})).await["status"], -1);
        srv.stop().await;
    }
}
