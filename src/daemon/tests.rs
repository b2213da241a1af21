//! The daemon on in-memory twins, on paused time: an unusable checkpoint store ends the whole
//! process after a drain, with an error that names the shard.

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
