//! The `tether` host: what runs connectors.
//!
//! * [`services`]: the one implementation of [`tether_abi::HostServices`]: HTTP with timeouts,
//!   retries, rate limits and redaction; logging into tracing; secrets through the vault.
//! * [`cli`]: the command line contract of shared/design/CLI.md.

pub mod cli;
pub mod services;
