//! STREAM-style bandwidth kernels: `copy` (`a[i] = b[i]`) and `triad`
//! (`a[i] = b[i] + s·c[i]`) over f64 arrays, one private set of arrays per pinned
//! thread, first touched by that thread.
//!
//! Bytes follow the STREAM convention: copy moves 16 bytes per element (one read, one
//! write), triad 24 (two reads, one write). Write-allocate traffic is not counted, so
//! like STREAM this is a lower bound on what crossed the memory interface.
//! Choose the working set well beyond the last-level cache to measure DRAM, or small
//! enough to stay in a core's private cache to measure cache bandwidth.

use std::hint::black_box;

use super::{threads, Isa, IsaLimit, PeakError};

/// Which STREAM kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKind {
    /// `a[i] = b[i]`: 16 bytes per element.
    Copy,
    /// `a[i] = b[i] + s·c[i]`: 24 bytes per element.
    Triad,
}

impl StreamKind {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Copy => "copy",
            StreamKind::Triad => "triad",
        }
    }

    /// Number of f64 arrays the kernel uses.
    pub fn arrays(self) -> usize {
        match self {
            StreamKind::Copy => 2,
            StreamKind::Triad => 3,
        }
    }

    /// Bytes counted per element (STREAM convention).
    pub fn bytes_per_element(self) -> u64 {
        8 * self.arrays() as u64
    }
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Kernel.
    pub kind: StreamKind,
    /// Bytes of all arrays of one thread together (rounded down to whole elements).
    pub bytes_per_thread: usize,
    /// Worker threads, each pinned to its own physical core where the OS allows.
    pub threads: usize,
    /// Passes over the arrays per repetition (use several for cache-sized sets so one
    /// repetition lasts long enough to time).
    pub passes: usize,
    /// Timed repetitions.
    pub reps: usize,
    /// Untimed repetitions run first.
    pub warmup_reps: usize,
    /// Widest ISA the loops may be compiled for.
    pub limit: IsaLimit,
}

/// Raw result of [`stream`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMeasurement {
    /// Kernel.
    pub kind: StreamKind,
    /// Worker threads.
    pub threads: usize,
    /// Bytes of all arrays of all threads.
    pub working_set_bytes: u64,
    /// Bytes counted for one repetition, all threads (STREAM convention).
    pub bytes_per_rep: u64,
    /// Wall time of each timed repetition, seconds.
    pub samples_s: Vec<f64>,
    /// The code path the loops ran with.
    pub isa: Isa,
    /// Whether every worker was pinned.
    pub pinned: bool,
    /// Whether the output arrays held the expected values afterwards (a mismatch is an
    /// error, so always true in a returned measurement).
    pub verified: bool,
}

impl StreamMeasurement {
    /// Name of the loops' code path: `avx512`, `avx2`, or the target's baseline
    /// (`sse2` on x86-64, `neon` on aarch64, `scalar` elsewhere).
    pub fn code_path(&self) -> &'static str {
        match self.isa {
            Isa::Avx512 | Isa::Avx512Bf16 | Isa::Avx512Vnni | Isa::Amx | Isa::AmxInt8 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Neon => "neon",
            Isa::Scalar if cfg!(target_arch = "x86_64") => "sse2",
            Isa::Scalar if cfg!(target_arch = "aarch64") => "neon",
            Isa::Scalar => "scalar",
        }
    }
}

const SCALE: f64 = 3.0;

struct Arrays {
    a: Vec<f64>,
    b: Vec<f64>,
    c: Vec<f64>,
}

macro_rules! triad {
    ($triad:ident $(, $feat:literal)?) => {
        $(#[target_feature(enable = $feat)])?
        #[inline(never)]
        fn $triad(a: &mut [f64], b: &[f64], c: &[f64], s: f64) {
            for ((x, y), z) in a.iter_mut().zip(b).zip(c) {
                *x = *y + s * *z;
            }
        }
    };
}

triad!(triad_base);
#[cfg(target_arch = "x86_64")]
triad!(triad_avx2, "avx2");
#[cfg(target_arch = "x86_64")]
triad!(triad_avx512, "avx512f");

/// Copy loops with explicit vector loads and stores. Written as a plain loop, LLVM
/// turns `a[i] = b[i]` into a call to libc's `memcpy`, whose strategy (non-temporal
/// stores above a size threshold, `rep movsb`) is not the ISA path being measured; an
/// empty `asm!` between each load and store hides the store-of-a-load from that
/// rewrite and emits no instruction.
macro_rules! copy {
    ($copy:ident, $feat:literal, $lanes:expr, $load:path, $store:path, $reg:ident) => {
        #[target_feature(enable = $feat)]
        #[inline(never)]
        fn $copy(a: &mut [f64], b: &[f64]) {
            let n = a.len().min(b.len());
            let body = n - n % $lanes;
            let mut i = 0;
            while i < body {
                // SAFETY: i + lanes <= body <= len of both slices; unaligned access is
                // allowed. The caller detected the target feature at run time.
                unsafe {
                    let mut v = $load(b.as_ptr().add(i));
                    // Empty asm: no instruction, no memory access (see the macro docs).
                    std::arch::asm!("/* {0} */", inout($reg) v,
                        options(pure, nomem, nostack, preserves_flags));
                    $store(a.as_mut_ptr().add(i), v);
                }
                i += $lanes;
            }
            a[body..n].copy_from_slice(&b[body..n]);
        }
    };
}

#[cfg(target_arch = "x86_64")]
copy!(
    copy_base,
    "sse2",
    2,
    std::arch::x86_64::_mm_loadu_pd,
    std::arch::x86_64::_mm_storeu_pd,
    xmm_reg
);
#[cfg(target_arch = "x86_64")]
copy!(
    copy_avx2,
    "avx",
    4,
    std::arch::x86_64::_mm256_loadu_pd,
    std::arch::x86_64::_mm256_storeu_pd,
    ymm_reg
);
#[cfg(target_arch = "x86_64")]
copy!(
    copy_avx512,
    "avx512f",
    8,
    std::arch::x86_64::_mm512_loadu_pd,
    std::arch::x86_64::_mm512_storeu_pd,
    zmm_reg
);
#[cfg(target_arch = "aarch64")]
copy!(
    copy_base,
    "neon",
    2,
    std::arch::aarch64::vld1q_f64,
    std::arch::aarch64::vst1q_f64,
    vreg
);

/// Elsewhere the plain copy (libc `memcpy`).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn copy_base(a: &mut [f64], b: &[f64]) {
    let n = a.len().min(b.len());
    a[..n].copy_from_slice(&b[..n]);
}

/// The widest loop code path this CPU has within `limit`.
fn path(limit: IsaLimit) -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if limit.allows(Isa::Avx512) && is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if limit.allows(Isa::Avx2) && is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    let _ = limit;
    Isa::Scalar
}

fn one_pass(kind: StreamKind, isa: Isa, m: &mut Arrays, s: f64) {
    let Arrays { a, b, c } = m;
    match (isa, kind) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned Avx512 only after detecting avx512f at run time.
        (Isa::Avx512, StreamKind::Copy) => unsafe { copy_avx512(a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned Avx512 only after detecting avx512f at run time.
        (Isa::Avx512, StreamKind::Triad) => unsafe { triad_avx512(a, b, c, s) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned Avx2 only after detecting avx2 at run time.
        (Isa::Avx2, StreamKind::Copy) => unsafe { copy_avx2(a, b) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `path` returned Avx2 only after detecting avx2 at run time.
        (Isa::Avx2, StreamKind::Triad) => unsafe { triad_avx2(a, b, c, s) },
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        // SAFETY: SSE2 (x86-64) and NEON (aarch64) are baseline features of these
        // targets: every CPU that runs the binary has them.
        (_, StreamKind::Copy) => unsafe { copy_base(a, b) },
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        (_, StreamKind::Copy) => copy_base(a, b),
        (_, StreamKind::Triad) => triad_base(a, b, c, s),
    }
}

fn b_value(i: usize) -> f64 {
    (i % 1021) as f64
}

fn c_value(i: usize) -> f64 {
    (i % 13) as f64 * 0.5
}

/// Run a STREAM kernel: `reps` timed repetitions of `passes` passes on each of
/// `threads` pinned threads. The arrays are checked afterwards.
pub fn stream(cfg: &StreamConfig) -> Result<StreamMeasurement, PeakError> {
    let elems = cfg.bytes_per_thread / cfg.kind.bytes_per_element() as usize;
    if cfg.threads == 0 || cfg.passes == 0 || cfg.reps == 0 || elems == 0 {
        return Err(PeakError::Config(
            "threads, passes, reps and the per-thread working set must all be positive".into(),
        ));
    }
    let isa = path(cfg.limit);
    let kind = cfg.kind;
    let timed = threads::run_pinned(
        cfg.threads,
        cfg.warmup_reps + cfg.reps,
        |_| Arrays {
            // Non-zero fills so every page is touched here, by the thread that uses it.
            a: vec![-1.0; elems],
            b: (0..elems).map(b_value).collect(),
            c: if kind == StreamKind::Triad {
                (0..elems).map(c_value).collect()
            } else {
                Vec::new()
            },
        },
        |m| {
            for _ in 0..cfg.passes {
                one_pass(kind, isa, m, black_box(SCALE));
                // The optimiser must assume the arrays changed: no pass can be elided.
                black_box(&mut *m);
            }
        },
        |m| {
            m.a.iter().enumerate().find_map(|(i, x)| {
                let want = match kind {
                    StreamKind::Copy => b_value(i),
                    StreamKind::Triad => b_value(i) + SCALE * c_value(i),
                };
                (*x != want).then(|| format!("element {i}: got {x}, expected {want}"))
            })
        },
    );
    if let Some(detail) = timed.results.into_iter().flatten().next() {
        return Err(PeakError::Verification {
            what: format!("stream {}", kind.as_str()),
            detail,
        });
    }
    let threads = cfg.threads as u64;
    Ok(StreamMeasurement {
        kind,
        threads: cfg.threads,
        working_set_bytes: (elems * 8 * kind.arrays()) as u64 * threads,
        bytes_per_rep: elems as u64 * kind.bytes_per_element() * cfg.passes as u64 * threads,
        samples_s: timed.samples_s[cfg.warmup_reps..].to_vec(),
        isa,
        pinned: timed.pinned,
        verified: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: StreamKind, limit: IsaLimit) -> StreamMeasurement {
        stream(&StreamConfig {
            kind,
            bytes_per_thread: 3 << 16,
            threads: 2,
            passes: 3,
            reps: 2,
            warmup_reps: 1,
            limit,
        })
        .expect("stream runs")
    }

    #[test]
    fn peak_stream_kernels_verify_on_every_path() {
        for limit in [IsaLimit::Scalar, IsaLimit::Simd, IsaLimit::Native] {
            for kind in [StreamKind::Copy, StreamKind::Triad] {
                let m = run(kind, limit);
                assert!(m.verified);
                assert_eq!(m.samples_s.len(), 2);
                let elems = (3u64 << 16) / kind.bytes_per_element();
                assert_eq!(m.bytes_per_rep, elems * kind.bytes_per_element() * 3 * 2);
                if limit == IsaLimit::Scalar {
                    assert_eq!(m.isa, Isa::Scalar);
                }
            }
        }
    }

    #[test]
    fn peak_stream_rejects_empty_work() {
        let err = stream(&StreamConfig {
            kind: StreamKind::Copy,
            bytes_per_thread: 8,
            threads: 1,
            passes: 1,
            reps: 1,
            warmup_reps: 0,
            limit: IsaLimit::Native,
        });
        assert!(matches!(err, Err(PeakError::Config(_))));
    }
}
