//! What pbxgate needs from Asterisk beyond its AMI and ARI logins: checked
//! over AMI on every connection, and reported by the shipped dialplan while
//! calls run (`UserEvent(PbxgateRefused)`). Each finding is one warning that
//! names the cause and the fix: a stock Asterisk accepts pbxgate's
//! configuration files and still does silently less than it should.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asterisk::ami::Message;
use asterisk::pbx::Manager;
use tokio::sync::broadcast::error::RecvError;

/// The `UserEvent` name of `pbxgate-db` in `extensions_pbxgate.conf`.
pub const REFUSED_EVENT: &str = "PbxgateRefused";
/// Repeated dialplan reports are logged at most this often (one per call
/// would flood the log on a busy PBX); the count of the others follows.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Starts the checks; they end with the AMI client.
pub fn start(ami: &Arc<dyn Manager>, cdr_csv: Option<PathBuf>) {
    tokio::spawn(check_on_connect(ami.clone(), cdr_csv));
    tokio::spawn(watch_reports(ami.subscribe(), ami.state()));
}

async fn check_on_connect(ami: Arc<dyn Manager>, cdr_csv: Option<PathBuf>) {
    let mut state = ami.state();
    let mut was_up = false;
    loop {
        let up = state.borrow_and_update().is_up();
        if up && !was_up {
            check(&ami, cdr_csv.as_deref()).await;
        }
        was_up = up;
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// One pass of the connection checks; every finding is logged.
pub async fn check(ami: &Arc<dyn Manager>, cdr_csv: Option<&Path>) {
    let mut findings = 0u32;
    if loaded(ami, "func_db").await == Some(false) {
        findings += 1;
        tracing::warn!(
            "Asterisk's func_db module is not running: the hotel room settings (do-not-disturb, \
             class of service, check-out, guest names) are not applied to calls; \
             run `asterisk -rx \"module load func_db.so\"` and remove any noload => func_db.so \
             from modules.conf"
        );
    }
    if let Some(path) = cdr_csv {
        if let Some(why) = csv_writer_problem(ami, path).await {
            findings += 1;
            tracing::warn!(path = %path.display(), "CDR recovery from CSV: {why}");
        }
        if is_master_csv(path) && master_csv_in_utc(ami).await {
            findings += 1;
            tracing::warn!(
                path = %path.display(),
                "Asterisk writes Master.csv in UTC (cdr.conf [csv] usegmtime = yes): CDRs recovered \
                 from it would be off by the UTC offset of pbxgate's timezone; set usegmtime = no \
                 in cdr.conf's [csv] section and run `asterisk -rx \"module reload cdr_csv.so\"`, \
                 or point cdr_csv at cdr_custom_pbxgate.conf's pbxgate.csv (local time)"
            );
        }
    }
    tracing::info!(findings, "checked what pbxgate needs from Asterisk");
}

/// Why Asterisk does not write the CSV that `cdr_csv` names, as far as AMI
/// can tell (the module that writes it is not loaded); `None` when nothing
/// is known to be wrong.
pub async fn csv_writer_problem(ami: &Arc<dyn Manager>, path: &Path) -> Option<String> {
    let module = if is_master_csv(path) {
        "cdr_csv"
    } else {
        "cdr_custom"
    };
    if loaded(ami, module).await != Some(false) {
        return None;
    }
    Some(if module == "cdr_csv" {
        "Asterisk's cdr_csv module is not running, so Master.csv is not written and CSV recovery \
         does nothing; run `asterisk -rx \"module load cdr_csv.so\"`"
            .to_owned()
    } else {
        "Asterisk's cdr_custom module is not running, so Asterisk writes no such file and CSV \
         recovery does nothing. cdr_custom declines to load while cdr_custom.conf has no \
         [mappings] (as Debian ships it), and `core reload` does not load a module that declined: \
         put `#include cdr_custom_pbxgate.conf` in cdr_custom.conf, then run \
         `asterisk -rx \"module load cdr_custom.so\"` (docs/asterisk.md, CDR recovery)"
            .to_owned()
    })
}

fn is_master_csv(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.eq_ignore_ascii_case("Master.csv"))
}

/// Whether `module` is running; `None` when Asterisk does not tell (AMI
/// down, not permitted). Asked with the CLI's `module show like` over AMI
/// `Command`: AMI `ModuleCheck` answers Success for a module that declined
/// to load (it only looks the name up), which is the case that matters.
async fn loaded(ami: &Arc<dyn Manager>, module: &str) -> Option<bool> {
    let command = format!("module show like {module}");
    let r = ami
        .action("Command", &[("Command", command.as_str())])
        .await
        .ok()?;
    if !r.is_success() {
        return None;
    }
    Some(running_in(r.response.get_all("Output"), module))
}

/// Whether `module show like` lines list `module` as running (not
/// "Not Running"; absent: not loaded at all).
fn running_in<'a>(lines: impl Iterator<Item = &'a str>, module: &str) -> bool {
    let so = format!("{module}.so");
    lines
        .filter(|l| l.split_whitespace().next() == Some(so.as_str()))
        .any(|l| l.contains("Running") && !l.contains("Not Running"))
}

/// cdr.conf's `[csv] usegmtime`, read over AMI `GetConfig` (the AMI user's
/// `config` read class); false when it cannot be read.
async fn master_csv_in_utc(ami: &Arc<dyn Manager>) -> bool {
    let Ok(r) = ami
        .action(
            "GetConfig",
            &[("Filename", "cdr.conf"), ("Category", "csv")],
        )
        .await
    else {
        return false;
    };
    r.is_success() && usegmtime(&r.response)
}

/// `usegmtime` is true in a `GetConfig` answer (`Line-N-M: key=value`).
fn usegmtime(config: &Message) -> bool {
    config
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("Line-"))
        .filter_map(|(_, v)| v.split_once('='))
        .any(|(k, v)| k.trim().eq_ignore_ascii_case("usegmtime") && is_true(v.trim()))
}

/// Asterisk's `ast_true`.
fn is_true(v: &str) -> bool {
    ["yes", "true", "y", "t", "1", "on"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

/// Holds no `Ami` (whose clones keep the event channel open): it ends when
/// the connection task does.
async fn watch_reports(
    mut events: tokio::sync::broadcast::Receiver<Arc<Message>>,
    mut state: tokio::sync::watch::Receiver<asterisk::ConnState>,
) {
    let mut last: Option<Instant> = None;
    let mut unlogged = 0u64;
    loop {
        let m = tokio::select! {
            m = events.recv() => match m {
                Ok(m) => m,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        if !is_refusal(&m) {
            continue;
        }
        if last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            unlogged += 1;
            continue;
        }
        last = Some(Instant::now());
        log_refusal(&m, std::mem::take(&mut unlogged));
    }
}

fn is_refusal(m: &Arc<Message>) -> bool {
    m.event() == Some("UserEvent") && m.get("UserEvent") == Some(REFUSED_EVENT)
}

fn log_refusal(m: &Message, earlier: u64) {
    tracing::warn!(
        channel = m.get("Channel").unwrap_or(""),
        function = m.get("Function").unwrap_or(""),
        key = m.get("Key").unwrap_or(""),
        similar_since_last_warning = earlier,
        "Asterisk refused a function pbxgate's dialplan needs, so the hotel room settings \
         (do-not-disturb, class of service, check-out) were not applied to this call; \
         Asterisk's log says why (\"not registered\": load func_db.so; \"Dangerous function\": \
         a dialplan of your own reads DB() after Stasis, use DB_EXISTS as extensions_pbxgate.conf \
         does, or set live_dangerously = yes in asterisk.conf)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_csv_is_recognised_by_its_file_name_only() {
        assert!(is_master_csv(Path::new(
            "/var/log/asterisk/cdr-csv/Master.csv"
        )));
        assert!(is_master_csv(Path::new("master.CSV")));
        assert!(!is_master_csv(Path::new("/x/cdr-custom/pbxgate.csv")));
        assert!(!is_master_csv(Path::new("/x/Master.csv/other.csv")));
    }

    #[test]
    fn usegmtime_is_read_from_a_getconfig_answer() {
        let answer = |lines: &[&str]| {
            let mut m = Message::new();
            m.push("Response", "Success");
            m.push("Category-000000", "csv");
            for (i, l) in lines.iter().enumerate() {
                m.push(format!("Line-000000-{i:06}"), *l);
            }
            m
        };
        assert!(usegmtime(&answer(&["loguniqueid=yes", "usegmtime=yes"])));
        assert!(usegmtime(&answer(&["usegmtime = on"])));
        assert!(!usegmtime(&answer(&["usegmtime=no", "loguniqueid=yes"])));
        assert!(!usegmtime(&answer(&["loguniqueid=yes"])));
        // another key's value does not count
        assert!(!usegmtime(&answer(&["loguserfield=usegmtime=yes"])));
    }

    #[test]
    fn a_declined_module_is_not_running() {
        let header = "Module                         Description                              Use Count  Status      Support Level";
        let running = [
            header,
            "cdr_custom.so                  Customizable Comma Separated Values CDR  0          Running              core",
            "1 modules loaded",
        ];
        assert!(running_in(running.into_iter(), "cdr_custom"));
        // as Asterisk lists a module that declined (stock cdr_custom.conf)
        let declined = [
            header,
            "cdr_custom.so                  Customizable Comma Separated Values CDR  0          Not Running          core",
            "res_cdrel_custom.so            Combined logic for CDR/CEL Custom module 1          Running              core",
            "2 modules loaded",
        ];
        assert!(!running_in(declined.into_iter(), "cdr_custom"));
        assert!(running_in(declined.into_iter(), "res_cdrel_custom"));
        assert!(!running_in(
            [header, "0 modules loaded"].into_iter(),
            "func_db"
        ));
    }

    #[test]
    fn asterisk_truth_values() {
        for v in ["yes", "YES", "1", "on", "true", "t", "y"] {
            assert!(is_true(v), "{v}");
        }
        for v in ["no", "0", "off", "", "yess"] {
            assert!(!is_true(v), "{v}");
        }
    }
}
