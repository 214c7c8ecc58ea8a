//! GHL calls under GHL's real limits: how close the rate governor gets to the 100-requests-per-10-s
//! budget, and how many 429s the emulator had to send. A load process, not a criterion bench:
//! 4 threads read through the real `tether_ghl` connector (so through its governor and the host's
//! HTTP service) against the emulator on loopback, for whole rate windows.
//!
//! Definitions (figures are counted at the server, by a layer around the emulator's router):
//! - t0 is the arrival of the first request at the emulator.
//! - The measured span is the whole windows that fit in the run's time bound
//!   (`TETHER_BENCH_GHL_SECONDS`, default 35 s): 35 s gives 3 windows, 30 s from t0. The threads
//!   stop sending at the end of the span; the few calls already waiting in the governor then go
//!   out, after the span, and are not counted as served (their 429s would be).
//! - Ideal: 100 requests per window, every window of the span: 10 requests/s. The first window's
//!   burst of 100 is part of the ideal, since a whole window allows exactly that.
//! - Achieved: 2xx responses to requests that arrived inside the span, over the span's length.
//! - `responses_429`: every 429 the emulator sent during the whole run.
//!
//! Writes `target/bench/ghl_rate.json` and prints it; `cargo xtask bench` reads the file. Under
//! `cargo test --benches` (no `--bench` argument) it only says it was skipped.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{json, Value};
use tether_abi::*;
use tether_core::config::HttpSettings;
use tether_core::store::Store;
use tether_core::vault::{SecretKey, Vault};
use tether_ghl::Ghl;
use tether_host::services::{HostContext, Redactor};
use tether_sandbox::{GhlConfig, GhlEmulator, RateLimitConfig};

const THREADS: usize = 4;
const DEFAULT_SECONDS: u64 = 35;
const PAGE: u32 = 20;

/// Every request the emulator answered: when it arrived and the status it got.
#[derive(Clone, Default)]
struct Served(Arc<Mutex<Vec<(Instant, u16)>>>);

impl Served {
    fn take(&self) -> Vec<(Instant, u16)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn count(State(served): State<Served>, request: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    served
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((arrived, status));
    response
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ghl_rate: skipped (a timed load run; use `cargo bench -p tether-e2e --bench ghl_rate`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ghl_rate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn seconds() -> Result<u64, String> {
    match std::env::var("TETHER_BENCH_GHL_SECONDS") {
        Err(_) => Ok(DEFAULT_SECONDS),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("TETHER_BENCH_GHL_SECONDS must be a whole number of seconds, not `{text}`")),
    }
}

fn run() -> Result<Value, String> {
    let limits = RateLimitConfig::default();
    let window = Duration::from_millis(limits.window_ms);
    let windows = seconds()? / window.as_secs().max(1);
    if windows == 0 {
        return Err(format!(
            "TETHER_BENCH_GHL_SECONDS must cover at least one rate window ({} s)",
            window.as_secs()
        ));
    }
    let span = window * windows as u32;

    // The emulator on its own runtime, as a remote server would be.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("emulator runtime: {e}"))?;
    let emu = GhlEmulator::new(GhlConfig {
        rate_limit: limits.clone(),
        ..GhlConfig::seeded(31, 60)
    })
    .map_err(|e| format!("emulator: {e}"))?;
    let served = Served::default();
    let app = emu
        .router()
        .layer(axum::middleware::from_fn_with_state(served.clone(), count));
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    let base = format!(
        "http://{}",
        listener.local_addr().map_err(|e| format!("local address: {e}"))?
    );
    server.spawn(async move { axum::serve(listener, app).await });

    // A real host context: runtime, vault on SQLite in a temp dir, default HTTP settings.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("host runtime: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let url = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let store = runtime.block_on(Store::open(&url)).map_err(|e| format!("store: {e}"))?;
    let key = SecretKey::load(None, &dir.path().join("tether.key")).map_err(|e| format!("key: {e}"))?;
    let vault = Arc::new(Vault::new(key, store));
    let context = HostContext::new(
        runtime.handle().clone(),
        HttpSettings::default(),
        vault,
        Arc::new(Redactor::new()),
    )
    .map_err(|e| format!("host context: {e}"))?;

    // Two connector instances on one location share the location's governor, as two flows would.
    let open = |instance: &str| -> Result<Ghl, String> {
        let Value::Object(config) = json!({
            "base_url": base,
            "location_id": emu.credentials().location_id,
            "private_token": emu.credentials().pit,
        }) else {
            return Err("config is not an object".into());
        };
        tether_ghl::open(
            context.for_instance(instance, None),
            OpenRequest {
                instance: instance.into(),
                config,
            },
        )
        .map_err(|e| format!("open {instance}: {e}"))
    };
    let connectors = [open("ghl-a")?, open("ghl-b")?];
    let contacts: Vec<String> = emu.state()["contacts"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["locationId"] == emu.credentials().location_id.as_str())
                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if contacts.is_empty() {
        return Err("the emulator seeded no contacts in the location".into());
    }

    let started = Instant::now();
    let deadline = started + span;
    let failed = AtomicBool::new(false);
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let ghl = &connectors[t % connectors.len()];
                let (contacts, failed) = (&contacts, &failed);
                s.spawn(move || drive(ghl, contacts, t, deadline, failed))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a load thread panicked".into())))
            .collect()
    });
    let wall = started.elapsed();
    results.into_iter().collect::<Result<Vec<()>, String>>()?;

    let log = served.take();
    let t0 = log
        .iter()
        .map(|(at, _)| *at)
        .min()
        .ok_or("the emulator saw no request")?;
    let end = t0 + span;
    let in_span = log
        .iter()
        .filter(|(at, status)| *at < end && (200..300).contains(status))
        .count();
    // 2xx per window of the span: shows where a shortfall happens.
    let per_window: Vec<usize> = (0..windows as u32)
        .map(|w| {
            let (from, to) = (t0 + window * w, t0 + window * (w + 1));
            log.iter()
                .filter(|(at, status)| (from..to).contains(at) && (200..300).contains(status))
                .count()
        })
        .collect();
    let responses_429 = log.iter().filter(|(_, status)| *status == 429).count();
    let other = log
        .iter()
        .filter(|(_, status)| !(200..300).contains(status) && *status != 429)
        .count();
    let span_s = span.as_secs_f64();
    let achieved = in_span as f64 / span_s;
    let ideal = f64::from(limits.burst_max) * windows as f64 / span_s;
    let report = json!({
        "achieved_per_s": achieved,
        "ideal_per_s": ideal,
        "ratio": achieved / ideal,
        "responses_429": responses_429,
        "seconds": span_s,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "served_in_span": in_span,
        "served_per_window": per_window,
        "windows": windows,
        "requests_total": log.len(),
        "other_errors": other,
        "wall_seconds": wall.as_secs_f64(),
        "threads": THREADS,
    });
    let out = tether_e2e::target_dir().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let file = out.join("ghl_rate.json");
    std::fs::write(&file, format!("{report:#}\n")).map_err(|e| format!("write {}: {e}", file.display()))?;
    server.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}

/// One load thread: alternates a `contacts` stream page (following the cursor, starting over at
/// the end) and a GET of one contact, until the deadline or another thread fails.
fn drive(ghl: &Ghl, contacts: &[String], thread: usize, deadline: Instant, failed: &AtomicBool) -> Result<(), String> {
    let mut cursor: Option<String> = None;
    let mut i = thread;
    while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
        let result = if i.is_multiple_of(2) {
            ghl.read(ReadRequest {
                stream: "contacts".into(),
                position: ReadPosition::Cursor { cursor: cursor.take() },
                limit: Some(PAGE),
                parent_id: None,
            })
            .map(|page| {
                cursor = if page.has_more { page.next } else { None };
            })
            .map_err(|e| format!("contacts page: {e}"))
        } else {
            ghl.client()
                .get_contact(&contacts[i / 2 % contacts.len()])
                .map(drop)
                .map_err(|e| format!("get contact: {e}"))
        };
        if let Err(e) = result {
            failed.store(true, Ordering::Relaxed);
            return Err(e);
        }
        i += 1;
    }
    Ok(())
}
