//! Turns a parsed [`Config`] into [`Settings`], rejecting anything invalid with
//! the name of the key at fault.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    AsteriskConfig, CallControlConfig, Config, ConfigError, DialingConfig, HttpsApiOld, LogConfig,
    PmsConfig, Secret, SystemConfig, UserConfig, WsUserConfig,
};
use crate::acl::Acl;

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config_dir: PathBuf,
    pub listen: SocketAddr,
    /// Configured certificate and key; `None` = generated self-signed.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    /// Limits of both HTTPS listeners against hostile clients.
    pub net: NetSettings,
    pub database_url: Secret,
    pub database_max_connections: u32,
    /// Months of CDRs kept besides the current one (UTC months); 0: all.
    pub cdr_retention_months: u32,
    pub timezone_name: String,
    pub timezone: jiff::tz::TimeZone,
    /// The file's `[https_api]` switch and users, `[[websockify.users]]`
    /// and `[https_api_old]`: what `apiconfig` starts from. They are not what
    /// is in force (the admin page's settings go over them, live): read the
    /// API settings from `apiconfig::ApiConfig`, never from here.
    pub api_enabled: bool,
    pub users: Vec<ApiUser>,
    /// `[[websockify.users]]`: users of `/websockify` only (see above).
    pub websocket_users: Vec<WsUser>,
    pub old_api: OldApiSettings,
    pub idle_timeout: Duration,
    pub challenge_ttl: Duration,
    /// How long a session read from the database is trusted before it is read
    /// again; zero reads it on every request.
    pub session_cache: Duration,
    /// A `/websockify` socket without any frame from the client for this long is closed.
    pub websocket_idle: Duration,
    /// Open challenges one address (an IPv6 /64) can hold in the store.
    pub max_challenges_per_address: u32,
    pub lockout: LockoutSettings,
    pub system: SystemConfig,
    pub log: LogConfig,
    /// `None`: no AMI secret configured, pbxgate does not connect to Asterisk.
    pub asterisk: Option<AsteriskSettings>,
    pub recordings_dir: PathBuf,
    pub recordings: RecordingsSettings,
    pub cdrapi: CdrApiSettings,
    pub call_control: CallControlSettings,
    pub dialing: DialingSettings,
    pub pms: PmsSettings,
    /// The API keys the file sets (fixed on the admin interface).
    pub file_keys: super::FileKeys,
    /// `[cdr_output]`: CDR Real-Time Output.
    pub cdr_output: super::cdr_output::CdrOutputSettings,
    pub cluster: ClusterSettings,
}

/// `[cluster]`, resolved: names filled in.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub node: String,
    /// The shared name of the Asterisk; empty without one.
    pub pbx: String,
    pub lease: Duration,
}

/// `[web]` limits that keep the listeners alive under hostile clients.
#[derive(Debug, Clone)]
pub struct NetSettings {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    pub body_buffer_bytes: usize,
    pub h2_max_streams: u32,
    pub password_checks: usize,
    pub password_check_wait: Duration,
    /// 0 = no `Strict-Transport-Security` header.
    pub hsts_max_age_secs: u64,
}

#[derive(Debug, Clone)]
pub struct CallControlSettings {
    pub timeout: Duration,
    /// An ARI hangup reason.
    pub refuse_reason: String,
    pub backstop_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct DialingSettings {
    pub context: String,
    pub outbound_prefix: String,
    pub ring: Duration,
    pub trunk_contexts: Vec<String>,
}

/// `[recordings]`: where each recapi directory lives.
#[derive(Debug, Clone)]
pub struct RecordingsSettings {
    pub store: RecordingStore,
    /// recapi directory name -> folder: an absolute path for the local
    /// store, a key prefix (without trailing `/`) for S3. Sorted by name.
    pub dirs: Vec<(ucm::recapi::RelPath, String)>,
    /// Shape of file listings unless the API user has its own.
    pub listing: ucm::recapi::Listing,
}

#[derive(Debug, Clone)]
pub enum RecordingStore {
    Local,
    S3(S3Settings),
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// `None`: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

#[derive(Debug, Clone, Copy)]
pub struct CdrApiSettings {
    pub output: ucm::cdrapi::encode::Options,
    /// Filter times without an offset are UTC (else `pbx.timezone`).
    pub naive_utc: bool,
    pub export_page: u32,
}

#[derive(Debug, Clone)]
pub struct AsteriskSettings {
    pub ami_address: String,
    pub ami_username: String,
    pub ami_secret: Secret,
    /// `None`: no ARI password configured, the Stasis application is not registered.
    pub ari: Option<AriSettings>,
    /// Asterisk's CDR CSV, for recovery; `None` = none.
    pub cdr_csv: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AriSettings {
    pub url: String,
    pub username: String,
    pub password: Secret,
    pub app: String,
}

/// One user of the new HTTPS API.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub username: String,
    /// Empty: every login as this user is refused.
    pub password: Secret,
    pub call_control: bool,
    /// Empty: logins from every address are allowed.
    pub permitted_ips: Acl,
    /// The permitted IPs as written, for audit digests and display.
    pub permitted_ips_text: Vec<String>,
    /// The actions the user may call (`-47` otherwise).
    pub permissions: crate::permissions::Permissions,
    /// recapi listing shape; `None`: `recordings.listing`.
    pub recordings_listing: Option<ucm::recapi::Listing>,
}

/// A user of `/websockify` only (`[[websockify.users]]` or the admin page).
#[derive(Debug, Clone)]
pub struct WsUser {
    pub username: String,
    /// Empty: every login as this user is refused.
    pub password: Secret,
    /// Empty: logins from every address are allowed.
    pub permitted_ips: Acl,
    pub permitted_ips_text: Vec<String>,
    /// The event names it may subscribe to and receive; empty: all.
    pub events: Vec<&'static str>,
}

impl WsUser {
    pub fn may_receive(&self, eventname: &str) -> bool {
        self.events.is_empty() || self.events.contains(&eventname)
    }
}

/// `[https_api_old]`. Applied live on SIGHUP (see `legacy::reload`), so it is
/// compared as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldApiSettings {
    pub enable: bool,
    pub bind: SocketAddr,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub username: String,
    pub password: Secret,
    /// Empty: nobody is allowed (the UCM's rule for the old API).
    pub permitted_ips: Acl,
    pub permitted_ips_text: Vec<String>,
    /// Serve `/pmsapi` on the old listener.
    pub enable_pmsapi: bool,
    /// `GET /recapi` listing shape; `None`: `recordings.listing`.
    pub recordings_listing: Option<ucm::recapi::Listing>,
}

/// `[pms]`.
#[derive(Debug, Clone)]
pub struct PmsSettings {
    pub username: String,
    /// Empty: PMS tokens are refused.
    pub password: Secret,
    pub default_cos: u8,
    /// The number classes as the regular expressions the dialplan matches
    /// (AstDB `pbxgate-cos/<class>`); empty: the class has no number.
    pub local_regex: String,
    pub national_regex: String,
    pub always_regex: String,
    /// Where wake-up calls dial the room (a dialplan context).
    pub wakeup_context: String,
    pub wakeup_prompt: String,
    pub wakeup_caller_name: String,
    pub wakeup_ring: Duration,
    pub wakeup_attempts: u32,
    pub wakeup_retry: Duration,
    pub wakeup_grace: Duration,
    pub wakeup_concurrency: usize,
    pub voicemail_context: String,
    pub clear_voicemail: bool,
    pub mwi_context: String,
}

#[derive(Debug, Clone)]
pub struct LockoutSettings {
    /// 0 disables the login restriction.
    pub max_failures: u32,
    pub window: Duration,
    pub ban: Duration,
    pub whitelist: Acl,
}

pub(super) fn resolve(base: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn acl(key: &str, entries: &[String]) -> Result<Acl, ConfigError> {
    Acl::parse(entries).map_err(|(i, msg)| ConfigError::invalid(format!("{key}[{i}]"), msg))
}

fn username(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > 64 {
        return Err(ConfigError::invalid(key, "must be 1 to 64 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::invalid(
            key,
            format!("\"{name}\" may contain only letters, digits, '_' and '-' (as on the UCM)"),
        ));
    }
    Ok(())
}

/// The password from `password` or `password_file` (never both).
fn password(
    base: &Path,
    key_prefix: &str,
    inline: &Secret,
    file: &str,
) -> Result<Secret, ConfigError> {
    secret_or_file(base, &format!("{key_prefix}password"), inline, file)
}

fn tls_pair(
    base: &Path,
    cert_key: &str,
    cert: &str,
    key_key: &str,
    key: &str,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => Ok(None),
        (false, true) => Err(ConfigError::invalid(
            key_key,
            format!("must be set when {cert_key} is set"),
        )),
        (true, false) => Err(ConfigError::invalid(
            cert_key,
            format!("must be set when {key_key} is set"),
        )),
        (false, false) => {
            let (c, k) = (resolve(base, cert), resolve(base, key));
            for (name, p) in [(cert_key, &c), (key_key, &k)] {
                if !p.is_file() {
                    return Err(ConfigError::invalid(
                        name,
                        format!("{} is not a readable file", p.display()),
                    ));
                }
            }
            Ok(Some((c, k)))
        }
    }
}

/// A listing shape that may be left to `recordings.listing` (empty).
pub fn listing_override(
    key: &str,
    value: &str,
) -> Result<Option<ucm::recapi::Listing>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    ucm::recapi::Listing::parse(value).map(Some).ok_or_else(|| {
        ConfigError::invalid(
            key,
            "must be \"month\", \"flat\" or empty (then recordings.listing applies)",
        )
    })
}

/// One user of the new API; `prefix` names its keys in errors
/// (`https_api.`, `https_api.users[2].`).
pub fn api_user(prefix: &str, u: &UserConfig, base: &Path) -> Result<ApiUser, ConfigError> {
    username(&format!("{prefix}username"), &u.username)?;
    Ok(ApiUser {
        username: u.username.clone(),
        password: password(base, prefix, &u.password, &u.password_file)?,
        call_control: u.call_control,
        permitted_ips: acl(&format!("{prefix}permitted_ips"), &u.permitted_ips)?,
        permitted_ips_text: u.permitted_ips.clone(),
        permissions: crate::permissions::Permissions::resolve(&u.allow, &u.deny).map_err(
            |(deny, i, message)| {
                let key = if deny { "deny" } else { "allow" };
                ConfigError::invalid(format!("{prefix}{key}[{i}]"), message)
            },
        )?,
        recordings_listing: listing_override(
            &format!("{prefix}recordings_listing"),
            &u.recordings_listing,
        )?,
    })
}

/// One websocket user; `prefix` names its keys in errors
/// (`websockify.users[2].`).
pub fn ws_user(prefix: &str, u: &WsUserConfig, base: &Path) -> Result<WsUser, ConfigError> {
    username(&format!("{prefix}username"), &u.username)?;
    let mut events: Vec<&'static str> = Vec::with_capacity(u.events.len());
    for (i, name) in u.events.iter().enumerate() {
        let Some(known) = ucm::websockify::EVENT_NAMES.iter().find(|n| **n == name) else {
            return Err(ConfigError::invalid(
                format!("{prefix}events[{i}]"),
                format!(
                    "\"{name}\" is not an event name of /websockify (one of {})",
                    ucm::websockify::EVENT_NAMES.join(", ")
                ),
            ));
        };
        if !events.contains(known) {
            events.push(known);
        }
    }
    Ok(WsUser {
        username: u.username.clone(),
        password: password(base, prefix, &u.password, &u.password_file)?,
        permitted_ips: acl(&format!("{prefix}permitted_ips"), &u.permitted_ips)?,
        permitted_ips_text: u.permitted_ips.clone(),
        events,
    })
}

/// `[https_api_old]`, checked against the web listener `listen`.
pub fn old_api(
    old: &HttpsApiOld,
    base: &Path,
    listen: SocketAddr,
) -> Result<OldApiSettings, ConfigError> {
    let bind = parse_bind_address(&old.tls_bind_address)
        .map_err(|m| ConfigError::invalid("https_api_old.tls_bind_address", m))?;
    if old.enable && overlaps(bind, listen) {
        return Err(ConfigError::invalid(
            "https_api_old.tls_bind_address",
            format!("{bind} collides with web.listen {listen}"),
        ));
    }
    username("https_api_old.username", &old.username)?;
    let old_password = password(base, "https_api_old.", &old.password, &old.password_file)?;
    if !old_password.is_empty()
        && (old_password.expose().chars().count() < 2 || old_password.expose().contains([' ', ';']))
    {
        let key = if old.password_file.is_empty() {
            "https_api_old.password"
        } else {
            "https_api_old.password_file"
        };
        return Err(ConfigError::invalid(
            key,
            "the password must be at least 2 characters, without spaces or ';' (as on the UCM)",
        ));
    }
    let old_tls = tls_pair(
        base,
        "https_api_old.tls_cert",
        &old.tls_cert,
        "https_api_old.tls_private_key",
        &old.tls_private_key,
    )?;
    // The listener will read them: check them now (size, PEM, key match,
    // validity), so that check-config and a reload refuse what would not serve.
    if old.enable
        && let Some((cert, key)) = &old_tls
    {
        super::pem::read_pair(
            cert,
            key,
            "https_api_old.tls_cert",
            "https_api_old.tls_private_key",
        )?;
    }
    Ok(OldApiSettings {
        enable: old.enable,
        bind,
        tls: old_tls,
        username: old.username.clone(),
        password: old_password,
        permitted_ips: acl("https_api_old.permitted_ips", &old.permitted_ips)?,
        permitted_ips_text: old.permitted_ips.clone(),
        enable_pmsapi: old.enable_pmsapi,
        recordings_listing: listing_override(
            "https_api_old.recordings_listing",
            &old.recordings_listing,
        )?,
    })
}

/// Whether two listening addresses would collide.
pub fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `IP[:port]`, IPv6 as `[addr]:port` or `[addr]`; the port defaults to 8443.
pub fn parse_bind_address(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return if addr.port() == 0 {
            Err("port must be 1 to 65535 (0 would listen on a random port)".into())
        } else {
            Ok(addr)
        };
    }
    let ip = s.trim_start_matches('[').trim_end_matches(']');
    ip.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 8443))
        .map_err(|_| format!("\"{s}\" is not IP[:port] (IPv6 as [addr]:port)"))
}

pub(super) fn validate(c: Config, base: &Path) -> Result<Settings, ConfigError> {
    let listen = c.web.listen.parse::<SocketAddr>().map_err(|_| {
        ConfigError::invalid("web.listen", format!("\"{}\" is not IP:port", c.web.listen))
    })?;
    // Port 0 would listen on a port the kernel picks, which no client knows.
    if listen.port() == 0 {
        return Err(ConfigError::invalid(
            "web.listen",
            "port must be 1 to 65535 (0 would listen on a random port)",
        ));
    }
    let tls = tls_pair(
        base,
        "web.tls_cert",
        &c.web.tls_cert,
        "web.tls_key",
        &c.web.tls_key,
    )?;
    if c.web.data_dir.trim().is_empty() {
        return Err(ConfigError::invalid("web.data_dir", "must not be empty"));
    }
    if !(1024..=64 * 1024 * 1024).contains(&c.web.max_body_bytes) {
        return Err(ConfigError::invalid(
            "web.max_body_bytes",
            "must be 1024 to 67108864",
        ));
    }
    if c.web.header_read_timeout_secs == 0 {
        return Err(ConfigError::invalid(
            "web.header_read_timeout_secs",
            "must be at least 1",
        ));
    }
    let net = net(&c.web)?;

    store::check_url(c.database.url.expose())
        .map_err(|e| ConfigError::invalid("database.url", e.to_string()))?;
    // pbxgate creates web.data_dir, nothing else: a SQLite file elsewhere
    // needs its folder to exist (a typo must not create folders anywhere).
    if let Some(file) = store::sqlite_file(c.database.url.expose(), base)
        && let Some(folder) = file.parent()
        && folder != resolve(base, &c.web.data_dir)
        && !folder.is_dir()
    {
        return Err(ConfigError::invalid(
            "database.url",
            format!(
                "the SQLite file's folder {} does not exist (pbxgate creates only web.data_dir)",
                folder.display()
            ),
        ));
    }
    if c.database.cdr_retention_months > 1200 {
        return Err(ConfigError::invalid(
            "database.cdr_retention_months",
            "must be at most 1200 (100 years); 0 keeps every CDR",
        ));
    }
    if c.database.max_connections == 0 {
        return Err(ConfigError::invalid(
            "database.max_connections",
            "must be at least 1",
        ));
    }

    let timezone = jiff::tz::TimeZone::get(&c.pbx.timezone).map_err(|_| {
        ConfigError::invalid(
            "pbx.timezone",
            format!(
                "\"{}\" is not an IANA time zone name (e.g. Europe/Berlin)",
                c.pbx.timezone
            ),
        )
    })?;

    let api = &c.https_api;
    let mut users = Vec::with_capacity(1 + api.users.len());
    users.push(api_user(
        "https_api.",
        &UserConfig {
            username: api.username.clone(),
            password: api.password.clone(),
            password_file: api.password_file.clone(),
            call_control: api.call_control,
            permitted_ips: api.permitted_ips.clone(),
            allow: api.allow.clone(),
            deny: api.deny.clone(),
            recordings_listing: api.recordings_listing.clone(),
        },
        base,
    )?);
    for (i, u) in api.users.iter().enumerate() {
        let prefix = format!("https_api.users[{i}].");
        let user = api_user(&prefix, u, base)?;
        if users.iter().any(|x| x.username == u.username) {
            return Err(ConfigError::invalid(
                format!("{prefix}username"),
                format!("user \"{}\" is defined twice", u.username),
            ));
        }
        users.push(user);
    }
    // One name, one account: a login never has to guess which user is meant.
    let mut websocket_users: Vec<WsUser> = Vec::with_capacity(c.websockify.users.len());
    for (i, u) in c.websockify.users.iter().enumerate() {
        let key = format!("websockify.users[{i}].");
        let user = ws_user(&key, u, base)?;
        if users.iter().any(|x| x.username == u.username) {
            return Err(ConfigError::invalid(
                format!("{key}username"),
                format!(
                    "\"{}\" is the name of an API user (https_api): a websocket user needs a name of its own",
                    u.username
                ),
            ));
        }
        if websocket_users.iter().any(|x| x.username == u.username) {
            return Err(ConfigError::invalid(
                format!("{key}username"),
                format!("websocket user \"{}\" is defined twice", u.username),
            ));
        }
        websocket_users.push(user);
    }
    let old_api = old_api(&c.https_api_old, base, listen)?;
    let pms = pms(&c.pms, &c.dialing, base)?;

    if c.session.idle_timeout_secs == 0 {
        return Err(ConfigError::invalid(
            "session.idle_timeout_secs",
            "must be at least 1",
        ));
    }
    if c.session.cache_ms > 60_000 {
        return Err(ConfigError::invalid(
            "session.cache_ms",
            "must be 0 to 60000",
        ));
    }
    if c.session.challenge_ttl_secs == 0 {
        return Err(ConfigError::invalid(
            "session.challenge_ttl_secs",
            "must be at least 1",
        ));
    }
    if !(5..=3600).contains(&c.session.websocket_idle_secs) {
        return Err(ConfigError::invalid(
            "session.websocket_idle_secs",
            "must be 5 to 3600",
        ));
    }
    if !(1..=1000).contains(&c.session.max_challenges_per_address) {
        return Err(ConfigError::invalid(
            "session.max_challenges_per_address",
            "must be 1 to 1000",
        ));
    }
    let lr = &c.login_restriction;
    if lr.max_failures > 0 {
        for (key, value) in [
            ("login_restriction.window_secs", lr.window_secs),
            ("login_restriction.ban_secs", lr.ban_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(
                    key,
                    "must be at least 1 (set max_failures = 0 to disable the restriction)",
                ));
            }
        }
    }
    let lockout = LockoutSettings {
        max_failures: lr.max_failures,
        window: Duration::from_secs(lr.window_secs),
        ban: Duration::from_secs(lr.ban_secs),
        whitelist: acl("login_restriction.whitelist", &lr.whitelist)?,
    };

    if c.system.product_model.trim().is_empty() {
        return Err(ConfigError::invalid(
            "system.product_model",
            "must not be empty",
        ));
    }
    if c.system.firmware_version.trim().is_empty() {
        return Err(ConfigError::invalid(
            "system.firmware_version",
            "must not be empty",
        ));
    }
    if !c.system.mac.is_empty() && !is_mac(&c.system.mac) {
        return Err(ConfigError::invalid(
            "system.mac",
            "must look like C0:74:AD:1B:8E:86",
        ));
    }
    if tracing_subscriber::EnvFilter::try_new(&c.log.level).is_err() {
        return Err(ConfigError::invalid(
            "log.level",
            format!(
                "\"{}\" is not a level or filter (error, warn, info, debug, trace)",
                c.log.level
            ),
        ));
    }
    if !matches!(c.log.format.as_str(), "text" | "json") {
        return Err(ConfigError::invalid(
            "log.format",
            "must be \"text\" or \"json\"",
        ));
    }

    let asterisk = asterisk(&c.asterisk, base)?;
    if c.recordings.spool_dir.trim().is_empty() {
        return Err(ConfigError::invalid(
            "recordings.spool_dir",
            "must not be empty",
        ));
    }
    let recordings_dir = resolve(base, &c.recordings.spool_dir);
    let recordings = recordings(&c.recordings, &recordings_dir, base)?;

    let cdrapi = cdrapi(&c.cdrapi)?;
    let cdr_output = super::cdr_output::validate(&c.cdr_output, base)?;
    let call_control = call_control(&c.call_control)?;
    let dialing = dialing(&c.dialing)?;
    let cluster = cluster(&c.cluster, &c.asterisk, listen)?;

    Ok(Settings {
        cluster,
        cdrapi,
        call_control,
        dialing,
        pms,
        asterisk,
        recordings_dir,
        recordings,
        config_dir: base.to_path_buf(),
        listen,
        tls,
        data_dir: resolve(base, &c.web.data_dir),
        max_body_bytes: usize::try_from(c.web.max_body_bytes).unwrap_or(usize::MAX),
        header_read_timeout: Duration::from_secs(c.web.header_read_timeout_secs),
        shutdown_grace: Duration::from_secs(c.web.shutdown_grace_secs),
        net,
        database_url: c.database.url,
        database_max_connections: c.database.max_connections,
        cdr_retention_months: c.database.cdr_retention_months,
        timezone_name: c.pbx.timezone,
        timezone,
        api_enabled: api.enable,
        users,
        websocket_users,
        old_api,
        idle_timeout: Duration::from_secs(c.session.idle_timeout_secs),
        challenge_ttl: Duration::from_secs(c.session.challenge_ttl_secs),
        session_cache: Duration::from_millis(c.session.cache_ms),
        websocket_idle: Duration::from_secs(c.session.websocket_idle_secs),
        max_challenges_per_address: c.session.max_challenges_per_address,
        lockout,
        system: c.system,
        log: c.log,
        file_keys: c.file_keys,
        cdr_output,
    })
}

fn net(w: &super::Web) -> Result<NetSettings, ConfigError> {
    let range = |key: &'static str, v: u64, lo: u64, hi: u64| {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(ConfigError::invalid(key, format!("must be {lo} to {hi}")))
        }
    };
    let secs = |key, v| range(key, v, 1, 3600).map(Duration::from_secs);
    Ok(NetSettings {
        handshake_timeout: secs("web.handshake_timeout_secs", w.handshake_timeout_secs)?,
        idle_timeout: secs("web.idle_timeout_secs", w.idle_timeout_secs)?,
        body_read_timeout: secs("web.body_read_timeout_secs", w.body_read_timeout_secs)?,
        max_connections: range(
            "web.max_connections",
            u64::from(w.max_connections),
            16,
            1_000_000,
        )? as usize,
        body_buffer_bytes: range(
            "web.body_buffer_bytes",
            w.body_buffer_bytes,
            1024 * 1024,
            4 * 1024 * 1024 * 1024,
        )? as usize,
        h2_max_streams: range("web.h2_max_streams", u64::from(w.h2_max_streams), 1, 1000)? as u32,
        password_checks: range("web.password_checks", u64::from(w.password_checks), 1, 64)?
            as usize,
        password_check_wait: Duration::from_secs(range(
            "web.password_check_wait_secs",
            w.password_check_wait_secs,
            0,
            60,
        )?),
        hsts_max_age_secs: range(
            "web.hsts_max_age_secs",
            w.hsts_max_age_secs,
            0,
            2 * 31_536_000,
        )?,
    })
}

/// The hangup reasons ARI's `DELETE /channels/{id}` accepts.
pub const ARI_HANGUP_REASONS: &[&str] = &[
    "normal",
    "busy",
    "congestion",
    "no_answer",
    "timeout",
    "rejected",
    "unallocated",
    "normal_unspecified",
    "number_incomplete",
    "codec_mismatch",
    "interworking",
    "failure",
    "answered_elsewhere",
];

fn seconds(key: &str, v: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    if !(v.is_finite() && (min..=max).contains(&v)) {
        return Err(ConfigError::invalid(
            key,
            format!("{v} is not between {min} and {max} seconds"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

fn cluster(
    c: &super::ClusterConfig,
    asterisk: &super::AsteriskConfig,
    listen: SocketAddr,
) -> Result<ClusterSettings, ConfigError> {
    let name = |key: &str, v: &str| -> Result<String, ConfigError> {
        let v = v.trim();
        if v.len() > 120 || v.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                key,
                "must be at most 120 printable characters",
            ));
        }
        Ok(v.to_owned())
    };
    let mut node = name("cluster.node_name", &c.node_name)?;
    if node.is_empty() {
        let host = crate::host::hostname().unwrap_or_else(|| "pbxgate".to_owned());
        node = format!("{host}:{}", listen.port());
    }
    let mut pbx = name("cluster.pbx_name", &c.pbx_name)?;
    if pbx.is_empty() {
        pbx = asterisk.ami_address.trim().to_owned();
    }
    Ok(ClusterSettings {
        node,
        pbx,
        lease: seconds("cluster.lease_secs", c.lease_secs, 1.0, 60.0)?,
    })
}

fn call_control(c: &CallControlConfig) -> Result<CallControlSettings, ConfigError> {
    let reason = c.refuse_reason.trim();
    if !ARI_HANGUP_REASONS.contains(&reason) {
        return Err(ConfigError::invalid(
            "call_control.refuse_reason",
            format!(
                "\"{reason}\" is not one of {}",
                ARI_HANGUP_REASONS.join(", ")
            ),
        ));
    }
    Ok(CallControlSettings {
        timeout: seconds("call_control.timeout_secs", c.timeout_secs, 0.5, 300.0)?,
        refuse_reason: reason.to_owned(),
        backstop_grace: seconds(
            "call_control.backstop_grace_secs",
            c.backstop_grace_secs,
            0.2,
            60.0,
        )?,
    })
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn pms(p: &PmsConfig, dialing: &DialingConfig, base: &Path) -> Result<PmsSettings, ConfigError> {
    if !p.username.is_empty() {
        username("pms.username", &p.username)?;
    }
    let password = secret_or_file(base, "pms.password", &p.password, &p.password_file)?;
    if !(1..=4).contains(&p.default_cos) {
        return Err(ConfigError::invalid(
            "pms.default_cos",
            "must be 1, 2, 3 or 4",
        ));
    }
    let regex = |key: &str, patterns: &[String]| {
        ucm::pms::cos::to_regex(patterns)
            .map_err(|(i, m)| ConfigError::invalid(format!("{key}[{i}]"), m))
    };
    let wakeup_context = if p.wakeup_context.is_empty() {
        dialing.context.clone()
    } else {
        p.wakeup_context.clone()
    };
    for (key, v) in [
        ("pms.wakeup_context", wakeup_context.as_str()),
        ("pms.voicemail_context", p.voicemail_context.as_str()),
        ("pms.mwi_context", p.mwi_context.as_str()),
    ] {
        if !plain_name(v) {
            return Err(ConfigError::invalid(
                key,
                "a context name: letters, digits, '-', '_' and '.' only",
            ));
        }
    }
    // Playback(a&b): sound names, optionally in folders.
    let sound_ok = |s: &str| {
        !s.is_empty()
            && s.split('&').all(|part| {
                !part.is_empty()
                    && !part.contains("..")
                    && part.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/')
                    })
            })
    };
    if !sound_ok(&p.wakeup_prompt) {
        return Err(ConfigError::invalid(
            "pms.wakeup_prompt",
            "sound names (letters, digits, '-', '_', '.', '/'), several joined by '&'",
        ));
    }
    if p.wakeup_caller_name.chars().count() > 40
        || p.wakeup_caller_name
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\\' | '<' | '>'))
    {
        return Err(ConfigError::invalid(
            "pms.wakeup_caller_name",
            "at most 40 characters, without control characters, quotes, '\\', '<' or '>'",
        ));
    }
    for (key, v, min, max) in [
        ("pms.wakeup_ring_secs", p.wakeup_ring_secs, 5, 300),
        ("pms.wakeup_attempts", p.wakeup_attempts, 1, 10),
        ("pms.wakeup_retry_secs", p.wakeup_retry_secs, 10, 3600),
        ("pms.wakeup_grace_secs", p.wakeup_grace_secs, 0, 86_400),
        ("pms.wakeup_concurrency", p.wakeup_concurrency, 1, 100),
    ] {
        if !(min..=max).contains(&v) {
            return Err(ConfigError::invalid(
                key,
                format!("must be between {min} and {max}"),
            ));
        }
    }
    let secs = |v: u32| Duration::from_secs(u64::from(v));
    Ok(PmsSettings {
        username: p.username.clone(),
        password,
        default_cos: p.default_cos,
        local_regex: regex("pms.local_patterns", &p.local_patterns)?,
        national_regex: regex("pms.national_patterns", &p.national_patterns)?,
        always_regex: regex("pms.always_allowed", &p.always_allowed)?,
        wakeup_context,
        wakeup_prompt: p.wakeup_prompt.clone(),
        wakeup_caller_name: p.wakeup_caller_name.clone(),
        wakeup_ring: secs(p.wakeup_ring_secs),
        wakeup_attempts: p.wakeup_attempts,
        wakeup_retry: secs(p.wakeup_retry_secs),
        wakeup_grace: secs(p.wakeup_grace_secs),
        wakeup_concurrency: usize::try_from(p.wakeup_concurrency).unwrap_or(1),
        voicemail_context: p.voicemail_context.clone(),
        clear_voicemail: p.clear_voicemail,
        mwi_context: p.mwi_context.clone(),
    })
}

fn dialing(d: &DialingConfig) -> Result<DialingSettings, ConfigError> {
    let plain = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if d.context.is_empty() || !plain(&d.context) {
        return Err(ConfigError::invalid(
            "dialing.context",
            "a dialplan context name: letters, digits, '-', '_' and '.' only",
        ));
    }
    if !d
        .outbound_prefix
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'+'))
    {
        return Err(ConfigError::invalid(
            "dialing.outbound_prefix",
            "digits, '*', '#' and '+' only",
        ));
    }
    if !(1..=600).contains(&d.ring_secs) {
        return Err(ConfigError::invalid(
            "dialing.ring_secs",
            "must be between 1 and 600",
        ));
    }
    for (i, c) in d.trunk_contexts.iter().enumerate() {
        if c.is_empty() || !plain(c) || *c == d.context {
            return Err(ConfigError::invalid(
                format!("dialing.trunk_contexts[{i}]"),
                "a dialplan context name other than dialing.context: letters, digits, '-', '_' and '.' only",
            ));
        }
    }
    Ok(DialingSettings {
        context: d.context.clone(),
        outbound_prefix: d.outbound_prefix.clone(),
        ring: Duration::from_secs(u64::from(d.ring_secs)),
        trunk_contexts: d.trunk_contexts.clone(),
    })
}

fn asterisk(a: &AsteriskConfig, base: &Path) -> Result<Option<AsteriskSettings>, ConfigError> {
    let secret = secret_or_file(
        base,
        "asterisk.ami_secret",
        &a.ami_secret,
        &a.ami_secret_file,
    )?;
    if secret.is_empty() {
        return Ok(None);
    }
    let addr = a.ami_address.trim();
    let port_ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(ConfigError::invalid(
            "asterisk.ami_address",
            format!("\"{addr}\" is not host:port"),
        ));
    }
    if a.ami_username.trim().is_empty() {
        return Err(ConfigError::invalid(
            "asterisk.ami_username",
            "must not be empty",
        ));
    }
    let password = secret_or_file(
        base,
        "asterisk.ari_password",
        &a.ari_password,
        &a.ari_password_file,
    )?;
    let ari = if password.is_empty() {
        None
    } else {
        if !(a.ari_url.starts_with("http://") || a.ari_url.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "asterisk.ari_url",
                "must start with http:// or https://",
            ));
        }
        if a.ari_app.is_empty()
            || !a
                .ari_app
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::invalid(
                "asterisk.ari_app",
                "letters, digits, '_' and '-' only",
            ));
        }
        Some(AriSettings {
            url: a.ari_url.clone(),
            username: a.ari_username.clone(),
            password,
            app: a.ari_app.clone(),
        })
    };
    Ok(Some(AsteriskSettings {
        ami_address: addr.to_owned(),
        ami_username: a.ami_username.clone(),
        ami_secret: secret,
        ari,
        cdr_csv: (!a.cdr_csv.is_empty()).then(|| resolve(base, &a.cdr_csv)),
    }))
}

/// A secret from its key or its `_file` sibling (never both).
pub(super) fn secret_or_file(
    base: &Path,
    key: &str,
    inline: &Secret,
    file: &str,
) -> Result<Secret, ConfigError> {
    match (inline.is_empty(), file.is_empty()) {
        (_, true) => Ok(inline.clone()),
        (false, false) => Err(ConfigError::invalid(
            format!("{key}_file"),
            format!("set either {key} or {key}_file, not both"),
        )),
        (true, false) => {
            let path = resolve(base, file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Ok(Secret::new(text.trim_end_matches(['\r', '\n'])))
        }
    }
}

fn recordings(
    c: &super::RecordingsConfig,
    spool: &Path,
    base: &Path,
) -> Result<RecordingsSettings, ConfigError> {
    use ucm::recapi::{RelPath, check_name};
    let s3 = match c.store.as_str() {
        "local" => false,
        "s3" if cfg!(feature = "s3") => true,
        "s3" => {
            return Err(ConfigError::invalid(
                "recordings.store",
                "this pbxgate was built without S3 support (cargo feature \"s3\")",
            ));
        }
        _ => {
            return Err(ConfigError::invalid(
                "recordings.store",
                "must be \"local\" or \"s3\"",
            ));
        }
    };
    let prefix = c.s3.prefix.trim_matches('/');
    if s3 && !prefix.is_empty() {
        check_name(prefix).map_err(|e| {
            ConfigError::invalid("recordings.s3.prefix", format!("\"{prefix}\" {e}"))
        })?;
    }
    let mut merged = super::default_recording_dirs();
    for (name, folder) in &c.dirs {
        if folder.is_empty() {
            merged.remove(name);
        } else {
            merged.insert(name.clone(), folder.clone());
        }
    }
    let mut dirs = Vec::with_capacity(merged.len());
    for (name, folder) in merged {
        let key = format!("recordings.dirs.\"{name}\"");
        let dir = RelPath::parse(&name)
            .map_err(|e| ConfigError::invalid(&key, format!("the directory name {e}")))?;
        let folder = folder.trim_end_matches('/');
        let location = if !s3 && folder.starts_with('/') {
            folder.to_owned()
        } else {
            check_name(folder).map_err(|e| {
                ConfigError::invalid(
                    &key,
                    format!(
                        "\"{folder}\" {e} (give a folder below {})",
                        if s3 {
                            "the bucket prefix"
                        } else {
                            "spool_dir or an absolute path"
                        }
                    ),
                )
            })?;
            if s3 {
                if prefix.is_empty() {
                    folder.to_owned()
                } else {
                    format!("{prefix}/{folder}")
                }
            } else {
                spool.join(folder).display().to_string()
            }
        };
        dirs.push((dir, location));
    }
    let store = if s3 {
        let b = &c.s3;
        // S3 bucket names: 3-63 of [a-z0-9.-]
        if b.bucket.len() < 3
            || b.bucket.len() > 63
            || !b
                .bucket
                .bytes()
                .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == b'.' || x == b'-')
        {
            return Err(ConfigError::invalid(
                "recordings.s3.bucket",
                "must be a bucket name (3 to 63 of a-z, 0-9, '.', '-')",
            ));
        }
        let endpoint = b.endpoint.trim().trim_end_matches('/');
        let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !scheme_ok {
            return Err(ConfigError::invalid(
                "recordings.s3.endpoint",
                "must start with http:// or https://",
            ));
        }
        if b.region.trim().is_empty() {
            return Err(ConfigError::invalid(
                "recordings.s3.region",
                "must not be empty",
            ));
        }
        let secret = secret_or_file(
            base,
            "recordings.s3.secret_access_key",
            &b.secret_access_key,
            &b.secret_access_key_file,
        )?;
        if b.access_key_id.is_empty() != secret.is_empty() {
            return Err(ConfigError::invalid(
                "recordings.s3.access_key_id",
                "set both access_key_id and secret_access_key, or neither (then AWS_* variables apply)",
            ));
        }
        RecordingStore::S3(S3Settings {
            bucket: b.bucket.clone(),
            endpoint: (!endpoint.is_empty()).then(|| endpoint.to_owned()),
            region: b.region.trim().to_owned(),
            access_key_id: b.access_key_id.clone(),
            secret_access_key: secret,
        })
    } else {
        RecordingStore::Local
    };
    let listing = ucm::recapi::Listing::parse(&c.listing).ok_or_else(|| {
        ConfigError::invalid("recordings.listing", "must be \"month\" or \"flat\"")
    })?;
    Ok(RecordingsSettings {
        store,
        dirs,
        listing,
    })
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Settings {
    pub fn user(&self, name: &str) -> Option<&ApiUser> {
        self.users.iter().find(|u| u.username == name)
    }

    /// Where the generated certificate lives when none is configured.
    pub fn generated_tls_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self.data_dir.join("tls");
        (dir.join("cert.pem"), dir.join("key.pem"))
    }
}

impl OldApiSettings {
    /// Where the old API's generated certificate lives when none is
    /// configured: its own, beside the new API's.
    pub fn generated_tls_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
        let dir = data_dir.join("tls-old");
        (dir.join("cert.pem"), dir.join("key.pem"))
    }
}

#[cfg(test)]
mod tests;

fn cdrapi(c: &super::CdrApiConfig) -> Result<CdrApiSettings, ConfigError> {
    use ucm::cdrapi::encode::{CdrKey, Options, Profile};
    let profile = match c.profile.as_str() {
        "ucm630x" => Profile::Ucm630x,
        "ucm62xx" => Profile::Ucm62xx,
        "ucm6100" => Profile::Ucm6100,
        _ => {
            return Err(ConfigError::invalid(
                "cdrapi.profile",
                "must be \"ucm630x\", \"ucm62xx\" or \"ucm6100\"",
            ));
        }
    };
    let cdr_key = match c.cdr_key.as_str() {
        "session" => CdrKey::Session,
        "empty" => CdrKey::Empty,
        _ => {
            return Err(ConfigError::invalid(
                "cdrapi.cdr_key",
                "must be \"session\" or \"empty\"",
            ));
        }
    };
    let naive_utc = match c.naive_times.as_str() {
        "pbx" => false,
        "utc" => true,
        _ => {
            return Err(ConfigError::invalid(
                "cdrapi.naive_times",
                "must be \"pbx\" or \"utc\"",
            ));
        }
    };
    if !(1..=10_000).contains(&c.export_page) {
        return Err(ConfigError::invalid(
            "cdrapi.export_page",
            "must be between 1 and 10000",
        ));
    }
    Ok(CdrApiSettings {
        output: Options { profile, cdr_key },
        naive_utc,
        export_page: c.export_page,
    })
}
