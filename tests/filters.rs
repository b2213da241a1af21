//! Every filter operator on every source, positive and negative, against moto server.
//!
//! Each case is one mapping (its own queue, stream or table, and its own function name) with
//! one operator; a matching and a non-matching record go in, and only the matching one may
//! reach the function. SQS also checks that the non-matching message is deleted; the stream
//! test restarts esmd and checks that filtered records are not replayed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType};
use base64::Engine;
use common::*;
use serde_json::{json, Value};

/// One operator: patterns on the record's document, a document that matches and one that
/// does not. `{}` in a pattern is where the source's data key goes (`body`, `data`).
struct Case {
    name: &'static str,
    patterns: Vec<Value>,
    matching: Value,
    other: Value,
}

fn case(name: &'static str, pattern: Value, matching: Value, other: Value) -> Case {
    Case {
        name,
        patterns: vec![pattern],
        matching,
        other,
    }
}

/// The operators of Lambda's filter syntax, on JSON data (SQS bodies, Kinesis data).
fn json_cases() -> Vec<Case> {
    vec![
        case(
            "exact-string",
            json!({"v": ["a"]}),
            json!({"v": "a"}),
            json!({"v": "b"}),
        ),
        case(
            "exact-number",
            json!({"v": [5]}),
            json!({"v": 5}),
            json!({"v": 6}),
        ),
        case(
            "exact-bool",
            json!({"v": [true]}),
            json!({"v": true}),
            json!({"v": false}),
        ),
        case(
            "null",
            json!({"v": [null]}),
            json!({"v": null}),
            json!({"v": "x"}),
        ),
        case(
            "empty",
            json!({"v": [""]}),
            json!({"v": ""}),
            json!({"v": "x"}),
        ),
        case(
            "prefix",
            json!({"v": [{"prefix": "us-"}]}),
            json!({"v": "us-east"}),
            json!({"v": "eu-west"}),
        ),
        case(
            "suffix",
            json!({"v": [{"suffix": ".png"}]}),
            json!({"v": "a.png"}),
            json!({"v": "a.jpg"}),
        ),
        case(
            "equals-ignore-case",
            json!({"v": [{"equals-ignore-case": "ALERT"}]}),
            json!({"v": "aLeRt"}),
            json!({"v": "alerts"}),
        ),
        case(
            "anything-but",
            json!({"v": [{"anything-but": ["a", "b"]}]}),
            json!({"v": "c"}),
            json!({"v": "a"}),
        ),
        case(
            "anything-but-prefix",
            json!({"v": [{"anything-but": {"prefix": "tmp"}}]}),
            json!({"v": "real"}),
            json!({"v": "tmp-1"}),
        ),
        case(
            "anything-but-suffix",
            json!({"v": [{"anything-but": {"suffix": ".tmp"}}]}),
            json!({"v": "x.log"}),
            json!({"v": "x.tmp"}),
        ),
        case(
            "numeric-equals",
            json!({"v": [{"numeric": ["=", 100]}]}),
            json!({"v": 100}),
            json!({"v": 101}),
        ),
        case(
            "numeric-range",
            json!({"v": [{"numeric": [">", 10, "<=", 20]}]}),
            json!({"v": 20}),
            json!({"v": 10}),
        ),
        case(
            "exists",
            json!({"v": [{"exists": true}]}),
            json!({"v": "x"}),
            json!({"w": "x"}),
        ),
        case(
            "not-exists",
            json!({"v": [{"exists": false}]}),
            json!({"w": 1}),
            json!({"v": 1}),
        ),
        case(
            "and-fields",
            json!({"v": ["a"], "w": [1]}),
            json!({"v": "a", "w": 1}),
            json!({"v": "a", "w": 2}),
        ),
        case(
            "or-values",
            json!({"v": ["a", "b"]}),
            json!({"v": "b"}),
            json!({"v": "c"}),
        ),
        case(
            "or-fields",
            json!({"$or": [{"v": ["a"]}, {"w": [1]}]}),
            json!({"v": "z", "w": 1}),
            json!({"v": "z", "w": 2}),
        ),
        Case {
            name: "or-filters",
            patterns: vec![json!({"v": ["a"]}), json!({"w": [1]})],
            matching: json!({"w": 1}),
            other: json!({"v": "z"}),
        },
        case(
            "nested",
            json!({"o": {"p": ["q"]}}),
            json!({"o": {"p": "q"}}),
            json!({"o": {"p": "r"}}),
        ),
    ]
}

/// Adds a `case` field so each delivered record names its case and side.
fn tagged(doc: &Value, name: &str, side: &str) -> String {
    let mut doc = doc.clone();
    doc["case"] = json!(format!("{name}:{side}"));
    doc.to_string()
}

fn filter_block(patterns: &[Value], key: &str) -> String {
    let list: Vec<String> = patterns
        .iter()
        .map(|p| {
            let wrapped = json!({ key: p }).to_string();
            format!("{{ pattern = '{wrapped}' }}")
        })
        .collect();
    format!("filter_criteria = {{ filter = [{}] }}\n", list.join(", "))
}

/// Which cases' records each function received (by the `case` tag in the data).
fn received(
    function: &FunctionServer,
    tag_of: impl Fn(&Value) -> Option<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for call in function.calls() {
        for record in call.records() {
            if let Some(tag) = tag_of(record) {
                out.entry(call.function.clone()).or_default().insert(tag);
            }
        }
    }
    out
}

fn expected(cases: &[Case]) -> BTreeMap<String, BTreeSet<String>> {
    cases
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                BTreeSet::from([format!("{}:match", c.name)]),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_on_sqs_keeps_matches_and_deletes_the_rest() {
    let moto = Moto::start();
    let cases = json_cases();
    let mut config = String::new();
    let mut queues = Vec::new();
    for c in &cases {
        let queue = Queue::create(&moto, &format!("q-{}", c.name), &[]).await;
        config += &format!(
            "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"{}\"\nbatch_size = 10\n{}",
            queue_arn(&format!("q-{}", c.name)),
            c.name,
            filter_block(&c.patterns, "body")
        );
        queue.send(&tagged(&c.other, c.name, "other")).await;
        queue.send(&tagged(&c.matching, c.name, "match")).await;
        queues.push(queue);
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(&moto, &function, &config);
    let tag = |r: &Value| {
        serde_json::from_str::<Value>(r["body"].as_str()?).ok()?["case"]
            .as_str()
            .map(String::from)
    };
    eventually(
        Duration::from_secs(40),
        "every queue drained",
        Some(&esmd),
        || async {
            for q in &queues {
                if !q.is_empty().await {
                    return false;
                }
            }
            received(&function, tag).len() == cases.len()
        },
    )
    .await;
    assert_eq!(received(&function, tag), expected(&cases));
    // Nothing left: the filtered-out messages were deleted, not left to the redrive.
    for q in &queues {
        assert_eq!(q.counts().await, (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_on_kinesis_and_filtered_records_are_not_replayed_after_restart() {
    let moto = Moto::start();
    let client = kinesis(&moto.endpoint).await;
    let cases = json_cases();
    let mut config = String::new();
    for c in &cases {
        let stream = format!("s-{}", c.name);
        create_stream(&client, &stream, 1).await;
        config += &format!(
            "[[mapping]]\nevent_source_arn = \"{}\"\nfunction_name = \"{}\"\nstarting_position = \"TRIM_HORIZON\"\n{}",
            stream_arn(&stream),
            c.name,
            filter_block(&c.patterns, "data")
        );
        put(&client, &stream, "k", &tagged(&c.other, c.name, "other")).await;
        put(&client, &stream, "k", &tagged(&c.matching, c.name, "match")).await;
    }
    // Plain, non-JSON data never matches a `data` pattern.
    let last_filtered = put(&client, "s-prefix", "k", "us-plain-text").await;
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let mut esmd = Esmd::start(&moto, &function, &config);
    let tag = |r: &Value| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(r["kinesis"]["data"].as_str()?)
            .ok()?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => v["case"].as_str().map(String::from),
            Err(_) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        }
    };
    eventually(
        Duration::from_secs(40),
        "a match on every stream",
        Some(&esmd),
        || async { received(&function, tag).len() == cases.len() },
    )
    .await;
    // Let the readers settle past the filtered records, then restart: nothing comes back.
    eventually(
        Duration::from_secs(20),
        "filtered records checkpointed",
        Some(&esmd),
        || async {
            let mappings = esmd.mappings();
            mappings["mappings"].as_array().is_some_and(|all| {
                all.len() == cases.len()
                    && all.iter().all(|m| {
                        m["shards"]["shardId-000000000000"]["outstanding_records"] == 0
                            && m["shards"]["shardId-000000000000"]["checkpoint"].is_string()
                    })
            })
        },
    )
    .await;
    assert_eq!(received(&function, tag), expected(&cases));
    let calls_before = function.calls().len();
    assert!(esmd.terminate(Duration::from_secs(15)).success());
    esmd.restart();
    esmd.wait_until_idle(Duration::from_secs(20));
    assert_eq!(
        function.calls().len(),
        calls_before,
        "nothing replayed after the restart"
    );
    // The checkpoint is on the last record, which the filter dropped.
    let mappings = esmd.mappings();
    let checkpoint = &mappings["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["function_name"] == "prefix")
        .unwrap()["shards"]["shardId-000000000000"]["checkpoint"];
    assert_eq!(checkpoint, last_filtered.as_str(), "{mappings}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operator_on_dynamodb_typed_images() {
    let moto = Moto::start();
    let client = aws_sdk_dynamodb::Client::new(&sdk_config(&moto.endpoint).await);
    let s = |v: &str| AttributeValue::S(v.into());
    let n = |v: &str| AttributeValue::N(v.into());
    // (name, pattern under `dynamodb.NewImage` unless it starts at the record, matching item, other item)
    type Item = Vec<(&'static str, AttributeValue)>;
    let cases: Vec<(&str, Value, Item, Item)> = vec![
        (
            "exact-string",
            json!({"v": {"S": ["a"]}}),
            vec![("v", s("a"))],
            vec![("v", s("b"))],
        ),
        (
            "exact-number",
            json!({"v": {"N": ["5"]}}),
            vec![("v", n("5"))],
            vec![("v", n("6"))],
        ),
        (
            "bool",
            json!({"v": {"BOOL": [true]}}),
            vec![("v", AttributeValue::Bool(true))],
            vec![("v", AttributeValue::Bool(false))],
        ),
        (
            "null",
            json!({"v": {"NULL": [true]}}),
            vec![("v", AttributeValue::Null(true))],
            vec![("v", s("x"))],
        ),
        (
            "empty",
            json!({"v": {"S": [""]}}),
            vec![("v", s(""))],
            vec![("v", s("x"))],
        ),
        (
            "prefix",
            json!({"v": {"S": [{"prefix": "us-"}]}}),
            vec![("v", s("us-east"))],
            vec![("v", s("eu-west"))],
        ),
        (
            "suffix",
            json!({"v": {"S": [{"suffix": ".png"}]}}),
            vec![("v", s("a.png"))],
            vec![("v", s("a.jpg"))],
        ),
        (
            "equals-ignore-case",
            json!({"v": {"S": [{"equals-ignore-case": "ALERT"}]}}),
            vec![("v", s("alert"))],
            vec![("v", s("alerts"))],
        ),
        (
            "anything-but",
            json!({"v": {"S": [{"anything-but": ["a", "b"]}]}}),
            vec![("v", s("c"))],
            vec![("v", s("a"))],
        ),
        (
            "anything-but-prefix",
            json!({"v": {"S": [{"anything-but": {"prefix": "tmp"}}]}}),
            vec![("v", s("real"))],
            vec![("v", s("tmp-1"))],
        ),
        (
            "anything-but-suffix",
            json!({"v": {"S": [{"anything-but": {"suffix": ".tmp"}}]}}),
            vec![("v", s("x.log"))],
            vec![("v", s("x.tmp"))],
        ),
        // `N` values are strings in the stream record, so `numeric` cannot match them (as AWS);
        // on the numeric `ApproximateCreationDateTime` it does.
        (
            "numeric",
            json!({"v": {"N": [{"numeric": [">", 0]}]}}),
            vec![],
            vec![("v", n("5"))],
        ),
        (
            "numeric-range",
            json!({"@": {"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">", 1_000_000_000, "<", 9_000_000_000u64]}], "NewImage": {"v": {"S": ["a"]}}}}}),
            vec![("v", s("a"))],
            vec![("v", s("b"))],
        ),
        (
            "exists",
            json!({"v": {"S": [{"exists": true}]}}),
            vec![("v", s("x"))],
            vec![("w", s("x"))],
        ),
        (
            "not-exists",
            json!({"v": {"S": [{"exists": false}]}}),
            vec![("w", s("x"))],
            vec![("v", s("x"))],
        ),
        (
            "and-fields",
            json!({"v": {"S": ["a"]}, "w": {"N": ["1"]}}),
            vec![("v", s("a")), ("w", n("1"))],
            vec![("v", s("a")), ("w", n("2"))],
        ),
        (
            "or-values",
            json!({"v": {"S": ["a", "b"]}}),
            vec![("v", s("b"))],
            vec![("v", s("c"))],
        ),
        (
            "or-fields",
            json!({"$or": [{"v": {"S": ["a"]}}, {"w": {"N": ["1"]}}]}),
            vec![("w", n("1"))],
            vec![("v", s("z"))],
        ),
        (
            "event-name",
            json!({"@": {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"v": {"S": ["a"]}}}}}),
            vec![("v", s("a"))],
            vec![],
        ),
    ];
    let mut config = String::new();
    for (name, pattern, matching, other) in &cases {
        let table = format!("t-{name}");
        let arn = table_with_stream(&client, &table, StreamViewType::NewImage).await;
        let pattern = match pattern.get("@") {
            Some(whole) => whole.clone(),
            None => json!({"dynamodb": {"NewImage": pattern}}),
        };
        config += &format!(
            "[[mapping]]\nevent_source_arn = \"{arn}\"\nfunction_name = \"{name}\"\nstarting_position = \"TRIM_HORIZON\"\n\
             filter_criteria = {{ filter = [{{ pattern = '{pattern}' }}] }}\n"
        );
        for (id, attributes) in [("other", other), ("match", matching)] {
            let mut put = client.put_item().table_name(&table).item("id", s(id));
            for (k, v) in attributes {
                put = put.item(*k, v.clone());
            }
            put.send().await.unwrap();
        }
        if *name == "event-name" {
            // A MODIFY of the matching item: same image, other event name.
            client
                .put_item()
                .table_name(&table)
                .item("id", s("match"))
                .item("v", s("a"))
                .item("x", n("2"))
                .send()
                .await
                .unwrap();
        }
    }
    let function = FunctionServer::start(|_, _| Reply::ok(""));
    let esmd = Esmd::start(&moto, &function, &config);
    let tag = |r: &Value| {
        Some(format!(
            "{}:{}",
            r["dynamodb"]["Keys"]["id"]["S"].as_str()?,
            r["eventName"].as_str()?
        ))
    };
    let want: BTreeMap<String, BTreeSet<String>> = cases
        .iter()
        .filter(|c| c.0 != "numeric")
        .map(|c| {
            (
                c.0.to_string(),
                BTreeSet::from(["match:INSERT".to_string()]),
            )
        })
        .collect();
    for _ in 0..80 {
        if received(&function, tag).len() >= want.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The `numeric`-on-N mapping has read every record once the stream is idle: had it
    // (wrongly) matched one, it would have delivered it by then.
    esmd.wait_until_idle(Duration::from_secs(20));
    assert_eq!(received(&function, tag), want);
}
