//! AWS's validation rules for mappings, collected into a list of [`ConfigProblem`]s.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod mapping;
mod stream;

use super::raw::{RawConfig, RawMapping, RawState};
use super::*;
use mapping::validate_mapping;

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
    let aws = validate_aws(&raw, &mut problems);
    let daemon = validate_daemon(&raw, &mut problems);
    let lambda_api = validate_lambda_api(&raw, &state, &mut problems);
    let mappings = validate_mappings(&raw, &mut problems);
    check_duplicates(&mappings, &mut problems);

    if problems.is_empty() {
        Ok(Config {
            state,
            http,
            aws,
            daemon,
            lambda_api,
            mappings,
        })
    } else {
        Err(problems)
    }
}

fn validate_aws(raw: &RawConfig, problems: &mut Vec<ConfigProblem>) -> AwsSettings {
    let mut aws = raw
        .aws
        .as_ref()
        .map_or_else(AwsSettings::default, |a| AwsSettings {
            region: a.region.clone(),
            endpoint_url: a.endpoint_url.clone(),
            profile: a.profile.clone(),
            client: AwsClient::Sdk,
        });
    match raw.aws.as_ref().and_then(|a| a.client.as_deref()) {
        None | Some("sdk") => {}
        Some("lean") => aws.client = AwsClient::Lean,
        Some(other) => problems.push(ConfigProblem {
            mapping: None,
            field: "aws.client".into(),
            message: format!("`{other}` is not a client: use \"sdk\" (the default) or \"lean\""),
        }),
    }
    if let Some(url) = &aws.endpoint_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            problems.push(ConfigProblem {
                mapping: None,
                field: "aws.endpoint_url".into(),
                message: format!("`{url}` must start with http:// or https://"),
            });
        }
    }
    aws
}

fn validate_daemon(raw: &RawConfig, problems: &mut Vec<ConfigProblem>) -> DaemonSettings {
    let mut daemon_problems = Problems {
        mapping: None,
        out: problems,
    };
    let shutdown_secs = daemon_problems.int_in(
        "daemon.shutdown_timeout_seconds",
        raw.daemon.as_ref().and_then(|d| d.shutdown_timeout_seconds),
        30,
        0..=3600,
    );
    // 0, the default, is one per CPU core (tokio's own default).
    let workers = daemon_problems.int_in(
        "daemon.worker_threads",
        raw.daemon.as_ref().and_then(|d| d.worker_threads),
        0,
        0..=1024,
    );
    DaemonSettings {
        shutdown_timeout: Duration::from_secs(shutdown_secs as u64),
        worker_threads: (workers > 0).then_some(workers as usize),
    }
}

/// Every `[[mapping]]`: unknown keys are reported one by one, then the rest is checked, so
/// that a typo does not hide the mapping's other problems.
fn validate_mappings(raw: &RawConfig, problems: &mut Vec<ConfigProblem>) -> Vec<MappingConfig> {
    let mut mappings = Vec::new();
    for (index, value) in raw.mapping.iter().enumerate() {
        let mut p = Problems {
            mapping: Some(mapping_label(index, value)),
            out: problems,
        };
        mappings.extend(check_mapping(value, &mut p));
    }
    mappings
}

/// One mapping table on its own (the Lambda API's requests), problems without a label.
pub(super) fn validate_one(value: &toml::Value) -> Result<MappingConfig, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut p = Problems {
        mapping: None,
        out: &mut problems,
    };
    match check_mapping(value, &mut p) {
        Some(mapping) if problems.is_empty() => Ok(mapping),
        _ => Err(problems),
    }
}

fn check_mapping(value: &toml::Value, p: &mut Problems<'_>) -> Option<MappingConfig> {
    let mut value = value.clone();
    if let Some(table) = value.as_table_mut() {
        let unknown: Vec<String> = table
            .keys()
            .filter(|k| !RawMapping::FIELDS.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in unknown {
            table.remove(&key);
            if let Some((_, why)) = super::raw::UNSUPPORTED.iter().find(|(f, _)| *f == key) {
                p.push(key, format!("is not supported by esmd: {why}"));
                continue;
            }
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
            return None;
        }
    };
    validate_mapping(&raw_mapping, p)
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
    let default = RawState::default();
    let section = raw.state.as_ref().unwrap_or(&default);
    let mut p = Problems {
        mapping: None,
        out: problems,
    };
    let backend = match section.backend.as_deref() {
        None | Some("sqlite") => {
            for (field, set) in [
                ("state.table", section.table.is_some()),
                ("state.instance_id", section.instance_id.is_some()),
                (
                    "state.lease_duration_seconds",
                    section.lease_duration_seconds.is_some(),
                ),
            ] {
                if set {
                    p.push(field, "is only used with backend = \"dynamodb\"");
                }
            }
            StateBackend::Sqlite
        }
        Some("dynamodb") => StateBackend::DynamoDb(validate_leases(section, &mut p)),
        Some(other) => {
            p.push(
                "state.backend",
                format!("unknown backend `{other}` (supported: \"sqlite\", \"dynamodb\")"),
            );
            StateBackend::Sqlite
        }
    };
    if section.path.is_some() && matches!(backend, StateBackend::DynamoDb(_)) {
        p.push("state.path", "is only used with backend = \"sqlite\"");
    }
    let path = section
        .path
        .clone()
        .unwrap_or_else(|| "esmd-state.db".into());
    if path.is_empty() {
        p.push("state.path", "must not be empty");
    }
    StateConfig {
        backend,
        path: PathBuf::from(path),
    }
}

/// `table` (required; DynamoDB's naming rules), `instance_id`, `lease_duration_seconds`.
fn validate_leases(section: &RawState, p: &mut Problems<'_>) -> LeaseSettings {
    let table = section.table.clone().unwrap_or_default();
    let valid_name = (3..=255).contains(&table.len())
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if section.table.is_none() {
        p.push(
            "state.table",
            "is required with backend = \"dynamodb\" (e.g. \"esmd-leases\")",
        );
    } else if !valid_name {
        p.push(
            "state.table",
            format!("`{table}` is not a DynamoDB table name (3-255 of a-z, A-Z, 0-9, _ - .)"),
        );
    }
    if let Some(id) = &section.instance_id {
        if id.is_empty() || id.len() > 256 {
            p.push("state.instance_id", "must be 1 to 256 characters");
        }
    }
    let default = DEFAULT_LEASE_DURATION.as_secs() as i64;
    let seconds = p.int_in(
        "state.lease_duration_seconds",
        section.lease_duration_seconds,
        default,
        3..=300,
    );
    LeaseSettings {
        table,
        instance_id: section.instance_id.clone(),
        lease_duration: Duration::from_secs(seconds as u64),
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

/// `[lambda_api]`: off unless `listen` is set. The API changes what runs, so an address
/// beyond loopback needs `allow_remote = true`. It keeps its mappings in the SQLite store.
fn validate_lambda_api(
    raw: &RawConfig,
    state: &StateConfig,
    problems: &mut Vec<ConfigProblem>,
) -> Option<LambdaApiConfig> {
    let section = raw.lambda_api.as_ref()?;
    let mut p = Problems {
        mapping: None,
        out: problems,
    };
    let Some(listen) = section.listen.as_deref().filter(|l| !l.is_empty()) else {
        if section.allow_remote.is_some() {
            p.push("lambda_api.allow_remote", "needs lambda_api.listen");
        }
        return None;
    };
    let Ok(addr) = listen.parse::<SocketAddr>() else {
        p.push(
            "lambda_api.listen",
            format!("`{listen}` is not an address like 127.0.0.1:9465"),
        );
        return None;
    };
    if !addr.ip().is_loopback() && section.allow_remote != Some(true) {
        p.push(
            "lambda_api.listen",
            format!(
                "`{listen}` is beyond loopback, and this API creates, changes and deletes \
                 mappings without authentication; set lambda_api.allow_remote = true to mean it"
            ),
        );
    }
    if matches!(state.backend, StateBackend::DynamoDb(_)) {
        p.push(
            "lambda_api.listen",
            "the mapping API keeps the mappings it creates in the SQLite state store; it is \
             not available with [state] backend = \"dynamodb\" (define shared mappings in each \
             instance's config file)",
        );
    }
    Some(LambdaApiConfig { listen: addr })
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
#[cfg(test)]
mod tests_fields;
