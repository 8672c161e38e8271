//! `flopcal estimate`: seed reproductions (figures read from the catalog, never typed
//! in twice), AI21's ranges, T5-11B, energy, and bad input.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use assert_cmd::Command;
use flopcal_model::catalog::{Catalog, Run};
use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{f, flopcal};

fn json(args: &[String]) -> Value {
    common::json_of("estimate", args)
}

fn run(id: &str) -> Run {
    Catalog::embedded().run(id).unwrap().clone()
}

/// `estimate` for a published run's own hardware, count and the duration its
/// published cost priced.
fn cost_of_run(r: &Run, unit_override: Option<&str>) -> Value {
    let hours = r.published_cost_hours.or(r.hours).unwrap();
    json(&[
        "--hardware".into(),
        r.hardware.clone(),
        "--devices".into(),
        r.count.to_string(),
        "--unit".into(),
        unit_override.unwrap_or(r.unit.as_str()).to_string(),
        "--hours".into(),
        hours.to_string(),
    ])
}

/// Published figures are rounded to the dollar.
fn assert_dollars(got: f64, published: f64, what: &str) {
    assert!(
        (got - published).abs() <= 0.5,
        "{what}: got {got}, published {published}"
    );
}

#[test]
fn bert_large_on_demand_and_preemptible() {
    let r = run("bert-large");
    let e = cost_of_run(&r, None);
    assert_dollars(
        f(&e, "cost_usd"),
        r.published_cost_usd.unwrap(),
        "on demand",
    );
    assert_dollars(
        f(&e, "cost_usd_preemptible"),
        r.published_cost_preemptible_usd.unwrap(),
        "preemptible",
    );
}

#[test]
fn xlnet_chips_and_cores_readings() {
    let r = run("xlnet-large");
    let chips = cost_of_run(&r, None);
    assert_dollars(
        f(&chips, "cost_usd"),
        r.published_cost_usd.unwrap(),
        "chips",
    );
    let cores = cost_of_run(&r, Some(r.alt_unit.unwrap().as_str()));
    assert_dollars(
        f(&cores, "cost_usd"),
        r.alt_published_cost_usd.unwrap(),
        "cores",
    );
}

#[test]
fn grover_mega_at_preemptible_core_hour_rate() {
    let r = run("grover-mega");
    let e = cost_of_run(&r, None);
    let got = f(&e, "cost_usd_preemptible");
    let published = r.published_cost_usd.unwrap();
    let tol = r.published_cost_tolerance.unwrap();
    assert!(
        ((got - published) / published).abs() <= tol,
        "{got} vs ~{published}"
    );
    // $0.30 per core-hour, as Zellers et al. wrote.
    let per_core_hour = f(&e, "preemptible_price_per_device_hour") / 2.0;
    assert!((per_core_hour - 0.30).abs() < 1e-9);
}

#[test]
fn gpt2_per_hour_total_and_preemptible() {
    let r = run("gpt2-1.5b");
    let e = cost_of_run(&r, None);
    assert_dollars(
        f(&e, "cost_usd_per_hour"),
        r.published_cost_per_hour_usd.unwrap(),
        "per hour",
    );
    assert_dollars(
        f(&e, "cost_usd"),
        r.published_cost_usd.unwrap(),
        "on demand",
    );
    assert_dollars(
        f(&e, "cost_usd_preemptible"),
        r.published_cost_preemptible_usd.unwrap(),
        "preemptible",
    );
}

#[test]
fn transformer_big_on_p100() {
    let r = run("transformer-big");
    let e = cost_of_run(&r, None);
    assert_dollars(
        f(&e, "cost_usd"),
        r.published_cost_usd.unwrap(),
        "on demand",
    );
    assert_dollars(
        f(&e, "cost_usd_preemptible"),
        r.published_cost_preemptible_usd.unwrap(),
        "preemptible",
    );
}

#[test]
fn ai21_ranges_are_estimate_under_one_reading() {
    // Every AI21 size is read the same way (calibrate's ranges): the estimate command
    // on that reading gives the same single-run cost, so the table is not tuned per row.
    let cal = common::json_of::<&str>("calibrate", &[]);
    let ranges = cal["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 3);
    let first = ranges[0]["assumption"].as_str().unwrap();
    for g in ranges {
        assert_eq!(g["assumption"].as_str().unwrap(), first);
        assert_eq!(g["hardware"].as_str().unwrap(), "tpu-v3");
        assert_eq!(g["band_end"].as_str().unwrap(), "mid");
        let e = json(&[
            "--model".into(),
            g["model"].as_str().unwrap().into(),
            "--hardware".into(),
            "tpu-v3".into(),
            "--devices".into(),
            "64".into(),
            "--steps".into(),
            "900000".into(),
            "--batch".into(),
            "256".into(),
            "--seq".into(),
            "128".into(),
        ]);
        assert!(f(&e, "cost_usd") < f(g, "estimated_single_run_usd"), "{g}");
        assert!(
            f(&e, "cost_usd") > 0.3 * f(g, "estimated_single_run_usd"),
            "{g}"
        );
    }
}

#[test]
fn t5_11b_single_run_above_published_floor() {
    let r = run("t5-11b");
    let e = json(&[
        "--model".into(),
        r.model.clone(),
        "--hardware".into(),
        r.hardware.clone(),
        "--devices".into(),
        r.count.to_string(),
        "--unit".into(),
        r.unit.as_str().into(),
    ]);
    let floor = r.published_cost_min_usd.unwrap();
    assert!(
        f(&e, "cost_usd") > floor,
        "T5-11B {} <= {floor}",
        f(&e, "cost_usd")
    );
}

#[test]
fn json_has_every_documented_field() {
    let e = json(&[
        "--model".into(),
        "bert-large".into(),
        "--hardware".into(),
        "tpu-v3".into(),
    ]);
    for k in [
        "train_flops",
        "flops_6nd",
        "mfu",
        "mfu_low",
        "mfu_high",
        "device_hours",
        "wall_hours",
        "cost_usd",
        "cost_usd_preemptible",
        "fully_loaded_cost_usd",
        "energy_kwh",
        "co2_kg",
        "co2_lb",
    ] {
        f(&e, k);
    }
    assert!(e["mfu_source"].as_str().unwrap().starts_with("step model"));
    // The step model's fields (issue 12).
    let l = &e["layout"];
    assert_eq!(
        f(l, "tp") * f(l, "cp") * f(l, "pp") * f(l, "dp"),
        f(&e, "devices")
    );
    for k in ["microbatch", "virtual_stages", "zero"] {
        f(l, k);
    }
    assert!(l["sequence_parallel"].is_boolean() && l["recompute"].is_string());
    let b = &e["step_breakdown_s"];
    let parts: f64 = [
        "compute",
        "tp_comm",
        "pp_comm",
        "dp_comm",
        "bubble",
        "optimizer",
    ]
    .iter()
    .map(|k| f(b, k))
    .sum();
    assert!(parts <= f(&e, "step_time_s") * (1.0 + 1e-9));
    let m = &e["memory_per_device_bytes"];
    let sum = ["weights", "gradients", "optimizer", "activations"]
        .iter()
        .map(|k| f(m, k))
        .sum::<f64>();
    assert!((sum - f(m, "total")).abs() < 1e-6 * sum);
    assert!(f(&e, "hfu") >= f(&e, "mfu") * 0.999 && f(&e, "tokens_per_s") > 0.0);
    // Fully loaded defaults to AI21's 2 configurations x 10 runs.
    assert_eq!(f(&e, "fully_loaded_multiplier"), 20.0);
    assert!((f(&e, "fully_loaded_cost_usd") / f(&e, "cost_usd") - 20.0).abs() < 1e-9);
    assert!(!e["assumptions"].as_array().unwrap().is_empty());
    assert!(f(&e, "mfu_low") <= f(&e, "mfu") && f(&e, "mfu") <= f(&e, "mfu_high"));
    assert!(
        f(&e, "cost_usd_low") <= f(&e, "cost_usd") && f(&e, "cost_usd") <= f(&e, "cost_usd_high")
    );
}

#[test]
fn energy_follows_strubell_and_is_overridable() {
    let hw = Catalog::embedded().hardware("v100").unwrap();
    let tdp = hw.tdp_w.as_ref().unwrap().value;
    let base = ["--hardware", "v100", "--devices", "8", "--hours", "100"].map(String::from);
    let e = json(&base);
    let kwh = 1.58 * 800.0 * tdp / 1000.0;
    assert!((f(&e, "energy_kwh") - kwh).abs() < 1e-6);
    assert!((f(&e, "co2_lb") - 0.954 * kwh).abs() < 1e-6);
    assert!((f(&e, "co2_kg") - 0.954 * kwh * 0.453_592_37).abs() < 1e-6);
    let mut args = base.to_vec();
    args.extend(
        [
            "--pue",
            "1.1",
            "--co2-per-kwh",
            "0.5",
            "--host-watts",
            "1000",
        ]
        .map(String::from),
    );
    let e = json(&args);
    let kwh = 1.1 * (800.0 * tdp + 100.0 * 1000.0) / 1000.0;
    assert!((f(&e, "energy_kwh") - kwh).abs() < 1e-6);
    assert!((f(&e, "co2_lb") - 0.5 * kwh).abs() < 1e-6);
}

#[test]
fn params_tokens_is_6nd_and_user_mfu_is_a_point() {
    let e = json(
        &[
            "--params",
            "1e9",
            "--tokens",
            "2e10",
            "--hardware",
            "a100",
            "--mfu",
            "0.4",
        ]
        .map(String::from),
    );
    assert_eq!(f(&e, "train_flops"), 6.0 * 1e9 * 2e10);
    assert_eq!(f(&e, "mfu_low"), 0.4);
    let hours = 6.0 * 1e9 * 2e10 / (312e12 * 0.4) / 3600.0;
    assert!((f(&e, "device_hours") - hours).abs() < 1e-9 * hours);
}

#[test]
fn chip_hours_sit_beside_device_hours_and_count_chips_whatever_the_unit() {
    // 16 TPU v2 devices are 64 chips: both names count the 64 chips' hours.
    let args = [
        "--model",
        "bert-large",
        "--tokens",
        "1e10",
        "--hardware",
        "tpu-v2",
        "--devices",
        "16",
        "--unit",
        "device",
    ];
    let e = json(&args.map(String::from));
    assert_eq!(f(&e, "devices"), 64.0);
    assert_eq!(f(&e, "chip_hours"), f(&e, "device_hours"));
    assert_eq!(f(&e, "chip_hours_low"), f(&e, "device_hours_low"));
    assert_eq!(f(&e, "chip_hours_high"), f(&e, "device_hours_high"));
    let wall = f(&e, "wall_hours");
    assert!((f(&e, "chip_hours") - 64.0 * wall).abs() < 1e-9 * wall);
    let (header, rows) = common::csv_of("estimate", &args);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    assert_eq!(
        rows[0][col("chip_hours")].parse::<f64>().unwrap(),
        f(&e, "device_hours")
    );
}

#[test]
fn measured_kernel_efficiency_scales_mfu() {
    let a = json(
        &[
            "--model",
            "gpt2",
            "--tokens",
            "1e9",
            "--hardware",
            "h100",
            "--kernel-efficiency",
            "0.5",
        ]
        .map(String::from),
    );
    let b = json(
        &[
            "--model",
            "gpt2",
            "--tokens",
            "1e9",
            "--hardware",
            "h100",
            "--kernel-efficiency",
            "0.25",
        ]
        .map(String::from),
    );
    assert!((f(&a, "mfu") / f(&b, "mfu") - 2.0).abs() < 1e-9);
    assert!(a["mfu_source"].as_str().unwrap().starts_with("measured"));
}

#[test]
fn table_shows_the_band() {
    flopcal()
        .args(["estimate", "--model", "bert-base", "--hardware", "tpu-v2"])
        .assert()
        .success()
        .stdout(predicate::str::contains("low").and(predicate::str::contains("high")))
        .stdout(predicate::str::contains("cost, on demand"))
        .stdout(predicate::str::contains("MFU source: step model"))
        .stdout(predicate::str::contains("layout: tp"));
}

fn bad(args: &[&str], needle: &str) {
    let out = flopcal().arg("estimate").args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    bad(
        &["--model", "bert-large", "--hardware", "tpu-v33"],
        "did you mean `tpu-v3`",
    );
    bad(
        &["--model", "bert-lage", "--hardware", "tpu-v3"],
        "did you mean `bert-large`",
    );
    bad(
        &[
            "--model",
            "bert-large",
            "--hardware",
            "tpu-v3",
            "--devices",
            "0",
        ],
        "--devices",
    );
    bad(
        &[
            "--model",
            "bert-large",
            "--hardware",
            "tpu-v3",
            "--devices",
            "-4",
        ],
        "--devices",
    );
    bad(
        &[
            "--model",
            "bert-large",
            "--hardware",
            "tpu-v3",
            "--mfu",
            "1.5",
        ],
        "(0, 1]",
    );
    bad(
        &[
            "--model",
            "bert-large",
            "--hardware",
            "tpu-v3",
            "--mfu",
            "0",
        ],
        "(0, 1]",
    );
    bad(
        &[
            "--model",
            "bert-large",
            "--hardware",
            "tpu-v3",
            "--steps",
            "0",
            "--batch",
            "8",
        ],
        "--steps",
    );
    bad(
        &["--params", "-1", "--tokens", "1e9", "--hardware", "v100"],
        "--params",
    );
    bad(
        &["--model", "gpt2-xl", "--hardware", "v100"],
        "no published training schedule",
    );
    bad(&["--hardware", "v100"], "say what to train");
}

#[test]
fn malformed_catalog_override_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mine.toml");
    std::fs::write(
        &path,
        "[[hardware]]\nname = \"x\"\nclass = \"c\"\nchips_per_device = \"four\"\n",
    )
    .unwrap();
    let out = flopcal()
        .args([
            "estimate",
            "--model",
            "bert-base",
            "--hardware",
            "v100",
            "--catalog",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mine.toml:4:") && err.contains("chips_per_device"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // The environment variable works the same way.
    let out = Command::cargo_bin("flopcal")
        .unwrap()
        .env("FLOPCAL_CATALOG", &path)
        .args(["estimate", "--model", "bert-base", "--hardware", "v100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn catalog_override_changes_prices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cheap.toml");
    std::fs::write(
        &path,
        r#"[[hardware]]
name = "my-gpu"
class = "gpu-2022"
chips_per_device = 1
cores_per_chip = 1
default_dtype = "bf16"
peak_tflops = [ { dtype = "bf16", value = 100.0, source = "test", date = "2025-01" } ]
price_on_demand = { value = 2.0, source = "test", date = "2025-01" }
kernel_efficiency = { value = 0.5, source = "test", date = "2025-01" }
"#,
    )
    .unwrap();
    let out = flopcal()
        .args([
            "estimate",
            "--hardware",
            "my-gpu",
            "--devices",
            "4",
            "--hours",
            "10",
            "--format",
            "json",
            "--catalog",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f(&e, "cost_usd"), 80.0);
}

// ---------------------------------------------------------------------------------
// `--profile`: measured kernel efficiency from a result file.

/// The tiny architecture profiled once for the `--profile` tests.
const TINY_ARCH: &[&str] = &[
    "--layers", "2", "--hidden", "64", "--heads", "4", "--ffn", "256", "--vocab", "500",
];

/// A quick profile of the tiny architecture (seq 32, batch 2), measured once per test
/// binary; the directory is kept for the life of the process.
fn tiny_profile() -> &'static std::path::Path {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = dir.join("tiny.json");
        let status = Command::cargo_bin("flopcal")
            .unwrap()
            .arg("profile")
            .args(TINY_ARCH)
            .args(["--seq", "32", "--batch", "2", "--quick", "--squares", "0"])
            .args(["--peak-duration", "0.05", "--threads", "1", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "profile failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        out
    })
}

/// A copy of the tiny profile with `edit` applied to its JSON.
fn edited_profile(edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, std::path::PathBuf) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(tiny_profile()).unwrap()).unwrap();
    edit(&mut v);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("edited.json");
    std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    (dir, p)
}

fn tiny_estimate(profile: &std::path::Path, extra: &[&str]) -> Command {
    let mut c = flopcal();
    c.arg("estimate")
        .args(TINY_ARCH)
        .args(["--seq", "32", "--tokens", "1e9", "--profile"])
        .arg(profile)
        .args(extra);
    c
}

#[test]
fn profile_predicts_through_the_step_model_with_its_gemm_table_as_rate_source() {
    let run = |p: &std::path::Path| -> Value {
        let out = tiny_estimate(p, &["--format", "json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = run(tiny_profile());
    assert!(
        v["mfu_source"]
            .as_str()
            .unwrap()
            .contains("measured by the profile"),
        "{v}"
    );
    assert!(
        v["assumptions"]
            .to_string()
            .contains("GEMM FLOP/s measured by flopcal profile"),
        "{v}"
    );
    // One device of this machine: the single-device layout.
    assert_eq!(v["layout"]["tp"], 1, "{v}");
    assert_eq!(v["layout"]["dp"], 1, "{v}");
    assert_eq!(v["layout"]["attention"], "materialized", "{v}");
    let step = f(&v, "step_time_s");
    assert!(step > 0.0);
    // The profile's GEMM rates are what the prediction rests on: at half the rates the
    // step takes longer, by the GEMMs' share at most doubling.
    let (_d, slow) = edited_profile(|v| {
        for b in v["benchmarks"].as_array_mut().unwrap() {
            if b["kernel"] == "matmul" {
                let s = &mut b["summary"];
                let r = s["flops_per_s"].as_f64().unwrap();
                s["flops_per_s"] = (r / 2.0).into();
                let m = s["median_s"].as_f64().unwrap();
                s["median_s"] = (m * 2.0).into();
            }
        }
    });
    let w = run(&slow);
    let slower = f(&w, "step_time_s");
    assert!(
        slower > 1.1 * step && slower < 2.0 * step,
        "{slower} vs {step}"
    );
    assert!(f(&w, "device_hours") > f(&v, "device_hours"));
}

#[test]
fn profile_gives_a_measured_kernel_efficiency_weighted_by_training_flops() {
    let out = tiny_estimate(tiny_profile(), &["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON only");
    let k = &v["kernel_efficiency"];
    let eff = f(k, "kernel_efficiency");
    assert!(eff > 0.0 && eff <= 1.0, "{eff}");
    assert!(v["hardware"].as_str().unwrap().starts_with("local"), "{v}");
    let kernels = k["kernels"].as_array().unwrap();
    assert_eq!(
        kernels.len(),
        21,
        "five linear layers x 3 layouts + 6 attention products"
    );
    let time: f64 = kernels.iter().map(|s| f(s, "time_share")).sum();
    let flops: f64 = kernels.iter().map(|s| f(s, "flop_share")).sum();
    assert!((time - 1.0).abs() < 1e-9 && (flops - 1.0).abs() < 1e-9);
    let shares: Vec<f64> = kernels.iter().map(|s| f(s, "time_share")).collect();
    assert!(shares.windows(2).all(|w| w[0] >= w[1]), "most time first");
    // Time-weighted harmonic mean: achieved = peak x efficiency, and never above the
    // fastest kernel.
    let fastest = kernels
        .iter()
        .map(|s| f(s, "flops_per_s"))
        .fold(0.0, f64::max);
    assert!(f(k, "achieved_flops_per_s") <= fastest * (1.0 + 1e-9));
}

#[test]
fn profile_table_says_which_kernels_dominate_and_their_efficiency() {
    tiny_estimate(tiny_profile(), &[])
        .assert()
        .success()
        .stdout(predicate::str::contains("dominant:"))
        .stdout(predicate::str::contains("% of peak"))
        .stdout(predicate::str::contains("share of time"));
}

#[test]
fn profile_at_another_sequence_length_is_allowed_with_a_note() {
    let out = flopcal()
        .arg("estimate")
        .args(TINY_ARCH)
        .args([
            "--seq",
            "128",
            "--tokens",
            "1e9",
            "--format",
            "json",
            "--profile",
        ])
        .arg(tiny_profile())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["assumptions"].to_string().contains("shape-dependent"),
        "{v}"
    );
}

#[test]
fn profile_of_another_schema_version_is_refused() {
    let (_d, p) = edited_profile(|v| v["schema_version"] = 99.into());
    tiny_estimate(&p, &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("schema_version 99"));
}

#[test]
fn profile_of_another_device_than_requested_is_refused() {
    tiny_estimate(tiny_profile(), &["--device", "cuda"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--device cuda was requested"));
    tiny_estimate(tiny_profile(), &["--hardware", "h100"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("measured on the CPU"));
    let (_d, p) = edited_profile(|v| v["host"]["cpu_model"] = "Some Other CPU 9000".into());
    tiny_estimate(&p, &["--hardware", "local"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("another machine"));
}

#[test]
fn profile_lacking_the_models_kernels_names_them_and_offers_to_measure() {
    let (_d, p) = edited_profile(|v| {
        v["benchmarks"]
            .as_array_mut()
            .unwrap()
            .retain(|b| !b["label"].as_str().unwrap().starts_with("vocab"));
    });
    let out = tiny_estimate(&p, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    for want in [
        "matmul/vocab.fwd/",
        "matmul/vocab.wgrad/",
        "flopcal profile",
        "--out",
    ] {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    // Another architecture lacks everything and says why.
    flopcal()
        .args(["estimate", "--model", "bert-large", "--profile"])
        .arg(tiny_profile())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bert-large has hidden 1024"))
        .stderr(predicate::str::contains(
            "flopcal profile --model bert-large",
        ));
}

#[test]
fn profile_without_a_measured_peak_is_refused() {
    let (_d, p) = edited_profile(|v| {
        v.as_object_mut().unwrap().remove("peak");
    });
    tiny_estimate(&p, &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no measured compute peak"));
}

#[test]
fn estimate_needs_hardware_or_a_profile() {
    flopcal()
        .args(["estimate", "--model", "bert-base"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--hardware local"));
}

/// `estimate` JSON for Llama 2 70B on 2048 A100s, with `extra` flags.
fn llama2_70b(extra: &[&str]) -> Value {
    let mut args: Vec<String> = common::LLAMA2_70B_ON_2048_A100
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    json(&args)
}

#[test]
fn hf_config_gives_a_layout_mfu_and_device_hours() {
    let v = llama2_70b(&[]);
    assert_eq!(v["model"], "llama-2-70b-hf");
    let layout = &v["layout"];
    let devices = f(layout, "tp") * f(layout, "pp") * f(layout, "dp");
    assert_eq!(devices, 2048.0, "{layout}");
    let mfu = f(&v, "mfu");
    assert!(mfu > 0.0 && mfu < 1.0, "{mfu}");
    // device-hours follow from the FLOPs, the peak, the MFU and the goodput.
    let goodput = f(&v, "goodput");
    assert!((goodput - 0.9).abs() < 1e-12, "{goodput}");
    let want = f(&v, "train_flops") / (f(&v, "peak_flops_per_device") * mfu) / 3600.0 / goodput;
    let got = f(&v, "device_hours");
    assert!((got / want - 1.0).abs() < 1e-6, "{got} vs {want}");
    // The config file's shape, counted: no biases, two RMSNorms per block and a final one.
    let (l, h, kv, hd, ffn, vocab) = (80.0, 8192.0, 8.0, 128.0, 28672.0, 32000.0);
    let block = 2.0 * h * h + 2.0 * h * kv * hd + 3.0 * h * ffn + 2.0 * h;
    let params = l * block + h + 2.0 * vocab * h;
    assert_eq!(f(&v, "params_total"), params);
}

#[test]
fn kv_heads_and_ffn_kind_flags_change_the_parameter_count() {
    let base = f(&llama2_70b(&[]), "params_total");
    let (l, h, hd, ffn) = (80.0, 8192.0, 128.0, 28672.0);
    // Full multi-head attention: K and V grow from 8 to 64 heads in every layer.
    let mha = f(&llama2_70b(&["--kv-heads", "64"]), "params_total");
    assert_eq!(mha - base, l * 2.0 * h * (64.0 - 8.0) * hd);
    // A plain MLP drops the gate matrix of every layer; swiglu is the file's own.
    let mlp = f(&llama2_70b(&["--ffn-kind", "mlp"]), "params_total");
    assert_eq!(base - mlp, l * h * ffn);
    let swiglu = f(&llama2_70b(&["--ffn-kind", "swiglu"]), "params_total");
    assert_eq!(swiglu, base);
}

#[test]
fn hf_config_with_an_unknown_model_type_is_one_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, r#"{"model_type": "mamba", "hidden_size": 64}"#).unwrap();
    for cmd in ["estimate", "plan"] {
        let out = flopcal()
            .args([cmd, "--tokens", "1e9", "--hardware", "a100", "--hf-config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("unknown model_type `mamba`"), "{cmd}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{cmd}: {err}");
        assert!(out.stdout.is_empty(), "{cmd}");
    }
}

#[test]
fn estimate_counts_and_lists_the_assumptions_it_relied_on() {
    let v = json(&["--model", "bert-large", "--hardware", "h100-sxm"].map(String::from));
    let a = v["flopcal_assumptions"].as_array().unwrap();
    assert_eq!(f(&v, "flopcal_assumption_count") as usize, a.len());
    let figures: Vec<&str> = a.iter().map(|x| x["figure"].as_str().unwrap()).collect();
    // The step model ran: it read the link tiers and its stated link efficiency.
    assert!(
        figures.contains(&"h100-sxm links.nvlink.latency_us"),
        "{figures:?}"
    );
    assert!(figures.contains(&"link efficiency"), "{figures:?}");
    // estimate does not read what only compare reads.
    assert!(
        !figures.iter().any(|f| f.contains("purchase_price")),
        "{figures:?}"
    );
    assert!(a
        .iter()
        .all(|x| x["source"].as_str().unwrap().contains("flopcal assumption")));
    flopcal()
        .args([
            "estimate",
            "--model",
            "bert-large",
            "--hardware",
            "h100-sxm",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "{} flopcal assumption(s) relied on",
            a.len()
        )));
}

#[test]
fn without_the_step_model_its_link_figures_are_not_relied_on() {
    // With --mfu the step model does not run, so neither the link tiers it reads nor
    // its stated link efficiency are relied on.
    let v = json(
        &[
            "--model",
            "bert-large",
            "--hardware",
            "h100-sxm",
            "--mfu",
            "0.4",
        ]
        .map(String::from),
    );
    let figures: Vec<String> = v["flopcal_assumptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["figure"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !figures
            .iter()
            .any(|f| f.contains("links.") || f == "link efficiency"),
        "{figures:?}"
    );
}

#[test]
fn estimate_price_source_picks_the_providers_published_price() {
    let base = ["--model", "bert-large", "--hardware", "h100-sxm"].map(String::from);
    let default = json(&base);
    let lambda = json(&[&base[..], &["--price-source".into(), "lambda".into()]].concat());
    let hw = Catalog::embedded().hardware("h100-sxm").unwrap();
    let row = |p: &str| {
        // The provider's newest on-demand price (older ones are history).
        hw.price(flopcal_model::catalog::PriceKind::OnDemand, Some(p))
            .unwrap()
            .per_chip_hour()
    };
    assert_eq!(f(&default, "price_per_device_hour"), row("aws"));
    assert_eq!(f(&lambda, "price_per_device_hour"), row("lambda"));
    assert_eq!(lambda["price_source"], "lambda");
    assert!(default["price_source"].is_null());
}

#[test]
fn estimate_rejects_an_unknown_or_absent_price_source_in_one_line() {
    common::assert_bad_price_sources_refused("estimate");
}

#[test]
fn estimate_marks_the_constructed_bert_in_json_and_table() {
    let args = ["--model", "bert-1.5b", "--hardware", "a100"].map(String::from);
    let v = json(&args);
    assert_eq!(v["model_constructed"], true);
    assert!(v["flopcal_assumptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["figure"] == "model bert-1.5b"));
    let large = json(&["--model", "bert-large", "--hardware", "a100"].map(String::from));
    assert_eq!(large["model_constructed"], false);
    flopcal()
        .arg("estimate")
        .args(args)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "model bert-1.5b is constructed: no one published it",
        ));
}

#[test]
fn a_pipeline_degree_that_does_not_divide_the_layers_is_priced_by_its_busiest_stage() {
    // 70 layers on 12 stages: the busiest holds 6, as with 72 layers; 60 layers hold 5.
    let breakdown = |layers: &str| {
        let v = common::json_of(
            "estimate",
            &[
                "--model",
                "llama2-7b",
                "--layers",
                layers,
                "--hardware",
                "a100-80gb",
                "--devices",
                "96",
                "--tp",
                "8",
                "--pp",
                "12",
                "--batch",
                "96",
                "--steps",
                "1",
                "--framework",
                "megatron",
            ],
        );
        assert_eq!(v["layout"]["pp"], 12);
        (
            common::f(&v["step_breakdown_s"], "compute"),
            common::f(&v["step_breakdown_s"], "tp_comm"),
        )
    };
    let (uneven, even, fewer) = (breakdown("70"), breakdown("72"), breakdown("60"));
    assert!(
        (uneven.0 / even.0 - 1.0).abs() < 1e-9,
        "{uneven:?} vs {even:?}"
    );
    assert!(
        (uneven.1 / even.1 - 1.0).abs() < 1e-9,
        "{uneven:?} vs {even:?}"
    );
    assert!(fewer.0 < 0.9 * uneven.0, "{fewer:?} vs {uneven:?}");
}

#[test]
fn context_parallelism_splits_each_sequence_across_its_ranks() {
    // Llama 3.1 70B at a 16k context on 64 H100s, tensor 8 x pipeline 4: without
    // context parallelism a rank holds all 16,384 positions of its micro-batch.
    let args = |seq: &'static str, cp: &'static str| {
        [
            "estimate",
            "--model",
            "llama3.1-70b",
            "--hardware",
            "h100",
            "--devices",
            "64",
            "--seq",
            seq,
            "--batch",
            "16",
            "--steps",
            "1",
            "--tp",
            "8",
            "--pp",
            "4",
            "--microbatch",
            "1",
            "--recompute",
            "selective",
            "--cp",
            cp,
            "--framework",
            "megatron",
        ]
    };
    let run = |cp| common::json_of(args("16384", cp)[0], &args("16384", cp)[1..]);
    let (one, two) = (run("1"), run("2"));
    assert_eq!(one["layout"]["dp"], 2, "{one}");
    assert_eq!(two["layout"]["cp"], 2, "{two}");
    assert_eq!(two["layout"]["dp"], 1, "{two}");
    let mem = |v: &Value, k: &str| common::f(&v["memory_per_device_bytes"], k);
    // Half the positions per rank: half the activations (the same micro-batches are
    // in flight on each stage); the context-parallel pair shares the optimizer's
    // shards as the data-parallel pair did.
    let ratio = mem(&two, "activations") / mem(&one, "activations");
    assert!((0.45..0.55).contains(&ratio), "{ratio}");
    assert_eq!(mem(&two, "optimizer"), mem(&one, "optimizer"));
    assert!(common::f(&two["step_breakdown_s"], "cp_comm") >= 0.0);
    // At 32k positions only the split fits.
    flopcal()
        .args(args("32768", "1"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fits no layout"));
    common::json_of(args("32768", "2")[0], &args("32768", "2")[1..]);
    flopcal()
        .args(["estimate", "--model", "llama2-7b", "--tokens", "1e10"])
        .args(["--hardware", "h100", "--devices", "64", "--cp", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--cp must be at least 1"));
}

#[test]
fn an_expert_degree_you_name_is_priced_and_a_wrong_one_is_one_line() {
    let moe = format!(
        "{}/tests/fixtures/hf/qwen3-30b-a3b.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let step = |ep: &str| {
        let v = common::json_of(
            "estimate",
            &[
                "--hf-config",
                &moe,
                "--hardware",
                "h100",
                "--devices",
                "16",
                "--tp",
                "1",
                "--pp",
                "1",
                "--microbatch",
                "1",
                "--batch",
                "1024",
                "--steps",
                "1",
                "--ep",
                ep,
            ],
        );
        assert_eq!(v["layout"]["ep"].as_u64().unwrap().to_string(), ep, "{v}");
        common::f(&v, "step_time_s")
    };
    // Experts spread over both 8-GPU nodes send most routed tokens over InfiniBand;
    // kept within a node they travel over NVLink.
    assert!(step("16") > step("8"));
    for (ep, want) in [
        ("0", "--ep must be at least 1"),
        ("3", "--ep 3 must divide the 128 experts"),
    ] {
        flopcal()
            .args(["estimate", "--hf-config", &moe, "--tokens", "1e10"])
            .args(["--hardware", "h100", "--devices", "16", "--ep", ep])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(want));
    }
    flopcal()
        .args(["estimate", "--model", "llama2-7b", "--tokens", "1e10"])
        .args(["--hardware", "h100", "--devices", "16", "--ep", "2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--ep 2 needs a mixture of experts",
        ));
}

/// Llama 2 7B, one step of 512 sequences on 64 A100s, nothing else fixed.
const ONE_STEP_ON_64_A100: [&str; 10] = [
    "--model",
    "llama2-7b",
    "--hardware",
    "a100",
    "--devices",
    "64",
    "--batch",
    "512",
    "--steps",
    "1",
];

/// `estimate --format json` of [`ONE_STEP_ON_64_A100`] with `extra`.
fn one_step_with(extra: &[&str]) -> Value {
    let args: Vec<&str> = ONE_STEP_ON_64_A100.iter().chain(extra).copied().collect();
    common::json_of("estimate", &args)
}

#[test]
fn an_estimate_that_leaves_the_layout_to_the_search_divides_its_step_by_the_layout_gap() {
    // The stack named, so that the factor is the same with and without the layout.
    let base: Vec<&str> = ONE_STEP_ON_64_A100
        .iter()
        .copied()
        .chain(["--framework", "megatron"])
        .collect();
    let free = common::json_of("estimate", &base);
    let l = &free["layout"];
    let num = |k: &str| l[k].as_u64().unwrap().to_string();
    let text = |k: &str| l[k].as_str().unwrap().to_string();
    let mut given: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    for (flag, v) in [
        ("--tp", num("tp")),
        ("--pp", num("pp")),
        ("--dp", num("dp")),
        ("--microbatch", num("microbatch")),
        ("--virtual-stages", num("virtual_stages")),
        ("--zero", num("zero")),
        ("--recompute", text("recompute")),
        ("--attention", text("attention")),
        (
            "--sequence-parallel",
            l["sequence_parallel"].as_bool().unwrap().to_string(),
        ),
    ] {
        given.push(flag.into());
        given.push(v);
    }
    let fixed = common::json_of("estimate", &given);
    assert_eq!(fixed["layout"], free["layout"]);
    let cal = common::json_of("calibrate", &[] as &[&str]);
    let gap = cal["step"]["layout_gap"].as_f64().unwrap();
    assert!(gap > 0.5 && gap < 1.0, "{gap}");
    let ratio = f(&free, "mfu") / f(&fixed, "mfu");
    assert!((ratio / gap - 1.0).abs() < 1e-6, "{ratio} vs {gap}");
}

#[test]
fn recomputation_is_hardware_work_so_mfu_counts_model_flops_and_hours_follow_the_step() {
    let at = |recompute: &str| one_step_with(&["--tp", "1", "--pp", "1", "--recompute", recompute]);
    let (none, full) = (at("none"), at("full"));
    // Full recomputation adds a forward pass: the hardware does more work per token,
    // the model does not, so MFU falls below HFU by the ratio of the two counts.
    let extra = f(&full, "train_flops") / f(&none, "train_flops");
    assert!(extra > 1.2, "{extra}");
    let (mfu, hfu) = (f(&full, "mfu"), f(&full, "hfu"));
    assert!(
        (hfu / mfu / extra - 1.0).abs() < 0.01,
        "MFU {mfu} HFU {hfu}: counts differ by {extra}"
    );
    // Device-hours scale with the step time, not with the step time times the extra
    // FLOPs.
    let hours = f(&full, "device_hours") / f(&none, "device_hours");
    let steps = f(&full, "step_time_s") / f(&none, "step_time_s");
    assert!((hours / steps - 1.0).abs() < 0.01, "{hours} vs {steps}");
}

#[test]
fn with_neither_layout_nor_stack_the_factor_comes_from_the_stacks_of_production_runs() {
    let base = ONE_STEP_ON_64_A100;
    let free = common::json_of("estimate", &base);
    let mut given: Vec<&str> = base.to_vec();
    given.extend(["--tp", "1"]);
    let fixed = common::json_of("estimate", &given);
    let (fb, xb) = (
        free["mfu_source"].as_str().unwrap(),
        fixed["mfu_source"].as_str().unwrap(),
    );
    // On A100 the production runs are DeepSpeed's (MT-NLG, Pythia); Megatron's A100
    // rows are the papers' tuned benchmarks, which only the fixed-layout mean counts.
    assert!(
        fb.contains("production runs on gpu-2020") && !fb.contains("megatron"),
        "{fb}"
    );
    assert!(xb.contains("megatron") && xb.contains("deepspeed"), "{xb}");
    let factor = |basis: &str| -> f64 {
        basis
            .split("factor ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(factor(fb) < factor(xb), "{fb} / {xb}");
}

#[test]
fn recompute_layers_prices_that_share_of_the_layers_at_the_full_recompute_cost() {
    let at = |extra: &[&str]| {
        let fixed = ["--tp", "1", "--pp", "1", "--zero", "1", "--microbatch", "1"];
        one_step_with(&[&fixed[..], extra].concat())
    };
    let none = at(&["--recompute", "none"]);
    let full = at(&["--recompute", "full"]);
    // 8 of the device's 32 layers: a quarter of full recomputation's extra time.
    let block = at(&["--recompute-layers", "8"]);
    assert_eq!(block["layout"]["recompute"], "full");
    assert_eq!(block["layout"]["recompute_layers"], 8);
    assert!(none["layout"].get("recompute_layers").is_none());
    let s = |v: &Value| f(v, "step_time_s");
    let want = s(&none) + 0.25 * (s(&full) - s(&none));
    assert!(
        (s(&block) / want - 1.0).abs() < 1e-3,
        "{} vs {want}",
        s(&block)
    );
    // The FLOP count has no recomputation, so MFU sits between the two.
    assert!(f(&block, "mfu") < f(&none, "mfu") && f(&block, "mfu") > f(&full, "mfu"));
}

#[test]
fn recompute_layers_that_is_zero_not_full_or_beyond_the_stage_is_refused() {
    for (extra, says) in [
        (vec!["--recompute-layers", "0"], "at least 1"),
        (
            vec!["--recompute", "selective", "--recompute-layers", "2"],
            "goes with --recompute full",
        ),
        (
            vec!["--recompute-layers", "40"],
            "recompute-layers 40 of the 32 layers",
        ),
    ] {
        flopcal()
            .args(common::SMALL_ESTIMATE)
            .args(["--pp", "1"])
            .args(&extra)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(says));
    }
}

#[test]
fn hardware_no_published_run_is_on_gets_a_wider_band_that_says_why() {
    let band = |hw: &str| {
        let v = common::json_of(
            "estimate",
            &[
                "--model",
                "llama2-7b",
                "--tokens",
                "1e11",
                "--hardware",
                hw,
                "--devices",
                "64",
            ],
        );
        let widened = v["assumptions"].to_string().contains("band widened");
        (
            common::f(&v, "mfu_high") / common::f(&v, "mfu_low"),
            widened,
        )
    };
    // A100 has published runs; L40S's class (gpu-2023) has none.
    let (seen, seen_note) = band("a100");
    let (unseen, unseen_note) = band("l40s");
    assert!(!seen_note && unseen_note);
    assert!(unseen > seen * 1.02, "{unseen} vs {seen}");
}

#[test]
fn an_estimate_given_no_layout_prices_a_production_runs_recomputation_and_says_so() {
    let at = |extra: &[&str]| {
        let mut args = vec![
            "--model",
            "llama2-7b",
            "--tokens",
            "1e11",
            "--hardware",
            "a100",
            "--devices",
            "64",
        ];
        args.extend_from_slice(extra);
        common::json_of("estimate", &args)
    };
    // No layout dimension: the production run's full recomputation, stated.
    let free = at(&[]);
    assert_eq!(free["layout"]["recompute"], "full", "{free}");
    let notes = free["assumptions"].to_string();
    assert!(notes.contains("recomputation held to `full`"), "{notes}");
    // The user's layout is priced as given: no recomputation was needed here.
    let given = at(&["--recompute", "none"]);
    assert_eq!(given["layout"]["recompute"], "none", "{given}");
    assert!(!given["assumptions"]
        .to_string()
        .contains("recomputation held"));
    assert!(common::f(&given, "step_time_s") < common::f(&free, "step_time_s"));
    // TensorFlow 1.x kept its activations (BERT's README), so its production runs do.
    let tf = at(&["--framework", "tensorflow"]);
    assert_eq!(tf["layout"]["recompute"], "none", "{tf}");
    // With the stack unknown, the run is taken to use the one stack seen in
    // production runs on A100 (DeepSpeed: Pythia and MT-NLG), its loss included.
    assert!(notes.contains("taken to be deepspeed"), "{notes}");
    assert!(
        notes.contains("unfused vocabulary-parallel cross entropy"),
        "{notes}"
    );
    assert!(!given["assumptions"].to_string().contains("taken to be"));
}
