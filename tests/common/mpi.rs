//! Helpers of the MPI tests (feature `mpi`): launching local ranks, reading the
//! files they write, rendering a report of them.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The flopcal binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_flopcal");

/// `mpirun` for `np` local ranks over shared memory (root and oversubscription
/// allowed: CI runs as root on 2 cores).
pub fn mpirun(np: u32) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "--mca",
        "btl",
        "self,vader",
    ])
    .args(["-np", &np.to_string()]);
    c
}

/// A JSON file.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `mpirun -np NP flopcal comm ARGS --out DIR/NAME`, which must succeed: the file.
pub fn comm_file(np: u32, args: &[&str], dir: &Path, name: &str) -> Value {
    let out = dir.join(name);
    let o = mpirun(np)
        .arg(BIN)
        .arg("comm")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_json(&out)
}

/// `flopcal report FILE` into `dir`, which must succeed: the HTML.
pub fn report_page(file: &Path, dir: &Path) -> String {
    let html = dir.join("report.html");
    let rep = super::flopcal()
        .arg("report")
        .arg(file)
        .arg("--out")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        rep.status.success(),
        "{}",
        String::from_utf8_lossy(&rep.stderr)
    );
    std::fs::read_to_string(&html).unwrap()
}

/// Multiply every raw sample under `benchmarks_or_results` by `factor`.
pub fn stretch_samples(entries: &mut Value, factor: f64) {
    for b in entries.as_array_mut().unwrap() {
        for s in b["samples_s"].as_array_mut().unwrap() {
            *s = Value::from(s.as_f64().unwrap() * factor);
        }
    }
}
