//! FIFO message-group bookkeeping, pure: which groups an in-flight batch holds, and which
//! groups have failed messages still to come back (in the failed batch's order). The SQS
//! source asks [`FifoGroups::claim`] what to keep of each receive and releases the rest.
//!
//! Real SQS never hands out a later message of a group first, but emulators can (moto skips a
//! timed-out message while a later one of its group is still marked in flight), and order must
//! hold whatever the backend. A failed message that comes back before the failed messages
//! ahead of it is held (still invisible) and joins the batch that receives them, rather than
//! released: a release would cost it a receive, and bring it one receive closer to the DLQ
//! than on AWS (LocalStack's recording `test_report_batch_item_failures`, where AWS
//! redelivers the three failed messages together, each with ApproximateReceiveCount 2).

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
    /// Failed messages that came back before those ahead of them, per group, in arrival order.
    held: HashMap<String, Vec<SqsMessage>>,
}

/// Where a received message stands in its group's retry order.
enum Turn {
    /// No failed messages of its group are awaited.
    Free,
    /// It is the next awaited one.
    Next,
    /// It is awaited, but others come first: hold it.
    Early,
    /// Not awaited while others are: release it.
    Refused,
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
        let mut release = self.expire(now);
        let mut keep = Vec::with_capacity(messages.len());
        let mut mine: HashSet<String> = HashSet::new();
        let mut refused: HashSet<String> = HashSet::new();
        for m in messages {
            let group = m.group_id().unwrap_or_default().to_string();
            let blocked = refused.contains(&group)
                || (!mine.contains(&group) && self.in_flight.contains(&group));
            let turn = if blocked {
                Turn::Refused
            } else {
                self.turn(&group, &m.message_id)
            };
            match turn {
                Turn::Free | Turn::Next => {
                    self.in_flight.insert(group.clone());
                    keep.push(m);
                    self.take_held_in_turn(&group, &mut keep);
                    mine.insert(group);
                }
                Turn::Early => self.held.entry(group).or_default().push(m),
                // A released message does not count as the failed one coming back.
                Turn::Refused => {
                    refused.insert(group);
                    release.push(m);
                }
            }
        }
        self.awaiting_retry.retain(|_, (ids, _)| !ids.is_empty());
        (keep, release)
    }

    /// Drops the waits that have run out; their held messages are released.
    fn expire(&mut self, now: Instant) -> Vec<SqsMessage> {
        self.awaiting_retry
            .retain(|_, (ids, until)| !ids.is_empty() && *until > now);
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|g| !self.awaiting_retry.contains_key(*g))
            .cloned()
            .collect();
        gone.iter()
            .flat_map(|g| self.held.remove(g).unwrap_or_default())
            .collect()
    }

    /// Where a message stands in its group's retry order (the failed batch's own order: SQS
    /// delivered it in group order; sequence numbers would do on AWS, but moto's are random).
    fn turn(&mut self, group: &str, message_id: &str) -> Turn {
        let Some((pending, _)) = self.awaiting_retry.get_mut(group) else {
            return Turn::Free;
        };
        if pending.front().map(String::as_str) == Some(message_id) {
            pending.pop_front();
            Turn::Next
        } else if pending.iter().any(|id| id == message_id) {
            Turn::Early
        } else if pending.is_empty() {
            Turn::Free
        } else {
            Turn::Refused
        }
    }

    /// Moves held messages of `group` whose turn has come into `keep`, in order.
    fn take_held_in_turn(&mut self, group: &str, keep: &mut Vec<SqsMessage>) {
        loop {
            let Some((pending, _)) = self.awaiting_retry.get_mut(group) else {
                return;
            };
            let Some(next) = pending.front() else {
                return;
            };
            let held = self.held.entry(group.to_string()).or_default();
            let Some(at) = held.iter().position(|m| &m.message_id == next) else {
                return;
            };
            keep.push(held.remove(at));
            pending.pop_front();
            if held.is_empty() {
                self.held.remove(group);
            }
        }
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

    /// moto hands out message 4 alone before 2 and 3 (all three failed in one batch): it is
    /// held, not released, and joins them when they come back, in order.
    #[tokio::test(start_paused = true)]
    async fn a_failed_message_back_early_is_held_until_those_ahead_of_it_return() {
        let mut groups = FifoGroups::default();
        let until = Instant::now() + Duration::from_secs(35);
        groups.await_retry([("a", "2"), ("a", "3"), ("a", "4")], until);
        let (keep, release) = groups.claim(vec![message("4", "a")], Instant::now());
        assert_eq!((ids(&keep), ids(&release)), (vec![], vec![]));
        let (keep, release) =
            groups.claim(vec![message("2", "a"), message("3", "a")], Instant::now());
        assert_eq!((ids(&keep), ids(&release)), (vec!["2", "3", "4"], vec![]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_message_is_released_when_the_wait_runs_out() {
        let mut groups = FifoGroups::default();
        let until = Instant::now() + Duration::from_secs(35);
        groups.await_retry([("a", "2"), ("a", "4")], until);
        let (_, release) = groups.claim(vec![message("4", "a")], Instant::now());
        assert!(release.is_empty());
        let later = Instant::now() + Duration::from_secs(36);
        let (keep, release) = groups.claim(vec![message("9", "b")], later);
        assert_eq!((ids(&keep), ids(&release)), (vec!["9"], vec!["4"]));
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
