//! Helpers of the MPI tests (feature `mpi`): launching local ranks, reading the
//! files they write, rendering a report of them.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Run `c`, noting when a line of its stderr first contains `marker`: its output,
/// and how long it went on after that line (None when the line never came).
pub fn output_after(c: &mut Command, marker: &str) -> (Output, Option<Duration>) {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun is installed (openmpi-bin)");
    let stderr = child.stderr.take().unwrap();
    let marker = marker.to_string();
    let reader = std::thread::spawn(move || {
        let (mut seen, mut text) = (None, String::new());
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if seen.is_none() && line.contains(&marker) {
                seen = Some(Instant::now());
            }
            text.push_str(&line);
            text.push('\n');
        }
        (seen, text)
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let status = child.wait().unwrap();
    let ended = Instant::now();
    let (seen, text) = reader.join().unwrap();
    let out = Output {
        status,
        stdout,
        stderr: text.into_bytes(),
    };
    (out, seen.map(|t| ended.saturating_duration_since(t)))
}
