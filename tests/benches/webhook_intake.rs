//! Webhook intake through the real `tether run` (release build) on SQLite: this process is the
//! load generator, posting GHL `ContactCreate` webhooks signed with the emulator's Ed25519 key to
//! `POST /webhooks/ghl` from `TETHER_BENCH_WEBHOOK_CONCURRENCY` connections (default 32). A load
//! process, not a criterion bench; `cargo xtask bench` reads its file.
//!
//! Figures: webhooks accepted (answered 200, so stored durably) per second of wall time, and the
//! p50/p99 latency of each request. Then the count check: every accepted webhook must be a queue
//! row of the flow in the store (`lost` must be 0). Delivery workers run meanwhile, writing the
//! contacts into a second GHL location, as they would in production.
//!
//! Writes `target/bench/webhook_intake.json` and prints it. Under `cargo test --benches` it only
//! says it was skipped.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_core::store::Store;
use tether_e2e::host::{run_command, RunningHost};
use tether_e2e::{cargo_build, target_dir, Profile};
use tether_sandbox::{GhlConfig, RateLimitConfig, RunningGhl};

const DEFAULT_WEBHOOKS: usize = 20_000;
const DEFAULT_CONCURRENCY: usize = 32;
const FLOW: &str = "live-contacts";

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("webhook_intake: skipped (a timed load run; use `cargo bench -p tether-e2e --bench webhook_intake`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(report) => {
            println!("{report:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("webhook_intake: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_number(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a whole number, not `{text}`")),
    }
}

fn run() -> Result<Value, String> {
    let total = env_number("TETHER_BENCH_WEBHOOKS", DEFAULT_WEBHOOKS)?;
    let concurrency = env_number("TETHER_BENCH_WEBHOOK_CONCURRENCY", DEFAULT_CONCURRENCY)?.max(1);
    let release = cargo_build(Profile::Release, &["tether"])?;
    let tether = release.join(format!("tether{}", std::env::consts::EXE_SUFFIX));

    // The emulator on its own runtime, as a remote server would be; the load on another.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("emulator runtime: {e}"))?;
    let addr = "127.0.0.1:0".parse().map_err(|e| format!("loopback address: {e}"))?;
    let ghl = server
        .block_on(tether_sandbox::start(
            addr,
            GhlConfig {
                rate_limit: RateLimitConfig::disabled(),
                ..GhlConfig::seeded(7, 0)
            },
        ))
        .map_err(|e| format!("GHL emulator: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let state = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    write_config(dir.path(), &ghl, &state)?;

    let host = start_host(&tether, dir.path())?;
    let url = format!("{}/webhooks/ghl", host.base);
    // Bodies and signatures made before the clock starts: the figure is the host's, not ours.
    // The shape of shared/reference/ghl's ContactCreate example.
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let location = ghl.credentials.location_id.clone();
    let requests: Vec<(String, String)> = (0..total)
        .map(|i| {
            let event = json!({
                "type": "ContactCreate", "locationId": location, "id": format!("bench-contact-{i}"),
                "firstName": "Bench", "lastName": format!("Contact {i}"), "email": format!("bench{i}@example.com"),
                "dateAdded": now, "tags": [], "timestamp": now, "webhookId": format!("bench-{i}"),
            });
            let body = event.to_string();
            let signature = ghl.emulator.sign_webhook(body.as_bytes());
            (body, signature)
        })
        .collect();

    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("load runtime: {e}"))?;
    let (elapsed, mut latencies, failures) = load.block_on(post_all(url, requests, concurrency))?;
    let accepted = latencies.len();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index.min(latencies.len() - 1)].as_secs_f64() * 1_000.0
    };
    let (p50, p99) = (percentile(0.50), percentile(0.99));
    drop(host);

    // The count check, from the store after the host is gone.
    let queued = load.block_on(async {
        let store = Store::open(&state).await.map_err(|e| format!("store: {e}"))?;
        let counts = store.flow_counts().await.map_err(|e| format!("store: {e}"))?;
        Ok::<i64, String>(
            counts
                .iter()
                .filter(|c| c.flow == FLOW)
                .map(|c| c.pending + c.done + c.dead)
                .sum(),
        )
    })?;
    let lost = accepted as i64 - queued;
    let report = json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "webhooks": total,
        "concurrency": concurrency,
        "accepted": accepted,
        "failed": failures,
        "seconds": elapsed.as_secs_f64(),
        "per_second": accepted as f64 / elapsed.as_secs_f64(),
        "p50_ms": p50,
        "p99_ms": p99,
        "queued_in_store": queued,
        "lost": lost,
    });
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let file = out.join("webhook_intake.json");
    std::fs::write(&file, format!("{report:#}\n")).map_err(|e| format!("write {}: {e}", file.display()))?;
    server.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}

/// Posts every request from `concurrency` tasks; the wall time, each accepted request's latency,
/// and how many were not answered 200 (with the first reason).
async fn post_all(
    url: String,
    requests: Vec<(String, String)>,
    concurrency: usize,
) -> Result<(Duration, Vec<Duration>, Vec<String>), String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .map_err(|e| format!("client: {e}"))?;
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, queue, url) = (client.clone(), Arc::clone(&queue), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some((body, signature)) = next else {
                    break;
                };
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-ghl-signature", signature)
                    .body(body)
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status() == 200 => {
                        // Read the body so the connection goes back to the pool.
                        let _ = response.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    Ok(response) => failures.push(format!(
                        "HTTP {}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    )),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        let (l, f) = task.await.map_err(|e| format!("load task: {e}"))?;
        latencies.extend(l);
        failures.extend(f);
    }
    Ok((started.elapsed(), latencies, failures))
}

/// GHL location A's contacts by webhook → location B, the way a live flow runs.
fn write_config(dir: &std::path::Path, ghl: &RunningGhl, state: &str) -> Result<(), String> {
    let c = &ghl.credentials;
    let config = format!(
        "plugins_dir = \"plugins\"\n[state]\nurl = \"{state}\"\n\n{}webhook_public_key = \"{}\"\n\n\
         [connectors.ghl_b]\nplugin = \"ghl\"\n[connectors.ghl_b.config]\nbase_url = \"{}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n",
        ghl.connector_toml("ghl"),
        ghl.webhook_public_key.base64,
        ghl.base_url(),
        c.other_location_id,
        c.other_pit
    );
    let flow = "[source]\nconnector = \"ghl\"\nstream = \"contacts\"\ntrigger = \"webhook\"\n\
                [target]\nconnector = \"ghl_b\"\naction = \"contact.upsert\"\n[match]\nkeys = [\"email\"]\n\
                [mapping.fields]\nemail = \"email\"\nfirstName = \"firstName\"\n";
    let write = |path: std::path::PathBuf, text: &str| {
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
    };
    for folder in ["plugins", "flows"] {
        std::fs::create_dir_all(dir.join(folder)).map_err(|e| format!("create {folder}: {e}"))?;
    }
    write(dir.join("tether.toml"), &config)?;
    write(dir.join(format!("flows/{FLOW}.toml")), flow)
}

fn start_host(tether: &std::path::Path, dir: &std::path::Path) -> Result<RunningHost, String> {
    let mut command = run_command(tether, &dir.join("tether.toml"), "127.0.0.1:0");
    command.env("RUST_LOG", "error").stderr(Stdio::null());
    RunningHost::spawn(command)
}
