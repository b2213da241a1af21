//! One mapping: the source ARN, the function, batching, response types and filters, and
//! the settings of its kind of source, with AWS's rules (`docs/esm-semantics.md` §1).

use std::sync::Arc;
use std::time::Duration;

use super::super::arn::{check_function_name, EventSource, SourceKind};
use super::super::raw::RawMapping;
use super::super::{MappingConfig, PollerRange, RetryBackoff, SourceSettings, SqsSettings};
use super::Problems;
use crate::filter::FilterSet;

pub(super) fn validate_mapping(m: &RawMapping, p: &mut Problems<'_>) -> Option<MappingConfig> {
    let source = event_source(m, p);
    let function_name = function_name(m, p);
    let report_batch_item_failures = validate_response_types(m, p);
    let filters = validate_filters(m, p);
    let metrics = validate_metrics(m, p);
    if let Some(uuid) = &m.uuid {
        if uuid::Uuid::parse_str(uuid).is_err() || uuid.len() != 36 {
            p.push(
                "uuid",
                format!("`{uuid}` is not a UUID (36 characters, 8-4-4-4-12 hex)"),
            );
        }
    }
    let source = source?;
    let kind = source.kind();
    let is_fifo = source.is_fifo_queue();

    let default_batch = if kind == SourceKind::Sqs { 10 } else { 100 };
    let batch_max = if is_fifo { 10 } else { 10_000 };
    let batch_size = p.int_in("batch_size", m.batch_size, default_batch, 1..=batch_max);
    let window = p.int_in(
        "maximum_batching_window_in_seconds",
        m.maximum_batching_window_in_seconds,
        0,
        0..=300,
    );

    let settings = match kind {
        SourceKind::Sqs => validate_sqs(m, is_fifo, batch_size, window, p),
        SourceKind::Kinesis | SourceKind::DynamoDbStreams => {
            if m.esmd_retry_backoff.is_some() {
                p.push(
                    "esmd_retry_backoff",
                    format!("is only supported for SQS mappings, not {kind}; streams use maximum_retry_attempts"),
                );
            }
            for (field, set) in [
                ("scaling_config", m.scaling_config.is_some()),
                (
                    "provisioned_poller_config",
                    m.provisioned_poller_config.is_some(),
                ),
            ] {
                if set {
                    p.push(
                        field,
                        format!("is only supported for SQS mappings, not {kind}"),
                    );
                }
            }
            super::stream::validate_stream(m, kind, p).map(SourceSettings::Stream)
        }
    };

    let http_target = http_target(m, p);
    let settings = settings?;
    let uuid = m.uuid.clone().unwrap_or_else(|| {
        let name = format!("{}\n{}", source.arn(), function_name);
        uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, name.as_bytes()).to_string()
    });
    Some(MappingConfig {
        uuid,
        source,
        function_name,
        enabled: m.enabled.unwrap_or(true),
        batch_size: batch_size as usize,
        batching_window: Duration::from_secs(window as u64),
        report_batch_item_failures,
        filters: Arc::new(filters),
        metrics,
        settings,
        http_target,
    })
}

fn event_source(m: &RawMapping, p: &mut Problems<'_>) -> Option<EventSource> {
    match m.event_source_arn.as_deref() {
        None => {
            p.push("event_source_arn", "is required");
            None
        }
        Some(arn) => match EventSource::parse(arn) {
            Ok(s) => Some(s),
            Err(e) => {
                p.push("event_source_arn", e.to_string());
                None
            }
        },
    }
}

fn function_name(m: &RawMapping, p: &mut Problems<'_>) -> String {
    match m.function_name.as_deref() {
        None => {
            p.push("function_name", "is required");
            String::new()
        }
        Some(f) => {
            if let Err(e) = check_function_name(f) {
                p.push("function_name", e);
            }
            f.to_string()
        }
    }
}

/// `esmd_http_target`: a plain http:// URL with a host (an app beside esmd, same pod or host).
fn http_target(m: &RawMapping, p: &mut Problems<'_>) -> Option<String> {
    let http_target = m.esmd_http_target.clone();
    if let Some(url) = &http_target {
        // Plain HTTP: the target is an app beside esmd (same pod or host).
        let scheme_ok = url.starts_with("http://");
        let host = url.split_once("://").map_or("", |(_, rest)| rest);
        if !scheme_ok || host.is_empty() || host.starts_with('/') {
            p.push(
                "esmd_http_target",
                format!("`{url}` is not an http:// URL with a host (https is not supported for sidecar targets)"),
            );
        }
    }
    http_target
}

/// The settings only SQS mappings have, and the SQS rules on batching.
fn validate_sqs(
    m: &RawMapping,
    is_fifo: bool,
    batch_size: i64,
    window: i64,
    p: &mut Problems<'_>,
) -> Option<SourceSettings> {
    for (field, set) in stream_only_fields(m) {
        if set {
            p.push(field, "is not supported for SQS mappings");
        }
    }
    if is_fifo && window > 0 {
        p.push(
            "maximum_batching_window_in_seconds",
            "is not supported for FIFO queues",
        );
    } else if batch_size > 10 && window == 0 {
        p.push(
            "maximum_batching_window_in_seconds",
            "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
        );
    }
    let maximum_concurrency = m
        .scaling_config
        .as_ref()
        .and_then(|s| s.maximum_concurrency)
        .map(|c| p.int_in("scaling_config.maximum_concurrency", Some(c), 2, 2..=1000) as usize);
    let pollers = validate_pollers(m, maximum_concurrency, p);
    let retry_backoff = m.esmd_retry_backoff.as_ref().map(|b| {
        let base = p.int_in(
            "esmd_retry_backoff.base_seconds",
            b.base_seconds,
            10,
            1..=43_200,
        );
        let max = p.int_in(
            "esmd_retry_backoff.max_seconds",
            b.max_seconds,
            900,
            1..=43_200,
        );
        if max < base {
            p.push(
                "esmd_retry_backoff.max_seconds",
                format!("must be at least base_seconds ({base})"),
            );
        }
        RetryBackoff {
            base: std::time::Duration::from_secs(base as u64),
            max: std::time::Duration::from_secs(max.max(base) as u64),
        }
    });
    if m.esmd_poll_interval_ms.is_some() {
        p.push(
            "esmd_poll_interval_ms",
            "is only supported for Kinesis and DynamoDB Streams mappings; SQS is long-polled",
        );
    }
    Some(SourceSettings::Sqs(SqsSettings {
        maximum_concurrency,
        pollers,
        retry_backoff,
    }))
}

/// `metrics_config.metrics`: AWS's values, each at most once. `KafkaMetrics` belongs to
/// Kafka sources.
fn validate_metrics(m: &RawMapping, p: &mut Problems<'_>) -> Vec<String> {
    let Some(config) = &m.metrics_config else {
        return Vec::new();
    };
    let metrics = config.metrics.clone().unwrap_or_default();
    for (i, metric) in metrics.iter().enumerate() {
        match metric.as_str() {
            "EventCount" | "ErrorCount" => {}
            "KafkaMetrics" => p.push(
                "metrics_config.metrics",
                "KafkaMetrics applies to Kafka sources only",
            ),
            other => p.push(
                "metrics_config.metrics",
                format!("unknown metric `{other}` (EventCount, ErrorCount)"),
            ),
        }
        if metrics[..i].contains(metric) {
            p.push(
                "metrics_config.metrics",
                format!("`{metric}` is listed twice"),
            );
        }
    }
    metrics
}

/// `provisioned_poller_config` with AWS's SQS ranges, and no more pollers than
/// `scaling_config.maximum_concurrency` allows.
fn validate_pollers(
    m: &RawMapping,
    maximum_concurrency: Option<usize>,
    p: &mut Problems<'_>,
) -> Option<PollerRange> {
    m.provisioned_poller_config.as_ref().map(|c| {
        let minimum = p.int_in(
            "provisioned_poller_config.minimum_pollers",
            c.minimum_pollers,
            2,
            2..=200,
        );
        let maximum = p.int_in(
            "provisioned_poller_config.maximum_pollers",
            c.maximum_pollers,
            200,
            2..=10_000,
        );
        if maximum < minimum {
            p.push(
                "provisioned_poller_config.maximum_pollers",
                format!("must be at least minimum_pollers ({minimum})"),
            );
        }
        if let Some(cap) = maximum_concurrency.filter(|cap| (minimum as usize) > *cap) {
            p.push(
                "provisioned_poller_config.minimum_pollers",
                format!(
                    "{minimum} pollers would exceed scaling_config.maximum_concurrency ({cap}); each poller has its own batch in flight"
                ),
            );
        }
        PollerRange {
            minimum: minimum as usize,
            maximum: maximum.max(minimum) as usize,
        }
    })
}

fn validate_response_types(m: &RawMapping, p: &mut Problems<'_>) -> bool {
    let types = m.function_response_types.as_deref().unwrap_or_default();
    if types.len() > 1 {
        p.push(
            "function_response_types",
            "accepts at most one value (\"ReportBatchItemFailures\")",
        );
    }
    for t in types {
        if t != "ReportBatchItemFailures" {
            p.push(
                "function_response_types",
                format!("unknown value `{t}` (the only one is \"ReportBatchItemFailures\")"),
            );
        }
    }
    types.iter().any(|t| t == "ReportBatchItemFailures")
}

fn validate_filters(m: &RawMapping, p: &mut Problems<'_>) -> FilterSet {
    let Some(criteria) = &m.filter_criteria else {
        return FilterSet::default();
    };
    if criteria.filter.len() > 5 {
        p.push(
            "filter_criteria.filter",
            format!(
                "at most 5 filters are allowed (got {})",
                criteria.filter.len()
            ),
        );
    }
    let mut patterns = Vec::new();
    for (i, f) in criteria.filter.iter().enumerate() {
        let field = format!("filter_criteria.filter[{i}].pattern");
        match &f.pattern {
            None => p.push(field, "is required"),
            Some(pattern) => match crate::filter::FilterPattern::parse(pattern) {
                Ok(compiled) => patterns.push(compiled),
                Err(e) => p.push(field, e.to_string()),
            },
        }
    }
    FilterSet::new(patterns)
}

/// The fields that only stream mappings accept, with whether each is set.
fn stream_only_fields(m: &RawMapping) -> [(&'static str, bool); 8] {
    [
        ("starting_position", m.starting_position.is_some()),
        (
            "starting_position_timestamp",
            m.starting_position_timestamp.is_some(),
        ),
        ("parallelization_factor", m.parallelization_factor.is_some()),
        (
            "bisect_batch_on_function_error",
            m.bisect_batch_on_function_error.is_some(),
        ),
        ("maximum_retry_attempts", m.maximum_retry_attempts.is_some()),
        (
            "maximum_record_age_in_seconds",
            m.maximum_record_age_in_seconds.is_some(),
        ),
        ("destination_config", m.destination_config.is_some()),
        (
            "tumbling_window_in_seconds",
            m.tumbling_window_in_seconds.is_some(),
        ),
    ]
}
