//! `cargo xtask bench`: runs the benchmarks and prints one table (or JSON), each figure with its
//! target and the machine's core count. The criterion benches (`boundary`, `mapping`), then the `ghl_rate`,
//! `backfill` and `webhook_intake` load processes, which write `target/bench/<name>.json`.

use std::process::Stdio;

use tether_e2e::target_dir;

/// Peak RSS of the host must stay under this at every size.
const RSS_LIMIT_MB: f64 = 100.0;
/// "Flat": the largest size's peak RSS at most this many times the smallest size's.
const RSS_FLAT_RATIO: f64 = 1.5;
/// Records/s a 10-field flow mapping must reach on one core: mapping is pure CPU work between two
/// API calls, so it must cost a small fraction of the ~1 ms a write takes (20 µs a record at most).
const MAPPING_TARGET_PER_S: f64 = 50_000.0;

struct Row {
    name: String,
    figure: String,
    target: &'static str,
    met: Option<bool>,
}

pub fn run(json: bool) -> Result<(), String> {
    cargo_bench(&["--bench", "boundary", "--", "--noplot"], json)?;
    let in_process = mean_ns("plugin_call_1kb", "in_process")?;
    let across = mean_ns("plugin_call_1kb", "across_boundary")?;
    let extra_us = (across - in_process) / 1_000.0;
    cargo_bench(&["--bench", "mapping", "--", "--noplot"], json)?;
    let mapping = mapping_row(
        mean_ns("mapping_10_fields", "apply_batch")?,
        throughput_elements("mapping_10_fields", "apply_batch")?,
    );

    let ghl_file = load_process("ghl_rate", json)?;
    let ghl = read_json(&ghl_file)?;
    let ratio = ghl["ratio"]
        .as_f64()
        .ok_or_else(|| format!("{}: no number `ratio`", ghl_file.display()))?;
    let throttled = ghl["responses_429"]
        .as_u64()
        .ok_or_else(|| format!("{}: no count `responses_429`", ghl_file.display()))?;

    let backfill_file = load_process("backfill", json)?;
    let backfill = read_json(&backfill_file)?;

    let mut rows = vec![
        Row {
            name: "plugin call, 1 KB record, in-process".into(),
            figure: format!("{:.2} µs", in_process / 1_000.0),
            target: "-",
            met: None,
        },
        Row {
            name: "plugin call, 1 KB record, across .so".into(),
            figure: format!("{:.2} µs", across / 1_000.0),
            target: "-",
            met: None,
        },
        Row {
            name: "plugin call, 1 KB record, extra cost".into(),
            figure: format!("{extra_us:.2} µs"),
            target: "≤ 2 µs",
            met: Some(extra_us <= 2.0),
        },
        Row {
            name: "GHL calls under real limits, achieved/ideal".into(),
            figure: format!("{ratio:.3}"),
            target: ">= 0.95",
            met: Some(ratio >= 0.95),
        },
        Row {
            name: "GHL calls under real limits, 429 responses".into(),
            figure: throttled.to_string(),
            target: "0",
            met: Some(throttled == 0),
        },
        mapping,
    ];
    rows.extend(backfill_rows(&backfill).map_err(|e| format!("{}: {e}", backfill_file.display()))?);
    let intake_file = load_process("webhook_intake", json)?;
    let intake = read_json(&intake_file)?;
    rows.extend(intake_rows(&intake).map_err(|e| format!("{}: {e}", intake_file.display()))?);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "figure": r.figure, "target": r.target, "met": r.met, "cores": cores}))
            .collect();
        println!("{}", serde_json::json!({ "cores": cores, "rows": rows }));
    } else {
        println!(
            "\n{:<68} {:>12} {:>10} {:>5} {:>6}",
            "benchmark", "figure", "target", "met", "cores"
        );
        for r in &rows {
            let met = match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "",
            };
            println!(
                "{:<68} {:>12} {:>10} {:>5} {:>6}",
                r.name, r.figure, r.target, met, cores
            );
        }
    }
    Ok(())
}

/// Runs the load process `name` and returns the file it writes, `target/bench/<name>.json`.
fn load_process(name: &str, json: bool) -> Result<std::path::PathBuf, String> {
    // A failed run must not leave the last run's figures to be read as this one's.
    let file = target_dir().join("bench").join(format!("{name}.json"));
    match std::fs::remove_file(&file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove {}: {e}", file.display())),
    }
    cargo_bench(&["--bench", name], json)?;
    Ok(file)
}

/// Two hosts on one PostgreSQL against one; `null` when the run had no PostgreSQL.
fn scale_out_rows(report: &serde_json::Value) -> Result<Vec<Row>, String> {
    if report.is_null() {
        return Ok(vec![Row {
            name: "backfill, two hosts on PostgreSQL vs one".into(),
            figure: "not measured: set TETHER_TEST_DATABASE_URL".into(),
            target: "-",
            met: None,
        }]);
    }
    let number =
        |value: &serde_json::Value, what: &str| value.as_f64().ok_or_else(|| format!("no number `scale_out.{what}`"));
    let mut rows = Vec::new();
    for (key, limits) in [("limits_off", "limits off"), ("ghl_limits", "GHL's real limits")] {
        let case = &report[key];
        let records = number(&case["records"], &format!("{key}.records"))?;
        let speed_up = number(&case["speed_up"], &format!("{key}.speed_up"))?;
        let one = number(
            &case["one_host"]["records_per_s"],
            &format!("{key}.one_host.records_per_s"),
        )?;
        let two = number(
            &case["two_hosts"]["records_per_s"],
            &format!("{key}.two_hosts.records_per_s"),
        )?;
        rows.push(Row {
            name: format!("backfill, two hosts on PostgreSQL vs one, {limits}, {records} records"),
            figure: format!("×{speed_up:.2} ({one:.1} → {two:.1} rec/s)"),
            target: "-",
            met: None,
        });
        if key == "ghl_limits" {
            let retries = number(
                &case["two_hosts"]["row_retries"],
                &format!("{key}.two_hosts.row_retries"),
            )?;
            rows.push(Row {
                name: "backfill, two hosts under GHL's limits: rows retried (429s)".into(),
                figure: format!("{retries}"),
                target: "0",
                met: Some(retries == 0.0),
            });
        }
    }
    Ok(rows)
}

/// Rows from `backfill.json`: throughput, writes on an unchanged re-run, calls per record, and
/// the host's peak RSS per size (a run stopped at the time limit says so in its row).
fn backfill_rows(report: &serde_json::Value) -> Result<Vec<Row>, String> {
    let number = |value: &serde_json::Value, what: &str| value.as_f64().ok_or_else(|| format!("no number `{what}`"));
    let first = &report["first_run"];
    let rerun = &report["rerun"];
    let read = number(&first["read"], "first_run.read")?;
    let dead = number(&first["dead"], "first_run.dead")?;
    let rerun_writes = number(&rerun["ghl_writes"], "rerun.ghl_writes")?;
    let mut rows = vec![
        Row {
            name: format!("backfill, {read} Moloni customers → GHL, written ({dead} dead)"),
            figure: format!(
                "{:.0} rec/s",
                number(&first["records_per_s"], "first_run.records_per_s")?
            ),
            target: "-",
            met: None,
        },
        Row {
            name: "backfill, API calls to GHL per new record".into(),
            figure: format!(
                "{:.2}",
                number(&first["ghl_calls_per_record"], "first_run.ghl_calls_per_record")?
            ),
            target: "-",
            met: None,
        },
        Row {
            name: format!(
                "backfill re-run, unchanged ({} read): write calls",
                number(&rerun["read"], "rerun.read")?
            ),
            figure: format!("{rerun_writes}"),
            target: "0",
            met: Some(rerun_writes == 0.0),
        },
    ];
    // The first run is one more size for the memory rows.
    let mut sizes = report["rss"].as_array().ok_or("no list `rss`")?.clone();
    sizes.push(serde_json::json!({
        "records": first["read"],
        "completed": true,
        "seconds": first["seconds"],
        "written": first["written"],
        "peak_rss_kb": first["peak_rss_kb"],
    }));
    sizes.sort_by(|a, b| {
        a["records"]
            .as_f64()
            .partial_cmp(&b["records"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let limit_s = number(&report["rss_limit_seconds"], "rss_limit_seconds")?;
    let mut complete_peaks = Vec::new();
    for size in &sizes {
        let records = number(&size["records"], "rss[].records")?;
        let peak_mb = number(&size["peak_rss_kb"], "rss[].peak_rss_kb")? / 1024.0;
        let completed = size["completed"].as_bool().ok_or("no bool `rss[].completed`")?;
        let seconds = number(&size["seconds"], "rss[].seconds")?;
        let (name, met) = if completed {
            complete_peaks.push(peak_mb);
            (
                format!("backfill peak RSS, {records} records ({seconds:.0} s)"),
                Some(peak_mb <= RSS_LIMIT_MB),
            )
        } else {
            // A stopped run's peak is a lower bound: it can only prove the limit exceeded.
            let written = number(&size["written"], "rss[].written")?;
            (
                format!("backfill peak RSS, {records} records: STOPPED at {limit_s} s, {written} written"),
                (peak_mb > RSS_LIMIT_MB).then_some(false),
            )
        };
        rows.push(Row {
            name,
            figure: format!("{peak_mb:.1} MB"),
            target: "≤ 100 MB",
            met,
        });
    }
    if let (Some(smallest), Some(largest)) = (complete_peaks.first(), complete_peaks.last()) {
        if complete_peaks.len() > 1 {
            let ratio = largest / smallest;
            rows.push(Row {
                name: "backfill peak RSS, largest size / smallest size".into(),
                figure: format!("×{ratio:.2}"),
                target: "flat ≤ ×1.5",
                met: Some(ratio <= RSS_FLAT_RATIO),
            });
        }
    }
    rows.extend(scale_out_rows(&report["scale_out"])?);
    Ok(rows)
}

/// The mapping row: records per second from the mean time of a batch of `records`.
fn mapping_row(batch_ns: f64, records: f64) -> Row {
    let per_s = if batch_ns > 0.0 { records * 1e9 / batch_ns } else { 0.0 };
    Row {
        name: "mapping, 10-field flow mapping (e164, name split, lookup, tag rule)".into(),
        figure: format!("{per_s:.0} rec/s"),
        target: "≥ 50000 rec/s",
        met: Some(per_s >= MAPPING_TARGET_PER_S),
    }
}

/// Rows from `webhook_intake.json`: accepted webhooks per second, latency, and the count check
/// (every accepted webhook queued in the store, every webhook accepted).
fn intake_rows(report: &serde_json::Value) -> Result<Vec<Row>, String> {
    let number = |what: &str| report[what].as_f64().ok_or_else(|| format!("no number `{what}`"));
    let per_second = number("per_second")?;
    let p50 = number("p50_ms")?;
    let p99 = number("p99_ms")?;
    let lost = number("lost")?;
    let webhooks = number("webhooks")?;
    let accepted = number("accepted")?;
    let concurrency = number("concurrency")?;
    Ok(vec![
        Row {
            name: format!("webhook intake, SQLite, {webhooks} signed webhooks over {concurrency} connections"),
            figure: format!("{per_second:.0}/s"),
            target: "≥ 5000/s",
            met: Some(per_second >= 5_000.0),
        },
        Row {
            name: "webhook intake, p50 latency".into(),
            figure: format!("{p50:.1} ms"),
            target: "-",
            met: None,
        },
        Row {
            name: "webhook intake, p99 latency".into(),
            figure: format!("{p99:.1} ms"),
            target: "< 20 ms",
            met: Some(p99 < 20.0),
        },
        Row {
            name: "webhook intake, accepted but not in the store / refused".into(),
            figure: format!("{lost} / {}", webhooks - accepted),
            target: "0 / 0",
            met: Some(lost == 0.0 && accepted == webhooks),
        },
    ])
}

/// `cargo bench -p tether-e2e ARGS`. With `--json` the benches' own output goes to stderr, so
/// stdout holds only the JSON document.
pub(crate) fn cargo_bench(args: &[&str], json: bool) -> Result<(), String> {
    let mut command = tether_e2e::cargo();
    command.args(["bench", "-p", "tether-e2e"]).args(args);
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

/// The elements per iteration a criterion bench declared (`Throughput::Elements`).
fn throughput_elements(group: &str, function: &str) -> Result<f64, String> {
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(function)
        .join("new")
        .join("benchmark.json");
    let benchmark = read_json(&path)?;
    benchmark["throughput"]["Elements"]
        .as_f64()
        .ok_or_else(|| format!("{}: no element throughput", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_row_turns_a_batch_time_into_records_per_second() {
        // 100 records in 1 ms: 100,000 records/s, over the target.
        let row = mapping_row(1_000_000.0, 100.0);
        assert_eq!(row.figure, "100000 rec/s");
        assert_eq!(row.met, Some(true));
        // 100 records in 4 ms: 25,000 records/s, under it.
        let row = mapping_row(4_000_000.0, 100.0);
        assert_eq!(row.figure, "25000 rec/s");
        assert_eq!(row.met, Some(false));
        assert_eq!(mapping_row(0.0, 100.0).met, Some(false), "no measurement is not a pass");
    }

    #[test]
    fn backfill_rows_judge_writes_memory_and_stopped_runs() {
        let report = serde_json::json!({
            "first_run": {"read": 2000, "written": 2000, "dead": 0, "seconds": 8.0, "records_per_s": 250.0,
                          "ghl_calls_per_record": 1.0, "peak_rss_kb": 40960},
            "rerun": {"read": 2000, "ghl_writes": 3},
            "rss": [
                {"records": 1000, "completed": true, "seconds": 4.0, "written": 1000, "peak_rss_kb": 20480},
                {"records": 9000, "completed": false, "seconds": 600.0, "written": 500, "peak_rss_kb": 153600},
            ],
            "rss_limit_seconds": 600,
        });
        let rows = backfill_rows(&report).expect("rows");
        let row = |start: &str| rows.iter().find(|r| r.name.starts_with(start)).expect(start);
        assert_eq!(row("backfill re-run").met, Some(false), "3 writes is not 0");
        assert_eq!(row("backfill peak RSS, 1000 records").met, Some(true));
        assert_eq!(row("backfill peak RSS, 2000 records").figure, "40.0 MB");
        let stopped = row("backfill peak RSS, 9000 records");
        assert!(stopped.name.contains("STOPPED"), "{}", stopped.name);
        assert_eq!(stopped.met, Some(false), "150 MB before the stop is over the limit");
        assert_eq!(row("backfill peak RSS, largest").figure, "×2.00");
        assert_eq!(row("backfill peak RSS, largest").met, Some(false));
        assert!(backfill_rows(&serde_json::json!({})).is_err());
        assert!(row("backfill, two hosts").figure.starts_with("not measured"));
    }

    #[test]
    fn scale_out_rows_show_speed_up_and_judge_throttling() {
        let case = |speed_up: f64, retries: u64| {
            serde_json::json!({"records": 300, "speed_up": speed_up,
                               "one_host": {"records_per_s": 10.0, "row_retries": 0},
                               "two_hosts": {"records_per_s": 10.0 * speed_up, "row_retries": retries}})
        };
        let rows =
            scale_out_rows(&serde_json::json!({"limits_off": case(1.5, 0), "ghl_limits": case(1.0, 4)})).expect("rows");
        assert_eq!(rows[0].figure, "×1.50 (10.0 → 15.0 rec/s)");
        assert!(rows[1].name.contains("GHL's real limits"), "{}", rows[1].name);
        assert_eq!((rows[2].figure.as_str(), rows[2].met), ("4", Some(false)));
        assert!(scale_out_rows(&serde_json::json!({"limits_off": {}})).is_err());
    }

    #[test]
    fn intake_rows_judge_rate_latency_and_losses() {
        let report = serde_json::json!({"webhooks": 1000, "accepted": 1000, "concurrency": 32, "per_second": 6100.0,
                                        "p50_ms": 4.0, "p99_ms": 25.5, "lost": 0});
        let rows = intake_rows(&report).expect("rows");
        assert_eq!(rows[0].met, Some(true));
        assert_eq!(rows[0].figure, "6100/s");
        assert_eq!(rows[2].met, Some(false), "25.5 ms is over 20 ms");
        assert_eq!(rows[3].met, Some(true));
        let lossy = serde_json::json!({"webhooks": 1000, "accepted": 999, "concurrency": 32, "per_second": 6100.0,
                                       "p50_ms": 4.0, "p99_ms": 5.0, "lost": 0});
        assert_eq!(
            intake_rows(&lossy).expect("rows")[3].met,
            Some(false),
            "a refused webhook"
        );
        assert!(intake_rows(&serde_json::json!({})).is_err());
    }
}
