//! An in-memory stream for unit tests: shards with parents, records with numeric sequence
//! numbers and keys, shards that close (their children then take new records), iterators
//! that can be made to expire, and counts of every call. Arrival times come from tokio's
//! clock, so windows and record ages follow paused time.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::api::{IteratorPosition, ReadBatch, ShardInfo, StreamApi, StreamError, StreamRecord};
use crate::checkpoint::SequenceNumber;

#[derive(Debug, Default)]
pub(crate) struct MemoryStream {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    shards: BTreeMap<String, Shard>,
    next_sequence: u64,
    /// Reads (1-based, across shards) that fail with an expired iterator.
    expire_reads: Vec<u64>,
    reads: u64,
    /// Every iterator requested, by shard, in order.
    positions: Vec<(String, IteratorPosition)>,
}

#[derive(Debug, Default)]
struct Shard {
    parents: Vec<String>,
    records: Vec<(u64, String, String, DateTime<Utc>)>,
    closed: bool,
}

/// Arrival time on tokio's clock (paused in tests), anchored at a fixed epoch instant.
fn now() -> DateTime<Utc> {
    static START: std::sync::OnceLock<(tokio::time::Instant, DateTime<Utc>)> =
        std::sync::OnceLock::new();
    let (instant, wall) = START.get_or_init(|| (tokio::time::Instant::now(), Utc::now()));
    let elapsed = tokio::time::Instant::now().saturating_duration_since(*instant);
    *wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
}

impl MemoryStream {
    pub(crate) fn add_shard(&self, shard_id: &str, parents: &[&str]) {
        self.lock().shards.insert(
            shard_id.to_string(),
            Shard {
                parents: parents.iter().map(|p| p.to_string()).collect(),
                ..Shard::default()
            },
        );
    }

    /// Appends a record with this partition key and data; returns its sequence number.
    pub(crate) fn put(&self, shard_id: &str, key: &str, data: &str) -> u64 {
        let mut state = self.lock();
        state.next_sequence += 1;
        let seq = state.next_sequence;
        if let Some(shard) = state.shards.get_mut(shard_id) {
            shard.records.push((seq, key.into(), data.into(), now()));
        }
        seq
    }

    /// Closes a shard (a split or merge): reads reach its end and then get no next iterator.
    pub(crate) fn close(&self, shard_id: &str) {
        if let Some(shard) = self.lock().shards.get_mut(shard_id) {
            shard.closed = true;
        }
    }

    /// Makes the `n`th read from now on fail with an expired iterator.
    pub(crate) fn expire_read(&self, n: u64) {
        let mut state = self.lock();
        let at = state.reads + n;
        state.expire_reads.push(at);
    }

    /// The positions iterators were requested at for `shard_id`, in order.
    pub(crate) fn positions(&self, shard_id: &str) -> Vec<IteratorPosition> {
        let state = self.lock();
        state
            .positions
            .iter()
            .filter(|(s, _)| s == shard_id)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn record(seq: u64, key: &str, data: &str, arrival: DateTime<Utc>) -> StreamRecord {
    let json = serde_json::json!({ "seq": seq.to_string(), "key": key, "data": data });
    StreamRecord {
        sequence_number: SequenceNumber::parse(seq.to_string()).unwrap_or_else(|_| unreachable!()),
        key: key.to_string(),
        arrival,
        json: crate::payload::RecordJson::serialize(&json).unwrap_or_else(|_| unreachable!()),
    }
}

impl StreamApi for MemoryStream {
    fn list_shards(&self) -> BoxFuture<'_, Result<Vec<ShardInfo>, StreamError>> {
        let shards = self
            .lock()
            .shards
            .iter()
            .map(|(id, s)| ShardInfo {
                shard_id: id.clone(),
                parent_shard_id: s.parents.first().cloned(),
                adjacent_parent_shard_id: s.parents.get(1).cloned(),
                ending_sequence_number: s
                    .closed
                    .then(|| s.records.last().map_or(0, |r| r.0))
                    .and_then(|end| SequenceNumber::parse(end.to_string()).ok()),
            })
            .collect();
        Box::pin(async move { Ok(shards) })
    }

    fn shard_iterator<'a>(
        &'a self,
        shard_id: &'a str,
        position: &'a IteratorPosition,
    ) -> BoxFuture<'a, Result<String, StreamError>> {
        let mut state = self.lock();
        state
            .positions
            .push((shard_id.to_string(), position.clone()));
        let result = match state.shards.get(shard_id) {
            None => Err(StreamError::NotFound(shard_id.to_string())),
            Some(shard) => {
                let index = |after: u64| shard.records.iter().take_while(|r| r.0 <= after).count();
                let start = match position {
                    IteratorPosition::TrimHorizon => 0,
                    IteratorPosition::Latest => shard.records.len(),
                    IteratorPosition::AtTimestamp(t) => {
                        shard.records.iter().take_while(|r| r.3 < *t).count()
                    }
                    IteratorPosition::AtSequenceNumber(s) => {
                        index(s.as_str().parse::<u64>().unwrap_or(0).saturating_sub(1))
                    }
                    IteratorPosition::AfterSequenceNumber(s) => {
                        index(s.as_str().parse::<u64>().unwrap_or(0))
                    }
                };
                Ok(format!("{shard_id}@{start}"))
            }
        };
        Box::pin(async move { result })
    }

    fn get_records<'a>(
        &'a self,
        shard_id: &'a str,
        iterator: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, StreamError>> {
        let mut state = self.lock();
        state.reads += 1;
        let read = state.reads;
        let result = if state.expire_reads.contains(&read) {
            Err(StreamError::ExpiredIterator(format!("read {read}")))
        } else {
            let start: usize = iterator
                .rsplit('@')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            match state.shards.get(shard_id) {
                None => Err(StreamError::NotFound(shard_id.to_string())),
                Some(shard) => {
                    let end = (start + limit).min(shard.records.len());
                    let records: Vec<StreamRecord> = shard.records[start..end]
                        .iter()
                        .map(|(seq, key, data, at)| record(*seq, key, data, *at))
                        .collect();
                    let at_end = end == shard.records.len();
                    Ok(ReadBatch {
                        records,
                        next_iterator: (!(shard.closed && at_end))
                            .then(|| format!("{shard_id}@{end}")),
                        millis_behind_latest: Some(if at_end { 0 } else { 1000 }),
                    })
                }
            }
        };
        Box::pin(async move { result })
    }
}
