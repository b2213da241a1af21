//! The lease table: a [`CheckpointStore`] in DynamoDB that several esmd instances share
//! (`[state] backend = "dynamodb"`; the algorithm and its timings are in docs/leases.md).
//!
//! Every write a worker makes is fenced: it is conditional on the shard's `owner` and
//! `counter` being what the worker's lease says, so an instance that lost its lease (paused,
//! partitioned, slow) cannot move a checkpoint after another took the shard. A checkpoint
//! never moves backwards, across instances too: the write is also conditional on the stored
//! checkpoint being the one just read and compared numerically.

mod item;
mod store;
mod table;

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use tokio_util::sync::CancellationToken;

use super::{CheckpointError, SequenceNumber, ShardLease, WindowState};
use crate::aws::error::{AwsFailure, FailureClass};
use crate::config::LeaseSettings;
use crate::retry::{retry, Pace, Retried, RetryPolicies, Step};
use item::{get_n, get_s, n, s, storage, window_chunks, window_sk, Item};

/// Attempts of one call before a transient DynamoDB failure counts as a storage failure.
const ATTEMPTS: u32 = 6;

#[derive(Debug, Clone)]
pub(crate) struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    owner: String,
    lease_duration: Duration,
}

/// What went wrong with one call: its condition did not hold, or it failed.
enum Failed {
    Condition,
    Store(CheckpointError),
}

impl From<CheckpointError> for Failed {
    fn from(e: CheckpointError) -> Self {
        Failed::Store(e)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The default instance id: host, pid and a random suffix (a restarted process is a new owner).
pub(crate) fn default_instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let suffix: u32 = rand::random();
    format!("{host}:{}:{suffix:08x}", std::process::id())
}

/// Runs one SDK call, retrying throttles and transient failures a few times.
async fn call<T, E, F, Fut>(what: &str, mut op: F) -> Result<T, Failed>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SdkError<E, aws_smithy_runtime_api::http::Response>>>,
{
    let never = CancellationToken::new();
    let result = retry(
        RetryPolicies::DEFAULT,
        &never,
        |attempt| {
            let fut = op();
            async move {
                match fut.await {
                    Ok(v) => Step::Done(v),
                    Err(e) => {
                        let code = e.code().unwrap_or_default();
                        if code == "ConditionalCheckFailedException"
                            || code == "TransactionCanceledException"
                        {
                            return Step::Stop(Failed::Condition);
                        }
                        let failure = AwsFailure::from_sdk(&e);
                        let retryable = matches!(
                            failure.class,
                            FailureClass::Throttled | FailureClass::Transient
                        );
                        let error = Failed::Store(storage(format!("{what}: {failure}")));
                        match retryable && attempt < ATTEMPTS {
                            true => Step::Retry {
                                error,
                                pace: Pace::Transient,
                                after: None,
                            },
                            false => Step::Stop(error),
                        }
                    }
                }
            }
        },
        |_, _, _| {},
    )
    .await;
    match result {
        Retried::Done(v) => Ok(v),
        Retried::Stopped(e) => Err(e),
        Retried::Cancelled => Err(Failed::Store(storage(format!("{what}: cancelled")))),
    }
}

fn store_error(e: Failed, what: &str) -> CheckpointError {
    match e {
        Failed::Store(e) => e,
        Failed::Condition => storage(format!("{what}: unexpected condition failure")),
    }
}

impl DynamoStore {
    /// Opens the table (creating it, on-demand, when missing; checking its key schema when
    /// present).
    pub(crate) async fn open(
        client: aws_sdk_dynamodb::Client,
        settings: &LeaseSettings,
    ) -> Result<Self, CheckpointError> {
        table::ensure(&client, &settings.table).await?;
        Ok(DynamoStore {
            client,
            table: settings.table.clone(),
            owner: settings
                .instance_id
                .clone()
                .unwrap_or_else(default_instance_id),
            lease_duration: settings.lease_duration,
        })
    }

    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, CheckpointError> {
        let out = call("GetItem", || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .consistent_read(true)
                .send()
        })
        .await
        .map_err(|e| store_error(e, "GetItem"))?;
        Ok(out.item)
    }

    /// Every item of a mapping (shards, window chunks, the binding).
    async fn items(&self, uuid: &str) -> Result<Vec<Item>, CheckpointError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = call("Query", || {
                self.client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(":pk", s(uuid))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.clone())
                    .send()
            })
            .await
            .map_err(|e| store_error(e, "Query"))?;
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// Why a fenced write was refused: the lease moved on, or the shard is gone.
    async fn lost(&self, lease: &ShardLease) -> CheckpointError {
        let owner = match self.get(&lease.mapping_uuid, &lease.shard_id).await {
            Ok(Some(item)) => get_s(&item, "owner").unwrap_or("nobody").to_string(),
            Ok(None) => "nobody (the shard's state was reset)".into(),
            Err(e) => return e,
        };
        CheckpointError::LeaseLost {
            shard_id: lease.shard_id.clone(),
            owner,
        }
    }

    /// The fenced write of a checkpoint and (when `window` is `Some`) the window state.
    async fn write(
        &self,
        lease: &ShardLease,
        proposed: Option<&SequenceNumber>,
        window: Option<Option<&WindowState>>,
    ) -> Result<(), CheckpointError> {
        for _ in 0..3 {
            let Some(item) = self.get(&lease.mapping_uuid, &lease.shard_id).await? else {
                return Err(self.lost(lease).await);
            };
            if get_s(&item, "owner") != Some(lease.owner.as_str())
                || get_n(&item, "counter") != Some(lease.counter as i64)
            {
                return Err(self.lost(lease).await);
            }
            let current = get_s(&item, "checkpoint")
                .map(SequenceNumber::parse)
                .transpose()
                .map_err(storage)?;
            if let (Some(proposed), Some(current)) = (proposed, &current) {
                if proposed < current {
                    return Err(CheckpointError::Backwards {
                        shard_id: lease.shard_id.clone(),
                        current: current.clone(),
                        proposed: proposed.clone(),
                    });
                }
            }
            let old_chunks = get_n(&item, "window_chunks").unwrap_or(0).max(0) as usize;
            match self
                .conditional_write(lease, current.as_ref(), proposed, window, old_chunks)
                .await
            {
                Ok(()) => return Ok(()),
                // Someone changed the item between our read and write: read again.
                Err(Failed::Condition) => continue,
                Err(Failed::Store(e)) => return Err(e),
            }
        }
        Err(self.lost(lease).await)
    }

    /// The transaction's update of the shard item, naming only the attributes it uses.
    fn update(
        &self,
        lease: &ShardLease,
        expression: String,
        condition: String,
        values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> Result<Update, Failed> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&lease.mapping_uuid))
            .key("sk", s(&lease.shard_id))
            .update_expression(expression)
            .condition_expression(condition);
        for (name, attr) in [
            ("#o", "owner"),
            ("#c", "counter"),
            ("#u", "updated_at"),
            ("#cp", "checkpoint"),
            ("#ra", "restart_at"),
            ("#ws", "window_start"),
            ("#we", "window_end"),
            ("#wc", "window_chunks"),
        ] {
            if expression_uses(&update, name) {
                update = update.expression_attribute_names(name, attr);
            }
        }
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        Ok(update.build().map_err(storage)?)
    }

    async fn conditional_write(
        &self,
        lease: &ShardLease,
        current: Option<&SequenceNumber>,
        proposed: Option<&SequenceNumber>,
        window: Option<Option<&WindowState>>,
        old_chunks: usize,
    ) -> Result<(), Failed> {
        let mut sets = vec!["#u = :u"];
        let mut removes = Vec::new();
        let mut values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)> = vec![
            (":o", s(&lease.owner)),
            (":c", n(lease.counter)),
            (":u", s(chrono::Utc::now().to_rfc3339())),
        ];
        if let Some(proposed) = proposed {
            sets.push("#cp = :cp");
            removes.push("#ra");
            values.push((":cp", s(proposed.as_str())));
        }
        let chunks = match window {
            Some(Some(w)) => {
                let chunks = window_chunks(w)?;
                sets.extend(["#ws = :ws", "#we = :we", "#wc = :wc"]);
                values.push((":ws", s(w.start.to_rfc3339())));
                values.push((":we", s(w.end.to_rfc3339())));
                values.push((":wc", n(chunks.len())));
                chunks
            }
            Some(None) => {
                removes.extend(["#ws", "#we", "#wc"]);
                Vec::new()
            }
            None => Vec::new(),
        };
        let mut condition = "#o = :o AND #c = :c".to_string();
        match current {
            Some(current) => {
                condition.push_str(" AND #cp = :seen");
                values.push((":seen", s(current.as_str())));
            }
            None => condition.push_str(" AND attribute_not_exists(#cp)"),
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let update = self.update(lease, expression, condition, values)?;

        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        for (i, chunk) in chunks.iter().enumerate() {
            let put = Put::builder()
                .table_name(&self.table)
                .item("pk", s(&lease.mapping_uuid))
                .item("sk", s(window_sk(&lease.shard_id, i)))
                .item("state", s(chunk))
                .build()
                .map_err(storage)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let _ = old_chunks; // chunks beyond the new count are ignored (window_chunks says how many)
        call("TransactWriteItems", || {
            self.client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
        })
        .await
        .map(|_| ())
    }
}

/// Whether an update's expressions name `#placeholder` (DynamoDB refuses unused names).
fn expression_uses(update: &aws_sdk_dynamodb::types::builders::UpdateBuilder, name: &str) -> bool {
    let used = |e: Option<&String>| e.is_some_and(|e| e.contains(name));
    used(update.get_update_expression().as_ref())
        || used(update.get_condition_expression().as_ref())
}
