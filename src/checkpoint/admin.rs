//! `esmd checkpoints`: list, move and clear stream checkpoints in the configured store, for
//! replay and rewind (AWS cannot do this), through the same [`CheckpointStore`] trait the
//! daemon uses, on either backend. The SQLite store is locked first, so the commands refuse to
//! run while a daemon uses it; on the lease table, `set` and `reset` refuse a shard another
//! instance holds unless forced (and forcing fences that instance off the shard).

use std::fmt::Write;
use std::sync::Arc;

use super::dynamodb::DynamoStore;
use super::{CheckpointError, CheckpointStore, RestartAt, ShardCheckpoint, SqliteStore, StoreLock};
use crate::config::{Config, MappingConfig, SourceKind, StateBackend};

/// An opened store (with its lock, for SQLite) and a runtime to drive it from the CLI.
pub(crate) struct AdminStore {
    store: Arc<dyn CheckpointStore>,
    runtime: tokio::runtime::Runtime,
    _lock: Option<StoreLock>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error(transparent)]
    Store(#[from] CheckpointError),
    #[error("no stream mapping matches `{0}` (give its uuid or event_source_arn; `esmd checkpoints list` shows them)")]
    UnknownMapping(String),
    #[error("`{0}` matches several mappings; give the uuid")]
    Ambiguous(String),
    #[error("shard {shard} is leased by {owner}, a running esmd; stop it first, or pass --force to fence it off")]
    Leased { shard: String, owner: String },
    #[error("cannot start a runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

impl AdminStore {
    pub(crate) fn open(config: &Config) -> Result<Self, AdminError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (store, lock): (Arc<dyn CheckpointStore>, _) = match &config.state.backend {
            StateBackend::Sqlite => {
                let lock = StoreLock::acquire(&config.state.path)?;
                (Arc::new(SqliteStore::open(&config.state.path)?), Some(lock))
            }
            StateBackend::DynamoDb(leases) => {
                let store = runtime.block_on(async {
                    let aws = crate::aws::AwsContext::load(&config.aws).await;
                    DynamoStore::open(aws.dynamodb(), leases).await
                })?;
                (Arc::new(store), None)
            }
        };
        Ok(AdminStore {
            store,
            runtime,
            _lock: lock,
        })
    }

    fn shards(&self, uuid: &str) -> Result<Vec<ShardCheckpoint>, AdminError> {
        Ok(self.runtime.block_on(self.store.shards(uuid))?)
    }

    /// Refuses to move a shard another instance holds, unless forced.
    fn check_free(&self, uuid: &str, shard: Option<&str>, force: bool) -> Result<(), AdminError> {
        if force {
            return Ok(());
        }
        let held = self
            .shards(uuid)?
            .into_iter()
            .find(|s| s.owner.is_some() && shard.is_none_or(|wanted| s.shard_id == wanted));
        match held {
            Some(s) => Err(AdminError::Leased {
                shard: s.shard_id,
                owner: s.owner.unwrap_or_default(),
            }),
            None => Ok(()),
        }
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
            .map(|m| Ok((m, self.shards(&m.uuid)?)))
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
                            "owner": s.owner,
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
                if let Some(owner) = &s.owner {
                    let _ = write!(out, "  leased by {owner}");
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
        (json, force): (bool, bool),
    ) -> Result<String, AdminError> {
        let m = find(config, mapping)?;
        self.check_free(&m.uuid, Some(shard_id), force)?;
        self.runtime
            .block_on(self.store.set_position(&m.uuid, shard_id, position))?;
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
        (json, force): (bool, bool),
    ) -> Result<String, AdminError> {
        let m = find(config, mapping)?;
        self.check_free(&m.uuid, None, force)?;
        let n = self.runtime.block_on(self.store.reset(&m.uuid))?;
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
