//! The alert checker of `tether run`: every `check_every_secs`, under the store lease `alerts`
//! (one sender among hosts sharing a database), it gathers a [`Snapshot`], lets
//! [`tether_core::alerts::decide`] say which incidents open or resolve, posts each message as
//! Slack-compatible JSON `{"text": ...}` to `webhook_url`, and records the transition only once
//! the receiver answered 2xx. A failed send is retried at the next check; a restart re-sends
//! nothing already accepted. The URL is a secret: it is never logged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tether_core::alerts::{self, ConnectorHealth, FlowHealth, OpenIncident, Snapshot, Thresholds, Transition};
use tether_core::config::{AlertsConfig, Config};
use tether_core::scheduler::{Clock, Scheduler};
use tether_core::store::{Store, StoreError};
use tether_core::telemetry;
use tether_core::vault::Vault;
use tokio::sync::watch;

use crate::report::{self, TokenState};

pub const LEASE: &str = "alerts";
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the connectors' token state: {0}")]
    TokenState(String),
    #[error("cannot build the HTTP client for alerts: {0}")]
    Client(String),
}

/// What one check did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub opened: usize,
    pub resolved: usize,
    /// Messages the receiver did not accept: tried again next check.
    pub failed: usize,
}

pub struct Checker {
    store: Store,
    config: Config,
    settings: AlertsConfig,
    scheduler: Arc<Scheduler>,
    /// The running host's vault, for the token states (never a second copy of the key).
    vault: Arc<Vault>,
    host_id: String,
    clock: Clock,
    since_ms: i64,
    client: reqwest::Client,
}

impl Checker {
    pub fn new(
        store: Store,
        config: Config,
        settings: AlertsConfig,
        scheduler: Arc<Scheduler>,
        vault: Arc<Vault>,
        host_id: String,
        clock: Clock,
    ) -> Result<Checker, AlertError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .timeout(SEND_TIMEOUT)
            .build()
            .map_err(|e| AlertError::Client(e.without_url().to_string()))?;
        let since_ms = clock();
        Ok(Checker {
            store,
            config,
            settings,
            scheduler,
            vault,
            host_id,
            clock,
            since_ms,
            client,
        })
    }

    /// Checks every `check_every_secs` while this host holds the lease, until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_secs(self.settings.check_every_secs.max(1));
        let ttl = i64::try_from((every * 3).max(Duration::from_secs(10)).as_millis()).unwrap_or(i64::MAX);
        loop {
            match self
                .store
                .acquire_lease(LEASE, &self.host_id, ttl, (self.clock)())
                .await
            {
                Ok(true) => match self.check_once().await {
                    Ok(report) if report.failed > 0 => {
                        tracing::warn!(
                            failed = report.failed,
                            "alert messages not accepted; retried at the next check"
                        )
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "alert check failed"),
                },
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "cannot take the alerts lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.changed() => break,
            }
        }
        let _ = self.store.release_lease(LEASE, &self.host_id).await;
    }

    /// One check: snapshot, decide, send, record what was accepted.
    pub async fn check_once(&self) -> Result<CheckReport, AlertError> {
        let snapshot = self.snapshot().await?;
        let open: Vec<OpenIncident> = self
            .store
            .open_alerts()
            .await?
            .into_iter()
            .map(|a| OpenIncident {
                key: a.key,
                text: a.text,
            })
            .collect();
        let thresholds = Thresholds {
            dead_letters_over: self.settings.dead_letters_over,
            stall_after_ms: i64::try_from(self.settings.stall_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
        };
        let mut report = CheckReport::default();
        for transition in alerts::decide(&snapshot, thresholds, &open) {
            if !self.send(transition.text()).await {
                report.failed += 1;
                continue;
            }
            let now = (self.clock)();
            match &transition {
                Transition::Open { key, text } => {
                    self.store.open_alert(key, text, now).await?;
                    report.opened += 1;
                    metrics::counter!(telemetry::ALERTS_SENT, "state" => "open").increment(1);
                    tracing::warn!(incident = %key, "alert sent");
                }
                Transition::Resolve { key, .. } => {
                    self.store.resolve_alert(key, now).await?;
                    report.resolved += 1;
                    metrics::counter!(telemetry::ALERTS_SENT, "state" => "resolved").increment(1);
                    tracing::info!(incident = %key, "resolved message sent");
                }
            }
        }
        metrics::counter!(telemetry::ALERT_CHECKS).increment(1);
        Ok(report)
    }

    async fn snapshot(&self) -> Result<Snapshot, AlertError> {
        let now_ms = (self.clock)();
        let connectors = report::connectors(&self.config, Some(&self.vault))
            .await
            .map_err(|e| AlertError::TokenState(e.to_string()))?
            .into_iter()
            .map(|c| ConnectorHealth {
                needs_reconnect: (c.token == TokenState::NeedsReconnect)
                    .then(|| c.hint.unwrap_or_else(|| "its credentials were refused".into())),
                name: c.connector,
            })
            .collect();
        let mut progress: BTreeMap<String, _> = self
            .store
            .flow_progress(now_ms)
            .await?
            .into_iter()
            .map(|p| (p.flow.clone(), p))
            .collect();
        let mut runs: BTreeMap<String, _> = self
            .store
            .flow_runs()
            .await?
            .into_iter()
            .map(|r| (r.flow.clone(), r))
            .collect();
        let flows = self
            .scheduler
            .flows()
            .map(|flow| {
                let progress = progress.remove(&flow.name).unwrap_or_default();
                let run = runs.remove(&flow.name);
                let paused = run.as_ref().and_then(|r| {
                    alerts::pause_in_force(r.last_error.as_deref(), r.last_error_at, progress.last_finished_at)
                });
                FlowHealth {
                    name: flow.name.clone(),
                    target_connector: flow.target_connector.clone(),
                    interval_ms: alerts::trigger_interval_ms(flow, now_ms),
                    last_ok_at: run.as_ref().and_then(|r| r.last_ok_at),
                    paused,
                    dead: progress.dead,
                    due: progress.due,
                    oldest_due_at: progress.oldest_due_at,
                    last_finished_at: progress.last_finished_at,
                }
            })
            .collect();
        Ok(Snapshot {
            now_ms,
            since_ms: self.since_ms,
            connectors,
            flows,
        })
    }

    /// Posts `{"text": text}`; true when the receiver answered 2xx.
    async fn send(&self, text: &str) -> bool {
        let result = self
            .client
            .post(&self.settings.webhook_url)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await;
        match result {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    "the alert receiver refused a message"
                );
                false
            }
            Err(error) => {
                // Without the URL: it carries the receiver's secret.
                tracing::warn!(error = %error.without_url(), "cannot reach the alert receiver");
                false
            }
        }
    }
}
