//! Gathering one SQS batch: long polls until the batch is full by count or payload size, or
//! its batching window closes; serialises each message once; and, for FIFO queues, keeps only
//! messages whose group this batch may take ([`super::fifo::FifoGroups`]).

use std::time::Duration;

use tokio::time::Instant;

use super::{lock, Queue, ReceiptRef, Received, SqsError, SqsSource};
use crate::batch::{Batch, PushRejected};
use crate::payload::sqs::{record_json, NoAttributesMd5, SqsMessage};
use crate::telemetry::events::{RecordTooLarge, RecordsPolled};
use crate::telemetry::MappingState;

/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);

pub(super) enum Gathered {
    Batch(Batch<Received>),
    Cancelled(Batch<Received>),
    Failed(Batch<Received>, SqsError),
}

impl SqsSource {
    /// One ReceiveMessage, or `None` when the mapping stops first. The long poll is then on
    /// SQS's side already, and what it returns would stay invisible for the visibility
    /// timeout: it finishes in the background and its messages are released.
    async fn receive_unless_stopped(
        &self,
        queue: &Queue,
        requested: usize,
        wait: Duration,
    ) -> Option<Result<Vec<SqsMessage>, SqsError>> {
        let mut receiving = self.receive_owned(queue, requested, wait);
        tokio::select! {
            r = &mut receiving => Some(r),
            _ = self.shutdown.stop_receiving.cancelled() => {
                self.release_when_received(queue, receiving);
                None
            }
        }
    }

    /// Receives until the batch is full by count or size, or the batching window ends. With no
    /// window, the first receive that returns messages completes the batch. The window opens
    /// when the first message arrives: an empty queue is long-polled (20 s), so an idle mapping
    /// makes few requests and a message on an idle queue waits one window, not up to two.
    pub(super) async fn gather(&self, queue: &Queue, leftover: &mut Vec<Received>) -> Gathered {
        let mut batch = Batch::new(self.limits);
        for record in std::mem::take(leftover) {
            match batch.try_push(record) {
                Ok(()) => {}
                Err(PushRejected::Full(r) | PushRejected::TooLarge(r)) => leftover.push(r),
            }
        }
        if !leftover.is_empty() || batch.is_full() {
            return Gathered::Batch(batch);
        }
        let window = self.limits.window;
        let mut opened: Option<Instant> = None;
        let mut swept = false;
        loop {
            let wait = if window.is_zero() {
                MAX_WAIT
            } else if let Some(started) = opened {
                let remaining = window.saturating_sub(started.elapsed());
                if remaining.is_zero() {
                    // One short poll at the close sweeps up what arrived in the last second.
                    if swept {
                        break;
                    }
                    swept = true;
                }
                remaining.min(MAX_WAIT)
            } else {
                MAX_WAIT
            };
            let requested = batch.remaining_records().min(10);
            let Some(received) = self.receive_unless_stopped(queue, requested, wait).await else {
                return Gathered::Cancelled(batch);
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => return Gathered::Failed(batch, e),
            };
            *lock(&queue.consecutive_errors) = 0;
            if self.status.state() == MappingState::Error {
                self.status.set_polling();
            }
            let (grew, pollers) = {
                let mut scaler = lock(&queue.scaler);
                (scaler.observe(requested, messages.len()), scaler.current())
            };
            let gauge = &self.status.metrics.sqs_pollers;
            gauge.store(pollers as i64, std::sync::atomic::Ordering::Relaxed);
            if grew {
                queue.scaled.notify_waiters();
            }
            if messages.is_empty() {
                let Some(started) = opened.filter(|_| !window.is_zero()) else {
                    break;
                };
                // A sub-second remainder would be a short poll; wait it out instead of
                // spinning, then sweep once.
                let remaining = window.saturating_sub(started.elapsed());
                if remaining < Duration::from_secs(1) {
                    tokio::select! {
                        _ = tokio::time::sleep(remaining) => {}
                        _ = self.shutdown.stop_receiving.cancelled() => {}
                    }
                }
                continue;
            }
            let messages = self.claim_fifo_groups(queue, messages).await;
            opened.get_or_insert(Instant::now());
            self.take(messages, &mut batch, leftover);
            if window.is_zero() || batch.is_full() || !leftover.is_empty() {
                break;
            }
        }
        Gathered::Batch(batch)
    }

    /// Serialises received messages into the batch; what does not fit waits in `leftover`.
    /// A message too large for any invocation is left invisible: it returns after the
    /// visibility timeout, and the queue's redrive policy eventually moves it to the DLQ.
    fn take(
        &self,
        messages: Vec<SqsMessage>,
        batch: &mut Batch<Received>,
        leftover: &mut Vec<Received>,
    ) {
        RecordsPolled {
            uuid: &self.mapping.uuid,
            metrics: &self.status.metrics,
            records: messages.len(),
        }
        .emit();
        let received_at = Instant::now();
        for message in messages {
            let shape = NoAttributesMd5::for_window(self.limits.window);
            let json = match record_json(&message, self.mapping.source.arn(), &self.region, shape) {
                Ok(json) => json,
                Err(e) => {
                    tracing::error!(mapping = %self.mapping.uuid, message_id = %message.message_id, error = %e, "cannot serialise record; left to the queue's redrive");
                    continue;
                }
            };
            let record = Received {
                message,
                json,
                received_at,
            };
            match batch.try_push(record) {
                Ok(()) => {}
                Err(PushRejected::Full(r)) => leftover.push(r),
                Err(PushRejected::TooLarge(r)) => {
                    RecordTooLarge {
                        uuid: &self.mapping.uuid,
                        metrics: &self.status.metrics,
                        record_id: &r.message.message_id,
                        bytes: r.json.get().len(),
                    }
                    .emit();
                }
            }
        }
    }

    /// FIFO only: keeps messages whose group no other batch holds, claiming those groups, and
    /// releases the others (with every later message of their group) back to the queue.
    ///
    /// A group whose earlier messages failed and have not come back yet is also refused: real
    /// SQS never hands out a later message first, but emulators can (moto skips a timed-out
    /// message while a later one of its group is still marked in flight), and order must hold
    /// whatever the backend.
    async fn claim_fifo_groups(&self, queue: &Queue, messages: Vec<SqsMessage>) -> Vec<SqsMessage> {
        if !self.fifo {
            return messages;
        }
        let (keep, release) = lock(&queue.fifo_groups).claim(messages, Instant::now());
        if !release.is_empty() {
            let entries: Vec<(ReceiptRef<'_>, Duration)> = release
                .iter()
                .map(|m| {
                    (
                        ReceiptRef {
                            receipt_handle: &m.receipt_handle,
                        },
                        Duration::ZERO,
                    )
                })
                .collect();
            if let Err(e) = self.api.change_visibility(&queue.url, &entries).await {
                tracing::warn!(mapping = %self.mapping.uuid, error = %e, "could not release messages of a group in flight; they return after the visibility timeout");
            }
            // Let the group's earlier messages come back before receiving again.
            if keep.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        keep
    }
}
