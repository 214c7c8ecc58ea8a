//! `tether dry-run FLOW [--limit N]`: read and map real records, print the writes, write nothing.

use serde_json::Value;
use tether_core::config::Config;
use tether_core::engine::FlowRun;

use super::{flows, print_json, CliError, Exit};
use crate::services::now_ms;

pub fn run(config: &Config, name: &str, limit: usize, json: bool) -> Result<Exit, CliError> {
    let prepared = flows::Prepared::new(config, name)?;
    let flow = prepared.flow();
    // Only the source is opened: a dry run never touches the target.
    let source = prepared.open(config, &flow.source_connector)?;
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
    let planned = prepared
        .runtime
        .block_on(run.dry_run(limit))
        .map_err(|e| CliError::new(Exit::Unreachable, e.to_string()))?;
    let failing = planned.iter().filter(|p| p.error.is_some()).count();
    if json {
        print_json(&serde_json::json!({ "writes": planned }))?;
    } else {
        for write in &planned {
            let target = write
                .target_id
                .as_deref()
                .map(|id| format!(" (linked to {id})"))
                .unwrap_or_default();
            match (&write.input, &write.error) {
                (_, Some(error)) => println!("{} {}: would be a dead letter: {error}", write.action, write.source_id),
                (Some(_), None) if write.skipped.is_some() => println!(
                    "{} {}: skipped, no call: {}",
                    write.action,
                    write.source_id,
                    write.skipped.as_deref().unwrap_or_default()
                ),
                (Some(_), None) if write.unchanged => {
                    println!("{} {}{target}: unchanged, no call", write.action, write.source_id)
                }
                (Some(input), None) => {
                    println!(
                        "{} {}{target}: {}",
                        write.action,
                        write.source_id,
                        Value::Object(input.clone())
                    )
                }
                (None, None) => {}
            }
        }
        println!(
            "\n{} record(s) read and mapped, {failing} would fail; nothing was written",
            planned.len()
        );
    }
    Ok(if failing > 0 { Exit::Failed } else { Exit::Ok })
}
