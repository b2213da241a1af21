//! The checker on good logs and on deliberately broken ones.

use super::*;
use crate::log::*;

fn produced(ids: &[(&str, &str)]) -> Vec<Produced> {
    ids.iter()
        .enumerate()
        .map(|(n, (id, key))| Produced {
            id: id.to_string(),
            key: key.to_string(),
            at_ms: n as u64,
        })
        .collect()
}

fn inv(at: u64, ids: &[&str], acked: &[&str]) -> Invocation {
    Invocation {
        at_ms: at,
        done_ms: at + 10,
        records: ids
            .iter()
            .map(|id| Delivered {
                id: id.to_string(),
                shard: None,
                sequence: None,
            })
            .collect(),
        acked: acked.iter().map(|s| s.to_string()).collect(),
        answer_lost: false,
    }
}

fn on_shard(mut i: Invocation, shard: &str, first_seq: u64) -> Invocation {
    for (n, r) in i.records.iter_mut().enumerate() {
        r.shard = Some(shard.to_string());
        r.sequence = Some((first_seq + n as u64).to_string());
    }
    i
}

/// Two keys, three records each, delivered in order, then a clean SIGTERM exit.
fn good() -> RunLog {
    RunLog {
        ordered: true,
        produced: produced(&[
            ("a1", "A"),
            ("b1", "B"),
            ("a2", "A"),
            ("b2", "B"),
            ("a3", "A"),
            ("b3", "B"),
        ]),
        invocations: vec![
            inv(100, &["a1", "a2"], &["a1", "a2"]),
            inv(200, &["b1", "b2", "b3"], &["b1", "b2", "b3"]),
            inv(300, &["a3"], &["a3"]),
        ],
        exits: vec![Exit {
            after: "sigterm".into(),
            code: Some(0),
            signal: None,
            panics: vec![],
        }],
        ..RunLog::default()
    }
}

#[test]
fn a_good_log_passes() {
    let v = check(&good());
    assert!(v.ok(), "{:?}", v.problems());
    assert_eq!((v.produced, v.acked, v.duplicates), (6, 6, 0));
}

#[test]
fn a_planted_loss_is_caught() {
    let mut log = good();
    log.invocations[2].acked.clear();
    let v = check(&log);
    assert_eq!(v.lost, vec!["a3".to_string()]);
    assert!(!v.ok());
}

#[test]
fn a_record_in_the_dlq_or_a_destination_range_is_not_lost() {
    let mut log = good();
    log.invocations[2].acked.clear();
    log.destination.push(Destined::Id("a3".into()));
    assert!(check(&log).ok());

    let mut log = good();
    log.invocations[1] = on_shard(log.invocations[1].clone(), "shard-1", 10);
    log.invocations[1].acked.clear();
    log.destination.push(Destined::Range {
        shard: "shard-1".into(),
        start: "10".into(),
        end: "11".into(),
    });
    let v = check(&log);
    assert_eq!(v.lost, vec!["b3".to_string()], "12 is past the range's end");
}

#[test]
fn a_planted_reorder_is_caught() {
    let mut log = good();
    log.invocations[0] = inv(100, &["a2", "a1"], &["a1", "a2"]);
    let v = check(&log);
    assert_eq!(v.order_violations.len(), 2, "{:?}", v.order_violations);

    let mut log = good();
    log.invocations.swap(0, 2);
    let v = check(&log);
    assert_eq!(v.order_violations.len(), 1, "{:?}", v.order_violations);
    assert!(v.order_violations[0].contains("a3"));
}

#[test]
fn a_redelivered_prefix_is_not_a_reorder_and_unordered_sources_are_not_checked() {
    let mut log = good();
    log.invocations
        .insert(1, inv(150, &["a1", "a2"], &["a1", "a2"]));
    log.disruptions.push(Disruption {
        kind: "kill".into(),
        start_ms: 120,
        end_ms: 130,
        checkpoints: vec![],
    });
    let v = check(&log);
    assert!(v.ok(), "{:?}", v.problems());
    assert_eq!(v.duplicates, 2);
    assert_eq!(v.max_duplicates_per_disruption, 2);

    let mut log = good();
    log.ordered = false;
    log.invocations.swap(0, 2);
    assert!(check(&log).ok());
}

#[test]
fn a_child_shard_before_its_parent_finished_is_caught() {
    let mut log = good();
    log.ordered = false;
    log.invocations[0] = on_shard(log.invocations[0].clone(), "parent", 1);
    log.invocations[1] = on_shard(log.invocations[1].clone(), "child", 1);
    log.invocations[2] = on_shard(log.invocations[2].clone(), "parent", 3);
    log.lineage.push(("parent".into(), "child".into()));
    let v = check(&log);
    assert_eq!(v.order_violations.len(), 1, "{:?}", v.order_violations);
    log.invocations.swap(1, 2);
    assert!(check(&log).ok());
}

#[test]
fn a_planted_backwards_checkpoint_is_caught_numerically() {
    let mut log = good();
    let sample = |at, seq: Option<&str>| CheckpointSample {
        at_ms: at,
        step: format!("step at {at}"),
        shard: "shard-0".into(),
        sequence: seq.map(str::to_string),
    };
    log.checkpoints = vec![
        sample(1, None),
        sample(2, Some("9")),
        sample(3, Some("10")),
        sample(4, Some("10")),
    ];
    assert!(check(&log).ok(), "9 < 10 as numbers, not as strings");
    log.checkpoints.push(sample(5, Some("9")));
    log.checkpoints.push(sample(6, None));
    let v = check(&log);
    assert_eq!(v.backwards_checkpoints.len(), 2, "{v:?}");
}

#[test]
fn a_duplicate_without_a_disruption_is_unexplained() {
    let mut log = good();
    log.invocations.push(inv(5_000, &["b2"], &["b2"]));
    let v = check(&log);
    assert_eq!(v.duplicates, 1);
    assert_eq!(v.unexplained_duplicates.len(), 1);
    assert!(!v.ok());

    log.disruptions.push(Disruption {
        kind: "kill".into(),
        start_ms: 4_000,
        end_ms: 4_100,
        checkpoints: vec![],
    });
    assert!(
        !check(&log).ok(),
        "a kill 3.8 s after the ack does not explain it"
    );
    log.disruptions[0].start_ms = 1_000;
    assert!(check(&log).ok());
}

#[test]
fn a_lost_answer_is_no_acknowledgement_and_a_retry_is_no_duplicate() {
    let mut log = good();
    log.invocations[1].answer_lost = true;
    log.invocations
        .push(inv(9_000, &["b1", "b2", "b3"], &["b1", "b2", "b3"]));
    let v = check(&log);
    assert!(v.ok(), "{:?}", v.problems());
    assert_eq!(v.duplicates, 0);
}

#[test]
fn a_failed_sigterm_exit_or_a_panic_is_caught() {
    let mut log = good();
    log.exits[0].code = Some(1);
    log.exits.push(Exit {
        after: "kill".into(),
        code: None,
        signal: Some(9),
        panics: vec!["thread 'tokio' panicked at src/x.rs:1".into()],
    });
    let v = check(&log);
    assert_eq!(v.bad_exits.len(), 1);
    assert_eq!(v.panics.len(), 1);
}

#[test]
fn sequence_numbers_compare_as_numbers() {
    assert_eq!(compare_sequence("9", "10"), Ordering::Less);
    assert_eq!(
        compare_sequence(
            "49590338271490256608559692538361571095921575989136588898",
            "49590338271490256608559692538361571095921575989136588899"
        ),
        Ordering::Less
    );
    assert_eq!(compare_sequence("007", "7"), Ordering::Equal);
}

#[test]
fn a_reorder_the_queue_made_is_reported_apart_and_one_esmd_made_is_not() {
    // The queue hands out a3 while a2 is unacknowledged and not in the same answer.
    let mut log = good();
    log.invocations = vec![
        inv(100, &["a1"], &["a1"]),
        inv(200, &["a3"], &["a3"]),
        inv(300, &["a2"], &["a2"]),
        inv(400, &["b1", "b2", "b3"], &["b1", "b2", "b3"]),
    ];
    log.handouts = vec![
        Handout {
            at_ms: 90,
            ids: vec!["a1".into(), "a2".into()],
        },
        Handout {
            at_ms: 190,
            ids: vec!["a3".into()],
        },
    ];
    let v = check(&log);
    assert!(v.ok(), "{:?}", v.problems());
    assert_eq!(v.backend_order_violations.len(), 1);

    // The queue handed out a2 before a3 in one answer: esmd reordered them.
    log.handouts[1].ids = vec!["a2".into(), "a3".into()];
    let v = check(&log);
    assert_eq!(v.order_violations.len(), 1, "{v:?}");
    assert!(v.backend_order_violations.is_empty());
}

#[test]
fn a_stream_replay_is_explained_only_from_a_checkpoint_below_the_record() {
    let mut log = good();
    log.ordered = false;
    log.invocations[1] = on_shard(log.invocations[1].clone(), "shard-0", 10);
    // b1..b3 (10..12) acknowledged at 200 ms; a SIGTERM 5 s later; b2 and b3 come again.
    log.invocations.push(on_shard(
        inv(6_000, &["b2", "b3"], &["b2", "b3"]),
        "shard-0",
        11,
    ));
    let term = |checkpoint: &str| Disruption {
        kind: "term".into(),
        start_ms: 5_000,
        end_ms: 5_100,
        checkpoints: vec![("shard-0".into(), Some(checkpoint.into()))],
    };
    log.disruptions = vec![term("10")];
    let v = check(&log);
    assert!(v.ok(), "the store was at 10: {:?}", v.problems());
    assert_eq!(v.duplicates, 2);

    log.disruptions = vec![term("12")];
    let v = check(&log);
    assert_eq!(
        v.unexplained_duplicates.len(),
        2,
        "the store was past them: {v:?}"
    );

    log.disruptions[0].kind = "stop".into();
    log.disruptions[0].checkpoints[0].1 = Some("10".into());
    assert!(!check(&log).ok(), "a pause restarts nothing");
}

#[test]
fn a_message_the_queue_handed_out_twice_within_its_visibility_is_the_queues_duplicate() {
    let mut log = good();
    log.ordered = false;
    log.visibility_ms = 5_000;
    log.invocations.push(inv(9_020, &["b2"], &["b2"]));
    log.handouts = vec![
        Handout {
            at_ms: 190,
            ids: vec!["b1".into(), "b2".into(), "b3".into()],
        },
        Handout {
            at_ms: 9_000,
            ids: vec!["b2".into()],
        },
    ];
    let v = check(&log);
    assert_eq!(
        v.unexplained_duplicates.len(),
        1,
        "8.8 s apart: past the visibility timeout"
    );
    log.handouts[1].at_ms = 199;
    log.invocations[3].at_ms = 205;
    let v = check(&log);
    assert!(v.ok(), "{:?}", v.problems());
    assert_eq!(v.backend_duplicates, 1);
}
