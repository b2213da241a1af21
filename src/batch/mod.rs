//! Batch limits and the batch type shared by every source.
//!
//! A batch is flushed when it holds `batch_size` records, when the batching window expires,
//! or when the next record would push the payload past 6 MB (`docs/esm-semantics.md` §1).
//! Sizes are exact because each record is serialised once, on arrival.

use std::time::Duration;

use crate::config::{MappingConfig, MAX_INVOKE_PAYLOAD_BYTES};
#[cfg(test)]
use crate::payload::records_event;
use crate::payload::{envelope_overhead, RecordJson};

/// A record that knows its serialised event JSON.
pub(crate) trait BatchRecord {
    fn json(&self) -> &RecordJson;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchLimits {
    pub(crate) max_records: usize,
    pub(crate) max_bytes: usize,
    pub(crate) window: Duration,
}

impl BatchLimits {
    pub(crate) fn for_mapping(mapping: &MappingConfig) -> Self {
        BatchLimits {
            max_records: mapping.batch_size,
            max_bytes: MAX_INVOKE_PAYLOAD_BYTES,
            window: mapping.batching_window,
        }
    }
}

/// Why a record could not be added.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushRejected<T> {
    /// The batch is full by count or size; the record belongs to the next batch.
    Full(T),
    /// The record alone is larger than one invocation may carry.
    TooLarge(T),
}

/// Records gathered for one invocation, in arrival order.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    records: Vec<T>,
    record_bytes: usize,
    limits: BatchLimits,
}

impl<T: BatchRecord> Batch<T> {
    pub(crate) fn new(limits: BatchLimits) -> Self {
        Batch {
            records: Vec::new(),
            record_bytes: 0,
            limits,
        }
    }

    pub(crate) fn try_push(&mut self, record: T) -> Result<(), PushRejected<T>> {
        let size = record.json().get().len();
        if size + envelope_overhead(1) > self.limits.max_bytes {
            return Err(PushRejected::TooLarge(record));
        }
        if self.records.len() >= self.limits.max_records
            || self.record_bytes + size + envelope_overhead(self.records.len() + 1)
                > self.limits.max_bytes
        {
            return Err(PushRejected::Full(record));
        }
        self.record_bytes += size;
        self.records.push(record);
        Ok(())
    }

    /// Full by count (a size-full batch is detected when a push is rejected).
    pub(crate) fn is_full(&self) -> bool {
        self.records.len() >= self.limits.max_records
    }

    pub(crate) fn remaining_records(&self) -> usize {
        self.limits.max_records.saturating_sub(self.records.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub(crate) fn into_records(self) -> Vec<T> {
        self.records
    }

    /// The payload size if the batch were sent now (the accounting the limits use).
    #[cfg(test)]
    fn payload_bytes(&self) -> usize {
        self.record_bytes + envelope_overhead(self.records.len())
    }

    /// The `{"Records":[…]}` payload.
    #[cfg(test)]
    fn payload(&self) -> Vec<u8> {
        records_event(self.records.iter().map(|r| r.json()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug)]
    struct R(RecordJson);
    impl BatchRecord for R {
        fn json(&self) -> &RecordJson {
            &self.0
        }
    }
    fn record(len: usize) -> R {
        // "\"xxxx\"" is len + 2 bytes
        R(RecordJson::serialize(&"x".repeat(len.saturating_sub(2))).unwrap())
    }
    fn limits(max_records: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits {
            max_records,
            max_bytes,
            window: Duration::ZERO,
        }
    }

    #[test]
    fn count_limit() {
        let mut b = Batch::new(limits(2, 1000));
        assert!(b.try_push(record(10)).is_ok());
        assert!(b.try_push(record(10)).is_ok());
        assert!(b.is_full());
        assert!(matches!(b.try_push(record(10)), Err(PushRejected::Full(_))));
    }

    #[test]
    fn byte_limit_is_exact() {
        // Envelope for 2 records: 12 + 2 + 1 = 15 bytes.
        let mut b = Batch::new(limits(10, 15 + 20));
        assert!(b.try_push(record(10)).is_ok());
        assert!(b.try_push(record(10)).is_ok());
        assert_eq!(b.payload().len(), 35);
        assert_eq!(b.payload_bytes(), 35);
        assert!(matches!(b.try_push(record(2)), Err(PushRejected::Full(_))));
        let mut b = Batch::new(limits(10, 20));
        assert!(matches!(
            b.try_push(record(10)),
            Err(PushRejected::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn batches_never_exceed_their_limits(
            sizes in prop::collection::vec(2usize..300, 1..60),
            max_records in 1usize..20,
            max_bytes in 100usize..2000,
        ) {
            let mut b = Batch::new(limits(max_records, max_bytes));
            for s in sizes {
                match b.try_push(record(s)) {
                    Ok(()) => {}
                    Err(PushRejected::TooLarge(r)) => prop_assert!(r.0.get().len() + 14 > max_bytes),
                    Err(PushRejected::Full(_)) => break,
                }
                prop_assert!(max_records - b.remaining_records() <= max_records && b.remaining_records() <= max_records);
                prop_assert!(b.payload().len() <= max_bytes);
                prop_assert_eq!(b.payload().len(), b.payload_bytes());
            }
        }
    }
}
