//! awsJson over the signed client (SQS): `POST /`, the operation in `x-amz-target`, and the
//! reading of a service's error answer.

use std::time::Duration;

use bytes::Bytes;

use super::{transient, SignedClient};
use crate::aws::error::{bare_code, classify, failure_message, AwsFailure};

/// Answers of JSON operations are small; a larger one is not an answer.
const JSON_ANSWER_LIMIT: usize = 16 * 1024 * 1024;

pub(crate) struct JsonClient {
    client: SignedClient,
    /// `AmazonSQS`, prefixed to the operation.
    target_prefix: &'static str,
    content_type: &'static str,
}

impl JsonClient {
    pub(crate) fn new(
        client: SignedClient,
        target_prefix: &'static str,
        content_type: &'static str,
    ) -> Self {
        JsonClient {
            client,
            target_prefix,
            content_type,
        }
    }

    /// One call: `operation`'s JSON `body` in, the answer's body out.
    pub(crate) async fn call(&self, operation: &str, body: Vec<u8>) -> Result<Bytes, AwsFailure> {
        let target = format!("{}.{operation}", self.target_prefix);
        let headers = [
            (http::header::CONTENT_TYPE, self.content_type),
            (
                http::HeaderName::from_static("x-amz-target"),
                target.as_str(),
            ),
        ];
        let answer = self
            .client
            .send(
                operation,
                "/",
                &headers,
                Bytes::from(body),
                JSON_ANSWER_LIMIT,
            )
            .await?;
        if answer.over_limit {
            return Err(transient(format!(
                "{target}: an answer over {JSON_ANSWER_LIMIT} bytes"
            )));
        }
        if (200..300).contains(&answer.status) {
            return Ok(answer.body);
        }
        Err(service_failure(
            answer.status,
            &answer.headers,
            &answer.body,
        ))
    }
}

/// A service's error answer. The code is the query-compatible one when the service sends it
/// (`x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender`, as the SDK reads
/// it), else `x-amzn-errortype` (restJson: Lambda), else the body's `__type`; then the same
/// classification as every SDK error.
pub(crate) fn service_failure(status: u16, headers: &http::HeaderMap, body: &[u8]) -> AwsFailure {
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(rename = "__type", default)]
        kind: String,
        #[serde(alias = "Message", default)]
        message: Option<String>,
    }
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let code = header("x-amzn-query-error")
        .and_then(|v| v.split(';').next())
        .or_else(|| header("x-amzn-errortype"))
        .filter(|c| !c.is_empty())
        .unwrap_or(&parsed.kind);
    let code = bare_code(code).to_string();
    let message = failure_message(&code, parsed.message.as_deref(), || {
        String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
    });
    AwsFailure {
        class: classify(&code, Some(status)),
        retry_after: header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs),
        status: Some(status),
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::error::FailureClass;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_query_compatible_code_wins_over_the_json_type() {
        let f = service_failure(
            400,
            &headers(&[("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender")]),
            br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#,
        );
        assert_eq!(f.code, "NonExistentQueue");
        assert_eq!(f.class, FailureClass::NotFound);
        assert_eq!(
            f.message,
            "NonExistentQueue: The specified queue does not exist."
        );
        let f = service_failure(
            400,
            &http::HeaderMap::new(),
            br#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"gone"}"#,
        );
        assert_eq!(
            (f.code.as_str(), f.class),
            ("QueueDoesNotExist", FailureClass::NotFound)
        );
    }

    #[test]
    fn throttles_and_server_errors_are_retried_and_keep_retry_after() {
        let f = service_failure(
            400,
            &headers(&[("retry-after", "3")]),
            br#"{"__type":"com.amazonaws.sqs#RequestThrottled","Message":"slow down"}"#,
        );
        assert_eq!(f.class, FailureClass::Throttled);
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(f.message, "RequestThrottled: slow down");
        let f = service_failure(503, &http::HeaderMap::new(), b"<html>busy</html>");
        assert_eq!(
            (f.class, f.message.as_str()),
            (FailureClass::Transient, "<html>busy</html>")
        );
        let f = service_failure(
            403,
            &http::HeaderMap::new(),
            br#"{"__type":"AccessDenied"}"#,
        );
        assert_eq!(f.class, FailureClass::AccessDenied);
    }
}
