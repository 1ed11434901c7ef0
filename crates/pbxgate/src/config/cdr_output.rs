//! `[cdr_output]`: CDR Real-Time Output, the UCM's third table of the API
//! Configuration page (Enable, Server Address, Port, delivery, format,
//! username/password), with several receivers, filters, TLS and signing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ucm::cdrapi::Format;

use super::{ConfigError, Secret};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdrOutputConfig {
    /// "Enable": while false nothing is queued or pushed.
    pub enable: bool,
    /// A process that holds a receiver for this long without renewing it
    /// (it died) loses it to another process on the same database.
    pub lease_secs: u64,
    pub receivers: Vec<ReceiverConfig>,
}

impl Default for CdrOutputConfig {
    fn default() -> Self {
        CdrOutputConfig {
            enable: false,
            lease_secs: 15,
            receivers: Vec::new(),
        }
    }
}

/// One `[[cdr_output.receivers]]` entry: a billing server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Names the receiver in the outbox, the Status page and the CLI.
    pub name: String,
    /// "tcp", "http" or "https".
    pub delivery: String,
    /// "Server Address": host name or IP address.
    pub address: String,
    pub port: u16,
    /// http/https: the path posted to.
    pub path: String,
    /// "json", "xml" or "csv".
    pub format: String,
    /// HTTP Basic for http/https; for tcp the first line (`AUTH <base64>`).
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    /// https: the `X-Pbxgate-Signature` HMAC key; empty: no signature.
    pub signing_secret: Secret,
    pub signing_secret_file: String,
    /// https: check the server's certificate (against `ca_file` when set,
    /// else the system's roots).
    pub tls_verify: bool,
    pub ca_file: String,
    /// Records per HTTP body (tcp: per write).
    pub batch: u32,
    /// The legs of one call as one entry (`main_cdr`, `sub_cdr_N`).
    pub grouped: bool,
    /// Only calls answered (`disposition` ANSWERED).
    pub only_answered: bool,
    /// Only these directions (`userfield`: "inbound", "outbound",
    /// "internal"); empty: all.
    pub directions: Vec<String>,
    /// Quota: most records waiting; beyond it the oldest are dropped.
    pub max_backlog: u64,
    /// Quota: records older than this are dropped; 0 = no age limit.
    pub max_age_days: u32,
    /// Connect and answer deadline of one delivery.
    pub timeout_secs: u64,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            name: String::new(),
            delivery: "tcp".into(),
            address: String::new(),
            port: 0,
            path: "/".into(),
            format: "json".into(),
            username: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            signing_secret: Secret::default(),
            signing_secret_file: String::new(),
            tls_verify: true,
            ca_file: String::new(),
            batch: 100,
            grouped: false,
            only_answered: false,
            directions: Vec::new(),
            max_backlog: 1_000_000,
            max_age_days: 30,
            timeout_secs: 10,
        }
    }
}

/// `[cdr_output]` as validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CdrOutputSettings {
    pub enabled: bool,
    pub lease: Duration,
    pub receivers: Vec<ReceiverSettings>,
}

impl CdrOutputSettings {
    /// The receivers that run: new CDRs are queued for them and a worker
    /// delivers to each (none while disabled).
    pub fn active(&self) -> &[ReceiverSettings] {
        if self.enabled { &self.receivers } else { &[] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Tcp,
    Http,
    Https,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Tcp => "tcp",
            Delivery::Http => "http",
            Delivery::Https => "https",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSettings {
    pub name: String,
    pub delivery: Delivery,
    pub address: String,
    pub port: u16,
    pub path: String,
    pub format: Format,
    pub username: String,
    pub password: Secret,
    pub signing_secret: Secret,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub batch: u32,
    pub grouped: bool,
    pub only_answered: bool,
    /// Lower case; empty: all.
    pub directions: Vec<String>,
    pub max_backlog: u64,
    /// `None`: no age limit.
    pub max_age: Option<Duration>,
    pub timeout: Duration,
}

impl ReceiverSettings {
    /// Where it goes, without credentials (Status page, logs).
    pub fn target(&self) -> String {
        let host = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        match self.delivery {
            Delivery::Tcp => format!("tcp://{host}:{}", self.port),
            d => format!("{}://{host}:{}{}", d.as_str(), self.port, self.path),
        }
    }
}

const DIRECTIONS: [&str; 3] = ["inbound", "outbound", "internal"];

pub(super) fn validate(c: &CdrOutputConfig, base: &Path) -> Result<CdrOutputSettings, ConfigError> {
    if !(1..=3600).contains(&c.lease_secs) {
        return Err(ConfigError::invalid(
            "cdr_output.lease_secs",
            "must be between 1 and 3600",
        ));
    }
    let mut receivers: Vec<ReceiverSettings> = Vec::with_capacity(c.receivers.len());
    for (i, r) in c.receivers.iter().enumerate() {
        let r = receiver(&format!("cdr_output.receivers[{i}]"), r, base)?;
        if receivers.iter().any(|o| o.name == r.name) {
            return Err(ConfigError::invalid(
                format!("cdr_output.receivers[{i}].name"),
                format!("another receiver is already named {:?}", r.name),
            ));
        }
        receivers.push(r);
    }
    if c.enable && receivers.is_empty() {
        return Err(ConfigError::invalid(
            "cdr_output.enable",
            "is true but no [[cdr_output.receivers]] is configured",
        ));
    }
    Ok(CdrOutputSettings {
        enabled: c.enable,
        lease: Duration::from_secs(c.lease_secs),
        receivers,
    })
}

/// One receiver, keys named under `prefix` (the admin page validates with
/// the same function).
pub fn receiver(
    prefix: &str,
    r: &ReceiverConfig,
    base: &Path,
) -> Result<ReceiverSettings, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    if r.name.is_empty()
        || r.name.len() > 64
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ConfigError::invalid(
            key("name"),
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    let delivery = match r.delivery.as_str() {
        "tcp" => Delivery::Tcp,
        "http" => Delivery::Http,
        "https" => Delivery::Https,
        _ => {
            return Err(ConfigError::invalid(
                key("delivery"),
                "must be \"tcp\", \"http\" or \"https\"",
            ));
        }
    };
    let address = r.address.trim();
    let host_ok = !address.is_empty()
        && address.len() <= 253
        && (address.parse::<std::net::IpAddr>().is_ok()
            || address.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
            }));
    if !host_ok {
        return Err(ConfigError::invalid(
            key("address"),
            "must be a host name or an IP address (no scheme, no port)",
        ));
    }
    if r.port == 0 {
        return Err(ConfigError::invalid(
            key("port"),
            "must be between 1 and 65535",
        ));
    }
    if delivery != Delivery::Tcp
        && (!r.path.starts_with('/')
            || r.path.len() > 1024
            || r.path
                .chars()
                .any(|c| c.is_ascii_control() || c == ' ' || c == '#'))
    {
        return Err(ConfigError::invalid(
            key("path"),
            "must start with '/' and hold no spaces, control characters or '#'",
        ));
    }
    let format = match r.format.as_str() {
        "json" => Format::Json,
        "xml" => Format::Xml,
        "csv" => Format::Csv,
        _ => {
            return Err(ConfigError::invalid(
                key("format"),
                "must be \"json\", \"xml\" or \"csv\"",
            ));
        }
    };
    if r.username.len() > 64 || r.username.chars().any(|c| c.is_control() || c == ':') {
        return Err(ConfigError::invalid(
            key("username"),
            "must be at most 64 characters, without ':' or control characters",
        ));
    }
    let password =
        super::validate::secret_or_file(base, &key("password"), &r.password, &r.password_file)?;
    if password.expose().chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            key("password"),
            "must not hold control characters",
        ));
    }
    if !password.is_empty() && r.username.is_empty() {
        return Err(ConfigError::invalid(
            key("username"),
            "is needed when a password is set",
        ));
    }
    let signing_secret = super::validate::secret_or_file(
        base,
        &key("signing_secret"),
        &r.signing_secret,
        &r.signing_secret_file,
    )?;
    if !signing_secret.is_empty() && signing_secret.expose().len() < 16 {
        return Err(ConfigError::invalid(
            key("signing_secret"),
            "must be at least 16 characters",
        ));
    }
    if !signing_secret.is_empty() && delivery == Delivery::Tcp {
        return Err(ConfigError::invalid(
            key("signing_secret"),
            "signs HTTP deliveries only (delivery is \"tcp\")",
        ));
    }
    let ca_file = if r.ca_file.is_empty() {
        None
    } else {
        if delivery != Delivery::Https {
            return Err(ConfigError::invalid(
                key("ca_file"),
                "is used by delivery \"https\" only",
            ));
        }
        let path = super::validate::resolve(base, &r.ca_file);
        super::pem::read_certificates(&path, &key("ca_file"))?;
        Some(path)
    };
    if !(1..=10_000).contains(&r.batch) {
        return Err(ConfigError::invalid(
            key("batch"),
            "must be between 1 and 10000",
        ));
    }
    let mut directions = Vec::new();
    for d in &r.directions {
        let d = d.to_ascii_lowercase();
        if !DIRECTIONS.contains(&d.as_str()) {
            return Err(ConfigError::invalid(
                key("directions"),
                "entries must be \"inbound\", \"outbound\" or \"internal\"",
            ));
        }
        directions.push(d);
    }
    if r.max_backlog == 0 || r.max_backlog > 1_000_000_000 {
        return Err(ConfigError::invalid(
            key("max_backlog"),
            "must be between 1 and 1000000000",
        ));
    }
    if r.max_age_days > 3650 {
        return Err(ConfigError::invalid(
            key("max_age_days"),
            "must be between 0 (no limit) and 3650",
        ));
    }
    if !(1..=300).contains(&r.timeout_secs) {
        return Err(ConfigError::invalid(
            key("timeout_secs"),
            "must be between 1 and 300",
        ));
    }
    Ok(ReceiverSettings {
        name: r.name.clone(),
        delivery,
        address: address.to_owned(),
        port: r.port,
        path: r.path.clone(),
        format,
        username: r.username.clone(),
        password,
        signing_secret,
        tls_verify: r.tls_verify,
        ca_file,
        batch: r.batch,
        grouped: r.grouped,
        only_answered: r.only_answered,
        directions,
        max_backlog: r.max_backlog,
        max_age: (r.max_age_days > 0)
            .then(|| Duration::from_secs(u64::from(r.max_age_days) * 86_400)),
        timeout: Duration::from_secs(r.timeout_secs),
    })
}
