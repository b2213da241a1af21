//! The failure policy against an in-memory function and destination.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chrono::Utc;
use futures::future::BoxFuture;
use proptest::prelude::*;

use super::*;
use crate::checkpoint::SequenceNumber;
use crate::config::{Config, FailureDestination};
use crate::failure::destination::{Delivery, DestinationError};
use crate::telemetry::MappingStatus;

type Behaviour = Box<dyn Fn(&[String]) -> InvokeOutcome + Send + Sync>;

/// A function that sees the `kinesis.sequenceNumber`s of each batch.
struct FakeFunction {
    behaviour: Behaviour,
    calls: Mutex<Vec<Vec<String>>>,
}

impl Invoker for FakeFunction {
    fn invoke<'a>(&'a self, _: &'a str, payload: Bytes) -> BoxFuture<'a, InvokeOutcome> {
        let event: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let seqs: Vec<String> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["seq"].as_str().unwrap().to_string())
            .collect();
        let outcome = (self.behaviour)(&seqs);
        self.calls.lock().unwrap().push(seqs);
        Box::pin(async move { outcome })
    }
}

#[derive(Default)]
struct FakeDestination {
    sent: Mutex<Vec<serde_json::Value>>,
    fail_first: Mutex<u32>,
}

impl DestinationSender for FakeDestination {
    fn send<'a>(
        &'a self,
        _: &'a FailureDestination,
        delivery: &'a Delivery,
    ) -> BoxFuture<'a, Result<(), DestinationError>> {
        let mut fail = self.fail_first.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Box::pin(async {
                Err(DestinationError::Transient {
                    arn: "q".into(),
                    message: "unavailable".into(),
                })
            });
        }
        self.sent
            .lock()
            .unwrap()
            .push(serde_json::from_str(&delivery.record).unwrap());
        Box::pin(async { Ok(()) })
    }
}

fn mapping(extra: &str) -> Arc<MappingConfig> {
    let text = format!(
        "[[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:123456789012:stream/s\"\n\
         function_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n\
         destination_config = {{ on_failure = {{ destination_arn = \"arn:aws:sqs:us-east-1:123456789012:dlq\" }} }}\n{extra}"
    );
    Arc::new(Config::parse(&text).unwrap().mappings.remove(0))
}

fn records(n: usize) -> Vec<StreamRecord> {
    (1..=n)
        .map(|i| StreamRecord {
            sequence_number: SequenceNumber::parse(i.to_string()).unwrap(),
            key: format!("k{}", i % 3),
            arrival: Utc::now(),
            json: crate::payload::RecordJson::serialize(&serde_json::json!({"seq": i.to_string()}))
                .unwrap(),
        })
        .collect()
}

fn processor(
    extra: &str,
    behaviour: impl Fn(&[String]) -> InvokeOutcome + Send + Sync + 'static,
) -> (Processor, Arc<FakeFunction>, Arc<FakeDestination>) {
    let mapping = mapping(extra);
    let function = Arc::new(FakeFunction {
        behaviour: Box::new(behaviour),
        calls: Mutex::new(Vec::new()),
    });
    let destination = Arc::new(FakeDestination::default());
    let p = Processor {
        status: Arc::new(MappingStatus::new(&mapping)),
        mapping: Arc::clone(&mapping),
        kind: StreamKind::Kinesis,
        function_arn: "arn:aws:lambda:us-east-1:123456789012:function:f".into(),
        invoker: function.clone(),
        destinations: destination.clone(),
        shutdown: Default::default(),
        policy: StreamPolicy::from(mapping.stream_settings().unwrap()),
        on_failure: mapping.stream_settings().unwrap().on_failure.clone(),
        delays: RetryPolicies::IMMEDIATE,
    };
    (p, function, destination)
}

fn ok() -> InvokeOutcome {
    InvokeOutcome::Returned { body: Bytes::new() }
}

fn error() -> InvokeOutcome {
    InvokeOutcome::FunctionError {
        kind: "Unhandled".into(),
        body: Bytes::new(),
    }
}

fn partial(seq: &str) -> InvokeOutcome {
    InvokeOutcome::Returned {
        body: Bytes::from(format!(
            r#"{{"batchItemFailures":[{{"itemIdentifier":"{seq}"}}]}}"#
        )),
    }
}

#[tokio::test]
async fn a_retry_limit_of_n_allows_n_plus_one_invocations() {
    let (p, function, destination) = processor("maximum_retry_attempts = 2", |_| error());
    let result = p.process("shard-1", &records(4)).await;
    assert_eq!(
        result,
        Processed {
            settled: 4,
            interrupted: false
        }
    );
    assert_eq!(function.calls.lock().unwrap().len(), 3);
    let sent = destination.sent.lock().unwrap();
    assert_eq!(sent.len(), 1);
    let r = &sent[0];
    assert_eq!(r["requestContext"]["condition"], "RetryAttemptsExhausted");
    assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(r["responseContext"]["functionError"], "Unhandled");
    assert_eq!(r["KinesisBatchInfo"]["startSequenceNumber"], "1");
    assert_eq!(r["KinesisBatchInfo"]["endSequenceNumber"], "4");
    assert_eq!(r["KinesisBatchInfo"]["batchSize"], 4);
}

#[tokio::test]
async fn throttles_do_not_count_as_retries() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let (p, function, destination) = processor("maximum_retry_attempts = 0", move |_| {
        let mut n = c.lock().unwrap();
        *n += 1;
        if *n <= 3 {
            InvokeOutcome::Throttled {
                retry_after: None,
                message: "slow down".into(),
            }
        } else {
            ok()
        }
    });
    assert_eq!(p.process("s", &records(2)).await.settled, 2);
    assert_eq!(function.calls.lock().unwrap().len(), 4);
    assert!(destination.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_partial_response_retries_from_the_lowest_failure() {
    let (p, function, destination) = processor(
        "function_response_types = [\"ReportBatchItemFailures\"]\nmaximum_retry_attempts = 1",
        |seqs| {
            if seqs.contains(&"3".to_string()) {
                partial("3")
            } else {
                ok()
            }
        },
    );
    assert_eq!(p.process("s", &records(5)).await.settled, 5);
    let calls = function.calls.lock().unwrap();
    assert_eq!(calls[0], ["1", "2", "3", "4", "5"]);
    // The checkpoint moved to 3: from there it is a new batch, which a limit of 1 allows two
    // invocations (AWS's recording, test_kinesis_report_batch_item_failures).
    assert_eq!(calls[1], ["3", "4", "5"]);
    assert_eq!(calls[2], ["3", "4", "5"]);
    assert_eq!(calls.len(), 3);
    let sent = destination.sent.lock().unwrap();
    assert_eq!(sent[0]["KinesisBatchInfo"]["startSequenceNumber"], "3");
    assert_eq!(sent[0]["KinesisBatchInfo"]["batchSize"], 3);
    assert!(sent[0]["responseContext"]["functionError"].is_null());
    assert_eq!(sent[0]["requestContext"]["approximateInvokeCount"], 2);
}

#[tokio::test]
async fn old_records_are_given_up_without_a_response_context() {
    let (p, function, destination) = processor("maximum_record_age_in_seconds = 60", |_| ok());
    let mut old = records(2);
    for r in &mut old {
        r.arrival = Utc::now() - chrono::Duration::seconds(120);
    }
    assert_eq!(p.process("s", &old).await.settled, 2);
    assert!(function.calls.lock().unwrap().is_empty());
    let sent = destination.sent.lock().unwrap();
    assert_eq!(sent[0]["requestContext"]["condition"], "RecordAgeExceeded");
    assert!(sent[0].get("responseContext").is_none());
}

#[tokio::test]
async fn a_failed_destination_is_retried_not_dropped() {
    let (p, _, destination) = processor("maximum_retry_attempts = 0", |_| error());
    *destination.fail_first.lock().unwrap() = 3;
    assert_eq!(p.process("s", &records(1)).await.settled, 1);
    assert_eq!(destination.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_leaves_a_failing_batch_unsettled() {
    let (p, _, destination) = processor("", |_| error());
    p.shutdown.stop_receiving.cancel();
    let result = p.process("s", &records(3)).await;
    assert_eq!(
        result,
        Processed {
            settled: 0,
            interrupted: true
        }
    );
    assert!(destination.sent.lock().unwrap().is_empty());
}

proptest! {
    /// With bisection and no retries, every record ends up either delivered in a successful
    /// invocation or reported to the destination — never both, never neither — and each
    /// poison record is isolated in a destination record of its own.
    #[test]
    fn bisection_isolates_poison_records(
        n in 1usize..40,
        poison in prop::collection::btree_set(1usize..40, 0..5),
    ) {
        let poison: std::collections::BTreeSet<String> =
            poison.into_iter().filter(|p| *p <= n).map(|p| p.to_string()).collect();
        let bad = poison.clone();
        let (p, function, destination) = processor(
            "bisect_batch_on_function_error = true\nmaximum_retry_attempts = 0",
            move |seqs| if seqs.iter().any(|s| bad.contains(s)) { error() } else { ok() },
        );
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let result = rt.block_on(p.process("s", &records(n)));
        prop_assert_eq!(result, Processed { settled: n, interrupted: false });
        let mut delivered = std::collections::BTreeSet::new();
        for call in function.calls.lock().unwrap().iter() {
            if !call.iter().any(|s| poison.contains(s)) {
                for s in call { prop_assert!(delivered.insert(s.clone()), "delivered twice: {}", s); }
            }
        }
        let mut reported = std::collections::BTreeSet::new();
        for r in destination.sent.lock().unwrap().iter() {
            let info = &r["KinesisBatchInfo"];
            let start: usize = info["startSequenceNumber"].as_str().unwrap().parse().unwrap();
            let end: usize = info["endSequenceNumber"].as_str().unwrap().parse().unwrap();
            prop_assert_eq!(start, end, "a poison record is isolated");
            reported.insert(start.to_string());
        }
        prop_assert_eq!(&reported, &poison);
        for i in 1..=n {
            let s = i.to_string();
            prop_assert!(delivered.contains(&s) ^ reported.contains(&s), "record {} settled once", s);
        }
    }
}
