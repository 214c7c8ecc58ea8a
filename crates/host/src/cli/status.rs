//! `tether status`: per flow the cursor, queue depth and dead letters; per connector the token
//! state. Reads the state store only: no remote API is called.

use tether_core::config::Config;
use tether_core::store::Store;
use tether_core::vault::{SecretKey, Vault, KEY_ENV};

use super::{print_json, table, CliError, Exit};
use crate::report::{self, ConnectorStatus, ReportError, TokenState};

pub fn run(config: &Config, json: bool) -> Result<Exit, CliError> {
    super::block_on(async {
        let store = super::open_store(config).await?;
        let mut flows = report::flows(&store).await.map_err(super::store_error)?;
        mark_disabled(config, &mut flows)?;
        let connectors = connector_status(config, store).await?;
        let attention = connectors.iter().any(|c| c.token == TokenState::NeedsReconnect);
        if json {
            print_json(&serde_json::json!({ "flows": flows, "connectors": connectors }))?;
        } else {
            let rows: Vec<Vec<String>> = flows
                .iter()
                .map(|f| {
                    vec![
                        if f.enabled {
                            f.flow.clone()
                        } else {
                            format!("{} (disabled)", f.flow)
                        },
                        f.cursor.clone().unwrap_or_else(|| "-".into()),
                        f.queued.to_string(),
                        f.dead_letters.to_string(),
                        f.delivered.to_string(),
                        when(f.last_run_at),
                        f.current_error().unwrap_or("-").to_owned(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(
                    &[
                        "FLOW",
                        "CURSOR",
                        "QUEUED",
                        "DEAD",
                        "DELIVERED",
                        "LAST RUN",
                        "LAST ERROR"
                    ],
                    &rows
                )
            );
            if rows.is_empty() {
                println!("(no flow has queued anything yet)");
            }
            println!();
            let rows: Vec<Vec<String>> = connectors
                .iter()
                .map(|c| {
                    vec![
                        c.connector.clone(),
                        c.kind.clone(),
                        c.token.as_str().into(),
                        c.hint.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!("{}", table::render(&["CONNECTOR", "TYPE", "TOKEN", "HINT"], &rows));
        }
        // A connector that needs the user is a failed check, for scripts and monitors.
        Ok(if attention { Exit::Failed } else { Exit::Ok })
    })
}

/// Flows whose file sets `enabled = false` are marked, and listed even with nothing stored yet.
fn mark_disabled(config: &Config, flows: &mut Vec<report::FlowStatus>) -> Result<(), CliError> {
    for super::flows::FlowText { name, text, .. } in super::flows::flow_texts(&config.flows_dir)? {
        if tether_core::flow::declared_enabled(&text) != Some(false) {
            continue;
        }
        match flows.iter_mut().find(|f| f.flow == name) {
            Some(f) => f.enabled = false,
            None => {
                let mut f = report::FlowStatus::empty(name);
                f.enabled = false;
                flows.push(f);
            }
        }
    }
    flows.sort_by(|a, b| a.flow.cmp(&b.flow));
    Ok(())
}

/// RFC 3339 to the second, or `-`.
fn when(ms: Option<i64>) -> String {
    ms.and_then(|ms| u64::try_from(ms / 1000).ok())
        .map(|secs| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
        })
        .unwrap_or_else(|| "-".into())
}

/// Each connector's token state; alert checks use it too, so there is one notion of "needs
/// reconnecting".
pub(crate) async fn connector_status(config: &Config, store: Store) -> Result<Vec<ConnectorStatus>, CliError> {
    let needs_vault = config.connectors.values().any(|c| c.plugin == "ghl");
    let vault = if needs_vault {
        let key = SecretKey::load(std::env::var(KEY_ENV).ok().as_deref(), &config.key_file)
            .map_err(|e| CliError::new(Exit::Usage, e.to_string()))?;
        Some(Vault::new(key, store))
    } else {
        None
    };
    report::connectors(config, vault.as_ref()).await.map_err(|e| match e {
        ReportError::Store(e) => super::store_error(e),
        e => CliError::new(Exit::Failed, e.to_string()),
    })
}
