//! The `poolwatch` binary: arguments, configuration (exit 64 when invalid), logging,
//! the runtime, signals, then [`poolwatch::app::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use poolwatch::config::{self, Config, FlagValues, LogFormat, EXIT_INVALID_CONFIG};
use tokio_util::sync::CancellationToken;

/// Catches PostgreSQL connection leaks: compares what connection pools report (pushed
/// by applications) with pg_stat_activity, and exports Prometheus metrics.
///
/// Configuration comes from a YAML file, then environment variables, then these flags
/// (each flag beats its variable). Every key is documented in docs/configuration.md.
/// The database is taken from --database-url, --database-url-file, or the libpq
/// variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE; with none of
/// them poolwatch runs push-only.
#[derive(Parser, Debug)]
#[command(name = "poolwatch", version, about, long_about, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// YAML configuration file [env: POOLWATCH_CONFIG]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Deploy mode: sidecar or central (default central) [env: POOLWATCH_MODE]
    #[arg(long, global = true, value_name = "MODE")]
    mode: Option<String>,
    /// Address for /metrics and health (default 0.0.0.0:19187) [env: POOLWATCH_LISTEN_ADDRESS]
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Address for pushes (default: --listen in central mode, 127.0.0.1:19188 in sidecar mode) [env: POOLWATCH_PUSH_LISTEN_ADDRESS]
    #[arg(long, global = true, value_name = "ADDR")]
    push_listen: Option<String>,
    /// PostgreSQL URL; prefer the file or the variable, a flag shows in `ps` [env: POOLWATCH_DATABASE_URL, DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// File holding the PostgreSQL URL, e.g. a mounted Secret [env: POOLWATCH_DATABASE_URL_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    database_url_file: Option<String>,
    /// TLS and basic-auth file in the exporter-toolkit format (docs/security.md) [env: POOLWATCH_WEB_CONFIG_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    web_config_file: Option<String>,
    /// Default instance label for pushes (default: $POD_NAME in sidecar mode) [env: POOLWATCH_INSTANCE]
    #[arg(long, global = true, value_name = "NAME")]
    instance: Option<String>,
    /// Log level or tracing filter, e.g. info or poolwatch=debug [env: POOLWATCH_LOG_LEVEL]
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json [env: POOLWATCH_LOG_FORMAT]
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
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

impl Cli {
    fn flags(&self) -> FlagValues {
        let mut v = FlagValues::new();
        let mut put = |path: &'static str, x: &Option<String>| {
            if let Some(x) = x {
                v.push((path, x.clone()));
            }
        };
        put("mode", &self.mode);
        put("listen_address", &self.listen);
        put("push_listen_address", &self.push_listen);
        put("database.url", &self.database_url);
        put("database.url_file", &self.database_url_file);
        put("instance", &self.instance);
        put("web_config_file", &self.web_config_file);
        put("log_level", &self.log_level);
        put("log_format", &self.log_format);
        v
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env_config = std::env::var_os("POOLWATCH_CONFIG").map(PathBuf::from);
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match config::load(Some(file), &cli.flags(), &config::process_env) {
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
    let file = cli.config.clone().or(env_config);
    let cfg = match config::load(file.as_deref(), &cli.flags(), &config::process_env) {
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
