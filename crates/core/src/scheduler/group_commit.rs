//! Group commit for webhook intake: every webhook waiting to be stored while a commit runs is
//! stored by the next commit, in one transaction, so many webhooks share one disk sync. A
//! webhook is acknowledged only after the commit that holds it succeeded.
//!
//! One committer task per scheduler, started with the first webhook. A failed batch is retried
//! one write at a time, so a write the store refuses fails alone, not its neighbours.

use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use crate::store::{IntakeWrite, Queued, Store, StoreError};

use super::Clock;

/// At most this many webhooks per transaction: bounds a commit's duration, so latency too.
const MAX_BATCH: usize = 512;
/// Webhooks waiting for a commit before senders wait for room (backpressure, not loss).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<Vec<Queued>, Arc<StoreError>>>;

pub(super) struct GroupCommit {
    store: Store,
    clock: Clock,
    sender: OnceLock<mpsc::Sender<(IntakeWrite, Reply)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{0}")]
    Store(Arc<StoreError>),
    #[error("the intake committer stopped")]
    Stopped,
}

impl GroupCommit {
    pub(super) fn new(store: Store, clock: Clock) -> GroupCommit {
        GroupCommit {
            store,
            clock,
            sender: OnceLock::new(),
        }
    }

    /// Stores `write` durably; returns what it queued per flow of `write.queue`.
    pub(super) async fn commit(&self, write: IntakeWrite) -> Result<Vec<Queued>, CommitError> {
        let sender = self.sender.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(QUEUE);
            tokio::spawn(committer(self.store.clone(), Arc::clone(&self.clock), receiver));
            sender
        });
        let (reply, answer) = oneshot::channel();
        sender.send((write, reply)).await.map_err(|_| CommitError::Stopped)?;
        match answer.await {
            Ok(result) => result.map_err(CommitError::Store),
            Err(_) => Err(CommitError::Stopped),
        }
    }
}

/// Runs until every sender is gone. Takes whatever is waiting (up to [`MAX_BATCH`]) after
/// each commit: under load batches grow by themselves, idle a webhook commits alone at once.
async fn committer(store: Store, clock: Clock, mut receiver: mpsc::Receiver<(IntakeWrite, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (writes, replies): (Vec<IntakeWrite>, Vec<Reply>) = batch.drain(..).unzip();
        let now = clock();
        match store.commit_intake(&writes, now).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The sender may have gone (its client hung up); its webhook is stored anyway.
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) if writes.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(Arc::new(error)));
                }
            }
            Err(error) => {
                tracing::warn!(%error, webhooks = writes.len(), "intake batch failed; storing its webhooks one by one");
                for (write, reply) in writes.into_iter().zip(replies) {
                    let result = store
                        .commit_intake(std::slice::from_ref(&write), now)
                        .await
                        .map(|mut results| results.pop().unwrap_or_default())
                        .map_err(Arc::new);
                    let _ = reply.send(result);
                }
            }
        }
    }
}
