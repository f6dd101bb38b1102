//! The `poolwatch` binary: arguments, configuration (exit 64 when invalid), logging,
//! the runtime, signals, then [`poolwatch::app::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use poolwatch::config::{self, Config, FlagValues, EXIT_INVALID_CONFIG};
use poolwatch::daemon::LogFormat;
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
    /// Print the stuck connections a running poolwatch found, as a table (application,
    /// pid, state, age, wait event, reasons, query fingerprint), with each application's
    /// verdict. Exit 0, or 1 when poolwatch cannot be asked.
    Connections {
        /// Only this application.
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask a running poolwatch for /healthz: exit 0 when it answers 200, 1 when not. For
    /// exec probes and Docker's HEALTHCHECK (the image has no curl).
    Healthcheck {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How the client subcommands reach the daemon.
#[derive(Args, Debug)]
struct ClientArgs {
    /// The running poolwatch: http[s]://[user:password@]host[:port] (default: the
    /// configuration's listen address, on loopback when it is a wildcard; https when the
    /// web configuration has TLS)
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// PEM bundle of the CAs that an https URL's certificate must chain to (default: the
    /// system's; a loopback address is not checked unless this is given)
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Do not check an https URL's certificate (the connection is still encrypted)
    #[arg(long)]
    insecure: bool,
}

const EXAMPLES: &str = "\
Examples:
  poolwatch                                          push-only, metrics on :19187
  PGHOST=127.0.0.1 PGUSER=postgres poolwatch         also watch the local PostgreSQL
  poolwatch --config /etc/poolwatch/poolwatch.yaml
  poolwatch check-config /etc/poolwatch/poolwatch.yaml
  kubectl exec deploy/orders-db-poolwatch -- /poolwatch connections --app billing
  poolwatch healthcheck --url https://prometheus:PASSWORD@127.0.0.1:19187
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
    if let Some(Command::Connections { client, .. } | Command::Healthcheck { client }) =
        &cli.command
    {
        return ask(&cli, client, &flags);
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

/// `connections` and `healthcheck`: one request to the running daemon.
fn ask(cli: &Cli, args: &ClientArgs, flags: &FlagValues) -> ExitCode {
    use poolwatch::cli::{self, Target, TlsTrust};
    let target = match &args.url {
        Some(url) => Target::parse(url),
        None => match config::load(cli.config.as_deref(), flags, &config::process_env) {
            Ok(cfg) => Ok(Target::of(
                cfg.daemon.listen_address,
                cfg.web.as_ref().is_some_and(|w| w.tls.is_some()),
            )),
            Err(e) => {
                eprintln!("poolwatch: {e}");
                eprintln!("poolwatch: cannot tell where poolwatch listens; give --url");
                return ExitCode::from(EXIT_INVALID_CONFIG as u8);
            }
        },
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("poolwatch: --url {e}");
            return ExitCode::from(EXIT_INVALID_CONFIG as u8);
        }
    };
    let trust = TlsTrust {
        ca_file: args.ca_file.clone(),
        insecure: args.insecure,
    };
    let path = match &cli.command {
        Some(Command::Connections { app: Some(app), .. }) => {
            let encoded: String = app
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("/api/v1/connections?app={encoded}")
        }
        Some(Command::Connections { app: None, .. }) => "/api/v1/connections".to_string(),
        _ => "/healthz".to_string(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("poolwatch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let answer = runtime.block_on(cli::get(&target, &trust, &path));
    let url = target.display(&path);
    match answer {
        Ok((200, body)) if path == "/healthz" => {
            println!("{url}: {}", String::from_utf8_lossy(&body).trim());
            ExitCode::SUCCESS
        }
        Ok((200, body)) => match serde_json::from_slice(&body) {
            Ok(json) => {
                print!("{}", cli::connections_table(&json));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("poolwatch: {url}: not the JSON of /api/v1/connections: {e}");
                ExitCode::FAILURE
            }
        },
        Ok((status, body)) => {
            let hint = if status == 401 {
                " (give the credentials in the URL: --url http[s]://USER:PASSWORD@HOST:PORT)"
            } else {
                ""
            };
            eprintln!(
                "poolwatch: {url} answered {status}{hint}: {}",
                String::from_utf8_lossy(&body).trim()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("poolwatch: {e}");
            ExitCode::FAILURE
        }
    }
}

fn summary(cfg: &Config) -> String {
    let db = match (&cfg.database, &cfg.databases) {
        (Some(d), _) => d.target(),
        (None, Some(list)) => {
            let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
            format!("{} in a list ({})", list.len(), names.join(", "))
        }
        (None, None) => "none (push-only)".into(),
    };
    format!(
        "mode={} listen={} push_listen={} instance={:?} database={}",
        cfg.daemon.mode.as_str(),
        cfg.daemon.listen_address,
        cfg.daemon.push_listen_address,
        cfg.daemon.instance,
        db
    )
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.daemon.log_level)
        .unwrap_or_else(|_| "info".into());
    // A log line that cannot be written is dropped. By default tracing-subscriber reports
    // that with eprintln!, which panics on the same closed stderr and takes down the task
    // that logged (the sampler, the signal handler): a log nobody reads must stop nothing.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match cfg.daemon.log_format {
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
