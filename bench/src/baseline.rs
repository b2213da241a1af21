//! The baseline: the least work that moves records from the source to the function with the
//! same SDK calls esmd makes. SQS: receive until the batch is full (or a receive comes back
//! empty), invoke once, delete in batches of 10; Kinesis: get records, invoke, next iterator.
//! No filtering, no failure handling, no checkpoints: the physical limit of the backend.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use base64::Engine;
use serde_json::json;

/// Runs until the harness stops it: a message that comes back (a lost delete, an emulator
/// race) is still drained, as esmd would drain it.
pub async fn sqs(
    queue_url: String,
    function: String,
    batch: usize,
    loops: usize,
) -> anyhow::Result<()> {
    let config = aws_config::load_from_env().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let tasks = (0..loops)
        .map(|_| {
            tokio::spawn(sqs_loop(
                sqs.clone(),
                lambda.clone(),
                queue_url.clone(),
                function.clone(),
                batch,
            ))
        })
        .collect();
    join(tasks).await
}

async fn sqs_loop(
    sqs: aws_sdk_sqs::Client,
    lambda: aws_sdk_lambda::Client,
    url: String,
    function: String,
    batch: usize,
) -> anyhow::Result<()> {
    loop {
        let mut messages = Vec::new();
        while messages.len() < batch {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages((batch - messages.len()).min(10) as i32)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .wait_time_seconds(if messages.is_empty() { 1 } else { 0 })
                .send()
                .await?;
            let got = out.messages.unwrap_or_default();
            if got.is_empty() {
                break;
            }
            messages.extend(got);
        }
        if messages.is_empty() {
            continue;
        }
        let records: Vec<_> = messages
            .iter()
            .map(|m| json!({"messageId": m.message_id, "body": m.body, "eventSource": "aws:sqs"}))
            .collect();
        invoke(&lambda, &function, records).await?;
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            sqs.delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await?;
        }
    }
}

pub async fn kinesis(
    stream: String,
    function: String,
    batch: usize,
    count: usize,
) -> anyhow::Result<()> {
    let config = aws_config::load_from_env().await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let lambda = aws_sdk_lambda::Client::new(&config);
    let shards = kinesis.list_shards().stream_name(&stream).send().await?;
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for shard in shards.shards() {
        let (kinesis, lambda, done, stream, function, shard_id) = (
            kinesis.clone(),
            lambda.clone(),
            Arc::clone(&done),
            stream.clone(),
            function.clone(),
            shard.shard_id().to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut iterator = kinesis
                .get_shard_iterator()
                .stream_name(&stream)
                .shard_id(&shard_id)
                .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator
                .unwrap_or_default();
            while done.load(Ordering::Relaxed) < count {
                let out = kinesis
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(batch as i32)
                    .send()
                    .await?;
                iterator = out.next_shard_iterator().unwrap_or_default().to_string();
                if out.records().is_empty() {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
                let records: Vec<_> = out
                    .records()
                    .iter()
                    .map(|r| json!({"kinesis": {
                        "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
                        "sequenceNumber": r.sequence_number(), "partitionKey": r.partition_key(),
                    }}))
                    .collect();
                invoke(&lambda, &function, records).await?;
                done.fetch_add(out.records().len(), Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    join(tasks).await
}

/// One synchronous Invoke with `{"Records": records}`.
async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    records: Vec<serde_json::Value>,
) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(&json!({ "Records": records }))?;
    lambda
        .invoke()
        .function_name(function)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload))
        .send()
        .await?;
    Ok(())
}

pub(crate) async fn join(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<()> {
    for t in tasks {
        t.await??;
    }
    Ok(())
}
