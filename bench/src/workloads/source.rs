//! The source a run reads (a queue, a stream or a table), created fresh for each run, and the
//! records preloaded into it and sent during the latency phase.

use std::time::Instant;

use super::{Backend, Workload, ACCOUNT, RECORD_BYTES, REGION};
/// A record's payload: its index, then padding to 1 KiB.
fn payload(index: usize) -> String {
    let mut s = format!("{index}|");
    s.extend(std::iter::repeat_n('x', RECORD_BYTES - s.len()));
    s
}

/// The source a run reads, created fresh for each run.
pub(crate) enum Source {
    Queue {
        name: String,
        url: String,
        fifo: bool,
    },
    Stream {
        name: String,
        shards: usize,
    },
    Table {
        name: String,
        stream_arn: String,
    },
}

impl Source {
    pub(crate) async fn create(
        backend: &Backend,
        w: &Workload,
        tag: &str,
    ) -> anyhow::Result<Source> {
        Ok(match *w {
            Workload::Sqs { .. } | Workload::Idle { .. } => {
                let fifo = matches!(w, Workload::Sqs { fifo: true, .. });
                let name = format!("bench-{tag}{}", if fifo { ".fifo" } else { "" });
                let client = aws_sdk_sqs::Client::new(&backend.sdk);
                let mut req = client.create_queue().queue_name(&name);
                if let Workload::Sqs {
                    concurrency: Some(_),
                    ..
                } = w
                {
                    req = req.attributes(
                        aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                        "600",
                    );
                }
                if fifo {
                    req = req
                        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
                        .attributes(
                            aws_sdk_sqs::types::QueueAttributeName::ContentBasedDeduplication,
                            "true",
                        );
                }
                let url = req.send().await?.queue_url.unwrap_or_default();
                Source::Queue { name, url, fifo }
            }
            Workload::Kinesis { shards, .. } => {
                let name = format!("bench-{tag}");
                match &backend.loopback {
                    Some(l) => l.create_stream(&name, shards),
                    None => {
                        let client = aws_sdk_kinesis::Client::new(&backend.sdk);
                        client
                            .create_stream()
                            .stream_name(&name)
                            .shard_count(shards as i32)
                            .send()
                            .await?;
                    }
                }
                Source::Stream { name, shards }
            }
            Workload::DynamoDb => {
                use aws_sdk_dynamodb::types::*;
                let name = format!("bench-{tag}");
                let client = aws_sdk_dynamodb::Client::new(&backend.sdk);
                let out = client
                    .create_table()
                    .table_name(&name)
                    .billing_mode(BillingMode::PayPerRequest)
                    .attribute_definitions(
                        AttributeDefinition::builder()
                            .attribute_name("pk")
                            .attribute_type(ScalarAttributeType::S)
                            .build()?,
                    )
                    .key_schema(
                        KeySchemaElement::builder()
                            .attribute_name("pk")
                            .key_type(KeyType::Hash)
                            .build()?,
                    )
                    .stream_specification(
                        StreamSpecification::builder()
                            .stream_enabled(true)
                            .stream_view_type(StreamViewType::NewImage)
                            .build()?,
                    )
                    .send()
                    .await?;
                let stream_arn = out
                    .table_description()
                    .and_then(|t| t.latest_stream_arn())
                    .unwrap_or_default()
                    .to_string();
                Source::Table { name, stream_arn }
            }
        })
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Source::Queue { name, .. }
            | Source::Stream { name, .. }
            | Source::Table { name, .. } => name,
        }
    }

    pub(super) fn arn(&self) -> String {
        match self {
            Source::Queue { name, .. } => format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"),
            Source::Stream { name, .. } => {
                format!("arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}")
            }
            Source::Table { stream_arn, .. } => stream_arn.clone(),
        }
    }

    /// Loads records `range` before the runner starts.
    pub(crate) async fn preload(
        &self,
        backend: &Backend,
        range: std::ops::Range<usize>,
    ) -> anyhow::Result<()> {
        match (self, &backend.loopback) {
            (Source::Queue { name, fifo, .. }, Some(l)) => {
                l.preload(
                    name,
                    range.map(|i| (payload(i), fifo.then(|| format!("g{}", i % 50)))),
                );
            }
            (Source::Stream { name, .. }, Some(l)) => {
                l.preload_stream(
                    name,
                    range.map(|i| (i.to_string(), payload(i).into_bytes())),
                );
            }
            (Source::Queue { url, fifo, .. }, None) => {
                let client = aws_sdk_sqs::Client::new(&backend.sdk);
                let chunks: Vec<Vec<usize>> = range
                    .collect::<Vec<_>>()
                    .chunks(10)
                    .map(<[usize]>::to_vec)
                    .collect();
                let sends = chunks.into_iter().map(|chunk| {
                    let (client, url) = (client.clone(), url.clone());
                    async move {
                        let mut req = client.send_message_batch().queue_url(url);
                        for i in chunk {
                            let mut e = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .message_body(payload(i));
                            if *fifo {
                                e = e.message_group_id(format!("g{}", i % 50));
                            }
                            req = req.entries(e.build()?);
                        }
                        req.send().await?;
                        Ok::<_, anyhow::Error>(())
                    }
                });
                for r in futures::future::join_all(sends).await {
                    r?;
                }
            }
            (Source::Stream { name, .. }, None) => {
                let client = aws_sdk_kinesis::Client::new(&backend.sdk);
                let all: Vec<usize> = range.collect();
                for chunk in all.chunks(500) {
                    let mut req = client.put_records().stream_name(name);
                    for &i in chunk {
                        req = req.records(
                            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                                .partition_key(i.to_string())
                                .data(aws_sdk_kinesis::primitives::Blob::new(payload(i)))
                                .build()?,
                        );
                    }
                    req.send().await?;
                }
            }
            (Source::Table { name, .. }, _) => {
                let client = aws_sdk_dynamodb::Client::new(&backend.sdk);
                let all: Vec<usize> = range.collect();
                for chunk in all.chunks(25) {
                    let writes = chunk
                        .iter()
                        .map(|&i| -> anyhow::Result<_> {
                            let put = aws_sdk_dynamodb::types::PutRequest::builder()
                                .set_item(Some(item(i)))
                                .build()?;
                            Ok(aws_sdk_dynamodb::types::WriteRequest::builder()
                                .put_request(put)
                                .build())
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    client
                        .batch_write_item()
                        .request_items(name, writes)
                        .send()
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Sends one record through the wire protocol; returns when the send was acknowledged.
    pub(super) async fn send_one(&self, backend: &Backend, i: usize) -> anyhow::Result<Instant> {
        match self {
            Source::Queue { url, fifo, .. } => {
                let client = aws_sdk_sqs::Client::new(&backend.sdk);
                let mut req = client
                    .send_message()
                    .queue_url(url)
                    .message_body(payload(i));
                if *fifo {
                    req = req.message_group_id(format!("g{}", i % 50));
                }
                req.send().await?;
            }
            Source::Stream { name, .. } => {
                aws_sdk_kinesis::Client::new(&backend.sdk)
                    .put_record()
                    .stream_name(name)
                    .partition_key(i.to_string())
                    .data(aws_sdk_kinesis::primitives::Blob::new(payload(i)))
                    .send()
                    .await?;
            }
            Source::Table { name, .. } => {
                aws_sdk_dynamodb::Client::new(&backend.sdk)
                    .put_item()
                    .table_name(name)
                    .set_item(Some(item(i)))
                    .send()
                    .await?;
            }
        }
        Ok(Instant::now())
    }

    /// Messages still in the queue (visible or in flight); 0 for streams.
    pub(super) async fn remaining(&self, backend: &Backend) -> usize {
        let Source::Queue { name, url, .. } = self else {
            return 0;
        };
        if let Some(l) = &backend.loopback {
            return l.queue_len(name);
        }
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let Ok(out) = aws_sdk_sqs::Client::new(&backend.sdk)
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
        else {
            return usize::MAX;
        };
        let attrs = out.attributes.unwrap_or_default();
        let get = |k: A| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        get(A::ApproximateNumberOfMessages) + get(A::ApproximateNumberOfMessagesNotVisible)
    }
}

fn item(i: usize) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    let p = payload(i);
    let (id, pad) = p.split_at(p.find('|').map(|x| x + 1).unwrap_or(0));
    std::collections::HashMap::from([
        ("pk".to_string(), V::S(i.to_string())),
        ("id".to_string(), V::S(id.to_string())),
        ("pad".to_string(), V::S(pad.to_string())),
    ])
}
