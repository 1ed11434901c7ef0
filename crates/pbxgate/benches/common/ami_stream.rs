//! The benchmarks' AMI event stream: seeded, generated `Cdr` events shaped
//! like the rig's (with other channel events between them), and its decoding
//! and deriving as the ingest does it (codec -> calls -> legs -> records).
//! Shared by `ingest.rs` and `cdroutput.rs`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use asterisk::ami::codec::{DEFAULT_MAX_MESSAGE, Decoder, Frame};
use pbxgate::ingest::assemble::{Assembler, Finished};
use pbxgate::ingest::derive::AsteriskCdr;
use store::NewCdr;

use super::Rng;

/// Bytes handed to the decoder at a time, as one socket read.
pub const CHUNK: usize = 64 * 1024;
pub const SEED: u64 = 0x5eed_cd12_2026_1127;
pub const BANNER: &str = "Asterisk Call Manager/11.0.0\r\n";
/// Epoch second of the first event (2026-11-27 00:48:20 UTC, as on the rig).
pub const FIRST_EPOCH: i64 = 1_795_740_500;

// ---------------------------------------------------------------------------
// The event stream.

pub struct Stream {
    pub bytes: Arc<[u8]>,
    pub cdrs: usize,
    pub others: usize,
}

pub fn local_time(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .expect("time in range")
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Internal,
    Outbound,
    Inbound,
}

/// One call, as the channel events and its `Cdr` event describe it.
pub struct Call {
    pub direction: Direction,
    pub disposition: &'static str,
    pub src: String,
    pub dst: String,
    pub clid: String,
    pub channel: String,
    pub dstchannel: String,
    pub dcontext: &'static str,
    pub lastdata: String,
    pub start: i64,
    pub answer: Option<i64>,
    pub end: i64,
    pub uniqueid: String,
    pub did: String,
}

pub const NAMES: &[&str] = &[
    "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
];

impl Call {
    /// A call that ends at `end`; `seq` and `chan` are Asterisk's global
    /// uniqueid sequence and channel-name counter.
    pub fn random(rng: &mut Rng, end: i64, seq: &mut u64, chan: &mut u32) -> Call {
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

    pub fn write_cdr(&self, out: &mut String, timestamp: &str, sequence: u64) {
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
    pub fn write_other(&self, rng: &mut Rng, out: &mut String, timestamp: &str) {
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
pub fn generate(cdrs: usize) -> Stream {
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
pub struct DecodeStats {
    pub banners: usize,
    pub messages: usize,
    pub cdr_events: usize,
    /// CDRs that became no leg of their own (none expected here).
    pub skipped: usize,
    pub oversized: usize,
}

/// Feeds the stream in socket-sized chunks and yields batches of derived records.
pub struct Batches {
    pub stream: Arc<[u8]>,
    pub fed: usize,
    pub decoder: Decoder,
    pub tz: jiff::tz::TimeZone,
    pub batch_size: usize,
    pub stats: DecodeStats,
    pub calls: Assembler,
    pub clock: Instant,
}

/// Stream time per message, and how often finished calls are looked for
/// (as `TICK` in src/ingest/mod.rs).
pub const MESSAGE_TIME: Duration = Duration::from_micros(50);
pub const TICK_MESSAGES: usize = 4000;

impl Batches {
    pub fn new(stream: Arc<[u8]>, batch_size: usize) -> Batches {
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

    pub fn now(&self) -> Instant {
        self.clock + MESSAGE_TIME * self.stats.messages as u32
    }

    pub fn take(&mut self, done: Vec<Finished>, batch: &mut Vec<NewCdr>) {
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

pub fn check_decoded(stats: &DecodeStats, stream: &Stream) {
    assert_eq!(stats.banners, 1, "one banner");
    assert_eq!(stats.oversized, 0, "no oversized message");
    assert_eq!(stats.messages, stream.cdrs + stream.others, "every message");
    assert_eq!(stats.cdr_events, stream.cdrs, "every Cdr event");
    assert_eq!(stats.skipped, 0, "no CDR taken for an artefact");
}
/// The first `limit` CDRs of the stream (rounded up to whole batches),
/// decoded and derived into batches of `batch_size`.
pub fn derive_batches(stream: &Stream, batch_size: usize, limit: usize) -> Vec<Vec<NewCdr>> {
    let mut total = 0;
    Batches::new(stream.bytes.clone(), batch_size)
        .take_while(|b| {
            let more = total < limit;
            total += b.len();
            more
        })
        .collect()
}
