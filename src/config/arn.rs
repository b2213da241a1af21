//! Parsing of the ARNs a mapping names: its event source and its on-failure destination.
//!
//! Only the parts esmd needs are extracted: the service (which decides the source kind), the
//! region and account, and the resource name. Anything else is kept verbatim in the original
//! string so that payloads carry exactly the ARN the user configured.

use std::fmt;

/// The kind of event source an `event_source_arn` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SourceKind {
    Sqs,
    Kinesis,
    DynamoDbStreams,
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceKind::Sqs => "SQS",
            SourceKind::Kinesis => "Kinesis",
            SourceKind::DynamoDbStreams => "DynamoDB Streams",
        })
    }
}

/// A parsed `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arn {
    pub(crate) partition: String,
    pub(crate) service: String,
    pub(crate) region: String,
    pub(crate) account_id: String,
    pub(crate) resource: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ArnError {
    #[error("`{0}` is not an ARN (expected arn:partition:service:region:account:resource)")]
    Malformed(String),
    #[error("`{arn}` is not a Kinesis stream or stream consumer ARN: {reason}")]
    BadKinesis { arn: String, reason: String },
    #[error("`{arn}` is a {service} ARN; expected {expected}")]
    WrongService {
        arn: String,
        service: String,
        expected: &'static str,
    },
}

impl Arn {
    pub(crate) fn parse(text: &str) -> Result<Self, ArnError> {
        let mut parts = text.splitn(6, ':');
        let mut next = || parts.next().unwrap_or_default().to_string();
        let (scheme, partition, service, region, account_id, resource) =
            (next(), next(), next(), next(), next(), next());
        if scheme != "arn" || partition.is_empty() || service.is_empty() || resource.is_empty() {
            return Err(ArnError::Malformed(text.to_string()));
        }
        Ok(Arn {
            partition,
            service,
            region,
            account_id,
            resource,
        })
    }
}

/// What an `event_source_arn` resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventSource {
    Sqs {
        arn: String,
        region: String,
        account_id: String,
        queue_name: String,
    },
    Kinesis {
        /// As configured: the stream's ARN, or a stream consumer's (enhanced fan-out).
        arn: String,
        region: String,
        account_id: String,
        stream_name: String,
        /// `arn:…:stream/NAME`, which events and failure records carry.
        stream_arn: String,
        /// Set when `arn` names a registered stream consumer: records are read with
        /// SubscribeToShard (enhanced fan-out) instead of GetRecords.
        consumer_arn: Option<String>,
    },
    DynamoDbStreams {
        arn: String,
        region: String,
        account_id: String,
        table_name: String,
    },
}

impl EventSource {
    pub(crate) fn parse(text: &str) -> Result<Self, ArnError> {
        let arn = Arn::parse(text)?;
        let wrong = |expected| ArnError::WrongService {
            arn: text.to_string(),
            service: arn.service.clone(),
            expected,
        };
        const EXPECTED: &str = "an SQS queue, Kinesis stream or DynamoDB stream ARN";
        match arn.service.as_str() {
            "sqs" if !arn.resource.contains('/') && !arn.resource.contains(':') => {
                Ok(EventSource::Sqs {
                    arn: text.to_string(),
                    region: arn.region,
                    account_id: arn.account_id,
                    queue_name: arn.resource,
                })
            }
            "kinesis" => parse_kinesis(text, arn),
            "dynamodb" => {
                // table/NAME/stream/LABEL
                let mut segments = arn.resource.split('/');
                match (
                    segments.next(),
                    segments.next(),
                    segments.next(),
                    segments.next(),
                ) {
                    (Some("table"), Some(table), Some("stream"), Some(label))
                        if !table.is_empty() && !label.is_empty() =>
                    {
                        Ok(EventSource::DynamoDbStreams {
                            arn: text.to_string(),
                            region: arn.region,
                            account_id: arn.account_id,
                            table_name: table.to_string(),
                        })
                    }
                    _ => Err(ArnError::Malformed(text.to_string())),
                }
            }
            _ => Err(wrong(EXPECTED)),
        }
    }

    /// The stream's own ARN: for a consumer ARN, the stream part (events and failure
    /// records carry it, as AWS's do); otherwise [`Self::arn`].
    pub(crate) fn stream_arn(&self) -> &str {
        match self {
            EventSource::Kinesis { stream_arn, .. } => stream_arn,
            other => other.arn(),
        }
    }

    /// The stream consumer to read through (enhanced fan-out), if one is configured.
    pub(crate) fn consumer_arn(&self) -> Option<&str> {
        match self {
            EventSource::Kinesis { consumer_arn, .. } => consumer_arn.as_deref(),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> SourceKind {
        match self {
            EventSource::Sqs { .. } => SourceKind::Sqs,
            EventSource::Kinesis { .. } => SourceKind::Kinesis,
            EventSource::DynamoDbStreams { .. } => SourceKind::DynamoDbStreams,
        }
    }

    pub(crate) fn arn(&self) -> &str {
        match self {
            EventSource::Sqs { arn, .. }
            | EventSource::Kinesis { arn, .. }
            | EventSource::DynamoDbStreams { arn, .. } => arn,
        }
    }

    pub(crate) fn region(&self) -> &str {
        match self {
            EventSource::Sqs { region, .. }
            | EventSource::Kinesis { region, .. }
            | EventSource::DynamoDbStreams { region, .. } => region,
        }
    }

    /// The account that owns the queue or stream, parsed once from the ARN.
    pub(crate) fn account_id(&self) -> &str {
        match self {
            EventSource::Sqs { account_id, .. }
            | EventSource::Kinesis { account_id, .. }
            | EventSource::DynamoDbStreams { account_id, .. } => account_id,
        }
    }

    /// The queue, stream or table name.
    pub(crate) fn name(&self) -> &str {
        match self {
            EventSource::Sqs { queue_name, .. } => queue_name,
            EventSource::Kinesis { stream_name, .. } => stream_name,
            EventSource::DynamoDbStreams { table_name, .. } => table_name,
        }
    }

    /// SQS FIFO queues are named `*.fifo`.
    pub(crate) fn is_fifo_queue(&self) -> bool {
        matches!(self, EventSource::Sqs { queue_name, .. } if queue_name.ends_with(".fifo"))
    }
}

/// `stream/NAME` or, for enhanced fan-out, `stream/NAME/consumer/CONSUMER:CREATION_TIMESTAMP`.
fn parse_kinesis(text: &str, arn: Arn) -> Result<EventSource, ArnError> {
    let bad = |reason: &str| ArnError::BadKinesis {
        arn: text.to_string(),
        reason: reason.to_string(),
    };
    let rest = arn
        .resource
        .strip_prefix("stream/")
        .ok_or_else(|| bad("the resource must start with stream/"))?;
    let (name, consumer) = match rest.split_once('/') {
        None => (rest, None),
        Some((name, consumer)) => (name, Some(consumer)),
    };
    if name.is_empty() || name.contains(':') {
        return Err(bad("the stream name is missing or contains ':'"));
    }
    let stream_arn = format!(
        "arn:{}:kinesis:{}:{}:stream/{name}",
        arn.partition, arn.region, arn.account_id
    );
    let consumer_arn = match consumer {
        None => None,
        Some(tail) => {
            let consumer = tail.strip_prefix("consumer/").ok_or_else(|| {
                bad("after the stream name a consumer ARN has /consumer/CONSUMER:CREATION_TIMESTAMP")
            })?;
            let (consumer_name, created) = consumer.split_once(':').ok_or_else(|| {
                bad("a consumer ARN ends with :CREATION_TIMESTAMP (as RegisterStreamConsumer returns it)")
            })?;
            let name_ok = !consumer_name.is_empty()
                && consumer_name.len() <= 128
                && consumer_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !name_ok {
                return Err(bad(
                    "the consumer name must be 1-128 of a-z, A-Z, 0-9, _ . -",
                ));
            }
            if created.is_empty() || !created.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad(
                    "the creation timestamp after the consumer name must be digits",
                ));
            }
            Some(text.to_string())
        }
    };
    Ok(EventSource::Kinesis {
        arn: text.to_string(),
        region: arn.region,
        account_id: arn.account_id,
        stream_name: name.to_string(),
        stream_arn,
        consumer_arn,
    })
}

/// Where a stream mapping sends the record of a batch it gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FailureDestination {
    Sqs {
        arn: String,
        account_id: String,
        queue_name: String,
    },
    Sns {
        arn: String,
    },
    S3 {
        arn: String,
        bucket: String,
    },
}

impl FailureDestination {
    pub(crate) fn parse(text: &str) -> Result<Self, ArnError> {
        let arn = Arn::parse(text)?;
        match arn.service.as_str() {
            "sqs" => Ok(FailureDestination::Sqs {
                arn: text.to_string(),
                account_id: arn.account_id,
                queue_name: arn.resource,
            }),
            "sns" => Ok(FailureDestination::Sns {
                arn: text.to_string(),
            }),
            "s3" => Ok(FailureDestination::S3 {
                arn: text.to_string(),
                bucket: arn.resource,
            }),
            other => Err(ArnError::WrongService {
                arn: text.to_string(),
                service: other.to_string(),
                expected: "an SQS queue, SNS topic or S3 bucket ARN",
            }),
        }
    }

    pub(crate) fn arn(&self) -> &str {
        match self {
            FailureDestination::Sqs { arn, .. }
            | FailureDestination::Sns { arn }
            | FailureDestination::S3 { arn, .. } => arn,
        }
    }
}

/// Checks a Lambda `FunctionName`: a bare name, `name:qualifier`, a partial ARN
/// (`account:function:name`) or a full ARN, as the Invoke API accepts.
pub(crate) fn check_function_name(name: &str) -> Result<(), String> {
    fn valid_name(n: &str) -> bool {
        !n.is_empty()
            && n.len() <= 64
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    }
    fn valid_qualifier(q: &str) -> bool {
        !q.is_empty()
            && q.len() <= 128
            && (q == "$LATEST"
                || q.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    }
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 256 {
        return Err("must be at most 256 characters".into());
    }
    let parts: Vec<&str> = name.split(':').collect();
    let ok = match parts.as_slice() {
        [n] => valid_name(n),
        [n, q] => valid_name(n) && valid_qualifier(q),
        [acct, "function", n] => acct.len() == 12 && valid_name(n),
        [acct, "function", n, q] => acct.len() == 12 && valid_name(n) && valid_qualifier(q),
        ["arn", _, "lambda", _, _, "function", n] => valid_name(n),
        ["arn", _, "lambda", _, _, "function", n, q] => valid_name(n) && valid_qualifier(q),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a function name, `name:alias`, or Lambda function ARN"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_source_kind() {
        let sqs = EventSource::parse("arn:aws:sqs:us-east-1:123456789012:orders.fifo").unwrap();
        assert_eq!(sqs.kind(), SourceKind::Sqs);
        assert!(sqs.is_fifo_queue());
        let k = EventSource::parse("arn:aws:kinesis:eu-west-1:123456789012:stream/clicks").unwrap();
        assert_eq!(k.kind(), SourceKind::Kinesis);
        assert_eq!(k.region(), "eu-west-1");
        let d = EventSource::parse(
            "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2015-06-27T00:48:05.899",
        )
        .unwrap();
        assert_eq!(d.kind(), SourceKind::DynamoDbStreams);
    }

    #[test]
    fn consumer_arns_name_the_stream_and_the_consumer() {
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks/consumer/esmd:1700000000";
        let source = EventSource::parse(arn).unwrap();
        assert_eq!(source.kind(), SourceKind::Kinesis);
        assert_eq!(source.arn(), arn);
        assert_eq!(
            source.stream_arn(),
            "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
        );
        assert_eq!(source.consumer_arn(), Some(arn));
        assert_eq!(source.name(), "clicks");
        let plain =
            EventSource::parse("arn:aws:kinesis:us-east-1:123456789012:stream/clicks").unwrap();
        assert_eq!(plain.consumer_arn(), None);
        assert_eq!(plain.stream_arn(), plain.arn());
        for (bad, says) in [
            (
                "arn:aws:kinesis:us-east-1:123456789012:stream/clicks/consumer/esmd",
                "CREATION_TIMESTAMP",
            ),
            (
                "arn:aws:kinesis:us-east-1:123456789012:stream/clicks/consumer/esmd:abc",
                "digits",
            ),
            (
                "arn:aws:kinesis:us-east-1:123456789012:stream/clicks/reader/esmd:1",
                "/consumer/",
            ),
            (
                "arn:aws:kinesis:us-east-1:123456789012:stream/clicks/consumer/:1",
                "consumer name",
            ),
        ] {
            let err = EventSource::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn rejects_other_arns() {
        assert!(EventSource::parse("orders").is_err());
        assert!(EventSource::parse("arn:aws:sns:us-east-1:123456789012:topic").is_err());
        assert!(EventSource::parse("arn:aws:kinesis:us-east-1:123456789012:clicks").is_err());
        assert!(EventSource::parse("arn:aws:dynamodb:us-east-1:123456789012:table/T").is_err());
    }

    #[test]
    fn function_names() {
        for ok in [
            "process-orders",
            "process-orders:live",
            "f:$LATEST",
            "123456789012:function:f",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "arn:aws:lambda:us-east-1:123456789012:function:f:7",
        ] {
            assert!(check_function_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "has space", "a:b:c", &"x".repeat(65)] {
            assert!(check_function_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations() {
        assert!(matches!(
            FailureDestination::parse("arn:aws:s3:::my-bucket").unwrap(),
            FailureDestination::S3 { bucket, .. } if bucket == "my-bucket"
        ));
        assert!(FailureDestination::parse("arn:aws:lambda:us-east-1:1:function:f").is_err());
    }
}
