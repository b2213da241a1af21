//! The read-ahead policy of a shard's reader, pure: how many records the next GetRecords may
//! ask for (a budget in records and in rendered bytes), and whether a read found the shard's
//! tip. `reader::Reader` drives it.

/// How many records a shard keeps read but not yet checkpointed: four batches per lane, and
/// at least 5,000 so that small batches still read in bulk. 5,000 records of 1 KiB are 2.5 s of
/// a Kinesis shard's 2 MB/s read limit: the budget never slows a shard on AWS, and bounds
/// memory at a few MB per shard when the function is the bottleneck.
const READ_AHEAD_BATCHES: usize = 4;
const MIN_READ_AHEAD: usize = 5_000;
/// And how many bytes (of rendered event JSON) those records may hold: large records fill
/// the budget before their count does. 4 MiB is two seconds of a shard's 2 MB/s read limit;
/// with a batching window a batch may gather up to the 6 MB invocation payload limit, so the
/// budget is 8 MiB there.
const READ_AHEAD_BYTES: usize = 4 * 1024 * 1024;
const READ_AHEAD_BYTES_WINDOWED: usize = 8 * 1024 * 1024;

/// The byte budget of a shard's read-ahead for a mapping's batching window.
pub(crate) fn read_ahead_bytes(batching_window: std::time::Duration) -> usize {
    if batching_window.is_zero() {
        READ_AHEAD_BYTES
    } else {
        READ_AHEAD_BYTES_WINDOWED
    }
}

/// What bounds a shard's read-ahead.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadAhead {
    /// The source's maximum records per GetRecords call.
    pub(crate) max_per_call: usize,
    /// And the most data one call returns (Kinesis 10 MB, DynamoDB Streams 1 MB).
    pub(crate) bytes_per_call: usize,
    pub(crate) batch_size: usize,
    pub(crate) lanes: usize,
    /// The byte budget ([`read_ahead_bytes`]).
    pub(crate) bytes: usize,
}

/// The GetRecords limit for the next read: what the read-ahead budget (records and bytes)
/// has room for, at most the source's maximum per call. 0 means wait: the lanes have enough
/// to work on. Without it a shard that is behind reads 10,000 records every 200 ms while its
/// function takes them 100 at a time, and memory grows with the backlog. `outstanding` is
/// (records, bytes) read and not yet checkpointed; the room in bytes is counted in records
/// of their average size so far (`average`, the shard's last read, when nothing is
/// outstanding). A read is always allowed when nothing is outstanding; the first one, with no
/// size known yet, is bounded by [`first_read`].
pub(crate) fn read_limit(
    ahead: ReadAhead,
    outstanding: (usize, usize),
    average: Option<usize>,
) -> usize {
    let (records, bytes) = outstanding;
    let budget = (ahead.batch_size * ahead.lanes.max(1) * READ_AHEAD_BATCHES).max(MIN_READ_AHEAD);
    let by_count = budget.saturating_sub(records).min(ahead.max_per_call);
    let average = match (records, average) {
        (0, None) => return by_count.min(first_read(ahead)).max(1),
        (0, Some(a)) => a,
        _ => bytes / records,
    };
    let limit = by_count.min(ahead.bytes.saturating_sub(bytes) / average.max(1));
    if records == 0 {
        limit.max(1)
    } else {
        limit
    }
}

/// The first read of a shard, before any record's size is known. When a whole call's data,
/// rendered (at most twice its size: base64 in JSON), fits the byte budget, the source's own
/// per-call limit bounds it (DynamoDB Streams: 1 MB); otherwise four batches per lane (the
/// count budget without its 5,000 floor), so that a short backlog is read in one call while a
/// Kinesis shard's first read of large records stays small.
fn first_read(ahead: ReadAhead) -> usize {
    if ahead.bytes_per_call.saturating_mul(2) <= ahead.bytes {
        ahead.max_per_call
    } else {
        ahead.batch_size * ahead.lanes.max(1) * READ_AHEAD_BATCHES
    }
}

/// Whether a read found the shard's tip, so the next read waits the idle interval: it came
/// back empty, or the stream says it is not behind and the read was not cut short by its
/// limit. A read that filled its limit may have left records behind (moto and kinesis-local
/// report `MillisBehindLatest` 0 throughout a backlog), so the next one comes at the
/// shard's minimum interval.
pub(crate) fn caught_up(returned: usize, limit: usize, millis_behind: Option<i64>) -> bool {
    returned == 0 || (millis_behind == Some(0) && returned < limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;

    fn ahead(max_per_call: usize, batch_size: usize, lanes: usize, bytes: usize) -> ReadAhead {
        ReadAhead {
            max_per_call,
            bytes_per_call: 10 * MIB,
            batch_size,
            lanes,
            bytes,
        }
    }

    #[test]
    fn the_read_ahead_bounds_what_a_shard_holds() {
        let a = ahead(10_000, 100, 1, 8 * MIB);
        // batch 100, one lane: 5,000 records (the floor) at most.
        assert_eq!(read_limit(a, (0, 0), Some(KIB)), 5_000);
        assert_eq!(read_limit(a, (4_600, 4_600 * KIB), None), 400);
        assert_eq!(read_limit(a, (5_000, 5_000 * KIB), None), 0);
        assert_eq!(read_limit(a, (9_000, 9_000 * KIB), None), 0);
        // batch 1,000, four lanes: 16,000, or what the bytes hold, capped per call.
        assert_eq!(
            read_limit(ahead(10_000, 1_000, 4, 8 * MIB), (0, 0), Some(KIB)),
            8_192
        );
        assert_eq!(
            read_limit(ahead(20_000, 1_000, 4, 80 * MIB), (0, 0), Some(KIB)),
            16_000
        );
        assert_eq!(
            read_limit(ahead(1_000, 1_000, 4, 8 * MIB), (15_500, 15_500), None),
            500
        );
    }

    #[test]
    fn large_records_fill_the_byte_budget_before_the_count() {
        let a = ahead(10_000, 100, 1, 8 * MIB);
        // 100 records of 64 KiB are 6.25 MiB: room for 28 more of that size, not 4,900.
        assert_eq!(read_limit(a, (100, 100 * 64 * KIB), None), 28);
        assert_eq!(read_limit(a, (128, 128 * 64 * KIB), None), 0);
        // Nothing outstanding: a read is always allowed, whatever the records' size.
        assert!(read_limit(a, (0, 0), None) > 0);
        assert_eq!(read_limit(a, (0, 0), Some(16 * MIB)), 1);
    }

    #[test]
    fn with_nothing_outstanding_the_earlier_average_bounds_the_read() {
        // 2 KiB records on a 4 MiB budget: 2,048 records, not the 5,000 floor.
        let a = ahead(10_000, 100, 1, 4 * MIB);
        assert_eq!(read_limit(a, (0, 0), Some(2 * KIB)), 2_048);
        // The first read (no size known): four batches per lane, at most the per-call limit.
        assert_eq!(read_limit(a, (0, 0), None), 400);
        assert_eq!(
            read_limit(ahead(10_000, 100, 4, 4 * MIB), (0, 0), None),
            1_600
        );
        assert_eq!(
            read_limit(ahead(1_000, 100, 4, 4 * MIB), (0, 0), None),
            1_000
        );
        // DynamoDB Streams: a call returns at most 1 MB, so the first takes all it may.
        let dynamodb = ReadAhead {
            bytes_per_call: MIB,
            ..ahead(1_000, 100, 1, 4 * MIB)
        };
        assert_eq!(read_limit(dynamodb, (0, 0), None), 1_000);
    }

    #[test]
    fn a_read_cut_short_by_its_limit_is_not_the_tip() {
        assert!(caught_up(0, 100, None));
        assert!(caught_up(0, 100, Some(5_000)));
        assert!(caught_up(40, 100, Some(0)));
        assert!(
            !caught_up(100, 100, Some(0)),
            "full read: more may be waiting"
        );
        assert!(!caught_up(40, 100, Some(1)));
        assert!(
            !caught_up(40, 100, None),
            "no lag reported: only an empty read is the tip"
        );
    }

    #[test]
    fn a_batching_window_has_room_for_a_full_payload() {
        use std::time::Duration;
        assert_eq!(read_ahead_bytes(Duration::ZERO), READ_AHEAD_BYTES);
        assert!(read_ahead_bytes(Duration::from_secs(1)) > crate::config::MAX_INVOKE_PAYLOAD_BYTES);
    }

    proptest::proptest! {
        #[test]
        fn a_read_never_passes_the_budget_or_the_per_call_maximum(
            max in 1usize..10_001, batch in 1usize..10_001, lanes in 1usize..11,
            outstanding in 0usize..200_000, size in 1usize..1_000_000,
            windowed in proptest::bool::ANY,
        ) {
            let bytes = outstanding * size;
            let budget_bytes = if windowed { READ_AHEAD_BYTES_WINDOWED } else { READ_AHEAD_BYTES };
            let a = ahead(max, batch, lanes, budget_bytes);
            let known = (outstanding == 0).then_some(size);
            let limit = read_limit(a, (outstanding, bytes), known);
            let budget = (batch * lanes * 4).max(5_000);
            proptest::prop_assert!(limit <= max);
            proptest::prop_assert!(outstanding + limit <= budget.max(outstanding));
            // Past the byte budget only by the one record an empty shard may always read.
            proptest::prop_assert!(bytes + limit * size <= budget_bytes.max(bytes).max(size));
            // An empty shard can always read: the budget never stalls it.
            proptest::prop_assert!(outstanding > 0 || limit > 0);
        }
    }
}
