//! `tether backfill FLOW --since DATE [--until DATE] [--window 7d]`: history in windows, oldest
//! first, with a progress bar and a report per window; running it again resumes after the last
//! completed window.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tether_abi::Priority;
use tether_core::config::Config;
use tether_core::engine::{parse_instant, FlowRun, SyncReport, WindowReport};

use super::{flows, print_json, CliError, Exit};
use crate::services::now_ms;

pub struct BackfillArgs<'a> {
    pub flow: &'a str,
    pub since: &'a str,
    pub until: Option<&'a str>,
    pub window: &'a str,
    pub json: bool,
}

pub fn run(config: &Config, args: &BackfillArgs<'_>) -> Result<Exit, CliError> {
    let instant = |text: &str, option: &str| {
        parse_instant(text).ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!("{option} `{text}` is not a date (YYYY-MM-DD) or an RFC 3339 time"),
            )
        })
    };
    let since = instant(args.since, "--since")?;
    let until = match args.until {
        Some(until) => instant(until, "--until")?,
        None => now_ms(),
    };
    let window = humantime_window(args.window)?;
    if until <= since {
        return Err(CliError::new(Exit::Usage, "--until must be later than --since"));
    }
    let prepared = flows::Prepared::new(config, args.flow)?;
    prepared.refuse_disabled()?;
    let flow = prepared.flow();
    let source = prepared.open(config, &flow.source_connector)?;
    let target = prepared.open(config, &flow.target_connector)?;
    let relations = prepared.relations();
    let run = FlowRun {
        flow,
        relations: &relations,
        source,
        store: &prepared.store,
        commits: None,
        retry: config.delivery,
        priority: Priority::Backfill,
        clock: &now_ms,
    };
    let windows = u64::try_from((until - since + window - 1) / window).unwrap_or(0);
    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(windows)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} windows  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut reports: Vec<WindowReport> = Vec::new();
    let mut total = SyncReport::default();
    let worker = format!("backfill-{}", std::process::id());
    let outcome = prepared.runtime.block_on(run.backfill(
        &target,
        &worker,
        (since, until, window),
        |w| {
            let line = if w.resumed {
                format!("{} .. {}  done earlier", w.since, w.until)
            } else {
                format!(
                    "{} .. {}  read {}, written {}, unchanged {}, failed {}, retrying {}",
                    w.since, w.until, w.read, w.written, w.unchanged, w.failed, w.retrying
                )
            };
            if bar.is_hidden() {
                if !args.json {
                    println!("{line}");
                }
            } else {
                bar.println(line);
            }
            bar.inc(1);
            reports.push(w.clone());
        },
        &mut total,
    ));
    for warning in &total.warnings {
        eprintln!("warning: {warning}");
    }
    bar.finish_and_clear();
    if args.json {
        print_json(&serde_json::json!({ "windows": reports, "total": total }))?;
    } else {
        println!(
            "{}: {} windows; read {}, written {}, unchanged {}, failed {}, retrying {}",
            flow.name,
            reports.len(),
            total.read,
            total.written,
            total.unchanged,
            total.dead,
            total.retrying
        );
    }
    if let Err(error) = outcome {
        return Err(CliError::new(
            Exit::Unreachable,
            format!("{error}; run the same command again to resume"),
        ));
    }
    if let Some(reason) = &total.paused {
        return Err(CliError::new(
            Exit::Failed,
            format!("backfill of `{}` paused: {reason}", flow.name),
        ));
    }
    Ok(if total.dead > 0 { Exit::Failed } else { Exit::Ok })
}

fn humantime_window(text: &str) -> Result<i64, CliError> {
    let parsed: Duration = text
        .parse::<humantime::Duration>()
        .map(Into::into)
        .map_err(|e| CliError::new(Exit::Usage, format!("--window `{text}` is not a duration ({e})")))?;
    i64::try_from(parsed.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .ok_or_else(|| CliError::new(Exit::Usage, format!("--window `{text}` must be longer than zero")))
}
