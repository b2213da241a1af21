//! The one place AWS errors are classified. Every SDK error esmd receives (SQS, Lambda,
//! Kinesis, DynamoDB Streams, SNS, S3) becomes an [`AwsFailure`]: its error code, HTTP status,
//! the service's `Retry-After` when it sent one, a one-line message, and a [`FailureClass`]
//! decided by [`classify`], a pure function of code and status over exact code tables. Each
//! client then maps the class onto its own small error type.

use std::error::Error as StdError;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Whose fault a failure is, and whether retrying helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// The service asked us to slow down (429, `ThrottlingException`, …): retry with backoff.
    Throttled,
    /// The service or the network failed (5xx, timeout, reset): retry with backoff.
    Transient,
    /// The request was larger than the service accepts (413): split it.
    TooLarge,
    /// A stream iterator expired, or its records were trimmed: get a new iterator.
    ExpiredIterator,
    /// A request parameter (an iterator, a sequence number) was refused.
    InvalidArgument,
    /// The queue, stream, function, topic or bucket does not exist.
    NotFound,
    /// Credentials or permissions are missing.
    AccessDenied,
    /// Any other refusal (4xx): the request cannot succeed as sent.
    Rejected,
}

/// A classified AWS failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsFailure {
    /// The error code without its namespace (`QueueDoesNotExist`), or empty.
    pub(crate) code: String,
    /// The HTTP status, when a response arrived.
    pub(crate) status: Option<u16>,
    /// How long the service asked us to wait (`Retry-After`).
    pub(crate) retry_after: Option<Duration>,
    /// `code: message`, or the error's cause chain when the service sent no message.
    pub(crate) message: String,
    pub(crate) class: FailureClass,
}

const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "OverLimit",
    "KmsThrottled",
    "KMSThrottlingException",
    "EC2ThrottledException",
];
/// Codes for transient conditions on the service's side, whatever the status (Lambda's, and
/// Kinesis's `ResourceInUseException`: a stream being resharded, or a SubscribeToShard
/// repeated within 5 s of the last one on that shard).
const TRANSIENT: &[&str] = &[
    "ResourceInUseException",
    "ResourceConflictException",
    "ResourceNotReadyException",
    "ServiceException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "EC2UnexpectedException",
    "ENILimitReachedException",
    "SubnetIPAddressLimitReachedException",
    "SnapStartTimeoutException",
    "SnapStartNotReadyException",
];
const TOO_LARGE: &[&str] = &["RequestTooLargeException", "RequestEntityTooLarge"];
const EXPIRED_ITERATOR: &[&str] = &["ExpiredIteratorException", "TrimmedDataAccessException"];
const INVALID_ARGUMENT: &[&str] = &["InvalidArgumentException", "ValidationException"];
const NOT_FOUND: &[&str] = &[
    "ResourceNotFoundException",
    "NonExistentQueue",
    "QueueDoesNotExist",
    "NotFound",
    "NotFoundException",
    "NoSuchBucket",
];
const ACCESS_DENIED: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "AuthorizationError",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "KmsAccessDenied",
];

/// Strips a code's namespace: `com.amazonaws.sqs#QueueDoesNotExist` and
/// `AWS.SimpleQueueService.NonExistentQueue` become `QueueDoesNotExist` and `NonExistentQueue`.
pub(crate) fn bare_code(code: &str) -> &str {
    let code = code.rsplit('#').next().unwrap_or(code);
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('.').next().unwrap_or(code)
}

/// The classification rules, by error code and HTTP status (`None`: no response arrived).
pub(crate) fn classify(code: &str, status: Option<u16>) -> FailureClass {
    let code = bare_code(code);
    let is = |table: &[&str]| table.contains(&code);
    match status {
        _ if is(THROTTLED) || status == Some(429) => FailureClass::Throttled,
        _ if is(TOO_LARGE) || status == Some(413) => FailureClass::TooLarge,
        _ if is(EXPIRED_ITERATOR) => FailureClass::ExpiredIterator,
        None => FailureClass::Transient,
        Some(s) if is(TRANSIENT) || s >= 500 => FailureClass::Transient,
        _ if is(INVALID_ARGUMENT) => FailureClass::InvalidArgument,
        _ if is(NOT_FOUND) || status == Some(404) => FailureClass::NotFound,
        _ if is(ACCESS_DENIED) || matches!(status, Some(401 | 403)) => FailureClass::AccessDenied,
        _ => FailureClass::Rejected,
    }
}

impl AwsFailure {
    /// Classifies any SDK error. A request that never got a response (timeout, connection
    /// refused or reset, a response cut short) is transient; one the SDK could not even build
    /// is rejected.
    pub(crate) fn from_sdk<E>(err: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let code = bare_code(err.code().unwrap_or_default()).to_string();
        let (status, retry_after) = match err {
            SdkError::ServiceError(ctx) => (
                Some(ctx.raw().status().as_u16()),
                ctx.raw()
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            ),
            SdkError::ResponseError(ctx) => (Some(ctx.raw().status().as_u16()), None),
            _ => (None, None),
        };
        let message = failure_message(&code, err.message(), || error_chain(err));
        let class = match err {
            SdkError::ConstructionFailure(_) => FailureClass::Rejected,
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => FailureClass::Transient,
            _ => classify(&code, status),
        };
        AwsFailure {
            code,
            status,
            retry_after,
            message,
            class,
        }
    }
}

/// `code: message`, the code or the message alone, or `fallback` when the service sent neither.
pub(crate) fn failure_message(
    code: &str,
    message: Option<&str>,
    fallback: impl FnOnce() -> String,
) -> String {
    match (code.is_empty(), message) {
        (false, Some(m)) => format!("{code}: {m}"),
        (true, Some(m)) => m.to_string(),
        (false, None) => code.to_string(),
        (true, None) => fallback(),
    }
}

impl std::fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) if !self.message.contains("HTTP ") => {
                write!(f, "{} (HTTP {status})", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

/// An error and its sources on one line, for errors whose top level says little
/// ("dispatch failure").
pub(crate) fn error_chain(err: &(dyn StdError + 'static)) -> String {
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
    fn codes_and_statuses_map_to_classes() {
        use FailureClass::*;
        let cases: &[(&str, Option<u16>, FailureClass)] = &[
            ("TooManyRequestsException", Some(429), Throttled),
            ("", Some(429), Throttled),
            // Kinesis: a stream being resharded, or SubscribeToShard within 5 s of the last.
            ("ResourceInUseException", Some(400), Transient),
            ("EC2ThrottledException", Some(502), Throttled),
            (
                "ProvisionedThroughputExceededException",
                Some(400),
                Throttled,
            ),
            ("RequestThrottled", Some(403), Throttled),
            ("RequestTooLargeException", Some(413), TooLarge),
            ("ExpiredIteratorException", Some(400), ExpiredIterator),
            ("TrimmedDataAccessException", Some(400), ExpiredIterator),
            ("InvalidArgumentException", Some(400), InvalidArgument),
            ("ServiceException", Some(500), Transient),
            ("", Some(503), Transient),
            ("ResourceConflictException", Some(409), Transient),
            ("", None, Transient),
            ("ResourceNotFoundException", Some(404), NotFound),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                Some(400),
                NotFound,
            ),
            ("com.amazonaws.sqs#QueueDoesNotExist", Some(400), NotFound),
            ("NoSuchBucket", Some(404), NotFound),
            ("AccessDeniedException", Some(403), AccessDenied),
            ("AuthorizationError", Some(403), AccessDenied),
            ("InvalidClientTokenId", Some(403), AccessDenied),
            ("", Some(401), AccessDenied),
            ("InvalidParameterValueException", Some(400), Rejected),
        ];
        for (code, status, class) in cases {
            assert_eq!(classify(code, *status), *class, "{code} {status:?}");
        }
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
