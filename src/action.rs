//! The one vocabulary of "what next": every error esmd meets at a module boundary, and every
//! invocation outcome, is turned into an [`ErrorAction`]; workers branch on the action, never
//! on an error's text. This module is a leaf: it depends on nothing else in the crate, so any
//! layer may use it without an import cycle.

/// What a worker does after an error or an invocation outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorAction {
    /// Nothing went wrong; apply the function's response.
    Proceed,
    /// The function ran and failed: SQS leaves the batch to its visibility timeout; streams
    /// count a retry and may bisect.
    FunctionFailed,
    /// Transient (throttle, 5xx, network): retry the same call with jittered backoff. Does not
    /// count against `maximum_retry_attempts`.
    Retry,
    /// The stream iterator expired or is invalid: get a new one after the last record read.
    RefreshIterator,
    /// The payload was too large: split the batch and retry the halves.
    SplitBatch,
    /// The mapping cannot work as configured (missing queue or function, access denied, a
    /// lost lease): put it in an error state and retry slowly; other mappings keep running.
    StopMapping,
    /// The process cannot keep its promises (the checkpoint store is unusable): drain every
    /// mapping and exit non-zero.
    Fatal,
}
