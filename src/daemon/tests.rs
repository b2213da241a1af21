//! The daemon on in-memory twins, on paused time: an unusable checkpoint store ends the whole
//! process after a drain, with an error that names the shard; a call that never answers does
//! not hold the exit past the shutdown deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::checkpoint::memory::MemoryStore;
use crate::failure::destination::NoDestination;
use crate::invoke::twin::ScriptedFunction;
use crate::source::sqs::twin::MemorySqs;
use crate::source::stream::twin::MemoryStream;

#[tokio::test(start_paused = true)]
async fn a_failing_store_drains_every_mapping_and_ends_the_daemon_with_an_error() {
    let config = Config::parse(
        "[http]\nlisten = \"\"\n[daemon]\nshutdown_timeout_seconds = 5\n\
         [[mapping]]\nevent_source_arn = \"arn:aws:kinesis:us-east-1:123456789012:stream/s\"\n\
         function_name = \"f\"\nstarting_position = \"TRIM_HORIZON\"\n\
         [[mapping]]\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:orders\"\n\
         function_name = \"f\"\n",
    )
    .unwrap();
    let stream = Arc::new(MemoryStream::default());
    stream.add_shard("shardId-000000000000", &[]);
    for i in 0..3 {
        stream.put("shardId-000000000000", "k", &format!("r{i}"));
    }
    let sqs = Arc::new(MemorySqs::default());
    sqs.create_queue("orders", Duration::from_secs(30));
    let store = Arc::new(MemoryStore::new("host"));
    store.fail_writes();
    let function = Arc::new(ScriptedFunction::ok());
    let clients = Clients {
        sqs: sqs.clone(),
        invoker: function.clone(),
        streams: Arc::new(move |_| Some(stream.clone() as Arc<dyn StreamApi>)),
        destinations: Arc::new(NoDestination),
        open_store: Arc::new(move |_| {
            let store = store.clone() as Arc<dyn CheckpointStore>;
            Box::pin(async move {
                Ok(OpenedStore {
                    checkpoints: store,
                    catalog: None,
                    lock: None,
                })
            })
        }),
        lambda_upstream: None,
    };
    let (_reload, reloads) = mpsc::unbounded_channel();
    let daemon = run_with_reload(config, clients, CancellationToken::new(), reloads);
    let ended = tokio::time::timeout(Duration::from_secs(120), daemon)
        .await
        .expect("the daemon ends by itself, without a SIGTERM");
    match ended {
        Err(DaemonError::Fatal(reason)) => {
            assert!(reason.contains("shardId-000000000000"), "{reason}");
            assert!(reason.contains("disk I/O error"), "{reason}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    // The batch in flight was delivered (once); nothing was checkpointed past it.
    assert_eq!(function.record_fields("data").concat(), ["r0", "r1", "r2"]);
}

/// An SQS whose DeleteMessageBatch never answers (a stalled connection), otherwise the twin.
struct StalledDeletes(Arc<MemorySqs>);

impl crate::source::sqs::client::SqsApi for StalledDeletes {
    fn queue_url<'a>(
        &'a self,
        queue_name: &'a str,
        account_id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<String, crate::source::sqs::client::SqsError>> {
        self.0.queue_url(queue_name, account_id)
    }
    fn visibility_timeout<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Duration, crate::source::sqs::client::SqsError>>
    {
        self.0.visibility_timeout(queue_url)
    }
    fn queue_depth<'a>(
        &'a self,
        queue_url: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(i64, i64), crate::source::sqs::client::SqsError>>
    {
        self.0.queue_depth(queue_url)
    }
    fn receive<'a>(
        &'a self,
        queue_url: &'a str,
        max_messages: usize,
        wait: Duration,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Vec<crate::payload::sqs::SqsMessage>, crate::source::sqs::client::SqsError>,
    > {
        self.0.receive(queue_url, max_messages, wait)
    }
    fn delete<'a>(
        &'a self,
        _queue_url: &'a str,
        _entries: &'a [crate::source::sqs::client::ReceiptRef<'a>],
    ) -> futures::future::BoxFuture<
        'a,
        Result<Vec<crate::source::sqs::client::FailedEntry>, crate::source::sqs::client::SqsError>,
    > {
        Box::pin(futures::future::pending())
    }
    fn change_visibility<'a>(
        &'a self,
        queue_url: &'a str,
        entries: &'a [(crate::source::sqs::client::ReceiptRef<'a>, Duration)],
    ) -> futures::future::BoxFuture<
        'a,
        Result<Vec<crate::source::sqs::client::FailedEntry>, crate::source::sqs::client::SqsError>,
    > {
        self.0.change_visibility(queue_url, entries)
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_answers_does_not_hold_the_exit_past_the_deadline() {
    let config = Config::parse(
        "[http]\nlisten = \"\"\n[daemon]\nshutdown_timeout_seconds = 5\n\
         [[mapping]]\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:orders\"\n\
         function_name = \"f\"\n",
    )
    .unwrap();
    let sqs = Arc::new(MemorySqs::default());
    sqs.create_queue("orders", Duration::from_secs(30));
    sqs.send("orders", "m", None);
    let function = Arc::new(ScriptedFunction::ok());
    let clients = Clients {
        sqs: Arc::new(StalledDeletes(sqs.clone())),
        invoker: function.clone(),
        streams: Arc::new(|_| None),
        destinations: Arc::new(NoDestination),
        open_store: Arc::new(|_| {
            Box::pin(async {
                Ok(OpenedStore {
                    checkpoints: Arc::new(MemoryStore::new("host")) as Arc<dyn CheckpointStore>,
                    catalog: None,
                    lock: None,
                })
            })
        }),
        lambda_upstream: None,
    };
    let shutdown = CancellationToken::new();
    let (_reload, reloads) = mpsc::unbounded_channel();
    let daemon = tokio::spawn(run_with_reload(config, clients, shutdown.clone(), reloads));
    while function.calls().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The message was processed; its delete hangs. SIGTERM: 5 s of drain, then the grace.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sigterm = tokio::time::Instant::now();
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(60), daemon)
        .await
        .expect("the daemon exits although a delete never answers")
        .unwrap();
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        sigterm.elapsed() <= Duration::from_secs(5) + ABANDON_GRACE + Duration::from_millis(100),
        "{:?}",
        sigterm.elapsed()
    );
}
