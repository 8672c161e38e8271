//! Fleet profiles: `flopcal profile` on every rank of an MPI launch, gathered by
//! rank 0, and the straggler verdict of `regress` and `report` over the file; also
//! `regress` and `report` on comm files. Run with
//! `cargo test --release --features mpi --test fleet` (needs `mpirun` and `taskset`).
#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_flopcal");

/// A quick fleet profile of one compute-bound kernel (a 1024³ f32 matmul) on 1
/// thread per rank, rank r pinned to CPU r with taskset.
fn fleet_profile(out: &Path) -> Output {
    let profile = [
        "profile",
        "--quick",
        "--threads",
        "1",
        "--squares",
        "1024",
        "--filter",
        "matmul/square",
        "--no-peak",
        "--rounds",
        "2",
        "--budget",
        "4",
    ];
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "--mca",
        "btl",
        "self,vader",
        "--bind-to",
        "none",
    ]);
    for cpu in ["0", "1"] {
        if cpu == "1" {
            c.arg(":");
        }
        c.args(["-np", "1", "taskset", "-c", cpu, BIN])
            .args(profile)
            .arg("--out")
            .arg(out);
    }
    c.output().unwrap()
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn regress(file: &Path) -> Output {
    common::flopcal()
        .arg("regress")
        .arg(file)
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn two_equal_ranks_gather_one_file_and_neither_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let o = fleet_profile(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = json(&out);
    assert_eq!(f["kind"], "fleet");
    let ranks = f["ranks"].as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    for (i, r) in ranks.iter().enumerate() {
        assert_eq!(r["rank"], i);
        assert!(r["host"].is_string());
        assert!(!r["benchmarks"][0]["samples_s"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    assert_eq!(
        f["summary"]["stragglers"],
        serde_json::json!([]),
        "{}",
        f["summary"]
    );
    let r = regress(&out);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    let html = dir.path().join("r.html");
    let rep = common::flopcal()
        .arg("report")
        .arg(&out)
        .arg("--out")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Fleet") && page.contains("No straggler"));
}

/// A rank made slow by a mock: the gathered file of a real 2-rank run with rank 1's
/// samples stretched 2x (a CPU competitor cannot do it on the 2-vCPU machines this
/// runs on: a busy loop pinned to CPU 1 slowed the rank pinned to CPU 0 just as
/// much, 12.5 vs 11.7 GFLOP/s, so the vCPUs are not isolated).
#[test]
fn a_rank_at_half_speed_is_flagged_with_the_statistics_and_fails_regress() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fleet.json");
    let o = fleet_profile(&out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut f = json(&out);
    for b in f["ranks"][1]["benchmarks"].as_array_mut().unwrap() {
        for s in b["samples_s"].as_array_mut().unwrap() {
            *s = Value::from(s.as_f64().unwrap() * 2.0);
        }
    }
    let slow = dir.path().join("slow.json");
    std::fs::write(&slow, serde_json::to_vec(&f).unwrap()).unwrap();
    let r = regress(&slow);
    assert_eq!(r.status.code(), Some(1));
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.contains("stragglers: rank(s) 1\n"), "{text}");
    assert!(
        text.contains("rank 1 is a straggler on matmul/square/m1024"),
        "{text}"
    );
    assert!(text.contains("below the fleet median"), "{text}");
    // A threshold above the slowdown flags nothing.
    let lax = common::flopcal()
        .arg("regress")
        .arg(&slow)
        .arg(&slow)
        .args(["--straggler", "60%"])
        .output()
        .unwrap();
    assert_eq!(
        lax.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&lax.stdout)
    );
    let html = dir.path().join("r.html");
    let rep = common::flopcal()
        .arg("report")
        .arg(&slow)
        .arg("--out")
        .arg(&html)
        .output()
        .unwrap();
    assert!(rep.status.success());
    assert!(std::fs::read_to_string(&html)
        .unwrap()
        .contains("rank 1 is a straggler"));
}

#[test]
fn regress_and_report_read_comm_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("comm.json");
    let o = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--mca",
            "btl",
            "self,vader",
            "-np",
            "2",
        ])
        .arg(BIN)
        .args([
            "comm",
            "--collective",
            "all-reduce,broadcast",
            "--dtype",
            "f32",
            "--max-bytes",
            "4K",
            "--time-per-size",
            "0.002",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A file against itself: every point compared, none regressed.
    let r = common::flopcal()
        .arg("regress")
        .arg(&out)
        .arg(&out)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let cmp: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(cmp["kind"], "comm");
    assert_eq!(cmp["rows"].as_array().unwrap().len(), 2 * 10);
    assert_eq!(cmp["counts"]["same"], 20);
    // The same file with all-reduce at 1 KiB made twice as slow regresses.
    let mut slow = json(&out);
    for r in slow["results"].as_array_mut().unwrap() {
        if r["collective"] == "all_reduce" && r["bytes"] == 1024 {
            for s in r["samples_s"].as_array_mut().unwrap() {
                *s = Value::from(s.as_f64().unwrap() * 2.0);
            }
        }
    }
    let slow_path = dir.path().join("slow.json");
    std::fs::write(&slow_path, serde_json::to_vec(&slow).unwrap()).unwrap();
    let r = common::flopcal()
        .arg("regress")
        .arg(&out)
        .arg(&slow_path)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );
    assert!(String::from_utf8_lossy(&r.stdout).contains("all_reduce/f32/1024"));
    // The report draws the bandwidth plot with the fitted line.
    let html = dir.path().join("comm.html");
    let rep = common::flopcal()
        .arg("report")
        .arg(&out)
        .arg("--out")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("data-plot=\"comm-bandwidth\"") && page.contains("<svg"));
    assert!(page.contains("Interconnect") && page.contains("1/β"));
}
