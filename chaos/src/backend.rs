//! What a run makes on its backends (moto server, and kinesis-local where a shard must end;
//! their processes are `server`'s): the resources a scenario needs, the records it produces,
//! and what reached a failure destination. The runner talks to the backends directly; only
//! esmd goes through the proxies.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::log::Destined;
use crate::scenario::{Scenario, Source};

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";
/// SQS visibility timeout of the scenario's queues: a killed esmd's messages come back soon.
pub const VISIBILITY_SECONDS: i32 = 5;

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "chaos",
        ))
        .load()
        .await
}

/// The resources of one scenario and the clients that reach them.
pub struct World {
    pub sqs: aws_sdk_sqs::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The mapping's `event_source_arn`.
    pub source_arn: String,
    /// The queue the scenario writes to (SQS sources).
    pub queue_url: Option<String>,
    /// The DLQ (SQS) or on-failure queue (streams), when the scenario has one.
    pub failure_queue: Option<(String, String)>,
    pub name: String,
}

impl World {
    pub async fn create(s: &Scenario, moto: &str, kinesis: &str) -> Result<World> {
        let sqs = aws_sdk_sqs::Client::new(&sdk_config(moto).await);
        let kin = aws_sdk_kinesis::Client::new(&sdk_config(kinesis).await);
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(moto).await);
        let name = format!("chaos-{}", s.seed);
        let mut w = World {
            sqs,
            kinesis: kin,
            dynamodb,
            source_arn: String::new(),
            queue_url: None,
            failure_queue: None,
            name: name.clone(),
        };
        let fifo = s.source == Source::SqsFifo;
        if s.destination {
            let dlq = if fifo {
                format!("{name}-dlq.fifo")
            } else {
                format!("{name}-dlq")
            };
            w.failure_queue = Some(w.queue(&dlq, fifo, None).await?);
        }
        match s.source {
            Source::SqsStandard | Source::SqsFifo => {
                let q = if fifo { format!("{name}.fifo") } else { name };
                let redrive = w.failure_queue.as_ref().map(|(_, arn)| {
                    format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"3"}}"#)
                });
                let (url, arn) = w.queue(&q, fifo, redrive).await?;
                w.queue_url = Some(url);
                w.source_arn = arn;
            }
            Source::Kinesis { split, .. } => {
                w.source_arn = w.stream(if split { 1 } else { 2 }).await?;
            }
            Source::DynamoDb => w.source_arn = w.table().await?,
        }
        Ok(w)
    }

    async fn queue(
        &self,
        name: &str,
        fifo: bool,
        redrive: Option<String>,
    ) -> Result<(String, String)> {
        let mut req = self.sqs.create_queue().queue_name(name).attributes(
            QueueAttributeName::VisibilityTimeout,
            VISIBILITY_SECONDS.to_string(),
        );
        if fifo {
            req = req.attributes(QueueAttributeName::FifoQueue, "true");
        }
        if let Some(r) = redrive {
            req = req.attributes(QueueAttributeName::RedrivePolicy, r);
        }
        let url = req
            .send()
            .await
            .with_context(|| format!("create queue {name}"))?
            .queue_url()
            .unwrap_or_default()
            .to_string();
        Ok((url, format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")))
    }

    async fn stream(&self, shards: i32) -> Result<String> {
        self.kinesis
            .create_stream()
            .stream_name(&self.name)
            .shard_count(shards)
            .send()
            .await
            .with_context(|| format!("create stream {}", self.name))?;
        for _ in 0..100 {
            let d = self
                .kinesis
                .describe_stream_summary()
                .stream_name(&self.name)
                .send()
                .await?;
            if let Some(s) = d.stream_description_summary() {
                if s.stream_status().as_str() == "ACTIVE" {
                    return Ok(s.stream_arn().to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("stream {} did not become ACTIVE", self.name)
    }

    async fn table(&self) -> Result<String> {
        let out = self
            .dynamodb
            .create_table()
            .table_name(&self.name)
            .attribute_definitions(attr("k", ScalarAttributeType::S)?)
            .attribute_definitions(attr("n", ScalarAttributeType::N)?)
            .key_schema(key("k", KeyType::Hash)?)
            .key_schema(key("n", KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::NewImage)
                    .build()?,
            )
            .send()
            .await
            .with_context(|| format!("create table {}", self.name))?;
        out.table_description()
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_string)
            .context("the table has no stream ARN")
    }

    /// Produces one record; `n` orders the records of one key.
    pub async fn produce(&self, s: &Scenario, id: &str, key: &str, n: usize) -> Result<()> {
        match s.source {
            Source::SqsStandard | Source::SqsFifo => {
                let mut req = self
                    .sqs
                    .send_message()
                    .queue_url(self.queue_url.as_deref().unwrap_or_default())
                    .message_body(id);
                if s.source == Source::SqsFifo {
                    req = req.message_group_id(key).message_deduplication_id(id);
                }
                req.send().await.with_context(|| format!("send {id}"))?;
            }
            Source::Kinesis { .. } => {
                self.kinesis
                    .put_record()
                    .stream_name(&self.name)
                    .partition_key(key)
                    .data(aws_sdk_kinesis::primitives::Blob::new(id.as_bytes()))
                    .send()
                    .await
                    .with_context(|| format!("put {id}"))?;
            }
            Source::DynamoDb => {
                self.dynamodb
                    .put_item()
                    .table_name(&self.name)
                    .item("k", AttributeValue::S(key.to_string()))
                    .item("n", AttributeValue::N(n.to_string()))
                    .item("id", AttributeValue::S(id.to_string()))
                    .send()
                    .await
                    .with_context(|| format!("put item {id}"))?;
            }
        }
        Ok(())
    }

    /// Splits the stream's first open shard in the middle of its hash range.
    pub async fn split(&self) -> Result<()> {
        let shards = self.shards().await?;
        let open = shards
            .iter()
            .find(|s| {
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none()
            })
            .context("no open shard to split")?;
        let range = open
            .hash_key_range()
            .context("shard without a hash range")?;
        let lo: u128 = range.starting_hash_key().parse()?;
        let hi: u128 = range.ending_hash_key().parse()?;
        self.kinesis
            .split_shard()
            .stream_name(&self.name)
            .shard_to_split(open.shard_id())
            .new_starting_hash_key((lo + (hi - lo) / 2).to_string())
            .send()
            .await
            .context("split shard")?;
        Ok(())
    }

    /// The stream's shards, closed ones included.
    async fn shards(&self) -> Result<Vec<aws_sdk_kinesis::types::Shard>> {
        let out = self
            .kinesis
            .list_shards()
            .stream_name(&self.name)
            .send()
            .await?;
        Ok(out.shards.unwrap_or_default())
    }

    /// `(parent, child)` pairs of the stream's shards.
    pub async fn lineage(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for s in self.shards().await? {
            for parent in [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
            {
                out.push((parent.to_string(), s.shard_id().to_string()));
            }
        }
        Ok(out)
    }

    /// Deletes what the run made (best effort): a long campaign reuses each worker's backends.
    pub async fn cleanup(&self, s: &Scenario) {
        match s.source {
            Source::Kinesis { .. } => {
                let _ = self
                    .kinesis
                    .delete_stream()
                    .stream_name(&self.name)
                    .enforce_consumer_deletion(true)
                    .send()
                    .await;
            }
            Source::DynamoDb => {
                let _ = self
                    .dynamodb
                    .delete_table()
                    .table_name(&self.name)
                    .send()
                    .await;
            }
            Source::SqsStandard | Source::SqsFifo => {}
        }
        for url in self
            .queue_url
            .iter()
            .chain(self.failure_queue.iter().map(|(u, _)| u))
        {
            let _ = self.sqs.delete_queue().queue_url(url).send().await;
        }
    }

    /// Takes what arrived in the failure queue since the last call.
    pub async fn take_destined(&self) -> Result<Vec<Destined>> {
        let Some((url, _)) = &self.failure_queue else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        loop {
            let got = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .send()
                .await?;
            if got.messages().is_empty() {
                return Ok(out);
            }
            for m in got.messages() {
                out.extend(destined(m.body().unwrap_or_default()));
                if let Some(h) = m.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(h)
                        .send()
                        .await?;
                }
            }
        }
    }
}

/// A DLQ message's body is the record's id; an on-failure record names a shard and a range.
fn destined(body: &str) -> Option<Destined> {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return Some(Destined::Id(body.to_string()));
    };
    let info = v
        .get("KinesisBatchInfo")
        .or_else(|| v.get("DDBStreamBatchInfo"))?;
    Some(Destined::Range {
        shard: info.get("shardId")?.as_str()?.to_string(),
        start: info.get("startSequenceNumber")?.as_str()?.to_string(),
        end: info.get("endSequenceNumber")?.as_str()?.to_string(),
    })
}

fn attr(name: &str, t: ScalarAttributeType) -> Result<AttributeDefinition> {
    Ok(AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(t)
        .build()?)
}

fn key(name: &str, t: KeyType) -> Result<KeySchemaElement> {
    Ok(KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(t)
        .build()?)
}
