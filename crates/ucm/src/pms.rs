//! The hotel PMS API (`pmsapi`, spec §7): the `<pms_data_request>` XML a
//! property management system sends, the commands it carries, the answer
//! (`<pms_data_response>`, or JSON) and the request token. Pure: the server
//! applies the commands.
//!
//! Only `checkin` and its fields are documented; every other element name is
//! this implementation's choice, in the same style, with the aliases listed in
//! `docs/compatibility.md` (`## PMS API`). Element names are matched without
//! regard to case, `_` or `-` (`Guest_Name` = `guestname`). Unknown commands
//! and unknown fields are refused: a misspelt field must not be ignored.

pub mod cos;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use md5::{Digest, Md5};
use serde_json::{Map, Value};

use crate::Status;

/// Longest accepted `data`, in bytes. A command is a few hundred bytes.
pub const MAX_DATA_BYTES: usize = 16 * 1024;
/// At most this many XML nodes (elements, text, comments) in `data`.
const MAX_NODES: u32 = 256;
/// Longest guest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest room address or extension, in bytes.
pub const MAX_ROOM_BYTES: usize = 32;

/// The token a PMS sends on the old endpoint: hex MD5 of the PMS username
/// followed by the PMS password, no separator. The UCM's formula is not
/// documented (spec §7); this is the one place to change it.
pub fn token(username: &str, password: &[u8]) -> [u8; 32] {
    let mut hasher = Md5::new();
    hasher.update(username.as_bytes());
    hasher.update(password);
    let mut out = [0u8; 32];
    out.copy_from_slice(crate::auth::hex(&hasher.finalize()).as_bytes());
    out
}

/// Whether `presented` is the token for these credentials (upper- or
/// lower-case hex, compared in constant time).
pub fn token_matches(username: &str, password: &[u8], presented: &str) -> bool {
    crate::auth::token_matches(&token(username, password), presented)
}

/// A PMS command, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CheckIn(CheckIn),
    /// `extension`: the room's extension, when the room is new or moves.
    CheckOut {
        address: String,
        extension: Option<String>,
    },
    Update(Update),
    ChangeName {
        address: String,
        name: String,
    },
    Cos {
        address: String,
        cos: u8,
    },
    Dnd {
        address: String,
        on: bool,
    },
    Wakeup {
        address: String,
        op: WakeupOp,
    },
    RoomStatus {
        address: String,
        code: String,
    },
    Mwi {
        address: String,
        on: bool,
    },
    RoomInfo {
        address: String,
    },
}

impl Command {
    /// The canonical command name, as it appears in the answer.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CheckIn(_) => "checkin",
            Command::CheckOut { .. } => "checkout",
            Command::Update(_) => "update",
            Command::ChangeName { .. } => "changename",
            Command::Cos { .. } => "cos",
            Command::Dnd { .. } => "dnd",
            Command::Wakeup { .. } => "wakeup",
            Command::RoomStatus { .. } => "roomstatus",
            Command::Mwi { .. } => "mwi",
            Command::RoomInfo { .. } => "roominfo",
        }
    }

    pub fn address(&self) -> &str {
        match self {
            Command::CheckIn(c) => &c.address,
            Command::Update(u) => &u.address,
            Command::CheckOut { address, .. }
            | Command::ChangeName { address, .. }
            | Command::Cos { address, .. }
            | Command::Dnd { address, .. }
            | Command::Wakeup { address, .. }
            | Command::RoomStatus { address, .. }
            | Command::Mwi { address, .. }
            | Command::RoomInfo { address } => address,
        }
    }
}

/// `checkin`: the guest's data. `dateout` defaults to `datein`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckIn {
    pub address: String,
    pub extension: Option<String>,
    pub name: String,
    pub language: String,
    pub vip: bool,
    pub datein: Date,
    pub dateout: Date,
    pub cos: Option<u8>,
    pub dnd: Option<bool>,
}

/// `update`: any of the guest's fields (at least one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub address: String,
    pub extension: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    pub vip: Option<bool>,
    pub datein: Option<Date>,
    pub dateout: Option<Date>,
    pub cos: Option<u8>,
    pub dnd: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WakeupOp {
    Set(WakeTime),
    /// `None`: every pending wake-up call of the room.
    Cancel(Option<WakeTime>),
    List,
}

/// A wake-up time as the PMS gives it, in the PBX's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeTime {
    /// `HHMM`: the next time the clock shows it (today, else tomorrow).
    Clock { hour: i8, minute: i8 },
    /// `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`.
    At(DateTime),
}

impl WakeTime {
    /// The instant this time names at `now` in `tz`. Times that fall into a
    /// daylight-saving gap move forward; repeated times take the first.
    pub fn resolve(&self, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, PmsError> {
        let bad = |e: jiff::Error| PmsError::new(Status::InvalidValue, format!("time: {e}"));
        match *self {
            WakeTime::At(dt) => tz.to_ambiguous_timestamp(dt).compatible().map_err(bad),
            WakeTime::Clock { hour, minute } => {
                let today = tz.to_datetime(now).date();
                for date in [Some(today), today.checked_add(1.day()).ok()]
                    .into_iter()
                    .flatten()
                {
                    let at = date.at(hour, minute, 0, 0);
                    let ts = tz.to_ambiguous_timestamp(at).compatible().map_err(bad)?;
                    if ts > now {
                        return Ok(ts);
                    }
                }
                Err(PmsError::new(
                    Status::InvalidValue,
                    "time: no next occurrence",
                ))
            }
        }
    }
}

/// Why a command failed: the UCM status and a message for the PMS operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmsError {
    pub status: Status,
    pub message: String,
}

impl PmsError {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        PmsError {
            status,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for PmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status.code())
    }
}

/// A request that could not be turned into a command, with what is known of
/// it for the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The canonical command name, when the command was recognised.
    pub command: Option<&'static str>,
    /// The room address, when it was readable.
    pub address: Option<String>,
    pub error: PmsError,
}

impl Rejected {
    fn bare(status: Status, message: impl Into<String>) -> Self {
        Rejected {
            command: None,
            address: None,
            error: PmsError::new(status, message),
        }
    }
}

/// What each field is, after its name is normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Address,
    Extension,
    Name,
    Language,
    Vip,
    DateIn,
    DateOut,
    Cos,
    Dnd,
    Mwi,
    RoomStatus,
    /// The value of a single-value command (`dnd`, `mwi`, `roomstatus`, `cos`).
    Value,
    Action,
    Time,
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

fn field_of(name: &str) -> Option<Field> {
    Some(match name {
        "address" | "room" | "roomnumber" | "roomno" => Field::Address,
        "extension" | "ext" | "exten" => Field::Extension,
        "name" | "guestname" | "guest" | "fullname" => Field::Name,
        "language" | "lang" => Field::Language,
        "vip" | "guestcategory" | "category" => Field::Vip,
        "datein" | "arrival" | "arrivaldate" | "checkindate" => Field::DateIn,
        "dateout" | "departure" | "departuredate" | "checkoutdate" => Field::DateOut,
        "cos" | "classofservice" | "class" | "permission" | "level" => Field::Cos,
        "dnd" | "donotdisturb" => Field::Dnd,
        "mwi" | "messagewaiting" => Field::Mwi,
        "roomstatus" | "maidstatus" | "maid" => Field::RoomStatus,
        "status" | "value" | "state" => Field::Value,
        "action" | "operation" | "op" | "type" => Field::Action,
        "time" | "waketime" | "wakeuptime" | "datetime" => Field::Time,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    CheckIn,
    CheckOut,
    Update,
    ChangeName,
    Cos,
    Dnd,
    Wakeup,
    RoomStatus,
    Mwi,
    RoomInfo,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        Some(match name {
            "checkin" => Kind::CheckIn,
            "checkout" => Kind::CheckOut,
            "update" | "modify" => Kind::Update,
            "changename" | "rename" | "namechange" => Kind::ChangeName,
            "cos" | "classofservice" | "class" | "permission" => Kind::Cos,
            "dnd" | "donotdisturb" => Kind::Dnd,
            "wakeup" | "wakeupcall" | "morningcall" | "alarm" => Kind::Wakeup,
            "roomstatus" | "maidstatus" | "maid" => Kind::RoomStatus,
            "mwi" | "messagewaiting" => Kind::Mwi,
            "roominfo" | "query" | "getroom" => Kind::RoomInfo,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::CheckIn => "checkin",
            Kind::CheckOut => "checkout",
            Kind::Update => "update",
            Kind::ChangeName => "changename",
            Kind::Cos => "cos",
            Kind::Dnd => "dnd",
            Kind::Wakeup => "wakeup",
            Kind::RoomStatus => "roomstatus",
            Kind::Mwi => "mwi",
            Kind::RoomInfo => "roominfo",
        }
    }

    /// The fields a command takes; `Value` stands for the command's own field.
    fn accepts(self, f: Field) -> bool {
        use Field as F;
        match self {
            Kind::CheckIn | Kind::Update => matches!(
                f,
                F::Address
                    | F::Extension
                    | F::Name
                    | F::Language
                    | F::Vip
                    | F::DateIn
                    | F::DateOut
                    | F::Cos
                    | F::Dnd
            ),
            Kind::CheckOut => matches!(f, F::Address | F::Extension),
            Kind::ChangeName => matches!(f, F::Address | F::Name),
            Kind::Cos => matches!(f, F::Address | F::Cos | F::Value),
            Kind::Dnd => matches!(f, F::Address | F::Dnd | F::Value),
            Kind::Mwi => matches!(f, F::Address | F::Mwi | F::Value),
            Kind::RoomStatus => matches!(f, F::Address | F::RoomStatus | F::Value),
            Kind::Wakeup => matches!(f, F::Address | F::Action | F::Time),
            Kind::RoomInfo => matches!(f, F::Address),
        }
    }
}

/// The fields of one command element, by kind, with their element names.
struct Fields {
    kind: Kind,
    values: Vec<(Field, String, String)>,
}

impl Fields {
    fn take(&mut self, f: Field) -> Option<(String, String)> {
        let i = self.values.iter().position(|(k, _, _)| *k == f)?;
        let (_, element, value) = self.values.remove(i);
        Some((element, value))
    }

    fn err(&self, status: Status, address: Option<&str>, message: String) -> Rejected {
        Rejected {
            command: Some(self.kind.name()),
            address: address.map(str::to_owned),
            error: PmsError::new(status, message),
        }
    }
}

/// Parses the `data` of a request: `<pms_data_request>` with exactly one command element.
pub fn parse(data: &str) -> Result<Command, Rejected> {
    if data.len() > MAX_DATA_BYTES {
        return Err(Rejected::bare(
            Status::InvalidParameters,
            format!("data is longer than {MAX_DATA_BYTES} bytes"),
        ));
    }
    if data.trim().is_empty() {
        return Err(Rejected::bare(Status::InvalidParameters, "data is empty"));
    }
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc = roxmltree::Document::parse_with_options(data, options).map_err(|e| {
        Rejected::bare(
            Status::InvalidParameters,
            format!("data is not well-formed XML: {e}"),
        )
    })?;
    let root = doc.root_element();
    if normalise(root.tag_name().name()) != "pmsdatarequest" {
        return Err(Rejected::bare(
            Status::InvalidParameters,
            format!(
                "the root element must be <pms_data_request>, not <{}>",
                shown(root.tag_name().name())
            ),
        ));
    }
    let mut command = None;
    for child in root.children() {
        if child.is_element() {
            if command.is_some() {
                return Err(Rejected::bare(
                    Status::InvalidParameters,
                    "<pms_data_request> must hold exactly one command",
                ));
            }
            command = Some(child);
        } else if child.is_text() && !child.text().unwrap_or("").trim().is_empty() {
            return Err(Rejected::bare(
                Status::InvalidParameters,
                "text directly inside <pms_data_request>",
            ));
        }
    }
    let Some(element) = command else {
        return Err(Rejected::bare(
            Status::InvalidParameters,
            "<pms_data_request> holds no command",
        ));
    };
    let element_name = element.tag_name().name();
    let Some(kind) = Kind::of(&normalise(element_name)) else {
        return Err(Rejected::bare(
            Status::Unsupported,
            format!("unknown command <{}>", shown(element_name)),
        ));
    };
    let mut fields = Fields {
        kind,
        values: Vec::new(),
    };
    for child in element.children() {
        if child.is_text() {
            if !child.text().unwrap_or("").trim().is_empty() {
                return Err(fields.err(
                    Status::InvalidParameters,
                    None,
                    format!("text directly inside <{}>", kind.name()),
                ));
            }
            continue;
        }
        if !child.is_element() {
            continue;
        }
        let name = child.tag_name().name();
        let field = field_of(&normalise(name)).filter(|f| kind.accepts(*f));
        let Some(field) = field else {
            return Err(fields.err(
                Status::InvalidParameters,
                None,
                format!("<{}> takes no field <{}>", kind.name(), shown(name)),
            ));
        };
        if child.children().any(|c| c.is_element()) {
            return Err(fields.err(
                Status::InvalidParameters,
                None,
                format!("field <{}> holds elements", shown(name)),
            ));
        }
        let text: String = child
            .children()
            .filter_map(|c| c.text())
            .collect::<String>()
            .trim()
            .to_owned();
        // A command's own field and its `value`/`status` aliases are one field.
        let field = match (kind, field) {
            (Kind::Cos, Field::Value) => Field::Cos,
            (Kind::Dnd, Field::Value) => Field::Dnd,
            (Kind::Mwi, Field::Value) => Field::Mwi,
            (Kind::RoomStatus, Field::Value) => Field::RoomStatus,
            (_, f) => f,
        };
        if fields.values.iter().any(|(f, _, _)| *f == field) {
            return Err(fields.err(
                Status::InvalidParameters,
                None,
                format!("field <{}> is given twice", shown(name)),
            ));
        }
        fields.values.push((field, name.to_owned(), text));
    }
    build(fields)
}

/// An element name as it may appear in a message: at most 40 characters,
/// nothing but letters, digits and `_-.:`.
fn shown(name: &str) -> String {
    name.chars()
        .take(40)
        .map(|c| {
            if c.is_alphanumeric() || "_-.:".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn build(mut f: Fields) -> Result<Command, Rejected> {
    let address = match f.take(Field::Address) {
        Some((element, v)) => {
            room_id(&v)
                .map_err(|m| f.err(Status::InvalidValue, None, format!("<{element}>: {m}")))?;
            v
        }
        None => {
            return Err(f.err(
                Status::InvalidParameters,
                None,
                "<address> (the room) is required".into(),
            ));
        }
    };
    let address_copy = address.clone();
    let a = Some(address_copy.as_str());
    macro_rules! opt {
        ($field:expr, $check:expr) => {
            match f.take($field) {
                Some((element, v)) => Some($check(&v).map_err(|m: String| {
                    f.err(Status::InvalidValue, a, format!("<{element}>: {m}"))
                })?),
                None => None,
            }
        };
    }
    let extension = opt!(Field::Extension, |v: &str| room_id(v)
        .map(|()| v.to_owned()));
    let name = opt!(Field::Name, guest_name);
    let language = opt!(Field::Language, language);
    let vip = opt!(Field::Vip, |v: &str| flag(v).map_err(|m| m.to_owned()));
    let datein = opt!(Field::DateIn, date);
    let dateout = opt!(Field::DateOut, date);
    let cos = opt!(Field::Cos, class_of_service);
    let dnd = opt!(Field::Dnd, |v: &str| flag(v).map_err(|m| m.to_owned()));
    let mwi = opt!(Field::Mwi, |v: &str| flag(v).map_err(|m| m.to_owned()));
    let room_status = opt!(Field::RoomStatus, maid_code);
    let action = f.take(Field::Action);
    let time = opt!(Field::Time, wake_time);
    let missing = |what: &str| {
        f.err(
            Status::InvalidParameters,
            a,
            format!("<{}> needs {what}", f.kind.name()),
        )
    };
    let command = match f.kind {
        Kind::CheckIn => {
            let Some(datein) = datein else {
                return Err(missing("<datein> (YYYYMMDD)"));
            };
            let dateout = dateout.unwrap_or(datein);
            if dateout < datein {
                return Err(f.err(
                    Status::InvalidValue,
                    a,
                    "<dateout> is before <datein>".into(),
                ));
            }
            Command::CheckIn(CheckIn {
                address,
                extension,
                name: name.unwrap_or_default(),
                language: language.unwrap_or_default(),
                vip: vip.unwrap_or(false),
                datein,
                dateout,
                cos,
                dnd,
            })
        }
        Kind::Update => {
            let u = Update {
                address,
                extension,
                name,
                language,
                vip,
                datein,
                dateout,
                cos,
                dnd,
            };
            if u == (Update {
                address: u.address.clone(),
                ..Update::default()
            }) {
                return Err(missing("at least one field to change"));
            }
            Command::Update(u)
        }
        Kind::CheckOut => Command::CheckOut { address, extension },
        Kind::ChangeName => match name {
            Some(name) if !name.is_empty() => Command::ChangeName { address, name },
            _ => return Err(missing("<name>")),
        },
        Kind::Cos => match cos {
            Some(cos) => Command::Cos { address, cos },
            None => return Err(missing("<cos> (1 to 4)")),
        },
        Kind::Dnd => match dnd {
            Some(on) => Command::Dnd { address, on },
            None => return Err(missing("<dnd> (on or off)")),
        },
        Kind::Mwi => match mwi {
            Some(on) => Command::Mwi { address, on },
            None => return Err(missing("<mwi> (on or off)")),
        },
        Kind::RoomStatus => match room_status {
            Some(code) => Command::RoomStatus { address, code },
            None => return Err(missing("<roomstatus> (a maid status code)")),
        },
        Kind::RoomInfo => Command::RoomInfo { address },
        Kind::Wakeup => {
            let action = match &action {
                Some((element, v)) => Some(
                    wakeup_action(v)
                        .map_err(|m| f.err(Status::InvalidValue, a, format!("<{element}>: {m}")))?,
                ),
                None => None,
            };
            let op = match (action, time) {
                (Some(WakeAction::Set) | None, Some(t)) => WakeupOp::Set(t),
                (Some(WakeAction::Set), None) => return Err(missing("<time>")),
                (Some(WakeAction::Cancel), t) => WakeupOp::Cancel(t),
                (Some(WakeAction::List) | None, None) => WakeupOp::List,
                (Some(WakeAction::List), Some(_)) => {
                    return Err(f.err(
                        Status::InvalidParameters,
                        a,
                        "<wakeup> list takes no <time>".into(),
                    ));
                }
            };
            Command::Wakeup { address, op }
        }
    };
    Ok(command)
}

enum WakeAction {
    Set,
    Cancel,
    List,
}

fn wakeup_action(v: &str) -> Result<WakeAction, String> {
    match v.to_ascii_lowercase().as_str() {
        "set" | "add" | "on" | "1" | "enable" => Ok(WakeAction::Set),
        "cancel" | "delete" | "del" | "remove" | "off" | "0" | "disable" => Ok(WakeAction::Cancel),
        "list" | "query" | "get" => Ok(WakeAction::List),
        _ => Err("must be set, cancel or list".into()),
    }
}

/// A room address or extension: 1 to 32 of `0-9 A-Z a-z _ + * # -`.
pub fn room_id(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("is empty".into());
    }
    if v.len() > MAX_ROOM_BYTES {
        return Err(format!("is longer than {MAX_ROOM_BYTES} characters"));
    }
    if !v
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'*' | b'#' | b'-'))
    {
        return Err("may hold only letters, digits and _ + * # -".into());
    }
    Ok(())
}

fn guest_name(v: &str) -> Result<String, String> {
    if v.chars().count() > MAX_NAME_CHARS {
        return Err(format!("is longer than {MAX_NAME_CHARS} characters"));
    }
    if v.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    Ok(v.to_owned())
}

fn language(v: &str) -> Result<String, String> {
    if v.len() > 16
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'-')
    {
        return Err("must be a language code such as en, de or fr_CA".into());
    }
    Ok(v.to_owned())
}

/// `0`/`1`, `on`/`off`, `yes`/`no`, `true`/`false`, `enable(d)`/`disable(d)`.
fn flag(v: &str) -> Result<bool, &'static str> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" | "enable" | "enabled" => Ok(true),
        "0" | "off" | "no" | "false" | "disable" | "disabled" => Ok(false),
        _ => Err("must be 1 or 0 (on or off)"),
    }
}

fn class_of_service(v: &str) -> Result<u8, String> {
    match v {
        "1" => Ok(1),
        "2" => Ok(2),
        "3" => Ok(3),
        "4" => Ok(4),
        _ => Err("must be 1, 2, 3 or 4".into()),
    }
}

fn maid_code(v: &str) -> Result<String, String> {
    if v.is_empty()
        || v.len() > 16
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("must be a code of 1 to 16 letters, digits, _ or -".into());
    }
    Ok(v.to_owned())
}

fn digits(s: &str) -> Option<i16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `YYYYMMDD`, a real date.
pub fn date(v: &str) -> Result<Date, String> {
    let bad = || format!("\"{}\" is not a date YYYYMMDD", shown(v));
    if v.len() != 8 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (y, m, d) = (digits(&v[..4]), digits(&v[4..6]), digits(&v[6..]));
    let (Some(y), Some(m), Some(d)) = (y, m, d) else {
        return Err(bad());
    };
    let (Ok(m), Ok(d)) = (i8::try_from(m), i8::try_from(d)) else {
        return Err(bad());
    };
    Date::new(y, m, d).map_err(|_| bad())
}

/// `HHMM`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`.
pub fn wake_time(v: &str) -> Result<WakeTime, String> {
    let bad = || {
        format!(
            "\"{}\" is not a time HHMM, YYYYMMDDHHMM or YYYYMMDDHHMMSS",
            shown(v)
        )
    };
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let hm = |s: &str| -> Option<(i8, i8)> {
        let h = i8::try_from(digits(&s[..2])?).ok()?;
        let m = i8::try_from(digits(&s[2..4])?).ok()?;
        ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
    };
    match v.len() {
        4 => {
            let (hour, minute) = hm(v).ok_or_else(bad)?;
            Ok(WakeTime::Clock { hour, minute })
        }
        12 | 14 => {
            let day = date(&v[..8]).map_err(|_| bad())?;
            let (hour, minute) = hm(&v[8..12]).ok_or_else(bad)?;
            let second = if v.len() == 14 {
                i8::try_from(digits(&v[12..]).ok_or_else(bad)?).map_err(|_| bad())?
            } else {
                0
            };
            if !(0..60).contains(&second) {
                return Err(bad());
            }
            Ok(WakeTime::At(day.at(hour, minute, second, 0)))
        }
        _ => Err(bad()),
    }
}

/// `YYYYMMDDHHMM`, with `SS` when the seconds are not zero.
pub fn format_wake_time(t: DateTime) -> String {
    if t.second() == 0 {
        t.strftime("%Y%m%d%H%M").to_string()
    } else {
        t.strftime("%Y%m%d%H%M%S").to_string()
    }
}

pub fn format_date(d: Date) -> String {
    d.strftime("%Y%m%d").to_string()
}

/// The answer's format: `format=xml` (the default) or `format=json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    /// `None` or empty: XML. Anything but xml/json is an error.
    pub fn parse(v: Option<&str>) -> Result<Format, PmsError> {
        match v.map(str::trim) {
            None | Some("") => Ok(Format::Xml),
            Some(v) if v.eq_ignore_ascii_case("xml") => Ok(Format::Xml),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(Format::Json),
            Some(_) => Err(PmsError::new(
                Status::InvalidValue,
                "format must be xml or json",
            )),
        }
    }
}

/// A value in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Text(String),
    /// A list of records, each element named `item` in XML.
    List {
        item: &'static str,
        records: Vec<Vec<(&'static str, String)>>,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The canonical command name; `None` when the request named none.
    pub command: Option<&'static str>,
    pub address: Option<String>,
    pub status: Status,
    pub error: Option<String>,
    /// Data fields, after `address`, `status` and `error_msg`.
    pub fields: Vec<(&'static str, Item)>,
}

impl Reply {
    pub fn ok(command: &'static str, address: &str) -> Reply {
        Reply {
            command: Some(command),
            address: Some(address.to_owned()),
            status: Status::Success,
            error: None,
            fields: Vec::new(),
        }
    }

    pub fn failed(command: Option<&'static str>, address: Option<&str>, e: &PmsError) -> Reply {
        Reply {
            command,
            address: address.map(str::to_owned),
            status: e.status,
            error: Some(e.message.clone()),
            fields: Vec::new(),
        }
    }

    pub fn rejected(r: &Rejected) -> Reply {
        Reply::failed(r.command, r.address.as_deref(), &r.error)
    }

    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Reply {
        self.fields.push((key, Item::Text(value.into())));
        self
    }

    pub fn with_list(
        mut self,
        key: &'static str,
        item: &'static str,
        records: Vec<Vec<(&'static str, String)>>,
    ) -> Reply {
        self.fields.push((key, Item::List { item, records }));
        self
    }

    /// `<pms_data_response><cmd><address/><status/>[<error_msg/>]…</cmd></pms_data_response>`,
    /// or the status directly under the root when there is no command.
    pub fn to_xml(&self) -> String {
        let mut out =
            String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<pms_data_response>");
        if let Some(c) = self.command {
            out.push('<');
            out.push_str(c);
            out.push('>');
        }
        if let Some(a) = &self.address {
            element(&mut out, "address", a);
        }
        element(&mut out, "status", &self.status.code().to_string());
        if let Some(e) = &self.error {
            element(&mut out, "error_msg", e);
        }
        for (key, item) in &self.fields {
            match item {
                Item::Text(v) => element(&mut out, key, v),
                Item::List { item, records } => {
                    out.push_str(&format!("<{key}>"));
                    for r in records {
                        out.push_str(&format!("<{item}>"));
                        for (k, v) in r {
                            element(&mut out, k, v);
                        }
                        out.push_str(&format!("</{item}>"));
                    }
                    out.push_str(&format!("</{key}>"));
                }
            }
        }
        if let Some(c) = self.command {
            out.push_str("</");
            out.push_str(c);
            out.push('>');
        }
        out.push_str("</pms_data_response>\n");
        out
    }

    /// `{"pms_data_response":{"<cmd>":{"address":…,"status":0,…}}}`; `status` is a number.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        if let Some(a) = &self.address {
            body.insert("address".into(), Value::String(a.clone()));
        }
        body.insert("status".into(), Value::from(self.status.code()));
        if let Some(e) = &self.error {
            body.insert("error_msg".into(), Value::String(e.clone()));
        }
        for (key, item) in &self.fields {
            let v = match item {
                Item::Text(v) => Value::String(v.clone()),
                Item::List { records, .. } => Value::Array(
                    records
                        .iter()
                        .map(|r| {
                            Value::Object(
                                r.iter()
                                    .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
            };
            body.insert((*key).into(), v);
        }
        let inner = match self.command {
            Some(c) => {
                let mut m = Map::new();
                m.insert(c.into(), Value::Object(body));
                Value::Object(m)
            }
            None => Value::Object(body),
        };
        let mut root = Map::new();
        root.insert("pms_data_response".into(), inner);
        Value::Object(root)
    }
}

fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests;
