//! Dated prices: the age warning, `--prices FILE`, `compare --cloud-all` and
//! `--server-price`. Every run fixes the run date with `FLOPCAL_TODAY`.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::Path;

use serde_json::Value;

mod common;
use common::{f, flopcal};

const TODAY: &str = "2026-12-02";

/// `flopcal ARGS --format json` on `today`: (JSON, stderr).
fn run_json(today: &str, args: &[&str]) -> (Value, String) {
    let out = flopcal()
        .env("FLOPCAL_TODAY", today)
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "flopcal {args:?} failed: {err}");
    (serde_json::from_slice(&out.stdout).unwrap(), err)
}

/// `flopcal ARGS` on [`TODAY`], which must fail with exit 2: its stderr.
fn refused(args: &[&str]) -> String {
    let out = flopcal()
        .env("FLOPCAL_TODAY", TODAY)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

const ESTIMATE: &[&str] = &[
    "estimate",
    "--model",
    "bert-large",
    "--hardware",
    "h100",
    "--devices",
    "8",
];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn a_price_more_than_12_months_old_warns_on_stderr_and_in_the_assumptions() {
    // Azure's H100 price is dated 2024-01: 35 months before 2026-12-02.
    let args = with(ESTIMATE, &["--price-source", "azure"]);
    let (v, err) = run_json(TODAY, &args);
    let want = "price from 2024-01, 35 months old; pass --price or --prices FILE";
    assert!(err.contains(want), "stderr: {err}");
    assert!(
        v["assumptions"].to_string().contains(want),
        "{}",
        v["assumptions"]
    );
    let age = &v["price_ages"][0];
    assert_eq!(
        (age["date"].as_str(), age["stale"].as_bool()),
        (Some("2024-01"), Some(true))
    );
    // Twelve months old is not stale yet: 2024-01 on 2025-01-15.
    let (v, err) = run_json("2025-01-15", &args);
    assert!(!err.contains("months old"), "stderr: {err}");
    assert_eq!(v["price_ages"][0]["months_old"].as_i64(), Some(12));
    assert!(v["assumptions"]
        .to_string()
        .contains("price dated 2024-01 (12 months old)"));
    // A price given on the command line has no age.
    let (v, err) = run_json(TODAY, &with(&args, &["--price", "2.5"]));
    assert!(!err.contains("months old"), "stderr: {err}");
    assert_eq!(v["price_ages"].as_array().unwrap().len(), 0);
}

#[test]
fn plan_and_compare_print_the_date_of_the_prices_they_use() {
    let (v, err) = run_json(
        TODAY,
        &[
            "plan",
            "--model",
            "bert-large",
            "--hardware",
            "h100",
            "--devices",
            "8",
            "--price-source",
            "azure",
            "--top",
            "1",
        ],
    );
    assert!(err.contains("price from 2024-01, 35 months old"), "{err}");
    assert!(v["assumptions"]
        .to_string()
        .contains("h100-sxm on-demand (azure) price dated 2024-01"));
    let compare = with(&["compare"], &ESTIMATE[1..]);
    let (v, err) = run_json(TODAY, &compare);
    // The default (aws) on-demand price is from 2023-07 (AWS's later rates were found
    // only in secondary copies, which the catalog does not carry); its committed
    // price, an EC2 Capacity Block rate, from 2024-12. Both are stale on 2026-12-02.
    let ages = v["price_ages"].to_string();
    assert!(ages.contains("\"date\":\"2023-07\""), "{ages}");
    assert!(ages.contains("\"date\":\"2024-12\""), "{ages}");
    assert!(err.contains("price from 2023-07, 41 months old"), "{err}");
    assert!(err.contains("price from 2024-12, 24 months old"), "{err}");
    let warnings = v["price_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w
        .as_str()
        .unwrap()
        .contains("price from 2024-12, 24 months old")));
    // On 2025-06-15 the committed price (6 months old) is fresh and does not warn;
    // the on-demand one (23 months) still does.
    let (v, err) = run_json("2025-06-15", &compare);
    assert!(err.contains("price from 2023-07, 23 months old"), "{err}");
    assert!(
        !err.contains("2024-12"),
        "a fresh price does not warn: {err}"
    );
    let warnings = v["price_warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn a_prices_file_overrides_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(
        dir.path(),
        "ours.csv",
        "provider,hardware,unit,chips_per_instance,on_demand,committed,currency,date,source\n\
         acme,h100,instance,8,16,12,USD,2026-11-20,\"our negotiated quote, 2026-11\"\n",
    );
    let (e, err) = run_json(TODAY, &with(ESTIMATE, &["--prices", &csv]));
    assert!(!err.contains("months old"), "{err}");
    assert_eq!(f(&e, "price_per_device_hour"), 2.0);
    let (c, _) = run_json(TODAY, &with(&["compare", "--prices", &csv], &ESTIMATE[1..]));
    let cloud = c["comparison"]["cloud"].as_array().unwrap();
    let od = cloud.iter().find(|x| x["kind"] == "on demand").unwrap();
    assert_eq!(f(od, "price_per_chip_hour"), 2.0);
    assert!(
        od["source"].as_str().unwrap().contains("ours.csv row 2"),
        "{od}"
    );
    let committed = cloud.iter().find(|x| x["kind"] == "committed use").unwrap();
    assert_eq!(f(committed, "price_per_chip_hour"), 1.5);
    // The sheet's provider can be chosen by name, as a catalog one can.
    let (c, _) = run_json(
        TODAY,
        &with(
            &["compare", "--prices", &csv, "--price-source", "acme"],
            &ESTIMATE[1..],
        ),
    );
    assert_eq!(c["price_source"], "acme");
}

#[test]
fn on_prem_figures_come_from_the_sheet_or_the_server_price() {
    let dir = tempfile::tempdir().unwrap();
    let toml = write(
        dir.path(),
        "ours.toml",
        r#"
[[prices]]
provider = "on-prem"
hardware = "h100-sxm"
purchase_per_server = 300000
chips_per_server = 8
lifetime_years = 5
kwh_price = 0.07
currency = "USD"
date = "2026-10"
source = "vendor quote for an HGX H100 server"
"#,
    );
    let (c, _) = run_json(
        TODAY,
        &with(&["compare", "--prices", &toml], &ESTIMATE[1..]),
    );
    let o = &c["onprem"];
    assert_eq!(f(o, "purchase_usd"), 37_500.0);
    assert_eq!(f(o, "lifetime_years"), 5.0);
    assert_eq!(f(o, "kwh_price"), 0.07);
    assert!(c["inputs"]
        .to_string()
        .contains("vendor quote for an HGX H100 server"));
    let (c, _) = run_json(
        TODAY,
        &with(&["compare", "--server-price", "240000"], &ESTIMATE[1..]),
    );
    assert_eq!(f(&c["onprem"], "purchase_usd"), 30_000.0);
    // The ops overhead follows the server's share by the catalog's rule.
    assert_eq!(f(&c["onprem"], "ops_usd_per_year"), 3_000.0);
    let (c, _) = run_json(
        TODAY,
        &with(
            &[
                "compare",
                "--server-price",
                "240000",
                "--chips-per-server",
                "4",
            ],
            &ESTIMATE[1..],
        ),
    );
    assert_eq!(f(&c["onprem"], "purchase_usd"), 60_000.0);
}

#[test]
fn cloud_all_prices_every_provider_cheapest_first() {
    let (c, _) = run_json(TODAY, &with(&["compare", "--cloud-all"], &ESTIMATE[1..]));
    let rows = c["comparison"]["cloud"].as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    // The providers with a primary-source H100 price (Nebius and RunPod were found
    // only in secondary copies, which the catalog does not carry).
    let providers = ["aws", "azure", "coreweave", "lambda"];
    assert_eq!(rows.len(), providers.len(), "{kinds:?}");
    for p in providers {
        assert_eq!(
            kinds
                .iter()
                .filter(|k| k.starts_with(&format!("{p} ")))
                .count(),
            1,
            "one row for {p}: {kinds:?}"
        );
    }
    let prices: Vec<f64> = rows.iter().map(|r| f(r, "price_per_chip_hour")).collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
    assert!(rows.iter().all(|r| r["break_even_utilisation"].is_number()));
    assert_eq!(c["comparison"]["cheapest_cloud"], rows[0]["kind"]);
    assert_eq!(c["price_ages"].as_array().unwrap().len(), rows.len());
}

#[test]
fn bad_price_sheets_name_the_row_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let head = "provider,hardware,unit,on_demand,currency,date,source\n";
    for (row, want) in [
        (
            "acme,h100,chip,2,USD,2026-11,\n",
            "row 2: field `source`: missing",
        ),
        (
            "acme,h100,chip,-2,USD,2026-11,q\n",
            "row 2: field `on_demand`: must be a positive number",
        ),
        (
            "acme,h100,chip,0,USD,2026-11,q\n",
            "row 2: field `on_demand`: must be a positive number",
        ),
        (
            "acme,h1000,chip,2,USD,2026-11,q\n",
            "row 2: field `hardware`: unknown hardware `h1000`",
        ),
        (
            "acme,h100,chip,2,EUR,2026-11,q\n",
            "row 2: field `currency`: unknown currency `EUR`",
        ),
        (
            "acme,h100,chip,2,USD,2026-12-03,q\n",
            "row 2: field `date`: 2026-12-03 is after the run date 2026-12-02",
        ),
        ("acme,h100,box,2,USD,2026-11,q\n", "row 2: field `unit`"),
    ] {
        let p = write(dir.path(), "bad.csv", &format!("{head}{row}"));
        let err = refused(&with(ESTIMATE, &["--prices", &p]));
        assert!(err.contains(want), "{row}: {err}");
    }
    let p = write(
        dir.path(),
        "dup.csv",
        &format!("{head}acme,h100,chip,2,USD,2026-11,q\nacme,h100-sxm,chip,3,USD,2026-11,r\n"),
    );
    let err = refused(&with(
        &["compare"],
        &with(&ESTIMATE[1..], &["--prices", &p]),
    ));
    assert!(
        err.contains("row 2 and row 3 both price acme h100-sxm on 2026-11"),
        "{err}"
    );
    let err = refused(&with(ESTIMATE, &["--prices", "/nonexistent/prices.csv"]));
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn a_bad_run_date_is_refused() {
    let out = flopcal()
        .env("FLOPCAL_TODAY", "yesterday")
        .args(ESTIMATE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FLOPCAL_TODAY must be a date"));
}
