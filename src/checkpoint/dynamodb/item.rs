//! The lease table's items. One table, keyed `pk` (the mapping uuid) and `sk`:
//!
//! - `sk = "#mapping"`: the event source ARN the uuid is bound to;
//! - `sk = <shard id>`: the shard's lease and progress: `owner`, `counter` (the fencing token,
//!   raised by every take-over), `expires_at` (ms since the epoch), `status`, `checkpoint`
//!   (a sequence number, as a string), `restart_at`, `updated_at`, and the open tumbling
//!   window's bounds and number of state chunks;
//! - `sk = <shard id>#window#<n>`: chunk `n` of the window's state (JSON text), because a
//!   window's state may reach 1 MB and an item at most 400 KB.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::checkpoint::{
    CheckpointError, RestartAt, SequenceNumber, ShardCheckpoint, ShardStatus, WindowState,
};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const MAPPING_SK: &str = "#mapping";
/// The size of one window-state chunk: well under DynamoDB's 400 KB item limit.
pub(super) const WINDOW_CHUNK_BYTES: usize = 300 * 1024;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub(super) fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn window_sk(shard_id: &str, chunk: usize) -> String {
    format!("{shard_id}#window#{chunk}")
}

/// Whether an item's `sk` is a shard (not the mapping binding, not a window chunk).
pub(super) fn is_shard(sk: &str) -> bool {
    sk != MAPPING_SK && !sk.contains("#window#")
}

/// The window's state split into chunks of at most [`WINDOW_CHUNK_BYTES`] (on char bounds).
pub(super) fn window_chunks(window: &WindowState) -> Result<Vec<String>, CheckpointError> {
    let text = serde_json::to_string(&window.state).map_err(storage)?;
    let mut chunks = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(WINDOW_CHUNK_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        chunks.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    Ok(chunks)
}

pub(super) fn storage(e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Storage(e.to_string())
}

/// A shard item (and the window chunks found for it) as the store's value type.
pub(super) fn to_checkpoint(
    shard_id: &str,
    item: &Item,
    chunks: &HashMap<String, String>,
) -> Result<ShardCheckpoint, CheckpointError> {
    let sequence_number = get_s(item, "checkpoint")
        .map(SequenceNumber::parse)
        .transpose()
        .map_err(storage)?;
    let status = get_s(item, "status")
        .and_then(ShardStatus::parse)
        .unwrap_or(ShardStatus::Reading);
    let window = match (get_s(item, "window_start"), get_s(item, "window_end")) {
        (Some(start), Some(end)) => {
            let count = get_n(item, "window_chunks").unwrap_or(0).max(0) as usize;
            let mut text = String::new();
            for i in 0..count {
                let chunk = chunks
                    .get(&window_sk(shard_id, i))
                    .ok_or_else(|| storage(format!("window chunk {i} of {shard_id} is missing")))?;
                text.push_str(chunk);
            }
            let parse = |t: &str| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(storage)
            };
            let state = match text.is_empty() {
                true => serde_json::json!({}),
                false => serde_json::from_str(&text).map_err(storage)?,
            };
            Some(WindowState {
                start: parse(start)?,
                end: parse(end)?,
                state,
            })
        }
        _ => None,
    };
    Ok(ShardCheckpoint {
        shard_id: shard_id.to_string(),
        sequence_number,
        status,
        updated_at: get_s(item, "updated_at").unwrap_or_default().to_string(),
        window,
        restart_at: get_s(item, "restart_at").and_then(RestartAt::parse),
        owner: get_s(item, "owner")
            .filter(|_| {
                get_n(item, "expires_at").unwrap_or(0) > chrono::Utc::now().timestamp_millis()
            })
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_megabyte_of_state_splits_into_chunks_that_fit_an_item_and_join_back() {
        let big: String = "é".repeat(500 * 1024); // 1 MB of two-byte chars
        let window = WindowState {
            start: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            end: chrono::DateTime::from_timestamp(1_700_000_060, 0).unwrap(),
            state: serde_json::json!({ "text": big }),
        };
        let chunks = window_chunks(&window).unwrap();
        assert_eq!(chunks.len(), 4);
        assert!(chunks.iter().all(|c| c.len() <= WINDOW_CHUNK_BYTES));
        let mut item = Item::new();
        item.insert("window_start".into(), s(window.start.to_rfc3339()));
        item.insert("window_end".into(), s(window.end.to_rfc3339()));
        item.insert("window_chunks".into(), n(chunks.len()));
        let found: HashMap<String, String> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (window_sk("s", i), c.clone()))
            .collect();
        assert_eq!(
            to_checkpoint("s", &item, &found).unwrap().window,
            Some(window)
        );
        assert!(is_shard("shardId-1") && !is_shard("shardId-1#window#0") && !is_shard(MAPPING_SK));
    }
}
