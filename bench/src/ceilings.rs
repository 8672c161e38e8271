//! The machine's measured ceilings: peak FLOP/s per ISA and dtype, memory bandwidth
//! (DRAM and cache-resident), a cross-check against an independent C microbenchmark,
//! and the roofline helpers `profile` uses to put every kernel against them.
//!
//! The kernels live in [`flopcal_kernels::ceilings`]; this module decides how much work to
//! run, how many repetitions, and which statistic to report:
//!
//! - each measurement is calibrated so one repetition lasts `duration / 40` (5–25 ms),
//!   then repeated to fill `duration` after one warm-up repetition;
//! - the **peak** is the best repetition (a ceiling is what the machine *can* do; a
//!   shared VM only ever makes a repetition slower), and the median is kept beside it;
//! - per-core = total / threads, with one pinned thread per physical core.
//!
//! The result is a [`PeakSection`], the `peak` section of a result file.

use std::path::Path;

use flopcal_kernels::ceilings::{
    self as kernel_ceilings,
    stream::{StreamConfig, StreamKind},
    Dtype, FmaConfig, Isa, IsaLimit,
};
use serde::{Deserialize, Serialize};

/// Schema version of [`PeakSection`].
pub const PEAK_SCHEMA_VERSION: u32 = 1;

/// Relative tolerance of the flopcal / C-reference cross-check.
pub const REFERENCE_TOLERANCE: f64 = 0.10;

/// How to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakOptions {
    /// Target seconds per measurement (each ISA × dtype, each bandwidth kernel).
    pub duration_s: f64,
    /// Worker threads (one per physical core by default).
    pub threads: usize,
    /// Widest ISA allowed (lower it to force the fallback path).
    pub limit: IsaLimit,
    /// Run the C reference cross-check (where it is built and the CPU has its ISA).
    pub reference: bool,
    /// Total DRAM working set in bytes; `None` picks max(256 MiB, 8 × LLC).
    pub dram_bytes: Option<u64>,
    /// Measure only the widest available ISA per dtype (all a roofline needs; much
    /// faster). The narrower ones are listed as skipped.
    pub widest_only: bool,
}

impl PeakOptions {
    /// Defaults for this machine: 1 s per measurement, one thread per physical core.
    pub fn new() -> Self {
        PeakOptions {
            duration_s: 1.0,
            threads: crate::device::physical_cores(),
            limit: IsaLimit::Native,
            reference: true,
            dram_bytes: None,
            widest_only: false,
        }
    }
}

impl Default for PeakOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Roofline class of a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Arithmetic intensity at or above the ridge point: limited by FLOP/s.
    Compute,
    /// Arithmetic intensity below the ridge point: limited by memory bandwidth.
    Memory,
}

impl Bound {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::Compute => "compute",
            Bound::Memory => "memory",
        }
    }
}

/// Measured peak of one (ISA, dtype) microkernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputePeak {
    /// ISA path (`scalar`, `avx2-fma`, `avx512-fma`, `avx512-bf16`, `neon-fma`).
    pub isa: String,
    /// Element type (`f32`, `f64`, `bf16`).
    pub dtype: String,
    /// Pinned worker threads.
    pub threads: usize,
    /// Whether every thread was pinned to its own physical core.
    pub pinned: bool,
    /// FLOPs of one repetition, all threads.
    pub flops_per_rep: u64,
    /// Raw wall time of each timed repetition, seconds.
    pub samples_s: Vec<f64>,
    /// Peak total FLOP/s (best repetition).
    pub total_flops_per_s: f64,
    /// Peak FLOP/s per core (total / threads).
    pub per_core_flops_per_s: f64,
    /// Total FLOP/s of the median repetition.
    pub median_total_flops_per_s: f64,
    /// Per-core FLOP per cycle at the clock the OS reports (a nominal figure: turbo
    /// makes it exceed the hardware's FLOP/cycle), if the clock is known.
    pub flops_per_cycle_at_reported_clock: Option<f64>,
    /// Every kernel call matched its closed-form result.
    pub verified: bool,
}

/// A microkernel that did not run, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// ISA path.
    pub isa: String,
    /// Element type.
    pub dtype: String,
    /// Why it was skipped (CPU lacks the feature, forced fallback, ...).
    pub reason: String,
}

/// Measured bandwidth of one STREAM kernel at one working-set size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandwidthPeak {
    /// `copy` or `triad`.
    pub kind: String,
    /// `dram` (working set well beyond the last-level cache) or `cache` (resident in
    /// each core's private cache).
    pub level: String,
    /// Bytes of all arrays of all threads.
    pub working_set_bytes: u64,
    /// Pinned worker threads.
    pub threads: usize,
    /// Code path of the loops (`avx512`, `avx2`, or the baseline `sse2` / `neon`).
    pub isa: String,
    /// Bytes counted per repetition (STREAM convention: copy 16, triad 24 per element;
    /// write-allocate traffic not counted).
    pub bytes_per_rep: u64,
    /// Raw wall time of each timed repetition, seconds.
    pub samples_s: Vec<f64>,
    /// Peak bytes/s (best repetition).
    pub bytes_per_s: f64,
    /// Bytes/s of the median repetition.
    pub median_bytes_per_s: f64,
    /// Output arrays checked after the run.
    pub verified: bool,
}

/// flopcal's FMA measurement against the independent C microbenchmark, same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceCheck {
    /// ISA path compared.
    pub isa: String,
    /// Element type compared.
    pub dtype: String,
    /// Threads (the same for both).
    pub threads: usize,
    /// flopcal's best total FLOP/s in the interleaved rounds.
    pub flopcal_flops_per_s: f64,
    /// The C reference's best total FLOP/s in the same rounds.
    pub reference_flops_per_s: f64,
    /// flopcal / reference.
    pub ratio: f64,
    /// Whether `|ratio − 1| ≤` [`REFERENCE_TOLERANCE`].
    pub within_tolerance: bool,
    /// Interleaved rounds run (8, more if the ratio was off).
    #[serde(default)]
    pub rounds: usize,
    /// How the reference was built and timed.
    pub note: String,
}

/// Spec (data-sheet) peak of the chip, where known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecPeak {
    /// `known` or `unknown`.
    pub status: String,
    /// Spec FLOP/s per dtype, when known.
    pub flops_per_s: Vec<(String, f64)>,
    /// Where the figure comes from, or why there is none.
    pub note: String,
}

/// GPU peak (best large GEMM per dtype next to the spec figure); CUDA builds only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuPeak {
    /// Device name.
    pub device: String,
    /// Element type.
    pub dtype: String,
    /// GEMM size (m = n = k).
    pub size: usize,
    /// Best measured FLOP/s.
    pub flops_per_s: f64,
    /// Spec FLOP/s, when the catalog knows the chip.
    pub spec_flops_per_s: Option<f64>,
}

/// The `peak` section of a result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakSection {
    /// [`PEAK_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// CPU model string.
    pub cpu_model: String,
    /// CPU architecture.
    pub arch: String,
    /// Physical cores of the machine.
    pub physical_cores: usize,
    /// Worker threads used.
    pub threads: usize,
    /// The `--max-isa` limit in force.
    pub max_isa: String,
    /// Relevant CPU features detected at run time.
    pub cpu_features: Vec<String>,
    /// Clock the OS reports for CPU 0, MHz (nominal on most VMs), if known.
    pub reported_clock_mhz: Option<u64>,
    /// Target seconds per measurement.
    pub duration_s: f64,
    /// The machine's 1-minute load average when the measurement started (Unix), so a
    /// reader can tell a busy machine's low figures from a slow one's.
    #[serde(default)]
    pub load_average_1m: Option<f64>,
    /// Measured FLOP/s per (ISA, dtype).
    pub compute: Vec<ComputePeak>,
    /// Microkernels not run, with the reason.
    pub skipped: Vec<Skipped>,
    /// Measured bandwidth per (kind, level).
    pub bandwidth: Vec<BandwidthPeak>,
    /// The C reference cross-check of the FMA kernel, if run.
    pub reference: Option<ReferenceCheck>,
    /// The C reference cross-checks of the AMX tile kernels (bf16, int8), where the
    /// CPU and OS allow AMX.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tile_reference: Vec<ReferenceCheck>,
    /// Spec peak of the CPU.
    pub spec: SpecPeak,
    /// GPU peaks (empty unless built with CUDA and a GPU is present).
    #[serde(default)]
    pub gpu: Vec<GpuPeak>,
}

impl PeakSection {
    /// The CPU path with the highest measured total for `dtype`: that dtype's
    /// ceiling (for `int8` the figure is integer ops per second, not FLOP/s).
    pub fn best_path(&self, dtype: &str) -> Option<&ComputePeak> {
        let want = normalise_dtype(dtype);
        self.compute
            .iter()
            .filter(|c| c.dtype == want)
            .max_by(|a, b| a.total_flops_per_s.total_cmp(&b.total_flops_per_s))
    }

    /// Why a microkernel of `isa` and `dtype` was skipped, if it was.
    pub fn skip_reason(&self, isa: &str, dtype: &str) -> Option<&str> {
        self.skipped
            .iter()
            .find(|k| k.isa == isa && k.dtype == dtype)
            .map(|k| k.reason.as_str())
    }

    /// Best measured total FLOP/s for `dtype` (`f32`, `f64`, `bf16`; `fp32`-style
    /// spellings accepted) over every ISA, CPU and GPU; `None` if nothing was measured.
    pub fn best_flops(&self, dtype: &str) -> Option<f64> {
        let want = normalise_dtype(dtype);
        self.compute
            .iter()
            .filter(|c| c.dtype == want)
            .map(|c| c.total_flops_per_s)
            .chain(
                self.gpu
                    .iter()
                    .filter(|g| g.dtype == want)
                    .map(|g| g.flops_per_s),
            )
            .fold(None, |best: Option<f64>, x| {
                Some(best.map_or(x, |b| b.max(x)))
            })
    }

    /// Spec FLOP/s for `dtype`, if known.
    pub fn spec_flops(&self, dtype: &str) -> Option<f64> {
        let want = normalise_dtype(dtype);
        self.spec
            .flops_per_s
            .iter()
            .find(|(d, _)| *d == want)
            .map(|(_, f)| *f)
    }

    /// Measured DRAM bandwidth, bytes/s: the triad figure (the roofline convention),
    /// or copy if triad was not measured.
    pub fn dram_bandwidth(&self) -> Option<f64> {
        self.bandwidth_at("dram")
    }

    /// Measured cache-resident bandwidth, bytes/s (triad, else copy).
    pub fn cache_bandwidth(&self) -> Option<f64> {
        self.bandwidth_at("cache")
    }

    fn bandwidth_at(&self, level: &str) -> Option<f64> {
        let at = |kind: &str| {
            self.bandwidth
                .iter()
                .find(|b| b.level == level && b.kind == kind)
                .map(|b| b.bytes_per_s)
        };
        at("triad").or_else(|| at("copy"))
    }

    /// Ridge point of the roofline for `dtype`: peak FLOP/s ÷ DRAM bytes/s, in FLOP
    /// per byte. Kernels below it are memory-bound.
    pub fn ridge_point(&self, dtype: &str) -> Option<f64> {
        let bw = self.dram_bandwidth().filter(|b| *b > 0.0)?;
        Some(self.best_flops(dtype)? / bw)
    }

    /// Roofline class of a kernel with arithmetic `intensity` (FLOP/byte) in `dtype`;
    /// `None` when the ridge point is unknown (no peak or bandwidth measured).
    pub fn classify(&self, intensity: f64, dtype: &str) -> Option<Bound> {
        let ridge = self.ridge_point(dtype)?;
        Some(if intensity >= ridge {
            Bound::Compute
        } else {
            Bound::Memory
        })
    }

    /// Attainable FLOP/s at `intensity` under the roofline: min(peak, intensity × DRAM
    /// bandwidth).
    pub fn attainable_flops(&self, intensity: f64, dtype: &str) -> Option<f64> {
        let peak = self.best_flops(dtype)?;
        let bw = self.dram_bandwidth()?;
        Some(peak.min(intensity * bw))
    }

    /// `achieved` FLOP/s as a percentage of the measured peak for `dtype`.
    pub fn percent_of_peak(&self, achieved: f64, dtype: &str) -> Option<f64> {
        let peak = self.best_flops(dtype).filter(|p| *p > 0.0)?;
        Some(100.0 * achieved / peak)
    }

    /// `achieved` FLOP/s as a percentage of the spec peak for `dtype`, if known.
    pub fn percent_of_spec(&self, achieved: f64, dtype: &str) -> Option<f64> {
        let spec = self.spec_flops(dtype).filter(|p| *p > 0.0)?;
        Some(100.0 * achieved / spec)
    }

    /// Read the `peak` section from a JSON file: either a result file with a
    /// top-level `peak` key or a bare section.
    pub fn from_file(path: &Path) -> crate::Result<PeakSection> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::BenchError::io(path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| crate::BenchError::BadFile {
                path: path.to_path_buf(),
                reason: format!("not JSON: {e}"),
            })?;
        let section = value.get("peak").cloned().unwrap_or(value);
        serde_json::from_value(section).map_err(|e| crate::BenchError::BadFile {
            path: path.to_path_buf(),
            reason: format!("no valid `peak` section ({e}); run `flopcal peak --out FILE`"),
        })
    }
}

/// `fp32` → `f32` and so on; unknown names pass through lower-cased.
fn normalise_dtype(dtype: &str) -> String {
    match dtype.trim().to_ascii_lowercase().as_str() {
        "fp32" | "float32" | "float" => "f32".into(),
        "fp64" | "float64" | "double" => "f64".into(),
        "bfloat16" => "bf16".into(),
        "fp16" | "float16" | "half" => "f16".into(),
        other => other.into(),
    }
}

fn best_and_median(samples: &[f64]) -> (f64, f64) {
    let positive: Vec<f64> = samples.iter().copied().filter(|x| *x > 0.0).collect();
    let s = crate::harness::stats::sorted(&positive);
    match s.first() {
        Some(&best) => (best, crate::harness::stats::median_sorted(&s)),
        None => (f64::NAN, f64::NAN),
    }
}

/// Seconds per repetition and number of repetitions for a measurement of `duration_s`.
/// Repetitions are short (5–25 ms) and many: on a shared machine a short repetition
/// has a fair chance to run undisturbed, and the peak is the best one.
fn rep_plan(duration_s: f64) -> (f64, usize) {
    let rep_s = (duration_s / 40.0).clamp(0.005, 0.025);
    let reps = ((duration_s / rep_s).round() as usize).clamp(5, 400);
    (rep_s, reps)
}

fn kernel_err(e: kernel_ceilings::PeakError) -> crate::BenchError {
    crate::BenchError::Device(e.to_string())
}

/// Iterations per thread so one repetition of `(isa, dtype)` lasts about `rep_s`:
/// grow the work ×4 until a repetition takes at least `rep_s / 8`, then scale.
fn calibrate_fma(isa: Isa, dtype: Dtype, opts: &PeakOptions, rep_s: f64) -> crate::Result<u64> {
    let mut iterations = kernel_ceilings::CHUNK / 16;
    let mut warmup_reps = 1;
    loop {
        let m = kernel_ceilings::fma_peak(&FmaConfig {
            isa,
            dtype,
            threads: opts.threads,
            iterations,
            reps: 2,
            warmup_reps,
            limit: opts.limit,
        })
        .map_err(kernel_err)?;
        warmup_reps = 0;
        let (best, _) = best_and_median(&m.samples_s);
        if best >= rep_s / 8.0 || iterations >= 1 << 40 {
            return Ok(((rep_s / best) * iterations as f64).clamp(1.0, 1e13) as u64);
        }
        iterations *= 4;
    }
}

fn measure_fma(isa: Isa, dtype: Dtype, opts: &PeakOptions) -> crate::Result<ComputePeak> {
    let (rep_s, reps) = rep_plan(opts.duration_s);
    let iterations = calibrate_fma(isa, dtype, opts, rep_s)?;
    let m = kernel_ceilings::fma_peak(&FmaConfig {
        isa,
        dtype,
        threads: opts.threads,
        iterations,
        reps,
        warmup_reps: 1,
        limit: opts.limit,
    })
    .map_err(kernel_err)?;
    let (best, median) = best_and_median(&m.samples_s);
    let total = m.flops_per_rep as f64 / best;
    let per_core = total / m.threads as f64;
    Ok(ComputePeak {
        isa: isa.as_str().into(),
        dtype: dtype.as_str().into(),
        threads: m.threads,
        pinned: m.pinned,
        flops_per_rep: m.flops_per_rep,
        samples_s: m.samples_s,
        total_flops_per_s: total,
        per_core_flops_per_s: per_core,
        median_total_flops_per_s: m.flops_per_rep as f64 / median,
        flops_per_cycle_at_reported_clock: reported_clock_mhz()
            .map(|mhz| per_core / (mhz as f64 * 1e6)),
        verified: m.verified,
    })
}

/// Sizes of the last-level cache and of one core's L2 from sysfs (Linux), bytes.
fn cache_sizes() -> (Option<u64>, Option<u64>) {
    let caches = flopcal_kernels::cpu_cache::cpu0_caches();
    let data = caches.iter().filter(|c| !c.instruction);
    let llc = data.clone().map(|c| c.bytes).max();
    let l2 = data.filter(|c| c.level == 2).map(|c| c.bytes).next_back();
    (llc, l2)
}

fn measure_stream(
    kind: StreamKind,
    level: &str,
    bytes_per_thread: usize,
    opts: &PeakOptions,
) -> crate::Result<BandwidthPeak> {
    let (rep_s, reps) = rep_plan(opts.duration_s);
    let cfg = |passes: usize, reps: usize, warmup_reps: usize| StreamConfig {
        kind,
        bytes_per_thread,
        threads: opts.threads,
        passes,
        reps,
        warmup_reps,
        limit: opts.limit,
    };
    // Size the repetitions: grow the passes ×4 until a repetition takes at least
    // rep_s / 8 (the first probe's warm-up repetition is the first touch).
    let mut passes = 1usize;
    let mut warmup_reps = 1;
    let per_pass = loop {
        let probe =
            kernel_ceilings::stream::stream(&cfg(passes, 2, warmup_reps)).map_err(kernel_err)?;
        warmup_reps = 0;
        let (best, _) = best_and_median(&probe.samples_s);
        if best >= rep_s / 8.0 || passes >= 1 << 24 {
            break best / passes as f64;
        }
        passes *= 4;
    };
    let passes = ((rep_s / per_pass).round() as usize).max(1);
    let reps = if passes == 1 {
        // DRAM: one pass may already exceed rep_s; fit the repetitions in the duration.
        ((opts.duration_s / per_pass).round() as usize).clamp(3, reps)
    } else {
        reps
    };
    let m = kernel_ceilings::stream::stream(&cfg(passes, reps, 1)).map_err(kernel_err)?;
    let (best, median) = best_and_median(&m.samples_s);
    Ok(BandwidthPeak {
        kind: kind.as_str().into(),
        level: level.into(),
        working_set_bytes: m.working_set_bytes,
        threads: m.threads,
        isa: m.code_path().into(),
        bytes_per_rep: m.bytes_per_rep,
        samples_s: m.samples_s,
        bytes_per_s: m.bytes_per_rep as f64 / best,
        median_bytes_per_s: m.bytes_per_rep as f64 / median,
        verified: m.verified,
    })
}

/// flopcal vs the C reference for the widest FMA kernel (f32) and for each AMX tile
/// kernel the CPU and OS allow: `(fma, tiles)`.
#[cfg(target_arch = "x86_64")]
fn reference_checks(
    opts: &PeakOptions,
) -> crate::Result<(Option<ReferenceCheck>, Vec<ReferenceCheck>)> {
    use flopcal_kernels::ceilings::reference::RefKernel;
    let fma = match RefKernel::best_for(Dtype::F32) {
        Some(k) => reference_check(opts, k)?,
        None => None,
    };
    let mut tiles = Vec::new();
    for dtype in [Dtype::Bf16, Dtype::Int8] {
        if let Some(k) = RefKernel::best_for(dtype) {
            tiles.extend(reference_check(opts, k)?);
        }
    }
    Ok((fma, tiles))
}

#[cfg(not(target_arch = "x86_64"))]
fn reference_checks(
    _opts: &PeakOptions,
) -> crate::Result<(Option<ReferenceCheck>, Vec<ReferenceCheck>)> {
    Ok((None, Vec::new()))
}

/// flopcal vs the C reference `kernel`, interleaved rounds so both see the same
/// machine state; best repetition of each.
#[cfg(target_arch = "x86_64")]
fn reference_check(
    opts: &PeakOptions,
    kernel: flopcal_kernels::ceilings::reference::RefKernel,
) -> crate::Result<Option<ReferenceCheck>> {
    use flopcal_kernels::ceilings::reference;
    let (isa, dtype) = kernel.counterpart();
    if kernel_ceilings::availability(isa, dtype, opts.limit).is_err() {
        return Ok(None);
    }
    let (rep_s, _) = rep_plan(opts.duration_s);
    let iterations = calibrate_fma(isa, dtype, opts, rep_s)?;
    let (mut ours, mut theirs) = (0.0f64, 0.0f64);
    let mut rounds = 0;
    // Rounds of (flopcal, reference); each side's figure is its best repetition over
    // all rounds. A busy moment can hold one side down; if the ratio is off, up to 16
    // more rounds refine both ceilings (more samples of the same estimator).
    while rounds < 8 || (rounds < 24 && ((ours / theirs) - 1.0).abs() > REFERENCE_TOLERANCE) {
        rounds += 1;
        let m = kernel_ceilings::fma_peak(&FmaConfig {
            isa,
            dtype,
            threads: opts.threads,
            iterations,
            reps: 2,
            warmup_reps: 1,
            limit: opts.limit,
        })
        .map_err(kernel_err)?;
        ours = ours.max(m.flops_per_rep as f64 / best_and_median(&m.samples_s).0);
        // Same FLOPs per repetition for the reference.
        let ref_iters = (iterations * kernel_ceilings::flops_per_iteration(isa, dtype))
            .div_ceil(kernel.flops_per_iteration())
            .max(100_000);
        let r = reference::run(kernel, opts.threads, ref_iters, 2, 1).map_err(kernel_err)?;
        theirs = theirs.max(r.flops_per_rep as f64 / best_and_median(&r.samples_s).0);
    }
    let ratio = ours / theirs;
    Ok(Some(ReferenceCheck {
        isa: isa.as_str().into(),
        dtype: dtype.as_str().into(),
        threads: opts.threads,
        flopcal_flops_per_s: ours,
        reference_flops_per_s: theirs,
        ratio,
        within_tolerance: (ratio - 1.0).abs() <= REFERENCE_TOLERANCE,
        rounds,
        note: format!(
            "kernels/csrc/{} (system C compiler, -O2, target attribute), \
             own operands and clock_gettime timing; same pinned threads; \
             best repetition of each over 8 (up to 24 if the ratio is off) interleaved rounds",
            if matches!(isa, Isa::Amx | Isa::AmxInt8) {
                "amx_ref.c, AMX intrinsics"
            } else {
                "fma_ref.c, own accumulators"
            }
        ),
    }))
}

/// Best FLOP/s of a square `n×n · n×n` matmul in `dtype` on `device` over `sizes`:
/// `(best size, best FLOP/s)`. Inputs are random normal, allocated outside the timed
/// region; each size gets one warm-up and then repetitions for about `duration_s`, the
/// device synchronised before every clock read. One output element is checked against
/// an f64 dot product of the very inputs (loose bound for half precision), so a wrong
/// or skipped GEMM fails.
pub fn gemm_peak(
    device: &candle_core::Device,
    dtype: candle_core::DType,
    sizes: &[usize],
    duration_s: f64,
) -> crate::Result<(usize, f64)> {
    use candle_core::{IndexOp, Tensor};
    let err = |e: candle_core::Error| crate::BenchError::Device(format!("GEMM peak: {e}"));
    let mut best = (0usize, 0.0f64);
    for &n in sizes {
        let a = Tensor::randn(0f32, 1f32, (n, n), device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(err)?;
        let b = Tensor::randn(0f32, 1f32, (n, n), device)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(err)?;
        let c = a.matmul(&b).map_err(err)?;
        device.synchronize().map_err(err)?;
        // Check c[0][0] against an f64 dot product of row 0 of a and column 0 of b.
        let row: Vec<f64> = a
            .i((0, ..))
            .and_then(|t| t.to_dtype(candle_core::DType::F64))
            .and_then(|t| t.to_vec1())
            .map_err(err)?;
        let col: Vec<f64> = b
            .i((.., 0))
            .and_then(|t| t.to_dtype(candle_core::DType::F64))
            .and_then(|t| t.to_vec1())
            .map_err(err)?;
        let got: f64 = c
            .i((0, 0))
            .and_then(|t| t.to_dtype(candle_core::DType::F64))
            .and_then(|t| t.to_scalar())
            .map_err(err)?;
        let want: f64 = row.iter().zip(&col).map(|(x, y)| x * y).sum();
        let scale: f64 = row.iter().zip(&col).map(|(x, y)| (x * y).abs()).sum();
        if (got - want).abs() > 0.02 * scale + 1e-3 {
            return Err(crate::BenchError::Device(format!(
                "GEMM peak {dtype:?} n={n}: c[0][0] = {got}, expected {want}"
            )));
        }
        let flops = 2.0 * (n as f64).powi(3);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(duration_s);
        let mut reps = 0;
        while reps < 3 || (std::time::Instant::now() < deadline && reps < 1000) {
            let t0 = std::time::Instant::now();
            let c = a.matmul(&b).map_err(err)?;
            device.synchronize().map_err(err)?;
            let t = t0.elapsed().as_secs_f64();
            drop(c);
            if t > 0.0 && flops / t > best.1 {
                best = (n, flops / t);
            }
            reps += 1;
        }
    }
    Ok(best)
}

/// The catalog entry for a GPU name as `nvidia-smi` prints it, where the mapping is
/// unambiguous (SXM parts only: PCIe parts have lower peaks and no entry).
fn catalog_name_for_gpu(name: &str) -> Option<&'static str> {
    let n = name.to_ascii_lowercase();
    let sxm = n.contains("sxm") || n.contains("hbm3");
    if n.contains("h100") && sxm {
        Some("h100-sxm")
    } else if n.contains("h200") && !n.contains("nvl") {
        // The SXM part is plain "NVIDIA H200"; the PCIe card is "NVIDIA H200 NVL".
        Some("h200")
    } else if n.contains("a100") && n.contains("sxm") {
        Some("a100-sxm")
    } else if n.contains("v100") && n.contains("sxm2") {
        Some("v100-sxm2")
    } else if n.contains("p100") && n.contains("sxm2") {
        Some("p100-sxm2")
    } else {
        None
    }
}

/// GPU ceilings: the best large f16, bf16 and f32 GEMM on CUDA device 0 with the spec
/// figure beside it. Empty unless built with the `cuda` feature and a GPU is present.
fn gpu_peaks(opts: &PeakOptions, progress: &mut impl FnMut(&str)) -> crate::Result<Vec<GpuPeak>> {
    if !cfg!(feature = "cuda") {
        return Ok(Vec::new());
    }
    let Ok(device) = candle_core::Device::new_cuda(0) else {
        return Ok(Vec::new());
    };
    let name = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "--id=0"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "cuda:0".into());
    let hw = catalog_name_for_gpu(&name)
        .and_then(|n| flopcal_model::Catalog::embedded().hardware(n).ok());
    let mut out = Vec::new();
    for (dtype, label, catalog_dtype) in [
        (candle_core::DType::F16, "f16", "fp16"),
        (candle_core::DType::BF16, "bf16", "bf16"),
        (candle_core::DType::F32, "f32", "fp32"),
    ] {
        progress(&format!("peak: GPU {label} GEMM on {name}"));
        let (size, flops) = gemm_peak(&device, dtype, &[4096, 8192], opts.duration_s)?;
        out.push(GpuPeak {
            device: name.clone(),
            dtype: label.into(),
            size,
            flops_per_s: flops,
            spec_flops_per_s: hw.and_then(|h| h.peak_flops(Some(catalog_dtype)).ok()),
        });
    }
    Ok(out)
}

fn cpu_info() -> (String, Option<u64>) {
    use sysinfo::{CpuRefreshKind, RefreshKind, System};
    let sys = System::new_with_specifics(
        RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing().with_frequency()),
    );
    let cpu = sys.cpus().first();
    let model = cpu
        .map(|c| c.brand().trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown CPU".into());
    let mhz = cpu.map(|c| c.frequency()).filter(|f| *f > 0);
    (model, mhz)
}

fn reported_clock_mhz() -> Option<u64> {
    cpu_info().1
}

fn spec_for(cpu_model: &str) -> SpecPeak {
    SpecPeak {
        status: "unknown".into(),
        flops_per_s: Vec::new(),
        note: format!(
            "no spec figure for `{cpu_model}`: CPU peak = cores × clock × FMA units × lanes × 2, \
             and neither the sustained all-core clock under AVX load nor the number of FMA \
             units is discoverable at run time (a VM reports its nominal clock); see \
             flops_per_cycle_at_reported_clock for the measured FLOP/cycle at that clock"
        ),
    }
}

/// Measure everything: every available (ISA, dtype) microkernel, STREAM copy and triad
/// at a DRAM-sized and a cache-sized working set, and the C reference cross-check.
/// `progress` receives one line per step (for stderr).
pub fn measure(opts: &PeakOptions, mut progress: impl FnMut(&str)) -> crate::Result<PeakSection> {
    if opts.threads == 0 {
        return Err(crate::BenchError::Usage(
            "--threads must be at least 1".into(),
        ));
    }
    if !(opts.duration_s.is_finite() && opts.duration_s > 0.0) {
        return Err(crate::BenchError::Usage(
            "--duration must be a positive number of seconds".into(),
        ));
    }
    let (cpu_model, mhz) = cpu_info();
    let load_average_1m = Some(sysinfo::System::load_average().one)
        .filter(|l| l.is_finite() && *l >= 0.0 && cfg!(unix));
    let mut compute = Vec::new();
    let mut skipped = Vec::new();
    let plan = kernel_ceilings::microkernels(opts.limit);
    // Plan order is narrow → wide within each dtype, so the last runnable one is widest.
    let widest = |dtype: Dtype| {
        plan.iter()
            .rev()
            .find(|p| p.dtype == dtype && p.skip_reason.is_none())
            .map(|p| p.isa)
    };
    for mut p in plan.clone() {
        if opts.widest_only && p.skip_reason.is_none() && widest(p.dtype) != Some(p.isa) {
            p.skip_reason = Some("not measured: widest ISA only".into());
        }
        if let Some(reason) = p.skip_reason {
            skipped.push(Skipped {
                isa: p.isa.as_str().into(),
                dtype: p.dtype.as_str().into(),
                reason,
            });
            continue;
        }
        progress(&format!(
            "peak: {} {} on {} threads",
            p.isa, p.dtype, opts.threads
        ));
        compute.push(measure_fma(p.isa, p.dtype, opts)?);
        // The tile engine per thread as well as for all threads: one core's AMX unit
        // alone, for comparison with the all-core figure.
        if matches!(p.isa, Isa::Amx | Isa::AmxInt8) && opts.threads > 1 && !opts.widest_only {
            progress(&format!("peak: {} {} on 1 thread", p.isa, p.dtype));
            let one = PeakOptions {
                threads: 1,
                ..opts.clone()
            };
            compute.push(measure_fma(p.isa, p.dtype, &one)?);
        }
    }

    let (llc, l2) = cache_sizes();
    let dram_total = opts
        .dram_bytes
        .unwrap_or_else(|| (256u64 << 20).max(8 * llc.unwrap_or(32 << 20)));
    let dram_per_thread = (dram_total / opts.threads as u64).max(1 << 20) as usize;
    // Half of one core's L2 (L2 is private per core on every current x86 and Arm
    // server core); 256 KiB if unknown.
    let cache_per_thread = (l2.unwrap_or(512 << 10) / 2) as usize;
    let mut bandwidth = Vec::new();
    for (level, per_thread) in [("dram", dram_per_thread), ("cache", cache_per_thread)] {
        for kind in [StreamKind::Copy, StreamKind::Triad] {
            progress(&format!(
                "peak: stream {} {level} ({} KiB per thread)",
                kind.as_str(),
                per_thread >> 10
            ));
            bandwidth.push(measure_stream(kind, level, per_thread, opts)?);
        }
    }

    let gpu = gpu_peaks(opts, &mut progress)?;

    let (reference, tile_reference) = if opts.reference {
        progress("peak: cross-check against the C references");
        reference_checks(opts)?
    } else {
        (None, Vec::new())
    };

    Ok(PeakSection {
        schema_version: PEAK_SCHEMA_VERSION,
        spec: spec_for(&cpu_model),
        cpu_model,
        arch: std::env::consts::ARCH.into(),
        physical_cores: crate::device::physical_cores(),
        threads: opts.threads,
        max_isa: opts.limit.as_str().into(),
        cpu_features: kernel_ceilings::cpu_features()
            .into_iter()
            .map(String::from)
            .collect(),
        reported_clock_mhz: mhz,
        duration_s: opts.duration_s,
        load_average_1m,
        compute,
        skipped,
        bandwidth,
        reference,
        tile_reference,
        gpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> PeakSection {
        let c = |isa: &str, dtype: &str, total: f64| ComputePeak {
            isa: isa.into(),
            dtype: dtype.into(),
            threads: 2,
            pinned: true,
            flops_per_rep: 1,
            samples_s: vec![1.0],
            total_flops_per_s: total,
            per_core_flops_per_s: total / 2.0,
            median_total_flops_per_s: total,
            flops_per_cycle_at_reported_clock: None,
            verified: true,
        };
        let b = |kind: &str, level: &str, bw: f64| BandwidthPeak {
            kind: kind.into(),
            level: level.into(),
            working_set_bytes: 1,
            threads: 2,
            isa: "avx512-fma".into(),
            bytes_per_rep: 1,
            samples_s: vec![1.0],
            bytes_per_s: bw,
            median_bytes_per_s: bw,
            verified: true,
        };
        PeakSection {
            schema_version: PEAK_SCHEMA_VERSION,
            cpu_model: "test".into(),
            arch: "x86_64".into(),
            physical_cores: 2,
            threads: 2,
            max_isa: "native".into(),
            cpu_features: vec![],
            reported_clock_mhz: None,
            duration_s: 1.0,
            load_average_1m: None,
            compute: vec![
                c("scalar", "f32", 1e10),
                c("avx512-fma", "f32", 400e9),
                c("avx512-fma", "f64", 200e9),
            ],
            skipped: vec![],
            bandwidth: vec![
                b("copy", "dram", 30e9),
                b("triad", "dram", 20e9),
                b("triad", "cache", 500e9),
            ],
            reference: None,
            tile_reference: Vec::new(),
            spec: spec_for("test"),
            gpu: vec![],
        }
    }

    #[test]
    fn roofline_helpers() {
        let s = section();
        assert_eq!(s.best_flops("f32"), Some(400e9));
        assert_eq!(s.best_flops("FP64"), Some(200e9));
        assert_eq!(s.best_flops("bf16"), None);
        assert_eq!(s.dram_bandwidth(), Some(20e9));
        assert_eq!(s.cache_bandwidth(), Some(500e9));
        assert_eq!(s.ridge_point("f32"), Some(20.0));
        assert_eq!(s.classify(100.0, "f32"), Some(Bound::Compute));
        assert_eq!(s.classify(1.0, "f32"), Some(Bound::Memory));
        assert_eq!(s.classify(1.0, "bf16"), None);
        assert_eq!(s.attainable_flops(1.0, "f32"), Some(20e9));
        assert_eq!(s.percent_of_peak(100e9, "f32"), Some(25.0));
        assert_eq!(s.percent_of_spec(100e9, "f32"), None);
    }

    #[test]
    fn the_highest_measured_path_per_dtype_is_its_ceiling_and_int8_stays_apart() {
        let mut s = section();
        let mut add = |isa: &str, dtype: &str, total: f64| {
            let mut c = s.compute[1].clone();
            (c.isa, c.dtype, c.total_flops_per_s) = (isa.into(), dtype.into(), total);
            s.compute.push(c);
        };
        add("avx512-bf16", "bf16", 400e9);
        add("amx-bf16", "bf16", 6e12);
        add("avx512-vnni", "int8", 2e12);
        let bf16 = s.best_path("bf16").expect("bf16 measured");
        assert_eq!(
            (bf16.isa.as_str(), s.best_flops("bf16")),
            ("amx-bf16", Some(6e12))
        );
        assert_eq!(
            s.best_path("f32").map(|c| c.isa.as_str()),
            Some("avx512-fma")
        );
        // Integer ops never become a floating-point ceiling.
        assert_eq!(s.best_flops("f32"), Some(400e9));
        assert_eq!(
            s.best_path("int8").map(|c| c.isa.as_str()),
            Some("avx512-vnni")
        );
        s.skipped.push(Skipped {
            isa: "amx-int8".into(),
            dtype: "int8".into(),
            reason: "CPU lacks AMX".into(),
        });
        assert_eq!(s.skip_reason("amx-int8", "int8"), Some("CPU lacks AMX"));
        assert_eq!(s.skip_reason("amx-bf16", "bf16"), None);
    }

    #[test]
    fn section_round_trips_through_json() {
        let s = section();
        let text = serde_json::to_string(&serde_json::json!({ "peak": s })).expect("serialise");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        std::fs::write(&path, text).expect("write");
        assert_eq!(PeakSection::from_file(&path).expect("read back"), s);
    }

    #[test]
    fn gemm_peak_runs_and_verifies_on_the_cpu_device() {
        let dev = candle_core::Device::Cpu;
        let (n, f) = gemm_peak(&dev, candle_core::DType::F32, &[32, 64], 0.01).expect("runs");
        assert!(n == 32 || n == 64);
        assert!(f > 0.0);
    }

    #[test]
    fn gpu_names_map_to_catalog_entries() {
        assert_eq!(
            catalog_name_for_gpu("NVIDIA H100 80GB HBM3"),
            Some("h100-sxm")
        );
        assert_eq!(catalog_name_for_gpu("NVIDIA H100 PCIe"), None);
        assert_eq!(
            catalog_name_for_gpu("NVIDIA A100-SXM4-40GB"),
            Some("a100-sxm")
        );
        assert_eq!(
            catalog_name_for_gpu("Tesla V100-SXM2-16GB"),
            Some("v100-sxm2")
        );
        assert_eq!(catalog_name_for_gpu("NVIDIA H200"), Some("h200"));
        assert_eq!(catalog_name_for_gpu("NVIDIA H200 NVL"), None);
        for name in ["h100-sxm", "h200", "a100-sxm", "v100-sxm2", "p100-sxm2"] {
            assert!(
                flopcal_model::Catalog::embedded().hardware(name).is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn widest_only_measures_one_isa_per_dtype() {
        let opts = PeakOptions {
            duration_s: 0.02,
            threads: 1,
            limit: IsaLimit::Native,
            reference: false,
            dram_bytes: Some(8 << 20),
            widest_only: true,
        };
        let s = measure(&opts, |_| {}).expect("measures");
        let mut dtypes: Vec<&str> = s.compute.iter().map(|c| c.dtype.as_str()).collect();
        let n = dtypes.len();
        dtypes.dedup();
        assert_eq!(dtypes.len(), n, "one entry per dtype: {dtypes:?}");
        assert!(s
            .skipped
            .iter()
            .any(|k| k.reason.contains("widest ISA only")));
    }

    #[test]
    fn stats_pick_best_and_median() {
        assert_eq!(best_and_median(&[3.0, 1.0, 2.0]), (1.0, 2.0));
        assert_eq!(best_and_median(&[4.0, 1.0, 2.0, 3.0]), (1.0, 2.5));
    }

    #[test]
    fn quick_measurement_under_forced_scalar_fallback() {
        let opts = PeakOptions {
            duration_s: 0.05,
            threads: 1,
            limit: IsaLimit::Scalar,
            reference: false,
            dram_bytes: Some(8 << 20),
            widest_only: false,
        };
        let s = measure(&opts, |_| {}).expect("scalar fallback measures");
        assert!(s.compute.iter().all(|c| c.isa == "scalar" && c.verified));
        assert!(s.best_flops("f32").is_some_and(|f| f > 0.0));
        assert!(s.dram_bandwidth().is_some_and(|b| b > 0.0));
        if cfg!(target_arch = "x86_64") {
            assert!(s.skipped.iter().any(|k| k.isa == "avx512-fma"));
        }
    }
}
