//! AWS's JSON shapes for event source mappings, and their translation to and from the
//! config file's `[[mapping]]` table. Pure: no IO, no state.
//!
//! A request becomes a mapping table with Terraform's names, which
//! [`Config::validate_mapping`] checks with exactly the rules of the config file; its
//! problems come back with AWS's field names (`batch_size` → `BatchSize`). A running
//! [`MappingConfig`] renders as AWS's `EventSourceMappingConfiguration`, defaults included,
//! as `GetEventSourceMapping` answers.

use serde_json::{Map, Value};

use super::error::ApiError;
use crate::config::{Config, ConfigProblem, MappingConfig, SourceSettings, StartingPosition};

/// How a request field's value is written in the mapping table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
    Bool,
    StrList,
    Timestamp,
    Filters,
    Scaling,
    Pollers,
    Metrics,
    Destination,
}

/// The request fields esmd supports: AWS's name, the config file's, the kind of value, and
/// whether `UpdateEventSourceMapping` may change it.
const FIELDS: [(&str, &str, Kind, bool); 18] = [
    ("EventSourceArn", "event_source_arn", Kind::Str, false),
    ("FunctionName", "function_name", Kind::Str, true),
    ("Enabled", "enabled", Kind::Bool, true),
    ("BatchSize", "batch_size", Kind::Int, true),
    (
        "MaximumBatchingWindowInSeconds",
        "maximum_batching_window_in_seconds",
        Kind::Int,
        true,
    ),
    (
        "FunctionResponseTypes",
        "function_response_types",
        Kind::StrList,
        true,
    ),
    ("FilterCriteria", "filter_criteria", Kind::Filters, true),
    ("ScalingConfig", "scaling_config", Kind::Scaling, true),
    (
        "ProvisionedPollerConfig",
        "provisioned_poller_config",
        Kind::Pollers,
        true,
    ),
    ("MetricsConfig", "metrics_config", Kind::Metrics, true),
    ("StartingPosition", "starting_position", Kind::Str, false),
    (
        "StartingPositionTimestamp",
        "starting_position_timestamp",
        Kind::Timestamp,
        false,
    ),
    (
        "ParallelizationFactor",
        "parallelization_factor",
        Kind::Int,
        true,
    ),
    (
        "BisectBatchOnFunctionError",
        "bisect_batch_on_function_error",
        Kind::Bool,
        true,
    ),
    (
        "MaximumRetryAttempts",
        "maximum_retry_attempts",
        Kind::Int,
        true,
    ),
    (
        "MaximumRecordAgeInSeconds",
        "maximum_record_age_in_seconds",
        Kind::Int,
        true,
    ),
    (
        "DestinationConfig",
        "destination_config",
        Kind::Destination,
        true,
    ),
    (
        "TumblingWindowInSeconds",
        "tumbling_window_in_seconds",
        Kind::Int,
        true,
    ),
];

/// Field names inside nested values, config → AWS (for problem paths and messages).
const NESTED: [(&str, &str); 9] = [
    ("filter", "Filters"),
    ("pattern", "Pattern"),
    ("maximum_concurrency", "MaximumConcurrency"),
    ("on_failure", "OnFailure"),
    ("destination_arn", "Destination"),
    ("uuid", "UUID"),
    ("minimum_pollers", "MinimumPollers"),
    ("maximum_pollers", "MaximumPollers"),
    ("metrics", "Metrics"),
];

/// Which operation a request document belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
}

/// Checks a request body's fields: known to AWS and supported by esmd, allowed in this
/// operation. `Tags` with no tags is accepted (some tools always send it).
pub(crate) fn check_fields(body: &Map<String, Value>, op: Operation) -> Result<(), ApiError> {
    for (name, value) in body {
        if value.is_null() || (name == "Tags" && value.as_object().is_some_and(Map::is_empty)) {
            continue;
        }
        match FIELDS.iter().find(|(api, ..)| api == name) {
            Some((_, _, _, updatable)) => {
                if op == Operation::Update && !updatable {
                    return Err(ApiError::invalid(format!(
                        "{name} cannot be changed by UpdateEventSourceMapping; delete the \
                         mapping and create it again"
                    )));
                }
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "{name} is not supported by esmd (it runs SQS, Kinesis and DynamoDB \
                     Streams mappings; see the README's table of API fields)"
                )))
            }
        }
    }
    Ok(())
}

/// Applies an `UpdateEventSourceMapping` body to a stored request document. An empty
/// `ScalingConfig`, an `OnFailure` without `Destination` and an empty `FilterCriteria`
/// remove the setting, as in AWS.
pub(crate) fn merge(
    stored: &Map<String, Value>,
    update: &Map<String, Value>,
) -> Map<String, Value> {
    let mut merged = stored.clone();
    for (name, value) in update {
        if value.is_null() || name == "UUID" {
            continue;
        }
        let removes = match name.as_str() {
            "ScalingConfig" => value.get("MaximumConcurrency").is_none_or(Value::is_null),
            "ProvisionedPollerConfig" => value
                .as_object()
                .is_none_or(|o| o.values().all(Value::is_null)),
            "DestinationConfig" => value
                .pointer("/OnFailure/Destination")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty),
            "FilterCriteria" => value
                .get("Filters")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty),
            _ => false,
        };
        if removes {
            merged.remove(name);
        } else {
            merged.insert(name.clone(), value.clone());
        }
    }
    merged
}

/// Validates a request document (after [`check_fields`]) as a mapping with this `uuid`.
pub(crate) fn to_mapping(doc: &Map<String, Value>, uuid: &str) -> Result<MappingConfig, ApiError> {
    let table = to_table(doc, uuid)?;
    Config::validate_mapping(&table).map_err(|problems| problems_error(&problems))
}

/// The mapping table the config file would hold for this request.
fn to_table(doc: &Map<String, Value>, uuid: &str) -> Result<toml::Value, ApiError> {
    let mut table = toml::Table::new();
    table.insert("uuid".into(), toml::Value::String(uuid.into()));
    for (api, config, kind, _) in FIELDS {
        let Some(value) = doc.get(api).filter(|v| !v.is_null()) else {
            continue;
        };
        let wrong = |want: &str| ApiError::invalid(format!("{api} must be {want}"));
        let converted = match kind {
            Kind::Str => {
                toml::Value::String(value.as_str().ok_or_else(|| wrong("a string"))?.into())
            }
            Kind::Int => toml::Value::Integer(value.as_i64().ok_or_else(|| wrong("an integer"))?),
            Kind::Bool => toml::Value::Boolean(value.as_bool().ok_or_else(|| wrong("a boolean"))?),
            Kind::StrList => toml::Value::Array(
                value
                    .as_array()
                    .ok_or_else(|| wrong("a list of strings"))?
                    .iter()
                    .map(|v| v.as_str().map(|s| toml::Value::String(s.into())))
                    .collect::<Option<_>>()
                    .ok_or_else(|| wrong("a list of strings"))?,
            ),
            Kind::Timestamp => timestamp(value).ok_or_else(|| wrong("a timestamp"))?,
            Kind::Filters => filters(value).ok_or_else(|| {
                wrong("an object {\"Filters\": [{\"Pattern\": \"<JSON text>\"}, ...]}")
            })?,
            Kind::Scaling => scaling(value)
                .ok_or_else(|| wrong("an object {\"MaximumConcurrency\": <integer>}"))?,
            Kind::Pollers => pollers(value).ok_or_else(|| {
                wrong("an object {\"MinimumPollers\": <integer>, \"MaximumPollers\": <integer>}")
            })?,
            Kind::Metrics => metrics(value)
                .ok_or_else(|| wrong("an object {\"Metrics\": [\"EventCount\", ...]}"))?,
            Kind::Destination => destination(value)
                .ok_or_else(|| wrong("an object {\"OnFailure\": {\"Destination\": \"<ARN>\"}}"))?,
        };
        table.insert(config.into(), converted);
    }
    Ok(toml::Value::Table(table))
}

/// A timestamp as the SDKs send it (epoch seconds) or as text (RFC 3339), as RFC 3339.
fn timestamp(value: &Value) -> Option<toml::Value> {
    let text = match value {
        Value::Number(n) => {
            let secs = n.as_f64()?;
            let millis = (secs * 1000.0).round() as i64;
            chrono::DateTime::from_timestamp_millis(millis)?.to_rfc3339()
        }
        Value::String(s) => s.clone(),
        _ => return None,
    };
    Some(toml::Value::String(text))
}

fn filters(value: &Value) -> Option<toml::Value> {
    let list = match value.get("Filters") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => v.as_array()?.clone(),
    };
    let mut out = Vec::new();
    for f in &list {
        let mut t = toml::Table::new();
        if let Some(p) = f.as_object()?.get("Pattern").filter(|p| !p.is_null()) {
            t.insert("pattern".into(), toml::Value::String(p.as_str()?.into()));
        }
        out.push(toml::Value::Table(t));
    }
    let mut t = toml::Table::new();
    t.insert("filter".into(), toml::Value::Array(out));
    Some(toml::Value::Table(t))
}

fn scaling(value: &Value) -> Option<toml::Value> {
    let mut t = toml::Table::new();
    if let Some(n) = value
        .as_object()?
        .get("MaximumConcurrency")
        .filter(|v| !v.is_null())
    {
        t.insert(
            "maximum_concurrency".into(),
            toml::Value::Integer(n.as_i64()?),
        );
    }
    Some(toml::Value::Table(t))
}

fn pollers(value: &Value) -> Option<toml::Value> {
    let mut t = toml::Table::new();
    for (api, config) in [
        ("MinimumPollers", "minimum_pollers"),
        ("MaximumPollers", "maximum_pollers"),
    ] {
        if let Some(n) = value.as_object()?.get(api).filter(|v| !v.is_null()) {
            t.insert(config.into(), toml::Value::Integer(n.as_i64()?));
        }
    }
    Some(toml::Value::Table(t))
}

fn metrics(value: &Value) -> Option<toml::Value> {
    let mut t = toml::Table::new();
    if let Some(list) = value.as_object()?.get("Metrics").filter(|v| !v.is_null()) {
        let names = list
            .as_array()?
            .iter()
            .map(|m| m.as_str().map(|s| toml::Value::String(s.into())))
            .collect::<Option<Vec<_>>>()?;
        t.insert("metrics".into(), toml::Value::Array(names));
    }
    Some(toml::Value::Table(t))
}

fn destination(value: &Value) -> Option<toml::Value> {
    let mut t = toml::Table::new();
    if let Some(on_failure) = value.as_object()?.get("OnFailure").filter(|v| !v.is_null()) {
        let mut inner = toml::Table::new();
        if let Some(arn) = on_failure
            .as_object()?
            .get("Destination")
            .filter(|v| !v.is_null())
        {
            inner.insert(
                "destination_arn".into(),
                toml::Value::String(arn.as_str()?.into()),
            );
        }
        t.insert("on_failure".into(), toml::Value::Table(inner));
    }
    Some(toml::Value::Table(t))
}

/// A config field path (`filter_criteria.filter[1].pattern`) with AWS's names
/// (`FilterCriteria.Filters[1].Pattern`).
pub(crate) fn api_path(path: &str) -> String {
    path.split('.')
        .map(|segment| {
            let (name, index) = match segment.find('[') {
                Some(at) => segment.split_at(at),
                None => (segment, ""),
            };
            let api = FIELDS
                .iter()
                .find(|(_, config, ..)| *config == name)
                .map(|(api, ..)| *api)
                .or_else(|| NESTED.iter().find(|(c, _)| *c == name).map(|(_, a)| *a))
                .unwrap_or(name);
            format!("{api}{index}")
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A message with every config field name replaced by AWS's (longest names first, so that
/// `starting_position_timestamp` is not read as `starting_position`).
fn api_message(message: &str) -> String {
    let mut names: Vec<(&str, &str)> = FIELDS.iter().map(|(a, c, ..)| (*c, *a)).collect();
    names.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
    let mut out = message.to_string();
    for (config, api) in names {
        out = out.replace(config, api);
    }
    out
}

/// Validation problems as one `InvalidParameterValueException`, each naming its field. A bad
/// filter pattern starts with AWS's own words ("Invalid filter pattern definition."), as
/// recorded in `test_sqs_invalid_event_filter`, so that code matching them still works.
fn problems_error(problems: &[ConfigProblem]) -> ApiError {
    let parts: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", api_path(&p.field), api_message(&p.message)))
        .collect();
    let filter = problems
        .iter()
        .any(|p| p.field.starts_with("filter_criteria"));
    let prefix = if filter {
        "Invalid filter pattern definition. "
    } else {
        ""
    };
    ApiError::invalid(format!("{prefix}{}", parts.join("; ")))
}

/// What the daemon knows about a mapping beyond its settings.
#[derive(Debug, Clone)]
pub(crate) struct Status<'a> {
    pub(crate) state: &'a str,
    pub(crate) last_modified: f64,
    pub(crate) last_processing_result: String,
}

/// The mapping's function as an ARN: a bare name or partial ARN is completed with the
/// source's region and account, as Lambda does.
pub(crate) fn function_arn(mapping: &MappingConfig) -> String {
    let name = &mapping.function_name;
    if name.starts_with("arn:") {
        return name.clone();
    }
    let (account, rest) = match name.split_once(":function:") {
        Some((account, rest)) => (account, rest),
        None => (mapping.source.account_id(), name.as_str()),
    };
    format!(
        "arn:aws:lambda:{}:{account}:function:{rest}",
        mapping.source.region()
    )
}

/// `EventSourceMappingConfiguration`, as Get, Create, Update, Delete and List answer it.
pub(crate) fn render(mapping: &MappingConfig, status: &Status<'_>) -> Value {
    let source = &mapping.source;
    let mut out = serde_json::json!({
        "UUID": mapping.uuid,
        "EventSourceArn": source.arn(),
        "FunctionArn": function_arn(mapping),
        "BatchSize": mapping.batch_size,
        "MaximumBatchingWindowInSeconds": mapping.batching_window.as_secs(),
        "FunctionResponseTypes": if mapping.report_batch_item_failures {
            vec!["ReportBatchItemFailures"]
        } else {
            Vec::new()
        },
        "LastModified": status.last_modified,
        "State": status.state,
        "EventSourceMappingArn": format!(
            "arn:aws:lambda:{}:{}:event-source-mapping:{}",
            source.region(),
            source.account_id(),
            mapping.uuid
        ),
    });
    if !mapping.metrics.is_empty() {
        out["MetricsConfig"] = serde_json::json!({ "Metrics": mapping.metrics });
    }
    if !mapping.filters.is_empty() {
        let filters: Vec<Value> = mapping
            .filters
            .patterns()
            .iter()
            .map(|p| serde_json::json!({ "Pattern": p.source() }))
            .collect();
        out["FilterCriteria"] = serde_json::json!({ "Filters": filters });
    }
    // AWS's recordings (LocalStack's snapshots): SQS mappings answer without
    // `LastProcessingResult` and with the reason `USER_INITIATED`; stream mappings carry
    // `LastProcessingResult` and the reason `User action`.
    match &mapping.settings {
        SourceSettings::Sqs(sqs) => {
            out["StateTransitionReason"] = "USER_INITIATED".into();
            if let Some(n) = sqs.maximum_concurrency {
                out["ScalingConfig"] = serde_json::json!({ "MaximumConcurrency": n });
            }
            if let Some(p) = sqs.pollers {
                out["ProvisionedPollerConfig"] = serde_json::json!({
                    "MinimumPollers": p.minimum,
                    "MaximumPollers": p.maximum,
                });
            }
        }
        SourceSettings::Stream(s) => {
            out["StateTransitionReason"] = "User action".into();
            out["LastProcessingResult"] = status.last_processing_result.clone().into();
            let (position, timestamp) = match &s.starting_position {
                StartingPosition::TrimHorizon => ("TRIM_HORIZON", None),
                StartingPosition::Latest => ("LATEST", None),
                StartingPosition::AtTimestamp(t) => {
                    ("AT_TIMESTAMP", Some(t.timestamp_millis() as f64 / 1000.0))
                }
            };
            out["StartingPosition"] = position.into();
            if let Some(t) = timestamp {
                out["StartingPositionTimestamp"] = t.into();
            }
            out["ParallelizationFactor"] = s.parallelization_factor.into();
            out["BisectBatchOnFunctionError"] = s.bisect_batch_on_function_error.into();
            out["MaximumRetryAttempts"] = s.maximum_retry_attempts.map_or(-1, i64::from).into();
            out["MaximumRecordAgeInSeconds"] = s
                .maximum_record_age
                .map_or(-1, |d| d.as_secs() as i64)
                .into();
            out["TumblingWindowInSeconds"] = s.tumbling_window.map_or(0, |d| d.as_secs()).into();
            out["DestinationConfig"] = match &s.on_failure {
                Some(d) => serde_json::json!({ "OnFailure": { "Destination": d.arn() } }),
                None => serde_json::json!({ "OnFailure": {} }),
            };
        }
    }
    out
}

#[cfg(test)]
mod tests;
