//! The configuration exactly as written in TOML. Every struct denies unknown fields, and
//! numbers are read as `i64` so that an out-of-range value gets esmd's own message (naming the
//! field and the allowed range) rather than a bare type error.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) state: Option<RawState>,
    pub(crate) http: Option<RawHttp>,
    pub(crate) aws: Option<RawAws>,
    pub(crate) daemon: Option<RawDaemon>,
    pub(crate) lambda_api: Option<RawLambdaApi>,
    #[serde(default)]
    pub(crate) mapping: Vec<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawState {
    pub(crate) backend: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) table: Option<String>,
    pub(crate) instance_id: Option<String>,
    pub(crate) lease_duration_seconds: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    pub(crate) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAws {
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) client: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLambdaApi {
    pub(crate) listen: Option<String>,
    pub(crate) allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDaemon {
    pub(crate) shutdown_timeout_seconds: Option<i64>,
    pub(crate) worker_threads: Option<i64>,
}

/// One `[[mapping]]`, with Terraform's argument names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMapping {
    pub(crate) uuid: Option<String>,
    pub(crate) event_source_arn: Option<String>,
    pub(crate) function_name: Option<String>,
    pub(crate) enabled: Option<bool>,
    pub(crate) batch_size: Option<i64>,
    pub(crate) maximum_batching_window_in_seconds: Option<i64>,
    pub(crate) function_response_types: Option<Vec<String>>,
    pub(crate) filter_criteria: Option<RawFilterCriteria>,
    pub(crate) scaling_config: Option<RawScalingConfig>,
    pub(crate) provisioned_poller_config: Option<RawProvisionedPollerConfig>,
    pub(crate) metrics_config: Option<RawMetricsConfig>,
    pub(crate) starting_position: Option<String>,
    pub(crate) starting_position_timestamp: Option<String>,
    pub(crate) parallelization_factor: Option<i64>,
    pub(crate) bisect_batch_on_function_error: Option<bool>,
    pub(crate) maximum_retry_attempts: Option<i64>,
    pub(crate) maximum_record_age_in_seconds: Option<i64>,
    pub(crate) destination_config: Option<RawDestinationConfig>,
    pub(crate) tumbling_window_in_seconds: Option<i64>,
    /// esmd's own extension (SQS only): exponential backoff for failed messages.
    pub(crate) esmd_retry_backoff: Option<RawRetryBackoff>,
    pub(crate) esmd_http_target: Option<String>,
    /// esmd's own extension (streams only): how often a caught-up shard is read.
    pub(crate) esmd_poll_interval_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetryBackoff {
    pub(crate) base_seconds: Option<i64>,
    pub(crate) max_seconds: Option<i64>,
}

impl RawMapping {
    /// Every top-level mapping field, for reporting unknown ones individually.
    pub(crate) const FIELDS: [&'static str; 22] = [
        "uuid",
        "event_source_arn",
        "function_name",
        "enabled",
        "batch_size",
        "maximum_batching_window_in_seconds",
        "function_response_types",
        "filter_criteria",
        "scaling_config",
        "provisioned_poller_config",
        "metrics_config",
        "starting_position",
        "starting_position_timestamp",
        "parallelization_factor",
        "bisect_batch_on_function_error",
        "maximum_retry_attempts",
        "maximum_record_age_in_seconds",
        "destination_config",
        "tumbling_window_in_seconds",
        "esmd_retry_backoff",
        "esmd_http_target",
        "esmd_poll_interval_ms",
    ];
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilterCriteria {
    #[serde(default)]
    pub(crate) filter: Vec<RawFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
    pub(crate) pattern: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScalingConfig {
    pub(crate) maximum_concurrency: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvisionedPollerConfig {
    pub(crate) minimum_pollers: Option<i64>,
    pub(crate) maximum_pollers: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetricsConfig {
    pub(crate) metrics: Option<Vec<String>>,
}

/// Arguments of Terraform's `aws_lambda_event_source_mapping` that esmd does not run, with
/// why: refused by name, never ignored.
pub(crate) const UNSUPPORTED: [(&str, &str); 12] = [
    ("amazon_managed_kafka_event_source_config", "Amazon MSK sources are not supported"),
    ("self_managed_event_source", "self-managed Kafka sources are not supported"),
    ("self_managed_kafka_event_source_config", "self-managed Kafka sources are not supported"),
    ("topics", "Kafka sources are not supported"),
    ("queues", "Amazon MQ sources are not supported"),
    ("source_access_configurations", "Amazon MQ and Kafka sources are not supported"),
    ("document_db_event_source_config", "DocumentDB sources are not supported"),
    ("kms_key_arn", "esmd keeps filter criteria in its own config and state files, not encrypted with a KMS key; remove it"),
    ("logging_config", "esmd logs through RUST_LOG and --log-json (README, Logs); remove it"),
    ("tags", "esmd has no AWS resource to tag; remove them"),
    ("tags_all", "esmd has no AWS resource to tag; remove them"),
    ("region", "esmd takes the region from the event source ARN and [aws]; remove it"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDestinationConfig {
    pub(crate) on_failure: Option<RawOnFailure>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOnFailure {
    pub(crate) destination_arn: Option<String>,
}
