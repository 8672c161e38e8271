//! Embed provenance into the binary: the git commit it was built from and the exact
//! candle-core version resolved in Cargo.lock (recorded in every result file).

use std::process::Command;

fn main() {
    let commit = std::env::var("FLOPCAL_GIT_COMMIT").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    });
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let commit = match commit {
        Some(c) if dirty => format!("{c}-dirty"),
        Some(c) => c,
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=FLOPCAL_GIT_COMMIT={commit}");

    let lock = std::fs::read_to_string("../Cargo.lock").unwrap_or_default();
    let candle = lock
        .split("[[package]]")
        .find(|block| block.contains("name = \"candle-core\""))
        .and_then(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("version = \""))
                .map(|v| v.trim_end_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FLOPCAL_CANDLE_VERSION={candle}");
    println!("cargo:rerun-if-changed=../Cargo.lock");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/index");
    println!("cargo:rerun-if-env-changed=FLOPCAL_GIT_COMMIT");
}
