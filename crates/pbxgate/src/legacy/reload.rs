//! SIGHUP: re-read the configuration file (same path, same environment
//! overrides), validate it, and put `[https_api_old]` and `[cdr_output]` in
//! force without touching the new API. An invalid file changes nothing.
//! Changes to other sections are logged by key name (never value) as needing
//! a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use store::{AuditEvent, AuditStore};

use super::App;
use super::OldApi;
use crate::config::{self, Config, OldApiSettings};

/// Reloads on every SIGHUP until the stream ends. `startup` is the
/// configuration the process started with: the other sections are still
/// that one's, so changes are reported against it on every reload.
pub async fn watch(
    old: Arc<OldApi>,
    app: App,
    path: PathBuf,
    startup: Config,
    mut hup: tokio::signal::unix::Signal,
) {
    while hup.recv().await.is_some() {
        reload(&old, &app, &path, &startup).await;
    }
}

/// The audit trail's `settings` event `reloaded`, naming what changed.
async fn audit_reloaded(app: &App, detail: String) {
    let event = AuditEvent {
        at_ms: crate::clock::now_ms(),
        event: store::AuditEventKind::Settings,
        username: String::new(),
        ip: String::new(),
        result: "reloaded".into(),
        detail,
    };
    if let Err(e) = app.store.record_audit(&event).await {
        tracing::error!(error = %e, "cannot write the audit trail");
    }
}

/// One reload.
pub async fn reload(old: &OldApi, app: &App, path: &Path, startup: &Config) {
    tracing::info!(config = %path.display(), "SIGHUP: re-reading the configuration");
    let file = path.to_path_buf();
    let loaded = match tokio::task::spawn_blocking(move || config::load_full(&file)).await {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed");
            return;
        }
    };
    let (config, settings) = match loaded {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(
                error = %e,
                "configuration reload refused: the file is not valid; the running settings stay in force"
            );
            return;
        }
    };
    let mut pending: Vec<String> = config::changed_keys(startup, &config)
        .into_iter()
        .filter(|k| !k.starts_with("https_api_old.") && !k.starts_with("cdr_output."))
        .collect();
    pending.extend(
        config::changed_secrets(&app.settings, &settings)
            .into_iter()
            .filter(|k| !k.starts_with("cdr_output.")),
    );
    pending.sort();
    pending.dedup();
    if !pending.is_empty() {
        tracing::warn!(
            keys = %pending.join(", "),
            "configuration reload: these changes need a restart of pbxgate to take effect"
        );
    }

    // With the receivers the admin page added.
    let changed = app
        .api
        .reload_file_cdr(settings.cdr_output.clone(), config.file_keys.clone())
        .await;
    if !changed.is_empty() {
        audit_reloaded(app, format!("cdr_output: {}", changed.join(", "))).await;
    }

    // The file's section with what the admin page saved over the keys the
    // file does not set.
    let in_force = match app
        .api
        .reload_file_old(settings.old_api, config.file_keys.clone())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                errors = %e.summary(),
                "configuration reload: https_api_old could not be applied with the admin page's settings (not valid together); the old API keeps its previous state"
            );
            return;
        }
    };
    let changed = changes(&old.settings(), &in_force);
    match old.apply(in_force).await {
        Ok(()) => {
            let now = old.settings();
            let listening = old.local_addr().await;
            tracing::info!(
                changed = %changed.join(", "),
                listening = %listening.map_or_else(|| "no".to_owned(), |a| a.to_string()),
                enable = now.enable,
                "configuration reloaded: https_api_old in force"
            );
            if !changed.is_empty() {
                audit_reloaded(app, changed.join(", ")).await;
            }
        }
        Err(e) => tracing::error!(
            error = %e,
            "configuration reload: https_api_old could not be applied; the old API keeps its previous state"
        ),
    }
}

/// The `[https_api_old]` keys that differ (names only).
fn changes(a: &OldApiSettings, b: &OldApiSettings) -> Vec<&'static str> {
    let mut out = Vec::new();
    if a.enable != b.enable {
        out.push("https_api_old.enable");
    }
    if a.bind != b.bind {
        out.push("https_api_old.tls_bind_address");
    }
    if a.tls != b.tls {
        out.push("https_api_old.tls_cert");
    }
    if a.username != b.username {
        out.push("https_api_old.username");
    }
    if a.password != b.password {
        out.push("https_api_old.password");
    }
    if a.permitted_ips != b.permitted_ips {
        out.push("https_api_old.permitted_ips");
    }
    if a.enable_pmsapi != b.enable_pmsapi {
        out.push("https_api_old.enable_pmsapi");
    }
    if a.recordings_listing != b.recordings_listing {
        out.push("https_api_old.recordings_listing");
    }
    out
}
