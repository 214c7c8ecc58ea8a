//! The command line (shared/design/CLI.md): arguments, configuration lookup, exit codes.

mod auth;
mod backfill;
mod dlq;
mod dry_run;
mod flows;
mod listing;
mod run;
mod sandbox;
pub(crate) mod status;
mod sync;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tether_core::config::{Config, ConfigError};

#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version,
    about = "Keeps GoHighLevel in sync with Moloni, AroFlo and MLOFLO."
)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, env = "TETHER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Overrides the config's `plugins_dir`.
    #[arg(long, global = true, env = "TETHER_PLUGINS_DIR", value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every plugin library in the plugins directory, and every file refused with its reason.
    Plugins {
        #[arg(long)]
        json: bool,
    },
    /// Every trigger and action of every connector, one row each.
    Catalog {
        #[arg(long)]
        json: bool,
    },
    /// Loads config, plugins and every flow; reports every problem with file:line:col.
    Check,
    /// Runs the fixture tests written in flow files; shows a diff for each failure.
    Test {
        /// Only this flow's tests.
        flow: Option<String>,
    },
    /// The long-running host: pollers, schedules, delivery workers, the webhook server.
    Run {
        /// Where the webhook server listens (port 0: any free port, printed at start).
        #[arg(long, default_value = "127.0.0.1:7700", value_name = "ADDR")]
        listen: SocketAddr,
        /// Delivery workers per flow.
        #[arg(long, default_value_t = 2, value_name = "N")]
        workers: usize,
        /// How often an idle worker looks for rows that came due, in milliseconds.
        #[arg(long, default_value_t = 1_000, value_name = "MS")]
        idle_ms: u64,
        /// The shortest life of a poll lease, in milliseconds: after a host dies, another takes
        /// over its flows' polling within max(this, 2 × the flow's interval).
        #[arg(long, default_value_t = 60_000, value_name = "MS")]
        poll_lease_ms: u64,
    },
    /// One pass of a flow now: poll its source, deliver what is due, then exit.
    Sync {
        flow: String,
        #[arg(long)]
        json: bool,
    },
    /// History in date windows, oldest first, with a progress bar and a report per window;
    /// running it again resumes after the last completed window.
    Backfill {
        flow: String,
        /// Start, `YYYY-MM-DD` (UTC) or RFC 3339.
        #[arg(long)]
        since: String,
        /// End (exclusive); default now.
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value = "7d")]
        window: String,
        #[arg(long)]
        json: bool,
    },
    /// Reads and maps real records, prints the writes, writes nothing.
    DryRun {
        flow: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Connects an account with OAuth once; tokens are stored encrypted and refreshed after.
    Auth {
        #[command(subcommand)]
        system: AuthSystem,
    },
    /// Flows (cursor, queue, dead letters) and connectors (token state), from the state store.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The dead-letter list: records whose delivery failed for good.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Serves faithful local emulators (GHL so far) until stopped, for rehearsing flows.
    Sandbox {
        /// Contacts to seed (with tasks and notes), the same on every start.
        #[arg(long, default_value_t = 25, value_name = "N")]
        seed: usize,
        /// Where the GHL emulator listens.
        #[arg(long, default_value = "127.0.0.1:7701", value_name = "ADDR")]
        ghl: SocketAddr,
        /// Where the GHL emulator sends its signed webhooks (repeatable; `tether run` listens on
        /// 127.0.0.1:7700 by default).
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:7700/webhooks/ghl")]
        ghl_webhook: Vec<String>,
        /// Where the Moloni emulator listens.
        #[arg(long, default_value = "127.0.0.1:7702", value_name = "ADDR")]
        moloni: SocketAddr,
        /// Where the AroFlo emulator listens.
        #[arg(long, default_value = "127.0.0.1:7703", value_name = "ADDR")]
        aroflo: SocketAddr,
        /// Where the MLOFLO emulator listens.
        #[arg(long, default_value = "127.0.0.1:7704", value_name = "ADDR")]
        mloflo: SocketAddr,
        /// Turns the emulators' rate limits off (GHL's real limits are on by default).
        #[arg(long)]
        unlimited: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthSystem {
    /// GoHighLevel: prints the consent URL and waits for the redirect on loopback.
    Ghl {
        /// The GHL connector instance, when the configuration has several.
        #[arg(long)]
        connector: Option<String>,
        /// How long to wait for the redirect.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
    },
}

/// The exit codes of CLI.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The work failed: some records failed, a check failed.
    Failed = 1,
    /// Bad usage or bad config.
    Usage = 2,
    /// A dependency (database, API) is unreachable.
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// An error for the user: one clear sentence, then details.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
    pub details: Vec<String>,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn config(errors: Vec<ConfigError>) -> Self {
        let count = errors.len();
        CliError {
            exit: Exit::Usage,
            message: format!(
                "the configuration has {count} problem{}",
                if count == 1 { "" } else { "s" }
            ),
            details: errors.iter().map(ToString::to_string).collect(),
        }
    }
}

impl Cli {
    /// Reads the config: the given file (which must exist), else `./tether.toml` if present,
    /// else defaults. `--plugins-dir` wins over the file.
    pub fn load_config(&self) -> Result<Config, CliError> {
        let explicit = self.config.is_some();
        let path = self.config.clone().unwrap_or_else(|| PathBuf::from("tether.toml"));
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&path, &text, &|var| std::env::var(var).ok()).map_err(CliError::config)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config::defaults(Path::new(".")),
            Err(e) => {
                return Err(CliError::new(
                    Exit::Usage,
                    format!("cannot read config file {}: {e}", path.display()),
                ))
            }
        };
        if let Some(dir) = &self.plugins_dir {
            config.plugins_dir = dir.clone();
        }
        Ok(config)
    }
}

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> Result<Exit, CliError> {
    match &cli.command {
        Command::Plugins { json } => listing::plugins(&cli.load_config()?, *json),
        Command::Catalog { json } => listing::catalog(&cli.load_config()?, *json),
        Command::Auth {
            system: AuthSystem::Ghl { connector, timeout },
        } => auth::ghl(
            &cli.load_config()?,
            &auth::AuthArgs {
                connector: connector.clone(),
                timeout: std::time::Duration::from_secs(*timeout),
            },
        ),
        Command::Check => flows::check(&cli.load_config()?),
        Command::Test { flow } => flows::test(&cli.load_config()?, flow.as_deref()),
        Command::Run {
            listen,
            workers,
            idle_ms,
            poll_lease_ms,
        } => run::run(
            &cli.load_config()?,
            &run::RunArgs {
                listen: *listen,
                workers: *workers,
                idle_ms: *idle_ms,
                poll_lease_ms: *poll_lease_ms,
            },
        ),
        Command::Sync { flow, json } => sync::run(&cli.load_config()?, flow, *json),
        Command::Backfill {
            flow,
            since,
            until,
            window,
            json,
        } => backfill::run(
            &cli.load_config()?,
            &backfill::BackfillArgs {
                flow,
                since,
                until: until.as_deref(),
                window,
                json: *json,
            },
        ),
        Command::DryRun { flow, limit, json } => dry_run::run(&cli.load_config()?, flow, *limit, *json),
        Command::Status { json } => status::run(&cli.load_config()?, *json),
        Command::Dlq { command } => dlq::run(&cli.load_config()?, command),
        Command::Sandbox {
            seed,
            ghl,
            ghl_webhook,
            moloni,
            aroflo,
            mloflo,
            unlimited,
        } => sandbox::run(sandbox::SandboxArgs {
            seed_contacts: *seed,
            ghl: *ghl,
            ghl_webhooks: ghl_webhook.clone(),
            moloni: *moloni,
            aroflo: *aroflo,
            mloflo: *mloflo,
            unlimited: *unlimited,
        }),
    }
}

/// Runs an async command body on a runtime made for it.
/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(super) async fn wait_for_stop() {
    stop_signal().await
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, listening from the moment it is called (not first
/// polled): call it before announcing readiness, so a signal right after the announcement is a
/// graceful stop rather than the default action, which kills the process. Needs a runtime.
pub(super) fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async move {
            match (terminate, interrupt) {
                (Some(mut terminate), Some(mut interrupt)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Some(mut terminate), None) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (None, _) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn block_on<T>(future: impl std::future::Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Runtime::new()
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot start the async runtime: {e}")))?
        .block_on(future)
}

async fn open_store(config: &Config) -> Result<tether_core::store::Store, CliError> {
    tether_core::store::Store::open(&config.state_url)
        .await
        .map_err(store_error)
}

fn store_error(error: tether_core::store::StoreError) -> CliError {
    let exit = if error.is_unreachable() {
        Exit::Unreachable
    } else {
        Exit::Failed
    };
    CliError::new(exit, error.to_string())
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot encode JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// The services every connector of this process gets: one HTTP client, the vault, and a
/// redactor that already knows every secret in the configuration.
fn host_context(
    config: &Config,
    registry: &crate::registry::Registry,
    runtime: &tokio::runtime::Runtime,
    store: tether_core::store::Store,
) -> Result<std::sync::Arc<crate::services::HostContext>, CliError> {
    use tether_core::vault::{SecretKey, Vault, KEY_ENV};
    let key = SecretKey::load(std::env::var(KEY_ENV).ok().as_deref(), &config.key_file)
        .map_err(|e| CliError::new(Exit::Usage, e.to_string()))?;
    let redactor = std::sync::Arc::new(crate::services::Redactor::new());
    for connector in config.connectors.values() {
        let secret_keys: Vec<String> = registry
            .manifest(&connector.plugin)
            .map(|m| m.config.iter().filter(|k| k.secret).map(|k| k.name.clone()).collect())
            .unwrap_or_default();
        redactor.learn_config(&connector.config, &secret_keys);
    }
    crate::services::HostContext::new(
        runtime.handle().clone(),
        config.http.clone(),
        std::sync::Arc::new(Vault::new(key, store)),
        redactor,
    )
    .map_err(|e| CliError::new(Exit::Failed, format!("cannot build the HTTP client: {e}")))
}
