//! [`Invoker`] over the Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`),
//! synchronous (`RequestResponse`). Works against AWS, LocalStack, moto and Lambda's Runtime
//! Interface Emulator alike; the endpoint comes from `AWS_ENDPOINT_URL_LAMBDA` & co.
//!
//! Lambda caps a synchronous response at 6 MB and reports a larger one as a function error
//! (`Function.ResponseSizeTooLarge`). An emulator or a misbehaving endpoint may send more: the
//! client's [`ResponseCap`] stops reading at the cap (the SDK would otherwise buffer the
//! whole body) and the batch fails as Lambda would fail it.

use std::time::Duration;

use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use bytes::Bytes;
use futures::future::BoxFuture;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;

use super::http::response_too_large;
use super::{answered, InvokeOutcome, Invoker};
use crate::aws::error::{AwsFailure, FailureClass};
use crate::config::MAX_INVOKE_PAYLOAD_BYTES;

/// Invokes functions through aws-sdk-lambda. The client must have SDK retries disabled: the
/// failure policy owns retrying.
#[derive(Clone, Debug)]
pub(crate) struct LambdaInvoker {
    client: aws_sdk_lambda::Client,
}

impl LambdaInvoker {
    pub(crate) fn new(client: aws_sdk_lambda::Client) -> Self {
        let config = client
            .config()
            .to_builder()
            .interceptor(ResponseCap)
            .build();
        LambdaInvoker {
            client: aws_sdk_lambda::Client::from_conf(config),
        }
    }

    async fn call(&self, function: &str, payload: Bytes) -> InvokeOutcome {
        let result = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            // Without a copy when the caller handed over the only reference.
            .payload(Blob::new(Vec::from(payload)))
            .send()
            .await;
        match result {
            Ok(output) => {
                let body = output
                    .payload
                    .map(|b| Bytes::from(b.into_inner()))
                    .unwrap_or_default();
                answered(output.function_error, body)
            }
            Err(err) if over_the_cap(&err) => response_too_large(),
            Err(err) => classify_error(&err),
        }
    }
}

/// The response was larger than Lambda's 6 MB.
#[derive(Debug, thiserror::Error)]
#[error("the function's response is larger than Lambda's {MAX_INVOKE_PAYLOAD_BYTES} bytes")]
struct ResponseTooLarge;

/// Refuses a response whose `Content-Length` passes the cap, and limits the reading of any
/// other to the cap.
#[derive(Debug)]
struct ResponseCap;

impl Intercept for ResponseCap {
    fn name(&self) -> &'static str {
        "esmd::ResponseCap"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response_mut();
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_INVOKE_PAYLOAD_BYTES) {
            return Err(ResponseTooLarge.into());
        }
        let body = std::mem::replace(response.body_mut(), SdkBody::taken());
        *response.body_mut() =
            SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_INVOKE_PAYLOAD_BYTES));
        Ok(())
    }
}

/// Whether an Invoke failed because the response passed the cap.
fn over_the_cap(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<ResponseTooLarge>() || e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl Invoker for LambdaInvoker {
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome> {
        Box::pin(self.call(function, payload))
    }
}

/// Turns an Invoke failure into an outcome. Lambda's `TooManyRequestsException` carries its
/// wait as `retryAfterSeconds`, which the SDK reads from the `Retry-After` header.
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A Lambda endpoint answering every Invoke with `size` bytes of spaces, declared with
    /// Content-Length or sent chunked (so the cap must be enforced while reading).
    async fn lambda_answering(size: usize, chunked: bool) -> LambdaInvoker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut request = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n")
                };
                let _ = socket.write_all(head.as_bytes()).await;
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    let n = chunk.len().min(size - sent);
                    let written = if chunked {
                        let mut framed = format!("{n:x}\r\n").into_bytes();
                        framed.extend_from_slice(&chunk[..n]);
                        framed.extend_from_slice(b"\r\n");
                        socket.write_all(&framed).await
                    } else {
                        socket.write_all(&chunk[..n]).await
                    };
                    if written.is_err() {
                        break;
                    }
                    sent += n;
                }
                if chunked {
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                }
            }
        });
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_lambda::config::Credentials::for_tests())
            .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
            .endpoint_url(endpoint)
            .build();
        LambdaInvoker::new(aws_sdk_lambda::Client::from_conf(config))
    }

    #[tokio::test]
    async fn a_response_over_six_megabytes_is_a_function_error_whether_declared_or_not() {
        let over = MAX_INVOKE_PAYLOAD_BYTES + 1024 * 1024;
        for chunked in [false, true] {
            let outcome = lambda_answering(over, chunked)
                .await
                .call("f", Bytes::from_static(b"{}"))
                .await;
            assert_eq!(outcome, response_too_large(), "chunked: {chunked}");
            let small = lambda_answering(1024, chunked)
                .await
                .call("f", Bytes::from_static(b"{}"))
                .await;
            assert!(matches!(small, InvokeOutcome::Returned { .. }), "{small:?}");
        }
    }

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
