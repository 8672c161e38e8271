//! The versioned result file (JSON) and its CSV twin, written atomically.
//!
//! A result file keeps everything needed to re-analyse a run later: the raw
//! per-iteration samples, the harness settings, the host fingerprint and the
//! provenance of the binary. `schema_version` is bumped on any incompatible change;
//! readers refuse other versions with a clear message rather than guessing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::harness::{HarnessConfig, StopReason};
use crate::{Error, Result};

/// Current schema version of result files.
pub const SCHEMA_VERSION: u32 = 1;

/// Name of the tool in result files.
pub const TOOL_NAME: &str = "flopcal";

/// Provenance of the binary that wrote a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `flopcal`.
    pub name: String,
    /// Crate version.
    pub version: String,
    /// Git commit the binary was built from (`-dirty` if the tree had changes).
    pub git_commit: String,
}

impl Tool {
    /// This binary.
    pub fn current() -> Self {
        Tool {
            name: TOOL_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("FLOPCAL_GIT_COMMIT").into(),
        }
    }
}

/// What was profiled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// The model architecture the suite was derived from.
    pub model: flopcal_model::ModelConfig,
    /// Sequence length.
    pub seq: usize,
    /// Batch size.
    pub batch: usize,
    /// Dtypes of the model kernels.
    pub dtypes: Vec<String>,
    /// Whether this was a `--quick` profile.
    pub quick: bool,
    /// Rounds through the suite whose samples were pooled per kernel.
    #[serde(default = "one")]
    pub rounds: usize,
}

fn one() -> usize {
    1
}

/// Statistics of one benchmark, in seconds per iteration and derived rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchSummary {
    /// Median seconds per iteration.
    pub median_s: f64,
    /// Median absolute deviation, seconds.
    pub mad_s: f64,
    /// Mean seconds.
    pub mean_s: f64,
    /// Fastest sample, seconds.
    pub min_s: f64,
    /// Slowest sample, seconds.
    pub max_s: f64,
    /// Lower end of the 95% CI of the median, seconds.
    pub ci95_low_s: f64,
    /// Upper end of the 95% CI of the median, seconds.
    pub ci95_high_s: f64,
    /// Executed FLOPs per second at the median.
    pub flops_per_s: f64,
    /// FLOP/s at the slow end of the CI.
    pub flops_per_s_ci_low: f64,
    /// FLOP/s at the fast end of the CI.
    pub flops_per_s_ci_high: f64,
    /// Bytes per second at the median (algorithmic bytes).
    pub bytes_per_s: f64,
    /// Samples taken.
    pub n: usize,
    /// Samples flagged as outliers (MAD rule), kept in `samples_s`.
    pub outliers: usize,
    /// MAD-based relative noise (σ estimate / median).
    pub rel_noise: f64,
    /// Why sampling stopped.
    pub stop: StopReason,
}

/// Status of one benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Measured and verified.
    Ok,
    /// The output failed verification; not timed.
    VerificationFailed,
    /// Preparing or running failed (see `message`).
    Error,
    /// Not run (budget spent or interrupted before it started).
    Skipped,
}

/// Verification details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRecord {
    /// Output elements compared against the f64 reference.
    pub checked: usize,
    /// Largest relative error seen.
    pub max_rel_err: f64,
    /// Tolerance applied.
    pub tolerance: f64,
}

/// One measured kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Benchmark {
    /// Stable id: `kind/label/dims/dtype`.
    pub id: String,
    /// Kernel family (`matmul`, `attention`, ...).
    pub kernel: String,
    /// Role in the model (`qkv.fwd`, `square`, ...).
    pub label: String,
    /// Suite group: `model`, `square` or `stream`.
    pub group: String,
    /// Element type.
    pub dtype: String,
    /// Named dimensions.
    pub shape: BTreeMap<String, u64>,
    /// Executed FLOPs per iteration.
    pub flops_per_iter: u64,
    /// FLOPs the model accounting credits per iteration (halved for causal attention).
    pub model_flops_per_iter: u64,
    /// Algorithmic bytes per iteration.
    pub bytes_per_iter: u64,
    /// Iterations per timed sample (short kernels are batched).
    pub iters_per_sample: u64,
    /// Raw per-iteration seconds, one per sample.
    pub samples_s: Vec<f64>,
    /// Samples per round, in order (`samples_s` is their concatenation) when the
    /// kernel was measured in several rounds through the suite.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_sizes: Vec<usize>,
    /// Contention probe reading per round, seconds: the slower of the readings taken
    /// just before and just after the round (see `harness::contention`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_probe_s: Vec<f64>,
    /// Per round: whether it ran while the machine was contended (its probe reading
    /// beyond the threshold over the run's fastest). Such rounds' samples stay in
    /// `samples_s` but not in `summary`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_contended: Vec<bool>,
    /// Statistics; absent when nothing was timed.
    pub summary: Option<BenchSummary>,
    /// Output matched the f64 reference.
    pub verified: bool,
    /// Verification details.
    pub verification: Option<VerificationRecord>,
    /// Outcome.
    pub status: Status,
    /// Error or skip reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Benchmark {
    /// The shape as `k=v` pairs separated by spaces, e.g. `k=768 m=1024 n=2304`.
    pub fn shape_text(&self) -> String {
        self.shape
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The samples of each round, in order (one round holding every sample when the
    /// file records no rounds).
    pub fn rounds(&self) -> Vec<&[f64]> {
        if self.round_sizes.iter().sum::<usize>() != self.samples_s.len() {
            return vec![self.samples_s.as_slice()];
        }
        let mut rest = self.samples_s.as_slice();
        self.round_sizes
            .iter()
            .map(|&n| {
                let (head, tail) = rest.split_at(n);
                rest = tail;
                head
            })
            .collect()
    }

    /// The rounds the statistics rest on: those that did not run under contention,
    /// or every round when none was quiet (or none was judged).
    pub fn quiet_rounds(&self) -> Vec<&[f64]> {
        let rounds = self.rounds();
        if self.round_contended.len() != rounds.len() || self.all_contended() {
            return rounds;
        }
        rounds
            .into_iter()
            .zip(&self.round_contended)
            .filter(|(_, &c)| !c)
            .map(|(r, _)| r)
            .collect()
    }

    /// The samples of [`Benchmark::quiet_rounds`], concatenated.
    pub fn quiet_samples(&self) -> Vec<f64> {
        self.quiet_rounds().concat()
    }

    /// Whether every round ran under contention (so no quiet figure exists).
    pub fn all_contended(&self) -> bool {
        !self.round_contended.is_empty() && self.round_contended.iter().all(|&c| c)
    }

    /// Rounds run under contention.
    pub fn contended_rounds(&self) -> usize {
        self.round_contended.iter().filter(|&&c| c).count()
    }

    /// Arithmetic intensity, FLOP per byte.
    pub fn intensity(&self) -> f64 {
        if self.bytes_per_iter == 0 {
            f64::INFINITY
        } else {
            self.flops_per_iter as f64 / self.bytes_per_iter as f64
        }
    }
}

/// A whole result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Unique id of this run.
    pub run_id: String,
    /// RFC 3339 creation time (UTC).
    pub created_at: String,
    /// The binary that wrote it.
    pub tool: Tool,
    /// True when the run was interrupted and holds only what was measured so far.
    #[serde(default)]
    pub partial: bool,
    /// The machine.
    pub host: Fingerprint,
    /// Harness settings.
    pub harness: HarnessConfig,
    /// What was profiled.
    pub profile: ProfileConfig,
    /// Measured compute and bandwidth ceilings (`flopcal peak`), when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<crate::peak::PeakSection>,
    /// How the run watched for contention from other tenants, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contention: Option<ContentionRecord>,
    /// Typical drift of the machine's speed between rounds of this run: the median
    /// over kernels of the standard deviation of their log round medians. Every
    /// interval of a multi-round run is widened by at least this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_drift_sd: Option<f64>,
    /// The measurements.
    pub benchmarks: Vec<Benchmark>,
}

/// The contention watch of one run (see `harness::contention`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentionRecord {
    /// What the probe does.
    pub probe: String,
    /// Fastest probe reading of the run, seconds: the machine's uncontended speed.
    pub best_probe_s: f64,
    /// A round whose reading exceeds `best_probe_s` times this ran under contention.
    pub threshold_ratio: f64,
    /// Probe readings taken.
    pub readings: usize,
    /// Kernel rounds that ran under contention, over all kernels (retries included).
    pub contended_rounds: usize,
    /// Extra rounds run to replace contended ones.
    pub retried_rounds: usize,
    /// Seconds spent waiting for the machine to become quiet before a retry.
    pub waited_s: f64,
}

/// A fresh run id: UTC timestamp plus random suffix, sortable by time.
pub fn new_run_id(now: &chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}-{:06x}",
        now.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Write `bytes` to `path` atomically: a temp file in the same directory, fsync,
/// then rename over the target. Readers see the old file or the new one, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like [`write_atomic`], with the content produced by `fill`. If `fill` fails (or
/// the process dies before the rename) the target is untouched and the temp file is
/// removed (or, after a crash, left as a `.flopcal-*.tmp` that no reader looks at).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".flopcal-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| Error::io(path, e))?;
    fill(tmp.as_file_mut()).map_err(|e| Error::io(path, e))?;
    // Temp files are created 0600; a result file is meant to be shared like any other
    // file, so keep the replaced file's mode, or use the usual 0644.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(path, e))?;
    }
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    // Make the rename itself durable.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Check that `path` can be written (its directory exists and is writable) before
/// spending minutes measuring.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "--out {}: is a directory; give a file name such as {}/profile.json",
            path.display(),
            path.display()
        )));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::Builder::new()
        .prefix(".flopcal-probe-")
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| Error::io(path, e))
}

/// The CSV twin of a result file path: same name with `.csv`.
pub fn csv_twin(path: &Path) -> PathBuf {
    path.with_extension("csv")
}

/// Header of the CSV form (one row per benchmark).
const CSV_HEADER: [&str; 20] = [
    "id",
    "kernel",
    "label",
    "group",
    "dtype",
    "shape",
    "flops_per_iter",
    "bytes_per_iter",
    "median_s",
    "mad_s",
    "ci95_low_s",
    "ci95_high_s",
    "flops_per_s",
    "bytes_per_s",
    "n",
    "outliers",
    "rel_noise",
    "verified",
    "status",
    "partial",
];

/// Render benchmarks as CSV.
pub fn to_csv(file: &ResultFile) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Usage(format!("cannot write CSV: {e}"));
    w.write_record(CSV_HEADER).map_err(csv_err)?;
    for b in &file.benchmarks {
        let shape = b.shape_text();
        let s = b.summary.as_ref();
        let f =
            |get: fn(&BenchSummary) -> f64| s.map(|s| format!("{:e}", get(s))).unwrap_or_default();
        let status = serde_json::to_value(b.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        w.write_record([
            b.id.clone(),
            b.kernel.clone(),
            b.label.clone(),
            b.group.clone(),
            b.dtype.clone(),
            shape,
            b.flops_per_iter.to_string(),
            b.bytes_per_iter.to_string(),
            f(|s| s.median_s),
            f(|s| s.mad_s),
            f(|s| s.ci95_low_s),
            f(|s| s.ci95_high_s),
            f(|s| s.flops_per_s),
            f(|s| s.bytes_per_s),
            s.map(|s| s.n.to_string()).unwrap_or_default(),
            s.map(|s| s.outliers.to_string()).unwrap_or_default(),
            f(|s| s.rel_noise),
            b.verified.to_string(),
            status,
            file.partial.to_string(),
        ])
        .map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Usage(format!("cannot write CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| Error::Usage(format!("cannot write CSV: {e}")))
}

/// Write the JSON result file and its CSV twin, both atomically.
pub fn save(file: &ResultFile, path: &Path) -> Result<PathBuf> {
    let json = serde_json::to_vec_pretty(file)
        .map_err(|e| Error::Usage(format!("cannot serialise results: {e}")))?;
    write_atomic(path, &json)?;
    let twin = csv_twin(path);
    if twin != path {
        write_atomic(&twin, to_csv(file)?.as_bytes())?;
    }
    Ok(twin)
}

/// Read and validate a result file: it must be JSON of the current schema version.
pub fn load(path: &Path) -> Result<ResultFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |reason: String| Error::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 text ({e}); expected a flopcal JSON result file"
        ))
    })?;
    if text.trim().is_empty() {
        return Err(bad(
            "file is empty; expected a flopcal JSON result file".into()
        ));
    }
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("not valid JSON ({e}); was the file truncated?")))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => {}
        Some(v) => {
            return Err(bad(format!(
                "schema_version {v} is not supported by this flopcal (reads version {SCHEMA_VERSION}); re-run the profile with this version"
            )))
        }
        None => {
            return Err(bad(
                "no `schema_version` field; not a flopcal result file".into(),
            ))
        }
    }
    serde_json::from_value(value).map_err(|e| bad(format!("does not match the result schema: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, b"old contents").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_write_that_dies_halfway_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("baseline.json");
        write_atomic(&p, b"the old, complete baseline").unwrap();
        let err = write_atomic_with(&p, |f| {
            f.write_all(b"the new, half-writ")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(std::fs::read(&p).unwrap(), b"the old, complete baseline");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file removed"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_new_result_file_is_readable_by_others_and_a_replaced_one_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        write_atomic(&p, b"1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o644);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&p, b"2").unwrap();
        assert_eq!(mode(&p), 0o600);
    }

    #[test]
    fn writing_into_a_missing_directory_fails_and_names_the_path() {
        let err = write_atomic(Path::new("/nonexistent-dir/x.json"), b"{}").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.json"));
    }

    #[test]
    fn loading_rejects_other_schema_versions_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, r#"{"schema_version": 99}"#).unwrap();
        let e = load(&p).unwrap_err().to_string();
        assert!(e.contains("schema_version 99"), "{e}");
        std::fs::write(&p, "{\"schema_version\": 1, \"run_").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("truncated"));
        std::fs::write(&p, "").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("empty"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The reader never panics, whatever the bytes: it returns a result or an error
        /// that names the file.
        #[test]
        fn reading_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("fuzz.json");
            std::fs::write(&p, &bytes).unwrap();
            if let Err(e) = load(&p) {
                proptest::prop_assert!(e.to_string().contains("fuzz.json"));
            }
        }

        /// Truncating or corrupting one byte of a valid file gives an error, not a panic.
        #[test]
        fn corrupting_a_valid_file_never_panics(cut in 0usize..4000, flip in 0usize..4000, byte in proptest::prelude::any::<u8>()) {
            let mut json = serde_json::to_vec(&sample_file()).unwrap();
            if flip < json.len() { json[flip] = byte; }
            json.truncate(cut.min(json.len()));
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("cut.json");
            std::fs::write(&p, &json).unwrap();
            let _ = load(&p);
        }

        /// Raw samples survive a save and a load bit for bit, so a saved profile
        /// predicts exactly what the live one did (serde_json's default float parser
        /// can be one ulp off; the `float_roundtrip` feature makes it exact).
        #[test]
        fn raw_samples_round_trip_bit_exactly(samples in proptest::collection::vec(1e-9f64..10.0, 1..64)) {
            let mut f = sample_file();
            f.benchmarks[0].samples_s = samples.clone();
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("exact.json");
            save(&f, &p).unwrap();
            let back = load(&p).unwrap();
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&back.benchmarks[0].samples_s), bits(&samples));
        }
    }

    fn sample_file() -> ResultFile {
        let json = serde_json::json!({
            "schema_version": 1, "run_id": "r", "created_at": "2026-01-01T00:00:00Z",
            "tool": {"name": "flopcal", "version": "0", "git_commit": "x"},
            "partial": false,
            "host": {"cpu_model": "c", "arch": "x86_64", "physical_cores": 2, "logical_cpus": 2,
                     "isa_features": [], "memory_bytes": 1, "os": "l", "kernel": "k", "device": "cpu",
                     "device_name": "c", "threads": 2, "candle_version": "0.11.1", "build_features": []},
            "harness": HarnessConfig::quick(),
            "profile": {"model": flopcal_model::builtin("bert-base").unwrap(), "seq": 128, "batch": 8,
                        "dtypes": ["f32"], "quick": true},
            "benchmarks": [{"id": "matmul/square/m8.n8.k8/f32", "kernel": "matmul", "label": "square",
                "group": "square", "dtype": "f32", "shape": {"m": 8}, "flops_per_iter": 1024,
                "model_flops_per_iter": 1024, "bytes_per_iter": 768, "iters_per_sample": 1,
                "samples_s": [1e-6, 1.1e-6], "summary": null, "verified": true,
                "verification": null, "status": "ok"}]
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_valid_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ok.json");
        let f = sample_file();
        save(&f, &p).unwrap();
        assert_eq!(load(&p).unwrap(), f);
        assert!(csv_twin(&p).exists());
    }
}
