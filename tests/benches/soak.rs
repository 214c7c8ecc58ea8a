//! The reliability suite (`cargo xtask soak [--minutes N]`): mixed traffic for N minutes
//! (default 10) against the emulators on loopback while they inject faults, with the host
//! killed (SIGKILL) and restarted every minute; then the faults stop, the host drains, and every
//! source record is accounted for.
//!
//! Traffic, all through the release `tether run` and real plugin libraries:
//! * polls: `moloni-customers` (the shipped flow, polled every 2 s) while customers are added and
//!   changed in the Moloni emulator; one in twenty-five new customers has a phone number no
//!   mapping can convert, and must end as a dead letter with that reason;
//! * webhooks: signed GHL `ContactCreate` webhooks for location A, copied into location B by a
//!   webhook-driven flow; the sender retries each until it is answered 200, as GHL does (the
//!   host is down for a moment at every restart);
//! * a backfill: `tether backfill moloni-customers` over a year in monthly windows, killed with
//!   the host and started again (it resumes) until it finishes.
//!
//! Faults: both emulators fail 10% of calls (5xx, dropped connections, 429s) and GHL answers
//! bursts of 429s every 20 s.
//!
//! Verdict: every Moloni customer is one GHL contact in location A (by email, else phone) or a
//! dead letter with a reason; every accepted webhook is one contact in location B; nothing is
//! still queued; the dashboard's per-flow counts equal the store's. Prints a summary and writes
//! `target/bench/soak.json`; exits 1 when any record is lost or duplicated or a count differs.
//!
//! Under `cargo test --benches` or a plain `cargo bench` it only says it was skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;
use tether_e2e::host::{run_command, RunningHost};
use tether_e2e::{cargo_build, install, target_dir, workspace_root, Profile};
use tether_sandbox::ghl::CustomFieldSpec;
use tether_sandbox::moloni::{self, MoloniConfig, RunningMoloni};
use tether_sandbox::{FaultConfig, GhlConfig, RateLimitConfig, RunningGhl};

const CUSTOMERS_FLOW: &str = "moloni-customers";
const WEBHOOK_FLOW: &str = "live-contacts";
/// Seeded Moloni customers, all of which the backfill lists.
const SEEDED: usize = 300;
/// How long the host may take to drain once the faults stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(240);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--soak") {
        println!("soak: skipped (a timed reliability run; use `cargo xtask soak`)");
        return ExitCode::SUCCESS;
    }
    let minutes = match args.iter().position(|a| a == "--minutes").map(|i| args.get(i + 1)) {
        None => 10.0,
        Some(Some(text)) => match text.parse::<f64>() {
            Ok(m) if m > 0.0 => m,
            _ => {
                eprintln!("soak: --minutes takes a positive number, not `{text}`");
                return ExitCode::FAILURE;
            }
        },
        Some(None) => {
            eprintln!("soak: --minutes takes a number");
            return ExitCode::FAILURE;
        }
    };
    match run(Duration::from_secs_f64(minutes * 60.0)) {
        Ok(summary) => {
            println!("{summary:#}");
            if summary["passed"] == true {
                ExitCode::SUCCESS
            } else {
                eprintln!("soak: FAILED: {}", summary["problems"]);
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the traffic threads count.
#[derive(Default)]
struct Traffic {
    /// Sequence number and email of each webhook answered 200.
    webhooks_accepted: Mutex<Vec<(u64, String)>>,
    webhook_attempts: AtomicU64,
    customers_added: AtomicU64,
    customers_changed: AtomicU64,
    bad_customers: Mutex<Vec<u64>>,
    bursts: AtomicU64,
}

fn run(duration: Duration) -> Result<Value, String> {
    let release = cargo_build(Profile::Release, &["tether", "tether-moloni"])?;
    let tether = release.join(format!("tether{}", std::env::consts::EXE_SUFFIX));
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    install(&release, &["tether-moloni"], &dir.path().join("plugins"))?;

    // The emulators on their own runtime, as remote servers would be.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| format!("emulator runtime: {e}"))?;
    let (ghl, moloni) = server.block_on(emulators())?;
    let state = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    let config = write_config(dir.path(), &ghl, &moloni, &state)?;
    // A fixed port, so webhook senders find the host again after each restart.
    let listen = free_port()?;
    let faults = FaultConfig {
        error_rate: 0.05,
        drop_rate: 0.02,
        rate_limit_rate: 0.03,
        ..FaultConfig::default()
    };
    ghl.set_faults(faults.clone()).map_err(|e| format!("GHL faults: {e}"))?;
    moloni.set_faults(faults).map_err(|e| format!("Moloni faults: {e}"))?;

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = Arc::new(Traffic::default());
    let mut host = start_host(&tether, &config, &listen)?;
    let mut backfill = Some(start_backfill(&tether, &config)?);
    let threads = vec![
        std::thread::spawn({
            let (traffic, stop, ghl) = (Arc::clone(&traffic), Arc::clone(&stop), clone_ghl(&ghl));
            let url = format!("http://{listen}/webhooks/ghl");
            move || send_webhooks(&url, &ghl, &traffic, &stop)
        }),
        std::thread::spawn({
            let (traffic, stop) = (Arc::clone(&traffic), Arc::clone(&stop));
            let moloni = moloni.emulator.clone();
            let payment = moloni_payment(&moloni);
            move || change_customers(&moloni, payment, &traffic, &stop)
        }),
        std::thread::spawn({
            let (traffic, stop, ghl) = (Arc::clone(&traffic), Arc::clone(&stop), clone_ghl(&ghl));
            move || burst_429s(&ghl, &traffic, &stop)
        }),
    ];

    let mut restarts = 0;
    let mut backfill_runs = 1;
    let mut next_kill = Instant::now() + Duration::from_secs(60);
    while started.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(250));
        if let Some(child) = backfill.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                backfill = None;
                if !status.success() {
                    // Faults can end a backfill early (a window's read failed for good): resume it.
                    backfill = Some(start_backfill(&tether, &config)?);
                    backfill_runs += 1;
                }
            }
        }
        if Instant::now() >= next_kill {
            let _ = host.child.kill();
            let _ = host.child.wait();
            if let Some(mut child) = backfill.take() {
                let _ = child.kill();
                let _ = child.wait();
                backfill = Some(start_backfill(&tether, &config)?);
                backfill_runs += 1;
            }
            host = start_host(&tether, &config, &listen)?;
            restarts += 1;
            next_kill += Duration::from_secs(60);
        }
    }
    let traffic_seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().map_err(|_| "a traffic thread panicked".to_owned())?;
    }

    // Faults off; the backfill and the host run to the end.
    ghl.set_faults(FaultConfig::default())
        .map_err(|e| format!("GHL faults: {e}"))?;
    moloni
        .set_faults(FaultConfig::default())
        .map_err(|e| format!("Moloni faults: {e}"))?;
    let drain_started = Instant::now();
    let mut backfill_exit = None;
    while let Some(mut child) = backfill.take() {
        let status = child.wait().map_err(|e| format!("backfill: {e}"))?;
        if status.success() || drain_started.elapsed() > DRAIN_LIMIT {
            backfill_exit = status.code();
        } else {
            backfill = Some(start_backfill(&tether, &config)?);
            backfill_runs += 1;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let pool = runtime
        .block_on(sqlx::SqlitePool::connect(&state))
        .map_err(|e| format!("state store: {e}"))?;
    // Drained: nothing pending, and two poll intervals later still nothing (the last changes
    // were read after the traffic stopped).
    let mut quiet_since: Option<Instant> = None;
    loop {
        let pending = runtime.block_on(count(
            &pool,
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
            &[],
        ))?;
        if pending == 0 {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                break;
            }
        } else {
            quiet_since = None;
        }
        if drain_started.elapsed() > DRAIN_LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();

    // The dashboard, read while the host still runs, against the store.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let midnight_ms = now_ms - now_ms.rem_euclid(86_400_000);
    let overview = reqwest::blocking::get(format!("{}/", host.base))
        .and_then(|r| r.text())
        .map_err(|e| format!("dashboard: {e}"))?;
    let dashboard = overview_counts(&overview);
    drop(host);

    let mut problems = Vec::new();
    let mut dashboard_report = BTreeMap::new();
    for flow in [CUSTOMERS_FLOW, WEBHOOK_FLOW] {
        let store = json!({
            "queued": runtime.block_on(count(&pool, "SELECT COUNT(*) FROM outbox WHERE flow = ? AND status = 'pending'", &[flow]))?,
            "dead_letters": runtime.block_on(count(&pool, "SELECT COUNT(*) FROM outbox WHERE flow = ? AND status = 'dead'", &[flow]))?,
            "written_today": runtime.block_on(count(
                &pool,
                "SELECT COUNT(*) FROM events WHERE flow = ? AND kind = 'written' AND at >= CAST(? AS INTEGER)",
                &[flow, &midnight_ms.to_string()],
            ))?,
        });
        let shown = dashboard.get(flow).cloned().unwrap_or(Value::Null);
        for key in ["queued", "dead_letters", "written_today"] {
            if shown[key] != store[key] {
                problems.push(format!(
                    "{flow}: the dashboard shows {key} {} where the store has {}",
                    shown[key], store[key]
                ));
            }
        }
        dashboard_report.insert(flow, json!({ "dashboard": shown, "store": store }));
    }
    if let Some(n) = runtime
        .block_on(count(
            &pool,
            "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
            &[],
        ))
        .ok()
        .filter(|n| *n > 0)
    {
        problems.push(format!("{n} rows still queued after {drain_seconds:.0} s of draining"));
    }

    // Moloni customers → location A.
    let a = contacts_in(&ghl, &ghl.credentials.location_id);
    let dead: BTreeMap<String, String> = runtime
        .block_on(
            sqlx::query("SELECT source_id, COALESCE(last_error, '') FROM outbox WHERE flow = ? AND status = 'dead'")
                .bind(CUSTOMERS_FLOW)
                .fetch_all(&pool),
        )
        .map_err(|e| format!("dead letters: {e}"))?
        .into_iter()
        .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
        .collect();
    let bad: Vec<u64> = traffic.bad_customers.lock().map(|b| b.clone()).unwrap_or_default();
    let (mut lost, mut duplicates, mut dead_without_reason, mut unexpected_dead) = (0, 0, 0, 0);
    let customers = moloni.emulator.customers();
    for customer in &customers {
        let id = customer["customer_id"].as_u64().unwrap_or_default().to_string();
        let copies = a.iter().filter(|c| same_customer(customer, c)).count();
        match (copies, dead.get(&id)) {
            (1, _) => {}
            (0, Some(reason)) if !reason.trim().is_empty() => {
                if !bad.iter().any(|b| b.to_string() == id) {
                    unexpected_dead += 1;
                }
            }
            (0, Some(_)) => dead_without_reason += 1,
            (0, None) => {
                lost += 1;
                if lost <= 5 {
                    problems.push(format!("Moloni customer {id} is neither in GHL nor a dead letter"));
                }
            }
            (n, _) => {
                duplicates += n - 1;
                problems.push(format!("Moloni customer {id} is {n} contacts in GHL"));
            }
        }
    }
    for id in &bad {
        if !dead.contains_key(&id.to_string()) {
            problems.push(format!(
                "customer {id}'s unconvertible phone did not end as a dead letter"
            ));
        }
    }

    // Accepted webhooks → location B.
    let b = contacts_in(&ghl, &ghl.credentials.other_location_id);
    let accepted: Vec<(u64, String)> = traffic.webhooks_accepted.lock().map(|w| w.clone()).unwrap_or_default();
    let mut per_email: BTreeMap<&str, usize> = BTreeMap::new();
    for contact in &b {
        if let Some(email) = contact["email"].as_str() {
            *per_email.entry(email).or_default() += 1;
        }
    }
    let webhook_dead: BTreeMap<String, String> = runtime
        .block_on(
            sqlx::query("SELECT source_id, COALESCE(last_error, '') FROM outbox WHERE flow = ? AND status = 'dead'")
                .bind(WEBHOOK_FLOW)
                .fetch_all(&pool),
        )
        .map_err(|e| format!("dead letters: {e}"))?
        .into_iter()
        .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
        .collect();
    for (n, email) in &accepted {
        match per_email.get(email.as_str()).copied().unwrap_or(0) {
            1 => {}
            0 if webhook_dead
                .get(&format!("soak-contact-{n}"))
                .is_some_and(|r| !r.trim().is_empty()) =>
            {
                unexpected_dead += 1;
            }
            0 => {
                lost += 1;
                if lost <= 5 {
                    problems.push(format!("webhook contact {email} was accepted but is not in GHL"));
                }
            }
            n => {
                duplicates += n - 1;
                problems.push(format!("webhook contact {email} is {n} contacts in GHL"));
            }
        }
    }
    if lost > 0 {
        problems.push(format!("{lost} records lost"));
    }
    if dead_without_reason > 0 {
        problems.push(format!("{dead_without_reason} dead letters without a reason"));
    }
    if backfill_exit != Some(0) {
        problems.push(format!("the backfill did not finish (last exit {backfill_exit:?})"));
    }

    let retries = runtime.block_on(count(&pool, "SELECT COUNT(*) FROM events WHERE kind = 'retry'", &[]))?;
    let writes = runtime.block_on(count(&pool, "SELECT COUNT(*) FROM events WHERE kind = 'written'", &[]))?;
    let requests = ghl.emulator.request_counts();
    let summary = json!({
        "passed": problems.is_empty(),
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "minutes": traffic_seconds / 60.0,
        "drain_seconds": drain_seconds,
        "records": {
            "moloni_customers": customers.len(),
            "moloni_seeded": SEEDED,
            "moloni_added": traffic.customers_added.load(Ordering::SeqCst),
            "moloni_changed": traffic.customers_changed.load(Ordering::SeqCst),
            "webhooks_accepted": accepted.len(),
        },
        "webhook_attempts": traffic.webhook_attempts.load(Ordering::SeqCst),
        "writes": writes,
        "retries": retries,
        "dead_letter_rows": runtime.block_on(count(&pool, "SELECT COUNT(*) FROM outbox WHERE status = 'dead'", &[]))?,
        "dead_letter_records": dead.len() + webhook_dead.len(),
        "dead_letter_reasons": reasons(dead.values().chain(webhook_dead.values())),
        "dead_letter_records_expected": bad.len(),
        "dead_letter_records_unexpected": unexpected_dead,
        "restarts": restarts,
        "backfill_runs": backfill_runs,
        "burst_429s": traffic.bursts.load(Ordering::SeqCst),
        "ghl_requests": serde_json::to_value(&requests).unwrap_or(Value::Null),
        "duplicates": duplicates,
        "lost": lost,
        "dashboard_vs_store": dashboard_report,
        "problems": problems,
    });
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let file = out.join("soak.json");
    std::fs::write(&file, format!("{summary:#}\n")).map_err(|e| format!("write {}: {e}", file.display()))?;
    server.shutdown_timeout(Duration::from_secs(1));
    Ok(summary)
}

async fn emulators() -> Result<(RunningGhl, RunningMoloni), String> {
    let addr = "127.0.0.1:0".parse().map_err(|e| format!("loopback address: {e}"))?;
    let mut ghl_config = GhlConfig::seeded(11, 0);
    ghl_config.rate_limit = RateLimitConfig::disabled();
    ghl_config.custom_fields = ["NIF", "Moloni Import Date"]
        .into_iter()
        .map(|name| CustomFieldSpec {
            name: name.into(),
            data_type: "TEXT".into(),
            options: vec![],
        })
        .collect();
    let ghl = tether_sandbox::start(addr, ghl_config)
        .await
        .map_err(|e| format!("GHL emulator: {e}"))?;
    let mut moloni_config = MoloniConfig::seeded(11, SEEDED);
    moloni_config.rate_limit = RateLimitConfig::disabled();
    let moloni = moloni::start(addr, moloni_config)
        .await
        .map_err(|e| format!("Moloni emulator: {e}"))?;
    Ok((ghl, moloni))
}

/// The shipped moloni-customers flow polled every 2 s, and GHL webhooks for location A copied
/// into location B.
fn write_config(dir: &Path, ghl: &RunningGhl, moloni: &RunningMoloni, state: &str) -> Result<PathBuf, String> {
    let c = &ghl.credentials;
    let config = format!(
        "plugins_dir = \"plugins\"\nflows_dir = \"flows\"\n[state]\nurl = \"{state}\"\n\n\
         [delivery]\nlease_ms = 3000\nbackoff_base_ms = 200\nmax_backoff_ms = 5000\n\n\
         {}webhook_public_key = \"{}\"\n\n{}overlap_seconds = 0\n\n\
         [connectors.ghl_b]\nplugin = \"ghl\"\n[connectors.ghl_b.config]\nbase_url = \"{}\"\nlocation_id = \"{}\"\nprivate_token = \"{}\"\n",
        ghl.connector_toml("ghl"),
        ghl.webhook_public_key.base64,
        moloni.connector_toml("moloni_pt"),
        ghl.base_url(),
        c.other_location_id,
        c.other_pit
    );
    let shipped = workspace_root().join("config/flows/moloni-customers.toml");
    let customers = std::fs::read_to_string(&shipped)
        .map_err(|e| format!("read {}: {e}", shipped.display()))?
        .replace("every = \"5m\"", "every = \"2s\"");
    let webhook_flow = "[source]\nconnector = \"ghl\"\nstream = \"contacts\"\ntrigger = \"webhook\"\n\
                        [target]\nconnector = \"ghl_b\"\naction = \"contact.upsert\"\n[match]\nkeys = [\"email\"]\n\
                        [mapping.fields]\nemail = \"email\"\nfirstName = \"firstName\"\nlastName = \"lastName\"\n";
    let write =
        |path: PathBuf, text: &str| std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()));
    std::fs::create_dir_all(dir.join("flows")).map_err(|e| format!("create flows: {e}"))?;
    write(dir.join("tether.toml"), &config)?;
    write(dir.join(format!("flows/{CUSTOMERS_FLOW}.toml")), &customers)?;
    write(dir.join(format!("flows/{WEBHOOK_FLOW}.toml")), webhook_flow)?;
    Ok(dir.join("tether.toml"))
}

fn free_port() -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("free port: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("free port: {e}"))?;
    Ok(addr.to_string())
}

fn start_host(tether: &Path, config: &Path, listen: &str) -> Result<RunningHost, String> {
    // Just after a kill the port may still be held for a moment.
    let mut last = String::new();
    for _ in 0..50 {
        let mut command = run_command(tether, config, listen);
        command.env("RUST_LOG", "error").stderr(Stdio::null());
        match RunningHost::spawn(command) {
            Ok(host) => return Ok(host),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

fn start_backfill(tether: &Path, config: &Path) -> Result<Child, String> {
    Command::new(tether)
        .args(["--config", &config.display().to_string()])
        .args([
            "backfill",
            CUSTOMERS_FLOW,
            "--since",
            "2026-01-01",
            "--until",
            "2027-01-01",
            "--window",
            "30d",
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start tether backfill: {e}"))
}

/// The handles the traffic threads need of the GHL emulator.
fn clone_ghl(ghl: &RunningGhl) -> (tether_sandbox::GhlEmulator, String) {
    (ghl.emulator.clone(), ghl.credentials.location_id.clone())
}

fn moloni_payment(moloni: &tether_sandbox::moloni::MoloniEmulator) -> u64 {
    moloni.credentials().payment_method_id
}

/// About 8 webhooks a second, each sent until it is answered 200 (a down host, a 503: again).
fn send_webhooks(url: &str, ghl: &(tether_sandbox::GhlEmulator, String), traffic: &Traffic, stop: &AtomicBool) {
    let (emulator, location) = ghl;
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            eprintln!("soak: webhook client: {e}");
            return;
        }
    };
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let email = format!("soak-webhook-{n}@example.com");
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let body = json!({
            "type": "ContactCreate", "locationId": location, "id": format!("soak-contact-{n}"),
            "firstName": "Soak", "lastName": format!("Webhook {n}"), "email": email,
            "dateAdded": now, "tags": [], "timestamp": now, "webhookId": format!("soak-{n}"),
        })
        .to_string();
        let signature = emulator.sign_webhook(body.as_bytes());
        loop {
            traffic.webhook_attempts.fetch_add(1, Ordering::SeqCst);
            let answer = client
                .post(url)
                .header("content-type", "application/json")
                .header("x-ghl-signature", &signature)
                .body(body.clone())
                .send();
            if answer.is_ok_and(|r| r.status() == 200) {
                if let Ok(mut accepted) = traffic.webhooks_accepted.lock() {
                    accepted.push((n, email));
                }
                break;
            }
            // The sender gives up only when the soak ends; an unanswered webhook is not counted.
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_millis(125));
    }
}

/// A new customer every 0.5 s (one in twenty-five with a phone no mapping converts), and a
/// change to an earlier one every 2 s.
fn change_customers(
    moloni: &tether_sandbox::moloni::MoloniEmulator,
    payment: u64,
    traffic: &Traffic,
    stop: &AtomicBool,
) {
    let mut n = 0u64;
    let mut added = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let bad = n.is_multiple_of(25);
        let phone = if bad {
            "12".to_owned()
        } else {
            format!("91{:07}", 1_000_000 + n)
        };
        let customer = json!({
            "name": format!("Cliente Soak {n}"), "vat": moloni::nif_from(50_000_000 + n as u32), "number": format!("SOAK-{n}"),
            "language_id": 1, "address": "Rua Augusta 1", "city": "Lisboa", "zip_code": "1100-048",
            "country_id": 1, "maturity_date_id": 0, "payment_method_id": payment,
            "email": format!("cliente.soak.{n}@example.pt"), "phone": phone,
        });
        match moloni.add_customer(customer) {
            Ok(id) => {
                traffic.customers_added.fetch_add(1, Ordering::SeqCst);
                if bad {
                    if let Ok(mut list) = traffic.bad_customers.lock() {
                        list.push(id);
                    }
                } else {
                    added.push(id);
                }
            }
            Err(invalid) => eprintln!("soak: the Moloni emulator refused customer {n}: {invalid:?}"),
        }
        if n.is_multiple_of(4) {
            if let Some(&id) = added.get((n as usize * 7) % added.len().max(1)) {
                if moloni
                    .edit_customer(id, json!({ "city": format!("Porto {n}") }))
                    .is_ok()
                {
                    traffic.customers_changed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every 20 s, GHL answers the next 30 requests with 429.
fn burst_429s(ghl: &(tether_sandbox::GhlEmulator, String), traffic: &Traffic, stop: &AtomicBool) {
    let emulator = &ghl.0;
    let mut last = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        if last.elapsed() >= Duration::from_secs(20) {
            last = Instant::now();
            let faults = FaultConfig {
                rate_limit_next: 30,
                ..emulator.faults()
            };
            if emulator.set_faults(faults).is_ok() {
                traffic.bursts.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Whether GHL `contact` is Moloni `customer`: the same email, else the same phone digits.
fn same_customer(customer: &Value, contact: &Value) -> bool {
    let email = customer["email"]
        .as_str()
        .map(|e| e.trim().to_lowercase())
        .unwrap_or_default();
    if !email.is_empty() {
        return contact["email"].as_str() == Some(email.as_str());
    }
    let digits = |v: &Value| -> String {
        v.as_str()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    };
    let phone = digits(&customer["phone"]);
    let theirs = digits(&contact["phone"]);
    !phone.is_empty() && theirs.ends_with(&phone)
}

fn contacts_in(ghl: &RunningGhl, location: &str) -> Vec<Value> {
    ghl.emulator.state()["contacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["locationId"] == location)
        .cloned()
        .collect()
}

/// Dead-letter reasons, each cut to its first 100 characters, with how many records gave it.
fn reasons<'a>(errors: impl Iterator<Item = &'a String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for error in errors {
        *out.entry(error.chars().take(100).collect()).or_default() += 1;
    }
    out
}

async fn count(pool: &sqlx::SqlitePool, sql: &str, binds: &[&str]) -> Result<i64, String> {
    let mut query = sqlx::query_scalar::<_, i64>(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    query.fetch_one(pool).await.map_err(|e| format!("state store: {e}"))
}

/// The overview's per-flow queued and dead-letter cells, by flow name.
fn overview_counts(html: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for row in html.split("<tr data-flow=\"").skip(1) {
        let Some(name) = row.split('"').next() else {
            continue;
        };
        let numbers: Vec<i64> = row
            .split("<td class=\"num")
            .skip(1)
            .filter_map(|cell| {
                let text: String = cell.split("</td>").next().unwrap_or_default().chars().collect();
                // The cell's text without tags: `">12` or `"><a href=...>3</a>`.
                let visible: String = strip_tags(&text);
                visible.trim().parse().ok()
            })
            .collect();
        // Written today, failures today, queued, dead letters.
        if let [written, failed, queued, dead] = numbers[..] {
            out.insert(
                name.to_owned(),
                json!({ "written_today": written, "failed_today": failed, "queued": queued, "dead_letters": dead }),
            );
        }
    }
    out
}

fn strip_tags(text: &str) -> String {
    let mut out = String::new();
    let mut in_tag = true; // a cell's text starts inside its opening `<td ...` tag
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}
