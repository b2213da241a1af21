//! [`CheckpointStore`] over the lease table: binding, listing, taking, renewing, releasing
//! and finishing leases, and the fenced checkpoint writes.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;

use super::item::{get_n, get_s, is_shard, n, s, to_checkpoint, window_sk, Item, MAPPING_SK};
use super::{call, now_ms, DynamoStore, Failed};
use crate::checkpoint::{
    CheckpointError, CheckpointStore, RestartAt, SequenceNumber, ShardCheckpoint, ShardLease,
    ShardStatus, WindowState,
};

impl DynamoStore {
    /// The window chunks a shard item refers to.
    async fn chunks(
        &self,
        uuid: &str,
        shard_id: &str,
        item: &Item,
    ) -> Result<HashMap<String, String>, CheckpointError> {
        let count = get_n(item, "window_chunks").unwrap_or(0).max(0) as usize;
        let mut chunks = HashMap::new();
        for i in 0..count {
            let sk = window_sk(shard_id, i);
            if let Some(chunk) = self.get(uuid, &sk).await? {
                chunks.insert(sk, get_s(&chunk, "state").unwrap_or_default().to_string());
            }
        }
        Ok(chunks)
    }

    /// Takes the lease when nobody holds it, it expired, or we hold it (or always, with
    /// `steal`); `None` otherwise, or when another instance won the race.
    async fn take(
        &self,
        uuid: &str,
        shard_id: &str,
        steal: bool,
    ) -> Result<Option<(ShardLease, ShardCheckpoint)>, CheckpointError> {
        for _ in 0..3 {
            let Some(item) = self.get(uuid, shard_id).await? else {
                return Ok(None);
            };
            let now = now_ms();
            let owner = get_s(&item, "owner");
            let held = owner.is_some_and(|o| o != self.owner)
                && get_n(&item, "expires_at").unwrap_or(0) > now;
            if held && !steal {
                return Ok(None);
            }
            let seen = get_n(&item, "counter").unwrap_or(0);
            let next = seen + 1;
            let expires = now + self.lease_duration.as_millis() as i64;
            let taken = call("UpdateItem", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(uuid))
                    .key("sk", s(shard_id))
                    .update_expression("SET #o = :me, #c = :next, #e = :exp")
                    .condition_expression("#c = :seen")
                    .expression_attribute_names("#o", "owner")
                    .expression_attribute_names("#c", "counter")
                    .expression_attribute_names("#e", "expires_at")
                    .expression_attribute_values(":me", s(&self.owner))
                    .expression_attribute_values(":next", n(next))
                    .expression_attribute_values(":exp", n(expires))
                    .expression_attribute_values(":seen", n(seen))
                    .send()
            })
            .await;
            match taken {
                Ok(_) => {
                    // Read the lease back: DynamoDB's conditional write admits one winner, but
                    // an emulator that does not serialise conditional writes (moto) may admit
                    // two; the item then names the last, and only that one keeps the shard.
                    let now = self.get(uuid, shard_id).await?;
                    let mine = now.as_ref().is_some_and(|i| {
                        get_s(i, "owner") == Some(self.owner.as_str())
                            && get_n(i, "counter") == Some(next)
                    });
                    if !mine {
                        return Ok(None);
                    }
                    let chunks = self.chunks(uuid, shard_id, &item).await?;
                    let lease = ShardLease {
                        mapping_uuid: uuid.to_string(),
                        shard_id: shard_id.to_string(),
                        owner: self.owner.clone(),
                        counter: next as u64,
                    };
                    return Ok(Some((lease, to_checkpoint(shard_id, &item, &chunks)?)));
                }
                Err(Failed::Condition) => continue,
                Err(Failed::Store(e)) => return Err(e),
            }
        }
        Ok(None)
    }

    /// A fenced update of the shard item: `expression` runs only while `lease` holds.
    async fn fenced(
        &self,
        lease: &ShardLease,
        expression: &str,
        values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> Result<(), Failed> {
        call("UpdateItem", || {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&lease.mapping_uuid))
                .key("sk", s(&lease.shard_id))
                .update_expression(expression)
                .condition_expression("#o = :o AND #c = :c")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_names("#c", "counter")
                .expression_attribute_values(":o", s(&lease.owner))
                .expression_attribute_values(":c", n(lease.counter));
            for name in ["#e", "#s", "#u"] {
                if expression.contains(name) {
                    let attr = match name {
                        "#e" => "expires_at",
                        "#s" => "status",
                        _ => "updated_at",
                    };
                    update = update.expression_attribute_names(name, attr);
                }
            }
            for (name, value) in &values {
                update = update.expression_attribute_values(*name, value.clone());
            }
            update.send()
        })
        .await
        .map(|_| ())
    }
}

impl CheckpointStore for DynamoStore {
    fn bind_mapping<'a>(
        &'a self,
        uuid: &'a str,
        arn: &'a str,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            let put = call("PutItem", || {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item("pk", s(uuid))
                    .item("sk", s(MAPPING_SK))
                    .item("event_source_arn", s(arn))
                    .condition_expression("attribute_not_exists(pk) OR event_source_arn = :arn")
                    .expression_attribute_values(":arn", s(arn))
                    .send()
            })
            .await;
            match put {
                Ok(_) => Ok(()),
                Err(Failed::Condition) => {
                    let stored = self.get(uuid, MAPPING_SK).await?;
                    let stored = stored.as_ref().and_then(|i| get_s(i, "event_source_arn"));
                    Err(CheckpointError::SourceChanged {
                        uuid: uuid.to_string(),
                        stored: stored.unwrap_or_default().to_string(),
                        configured: arn.to_string(),
                    })
                }
                Err(Failed::Store(e)) => Err(e),
            }
        })
    }

    fn shards<'a>(
        &'a self,
        uuid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ShardCheckpoint>, CheckpointError>> {
        Box::pin(async move {
            let items = self.items(uuid).await?;
            let chunks: HashMap<String, String> = items
                .iter()
                .filter_map(|i| {
                    let sk = get_s(i, "sk")?;
                    (sk.contains("#window#")).then(|| {
                        (
                            sk.to_string(),
                            get_s(i, "state").unwrap_or_default().to_string(),
                        )
                    })
                })
                .collect();
            let mut shards = Vec::new();
            for item in &items {
                let Some(sk) = get_s(item, "sk").filter(|sk| is_shard(sk)) else {
                    continue;
                };
                shards.push(to_checkpoint(sk, item, &chunks)?);
            }
            shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
            Ok(shards)
        })
    }

    fn acquire<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(ShardLease, ShardCheckpoint)>, CheckpointError>> {
        Box::pin(async move {
            let created = call("PutItem", || {
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item("pk", s(uuid))
                    .item("sk", s(shard_id))
                    .item("status", s(ShardStatus::Reading.as_str()))
                    .item("counter", n(0))
                    .item("updated_at", s(chrono::Utc::now().to_rfc3339()))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
            })
            .await;
            match created {
                Ok(_) | Err(Failed::Condition) => {}
                Err(Failed::Store(e)) => return Err(e),
            }
            self.take(uuid, shard_id, false).await
        })
    }

    fn steal<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(ShardLease, ShardCheckpoint)>, CheckpointError>> {
        Box::pin(self.take(uuid, shard_id, true))
    }

    fn owner(&self) -> Option<&str> {
        Some(DynamoStore::owner(self))
    }

    fn checkpoint<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: &'a SequenceNumber,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(self.write(lease, Some(sequence_number), None))
    }

    fn save_window<'a>(
        &'a self,
        lease: &'a ShardLease,
        sequence_number: Option<&'a SequenceNumber>,
        window: Option<&'a WindowState>,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(self.write(lease, sequence_number, Some(window)))
    }

    fn finish<'a>(
        &'a self,
        lease: &'a ShardLease,
        status: ShardStatus,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            let values = vec![
                (":st", s(status.as_str())),
                (":now", s(chrono::Utc::now().to_rfc3339())),
            ];
            match self
                .fenced(lease, "SET #s = :st, #u = :now REMOVE #o", values)
                .await
            {
                Ok(()) => Ok(()),
                Err(Failed::Condition) => Err(self.lost(lease).await),
                Err(Failed::Store(e)) => Err(e),
            }
        })
    }

    fn release<'a>(&'a self, lease: &'a ShardLease) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            // Another owner already has it: nothing to give back.
            match self
                .fenced(lease, "SET #e = :zero REMOVE #o", vec![(":zero", n(0))])
                .await
            {
                Ok(()) | Err(Failed::Condition) => Ok(()),
                Err(Failed::Store(e)) => Err(e),
            }
        })
    }

    fn set_position<'a>(
        &'a self,
        uuid: &'a str,
        shard_id: &'a str,
        position: &'a RestartAt,
    ) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            // Raising the counter and removing the owner fences off whoever held the shard,
            // so its next write cannot clear the operator's position.
            call("UpdateItem", || {
                self.client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", s(uuid))
                    .key("sk", s(shard_id))
                    .update_expression(
                        "SET #r = :r, #s = :reading, #u = :now, #e = :zero, \
                         #c = if_not_exists(#c, :zero) + :one \
                         REMOVE #o, #cp, window_start, window_end, window_chunks",
                    )
                    .expression_attribute_names("#r", "restart_at")
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_names("#u", "updated_at")
                    .expression_attribute_names("#e", "expires_at")
                    .expression_attribute_names("#c", "counter")
                    .expression_attribute_names("#o", "owner")
                    .expression_attribute_names("#cp", "checkpoint")
                    .expression_attribute_values(":r", s(position.to_text()))
                    .expression_attribute_values(":reading", s(ShardStatus::Reading.as_str()))
                    .expression_attribute_values(":now", s(chrono::Utc::now().to_rfc3339()))
                    .expression_attribute_values(":zero", n(0))
                    .expression_attribute_values(":one", n(1))
                    .send()
            })
            .await
            .map(|_| ())
            .map_err(|e| super::store_error(e, "UpdateItem"))
        })
    }

    fn reset<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<usize, CheckpointError>> {
        Box::pin(async move {
            let items = self.items(uuid).await?;
            let mut shards = 0;
            for item in &items {
                let Some(sk) = get_s(item, "sk") else {
                    continue;
                };
                shards += usize::from(is_shard(sk));
                call("DeleteItem", || {
                    self.client
                        .delete_item()
                        .table_name(&self.table)
                        .key("pk", s(uuid))
                        .key("sk", s(sk))
                        .send()
                })
                .await
                .map_err(|e| super::store_error(e, "DeleteItem"))?;
            }
            Ok(shards)
        })
    }

    fn renew_interval(&self) -> Option<Duration> {
        Some(self.lease_duration / 3)
    }

    fn renew<'a>(&'a self, lease: &'a ShardLease) -> BoxFuture<'a, Result<(), CheckpointError>> {
        Box::pin(async move {
            let expires = now_ms() + self.lease_duration.as_millis() as i64;
            match self
                .fenced(lease, "SET #e = :exp", vec![(":exp", n(expires))])
                .await
            {
                Ok(()) => Ok(()),
                Err(Failed::Condition) => Err(self.lost(lease).await),
                Err(Failed::Store(e)) => Err(e),
            }
        })
    }
}
