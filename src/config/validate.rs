//! AWS's validation rules for mappings, collected into a list of [`ConfigProblem`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::arn::{check_function_name, EventSource, FailureDestination, SourceKind};
use super::raw::{RawConfig, RawMapping};
use super::*;
use crate::filter::FilterSet;

/// Collects problems for one section or mapping.
struct Problems<'a> {
    mapping: Option<String>,
    out: &'a mut Vec<ConfigProblem>,
}

impl Problems<'_> {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.out.push(ConfigProblem {
            mapping: self.mapping.clone(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// Checks `value` (or `default`) lies in `range`, reporting the field otherwise.
    fn int_in(
        &mut self,
        field: &str,
        value: Option<i64>,
        default: i64,
        range: std::ops::RangeInclusive<i64>,
    ) -> i64 {
        let v = value.unwrap_or(default);
        if !range.contains(&v) {
            self.push(
                field,
                format!(
                    "must be between {} and {} (got {v})",
                    range.start(),
                    range.end()
                ),
            );
            return default;
        }
        v
    }
}

pub(super) fn parse_and_validate(text: &str) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            problems.push(ConfigProblem {
                mapping: None,
                field: "(file)".into(),
                message: err.to_string().trim().replace('\n', " "),
            });
            return Err(problems);
        }
    };

    let state = validate_state(&raw, &mut problems);
    let http = validate_http(&raw, &mut problems);
    let aws = raw
        .aws
        .as_ref()
        .map_or_else(AwsSettings::default, |a| AwsSettings {
            region: a.region.clone(),
            endpoint_url: a.endpoint_url.clone(),
            profile: a.profile.clone(),
        });
    if let Some(url) = &aws.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(ConfigProblem {
                mapping: None,
                field: "aws.endpoint_url".into(),
                message: format!("`{url}` must start with http:// or https://"),
            });
        }
    }
    let mut daemon_problems = Problems {
        mapping: None,
        out: &mut problems,
    };
    let shutdown_secs = daemon_problems.int_in(
        "daemon.shutdown_timeout_seconds",
        raw.daemon.as_ref().and_then(|d| d.shutdown_timeout_seconds),
        30,
        0..=3600,
    );
    let daemon = DaemonSettings {
        shutdown_timeout: Duration::from_secs(shutdown_secs as u64),
    };

    let mut mappings = Vec::new();
    for (index, value) in raw.mapping.iter().enumerate() {
        let label = mapping_label(index, value);
        let mut p = Problems {
            mapping: Some(label),
            out: &mut problems,
        };
        // Report unknown keys one by one, then check the rest, so that a typo does not hide
        // the mapping's other problems.
        let mut value = value.clone();
        if let Some(table) = value.as_table_mut() {
            let unknown: Vec<String> = table
                .keys()
                .filter(|k| !RawMapping::FIELDS.contains(&k.as_str()))
                .cloned()
                .collect();
            for key in unknown {
                table.remove(&key);
                let hint = closest_field(&key)
                    .map(|f| format!(" (did you mean `{f}`?)"))
                    .unwrap_or_default();
                p.push(key, format!("unknown field{hint}"));
            }
        }
        let raw_mapping: RawMapping = match value.try_into() {
            Ok(m) => m,
            Err(err) => {
                p.push("(mapping)", err.to_string().trim().replace('\n', " "));
                continue;
            }
        };
        if let Some(m) = validate_mapping(&raw_mapping, &mut p) {
            mappings.push(m);
        }
    }
    check_duplicates(&mappings, &mut problems);

    if problems.is_empty() {
        Ok(Config {
            state,
            http,
            aws,
            daemon,
            mappings,
        })
    } else {
        Err(problems)
    }
}

/// The known field that differs least from a misspelt one, if any is close.
fn closest_field(key: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let current = row[j + 1];
                row[j + 1] = (previous + usize::from(ca != *cb))
                    .min(row[j] + 1)
                    .min(current + 1);
                previous = current;
            }
        }
        row[b.len()]
    }
    RawMapping::FIELDS
        .iter()
        .map(|f| (distance(key, f), *f))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, f)| f)
}

fn mapping_label(index: usize, value: &toml::Value) -> String {
    let pick = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match pick("uuid").or_else(|| pick("event_source_arn")) {
        Some(id) => format!("mapping[{index}] ({id})"),
        None => format!("mapping[{index}]"),
    }
}

fn validate_state(raw: &RawConfig, problems: &mut Vec<ConfigProblem>) -> StateConfig {
    let section = raw.state.as_ref();
    let backend = match section.and_then(|s| s.backend.as_deref()) {
        None | Some("sqlite") => StateBackend::Sqlite,
        Some(other) => {
            problems.push(ConfigProblem {
                mapping: None,
                field: "state.backend".into(),
                message: format!("unknown backend `{other}` (supported: \"sqlite\")"),
            });
            StateBackend::Sqlite
        }
    };
    let path = section
        .and_then(|s| s.path.clone())
        .unwrap_or_else(|| "esmd-state.db".into());
    if path.is_empty() {
        problems.push(ConfigProblem {
            mapping: None,
            field: "state.path".into(),
            message: "must not be empty".into(),
        });
    }
    StateConfig {
        backend,
        path: PathBuf::from(path),
    }
}

fn validate_http(raw: &RawConfig, problems: &mut Vec<ConfigProblem>) -> HttpConfig {
    let listen = raw
        .http
        .as_ref()
        .and_then(|h| h.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:9464".into());
    if listen.is_empty() {
        return HttpConfig { listen: None };
    }
    match listen.parse::<SocketAddr>() {
        Ok(addr) => HttpConfig { listen: Some(addr) },
        Err(_) => {
            problems.push(ConfigProblem {
                mapping: None,
                field: "http.listen".into(),
                message: format!("`{listen}` is not an address like 127.0.0.1:9464"),
            });
            HttpConfig { listen: None }
        }
    }
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

fn validate_mapping(m: &RawMapping, p: &mut Problems<'_>) -> Option<MappingConfig> {
    let source = match m.event_source_arn.as_deref() {
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
    };
    let function_name = match m.function_name.as_deref() {
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
    };
    let report_batch_item_failures = validate_response_types(m, p);
    let filters = validate_filters(m, p);
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
        SourceKind::Sqs => {
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
                .map(|c| {
                    p.int_in("scaling_config.maximum_concurrency", Some(c), 2, 2..=1000) as usize
                });
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
                super::RetryBackoff {
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
                retry_backoff,
            }))
        }
        SourceKind::Kinesis | SourceKind::DynamoDbStreams => {
            if m.esmd_retry_backoff.is_some() {
                p.push(
                    "esmd_retry_backoff",
                    format!("is only supported for SQS mappings, not {kind}; streams use maximum_retry_attempts"),
                );
            }
            if m.scaling_config.is_some() {
                p.push(
                    "scaling_config",
                    format!("is only supported for SQS mappings, not {kind}"),
                );
            }
            validate_stream(m, kind, p).map(SourceSettings::Stream)
        }
    };

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
        settings,
        http_target,
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

fn validate_stream(
    m: &RawMapping,
    kind: SourceKind,
    p: &mut Problems<'_>,
) -> Option<StreamSettings> {
    let starting_position = match m.starting_position.as_deref() {
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
    };
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
    let on_failure = match m
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
    };
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

/// Two mappings may not share a uuid, nor the same source and function (AWS answers 409).
fn check_duplicates(mappings: &[MappingConfig], problems: &mut Vec<ConfigProblem>) {
    let mut by_uuid: HashMap<&str, usize> = HashMap::new();
    let mut by_pair: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, m) in mappings.iter().enumerate() {
        if let Some(first) = by_uuid.insert(&m.uuid, i) {
            problems.push(ConfigProblem {
                mapping: Some(format!("mapping ({})", m.label())),
                field: "uuid".into(),
                message: format!("uuid {} is already used by mapping #{first}", m.uuid),
            });
        }
        if by_pair
            .insert((m.source.arn(), m.function_name.as_str()), i)
            .is_some()
        {
            problems.push(ConfigProblem {
                mapping: Some(format!("mapping ({})", m.label())),
                field: "event_source_arn".into(),
                message: format!(
                    "a mapping of {} to {} already exists",
                    m.source.arn(),
                    m.function_name
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests;
