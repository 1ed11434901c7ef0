//! In-memory fakes of the PBX seam, for tests of features without an
//! Asterisk: [`FakeManager`] (AMI) and [`FakeStasis`] (ARI).
//!
//! They behave as the real rig does where the features can tell:
//! - `FakeStasis` keeps a table of channels; a call entering the application
//!   sends `StasisStart` (args and `dialplan.app_data` as the dialplan's
//!   `Stasis(<app>,inbound,<did>)` gives them), a caller hanging up sends
//!   `ChannelHangupRequest`, `StasisEnd`, `ChannelDestroyed`, an ARI hangup
//!   the same, a `continue` or Asterisk's own hold limit only `StasisEnd`.
//!   REST answers `NotFound` for a channel that is gone and for one that is
//!   no longer in the application (ARI's 404 and 409). While the websocket is
//!   down no event is delivered, channels stay in the application and a new
//!   call fails `Stasis()` and goes on at once; while Asterisk is unreachable
//!   REST fails too. Times follow tokio's clock, so tests can pause it.
//! - `FakeManager` records every action, answers scripted replies (default:
//!   `Response: Success`; AstDB actions work on an in-memory AstDB), refuses
//!   unsafe header values as the real client does, and, linked to a
//!   `FakeStasis`, applies `Setvar TIMEOUT(absolute)` to its channels.
//!
//! Both can delay or fail any call (per method or action name), once or
//! until cleared.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::{Manager, Stasis};
use crate::ami::{Message, Reply};
use crate::ari::{Channel, Dialplan, Event, Party};
use crate::{ConnState, Error};

/// A failure to inject; becomes the [`Error`] the real client would return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// AMI down (queued actions are answered so).
    NotConnected,
    /// No answer in time.
    Timeout,
    /// ARI 404/409.
    NotFound(String),
    /// Anything else: a refused connection, a 500.
    Protocol(String),
    Closed,
}

impl Failure {
    fn error(&self, what: &str) -> Error {
        match self {
            Failure::NotConnected => Error::NotConnected,
            Failure::Timeout => Error::Timeout(what.to_owned()),
            Failure::NotFound(m) => Error::NotFound(m.clone()),
            Failure::Protocol(m) => Error::Protocol(m.clone()),
            Failure::Closed => Error::Closed,
        }
    }
}

/// Injected failures and delays, by method (ARI) or action (AMI) name.
#[derive(Default)]
struct Faults {
    once: HashMap<String, VecDeque<Failure>>,
    always: HashMap<String, Failure>,
    latency: HashMap<String, Duration>,
    default_latency: Duration,
}

impl Faults {
    fn key(name: &str) -> String {
        name.to_ascii_lowercase()
    }

    fn latency(&self, name: &str) -> Duration {
        self.latency
            .get(&Faults::key(name))
            .copied()
            .unwrap_or(self.default_latency)
    }

    fn take(&mut self, name: &str) -> Option<Failure> {
        let key = Faults::key(name);
        if let Some(f) = self.once.get_mut(&key).and_then(VecDeque::pop_front) {
            return Some(f);
        }
        self.always.get(&key).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reply and message builders, for scripting [`FakeManager`].
impl Message {
    /// A message of `(key, value)` headers, in order.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Message {
        let mut m = Message::new();
        for (k, v) in pairs {
            m.push(*k, *v);
        }
        m
    }
}

impl Reply {
    /// `Response: Success` with `headers` after it.
    pub fn success(headers: &[(&str, &str)]) -> Reply {
        let mut response = Message::from_pairs(&[("Response", "Success")]);
        response.headers.extend(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Reply {
            response,
            events: Vec::new(),
        }
    }

    /// `Response: Error` with `Message: message`.
    pub fn error(message: &str) -> Reply {
        Reply {
            response: Message::from_pairs(&[("Response", "Error"), ("Message", message)]),
            events: Vec::new(),
        }
    }

    /// An EventList's reply: `Response: Success`, `EventList: start`, and
    /// its events (the client drops the closing `...Complete` event).
    pub fn list(events: Vec<Message>) -> Reply {
        Reply {
            response: Message::from_pairs(&[
                ("Response", "Success"),
                ("EventList", "start"),
                ("Message", "Result will follow"),
            ]),
            events,
        }
    }
}

/// One action [`FakeManager`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    /// Without `Action` (and without the `ActionID` the real client adds).
    pub headers: Vec<(String, String)>,
}

impl Action {
    /// The first value of a header (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct ManagerInner {
    log: Vec<Action>,
    once: HashMap<String, VecDeque<Reply>>,
    always: HashMap<String, Reply>,
    faults: Faults,
    /// (family, key) -> value.
    astdb: BTreeMap<(String, String), String>,
    stasis: Option<Arc<FakeStasis>>,
}

/// An in-memory AMI. Starts `Up`.
pub struct FakeManager {
    inner: Mutex<ManagerInner>,
    events: broadcast::Sender<Arc<Message>>,
    state: watch::Sender<ConnState>,
}

impl FakeManager {
    pub fn new() -> Arc<FakeManager> {
        Arc::new(FakeManager {
            inner: Mutex::new(ManagerInner::default()),
            events: broadcast::Sender::new(4096),
            state: watch::Sender::new(ConnState::Up),
        })
    }

    /// Applies `Setvar TIMEOUT(absolute)` to `stasis`'s channels (Asterisk's
    /// own hold limit), and answers `No such channel` for channels it does
    /// not have.
    pub fn link(&self, stasis: Arc<FakeStasis>) {
        lock(&self.inner).stasis = Some(stasis);
    }

    /// Answers `action` with `reply` from now on.
    pub fn reply(&self, action: &str, reply: Reply) {
        lock(&self.inner).always.insert(Faults::key(action), reply);
    }

    /// Answers the next `action` with `reply` (before any [`Self::reply`]).
    pub fn reply_once(&self, action: &str, reply: Reply) {
        lock(&self.inner)
            .once
            .entry(Faults::key(action))
            .or_default()
            .push_back(reply);
    }

    /// Fails `action` from now on, until [`Self::clear`].
    pub fn fail(&self, action: &str, failure: Failure) {
        lock(&self.inner)
            .faults
            .always
            .insert(Faults::key(action), failure);
    }

    pub fn fail_once(&self, action: &str, failure: Failure) {
        lock(&self.inner)
            .faults
            .once
            .entry(Faults::key(action))
            .or_default()
            .push_back(failure);
    }

    /// Delays `action`'s answer.
    pub fn set_latency(&self, action: &str, latency: Duration) {
        lock(&self.inner)
            .faults
            .latency
            .insert(Faults::key(action), latency);
    }

    /// Forgets the scripted replies, failures and delays of `action`.
    pub fn clear(&self, action: &str) {
        let key = Faults::key(action);
        let mut i = lock(&self.inner);
        i.once.remove(&key);
        i.always.remove(&key);
        i.faults.once.remove(&key);
        i.faults.always.remove(&key);
        i.faults.latency.remove(&key);
    }

    /// Every action received, in order (also those that failed).
    pub fn actions(&self) -> Vec<Action> {
        lock(&self.inner).log.clone()
    }

    /// The actions named `name` (case-insensitive).
    pub fn actions_named(&self, name: &str) -> Vec<Action> {
        lock(&self.inner)
            .log
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case(name))
            .cloned()
            .collect()
    }

    /// An AstDB value, as the dialplan would read it.
    pub fn astdb(&self, family: &str, key: &str) -> Option<String> {
        lock(&self.inner)
            .astdb
            .get(&(family.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Sends an event to the subscribers (nothing while not `Up`).
    pub fn emit(&self, event: Message) {
        if self.state.borrow().is_up() {
            let _ = self.events.send(Arc::new(event));
        }
    }

    pub fn set_state(&self, state: ConnState) {
        self.state.send_replace(state);
    }

    /// What an action not scripted gets.
    fn default_reply(inner: &mut ManagerInner, action: &Action) -> Reply {
        let h = |k: &str| action.get(k).unwrap_or("").to_owned();
        let key = || (h("Family"), h("Key"));
        match action.name.to_ascii_lowercase().as_str() {
            "ping" => Reply::success(&[("Ping", "Pong")]),
            "dbput" => {
                inner.astdb.insert(key(), h("Val"));
                Reply::success(&[("Message", "Updated database successfully")])
            }
            "dbget" => match inner.astdb.get(&key()) {
                Some(v) => Reply::list(vec![Message::from_pairs(&[
                    ("Event", "DBGetResponse"),
                    ("Family", &h("Family")),
                    ("Key", &h("Key")),
                    ("Val", v),
                ])]),
                None => Reply::error("Database entry not found"),
            },
            "dbdel" => match inner.astdb.remove(&key()) {
                Some(_) => Reply::success(&[("Message", "Key deleted successfully")]),
                None => Reply::error("Database entry could not be deleted"),
            },
            "dbgettree" => {
                let family = h("Family");
                let events: Vec<Message> = inner
                    .astdb
                    .iter()
                    .filter(|((f, _), _)| *f == family)
                    .map(|((f, k), v)| {
                        Message::from_pairs(&[
                            ("Event", "DBGetTreeResponse"),
                            ("Key", &format!("/{f}/{k}")),
                            ("Val", v),
                        ])
                    })
                    .collect();
                if events.is_empty() {
                    Reply::error("Database entry not found")
                } else {
                    Reply::list(events)
                }
            }
            "setvar" => {
                let Some(stasis) = inner.stasis.clone() else {
                    return Reply::success(&[("Message", "Variable Set")]);
                };
                let channel = h("Channel");
                let Some(id) = stasis.id_of(&channel) else {
                    return Reply::error("No such channel");
                };
                if h("Variable").eq_ignore_ascii_case("TIMEOUT(absolute)") {
                    let secs = h("Value").trim().parse::<f64>().unwrap_or(0.0);
                    let limit = (secs.is_finite() && secs > 0.0)
                        .then(|| Duration::from_secs_f64(secs.min(1e9)));
                    stasis.limit(&id, limit);
                }
                Reply::success(&[("Message", "Variable Set")])
            }
            _ => Reply::success(&[]),
        }
    }
}

#[async_trait]
impl Manager for FakeManager {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Message>> {
        self.events.subscribe()
    }

    fn state(&self) -> watch::Receiver<ConnState> {
        self.state.subscribe()
    }

    async fn action(&self, action: &str, headers: &[(&str, &str)]) -> Result<Reply, Error> {
        // Refuse what the real client refuses, before anything is sent.
        let mut all = vec![("Action", action)];
        all.extend_from_slice(headers);
        crate::ami::codec::encode(&all)?;
        let record = Action {
            name: action.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let latency = {
            let mut i = lock(&self.inner);
            i.log.push(record.clone());
            i.faults.latency(action)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if !self.state.borrow().is_up() {
            return Err(Error::NotConnected);
        }
        let mut i = lock(&self.inner);
        if let Some(f) = i.faults.take(action) {
            return Err(f.error(action));
        }
        let key = Faults::key(action);
        if let Some(r) = i.once.get_mut(&key).and_then(VecDeque::pop_front) {
            return Ok(r);
        }
        if let Some(r) = i.always.get(&key) {
            return Ok(r.clone());
        }
        Ok(FakeManager::default_reply(&mut i, &record))
    }
}

/// What became of a channel of [`FakeStasis`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// In the application, waiting.
    Held,
    /// Left the application by ARI `continue`: on in the dialplan.
    Continued,
    /// Left by Asterisk's own limit (`TIMEOUT(absolute)`): on in the dialplan.
    Backstop,
    /// `Stasis()` failed (no client connected): went on at once.
    NotHeld,
    /// Hung up over ARI with this reason.
    HungUp(String),
    /// The caller hung up.
    CallerHungUp,
}

/// One REST call [`FakeStasis`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StasisCall {
    /// The trait method: `continue_in_dialplan`, `hangup`, `ring`, ...
    pub method: &'static str,
    pub channel_id: String,
    /// The hangup reason, the variable, the snoop's id...
    pub detail: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// When it was answered (tokio's clock).
    pub at: Instant,
}

struct FakeChannel {
    channel: Channel,
    seq: u64,
    created: Instant,
    fate: Fate,
    destroyed: bool,
    /// Asterisk's own hold limit, running.
    limit: Option<tokio::task::AbortHandle>,
}

impl FakeChannel {
    fn in_app(&self) -> bool {
        self.fate == Fate::Held && !self.destroyed
    }
}

struct StasisInner {
    events: broadcast::Sender<Arc<Event>>,
    /// The events websocket is connected.
    connected: bool,
    /// Asterisk answers REST calls.
    reachable: bool,
    channels: HashMap<String, FakeChannel>,
    /// Name -> id of the channels not destroyed.
    names: HashMap<String, String>,
    seq: u64,
    calls: Vec<StasisCall>,
    faults: Faults,
    bridges: Vec<(String, String)>,
    /// The dialplan's limit on a call in the application (PBXGATE_HOLD_LIMIT).
    hold_limit: Option<Duration>,
}

/// An in-memory ARI with one Stasis application. Starts connected.
pub struct FakeStasis {
    app: String,
    me: Weak<FakeStasis>,
    inner: Mutex<StasisInner>,
    state: watch::Sender<ConnState>,
}

/// ARI's answer to a channel that is gone (404).
fn gone(id: &str) -> Error {
    Error::NotFound(format!(
        "{{\"message\":\"Channel not found\",\"channel\":\"{id}\"}}"
    ))
}

/// ARI's answer to a channel no longer in the application (409).
fn not_in_app(id: &str) -> Error {
    Error::NotFound(format!(
        "{{\"message\":\"Channel not in Stasis application\",\"channel\":\"{id}\"}}"
    ))
}

/// The ARI hangup reasons and their Q.850 causes.
fn hangup_cause(reason: &str) -> Option<(i64, &'static str)> {
    Some(match reason {
        "normal" => (16, "Normal Clearing"),
        "busy" => (17, "User busy"),
        "congestion" => (34, "Circuit/channel congestion"),
        "no_answer" => (19, "No user responding"),
        "timeout" => (18, "No user responding"),
        "rejected" => (21, "Call Rejected"),
        "unallocated" => (1, "Unallocated (unassigned) number"),
        "normal_unspecified" => (31, "Normal, unspecified"),
        "number_incomplete" => (28, "Invalid number format (addr incomplete)"),
        "codec_mismatch" => (58, "Bearer capability not available"),
        "interworking" => (127, "Interworking, unspecified"),
        "failure" => (38, "Network out of order"),
        "answered_elsewhere" => (26, "Answered elsewhere"),
        _ => return None,
    })
}

/// `2026-11-26T10:00:00.000+0000`, as ARI writes times.
fn ari_time(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl FakeStasis {
    /// A fake application `app` with ARI's event buffer (1024).
    pub fn new(app: &str) -> Arc<FakeStasis> {
        FakeStasis::with_capacity(app, 1024)
    }

    /// With `capacity` events buffered per subscriber (a subscriber that
    /// falls further behind gets `Lagged`).
    pub fn with_capacity(app: &str, capacity: usize) -> Arc<FakeStasis> {
        Arc::new_cyclic(|me| FakeStasis {
            app: app.to_owned(),
            me: me.clone(),
            inner: Mutex::new(StasisInner {
                events: broadcast::Sender::new(capacity.max(1)),
                connected: true,
                reachable: true,
                channels: HashMap::new(),
                names: HashMap::new(),
                seq: 0,
                calls: Vec::new(),
                faults: Faults::default(),
                bridges: Vec::new(),
                hold_limit: None,
            }),
            state: watch::Sender::new(ConnState::Up),
        })
    }

    fn inner(&self) -> MutexGuard<'_, StasisInner> {
        lock(&self.inner)
    }

    /// The channel as ARI shows it now: its creation time is as old as the
    /// channel is on tokio's clock (so a paused clock ages it too).
    fn view(c: &FakeChannel) -> Channel {
        let age = Instant::now().saturating_duration_since(c.created);
        let created = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Channel {
            creationtime: ari_time(created),
            ..c.channel.clone()
        }
    }

    fn emit(inner: &StasisInner, event: Event) {
        if inner.connected {
            let _ = inner.events.send(Arc::new(event));
        }
    }

    /// A trunk call from `caller` to `did` reaching the dialplan's
    /// `Stasis(<app>,inbound,<did>)`; its channel id. Held when a client is
    /// connected; otherwise `Stasis()` fails and it goes on ([`Fate::NotHeld`]).
    pub fn inbound(&self, caller: &str, did: &str) -> String {
        self.enter("PJSIP/trunk", caller, did, &["inbound", did])
    }

    /// A channel `<tech>-<seq>` reaching `Stasis(<app>,<args>)`.
    pub fn enter(&self, tech: &str, caller: &str, exten: &str, args: &[&str]) -> String {
        self.enter_as(None, tech, caller, exten, args)
    }

    fn enter_as(
        &self,
        id: Option<&str>,
        tech: &str,
        caller: &str,
        exten: &str,
        args: &[&str],
    ) -> String {
        let mut i = self.inner();
        i.seq += 1;
        let seq = i.seq;
        let id = id.map_or_else(|| format!("1795736000.{seq}"), str::to_owned);
        let mut app_data = self.app.clone();
        for a in args {
            app_data.push(',');
            app_data.push_str(a);
        }
        let channel = Channel {
            id: id.clone(),
            name: format!("{tech}-{seq:08x}"),
            state: "Ring".into(),
            caller: Party {
                name: String::new(),
                number: caller.to_owned(),
            },
            connected: Party::default(),
            dialplan: Dialplan {
                context: "from-trunk".into(),
                exten: exten.to_owned(),
                priority: 3,
                app_name: "Stasis".into(),
                app_data,
            },
            creationtime: String::new(),
            account_code: String::new(),
        };
        let held = i.connected;
        i.names.insert(channel.name.clone(), id.clone());
        let mut c = FakeChannel {
            channel,
            seq,
            created: Instant::now(),
            fate: if held { Fate::Held } else { Fate::NotHeld },
            destroyed: false,
            limit: None,
        };
        if held {
            let event = Event::StasisStart {
                channel: FakeStasis::view(&c),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
            };
            c.limit = i.hold_limit.map(|l| self.arm(&id, l));
            i.channels.insert(id.clone(), c);
            FakeStasis::emit(&i, event);
        } else {
            i.channels.insert(id.clone(), c);
        }
        id
    }

    /// Asterisk's own limit on the channel `after` from now; `None` clears it.
    fn limit(&self, id: &str, after: Option<Duration>) {
        let handle = after.map(|a| self.arm(id, a));
        let mut i = self.inner();
        match i.channels.get_mut(id) {
            Some(c) if c.in_app() => {
                if let Some(old) = std::mem::replace(&mut c.limit, handle) {
                    old.abort();
                }
            }
            _ => {
                if let Some(h) = handle {
                    h.abort();
                }
            }
        }
    }

    fn arm(&self, id: &str, after: Duration) -> tokio::task::AbortHandle {
        let me = self.me.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Some(me) = me.upgrade() {
                me.backstop(&id);
            }
        })
        .abort_handle()
    }

    /// The dialplan's limit for calls entering from now on (the real
    /// dialplan's `TIMEOUT(absolute)` before `Stasis()`); none by default.
    pub fn set_hold_limit(&self, limit: Option<Duration>) {
        self.inner().hold_limit = limit;
    }

    /// Asterisk's limit is reached: the channel leaves the application and
    /// goes on in the dialplan (only `StasisEnd`). False when not in it.
    pub fn backstop(&self, id: &str) -> bool {
        let mut i = self.inner();
        let Some(c) = i.channels.get_mut(id).filter(|c| c.in_app()) else {
            return false;
        };
        c.fate = Fate::Backstop;
        c.limit = None;
        let channel = FakeStasis::view(c);
        FakeStasis::emit(&i, Event::StasisEnd { channel });
        true
    }

    /// The caller hangs up. False when the channel was already gone.
    pub fn caller_hangup(&self, id: &str) -> bool {
        let mut i = self.inner();
        let Some(c) = i.channels.get_mut(id).filter(|c| !c.destroyed) else {
            return false;
        };
        let was_in_app = c.in_app();
        c.destroyed = true;
        if was_in_app {
            c.fate = Fate::CallerHungUp;
        }
        let name = c.channel.name.clone();
        if let Some(l) = c.limit.take() {
            l.abort();
        }
        let channel = FakeStasis::view(c);
        i.names.remove(&name);
        if was_in_app {
            FakeStasis::emit(
                &i,
                Event::ChannelHangupRequest {
                    channel: channel.clone(),
                    cause: Some(16),
                },
            );
            FakeStasis::emit(
                &i,
                Event::StasisEnd {
                    channel: channel.clone(),
                },
            );
            FakeStasis::emit(
                &i,
                Event::ChannelDestroyed {
                    channel,
                    cause: Some(16),
                    cause_txt: "Normal Clearing".into(),
                },
            );
        }
        true
    }

    /// The events websocket and REST are cut (Asterisk unreachable).
    pub fn disconnect(&self, reason: &str) {
        {
            let mut i = self.inner();
            i.connected = false;
            i.reachable = false;
        }
        self.state.send_replace(ConnState::Down(reason.to_owned()));
    }

    /// Only the events websocket is lost; REST still answers.
    pub fn drop_events(&self, reason: &str) {
        self.inner().connected = false;
        self.state.send_replace(ConnState::Down(reason.to_owned()));
    }

    /// Connected again (websocket and REST).
    pub fn reconnect(&self) {
        {
            let mut i = self.inner();
            i.connected = true;
            i.reachable = true;
        }
        self.state.send_replace(ConnState::Up);
    }

    /// Sets the reported state only (e.g. `Stopped`).
    pub fn set_state(&self, state: ConnState) {
        self.state.send_replace(state);
    }

    /// Fails the next call of `method` (a [`Stasis`] method name).
    pub fn fail_once(&self, method: &str, failure: Failure) {
        self.inner()
            .faults
            .once
            .entry(Faults::key(method))
            .or_default()
            .push_back(failure);
    }

    /// Fails every call of `method` until [`Self::clear_faults`].
    pub fn fail(&self, method: &str, failure: Failure) {
        self.inner()
            .faults
            .always
            .insert(Faults::key(method), failure);
    }

    /// Delays the answer of `method` (the request is applied at the end).
    pub fn set_latency(&self, method: &str, latency: Duration) {
        self.inner()
            .faults
            .latency
            .insert(Faults::key(method), latency);
    }

    /// Delays every method without a latency of its own.
    pub fn set_default_latency(&self, latency: Duration) {
        self.inner().faults.default_latency = latency;
    }

    pub fn clear_faults(&self) {
        self.inner().faults = Faults::default();
    }

    pub fn set_bridges(&self, bridges: Vec<(String, String)>) {
        self.inner().bridges = bridges;
    }

    /// Every REST call received, in order.
    pub fn calls(&self) -> Vec<StasisCall> {
        self.inner().calls.clone()
    }

    /// The calls of `method` on `channel_id`.
    pub fn calls_on(&self, method: &str, channel_id: &str) -> Vec<StasisCall> {
        self.inner()
            .calls
            .iter()
            .filter(|c| c.method == method && c.channel_id == channel_id)
            .cloned()
            .collect()
    }

    pub fn fate(&self, id: &str) -> Option<Fate> {
        self.inner().channels.get(id).map(|c| c.fate.clone())
    }

    /// The channel's name.
    pub fn name(&self, id: &str) -> Option<String> {
        self.inner()
            .channels
            .get(id)
            .map(|c| c.channel.name.clone())
    }

    /// The id of the live channel named `name`.
    pub fn id_of(&self, name: &str) -> Option<String> {
        self.inner().names.get(name).cloned()
    }

    /// The ids of the channels in the application, oldest first.
    pub fn held_ids(&self) -> Vec<String> {
        let i = self.inner();
        let mut held: Vec<&FakeChannel> = i.channels.values().filter(|c| c.in_app()).collect();
        held.sort_by_key(|c| c.seq);
        held.iter().map(|c| c.channel.id.clone()).collect()
    }

    /// Waits the method's latency, then fails as injected or as an
    /// unreachable Asterisk does; records the call when it fails.
    async fn request(&self, method: &'static str, id: &str, detail: &str) -> Result<(), Error> {
        let latency = self.inner().faults.latency(method);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut i = self.inner();
        let failure = if i.reachable {
            i.faults.take(method).map(|f| f.error(method))
        } else {
            Some(Error::Protocol(
                "ARI request failed: error sending request: connection refused".into(),
            ))
        };
        match failure {
            Some(e) => {
                FakeStasis::log(&mut i, method, id, detail, false);
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn log(i: &mut StasisInner, method: &'static str, id: &str, detail: &str, ok: bool) {
        i.calls.push(StasisCall {
            method,
            channel_id: id.to_owned(),
            detail: detail.to_owned(),
            ok,
            at: Instant::now(),
        });
    }

    /// A call on a channel that must be in the application; `apply` changes it.
    async fn on_held(
        &self,
        method: &'static str,
        id: &str,
        detail: &str,
        apply: impl FnOnce(&mut StasisInner),
    ) -> Result<(), Error> {
        self.request(method, id, detail).await?;
        let mut i = self.inner();
        let result = match i.channels.get(id) {
            None => Err(gone(id)),
            Some(c) if c.destroyed => Err(gone(id)),
            Some(c) if !c.in_app() => Err(not_in_app(id)),
            Some(_) => Ok(()),
        };
        FakeStasis::log(&mut i, method, id, detail, result.is_ok());
        if result.is_ok() {
            apply(&mut i);
        }
        result
    }
}

#[async_trait]
impl Stasis for FakeStasis {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner().events.subscribe()
    }

    fn state(&self) -> watch::Receiver<ConnState> {
        self.state.subscribe()
    }

    fn app(&self) -> &str {
        &self.app
    }

    async fn continue_in_dialplan(&self, channel_id: &str) -> Result<(), Error> {
        self.on_held("continue_in_dialplan", channel_id, "", |i| {
            if let Some(c) = i.channels.get_mut(channel_id) {
                c.fate = Fate::Continued;
                if let Some(l) = c.limit.take() {
                    l.abort();
                }
                let channel = FakeStasis::view(c);
                FakeStasis::emit(i, Event::StasisEnd { channel });
            }
        })
        .await
    }

    async fn hangup(&self, channel_id: &str, reason: &str) -> Result<(), Error> {
        self.request("hangup", channel_id, reason).await?;
        let mut i = self.inner();
        let Some((cause, cause_txt)) = hangup_cause(reason) else {
            FakeStasis::log(&mut i, "hangup", channel_id, reason, false);
            return Err(Error::Protocol(format!(
                "ARI answered 400 Bad Request: {{\"message\":\"Invalid reason for hangup provided\",\"reason\":\"{reason}\"}}"
            )));
        };
        let Some(c) = i.channels.get_mut(channel_id).filter(|c| !c.destroyed) else {
            FakeStasis::log(&mut i, "hangup", channel_id, reason, false);
            return Err(gone(channel_id));
        };
        let was_in_app = c.in_app();
        c.destroyed = true;
        if was_in_app {
            c.fate = Fate::HungUp(reason.to_owned());
        }
        if let Some(l) = c.limit.take() {
            l.abort();
        }
        let channel = FakeStasis::view(c);
        i.names.remove(&channel.name);
        FakeStasis::log(&mut i, "hangup", channel_id, reason, true);
        if was_in_app {
            FakeStasis::emit(
                &i,
                Event::ChannelHangupRequest {
                    channel: channel.clone(),
                    cause: Some(cause),
                },
            );
            FakeStasis::emit(
                &i,
                Event::StasisEnd {
                    channel: channel.clone(),
                },
            );
            FakeStasis::emit(
                &i,
                Event::ChannelDestroyed {
                    channel,
                    cause: Some(cause),
                    cause_txt: cause_txt.to_owned(),
                },
            );
        }
        Ok(())
    }

    async fn ring(&self, channel_id: &str) -> Result<(), Error> {
        self.on_held("ring", channel_id, "", |_| {}).await
    }

    async fn set_variable(&self, channel_id: &str, name: &str, value: &str) -> Result<(), Error> {
        let detail = format!("{name}={value}");
        self.on_held("set_variable", channel_id, &detail, |_| {})
            .await
    }

    async fn channel(&self, channel_id: &str) -> Result<Channel, Error> {
        self.request("channel", channel_id, "").await?;
        let mut i = self.inner();
        let found = i
            .channels
            .get(channel_id)
            .filter(|c| !c.destroyed)
            .map(FakeStasis::view);
        FakeStasis::log(&mut i, "channel", channel_id, "", found.is_some());
        found.ok_or_else(|| gone(channel_id))
    }

    async fn app_channel_ids(&self) -> Result<Vec<String>, Error> {
        self.request("app_channel_ids", "", "").await?;
        let ids = self.held_ids();
        FakeStasis::log(&mut self.inner(), "app_channel_ids", "", "", true);
        Ok(ids)
    }

    async fn answer(&self, channel_id: &str) -> Result<(), Error> {
        self.on_held("answer", channel_id, "", |i| {
            if let Some(c) = i.channels.get_mut(channel_id) {
                c.channel.state = "Up".into();
            }
        })
        .await
    }

    async fn snoop(
        &self,
        channel_id: &str,
        spy: &str,
        whisper: &str,
        snoop_id: &str,
        app_args: &str,
    ) -> Result<(), Error> {
        let detail = format!("spy={spy} whisper={whisper} id={snoop_id} args={app_args}");
        self.request("snoop", channel_id, &detail).await?;
        let target_up = {
            let mut i = self.inner();
            let up = i.channels.get(channel_id).is_some_and(|c| !c.destroyed);
            FakeStasis::log(&mut i, "snoop", channel_id, &detail, up);
            up
        };
        if !target_up {
            return Err(gone(channel_id));
        }
        let args: Vec<&str> = if app_args.is_empty() {
            Vec::new()
        } else {
            app_args.split(',').collect()
        };
        // The snoop channel's id is the one asked for.
        let id = Some(snoop_id).filter(|s| !s.is_empty());
        self.enter_as(id, &format!("Snoop/{channel_id}"), "", "", &args);
        Ok(())
    }

    async fn start_moh(&self, channel_id: &str) -> Result<(), Error> {
        self.on_held("start_moh", channel_id, "", |_| {}).await
    }

    async fn bridge_times(&self) -> Result<Vec<(String, String)>, Error> {
        self.request("bridge_times", "", "").await?;
        Ok(self.inner().bridges.clone())
    }

    async fn applications(&self) -> Result<Vec<String>, Error> {
        self.request("applications", "", "").await?;
        let i = self.inner();
        // Registered while a client is connected or channels are in it.
        let known = i.connected || i.channels.values().any(FakeChannel::in_app);
        Ok(if known {
            vec![self.app.clone()]
        } else {
            Vec::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(rx: &mut broadcast::Receiver<Arc<Event>>) -> Event {
        match rx.try_recv() {
            Ok(e) => (*e).clone(),
            Err(e) => panic!("no event: {e:?}"),
        }
    }

    #[test]
    fn ari_times_are_written_as_asterisk_writes_them() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_736_002_345);
        assert_eq!(ari_time(t), "2026-11-26T23:33:22.345+0000");
        assert_eq!(
            ari_time(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000+0000"
        );
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(ari_time(t), "2000-02-29T00:00:00.000+0000");
    }

    #[tokio::test(start_paused = true)]
    async fn an_inbound_call_enters_and_leaves_as_on_asterisk() {
        let s = FakeStasis::new("pbxgate");
        let mut rx = s.subscribe();
        let id = s.inbound("+15551234567", "5550100");
        let Event::StasisStart { channel, args } = next(&mut rx).await else {
            panic!()
        };
        assert_eq!(args, ["inbound", "5550100"]);
        assert_eq!(channel.id, id);
        assert_eq!(channel.dialplan.app_data, "pbxgate,inbound,5550100");
        assert_eq!(channel.caller.number, "+15551234567");
        assert_eq!(
            s.app_channel_ids().await.unwrap(),
            std::slice::from_ref(&id)
        );
        s.ring(&id).await.unwrap();
        s.continue_in_dialplan(&id).await.unwrap();
        assert!(matches!(next(&mut rx).await, Event::StasisEnd { .. }));
        assert!(rx.try_recv().is_err());
        assert_eq!(s.fate(&id), Some(Fate::Continued));
        // Still up, but not in the application: 409, as ARI.
        assert!(s.channel(&id).await.is_ok());
        assert!(matches!(
            s.continue_in_dialplan(&id).await,
            Err(Error::NotFound(_))
        ));
        assert!(matches!(s.ring(&id).await, Err(Error::NotFound(_))));
        assert!(s.app_channel_ids().await.unwrap().is_empty());
        assert_eq!(s.calls_on("continue_in_dialplan", &id).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn hangups_send_the_three_events() {
        let s = FakeStasis::new("pbxgate");
        let mut rx = s.subscribe();
        let a = s.inbound("1", "5550100");
        let b = s.inbound("2", "5550100");
        let _ = next(&mut rx).await;
        let _ = next(&mut rx).await;
        assert!(s.caller_hangup(&a));
        assert!(!s.caller_hangup(&a));
        assert!(matches!(
            next(&mut rx).await,
            Event::ChannelHangupRequest { .. }
        ));
        assert!(matches!(next(&mut rx).await, Event::StasisEnd { .. }));
        assert!(matches!(
            next(&mut rx).await,
            Event::ChannelDestroyed { .. }
        ));
        assert!(matches!(s.channel(&a).await, Err(Error::NotFound(_))));
        assert!(matches!(
            s.hangup(&b, "nonsense").await,
            Err(Error::Protocol(_))
        ));
        s.hangup(&b, "busy").await.unwrap();
        assert!(matches!(
            next(&mut rx).await,
            Event::ChannelHangupRequest {
                cause: Some(17),
                ..
            }
        ));
        assert!(matches!(next(&mut rx).await, Event::StasisEnd { .. }));
        assert!(matches!(
            next(&mut rx).await,
            Event::ChannelDestroyed {
                cause: Some(17),
                ..
            }
        ));
        assert_eq!(s.fate(&b), Some(Fate::HungUp("busy".into())));
        assert!(matches!(
            s.hangup(&b, "normal").await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn disconnected_no_events_and_new_calls_go_on() {
        let s = FakeStasis::new("pbxgate");
        let mut rx = s.subscribe();
        let mut state = s.state();
        let held = s.inbound("1", "5550100");
        let _ = next(&mut rx).await;
        s.disconnect("cut");
        assert!(!state.borrow_and_update().is_up());
        let late = s.inbound("2", "5550100");
        assert_eq!(s.fate(&late), Some(Fate::NotHeld));
        assert!(s.caller_hangup(&held));
        assert!(rx.try_recv().is_err());
        assert!(matches!(s.app_channel_ids().await, Err(Error::Protocol(_))));
        s.reconnect();
        assert!(state.borrow_and_update().is_up());
        assert!(s.app_channel_ids().await.unwrap().is_empty());
        // Only the websocket lost: REST answers.
        let c = s.inbound("3", "5550100");
        s.drop_events("gone");
        assert_eq!(s.app_channel_ids().await.unwrap(), [c]);
    }

    #[tokio::test(start_paused = true)]
    async fn faults_and_latency_are_injected() {
        let s = FakeStasis::new("pbxgate");
        let id = s.inbound("1", "5550100");
        s.fail_once("continue_in_dialplan", Failure::Timeout);
        assert!(matches!(
            s.continue_in_dialplan(&id).await,
            Err(Error::Timeout(_))
        ));
        assert_eq!(s.fate(&id), Some(Fate::Held));
        s.set_latency("continue_in_dialplan", Duration::from_millis(300));
        let t = Instant::now();
        s.continue_in_dialplan(&id).await.unwrap();
        assert_eq!(t.elapsed(), Duration::from_millis(300));
        let calls = s.calls_on("continue_in_dialplan", &id);
        assert_eq!(
            calls.iter().map(|c| c.ok).collect::<Vec<_>>(),
            [false, true]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_hold_limit_moved_over_ami_lets_the_call_go_on() {
        let s = FakeStasis::new("pbxgate");
        s.set_hold_limit(Some(Duration::from_secs(60)));
        let m = FakeManager::new();
        m.link(s.clone());
        let mut rx = s.subscribe();
        let id = s.inbound("1", "5550100");
        let _ = next(&mut rx).await;
        let name = s.name(&id).unwrap();
        let r = m
            .set_var(&name, "TIMEOUT(absolute)", "2.500")
            .await
            .unwrap();
        assert!(r.is_success());
        assert!(
            !m.set_var("PJSIP/nobody-1", "X", "1")
                .await
                .unwrap()
                .is_success()
        );
        tokio::time::sleep(Duration::from_millis(2400)).await;
        assert_eq!(s.fate(&id), Some(Fate::Held));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.fate(&id), Some(Fate::Backstop));
        assert!(matches!(next(&mut rx).await, Event::StasisEnd { .. }));
        // On in the dialplan: still up.
        assert!(s.channel(&id).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_snoop_channel_enters_with_its_args() {
        let s = FakeStasis::new("pbxgate");
        let target = s.inbound("1", "5550100");
        let mut rx = s.subscribe();
        s.snoop(&target, "both", "none", "snoop-1", "snoop,x")
            .await
            .unwrap();
        let Event::StasisStart { channel, args } = next(&mut rx).await else {
            panic!()
        };
        assert_eq!(args, ["snoop", "x"]);
        assert!(channel.name.starts_with("Snoop/"));
        assert!(s.held_ids().contains(&"snoop-1".to_owned()));
        s.start_moh("snoop-1").await.unwrap();
        assert!(matches!(
            s.snoop("nope", "both", "none", "s2", "").await,
            Err(Error::NotFound(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn the_manager_records_scripts_and_keeps_an_astdb() {
        let m = FakeManager::new();
        assert_eq!(m.db_get("pbxgate-room", "101/state").await.unwrap(), None);
        assert!(
            m.db_put("pbxgate-room", "101/state", "in")
                .await
                .unwrap()
                .is_success()
        );
        m.db_put("pbxgate-room", "101/dnd", "0").await.unwrap();
        assert_eq!(
            m.db_get("pbxgate-room", "101/state")
                .await
                .unwrap()
                .as_deref(),
            Some("in")
        );
        assert_eq!(
            m.db_get_tree("pbxgate-room").await.unwrap(),
            [
                ("101/dnd".to_owned(), "0".to_owned()),
                ("101/state".to_owned(), "in".to_owned())
            ]
        );
        assert!(
            m.db_del("pbxgate-room", "101/dnd")
                .await
                .unwrap()
                .is_success()
        );
        let r = m.db_del("pbxgate-room", "101/dnd").await.unwrap();
        assert_eq!(
            r.response.get("Message"),
            Some("Database entry could not be deleted")
        );
        assert!(m.db_get_tree("none").await.unwrap().is_empty());
        m.reply(
            "CoreShowChannels",
            Reply::list(vec![Message::from_pairs(&[
                ("Event", "CoreShowChannel"),
                ("Channel", "PJSIP/1001-00000001"),
            ])]),
        );
        assert_eq!(m.channels().await.unwrap().events.len(), 1);
        m.reply_once("QueueStatus", Reply::error("Permission denied"));
        assert!(!m.queue_status(Some("6000")).await.unwrap().is_success());
        assert!(m.queue_status(None).await.unwrap().is_success());
        m.fail_once("Originate", Failure::Timeout);
        let o = super::super::Originate::new(
            "Local/1001@x",
            super::super::Target::Application {
                application: "Wait".into(),
                data: "1".into(),
            },
        );
        assert!(matches!(m.originate(&o).await, Err(Error::Timeout(_))));
        assert!(m.originate(&o).await.unwrap().is_success());
        let sent = m.actions_named("originate");
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].get("Async"), Some("true"));
        // Refused before sending, as the real client does.
        assert!(matches!(
            m.hangup("PJSIP/1\r\nAction: Command", None).await,
            Err(Error::UnsafeHeader(_))
        ));
        m.set_state(ConnState::Down("x".into()));
        assert!(matches!(
            m.command("core show uptime").await,
            Err(Error::NotConnected)
        ));
        let mut rx = m.subscribe();
        m.emit(Message::from_pairs(&[("Event", "Cdr")]));
        assert!(rx.try_recv().is_err());
        m.set_state(ConnState::Up);
        m.emit(Message::from_pairs(&[("Event", "Cdr")]));
        assert_eq!(rx.try_recv().unwrap().event(), Some("Cdr"));
    }
}
