//! Invoking one SQS batch and settling it: throttles and service errors are retried while
//! the messages stay invisible; a payload too large is split; then [`decide`] says which
//! messages to delete and which to keep for the queue's redrive (and, with
//! `esmd_retry_backoff`, when they come back).

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::{lock, Queue, Received, SqsError, SqsSource, VISIBILITY_MARGIN};
use crate::action::ErrorAction;
use crate::failure::sqs::{decide, MessageKey, SqsDisposition};
use crate::invoke::{invoke_counted, InvokeOutcome};
use crate::retry::{retry, Pace, Pacer, Retried, Step};
use crate::telemetry::events::{BatchFailed, InvokeRetrying, RecordsFailed};

impl SqsSource {
    pub(super) fn invoke_and_settle<'a>(
        &'a self,
        queue: &'a Queue,
        records: Vec<Received>,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let payload = crate::memory::into_bytes(crate::payload::records_event(
                records.iter().map(|r| &r.json),
            ));
            let oldest = records
                .iter()
                .map(|r| r.received_at)
                .min()
                .unwrap_or_else(Instant::now);
            let in_flight = self.status.metrics.in_flight();
            let result = self
                .invoke_with_retries(queue, payload, records.len(), oldest)
                .await;
            drop(in_flight);
            let outcome = match result {
                Attempted::Outcome(o) => o,
                Attempted::NotInvoked => {
                    self.release(queue, records).await;
                    return;
                }
                Attempted::Abandoned => {
                    tracing::warn!(mapping = %self.mapping.uuid, records = records.len(), "shutdown deadline passed during an invocation; messages return after their visibility timeout");
                    self.unclaim_fifo_groups(queue, &records);
                    return;
                }
            };
            if let InvokeOutcome::TooLarge { .. } = outcome {
                if records.len() > 1 {
                    let mut first = records;
                    let second = first.split_off(first.len() / 2);
                    self.invoke_and_settle(queue, first).await;
                    self.invoke_and_settle(queue, second).await;
                    return;
                }
            }
            if let InvokeOutcome::Misconfigured { .. } = outcome {
                self.on_source_error(
                    queue,
                    &SqsError::Other(format!(
                        "function {}: {}",
                        self.mapping.function_name,
                        outcome.summary()
                    )),
                )
                .await;
            }
            self.settle(queue, &records, &outcome).await;
            self.unclaim_fifo_groups(queue, &records);
        })
    }

    /// Deletes what succeeded and keeps the rest, as [`decide`] says.
    async fn settle(&self, queue: &Queue, records: &[Received], outcome: &InvokeOutcome) {
        let metrics = &self.status.metrics;
        let keys: Vec<MessageKey<'_>> = records
            .iter()
            .map(|r| MessageKey {
                message_id: &r.message.message_id,
                group_id: r.message.group_id(),
            })
            .collect();
        let disposition = decide(
            outcome,
            self.mapping.report_batch_item_failures,
            &keys,
            self.fifo,
        );
        match disposition {
            SqsDisposition::DeleteAll => {
                self.status.record_result("OK");
                self.delete(queue, records).await;
            }
            SqsDisposition::Partial { delete, keep } => {
                self.status.record_result("OK (partial batch failure)");
                RecordsFailed {
                    uuid: &self.mapping.uuid,
                    metrics,
                    records: keep.len(),
                }
                .emit();
                let to_delete: Vec<&Received> = delete.iter().map(|&i| &records[i]).collect();
                self.delete_refs(queue, &to_delete).await;
                let kept: Vec<&Received> = keep.iter().map(|&i| &records[i]).collect();
                self.back_off(queue, &kept).await;
                self.await_fifo_retry(queue, &kept);
            }
            SqsDisposition::KeepAll { reason } => {
                if !matches!(outcome, InvokeOutcome::Misconfigured { .. }) {
                    self.status.record_problem(reason.clone());
                }
                BatchFailed {
                    uuid: &self.mapping.uuid,
                    metrics,
                    records: records.len(),
                    reason: &reason,
                }
                .emit();
                let kept: Vec<&Received> = records.iter().collect();
                if !matches!(outcome, InvokeOutcome::Misconfigured { .. }) {
                    self.back_off(queue, &kept).await;
                }
                self.await_fifo_retry(queue, &kept);
            }
        }
    }
    /// Invokes, retrying throttles and service errors with jittered backoff for as long as
    /// the messages stay invisible.
    async fn invoke_with_retries(
        &self,
        queue: &Queue,
        payload: Bytes,
        records: usize,
        oldest: Instant,
    ) -> Attempted {
        // A batch not yet sent when shutdown begins counts as received-but-unprocessed.
        if self.shutdown.stop_receiving.is_cancelled() {
            return Attempted::NotInvoked;
        }
        let pacer = std::sync::Mutex::new(Pacer::new(self.policies));
        let ended = retry(
            self.policies,
            &self.shutdown.stop_receiving,
            |attempt| {
                let (payload, pacer) = (payload.clone(), &pacer);
                async move {
                    if self.shutdown.abandon.is_cancelled()
                        || (attempt > 1 && self.shutdown.stop_receiving.is_cancelled())
                    {
                        return Step::Stop(Attempted::NotInvoked);
                    }
                    let Some(outcome) = self.invoke_once(&payload, records).await else {
                        return Step::Stop(Attempted::Abandoned);
                    };
                    if outcome.action() != ErrorAction::Retry {
                        return Step::Done(outcome);
                    }
                    let delay = match &outcome {
                        InvokeOutcome::Throttled {
                            retry_after: Some(after),
                            ..
                        } => *after,
                        _ => lock(pacer).next(Pace::Transient),
                    };
                    // The messages must not become visible while esmd still holds them.
                    if oldest.elapsed() + delay + VISIBILITY_MARGIN >= queue.visibility_timeout {
                        return Step::Done(outcome);
                    }
                    Step::Retry {
                        error: Attempted::Outcome(outcome),
                        pace: Pace::Transient,
                        after: Some(delay),
                    }
                }
            },
            |error, attempt, delay| {
                if let Attempted::Outcome(outcome) = error {
                    InvokeRetrying {
                        uuid: &self.mapping.uuid,
                        outcome: &outcome.summary(),
                        attempt,
                        delay,
                    }
                    .emit();
                }
            },
        )
        .await;
        match ended {
            Retried::Done(outcome) => Attempted::Outcome(outcome),
            Retried::Stopped(attempted) => attempted,
            Retried::Cancelled => Attempted::NotInvoked,
        }
    }

    /// One invocation, counted and logged; `None` when the shutdown deadline cut it short.
    async fn invoke_once(&self, payload: &Bytes, records: usize) -> Option<InvokeOutcome> {
        tokio::select! {
            o = invoke_counted(self.invoker.as_ref(), &self.status, payload.clone(), records) => Some(o),
            _ = self.shutdown.abandon.cancelled() => None,
        }
    }

    /// FIFO only: remembers the kept messages of a failed batch so that no later message of
    /// their groups is delivered before they come back.
    fn await_fifo_retry(&self, queue: &Queue, kept: &[&Received]) {
        if !self.fifo || kept.is_empty() {
            return;
        }
        let until = Instant::now() + queue.visibility_timeout + Duration::from_secs(5);
        let kept = kept.iter().map(|r| {
            (
                r.message.group_id().unwrap_or_default(),
                r.message.message_id.as_str(),
            )
        });
        lock(&queue.fifo_groups).await_retry(kept, until);
    }

    pub(super) fn unclaim_fifo_groups(&self, queue: &Queue, records: &[Received]) {
        if self.fifo {
            let groups = records
                .iter()
                .map(|r| r.message.group_id().unwrap_or_default());
            lock(&queue.fifo_groups).unclaim(groups);
        }
    }
}

#[derive(Debug)]
enum Attempted {
    Outcome(InvokeOutcome),
    /// Shutdown began before the batch could be (re)invoked: release it.
    NotInvoked,
    /// The shutdown deadline passed during the invocation.
    Abandoned,
}
