//! The long-running host's engine (`tether run`): a poller per interval- or cron-driven flow,
//! delivery workers per flow, and webhook intake.
//!
//! Invariants:
//! * One poller per flow across every host sharing the store: a poll runs only under the lease
//!   `poll:<flow>` (max(2 × interval, `poll_lease_ms`)), renewed at each poll and, while a poll
//!   takes long, during it; a host that dies loses it when it expires.
//! * A webhook is answered 2xx only after its events are queued durably; an event id is queued
//!   once per flow however often the sender retries, so a lost answer costs nothing. Webhooks
//!   arriving together share one transaction (see `group_commit`), and with it one disk sync.
//! * Delivery workers only claim rows (see `store::delivery`), so any number of them, in any
//!   number of hosts, write each row once; the engine's rules (parents first, echoes, conflicts,
//!   unchanged records, retries) hold per row.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tether_abi::{Connector, ConnectorError, ErrorKind, Priority, WebhookRequest};
use tokio::sync::{watch, Notify};

use crate::engine::{FlowRun, RetryPolicy, SyncReport};
use crate::flow::{Flow, Relations, Trigger};
use crate::store::{CommitError, GroupCommit, IntakeWrite, Store, WebhookLogRow};

/// A flow ready to run: its connectors opened.
pub struct FlowSlot {
    pub flow: Flow,
    pub relations: Relations,
    pub source: Arc<dyn Connector>,
    pub target: Arc<dyn Connector>,
}

pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How a flow's run error starts when its delivery paused because the target refused its
/// credentials (see `FlowRun::deliver`); alert checks read it back.
pub const PAUSED_PREFIX: &str = "paused: ";

pub struct SchedulerSettings {
    pub retry: RetryPolicy,
    /// Names this host in leases and claims; unique per process.
    pub host_id: String,
    /// Delivery workers per flow.
    pub workers: usize,
    /// How often an idle worker looks for rows come due (retries, other hosts' intake).
    pub idle_ms: u64,
    /// The shortest life of a poll lease: how soon another host takes over a dead host's polling.
    pub poll_lease_ms: u64,
}

pub struct Scheduler {
    store: Store,
    slots: Vec<FlowSlot>,
    wake: Vec<Notify>,
    settings: SchedulerSettings,
    clock: Clock,
    /// Webhooks taken in and delivery results, committed together.
    commits: GroupCommit,
}

/// What became of one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Queued durably for this many flow rows (0: no flow takes these events, or all were seen).
    Queued { rows: usize, duplicates: usize },
    /// The signature, timestamp or replay check failed.
    Refused(String),
    /// The body could not be read as this connector's webhook.
    Invalid(String),
    /// No flow reads this connector's webhooks.
    UnknownConnector,
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// Nothing was acknowledged: the sender must retry.
    #[error("the webhook could not be stored: {0}")]
    Store(#[from] CommitError),
}

impl Scheduler {
    pub fn new(store: Store, slots: Vec<FlowSlot>, settings: SchedulerSettings, clock: Clock) -> Arc<Scheduler> {
        let wake = slots.iter().map(|_| Notify::new()).collect();
        Arc::new(Scheduler {
            commits: GroupCommit::new(store.clone(), Arc::clone(&clock)),
            store,
            slots,
            wake,
            settings,
            clock,
        })
    }

    pub fn flows(&self) -> impl Iterator<Item = &Flow> {
        self.slots.iter().map(|s| &s.flow)
    }

    /// Runs pollers and workers until `stop` turns true, then lets in-flight work finish.
    pub async fn run(self: &Arc<Self>, stop: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if slot.flow.poll_every().is_some() || matches!(slot.flow.trigger, Trigger::Schedule { .. }) {
                tasks.spawn(Arc::clone(self).poller(index, stop.clone()));
            }
            // Every flow gets workers, backfill-driven ones too: a `tether backfill` on another
            // host queues rows that this host's workers help deliver.
            for n in 0..self.settings.workers.max(1) {
                tasks.spawn(Arc::clone(self).worker(index, n, stop.clone()));
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn flow_run<'a>(&'a self, slot: &'a FlowSlot, priority: Priority) -> FlowRun<'a> {
        FlowRun {
            flow: &slot.flow,
            relations: &slot.relations,
            source: Arc::clone(&slot.source),
            store: &self.store,
            commits: Some(&self.commits),
            priority,
            retry: self.settings.retry,
            clock: &*self.clock,
        }
    }

    /// How long until the flow's next poll: its interval, or its cron schedule's next time.
    fn next_poll_in(&self, flow: &Flow) -> Option<Duration> {
        if let Some(every) = flow.poll_every() {
            return Some(every);
        }
        let Trigger::Schedule { cron } = &flow.trigger else {
            return None;
        };
        let cron: croner::Cron = cron.parse().ok()?;
        let now = chrono::DateTime::from_timestamp_millis((self.clock)())?;
        let next = cron.find_next_occurrence(&now, false).ok()?;
        Some(Duration::from_millis(
            u64::try_from((next - now).num_milliseconds()).unwrap_or(0),
        ))
    }

    async fn poller(self: Arc<Self>, index: usize, mut stop: watch::Receiver<bool>) {
        let slot = &self.slots[index];
        let flow = &slot.flow;
        let lease = format!("poll:{}", flow.name);
        let scheduled = matches!(flow.trigger, Trigger::Schedule { .. });
        loop {
            let Some(wait) = self.next_poll_in(flow) else {
                tracing::error!(flow = %flow.name, "the flow's schedule has no next time; its poller stops");
                return;
            };
            // A schedule fires at its times; an interval polls at once, then every interval.
            if scheduled && sleep_or_stop(wait, &mut stop).await {
                return;
            }
            let ttl = (wait * 2).max(Duration::from_millis(self.settings.poll_lease_ms.max(1)));
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            match self
                .store
                .acquire_lease(&lease, &self.settings.host_id, ttl_ms, (self.clock)())
                .await
            {
                Ok(true) => self.poll_leased(index, &lease, ttl).await,
                Ok(false) => {}
                Err(error) => tracing::warn!(flow = %flow.name, %error, "cannot take the poll lease"),
            }
            if !scheduled && sleep_or_stop(wait, &mut stop).await {
                return;
            }
        }
    }

    /// Polls while renewing the lease every third of its life, so a slow poll never lets another
    /// host poll the same flow meanwhile.
    async fn poll_leased(&self, index: usize, lease: &str, ttl: Duration) {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let poll = self.poll_once(index);
        tokio::pin!(poll);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + ttl / 3, ttl / 3);
        loop {
            tokio::select! {
                () = &mut poll => return,
                _ = renew.tick() => {
                    match self.store.acquire_lease(lease, &self.settings.host_id, ttl_ms, (self.clock)()).await {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(%lease, "the poll lease was lost during a poll"),
                        Err(error) => tracing::warn!(%lease, %error, "cannot renew the poll lease"),
                    }
                }
            }
        }
    }

    async fn poll_once(&self, index: usize) {
        let slot = &self.slots[index];
        let run = self.flow_run(slot, Priority::Live);
        let mut report = SyncReport::default();
        let result = run.poll(&mut report).await;
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(error) = &error {
            tracing::warn!(flow = %slot.flow.name, %error, "poll failed");
        } else if report.queued > 0 {
            tracing::info!(flow = %slot.flow.name, read = report.read, queued = report.queued, "polled");
        }
        if let Err(store) = self
            .store
            .record_run(&slot.flow.name, error.as_deref(), (self.clock)())
            .await
        {
            tracing::warn!(flow = %slot.flow.name, error = %store, "cannot record the run");
        }
        if report.queued > 0 {
            self.wake[index].notify_waiters();
        }
    }

    async fn worker(self: Arc<Self>, index: usize, n: usize, mut stop: watch::Receiver<bool>) {
        let slot = &self.slots[index];
        let worker = format!("{}/{}/{n}", self.settings.host_id, slot.flow.name);
        let idle = Duration::from_millis(self.settings.idle_ms.max(1));
        loop {
            if *stop.borrow() {
                return;
            }
            let run = self.flow_run(slot, Priority::Live);
            let mut report = SyncReport::default();
            let result = run.deliver(&slot.target, &worker, &mut report).await;
            let problem = match (&result, &report.paused) {
                (Err(error), _) => Some(error.to_string()),
                (Ok(()), Some(paused)) => Some(format!("{PAUSED_PREFIX}{paused}")),
                (Ok(()), None) => None,
            };
            if report.written + report.dead + report.retrying > 0 {
                tracing::info!(
                    flow = %slot.flow.name,
                    written = report.written,
                    unchanged = report.unchanged,
                    retrying = report.retrying,
                    dead = report.dead,
                    "delivered"
                );
            }
            for warning in &report.warnings {
                tracing::warn!(flow = %slot.flow.name, "{warning}");
            }
            if let Some(problem) = &problem {
                tracing::warn!(flow = %slot.flow.name, error = %problem, "delivery stopped");
                let _ = self
                    .store
                    .record_run(&slot.flow.name, Some(problem), (self.clock)())
                    .await;
            }
            tokio::select! {
                _ = self.wake[index].notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Verifies one webhook with the connector it was sent to, queues its events for every
    /// webhook-driven flow reading that connector's stream, logs it, and wakes those flows.
    /// Returns once the events are durable: only then may the sender be told 2xx.
    pub async fn intake(&self, instance: &str, request: WebhookRequest) -> Result<Intake, IntakeError> {
        let received_at = request.received_at_ms;
        let readers: Vec<usize> = (0..self.slots.len())
            .filter(|&i| {
                let flow = &self.slots[i].flow;
                flow.source_connector == instance && matches!(flow.trigger, Trigger::Webhook { .. })
            })
            .collect();
        let Some(&first) = readers.first() else {
            return Ok(Intake::UnknownConnector);
        };
        let connector = Arc::clone(&self.slots[first].source);
        let parsed = tokio::task::spawn_blocking(move || connector.webhook(request))
            .await
            .unwrap_or_else(|e| Err(ConnectorError::fatal(format!("webhook check failed to complete: {e}"))));
        let mut entry = WebhookLogRow {
            id: 0,
            received_at,
            connector: instance.to_owned(),
            event_types: String::new(),
            verdict: String::new(),
            status: 200,
            queued: 0,
            detail: None,
        };
        let events = match parsed {
            Ok(events) => events,
            // A genuine delivery already taken: acknowledged, so the sender stops retrying.
            Err(error) if error.kind == ErrorKind::Conflict => {
                entry.verdict = "duplicate".into();
                entry.detail = Some(error.message);
                self.commits
                    .intake(IntakeWrite {
                        queue: Vec::new(),
                        log: entry,
                    })
                    .await?;
                return Ok(Intake::Queued { rows: 0, duplicates: 1 });
            }
            Err(error) => {
                let refused = error.kind == ErrorKind::Auth;
                entry.verdict = if refused { "refused" } else { "invalid" }.into();
                entry.status = if refused { 401 } else { 400 };
                entry.detail = Some(error.message.clone());
                self.commits
                    .intake(IntakeWrite {
                        queue: Vec::new(),
                        log: entry,
                    })
                    .await?;
                return Ok(if refused {
                    Intake::Refused(error.message)
                } else {
                    Intake::Invalid(error.message)
                });
            }
        };
        let types: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| e.record.event.as_ref().map(|i| i.kind.as_str()))
            .collect();
        entry.event_types = types.into_iter().collect::<Vec<_>>().join(",");
        entry.verdict = "verified".into();
        let mut queue = Vec::new();
        let mut woken = Vec::new();
        for &index in &readers {
            let flow = &self.slots[index].flow;
            let records: Vec<_> = events
                .iter()
                .filter(|e| e.stream == flow.stream)
                .map(|e| e.record.clone())
                .collect();
            if !records.is_empty() {
                queue.push((flow.name.clone(), records));
                woken.push(index);
            }
        }
        let queued = self.commits.intake(IntakeWrite { queue, log: entry }).await?;
        let (mut rows, mut duplicates) = (0, 0);
        for (index, queued) in woken.into_iter().zip(queued) {
            rows += queued.inserted;
            duplicates += queued.duplicates;
            if queued.inserted > 0 {
                self.wake[index].notify_waiters();
            }
        }
        Ok(Intake::Queued { rows, duplicates })
    }
}

/// Sleeps `wait`; true when asked to stop meanwhile.
async fn sleep_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop.changed() => true,
    }
}
