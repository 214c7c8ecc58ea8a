use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tether_host::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    match cli::run(&cli) {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {}", error.message);
            for detail in &error.details {
                eprintln!("  {detail}");
            }
            error.exit.into()
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    // Dependencies speak only when asked (-v or TETHER_LOG): an error's sentence must come first.
    let deps = if cli.verbose > 0 { level } else { "error" };
    let filter = EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{deps},tether={level},tether_host={level},tether_core={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
