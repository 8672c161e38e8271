//! `flopcal report`: a self-contained HTML file, checked in a real headless browser
//! when one is installed (Debian's chromium; `.ci/run` installs it).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};

fn host(cpu: &str) -> Value {
    json!({"cpu_model": cpu, "arch": "x86_64", "physical_cores": 2, "logical_cpus": 2,
           "isa_features": ["avx2", "fma"], "memory_bytes": 1u64 << 34, "os": "Linux", "kernel": "6.0",
           "device": "cpu", "device_name": cpu, "threads": 2, "candle_version": "0.11.1",
           "build_features": []})
}

fn bench(id: &str, n: u64, median_s: f64, bytes: u64) -> Value {
    let dtype = id.rsplit('/').next().unwrap();
    let flops = 2 * n * n * n;
    let samples: Vec<f64> = (0..20)
        .map(|i| median_s * (1.0 + 0.01 * ((i * 7 % 11) as f64 - 5.0) / 5.0))
        .collect();
    json!({"id": id, "kernel": "matmul", "label": "square", "group": "square", "dtype": dtype,
           "shape": {"m": n, "n": n, "k": n}, "flops_per_iter": flops, "model_flops_per_iter": flops,
           "bytes_per_iter": bytes, "iters_per_sample": 1, "samples_s": samples, "summary": null,
           "verified": true, "verification": null, "status": "ok"})
}

fn file(created_at: &str, cpu: &str, scale: f64, extra: Option<(&str, Value)>) -> Value {
    let mut v = json!({"schema_version": 1, "run_id": format!("{created_at}-abc"), "created_at": created_at,
    "tool": {"name": "flopcal", "version": "0.1.0", "git_commit": "test"}, "partial": false,
    "host": host(cpu),
    "harness": {"warmup_s": 0.1, "min_samples": 10, "max_samples": 10000, "target_ci": 0.03,
                "budget_s": 0.6, "min_sample_s": 0.001},
    "profile": {"model": {"name": "bert-base", "layers": 12, "hidden": 768, "heads": 12,
                          "head_dim": 64, "ffn": 3072, "vocab": 30522, "seq": 512, "causal": false},
                "seq": 128, "batch": 8, "dtypes": ["f32"], "quick": true},
    "benchmarks": [
        bench("matmul/square/m512.n512.k512/f32", 512, 1.1e-3 * scale, 3 << 20),
        bench("matmul/square/m1024.n1024.k1024/f32", 1024, 9e-3 * scale, 12 << 20),
        bench("matmul/square/m1024.n1024.k1024/bf16", 1024, 2e-2 * scale, 6 << 20),
        bench("stream/triad/n1000000/f32", 1000, 3e-3 * scale, 2_000_000_000),
    ]});
    if let Some((k, x)) = extra {
        v[k] = x;
    }
    v
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

fn flopcal() -> Command {
    Command::cargo_bin("flopcal").unwrap()
}

/// Three runs of one host, one run of another, one with an estimate section.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let estimate = json!({"model": "bert-large", "hours": 96.0, "cost_usd": {"on_demand": 6912.0}});
    vec![
        write(
            dir,
            "h1-a.json",
            &file("2026-01-01T00:00:00Z", "Box A", 1.0, None),
        ),
        write(
            dir,
            "h1-b.json",
            &file("2026-01-08T00:00:00Z", "Box A", 0.95, None),
        ),
        write(
            dir,
            "h1-c.json",
            &file(
                "2026-01-15T00:00:00Z",
                "Box A",
                1.1,
                Some(("estimate", estimate)),
            ),
        ),
        write(
            dir,
            "h2.json",
            &file("2026-01-10T00:00:00Z", "Box B", 0.5, None),
        ),
    ]
}

fn render(dir: &Path, files: &[PathBuf]) -> (PathBuf, String) {
    let out = dir.join("report.html");
    flopcal()
        .arg("report")
        .args(files)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let html = std::fs::read_to_string(&out).unwrap();
    (out, html)
}

#[test]
fn the_report_is_one_self_contained_html_file_with_its_plots() {
    let dir = tempfile::tempdir().unwrap();
    let files = inputs(dir.path());
    let (_, html) = render(dir.path(), &files);
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Per host: roofline, kernels (+ over time for the host with 3 runs); side by side.
    assert_eq!(html.matches("<svg").count(), 6, "svg count");
    for plot in ["roofline", "kernels", "over-time", "side-by-side"] {
        assert!(
            html.contains(&format!("data-plot=\"{plot}\"")),
            "{plot} missing"
        );
    }
    // No network: nothing is fetched from anywhere.
    for needle in ["src=\"http", "href=\"http", "url(http", "@import", "<link"] {
        assert!(!html.contains(needle), "external reference {needle}");
    }
    assert!(html.contains("Box A") && html.contains("Box B"));
    assert!(html.contains("cost_usd.on_demand"), "estimate table");
    assert!(html.contains("matmul/square/m1024.n1024.k1024/bf16"));
}

#[test]
fn a_bad_result_file_is_an_error_naming_it_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let files = inputs(dir.path());
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"schema_version\": 1, \"run_id\": ").unwrap();
    flopcal()
        .arg("report")
        .arg(&files[0])
        .arg(&bad)
        .arg("--out")
        .arg(dir.path().join("r.html"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.json"))
        .stderr(predicate::str::contains("truncated"));
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    for b in v["benchmarks"].as_array_mut().unwrap() {
        b["samples_s"] = json!([]);
        b["status"] = json!("skipped");
    }
    let empty = write(dir.path(), "empty.json", &v);
    flopcal()
        .arg("report")
        .arg(&empty)
        .arg("--out")
        .arg(dir.path().join("r.html"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("empty.json"))
        .stderr(predicate::str::contains("no benchmark has any samples"));
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn headless(browser: &Path, profile: &Path, extra: &[String], url: &str) -> std::process::Output {
    Process::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap()
}

#[test]
fn the_report_renders_in_a_headless_browser_without_errors() {
    let Some(browser) = chromium() else {
        // CI sets this so a missing browser fails instead of silently skipping.
        assert!(
            std::env::var_os("FLOPCAL_REQUIRE_BROWSER").is_none(),
            "FLOPCAL_REQUIRE_BROWSER is set but no chromium is installed"
        );
        println!("SKIPPED: no chromium at /usr/bin/chromium; install it (apt-get install chromium) to run the browser test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = inputs(dir.path());
    let (out, _) = render(dir.path(), &files);
    let url = format!("file://{}", out.display());
    let profile = dir.path().join("chromium-profile");

    // The DOM after load: the inline script records load, rendered plots and errors.
    let dom = headless(&browser, &profile, &["--dump-dom".into()], &url);
    let text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&dom.stderr)
    );
    // The attributes live on the <html> element itself (the script text names them too).
    let root = text
        .find("<html")
        .and_then(|i| text[i..].find('>').map(|j| &text[i..i + j]))
        .unwrap_or("");
    assert!(
        root.contains("data-loaded=\"yes\""),
        "page did not finish loading: {root}"
    );
    assert!(
        root.contains("data-plots-rendered=\"6\""),
        "not every plot rendered with a real size: {root}"
    );
    assert!(
        !root.contains("data-errors"),
        "script errors on the page: {root}"
    );

    // A screenshot: it exists and is not blank.
    let png = dir.path().join("report.png");
    let shot = headless(
        &browser,
        &profile,
        &[format!("--screenshot={}", png.display())],
        &url,
    );
    assert!(
        shot.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    assert!(
        bytes.len() > 30_000,
        "screenshot suspiciously small ({} bytes): blank page?",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("FLOPCAL_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}
