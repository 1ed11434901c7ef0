//! listAccount, getSIPAccount and the trunk lists on the rig's Asterisk:
//! live status and contact address (a real SIP registration, a real call),
//! paging and sorting, masked secrets, trunks, bad input, no Asterisk.

use std::time::Duration;

use asterisk::ami::Ami;
use asterisk::testing::{Rig, rig};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

use super::call as api_call;
use crate::calls::{CALLS, call, pbx_config, wait_connected};
use crate::kit::*;

const PHONES: [&str; 6] = ["1000", "1001", "1002", "1097", "1098", "1099"];

/// The rig's configuration with API users: `cdrapi` (the default plus
/// listDigitalTrunk) and `admin` (also `secrets`).
fn config(rig: &Rig) -> String {
    pbx_config(rig, "").replacen(
        "[https_api]\npassword = \"pw\"\n",
        "[https_api]\npassword = \"pw\"\nallow = [\"listDigitalTrunk\"]\n\
         [[https_api.users]]\nusername = \"admin\"\npassword = \"pw2\"\nallow = [\"secrets\"]\n",
        1,
    )
}

fn hex(b: &[u8]) -> String {
    ucm::auth::hex(b)
}

fn md5(s: &str) -> String {
    hex(&Md5::digest(s.as_bytes()))
}

/// A SIP phone reduced to REGISTER (with digest auth) over UDP.
struct Phone {
    sock: UdpSocket,
    ext: String,
    password: String,
    server: String,
    cseq: u32,
}

impl Phone {
    async fn new(rig: &Rig, ext: &str) -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Phone {
            sock,
            ext: ext.into(),
            password: format!("secret{ext}"),
            server: format!("{}:{}", rig.get("SIP_HOST"), rig.get("SIP_PORT")),
            cseq: 0,
        }
    }

    fn addr(&self) -> String {
        self.sock.local_addr().unwrap().to_string()
    }

    fn request(&mut self, expires: u32, auth: Option<String>, contact: &str) -> String {
        self.cseq += 1;
        let me = self.addr();
        let (ext, server, cseq) = (&self.ext, &self.server, self.cseq);
        // Unique across runs: Asterisk answers a reused branch from its
        // transaction cache, to the old run's address.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        format!(
            "REGISTER sip:{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {me};rport;branch=z9hG4bK{nanos}x{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{ext}@{server}>;tag=t{ext}\r\n\
             To: <sip:{ext}@{server}>\r\n\
             Call-ID: reg-{ext}-{me}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: {contact}\r\n\
             Expires: {expires}\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    }

    async fn exchange(&self, msg: &str) -> String {
        self.sock
            .send_to(msg.as_bytes(), &self.server)
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), self.sock.recv(&mut buf))
                .await
                .expect("no SIP answer")
                .unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            // Skip provisional answers and stray requests (qualify OPTIONS).
            if text.starts_with("SIP/2.0 1") || !text.starts_with("SIP/2.0") {
                continue;
            }
            return text;
        }
    }

    /// REGISTER, answering the digest challenge; `expires` 0 unregisters.
    async fn register(&mut self, expires: u32) {
        let contact = format!("<sip:{}@{}>", self.ext, self.addr());
        self.send_register(expires, &contact).await;
    }

    /// Removes every registration of the extension (a failed run's too).
    async fn unregister_all(&mut self) {
        self.send_register(0, "*").await;
    }

    async fn send_register(&mut self, expires: u32, contact: &str) {
        let first = self.request(expires, None, contact);
        let r = self.exchange(&first).await;
        let r = if r.starts_with("SIP/2.0 401") {
            let line = r
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("www-authenticate:"))
                .unwrap()
                .to_owned();
            let field = |k: &str| {
                let i = line.find(&format!("{k}=\"")).unwrap() + k.len() + 2;
                line[i..].split('"').next().unwrap().to_owned()
            };
            let (realm, nonce) = (field("realm"), field("nonce"));
            let uri = format!("sip:{}", self.server);
            let ha1 = md5(&format!("{}:{realm}:{}", self.ext, self.password));
            let ha2 = md5(&format!("REGISTER:{uri}"));
            let (nc, cnonce) = ("00000001", "abcdef01");
            let response = md5(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            let auth = format!(
                "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
                 response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
                self.ext
            );
            let second = self.request(expires, Some(auth), contact);
            self.exchange(&second).await
        } else {
            r
        };
        assert!(r.starts_with("SIP/2.0 200"), "REGISTER refused:\n{r}");
    }
}

struct Bench {
    srv: Server,
    c: reqwest::Client,
    cookie: String,
}

impl Bench {
    async fn start(db: &store::testing::TestDb, rig: &Rig) -> Bench {
        let srv = Server::start(db, &config(rig)).await;
        wait_connected(&srv).await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        Bench { srv, c, cookie }
    }

    async fn api(&self, action: &str, extra: Value) -> Value {
        api_call(&self.srv, &self.c, &self.cookie, action, extra).await
    }

    async fn ok(&self, action: &str, extra: Value) -> Value {
        let r = self.api(action, extra.clone()).await;
        assert_eq!(
            r["status"],
            0,
            "{action} {extra}: {r}\n{}",
            self.srv.log_text()
        );
        r["response"].clone()
    }

    async fn account(&self, ext: &str) -> Value {
        let r = self.ok("listAccount", json!({})).await;
        r["account"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["extension"] == ext)
            .unwrap_or_else(|| panic!("{ext} not in {r}"))
            .clone()
    }

    /// Polls listAccount until `ext`'s item satisfies `pred`.
    async fn wait_account(&self, ext: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(
            format!("{ext}: {what}"),
            Duration::from_secs(10),
            async || {
                let last = self.account(ext).await;
                if pred(&last) {
                    Ok(last)
                } else {
                    Err(Text(last.to_string()))
                }
            },
        )
        .await
    }
}

async fn hang_up_everything(ami: &Ami) {
    crate::channels::hang_up_everything(ami).await;
}

#[tokio::test]
async fn registered_and_unregistered_endpoints_show_status_and_address() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let db = last_db(dbs().await);
    let b = Bench::start(&db, &rig).await;
    let ami = crate::calls::connected_ami(&rig).await;
    hang_up_everything(&ami).await;
    let mut phone = Phone::new(&rig, "1002").await;
    phone.unregister_all().await;
    b.wait_account("1002", "unregistered", |a| a["addr"] == "-")
        .await;

    // Exactly the phones: not the trunk, not the rig's simulators.
    let r = b.ok("listAccount", json!({})).await;
    let exts: Vec<&str> = r["account"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["extension"].as_str().unwrap())
        .collect();
    assert_eq!(exts, PHONES, "{r}");
    assert_eq!(r["total_item"], 6);
    let a = b.account("1002").await;
    assert_eq!(a["status"], "Unavailable", "{a}");
    assert_eq!(a["addr"], "-", "{a}");
    assert_eq!(a["fullname"], "Ext 1002");
    assert_eq!(a["account_type"], "SIP");
    assert_eq!(a["out_of_service"], "no");
    assert_eq!(
        (
            a["urgemsg"].clone(),
            a["newmsg"].clone(),
            a["oldmsg"].clone()
        ),
        (json!(0), json!(0), json!(0))
    );

    // A real registration: the contact's address, and Idle.
    phone.register(120).await;
    let a = b
        .wait_account("1002", "registered", |a| a["addr"] != "-")
        .await;
    assert_eq!(a["addr"], phone.addr(), "{a}");
    // The device state follows the contact a moment later.
    b.wait_account("1002", "Idle", |a| a["status"] == "Idle")
        .await;
    let g = b.ok("getSIPAccount", json!({"extension": "1002"})).await;
    assert_eq!(g["extension"]["addr"], phone.addr(), "{g}");

    // A call in progress: the calling phone is InUse.
    call(&ami, "phone-1001", "1000", "\"Dir\" <1001>", 30).await;
    b.wait_account("1001", "InUse", |a| a["status"] == "InUse")
        .await;
    hang_up_everything(&ami).await;
    b.wait_account("1001", "back to Unavailable", |a| {
        a["status"] == "Unavailable"
    })
    .await;

    // Unregistered again: no address, Unavailable.
    phone.register(0).await;
    let a = b
        .wait_account("1002", "unregistered", |a| a["addr"] == "-")
        .await;
    assert_eq!(a["status"], "Unavailable", "{a}");
    b.srv.stop().await;
}

#[tokio::test]
async fn account_lists_page_sort_and_trim() {
    let Some(rig) = rig() else { return };
    // pbxgate on the rig registers the Stasis application: one at a time.
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let b = Bench::start(&db, &rig).await;
        let exts = |r: &Value| -> Vec<String> {
            r["account"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["extension"].as_str().unwrap().to_owned())
                .collect()
        };
        let p = json!({"item_num": "4", "sidx": "extension", "sord": "desc", "page": "1",
                       "options": "extension,status"});
        let r = b.ok("listAccount", p.clone()).await;
        assert_eq!(exts(&r), ["1099", "1098", "1097", "1002"], "{r}");
        assert_eq!(
            (
                r["total_item"].clone(),
                r["total_page"].clone(),
                r["page"].clone()
            ),
            (json!(6), json!(2), json!(1))
        );
        let keys: Vec<&String> = r["account"][0].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["extension", "status"], "{r}");
        let mut p2 = p.clone();
        p2["page"] = json!(2);
        let r = b.ok("listAccount", p2).await;
        assert_eq!(exts(&r), ["1001", "1000"], "{r}");
        assert_eq!(r["page"], 2);
        // Past the end: an empty page, same totals.
        let r = b.ok("listAccount", json!({"item_num": 4, "page": 3})).await;
        assert_eq!(exts(&r), Vec::<String>::new());
        assert_eq!(r["total_item"], 6);
        // Ascending by fullname; numbers sort as numbers.
        let r = b
            .ok("listAccount", json!({"sidx": "fullname", "sord": "asc"}))
            .await;
        assert_eq!(exts(&r), PHONES, "{r}");
        // Bad paging values.
        for bad in [
            json!({"page": "0"}),
            json!({"page": "x"}),
            json!({"item_num": "-1"}),
            json!({"item_num": 0}),
        ] {
            let r = b.api("listAccount", bad.clone()).await;
            assert_eq!(r["status"], -15, "{bad}: {r}");
        }
        let r = b.api("listAccount", json!({"sidx": ["x"]})).await;
        assert_eq!(r["status"], -1, "{r}");
        // getSIPAccount: missing, malformed, unknown, a trunk.
        let r = b.api("getSIPAccount", json!({})).await;
        assert_eq!(r["status"], -1, "{r}");
        for bad in ["10 00", "1000;x", "../1000", "a\u{0}b"] {
            let r = b.api("getSIPAccount", json!({"extension": bad})).await;
            assert_eq!(r["status"], -15, "{bad:?}: {r}");
        }
        for unknown in ["4242", "trunk", "regtrunk", "regsink", "sim", "phone-1000"] {
            let r = b.api("getSIPAccount", json!({"extension": unknown})).await;
            assert_eq!(r["status"], -16, "{unknown}: {r}");
        }
        b.srv.stop().await;
    }
}

#[tokio::test]
async fn secrets_are_masked_unless_allowed() {
    let Some(rig) = rig() else { return };
    // pbxgate on the rig registers the Stasis application: one at a time.
    let _one_at_a_time = CALLS.lock().await;
    let db = last_db(dbs().await);
    let b = Bench::start(&db, &rig).await;
    let r = b.ok("getSIPAccount", json!({"extension": "1000"})).await;
    let e = &r["extension"];
    assert_eq!(e["extension"], "1000");
    assert_eq!(e["fullname"], "Ext 1000");
    assert_eq!(e["cidnumber"], "1000");
    assert_eq!(e["secret"], "******", "{r}");
    assert_eq!(e["vmsecret"], "******", "{r}");
    assert!(!r.to_string().contains("secret1000"), "{r}");
    let r = b.ok("listAccount", json!({})).await;
    assert!(!r.to_string().contains("secret10"), "{r}");

    let admin = b.srv.login(&b.c, "admin", "pw2").await.unwrap();
    let r = api_call(
        &b.srv,
        &b.c,
        &admin,
        "getSIPAccount",
        json!({"extension": "1000"}),
    )
    .await;
    assert_eq!(r["status"], 0, "{r}");
    assert_eq!(r["response"]["extension"]["secret"], "secret1000", "{r}");
    // Never in the log.
    assert!(!b.srv.log_text().contains("secret1000"));
    b.srv.stop().await;
}

#[tokio::test]
async fn trunks_come_from_the_pjsip_trunk_endpoints() {
    let Some(rig) = rig() else { return };
    // pbxgate on the rig registers the Stasis application: one at a time.
    let _one_at_a_time = CALLS.lock().await;
    let db = last_db(dbs().await);
    let b = Bench::start(&db, &rig).await;
    let r = b.ok("listVoIPTrunk", json!({"sidx": "trunk_name"})).await;
    let trunks = r["voip_trunk"].as_array().unwrap();
    let names: Vec<&str> = trunks
        .iter()
        .map(|t| t["trunk_name"].as_str().unwrap())
        .collect();
    // Not the phones, not the rig's simulators (regsink, sim, phone-10XX).
    assert_eq!(names, ["badtrunk", "regtrunk", "trunk"], "{r}");
    assert_eq!(
        (
            r["total_item"].clone(),
            r["total_page"].clone(),
            r["page"].clone()
        ),
        (json!(3), json!(1), json!(1))
    );
    let t = &trunks[2];
    assert_eq!(t["trunk_type"], "peer");
    assert_eq!(t["host"], format!("127.0.0.1:{}", rig.get("SIM_PORT")));
    assert_eq!(t["username"], "");
    let reg = &trunks[1];
    assert_eq!(reg["trunk_type"], "register", "{r}");
    assert_eq!(reg["host"], format!("127.0.0.1:{}", rig.get("SIP_PORT")));
    assert_eq!(reg["username"], "regsink");
    let index = t["trunk_index"].as_u64().unwrap();
    // The index is stable, and distinct; trunk_index sorts numerically.
    let again = b
        .ok(
            "listVoIPTrunk",
            json!({"options": "trunk_index,trunk_name", "sidx": "trunk_index", "sord": "desc", "item_num": 1}),
        )
        .await;
    let mut indices: Vec<u64> = trunks
        .iter()
        .map(|t| t["trunk_index"].as_u64().unwrap())
        .collect();
    indices.sort_unstable();
    indices.dedup();
    assert_eq!(indices.len(), 3);
    assert_eq!(
        again["voip_trunk"][0]["trunk_index"],
        json!(indices[2]),
        "{again}"
    );
    assert_eq!(again["total_page"], 3);
    assert!(again["voip_trunk"][0].get("host").is_none());

    // getSIPTrunk by index and by name: a peer without qualify.
    for key in [json!(index), json!(index.to_string()), json!("trunk")] {
        let r = b.ok("getSIPTrunk", json!({"trunk": key})).await;
        let t = &r["trunk"];
        assert_eq!(t["trunk_name"], "trunk", "{r}");
        assert_eq!(t["trunk_index"], index, "{r}");
        assert_eq!(t["status"], "Unmonitored", "{r}");
        assert_eq!(t["out_of_service"], "no", "{r}");
    }
    // Registration states as Asterisk reports them (the rig's registrations
    // settle within seconds of its start).
    for (name, want) in [("regtrunk", "Registered"), ("badtrunk", "Rejected")] {
        let last = wait_until(
            format!("{name}'s registration {want}"),
            Duration::from_secs(10),
            async || {
                let last = b.ok("getSIPTrunk", json!({"trunk": name})).await;
                if last["trunk"]["status"] == want {
                    Ok(last)
                } else {
                    Err(Text(last.to_string()))
                }
            },
        )
        .await;
        assert_eq!(last["trunk"]["status"], want, "{last}");
        assert_eq!(last["trunk"]["trunk_type"], "register", "{last}");
    }
    // No secret of a trunk's auth anywhere.
    let all = b.ok("getSIPTrunk", json!({"trunk": "regtrunk"})).await;
    assert!(!all.to_string().contains("secretregsink"), "{all}");
    let r = b.api("getSIPTrunk", json!({})).await;
    assert_eq!(r["status"], -1, "{r}");
    let r = b.api("getSIPTrunk", json!({"trunk": "a b"})).await;
    assert_eq!(r["status"], -15, "{r}");
    for unknown in ["1000", "sim", "regsink", "999999999"] {
        let r = b.api("getSIPTrunk", json!({"trunk": unknown})).await;
        assert_eq!(r["status"], -16, "{unknown}: {r}");
    }

    // No analog or digital hardware: empty lists with the paging keys.
    let r = b.ok("listAnalogTrunk", json!({})).await;
    assert_eq!(
        r,
        json!({"analogtrunk": [], "total_item": 0, "total_page": 0, "page": 1})
    );
    let r = b
        .ok("listDigitalTrunk", json!({"page": 2, "item_num": 10}))
        .await;
    assert_eq!(
        r,
        json!({"digital_trunks": [], "total_item": 0, "total_page": 0, "page": 2})
    );
    let r = b.api("listAnalogTrunk", json!({"page": "zero"})).await;
    assert_eq!(r["status"], -15, "{r}");
    b.srv.stop().await;
}

#[tokio::test]
async fn without_asterisk_the_directory_answers_connection_closed() {
    for db in dbs().await {
        let srv = Server::start(
            &db,
            "[https_api]\npassword = \"pw\"\nallow = [\"listDigitalTrunk\"]\n",
        )
        .await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        for (action, extra) in [
            ("listAccount", json!({})),
            ("getSIPAccount", json!({"extension": "1000"})),
            ("listVoIPTrunk", json!({})),
            ("getSIPTrunk", json!({"trunk": "1"})),
        ] {
            let r = api_call(&srv, &c, &cookie, action, extra).await;
            assert_eq!(r["status"], -7, "{action}: {r}");
        }
        // Parameters are checked first; analog/digital need no Asterisk.
        let r = api_call(&srv, &c, &cookie, "getSIPAccount", json!({})).await;
        assert_eq!(r["status"], -1, "{r}");
        let r = api_call(&srv, &c, &cookie, "listAccount", json!({"page": "0"})).await;
        assert_eq!(r["status"], -15, "{r}");
        let r = api_call(&srv, &c, &cookie, "listDigitalTrunk", json!({})).await;
        assert_eq!(r["status"], 0, "{r}");
        srv.stop().await;
    }
}
