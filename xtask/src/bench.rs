//! `cargo xtask bench`: runs the benchmarks and prints one table (or JSON), each figure with its
//! target and the machine's core count.

use std::process::Command;

use tether_e2e::{target_dir, workspace_root};

struct Row {
    name: &'static str,
    figure: String,
    target: &'static str,
    met: Option<bool>,
}

pub fn run(json: bool) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["bench", "-p", "tether-e2e", "--bench", "boundary", "--", "--noplot"])
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!("cargo bench failed: {status}"));
    }
    let in_process = mean_ns("plugin_call_1kb", "in_process")?;
    let across = mean_ns("plugin_call_1kb", "across_boundary")?;
    let extra_us = (across - in_process) / 1_000.0;
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
            "\n{:<40} {:>12} {:>10} {:>5} {:>6}",
            "benchmark", "figure", "target", "met", "cores"
        );
        for r in &rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            println!(
                "{:<40} {:>12} {:>10} {:>5} {:>6}",
                r.name, r.figure, r.target, met, cores
            );
        }
    }
    Ok(())
}

/// Criterion's mean estimate, in nanoseconds.
fn mean_ns(group: &str, function: &str) -> Result<f64, String> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let estimates: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    estimates["mean"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("{}: no mean estimate", path.display()))
}
