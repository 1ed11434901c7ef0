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
        Command::Serve { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            init_logging(&settings);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pbxgate: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
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
