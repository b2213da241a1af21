//! Which checkpoint a shard may take while several batches of it are in flight.
//!
//! Records are registered in read (sequence) order and marked done as their batches settle,
//! in any order across lanes. The checkpoint is the last record of the longest fully done
//! prefix: it never passes a record that is still pending, and never moves backwards.

use std::collections::VecDeque;

use super::SequenceNumber;

#[derive(Debug, Default)]
pub(crate) struct Watermark {
    /// Each record read and not yet checkpointed: its sequence number, whether it is done,
    /// and the bytes it holds.
    pending: VecDeque<(SequenceNumber, bool, usize)>,
    checkpoint: Option<SequenceNumber>,
    /// The sum of `pending`'s bytes.
    bytes: usize,
}

impl Watermark {
    pub(crate) fn new(checkpoint: Option<SequenceNumber>) -> Self {
        Watermark {
            pending: VecDeque::new(),
            checkpoint,
            bytes: 0,
        }
    }

    /// Registers a record just read, holding `bytes` until it is checkpointed. Records must
    /// arrive in increasing order; one at or below the last registered (a duplicate read) is
    /// ignored and `false` returned.
    pub(crate) fn register(&mut self, seq: SequenceNumber, bytes: usize) -> bool {
        let last = self
            .pending
            .back()
            .map(|(s, _, _)| s)
            .or(self.checkpoint.as_ref());
        if last.is_some_and(|last| &seq <= last) {
            return false;
        }
        self.pending.push_back((seq, false, bytes));
        self.bytes += bytes;
        true
    }

    /// Marks a registered record done.
    pub(crate) fn complete(&mut self, seq: &SequenceNumber) {
        if let Ok(i) = self.pending.binary_search_by(|(s, _, _)| s.cmp(seq)) {
            self.pending[i].1 = true;
        }
    }

    /// Moves past the done prefix; returns the new checkpoint if it moved.
    pub(crate) fn advance(&mut self) -> Option<SequenceNumber> {
        let mut moved = None;
        while let Some((_, true, _)) = self.pending.front() {
            if let Some((seq, _, bytes)) = self.pending.pop_front() {
                self.bytes -= bytes;
                moved = Some(seq);
            }
        }
        if let Some(seq) = &moved {
            self.checkpoint = Some(seq.clone());
        }
        moved
    }

    pub(crate) fn checkpoint(&self) -> Option<&SequenceNumber> {
        self.checkpoint.as_ref()
    }

    /// Records read but not yet checkpointed.
    pub(crate) fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// The bytes those records hold.
    pub(crate) fn outstanding_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(n: u64) -> SequenceNumber {
        SequenceNumber::parse(n.to_string()).unwrap()
    }

    #[test]
    fn stops_at_the_first_pending_record() {
        let mut w = Watermark::new(Some(s(5)));
        assert!(
            !w.register(s(5), 100),
            "a record at the checkpoint is a duplicate"
        );
        for n in [8, 9, 10, 11] {
            assert!(w.register(s(n), 100));
        }
        assert_eq!(w.outstanding_bytes(), 400, "the duplicate holds nothing");
        w.complete(&s(9));
        w.complete(&s(11));
        assert_eq!(w.advance(), None);
        w.complete(&s(8));
        assert_eq!(w.advance(), Some(s(9)));
        assert_eq!(w.outstanding_bytes(), 200);
        w.complete(&s(10));
        assert_eq!(w.advance(), Some(s(11)));
        assert_eq!(w.outstanding(), 0);
        assert_eq!(w.outstanding_bytes(), 0);
    }

    proptest! {
        /// Whatever order records complete in, the checkpoint never moves backwards, never
        /// passes a pending record, and ends at the last record once all are done.
        #[test]
        fn checkpoint_is_the_done_prefix(
            gaps in prop::collection::vec(1u64..1_000_000, 1..60),
            order in prop::collection::vec(any::<prop::sample::Index>(), 1..60),
        ) {
            let mut seqs = Vec::new();
            let mut n = 10u64.pow(12);
            for g in &gaps { n += g; seqs.push(n); }
            let mut w = Watermark::new(None);
            for &q in &seqs { prop_assert!(w.register(s(q), (q % 7) as usize)); }
            let mut remaining: Vec<u64> = seqs.clone();
            let mut done = std::collections::BTreeSet::new();
            let mut last: Option<SequenceNumber> = None;
            let mut picks = order.iter().cycle();
            while !remaining.is_empty() {
                let i = picks.next().unwrap().index(remaining.len());
                let q = remaining.remove(i);
                done.insert(q);
                w.complete(&s(q));
                if let Some(cp) = w.advance() {
                    if let Some(prev) = &last { prop_assert!(&cp > prev); }
                    // Everything up to the checkpoint is done.
                    for &x in seqs.iter().filter(|&&x| s(x) <= cp) {
                        prop_assert!(done.contains(&x));
                    }
                    last = Some(cp);
                }
                // The first not-done record is past the checkpoint.
                if let Some(&first_pending) = seqs.iter().find(|x| !done.contains(x)) {
                    if let Some(cp) = w.checkpoint() { prop_assert!(cp < &s(first_pending)); }
                }
            }
            prop_assert_eq!(w.checkpoint(), Some(&s(*seqs.last().unwrap())));
        }
    }
}
