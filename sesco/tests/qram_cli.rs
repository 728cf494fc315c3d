//! `sesco qram solve FILE` run as a real process.

use std::path::PathBuf;
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/qram")
        .join(name)
}

fn run(name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sesco"))
        .args(["qram", "solve"])
        .arg(fixture(name))
        .output()
        .expect("run sesco")
}

#[test]
fn design_example_prints_the_answer_object() {
    let out = run("design_example.json");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["choice"]["s1"], 1);
    assert!(v["choice"]["s2"].is_null());
    assert_eq!(v["utility"], 0.9);
    assert!(v["solve_us"].is_u64());
    // keys in input order, nothing else
    assert!(
        text.starts_with(r#"{"choice": {"s1": 1, "s2": null}, "utility": 0.9, "solve_us": "#),
        "{text}"
    );
    assert_eq!(v.as_object().unwrap().len(), 3);
}

fn fails_with(name: &str, needle: &str) {
    let out = run(name);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
}

#[test]
fn required_session_that_cannot_fit_fails_naming_the_resource() {
    fails_with("required_too_big.json", "n1/cpu");
}

#[test]
fn unknown_resource_fails_naming_it() {
    fails_with("unknown_resource.json", "n1/gpu");
}

#[test]
fn bad_json_fails() {
    fails_with("bad_json.json", "invalid instance JSON");
}

#[test]
fn missing_file_fails() {
    fails_with("no_such_file.json", "cannot read instance file");
}
