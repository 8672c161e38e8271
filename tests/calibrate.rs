//! `flopcal calibrate`: every published cost reproduced from the catalog, implied MFU,
//! the leave-one-out table and its summary, exit codes.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use flopcal_model::catalog::Catalog;
use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::flopcal;

fn calibrate_json() -> Value {
    common::json_of::<&str>("calibrate", &[])
}

#[test]
fn every_published_cost_is_reproduced() {
    let v = calibrate_json();
    let runs = v["runs"].as_array().unwrap();
    let cat = Catalog::embedded();
    assert_eq!(runs.len(), cat.runs.len());
    for r in runs {
        let id = r["id"].as_str().unwrap();
        let run = cat.run(id).unwrap();
        assert!(r["cost_reproduced"].as_bool().unwrap(), "{id}: {r}");
        if let (Some(p), Some(q)) = (run.published_cost_usd, r["reproduced_cost_usd"].as_f64()) {
            let tol = run.published_cost_tolerance.map(|t| t * p).unwrap_or(0.5);
            assert!((p - q).abs() <= tol, "{id}: {q} vs {p}");
            assert_eq!(r["published_cost_usd"].as_f64(), Some(p));
        }
    }
    assert!(v["summary"]["all_costs_reproduced"].as_bool().unwrap());
}

#[test]
fn json_rows_and_summary_have_documented_fields() {
    let v = calibrate_json();
    let mut fitted = 0;
    for r in v["runs"].as_array().unwrap() {
        for k in [
            "id",
            "published_cost_usd",
            "reproduced_cost_usd",
            "implied_mfu",
            "loo_predicted_device_hours",
            "published_device_hours",
            "loo_ratio",
        ] {
            assert!(r.get(k).is_some(), "{k} missing in {r}");
        }
        if let Some(m) = r["implied_mfu"].as_f64() {
            fitted += 1;
            assert!(m > 0.0 && m < 1.0, "{r}");
            let ratio = r["loo_ratio"].as_f64().unwrap();
            assert!(ratio.is_finite() && ratio > 0.0);
            let pred = r["loo_predicted_device_hours"].as_f64().unwrap();
            let publ = r["published_device_hours"].as_f64().unwrap();
            assert!((pred / publ - ratio).abs() < 1e-9);
        }
    }
    let s = &v["summary"];
    assert_eq!(s["runs_fitted"].as_u64(), Some(fitted));
    let med = s["median_abs_log_error"].as_f64().unwrap();
    let worst = s["worst_abs_log_error"].as_f64().unwrap();
    assert!(med >= 0.0 && med <= worst);
    // Published runs disagree, but not by more than a factor e^1.5 ≈ 4.5 out of sample.
    assert!(worst < 1.5, "worst LOO log-error {worst}");
}

#[test]
fn implied_mfu_is_flops_over_devices_peak_seconds() {
    let v = calibrate_json();
    let cat = Catalog::embedded();
    let r = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "bert-large")
        .unwrap();
    let run = cat.run("bert-large").unwrap();
    let hw = cat.hardware(&run.hardware).unwrap();
    let chips = hw.chips(run.count, run.unit);
    let peak = hw.peak_flops(Some(&run.dtype)).unwrap();
    let want = r["train_flops"].as_f64().unwrap() / (chips * peak * run.hours.unwrap() * 3600.0);
    assert!((r["implied_mfu"].as_f64().unwrap() - want).abs() < 1e-12);
}

#[test]
fn table_prints_runs_and_summary() {
    flopcal()
        .arg("calibrate")
        .assert()
        .success()
        .stdout(predicate::str::contains("xlnet-large"))
        .stdout(predicate::str::contains("leave-one-out"))
        .stdout(predicate::str::contains(
            "Arithmetic checks, not calibration",
        ))
        .stdout(predicate::str::contains("korthikanti-175b-selective"))
        .stdout(predicate::str::contains("ai21-340m"));
}

#[test]
fn csv_has_a_header_and_one_row_per_run() {
    let out = flopcal()
        .args(["calibrate", "--format", "csv"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("id,"));
    assert_eq!(text.lines().count(), Catalog::embedded().runs.len() + 1);
}

#[test]
fn a_missed_bound_exits_1() {
    flopcal()
        .args(["calibrate", "--max-log-error", "0.01"])
        .assert()
        .code(1);
}

#[test]
fn bad_catalog_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[runs]]\nid = \"r\"\nmodel = \"bert-base\"\nhardware = \"tpu-v9\"\ncount = 1\nunit = \"chip\"\ndtype = \"bf16\"\nprice_basis = \"on-demand\"\nsource = \"s\"\ndate = \"2025-01\"\n").unwrap();
    let out = flopcal()
        .args(["calibrate", "--catalog"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4:") && err.contains("r.hardware"),
        "{err}"
    );
}

#[test]
fn step_model_checks_every_published_run_with_leave_one_out() {
    let v = calibrate_json();
    let st = &v["step"];
    let runs = st["runs"].as_array().unwrap();
    // Every row of steps.toml, plus the seed runs with a duration and schedule.
    let steps = flopcal_model::published::embedded().len();
    assert!(runs.len() >= steps + 4, "{}", runs.len());
    for r in runs {
        let p = r["published_s"].as_f64().unwrap();
        let q = r["predicted_s"].as_f64().unwrap();
        assert!((q / p - 1.0 - r["error"].as_f64().unwrap()).abs() < 1e-9);
        let loo = r["loo_predicted_s"].as_f64().unwrap();
        assert!(((loo / p).ln().abs() - r["loo_abs_log_error"].as_f64().unwrap()).abs() < 1e-9);
    }
    // Leaving each whole source out: the median run within x1.15, none off by more
    // than x1.5, and the 80% bands holding 70-90% of the left-out runs.
    let med = st["median_abs_log_error"].as_f64().unwrap();
    assert!(med <= 1.15f64.ln(), "median LOO |ln err| {med}");
    let worst = st["worst_abs_log_error"].as_f64().unwrap();
    assert!(
        worst <= 1.5f64.ln(),
        "worst LOO |ln err| {worst} ({})",
        st["worst_run"]
    );
    let cov = st["band_coverage"].as_f64().unwrap();
    assert!((0.7..=0.9).contains(&cov), "80% bands hold {cov}");
    // Every parameter names the runs it was fitted on, and they are checked runs.
    for p in st["parameters"].as_array().unwrap() {
        let fitted = p["runs"].as_array().unwrap();
        assert!(!fitted.is_empty());
        for id in fitted {
            assert!(runs.iter().any(|r| r["id"] == *id), "{id}");
        }
    }
}

/// `estimate` with a published row's own flags and `--framework`.
fn estimate_row(extra: &[&str]) -> Value {
    let mut args = vec![
        "--layers",
        "96",
        "--hidden",
        "12288",
        "--heads",
        "96",
        "--head-dim",
        "128",
        "--ffn",
        "49152",
        "--vocab",
        "51200",
        "--seq",
        "2048",
        "--causal",
        "--batch",
        "64",
        "--steps",
        "1",
        "--hardware",
        "a100-80gb",
        "--devices",
        "64",
        "--tp",
        "8",
        "--pp",
        "8",
        "--microbatch",
        "1",
        "--virtual-stages",
        "3",
        "--zero",
        "0",
        "--attention",
        "materialized",
    ];
    args.extend_from_slice(extra);
    common::json_of("estimate", &args)
}

#[test]
fn what_calibrate_reports_for_a_published_row_is_what_estimate_prints_with_its_flags() {
    let v = calibrate_json();
    let rows = v["step"]["runs"].as_array().unwrap();
    for (id, extra) in [
        (
            "korthikanti-175b-selective",
            &[
                "--recompute",
                "selective",
                "--sequence-parallel",
                "--framework",
                "megatron",
            ][..],
        ),
        (
            "korthikanti-175b-full",
            &[
                "--recompute",
                "full",
                "--sequence-parallel=false",
                "--framework",
                "megatron",
            ][..],
        ),
    ] {
        let row = rows.iter().find(|r| r["id"] == id).unwrap();
        let want = row["predicted_s"].as_f64().unwrap();
        let got = estimate_row(extra)["step_time_s"].as_f64().unwrap();
        assert!(
            (got / want - 1.0).abs() < 1e-9,
            "{id}: estimate {got} vs calibrate {want}"
        );
    }
}

#[test]
fn calibrate_leaves_whole_sources_out_and_reports_band_coverage() {
    let v = calibrate_json();
    let st = &v["step"];
    let sources = st["sources"].as_array().unwrap();
    let k = sources
        .iter()
        .find(|s| s["group"] == "korthikanti-2022")
        .unwrap();
    assert_eq!(k["runs"].as_u64(), Some(9));
    let cov = st["band_coverage"].as_f64().unwrap();
    assert!(cov > 0.0 && cov <= 1.0, "{cov}");
    assert_eq!(st["band_level"].as_f64(), Some(0.8));
    // Every row's left-out prediction differs from its in-sample one only through the
    // fit: a source that is the only one of its stack falls back to the population.
    let palm = st["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "palm-540b")
        .unwrap();
    assert!(
        palm["loo_basis"].as_str().unwrap().contains("population"),
        "{palm}"
    );
}

#[test]
fn an_unknown_framework_is_refused_with_the_list() {
    flopcal()
        .args(["estimate", "--model", "llama2-7b", "--tokens", "1e9", "--hardware", "a100"])
        .args(["--devices", "8", "--framework", "caffe"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown framework `caffe` (known: megatron, deepspeed, fsdp, jax, tensorflow, unknown)",
        ));
}

#[test]
fn a_goodput_outside_zero_to_one_is_refused() {
    for g in ["0", "1.5", "-0.2", "nan"] {
        flopcal()
            .args(common::SMALL_ESTIMATE)
            .args(["--goodput", g])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--goodput must be in (0, 1]"));
    }
}

#[test]
fn goodput_lengthens_the_wall_clock_but_not_the_step() {
    let base = [
        "--model",
        "llama2-7b",
        "--tokens",
        "1e10",
        "--hardware",
        "a100",
        "--devices",
        "64",
    ];
    let mut full = base.to_vec();
    full.extend(["--goodput", "1"]);
    let mut half = base.to_vec();
    half.extend(["--goodput", "0.5"]);
    let a = common::json_of("estimate", &full);
    let b = common::json_of("estimate", &half);
    assert_eq!(a["step_time_s"], b["step_time_s"]);
    let (ha, hb) = (common::f(&a, "wall_hours"), common::f(&b, "wall_hours"));
    assert!((hb / ha - 2.0).abs() < 1e-9, "{ha} {hb}");
}

#[test]
fn calibrate_reports_how_far_off_an_estimate_without_layout_flags_is() {
    let v = calibrate_json();
    let st = &v["step"];
    let runs = st["free_layout_runs"].as_u64().unwrap();
    assert!(runs >= 80, "{runs}");
    let med = st["free_layout_median_abs_log_error"].as_f64().unwrap();
    assert!(med > 0.0 && med < 1.0, "{med}");
    let gap = st["layout_gap"].as_f64().unwrap();
    assert!(gap > 0.0 && gap < 1.0, "{gap}");
    // Narayanan's runs stated full recomputation: the search's best layout is faster.
    let row = st["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "narayanan-39.1b")
        .unwrap();
    let free = row["loo_free_predicted_s"].as_f64().unwrap();
    assert!(
        free < row["loo_unknown_predicted_s"].as_f64().unwrap(),
        "{row}"
    );
    // Seeds state no layout: nothing to compare.
    let seed = st["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "bert-large")
        .unwrap();
    assert!(seed["loo_free_predicted_s"].is_null(), "{seed}");
    // The no-layout band is judged the same way: each production row against the band
    // built without its source, and it holds 70-90% of them (80% +- 10 points).
    let runs = st["runs"].as_array().unwrap();
    let judged: Vec<bool> = runs
        .iter()
        .filter_map(|r| r["loo_free_in_band"].as_bool())
        .collect();
    let production = runs
        .iter()
        .filter(|r| r["production"] == true && !r["loo_free_predicted_s"].is_null())
        .count();
    assert_eq!(judged.len(), production);
    let (inside, of) = (
        st["free_layout_production_in_band"][0].as_u64().unwrap() as usize,
        st["free_layout_production_in_band"][1].as_u64().unwrap() as usize,
    );
    assert_eq!(
        (inside, of),
        (judged.iter().filter(|x| **x).count(), judged.len())
    );
    let cov = inside as f64 / of as f64;
    assert!((0.7..=0.9).contains(&cov), "{inside} of {of}");
}

#[test]
fn calibrate_leaves_whole_hardware_classes_out_and_reports_what_that_adds() {
    let v = calibrate_json();
    let st = &v["step"];
    let runs = st["runs_checked"].as_u64().unwrap();
    let inside = st["class_out_in_band"].as_u64().unwrap();
    assert!(inside > 0 && inside <= runs, "{inside} of {runs}");
    assert!(st["class_out_classes"].as_u64().unwrap() >= 3);
    let by_source = st["median_abs_log_error"].as_f64().unwrap();
    let by_class = st["class_out_median_abs_log_error"].as_f64().unwrap();
    // Not knowing the class costs accuracy; every row carries its class-out prediction.
    assert!(by_class > by_source, "{by_class} vs {by_source}");
    let spread = st["class_spread"].as_array().unwrap();
    assert!(spread
        .iter()
        .any(|s| s[0] == "gpu" && s[1].as_f64().unwrap() > 0.0));
    for r in st["runs"].as_array().unwrap() {
        assert!(r["class_out_predicted_s"].as_f64().unwrap() > 0.0, "{r}");
    }
}
