//! The independent C FMA microbenchmark (`kernels/csrc/fma_ref.c`, compiled by
//! build.rs with the system C compiler) used to cross-check [`super::fma_peak`].
//!
//! The C code has its own accumulator count, constants and clock (`clock_gettime`
//! around the loop, inside C); only thread placement is shared with flopcal (the same
//! pinned threads, one per physical core). A repetition lasts from the earliest
//! C-measured start to the latest C-measured end among the threads (CLOCK_MONOTONIC),
//! so threads that did not really run concurrently cannot inflate the total.
//!
//! If build.rs found no suitable C compiler the reference is not linked in and
//! [`RefKernel::available`] is false everywhere.

use super::{threads, Dtype, Isa, PeakError};

#[cfg(flopcal_amx_cref)]
extern "C" {
    fn flopcal_ref_amx_bf16(iters: u64, t: *mut f64) -> u64;
    fn flopcal_ref_amx_int8(iters: u64, t: *mut f64) -> u64;
}

#[cfg(flopcal_cref)]
extern "C" {
    fn flopcal_ref_avx512_f32(iters: u64, m: f32, c: f32, out: *mut f32, t: *mut f64);
    fn flopcal_ref_avx512_f64(iters: u64, m: f64, c: f64, out: *mut f64, t: *mut f64);
    fn flopcal_ref_avx2_f32(iters: u64, m: f32, c: f32, out: *mut f32, t: *mut f64);
}

/// A C reference kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKernel {
    /// AVX-512F f32, 16 accumulators.
    Avx512F32,
    /// AVX-512F f64, 16 accumulators.
    Avx512F64,
    /// AVX2+FMA f32, 10 accumulators.
    Avx2F32,
    /// AMX `tdpbf16ps` (C intrinsics, `kernels/csrc/amx_ref.c`).
    AmxBf16,
    /// AMX `tdpbssd` (C intrinsics).
    AmxInt8,
}

impl RefKernel {
    /// The flopcal kernel this one cross-checks.
    pub fn counterpart(self) -> (Isa, Dtype) {
        match self {
            RefKernel::Avx512F32 => (Isa::Avx512, Dtype::F32),
            RefKernel::Avx512F64 => (Isa::Avx512, Dtype::F64),
            RefKernel::Avx2F32 => (Isa::Avx2, Dtype::F32),
            RefKernel::AmxBf16 => (Isa::Amx, Dtype::Bf16),
            RefKernel::AmxInt8 => (Isa::AmxInt8, Dtype::Int8),
        }
    }

    /// FLOPs of one iteration on one thread.
    pub fn flops_per_iteration(self) -> u64 {
        match self {
            RefKernel::Avx512F32 => 16 * 16 * 2,
            RefKernel::Avx512F64 => 16 * 8 * 2,
            RefKernel::Avx2F32 => 10 * 8 * 2,
            RefKernel::AmxBf16 => 4 * 16 * 16 * 32 * 2,
            RefKernel::AmxInt8 => 4 * 16 * 16 * 64 * 2,
        }
    }

    /// Whether the C reference was built and this CPU can run it.
    pub fn available(self) -> bool {
        use super::amx::{availability, AmxOp};
        match self {
            RefKernel::AmxBf16 => {
                return cfg!(flopcal_amx_cref) && availability(AmxOp::Bf16).is_ok()
            }
            RefKernel::AmxInt8 => {
                return cfg!(flopcal_amx_cref) && availability(AmxOp::Int8).is_ok()
            }
            _ if !cfg!(flopcal_cref) => return false,
            _ => {}
        }
        match self {
            RefKernel::Avx512F32 | RefKernel::Avx512F64 => is_x86_feature_detected!("avx512f"),
            RefKernel::Avx2F32 => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            }
            RefKernel::AmxBf16 | RefKernel::AmxInt8 => false,
        }
    }

    /// The widest reference kernel for `dtype` this CPU runs, if any.
    pub fn best_for(dtype: Dtype) -> Option<RefKernel> {
        let order: &[RefKernel] = match dtype {
            Dtype::F32 => &[RefKernel::Avx512F32, RefKernel::Avx2F32],
            Dtype::F64 => &[RefKernel::Avx512F64],
            Dtype::Bf16 => &[RefKernel::AmxBf16],
            Dtype::Int8 => &[RefKernel::AmxInt8],
        };
        order.iter().copied().find(|k| k.available())
    }

    /// One call: `([start, end] seconds by the C clock, result)`, where the result
    /// is the sum of all lanes (FMA) or 1 when every tile element was right (AMX);
    /// `None` if the reference is not built or the CPU lacks the feature (nothing
    /// executed then).
    fn call(self, iters: u64, m: f64, c: f64) -> Option<([f64; 2], f64)> {
        if !self.available() {
            return None;
        }
        match self {
            RefKernel::AmxBf16 | RefKernel::AmxInt8 => self.call_amx(iters),
            _ => self.call_fma(iters, m, c),
        }
    }

    #[cfg(not(flopcal_amx_cref))]
    fn call_amx(self, _iters: u64) -> Option<([f64; 2], f64)> {
        None
    }

    #[cfg(flopcal_amx_cref)]
    fn call_amx(self, iters: u64) -> Option<([f64; 2], f64)> {
        let mut t = [0f64; 2];
        // SAFETY: `available` (checked by the caller) confirmed CPUID, XCR0 and the
        // arch_prctl permission for this instruction; `t` is two valid f64s.
        let bad = match self {
            RefKernel::AmxBf16 => unsafe { flopcal_ref_amx_bf16(iters, t.as_mut_ptr()) },
            RefKernel::AmxInt8 => unsafe { flopcal_ref_amx_int8(iters, t.as_mut_ptr()) },
            _ => return None,
        };
        Some((t, if bad == 0 { 1.0 } else { 0.0 }))
    }

    #[cfg(not(flopcal_cref))]
    fn call_fma(self, _iters: u64, _m: f64, _c: f64) -> Option<([f64; 2], f64)> {
        None
    }

    #[cfg(flopcal_cref)]
    fn call_fma(self, iters: u64, m: f64, c: f64) -> Option<([f64; 2], f64)> {
        let mut t = [0f64; 2];
        let sum = match self {
            RefKernel::Avx512F32 => {
                let mut out = 0f32;
                // SAFETY: avx512f was detected at run time (`available` above); `out`
                // is a valid f32 and `t` two valid f64s the C function writes once.
                unsafe {
                    flopcal_ref_avx512_f32(iters, m as f32, c as f32, &mut out, t.as_mut_ptr())
                };
                f64::from(out)
            }
            RefKernel::Avx512F64 => {
                let mut out = 0f64;
                // SAFETY: avx512f was detected at run time (`available` above); `out`
                // is a valid f64 and `t` two valid f64s the C function writes once.
                unsafe { flopcal_ref_avx512_f64(iters, m, c, &mut out, t.as_mut_ptr()) };
                out
            }
            RefKernel::Avx2F32 => {
                let mut out = 0f32;
                // SAFETY: avx2 and fma were detected at run time (`available` above);
                // `out` is a valid f32 and `t` two valid f64s the C function writes once.
                unsafe {
                    flopcal_ref_avx2_f32(iters, m as f32, c as f32, &mut out, t.as_mut_ptr())
                };
                f64::from(out)
            }
            RefKernel::AmxBf16 | RefKernel::AmxInt8 => return None,
        };
        Some((t, sum))
    }

    /// What a correct call returns: the lanes summed into the FMA kernels' output
    /// (each converges to 1), or 1 for "every AMX tile element right".
    fn expected(self) -> f64 {
        match self {
            RefKernel::Avx512F32 => 256.0,
            RefKernel::Avx512F64 => 128.0,
            RefKernel::Avx2F32 => 80.0,
            RefKernel::AmxBf16 | RefKernel::AmxInt8 => 1.0,
        }
    }
}

/// Raw result of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub struct RefMeasurement {
    /// The C kernel.
    pub kernel: RefKernel,
    /// Threads.
    pub threads: usize,
    /// FLOPs of one repetition, all threads.
    pub flops_per_rep: u64,
    /// Per repetition, seconds from the earliest C-measured start to the latest
    /// C-measured end among the threads.
    pub samples_s: Vec<f64>,
}

/// Run the C reference: `reps` timed repetitions (after `warmup_reps`) of `iterations`
/// iterations on each of `threads` pinned threads. The result of every call is checked
/// against the contraction's fixed point, so a loop the C compiler dropped fails.
pub fn run(
    kernel: RefKernel,
    threads: usize,
    iterations: u64,
    reps: usize,
    warmup_reps: usize,
) -> Result<RefMeasurement, PeakError> {
    let (isa, dtype) = kernel.counterpart();
    if !kernel.available() {
        return Err(PeakError::Unsupported {
            isa,
            dtype,
            reason: "the C reference is not built or the CPU/OS lacks its ISA".into(),
        });
    }
    if threads == 0 || reps == 0 || iterations < 100_000 {
        return Err(PeakError::Config(
            "the reference needs ≥1 thread, ≥1 rep and ≥100000 iterations".into(),
        ));
    }
    // FMA: x ← 0.75·x + 0.25 converges to 1 from any start; after ≥1e5 iterations
    // every lane is 1 to within rounding, so the sum of lanes is the lane count.
    // AMX: the C code checks every tile element itself.
    let (m, c) = (std::hint::black_box(0.75), std::hint::black_box(0.25));
    let timed = threads::run_pinned(
        threads,
        warmup_reps + reps,
        |_| (Vec::with_capacity(warmup_reps + reps), None::<String>),
        |(times, err)| match kernel.call(iterations, m, c) {
            Some((t, sum)) => {
                times.push(t);
                if (sum - kernel.expected()).abs() > 1e-3 * kernel.expected() && err.is_none() {
                    *err = Some(format!("result {sum}, expected {}", kernel.expected()));
                }
            }
            None => *err = Some("CPU feature vanished".into()),
        },
        |s| s,
    );
    let mut spans = vec![[f64::INFINITY, f64::NEG_INFINITY]; warmup_reps + reps];
    for (times, err) in &timed.results {
        if let Some(detail) = err {
            return Err(PeakError::Verification {
                what: format!("C reference {kernel:?}"),
                detail: detail.clone(),
            });
        }
        for (s, t) in spans.iter_mut().zip(times) {
            s[0] = s[0].min(t[0]);
            s[1] = s[1].max(t[1]);
        }
    }
    let mut samples_s: Vec<f64> = spans.iter().map(|s| s[1] - s[0]).collect();
    Ok(RefMeasurement {
        kernel,
        threads,
        flops_per_rep: kernel.flops_per_iteration() * iterations * threads as u64,
        samples_s: samples_s.split_off(warmup_reps),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ceilings::{fma_peak, FmaConfig, IsaLimit};

    /// (best, median) of per-repetition FLOP/s.
    fn best_median(rates: &[f64]) -> (f64, f64) {
        let mut r = rates.to_vec();
        r.sort_by(|a, b| b.total_cmp(a));
        (r[0], r[r.len() / 2])
    }

    /// flopcal's kernel and the C reference, same process, same threads, interleaved
    /// so both see the same machine state. The ratio is printed; it is asserted only
    /// loosely (0.5–2, which still catches a FLOP count off by 2×) and only when both
    /// sides' repetitions were steady (best within 25% of the median), so a busy
    /// shared VM cannot make it flake. `flopcal peak` runs the real ±10% check.
    #[test]
    fn peak_matches_c_reference_as_a_ratio() {
        let Some(kernel) = RefKernel::best_for(Dtype::F32) else {
            eprintln!("no AVX2/AVX-512 or no C compiler: C reference not applicable");
            return;
        };
        let (isa, dtype) = kernel.counterpart();
        let threads = crate::ceilings::physical_core_cpus().len().min(2);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let m = fma_peak(&FmaConfig {
                isa,
                dtype,
                threads,
                iterations: 2_000_000,
                reps: 3,
                warmup_reps: 1,
                limit: IsaLimit::Native,
            })
            .expect("flopcal kernel runs");
            ours.extend(m.samples_s.iter().map(|s| m.flops_per_rep as f64 / s));
            let r = run(kernel, threads, 2_000_000, 3, 1).expect("reference runs");
            theirs.extend(r.samples_s.iter().map(|s| r.flops_per_rep as f64 / s));
        }
        let (o_best, o_med) = best_median(&ours);
        let (t_best, t_med) = best_median(&theirs);
        let ratio = o_best / t_best;
        eprintln!(
            "flopcal {isa} {dtype}: {:.1} GFLOP/s, C reference: {:.1} GFLOP/s, ratio {ratio:.3}",
            o_best / 1e9,
            t_best / 1e9
        );
        if o_best > 1.25 * o_med || t_best > 1.25 * t_med {
            eprintln!("repetitions unsteady (busy machine): ratio reported, not asserted");
            return;
        }
        assert!(
            (0.5..2.0).contains(&ratio),
            "flopcal/C-reference ratio {ratio:.3} is far outside noise"
        );
    }
}
