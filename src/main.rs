//! The `poolwatch` binary: arguments, configuration (exit 64 when invalid), logging,
//! the runtime, signals, then [`poolwatch::app::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use poolwatch::config::{self, Config, FlagValues, LogFormat, EXIT_INVALID_CONFIG};
use poolwatch::keys::Kind;
use tokio_util::sync::CancellationToken;

/// Catches PostgreSQL connection leaks: compares what connection pools report (pushed
/// by applications) with pg_stat_activity, and exports Prometheus metrics.
///
/// Configuration comes from a YAML file, then environment variables, then these flags
/// (each flag beats its variable, shown as [env: …]). Every key is documented in
/// docs/configuration.md. The database is taken from --database-url,
/// --database-url-file, or the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD,
/// PGDATABASE, PGSSLMODE; with none of them poolwatch runs push-only.
#[derive(Parser, Debug)]
#[command(name = "poolwatch", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// YAML configuration file
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        env = "POOLWATCH_CONFIG"
    )]
    config: Option<PathBuf>,
    // Then one argument per configuration key that has a flag: see `command`.
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a configuration file (with the environment on top) and exit: 0 when
    /// valid, 64 with every problem listed when not.
    CheckConfig {
        /// The YAML file to check.
        file: PathBuf,
    },
}

const EXAMPLES: &str = "\
Examples:
  poolwatch                                          push-only, metrics on :19187
  PGHOST=127.0.0.1 PGUSER=postgres poolwatch         also watch the local PostgreSQL
  poolwatch --config /etc/poolwatch/poolwatch.yaml
  poolwatch check-config /etc/poolwatch/poolwatch.yaml
  curl -d '{\"open\":5,\"in_use\":2,\"idle\":3}' localhost:19187/api/v1/pools/billing/primary";

/// The command line: [`Cli`], and a flag for every configuration key that has one, which
/// clap also reads from the key's first environment variable (both shown in `--help`).
fn command() -> clap::Command {
    config::keys().fold(Cli::command(), |cmd, k| match k.flag {
        Some(f) => cmd.arg(
            Arg::new(k.path)
                .long(f.name.trim_start_matches("--"))
                .value_name(f.value_name)
                .help(f.help)
                .env(k.env[0])
                .hide_env_values(matches!(k.kind, Kind::Secret))
                .global(true),
        ),
        None => cmd,
    })
}

/// The configuration keys given on the command line. A value clap took from the key's
/// environment variable is left to the loader, which reads every key's variables and
/// names the variable in its messages.
fn flags(matches: &ArgMatches) -> FlagValues {
    config::keys()
        .filter(|k| k.flag.is_some())
        .filter(|k| matches.value_source(k.path) == Some(ValueSource::CommandLine))
        .filter_map(|k| Some((k.path, matches.get_one::<String>(k.path)?.clone())))
        .collect()
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let flags = flags(&matches);
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match config::load(Some(file), &flags, &config::process_env) {
            Ok(cfg) => {
                println!("{}: valid; {}", file.display(), summary(&cfg));
                for w in &cfg.warnings {
                    println!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(EXIT_INVALID_CONFIG as u8)
            }
        };
    }
    let cfg = match config::load(cli.config.as_deref(), &flags, &config::process_env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("poolwatch: {e}");
            return ExitCode::from(EXIT_INVALID_CONFIG as u8);
        }
    };
    init_logging(&cfg);
    tracing::info!(version = poolwatch::VERSION, "{}", summary(&cfg));
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listeners = match poolwatch::app::Listeners::bind(&cfg).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen");
                return ExitCode::FAILURE;
            }
        };
        let cancel = CancellationToken::new();
        tokio::spawn(on_signals(cancel.clone()));
        match poolwatch::app::run(cfg, listeners, cancel).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up metrics");
                ExitCode::FAILURE
            }
        }
    })
}

fn summary(cfg: &Config) -> String {
    let db = cfg
        .database
        .as_ref()
        .map(|d| d.target())
        .unwrap_or_else(|| "none (push-only)".into());
    format!(
        "mode={} listen={} push_listen={} instance={:?} database={}",
        cfg.mode.as_str(),
        cfg.listen_address,
        cfg.push_listen_address,
        cfg.instance,
        db
    )
}

fn init_logging(cfg: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cfg.log_level).unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// First SIGTERM or SIGINT: graceful shutdown. A second one: exit at once.
async fn on_signals(cancel: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop poolwatch with SIGKILL");
        return;
    };
    let name = tokio::select! { _ = term.recv() => "SIGTERM", _ = int.recv() => "SIGINT" };
    tracing::info!(signal = name, "signal received");
    cancel.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting without waiting");
    std::process::exit(1);
}
