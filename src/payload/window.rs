//! Tumbling-window events and responses (`docs/esm-semantics.md` §4; reference §6).
//!
//! A windowed event is the usual `{"Records":[…]}` plus `window`, `state`, `shardId`,
//! `eventSourceARN`, `isFinalInvokeForWindow` and `isWindowTerminatedEarly`; the function must
//! answer with a `state` object (and may add `batchItemFailures`).

use serde_json::Value;

use super::{RecordJson, RECORDS_SUFFIX};
use crate::checkpoint::WindowState;

/// What one windowed invocation says about the window besides its records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowFields<'a> {
    pub(crate) window: &'a WindowState,
    pub(crate) shard_id: &'a str,
    pub(crate) event_source_arn: &'a str,
    pub(crate) is_final: bool,
    pub(crate) terminated_early: bool,
}

/// Builds a windowed event from already-serialised records.
pub(crate) fn window_event<'a, I>(records: I, fields: &WindowFields<'_>) -> Vec<u8>
where
    I: IntoIterator<Item = &'a RecordJson>,
    I::IntoIter: Clone,
{
    let tail = serde_json::json!({
        "window": {
            "start": iso(fields.window.start),
            "end": iso(fields.window.end),
        },
        "state": fields.window.state,
        "shardId": fields.shard_id,
        "eventSourceARN": fields.event_source_arn,
        "isFinalInvokeForWindow": fields.is_final,
        "isWindowTerminatedEarly": fields.terminated_early,
    })
    .to_string();
    // The tail is an object; its members are spliced after `Records`, into room kept for
    // them, so the payload is allocated once.
    let mut out = super::records_event_with_room(records, tail.len());
    out.truncate(out.len() - RECORDS_SUFFIX.len());
    out.extend_from_slice(b"],");
    out.extend_from_slice(&tail.as_bytes()[1..]);
    out
}

/// Whole seconds with a `Z`, as AWS writes window bounds.
fn iso(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Why a windowed response fails the invocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WindowResponseError {
    #[error("the function's response is not valid JSON")]
    NotJson,
    #[error("a tumbling-window response must contain a `state` object")]
    MissingState,
}

/// Extracts the `state` a windowed invocation returned. AWS treats a response without it as
/// a failed invocation.
pub(crate) fn response_state(body: &[u8]) -> Result<Value, WindowResponseError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| WindowResponseError::NotJson)?;
    match value {
        Value::Object(mut object) => match object.remove("state") {
            Some(state @ Value::Object(_)) => Ok(state),
            _ => Err(WindowResponseError::MissingState),
        },
        _ => Err(WindowResponseError::MissingState),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_event_has_every_window_field() {
        let window = WindowState {
            start: chrono::Utc.with_ymd_and_hms(2024, 6, 10, 6, 14, 0).unwrap(),
            end: chrono::Utc.with_ymd_and_hms(2024, 6, 10, 6, 16, 0).unwrap(),
            state: serde_json::json!({"th-42": 17}),
        };
        let record = RecordJson::serialize(&serde_json::json!({"a": 1})).unwrap();
        let fields = WindowFields {
            window: &window,
            shard_id: "shardId-000000000003",
            event_source_arn: "arn:aws:kinesis:eu-west-1:111122223333:stream/telemetry",
            is_final: false,
            terminated_early: false,
        };
        let event: Value = serde_json::from_slice(&window_event([&record], &fields)).unwrap();
        assert_eq!(
            event,
            serde_json::json!({
                "Records": [{"a": 1}],
                "window": {"start": "2024-06-10T06:14:00Z", "end": "2024-06-10T06:16:00Z"},
                "state": {"th-42": 17},
                "shardId": "shardId-000000000003",
                "eventSourceARN": "arn:aws:kinesis:eu-west-1:111122223333:stream/telemetry",
                "isFinalInvokeForWindow": false,
                "isWindowTerminatedEarly": false
            })
        );
        let empty: Value = serde_json::from_slice(&window_event(
            [],
            &WindowFields {
                is_final: true,
                ..fields
            },
        ))
        .unwrap();
        assert_eq!(empty["Records"], serde_json::json!([]));
        assert_eq!(empty["isFinalInvokeForWindow"], true);
    }

    #[test]
    fn a_response_must_carry_a_state_object() {
        assert_eq!(
            response_state(br#"{"state":{"n":3},"batchItemFailures":[]}"#),
            Ok(serde_json::json!({"n": 3}))
        );
        for body in [
            "",
            "{}",
            "null",
            r#"{"state":null}"#,
            r#"{"state":[1]}"#,
            "[]",
        ] {
            assert!(response_state(body.as_bytes()).is_err(), "{body:?}");
        }
    }
}
