//! Alert incidents (`alerts`) and the per-flow figures alert checks read.
//!
//! Invariants:
//! * An incident is recorded open only after its message was accepted, so a failed send is
//!   tried again at the next check, and an open incident is never sent again (across restarts
//!   and hosts sharing the database).
//! * A key is open at most once at a time (a unique index over open rows); opening it again
//!   while open does nothing, and resolving closes the open row only.

use super::{dialect, Store, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub key: String,
    pub text: String,
    pub opened_at: i64,
    pub resolved_at: Option<i64>,
}

/// One flow's delivery figures at an instant, for alert checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FlowProgress {
    pub flow: String,
    pub dead: i64,
    /// Pending rows whose next attempt is due.
    pub due: i64,
    pub oldest_due_at: Option<i64>,
    /// When a row was last finished (delivered or dead).
    pub last_finished_at: Option<i64>,
}

impl Store {
    /// Incidents open now, oldest first.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRow>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT id, key, text, opened_at, resolved_at FROM alerts WHERE resolved_at IS NULL ORDER BY id",
            ))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Every incident, newest first.
    pub async fn alerts(&self, limit: i64) -> Result<Vec<AlertRow>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT id, key, text, opened_at, resolved_at FROM alerts ORDER BY id DESC LIMIT ?",
            ))
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records `key` open. Returns false when it already was.
    pub async fn open_alert(&self, key: &str, text: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query(&sql(
                "INSERT INTO alerts (key, text, opened_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            ))
            .bind(key)
            .bind(text)
            .bind(now_ms)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }))
    }

    /// Records the open incident `key` resolved. Returns false when none was open.
    pub async fn resolve_alert(&self, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query(&sql(
                "UPDATE alerts SET resolved_at = ? WHERE key = ? AND resolved_at IS NULL",
            ))
            .bind(now_ms)
            .bind(key)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }))
    }

    /// Per flow with rows: dead letters, rows due at `now_ms`, and the last finished row.
    pub async fn flow_progress(&self, now_ms: i64) -> Result<Vec<FlowProgress>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
            sqlx::query_as(&sql("SELECT flow, \
                 SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS dead, \
                 SUM(CASE WHEN status = 'pending' AND next_attempt_at <= ? THEN 1 ELSE 0 END) AS due, \
                 MIN(CASE WHEN status = 'pending' AND next_attempt_at <= ? THEN next_attempt_at END) AS oldest_due_at, \
                 MAX(CASE WHEN status <> 'pending' THEN updated_at END) AS last_finished_at \
                 FROM outbox GROUP BY flow ORDER BY flow"))
            .bind(now_ms)
            .bind(now_ms)
            .fetch_all(pool)
            .await?
        }))
    }
}
