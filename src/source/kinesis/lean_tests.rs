//! The lean GetRecords against the SDK's: scripted answers, then both clients reading the same
//! records from a moto server.

use std::time::Duration;

use super::*;
use crate::source::stream::StreamRecord;

fn sdk_kinesis(client: aws_sdk_kinesis::Client, stream: &str) -> SdkKinesis {
    SdkKinesis::new(
        client,
        &format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"),
        stream,
        "us-east-1",
        "arn:aws:iam::123456789012:role/esmd".into(),
    )
}

async fn offline_sdk() -> SdkKinesis {
    let ctx = crate::aws::moto::context("http://127.0.0.1:9", crate::config::AwsClient::Sdk).await;
    sdk_kinesis(ctx.kinesis(), "s")
}

#[tokio::test]
async fn an_answer_is_read_with_escapes_and_without_optional_fields() {
    let sdk = offline_sdk().await;
    // `\/` is a legal JSON escape of `/`; no arrival time; a closed shard's last answer.
    let body = br#"{"Records":[{"SequenceNumber":"7","Data":"YS\/b","PartitionKey":"k\"1"},
        {"SequenceNumber":"12","Data":"","PartitionKey":"k","ApproximateArrivalTimestamp":1545084650.987}],
        "MillisBehindLatest":0}"#;
    let batch = read_records(body, &sdk, "shardId-0").unwrap();
    assert_eq!(batch.next_iterator, None);
    assert_eq!(batch.millis_behind_latest, Some(0));
    assert_eq!(batch.records.len(), 2);
    let first: serde_json::Value = serde_json::from_str(batch.records[0].json.get()).unwrap();
    assert_eq!(first["kinesis"]["data"], "YS/b");
    assert_eq!(first["kinesis"]["partitionKey"], "k\"1");
    assert_eq!(batch.records[0].key, "k\"1");
    let second = &batch.records[1];
    assert_eq!(second.sequence_number.as_str(), "12");
    assert_eq!(second.arrival.timestamp_millis(), 1_545_084_650_987);
    assert!(second
        .json
        .get()
        .contains(r#""approximateArrivalTimestamp":1545084650.987"#));
}

#[tokio::test]
async fn data_that_is_not_base64_refuses_the_answer() {
    let sdk = offline_sdk().await;
    for data in ["not base64!", "YQ", "YR==", r#"\"},\"x\":\""#] {
        let body = format!(
            r#"{{"Records":[{{"SequenceNumber":"9","Data":"{data}","PartitionKey":"k"}}]}}"#
        );
        let e = read_records(body.as_bytes(), &sdk, "s").unwrap_err();
        assert!(
            matches!(&e, StreamError::Transient(m) if m.contains("record 9") && m.contains("malformed")),
            "{data}: {e:?}"
        );
    }
    let e = read_records(b"<html>", &sdk, "s").unwrap_err();
    assert!(matches!(e, StreamError::Transient(_)), "{e:?}");
}

#[test]
fn arrival_times_are_read_exactly_from_the_decimal_text() {
    for (text, millis) in [
        ("1545084650.987", Some(1_545_084_650_987)),
        ("1.545084650987E9", Some(1_545_084_650_987)),
        ("1.441215410867E9", Some(1_441_215_410_867)),
        ("1764720462.5367891", Some(1_764_720_462_537)),
        ("1764720462.5364", Some(1_764_720_462_536)),
        ("0.00049", Some(0)),
        ("1764720462", Some(1_764_720_462_000)),
        ("1.5E9", Some(1_500_000_000_000)),
        ("15e-1", Some(1_500)),
        ("0.0005", Some(1)),
        ("-1.5", None),
        ("1.2.3", None),
        ("\"1\"", None),
        ("9e30", None),
    ] {
        assert_eq!(epoch_millis(text), millis, "{text}");
    }
    // The SDK reads the same number through an f64, a few nanoseconds short: its own
    // `to_millis` says …986; rounded, it is exact.
    let sdk = aws_smithy_types::DateTime::from_secs_f64(1545084650.987);
    assert_eq!(sdk.to_millis().unwrap(), 1_545_084_650_986);
    assert_eq!(
        crate::source::kinesis::nearest_millis(&sdk),
        Some(1_545_084_650_987)
    );
}

mod on_moto {
    use super::*;
    use crate::aws::moto::{context, moto};
    use crate::config::AwsClient;

    /// The same record. Both clients round the arrival time to the millisecond (the unit
    /// tests above hold each to the exact value), but moto writes microseconds and the SDK
    /// reads them through an `f64`, so at an exact half millisecond the two may round apart.
    fn same(a: &StreamRecord, b: &StreamRecord) {
        assert_eq!(a.sequence_number, b.sequence_number);
        assert_eq!(a.key, b.key);
        let apart = (b.arrival - a.arrival).num_milliseconds();
        assert!(apart.abs() <= 1, "{} / {}", a.arrival, b.arrival);
        let without_arrival = |r: &StreamRecord| {
            let mut v: serde_json::Value = serde_json::from_str(r.json.get()).unwrap();
            v["kinesis"]["approximateArrivalTimestamp"] = serde_json::Value::Null;
            v
        };
        assert_eq!(without_arrival(a), without_arrival(b));
    }

    /// Binary data, JSON data and a key that needs escaping, read by each client from the
    /// same iterator: the same records, byte for byte; a bad iterator is the same error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn both_clients_read_records_alike() {
        let moto = moto();
        let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
        kinesis
            .create_stream()
            .stream_name("alike")
            .shard_count(1)
            .send()
            .await
            .unwrap();
        let data: [(&str, Vec<u8>); 3] = [
            ("binary", (0..=255u8).rev().collect()),
            (
                "json \"quoted\" ü",
                br#"{"temperature":70,"path":"a/b"}"#.to_vec(),
            ),
            ("k", b"x".to_vec()),
        ];
        for (key, bytes) in &data {
            kinesis
                .put_record()
                .stream_name("alike")
                .partition_key(*key)
                .data(aws_sdk_kinesis::primitives::Blob::new(bytes.clone()))
                .send()
                .await
                .unwrap();
        }
        let sdk = sdk_kinesis(kinesis.clone(), "alike");
        let shard = sdk.list_shards().await.unwrap().remove(0).shard_id;
        let ctx = context(&moto.endpoint, AwsClient::Lean).await;
        let signed = ctx
            .lean_client(
                crate::aws::Service::Kinesis,
                "kinesis",
                Duration::from_secs(30),
            )
            .await
            .unwrap()
            .unwrap();
        let lean = LeanKinesis::new(sdk.clone(), Arc::new(kinesis_json(signed)));
        let iterator = sdk
            .shard_iterator(&shard, &IteratorPosition::TrimHorizon)
            .await
            .unwrap();
        let by_sdk = sdk.get_records(&shard, &iterator, 100).await.unwrap();
        let by_lean = lean.get_records(&shard, &iterator, 100).await.unwrap();
        assert_eq!(by_sdk.records.len(), 3);
        assert_eq!(by_lean.records.len(), 3);
        for (a, b) in by_sdk.records.iter().zip(&by_lean.records) {
            same(a, b);
        }
        assert_eq!(by_sdk.millis_behind_latest, by_lean.millis_behind_latest);
        assert!(by_lean.next_iterator.is_some());
        // Limits are kept.
        let two = lean.get_records(&shard, &iterator, 2).await.unwrap();
        assert_eq!(two.records.len(), 2);

        let bad = "not-an-iterator";
        let sdk_error = sdk.get_records(&shard, bad, 10).await.unwrap_err();
        let lean_error = lean.get_records(&shard, bad, 10).await.unwrap_err();
        assert_eq!(
            std::mem::discriminant(&sdk_error),
            std::mem::discriminant(&lean_error),
            "{sdk_error:?} / {lean_error:?}"
        );
    }
}
