//! Audits settings changes between starts: a digest of every effective setting
//! is kept in the database; keys whose digest changed are written to the audit
//! trail (names only, never values), and sessions of a user whose password or
//! permitted IPs changed, or who was removed, are ended.

use md5::{Digest, Md5};
use store::{AuditEvent, AuditStore, MetaStore, SessionStore, SettingsStore, Store};

use crate::clock::now_ms;
use crate::config::{RecordingStore, Secret, Settings};
use crate::error::Result;
use crate::random;
use ucm::auth::hex;

/// Rounds of salted MD5 over a secret: the digest only has to show change, and
/// must not make a weak password cheap to guess from a database dump.
const SECRET_ROUNDS: usize = 20_000;

fn plain(value: impl std::fmt::Display) -> String {
    hex(&Md5::digest(value.to_string().as_bytes()))
}

fn secret(salt: &str, key: &str, value: &Secret) -> String {
    let mut d = Md5::digest(format!("{salt}\0{key}\0{}", value.expose()).as_bytes());
    for _ in 0..SECRET_ROUNDS {
        let mut h = Md5::new();
        h.update(salt.as_bytes());
        h.update(d);
        d = h.finalize();
    }
    hex(&d)
}

/// The API settings in force (the file's with the admin page's over them).
struct InForce<'a> {
    enabled: bool,
    users: &'a [crate::config::ApiUser],
    ws_users: &'a [crate::config::WsUser],
    old: &'a crate::config::OldApiSettings,
}

/// The digest of every setting that matters for security or behaviour.
fn digests(s: &Settings, api: &InForce<'_>, salt: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = vec![
        ("web.listen".into(), plain(s.listen)),
        ("web.tls".into(), plain(format!("{:?}", s.tls))),
        (
            "database.url".into(),
            secret(salt, "database.url", &s.database_url),
        ),
        ("pbx.timezone".into(), plain(&s.timezone_name)),
        ("https_api.enable".into(), plain(api.enabled)),
        ("https_api_old.enable".into(), plain(api.old.enable)),
        ("https_api_old.tls_bind_address".into(), plain(api.old.bind)),
        (
            "https_api_old.tls".into(),
            plain(format!("{:?}", api.old.tls)),
        ),
        ("https_api_old.username".into(), plain(&api.old.username)),
        (
            "https_api_old.password".into(),
            secret(salt, "https_api_old.password", &api.old.password),
        ),
        (
            "https_api_old.permitted_ips".into(),
            plain(api.old.permitted_ips_text.join(";")),
        ),
        (
            "session.idle_timeout_secs".into(),
            plain(s.idle_timeout.as_secs()),
        ),
        (
            "login_restriction".into(),
            plain(format!(
                "{} {} {} {:?}",
                s.lockout.max_failures,
                s.lockout.window.as_secs(),
                s.lockout.ban.as_secs(),
                s.lockout.whitelist
            )),
        ),
    ];
    out.push(("pms.username".into(), plain(&s.pms.username)));
    out.push((
        "pms.password".into(),
        secret(salt, "pms.password", &s.pms.password),
    ));
    for u in api.users {
        let k = |field: &str| format!("https_api.user.{}.{field}", u.username);
        out.push((k("password"), secret(salt, &k("password"), &u.password)));
        out.push((k("call_control"), plain(u.call_control)));
        out.push((k("permitted_ips"), plain(u.permitted_ips_text.join(";"))));
        out.push((k("permissions"), plain(format!("{:?}", u.permissions))));
        if let Some(l) = u.recordings_listing {
            out.push((k("recordings_listing"), plain(l.as_str())));
        }
    }
    for u in api.ws_users {
        let k = |field: &str| format!("websockify.user.{}.{field}", u.username);
        out.push((k("password"), secret(salt, &k("password"), &u.password)));
        out.push((k("permitted_ips"), plain(u.permitted_ips_text.join(";"))));
        out.push((k("events"), plain(u.events.join(";"))));
    }
    // What recapi serves, from where, and how it lists it.
    out.push((
        "recordings.listing".into(),
        plain(s.recordings.listing.as_str()),
    ));
    out.push((
        "recordings.dirs".into(),
        plain(format!("{:?}", s.recordings.dirs)),
    ));
    match &s.recordings.store {
        RecordingStore::Local => out.push(("recordings.store".into(), plain("local"))),
        RecordingStore::S3(b) => {
            out.push((
                "recordings.store".into(),
                plain(format!(
                    "s3 {} {:?} {} {}",
                    b.bucket, b.endpoint, b.region, b.access_key_id
                )),
            ));
            let key = "recordings.s3.secret_access_key";
            out.push((key.into(), secret(salt, key, &b.secret_access_key)));
        }
    }
    out
}

pub async fn record(
    settings: &Settings,
    api: &crate::apiconfig::ApiConfig,
    store: &Store,
) -> Result<()> {
    let (new, ws, old) = (api.new_api(), api.ws_users(), api.old_api().await);
    let in_force = InForce {
        enabled: new.enabled,
        users: &new.users,
        ws_users: &ws.users,
        old: &old,
    };
    let fresh_salt = random::string(b"0123456789abcdef", 32)?;
    let salt = store.meta_get_or_init("settings_salt", &fresh_salt).await?;
    let first_start = salt == fresh_salt;
    let changed = store
        .replace_settings_digests(&digests(settings, &in_force, &salt))
        .await?;
    if changed.is_empty() {
        return Ok(());
    }
    let detail = changed.join(", ");
    if !first_start {
        tracing::info!(keys = detail, "settings changed since the last start");
    }
    store
        .record_audit(&AuditEvent {
            at_ms: now_ms(),
            event: store::AuditEventKind::Settings,
            username: String::new(),
            ip: String::new(),
            result: if first_start { "initial" } else { "changed" }.into(),
            detail,
        })
        .await?;
    if first_start {
        return Ok(());
    }
    let mut ended: Vec<&str> = Vec::new();
    for key in &changed {
        let Some(rest) = key.strip_prefix("https_api.user.") else {
            continue;
        };
        let Some((name, field)) = rest.rsplit_once('.') else {
            continue;
        };
        let credentials_changed = field == "password" || field == "permitted_ips";
        if (credentials_changed || settings.user(name).is_none()) && !ended.contains(&name) {
            let n = store.delete_sessions_of(name).await?;
            if n > 0 {
                tracing::info!(
                    user = name,
                    sessions = n,
                    "ended sessions: the user's credentials or permitted IPs changed"
                );
            }
            ended.push(name);
        }
    }
    Ok(())
}
