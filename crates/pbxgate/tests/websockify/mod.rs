//! End-to-end tests of `/websockify`: the login handshake and its errors, and
//! the notifications of real calls on the rig.

use std::collections::BTreeMap;
use std::time::Duration;

use asterisk::ami::Ami;
use asterisk::testing::rig;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::calls::{CALLS, call, pbx_config, wait_connected};
use crate::kit::*;

mod active;
mod users;

use active::View;

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A websocket client of the UCM protocol.
pub(crate) struct Client {
    ws: WebSocketStream<Tls>,
    next: u32,
    /// Notify frames received while waiting for a response: (eventname, item).
    notes: Vec<(String, Value)>,
}

impl Client {
    pub(crate) async fn connect(srv: &Server) -> Client {
        let tls = raw_tls(srv.port).await;
        let (ws, resp) = tokio_tungstenite::client_async(
            format!("wss://127.0.0.1:{}/websockify", srv.port),
            tls,
        )
        .await
        .unwrap();
        assert_eq!(resp.status(), 101);
        Client {
            ws,
            next: 0,
            notes: Vec::new(),
        }
    }

    /// The next frame as JSON; `None` when the server closed the socket.
    pub(crate) async fn frame(&mut self, limit: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(limit, self.ws.next()).await {
                Err(_) => panic!("no frame within {limit:?}"),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return None,
                Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    fn keep_notify(&mut self, frame: &Value) {
        assert_eq!(frame["type"], "request", "{frame}");
        for n in frame["message"].as_array().unwrap() {
            assert_eq!(n["action"], "notify", "{frame}");
            let name = n["eventname"].as_str().unwrap().to_owned();
            for item in n["eventbody"].as_array().unwrap() {
                self.notes.push((name.clone(), item.clone()));
            }
        }
    }

    /// Sends raw text; the `message` of the next response.
    async fn raw(&mut self, text: &str) -> Value {
        self.ws.send(Message::text(text)).await.unwrap();
        loop {
            let f = self
                .frame(Duration::from_secs(10))
                .await
                .expect("socket closed");
            if f["type"] == "response" {
                return f["message"].clone();
            }
            self.keep_notify(&f);
        }
    }

    /// A request with a fresh transactionid; the response's `message`, whose
    /// transactionid and action must echo the request's.
    async fn request(&mut self, action: &str, fields: Value) -> Value {
        self.next += 1;
        let tid = format!("tx{}", self.next);
        let mut message = json!({"transactionid": tid, "action": action});
        for (k, v) in fields.as_object().unwrap() {
            message[k] = v.clone();
        }
        let r = self
            .raw(&json!({"type":"request","message":message}).to_string())
            .await;
        assert_eq!(r["transactionid"], tid, "{r}");
        assert_eq!(r["action"], action, "{r}");
        r
    }

    async fn challenge(&mut self, user: &str) -> String {
        let r = self
            .request("challenge", json!({"username": user, "version": "1"}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        r["challenge"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn login(&mut self, user: &str, password: &str) -> i64 {
        let ch = self.challenge(user).await;
        let token = md5_hex(&format!("{ch}{password}"));
        let r = self
            .request("login", json!({"username": user, "token": token}))
            .await;
        r["status"].as_i64().unwrap()
    }

    pub(crate) async fn subscribe(&mut self, names: &[&str]) -> i64 {
        let r = self
            .request("subscribe", json!({ "eventnames": names }))
            .await;
        r["status"].as_i64().unwrap()
    }

    /// Reads notifications for at most `limit` (until the first frame).
    async fn pump(&mut self, limit: Duration) {
        match tokio::time::timeout(limit, self.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let f: Value = serde_json::from_str(&t).unwrap();
                self.keep_notify(&f);
            }
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("socket ended: {other:?}"),
        }
    }

    /// Reads notifications until `done` holds for those received, or `limit`.
    async fn notes_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        let until = tokio::time::Instant::now() + limit;
        while !done(&self.notes) {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "notifications incomplete after {limit:?}: {:#?}",
                self.notes
            );
            match tokio::time::timeout(left, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let f: Value = serde_json::from_str(&t).unwrap();
                    self.keep_notify(&f);
                }
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("socket ended: {other:?}"),
                Err(_) => {}
            }
        }
        std::mem::take(&mut self.notes)
    }
}

#[tokio::test]
async fn websockify_handshake_and_its_errors() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n\
             [[https_api.users]]\nusername = \"far\"\npassword = \"pw2\"\npermitted_ips = [\"10.9.9.9\"]\n\
             [login_restriction]\nmax_failures = 20\n",
        )
        .await;
        let mut c = Client::connect(&srv).await;

        // Before login: -5 for the session's actions, -19 for anything else.
        for action in ["subscribe", "unsubscribe", "heartbeat"] {
            let r = c
                .request(action, json!({"eventnames":["ActiveCallStatus"]}))
                .await;
            assert_eq!(r["status"], -5, "{action}: {r}");
        }
        let r = c.request("getSystemStatus", json!({})).await;
        assert_eq!(r["status"], -19, "{r}");

        // Malformed frames: -1, with what can be echoed; the socket stays open.
        for bad in [
            "not json",
            "",
            "[]",
            "{\"type\":\"request\"}",
            "{\"type\":\"request\",\"message\":{\"action\":7}}",
            "{\"type\":\"request\",\"message\":{\"transactionid\":\"t9\"}}",
        ] {
            let r = c.raw(bad).await;
            assert_eq!(r["status"], -1, "{bad:?}: {r}");
        }
        let r = c
            .raw("{\"type\":\"request\",\"message\":{\"transactionid\":\"t9\"}}")
            .await;
        assert_eq!(r["transactionid"], "t9");
        let r = c.request("challenge", json!({})).await;
        assert_eq!(r["status"], -1, "challenge without username: {r}");
        // A name no user can have (the rule of /api): -1.
        for bad in ["x".repeat(65), "a b".into()] {
            let r = c.request("challenge", json!({"username": bad})).await;
            assert_eq!(r["status"], -1, "{r}");
        }
        let r = c
            .request("login", json!({"username":"cdrapi","token":[1]}))
            .await;
        assert_eq!(r["status"], -1, "{r}");

        // challenge: 16 digits.
        let ch = c.challenge("cdrapi").await;
        assert_eq!(ch.len(), 16);
        assert!(ch.bytes().all(|b| b.is_ascii_digit()), "{ch}");
        // A wrong token: -37, and the challenge is used up.
        let r = c
            .request(
                "login",
                json!({"username":"cdrapi","token":md5_hex(&format!("{ch}wrong"))}),
            )
            .await;
        assert_eq!(r["status"], -37, "{r}");
        let r = c
            .request(
                "login",
                json!({"username":"cdrapi","token":md5_hex(&format!("{ch}pw"))}),
            )
            .await;
        assert_eq!(r["status"], -37, "a challenge is single-use: {r}");
        // Unknown user, and a user not permitted from 127.0.0.1.
        assert_eq!(c.login("ghost", "pw").await, -37);
        assert_eq!(c.login("far", "pw2").await, -37);
        // Still not logged in.
        let r = c.request("heartbeat", json!({})).await;
        assert_eq!(r["status"], -5, "{r}");

        // A challenge of another socket is no use here.
        let mut other = Client::connect(&srv).await;
        let ch = other.challenge("cdrapi").await;
        let r = c
            .request(
                "login",
                json!({"username":"cdrapi","token":md5_hex(&format!("{ch}pw"))}),
            )
            .await;
        assert_eq!(r["status"], -37, "{r}");

        // The right password, upper-case token: logged in, no cookie.
        let ch = c.challenge("cdrapi").await;
        let r = c
            .request(
                "login",
                json!({"username":"cdrapi","token":md5_hex(&format!("{ch}pw")).to_ascii_uppercase()}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");
        assert!(r.get("cookie").is_none(), "{r}");

        let r = c.request("heartbeat", json!({})).await;
        assert_eq!(r["status"], 0, "{r}");
        // One unknown name refuses the whole subscribe.
        assert_eq!(c.subscribe(&["ActiveCallStatus", "NoSuchEvent"]).await, -9);
        assert_eq!(
            c.subscribe(&["ActiveCallStatus", "ExtensionStatus", "PbxStatus"])
                .await,
            0
        );
        let r = c
            .request("unsubscribe", json!({"eventnames":["PbxStatus"]}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        let r = c
            .request("unsubscribe", json!({"eventnames":["Nope"]}))
            .await;
        assert_eq!(r["status"], -9, "{r}");
        let r = c.request("subscribe", json!({"eventnames": 5})).await;
        assert_eq!(r["status"], -1, "{r}");
        // /api's actions are not served here, logged in or not.
        for action in ["getSystemStatus", "cdrapi", "login2", "Hangup"] {
            let r = c.request(action, json!({})).await;
            assert_eq!(r["status"], -19, "{action}: {r}");
        }
        // The socket still works after all that.
        let r = c.request("heartbeat", json!({})).await;
        assert_eq!(r["status"], 0, "{r}");

        // A frame over 64 KiB ends that socket, not the server.
        let big = format!(
            "{{\"type\":\"request\",\"message\":{{\"action\":\"heartbeat\",\"x\":\"{}\"}}}}",
            "a".repeat(100_000)
        );
        let _ = other.ws.send(Message::text(big)).await;
        assert!(other.frame(Duration::from_secs(10)).await.is_none());
        let r = c.request("heartbeat", json!({})).await;
        assert_eq!(r["status"], 0, "{r}");

        // A plain GET is not a websocket.
        let resp = client(None)
            .get(srv.url("/websockify"))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());

        let log = srv.stop().await;
        assert!(!log.contains("\"pw\""), "no secret in the log");
        assert!(log.contains("websockify"), "logins are logged: {log}");
    }
}

#[tokio::test]
async fn websockify_closes_idle_sockets_and_applies_the_login_restriction_and_api_switch() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[session]\nwebsocket_idle_secs = 5\n",
        )
        .await;
        let mut busy = Client::connect(&srv).await;
        let mut idle = Client::connect(&srv).await;
        assert_eq!(busy.login("cdrapi", "pw").await, 0);
        assert_eq!(idle.login("cdrapi", "pw").await, 0);
        let started = tokio::time::Instant::now();
        // Heartbeats keep one socket open; the other is closed after 5 s.
        for _ in 0..4 {
            // The client's pacing (the stimulus): a sleep on purpose.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let r = busy.request("heartbeat", json!({})).await;
            assert_eq!(r["status"], 0, "{r}");
        }
        assert!(idle.frame(Duration::from_secs(10)).await.is_none());
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(12),
            "{took:?}"
        );
        srv.stop().await;

        // The login restriction counts failed socket logins like /api's.
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\n[login_restriction]\nmax_failures = 2\n",
        )
        .await;
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("cdrapi", "guess").await, -37);
        assert_eq!(c.login("cdrapi", "guess").await, -37);
        let r = c.request("challenge", json!({"username":"cdrapi"})).await;
        assert_eq!(r["status"], -68, "{r}");
        assert_eq!(srv.login(&client(None), "cdrapi", "pw").await, Err(-68));
        srv.stop().await;

        let srv = Server::start(&db, "[https_api]\nenable = false\npassword = \"pw\"\n").await;
        let mut c = Client::connect(&srv).await;
        let r = c.request("challenge", json!({"username":"cdrapi"})).await;
        assert_eq!(r["status"], -47, "{r}");
        let r = c
            .request("login", json!({"username":"cdrapi","token":md5_hex("x")}))
            .await;
        assert_eq!(r["status"], -47, "{r}");
        srv.stop().await;
    }
}

fn extension_states(notes: &[(String, Value)], ext: &str) -> Vec<String> {
    notes
        .iter()
        .filter(|(n, i)| n == "ExtensionStatus" && i["extension"] == ext)
        .map(|(_, i)| i["status"].as_str().unwrap().to_owned())
        .collect()
}

/// After a bridge ends: each leg is added at most once and deleted last.
fn assert_hangup_tail(tail: &[String]) {
    assert!(!tail.is_empty(), "no leg hung up after the bridge");
    let mut shown = std::collections::BTreeSet::new();
    let mut added = std::collections::BTreeSet::new();
    for s in tail {
        let (head, leg) = s.rsplit_once(' ').unwrap();
        match head {
            "unbridge add" => assert!(added.insert(leg) && shown.insert(leg), "{tail:#?}"),
            "unbridge delete" => assert!(shown.remove(leg), "{tail:#?}"),
            _ => panic!("{s} after the bridge ended: {tail:#?}"),
        }
    }
    assert!(shown.is_empty(), "{tail:#?}");
}

/// The unbridge items of the leg whose channel starts with `prefix`.
fn leg_items<'a>(view: &'a View, prefix: &str) -> Vec<&'a Value> {
    view.items
        .iter()
        .filter(|i| i["chantype"] == "unbridge")
        .filter(|i| i["channel"].as_str().unwrap().starts_with(prefix))
        .collect()
}

fn states(items: &[&Value]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| i["state"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn websockify_reports_internal_and_inbound_calls() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let srv = Server::start(&db, &pbx_config(&rig, "")).await;
        wait_connected(&srv).await;
        let ami = Ami::start(rig.ami_config());
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("cdrapi", "pw").await, 0);
        assert_eq!(
            c.subscribe(&["ActiveCallStatus", "ExtensionStatus"]).await,
            0
        );
        // A second client that wants extension states only.
        let mut ext_only = Client::connect(&srv).await;
        assert_eq!(ext_only.login("cdrapi", "pw").await, 0);
        assert_eq!(ext_only.subscribe(&["ExtensionStatus"]).await, 0);

        // ---- internal: phone 1001 calls 1000, talks 2 s.
        let mut view = View::default();
        call(&ami, "phone-1001", "1000", "\"Alice\" <1001>", 2).await;
        view.until(&mut c, "1001 -> 1000 over", Duration::from_secs(20), |v| {
            v.story_of(&["PJSIP/1001-", "PJSIP/1000-"]).len() >= 8
                && v.unbridged.is_empty()
                && v.bridged.is_empty()
        })
        .await;
        // Ringing legs, the bridge; as it ends, the bridge goes and each leg
        // still hanging up is shown once more (which of the two hangs up
        // first is Asterisk's timing), then deleted.
        let story = view.story_of(&["PJSIP/1001-", "PJSIP/1000-"]);
        assert_eq!(
            story[..6],
            [
                "unbridge add PJSIP/1001",
                "unbridge add PJSIP/1000",
                "bridge add PJSIP/1001+PJSIP/1000",
                "unbridge delete PJSIP/1001",
                "unbridge delete PJSIP/1000",
                "bridge delete PJSIP/1001+PJSIP/1000",
            ],
            "{story:#?}"
        );
        assert_hangup_tail(&story[6..]);
        let caller = leg_items(&view, "PJSIP/1001-");
        let callee = leg_items(&view, "PJSIP/1000-");
        assert_eq!(caller[0]["callernum"], "1001");
        assert_eq!(caller[0]["state"], "Ring");
        assert_eq!(caller[0]["service"], "normal");
        assert_eq!(caller[0]["inbound_trunk_name"], Value::Null);
        // The callee's leg belongs to the caller's call.
        assert_eq!(callee[0]["linkedid"], caller[0]["uniqueid"]);
        assert_eq!(callee[0]["callid"], caller[0]["callid"]);
        assert!(
            states(&callee).contains(&"Ringing".to_owned()),
            "{callee:#?}"
        );
        let bridge = view
            .items
            .iter()
            .find(|i| i["chantype"] == "bridge")
            .unwrap();
        assert_eq!(bridge["callerid1"], "1001", "{bridge}");
        assert_eq!(bridge["name1"], "Ext 1001", "{bridge}");
        assert_eq!(bridge["callerid2"], "1000", "{bridge}");
        assert_eq!(bridge["linkedid"], caller[0]["linkedid"], "{bridge}");
        assert!(
            bridge["bridge_time"].as_str().unwrap() >= caller[0]["alloc_time"].as_str().unwrap(),
            "{bridge}"
        );
        // 1000 rings, is in use, then back to what it was (the rig's phones
        // are not registered: Unavailable, a registered idle phone: Idle).
        let ext_until = tokio::time::Instant::now() + Duration::from_secs(5);
        while extension_states(&c.notes, "1000").len() < 3 {
            assert!(tokio::time::Instant::now() < ext_until, "{:#?}", c.notes);
            c.pump(Duration::from_millis(200)).await;
        }
        let ext = extension_states(&c.notes, "1000");
        assert_eq!(ext[0], "Ringing", "{ext:?}");
        assert!(ext.contains(&"InUse".to_owned()), "{ext:?}");
        assert!(
            ["Idle", "Unavailable"].contains(&ext.last().unwrap().as_str()),
            "{ext:?}"
        );

        // ---- inbound: the carrier calls DID 5550100 (-> 1000) on the trunk.
        let mut view = View::default();
        call(&ami, "carrier", "5550100", "\"Bob\" <+15551234567>", 2).await;
        view.until(
            &mut c,
            "carrier -> 1000 over",
            Duration::from_secs(20),
            |v| {
                v.story_of(&["PJSIP/trunk-", "PJSIP/1000-"])
                    .iter()
                    .any(|s| s.starts_with("bridge delete"))
                    && v.unbridged.is_empty()
            },
        )
        .await;
        let trunk = leg_items(&view, "PJSIP/trunk-");
        // The announcement: the call's first item, state Ring, the trunk named.
        let announced = view
            .items
            .iter()
            .find(|i| {
                let ch = i["channel"].as_str().unwrap_or_default();
                ch.starts_with("PJSIP/trunk-") || ch.starts_with("PJSIP/1000-")
            })
            .unwrap();
        assert_eq!(announced["chantype"], "unbridge", "{announced}");
        assert_eq!(announced["action"], "add", "{announced}");
        assert_eq!(announced["state"], "Ring", "{announced}");
        assert_eq!(announced["inbound_trunk_name"], "trunk", "{announced}");
        assert_eq!(announced["callernum"], "+15551234567", "{announced}");
        assert_eq!(announced["callername"], "Bob", "{announced}");
        assert_eq!(announced["outbound_trunk_name"], Value::Null);
        // Every item of the leg keeps the trunk.
        for i in trunk.iter().filter(|i| i["action"] != "delete") {
            assert_eq!(i["inbound_trunk_name"], "trunk", "{i}");
        }
        let callee = leg_items(&view, "PJSIP/1000-");
        assert_eq!(callee[0]["linkedid"], trunk[0]["uniqueid"]);
        let bridge = view
            .items
            .iter()
            .find(|i| i["chantype"] == "bridge")
            .unwrap();
        assert_eq!(bridge["inbound_trunk_name"], "trunk", "{bridge}");
        assert_eq!(bridge["callerid1"], "+15551234567", "{bridge}");

        // The other client got ExtensionStatus only.
        let only = ext_only
            .notes_until(Duration::from_secs(5), |n| {
                extension_states(n, "1000").len() >= 6
            })
            .await;
        assert!(
            only.iter().all(|(n, _)| n == "ExtensionStatus"),
            "{only:#?}"
        );

        ami.shutdown();
        srv.stop().await;
    }
}

/// The announcement of a held inbound call reaches the client right after
/// Asterisk starts the Stasis application: measured from the `Timestamp` of
/// AMI's `Newexten` for `Stasis()` (Asterisk's clock, just before ARI's
/// StasisStart) to the arrival of the `ActiveCallStatus` item naming the
/// trunk (this machine's clock, the same one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockify_announces_held_inbound_calls_at_once() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let srv = Server::start(&db, &pbx_config(&rig, "")).await;
        wait_connected(&srv).await;
        let ami = Ami::start(rig.ami_config());
        let mut c = Client::connect(&srv).await;
        assert_eq!(c.login("cdrapi", "pw").await, 0);
        // Subscribed once answered: the server adds the subscription
        // before it answers.
        assert_eq!(c.subscribe(&["ActiveCallStatus"]).await, 0);

        // When Asterisk says each channel entered Stasis().
        let mut events = ami.subscribe();
        let stasis = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let seen = stasis.clone();
        let watcher = tokio::spawn(async move {
            while let Ok(m) = events.recv().await {
                if m.event() == Some("Newexten") && m.get("Application") == Some("Stasis") {
                    let uid = m.get("Uniqueid").unwrap_or("").to_owned();
                    let at: f64 = m.get("Timestamp").unwrap().parse().unwrap();
                    seen.lock().unwrap().entry(uid).or_insert(at);
                }
            }
        });
        // When each announcement arrived, read as soon as it comes.
        const CALLS_PLACED: usize = 20;
        let reader = tokio::spawn(async move {
            let mut announced: BTreeMap<String, f64> = BTreeMap::new();
            while announced.len() < CALLS_PLACED {
                let Some(Ok(Message::Text(t))) = c.ws.next().await else {
                    break;
                };
                let at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs_f64();
                let f: Value = serde_json::from_str(&t).unwrap();
                for n in f["message"].as_array().unwrap() {
                    for item in n["eventbody"].as_array().unwrap() {
                        if item["chantype"] == "unbridge" && item["inbound_trunk_name"] == "trunk" {
                            let uid = item["uniqueid"].as_str().unwrap().to_owned();
                            announced.entry(uid).or_insert(at);
                        }
                    }
                }
            }
            (announced, c)
        });
        wait_watch(
            "the test's AMI connection to come up",
            Duration::from_secs(10),
            &mut ami.state(),
            |s| s.is_up(),
        )
        .await;
        for wave in 0..4 {
            for i in 0..CALLS_PLACED / 4 {
                call(
                    &ami,
                    "carrier",
                    "5550100",
                    &format!("\"Wave {wave}\" <+1555000{i}>"),
                    1,
                )
                .await;
            }
            // Let the wave's calls end before the next: all entered
            // Stasis, and no channel is left.
            let placed = (wave + 1) * (CALLS_PLACED / 4);
            wait_until(
                format!("the {placed} calls of waves 0..={wave} to end"),
                Duration::from_secs(30),
                async || {
                    let entered = stasis.lock().unwrap().len();
                    let r = ami.action("CoreShowChannels", &[]).await.unwrap();
                    let ours = |v: Option<&str>| v.is_some_and(|n| n.starts_with("+1555000"));
                    let left = r
                        .events
                        .iter()
                        .filter(|e| {
                            e.event() == Some("CoreShowChannel")
                                && (ours(e.get("CallerIDNum")) || ours(e.get("ConnectedLineNum")))
                        })
                        .count();
                    if entered >= placed && left == 0 {
                        Ok(())
                    } else {
                        Err(format!(
                            "{entered} entered Stasis, {left} of their channels left"
                        ))
                    }
                },
            )
            .await;
        }
        let (announced, _client) = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .expect("every call announced")
            .unwrap();
        watcher.abort();
        assert_eq!(announced.len(), CALLS_PLACED);
        let stasis = stasis.lock().unwrap().clone();
        let mut ms: Vec<f64> = announced
            .iter()
            .map(|(uid, at)| {
                let entered = stasis
                    .get(uid)
                    .unwrap_or_else(|| panic!("no Stasis() seen for {uid}"));
                ((at - entered) * 1000.0).max(0.0)
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let p50 = ms[ms.len() / 2];
        let max = ms[ms.len() - 1];
        eprintln!(
            "Stasis() -> announcement over {} calls: p50 {p50:.2} ms, max {max:.2} ms",
            ms.len()
        );
        // What a client relies on: every held call is announced long before
        // its timer (3 s here) can matter. The latency target (20 ms at p99)
        // is measured by the callcontrol bench, not here: this is a debug
        // build on a shared machine, with Asterisk's own part included.
        assert!(max < 1000.0, "slowest announcement {max:.2} ms: {ms:?}");

        ami.shutdown();
        srv.stop().await;
    }
}
