//! The versioned result file (JSON) and its CSV twin, written atomically.
//!
//! A result file keeps everything needed to re-analyse a run later: the raw
//! per-iteration samples, the harness settings, the host fingerprint and the
//! provenance of the binary. `schema_version` is bumped on any incompatible change;
//! readers upgrade the versions they know (see [`migrate`]) and refuse others with a
//! clear message rather than guessing.
//!
//! Schema history:
//! - **1**: `summary.ci95_low_s`/`ci95_high_s` held the sampling interval *widened for
//!   between-round drift* (for multi-round runs), and could be `[min, max]` or a
//!   single point for tiny samples.
//! - **2**: `ci95_low_s`/`ci95_high_s` hold the sampling confidence interval of this
//!   run's median only (level `ci_level` ≥ 0.95, `null` when too few samples for one
//!   to exist, with `interval_note` saying so); the drift-widened interval moved to
//!   `pi95_low_s`/`pi95_high_s`, a prediction interval for the next run's median.
//!   `flops_per_s_ci_*` follow the sampling interval, `flops_per_s_pi_*` the
//!   prediction interval.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::harness::{HarnessConfig, StopReason, Summary};
use crate::{BenchError, Result};

/// Current schema version of result files.
pub const SCHEMA_VERSION: u32 = 2;

/// Name of the tool in result files.
pub const TOOL_NAME: &str = "flopcal";

/// Fewest samples the quiet rounds must hold for the statistics to rest on them alone
/// (the harness's own minimum per kernel).
pub const MIN_QUIET_SAMPLES: usize = 10;

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
    /// Lower end of the sampling confidence interval of this run's median (level
    /// `ci_level`), seconds; `None` when too few samples for one to exist.
    pub ci95_low_s: Option<f64>,
    /// Upper end of the sampling confidence interval of the median, seconds.
    pub ci95_high_s: Option<f64>,
    /// Confidence level of `ci95_*`: at least 0.95 (higher when corrected for the
    /// harness's repeated looks at the interval).
    #[serde(default = "default_level")]
    pub ci_level: f64,
    /// Lower end of the 95% prediction interval for the median of another run of
    /// this kernel on this machine: the sampling interval widened by the drift
    /// between rounds this run measured. `None` without a drift estimate (one round)
    /// or without a sampling interval.
    #[serde(default)]
    pub pi95_low_s: Option<f64>,
    /// Upper end of the 95% prediction interval, seconds.
    #[serde(default)]
    pub pi95_high_s: Option<f64>,
    /// Executed FLOPs per second at the median.
    pub flops_per_s: f64,
    /// FLOP/s at the slow end of the sampling interval.
    pub flops_per_s_ci_low: Option<f64>,
    /// FLOP/s at the fast end of the sampling interval.
    pub flops_per_s_ci_high: Option<f64>,
    /// FLOP/s at the slow end of the prediction interval.
    #[serde(default)]
    pub flops_per_s_pi_low: Option<f64>,
    /// FLOP/s at the fast end of the prediction interval.
    #[serde(default)]
    pub flops_per_s_pi_high: Option<f64>,
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
    /// Why an interval is missing, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_note: Option<String>,
}

fn default_level() -> f64 {
    0.95
}

impl BenchSummary {
    /// The file form of harness statistics of a kernel doing `flops` FLOPs and moving
    /// `bytes` bytes per iteration, without a prediction interval (see
    /// [`BenchSummary::set_prediction`]). A `converged` stop without an interval is
    /// recorded as `budget`: nothing converges on too few samples for an interval.
    pub fn from_stats(s: &Summary, stop: StopReason, flops: u64, bytes: u64) -> Self {
        let per_s = |work: u64, t: f64| if t > 0.0 { work as f64 / t } else { 0.0 };
        BenchSummary {
            median_s: s.median,
            mad_s: s.mad,
            mean_s: s.mean,
            min_s: s.min,
            max_s: s.max,
            ci95_low_s: s.ci.map(|c| c.0),
            ci95_high_s: s.ci.map(|c| c.1),
            ci_level: 1.0 - s.alpha,
            pi95_low_s: None,
            pi95_high_s: None,
            flops_per_s: per_s(flops, s.median),
            flops_per_s_ci_low: s.ci.map(|c| per_s(flops, c.1)),
            flops_per_s_ci_high: s.ci.map(|c| per_s(flops, c.0)),
            flops_per_s_pi_low: None,
            flops_per_s_pi_high: None,
            bytes_per_s: per_s(bytes, s.median),
            n: s.n,
            outliers: s.outliers,
            rel_noise: s.rel_noise(),
            stop: match (stop, s.ci) {
                (StopReason::Converged, None) => StopReason::Budget,
                (stop, _) => stop,
            },
            interval_note: s
                .ci
                .is_none()
                .then(|| crate::harness::stats::no_interval_note(s.n, s.alpha)),
        }
    }

    /// Set the prediction interval `(low, high)` seconds (and its FLOP/s twin) of a
    /// kernel doing `flops` FLOPs per iteration.
    pub fn set_prediction(&mut self, pi: (f64, f64), flops: u64) {
        let per_s = |t: f64| (t > 0.0).then(|| flops as f64 / t);
        self.pi95_low_s = Some(pi.0);
        self.pi95_high_s = Some(pi.1);
        self.flops_per_s_pi_low = per_s(pi.1);
        self.flops_per_s_pi_high = per_s(pi.0);
    }

    /// The widest interval the file holds for the median, `(low, high)` seconds: the
    /// prediction interval where there is one, else the sampling interval.
    pub fn widest_interval_s(&self) -> Option<(f64, f64)> {
        self.pi95_low_s
            .zip(self.pi95_high_s)
            .or(self.ci95_low_s.zip(self.ci95_high_s))
    }

    /// FLOP/s at the slow and fast ends of [`BenchSummary::widest_interval_s`].
    pub fn widest_flops_interval(&self) -> Option<(f64, f64)> {
        self.flops_per_s_pi_low
            .zip(self.flops_per_s_pi_high)
            .or(self.flops_per_s_ci_low.zip(self.flops_per_s_ci_high))
    }
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
    /// Per round: what the machine did while it ran (steal, other processes' CPU
    /// time, flopcal's own CPU time against the wall clock, CPU frequency; see
    /// `harness::machine`). A round whose steal or other processes' share is beyond
    /// its threshold counts as contended whatever the probe read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub round_readings: Vec<crate::harness::machine::RoundReading>,
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

    /// The rounds the statistics rest on: those that did not run under contention;
    /// every round when none was quiet (or none was judged), or when the quiet ones
    /// hold fewer than [`MIN_QUIET_SAMPLES`] samples, too few to rest an interval on
    /// (the between-round drift then widens it).
    pub fn quiet_rounds(&self) -> Vec<&[f64]> {
        let rounds = self.rounds();
        if self.round_contended.len() != rounds.len() || self.all_contended() {
            return rounds;
        }
        let quiet: Vec<&[f64]> = rounds
            .iter()
            .zip(&self.round_contended)
            .filter(|(_, &c)| !c)
            .map(|(r, _)| *r)
            .collect();
        if quiet.iter().map(|r| r.len()).sum::<usize>() < MIN_QUIET_SAMPLES {
            return rounds;
        }
        quiet
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

/// The fields every result file opens with, whatever it holds: a profile, a comm
/// sweep ([`crate::comm::CommFile`]) or a fleet ([`crate::fleet::FleetFile`]). One
/// struct, flattened into each (`#[serde(flatten)]`), so the three files name, order
/// and default these fields alike and are stamped in one place ([`FileHeader::new`]);
/// in the JSON they stay top-level fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileHeader {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// What the file holds: `comm` ([`crate::comm::COMM_KIND`]) or `fleet`
    /// ([`crate::fleet::FLEET_KIND`]); absent in a profile file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Unique id of this run ([`new_run_id`]).
    pub run_id: String,
    /// RFC 3339 creation time (UTC).
    pub created_at: String,
    /// The binary that wrote it.
    pub tool: Tool,
    /// True when the run was interrupted, is still under way or stopped early, and
    /// the file holds only what was measured so far.
    #[serde(default)]
    pub partial: bool,
    /// Why the file is partial, when the writer knows (never set in profile files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_reason: Option<String>,
}

impl FileHeader {
    /// The header of a complete file of `kind` (`None`: a profile) written by this
    /// binary now: a fresh run id and the creation time, to the second.
    pub fn new(kind: Option<&str>, now: &chrono::DateTime<chrono::Utc>) -> Self {
        FileHeader {
            schema_version: SCHEMA_VERSION,
            kind: kind.map(String::from),
            run_id: new_run_id(now),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            tool: Tool::current(),
            partial: false,
            partial_reason: None,
        }
    }
}

/// A whole result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// Schema version, run id, creation time, tool and whether the run was
    /// interrupted (no `kind`, no `partial_reason`).
    #[serde(flatten)]
    pub header: FileHeader,
    /// The machine.
    pub host: Fingerprint,
    /// Harness settings.
    pub harness: HarnessConfig,
    /// What was profiled.
    pub profile: ProfileConfig,
    /// Measured compute and bandwidth ceilings (`flopcal peak`), when run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<crate::ceilings::PeakSection>,
    /// How the run watched for contention from other tenants, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contention: Option<ContentionRecord>,
    /// Typical drift of the machine's speed between rounds of this run: the median
    /// over kernels of the standard deviation of their log round medians. Every
    /// interval of a multi-round run is widened by at least this much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_drift_sd: Option<f64>,
    /// Why the per-round machine readings lack steal and other processes' CPU time
    /// (no readable `/proc/stat` here), when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_readings_note: Option<String>,
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
        .map_err(|e| BenchError::io(path, e))?;
    fill(tmp.as_file_mut()).map_err(|e| BenchError::io(path, e))?;
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
            .map_err(|e| BenchError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| BenchError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| BenchError::io(path, e.error))?;
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
        return Err(BenchError::Usage(format!(
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
        .map_err(|e| BenchError::io(path, e))
}

/// The CSV twin of a result file path: same name with `.csv`.
pub fn csv_twin(path: &Path) -> PathBuf {
    path.with_extension("csv")
}

/// Header of the CSV form (one row per benchmark).
const CSV_HEADER: [&str; 23] = [
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
    "pi95_low_s",
    "pi95_high_s",
    "ci_level",
];

/// Render benchmarks as CSV.
pub fn to_csv(file: &ResultFile) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = csv_error;
    w.write_record(CSV_HEADER).map_err(csv_err)?;
    for b in &file.benchmarks {
        let shape = b.shape_text();
        let s = b.summary.as_ref();
        let f =
            |get: fn(&BenchSummary) -> f64| s.map(|s| format!("{:e}", get(s))).unwrap_or_default();
        let opt = |get: fn(&BenchSummary) -> Option<f64>| {
            s.and_then(get)
                .map(|x| format!("{x:e}"))
                .unwrap_or_default()
        };
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
            opt(|s| s.ci95_low_s),
            opt(|s| s.ci95_high_s),
            f(|s| s.flops_per_s),
            f(|s| s.bytes_per_s),
            s.map(|s| s.n.to_string()).unwrap_or_default(),
            s.map(|s| s.outliers.to_string()).unwrap_or_default(),
            f(|s| s.rel_noise),
            b.verified.to_string(),
            status,
            file.header.partial.to_string(),
            opt(|s| s.pi95_low_s),
            opt(|s| s.pi95_high_s),
            f(|s| s.ci_level),
        ])
        .map_err(csv_err)?;
    }
    csv_text(w)
}

/// Write the JSON result file and its CSV twin, both atomically, the twin first: a
/// process killed between the two leaves no JSON without its CSV (a run killed right
/// after its first checkpoint lost the CSV in a CI run).
pub fn save(file: &ResultFile, path: &Path) -> Result<PathBuf> {
    let json = serde_json::to_vec_pretty(file)
        .map_err(|e| BenchError::Usage(format!("cannot serialise results: {e}")))?;
    let twin = csv_twin(path);
    if twin != path {
        write_atomic(&twin, to_csv(file)?.as_bytes())?;
    }
    write_atomic(path, &json)?;
    Ok(twin)
}

/// Read and validate a result file: JSON of the current schema version, or of schema
/// 1, which is upgraded in memory (see [`migrate`]) with a note on stderr naming the
/// command that rewrites the file.
pub fn load(path: &Path) -> Result<ResultFile> {
    let (file, from) = load_any(path)?;
    if from != SCHEMA_VERSION {
        eprintln!(
            "note: {} is result schema {from}; read as schema {SCHEMA_VERSION} (its intervals were moved and recomputed from the raw samples). `flopcal migrate {} NEW.json` writes the upgraded file.",
            path.display(),
            path.display()
        );
    }
    Ok(file)
}

/// Read a result file of any supported schema, upgraded to the current one; also
/// returns the schema version the file was written in.
pub fn load_any(path: &Path) -> Result<(ResultFile, u32)> {
    let bytes = std::fs::read(path).map_err(|e| BenchError::io(path, e))?;
    let bad = |reason: String| BenchError::BadFile {
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
    let mut value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("not valid JSON ({e}); was the file truncated?")))?;
    let from = match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(SCHEMA_VERSION) => SCHEMA_VERSION,
        Some(1) => {
            migrate::v1_fields_to_v2(&mut value);
            1
        }
        Some(v) => {
            return Err(bad(format!(
                "schema_version {v} is not supported by this flopcal (reads versions 1 and {SCHEMA_VERSION}); re-run the profile with this version"
            )))
        }
        None => {
            return Err(bad(
                "no `schema_version` field; not a flopcal result file".into(),
            ))
        }
    };
    let mut file: ResultFile = serde_json::from_value(value)
        .map_err(|e| bad(format!("does not match the result schema: {e}")))?;
    if from == 1 {
        migrate::recompute_sampling_intervals(&mut file);
    }
    Ok((file, from))
}

pub mod migrate {
    //! Upgrading older result files to the current schema.
    //!
    //! 1 → 2: the interval schema 1 stored in `ci95_*` (drift-widened for multi-round
    //! runs) becomes the prediction interval `pi95_*`; the sampling interval `ci95_*`
    //! is recomputed from the raw samples of the quiet rounds with the current
    //! harness statistics ([`crate::harness::stats::sampling_ci`]), at the level the
    //! file's own harness plan implies. Nothing measured is lost or changed.

    use super::{ResultFile, SCHEMA_VERSION};
    use crate::harness;

    /// Rename the schema-1 interval fields in place (JSON level) and set the version.
    pub(super) fn v1_fields_to_v2(value: &mut serde_json::Value) {
        value["schema_version"] = SCHEMA_VERSION.into();
        let Some(benches) = value.get_mut("benchmarks").and_then(|b| b.as_array_mut()) else {
            return;
        };
        for b in benches {
            let Some(s) = b.get_mut("summary").and_then(|s| s.as_object_mut()) else {
                continue;
            };
            for (old, new) in [
                ("ci95_low_s", "pi95_low_s"),
                ("ci95_high_s", "pi95_high_s"),
                ("flops_per_s_ci_low", "flops_per_s_pi_low"),
                ("flops_per_s_ci_high", "flops_per_s_pi_high"),
            ] {
                if let Some(v) = s.remove(old) {
                    s.insert(new.into(), v);
                }
                s.insert(old.into(), serde_json::Value::Null);
            }
        }
    }

    /// Recompute every sampling interval of an upgraded file from its raw samples.
    pub(super) fn recompute_sampling_intervals(file: &mut ResultFile) {
        let round_cfg = harness::round_config(&file.harness, file.profile.rounds.max(1));
        let alpha = harness::look_alpha(&round_cfg);
        for b in &mut file.benchmarks {
            let flops = b.flops_per_iter as f64;
            let ci = harness::stats::sampling_ci(&b.quiet_rounds(), alpha);
            let n = b.quiet_samples().len();
            let Some(s) = b.summary.as_mut() else {
                continue;
            };
            let rate = |t: f64| (t > 0.0).then(|| flops / t);
            s.ci_level = 1.0 - alpha;
            s.ci95_low_s = ci.map(|c| c.0);
            s.ci95_high_s = ci.map(|c| c.1);
            s.flops_per_s_ci_low = ci.and_then(|c| rate(c.1));
            s.flops_per_s_ci_high = ci.and_then(|c| rate(c.0));
            if ci.is_none() {
                s.interval_note = Some(harness::stats::no_interval_note(n, alpha));
                if s.stop == harness::StopReason::Converged {
                    s.stop = harness::StopReason::Budget;
                }
            }
        }
    }

    /// Upgrade a file read by [`super::load_any`] for writing: nothing to do beyond
    /// what loading did, but kept as the one place the version is set.
    pub fn upgraded(mut file: ResultFile) -> ResultFile {
        file.header.schema_version = SCHEMA_VERSION;
        file
    }
}

/// The error of writing CSV into memory.
pub fn csv_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Usage(format!("cannot write CSV: {e}"))
}

/// The text of a CSV writer that wrote into memory.
pub fn csv_text(w: csv::Writer<Vec<u8>>) -> Result<String> {
    String::from_utf8(w.into_inner().map_err(csv_error)?).map_err(csv_error)
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
        std::fs::write(&p, "{\"schema_version\": 2, \"run_").unwrap();
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
            "schema_version": 2, "run_id": "r", "created_at": "2026-01-01T00:00:00Z",
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
    fn a_schema_1_file_loads_with_its_interval_as_the_prediction_interval_and_a_fresh_sampling_ci()
    {
        let mut v = serde_json::to_value(sample_file()).unwrap();
        v["schema_version"] = 1.into();
        v["profile"]["rounds"] = 3.into();
        let samples: Vec<f64> = (0..30).map(|i| 1e-3 * (1.0 + 0.001 * i as f64)).collect();
        let b = &mut v["benchmarks"][0];
        b["samples_s"] = serde_json::json!(samples);
        b["round_sizes"] = serde_json::json!([10, 10, 10]);
        b["summary"] = serde_json::json!({"median_s": 1.0145e-3, "mad_s": 1e-6, "mean_s": 1.0145e-3,
            "min_s": 1e-3, "max_s": 1.029e-3, "ci95_low_s": 0.9e-3, "ci95_high_s": 1.1e-3,
            "flops_per_s": 1.0e9, "flops_per_s_ci_low": 0.93e9, "flops_per_s_ci_high": 1.1e9,
            "bytes_per_s": 0.0, "n": 30, "outliers": 0, "rel_noise": 0.01, "stop": "converged"});
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.json");
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        let (f, from) = load_any(&p).unwrap();
        assert_eq!((from, f.header.schema_version), (1, SCHEMA_VERSION));
        let s = f.benchmarks[0].summary.as_ref().unwrap();
        assert_eq!((s.pi95_low_s, s.pi95_high_s), (Some(0.9e-3), Some(1.1e-3)));
        assert_eq!(s.flops_per_s_pi_low, Some(0.93e9));
        let (lo, hi) = (s.ci95_low_s.unwrap(), s.ci95_high_s.unwrap());
        assert!(
            1e-3 <= lo && lo < s.median_s && s.median_s < hi && hi <= 1.029e-3,
            "{s:?}"
        );
        assert!(s.ci_level >= 0.95);
        assert_eq!(s.stop, StopReason::Converged);
        // Written back, it is a current file that loads unchanged.
        save(&migrate::upgraded(f.clone()), &p).unwrap();
        assert_eq!(load_any(&p).unwrap(), (f, SCHEMA_VERSION));
    }

    #[test]
    fn a_schema_1_summary_on_too_few_samples_loses_its_interval_and_its_convergence() {
        let mut v = serde_json::to_value(sample_file()).unwrap();
        v["schema_version"] = 1.into();
        v["benchmarks"][0]["summary"] = serde_json::json!({"median_s": 1.05e-6, "mad_s": 0.0,
            "mean_s": 1.05e-6, "min_s": 1e-6, "max_s": 1.1e-6, "ci95_low_s": 1e-6,
            "ci95_high_s": 1.1e-6, "flops_per_s": 1.0e9, "flops_per_s_ci_low": 0.9e9,
            "flops_per_s_ci_high": 1.0e9, "bytes_per_s": 0.0, "n": 2, "outliers": 0,
            "rel_noise": 0.0, "stop": "converged"});
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.json");
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        let s = load(&p).unwrap().benchmarks[0].summary.clone().unwrap();
        assert_eq!((s.ci95_low_s, s.ci95_high_s), (None, None));
        assert!(s.interval_note.unwrap().contains("needs at least"));
        assert_eq!(s.stop, StopReason::Budget);
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
