//! `flopcal compare`: on-prem vs cloud for one training plan.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use flopcal_model::catalog::Catalog;
use flopcal_model::onprem::HOURS_PER_YEAR;
use predicates::prelude::*;
use serde_json::Value;

mod common;
use common::{f, flopcal};

/// The README's first `compare` example.
const BERT_LARGE_ON_8_A100: [&str; 6] = [
    "--model",
    "bert-large",
    "--hardware",
    "a100",
    "--devices",
    "8",
];

fn json(args: &[&str]) -> Value {
    common::json_of("compare", args)
}

#[test]
fn catalog_defaults_give_the_closed_form_break_even() {
    let v = json(&BERT_LARGE_ON_8_A100);
    let hw = Catalog::embedded().hardware("a100").unwrap();
    let purchase = hw.purchase_price.as_ref().unwrap().value;
    let life = hw.lifetime_years.as_ref().unwrap().value;
    let ops = hw.ops_per_year.as_ref().unwrap().value;
    let watts = hw.tdp_w.as_ref().unwrap().value;
    let od = hw.price_on_demand.as_ref().unwrap().value;
    let o = &v["onprem"];
    assert_eq!(f(o, "purchase_usd"), purchase);
    assert_eq!(f(o, "watts"), watts);
    let e = watts * f(o, "pue") / 1000.0 * f(o, "kwh_price");
    let want = (purchase / life + ops) / (HOURS_PER_YEAR * (od - e));
    let c = &v["comparison"];
    let on_demand = c["cloud"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "on demand")
        .unwrap();
    assert!((f(on_demand, "break_even_utilisation") - want).abs() < 1e-12);
    // Same hardware: the same chip-hours on both sides.
    assert_eq!(f(c, "onprem_chip_hours"), f(c, "cloud_chip_hours"));
    // Per run and per year are consistent.
    let per_run = f(c, "onprem_chip_hours") * f(c, "onprem_cost_per_chip_hour");
    assert!((f(c, "onprem_cost_per_run") - per_run).abs() < 1e-6 * per_run);
    assert!(
        (f(on_demand, "cost_per_year") - f(on_demand, "cost_per_run") * f(c, "runs_per_year"))
            .abs()
            < 1e-6 * f(on_demand, "cost_per_year")
    );
    assert!(c["verdict"].as_str().unwrap().len() > 10);
    // Figures that no source states are flagged.
    let assumed = v["assumed"].to_string();
    assert!(
        assumed.contains("utilisation") && assumed.contains("electricity"),
        "{assumed}"
    );
}

#[test]
fn utilisation_moves_the_verdict() {
    let busy = json(&[
        "--model",
        "bert-large",
        "--hardware",
        "a100",
        "--utilisation",
        "0.9",
    ]);
    let idle = json(&[
        "--model",
        "bert-large",
        "--hardware",
        "a100",
        "--utilisation",
        "0.05",
    ]);
    assert_eq!(busy["comparison"]["onprem_wins"], true, "{busy}");
    assert_eq!(idle["comparison"]["onprem_wins"], false, "{idle}");
    assert!(idle["comparison"]["verdict"]
        .as_str()
        .unwrap()
        .starts_with("cloud"));
}

#[test]
fn overrides_replace_catalog_figures() {
    let v = json(&[
        "--model",
        "bert-base",
        "--hardware",
        "a100",
        "--purchase-price",
        "10000",
        "--lifetime",
        "5",
        "--ops-per-year",
        "0",
        "--chip-watts",
        "800",
        "--kwh-price",
        "0.2",
        "--pue",
        "1.1",
        "--committed-price",
        "1.5",
    ]);
    let o = &v["onprem"];
    assert_eq!(f(o, "purchase_usd"), 10000.0);
    assert_eq!(f(o, "lifetime_years"), 5.0);
    assert_eq!(f(o, "ops_usd_per_year"), 0.0);
    assert_eq!(f(o, "watts"), 800.0);
    let committed = v["comparison"]["cloud"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "committed use")
        .unwrap()
        .clone();
    assert_eq!(f(&committed, "price_per_chip_hour"), 1.5);
    assert_eq!(committed["source"], "--committed-price");
}

#[test]
fn another_cloud_hardware_is_priced_at_its_own_chip_hours() {
    let v = json(&[
        "--model",
        "bert-large",
        "--hardware",
        "v100",
        "--cloud",
        "tpu-v3",
    ]);
    assert_eq!(v["cloud_hardware"], "tpu-v3");
    let c = &v["comparison"];
    assert!(f(c, "cloud_chip_hours") != f(c, "onprem_chip_hours"));
    let kinds: Vec<&str> = c["cloud"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["on demand", "preemptible", "committed use"]);
}

#[test]
fn table_prints_break_even_and_verdict() {
    flopcal()
        .args(["compare", "--model", "bert-large", "--hardware", "a100"])
        .assert()
        .success()
        .stdout(predicate::str::contains("breaks even at"))
        .stdout(predicate::str::contains("verdict:"))
        .stdout(predicate::str::contains("flopcal assumption"));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    for (args, needle) in [
        (
            vec!["--model", "bert-large", "--hardware", "tpu-v3"],
            "--purchase-price",
        ),
        (
            vec![
                "--model",
                "bert-large",
                "--hardware",
                "a100",
                "--utilisation",
                "1.5",
            ],
            "utilisation",
        ),
        (
            vec![
                "--model",
                "bert-large",
                "--hardware",
                "a100",
                "--utilisation",
                "0",
            ],
            "utilisation",
        ),
        (
            vec![
                "--model",
                "bert-large",
                "--hardware",
                "a100",
                "--lifetime",
                "-1",
            ],
            "lifetime",
        ),
        (
            vec![
                "--model",
                "bert-large",
                "--hardware",
                "a100",
                "--cloud",
                "tpu-v9",
            ],
            "tpu-v9",
        ),
        (vec!["--model", "bert-large"], "--hardware"),
    ] {
        let out = flopcal().arg("compare").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

fn cloud_price(v: &Value, kind: &str) -> f64 {
    let row = v["comparison"]["cloud"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == kind)
        .unwrap()
        .clone();
    f(&row, "price_per_chip_hour")
}

#[test]
fn price_source_picks_the_providers_published_price() {
    let base = ["--model", "bert-large", "--hardware", "h100-sxm"];
    let default = json(&base);
    let lambda = json(&[&base[..], &["--price-source", "lambda"]].concat());
    let hw = Catalog::embedded().hardware("h100-sxm").unwrap();
    let row = |p: &str| {
        // The provider's newest on-demand price (older ones are history).
        hw.price(flopcal_model::catalog::PriceKind::OnDemand, Some(p))
            .unwrap()
            .per_chip_hour()
    };
    assert_eq!(cloud_price(&default, "on demand"), row("aws"));
    assert_eq!(cloud_price(&lambda, "on demand"), row("lambda"));
    assert_eq!(lambda["price_source"], "lambda");
    // The committed price follows the chosen on-demand price by the stated rule.
    let d = Catalog::embedded().rules.committed_discount_1y.value;
    assert!((cloud_price(&lambda, "committed use") - row("lambda") * (1.0 - d)).abs() < 1e-12);
}

#[test]
fn compare_counts_and_lists_the_assumptions_it_relied_on() {
    let v = json(&["--model", "bert-large", "--hardware", "h100-sxm"]);
    let a = v["assumptions"].as_array().unwrap();
    let figures: Vec<&str> = a.iter().map(|x| x["figure"].as_str().unwrap()).collect();
    assert!(figures.contains(&"purchase price"), "{figures:?}");
    assert!(
        figures.contains(&"h100-sxm links.nvlink.latency_us"),
        "{figures:?}"
    );
    assert!(a
        .iter()
        .all(|x| x["source"].as_str().unwrap().contains("flopcal assumption")));
    flopcal()
        .args(["compare", "--model", "bert-large", "--hardware", "h100-sxm"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "{} flopcal assumption(s)",
            a.len()
        )));
}

#[test]
fn an_unknown_or_absent_price_source_is_one_line_and_exit_2() {
    common::assert_bad_price_sources_refused("compare");
}

#[test]
fn a_constructed_model_is_marked_in_json_and_table() {
    let args = ["--model", "bert-1.5b", "--hardware", "a100"];
    assert_eq!(json(&args)["model_constructed"], true);
    assert_eq!(
        json(&["--model", "bert-large", "--hardware", "a100"])["model_constructed"],
        false
    );
    flopcal()
        .arg("compare")
        .args(args)
        .assert()
        .success()
        .stdout(predicate::str::contains("a model flopcal constructed"));
}

#[test]
fn ops_overhead_without_a_catalog_figure_follows_the_catalog_rule() {
    let v = json(&[
        "--model",
        "bert-large",
        "--hardware",
        "h100-pcie",
        "--purchase-price",
        "30000",
    ]);
    let rule = &Catalog::embedded().rules.ops_fraction_per_year;
    assert_eq!(f(&v["onprem"], "ops_usd_per_year"), 30000.0 * rule.value);
    let ops = v["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "operations overhead")
        .unwrap()
        .clone();
    assert!(ops["source"]
        .as_str()
        .unwrap()
        .contains("derived: purchase"));
}

#[test]
fn csv_output_is_the_tables_rows_with_the_json_figures() {
    let args = BERT_LARGE_ON_8_A100;
    let v = common::json_of("compare", &args);
    let (_, rows) = common::csv_of("compare", &args);
    let cloud = v["comparison"]["cloud"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + cloud.len());
    let num = |row: &csv::StringRecord, i: usize| row[i].parse::<f64>().unwrap();
    assert_eq!(
        num(&rows[0], 2),
        v["comparison"]["onprem_cost_per_run"].as_f64().unwrap()
    );
    for (row, o) in rows[1..].iter().zip(cloud) {
        assert_eq!(num(row, 1), o["price_per_chip_hour"].as_f64().unwrap());
        assert_eq!(num(row, 2), o["cost_per_run"].as_f64().unwrap());
    }
}
