//! The function side: one narrow [`Invoker`] trait and what an invocation can come back as.
//!
//! The Lambda implementation lives in [`lambda`]; tests use in-memory invokers. Workers
//! never look at SDK errors: they branch on [`InvokeOutcome::action`].

pub(crate) mod http;
pub(crate) mod lambda;
pub(crate) mod lean;
#[cfg(test)]
pub(crate) mod twin;

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::action::ErrorAction;

/// What one synchronous invocation came back as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InvokeOutcome {
    /// HTTP 200 without `X-Amz-Function-Error`: the function returned `body`.
    Returned { body: Bytes },
    /// HTTP 200 with `X-Amz-Function-Error` (`Unhandled`, `Handled`): the function failed.
    FunctionError { kind: String, body: Bytes },
    /// HTTP 429 (`TooManyRequestsException` and friends): retried with jittered backoff,
    /// honouring `Retry-After` when Lambda sends one.
    Throttled {
        retry_after: Option<Duration>,
        message: String,
    },
    /// HTTP 5xx, a timeout or a network failure: retried with jittered backoff.
    ServiceError { message: String },
    /// HTTP 413 (`RequestTooLargeException`): the payload must be split.
    TooLarge { message: String },
    /// The function cannot be called as configured (`ResourceNotFoundException`,
    /// `AccessDeniedException`, an invalid name): the mapping goes to its error state.
    Misconfigured { message: String },
}

impl InvokeOutcome {
    /// The action a worker takes for this outcome.
    pub(crate) fn action(&self) -> ErrorAction {
        match self {
            InvokeOutcome::Returned { .. } => ErrorAction::Proceed,
            InvokeOutcome::FunctionError { .. } => ErrorAction::FunctionFailed,
            InvokeOutcome::Throttled { .. } | InvokeOutcome::ServiceError { .. } => {
                ErrorAction::Retry
            }
            InvokeOutcome::TooLarge { .. } => ErrorAction::SplitBatch,
            InvokeOutcome::Misconfigured { .. } => ErrorAction::StopMapping,
        }
    }

    /// A one-line description for logs and `/mappings`. Never includes the function's body
    /// beyond the error type, so record payloads echoed back by a function stay out of logs.
    pub(crate) fn summary(&self) -> String {
        match self {
            InvokeOutcome::Returned { .. } => "OK".to_string(),
            InvokeOutcome::FunctionError { kind, body } => match error_type(body) {
                Some(t) => format!("function error ({kind}): {t}"),
                None => format!("function error ({kind})"),
            },
            InvokeOutcome::Throttled { message, .. } => format!("throttled: {message}"),
            InvokeOutcome::ServiceError { message } => format!("service error: {message}"),
            InvokeOutcome::TooLarge { message } => format!("payload too large: {message}"),
            InvokeOutcome::Misconfigured { message } => format!("function unavailable: {message}"),
        }
    }
}

/// Invokes once and reports it: the invocation, its records and its duration are counted on
/// the mapping and logged as `BatchInvoked` (outcome summary only, never the payload). The
/// payload is taken by value: a caller that hands over its only reference lets the Lambda
/// client send the buffer without copying it.
pub(crate) async fn invoke_counted(
    invoker: &dyn Invoker,
    status: &crate::telemetry::MappingStatus,
    payload: Bytes,
    records: usize,
) -> InvokeOutcome {
    let started = tokio::time::Instant::now();
    let payload_bytes = payload.len();
    let outcome = invoker.invoke(&status.function_name, payload).await;
    crate::memory::note_work();
    crate::telemetry::events::BatchInvoked {
        uuid: &status.uuid,
        metrics: &status.metrics,
        throttled: matches!(outcome, InvokeOutcome::Throttled { .. }),
        records,
        payload_bytes,
        elapsed: started.elapsed(),
        outcome: &outcome.summary(),
    }
    .emit();
    outcome
}

/// Calls a function synchronously with a JSON payload.
pub(crate) trait Invoker: Send + Sync {
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome>;
}

/// The `errorType` of a Lambda error body (`{"errorMessage": .., "errorType": ..}`), if any.
pub(crate) fn error_type(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get("errorType")
        .and_then(|t| t.as_str())
        .map(str::to_string)
}

/// A 2xx Invoke answer: `X-Amz-Function-Error` (`function_error`) makes it a function error,
/// and so does an RIE error report without it; anything else is the function's result.
pub(crate) fn answered(function_error: Option<String>, body: Bytes) -> InvokeOutcome {
    match function_error {
        Some(kind) => InvokeOutcome::FunctionError { kind, body },
        None if looks_like_rie_error(&body) => InvokeOutcome::FunctionError {
            kind: "Unhandled".to_string(),
            body,
        },
        None => InvokeOutcome::Returned { body },
    }
}

/// Whether a 200 body without `X-Amz-Function-Error` is really an error report.
///
/// Some versions of Lambda's Runtime Interface Emulator answer a failed handler with status
/// 200, the error object as the body and no `X-Amz-Function-Error` header. A body that is
/// exactly a Lambda error object (`errorMessage` and `errorType`, optionally `stackTrace` and
/// `requestId`, nothing else) is treated as an `Unhandled` function error, and so is the RIE's
/// plain-text timeout report (`Task timed out after 3.00 seconds`). Real Lambda always sets
/// the header, so this only matters against emulators.
pub(crate) fn looks_like_rie_error(body: &[u8]) -> bool {
    if body.starts_with(b"Task timed out after ") {
        return true;
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(body)
    else {
        return false;
    };
    map.contains_key("errorMessage")
        && map.contains_key("errorType")
        && map.keys().all(|k| {
            matches!(
                k.as_str(),
                "errorMessage" | "errorType" | "stackTrace" | "requestId"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_follow_the_outcome() {
        let returned = InvokeOutcome::Returned { body: Bytes::new() };
        assert_eq!(returned.action(), ErrorAction::Proceed);
        let error = InvokeOutcome::FunctionError {
            kind: "Unhandled".into(),
            body: Bytes::from_static(br#"{"errorMessage":"secret","errorType":"ValueError"}"#),
        };
        assert_eq!(error.action(), ErrorAction::FunctionFailed);
        assert_eq!(error.summary(), "function error (Unhandled): ValueError");
        assert!(!error.summary().contains("secret"));
        let throttle = InvokeOutcome::Throttled {
            retry_after: None,
            message: "slow down".into(),
        };
        assert_eq!(throttle.action(), ErrorAction::Retry);
        let server = InvokeOutcome::ServiceError {
            message: "500".into(),
        };
        assert_eq!(server.action(), ErrorAction::Retry);
        let large = InvokeOutcome::TooLarge {
            message: "413".into(),
        };
        assert_eq!(large.action(), ErrorAction::SplitBatch);
        let missing = InvokeOutcome::Misconfigured {
            message: "404".into(),
        };
        assert_eq!(missing.action(), ErrorAction::StopMapping);
    }

    #[test]
    fn rie_error_bodies_are_recognised_narrowly() {
        assert!(looks_like_rie_error(
            br#"{"errorMessage":"boom","errorType":"Error","stackTrace":[]}"#
        ));
        assert!(!looks_like_rie_error(
            br#"{"errorMessage":"boom","errorType":"Error","batchItemFailures":[]}"#
        ));
        assert!(!looks_like_rie_error(br#"{"errorMessage":"boom"}"#));
        assert!(looks_like_rie_error(b"Task timed out after 3.00 seconds"));
        assert!(!looks_like_rie_error(b"null"));
        assert!(!looks_like_rie_error(b"not json"));
    }
}
