//! The settings only Kinesis and DynamoDB Streams mappings have, with AWS's ranges and
//! defaults (`docs/esm-semantics.md` §1).

use std::time::Duration;

use super::super::arn::{FailureDestination, SourceKind};
use super::super::raw::RawMapping;
use super::super::{StartingPosition, StreamSettings};
use super::Problems;

pub(super) fn validate_stream(
    m: &RawMapping,
    kind: SourceKind,
    p: &mut Problems<'_>,
) -> Option<StreamSettings> {
    let starting_position = starting_position(m, kind, p);
    if m.starting_position_timestamp.is_some()
        && m.starting_position.as_deref() != Some("AT_TIMESTAMP")
    {
        p.push(
            "starting_position_timestamp",
            "is only allowed when starting_position is AT_TIMESTAMP",
        );
    }
    let parallelization_factor = p.int_in(
        "parallelization_factor",
        m.parallelization_factor,
        1,
        1..=10,
    ) as usize;
    let retries = p.int_in(
        "maximum_retry_attempts",
        m.maximum_retry_attempts,
        -1,
        -1..=10_000,
    );
    let age = p.int_in(
        "maximum_record_age_in_seconds",
        m.maximum_record_age_in_seconds,
        -1,
        -1..=604_800,
    );
    if (0..60).contains(&age) {
        p.push(
            "maximum_record_age_in_seconds",
            format!("must be -1 (infinite) or between 60 and 604800 (got {age})"),
        );
    }
    let tumbling = p.int_in(
        "tumbling_window_in_seconds",
        m.tumbling_window_in_seconds,
        0,
        0..=900,
    );
    // 200 ms is Kinesis's limit of 5 GetRecords a second per shard, shared by all consumers.
    let poll_interval = m.esmd_poll_interval_ms.map(|ms| {
        Duration::from_millis(
            p.int_in("esmd_poll_interval_ms", Some(ms), 1000, 200..=10_000) as u64,
        )
    });
    let on_failure = on_failure(m, p);
    Some(StreamSettings {
        starting_position: starting_position?,
        parallelization_factor,
        bisect_batch_on_function_error: m.bisect_batch_on_function_error.unwrap_or(false),
        maximum_retry_attempts: (retries >= 0).then_some(retries as u32),
        maximum_record_age: (age >= 60).then(|| Duration::from_secs(age as u64)),
        on_failure,
        tumbling_window: (tumbling > 0).then(|| Duration::from_secs(tumbling as u64)),
        poll_interval,
    })
}

/// `starting_position` (required) and `starting_position_timestamp`.
fn starting_position(
    m: &RawMapping,
    kind: SourceKind,
    p: &mut Problems<'_>,
) -> Option<StartingPosition> {
    match m.starting_position.as_deref() {
        None => {
            p.push(
                "starting_position",
                format!("is required for {kind} mappings (TRIM_HORIZON or LATEST)"),
            );
            None
        }
        Some("TRIM_HORIZON") => Some(StartingPosition::TrimHorizon),
        Some("LATEST") => Some(StartingPosition::Latest),
        Some("AT_TIMESTAMP") if kind == SourceKind::DynamoDbStreams => {
            p.push(
                "starting_position",
                "AT_TIMESTAMP is not supported for DynamoDB Streams (use TRIM_HORIZON or LATEST)",
            );
            None
        }
        Some("AT_TIMESTAMP") => match m.starting_position_timestamp.as_deref() {
            None => {
                p.push(
                    "starting_position_timestamp",
                    "is required when starting_position is AT_TIMESTAMP",
                );
                None
            }
            Some(ts) => match chrono::DateTime::parse_from_rfc3339(ts) {
                Ok(t) if t > chrono::Utc::now() => {
                    p.push("starting_position_timestamp", "must not be in the future");
                    None
                }
                Ok(t) => Some(StartingPosition::AtTimestamp(t.with_timezone(&chrono::Utc))),
                Err(e) => {
                    p.push(
                        "starting_position_timestamp",
                        format!("`{ts}` is not an RFC 3339 timestamp: {e}"),
                    );
                    None
                }
            },
        },
        Some(other) => {
            p.push(
                "starting_position",
                format!("unknown value `{other}` (TRIM_HORIZON, LATEST or AT_TIMESTAMP)"),
            );
            None
        }
    }
}

/// `destination_config.on_failure.destination_arn`: SQS (not FIFO), SNS or S3.
fn on_failure(m: &RawMapping, p: &mut Problems<'_>) -> Option<FailureDestination> {
    match m
        .destination_config
        .as_ref()
        .and_then(|d| d.on_failure.as_ref())
        .and_then(|o| o.destination_arn.as_deref())
    {
        None | Some("") => None,
        Some(arn) => match FailureDestination::parse(arn) {
            Ok(FailureDestination::Sqs { queue_name, .. }) if queue_name.ends_with(".fifo") => {
                p.push(
                    "destination_config.on_failure.destination_arn",
                    "FIFO queues cannot be on-failure destinations",
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                p.push(
                    "destination_config.on_failure.destination_arn",
                    e.to_string(),
                );
                None
            }
        },
    }
}
