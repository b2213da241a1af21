//! Retry pacing and the one cancellable retry loop.
//!
//! Every wait esmd makes after a failure comes from one of the [`Pace`]s below, each with the
//! reason for its numbers, and every "call, classify, sleep or stop" loop is [`retry`]. Sleeps
//! use tokio's clock, so tests drive them with paused time (`#[tokio::test(start_paused = true)]`)
//! instead of waiting.

use std::future::Future;
use std::time::Duration;

use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

/// The kinds of wait, each with its own backoff curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Throttles, 5xx and network errors: 100 ms doubling to 10 s, jittered. The AWS SDKs'
    /// standard retry mode starts at the same order of magnitude; 10 s keeps a throttled
    /// shard or queue within Lambda's own retry cadence.
    Transient,
    /// A mapping in its error state (missing queue, function or destination; access denied):
    /// 1 s doubling to 30 s, so a resource created later is picked up within half a minute
    /// without hammering the API meanwhile.
    ErrorState,
    /// Between retries of a stream batch the function failed: 200 ms doubling to 30 s. AWS
    /// does not publish its curve; this keeps a poison batch from spinning while a transient
    /// function failure still retries quickly.
    FunctionError,
}

/// One backoff curve: jittered exponential from `min` to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Curve {
    pub(crate) min: Duration,
    pub(crate) max: Duration,
}

/// The curves for every [`Pace`]. Production uses [`RetryPolicies::DEFAULT`]; unit tests use
/// [`RetryPolicies::IMMEDIATE`] or paused time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicies {
    pub(crate) transient: Curve,
    pub(crate) error_state: Curve,
    pub(crate) function_error: Curve,
}

impl RetryPolicies {
    pub(crate) const DEFAULT: RetryPolicies = RetryPolicies {
        transient: Curve {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
        },
        error_state: Curve {
            min: Duration::from_secs(1),
            max: Duration::from_secs(30),
        },
        function_error: Curve {
            min: Duration::from_millis(200),
            max: Duration::from_secs(30),
        },
    };

    /// No waiting at all, for tests that count steps rather than time.
    #[cfg(test)]
    pub(crate) const IMMEDIATE: RetryPolicies = RetryPolicies {
        transient: Curve {
            min: Duration::ZERO,
            max: Duration::ZERO,
        },
        error_state: Curve {
            min: Duration::ZERO,
            max: Duration::ZERO,
        },
        function_error: Curve {
            min: Duration::ZERO,
            max: Duration::ZERO,
        },
    };

    fn curve(&self, pace: Pace) -> Curve {
        match pace {
            Pace::Transient => self.transient,
            Pace::ErrorState => self.error_state,
            Pace::FunctionError => self.function_error,
        }
    }

    /// The delay before the `n`th retry (1-based) of a given pace, for callers that count
    /// failures themselves across calls.
    pub(crate) fn nth(&self, pace: Pace, n: usize) -> Duration {
        backoff(self.curve(pace))
            .nth(n.clamp(1, 20) - 1)
            .unwrap_or(self.curve(pace).max)
    }
}

fn backoff(curve: Curve) -> Box<dyn Iterator<Item = Duration> + Send + Sync> {
    if curve.max.is_zero() {
        return Box::new(std::iter::repeat(Duration::ZERO));
    }
    Box::new(
        backon::ExponentialBuilder::default()
            .with_min_delay(curve.min)
            .with_max_delay(curve.max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build(),
    )
}

/// The next delay of each pace, for one operation (or one loop that meets several kinds of
/// failure, such as a shard reader).
pub(crate) struct Pacer {
    policies: RetryPolicies,
    transient: Box<dyn Iterator<Item = Duration> + Send + Sync>,
    error_state: Box<dyn Iterator<Item = Duration> + Send + Sync>,
    function_error: Box<dyn Iterator<Item = Duration> + Send + Sync>,
}

impl Pacer {
    pub(crate) fn new(policies: RetryPolicies) -> Self {
        Pacer {
            policies,
            transient: backoff(policies.transient),
            error_state: backoff(policies.error_state),
            function_error: backoff(policies.function_error),
        }
    }

    /// The next delay of `pace`; its curve grows with each call.
    pub(crate) fn next(&mut self, pace: Pace) -> Duration {
        let iter = match pace {
            Pace::Transient => &mut self.transient,
            Pace::ErrorState => &mut self.error_state,
            Pace::FunctionError => &mut self.function_error,
        };
        iter.next().unwrap_or(self.policies.curve(pace).max)
    }

    /// Starts every curve over (after a success).
    pub(crate) fn reset(&mut self) {
        *self = Pacer::new(self.policies);
    }
}

/// Sleeps for `delay` unless `cancel` fires first; returns false when it did.
pub(crate) async fn sleep_or_cancel(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}

/// What one attempt of a retried operation came to.
#[derive(Debug)]
pub(crate) enum Step<T, E> {
    /// Finished: the loop returns this value.
    Done(T),
    /// Try again after the next delay of `pace` (or after `after`, when the service said how
    /// long to wait, as Lambda's `Retry-After` does).
    Retry {
        error: E,
        pace: Pace,
        after: Option<Duration>,
    },
    /// Do not try again: the loop returns this error.
    Stop(E),
}

/// How a retried operation ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Retried<T, E> {
    Done(T),
    Stopped(E),
    /// `cancel` fired while waiting to retry.
    Cancelled,
}

/// The retry loop: runs `attempt(n)` (n = 1, 2, …) until it is done or stops, waiting between
/// attempts as each [`Step::Retry`] asks. `on_retry(error, attempt, delay)` is told about each
/// wait before it starts (for logs, metrics and the mapping's state). Cancelling `cancel` ends
/// the wait, not an attempt in progress: an attempt that must be cut short selects on its own
/// token.
pub(crate) async fn retry<T, E, F, Fut>(
    policies: RetryPolicies,
    cancel: &CancellationToken,
    mut attempt: F,
    mut on_retry: impl FnMut(&E, u32, Duration),
) -> Retried<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Step<T, E>>,
{
    let mut pacer = Pacer::new(policies);
    let mut n = 0u32;
    loop {
        n += 1;
        match attempt(n).await {
            Step::Done(value) => return Retried::Done(value),
            Step::Stop(error) => return Retried::Stopped(error),
            Step::Retry { error, pace, after } => {
                let delay = after.unwrap_or_else(|| pacer.next(pace));
                on_retry(&error, n, delay);
                if !sleep_or_cancel(delay, cancel).await {
                    return Retried::Cancelled;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn curves_grow_and_stay_bounded() {
        let mut pacer = Pacer::new(RetryPolicies::DEFAULT);
        let delays: Vec<Duration> = (0..12).map(|_| pacer.next(Pace::Transient)).collect();
        assert!(delays[0] >= Duration::from_millis(100));
        // Jitter adds at most one more delay's worth.
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(20)));
        assert!(delays[11] >= Duration::from_secs(10));
        let slow: Vec<Duration> = (0..10).map(|_| pacer.next(Pace::ErrorState)).collect();
        assert!(slow[0] >= Duration::from_secs(1));
        assert!(slow.iter().all(|d| *d <= Duration::from_secs(60)));
        assert!(RetryPolicies::DEFAULT.nth(Pace::ErrorState, 50) <= Duration::from_secs(60));
        assert_eq!(
            Pacer::new(RetryPolicies::IMMEDIATE).next(Pace::FunctionError),
            Duration::ZERO
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retries_wait_on_the_paced_curve_then_finish() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let mut waits = Vec::new();
        let result: Retried<u32, &str> = retry(
            RetryPolicies::DEFAULT,
            &CancellationToken::new(),
            |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        1 => Step::Retry {
                            error: "throttled",
                            pace: Pace::Transient,
                            after: Some(Duration::from_secs(7)),
                        },
                        2 => Step::Retry {
                            error: "5xx",
                            pace: Pace::ErrorState,
                            after: None,
                        },
                        _ => Step::Done(n),
                    }
                }
            },
            |_, n, delay| waits.push((n, delay)),
        )
        .await;
        assert_eq!(result, Retried::Done(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(waits[0], (1, Duration::from_secs(7)), "Retry-After wins");
        assert!(waits[1].1 >= Duration::from_secs(1));
        // Paused time advances in whole milliseconds.
        let waited = waits[0].1 + waits[1].1;
        assert!(started.elapsed().abs_diff(waited) < Duration::from_millis(2));
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_the_wait_and_a_stop_ends_the_loop() {
        let cancel = CancellationToken::new();
        let waiting = retry(
            RetryPolicies::DEFAULT,
            &cancel,
            |_| async {
                Step::<(), _>::Retry {
                    error: "down",
                    pace: Pace::ErrorState,
                    after: None,
                }
            },
            |_, _, _| {},
        );
        tokio::pin!(waiting);
        tokio::select! {
            _ = &mut waiting => panic!("a retry loop against a dead service never finishes by itself"),
            _ = tokio::time::sleep(Duration::from_secs(600)) => {}
        }
        cancel.cancel();
        assert_eq!(waiting.await, Retried::Cancelled);
        let stopped: Retried<(), &str> = retry(
            RetryPolicies::DEFAULT,
            &CancellationToken::new(),
            |_| async { Step::Stop("missing") },
            |_, _, _| panic!("no wait before a stop"),
        )
        .await;
        assert_eq!(stopped, Retried::Stopped("missing"));
    }
}
