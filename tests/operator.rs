//! What an operator types: `--config` and `--json` before or after the subcommand, JSON from
//! `validate`, `checkpoints` and `status`, `esmd status` on a running daemon with a healthy and
//! a failing mapping, and the Grafana dashboard checked against the metrics `/metrics` exposes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn two_mappings(queue: &str, stream: &str) -> String {
    format!(
        "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"orders\"\n\
         [[mapping]]\nuuid = \"5d1c8b0e-7a64-4f0e-9c3b-2a1d0e9f8c7b\"\nevent_source_arn = \"{}\"\n\
         function_name = \"clicks\"\nstarting_position = \"TRIM_HORIZON\"\n",
        queue_arn(queue),
        stream_arn(stream)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_go_anywhere_and_json_outputs_parse() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "orders", &[]).await;
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "clicks", 1).await;
    let seq = put(&client, "clicks", "k", "c0").await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let mut esmd = Esmd::start(&moto, &function, &two_mappings(&queue.name, "clicks"));

    for args in [
        &["validate", "--config", "{config}"][..],
        &["--config", "{config}", "validate"],
        &["validate", "--json", "--config", "{config}"],
        &["--json", "validate", "-c", "{config}"],
    ] {
        let (code, out, err) = esmd.cli(args);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        if args.contains(&"--json") {
            let doc: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(doc["valid"], true);
            assert_eq!(doc["mappings"], 2);
            assert_eq!(doc["problems"], serde_json::json!([]));
        } else {
            assert!(out.contains("valid (2 mapping(s))"), "{out}");
        }
    }
    let (code, _, err) = esmd.cli(&["validate"]);
    assert_eq!(code, 2);
    assert!(err.contains("--config"), "{err}");

    // `status` on the live daemon, by --admin and through the config's [http].listen.
    esmd.wait_for(Duration::from_secs(30), "c0 checkpointed", || {
        esmd.mappings()["mappings"][1]["shards"]["shardId-000000000000"]["checkpoint"]
            == seq.as_str()
    });
    let admin = esmd.admin.clone();
    let (code, out, err) = esmd.cli(&["status", "--admin", &admin, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["healthy"], true);
    let shard = &doc["mappings"][1]["shards"]["shardId-000000000000"];
    assert!(
        shard["owner"].is_string() && shard["checkpointed_at"].is_string(),
        "{shard}"
    );
    let (code, out, _) = esmd.cli(&["--config", "{config}", "status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("shardId-000000000000") && out.contains("owner "),
        "{out}"
    );

    // The store is free once the daemon stops: `checkpoints list` in both flag positions.
    assert!(esmd.terminate(Duration::from_secs(15)).success());
    for args in [
        &["checkpoints", "list", "--config", "{config}", "--json"][..],
        &["--json", "--config", "{config}", "checkpoints", "list"],
    ] {
        let (code, out, err) = esmd.cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let doc: Value = serde_json::from_str(&out).unwrap();
        let mapping = &doc["mappings"][0];
        assert_eq!(mapping["uuid"], "5d1c8b0e-7a64-4f0e-9c3b-2a1d0e9f8c7b");
        assert_eq!(mapping["function_name"], "clicks");
        let shard = &mapping["shards"][0];
        assert_eq!(shard["shard_id"], "shardId-000000000000");
        assert_eq!(shard["status"], "reading");
        assert_eq!(
            shard["sequence_number"],
            seq.as_str(),
            "a string, never a float"
        );
        assert!(shard["age_seconds"].is_i64(), "{shard}");
    }
    let (code, out, _) = esmd.cli(&[
        "checkpoints",
        "set",
        "--mapping",
        "5d1c8b0e-7a64-4f0e-9c3b-2a1d0e9f8c7b",
        "--shard",
        "shardId-000000000000",
        "--trim-horizon",
        "--config",
        "{config}",
        "--json",
    ]);
    assert_eq!(code, 0);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["next_read"], "TRIM_HORIZON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_failing_mapping_and_exits_non_zero() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "present", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let config = format!(
        "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"f\"\n\
         [[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"f\"\n",
        queue.arn,
        queue_arn("missing-queue")
    );
    let esmd = Esmd::start(&moto, &function, &config);
    esmd.wait_for(Duration::from_secs(30), "the missing queue's error", || {
        esmd.mappings()["mappings"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["state"] == "Error"))
    });
    let (code, out, err) = esmd.cli(&["status", "--config", "{config}"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("Enabled") && out.contains(&queue.arn), "{out}");
    assert!(
        out.contains("Error") && out.contains("missing-queue"),
        "{out}"
    );
    assert!(out.contains("last error:"), "{out}");
    let (code, out, _) = esmd.cli(&["status", "--json", "--config", "{config}"]);
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["healthy"], false);
    // A daemon that is not there: exit 3.
    let (code, _, err) = esmd.cli(&["status", "--admin", "http://127.0.0.1:9"]);
    assert_eq!(code, 3, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exposed() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "orders", &[]).await;
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "clicks", 1).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(&moto, &function, &two_mappings(&queue.name, "clicks"));
    let (_, metrics) = esmd.get("/metrics");
    let exposed: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    assert!(exposed.contains("esmd_mapping_up"), "{metrics}");

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/esmd.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queried = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for panel in panels {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("esmd_"))
            {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| exposed.contains(*f))
                    .unwrap_or(name);
                queried.insert(family.to_string());
            }
        }
    }
    let missing: Vec<&String> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics esmd does not expose: {missing:?}"
    );
    for wanted in [
        "esmd_invocation_duration_seconds",
        "esmd_iterator_age_milliseconds",
        "esmd_sqs_backlog_messages",
        "esmd_sqs_pollers",
        "esmd_throttled_invocations_total",
        "esmd_leases_held",
    ] {
        assert!(queried.contains(wanted), "the dashboard shows {wanted}");
    }
}
