//! The configuration file (TOML), environment overrides, and validation into
//! [`Settings`], the typed form the server runs on.
//!
//! Every key is documented in `docs/configuration.md`. Unknown keys are errors,
//! so a typo never silently leaves a default in force.

pub mod cdr_output;
mod env;
mod keys;
pub mod pem;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use keys::known_keys;
pub use secret::Secret;
pub use validate::{
    ApiUser, AriSettings, AsteriskSettings, CallControlSettings, CdrApiSettings, ClusterSettings,
    DialingSettings, LockoutSettings, NetSettings, OldApiSettings, PmsSettings, RecordingStore,
    RecordingsSettings, S3Settings, Settings, WsUser, api_user, old_api, overlaps,
    parse_bind_address, ws_user,
};

/// A problem with the configuration, naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// The error with every secret value of the configuration (file and
    /// `PBXGATE_*` variables) replaced by `***`. Messages are written not to
    /// quote values; this is the backstop for any that still would (a
    /// library's message, a secret pasted into the wrong key's place).
    fn scrubbed(self, text: &str, vars: Vec<(String, String)>) -> ConfigError {
        let secrets = secret_values(text, vars);
        if secrets.is_empty() {
            return self;
        }
        let clean = |s: String| {
            secrets
                .iter()
                .fold(s, |acc, secret| acc.replace(secret.as_str(), "***"))
        };
        match self {
            ConfigError::Read { .. } => self,
            ConfigError::Syntax { path, message } => ConfigError::Syntax {
                path,
                message: clean(message),
            },
            ConfigError::Env { var, message } => ConfigError::Env {
                var,
                message: clean(message),
            },
            ConfigError::Invalid { key, message } => ConfigError::Invalid {
                key: clean(key),
                message: clean(message),
            },
        }
    }

    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub web: Web,
    pub database: Database,
    pub pbx: Pbx,
    pub https_api: HttpsApi,
    pub https_api_old: HttpsApiOld,
    pub session: SessionConfig,
    pub login_restriction: LoginRestriction,
    pub system: SystemConfig,
    pub log: LogConfig,
    pub asterisk: AsteriskConfig,
    pub recordings: RecordingsConfig,
    pub cdrapi: CdrApiConfig,
    pub call_control: CallControlConfig,
    pub dialing: DialingConfig,
    pub pms: PmsConfig,
    pub websockify: WebsockifyConfig,
    pub cdr_output: cdr_output::CdrOutputConfig,
    pub cluster: ClusterConfig,
    /// Which keys of the API sections the file (or the environment) sets.
    #[serde(skip)]
    pub file_keys: FileKeys,
}

/// The keys of `[https_api]` and `[https_api_old]` set in the configuration
/// file or by `PBXGATE_*` variables: the admin interface shows these as
/// fixed and edits only the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileKeys {
    pub https_api: std::collections::BTreeSet<String>,
    pub https_api_old: std::collections::BTreeSet<String>,
    /// `[cdr_output]` keys (`enable` set there is fixed on the page).
    pub cdr_output: std::collections::BTreeSet<String>,
}

impl FileKeys {
    fn of(tree: &toml::Table) -> FileKeys {
        let keys = |section: &str| {
            tree.get(section)
                .and_then(toml::Value::as_table)
                .map(|t| t.keys().cloned().collect())
                .unwrap_or_default()
        };
        FileKeys {
            https_api: keys("https_api"),
            https_api_old: keys("https_api_old"),
            cdr_output: keys("cdr_output"),
        }
    }

    /// Whether the file sets the new API's first user (`[https_api]`
    /// username, password or its other keys).
    pub fn fixes_first_user(&self) -> bool {
        [
            "username",
            "password",
            "password_file",
            "call_control",
            "permitted_ips",
        ]
        .iter()
        .any(|k| self.https_api.contains(*k))
    }

    pub fn old(&self, key: &str) -> bool {
        self.https_api_old.contains(key)
            || (key == "password" && self.https_api_old.contains("password_file"))
    }
}

/// The hotel PMS API (`pmsapi`): the PMS account whose credentials make the
/// request token, the classes of service, and how wake-up calls are placed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PmsConfig {
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    /// Class of service of a check-in that names none (1-4).
    pub default_cos: u8,
    /// Numbers (as sent to the trunk) that class of service 2 and up may call:
    /// Asterisk patterns (`_NXXXXXX`) or plain numbers.
    pub local_patterns: Vec<String>,
    /// Numbers that class of service 3 and up may call.
    pub national_patterns: Vec<String>,
    /// Numbers every room may call, checked in or not (emergency).
    pub always_allowed: Vec<String>,
    /// Where a wake-up call dials the room's extension; empty: `[dialing] context`.
    pub wakeup_context: String,
    /// Sound played when the guest answers (then the time is said).
    pub wakeup_prompt: String,
    /// Caller name the room's phone shows for a wake-up call.
    pub wakeup_caller_name: String,
    /// Seconds a wake-up call rings.
    pub wakeup_ring_secs: u32,
    /// Calls placed at most (the first and its retries).
    pub wakeup_attempts: u32,
    /// Seconds between an unanswered call and the next.
    pub wakeup_retry_secs: u32,
    /// A call due while pbxgate was away is still placed up to this late.
    pub wakeup_grace_secs: u32,
    /// Wake-up calls ringing at once, at most.
    pub wakeup_concurrency: u32,
    /// Voicemail context of the rooms' mailboxes (emptied at check-out).
    pub voicemail_context: String,
    /// Empty the room's mailbox at check-out.
    pub clear_voicemail: bool,
    /// The message-waiting lamp's mailbox is `<extension>@<mwi_context>`.
    pub mwi_context: String,
}

impl Default for PmsConfig {
    fn default() -> Self {
        PmsConfig {
            username: String::new(),
            password: Secret::default(),
            password_file: String::new(),
            default_cos: 4,
            local_patterns: vec!["_NXXXXXX".into()],
            national_patterns: vec!["_NXXNXXXXXX".into(), "_1NXXNXXXXXX".into()],
            always_allowed: vec!["911".into(), "112".into()],
            wakeup_context: String::new(),
            wakeup_prompt: "hello".into(),
            wakeup_caller_name: "Wake-up call".into(),
            wakeup_ring_secs: 30,
            wakeup_attempts: 3,
            wakeup_retry_secs: 300,
            wakeup_grace_secs: 900,
            wakeup_concurrency: 10,
            voicemail_context: "default".into(),
            clear_voicemail: true,
            mwi_context: "pbxgate".into(),
        }
    }
}

/// Inbound call control (`acceptCall` / `refuseCall`): how long a held call
/// waits for a decision and what a refused caller gets.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallControlConfig {
    /// Seconds a held inbound call waits for a decision before it is accepted.
    pub timeout_secs: f64,
    /// The ARI hangup reason of a refused call: "busy", "congestion",
    /// "rejected", "normal", "no_answer", "unallocated", ...
    pub refuse_reason: String,
    /// Seconds after the timeout at which Asterisk itself lets the call go on
    /// if pbxgate has not (stopped, crashed, disconnected).
    pub backstop_grace_secs: f64,
}

impl Default for CallControlConfig {
    fn default() -> Self {
        CallControlConfig {
            timeout_secs: 10.0,
            refuse_reason: "busy".into(),
            backstop_grace_secs: 1.0,
        }
    }
}

/// Several pbxgate nodes for one Asterisk on one PostgreSQL database: one
/// of them at a time owns the Asterisk (holds the ARI application).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name, unique among the nodes; empty: `<hostname>:<port
    /// of web.listen>`.
    pub node_name: String,
    /// The name the nodes share for the Asterisk they serve; empty: the
    /// AMI address (`asterisk.ami_address`).
    pub pbx_name: String,
    /// Seconds an owner's lease lasts without renewal (renewed every third
    /// of it): a standby takes over within about this long after the owner
    /// died.
    pub lease_secs: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_name: String::new(),
            pbx_name: String::new(),
            lease_secs: 3.0,
        }
    }
}

/// Where the click-to-call and transfer actions (`dialExtension`,
/// `dialOutbound`, `callTransfer`, ...) send calls in the dialplan.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialingConfig {
    /// The phones' context: extensions, IVRs, queues, ring groups and the
    /// outbound routes are dialled here, as if a phone dialled them.
    pub context: String,
    /// Prepended to external numbers (`dialOutbound`, `transferNumberOutbound`),
    /// e.g. "9" when outbound routes need a prefix.
    pub outbound_prefix: String,
    /// Seconds the first phone of a click-to-call rings before giving up.
    pub ring_secs: u32,
    /// PJSIP endpoints in these contexts are trunks (listVoIPTrunk), as are
    /// endpoints with an outbound registration; endpoints in `context` are
    /// extensions (listAccount); any other endpoint is in neither list.
    pub trunk_contexts: Vec<String>,
}

impl Default for DialingConfig {
    fn default() -> Self {
        DialingConfig {
            context: "from-internal".into(),
            outbound_prefix: String::new(),
            ring_secs: 30,
            trunk_contexts: vec!["from-trunk".into()],
        }
    }
}

/// How pbxgate reaches Asterisk. An empty `ami_secret` means: do not connect.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsteriskConfig {
    pub ami_address: String,
    pub ami_username: String,
    pub ami_secret: Secret,
    pub ami_secret_file: String,
    pub ari_url: String,
    pub ari_username: String,
    pub ari_password: Secret,
    pub ari_password_file: String,
    pub ari_app: String,
    pub cdr_csv: String,
}

impl Default for AsteriskConfig {
    fn default() -> Self {
        AsteriskConfig {
            ami_address: "127.0.0.1:5038".into(),
            ami_username: "pbxgate".into(),
            ami_secret: Secret::default(),
            ami_secret_file: String::new(),
            ari_url: "http://127.0.0.1:8088".into(),
            ari_username: "pbxgate".into(),
            ari_password: Secret::default(),
            ari_password_file: String::new(),
            ari_app: "pbxgate".into(),
            cdr_csv: "/var/log/asterisk/cdr-csv/Master.csv".into(),
        }
    }
}

/// `cdrapi` answers: which firmware generation's shapes, and how times
/// without an offset are read.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdrApiConfig {
    /// "ucm630x" (43 fields, grouped sessions), "ucm62xx" (32 fields,
    /// grouped) or "ucm6100" (22 fields, `{"cdr":[...]}`, every leg flat).
    pub profile: String,
    /// Value of each JSON entry's `cdr` key: "session" or "empty".
    pub cdr_key: String,
    /// startTime/endTime without an offset: "pbx" (in `pbx.timezone`) or "utc".
    pub naive_times: String,
    /// Legs per database round trip of `cdrExport`.
    pub export_page: u32,
}

impl Default for CdrApiConfig {
    fn default() -> Self {
        CdrApiConfig {
            profile: "ucm630x".into(),
            cdr_key: "session".into(),
            naive_times: "pbx".into(),
            export_page: 1000,
        }
    }
}

/// Where `recapi` finds recordings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingsConfig {
    pub spool_dir: String,
    /// "local" (folders under `spool_dir`) or "s3" (`[recordings.s3]`).
    pub store: String,
    /// recapi directory name -> folder (relative to `spool_dir`, or to the
    /// bucket prefix). Entries are merged over [`default_recording_dirs`];
    /// an empty folder removes a directory.
    pub dirs: BTreeMap<String, String>,
    pub s3: S3Config,
    /// Shape of file listings: "month" (UCM630x, `YYYY-MM/name`) or "flat"
    /// (UCM62xx, bare names); API users may override it.
    pub listing: String,
}

/// The directories a UCM's recapi knows, mapped to where the shipped dialplan
/// and Asterisk's applications write: queue calls are recorded by the same
/// subroutine as every call (`monitor/`); MeetMe writes `meetme/`.
pub fn default_recording_dirs() -> BTreeMap<String, String> {
    [
        ("monitor", "monitor"),
        ("queue", "monitor"),
        ("meetme", "meetme"),
        ("conference", "meetme"),
        ("voicemail/default", "voicemail/default"),
        ("emergency", "emergency"),
        ("sca", "sca"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        RecordingsConfig {
            spool_dir: "/var/spool/asterisk".into(),
            store: "local".into(),
            dirs: default_recording_dirs(),
            s3: S3Config::default(),
            listing: "month".into(),
        }
    }
}

/// An S3-compatible bucket holding the recordings (`recordings.store = "s3"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Empty: AWS itself; else e.g. `https://minio.example:9000`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub secret_access_key_file: String,
    /// Key prefix under which the directory folders are (no leading `/`).
    pub prefix: String,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: Secret::default(),
            secret_access_key_file: String::new(),
            prefix: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Web {
    pub listen: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub data_dir: String,
    pub max_body_bytes: u64,
    pub header_read_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    pub handshake_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub body_read_timeout_secs: u64,
    pub max_connections: u32,
    pub body_buffer_bytes: u64,
    pub h2_max_streams: u32,
    pub password_checks: u32,
    pub password_check_wait_secs: u64,
    pub hsts_max_age_secs: u64,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen: "0.0.0.0:8089".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            data_dir: "data".into(),
            max_body_bytes: 1024 * 1024,
            header_read_timeout_secs: 30,
            shutdown_grace_secs: 30,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 30,
            body_read_timeout_secs: 30,
            max_connections: 512,
            body_buffer_bytes: 32 * 1024 * 1024,
            h2_max_streams: 16,
            password_checks: 2,
            password_check_wait_secs: 5,
            hsts_max_age_secs: 31_536_000,
        }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Database {
    pub url: Secret,
    pub max_connections: u32,
    /// Months of CDRs kept besides the current one; 0 keeps every CDR.
    pub cdr_retention_months: u32,
}

// The URL can carry a PostgreSQL password.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("url", &self.url)
            .field("max_connections", &self.max_connections)
            .field("cdr_retention_months", &self.cdr_retention_months)
            .finish()
    }
}

impl Default for Database {
    fn default() -> Self {
        Database {
            url: Secret::new("sqlite://data/pbxgate.db"),
            max_connections: 8,
            cdr_retention_months: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pbx {
    pub timezone: String,
}

impl Default for Pbx {
    fn default() -> Self {
        Pbx {
            timezone: "UTC".into(),
        }
    }
}

/// "HTTPS API Settings (New)": the first API user, plus `[[https_api.users]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsApi {
    pub enable: bool,
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    pub call_control: bool,
    pub permitted_ips: Vec<String>,
    /// Actions or groups added to the user's default permissions.
    pub allow: Vec<String>,
    /// Actions or groups taken away (after `allow`).
    pub deny: Vec<String>,
    pub users: Vec<UserConfig>,
    /// recapi listing shape for this user: "month", "flat" or "" (`recordings.listing`).
    pub recordings_listing: String,
}

impl Default for HttpsApi {
    fn default() -> Self {
        HttpsApi {
            enable: true,
            username: "cdrapi".into(),
            password: Secret::default(),
            password_file: String::new(),
            call_control: false,
            permitted_ips: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            users: Vec::new(),
            recordings_listing: String::new(),
        }
    }
}

/// A further API user (the UCM allows several).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserConfig {
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    pub call_control: bool,
    pub permitted_ips: Vec<String>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// recapi listing shape: "month", "flat" or "" (`recordings.listing`).
    pub recordings_listing: String,
}

/// `/websockify` users of their own (on a UCM the event websocket wants a
/// web-interface user, not the API user), beside the API users.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebsockifyConfig {
    pub users: Vec<WsUserConfig>,
}

/// One `[[websockify.users]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsUserConfig {
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    pub permitted_ips: Vec<String>,
    /// Event names the user may subscribe to; empty: all.
    pub events: Vec<String>,
}

/// "HTTPS API Settings (Old)": the listener of `GET /cdrapi`, `/recapi` and
/// `/pmsapi` (see `legacy`). Applied live on SIGHUP.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsApiOld {
    pub enable: bool,
    pub tls_bind_address: String,
    pub tls_private_key: String,
    pub tls_cert: String,
    pub username: String,
    pub password: Secret,
    pub password_file: String,
    pub permitted_ips: Vec<String>,
    /// "Enable PMSAPI": serve `/pmsapi` on the old listener.
    pub enable_pmsapi: bool,
    /// `GET /recapi` listing shape: "month", "flat" or "" (`recordings.listing`).
    pub recordings_listing: String,
}

impl Default for HttpsApiOld {
    fn default() -> Self {
        HttpsApiOld {
            enable_pmsapi: false,
            enable: false,
            tls_bind_address: "0.0.0.0:8443".into(),
            tls_private_key: String::new(),
            tls_cert: String::new(),
            username: "cdrapi".into(),
            password: Secret::default(),
            password_file: String::new(),
            permitted_ips: Vec::new(),
            recordings_listing: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub idle_timeout_secs: u64,
    pub challenge_ttl_secs: u64,
    pub cache_ms: u64,
    /// A `/websockify` socket that receives no frame for this long is closed.
    pub websocket_idle_secs: u64,
    /// Open challenges one address (an IPv6 /64) can hold; a new one drops the oldest.
    pub max_challenges_per_address: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            idle_timeout_secs: 600,
            challenge_ttl_secs: 60,
            cache_ms: 1000,
            websocket_idle_secs: 60,
            max_challenges_per_address: 32,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginRestriction {
    pub max_failures: u32,
    pub window_secs: u64,
    pub ban_secs: u64,
    pub whitelist: Vec<String>,
}

impl Default for LoginRestriction {
    fn default() -> Self {
        LoginRestriction {
            max_failures: 5,
            window_secs: 600,
            ban_secs: 600,
            whitelist: Vec::new(),
        }
    }
}

/// What `getSystemStatus` / `getSystemGeneralStatus` report about "the UCM".
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    pub product_model: String,
    pub firmware_version: String,
    pub part_number: String,
    pub serial_number: String,
    pub mac: String,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            product_model: "UCM6304".into(),
            firmware_version: "1.0.33.30".into(),
            part_number: "pbxgate".into(),
            serial_number: String::new(),
            mac: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// Reads `path`, applies `PBXGATE_*` environment overrides and validates.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    load_full(path).map(|(_, settings)| settings)
}

/// As [`load`], also returning the configuration as read (after the
/// environment overrides), to tell what a reload changed.
pub fn load_full(path: &Path) -> Result<(Config, Settings), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let vars: Vec<(String, String)> = std::env::vars().collect();
    let loaded = parse_str(&text, &path.display().to_string(), vars.clone()).and_then(|config| {
        let settings = validate::validate(config.clone(), &base_dir)?;
        Ok((config, settings))
    });
    loaded.map_err(|e| e.scrubbed(&text, vars))
}

/// As [`load`], from text and an explicit environment (for tests).
pub fn load_str(
    text: &str,
    origin: &str,
    base_dir: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings, ConfigError> {
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    parse_str(text, origin, vars.clone())
        .and_then(|config| validate::validate(config, base_dir))
        .map_err(|e| e.scrubbed(text, vars))
}

/// The names of the keys whose values differ between two configurations
/// (`section.key`; a list such as `https_api.users` as a whole). Only names:
/// secret values are not even serialized, see [`changed_secrets`].
pub fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let tree = |c: &Config| {
        let mut out = BTreeMap::new();
        if let Ok(v) = toml::Value::try_from(c) {
            flatten("", &v, &mut out);
        }
        out
    };
    let (ta, tb) = (tree(a), tree(b));
    let mut keys: Vec<String> = ta
        .iter()
        .filter(|(k, v)| tb.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(tb.keys().filter(|k| !ta.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The secret keys (outside `[https_api_old]`) whose effective values differ,
/// whether they come from the file, a `_file` or the environment.
pub fn changed_secrets(a: &Settings, b: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if a.database_url != b.database_url {
        out.push("database.url".to_owned());
    }
    for (i, u) in a.users.iter().enumerate() {
        let same = b
            .users
            .get(i)
            .is_some_and(|v| v.username == u.username && v.password == u.password);
        if !same {
            out.push(if i == 0 {
                "https_api.password".to_owned()
            } else {
                format!("https_api.users[{}].password", i - 1)
            });
        }
    }
    let ami = |s: &Settings| s.asterisk.as_ref().map(|a| a.ami_secret.clone());
    let ari = |s: &Settings| {
        s.asterisk
            .as_ref()
            .and_then(|a| a.ari.as_ref().map(|r| r.password.clone()))
    };
    if ami(a) != ami(b) {
        out.push("asterisk.ami_secret".to_owned());
    }
    if ari(a) != ari(b) {
        out.push("asterisk.ari_password".to_owned());
    }
    if a.pms.password != b.pms.password {
        out.push("pms.password".to_owned());
    }
    let s3 = |s: &Settings| match &s.recordings.store {
        RecordingStore::S3(b) => Some(b.secret_access_key.clone()),
        RecordingStore::Local => None,
    };
    if s3(a) != s3(b) {
        out.push("recordings.s3.secret_access_key".to_owned());
    }
    for (i, r) in b.cdr_output.receivers.iter().enumerate() {
        let before = a.cdr_output.receivers.iter().find(|o| o.name == r.name);
        if before.is_none_or(|o| o.password != r.password) && !r.password.is_empty() {
            out.push(format!("cdr_output.receivers[{i}].password"));
        }
        if before.is_none_or(|o| o.signing_secret != r.signing_secret)
            && !r.signing_secret.is_empty()
        {
            out.push(format!("cdr_output.receivers[{i}].signing_secret"));
        }
    }
    out
}

/// Parses TOML text and applies the environment overrides.
fn parse_str(
    text: &str,
    origin: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut tree: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: origin.to_owned(),
        message: describe(&e, text),
    })?;
    let overridden = env::apply_overrides(&mut tree, vars)?;
    check_secret_types(&tree, "")?;
    let file_keys = FileKeys::of(&tree);
    let mut config: Config = Config::deserialize(toml::Value::Table(tree)).map_err(|e| {
        // No source text here (the tree is already parsed), so Display
        // names the key without quoting a line; the value is dropped too.
        let message = without_values(e.to_string().trim_end()).replace('\n', " ");
        // A value that came from the environment is blamed on its variable.
        match overridden
            .iter()
            .find(|(key, _)| message.contains(key.as_str()))
        {
            Some((_, var)) => ConfigError::Env {
                var: var.clone(),
                message,
            },
            None => ConfigError::Syntax {
                path: origin.to_owned(),
                message,
            },
        }
    })?;
    config.file_keys = file_keys;
    Ok(config)
}

/// The parser's message and position, without the quoted source line: that
/// line may hold a password.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end().replace('\n', "; ");
    match e.span() {
        Some(span) if !text.is_empty() => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        _ => message,
    }
}

/// Whether the key (`section.key`, `https_api.users[0].password`) holds a
/// secret: its value is never shown. Every field of type [`Secret`] must
/// match (the test `every_secret_field_is_a_secret_key` checks it).
pub fn is_secret_key(path: &str) -> bool {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    path == "database.url"
        || leaf == "password"
        || leaf.ends_with("_password")
        || leaf.ends_with("_secret")
        || (leaf.starts_with("secret_") && !leaf.ends_with("_file"))
}

/// Secret values shorter than this are not scrubbed from messages (a
/// one-letter "secret" would blank out every occurrence of the letter).
const SCRUB_MIN_LEN: usize = 3;

/// The values of every secret key in the file and the `PBXGATE_*`
/// variables (as text, whatever their type), the password parts of the
/// database URL, and the raw values of variables that set secret keys or
/// whole lists (a list of users holds passwords), longest first.
fn secret_values(text: &str, vars: Vec<(String, String)>) -> Vec<String> {
    fn walk(value: &toml::Value, path: &str, secret: bool, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, &p, secret || is_secret_key(&p), out);
                }
            }
            toml::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), secret, out);
                }
            }
            toml::Value::String(s) if secret => {
                out.push(s.clone());
                if path == "database.url" {
                    out.extend(store::url_secrets(s).into_iter().map(str::to_owned));
                }
            }
            other if secret => out.push(other.to_string()),
            _ => {}
        }
    }
    let mut tree: toml::Table = toml::from_str(text).unwrap_or_default();
    let mut out = Vec::new();
    walk(&toml::Value::Table(tree.clone()), "", false, &mut out);
    for (var, raw) in &vars {
        let Some(path) = var.strip_prefix(env::PREFIX) else {
            continue;
        };
        let path = path.to_ascii_lowercase().replace("__", ".");
        if is_secret_key(&path) || path.ends_with(".users") {
            out.push(raw.clone());
            if path == "database.url" {
                out.extend(store::url_secrets(raw).into_iter().map(str::to_owned));
            }
        }
    }
    if env::apply_overrides(&mut tree, vars).is_ok() {
        walk(&toml::Value::Table(tree), "", false, &mut out);
    }
    out.retain(|s| s.len() >= SCRUB_MIN_LEN);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// A serde message without the value it quotes: `invalid type: string
/// "x", expected u32` becomes `invalid type: string, expected u32`. The key
/// is named beside it, and the value may be a secret put in the wrong place
/// (a password given as a list, a list of users given as strings).
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    const MARKS: [&str; 3] = ["invalid type: ", "invalid value: ", "unknown variant "];
    while let Some((at, mark)) = MARKS
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (i, *m)))
        .min_by_key(|(i, _)| *i)
    {
        out.push_str(&rest[..at]);
        out.push_str(mark.trim_end());
        let tail = &rest[at + mark.len()..];
        let end = tail.find(", expected").unwrap_or(tail.len());
        // Keep the kind ("string", "integer", "sequence"), drop what follows it.
        let kind_end = tail[..end].find(['`', '"', '\'']).unwrap_or(end);
        let kind = tail[..kind_end].trim_end();
        if !kind.is_empty() {
            out.push(' ');
            out.push_str(kind);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Keys holding secrets must be strings; checked before deserialising so that
/// a type error never quotes a password.
fn check_secret_types(table: &toml::Table, prefix: &str) -> Result<(), ConfigError> {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let secret = is_secret_key(&path);
        match value {
            toml::Value::String(_) => {}
            _ if secret => {
                return Err(ConfigError::invalid(
                    path,
                    "must be a string in quotes (the value is not shown: it is a secret)",
                ));
            }
            toml::Value::Table(t) => check_secret_types(t, &path)?,
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let toml::Value::Table(t) = item {
                        check_secret_types(t, &format!("{path}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}
