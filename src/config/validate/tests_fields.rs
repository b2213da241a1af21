//! Validation of the newer sections and fields: `[lambda_api]`, `provisioned_poller_config`,
//! `metrics_config`, Terraform arguments esmd refuses, and consumer ARNs.

use super::super::*;

const SQS: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
const KIN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks";

fn problems(text: &str) -> Vec<ConfigProblem> {
    match Config::parse(text) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems().to_vec(),
    }
}

#[test]
fn the_lambda_api_is_off_by_default_loopback_unless_allowed_and_needs_sqlite() {
    assert_eq!(Config::parse("").unwrap().lambda_api, None);
    let on = Config::parse("[lambda_api]\nlisten = \"127.0.0.1:9465\"").unwrap();
    assert_eq!(
        on.lambda_api.map(|a| a.listen.to_string()),
        Some("127.0.0.1:9465".into())
    );
    assert!(
        on.mappings.is_empty(),
        "no [[mapping]] is valid with the API on"
    );

    let p = problems("[lambda_api]\nlisten = \"0.0.0.0:9465\"");
    assert!(
        p.iter()
            .any(|p| p.field == "lambda_api.listen" && p.message.contains("allow_remote")),
        "{p:?}"
    );
    assert!(Config::parse("[lambda_api]\nlisten = \"0.0.0.0:9465\"\nallow_remote = true").is_ok());

    let p = problems("[lambda_api]\nlisten = \"localhost\"");
    assert!(p.iter().any(|p| p.field == "lambda_api.listen"), "{p:?}");
    let p = problems("[lambda_api]\nallow_remote = true");
    assert!(
        p.iter().any(|p| p.field == "lambda_api.allow_remote"),
        "{p:?}"
    );
    let p = problems(
        "[state]\nbackend = \"dynamodb\"\ntable = \"leases\"\n[lambda_api]\nlisten = \"127.0.0.1:9465\"",
    );
    assert!(
        p.iter()
            .any(|p| p.field == "lambda_api.listen" && p.message.contains("SQLite")),
        "{p:?}"
    );
}

#[test]
fn provisioned_pollers_follow_aws_sqs_ranges_and_the_concurrency_cap() {
    let sqs = |extra: &str| {
        format!("[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\n{extra}\n")
    };
    let config =
        Config::parse(&sqs("provisioned_poller_config = { minimum_pollers = 3 }")).unwrap();
    match &config.mappings[0].settings {
        SourceSettings::Sqs(s) => assert_eq!(
            s.pollers,
            Some(PollerRange {
                minimum: 3,
                maximum: 200
            })
        ),
        other => panic!("{other:?}"),
    }
    for (extra, field) in [
        ("provisioned_poller_config = { minimum_pollers = 1 }", "provisioned_poller_config.minimum_pollers"),
        ("provisioned_poller_config = { minimum_pollers = 201 }", "provisioned_poller_config.minimum_pollers"),
        ("provisioned_poller_config = { maximum_pollers = 10001 }", "provisioned_poller_config.maximum_pollers"),
        ("provisioned_poller_config = { minimum_pollers = 9, maximum_pollers = 4 }", "provisioned_poller_config.maximum_pollers"),
        ("provisioned_poller_config = { minimum_pollers = 9 }\nscaling_config = { maximum_concurrency = 5 }", "provisioned_poller_config.minimum_pollers"),
        ("provisioned_poller_config = { minimum_pollers = 2, extra = 1 }", "(mapping)"),
    ] {
        let p = problems(&sqs(extra));
        assert!(p.iter().any(|p| p.field == field), "{extra}: {p:?}");
    }
    let p = problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{KIN}\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\nprovisioned_poller_config = {{ minimum_pollers = 2 }}\n"
    ));
    assert!(
        p.iter()
            .any(|p| p.field == "provisioned_poller_config" && p.message.contains("SQS")),
        "{p:?}"
    );
}

#[test]
fn metrics_config_accepts_aws_metric_names_once() {
    let sqs = |metrics: &str| {
        format!("[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\nmetrics_config = {{ metrics = {metrics} }}\n")
    };
    let config = Config::parse(&sqs(r#"["EventCount", "ErrorCount"]"#)).unwrap();
    assert_eq!(config.mappings[0].metrics, ["EventCount", "ErrorCount"]);
    for (metrics, says) in [
        (r#"["KafkaMetrics"]"#, "Kafka"),
        (r#"["Events"]"#, "unknown metric"),
        (r#"["EventCount", "EventCount"]"#, "twice"),
    ] {
        let p = problems(&sqs(metrics));
        assert!(
            p.iter()
                .any(|p| p.field == "metrics_config.metrics" && p.message.contains(says)),
            "{metrics}: {p:?}"
        );
    }
}

#[test]
fn terraform_arguments_esmd_does_not_run_are_refused_by_name() {
    for (field, value) in [
        (
            "kms_key_arn",
            "\"arn:aws:kms:us-east-1:123456789012:key/k\"",
        ),
        ("tags", "{ team = \"a\" }"),
        ("topics", "[\"t\"]"),
        ("queues", "[\"q\"]"),
        ("logging_config", "{ system_log_level = \"INFO\" }"),
        (
            "document_db_event_source_config",
            "{ database_name = \"d\" }",
        ),
    ] {
        let p = problems(&format!(
            "[[mapping]]\nevent_source_arn = \"{SQS}\"\nfunction_name = \"f\"\n{field} = {value}\n"
        ));
        assert!(
            p.iter()
                .any(|p| p.field == field && p.message.starts_with("is not supported by esmd")),
            "{field}: {p:?}"
        );
    }
}

#[test]
fn a_consumer_arn_is_a_kinesis_source_and_a_malformed_one_is_explained() {
    let ok = Config::parse(&format!(
        "[[mapping]]\nevent_source_arn = \"{KIN}/consumer/esmd:1700000000\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\n"
    ))
    .unwrap();
    assert_eq!(ok.mappings[0].source.stream_arn(), KIN);
    assert!(ok.mappings[0].source.consumer_arn().is_some());
    let p = problems(&format!(
        "[[mapping]]\nevent_source_arn = \"{KIN}/consumer/esmd\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\n"
    ));
    assert!(
        p.iter()
            .any(|p| p.field == "event_source_arn" && p.message.contains("CREATION_TIMESTAMP")),
        "{p:?}"
    );
}
