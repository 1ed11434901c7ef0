//! The channel actions of `/api` (spec §3.4): lists of live channels,
//! hang-up, click-to-call, transfers, mute, hold and barge, done over AMI
//! (ARI only for what AMI cannot: bridge times, hold music).
//!
//! Every action needs the user's permission (group `call`, in the default;
//! see `crate::permissions`). Parameters are checked
//! before Asterisk is asked anything: a missing one is -1, a malformed one
//! -15. Numbers are digits, `*`, `#` and `+` only, so that no value can carry
//! AMI headers or dialplan syntax; channel names are looked up among the live
//! channels and only the name Asterisk reported is ever sent back to it.
//! Failures become statuses in one place, [`ActionError`].

mod hold;

use asterisk::pbx::{Manager, Stasis};
use std::sync::Arc;
use std::time::Duration;

use asterisk::ami::Message;
use serde_json::{Value, json};
use ucm::{Params, Status};

use crate::config::DialingSettings;
use crate::error::ActionError;
use crate::sessions::Authenticated;

use crate::live::model::{self, Chan};

pub use ucm::actions::CHANNEL as ACTIONS;

/// Longest number accepted (Asterisk's extensions are at most 79 bytes).
const MAX_NUMBER: usize = 64;
/// Longest channel name accepted (Asterisk's are at most 80 bytes, plus a
/// Local channel's context).
const MAX_CHANNEL: usize = 256;

/// The list key of both channel lists.
const LIST_KEY: &str = "channel";

/// What the ChanSpy leg of `callbarge` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spy {
    Listen,
    Whisper,
    Barge,
}

impl Spy {
    /// ChanSpy options: quiet (no beep, no name), end with the spied-on
    /// channel, and the mode.
    fn options(self) -> &'static str {
        match self {
            Spy::Listen => "qE",
            Spy::Whisper => "qEw",
            Spy::Barge => "qEB",
        }
    }
}

/// Who moves in a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// `callTransfer`: the channel's party transfers its peer, as the
    /// phone's transfer key does (AMI BlindTransfer); a channel in no
    /// two-party call is itself redirected.
    Peer,
    /// `transferNumber*`: the channel itself goes to the new destination
    /// (AMI Redirect), ringing or answered.
    Itself,
}

/// A checked request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    List {
        bridged: bool,
        paging: crate::listing::Paging,
    },
    Hangup {
        channel: String,
    },
    /// Ring extension `caller`; when it answers, dial `number`; `shown` is
    /// what the caller's phone displays meanwhile.
    Dial {
        caller: String,
        number: String,
        shown: String,
    },
    Transfer {
        channel: String,
        exten: String,
        how: Move,
    },
    Mute {
        channel: String,
        on: bool,
    },
    Hold {
        channel: String,
        on: bool,
    },
    Barge {
        channel: String,
        exten: String,
        spy: Spy,
    },
}

fn invalid(message: String) -> ActionError {
    ActionError::InvalidValue(message)
}

/// The first of `keys` present with a non-empty value (aliases), as text.
/// Absent: -1; not a string or number: -1.
fn param(params: &Params, keys: &[&str]) -> Result<(String, String), ActionError> {
    for key in keys {
        match params.str(key) {
            Ok(Some(v)) if !v.is_empty() => return Ok(((*key).to_owned(), v)),
            Ok(_) => {}
            Err(_) => return Err(ActionError::Status(Status::InvalidParameters)),
        }
    }
    Err(ActionError::Status(Status::InvalidParameters))
}

fn is_number(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NUMBER
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'+'))
}

/// A phone number or extension: digits, `*`, `#`, `+` (else -15).
fn number(params: &Params, keys: &[&str]) -> Result<String, ActionError> {
    let (key, v) = param(params, keys)?;
    if !is_number(&v) {
        return Err(invalid(format!(
            "{key}: only digits, '*', '#' and '+' are allowed (at most {MAX_NUMBER})"
        )));
    }
    Ok(v)
}

/// A channel name as the client sent it; looked up later (-16 if unknown).
fn channel(params: &Params) -> Result<String, ActionError> {
    let (_, v) = param(params, &["channel"])?;
    if v.len() > MAX_CHANNEL || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("channel: not a channel name".into()));
    }
    Ok(v)
}

/// `callbarge`: the extension that rings is `exten`, else the number of
/// `barge-exten` (`<ext>@0` / `<ext>@1`; asking for permission is not done).
fn barge(params: &Params) -> Result<Op, ActionError> {
    let channel = channel(params)?;
    let barge_exten = match params.str("barge-exten") {
        Ok(v) => v.filter(|v| !v.is_empty()),
        Err(_) => return Err(ActionError::Status(Status::InvalidParameters)),
    };
    let from_barge = match &barge_exten {
        None => None,
        Some(b) => {
            let (n, flag) = b.split_once('@').unwrap_or((b, "0"));
            if !is_number(n) || !matches!(flag, "0" | "1") {
                return Err(invalid(
                    "barge-exten: <extension>@0 or <extension>@1".into(),
                ));
            }
            Some(n.to_owned())
        }
    };
    let exten = match (params.str("exten"), from_barge) {
        (Ok(Some(e)), _) if !e.is_empty() => number(params, &["exten"])?,
        (Err(_), _) => return Err(ActionError::Status(Status::InvalidParameters)),
        (_, Some(n)) => n,
        _ => return Err(ActionError::Status(Status::InvalidParameters)),
    };
    let spy = match params.str("mode") {
        Ok(None) => Spy::Listen,
        Ok(Some(m)) => match m.as_str() {
            "" => Spy::Listen,
            "W" | "w" => Spy::Whisper,
            "B" | "b" => Spy::Barge,
            _ => {
                return Err(invalid(
                    "mode: \"\" (listen), \"W\" (whisper) or \"B\" (barge)".into(),
                ));
            }
        },
        Err(_) => return Err(ActionError::Status(Status::InvalidParameters)),
    };
    Ok(Op::Barge {
        channel,
        exten,
        spy,
    })
}

/// Checks a request's parameters; nothing is asked of Asterisk yet.
fn parse(action: &str, params: &Params, dialing: &DialingSettings) -> Result<Op, ActionError> {
    let dial = |caller: &[&str], dest: &str, prefix: &str| -> Result<Op, ActionError> {
        let caller = number(params, caller)?;
        let shown = number(params, &[dest])?;
        Ok(Op::Dial {
            caller,
            number: format!("{prefix}{shown}"),
            shown,
        })
    };
    let prefix = dialing.outbound_prefix.as_str();
    Ok(match action {
        "listBridgedChannels" | "listUnBridgedChannels" => Op::List {
            bridged: action == "listBridgedChannels",
            paging: crate::listing::Paging::from_params(params)?,
        },
        "Hangup" => Op::Hangup {
            channel: channel(params)?,
        },
        "dialExtension" => dial(&["caller"], "callee", "")?,
        "dialOutbound" => dial(&["caller"], "outbound", prefix)?,
        "dialIVR" => dial(&["caller"], "ivrnumber", "")?,
        "dialQueue" => dial(&["outcaller", "caller"], "queue", "")?,
        "dialRinggroup" => dial(&["outcaller", "caller"], "ringgroup", "")?,
        "callTransfer" => Op::Transfer {
            channel: channel(params)?,
            exten: number(params, &["extension", "exten"])?,
            how: Move::Peer,
        },
        "transferNumberInbound" => Op::Transfer {
            channel: channel(params)?,
            exten: number(params, &["callee"])?,
            how: Move::Itself,
        },
        "transferNumberOutbound" => Op::Transfer {
            channel: channel(params)?,
            exten: format!("{prefix}{}", number(params, &["outbound"])?),
            how: Move::Itself,
        },
        "mute" | "unmute" => Op::Mute {
            channel: channel(params)?,
            on: action == "mute",
        },
        "hold" | "unhold" => Op::Hold {
            channel: channel(params)?,
            on: action == "hold",
        },
        "callbarge" => barge(params)?,
        _ => return Err(ActionError::Status(Status::Unsupported)),
    })
}

pub async fn dispatch(
    channels: &Channels,
    action: &str,
    params: &Params,
    _user: &Authenticated,
) -> Result<Value, ActionError> {
    let op = parse(action, params, &channels.dialing)?;
    let Some(pbx) = &channels.pbx else {
        return Err(ActionError::PbxNotConfigured);
    };
    let asterisk = Asterisk {
        ami: &pbx.ami,
        ari: pbx.ari.as_ref(),
        board: &pbx.board,
        dialing: &channels.dialing,
    };
    asterisk.run(op).await
}

/// What the channel actions need, built once at start-up: the PBX they act
/// on (none when `[asterisk]` is not configured) and the dialing rules.
#[derive(Clone)]
pub struct Channels {
    pbx: Option<Arc<Link>>,
    dialing: Arc<DialingSettings>,
}

/// The connections to one PBX and the live state its lists show.
pub struct Link {
    pub ami: Arc<dyn Manager>,
    pub ari: Option<Arc<dyn Stasis>>,
    pub board: crate::live::Board,
}

impl Channels {
    pub fn new(pbx: Option<Link>, dialing: DialingSettings) -> Channels {
        Channels {
            pbx: pbx.map(Arc::new),
            dialing: Arc::new(dialing),
        }
    }
}

/// The connections and settings an action uses.
struct Asterisk<'a> {
    ami: &'a Arc<dyn Manager>,
    ari: Option<&'a Arc<dyn Stasis>>,
    /// The live state the lists show (the same as `ActiveCallStatus`).
    board: &'a crate::live::Board,
    dialing: &'a DialingSettings,
}

/// How long a list waits for the channels to be resynced after AMI came up.
const SYNC_WAIT: Duration = Duration::from_secs(5);

impl Asterisk<'_> {
    async fn run(&self, op: Op) -> Result<Value, ActionError> {
        match op {
            Op::List { bridged, paging } => self.list(bridged, &paging).await,
            Op::Hangup { channel } => {
                let (chans, i) = self.find(&channel).await?;
                self.send("Hangup", &[("Channel", &chans[i].name), ("Cause", "16")])
                    .await?;
                Ok(json!({}))
            }
            Op::Dial {
                caller,
                number,
                shown,
            } => self.dial(&caller, &number, &shown).await,
            Op::Transfer {
                channel,
                exten,
                how,
            } => self.transfer(&channel, &exten, how).await,
            Op::Mute { channel, on } => {
                let (chans, i) = self.find(&channel).await?;
                hold::mute(self, &chans[i], on).await?;
                Ok(json!({}))
            }
            Op::Hold { channel, on } => {
                let (chans, i) = self.find(&channel).await?;
                if on {
                    hold::hold(self, &chans, i).await?;
                } else {
                    hold::unhold(self, &chans[i]).await?;
                }
                Ok(json!({}))
            }
            Op::Barge {
                channel,
                exten,
                spy,
            } => self.barge(&channel, &exten, spy).await,
        }
    }

    /// The ARI connection, when configured and up.
    fn ari_up(&self) -> Option<&Arc<dyn Stasis>> {
        self.ari.filter(|a| a.state().borrow().is_up())
    }

    /// Sends an action; `Response: Error` is a [`ActionError::Refused`].
    async fn send(&self, action: &str, headers: &[(&str, &str)]) -> Result<Message, ActionError> {
        let reply = self.request(action, headers).await?;
        if reply.is_success() {
            Ok(reply.response)
        } else {
            Err(ActionError::PbxRefused {
                changing: true,
                action: action.to_owned(),
                message: reply.response.get("Message").unwrap_or("").to_owned(),
            })
        }
    }

    /// Sends an action and returns whatever Asterisk answered.
    async fn request(
        &self,
        action: &str,
        headers: &[(&str, &str)],
    ) -> Result<asterisk::ami::Reply, ActionError> {
        // Queued actions would wait out the timeout while AMI reconnects.
        if !self.ami.state().borrow().is_up() {
            return Err(ActionError::Pbx(asterisk::Error::NotConnected));
        }
        self.ami
            .action(action, headers)
            .await
            .map_err(ActionError::Pbx)
    }

    /// The live channels.
    async fn channels(&self) -> Result<Vec<Chan>, ActionError> {
        let reply = self.request("CoreShowChannels", &[]).await?;
        if !reply.is_success() {
            return Err(ActionError::PbxRefused {
                changing: true,
                action: "CoreShowChannels".into(),
                message: reply.response.get("Message").unwrap_or("").to_owned(),
            });
        }
        let now = jiff::Timestamp::now().as_second();
        Ok(reply
            .events
            .iter()
            .filter_map(|m| Chan::from_event(m, now))
            .collect())
    }

    /// The live channels and the index of `name` among them. As Asterisk
    /// itself does, the name matches case-insensitively, and a uniqueid
    /// matches too.
    async fn find(&self, name: &str) -> Result<(Vec<Chan>, usize), ActionError> {
        let chans = self.channels().await?;
        let i = chans
            .iter()
            .position(|c| c.name == name)
            .or_else(|| {
                chans
                    .iter()
                    .position(|c| c.name.eq_ignore_ascii_case(name) || c.uniqueid == name)
            })
            .ok_or_else(|| ActionError::NoSuchChannel(name.to_owned()))?;
        Ok((chans, i))
    }

    /// Fails unless `exten` matches an extension (or pattern) of the dialing
    /// context, includes followed.
    async fn in_dialplan(&self, exten: &str) -> Result<(), ActionError> {
        let reply = self
            .request(
                "ShowDialPlan",
                &[("Context", &self.dialing.context), ("Extension", exten)],
            )
            .await?;
        let found = reply.is_success()
            && reply
                .events
                .iter()
                .any(|e| e.event() == Some("ListDialplan"));
        if found {
            Ok(())
        } else {
            Err(ActionError::NotInDialplan(exten.to_owned()))
        }
    }

    /// The lists are drawn from the state behind `ActiveCallStatus`, never
    /// from a separate query, so that they agree with the events.
    async fn list(
        &self,
        bridged: bool,
        paging: &crate::listing::Paging,
    ) -> Result<Value, ActionError> {
        if !self.ami.state().borrow().is_up() {
            return Err(ActionError::Pbx(asterisk::Error::NotConnected));
        }
        let Some(calls) = self.board.synced(SYNC_WAIT).await else {
            return Err(ActionError::Pbx(asterisk::Error::Timeout(
                "the channels are being read again after the AMI connection came up".into(),
            )));
        };
        let items = if bridged {
            calls
                .bridged
                .iter()
                .map(model::Bridged::list_item)
                .collect()
        } else {
            calls
                .unbridged
                .iter()
                .map(model::Unbridged::list_item)
                .collect()
        };
        Ok(crate::listing::page(items, LIST_KEY, paging))
    }

    /// Click-to-call: a Local channel rings `caller` (through the dialing
    /// context, as if a phone dialled it); once answered, its other half
    /// dials `number` in the same context. The caller's phone shows `shown`;
    /// the destination sees the caller's number.
    async fn dial(&self, caller: &str, number: &str, shown: &str) -> Result<Value, ActionError> {
        self.in_dialplan(caller).await?;
        self.in_dialplan(number).await?;
        let ctx = &self.dialing.context;
        let ring_ms = self.dialing.ring.as_millis().to_string();
        self.send(
            "Originate",
            &[
                ("Channel", &format!("Local/{caller}@{ctx}")),
                ("Context", ctx),
                ("Exten", number),
                ("Priority", "1"),
                ("Timeout", &ring_ms),
                ("Async", "true"),
                // The half that dials `number` is the caller...
                ("Variable", &format!("CALLERID(num)={caller}")),
                ("Variable", "CALLERID(name)="),
                // ...and the half that rings `caller` presents `shown`
                // (a Local channel's caller ID is its twin's connected line).
                ("Variable", &format!("CONNECTEDLINE(num,i)={shown}")),
                ("Variable", "CONNECTEDLINE(name,i)="),
            ],
        )
        .await?;
        Ok(json!({}))
    }

    async fn transfer(&self, channel: &str, exten: &str, how: Move) -> Result<Value, ActionError> {
        let (chans, i) = self.find(channel).await?;
        self.in_dialplan(exten).await?;
        let name = chans[i].name.as_str();
        let ctx = self.dialing.context.as_str();
        if how == Move::Peer && model::far_end(&chans, i).is_some() {
            self.send(
                "BlindTransfer",
                &[("Channel", name), ("Context", ctx), ("Exten", exten)],
            )
            .await?;
        } else {
            self.send(
                "Redirect",
                &[
                    ("Channel", name),
                    ("Context", ctx),
                    ("Exten", exten),
                    ("Priority", "1"),
                ],
            )
            .await?;
        }
        Ok(json!({}))
    }

    /// `callbarge`: rings `exten` (through the dialing context) and, once
    /// answered, runs ChanSpy on the channel. The barging phone shows
    /// "Call Bargin" and the spied-on party's number.
    async fn barge(&self, channel: &str, exten: &str, spy: Spy) -> Result<Value, ActionError> {
        let (chans, i) = self.find(channel).await?;
        let target = &chans[i];
        // ChanSpy takes the name as a prefix before its options.
        if target.name.contains([',', '(', ')', '|']) {
            return Err(ActionError::Unspyable(target.name.clone()));
        }
        self.in_dialplan(exten).await?;
        let ctx = &self.dialing.context;
        let ring_ms = self.dialing.ring.as_millis().to_string();
        let spied = if is_number(&target.caller_num) {
            target.caller_num.as_str()
        } else {
            ""
        };
        self.send(
            "Originate",
            &[
                ("Channel", &format!("Local/{exten}@{ctx}")),
                ("Application", "ChanSpy"),
                ("Data", &format!("{},{}", target.name, spy.options())),
                ("Timeout", &ring_ms),
                ("Async", "true"),
                ("Variable", &format!("CALLERID(num)={exten}")),
                ("Variable", &format!("CONNECTEDLINE(num,i)={spied}")),
                ("Variable", "CONNECTEDLINE(name,i)=Call Bargin"),
            ],
        )
        .await?;
        Ok(json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Params {
        let mut req = v;
        req["action"] = json!("x");
        ucm::parse_request(json!({ "request": req }).to_string().as_bytes())
            .unwrap()
            .params
    }

    fn dialing() -> DialingSettings {
        DialingSettings {
            context: "from-internal".into(),
            outbound_prefix: "9".into(),
            ring: std::time::Duration::from_secs(30),
            trunk_contexts: vec!["from-trunk".into()],
        }
    }

    fn status(action: &str, v: Value) -> i32 {
        match parse(action, &params(v), &dialing()) {
            Ok(_) => 0,
            Err(e) => e.status().code(),
        }
    }

    #[test]
    fn dial_actions_take_numbers_only() {
        assert_eq!(
            parse(
                "dialOutbound",
                &params(json!({"caller": 1001, "outbound": "+4930123"})),
                &dialing()
            )
            .unwrap(),
            Op::Dial {
                caller: "1001".into(),
                number: "9+4930123".into(),
                shown: "+4930123".into()
            }
        );
        assert_eq!(
            status("dialQueue", json!({"caller": "1001", "queue": "6000"})),
            0
        );
        assert_eq!(
            status(
                "dialRinggroup",
                json!({"outcaller": "1001", "ringgroup": "*6400#"})
            ),
            0
        );
        assert_eq!(status("dialExtension", json!({"caller": "1001"})), -1);
        assert_eq!(status("dialExtension", json!({"callee": "1001"})), -1);
        assert_eq!(
            status("dialExtension", json!({"caller": "", "callee": "1000"})),
            -1
        );
        assert_eq!(
            status("dialExtension", json!({"caller": [1], "callee": "1000"})),
            -1
        );
        for bad in [
            "1000&PJSIP/1099",
            "1000,20",
            "1000@other",
            "10 00",
            "${CALLERID(num)}",
            "1000\r\nAction: Command",
            "PJSIP/1000",
            "1001;1",
            "x",
            &"1".repeat(65),
        ] {
            assert_eq!(
                status("dialExtension", json!({"caller": "1001", "callee": bad})),
                -15,
                "{bad:?}"
            );
            assert_eq!(
                status("dialIVR", json!({"caller": bad, "ivrnumber": "7000"})),
                -15,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn channel_actions_check_their_parameters() {
        assert_eq!(status("Hangup", json!({})), -1);
        assert_eq!(status("Hangup", json!({"channel": ""})), -1);
        assert_eq!(status("Hangup", json!({"channel": "PJSIP/1 x"})), -15);
        assert_eq!(status("Hangup", json!({"channel": "a\nb"})), -15);
        assert_eq!(
            status("Hangup", json!({"channel": "PJSIP/1001-00000001"})),
            0
        );
        assert_eq!(status("mute", json!({"channel": "PJSIP/1001-1"})), 0);
        assert_eq!(status("unhold", json!({})), -1);
        assert_eq!(
            parse(
                "callTransfer",
                &params(json!({"channel": "PJSIP/1001-1", "exten": "1002"})),
                &dialing()
            )
            .unwrap(),
            Op::Transfer {
                channel: "PJSIP/1001-1".into(),
                exten: "1002".into(),
                how: Move::Peer
            }
        );
        assert_eq!(
            status("callTransfer", json!({"channel": "PJSIP/1001-1"})),
            -1
        );
        assert_eq!(
            status(
                "callTransfer",
                json!({"channel": "PJSIP/1001-1", "extension": "1002,1"})
            ),
            -15
        );
        assert_eq!(
            parse(
                "transferNumberOutbound",
                &params(json!({"channel": "PJSIP/1001-1", "outbound": "5550124"})),
                &dialing()
            )
            .unwrap(),
            Op::Transfer {
                channel: "PJSIP/1001-1".into(),
                exten: "95550124".into(),
                how: Move::Itself
            }
        );
        assert_eq!(
            status("transferNumberInbound", json!({"channel": "PJSIP/trunk-1"})),
            -1
        );
    }

    #[test]
    fn barge_modes_and_extensions() {
        let op = |v| parse("callbarge", &params(v), &dialing());
        assert_eq!(
            op(json!({"channel": "PJSIP/1001-1", "exten": "1005", "barge-exten": "1005@0", "mode": "W"}))
                .unwrap(),
            Op::Barge {
                channel: "PJSIP/1001-1".into(),
                exten: "1005".into(),
                spy: Spy::Whisper
            }
        );
        assert_eq!(
            op(json!({"channel": "PJSIP/1001-1", "barge-exten": "1006@1", "mode": "B"})).unwrap(),
            Op::Barge {
                channel: "PJSIP/1001-1".into(),
                exten: "1006".into(),
                spy: Spy::Barge
            }
        );
        assert_eq!(
            op(json!({"channel": "PJSIP/1001-1", "exten": 1005})).unwrap(),
            Op::Barge {
                channel: "PJSIP/1001-1".into(),
                exten: "1005".into(),
                spy: Spy::Listen
            }
        );
        assert_eq!(Spy::Listen.options(), "qE");
        assert_eq!(Spy::Barge.options(), "qEB");
        assert_eq!(status("callbarge", json!({"channel": "PJSIP/1001-1"})), -1);
        assert_eq!(status("callbarge", json!({"exten": "1005"})), -1);
        for bad in [
            json!({"channel": "PJSIP/1001-1", "exten": "1005", "mode": "X"}),
            json!({"channel": "PJSIP/1001-1", "exten": "1005", "mode": "qB"}),
            json!({"channel": "PJSIP/1001-1", "exten": "1005,B"}),
            json!({"channel": "PJSIP/1001-1", "barge-exten": "1005@2"}),
            json!({"channel": "PJSIP/1001-1", "barge-exten": "PJSIP/1005@0"}),
        ] {
            assert_eq!(status("callbarge", bad.clone()), -15, "{bad}");
        }
    }

    #[test]
    fn failures_map_to_statuses() {
        let s = |f: ActionError| f.status().code();
        assert_eq!(s(ActionError::PbxNotConfigured), -7);
        assert_eq!(s(ActionError::Pbx(asterisk::Error::NotConnected)), -7);
        assert_eq!(
            s(ActionError::Pbx(asterisk::Error::Timeout("x".into()))),
            -8
        );
        assert_eq!(
            s(ActionError::Pbx(asterisk::Error::Protocol("x".into()))),
            -9
        );
        assert_eq!(s(ActionError::NoSuchChannel("x".into())), -16);
        assert_eq!(s(ActionError::NotInDialplan("1".into())), -16);
        assert_eq!(s(ActionError::NotInCall("x".into())), -24);
        assert_eq!(s(ActionError::Unspyable("x".into())), -15);
        let refused = |m: &str| ActionError::PbxRefused {
            changing: true,
            action: "Redirect".into(),
            message: m.into(),
        };
        assert_eq!(s(refused("Channel specified does not exist")), -16);
        assert_eq!(s(refused("No such channel")), -16);
        assert_eq!(s(refused("Transfer failed")), -24);
    }
}
