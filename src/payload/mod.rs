//! The event JSON esmd sends to functions, and the parsing of what functions send back.
//!
//! Each record is serialised exactly once, when it is received, into a [`RecordJson`]; a batch
//! payload is then only those bytes joined into `{"Records":[…]}`, in one buffer with room
//! for its final size. That makes the 6 MB limit exact (the batch knows its size before it is
//! built) and keeps record bodies from being copied or re-encoded per invocation. Field names and order follow AWS's own events
//! byte-for-byte; golden tests in `tests/` compare them with AWS's documented examples.

pub(crate) mod dynamodb;
pub(crate) mod kinesis;
pub(crate) mod response;
pub(crate) mod sqs;
pub(crate) mod window;

#[cfg(test)]
mod bad_input_tests;

/// One record, already serialised as it will appear inside `Records`: JSON text, valid by
/// construction. serde wrote it ([`RecordJson::serialize`]), or one of this module's writers
/// did ([`RecordJson::written`], Kinesis), whose output is parsed again only in debug builds
/// (every test): in a release build that second scan of each record was 5% of a Kinesis
/// record's cost (serde_json's `RawValue::from_string` validates what it is given).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RecordJson(Box<str>);

impl RecordJson {
    /// `value` as JSON.
    pub(crate) fn serialize<T: serde::Serialize + ?Sized>(
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(|s| RecordJson(s.into_boxed_str()))
    }

    /// What a writer of this module produced as JSON ([`RecordJson::empty`] if it is not
    /// UTF-8, which its pieces, all UTF-8, rule out).
    fn written(bytes: Vec<u8>) -> Self {
        let Ok(text) = String::from_utf8(bytes) else {
            return Self::empty();
        };
        debug_assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok(),
            "a record writer produced invalid JSON: {text}"
        );
        RecordJson(text.into_boxed_str())
    }

    /// `{}`: what a record that could not be serialised is sent as.
    fn empty() -> Self {
        RecordJson(Box::from("{}"))
    }

    /// The JSON text.
    pub(crate) fn get(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RecordJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecordJson").field(&self.get()).finish()
    }
}

const RECORDS_PREFIX: &[u8] = b"{\"Records\":[";
pub(crate) const RECORDS_SUFFIX: &[u8] = b"]}";

/// Bytes the `{"Records":[…]}` wrapper adds to a batch of `count` records.
pub(crate) fn envelope_overhead(count: usize) -> usize {
    RECORDS_PREFIX.len() + RECORDS_SUFFIX.len() + count.saturating_sub(1)
}

/// Joins already-serialised records into an invocation payload, in one buffer with room for
/// its final size (a batch of 100 Kinesis records is 200 KB; growing to it by doubling copied
/// it six times over, each time into freshly mapped pages). A large buffer comes from the
/// pool ([`crate::memory::take`]); [`crate::memory::into_bytes`] gives it back once sent.
pub(crate) fn records_event<'a, I>(records: I) -> Vec<u8>
where
    I: IntoIterator<Item = &'a RecordJson>,
    I::IntoIter: Clone,
{
    records_event_with_room(records, 0)
}

/// [`records_event`] with room for `spare` more bytes after it (a window's fields).
pub(crate) fn records_event_with_room<'a, I>(records: I, spare: usize) -> Vec<u8>
where
    I: IntoIterator<Item = &'a RecordJson>,
    I::IntoIter: Clone,
{
    let records = records.into_iter();
    let (count, bytes) = records
        .clone()
        .fold((0, 0), |(n, b), r| (n + 1, b + r.get().len()));
    let mut out = crate::memory::take(bytes + envelope_overhead(count) + spare);
    out.extend_from_slice(RECORDS_PREFIX);
    for (i, r) in records.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(r.get().as_bytes());
    }
    out.extend_from_slice(RECORDS_SUFFIX);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_size_is_exact() {
        let a = RecordJson::serialize(&serde_json::json!({"a": 1})).unwrap();
        let b = RecordJson::serialize(&serde_json::json!({"b": 22})).unwrap();
        let event = records_event([&a, &b]);
        assert_eq!(event, br#"{"Records":[{"a":1},{"b":22}]}"#);
        assert_eq!(
            event.len(),
            a.get().len() + b.get().len() + envelope_overhead(2)
        );
        // Allocated once, at the final size.
        assert_eq!(event.capacity(), event.len());
        assert_eq!(records_event([]).len(), envelope_overhead(0));
        assert_eq!(records_event_with_room([&a], 64).capacity(), 7 + 14 + 64);
    }
}
