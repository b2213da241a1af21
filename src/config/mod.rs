//! The TOML configuration: its raw shape, AWS's validation rules, and the resolved settings
//! every other module consumes.
//!
//! Mapping field names follow Terraform's `aws_lambda_event_source_mapping` arguments, so a
//! user can move a mapping between Terraform and esmd without renaming anything. Validation
//! reproduces AWS's ranges, defaults and cross-field rules per source type
//! (`docs/esm-semantics.md` §1) and reports *every* problem at once, each naming its mapping
//! and field. Unknown fields are errors.

pub(crate) mod arn;
mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::filter::FilterSet;
pub(crate) use arn::{EventSource, FailureDestination, SourceKind};

/// The largest payload a synchronous Invoke accepts (6 MB, as Lambda counts it).
pub(crate) const MAX_INVOKE_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// A validated configuration: what `esmd run` acts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) state: StateConfig,
    pub(crate) http: HttpConfig,
    pub(crate) aws: AwsSettings,
    pub(crate) daemon: DaemonSettings,
    /// `[lambda_api]`: the event-source-mapping API; `None` (the default) leaves it off.
    pub(crate) lambda_api: Option<LambdaApiConfig>,
    pub(crate) mappings: Vec<MappingConfig>,
}

/// `[lambda_api]`: where the Lambda event-source-mapping API listens (`src/api`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LambdaApiConfig {
    pub(crate) listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StateBackend {
    /// One SQLite file (`path`), one instance.
    Sqlite,
    /// A DynamoDB lease table shared by every instance (docs/leases.md).
    DynamoDb(LeaseSettings),
}

/// `[state] backend = "dynamodb"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseSettings {
    /// The lease table; created on first start (on-demand billing) if missing.
    pub(crate) table: String,
    /// This instance's name in the table; `None`: hostname, pid and a random suffix.
    pub(crate) instance_id: Option<String>,
    /// How long a lease lasts without renewal (renewed every third of it).
    pub(crate) lease_duration: Duration,
}

/// The default `lease_duration_seconds`: a lease lapses 6 s after its last renewal (renewals
/// every 2 s), so a killed instance's shards are taken within 8 s (6 s and one 2 s discovery
/// period). The Kinesis Client Library's 10 s takes 10-30 s.
pub(crate) const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(6);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateConfig {
    pub(crate) backend: StateBackend,
    pub(crate) path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpConfig {
    /// `None` turns the admin endpoints off (`listen = ""`).
    pub(crate) listen: Option<SocketAddr>,
}

/// Overrides for the standard AWS configuration chain. Everything left unset comes from the
/// environment, the shared config files, web identity or IMDS, as in every AWS SDK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AwsSettings {
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) profile: Option<String>,
    /// Which client makes the per-batch calls (`[aws] client`).
    pub(crate) client: AwsClient,
}

/// `[aws] client`: the SDK (the default), or esmd's own signed client (`src/aws/lean/`) for
/// the calls made for every batch (SQS's ReceiveMessage and DeleteMessageBatch, Lambda's
/// Invoke), about a third of the SDK's CPU per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum AwsClient {
    #[default]
    Sdk,
    Lean,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DaemonSettings {
    /// How long in-flight invocations may run after SIGTERM before esmd gives up on them.
    pub(crate) shutdown_timeout: Duration,
    /// The async runtime's worker threads; `None`: one per CPU core; `Some(1)`: the
    /// current-thread scheduler on the main thread. Read at start only.
    pub(crate) worker_threads: Option<usize>,
}

/// One event source mapping, with AWS's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MappingConfig {
    /// The mapping's identity: the configured `uuid`, or a UUIDv5 derived from the source ARN
    /// and function name, so that it is stable across restarts (checkpoints are keyed by it).
    pub(crate) uuid: String,
    pub(crate) source: EventSource,
    pub(crate) function_name: String,
    pub(crate) enabled: bool,
    pub(crate) batch_size: usize,
    pub(crate) batching_window: Duration,
    pub(crate) report_batch_item_failures: bool,
    /// `filter_criteria`, compiled once by validation.
    pub(crate) filters: Arc<FilterSet>,
    /// `metrics_config.metrics` (`EventCount`, `ErrorCount`): accepted for compatibility and
    /// shown in `/mappings`; esmd's Prometheus metrics are on regardless.
    pub(crate) metrics: Vec<String>,
    /// The settings only this kind of source has.
    pub(crate) settings: SourceSettings,
    /// `esmd_http_target`: POST events to this plain HTTP endpoint instead of invoking
    /// Lambda (a sidecar's app). `function_name` still names the function in logs, metrics
    /// and failure records.
    pub(crate) http_target: Option<String>,
}

/// The settings of a mapping that belong to its kind of source. Validation builds the
/// variant that matches `event_source_arn`, so an SQS mapping never carries stream settings
/// and a stream mapping always has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceSettings {
    Sqs(SqsSettings),
    /// Kinesis and DynamoDB Streams.
    Stream(StreamSettings),
}

/// Settings that only SQS mappings have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqsSettings {
    /// `scaling_config.maximum_concurrency`; `None` means esmd's default
    /// ([`DEFAULT_SQS_MAXIMUM_CONCURRENCY`]).
    pub(crate) maximum_concurrency: Option<usize>,
    /// `provisioned_poller_config`: the pollers (concurrent long polls, each with its own
    /// batch in flight) never fall below `minimum` nor rise above `maximum`; `None` is esmd's
    /// on-demand scaling from one poller.
    pub(crate) pollers: Option<PollerRange>,
    /// `esmd_retry_backoff`: failed messages become visible again after
    /// base × 2^(receive count − 1), capped, instead of the queue's visibility timeout.
    pub(crate) retry_backoff: Option<RetryBackoff>,
}

/// `provisioned_poller_config` with AWS's SQS ranges: minimum 2-200 (default 2), maximum
/// 2-10,000 (default 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PollerRange {
    pub(crate) minimum: usize,
    pub(crate) maximum: usize,
}

/// esmd's exponential backoff for failed SQS messages (not an AWS feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryBackoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

/// SQS's longest visibility timeout: 12 hours.
pub(crate) const SQS_MAX_VISIBILITY: Duration = Duration::from_secs(43_200);

/// The concurrency ceiling of an SQS mapping without `scaling_config`. AWS's own ceiling is
/// 1,250 concurrent invocations; a self-hosted daemon usually shares a host with its function,
/// so esmd caps itself lower and lets users raise it explicitly (up to AWS's 1,000).
pub(crate) const DEFAULT_SQS_MAXIMUM_CONCURRENCY: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartingPosition {
    TrimHorizon,
    Latest,
    AtTimestamp(chrono::DateTime<chrono::Utc>),
}

/// Settings that only Kinesis and DynamoDB Streams mappings have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamSettings {
    pub(crate) starting_position: StartingPosition,
    pub(crate) parallelization_factor: usize,
    pub(crate) bisect_batch_on_function_error: bool,
    /// `None` is AWS's -1: retry until the record expires.
    pub(crate) maximum_retry_attempts: Option<u32>,
    /// `None` is AWS's -1: no age limit beyond the stream's retention.
    pub(crate) maximum_record_age: Option<Duration>,
    pub(crate) on_failure: Option<FailureDestination>,
    pub(crate) tumbling_window: Option<Duration>,
    /// `esmd_poll_interval_ms`: how often a caught-up shard is read (not an AWS setting).
    /// `None` is AWS's cadence: once a second for Kinesis, four times for DynamoDB Streams.
    pub(crate) poll_interval: Option<Duration>,
}

impl MappingConfig {
    /// The stream settings of a stream mapping (tests reach into them; production code
    /// matches on [`SourceSettings`]).
    #[cfg(test)]
    pub(crate) fn stream_settings(&self) -> Option<&StreamSettings> {
        match &self.settings {
            SourceSettings::Stream(s) => Some(s),
            SourceSettings::Sqs(_) => None,
        }
    }

    pub(crate) fn kind(&self) -> SourceKind {
        self.source.kind()
    }

    /// A short label for logs and error messages.
    pub(crate) fn label(&self) -> String {
        format!("{} -> {}", self.source.arn(), self.function_name)
    }
}

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigProblem {
    /// `mapping[2] (arn:aws:sqs:…)`, or `None` for top-level sections.
    pub(crate) mapping: Option<String>,
    /// The field path, e.g. `batch_size` or `filter_criteria.filter[1].pattern`.
    pub(crate) field: String,
    pub(crate) message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mapping {
            Some(mapping) => write!(f, "{mapping}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
}

impl ConfigError {
    #[cfg(test)]
    pub(crate) fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

impl Config {
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates a TOML document, collecting every problem.
    pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
        validate::parse_and_validate(text).map_err(ConfigError::Invalid)
    }

    /// Checks one mapping written as a `[[mapping]]` table, with the same rules as the
    /// file: the Lambda API (`src/api`) translates its requests into such a table.
    pub(crate) fn validate_mapping(
        value: &toml::Value,
    ) -> Result<MappingConfig, Vec<ConfigProblem>> {
        validate::validate_one(value)
    }

    pub(crate) fn enabled_mappings(&self) -> impl Iterator<Item = &MappingConfig> {
        self.mappings.iter().filter(|m| m.enabled)
    }
}
