//! Failure handling: what to do next after an error, retry pacing, and the per-source
//! decisions about which records succeeded.
//!
//! Every error esmd meets at a module boundary is classified into one [`ErrorAction`]; the
//! workers branch on the action, never on the error's text.

pub mod destination;
pub mod sqs;

use std::time::Duration;

use backon::BackoffBuilder;

/// What to do after an error or an invocation outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Nothing went wrong; apply the function's response.
    Proceed,
    /// The function ran and failed: SQS leaves the batch to its visibility timeout; streams
    /// count a retry and may bisect.
    FunctionFailed,
    /// Transient (throttle, 5xx, network): retry the same call with jittered backoff. Does not
    /// count against `maximum_retry_attempts`.
    Retry,
    /// The stream iterator expired or is invalid: get a new one from the checkpoint.
    RefreshIterator,
    /// The payload was too large: split the batch and retry the halves.
    SplitBatch,
    /// Give up on the batch and send it to the on-failure destination.
    SendToDestination,
    /// The mapping cannot work as configured (missing queue or function, access denied): put
    /// it in an error state and retry slowly; other mappings keep running.
    StopMapping,
    /// The process cannot continue (e.g. the checkpoint store is unusable).
    Fatal,
}

/// Jittered exponential backoff for transient errors: 100 ms doubling to 10 s.
pub fn transient_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Slow backoff for a mapping in an error state (missing resource, access denied): 1 s
/// doubling to 30 s, so a queue or function created later is picked up within half a minute.
pub fn error_state_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_grow_and_stay_bounded() {
        let delays: Vec<Duration> = transient_backoff().take(12).collect();
        assert_eq!(delays.len(), 12);
        assert!(delays[0] >= Duration::from_millis(100));
        // Jitter adds at most one more delay's worth.
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(20)));
        assert!(delays[11] >= Duration::from_secs(10));
        let slow: Vec<Duration> = error_state_backoff().take(10).collect();
        assert!(slow[0] >= Duration::from_secs(1));
        assert!(slow.iter().all(|d| *d <= Duration::from_secs(60)));
    }
}
