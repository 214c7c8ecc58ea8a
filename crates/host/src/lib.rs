//! The `tether` host: what runs connectors.
//!
//! * [`services`]: the one implementation of [`tether_abi::HostServices`]: HTTP with timeouts,
//!   retries, rate limits and redaction; logging into tracing; secrets through the vault.
//! * [`registry`]: every connector type, built in (GHL) or plugin, behind one `open`.
//! * [`server`]: the HTTP server of `tether run` (webhook intake, health, metrics, the console).
//! * [`console`]: the dashboard pages of `tether run`.
//! * [`report`]: flow and connector state read from the store, for `tether status` and the
//!   console.
//! * [`telemetry`]: the Prometheus recorder behind `/metrics`.
//! * [`alerts`]: the alert checker of `tether run` (`[alerts]`: incidents sent once, resolved once).
//! * [`cli`]: the command line contract of shared/design/CLI.md.

pub mod alerts;
pub mod cli;
pub mod console;
pub mod registry;
pub mod report;
pub mod server;
pub mod services;
pub mod telemetry;
