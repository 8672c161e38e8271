//! Interrupting a profile keeps what was measured: SIGINT or SIGTERM stops within a
//! second, the result file is written with `"partial": true`, and the exit code is 130.

// Helpers outside #[test] functions panic on setup failure, as tests should.
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tiny custom model on one thread, without the ceiling measurement.
const TINY: &[&str] = &[
    "profile",
    "--hidden",
    "64",
    "--heads",
    "4",
    "--vocab",
    "500",
    "--seq",
    "32",
    "--batch",
    "2",
    "--squares",
    "64",
    "--no-peak",
    "--threads",
    "1",
];

/// A result file that must be marked partial.
fn read_partial(path: &std::path::Path) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(
        v["partial"], true,
        "an interrupted profile is marked partial"
    );
    v
}

/// How many of a result file's benchmarks hold samples.
fn measured(v: &serde_json::Value) -> usize {
    v["benchmarks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| !b["samples_s"].as_array().unwrap().is_empty())
        .count()
}

fn interrupt_profile_with(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("partial.json");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("flopcal"))
        .args(TINY)
        .args([
            // A tight CI target and a large budget keep it running until interrupted.
            "--target-ci",
            "0.0001",
            "--min-samples",
            "200",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "profile ended before the signal"
    );
    let sent = Instant::now();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "did not stop after {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stopped_in = sent.elapsed();
    assert_eq!(status.code(), Some(130), "exit code after {signal}");
    assert!(
        stopped_in < Duration::from_secs(2),
        "took {stopped_in:?} to stop"
    );
    let v = read_partial(&out);
    assert!(measured(&v) >= 1, "nothing measured was kept");
    assert!(dir.path().join("partial.csv").exists());
}

#[test]
fn sigint_during_profile_saves_partial_results_and_exits_130() {
    interrupt_profile_with("-INT");
}

#[test]
fn sigterm_during_profile_saves_partial_results_and_exits_130() {
    interrupt_profile_with("-TERM");
}

#[test]
fn two_profiles_writing_to_the_same_directory_at_once_both_survive() {
    let dir = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        Command::new(assert_cmd::cargo::cargo_bin("flopcal"))
            .args(TINY)
            .args(["--quick", "--filter", "matmul/", "--out"])
            .arg(dir.path().join(name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("a.json"), spawn("b.json"));
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    for name in ["a.json", "b.json"] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(name)).unwrap()).unwrap();
        assert_eq!(v["partial"], false);
        assert!(!v["benchmarks"].as_array().unwrap().is_empty());
    }
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(leftovers, 0, "temp files left behind");
}

#[test]
fn a_profile_killed_outright_keeps_its_last_checkpoint_marked_partial() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("killed.json");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("flopcal"))
        .args(TINY)
        // Many samples per kernel round keep it running well past the first
        // checkpoint (every two seconds).
        .args(["--min-samples", "400", "--rounds", "5", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !out.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "profile ended before its first checkpoint"
        );
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "profile ended before the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let v = read_partial(&out);
    assert!(measured(&v) >= 1, "the checkpoint holds what was measured");
    assert!(dir.path().join("killed.csv").exists());
    // It reads back like any profile.
    let shown = Command::new(assert_cmd::cargo::cargo_bin("flopcal"))
        .args(["regress"])
        .arg(&out)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        shown.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
}
