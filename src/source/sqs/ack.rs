//! Acknowledging SQS messages: delete what succeeded (checking every entry), set the
//! visibility of failed messages (`esmd_retry_backoff`), and release what was received but
//! not processed.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::client::FailedEntry;
use super::{Queue, ReceiptRef, Received, SqsError, SqsSource};
use crate::action::ErrorAction;
use crate::payload::sqs::SqsMessage;
use crate::retry::{retry, Pace, Retried, Step};
use crate::telemetry::events::{
    BatchEntriesFailed, DeleteFailed, MessagesDeleted, MessagesReleased,
};

impl SqsSource {
    pub(super) async fn delete(&self, queue: &Queue, records: &[Received]) {
        let refs: Vec<&Received> = records.iter().collect();
        self.delete_refs(queue, &refs).await;
    }

    /// Deletes messages, checking every entry's result. A refused entry is logged and counted;
    /// its message is redelivered after the visibility timeout.
    pub(super) async fn delete_refs(&self, queue: &Queue, records: &[&Received]) {
        if records.is_empty() {
            return;
        }
        let entries: Vec<ReceiptRef<'_>> = records
            .iter()
            .map(|r| ReceiptRef {
                receipt_handle: &r.message.receipt_handle,
            })
            .collect();
        let deleted = retry(
            self.policies,
            &self.shutdown.abandon,
            |_| async {
                match self.api.delete(&queue.url, &entries).await {
                    Ok(failed) => Step::Done(failed),
                    Err(error) if error.action() == ErrorAction::Retry => Step::Retry {
                        error,
                        pace: Pace::Transient,
                        after: None,
                    },
                    Err(error) => Step::Stop(error),
                }
            },
            |_, _, _| {},
        )
        .await;
        let failed = match deleted {
            Retried::Done(failed) => failed,
            // The shutdown deadline passed while SQS kept failing: the messages come back.
            Retried::Cancelled => Vec::new(),
            Retried::Stopped(e) => {
                DeleteFailed {
                    uuid: &self.mapping.uuid,
                    metrics: &self.status.metrics,
                    records: records.len(),
                    error: &e.to_string(),
                }
                .emit();
                return;
            }
        };
        MessagesDeleted {
            uuid: &self.mapping.uuid,
            metrics: &self.status.metrics,
            deleted: records.len() - failed.len(),
            refused: failed.len(),
        }
        .emit();
        self.report_failed_entries("DeleteMessageBatch", &failed);
    }

    /// With `esmd_retry_backoff`, sets each failed message's visibility to the backoff for its
    /// receive count instead of leaving it to the queue's visibility timeout. The receive
    /// count still grows with every receive, so the redrive policy's `maxReceiveCount` decides
    /// when a message reaches the DLQ, as without backoff.
    pub(super) async fn back_off(&self, queue: &Queue, kept: &[&Received]) {
        let Some(backoff) = self.settings.retry_backoff else {
            return;
        };
        if kept.is_empty() {
            return;
        }
        let entries: Vec<(ReceiptRef<'_>, Duration)> = kept
            .iter()
            .map(|r| {
                (
                    ReceiptRef {
                        receipt_handle: &r.message.receipt_handle,
                    },
                    crate::failure::sqs::backoff_visibility(
                        &backoff,
                        r.message.receive_count(),
                        rand::random::<f64>(),
                    ),
                )
            })
            .collect();
        match self.api.change_visibility(&queue.url, &entries).await {
            Ok(failed) => {
                self.report_failed_entries("ChangeMessageVisibilityBatch", &failed);
            }
            Err(e) => {
                tracing::warn!(mapping = %self.mapping.uuid, error = %e, "could not set retry backoff; messages return after the visibility timeout");
            }
        }
    }

    /// Logs the entries of a batch call that SQS refused.
    fn report_failed_entries(&self, operation: &str, failed: &[FailedEntry]) {
        if let Some(first) = failed.first() {
            BatchEntriesFailed {
                uuid: &self.mapping.uuid,
                operation,
                failed: failed.len(),
                first_error: &format!("{}: {}", first.code, first.message),
            }
            .emit();
        }
    }

    /// A ReceiveMessage call that owns what it needs, so that it can outlive the poller.
    pub(super) fn receive_owned(
        &self,
        queue: &Queue,
        max_messages: usize,
        wait: Duration,
    ) -> BoxFuture<'static, Result<Vec<SqsMessage>, SqsError>> {
        let api = Arc::clone(&self.api);
        let url = queue.url.clone();
        Box::pin(async move { api.receive(&url, max_messages, wait).await })
    }

    /// The mapping stopped (reload, an API update, shutdown) during a long poll: finish the
    /// poll in the background and make whatever it received visible again at once, instead
    /// of leaving it hidden for the queue's visibility timeout. (At process exit the runtime
    /// ends this task; the messages then return after the visibility timeout.)
    pub(super) fn release_when_received(
        &self,
        queue: &Queue,
        receiving: BoxFuture<'static, Result<Vec<SqsMessage>, SqsError>>,
    ) {
        let api = Arc::clone(&self.api);
        let url = queue.url.clone();
        let uuid = self.mapping.uuid.clone();
        let status = Arc::clone(&self.status);
        tokio::spawn(async move {
            let Ok(messages) = receiving.await else {
                return;
            };
            if messages.is_empty() {
                return;
            }
            let entries: Vec<(ReceiptRef<'_>, Duration)> = messages
                .iter()
                .map(|m| {
                    let handle = ReceiptRef {
                        receipt_handle: &m.receipt_handle,
                    };
                    (handle, Duration::ZERO)
                })
                .collect();
            match api.change_visibility(&url, &entries).await {
                Ok(failed) => MessagesReleased {
                    uuid: &uuid,
                    metrics: &status.metrics,
                    released: messages.len() - failed.len(),
                }
                .emit(),
                Err(e) => {
                    tracing::warn!(mapping = %uuid, error = %e, "could not release messages received after the mapping stopped; they return after the visibility timeout");
                }
            }
        });
    }

    /// Makes received-but-unprocessed messages visible again at once.
    pub(super) async fn release(&self, queue: &Queue, records: Vec<Received>) {
        if records.is_empty() {
            return;
        }
        let entries: Vec<(ReceiptRef<'_>, Duration)> = records
            .iter()
            .map(|r| {
                (
                    ReceiptRef {
                        receipt_handle: &r.message.receipt_handle,
                    },
                    Duration::ZERO,
                )
            })
            .collect();
        match self.api.change_visibility(&queue.url, &entries).await {
            Ok(failed) => {
                MessagesReleased {
                    uuid: &self.mapping.uuid,
                    metrics: &self.status.metrics,
                    released: records.len() - failed.len(),
                }
                .emit();
                self.report_failed_entries("ChangeMessageVisibilityBatch", &failed);
            }
            Err(e) => {
                tracing::warn!(mapping = %self.mapping.uuid, error = %e, "could not release messages; they return after the visibility timeout");
            }
        }
        self.unclaim_fifo_groups(queue, &records);
    }
}
