//! What happened, for people: delivery events (the activity and record views, write-verification
//! warnings), each flow's last run and last error, and the webhook log.

use super::{dialect, Store, StoreError};

/// Inserts webhook-log lines (`$entries`, a slice of [`WebhookLogRow`]) with one statement per
/// [`ROWS_PER_INSERT`](super::ROWS_PER_INSERT) lines, through executor `$executor`. A macro: the
/// query's type differs per dialect.
macro_rules! insert_webhook_logs {
    ($executor:expr, $entries:expr) => {
        for chunk in $entries.chunks($crate::store::ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO webhook_log (received_at, connector, event_types, verdict, status, queued, detail) ",
            );
            insert.push_values(chunk, |mut values, entry| {
                values
                    .push_bind(entry.received_at)
                    .push_bind(&entry.connector)
                    .push_bind(&entry.event_types)
                    .push_bind(&entry.verdict)
                    .push_bind(entry.status)
                    .push_bind(entry.queued)
                    .push_bind(&entry.detail);
            });
            insert.build().execute($executor).await?;
        }
    };
}
pub(super) use insert_webhook_logs;

/// What an event says happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Written to the target; the detail is the input sent (JSON).
    Written,
    /// The target did not keep a field that was sent; the detail names it.
    Warning,
    /// Our own write coming back from the target system: not synced back.
    Echo,
    /// A two-way conflict this flow's policy lost; the detail says why.
    Conflict,
    /// Deleted at the source, for a flow whose action does not delete.
    Skipped,
    /// Failed, to be tried again; the detail is the error.
    Retry,
    /// Failed for good: a dead letter; the detail is the error.
    Dead,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Written => "written",
            EventKind::Warning => "warning",
            EventKind::Echo => "echo",
            EventKind::Conflict => "conflict",
            EventKind::Skipped => "skipped",
            EventKind::Retry => "retry",
            EventKind::Dead => "dead",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub flow: String,
    pub source_id: String,
    pub target_id: Option<String>,
    pub kind: EventKind,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: i64,
    pub flow: String,
    pub source_id: String,
    pub target_id: Option<String>,
    pub kind: String,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct FlowRunRow {
    pub flow: String,
    pub last_run_at: i64,
    pub last_ok_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct WebhookLogRow {
    pub id: i64,
    pub received_at: i64,
    pub connector: String,
    /// Comma-separated event types of the body, as far as it could be read.
    pub event_types: String,
    /// `verified`, `duplicate` (a genuine delivery received before), `refused` (bad or stale
    /// signature) or `invalid`.
    pub verdict: String,
    /// The HTTP status answered.
    pub status: i64,
    /// Queue rows created.
    pub queued: i64,
    pub detail: Option<String>,
}

/// One link: a source record and the target record it was written to.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct LinkEdge {
    pub source: String,
    pub source_id: String,
    pub target: String,
    pub target_id: String,
    pub parent_id: Option<String>,
    pub updated_at: i64,
}

/// How many events of one kind a flow had.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct EventCount {
    pub flow: String,
    pub kind: String,
    pub count: i64,
}

impl Store {
    /// Records a run of a flow's trigger: `error` None means it succeeded. The last error stays
    /// until a later error replaces it; `last_ok_at` tells whether it is still current.
    pub async fn record_run(&self, flow: &str, error: Option<&str>, now_ms: i64) -> Result<(), StoreError> {
        let ok_at = error.is_none().then_some(now_ms);
        let error_at = error.map(|_| now_ms);
        dialect!(self, |pool, sql| {
            sqlx::query(&sql(
                "INSERT INTO flow_runs (flow, last_run_at, last_ok_at, last_error, last_error_at) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (flow) DO UPDATE SET last_run_at = excluded.last_run_at, \
                 last_ok_at = COALESCE(excluded.last_ok_at, flow_runs.last_ok_at), \
                 last_error = COALESCE(excluded.last_error, flow_runs.last_error), \
                 last_error_at = COALESCE(excluded.last_error_at, flow_runs.last_error_at)",
            ))
            .bind(flow)
            .bind(now_ms)
            .bind(ok_at)
            .bind(error)
            .bind(error_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn flow_runs(&self) -> Result<Vec<FlowRunRow>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT flow, last_run_at, last_ok_at, last_error, last_error_at FROM flow_runs ORDER BY flow",
            ))
            .fetch_all(pool)
            .await?
        }))
    }

    /// The newest events first, of one flow or kind when given.
    pub async fn events(
        &self,
        flow: Option<&str>,
        kind: Option<EventKind>,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let kind = kind.map(EventKind::as_str);
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT id, at, flow, source_id, target_id, kind, detail FROM events \
                 WHERE (? IS NULL OR flow = ?) AND (? IS NULL OR kind = ?) ORDER BY id DESC LIMIT ?",
            ))
            .bind(flow)
            .bind(flow)
            .bind(kind)
            .bind(kind)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The newest events first whose source or target record is `id`.
    pub async fn events_of_record(&self, id: &str, limit: i64) -> Result<Vec<EventRow>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT id, at, flow, source_id, target_id, kind, detail FROM events \
                 WHERE source_id = ? OR target_id = ? ORDER BY id DESC LIMIT ?",
            ))
            .bind(id)
            .bind(id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Events per flow and kind since `since_ms`.
    pub async fn event_counts_since(&self, since_ms: i64) -> Result<Vec<EventCount>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT flow, kind, COUNT(*) AS count FROM events WHERE at >= ? GROUP BY flow, kind ORDER BY flow, kind",
            ))
            .bind(since_ms)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every link with record `id` of `system` on either side.
    pub async fn links_touching(&self, system: &str, id: &str) -> Result<Vec<LinkEdge>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT source, source_id, target, target_id, parent_id, updated_at FROM links \
                 WHERE (source = ? AND source_id = ?) OR (target = ? AND target_id = ?) ORDER BY source, target",
            ))
            .bind(system)
            .bind(id)
            .bind(system)
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The systems in which some link has a record `id`, on either side.
    pub async fn systems_of_id(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT source FROM links WHERE source_id = ? UNION SELECT target FROM links WHERE target_id = ?",
            ))
            .bind(id)
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(|(system,)| system).collect())
    }

    /// The links of records written under parent `parent_id` (a contact's tasks and notes).
    pub async fn links_under(&self, parent_id: &str, limit: i64) -> Result<Vec<LinkEdge>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT source, source_id, target, target_id, parent_id, updated_at FROM links \
                 WHERE parent_id = ? ORDER BY updated_at DESC LIMIT ?",
            ))
            .bind(parent_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn log_webhook(&self, entry: &WebhookLogRow) -> Result<(), StoreError> {
        dialect!(self, |pool, sql| {
            insert_webhook_logs!(pool, std::slice::from_ref(entry));
        });
        Ok(())
    }

    /// The newest webhooks first.
    pub async fn webhook_log(&self, limit: i64) -> Result<Vec<WebhookLogRow>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT id, received_at, connector, event_types, verdict, status, queued, detail FROM webhook_log \
                 ORDER BY id DESC LIMIT ?",
            ))
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }
}
