//! The command line: `--version`, `validate` and configuration errors at `run`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn esmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_esmd"))
        .args(args)
        .output()
        .expect("run esmd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn write(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("esmd.toml");
    std::fs::write(&path, text).unwrap();
    let p = path.display().to_string();
    (dir, p)
}

#[test]
fn version() {
    let (code, out, _) = esmd(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("esmd {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn every_sample_config_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, out, err) = esmd(&["validate", "--config", path.to_str().unwrap()]);
            assert_eq!(code, 0, "{}: {out}{err}", path.display());
            assert!(out.contains("valid"));
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

#[test]
fn validate_lists_every_problem_with_mapping_and_field() {
    let (_dir, path) = write(
        r#"
[[mapping]]
event_source_arn = "arn:aws:sqs:us-east-1:123456789012:orders"
function_name = "process-orders"
batch_size = 20

[[mapping]]
event_source_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
function_name = "count clicks"
parallelization_factor = 0
colour = "blue"

[[mapping]]
event_source_arn = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/x"
function_name = "f"
starting_position = "LATEST"
filter_criteria = { filter = [ { pattern = '{"dynamodb":{"Keys":"x"}}' } ] }
"#,
    );
    let (code, out, err) = esmd(&["validate", "--config", &path]);
    assert_ne!(code, 0, "{out}");
    for needle in [
        "mapping[0] (arn:aws:sqs:us-east-1:123456789012:orders): maximum_batching_window_in_seconds",
        "mapping[1] (arn:aws:kinesis:us-east-1:123456789012:stream/clicks): colour: unknown field",
        "mapping[1] (arn:aws:kinesis:us-east-1:123456789012:stream/clicks): function_name",
        "mapping[1] (arn:aws:kinesis:us-east-1:123456789012:stream/clicks): parallelization_factor",
        "mapping[2] (arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/x): filter_criteria.filter[0].pattern",
        "dynamodb.Keys",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
}

#[test]
fn validate_reports_type_and_range_errors_per_field() {
    let (_dir, path) = write(
        r#"
[[mapping]]
event_source_arn = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
function_name = "count-clicks"
parallelization_factor = 0
maximum_record_age_in_seconds = 10
"#,
    );
    let (code, _, err) = esmd(&["validate", "--config", &path]);
    assert_ne!(code, 0);
    assert!(err.contains("starting_position: is required"), "{err}");
    assert!(
        err.contains("parallelization_factor: must be between 1 and 10 (got 0)"),
        "{err}"
    );
    assert!(err.contains("maximum_record_age_in_seconds"), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");
}

#[test]
fn run_refuses_an_invalid_config_and_a_missing_file() {
    let (_dir, path) = write("[[mapping]]\nfunction_name = \"f\"\n");
    let (code, _, err) = esmd(&["run", "--config", &path]);
    assert_eq!(code, 1);
    assert!(
        err.contains("mapping[0]: event_source_arn: is required"),
        "{err}"
    );
    let (code, _, err) = esmd(&["run", "--config", "/nonexistent/esmd.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read config file"), "{err}");
}
