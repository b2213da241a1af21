//! `esmd checkpoints`: list, move and clear stream checkpoints in the configured store, for
//! replay and rewind (AWS cannot do this). Every command takes the store's lock first, so it
//! refuses to run while a daemon uses the same store.

use std::fmt::Write;

use super::{CheckpointError, RestartAt, ShardCheckpoint, SqliteStore, StoreLock};
use crate::config::{Config, MappingConfig, SourceKind};

/// An opened store, with its lock held for as long as this lives.
pub(crate) struct AdminStore {
    store: SqliteStore,
    _lock: StoreLock,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error(transparent)]
    Store(#[from] CheckpointError),
    #[error("no stream mapping matches `{0}` (give its uuid or event_source_arn; `esmd checkpoints list` shows them)")]
    UnknownMapping(String),
    #[error("`{0}` matches several mappings; give the uuid")]
    Ambiguous(String),
    #[error("esmd checkpoints works on the sqlite backend only for now; the lease table `{0}` can be read with `aws dynamodb query --table-name {0}`")]
    Unsupported(String),
}

impl AdminStore {
    pub(crate) fn open(config: &Config) -> Result<Self, AdminError> {
        if let crate::config::StateBackend::DynamoDb(leases) = &config.state.backend {
            return Err(AdminError::Unsupported(leases.table.clone()));
        }
        let lock = StoreLock::acquire(&config.state.path)?;
        Ok(AdminStore {
            store: SqliteStore::open(&config.state.path)?,
            _lock: lock,
        })
    }

    /// Every stream mapping of the config with its stored shards.
    fn rows<'c>(
        &self,
        config: &'c Config,
    ) -> Result<Vec<(&'c MappingConfig, Vec<ShardCheckpoint>)>, AdminError> {
        config
            .mappings
            .iter()
            .filter(|m| m.kind() != SourceKind::Sqs)
            .map(|m| Ok((m, self.store.shards_blocking(&m.uuid)?)))
            .collect()
    }

    /// `checkpoints list --json`: `{"mappings": [{uuid, event_source_arn, function_name,
    /// shards: [{shard_id, status, sequence_number, updated_at, age_seconds, restart_at,
    /// window}]}]}`. Sequence numbers are strings (they pass 2^64).
    pub(crate) fn list_json(&self, config: &Config) -> Result<serde_json::Value, AdminError> {
        let now = chrono::Utc::now();
        let mappings: Vec<serde_json::Value> = self
            .rows(config)?
            .into_iter()
            .map(|(m, shards)| {
                let shards: Vec<serde_json::Value> = shards
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "shard_id": s.shard_id,
                            "status": s.status.as_str(),
                            "sequence_number": s.sequence_number.as_ref().map(|n| n.to_string()),
                            "updated_at": s.updated_at,
                            "age_seconds": age(now, &s.updated_at).map(|a| a.num_seconds().max(0)),
                            "restart_at": s.restart_at.as_ref().map(RestartAt::to_text),
                            "window": s.window.as_ref().map(|w| serde_json::json!({
                                "start": w.start.to_rfc3339(),
                                "end": w.end.to_rfc3339(),
                            })),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "uuid": m.uuid,
                    "event_source_arn": m.source.arn(),
                    "function_name": m.function_name,
                    "shards": shards,
                })
            })
            .collect();
        Ok(serde_json::json!({ "mappings": mappings }))
    }

    /// Every stream mapping of the config with its shards: status, checkpoint and age.
    pub(crate) fn list(&self, config: &Config) -> Result<String, AdminError> {
        let mut out = String::new();
        let now = chrono::Utc::now();
        for (m, shards) in self.rows(config)? {
            let _ = writeln!(out, "{}  {} -> {}", m.uuid, m.source.arn(), m.function_name);
            if shards.is_empty() {
                let _ = writeln!(out, "  (no checkpoints yet)");
            }
            for s in shards {
                let age = age(now, &s.updated_at).map_or_else(|| "?".into(), format_age);
                let _ = write!(
                    out,
                    "  {:<24} {:<8} {:<58} updated {age} ago",
                    s.shard_id,
                    s.status.as_str(),
                    s.sequence_number
                        .as_ref()
                        .map_or("-".to_string(), |n| n.to_string()),
                );
                if let Some(at) = &s.restart_at {
                    let _ = write!(out, "  next read: {}", at.to_text());
                }
                if let Some(w) = &s.window {
                    let _ = write!(
                        out,
                        "  window {}..{} open",
                        w.start.to_rfc3339(),
                        w.end.to_rfc3339()
                    );
                }
                out.push('\n');
            }
        }
        if out.is_empty() {
            out.push_str("no Kinesis or DynamoDB Streams mappings in this config\n");
        }
        Ok(out)
    }

    /// Moves one shard; the next run reads it from `position`.
    pub(crate) fn set(
        &self,
        config: &Config,
        mapping: &str,
        shard_id: &str,
        position: &RestartAt,
        json: bool,
    ) -> Result<String, AdminError> {
        let m = find(config, mapping)?;
        self.store
            .set_position_blocking(&m.uuid, shard_id, position)?;
        Ok(match json {
            true => format!(
                "{}\n",
                serde_json::json!({"uuid": m.uuid, "shard_id": shard_id, "next_read": position.to_text()})
            ),
            false => format!(
                "{} {shard_id}: the next run reads from {}\n",
                m.uuid,
                position.to_text()
            ),
        })
    }

    /// Forgets everything stored for a mapping; the next run starts at `starting_position`.
    pub(crate) fn reset(
        &self,
        config: &Config,
        mapping: &str,
        json: bool,
    ) -> Result<String, AdminError> {
        let m = find(config, mapping)?;
        let n = self.store.reset_blocking(&m.uuid)?;
        Ok(match json {
            true => format!("{}\n", serde_json::json!({"uuid": m.uuid, "cleared_shards": n})),
            false => format!(
                "{}: cleared {n} shard checkpoint(s); the next run starts at its starting_position\n",
                m.uuid
            ),
        })
    }
}

fn find<'a>(config: &'a Config, key: &str) -> Result<&'a MappingConfig, AdminError> {
    let mut found = config
        .mappings
        .iter()
        .filter(|m| m.kind() != SourceKind::Sqs)
        .filter(|m| m.uuid == key || m.source.arn() == key);
    match (found.next(), found.next()) {
        (Some(m), None) => Ok(m),
        (Some(_), Some(_)) => Err(AdminError::Ambiguous(key.into())),
        (None, _) => Err(AdminError::UnknownMapping(key.into())),
    }
}

/// How long ago an RFC 3339 time was.
fn age(now: chrono::DateTime<chrono::Utc>, at: &str) -> Option<chrono::Duration> {
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| now - t.with_timezone(&chrono::Utc))
}

fn format_age(age: chrono::Duration) -> String {
    let secs = age.num_seconds().max(0);
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_positions_round_trip_through_their_stored_text() {
        for at in [
            RestartAt::TrimHorizon,
            RestartAt::Latest,
            RestartAt::AtTimestamp(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
            RestartAt::AtSequenceNumber(
                crate::checkpoint::SequenceNumber::parse(
                    "49590338271490256608559692538361571095921575989136588898",
                )
                .unwrap(),
            ),
        ] {
            assert_eq!(RestartAt::parse(&at.to_text()), Some(at));
        }
        assert_eq!(RestartAt::parse("AT_SEQUENCE_NUMBER:abc"), None);
        assert_eq!(RestartAt::parse("SOMEWHERE"), None);
        assert_eq!(format_age(chrono::Duration::seconds(7300)), "2h");
    }
}
