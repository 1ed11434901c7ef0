//! Call flows on the rig (queues, ring groups, IVR, voicemail, click-to-call,
//! transfers), read back through cdrapi as a billing system reads them: one
//! entry per call, its legs in order, the kind of each leg, and durations
//! that sum without counting any second twice (docs/compatibility.md, "Calls
//! with several legs").

use std::time::Duration;

use asterisk::ami::Ami;
use asterisk::testing::{Rig, rig};
use serde_json::{Value, json};
use store::testing::TestDb;

use crate::calls::{CALLS, call, connected_ami, pbx_config, wait_connected};
use crate::channels::hang_up_everything;
use crate::kit::*;

/// One cdrapi entry: its `main_cdr` (the leg itself for a one-leg entry)
/// and its legs in order.
#[derive(Debug, Clone)]
struct Entry {
    main: Value,
    legs: Vec<Value>,
}

impl Entry {
    fn sum(&self, field: &str) -> i64 {
        self.legs.iter().map(|l| int(l, field)).sum()
    }

    fn describe(&self) -> String {
        self.legs
            .iter()
            .map(|l| {
                format!(
                    "{} {}->{} {} {} billsec={} dstanswer={} rec={}",
                    l["action_type"],
                    l["src"],
                    l["dst"],
                    l["lastapp"],
                    l["disposition"],
                    l["billsec"],
                    l["dstanswer"],
                    l["recordfiles"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }
}

fn int(v: &Value, field: &str) -> i64 {
    v[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} of {v}"))
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or("")
}

fn entries(body: &Value) -> Vec<Entry> {
    body["cdr_root"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| match e.get("main_cdr") {
            Some(main) => {
                let mut legs = Vec::new();
                for n in 1.. {
                    match e.get(format!("sub_cdr_{n}")) {
                        Some(l) => legs.push(l.clone()),
                        None => break,
                    }
                }
                Entry {
                    main: main.clone(),
                    legs,
                }
            }
            None => Entry {
                main: e.clone(),
                legs: vec![e.clone()],
            },
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` → seconds (civil, for differences only).
fn secs(t: &str) -> i64 {
    pbxgate::ingest::derive::local_to_utc_ms(t, &jiff::tz::TimeZone::UTC).unwrap() / 1000
}

/// The invariants every entry keeps, whatever the flow.
fn check_billing(e: &Entry, rig: &Rig) {
    let what = e.describe();
    let session = text(&e.legs[0], "session");
    assert!(!session.is_empty(), "{what}");
    for l in &e.legs {
        assert_eq!(
            text(l, "session"),
            session,
            "one session per entry:\n  {what}"
        );
    }
    if e.legs.len() > 1 {
        assert_eq!(int(&e.main, "billsec"), e.sum("billsec"), "{what}");
        assert_eq!(int(&e.main, "duration"), e.sum("duration"), "{what}");
        assert_eq!(text(&e.main, "src"), text(&e.legs[0], "src"), "{what}");
    }
    // No second is billed twice: the answered spans of the legs do not overlap.
    let mut spans: Vec<(i64, i64)> = e
        .legs
        .iter()
        .filter(|l| l["disposition"] == "ANSWERED" && int(l, "billsec") > 0)
        .map(|l| {
            let end = secs(text(l, "end"));
            (end - int(l, "billsec"), end)
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "billed twice: {spans:?}\n  {what}");
    }
    // Each recording named exists, belongs to an answered leg, and is
    // described (recordfiles_desc) by its size and its duration.
    for l in &e.legs {
        let recs: Vec<&str> = text(l, "recordfiles")
            .split('@')
            .filter(|r| !r.is_empty())
            .collect();
        let descs: Vec<&str> = text(l, "recordfiles_desc")
            .split('@')
            .filter(|r| !r.is_empty())
            .collect();
        assert_eq!(recs.len(), descs.len(), "{what}\n  {l}");
        for (rec, desc) in recs.iter().zip(&descs) {
            assert_eq!(l["disposition"], "ANSWERED", "{what}");
            let path = std::path::Path::new(rig.get("MONITOR_DIR")).join(rec);
            let size = std::fs::metadata(&path)
                .unwrap_or_else(|_| panic!("{} missing:\n  {what}", path.display()))
                .len();
            let fields: std::collections::HashMap<&str, &str> = desc
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .collect();
            assert_eq!(fields["size"], format!("{size}B"), "{desc}");
            let epoch = rec.split("auto-").nth(1).and_then(|r| r.split('-').next());
            assert_eq!(Some(fields["start-time"]), epoch, "{desc}");
            // A leg's recording holds at least its talk (when it is the
            // leg's only one) and at most the call's (a channel's recording
            // goes on through a transfer's next legs).
            let secs: i64 = fields["duration"].parse().unwrap();
            if recs.len() == 1 {
                assert!(
                    secs + 2 >= int(l, "billsec"),
                    "{desc} for billsec {}:\n  {what}",
                    l["billsec"]
                );
            }
            assert!(
                secs <= e.sum("billsec") + 2,
                "{desc} longer than the call:\n  {what}"
            );
        }
    }
}

struct Bench {
    srv: Server,
    _db: TestDb,
    c: reqwest::Client,
    cookie: String,
}

impl Bench {
    async fn start(rig: &Rig, db: TestDb) -> Bench {
        Self::start_with(rig, db, "").await
    }

    /// With `extra` configuration after the rig's.
    async fn start_with(rig: &Rig, db: TestDb, extra: &str) -> Bench {
        // The rig's recordings, for recordfiles_desc.
        let spool = std::path::Path::new(rig.get("MONITOR_DIR"))
            .parent()
            .unwrap()
            .display()
            .to_string();
        let config = format!(
            "{}[dialing]\noutbound_prefix = \"9\"\nring_secs = 20\n[recordings]\nspool_dir = \"{spool}\"\n{extra}",
            pbx_config(rig, "")
        );
        let srv = Server::start(&db, &config).await;
        wait_connected(&srv).await;
        let c = client(None);
        let cookie = srv.login(&c, "cdrapi", "pw").await.unwrap();
        Bench {
            srv,
            _db: db,
            c,
            cookie,
        }
    }

    async fn api(&self, action: &str, mut params: Value) -> Value {
        params["action"] = json!(action);
        params["cookie"] = json!(self.cookie);
        self.srv.api(&self.c, params).await
    }

    async fn entries(&self) -> Vec<Entry> {
        let r = self
            .api("cdrapi", json!({"format": "json", "numRecords": 1000}))
            .await;
        entries(&r)
    }

    /// Waits until an entry matches `pred`, and no new leg arrives for a
    /// moment (a call's legs are stored together; this catches a stray one).
    async fn entry(&self, what: &str, pred: impl Fn(&Entry) -> bool) -> Entry {
        let e = wait_until(
            format!("the entry of the {what}"),
            Duration::from_secs(40),
            async || {
                let all = self.entries().await;
                match all.iter().find(|e| pred(e)) {
                    Some(e) => Ok(e.clone()),
                    None => Err(Text(format!(
                        "{:#?}\n{}",
                        all.iter().map(Entry::describe).collect::<Vec<_>>(),
                        self.srv.log_text()
                    ))),
                }
            },
        )
        .await;
        // A quiet window (a sleep on purpose): a stray leg would show up.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let again = self.entries().await.into_iter().find(&pred);
        let again = again.unwrap_or_else(|| panic!("{what}: entry vanished"));
        assert_eq!(again.legs.len(), e.legs.len(), "{what}: a leg came late");
        again
    }
}

/// An AMI Originate of a simulated caller (`from`: `phone-1001`,
/// `carrier`) dialling `number`, then `then` (an application, or a
/// `rig-caller` extension and its variables).
async fn originate(ami: &Ami, from: &str, number: &str, timeout_ms: u32, then: &[(&str, String)]) {
    let channel = format!("PJSIP/{number}@{from}");
    let timeout = timeout_ms.to_string();
    let mut headers: Vec<(&str, &str)> = vec![
        ("Channel", &channel),
        ("Timeout", &timeout),
        ("Async", "true"),
    ];
    headers.extend(then.iter().map(|(k, v)| (*k, v.as_str())));
    let r = ami.action("Originate", &headers).await.unwrap();
    assert!(r.is_success(), "{:?}", r.response);
}

/// A `rig-caller` extension and its variables, for [`originate`].
fn rig_caller(exten: &str, vars: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("Context", "rig-caller".to_owned()),
        ("Exten", exten.to_owned()),
        ("Priority", "1".to_owned()),
    ];
    out.extend(vars.iter().map(|(k, v)| ("Variable", format!("{k}={v}"))));
    out
}

/// A simulated caller that dials `number` and keys `digits` once answered.
async fn call_keying(ami: &Ami, from: &str, number: &str, digits: &str, secs: u32) {
    let vars = [
        ("RIG_DTMF", digits.to_owned()),
        ("RIG_WAIT", secs.to_string()),
    ];
    originate(ami, from, number, 20_000, &rig_caller("dtmf", &vars)).await;
}

fn has_type(e: &Entry, t: &str) -> bool {
    e.legs.iter().any(|l| l["action_type"] == t)
}

/// Queues, a ring group, an IVR and voicemail after no answer, placed at
/// once; each is one entry with the legs docs/compatibility.md lists.
#[tokio::test]
async fn queue_ringgroup_ivr_and_voicemail_calls_are_one_entry_each_billed_once() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        hang_up_everything(&ami).await;
        // A CDR output receiver taking whole calls, as cdrapi groups them.
        let mut pushed = crate::cdroutput::receivers::TcpReceiver::new(free_port());
        pushed.start().await;
        let output = format!(
            "[cdr_output]\nenable = true\n[[cdr_output.receivers]]\nname = \"calls\"\n\
             address = \"127.0.0.1\"\nport = {}\ngrouped = true\n",
            pushed.port
        );
        let b = Bench::start_with(&rig, db, &output).await;
        call(&ami, "phone-1001", "6000", "1001", 6).await;
        call(&ami, "phone-1001", "6100", "1001", 6).await;
        call(&ami, "phone-1001", "6400", "1001", 6).await;
        call_keying(&ami, "phone-1001", "7000", "1000", 6).await;
        call(&ami, "phone-1001", "6402", "1001", 5).await;
        call(&ami, "phone-1001", "*881099", "1001", 5).await;

        // Queue 6000 (member Local/1000@ext-local/n), answered: one leg, the
        // agent's talk time once (Asterisk writes two 6 s CDRs).
        let (q, what) = b
            .checked(&rig, "queue 6000", |e| has_type(e, "QUEUE[6000]"))
            .await;
        assert_eq!(q.legs.len(), 1, "{what}");
        let leg = &q.legs[0];
        assert_eq!(leg["dst"], "6000", "{what}");
        assert_eq!(leg["disposition"], "ANSWERED", "{what}");
        assert_eq!(leg["dstanswer"], "1000", "{what}");
        assert_eq!(leg["dstchannel_ext"], "1000", "{what}");
        assert_eq!(leg["userfield"], "Internal", "{what}");
        assert!((5..=7).contains(&int(leg, "billsec")), "{what}");
        assert!(
            text(leg, "recordfiles").contains("-1001-1000.wav@"),
            "the agent's recording: {what}"
        );

        // Queue 6100 (untagged by the dialplan; members 1001 and 1097, which
        // fails): one leg per member rung, exactly one answered.
        let (q, what) = b
            .checked(&rig, "queue 6100", |e| has_type(e, "QUEUE[6100]"))
            .await;
        let answered: Vec<_> = q
            .legs
            .iter()
            .filter(|l| l["disposition"] == "ANSWERED")
            .collect();
        assert_eq!(answered.len(), 1, "{what}");
        assert_eq!(answered[0]["dstanswer"], "1001", "{what}");
        for l in &q.legs {
            assert_eq!(l["action_type"], "QUEUE[6100]", "{what}");
            assert_eq!(l["userfield"], "Internal", "{what}");
            if l["disposition"] != "ANSWERED" {
                assert_eq!(l["dstchannel_ext"], "1097", "{what}");
            }
        }
        assert!((5..=7).contains(&q.sum("billsec")), "{what}");

        // Ring group 6400 (ring-all 1000 & 1001): a leg per member, one
        // answered; the total is that member's talk time.
        let (rg, what) = b
            .checked(&rig, "ring group 6400", |e| has_type(e, "RINGGROUP[6400]"))
            .await;
        assert_eq!(rg.legs.len(), 2, "{what}");
        assert_eq!(
            rg.legs
                .iter()
                .filter(|l| l["disposition"] == "ANSWERED")
                .count(),
            1,
            "{what}"
        );
        for l in &rg.legs {
            assert_eq!(l["dst"], "6400", "{what}");
            assert_eq!(l["userfield"], "Internal", "{what}");
        }
        assert!((5..=7).contains(&rg.sum("billsec")), "{what}");

        // Ring group 6402, hunting: 1099 (4 s, no answer), then 1000.
        let (hunt, what) = b
            .checked(&rig, "hunt group 6402", |e| has_type(e, "RINGGROUP[6402]"))
            .await;
        assert_eq!(hunt.legs.len(), 2, "{what}");
        assert_eq!(hunt.legs[0]["disposition"], "NO ANSWER", "{what}");
        assert_eq!(hunt.legs[0]["dstchannel_ext"], "1099", "{what}");
        assert_eq!(hunt.legs[1]["disposition"], "ANSWERED", "{what}");
        assert_eq!(hunt.legs[1]["dstanswer"], "1000", "{what}");
        for l in &hunt.legs {
            assert_eq!(l["action_type"], "RINGGROUP[6402]", "{what}");
            assert_eq!(l["dst"], "6402", "{what}");
        }

        // IVR 7000, the caller keys 1000: the menu's leg, then the call to
        // 1000, which is billed from its own answer only.
        let (ivr, what) = b
            .checked(&rig, "IVR 7000", |e| has_type(e, "IVR[7000]"))
            .await;
        assert_eq!(ivr.legs.len(), 2, "{what}");
        let (menu, ext) = (&ivr.legs[0], &ivr.legs[1]);
        assert_eq!(menu["action_type"], "IVR[7000]", "{what}");
        assert_eq!(menu["dst"], "7000", "{what}");
        assert_eq!(menu["recordfiles"], "", "{what}");
        assert_eq!(ext["action_type"], "DIAL", "{what}");
        assert_eq!(ext["dst"], "1000", "{what}");
        assert_eq!(ext["dstanswer"], "1000", "{what}");
        assert_eq!(ext["disposition"], "ANSWERED", "{what}");
        assert!(
            secs(text(menu, "end")) <= secs(text(ext, "start")),
            "{what}"
        );
        assert!((4..=7).contains(&int(ext, "billsec")), "{what}");

        // No answer, then voicemail: the Dial's leg and the voicemail's.
        let (vm, what) = b.checked(&rig, "voicemail", |e| has_type(e, "VM")).await;
        assert_eq!(vm.legs.len(), 2, "{what}");
        assert_eq!(vm.legs[0]["action_type"], "DIAL", "{what}");
        assert_eq!(vm.legs[0]["disposition"], "NO ANSWER", "{what}");
        assert_eq!(vm.legs[1]["lastapp"], "VoiceMail", "{what}");
        assert_eq!(vm.legs[1]["recordfiles"], "", "not the Dial's: {what}");
        assert_eq!(vm.legs[1]["userfield"], "Internal", "{what}");

        // The receiver got each call as cdrapi's entry: the same legs, whole.
        let all = b.entries().await;
        let legs: usize = all.iter().map(|e| e.legs.len()).sum();
        pushed
            .log
            .wait(legs, Duration::from_secs(10), "grouped")
            .await;
        let got = pushed.log.entries.lock().unwrap().clone();
        let ids = |legs: &[Value]| -> Vec<String> {
            legs.iter().map(|l| text(l, "AcctId").to_owned()).collect()
        };
        let mut pushed_calls: Vec<Vec<String>> = got
            .iter()
            .map(|e| ids(&crate::cdroutput::receivers::legs_of(e)))
            .collect();
        let mut cdrapi_calls: Vec<Vec<String>> = all.iter().map(|e| ids(&e.legs)).collect();
        pushed_calls.sort();
        cdrapi_calls.sort();
        assert_eq!(
            pushed_calls, cdrapi_calls,
            "grouped pushes = cdrapi entries"
        );
        assert!(
            cdrapi_calls.iter().any(|c| c.len() > 1),
            "some call has several legs"
        );
        b.srv.stop().await;
    }
}

/// Click-to-call (dialExtension, dialQueue) and the API's transfers
/// (callTransfer, transferNumberInbound, transferNumberOutbound): one entry
/// each.
#[tokio::test]
async fn click_to_call_and_api_transfers_are_one_entry_each() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        hang_up_everything(&ami).await;
        let b = Bench::start(&rig, db).await;

        // dialExtension 1001 → 1000: Asterisk writes "1000 → 1001" (the
        // Local half ringing the caller) and "1001 → 1000", both answered.
        let r = b
            .api("dialExtension", json!({"caller": "1001", "callee": "1000"}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        talk_then_hang_up(&ami, "PJSIP/1000-", 3).await;
        let (c2c, what) = b
            .checked(&rig, "click-to-call", |e| {
                e.legs.iter().any(|l| {
                    l["channel"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("PJSIP/1001-"))
                        && l["dst"] == "1000"
                })
            })
            .await;
        assert_eq!(c2c.legs.len(), 1, "{what}");
        let leg = &c2c.legs[0];
        assert_eq!(
            (leg["src"].as_str(), leg["dst"].as_str()),
            (Some("1001"), Some("1000")),
            "{what}"
        );
        assert_eq!(leg["dstanswer"], "1000", "{what}");
        assert!((2..=5).contains(&int(leg, "billsec")), "{what}");

        // dialQueue 1001 → queue 6000 (whose member 1000 is a Local channel
        // too): one leg, the queue's, from the caller's phone to the agent.
        let r = b
            .api("dialQueue", json!({"caller": "1001", "queue": "6000"}))
            .await;
        assert_eq!(r["status"], 0, "{r}");
        talk_then_hang_up(&ami, "PJSIP/1000-", 3).await;
        let (dq, what) = b
            .checked(&rig, "dialQueue", |e| has_type(e, "QUEUE[6000]"))
            .await;
        assert_eq!(dq.legs.len(), 1, "{what}");
        let leg = &dq.legs[0];
        assert!(text(leg, "channel").starts_with("PJSIP/1001-"), "{what}");
        assert_eq!(
            (leg["src"].as_str(), leg["dst"].as_str()),
            (Some("1001"), Some("6000")),
            "{what}"
        );
        assert_eq!(leg["dstanswer"], "1000", "{what}");
        assert!((2..=5).contains(&int(leg, "billsec")), "{what}");

        // dialOutbound 1001 → 5550123 (out through the trunk): one leg, the
        // caller's phone to the number, on the trunk.
        let r = b
            .api(
                "dialOutbound",
                json!({"caller": "1001", "outbound": "5550123"}),
            )
            .await;
        assert_eq!(r["status"], 0, "{r}");
        talk_then_hang_up(&ami, "PJSIP/trunk-", 3).await;
        let (dout, what) = b
            .checked(&rig, "dialOutbound", |e| {
                e.legs.iter().any(|l| l["dst"] == "5550123")
            })
            .await;
        assert_eq!(dout.legs.len(), 1, "{what}");
        let leg = &dout.legs[0];
        assert!(text(leg, "channel").starts_with("PJSIP/1001-"), "{what}");
        assert_eq!(leg["src"], "1001", "{what}");
        assert_eq!(leg["dst_trunk_name"], "trunk", "{what}");
        assert_eq!(leg["dstanswer"], "5550123", "{what}");
        assert_eq!(leg["userfield"], "Outbound", "{what}");

        // 1001 calls 1000, then 1001 hands 1000 over to extension 1001
        // (BlindTransfer): the leg after the transfer has src 1000, and is
        // the same call.
        call(&ami, "phone-1001", "1000", "1001", 30).await;
        b.act_on_call(
            &ami,
            "PJSIP/1001-",
            "callTransfer",
            json!({"extension": "1001"}),
            4,
        )
        .await;
        let (xfer, what) = b
            .checked(&rig, "blind transfer", |e| {
                e.legs.len() >= 2 && e.legs[0]["src"] == "1001" && e.legs[0]["dst"] == "1000"
            })
            .await;
        assert_eq!(xfer.legs.len(), 2, "{what}");
        assert_eq!(xfer.legs[1]["src"], "1000", "{what}");
        assert_eq!(xfer.legs[1]["dst"], "1001", "{what}");
        assert_eq!(xfer.legs[1]["disposition"], "ANSWERED", "{what}");
        assert!(
            text(&xfer.legs[0], "session").ends_with("-1001"),
            "the caller's call: {what}"
        );

        // transferNumberInbound: an inbound call's own channel (the trunk's)
        // sent to 1001; transferNumberOutbound: a caller sent out through
        // the trunk. The call goes on in the same entry.
        call(&ami, "carrier", "5550100", "+15557300001", 30).await;
        b.act_on_call(
            &ami,
            "PJSIP/trunk-",
            "transferNumberInbound",
            json!({"callee": "1001"}),
            5,
        )
        .await;
        let (tin, what) = b
            .checked(&rig, "transferNumberInbound", |e| {
                e.legs.len() >= 2 && e.legs[0]["src"] == "+15557300001"
            })
            .await;
        assert_eq!(tin.legs.len(), 2, "{what}");
        assert_eq!(tin.legs[1]["dst"], "1001", "{what}");
        assert_eq!(tin.legs[1]["dstanswer"], "1001", "{what}");
        for l in &tin.legs {
            assert_eq!(l["userfield"], "Inbound", "{what}");
            assert_eq!(l["src_trunk_name"], "trunk", "{what}");
        }

        call(&ami, "phone-1001", "1000", "1001", 30).await;
        b.act_on_call(
            &ami,
            "PJSIP/1001-",
            "transferNumberOutbound",
            json!({"outbound": "5550123"}),
            5,
        )
        .await;
        let (tout, what) = b
            .checked(&rig, "transferNumberOutbound", |e| {
                e.legs.len() >= 2 && e.legs[1]["dst"] == "5550123"
            })
            .await;
        assert_eq!(tout.legs.len(), 2, "{what}");
        assert_eq!(tout.legs[1]["dst_trunk_name"], "trunk", "{what}");
        assert_eq!(tout.legs[1]["dstanswer"], "5550123", "{what}");
        assert_eq!(tout.legs[0]["dst_trunk_name"], "", "{what}");
        b.srv.stop().await;
    }
}

/// Lets a call whose channel `prefix…` is bridged talk `secs` s, then ends
/// every call on the rig.
async fn talk_then_hang_up(ami: &Ami, prefix: &str, secs: u64) {
    wait_bridged(ami, prefix).await;
    // The talk time is the stimulus (billed, checked): a sleep on purpose.
    tokio::time::sleep(Duration::from_secs(secs)).await;
    hang_up_everything(ami).await;
}

impl Bench {
    /// Once the channel `prefix…` is bridged and has talked 2 s, asks for
    /// `action` with `params` and `"channel"`: that channel; the call goes
    /// on `secs` s, then every call on the rig ends.
    async fn act_on_call(
        &self,
        ami: &Ami,
        prefix: &str,
        action: &str,
        mut params: Value,
        secs: u64,
    ) {
        let channel = wait_bridged(ami, prefix).await;
        // Talk times before and after the action are the stimulus (billed,
        // checked): sleeps on purpose.
        tokio::time::sleep(Duration::from_secs(2)).await;
        params["channel"] = json!(channel);
        let r = self.api(action, params).await;
        assert_eq!(r["status"], 0, "{action}: {r}");
        tokio::time::sleep(Duration::from_secs(secs)).await;
        hang_up_everything(ami).await;
    }

    /// [`Bench::entry`], checked against the billing invariants; the entry
    /// and its description for messages.
    async fn checked(
        &self,
        rig: &Rig,
        what: &str,
        pred: impl Fn(&Entry) -> bool,
    ) -> (Entry, String) {
        let e = self.entry(what, pred).await;
        check_billing(&e, rig);
        let text = e.describe();
        (e, text)
    }
}

/// Waits until a channel whose name starts with `prefix` is in a bridge;
/// its name.
async fn wait_bridged(ami: &Ami, prefix: &str) -> String {
    wait_until(
        format!("a bridged channel {prefix}*"),
        Duration::from_secs(15),
        async || {
            let r = ami.action("CoreShowChannels", &[]).await.unwrap();
            let channels: Vec<&asterisk::ami::Message> = r
                .events
                .iter()
                .filter(|e| e.event() == Some("CoreShowChannel"))
                .collect();
            match channels.iter().find(|e| {
                e.get("Channel").is_some_and(|c| c.starts_with(prefix))
                    && e.get("BridgeId").is_some_and(|b| !b.is_empty())
            }) {
                Some(c) => Ok(c.get("Channel").unwrap_or("").to_owned()),
                None => Err(channels
                    .iter()
                    .map(|c| {
                        format!(
                            "{} bridge {:?}",
                            c.get("Channel").unwrap_or(""),
                            c.get("BridgeId").unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()),
            }
        },
    )
    .await
}

/// A simulated caller (phone-1001) that dials `number` and, once answered,
/// keys the feature code `code` after `wait1` s, then `digits` (a transfer
/// target), then stays `wait` s.
async fn call_with_feature(
    ami: &Ami,
    number: &str,
    code: &str,
    digits: &str,
    wait1: u32,
    wait: u32,
) {
    let vars = [
        ("RIG_CODE", code.to_owned()),
        ("RIG_DTMF", digits.to_owned()),
        ("RIG_WAIT1", wait1.to_string()),
        ("RIG_WAIT", wait.to_string()),
    ];
    originate(
        ami,
        "phone-1001",
        number,
        20_000,
        &rig_caller("feature", &vars),
    )
    .await;
}

/// Waits for the AMI event `name` (within 30 s).
async fn event(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<asterisk::ami::Message>>,
    name: &str,
) {
    event_where(rx, name, |_| true).await;
}

/// Waits for the AMI event `name` that `pred` accepts (within 30 s).
async fn event_where(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<asterisk::ami::Message>>,
    name: &str,
    pred: impl Fn(&asterisk::ami::Message) -> bool,
) {
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Ok(m)) if m.event() == Some(name) && pred(&m) => return,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("AMI events ended: {e}"),
            Err(_) => panic!("no {name} event within 30 s"),
        }
    }
}

fn types(e: &Entry) -> Vec<&str> {
    e.legs
        .iter()
        .map(|l| l["action_type"].as_str().unwrap_or(""))
        .collect()
}

/// Phone feature codes (Dial options tTkK, features.conf): an attended
/// transfer (*2), a blind transfer (#1), a call parked (#72) and retrieved
/// from its space; each is one entry whose legs bill every conversation once.
#[tokio::test]
async fn transfers_by_feature_code_and_parked_calls_are_one_entry_each() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        hang_up_everything(&ami).await;
        let b = Bench::start(&rig, db).await;
        let mut rx = ami.subscribe();

        // 1001 calls 1000 (3 s), consults 1001's other phone (6 s), hangs up:
        // 1000 and that phone talk on until the test ends the call (~3 s).
        call_with_feature(&ami, "1000", "*2", "1001", 3, 6).await;
        event(&mut rx, "AttendedTransfer").await;
        // Talk time after the transfer (the stimulus): a sleep on purpose.
        tokio::time::sleep(Duration::from_secs(3)).await;
        hang_up_everything(&ami).await;
        let (at, what) = b
            .checked(&rig, "attended transfer", |e| has_type(e, "TRANSFER"))
            .await;
        assert_eq!(types(&at), ["DIAL", "DIAL", "TRANSFER"], "{what}");
        let (talk, consult, after) = (&at.legs[0], &at.legs[1], &at.legs[2]);
        assert_eq!(
            (talk["src"].as_str(), talk["dst"].as_str()),
            (Some("1001"), Some("1000")),
            "{what}"
        );
        assert_eq!(consult["dst"], "1001", "{what}");
        assert_eq!(consult["dstanswer"], "1001", "{what}");
        assert_eq!(after["dstanswer"], "1000", "{what}");
        for l in &at.legs {
            assert_eq!(l["disposition"], "ANSWERED", "{what}");
            assert!(int(l, "billsec") >= 1, "{what}");
        }

        // The same by AMI (Atxfer: Asterisk dials the target with the
        // features.conf atxfer code): 1001's phone hangs up after consulting.
        call(&ami, "phone-1001", "1000", "1001", 8).await;
        let caller = wait_bridged(&ami, "PJSIP/1001-").await;
        // Talk time before the transfer (the stimulus): a sleep on purpose.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = ami
            .action(
                "Atxfer",
                &[
                    ("Channel", caller.as_str()),
                    ("Exten", "1001"),
                    ("Context", "from-internal"),
                ],
            )
            .await
            .unwrap();
        assert!(r.is_success(), "Atxfer: {:?}", r.response);
        event(&mut rx, "AttendedTransfer").await;
        // Talk time after the transfer (the stimulus): a sleep on purpose.
        tokio::time::sleep(Duration::from_secs(3)).await;
        hang_up_everything(&ami).await;
        let (ax, what) = b
            .checked(&rig, "attended transfer by AMI", |e| {
                has_type(e, "TRANSFER") && e.main["session"] != at.main["session"]
            })
            .await;
        assert_eq!(types(&ax), ["DIAL", "DIAL", "TRANSFER"], "{what}");
        assert_eq!(ax.legs[1]["dstanswer"], "1001", "{what}");
        assert_eq!(ax.legs[2]["dstanswer"], "1000", "{what}");

        // Blind transfer by the caller (#1 1001): the transferee's call.
        call_with_feature(&ami, "1000", "#1", "1001", 3, 6).await;
        event(&mut rx, "BlindTransfer").await;
        // Talk time after the transfer (the stimulus): a sleep on purpose.
        tokio::time::sleep(Duration::from_secs(4)).await;
        hang_up_everything(&ami).await;
        let bt = b
            .entry("blind transfer by feature code", |e| {
                e.legs.len() >= 2 && e.legs[1]["src"] == "1000" && e.legs[1]["dst"] == "1001"
            })
            .await;
        check_billing(&bt, &rig);
        assert_eq!(bt.legs.len(), 2, "{}", bt.describe());

        // 1001 parks 1000 (#72); phone 1000 retrieves it from space 701.
        call_with_feature(&ami, "1000", "#72", "", 3, 2).await;
        event(&mut rx, "ParkedCall").await;
        // Time parked, then talk time after the retrieval (the stimulus):
        // sleeps on purpose.
        tokio::time::sleep(Duration::from_secs(2)).await;
        call(&ami, "phone-1000", "701", "1000", 3).await;
        event(&mut rx, "UnParkedCall").await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        hang_up_everything(&ami).await;
        let (pk, what) = b
            .checked(&rig, "parked call", |e| has_type(e, "PARKEDCALL"))
            .await;
        assert_eq!(types(&pk), ["DIAL", "PARK", "PARKEDCALL"], "{what}");
        assert_eq!(pk.legs[2]["dst"], "701", "{what}");
        assert!(int(&pk.legs[1], "billsec") >= 1, "the time parked: {what}");
        b.srv.stop().await;
    }
}

/// Pickup (*8), a conference room, follow-me and forwarding: one entry per
/// call, typed by the flow.
#[tokio::test]
async fn pickup_conference_followme_and_forwarded_calls_are_one_entry_each() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        hang_up_everything(&ami).await;
        let b = Bench::start(&rig, db).await;
        let mut rx = ami.subscribe();

        // 1001 calls 1099 (never answers); phone 1000 picks it up.
        call(&ami, "phone-1001", "1099", "1001", 8).await;
        // Picked up once 1099 rings.
        event_where(&mut rx, "Newstate", |m| {
            m.get("ChannelStateDesc") == Some("Ringing")
                && m.get("Channel")
                    .is_some_and(|c| c.starts_with("PJSIP/1099-"))
        })
        .await;
        call(&ami, "phone-1000", "*8", "1000", 12).await;
        let (pu, what) = b.checked(&rig, "pickup", |e| has_type(e, "PICKUP")).await;
        assert_eq!(pu.legs.len(), 2, "{what}");
        assert_eq!(pu.legs[0]["disposition"], "NO ANSWER", "{what}");
        assert_eq!(pu.legs[1]["dstanswer"], "1000", "{what}");
        assert!(
            text(&pu.legs[1], "recordfiles").contains("-1001-1099.wav@"),
            "the caller's recording: {what}"
        );
        hang_up_everything(&ami).await;

        // Three callers in room 800 for 9, 6 and 3 s: each billed its stay.
        // Joins 1 s apart (the stimulus: pacing on purpose).
        call(&ami, "phone-1001", "800", "1001", 9).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        call(&ami, "phone-1000", "800", "1000", 6).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        call(&ami, "phone-1000", "800", "1000", 3).await;
        // Follow-me 6500 (1099 rings 4 s, then 1000 answers); forwarding.
        call(&ami, "phone-1001", "6500", "1001", 5).await;
        call(&ami, "phone-1001", "*611099", "1001", 4).await;
        call(&ami, "phone-1001", "*621099", "1001", 4).await;
        call(&ami, "phone-1001", "*631099", "1001", 4).await;

        let stays = wait_until(
            "three conference calls",
            Duration::from_secs(30),
            async || {
                let conf: Vec<Entry> = b
                    .entries()
                    .await
                    .into_iter()
                    .filter(|e| has_type(e, "CONFERENCE[800]"))
                    .collect();
                if conf.len() == 3 {
                    Ok(conf)
                } else {
                    Err(conf.iter().map(Entry::describe).collect::<Vec<_>>())
                }
            },
        )
        .await;
        assert_eq!(stays.len(), 3, "three conference calls");
        let mut secs: Vec<i64> = stays
            .iter()
            .map(|e| {
                check_billing(e, &rig);
                assert_eq!(e.legs.len(), 1, "{}", e.describe());
                assert_eq!(e.legs[0]["dstanswer"], "800", "{}", e.describe());
                int(&e.legs[0], "billsec")
            })
            .collect();
        secs.sort();
        for (got, want) in secs.iter().zip([3, 6, 9]) {
            assert!((got - want).abs() <= 1, "each stay billed: {secs:?}");
        }

        let (fm, what) = b
            .checked(&rig, "follow-me", |e| has_type(e, "FOLLOWME"))
            .await;
        assert_eq!(fm.legs.len(), 2, "{what}");
        assert_eq!(fm.legs[0]["disposition"], "NO ANSWER", "{what}");
        assert_eq!(fm.legs[0]["dstchannel_ext"], "1099", "{what}");
        assert_eq!(fm.legs[1]["dstanswer"], "1000", "{what}");
        for l in &fm.legs {
            assert_eq!(l["dst"], "6500", "{what}");
        }

        // Always forwarded to 1000; always out through the trunk; forwarded
        // after no answer (the unanswered ring, then the forward).
        let always = b
            .entry("forwarded to 1000", |e| {
                e.legs.len() == 1
                    && e.legs[0]["action_type"] == "CALLFORWARD[1099]"
                    && e.legs[0]["dstanswer"] == "1000"
                    && e.legs[0]["dst_trunk_name"] == ""
            })
            .await;
        check_billing(&always, &rig);
        let (out, what) = b
            .checked(&rig, "forwarded out", |e| {
                e.legs.iter().any(|l| {
                    l["action_type"] == "CALLFORWARD[1099]" && l["dst_trunk_name"] == "trunk"
                })
            })
            .await;
        assert_eq!(out.legs.len(), 1, "{what}");
        assert_eq!(out.legs[0]["dstanswer"], "5550123", "{what}");
        assert_eq!(out.legs[0]["userfield"], "Internal", "{what}");
        let (later, what) = b
            .checked(&rig, "forwarded after no answer", |e| {
                e.legs.len() >= 2
                    && e.legs[0]["dst"] == "1099"
                    && e.legs[0]["dcontext"] == "ext-local-fwd"
            })
            .await;
        assert_eq!(types(&later), ["DIAL", "CALLFORWARD[1099]"], "{what}");
        assert_eq!(later.legs[0]["disposition"], "NO ANSWER", "{what}");
        assert_eq!(later.legs[1]["dstanswer"], "1000", "{what}");
        b.srv.stop().await;
    }
}

/// Three calls of the same caller to the same extension in the same second:
/// three recordings, each its own file (pbxgate-record takes the next
/// second for a name already given), each named by one entry.
#[tokio::test]
async fn simultaneous_calls_of_one_pair_get_their_own_recordings() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    let db = dbs().await.remove(0);
    let ami = connected_ami(&rig).await;
    hang_up_everything(&ami).await;
    let b = Bench::start(&rig, db).await;
    for _ in 0..3 {
        call(&ami, "phone-1001", "1000", "1001", 3).await;
    }
    let es = wait_until(
        "three answered calls",
        Duration::from_secs(30),
        async || {
            let es: Vec<Entry> = b
                .entries()
                .await
                .into_iter()
                .filter(|e| e.legs[0]["dst"] == "1000" && e.legs[0]["disposition"] == "ANSWERED")
                .collect();
            if es.len() == 3 {
                Ok(es)
            } else {
                Err(es.iter().map(Entry::describe).collect::<Vec<_>>())
            }
        },
    )
    .await;
    let mut files = Vec::new();
    for e in &es {
        check_billing(e, &rig);
        files.push(text(&e.legs[0], "recordfiles").to_owned());
    }
    assert_eq!(files.len(), 3, "three answered calls");
    files.sort();
    files.dedup();
    assert_eq!(files.len(), 3, "three files: {files:?}");
    b.srv.stop().await;
}

/// Seconds each carrier-side channel for `number` was up (Newstate Up to
/// Hangup), as the carrier would bill them, from the rig's AMI events.
struct Carrier {
    up: std::collections::HashMap<String, tokio::time::Instant>,
    exten: std::collections::HashMap<String, String>,
    billed: std::collections::HashMap<String, f64>,
}

impl Carrier {
    fn new() -> Carrier {
        Carrier {
            up: Default::default(),
            exten: Default::default(),
            billed: Default::default(),
        }
    }

    fn see(&mut self, m: &asterisk::ami::Message) {
        let (Some(uid), Some(ev)) = (m.get("Uniqueid"), m.event()) else {
            return;
        };
        match ev {
            "Newchannel" if m.get("Context") == Some("rig-sim") => {
                self.exten
                    .insert(uid.to_owned(), m.get("Exten").unwrap_or("").to_owned());
            }
            "Newstate" if m.get("ChannelState") == Some("6") && self.exten.contains_key(uid) => {
                self.up.insert(uid.to_owned(), tokio::time::Instant::now());
            }
            "Hangup" => {
                if let (Some(t), Some(exten)) = (self.up.remove(uid), self.exten.get(uid)) {
                    *self.billed.entry(exten.clone()).or_default() += t.elapsed().as_secs_f64();
                }
            }
            _ => {}
        }
    }
}

/// Calls from the trunk through a queue and an IVR, and calls out through
/// the trunk (dialled and forwarded): the inbound legs carry the trunk and
/// the direction; the outbound trunk legs' billsec adds up to the time the
/// carrier's side was connected.
#[tokio::test]
async fn trunk_calls_through_flows_and_the_carriers_time() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        hang_up_everything(&ami).await;
        let b = Bench::start(&rig, db).await;
        let mut rx = ami.subscribe();
        let carrier = std::sync::Arc::new(std::sync::Mutex::new(Carrier::new()));
        let watch = carrier.clone();
        let watcher = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(m) => watch.lock().unwrap().see(&m),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        panic!("{n} AMI events missed")
                    }
                    Err(_) => return,
                }
            }
        });
        call(&ami, "carrier", "5556000", "+15557200001", 6).await;
        call_keying(&ami, "carrier", "5557000", "1000", 6).await;
        call(&ami, "phone-1001", "95550123", "1001", 5).await;
        call(&ami, "phone-1001", "*621099", "1001", 4).await;

        let (q, what) = b
            .checked(&rig, "inbound queue", |e| has_type(e, "QUEUE[6000]"))
            .await;
        assert_eq!(q.legs.len(), 1, "{what}");
        let leg = &q.legs[0];
        assert_eq!(leg["userfield"], "Inbound", "{what}");
        assert_eq!(leg["src_trunk_name"], "trunk", "{what}");
        assert_eq!(leg["dst"], "6000", "{what}");
        assert_eq!(leg["dstanswer"], "1000", "{what}");

        let (ivr, what) = b
            .checked(&rig, "inbound IVR", |e| has_type(e, "IVR[7000]"))
            .await;
        assert_eq!(types(&ivr), ["IVR[7000]", "DIAL"], "{what}");
        for l in &ivr.legs {
            assert_eq!(l["userfield"], "Inbound", "{what}");
            assert_eq!(l["src_trunk_name"], "trunk", "{what}");
        }
        assert_eq!(ivr.legs[1]["dstanswer"], "1000", "{what}");

        // Both outbound calls stored, then the carrier's side of each.
        let out = |e: &Entry| {
            e.legs
                .iter()
                .any(|l| l["dst_trunk_name"] == "trunk" && l["dst"] == "5550123")
        };
        let outs = wait_until(
            "both outbound calls stored",
            Duration::from_secs(40),
            async || {
                let outs: Vec<Entry> = b.entries().await.into_iter().filter(out).collect();
                if outs.len() == 2 {
                    Ok(outs)
                } else {
                    Err(outs.iter().map(Entry::describe).collect::<Vec<_>>())
                }
            },
        )
        .await;
        let legs_billed: i64 = outs
            .iter()
            .flat_map(|e| e.legs.iter())
            .filter(|l| l["dst_trunk_name"] == "trunk")
            .map(|l| int(l, "billsec"))
            .sum();
        assert!(!watcher.is_finished(), "the event watcher stopped");
        watcher.abort();
        let carrier_secs = carrier
            .lock()
            .unwrap()
            .billed
            .get("5550123")
            .copied()
            .unwrap_or(0.0);
        assert!(
            carrier_secs > 5.0,
            "the carrier answered both: {carrier_secs}"
        );
        assert!(
            (legs_billed as f64 - carrier_secs).abs() <= 2.0,
            "trunk legs {legs_billed} s, carrier {carrier_secs:.1} s"
        );
        b.srv.stop().await;
    }
}

/// A simulated caller that dials `number` and gives up after `ms` unless
/// answered (then stays `secs`).
async fn call_giving_up(ami: &Ami, number: &str, ms: u32, secs: u32) {
    let wait = [
        ("CallerID", "1001".to_owned()),
        ("Application", "Wait".to_owned()),
        ("Data", secs.to_string()),
    ];
    originate(ami, "phone-1001", number, ms, &wait).await;
}

/// The outcomes that bill nothing (or only the PBX's own answer): a queue
/// call abandoned, a ring group nobody answers, a follow-me nobody answers,
/// a caller leaving an IVR menu, voicemail after busy, a blind transfer to a
/// busy phone.
#[tokio::test]
async fn unanswered_outcomes_of_each_flow() {
    let Some(rig) = rig() else { return };
    let _one_at_a_time = CALLS.lock().await;
    for db in dbs().await {
        let ami = connected_ami(&rig).await;
        hang_up_everything(&ami).await;
        let b = Bench::start(&rig, db).await;
        call_giving_up(&ami, "6200", 7000, 5).await;
        call_giving_up(&ami, "6401", 12_000, 5).await;
        call_giving_up(&ami, "6501", 9000, 5).await;
        call(&ami, "phone-1001", "7000", "1001", 3).await;
        call(&ami, "phone-1001", "*881098", "1001", 4).await;
        call_with_feature(&ami, "1000", "#1", "1098", 3, 4).await;

        let (q, what) = b
            .checked(&rig, "queue abandoned", |e| has_type(e, "QUEUE[6200]"))
            .await;
        assert!(!q.legs.is_empty(), "{what}");
        for l in &q.legs {
            assert_ne!(l["disposition"], "ANSWERED", "{what}");
            assert_eq!(l["dstchannel_ext"], "1099", "{what}");
            assert_eq!(l["dst"], "6200", "{what}");
            assert_eq!(l["recordfiles"], "", "{what}");
        }
        assert_eq!(q.sum("billsec"), 0, "{what}");

        let (rg, what) = b
            .checked(&rig, "ring group unanswered", |e| {
                has_type(e, "RINGGROUP[6401]")
            })
            .await;
        let mut outcomes: Vec<(&str, &str)> = rg
            .legs
            .iter()
            .map(|l| (text(l, "dstchannel_ext"), text(l, "disposition")))
            .collect();
        outcomes.sort();
        assert_eq!(
            outcomes,
            [("1098", "BUSY"), ("1099", "NO ANSWER")],
            "{what}"
        );
        assert_eq!(rg.sum("billsec"), 0, "{what}");

        let (fm, what) = b
            .checked(&rig, "follow-me unanswered", |e| {
                e.legs
                    .iter()
                    .any(|l| l["action_type"] == "FOLLOWME" && l["dst"] == "6501")
            })
            .await;
        assert_eq!(fm.legs[0]["disposition"], "NO ANSWER", "{what}");
        assert_eq!(fm.legs[0]["dstchannel_ext"], "1099", "{what}");
        assert_eq!(fm.sum("billsec"), 0, "{what}");

        let (ivr, what) = b
            .checked(&rig, "IVR left", |e| has_type(e, "IVR[7000]"))
            .await;
        assert_eq!(ivr.legs.len(), 1, "{what}");
        assert_eq!(
            ivr.legs[0]["disposition"], "ANSWERED",
            "the IVR answered: {what}"
        );
        assert_eq!(ivr.legs[0]["dst"], "7000", "{what}");
        assert!((2..=5).contains(&int(&ivr.legs[0], "billsec")), "{what}");

        let (vm, what) = b
            .checked(&rig, "voicemail after busy", |e| {
                has_type(e, "VM") && e.legs[0]["dst"] == "1098"
            })
            .await;
        assert_eq!(types(&vm), ["DIAL", "VM"], "{what}");
        assert_eq!(vm.legs[0]["disposition"], "BUSY", "{what}");
        assert_eq!(vm.legs[1]["disposition"], "ANSWERED", "{what}");

        let (bt, what) = b
            .checked(&rig, "blind transfer to a busy phone", |e| {
                e.legs.len() == 2 && e.legs[0]["dst"] == "1000" && e.legs[1]["dst"] == "1098"
            })
            .await;
        assert_eq!(bt.legs[0]["disposition"], "ANSWERED", "{what}");
        assert_eq!(bt.legs[1]["disposition"], "BUSY", "{what}");
        assert_eq!(bt.legs[1]["src"], "1000", "{what}");
        b.srv.stop().await;
    }
}
