//! Backfill through the real `tether` binary (release build) and the real Moloni plugin, Moloni
//! customers → GHL contacts (`config/flows/moloni-customers.toml`), both emulators on loopback with
//! their limits off. A load process, not a criterion bench; `cargo xtask bench` reads its file.
//!
//! Runs, each a separate `tether backfill moloni-customers` process:
//! 1. First run over N customers (`TETHER_BENCH_BACKFILL_RECORDS`, default 20,000): records written
//!    per second of the process's wall time (start-up, reading, queueing and writing included), and
//!    the GHL calls it made per record written.
//! 2. Re-run with nothing changed, on the same state, over a window not yet done (a window already
//!    done is skipped without reading, which would prove nothing): it must read every customer
//!    again; the figure is the write calls (POST/PUT/DELETE, searches left out) GHL received.
//! 3. Peak RSS (VmHWM, polled from /proc) of one first run per size in `TETHER_BENCH_RSS_RECORDS`
//!    (default `10000,100000`). A run that passes `TETHER_BENCH_RSS_LIMIT_SECONDS` (default 600)
//!    is stopped: its peak so far and the records written so far are reported as incomplete.
//!
//! 4. Two hosts on one PostgreSQL against one, when `TETHER_TEST_DATABASE_URL` names a server
//!    (skipped with a notice otherwise): the same backfill into a fresh database, first by
//!    `tether backfill` alone, then with a `tether run` (default workers and idle poll) sharing
//!    the queue; the figure is the time until nothing is queued. Twice: emulator limits off over
//!    `TETHER_BENCH_SCALE_RECORDS` (default 5,000) customers, and under GHL's real limits (100
//!    requests per 10 s) over `TETHER_BENCH_SCALE_LIMITED_RECORDS` (default 300). Each run checks
//!    GHL holds every customer exactly once.
//!
//! GHL calls are counted by the emulator itself (`GhlEmulator::request_counts`). Writes
//! `target/bench/backfill.json` and prints it. Under `cargo test --benches` it only says it was
//! skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tether_core::store::{EventKind, Store};
use tether_e2e::host::{run_command, RunningHost};
use tether_e2e::postgres::ScratchDatabase;
use tether_e2e::{cargo_build, install, target_dir, workspace_root, Profile};
use tether_sandbox::ghl::{CustomFieldSpec, RequestCounts};
use tether_sandbox::moloni::{self, MoloniConfig, RunningMoloni};
use tether_sandbox::{GhlConfig, RateLimitConfig, RunningGhl};

const DEFAULT_RECORDS: usize = 20_000;
const DEFAULT_RSS_RECORDS: &[usize] = &[10_000, 100_000];
const DEFAULT_RSS_LIMIT_SECONDS: u64 = 600;
const DEFAULT_SCALE_RECORDS: usize = 5_000;
/// Under GHL's real limits each write waits for budget: 300 records are ~20 s of it.
const DEFAULT_SCALE_LIMITED_RECORDS: usize = 300;
/// A shared backfill not drained by then is a failure, not a figure.
const SCALE_DRAIN_LIMIT: Duration = Duration::from_secs(900);
const FLOW: &str = "moloni-customers";
const SEED: u64 = 2026;
/// Moloni customers carry no dates, so any one-day window lists every customer.
const FIRST_WINDOW: [&str; 2] = ["2025-01-01", "2025-01-02"];
const NEXT_WINDOW: [&str; 2] = ["2025-01-02", "2025-01-03"];

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("backfill: skipped (a timed load run; use `cargo bench -p tether-e2e --bench backfill`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(report) => {
            println!("{report:#}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backfill: {e}");
            ExitCode::FAILURE
        }
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a whole number, not `{text}`")),
    }
}

fn rss_sizes() -> Result<Vec<usize>, String> {
    match std::env::var("TETHER_BENCH_RSS_RECORDS") {
        Err(_) => Ok(DEFAULT_RSS_RECORDS.to_vec()),
        Ok(text) => text
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .map_err(|_| format!("TETHER_BENCH_RSS_RECORDS: `{n}` is not a whole number"))
            })
            .collect(),
    }
}

fn run() -> Result<Value, String> {
    let records = env_number("TETHER_BENCH_BACKFILL_RECORDS", DEFAULT_RECORDS)?;
    let rss_limit = Duration::from_secs(env_number("TETHER_BENCH_RSS_LIMIT_SECONDS", DEFAULT_RSS_LIMIT_SECONDS)?);
    let sizes = rss_sizes()?;
    // The host as it would be deployed: release build of the binary and the plugin.
    let release = cargo_build(Profile::Release, &["tether", "tether-moloni"])?;
    let tether = release.join(format!("tether{}", std::env::consts::EXE_SUFFIX));

    // The emulators on their own runtime, as remote servers would be.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("emulator runtime: {e}"))?;

    let rig = Rig::start(&server, &release, records, &RigOptions::default())?;
    let first = rig.backfill(&tether, FIRST_WINDOW, None)?;
    if !first.completed() || first.written == 0 {
        return Err(format!("the first run did not complete: {first:?}"));
    }
    let rerun = rig.backfill(&tether, NEXT_WINDOW, None)?;
    // A re-run that did not read everything again would make its zero writes meaningless.
    if !rerun.completed() || rerun.read < first.read {
        return Err(format!(
            "the re-run read {} records, the first run {}: {rerun:?}",
            rerun.read, first.read
        ));
    }
    drop(rig);

    let mut rss = Vec::new();
    for size in sizes {
        let rig = Rig::start(&server, &release, size, &RigOptions::default())?;
        let measured = rig.backfill(&tether, FIRST_WINDOW, Some(rss_limit))?;
        eprintln!("backfill: {size} records: {measured:?}");
        rss.push(json!({
            "records": size,
            "completed": measured.completed(),
            "written": measured.written,
            "dead": measured.dead,
            "seconds": measured.seconds,
            "peak_rss_kb": measured.peak_rss_kb,
        }));
    }

    let scale_out = match std::env::var("TETHER_TEST_DATABASE_URL") {
        Err(_) => {
            eprintln!("backfill: TETHER_TEST_DATABASE_URL is not set; two hosts on PostgreSQL not measured");
            Value::Null
        }
        Ok(admin_url) => {
            let scale = ScaleOut {
                server: &server,
                release: &release,
                tether: &tether,
                admin_url: &admin_url,
            };
            let unlimited = scale.compare(
                env_number("TETHER_BENCH_SCALE_RECORDS", DEFAULT_SCALE_RECORDS)?,
                RateLimitConfig::disabled(),
            )?;
            let limited = scale.compare(
                env_number("TETHER_BENCH_SCALE_LIMITED_RECORDS", DEFAULT_SCALE_LIMITED_RECORDS)?,
                RateLimitConfig::default(),
            )?;
            json!({ "limits_off": unlimited, "ghl_limits": limited })
        }
    };

    let report = json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "first_run": first.json(),
        "rerun": rerun.json(),
        "rss": rss,
        "scale_out": scale_out,
        "rss_limit_seconds": rss_limit.as_secs(),
    });
    let out = target_dir().join("bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let file = out.join("backfill.json");
    std::fs::write(&file, format!("{report:#}\n")).map_err(|e| format!("write {}: {e}", file.display()))?;
    server.shutdown_timeout(Duration::from_secs(1));
    Ok(report)
}

/// Where a rig keeps its state and how its GHL emulator limits calls.
struct RigOptions {
    state_url: String,
    ghl_limits: RateLimitConfig,
    /// Only `tether backfill` reads the source: a `tether run` beside it only delivers.
    backfill_trigger: bool,
}

impl Default for RigOptions {
    fn default() -> Self {
        RigOptions {
            state_url: "sqlite://state.sqlite".into(),
            ghl_limits: RateLimitConfig::disabled(),
            backfill_trigger: false,
        }
    }
}

/// One Moloni emulator seeded with customers, an empty GHL location with the flow's custom
/// fields, and a tether config directory for the flow.
struct Rig {
    ghl: RunningGhl,
    _moloni: RunningMoloni,
    dir: tempfile::TempDir,
}

impl Rig {
    fn start(
        server: &tokio::runtime::Runtime,
        release: &Path,
        customers: usize,
        options: &RigOptions,
    ) -> Result<Self, String> {
        let addr = "127.0.0.1:0".parse().map_err(|e| format!("loopback address: {e}"))?;
        let text_field = |name: &str| CustomFieldSpec {
            name: name.into(),
            data_type: "TEXT".into(),
            options: vec![],
        };
        let ghl = server
            .block_on(tether_sandbox::start(
                addr,
                GhlConfig {
                    rate_limit: options.ghl_limits.clone(),
                    custom_fields: vec![text_field("NIF"), text_field("Moloni Import Date")],
                    ..GhlConfig::seeded(SEED, 0)
                },
            ))
            .map_err(|e| format!("GHL emulator: {e}"))?;
        let moloni = server
            .block_on(moloni::start(
                addr,
                MoloniConfig {
                    rate_limit: RateLimitConfig::disabled(),
                    seed_invoices: 0,
                    ..MoloniConfig::seeded(SEED, customers)
                },
            ))
            .map_err(|e| format!("Moloni emulator: {e}"))?;
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let plugins = dir.path().join("plugins");
        install(release, &["tether-moloni"], &plugins)?;
        let config = format!(
            "plugins_dir = \"plugins\"\nflows_dir = \"flows\"\n[state]\nurl = \"{}\"\n\n{}\n{}overlap_seconds = 0\n",
            options.state_url,
            ghl.connector_toml("ghl"),
            moloni.connector_toml("moloni_pt"),
        );
        let write = |path: PathBuf, text: &str| {
            std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
        };
        write(dir.path().join("tether.toml"), &config)?;
        let flows = dir.path().join("flows");
        std::fs::create_dir(&flows).map_err(|e| format!("create {}: {e}", flows.display()))?;
        let flow = workspace_root().join("config/flows/moloni-customers.toml");
        let mut text = std::fs::read_to_string(&flow).map_err(|e| format!("read {}: {e}", flow.display()))?;
        if options.backfill_trigger {
            text = text.replace("trigger = \"poll\"", "trigger = \"backfill\"");
        }
        write(flows.join("moloni-customers.toml"), &text)?;
        Ok(Self {
            ghl,
            _moloni: moloni,
            dir,
        })
    }

    /// One `tether backfill` over `[since, until)` in one window; stopped if it outlives `limit`.
    fn backfill(&self, tether: &Path, [since, until]: [&str; 2], limit: Option<Duration>) -> Result<Measured, String> {
        let before = self.ghl.emulator.request_counts();
        let started = Instant::now();
        let child = Command::new(tether)
            .current_dir(self.dir.path())
            .args(["--config", "tether.toml", "backfill", FLOW])
            .args(["--since", since, "--until", until, "--window", "1d", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run {}: {e}", tether.display()))?;
        let pid = child.id();
        let (peak_rss_kb, output, stopped) = watch(child, limit)?;
        let seconds = started.elapsed().as_secs_f64();
        let calls = difference(&before, &self.ghl.emulator.request_counts());
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stopped {
            // Records written so far: the contacts GHL holds (the location started empty).
            let written = self.ghl.emulator.state()["contacts"].as_array().map_or(0, |cs| {
                cs.iter()
                    .filter(|c| c["locationId"] == self.ghl.credentials.location_id.as_str())
                    .count()
            });
            return Ok(Measured {
                stopped: true,
                seconds,
                read: 0,
                written: written as u64,
                dead: 0,
                ghl_calls: calls.total(),
                ghl_writes: calls.writes(),
                peak_rss_kb,
            });
        }
        let report: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
            format!(
                "tether backfill (pid {pid}, {}): no JSON report ({e}); stderr: {stderr}",
                output.status
            )
        })?;
        // Exit 1 only says some records went to the dead-letter list; anything else is a failure.
        if !matches!(output.status.code(), Some(0 | 1)) || !report["total"]["paused"].is_null() {
            return Err(format!("tether backfill failed ({}): {report} {stderr}", output.status));
        }
        let count = |name: &str| report["total"][name].as_u64().unwrap_or(0);
        Ok(Measured {
            stopped: false,
            seconds,
            read: count("read"),
            written: count("written"),
            dead: count("dead"),
            ghl_calls: calls.total(),
            ghl_writes: calls.writes(),
            peak_rss_kb,
        })
    }
}

/// Two hosts on one PostgreSQL against one (run 4 of the module docs).
struct ScaleOut<'a> {
    server: &'a tokio::runtime::Runtime,
    release: &'a Path,
    tether: &'a Path,
    admin_url: &'a str,
}

impl ScaleOut<'_> {
    fn compare(&self, records: usize, ghl_limits: RateLimitConfig) -> Result<Value, String> {
        let one = self.shared_backfill(records, ghl_limits.clone(), 0)?;
        let two = self.shared_backfill(records, ghl_limits, 1)?;
        eprintln!("backfill: shared on PostgreSQL, {records} records: one host {one}, two hosts {two}");
        Ok(json!({
            "records": records,
            "one_host": one,
            "two_hosts": two,
            "speed_up": one["seconds"].as_f64().unwrap_or(0.0) / two["seconds"].as_f64().unwrap_or(f64::INFINITY),
        }))
    }

    /// `tether backfill` with `helpers` `tether run` hosts beside it, on a fresh database: seconds
    /// from the backfill's start until nothing is queued, and who wrote what.
    fn shared_backfill(&self, records: usize, ghl_limits: RateLimitConfig, helpers: usize) -> Result<Value, String> {
        let database = self
            .server
            .block_on(ScratchDatabase::create(self.admin_url, "tether_bench_scale"))?;
        let result = self.measure_shared(&database.url, records, ghl_limits, helpers);
        self.server.block_on(database.drop_it());
        result
    }

    fn measure_shared(
        &self,
        state_url: &str,
        records: usize,
        ghl_limits: RateLimitConfig,
        helpers: usize,
    ) -> Result<Value, String> {
        let options = RigOptions {
            state_url: state_url.to_owned(),
            ghl_limits,
            backfill_trigger: true,
        };
        let rig = Rig::start(self.server, self.release, records, &options)?;
        let config = rig.dir.path().join("tether.toml");
        let hosts = (0..helpers)
            .map(|_| {
                let mut command = run_command(self.tether, &config, "127.0.0.1:0");
                command.current_dir(rig.dir.path()).stderr(Stdio::null());
                RunningHost::spawn(command)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let started = Instant::now();
        let backfill = rig.backfill(self.tether, FIRST_WINDOW, None)?;
        let store = self
            .server
            .block_on(Store::open(state_url))
            .map_err(|e| format!("open {state_url}: {e}"))?;
        let queued = || {
            self.server.block_on(async {
                let counts = store.flow_counts().await.map_err(|e| format!("flow counts: {e}"))?;
                Ok::<_, String>(counts.iter().filter(|c| c.flow == FLOW).map(|c| c.pending).sum::<i64>())
            })
        };
        while queued()? > 0 {
            if started.elapsed() > SCALE_DRAIN_LIMIT {
                return Err(format!(
                    "{records} records still not delivered after {SCALE_DRAIN_LIMIT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let seconds = started.elapsed().as_secs_f64();
        for host in hosts {
            host.stop();
        }
        let contacts = rig.ghl.emulator.state()["contacts"].as_array().map_or(0, |cs| {
            cs.iter()
                .filter(|c| c["locationId"] == rig.ghl.credentials.location_id.as_str())
                .count()
        });
        if contacts != records {
            return Err(format!("GHL holds {contacts} contacts for {records} customers"));
        }
        let retries = self.server.block_on(async {
            store
                .events(Some(FLOW), Some(EventKind::Retry), 1_000_000)
                .await
                .map(|events| events.len())
                .map_err(|e| format!("retry events: {e}"))
        })?;
        Ok(json!({
            "hosts": helpers + 1,
            "seconds": seconds,
            "records_per_s": records as f64 / seconds,
            "written_by_backfill": backfill.written,
            "row_retries": retries,
        }))
    }
}

#[derive(Debug)]
struct Measured {
    /// Stopped at the time limit, not finished.
    stopped: bool,
    seconds: f64,
    read: u64,
    written: u64,
    dead: u64,
    ghl_calls: u64,
    ghl_writes: u64,
    peak_rss_kb: u64,
}

impl Measured {
    fn completed(&self) -> bool {
        !self.stopped
    }

    fn json(&self) -> Value {
        let per = |n: u64, d: f64| if d > 0.0 { n as f64 / d } else { 0.0 };
        json!({
            "seconds": self.seconds,
            "read": self.read,
            "written": self.written,
            "dead": self.dead,
            "records_per_s": per(self.written, self.seconds),
            "ghl_calls": self.ghl_calls,
            "ghl_writes": self.ghl_writes,
            "ghl_calls_per_record": per(self.ghl_calls, self.written as f64),
            "peak_rss_kb": self.peak_rss_kb,
        })
    }
}

/// The calls made between two snapshots of the emulator's counters.
fn difference(before: &RequestCounts, after: &RequestCounts) -> RequestCounts {
    RequestCounts {
        by_route: after
            .by_route
            .iter()
            .map(|(route, n)| {
                let earlier = before.by_route.get(route).copied().unwrap_or(0);
                (route.clone(), n.saturating_sub(earlier))
            })
            .collect(),
    }
}

/// Waits for the child while polling its peak RSS (VmHWM only grows, so the last reading before
/// exit is the peak up to within one poll). Kills it past `limit`. Returns the peak in kB, the
/// output, and whether it was stopped.
fn watch(child: Child, limit: Option<Duration>) -> Result<(u64, std::process::Output, bool), String> {
    let pid = child.id();
    let started = Instant::now();
    let done = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let poller = {
        let (done, stopped) = (done.clone(), stopped.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                if let Some(kb) = vm_hwm_kb(pid) {
                    peak = peak.max(kb);
                }
                if limit.is_some_and(|l| started.elapsed() > l) && !stopped.swap(true, Ordering::Relaxed) {
                    // The child is not reaped until wait_with_output returns, so the pid is still ours.
                    let _ = Command::new("kill").arg(pid.to_string()).status();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    let output = child.wait_with_output();
    done.store(true, Ordering::Relaxed);
    let peak = poller.join().map_err(|_| "the RSS poller panicked".to_owned())?;
    let output = output.map_err(|e| format!("wait for tether (pid {pid}): {e}"))?;
    Ok((peak, output, stopped.load(Ordering::Relaxed)))
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
