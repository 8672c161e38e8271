//! `flopcal plan`: the search's best layouts, their fields, refusals with the numbers,
//! and the Table 1 check that the best plan is at least as fast as the published one.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use flopcal_model::published;
use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{f, flopcal};

fn plan(args: &[&str]) -> Value {
    common::json_of("plan", args)
}

/// Narayanan et al.'s 18.4B model on 256 A100s with its batch and a token budget.
const MEGATRON_18B_ON_256: [&str; 10] = [
    "--model",
    "megatron-18.4b",
    "--hardware",
    "a100-80gb",
    "--devices",
    "256",
    "--batch",
    "1024",
    "--tokens",
    "3e11",
];

#[test]
fn csv_output_is_one_row_per_ranked_layout_with_the_json_figures() {
    let mut args = MEGATRON_18B_ON_256.to_vec();
    args.extend(["--top", "4"]);
    let v = plan(&args);
    let (header, rows) = common::csv_of("plan", &args);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let plans = v["plans"].as_array().unwrap();
    assert_eq!(rows.len(), plans.len());
    for (row, p) in rows.iter().zip(plans) {
        let num = |name: &str| row[col(name)].parse::<f64>().unwrap();
        assert_eq!(num("step_time_s"), f(p, "step_time_s"));
        assert_eq!(num("mfu"), f(p, "mfu"));
        assert_eq!(num("tp"), f(&p["layout"], "tp"));
        assert_eq!(num("cost_usd"), f(p, "cost_usd"));
        // chip_hours sits beside device_hours (the same chip-hours), in both formats.
        assert_eq!(num("chip_hours"), f(p, "device_hours"));
        assert_eq!(f(p, "chip_hours"), f(p, "device_hours"));
    }
}

#[test]
fn plans_are_ranked_by_step_time_with_every_field() {
    let mut args = MEGATRON_18B_ON_256.to_vec();
    args.extend(["--top", "5"]);
    let v = plan(&args);
    let plans = v["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 5);
    let times: Vec<f64> = plans.iter().map(|p| f(p, "step_time_s")).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for p in plans {
        let l = &p["layout"];
        let n = f(l, "tp") * f(l, "pp") * f(l, "dp");
        assert_eq!(n, 256.0);
        for k in ["microbatch", "virtual_stages", "zero"] {
            assert!(l[k].is_number(), "{k}");
        }
        assert!(l["sequence_parallel"].is_boolean() && l["recompute"].is_string());
        let b = &p["step_breakdown_s"];
        let sum: f64 = [
            "compute",
            "tp_comm",
            "pp_comm",
            "dp_comm",
            "ep_comm",
            "bubble",
            "optimizer",
        ]
        .iter()
        .map(|k| f(b, k))
        .sum();
        assert!((sum - f(p, "step_time_s")).abs() < 1e-9 * sum);
        let m = &p["memory_per_device_bytes"];
        assert!(f(m, "total") <= 0.95 * 80.0 * 1024f64.powi(3));
        assert!(f(p, "mfu") > 0.0 && f(p, "mfu") < 1.0 && f(p, "hfu") >= f(p, "mfu"));
        assert!(f(p, "tokens_per_s") > 0.0 && f(p, "training_days") > 0.0);
    }
    assert!(v["rejected"].is_array());
}

#[test]
fn best_plan_for_each_table_1_model_is_at_least_as_fast_as_the_published_layout() {
    // Narayanan et al. 2021, Table 1, each at its GPU count and batch: the search may
    // pick any layout that fits, so its best must not be slower than the published one
    // under the same model (and the published layout must itself be feasible).
    for r in published::embedded()
        .iter()
        .filter(|r| r.id.starts_with("narayanan-"))
    {
        let arch = r.arch.as_ref().unwrap();
        let n = |k: &str| arch[k].as_integer().unwrap().to_string();
        let dev = r.devices.to_string();
        let batch = r.batch.to_string();
        let base = [
            "--layers",
            &n("layers"),
            "--hidden",
            &n("hidden"),
            "--heads",
            &n("heads"),
            "--vocab",
            &n("vocab"),
            "--seq",
            "2048",
            "--causal",
            "--hardware",
            "a100-80gb",
            "--devices",
            &dev,
            "--batch",
            &batch,
            "--tokens",
            "1e11",
        ];
        let best = plan(&[&base[..], &["--top", "1"]].concat());
        let best_t = f(&best["plans"][0], "step_time_s");
        let l = r.layout;
        let tp = l.tp.unwrap().to_string();
        let pp = l.pp.unwrap().to_string();
        let mb = l.microbatch.unwrap().to_string();
        let v = l.virtual_stages.unwrap().to_string();
        let published = plan(
            &[
                &base[..],
                &[
                    "--tp",
                    &tp,
                    "--pp",
                    &pp,
                    "--microbatch",
                    &mb,
                    "--virtual-stages",
                    &v,
                    "--recompute",
                    "full",
                    "--attention",
                    "materialized",
                    "--zero",
                    "0",
                    "--sequence-parallel=false",
                    "--top",
                    "1",
                ],
            ]
            .concat(),
        );
        let pub_t = f(&published["plans"][0], "step_time_s");
        assert!(
            best_t <= pub_t * (1.0 + 1e-9),
            "{}: best {best_t} vs published {pub_t}",
            r.id
        );
    }
}

#[test]
fn a_model_that_fits_no_layout_exits_2_with_the_memory_it_needs() {
    flopcal()
        .args([
            "plan",
            "--model",
            "llama3-405b",
            "--hardware",
            "h100",
            "--devices",
            "8",
            "--batch",
            "8",
            "--tokens",
            "1e9",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("smallest needs").and(predicate::str::contains("GiB")));
}

#[test]
fn impossible_fixed_layouts_exit_2_with_the_arithmetic() {
    let base = [
        "plan",
        "--model",
        "megatron-18.4b",
        "--hardware",
        "a100-80gb",
        "--tokens",
        "1e10",
    ];
    flopcal()
        .args(base)
        .args(["--devices", "128", "--tp", "8", "--pp", "4", "--dp", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("tp 8 x pp 4 x dp 3 = 96"));
    flopcal()
        .args(base)
        .args(["--devices", "96", "--pp", "48"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("pp 48 exceeds the 40 layers"));
    // A degree that does not divide the layers is a real layout (uneven stages).
    flopcal()
        .args(base)
        .args(["--devices", "96", "--pp", "3"])
        .assert()
        .success();
    flopcal()
        .args(base)
        .args([
            "--devices",
            "64",
            "--dp",
            "8",
            "--microbatch",
            "3",
            "--batch",
            "512",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("dp 8 x microbatch 3 = 24"));
}

#[test]
fn a_malformed_network_tier_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("c.toml");
    std::fs::write(
        &cat,
        r#"[[hardware]]
name = "bad-gpu"
class = "gpu-2020"
chips_per_device = 1
cores_per_chip = 1
default_dtype = "bf16"
peak_tflops = [ { dtype = "bf16", value = 312.0, source = "s", date = "2025-01" } ]
memory_gib = { value = 80.0, source = "s", date = "2025-01" }
memory_bw_gbs = { value = 2000.0, source = "s", date = "2025-01" }
links = [ { name = "nvlink", group_size = 8, bw_gbs = { value = 0.0, source = "s", date = "2025-01" }, latency_us = { value = 1.0, source = "s", date = "2025-01" } } ]
"#,
    )
    .unwrap();
    flopcal()
        .args([
            "plan",
            "--model",
            "megatron-1.7b",
            "--hardware",
            "bad-gpu",
            "--devices",
            "8",
            "--tokens",
            "1e9",
        ])
        .arg("--catalog")
        .arg(&cat)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bw_gbs"));
}

#[test]
fn hf_config_plans_have_a_layout_mfu_and_device_hours() {
    let mut args = common::LLAMA2_70B_ON_2048_A100.to_vec();
    args.extend(["--top", "3"]);
    let v = plan(&args);
    assert_eq!(v["model"], "llama-2-70b-hf");
    let plans = v["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 3);
    for p in plans {
        let l = &p["layout"];
        assert_eq!(f(l, "tp") * f(l, "pp") * f(l, "dp"), 2048.0, "{l}");
        assert!(f(p, "mfu") > 0.0 && f(p, "mfu") < 1.0, "{p}");
        // 2048 devices for the whole wall-clock time.
        let hours = f(p, "device_hours");
        assert!(
            (hours / (2048.0 * f(p, "wall_hours")) - 1.0).abs() < 1e-9,
            "{p}"
        );
    }
}

const COMM_FIXTURE: &str = "tests/fixtures/comm/two-ranks-intra-node.json";

fn plan_18b(extra: &[&str]) -> Value {
    let mut a = MEGATRON_18B_ON_256.to_vec();
    a.extend(["--top", "20"]);
    a.extend_from_slice(extra);
    plan(&a)
}

#[test]
fn identical_predictions_are_one_row_naming_the_equivalent_layouts() {
    let v = plan_18b(&[]);
    let plans = v["plans"].as_array().unwrap();
    for (i, p) in plans.iter().enumerate() {
        for q in &plans[i + 1..] {
            let same = (f(p, "step_time_s") - f(q, "step_time_s")).abs()
                <= 1e-9 * f(p, "step_time_s")
                && (f(&p["memory_per_device_bytes"], "total")
                    - f(&q["memory_per_device_bytes"], "total"))
                .abs()
                    <= 1e-9 * f(&p["memory_per_device_bytes"], "total");
            assert!(!same, "two rows with one prediction: {p} and {q}");
        }
    }
    // With a flash kernel, selective recomputation recomputes nothing: it is named
    // beside the no-recompute row instead of taking a row of its own.
    let folded = plans.iter().any(|p| {
        p["layout"]["recompute"] == "none"
            && p["equivalent_layouts"]
                .as_array()
                .is_some_and(|e| e.iter().any(|l| l["recompute"] == "selective"))
    });
    assert!(folded, "{}", v["plans"]);
}

#[test]
fn a_comm_file_replaces_the_scale_up_tier_and_says_so() {
    let catalog = plan_18b(&[]);
    let measured = plan_18b(&["--network", COMM_FIXTURE]);
    let notes = measured["assumptions"].to_string();
    assert!(
        notes.contains("link tier `nvlink` from") && notes.contains("infiniband from the catalog"),
        "{notes}"
    );
    assert!(!catalog["assumptions"]
        .to_string()
        .contains("link tier `nvlink`"));
    // The fixture's 10 GB/s is far below NVLink's: a tensor group of 2 pays for it.
    let fixed = ["--tp", "2", "--pp", "1", "--microbatch", "4"];
    let tp_comm = |v: &Value| f(&v["plans"][0]["step_breakdown_s"], "tp_comm");
    let a = tp_comm(&plan_18b(&fixed));
    let mut m = fixed.to_vec();
    m.extend_from_slice(&["--network", COMM_FIXTURE]);
    let b = tp_comm(&plan_18b(&m));
    assert!(b > 2.0 * a, "tp 2 comm: catalog {a} s, measured {b} s");
}

#[test]
fn a_bad_comm_file_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::fs::read_to_string(COMM_FIXTURE).unwrap();
    let zero = fixture.replacen("\"beta_s_per_byte\": 1e-10", "\"beta_s_per_byte\": 0", 1);
    assert_ne!(zero, fixture);
    let v: Value = serde_json::from_str(&fixture).unwrap();
    let mut no_sendrecv = v.clone();
    no_sendrecv["fits"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["collective"] != "send_recv");
    let cases = [
        ("missing.json", None, "missing.json"),
        ("bad.json", Some("{ not json".to_string()), "not valid JSON"),
        ("zero.json", Some(zero), "beta_s_per_byte"),
        (
            "partial.json",
            Some(no_sendrecv.to_string()),
            "no fit for `send_recv`",
        ),
    ];
    for (name, body, want) in cases {
        let path = dir.path().join(name);
        if let Some(b) = body {
            std::fs::write(&path, b).unwrap();
        }
        let out = flopcal()
            .args([
                "plan",
                "--model",
                "megatron-18.4b",
                "--hardware",
                "a100-80gb",
                "--devices",
                "256",
                "--batch",
                "1024",
                "--tokens",
                "3e11",
                "--network",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: {err}");
    }
}

#[test]
fn a_batch_without_tokens_plans_one_step_and_leaves_hours_and_cost_out() {
    let base = [
        "--model",
        "megatron-18.4b",
        "--hardware",
        "a100-80gb",
        "--devices",
        "256",
        "--batch",
        "1024",
        "--top",
        "3",
    ];
    let per_step = plan(&base);
    assert_eq!(per_step["per_step"], Value::Bool(true));
    let mut with_tokens = base.to_vec();
    with_tokens.extend(["--tokens", "3e11"]);
    let full = plan(&with_tokens);
    assert_eq!(full["per_step"], Value::Bool(false));
    let (a, b) = (
        per_step["plans"].as_array().unwrap(),
        full["plans"].as_array().unwrap(),
    );
    assert_eq!(a.len(), 3);
    for (p, q) in a.iter().zip(b) {
        // The same layouts at the same step time: only the run's totals differ.
        assert_eq!(p["layout"], q["layout"]);
        assert!((f(p, "step_time_s") / f(q, "step_time_s") - 1.0).abs() < 1e-12);
        for k in ["wall_hours", "device_hours", "training_days", "cost_usd"] {
            assert!(p[k].is_null(), "{k}: {}", p[k]);
            assert!(q[k].as_f64().unwrap() > 0.0, "{k}: {}", q[k]);
        }
    }
    flopcal()
        .arg("plan")
        .args(base)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "training time and cost are left out (add --tokens D for them)",
        ));
}
