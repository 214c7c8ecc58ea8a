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

use sqlx::Row;

use super::activity::insert_webhook_logs;
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

/// One queue row to insert: the record, its JSON and the flow it is queued for.
struct NewRow<'a> {
    flow: &'a str,
    record: &'a Record,
    json: &'a str,
}

/// Inserts `$rows` (a slice of [`NewRow`]) as pending queue rows inside transaction `$tx`, one
/// statement per [`ROWS_PER_INSERT`](super::ROWS_PER_INSERT) rows: on SQLite each statement is a
/// round trip to the connection's thread, which one per row made the cost of a group commit.
/// A row whose event id is already queued for its flow is skipped. Evaluates to, per row in
/// order, whether it was queued. A macro: the transaction's type differs per dialect.
macro_rules! insert_outbox_rows {
    ($tx:ident, $rows:expr, $now_ms:expr) => {{
        let rows: &[NewRow] = $rows;
        let mut queued_events = std::collections::HashSet::new();
        for chunk in rows.chunks(super::ROWS_PER_INSERT) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO outbox (flow, source_id, event_id, record, status, next_attempt_at, created_at, updated_at) ",
            );
            insert.push_values(chunk, |mut values, row| {
                values
                    .push_bind(row.flow)
                    .push_bind(&row.record.id)
                    .push_bind(row.record.event.as_ref().map(|e| e.id.as_str()))
                    .push_bind(row.json)
                    .push_bind("pending")
                    .push_bind($now_ms)
                    .push_bind($now_ms)
                    .push_bind($now_ms);
            });
            insert.push(
                " ON CONFLICT (flow, event_id) WHERE event_id IS NOT NULL DO NOTHING RETURNING flow, event_id",
            );
            for returned in insert.build().fetch_all(&mut *$tx).await? {
                let (flow, event_id): (String, Option<String>) = (returned.try_get(0)?, returned.try_get(1)?);
                if let Some(event_id) = event_id {
                    queued_events.insert((flow, event_id));
                }
            }
        }
        queued_flags(rows, queued_events)
    }};
}

/// Which of `rows` an insert queued, given the `(flow, event id)` pairs it returned: a row
/// without an event id always is; of rows with the same event id, only the first (the unique
/// index skipped the others).
fn queued_flags(rows: &[NewRow], mut queued_events: std::collections::HashSet<(String, String)>) -> Vec<bool> {
    rows.iter()
        .map(|row| match &row.record.event {
            None => true,
            Some(event) => queued_events.remove(&(row.flow.to_owned(), event.id.clone())),
        })
        .collect()
}

/// Adds a run of [`queued_flags`] up into counts.
fn count_queued(flags: &[bool]) -> Queued {
    let inserted = flags.iter().filter(|&&queued| queued).count();
    Queued {
        inserted,
        duplicates: flags.len() - inserted,
    }
}

/// How a claimed row's delivery ended, to record with [`Store::commit`]: what
/// [`Store::finish_recording`] takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish {
    pub id: i64,
    pub worker: String,
    pub outcome: Outcome,
    /// Recorded only when the row is still `worker`'s.
    pub events: Vec<NewEvent>,
}

/// What [`Store::commit`] stored, in the order it was given: per webhook and per flow of its
/// queue, what was queued; per finish, whether the row was still the worker's (when not,
/// nothing of that finish changed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Committed {
    pub intake: Vec<Vec<Queued>>,
    pub finished: Vec<bool>,
}

/// Records `$finish` (a [`Finish`]) inside transaction `$tx`; evaluates to whether the row was
/// still its worker's. The link and events are written only then. A macro: the transaction's
/// type differs per dialect.
macro_rules! finish_row {
    ($tx:ident, $sql:ident, $finish:expr, $now_ms:expr) => {{
        let finish: &Finish = $finish;
        let (status, next_attempt, error, refund) = match &finish.outcome {
            Outcome::Delivered { .. } => ("done", None, None, 0_i64),
            Outcome::Retry { at_ms, error } => ("pending", Some(*at_ms), Some(error.as_str()), 0),
            Outcome::Dead { error } => ("dead", None, Some(error.as_str()), 0),
            Outcome::Throttled { at_ms, error } | Outcome::Paused { at_ms, error } => {
                ("pending", Some(*at_ms), Some(error.as_str()), 1)
            }
        };
        let updated = sqlx::query(&$sql(
            "UPDATE outbox SET status = ?, next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?, \
             attempts = attempts - ?, claimed_by = NULL, claimed_until = NULL, updated_at = ? \
             WHERE id = ? AND claimed_by = ?",
        ))
        .bind(status)
        .bind(next_attempt)
        .bind(error)
        .bind(refund)
        .bind($now_ms)
        .bind(finish.id)
        .bind(&finish.worker)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if updated == 1 {
            if let Outcome::Delivered { link: Some((key, row)) } = &finish.outcome {
                sqlx::query(&$sql(
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
                .bind($now_ms)
                .execute(&mut *$tx)
                .await?;
            }
            for event in &finish.events {
                sqlx::query(&$sql(
                    "INSERT INTO events (at, flow, source_id, target_id, kind, detail) VALUES (?, ?, ?, ?, ?, ?)",
                ))
                .bind($now_ms)
                .bind(&event.flow)
                .bind(&event.source_id)
                .bind(&event.target_id)
                .bind(event.kind.as_str())
                .bind(&event.detail)
                .execute(&mut *$tx)
                .await?;
            }
        }
        updated == 1
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
    /// Stores several webhooks in one transaction: each write's queue rows and its log line.
    /// Returns, per write and per flow of its `queue`, what was queued. All or nothing.
    pub async fn commit_intake(&self, writes: &[IntakeWrite], now_ms: i64) -> Result<Vec<Vec<Queued>>, StoreError> {
        Ok(self.commit(writes, &[], now_ms).await?.intake)
    }

    /// One transaction, so one disk sync, for webhooks (`intake`: each write's queue rows and
    /// log line) and delivery results (`finishes`, each as [`Store::finish_recording`] records
    /// it): the group commit of [`GroupCommit`](super::GroupCommit). All or nothing: on error
    /// none of them is stored.
    pub async fn commit(
        &self,
        intake: &[IntakeWrite],
        finishes: &[Finish],
        now_ms: i64,
    ) -> Result<Committed, StoreError> {
        let encoded: Vec<Vec<Vec<String>>> = intake
            .iter()
            .map(|w| w.queue.iter().map(|(_, records)| encode_records(records)).collect())
            .collect::<Result<_, _>>()?;
        let rows: Vec<NewRow> = intake
            .iter()
            .zip(&encoded)
            .flat_map(|(write, encoded)| write.queue.iter().zip(encoded))
            .flat_map(|((flow, records), encoded)| {
                records
                    .iter()
                    .zip(encoded)
                    .map(|(record, json)| NewRow { flow, record, json })
            })
            .collect();
        dialect!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let mut committed = Committed {
                intake: Vec::with_capacity(intake.len()),
                finished: Vec::with_capacity(finishes.len()),
            };
            let flags = insert_outbox_rows!(tx, &rows, now_ms);
            // Back from one run of flags, in the order of `rows`, to each write's counts per flow.
            let mut flags = flags.as_slice();
            for write in intake {
                committed.intake.push(
                    write
                        .queue
                        .iter()
                        .map(|(_, records)| {
                            let (these, rest) = flags.split_at(records.len());
                            flags = rest;
                            count_queued(these)
                        })
                        .collect(),
                );
            }
            let logs: Vec<WebhookLogRow> = intake
                .iter()
                .zip(&committed.intake)
                .map(|(write, per_flow)| WebhookLogRow {
                    queued: i64::try_from(per_flow.iter().map(|q| q.inserted).sum::<usize>()).unwrap_or(i64::MAX),
                    ..write.log.clone()
                })
                .collect();
            insert_webhook_logs!(&mut *tx, &logs);
            for finish in finishes {
                committed.finished.push(finish_row!(tx, sql, finish, now_ms));
            }
            tx.commit().await?;
            Ok(committed)
        })
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
        let rows: Vec<NewRow> = records
            .iter()
            .zip(&encoded)
            .map(|(record, json)| NewRow { flow, record, json })
            .collect();
        let queued = dialect!(self, |pool, sql| {
            let mut tx = pool.begin().await?;
            let queued = count_queued(&insert_outbox_rows!(tx, &rows, now_ms));
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
        let row: Option<(Option<String>,)> = dialect!(read self, |pool, sql| {
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
        let finish = Finish {
            id,
            worker: worker.to_owned(),
            outcome: outcome.clone(),
            events: events.to_vec(),
        };
        self.finish_one(&finish, now_ms).await
    }

    /// Records one [`Finish`] in its own transaction; whether the row was still its worker's.
    pub async fn finish_one(&self, finish: &Finish, now_ms: i64) -> Result<bool, StoreError> {
        let committed = self.commit(&[], std::slice::from_ref(finish), now_ms).await?;
        Ok(committed.finished.first().copied().unwrap_or(false))
    }

    pub async fn link(&self, key: &LinkKey) -> Result<Option<LinkRow>, StoreError> {
        Ok(dialect!(read self, |pool, sql| {
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
        let row: Option<(String,)> = dialect!(read self, |pool, sql| {
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
        Ok(dialect!(read self, |pool, sql| {
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
            let row: Option<(i64, String)> = dialect!(read self, |pool, sql| {
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
        Ok(dialect!(read self, |pool, sql| {
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
        Ok(dialect!(read self, |pool, sql| {
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
