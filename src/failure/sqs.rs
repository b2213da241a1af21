//! Which messages of an SQS batch to delete after an invocation (`docs/esm-semantics.md` §3).
//! Pure: the source applies the decision with DeleteMessageBatch.

use crate::invoke::InvokeOutcome;
use crate::payload::response::{parse_batch_item_failures, resolve_identifiers, BatchItemFailures};

/// The part of a message the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageKey<'a> {
    pub(crate) message_id: &'a str,
    /// `MessageGroupId` on FIFO queues.
    pub(crate) group_id: Option<&'a str>,
}

/// What to do with a batch once the function has answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqsDisposition {
    /// Delete every message.
    DeleteAll,
    /// Delete the messages at `delete`; the ones at `keep` return after their visibility
    /// timeout.
    Partial {
        delete: Vec<usize>,
        keep: Vec<usize>,
    },
    /// Delete nothing: every message returns after its visibility timeout.
    KeepAll { reason: String },
}

/// Applies AWS's rules to a function's answer.
///
/// Without `ReportBatchItemFailures` a returned body is ignored. With it, the listed messages
/// are kept and the rest deleted; a malformed response or an unknown identifier keeps all. On
/// FIFO queues, once a message of a group is kept, every later message of that group is kept
/// too, so the group's order survives the retry even if the function reported only the first
/// failure.
pub(crate) fn decide(
    outcome: &InvokeOutcome,
    report_batch_item_failures: bool,
    batch: &[MessageKey<'_>],
    fifo: bool,
) -> SqsDisposition {
    let body = match outcome {
        InvokeOutcome::Returned { body } => body,
        other => {
            return SqsDisposition::KeepAll {
                reason: other.summary(),
            }
        }
    };
    if !report_batch_item_failures {
        return SqsDisposition::DeleteAll;
    }
    let reported = match parse_batch_item_failures(body) {
        Ok(BatchItemFailures::None) => return SqsDisposition::DeleteAll,
        Ok(BatchItemFailures::Some(ids)) => ids,
        Err(e) => {
            return SqsDisposition::KeepAll {
                reason: e.to_string(),
            }
        }
    };
    let mut failed = match resolve_identifiers(&reported, batch.iter().map(|m| m.message_id)) {
        Ok(positions) => positions,
        Err(e) => {
            return SqsDisposition::KeepAll {
                reason: e.to_string(),
            }
        }
    };
    if fifo {
        let mut blocked_groups: Vec<&str> = Vec::new();
        failed.clear();
        for (i, m) in batch.iter().enumerate() {
            let group = m.group_id.unwrap_or_default();
            let reported_here = reported.iter().any(|id| id == m.message_id);
            if reported_here && !blocked_groups.contains(&group) {
                blocked_groups.push(group);
            }
            if blocked_groups.contains(&group) {
                failed.push(i);
            }
        }
    }
    let keep = failed;
    let delete: Vec<usize> = (0..batch.len()).filter(|i| !keep.contains(i)).collect();
    if keep.is_empty() {
        SqsDisposition::DeleteAll
    } else {
        SqsDisposition::Partial { delete, keep }
    }
}

/// esmd's backoff for a failed SQS message: base × 2^(receive count − 1), capped at `max`
/// and at SQS's 12-hour limit, with "equal jitter" (a uniform draw from the upper half), so
/// retries of many messages spread out. `unit` in [0, 1) supplies the randomness.
pub(crate) fn backoff_visibility(
    backoff: &crate::config::RetryBackoff,
    receive_count: u32,
    unit: f64,
) -> std::time::Duration {
    let exp = receive_count.saturating_sub(1).min(32);
    let full = backoff
        .base
        .saturating_mul(1u32 << exp.min(31))
        .min(backoff.max)
        .min(crate::config::SQS_MAX_VISIBILITY);
    let half = full / 2;
    let jittered = half + half.mul_f64(unit.clamp(0.0, 1.0));
    // Whole seconds, as ChangeMessageVisibility takes; at least one.
    std::time::Duration::from_secs(jittered.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn returned(body: &str) -> InvokeOutcome {
        InvokeOutcome::Returned {
            body: Bytes::from(body.to_string()),
        }
    }

    fn keys<'a>(ids: &'a [(&'a str, Option<&'a str>)]) -> Vec<MessageKey<'a>> {
        ids.iter()
            .map(|(m, g)| MessageKey {
                message_id: m,
                group_id: *g,
            })
            .collect()
    }

    const PARTIAL: &str = r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#;

    #[test]
    fn response_is_ignored_without_the_flag() {
        let batch = keys(&[("a", None), ("b", None)]);
        assert_eq!(
            decide(&returned(PARTIAL), false, &batch, false),
            SqsDisposition::DeleteAll
        );
        assert_eq!(
            decide(&returned("not json"), false, &batch, false),
            SqsDisposition::DeleteAll
        );
    }

    #[test]
    fn partial_keeps_only_listed() {
        let batch = keys(&[("a", None), ("b", None), ("c", None)]);
        assert_eq!(
            decide(&returned(PARTIAL), true, &batch, false),
            SqsDisposition::Partial {
                delete: vec![0, 2],
                keep: vec![1]
            }
        );
        assert_eq!(
            decide(&returned(""), true, &batch, false),
            SqsDisposition::DeleteAll
        );
        assert_eq!(
            decide(
                &returned(r#"{"batchItemFailures":[]}"#),
                true,
                &batch,
                false
            ),
            SqsDisposition::DeleteAll
        );
    }

    #[test]
    fn bad_responses_keep_everything() {
        let batch = keys(&[("a", None)]);
        for body in [
            "not json",
            r#"{"batchItemFailures":[{"itemIdentifier":"zz"}]}"#,
            r#"{"batchItemFailures":[{}]}"#,
        ] {
            assert!(matches!(
                decide(&returned(body), true, &batch, false),
                SqsDisposition::KeepAll { .. }
            ));
        }
        let error = InvokeOutcome::FunctionError {
            kind: "Unhandled".into(),
            body: Bytes::new(),
        };
        assert!(matches!(
            decide(&error, true, &batch, false),
            SqsDisposition::KeepAll { .. }
        ));
        let throttle = InvokeOutcome::Throttled {
            retry_after: None,
            message: String::new(),
        };
        assert!(matches!(
            decide(&throttle, false, &batch, false),
            SqsDisposition::KeepAll { .. }
        ));
    }

    #[test]
    fn backoff_doubles_per_receive_and_stays_capped() {
        use crate::config::RetryBackoff;
        use std::time::Duration;
        let b = RetryBackoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(100),
        };
        let top = |rc| backoff_visibility(&b, rc, 0.999_999);
        assert_eq!(top(1), Duration::from_secs(9));
        assert_eq!(top(2), Duration::from_secs(19));
        assert_eq!(top(3), Duration::from_secs(39));
        assert_eq!(top(10), Duration::from_secs(99));
        assert_eq!(backoff_visibility(&b, 1, 0.0), Duration::from_secs(5));
        let huge = RetryBackoff {
            base: Duration::from_secs(43_200),
            max: Duration::from_secs(43_200),
        };
        assert!(backoff_visibility(&huge, 40, 0.5) <= crate::config::SQS_MAX_VISIBILITY);
    }

    proptest::proptest! {
        #[test]
        fn backoff_is_within_half_and_full(base in 1u64..1000, max in 1u64..50_000, rc in 1u32..100, unit in 0.0f64..1.0) {
            use crate::config::RetryBackoff;
            use std::time::Duration;
            let b = RetryBackoff { base: Duration::from_secs(base), max: Duration::from_secs(max.max(base)) };
            let d = backoff_visibility(&b, rc, unit);
            let full = (base.saturating_mul(1u64 << (rc - 1).min(31))).min(max.max(base)).min(43_200);
            proptest::prop_assert!(d.as_secs() <= full.max(1));
            proptest::prop_assert!(d.as_secs() >= (full / 2).max(1) - 1);
        }
    }

    #[test]
    fn fifo_keeps_the_rest_of_a_failed_group() {
        let batch = keys(&[
            ("a", Some("g1")),
            ("b", Some("g1")),
            ("c", Some("g2")),
            ("d", Some("g1")),
        ]);
        let body = r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#;
        assert_eq!(
            decide(&returned(body), true, &batch, true),
            SqsDisposition::Partial {
                delete: vec![0, 2],
                keep: vec![1, 3]
            }
        );
    }
}
