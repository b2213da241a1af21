//! The stream failure machine, as a pure function: given the part of a batch still to settle
//! (a [`Span`], with the counts it has used), what the last attempt came to ([`Attempt`]) and
//! the mapping's settings ([`StreamPolicy`]), [`next_step`] says what happens next. It does no
//! IO and reads no clock; `source::stream::process` drives it. The rules
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
//!   retries from it; when that moves the checkpoint, the rest is a new batch whose retries
//!   and invocations count from zero (AWS's recording `test_kinesis_report_batch_item_failures`
//!   in LocalStack's snapshots: batch 3, the third record always failing, retries 3: the
//!   record is invoked 5 times and reaches the destination with `approximateInvokeCount` 4);
//! - a payload too large for Invoke is split without counting; a single record too large is
//!   given up;
//! - a span given up goes to the on-failure destination and then counts as settled.

use std::time::Duration;

use super::destination::{Condition, ResponseContext};
use crate::retry::Pace;

/// The settings the machine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct StreamPolicy {
    /// `None` is AWS's -1: retry until the record expires.
    pub(crate) maximum_retry_attempts: Option<u32>,
    pub(crate) bisect_batch_on_function_error: bool,
    /// `None` is AWS's -1.
    pub(crate) maximum_record_age: Option<Duration>,
}

impl From<&crate::config::StreamSettings> for StreamPolicy {
    fn from(settings: &crate::config::StreamSettings) -> Self {
        StreamPolicy {
            maximum_retry_attempts: settings.maximum_retry_attempts,
            bisect_batch_on_function_error: settings.bisect_batch_on_function_error,
            maximum_record_age: settings.maximum_record_age,
        }
    }
}

impl StreamPolicy {
    /// Whether a span whose oldest record is `oldest` old must be given up before invoking.
    pub(crate) fn expired(&self, oldest: Duration) -> bool {
        self.maximum_record_age.is_some_and(|max| oldest > max)
    }
}

/// A contiguous part of the batch still to settle (`start..end`), with the counts it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
    /// Counted retries so far.
    pub(crate) retries: u32,
    /// Invocations made (AWS's `approximateInvokeCount`).
    pub(crate) invocations: u32,
    /// How the function last answered, for the failure record.
    pub(crate) response: Option<ResponseContext>,
}

impl Span {
    /// The whole batch of `len` records, untried.
    pub(crate) fn whole(len: usize) -> Self {
        Span {
            start: 0,
            end: len,
            retries: 0,
            invocations: 0,
            response: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    /// The two halves, each keeping the counts used so far.
    fn halves(&self) -> (Span, Span) {
        let mid = self.start + self.len() / 2;
        (
            Span {
                end: mid,
                ..self.clone()
            },
            Span {
                start: mid,
                ..self.clone()
            },
        )
    }
}

/// What a returned (HTTP 200, no function error) response means for the span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every record succeeded.
    AllDone,
    /// Records before this index (relative to the span) succeeded; the rest failed.
    FailedFrom(usize),
    /// The response failed the whole span (invalid partial response, missing window state).
    Failed,
}

/// What one attempt to invoke the span came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The function returned.
    Answered(Verdict),
    /// The function ran and failed (`X-Amz-Function-Error`).
    FunctionError { kind: String },
    /// The invocation did not happen: throttled or a service error ([`Pace::Transient`]), or
    /// the function is unavailable ([`Pace::ErrorState`]). `after` is the service's own wait.
    NotInvoked { pace: Pace, after: Option<Duration> },
    /// The payload was too large for Invoke.
    TooLarge,
}

impl Attempt {
    /// How many records of a span of `len` this attempt failed (`FailedInvokeEventCount`).
    pub(crate) fn failed_records(&self, len: usize) -> usize {
        match self {
            Attempt::Answered(Verdict::AllDone) => 0,
            Attempt::Answered(Verdict::FailedFrom(i)) => len.saturating_sub(*i),
            Attempt::Answered(Verdict::Failed) | Attempt::FunctionError { .. } => len,
            Attempt::NotInvoked { .. } | Attempt::TooLarge => 0,
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The whole span is settled.
    Done,
    /// Invoke the span again (its start may have moved past settled records) after a wait
    /// of `pace`, or `after` when the service named one.
    Retry { pace: Pace, after: Option<Duration> },
    /// Process these halves, in order, in place of the span.
    Bisect { first: Span, second: Span },
    /// Report the span to the on-failure destination, then count it as settled.
    GiveUp {
        condition: Condition,
        response: Option<ResponseContext>,
    },
}

/// The machine: updates `span`'s counts, start and response for `attempt` and says what
/// happens next.
pub(crate) fn next_step(span: &mut Span, attempt: &Attempt, policy: &StreamPolicy) -> Step {
    match attempt {
        Attempt::NotInvoked { pace, after } => Step::Retry {
            pace: *pace,
            after: *after,
        },
        Attempt::TooLarge => {
            span.invocations += 1;
            if span.len() > 1 {
                let (first, second) = span.halves();
                Step::Bisect { first, second }
            } else {
                Step::GiveUp {
                    condition: Condition::RetryAttemptsExhausted,
                    response: None,
                }
            }
        }
        Attempt::FunctionError { kind } => {
            span.invocations += 1;
            span.response = Some(ResponseContext {
                status_code: 200,
                function_error: Some(kind.clone()),
            });
            if policy.bisect_batch_on_function_error && span.len() > 1 {
                let (first, second) = span.halves();
                return Step::Bisect { first, second };
            }
            counted_failure(span, policy)
        }
        Attempt::Answered(verdict) => {
            span.invocations += 1;
            span.response = Some(ResponseContext {
                status_code: 200,
                function_error: None,
            });
            match verdict {
                Verdict::AllDone => Step::Done,
                Verdict::FailedFrom(i) => {
                    let settled = (*i).min(span.len());
                    span.start += settled;
                    if settled > 0 && span.len() > 0 {
                        span.retries = 0;
                        span.invocations = 0;
                        return Step::Retry {
                            pace: Pace::FunctionError,
                            after: None,
                        };
                    }
                    counted_failure(span, policy)
                }
                Verdict::Failed => counted_failure(span, policy),
            }
        }
    }
}

/// A failure that counts: retry, or give up once the retries are used.
fn counted_failure(span: &mut Span, policy: &StreamPolicy) -> Step {
    if policy
        .maximum_retry_attempts
        .is_some_and(|max| span.retries >= max)
    {
        return Step::GiveUp {
            condition: Condition::RetryAttemptsExhausted,
            response: span.response.clone(),
        };
    }
    span.retries += 1;
    Step::Retry {
        pace: Pace::FunctionError,
        after: None,
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
