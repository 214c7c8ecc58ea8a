//! `tether sync FLOW`: one pass of a flow now (poll the source, deliver what is due), then exit.

use std::sync::Arc;

use tether_core::config::Config;
use tether_core::engine::{FlowRun, SyncReport};

use super::{flows, print_json, CliError, Exit};
use crate::services::now_ms;

pub fn run(config: &Config, name: &str, json: bool) -> Result<Exit, CliError> {
    let checked = flows::check_all(config)?;
    if !checked.problems.is_empty() {
        return Err(flows::problems_error(checked.problems));
    }
    let flow = checked
        .flows
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| CliError::new(Exit::Usage, format!("there is no flow `{name}`")))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::new(Exit::Failed, format!("cannot start the async runtime: {e}")))?;
    let store = runtime.block_on(super::open_store(config))?;
    let context = super::host_context(config, &checked.registry, &runtime, store.clone())?;
    // Opening may touch stored tokens, which blocks: do it here, not on a runtime worker.
    let open = |instance: &str| {
        let connector = config.connectors.get(instance).ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!("connector `{instance}` is not in the configuration"),
            )
        })?;
        let host = context.for_instance(instance, connector.rate_limit);
        checked
            .registry
            .open(host, connector)
            .map(Arc::from)
            .map_err(|e| CliError::new(Exit::Failed, format!("connector `{instance}` cannot be opened: {e}")))
    };
    let source = open(&flow.source_connector)?;
    let target = open(&flow.target_connector)?;
    let run = FlowRun {
        flow,
        source,
        store: &store,
        retry: config.delivery,
        clock: &now_ms,
    };
    let worker = format!("sync-{}", std::process::id());
    let mut report = SyncReport::default();
    // What is queued is delivered even when the source cannot be read this time.
    let (polled, delivered) = runtime.block_on(async {
        let polled = run.poll(&mut report).await;
        (polled, run.deliver(&target, &worker, &mut report).await)
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
