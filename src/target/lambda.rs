//! [`Invoker`] over the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`),
//! synchronous (`RequestResponse`). Works against AWS, LocalStack, moto and Lambda's Runtime
//! Interface Emulator alike; the endpoint comes from `AWS_ENDPOINT_URL_LAMBDA` & co.

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use futures::future::BoxFuture;

use super::{looks_like_rie_error, InvokeOutcome, Invoker};

/// Invokes functions through aws-sdk-lambda. The client must have SDK retries disabled: the
/// failure policy owns retrying.
#[derive(Clone, Debug)]
pub struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaInvoker {
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
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

/// Turns an Invoke failure into an outcome.
pub fn classify_error(
    err: &SdkError<InvokeError, aws_smithy_runtime_api::http::Response>,
) -> InvokeOutcome {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            InvokeOutcome::ServiceError {
                message: error_chain(err),
            }
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or_default();
            let message = match (code.is_empty(), ctx.err().message()) {
                (false, Some(m)) => format!("{code} (HTTP {status}): {m}"),
                (true, Some(m)) => format!("HTTP {status}: {m}"),
                (false, None) => format!("{code} (HTTP {status})"),
                (true, None) => format!("HTTP {status}"),
            };
            let retry_after = match ctx.err() {
                InvokeError::TooManyRequestsException(e) => e
                    .retry_after_seconds()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
                _ => None,
            }
            .or_else(|| {
                ctx.raw()
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
            });
            classify_status(status, code, message, retry_after)
        }
        _ => InvokeOutcome::ServiceError {
            message: error_chain(err),
        },
    }
}

/// The classification rules, by HTTP status and error code.
pub fn classify_status(
    status: u16,
    code: &str,
    message: String,
    retry_after: Option<Duration>,
) -> InvokeOutcome {
    // Codes Lambda uses for transient conditions on its side, whatever the status.
    const TRANSIENT_CODES: &[&str] = &[
        "ResourceConflictException",
        "ResourceNotReadyException",
        "ServiceException",
        "EC2ThrottledException",
        "EC2UnexpectedException",
        "ENILimitReachedException",
        "SubnetIPAddressLimitReachedException",
        "SnapStartTimeoutException",
        "SnapStartNotReadyException",
    ];
    const MISCONFIGURED_CODES: &[&str] = &[
        "ResourceNotFoundException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "InvalidParameterValueException",
        "InvalidRuntimeException",
        "InvalidZipFileException",
        "KMSAccessDeniedException",
        "KMSDisabledException",
        "KMSNotFoundException",
        "EFSMountFailureException",
    ];
    if status == 429 || code.contains("Throttl") || code == "TooManyRequestsException" {
        return InvokeOutcome::Throttled {
            retry_after,
            message,
        };
    }
    if status == 413 || code == "RequestTooLargeException" {
        return InvokeOutcome::TooLarge { message };
    }
    if TRANSIENT_CODES.contains(&code) || status >= 500 {
        return InvokeOutcome::ServiceError { message };
    }
    if MISCONFIGURED_CODES.contains(&code) || status == 404 || status == 403 || status == 401 {
        return InvokeOutcome::Misconfigured { message };
    }
    // Any other 4xx means the request cannot succeed as sent.
    InvokeOutcome::Misconfigured { message }
}

/// An error and its sources on one line, for errors whose top level says little
/// ("dispatch failure").
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes_map_to_outcomes() {
        let m = || "m".to_string();
        assert!(matches!(
            classify_status(429, "TooManyRequestsException", m(), Some(Duration::from_secs(2))),
            InvokeOutcome::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify_status(502, "EC2ThrottledException", m(), None),
            InvokeOutcome::Throttled { .. }
        ));
        assert!(matches!(
            classify_status(413, "RequestTooLargeException", m(), None),
            InvokeOutcome::TooLarge { .. }
        ));
        assert!(matches!(
            classify_status(500, "ServiceException", m(), None),
            InvokeOutcome::ServiceError { .. }
        ));
        assert!(matches!(
            classify_status(503, "", m(), None),
            InvokeOutcome::ServiceError { .. }
        ));
        assert!(matches!(
            classify_status(409, "ResourceConflictException", m(), None),
            InvokeOutcome::ServiceError { .. }
        ));
        assert!(matches!(
            classify_status(404, "ResourceNotFoundException", m(), None),
            InvokeOutcome::Misconfigured { .. }
        ));
        assert!(matches!(
            classify_status(403, "AccessDeniedException", m(), None),
            InvokeOutcome::Misconfigured { .. }
        ));
    }

    #[test]
    fn error_chain_joins_sources_without_repeats() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(error_chain(&e), "dispatch failure: connection refused");
    }
}
