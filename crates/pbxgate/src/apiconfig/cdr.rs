//! "CDR Real-Time Output Settings", the page's third table: the file's
//! receivers (fixed) and the page's (editable), and the switch (the page's
//! unless the file sets `cdr_output.enable`). Every receiver saved goes
//! through `config::cdr_output::receiver`, the file's validation; what is
//! saved is put in force through the attached [`CdrOutputSink`] (the
//! outbox), here and, within a poll, on every other node.

use std::path::Path;
use std::sync::Arc;

use store::WebSettingsStore;

use super::overlay::{CdrOverlay, OverlayReceiver};
use super::{ApiConfig, Changes, FieldErrors, field_error, internal, remove_shown};
use crate::clock::now_ms;
use crate::config::cdr_output::{CdrOutputSettings, ReceiverConfig, ReceiverSettings};
use crate::config::{FileKeys, Secret};

pub const CDR_SECTION: &str = "cdr_output";

/// What puts CDR output settings in force (`outbox::Outbox`, attached by
/// the server at start-up). Returns what changed, by name.
#[async_trait::async_trait]
pub trait CdrOutputSink: Send + Sync {
    async fn apply(&self, settings: &CdrOutputSettings) -> Vec<String>;
}

/// The file's `[cdr_output]` (updated by SIGHUP reloads).
pub(super) struct FileCdr {
    pub settings: CdrOutputSettings,
    pub keys: FileKeys,
}

/// A receiver typed on the page as the file's validation reads it.
fn as_config(r: &OverlayReceiver) -> ReceiverConfig {
    ReceiverConfig {
        name: r.name.clone(),
        delivery: r.delivery.clone(),
        address: r.address.clone(),
        port: r.port,
        path: r.path.clone(),
        format: r.format.clone(),
        username: r.username.clone(),
        password: Secret::new(r.password.clone()),
        password_file: String::new(),
        signing_secret: Secret::new(r.signing_secret.clone()),
        signing_secret_file: String::new(),
        tls_verify: r.tls_verify,
        ca_file: r.ca_file.clone(),
        batch: r.batch,
        grouped: r.grouped,
        only_answered: r.only_answered,
        directions: r.directions.clone(),
        max_backlog: r.max_backlog,
        max_age_days: r.max_age_days,
        timeout_secs: r.timeout_secs,
    }
}

/// Validates a page receiver beside the others' names.
fn validate_receiver(
    r: &OverlayReceiver,
    others: &[ReceiverSettings],
    base: &Path,
) -> Result<ReceiverSettings, FieldErrors> {
    let v = crate::config::cdr_output::receiver("cdr_output.receiver", &as_config(r), base)
        .map_err(|e| field_error(&e))?;
    if others.iter().any(|o| o.name == v.name) {
        return Err(FieldErrors::one(
            "name",
            format!("another receiver is already named {:?}", v.name),
        ));
    }
    Ok(v)
}

impl ApiConfig {
    pub fn attach_cdr_output(&self, sink: Arc<dyn CdrOutputSink>) {
        let _ = self.cdr_sink.set(sink);
    }

    /// The CDR output settings in force (file and page).
    pub fn cdr_output(&self) -> CdrOutputSettings {
        match self.cdr.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn file_cdr(&self) -> (CdrOutputSettings, FileKeys) {
        match self.file_cdr.lock() {
            Ok(f) => (f.settings.clone(), f.keys.clone()),
            Err(p) => {
                let f = p.into_inner();
                (f.settings.clone(), f.keys.clone())
            }
        }
    }

    /// The file's receivers, then the page's that still validate (a name
    /// taken meanwhile by a file receiver leaves the page's out, logged).
    pub(super) fn effective_cdr(&self, overlay: &CdrOverlay) -> CdrOutputSettings {
        let (mut s, keys) = self.file_cdr();
        if !keys.cdr_output.contains("enable")
            && let Some(on) = overlay.enable
        {
            s.enabled = on;
        }
        for r in &overlay.receivers {
            match validate_receiver(r, &s.receivers, &self.file.config_dir) {
                Ok(v) => s.receivers.push(v),
                Err(e) => tracing::error!(
                    receiver = %r.name,
                    errors = %e.summary(),
                    "a CDR output receiver saved on the admin page is left out"
                ),
            }
        }
        s
    }

    /// Puts `settings` in force; what changed.
    pub(super) async fn put_cdr_in_force(&self, settings: CdrOutputSettings) -> Vec<String> {
        match self.cdr.write() {
            Ok(mut g) => *g = settings.clone(),
            Err(poisoned) => *poisoned.into_inner() = settings.clone(),
        }
        match self.cdr_sink.get() {
            Some(sink) => sink.apply(&settings).await,
            None => Vec::new(),
        }
    }

    /// The file's receivers (read-only on the page).
    pub fn fixed_receivers(&self) -> Vec<ReceiverSettings> {
        self.file_cdr().0.receivers
    }

    /// Whether the file sets `cdr_output.enable` (then read-only).
    pub fn cdr_enable_fixed(&self) -> bool {
        self.file_cdr().1.cdr_output.contains("enable")
    }

    /// The receivers the page edits, in order, and the version read.
    pub async fn page_receivers(&self) -> (Vec<OverlayReceiver>, i64) {
        let saved = self.saved.lock().await;
        (saved.cdr.receivers.clone(), saved.cdr_version)
    }

    /// The page's switch.
    pub async fn set_cdr_enable(
        &self,
        enable: bool,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        if self.cdr_enable_fixed() {
            return Err(FieldErrors::one(
                "enable",
                "set in the configuration file (cdr_output.enable): change it there",
            ));
        }
        self.edit_cdr(by, ip, |o| {
            o.enable = Some(enable);
            Ok(())
        })
        .await
    }

    /// Adds a receiver (`index` None) or replaces the page's at `index`; an
    /// empty password or signing secret keeps the current one.
    pub async fn save_receiver(
        &self,
        index: Option<usize>,
        mut r: OverlayReceiver,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        let fixed = self.fixed_receivers();
        let base = self.file.config_dir.clone();
        self.edit_cdr(by, ip, move |o| {
            if let Some(i) = index {
                let Some(old) = o.receivers.get(i) else {
                    return Err(FieldErrors::one(
                        "",
                        "this receiver no longer exists: reload the page",
                    ));
                };
                // Kept unless the user name goes (no credentials any more).
                if r.password.is_empty() && !r.username.is_empty() {
                    r.password = old.password.clone();
                }
                if r.signing_secret.is_empty() {
                    r.signing_secret = old.signing_secret.clone();
                }
            }
            let others: Vec<ReceiverSettings> = fixed
                .iter()
                .cloned()
                .chain(
                    o.receivers
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| Some(*i) != index)
                        .filter_map(|(_, x)| validate_receiver(x, &[], &base).ok()),
                )
                .collect();
            validate_receiver(&r, &others, &base)?;
            match index {
                Some(i) => o.receivers[i] = r,
                None => o.receivers.push(r),
            }
            Ok(())
        })
        .await
    }

    /// Removes the page's receiver at `index` (named `name`). What is
    /// queued for it stays in the outbox (`pbxgate outbox` shows it).
    pub async fn remove_receiver(
        &self,
        index: usize,
        name: &str,
        by: &str,
        ip: &str,
    ) -> Result<Changes, FieldErrors> {
        self.edit_cdr(by, ip, |o| {
            remove_shown(&mut o.receivers, index, name, |r| &r.name)
        })
        .await
    }

    /// Applies `edit` to the saved section, saves it over the version read
    /// and puts it in force.
    async fn edit_cdr(
        &self,
        by: &str,
        ip: &str,
        edit: impl FnOnce(&mut CdrOverlay) -> Result<(), FieldErrors>,
    ) -> Result<Changes, FieldErrors> {
        let mut saved = self.saved.lock().await;
        let earlier = self.refresh_locked(&mut saved).await.map_err(internal)?;
        let mut next = saved.cdr.clone();
        edit(&mut next)?;
        let after = self.effective_cdr(&next);
        let body = serde_json::to_string(&next).map_err(|e| internal(e.to_string()))?;
        let version = self
            .store
            .save_web_settings(CDR_SECTION, &body, saved.cdr_version, now_ms(), by)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let Some(version) = version else {
            return Err(FieldErrors::one(
                "",
                "the settings were changed meanwhile (another admin or node): reload the page",
            ));
        };
        saved.cdr = next;
        saved.cdr_version = version;
        let changed = self.put_cdr_in_force(after).await;
        let changes = Changes(changed, earlier);
        self.audit(by, ip, CDR_SECTION, &changes).await;
        Ok(changes)
    }

    /// SIGHUP: the file's `[cdr_output]` as read again, with the page's
    /// receivers; what changed.
    pub async fn reload_file_cdr(&self, file: CdrOutputSettings, keys: FileKeys) -> Vec<String> {
        match self.file_cdr.lock() {
            Ok(mut f) => {
                *f = FileCdr {
                    settings: file,
                    keys,
                }
            }
            Err(p) => {
                *p.into_inner() = FileCdr {
                    settings: file,
                    keys,
                }
            }
        }
        let saved = self.saved.lock().await;
        let after = self.effective_cdr(&saved.cdr);
        drop(saved);
        self.put_cdr_in_force(after).await
    }
}
