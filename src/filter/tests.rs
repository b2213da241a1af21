use super::*;
use proptest::prelude::*;
use serde_json::json;

fn m(pattern: &str, record: Value) -> bool {
    FilterPattern::parse(pattern).unwrap().matches(&record)
}

#[test]
fn exact_values() {
    let r = json!({"body": {"a": "x", "n": 5, "z": null}});
    assert!(m(r#"{"body":{"a":["x"]}}"#, r.clone()));
    assert!(!m(r#"{"body":{"a":["y"]}}"#, r.clone()));
    assert!(m(r#"{"body":{"n":[5]}}"#, r.clone()));
    // Numbers match by their JSON form, as EventBridge documents: 5 is not 5.0.
    assert!(!m(r#"{"body":{"n":[5.0]}}"#, r.clone()));
    assert!(m(r#"{"b":[true]}"#, json!({"b": true})));
    assert!(!m(r#"{"b":[true]}"#, json!({"b": false})));
    assert!(!m(r#"{"body":{"n":["5"]}}"#, r.clone()));
    assert!(m(r#"{"body":{"z":[null]}}"#, r.clone()));
    assert!(!m(r#"{"body":{"a":[null]}}"#, r.clone()));
    assert!(m(r#"{"body":{"e":[""]}}"#, json!({"body":{"e":""}})));
    assert!(!m(r#"{"body":{"e":[""]}}"#, json!({"body":{"e":"x"}})));
}

#[test]
fn string_operators() {
    let r = json!({"k": "Photo.PNG"});
    assert!(m(r#"{"k":[{"prefix":"Pho"}]}"#, r.clone()));
    assert!(!m(r#"{"k":[{"prefix":"pho"}]}"#, r.clone()));
    assert!(m(r#"{"k":[{"suffix":".PNG"}]}"#, r.clone()));
    assert!(!m(r#"{"k":[{"suffix":".png"}]}"#, r.clone()));
    assert!(m(
        r#"{"k":[{"equals-ignore-case":"photo.png"}]}"#,
        r.clone()
    ));
    assert!(!m(r#"{"k":[{"equals-ignore-case":"photo"}]}"#, r.clone()));
}

#[test]
fn anything_but() {
    let r = json!({"k": "b", "n": 3});
    assert!(m(r#"{"k":[{"anything-but":["a","c"]}]}"#, r.clone()));
    assert!(!m(r#"{"k":[{"anything-but":["a","b"]}]}"#, r.clone()));
    assert!(!m(r#"{"n":[{"anything-but":3}]}"#, r.clone()));
    assert!(m(r#"{"k":[{"anything-but":{"prefix":"x"}}]}"#, r.clone()));
    assert!(!m(r#"{"k":[{"anything-but":{"prefix":"b"}}]}"#, r.clone()));
    assert!(!m(r#"{"k":[{"anything-but":{"suffix":"b"}}]}"#, r.clone()));
    assert!(!m(r#"{"missing":[{"anything-but":"a"}]}"#, r));
}

#[test]
fn numeric() {
    let r = json!({"n": 5});
    assert!(m(r#"{"n":[{"numeric":[">",0,"<=",5]}]}"#, r.clone()));
    assert!(!m(r#"{"n":[{"numeric":[">",5]}]}"#, r.clone()));
    assert!(m(r#"{"n":[{"numeric":["=",5]}]}"#, r.clone()));
    assert!(!m(r#"{"n":[{"numeric":["<",5]}]}"#, json!({"n":"4"})));
}

#[test]
fn exists() {
    let r = json!({"a": {"b": 1}, "c": "x"});
    assert!(m(r#"{"c":[{"exists":true}]}"#, r.clone()));
    assert!(!m(r#"{"d":[{"exists":true}]}"#, r.clone()));
    assert!(m(r#"{"d":[{"exists":false}]}"#, r.clone()));
    assert!(!m(r#"{"c":[{"exists":false}]}"#, r.clone()));
    assert!(m(r#"{"a":{"b":[{"exists":true}]}}"#, r));
}

#[test]
fn and_across_fields_or_across_values_and_filters() {
    let r = json!({"a": "1", "b": "2"});
    assert!(m(r#"{"a":["1"],"b":["2","3"]}"#, r.clone()));
    assert!(!m(r#"{"a":["1"],"b":["3"]}"#, r.clone()));
    let set = FilterSet::compile(&[r#"{"a":["9"]}"#.into(), r#"{"b":["2"]}"#.into()]).unwrap();
    assert!(set.accepts(&r));
    let set = FilterSet::compile(&[r#"{"a":["9"]}"#.into()]).unwrap();
    assert!(!set.accepts(&r));
    assert!(FilterSet::default().accepts(&r));
}

#[test]
fn exists_false_holds_under_a_missing_parent() {
    let p = r#"{"dynamodb":{"NewImage":{"v":{"S":[{"exists":false}]}}}}"#;
    assert!(m(p, json!({"dynamodb":{"NewImage":{"w":{"S":"x"}}}})));
    assert!(m(p, json!({"dynamodb":{}})));
    assert!(!m(p, json!({"dynamodb":{"NewImage":{"v":{"S":"x"}}}})));
    assert!(!m(r#"{"a":{"b":["x"]}}"#, json!({})));
}

#[test]
fn or_across_fields() {
    let p = r#"{"body":{"$or":[{"a":["x"]},{"n":[{"numeric":[">",10]}]}]},"k":["v"]}"#;
    assert!(m(p, json!({"body":{"a":"x","n":1},"k":"v"})));
    assert!(m(p, json!({"body":{"a":"y","n":11},"k":"v"})));
    assert!(!m(p, json!({"body":{"a":"y","n":1},"k":"v"})));
    assert!(
        !m(p, json!({"body":{"a":"x"},"k":"w"})),
        "AND with the sibling field"
    );
    assert!(m(r#"{"$or":[{"a":["1"]},{"b":["2"]}]}"#, json!({"b":"2"})));
    for bad in [
        r#"{"$or":[{"a":["1"]}]}"#,
        r#"{"$or":[{"a":["1"]}, "x"]}"#,
        r#"{"$or":{"a":["1"]}}"#,
    ] {
        assert!(FilterPattern::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn arrays_in_records_match_any_element() {
    assert!(m(r#"{"tags":["x"]}"#, json!({"tags": ["w", "x"]})));
    assert!(m(
        r#"{"items":{"k":["v"]}}"#,
        json!({"items": [{"k":"u"},{"k":"v"}]})
    ));
}

#[test]
fn invalid_patterns_are_named() {
    for bad in [
        "not json",
        "[1]",
        r#"{"a":"x"}"#,
        r#"{"a":[]}"#,
        r#"{"a":[{"prefix":1}]}"#,
        r#"{"a":[{"numeric":[">"]}]}"#,
        r#"{"a":[{"numeric":["<",5,">",1]}]}"#,
        r#"{"a":[{"bogus":1}]}"#,
        r#"{"a":[{"exists":"yes"}]}"#,
    ] {
        assert!(FilterPattern::parse(bad).is_err(), "{bad}");
    }
    let long = format!(r#"{{"a":["{}"]}}"#, "x".repeat(5000));
    assert_eq!(FilterPattern::parse(&long), Err(PatternError::TooLong));
    let err = FilterPattern::parse(r#"{"body":{"a":"x"}}"#).unwrap_err();
    assert!(err.to_string().contains("body.a"), "{err}");
}

fn leaf_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z]{0,8}".prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn record() -> impl Strategy<Value = Value> {
    let leaf = leaf_value();
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop::collection::btree_map("[a-z]{1,4}", inner, 1..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
    .prop_filter("top level must be an object", |v| v.is_object())
}

/// Builds a pattern that requires every leaf of the record to equal its own value.
fn pattern_from(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), pattern_from(v)))
                .collect(),
        ),
        leaf => Value::Array(vec![leaf.clone()]),
    }
}

proptest! {
    #[test]
    fn a_record_matches_a_pattern_built_from_its_own_values(r in record()) {
        let pattern = pattern_from(&r).to_string();
        let compiled = FilterPattern::parse(&pattern).unwrap();
        prop_assert!(compiled.matches(&r));
    }

    #[test]
    fn changing_a_leaf_breaks_the_match(r in record(), extra in "[A-Z]{1,4}") {
        // A pattern on a field the record lacks never matches.
        let mut pattern = pattern_from(&r);
        pattern.as_object_mut().unwrap().insert(format!("missing{extra}"), json!(["v"]));
        let compiled = FilterPattern::parse(&pattern.to_string()).unwrap();
        prop_assert!(!compiled.matches(&r));
    }
}
