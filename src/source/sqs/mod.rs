//! The SQS source: long-poll a queue, gather batches, invoke, then delete what succeeded.
//!
//! Delivery is at least once. A message is deleted only after the function confirmed it (or it
//! matched no filter); everything else returns through the queue's visibility timeout, so the
//! queue's own redrive policy moves poison messages to its DLQ. On shutdown, pollers stop
//! receiving, in-flight invocations get `daemon.shutdown_timeout` to finish (then their
//! messages are deleted), and messages received but not yet invoked are made visible at once.
//!
//! FIFO queues keep order within a message group: SQS itself hands out a group's messages in
//! order and holds the group while a batch of it is in flight; esmd additionally refuses to
//! put one group into two concurrent batches (a message of a group another poller holds is
//! released straight back) and, after a partial failure, keeps every later message of the
//! failed group.

mod ack;
pub(crate) mod client;
#[cfg(test)]
mod contract;
mod fifo;
mod gather;
mod lean;
pub(crate) mod scaling;
mod settle;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod twin;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::action::ErrorAction;
use crate::batch::{BatchLimits, BatchRecord};
use crate::config::{MappingConfig, SqsSettings, DEFAULT_SQS_MAXIMUM_CONCURRENCY};
use crate::filter::FilterSet;
use crate::invoke::Invoker;
use crate::payload::sqs::{filter_view, SqsMessage};
use crate::payload::RecordJson;
use crate::retry::{retry, sleep_or_cancel, Pace, Retried, RetryPolicies, Step};
use crate::telemetry::events::{MappingErrored, MappingStarted, ReceiveFailed, RecordsFilteredOut};
use crate::telemetry::{MappingState, MappingStatus};
pub(crate) use client::{ReceiptRef, SqsApi, SqsError};
use fifo::FifoGroups;
use gather::Gathered;
pub(crate) use lean::sqs_api;
use scaling::Scaler;

/// Leave this much of the visibility timeout unused when retrying a throttled batch, so the
/// messages are not redelivered while esmd still holds them.
const VISIBILITY_MARGIN: Duration = Duration::from_secs(2);

/// A received message with its serialised record.
#[derive(Debug)]
struct Received {
    message: SqsMessage,
    json: RecordJson,
    received_at: Instant,
}

impl BatchRecord for Received {
    fn json(&self) -> &RecordJson {
        &self.json
    }
}

pub(crate) use super::Shutdown;

/// How often the backlog gauges are refreshed (one GetQueueAttributes call each).
pub(crate) const DEPTH_SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Everything one SQS mapping needs.
pub(crate) struct SqsSource {
    mapping: Arc<MappingConfig>,
    queue_name: String,
    account_id: String,
    region: String,
    fifo: bool,
    limits: BatchLimits,
    filters: Arc<FilterSet>,
    settings: SqsSettings,
    api: Arc<dyn SqsApi>,
    invoker: Arc<dyn Invoker>,
    status: Arc<MappingStatus>,
    shutdown: Shutdown,
    policies: RetryPolicies,
}

/// State shared by the pollers of one mapping once its queue is resolved.
struct Queue {
    url: String,
    visibility_timeout: Duration,
    scaler: Mutex<Scaler>,
    scaled: tokio::sync::Notify,
    /// Signalled when a poller receives messages: the depth sampler sleeps on it at rest.
    active: tokio::sync::Notify,
    /// FIFO message groups in flight or awaiting their failed messages.
    fifo_groups: Mutex<FifoGroups>,
    /// While the mapping is in an error state, pollers wait until this instant.
    paused_until: Mutex<Option<Instant>>,
    consecutive_errors: Mutex<usize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SqsSource {
    pub(crate) fn new(
        mapping: Arc<MappingConfig>,
        settings: SqsSettings,
        api: Arc<dyn SqsApi>,
        invoker: Arc<dyn Invoker>,
        status: Arc<MappingStatus>,
        shutdown: Shutdown,
    ) -> Self {
        SqsSource {
            queue_name: mapping.source.name().to_string(),
            account_id: mapping.source.account_id().to_string(),
            region: mapping.source.region().to_string(),
            fifo: mapping.source.is_fifo_queue(),
            limits: BatchLimits::for_mapping(&mapping),
            filters: Arc::clone(&mapping.filters),
            settings,
            api,
            invoker,
            status,
            shutdown,
            mapping,
            policies: RetryPolicies::DEFAULT,
        }
    }

    /// The range the pollers scale in: `provisioned_poller_config`, capped by
    /// `scaling_config.maximum_concurrency` (each poller has its own batch in flight), or one
    /// to the maximum concurrency.
    fn poller_range(&self) -> (usize, usize) {
        let cap = self.settings.maximum_concurrency;
        match self.settings.pollers {
            Some(range) => (
                range.minimum,
                cap.map_or(range.maximum, |c| c.min(range.maximum)),
            ),
            None => (1, cap.unwrap_or(DEFAULT_SQS_MAXIMUM_CONCURRENCY)),
        }
    }

    /// Runs the mapping until shutdown.
    pub(crate) async fn run(self: Arc<Self>) {
        let Some(queue) = self.resolve_queue().await else {
            return;
        };
        self.status.set_polling();
        MappingStarted {
            uuid: &self.mapping.uuid,
            source: self.mapping.source.arn(),
            function: &self.mapping.function_name,
        }
        .emit();
        let queue = Arc::new(queue);
        let pollers = TaskTracker::new();
        for index in 0..self.poller_range().1 {
            pollers.spawn(Arc::clone(&self).poller(index, Arc::clone(&queue)));
        }
        pollers.spawn(Arc::clone(&self).sample_depth(Arc::clone(&queue)));
        pollers.close();
        pollers.wait().await;
        self.status.set_state(MappingState::Disabling);
    }

    /// Samples the queue's backlog for the metrics every [`DEPTH_SAMPLE_INTERVAL`] while
    /// messages flow, until shutdown. At rest (no message received since the last sample:
    /// every long poll came back empty, so nothing is visible) it records a visible backlog
    /// of 0 and sleeps until a poller receives again, so an idle mapping makes no extra
    /// request and no timer fires. A failed sample is logged at debug and skipped: metrics
    /// never stop a mapping.
    async fn sample_depth(self: Arc<Self>, queue: Arc<Queue>) {
        let metrics = &self.status.metrics;
        let mut polled_at_sample = None;
        loop {
            let polled = metrics.polled.load(std::sync::atomic::Ordering::Relaxed);
            if polled_at_sample == Some(polled) {
                metrics
                    .sqs_backlog
                    .store(0, std::sync::atomic::Ordering::Relaxed);
                tokio::select! {
                    _ = queue.active.notified() => {}
                    _ = self.shutdown.stop_receiving.cancelled() => return,
                }
            }
            polled_at_sample = Some(metrics.polled.load(std::sync::atomic::Ordering::Relaxed));
            match self.api.queue_depth(&queue.url).await {
                Ok((visible, not_visible)) => {
                    metrics
                        .sqs_backlog
                        .store(visible, std::sync::atomic::Ordering::Relaxed);
                    metrics
                        .sqs_not_visible
                        .store(not_visible, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::debug!(mapping = %self.mapping.uuid, error = %e, "queue depth sample failed")
                }
            }
            if !sleep_or_cancel(DEPTH_SAMPLE_INTERVAL, &self.shutdown.stop_receiving).await {
                return;
            }
        }
    }

    /// Resolves the queue URL and visibility timeout, retrying slowly while the queue is
    /// missing or access is denied. Returns `None` on shutdown.
    async fn resolve_queue(&self) -> Option<Queue> {
        let resolved = retry(
            self.policies,
            &self.shutdown.stop_receiving,
            |_| async {
                let resolved = async {
                    let url = self
                        .api
                        .queue_url(&self.queue_name, &self.account_id)
                        .await?;
                    let visibility_timeout = self.api.visibility_timeout(&url).await?;
                    Ok::<_, SqsError>((url, visibility_timeout))
                };
                match resolved.await {
                    Ok(found) => Step::Done(found),
                    Err(error) => Step::Retry {
                        error,
                        pace: Pace::ErrorState,
                        after: None,
                    },
                }
            },
            |err, _, delay| self.errored(err, delay),
        )
        .await;
        let Retried::Done((url, visibility_timeout)) = resolved else {
            return None;
        };
        Some(Queue {
            url,
            visibility_timeout,
            scaler: Mutex::new({
                let (min, max) = self.poller_range();
                Scaler::new(min, max)
            }),
            scaled: tokio::sync::Notify::new(),
            active: tokio::sync::Notify::new(),
            fifo_groups: Mutex::new(FifoGroups::default()),
            paused_until: Mutex::new(None),
            consecutive_errors: Mutex::new(0),
        })
    }

    /// Puts the mapping in its error state (a missing queue or function, denied access).
    fn errored(&self, err: &SqsError, retry_in: Duration) {
        let text = format!("{} ({})", err, self.mapping.source.arn());
        self.status.set_error(text.clone());
        MappingErrored {
            uuid: &self.mapping.uuid,
            error: &text,
            retry_in,
        }
        .emit();
    }

    /// One poller: gather a batch, process it, repeat.
    ///
    /// Pollers beyond the scaler's current count park until the backlog wakes them; every
    /// poller waits out an error pause before receiving again.
    async fn poller(self: Arc<Self>, index: usize, queue: Arc<Queue>) {
        let mut leftover: Vec<Received> = Vec::new();
        loop {
            if self.shutdown.stop_receiving.is_cancelled() {
                break;
            }
            if index >= lock(&queue.scaler).current() {
                tokio::select! {
                    _ = queue.scaled.notified() => continue,
                    _ = self.shutdown.stop_receiving.cancelled() => break,
                }
            }
            let paused_until = *lock(&queue.paused_until);
            if let Some(until) = paused_until.filter(|u| *u > Instant::now()) {
                let wait = until - Instant::now();
                if !sleep_or_cancel(wait, &self.shutdown.stop_receiving).await {
                    break;
                }
            }
            match self.gather(&queue, &mut leftover).await {
                Gathered::Batch(batch) => {
                    if !batch.is_empty() {
                        queue.active.notify_one();
                        self.process(&queue, batch.into_records()).await;
                    }
                }
                Gathered::Cancelled(batch) => {
                    self.release(&queue, batch.into_records()).await;
                    break;
                }
                Gathered::Failed(batch, err) => {
                    if !batch.is_empty() {
                        self.process(&queue, batch.into_records()).await;
                    }
                    self.on_source_error(&queue, &err).await;
                }
            }
        }
        self.release(&queue, std::mem::take(&mut leftover)).await;
    }

    /// Waits after a failed SQS call: a short jittered backoff for transient errors, the
    /// error state and a slow backoff for a missing queue or denied access.
    async fn on_source_error(&self, queue: &Queue, err: &SqsError) {
        let failures = {
            let mut n = lock(&queue.consecutive_errors);
            *n += 1;
            *n
        };
        let delay = match err.action() {
            ErrorAction::Retry => {
                let delay = self.policies.nth(Pace::Transient, failures);
                ReceiveFailed {
                    uuid: &self.mapping.uuid,
                    error: &err.to_string(),
                    retry_in: delay,
                }
                .emit();
                delay
            }
            _ => {
                let delay = self.policies.nth(Pace::ErrorState, failures);
                self.errored(err, delay);
                delay
            }
        };
        *lock(&queue.paused_until) = Some(Instant::now() + delay);
    }

    /// Filters, invokes and acknowledges one batch.
    async fn process(&self, queue: &Queue, records: Vec<Received>) {
        let (passed, filtered): (Vec<Received>, Vec<Received>) = if self.filters.is_empty() {
            (records, Vec::new())
        } else {
            records
                .into_iter()
                .partition(|r| self.filters.accepts(&filter_view(&r.message)))
        };
        if !filtered.is_empty() {
            RecordsFilteredOut {
                uuid: &self.mapping.uuid,
                metrics: &self.status.metrics,
                records: filtered.len(),
            }
            .emit();
            self.delete(queue, &filtered).await;
            self.unclaim_fifo_groups(queue, &filtered);
        }
        if passed.is_empty() {
            return;
        }
        self.invoke_and_settle(queue, passed).await;
    }
}
