#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use store::{CdrStore, NewCdr};
use ucm::cdrapi::encode::Profile;

use super::*;

/// Records what it is sent; refuses while `down`.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Payload>>,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Transport for &Recorder {
    async fn send(&self, payload: &Payload) -> Result<(), String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        self.sent.lock().unwrap().push(payload.clone());
        Ok(())
    }
}

fn cdr(i: usize) -> NewCdr {
    let mut record = ucm::cdr::CdrRecord::new();
    record.set("src", format!("{}", 1000 + i));
    record.set("dst", "2000");
    record.set("session", format!("s{i}"));
    NewCdr {
        dedupe_key: format!("k{i}"),
        start_ms: 1_795_736_002_000,
        call_ms: 1_795_736_002_000,
        end_ms: 1_795_736_007_000,
        record,
    }
}

async fn store(dir: &std::path::Path) -> Store {
    Store::connect(
        &store::testing::sqlite_url(dir),
        &store::ConnectOptions::default(),
    )
    .await
    .unwrap()
}

fn receiver(framing: Framing, batch: u32) -> Receiver {
    Receiver {
        name: "billing".into(),
        format: Format::Json,
        options: Options {
            profile: Profile::Ucm630x,
            ..Options::default()
        },
        framing,
        batch,
        filter: Filter::default(),
        grouped: false,
    }
}

fn delivery<'a>(s: &Store, r: Receiver, holder: &str, t: &'a Recorder) -> Delivery<&'a Recorder> {
    Delivery {
        store: s.clone(),
        receiver: r,
        holder: holder.into(),
        transport: t,
        lease: Duration::from_secs(10),
        held_until: Default::default(),
    }
}

fn srcs(p: &Payload) -> Vec<String> {
    String::from_utf8(p.body.clone())
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["src"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn records_go_out_in_order_one_line_each_then_nothing_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    let batch: Vec<NewCdr> = (0..5).map(cdr).collect();
    s.insert_cdrs_queued(&batch, &["billing".into()], 1)
        .await
        .unwrap();
    let t = Recorder::default();
    let d = delivery(&s, receiver(Framing::Lines, 2), "node-a", &t);
    assert_eq!(d.step(10).await.unwrap(), Step::Delivered(2));
    assert_eq!(d.step(20).await.unwrap(), Step::Delivered(2));
    assert_eq!(d.step(30).await.unwrap(), Step::Delivered(1));
    assert_eq!(d.step(40).await.unwrap(), Step::Idle);
    let sent = t.sent.lock().unwrap();
    let all: Vec<String> = sent.iter().flat_map(srcs).collect();
    assert_eq!(all, ["1000", "1001", "1002", "1003", "1004"]);
    assert_eq!(sent[0].records, 2);
    assert_eq!(sent[0].idempotency_key, "1-2", "the first and last AcctId");
}

#[tokio::test]
async fn a_refused_delivery_waits_its_backoff_and_is_sent_again_first() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    s.insert_cdrs_queued(&(0..3).map(cdr).collect::<Vec<_>>(), &["billing".into()], 1)
        .await
        .unwrap();
    let t = Recorder::default();
    t.down.store(true, Ordering::SeqCst);
    let d = delivery(&s, receiver(Framing::Batch, 2), "node-a", &t);
    match d.step(1_000).await.unwrap() {
        Step::Failed {
            records,
            retry_in,
            error,
        } => {
            assert_eq!((records, retry_in), (2, Duration::from_secs(1)));
            assert_eq!(error, "connection refused");
        }
        other => panic!("{other:?}"),
    }
    t.down.store(false, Ordering::SeqCst);
    // Within the backoff: nothing, and nothing behind overtakes it.
    assert_eq!(d.step(1_500).await.unwrap(), Step::Idle);
    assert_eq!(d.step(2_000).await.unwrap(), Step::Delivered(2));
    assert_eq!(d.step(2_100).await.unwrap(), Step::Delivered(1));
    let sent = t.sent.lock().unwrap();
    let first: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    let srcs: Vec<&str> = first["cdr_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["src"].as_str().unwrap())
        .collect();
    assert_eq!(srcs, ["1000", "1001"]);
}

#[tokio::test]
async fn only_the_lease_holder_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    s.insert_cdrs_queued(&(0..2).map(cdr).collect::<Vec<_>>(), &["billing".into()], 1)
        .await
        .unwrap();
    let (ta, tb) = (Recorder::default(), Recorder::default());
    let a = delivery(&s, receiver(Framing::Lines, 1), "node-a", &ta);
    let b = delivery(&s, receiver(Framing::Lines, 1), "node-b", &tb);
    assert_eq!(a.step(1_000).await.unwrap(), Step::Delivered(1));
    assert_eq!(b.step(1_100).await.unwrap(), Step::NotHolder);
    // node-a stops renewing (it died): after the lease, node-b goes on.
    assert_eq!(b.step(12_000).await.unwrap(), Step::Delivered(1));
    assert_eq!(
        ta.sent.lock().unwrap().len() + tb.sent.lock().unwrap().len(),
        2
    );
}

#[test]
fn backoff_doubles_up_to_five_minutes() {
    let secs: Vec<u64> = (0..12).map(|a| backoff(a).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
}

#[tokio::test]
async fn grouped_receivers_get_a_calls_legs_as_one_entry_never_split_across_steps() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path()).await;
    // Two calls: three legs of "a", then two of "b".
    let legs: Vec<NewCdr> = (0..5)
        .map(|i| {
            let mut c = cdr(i);
            c.record.set("session", if i < 3 { "a" } else { "b" });
            c
        })
        .collect();
    s.insert_cdrs_queued(&legs, &["billing".into()], 1)
        .await
        .unwrap();
    let t = Recorder::default();
    let mut r = receiver(Framing::Lines, 4);
    r.grouped = true;
    let d = delivery(&s, r, "node-a", &t);
    // Four read, the fourth is "b"'s first leg: it waits for the next step.
    assert_eq!(d.step(10).await.unwrap(), Step::Delivered(3));
    assert_eq!(d.step(20).await.unwrap(), Step::Delivered(2));
    assert_eq!(d.step(30).await.unwrap(), Step::Idle);
    let sent = t.sent.lock().unwrap();
    let entries: Vec<serde_json::Value> = sent
        .iter()
        .map(|p| serde_json::from_slice(&p.body).unwrap())
        .collect();
    assert_eq!(entries.len(), 2, "one line per call");
    let subs = |e: &serde_json::Value| {
        e.as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("sub_cdr_"))
            .count()
    };
    assert!(entries[0].get("main_cdr").is_some(), "{}", entries[0]);
    assert_eq!((subs(&entries[0]), subs(&entries[1])), (3, 2));
}
