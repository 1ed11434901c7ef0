//! Test support: the settings of the project's Asterisk rig (`scripts/rig/up.sh`
//! writes them to `RIG_DIR/rig.env`). Tests that need the rig call [`rig`]:
//! without a rig they are skipped with a message, except under CI, where a
//! missing rig is a failure so that the real-Asterisk tests can never be
//! skipped silently.

use std::collections::HashMap;

pub const RIG_ENV: &str = "PBXGATE_RIG_ENV";
/// scripts/test's rig, never scripts/run's: the calls of tests must not land in the
/// database that scripts/run serves.
const DEFAULT_RIG_ENV: &str = "/var/tmp/pbxgate-rig-test/rig.env";

/// The rig's `KEY=VALUE` settings.
#[derive(Debug, Clone)]
pub struct Rig {
    vars: HashMap<String, String>,
}

impl Rig {
    pub fn get(&self, key: &str) -> &str {
        self.vars.get(key).map_or("", String::as_str)
    }

    pub fn ami_address(&self) -> String {
        format!("{}:{}", self.get("AMI_HOST"), self.get("AMI_PORT"))
    }

    /// An AMI client configuration for the rig's user and secret.
    pub fn ami_config(&self) -> crate::ami::AmiConfig {
        crate::ami::AmiConfig::new(
            self.ami_address(),
            self.get("AMI_USER"),
            self.get("AMI_SECRET"),
        )
    }

    /// `http://127.0.0.1:18088` (without `/ari`).
    pub fn http_url(&self) -> String {
        self.get("ARI_URL").trim_end_matches("/ari").to_owned()
    }
}

/// The running rig, or `None` (test skipped) outside CI.
#[allow(clippy::panic)]
pub fn rig() -> Option<Rig> {
    let path = std::env::var(RIG_ENV).unwrap_or_else(|_| DEFAULT_RIG_ENV.to_owned());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "the Asterisk rig is required under CI: cannot read {path}: {e} (run scripts/rig/up.sh)"
                );
            }
            record_skip(&format!(
                "no Asterisk rig ({path}: {e}); scripts/test starts one, or scripts/rig/up.sh and {RIG_ENV}"
            ));
            return None;
        }
    };
    let vars = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect();
    Some(Rig { vars })
}

/// The file `scripts/test` names to collect skipped tests (one line each:
/// reason, tab, test), so that it can report them after the run: libtest
/// shows a skipped test's message only with `--nocapture`.
pub const SKIPS_ENV: &str = "PBXGATE_TEST_SKIPS";

/// Tells the person running the tests (and `scripts/test`'s summary) that
/// the current test did not run all it could, and why.
pub fn record_skip(reason: &str) {
    use std::io::Write;
    eprintln!("skipped: {reason}");
    let Some(path) = std::env::var_os(SKIPS_ENV) else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("?")
        .replace(['\t', '\n'], " ");
    let line = format!("{}\t{test}\n", reason.replace(['\t', '\n'], " "));
    // One write of a short line to an O_APPEND file: lines of parallel tests
    // never interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}
