//! aarch64 NEON FMA-throughput kernels (128-bit `fmla`).

use std::arch::aarch64::*;

use super::ACCUMULATORS;

/// Why NEON cannot run, or `Ok`.
pub(super) fn availability() -> Result<(), String> {
    if std::arch::is_aarch64_feature_detected!("neon") {
        Ok(())
    } else {
        Err("CPU lacks NEON (Advanced SIMD)".into())
    }
}

/// Relevant features this CPU reports.
pub(super) fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if std::arch::is_aarch64_feature_detected!("neon") {
        f.push("neon");
    }
    if std::arch::is_aarch64_feature_detected!("bf16") {
        f.push("bf16");
    }
    if std::arch::is_aarch64_feature_detected!("sve") {
        f.push("sve");
    }
    f
}

macro_rules! neon_kernel {
    ($name:ident, $imp:ident, $t:ty, $lanes:expr, $vec:ty, $dup:ident, $load:ident, $store:ident, $fma:ident) => {
        #[target_feature(enable = "neon")]
        #[inline(never)]
        fn $imp(n: u64, a: $t, d: $t, acc: &mut [$t; ACCUMULATORS * $lanes]) {
            let va = $dup(a);
            let vd = $dup(d);
            let mut r: [$vec; ACCUMULATORS] = [$dup(0.0); ACCUMULATORS];
            for (i, v) in r.iter_mut().enumerate() {
                // SAFETY: `acc` has ACCUMULATORS * lanes elements, so this load is in bounds.
                *v = unsafe { $load(acc.as_ptr().add(i * $lanes)) };
            }
            for _ in 0..n {
                for v in r.iter_mut() {
                    // vfmaq(x, y, z) = x + y·z: here d + acc·a.
                    *v = $fma(vd, *v, va);
                }
            }
            for (i, v) in r.iter().enumerate() {
                // SAFETY: as for the loads above.
                unsafe { $store(acc.as_mut_ptr().add(i * $lanes), *v) };
            }
        }

        /// Safe entry: `false` (and nothing executed) if the CPU lacks NEON.
        pub(super) fn $name(n: u64, a: $t, d: $t, acc: &mut [$t]) -> bool {
            let Ok(acc) = <&mut [$t; ACCUMULATORS * $lanes]>::try_from(acc) else {
                return false;
            };
            if !std::arch::is_aarch64_feature_detected!("neon") {
                return false;
            }
            // SAFETY: NEON was detected at run time just above.
            unsafe { $imp(n, a, d, acc) };
            true
        }
    };
}

neon_kernel!(
    neon_f32,
    neon_f32_imp,
    f32,
    4,
    float32x4_t,
    vdupq_n_f32,
    vld1q_f32,
    vst1q_f32,
    vfmaq_f32
);
neon_kernel!(
    neon_f64,
    neon_f64_imp,
    f64,
    2,
    float64x2_t,
    vdupq_n_f64,
    vld1q_f64,
    vst1q_f64,
    vfmaq_f64
);
