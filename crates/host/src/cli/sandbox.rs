//! `tether sandbox`: serves the emulators on loopback until stopped, and prints what a
//! tether.toml needs to point at them.

use std::net::SocketAddr;

use tether_sandbox::{GhlConfig, RateLimitConfig};

use super::{CliError, Exit};

/// Ids, keys and credentials derive from this seed, so they are the same on every start and the
/// example configs can name them.
pub const SANDBOX_RNG_SEED: u64 = 7701;

pub struct SandboxArgs {
    pub seed_contacts: usize,
    pub ghl: SocketAddr,
    pub unlimited: bool,
}

pub fn run(args: SandboxArgs) -> Result<Exit, CliError> {
    super::block_on(serve(args))
}

async fn serve(args: SandboxArgs) -> Result<Exit, CliError> {
    let mut config = GhlConfig::seeded(SANDBOX_RNG_SEED, args.seed_contacts);
    if args.unlimited {
        config.rate_limit = RateLimitConfig::disabled();
    }
    let ghl = tether_sandbox::start(args.ghl, config)
        .await
        .map_err(|e| CliError::new(Exit::Unreachable, format!("cannot start the GHL emulator: {e}")))?;
    let credentials = &ghl.credentials;
    println!("tether sandbox: emulators running on loopback; Ctrl-C stops them.\n");
    println!("GoHighLevel  {}", ghl.base_url());
    println!("  location_id     {}", credentials.location_id);
    println!("  private_token   {}", credentials.pit);
    println!("  client_id       {}", credentials.client_id);
    println!("  client_secret   {}", credentials.client_secret);
    println!("  webhook key     {} (Ed25519, base64)", ghl.webhook_public_key.base64);
    println!("  seeded          {} contacts", args.seed_contacts);
    println!("\nMoloni, AroFlo and MLOFLO emulators are not part of this build yet.");
    wait_for_stop().await;
    ghl.shutdown().await;
    Ok(Exit::Ok)
}

async fn wait_for_stop() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
