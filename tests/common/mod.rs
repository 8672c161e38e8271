//! Helpers shared by the integration tests (each test crate uses its own subset).

#![allow(dead_code, clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fmt::Debug;

use assert_cmd::Command;
use serde_json::Value;

#[cfg(feature = "mpi")]
pub mod mpi;

/// The binary, with any `FLOPCAL_CATALOG` of the caller's environment removed, so
/// the tests see the embedded catalog unless they set one themselves.
pub fn flopcal() -> Command {
    let mut c = Command::cargo_bin("flopcal").unwrap();
    c.env_remove("FLOPCAL_CATALOG");
    c
}

/// Run `c`, which must succeed (else the test fails naming `what` with its stderr):
/// its stdout.
pub fn stdout_of(c: &mut Command, what: impl std::fmt::Display) -> Vec<u8> {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `flopcal SUBCOMMAND ARGS... --format json`, which must succeed: its JSON.
pub fn json_of<S: AsRef<OsStr> + Debug>(subcommand: &str, args: &[S]) -> Value {
    let out = stdout_of(
        flopcal()
            .arg(subcommand)
            .args(args)
            .args(["--format", "json"]),
        format!("flopcal {subcommand} {args:?}"),
    );
    serde_json::from_slice(&out).expect("stdout is JSON only")
}

/// `flopcal SUBCOMMAND ARGS... --format csv`, which must succeed: its header and rows.
pub fn csv_of(subcommand: &str, args: &[&str]) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let out = stdout_of(
        flopcal()
            .arg(subcommand)
            .args(args)
            .args(["--format", "csv"]),
        format!("flopcal {subcommand} {args:?} --format csv"),
    );
    let mut r = csv::Reader::from_reader(&out[..]);
    let header = r.headers().unwrap().clone();
    (header, r.records().map(Result::unwrap).collect())
}

/// The number at `key` in `v`, or a panic naming it.
pub fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` missing in {v}"))
}

/// Llama 2 70B from its `config.json` fixture (80 layers, hidden 8192, 64 heads of
/// 128, 8 key/value heads, SwiGLU FFN 28672, untied 32000-token vocabulary), 2e12
/// tokens on 2048 A100s: the flags `estimate` and `plan` share.
pub const LLAMA2_70B_ON_2048_A100: [&str; 8] = [
    "--hf-config",
    "tests/fixtures/hf/llama-2-70b.json",
    "--tokens",
    "2e12",
    "--hardware",
    "a100",
    "--devices",
    "2048",
];

/// Llama 2 7B, 1e9 tokens on 8 A100s: a small estimate whose other flags a bad-input
/// test varies.
#[allow(dead_code)]
pub const SMALL_ESTIMATE: [&str; 9] = [
    "estimate",
    "--model",
    "llama2-7b",
    "--tokens",
    "1e9",
    "--hardware",
    "a100",
    "--devices",
    "8",
];

/// `flopcal SUBCOMMAND --model bert-large` with a misspelt price source and with one
/// that does not sell the hardware: each is one line on stderr naming the fix, exit 2
/// (estimate, plan and compare share `--price-source`).
#[allow(dead_code)]
pub fn assert_bad_price_sources_refused(subcommand: &str) {
    for (args, needle) in [
        (
            vec!["--hardware", "h100-sxm", "--price-source", "lamda"],
            "did you mean `lambda`",
        ),
        (
            vec!["--hardware", "tpu-v4", "--price-source", "aws"],
            "no on-demand price from `aws` (price sources: gcp)",
        ),
    ] {
        let out = flopcal()
            .args([subcommand, "--model", "bert-large"])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
