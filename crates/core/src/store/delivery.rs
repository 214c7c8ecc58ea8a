//! Durable delivery state: cursors, the outbox (and its dead rows, the dead-letter list), links
//! from source records to target records, and leases.
//!
//! Invariants:
//! * Records read from a source are queued in the same transaction that advances the cursor, so a
//!   crash at any instant neither skips nor loses a change.
//! * A row is delivered by one worker at a time (claims carry a lease; PostgreSQL hosts skip rows
//!   another holds), and changes to one source record are delivered in the order they were queued:
//!   a row is not claimable while an older row of the same record is pending.
//! * A delivered row and the link it produced are recorded in one transaction.

use tether_abi::Record;

use super::activity::{bind_webhook_log, INSERT_WEBHOOK_LOG};
use super::{dialect, NewEvent, Store, StoreError, WebhookLogRow};

/// A source record as the delivery workers see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub id: i64,
    pub flow: String,
    pub source_id: String,
    pub record: Record,
    /// Including this one.
    pub attempts: i64,
}

/// How a delivery attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Delivered {
        link: Option<(LinkKey, LinkRow)>,
    },
    /// Failed, to be tried again at `at_ms`.
    Retry {
        at_ms: i64,
        error: String,
    },
    /// Failed for good: the row joins the dead-letter list.
    Dead {
        error: String,
    },
    /// The target asked to slow down (a 429): the row waits, due again at `at_ms`, and the
    /// attempt does not count, because a rate limit says nothing about the record. A burst of
    /// 429s never turns records into dead letters.
    Throttled {
        at_ms: i64,
        error: String,
    },
    /// The target cannot be used until the user acts (its credentials were refused): the row
    /// waits, due again at `at_ms`, and the attempt does not count.
    Paused {
        at_ms: i64,
        error: String,
    },
}

/// Identifies one source record's counterpart in one target: `source` and `target` name the
/// systems (e.g. `moloni_pt/customers`, `ghl/contact`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LinkKey {
    pub source: String,
    pub source_id: String,
    pub target: String,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LinkRow {
    pub target_id: String,
    /// Hash of what was last written, so an unchanged record costs no API call.
    pub written_hash: Option<String>,
    /// What was last written (the mapped input, JSON), to recognise its echo.
    pub written: Option<String>,
    /// When the source record last written from had changed (its `updated_at`).
    pub source_updated_at: Option<String>,
    /// The parent's id in the target (the contact a task or note was written under).
    pub parent_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub flow: String,
    pub source_id: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub updated_at: i64,
    pub record: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FlowCounts {
    pub flow: String,
    pub pending: i64,
    pub dead: i64,
    pub done: i64,
}

/// Which end of a link: the record read, or the record written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkSide {
    Source,
    Target,
}

/// What `enqueue` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Queued {
    pub inserted: usize,
    /// Events already queued before (a replayed webhook, a re-read page).
    pub duplicates: usize,
}

impl Queued {
    /// Counts one insert that affected `rows` rows: 1 queued it, 0 found it queued already.
    fn count(&mut self, rows: u64) {
        if rows == 1 {
            self.inserted += 1;
        } else {
            self.duplicates += 1;
        }
    }
}

#[derive(sqlx::FromRow)]
struct ClaimedRow {
    id: i64,
    flow: String,
    source_id: String,
    record: String,
    attempts: i64,
}

/// One queue row; an event id already queued for the flow is skipped.
const INSERT_OUTBOX: &str =
    "INSERT INTO outbox (flow, source_id, event_id, record, status, next_attempt_at, created_at, updated_at) \
     VALUES (?, ?, ?, ?, 'pending', ?, ?, ?) \
     ON CONFLICT (flow, event_id) WHERE event_id IS NOT NULL DO NOTHING";

/// Inserts `$records` (with their JSON, `$encoded`) as queue rows of `$flow` inside transaction
/// `$tx`; evaluates to the [`Queued`] counts. A macro: the transaction's type differs per dialect.
macro_rules! insert_outbox_rows {
    ($tx:ident, $sql:ident, $flow:expr, $records:expr, $encoded:expr, $now_ms:expr) => {{
        let mut queued = Queued::default();
        for (record, json) in $records.iter().zip($encoded) {
            let inserted = sqlx::query(&$sql(INSERT_OUTBOX))
                .bind($flow)
                .bind(&record.id)
                .bind(record.event.as_ref().map(|e| e.id.as_str()))
                .bind(json)
                .bind($now_ms)
                .bind($now_ms)
                .bind($now_ms)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
            queued.count(inserted);
        }
        queued
    }};
}

/// One webhook's share of a group commit (see [`Store::commit_intake`]): the records it queues,
/// per flow, and its webhook-log line, whose `queued` the store fills in.
#[derive(Clone, Debug)]
pub struct IntakeWrite {
    pub queue: Vec<(String, Vec<Record>)>,
    pub log: WebhookLogRow,
}

fn encode_records(records: &[Record]) -> Result<Vec<String>, StoreError> {
    records
        .iter()
        .map(|r| serde_json::to_string(r).map_err(|source| StoreError::Corrupt { id: 0, source }))
        .collect()
}

impl Store {
    /// Stores several webhooks in one transaction (group commit: one disk sync for all of
    /// them): each write's queue rows and its log line. Returns, per write and per flow of its
    /// `queue`, what was queued. All or nothing: on error no webhook of the batch is stored.
    pub async fn commit_intake(&self, writes: &[IntakeWrite], now_ms: i64) -> Result<Vec<Vec<Queued>>, StoreError> {
        let encoded: Vec<Vec<Vec<String>>> = writes
            .iter()
            .map(|w| w.queue.iter().map(|(_, records)| encode_records(records)).collect())
            .collect::<Result<_, _>>()?;
        let mut results = Vec::with_capacity(writes.len());
        dialect!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            for (write, encoded) in writes.iter().zip(&encoded) {
                let mut per_flow = Vec::with_capacity(write.queue.len());
                for ((flow, records), encoded) in write.queue.iter().zip(encoded) {
                    per_flow.push(insert_outbox_rows!(tx, sql, flow, records, encoded, now_ms));
                }
                let rows: usize = per_flow.iter().map(|q| q.inserted).sum();
                let log = WebhookLogRow {
                    queued: i64::try_from(rows).unwrap_or(i64::MAX),
                    ..write.log.clone()
                };
                bind_webhook_log!(sqlx::query(&sql(INSERT_WEBHOOK_LOG)), &log)
                    .execute(&mut *tx)
                    .await?;
                results.push(per_flow);
            }
            tx.commit().await?;
        });
        Ok(results)
    }

    /// Queues `records` for `flow` and, in the same transaction, sets the flow's cursor when one
    /// is given. A record whose event id is already queued for the flow is skipped.
    pub async fn enqueue(
        &self,
        flow: &str,
        records: &[Record],
        cursor: Option<&str>,
        now_ms: i64,
    ) -> Result<Queued, StoreError> {
        let encoded = encode_records(records)?;
        let queued = dialect!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let queued = insert_outbox_rows!(tx, sql, flow, records, &encoded, now_ms);
            if let Some(cursor) = cursor {
                sqlx::query(&sql(
                    "INSERT INTO cursors (flow, cursor, updated_at) VALUES (?, ?, ?) \
                     ON CONFLICT (flow) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                ))
                .bind(flow)
                .bind(cursor)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            queued
        });
        Ok(queued)
    }

    /// Queues those of `records` whose content differs from the latest row queued for the same
    /// source record of `flow` (a sweep re-reads everything; only changes become rows). What it
    /// leaves out counts as `duplicates`. One statement per record compares and inserts, so on
    /// SQLite the transaction takes the write lock first, waiting for it rather than failing.
    pub async fn enqueue_changed(&self, flow: &str, records: &[Record], now_ms: i64) -> Result<Queued, StoreError> {
        const INSERT_CHANGED: &str =
            "INSERT INTO outbox (flow, source_id, event_id, record, status, next_attempt_at, created_at, updated_at) \
             SELECT ?, ?, NULL, ?, 'pending', ?, ?, ? \
             WHERE COALESCE((SELECT record FROM outbox WHERE flow = ? AND source_id = ? ORDER BY id DESC LIMIT 1), '') <> ?";
        let encoded = encode_records(records)?;
        let mut queued = Queued::default();
        dialect!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            for (record, json) in records.iter().zip(&encoded) {
                let inserted = sqlx::query(&sql(INSERT_CHANGED))
                    .bind(flow)
                    .bind(&record.id)
                    .bind(json)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(flow)
                    .bind(&record.id)
                    .bind(json)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                queued.count(inserted);
            }
            tx.commit().await?;
        });
        Ok(queued)
    }

    /// The ids on one side of the links from `source` to `target`, in order, after `after`:
    /// the parent records a sweep reads the children of.
    pub async fn linked_ids(
        &self,
        (source, target): (&str, &str),
        side: LinkSide,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let query = match side {
            LinkSide::Source => {
                "SELECT source_id FROM links WHERE source = ? AND target = ? AND source_id > ? \
                 ORDER BY source_id LIMIT ?"
            }
            LinkSide::Target => {
                "SELECT DISTINCT target_id FROM links WHERE source = ? AND target = ? AND target_id > ? \
                 ORDER BY target_id LIMIT ?"
            }
        };
        let rows: Vec<(String,)> = dialect!(self, |pool, sql| {
            sqlx::query_as(&sql(query))
                .bind(source)
                .bind(target)
                .bind(after.unwrap_or(""))
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub async fn cursor(&self, flow: &str) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = dialect!(self, |pool, sql| {
            sqlx::query_as(&sql("SELECT cursor FROM cursors WHERE flow = ?"))
                .bind(flow)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(|(cursor,)| cursor))
    }

    /// Claims up to `limit` due rows of `flow` for `worker` until `now_ms + lease_ms`. Workers
    /// claim per flow so a paused flow (its connector needs reconnecting) keeps its rows queued.
    pub async fn claim(
        &self,
        flow: &str,
        worker: &str,
        limit: i64,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        // `+next_attempt_at` keeps SQLite off `outbox_due`: through it, every claim read and sorted
        // all due rows of every flow; through `outbox_claim` it stops after `limit` rows in id order.
        let rows: Vec<ClaimedRow> = dialect!(self, |pool, sql| {
            sqlx::query_as(&sql(
                "UPDATE outbox SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1, updated_at = ? \
                 WHERE id IN ( \
                   SELECT o.id FROM outbox o \
                   WHERE o.flow = ? AND o.status = 'pending' AND +o.next_attempt_at <= ? \
                     AND (o.claimed_until IS NULL OR o.claimed_until < ?) \
                     AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.flow = o.flow AND p.source_id = o.source_id \
                                     AND p.status = 'pending' AND p.id < o.id) \
                   ORDER BY o.id LIMIT ? /*LOCK*/) \
                 RETURNING id, flow, source_id, record, attempts",
            ))
            .bind(worker)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(flow)
            .bind(now_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut claimed: Vec<Claimed> = rows
            .into_iter()
            .map(|row| {
                let record =
                    serde_json::from_str(&row.record).map_err(|source| StoreError::Corrupt { id: row.id, source })?;
                Ok(Claimed {
                    id: row.id,
                    flow: row.flow,
                    source_id: row.source_id,
                    record,
                    attempts: row.attempts,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// Records how a claimed row's delivery ended. Returns false, and changes nothing, when the
    /// row is no longer `worker`'s (its lease ran out and another worker claimed it).
    pub async fn finish(&self, id: i64, worker: &str, outcome: &Outcome, now_ms: i64) -> Result<bool, StoreError> {
        self.finish_recording(id, worker, outcome, &[], now_ms).await
    }

    /// [`Store::finish`], also recording `events` about the row in the same transaction.
    pub async fn finish_recording(
        &self,
        id: i64,
        worker: &str,
        outcome: &Outcome,
        events: &[NewEvent],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (status, next_attempt, error, refund) = match outcome {
            Outcome::Delivered { .. } => ("done", None, None, 0_i64),
            Outcome::Retry { at_ms, error } => ("pending", Some(*at_ms), Some(error.as_str()), 0),
            Outcome::Dead { error } => ("dead", None, Some(error.as_str()), 0),
            Outcome::Throttled { at_ms, error } | Outcome::Paused { at_ms, error } => {
                ("pending", Some(*at_ms), Some(error.as_str()), 1)
            }
        };
        let ours = dialect!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let updated = sqlx::query(&sql(
                "UPDATE outbox SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?, \
                 attempts = attempts - ?, claimed_by = NULL, claimed_until = NULL, updated_at = ? \
                 WHERE id = ? AND claimed_by = ?",
            ))
            .bind(status)
            .bind(next_attempt)
            .bind(error)
            .bind(refund)
            .bind(now_ms)
            .bind(id)
            .bind(worker)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                if let Outcome::Delivered { link: Some((key, row)) } = outcome {
                    sqlx::query(&sql(
                        "INSERT INTO links (source, source_id, target, target_id, written_hash, written, source_updated_at, parent_id, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (source, source_id, target) DO UPDATE SET target_id = excluded.target_id, \
                         written_hash = excluded.written_hash, written = excluded.written, \
                         source_updated_at = excluded.source_updated_at, parent_id = excluded.parent_id, \
                         updated_at = excluded.updated_at",
                    ))
                    .bind(&key.source)
                    .bind(&key.source_id)
                    .bind(&key.target)
                    .bind(&row.target_id)
                    .bind(&row.written_hash)
                    .bind(&row.written)
                    .bind(&row.source_updated_at)
                    .bind(&row.parent_id)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                }
                for event in events {
                    sqlx::query(&sql(
                        "INSERT INTO events (at, flow, source_id, target_id, kind, detail) VALUES (?, ?, ?, ?, ?, ?)",
                    ))
                    .bind(now_ms)
                    .bind(&event.flow)
                    .bind(&event.source_id)
                    .bind(&event.target_id)
                    .bind(event.kind.as_str())
                    .bind(&event.detail)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            updated == 1
        });
        Ok(ours)
    }

    pub async fn link(&self, key: &LinkKey) -> Result<Option<LinkRow>, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT target_id, written_hash, written, source_updated_at, parent_id FROM links \
                 WHERE source = ? AND source_id = ? AND target = ?",
            ))
            .bind(&key.source)
            .bind(&key.source_id)
            .bind(&key.target)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The record of `source` that a target record was written from, for two-way flows. A
    /// target record can be linked from several source systems; the caller names the one its
    /// flow pairs with.
    pub async fn link_by_target(
        &self,
        source: &str,
        target: &str,
        target_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = dialect!(self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT source_id FROM links WHERE source = ? AND target = ? AND target_id = ?",
            ))
            .bind(source)
            .bind(target)
            .bind(target_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(source_id,)| source_id))
    }

    /// Extends a claim held by `worker` (a write still in flight) until `until_ms`. Returns
    /// false when the claim is no longer `worker`'s.
    pub async fn renew_claim(&self, id: i64, worker: &str, until_ms: i64) -> Result<bool, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query(&sql(
                "UPDATE outbox SET claimed_until = ? WHERE id = ? AND claimed_by = ? AND status = 'pending'",
            ))
            .bind(until_ms)
            .bind(id)
            .bind(worker)
            .execute(pool)
            .await?
            .rows_affected()
                == 1
        }))
    }

    /// The link that wrote target record `target_id` of connector `target_connector` from a
    /// record of connector `source_connector`: what a two-way flow's echo is compared with.
    pub async fn link_into(
        &self,
        source_connector: &str,
        target_connector: &str,
        target_id: &str,
    ) -> Result<Option<LinkRow>, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT target_id, written_hash, written, source_updated_at, parent_id FROM links \
                 WHERE target_id = ? AND target LIKE ? AND source LIKE ? ORDER BY updated_at DESC LIMIT 1",
            ))
            .bind(target_id)
            .bind(format!("{target_connector}/%"))
            .bind(format!("{source_connector}/%"))
            .fetch_optional(pool)
            .await?
        }))
    }

    /// The newest change of `source_id` still queued in any of `flows`.
    pub async fn pending_change(&self, flows: &[String], source_id: &str) -> Result<Option<Record>, StoreError> {
        for flow in flows {
            let row: Option<(i64, String)> = dialect!(self, |pool, sql| {
                sqlx::query_as(&sql(
                    "SELECT id, record FROM outbox WHERE flow = ? AND source_id = ? AND status = 'pending' \
                     ORDER BY id DESC LIMIT 1",
                ))
                .bind(flow)
                .bind(source_id)
                .fetch_optional(pool)
                .await?
            });
            if let Some((id, record)) = row {
                return serde_json::from_str(&record)
                    .map(Some)
                    .map_err(|source| StoreError::Corrupt { id, source });
            }
        }
        Ok(None)
    }

    pub async fn dead_letters(&self, flow: Option<&str>, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query_as(&sql(
                "SELECT id, flow, source_id, attempts, last_error, updated_at, record FROM outbox \
                 WHERE status = 'dead' AND (? IS NULL OR flow = ?) ORDER BY id LIMIT ?",
            ))
            .bind(flow)
            .bind(flow)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Puts dead rows back in the queue, due now, with a fresh attempt budget. `id` None: every
    /// dead row (of `flow`, when given). Returns how many.
    pub async fn replay(&self, id: Option<i64>, flow: Option<&str>, now_ms: i64) -> Result<u64, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query(&sql(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ? \
                 WHERE status = 'dead' AND (? IS NULL OR id = ?) AND (? IS NULL OR flow = ?)",
            ))
            .bind(now_ms)
            .bind(now_ms)
            .bind(id)
            .bind(id)
            .bind(flow)
            .bind(flow)
            .execute(pool)
            .await?
            .rows_affected()
        }))
    }

    /// Deletes one dead row. Returns whether there was one.
    pub async fn drop_dead(&self, id: i64) -> Result<bool, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query(&sql("DELETE FROM outbox WHERE id = ? AND status = 'dead'"))
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
                == 1
        }))
    }

    pub async fn flow_counts(&self) -> Result<Vec<FlowCounts>, StoreError> {
        Ok(dialect!(self, |pool, sql| {
            sqlx::query_as(&sql("SELECT flow, \
                 SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END) AS pending, \
                 SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END) AS dead, \
                 SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END) AS done \
                 FROM outbox GROUP BY flow ORDER BY flow"))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Takes or renews the lease `name` for `holder` until `now_ms + ttl_ms`. Returns whether
    /// `holder` holds it now.
    pub async fn acquire_lease(&self, name: &str, holder: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
        let row: Option<(String,)> = dialect!(self, |pool, sql| {
            sqlx::query_as(&sql("INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE leases.expires_at < ? OR leases.holder = excluded.holder \
                 RETURNING holder"))
            .bind(name)
            .bind(holder)
            .bind(now_ms + ttl_ms)
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.is_some_and(|(h,)| h == holder))
    }

    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        dialect!(self, |pool, sql| {
            sqlx::query(&sql("DELETE FROM leases WHERE name = ? AND holder = ?"))
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
