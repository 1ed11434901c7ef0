//! CDR ingest rate: a recorded-style AMI event stream replayed through the
//! production path — codec (`asterisk::ami::codec::Decoder`) → calls
//! (`pbxgate::ingest::assemble`, fed every event, on the stream's clock: one
//! message per 50 µs) → legs (`pbxgate::ingest::flow`) → model
//! (`pbxgate::ingest::derive`) → store (`store::CdrStore::insert_cdrs`) —
//! into SQLite and into PostgreSQL.
//!
//! The stream is generated before timing, seeded and deterministic: `Cdr`
//! events shaped like those of the project's Asterisk 22 rig (internal,
//! outbound and inbound calls; ANSWERED / NO ANSWER / BUSY / FAILED), with
//! about 10% other events (`Newchannel`, `VarSet`, `Newstate`, `Hangup`) that
//! the ingest ignores. It is fed to the decoder in 64 KiB chunks, as a socket
//! read would deliver it.
//!
//! As in `src/ingest/mod.rs`, decoding and deriving run in one tokio task and
//! the store writes in another, joined by a bounded channel holding
//! `2 × BATCH_MAX` records (here: 2 batches of 5000). Every batch is one
//! `insert_cdrs` call (one transaction). Time runs from the first byte fed to
//! the last batch committed; afterwards `cdr_count` must equal the number of
//! CDRs generated (every record stored exactly once).
//!
//! Rows: SQLite (a file in a temporary directory, the store's production
//! pragmas), PostgreSQL (a fresh database on the server named by
//! `PBXGATE_TEST_POSTGRES_URL`, e.g. from `scripts/postgres.sh start`; skipped
//! when unset), and decode+derive alone without a store. Target: >= 20,000
//! CDRs/s per backend.
//!
//! The note of each backend row gives the share of the wall time the writer
//! spent inside `insert_cdrs` and the decoder task spent decoding and deriving.
//! Informational rows (`BENCH_DIAGNOSE`: unset = only when a target is missed,
//! `1` = always, `0` = never) show where the time goes: the decoder alone, and
//! per backend `insert_cdrs` alone on the first 50,000 CDRs (derived
//! beforehand, untimed) as the ingest calls it (batches of 5000), with batches
//! of 20 (the cost of a commit), with batches of 1000, and with two batches in
//! flight at once.
//!
//! Each row gets a fresh database, removed afterwards (PostgreSQL: `DROP
//! DATABASE` through `psql` when it is installed; otherwise the name is
//! printed).
//!
//! Environment: `BENCH_CDRS` (number of `Cdr` events, default 200000),
//! `BENCH_DIAGNOSE`, `PBXGATE_TEST_POSTGRES_URL`.
//! Run with `cargo bench -p pbxgate --bench ingest` or `scripts/bench`.
//! Exits non-zero (panics) if a record is lost or stored twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Rng, diagnose, drop_postgres_database, env_number, remove_sqlite_files};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asterisk::ami::codec::{DEFAULT_MAX_MESSAGE, Decoder, Frame};
use pbxgate::ingest::assemble::{Assembler, Finished};
use pbxgate::ingest::derive::AsteriskCdr;
use store::{Backend, CdrStore, ConnectOptions, NewCdr, Store};
use tokio::sync::mpsc;

/// CDRs per second each backend must sustain.
const TARGET_RATE: f64 = 20_000.0;
/// Records per `insert_cdrs` call: `BATCH_MAX` in src/ingest/mod.rs.
const BATCH: usize = 5000;
/// Batches the channel between the decoder task and the writer task holds
/// (production: `BATCH_MAX * 2` records).
const CHANNEL_BATCHES: usize = 2;
/// Bytes handed to the decoder at a time, as one socket read.
const CHUNK: usize = 64 * 1024;
const SEED: u64 = 0x5eed_cd12_2026_1127;
const BANNER: &str = "Asterisk Call Manager/11.0.0\r\n";
/// Epoch second of the first event (2026-11-27 00:48:20 UTC, as on the rig).
const FIRST_EPOCH: i64 = 1_795_740_500;
const POSTGRES_ENV: &str = "PBXGATE_TEST_POSTGRES_URL";
/// CDRs each informational store row writes (at most), to bound its run time.
const DIAGNOSE_CDRS: usize = 50_000;

// ---------------------------------------------------------------------------
// The event stream.

struct Stream {
    bytes: Arc<[u8]>,
    cdrs: usize,
    others: usize,
}

fn local_time(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .expect("time in range")
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Internal,
    Outbound,
    Inbound,
}

/// One call, as the channel events and its `Cdr` event describe it.
struct Call {
    direction: Direction,
    disposition: &'static str,
    src: String,
    dst: String,
    clid: String,
    channel: String,
    dstchannel: String,
    dcontext: &'static str,
    lastdata: String,
    start: i64,
    answer: Option<i64>,
    end: i64,
    uniqueid: String,
    did: String,
}

const NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
];

impl Call {
    /// A call that ends at `end`; `seq` and `chan` are Asterisk's global
    /// uniqueid sequence and channel-name counter.
    fn random(rng: &mut Rng, end: i64, seq: &mut u64, chan: &mut u32) -> Call {
        let direction = match rng.below(100) {
            0..70 => Direction::Internal,
            70..85 => Direction::Outbound,
            _ => Direction::Inbound,
        };
        let disposition = match rng.below(100) {
            0..70 => "ANSWERED",
            70..85 => "NO ANSWER",
            85..93 => "BUSY",
            _ => "FAILED",
        };
        let (ring, talk) = match disposition {
            "ANSWERED" => (1 + rng.below(12) as i64, 1 + rng.below(600) as i64),
            "NO ANSWER" => (8 + rng.below(23) as i64, 0),
            _ => (0, 0),
        };
        let start = end - ring - talk;
        let answer = (disposition == "ANSWERED").then_some(start + ring);
        *seq += 1;
        let uniqueid = format!("{start}.{seq}");
        *seq += 1; // the callee's channel
        let mut channel_name = |endpoint: &str| {
            *chan += 1;
            format!("PJSIP/{endpoint}-{chan:08x}")
        };
        let ext_a = format!("{}", 1000 + rng.below(100));
        let mut ext_b = format!("{}", 1000 + rng.below(100));
        if ext_b == ext_a {
            ext_b = format!("{}", 1000 + (rng.below(99) + ext_a.len() as u64) % 100);
        }
        let host = format!("192.168.{}.{}", 1 + rng.below(4), 10 + rng.below(200));
        match direction {
            Direction::Internal => {
                let channel = channel_name(&ext_a);
                // A callee without a registered phone: no channel at all.
                let unreachable = disposition == "FAILED" && rng.below(2) == 0;
                let (dstchannel, lastdata) = if unreachable {
                    (String::new(), format!("PJSIP/{ext_b},8"))
                } else {
                    (
                        channel_name(&ext_b),
                        format!("PJSIP/{ext_b}/sip:{ext_b}@{host}:5060,30"),
                    )
                };
                Call {
                    direction,
                    disposition,
                    clid: format!("\"{} {ext_a}\" <{ext_a}>", rng.pick(NAMES)),
                    src: ext_a,
                    dst: ext_b,
                    channel,
                    dstchannel,
                    dcontext: "ext-local",
                    lastdata,
                    start,
                    answer,
                    end,
                    uniqueid,
                    did: String::new(),
                }
            }
            Direction::Outbound => {
                let number = format!("555{:04}", rng.below(10_000));
                Call {
                    direction,
                    disposition,
                    clid: format!("\"{} {ext_a}\" <{ext_a}>", rng.pick(NAMES)),
                    channel: channel_name(&ext_a),
                    dstchannel: channel_name("trunk"),
                    lastdata: format!("PJSIP/{number}@trunk,60"),
                    src: ext_a,
                    dst: number,
                    dcontext: "outbound-route",
                    start,
                    answer,
                    end,
                    uniqueid,
                    did: String::new(),
                }
            }
            Direction::Inbound => {
                let caller = format!("+1555{:07}", rng.below(10_000_000));
                let clid = if rng.below(3) == 0 {
                    format!("<{caller}>")
                } else {
                    format!("\"{}\" <{caller}>", rng.pick(NAMES))
                };
                Call {
                    direction,
                    disposition,
                    clid,
                    channel: channel_name("trunk"),
                    dstchannel: channel_name(&ext_b),
                    lastdata: format!("PJSIP/{ext_b}/sip:{ext_b}@{host}:5060,30"),
                    did: format!("55501{}", &ext_b[2..]),
                    src: caller,
                    dst: ext_b,
                    dcontext: "ext-did",
                    start,
                    answer,
                    end,
                    uniqueid,
                }
            }
        }
    }

    fn write_cdr(&self, out: &mut String, timestamp: &str, sequence: u64) {
        let direction = match self.direction {
            Direction::Internal => "Internal",
            Direction::Outbound => "Outbound",
            Direction::Inbound => "Inbound",
        };
        let (src_trunk, dst_trunk) = match self.direction {
            Direction::Internal => ("", ""),
            Direction::Outbound => ("", "trunk"),
            Direction::Inbound => ("trunk", ""),
        };
        let duration = self.end - self.start;
        let billsec = self.answer.map_or(0, |a| self.end - a);
        // MixMonitor starts before Dial: a (possibly empty) file unless the dial failed.
        let recordfiles = if self.disposition == "FAILED" {
            String::new()
        } else {
            format!(
                "{}/auto-{}-{}-{}.wav@",
                &local_time(self.start)[..7],
                self.start,
                self.src,
                self.dst
            )
        };
        let answer = self.answer.map(local_time).unwrap_or_default();
        write!(
            out,
            "Event: Cdr\r\n\
             Privilege: cdr,all\r\n\
             Timestamp: {timestamp}\r\n\
             AccountCode: \r\n\
             Source: {src}\r\n\
             Destination: {dst}\r\n\
             DestinationContext: {dcontext}\r\n\
             CallerID: {clid}\r\n\
             Channel: {channel}\r\n\
             DestinationChannel: {dstchannel}\r\n\
             LastApplication: Dial\r\n\
             LastData: {lastdata}\r\n\
             StartTime: {start}\r\n\
             AnswerTime: {answer}\r\n\
             EndTime: {end}\r\n\
             Duration: {duration}\r\n\
             BillableSeconds: {billsec}\r\n\
             Disposition: {disposition}\r\n\
             AMAFlags: DOCUMENTATION\r\n\
             UniqueID: {uniqueid}\r\n\
             UserField: \r\n\
             LinkedID: {uniqueid}\r\n\
             Sequence: {sequence}\r\n\
             PbxDirection: {direction}\r\n\
             PbxActionType: DIAL\r\n\
             PbxSrcTrunk: {src_trunk}\r\n\
             PbxDstTrunk: {dst_trunk}\r\n\
             PbxDid: {did}\r\n\
             PbxRecordFiles: {recordfiles}\r\n\
             \r\n",
            src = self.src,
            dst = self.dst,
            dcontext = self.dcontext,
            clid = self.clid,
            channel = self.channel,
            dstchannel = self.dstchannel,
            lastdata = self.lastdata,
            start = local_time(self.start),
            end = local_time(self.end),
            disposition = self.disposition,
            uniqueid = self.uniqueid,
            did = self.did,
        )
        .unwrap();
    }

    /// A channel event of this call, which the ingest must skip.
    fn write_other(&self, rng: &mut Rng, out: &mut String, timestamp: &str) {
        let (state, desc) = if self.answer.is_some() {
            (6, "Up")
        } else {
            (5, "Ringing")
        };
        let caller = self
            .clid
            .rsplit('<')
            .next()
            .unwrap_or("")
            .trim_end_matches('>');
        let common = format!(
            "Privilege: call,all\r\n\
             Timestamp: {timestamp}\r\n\
             Channel: {channel}\r\n\
             ChannelState: {state}\r\n\
             ChannelStateDesc: {desc}\r\n\
             CallerIDNum: {caller}\r\n\
             CallerIDName: <unknown>\r\n\
             ConnectedLineNum: {dst}\r\n\
             ConnectedLineName: <unknown>\r\n\
             Language: en\r\n\
             AccountCode: \r\n\
             Context: {dcontext}\r\n\
             Exten: {dst}\r\n\
             Priority: 2\r\n\
             Uniqueid: {uniqueid}\r\n\
             Linkedid: {uniqueid}\r\n",
            channel = self.channel,
            dst = self.dst,
            dcontext = self.dcontext,
            uniqueid = self.uniqueid,
        );
        match rng.below(4) {
            0 => write!(out, "Event: Newchannel\r\n{common}\r\n"),
            1 => write!(
                out,
                "Event: VarSet\r\n{}Variable: CDR(pbx_action_type)\r\nValue: DIAL\r\n\r\n",
                common.replace("Privilege: call,all", "Privilege: dialplan,all")
            ),
            2 => write!(out, "Event: Newstate\r\n{common}\r\n"),
            _ => write!(
                out,
                "Event: Hangup\r\n{common}Cause: 16\r\nCause-txt: Normal Clearing\r\n\r\n"
            ),
        }
        .unwrap();
    }
}

/// The banner, then `cdrs` `Cdr` events in order of emission (call end) with
/// about one other event per nine calls in between.
fn generate(cdrs: usize) -> Stream {
    let mut rng = Rng(SEED);
    let mut out = String::with_capacity(cdrs * 900);
    out.push_str(BANNER);
    // Event time in microseconds: calls end about one per second.
    let mut now_us = FIRST_EPOCH * 1_000_000;
    let mut seq = 0u64;
    let mut chan = 0u32;
    let mut others = 0;
    for i in 0..cdrs {
        let step = 1 + rng.below(2_000_000);
        now_us += step as i64;
        let call = Call::random(&mut rng, now_us / 1_000_000, &mut seq, &mut chan);
        if rng.below(9) == 0 {
            // Just before the Cdr event, after the previous one.
            let at = now_us - rng.below(step.min(1000)) as i64;
            let timestamp = format!("{}.{:06}", at / 1_000_000, at % 1_000_000);
            call.write_other(&mut rng, &mut out, &timestamp);
            others += 1;
        }
        let timestamp = format!("{}.{:06}", now_us / 1_000_000, now_us % 1_000_000);
        call.write_cdr(&mut out, &timestamp, i as u64 + 1);
    }
    Stream {
        bytes: out.into_bytes().into(),
        cdrs,
        others,
    }
}

// ---------------------------------------------------------------------------
// Decode + derive, as the ingest does.

#[derive(Debug, Default, Clone, Copy)]
struct DecodeStats {
    banners: usize,
    messages: usize,
    cdr_events: usize,
    /// CDRs that became no leg of their own (none expected here).
    skipped: usize,
    oversized: usize,
}

/// Feeds the stream in socket-sized chunks and yields batches of derived records.
struct Batches {
    stream: Arc<[u8]>,
    fed: usize,
    decoder: Decoder,
    tz: jiff::tz::TimeZone,
    batch_size: usize,
    stats: DecodeStats,
    calls: Assembler,
    clock: Instant,
}

/// Stream time per message, and how often finished calls are looked for
/// (as `TICK` in src/ingest/mod.rs).
const MESSAGE_TIME: Duration = Duration::from_micros(50);
const TICK_MESSAGES: usize = 4000;

impl Batches {
    fn new(stream: Arc<[u8]>, batch_size: usize) -> Batches {
        Batches {
            stream,
            fed: 0,
            decoder: Decoder::new(DEFAULT_MAX_MESSAGE),
            tz: jiff::tz::TimeZone::UTC,
            batch_size,
            stats: DecodeStats::default(),
            calls: Assembler::default(),
            clock: Instant::now(),
        }
    }

    fn now(&self) -> Instant {
        self.clock + MESSAGE_TIME * self.stats.messages as u32
    }

    fn take(&mut self, done: Vec<Finished>, batch: &mut Vec<NewCdr>) {
        for f in done {
            let records = pbxgate::ingest::records_of(&f.call, &self.tz);
            self.stats.skipped += f.call.cdr_count - records.len();
            batch.extend(records);
        }
    }
}

impl Iterator for Batches {
    type Item = Vec<NewCdr>;

    fn next(&mut self) -> Option<Vec<NewCdr>> {
        let mut batch = Vec::with_capacity(self.batch_size);
        loop {
            while let Some(frame) = self.decoder.next_frame() {
                match frame {
                    Frame::Banner(_) => self.stats.banners += 1,
                    Frame::Message(m) => {
                        self.stats.messages += 1;
                        let now = self.now();
                        if m.event() == Some("Cdr") {
                            self.stats.cdr_events += 1;
                            self.calls.add(AsteriskCdr::from_ami(&m), now);
                        } else {
                            self.calls.observe(&m, now);
                        }
                        if self.stats.messages.is_multiple_of(TICK_MESSAGES) {
                            let done = self.calls.finished(now);
                            self.take(done, &mut batch);
                            if batch.len() >= self.batch_size {
                                return Some(batch);
                            }
                        }
                    }
                    Frame::Oversized { .. } => self.stats.oversized += 1,
                }
            }
            if self.fed == self.stream.len() {
                let rest = self.calls.drain();
                self.take(rest, &mut batch);
                return (!batch.is_empty()).then_some(batch);
            }
            let end = (self.fed + CHUNK).min(self.stream.len());
            self.decoder.extend(&self.stream[self.fed..end]);
            self.fed = end;
        }
    }
}

fn check_decoded(stats: &DecodeStats, stream: &Stream) {
    assert_eq!(stats.banners, 1, "one banner");
    assert_eq!(stats.oversized, 0, "no oversized message");
    assert_eq!(stats.messages, stream.cdrs + stream.others, "every message");
    assert_eq!(stats.cdr_events, stream.cdrs, "every Cdr event");
    assert_eq!(stats.skipped, 0, "no CDR taken for an artefact");
}

// ---------------------------------------------------------------------------
// Measurements.

struct Row {
    name: String,
    cdrs: usize,
    batches: usize,
    secs: f64,
    /// Whether the row is held to the target.
    target: bool,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.cdrs as f64 / self.secs
        } else {
            0.0
        }
    }

    fn met(&self) -> bool {
        self.rate() >= TARGET_RATE
    }
}

fn decode_derive_only(stream: &Stream) -> Row {
    let start = Instant::now();
    let mut batches = Batches::new(stream.bytes.clone(), BATCH);
    let mut n = 0;
    let mut count = 0;
    for b in batches.by_ref() {
        n += b.len();
        count += 1;
        std::hint::black_box(b);
    }
    let secs = start.elapsed().as_secs_f64();
    check_decoded(&batches.stats, stream);
    assert_eq!(n, stream.cdrs);
    Row {
        name: "decode+derive only (no store)".into(),
        cdrs: n,
        batches: count,
        secs,
        target: false,
        note: "breakdown: codec + assemble + reduce + to_ucm, one thread".into(),
    }
}

fn decode_only(stream: &Stream) -> Row {
    let start = Instant::now();
    let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE);
    let mut cdrs = 0;
    for chunk in stream.bytes.chunks(CHUNK) {
        decoder.extend(chunk);
        while let Some(frame) = decoder.next_frame() {
            if let Frame::Message(m) = frame
                && m.event() == Some("Cdr")
            {
                cdrs += 1;
                std::hint::black_box(m);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(cdrs, stream.cdrs);
    Row {
        name: "info: decode only (codec, no derive)".into(),
        cdrs,
        batches: 0,
        secs,
        target: false,
        note: String::new(),
    }
}

/// The ingest pipeline: a decode+derive task feeding batches through a
/// bounded channel to a writer task. The note gives the share of the wall
/// time the writer spent inside `insert_cdrs` and the producer spent decoding
/// and deriving (not waiting on the channel).
async fn ingest(name: &str, store: &Store, stream: &Stream) -> Row {
    assert_eq!(store.cdr_count().await.unwrap(), 0, "a fresh database");
    let bytes = stream.bytes.clone();
    let start = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Vec<NewCdr>>(CHANNEL_BATCHES);
    let producer = tokio::spawn(async move {
        let mut batches = Batches::new(bytes, BATCH);
        let mut busy = Duration::ZERO;
        loop {
            let t = Instant::now();
            let next = batches.next();
            busy += t.elapsed();
            let Some(batch) = next else { break };
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        (batches.stats, busy)
    });
    let writer_store = store.clone();
    // As `write_batches` in src/ingest/mod.rs: two batches in flight on
    // PostgreSQL, one on SQLite. "Busy" is the time at least one is in flight.
    let in_flight = match store.backend() {
        store::Backend::Postgres => 2,
        store::Backend::Sqlite => 1,
    };
    let writer = tokio::spawn(async move {
        let mut inserted = 0u64;
        let mut count = 0usize;
        let mut busy = Duration::ZERO;
        let mut writing: std::collections::VecDeque<tokio::task::JoinHandle<u64>> =
            std::collections::VecDeque::new();
        let mut since: Option<Instant> = None;
        while let Some(batch) = rx.recv().await {
            while writing.len() >= in_flight {
                let n = writing.pop_front().unwrap().await.expect("insert task");
                inserted += n;
                if writing.is_empty()
                    && let Some(t) = since.take()
                {
                    busy += t.elapsed();
                }
            }
            since.get_or_insert_with(Instant::now);
            let s = writer_store.clone();
            writing.push_back(tokio::spawn(async move {
                s.insert_cdrs(&batch)
                    .await
                    .unwrap_or_else(|e| panic!("insert_cdrs failed: {e}"))
            }));
            count += 1;
        }
        for w in writing {
            inserted += w.await.expect("insert task");
        }
        if let Some(t) = since.take() {
            busy += t.elapsed();
        }
        (inserted, count, busy)
    });
    let (inserted, batches, store_busy) = writer.await.expect("writer task");
    let secs = start.elapsed().as_secs_f64();
    let (stats, decode_busy) = producer.await.expect("producer task");
    check_decoded(&stats, stream);
    assert_eq!(inserted, stream.cdrs as u64, "{name}: records inserted");
    let stored = store.cdr_count().await.unwrap();
    assert_eq!(
        stored, stream.cdrs as i64,
        "{name}: every CDR stored exactly once"
    );
    Row {
        name: name.into(),
        cdrs: stream.cdrs,
        batches,
        secs,
        target: true,
        note: format!(
            "verified: {stored} rows; writer busy {:.0}%, decoder busy {:.0}%",
            100.0 * store_busy.as_secs_f64() / secs,
            100.0 * decode_busy.as_secs_f64() / secs,
        ),
    }
}

/// The first `limit` CDRs of the stream (rounded up to whole batches),
/// decoded and derived into batches of `batch_size`.
fn derive_batches(stream: &Stream, batch_size: usize, limit: usize) -> Vec<Vec<NewCdr>> {
    let mut total = 0;
    Batches::new(stream.bytes.clone(), batch_size)
        .take_while(|b| {
            let more = total < limit;
            total += b.len();
            more
        })
        .collect()
}

/// A store variant of the informational rows.
struct StoreOnly {
    batch_size: usize,
    /// Concurrent `insert_cdrs` callers (the ingest has one).
    writers: usize,
    note: &'static str,
}

const STORE_ONLY: &[StoreOnly] = &[
    StoreOnly {
        batch_size: BATCH,
        writers: 1,
        note: "as the ingest: 5000 per transaction",
    },
    StoreOnly {
        batch_size: 20,
        writers: 1,
        note: "one small INSERT per transaction, 250x the commits",
    },
    StoreOnly {
        batch_size: 1000,
        writers: 1,
        note: "5x the commits",
    },
    StoreOnly {
        batch_size: BATCH,
        writers: 2,
        note: "two insert_cdrs calls at a time",
    },
];

/// `insert_cdrs` alone on the first `limit` CDRs: records derived beforehand
/// (untimed); time runs from the first call to the last commit.
async fn store_only(
    name: &str,
    store: &Store,
    stream: &Stream,
    variant: &StoreOnly,
    limit: usize,
) -> Row {
    assert_eq!(store.cdr_count().await.unwrap(), 0, "a fresh database");
    let mut batches = derive_batches(stream, variant.batch_size, limit);
    let cdrs: usize = batches.iter().map(Vec::len).sum();
    let count = batches.len();
    batches.reverse();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let start = Instant::now();
    let writers: Vec<_> = (0..variant.writers)
        .map(|_| {
            let (store, queue) = (store.clone(), queue.clone());
            tokio::spawn(async move {
                let mut inserted = 0u64;
                loop {
                    let Some(batch) = queue.lock().unwrap().pop() else {
                        return inserted;
                    };
                    inserted += store
                        .insert_cdrs(&batch)
                        .await
                        .unwrap_or_else(|e| panic!("insert_cdrs failed: {e}"));
                }
            })
        })
        .collect();
    let mut inserted = 0;
    for w in writers {
        inserted += w.await.expect("writer task");
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(inserted, cdrs as u64, "{name}: records inserted");
    assert_eq!(store.cdr_count().await.unwrap(), cdrs as i64);
    Row {
        name: format!(
            "info: {name} insert_cdrs, batch {}, {} writer{}",
            variant.batch_size,
            variant.writers,
            if variant.writers == 1 { "" } else { "s" }
        ),
        cdrs,
        batches: count,
        secs,
        target: false,
        note: variant.note.into(),
    }
}

/// A fresh, empty database of one backend, removed by [`Db::remove`].
struct Db {
    store: Store,
    kind: Backend,
    url: String,
    admin_url: Option<String>,
}

impl Db {
    async fn create(kind: Backend, dir: &Path, admin_url: Option<&str>) -> Db {
        let url = match kind {
            // Removed after each use, so the name can be reused.
            Backend::Sqlite => format!("sqlite://{}/bench.db", dir.display()),
            Backend::Postgres => {
                let admin = admin_url.expect("PostgreSQL admin URL");
                store::testing::create_postgres_database(admin)
                    .await
                    .unwrap_or_else(|e| panic!("cannot create a PostgreSQL database: {e}"))
            }
        };
        let options = ConnectOptions {
            max_connections: 8,
            base_dir: dir.to_path_buf(),
        };
        let store = Store::connect(&url, &options)
            .await
            .unwrap_or_else(|e| panic!("cannot open the {} store: {e}", kind.name()));
        Db {
            store,
            kind,
            url,
            admin_url: admin_url.map(str::to_owned),
        }
    }

    /// Closes the store and deletes the database. PostgreSQL: best effort
    /// with `psql` (the store has no API for it); the name is printed when
    /// the database stays.
    async fn remove(self) {
        self.store.close().await;
        match self.kind {
            Backend::Sqlite => {
                if let Some(path) = self.url.strip_prefix("sqlite://") {
                    remove_sqlite_files(Path::new(path));
                }
            }
            Backend::Postgres => {
                drop_postgres_database(self.admin_url.as_deref().unwrap_or(""), &self.url)
            }
        }
    }
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<52} {:>8} {:>8} {:>8} {:>10} {:>11}  notes",
        "backend / scenario",
        "CDRs",
        "batches",
        "seconds",
        "CDRs/s",
        format!(">= {}k/s", TARGET_RATE as u64 / 1000)
    );
    for r in rows {
        let met = if r.cdrs == 0 {
            "-"
        } else if r.met() {
            "yes"
        } else {
            "no"
        };
        let met = if r.target || r.cdrs == 0 {
            met.to_string()
        } else {
            format!("({met})")
        };
        if r.cdrs == 0 {
            println!(
                "{:<52} {:>8} {:>8} {:>8} {:>10} {:>11}  {}",
                r.name, "-", "-", "-", "-", met, r.note
            );
            continue;
        }
        println!(
            "{:<52} {:>8} {:>8} {:>8.2} {:>10.0} {:>11}  {}",
            r.name,
            r.cdrs,
            r.batches,
            r.secs,
            r.rate(),
            met,
            r.note
        );
    }
}

fn main() {
    let cdrs = env_number("BENCH_CDRS", 200_000, 1, 10_000_000) as usize;
    let admin_url = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty());
    println!(
        "pbxgate CDR ingest benchmark: AMI stream -> codec -> derive -> store, batches of {BATCH}, \
         {CHANNEL_BATCHES} batches in flight; 2-worker runtime on {} CPUs",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );

    let t = Instant::now();
    let stream = generate(cdrs);
    println!(
        "generated: {} Cdr events + {} other events, {:.1} MB, in {:.1} s (seed {SEED:#x})",
        stream.cdrs,
        stream.others,
        stream.bytes.len() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-ingest")
        .enable_all()
        .build()
        .expect("cannot build the runtime");
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");

    let mut rows = Vec::new();
    let mut backends = vec![Backend::Sqlite];
    println!("running: decode+derive only");
    let breakdown = decode_derive_only(&stream);

    for kind in [Backend::Sqlite, Backend::Postgres] {
        if kind == Backend::Postgres && admin_url.is_none() {
            rows.push(Row {
                name: "PostgreSQL".into(),
                cdrs: 0,
                batches: 0,
                secs: 0.0,
                target: true,
                note: format!(
                    "SKIPPED: set {POSTGRES_ENV}=<admin URL> (`scripts/postgres.sh start` prints one)"
                ),
            });
            continue;
        }
        if kind == Backend::Postgres {
            backends.push(kind);
        }
        println!("running: {} pipeline", kind.name());
        rows.push(rt.block_on(async {
            let db = Db::create(kind, dir.path(), admin_url.as_deref()).await;
            let row = ingest(kind.name(), &db.store, &stream).await;
            db.remove().await;
            row
        }));
    }
    rows.push(breakdown);

    let all_met = rows
        .iter()
        .filter(|r| r.target)
        .all(|r| r.cdrs > 0 && r.met());
    let mut extra = Vec::new();
    if diagnose(all_met) {
        println!("running: decode only");
        extra.push(decode_only(&stream));
        let limit = cdrs.min(DIAGNOSE_CDRS);
        for &kind in &backends {
            for variant in STORE_ONLY {
                println!(
                    "running: {} insert_cdrs only, batch {}, {} writer(s), first {limit} CDRs",
                    kind.name(),
                    variant.batch_size,
                    variant.writers
                );
                extra.push(rt.block_on(async {
                    let db = Db::create(kind, dir.path(), admin_url.as_deref()).await;
                    let row = store_only(kind.name(), &db.store, &stream, variant, limit).await;
                    db.remove().await;
                    row
                }));
            }
        }
    }

    println!();
    print_table(&rows);
    for r in rows.iter().filter(|r| r.target && r.cdrs > 0) {
        println!(
            "target: {} >= {} CDRs/s: {} ({:.0} CDRs/s)",
            r.name,
            TARGET_RATE as u64,
            if r.met() { "MET" } else { "NOT MET" },
            r.rate()
        );
    }
    if !extra.is_empty() {
        println!(
            "\ninformational rows (not part of the target; BENCH_DIAGNOSE=0 skips them, =1 always runs them):"
        );
        print_table(&extra);
    }
}
