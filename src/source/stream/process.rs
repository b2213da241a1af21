//! One stream batch from first invocation to settlement, with AWS's failure semantics
//! (`docs/esm-semantics.md` §4):
//!
//! - throttles, service errors and an unavailable function are retried with backoff and do
//!   not count against `maximum_retry_attempts` (the record age still applies);
//! - function errors, timeouts and partial-batch responses count; a limit of N allows N+1
//!   invocations;
//! - with `bisect_batch_on_function_error`, a function error splits the batch in two and the
//!   halves are processed in order, each keeping the counts it inherited (a split is not a
//!   retry);
//! - a partial response settles the records before the lowest failed sequence number and
//!   retries from it;
//! - a batch given up is reported to the on-failure destination (retried until delivered,
//!   never dropped silently) and then counts as settled.
//!
//! Records are always settled as a prefix of the batch, so the caller can checkpoint exactly
//! what is done even when shutdown interrupts the batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;

use super::api::StreamRecord;
use crate::checkpoint::WindowState;
use crate::config::{FailureDestination, MappingConfig};
use crate::failure::destination::{
    Condition, Delivery, DestinationSender, FailedBatch, ResponseContext, StreamKind,
};
use crate::failure::ErrorAction;
use crate::payload::records_event;
use crate::payload::response::{parse_batch_item_failures, resolve_identifiers, BatchItemFailures};
use crate::payload::window::{response_state, window_event, WindowFields};
use crate::source::sqs::Shutdown;
use crate::target::{InvokeOutcome, Invoker};
use crate::telemetry::events::{BatchBisected, BatchGivenUp, BatchInvoked, InvokeRetrying};
use crate::telemetry::{MappingMetrics, MappingStatus};

/// Backoff ranges (minimum, maximum) for the three kinds of wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryDelays {
    /// Throttles and service errors.
    pub transient: (Duration, Duration),
    /// Between retries of a failed batch (AWS does not publish its curve).
    pub function: (Duration, Duration),
    /// An unavailable function or destination.
    pub error_state: (Duration, Duration),
}

impl RetryDelays {
    pub const DEFAULT: RetryDelays = RetryDelays {
        transient: (Duration::from_millis(100), Duration::from_secs(10)),
        function: (Duration::from_millis(200), Duration::from_secs(30)),
        error_state: (Duration::from_secs(1), Duration::from_secs(30)),
    };
    /// No waiting at all, for tests.
    pub const IMMEDIATE: RetryDelays = RetryDelays {
        transient: (Duration::ZERO, Duration::ZERO),
        function: (Duration::ZERO, Duration::ZERO),
        error_state: (Duration::ZERO, Duration::ZERO),
    };

    fn iter((min, max): (Duration, Duration)) -> Box<dyn Iterator<Item = Duration> + Send> {
        use backon::BackoffBuilder;
        if max.is_zero() {
            return Box::new(std::iter::repeat(Duration::ZERO));
        }
        Box::new(
            backon::ExponentialBuilder::default()
                .with_min_delay(min)
                .with_max_delay(max)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
        )
    }
}

/// What a mapping without stream settings (never built by validation) falls back to.
const NO_STREAM_SETTINGS: crate::config::StreamSettings = crate::config::StreamSettings {
    starting_position: crate::config::StartingPosition::TrimHorizon,
    parallelization_factor: 1,
    bisect_batch_on_function_error: false,
    maximum_retry_attempts: None,
    maximum_record_age: None,
    on_failure: None,
    tumbling_window: None,
    poll_interval: None,
};

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processed {
    /// How many leading records are done (succeeded, filtered or given up).
    pub settled: usize,
    /// Shutdown stopped the batch before all of it settled.
    pub interrupted: bool,
}

/// Runs batches of one mapping. Shared by every shard and lane of the mapping.
pub struct Processor {
    pub mapping: Arc<MappingConfig>,
    pub kind: StreamKind,
    pub function_arn: String,
    pub invoker: Arc<dyn Invoker>,
    pub destinations: Arc<dyn DestinationSender>,
    pub status: Arc<MappingStatus>,
    pub shutdown: Shutdown,
    pub delays: RetryDelays,
}

/// A contiguous part of the batch still to settle, with the counts it has used.
#[derive(Debug, Clone)]
struct Span {
    start: usize,
    end: usize,
    retries: u32,
    invocations: u32,
    response: Option<ResponseContext>,
}

enum Answer {
    AllDone,
    /// Records before this index succeeded; the rest failed.
    FailedFrom(usize),
    Failed,
}

impl Processor {
    fn destination(&self) -> Option<&FailureDestination> {
        self.mapping
            .stream
            .as_ref()
            .and_then(|s| s.on_failure.as_ref())
    }

    /// Processes one batch of a shard, in order.
    pub async fn process(&self, shard_id: &str, records: &[StreamRecord]) -> Processed {
        self.run(shard_id, records, None).await
    }

    /// Processes one batch of a tumbling window: each invocation carries the window's state
    /// and must return the next one, which replaces `window.state`.
    pub async fn process_in_window(
        &self,
        shard_id: &str,
        records: &[StreamRecord],
        window: &mut WindowState,
    ) -> Processed {
        self.run(shard_id, records, Some(window)).await
    }

    fn window_fields<'a>(
        &'a self,
        shard_id: &'a str,
        window: &'a WindowState,
        is_final: bool,
        terminated_early: bool,
    ) -> WindowFields<'a> {
        WindowFields {
            window,
            shard_id,
            event_source_arn: self.mapping.source.arn(),
            is_final,
            terminated_early,
        }
    }

    /// The final invocation of a window (`isFinalInvokeForWindow: true`, no records). AWS
    /// stops the shard until it succeeds, so every failure is retried; only shutdown ends
    /// the attempt (returns false), and the stored state makes a restart repeat it.
    pub async fn close_window(
        &self,
        shard_id: &str,
        window: &WindowState,
        terminated_early: bool,
    ) -> bool {
        let payload = Bytes::from(window_event(
            [],
            &self.window_fields(shard_id, window, true, terminated_early),
        ));
        let metrics = &self.status.metrics;
        let mut transient = RetryDelays::iter(self.delays.transient);
        let mut error_state = RetryDelays::iter(self.delays.error_state);
        let mut function = RetryDelays::iter(self.delays.function);
        let mut attempt = 0;
        loop {
            attempt += 1;
            MappingMetrics::add(&metrics.invocations, 1);
            let started = Instant::now();
            let outcome = tokio::select! {
                o = self.invoker.invoke(&self.mapping.function_name, payload.clone()) => o,
                _ = self.shutdown.abandon.cancelled() => return false,
            };
            let summary = outcome.summary();
            BatchInvoked {
                uuid: &self.mapping.uuid,
                records: 0,
                payload_bytes: payload.len(),
                elapsed: metrics.invocation_duration.observed(started.elapsed()),
                outcome: &summary,
            }
            .emit();
            let delay = match (&outcome, outcome.action()) {
                (InvokeOutcome::Returned { .. }, _) => {
                    self.status.record_result("OK");
                    return true;
                }
                (_, ErrorAction::StopMapping) => {
                    self.status.set_error(format!(
                        "function {}: {summary}",
                        self.mapping.function_name
                    ));
                    error_state.next()
                }
                (
                    InvokeOutcome::Throttled {
                        retry_after: Some(after),
                        ..
                    },
                    _,
                ) => Some(*after),
                (_, ErrorAction::Retry) => transient.next(),
                _ => {
                    MappingMetrics::add(&metrics.failed_invoke, 1);
                    self.status.record_problem(summary.clone());
                    function.next()
                }
            }
            .unwrap_or(Duration::from_secs(1));
            InvokeRetrying {
                uuid: &self.mapping.uuid,
                outcome: &summary,
                attempt,
                delay,
            }
            .emit();
            if !self.sleep(delay).await {
                return false;
            }
        }
    }

    async fn run(
        &self,
        shard_id: &str,
        records: &[StreamRecord],
        mut window: Option<&mut WindowState>,
    ) -> Processed {
        let settings = self.mapping.stream.as_ref().unwrap_or(&NO_STREAM_SETTINGS);
        let metrics = &self.status.metrics;
        let mut work = VecDeque::from([Span {
            start: 0,
            end: records.len(),
            retries: 0,
            invocations: 0,
            response: None,
        }]);
        let mut settled = 0;
        let interrupted = |settled| Processed {
            settled,
            interrupted: true,
        };
        let mut transient = RetryDelays::iter(self.delays.transient);
        let mut error_state = RetryDelays::iter(self.delays.error_state);
        let mut function = RetryDelays::iter(self.delays.function);

        while let Some(mut span) = work.pop_front() {
            loop {
                let slice = &records[span.start..span.end];
                if slice.is_empty() {
                    settled = span.end;
                    break;
                }
                if let Some(max_age) = settings.maximum_record_age {
                    if oldest_age(slice) > max_age {
                        // AWS reports no responseContext for aged-out records.
                        if !self
                            .give_up(
                                shard_id,
                                slice,
                                Condition::RecordAgeExceeded,
                                span.invocations.max(1),
                                None,
                            )
                            .await
                        {
                            return interrupted(settled);
                        }
                        settled = span.end;
                        break;
                    }
                }
                if self.shutdown.stop_receiving.is_cancelled() {
                    return interrupted(settled);
                }
                let payload = Bytes::from(match window.as_deref() {
                    Some(w) => window_event(
                        slice.iter().map(|r| r.json.as_ref()),
                        &self.window_fields(shard_id, w, false, false),
                    ),
                    None => records_event(slice.iter().map(|r| r.json.as_ref())),
                });
                span.invocations += 1;
                metrics
                    .in_flight_batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                MappingMetrics::add(&metrics.invocations, 1);
                MappingMetrics::add(&metrics.invoked, slice.len());
                let started = Instant::now();
                let outcome = tokio::select! {
                    o = self.invoker.invoke(&self.mapping.function_name, payload.clone()) => Some(o),
                    _ = self.shutdown.abandon.cancelled() => None,
                };
                metrics
                    .in_flight_batches
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                let Some(outcome) = outcome else {
                    return interrupted(settled);
                };
                let summary = outcome.summary();
                BatchInvoked {
                    uuid: &self.mapping.uuid,
                    records: slice.len(),
                    payload_bytes: payload.len(),
                    elapsed: metrics.invocation_duration.observed(started.elapsed()),
                    outcome: &summary,
                }
                .emit();

                match outcome.action() {
                    ErrorAction::Retry | ErrorAction::StopMapping => {
                        // Before invocation: not a retry, but the record age still applies.
                        let delay = if outcome.action() == ErrorAction::StopMapping {
                            self.status.set_error(format!(
                                "function {}: {summary}",
                                self.mapping.function_name
                            ));
                            error_state.next()
                        } else {
                            match &outcome {
                                InvokeOutcome::Throttled {
                                    retry_after: Some(after),
                                    ..
                                } => Some(*after),
                                _ => transient.next(),
                            }
                        }
                        .unwrap_or(Duration::from_secs(1));
                        span.invocations -= 1;
                        InvokeRetrying {
                            uuid: &self.mapping.uuid,
                            outcome: &summary,
                            attempt: span.retries + 1,
                            delay,
                        }
                        .emit();
                        if !self.sleep(delay).await {
                            return interrupted(settled);
                        }
                        continue;
                    }
                    ErrorAction::SplitBatch => {
                        if slice.len() > 1 {
                            let (first, second) = halves(&span);
                            work.push_front(second);
                            work.push_front(first);
                            break;
                        }
                        // One record too large to invoke: give it up.
                        if !self
                            .give_up(
                                shard_id,
                                slice,
                                Condition::RetryAttemptsExhausted,
                                span.invocations,
                                None,
                            )
                            .await
                        {
                            return interrupted(settled);
                        }
                        settled = span.end;
                        break;
                    }
                    _ => {}
                }

                let answer = match &outcome {
                    InvokeOutcome::Returned { body } => {
                        span.response = Some(ResponseContext {
                            status_code: 200,
                            function_error: None,
                        });
                        self.answer(body, slice, window.as_deref_mut())
                    }
                    InvokeOutcome::FunctionError { kind, .. } => {
                        span.response = Some(ResponseContext {
                            status_code: 200,
                            function_error: Some(kind.clone()),
                        });
                        if settings.bisect_batch_on_function_error && slice.len() > 1 {
                            MappingMetrics::add(&metrics.failed_invoke, slice.len());
                            BatchBisected {
                                uuid: &self.mapping.uuid,
                                shard_id,
                                records: slice.len(),
                            }
                            .emit();
                            let (first, second) = halves(&span);
                            work.push_front(second);
                            work.push_front(first);
                            break;
                        }
                        Answer::Failed
                    }
                    _ => Answer::Failed,
                };
                match answer {
                    Answer::AllDone => {
                        settled = span.end;
                        self.status.record_result("OK");
                        if self.status.state() == crate::telemetry::MappingState::Error {
                            self.status.set_polling();
                        }
                        break;
                    }
                    Answer::FailedFrom(i) => {
                        MappingMetrics::add(&metrics.failed_invoke, slice.len() - i);
                        span.start += i;
                        settled = span.start;
                        self.status.record_result("OK (partial batch failure)");
                    }
                    Answer::Failed => {
                        MappingMetrics::add(&metrics.failed_invoke, slice.len());
                        self.status.record_problem(summary.clone());
                    }
                }
                // A counted failure: retry, or give up when the retries are used.
                if settings
                    .maximum_retry_attempts
                    .is_some_and(|max| span.retries >= max)
                {
                    let slice = &records[span.start..span.end];
                    if !self
                        .give_up(
                            shard_id,
                            slice,
                            Condition::RetryAttemptsExhausted,
                            span.invocations,
                            span.response.clone(),
                        )
                        .await
                    {
                        return interrupted(settled);
                    }
                    settled = span.end;
                    break;
                }
                span.retries += 1;
                let delay = function.next().unwrap_or(Duration::from_secs(1));
                InvokeRetrying {
                    uuid: &self.mapping.uuid,
                    outcome: &summary,
                    attempt: span.retries,
                    delay,
                }
                .emit();
                if !self.sleep(delay).await {
                    return interrupted(settled);
                }
            }
        }
        Processed {
            settled,
            interrupted: false,
        }
    }

    /// Gives up a record that alone exceeds the 6 MB invoke limit, without invoking it.
    pub async fn reject_oversized(&self, shard_id: &str, record: &StreamRecord) -> bool {
        self.give_up(
            shard_id,
            std::slice::from_ref(record),
            Condition::RetryAttemptsExhausted,
            0,
            None,
        )
        .await
    }

    /// Applies `ReportBatchItemFailures` to a returned body and, in a tumbling window, takes
    /// the new state from it (a response without one fails the batch).
    fn answer(
        &self,
        body: &[u8],
        slice: &[StreamRecord],
        window: Option<&mut WindowState>,
    ) -> Answer {
        let answer = self.batch_answer(body, slice);
        if let Some(window) = window {
            match response_state(body) {
                Ok(state) if !matches!(answer, Answer::Failed) => window.state = state,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(mapping = %self.mapping.uuid, error = %e, "tumbling-window response refused");
                    return Answer::Failed;
                }
            }
        }
        answer
    }

    fn batch_answer(&self, body: &[u8], slice: &[StreamRecord]) -> Answer {
        if !self.mapping.report_batch_item_failures {
            return Answer::AllDone;
        }
        let reported = match parse_batch_item_failures(body) {
            Ok(BatchItemFailures::None) => return Answer::AllDone,
            Ok(BatchItemFailures::Some(ids)) => ids,
            Err(_) => return Answer::Failed,
        };
        match resolve_identifiers(&reported, slice.iter().map(|r| r.sequence_number.as_str())) {
            Ok(positions) => match positions.into_iter().min() {
                Some(lowest) => Answer::FailedFrom(lowest),
                None => Answer::AllDone,
            },
            Err(_) => Answer::Failed,
        }
    }

    /// Sleeps unless shutdown begins; returns false when it does.
    async fn sleep(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.shutdown.stop_receiving.cancelled() => false,
        }
    }

    /// Reports a batch to the on-failure destination (retrying until it is delivered) or
    /// drops it loudly when none is set. Returns false if shutdown's deadline passed first;
    /// the batch then stays unsettled and is read again after a restart.
    async fn give_up(
        &self,
        shard_id: &str,
        slice: &[StreamRecord],
        condition: Condition,
        invocations: u32,
        response: Option<ResponseContext>,
    ) -> bool {
        let (Some(first), Some(last)) = (slice.first(), slice.last()) else {
            return true;
        };
        let metrics = &self.status.metrics;
        let destination = self.destination();
        BatchGivenUp {
            uuid: &self.mapping.uuid,
            shard_id,
            records: slice.len(),
            condition: match condition {
                Condition::RetryAttemptsExhausted => "RetryAttemptsExhausted",
                Condition::RecordAgeExceeded => "RecordAgeExceeded",
            },
            first_sequence_number: first.sequence_number.as_str(),
            last_sequence_number: last.sequence_number.as_str(),
            destination: destination.map(|d| d.arn()),
        }
        .emit();
        MappingMetrics::add(&metrics.dropped, slice.len());
        let Some(destination) = destination else {
            return true;
        };
        let failed = FailedBatch {
            kind: self.kind,
            request_id: uuid::Uuid::new_v4().to_string(),
            function_arn: self.function_arn.clone(),
            condition,
            approximate_invoke_count: invocations,
            response,
            timestamp: Utc::now(),
            shard_id,
            stream_arn: self.mapping.source.arn(),
            start_sequence_number: first.sequence_number.as_str(),
            end_sequence_number: last.sequence_number.as_str(),
            first_arrival: first.arrival,
            last_arrival: last.arrival,
            batch_size: slice.len(),
        };
        let event = String::from_utf8_lossy(&records_event(slice.iter().map(|r| r.json.as_ref())))
            .into_owned();
        let delivery = Delivery {
            record: failed.to_json(None),
            s3_key: failed.s3_key(&self.mapping.uuid),
            s3_body: failed.to_json(Some(&event)),
        };
        let mut delays = RetryDelays::iter(self.delays.transient);
        let mut slow = RetryDelays::iter(self.delays.error_state);
        loop {
            let sent = tokio::select! {
                r = self.destinations.send(destination, &delivery) => r,
                _ = self.shutdown.abandon.cancelled() => return false,
            };
            match sent {
                Ok(()) => {
                    MappingMetrics::add(&metrics.on_failure_delivered, slice.len());
                    return true;
                }
                Err(e) => {
                    let delay = if e.action() == ErrorAction::Retry {
                        delays.next()
                    } else {
                        self.status.set_error(e.to_string());
                        slow.next()
                    }
                    .unwrap_or(Duration::from_secs(1));
                    tracing::warn!(mapping = %self.mapping.uuid, shard = shard_id, error = %e, retry_in_ms = delay.as_millis() as u64, "on-failure destination delivery failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.abandon.cancelled() => return false,
                    }
                }
            }
        }
    }
}

fn halves(span: &Span) -> (Span, Span) {
    let mid = span.start + (span.end - span.start) / 2;
    (
        Span {
            end: mid,
            ..span.clone()
        },
        Span {
            start: mid,
            ..span.clone()
        },
    )
}

fn oldest_age(slice: &[StreamRecord]) -> Duration {
    let now = Utc::now();
    slice
        .iter()
        .map(|r| (now - r.arrival).to_std().unwrap_or_default())
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "process/tests.rs"]
mod tests;
