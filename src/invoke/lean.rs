//! [`Invoker`] over Lambda's Invoke through esmd's own signed client (`[aws] client =
//! "lean"`, [`crate::aws::lean`]): the same request the SDK sends (`POST
//! /2015-03-31/functions/{name}/invocations`, `X-Amz-Invocation-Type: RequestResponse`,
//! `application/octet-stream`), and the same reading of the answer as [`super::lambda`], which
//! the tests below hold it to, answer by answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::http::response_too_large;
use super::lambda::{outcome_of, LambdaInvoker};
use super::{answered, InvokeOutcome, Invoker};
use crate::aws::lean::json::service_failure;
use crate::aws::lean::SignedClient;
use crate::aws::{AwsContext, AwsSetupError, Service};
use crate::config::MAX_INVOKE_PAYLOAD_BYTES;

pub(crate) struct LeanInvoker {
    client: SignedClient,
}

impl LeanInvoker {
    pub(crate) fn new(client: SignedClient) -> Self {
        LeanInvoker { client }
    }

    async fn call(&self, function: &str, payload: Bytes) -> InvokeOutcome {
        let path = format!("/2015-03-31/functions/{}/invocations", path_label(function));
        let headers = [
            (http::header::CONTENT_TYPE, "application/octet-stream"),
            (
                http::HeaderName::from_static("x-amz-invocation-type"),
                "RequestResponse",
            ),
        ];
        let answer = match self
            .client
            .send("Invoke", &path, &headers, payload, MAX_INVOKE_PAYLOAD_BYTES)
            .await
        {
            Ok(answer) => answer,
            Err(failure) => return outcome_of(failure),
        };
        if !(200..300).contains(&answer.status) {
            // A throttle's wait is its `Retry-After` header (the model's `retryAfterSeconds`).
            return outcome_of(service_failure(
                answer.status,
                &answer.headers,
                &answer.body,
            ));
        }
        if answer.over_limit {
            return response_too_large();
        }
        let function_error = answer
            .headers
            .get("x-amz-function-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        answered(function_error, answer.body)
    }
}

/// Lambda's longest invocation, and a margin: the attempt bound of an Invoke.
const INVOKE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(905);

/// The Lambda Invoke client: the SDK's, or with `[aws] client = "lean"` this one.
pub(crate) async fn invoker(aws: &AwsContext) -> Result<Arc<dyn Invoker>, AwsSetupError> {
    let lean = aws
        .lean_client(Service::Lambda, "lambda", INVOKE_ATTEMPT_TIMEOUT)
        .await?;
    Ok(match lean {
        None => Arc::new(LambdaInvoker::new(aws.lambda())),
        Some(signed) => Arc::new(LeanInvoker::new(signed)),
    })
}

impl Invoker for LeanInvoker {
    fn invoke<'a>(&'a self, function: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome> {
        Box::pin(self.call(function, payload))
    }
}

/// A path label as the SDK encodes it: every byte but the unreserved ones percent-encoded (a
/// function ARN's `:` becomes `%3A`).
fn path_label(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for b in label.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
#[path = "lean_tests.rs"]
mod tests;
