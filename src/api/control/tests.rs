use serde_json::Map;

use super::*;
use crate::config::Config;

fn mapping(uuid: &str, queue: &str, enabled: bool) -> MappingConfig {
    let text = format!(
        "[[mapping]]\nuuid = \"{uuid}\"\nevent_source_arn = \"arn:aws:sqs:us-east-1:123456789012:{queue}\"\nfunction_name = \"f\"\nenabled = {enabled}\n"
    );
    Config::parse(&text).unwrap().mappings.remove(0)
}

const A: &str = "11111111-1111-4111-8111-111111111111";
const B: &str = "22222222-2222-4222-8222-222222222222";
const FILE: &str = "33333333-3333-4333-8333-333333333333";

fn state(control: &Control, uuid: &str) -> &'static str {
    control.get(uuid).map_or("gone", Entry::state)
}

#[test]
fn a_created_mapping_is_creating_until_applied_then_enabled_or_disabled() {
    let mut control = Control::new(vec![], 0.0);
    control
        .create(mapping(A, "a", true), Map::new(), 1.0)
        .unwrap();
    control
        .create(mapping(B, "b", false), Map::new(), 1.0)
        .unwrap();
    assert_eq!(state(&control, A), "Creating");
    let (desired, applied) = control.desired();
    assert_eq!(desired.len(), 2);
    assert!(control.settle(&applied).is_empty());
    assert_eq!(state(&control, A), "Enabled");
    assert_eq!(state(&control, B), "Disabled");
}

#[test]
fn enabling_disabling_updating_and_deleting_are_reported_until_applied() {
    let mut control = Control::new(vec![], 0.0);
    control
        .create(mapping(A, "a", true), Map::new(), 1.0)
        .unwrap();
    let (_, applied) = control.desired();
    control.settle(&applied);

    control
        .update(mapping(A, "a", false), Map::new(), 2.0)
        .unwrap();
    assert_eq!(state(&control, A), "Disabling");
    // A second change while the first is under way: AWS answers ResourceInUseException.
    let busy = control
        .update(mapping(A, "a", true), Map::new(), 2.0)
        .unwrap_err();
    assert_eq!(busy.kind, "ResourceInUseException");
    assert_eq!(
        control.delete(A, 2.0).unwrap_err().kind,
        "ResourceInUseException"
    );
    let (_, applied) = control.desired();
    control.settle(&applied);
    assert_eq!(state(&control, A), "Disabled");

    control
        .update(mapping(A, "a", true), Map::new(), 3.0)
        .unwrap();
    assert_eq!(state(&control, A), "Enabling");
    let (_, applied) = control.desired();
    control.settle(&applied);
    control
        .update(mapping(A, "a", true), Map::new(), 4.0)
        .unwrap();
    assert_eq!(state(&control, A), "Updating");
    let (_, applied) = control.desired();
    control.settle(&applied);

    control.delete(A, 5.0).unwrap();
    assert_eq!(state(&control, A), "Deleting");
    let (desired, applied) = control.desired();
    assert!(desired.is_empty(), "a mapping being deleted is not run");
    assert_eq!(control.settle(&applied), vec![A.to_string()]);
    assert_eq!(state(&control, A), "gone");
}

#[test]
fn a_change_made_during_an_apply_waits_for_its_own() {
    let mut control = Control::new(vec![], 0.0);
    control
        .create(mapping(A, "a", true), Map::new(), 1.0)
        .unwrap();
    let (_, first) = control.desired();
    control.settle(&first);
    control
        .update(mapping(A, "a", false), Map::new(), 2.0)
        .unwrap();
    let (_, snapshot) = control.desired();
    // Settling an older snapshot does not end the newer change.
    control.settle(&first);
    assert_eq!(state(&control, A), "Disabling");
    control.settle(&snapshot);
    assert_eq!(state(&control, A), "Disabled");
}

#[test]
fn one_mapping_per_source_and_function() {
    let mut control = Control::new(vec![mapping(FILE, "a", true)], 0.0);
    let err = control
        .create(mapping(A, "a", true), Map::new(), 1.0)
        .unwrap_err();
    assert_eq!(err.kind, "ResourceConflictException");
    assert_eq!(err.status, 409);
    assert!(err.message.contains(FILE), "{err}");
}

#[test]
fn file_mappings_are_listed_but_changed_only_through_the_file() {
    let mut control = Control::new(vec![mapping(FILE, "file", true)], 0.0);
    assert_eq!(state(&control, FILE), "Enabled");
    let err = control.delete(FILE, 1.0).unwrap_err();
    assert_eq!(err.kind, "InvalidParameterValueException");
    assert!(err.message.contains("SIGHUP"), "{err}");
    assert_eq!(control.changeable("nope").unwrap_err().status, 404);
}

#[test]
fn a_reloaded_file_replaces_only_the_file_mappings_and_refuses_clashes() {
    let mut control = Control::new(vec![mapping(FILE, "file", true)], 0.0);
    control
        .create(mapping(A, "a", true), Map::new(), 1.0)
        .unwrap();
    control
        .replace_file(vec![mapping(B, "b", true)], 2.0)
        .unwrap();
    let uuids: Vec<&str> = control
        .entries()
        .iter()
        .map(|e| e.mapping.uuid.as_str())
        .collect();
    assert_eq!(uuids, vec![A, B]);
    let clash = control
        .replace_file(vec![mapping(FILE, "a", true)], 3.0)
        .unwrap_err();
    assert!(clash.contains(A), "{clash}");
    let uuids: Vec<&str> = control
        .entries()
        .iter()
        .map(|e| e.mapping.uuid.as_str())
        .collect();
    assert_eq!(uuids, vec![A, B], "a refused reload changes nothing");
}
