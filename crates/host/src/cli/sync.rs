//! `tether sync FLOW`: one pass of a flow now (poll the source, deliver what is due), then exit.

use tether_core::config::Config;
use tether_core::engine::{FlowRun, SyncReport};

use super::{flows, print_json, CliError, Exit};
use crate::services::now_ms;

pub fn run(config: &Config, name: &str, json: bool) -> Result<Exit, CliError> {
    let prepared = flows::Prepared::new(config, name)?;
    prepared.refuse_disabled()?;
    let flow = prepared.flow();
    let source = prepared.open(config, &flow.source_connector)?;
    let target = prepared.open(config, &flow.target_connector)?;
    let store = &prepared.store;
    let relations = prepared.relations();
    let run = FlowRun {
        flow,
        relations: &relations,
        source,
        store,
        commits: None,
        retry: config.delivery,
        priority: tether_abi::Priority::Live,
        clock: &now_ms,
    };
    let worker = format!("sync-{}", std::process::id());
    let mut report = SyncReport::default();
    // What is queued is delivered even when the source cannot be read this time.
    let (polled, delivered) = prepared.runtime.block_on(async {
        let polled = run.poll(&mut report).await;
        let delivered = run.deliver(&target, &worker, &mut report).await;
        let problem = match (&polled, &delivered, &report.paused) {
            (Err(e), _, _) | (_, Err(e), _) => Some(e.to_string()),
            (_, _, Some(paused)) => Some(format!("paused: {paused}")),
            _ => None,
        };
        // Status is a report, not the work: failing to record it does not fail the sync.
        let _ = store.record_run(&flow.name, problem.as_deref(), now_ms()).await;
        (polled, delivered)
    });
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if let Err(error) = delivered.and(polled) {
        if json {
            print_json(&report)?;
        }
        let exit = match &error {
            tether_core::engine::EngineError::Store(e) if e.is_unreachable() => Exit::Unreachable,
            tether_core::engine::EngineError::Source { error, .. } if error.kind.is_retryable() => Exit::Unreachable,
            _ => Exit::Failed,
        };
        return Err(CliError::new(exit, error.to_string()));
    }
    if json {
        print_json(&report)?;
    } else {
        println!(
            "{}: read {}, queued {}, written {}, unchanged {}, skipped {}, retrying {}, dead letters {}",
            flow.name,
            report.read,
            report.queued,
            report.written,
            report.unchanged,
            report.skipped,
            report.retrying,
            report.dead
        );
    }
    if let Some(reason) = &report.paused {
        let mut error = CliError::new(Exit::Failed, format!("flow `{}` is paused: {reason}", flow.name));
        error.details.push(format!(
            "its records stay queued; reconnect the connector (for GHL: `tether auth ghl --connector {}`) and sync again",
            flow.target_connector
        ));
        return Err(error);
    }
    Ok(if report.dead > 0 { Exit::Failed } else { Exit::Ok })
}
