//! `getSystemStatus` and `getSystemGeneralStatus`: what clients read to check
//! a cookie and to learn which "UCM" they talk to.

use std::time::Instant;

use serde_json::{Map, Value, json};
use store::{MetaStore, Store};

use crate::config::Settings;
use crate::error::Result;
use crate::random;

/// Stable identity of this installation, kept in the database so that every
/// process sharing it reports the same.
#[derive(Debug, Clone)]
pub struct Identity {
    pub serial_number: String,
    pub bindcode: String,
    pub mac: String,
    /// The machine's idle CPU seconds (all CPUs) when pbxgate started: the
    /// idle time reported is what accumulated since, like the up-time.
    pub idle_at_start: f64,
}

impl Identity {
    pub async fn load(settings: &Settings, store: &Store) -> Result<Identity> {
        let serial_number = if settings.system.serial_number.is_empty() {
            let init = random::string(b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ", 16)?;
            store.meta_get_or_init("serial_number", &init).await?
        } else {
            settings.system.serial_number.clone()
        };
        let init = random::string(b"0123456789abcdef", 64)?;
        let bindcode = store.meta_get_or_init("bindcode", &init).await?;
        let mac = if settings.system.mac.is_empty() {
            host_mac().unwrap_or_else(|| "00:00:00:00:00:00".into())
        } else {
            settings.system.mac.to_ascii_uppercase()
        };
        Ok(Identity {
            serial_number,
            bindcode,
            mac,
            idle_at_start: machine_idle().unwrap_or(0.0),
        })
    }
}

/// The MAC address of the first non-loopback interface that has one.
fn host_mac() -> Option<String> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let mac = std::fs::read_to_string(format!("/sys/class/net/{n}/address")).ok()?;
        let mac = mac.trim().to_ascii_uppercase();
        (mac.len() == 17 && mac != "00:00:00:00:00:00").then_some(mac)
    })
}

/// `HH:MM:SS`, hours not wrapped at 24 (a UCM up for days shows e.g. `123:04:05`).
pub fn format_duration(secs: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `DD-MM-YYYY HH:MM:SS UTC+01:00` in the PBX time zone.
pub fn format_system_time(now: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> String {
    let zoned = now.to_zoned_datetime(tz.clone());
    let offset = zoned.offset().seconds();
    let sign = if offset < 0 { '-' } else { '+' };
    let abs = offset.unsigned_abs();
    format!(
        "{} UTC{sign}{:02}:{:02}",
        zoned.strftime("%d-%m-%Y %H:%M:%S"),
        abs / 3600,
        (abs / 60) % 60
    )
}

/// The machine's idle CPU seconds since boot, summed over its CPUs (the
/// second number of `/proc/uptime`).
fn machine_idle() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let idle: f64 = text.split_whitespace().nth(1)?.parse().ok()?;
    idle.is_finite().then_some(idle)
}

/// The CPUs the kernel counts idle time for (`cpuN` lines of /proc/stat):
/// not `available_parallelism`, which a container's CPU quota lowers while
/// /proc/uptime still sums every CPU of the host.
fn machine_cpus() -> f64 {
    static CPUS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *CPUS.get_or_init(|| {
        let n = std::fs::read_to_string("/proc/stat")
            .map(|t| {
                t.lines()
                    .filter(|l| {
                        l.strip_prefix("cpu")
                            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    })
                    .count()
            })
            .unwrap_or(0);
        n.max(1) as f64
    })
}

/// Idle seconds per CPU since pbxgate started, never more than `up_secs`
/// nor less than zero (a clock or counter going backwards, a machine
/// without /proc).
pub fn idle_since(at_start: f64, now: f64, cpus: f64, up_secs: u64) -> u64 {
    let per_cpu = (now - at_start) / cpus.max(1.0);
    if !per_cpu.is_finite() || per_cpu <= 0.0 {
        return 0;
    }
    (per_cpu as u64).min(up_secs)
}

/// [`idle_since`] with /proc read at most once a second: `getSystemStatus`
/// is what clients poll to keep a cookie alive, and a file read per request
/// costs more than the rest of it.
fn idle_secs(at_start: f64, up_secs: u64) -> u64 {
    static CACHE: std::sync::Mutex<Option<(Instant, f64)>> = std::sync::Mutex::new(None);
    let cached = CACHE
        .lock()
        .ok()
        .and_then(|cache| cache.filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1)));
    let now = match cached {
        Some((_, idle)) => idle,
        None => {
            let idle = machine_idle().unwrap_or(at_start);
            if let Ok(mut cache) = CACHE.lock() {
                *cache = Some((Instant::now(), idle));
            }
            idle
        }
    };
    idle_since(at_start, now, machine_cpus(), up_secs)
}

/// The encoded `getSystemStatus` answer, rebuilt when its second changes:
/// every field it holds has a resolution of one second, and clients poll it
/// to keep their cookie alive.
#[derive(Default)]
pub struct StatusCache {
    slot: std::sync::Mutex<Option<(u64, axum::body::Bytes)>>,
}

impl StatusCache {
    pub fn get(&self, build: impl FnOnce() -> axum::body::Bytes) -> axum::body::Bytes {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Ok(slot) = self.slot.lock()
            && let Some((s, body)) = &*slot
            && *s == second
        {
            return body.clone();
        }
        let body = build();
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some((second, body.clone()));
        }
        body
    }
}

/// What the status actions need, built once at start-up.
pub struct System {
    pub settings: std::sync::Arc<Settings>,
    pub identity: Identity,
    pub started: Instant,
    pub cache: StatusCache,
}

impl System {
    /// `getSystemStatus`'s whole answer, built at most once a second.
    pub fn status(&self) -> axum::body::Bytes {
        self.cache.get(|| {
            let response = system_status(&self.settings, &self.identity, self.started);
            axum::body::Bytes::from(ucm::encode_response(ucm::Status::Success, &response))
        })
    }

    /// `getSystemGeneralStatus`'s answer.
    pub fn general(&self) -> Value {
        general_status(&self.settings)
    }
}

pub fn system_status(settings: &Settings, identity: &Identity, started: Instant) -> Value {
    let up = started.elapsed().as_secs();
    json!({
        "part-number": settings.system.part_number,
        "serial-number": identity.serial_number,
        "up-time": format_duration(up),
        "idle-time": format_duration(idle_secs(identity.idle_at_start, up)),
        "system-time": format_system_time(jiff::Timestamp::now(), &settings.timezone),
        "bindcode": identity.bindcode,
        "mac": identity.mac,
    })
}

pub fn general_status(settings: &Settings) -> Value {
    let v = &settings.system.firmware_version;
    let mut m = Map::new();
    m.insert("product-model".into(), json!(settings.system.product_model));
    for key in [
        "base-version",
        "prog-version",
        "boot-version",
        "core-version",
        "rcvr-version",
        "lang-version",
        "gswave-version",
    ] {
        m.insert(key.into(), json!(v));
    }
    // Not a UCM field: lets operators see which pbxgate answers.
    m.insert("pbxgate-version".into(), json!(env!("CARGO_PKG_VERSION")));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_time_stays_within_the_up_time() {
        // 4 CPUs idle 40 s each over 50 s of up-time.
        assert_eq!(idle_since(1000.0, 1160.0, 4.0, 50), 40);
        // More idle than up-time (CPUs counted wrong, rounding): clamped.
        assert_eq!(idle_since(0.0, 1e9, 1.0, 50), 50);
        // Counters going backwards, nonsense values: zero.
        assert_eq!(idle_since(1000.0, 10.0, 4.0, 50), 0);
        assert_eq!(idle_since(0.0, f64::NAN, 4.0, 50), 0);
        assert_eq!(idle_since(0.0, f64::INFINITY, 0.0, 50), 0);
        assert_eq!(idle_since(0.0, 100.0, 0.0, 500), 100);
    }

    #[test]
    fn durations_do_not_wrap_at_a_day() {
        assert_eq!(format_duration(0), "00:00:00");
        assert_eq!(format_duration(42 * 60 + 53), "00:42:53");
        assert_eq!(format_duration(123 * 3600 + 4 * 60 + 5), "123:04:05");
    }

    #[test]
    fn system_time_is_in_the_pbx_zone() {
        let t: jiff::Timestamp = "2022-11-23T14:37:26Z".parse().unwrap();
        assert_eq!(
            format_system_time(t, &jiff::tz::TimeZone::UTC),
            "23-11-2022 14:37:26 UTC+00:00"
        );
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            format_system_time(t, &berlin),
            "23-11-2022 15:37:26 UTC+01:00"
        );
        let ny = jiff::tz::TimeZone::get("America/New_York").unwrap();
        assert_eq!(format_system_time(t, &ny), "23-11-2022 09:37:26 UTC-05:00");
        let kolkata = jiff::tz::TimeZone::get("Asia/Kolkata").unwrap();
        assert_eq!(
            format_system_time(t, &kolkata),
            "23-11-2022 20:07:26 UTC+05:30"
        );
    }
}
