//! Resharding against kinesis-local (the Kinesis engine LocalStack uses; npm `kinesis-local`),
//! which, unlike moto, ends a closed shard with a null `NextShardIterator` and `ChildShards`
//! and routes new records to the children. `scripts/test.sh` installs it under `.ci/node`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;

async fn put(client: &aws_sdk_kinesis::Client, key: &str, data: &str) {
    client
        .put_record()
        .stream_name("reshard")
        .partition_key(key)
        .data(aws_sdk_kinesis::primitives::Blob::new(
            data.as_bytes().to_vec(),
        ))
        .send()
        .await
        .unwrap();
}

/// (shard id, data) of every delivered record, in delivery order.
fn delivered(function: &FunctionServer) -> Vec<(String, String)> {
    function
        .calls()
        .iter()
        .flat_map(|c| {
            c.records()
                .iter()
                .map(|r| {
                    let shard = r["eventID"]
                        .as_str()
                        .unwrap()
                        .split(':')
                        .next()
                        .unwrap()
                        .to_string();
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(r["kinesis"]["data"].as_str().unwrap())
                        .unwrap();
                    (shard, String::from_utf8(data).unwrap())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_merge_read_parents_to_the_end_before_children() {
    let kl = KinesisLocal::start();
    let client = aws_sdk_kinesis::Client::new(&sdk_config(&kl.endpoint).await);
    client
        .create_stream()
        .stream_name("reshard")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let arn = wait_active(&client, "reshard").await;
    let keys = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    for (i, k) in keys.iter().enumerate() {
        put(&client, k, &format!("parent-{i}")).await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let config = format!(
        "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n"
    );
    let esmd = Esmd::start_at(&kl.endpoint, &function, &config, &[]);
    eventually(
        Duration::from_secs(30),
        "parent records",
        Some(&esmd),
        || async { delivered(&function).len() >= 6 },
    )
    .await;

    client
        .split_shard()
        .stream_name("reshard")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    wait_active(&client, "reshard").await;
    for (i, k) in keys.iter().enumerate() {
        put(&client, k, &format!("child-{i}")).await;
    }
    eventually(
        Duration::from_secs(40),
        "children's records",
        Some(&esmd),
        || async { delivered(&function).len() >= 12 },
    )
    .await;

    client
        .merge_shards()
        .stream_name("reshard")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    wait_active(&client, "reshard").await;
    for (i, k) in keys.iter().enumerate() {
        put(&client, k, &format!("merged-{i}")).await;
    }
    eventually(
        Duration::from_secs(40),
        "merged shard's records",
        Some(&esmd),
        || async { delivered(&function).len() >= 18 },
    )
    .await;
    esmd.wait_until_idle(Duration::from_secs(20));

    let all = delivered(&function);
    assert_eq!(all.len(), 18, "each record once: {all:?}");
    let position = |shard: &str, first: bool| {
        let mut it = all
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| s == shard)
            .map(|(i, _)| i);
        if first {
            it.next()
        } else {
            it.next_back()
        }
    };
    let parent_last = position("shardId-000000000000", false).unwrap();
    for child in ["shardId-000000000001", "shardId-000000000002"] {
        let first = position(child, true).expect("child delivered");
        assert!(
            first > parent_last,
            "{child} started after the parent ended"
        );
    }
    let merged_first = position("shardId-000000000003", true).expect("merged shard delivered");
    for parent in ["shardId-000000000001", "shardId-000000000002"] {
        assert!(
            merged_first > position(parent, false).unwrap(),
            "merge child after {parent}"
        );
    }
    for (shard, data) in &all {
        let expected = match shard.as_str() {
            "shardId-000000000000" => "parent-",
            "shardId-000000000003" => "merged-",
            _ => "child-",
        };
        assert!(data.starts_with(expected), "{shard} carried {data}");
    }
    let logs = esmd.logs();
    assert!(
        logs.contains("null NextShardIterator"),
        "ended by the real signal"
    );
}

/// Two esmd instances sharing the stream through the DynamoDB lease table (on moto), reading
/// Kinesis from kinesis-local: a split and a merge while both run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_and_a_merge_across_two_instances_keep_parents_before_children() {
    let kl = KinesisLocal::start();
    let moto = Moto::start();
    let client = aws_sdk_kinesis::Client::new(&sdk_config(&kl.endpoint).await);
    client
        .create_stream()
        .stream_name("reshard")
        .shard_count(2)
        .send()
        .await
        .unwrap();
    let arn = wait_active(&client, "reshard").await;
    let keys = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    for (i, k) in keys.iter().enumerate() {
        put(&client, k, &format!("parent-{i}")).await;
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let config = format!(
        "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n"
    );
    let start = |name: &str| {
        let state = format!(
            "[state]\nbackend = \"dynamodb\"\ntable = \"leases\"\ninstance_id = \"{name}\"\nlease_duration_seconds = 3\n"
        );
        let env = [("AWS_ENDPOINT_URL_DYNAMODB", moto.endpoint.as_str())];
        Esmd::start_with_state(&kl.endpoint, &function, Some(&state), &config, &env)
    };
    let a = start("instance-a");
    let b = start("instance-b");
    let reading = |e: &Esmd| {
        e.mappings()["mappings"][0]["shards"]
            .as_object()
            .map_or(0, |s| {
                s.values().filter(|v| v["status"] == "reading").count()
            })
    };
    b.wait_for(Duration::from_secs(30), "one shard each", || {
        reading(&a) == 1 && reading(&b) == 1
    });
    eventually(
        Duration::from_secs(30),
        "parent records",
        Some(&a),
        || async { delivered(&function).len() >= 8 },
    )
    .await;

    client
        .split_shard()
        .stream_name("reshard")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key("85070591730234615865843651857942052864")
        .send()
        .await
        .unwrap();
    wait_active(&client, "reshard").await;
    for (i, k) in keys.iter().enumerate() {
        put(&client, k, &format!("child-{i}")).await;
    }
    eventually(
        Duration::from_secs(40),
        "children's records",
        Some(&a),
        || async { delivered(&function).len() >= 16 },
    )
    .await;
    client
        .merge_shards()
        .stream_name("reshard")
        .shard_to_merge("shardId-000000000002")
        .adjacent_shard_to_merge("shardId-000000000003")
        .send()
        .await
        .unwrap();
    wait_active(&client, "reshard").await;
    for (i, k) in keys.iter().enumerate() {
        put(&client, k, &format!("merged-{i}")).await;
    }
    eventually(
        Duration::from_secs(40),
        "every record",
        Some(&a),
        || async {
            let all = delivered(&function);
            let unique: std::collections::HashSet<_> = all.iter().map(|(_, d)| d.clone()).collect();
            unique.len() >= 24
        },
    )
    .await;

    let all = delivered(&function);
    let first = |shard: &str| all.iter().position(|(s, _)| s == shard);
    let last = |shard: &str| all.iter().rposition(|(s, _)| s == shard);
    let parent_end = last("shardId-000000000000").unwrap();
    for child in ["shardId-000000000002", "shardId-000000000003"] {
        if let Some(start) = first(child) {
            assert!(
                start > parent_end,
                "{child} started after its parent ended: {all:?}"
            );
        }
    }
    let merged = first("shardId-000000000004").expect("the merged shard was read");
    for parent in ["shardId-000000000002", "shardId-000000000003"] {
        if let Some(end) = last(parent) {
            assert!(
                merged > end,
                "the merged shard started after {parent} ended: {all:?}"
            );
        }
    }
    // Order per key across the lineage: parent, then child, then merged.
    for key in 0..keys.len() {
        let stage = |prefix: &str| {
            all.iter()
                .position(|(_, d)| *d == format!("{prefix}-{key}"))
        };
        let (p, c, m) = (stage("parent"), stage("child"), stage("merged"));
        if p.is_some() && c.is_some() && m.is_some() {
            assert!(p < c && c < m, "key {key}: {all:?}");
        }
    }
    let owners: std::collections::HashSet<String> = [&a, &b]
        .iter()
        .flat_map(|e| {
            e.logs()
                .lines()
                .filter(|l| l.contains("shard reader started"))
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(owners.len() >= 4, "both instances read shards");
}
