//! Kinesis mappings end to end: the real esmd binary, moto server, and a test-owned function.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Every record's data, in delivery order.
fn delivered(function: &FunctionServer) -> Vec<String> {
    function
        .calls()
        .iter()
        .flat_map(|c| c.records().iter().map(kinesis_data).collect::<Vec<_>>())
        .collect()
}

fn delivered_ok(function: &FunctionServer, ok: impl Fn(&Invocation) -> bool) -> Vec<String> {
    function
        .calls()
        .iter()
        .filter(|c| ok(c))
        .flat_map(|c| c.records().iter().map(kinesis_data).collect::<Vec<_>>())
        .collect()
}

fn mapping(stream: &str, extra: &str) -> String {
    format!(
        "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"consumer\"\nstarting_position = \"TRIM_HORIZON\"\n{extra}\n",
        stream_arn(stream)
    )
}

fn shard_view(esmd: &Esmd) -> Value {
    esmd.mappings()["mappings"][0]["shards"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_in_order_with_aws_shape_checkpoints_and_resumes_after_restart() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "orders", 1).await;
    let mut seqs = Vec::new();
    for i in 0..25 {
        seqs.push(put(&client, "orders", &format!("k{}", i % 4), &format!("r{i}")).await);
    }
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let mut esmd = Esmd::start(&moto, &function, &mapping("orders", "batch_size = 10"));
    eventually(
        Duration::from_secs(30),
        "25 records",
        Some(&esmd),
        || async { delivered(&function).len() >= 25 },
    )
    .await;
    let expected: Vec<String> = (0..25).map(|i| format!("r{i}")).collect();
    assert_eq!(delivered(&function), expected, "in order, once each");
    assert!(function.calls().iter().all(|c| c.records().len() <= 10));

    // AWS's record shape.
    let calls = function.calls();
    let first = &calls[0].records()[0];
    assert_eq!(first["eventSource"], "aws:kinesis");
    assert_eq!(first["eventVersion"], "1.0");
    assert_eq!(first["eventName"], "aws:kinesis:record");
    assert_eq!(first["kinesis"]["kinesisSchemaVersion"], "1.0");
    assert_eq!(first["kinesis"]["partitionKey"], "k0");
    assert_eq!(first["kinesis"]["sequenceNumber"], seqs[0].as_str());
    assert_eq!(
        first["eventID"],
        format!("shardId-000000000000:{}", seqs[0]).as_str()
    );
    assert!(first["kinesis"]["approximateArrivalTimestamp"].is_f64());
    assert_eq!(first["eventSourceARN"], stream_arn("orders").as_str());
    assert_eq!(first["awsRegion"], REGION);
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "kinesis",
            "eventSource",
            "eventVersion",
            "eventID",
            "eventName",
            "invokeIdentityArn",
            "awsRegion",
            "eventSourceARN"
        ]
    );

    esmd.wait_for(
        Duration::from_secs(10),
        "checkpoint at the last record",
        || shard_view(&esmd)["shardId-000000000000"]["checkpoint"] == seqs[24].as_str(),
    );
    let status = esmd.terminate(Duration::from_secs(20));
    assert!(status.success(), "clean exit: {status:?}");

    for i in 25..30 {
        put(&client, "orders", "k", &format!("r{i}")).await;
    }
    esmd.restart();
    eventually(Duration::from_secs(30), "5 more", Some(&esmd), || async {
        delivered(&function).len() >= 30
    })
    .await;
    esmd.wait_until_idle(Duration::from_secs(20));
    let expected: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    assert_eq!(
        delivered(&function),
        expected,
        "resumed after the checkpoint, no repeats"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_and_at_timestamp_skip_older_records() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "latest", 1).await;
    create_stream(&client, "stamp", 1).await;
    put(&client, "latest", "k", "old").await;
    put(&client, "stamp", "k", "old").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    put(&client, "stamp", "k", "new-stamp").await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let config = format!(
        "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"f\"\nstarting_position = \"LATEST\"\n\
         [[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"f\"\nstarting_position = \"AT_TIMESTAMP\"\nstarting_position_timestamp = \"{}\"\n",
        stream_arn("latest"),
        stream_arn("stamp"),
        cut.to_rfc3339()
    );
    let esmd = Esmd::start(&moto, &function, &config);
    esmd.wait_for(Duration::from_secs(20), "both shards reading", || {
        esmd.mappings()["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["shards"]["shardId-000000000000"]["status"] == "reading")
    });
    // Both iterators exist once each shard has answered reads.
    esmd.wait_until_idle(Duration::from_secs(20));
    put(&client, "latest", "k", "new-latest").await;
    eventually(
        Duration::from_secs(20),
        "new records",
        Some(&esmd),
        || async { delivered(&function).len() >= 2 },
    )
    .await;
    esmd.wait_until_idle(Duration::from_secs(20));
    let mut got = delivered(&function);
    got.sort();
    assert_eq!(got, ["new-latest", "new-stamp"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelization_keeps_order_per_key_with_batches_in_flight_together() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "par", 1).await;
    for i in 0..60 {
        put(
            &client,
            "par",
            &format!("key{}", i % 6),
            &format!("key{}:{i}", i % 6),
        )
        .await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok("").after(Duration::from_millis(300)));
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping("par", "batch_size = 5\nparallelization_factor = 4"),
    );
    eventually(
        Duration::from_secs(40),
        "60 records",
        Some(&esmd),
        || async { delivered(&function).len() >= 60 },
    )
    .await;
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for d in delivered(&function) {
        let (key, i) = d.split_once(':').unwrap();
        per_key
            .entry(key.into())
            .or_default()
            .push(i.parse().unwrap());
    }
    for (key, seen) in &per_key {
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, &sorted, "order within {key}");
        assert_eq!(seen.len(), 10, "{key} delivered once each");
    }
    // Some invocations overlapped in time.
    let calls = function.calls();
    let overlapped = calls
        .windows(2)
        .any(|w| w[1].started.duration_since(w[0].started) < Duration::from_millis(250));
    assert!(overlapped, "batches of one shard ran concurrently");
    let last =
        esmd.mappings()["mappings"][0]["shards"]["shardId-000000000000"]["checkpoint"].clone();
    assert!(last.is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_then_retries_exhausted_reach_the_sqs_destination() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "partial", 1).await;
    let dlq = Queue::create(&moto, "stream-dlq", &[]).await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(put(&client, "partial", "k", &format!("p{i}")).await);
    }
    let poison_seq = seqs[2].clone();
    let function = FunctionServer::start(move |inv, _| {
        let failed: Vec<Value> = inv
            .records()
            .iter()
            .filter(|r| kinesis_data(r) == "p2")
            .map(|r| serde_json::json!({"itemIdentifier": r["kinesis"]["sequenceNumber"]}))
            .collect();
        Reply::ok(serde_json::json!({"batchItemFailures": failed}).to_string())
    });
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            "partial",
            &format!(
                "batch_size = 10\nfunction_response_types = [\"ReportBatchItemFailures\"]\nmaximum_retry_attempts = 2\n\
                 destination_config = {{ on_failure = {{ destination_arn = \"{}\" }} }}",
                dlq.arn
            ),
        ),
    );
    eventually(
        Duration::from_secs(30),
        "destination record",
        Some(&esmd),
        || async { !dlq.peek_bodies().await.is_empty() },
    )
    .await;
    let record: Value = serde_json::from_str(&dlq.peek_bodies().await[0]).unwrap();
    let calls = function.calls();
    // The partial response moved the checkpoint to p2: from there it is a new batch, and a
    // limit of 2 allows it 3 invocations (AWS's recording, test_kinesis_report_batch_item_failures).
    assert_eq!(calls.len(), 4, "1 + 3 invocations of the batch from p2");
    assert_eq!(calls[0].records().len(), 5);
    assert_eq!(
        calls[1].records().len(),
        3,
        "retried from the lowest failure"
    );
    assert_eq!(
        record["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(
        record["requestContext"]["functionArn"],
        format!("arn:aws:lambda:{REGION}:123456789012:function:consumer").as_str()
    );
    assert_eq!(record["responseContext"]["statusCode"], 200);
    assert_eq!(record["responseContext"]["executedVersion"], "$LATEST");
    assert!(record["responseContext"]["functionError"].is_null());
    assert_eq!(record["version"], "1.0");
    let info = &record["KinesisBatchInfo"];
    assert_eq!(info["shardId"], "shardId-000000000000");
    assert_eq!(info["startSequenceNumber"], poison_seq.as_str());
    assert_eq!(info["endSequenceNumber"], seqs[4].as_str());
    assert_eq!(info["batchSize"], 3);
    assert_eq!(info["streamArn"], stream_arn("partial").as_str());
    assert!(info["approximateArrivalOfFirstRecord"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // The shard moved past the batch.
    esmd.wait_for(Duration::from_secs(10), "checkpoint past the batch", || {
        shard_view(&esmd)["shardId-000000000000"]["checkpoint"] == seqs[4].as_str()
    });
    let uuid = esmd.mappings()["mappings"][0]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let m = esmd.metric("esmd_on_failure_destination_delivered_events_total", &uuid);
    assert_eq!(m, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisection_isolates_one_poison_record_and_reports_it_to_sns() {
    bisection_with("").await;
}

/// A sidecar's profile: GetRecords and Invoke through esmd's own signed client (`[aws]
/// client = "lean"`), every task on one thread (`worker_threads = 1`, tokio's current-thread
/// scheduler) while checkpoints commit on a blocking thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisection_with_the_lean_client() {
    bisection_with(LEAN).await;
}

async fn bisection_with(aws: &str) {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "bisect", 1).await;
    let (topic_arn, inbox) = sns_inbox(&moto, "failures").await;
    let mut poison_seq = String::new();
    for i in 0..8 {
        let s = put(&client, "bisect", "k", &format!("b{i}")).await;
        if i == 5 {
            poison_seq = s;
        }
    }
    let is_poisoned = |inv: &Invocation| inv.records().iter().any(|r| kinesis_data(r) == "b5");
    let function = FunctionServer::start(move |inv, _| {
        if is_poisoned(inv) {
            Reply::function_error()
        } else {
            Reply::ok("")
        }
    });
    let config = mapping(
        "bisect",
        &format!(
            "batch_size = 8\nbisect_batch_on_function_error = true\nmaximum_retry_attempts = 0\n\
             destination_config = {{ on_failure = {{ destination_arn = \"{topic_arn}\" }} }}"
        ),
    );
    let esmd = Esmd::start(&moto, &function, &format!("{aws}{config}"));
    eventually(
        Duration::from_secs(30),
        "SNS delivery",
        Some(&esmd),
        || async { !inbox.peek_bodies().await.is_empty() },
    )
    .await;
    let record: Value = serde_json::from_str(&inbox.peek_bodies().await[0]).unwrap();
    let info = &record["KinesisBatchInfo"];
    assert_eq!(info["batchSize"], 1, "{record}");
    assert_eq!(info["startSequenceNumber"], poison_seq.as_str());
    assert_eq!(info["endSequenceNumber"], poison_seq.as_str());
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    let mut ok = delivered_ok(&function, |c| !is_poisoned(c));
    ok.sort();
    assert_eq!(ok, ["b0", "b1", "b2", "b3", "b4", "b6", "b7"]);
    let logs = esmd.logs();
    for service in ["lambda", "kinesis"] {
        let lean = logs.contains("lean client") && logs.contains(&format!("service=\"{service}\""));
        assert_eq!(lean, !aws.is_empty(), "the client asked for {service}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_with_retries_exhausted_goes_to_s3_with_the_payload() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "tos3", 1).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk_config(&moto.endpoint).await)
            .force_path_style(true)
            .build(),
    );
    s3.create_bucket()
        .bucket("failed-batches")
        .send()
        .await
        .unwrap();
    put(&client, "tos3", "k", "s0").await;
    let function = FunctionServer::start(|_, _| Reply::function_error());
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            "tos3",
            "maximum_retry_attempts = 1\ndestination_config = { on_failure = { destination_arn = \"arn:aws:s3:::failed-batches\" } }",
        ),
    );
    let uuid = esmd.mappings()["mappings"][0]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = format!("aws/lambda/{uuid}/shardId-000000000000/");
    let mut key = None;
    for _ in 0..100 {
        let listed = s3
            .list_objects_v2()
            .bucket("failed-batches")
            .prefix(&prefix)
            .send()
            .await
            .unwrap();
        if let Some(k) = listed.contents().first().and_then(|o| o.key()) {
            key = Some(k.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let key = key.unwrap_or_else(|| panic!("no S3 object\n{}", esmd.logs()));
    let body = s3
        .get_object()
        .bucket("failed-batches")
        .key(&key)
        .send()
        .await
        .unwrap();
    let bytes = body.body.collect().await.unwrap().into_bytes();
    let record: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 1);
    let payload: Value = serde_json::from_str(record["payload"].as_str().unwrap()).unwrap();
    assert_eq!(kinesis_data(&payload["Records"][0]), "s0");
    assert_eq!(function.calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_redelivers_only_in_flight_batches() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "crash", 1).await;
    for i in 0..120 {
        put(&client, "crash", &format!("k{}", i % 3), &format!("c{i}")).await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok("").after(Duration::from_millis(100)));
    let mut esmd = Esmd::start(&moto, &function, &mapping("crash", "batch_size = 10"));
    eventually(
        Duration::from_secs(30),
        "half delivered",
        Some(&esmd),
        || async { delivered(&function).len() >= 50 },
    )
    .await;
    esmd.kill9();
    let before = delivered(&function).len();
    esmd.restart();
    eventually(
        Duration::from_secs(40),
        "all delivered",
        Some(&esmd),
        || async {
            let got: std::collections::HashSet<String> = delivered(&function).into_iter().collect();
            got.len() >= 120
        },
    )
    .await;
    esmd.wait_until_idle(Duration::from_secs(20));
    let all = delivered(&function);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for d in &all {
        *counts.entry(d.clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), 120, "nothing lost");
    let duplicates = all.len() - 120;
    assert!(
        duplicates <= 10,
        "at most the in-flight batch again: {duplicates} duplicates ({before} before the kill)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_finishes_the_parent_before_the_children_start() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "split", 1).await;
    for i in 0..5 {
        put(&client, "split", "k", &format!("s{i}")).await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(&moto, &function, &mapping("split", ""));
    eventually(
        Duration::from_secs(20),
        "parent records",
        Some(&esmd),
        || async { delivered(&function).len() >= 5 },
    )
    .await;
    client
        .split_shard()
        .stream_name("split")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    esmd.wait_for(
        Duration::from_secs(30),
        "children reading after the parent ended",
        || {
            let v = shard_view(&esmd);
            v["shardId-000000000000"]["status"] == "ended"
                && v["shardId-000000000001"]["status"] == "reading"
                && v["shardId-000000000002"]["status"] == "reading"
        },
    );
    // moto never ends a closed shard's iterator; esmd notices the EndingSequenceNumber instead.
    // (LocalStack, like AWS, returns a null NextShardIterator.)
    if std::env::var("ESMD_TEST_ENDPOINT").is_err() {
        assert!(esmd
            .logs()
            .contains("closed shard read past its EndingSequenceNumber"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_maximum_age_are_reported_without_a_response_context() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "aging", 1).await;
    let dlq = Queue::create(&moto, "aging-dlq", &[]).await;
    put(&client, "aging", "k", "a0").await;
    let function = FunctionServer::start(|_, _| Reply::function_error());
    // Unlimited retries: only the record age (60 s, AWS's minimum) can end this.
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            "aging",
            &format!(
                "maximum_record_age_in_seconds = 60\nmaximum_retry_attempts = -1\n\
                 destination_config = {{ on_failure = {{ destination_arn = \"{}\" }} }}",
                dlq.arn
            ),
        ),
    );
    eventually(
        Duration::from_secs(120),
        "aged-out record",
        Some(&esmd),
        || async { !dlq.peek_bodies().await.is_empty() },
    )
    .await;
    let record: Value = serde_json::from_str(&dlq.peek_bodies().await[0]).unwrap();
    assert_eq!(record["requestContext"]["condition"], "RecordAgeExceeded");
    assert!(record.get("responseContext").is_none(), "{record}");
    assert!(function.calls().len() >= 2, "retried until the age passed");
}

fn state_count(call: &Invocation) -> u64 {
    call.event["state"]["count"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_carry_state_across_invocations_and_restarts_then_close() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "windowed", 1).await;
    // A function that counts the records of its window.
    let function = FunctionServer::start(|call, _| {
        let count = state_count(call) + call.records().len() as u64;
        Reply::ok(
            serde_json::json!({"state": {"count": count}, "batchItemFailures": []}).to_string(),
        )
    });
    let mut esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            "windowed",
            "batch_size = 2\ntumbling_window_in_seconds = 15\nparallelization_factor = 3",
        ),
    );
    let records = |calls: &[Invocation]| calls.iter().map(|c| c.records().len()).sum::<usize>();

    at_window_start(15).await;
    for i in 0..3 {
        put(&client, "windowed", "k", &format!("r{i}")).await;
    }
    eventually(
        Duration::from_secs(20),
        "3 records",
        Some(&esmd),
        || async { records(&function.calls()) >= 3 },
    )
    .await;
    // Restart inside the window: the state the last batch returned is resumed.
    assert!(esmd.terminate(Duration::from_secs(15)).success());
    esmd.restart();
    for i in 3..5 {
        put(&client, "windowed", "k", &format!("r{i}")).await;
    }
    eventually(
        Duration::from_secs(40),
        "the final invocation",
        Some(&esmd),
        || async {
            function
                .calls()
                .iter()
                .any(|c| c.event["isFinalInvokeForWindow"] == true)
        },
    )
    .await;
    put(&client, "windowed", "k", "r5").await;
    eventually(
        Duration::from_secs(20),
        "r5 in a new window",
        Some(&esmd),
        || async { delivered(&function).contains(&"r5".to_string()) },
    )
    .await;

    let calls = function.calls();
    let final_at = calls
        .iter()
        .position(|c| c.event["isFinalInvokeForWindow"] == true)
        .unwrap();
    let (window, rest) = calls.split_at(final_at);
    let last = &rest[0];
    // Every invocation of the window: same bounds, and the state of all records before it.
    let mut seen = 0u64;
    for call in window {
        assert_eq!(
            call.event["window"], last.event["window"],
            "{:?}",
            call.event
        );
        assert_eq!(state_count(call), seen, "state carried: {:?}", call.event);
        assert_eq!(call.event["isWindowTerminatedEarly"], false);
        assert_eq!(call.event["shardId"], "shardId-000000000000");
        assert_eq!(
            call.event["eventSourceARN"],
            stream_arn("windowed").as_str()
        );
        seen += call.records().len() as u64;
    }
    assert_eq!(seen, 5, "r0..r4 once each, across the restart");
    assert_eq!(
        window
            .iter()
            .flat_map(|c| c.records().iter().map(kinesis_data))
            .collect::<Vec<_>>(),
        (0..5).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    // The final invocation: no records, the whole window's state.
    assert!(last.records().is_empty());
    assert_eq!(state_count(last), 5);
    let start =
        chrono::DateTime::parse_from_rfc3339(last.event["window"]["start"].as_str().unwrap())
            .unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(last.event["window"]["end"].as_str().unwrap())
        .unwrap();
    assert_eq!((end - start).num_seconds(), 15);
    assert_eq!(start.timestamp() % 15, 0);
    // The next window starts fresh.
    let next = rest
        .iter()
        .find(|c| c.records().iter().any(|r| kinesis_data(r) == "r5"))
        .unwrap();
    assert_eq!(next.event["state"], serde_json::json!({}));
    let next_start =
        chrono::DateTime::parse_from_rfc3339(next.event["window"]["start"].as_str().unwrap())
            .unwrap();
    assert!(next_start >= end);
    assert_eq!(next.event["isFinalInvokeForWindow"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_windowed_response_without_state_fails_the_batch() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "stateless", 1).await;
    // The first answer lacks `state`: AWS counts that as a failed invocation and retries.
    let function = FunctionServer::start(|call, n| {
        if n == 0 {
            Reply::ok(r#"{"batchItemFailures":[]}"#)
        } else {
            let count = state_count(call) + call.records().len() as u64;
            Reply::ok(serde_json::json!({"state": {"count": count}}).to_string())
        }
    });
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping("stateless", "tumbling_window_in_seconds = 900"),
    );
    put(&client, "stateless", "k", "r0").await;
    eventually(Duration::from_secs(20), "a retry", Some(&esmd), || async {
        function.calls().len() >= 2
    })
    .await;
    let calls = function.calls();
    assert_eq!(calls[0].records().len(), 1);
    assert_eq!(calls[1].records().len(), 1, "the same record again");
    assert_eq!(
        calls[1].event["state"],
        serde_json::json!({}),
        "no state taken from a refused answer"
    );
    assert!(
        esmd.logs().contains("must contain a `state` object"),
        "the refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_cli_lists_moves_and_resets_and_is_refused_while_running() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    create_stream(&client, "replay", 1).await;
    let mut seqs = Vec::new();
    for i in 0..5 {
        seqs.push(put(&client, "replay", "k", &format!("r{i}")).await);
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let uuid = "5d1c8b0e-7a64-4f0e-9c3b-2a1d0e9f8c7b";
    let mut esmd = Esmd::start(
        &moto,
        &function,
        &mapping("replay", &format!("uuid = \"{uuid}\"")),
    );
    eventually(
        Duration::from_secs(30),
        "5 records",
        Some(&esmd),
        || async { delivered(&function).len() >= 5 },
    )
    .await;
    // The daemon holds the store: the CLI refuses to touch it.
    let (ok, _, err) = esmd.checkpoints(&["reset", "--mapping", uuid]);
    assert!(!ok && err.contains("in use by a running esmd"), "{err}");

    esmd.wait_for(Duration::from_secs(10), "checkpoint at r4", || {
        shard_view(&esmd)["shardId-000000000000"]["checkpoint"] == seqs[4].as_str()
    });
    assert!(esmd.terminate(Duration::from_secs(15)).success());
    let (ok, out, err) = esmd.checkpoints(&["list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(uuid) && out.contains("shardId-000000000000") && out.contains(&seqs[4]),
        "{out}"
    );

    // Rewind to r2: the next run replays r2, r3, r4.
    let (ok, out, err) = esmd.checkpoints(&[
        "set",
        "--mapping",
        uuid,
        "--shard",
        "shardId-000000000000",
        "--sequence-number",
        &seqs[2],
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("AT_SEQUENCE_NUMBER"), "{out}");
    esmd.restart();
    eventually(
        Duration::from_secs(30),
        "the replay",
        Some(&esmd),
        || async { delivered(&function).len() >= 8 },
    )
    .await;
    assert_eq!(delivered(&function)[5..], ["r2", "r3", "r4"]);
    esmd.wait_for(Duration::from_secs(10), "checkpoint back at r4", || {
        shard_view(&esmd)["shardId-000000000000"]["checkpoint"] == seqs[4].as_str()
    });
    assert!(esmd.terminate(Duration::from_secs(15)).success());

    // LATEST skips everything old; a reset goes back to starting_position (TRIM_HORIZON).
    let (ok, _, err) = esmd.checkpoints(&[
        "set",
        "--mapping",
        uuid,
        "--shard",
        "shardId-000000000000",
        "--latest",
    ]);
    assert!(ok, "{err}");
    esmd.restart();
    esmd.wait_until_idle(Duration::from_secs(20));
    assert_eq!(
        delivered(&function).len(),
        8,
        "nothing replayed from LATEST"
    );
    assert!(esmd.terminate(Duration::from_secs(15)).success());
    let (ok, out, err) = esmd.checkpoints(&["reset", "--mapping", uuid]);
    assert!(ok && out.contains("cleared 1"), "{out}{err}");
    esmd.restart();
    eventually(
        Duration::from_secs(30),
        "a full replay",
        Some(&esmd),
        || async { delivered(&function).len() >= 13 },
    )
    .await;
    assert_eq!(delivered(&function)[8..], ["r0", "r1", "r2", "r3", "r4"]);
    // Bad input is named.
    assert!(esmd.terminate(Duration::from_secs(15)).success());
    let (ok, _, err) = esmd.checkpoints(&["set", "--mapping", "nope", "--shard", "s", "--latest"]);
    assert!(
        !ok && err.contains("no stream mapping matches `nope`"),
        "{err}"
    );
}
