use super::*;
use proptest::prelude::*;

fn policy(retries: Option<u32>, bisect: bool) -> StreamPolicy {
    StreamPolicy {
        maximum_retry_attempts: retries,
        bisect_batch_on_function_error: bisect,
        maximum_record_age: None,
    }
}

fn error() -> Attempt {
    Attempt::FunctionError {
        kind: "Unhandled".into(),
    }
}

#[test]
fn success_settles_the_span() {
    let mut span = Span::whole(5);
    let step = next_step(
        &mut span,
        &Attempt::Answered(Verdict::AllDone),
        &policy(None, false),
    );
    assert_eq!(step, Step::Done);
    assert_eq!(span.invocations, 1);
    assert_eq!(span.retries, 0);
}

#[test]
fn throttles_and_an_unavailable_function_retry_without_counting() {
    let mut span = Span::whole(5);
    for pace in [Pace::Transient, Pace::ErrorState] {
        let attempt = Attempt::NotInvoked {
            pace,
            after: Some(Duration::from_secs(3)),
        };
        let step = next_step(&mut span, &attempt, &policy(Some(0), false));
        assert_eq!(
            step,
            Step::Retry {
                pace,
                after: Some(Duration::from_secs(3))
            }
        );
    }
    assert_eq!((span.retries, span.invocations), (0, 0));
}

#[test]
fn n_retries_allow_n_plus_one_invocations() {
    let mut span = Span::whole(3);
    let p = policy(Some(2), false);
    let mut steps = Vec::new();
    loop {
        let step = next_step(&mut span, &error(), &p);
        let end = matches!(step, Step::GiveUp { .. });
        steps.push(step);
        if end {
            break;
        }
    }
    assert_eq!(steps.len(), 3, "two retries: three invocations");
    assert_eq!(span.invocations, 3);
    assert_eq!(
        steps.last(),
        Some(&Step::GiveUp {
            condition: Condition::RetryAttemptsExhausted,
            response: Some(ResponseContext {
                status_code: 200,
                function_error: Some("Unhandled".into())
            })
        })
    );
}

#[test]
fn a_partial_response_settles_the_prefix_and_retries_the_rest() {
    let mut span = Span::whole(10);
    let step = next_step(
        &mut span,
        &Attempt::Answered(Verdict::FailedFrom(4)),
        &policy(None, false),
    );
    assert_eq!(
        step,
        Step::Retry {
            pace: Pace::FunctionError,
            after: None
        }
    );
    // The checkpoint moved: the rest is a new batch, its counts start again.
    assert_eq!(
        (span.start, span.end, span.retries, span.invocations),
        (4, 10, 0, 0)
    );
    assert_eq!(
        span.response,
        Some(ResponseContext {
            status_code: 200,
            function_error: None
        })
    );
    assert_eq!(
        Attempt::Answered(Verdict::FailedFrom(4)).failed_records(10),
        6
    );
}

#[test]
fn bisection_splits_on_function_errors_only_and_keeps_the_counts() {
    let mut span = Span::whole(7);
    span.retries = 1;
    let step = next_step(&mut span, &error(), &policy(Some(3), true));
    let Step::Bisect { first, second } = step else {
        panic!("{step:?}")
    };
    assert_eq!(
        (first.start, first.end, second.start, second.end),
        (0, 3, 3, 7)
    );
    assert_eq!((first.retries, first.invocations), (1, 1));
    assert_eq!((second.retries, second.invocations), (1, 1));
    // A single record cannot split: the error counts.
    let mut one = Span::whole(1);
    assert!(matches!(
        next_step(&mut one, &error(), &policy(Some(3), true)),
        Step::Retry { .. }
    ));
    // A bad response is not a function error: no split.
    let mut span = Span::whole(4);
    assert!(matches!(
        next_step(
            &mut span,
            &Attempt::Answered(Verdict::Failed),
            &policy(None, true)
        ),
        Step::Retry { .. }
    ));
}

#[test]
fn too_large_splits_without_counting_and_gives_up_a_single_record() {
    let mut span = Span::whole(2);
    let Step::Bisect { first, .. } =
        next_step(&mut span, &Attempt::TooLarge, &policy(Some(0), false))
    else {
        panic!("split")
    };
    assert_eq!(first.retries, 0);
    let mut one = Span::whole(1);
    assert_eq!(
        next_step(&mut one, &Attempt::TooLarge, &policy(None, false)),
        Step::GiveUp {
            condition: Condition::RetryAttemptsExhausted,
            response: None
        }
    );
}

/// AWS's recording (LocalStack `test_kinesis_report_batch_item_failures`): batch 3, the
/// last record always reported failed, MaximumRetryAttempts 3. The record is invoked once
/// in the first batch and four times on its own; the failure record says
/// approximateInvokeCount 4 and functionError null.
#[test]
fn retries_count_from_the_new_checkpoint_after_a_partial_response() {
    let p = policy(Some(3), false);
    let mut span = Span::whole(3);
    let mut appearances = 0;
    let mut attempt = Attempt::Answered(Verdict::FailedFrom(2));
    let step = loop {
        appearances += 1;
        match next_step(&mut span, &attempt, &p) {
            Step::Retry { .. } => attempt = Attempt::Answered(Verdict::FailedFrom(0)),
            other => break other,
        }
    };
    assert_eq!(appearances, 5);
    assert_eq!(span.invocations, 4);
    assert_eq!(
        step,
        Step::GiveUp {
            condition: Condition::RetryAttemptsExhausted,
            response: Some(ResponseContext {
                status_code: 200,
                function_error: None
            })
        }
    );
}

/// An identifier that moves nothing (the first record, or an invalid one) counts as a
/// retry of the same batch: MaximumRetryAttempts 2 gives 3 invocations (LocalStack's
/// observation, esm-semantics-reference §3.4).
#[test]
fn a_partial_response_that_moves_nothing_counts_as_a_retry() {
    let p = policy(Some(2), false);
    let mut span = Span::whole(3);
    let failed = Attempt::Answered(Verdict::FailedFrom(0));
    assert!(matches!(
        next_step(&mut span, &failed, &p),
        Step::Retry { .. }
    ));
    assert!(matches!(
        next_step(&mut span, &failed, &p),
        Step::Retry { .. }
    ));
    assert!(matches!(
        next_step(&mut span, &failed, &p),
        Step::GiveUp { .. }
    ));
    assert_eq!(span.invocations, 3);
}

#[test]
fn record_age_is_checked_against_the_limit() {
    let p = StreamPolicy {
        maximum_record_age: Some(Duration::from_secs(60)),
        ..StreamPolicy::default()
    };
    assert!(!p.expired(Duration::from_secs(60)));
    assert!(p.expired(Duration::from_secs(61)));
    assert!(!StreamPolicy::default().expired(Duration::from_secs(1_000_000)));
}

fn attempt_strategy() -> impl Strategy<Value = Attempt> {
    prop_oneof![
        Just(Attempt::Answered(Verdict::AllDone)),
        (0usize..12).prop_map(|i| Attempt::Answered(Verdict::FailedFrom(i))),
        Just(Attempt::Answered(Verdict::Failed)),
        Just(error()),
        Just(Attempt::NotInvoked {
            pace: Pace::Transient,
            after: None
        }),
        Just(Attempt::TooLarge),
    ]
}

proptest! {
    /// Driving the machine to the end with any outcomes settles every record exactly once,
    /// in order, never invokes a span more than the retry limit allows, and always ends.
    #[test]
    fn every_record_settles_once_in_order_within_the_retry_limit(
        len in 1usize..12,
        max in proptest::option::of(0u32..4),
        bisect in any::<bool>(),
        attempts in proptest::collection::vec(attempt_strategy(), 1..60),
    ) {
        let p = policy(max, bisect);
        let mut work = std::collections::VecDeque::from([Span::whole(len)]);
        let mut settled = 0usize;
        let mut outcomes = attempts.iter().cycle();
        let mut steps = 0;
        while let Some(mut span) = work.pop_front() {
            prop_assert_eq!(span.start, settled, "spans are processed in order");
            loop {
                steps += 1;
                prop_assert!(steps < 10_000, "the machine always ends");
                if span.len() == 0 { settled = span.end; break; }
                // After the given attempts run out, the function recovers.
                let attempt = if steps > attempts.len() {
                    Attempt::Answered(Verdict::AllDone)
                } else {
                    outcomes.next().cloned().unwrap_or(Attempt::Answered(Verdict::AllDone))
                };
                match next_step(&mut span, &attempt, &p) {
                    Step::Done | Step::GiveUp { .. } => { settled = span.end; break; }
                    Step::Bisect { first, second } => {
                        prop_assert_eq!(first.end, second.start);
                        prop_assert!(first.len() > 0 && second.len() > 0);
                        work.push_front(second);
                        work.push_front(first);
                        break;
                    }
                    Step::Retry { .. } => {
                        // What the partial response settled is done.
                        settled = span.start;
                        if let Some(max) = max { prop_assert!(span.retries <= max); }
                    }
                }
                prop_assert!(span.start <= span.end);
            }
        }
        prop_assert_eq!(settled, len);
    }
}
