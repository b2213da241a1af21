//! AWS's recordings (tests/recordings/aws-esm.json, extracted from LocalStack's AWS-recorded
//! snapshots by scripts/extract-recordings.py) and the comparison of esmd's output with them.
//!
//! A recorded value is compared by kind:
//! - an object: the same key set (order aside), each value compared in turn; a recorded
//!   object or array where esmd has a string means the recording parsed a JSON body, so the
//!   string is parsed first;
//! - an array: the same length, element by element;
//! - a string with masks (`<uuid:1>`, `arn:<partition>:sqs:<region>:111111111111:<resource:1>`;
//!   LocalStack masks the account as `111111111111` and some SQS attributes as `sender-id`
//!   and `sent-timestamp`): the unmasked parts must match in order, each mask stands for any
//!   non-empty text; a string that is one mask accepts any string or number (a timestamp
//!   AWS sends as a number is masked as a string);
//! - anything else: equal.

use serde_json::Value;
use std::sync::OnceLock;

pub fn recordings() -> &'static Value {
    static RECORDINGS: OnceLock<Value> = OnceLock::new();
    RECORDINGS.get_or_init(|| {
        serde_json::from_str(include_str!("../recordings/aws-esm.json")).expect("recordings JSON")
    })
}

/// `facts[key]` of the recording of `test`.
pub fn recorded(test: &str, key: &str) -> &'static Value {
    let fact = &recordings()["recordings"][test]["facts"][key];
    assert!(!fact.is_null(), "no recorded {key} for {test}");
    fact
}

/// Values LocalStack's transformers put in place of real ones without `<...>`.
const WHOLE_MASKS: [&str; 2] = ["sender-id", "sent-timestamp"];
const ACCOUNT_MASK: &str = "111111111111";

enum Token<'a> {
    Literal(&'a str),
    Any,
}

fn tokens(pattern: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut rest = pattern;
    loop {
        let mask = rest
            .find('<')
            .and_then(|open| rest[open..].find('>').map(|close| (open, open + close + 1)));
        let account = rest
            .find(ACCOUNT_MASK)
            .map(|at| (at, at + ACCOUNT_MASK.len()));
        let next = match (mask, account) {
            (Some(m), Some(a)) => Some(if m.0 <= a.0 { m } else { a }),
            (m, a) => m.or(a),
        };
        match next {
            Some((start, end)) => {
                if start > 0 {
                    out.push(Token::Literal(&rest[..start]));
                }
                out.push(Token::Any);
                rest = &rest[end..];
            }
            None => {
                if !rest.is_empty() {
                    out.push(Token::Literal(rest));
                }
                return out;
            }
        }
    }
}

fn matches_tokens(text: &str, tokens: &[Token<'_>]) -> bool {
    match tokens.split_first() {
        None => text.is_empty(),
        Some((Token::Literal(l), rest)) => text
            .strip_prefix(l)
            .is_some_and(|t| matches_tokens(t, rest)),
        Some((Token::Any, rest)) => (1..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .any(|i| matches_tokens(&text[i..], rest)),
    }
}

fn is_masked(pattern: &str) -> bool {
    WHOLE_MASKS.contains(&pattern) || tokens(pattern).iter().any(|t| matches!(t, Token::Any))
}

/// Every difference between `actual` and `recorded`, as `path: what`.
pub fn differences(actual: &Value, recorded: &Value) -> Vec<String> {
    let mut out = Vec::new();
    compare("$", actual, recorded, &mut out);
    out
}

fn compare(path: &str, actual: &Value, recorded: &Value, out: &mut Vec<String>) {
    match (actual, recorded) {
        (Value::String(text), Value::Object(_) | Value::Array(_)) => {
            match serde_json::from_str::<Value>(text) {
                Ok(parsed) => compare(path, &parsed, recorded, out),
                Err(_) => out.push(format!(
                    "{path}: a string that is not JSON, recorded {recorded}"
                )),
            }
        }
        (Value::Object(a), Value::Object(r)) => {
            for key in r.keys().filter(|k| !k.starts_with('$')) {
                match a.get(key) {
                    Some(v) => compare(&format!("{path}.{key}"), v, &r[key], out),
                    None => out.push(format!("{path}.{key}: missing (recorded {})", r[key])),
                }
            }
            for key in a.keys().filter(|k| !r.contains_key(*k)) {
                out.push(format!(
                    "{path}.{key}: not in the recording (esmd sent {})",
                    a[key]
                ));
            }
        }
        (Value::Array(a), Value::Array(r)) => {
            if a.len() != r.len() {
                out.push(format!(
                    "{path}: {} elements, recorded {}",
                    a.len(),
                    r.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(r).enumerate() {
                compare(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (_, Value::String(pattern)) if is_masked(pattern) => {
            let whole = WHOLE_MASKS.contains(&pattern.as_str())
                || matches!(tokens(pattern).as_slice(), [Token::Any]);
            let text = match actual {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            let ok = match text {
                None => false,
                Some(_) if whole => true,
                Some(t) => matches_tokens(&t, &tokens(pattern)),
            };
            if !ok {
                out.push(format!(
                    "{path}: {actual} does not match recorded {pattern:?}"
                ));
            }
        }
        _ => {
            if actual != recorded {
                out.push(format!("{path}: esmd {actual}, recorded {recorded}"));
            }
        }
    }
}

/// Panics with every difference, and where the recording came from.
pub fn assert_conforms(test: &str, what: &str, actual: &Value, recorded: &Value) {
    let diffs = differences(actual, recorded);
    assert!(
        diffs.is_empty(),
        "{what} differs from AWS's recording of {test} ({}):\n  {}\nesmd: {actual}",
        recordings()["recordings"][test]["file"],
        diffs.join("\n  ")
    );
}
