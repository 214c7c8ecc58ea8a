//! `cargo xtask bench`: runs the benchmarks and prints one table (or JSON), each figure with its
//! target and the machine's core count. Two runs: the criterion benches (`boundary`), then the
//! `ghl_rate` load process, which writes `target/bench/ghl_rate.json`.

use std::process::{Command, Stdio};

use tether_e2e::{target_dir, workspace_root};

struct Row {
    name: &'static str,
    figure: String,
    target: &'static str,
    met: Option<bool>,
}

pub fn run(json: bool) -> Result<(), String> {
    cargo_bench(&["--bench", "boundary", "--", "--noplot"], json)?;
    let in_process = mean_ns("plugin_call_1kb", "in_process")?;
    let across = mean_ns("plugin_call_1kb", "across_boundary")?;
    let extra_us = (across - in_process) / 1_000.0;

    // A failed run must not leave the last run's figures to be read as this one's.
    let ghl_file = target_dir().join("bench").join("ghl_rate.json");
    match std::fs::remove_file(&ghl_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", ghl_file.display())),
    }
    cargo_bench(&["--bench", "ghl_rate"], json)?;
    let ghl = read_json(&ghl_file)?;
    let ratio = ghl["ratio"]
        .as_f64()
        .ok_or_else(|| format!("{}: no number `ratio`", ghl_file.display()))?;
    let throttled = ghl["responses_429"]
        .as_u64()
        .ok_or_else(|| format!("{}: no count `responses_429`", ghl_file.display()))?;

    let rows = [
        Row {
            name: "plugin call, 1 KB record, in-process",
            figure: format!("{:.2} µs", in_process / 1_000.0),
            target: "-",
            met: None,
        },
        Row {
            name: "plugin call, 1 KB record, across .so",
            figure: format!("{:.2} µs", across / 1_000.0),
            target: "-",
            met: None,
        },
        Row {
            name: "plugin call, 1 KB record, extra cost",
            figure: format!("{extra_us:.2} µs"),
            target: "≤ 2 µs",
            met: Some(extra_us <= 2.0),
        },
        Row {
            name: "GHL calls under real limits, achieved/ideal",
            figure: format!("{ratio:.3}"),
            target: ">= 0.95",
            met: Some(ratio >= 0.95),
        },
        Row {
            name: "GHL calls under real limits, 429 responses",
            figure: throttled.to_string(),
            target: "0",
            met: Some(throttled == 0),
        },
    ];
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "figure": r.figure, "target": r.target, "met": r.met, "cores": cores}))
            .collect();
        println!("{}", serde_json::json!({ "cores": cores, "rows": rows }));
    } else {
        println!(
            "\n{:<44} {:>12} {:>10} {:>5} {:>6}",
            "benchmark", "figure", "target", "met", "cores"
        );
        for r in &rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            println!(
                "{:<44} {:>12} {:>10} {:>5} {:>6}",
                r.name, r.figure, r.target, met, cores
            );
        }
    }
    Ok(())
}

/// `cargo bench -p tether-e2e ARGS`. With `--json` the benches' own output goes to stderr, so
/// stdout holds only the JSON document.
fn cargo_bench(args: &[&str], json: bool) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .args(["bench", "-p", "tether-e2e"])
        .args(args)
        .current_dir(workspace_root());
    if json {
        command.stdout(Stdio::from(std::io::stderr()));
    }
    let status = command.status().map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo bench {} failed: {status}", args.join(" ")))
    }
}

fn read_json(path: &std::path::Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Criterion's mean estimate, in nanoseconds.
fn mean_ns(group: &str, function: &str) -> Result<f64, String> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let estimates = read_json(&path)?;
    estimates["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean estimate", path.display()))
}
