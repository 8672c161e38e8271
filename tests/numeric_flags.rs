//! Numeric flags driven to their limits (issue 19, Bad input): whatever the value,
//! `estimate` and `plan` exit 0 or 2 (one `error:` line), never panic, and a device
//! count they accept comes back unchanged (nothing wraps at 32 bits).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use proptest::prelude::*;

mod common;
use common::flopcal;

/// Values at and beyond every limit a count or a size may meet.
fn extreme() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("0.5".to_string()),
        Just("3".to_string()),
        Just("1".to_string()),
        Just("4294967295".to_string()),
        Just("4294967296".to_string()),
        Just("4294967297".to_string()),
        Just("9007199254740993".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e308".to_string()),
        Just("inf".to_string()),
        Just("nan".to_string()),
        (1u64..=u64::MAX).prop_map(|v| v.to_string()),
        (1u32..100_000).prop_map(|v| v.to_string()),
    ]
}

const FLAGS: [&str; 12] = [
    "--devices",
    "--tp",
    "--ep",
    "--pp",
    "--dp",
    "--batch",
    "--seq",
    "--tokens",
    "--microbatch",
    "--virtual-stages",
    "--steps",
    "--recompute-layers",
];

proptest! {
    // A fixed seed: the same 48 cases on every run, so CI and a developer see the same.
    #![proptest_config(ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_f10c),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_numeric_flag_value_exits_0_or_2_with_one_line_and_never_wraps(
        flag in proptest::sample::select(FLAGS.to_vec()),
        value in extreme(),
        plan in any::<bool>(),
    ) {
        let mut c = flopcal();
        c.arg(if plan { "plan" } else { "estimate" });
        c.args(["--model", "llama2-7b", "--hardware", "a100-80gb"]);
        if flag != "--tokens" && flag != "--steps" {
            c.args(["--tokens", "1e12"]);
        }
        if flag != "--devices" {
            c.args(["--devices", "64"]);
        }
        c.args([flag, value.as_str(), "--format", "json"]);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        prop_assert!(code == Some(0) || code == Some(2), "{flag} {value}: exit {code:?}: {err}");
        prop_assert!(!err.contains("panicked"), "{flag} {value}: {err}");
        if code == Some(2) {
            let lines = err.lines().filter(|l| l.starts_with("error")).count();
            prop_assert_eq!(lines, 1, "{} {}: {}", flag, value, err);
        } else if flag == "--devices" && !plan {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let want: f64 = value.parse().unwrap();
            prop_assert_eq!(v["devices"].as_f64(), Some(want), "{}", v["devices"]);
            // A whole count runs through the step model: its layout spans it exactly.
            let l = &v["layout"];
            if !l.is_null() {
                let got: f64 = ["tp", "pp", "dp"].iter().map(|k| l[k].as_f64().unwrap()).product();
                prop_assert_eq!(got, want, "{}", l);
            }
        }
    }
}
