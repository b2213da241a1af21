//! FIFO message-group bookkeeping, pure: which groups an in-flight batch holds, and which
//! groups have failed messages still to come back (in the failed batch's order). The SQS
//! source asks [`FifoGroups::claim`] what to keep of each receive and releases the rest.
//!
//! Real SQS never hands out a later message of a group first, but emulators can, and order must
//! hold whatever the backend. moto's ReceiveMessage (`sqs/models.py`, `receive_messages`)
//! clears a timed-out message's in-flight mark only when its loop reaches it, and skips every
//! message of a group that still has one: when several failed messages of a group time out
//! together, it hands out the *last* of them first. esmd releases it to keep the order, and
//! moto counts that receive: on moto such a message reaches its DLQ one receive early (the
//! conformance test `sqs_fifo_partial_batch_failures` shows it; README, emulator differences).
//! Holding it instead was tried: moto then keeps the whole group locked while it is held.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::time::Instant;

use crate::payload::sqs::SqsMessage;

#[derive(Debug, Default)]
pub(super) struct FifoGroups {
    /// Groups held by an in-flight batch.
    in_flight: HashSet<String>,
    /// Groups with failed messages still waiting to come back: their message ids in group
    /// order, and when esmd stops waiting (the visibility timeout plus a margin).
    awaiting_retry: HashMap<String, (VecDeque<String>, Instant)>,
}

impl FifoGroups {
    /// Splits received messages into those to keep, claiming their groups, and those to
    /// release: messages of a group another batch holds, messages that come before their
    /// group's earliest failed message, and every later message of such a group.
    pub(super) fn claim(
        &mut self,
        messages: Vec<SqsMessage>,
        now: Instant,
    ) -> (Vec<SqsMessage>, Vec<SqsMessage>) {
        self.awaiting_retry
            .retain(|_, (ids, until)| !ids.is_empty() && *until > now);
        let (mut keep, mut release) = (Vec::with_capacity(messages.len()), Vec::new());
        let mut mine: HashSet<String> = HashSet::new();
        let mut refused: HashSet<String> = HashSet::new();
        for m in messages {
            let group = m.group_id().unwrap_or_default().to_string();
            let blocked = refused.contains(&group)
                || (!mine.contains(&group) && self.in_flight.contains(&group));
            // A released message does not count as the failed one coming back.
            if blocked || self.out_of_turn(&group, &m.message_id) {
                refused.insert(group);
                release.push(m);
            } else {
                self.in_flight.insert(group.clone());
                mine.insert(group);
                keep.push(m);
            }
        }
        (keep, release)
    }

    /// Whether a message comes before its group's earliest failed message. Only that message
    /// may come next (the order is the failed batch's own: SQS delivered it in group order;
    /// sequence numbers would do on AWS, but moto's are random).
    fn out_of_turn(&mut self, group: &str, message_id: &str) -> bool {
        let Some((pending, _)) = self.awaiting_retry.get_mut(group) else {
            return false;
        };
        let out_of_turn = if pending.front().map(String::as_str) == Some(message_id) {
            pending.pop_front();
            false
        } else {
            !pending.is_empty()
        };
        if pending.is_empty() {
            self.awaiting_retry.remove(group);
        }
        out_of_turn
    }

    /// Frees the groups of a settled or released batch.
    pub(super) fn unclaim<'a>(&mut self, groups: impl IntoIterator<Item = &'a str>) {
        for group in groups {
            self.in_flight.remove(group);
        }
    }

    /// Remembers the kept (failed) messages of a batch, `(group, message id)` in order, so
    /// that no later message of their groups is delivered before they come back or `until`.
    pub(super) fn await_retry<'a>(
        &mut self,
        kept: impl IntoIterator<Item = (&'a str, &'a str)>,
        until: Instant,
    ) {
        for (group, message_id) in kept {
            let entry = self
                .awaiting_retry
                .entry(group.to_string())
                .or_insert_with(|| (VecDeque::new(), until));
            entry.0.push_back(message_id.to_string());
            entry.1 = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(id: &str, group: &str) -> SqsMessage {
        SqsMessage {
            message_id: id.into(),
            attributes: vec![("MessageGroupId".into(), group.into())],
            ..SqsMessage::default()
        }
    }

    fn ids(messages: &[SqsMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.message_id.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_in_flight_is_refused_to_another_batch_until_unclaimed() {
        let mut groups = FifoGroups::default();
        let now = Instant::now();
        let (keep, release) = groups.claim(vec![message("1", "a"), message("2", "a")], now);
        assert_eq!((ids(&keep), ids(&release)), (vec!["1", "2"], vec![]));
        let (keep, release) = groups.claim(vec![message("3", "a"), message("4", "b")], now);
        assert_eq!((ids(&keep), ids(&release)), (vec!["4"], vec!["3"]));
        groups.unclaim(["a", "b"]);
        let (keep, _) = groups.claim(vec![message("3", "a")], now);
        assert_eq!(ids(&keep), vec!["3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_failure_only_the_earliest_failed_message_may_come_next() {
        let mut groups = FifoGroups::default();
        let until = Instant::now() + Duration::from_secs(35);
        groups.await_retry([("a", "1"), ("a", "2")], until);
        // A later message of the group arrives first: refused, and so is the rest of it.
        let (keep, release) =
            groups.claim(vec![message("3", "a"), message("1", "a")], Instant::now());
        assert_eq!((ids(&keep), ids(&release)), (vec![], vec!["3", "1"]));
        let (keep, _) = groups.claim(vec![message("1", "a"), message("2", "a")], Instant::now());
        assert_eq!(ids(&keep), vec!["1", "2"]);
        groups.unclaim(["a"]);
        let (keep, _) = groups.claim(vec![message("3", "a")], Instant::now());
        assert_eq!(
            ids(&keep),
            vec!["3"],
            "the wait is over once the failed ones came back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_failed_messages_ends_at_its_deadline() {
        let mut groups = FifoGroups::default();
        groups.await_retry([("a", "1")], Instant::now() + Duration::from_secs(35));
        tokio::time::advance(Duration::from_secs(36)).await;
        let (keep, _) = groups.claim(vec![message("9", "a")], Instant::now());
        assert_eq!(ids(&keep), vec!["9"]);
    }
}
