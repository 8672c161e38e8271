//! x86-64 FMA-throughput kernels: AVX2+FMA, AVX-512F, AVX-512 BF16 (AMX lives in
//! [`super::amx`]).
//!
//! Each kernel is a `#[target_feature]` function reached only through a safe wrapper
//! that checks the feature at run time (`is_x86_feature_detected!` caches the CPUID
//! result, so the check costs a load per call of [`super::CHUNK`] iterations).

use std::arch::x86_64::*;

use super::{Isa, ACCUMULATORS};

/// Why `isa` cannot run on this CPU/OS, or `Ok`.
pub(super) fn availability(isa: Isa) -> Result<(), String> {
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("CPU lacks {what}"))
        }
    };
    match isa {
        Isa::Avx2 => need(
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            "AVX2 and FMA3",
        ),
        Isa::Avx512 => need(is_x86_feature_detected!("avx512f"), "AVX-512F"),
        Isa::Avx512Bf16 => need(
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16"),
            "AVX-512 BF16 (vdpbf16ps)",
        ),
        Isa::Avx512Vnni => need(
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"),
            "AVX-512 VNNI (vpdpbusd)",
        ),
        Isa::Amx => super::amx::availability(super::amx::AmxOp::Bf16),
        Isa::AmxInt8 => super::amx::availability(super::amx::AmxOp::Int8),
        Isa::Scalar | Isa::Neon => Err(format!("{isa} is not an x86 path")),
    }
}

/// Relevant features this CPU reports.
pub(super) fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if is_x86_feature_detected!("fma") {
        f.push("fma");
    }
    if is_x86_feature_detected!("avx2") {
        f.push("avx2");
    }
    if is_x86_feature_detected!("avx512f") {
        f.push("avx512f");
    }
    if is_x86_feature_detected!("avx512bf16") {
        f.push("avx512bf16");
    }
    if is_x86_feature_detected!("avx512vnni") {
        f.push("avx512vnni");
    }
    let (tile, bf16, int8) = super::amx::cpuid_bits();
    if tile {
        f.push("amx-tile");
    }
    if bf16 {
        f.push("amx-bf16");
    }
    if int8 {
        f.push("amx-int8");
    }
    f
}

macro_rules! fma_kernel {
    (
        $name:ident, $imp:ident, $feat:literal, $check:expr, $t:ty, $lanes:expr,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident
    ) => {
        #[target_feature(enable = $feat)]
        #[inline(never)]
        fn $imp(n: u64, a: $t, d: $t, acc: &mut [$t; ACCUMULATORS * $lanes]) {
            let va = $set1(a);
            let vd = $set1(d);
            let mut r = [$zero(); ACCUMULATORS];
            for (i, v) in r.iter_mut().enumerate() {
                // SAFETY: `acc` has ACCUMULATORS * lanes elements, so lanes i*L..(i+1)*L
                // are in bounds; unaligned loads are allowed.
                *v = unsafe { $load(acc.as_ptr().add(i * $lanes)) };
            }
            for _ in 0..n {
                for v in r.iter_mut() {
                    *v = $fmadd(*v, va, vd);
                }
            }
            for (i, v) in r.iter().enumerate() {
                // SAFETY: as for the loads above.
                unsafe { $store(acc.as_mut_ptr().add(i * $lanes), *v) };
            }
        }

        /// Safe entry: `false` (and nothing executed) if the CPU lacks the feature.
        pub(super) fn $name(n: u64, a: $t, d: $t, acc: &mut [$t]) -> bool {
            let Ok(acc) = <&mut [$t; ACCUMULATORS * $lanes]>::try_from(acc) else {
                return false;
            };
            if !$check {
                return false;
            }
            // SAFETY: the required CPU features were detected at run time just above.
            unsafe { $imp(n, a, d, acc) };
            true
        }
    };
}

fma_kernel!(
    avx2_f32,
    avx2_f32_imp,
    "avx2,fma",
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
    f32,
    8,
    _mm256_setzero_ps,
    _mm256_set1_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_fmadd_ps
);
fma_kernel!(
    avx2_f64,
    avx2_f64_imp,
    "avx2,fma",
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
    f64,
    4,
    _mm256_setzero_pd,
    _mm256_set1_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_fmadd_pd
);
fma_kernel!(
    avx512_f32,
    avx512_f32_imp,
    "avx512f",
    is_x86_feature_detected!("avx512f"),
    f32,
    16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps
);
fma_kernel!(
    avx512_f64,
    avx512_f64_imp,
    "avx512f",
    is_x86_feature_detected!("avx512f"),
    f64,
    8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_fmadd_pd
);

/// `acc += a·d + a·d` per f32 lane via `vdpbf16ps` (a, d exactly representable in bf16).
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline(never)]
fn avx512_bf16_imp(n: u64, a: f32, d: f32, acc: &mut [f32; ACCUMULATORS * 16]) {
    let va = _mm512_cvtne2ps_pbh(_mm512_set1_ps(a), _mm512_set1_ps(a));
    let vd = _mm512_cvtne2ps_pbh(_mm512_set1_ps(d), _mm512_set1_ps(d));
    let mut r = [_mm512_setzero_ps(); ACCUMULATORS];
    for (i, v) in r.iter_mut().enumerate() {
        // SAFETY: `acc` has ACCUMULATORS * 16 elements; unaligned loads are allowed.
        *v = unsafe { _mm512_loadu_ps(acc.as_ptr().add(i * 16)) };
    }
    for _ in 0..n {
        for v in r.iter_mut() {
            *v = _mm512_dpbf16_ps(*v, va, vd);
        }
    }
    for (i, v) in r.iter().enumerate() {
        // SAFETY: as for the loads above.
        unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(i * 16), *v) };
    }
}

/// Safe entry of the AVX-512 BF16 kernel: `false` if the CPU lacks the feature.
pub(super) fn avx512_bf16(n: u64, a: f32, d: f32, acc: &mut [f32]) -> bool {
    let Ok(acc) = <&mut [f32; ACCUMULATORS * 16]>::try_from(acc) else {
        return false;
    };
    if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")) {
        return false;
    }
    // SAFETY: avx512f and avx512bf16 were detected at run time just above.
    unsafe { avx512_bf16_imp(n, a, d, acc) };
    true
}

/// `acc += Σ₄ 1·b` per int32 lane via `vpdpbusd` (u8 ones times the signed byte `b`).
#[target_feature(enable = "avx512f,avx512vnni")]
#[inline(never)]
fn avx512_vnni_imp(n: u64, b: i8, acc: &mut [i32; ACCUMULATORS * 16]) {
    let ones = _mm512_set1_epi8(1);
    let vb = _mm512_set1_epi8(b);
    let mut r = [_mm512_setzero_si512(); ACCUMULATORS];
    for (i, v) in r.iter_mut().enumerate() {
        // SAFETY: `acc` has ACCUMULATORS * 16 elements; unaligned loads are allowed.
        *v = unsafe { _mm512_loadu_si512(acc.as_ptr().add(i * 16).cast()) };
    }
    for _ in 0..n {
        for v in r.iter_mut() {
            *v = _mm512_dpbusd_epi32(*v, ones, vb);
        }
    }
    for (i, v) in r.iter().enumerate() {
        // SAFETY: as for the loads above.
        unsafe { _mm512_storeu_si512(acc.as_mut_ptr().add(i * 16).cast(), *v) };
    }
}

/// Safe entry of the AVX-512 VNNI kernel: `false` if the CPU lacks the feature.
pub(super) fn avx512_vnni(n: u64, b: i8, acc: &mut [i32]) -> bool {
    let Ok(acc) = <&mut [i32; ACCUMULATORS * 16]>::try_from(acc) else {
        return false;
    };
    if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")) {
        return false;
    }
    // SAFETY: avx512f and avx512vnni were detected at run time just above.
    unsafe { avx512_vnni_imp(n, b, acc) };
    true
}
