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

pub mod client;
pub mod scaling;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::task::TaskTracker;

use crate::batch::{Batch, BatchLimits, BatchRecord, PushRejected};
use crate::config::{EventSource, MappingConfig, DEFAULT_SQS_MAXIMUM_CONCURRENCY};
use crate::failure::sqs::{decide, MessageKey, SqsDisposition};
use crate::failure::{error_state_backoff, transient_backoff, ErrorAction};
use crate::filter::FilterSet;
use crate::payload::sqs::{filter_view, record_json, SqsMessage};
use crate::payload::RecordJson;
use crate::target::{InvokeOutcome, Invoker};
use crate::telemetry::events::{
    BatchEntriesFailed, BatchFailed, BatchInvoked, InvokeRetrying, MappingErrored, MappingStarted,
    RecordTooLarge,
};
use crate::telemetry::{MappingMetrics, MappingState, MappingStatus};
pub use client::{ReceiptRef, SdkSqs, SqsApi, SqsError};
use scaling::Scaler;

/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);

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
    fn json(&self) -> &serde_json::value::RawValue {
        &self.json
    }
}

pub use super::Shutdown;

/// How often the backlog gauges are refreshed (one GetQueueAttributes call each).
pub const DEPTH_SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Everything one SQS mapping needs.
pub struct SqsSource {
    mapping: Arc<MappingConfig>,
    queue_name: String,
    account_id: String,
    region: String,
    fifo: bool,
    limits: BatchLimits,
    filters: FilterSet,
    api: Arc<dyn SqsApi>,
    invoker: Arc<dyn Invoker>,
    status: Arc<MappingStatus>,
    shutdown: Shutdown,
}

/// State shared by the pollers of one mapping once its queue is resolved.
struct Queue {
    url: String,
    visibility_timeout: Duration,
    scaler: Mutex<Scaler>,
    scaled: tokio::sync::Notify,
    /// FIFO message groups held by an in-flight batch.
    groups_in_flight: Mutex<HashSet<String>>,
    /// FIFO message groups with failed messages still waiting to come back, by group: their
    /// message ids in group order and when esmd stops waiting (the visibility timeout plus a margin).
    groups_awaiting_retry: Mutex<HashMap<String, (VecDeque<String>, Instant)>>,
    /// While the mapping is in an error state, pollers wait until this instant.
    paused_until: Mutex<Option<Instant>>,
    consecutive_errors: Mutex<usize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Gathered {
    Batch(Batch<Received>),
    Cancelled(Batch<Received>),
    Failed(Batch<Received>, SqsError),
}

impl SqsSource {
    pub fn new(
        mapping: Arc<MappingConfig>,
        filters: FilterSet,
        api: Arc<dyn SqsApi>,
        invoker: Arc<dyn Invoker>,
        status: Arc<MappingStatus>,
        shutdown: Shutdown,
    ) -> Option<Self> {
        let EventSource::Sqs {
            queue_name,
            account_id,
            region,
            ..
        } = &mapping.source
        else {
            return None;
        };
        Some(SqsSource {
            queue_name: queue_name.clone(),
            account_id: account_id.clone(),
            region: region.clone(),
            fifo: mapping.source.is_fifo_queue(),
            limits: BatchLimits::for_mapping(&mapping),
            filters,
            api,
            invoker,
            status,
            shutdown,
            mapping,
        })
    }

    fn max_pollers(&self) -> usize {
        self.mapping
            .sqs
            .as_ref()
            .and_then(|s| s.maximum_concurrency)
            .unwrap_or(DEFAULT_SQS_MAXIMUM_CONCURRENCY)
    }

    /// Runs the mapping until shutdown.
    pub async fn run(self: Arc<Self>) {
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
        for index in 0..self.max_pollers() {
            pollers.spawn(Arc::clone(&self).poller(index, Arc::clone(&queue)));
        }
        pollers.spawn(Arc::clone(&self).sample_depth(Arc::clone(&queue)));
        pollers.close();
        pollers.wait().await;
        self.status.set_state(MappingState::Disabling);
    }

    /// Samples the queue's backlog for the metrics every [`DEPTH_SAMPLE_INTERVAL`] until
    /// shutdown. A failed sample is logged at debug and skipped: metrics never stop a mapping.
    async fn sample_depth(self: Arc<Self>, queue: Arc<Queue>) {
        let metrics = &self.status.metrics;
        loop {
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
            tokio::select! {
                _ = tokio::time::sleep(DEPTH_SAMPLE_INTERVAL) => {}
                _ = self.shutdown.stop_receiving.cancelled() => return,
            }
        }
    }

    /// Resolves the queue URL and visibility timeout, retrying slowly while the queue is
    /// missing or access is denied. Returns `None` on shutdown.
    async fn resolve_queue(&self) -> Option<Queue> {
        let mut delays = error_state_backoff();
        loop {
            let resolved = async {
                let url = self
                    .api
                    .queue_url(&self.queue_name, &self.account_id)
                    .await?;
                let visibility_timeout = self.api.visibility_timeout(&url).await?;
                Ok::<_, SqsError>((url, visibility_timeout))
            }
            .await;
            match resolved {
                Ok((url, visibility_timeout)) => {
                    return Some(Queue {
                        url,
                        visibility_timeout,
                        scaler: Mutex::new(Scaler::new(self.max_pollers())),
                        scaled: tokio::sync::Notify::new(),
                        groups_in_flight: Mutex::new(HashSet::new()),
                        groups_awaiting_retry: Mutex::new(HashMap::new()),
                        paused_until: Mutex::new(None),
                        consecutive_errors: Mutex::new(0),
                    })
                }
                Err(err) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    let text = format!("{} ({})", err, self.mapping.source.arn());
                    self.status.set_error(text.clone());
                    MappingErrored {
                        uuid: &self.mapping.uuid,
                        error: &text,
                        retry_in: delay,
                    }
                    .emit();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.stop_receiving.cancelled() => return None,
                    }
                }
            }
        }
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
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = self.shutdown.stop_receiving.cancelled() => break,
                }
            }
            match self.gather(&queue, &mut leftover).await {
                Gathered::Batch(batch) => {
                    if !batch.is_empty() {
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
            ErrorAction::Retry => transient_backoff().nth(failures.min(20) - 1),
            _ => {
                let delay = error_state_backoff().nth(failures.min(20) - 1);
                let text = format!("{} ({})", err, self.mapping.source.arn());
                self.status.set_error(text.clone());
                MappingErrored {
                    uuid: &self.mapping.uuid,
                    error: &text,
                    retry_in: delay.unwrap_or_default(),
                }
                .emit();
                delay
            }
        }
        .unwrap_or(Duration::from_secs(30));
        *lock(&queue.paused_until) = Some(Instant::now() + delay);
    }

    /// Receives until the batch is full by count or size, or the batching window ends. With no
    /// window, the first receive that returns messages completes the batch. The window opens
    /// when the first message arrives: an empty queue is long-polled (20 s), so an idle mapping
    /// makes few requests and a message on an idle queue waits one window, not up to two.
    async fn gather(&self, queue: &Queue, leftover: &mut Vec<Received>) -> Gathered {
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
            let received = tokio::select! {
                r = self.api.receive(&queue.url, requested, wait) => r,
                _ = self.shutdown.stop_receiving.cancelled() => return Gathered::Cancelled(batch),
            };
            let messages = match received {
                Ok(m) => m,
                Err(e) => return Gathered::Failed(batch, e),
            };
            *lock(&queue.consecutive_errors) = 0;
            if self.status.state() == MappingState::Error {
                self.status.set_polling();
            }
            if lock(&queue.scaler).observe(requested, messages.len()) {
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
            MappingMetrics::add(&self.status.metrics.polled, messages.len());
            let received_at = Instant::now();
            opened.get_or_insert(received_at);
            for message in messages {
                let json = match record_json(&message, self.mapping.source.arn(), &self.region) {
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
                        // Left invisible: it returns after the visibility timeout and the
                        // queue's redrive policy eventually moves it to the DLQ.
                        RecordTooLarge {
                            uuid: &self.mapping.uuid,
                            record_id: &r.message.message_id,
                            bytes: r.json.get().len(),
                        }
                        .emit();
                        MappingMetrics::add(&self.status.metrics.failed_invoke, 1);
                    }
                }
            }
            if window.is_zero() || batch.is_full() || !leftover.is_empty() {
                break;
            }
        }
        Gathered::Batch(batch)
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
        let mut keep = Vec::with_capacity(messages.len());
        let mut release = Vec::new();
        {
            let mut held = lock(&queue.groups_in_flight);
            let mut awaiting = lock(&queue.groups_awaiting_retry);
            let now = Instant::now();
            awaiting.retain(|_, (ids, until)| !ids.is_empty() && *until > now);
            let mut mine: HashSet<String> = HashSet::new();
            let mut refused: HashSet<String> = HashSet::new();
            for m in messages {
                let group = m.group_id().unwrap_or_default().to_string();
                // Only the group's earliest failed message may come next. (The order is the
                // failed batch's own: SQS delivered it in group order. Sequence numbers would
                // do on AWS, but moto's are random.)
                let out_of_turn = match awaiting.get_mut(&group) {
                    Some((pending, _)) if pending.front() == Some(&m.message_id) => {
                        pending.pop_front();
                        false
                    }
                    Some((pending, _)) => !pending.is_empty(),
                    None => false,
                };
                if awaiting
                    .get(&group)
                    .is_some_and(|(pending, _)| pending.is_empty())
                {
                    awaiting.remove(&group);
                }
                if out_of_turn
                    || refused.contains(&group)
                    || (!mine.contains(&group) && held.contains(&group))
                {
                    refused.insert(group);
                    release.push(m);
                } else {
                    held.insert(group.clone());
                    mine.insert(group);
                    keep.push(m);
                }
            }
        }
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

    /// FIFO only: remembers the kept messages of a failed batch so that no later message of
    /// their groups is delivered before they come back.
    fn await_fifo_retry(&self, queue: &Queue, kept: &[&Received]) {
        if !self.fifo || kept.is_empty() {
            return;
        }
        let until = Instant::now() + queue.visibility_timeout + Duration::from_secs(5);
        let mut awaiting = lock(&queue.groups_awaiting_retry);
        for r in kept {
            let group = r.message.group_id().unwrap_or_default().to_string();
            let entry = awaiting
                .entry(group)
                .or_insert_with(|| (VecDeque::new(), until));
            entry.0.push_back(r.message.message_id.clone());
            entry.1 = until;
        }
    }

    fn unclaim_fifo_groups(&self, queue: &Queue, records: &[Received]) {
        if self.fifo {
            let mut held = lock(&queue.groups_in_flight);
            for r in records {
                held.remove(r.message.group_id().unwrap_or_default());
            }
        }
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
            MappingMetrics::add(&self.status.metrics.filtered_out, filtered.len());
            self.delete(queue, &filtered).await;
            self.unclaim_fifo_groups(queue, &filtered);
        }
        if passed.is_empty() {
            return;
        }
        self.invoke_and_settle(queue, passed).await;
    }

    fn invoke_and_settle<'a>(
        &'a self,
        queue: &'a Queue,
        records: Vec<Received>,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let payload = Bytes::from(crate::payload::records_event(
                records.iter().map(|r| r.json.as_ref()),
            ));
            let oldest = records
                .iter()
                .map(|r| r.received_at)
                .min()
                .unwrap_or_else(Instant::now);
            let metrics = &self.status.metrics;
            metrics
                .in_flight_batches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let result = self
                .invoke_with_retries(queue, payload, records.len(), oldest)
                .await;
            metrics
                .in_flight_batches
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
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
            let keys: Vec<MessageKey<'_>> = records
                .iter()
                .map(|r| MessageKey {
                    message_id: &r.message.message_id,
                    group_id: r.message.group_id(),
                })
                .collect();
            let disposition = decide(
                &outcome,
                self.mapping.report_batch_item_failures,
                &keys,
                self.fifo,
            );
            match disposition {
                SqsDisposition::DeleteAll => {
                    self.status.record_result("OK");
                    self.delete(queue, &records).await;
                }
                SqsDisposition::Partial { delete, keep } => {
                    self.status.record_result("OK (partial batch failure)");
                    MappingMetrics::add(&metrics.failed_invoke, keep.len());
                    let to_delete: Vec<&Received> = delete.iter().map(|&i| &records[i]).collect();
                    self.delete_refs(queue, &to_delete).await;
                    let kept: Vec<&Received> = keep.iter().map(|&i| &records[i]).collect();
                    self.back_off(queue, &kept).await;
                    self.await_fifo_retry(queue, &kept);
                }
                SqsDisposition::KeepAll { reason } => {
                    MappingMetrics::add(&metrics.failed_invoke, records.len());
                    if !matches!(outcome, InvokeOutcome::Misconfigured { .. }) {
                        self.status.record_problem(reason.clone());
                    }
                    BatchFailed {
                        uuid: &self.mapping.uuid,
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
            self.unclaim_fifo_groups(queue, &records);
        })
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
        let metrics = &self.status.metrics;
        let mut delays = transient_backoff();
        let mut attempt = 0u32;
        loop {
            // A batch not yet sent when shutdown begins counts as received-but-unprocessed.
            if self.shutdown.abandon.is_cancelled()
                || (attempt == 0 && self.shutdown.stop_receiving.is_cancelled())
            {
                return Attempted::NotInvoked;
            }
            attempt += 1;
            MappingMetrics::add(&metrics.invocations, 1);
            MappingMetrics::add(&metrics.invoked, records);
            let started = Instant::now();
            let outcome = tokio::select! {
                o = self.invoker.invoke(&self.mapping.function_name, payload.clone()) => o,
                _ = self.shutdown.abandon.cancelled() => return Attempted::Abandoned,
            };
            let summary = outcome.summary();
            BatchInvoked {
                uuid: &self.mapping.uuid,
                records,
                payload_bytes: payload.len(),
                elapsed: metrics.invocation_duration.observed(started.elapsed()),
                outcome: &summary,
            }
            .emit();
            if outcome.action() != ErrorAction::Retry {
                return Attempted::Outcome(outcome);
            }
            let delay = match &outcome {
                InvokeOutcome::Throttled {
                    retry_after: Some(after),
                    ..
                } => *after,
                _ => delays.next().unwrap_or(Duration::from_secs(10)),
            };
            if oldest.elapsed() + delay + VISIBILITY_MARGIN >= queue.visibility_timeout {
                return Attempted::Outcome(outcome);
            }
            if self.shutdown.stop_receiving.is_cancelled() {
                return Attempted::NotInvoked;
            }
            InvokeRetrying {
                uuid: &self.mapping.uuid,
                outcome: &summary,
                attempt,
                delay,
            }
            .emit();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.shutdown.stop_receiving.cancelled() => return Attempted::NotInvoked,
            }
        }
    }

    async fn delete(&self, queue: &Queue, records: &[Received]) {
        let refs: Vec<&Received> = records.iter().collect();
        self.delete_refs(queue, &refs).await;
    }

    /// Deletes messages, checking every entry's result. A refused entry is logged and counted;
    /// its message is redelivered after the visibility timeout.
    async fn delete_refs(&self, queue: &Queue, records: &[&Received]) {
        if records.is_empty() {
            return;
        }
        let entries: Vec<ReceiptRef<'_>> = records
            .iter()
            .map(|r| ReceiptRef {
                receipt_handle: &r.message.receipt_handle,
            })
            .collect();
        let mut delays = transient_backoff();
        let failed = loop {
            match self.api.delete(&queue.url, &entries).await {
                Ok(failed) => break failed,
                Err(e) if e.action() == ErrorAction::Retry => {
                    let Some(delay) = delays
                        .next()
                        .filter(|_| !self.shutdown.abandon.is_cancelled())
                    else {
                        break Vec::new();
                    };
                    tokio::time::sleep(delay).await;
                }
                Err(e) => {
                    tracing::warn!(mapping = %self.mapping.uuid, error = %e, records = records.len(), "delete failed; messages will be redelivered");
                    MappingMetrics::add(&self.status.metrics.delete_failed, records.len());
                    return;
                }
            }
        };
        MappingMetrics::add(&self.status.metrics.deleted, records.len() - failed.len());
        if let Some(first) = failed.first() {
            MappingMetrics::add(&self.status.metrics.delete_failed, failed.len());
            BatchEntriesFailed {
                uuid: &self.mapping.uuid,
                operation: "DeleteMessageBatch",
                failed: failed.len(),
                first_error: &format!("{}: {}", first.code, first.message),
            }
            .emit();
        }
    }

    /// With `esmd_retry_backoff`, sets each failed message's visibility to the backoff for its
    /// receive count instead of leaving it to the queue's visibility timeout. The receive
    /// count still grows with every receive, so the redrive policy's `maxReceiveCount` decides
    /// when a message reaches the DLQ, as without backoff.
    async fn back_off(&self, queue: &Queue, kept: &[&Received]) {
        let Some(backoff) = self.mapping.sqs.as_ref().and_then(|s| s.retry_backoff) else {
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
    fn report_failed_entries(&self, operation: &str, failed: &[client::FailedEntry]) {
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

    /// Makes received-but-unprocessed messages visible again at once.
    async fn release(&self, queue: &Queue, records: Vec<Received>) {
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
                MappingMetrics::add(&self.status.metrics.released, records.len() - failed.len());
                self.report_failed_entries("ChangeMessageVisibilityBatch", &failed);
            }
            Err(e) => {
                tracing::warn!(mapping = %self.mapping.uuid, error = %e, "could not release messages; they return after the visibility timeout");
            }
        }
        self.unclaim_fifo_groups(queue, &records);
        tracing::info!(mapping = %self.mapping.uuid, records = records.len(), "released unprocessed messages");
    }
}

enum Attempted {
    Outcome(InvokeOutcome),
    /// Shutdown began before the batch could be (re)invoked: release it.
    NotInvoked,
    /// The shutdown deadline passed during the invocation.
    Abandoned,
}
