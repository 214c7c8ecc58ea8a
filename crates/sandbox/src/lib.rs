//! In-memory emulators of the third-party APIs Tether integrates with.
//!
//! Each emulator is a plain axum app served on a real socket, so clients are tested over HTTP
//! exactly as they talk to production. The GoHighLevel emulator lives in [`ghl`]; the pieces the
//! later Moloni/AroFlo/MLOFLO emulators reuse (fault injection, seeded randomness, id generation,
//! rate limiting, the connection loop, time formatting) are separate modules.

pub mod aroflo;
pub mod fake;
pub mod faults;
pub mod ghl;
pub mod ids;
pub mod mloflo;
pub mod moloni;
pub mod ratelimit;
pub mod serve;
pub mod timefmt;

pub use faults::FaultConfig;
pub use ghl::{start, GhlConfig, GhlCredentials, GhlEmulator, RunningGhl};
pub use ratelimit::RateLimitConfig;

/// Errors from starting an emulator. Request-time failures are HTTP responses, never this.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid emulator configuration: {0}")]
    Config(String),
}
