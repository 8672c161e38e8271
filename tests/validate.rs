//! `flopcal validate`: the JSON report, its exit code, and bad profile files.

#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn flopcal() -> Command {
    Command::cargo_bin("flopcal").unwrap()
}

#[test]
fn quick_tiny_json_has_the_four_fields_and_the_exit_code_follows_within_bound() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("tiny.json");
    let out = flopcal()
        .args(["validate", "--model", "tiny", "--quick", "--format", "json"])
        .args(["--threads", "1", "--out"])
        .arg(&saved)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    for field in [
        "predicted_step_s",
        "measured_step_s",
        "ratio",
        "measured_median_s",
        "predicted_median_sum_s",
    ] {
        assert!(v[field].as_f64().unwrap() > 0.0, "{field} in {stdout}");
    }
    let within = v["within_bound"].as_bool().unwrap();
    assert_eq!(
        out.status.code(),
        Some(if within { 0 } else { 1 }),
        "{stdout}"
    );
    // Quick mode interleaves the kernels and the step in its rounds, at least one
    // step sample per round.
    let rounds = flopcal::commands::validate::rounds(true) as u64;
    assert_eq!(v["rounds"].as_u64(), Some(rounds), "{stdout}");
    assert!(v["step_samples"].as_u64().unwrap() >= rounds, "{stdout}");
    let ratio = v["ratio"].as_f64().unwrap();
    assert_eq!(within, (ratio - 1.0).abs() <= 0.15);
    // The saved profile predicts the same step again without re-measuring kernels.
    let again = flopcal()
        .args(["validate", "--model", "tiny", "--quick", "--format", "json"])
        .args(["--threads", "1", "--profile"])
        .arg(&saved)
        .output()
        .unwrap();
    let v2: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v2["predicted_step_s"], v["predicted_step_s"]);
}

#[test]
fn a_profile_of_another_schema_version_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("old.json");
    std::fs::write(&p, r#"{"schema_version": 999, "benchmarks": []}"#).unwrap();
    flopcal()
        .args(["validate", "--model", "tiny", "--profile"])
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("schema_version 999"));
}

#[test]
fn a_profile_lacking_the_steps_kernels_or_from_another_device_or_cpu_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("partial.json");
    // A real profile of one GEMM only.
    flopcal()
        .args([
            "profile", "--hidden", "128", "--heads", "2", "--layers", "2",
        ])
        .args([
            "--ffn", "512", "--vocab", "2048", "--seq", "64", "--batch", "4",
        ])
        .args(["--filter", "matmul/qkv.fwd", "--squares", "0", "--quick"])
        .args(["--threads", "1", "--out"])
        .arg(&p)
        .assert()
        .success();
    flopcal()
        .args(["validate", "--model", "tiny", "--threads", "1", "--profile"])
        .arg(&p)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("lacks")
                .and(predicate::str::contains("matmul/qkv.dgrad"))
                .and(predicate::str::contains("layernorm.train"))
                .and(predicate::str::contains("--out FILE")),
        );
    // The same file from another device than requested is refused as such.
    let text = std::fs::read_to_string(&p).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let this_device = v["host"]["device"].clone();
    v["host"]["device"] = Value::from("cuda:0");
    // `validate --model tiny --device cpu --profile` on the profile edited as `v`.
    let validate_cpu = |v: &Value| {
        std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
        flopcal()
            .args([
                "validate",
                "--model",
                "tiny",
                "--device",
                "cpu",
                "--profile",
            ])
            .arg(&p)
            .assert()
    };
    validate_cpu(&v)
        .code(2)
        .stderr(predicate::str::contains("device `cuda:0`"));
    // The same device name on another CPU model is refused too: a profile predicts
    // only the machine it was measured on.
    v["host"]["device"] = this_device;
    v["host"]["cpu_model"] = Value::from("Some Other CPU 9000");
    validate_cpu(&v).code(2).stderr(
        predicate::str::contains("CPU `Some Other CPU 9000`")
            .and(predicate::str::contains("--out FILE")),
    );
}

#[test]
fn an_unknown_model_is_a_usage_error() {
    flopcal()
        .args(["validate", "--model", "gigantic"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tiny"));
}
