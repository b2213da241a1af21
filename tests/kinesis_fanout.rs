//! Enhanced fan-out against kinesis-local (which implements RegisterStreamConsumer and
//! SubscribeToShard): the real esmd binary reads through a registered stream consumer, with
//! the polling path's ordering, checkpoints, lineage and failure handling.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

async fn consumer(client: &aws_sdk_kinesis::Client, stream_arn: &str) -> String {
    let out = client
        .register_stream_consumer()
        .stream_arn(stream_arn)
        .consumer_name("esmd")
        .send()
        .await
        .unwrap();
    let arn = out.consumer().unwrap().consumer_arn().to_string();
    for _ in 0..100 {
        let d = client
            .describe_stream_consumer()
            .consumer_arn(&arn)
            .send()
            .await
            .unwrap();
        if d.consumer_description().unwrap().consumer_status().as_str() == "ACTIVE" {
            return arn;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("consumer not active");
}

/// Every delivered record: (eventSourceARN, shard, key, data), in delivery order.
fn delivered(function: &FunctionServer) -> Vec<(String, String, String, String)> {
    function
        .calls()
        .iter()
        .flat_map(|c| {
            c.records()
                .iter()
                .map(|r| {
                    let shard = r["eventID"].as_str().unwrap().split(':').next().unwrap();
                    (
                        r["eventSourceARN"].as_str().unwrap().to_string(),
                        shard.to_string(),
                        r["kinesis"]["partitionKey"].as_str().unwrap().to_string(),
                        kinesis_data(r),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn mapping(consumer: &str, extra: &str) -> String {
    format!(
        "[[mapping]]\nuuid = \"0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f\"\nevent_source_arn = \"{consumer}\"\n\
         function_name = \"fanout\"\nstarting_position = \"TRIM_HORIZON\"\n{extra}\n"
    )
}

/// Order per key with parallelization factor 3, the stream's ARN in every event, a renewal
/// every 2 s while records flow (nothing lost or repeated across renewals), then a restart
/// that resumes from the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_keeps_order_per_key_across_renewals_and_resumes_after_a_restart() {
    let kl = KinesisLocal::start();
    let client = kinesis(&kl.endpoint).await;
    client
        .create_stream()
        .stream_name("fan")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let stream_arn = wait_active(&client, "fan").await;
    let consumer_arn = consumer(&client, &stream_arn).await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let env = [("ESMD_FANOUT_RENEW_MS", "2000")];
    let mut esmd = Esmd::start_at(
        &kl.endpoint,
        &function,
        &mapping(&consumer_arn, "parallelization_factor = 3\nbatch_size = 5"),
        &env,
    );
    let keys = ["a", "b", "c", "d"];
    let mut sent = 0;
    // Records keep flowing for about 6 s, across at least two renewals.
    for round in 0..30 {
        for key in keys {
            put(&client, "fan", key, &format!("{key}-{round}")).await;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    esmd.wait_for(Duration::from_secs(60), "every record", || {
        delivered(&function).len() >= sent
    });
    esmd.wait_until_idle(Duration::from_secs(30));
    let all = delivered(&function);
    assert_eq!(all.len(), sent, "nothing lost or repeated across renewals");
    assert!(
        all.iter().all(|(arn, ..)| arn == &stream_arn),
        "eventSourceARN is the stream's"
    );
    let mut per_key: HashMap<String, Vec<String>> = HashMap::new();
    for (_, _, key, data) in &all {
        per_key.entry(key.clone()).or_default().push(data.clone());
    }
    for key in keys {
        let expected: Vec<String> = (0..30).map(|r| format!("{key}-{r}")).collect();
        assert_eq!(per_key[key], expected, "order of key {key}");
    }
    let subscriptions = esmd.logs().matches("subscribed to shard").count();
    assert!(
        subscriptions >= 3,
        "renewed at least twice ({subscriptions} subscriptions)"
    );

    assert!(esmd.terminate(Duration::from_secs(30)).success());
    esmd.restart();
    for key in keys {
        put(&client, "fan", key, &format!("{key}-after")).await;
    }
    esmd.wait_for(
        Duration::from_secs(60),
        "the records after the restart",
        || delivered(&function).len() >= sent + keys.len(),
    );
    esmd.wait_until_idle(Duration::from_secs(30));
    let all = delivered(&function);
    assert_eq!(
        all.len(),
        sent + keys.len(),
        "resumed from the checkpoint: nothing twice"
    );
    assert!(all[sent..]
        .iter()
        .all(|(_, _, _, data)| data.ends_with("-after")));
}

/// A split during the run: the parent is read to its end (the subscription's ChildShards
/// event) before either child starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_follows_child_shards_after_a_split_parents_first() {
    let kl = KinesisLocal::start();
    let client = kinesis(&kl.endpoint).await;
    client
        .create_stream()
        .stream_name("fansplit")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let stream_arn = wait_active(&client, "fansplit").await;
    let consumer_arn = consumer(&client, &stream_arn).await;
    for i in 0..5 {
        put(
            &client,
            "fansplit",
            &format!("k{i}"),
            &format!("parent-{i}"),
        )
        .await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start_at(&kl.endpoint, &function, &mapping(&consumer_arn, ""), &[]);
    esmd.wait_for(Duration::from_secs(30), "the parent's records", || {
        delivered(&function).len() >= 5
    });
    client
        .split_shard()
        .stream_name("fansplit")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    wait_active(&client, "fansplit").await;
    for i in 0..10 {
        put(&client, "fansplit", &format!("k{i}"), &format!("child-{i}")).await;
    }
    esmd.wait_for(Duration::from_secs(60), "the children's records", || {
        delivered(&function).len() >= 15
    });
    let all = delivered(&function);
    let last_parent = all
        .iter()
        .rposition(|(_, shard, ..)| shard == "shardId-000000000000")
        .unwrap();
    let first_child = all
        .iter()
        .position(|(_, shard, ..)| shard != "shardId-000000000000")
        .unwrap();
    assert!(
        first_child > last_parent,
        "children start after the parent ended: {all:?}"
    );
    assert!(all[first_child..]
        .iter()
        .all(|(_, _, _, d)| d.starts_with("child-")));
}

/// A partial failure, then retries exhausted: the failed records reach the SQS destination
/// (on moto) in AWS's shape, with the stream's ARN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_partial_failures_reach_the_destination() {
    let kl = KinesisLocal::start();
    let moto = Moto::start();
    let client = kinesis(&kl.endpoint).await;
    client
        .create_stream()
        .stream_name("fanfail")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let stream_arn = wait_active(&client, "fanfail").await;
    let consumer_arn = consumer(&client, &stream_arn).await;
    let dlq = Queue::create(&moto, "fanout-failures", &[]).await;
    for i in 0..4 {
        put(&client, "fanfail", "k", &format!("r{i}")).await;
    }
    let function = FunctionServer::start(|call, _| {
        let failed: Vec<Value> = call
            .records()
            .iter()
            .filter(|r| kinesis_data(r) == "r2")
            .map(|r| serde_json::json!({"itemIdentifier": r["kinesis"]["sequenceNumber"]}))
            .collect();
        Reply::ok(serde_json::json!({"batchItemFailures": failed}).to_string())
    });
    let extra = format!(
        "function_response_types = [\"ReportBatchItemFailures\"]\nmaximum_retry_attempts = 1\n\
         destination_config = {{ on_failure = {{ destination_arn = \"{}\" }} }}",
        dlq.arn
    );
    let env = [
        ("AWS_ENDPOINT_URL_KINESIS", kl.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_SQS", moto.endpoint.as_str()),
    ];
    let esmd = Esmd::start_at(
        &moto.endpoint,
        &function,
        &mapping(&consumer_arn, &extra),
        &env,
    );
    eventually(
        Duration::from_secs(60),
        "the failure record",
        Some(&esmd),
        || async { !dlq.peek_bodies().await.is_empty() },
    )
    .await;
    let record: Value = serde_json::from_str(&dlq.peek_bodies().await[0]).unwrap();
    assert_eq!(
        record["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(record["KinesisBatchInfo"]["streamArn"], stream_arn.as_str());
    assert_eq!(record["KinesisBatchInfo"]["batchSize"], 2);
    assert!(record["responseContext"]["functionError"].is_null());
    let calls = function.calls();
    assert_eq!(calls[0].records().len(), 4);
    assert!(calls[1..]
        .iter()
        .all(|c| kinesis_data(&c.records()[0]) == "r2"));
}
