//! `flopcal peak`: JSON shape, the forced scalar fallback, `--out`, and bad input.

use assert_cmd::Command;
use serde_json::Value;

fn flopcal() -> Command {
    Command::cargo_bin("flopcal").expect("binary builds")
}

fn run_json(args: &[&str]) -> Value {
    let out = flopcal()
        .args(["peak", "--format", "json"])
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is exactly one JSON document")
}

#[test]
fn peak_quick_json_has_the_expected_shape() {
    let v = run_json(&["--quick", "--duration", "0.05", "--dram-mib", "64"]);
    assert_eq!(v["tool"], "flopcal");
    let p = &v["peak"];
    assert_eq!(p["schema_version"], 1);
    assert!(p["threads"].as_u64().is_some_and(|t| t >= 1));
    let compute = p["compute"].as_array().expect("compute[]");
    assert!(!compute.is_empty());
    for c in compute {
        assert!(
            c["total_flops_per_s"].as_f64().is_some_and(|f| f > 0.0),
            "{c}"
        );
        assert!(c["per_core_flops_per_s"].as_f64().is_some_and(|f| f > 0.0));
        assert_eq!(c["verified"], true);
        assert!(!c["samples_s"].as_array().expect("samples").is_empty());
    }
    assert!(compute
        .iter()
        .any(|c| c["isa"] == "scalar" && c["dtype"] == "f32"));
    let bw = p["bandwidth"].as_array().expect("bandwidth[]");
    for level in ["dram", "cache"] {
        for kind in ["copy", "triad"] {
            let b = bw
                .iter()
                .find(|b| b["level"] == level && b["kind"] == kind)
                .unwrap_or_else(|| panic!("{kind} {level} missing"));
            assert!(b["bytes_per_s"].as_f64().is_some_and(|x| x > 0.0));
        }
    }
    assert!(p["skipped"].is_array());
    assert!(p["spec"]["status"].is_string());
    // AMX either ran (verified, cross-checked against the C intrinsics reference in
    // the same run) or was skipped with the reason: CPUID, XCR0 or arch_prctl.
    let cpu_has = |flag: &str| {
        std::fs::read_to_string("/proc/cpuinfo")
            .is_ok_and(|c| c.split_whitespace().any(|w| w == flag))
    };
    let skipped = p["skipped"].as_array().expect("skipped[]");
    for (isa, dtype, flag) in [
        ("amx-bf16", "bf16", "amx_bf16"),
        ("amx-int8", "int8", "amx_int8"),
    ] {
        let ran = compute
            .iter()
            .any(|c| c["isa"] == isa && c["dtype"] == dtype);
        let skip = skipped
            .iter()
            .find(|k| k["isa"] == isa && k["dtype"] == dtype);
        match skip {
            Some(k) => {
                assert!(!ran, "{isa} both ran and was skipped");
                let reason = k["reason"].as_str().unwrap_or_default();
                assert!(
                    ["CPUID", "XCR0", "arch_prctl", "XSAVE"]
                        .iter()
                        .any(|w| reason.contains(w)),
                    "{isa} skip reason names no check: {reason}"
                );
                if cfg!(target_os = "linux") && cfg!(target_arch = "x86_64") && !cpu_has(flag) {
                    assert!(reason.contains("CPUID"), "{reason}");
                }
            }
            None => {
                assert!(ran, "{isa} neither ran nor was skipped");
                let tiles = p["tile_reference"].as_array().expect("tile_reference[]");
                assert!(
                    tiles.iter().any(|r| r["isa"] == isa),
                    "{isa} not cross-checked"
                );
            }
        }
    }
}

#[test]
fn peak_forced_scalar_fallback_works_and_says_why_it_skipped() {
    let v = run_json(&[
        "--max-isa",
        "scalar",
        "--duration",
        "0.05",
        "--dram-mib",
        "32",
        "--threads",
        "1",
        "--no-reference",
    ]);
    let p = &v["peak"];
    assert_eq!(p["max_isa"], "scalar");
    let compute = p["compute"].as_array().expect("compute[]");
    assert_eq!(compute.len(), 2, "scalar f32 and f64 only");
    assert!(compute
        .iter()
        .all(|c| c["isa"] == "scalar" && c["verified"] == true));
    for b in p["bandwidth"].as_array().expect("bandwidth[]") {
        assert!(
            b["isa"] == "sse2" || b["isa"] == "neon" || b["isa"] == "scalar",
            "{b}"
        );
    }
    if cfg!(target_arch = "x86_64") {
        let skipped = p["skipped"].as_array().expect("skipped[]");
        assert!(skipped.iter().any(|s| s["isa"] == "avx512-fma"
            && s["reason"]
                .as_str()
                .is_some_and(|r| r.contains("--max-isa"))));
    }
    assert!(p["reference"].is_null());
}

#[test]
fn peak_out_writes_the_same_json_atomically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("peak.json");
    let v = run_json(&[
        "--max-isa",
        "scalar",
        "--duration",
        "0.05",
        "--dram-mib",
        "16",
        "--no-reference",
        "--out",
        path.to_str().expect("utf-8 path"),
    ]);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("written")).expect("JSON");
    assert_eq!(written, v);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != "peak.json")
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn peak_table_and_csv_print() {
    let out = flopcal()
        .args([
            "peak",
            "--max-isa",
            "scalar",
            "--duration",
            "0.05",
            "--dram-mib",
            "16",
        ])
        .args(["--no-reference", "--format", "csv"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("section,name,variant,threads,value"));
    assert!(text.lines().any(|l| l.starts_with("compute,scalar,f32,")));
    assert!(text.lines().any(|l| l.starts_with("bandwidth,triad,dram,")));
}

#[test]
fn peak_bad_input_exits_2_with_one_line() {
    for args in [
        vec!["--max-isa", "sse9"],
        vec!["--threads", "0"],
        vec!["--duration", "-1"],
    ] {
        let out = flopcal().arg("peak").args(&args).output().expect("runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("no/such/dir/peak.json");
    let out = flopcal()
        .args([
            "peak",
            "--max-isa",
            "scalar",
            "--duration",
            "0.02",
            "--dram-mib",
            "8",
        ])
        .args(["--no-reference", "--out", bad.to_str().expect("utf-8")])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
}

/// On an emulated CPU without AVX (Nehalem) and one without AVX-512 (Haswell), `peak`
/// must not die of an illegal instruction: it skips what the CPU lacks and says why.
/// Needs `qemu-x86_64` (Debian package qemu-user); skipped, with a note, without it.
#[test]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn peak_runs_on_cpus_without_avx512_or_avx_under_qemu() {
    let qemu_ok = std::process::Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !qemu_ok {
        eprintln!("qemu-x86_64 not installed: emulated-CPU portability check skipped");
        return;
    }
    let bin = assert_cmd::cargo::cargo_bin("flopcal");
    for (cpu, must_skip, may_run) in [
        ("Nehalem", "avx2-fma", ["scalar", "scalar"]),
        ("Haswell", "avx512-fma", ["scalar", "avx2-fma"]),
    ] {
        let out = std::process::Command::new("qemu-x86_64")
            .args(["-cpu", cpu])
            .arg(&bin)
            .args([
                "peak",
                "--format",
                "json",
                "--threads",
                "1",
                "--duration",
                "0.02",
            ])
            .args(["--dram-mib", "8", "--no-reference"])
            .output()
            .expect("qemu runs");
        assert!(
            out.status.success(),
            "{cpu}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let p = &v["peak"];
        assert!(p["skipped"]
            .as_array()
            .expect("skipped[]")
            .iter()
            .any(|s| s["isa"] == must_skip
                && s["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("CPU lacks"))));
        for c in p["compute"].as_array().expect("compute[]") {
            assert!(
                may_run.contains(&c["isa"].as_str().unwrap_or("")),
                "{cpu}: ran {c}"
            );
            assert_eq!(c["verified"], true);
        }
    }
}
