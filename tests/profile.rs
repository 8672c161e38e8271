//! Integration tests of `flopcal profile`, driving the binary.

// Helpers outside #[test] functions panic on setup failure, as tests should.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use predicates::prelude::*;

fn flopcal() -> Command {
    Command::cargo_bin("flopcal").expect("binary")
}

/// A tiny custom model so the whole suite runs in a few seconds.
const TINY: &[&str] = &[
    "profile",
    "--hidden",
    "64",
    "--heads",
    "4",
    "--layers",
    "2",
    "--vocab",
    "500",
    "--seq",
    "32",
    "--batch",
    "2",
    "--squares",
    "64",
    "--quick",
    "--min-samples",
    "10",
    "--threads",
    "1",
];

#[test]
fn tiny_profile_writes_a_schema_valid_result_file_and_csv_twin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.json");
    flopcal()
        .args(TINY)
        .args(["--filter", "/f32", "--out"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("matmul qkv.fwd"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 2);
    assert_eq!(v["tool"]["name"], "flopcal");
    assert_eq!(v["partial"], false);
    for key in [
        "cpu_model",
        "physical_cores",
        "isa_features",
        "memory_bytes",
        "os",
        "candle_version",
        "build_features",
    ] {
        assert!(!v["host"][key].is_null(), "host.{key} missing");
    }
    assert_eq!(v["host"]["threads"], 1);
    let benches = v["benchmarks"].as_array().unwrap();
    assert!(benches.len() >= 20, "only {} benchmarks", benches.len());
    for b in benches {
        let s = &b["summary"];
        assert_eq!(b["status"], "ok", "{b}");
        assert_eq!(b["verified"], true);
        let n = s["n"].as_u64().unwrap();
        assert!(n >= 10);
        // Every round is bracketed by a contention probe reading; the statistics
        // rest on the quiet rounds (all of them when the quiet ones hold fewer than
        // the harness's minimum of samples).
        let list = |key: &str| b[key].as_array().unwrap().clone();
        let sizes: Vec<u64> = list("round_sizes")
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        let contended: Vec<bool> = list("round_contended")
            .iter()
            .map(|x| x.as_bool().unwrap())
            .collect();
        assert_eq!(b["round_probe_s"].as_array().unwrap().len(), sizes.len());
        assert_eq!(contended.len(), sizes.len());
        let total: u64 = sizes.iter().sum();
        assert_eq!(b["samples_s"].as_array().unwrap().len() as u64, total);
        let quiet: u64 = sizes
            .iter()
            .zip(&contended)
            .filter(|(_, &c)| !c)
            .map(|(n, _)| n)
            .sum();
        let min = flopcal_bench::results::MIN_QUIET_SAMPLES as u64;
        assert_eq!(n, if quiet < min { total } else { quiet }, "{b}");
        // The sampling interval at its corrected level (≥ 95%) inside the prediction
        // interval for another run.
        let f = |key: &str| s[key].as_f64().unwrap_or_else(|| panic!("{key}: {s}"));
        let (lo, med, hi) = (f("ci95_low_s"), f("median_s"), f("ci95_high_s"));
        assert!(lo <= med && med <= hi && lo > 0.0);
        assert!(f("ci_level") >= 0.95);
        assert!(f("pi95_low_s") <= lo && hi <= f("pi95_high_s"), "{s}");
        let flops = b["flops_per_iter"].as_f64().unwrap();
        let rate = s["flops_per_s"].as_f64().unwrap();
        assert!((rate - flops / med).abs() <= 1e-6 * rate);
    }
    let c = &v["contention"];
    assert!(c["best_probe_s"].as_f64().unwrap() > 0.0, "{c}");
    assert!(c["readings"].as_u64().unwrap() >= 2 * benches.len() as u64);
    assert!(v["round_drift_sd"].as_f64().unwrap() >= 0.0);
    let csv = std::fs::read_to_string(dir.path().join("tiny.csv")).unwrap();
    assert_eq!(csv.lines().count(), benches.len() + 1);
    assert!(csv.starts_with("id,kernel,label"));
}

#[test]
fn json_format_prints_only_json_on_stdout() {
    let out = flopcal()
        .args(TINY)
        .args(["--filter", "matmul/square,layernorm", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    // Comma-separated alternatives: the square GEMM and the layernorm.
    assert_eq!(v["benchmarks"].as_array().unwrap().len(), 2);
}

#[test]
fn csv_format_prints_one_row_per_benchmark() {
    flopcal()
        .args(TINY)
        .args(["--filter", "matmul/square", "--format", "csv"])
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with("id,kernel")
                .and(predicate::str::contains("matmul/square/m64.n64.k64/f32")),
        );
}

#[test]
fn square_dtype_measures_each_square_size_in_each_dtype() {
    let out = flopcal()
        .args(TINY)
        // TINY has `--squares 64`; a second --squares adds to the list.
        .args([
            "--squares",
            "96",
            "--square-dtype",
            "bf16,f16",
            "--filter",
            "matmul/square",
            "--no-peak",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<&str> = v["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        [
            "matmul/square/m64.n64.k64/bf16",
            "matmul/square/m64.n64.k64/f16",
            "matmul/square/m96.n96.k96/bf16",
            "matmul/square/m96.n96.k96/f16",
        ]
    );
}

#[test]
fn square_dtype_without_squares_or_with_an_unknown_dtype_is_refused() {
    for args in [
        &["profile", "--square-dtype", "bf16"][..],
        &["profile", "--squares", "64", "--square-dtype", "int3"],
    ] {
        let out = flopcal().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--square"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn unknown_model_is_a_one_line_error_with_a_suggestion() {
    flopcal()
        .args(["profile", "--model", "bert-lage"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("did you mean `bert-large`")
                .and(predicate::str::contains("panicked").not()),
        );
}

#[test]
fn zero_and_negative_sizes_are_refused() {
    for args in [
        &["profile", "--batch", "0"][..],
        &["profile", "--seq", "0"],
        &["profile", "--hidden", "0", "--heads", "4"],
        &["profile", "--batch", "-3"],
        &["profile", "--target-ci", "0"],
        &["profile", "--threads", "0"],
    ] {
        let out = flopcal().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.trim().is_empty());
    }
}

#[test]
fn a_shape_too_large_for_memory_is_refused_with_the_number() {
    flopcal()
        .args([
            "profile",
            "--model",
            "t5-11b",
            "--seq",
            "512",
            "--batch",
            "512",
            "--max-memory",
            "1",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("GiB").and(predicate::str::contains("needs about")));
}

#[test]
fn unwritable_out_is_refused_before_measuring_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("missing-dir").join("r.json");
    flopcal()
        .args(TINY)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing-dir"));
    assert!(!out.exists());
}

#[test]
fn cuda_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    flopcal()
        .args(TINY)
        .args(["--device", "cuda"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--features cuda"));
}
