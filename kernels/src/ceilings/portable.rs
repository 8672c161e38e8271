//! Portable scalar FMA-throughput kernels: plain Rust, no intrinsics, any CPU.
//!
//! Rust never contracts `x * a + d` into a fused multiply-add, so each update is a
//! separate multiply and add (2 FLOPs). The kernel is not inlined so its loop stays a
//! loop of its own; the accumulators live in registers.
//!
//! Left alone, LLVM's SLP vectoriser packs the independent accumulators into SSE/NEON
//! vectors, which would make "scalar" a 128-bit SIMD figure (and a latency-bound one).
//! On x86-64 and aarch64 an empty `asm!` statement after every update pins each
//! accumulator in its own register as a scalar; it emits no instruction.

use super::ACCUMULATORS;

/// Keep `x` a scalar in a register of its own (defeats SLP vectorisation).
#[inline(always)]
fn opaque<T: Opaque>(x: &mut T) {
    x.opaque();
}

trait Opaque {
    fn opaque(&mut self);
}

macro_rules! opaque_impl {
    ($t:ty, $arm:literal) => {
        impl Opaque for $t {
            #[inline(always)]
            fn opaque(&mut self) {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: an empty asm statement: no instruction is emitted and no memory
                // or flags are touched; it only hides the value from the optimiser.
                // SSE2 registers are baseline on x86-64, so no feature check is needed.
                unsafe {
                    std::arch::asm!(
                        "/* {0} */",
                        inout(xmm_reg) * self,
                        options(pure, nomem, nostack, preserves_flags)
                    );
                }
                #[cfg(target_arch = "aarch64")]
                // SAFETY: an empty asm statement, as above; vector registers are baseline
                // on aarch64, so no feature check is needed.
                unsafe {
                    std::arch::asm!(
                        $arm,
                        inout(vreg) * self,
                        options(pure, nomem, nostack, preserves_flags)
                    );
                }
            }
        }
    };
}

opaque_impl!(f32, "/* {0:s} */");
opaque_impl!(f64, "/* {0:d} */");

macro_rules! scalar_kernel {
    ($name:ident, $t:ty) => {
        /// `acc[i] = acc[i] * a + d`, `n` times, on [`ACCUMULATORS`] scalar accumulators.
        #[inline(never)]
        pub(super) fn $name(n: u64, a: $t, d: $t, acc: &mut [$t]) -> bool {
            let Some(acc) = acc.get_mut(..ACCUMULATORS) else {
                return false;
            };
            let mut r = [0.0 as $t; ACCUMULATORS];
            r.copy_from_slice(acc);
            for _ in 0..n {
                for x in r.iter_mut() {
                    *x = *x * a + d;
                    opaque(x);
                }
            }
            acc.copy_from_slice(&r);
            true
        }
    };
}

scalar_kernel!(scalar_f32, f32);
scalar_kernel!(scalar_f64, f64);
