//! Audits settings changes between starts: a digest of every effective setting
//! is kept in the database; keys whose digest changed are written to the audit
//! trail (names only, never values), and sessions of a user whose password or
//! permitted IPs changed, or who was removed, are ended.
//!
//! Digests are keyed with the installation's random salt (`meta`
//! `settings_salt`): HMAC-SHA256 of a plain value, PBKDF2-HMAC-SHA256 of a
//! secret. Each starts with the name of its scheme. Digests without one are
//! from versions before (MD5, see [`legacy`]); on the first start after the
//! upgrade each is compared with the old function, so that an unchanged
//! setting is not reported as changed.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use store::{AuditEvent, AuditStore, MetaStore, SessionStore, SettingsStore, Store};

use crate::clock::now_ms;
use crate::config::{RecordingStore, Secret, Settings};
use crate::error::{Error, Result};
use crate::random;
use ucm::auth::hex;

const PLAIN_SCHEME: &str = "hmac-sha256:";
const SECRET_SCHEME: &str = "pbkdf2-sha256:";

/// PBKDF2 rounds over a secret: the digest only has to show change, and must
/// not make a weak password cheap to guess from a database dump (which holds
/// the salt too). A guess costs 40,000 SHA-256 blocks, no less than the
/// 20,001 MD5 blocks of the old scheme.
const SECRET_ROUNDS: u32 = 20_000;

/// `SECRET_ROUNDS` is above PBKDF2's minimum (1,000), so the fallback is
/// never taken (a test checks).
const SECRET_PARAMS: pbkdf2::Params = match pbkdf2::Params::new(SECRET_ROUNDS) {
    Ok(p) => p,
    Err(_) => pbkdf2::Params::RECOMMENDED,
};

/// A setting's value as the digest sees it.
enum Value<'a> {
    Plain(String),
    Secret(&'a Secret),
}

fn plain(value: impl std::fmt::Display) -> Value<'static> {
    Value::Plain(value.to_string())
}

fn secret(value: &Secret) -> Value<'_> {
    Value::Secret(value)
}

/// The digests of one salt.
struct Digester<'a> {
    salt: &'a str,
    mac: Hmac<Sha256>,
}

impl<'a> Digester<'a> {
    fn new(salt: &'a str) -> Result<Self> {
        // HMAC takes keys of any length; the error cannot happen.
        let mac = Hmac::<Sha256>::new_from_slice(salt.as_bytes())
            .map_err(|_| Error::StoredValue("settings_salt is not an HMAC key".into()))?;
        Ok(Digester { salt, mac })
    }

    fn digest(&self, key: &str, value: &Value) -> String {
        match value {
            Value::Plain(v) => {
                let mut mac = self.mac.clone();
                mac.update(v.as_bytes());
                format!("{PLAIN_SCHEME}{}", hex(&mac.finalize().into_bytes()))
            }
            Value::Secret(v) => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac_with_params(
                    format!("{key}\0{}", v.expose()).as_bytes(),
                    self.salt.as_bytes(),
                    pbkdf2::Algorithm::Pbkdf2Sha256,
                    SECRET_PARAMS,
                    &mut out,
                );
                format!("{SECRET_SCHEME}{}", hex(&out))
            }
        }
    }
}

/// The digests of the versions before HMAC-SHA256: MD5 of a plain value,
/// 20,000 rounds of salted MD5 over a secret, lower-case hex without a scheme.
/// Only read to carry unchanged settings over an upgrade; can go once no
/// database holds such digests.
mod legacy {
    use md5::{Digest, Md5};
    use ucm::auth::hex;

    use super::Value;

    const SECRET_ROUNDS: usize = 20_000;

    pub(super) fn is_legacy(stored: &str) -> bool {
        !stored.contains(':')
    }

    pub(super) fn digest(salt: &str, key: &str, value: &Value) -> String {
        match value {
            Value::Plain(v) => hex(&Md5::digest(v.as_bytes())),
            Value::Secret(v) => {
                let mut d = Md5::digest(format!("{salt}\0{key}\0{}", v.expose()).as_bytes());
                for _ in 0..SECRET_ROUNDS {
                    let mut h = Md5::new();
                    h.update(salt.as_bytes());
                    h.update(d);
                    d = h.finalize();
                }
                hex(&d)
            }
        }
    }
}

/// The API settings in force (the file's with the admin page's over them).
struct InForce<'a> {
    enabled: bool,
    users: &'a [crate::config::ApiUser],
    ws_users: &'a [crate::config::WsUser],
    old: &'a crate::config::OldApiSettings,
}

/// Every setting that matters for security or behaviour.
fn values<'a>(s: &'a Settings, api: &InForce<'a>) -> Vec<(String, Value<'a>)> {
    let mut out: Vec<(String, Value)> = vec![
        ("web.listen".into(), plain(s.listen)),
        ("web.tls".into(), plain(format!("{:?}", s.tls))),
        ("database.url".into(), secret(&s.database_url)),
        ("pbx.timezone".into(), plain(&s.timezone_name)),
        ("https_api.enable".into(), plain(api.enabled)),
        ("https_api_old.enable".into(), plain(api.old.enable)),
        ("https_api_old.tls_bind_address".into(), plain(api.old.bind)),
        (
            "https_api_old.tls".into(),
            plain(format!("{:?}", api.old.tls)),
        ),
        ("https_api_old.username".into(), plain(&api.old.username)),
        ("https_api_old.password".into(), secret(&api.old.password)),
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
    out.push(("pms.password".into(), secret(&s.pms.password)));
    for u in api.users {
        let k = |field: &str| format!("https_api.user.{}.{field}", u.username);
        out.push((k("password"), secret(&u.password)));
        out.push((k("call_control"), plain(u.call_control)));
        out.push((k("permitted_ips"), plain(u.permitted_ips_text.join(";"))));
        out.push((k("permissions"), plain(format!("{:?}", u.permissions))));
        if let Some(l) = u.recordings_listing {
            out.push((k("recordings_listing"), plain(l.as_str())));
        }
    }
    for u in api.ws_users {
        let k = |field: &str| format!("websockify.user.{}.{field}", u.username);
        out.push((k("password"), secret(&u.password)));
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
            out.push((key.into(), secret(&b.secret_access_key)));
        }
    }
    // Where CDRs are pushed (billing data leaves the PBX there).
    out.push(("cdr_output.enable".into(), plain(s.cdr_output.enabled)));
    for r in &s.cdr_output.receivers {
        let k = |field: &str| format!("cdr_output.receiver.{}.{field}", r.name);
        out.push((
            k("target"),
            plain(format!(
                "{} {} {:?} tls_verify={} ca={:?} user={}",
                r.target(),
                r.format.content_type(),
                (r.only_answered, &r.directions),
                r.tls_verify,
                r.ca_file,
                r.username
            )),
        ));
        out.push((k("password"), secret(&r.password)));
        out.push((k("signing_secret"), secret(&r.signing_secret)));
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
    let values = values(settings, &in_force);
    let digester = Digester::new(&salt)?;
    let digests: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (k.clone(), digester.digest(k, v)))
        .collect();
    let stored: BTreeMap<String, String> = store.settings_digests().await?.into_iter().collect();
    let changed = store.replace_settings_digests(&digests).await?;
    // A digest of an older version stands for an unchanged setting when the
    // old function gives it for the value in force.
    let mut carried = 0;
    let changed: Vec<String> = changed
        .into_iter()
        .filter(|key| {
            let unchanged = stored.get(key).is_some_and(|old| {
                legacy::is_legacy(old)
                    && values
                        .iter()
                        .find(|(k, _)| k == key)
                        .is_some_and(|(k, v)| legacy::digest(&salt, k, v) == *old)
            });
            carried += usize::from(unchanged);
            !unchanged
        })
        .collect();
    if carried > 0 {
        tracing::info!(
            settings = carried,
            "settings digests recomputed with HMAC-SHA256 (they were MD5)"
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_hmac_sha256_and_pbkdf2_under_the_salt() {
        // RFC 4231 test case 2.
        let d = Digester::new("Jefe").unwrap();
        assert_eq!(
            d.digest("k", &plain("what do ya want for nothing?")),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Python: hashlib.pbkdf2_hmac('sha256', b'pms.password\0s3cret', salt, 20000).
        let salt = "0123456789abcdef0123456789abcdef";
        let pw = Secret::new("s3cret");
        assert_eq!(
            Digester::new(salt)
                .unwrap()
                .digest("pms.password", &secret(&pw)),
            "pbkdf2-sha256:79670ee1c3d2c2545684c7c4a59288fe2833bee5bf1a1543c50dd7be60941caa"
        );
        assert_eq!(SECRET_PARAMS.rounds(), SECRET_ROUNDS);
        assert!(!legacy::is_legacy(&d.digest("k", &plain(1))));
        assert!(legacy::is_legacy(&legacy::digest(salt, "k", &plain(1))));
    }

    fn settings(password: &str) -> Settings {
        let toml = format!("[https_api]\npassword = \"{password}\"\n");
        crate::config::load_str(&toml, "t.toml", std::path::Path::new("/"), Vec::new()).unwrap()
    }

    async fn settings_events(store: &Store) -> Vec<(String, String)> {
        let mut events: Vec<(String, String)> = store
            .recent_audit(100)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event == "settings")
            .map(|e| (e.result, e.detail))
            .collect();
        events.reverse();
        events
    }

    /// Replaces the stored digests with those an older version wrote.
    async fn downgrade(store: &Store, s: &Settings) {
        let salt = store.meta_get_or_init("settings_salt", "-").await.unwrap();
        let api = crate::apiconfig::ApiConfig::load(s, store).await.unwrap();
        let (new, ws, old_api) = (api.new_api(), api.ws_users(), api.old_api().await);
        let in_force = InForce {
            enabled: new.enabled,
            users: &new.users,
            ws_users: &ws.users,
            old: &old_api,
        };
        let old: Vec<(String, String)> = values(s, &in_force)
            .iter()
            .map(|(k, v)| (k.clone(), legacy::digest(&salt, k, v)))
            .collect();
        store.replace_settings_digests(&old).await.unwrap();
    }

    /// [`record`] with the API settings the file gives.
    async fn record_file(s: &Settings, store: &Store) -> Result<()> {
        let api = crate::apiconfig::ApiConfig::load(s, store).await?;
        record(s, &api, store).await
    }

    #[tokio::test]
    async fn an_upgrade_reports_only_what_really_changed() {
        let dir = tempfile::tempdir().unwrap();
        let url = store::testing::sqlite_url(dir.path());
        let store = Store::connect(&url, &store::ConnectOptions::default())
            .await
            .unwrap();
        let old = settings("old");
        record_file(&old, &store).await.unwrap();
        record_file(&old, &store).await.unwrap();
        let events = settings_events(&store).await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, "initial");
        let stored = store.settings_digests().await.unwrap();
        assert!(
            stored
                .iter()
                .all(|(_, d)| d.starts_with(PLAIN_SCHEME) || d.starts_with(SECRET_SCHEME)),
            "{stored:?}"
        );

        // Digests written by an older version, settings as they were: no change.
        downgrade(&store, &old).await;
        record_file(&old, &store).await.unwrap();
        assert_eq!(settings_events(&store).await.len(), 1);
        assert_eq!(store.settings_digests().await.unwrap(), stored);

        // ... and with a new password: that one key.
        downgrade(&store, &old).await;
        record_file(&settings("new"), &store).await.unwrap();
        let events = settings_events(&store).await;
        assert_eq!(
            events.last(),
            Some(&("changed".into(), "https_api.user.cdrapi.password".into())),
            "{events:?}"
        );
    }
}
