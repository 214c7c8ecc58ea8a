//! Group commit: every write waiting while a commit runs is stored by the next commit, in one
//! transaction, so webhooks taken in and delivery results share one disk sync. A write is
//! answered only after the commit that holds it succeeded, so each caller still waits for its
//! own write to be durable before it acknowledges a webhook or takes the next row.
//!
//! One committer task, started with the first write on the runtime of its caller. A failed
//! batch is retried one write at a time, so a write the store refuses fails alone, not its
//! neighbours.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use super::{Finish, IntakeWrite, Queued, Store, StoreError};

/// At most this many writes per transaction: bounds a commit's duration, so latency too.
const MAX_BATCH: usize = 512;
/// Writes waiting for a commit before senders wait for room (backpressure, not loss).
const QUEUE: usize = 4096;

type Reply<T> = oneshot::Sender<Result<T, Arc<StoreError>>>;

/// A write waiting for its commit, with where its answer goes.
enum Pending {
    Intake(IntakeWrite, Reply<Vec<Queued>>),
    Finish(Finish, Reply<bool>),
}

pub struct GroupCommit {
    store: Store,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    sender: OnceLock<mpsc::Sender<Pending>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("the store's committer stopped")]
    Stopped,
}

impl GroupCommit {
    /// Commits with `store`, stamping each commit with `clock`'s time.
    pub fn new(store: Store, clock: Arc<dyn Fn() -> i64 + Send + Sync>) -> GroupCommit {
        GroupCommit {
            store,
            clock,
            sender: OnceLock::new(),
        }
    }

    /// Stores a webhook durably ([`Store::commit_intake`]); what it queued per flow of its queue.
    pub async fn intake(&self, write: IntakeWrite) -> Result<Vec<Queued>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Pending::Intake(write, reply)).await?;
        answered(answer).await
    }

    /// Records a delivery result durably ([`Store::finish_recording`]); whether the row was
    /// still its worker's.
    pub async fn finish(&self, finish: Finish) -> Result<bool, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Pending::Finish(finish, reply)).await?;
        answered(answer).await
    }

    async fn submit(&self, pending: Pending) -> Result<(), CommitError> {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(committer(self.store.clone(), Arc::clone(&self.clock), receiver));
            sender
        });
        sender.send(pending).await.map_err(|_| CommitError::Stopped)
    }
}

async fn answered<T>(answer: oneshot::Receiver<Result<T, Arc<StoreError>>>) -> Result<T, CommitError> {
    match answer.await {
        Ok(result) => result.map_err(CommitError::Store),
        Err(_) => Err(CommitError::Stopped),
    }
}

/// Runs until every sender is gone. Takes whatever is waiting (up to [`MAX_BATCH`]) after
/// each commit: under load batches grow by themselves, idle a write commits alone at once.
async fn committer(store: Store, clock: Arc<dyn Fn() -> i64 + Send + Sync>, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (mut intake, mut intake_replies) = (Vec::new(), Vec::new());
        let (mut finishes, mut finish_replies) = (Vec::new(), Vec::new());
        for pending in batch.drain(..) {
            match pending {
                Pending::Intake(write, reply) => {
                    intake.push(write);
                    intake_replies.push(reply);
                }
                Pending::Finish(finish, reply) => {
                    finishes.push(finish);
                    finish_replies.push(reply);
                }
            }
        }
        let now = clock();
        match store.commit(&intake, &finishes, now).await {
            Ok(committed) => {
                // A sender may have gone (its client hung up); its write is stored anyway.
                for (reply, queued) in intake_replies.into_iter().zip(committed.intake) {
                    let _ = reply.send(Ok(queued));
                }
                for (reply, ours) in finish_replies.into_iter().zip(committed.finished) {
                    let _ = reply.send(Ok(ours));
                }
            }
            Err(error) if intake.len() + finishes.len() == 1 => {
                let error = Arc::new(error);
                for reply in intake_replies {
                    let _ = reply.send(Err(Arc::clone(&error)));
                }
                for reply in finish_replies {
                    let _ = reply.send(Err(Arc::clone(&error)));
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = intake.len() + finishes.len(), "a group commit failed; storing its writes one by one");
                for (write, reply) in intake.into_iter().zip(intake_replies) {
                    let result = store
                        .commit_intake(std::slice::from_ref(&write), now)
                        .await
                        .map(|mut results| results.pop().unwrap_or_default())
                        .map_err(Arc::new);
                    let _ = reply.send(result);
                }
                for (finish, reply) in finishes.into_iter().zip(finish_replies) {
                    let result = store.finish_one(&finish, now).await.map_err(Arc::new);
                    let _ = reply.send(result);
                }
            }
        }
    }
}
