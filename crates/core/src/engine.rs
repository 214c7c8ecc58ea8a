//! One pass of a flow: poll the source into the outbox, then deliver what is due.
//!
//! Invariants (with the store's):
//! * A page of records and the cursor after it are queued in one transaction.
//! * A record whose mapped input hashes the same as what was last written to its target costs
//!   no API call.
//! * A record the mapping cannot convert goes to the dead-letter list with the mapping's reason;
//!   so does a write that fails for good. Transient failures retry with exponential backoff and
//!   jitter (or the target's `Retry-After`) until the attempt limit, then become dead letters.
//! * Connector calls are blocking and run on tokio's blocking pool.

use std::sync::Arc;

use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tether_abi::{
    Connector, ConnectorError, ErrorKind, Fields, Page, Priority, ReadPosition, ReadRequest, Record, WriteRequest,
};

use crate::flow::{ConflictPolicy, Flow, Relations};
use crate::store::{
    Claimed, CommitError, EventKind, Finish, GroupCommit, LinkKey, LinkRow, LinkSide, NewEvent, Outcome, Store,
    StoreError,
};
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("reading `{stream}` failed: {error}")]
    Source { stream: String, error: ConnectorError },
}

/// Attempts and waits of delivery retries: `[delivery]` in tether.toml.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    pub max_attempts: i64,
    #[serde(rename = "backoff_base_ms")]
    pub base_ms: i64,
    #[serde(rename = "max_backoff_ms")]
    pub max_ms: i64,
    /// How long a claimed row belongs to its worker. A worker that dies (a crash, a kill) holds
    /// its rows this long before another may take them; it must exceed one write's duration.
    pub lease_ms: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_ms: 1_000,
            max_ms: 15 * 60_000,
            lease_ms: 5 * 60_000,
        }
    }
}

impl RetryPolicy {
    /// Full jitter in [d/2, d], d = base * 2^(attempt-1), capped; a target's delay wins if longer.
    fn next_attempt_in(&self, attempt: i64, retry_after_ms: Option<u64>) -> i64 {
        let exp = self
            .base_ms
            .saturating_mul(1 << (attempt - 1).clamp(0, 20))
            .min(self.max_ms)
            .max(1);
        let jittered = rand::thread_rng().gen_range(exp / 2..=exp);
        jittered.max(retry_after_ms.map_or(0, |ms| ms as i64))
    }
}

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub read: usize,
    pub queued: usize,
    /// Records already queued before (an event seen twice).
    pub duplicates: usize,
    pub written: usize,
    /// Mapped to exactly what was last written: no API call.
    pub unchanged: usize,
    /// Deleted at the source, for a flow whose action does not delete.
    pub skipped: usize,
    pub retrying: usize,
    pub dead: usize,
    /// Our own writes coming back from the target system, not synced back.
    pub echoes: usize,
    /// Changes not written because a two-way conflict policy gave the target precedence.
    pub conflicts: usize,
    /// Delivery stopped because the target refused its credentials; the rows stay queued.
    pub paused: Option<String>,
    /// Fields the target silently dropped, one line each.
    pub warnings: Vec<String>,
}

/// What one backfill window did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WindowReport {
    pub since: String,
    pub until: String,
    /// Completed by an earlier run that was stopped: not read again.
    pub resumed: bool,
    pub read: usize,
    pub written: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub retrying: usize,
}

/// What `dry_run` would do with one record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlannedWrite {
    pub source_id: String,
    pub action: String,
    /// The linked target record, when this record was written before.
    pub target_id: Option<String>,
    /// The mapped input; `None` when the mapping fails.
    pub input: Option<Fields>,
    /// Why the record would become a dead letter.
    pub error: Option<String>,
    /// Mapped to exactly what was last written: no call would be made.
    pub unchanged: bool,
    /// Why no call would be made although the record maps: nothing linked to update.
    pub skipped: Option<String>,
}

/// A flow with its opened source; the target is given to [`FlowRun::deliver`], the only step
/// that writes.
pub struct FlowRun<'a> {
    pub flow: &'a Flow,
    /// Where its records meet other flows' links: [`crate::flow::relations`].
    pub relations: &'a Relations,
    pub source: Arc<dyn Connector>,
    pub store: &'a Store,
    /// Where delivery results go when several tasks deliver at once (`tether run`): committed
    /// together, one disk sync for many. Without it each result is its own transaction.
    pub commits: Option<&'a GroupCommit>,
    /// Backfill writes yield a shared rate budget to live ones.
    pub priority: Priority,
    pub retry: RetryPolicy,
    pub clock: &'a (dyn Fn() -> i64 + Sync),
}

const PAGE: u32 = 100;
/// Parent ids a sweep takes from the store at a time.
const PARENTS_PER_QUERY: i64 = 200;
const CLAIM_BATCH: i64 = 50;
/// How long a flow whose target refused its credentials waits before trying a row again.
const PAUSE_MS: i64 = 5 * 60_000;

impl FlowRun<'_> {
    /// Reads one page of the source stream on the blocking pool.
    async fn read_page(&self, position: ReadPosition, limit: u32) -> Result<Page, EngineError> {
        self.read_page_of(None, position, limit).await
    }

    /// Reads one page of the source stream, of one parent record when the stream is listed per
    /// parent.
    async fn read_page_of(
        &self,
        parent_id: Option<String>,
        position: ReadPosition,
        limit: u32,
    ) -> Result<Page, EngineError> {
        let request = ReadRequest {
            stream: self.flow.stream.clone(),
            position,
            limit: Some(limit),
            parent_id,
        };
        let source = Arc::clone(&self.source);
        blocking(move || source.read(request))
            .await
            .map_err(|error| EngineError::Source {
                stream: self.flow.stream.clone(),
                error,
            })
    }

    /// Reads the source from the stored cursor until it has nothing more, queuing each page; a
    /// stream listed per parent is swept instead.
    pub async fn poll(&self, report: &mut SyncReport) -> Result<(), EngineError> {
        if self.flow.sweeps_parents {
            return self.sweep(report).await;
        }
        loop {
            let cursor = self.store.cursor(&self.flow.name).await?;
            let page = self.read_page(ReadPosition::Cursor { cursor }, PAGE).await?;
            report.read += page.records.len();
            let queued = self
                .store
                .enqueue(&self.flow.name, &page.records, page.next.as_deref(), (self.clock)())
                .await?;
            telemetry::records_read(&self.flow.name, page.records.len());
            report.queued += queued.inserted;
            report.duplicates += queued.duplicates;
            if !page.has_more || page.records.is_empty() {
                return Ok(());
            }
        }
    }

    /// A poll of a stream listed one parent at a time (GHL tasks of a contact): every parent the
    /// `[parent]` flow linked is read whole, and a record whose content differs from its latest
    /// queued row is queued. This is what catches a change whose webhook was lost, or for which
    /// the source sends none (GHL has no webhook for an edited task).
    async fn sweep(&self, report: &mut SyncReport) -> Result<(), EngineError> {
        let mut walk = ParentWalk::default();
        while let Some(page) = self.next_parent_page(&mut walk).await? {
            report.read += page.records.len();
            let queued = self
                .store
                .enqueue_changed(&self.flow.name, &page.records, (self.clock)())
                .await?;
            // Counted as read once queued: a sweep's re-read of an unchanged record is not news.
            telemetry::records_read(&self.flow.name, queued.inserted);
            report.queued += queued.inserted;
            report.duplicates += queued.duplicates;
        }
        Ok(())
    }

    /// The next page of a walk over every parent the `[parent]` flow linked, in id order; `None`
    /// once all are read. A parent gone from the source (`not_found`) has no children left to
    /// read; any other failure ends the walk, to be tried again at the next poll.
    async fn next_parent_page(&self, walk: &mut ParentWalk) -> Result<Option<Page>, EngineError> {
        // Flow loading refuses a sweep without `[parent]`.
        let Some(parent) = &self.relations.parent else {
            return Ok(None);
        };
        loop {
            if let Some((parent_id, cursor)) = walk.reading.take() {
                let position = ReadPosition::Cursor { cursor };
                match self.read_page_of(Some(parent_id.clone()), position, PAGE).await {
                    Err(EngineError::Source { error, .. }) if error.kind == ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                    Ok(page) => {
                        if page.has_more && !page.records.is_empty() && page.next.is_some() {
                            walk.reading = Some((parent_id, page.next.clone()));
                        }
                        return Ok(Some(page));
                    }
                }
            }
            if let Some(parent_id) = walk.queued.pop() {
                walk.reading = Some((parent_id, None));
                continue;
            }
            if walk.exhausted {
                return Ok(None);
            }
            let side = if parent.reverse {
                LinkSide::Target
            } else {
                LinkSide::Source
            };
            let ids = self
                .store
                .linked_ids(
                    (&parent.source, &parent.target),
                    side,
                    walk.after.as_deref(),
                    PARENTS_PER_QUERY,
                )
                .await?;
            walk.exhausted = ids.is_empty();
            walk.after = ids.last().cloned().or(walk.after.take());
            // Popped from the end: reversed to read in id order.
            walk.queued = ids.into_iter().rev().collect();
        }
    }

    /// History in windows `[since, since + window)`, oldest first, each read whole, queued and
    /// delivered before the next. The end of each completed window is stored, so running the same
    /// backfill again resumes after it. `on_window` hears of each window as it completes.
    pub async fn backfill(
        &self,
        target: &Arc<dyn Connector>,
        worker: &str,
        (since_ms, until_ms, window_ms): (i64, i64, i64),
        mut on_window: impl FnMut(&WindowReport),
        total: &mut SyncReport,
    ) -> Result<(), EngineError> {
        let progress = format!("backfill:{}:{since_ms}:{until_ms}", self.flow.name);
        let done_until = self
            .store
            .cursor(&progress)
            .await?
            .and_then(|c| c.parse::<i64>().ok())
            .unwrap_or(since_ms);
        let mut start = since_ms;
        while start < until_ms {
            let end = start.saturating_add(window_ms.max(1)).min(until_ms);
            let mut window = WindowReport {
                since: rfc3339(start),
                until: rfc3339(end),
                ..WindowReport::default()
            };
            if end <= done_until {
                window.resumed = true;
                on_window(&window);
                start = end;
                continue;
            }
            let mut report = SyncReport::default();
            let mut page_token = None;
            loop {
                let position = ReadPosition::Window {
                    since: window.since.clone(),
                    until: window.until.clone(),
                    page: page_token.take(),
                };
                let page = self.read_page(position, PAGE).await?;
                report.read += page.records.len();
                let queued = self
                    .store
                    .enqueue(&self.flow.name, &page.records, None, (self.clock)())
                    .await?;
                telemetry::records_read(&self.flow.name, page.records.len());
                report.queued += queued.inserted;
                if !page.has_more || page.records.is_empty() || page.next.is_none() {
                    break;
                }
                page_token = page.next;
            }
            self.deliver(target, worker, &mut report).await?;
            window.read = report.read;
            window.written = report.written;
            window.unchanged = report.unchanged;
            window.failed = report.dead;
            window.retrying = report.retrying;
            merge(total, report);
            if total.paused.is_some() {
                on_window(&window);
                return Ok(());
            }
            self.store
                .enqueue(&progress, &[], Some(&end.to_string()), (self.clock)())
                .await?;
            on_window(&window);
            start = end;
        }
        // Rows of earlier windows that came due again (a retry, a claim a killed run held)
        // are delivered too, so a finished backfill leaves nothing due behind.
        let mut rest = SyncReport::default();
        self.deliver(target, worker, &mut rest).await?;
        merge(total, rest);
        Ok(())
    }

    /// Reads up to `limit` records from the stored cursor and maps them as delivery would,
    /// writing nothing: no target call, no queue row, no cursor move.
    pub async fn dry_run(&self, limit: usize) -> Result<Vec<PlannedWrite>, EngineError> {
        let mut records = Vec::new();
        if self.flow.sweeps_parents {
            let mut walk = ParentWalk::default();
            while records.len() < limit {
                let Some(page) = self.next_parent_page(&mut walk).await? else {
                    break;
                };
                records.extend(page.records.into_iter().take(limit - records.len()));
            }
        } else {
            let mut cursor = self.store.cursor(&self.flow.name).await?;
            while records.len() < limit {
                let wanted = PAGE.min(u32::try_from(limit - records.len()).unwrap_or(PAGE));
                let page = self
                    .read_page(ReadPosition::Cursor { cursor: cursor.clone() }, wanted)
                    .await?;
                let last_page = !page.has_more || page.records.is_empty() || page.next.is_none();
                records.extend(page.records.into_iter().take(limit - records.len()));
                if last_page {
                    break;
                }
                cursor = page.next;
            }
        }
        let now = rfc3339((self.clock)());
        let mut planned = Vec::with_capacity(records.len());
        for record in &records {
            let key = self.link_key(&record.id);
            let link = self.target_link(&key).await?;
            let skipped = self.nothing_to_update(link.as_ref());
            let input = self.flow.mapping.apply(record, &now).map_err(|e| e.to_string());
            let unchanged = match (&input, &link) {
                (Ok(input), Some(link)) => link.written_hash.as_deref() == Some(content_hash(input).as_str()),
                _ => false,
            };
            let (input, error) = match input {
                Ok(input) => (Some(input), None),
                Err(error) => (None, Some(error)),
            };
            let action = self.flow.action_for(link.is_some()).to_owned();
            planned.push(PlannedWrite {
                source_id: record.id.clone(),
                action,
                target_id: link.map(|l| l.target_id),
                input,
                error,
                unchanged,
                skipped,
            });
        }
        Ok(planned)
    }

    /// The target record this source record writes to: this flow's own link, else the record a
    /// reverse flow created it from.
    async fn target_link(&self, key: &LinkKey) -> Result<Option<LinkRow>, EngineError> {
        match self.store.link(key).await? {
            Some(link) => Ok(Some(link)),
            None => self.reverse_link(&key.source_id).await,
        }
    }

    /// Why a record is skipped when the flow's action updates a linked record and it has none
    /// (a GHL task a user made, not one we wrote): nothing to update is not a failure.
    fn nothing_to_update(&self, link: Option<&LinkRow>) -> Option<String> {
        (link.is_none() && self.flow.needs_link).then(|| {
            format!(
                "`{}` updates a linked record, and this record is linked to none in {}",
                self.flow.action, self.flow.target_connector
            )
        })
    }

    fn link_key(&self, source_id: &str) -> LinkKey {
        LinkKey {
            source: self.flow.source_system(),
            source_id: source_id.to_owned(),
            target: self.flow.target_system(),
        }
    }

    /// Delivers every row due now; rows waiting for a retry stay queued.
    pub async fn deliver(
        &self,
        target: &Arc<dyn Connector>,
        worker: &str,
        report: &mut SyncReport,
    ) -> Result<(), EngineError> {
        loop {
            let rows = self
                .store
                .claim(
                    &self.flow.name,
                    worker,
                    CLAIM_BATCH,
                    self.retry.lease_ms,
                    (self.clock)(),
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let before = (report.written, report.unchanged);
                // Once the target has refused its credentials, every row would meet the same
                // refusal: the rest of the batch waits without a call.
                let (outcome, events) = match &report.paused {
                    Some(error) => (
                        Outcome::Paused {
                            at_ms: (self.clock)() + PAUSE_MS,
                            error: error.clone(),
                        },
                        Vec::new(),
                    ),
                    None => {
                        let mut events = Vec::new();
                        let outcome = self.deliver_one(target, worker, &row, report, &mut events).await?;
                        (outcome, events)
                    }
                };
                let mut events: Vec<NewEvent> = events;
                match &outcome {
                    Outcome::Retry { error, .. } | Outcome::Throttled { error, .. } => {
                        report.retrying += 1;
                        events.push(self.event(&row.source_id, None, EventKind::Retry, Some(error.clone())));
                    }
                    Outcome::Dead { error } => {
                        report.dead += 1;
                        events.push(self.event(&row.source_id, None, EventKind::Dead, Some(error.clone())));
                    }
                    Outcome::Paused { error, .. } => report.paused = Some(error.clone()),
                    Outcome::Delivered { .. } => {}
                }
                let finish = Finish {
                    id: row.id,
                    worker: worker.to_owned(),
                    outcome: outcome.clone(),
                    events,
                };
                match self.commits {
                    Some(commits) => {
                        commits.finish(finish).await?;
                    }
                    None => {
                        self.store.finish_one(&finish, (self.clock)()).await?;
                    }
                }
                telemetry::row_finished(
                    &self.flow.name,
                    &outcome,
                    report.written - before.0,
                    report.unchanged - before.1,
                );
            }
            if report.paused.is_some() {
                break;
            }
        }
        Ok(())
    }

    fn event(&self, source_id: &str, target_id: Option<String>, kind: EventKind, detail: Option<String>) -> NewEvent {
        NewEvent {
            flow: self.flow.name.clone(),
            source_id: source_id.to_owned(),
            target_id,
            kind,
            detail,
        }
    }

    /// A failure worth trying again, until the attempt limit makes it a dead letter.
    fn retry_or_dead(&self, row: &Claimed, now: i64, error: String) -> Outcome {
        if row.attempts < self.retry.max_attempts {
            Outcome::Retry {
                at_ms: now + self.retry.next_attempt_in(row.attempts, None),
                error,
            }
        } else {
            Outcome::Dead {
                error: format!("{error} (after {} attempts)", row.attempts),
            }
        }
    }

    async fn deliver_one(
        &self,
        target: &Arc<dyn Connector>,
        worker: &str,
        row: &Claimed,
        report: &mut SyncReport,
        events: &mut Vec<NewEvent>,
    ) -> Result<Outcome, EngineError> {
        let now = (self.clock)();
        let input = match self.flow.mapping.apply(&row.record, &rfc3339(now)) {
            Ok(input) => input,
            Err(error) => {
                return Ok(Outcome::Dead {
                    error: error.to_string(),
                })
            }
        };
        if row.record.deleted && !self.flow.action.ends_with(".delete") {
            report.skipped += 1;
            events.push(self.event(
                &row.source_id,
                None,
                EventKind::Skipped,
                Some("deleted at the source".into()),
            ));
            return Ok(Outcome::Delivered { link: None });
        }
        let parent_id = match self.parent_target(&row.record).await? {
            ParentState::None => None,
            ParentState::Linked(id) => Some(id),
            ParentState::Missing(why) => return Ok(Outcome::Dead { error: why }),
            ParentState::Waiting(why) => return Ok(self.retry_or_dead(row, now, why)),
        };
        if let Some(written) = self.echo_of(&row.record).await? {
            report.echoes += 1;
            events.push(self.event(
                &row.source_id,
                Some(written),
                EventKind::Echo,
                Some("our own write coming back: not synced back".into()),
            ));
            return Ok(Outcome::Delivered { link: None });
        }
        let key = self.link_key(&row.source_id);
        let link = self.target_link(&key).await?;
        if let Some(why) = self.nothing_to_update(link.as_ref()) {
            report.skipped += 1;
            events.push(self.event(&row.source_id, None, EventKind::Skipped, Some(why)));
            return Ok(Outcome::Delivered { link: None });
        }
        if let (Some(policy), Some(link)) = (self.flow.conflict, &link) {
            if let Some(why) = self.conflict_lost(policy, &row.record, link).await? {
                report.conflicts += 1;
                events.push(self.event(
                    &row.source_id,
                    Some(link.target_id.clone()),
                    EventKind::Conflict,
                    Some(why),
                ));
                return Ok(Outcome::Delivered { link: None });
            }
        }
        let hash = content_hash(&input);
        if link.as_ref().and_then(|l| l.written_hash.as_deref()) == Some(hash.as_str()) {
            report.unchanged += 1;
            return Ok(Outcome::Delivered { link: None });
        }
        let action = self.flow.action_for(link.is_some()).to_owned();
        let request = WriteRequest {
            action,
            priority: self.priority,
            target_id: link.as_ref().map(|l| l.target_id.clone()),
            parent_id: parent_id.clone(),
            input: input.clone(),
        };
        match self.write_holding_claim(target, worker, row, request).await? {
            Ok(written) => {
                report.written += 1;
                let target_id = written.target_id.clone().or(link.as_ref().map(|l| l.target_id.clone()));
                let sent = serde_json::to_string(&input).unwrap_or_default();
                events.push(self.event(
                    &row.source_id,
                    target_id.clone(),
                    EventKind::Written,
                    Some(sent.clone()),
                ));
                let previous = link
                    .as_ref()
                    .and_then(|l| l.written.as_deref())
                    .and_then(|w| serde_json::from_str::<Fields>(w).ok());
                for verdict in verify_write(&input, previous.as_ref(), &written.returned) {
                    let warning = format!("flow `{}`, record {}: {verdict}", self.flow.name, row.source_id);
                    events.push(self.event(
                        &row.source_id,
                        target_id.clone(),
                        EventKind::Warning,
                        Some(warning.clone()),
                    ));
                    report.warnings.push(warning);
                }
                Ok(Outcome::Delivered {
                    link: target_id.map(|target_id| {
                        (
                            key,
                            LinkRow {
                                target_id,
                                written_hash: Some(hash),
                                written: Some(sent),
                                source_updated_at: row.record.updated_at.clone(),
                                parent_id,
                            },
                        )
                    }),
                })
            }
            Err(error) if error.kind == ErrorKind::Auth => Ok(Outcome::Paused {
                at_ms: now + PAUSE_MS,
                error: format!(
                    "connector `{}` refused its credentials: {}",
                    self.flow.target_connector, error.message
                ),
            }),
            Err(error) => match error.kind {
                ErrorKind::RateLimited { retry_after_ms } => Ok(Outcome::Throttled {
                    at_ms: now + self.retry.next_attempt_in(row.attempts, retry_after_ms),
                    error: error.to_string(),
                }),
                _ if error.kind.is_retryable() => Ok(self.retry_or_dead(row, now, error.to_string())),
                _ => Ok(Outcome::Dead {
                    error: format!("{error} (after {} attempts)", row.attempts),
                }),
            },
        }
    }

    /// Writes on the blocking pool, renewing the row's claim while the call lasts so a slow
    /// target never lets another worker take the row and write it a second time.
    async fn write_holding_claim(
        &self,
        target: &Arc<dyn Connector>,
        worker: &str,
        row: &Claimed,
        request: WriteRequest,
    ) -> Result<Result<tether_abi::WriteResult, ConnectorError>, EngineError> {
        let target = Arc::clone(target);
        let write = blocking(move || target.write(request));
        tokio::pin!(write);
        let every = std::time::Duration::from_millis(u64::try_from(self.retry.lease_ms / 3).unwrap_or(1).max(1));
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut write => return Ok(result),
                _ = renew.tick() => {
                    self.store
                        .renew_claim(row.id, worker, (self.clock)() + self.retry.lease_ms)
                        .await?;
                }
            }
        }
    }

    /// The parent's id in the target, when this flow's records follow a parent.
    async fn parent_target(&self, record: &Record) -> Result<ParentState, EngineError> {
        let Some(parent) = &self.relations.parent else {
            return Ok(ParentState::None);
        };
        let source_id = match record.fields.get(&parent.field) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => match &record.parent {
                Some(reference) => reference.id.clone(),
                None => {
                    return Ok(ParentState::Missing(format!(
                        "the record has no `{}`, the id of its parent",
                        parent.field
                    )))
                }
            },
        };
        let linked = if parent.reverse {
            self.store
                .link_by_target(&parent.source, &parent.target, &source_id)
                .await?
        } else {
            let key = LinkKey {
                source: parent.source.clone(),
                source_id: source_id.clone(),
                target: parent.target.clone(),
            };
            self.store.link(&key).await?.map(|link| link.target_id)
        };
        Ok(match linked {
            Some(id) => ParentState::Linked(id),
            None if parent.reverse => ParentState::Waiting(format!(
                "waiting for its parent {source_id} to be linked from {} first",
                parent.source
            )),
            None => ParentState::Waiting(format!(
                "waiting for its parent {} {source_id} to be written to {} first",
                parent.source, parent.target
            )),
        })
    }

    /// The target record id when `record` is our own earlier write into this flow's source
    /// coming back (by webhook or poll): a link from the target connector wrote this very record,
    /// and every field we wrote still holds what we wrote.
    async fn echo_of(&self, record: &Record) -> Result<Option<String>, EngineError> {
        let Some(link) = self
            .store
            .link_into(&self.flow.target_connector, &self.flow.source_connector, &record.id)
            .await?
        else {
            return Ok(None);
        };
        let Some(written) = link
            .written
            .as_deref()
            .and_then(|w| serde_json::from_str::<Fields>(w).ok())
        else {
            return Ok(None);
        };
        Ok(is_echo(&written, &record.fields).then_some(link.target_id))
    }

    /// Why this change must not be written under `policy`: the target record changed too, and
    /// the policy gives the target's change precedence. `None`: write it.
    async fn conflict_lost(
        &self,
        policy: ConflictPolicy,
        record: &Record,
        link: &LinkRow,
    ) -> Result<Option<String>, EngineError> {
        if policy == ConflictPolicy::SourceWins {
            return Ok(None);
        }
        // The target side's change: still queued in a reverse flow, or already applied here
        // (the reverse link remembers when the target record had changed).
        let pending = self
            .store
            .pending_change(&self.relations.reverse_flows, &link.target_id)
            .await?;
        let pending = match pending {
            Some(change) if self.echo_of_reverse(&change).await? => None,
            other => other,
        };
        let applied = self
            .store
            .link_into(&self.flow.target_connector, &self.flow.source_connector, &record.id)
            .await?
            .and_then(|l| l.source_updated_at);
        let theirs = pending
            .as_ref()
            .map(|c| c.updated_at.clone())
            .or(applied.clone().map(Some));
        let Some(theirs) = theirs else {
            return Ok(None);
        };
        if policy == ConflictPolicy::TargetWins && pending.is_some() {
            return Ok(Some(format!(
                "the target record {} changed too and this flow's policy is target_wins",
                link.target_id
            )));
        }
        // Newest wins, and target wins over a target change already applied: this change loses
        // only if it is older than the target's, or writing it would undo a newer change. A
        // source change made after that is a new edit, not a conflict.
        let ours = record.updated_at.as_deref().and_then(parse_instant);
        let theirs_at = theirs.as_deref().and_then(parse_instant);
        Ok(match (ours, theirs_at) {
            (Some(ours), Some(theirs_at)) if theirs_at > ours => Some(format!(
                "the target record {} changed later ({}) than this change ({}): {}",
                link.target_id,
                theirs.unwrap_or_default(),
                record.updated_at.clone().unwrap_or_default(),
                policy
            )),
            _ => None,
        })
    }

    /// A link this flow never wrote: `source_id` is a record a reverse flow created from a record
    /// of this flow's target, which is then the record to update. Nothing was written from
    /// here yet, so no hash: the first change is written.
    async fn reverse_link(&self, source_id: &str) -> Result<Option<LinkRow>, EngineError> {
        let own_target = self.flow.target_system();
        let own_source = self.flow.source_system();
        let target_connector = own_target.split('/').next().unwrap_or_default();
        let source_connector = own_source.split('/').next().unwrap_or_default();
        for (their_source, their_target) in &self.relations.reverse_links {
            // Their source kind is ours to write (a `mloflo/tasks` record is a `mloflo/task`), and
            // they wrote into our source connector.
            let kinds_match = their_source.split_once('/').is_some_and(|(connector, stream)| {
                connector == target_connector
                    && own_target
                        .split_once('/')
                        .is_some_and(|(_, kind)| stream == kind || stream.strip_suffix('s') == Some(kind))
            });
            if !kinds_match || !their_target.starts_with(&format!("{source_connector}/")) {
                continue;
            }
            if let Some(id) = self.store.link_by_target(their_source, their_target, source_id).await? {
                return Ok(Some(LinkRow {
                    target_id: id,
                    written_hash: None,
                    written: None,
                    source_updated_at: None,
                    parent_id: None,
                }));
            }
        }
        Ok(None)
    }

    /// Whether a reverse flow's queued change is only the echo of this flow's own write.
    async fn echo_of_reverse(&self, change: &Record) -> Result<bool, EngineError> {
        let link = self
            .store
            .link_into(&self.flow.source_connector, &self.flow.target_connector, &change.id)
            .await?;
        Ok(link
            .and_then(|l| l.written)
            .and_then(|w| serde_json::from_str::<Fields>(&w).ok())
            .is_some_and(|written| is_echo(&written, &change.fields)))
    }
}

/// Where a walk over a flow's parents is: the parents' ids come from the store a batch at a time.
#[derive(Default)]
struct ParentWalk {
    /// The parent being read, and the cursor of its next page.
    reading: Option<(String, Option<String>)>,
    /// Ids of the batch still to read, the next at the end.
    queued: Vec<String>,
    /// The last id taken from the store.
    after: Option<String>,
    exhausted: bool,
}

enum ParentState {
    /// The flow has no parent.
    None,
    Linked(String),
    /// Not linked yet: the record waits (and retries) rather than create anything.
    Waiting(String),
    /// The record names no parent: it can never be delivered.
    Missing(String),
}

/// Every scalar field we wrote is in `current` with the same value ([`same_value`]): nothing in
/// `current` is news from the other side.
pub fn is_echo(written: &Fields, current: &Fields) -> bool {
    let mut compared = 0;
    for (key, sent) in written.iter().filter(|(_, v)| is_scalar(v)) {
        compared += 1;
        if !current.get(key).is_some_and(|now| same_value(sent, now)) {
            return false;
        }
    }
    compared > 0
}

fn is_scalar(value: &Value) -> bool {
    value.is_string() || value.is_number() || value.is_boolean()
}

/// Whether a system holds `got` for the `sent` value, allowing for how systems store what they
/// are given: times compared as instants (`2026-01-01` is `2026-01-01T00:00:00.000Z`), numbers as
/// numbers (also when one side is text), text by its letters and digits, without case (GHL keeps
/// emails lower-case and phones as `+351912345678` for `+351 912 345 678`).
pub fn same_value(sent: &Value, got: &Value) -> bool {
    let number = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let letters_and_digits = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    match (sent, got) {
        (Value::String(a), Value::String(b)) => {
            let (x, y) = (letters_and_digits(a), letters_and_digits(b));
            if x.is_empty() && y.is_empty() {
                return a.trim() == b.trim();
            }
            x == y || matches!((parse_instant(a), parse_instant(b)), (Some(x), Some(y)) if x == y)
        }
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            matches!((number(sent), number(got)), (Some(a), Some(b)) if a == b)
        }
        (a, b) => a == b,
    }
}

/// What write verification found wrong with one field of a write.
#[derive(Clone, Debug, PartialEq)]
enum FieldVerdict<'a> {
    /// Sent, answered 2xx, and absent from the record the target returned.
    Dropped(&'a str),
    /// Kept with another value than the one sent (an upsert that kept the old value).
    Changed {
        field: &'a str,
        sent: &'a Value,
        kept: Value,
    },
}

impl std::fmt::Display for FieldVerdict<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldVerdict::Dropped(field) => write!(f, "the target did not keep field `{field}`"),
            FieldVerdict::Changed { field, sent, kept } => {
                write!(f, "the target kept field `{field}` as {kept}, not the {sent} sent")
            }
        }
    }
}

/// Each scalar field sent that the record the target returned does not hold: dropped, or kept
/// with another value. Only what this write changes is judged: a field sent as it was `previous`ly
/// written was judged then (AroFlo cannot update a task's due date; saying so at every completion
/// would bury the one change of date that was lost). A target that returns no record gives no
/// verdict.
fn verify_write<'a>(sent: &'a Fields, previous: Option<&Fields>, returned: &Fields) -> Vec<FieldVerdict<'a>> {
    if returned.is_empty() {
        return Vec::new();
    }
    let unchanged = |field: &str, value: &Value| {
        previous
            .and_then(|p| p.get(field))
            .is_some_and(|before| same_value(before, value))
    };
    sent.iter()
        .filter(|(field, v)| is_scalar(v) && !unchanged(field, v))
        .filter_map(|(field, value)| match returned.get(field.as_str()) {
            None | Some(Value::Null) => Some(FieldVerdict::Dropped(field)),
            Some(kept) if !same_value(value, kept) => Some(FieldVerdict::Changed {
                field,
                sent: value,
                kept: kept.clone(),
            }),
            Some(_) => None,
        })
        .collect()
}

fn merge(total: &mut SyncReport, part: SyncReport) {
    total.read += part.read;
    total.queued += part.queued;
    total.duplicates += part.duplicates;
    total.written += part.written;
    total.unchanged += part.unchanged;
    total.skipped += part.skipped;
    total.retrying += part.retrying;
    total.dead += part.dead;
    total.echoes += part.echoes;
    total.conflicts += part.conflicts;
    total.paused = total.paused.take().or(part.paused);
    total.warnings.extend(part.warnings);
}

/// Milliseconds since the epoch of `YYYY-MM-DD` (UTC midnight) or an RFC 3339 time.
pub fn parse_instant(text: &str) -> Option<i64> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// Runs a blocking connector call on the blocking pool; a panic there is a `fatal` error.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, ConnectorError> + Send + 'static,
) -> Result<T, ConnectorError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(ConnectorError::fatal(format!("connector call failed to complete: {e}"))))
}

/// A stable hash of a mapped input: object keys are sorted (serde_json's map is ordered).
pub fn content_hash(input: &Fields) -> String {
    let canonical = serde_json::to_string(input).unwrap_or_default();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_ignore_key_order_and_see_value_changes() {
        let a: Fields = serde_json::from_str(r#"{"b":1,"a":"x"}"#).expect("json");
        let b: Fields = serde_json::from_str(r#"{"a":"x","b":1}"#).expect("json");
        let c: Fields = serde_json::from_str(r#"{"a":"y","b":1}"#).expect("json");
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_ms: 100,
            max_ms: 1_000,
            lease_ms: 1_000,
        };
        for _ in 0..50 {
            assert!((50..=100).contains(&policy.next_attempt_in(1, None)));
            assert!((200..=400).contains(&policy.next_attempt_in(3, None)));
            assert!((500..=1_000).contains(&policy.next_attempt_in(12, None)));
            assert_eq!(policy.next_attempt_in(1, Some(30_000)), 30_000);
        }
    }

    #[test]
    fn verification_names_fields_dropped_or_kept_with_another_value() {
        let sent: Fields = serde_json::from_str(
            r#"{"email":"Ana@B.pt","companyName":"X","gender":"female","dateOfBirth":"1990-05-01","score":3,"tags":["t"]}"#,
        )
        .expect("json");
        let returned: Fields = serde_json::from_str(
            r#"{"email":"ana@b.pt","gender":"male","dateOfBirth":"1990-05-01T00:00:00.000Z","score":"3","id":"1"}"#,
        )
        .expect("json");
        let verdicts: Vec<String> = verify_write(&sent, None, &returned)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            verdicts,
            [
                "the target did not keep field `companyName`",
                r#"the target kept field `gender` as "male", not the "female" sent"#,
            ]
        );
        assert!(
            verify_write(&sent, None, &Fields::new()).is_empty(),
            "no record returned, no verdict"
        );
        // Written the same before: judged then, not again.
        let previous: Fields = serde_json::from_str(r#"{"companyName":"X","gender":"male"}"#).expect("json");
        let verdicts: Vec<String> = verify_write(&sent, Some(&previous), &returned)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            verdicts,
            [r#"the target kept field `gender` as "male", not the "female" sent"#],
            "a changed gender is judged, an unchanged company name is not"
        );
    }

    #[test]
    fn values_match_as_instants_numbers_and_caseless_text() {
        let v = |text: &str| -> Value { serde_json::from_str(text).expect("json") };
        for (a, b) in [
            (r#""2026-01-01""#, r#""2026-01-01T00:00:00Z""#),
            (r#""2026-01-01T10:00:00+01:00""#, r#""2026-01-01T09:00:00.000Z""#),
            ("12", r#""12""#),
            ("1.5", "1.50"),
            (r#"" Ana@X.pt ""#, r#""ana@x.pt""#),
            (r#""+351 912 345 678""#, r#""+351912345678""#),
            (r#""Conceição""#, r#""CONCEIÇÃO""#),
            ("true", "true"),
        ] {
            assert!(same_value(&v(a), &v(b)), "{a} = {b}");
        }
        for (a, b) in [
            (r#""Ana""#, r#""Rui""#),
            ("12", r#""12a""#),
            ("true", r#""true""#),
            (r#""2026-01-01""#, r#""2026-01-02""#),
            (r#""Replace the valve""#, r#""Replace the""#),
            (r#""-""#, r#""+""#),
        ] {
            assert!(!same_value(&v(a), &v(b)), "{a} != {b}");
        }
    }
}
