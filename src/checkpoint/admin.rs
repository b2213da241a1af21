//! `esmd checkpoints`: list, move and clear stream checkpoints in the configured store, for
//! replay and rewind (AWS cannot do this). Every command takes the store's lock first, so it
//! refuses to run while a daemon uses the same store.

use std::fmt::Write;

use super::{CheckpointError, RestartAt, SqliteStore, StoreLock};
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
}

impl AdminStore {
    pub(crate) fn open(config: &Config) -> Result<Self, AdminError> {
        let lock = StoreLock::acquire(&config.state.path)?;
        Ok(AdminStore {
            store: SqliteStore::open(&config.state.path)?,
            _lock: lock,
        })
    }

    /// Every stream mapping of the config with its shards: status, checkpoint and age.
    pub(crate) fn list(&self, config: &Config) -> Result<String, AdminError> {
        let mut out = String::new();
        let now = chrono::Utc::now();
        for m in config
            .mappings
            .iter()
            .filter(|m| m.kind() != SourceKind::Sqs)
        {
            let _ = writeln!(out, "{}  {} -> {}", m.uuid, m.source.arn(), m.function_name);
            let shards = self.store.shards_blocking(&m.uuid)?;
            if shards.is_empty() {
                let _ = writeln!(out, "  (no checkpoints yet)");
            }
            for s in shards {
                let age = chrono::DateTime::parse_from_rfc3339(&s.updated_at)
                    .map(|t| format_age(now - t.with_timezone(&chrono::Utc)))
                    .unwrap_or_else(|_| "?".into());
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
    ) -> Result<String, AdminError> {
        let m = find(config, mapping)?;
        self.store
            .set_position_blocking(&m.uuid, shard_id, position)?;
        Ok(format!(
            "{} {shard_id}: the next run reads from {}\n",
            m.uuid,
            position.to_text()
        ))
    }

    /// Forgets everything stored for a mapping; the next run starts at `starting_position`.
    pub(crate) fn reset(&self, config: &Config, mapping: &str) -> Result<String, AdminError> {
        let m = find(config, mapping)?;
        let n = self.store.reset_blocking(&m.uuid)?;
        Ok(format!(
            "{}: cleared {n} shard checkpoint(s); the next run starts at its starting_position\n",
            m.uuid
        ))
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
