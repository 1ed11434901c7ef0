//! The `pbxgate` command.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pbxgate::config::{self, Settings};
use tracing_subscriber::EnvFilter;

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
    /// Validate a configuration file and print a summary (secrets are never printed).
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(short, long, env = "PBXGATE_CONFIG", default_value = "pbxgate.toml")]
        config: PathBuf,
    },
}

fn init_logging(settings: &Settings) {
    // RUST_LOG, when set, wins over log.level.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if settings.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
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
        Command::ImportCsv { config, file } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            runtime.block_on(import_csv(settings, file))
        }
        Command::Serve { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            init_logging(&settings);
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let result = runtime.block_on(pbxgate::server::run(
                settings,
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
    println!(
        "  https_api_old       {} on {}",
        if s.old_api.enable {
            "enabled"
        } else {
            "disabled"
        },
        s.old_api.bind
    );
}

async fn import_csv(settings: Settings, file: PathBuf) -> ExitCode {
    let total = match std::fs::metadata(&file) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!("pbxgate: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let store = match store::Store::connect(
        settings.database_url.expose(),
        &store::ConnectOptions {
            max_connections: settings.database_max_connections,
            base_dir: settings.config_dir.clone(),
        },
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pbxgate: {e}");
            return ExitCode::FAILURE;
        }
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
    let result = pbxgate::ingest::csv::import(&file, 0, &store, &settings.timezone, progress).await;
    if tty {
        eprintln!();
    }
    store.close().await;
    match result {
        Ok(s) => {
            println!(
                "{}: imported {}, skipped as duplicate {}, skipped helper-channel CDRs {}, rejected {} ({:.1} s)",
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
