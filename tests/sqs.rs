//! SQS mappings end to end: the real esmd binary, moto server, and a test-owned function.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn mapping(arn: &str, extra: &str) -> String {
    format!(
        "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"process-orders\"\n{extra}\n"
    )
}

fn uuid_of(esmd: &Esmd, arn: &str) -> String {
    esmd.mappings()["mappings"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["event_source_arn"] == arn))
        .and_then(|m| m["uuid"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_with_aws_record_shape_then_deletes() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "orders", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok("null"));
    let esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, "batch_size = 10"));
    assert_eq!(esmd.get("/healthz").0, 200);
    esmd.wait_for(Duration::from_secs(20), "readyz", || {
        esmd.get("/readyz").0 == 200
    });

    let mut ids = HashSet::new();
    for i in 0..5 {
        ids.insert(queue.send(&format!("{{\"order\":{i}}}")).await);
    }
    eventually(
        Duration::from_secs(20),
        "5 records delivered",
        Some(&esmd),
        || async { function.bodies().len() >= 5 },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "queue drained",
        Some(&esmd),
        || queue.is_empty(),
    )
    .await;

    let calls = function.calls();
    assert!(calls.iter().all(|c| c.function == "process-orders"));
    let records: Vec<Value> = calls.iter().flat_map(|c| c.records().clone()).collect();
    assert_eq!(records.len(), 5, "each message delivered once");
    let seen: HashSet<String> = records
        .iter()
        .map(|r| r["messageId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, ids);
    for r in &records {
        let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "messageId",
                "receiptHandle",
                "body",
                "attributes",
                "messageAttributes",
                "md5OfBody",
                "eventSource",
                "eventSourceARN",
                "awsRegion"
            ]
        );
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(r["eventSourceARN"], queue.arn.as_str());
        assert_eq!(r["awsRegion"], REGION);
        // No batching window and no attributes: AWS leaves the key out (its recordings in
        // LocalStack's test_lambda_integration_sqs.snapshot.json; `null` with a window).
        assert!(r.get("md5OfMessageAttributes").is_none());
        assert!(r["attributes"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
        let body = r["body"].as_str().unwrap();
        let md5: String = md5_hex(body.as_bytes());
        assert_eq!(r["md5OfBody"], md5.as_str());
        // Every record must also deserialize into the community event types.
        let _: aws_lambda_events::event::sqs::SqsMessage =
            serde_json::from_value(r.clone()).unwrap();
    }
    let uuid = uuid_of(&esmd, &queue.arn);
    esmd.wait_for(Duration::from_secs(5), "metrics", || {
        esmd.metric("esmd_deleted_events_total", &uuid) == 5
    });
    assert_eq!(esmd.metric("esmd_polled_events_total", &uuid), 5);
    assert_eq!(esmd.metric("esmd_invoked_events_total", &uuid), 5);
    assert_eq!(esmd.metric("esmd_failed_invoke_events_total", &uuid), 0);
    let m = &esmd.mappings()["mappings"][0];
    assert_eq!(m["state"], "Enabled");
    assert_eq!(m["last_processing_result"], "OK");
    assert_eq!(m["last_error"], Value::Null);
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The async runtime's worker threads of a running esmd (tokio names them).
fn runtime_workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_attributes_reach_the_function() {
    message_attributes_reach_the_function_with("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_attributes_reach_the_function_with_the_lean_client() {
    message_attributes_reach_the_function_with(LEAN).await;
}

async fn message_attributes_reach_the_function_with(aws: &str) {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let moto = Moto::start();
    let queue = Queue::create(&moto, "attrs", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let config = format!("{aws}{}", mapping(&queue.arn, ""));
    let esmd = Esmd::start(&moto, &function, &config);
    let sent = queue
        .client
        .send_message()
        .queue_url(&queue.url)
        .message_body("x")
        .message_attributes(
            "tenant",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("acme")
                .build()
                .unwrap(),
        )
        .message_attributes(
            "blob",
            MessageAttributeValue::builder()
                .data_type("Binary")
                .binary_value(aws_smithy_types::Blob::new(vec![0xde, 0xad, 0xbe, 0xef]))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "delivery", Some(&esmd), || async {
        !function.calls().is_empty()
    })
    .await;
    let calls = function.calls();
    let r = &calls[0].records()[0];
    assert_eq!(
        r["messageAttributes"]["tenant"],
        serde_json::json!({"stringValue":"acme","stringListValues":[],"binaryListValues":[],"dataType":"String"})
    );
    assert_eq!(r["messageAttributes"]["blob"]["binaryValue"], "3q2+7w==");
    assert_eq!(
        esmd.logs().contains("go through esmd's lean client"),
        !aws.is_empty(),
        "the client asked for"
    );
    let workers = runtime_workers(esmd.pid());
    if aws.is_empty() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(workers, cores, "one per core");
    } else {
        // One thread: the main thread runs every task (tokio's current-thread scheduler).
        assert_eq!(workers, 0, "[daemon] worker_threads = 1: no worker threads");
    }
    assert_eq!(
        r["md5OfMessageAttributes"].as_str(),
        sent.md5_of_message_attributes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_deletes_the_rest_and_redrive_moves_the_failure_to_the_dlq() {
    partial_batch_with("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_and_redrive_with_the_lean_client() {
    partial_batch_with(LEAN).await;
}

async fn partial_batch_with(aws: &str) {
    let moto = Moto::start();
    let (queue, dlq) = Queue::with_dlq(&moto, "partial", 1, 2).await;
    let function = FunctionServer::start(|inv, _| {
        let failures: Vec<Value> = inv
            .records()
            .iter()
            .filter(|r| r["body"] == "poison")
            .map(|r| serde_json::json!({"itemIdentifier": r["messageId"]}))
            .collect();
        Reply::ok(serde_json::json!({"batchItemFailures": failures}).to_string())
    });
    let config = format!(
        "{aws}{}",
        mapping(
            &queue.arn,
            "function_response_types = [\"ReportBatchItemFailures\"]",
        )
    );
    let esmd = Esmd::start(&moto, &function, &config);
    for body in ["ok-1", "poison", "ok-2"] {
        queue.send(body).await;
    }
    eventually(
        Duration::from_secs(30),
        "poison in the DLQ",
        Some(&esmd),
        || async { dlq.peek_bodies().await == vec!["poison".to_string()] },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "source queue empty",
        Some(&esmd),
        || queue.is_empty(),
    )
    .await;
    let bodies = function.bodies();
    assert_eq!(
        bodies.iter().filter(|b| *b == "ok-1").count(),
        1,
        "{bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| *b == "ok-2").count(),
        1,
        "{bodies:?}"
    );
    assert_eq!(
        bodies.iter().filter(|b| *b == "poison").count(),
        2,
        "maxReceiveCount=2: {bodies:?}"
    );
    let uuid = uuid_of(&esmd, &queue.arn);
    assert_eq!(esmd.metric("esmd_deleted_events_total", &uuid), 2);
    assert_eq!(esmd.metric("esmd_failed_invoke_events_total", &uuid), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_response_is_ignored_without_the_flag() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "noflag", &[("VisibilityTimeout", "1")]).await;
    let function = FunctionServer::start(|inv, _| {
        let failures: Vec<Value> = inv
            .records()
            .iter()
            .map(|r| serde_json::json!({"itemIdentifier": r["messageId"]}))
            .collect();
        Reply::ok(serde_json::json!({"batchItemFailures": failures}).to_string())
    });
    let esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, ""));
    queue.send("a").await;
    queue.send("b").await;
    eventually(
        Duration::from_secs(20),
        "queue drained",
        Some(&esmd),
        || async { function.bodies().len() >= 2 && queue.is_empty().await },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(function.bodies().len(), 2, "nothing redelivered");
}

async fn assert_whole_batch_fails(name: &str, reply_body: &'static str) {
    let moto = Moto::start();
    let queue = Queue::create(&moto, name, &[("VisibilityTimeout", "1")]).await;
    let function = FunctionServer::start(move |_, index| {
        if index == 0 {
            Reply::ok(reply_body)
        } else {
            Reply::ok("{}")
        }
    });
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            &queue.arn,
            "function_response_types = [\"ReportBatchItemFailures\"]",
        ),
    );
    queue.send("a").await;
    eventually(
        Duration::from_secs(20),
        "redelivery then success",
        Some(&esmd),
        || async { function.calls().len() >= 2 && queue.is_empty().await },
    )
    .await;
    let calls = function.calls();
    assert_eq!(calls[0].bodies(), ["a"]);
    assert_eq!(calls[1].bodies(), ["a"], "the whole batch came back");
    assert_eq!(
        calls[1].records()[0]["attributes"]["ApproximateReceiveCount"],
        "2"
    );
    let uuid = uuid_of(&esmd, &queue.arn);
    assert_eq!(esmd.metric("esmd_failed_invoke_events_total", &uuid), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_item_identifier_fails_the_whole_batch() {
    assert_whole_batch_fails(
        "badid",
        r#"{"batchItemFailures":[{"itemIdentifier":"not-a-message-id"}]}"#,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_item_identifier_fails_the_whole_batch() {
    assert_whole_batch_fails("noid", r#"{"batchItemFailures":[{"foo":"x"}]}"#).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_json_response_fails_the_whole_batch() {
    assert_whole_batch_fails("notjson", "this is not json").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_error_leaves_messages_for_the_queue_redrive() {
    let moto = Moto::start();
    let (queue, dlq) = Queue::with_dlq(&moto, "fnerr", 1, 1).await;
    let function = FunctionServer::start(|_, _| Reply::function_error());
    let esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, ""));
    queue.send("doomed").await;
    eventually(
        Duration::from_secs(30),
        "message in the DLQ",
        Some(&esmd),
        || async { dlq.peek_bodies().await == vec!["doomed".to_string()] },
    )
    .await;
    assert_eq!(function.bodies(), ["doomed"], "one receive, one invocation");
    let uuid = uuid_of(&esmd, &queue.arn);
    assert_eq!(esmd.metric("esmd_deleted_events_total", &uuid), 0);
    assert_eq!(esmd.metric("esmd_failed_invoke_events_total", &uuid), 1);
    let m = &esmd.mappings()["mappings"][0];
    assert!(
        m["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("function error"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rie_style_errors_without_the_header_are_function_errors() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "rie", &[("VisibilityTimeout", "1")]).await;
    let function = FunctionServer::start(|_, index| match index {
        0 => Reply::ok(r#"{"errorMessage":"boom","errorType":"Error","stackTrace":[]}"#),
        1 => Reply::ok("Task timed out after 3.00 seconds"),
        _ => Reply::ok("null"),
    });
    let esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, ""));
    queue.send("m").await;
    eventually(
        Duration::from_secs(20),
        "third attempt succeeds",
        Some(&esmd),
        || async { function.calls().len() >= 3 && queue.is_empty().await },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_are_retried_with_backoff_within_the_visibility_timeout() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "throttle", &[("VisibilityTimeout", "30")]).await;
    let function = FunctionServer::start(|_, index| {
        if index < 3 {
            Reply::status(
                429,
                r#"{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}"#,
            )
        } else {
            Reply::ok("")
        }
    });
    let esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, ""));
    queue.send("t").await;
    eventually(
        Duration::from_secs(20),
        "delivered after throttles",
        Some(&esmd),
        || async { function.calls().len() >= 4 && queue.is_empty().await },
    )
    .await;
    let calls = function.calls();
    assert_eq!(calls.len(), 4);
    // Same receive each time (no redelivery through the queue), with growing gaps.
    assert!(calls
        .iter()
        .all(|c| c.records()[0]["attributes"]["ApproximateReceiveCount"] == "1"));
    let gaps: Vec<Duration> = calls
        .windows(2)
        .map(|w| w[1].started - w[0].started)
        .collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(90)),
        "{gaps:?}"
    );
    let uuid = uuid_of(&esmd, &queue.arn);
    assert_eq!(esmd.metric("esmd_invocations_total", &uuid), 4);
    assert_eq!(esmd.metric("esmd_deleted_events_total", &uuid), 1);
}

/// esmd with batch size 50 and a 4 s window on `queue`, once it is polling.
fn polling_with_a_4s_window(moto: &Moto, function: &FunctionServer, queue: &Queue) -> Esmd {
    let esmd = Esmd::start(
        moto,
        function,
        &mapping(
            &queue.arn,
            "batch_size = 50\nmaximum_batching_window_in_seconds = 4",
        ),
    );
    esmd.wait_for(Duration::from_secs(20), "readyz", || {
        esmd.get("/readyz").0 == 200
    });
    esmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batching_window_gathers_across_receives() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "window", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = polling_with_a_4s_window(&moto, &function, &queue);
    for i in 0..12 {
        queue.send(&format!("w{i}")).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        Duration::from_secs(20),
        "12 delivered",
        Some(&esmd),
        || async { function.bodies().len() >= 12 },
    )
    .await;
    let calls = function.calls();
    // 12 messages over more than one receive (at most 10 per receive) in one invocation.
    assert_eq!(
        calls.len(),
        1,
        "one batch: {:?}",
        calls.iter().map(|c| c.bodies()).collect::<Vec<_>>()
    );
    assert_eq!(calls[0].records().len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batching_window_opens_when_the_first_message_arrives() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "window-opens", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = polling_with_a_4s_window(&moto, &function, &queue);
    // Two messages 3 s apart on an idle queue, with a 4 s window. A window that opens with the
    // first message holds both and closes about 4 s after it; windows that tick from when
    // polling started close at a random point, usually between the two messages.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    queue.send("first").await;
    let sent = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    queue.send("second").await;
    eventually(
        Duration::from_secs(20),
        "delivered",
        Some(&esmd),
        || async { function.bodies().len() == 2 },
    )
    .await;
    let calls = function.calls();
    assert_eq!(
        calls.len(),
        1,
        "one window: {:?}",
        calls.iter().map(|c| c.bodies()).collect::<Vec<_>>()
    );
    let waited = calls[0].started.duration_since(sent);
    assert!(
        waited >= Duration::from_millis(3500),
        "the window closed {waited:?} after the first message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_caps_a_batch() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "cap", &[]).await;
    for i in 0..7 {
        queue.send(&format!("c{i}")).await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, "batch_size = 3"));
    eventually(
        Duration::from_secs(20),
        "7 delivered",
        Some(&esmd),
        || async { function.bodies().len() >= 7 },
    )
    .await;
    assert!(function.calls().iter().all(|c| c.records().len() <= 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_keeps_group_order_and_one_batch_per_group_in_flight() {
    let moto = Moto::start();
    let queue = Queue::create(
        &moto,
        "orders.fifo",
        &[("FifoQueue", "true"), ("VisibilityTimeout", "2")],
    )
    .await;
    // The 4th invocation fails once, to check that order survives a retry.
    let function = FunctionServer::start(move |_, index| {
        if index == 3 {
            Reply::function_error()
        } else {
            Reply::ok("").after(Duration::from_millis(50))
        }
    });
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            &queue.arn,
            "batch_size = 5\nscaling_config = { maximum_concurrency = 4 }",
        ),
    );
    for i in 0..15 {
        for g in ["g1", "g2", "g3"] {
            queue
                .send_fifo(&format!("{g}-{i:02}"), g, &format!("{g}-{i}"))
                .await;
        }
    }
    eventually(
        Duration::from_secs(40),
        "all delivered",
        Some(&esmd),
        || async { queue.is_empty().await },
    )
    .await;
    let calls = function.calls();
    for g in ["g1", "g2", "g3"] {
        // Collapse the retry: the order of first deliveries after dropping a failed batch's
        // records must be ascending, and each successful delivery too.
        let delivered: Vec<String> = calls
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 3)
            .flat_map(|(_, c)| c.bodies())
            .filter(|b| b.starts_with(g))
            .collect();
        let expected: Vec<String> = (0..15).map(|i| format!("{g}-{i:02}")).collect();
        assert_eq!(delivered, expected, "group {g} out of order");
    }
    for c in &calls {
        assert!(c
            .records()
            .iter()
            .all(|r| r["attributes"]["MessageGroupId"].is_string()));
        assert!(c
            .records()
            .iter()
            .all(|r| r["attributes"]["SequenceNumber"].is_string()));
    }
    // No group appears in two invocations that overlapped in time: from when the function
    // received one to when it answered (the failing invocation answers at once, so no fixed
    // duration stands for all of them). Each call's span (offsets from the first call) and
    // groups are computed once.
    let t0 = calls[0].started;
    let spans: Vec<(Duration, Duration, HashSet<&str>)> = calls
        .iter()
        .map(|c| {
            let end = c.finished.expect("every call answered");
            let groups = c
                .records()
                .iter()
                .map(|r| r["attributes"]["MessageGroupId"].as_str().unwrap())
                .collect();
            (c.started - t0, end - t0, groups)
        })
        .collect();
    for (i, a) in spans.iter().enumerate() {
        for (j, b) in spans.iter().enumerate().skip(i + 1) {
            let overlap = a.0 < b.1 && b.0 < a.1;
            assert!(
                !overlap || a.2.is_disjoint(&b.2),
                "a group was in two concurrent batches: call {i} {:?}-{:?} {:?} and call {j} {:?}-{:?} {:?}",
                a.0,
                a.1,
                calls[i].bodies(),
                b.0,
                b.1,
                calls[j].bodies()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_gathered_messages_at_once() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "release", &[("VisibilityTimeout", "300")]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let mut esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            &queue.arn,
            "batch_size = 100\nmaximum_batching_window_in_seconds = 60",
        ),
    );
    let uuid = uuid_of(&esmd, &queue.arn);
    for i in 0..3 {
        queue.send(&format!("r{i}")).await;
    }
    esmd.wait_for(Duration::from_secs(20), "3 polled", || {
        esmd.metric("esmd_polled_events_total", &uuid) == 3
    });
    assert_eq!(queue.counts().await, (0, 3), "held by esmd");
    let status = esmd.terminate(Duration::from_secs(15));
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    assert!(function.calls().is_empty(), "nothing was invoked");
    // Visible again at once, not after 300 s. (LocalStack's counts trail a visibility change
    // by a moment, hence a few seconds' grace.)
    eventually(
        Duration::from_secs(5),
        "all 3 visible again",
        Some(&esmd),
        || async { queue.counts().await.0 == 3 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_invocations_then_deletes() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "inflight", &[("VisibilityTimeout", "300")]).await;
    let function = FunctionServer::start(|_, _| Reply::ok("").after(Duration::from_secs(3)));
    let mut esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, ""));
    queue.send("slow").await;
    eventually(
        Duration::from_secs(20),
        "invocation started",
        Some(&esmd),
        || async { !function.calls().is_empty() },
    )
    .await;
    let status = esmd.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
    assert_eq!(function.completed(), 1);
    assert!(queue.is_empty().await, "the finished batch was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_stops_only_its_mapping_and_starts_once_created() {
    let moto = Moto::start();
    let good = Queue::create(&moto, "good", &[]).await;
    let missing_arn = queue_arn("late");
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(
        &moto,
        &function,
        &format!("{}{}", mapping(&good.arn, ""), mapping(&missing_arn, "")),
    );
    good.send("from-good").await;
    eventually(
        Duration::from_secs(20),
        "good mapping delivers",
        Some(&esmd),
        || async { function.bodies().contains(&"from-good".to_string()) },
    )
    .await;
    let late = esmd.mappings()["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["event_source_arn"] == missing_arn.as_str())
        .cloned()
        .unwrap();
    assert_eq!(late["state"], "Error", "{late}");
    assert!(
        late["last_error"].as_str().unwrap().contains("late"),
        "error names the queue: {late}"
    );
    assert_eq!(esmd.get("/readyz").0, 503);

    let late_queue = Queue::create(&moto, "late", &[]).await;
    late_queue.send("from-late").await;
    eventually(
        Duration::from_secs(45),
        "late mapping starts by itself",
        Some(&esmd),
        || async { function.bodies().contains(&"from-late".to_string()) },
    )
    .await;
    esmd.wait_for(Duration::from_secs(5), "readyz", || {
        esmd.get("/readyz").0 == 200
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_function_puts_the_mapping_in_error_and_recovers() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "nofn", &[("VisibilityTimeout", "2")]).await;
    let function = FunctionServer::start(|_, index| {
        if index < 2 {
            Reply::status(404, r#"{"Type":"User","Message":"Function not found"}"#)
        } else {
            Reply::ok("")
        }
    });
    let esmd = Esmd::start(&moto, &function, &mapping(&queue.arn, ""));
    queue.send("x").await;
    esmd.wait_for(Duration::from_secs(20), "error state", || {
        esmd.mappings()["mappings"][0]["state"] == "Error"
    });
    let m = esmd.mappings()["mappings"][0].clone();
    assert!(m["last_error"].as_str().unwrap().contains("404"), "{m}");
    eventually(
        Duration::from_secs(40),
        "recovers once the function exists",
        Some(&esmd),
        || async { queue.is_empty().await },
    )
    .await;
    esmd.wait_for(Duration::from_secs(10), "enabled again", || {
        esmd.mappings()["mappings"][0]["state"] == "Enabled"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_out_messages_are_deleted_without_invoking() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "filtered", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            &queue.arn,
            "filter_criteria = { filter = [ { pattern = '{\"body\":{\"kind\":[\"order\"]}}' } ] }",
        ),
    );
    queue.send(r#"{"kind":"order","n":1}"#).await;
    queue.send(r#"{"kind":"noise"}"#).await;
    queue.send("plain text").await;
    eventually(
        Duration::from_secs(20),
        "queue drained",
        Some(&esmd),
        || async { queue.is_empty().await && !function.calls().is_empty() },
    )
    .await;
    assert_eq!(function.bodies(), [r#"{"kind":"order","n":1}"#]);
    let uuid = uuid_of(&esmd, &queue.arn);
    assert_eq!(esmd.metric("esmd_filtered_out_events_total", &uuid), 2);
    assert_eq!(esmd.metric("esmd_deleted_events_total", &uuid), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_backoff_shortens_and_grows_the_wait_and_still_redrives_to_the_dlq() {
    let moto = Moto::start();
    // A 60 s visibility timeout: without the backoff, three attempts would take 2 minutes.
    let (queue, dlq) = Queue::with_dlq(&moto, "backoff", 60, 3).await;
    let function = FunctionServer::start(|_, _| Reply::function_error());
    let esmd = Esmd::start(
        &moto,
        &function,
        &mapping(
            &queue.arn,
            "esmd_retry_backoff = { base_seconds = 2, max_seconds = 8 }",
        ),
    );
    queue.send("retry-me").await;
    eventually(
        Duration::from_secs(40),
        "message in the DLQ",
        Some(&esmd),
        || async { dlq.peek_bodies().await.contains(&"retry-me".to_string()) },
    )
    .await;
    let calls = function.calls();
    assert_eq!(calls.len(), 3, "maxReceiveCount still decides");
    let gap1 = calls[1].started - calls[0].started;
    let gap2 = calls[2].started - calls[1].started;
    // Receive 1 waits 1-2 s, receive 2 waits 2-4 s (equal jitter on 2 s × 2^(n-1)).
    assert!(
        gap1 >= Duration::from_millis(900) && gap1 < Duration::from_secs(10),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(1900) && gap2 < Duration::from_secs(12),
        "{gap2:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_known_scenario() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "metered", &[("VisibilityTimeout", "1")]).await;
    let reported = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = std::sync::Arc::clone(&reported);
    // `keep-3` is reported failed the first time only; it comes back after 1 s and succeeds.
    let function = FunctionServer::start(move |call, _| {
        let failures: Vec<Value> = call
            .records()
            .iter()
            .filter(|r| r["body"] == r#"{"keep":3}"#)
            .filter(|_| !once.swap(true, std::sync::atomic::Ordering::SeqCst))
            .map(|r| serde_json::json!({"itemIdentifier": r["messageId"]}))
            .collect();
        Reply::ok(serde_json::json!({"batchItemFailures": failures}).to_string())
    });
    let uuid = "0b7f6a8e-3c1d-4e8f-9a2b-5c6d7e8f9a0b";
    let esmd = Esmd::start(
        &moto,
        &function,
        &format!(
            "{}uuid = \"{uuid}\"\nfunction_response_types = [\"ReportBatchItemFailures\"]\n\
             filter_criteria = {{ filter = [ {{ pattern = '{{\"body\":{{\"keep\":[{{\"exists\":true}}]}}}}' }} ] }}\n",
            mapping(&queue.arn, "")
        ),
    );
    for body in [
        r#"{"keep":1}"#,
        r#"{"keep":2}"#,
        r#"{"keep":3}"#,
        r#"{"drop":1}"#,
    ] {
        queue.send(body).await;
    }
    eventually(
        Duration::from_secs(30),
        "the queue drained",
        Some(&esmd),
        || async { queue.is_empty().await && esmd.metric("esmd_deleted_events_total", uuid) == 4 },
    )
    .await;
    let m = |name: &str| esmd.metric(name, uuid);
    // RUST_LOG is `info,esmd=debug` here: the SDK's own debug output stays off.
    let sdk_debug: Vec<String> = esmd
        .logs()
        .lines()
        .filter(|l| l.contains("DEBUG") && !l.contains(" esmd"))
        .take(3)
        .map(String::from)
        .collect();
    assert!(sdk_debug.is_empty(), "{sdk_debug:#?}");
    assert_eq!(m("esmd_polled_events_total"), 5, "4 received, keep-3 twice");
    assert_eq!(m("esmd_filtered_out_events_total"), 1);
    assert_eq!(m("esmd_invoked_events_total"), 4, "3 kept, keep-3 twice");
    assert_eq!(
        m("esmd_failed_invoke_events_total"),
        1,
        "keep-3 reported once"
    );
    assert_eq!(
        m("esmd_deleted_events_total"),
        4,
        "3 processed and 1 filtered"
    );
    assert_eq!(m("esmd_dropped_events_total"), 0);
    let invocations = m("esmd_invocations_total");
    assert_eq!(invocations as usize, function.calls().len());
    assert_eq!(m("esmd_invocation_duration_seconds_count"), invocations);
    let text = esmd.get("/metrics").1;
    let inf = text
        .lines()
        .find(|l| {
            l.starts_with("esmd_invocation_duration_seconds_bucket")
                && l.contains(uuid)
                && l.contains("le=\"+Inf\"")
        })
        .expect("+Inf bucket");
    assert!(inf.ends_with(&format!(" {invocations}")), "{inf}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("esmd_sqs_backlog_messages{") && l.contains(uuid)),
        "backlog gauge sampled"
    );
    // Bounded labels: no receipt handles or message ids.
    assert!(!text.contains("receipt") && !text.contains("messageId"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_target_gets_the_event_and_its_status_codes_follow_lambda_rules() {
    let moto = Moto::start();
    let (queue, dlq) = Queue::with_dlq(&moto, "to-app", 1, 2).await;
    let throttled_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&throttled_once);
    // The app: 200 for `good`, a partial failure for `bad`, 500 for `boom`, and one 429
    // before a 200 for `busy`.
    let app = FunctionServer::start(move |call, _| {
        let record = &call.records()[0];
        match record["body"].as_str().unwrap_or_default() {
            "bad" => Reply::ok(
                serde_json::json!({"batchItemFailures": [{"itemIdentifier": record["messageId"]}]})
                    .to_string(),
            ),
            "boom" => Reply::status(500, "internal error"),
            "busy" if !flag.swap(true, std::sync::atomic::Ordering::SeqCst) => {
                Reply::status(429, "slow down")
            }
            _ => Reply::ok(""),
        }
    });
    let target = format!("{}/2015-03-31/functions/app/invocations", app.endpoint);
    let esmd = Esmd::start(
        &moto,
        &app,
        &format!(
            "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"not-lambda\"\nbatch_size = 1\n\
             function_response_types = [\"ReportBatchItemFailures\"]\nesmd_http_target = \"{target}\"\n",
            queue.arn
        ),
    );
    for body in ["good", "bad", "boom", "busy"] {
        queue.send(body).await;
    }
    eventually(
        Duration::from_secs(40),
        "bad and boom in the DLQ",
        Some(&esmd),
        || async {
            let mut dead = dlq.peek_bodies().await;
            dead.sort();
            dead == ["bad", "boom"] && queue.is_empty().await
        },
    )
    .await;
    let calls = app.calls();
    // Every call came through the HTTP target (the path names `app`), not Lambda.
    assert!(calls.iter().all(|c| c.function == "app"));
    assert_eq!(
        calls[0].records()[0]["eventSource"],
        "aws:sqs",
        "the same event JSON"
    );
    let count = |body: &str| {
        calls
            .iter()
            .filter(|c| c.records()[0]["body"] == body)
            .count()
    };
    assert_eq!(count("good"), 1);
    assert_eq!(count("busy"), 2, "a 429 is retried");
    assert_eq!(
        count("bad"),
        2,
        "reported failed, redelivered until maxReceiveCount"
    );
    assert_eq!(count("boom"), 2, "a 500 is a function error");
    assert!(throttled_once.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_or_payloads_in_any_log_line_at_any_level() {
    let moto = Moto::start();
    let queue = Queue::create(&moto, "secrets", &[]).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let secret_key = "fakeSecretKeyDoNotLog/0123456789abcdefXYZ";
    let session_token = "FakeSessionTokenDoNotLog0123456789";
    let payload = "PAYLOAD-MARKER-7f3a";
    let esmd = Esmd::start_with_env(
        &moto,
        &function,
        &mapping(&queue.arn, ""),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAFAKEDONOTLOG0001"),
            ("AWS_SECRET_ACCESS_KEY", secret_key),
            ("AWS_SESSION_TOKEN", session_token),
            ("RUST_LOG", "trace"),
        ],
    );
    queue.send(&format!("{{\"card\":\"{payload}\"}}")).await;
    eventually(Duration::from_secs(20), "delivery", Some(&esmd), || async {
        function.calls().len() == 1 && queue.is_empty().await
    })
    .await;
    let logs = esmd.logs();
    assert!(logs.lines().count() > 50, "trace logging is on");
    for (i, line) in logs.lines().enumerate() {
        for secret in [secret_key, session_token, payload] {
            assert!(!line.contains(secret), "line {i} leaks `{secret}`: {line}");
        }
    }
}
