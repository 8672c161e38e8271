//! The machine's ceilings: FMA-throughput microkernels per ISA and dtype, and
//! STREAM-style bandwidth kernels ([`stream`]).
//!
//! This module runs a *fixed amount of work* and returns raw per-repetition wall times;
//! choosing how much work, how many repetitions and which statistic to report is the
//! caller's business.
//!
//! # The FMA microkernel
//!
//! Each thread keeps [`ACCUMULATORS`] independent vector accumulators (more than
//! latency × throughput of the FMA pipes on current cores, so the dependency chains
//! never stall the pipes) and updates every one of them once per iteration with
//! `acc = acc · a + d`. The values are chosen so every intermediate is *exact*:
//! `a = 1`, `d = 2⁻¹²`, accumulators start at `1 + k·2⁻⁶` and a kernel call runs at
//! most [`CHUNK`] iterations, so after `n` iterations every lane holds exactly
//! `init + n·d` (well inside f32's 24-bit mantissa). Every call is checked bit-exactly
//! against that closed form: the compiler cannot delete the loop, and a kernel that
//! skips iterations, drops lanes or computes something else fails verification.
//! The factors come through [`std::hint::black_box`] so the multiply by one cannot be
//! folded away; FMA units have no data-dependent timing for normal numbers.
//!
//! FLOP convention: a fused multiply-add is 2 FLOPs per lane; the portable scalar
//! kernel does a separate multiply and add (2 FLOPs, two instructions); AVX-512 BF16
//! `vdpbf16ps` does two bf16 products and two f32 additions per f32 lane (4 FLOPs per
//! lane, 64 per 512-bit instruction). AVX-512 VNNI `vpdpbusd` does four int8
//! products and four int32 additions per lane (8 integer ops per lane, 128 per
//! instruction); integer ops are reported as TOPS, never added to FLOPs. The int8
//! kernel's closed form is `init + 4·3·n` per lane, checked exactly.
//!
//! # Portability
//!
//! Every intrinsic sits in a `#[target_feature]` function that is only reached through
//! a wrapper which checks the feature at run time, so the binary never executes an
//! illegal instruction on an older CPU. [`IsaLimit`] caps the ISAs used, to exercise
//! the fallback path on any machine.

use std::fmt;
use std::hint::black_box;
use std::str::FromStr;

pub mod amx;
pub mod stream;

#[cfg(target_arch = "aarch64")]
mod aarch64;
mod portable;
#[cfg(target_arch = "x86_64")]
pub mod reference;
mod threads;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use threads::physical_core_cpus;

/// Independent accumulators per thread in every FMA microkernel.
pub const ACCUMULATORS: usize = 12;

/// Iterations per kernel call. Bounds the growth of the accumulators so that every
/// intermediate value stays exactly representable (see the module docs).
pub const CHUNK: u64 = 1 << 20;

/// Multiplier of the FMA chain (exactly one; passed through `black_box`).
const FACTOR: f32 = 1.0;
/// Addend of the FMA chain, 2⁻¹².
const ADDEND: f32 = 1.0 / 4096.0;

/// An instruction-set path of the FMA microkernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// Portable scalar Rust (separate multiply and add); runs on any CPU.
    Scalar,
    /// x86-64 AVX2 + FMA3, 256-bit `vfmadd`.
    Avx2,
    /// x86-64 AVX-512F, 512-bit `vfmadd`.
    Avx512,
    /// x86-64 AVX-512 BF16 `vdpbf16ps` (bf16 products, f32 accumulation).
    Avx512Bf16,
    /// x86-64 AVX-512 VNNI `vpdpbusd` (u8 × s8 quads, int32 accumulation).
    Avx512Vnni,
    /// x86-64 AMX tiles, bf16 (`tdpbf16ps`).
    Amx,
    /// x86-64 AMX tiles, int8 (`tdpbssd`).
    AmxInt8,
    /// aarch64 Advanced SIMD (NEON) 128-bit `fmla`.
    Neon,
}

impl Isa {
    /// Stable lower-case name used in result files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2-fma",
            Isa::Avx512 => "avx512-fma",
            Isa::Avx512Bf16 => "avx512-bf16",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::Amx => "amx-bf16",
            Isa::AmxInt8 => "amx-int8",
            Isa::Neon => "neon-fma",
        }
    }

    /// How this path ranks for [`IsaLimit`]: 0 scalar, 1 baseline SIMD, 2 AVX-512, 3 AMX.
    fn level(self) -> u8 {
        match self {
            Isa::Scalar => 0,
            Isa::Avx2 | Isa::Neon => 1,
            Isa::Avx512 | Isa::Avx512Bf16 | Isa::Avx512Vnni => 2,
            Isa::Amx | Isa::AmxInt8 => 3,
        }
    }

    /// Vector lanes of the accumulator type (f32 or f64) for one instruction.
    pub fn lanes(self, dtype: Dtype) -> usize {
        let bits = match self {
            Isa::Scalar => return 1,
            Isa::Avx2 => 256,
            Isa::Avx512 | Isa::Avx512Bf16 | Isa::Avx512Vnni => 512,
            Isa::Amx | Isa::AmxInt8 => 512,
            Isa::Neon => 128,
        };
        let acc_bits = match dtype {
            Dtype::F64 => 64,
            Dtype::F32 | Dtype::Bf16 | Dtype::Int8 => 32,
        };
        bits / acc_bits
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Element type of an FMA microkernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// bfloat16 inputs with f32 accumulation.
    Bf16,
    /// Signed 8-bit integer inputs with int32 accumulation; counted in integer ops
    /// (TOPS), never mixed with FLOPs.
    Int8,
}

impl Dtype {
    /// Stable lower-case name (`f32`, `f64`, `bf16`), as candle spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::Bf16 => "bf16",
            Dtype::Int8 => "int8",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The widest instruction set the microkernels may use; lower it to force a fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum IsaLimit {
    /// Portable scalar code only.
    Scalar,
    /// Up to baseline SIMD: AVX2+FMA on x86-64, NEON on aarch64.
    Simd,
    /// Up to AVX-512 (F and BF16).
    Avx512,
    /// Everything the CPU and the OS allow (AMX included).
    #[default]
    Native,
}

impl IsaLimit {
    /// Whether `isa` is within this limit.
    pub fn allows(self, isa: Isa) -> bool {
        let cap = match self {
            IsaLimit::Scalar => 0,
            IsaLimit::Simd => 1,
            IsaLimit::Avx512 => 2,
            IsaLimit::Native => 3,
        };
        isa.level() <= cap
    }

    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            IsaLimit::Scalar => "scalar",
            IsaLimit::Simd => "avx2",
            IsaLimit::Avx512 => "avx512",
            IsaLimit::Native => "native",
        }
    }
}

impl FromStr for IsaLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(IsaLimit::Scalar),
            "avx2" | "simd" | "neon" => Ok(IsaLimit::Simd),
            "avx512" | "avx-512" => Ok(IsaLimit::Avx512),
            "native" | "amx" | "all" => Ok(IsaLimit::Native),
            other => Err(format!(
                "unknown ISA limit `{other}`: expected scalar, avx2 (= simd, neon), avx512 or native"
            )),
        }
    }
}

/// Errors of the peak microbenchmarks.
#[derive(Debug, thiserror::Error)]
pub enum PeakError {
    /// The kernel cannot run here (CPU, OS or [`IsaLimit`]); the reason says which.
    #[error("{isa} {dtype} unavailable: {reason}")]
    Unsupported {
        /// The requested ISA path.
        isa: Isa,
        /// The requested dtype.
        dtype: Dtype,
        /// Why it cannot run.
        reason: String,
    },
    /// The kernel ran but its output differs from the closed-form expectation.
    #[error("{what} failed verification: {detail}")]
    Verification {
        /// Which kernel.
        what: String,
        /// First mismatch.
        detail: String,
    },
    /// A configuration value out of range (zero threads, zero work...).
    #[error("invalid peak configuration: {0}")]
    Config(String),
}

/// One (ISA, dtype) microkernel of this architecture and whether it can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Microkernel {
    /// ISA path.
    pub isa: Isa,
    /// Element type.
    pub dtype: Dtype,
    /// `None` if it can run; otherwise why it is skipped.
    pub skip_reason: Option<String>,
}

/// Every microkernel known on this architecture, in report order, each with the reason
/// it is skipped (if it is) under `limit` on this CPU and OS.
pub fn microkernels(limit: IsaLimit) -> Vec<Microkernel> {
    let mut all = vec![(Isa::Scalar, Dtype::F32), (Isa::Scalar, Dtype::F64)];
    if cfg!(target_arch = "x86_64") {
        all.extend([
            (Isa::Avx2, Dtype::F32),
            (Isa::Avx2, Dtype::F64),
            (Isa::Avx512, Dtype::F32),
            (Isa::Avx512, Dtype::F64),
            (Isa::Avx512Bf16, Dtype::Bf16),
            (Isa::Amx, Dtype::Bf16),
            (Isa::Avx512Vnni, Dtype::Int8),
            (Isa::AmxInt8, Dtype::Int8),
        ]);
    }
    if cfg!(target_arch = "aarch64") {
        all.extend([(Isa::Neon, Dtype::F32), (Isa::Neon, Dtype::F64)]);
    }
    all.into_iter()
        .map(|(isa, dtype)| Microkernel {
            isa,
            dtype,
            skip_reason: availability(isa, dtype, limit).err(),
        })
        .collect()
}

/// Whether `(isa, dtype)` can run here under `limit`; `Err` says why not.
pub fn availability(isa: Isa, dtype: Dtype, limit: IsaLimit) -> Result<(), String> {
    if !limit.allows(isa) {
        return Err(format!(
            "excluded by --max-isa {} (forced fallback)",
            limit.as_str()
        ));
    }
    let dtype_ok = match isa {
        Isa::Scalar | Isa::Avx2 | Isa::Avx512 | Isa::Neon => {
            matches!(dtype, Dtype::F32 | Dtype::F64)
        }
        Isa::Avx512Bf16 | Isa::Amx => dtype == Dtype::Bf16,
        Isa::AmxInt8 | Isa::Avx512Vnni => dtype == Dtype::Int8,
    };
    if !dtype_ok {
        return Err(format!("{isa} has no {dtype} kernel"));
    }
    match isa {
        Isa::Scalar => Ok(()),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512 | Isa::Avx512Bf16 | Isa::Avx512Vnni | Isa::Amx | Isa::AmxInt8 => {
            x86::availability(isa)
        }
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64::availability(),
        #[allow(unreachable_patterns)]
        _ => Err(format!(
            "{isa} does not exist on {}",
            std::env::consts::ARCH
        )),
    }
}

/// CPU features relevant to the microkernels that this CPU (and OS) report.
pub fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        x86::features()
    }
    #[cfg(target_arch = "aarch64")]
    {
        aarch64::features()
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

/// FLOPs (integer ops for int8) one thread performs in one iteration of the
/// `(isa, dtype)` microkernel.
pub fn flops_per_iteration(isa: Isa, dtype: Dtype) -> u64 {
    match isa {
        Isa::Amx => return amx::AmxOp::Bf16.ops_per_iteration(),
        Isa::AmxInt8 => return amx::AmxOp::Int8.ops_per_iteration(),
        _ => {}
    }
    let per_lane = match dtype {
        Dtype::Bf16 => 4, // two bf16 products + two f32 additions per f32 lane
        Dtype::Int8 => 8, // four int8 products + four int32 additions per lane
        Dtype::F32 | Dtype::F64 => 2,
    };
    (ACCUMULATORS * isa.lanes(dtype)) as u64 * per_lane
}

/// What to run: a fixed amount of FMA work, repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FmaConfig {
    /// ISA path.
    pub isa: Isa,
    /// Element type.
    pub dtype: Dtype,
    /// Worker threads, each pinned to its own physical core where the OS allows.
    pub threads: usize,
    /// Iterations per thread per repetition (see [`flops_per_iteration`]).
    pub iterations: u64,
    /// Timed repetitions.
    pub reps: usize,
    /// Untimed repetitions run first (clock ramp-up, AVX-512 power licences).
    pub warmup_reps: usize,
    /// The widest ISA allowed.
    pub limit: IsaLimit,
}

/// Raw result of [`fma_peak`].
#[derive(Debug, Clone, PartialEq)]
pub struct FmaMeasurement {
    /// ISA path.
    pub isa: Isa,
    /// Element type.
    pub dtype: Dtype,
    /// Worker threads.
    pub threads: usize,
    /// Iterations per thread per repetition.
    pub iterations: u64,
    /// FLOPs of one repetition, all threads together.
    pub flops_per_rep: u64,
    /// Wall time of each timed repetition (from releasing all threads until the last
    /// one finished), seconds.
    pub samples_s: Vec<f64>,
    /// Whether every worker thread was pinned to its own CPU.
    pub pinned: bool,
    /// Whether every kernel call matched the closed-form result (always true in a
    /// returned measurement: a mismatch is an error).
    pub verified: bool,
}

/// A kernel call on f32 accumulators: `(iterations, factor, addend, accumulators)`.
/// Returns false if the CPU lacks the feature (never executes the instruction then).
type KernelF32 = fn(u64, f32, f32, &mut [f32]) -> bool;
/// A kernel call on f64 accumulators.
type KernelF64 = fn(u64, f64, f64, &mut [f64]) -> bool;
/// A kernel call on int32 accumulators: `(iterations, byte, accumulators)`, adding
/// four products `1 · byte` per lane per iteration.
type KernelI32 = fn(u64, i8, &mut [i32]) -> bool;

enum Kernel {
    F32(KernelF32),
    /// bf16 products, f32 accumulators: increment per iteration is `2·a·d`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Bf16(KernelF32),
    F64(KernelF64),
    /// int8 quads, int32 accumulators: increment per iteration is `4·byte`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    I32(KernelI32),
}

fn kernel(isa: Isa, dtype: Dtype) -> Option<Kernel> {
    match (isa, dtype) {
        (Isa::Scalar, Dtype::F32) => Some(Kernel::F32(portable::scalar_f32)),
        (Isa::Scalar, Dtype::F64) => Some(Kernel::F64(portable::scalar_f64)),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, Dtype::F32) => Some(Kernel::F32(x86::avx2_f32)),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, Dtype::F64) => Some(Kernel::F64(x86::avx2_f64)),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, Dtype::F32) => Some(Kernel::F32(x86::avx512_f32)),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, Dtype::F64) => Some(Kernel::F64(x86::avx512_f64)),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512Bf16, Dtype::Bf16) => Some(Kernel::Bf16(x86::avx512_bf16)),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512Vnni, Dtype::Int8) => Some(Kernel::I32(x86::avx512_vnni)),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, Dtype::F32) => Some(Kernel::F32(aarch64::neon_f32)),
        #[cfg(target_arch = "aarch64")]
        (Isa::Neon, Dtype::F64) => Some(Kernel::F64(aarch64::neon_f64)),
        _ => None,
    }
}

/// The signed byte of the int8 kernels' second operand (the first is all ones):
/// each lane grows by `4 · 3 = 12` per iteration, `< 2³¹` for a whole [`CHUNK`].
const INT_BYTE: i8 = 3;

/// Initial value of int32 accumulator lane `k`.
fn int_init(k: usize) -> i32 {
    (k as i32 % 1000) * 64 - 5000
}

/// Initial value of accumulator lane `k`: `1 + k·2⁻⁶` (exact in bf16-free f32/f64).
fn init_value(k: usize) -> f64 {
    1.0 + k as f64 / 64.0
}

/// Per-thread state of the FMA microkernel: accumulators plus the verification verdict.
struct FmaState {
    acc32: Vec<f32>,
    acc64: Vec<f64>,
    acc_i32: Vec<i32>,
    error: Option<String>,
}

/// Run `iterations` iterations in calls of at most [`CHUNK`], checking each call
/// bit-exactly against the closed form.
fn run_checked(k: &Kernel, iterations: u64, state: &mut FmaState) {
    let mut left = iterations;
    while left > 0 {
        let n = left.min(CHUNK);
        left -= n;
        let (ok, inc) = match k {
            Kernel::F32(f) | Kernel::Bf16(f) => {
                for (i, v) in state.acc32.iter_mut().enumerate() {
                    *v = init_value(i) as f32;
                }
                let ok = f(n, black_box(FACTOR), black_box(ADDEND), &mut state.acc32);
                let per = if matches!(k, Kernel::Bf16(_)) {
                    2.0
                } else {
                    1.0
                };
                (ok, per * f64::from(FACTOR) * f64::from(ADDEND))
            }
            Kernel::F64(f) => {
                for (i, v) in state.acc64.iter_mut().enumerate() {
                    *v = init_value(i);
                }
                let ok = f(
                    n,
                    black_box(f64::from(FACTOR)),
                    black_box(f64::from(ADDEND)),
                    &mut state.acc64,
                );
                (ok, f64::from(FACTOR) * f64::from(ADDEND))
            }
            Kernel::I32(f) => {
                for (i, v) in state.acc_i32.iter_mut().enumerate() {
                    *v = int_init(i);
                }
                (f(n, black_box(INT_BYTE), &mut state.acc_i32), 0.0)
            }
        };
        if !ok {
            state.error = Some("CPU feature vanished at run time".into());
            return;
        }
        if state.error.is_none() {
            state.error = check(state, k, n, inc);
        }
    }
}

fn check(state: &FmaState, k: &Kernel, n: u64, inc: f64) -> Option<String> {
    let expect = |i: usize| init_value(i) + n as f64 * inc;
    match k {
        Kernel::F32(_) | Kernel::Bf16(_) => state
            .acc32
            .iter()
            .enumerate()
            .find(|(i, v)| **v != expect(*i) as f32)
            .map(|(i, v)| {
                format!(
                    "lane {i}: got {v}, expected {} after {n} iterations",
                    expect(i)
                )
            }),
        Kernel::I32(_) => state
            .acc_i32
            .iter()
            .enumerate()
            .find(|(i, v)| {
                i64::from(**v) != i64::from(int_init(*i)) + 4 * i64::from(INT_BYTE) * n as i64
            })
            .map(|(i, v)| {
                format!(
                    "lane {i}: got {v}, expected {} after {n} iterations",
                    i64::from(int_init(i)) + 4 * i64::from(INT_BYTE) * n as i64
                )
            }),
        Kernel::F64(_) => state
            .acc64
            .iter()
            .enumerate()
            .find(|(i, v)| **v != expect(*i))
            .map(|(i, v)| {
                format!(
                    "lane {i}: got {v}, expected {} after {n} iterations",
                    expect(i)
                )
            }),
    }
}

/// Run the `(isa, dtype)` FMA microkernel: `reps` timed repetitions of `iterations`
/// iterations on each of `threads` pinned threads, after `warmup_reps` untimed ones.
/// Every kernel call is verified; a mismatch is an error.
pub fn fma_peak(cfg: &FmaConfig) -> Result<FmaMeasurement, PeakError> {
    if cfg.threads == 0 || cfg.iterations == 0 || cfg.reps == 0 {
        return Err(PeakError::Config(
            "threads, iterations and reps must all be at least 1".into(),
        ));
    }
    availability(cfg.isa, cfg.dtype, cfg.limit).map_err(|reason| PeakError::Unsupported {
        isa: cfg.isa,
        dtype: cfg.dtype,
        reason,
    })?;
    if let Some(op) = amx_op(cfg.isa) {
        return amx_peak(cfg, op);
    }
    let k = kernel(cfg.isa, cfg.dtype).ok_or_else(|| PeakError::Unsupported {
        isa: cfg.isa,
        dtype: cfg.dtype,
        reason: "no kernel for this combination".into(),
    })?;
    let lanes = ACCUMULATORS * cfg.isa.lanes(cfg.dtype);
    let timed = threads::run_pinned(
        cfg.threads,
        cfg.warmup_reps + cfg.reps,
        |_| FmaState {
            acc32: vec![0.0; lanes],
            acc64: vec![0.0; lanes],
            acc_i32: vec![0; lanes],
            error: None,
        },
        |s| run_checked(&k, cfg.iterations, s),
        |s| s.error,
    );
    verified_measurement(cfg, "FMA kernel", timed)
}

/// The measurement of a run whose every worker reported no verification error
/// (`None`); the first error otherwise.
fn verified_measurement(
    cfg: &FmaConfig,
    kind: &str,
    timed: threads::Timed<Option<String>>,
) -> Result<FmaMeasurement, PeakError> {
    if let Some(detail) = timed.results.into_iter().flatten().next() {
        let what = format!("{} {} {kind}", cfg.isa, cfg.dtype);
        return Err(PeakError::Verification { what, detail });
    }
    Ok(FmaMeasurement {
        isa: cfg.isa,
        dtype: cfg.dtype,
        threads: cfg.threads,
        iterations: cfg.iterations,
        flops_per_rep: flops_per_iteration(cfg.isa, cfg.dtype)
            * cfg.iterations
            * cfg.threads as u64,
        samples_s: timed.samples_s[cfg.warmup_reps..].to_vec(),
        pinned: timed.pinned,
        verified: true,
    })
}

/// The AMX instruction of an AMX path.
fn amx_op(isa: Isa) -> Option<amx::AmxOp> {
    match isa {
        Isa::Amx => Some(amx::AmxOp::Bf16),
        Isa::AmxInt8 => Some(amx::AmxOp::Int8),
        _ => None,
    }
}

/// The AMX tile microkernel: like [`fma_peak`], with every call of at most
/// [`amx::CHUNK`] iterations checked exactly against the scalar matmul.
fn amx_peak(cfg: &FmaConfig, op: amx::AmxOp) -> Result<FmaMeasurement, PeakError> {
    let operands = amx::Operands::new(op, 0xA3C5);
    let timed = threads::run_pinned(
        cfg.threads,
        cfg.warmup_reps + cfg.reps,
        |_| (operands.clone(), None::<String>),
        |(ops, err)| {
            let mut left = cfg.iterations;
            while left > 0 {
                let n = left.min(amx::CHUNK);
                left -= n;
                match amx::run(ops, n) {
                    Some(tiles) if err.is_none() => *err = ops.check(&tiles, n),
                    Some(_) => {}
                    None => *err = Some("AMX became unavailable at run time".into()),
                }
            }
        },
        |(_, err)| err,
    );
    verified_measurement(cfg, "tile kernel", timed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(isa: Isa, dtype: Dtype, limit: IsaLimit) -> Result<FmaMeasurement, PeakError> {
        fma_peak(&FmaConfig {
            isa,
            dtype,
            threads: 1,
            // Crosses a chunk boundary so the per-call reset and check are exercised.
            iterations: CHUNK + 777,
            reps: 2,
            warmup_reps: 0,
            limit,
        })
    }

    #[test]
    fn peak_every_available_kernel_verifies() {
        for p in microkernels(IsaLimit::Native) {
            if p.skip_reason.is_some() {
                continue;
            }
            let m = quick(p.isa, p.dtype, IsaLimit::Native)
                .unwrap_or_else(|e| panic!("{} {}: {e}", p.isa, p.dtype));
            assert!(m.verified);
            assert_eq!(m.samples_s.len(), 2);
            assert!(m.samples_s.iter().all(|s| *s > 0.0));
            assert_eq!(
                m.flops_per_rep,
                flops_per_iteration(p.isa, p.dtype) * (CHUNK + 777)
            );
        }
    }

    #[test]
    fn peak_forced_scalar_fallback_runs_and_skips_the_rest() {
        let plans = microkernels(IsaLimit::Scalar);
        for p in &plans {
            assert_eq!(p.skip_reason.is_none(), p.isa == Isa::Scalar, "{p:?}");
        }
        for dtype in [Dtype::F32, Dtype::F64] {
            let m = quick(Isa::Scalar, dtype, IsaLimit::Scalar).expect("scalar runs everywhere");
            assert!(m.verified && m.flops_per_rep > 0);
        }
        let err = quick(Isa::Avx512, Dtype::F32, IsaLimit::Scalar).expect_err("must be refused");
        assert!(matches!(err, PeakError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn peak_forced_simd_fallback_excludes_avx512() {
        for p in microkernels(IsaLimit::Simd) {
            if matches!(
                p.isa,
                Isa::Avx512 | Isa::Avx512Bf16 | Isa::Avx512Vnni | Isa::Amx | Isa::AmxInt8
            ) {
                let reason = p.skip_reason.expect("avx512 must be excluded");
                assert!(reason.contains("--max-isa"), "{reason}");
            }
        }
        if availability(Isa::Avx2, Dtype::F32, IsaLimit::Simd).is_ok() {
            let m = quick(Isa::Avx2, Dtype::F32, IsaLimit::Simd).expect("avx2 runs");
            assert!(m.verified);
        }
    }

    #[test]
    fn peak_wrong_kernel_fails_verification() {
        // A kernel that skips one iteration must be caught.
        fn broken(n: u64, a: f32, d: f32, acc: &mut [f32]) -> bool {
            portable::scalar_f32(n - 1, a, d, acc)
        }
        let mut s = FmaState {
            acc32: vec![0.0; ACCUMULATORS],
            acc64: vec![],
            acc_i32: vec![],
            error: None,
        };
        run_checked(&Kernel::F32(broken), 10, &mut s);
        assert!(s.error.is_some());
        let mut s = FmaState {
            acc32: vec![0.0; ACCUMULATORS],
            acc64: vec![],
            acc_i32: vec![],
            error: None,
        };
        run_checked(&Kernel::F32(portable::scalar_f32), 10, &mut s);
        assert_eq!(s.error, None);
        // The int8 closed form: a kernel adding the right products once too few fails.
        fn int_ok(n: u64, b: i8, acc: &mut [i32]) -> bool {
            acc.iter_mut()
                .for_each(|a| *a += 4 * i32::from(b) * n as i32);
            true
        }
        fn int_short(n: u64, b: i8, acc: &mut [i32]) -> bool {
            int_ok(n - 1, b, acc)
        }
        for (f, ok) in [(int_ok as KernelI32, true), (int_short, false)] {
            let mut s = FmaState {
                acc32: vec![],
                acc64: vec![],
                acc_i32: vec![0; ACCUMULATORS],
                error: None,
            };
            run_checked(&Kernel::I32(f), 10, &mut s);
            assert_eq!(s.error.is_none(), ok, "{:?}", s.error);
        }
    }

    #[test]
    fn peak_isa_limit_parses() {
        assert_eq!("AVX512".parse::<IsaLimit>(), Ok(IsaLimit::Avx512));
        assert_eq!("neon".parse::<IsaLimit>(), Ok(IsaLimit::Simd));
        assert!("sse9".parse::<IsaLimit>().is_err());
        assert!(IsaLimit::Simd.allows(Isa::Avx2));
        assert!(!IsaLimit::Simd.allows(Isa::Avx512));
    }
}
