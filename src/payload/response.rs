//! Parsing a function's response into a batch outcome, with AWS's success and failure
//! conditions for `ReportBatchItemFailures` (`docs/esm-semantics.md` §3; reference §3.2).

use serde_json::Value;

/// What a successful invocation's response says about the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchItemFailures {
    /// Every record succeeded.
    None,
    /// These identifiers (as the function wrote them) failed; all others succeeded.
    Some(Vec<String>),
}

/// Why a response fails the whole batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResponseError {
    #[error("the function's response is not valid JSON")]
    NotJson,
    #[error("batchItemFailures[{index}] has no non-empty string itemIdentifier")]
    MissingIdentifier { index: usize },
    #[error("batchItemFailures is not a list")]
    NotAList,
    #[error("itemIdentifier `{0}` names no record in the batch")]
    UnknownIdentifier(String),
}

/// Parses `{"batchItemFailures":[{"itemIdentifier":…}]}`.
///
/// Success with nothing failed: an empty body, `null`, `{}`, a missing, null or empty
/// `batchItemFailures`, and (as AWS was observed to do) any JSON that is not an object, such
/// as `[]` or `""`. Failure of the whole batch: invalid JSON, or an entry whose
/// `itemIdentifier` is missing, null, empty or not a string.
pub(crate) fn parse_batch_item_failures(body: &[u8]) -> Result<BatchItemFailures, ResponseError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(BatchItemFailures::None);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| ResponseError::NotJson)?;
    let Value::Object(object) = value else {
        return Ok(BatchItemFailures::None);
    };
    let entries = match object.get("batchItemFailures") {
        None | Some(Value::Null) => return Ok(BatchItemFailures::None),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(ResponseError::NotAList),
    };
    if entries.is_empty() {
        return Ok(BatchItemFailures::None);
    }
    let mut ids = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match entry.get("itemIdentifier") {
            Some(Value::String(id)) if !id.is_empty() => ids.push(id.clone()),
            _ => return Err(ResponseError::MissingIdentifier { index }),
        }
    }
    Ok(BatchItemFailures::Some(ids))
}

/// Maps reported identifiers to positions in the batch; an identifier that names no record
/// fails the whole batch. The result is sorted and deduplicated.
pub(crate) fn resolve_identifiers<'a>(
    reported: &[String],
    batch_ids: impl Iterator<Item = &'a str> + Clone,
) -> Result<Vec<usize>, ResponseError> {
    let mut positions = Vec::with_capacity(reported.len());
    for id in reported {
        match batch_ids.clone().position(|b| b == id) {
            Some(p) => positions.push(p),
            None => return Err(ResponseError::UnknownIdentifier(id.clone())),
        }
    }
    positions.sort_unstable();
    positions.dedup();
    Ok(positions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_shapes() {
        for body in [
            "",
            "  ",
            "null",
            "{}",
            "[]",
            "\"\"",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
            r#"{"other":1}"#,
        ] {
            assert_eq!(
                parse_batch_item_failures(body.as_bytes()),
                Ok(BatchItemFailures::None),
                "{body:?}"
            );
        }
    }

    #[test]
    fn partial() {
        assert_eq!(
            parse_batch_item_failures(
                br#"{"batchItemFailures":[{"itemIdentifier":"a"},{"itemIdentifier":"b"}]}"#
            ),
            Ok(BatchItemFailures::Some(vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn whole_batch_failures() {
        for body in [
            "not json",
            "{",
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"foo":"notvalid"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":123}]}"#,
            r#"{"batchItemFailures":"x"}"#,
        ] {
            assert!(
                parse_batch_item_failures(body.as_bytes()).is_err(),
                "{body:?}"
            );
        }
    }

    #[test]
    fn identifiers_must_name_records() {
        let batch = ["m1", "m2", "m3"];
        assert_eq!(
            resolve_identifiers(
                &["m3".into(), "m1".into(), "m3".into()],
                batch.iter().copied()
            ),
            Ok(vec![0, 2])
        );
        assert_eq!(
            resolve_identifiers(&["zz".into()], batch.iter().copied()),
            Err(ResponseError::UnknownIdentifier("zz".into()))
        );
    }
}
