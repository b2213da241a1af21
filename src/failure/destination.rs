//! On-failure destinations for stream mappings: the record AWS sends when a batch is given
//! up (`docs/esm-semantics.md` §4, reference §4.5), and one narrow trait to send it to an SQS
//! queue, SNS topic or S3 bucket.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;

use crate::aws::error::{AwsFailure, FailureClass};
use serde::Serialize;

use crate::action::ErrorAction;
use crate::config::FailureDestination;

/// Why a batch was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Condition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

/// Which stream the batch came from; picks `KinesisBatchInfo` or `DDBStreamBatchInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Kinesis,
    DynamoDb,
}

/// The last invocation's answer, when there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResponseContext {
    pub(crate) status_code: u16,
    /// `Unhandled` for a thrown error; `None` (JSON `null`) for a partial-batch response.
    pub(crate) function_error: Option<String>,
}

/// Everything the record says about the discarded batch.
#[derive(Debug, Clone)]
pub(crate) struct FailedBatch<'a> {
    pub(crate) kind: StreamKind,
    pub(crate) request_id: String,
    pub(crate) function_arn: String,
    pub(crate) condition: Condition,
    pub(crate) approximate_invoke_count: u32,
    pub(crate) response: Option<ResponseContext>,
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) shard_id: &'a str,
    pub(crate) stream_arn: &'a str,
    pub(crate) start_sequence_number: &'a str,
    pub(crate) end_sequence_number: &'a str,
    pub(crate) first_arrival: DateTime<Utc>,
    pub(crate) last_arrival: DateTime<Utc>,
    pub(crate) batch_size: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContextJson<'a> {
    request_id: &'a str,
    function_arn: &'a str,
    condition: Condition,
    approximate_invoke_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseContextJson<'a> {
    status_code: u16,
    executed_version: &'static str,
    function_error: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchInfoJson<'a> {
    shard_id: &'a str,
    start_sequence_number: &'a str,
    end_sequence_number: &'a str,
    approximate_arrival_of_first_record: String,
    approximate_arrival_of_last_record: String,
    batch_size: usize,
    stream_arn: &'a str,
}

#[derive(Serialize)]
struct RecordJson<'a> {
    #[serde(rename = "requestContext")]
    request_context: RequestContextJson<'a>,
    #[serde(rename = "responseContext", skip_serializing_if = "Option::is_none")]
    response_context: Option<ResponseContextJson<'a>>,
    version: &'static str,
    timestamp: String,
    #[serde(rename = "KinesisBatchInfo", skip_serializing_if = "Option::is_none")]
    kinesis: Option<BatchInfoJson<'a>>,
    #[serde(rename = "DDBStreamBatchInfo", skip_serializing_if = "Option::is_none")]
    dynamodb: Option<BatchInfoJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn seconds(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl FailedBatch<'_> {
    /// The JSON record. `payload` (the original invocation event) is added for S3 only.
    pub(crate) fn to_json(&self, payload: Option<&str>) -> String {
        // Kinesis times carry milliseconds; DynamoDB's are whole seconds.
        let arrival = match self.kind {
            StreamKind::Kinesis => millis,
            StreamKind::DynamoDb => seconds,
        };
        let info = BatchInfoJson {
            shard_id: self.shard_id,
            start_sequence_number: self.start_sequence_number,
            end_sequence_number: self.end_sequence_number,
            approximate_arrival_of_first_record: arrival(self.first_arrival),
            approximate_arrival_of_last_record: arrival(self.last_arrival),
            batch_size: self.batch_size,
            stream_arn: self.stream_arn,
        };
        let (kinesis, dynamodb) = match self.kind {
            StreamKind::Kinesis => (Some(info), None),
            StreamKind::DynamoDb => (None, Some(info)),
        };
        let record = RecordJson {
            request_context: RequestContextJson {
                request_id: &self.request_id,
                function_arn: &self.function_arn,
                condition: self.condition,
                approximate_invoke_count: self.approximate_invoke_count,
            },
            response_context: self.response.as_ref().map(|r| ResponseContextJson {
                status_code: r.status_code,
                executed_version: "$LATEST",
                function_error: r.function_error.as_deref(),
            }),
            version: "1.0",
            timestamp: millis(self.timestamp),
            kinesis,
            dynamodb,
            payload,
        };
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// AWS's S3 object key:
    /// `aws/lambda/<ESM-UUID>/<shardID>/YYYY/MM/DD/YYYY-MM-DDTHH.MM.SS-<random UUID>`.
    pub(crate) fn s3_key(&self, mapping_uuid: &str) -> String {
        format!(
            "aws/lambda/{mapping_uuid}/{}/{}/{}-{}",
            self.shard_id,
            self.timestamp.format("%Y/%m/%d"),
            self.timestamp.format("%Y-%m-%dT%H.%M.%S"),
            uuid::Uuid::new_v4()
        )
    }
}

/// What one destination delivery carries.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The metadata record (the SQS message body, SNS message).
    pub(crate) record: String,
    /// For S3: the object key and the record with the original event as `payload`.
    pub(crate) s3_key: String,
    pub(crate) s3_body: String,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DestinationError {
    #[error("destination {arn} does not exist: {message}")]
    Missing { arn: String, message: String },
    #[error("access to destination {arn} denied: {message}")]
    AccessDenied { arn: String, message: String },
    #[error("destination {arn}: {message}")]
    Transient { arn: String, message: String },
}

impl DestinationError {
    /// Every delivery failure is retried: a batch is never dropped because its destination
    /// is unavailable. A missing or forbidden destination also puts the mapping in its error
    /// state while it waits.
    pub(crate) fn action(&self) -> ErrorAction {
        match self {
            DestinationError::Transient { .. } => ErrorAction::Retry,
            _ => ErrorAction::StopMapping,
        }
    }
}

/// Sends on-failure records.
pub(crate) trait DestinationSender: Send + Sync {
    fn send<'a>(
        &'a self,
        destination: &'a FailureDestination,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), DestinationError>>;
}

/// The SDK implementation (SQS SendMessage, SNS Publish, S3 PutObject).
#[derive(Clone, Debug)]
pub(crate) struct SdkDestinations {
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) sns: aws_sdk_sns::Client,
    pub(crate) s3: aws_sdk_s3::Client,
}

fn classify<E>(
    arn: &str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> DestinationError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let failure = AwsFailure::from_sdk(&err);
    let (arn, message) = (arn.to_string(), failure.to_string());
    match failure.class {
        FailureClass::NotFound => DestinationError::Missing { arn, message },
        FailureClass::AccessDenied => DestinationError::AccessDenied { arn, message },
        // Every other failure is retried: a batch is never dropped for its destination.
        _ => DestinationError::Transient { arn, message },
    }
}

impl DestinationSender for SdkDestinations {
    fn send<'a>(
        &'a self,
        destination: &'a FailureDestination,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async move {
            match destination {
                FailureDestination::Sqs {
                    arn,
                    account_id,
                    queue_name,
                } => {
                    let url = self
                        .sqs
                        .get_queue_url()
                        .queue_name(queue_name)
                        .queue_owner_aws_account_id(account_id)
                        .send()
                        .await
                        .map_err(|e| classify(arn, e))?
                        .queue_url
                        .unwrap_or_default();
                    self.sqs
                        .send_message()
                        .queue_url(url)
                        .message_body(&delivery.record)
                        .send()
                        .await
                        .map_err(|e| classify(arn, e))?;
                }
                FailureDestination::Sns { arn } => {
                    self.sns
                        .publish()
                        .topic_arn(arn)
                        .message(&delivery.record)
                        .send()
                        .await
                        .map_err(|e| classify(arn, e))?;
                }
                FailureDestination::S3 { arn, bucket } => {
                    self.s3
                        .put_object()
                        .bucket(bucket)
                        .key(&delivery.s3_key)
                        .content_type("application/json")
                        .body(delivery.s3_body.clone().into_bytes().into())
                        .send()
                        .await
                        .map_err(|e| classify(arn, e))?;
                }
            }
            Ok(())
        })
    }
}

/// A destination that accepts everything, for tests that give nothing up.
#[cfg(test)]
pub(crate) struct NoDestination;

#[cfg(test)]
impl DestinationSender for NoDestination {
    fn send<'a>(
        &'a self,
        _: &'a FailureDestination,
        _: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), DestinationError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn batch(kind: StreamKind) -> FailedBatch<'static> {
        FailedBatch {
            kind,
            request_id: "c9b8fa9f-5a7f-4a2f-af9c-0c604cde93a5".into(),
            function_arn: "arn:aws:lambda:us-east-1:123456789012:function:myfunction".into(),
            condition: Condition::RetryAttemptsExhausted,
            approximate_invoke_count: 3,
            response: Some(ResponseContext {
                status_code: 200,
                function_error: Some("Unhandled".into()),
            }),
            timestamp: at("2026-11-14T00:13:49.717Z"),
            shard_id: "shardId-000000000001",
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/mystream",
            start_sequence_number: "49601189658422359378836298521827638475320189012309704722",
            end_sequence_number: "49601189658422359378836298522902373528957594348623495186",
            first_arrival: at("2026-11-14T00:13:49.717Z"),
            last_arrival: at("2026-11-14T00:13:49.717Z"),
            batch_size: 5,
        }
    }

    /// The example record of esm-semantics.md §4, byte for byte.
    #[test]
    fn golden_kinesis_record() {
        let expected = r#"{"requestContext":{"requestId":"c9b8fa9f-5a7f-4a2f-af9c-0c604cde93a5","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:myfunction","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2026-11-14T00:13:49.717Z","KinesisBatchInfo":{"shardId":"shardId-000000000001","startSequenceNumber":"49601189658422359378836298521827638475320189012309704722","endSequenceNumber":"49601189658422359378836298522902373528957594348623495186","approximateArrivalOfFirstRecord":"2026-11-14T00:13:49.717Z","approximateArrivalOfLastRecord":"2026-11-14T00:13:49.717Z","batchSize":5,"streamArn":"arn:aws:kinesis:us-east-1:123456789012:stream/mystream"}}"#;
        assert_eq!(batch(StreamKind::Kinesis).to_json(None), expected);
    }

    #[test]
    fn dynamodb_uses_its_own_key_whole_seconds_and_no_response_when_aged_out() {
        let mut b = batch(StreamKind::DynamoDb);
        b.condition = Condition::RecordAgeExceeded;
        b.response = None;
        let v: serde_json::Value = serde_json::from_str(&b.to_json(None)).unwrap();
        assert!(v.get("responseContext").is_none());
        assert!(v.get("KinesisBatchInfo").is_none());
        assert_eq!(v["requestContext"]["condition"], "RecordAgeExceeded");
        assert_eq!(
            v["DDBStreamBatchInfo"]["approximateArrivalOfFirstRecord"],
            "2026-11-14T00:13:49Z"
        );
    }

    #[test]
    fn partial_failures_report_a_null_function_error_and_s3_gets_the_payload() {
        let mut b = batch(StreamKind::Kinesis);
        b.response = Some(ResponseContext {
            status_code: 200,
            function_error: None,
        });
        let v: serde_json::Value =
            serde_json::from_str(&b.to_json(Some(r#"{"Records":[]}"#))).unwrap();
        assert!(v["responseContext"]["functionError"].is_null());
        assert_eq!(v["payload"], r#"{"Records":[]}"#);
        let key = b.s3_key("uuid-1");
        assert!(
            key.starts_with(
                "aws/lambda/uuid-1/shardId-000000000001/2026/11/14/2026-11-14T00.13.49-"
            ),
            "{key}"
        );
    }
}
