//! A reader that closes stdout early (`flopcal … | head`) ends the program quietly:
//! exit 0, nothing on stderr, whatever the command and output format.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};

const PROFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/results/amd-epyc-2core-quick.json"
);
const RESULTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/results");

/// Run flopcal with `args`, its stdout a pipe whose read end is closed before the
/// program writes (so every write fails with EPIPE); returns (exit code, stderr).
fn with_stdout_closed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("flopcal"))
        .args(args)
        .env_remove("FLOPCAL_CATALOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap().code(), err)
}

#[test]
fn a_closed_stdout_ends_every_command_quietly_with_exit_0() {
    let cases: &[&[&str]] = &[
        &["regress", PROFILE, PROFILE],
        &["regress", PROFILE, PROFILE, "--format", "json"],
        &["regress", PROFILE, PROFILE, "--format", "csv"],
        &["history", RESULTS],
        &["history", RESULTS, "--format", "json"],
        &["calibrate"],
        &["calibrate", "--format", "json"],
        &["estimate", "--profile", PROFILE, "--model", "bert-base"],
        &[
            "estimate",
            "--profile",
            PROFILE,
            "--model",
            "bert-base",
            "--format",
            "json",
        ],
        &["--help"],
    ];
    for args in cases {
        let (code, err) = with_stdout_closed(args);
        assert_eq!(code, Some(0), "flopcal {args:?}: stderr {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "flopcal {args:?}: {err}"
        );
    }
}
