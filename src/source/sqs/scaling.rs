//! How many pollers an SQS mapping runs. Pure, so the policy is unit-tested.
//!
//! AWS starts a standard-queue mapping with 5 concurrent batches and adds up to 300 a minute
//! while messages remain. A sidecar should cost nothing when idle, so esmd starts with its
//! minimum (one poller, or `provisioned_poller_config.minimum_pollers`), adds one each time a
//! receive comes back full (a backlog), and removes one each time a receive comes back empty,
//! never below the minimum nor above the maximum (`maximum_concurrency`, or
//! `maximum_pollers` capped by it).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scaler {
    current: usize,
    min: usize,
    max: usize,
}

impl Scaler {
    pub(crate) fn new(min: usize, max: usize) -> Self {
        let min = min.max(1);
        Scaler {
            current: min,
            min,
            max: max.max(min),
        }
    }

    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// Records one receive; returns true when the poller count grew.
    pub(crate) fn observe(&mut self, requested: usize, received: usize) -> bool {
        if requested > 0 && received >= requested && self.current < self.max {
            self.current += 1;
            return true;
        }
        if received == 0 && self.current > self.min {
            self.current -= 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn grows_with_backlog_and_shrinks_when_idle() {
        let mut s = Scaler::new(1, 3);
        assert_eq!(s.current(), 1);
        assert!(s.observe(10, 10));
        assert!(s.observe(10, 10));
        assert!(!s.observe(10, 10));
        assert_eq!(s.current(), 3);
        s.observe(10, 4);
        assert_eq!(s.current(), 3);
        s.observe(10, 0);
        s.observe(10, 0);
        s.observe(10, 0);
        assert_eq!(s.current(), 1);
    }

    proptest! {
        #[test]
        fn stays_within_bounds(min in 1usize..10, extra in 0usize..40, obs in prop::collection::vec((1usize..11, 0usize..11), 0..200)) {
            let max = min + extra;
            let mut s = Scaler::new(min, max);
            prop_assert_eq!(s.current(), min);
            for (req, got) in obs {
                s.observe(req, got.min(req));
                prop_assert!(s.current() >= min && s.current() <= max);
            }
        }
    }
}
