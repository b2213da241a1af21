//! [`Invoker`] over the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`),
//! synchronous (`RequestResponse`). Works against AWS, LocalStack, moto and Lambda's Runtime
//! Interface Emulator alike; the endpoint comes from `AWS_ENDPOINT_URL_LAMBDA` & co.

use std::time::Duration;

use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use futures::future::BoxFuture;

use super::{looks_like_rie_error, InvokeOutcome, Invoker};
use crate::aws::error::{AwsFailure, FailureClass};

/// Invokes functions through aws-sdk-lambda. The client must have SDK retries disabled: the
/// failure policy owns retrying.
#[derive(Clone, Debug)]
pub(crate) struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaInvoker {
    pub(crate) fn new(client: aws_sdk_lambda::Client) -> Self {
        LambdaInvoker { client }
    }

    async fn call(&self, function: &str, payload: Bytes) -> InvokeOutcome {
        let result = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload.to_vec()))
            .send()
            .await;
        match result {
            Ok(output) => {
                let body = output
                    .payload
                    .map(|b| Bytes::from(b.into_inner()))
                    .unwrap_or_default();
                match output.function_error {
                    Some(kind) => InvokeOutcome::FunctionError { kind, body },
                    None if looks_like_rie_error(&body) => InvokeOutcome::FunctionError {
                        kind: "Unhandled".to_string(),
                        body,
                    },
                    None => InvokeOutcome::Returned { body },
                }
            }
            Err(err) => classify_error(&err),
        }
    }
}

impl Invoker for LambdaInvoker {
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome> {
        Box::pin(self.call(function, payload))
    }
}

/// Turns an Invoke failure into an outcome. Lambda's `TooManyRequestsException` carries its
/// wait in the body (`retryAfterSeconds`), which wins over a `Retry-After` header.
pub(crate) fn classify_error(
    err: &SdkError<InvokeError, aws_smithy_runtime_api::http::Response>,
) -> InvokeOutcome {
    let mut failure = AwsFailure::from_sdk(err);
    if let SdkError::ServiceError(ctx) = err {
        if let InvokeError::TooManyRequestsException(e) = ctx.err() {
            if let Some(after) = e
                .retry_after_seconds()
                .and_then(|s| s.trim().parse::<u64>().ok())
            {
                failure.retry_after = Some(Duration::from_secs(after));
            }
        }
    }
    outcome_of(failure)
}

/// What a classified Invoke failure means for the batch.
pub(crate) fn outcome_of(failure: AwsFailure) -> InvokeOutcome {
    let message = failure.to_string();
    match failure.class {
        FailureClass::Throttled => InvokeOutcome::Throttled {
            retry_after: failure.retry_after,
            message,
        },
        FailureClass::TooLarge => InvokeOutcome::TooLarge { message },
        FailureClass::Transient => InvokeOutcome::ServiceError { message },
        // A missing function, denied access, or any other refusal: the request cannot
        // succeed as sent, so the mapping goes to its error state.
        FailureClass::NotFound
        | FailureClass::AccessDenied
        | FailureClass::InvalidArgument
        | FailureClass::ExpiredIterator
        | FailureClass::Rejected => InvokeOutcome::Misconfigured { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::classify;

    #[test]
    fn statuses_and_codes_map_to_outcomes() {
        let m = |status: u16, code: &str, retry_after: Option<Duration>| {
            outcome_of(AwsFailure {
                code: code.into(),
                status: Some(status),
                retry_after,
                message: "m".into(),
                class: classify(code, Some(status)),
            })
        };
        assert!(matches!(
            m(429, "TooManyRequestsException", Some(Duration::from_secs(2))),
            InvokeOutcome::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            m(502, "EC2ThrottledException", None),
            InvokeOutcome::Throttled { .. }
        ));
        assert!(matches!(
            m(413, "RequestTooLargeException", None),
            InvokeOutcome::TooLarge { .. }
        ));
        assert!(matches!(
            m(500, "ServiceException", None),
            InvokeOutcome::ServiceError { .. }
        ));
        assert!(matches!(
            m(503, "", None),
            InvokeOutcome::ServiceError { .. }
        ));
        assert!(matches!(
            m(409, "ResourceConflictException", None),
            InvokeOutcome::ServiceError { .. }
        ));
        assert!(matches!(
            m(404, "ResourceNotFoundException", None),
            InvokeOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            m(403, "AccessDeniedException", None),
            InvokeOutcome::Misconfigured { .. }
        ));
    }
}
