//! What `tether status` and the dashboard report: each flow's queue, dead letters and last run,
//! each connector's token state. Read from the state store only: no remote API is called.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use tether_core::config::{Config, ConnectorConfig};
use tether_core::store::{FlowCounts, FlowRunRow, Store, StoreError};
use tether_core::vault::{Vault, VaultError};
use tether_ghl::auth::{NEEDS_RECONNECT_SECRET, REFRESH_TOKEN_SECRET};

#[derive(Clone, Debug, Serialize)]
pub struct FlowStatus {
    pub flow: String,
    pub cursor: Option<String>,
    pub queued: i64,
    pub dead_letters: i64,
    pub delivered: i64,
    /// Milliseconds since the epoch of the last poll, sync or delivery problem.
    pub last_run_at: Option<i64>,
    pub last_ok_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// `false` for a flow whose file sets `enabled = false` (set by `tether status`, which
    /// reads the flow files; the store does not know).
    pub enabled: bool,
}

impl FlowStatus {
    /// A flow with nothing in the store yet.
    pub fn empty(flow: String) -> Self {
        FlowStatus {
            flow,
            cursor: None,
            queued: 0,
            dead_letters: 0,
            delivered: 0,
            last_run_at: None,
            last_ok_at: None,
            last_error: None,
            last_error_at: None,
            enabled: true,
        }
    }

    /// The last error while no later run succeeded.
    pub fn current_error(&self) -> Option<&str> {
        self.last_error
            .as_deref()
            .filter(|_| self.last_error_at > self.last_ok_at)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ConnectorStatus {
    pub connector: String,
    pub kind: String,
    pub token: TokenState,
    /// What to do about it, when something is needed.
    pub hint: Option<String>,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// A static credential from the config (API key, private integration token).
    ConfigCredential,
    Connected,
    NotConnected,
    NeedsReconnect,
    /// The connector keeps no token the host can see.
    NotApplicable,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::ConfigCredential => "config credential",
            TokenState::Connected => "connected",
            TokenState::NotConnected => "not connected",
            TokenState::NeedsReconnect => "NEEDS RECONNECT",
            TokenState::NotApplicable => "-",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("secret store: {0}")]
    Vault(#[from] VaultError),
}

/// Every flow that has queued something or run, by name; backfill progress is stored as cursors
/// of its own and is not a flow.
pub async fn flows(store: &Store) -> Result<Vec<FlowStatus>, StoreError> {
    let mut counts: BTreeMap<String, FlowCounts> = store
        .flow_counts()
        .await?
        .into_iter()
        .map(|c| (c.flow.clone(), c))
        .collect();
    let mut runs: BTreeMap<String, FlowRunRow> = store
        .flow_runs()
        .await?
        .into_iter()
        .map(|r| (r.flow.clone(), r))
        .collect();
    let names: BTreeSet<String> = counts.keys().chain(runs.keys()).cloned().collect();
    let mut flows = Vec::with_capacity(names.len());
    for name in names {
        if name.starts_with("backfill:") {
            continue;
        }
        let cursor = store.cursor(&name).await?;
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
            enabled: true,
        });
    }
    Ok(flows)
}

/// Each configured connector's token state. `vault` is needed only for GHL connectors that use
/// OAuth; without one their state is not applicable.
pub async fn connectors(config: &Config, vault: Option<&Vault>) -> Result<Vec<ConnectorStatus>, ReportError> {
    let mut out = Vec::new();
    for connector in config.connectors.values() {
        let (token, hint) = match (vault, connector.plugin.as_str()) {
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

async fn ghl_token_state(
    vault: &Vault,
    connector: &ConnectorConfig,
) -> Result<(TokenState, Option<String>), VaultError> {
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
    // The connector clears a marker by storing an empty value.
    let secret = |name: &'static str| async move {
        Ok::<_, VaultError>(vault.get(&connector.name, name).await?.filter(|v| !v.is_empty()))
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
