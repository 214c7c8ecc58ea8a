//! `tether dlq list | replay ID|--all | drop ID`: the dead-letter list.

use serde::Serialize;
use tether_core::config::Config;
use tether_core::store::{DeadLetter, Store};

use super::{table, CliError, Exit};
use crate::services::now_ms;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Dead letters: flow, record, attempts, last error.
    List {
        /// Only this flow's.
        #[arg(long)]
        flow: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Queues dead letters again, due now, with a fresh attempt budget.
    Replay {
        /// The dead letter's id (from `dlq list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every dead letter (of --flow, when given).
        #[arg(long)]
        all: bool,
        #[arg(long, requires = "all")]
        flow: Option<String>,
    },
    /// Deletes one dead letter for good.
    Drop { id: i64 },
}

#[derive(Serialize)]
struct Row<'a> {
    id: i64,
    flow: &'a str,
    source_id: &'a str,
    attempts: i64,
    last_error: Option<&'a str>,
    failed_at_ms: i64,
    record: serde_json::Value,
}

impl<'a> From<&'a DeadLetter> for Row<'a> {
    fn from(letter: &'a DeadLetter) -> Self {
        Row {
            id: letter.id,
            flow: &letter.flow,
            source_id: &letter.source_id,
            attempts: letter.attempts,
            last_error: letter.last_error.as_deref(),
            failed_at_ms: letter.updated_at,
            record: serde_json::from_str(&letter.record).unwrap_or(serde_json::Value::String(letter.record.clone())),
        }
    }
}

pub fn run(config: &Config, command: &DlqCommand) -> Result<Exit, CliError> {
    super::block_on(async {
        let store = super::open_store(config).await?;
        match command {
            DlqCommand::List { flow, limit, json } => list(&store, flow.as_deref(), *limit, *json).await,
            DlqCommand::Replay { id, flow, .. } => {
                let replayed = store
                    .replay(*id, flow.as_deref(), now_ms())
                    .await
                    .map_err(super::store_error)?;
                match (id, replayed) {
                    (Some(id), 0) => Err(CliError::new(Exit::Failed, format!("there is no dead letter {id}"))),
                    _ => {
                        println!(
                            "replayed {replayed} dead letter{}",
                            if replayed == 1 { "" } else { "s" }
                        );
                        Ok(Exit::Ok)
                    }
                }
            }
            DlqCommand::Drop { id } => {
                if store.drop_dead(*id).await.map_err(super::store_error)? {
                    println!("dropped dead letter {id}");
                    Ok(Exit::Ok)
                } else {
                    Err(CliError::new(Exit::Failed, format!("there is no dead letter {id}")))
                }
            }
        }
    })
}

async fn list(store: &Store, flow: Option<&str>, limit: i64, json: bool) -> Result<Exit, CliError> {
    let letters = store.dead_letters(flow, limit).await.map_err(super::store_error)?;
    let rows: Vec<Row> = letters.iter().map(Row::from).collect();
    if json {
        super::print_json(&serde_json::json!({ "dead_letters": rows }))?;
        return Ok(Exit::Ok);
    }
    let text: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.flow.to_owned(),
                r.source_id.to_owned(),
                r.attempts.to_string(),
                r.last_error.unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["ID", "FLOW", "RECORD", "ATTEMPTS", "LAST ERROR"], &text)
    );
    if text.is_empty() {
        println!("(no dead letters)");
    }
    Ok(Exit::Ok)
}
