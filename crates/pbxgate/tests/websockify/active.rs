//! `ActiveCallStatus` as a client fixed against real UCM6202 frames reads
//! it: it dispatches on `chantype` (`unbridge` / `bridge`, anything else is
//! ignored) and keeps the legs and bridges the items describe. On the rig: a
//! held inbound call accepted, answered, transferred and hung up, the lists
//! agreeing with the events at each step.

use std::collections::BTreeMap;
use std::time::Duration;

use asterisk::testing::{Rig, rig};
use futures_util::SinkExt;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::Client;
use crate::callcontrol::inbound;
use crate::calls::{CALLS, connected_ami, pbx_config, wait_connected};
use crate::channels::hang_up_everything;
use crate::kit::*;

/// The keys of an `unbridge` add/update (the listUnBridgedChannels item,
/// with chantype and action).
const UNBRIDGE_KEYS: &[&str] = &[
    "action",
    "alloc_time",
    "callername",
    "callernum",
    "callid",
    "channel",
    "chantype",
    "connectedname",
    "connectednum",
    "feature_calleenum",
    "inbound_trunk_name",
    "linkedid",
    "outbound_trunk_name",
    "service",
    "state",
    "uniqueid",
];

/// The keys of a `bridge` add/update (the listBridgedChannels item, with
/// chantype and action).
const BRIDGE_KEYS: &[&str] = &[
    "action",
    "bridge_time",
    "callerid1",
    "callerid2",
    "channel1",
    "channel2",
    "chantype",
    "inbound_trunk_name",
    "linkedid",
    "name1",
    "name2",
    "outbound_trunk_name",
];

fn keys(item: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_owned()
}

/// What the client knows: the legs and bridges shown, keyed as the UCM's
/// delete items name them, and the story of what it was told.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) unbridged: BTreeMap<String, Value>,
    pub(crate) bridged: BTreeMap<(String, String), Value>,
    /// "unbridge add PJSIP/trunk-0000001a", "bridge delete A+B", …
    pub(crate) story: Vec<String>,
    /// Every unbridge/bridge item, in order.
    pub(crate) items: Vec<Value>,
}

impl View {
    /// Applies one `ActiveCallStatus` item; a protocol slip (an add of what
    /// is shown, an update or delete of what is not, missing or extra keys)
    /// fails the test.
    pub(crate) fn apply(&mut self, item: &Value) {
        let action = text(item, "action");
        let chantype = text(item, "chantype");
        match chantype.as_str() {
            "unbridge" => {
                let channel = text(item, "channel");
                let shown = self.unbridged.contains_key(&channel);
                match action.as_str() {
                    "delete" => {
                        assert_eq!(keys(item), ["action", "channel", "chantype"], "{item}");
                        assert!(shown, "delete of a leg not shown: {item}");
                        self.unbridged.remove(&channel);
                    }
                    "add" | "update" => {
                        assert_eq!(keys(item), UNBRIDGE_KEYS, "{item}");
                        assert_eq!(shown, action == "update", "{item}");
                        let t = text(item, "alloc_time");
                        assert_eq!(t.len(), "2026-01-01 00:00:00".len(), "{item}");
                        self.unbridged.insert(channel.clone(), item.clone());
                    }
                    other => panic!("action {other:?}: {item}"),
                }
                self.story.push(format!("unbridge {action} {channel}"));
            }
            "bridge" => {
                let pair = if action == "delete" {
                    assert_eq!(
                        keys(item),
                        ["action", "channel", "channel2", "chantype"],
                        "{item}"
                    );
                    (text(item, "channel"), text(item, "channel2"))
                } else {
                    assert_eq!(keys(item), BRIDGE_KEYS, "{item}");
                    (text(item, "channel1"), text(item, "channel2"))
                };
                let shown = self.bridged.contains_key(&pair);
                match action.as_str() {
                    "delete" => {
                        assert!(shown, "delete of a bridge not shown: {item}");
                        self.bridged.remove(&pair);
                    }
                    "add" | "update" => {
                        assert_eq!(shown, action == "update", "{item}");
                        self.bridged.insert(pair.clone(), item.clone());
                    }
                    other => panic!("action {other:?}: {item}"),
                }
                self.story
                    .push(format!("bridge {action} {}+{}", pair.0, pair.1));
            }
            // What that client ignores; pbxgate sends nothing else.
            other => panic!("chantype {other:?}: {item}"),
        }
        self.items.push(item.clone());
    }

    /// Takes the client's `ActiveCallStatus` notifications received so far.
    pub(crate) fn take(&mut self, c: &mut Client) {
        let notes = std::mem::take(&mut c.notes);
        for (name, item) in notes {
            if name == "ActiveCallStatus" {
                self.apply(&item);
            } else {
                c.notes.push((name, item));
            }
        }
    }

    /// Reads notifications until `done` holds for the view, or fails.
    pub(crate) async fn until(
        &mut self,
        c: &mut Client,
        what: &str,
        limit: Duration,
        done: impl Fn(&View) -> bool,
    ) {
        let until = tokio::time::Instant::now() + limit;
        loop {
            self.take(c);
            if done(self) {
                return;
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "{what}: not seen within {limit:?}; story: {:#?}\nshown: {:#?} {:#?}",
                self.story,
                self.unbridged,
                self.bridged
            );
            c.pump(left.min(Duration::from_millis(200))).await;
        }
    }

    /// The story of the legs whose channels start with one of `prefixes`
    /// (channel numbers cut off), updates left out.
    pub(crate) fn story_of(&self, prefixes: &[&str]) -> Vec<String> {
        let short = |ch: &str| -> Option<String> {
            prefixes
                .iter()
                .find(|p| ch.starts_with(*p))
                .map(|p| p.trim_end_matches('-').to_owned())
        };
        self.story
            .iter()
            .filter(|s| !s.contains(" update "))
            .filter_map(|s| {
                let (head, chans) = s.rsplit_once(' ').unwrap();
                let named: Option<Vec<String>> = chans.split('+').map(short).collect();
                named.map(|n| format!("{head} {}", n.join("+")))
            })
            .collect()
    }
}

fn strip(item: &Value) -> Map<String, Value> {
    let mut m = item.as_object().unwrap().clone();
    m.remove("chantype");
    m.remove("action");
    m
}

/// The two lists and the view agree: the same legs and bridges, field for
/// field. Notifications still on their way are read while polling (the
/// lists may be a moment ahead of the socket, never behind it for long).
async fn lists_agree(srv: &Server, cookie: &str, view: &mut View, c: &mut Client, step: &str) {
    let http = client(None);
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut lists = Vec::new();
        for action in ["listUnBridgedChannels", "listBridgedChannels"] {
            let r = srv
                .api(
                    &http,
                    json!({"action": action, "cookie": cookie, "item_num": 1000, "page": 1}),
                )
                .await;
            assert_eq!(r["status"], 0, "{action}: {r}");
            lists.push(r["response"]["channel"].as_array().unwrap().clone());
        }
        view.take(c);
        let unbridged: BTreeMap<String, Map<String, Value>> = lists[0]
            .iter()
            .map(|i| (text(i, "channel"), i.as_object().unwrap().clone()))
            .collect();
        let bridged: BTreeMap<(String, String), Map<String, Value>> = lists[1]
            .iter()
            .map(|i| {
                (
                    (text(i, "channel1"), text(i, "channel2")),
                    i.as_object().unwrap().clone(),
                )
            })
            .collect();
        let shown_u: BTreeMap<String, Map<String, Value>> = view
            .unbridged
            .iter()
            .map(|(k, v)| (k.clone(), strip(v)))
            .collect();
        let shown_b: BTreeMap<(String, String), Map<String, Value>> = view
            .bridged
            .iter()
            .map(|(k, v)| (k.clone(), strip(v)))
            .collect();
        if unbridged == shown_u && bridged == shown_b {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{step}: the lists disagree with the events\nlistUnBridgedChannels {unbridged:#?}\n\
             events {shown_u:#?}\nlistBridgedChannels {bridged:#?}\nevents {shown_b:#?}"
        );
        c.pump(Duration::from_millis(200)).await;
    }
}

fn config(rig: &Rig) -> String {
    pbx_config(rig, "").replace(
        "[https_api]\npassword = \"pw\"\n",
        "[https_api]\nusername = \"crm\"\npassword = \"pw\"\ncall_control = true\n\
         [call_control]\ntimeout_secs = 10\n[pbx]\ntimezone = \"Europe/Berlin\"\n",
    )
}

/// The legs of the call under test; the rig's simulators (the carrier's
/// side of the trunk, the phones' side) are channels of the same Asterisk
/// and are shown too, but are not the PBX's call.
const LEGS: [&str; 3] = ["PJSIP/trunk-", "PJSIP/1000-", "PJSIP/1001-"];

fn ours(ch: &str) -> bool {
    LEGS.iter().any(|p| ch.starts_with(p))
}

fn our_legs(view: &View) -> Vec<&String> {
    view.unbridged.keys().filter(|k| ours(k)).collect()
}

fn our_items(view: &View) -> Vec<&Value> {
    view.items
        .iter()
        .filter(|i| ours(&text(i, "channel")) || ours(&text(i, "channel1")))
        .collect()
}

fn leg<'a>(view: &'a View, prefix: &str) -> Option<(&'a String, &'a Value)> {
    view.unbridged.iter().find(|(k, _)| k.starts_with(prefix))
}

fn bridge_of<'a>(view: &'a View, a: &str, b: &str) -> Option<&'a Value> {
    view.bridged
        .iter()
        .find(|((x, y), _)| x.starts_with(a) && y.starts_with(b))
        .map(|(_, v)| v)
}

#[tokio::test]
async fn a_ucm_client_follows_a_held_call_answered_transferred_and_hung_up() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        // No call left over from other tests: a client learns of calls as
        // they change (there is no snapshot on subscribe).
        hang_up_everything(&ami).await;
        let srv = Server::start(&db, &config(&rig)).await;
        wait_connected(&srv).await;
        let cookie = srv.login(&client(None), "crm", "pw").await.unwrap();
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("crm", "pw").await, 0);
        assert_eq!(c.subscribe(&["ActiveCallStatus"]).await, 0);
        let mut view = View::default();
        // Nothing is shown before the call (and the lists say the same).
        lists_agree(&srv, &cookie, &mut view, &mut c, "before the call").await;
        assert!(our_legs(&view).is_empty() && view.bridged.is_empty());

        // ---- the carrier calls DID 5550100 (-> 1000); pbxgate holds it.
        inbound(&ami, "5550100", "+15557100001", 20_000, 120).await;
        view.until(&mut c, "the announcement", Duration::from_secs(15), |v| {
            leg(v, "PJSIP/trunk-").is_some()
        })
        .await;
        // The call's first item: the trunk leg ringing, its trunk named.
        let first = our_items(&view)[0];
        assert_eq!(first["chantype"], "unbridge", "{first}");
        assert_eq!(first["action"], "add", "{first}");
        assert_eq!(first["state"], "Ring", "{first}");
        assert_eq!(first["inbound_trunk_name"], "trunk", "{first}");
        assert_eq!(first["callernum"], "+15557100001", "{first}");
        assert_eq!(first["outbound_trunk_name"], Value::Null, "{first}");
        let trunk = text(first, "channel");
        assert!(trunk.starts_with("PJSIP/trunk-"), "{first}");
        lists_agree(&srv, &cookie, &mut view, &mut c, "held").await;
        // Held: nothing else rings until the decision.
        assert_eq!(our_legs(&view), [&trunk], "{:#?}", view.unbridged);

        // ---- accepted: the call goes on to 1000, which rings and answers.
        let r = srv
            .api(
                &client(None),
                json!({"action": "acceptCall", "cookie": cookie, "channel": trunk}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");
        view.until(
            &mut c,
            "trunk and 1000 bridged",
            Duration::from_secs(15),
            |v| bridge_of(v, "PJSIP/trunk-", "PJSIP/1000-").is_some(),
        )
        .await;
        let ringing: Vec<&Value> = view
            .items
            .iter()
            .filter(|i| text(i, "channel").starts_with("PJSIP/1000-"))
            .collect();
        assert!(
            ringing.iter().any(|i| i["state"] == "Ringing"),
            "1000 rang before it answered: {ringing:#?}"
        );
        // On the extension's leg of an inbound call: callernum = the ringing
        // extension, connectednum = the external caller.
        let rang = ringing.iter().find(|i| i["state"] == "Ringing").unwrap();
        assert_eq!(rang["callernum"], "1000", "{rang}");
        assert_eq!(rang["connectednum"], "+15557100001", "{rang}");
        let first_bridge = bridge_of(&view, "PJSIP/trunk-", "PJSIP/1000-")
            .unwrap()
            .clone();
        assert_eq!(first_bridge["channel1"], trunk.as_str(), "{first_bridge}");
        assert_eq!(first_bridge["callerid1"], "+15557100001", "{first_bridge}");
        assert_eq!(first_bridge["callerid2"], "1000", "{first_bridge}");
        assert_eq!(
            first_bridge["inbound_trunk_name"], "trunk",
            "{first_bridge}"
        );
        // Connected: neither leg is unbridged any more.
        assert!(our_legs(&view).is_empty(), "{:#?}", view.unbridged);
        lists_agree(&srv, &cookie, &mut view, &mut c, "answered").await;

        // ---- 1000 transfers the caller to 1001 (a blind transfer), after a
        // second, so that the new bridge's time is a later one (times have
        // whole seconds: real time must pass, a sleep on purpose).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let callee = text(&first_bridge, "channel2");
        let r = srv
            .api(
                &client(None),
                json!({"action": "callTransfer", "cookie": cookie, "channel": callee, "extension": "1001"}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");
        view.until(
            &mut c,
            "trunk and 1001 bridged",
            Duration::from_secs(15),
            |v| {
                bridge_of(v, "PJSIP/trunk-", "PJSIP/1001-").is_some()
                    && leg(v, "PJSIP/1000-").is_none()
            },
        )
        .await;
        assert!(
            bridge_of(&view, "PJSIP/trunk-", "PJSIP/1000-").is_none(),
            "{:#?}",
            view.bridged
        );
        let second = bridge_of(&view, "PJSIP/trunk-", "PJSIP/1001-")
            .unwrap()
            .clone();
        assert_eq!(second["channel1"], trunk.as_str(), "{second}");
        assert_eq!(second["callerid1"], "+15557100001", "{second}");
        assert_eq!(second["callerid2"], "1001", "{second}");
        assert_eq!(second["inbound_trunk_name"], "trunk", "{second}");
        lists_agree(&srv, &cookie, &mut view, &mut c, "transferred").await;

        // ---- the caller hangs up.
        let r = ami
            .action("Hangup", &[("Channel", trunk.as_str())])
            .await
            .unwrap();
        assert!(r.is_success(), "{:?}", r.response);
        view.until(&mut c, "every leg gone", Duration::from_secs(15), |v| {
            our_legs(v).is_empty() && v.bridged.is_empty()
        })
        .await;
        lists_agree(&srv, &cookie, &mut view, &mut c, "hung up").await;

        // bridge_time: when each bridge connected, never going back; the
        // transfer's bridge a later one.
        let times: Vec<String> = view
            .items
            .iter()
            .filter(|i| i["chantype"] == "bridge" && i["action"] != "delete")
            .map(|i| text(i, "bridge_time"))
            .collect();
        assert!(times.len() >= 2, "{times:?}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert!(times.first() < times.last(), "{times:?}");
        assert_eq!(times[0], text(&first_bridge, "bridge_time"));

        // In order: the announcement, the ringing leg, the bridge, the
        // transfer's legs and bridge, the deletes.
        let story = view.story_of(&LEGS);
        eprintln!("{story:#?}");
        let at = |s: &str| {
            story
                .iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s} not in {story:#?}"))
        };
        let steps = [
            at("unbridge add PJSIP/trunk"),
            at("unbridge add PJSIP/1000"),
            at("bridge add PJSIP/trunk+PJSIP/1000"),
            at("bridge delete PJSIP/trunk+PJSIP/1000"),
            at("unbridge add PJSIP/1001"),
            at("bridge add PJSIP/trunk+PJSIP/1001"),
            at("bridge delete PJSIP/trunk+PJSIP/1001"),
        ];
        assert!(steps.windows(2).all(|w| w[0] < w[1]), "{story:#?}");
        assert_eq!(story[0], "unbridge add PJSIP/trunk", "{story:#?}");
        assert!(
            story.last().unwrap().starts_with("unbridge delete"),
            "{story:#?}"
        );

        let _ = ami.action("Hangup", &[("Channel", "/.*/")]).await;
        c.ws.send(Message::Close(None)).await.ok();
        ami.shutdown();
        srv.stop().await;
    }
}

/// An inbound call to ring group 6400 (1000 and 1001 at once; the rig's
/// phones answer after a second, the first answer wins): both members ring
/// as unbridged legs, one is bridged with the trunk, the other deleted.
#[tokio::test]
async fn a_ucm_client_follows_an_inbound_call_to_a_ring_group() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        hang_up_everything(&ami).await;
        let srv = Server::start(&db, &pbx_config(&rig, "")).await;
        wait_connected(&srv).await;
        let cookie = srv.login(&client(None), "cdrapi", "pw").await.unwrap();
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("cdrapi", "pw").await, 0);
        assert_eq!(c.subscribe(&["ActiveCallStatus"]).await, 0);
        let mut view = View::default();

        inbound(&ami, "5556400", "+15557100002", 20_000, 120).await;
        view.until(&mut c, "a member bridged", Duration::from_secs(15), |v| {
            v.bridged.keys().any(|(a, _)| a.starts_with("PJSIP/trunk-"))
                && !our_legs(v).iter().any(|l| l.starts_with("PJSIP/10"))
        })
        .await;
        lists_agree(&srv, &cookie, &mut view, &mut c, "answered").await;
        let (trunk, winner) = view
            .bridged
            .keys()
            .find(|(a, _)| a.starts_with("PJSIP/trunk-"))
            .cloned()
            .unwrap();
        let first = our_items(&view)[0];
        assert_eq!(first["chantype"], "unbridge", "{first}");
        assert_eq!(first["action"], "add", "{first}");
        assert_eq!(first["channel"], trunk.as_str(), "{first}");
        assert_eq!(first["state"], "Ring", "{first}");
        assert_eq!(first["inbound_trunk_name"], "trunk", "{first}");
        // Both members rang, each its own unbridged leg of the call.
        for member in ["PJSIP/1000-", "PJSIP/1001-"] {
            let rang = view.items.iter().find(|i| {
                i["chantype"] == "unbridge"
                    && text(i, "channel").starts_with(member)
                    && i["state"] == "Ringing"
            });
            let rang = rang.unwrap_or_else(|| panic!("{member} never rang: {:#?}", view.story));
            assert_eq!(rang["connectednum"], "+15557100002", "{rang}");
            assert_eq!(rang["linkedid"], first["linkedid"], "{rang}");
        }
        let bridge = &view.bridged[&(trunk.clone(), winner.clone())];
        assert_eq!(bridge["inbound_trunk_name"], "trunk", "{bridge}");
        assert_eq!(bridge["callerid1"], "+15557100002", "{bridge}");

        let r = ami
            .action("Hangup", &[("Channel", trunk.as_str())])
            .await
            .unwrap();
        assert!(r.is_success(), "{:?}", r.response);
        view.until(&mut c, "every leg gone", Duration::from_secs(15), |v| {
            our_legs(v).is_empty() && v.bridged.is_empty()
        })
        .await;
        lists_agree(&srv, &cookie, &mut view, &mut c, "hung up").await;

        let story = view.story_of(&LEGS);
        eprintln!("{story:#?}");
        let winner = if winner.starts_with("PJSIP/1000-") {
            "PJSIP/1000"
        } else {
            "PJSIP/1001"
        };
        let loser = if winner == "PJSIP/1000" {
            "PJSIP/1001"
        } else {
            "PJSIP/1000"
        };
        let at = |s: &str| {
            story
                .iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s} not in {story:#?}"))
        };
        assert_eq!(story[0], "unbridge add PJSIP/trunk", "{story:#?}");
        let bridged = at(&format!("bridge add PJSIP/trunk+{winner}"));
        assert!(
            at(&format!("unbridge add {winner}")) < bridged,
            "{story:#?}"
        );
        assert!(at(&format!("unbridge add {loser}")) < bridged, "{story:#?}");
        assert!(
            at(&format!("bridge delete PJSIP/trunk+{winner}")) > bridged,
            "{story:#?}"
        );
        // The member that lost is never bridged.
        assert!(
            !story
                .iter()
                .any(|s| s.starts_with("bridge") && s.contains(loser)),
            "{story:#?}"
        );

        ami.shutdown();
        srv.stop().await;
    }
}
