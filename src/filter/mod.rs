//! Lambda event filtering: `filter_criteria` patterns, parsed once and matched against a JSON
//! view of each record.
//!
//! A pattern mirrors the record's structure. Its leaves are arrays of alternatives (OR); the
//! fields of one pattern are ANDed; the filters of one mapping are ORed. Each pattern is parsed
//! into a [`FilterPattern`] when the mapping starts, so matching allocates nothing and walks the
//! record's JSON by reference; the record view is built once per record, not once per filter.

use serde_json::{Map, Value};

/// The largest pattern Lambda accepts.
pub(crate) const MAX_PATTERN_CHARS: usize = 4096;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum PatternError {
    #[error("pattern is longer than {MAX_PATTERN_CHARS} characters")]
    TooLong,
    #[error("pattern is not valid JSON: {0}")]
    NotJson(String),
    #[error("pattern must be a JSON object")]
    NotObject,
    #[error("at `{path}`: {message}")]
    Invalid { path: String, message: String },
}

/// A compiled filter pattern.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FilterPattern {
    root: Node,
    /// The pattern as written, for `GetEventSourceMapping`'s `FilterCriteria`.
    source: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Every child must match (AND).
    Fields(Vec<(String, Node)>),
    /// Any alternative matches (OR).
    Leaf(Vec<Matcher>),
    /// `"$or": [{…}, {…}]`: any of these patterns matches the same object.
    AnyOf(Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    ExactString(String),
    /// Numbers match by their JSON form, as EventBridge does: `5` is not `5.0`.
    ExactNumber(serde_json::Number),
    ExactBool(bool),
    Null,
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    AnythingBut(Vec<Value>),
    AnythingButPrefix(String),
    AnythingButSuffix(String),
    Numeric(Vec<(NumericOp, f64)>),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumericOp {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl NumericOp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "<" => NumericOp::Lt,
            "<=" => NumericOp::Le,
            "=" => NumericOp::Eq,
            ">=" => NumericOp::Ge,
            ">" => NumericOp::Gt,
            _ => return None,
        })
    }
    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            NumericOp::Lt => value < bound,
            NumericOp::Le => value <= bound,
            NumericOp::Eq => value == bound,
            NumericOp::Ge => value >= bound,
            NumericOp::Gt => value > bound,
        }
    }
}

fn invalid(path: &str, message: impl Into<String>) -> PatternError {
    PatternError::Invalid {
        path: if path.is_empty() {
            "(root)".into()
        } else {
            path.into()
        },
        message: message.into(),
    }
}

impl FilterPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, PatternError> {
        if text.chars().count() > MAX_PATTERN_CHARS {
            return Err(PatternError::TooLong);
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| PatternError::NotJson(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(PatternError::NotObject);
        };
        Ok(FilterPattern {
            root: parse_fields(&map, "")?,
            source: text.to_string(),
        })
    }

    /// The pattern's text, exactly as configured.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Whether the record view matches this pattern.
    pub(crate) fn matches(&self, record: &Value) -> bool {
        match_node(&self.root, Some(record))
    }
}

fn parse_fields(map: &Map<String, Value>, path: &str) -> Result<Node, PatternError> {
    if map.is_empty() && !path.is_empty() {
        return Err(invalid(path, "an object in a pattern must not be empty"));
    }
    let mut fields = Vec::with_capacity(map.len());
    for (key, value) in map {
        let child_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let node = match value {
            Value::Array(options) if key == "$or" => {
                if options.len() < 2 {
                    return Err(invalid(
                        &child_path,
                        "`$or` takes a list of at least two patterns",
                    ));
                }
                Node::AnyOf(
                    options
                        .iter()
                        .enumerate()
                        .map(|(i, option)| match option {
                            Value::Object(inner) => {
                                parse_fields(inner, &format!("{child_path}[{i}]"))
                            }
                            _ => Err(invalid(
                                &child_path,
                                "each `$or` entry must be a pattern object",
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            _ if key == "$or" => {
                return Err(invalid(
                    &child_path,
                    "`$or` takes a list of pattern objects",
                ))
            }
            Value::Object(inner) => parse_fields(inner, &child_path)?,
            Value::Array(alternatives) => {
                if alternatives.is_empty() {
                    return Err(invalid(&child_path, "a list of values must not be empty"));
                }
                Node::Leaf(
                    alternatives
                        .iter()
                        .map(|a| parse_matcher(a, &child_path))
                        .collect::<Result<_, _>>()?,
                )
            }
            _ => {
                return Err(invalid(
                    &child_path,
                    "a value to match must be in a list, e.g. [\"x\"]",
                ))
            }
        };
        fields.push((key.clone(), node));
    }
    Ok(Node::Fields(fields))
}

fn parse_matcher(value: &Value, path: &str) -> Result<Matcher, PatternError> {
    match value {
        Value::String(s) => Ok(Matcher::ExactString(s.clone())),
        Value::Number(n) => Ok(Matcher::ExactNumber(n.clone())),
        Value::Null => Ok(Matcher::Null),
        // DynamoDB's `BOOL` images are matched with `[true]` / `[false]`.
        Value::Bool(b) => Ok(Matcher::ExactBool(*b)),
        Value::Array(_) => Err(invalid(path, "nested lists are not allowed")),
        Value::Object(op) => {
            let mut entries = op.iter();
            let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
                return Err(invalid(
                    path,
                    "an operator object must have exactly one key",
                ));
            };
            let string_arg = |what: &str| match arg {
                Value::String(s) => Ok(s.clone()),
                _ => Err(invalid(path, format!("`{what}` takes a string"))),
            };
            match name.as_str() {
                "prefix" => Ok(Matcher::Prefix(string_arg("prefix")?)),
                "suffix" => Ok(Matcher::Suffix(string_arg("suffix")?)),
                "equals-ignore-case" => {
                    Ok(Matcher::EqualsIgnoreCase(string_arg("equals-ignore-case")?))
                }
                "exists" => match arg {
                    Value::Bool(b) => Ok(Matcher::Exists(*b)),
                    _ => Err(invalid(path, "`exists` takes true or false")),
                },
                "anything-but" => parse_anything_but(arg, path),
                "numeric" => parse_numeric(arg, path),
                other => Err(invalid(path, format!("unknown operator `{other}`"))),
            }
        }
    }
}

fn parse_anything_but(arg: &Value, path: &str) -> Result<Matcher, PatternError> {
    const USAGE: &str = "`anything-but` takes a value, a non-empty list of values, or {\"prefix\": …} / {\"suffix\": …}";
    let scalar_ok = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Null);
    match arg {
        Value::Array(values) if !values.is_empty() && values.iter().all(scalar_ok) => {
            Ok(Matcher::AnythingBut(values.clone()))
        }
        v if scalar_ok(v) => Ok(Matcher::AnythingBut(vec![v.clone()])),
        Value::Object(op) if op.len() == 1 => match op.iter().next() {
            Some((k, Value::String(s))) if k == "prefix" => {
                Ok(Matcher::AnythingButPrefix(s.clone()))
            }
            Some((k, Value::String(s))) if k == "suffix" => {
                Ok(Matcher::AnythingButSuffix(s.clone()))
            }
            _ => Err(invalid(path, USAGE)),
        },
        _ => Err(invalid(path, USAGE)),
    }
}

fn parse_numeric(arg: &Value, path: &str) -> Result<Matcher, PatternError> {
    let Value::Array(items) = arg else {
        return Err(invalid(
            path,
            "`numeric` takes a list such as [\">\", 0, \"<=\", 5]",
        ));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(invalid(
            path,
            "`numeric` takes one or two (operator, number) pairs",
        ));
    }
    let mut conditions = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks(2) {
        let op = pair[0]
            .as_str()
            .and_then(NumericOp::parse)
            .ok_or_else(|| invalid(path, format!("`{}` is not one of <, <=, =, >=, >", pair[0])))?;
        let bound = pair[1]
            .as_f64()
            .ok_or_else(|| invalid(path, format!("`{}` is not a number", pair[1])))?;
        conditions.push((op, bound));
    }
    if let [(low_op, low), (high_op, high)] = conditions.as_slice() {
        let lower = matches!(low_op, NumericOp::Gt | NumericOp::Ge);
        let upper = matches!(high_op, NumericOp::Lt | NumericOp::Le);
        if !(lower && upper) || low > high {
            return Err(invalid(
                path,
                "a numeric range is a lower bound (> or >=) then a higher upper bound (< or <=)",
            ));
        }
    }
    Ok(Matcher::Numeric(conditions))
}

fn match_node(node: &Node, value: Option<&Value>) -> bool {
    match node {
        Node::AnyOf(options) => options.iter().any(|o| match_node(o, value)),
        Node::Fields(fields) => {
            // A missing object has every field missing: only `exists: false` can match in it.
            let Some(value) = value else {
                return fields.iter().all(|(_, child)| match_node(child, None));
            };
            fields.iter().all(|(key, child)| {
                match (child, value) {
                (Node::AnyOf(_), value) => match_node(child, Some(value)),
                (_, value) => match value {
                Value::Object(map) => match_node(child, map.get(key)),
                // An array of objects matches when any element does.
                Value::Array(items) => items.iter().any(
                    |item| matches!(item, Value::Object(map) if match_node(child, map.get(key))),
                ),
                _ => match_node(child, None),
            }}
            })
        }
        Node::Leaf(alternatives) => alternatives.iter().any(|m| match_leaf(m, value)),
    }
}

fn match_leaf(matcher: &Matcher, value: Option<&Value>) -> bool {
    match (matcher, value) {
        (Matcher::Exists(want), v) => {
            let present = !matches!(v, None | Some(Value::Object(_)));
            present == *want
        }
        (_, None) => false,
        (m, Some(Value::Array(items))) => items.iter().any(|i| match_scalar(m, i)),
        (m, Some(v)) => match_scalar(m, v),
    }
}

fn match_scalar(matcher: &Matcher, value: &Value) -> bool {
    match matcher {
        Matcher::ExactString(s) => value.as_str() == Some(s.as_str()),
        Matcher::ExactNumber(n) => value.as_number() == Some(n),
        Matcher::ExactBool(b) => value.as_bool() == Some(*b),
        Matcher::Null => value.is_null(),
        Matcher::Prefix(p) => value.as_str().is_some_and(|v| v.starts_with(p.as_str())),
        Matcher::Suffix(s) => value.as_str().is_some_and(|v| v.ends_with(s.as_str())),
        Matcher::EqualsIgnoreCase(s) => value
            .as_str()
            .is_some_and(|v| v.to_lowercase() == s.to_lowercase()),
        Matcher::AnythingBut(excluded) => {
            !value.is_object()
                && !excluded.iter().any(|x| match (x, value) {
                    (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                    (a, b) => a == b,
                })
        }
        Matcher::AnythingButPrefix(p) => value.as_str().is_some_and(|v| !v.starts_with(p.as_str())),
        Matcher::AnythingButSuffix(s) => value.as_str().is_some_and(|v| !v.ends_with(s.as_str())),
        Matcher::Numeric(conditions) => value
            .as_f64()
            .is_some_and(|v| conditions.iter().all(|(op, bound)| op.holds(v, *bound))),
        Matcher::Exists(want) => *want,
    }
}

/// The filters of one mapping: a record passes when any filter matches, or when there are none.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FilterSet {
    patterns: Vec<FilterPattern>,
}

impl FilterSet {
    /// The set of already compiled patterns (validation compiles each one to report it).
    pub(crate) fn new(patterns: Vec<FilterPattern>) -> Self {
        FilterSet { patterns }
    }

    #[cfg(test)]
    pub(crate) fn compile(patterns: &[String]) -> Result<Self, PatternError> {
        Ok(FilterSet {
            patterns: patterns
                .iter()
                .map(|p| FilterPattern::parse(p))
                .collect::<Result<_, _>>()?,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub(crate) fn patterns(&self) -> &[FilterPattern] {
        &self.patterns
    }

    pub(crate) fn accepts(&self, record: &Value) -> bool {
        self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(record))
    }
}

#[cfg(test)]
mod tests;
