//! End-to-end tests of `pms` (on the rig): PMS commands through
//! `action:"pmsapi"` on `/api` (the real binary) and through `old_api` (an
//! in-process pbxgate on the same database: the old listener is another
//! module's), their effect on real calls (CDRs), on AstDB, on the lamp and
//! the mailbox, and wake-up calls.
//!
//! Every test holds `CALLS`: rooms change how the rig's phones call, so no
//! other call test may run meanwhile; the rooms are removed from AstDB before
//! and after each test (also when it fails).

use std::sync::Arc;
use std::time::Duration;

use asterisk::ami::{Ami, Message};
use asterisk::testing::{Rig, rig};
use serde_json::{Value, json};
use store::testing::TestDb;
use store::{CdrStore, ConnectOptions, PmsStore, Store};
use ucm::cdr::CdrRecord;

use crate::calls::{CALLS, call, pbx_config, wait_connected};
use crate::kit::*;

const PMS_USER: &str = "frontdesk";
const PMS_PASSWORD: &str = "pms-secret";

/// Removes every room from the rig's AstDB, synchronously (usable in Drop).
fn clear_rooms(rig: &Rig) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(rig.ami_address()) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let _ = write!(
        s,
        "Action: Login\r\nUsername: {}\r\nSecret: {}\r\n\r\n\
         Action: DBDelTree\r\nFamily: pbxgate-room\r\n\r\nAction: Logoff\r\n\r\n",
        rig.get("AMI_USER"),
        rig.get("AMI_SECRET")
    );
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

struct CleanRooms(Rig);

impl Drop for CleanRooms {
    fn drop(&mut self) {
        clear_rooms(&self.0);
    }
}

fn pms_config(rig: &Rig, extra: &str) -> String {
    format!(
        "{}[pms]\nusername = \"{PMS_USER}\"\npassword = \"{PMS_PASSWORD}\"\n{extra}",
        pbx_config(rig, "")
    )
}

/// pbxgate on the rig, logged in; a test AMI connection.
struct Hotel {
    srv: Server,
    db: TestDb,
    c: reqwest::Client,
    cookie: String,
    ami: Ami,
    store: Store,
}

async fn hotel(rig: &Rig, db: TestDb, extra: &str) -> Hotel {
    let srv = Server::start(&db, &pms_config(rig, extra)).await;
    wait_connected(&srv).await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let store = Store::connect(&srv.db_url, &ConnectOptions::default())
        .await
        .unwrap();
    Hotel {
        srv,
        db,
        c,
        cookie,
        ami: crate::calls::connected_ami(rig).await,
        store,
    }
}

fn first_db(dbs: Vec<TestDb>) -> TestDb {
    dbs.into_iter().next().unwrap()
}

impl Hotel {
    /// A command through `/api`, JSON answer (the UCM envelope).
    async fn pms(&self, data: &str) -> Value {
        self.srv
            .api(
                &self.c,
                json!({"action":"pmsapi","cookie":self.cookie,"format":"json","data":data}),
            )
            .await
    }

    /// A command that must succeed; the command's object.
    async fn ok(&self, data: &str) -> Value {
        let r = self.pms(data).await;
        assert_eq!(r["status"], 0, "{data}: {r}\n{}", self.srv.log_text());
        let inner = &r["response"]["pms_data_response"];
        let (_, v) = inner.as_object().unwrap().iter().next().unwrap();
        assert_eq!(v["status"], 0, "{r}");
        v.clone()
    }

    async fn db_get(&self, family: &str, key: &str) -> Option<String> {
        let r = self
            .ami
            .action("DBGet", &[("Family", family), ("Key", key)])
            .await
            .unwrap();
        if !r.is_success() {
            return None;
        }
        r.events
            .iter()
            .find(|e| e.event() == Some("DBGetResponse"))
            .and_then(|e| e.get("Val"))
            .map(str::to_owned)
    }

    /// Every `pbxgate-room` key in AstDB, sorted.
    async fn room_keys(&self) -> Vec<(String, String)> {
        let r = self
            .ami
            .action("DBGetTree", &[("Family", "pbxgate-room")])
            .await
            .unwrap();
        let mut keys: Vec<(String, String)> = r
            .events
            .iter()
            .filter(|e| e.event() == Some("DBGetTreeResponse"))
            .map(|e| {
                (
                    e.get("Key").unwrap_or("").to_owned(),
                    e.get("Val").unwrap_or("").to_owned(),
                )
            })
            .collect();
        keys.sort();
        keys
    }

    /// The newest CDR's AcctId (0: none yet).
    async fn mark(&self) -> i64 {
        self.store
            .recent_cdrs(1)
            .await
            .unwrap()
            .first()
            .map_or(0, acct_id)
    }

    /// Waits for the CDR `pick` accepts.
    async fn cdr(&self, what: &str, pick: impl Fn(&CdrRecord) -> bool) -> CdrRecord {
        self.cdr_after(0, what, pick).await
    }

    /// Waits for a CDR newer than `mark` that `pick` accepts.
    async fn cdr_after(
        &self,
        mark: i64,
        what: &str,
        pick: impl Fn(&CdrRecord) -> bool,
    ) -> CdrRecord {
        wait_until(
            format!("a CDR for {what}"),
            Duration::from_secs(30),
            async || {
                let all = self.store.recent_cdrs(1000).await.unwrap();
                if let Some(r) = all.iter().find(|r| acct_id(r) > mark && pick(r)) {
                    return Ok(r.clone());
                }
                let have: Vec<String> = all.iter().take(50).map(describe).collect();
                Err(Text(format!("have:\n{have:#?}")))
            },
        )
        .await
    }

    async fn close(self) {
        self.ami.shutdown();
        self.store.close().await;
        self.srv.stop().await;
        drop(self.db);
    }
}

fn acct_id(r: &CdrRecord) -> i64 {
    r.get("AcctId").parse().unwrap_or(0)
}

fn describe(r: &CdrRecord) -> String {
    format!(
        "{} -> {} {} lastapp={} dstchannel={} clid={} uniqueid={}",
        r.get("src"),
        r.get("dst"),
        r.get("disposition"),
        r.get("lastapp"),
        r.get("dstchannel"),
        r.get("clid"),
        r.get("uniqueid")
    )
}

fn checkin(address: &str, extra: &str) -> String {
    format!(
        "<pms_data_request><checkin><address>{address}</address><extension>{address}</extension>\
         <datein>20261127</datein><dateout>20261130</dateout>{extra}</checkin></pms_data_request>"
    )
}

fn req(inner: &str) -> String {
    format!("<pms_data_request>{inner}</pms_data_request>")
}

/// An outbound call from 1001 and its CDR: whether it went out through the trunk.
async fn call_out(h: &Hotel, number: &str, tag: &str) -> CdrRecord {
    call(
        &h.ami,
        "phone-1001",
        &format!("9{number}"),
        &format!("\"{tag}\" <1001>"),
        1,
    )
    .await;
    h.cdr(&format!("1001 -> {number} ({tag})"), |r| {
        r.get("src") == "1001" && r.get("dst") == number
    })
    .await
}

fn went_out(r: &CdrRecord) -> bool {
    r.get("lastapp") == "Dial"
        && r.get("dstchannel").starts_with("PJSIP/trunk-")
        && r.get("disposition") == "ANSWERED"
}

fn refused(r: &CdrRecord) -> bool {
    r.get("lastapp") == "Hangup" && r.get("dstchannel").is_empty() && r.get("billsec") == "0"
}

#[tokio::test]
async fn class_of_service_checkout_and_guest_name_decide_calls_from_a_room() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let h = hotel(&rig, first_db(dbs().await), "").await;

    // Before any check-in, 1001 is no room: it calls out as before.
    let r = call_out(&h, "5550123", "before").await;
    assert!(went_out(&r), "{}", describe(&r));

    // Checked in with class of service 1 (internal only): refused.
    let v = h
        .ok(&checkin(
            "1001",
            "<name>Jane \"JJ\" O'Doe</name><cos>1</cos>",
        ))
        .await;
    assert_eq!(v["address"], "1001");
    assert_eq!(
        h.db_get("pbxgate-room", "1001/state").await.as_deref(),
        Some("in")
    );
    assert_eq!(
        h.db_get("pbxgate-room", "1001/cos").await.as_deref(),
        Some("1")
    );
    assert_eq!(
        h.db_get("pbxgate-room", "1001/name").await.as_deref(),
        Some("Jane 'JJ' O'Doe")
    );
    let room = h.store.room("1001").await.unwrap().unwrap();
    assert!(room.checked_in);
    assert_eq!(room.guest_name, "Jane \"JJ\" O'Doe");
    assert_eq!(
        (room.arrival.as_str(), room.departure.as_str()),
        ("20261127", "20261130")
    );
    let r = call_out(&h, "5550124", "cos1").await;
    assert!(refused(&r), "class of service 1: {}", describe(&r));
    // Emergency numbers always go out.
    let r = call_out(&h, "911", "cos1-911").await;
    assert!(went_out(&r), "911: {}", describe(&r));

    // 2: local numbers (7 digits) yes, national no.
    h.ok(&req("<cos><address>1001</address><cos>2</cos></cos>"))
        .await;
    assert!(went_out(&call_out(&h, "5550125", "cos2-local").await));
    let r = call_out(&h, "4445550126", "cos2-national").await;
    assert!(
        refused(&r),
        "class of service 2, national: {}",
        describe(&r)
    );
    // 3: national too; international (011…) no.
    h.ok(&req("<cos><address>1001</address><cos>3</cos></cos>"))
        .await;
    assert!(went_out(&call_out(&h, "4445550127", "cos3-national").await));
    let r = call_out(&h, "011445550128", "cos3-international").await;
    assert!(
        refused(&r),
        "class of service 3, international: {}",
        describe(&r)
    );
    // 4: everything.
    h.ok(&req("<update><address>1001</address><cos>4</cos></update>"))
        .await;
    let r = call_out(&h, "011445550129", "cos4").await;
    assert!(went_out(&r), "class of service 4: {}", describe(&r));

    // The guest's name is the caller name of calls from the room.
    let mut events = h.ami.subscribe();
    let mark = h.mark().await;
    call(&h.ami, "phone-1001", "1000", "\"x\" <1001>", 1).await;
    let r = h
        .cdr_after(mark, "1001 -> 1000 with the guest name", |r| {
            r.get("src") == "1001" && r.get("dst") == "1000"
        })
        .await;
    assert_eq!(
        r.get("clid"),
        "\"Jane 'JJ' O'Doe\" <1001>",
        "{}",
        describe(&r)
    );
    assert_eq!(r.get("disposition"), "ANSWERED");
    // ...as the called phone's channel is told (its connected line).
    let seen = wait_event(&mut events, |m| {
        m.event() == Some("DialBegin")
            && m.get("DestChannel")
                .is_some_and(|c| c.starts_with("PJSIP/1000-"))
    })
    .await;
    // (AMI escapes quotes in event headers.)
    assert_eq!(
        seen.get("DestConnectedLineName")
            .map(|n| n.replace("\\'", "'")),
        Some("Jane 'JJ' O'Doe".to_owned()),
        "{seen:?}"
    );
    // A name change shows at once.
    h.ok(&req(
        "<changename><address>1001</address><name>Bob Roe</name></changename>",
    ))
    .await;
    assert_eq!(
        h.db_get("pbxgate-room", "1001/name").await.as_deref(),
        Some("Bob Roe")
    );

    // Checked out: refused whatever the class of service; the name is gone.
    let v = h
        .ok(&req("<checkout><address>1001</address></checkout>"))
        .await;
    assert_eq!(v["address"], "1001");
    assert_eq!(
        h.db_get("pbxgate-room", "1001/state").await.as_deref(),
        Some("out")
    );
    assert_eq!(h.db_get("pbxgate-room", "1001/name").await, None);
    let room = h.store.room("1001").await.unwrap().unwrap();
    assert!(!room.checked_in && room.guest_name.is_empty() && room.arrival.is_empty());
    let r = call_out(&h, "5550130", "checked-out").await;
    assert!(refused(&r), "checked out: {}", describe(&r));
    assert!(went_out(&call_out(&h, "112", "checked-out-112").await));
    // Internal calls still work from a vacant room, without a guest name.
    let mark = h.mark().await;
    call(&h.ami, "phone-1001", "1000", "\"vacant\" <1001>", 1).await;
    let r = h
        .cdr_after(mark, "1001 -> 1000 from a vacant room", |r| {
            r.get("src") == "1001" && r.get("dst") == "1000"
        })
        .await;
    assert_eq!(r.get("disposition"), "ANSWERED", "{}", describe(&r));
    assert_eq!(r.get("clid"), "\"Ext 1001\" <1001>", "{}", describe(&r));

    h.close().await;
}

async fn wait_event(
    events: &mut tokio::sync::broadcast::Receiver<Arc<Message>>,
    pick: impl Fn(&Message) -> bool,
) -> Arc<Message> {
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Ok(Ok(m)) if pick(&m) => return m,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            other => panic!("event not seen: {other:?}"),
        }
    }
}

#[tokio::test]
async fn do_not_disturb_refuses_calls_to_the_room_as_busy() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let h = hotel(&rig, first_db(dbs().await), "").await;

    h.ok(&checkin("1000", "<name>Guest</name>")).await;
    let v = h
        .ok(&req("<dnd><address>1000</address><dnd>on</dnd></dnd>"))
        .await;
    assert_eq!(v["address"], "1000");
    assert_eq!(
        h.db_get("pbxgate-room", "1000/dnd").await.as_deref(),
        Some("1")
    );
    let mark = h.mark().await;
    call(&h.ami, "phone-1001", "1000", "\"dnd-on\" <1001>", 1).await;
    let r = h
        .cdr_after(mark, "call to 1000 on DND", |r| r.get("dst") == "1000")
        .await;
    assert_eq!(r.get("disposition"), "BUSY", "{}", describe(&r));
    assert_eq!(r.get("lastapp"), "Hangup", "{}", describe(&r));
    assert_eq!(r.get("dstchannel"), "");
    // An inbound call too.
    let mark = h.mark().await;
    call(&h.ami, "carrier", "5550100", "\"dnd-in\" <+15551230000>", 1).await;
    let r = h
        .cdr_after(mark, "inbound call to 1000 on DND", |r| {
            r.get("src") == "+15551230000"
        })
        .await;
    assert_eq!(r.get("disposition"), "BUSY", "{}", describe(&r));

    h.ok(&req(
        "<dnd><address>1000</address><status>off</status></dnd>",
    ))
    .await;
    let mark = h.mark().await;
    call(&h.ami, "phone-1001", "1000", "\"dnd-off\" <1001>", 1).await;
    let r = h
        .cdr_after(mark, "call to 1000 after DND", |r| r.get("dst") == "1000")
        .await;
    assert_eq!(r.get("disposition"), "ANSWERED", "{}", describe(&r));
    h.close().await;
}

/// An in-process pbxgate on the same database (no listener, no ARI): a second
/// node, and the caller of `old_api`. Its API users are the server's: a change
/// of their credentials would end the server's sessions.
async fn node(rig: &Rig, db: &TestDb, extra: &str) -> (pbxgate::server::App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[database]\nurl = \"{}\"\n[web]\nlisten = \"127.0.0.1:1\"\n\
         [https_api]\npassword = \"pw\"\n\
         [asterisk]\nami_address = \"{}\"\nami_username = \"{}\"\nami_secret = \"{}\"\ncdr_csv = \"\"\n\
         [pms]\nusername = \"{PMS_USER}\"\npassword = \"{PMS_PASSWORD}\"\n{extra}",
        db.url,
        rig.ami_address(),
        rig.get("AMI_USER"),
        rig.get("AMI_SECRET"),
    );
    let settings = pbxgate::config::load_str(&text, "node.toml", dir.path(), Vec::new()).unwrap();
    let app = pbxgate::server::prepare(settings).await.unwrap();
    let ami = &app.pbx.as_ref().unwrap().ami;
    wait_watch(
        "the second node's AMI connection to come up",
        Duration::from_secs(5),
        &mut ami.state(),
        |s| s.is_up(),
    )
    .await;
    (app, dir)
}

fn stop_node(app: &pbxgate::server::App) {
    if let Some(p) = &app.pbx {
        p.pms.stop();
        p.ami.shutdown();
    }
}

/// `old_api` with these query pairs: (HTTP status, content type, body).
async fn old(app: &pbxgate::server::App, pairs: &[(&str, &str)]) -> (u16, String, String) {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let resp = pbxgate::pms::old_api(&app.pms, &pairs).await;
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

fn token() -> String {
    md5_hex(&format!("{PMS_USER}{PMS_PASSWORD}"))
}

/// The `<status>` and `<error_msg>` of an XML answer.
fn xml_status(body: &str) -> (i64, String) {
    let doc = roxmltree::Document::parse(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let text = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .unwrap_or("")
            .to_owned()
    };
    (text("status").parse().unwrap(), text("error_msg"))
}

#[tokio::test]
async fn a_wakeup_call_rings_the_room_once_across_two_nodes_and_its_outcome_is_recorded() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let extra = "wakeup_ring_secs = 6\nwakeup_attempts = 2\nwakeup_retry_secs = 10\n";
    let h = hotel(&rig, last_db(dbs().await), extra).await;
    // A second pbxgate on the same database: both schedulers run.
    let (other, _dir) = node(&rig, &h.db, extra).await;
    let t = token();

    // Set through the old endpoint, 5 s ahead, with seconds.
    let now = jiff::Timestamp::now();
    let at = |secs: i64| {
        let t = now + jiff::SignedDuration::from_secs(secs);
        jiff::tz::TimeZone::UTC
            .to_datetime(t)
            .strftime("%Y%m%d%H%M%S")
            .to_string()
    };
    // Answers drop the seconds when they are zero (`YYYYMMDDHHMM`).
    let shown = |secs: i64| {
        let t = at(secs);
        match t.strip_suffix("00") {
            Some(minute) if t.len() == 14 => minute.to_owned(),
            _ => t,
        }
    };
    let (http, ct, body) = old(
        &other,
        &[
            ("token", &t),
            ("format", "xml"),
            (
                "data",
                &req(&format!(
                    "<wakeup><address>1001</address><action>set</action><time>{}</time></wakeup>",
                    at(5)
                )),
            ),
        ],
    )
    .await;
    assert_eq!(http, 200);
    assert_eq!(ct, "text/xml;charset=UTF-8");
    assert_eq!(xml_status(&body), (0, String::new()), "{body}");
    assert!(
        body.contains(&format!("<time>{}</time>", shown(5))),
        "{body}"
    );
    // 1098 is busy: two attempts, 10 s apart, then failed.
    let v = h
        .ok(&req(&format!(
            "<wakeup><address>1098</address><time>{}</time></wakeup>",
            at(5)
        )))
        .await;
    assert_eq!(v["time"], shown(5));
    // Setting the same call twice keeps one.
    h.ok(&req(&format!(
        "<wakeup><address>1001</address><time>{}</time></wakeup>",
        at(5)
    )))
    .await;
    let list = h
        .ok(&req(
            "<wakeup><address>1001</address><action>list</action></wakeup>",
        ))
        .await;
    assert_eq!(list["wakeups"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["wakeups"][0]["state"], "pending");

    // The room rings: a CDR for the wake-up call, answered.
    let r = h
        .cdr("the wake-up call to 1001", |r| {
            r.get("dst") == "1001" && r.get("uniqueid").contains("wakeup")
        })
        .await;
    assert_eq!(r.get("disposition"), "ANSWERED", "{}", describe(&r));
    assert!(
        r.get("dstchannel").starts_with("PJSIP/1001-"),
        "{}",
        describe(&r)
    );
    assert!(r.get("clid").contains("Wake-up call"), "{}", describe(&r));
    let calls = wait_until(
        "the wake-up call recorded as answered",
        Duration::from_secs(10),
        async || {
            let calls = h.store.wakeups_of("1001", 0, 10).await.unwrap();
            if calls.iter().any(|w| w.status == "answered") {
                Ok(calls)
            } else {
                Err(calls)
            }
        },
    )
    .await;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].attempts, calls[0].outcome.as_str()),
        (1, "answered")
    );

    // The busy room: two attempts, each a CDR, then failed.
    let calls = wait_until("1098 to fail", Duration::from_secs(40), async || {
        let calls = h.store.wakeups_of("1098", 0, 10).await.unwrap();
        if calls.iter().any(|w| w.status == "failed") {
            Ok(calls)
        } else {
            Err(Text(format!("{calls:?}\n{}", h.srv.log_text())))
        }
    })
    .await;
    assert_eq!((calls[0].attempts, calls[0].outcome.as_str()), (2, "busy"));
    let failed_at = tokio::time::Instant::now();
    let busy_cdrs = async || -> Vec<CdrRecord> {
        h.store
            .recent_cdrs(1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.get("dst") == "1098" && r.get("uniqueid").contains("wakeup"))
            .collect()
    };
    wait_until(
        "a CDR for each of the 2 attempts",
        Duration::from_secs(20),
        async || {
            let n = busy_cdrs().await.len();
            if n >= 2 { Ok(()) } else { Err(n) }
        },
    )
    .await;
    // A quiet window after the failure (a sleep on purpose): a call from
    // the other node too would show up, and is counted below.
    quiet_window(failed_at, Duration::from_millis(1500)).await;
    let busy = busy_cdrs().await;
    assert_eq!(
        busy.len(),
        2,
        "one call per attempt, from one node only: {:#?}",
        busy.iter().map(describe).collect::<Vec<_>>()
    );
    assert!(busy.iter().all(|r| r.get("disposition") == "BUSY"));
    let answered: Vec<CdrRecord> = h
        .store
        .recent_cdrs(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.get("dst") == "1001" && r.get("uniqueid").contains("wakeup"))
        .collect();
    assert_eq!(answered.len(), 1, "rung once");

    // The list through the old endpoint, JSON.
    let (_, ct, body) = old(
        &other,
        &[
            ("token", &t.to_ascii_uppercase()),
            ("format", "json"),
            ("data", &req("<wakeup><address>1098</address></wakeup>")),
        ],
    )
    .await;
    assert_eq!(ct, "application/json;charset=UTF-8");
    let v: Value = serde_json::from_str(&body).unwrap();
    let w = &v["pms_data_response"]["wakeup"];
    assert_eq!(w["status"], 0, "{v}");
    assert_eq!(w["wakeups"][0]["state"], "failed");
    assert_eq!(w["wakeups"][0]["outcome"], "busy");
    assert_eq!(w["wakeups"][0]["attempts"], "2");

    // Cancelled calls do not ring.
    h.ok(&req(&format!(
        "<wakeup><address>1001</address><time>{}</time></wakeup>",
        at(40)
    )))
    .await;
    let v = h
        .ok(&req(
            "<wakeup><address>1001</address><action>cancel</action></wakeup>",
        ))
        .await;
    assert_eq!(v["cancelled"], "1");

    stop_node(&other);
    h.close().await;
}

#[tokio::test]
async fn wakeups_due_while_pbxgate_was_down_are_placed_if_not_too_late() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let db = first_db(dbs().await);
    {
        let store = Store::connect(&db.url, &ConnectOptions::default())
            .await
            .unwrap();
        let now = jiff::Timestamp::now().as_millisecond();
        store
            .add_wakeup("1001", now - 20_000, now - 60_000)
            .await
            .unwrap();
        store
            .add_wakeup("1000", now - 3_600_000, now - 7_200_000)
            .await
            .unwrap();
        store.close().await;
    }
    let h = hotel(&rig, db, "wakeup_grace_secs = 120\nwakeup_ring_secs = 6\n").await;
    let r = h
        .cdr("the late wake-up call to 1001", |r| {
            r.get("dst") == "1001" && r.get("uniqueid").contains("wakeup")
        })
        .await;
    assert_eq!(r.get("disposition"), "ANSWERED");
    let states = wait_until(
        "the late wake-up call recorded as answered",
        Duration::from_secs(10),
        async || {
            let a = h.store.wakeups_of("1001", 0, 10).await.unwrap();
            let b = h.store.wakeups_of("1000", 0, 10).await.unwrap();
            let states = (a[0].status.to_string(), b[0].status.to_string());
            if states.0 == "answered" {
                Ok(states)
            } else {
                Err(states)
            }
        },
    )
    .await;
    assert_eq!(states, ("answered".into(), "missed".into()));
    // A quiet window (a sleep on purpose): the missed call, if placed
    // after all, would show up as a CDR.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !h.store
            .recent_cdrs(100)
            .await
            .unwrap()
            .iter()
            .any(|r| r.get("dst") == "1000" && r.get("uniqueid").contains("wakeup")),
        "the missed call was not placed"
    );
    h.close().await;
}

#[tokio::test]
async fn bad_requests_get_a_clear_error_and_change_nothing() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let h = hotel(&rig, first_db(dbs().await), "").await;
    let (node_app, _dir) = node(&rig, &h.db, "").await;
    h.ok(&checkin("1001", "<name>Jane</name><cos>2</cos>"))
        .await;
    h.ok(&req("<mwi><address>1001</address><mwi>on</mwi></mwi>"))
        .await;
    let rooms_before = h.store.rooms().await.unwrap();
    let keys_before = h.room_keys().await;
    assert!(
        keys_before
            .iter()
            .any(|(k, v)| k.ends_with("/1001/state") && v == "in"),
        "{keys_before:?}"
    );

    let cases: Vec<(String, i64, &str)> = vec![
        ("not xml".into(), -1, "not well-formed"),
        ("".into(), -1, "empty"),
        (req(""), -1, "no command"),
        (req("<format_disk><address>1001</address></format_disk>"), -19, "unknown command <format_disk>"),
        (req("<checkout><address>1001</address><nmae>x</nmae></checkout>"), -1, "<nmae>"),
        (req("<checkin><address>1001</address><datein>2026-11-27</datein></checkin>"), -15, "YYYYMMDD"),
        (req("<checkin><address>1001</address></checkin>"), -1, "datein"),
        (req("<cos><address>1001</address><cos>9</cos></cos>"), -15, "1, 2, 3 or 4"),
        (req("<dnd><address>1001</address><dnd>perhaps</dnd></dnd>"), -15, "on or off"),
        (req("<checkout><address>10 01</address></checkout>"), -15, "address"),
        (req("<changename><address>1099</address><name>X</name></changename>"), -16, "unknown"),
        (req("<update><address>1002</address><name>X</name></update>"), -16, "unknown"),
        (req("<wakeup><address>1001</address><time>202001010700</time></wakeup>"), -15, "past"),
        (req("<checkin><address>1002</address><extension>1001</extension><datein>20261127</datein></checkin>"), -44, "belongs to room 1001"),
        (
            "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><pms_data_request><checkout><address>&b;</address></checkout></pms_data_request>".into(),
            -1,
            "",
        ),
    ];
    for (data, status, says) in &cases {
        // /api, JSON: the envelope's status is the command's.
        let r = h.pms(data).await;
        assert_eq!(r["status"], *status, "{data}: {r}");
        let inner = &r["response"]["pms_data_response"];
        let msg = inner
            .as_object()
            .unwrap()
            .values()
            .find_map(|v| v.get("error_msg"))
            .or_else(|| inner.get("error_msg"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        assert!(msg.contains(says), "{data}: {r}");
        // /api, XML.
        let raw = h
            .c
            .post(h.srv.url("/api"))
            .body(json!({"request":{"action":"pmsapi","cookie":h.cookie,"data":data}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(raw.headers()["content-type"], "text/xml;charset=UTF-8");
        let body = raw.text().await.unwrap();
        assert_eq!(xml_status(&body).0, *status, "{data}: {body}");
        // The old endpoint.
        let (http, _, body) = old(&node_app, &[("token", &token()), ("data", data)]).await;
        assert_eq!(http, 200);
        let (s, m) = xml_status(&body);
        assert_eq!(s, *status, "{data}: {body}");
        assert!(m.contains(says), "{data}: {body}");
    }

    // Token, format and parameters.
    let data = req("<dnd><address>1001</address><dnd>1</dnd></dnd>");
    for (pairs, status) in [
        (vec![("data", data.as_str())], -37),
        (
            vec![
                ("token", "0123456789abcdef0123456789abcdef"),
                ("data", &data),
            ],
            -37,
        ),
        (
            vec![("token", &md5_hex("frontdeskwrong")), ("data", &data)],
            -37,
        ),
        (
            vec![("token", &token()), ("format", "csv"), ("data", &data)],
            -15,
        ),
        (
            vec![("token", &token()), ("data", &data), ("data", &data)],
            -1,
        ),
        (vec![("token", &token())], -1),
    ] {
        let (_, _, body) = old(&node_app, &pairs).await;
        assert_eq!(xml_status(&body).0, status, "{pairs:?}: {body}");
    }
    // On /api a token is optional, but a wrong one is refused.
    let r = h
        .srv
        .api(
            &h.c,
            json!({"action":"pmsapi","cookie":h.cookie,"format":"json","token":"bad","data":data}),
        )
        .await;
    assert_eq!(r["status"], -37, "{r}");
    let r = h
        .srv
        .api(
            &h.c,
            json!({"action":"pmsapi","cookie":h.cookie,"format":"yaml","data":data}),
        )
        .await;
    assert_eq!(r["status"], -15, "{r}");
    let r = h
        .srv
        .api(
            &h.c,
            json!({"action":"pmsapi","cookie":h.cookie,"data":{"x":1}}),
        )
        .await;
    assert_eq!(r["status"], -1, "{r}");
    // No session: -6 as for every action.
    let r = h
        .srv
        .api(&h.c, json!({"action":"pmsapi","data":data}))
        .await;
    assert_eq!(r["status"], -6, "{r}");

    assert_eq!(
        h.store.rooms().await.unwrap(),
        rooms_before,
        "rooms unchanged"
    );
    assert_eq!(h.room_keys().await, keys_before, "AstDB unchanged");

    // And a good request on the old endpoint still works (lower- and upper-case token).
    let (_, _, body) = old(
        &node_app,
        &[
            ("token", &token().to_ascii_uppercase()),
            ("data", &req("<roominfo><address>1001</address></roominfo>")),
        ],
    )
    .await;
    assert_eq!(xml_status(&body).0, 0, "{body}");
    assert!(
        body.contains("<name>Jane</name>")
            && body.contains("<cos>2</cos>")
            && body.contains("<mwi>1</mwi>"),
        "{body}"
    );
    stop_node(&node_app);
    h.close().await;
}

#[tokio::test]
async fn the_lamp_lights_and_checkout_empties_the_mailbox() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let h = hotel(&rig, first_db(dbs().await), "").await;
    h.ok(&checkin("1001", "<name>Jane</name>")).await;

    // A caller leaves a voicemail for 1001 (rig: *98 + extension).
    let mut events = h.ami.subscribe();
    call(&h.ami, "phone-1000", "*981001", "\"vm\" <1000>", 3).await;
    wait_event(&mut events, |m| {
        m.event() == Some("MessageWaiting")
            && m.get("Mailbox") == Some("1001@default")
            && m.get("New").is_some_and(|n| n != "0")
    })
    .await;
    let inbox = std::path::Path::new(rig.get("RIG_DIR"))
        .join("var/spool/asterisk/voicemail/default/1001/INBOX");
    let messages = |p: &std::path::Path| {
        std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".txt"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(messages(&inbox) >= 1, "a message in {}", inbox.display());

    // The PMS lights the lamp.
    let mut events = h.ami.subscribe();
    h.ok(&req("<mwi><address>1001</address><mwi>on</mwi></mwi>"))
        .await;
    let m = wait_event(&mut events, |m| {
        m.event() == Some("MessageWaiting") && m.get("Mailbox") == Some("1001@pbxgate")
    })
    .await;
    assert_eq!(m.get("New"), Some("1"));
    assert!(h.store.room("1001").await.unwrap().unwrap().mwi);

    // Check-out: lamp off, mailbox empty.
    let mut events = h.ami.subscribe();
    h.ok(&req("<checkout><address>1001</address></checkout>"))
        .await;
    let m = wait_event(&mut events, |m| {
        m.event() == Some("MessageWaiting") && m.get("Mailbox") == Some("1001@pbxgate")
    })
    .await;
    assert_eq!(m.get("New"), Some("0"));
    assert_eq!(
        messages(&inbox),
        0,
        "the room's mailbox is empty after check-out"
    );
    let summary = h
        .ami
        .action(
            "VoicemailBoxSummary",
            &[("Context", "default"), ("Mailbox", "1001")],
        )
        .await
        .unwrap();
    assert!(
        !summary
            .events
            .iter()
            .any(|e| e.event() == Some("VoicemailBoxDetail")),
        "{:?}",
        summary.events
    );
    assert!(!h.store.room("1001").await.unwrap().unwrap().mwi);
    h.close().await;
}

#[tokio::test]
async fn rooms_survive_a_restart_and_asterisk_gets_them_back() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let h = hotel(&rig, first_db(dbs().await), "").await;
    h.ok(&checkin(
        "1001",
        "<name>Jane</name><cos>1</cos><vip>1</vip><language>fr</language>",
    ))
    .await;
    h.ok(&req(
        "<roomstatus><address>1001</address><status>clean</status></roomstatus>",
    ))
    .await;
    let keys = h.room_keys().await;
    assert_eq!(
        keys,
        [
            ("/pbxgate-room/1001/cos".into(), "1".into()),
            ("/pbxgate-room/1001/dnd".into(), "0".into()),
            ("/pbxgate-room/1001/lang".into(), "fr".into()),
            ("/pbxgate-room/1001/maid".into(), "clean".into()),
            ("/pbxgate-room/1001/name".into(), "Jane".into()),
            ("/pbxgate-room/1001/state".into(), "in".into()),
            ("/pbxgate-room/1001/vip".into(), "1".into()),
        ]
    );
    let (dir, port, db) = (h.srv.dir.clone(), h.srv.port, h.db.clone());
    let config = pms_config(&rig, "");
    h.ami.shutdown();
    h.store.close().await;
    h.srv.stop().await;
    // Asterisk loses the rooms (an operator, a restored backup...).
    clear_rooms(&rig);
    let srv = Server::start_in(&db, &config, dir, port).await;
    wait_connected(&srv).await;
    let ami = crate::calls::connected_ami(&rig).await;
    let back = wait_until(
        "the room keys rewritten in AstDB",
        Duration::from_secs(5),
        async || {
            let r = ami
                .action("DBGetTree", &[("Family", "pbxgate-room")])
                .await
                .unwrap();
            let mut back = r
                .events
                .iter()
                .filter(|e| e.event() == Some("DBGetTreeResponse"))
                .map(|e| {
                    (
                        e.get("Key").unwrap_or("").to_owned(),
                        e.get("Val").unwrap_or("").to_owned(),
                    )
                })
                .collect::<Vec<(String, String)>>();
            back.sort();
            if back.len() == keys.len() {
                Ok(back)
            } else {
                Err(back)
            }
        },
    )
    .await;
    assert_eq!(back, keys, "rewritten from the database on connect");
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let r = srv
        .api(
            &c,
            json!({"action":"pmsapi","cookie":cookie,"format":"json",
                   "data":req("<roominfo><address>1001</address></roominfo>")}),
        )
        .await;
    let info = &r["response"]["pms_data_response"]["roominfo"];
    assert_eq!(info["name"], "Jane", "{r}");
    assert_eq!(info["checkedin"], "1");
    assert_eq!(info["vip"], "1");
    assert_eq!(info["roomstatus"], "clean");
    assert_eq!(info["datein"], "20261127");
    ami.shutdown();
    srv.stop().await;
}

#[tokio::test]
async fn two_nodes_changing_one_room_at_once_leave_asterisk_as_the_database_says() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let h = hotel(&rig, last_db(dbs().await), "").await;
    let (other, _dir) = node(&rig, &h.db, "").await;
    h.ok(&checkin("1001", "<name>Jane</name>")).await;
    let t = token();
    for i in 0..8 {
        let cos = req(&format!(
            "<cos><address>1001</address><cos>{}</cos></cos>",
            i % 4 + 1
        ));
        let dnd = req(&format!(
            "<update><address>1001</address><dnd>{}</dnd><cos>{}</cos></update>",
            i % 2,
            (i + 2) % 4 + 1
        ));
        let pairs = [("token", t.as_str()), ("format", "json"), ("data", &dnd)];
        let (a, (_, _, b)) = tokio::join!(h.pms(&cos), old(&other, &pairs));
        assert_eq!(a["status"], 0, "{a}");
        let b: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(b["pms_data_response"]["update"]["status"], 0, "{b}");
        let room = h.store.room("1001").await.unwrap().unwrap();
        assert_eq!(room.version, 3 + 2 * i, "no change lost");
        assert_eq!(
            h.db_get("pbxgate-room", "1001/cos").await,
            Some(room.cos.to_string()),
            "round {i}"
        );
        assert_eq!(
            h.db_get("pbxgate-room", "1001/dnd").await.as_deref(),
            Some(if room.dnd { "1" } else { "0" }),
            "round {i}"
        );
    }
    stop_node(&other);
    h.close().await;
}

/// The whole old path: `GET /pmsapi` on the old listener (HTTP auth,
/// permitted IPs, `enable_pmsapi`) reaching the PMS engine and Asterisk.
#[tokio::test]
async fn pmsapi_through_the_old_listener_changes_the_room() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let port = free_port();
    let old = format!(
        "[https_api_old]\nenable = true\ntls_bind_address = \"127.0.0.1:{port}\"\n\
         username = \"cdrapi\"\npassword = \"old-pw\"\npermitted_ips = [\"127.0.0.1\"]\n\
         enable_pmsapi = true\n"
    );
    let h = hotel(&rig, first_db(dbs().await), &old).await;
    let c = client(None);
    let url = |pairs: &[(&str, &str)]| {
        reqwest::Url::parse_with_params(&format!("https://127.0.0.1:{port}/pmsapi"), pairs).unwrap()
    };
    let get = |data: String, token: String| {
        let c = c.clone();
        async move {
            let r = c
                .get(url(&[
                    ("token", &token),
                    ("format", "xml"),
                    ("data", &data),
                ]))
                .basic_auth("cdrapi", Some("old-pw"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };

    // Check-in over the old endpoint: applied in the database and on Asterisk.
    let (http, body) = get(
        checkin("1001", "<name>Old Path</name>"),
        token().to_uppercase(),
    )
    .await;
    assert_eq!(http, 200, "{body}");
    assert_eq!(xml_status(&body).0, 0, "{body}");
    assert_eq!(
        h.db_get("pbxgate-room/1001", "state").await.as_deref(),
        Some("in")
    );
    assert_eq!(
        h.db_get("pbxgate-room/1001", "name").await.as_deref(),
        Some("Old Path")
    );

    // A wrong token: refused, nothing changed.
    let before = h.room_keys().await;
    let (http, body) = get(
        req("<checkout><address>1001</address></checkout>"),
        "0".repeat(32),
    )
    .await;
    assert_eq!(http, 200, "{body}");
    let (status, msg) = xml_status(&body);
    assert_ne!(status, 0, "{body}");
    assert!(!msg.is_empty(), "{body}");
    assert_eq!(h.room_keys().await, before);

    // Wrong HTTP password: 401 before the PMS engine sees anything.
    let r = c
        .get(url(&[
            ("token", &token()),
            ("data", &req("<checkout><address>1001</address></checkout>")),
        ]))
        .basic_auth("cdrapi", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(h.room_keys().await, before);

    // Check-out over the old endpoint.
    let (http, body) = get(req("<checkout><address>1001</address></checkout>"), token()).await;
    assert_eq!((http, xml_status(&body).0), (200, 0), "{body}");
    assert_ne!(
        h.db_get("pbxgate-room/1001", "state").await.as_deref(),
        Some("in")
    );
    h.close().await;
}

/// Loads or unloads a module of the rig over AMI (`ModuleLoad`: AMI's
/// `Command` refuses module commands), synchronously (usable in Drop).
pub(crate) fn rig_module(rig: &Rig, load_type: &str, module: &str) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(rig.ami_address()) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "Action: Login\r\nUsername: {}\r\nSecret: {}\r\n\r\n\
         Action: ModuleLoad\r\nModule: {module}\r\nLoadType: {load_type}\r\n\r\n\
         Action: Logoff\r\n\r\n",
        rig.get("AMI_USER"),
        rig.get("AMI_SECRET")
    );
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
}

/// Loads a rig module again when dropped (also when the test fails).
pub(crate) struct Reload(pub(crate) Rig, pub(crate) &'static str);

impl Drop for Reload {
    fn drop(&mut self) {
        rig_module(&self.0, "load", self.1);
    }
}

/// What the rig's Asterisk logged from `from` (a byte offset) on.
fn asterisk_log_since(rig: &Rig, from: u64) -> String {
    let all = std::fs::read(rig.get("ASTERISK_LOG")).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(0).min(all.len());
    String::from_utf8_lossy(&all[from..]).into_owned()
}

fn asterisk_log_len(rig: &Rig) -> u64 {
    std::fs::metadata(rig.get("ASTERISK_LOG")).map_or(0, |m| m.len())
}

/// The first line of pbxgate's log containing `needle`, waited for.
pub(crate) async fn wait_log_line(srv: &Server, needle: &str) -> String {
    srv.wait_log(needle, Duration::from_secs(20)).await
}

/// The inbound channel of `caller` entering pbxgate's Stasis application.
async fn held_channel(
    events: &mut tokio::sync::broadcast::Receiver<Arc<Message>>,
    caller: &str,
) -> String {
    let m = wait_event(events, |m| {
        m.event() == Some("Newexten")
            && m.get("Application") == Some("Stasis")
            && m.get("CallerIDNum") == Some(caller)
    })
    .await;
    m.get("Channel").unwrap().to_owned()
}

// Issue 15 point 20: a call held by call control used to reach a room on
// do-not-disturb (ANSWERED): the hold limit was written over ARI, after
// which a stock Asterisk (live_dangerously off) refused the dialplan's DB()
// reads on that channel. Accepted by the API or by the timer, it is BUSY.
#[tokio::test]
async fn calls_held_by_call_control_still_meet_do_not_disturb() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for (i, db) in dbs().await.into_iter().enumerate() {
        clear_rooms(&rig);
        let _clean = CleanRooms(rig.clone());
        held_calls_meet_dnd(&rig, db, i).await;
    }
}

async fn held_calls_meet_dnd(rig: &Rig, db: TestDb, round: usize) {
    let log_from = asterisk_log_len(rig);
    let config = pms_config(rig, "[call_control]\ntimeout_secs = 2\n").replace(
        "[https_api]\npassword = \"pw\"\n",
        "[https_api]\npassword = \"pw\"\ncall_control = true\n",
    );
    let srv = Server::start(&db, &config).await;
    wait_connected(&srv).await;
    let c = client(None);
    let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
    let store = Store::connect(&srv.db_url, &ConnectOptions::default())
        .await
        .unwrap();
    let h = Hotel {
        srv,
        db,
        c,
        cookie,
        ami: crate::calls::connected_ami(rig).await,
        store,
    };
    h.ok(&checkin("1000", "<name>Guest</name>")).await;
    h.ok(&req("<dnd><address>1000</address><dnd>on</dnd></dnd>"))
        .await;
    let caller = |n: usize| format!("+1555123{round}01{n}");

    // Accepted through the API.
    let mut events = h.ami.subscribe();
    let accepted = caller(0);
    call(
        &h.ami,
        "carrier",
        "5550100",
        &format!("\"held\" <{accepted}>"),
        1,
    )
    .await;
    let channel = held_channel(&mut events, &accepted).await;
    let r = h
        .srv
        .api(
            &h.c,
            json!({"action":"acceptCall","cookie":h.cookie,"channel":channel}),
        )
        .await;
    assert_eq!(r["status"], 0, "{r}");
    let r = h
        .cdr("held call accepted to a room on DND", |r| {
            r.get("src") == accepted
        })
        .await;
    assert_eq!(r.get("disposition"), "BUSY", "{}", describe(&r));
    assert_eq!(r.get("lastapp"), "Hangup", "{}", describe(&r));
    assert_eq!(r.get("dstchannel"), "", "{}", describe(&r));

    // Let through by the timer.
    let by_timer = caller(1);
    call(
        &h.ami,
        "carrier",
        "5550100",
        &format!("\"timer\" <{by_timer}>"),
        1,
    )
    .await;
    held_channel(&mut events, &by_timer).await;
    let r = h
        .cdr("held call let through by the timer to a room on DND", |r| {
            r.get("src") == by_timer
        })
        .await;
    assert_eq!(r.get("disposition"), "BUSY", "{}", describe(&r));
    assert_eq!(r.get("lastapp"), "Hangup", "{}", describe(&r));

    // The same room off DND: the held call rings it (the test above could
    // not pass by refusing every held call).
    h.ok(&req(
        "<dnd><address>1000</address><status>off</status></dnd>",
    ))
    .await;
    let off = caller(2);
    call(
        &h.ami,
        "carrier",
        "5550100",
        &format!("\"dnd off\" <{off}>"),
        1,
    )
    .await;
    held_channel(&mut events, &off).await;
    let r = h
        .cdr("held call to the room off DND", |r| r.get("src") == off)
        .await;
    assert_eq!(r.get("disposition"), "ANSWERED", "{}", describe(&r));

    // The rig's from-trunk reads DB() after Stasis: Asterisk refused nothing.
    let asterisk_log = asterisk_log_since(rig, log_from);
    assert!(
        !asterisk_log.contains("Dangerous function"),
        "Asterisk refused a function:\n{asterisk_log}"
    );
    assert!(
        !h.srv.log_text().contains("refused a function"),
        "{}",
        h.srv.log_text()
    );
    h.close().await;
}

// Issue 15 point 20: when Asterisk refuses what the dialplan needs to read
// a room's settings, the call goes on and pbxgate's log says so and why.
#[tokio::test]
async fn pbxgate_warns_when_asterisk_refuses_the_room_lookups() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    clear_rooms(&rig);
    let _clean = CleanRooms(rig.clone());
    let h = hotel(&rig, first_db(dbs().await), "").await;
    h.ok(&checkin("1000", "<name>Guest</name>")).await;
    h.ok(&req("<dnd><address>1000</address><dnd>on</dnd></dnd>"))
        .await;

    let _reload = Reload(rig.clone(), "func_db.so");
    rig_module(&rig, "unload", "func_db.so");
    let mark = h.mark().await;
    call(&h.ami, "phone-1001", "1000", "\"refused\" <1001>", 1).await;
    let r = h
        .cdr_after(mark, "call to 1000 without func_db", |r| {
            r.get("dst") == "1000"
        })
        .await;
    // Nothing could be read: the call went on (and the warning says so).
    assert_eq!(r.get("disposition"), "ANSWERED", "{}", describe(&r));
    let line = wait_log_line(
        &h.srv,
        "Asterisk refused a function pbxgate's dialplan needs",
    )
    .await;
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("key=\"pbxgate-room/10"), "{line}");
    assert!(line.contains("load func_db.so"), "{line}");
    h.close().await;
}
