use std::path::Path;

use crate::config::{ConfigError, Settings, load_str};

fn load(text: &str) -> Result<Settings, ConfigError> {
    load_with_env(text, &[])
}

fn load_with_env(text: &str, env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    load_str(
        text,
        "test.toml",
        Path::new("/etc/pbxgate"),
        env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
}

fn err(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let s = load("").unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:8089");
    assert!(s.tls.is_none());
    assert_eq!(s.data_dir, Path::new("/etc/pbxgate/data"));
    assert_eq!(s.database_url.expose(), "sqlite://data/pbxgate.db");
    assert_eq!(s.timezone_name, "UTC");
    assert!(s.api_enabled);
    assert_eq!(s.users.len(), 1);
    assert_eq!(s.users[0].username, "cdrapi");
    assert!(s.users[0].password.is_empty());
    assert!(!s.users[0].call_control);
    assert!(s.users[0].permitted_ips.is_empty());
    assert!(!s.old_api.enable);
    assert_eq!(s.old_api.bind.to_string(), "0.0.0.0:8443");
    assert_eq!(s.old_api.username, "cdrapi");
    assert!(s.old_api.permitted_ips.is_empty());
    assert_eq!(s.idle_timeout.as_secs(), 600);
    assert_eq!(s.lockout.max_failures, 5);
    assert_eq!(s.lockout.window.as_secs(), 600);
    assert_eq!(s.lockout.ban.as_secs(), 600);
}

#[test]
fn the_issue_example_is_accepted() {
    let s = load(
        r#"
[web]
listen = "0.0.0.0:8089"
tls_cert = ""
tls_key = ""
data_dir = "data"
[database]
url = "sqlite://data/pbxgate.db"
[pbx]
timezone = "Europe/Berlin"
[https_api]
enable = true
username = "cdrapi"
password = "s3cret"
call_control = false
permitted_ips = ["192.168.1.10/255.255.255.255", "10.0.0.0/8", "2001:db8::/32"]
[https_api_old]
enable = false
tls_bind_address = "0.0.0.0:8443"
tls_private_key = ""
tls_cert = ""
username = "cdrapi"
password = ""
permitted_ips = []
"#,
    )
    .unwrap();
    assert_eq!(s.users[0].permitted_ips.nets().len(), 3);
    assert_eq!(s.timezone_name, "Europe/Berlin");
}

#[test]
fn several_users_each_with_their_own_settings() {
    let s = load(
        r#"
[https_api]
password = "first"
[[https_api.users]]
username = "billing"
password = "second"
call_control = true
permitted_ips = ["127.0.0.2"]
"#,
    )
    .unwrap();
    assert_eq!(s.users.len(), 2);
    let b = s.user("billing").unwrap();
    assert!(b.call_control);
    assert!(b.password.matches(b"second"));
    assert!(s.user("cdrapi").unwrap().password.matches(b"first"));
    assert!(s.user("nobody").is_none());

    let dup = err("[[https_api.users]]\nusername = \"cdrapi\"\n");
    assert!(
        dup.contains("https_api.users[0].username") && dup.contains("twice"),
        "{dup}"
    );
}

#[test]
fn errors_name_the_key_and_the_problem() {
    for (text, key, problem) in [
        ("[web]\nlisten = \"nowhere\"", "web.listen", "not IP:port"),
        (
            "[web]\ntls_cert = \"/nonexistent.pem\"",
            "web.tls_key",
            "must be set",
        ),
        (
            "[web]\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"",
            "web.tls_cert",
            "not a readable file",
        ),
        (
            "[database]\nurl = \"mysql://x\"",
            "database.url",
            "unsupported",
        ),
        ("[pbx]\ntimezone = \"Mars/Olympus\"", "pbx.timezone", "IANA"),
        (
            "[session]\nwebsocket_idle_secs = 2",
            "session.websocket_idle_secs",
            "5 to 3600",
        ),
        (
            "[session]\nmax_challenges_per_address = 0",
            "session.max_challenges_per_address",
            "1 to 1000",
        ),
        (
            "[https_api]\npermitted_ips = [\"10.0.0.1\", \"10.0.0.0/255.0.255.0\"]",
            "https_api.permitted_ips[1]",
            "contiguous",
        ),
        (
            "[https_api]\nusername = \"a b\"",
            "https_api.username",
            "letters",
        ),
        (
            "[https_api]\npassword = \"x\"\npassword_file = \"/p\"",
            "https_api.password_file",
            "not both",
        ),
        (
            "[https_api_old]\ntls_bind_address = \"nowhere:1\"",
            "https_api_old.tls_bind_address",
            "IP[:port]",
        ),
        (
            "[https_api_old]\nenable = true\ntls_bind_address = \"0.0.0.0:8089\"",
            "https_api_old.tls_bind_address",
            "collides",
        ),
        (
            "[https_api_old]\npassword = \"a b\"",
            "https_api_old.password",
            "spaces",
        ),
        (
            "[https_api_old]\npermitted_ips = [\"x\"]",
            "https_api_old.permitted_ips[0]",
            "not an IP",
        ),
        (
            "[session]\nidle_timeout_secs = 0",
            "session.idle_timeout_secs",
            "at least 1",
        ),
        (
            "[login_restriction]\nwhitelist = [\"1.2.3.4/40\"]",
            "login_restriction.whitelist[0]",
            "0 to 32",
        ),
        ("[system]\nmac = \"zz\"", "system.mac", "C0:74"),
        ("[log]\nformat = \"xml\"", "log.format", "json"),
    ] {
        let msg = err(text);
        assert!(msg.contains(key), "{text}: {msg}");
        assert!(msg.contains(problem), "{text}: {msg}");
    }
}

#[test]
fn unknown_keys_and_wrong_types_are_refused() {
    let msg = err("[https_api]\npasword = \"x\"");
    assert!(msg.contains("pasword"), "{msg}");
    let msg = err("[https_api]\nenable = \"maybe\"");
    assert!(msg.contains("enable"), "{msg}");
    let msg = err("[nosuchsection]\na = 1");
    assert!(msg.contains("nosuchsection"), "{msg}");
    let msg = err("this is not toml");
    assert!(msg.contains("test.toml"), "{msg}");
}

#[test]
fn old_api_bind_address_forms() {
    use crate::config::validate::parse_bind_address;
    assert_eq!(
        parse_bind_address("0.0.0.0:8443").unwrap().to_string(),
        "0.0.0.0:8443"
    );
    assert_eq!(
        parse_bind_address("192.168.1.5").unwrap().to_string(),
        "192.168.1.5:8443"
    );
    assert_eq!(
        parse_bind_address("[::1]:9443").unwrap().to_string(),
        "[::1]:9443"
    );
    assert_eq!(parse_bind_address("[::]").unwrap().to_string(), "[::]:8443");
    assert!(parse_bind_address("1.2.3.4:0").is_err());
    assert!(parse_bind_address("1.2.3.4:70000").is_err());
}

#[test]
fn environment_overrides_keys_with_the_right_types() {
    let s = load_with_env(
        "[https_api]\npassword = \"from-file\"\n",
        &[
            ("PBXGATE_HTTPS_API__PASSWORD", "123"),
            ("PBXGATE_HTTPS_API__CALL_CONTROL", "yes"),
            ("PBXGATE_HTTPS_API__PERMITTED_IPS", "127.0.0.1, 10.0.0.0/8"),
            ("PBXGATE_SESSION__IDLE_TIMEOUT_SECS", "30"),
            ("PBXGATE_WEB__LISTEN", "127.0.0.1:9000"),
            ("PBXGATE_HTTPS_API__USERS__0__USERNAME", "second"),
            ("PBXGATE_HTTPS_API__USERS__0__PASSWORD", "pw2"),
            // Not overrides: no double underscore.
            ("PBXGATE_CONFIG", "/x.toml"),
            ("PBXGATE_TEST_POSTGRES_URL", "postgres://x"),
        ],
    )
    .unwrap();
    assert!(
        s.users[0].password.matches(b"123"),
        "a numeric password stays a string"
    );
    assert!(s.users[0].call_control);
    assert_eq!(s.users[0].permitted_ips.nets().len(), 2);
    assert_eq!(s.idle_timeout.as_secs(), 30);
    assert_eq!(s.listen.to_string(), "127.0.0.1:9000");
    assert!(s.user("second").unwrap().password.matches(b"pw2"));

    let e = load_with_env("", &[("PBXGATE_HTTPS_API__PASSWRD", "x")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("PBXGATE_HTTPS_API__PASSWRD") && e.contains("not a configuration key"),
        "{e}"
    );
    let e = load_with_env("", &[("PBXGATE_SESSION__IDLE_TIMEOUT_SECS", "soon")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an integer"), "{e}");
    let e = load_with_env("", &[("PBXGATE_HTTPS_API__USERS__3__USERNAME", "x")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("gap"), "{e}");
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let s = load(
        "[database]\nurl = \"postgres://u:dbpass-xyz@h/db\"\n[https_api]\npassword = \"apipass-xyz\"\n[https_api_old]\npassword = \"oldpass-xyz\"\n",
    )
    .unwrap();
    let dump = format!("{s:?}");
    for secret in ["dbpass-xyz", "apipass-xyz", "oldpass-xyz"] {
        assert!(!dump.contains(secret), "{secret} leaked into Debug");
    }
    let e = err("[database]\nurl = \"mysql://u:dbpass-xyz@h/db\"");
    assert!(!e.contains("dbpass-xyz"), "{e}");
}

#[test]
fn password_files_are_read_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.pw"), "file-secret\n").unwrap();
    let s = load_str(
        "[https_api]\npassword_file = \"api.pw\"\n",
        "t.toml",
        dir.path(),
        Vec::<(String, String)>::new(),
    )
    .unwrap();
    assert!(s.users[0].password.matches(b"file-secret"));
    let e = load_str(
        "[https_api]\npassword_file = \"missing.pw\"\n",
        "t.toml",
        dir.path(),
        Vec::<(String, String)>::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("https_api.password_file") && e.contains("missing.pw"),
        "{e}"
    );
}

#[test]
fn errors_never_quote_a_secret() {
    for text in [
        "[https_api]\npassword = hunter2xyz\n",
        "[https_api]\npassword = 4242424242\n",
        "[https_api_old]\npassword = [\"hunter2xyz\"]\n",
        "[[https_api.users]]\nusername = \"b\"\npassword = 4242424242\n",
    ] {
        let msg = err(text);
        assert!(
            !msg.contains("hunter2xyz") && !msg.contains("4242424242"),
            "{text}: {msg}"
        );
        assert!(
            msg.contains("password") || msg.contains("line 2"),
            "{text}: {msg}"
        );
    }
    let msg = err("[https_api]\npassword = 4242424242\n");
    assert!(
        msg.contains("https_api.password") && msg.contains("string"),
        "{msg}"
    );
}

#[test]
fn a_bad_environment_value_names_its_variable() {
    let e = load_with_env("", &[("PBXGATE_DATABASE__MAX_CONNECTIONS", "-1")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("PBXGATE_DATABASE__MAX_CONNECTIONS"), "{e}");
}

#[test]
fn many_users_from_the_environment_apply_in_numeric_order() {
    let vars: Vec<(String, String)> = (0..12)
        .flat_map(|i| {
            [
                (
                    format!("PBXGATE_HTTPS_API__USERS__{i}__USERNAME"),
                    format!("user{i}"),
                ),
                (
                    format!("PBXGATE_HTTPS_API__USERS__{i}__PASSWORD"),
                    format!("pw{i}"),
                ),
            ]
        })
        .collect();
    let s = load_str("", "t.toml", Path::new("/"), vars).unwrap();
    assert_eq!(s.users.len(), 13);
    assert!(s.user("user11").unwrap().password.matches(b"pw11"));
}

#[test]
fn login_restriction_errors_name_the_zero_key() {
    let msg = err("[login_restriction]\nwindow_secs = 0\n");
    assert!(msg.contains("login_restriction.window_secs"), "{msg}");
    let msg = err("[login_restriction]\nban_secs = 0\n");
    assert!(msg.contains("login_restriction.ban_secs"), "{msg}");
    assert!(load("[login_restriction]\nmax_failures = 0\nban_secs = 0\n").is_ok());
}

#[test]
fn the_example_config_is_valid() {
    let text = include_str!("../../../../../pbxgate.example.toml");
    load(text).unwrap_or_else(|e| panic!("pbxgate.example.toml: {e}"));
}

#[test]
fn cdrapi_settings_are_validated() {
    use ucm::cdrapi::encode::{CdrKey, Profile};
    let s = load("").unwrap();
    assert_eq!(s.cdrapi.output.profile, Profile::Ucm630x);
    assert_eq!(s.cdrapi.output.cdr_key, CdrKey::Session);
    assert!(!s.cdrapi.naive_utc);
    assert_eq!(s.cdrapi.export_page, 1000);
    let s = load("[cdrapi]\nprofile = \"ucm6100\"\ncdr_key = \"empty\"\nnaive_times = \"utc\"\n")
        .unwrap();
    assert_eq!(s.cdrapi.output.profile, Profile::Ucm6100);
    assert_eq!(s.cdrapi.output.cdr_key, CdrKey::Empty);
    assert!(s.cdrapi.naive_utc);
    assert!(err("[cdrapi]\nprofile = \"ucm6000\"\n").contains("`cdrapi.profile`"));
    assert!(err("[cdrapi]\ncdr_key = \"id\"\n").contains("`cdrapi.cdr_key`"));
    assert!(err("[cdrapi]\nnaive_times = \"local\"\n").contains("`cdrapi.naive_times`"));
    assert!(err("[cdrapi]\nexport_page = 0\n").contains("`cdrapi.export_page`"));
    assert!(err("[cdrapi]\nexport_page = 10001\n").contains("`cdrapi.export_page`"));
    assert!(err("[cdrapi]\nformat = \"json\"\n").contains("format"));
}

#[test]
fn recordings_directories_default_merge_and_refuse_unsafe_folders() {
    use crate::config::RecordingStore;
    let folder = |s: &Settings, name: &str| {
        s.recordings
            .dirs
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, f)| f.clone())
    };
    let s = load("").unwrap();
    assert!(matches!(s.recordings.store, RecordingStore::Local));
    let names: Vec<&str> = s.recordings.dirs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "conference",
            "emergency",
            "meetme",
            "monitor",
            "queue",
            "sca",
            "voicemail/default"
        ]
    );
    assert_eq!(
        folder(&s, "monitor").unwrap(),
        "/var/spool/asterisk/monitor"
    );
    assert_eq!(folder(&s, "queue").unwrap(), "/var/spool/asterisk/monitor");
    assert_eq!(
        folder(&s, "voicemail/default").unwrap(),
        "/var/spool/asterisk/voicemail/default"
    );

    // A table overlays the defaults; "" removes one; relative spool_dir
    // resolves against the config file's directory; absolute folders stay.
    let s = load(
        "[recordings]\nspool_dir = \"spool\"\n[recordings.dirs]\nqueue = \"queue\"\nsca = \"\"\nextra = \"/srv/rec/\"\n",
    )
    .unwrap();
    assert_eq!(folder(&s, "monitor").unwrap(), "/etc/pbxgate/spool/monitor");
    assert_eq!(folder(&s, "queue").unwrap(), "/etc/pbxgate/spool/queue");
    assert_eq!(folder(&s, "extra").unwrap(), "/srv/rec");
    assert!(folder(&s, "sca").is_none());

    // From the environment.
    let s = load_with_env("", &[("PBXGATE_RECORDINGS__DIRS__MONITOR", "/data/rec")]).unwrap();
    assert_eq!(folder(&s, "monitor").unwrap(), "/data/rec");
    assert_eq!(folder(&s, "meetme").unwrap(), "/var/spool/asterisk/meetme");

    for (text, key) in [
        (
            "[recordings.dirs]\nmonitor = \"../etc\"\n",
            "`recordings.dirs.\"monitor\"`",
        ),
        (
            "[recordings.dirs]\nmonitor = \"a/../../etc\"\n",
            "`recordings.dirs.\"monitor\"`",
        ),
        (
            "[recordings.dirs]\n\"../x\" = \"x\"\n",
            "`recordings.dirs.\"../x\"`",
        ),
        (
            "[recordings.dirs]\n\"a%2e\" = \"x\"\n",
            "`recordings.dirs.\"a%2e\"`",
        ),
        ("[recordings]\nstore = \"ftp\"\n", "`recordings.store`"),
        ("[recordings]\nspool_dir = \"\"\n", "`recordings.spool_dir`"),
    ] {
        let e = err(text);
        assert!(e.contains(key), "{text}: {e}");
    }
    assert!(err("[recordings.s3]\nbucket_name = \"x\"\n").contains("bucket_name"));
}

#[cfg(not(feature = "s3"))]
#[test]
fn s3_needs_the_feature() {
    let e = err("[recordings]\nstore = \"s3\"\n[recordings.s3]\nbucket = \"rec\"\n");
    assert!(e.contains("`recordings.store`") && e.contains("s3"), "{e}");
}

#[cfg(feature = "s3")]
#[test]
fn s3_settings_are_validated() {
    use crate::config::RecordingStore;
    let s = load(
        "[recordings]\nstore = \"s3\"\n[recordings.s3]\nbucket = \"pbx-rec\"\nendpoint = \"http://127.0.0.1:9000/\"\nprefix = \"/site1/\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK-secret\"\n",
    )
    .unwrap();
    let RecordingStore::S3(b) = &s.recordings.store else {
        panic!("{:?}", s.recordings.store)
    };
    assert_eq!(b.bucket, "pbx-rec");
    assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(b.region, "us-east-1");
    assert!(!format!("{s:?}").contains("SK-secret"));
    let monitor = s
        .recordings
        .dirs
        .iter()
        .find(|(n, _)| n.as_str() == "monitor");
    assert_eq!(monitor.unwrap().1, "site1/monitor");
    for (text, key) in [
        ("[recordings]\nstore = \"s3\"\n", "`recordings.s3.bucket`"),
        (
            "[recordings]\nstore = \"s3\"\n[recordings.s3]\nbucket = \"Bad_Name\"\n",
            "`recordings.s3.bucket`",
        ),
        (
            "[recordings]\nstore = \"s3\"\n[recordings.s3]\nbucket = \"b12\"\nendpoint = \"ftp://x\"\n",
            "`recordings.s3.endpoint`",
        ),
        (
            "[recordings]\nstore = \"s3\"\n[recordings.s3]\nbucket = \"b12\"\nprefix = \"a/../b\"\n",
            "`recordings.s3.prefix`",
        ),
        (
            "[recordings]\nstore = \"s3\"\n[recordings.s3]\nbucket = \"b12\"\naccess_key_id = \"AK\"\n",
            "`recordings.s3.access_key_id`",
        ),
        (
            "[recordings]\nstore = \"s3\"\n[recordings.s3]\nbucket = \"b12\"\n[recordings.dirs]\nmonitor = \"/abs\"\n",
            "`recordings.dirs.\"monitor\"`",
        ),
    ] {
        let e = err(text);
        assert!(e.contains(key), "{text}: {e}");
    }
    // A secret of the wrong type is refused without being shown.
    let e = err("[recordings.s3]\nsecret_access_key = 123456789\n");
    assert!(
        e.contains("secret_access_key") && !e.contains("123456789"),
        "{e}"
    );
}

#[test]
fn reload_diffs_name_keys_never_values() {
    use crate::config::{Config, changed_keys, changed_secrets};
    let parse = |text: &str| -> Config { toml::from_str(text).unwrap() };
    let a = parse("[https_api]\npassword = \"one\"\n[session]\nidle_timeout_secs = 600\n");
    let b = parse(
        "[https_api]\npassword = \"two\"\n[session]\nidle_timeout_secs = 300\n\
         [https_api_old]\nenable = true\npermitted_ips = [\"10.0.0.1\"]\n",
    );
    let keys = changed_keys(&a, &b);
    assert_eq!(
        keys,
        [
            "https_api_old.enable",
            "https_api_old.permitted_ips",
            "session.idle_timeout_secs"
        ]
    );
    assert!(changed_keys(&a, &a).is_empty());
    let (sa, sb) = (
        load("[https_api]\npassword = \"one\"\n").unwrap(),
        load("[https_api]\npassword = \"two\"\n[pms]\npassword = \"p\"\n").unwrap(),
    );
    assert_eq!(
        changed_secrets(&sa, &sb),
        ["https_api.password", "pms.password"]
    );
    assert!(changed_secrets(&sa, &sa).is_empty());
}

#[test]
fn an_enabled_old_api_certificate_is_checked_when_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
    let text = |enable: bool| {
        format!(
            "[https_api_old]\nenable = {enable}\ntls_cert = \"c.pem\"\ntls_private_key = \"k.pem\"\n"
        )
    };
    let load_in = |t: &str| crate::config::load_str(t, "t.toml", dir.path(), Vec::new());
    // Disabled: only existence is checked.
    assert!(load_in(&text(false)).is_ok());
    let e = load_in(&text(true)).unwrap_err().to_string();
    assert!(
        e.starts_with("config key `https_api_old.tls_cert`: the certificate in")
            && e.contains("expired on 2001-01-01"),
        "{e}"
    );
}

#[test]
fn pms_settings_defaults_and_errors() {
    let s = load("").unwrap();
    let p = &s.pms;
    assert_eq!(p.default_cos, 4);
    assert_eq!(p.local_regex, "^([2-9][0-9][0-9][0-9][0-9][0-9][0-9])$");
    assert_eq!(p.always_regex, "^(911|112)$");
    assert_eq!(
        p.wakeup_context, "from-internal",
        "follows [dialing] context"
    );
    assert_eq!(p.wakeup_ring.as_secs(), 30);
    assert_eq!(p.wakeup_attempts, 3);
    assert_eq!(p.wakeup_retry.as_secs(), 300);
    assert_eq!(p.wakeup_grace.as_secs(), 900);
    assert_eq!(p.mwi_context, "pbxgate");
    assert!(p.clear_voicemail);
    assert!(p.password.is_empty());
    let s = load(
        "[dialing]\ncontext = \"phones\"\n[pms]\nlocal_patterns = []\nwakeup_context = \"hotel\"\n",
    )
    .unwrap();
    assert_eq!(s.pms.local_regex, "");
    assert_eq!(s.pms.wakeup_context, "hotel");
    for (text, key) in [
        ("[pms]\ndefault_cos = 5\n", "pms.default_cos"),
        (
            "[pms]\nlocal_patterns = [\"911\", \"_9[\"]\n",
            "pms.local_patterns[1]",
        ),
        (
            "[pms]\nalways_allowed = [\"9 11\"]\n",
            "pms.always_allowed[0]",
        ),
        (
            "[pms]\nwakeup_prompt = \"../../etc/x\"\n",
            "pms.wakeup_prompt",
        ),
        ("[pms]\nwakeup_prompt = \"a,b\"\n", "pms.wakeup_prompt"),
        (
            "[pms]\nwakeup_caller_name = \"x\\\"y\"\n",
            "pms.wakeup_caller_name",
        ),
        ("[pms]\nwakeup_attempts = 0\n", "pms.wakeup_attempts"),
        ("[pms]\nwakeup_ring_secs = 1\n", "pms.wakeup_ring_secs"),
        ("[pms]\nmwi_context = \"a b\"\n", "pms.mwi_context"),
        ("[pms]\nusername = \"a b\"\n", "pms.username"),
        ("[pms]\npassword = 5\n", "pms.password"),
    ] {
        let msg = err(text);
        assert!(msg.contains(&format!("`{key}`")), "{text}: {msg}");
    }
}

#[test]
fn trunk_contexts_default_and_errors() {
    let s = load("").unwrap();
    assert_eq!(s.dialing.trunk_contexts, ["from-trunk"]);
    let s = load("[dialing]\ntrunk_contexts = [\"from-pstn\", \"from-carrier\"]\n").unwrap();
    assert_eq!(s.dialing.trunk_contexts, ["from-pstn", "from-carrier"]);
    let s = load("[dialing]\ntrunk_contexts = []\n").unwrap();
    assert!(s.dialing.trunk_contexts.is_empty());
    for bad in ["\"a b\"", "\"\"", "\"from-internal\"", "\"x;y\""] {
        let e = err(&format!("[dialing]\ntrunk_contexts = [\"ok\", {bad}]\n"));
        assert!(e.contains("dialing.trunk_contexts[1]"), "{bad}: {e}");
    }
}

#[test]
fn known_keys_come_from_the_parser() {
    let keys = crate::config::known_keys();
    let has = |s: &str, k: &str| keys.iter().any(|(a, b)| a == s && b == k);
    for (s, k) in [
        ("web", "listen"),
        ("database", "url"),
        ("https_api", "password"),
        ("https_api.users", "password"),
        ("https_api.users", "permitted_ips"),
        ("recordings", "dirs"),
        ("recordings.s3", "secret_access_key"),
        ("call_control", "timeout_secs"),
        ("pms", "wakeup_prompt"),
    ] {
        assert!(has(s, k), "{s}.{k} missing from {keys:?}");
    }
    // Sections and lists of sections are not keys themselves.
    assert!(
        !has("https_api", "users") && !has("recordings", "s3"),
        "{keys:?}"
    );
    assert!(keys.len() > 90, "{}", keys.len());
}

/// A configuration text setting `key` of `section` to the TOML `value`.
fn with_key(section: &str, key: &str, value: &str) -> String {
    if section == "https_api.users" || section == "websockify.users" {
        format!("[[{section}]]\nusername = \"b\"\n{key} = {value}\n")
    } else if section == "cdr_output.receivers" {
        format!("[[{section}]]\nname = \"b\"\n{key} = {value}\n")
    } else {
        format!("[{section}]\n{key} = {value}\n")
    }
}

/// Every key whose value is secret, from the parser's key list.
fn secret_keys() -> Vec<(String, String)> {
    crate::config::known_keys()
        .into_iter()
        .filter(|(s, k)| crate::config::is_secret_key(&format!("{s}.{k}")))
        .collect()
}

#[test]
fn every_secret_field_is_a_secret_key() {
    use crate::config::Config;
    use serde::Deserialize;
    // A field of type Secret reads a string and writes it back empty: find
    // them all that way, and check the name rule knows each.
    let mut found = Vec::new();
    for (section, key) in crate::config::known_keys() {
        let text = with_key(&section, &key, "\"zz-marker\"");
        let Ok(tree) = toml::from_str::<toml::Table>(&text) else {
            continue;
        };
        let Ok(config) = Config::deserialize(toml::Value::Table(tree)) else {
            continue;
        };
        let back = toml::to_string(&config).unwrap();
        if !back.contains("zz-marker") {
            found.push(format!("{section}.{key}"));
        }
    }
    for path in &found {
        assert!(
            crate::config::is_secret_key(path),
            "{path} holds a Secret but is_secret_key does not know it"
        );
    }
    for path in [
        "database.url",
        "https_api.password",
        "https_api.users.password",
        "websockify.users.password",
        "https_api_old.password",
        "asterisk.ami_secret",
        "asterisk.ari_password",
        "pms.password",
        "recordings.s3.secret_access_key",
        "cdr_output.receivers.password",
        "cdr_output.receivers.signing_secret",
    ] {
        assert!(
            found.iter().any(|f| f == path),
            "{path} not found in {found:?}"
        );
    }
    let all = secret_keys();
    assert_eq!(all.len(), found.len(), "{all:?} vs {found:?}");
}

#[test]
fn no_configuration_error_shows_a_secret() {
    const S: &str = "Zq7secretVal";
    let check = |what: &str, r: Result<Settings, ConfigError>| {
        let msg = match r {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            !msg.contains(S) && !msg.contains("987654321"),
            "{what}: {msg}"
        );
    };
    for (section, key) in secret_keys() {
        let name = format!("{section}.{key}");
        // Wrong types, as the file gives them.
        for value in [
            "987654321".to_owned(),
            "9876.54321".to_owned(),
            format!("[\"{S}\"]"),
            format!("{{ a = \"{S}\" }}"),
            "1987-06-05T04:03:02".to_owned(),
        ] {
            check(
                &format!("{name} = {value}"),
                load(&with_key(&section, &key, &value)),
            );
        }
        // Syntax errors on the secret's line.
        for value in [
            format!("\"{S}"),
            S.to_owned(),
            format!("\"{S}\\q\""),
            format!("\"{S}\" trailing"),
            format!("'''{S}"),
        ] {
            check(
                &format!("{name} = {value}"),
                load(&with_key(&section, &key, &value)),
            );
        }
        let dup = with_key(&section, &key, &format!("\"{S}\"")) + &format!("{key} = \"{S}\"\n");
        check(&format!("{name} twice"), load(&dup));
        // A valid secret beside an invalid key elsewhere, and a secret put
        // where another kind of value belongs.
        let text = with_key(&section, &key, &format!("\"{S}\""))
            + &format!("\n[database]\nmax_connections = \"{S}\"\n");
        check(&format!("{name} and a bad key"), load(&text));
        // From the environment, beside a bad value of another variable.
        let var = format!(
            "PBXGATE_{}__{}",
            section.to_ascii_uppercase().replace('.', "__"),
            key.to_ascii_uppercase()
        );
        let var = var.replace("__USERS__", "__USERS__0__");
        let mut env = vec![(var.as_str(), S), ("PBXGATE_PBX__TIMEZONE", S)];
        if section == "https_api.users" {
            env.push(("PBXGATE_HTTPS_API__USERS__0__USERNAME", "b"));
        }
        check(
            &format!("{var} and a bad timezone"),
            load_with_env("", &env),
        );
    }
    // The database URL, malformed in every way, from the file and the environment.
    for url in [
        format!("postgres://u:{S}@h:notaport/db"),
        format!("postgres://u:{S}@[::1/db"),
        format!("postgresql://u@h/db?password={S}&sslmode=bogus"),
        format!("postgres//u:{S}@h/db"),
        format!("mysql://u:{S}@h/db"),
        format!("u:{S}@h/db"),
        S.to_owned(),
    ] {
        check(&url, load(&format!("[database]\nurl = \"{url}\"\n")));
        check(&url, load_with_env("", &[("PBXGATE_DATABASE__URL", &url)]));
    }
    // Lists of users from the environment: TOML syntax and type errors.
    for raw in [
        format!("[{{ username = \"a\", password = \"{S}\""),
        format!("[{{ username = \"a\", password = {S} }}]"),
        format!("[\"{S}\"]"),
        S.to_owned(),
        format!("[{{ username = \"a b\", password = \"{S}\" }}]"),
    ] {
        check(
            &raw,
            load_with_env("", &[("PBXGATE_HTTPS_API__USERS", &raw)]),
        );
    }
    // Values of other keys that arrive in the place of a secret.
    for raw in [S, "[1, 2]"] {
        check(
            raw,
            load_with_env(
                "",
                &[
                    ("PBXGATE_WEB__MAX_BODY_BYTES", S),
                    ("PBXGATE_HTTPS_API__ENABLE", raw),
                ],
            ),
        );
    }
}

/// The keys of each section a text names: `key = ` lines, commented out or
/// not, under `[section]` / `[[section]]` headers (commented out or not).
fn keys_named_in_example(text: &str) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_owned();
            // `[recordings.dirs]` names the key `dirs` of `[recordings]`.
            if let Some((parent, key)) = section.rsplit_once('.') {
                out.insert((parent.to_owned(), key.to_owned()));
            }
        } else if let Some((key, _)) = line.split_once(" = ")
            && !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            out.insert((section.clone(), key.to_owned()));
        }
    }
    out
}

/// Whether docs/configuration.md documents `key` of `section`: named as
/// `` `key` `` below a heading that names `[section]`, before the next
/// heading that names another section.
fn documented(docs: &str, section: &str, key: &str) -> bool {
    let header = format!("[{section}]");
    // A table of free names (`[recordings.dirs]`) has its own heading.
    let own = format!("[{section}.{key}]");
    if docs.lines().any(|l| l.starts_with('#') && l.contains(&own)) {
        return true;
    }
    let mut inside = false;
    for line in docs.lines() {
        if line.starts_with('#') {
            if line.contains(&header) {
                inside = true;
                continue;
            }
            if line.contains("`[") {
                inside = false;
            }
        }
        if inside && line.contains(&format!("`{key}`")) {
            return true;
        }
    }
    false
}

#[test]
fn the_example_and_the_reference_name_every_key() {
    let example = include_str!("../../../../../pbxgate.example.toml");
    let docs = include_str!("../../../../../docs/configuration.md");
    let named = keys_named_in_example(example);
    let mut missing = Vec::new();
    for (section, key) in crate::config::known_keys() {
        if !named.contains(&(section.clone(), key.clone())) {
            missing.push(format!(
                "pbxgate.example.toml does not name `{key}` under [{section}]"
            ));
        }
        if !documented(docs, &section, &key) {
            missing.push(format!(
                "docs/configuration.md does not document `{key}` under a heading naming [{section}]"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn port_zero_is_refused_for_every_listen_key() {
    for (text, key) in [
        ("[web]\nlisten = \"127.0.0.1:0\"\n", "web.listen"),
        ("[web]\nlisten = \"[::]:0\"\n", "web.listen"),
        (
            "[https_api_old]\ntls_bind_address = \"0.0.0.0:0\"\n",
            "https_api_old.tls_bind_address",
        ),
        (
            "[https_api_old]\ntls_bind_address = \"[::1]:0\"\n",
            "https_api_old.tls_bind_address",
        ),
    ] {
        let msg = err(text);
        assert!(
            msg.contains(key) && msg.contains("1 to 65535"),
            "{text}: {msg}"
        );
    }
    let msg = load_with_env("", &[("PBXGATE_WEB__LISTEN", "0.0.0.0:0")])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("web.listen"), "{msg}");
}

#[test]
fn serde_messages_keep_the_kind_and_drop_the_value() {
    let msg = err("[database]\nmax_connections = \"many\"\n");
    assert!(
        msg.contains("invalid type: string, expected u32")
            && msg.contains("database.max_connections"),
        "{msg}"
    );
    assert!(!msg.contains("many"), "{msg}");
    let msg = err("[https_api]\nusers = [\"crm-user\"]\n");
    assert!(
        msg.contains("https_api.users") && !msg.contains("crm-user"),
        "{msg}"
    );
}

#[test]
fn listener_limits_have_defaults_and_named_errors() {
    let n = load("").unwrap().net;
    assert_eq!(n.handshake_timeout.as_secs(), 10);
    assert_eq!(n.idle_timeout.as_secs(), 30);
    assert_eq!(n.body_read_timeout.as_secs(), 30);
    assert_eq!(n.max_connections, 512);
    assert_eq!(n.body_buffer_bytes, 32 * 1024 * 1024);
    assert_eq!(n.h2_max_streams, 16);
    assert_eq!(n.password_checks, 2);
    assert_eq!(n.password_check_wait.as_secs(), 5);
    assert_eq!(n.hsts_max_age_secs, 31_536_000);
    for (key, value, range) in [
        ("handshake_timeout_secs", "0", "1 to 3600"),
        ("idle_timeout_secs", "3601", "1 to 3600"),
        ("body_read_timeout_secs", "0", "1 to 3600"),
        ("max_connections", "15", "16 to 1000000"),
        ("body_buffer_bytes", "1000", "1048576 to 4294967296"),
        ("h2_max_streams", "0", "1 to 1000"),
        ("password_checks", "0", "1 to 64"),
        ("password_check_wait_secs", "61", "0 to 60"),
        ("hsts_max_age_secs", "63072001", "0 to 63072000"),
    ] {
        let e = err(&format!("[web]\n{key} = {value}\n"));
        assert_eq!(e, format!("config key `web.{key}`: must be {range}"));
    }
}

#[test]
fn websocket_users_are_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ws.pw"), "from a file\n").unwrap();
    let text = "[[websockify.users]]\nusername = \"cti\"\npassword = \"secret-1\"\n\
                permitted_ips = [\"10.0.0.0/8\"]\nevents = [\"ActiveCallStatus\", \"ActiveCallStatus\"]\n\
                [[websockify.users]]\nusername = \"wall\"\npassword_file = \"ws.pw\"\n";
    let s = load_str(text, "t.toml", dir.path(), Vec::new()).unwrap();
    assert_eq!(s.websocket_users.len(), 2);
    let cti = &s.websocket_users[0];
    assert_eq!(cti.username, "cti");
    assert_eq!(cti.password.expose(), "secret-1");
    assert_eq!(cti.events, vec!["ActiveCallStatus"], "duplicates dropped");
    assert!(cti.may_receive("ActiveCallStatus") && !cti.may_receive("ExtensionStatus"));
    assert!(cti.permitted_ips.contains("10.1.2.3".parse().unwrap()));
    let wall = &s.websocket_users[1];
    assert_eq!(wall.password.expose(), "from a file");
    assert!(wall.events.is_empty() && wall.may_receive("ExtensionStatus"));
    // Nothing configured: no websocket users.
    assert!(load("").unwrap().websocket_users.is_empty());

    for (text, key, expect) in [
        (
            "[[websockify.users]]\npassword = \"x\"\n",
            "websockify.users[0].username",
            "1 to 64",
        ),
        (
            "[[websockify.users]]\nusername = \"a b\"\n",
            "websockify.users[0].username",
            "only letters",
        ),
        (
            "[[websockify.users]]\nusername = \"a\"\nevents = [\"ActiveCallStatus\", \"activecallstatus\"]\n",
            "websockify.users[0].events[1]",
            "not an event name",
        ),
        (
            "[[websockify.users]]\nusername = \"a\"\npermitted_ips = [\"10.0.0.1\", \"nope\"]\n",
            "websockify.users[0].permitted_ips[1]",
            "not an IP",
        ),
        (
            "[[websockify.users]]\nusername = \"a\"\npassword = \"x\"\npassword_file = \"/p\"\n",
            "websockify.users[0].password_file",
            "not both",
        ),
        (
            "[[websockify.users]]\nusername = \"a\"\n[[websockify.users]]\nusername = \"a\"\n",
            "websockify.users[1].username",
            "defined twice",
        ),
        // The default API user's name, and an extra API user's.
        (
            "[[websockify.users]]\nusername = \"cdrapi\"\n",
            "websockify.users[0].username",
            "name of an API user",
        ),
        (
            "[[https_api.users]]\nusername = \"crm\"\n[[websockify.users]]\nusername = \"crm\"\n",
            "websockify.users[0].username",
            "name of an API user",
        ),
        (
            "[[websockify.users]]\nusername = \"a\"\nnickname = \"b\"\n",
            "nickname",
            "unknown field",
        ),
    ] {
        let msg = err(text);
        assert!(msg.contains(key) && msg.contains(expect), "{text}: {msg}");
    }
    // A password given as a number is refused without quoting it.
    let msg = err("[[websockify.users]]\nusername = \"a\"\npassword = 123456\n");
    assert!(
        msg.contains("websockify.users[0].password") && !msg.contains("123456"),
        "{msg}"
    );
    assert!(crate::config::is_secret_key("websockify.users[0].password"));
    // The environment adds one, as for API users.
    let s = load_with_env(
        "",
        &[
            ("PBXGATE_WEBSOCKIFY__USERS__0__USERNAME", "envuser"),
            ("PBXGATE_WEBSOCKIFY__USERS__0__PASSWORD", "env secret"),
            ("PBXGATE_WEBSOCKIFY__USERS__0__EVENTS", "ExtensionStatus"),
        ],
    )
    .unwrap();
    assert_eq!(s.websocket_users[0].username, "envuser");
    assert_eq!(s.websocket_users[0].events, vec!["ExtensionStatus"]);
}

#[test]
fn cdr_output_receivers_are_validated_beside_the_key() {
    let ok = load(
        "[cdr_output]\nenable = true\n[[cdr_output.receivers]]\nname = \"billing\"\n\
         delivery = \"https\"\naddress = \"billing.example.net\"\nport = 8443\npath = \"/cdr?pbx=1\"\n\
         format = \"xml\"\nusername = \"pbx\"\npassword = \"s3cret-pass\"\n\
         signing_secret = \"0123456789abcdefXYZ\"\nonly_answered = true\ndirections = [\"Inbound\"]\n\
         max_age_days = 0\n[[cdr_output.receivers]]\nname = \"rating\"\naddress = \"10.0.0.7\"\nport = 9000\n",
    )
    .unwrap();
    let out = &ok.cdr_output;
    assert!(out.enabled);
    let names: Vec<&str> = out.active().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["billing", "rating"]);
    let b = &out.receivers[0];
    assert_eq!(b.target(), "https://billing.example.net:8443/cdr?pbx=1");
    assert_eq!(b.format, ucm::cdrapi::Format::Xml);
    assert_eq!(b.directions, ["inbound"]);
    assert!(b.max_age.is_none());
    assert_eq!(out.receivers[1].target(), "tcp://10.0.0.7:9000");
    assert_eq!(
        out.receivers[1].max_age,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    // Disabled: nothing is queued.
    let off = load("[[cdr_output.receivers]]\nname = \"b\"\naddress = \"h\"\nport = 1\n").unwrap();
    assert!(off.cdr_output.active().is_empty());

    let base = "[[cdr_output.receivers]]\nname = \"b\"\naddress = \"h.example\"\nport = 9000\n";
    for (extra, key, message) in [
        (
            "delivery = \"udp\"",
            "receivers[0].delivery",
            "must be \"tcp\"",
        ),
        (
            "format = \"yaml\"",
            "receivers[0].format",
            "must be \"json\"",
        ),
        ("batch = 0", "receivers[0].batch", "between 1 and 10000"),
        (
            "directions = [\"up\"]",
            "receivers[0].directions",
            "inbound",
        ),
        ("max_backlog = 0", "receivers[0].max_backlog", "between 1"),
        (
            "timeout_secs = 0",
            "receivers[0].timeout_secs",
            "between 1 and 300",
        ),
        (
            "password = \"x-secret-1\"",
            "receivers[0].username",
            "needed",
        ),
        (
            "delivery = \"https\"\nsigning_secret = \"short-one\"",
            "receivers[0].signing_secret",
            "16 characters",
        ),
        (
            "signing_secret = \"0123456789abcdefXYZ\"",
            "receivers[0].signing_secret",
            "HTTP deliveries only",
        ),
        (
            "delivery = \"https\"\nca_file = \"/nonexistent/ca.pem\"",
            "receivers[0].ca_file",
            "cannot read",
        ),
        ("ca_file = \"ca.pem\"", "receivers[0].ca_file", "https"),
        (
            "delivery = \"http\"\npath = \"cdr\"",
            "receivers[0].path",
            "start with '/'",
        ),
    ] {
        let e = err(&format!("{base}{extra}\n"));
        assert!(
            e.contains(&format!("cdr_output.{key}`")) && e.contains(message),
            "{extra}: {e}"
        );
        assert!(!e.contains("x-secret-1") && !e.contains("short-one"), "{e}");
    }
    for (text, key) in [
        (
            "[[cdr_output.receivers]]\nname = \"b\"\naddress = \"https://h\"\nport = 1\n",
            "receivers[0].address",
        ),
        (
            "[[cdr_output.receivers]]\nname = \"b\"\naddress = \"h\"\nport = 0\n",
            "receivers[0].port",
        ),
        (
            "[[cdr_output.receivers]]\nname = \"b c\"\naddress = \"h\"\nport = 1\n",
            "receivers[0].name",
        ),
        (
            "[[cdr_output.receivers]]\nname = \"b\"\naddress = \"h\"\nport = 1\n\
             [[cdr_output.receivers]]\nname = \"b\"\naddress = \"h\"\nport = 2\n",
            "receivers[1].name",
        ),
        ("[cdr_output]\nenable = true\n", "enable"),
        ("[cdr_output]\nlease_secs = 0\n", "lease_secs"),
    ] {
        let e = err(text);
        assert!(e.contains(&format!("cdr_output.{key}`")), "{text}: {e}");
    }
}
