//! DynamoDB Streams mappings end to end against moto server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use common::*;
use serde_json::Value;

async fn insert_modify_remove(client: &aws_sdk_dynamodb::Client, table: &str) {
    for v in ["1", "2"] {
        client
            .put_item()
            .table_name(table)
            .item("id", AttributeValue::S("item-1".into()))
            .item("v", AttributeValue::N(v.into()))
            .send()
            .await
            .unwrap();
    }
    client
        .delete_item()
        .table_name(table)
        .key("id", AttributeValue::S("item-1".into()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insert_modify_remove_carry_the_images_each_view_type_promises() {
    let moto = Moto::start();
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await);
    let views = [
        ("t-new-old", StreamViewType::NewAndOldImages),
        ("t-new", StreamViewType::NewImage),
        ("t-old", StreamViewType::OldImage),
        ("t-keys", StreamViewType::KeysOnly),
    ];
    let mut config = String::new();
    let mut arns = Vec::new();
    for (table, view) in &views {
        let arn = table_with_stream(&client, table, view.clone()).await;
        config.push_str(&format!(
            "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"{table}\"\nstarting_position = \"TRIM_HORIZON\"\nbatch_size = 10\n"
        ));
        arns.push(arn);
        insert_modify_remove(&client, table).await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(&moto, &function, &config);
    eventually(
        Duration::from_secs(30),
        "12 records",
        Some(&esmd),
        || async {
            function
                .calls()
                .iter()
                .map(|c| c.records().len())
                .sum::<usize>()
                >= 12
        },
    )
    .await;
    for ((table, view), arn) in views.iter().zip(&arns) {
        let records: Vec<Value> = function
            .calls()
            .iter()
            .filter(|c| c.function == *table)
            .flat_map(|c| c.records().clone())
            .collect();
        let names: Vec<&str> = records
            .iter()
            .map(|r| r["eventName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"], "{table}");
        for r in &records {
            assert_eq!(r["eventSource"], "aws:dynamodb");
            assert_eq!(r["eventVersion"], "1.1");
            assert_eq!(r["awsRegion"], REGION);
            assert_eq!(r["eventSourceARN"], arn.as_str());
            let d = &r["dynamodb"];
            assert!(d["ApproximateCreationDateTime"].is_number(), "{r}");
            assert_eq!(d["Keys"], serde_json::json!({"id": {"S": "item-1"}}));
            assert_eq!(d["StreamViewType"], view.as_str());
            assert!(d["SequenceNumber"].is_string());
            assert!(d["SizeBytes"].is_number());
        }
        let has = |i: usize, image: &str| records[i]["dynamodb"].get(image).is_some();
        let (new, old) = match view {
            StreamViewType::NewAndOldImages => (true, true),
            StreamViewType::NewImage => (true, false),
            StreamViewType::OldImage => (false, true),
            _ => (false, false),
        };
        assert_eq!(
            (has(0, "NewImage"), has(0, "OldImage")),
            (new, false),
            "{table} INSERT"
        );
        assert_eq!(
            (has(1, "NewImage"), has(1, "OldImage")),
            (new, old),
            "{table} MODIFY"
        );
        assert_eq!(
            (has(2, "NewImage"), has(2, "OldImage")),
            (false, old),
            "{table} REMOVE"
        );
        if new {
            assert_eq!(
                records[1]["dynamodb"]["NewImage"]["v"],
                serde_json::json!({"N": "2"})
            );
        }
        if old {
            assert_eq!(
                records[1]["dynamodb"]["OldImage"]["v"],
                serde_json::json!({"N": "1"})
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_see_typed_images_and_filtered_records_are_checkpointed() {
    let moto = Moto::start();
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await);
    let arn = table_with_stream(&client, "filtered", StreamViewType::NewAndOldImages).await;
    insert_modify_remove(&client, "filtered").await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let config = format!(
        "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n\
         filter_criteria = {{ filter = [{{ pattern = '{{\"eventName\":[\"MODIFY\"],\"dynamodb\":{{\"NewImage\":{{\"v\":{{\"N\":[\"2\"]}}}}}}}}' }}] }}\n"
    );
    let esmd = Esmd::start(&moto, &function, &config);
    eventually(
        Duration::from_secs(20),
        "the MODIFY",
        Some(&esmd),
        || async { !function.calls().is_empty() },
    )
    .await;
    esmd.wait_for(
        Duration::from_secs(10),
        "checkpoint past the filtered REMOVE",
        || {
            let m = &esmd.mappings()["mappings"][0];
            m["metrics"]["filtered_out_events"] == 2
                && m["shards"].as_object().is_some_and(|s| {
                    s.values()
                        .all(|v| v["outstanding_records"] == 0 && v["checkpoint"].is_string())
                })
        },
    );
    let records: Vec<Value> = function
        .calls()
        .iter()
        .flat_map(|c| c.records().clone())
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["eventName"], "MODIFY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_windows_carry_state_and_close_with_a_final_invocation() {
    let moto = Moto::start();
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await);
    let arn = table_with_stream(&client, "windowed", StreamViewType::NewImage).await;
    let function = FunctionServer::start(|call, _| {
        let seen = call.event["state"]["items"].as_u64().unwrap_or(0);
        let items = seen + call.records().len() as u64;
        Reply::ok(serde_json::json!({"state": {"items": items}}).to_string())
    });
    let config = format!(
        "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n\
         batch_size = 1\ntumbling_window_in_seconds = 4\n"
    );
    let esmd = Esmd::start(&moto, &function, &config);
    // Start just after a window boundary so that the three writes share a window.
    at_window_start(4).await;
    for id in ["a", "b", "c"] {
        client
            .put_item()
            .table_name("windowed")
            .item("id", AttributeValue::S(id.into()))
            .send()
            .await
            .unwrap();
    }
    eventually(
        Duration::from_secs(30),
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
    let calls = function.calls();
    let states: Vec<u64> = calls
        .iter()
        .map(|c| c.event["state"]["items"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        states,
        vec![0, 1, 2, 3],
        "state carried, then handed to the final call"
    );
    let last = calls.last().unwrap();
    assert_eq!(last.event["isFinalInvokeForWindow"], true);
    assert!(last.records().is_empty());
    for call in &calls {
        assert_eq!(call.event["eventSourceARN"], arn.as_str());
        assert_eq!(call.event["window"], last.event["window"]);
        assert!(call.event["shardId"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
    }
    assert_eq!(calls[0].records()[0]["eventName"], "INSERT");
}
