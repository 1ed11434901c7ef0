//! The `pbxgate` command.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pbxgate::config::{self, Settings};
use tracing_subscriber::EnvFilter;

/// mimalloc gives freed memory back to the system; glibc's per-thread arenas
/// kept what an attack had made the server allocate (issue 15).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An HTTPS API server that gives an Asterisk PBX the API of a Grandstream UCM630X.
///
/// Billing, CRM and hotel software written for the UCM connects to pbxgate
/// unchanged. See docs/configuration.md for every configuration key.
#[derive(Parser)]
#[command(name = "pbxgate", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTPS API server (stops gracefully on SIGTERM or SIGINT).
    Serve {
        /// Configuration file (TOML). Keys can be overridden with
        /// PBXGATE_<SECTION>__<KEY> environment variables.
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
    },
    /// Backfill CDR history from an Asterisk CDR CSV (Master.csv or pbxgate.csv).
    /// CDRs already stored are skipped, so it is safe to run again.
    ImportCsv {
        /// Configuration file (TOML): the database to import into.
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
        /// The CSV file.
        file: PathBuf,
    },
    /// Recordings (the files recapi serves).
    Recordings {
        #[command(subcommand)]
        command: RecordingsCommand,
    },
    /// The latest call-control decisions: each held inbound call, how it ended
    /// (accepted, refused, timeout, hangup, backstop) and who decided.
    Decisions {
        /// Configuration file (TOML): the database.
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
        /// How many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// The admin web interface (/admin/ on the web port).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// CDR Real-Time Output: each receiver's backlog (with --receiver, its
    /// oldest queued records); with --from/--to, queue a time range again
    /// for a receiver (a billing system that lost its data asks for it again).
    Outbox {
        /// Configuration file (TOML): the database and [cdr_output].
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
        /// One receiver (a name of [[cdr_output.receivers]]).
        #[arg(long)]
        receiver: Option<String>,
        /// Replay: calls started at or after this time ("YYYY-MM-DD", "YYYY-MM-DD HH:MM:SS"
        /// in pbx.timezone, or RFC 3339 with an offset). Needs --receiver and --to.
        #[arg(long, requires_all = ["receiver", "to"])]
        from: Option<String>,
        /// Replay: calls started before this time (same forms as --from).
        #[arg(long, requires = "from")]
        to: Option<String>,
        /// Records listed with --receiver.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show which node owns each Asterisk (holds its ARI application), since
    /// when, the age of its lease, and the standby nodes (a shared
    /// PostgreSQL database; with SQLite there is one node). Exit status 1
    /// when the configured Asterisk has no owner.
    Cluster {
        /// Configuration file (TOML): the database and [cluster].
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file and print a summary (secrets are never printed).
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set the password of an admin account (created if new), read as one
    /// line from standard input; at least 8 characters. Ends the account's
    /// open admin sessions.
    SetPassword {
        /// Configuration file (TOML): the database.
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
        /// The admin account.
        #[arg(long, default_value = pbxgate::admin::DEFAULT_USERNAME)]
        username: String,
    },
}

#[derive(Subcommand)]
enum RecordingsCommand {
    /// Report CDRs whose recordfiles names a file that is missing, and files
    /// that no CDR names. Exit status: 0 when every recording a CDR names is
    /// there (files without a CDR are listed but do not fail the check), 1
    /// when some are missing, 2 when the check could not run.
    Check {
        /// Configuration file (TOML): the database and [recordings].
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
        /// The recapi directory the CDRs' recordfiles are relative to.
        #[arg(long, default_value = "monitor")]
        dir: String,
    },
}

fn init_logging(settings: &Settings) {
    use tracing_subscriber::prelude::*;
    // RUST_LOG, when set, wins over log.level.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // The admin Status page's latest requests, whatever the log shows.
    let registry = tracing_subscriber::registry().with(pbxgate::recent::layer());
    if settings.log.format == "json" {
        registry.with(fmt.json().with_filter(filter)).init();
    } else {
        registry.with(fmt.with_filter(filter)).init();
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("pbxgate: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// A one-shot command: the configuration loaded, then `f` on a runtime.
fn run_with<F: Future<Output = ExitCode>>(
    config: &Path,
    f: impl FnOnce(Settings) -> F,
) -> ExitCode {
    let settings = match load(config) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match runtime() {
        Ok(rt) => rt.block_on(f(settings)),
        Err(code) => code,
    }
}

fn load(path: &Path) -> Result<Settings, ExitCode> {
    config::load(path).map_err(|e| {
        eprintln!("pbxgate: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            print_summary(&config, &settings);
            ExitCode::SUCCESS
        }
        Command::Recordings {
            command: RecordingsCommand::Check { config, dir },
        } => run_with(&config, |settings| check_recordings(settings, dir)),
        Command::Decisions { config, limit } => {
            run_with(&config, |settings| print_decisions(settings, limit))
        }
        Command::Admin {
            command: AdminCommand::SetPassword { config, username },
        } => run_with(&config, |settings| set_admin_password(settings, username)),
        Command::Outbox {
            config,
            receiver,
            from,
            to,
            limit,
        } => run_with(&config, |settings| {
            outbox(settings, receiver, from.zip(to), limit)
        }),
        Command::Cluster { config, json } => run_with(&config, |settings| cluster(settings, json)),
        Command::ImportCsv { config, file } => {
            run_with(&config, |settings| import_csv(settings, file))
        }
        Command::Serve { config: path } => {
            let (config, settings) = match config::load_full(&path) {
                Ok(loaded) => loaded,
                Err(e) => {
                    eprintln!("pbxgate: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(&settings);
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            // SIGHUP re-reads this file (see docs/configuration.md).
            let reload = pbxgate::server::Reload { path, config };
            let result = runtime.block_on(pbxgate::server::run_with_reload(
                settings,
                Some(reload),
                pbxgate::server::shutdown_signal(),
                |_| {},
            ));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "pbxgate failed");
                    eprintln!("pbxgate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_summary(path: &std::path::Path, s: &Settings) {
    println!("configuration {} is valid", path.display());
    println!("  web.listen          https://{}/api", s.listen);
    match &s.tls {
        Some((c, _)) => println!("  tls                 {}", c.display()),
        None => println!(
            "  tls                 self-signed, kept in {}",
            s.generated_tls_paths().0.display()
        ),
    }
    println!("  data_dir            {}", s.data_dir.display());
    let db = s.database_url.expose();
    let backend = if db.starts_with("sqlite:") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!("  database            {backend}");
    println!("  pbx.timezone        {}", s.timezone_name);
    println!("  https_api.enable    {}", s.api_enabled);
    for u in &s.users {
        let ips = if u.permitted_ips_text.is_empty() {
            "all".to_owned()
        } else {
            u.permitted_ips_text.join(", ")
        };
        println!(
            "  api user            {} (password {}, call control {}, permitted IPs: {ips})",
            u.username,
            if u.password.is_empty() {
                "NOT SET: logins refused"
            } else {
                "set"
            },
            if u.call_control { "on" } else { "off" },
        );
    }
    print_asterisk(s);
    print_recordings(s);
    let old = &s.old_api;
    println!(
        "  https_api_old       {} on {}",
        if old.enable { "enabled" } else { "disabled" },
        old.bind
    );
    if old.enable {
        match &old.tls {
            Some((c, _)) => println!("  old api tls         {}", c.display()),
            None => println!(
                "  old api tls         self-signed, kept in {}",
                config::OldApiSettings::generated_tls_paths(&s.data_dir)
                    .0
                    .display()
            ),
        }
        println!(
            "  old api user        {} (password {}, permitted IPs: {}, pmsapi {})",
            old.username,
            if old.password.is_empty() {
                "NOT SET: requests refused"
            } else {
                "set"
            },
            if old.permitted_ips_text.is_empty() {
                "none: every address refused".to_owned()
            } else {
                old.permitted_ips_text.join(", ")
            },
            if old.enable_pmsapi { "on" } else { "off" }
        );
    }
}

/// `[asterisk]` as it will be used; secrets only as "set".
fn print_asterisk(s: &Settings) {
    let Some(a) = &s.asterisk else {
        println!("  asterisk            not connected (asterisk.ami_secret is not set)");
        return;
    };
    println!(
        "  asterisk ami        {}@{} (secret set)",
        a.ami_username, a.ami_address
    );
    match &a.ari {
        Some(ari) => println!(
            "  asterisk ari        {}@{} app {} (password set)",
            ari.username, ari.url, ari.app
        ),
        None => println!(
            "  asterisk ari        not used (asterisk.ari_password is not set): no call control, no music on hold"
        ),
    }
    match &a.cdr_csv {
        Some(p) => println!(
            "  asterisk cdr_csv    {}{}",
            p.display(),
            if p.is_file() { "" } else { " (not there yet)" }
        ),
        None => println!("  asterisk cdr_csv    none"),
    }
}

/// `[recordings]`: where each recapi directory is read.
fn print_recordings(s: &Settings) {
    match &s.recordings.store {
        config::RecordingStore::Local => println!(
            "  recordings          local, spool_dir {} ({} directories)",
            s.recordings_dir.display(),
            s.recordings.dirs.len()
        ),
        config::RecordingStore::S3(b) => println!(
            "  recordings          S3 bucket {} at {} region {} ({} directories, credentials {})",
            b.bucket,
            b.endpoint.as_deref().unwrap_or("AWS"),
            b.region,
            s.recordings.dirs.len(),
            if b.secret_access_key.is_empty() {
                "from AWS_* variables or the instance"
            } else {
                "set"
            }
        ),
    }
    for (dir, location) in &s.recordings.dirs {
        println!("    {:<17} {location}", dir.as_str());
    }
}

/// The database of a one-shot command; on failure the message is printed
/// and the exit code returned.
async fn open_store_or_exit(settings: &Settings) -> Result<store::Store, ExitCode> {
    open_store(settings).await.map_err(|e| {
        eprintln!("pbxgate: {e}");
        ExitCode::FAILURE
    })
}

async fn open_store(settings: &Settings) -> Result<store::Store, store::Error> {
    // The default database lives in web.data_dir, which `serve` creates; a
    // command run before the first start (scripts/run sets the admin
    // password first) creates it the same way, private.
    pbxgate::files::private_dir(&settings.data_dir).map_err(|source| store::Error::Directory {
        path: settings.data_dir.display().to_string(),
        source,
    })?;
    store::Store::connect(
        settings.database_url.expose(),
        &store::ConnectOptions {
            max_connections: settings.database_max_connections,
            base_dir: settings.config_dir.clone(),
        },
    )
    .await
}

async fn check_recordings(settings: Settings, dir: String) -> ExitCode {
    let cannot = |e: &dyn std::fmt::Display| {
        eprintln!("pbxgate: recordings check: {e}");
        ExitCode::from(2)
    };
    let recordings =
        match pbxgate::recordings::Recordings::new(&settings.recordings, settings.timezone.clone())
        {
            Ok(r) => r,
            Err(e) => return cannot(&e),
        };
    let Some(folder) = recordings.folder(&dir).map(str::to_owned) else {
        return cannot(&format!("recordings.dirs has no directory \"{dir}\""));
    };
    let store = match open_store(&settings).await {
        Ok(s) => s,
        Err(e) => return cannot(&e),
    };
    let result = pbxgate::recordings::check::check(&recordings, &store, &dir).await;
    store.close().await;
    let report = match result {
        Ok(r) => r,
        Err(e) => return cannot(&e),
    };
    println!("recordings check of directory {dir} ({folder})");
    println!(
        "  files: {}; CDRs with recordings: {} naming {} files",
        report.files, report.recorded_cdrs, report.names
    );
    println!(
        "  missing (named by a CDR, not found): {}",
        report.missing.len()
    );
    println!(
        "  unreferenced (no CDR names them): {}",
        report.unreferenced.len()
    );
    if !report.missing.is_empty() {
        println!("missing recordings (AcctId, start, file):");
        for m in &report.missing {
            println!("  {}\t{}\t{}", m.acctid, m.start, m.name);
        }
    }
    if !report.unreferenced.is_empty() {
        println!("files no CDR names:");
        for f in &report.unreferenced {
            println!("  {f}");
        }
    }
    if report.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn print_decisions(settings: Settings, limit: u32) -> ExitCode {
    use store::DecisionStore;
    let store = match open_store_or_exit(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let rows = store.recent_decisions(i64::from(limit)).await;
    store.close().await;
    let rows = match rows {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pbxgate: cannot read the decisions: {e}");
            return ExitCode::FAILURE;
        }
    };
    let time = |ms: i64| pbx_time(&settings.timezone, ms, "%Y-%m-%d %H:%M:%S%.3f");
    println!(
        "held at (pbx time)       channel                    caller           did          outcome   by          held ms  apply ms  detail"
    );
    for d in rows {
        println!(
            "{:<24} {:<26} {:<16} {:<12} {:<9} {:<11} {:>7}  {:>8.1}  {}",
            time(d.held_at_ms),
            d.channel,
            d.caller,
            d.did,
            d.outcome,
            d.decided_by,
            d.decided_at_ms - d.held_at_ms,
            d.apply_us as f64 / 1000.0,
            d.detail
        );
    }
    ExitCode::SUCCESS
}

async fn import_csv(settings: Settings, file: PathBuf) -> ExitCode {
    let total = match std::fs::metadata(&file) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!("pbxgate: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let store = match open_store_or_exit(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let progress = |done: u64| {
        if tty && total > 0 {
            let pct = done.saturating_mul(100) / total;
            let bar = "#".repeat((pct / 4) as usize);
            eprint!(
                "\rimporting [{bar:<25}] {pct:>3}%  {:.1} of {:.1} MB",
                done as f64 / 1e6,
                total as f64 / 1e6
            );
        }
    };
    // recordfiles_desc from the recordings, when they are where recapi finds them.
    let describe =
        pbxgate::recordings::Recordings::new(&settings.recordings, settings.timezone.clone())
            .ok()
            .and_then(|r| {
                r.folder("monitor").map(|folder| {
                    pbxgate::ingest::recording_desc::Describer::new(r.storage(), folder.to_owned())
                })
            });
    let result = pbxgate::ingest::csv::import(
        &file,
        0,
        &store,
        &settings.timezone,
        describe.as_ref(),
        // Imported history is not pushed: `pbxgate outbox --replay` does that.
        &pbxgate::outbox::Queue::default(),
        progress,
    )
    .await;
    if tty {
        eprintln!();
    }
    store.close().await;
    match result {
        Ok(s) => {
            println!(
                "{}: imported {}, skipped as duplicate {}, merged into another leg or helper-channel CDRs {}, rejected {} ({:.1} s)",
                file.display(),
                s.imported,
                s.duplicates,
                s.skipped,
                s.rejected.len(),
                started.elapsed().as_secs_f64()
            );
            for (line, reason) in s.rejected.iter().take(50) {
                println!("  line {line}: {reason}");
            }
            if s.rejected.len() > 50 {
                println!("  ... and {} more", s.rejected.len() - 50);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pbxgate: import failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one line from standard input: the new password, without its line end.
fn read_password_line() -> std::io::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let trimmed = line.strip_suffix('\n').unwrap_or(&line);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    Ok(trimmed.to_owned())
}

async fn set_admin_password(settings: Settings, username: String) -> ExitCode {
    use pbxgate::admin;
    use store::{AdminStore, AuditStore};
    if let Err(e) = admin::check_username(&username) {
        eprintln!("pbxgate: admin set-password: {e}");
        return ExitCode::from(2);
    }
    if std::io::stdin().is_terminal() {
        eprintln!("New password for admin account {username} (one line):");
    }
    let password = match read_password_line() {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "pbxgate: admin set-password: cannot read the password from standard input: {e}"
            );
            return ExitCode::from(2);
        }
    };
    if let Err(e) = admin::check_new_password(&password) {
        eprintln!("pbxgate: admin set-password: {e}; the password was not changed");
        return ExitCode::from(2);
    }
    let hash = match tokio::task::spawn_blocking(move || admin::hash_password(&password)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            eprintln!("pbxgate: admin set-password: {e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("pbxgate: admin set-password: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store = match open_store_or_exit(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = pbxgate::clock::now_ms();
    let result = async {
        let created = store.set_admin_password(&username, &hash, now).await?;
        let ended = store.delete_admin_sessions_of(&username).await?;
        store
            .record_audit(&store::AuditEvent {
                at_ms: now,
                event: store::AuditEventKind::AdminPassword,
                username: username.clone(),
                ip: String::new(),
                result: if created { "created" } else { "changed" }.into(),
                detail: "cli".into(),
            })
            .await?;
        Ok::<_, store::Error>((created, ended))
    }
    .await;
    store.close().await;
    match result {
        Ok((created, ended)) => {
            let what = if created { "created" } else { "changed" };
            println!(
                "admin account {username}: password {what}; {ended} open admin sessions ended"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pbxgate: admin set-password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Unix ms as a local time of the PBX (`format`: strftime), or the number
/// when out of range.
fn pbx_time(tz: &jiff::tz::TimeZone, ms: i64, format: &str) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| tz.to_datetime(t).strftime(format).to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// A time as `pbxgate outbox --from/--to` takes it, in Unix ms.
fn parse_time(text: &str, tz: &jiff::tz::TimeZone) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    let civil = text
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| {
            text.parse::<jiff::civil::Date>()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|_| {
            format!("{text:?} is not a time: use YYYY-MM-DD, \"YYYY-MM-DD HH:MM:SS\" or RFC 3339")
        })?;
    tz.to_ambiguous_zoned_datetime(civil)
        .compatible()
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| format!("{text:?}: {e}"))
}

async fn cluster(settings: Settings, as_json: bool) -> ExitCode {
    use store::ClusterStore;
    let store = match open_store_or_exit(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let pbx = settings.cluster.pbx.clone();
    let view = store
        .cluster_view(pbxgate::cluster::recent(settings.cluster.lease))
        .await;
    let sqlite = store.backend() == store::Backend::Sqlite;
    store.close().await;
    let view = match view {
        Ok(v) => v,
        Err(e) => {
            eprintln!("pbxgate: cannot read the cluster view: {e}");
            return ExitCode::FAILURE;
        }
    };
    let d = pbxgate::cluster::describe(&view, &pbx);
    let owned = !d["owner"].is_null();
    if as_json {
        println!("{d}");
    } else if sqlite {
        println!("embedded SQLite database: one node, which owns {pbx} while it runs");
        return ExitCode::SUCCESS;
    } else {
        let secs = |v: &serde_json::Value| v.as_i64().unwrap_or(0) as f64 / 1000.0;
        println!("Asterisk {pbx}");
        match d["owner"].as_object() {
            Some(o) => println!(
                "owner    {} (epoch {}) for {:.1} s, lease renewed {:.1} s ago, lapses in {:.1} s",
                o["node"].as_str().unwrap_or(""),
                o["epoch"],
                secs(&o["owner_for_ms"]),
                secs(&o["lease_age_ms"]),
                secs(&o["expires_in_ms"]),
            ),
            None => println!("owner    none (no node holds a lease: calls are not held)"),
        }
        for n in d["nodes"].as_array().into_iter().flatten() {
            println!(
                "node     {:<32} {:<8} seen {:.1} s ago",
                n["node"].as_str().unwrap_or(""),
                n["role"].as_str().unwrap_or(""),
                secs(&n["seen_ago_ms"]),
            );
        }
    }
    if owned || sqlite {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn outbox(
    settings: Settings,
    receiver: Option<String>,
    replay: Option<(String, String)>,
    limit: u32,
) -> ExitCode {
    let store = match open_store_or_exit(&settings).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    // The file's receivers and those added on the admin page.
    let output = match pbxgate::apiconfig::ApiConfig::load(&settings, &store).await {
        Ok(api) => api.cdr_output(),
        Err(e) => {
            store.close().await;
            eprintln!("pbxgate: cannot read the saved settings: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = outbox_command(&settings, &store, &output, receiver, replay, limit).await;
    store.close().await;
    result
}

async fn outbox_command(
    settings: &Settings,
    store: &store::Store,
    output: &pbxgate::config::cdr_output::CdrOutputSettings,
    receiver: Option<String>,
    replay: Option<(String, String)>,
    limit: u32,
) -> ExitCode {
    let configured = &output.receivers;
    if let Some(name) = &receiver
        && !configured.iter().any(|r| &r.name == name)
    {
        let names: Vec<&str> = configured.iter().map(|r| r.name.as_str()).collect();
        eprintln!(
            "pbxgate: no receiver named {name:?} in [cdr_output] or on the admin page (configured: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::from(2);
    }
    let range = match &replay {
        Some((from, to)) => {
            let parsed = parse_time(from, &settings.timezone)
                .and_then(|f| parse_time(to, &settings.timezone).map(|t| (f, t)));
            match parsed {
                Ok((f, t)) if f < t => Some((f, t)),
                Ok(_) => {
                    eprintln!("pbxgate: --from must be before --to");
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("pbxgate: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => None,
    };
    match outbox_report(settings, store, output, receiver.as_deref(), range, limit).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pbxgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn outbox_report(
    settings: &Settings,
    store: &store::Store,
    output: &pbxgate::config::cdr_output::CdrOutputSettings,
    receiver: Option<&str>,
    range: Option<(i64, i64)>,
    limit: u32,
) -> Result<(), store::Error> {
    use store::{AuditStore, OutboxStore};
    let time = |ms: i64| pbx_time(&settings.timezone, ms, "%Y-%m-%d %H:%M:%S");
    let now = pbxgate::clock::now_ms();
    if let (Some(name), Some((from, to))) = (receiver, range) {
        let queued = store.outbox_replay(name, from, to, now).await?;
        store
            .record_audit(&store::AuditEvent {
                at_ms: now,
                event: store::AuditEventKind::CdrOutput,
                username: String::new(),
                ip: String::new(),
                result: "replay".into(),
                detail: format!(
                    "receiver {name}: {queued} CDRs of calls started {} to {} queued again",
                    time(from),
                    time(to)
                ),
            })
            .await?;
        println!(
            "queued {queued} CDR(s) of calls started from {} to {} (pbx time) for {name}; \
             a running pbxgate delivers them behind its backlog",
            time(from),
            time(to)
        );
        return Ok(());
    }
    let backlogs = store.outbox_receivers().await?;
    let backlog_of = |name: &str| {
        backlogs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| *b)
            .unwrap_or_default()
    };
    println!(
        "CDR output {}",
        if output.enabled {
            "enabled"
        } else {
            "disabled"
        }
    );
    println!(
        "{:<20} {:<44} {:>10}  oldest queued (pbx time)",
        "receiver", "target", "backlog"
    );
    for r in &output.receivers {
        if receiver.is_some_and(|n| n != r.name) {
            continue;
        }
        let b = backlog_of(&r.name);
        println!(
            "{:<20} {:<44} {:>10}  {}",
            r.name,
            r.target(),
            b.items,
            b.oldest_ms.map(time).unwrap_or_else(|| "-".into())
        );
    }
    if receiver.is_none() {
        for (name, b) in &backlogs {
            if !settings
                .cdr_output
                .receivers
                .iter()
                .any(|r| &r.name == name)
            {
                println!(
                    "{:<20} {:<44} {:>10}  {}",
                    name,
                    "(no longer configured)",
                    b.items,
                    b.oldest_ms.map(time).unwrap_or_else(|| "-".into())
                );
            }
        }
    }
    if let Some(name) = receiver {
        let items = store.outbox_due(name, i64::MAX, limit).await?;
        println!();
        println!(
            "{:>12} {:>12} {:<20} {:>8}  next attempt",
            "queue id", "AcctId", "queued", "attempts"
        );
        for i in items {
            println!(
                "{:>12} {:>12} {:<20} {:>8}  {}",
                i.id,
                i.acctid,
                time(i.queued_ms),
                i.attempts,
                if i.next_ms > now {
                    time(i.next_ms)
                } else {
                    "now".into()
                }
            );
        }
    }
    Ok(())
}
