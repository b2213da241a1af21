//! What esmd tells operators: per-mapping state and counters (served by `http/`), and the
//! setup of structured logs.
//!
//! Metric names mirror the ESM metrics AWS publishes (`PolledEventCount` becomes
//! `esmd_polled_events_total`, …). Labels are bounded: the mapping uuid, its function and its
//! source kind, never a receipt handle, message id or sequence number. Logs never carry
//! credentials or record payloads.

pub(crate) mod allocations;
pub(crate) mod events;
pub(crate) mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::config::MappingConfig;
pub(crate) use metrics::MappingMetrics;

/// A mapping's lifecycle state, named as AWS names them where AWS has a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum MappingState {
    /// Resolving its source (queue URL, stream) before the first poll.
    Enabling,
    /// Polling.
    Enabled,
    /// `enabled = false` in the config.
    Disabled,
    /// Cannot work as configured (missing queue or function, access denied); retrying slowly.
    Error,
    /// Draining after a shutdown or a removal.
    Disabling,
}

#[derive(Debug, Clone, Default, Serialize)]
struct StatusText {
    last_processing_result: String,
    last_error: Option<String>,
}

/// Where a shard worker is, as `/mappings` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShardState {
    #[default]
    Reading,
    Ended,
    /// Never read: `LATEST` started past its end.
    Skipped,
    Stopped,
    Failed,
}

/// What `/mappings` shows per shard.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct ShardView {
    pub(crate) status: ShardState,
    pub(crate) checkpoint: Option<String>,
    pub(crate) iterator_age_ms: i64,
    /// GetRecords calls answered since the shard's worker started.
    pub(crate) reads: u64,
    /// Who holds the shard's lease (this instance, with the embedded store).
    pub(crate) owner: Option<String>,
    /// When the checkpoint was last written (RFC 3339).
    pub(crate) checkpointed_at: Option<String>,
    pub(crate) outstanding_records: usize,
}

/// Everything `/mappings`, `/readyz` and `/metrics` know about one mapping.
#[derive(Debug)]
pub(crate) struct MappingStatus {
    pub(crate) uuid: String,
    pub(crate) event_source_arn: String,
    pub(crate) function_name: String,
    pub(crate) source_kind: &'static str,
    pub(crate) enabled: bool,
    /// `metrics_config.metrics`, as configured.
    metrics_config: Vec<String>,
    state: Mutex<MappingState>,
    text: Mutex<StatusText>,
    /// Set once the mapping has polled at least once since it started.
    polling: AtomicBool,
    pub(crate) metrics: MappingMetrics,
    /// Per-shard details for stream mappings, kept typed and serialised only when
    /// `/mappings` is asked for.
    shards: Mutex<std::collections::BTreeMap<String, ShardView>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned status lock only means a panic elsewhere; the data is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MappingStatus {
    pub(crate) fn new(mapping: &MappingConfig) -> Self {
        MappingStatus {
            uuid: mapping.uuid.clone(),
            event_source_arn: mapping.source.arn().to_string(),
            function_name: mapping.function_name.clone(),
            source_kind: match mapping.kind() {
                crate::config::SourceKind::Sqs => "sqs",
                crate::config::SourceKind::Kinesis => "kinesis",
                crate::config::SourceKind::DynamoDbStreams => "dynamodb",
            },
            enabled: mapping.enabled,
            metrics_config: mapping.metrics.clone(),
            state: Mutex::new(if mapping.enabled {
                MappingState::Enabling
            } else {
                MappingState::Disabled
            }),
            text: Mutex::new(StatusText {
                last_processing_result: "No records processed".into(),
                last_error: None,
            }),
            polling: AtomicBool::new(false),
            metrics: MappingMetrics::default(),
            shards: Mutex::new(Default::default()),
        }
    }

    pub(crate) fn state(&self) -> MappingState {
        *lock(&self.state)
    }

    pub(crate) fn set_state(&self, state: MappingState) {
        *lock(&self.state) = state;
    }

    /// Enters the error state with a reason; the mapping keeps retrying.
    pub(crate) fn set_error(&self, error: impl Into<String>) {
        let error = error.into();
        *lock(&self.state) = MappingState::Error;
        let mut text = lock(&self.text);
        text.last_processing_result = format!("PROBLEM: {error}");
        text.last_error = Some(error);
    }

    /// Marks the mapping as polling (it leaves any error state).
    pub(crate) fn set_polling(&self) {
        self.polling.store(true, Ordering::Relaxed);
        let mut state = lock(&self.state);
        if matches!(*state, MappingState::Enabling | MappingState::Error) {
            *state = MappingState::Enabled;
        }
    }

    pub(crate) fn is_polling(&self) -> bool {
        self.polling.load(Ordering::Relaxed) && self.state() == MappingState::Enabled
    }

    /// What `LastProcessingResult` reports.
    pub(crate) fn last_processing_result(&self) -> String {
        lock(&self.text).last_processing_result.clone()
    }

    pub(crate) fn record_result(&self, result: impl Into<String>) {
        lock(&self.text).last_processing_result = result.into();
    }

    pub(crate) fn record_problem(&self, problem: impl Into<String>) {
        let problem = problem.into();
        let mut text = lock(&self.text);
        text.last_processing_result = format!("PROBLEM: {problem}");
        text.last_error = Some(problem);
    }

    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let text = lock(&self.text).clone();
        let mut v = serde_json::json!({
            "uuid": self.uuid,
            "event_source_arn": self.event_source_arn,
            "function_name": self.function_name,
            "source": self.source_kind,
            "state": self.state(),
            "last_processing_result": text.last_processing_result,
            "last_error": text.last_error,
            "metrics": self.metrics.snapshot(),
            "metrics_config": self.metrics_config,
        });
        let shards = lock(&self.shards);
        if !shards.is_empty() {
            v["shards"] = serde_json::to_value(&*shards).unwrap_or_default();
        }
        v
    }

    /// Changes one shard's view and refreshes the mapping's iterator age (the furthest-behind
    /// shard).
    pub(crate) fn update_shard(&self, shard_id: &str, change: impl FnOnce(&mut ShardView)) {
        let mut shards = lock(&self.shards);
        change(shards.entry(shard_id.to_string()).or_default());
        let max_age = shards
            .values()
            .map(|v| v.iterator_age_ms)
            .max()
            .unwrap_or(0);
        self.metrics
            .iterator_age_ms
            .store(max_age, Ordering::Relaxed);
    }
}

/// All mappings of the running daemon.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    mappings: RwLock<Vec<Arc<MappingStatus>>>,
}

impl Registry {
    pub(crate) fn add(&self, status: Arc<MappingStatus>) {
        self.mappings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(status);
    }

    pub(crate) fn remove(&self, uuid: &str) {
        self.mappings
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|m| m.uuid != uuid);
    }

    pub(crate) fn all(&self) -> Vec<Arc<MappingStatus>> {
        self.mappings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ready once every enabled mapping is polling.
    pub(crate) fn ready(&self) -> bool {
        self.all()
            .iter()
            .filter(|m| m.enabled)
            .all(|m| m.is_polling())
    }
}

/// Initialises `tracing`: human-readable by default, JSON with `json = true`; levels from
/// `RUST_LOG` (default `info`).
/// Targets whose trace output contains request and response bodies or signed headers.
pub(crate) const WIRE_LOG_CAPS: [&str; 7] = [
    "aws_smithy_runtime=debug",
    "aws_smithy_runtime_api=debug",
    "aws_smithy_http_client=debug",
    "aws_sigv4=debug",
    "aws_runtime=debug",
    "hyper=info",
    "hyper_util=info",
];

/// Whether [`WIRE_LOG_CAPS`] must be added to the `RUST_LOG` directives.
pub(crate) fn wire_caps_needed(directives: &str, wire_logs_requested: bool) -> bool {
    !wire_logs_requested && directives.to_ascii_lowercase().contains("trace")
}

pub(crate) fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let directives = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    if directives.trim().is_empty() {
        filter = EnvFilter::new("info");
    }
    // The AWS SDK and hyper log whole HTTP requests and responses at trace level: message
    // bodies, record payloads, and the signed headers that carry a session token. They are
    // capped below trace unless the operator asks for wire logs with ESMD_LOG_WIRE=1. The caps
    // apply only when some directive asks for trace: a cap is itself a directive, and added to
    // `RUST_LOG=warn` it would turn the SDK's debug output on.
    if wire_caps_needed(
        &directives,
        std::env::var("ESMD_LOG_WIRE").as_deref() == Ok("1"),
    ) {
        for directive in WIRE_LOG_CAPS {
            if let Ok(d) = directive.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // Already initialised (tests): keep the existing subscriber.
    let _ = result;
}

#[cfg(test)]
mod logging_tests {
    use super::wire_caps_needed;

    #[test]
    fn wire_caps_apply_only_when_trace_is_asked_for() {
        assert!(!wire_caps_needed("", false));
        assert!(!wire_caps_needed("warn", false));
        assert!(!wire_caps_needed("info,esmd=debug", false));
        assert!(wire_caps_needed("trace", false));
        assert!(wire_caps_needed("info,aws_smithy_runtime=TRACE", false));
        assert!(!wire_caps_needed("trace", true));
    }
}
