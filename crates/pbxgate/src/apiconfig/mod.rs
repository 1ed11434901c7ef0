//! The API settings in force: the configuration file's, plus what the admin
//! interface's API Configuration page saved in the database (`web_settings`),
//! applied live without a restart.
//!
//! Keys set in the file (or by `PBXGATE_*` variables) are fixed: the page
//! shows them read-only and saved values never override them. Users of the
//! new API come from the file (read-only) and from the page (editable).
//! Every node re-reads the saved sections when PostgreSQL tells it another
//! node saved them (`NOTIFY`, see `server::settings_watch`) and every few
//! seconds in any case, so a change made on one node reaches the others
//! without a restart.
//!
//! Every value saved goes through the same validation as the file's
//! (`config::api_user`, `config::old_api`), so the page cannot put in force
//! what `pbxgate check-config` would refuse.

mod cdr;
mod overlay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use store::{AuditEvent, AuditStore, Store, WebSettingsStore};

pub use cdr::{CDR_SECTION, CdrOutputSink};
pub use overlay::{
    CdrOverlay, NewOverlay, OldOverlay, OverlayReceiver, OverlayUser, OverlayWsUser, TlsChoice,
    WsOverlay,
};

use crate::clock::now_ms;
use crate::config::{
    self, ApiUser, ConfigError, FileKeys, HttpsApiOld, OldApiSettings, Secret, Settings,
    UserConfig, WsUser, WsUserConfig,
};

pub const NEW_SECTION: &str = "https_api";
pub const OLD_SECTION: &str = "https_api_old";
/// The page's websocket users (`[[websockify.users]]` besides the file's).
pub const WS_SECTION: &str = "websockify";
/// How often a node looks for changes saved by another node.
pub const POLL: Duration = Duration::from_secs(2);
/// Passwords set on the page: at least this many characters.
pub const MIN_WEB_PASSWORD_CHARS: usize = 8;
const MAX_PASSWORD_CHARS: usize = 64;

/// The new HTTPS API as in force.
#[derive(Debug, Clone)]
pub struct NewApi {
    pub enabled: bool,
    pub users: Vec<ApiUser>,
    /// How many of `users` (the first ones) come from the file.
    pub file_users: usize,
}

impl NewApi {
    pub fn user(&self, name: &str) -> Option<&ApiUser> {
        self.users.iter().find(|u| u.username == name)
    }

    /// Whether inbound calls wait for a decision.
    pub fn call_control(&self) -> bool {
        self.enabled && self.users.iter().any(|u| u.call_control)
    }
}

/// The users of `/websockify` only, as in force: the file's first, then the
/// page's.
#[derive(Debug, Clone, Default)]
pub struct WsUsers {
    pub users: Vec<WsUser>,
    /// How many of `users` (the first ones) come from the file.
    pub file_users: usize,
}

impl WsUsers {
    pub fn user(&self, name: &str) -> Option<&WsUser> {
        self.users.iter().find(|u| u.username == name)
    }
}

/// The new API in force, shared with the request handlers (read on every
/// request, replaced whole on a change).
#[derive(Default)]
pub struct Current(RwLock<Option<Arc<NewApi>>>);

impl Current {
    pub fn get(&self) -> Arc<NewApi> {
        let guard = match self.0.read() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.clone().unwrap_or_else(|| {
            Arc::new(NewApi {
                enabled: false,
                users: Vec::new(),
                file_users: 0,
            })
        })
    }

    fn set(&self, api: NewApi) {
        let api = Some(Arc::new(api));
        match self.0.write() {
            Ok(mut g) => *g = api,
            Err(poisoned) => *poisoned.into_inner() = api,
        }
    }
}

/// A refused save: messages per form field (`enable`, `username`,
/// `permitted_ips`, `tls_bind_address`, …), or one for the whole form (`""`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    pub fn one(field: &str, message: impl Into<String>) -> Self {
        let mut m = BTreeMap::new();
        m.insert(field.to_owned(), message.into());
        FieldErrors(m)
    }

    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    v.clone()
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A config-validation error as a field error: `https_api_old.permitted_ips[1]`
/// → field `permitted_ips`, `user.password` → `password`.
fn field_error(e: &ConfigError) -> FieldErrors {
    match e {
        ConfigError::Invalid { key, message } => {
            let last = key.rsplit('.').next().unwrap_or(key);
            let (field, entry) = match last.split_once('[') {
                Some((f, i)) => (f, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (last, None),
            };
            // The file's names for the TLS pair are the form's.
            let message = match entry {
                Some(i) => format!("entry {}: {message}", i + 1),
                None => message.clone(),
            };
            FieldErrors::one(field, message)
        }
        other => FieldErrors::one("", other.to_string()),
    }
}

/// What the page saved, with the versions it was read at.
#[derive(Default)]
struct Saved {
    new: NewOverlay,
    new_version: i64,
    old: OldOverlay,
    old_version: i64,
    ws: WsOverlay,
    ws_version: i64,
    cdr: CdrOverlay,
    cdr_version: i64,
}

/// The file's `[https_api_old]` (updated by SIGHUP reloads).
struct FileOld {
    settings: OldApiSettings,
    keys: FileKeys,
}

/// Call control as the settings see it: on while the API is on and some
/// user has call control (`callcontrol::Engine`, attached at start-up).
pub trait CallControlSwitch: Send + Sync {
    fn enabled(&self) -> bool;
    fn set_enabled(&self, enabled: bool);
}

/// The old API's listener as the settings see it: what puts old-API settings
/// in force (`legacy::OldApi`, attached at start-up, so that settings do not
/// depend on the listener layer).
#[async_trait::async_trait]
pub trait OldApiListener: Send + Sync {
    async fn apply(&self, settings: OldApiSettings) -> crate::error::Result<()>;
}

pub struct ApiConfig {
    store: Store,
    /// The file's new API (users and switch) and other settings, as started.
    file: Arc<Settings>,
    file_old: Mutex<FileOld>,
    saved: tokio::sync::Mutex<Saved>,
    current: Arc<Current>,
    ws: RwLock<Arc<WsUsers>>,
    old_api: OnceLock<Arc<dyn OldApiListener>>,
    call_control: OnceLock<Arc<dyn CallControlSwitch>>,
    /// `[cdr_output]`: the file's, and what is in force (file and page).
    file_cdr: Mutex<cdr::FileCdr>,
    cdr: RwLock<crate::config::cdr_output::CdrOutputSettings>,
    cdr_sink: OnceLock<Arc<dyn CdrOutputSink>>,
}

/// What a save changed, for the audit trail and the page (names, never
/// values), and the API users whose sessions must end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes(pub Vec<String>, pub Vec<String>);

impl ApiConfig {
    /// Reads what the page saved. A saved section that no longer validates
    /// (say, a file user now has the name of a page user) is logged and left
    /// out; it never stops the server.
    pub async fn load(file: &Settings, store: &Store) -> crate::error::Result<ApiConfig> {
        let cfg = ApiConfig {
            store: store.clone(),
            file: Arc::new(file.clone()),
            file_old: Mutex::new(FileOld {
                settings: file.old_api.clone(),
                keys: file.file_keys.clone(),
            }),
            saved: tokio::sync::Mutex::new(Saved::default()),
            current: Arc::new(Current::default()),
            ws: RwLock::new(Arc::new(WsUsers::default())),
            old_api: OnceLock::new(),
            call_control: OnceLock::new(),
            file_cdr: Mutex::new(cdr::FileCdr {
                settings: file.cdr_output.clone(),
                keys: file.file_keys.clone(),
            }),
            cdr: RwLock::new(file.cdr_output.clone()),
            cdr_sink: OnceLock::new(),
        };
        let mut saved = cfg.saved.lock().await;
        cfg.read_saved(&mut saved).await?;
        // This node's copy of an uploaded pair, written once; reads never write.
        if let Some(tls) = &saved.old.tls
            && let Err(e) = cfg.write_uploaded(tls)
        {
            tracing::error!(errors = %e.summary(), "the old API certificate saved on the admin page cannot be written");
        }
        cfg.current.set(cfg.effective_new(&saved.new));
        cfg.set_ws(cfg.effective_ws(&saved.ws, &cfg.new_api()));
        // Nothing attached yet: only what is in force is set.
        let cdr = cfg.effective_cdr(&saved.cdr);
        cfg.put_cdr_in_force(cdr).await;
        drop(saved);
        Ok(cfg)
    }

    /// The handle request handlers read the new API from.
    pub fn current(&self) -> Arc<Current> {
        self.current.clone()
    }

    pub fn new_api(&self) -> Arc<NewApi> {
        self.current.get()
    }

    /// The old API settings in force (file plus page).
    pub async fn old_api(&self) -> OldApiSettings {
        let saved = self.saved.lock().await;
        self.effective_old(&saved.old)
            .unwrap_or_else(|_| self.file_old_settings())
    }

    /// Lets saves restart the old API listener.
    pub fn attach_old_api(&self, old: Arc<dyn OldApiListener>) {
        let _ = self.old_api.set(old);
    }

    /// Lets saves switch call control on and off.
    pub fn attach_call_control(&self, engine: Arc<dyn CallControlSwitch>) {
        engine.set_enabled(self.new_api().call_control());
        let _ = self.call_control.set(engine);
    }

    pub fn file_keys(&self) -> FileKeys {
        let old = match self.file_old.lock() {
            Ok(f) => f.keys.https_api_old.clone(),
            Err(p) => p.into_inner().keys.https_api_old.clone(),
        };
        let cdr = match self.file_cdr.lock() {
            Ok(f) => f.keys.cdr_output.clone(),
            Err(p) => p.into_inner().keys.cdr_output.clone(),
        };
        FileKeys {
            https_api: self.file.file_keys.https_api.clone(),
            https_api_old: old,
            cdr_output: cdr,
        }
    }

    fn file_old_settings(&self) -> OldApiSettings {
        match self.file_old.lock() {
            Ok(f) => f.settings.clone(),
            Err(p) => p.into_inner().settings.clone(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.file.data_dir
    }

    /// Where uploaded old-API certificates are written.
    pub fn tls_dir(&self) -> PathBuf {
        self.file.data_dir.join("admin-tls")
    }

    async fn read_saved(&self, saved: &mut Saved) -> crate::error::Result<()> {
        if let Some(row) = self.store.web_settings(NEW_SECTION).await? {
            saved.new = serde_json::from_str(&row.body).unwrap_or_else(|e| {
                tracing::error!(error = %e, "saved new API settings are unreadable; ignored until saved again");
                NewOverlay::default()
            });
            saved.new_version = row.version;
        }
        if let Some(row) = self.store.web_settings(OLD_SECTION).await? {
            saved.old = serde_json::from_str(&row.body).unwrap_or_else(|e| {
                tracing::error!(error = %e, "saved old API settings are unreadable; ignored until saved again");
                OldOverlay::default()
            });
            saved.old_version = row.version;
        }
        if let Some(row) = self.store.web_settings(WS_SECTION).await? {
            saved.ws = serde_json::from_str(&row.body).unwrap_or_else(|e| {
                tracing::error!(error = %e, "saved websocket users are unreadable; ignored until saved again");
                WsOverlay::default()
            });
            saved.ws_version = row.version;
        }
        if let Some(row) = self.store.web_settings(CDR_SECTION).await? {
            saved.cdr = serde_json::from_str(&row.body).unwrap_or_else(|e| {
                tracing::error!(error = %e, "saved CDR output settings are unreadable; ignored until saved again");
                CdrOverlay::default()
            });
            saved.cdr_version = row.version;
        }
        Ok(())
    }

    // ------------------------------------------------------------ new API

    /// The file's users that the page cannot change.
    fn file_users(&self) -> Vec<ApiUser> {
        let keys = &self.file.file_keys;
        let mut users = Vec::new();
        let mut all = self.file.users.iter();
        if let Some(first) = all.next()
            && keys.fixes_first_user()
        {
            users.push(first.clone());
        }
        if keys.https_api.contains("users") {
            users.extend(all.cloned());
        }
        users
    }

    fn effective_new(&self, overlay: &NewOverlay) -> NewApi {
        let mut users = self.file_users();
        let file_users = users.len();
        for u in &overlay.users {
            match validate_user(u, &users).and_then(|user| {
                // The file's websocket users keep their names.
                match self
                    .file
                    .websocket_users
                    .iter()
                    .find(|w| w.username == user.username)
                {
                    Some(w) => Err(ws_name_taken(&w.username)),
                    None => Ok(user),
                }
            }) {
                Ok(user) => users.push(user),
                Err(e) => tracing::error!(
                    user = %u.username,
                    errors = %e.summary(),
                    "an API user saved on the admin page is left out"
                ),
            }
        }
        if users.is_empty() {
            // Nothing configured anywhere: the file's default user (without a
            // password, so every login is refused) keeps answers as before.
            users.extend(self.file.users.iter().take(1).cloned());
        }
        let enabled = if self.file.file_keys.https_api.contains("enable") {
            self.file.api_enabled
        } else {
            overlay.enable.unwrap_or(self.file.api_enabled)
        };
        NewApi {
            enabled,
            users,
            file_users,
        }
    }

    /// The users the page edits, in order, and the version read.
    pub async fn page_users(&self) -> (Vec<OverlayUser>, i64) {
        let saved = self.saved.lock().await;
        (saved.new.users.clone(), saved.new_version)
    }

    /// Whether the new API's switch is set by the file.
    pub fn enable_fixed(&self) -> bool {
        self.file.file_keys.https_api.contains("enable")
    }

    /// The file's fixed users (read-only on the page).
    pub fn fixed_users(&self) -> Vec<ApiUser> {
        self.file_users()
    }

    /// Saves the new API's switch.
    pub async fn set_enable(
        &self,
        enable: bool,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        if self.enable_fixed() {
            return Err(FieldErrors::one(
                "enable",
                "set in the configuration file (https_api.enable): change it there",
            ));
        }
        self.edit_new(by, ip, |o| {
            o.enable = Some(enable);
            Ok(())
        })
        .await
    }

    /// Adds a user (`index` None) or replaces the page user at `index`; an
    /// empty password keeps the user's current one.
    pub async fn save_user(
        &self,
        index: Option<usize>,
        mut user: OverlayUser,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        let fixed = self.file_users();
        let ws = self.ws_users();
        self.edit_new(by, ip, move |o| {
            if ws.user(&user.username).is_some() {
                return Err(ws_name_taken(&user.username));
            }
            let others: Vec<ApiUser> = fixed
                .iter()
                .cloned()
                .chain(
                    o.users
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| Some(*i) != index)
                        .filter_map(|(_, u)| validate_user(u, &[]).ok()),
                )
                .collect();
            match index {
                Some(i) => {
                    let Some(old) = o.users.get(i) else {
                        return Err(FieldErrors::one(
                            "",
                            "this user no longer exists: reload the page",
                        ));
                    };
                    if user.password.is_empty() {
                        user.password = old.password.clone();
                    } else {
                        check_new_password(&user.password)?;
                    }
                    validate_user(&user, &others)?;
                    o.users[i] = user;
                }
                None => {
                    if user.password.is_empty() {
                        return Err(FieldErrors::one("password", "a new user needs a password"));
                    }
                    check_new_password(&user.password)?;
                    validate_user(&user, &others)?;
                    o.users.push(user);
                }
            }
            Ok(())
        })
        .await
    }

    /// Removes the page user at `index` (named `username`, as shown on the page).
    pub async fn remove_user(
        &self,
        index: usize,
        username: &str,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        self.edit_new(by, ip, |o| {
            remove_shown(&mut o.users, index, username, |u| &u.username)
        })
        .await
    }

    /// Applies `edit` to the saved new-API section, saves it over the version
    /// read, puts it in force and ends the sessions it invalidates.
    async fn edit_new(
        &self,
        by: &str,
        ip: &str,
        edit: impl FnOnce(&mut NewOverlay) -> Result<(), FieldErrors>,
    ) -> Result<Changes, FieldErrors> {
        let mut saved = self.saved.lock().await;
        // Another node may have saved since we last looked.
        let earlier = self.refresh_locked(&mut saved).await.map_err(internal)?;
        let mut next = saved.new.clone();
        edit(&mut next)?;
        let before = self.new_api();
        let after = self.effective_new(&next);
        let changes = diff_new(&before, &after);
        let body = serde_json::to_string(&next).map_err(|e| internal(e.to_string()))?;
        let version = self
            .store
            .save_web_settings(NEW_SECTION, &body, saved.new_version, now_ms(), by)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let Some(version) = version else {
            return Err(FieldErrors::one(
                "",
                "the settings were changed meanwhile (another admin or node): reload the page",
            ));
        };
        saved.new = next;
        saved.new_version = version;
        let mut changes = changes;
        changes.1 = self.put_new_in_force(&before, after).await;
        changes.1.extend(earlier);
        self.set_ws(self.effective_ws(&saved.ws, &self.new_api()));
        self.audit(by, ip, "https_api", &changes).await;
        Ok(changes)
    }

    /// Puts `after` in force; returns the users whose sessions must end
    /// (see `Auth::end_sessions_of_users`).
    async fn put_new_in_force(&self, before: &NewApi, after: NewApi) -> Vec<String> {
        let ended = users_to_log_out(before, &after);
        let call_control = after.call_control();
        self.current.set(after);
        if let Some(engine) = self.call_control.get()
            && engine.enabled() != call_control
        {
            engine.set_enabled(call_control);
            tracing::info!(call_control, "call control switched by the API settings");
        }
        ended
    }

    // ------------------------------------------------------------ websocket users

    /// The websocket users in force (read by every `/websockify` socket).
    pub fn ws_users(&self) -> Arc<WsUsers> {
        match self.ws.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_ws(&self, ws: WsUsers) {
        let ws = Arc::new(ws);
        match self.ws.write() {
            Ok(mut g) => *g = ws,
            Err(poisoned) => *poisoned.into_inner() = ws,
        }
    }

    /// The file's websocket users, then the page's that still validate (a
    /// name taken meanwhile by a file user or an API user leaves the page's
    /// user out, logged).
    fn effective_ws(&self, overlay: &WsOverlay, api: &NewApi) -> WsUsers {
        let mut users = self.file.websocket_users.clone();
        let file_users = users.len();
        for u in &overlay.users {
            match validate_ws_user(u, Some(api), &users) {
                Ok(user) => users.push(user),
                Err(e) => tracing::error!(
                    user = %u.username,
                    errors = %e.summary(),
                    "a websocket user saved on the admin page is left out"
                ),
            }
        }
        WsUsers { users, file_users }
    }

    /// The file's websocket users (read-only on the page).
    pub fn fixed_ws_users(&self) -> Vec<WsUser> {
        self.file.websocket_users.clone()
    }

    /// The websocket users the page edits, in order, and the version read.
    pub async fn page_ws_users(&self) -> (Vec<OverlayWsUser>, i64) {
        let saved = self.saved.lock().await;
        (saved.ws.users.clone(), saved.ws_version)
    }

    /// Adds a websocket user (`index` None) or replaces the page's at
    /// `index`; an empty password keeps the current one.
    pub async fn save_ws_user(
        &self,
        index: Option<usize>,
        mut user: OverlayWsUser,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        let fixed = self.file.websocket_users.clone();
        self.edit_ws(by, ip, move |o, api| {
            let others: Vec<WsUser> = fixed
                .iter()
                .cloned()
                .chain(
                    o.users
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| Some(*i) != index)
                        .filter_map(|(_, u)| validate_ws_user(u, None, &[]).ok()),
                )
                .collect();
            match index {
                Some(i) => {
                    let Some(old) = o.users.get(i) else {
                        return Err(FieldErrors::one(
                            "",
                            "this user no longer exists: reload the page",
                        ));
                    };
                    if user.password.is_empty() {
                        user.password = old.password.clone();
                    } else {
                        check_new_password(&user.password)?;
                    }
                    validate_ws_user(&user, Some(api), &others)?;
                    o.users[i] = user;
                }
                None => {
                    if user.password.is_empty() {
                        return Err(FieldErrors::one("password", "a new user needs a password"));
                    }
                    check_new_password(&user.password)?;
                    validate_ws_user(&user, Some(api), &others)?;
                    o.users.push(user);
                }
            }
            Ok(())
        })
        .await
    }

    /// Removes the page's websocket user at `index` (named `username`).
    pub async fn remove_ws_user(
        &self,
        index: usize,
        username: &str,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        self.edit_ws(by, ip, |o, _| {
            remove_shown(&mut o.users, index, username, |u| &u.username)
        })
        .await
    }

    /// Applies `edit` to the saved websocket users, saves them over the
    /// version read and puts them in force. Open sockets of a removed or
    /// changed user notice within a second (`websockify`'s own check).
    async fn edit_ws(
        &self,
        by: &str,
        ip: &str,
        edit: impl FnOnce(&mut WsOverlay, &NewApi) -> Result<(), FieldErrors>,
    ) -> Result<Changes, FieldErrors> {
        let mut saved = self.saved.lock().await;
        let earlier = self.refresh_locked(&mut saved).await.map_err(internal)?;
        let api = self.new_api();
        let mut next = saved.ws.clone();
        edit(&mut next, &api)?;
        let before = self.ws_users();
        let after = self.effective_ws(&next, &api);
        let mut changes = diff_ws(&before, &after);
        let body = serde_json::to_string(&next).map_err(|e| internal(e.to_string()))?;
        let version = self
            .store
            .save_web_settings(WS_SECTION, &body, saved.ws_version, now_ms(), by)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let Some(version) = version else {
            return Err(FieldErrors::one(
                "",
                "the settings were changed meanwhile (another admin or node): reload the page",
            ));
        };
        saved.ws = next;
        saved.ws_version = version;
        self.set_ws(after);
        changes.1 = earlier;
        self.audit(by, ip, WS_SECTION, &changes).await;
        Ok(changes)
    }

    // ------------------------------------------------------------ old API

    /// The file's `[https_api_old]` as raw values, with what the page saved
    /// over the keys the file does not set.
    fn merged_old(&self, overlay: &OldOverlay) -> HttpsApiOld {
        let (file, keys) = match self.file_old.lock() {
            Ok(f) => (f.settings.clone(), f.keys.clone()),
            Err(p) => {
                let f = p.into_inner();
                (f.settings.clone(), f.keys.clone())
            }
        };
        let (cert, key) = match &file.tls {
            Some((c, k)) => (c.display().to_string(), k.display().to_string()),
            None => (String::new(), String::new()),
        };
        let mut raw = HttpsApiOld {
            enable: file.enable,
            tls_bind_address: file.bind.to_string(),
            tls_private_key: key,
            tls_cert: cert,
            username: file.username.clone(),
            password: file.password.clone(),
            password_file: String::new(),
            permitted_ips: file.permitted_ips_text.clone(),
            enable_pmsapi: file.enable_pmsapi,
            recordings_listing: file
                .recordings_listing
                .map_or_else(String::new, |l| l.as_str().to_owned()),
        };
        let free = |k: &str| !keys.old(k);
        if let Some(v) = overlay.enable.filter(|_| free("enable")) {
            raw.enable = v;
        }
        if let Some(v) = overlay
            .tls_bind_address
            .as_ref()
            .filter(|_| free("tls_bind_address"))
        {
            raw.tls_bind_address = v.clone();
        }
        if let Some(tls) = overlay
            .tls
            .as_ref()
            .filter(|_| free("tls_cert") && free("tls_private_key"))
        {
            match tls {
                TlsChoice::Generated => {
                    raw.tls_cert.clear();
                    raw.tls_private_key.clear();
                }
                TlsChoice::Uploaded { .. } => {
                    let (c, k) = self.uploaded_paths();
                    raw.tls_cert = c.display().to_string();
                    raw.tls_private_key = k.display().to_string();
                }
            }
        }
        if let Some(v) = overlay.username.as_ref().filter(|_| free("username")) {
            raw.username = v.clone();
        }
        if let Some(v) = overlay.password.as_ref().filter(|_| free("password")) {
            raw.password = Secret::new(v.clone());
        }
        if let Some(v) = overlay
            .permitted_ips
            .as_ref()
            .filter(|_| free("permitted_ips"))
        {
            raw.permitted_ips = v.clone();
        }
        if let Some(v) = overlay.enable_pmsapi.filter(|_| free("enable_pmsapi")) {
            raw.enable_pmsapi = v;
        }
        raw
    }

    fn uploaded_paths(&self) -> (PathBuf, PathBuf) {
        let dir = self.tls_dir();
        (dir.join("old-api-cert.pem"), dir.join("old-api-key.pem"))
    }

    /// Writes an uploaded pair where [`merged_old`] points to it (the key
    /// readable by pbxgate only).
    fn write_uploaded(&self, tls: &TlsChoice) -> Result<(), FieldErrors> {
        let TlsChoice::Uploaded { cert, key } = tls else {
            return Ok(());
        };
        let (c, k) = self.uploaded_paths();
        write_private(&c, cert.as_bytes())
            .and_then(|()| write_private(&k, key.as_bytes()))
            .map_err(|e| internal(format!("cannot write the uploaded certificate: {e}")))
    }

    /// The old API's settings for `overlay`; an uploaded pair must already be
    /// written ([`write_uploaded`]): this only reads.
    fn effective_old(&self, overlay: &OldOverlay) -> Result<OldApiSettings, FieldErrors> {
        config::old_api(
            &self.merged_old(overlay),
            &self.file.config_dir,
            self.file.listen,
        )
        .map_err(|e| field_error(&e))
    }

    /// The page's view of the old API section, and the version read.
    pub async fn page_old(&self) -> (OldOverlay, i64) {
        let saved = self.saved.lock().await;
        (saved.old.clone(), saved.old_version)
    }

    /// Saves the old API form: `form` holds the fields the page may change
    /// (`None`: left as it is). An empty password keeps the current one.
    pub async fn save_old(
        &self,
        form: OldOverlay,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        let keys = self.file_keys();
        let mut saved = self.saved.lock().await;
        let earlier = self.refresh_locked(&mut saved).await.map_err(internal)?;
        let mut next = saved.old.clone();
        let mut errors = FieldErrors::default();
        let mut take = |field: &str, present: bool| -> bool {
            if present && keys.old(field) {
                errors.add(
                    field,
                    format!(
                        "set in the configuration file (https_api_old.{field}): change it there"
                    ),
                );
                false
            } else {
                present
            }
        };
        if take("enable", form.enable.is_some()) {
            next.enable = form.enable;
        }
        if take("tls_bind_address", form.tls_bind_address.is_some()) {
            next.tls_bind_address = form.tls_bind_address.clone();
        }
        if take("tls_cert", form.tls.is_some()) && take("tls_private_key", form.tls.is_some()) {
            next.tls = form.tls.clone();
        }
        if take("username", form.username.is_some()) {
            next.username = form.username.clone();
        }
        if let Some(p) = form.password.as_ref().filter(|p| !p.is_empty())
            && take("password", true)
        {
            next.password = Some(p.clone());
        }
        if take("permitted_ips", form.permitted_ips.is_some()) {
            next.permitted_ips = form.permitted_ips.clone();
        }
        if take("enable_pmsapi", form.enable_pmsapi.is_some()) {
            next.enable_pmsapi = form.enable_pmsapi;
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // An uploaded pair is checked on its own even while the listener is
        // off: the page says at once that a file is not a usable certificate.
        if let Some(TlsChoice::Uploaded { cert, key }) = &next.tls
            && form.tls.is_some()
        {
            check_pair(cert, key)?;
        }
        let before = self.effective_old(&saved.old).ok();
        if let Some(tls) = &next.tls {
            self.write_uploaded(tls)?;
        }
        let after = self.effective_old(&next).inspect_err(|_| {
            // Put back the files the previous settings point to.
            if let Some(tls) = &saved.old.tls {
                let _ = self.write_uploaded(tls);
            }
        })?;
        if let Some(old) = self.old_api.get()
            && let Err(e) = old.apply(after.clone()).await
        {
            if let Some(tls) = &saved.old.tls {
                let _ = self.write_uploaded(tls);
            }
            let field = match &e {
                crate::error::Error::Listen { .. } => "tls_bind_address",
                crate::error::Error::Tls(_) => "tls_cert",
                _ => "",
            };
            return Err(FieldErrors::one(field, e.to_string()));
        }
        let body = serde_json::to_string(&next).map_err(|e| internal(e.to_string()))?;
        let version = self
            .store
            .save_web_settings(OLD_SECTION, &body, saved.old_version, now_ms(), by)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let Some(version) = version else {
            // Someone else saved first: what is in force follows theirs.
            if let (Some(old), Some(b)) = (self.old_api.get(), before) {
                let _ = old.apply(b).await;
            }
            return Err(FieldErrors::one(
                "",
                "the settings were changed meanwhile (another admin or node): reload the page",
            ));
        };
        let mut changes = diff_old(before.as_ref(), &after);
        changes.1 = earlier;
        saved.old = next;
        saved.old_version = version;
        drop(saved);
        self.audit(by, ip, "https_api_old", &changes).await;
        Ok(changes)
    }

    /// SIGHUP: the file's `[https_api_old]` changed; returns what is in force now.
    pub async fn reload_file_old(
        &self,
        file: OldApiSettings,
        keys: FileKeys,
    ) -> Result<OldApiSettings, FieldErrors> {
        let saved = self.saved.lock().await;
        if let Ok(mut f) = self.file_old.lock() {
            *f = FileOld {
                settings: file,
                keys,
            };
        }
        self.effective_old(&saved.old)
    }

    // ------------------------------------------------------------ other nodes

    /// Reads the saved sections again if another node changed them, and puts
    /// them in force.
    /// Returns the users whose sessions must end.
    pub async fn refresh(&self) -> crate::error::Result<Vec<String>> {
        let mut saved = self.saved.lock().await;
        self.refresh_locked(&mut saved).await
    }

    async fn refresh_locked(&self, saved: &mut Saved) -> crate::error::Result<Vec<String>> {
        let mut ended = Vec::new();
        let (new_v, old_v, ws_v) = (saved.new_version, saved.old_version, saved.ws_version);
        let cdr_v = saved.cdr_version;
        self.read_saved(saved).await?;
        if saved.new_version != new_v {
            let before = self.new_api();
            let after = self.effective_new(&saved.new);
            ended = self.put_new_in_force(&before, after).await;
            tracing::info!("API settings changed on another node: in force here too");
        }
        // Websocket users depend on the API users' names too.
        if saved.new_version != new_v || saved.ws_version != ws_v {
            self.set_ws(self.effective_ws(&saved.ws, &self.new_api()));
            if saved.ws_version != ws_v {
                tracing::info!("websocket users changed on another node: in force here too");
            }
        }
        if saved.cdr_version != cdr_v {
            let changed = self.put_cdr_in_force(self.effective_cdr(&saved.cdr)).await;
            if !changed.is_empty() {
                tracing::info!(changed = %changed.join(", "), "CDR output settings changed on another node: in force here too");
            }
        }
        if saved.old_version != old_v {
            if let Some(tls) = &saved.old.tls
                && let Err(e) = self.write_uploaded(tls)
            {
                tracing::error!(errors = %e.summary(), "the old API certificate saved on another node cannot be written here");
            }
            match self.effective_old(&saved.old) {
                Ok(s) => {
                    if let Some(old) = self.old_api.get()
                        && let Err(e) = old.apply(s).await
                    {
                        tracing::error!(error = %e, "old API settings saved on another node cannot be applied here");
                    }
                }
                Err(e) => {
                    tracing::error!(errors = %e.summary(), "old API settings saved on another node are not valid here")
                }
            }
        }
        Ok(ended)
    }

    async fn audit(&self, by: &str, ip: &str, section: &str, changes: &Changes) {
        let detail = if changes.0.is_empty() {
            format!("{section}: no change")
        } else {
            changes
                .0
                .iter()
                .map(|c| format!("{section}.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        tracing::info!(admin = %by, %ip, changed = %detail, "API settings saved on the admin page");
        let e = AuditEvent {
            at_ms: now_ms(),
            event: store::AuditEventKind::Settings,
            username: by.to_owned(),
            ip: ip.to_owned(),
            result: "changed".into(),
            detail: format!("admin page: {detail}"),
        };
        if let Err(err) = self.store.record_audit(&e).await {
            tracing::error!(error = %err, "cannot write the audit trail");
        }
    }
}

fn internal(e: impl std::fmt::Display) -> FieldErrors {
    tracing::error!(error = %e, "saving API settings failed");
    FieldErrors::one("", "internal error, see the pbxgate log")
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        crate::files::private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// An uploaded certificate and key, checked as the listener would load them.
fn check_pair(cert: &str, key: &str) -> Result<(), FieldErrors> {
    crate::config::pem::check_pair(
        cert.as_bytes(),
        key.as_bytes(),
        ("the TLS Cert file", "tls_cert"),
        ("the TLS Private Key file", "tls_private_key"),
    )
    .map(|_| ())
    .map_err(|e| field_error(&e))
}

fn check_new_password(p: &str) -> Result<(), FieldErrors> {
    let n = p.chars().count();
    if n < MIN_WEB_PASSWORD_CHARS {
        return Err(FieldErrors::one(
            "password",
            format!("at least {MIN_WEB_PASSWORD_CHARS} characters"),
        ));
    }
    if n > MAX_PASSWORD_CHARS {
        return Err(FieldErrors::one(
            "password",
            format!("at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    if p.chars().any(char::is_control) {
        return Err(FieldErrors::one("password", "no control characters"));
    }
    Ok(())
}

/// A page user checked with the file's rules, and against `others` for a
/// duplicate name.
fn validate_user(u: &OverlayUser, others: &[ApiUser]) -> Result<ApiUser, FieldErrors> {
    let user = config::api_user(
        "user.",
        &UserConfig {
            username: u.username.clone(),
            password: Secret::new(u.password.clone()),
            password_file: String::new(),
            call_control: u.call_control,
            permitted_ips: u.permitted_ips.clone(),
            allow: u.allow.clone(),
            deny: u.deny.clone(),
            recordings_listing: u.recordings_listing.clone(),
        },
        Path::new("."),
    )
    .map_err(|e| field_error(&e))?;
    if others.iter().any(|o| o.username == u.username) {
        return Err(FieldErrors::one(
            "username",
            format!("a user named \"{}\" already exists", u.username),
        ));
    }
    Ok(user)
}

fn ws_name_taken(name: &str) -> FieldErrors {
    FieldErrors::one(
        "username",
        format!("a websocket user named \"{name}\" already exists"),
    )
}

/// A page's websocket user checked with the file's rules, against the API
/// users (`api`) and `others` for a name already taken.
fn validate_ws_user(
    u: &OverlayWsUser,
    api: Option<&NewApi>,
    others: &[WsUser],
) -> Result<WsUser, FieldErrors> {
    let user = config::ws_user(
        "user.",
        &WsUserConfig {
            username: u.username.clone(),
            password: Secret::new(u.password.clone()),
            password_file: String::new(),
            permitted_ips: u.permitted_ips.clone(),
            events: u.events.clone(),
        },
        Path::new("."),
    )
    .map_err(|e| field_error(&e))?;
    if api.is_some_and(|a| a.user(&u.username).is_some()) {
        return Err(FieldErrors::one(
            "username",
            format!(
                "an API user named \"{}\" exists: a websocket user needs a name of its own",
                u.username
            ),
        ));
    }
    if others.iter().any(|o| o.username == u.username) {
        return Err(ws_name_taken(&u.username));
    }
    Ok(user)
}

/// Removes the user at `index` if it is still the one the page showed there.
fn remove_shown<U>(
    users: &mut Vec<U>,
    index: usize,
    username: &str,
    name: impl Fn(&U) -> &String,
) -> Result<(), FieldErrors> {
    if users.get(index).map(|u| name(u).as_str()) != Some(username) {
        return Err(FieldErrors::one(
            "",
            "this user no longer exists: reload the page",
        ));
    }
    users.remove(index);
    Ok(())
}

fn diff_ws(before: &WsUsers, after: &WsUsers) -> Changes {
    let out = diff_users(
        &before.users,
        &after.users,
        |u| u.username.as_str(),
        |b, a| {
            [
                ("password", a.password != b.password),
                (
                    "permitted_ips",
                    a.permitted_ips_text != b.permitted_ips_text,
                ),
                ("events", a.events != b.events),
            ]
        },
    );
    Changes(out, Vec::new())
}

/// Audit keys of what changed among users: `user.<name>.removed`, one
/// `user.<name>.<field>` per field `fields(before, after)` marks changed,
/// then `user.<name>.added`.
fn diff_users<U, const N: usize>(
    before: &[U],
    after: &[U],
    name: impl Fn(&U) -> &str,
    fields: impl Fn(&U, &U) -> [(&'static str, bool); N],
) -> Vec<String> {
    let mut out = Vec::new();
    for b in before {
        let n = name(b);
        match after.iter().find(|a| name(a) == n) {
            None => out.push(format!("user.{n}.removed")),
            Some(a) => {
                for (field, changed) in fields(b, a) {
                    if changed {
                        out.push(format!("user.{n}.{field}"));
                    }
                }
            }
        }
    }
    for a in after {
        let n = name(a);
        if !before.iter().any(|b| name(b) == n) {
            out.push(format!("user.{n}.added"));
        }
    }
    out
}

/// Users whose sessions must end: removed, or with a new password.
fn users_to_log_out(before: &NewApi, after: &NewApi) -> Vec<String> {
    before
        .users
        .iter()
        .filter(|b| match after.user(&b.username) {
            None => true,
            Some(a) => a.password != b.password,
        })
        .map(|b| b.username.clone())
        .collect()
}

fn diff_new(before: &NewApi, after: &NewApi) -> Changes {
    let mut out = Vec::new();
    if before.enabled != after.enabled {
        out.push("enable".to_owned());
    }
    out.extend(diff_users(
        &before.users,
        &after.users,
        |u| u.username.as_str(),
        |b, a| {
            [
                ("password", a.password != b.password),
                ("call_control", a.call_control != b.call_control),
                (
                    "permitted_ips",
                    a.permitted_ips_text != b.permitted_ips_text,
                ),
                ("permissions", a.permissions != b.permissions),
                (
                    "recordings_listing",
                    a.recordings_listing != b.recordings_listing,
                ),
            ]
        },
    ));
    Changes(out, Vec::new())
}

fn diff_old(before: Option<&OldApiSettings>, after: &OldApiSettings) -> Changes {
    let Some(b) = before else {
        return Changes(vec!["all".to_owned()], Vec::new());
    };
    let mut out = Vec::new();
    let mut check = |name: &str, changed: bool| {
        if changed {
            out.push(name.to_owned());
        }
    };
    check("enable", b.enable != after.enable);
    check("tls_bind_address", b.bind != after.bind);
    check("tls", b.tls != after.tls);
    check("username", b.username != after.username);
    check("password", b.password != after.password);
    check(
        "permitted_ips",
        b.permitted_ips_text != after.permitted_ips_text,
    );
    check("enable_pmsapi", b.enable_pmsapi != after.enable_pmsapi);
    check(
        "recordings_listing",
        b.recordings_listing != after.recordings_listing,
    );
    Changes(out, Vec::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(name: &str, pw: &str, ips: &[&str]) -> ApiUser {
        validate_user(
            &OverlayUser {
                username: name.into(),
                password: pw.into(),
                call_control: false,
                permitted_ips: ips.iter().map(|s| s.to_string()).collect(),
                ..OverlayUser::default()
            },
            &[],
        )
        .unwrap()
    }

    #[test]
    fn config_errors_land_beside_their_form_field() {
        let e = ConfigError::invalid("https_api_old.permitted_ips[1]", "bad mask");
        assert_eq!(
            field_error(&e),
            FieldErrors::one("permitted_ips", "entry 2: bad mask")
        );
        let e = ConfigError::invalid("user.username", "must be 1 to 64 characters");
        assert_eq!(
            field_error(&e).0.keys().collect::<Vec<_>>(),
            vec!["username"]
        );
    }

    #[test]
    fn a_user_with_the_name_of_another_is_refused() {
        let others = vec![user("crm", "long enough 1", &[])];
        let e = validate_user(
            &OverlayUser {
                username: "crm".into(),
                password: "long enough 2".into(),
                ..OverlayUser::default()
            },
            &others,
        )
        .unwrap_err();
        assert!(e.0["username"].contains("already exists"));
    }

    #[test]
    fn changes_name_keys_and_end_sessions_of_changed_or_removed_users() {
        let before = NewApi {
            enabled: true,
            users: vec![
                user("a", "password 1", &[]),
                user("b", "password 1", &[]),
                user("c", "password 1", &[]),
            ],
            file_users: 0,
        };
        let after = NewApi {
            enabled: false,
            users: vec![
                user("a", "password 2", &[]),
                user("b", "password 1", &["10.0.0.1"]),
                user("d", "password 1", &[]),
            ],
            file_users: 0,
        };
        assert_eq!(
            diff_new(&before, &after).0,
            vec![
                "enable",
                "user.a.password",
                "user.b.permitted_ips",
                "user.c.removed",
                "user.d.added"
            ]
        );
        // b keeps its sessions: its address check applies per request.
        assert_eq!(users_to_log_out(&before, &after), vec!["a", "c"]);
        assert!(!after.call_control());
    }

    #[test]
    fn new_passwords_set_on_the_page_are_checked() {
        assert!(check_new_password("1234567").is_err());
        assert!(check_new_password("12345678").is_ok());
        assert!(check_new_password(&"x".repeat(65)).is_err());
        assert!(check_new_password("tab\there!").is_err());
    }
}
