//! Every malformed invocation or input gets one clear line on stderr and exit 2 —
//! never a panic, never a backtrace, never a success.

// Helpers outside #[test] functions panic on setup failure, as tests should.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use assert_cmd::Command;

struct Case {
    args: Vec<String>,
    /// Text the error line must contain (case-insensitive).
    expect: &'static str,
}

fn case(args: &[&str], expect: &'static str) -> Case {
    Case {
        args: args.iter().map(|s| s.to_string()).collect(),
        expect,
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn malformed_invocations_exit_2_with_a_useful_line_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = write(d, "empty.json", b"");
    let truncated = write(
        d,
        "trunc.json",
        b"{\"schema_version\": 1, \"run_id\": \"x\", \"bench",
    );
    let future = write(
        d,
        "future.json",
        br#"{"schema_version": 99, "benchmarks": []}"#,
    );
    let not_ours = write(d, "other.json", br#"{"hello": "world"}"#);
    let binary = write(d, "bin.json", &[0xff, 0xfe, 0x00, 0x9f, 0x92, 0x96]);
    let wrong_shape = write(
        d,
        "shape.json",
        br#"{"schema_version": 1, "benchmarks": 3}"#,
    );
    let bad_catalog = write(
        d,
        "cat.toml",
        b"[[hardware]]\nname = \"x\"\npeak = \"fast\"\n",
    );
    let missing = d.join("does-not-exist.json").to_string_lossy().into_owned();
    let dir_path = d.to_string_lossy().into_owned();

    let cases = vec![
        // Command line.
        case(&["no-such-command"], "unrecognized subcommand"),
        case(&["profile", "--no-such-flag"], "unexpected argument"),
        case(&["profile", "--batch", "0"], "--batch"),
        case(&["profile", "--batch", "-1"], "-1"),
        case(&["profile", "--batch", "many"], "invalid value"),
        case(&["profile", "--seq", "0"], "--seq"),
        case(
            &["profile", "--batch", "99999999999999999999999"],
            "invalid value",
        ),
        case(&["profile", "--model", "bert-lage"], "bert-large"),
        case(&["profile", "--model", ""], "unknown model"),
        case(&["profile", "--hidden", "0", "--heads", "4"], "--hidden"),
        case(
            &["profile", "--hidden", "100", "--heads", "3"],
            "--head-dim",
        ),
        case(&["profile", "--dtype", "int8"], "int8"),
        case(&["profile", "--target-ci", "NaN"], "--target-ci"),
        case(&["profile", "--target-ci", "1.5"], "--target-ci"),
        case(&["profile", "--budget", "-5"], "--budget"),
        case(&["profile", "--budget", "inf"], "--budget"),
        case(&["profile", "--threads", "0"], "--threads"),
        case(&["profile", "--device", "tpu"], "invalid value"),
        case(&["profile", "--format", "yaml"], "invalid value"),
        case(&["profile", "--max-memory", "-1"], "--max-memory"),
        case(
            &[
                "profile",
                "--model",
                "t5-11b",
                "--batch",
                "4096",
                "--max-memory",
                "0.5",
            ],
            "needs about",
        ),
        case(
            &["profile", "--filter", "no-such-kernel"],
            "matches no kernel",
        ),
        case(&["profile", "--quick", "--out", &dir_path], "directory"),
        case(
            &["profile", "--quick", "--out", "/nonexistent-dir/r.json"],
            "nonexistent-dir",
        ),
        case(&["profile", "--peak-duration", "0"], "--peak-duration"),
        // Result files.
        case(&["regress", &empty, &empty], "empty"),
        case(&["regress", &truncated, &truncated], "truncated"),
        case(&["regress", &future, &future], "schema_version 99"),
        case(&["regress", &not_ours, &not_ours], "schema_version"),
        case(&["regress", &binary, &binary], "UTF-8"),
        case(&["regress", &wrong_shape, &wrong_shape], "schema"),
        case(&["regress", &missing, &missing], "does-not-exist.json"),
        case(&["regress", &dir_path, &dir_path], ""),
        // Cost model.
        case(
            &["estimate", "--model", "bert-large", "--hardware", "tpu-v9"],
            "tpu",
        ),
        case(
            &["estimate", "--model", "bert-lage", "--hardware", "v100"],
            "bert-large",
        ),
        case(
            &[
                "estimate",
                "--model",
                "bert-large",
                "--hardware",
                "v100",
                "--mfu",
                "0",
            ],
            "mfu",
        ),
        case(
            &[
                "estimate",
                "--model",
                "bert-large",
                "--hardware",
                "v100",
                "--mfu",
                "1.5",
            ],
            "mfu",
        ),
        case(
            &[
                "estimate",
                "--model",
                "bert-large",
                "--hardware",
                "v100",
                "--devices",
                "0",
            ],
            "devices",
        ),
        case(
            &[
                "estimate",
                "--params",
                "-1",
                "--tokens",
                "1e9",
                "--hardware",
                "v100",
            ],
            "params",
        ),
        case(
            &[
                "estimate",
                "--params",
                "NaN",
                "--tokens",
                "1e9",
                "--hardware",
                "v100",
            ],
            "params",
        ),
        case(
            &[
                "estimate",
                "--model",
                "bert-large",
                "--hardware",
                "v100",
                "--catalog",
                &bad_catalog,
            ],
            "cat.toml",
        ),
        case(
            &[
                "estimate",
                "--model",
                "bert-large",
                "--hardware",
                "v100",
                "--catalog",
                &missing,
            ],
            "does-not-exist",
        ),
        case(&["calibrate", "--catalog", &binary], "bin.json"),
    ];
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for c in &cases {
        let out = Command::cargo_bin("flopcal")
            .unwrap()
            .args(&c.args)
            .env("FLOPCAL_CATALOG", "")
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let problems = [
            (
                out.status.code() != Some(2),
                format!("exit {:?}", out.status.code()),
            ),
            (err.contains("panicked"), "panicked".into()),
            (err.contains("RUST_BACKTRACE"), "backtrace hint".into()),
            (first.is_empty(), "no error line".into()),
            (
                !err.to_lowercase().contains(&c.expect.to_lowercase()),
                format!("stderr lacks {:?}", c.expect),
            ),
        ];
        for (bad, what) in problems {
            if bad {
                failures.push(format!("{:?}: {what}; stderr: {}", c.args, err.trim()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
