//! The SQS source on its in-memory twin and a scripted function, on paused time: delivery and
//! deletion, partial failures, function errors and the visibility timeout, throttles,
//! shutdown's release, and a queue that appears later.

use std::sync::Arc;
use std::time::Duration;

use super::twin::MemorySqs;
use super::*;
use crate::config::Config;
use crate::invoke::twin::{returned, ScriptedFunction};
use crate::invoke::InvokeOutcome;
use crate::telemetry::events::recorder::Recorder;
use crate::telemetry::events::Event;
use crate::telemetry::MappingState;

const QUEUE: &str = "orders";

struct Harness {
    sqs: Arc<MemorySqs>,
    function: Arc<ScriptedFunction>,
    status: Arc<MappingStatus>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

fn start(extra: &str, sqs: Arc<MemorySqs>, function: ScriptedFunction) -> Harness {
    start_on(QUEUE, extra, sqs, function)
}

fn start_on(queue: &str, extra: &str, sqs: Arc<MemorySqs>, function: ScriptedFunction) -> Harness {
    let text = format!(
        "[[mapping]]\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:{queue}\"\n\
         function_name = \"f\"\n{extra}"
    );
    let mapping = Arc::new(Config::parse(&text).unwrap().mappings.remove(0));
    let status = Arc::new(MappingStatus::new(&mapping));
    let function = Arc::new(function);
    let shutdown = Shutdown::default();
    let source = SqsSource::new(
        Arc::clone(&mapping),
        sqs_settings(&mapping),
        sqs.clone(),
        function.clone(),
        Arc::clone(&status),
        shutdown.clone(),
    );
    let task = tokio::spawn(Arc::new(source).run());
    Harness {
        sqs,
        function,
        status,
        shutdown,
        task,
    }
}

fn sqs_settings(mapping: &MappingConfig) -> SqsSettings {
    match &mapping.settings {
        crate::config::SourceSettings::Sqs(s) => s.clone(),
        other => panic!("not an SQS mapping: {other:?}"),
    }
}

fn queue(visibility_secs: u64) -> Arc<MemorySqs> {
    let sqs = Arc::new(MemorySqs::default());
    sqs.create_queue(QUEUE, Duration::from_secs(visibility_secs));
    sqs
}

/// Waits (in paused time) until `fact` holds; fails after `limit` of virtual time.
async fn until(limit: Duration, fact: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !fact() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Harness {
    async fn stop(self) {
        self.shutdown.stop_receiving.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn delivered_messages_are_deleted_in_aws_record_shape() {
    let events = Recorder::start();
    let sqs = queue(30);
    for body in ["a", "b", "c"] {
        sqs.send(QUEUE, body, None);
    }
    let h = start("batch_size = 10", sqs, ScriptedFunction::ok());
    until(Duration::from_secs(5), || h.sqs.remaining(QUEUE).is_empty()).await;
    let bodies: Vec<String> = h.function.record_fields("body").concat();
    assert_eq!(bodies, ["a", "b", "c"]);
    let record = &h.function.calls()[0]["Records"][0];
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(
        record["eventSourceARN"],
        "arn:aws:sqs:us-east-1:123456789012:orders"
    );
    assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
    assert_eq!(h.status.metrics.snapshot()["deleted_events"], 3);
    assert_eq!(h.status.metrics.snapshot()["invoked_events"], 3);
    assert_eq!(events.count(Event::BatchInvoked), 1);
    assert_eq!(events.count(Event::MessagesDeleted), 1);
    assert_eq!(events.count(Event::BatchFailed), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_receive_is_logged_and_counted_then_made_again() {
    let events = Recorder::start();
    let sqs = queue(30);
    sqs.send(QUEUE, "a", None);
    sqs.fail_receives(2);
    let h = start("batch_size = 10", sqs, ScriptedFunction::ok());
    until(Duration::from_secs(30), || {
        h.sqs.remaining(QUEUE).is_empty()
    })
    .await;
    assert_eq!(h.function.record_fields("body").concat(), ["a"]);
    assert_eq!(events.count(Event::ReceiveFailed), 2);
    assert_eq!(events.count(Event::MappingErrored), 0);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_partial_failure_keeps_only_the_reported_message_until_its_visibility_timeout() {
    let events = Recorder::start();
    let sqs = queue(30);
    let failing = sqs.send(QUEUE, "bad", None);
    sqs.send(QUEUE, "good", None);
    let function = ScriptedFunction::new(move |event, _| {
        let ids: Vec<&str> = event["Records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["body"] == "bad")
            .map(|r| r["messageId"].as_str().unwrap())
            .collect();
        let failures: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"itemIdentifier":"{id}"}}"#))
            .collect();
        returned(&format!(
            r#"{{"batchItemFailures":[{}]}}"#,
            failures.join(",")
        ))
    });
    let h = start(
        "batch_size = 10\nfunction_response_types = [\"ReportBatchItemFailures\"]",
        sqs,
        function,
    );
    until(Duration::from_secs(5), || h.sqs.remaining(QUEUE) == ["bad"]).await;
    assert_eq!(
        h.sqs.visible(QUEUE),
        0,
        "the failed message stays invisible"
    );
    // It comes back after the visibility timeout, with its receive count raised.
    until(Duration::from_secs(40), || h.function.calls().len() >= 2).await;
    let second = &h.function.calls()[1]["Records"][0];
    assert_eq!(second["messageId"], failing.as_str());
    assert_eq!(second["attributes"]["ApproximateReceiveCount"], "2");
    assert!(events.count(Event::RecordsFailed) >= 1);
    assert!(h.status.metrics.snapshot()["failed_invoke_events"].as_u64() >= Some(1));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_function_error_deletes_nothing_and_the_batch_returns() {
    let sqs = queue(30);
    sqs.send(QUEUE, "x", None);
    let function = ScriptedFunction::new(|_, call| match call {
        0 => InvokeOutcome::FunctionError {
            kind: "Unhandled".into(),
            body: bytes::Bytes::new(),
        },
        _ => returned(""),
    });
    let h = start("", sqs, function);
    until(Duration::from_secs(5), || h.function.calls().len() == 1).await;
    assert_eq!(h.sqs.remaining(QUEUE), ["x"]);
    let started = tokio::time::Instant::now();
    until(Duration::from_secs(60), || {
        h.sqs.remaining(QUEUE).is_empty()
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(25),
        "redelivered only after the visibility timeout"
    );
    assert_eq!(h.function.calls().len(), 2);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn throttles_are_retried_while_the_messages_stay_invisible() {
    let sqs = queue(30);
    sqs.send(QUEUE, "x", None);
    let function = ScriptedFunction::new(|_, call| match call {
        0 | 1 => InvokeOutcome::Throttled {
            retry_after: None,
            message: "slow down".into(),
        },
        _ => returned(""),
    });
    let h = start("", sqs, function);
    until(Duration::from_secs(20), || {
        h.sqs.remaining(QUEUE).is_empty()
    })
    .await;
    assert_eq!(h.function.calls().len(), 3, "two throttles, then success");
    let metrics = h.status.metrics.snapshot();
    assert_eq!(
        metrics["failed_invoke_events"], 0,
        "throttles are not failures"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_releases_gathered_messages_at_once_without_invoking() {
    let events = Recorder::start();
    let sqs = queue(300);
    sqs.send(QUEUE, "a", None);
    sqs.send(QUEUE, "b", None);
    let h = start(
        "batch_size = 100\nmaximum_batching_window_in_seconds = 60",
        sqs,
        ScriptedFunction::ok(),
    );
    until(Duration::from_secs(5), || h.sqs.visible(QUEUE) == 0).await;
    let sqs = Arc::clone(&h.sqs);
    let function = Arc::clone(&h.function);
    h.stop().await;
    assert_eq!(
        sqs.visible(QUEUE),
        2,
        "released, not left to the 300 s timeout"
    );
    assert!(function.calls().is_empty());
    // The gathered batch is released; the long poll that was in flight at the stop may
    // receive the released messages once more and release them too.
    assert!(events.count(Event::MessagesReleased) >= 1);
    assert_eq!(events.count(Event::BatchInvoked), 0);
}

/// A stop during an idle long poll (a reload or an API update of the mapping): the poll is
/// already on SQS's side, and what it returns is released at once instead of staying
/// invisible for the visibility timeout.
#[tokio::test(start_paused = true)]
async fn a_long_poll_in_flight_at_a_stop_releases_what_it_receives() {
    let events = Recorder::start();
    let sqs = queue(300);
    let h = start("", sqs, ScriptedFunction::ok());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sqs = Arc::clone(&h.sqs);
    let function = Arc::clone(&h.function);
    h.stop().await;
    sqs.send(QUEUE, "late", None);
    until(Duration::from_secs(5), || {
        events.count(Event::MessagesReleased) == 1
    })
    .await;
    assert_eq!(sqs.visible(QUEUE), 1, "visible again, not after 300 s");
    assert!(function.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_missing_queue_is_an_error_state_that_recovers_when_the_queue_appears() {
    let sqs = Arc::new(MemorySqs::default());
    let h = start("", Arc::clone(&sqs), ScriptedFunction::ok());
    until(Duration::from_secs(5), || {
        h.status.state() == MappingState::Error
    })
    .await;
    let error = h.status.snapshot()["last_error"].to_string();
    assert!(error.contains(QUEUE), "{error}");
    sqs.create_queue(QUEUE, Duration::from_secs(30));
    sqs.send(QUEUE, "late", None);
    until(Duration::from_secs(60), || sqs.remaining(QUEUE).is_empty()).await;
    assert_eq!(h.status.state(), MappingState::Enabled);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn fifo_groups_stay_in_order_across_a_failure() {
    let sqs = Arc::new(MemorySqs::default());
    let name = "orders.fifo";
    sqs.create_queue(name, Duration::from_secs(30));
    for body in ["a1", "a2", "a3"] {
        sqs.send(name, body, Some("a"));
    }
    let function = ScriptedFunction::new(|event, call| {
        let first = event["Records"][0]["body"].as_str().unwrap_or_default();
        if call == 0 && first == "a1" {
            // a1 succeeds, a2 fails: a2 and everything after it in the group is kept.
            let id = event["Records"][1]["messageId"]
                .as_str()
                .unwrap_or_default();
            return returned(&format!(
                r#"{{"batchItemFailures":[{{"itemIdentifier":"{id}"}}]}}"#
            ));
        }
        returned("")
    });
    let text = "batch_size = 10\nfunction_response_types = [\"ReportBatchItemFailures\"]";
    let h = start_on(name, text, Arc::clone(&sqs), function);
    until(Duration::from_secs(60), || sqs.remaining(name).is_empty()).await;
    let bodies = h.function.record_fields("body");
    assert_eq!(bodies[0], ["a1", "a2", "a3"]);
    assert_eq!(
        bodies[1],
        ["a2", "a3"],
        "the group resumes at its failed message"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_mapping_samples_its_backlog_only_while_messages_flow() {
    let sqs = queue(30);
    let h = start("batch_size = 10", sqs, ScriptedFunction::ok());
    // Ten idle minutes: the first sample, then nothing (each long poll came back empty).
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.sqs.depth_samples(), 1);
    assert_eq!(
        h.status
            .metrics
            .sqs_backlog
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Messages wake the sampler; it samples while they flow, then rests again.
    for body in ["a", "b", "c"] {
        h.sqs.send(QUEUE, body, None);
    }
    until(Duration::from_secs(25), || {
        h.sqs.remaining(QUEUE).is_empty()
    })
    .await;
    tokio::time::sleep(DEPTH_SAMPLE_INTERVAL * 3).await;
    let after_burst = h.sqs.depth_samples();
    assert!(
        after_burst >= 2,
        "sampled when messages came: {after_burst}"
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(h.sqs.depth_samples(), after_burst, "and rests again");
    h.stop().await;
}
