use super::super::*;

fn problems(text: &str) -> Vec<ConfigProblem> {
    match Config::parse(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

fn has(problems: &[ConfigProblem], field: &str) -> bool {
    problems.iter().any(|p| p.field == field)
}

const SQS: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
const KIN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks";
const DDB: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2024-01-01T00:00:00.000";

#[test]
fn the_contract_example_parses_with_defaults() {
    let cfg = Config::parse(&format!(
        r#"
[state]
backend = "sqlite"
path = "esmd-state.db"
[http]
listen = "127.0.0.1:9464"
[aws]
region = "us-east-1"
endpoint_url = "http://localhost:4566"
client = "lean"
[[mapping]]
event_source_arn = "{SQS}"
function_name = "process-orders"
batch_size = 10
"#
    ))
    .unwrap();
    let m = &cfg.mappings[0];
    assert_eq!(m.batch_size, 10);
    assert!(m.enabled);
    assert_eq!(m.batching_window, Duration::ZERO);
    assert!(!m.report_batch_item_failures);
    assert_eq!(m.uuid.len(), 36);
    assert_eq!(
        cfg.aws.endpoint_url.as_deref(),
        Some("http://localhost:4566")
    );
    assert_eq!(cfg.aws.client, AwsClient::Lean);
    // The derived uuid is stable.
    let again = Config::parse(&format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"process-orders\"\n"
    ))
    .unwrap();
    assert_eq!(again.mappings[0].uuid, m.uuid);
    assert_eq!(again.daemon.worker_threads, None, "one per core by default");
}

#[test]
fn worker_threads_are_zero_for_one_per_core_or_a_count() {
    let with = |n: &str| Config::parse(&format!("[daemon]\nworker_threads = {n}\n"));
    assert_eq!(with("1").unwrap().daemon.worker_threads, Some(1));
    assert_eq!(with("0").unwrap().daemon.worker_threads, None);
    for bad in ["-1", "5000"] {
        let e = with(bad).err().unwrap();
        assert!(has(e.problems(), "daemon.worker_threads"), "{bad}: {e}");
    }
}

#[test]
fn stream_defaults_match_aws() {
    let cfg = Config::parse(&format!(
        "[[mapping]]\nevent_source_arn = \"{KIN}\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\n"
    ))
    .unwrap();
    let m = &cfg.mappings[0];
    assert_eq!(m.batch_size, 100);
    let s = m.stream_settings().unwrap();
    assert_eq!(s.parallelization_factor, 1);
    assert_eq!(s.maximum_retry_attempts, None);
    assert_eq!(s.maximum_record_age, None);
    assert!(!s.bisect_batch_on_function_error);
    assert_eq!(s.tumbling_window, None);
}

#[test]
fn every_problem_is_listed_with_mapping_and_field() {
    let p = problems(&format!(
        r#"
[[mapping]]
event_source_arn = "{SQS}"
function_name = "f"
batch_size = 0
starting_position = "LATEST"
[[mapping]]
event_source_arn = "{KIN}"
function_name = "bad name"
parallelization_factor = 11
maximum_record_age_in_seconds = 30
"#
    ));
    assert!(has(&p, "batch_size"), "{p:?}");
    assert!(has(&p, "starting_position"), "{p:?}");
    assert!(has(&p, "function_name"), "{p:?}");
    assert!(has(&p, "parallelization_factor"), "{p:?}");
    assert!(has(&p, "maximum_record_age_in_seconds"), "{p:?}");
    assert!(p.iter().filter(|x| x.field == "batch_size").all(|x| x
        .mapping
        .as_deref()
        .unwrap()
        .starts_with("mapping[0]")));
    assert!(p
        .iter()
        .filter(|x| x.field == "parallelization_factor")
        .all(|x| x.mapping.as_deref().unwrap().starts_with("mapping[1]")));
}

#[test]
fn sqs_window_rule_and_fifo_limits() {
    let p = problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nbatch_size = 11\n"
    ));
    assert!(has(&p, "maximum_batching_window_in_seconds"));
    assert!(problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nbatch_size = 10000\nmaximum_batching_window_in_seconds = 1\n"
    ))
    .is_empty());
    let fifo = "arn:aws:sqs:us-east-1:123456789012:orders.fifo";
    assert!(has(
        &problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{fifo}\"\nfunction_name = \"f\"\nbatch_size = 11\nmaximum_batching_window_in_seconds = 1\n"
        )),
        "batch_size"
    ));
    assert!(has(
        &problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{fifo}\"\nfunction_name = \"f\"\nmaximum_batching_window_in_seconds = 1\n"
        )),
        "maximum_batching_window_in_seconds"
    ));
}

#[test]
fn scaling_config_range_and_applicability() {
    assert!(has(
        &problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nscaling_config = {{ maximum_concurrency = 1 }}\n"
        )),
        "scaling_config.maximum_concurrency"
    ));
    assert!(has(
        &problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{KIN}\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\nscaling_config = {{ maximum_concurrency = 5 }}\n"
        )),
        "scaling_config"
    ));
}

#[test]
fn starting_positions() {
    assert!(has(
        &problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{KIN}\"\nfunction_name = \"f\"\n"
        )),
        "starting_position"
    ));
    assert!(has(
        &problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{DDB}\"\nfunction_name = \"f\"\nstarting_position = \"AT_TIMESTAMP\"\nstarting_position_timestamp = \"2024-01-01T00:00:00Z\"\n"
        )),
        "starting_position"
    ));
    assert!(has(
        &problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{KIN}\"\nfunction_name = \"f\"\nstarting_position = \"AT_TIMESTAMP\"\n"
        )),
        "starting_position_timestamp"
    ));
    let ok = Config::parse(&format!(
        "[[mapping]]\nevent_source_arn = \"{KIN}\"\nfunction_name = \"f\"\nstarting_position = \"AT_TIMESTAMP\"\nstarting_position_timestamp = \"2024-01-01T00:00:00Z\"\n"
    ))
    .unwrap();
    assert!(matches!(
        ok.mappings[0].stream_settings().unwrap().starting_position,
        StartingPosition::AtTimestamp(_)
    ));
}

#[test]
fn retry_age_and_destination_rules() {
    let base = format!("[[mapping]]\nevent_source_arn = \"{DDB}\"\nfunction_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n");
    assert!(has(
        &problems(&format!("{base}maximum_retry_attempts = -2\n")),
        "maximum_retry_attempts"
    ));
    assert!(has(
        &problems(&format!("{base}maximum_retry_attempts = 10001\n")),
        "maximum_retry_attempts"
    ));
    assert!(problems(&format!(
        "{base}maximum_retry_attempts = 10000\nmaximum_record_age_in_seconds = 60\n"
    ))
    .is_empty());
    assert!(has(
        &problems(&format!("{base}maximum_record_age_in_seconds = 604801\n")),
        "maximum_record_age_in_seconds"
    ));
    assert!(has(
        &problems(&format!("{base}tumbling_window_in_seconds = 901\n")),
        "tumbling_window_in_seconds"
    ));
    for bad in [
        "ftp://app/events",
        "http://",
        "https://app/events",
        "app:8080",
    ] {
        assert!(
            has(
                &problems(&format!("{base}esmd_http_target = \"{bad}\"\n")),
                "esmd_http_target"
            ),
            "{bad}"
        );
    }
    assert!(problems(&format!(
        "{base}esmd_http_target = \"http://127.0.0.1:8080/events\"\n"
    ))
    .is_empty());
    assert!(has(
        &problems(&format!("{base}destination_config = {{ on_failure = {{ destination_arn = \"arn:aws:lambda:us-east-1:123456789012:function:x\" }} }}\n")),
        "destination_config.on_failure.destination_arn"
    ));
    let cfg = Config::parse(&format!(
        "{base}destination_config = {{ on_failure = {{ destination_arn = \"arn:aws:sns:us-east-1:123456789012:t\" }} }}\n"
    ))
    .unwrap();
    assert!(matches!(
        cfg.mappings[0].stream_settings().unwrap().on_failure,
        Some(FailureDestination::Sns { .. })
    ));
}

#[test]
fn stream_only_fields_are_refused_on_sqs() {
    let p = problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nbisect_batch_on_function_error = true\nmaximum_retry_attempts = 1\ndestination_config = {{ on_failure = {{ destination_arn = \"arn:aws:sqs:us-east-1:1:d\" }} }}\n"
    ));
    assert!(has(&p, "bisect_batch_on_function_error"));
    assert!(has(&p, "maximum_retry_attempts"));
    assert!(has(&p, "destination_config"));
}

#[test]
fn unknown_fields_are_errors() {
    let p = problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nbatchsize = 5\n"
    ));
    assert!(
        p.iter()
            .any(|x| x.field == "batchsize" && x.message.contains("did you mean `batch_size`")),
        "{p:?}"
    );
    let p = problems("[http]\nport = 1\n");
    assert!(p.iter().any(|x| x.message.contains("port")), "{p:?}");
}

#[test]
fn response_types_uuid_and_duplicates() {
    let p = problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nfunction_response_types = [\"Nope\"]\nuuid = \"not-a-uuid\"\n"
    ));
    assert!(has(&p, "function_response_types"));
    assert!(has(&p, "uuid"));
    let p = problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\n[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\n"
    ));
    assert!(has(&p, "uuid") && has(&p, "event_source_arn"), "{p:?}");
}

#[test]
fn filter_criteria_limits() {
    let mut text = format!("[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\n");
    for _ in 0..6 {
        text.push_str("[[mapping.filter_criteria.filter]]\npattern = '{\"body\":{\"a\":[1]}}'\n");
    }
    assert!(has(&problems(&text), "filter_criteria.filter"));
    let bad = format!(
        "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nfilter_criteria = {{ filter = [ {{ pattern = 'not json' }} ] }}\n"
    );
    assert!(has(&problems(&bad), "filter_criteria.filter[0].pattern"));
}

#[test]
fn bad_sections() {
    assert!(has(&problems("[http]\nlisten = \"nope\"\n"), "http.listen"));
    assert!(has(
        &problems("[state]\nbackend = \"redis\"\n"),
        "state.backend"
    ));
    assert!(has(
        &problems("[aws]\nendpoint_url = \"localhost:4566\"\n"),
        "aws.endpoint_url"
    ));
    assert!(has(&problems("[aws]\nclient = \"fast\"\n"), "aws.client"));
    assert!(has(&problems("this is not toml"), "(file)"));
}

#[test]
fn esmd_retry_backoff_is_sqs_only_and_bounded() {
    let ok = "[[mapping]]\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:q\"\nfunction_name = \"f\"\nesmd_retry_backoff = { base_seconds = 5, max_seconds = 600 }\n";
    let config = Config::parse(ok).unwrap();
    let SourceSettings::Sqs(sqs) = &config.mappings[0].settings else {
        panic!("an SQS mapping has SQS settings");
    };
    let backoff = sqs.retry_backoff.unwrap();
    assert_eq!(backoff.base, std::time::Duration::from_secs(5));
    assert_eq!(backoff.max, std::time::Duration::from_secs(600));

    let bad = "[[mapping]]\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:q\"\nfunction_name = \"f\"\nesmd_retry_backoff = { base_seconds = 50, max_seconds = 99999 }\n";
    let p = problems(bad);
    assert!(
        p.iter()
            .any(|p| p.field == "esmd_retry_backoff.max_seconds"),
        "{p:?}"
    );

    let stream = "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:123456789012:stream/s\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\nesmd_retry_backoff = { base_seconds = 5 }\n";
    let p = problems(stream);
    assert!(p.iter().any(|p| p.field == "esmd_retry_backoff"), "{p:?}");
}

#[test]
fn esmd_poll_interval_is_streams_only_and_bounded() {
    let kinesis = "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:123456789012:stream/s\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\n";
    let config = Config::parse(&format!("{kinesis}esmd_poll_interval_ms = 500\n")).expect("valid");
    assert_eq!(
        config.mappings[0]
            .stream_settings()
            .and_then(|s| s.poll_interval),
        Some(std::time::Duration::from_millis(500))
    );
    let default = Config::parse(kinesis).expect("valid");
    assert_eq!(
        default.mappings[0]
            .stream_settings()
            .and_then(|s| s.poll_interval),
        None
    );
    for bad in ["100", "20000"] {
        let p = problems(&format!("{kinesis}esmd_poll_interval_ms = {bad}\n"));
        assert!(
            p.iter()
                .any(|p| p.field == "esmd_poll_interval_ms" && p.message.contains("200")),
            "{bad}: {p:?}"
        );
    }
    let sqs = "[[mapping]]\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:q\"\nfunction_name = \"f\"\nesmd_poll_interval_ms = 500\n";
    assert!(problems(sqs)
        .iter()
        .any(|p| p.field == "esmd_poll_interval_ms"));
}

#[test]
fn the_dynamodb_state_backend_is_validated_like_any_field() {
    let mapping = "[[mapping]]\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:q\"\nfunction_name = \"f\"\n";
    let ok = Config::parse(&format!(
        "[state]\nbackend = \"dynamodb\"\ntable = \"esmd-leases\"\n{mapping}"
    ))
    .unwrap();
    let StateBackend::DynamoDb(leases) = &ok.state.backend else {
        panic!("{:?}", ok.state.backend)
    };
    assert_eq!(leases.table, "esmd-leases");
    assert_eq!(leases.lease_duration, DEFAULT_LEASE_DURATION);
    assert_eq!(leases.instance_id, None);

    let bad = |state: &str| problems(&format!("[state]\n{state}\n{mapping}"));
    let p = bad("backend = \"dynamodb\"");
    assert!(
        p.iter()
            .any(|p| p.field == "state.table" && p.message.contains("required")),
        "{p:?}"
    );
    let p = bad("backend = \"dynamodb\"\ntable = \"no spaces allowed\"\nlease_duration_seconds = 1\ninstance_id = \"\"\npath = \"x.db\"");
    for field in [
        "state.table",
        "state.lease_duration_seconds",
        "state.instance_id",
        "state.path",
    ] {
        assert!(p.iter().any(|p| p.field == field), "{field}: {p:?}");
    }
    let p = bad("table = \"t\"");
    assert!(
        p.iter()
            .any(|p| p.field == "state.table" && p.message.contains("dynamodb")),
        "{p:?}"
    );
    let p = bad("backend = \"etcd\"");
    assert!(
        p.iter().any(|p| p.message.contains("\"dynamodb\"")),
        "{p:?}"
    );
}
