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
    pub ghl_webhooks: Vec<String>,
    pub moloni: SocketAddr,
    pub aroflo: SocketAddr,
    pub mloflo: SocketAddr,
    pub unlimited: bool,
}

pub fn run(args: SandboxArgs) -> Result<Exit, CliError> {
    super::block_on(serve(args))
}

async fn serve(args: SandboxArgs) -> Result<Exit, CliError> {
    let mut config = GhlConfig::seeded(SANDBOX_RNG_SEED, args.seed_contacts);
    // The custom fields the example flows fill (config/flows/*.toml). Extra fields draw their ids
    // from their own seed stream, so the credentials in config/tether.toml stay the same.
    config.custom_fields = FLOW_CUSTOM_FIELDS
        .iter()
        .map(|name| tether_sandbox::ghl::CustomFieldSpec {
            name: (*name).to_owned(),
            data_type: "TEXT".into(),
            options: Vec::new(),
        })
        .collect();
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
    for url in args.ghl_webhooks.iter().filter(|u| !u.is_empty()) {
        ghl.emulator.register_webhook(url.clone());
        println!("  webhooks to     {url}");
    }
    let moloni = start_moloni(&args).await?;
    let aroflo = start_aroflo(&args).await?;
    let mloflo = start_mloflo(&args).await?;
    super::wait_for_stop().await;
    ghl.shutdown().await;
    moloni.shutdown().await;
    aroflo.shutdown().await;
    mloflo.shutdown().await;
    Ok(Exit::Ok)
}

/// GHL custom fields the example flows write, by name.
const FLOW_CUSTOM_FIELDS: &[&str] = &[
    "NIF",
    "Moloni Import Date",
    "MLOFLO ID",
    "Pipeline Stage",
    "Loan Amount",
    "Credit Score",
];

async fn start_moloni(args: &SandboxArgs) -> Result<tether_sandbox::moloni::RunningMoloni, CliError> {
    let mut config = tether_sandbox::moloni::MoloniConfig::seeded(SANDBOX_RNG_SEED, args.seed_contacts);
    if args.unlimited {
        config.rate_limit = RateLimitConfig::disabled();
    }
    let moloni = tether_sandbox::moloni::start(args.moloni, config)
        .await
        .map_err(|e| CliError::new(Exit::Unreachable, format!("cannot start the Moloni emulator: {e}")))?;
    let c = &moloni.credentials;
    println!("\nMoloni       {}", moloni.base_url());
    println!("  client_id       {}", c.client_id);
    println!("  client_secret   {}", c.client_secret);
    println!("  username        {}", c.username);
    println!("  password        {}", c.password);
    println!("  company_id      {}", c.company_id);
    println!("  payment_method  {} (default_payment_method_id)", c.payment_method_id);
    println!(
        "  seeded          {} customers, {} invoices",
        args.seed_contacts,
        args.seed_contacts / 2
    );
    Ok(moloni)
}

/// The AroFlo emulator: as many clients as GHL contacts, credentials from the fixed seed.
async fn start_aroflo(args: &SandboxArgs) -> Result<tether_sandbox::aroflo::RunningAroFlo, CliError> {
    let mut config = tether_sandbox::aroflo::AroFloConfig::seeded(SANDBOX_RNG_SEED, args.seed_contacts);
    if args.unlimited {
        config.rate_limit = tether_sandbox::aroflo::AroFloLimits::disabled();
    }
    let aroflo = tether_sandbox::aroflo::start(args.aroflo, config)
        .await
        .map_err(|e| CliError::new(Exit::Unreachable, format!("cannot start the AroFlo emulator: {e}")))?;
    let credentials = &aroflo.credentials;
    let (org_id, task_type_id) = aroflo.emulator.task_defaults();
    println!("\nAroFlo       {}", aroflo.base_url());
    println!("  uencoded        {}", credentials.uencoded);
    println!("  pencoded        {}", credentials.pencoded);
    println!("  org_encoded     {}", credentials.org_encoded);
    println!("  secret_key      {}", credentials.secret_key);
    println!("  default_org_id  {org_id}");
    println!("  task type id    {task_type_id}");
    println!("  seeded          {} clients", args.seed_contacts);
    Ok(aroflo)
}

/// The MLOFLO emulator, its credentials fixed by the sandbox seed (config/tether.toml names them).
async fn start_mloflo(args: &SandboxArgs) -> Result<tether_sandbox::mloflo::RunningMloflo, CliError> {
    let mut config = tether_sandbox::mloflo::MlofloConfig::seeded(SANDBOX_RNG_SEED, args.seed_contacts);
    if args.unlimited {
        config.rate_limit = RateLimitConfig::disabled();
    }
    let mloflo = tether_sandbox::mloflo::start(args.mloflo, config)
        .await
        .map_err(|e| CliError::new(Exit::Unreachable, format!("cannot start the MLOFLO emulator: {e}")))?;
    let credentials = &mloflo.credentials;
    println!("\nMLOFLO       {}", mloflo.base_url());
    println!("  api_key         {}", credentials.api_key);
    println!("  client_id       {}", credentials.client_id);
    println!("  client_secret   {}", credentials.client_secret);
    println!("  webhook_secret  {}", credentials.webhook_secret);
    println!("  seeded          {} borrowers and partners", args.seed_contacts);
    Ok(mloflo)
}
