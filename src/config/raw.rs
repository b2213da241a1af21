//! The configuration exactly as written in TOML. Every struct denies unknown fields, and
//! numbers are read as `i64` so that an out-of-range value gets esmd's own message (naming the
//! field and the allowed range) rather than a bare type error.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub state: Option<RawState>,
    pub http: Option<RawHttp>,
    pub aws: Option<RawAws>,
    pub daemon: Option<RawDaemon>,
    #[serde(default)]
    pub mapping: Vec<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAws {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub shutdown_timeout_seconds: Option<i64>,
}

/// One `[[mapping]]`, with Terraform's argument names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    pub uuid: Option<String>,
    pub event_source_arn: Option<String>,
    pub function_name: Option<String>,
    pub enabled: Option<bool>,
    pub batch_size: Option<i64>,
    pub maximum_batching_window_in_seconds: Option<i64>,
    pub function_response_types: Option<Vec<String>>,
    pub filter_criteria: Option<RawFilterCriteria>,
    pub scaling_config: Option<RawScalingConfig>,
    pub starting_position: Option<String>,
    pub starting_position_timestamp: Option<String>,
    pub parallelization_factor: Option<i64>,
    pub bisect_batch_on_function_error: Option<bool>,
    pub maximum_retry_attempts: Option<i64>,
    pub maximum_record_age_in_seconds: Option<i64>,
    pub destination_config: Option<RawDestinationConfig>,
    pub tumbling_window_in_seconds: Option<i64>,
    /// esmd's own extension (SQS only): exponential backoff for failed messages.
    pub esmd_retry_backoff: Option<RawRetryBackoff>,
    pub esmd_http_target: Option<String>,
    /// esmd's own extension (streams only): how often a caught-up shard is read.
    pub esmd_poll_interval_ms: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBackoff {
    pub base_seconds: Option<i64>,
    pub max_seconds: Option<i64>,
}

impl RawMapping {
    /// Every top-level mapping field, for reporting unknown ones individually.
    pub const FIELDS: [&'static str; 20] = [
        "uuid",
        "event_source_arn",
        "function_name",
        "enabled",
        "batch_size",
        "maximum_batching_window_in_seconds",
        "function_response_types",
        "filter_criteria",
        "scaling_config",
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
pub struct RawFilterCriteria {
    #[serde(default)]
    pub filter: Vec<RawFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub pattern: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScalingConfig {
    pub maximum_concurrency: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestinationConfig {
    pub on_failure: Option<RawOnFailure>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnFailure {
    pub destination_arn: Option<String>,
}
