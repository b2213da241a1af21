//! AWS's Kinesis event record (`docs/esm-semantics.md` §4): `kinesis.data` is base64,
//! `approximateArrivalTimestamp` a number of seconds with milliseconds, and `eventID` is
//! `shardId:sequenceNumber`.

use base64::Engine;
use serde::Serialize;

use super::RecordJson;

/// A Kinesis record as esmd sees it, borrowed from the answer it was read from: the SDK's
/// type stops at the source client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KinesisRecord<'a> {
    pub(crate) partition_key: &'a str,
    pub(crate) sequence_number: &'a str,
    pub(crate) data: KinesisData<'a>,
    /// Approximate arrival, milliseconds since the epoch.
    pub(crate) arrival_millis: i64,
}

/// A record's data: decoded (the SDK decodes it), or still the base64 text of the wire, which
/// the event carries as it is (esmd's lean client, `source::kinesis::lean`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KinesisData<'a> {
    Bytes(&'a [u8]),
    /// Canonical base64 (checked by [`is_canonical_base64`]): copied without a decode.
    Base64(&'a str),
}

impl KinesisData<'_> {
    fn encoded_len(&self) -> usize {
        match self {
            KinesisData::Bytes(bytes) => base64::encoded_len(bytes.len(), true).unwrap_or(0),
            KinesisData::Base64(text) => text.len(),
        }
    }

    /// Appends the data as base64, which needs no JSON escaping.
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            KinesisData::Bytes(bytes) => {
                let at = out.len();
                out.resize(at + self.encoded_len(), 0);
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(bytes, &mut out[at..])
                    .unwrap_or(0);
                out.truncate(at + written);
            }
            KinesisData::Base64(text) => out.extend_from_slice(text.as_bytes()),
        }
    }
}

/// Whether `text` is standard base64 as the services write it (the alphabet, `=` padding to a
/// multiple of 4 characters), so that it can stand in an event as it is: nothing in it needs
/// a JSON escape, and a decode and re-encode would give it back unchanged. Written to
/// vectorise (no early exit in the scan): a 1 KiB record's data is checked in well under a
/// microsecond.
pub(crate) fn is_canonical_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes
        .iter()
        .rev()
        .take(2)
        .take_while(|&&b| b == b'=')
        .count();
    let body = &bytes[..bytes.len() - padding];
    let alphabet = body.chunks(64).all(|chunk| {
        chunk.iter().fold(true, |ok, &b| {
            ok & (b.is_ascii_alphanumeric() | (b == b'+') | (b == b'/'))
        })
    });
    // The last character before padding carries unused bits, which must be zero for the text
    // to be what an encoder writes (`QQ==` for "A", never `QR==`).
    alphabet
        && match (padding, body.last()) {
            (0, _) | (_, None) => true,
            (1, Some(&last)) => sextet(last) & 0b11 == 0,
            (_, Some(&last)) => sextet(last) & 0b1111 == 0,
        }
}

fn sextet(b: u8) -> u8 {
    match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        _ => 63,
    }
}

/// What every record of one mapping shares.
#[derive(Debug, Clone)]
pub(crate) struct KinesisContext<'a> {
    pub(crate) shard_id: &'a str,
    pub(crate) stream_arn: &'a str,
    pub(crate) region: &'a str,
    pub(crate) invoke_identity_arn: &'a str,
}

/// Seconds since the epoch with milliseconds, as the number AWS sends.
pub(crate) fn epoch_seconds(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

/// The record's event JSON, written straight into one buffer of the size it will have: the
/// data is base64-encoded in place (base64 needs no JSON escaping), with no intermediate
/// string and no regrowth. Field order is AWS's (the golden test below).
pub(crate) fn record_json(record: &KinesisRecord<'_>, ctx: &KinesisContext<'_>) -> RecordJson {
    let mut out = Vec::with_capacity(capacity(record, ctx, record.data.encoded_len()));
    out.extend_from_slice(br#"{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"#);
    json_string(&mut out, record.partition_key);
    out.extend_from_slice(br#","sequenceNumber":"#);
    json_string(&mut out, record.sequence_number);
    out.extend_from_slice(br#","data":""#);
    record.data.write(&mut out);
    out.extend_from_slice(br#"","approximateArrivalTimestamp":"#);
    json_string(&mut out, &epoch_seconds(record.arrival_millis));
    out.extend_from_slice(br#"},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"#);
    json_string(
        &mut out,
        &format_args!("{}:{}", ctx.shard_id, record.sequence_number),
    );
    out.extend_from_slice(br#","eventName":"aws:kinesis:record","invokeIdentityArn":"#);
    json_string(&mut out, ctx.invoke_identity_arn);
    out.extend_from_slice(br#","awsRegion":"#);
    json_string(&mut out, ctx.region);
    out.extend_from_slice(br#","eventSourceARN":"#);
    json_string(&mut out, ctx.stream_arn);
    out.push(b'}');
    RecordJson::written(out)
}

/// At least the rendered size when no string needs an escape: the fixed text (quotes and the
/// eventID colon included) is 275 bytes and the timestamp at most 24.
fn capacity(record: &KinesisRecord<'_>, ctx: &KinesisContext<'_>, data_len: usize) -> usize {
    let strings = [
        record.partition_key,
        record.sequence_number,
        record.sequence_number,
        ctx.shard_id,
        ctx.invoke_identity_arn,
        ctx.region,
        ctx.stream_arn,
    ];
    275 + 24 + data_len + strings.iter().map(|s| s.len()).sum::<usize>()
}

/// Appends `value` as JSON: a string quoted and escaped, a number as serde_json writes it.
fn json_string(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    // Writing to a Vec cannot fail, and strings and finite numbers always serialise.
    let _ = serde_json::to_writer(out, value);
}

/// What a filter pattern sees: the record's fields, with `data` decoded from base64 and
/// parsed when it is JSON, both at the top level (`{"data": …}`, `{"partitionKey": …}`, as
/// Lambda's filtering page writes them) and under `kinesis`.
pub(crate) fn filter_view(record_json: &str) -> serde_json::Value {
    use serde_json::Value;
    let Ok(Value::Object(mut outer)) = serde_json::from_str::<Value>(record_json) else {
        return Value::Null;
    };
    if let Some(Value::Object(inner)) = outer.get_mut("kinesis") {
        if let Some(Value::String(data)) = inner.get("data") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(data)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let value = match decoded {
                Some(text) => serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(|v| v.is_object() || v.is_array())
                    .unwrap_or(Value::String(text)),
                None => Value::String(data.clone()),
            };
            inner.insert("data".into(), value);
        }
        let lifted: Vec<(String, Value)> =
            inner.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (k, v) in lifted {
            outer.entry(k).or_insert(v);
        }
    }
    Value::Object(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from Lambda's Kinesis page (esm-semantics.md §4), byte for byte.
    #[test]
    fn golden_record_matches_the_reference_example() {
        let record = KinesisRecord {
            partition_key: "1",
            sequence_number: "49590338271490256608559692538361571095921575989136588898",
            data: KinesisData::Bytes(b"Hello, this is a test."),
            arrival_millis: 1_545_084_650_987,
        };
        let ctx = KinesisContext {
            shard_id: "shardId-000000000006",
            stream_arn: "arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream",
            region: "us-east-2",
            invoke_identity_arn: "arn:aws:iam::123456789012:role/lambda-role",
        };
        let expected = r#"{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":"1","sequenceNumber":"49590338271490256608559692538361571095921575989136588898","data":"SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg==","approximateArrivalTimestamp":1545084650.987},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000006:49590338271490256608559692538361571095921575989136588898","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda-role","awsRegion":"us-east-2","eventSourceARN":"arn:aws:kinesis:us-east-2:123456789012:stream/lambda-stream"}"#;
        assert_eq!(record_json(&record, &ctx).get(), expected);
        // Exact but for the timestamp's room: 24 bytes kept, 14 used.
        assert_eq!(
            capacity(&record, &ctx, record.data.encoded_len()),
            expected.len() + 24 - 14
        );
        // The same data as base64 text is carried as it is, to the same event.
        let passed = KinesisRecord {
            data: KinesisData::Base64("SGVsbG8sIHRoaXMgaXMgYSB0ZXN0Lg=="),
            ..record
        };
        assert_eq!(record_json(&passed, &ctx).get(), expected);
        // The community event types deserialise it.
        let parsed: aws_lambda_events::event::kinesis::KinesisEventRecord =
            serde_json::from_str(expected).unwrap();
        assert_eq!(parsed.kinesis.partition_key, "1");
    }

    proptest::proptest! {
        /// Any strings and bytes: the written JSON parses back to the record's own fields.
        #[test]
        fn written_json_reads_back_as_the_record(
            key in ".{0,12}",
            seq in "[0-9]{1,56}|.{0,8}",
            shard in ".{0,12}",
            arn in ".{0,40}",
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            millis in 0i64..4_000_000_000_000,
        ) {
            let record = KinesisRecord {
                partition_key: &key,
                sequence_number: &seq,
                data: KinesisData::Bytes(&data),
                arrival_millis: millis,
            };
            let ctx = KinesisContext { shard_id: &shard, stream_arn: &arn, region: "eu-west-1", invoke_identity_arn: &key };
            let json = record_json(&record, &ctx);
            let v: serde_json::Value = serde_json::from_str(json.get()).unwrap();
            let k = &v["kinesis"];
            proptest::prop_assert_eq!(&k["partitionKey"], &serde_json::Value::from(key.clone()));
            proptest::prop_assert_eq!(&k["sequenceNumber"], &serde_json::Value::from(seq.clone()));
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(k["data"].as_str().unwrap())
                .unwrap();
            proptest::prop_assert_eq!(decoded, data);
            proptest::prop_assert_eq!(k["approximateArrivalTimestamp"].as_f64(), Some(epoch_seconds(millis)));
            proptest::prop_assert_eq!(&v["eventID"], &serde_json::Value::from(format!("{shard}:{seq}")));
            proptest::prop_assert_eq!(&v["eventSourceARN"], &serde_json::Value::from(arn));
            proptest::prop_assert_eq!(&v["invokeIdentityArn"], &serde_json::Value::from(key));
            proptest::prop_assert_eq!(&v["awsRegion"], "eu-west-1");
            proptest::prop_assert_eq!(v.as_object().map(|o| o.len()), Some(8));
            proptest::prop_assert_eq!(k.as_object().map(|o| o.len()), Some(5));
        }
    }

    proptest::proptest! {
        /// What the encoder writes is canonical, and a canonical text is carried as it is
        /// into the event the decoded bytes would give.
        #[test]
        fn encoded_bytes_are_canonical_and_pass_through(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let text = base64::engine::general_purpose::STANDARD.encode(&data);
            proptest::prop_assert!(is_canonical_base64(&text));
            let ctx = KinesisContext { shard_id: "s", stream_arn: "a", region: "r", invoke_identity_arn: "i" };
            let record = KinesisRecord { partition_key: "k", sequence_number: "1", data: KinesisData::Bytes(&data), arrival_millis: 5 };
            let passed = KinesisRecord { data: KinesisData::Base64(&text), ..record };
            let (a, b) = (record_json(&record, &ctx), record_json(&passed, &ctx));
            proptest::prop_assert_eq!(a.get(), b.get());
        }

        /// A text the encoder would not write is refused: any other character (quotes and
        /// backslashes included), a wrong length, padding inside, unused bits set.
        #[test]
        fn other_texts_are_not_canonical(text in ".{0,24}") {
            let canonical = base64::engine::general_purpose::STANDARD
                .decode(&text)
                .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes) == text)
                .unwrap_or(false);
            proptest::prop_assert_eq!(is_canonical_base64(&text), canonical);
        }
    }

    #[test]
    fn non_canonical_base64_examples() {
        for text in [
            "QR==", "QUJ=", "QQ=", "Q===", "QQ==QQ==", "QQ\"=", "QQ-_", "QQ\n=",
        ] {
            assert!(!is_canonical_base64(text), "{text}");
        }
        for text in ["", "QQ==", "QUI=", "QUJD", "+/+/"] {
            assert!(is_canonical_base64(text), "{text}");
        }
    }

    #[test]
    fn filter_view_decodes_json_data() {
        let record = KinesisRecord {
            partition_key: "pk",
            sequence_number: "1",
            data: KinesisData::Bytes(br#"{"temperature":70}"#),
            arrival_millis: 0,
        };
        let ctx = KinesisContext {
            shard_id: "s",
            stream_arn: "arn",
            region: "r",
            invoke_identity_arn: "i",
        };
        let view = filter_view(record_json(&record, &ctx).get());
        assert_eq!(view["data"]["temperature"], 70);
        assert_eq!(view["partitionKey"], "pk");
        assert_eq!(view["kinesis"]["data"]["temperature"], 70);
    }
}
