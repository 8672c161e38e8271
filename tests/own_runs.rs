//! `--own-runs FILE`: a team's own runs join the step model's calibration (the
//! README's example file drives these tests), and bad files are refused in one line.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{f, flopcal, json_of};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/own-runs.toml");

/// The example run's own flags: its model, hardware, stack, layout and batch, one step.
const ITS_FLAGS: [&str; 18] = [
    "--model",
    "llama2-7b",
    "--hardware",
    "a100-80gb",
    "--devices",
    "64",
    "--framework",
    "fsdp",
    "--tp",
    "1",
    "--pp",
    "1",
    "--zero",
    "3",
    "--batch",
    "512",
    "--steps",
    "1",
];

/// The example's published step time.
fn example_step_s() -> f64 {
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let after = text.split("step_time_s = ").nth(1).unwrap();
    after
        .split(|c: char| c.is_whitespace() || c == '}')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn estimate(extra: &[&str]) -> Value {
    let mut args: Vec<&str> = ITS_FLAGS.to_vec();
    args.extend(extra);
    json_of("estimate", &args)
}

#[test]
fn a_teams_slower_run_moves_its_stacks_estimate_to_what_it_measured() {
    let want = example_step_s();
    let without = f(&estimate(&[]), "step_time_s");
    let with = estimate(&["--own-runs", EXAMPLE]);
    // The example ran 1.6x slower than the published stacks predict for it, so
    // without it the estimate is far off, and with it (its stack's factor on A100
    // fitted from it, pooled) within 10%.
    assert!(
        (without / want - 1.0).abs() > 0.3,
        "without the file: {without} s against {want} s"
    );
    let got = f(&with, "step_time_s");
    assert!(
        (got / want - 1.0).abs() < 0.10,
        "with the file: {got} s against {want} s"
    );
    assert!(
        with["mfu_source"]
            .as_str()
            .unwrap()
            .contains("acme cluster 2026-11"),
        "{}",
        with["mfu_source"]
    );
}

#[test]
fn calibrate_leaves_a_teams_source_out_like_a_published_one() {
    let v = json_of("calibrate", &["--own-runs", EXAMPLE]);
    let runs = v["step"]["runs"].as_array().unwrap();
    let mine = runs
        .iter()
        .find(|r| r["id"] == "acme-llama2-7b-64xa100")
        .unwrap();
    assert_eq!(mine["group"], "acme cluster 2026-11");
    let want = example_step_s();
    assert_eq!(f(mine, "published_s"), want);
    // Left out, the stack has no A100 run of its own: the prediction falls back to
    // the published ones and misses the slower team by far.
    assert!(f(mine, "loo_abs_log_error") > 0.3, "{mine}");
    assert!((f(mine, "predicted_s") / want - 1.0).abs() < 0.10, "{mine}");
}

#[test]
fn plan_uses_the_teams_runs_too() {
    let base = [
        "--model",
        "llama2-7b",
        "--hardware",
        "a100-80gb",
        "--devices",
        "64",
        "--framework",
        "fsdp",
        "--batch",
        "512",
        "--top",
        "1",
    ];
    let step = |v: &Value| f(&v["plans"][0], "step_time_s");
    let without = step(&json_of("plan", &base));
    let mut args = base.to_vec();
    args.extend(["--own-runs", EXAMPLE]);
    let with = step(&json_of("plan", &args));
    assert!(with > 1.3 * without, "{with} s vs {without} s");
}

/// The example with `edit` applied to its text, written to a temp file.
fn edited(edit: impl Fn(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("runs.toml");
    std::fs::write(&p, edit(&std::fs::read_to_string(EXAMPLE).unwrap())).unwrap();
    (dir, p)
}

/// `estimate --own-runs` on the example edited by `edit` is refused with exit 2 and
/// one line containing each of `expect`.
fn refused(edit: impl Fn(&str) -> String, expect: &[&str]) {
    let (_dir, p) = edited(edit);
    let mut c = flopcal();
    c.arg("estimate").args(ITS_FLAGS).arg("--own-runs").arg(&p);
    let mut pred = predicate::str::contains("error:").boxed();
    for e in expect {
        pred = pred.and(predicate::str::contains(*e)).boxed();
    }
    let out = c.assert().code(2).stderr(pred).get_output().clone();
    let err = String::from_utf8_lossy(&out.stderr);
    let errors = err.lines().filter(|l| l.starts_with("error")).count();
    assert_eq!(errors, 1, "one line: {err}");
}

#[test]
fn a_run_missing_a_field_is_refused_naming_the_field() {
    refused(
        |t| t.replace("devices = 64\n", ""),
        &["--own-runs", "devices"],
    );
}

#[test]
fn a_run_on_unknown_hardware_is_refused_naming_the_row() {
    refused(
        |t| t.replace("hardware = \"a100-80gb\"", "hardware = \"a100-90gb\""),
        &["acme-llama2-7b-64xa100", "hardware", "a100-90gb"],
    );
}

#[test]
fn a_run_on_an_unknown_framework_is_refused_with_the_list() {
    refused(
        |t| t.replace("framework = \"fsdp\"", "framework = \"fsdq\""),
        &["acme-llama2-7b-64xa100", "framework", "megatron"],
    );
    refused(
        |t| t.replace("framework = \"fsdp\"", "framework = \"unknown\""),
        &["acme-llama2-7b-64xa100", "framework", "name the stack"],
    );
}

#[test]
fn a_non_positive_time_is_refused() {
    for bad in ["0.0", "-3.0"] {
        refused(
            |t| t.replace("step_time_s = 12.0", &format!("step_time_s = {bad}")),
            &["acme-llama2-7b-64xa100", "published", "positive"],
        );
    }
}

#[test]
fn a_layout_that_does_not_fit_is_refused_naming_the_row() {
    refused(
        |t| t.replace("tp = 1, pp = 1", "tp = 1, pp = 3"),
        &["acme-llama2-7b-64xa100", "layout"],
    );
}

#[test]
fn block_recomputation_in_a_run_needs_full_recompute_and_a_layer() {
    refused(
        |t| {
            t.replace(
                "zero = 3 }",
                "zero = 3, recompute = \"selective\", recompute_layers = 4 }",
            )
        },
        &["acme-llama2-7b-64xa100", "recompute_layers", "full"],
    );
    refused(
        |t| t.replace("zero = 3 }", "zero = 3, recompute_layers = 0 }"),
        &["acme-llama2-7b-64xa100", "recompute_layers", "at least 1"],
    );
}

#[test]
fn an_id_an_embedded_run_has_is_refused_naming_both() {
    refused(
        |t| t.replace("acme-llama2-7b-64xa100", "korthikanti-22b-full"),
        &["korthikanti-22b-full", "Korthikanti et al. 2022"],
    );
    refused(
        |t| {
            format!(
                "{t}\n{}",
                t.split("[[runs]]")
                    .nth(1)
                    .map_or(String::new(), |r| format!("[[runs]]{r}"))
            )
        },
        &["acme-llama2-7b-64xa100", "twice"],
    );
}

#[test]
fn a_missing_file_is_refused_naming_it() {
    flopcal()
        .arg("estimate")
        .args(ITS_FLAGS)
        .args(["--own-runs", "/nonexistent/runs.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/runs.toml"));
}
