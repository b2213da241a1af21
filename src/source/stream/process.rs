//! Drives one stream batch from first invocation to settlement. The decisions are the pure
//! machine in [`crate::failure::stream`] (`docs/esm-semantics.md` §4); this file only invokes,
//! counts, waits and reports to the on-failure destination.
//!
//! Records are always settled as a prefix of the batch, so the caller can checkpoint exactly
//! what is done even when shutdown interrupts the batch.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;

use super::api::StreamRecord;
use crate::checkpoint::WindowState;
use crate::config::{FailureDestination, MappingConfig};
use crate::failure::destination::{Condition, DestinationSender, StreamKind};
use crate::failure::stream::{next_step, Attempt, Span, Step, StreamPolicy, Verdict};
use crate::payload::records_event;
use crate::payload::response::{parse_batch_item_failures, resolve_identifiers, BatchItemFailures};
use crate::payload::window::{response_state, window_event, WindowFields};

use crate::invoke::{invoke_counted, InvokeOutcome, Invoker};
use crate::retry::{
    retry, sleep_or_cancel, Pace, Pacer, Retried, RetryPolicies, Step as RetryStep,
};
use crate::source::Shutdown;
use crate::telemetry::events::{BatchBisected, InvokeRetrying, RecordsFailed};
use crate::telemetry::MappingStatus;

/// How a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Processed {
    /// How many leading records are done (succeeded, filtered or given up).
    pub(crate) settled: usize,
    /// Shutdown stopped the batch before all of it settled.
    pub(crate) interrupted: bool,
}

/// Runs batches of one mapping. Shared by every shard and lane of the mapping.
pub(crate) struct Processor {
    pub(crate) mapping: Arc<MappingConfig>,
    pub(crate) kind: StreamKind,
    pub(crate) function_arn: String,
    pub(crate) invoker: Arc<dyn Invoker>,
    pub(crate) destinations: Arc<dyn DestinationSender>,
    pub(crate) status: Arc<MappingStatus>,
    pub(crate) shutdown: Shutdown,
    pub(crate) policy: StreamPolicy,
    /// `destination_config.on_failure`.
    pub(crate) on_failure: Option<FailureDestination>,
    pub(crate) delays: RetryPolicies,
}

impl Processor {
    pub(super) fn destination(&self) -> Option<&FailureDestination> {
        self.on_failure.as_ref()
    }

    /// Processes one batch of a shard, in order.
    pub(crate) async fn process(&self, shard_id: &str, records: &[StreamRecord]) -> Processed {
        self.run(shard_id, records, None).await
    }

    /// Processes one batch of a tumbling window: each invocation carries the window's state
    /// and must return the next one, which replaces `window.state`.
    pub(crate) async fn process_in_window(
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
            event_source_arn: self.mapping.source.stream_arn(),
            is_final,
            terminated_early,
        }
    }

    /// The final invocation of a window (`isFinalInvokeForWindow: true`, no records). AWS
    /// stops the shard until it succeeds, so every failure is retried; only shutdown ends
    /// the attempt (returns false), and the stored state makes a restart repeat it.
    pub(crate) async fn close_window(
        &self,
        shard_id: &str,
        window: &WindowState,
        terminated_early: bool,
    ) -> bool {
        let payload = crate::memory::into_bytes(window_event(
            [],
            &self.window_fields(shard_id, window, true, terminated_early),
        ));
        let ended = retry(
            self.delays,
            &self.shutdown.abandon,
            |_| async {
                let outcome = tokio::select! {
                    o = self.invoke_counted(payload.clone(), 0) => o,
                    _ = self.shutdown.abandon.cancelled() => {
                        return RetryStep::Stop("shutdown deadline".to_string())
                    }
                };
                if let InvokeOutcome::Returned { .. } = outcome {
                    self.status.record_result("OK");
                    return RetryStep::Done(());
                }
                // Any answer but success is retried: AWS halts the shard until the final
                // invocation succeeds.
                let (pace, after) = self.not_done(&outcome);
                RetryStep::Retry {
                    error: outcome.summary(),
                    pace,
                    after,
                }
            },
            |summary, attempt, delay| self.retrying(summary, attempt, delay),
        )
        .await;
        matches!(ended, Retried::Done(()))
    }

    /// Invokes once with `payload` (`records` records), counting and logging the invocation.
    async fn invoke_counted(&self, payload: Bytes, records: usize) -> InvokeOutcome {
        invoke_counted(self.invoker.as_ref(), &self.status, payload, records).await
    }

    /// The wait for an outcome that is not a success: the service's own `Retry-After` for a
    /// throttle, the error-state pace (and the mapping's error state) for an unavailable
    /// function, the transient pace for a service error, and the function-error pace (a
    /// counted failure) for everything else.
    fn not_done(&self, outcome: &InvokeOutcome) -> (Pace, Option<std::time::Duration>) {
        match outcome {
            InvokeOutcome::Throttled { retry_after, .. } => (Pace::Transient, *retry_after),
            InvokeOutcome::ServiceError { .. } => (Pace::Transient, None),
            InvokeOutcome::Misconfigured { .. } => {
                self.status.set_error(format!(
                    "function {}: {}",
                    self.mapping.function_name,
                    outcome.summary()
                ));
                (Pace::ErrorState, None)
            }
            _ => {
                self.records_failed(1);
                self.status.record_problem(outcome.summary());
                (Pace::FunctionError, None)
            }
        }
    }

    fn retrying(&self, summary: &str, attempt: u32, delay: std::time::Duration) {
        InvokeRetrying {
            uuid: &self.mapping.uuid,
            outcome: summary,
            attempt,
            delay,
        }
        .emit();
    }

    /// Settles a batch span by span, as [`next_step`] decides.
    async fn run(
        &self,
        shard_id: &str,
        records: &[StreamRecord],
        mut window: Option<&mut WindowState>,
    ) -> Processed {
        let mut work = VecDeque::from([Span::whole(records.len())]);
        // Spans are settled in order, so `settled` is always the start of the next span.
        let mut settled = 0;
        let interrupted = |settled| Processed {
            settled,
            interrupted: true,
        };
        let mut pacer = Pacer::new(self.delays);
        while let Some(mut span) = work.pop_front() {
            loop {
                let slice = &records[span.start..span.end];
                if slice.is_empty() {
                    settled = span.end;
                    break;
                }
                if self.policy.expired(oldest_age(slice)) {
                    if !self.age_out(shard_id, slice, &span).await {
                        return interrupted(settled);
                    }
                    settled = span.end;
                    break;
                }
                if self.shutdown.stop_receiving.is_cancelled() {
                    return interrupted(settled);
                }
                let Some((attempt, summary)) =
                    self.attempt(shard_id, slice, window.as_deref_mut()).await
                else {
                    return interrupted(settled);
                };
                let counted = !matches!(attempt, Attempt::NotInvoked { .. });
                match next_step(&mut span, &attempt, &self.policy) {
                    Step::Done => {
                        settled = span.end;
                        break;
                    }
                    Step::Bisect { first, second } => {
                        work.push_front(second);
                        work.push_front(first);
                        break;
                    }
                    Step::GiveUp {
                        condition,
                        response,
                    } => {
                        let rest = &records[span.start..span.end];
                        let invocations = span.invocations;
                        if !self
                            .give_up(shard_id, rest, condition, invocations, response)
                            .await
                        {
                            return interrupted(settled);
                        }
                        settled = span.end;
                        break;
                    }
                    Step::Retry { pace, after } => {
                        settled = span.start;
                        let delay = after.unwrap_or_else(|| pacer.next(pace));
                        let attempt_number = span.retries + u32::from(!counted);
                        self.retrying(&summary, attempt_number, delay);
                        if !sleep_or_cancel(delay, &self.shutdown.stop_receiving).await {
                            return interrupted(settled);
                        }
                    }
                }
            }
        }
        Processed {
            settled,
            interrupted: false,
        }
    }

    /// Gives up a span whose oldest record passed `maximum_record_age_in_seconds`. AWS
    /// reports no responseContext for aged-out records.
    async fn age_out(&self, shard_id: &str, slice: &[StreamRecord], span: &Span) -> bool {
        let invocations = span.invocations.max(1);
        let condition = Condition::RecordAgeExceeded;
        self.give_up(shard_id, slice, condition, invocations, None)
            .await
    }

    /// Invokes a span once and reduces the outcome to what the machine needs, counting and
    /// noting it on the mapping. `None`: the shutdown deadline passed during the invocation.
    async fn attempt(
        &self,
        shard_id: &str,
        slice: &[StreamRecord],
        window: Option<&mut WindowState>,
    ) -> Option<(Attempt, String)> {
        let payload = crate::memory::into_bytes(match window.as_deref() {
            Some(w) => window_event(
                slice.iter().map(|r| &r.json),
                &self.window_fields(shard_id, w, false, false),
            ),
            None => records_event(slice.iter().map(|r| &r.json)),
        });
        let in_flight = self.status.metrics.in_flight();
        let outcome = tokio::select! {
            // Moved, not shared: the Lambda client then sends the buffer without a copy.
            o = self.invoke_counted(payload, slice.len()) => Some(o),
            _ = self.shutdown.abandon.cancelled() => None,
        };
        drop(in_flight);
        let outcome = outcome?;
        let summary = outcome.summary();
        let attempt = match &outcome {
            InvokeOutcome::Returned { body } => Attempt::Answered(self.answer(body, slice, window)),
            InvokeOutcome::FunctionError { kind, .. } => {
                Attempt::FunctionError { kind: kind.clone() }
            }
            InvokeOutcome::TooLarge { .. } => Attempt::TooLarge,
            InvokeOutcome::Throttled { retry_after, .. } => Attempt::NotInvoked {
                pace: Pace::Transient,
                after: *retry_after,
            },
            InvokeOutcome::ServiceError { .. } => Attempt::NotInvoked {
                pace: Pace::Transient,
                after: None,
            },
            InvokeOutcome::Misconfigured { .. } => {
                self.status.set_error(format!(
                    "function {}: {summary}",
                    self.mapping.function_name
                ));
                Attempt::NotInvoked {
                    pace: Pace::ErrorState,
                    after: None,
                }
            }
        };
        self.note(shard_id, &attempt, slice.len(), &summary);
        Some((attempt, summary))
    }

    fn records_failed(&self, records: usize) {
        if records > 0 {
            RecordsFailed {
                uuid: &self.mapping.uuid,
                metrics: &self.status.metrics,
                records,
            }
            .emit();
        }
    }

    /// Counts an attempt's failed records and records its result on the mapping.
    fn note(&self, shard_id: &str, attempt: &Attempt, len: usize, summary: &str) {
        self.records_failed(attempt.failed_records(len));
        match attempt {
            Attempt::Answered(Verdict::AllDone) => {
                self.status.record_result("OK");
                if self.status.state() == crate::telemetry::MappingState::Error {
                    self.status.set_polling();
                }
            }
            Attempt::Answered(Verdict::FailedFrom(_)) => {
                self.status.record_result("OK (partial batch failure)")
            }
            Attempt::FunctionError { .. }
                if self.policy.bisect_batch_on_function_error && len > 1 =>
            {
                BatchBisected {
                    uuid: &self.mapping.uuid,
                    shard_id,
                    records: len,
                }
                .emit();
            }
            Attempt::Answered(Verdict::Failed) | Attempt::FunctionError { .. } => {
                self.status.record_problem(summary.to_string())
            }
            Attempt::NotInvoked { .. } | Attempt::TooLarge => {}
        }
    }

    /// Gives up a record that alone exceeds the 6 MB invoke limit, without invoking it.
    pub(crate) async fn reject_oversized(&self, shard_id: &str, record: &StreamRecord) -> bool {
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
    ) -> Verdict {
        let answer = self.batch_answer(body, slice);
        if let Some(window) = window {
            match response_state(body) {
                Ok(state) if answer != Verdict::Failed => window.state = state,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(mapping = %self.mapping.uuid, error = %e, "tumbling-window response refused");
                    return Verdict::Failed;
                }
            }
        }
        answer
    }

    fn batch_answer(&self, body: &[u8], slice: &[StreamRecord]) -> Verdict {
        if !self.mapping.report_batch_item_failures {
            return Verdict::AllDone;
        }
        let reported = match parse_batch_item_failures(body) {
            Ok(BatchItemFailures::None) => return Verdict::AllDone,
            Ok(BatchItemFailures::Some(ids)) => ids,
            Err(_) => return Verdict::Failed,
        };
        match resolve_identifiers(&reported, slice.iter().map(|r| r.sequence_number.as_str())) {
            Ok(positions) => match positions.into_iter().min() {
                Some(lowest) => Verdict::FailedFrom(lowest),
                None => Verdict::AllDone,
            },
            Err(_) => Verdict::Failed,
        }
    }
}

fn oldest_age(slice: &[StreamRecord]) -> std::time::Duration {
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
