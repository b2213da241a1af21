//! Shard lineage, pure: whether a listed shard may start now and where it starts.
//!
//! - A shard already ended or skipped does not start again.
//! - A child starts only after every parent is finished; a parent that is neither listed nor
//!   stored has expired from the stream and counts as finished.
//! - Where it starts: an operator's `esmd checkpoints set` position first; then after its
//!   checkpoint; then at `TRIM_HORIZON` when a parent was read by this mapping (a child after
//!   a split or merge must not skip records); otherwise at the mapping's starting position.

use std::collections::{HashMap, HashSet};

use super::api::{IteratorPosition, ShardInfo};
use crate::checkpoint::{RestartAt, ShardCheckpoint, ShardStatus};

/// Where `shard` starts, or `None` when it must not start now.
pub(crate) fn start_position(
    shard: &ShardInfo,
    stored: &HashMap<String, ShardCheckpoint>,
    listed: &HashSet<&str>,
    configured: &IteratorPosition,
) -> Option<IteratorPosition> {
    let state = stored.get(&shard.shard_id);
    if state.is_some_and(|s| s.status.is_finished()) {
        return None;
    }
    let parents_finished = shard.parents().all(|p| match stored.get(p) {
        Some(s) => s.status.is_finished(),
        None => !listed.contains(p),
    });
    if !parents_finished {
        return None;
    }
    let parent_was_read = shard.parents().any(|p| {
        stored
            .get(p)
            .is_some_and(|s| s.status != ShardStatus::Skipped)
    });
    let restart_at = state.and_then(|s| s.restart_at.as_ref());
    let checkpoint = state.and_then(|s| s.sequence_number.as_ref());
    Some(match (restart_at, checkpoint, parent_was_read) {
        (Some(RestartAt::TrimHorizon), _, _) => IteratorPosition::TrimHorizon,
        (Some(RestartAt::Latest), _, _) => IteratorPosition::Latest,
        (Some(RestartAt::AtTimestamp(t)), _, _) => IteratorPosition::AtTimestamp(*t),
        (Some(RestartAt::AtSequenceNumber(s)), _, _) => {
            IteratorPosition::AtSequenceNumber(s.clone())
        }
        (None, Some(seq), _) => IteratorPosition::AfterSequenceNumber(seq.clone()),
        (None, None, true) => IteratorPosition::TrimHorizon,
        (None, None, false) => configured.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SequenceNumber;

    fn shard(id: &str, parents: &[&str]) -> ShardInfo {
        ShardInfo {
            shard_id: id.into(),
            parent_shard_id: parents.first().map(|p| p.to_string()),
            adjacent_parent_shard_id: parents.get(1).map(|p| p.to_string()),
            ending_sequence_number: None,
        }
    }

    fn stored(entries: &[(&str, ShardStatus, Option<&str>)]) -> HashMap<String, ShardCheckpoint> {
        entries
            .iter()
            .map(|(id, status, seq)| {
                let row = ShardCheckpoint {
                    shard_id: id.to_string(),
                    sequence_number: seq.map(|s| SequenceNumber::parse(s).unwrap()),
                    status: *status,
                    updated_at: String::new(),
                    window: None,
                    restart_at: None,
                    owner: None,
                };
                (id.to_string(), row)
            })
            .collect()
    }

    const LATEST: IteratorPosition = IteratorPosition::Latest;

    #[test]
    fn a_new_shard_starts_at_the_starting_position_and_a_checkpointed_one_after_it() {
        let listed = HashSet::from(["a"]);
        let none = stored(&[]);
        assert_eq!(
            start_position(&shard("a", &[]), &none, &listed, &LATEST),
            Some(LATEST)
        );
        let checkpointed = stored(&[("a", ShardStatus::Reading, Some("42"))]);
        assert_eq!(
            start_position(&shard("a", &[]), &checkpointed, &listed, &LATEST),
            Some(IteratorPosition::AfterSequenceNumber(
                SequenceNumber::parse("42").unwrap()
            ))
        );
        let ended = stored(&[("a", ShardStatus::Ended, Some("42"))]);
        assert_eq!(
            start_position(&shard("a", &[]), &ended, &listed, &LATEST),
            None
        );
    }

    #[test]
    fn children_wait_for_every_parent_then_read_from_the_start() {
        let listed = HashSet::from(["p1", "p2", "c"]);
        let merge = shard("c", &["p1", "p2"]);
        let one_open = stored(&[
            ("p1", ShardStatus::Ended, None),
            ("p2", ShardStatus::Reading, None),
        ]);
        assert_eq!(start_position(&merge, &one_open, &listed, &LATEST), None);
        let both = stored(&[
            ("p1", ShardStatus::Ended, None),
            ("p2", ShardStatus::Ended, None),
        ]);
        assert_eq!(
            start_position(&merge, &both, &listed, &LATEST),
            Some(IteratorPosition::TrimHorizon),
            "a child of a shard this mapping read must not skip records"
        );
        let skipped = stored(&[
            ("p1", ShardStatus::Skipped, None),
            ("p2", ShardStatus::Skipped, None),
        ]);
        assert_eq!(
            start_position(&merge, &skipped, &listed, &LATEST),
            Some(LATEST)
        );
    }

    #[test]
    fn an_expired_parent_counts_as_finished() {
        let listed = HashSet::from(["c"]);
        let child = shard("c", &["gone"]);
        assert_eq!(
            start_position(&child, &stored(&[]), &listed, &LATEST),
            Some(LATEST)
        );
        let listed = HashSet::from(["c", "gone"]);
        assert_eq!(start_position(&child, &stored(&[]), &listed, &LATEST), None);
    }

    #[test]
    fn an_operator_position_wins_over_the_checkpoint() {
        let listed = HashSet::from(["a"]);
        let mut rows = stored(&[("a", ShardStatus::Reading, Some("42"))]);
        let seven = SequenceNumber::parse("7").unwrap();
        if let Some(row) = rows.get_mut("a") {
            row.restart_at = Some(RestartAt::AtSequenceNumber(seven.clone()));
        }
        assert_eq!(
            start_position(&shard("a", &[]), &rows, &listed, &LATEST),
            Some(IteratorPosition::AtSequenceNumber(seven))
        );
    }
}
