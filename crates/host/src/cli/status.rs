//! `tether status`: per flow the cursor, queue depth and dead letters; per connector the token
//! state. Reads the state store only: no remote API is called.

use std::sync::Arc;

use serde::Serialize;
use tether_core::config::{Config, ConnectorConfig};
use tether_core::store::{FlowCounts, FlowRunRow, Store};
use tether_core::vault::{SecretKey, Vault, KEY_ENV};
use tether_ghl::auth::{NEEDS_RECONNECT_SECRET, REFRESH_TOKEN_SECRET};

use super::{print_json, table, CliError, Exit};

#[derive(Serialize)]
struct FlowStatus {
    flow: String,
    cursor: Option<String>,
    queued: i64,
    dead_letters: i64,
    delivered: i64,
    /// Milliseconds since the epoch of the last poll, sync or delivery problem.
    last_run_at: Option<i64>,
    last_ok_at: Option<i64>,
    last_error: Option<String>,
    last_error_at: Option<i64>,
}

#[derive(Serialize)]
pub(crate) struct ConnectorStatus {
    pub(crate) connector: String,
    kind: String,
    pub(crate) token: TokenState,
    /// What to do about it, when something is needed.
    pub(crate) hint: Option<String>,
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TokenState {
    /// A static credential from the config (API key, private integration token).
    ConfigCredential,
    Connected,
    NotConnected,
    NeedsReconnect,
    /// The connector keeps no token the host can see.
    NotApplicable,
}

impl TokenState {
    fn as_str(self) -> &'static str {
        match self {
            TokenState::ConfigCredential => "config credential",
            TokenState::Connected => "connected",
            TokenState::NotConnected => "not connected",
            TokenState::NeedsReconnect => "NEEDS RECONNECT",
            TokenState::NotApplicable => "-",
        }
    }
}

pub fn run(config: &Config, json: bool) -> Result<Exit, CliError> {
    super::block_on(async {
        let store = super::open_store(config).await?;
        let flows = flow_status(&store).await?;
        let connectors = connector_status(config, store).await?;
        let attention = connectors.iter().any(|c| c.token == TokenState::NeedsReconnect);
        if json {
            print_json(&serde_json::json!({ "flows": flows, "connectors": connectors }))?;
        } else {
            let rows: Vec<Vec<String>> = flows
                .iter()
                .map(|f| {
                    vec![
                        f.flow.clone(),
                        f.cursor.clone().unwrap_or_else(|| "-".into()),
                        f.queued.to_string(),
                        f.dead_letters.to_string(),
                        f.delivered.to_string(),
                        when(f.last_run_at),
                        match (&f.last_error, f.last_error_at > f.last_ok_at) {
                            (Some(error), true) => error.clone(),
                            _ => "-".into(),
                        },
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

async fn flow_status(store: &Store) -> Result<Vec<FlowStatus>, CliError> {
    let counts = store.flow_counts().await.map_err(super::store_error)?;
    let mut runs: std::collections::BTreeMap<String, FlowRunRow> = store
        .flow_runs()
        .await
        .map_err(super::store_error)?
        .into_iter()
        .map(|r| (r.flow.clone(), r))
        .collect();
    let mut counts: std::collections::BTreeMap<String, FlowCounts> =
        counts.into_iter().map(|c| (c.flow.clone(), c)).collect();
    let names: std::collections::BTreeSet<String> = counts.keys().chain(runs.keys()).cloned().collect();
    let mut flows = Vec::with_capacity(names.len());
    for name in names {
        // Backfill progress is stored as cursors of their own, not as flows.
        if name.starts_with("backfill:") {
            continue;
        }
        let cursor = store.cursor(&name).await.map_err(super::store_error)?;
        let count = counts.remove(&name).unwrap_or_default();
        let run = runs.remove(&name);
        flows.push(FlowStatus {
            flow: name,
            cursor,
            queued: count.pending,
            dead_letters: count.dead,
            delivered: count.done,
            last_run_at: run.as_ref().map(|r| r.last_run_at),
            last_ok_at: run.as_ref().and_then(|r| r.last_ok_at),
            last_error: run.as_ref().and_then(|r| r.last_error.clone()),
            last_error_at: run.as_ref().and_then(|r| r.last_error_at),
        });
    }
    Ok(flows)
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
        Some(Arc::new(Vault::new(key, store)))
    } else {
        None
    };
    let mut out = Vec::new();
    for connector in config.connectors.values() {
        let (token, hint) = match (&vault, connector.plugin.as_str()) {
            (Some(vault), "ghl") => ghl_token_state(vault, connector).await?,
            _ => (TokenState::NotApplicable, None),
        };
        out.push(ConnectorStatus {
            connector: connector.name.clone(),
            kind: connector.plugin.clone(),
            token,
            hint,
        });
    }
    Ok(out)
}

async fn ghl_token_state(vault: &Vault, connector: &ConnectorConfig) -> Result<(TokenState, Option<String>), CliError> {
    let has = |key: &str| {
        connector
            .config
            .get(key)
            .and_then(|v| v.as_str())
            .is_some_and(|v| !v.trim().is_empty())
    };
    if has("private_token") {
        return Ok((TokenState::ConfigCredential, None));
    }
    let secret = |name: &'static str| async move {
        // The connector clears a marker by storing an empty value.
        let value = vault
            .get(&connector.name, name)
            .await
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
        Ok::<_, CliError>(value.filter(|v| !v.is_empty()))
    };
    let reconnect = format!("run `tether auth ghl --connector {}`", connector.name);
    if let Some(reason) = secret(NEEDS_RECONNECT_SECRET).await? {
        return Ok((TokenState::NeedsReconnect, Some(format!("{reason}; {reconnect}"))));
    }
    Ok(match secret(REFRESH_TOKEN_SECRET).await? {
        Some(_) => (TokenState::Connected, None),
        None => (TokenState::NotConnected, Some(reconnect)),
    })
}
