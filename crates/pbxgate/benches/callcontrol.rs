//! Call control latencies on the real rig (scripts/rig/up.sh).
//!
//! The release `pbxgate` runs as a child process against the rig's Asterisk,
//! with call control on (timeout 120 s, so no call is accepted by the timer).
//! `BENCH_HELD` (default 50) inbound calls are placed at once from the rig's
//! carrier and held; a `/websockify` client subscribed to ActiveCallStatus
//! waits for each call's announcement (the frame naming its channel with its
//! inbound trunk).
//!
//! Rows:
//! 1. StasisStart → notify: from Asterisk's timestamp of the call entering
//!    `Stasis()` (the ARI `ChannelDialplan` event, seen by a second ARI
//!    application; milliseconds, truncated) to the websocket client's receipt
//!    of the frame (same host clock). Target: p99 <= 20 ms.
//! 2. acceptCall, all held calls at once: each request's round trip (the
//!    answer waits for ARI's `continue` to complete), and pbxgate's own
//!    decision → ARI confirmation time (`apply_us` of the recorded decision).
//! 3. The same with the calls decided one after another.
//!
//! Run with `cargo bench -p pbxgate --bench callcontrol` or `scripts/bench`.
//! Without a rig it prints why and exits 0. Exits 1 on a wrong result (a call
//! not announced, a decision refused).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "../tests/kit/tls.rs"]
mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use asterisk::ami::Ami;
use common::server::{PASSWORD, Server, api};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use store::{ConnectOptions, DecisionStore, Store};
use tokio_tungstenite::tungstenite::Message as Ws;

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    ucm::auth::hex(&Md5::digest(s.as_bytes()))
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn ws_request(ws: &mut WsStream, message: Value) -> Value {
    let id = message["transactionid"].clone();
    ws.send(Ws::text(
        json!({"type":"request","message":message}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let Some(Ok(frame)) = ws.next().await else {
            panic!("websocket closed during the handshake")
        };
        if let Ws::Text(t) = frame {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "response" && v["message"]["transactionid"] == id {
                return v["message"].clone();
            }
        }
    }
}

async fn websocket(port: u16, user: &str) -> WsStream {
    let tls = tls::raw_tls(port).await;
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://127.0.0.1:{port}/websockify"), tls)
            .await
            .expect("websocket handshake");
    let r = ws_request(
        &mut ws,
        json!({"transactionid":"1","action":"challenge","username":user,"version":"1"}),
    )
    .await;
    let challenge = r["challenge"].as_str().expect("challenge").to_owned();
    let token = md5_hex(&format!("{challenge}{PASSWORD}"));
    let r = ws_request(
        &mut ws,
        json!({"transactionid":"2","action":"login","username":user,"token":token}),
    )
    .await;
    assert_eq!(r["status"], 0, "websocket login: {r}");
    let r = ws_request(
        &mut ws,
        json!({"transactionid":"3","action":"subscribe","eventnames":["ActiveCallStatus"]}),
    )
    .await;
    assert_eq!(r["status"], 0, "subscribe: {r}");
    ws
}

/// Channel -> time (s since the epoch) the held call's announcement arrived.
fn read_announcements(mut ws: WsStream, seen: Arc<Mutex<HashMap<String, f64>>>) {
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Ws::Text(t) = frame else { continue };
            let at = now_s();
            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                continue;
            };
            let Some(list) = v["message"].as_array() else {
                continue;
            };
            for n in list {
                for item in n["eventbody"].as_array().into_iter().flatten() {
                    let trunk = item["inbound_trunk_name"].as_str().unwrap_or("");
                    if let (Some(ch), false) = (item["channel"].as_str(), trunk.is_empty()) {
                        seen.lock().unwrap().entry(ch.to_owned()).or_insert(at);
                    }
                }
            }
        }
    });
}

/// Channel -> Asterisk's timestamp (ms) of the call entering `Stasis()`:
/// the ARI `ChannelDialplan` event of that step, seen by a second ARI
/// application subscribed to every channel. ARI stamps events where they are
/// raised (the channel's thread), unlike AMI, which stamps them when its
/// own thread formats them (measured: up to several ms later under load).
async fn read_stasis(
    rig: &asterisk::testing::Rig,
    prefix: &'static str,
    seen: Arc<Mutex<HashMap<String, f64>>>,
) {
    let http = rig.http_url();
    let host = http.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let app = format!("pbxgate-bench-{}", prefix.trim_start_matches('+'));
    let request = format!(
        "ws://{host}/ari/events?app={app}&subscribeAll=true&api_key={}:{}",
        rig.get("ARI_USER"),
        rig.get("ARI_PASSWORD")
    );
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = ws.next().await {
            let Ws::Text(t) = frame else { continue };
            let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else {
                continue;
            };
            if v["type"] != "ChannelDialplan" || v["dialplan_app"] != "Stasis" {
                continue;
            }
            let caller = v["channel"]["caller"]["number"].as_str().unwrap_or("");
            let (Some(ch), Some(ts)) = (v["channel"]["name"].as_str(), v["timestamp"].as_str())
            else {
                continue;
            };
            if !caller.starts_with(prefix) {
                continue;
            }
            if let Ok(t) = jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%.f%z", ts)
                .and_then(|t| t.to_timestamp())
            {
                let secs = t.as_millisecond() as f64 / 1000.0;
                seen.lock().unwrap().entry(ch.to_owned()).or_insert(secs);
            }
        }
    });
}

/// Until Asterisk has no channel left.
async fn wait_idle(ami: &Ami) {
    for _ in 0..300 {
        if let Ok(r) = ami.action("CoreShowChannels", &[]).await
            && r.events
                .iter()
                .all(|e| e.event() != Some("CoreShowChannel"))
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Round {
    notify_ms: Vec<f64>,
    request_ms: Vec<f64>,
    apply_ms: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn round(
    rig: &asterisk::testing::Rig,
    ami: &Ami,
    srv: &Server,
    http: &reqwest::Client,
    cookie: &str,
    store: &Store,
    n: usize,
    prefix: &'static str,
    concurrent: bool,
) -> Result<Round, String> {
    let stasis = Arc::new(Mutex::new(HashMap::new()));
    let announced = Arc::new(Mutex::new(HashMap::new()));
    read_stasis(rig, prefix, stasis.clone()).await;
    read_announcements(websocket(srv.port, "cc").await, announced.clone());
    for i in 0..n {
        let r = ami
            .action(
                "Originate",
                &[
                    ("Channel", "PJSIP/5550100@carrier"),
                    ("CallerID", &format!("\"Bench\" <{prefix}{i:04}>")),
                    ("Application", "Wait"),
                    ("Data", "1"),
                    ("Timeout", "120000"),
                    ("Async", "true"),
                ],
            )
            .await
            .map_err(|e| format!("Originate: {e}"))?;
        if !r.is_success() {
            return Err(format!("Originate refused: {:?}", r.response));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let channels: Vec<String> = loop {
        let s = stasis.lock().unwrap().clone();
        let a = announced.lock().unwrap().clone();
        let ready: Vec<String> = s.keys().filter(|c| a.contains_key(*c)).cloned().collect();
        if ready.len() >= n {
            break ready;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "after 60 s: {} calls held, {} announced on /websockify, {} both",
                s.len(),
                a.len(),
                ready.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let s = stasis.lock().unwrap().clone();
    let a = announced.lock().unwrap().clone();
    let notify_ms = channels.iter().map(|c| (a[c] - s[c]) * 1000.0).collect();

    let decide = |ch: String| async move {
        let t = Instant::now();
        let r = api(
            http,
            &srv.url(),
            json!({"action":"acceptCall","cookie":cookie,"channel":ch}),
        )
        .await?;
        if r["status"] != 0 {
            return Err(format!("acceptCall {ch}: {r}"));
        }
        Ok::<f64, String>(t.elapsed().as_secs_f64() * 1000.0)
    };
    let mut request_ms = Vec::with_capacity(n);
    if concurrent {
        for r in futures_util::future::join_all(channels.iter().cloned().map(decide)).await {
            request_ms.push(r?);
        }
    } else {
        for ch in channels.iter().cloned() {
            request_ms.push(decide(ch).await?);
        }
    }
    // The decisions are recorded asynchronously.
    let mut apply_ms = Vec::new();
    for _ in 0..100 {
        let rows = store
            .recent_decisions(10_000)
            .await
            .map_err(|e| e.to_string())?;
        apply_ms = rows
            .iter()
            .filter(|d| channels.contains(&d.channel) && d.outcome == "accepted")
            .map(|d| d.apply_us as f64 / 1000.0)
            .collect();
        if apply_ms.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if apply_ms.len() != n {
        return Err(format!("{} of {n} decisions recorded", apply_ms.len()));
    }
    Ok(Round {
        notify_ms,
        request_ms,
        apply_ms,
    })
}

#[tokio::main]
async fn main() {
    let Some(rig) = asterisk::testing::rig() else {
        println!("callcontrol bench skipped: no Asterisk rig (scripts/rig/up.sh)");
        return;
    };
    let n = common::env_number("BENCH_HELD", 50, 1, 500) as usize;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let extra = common::server::call_control_config(&rig, 120);
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(n)
        .build()
        .unwrap();
    let srv = Server::start(dir.path(), "callcontrol", &db, &extra, &http)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Until ARI is up.
    let health = srv.url().replace("/api", "/healthz");
    for _ in 0..200 {
        let h: Value = http
            .get(&health)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["ari"] == "up" && h["ami"] == "up" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cookie = common::server::login_as(&http, &srv.url(), "cc")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Warm n keep-alive connections, as a CTI client with n workers would have.
    let url = srv.url();
    futures_util::future::join_all((0..n).map(|_| {
        api(
            &http,
            &url,
            json!({"action":"getSystemStatus","cookie":cookie}),
        )
    }))
    .await;
    let ami = Ami::start(rig.ami_config());
    let store = Store::connect(&db, &ConnectOptions::default())
        .await
        .unwrap();

    println!(
        "call control, {n} held inbound calls on the rig (Asterisk {}), release pbxgate, SQLite",
        rig.get("ASTERISK_VERSION")
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p99", "max"
    );
    let mut failed = false;
    let mut notify_p99 = f64::NAN;
    wait_idle(&ami).await;
    for (label, prefix, concurrent) in [
        ("accepted all at once", "+1555910", true),
        ("accepted one after another", "+1555920", false),
    ] {
        match round(
            &rig, &ami, &srv, &http, &cookie, &store, n, prefix, concurrent,
        )
        .await
        {
            Ok(mut r) => {
                let row = |name: &str, v: &mut Vec<f64>| {
                    println!(
                        "{:<44} {:>9.2} {:>9.2} {:>9.2}",
                        name,
                        common::percentile(v, 0.5),
                        common::percentile(v, 0.99),
                        common::percentile(v, 1.0)
                    );
                };
                row(
                    &format!("StasisStart -> notify ({label})"),
                    &mut r.notify_ms,
                );
                notify_p99 = notify_p99.max(common::percentile(&mut r.notify_ms, 0.99));
                row(&format!("acceptCall request ({label})"), &mut r.request_ms);
                row("  decision -> ARI continue done", &mut r.apply_ms);
            }
            Err(e) => {
                println!("{label}: FAILED: {e}");
                failed = true;
            }
        }
        // Let the accepted calls finish (and their CDRs be stored) before the next round.
        wait_idle(&ami).await;
    }
    println!(
        "target StasisStart -> notify p99 <= 20 ms: {}",
        if notify_p99 <= 20.0 { "met" } else { "NOT MET" }
    );
    srv.stop();
    if failed {
        std::process::exit(1);
    }
}
