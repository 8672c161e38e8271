//! Criterion benches of the peak microkernels next to the independent C reference.
//!
//! Each iteration runs a fixed 1M-iteration FMA loop on one pinned thread; criterion's
//! time per iteration therefore converts to FLOP/s as `flops_per_iteration · 1e6 / t`
//! (criterion prints it as throughput in "elements", i.e. FLOPs).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flopcal_kernels::ceilings::{self, Dtype, FmaConfig, IsaLimit};

const ITERS: u64 = 1 << 20;

fn bench_peak(c: &mut Criterion) {
    let mut g = c.benchmark_group("peak");
    g.sample_size(20);
    for p in ceilings::microkernels(IsaLimit::Native) {
        if p.skip_reason.is_some() {
            continue;
        }
        let cfg = FmaConfig {
            isa: p.isa,
            dtype: p.dtype,
            threads: 1,
            iterations: ITERS,
            reps: 1,
            warmup_reps: 0,
            limit: IsaLimit::Native,
        };
        g.throughput(Throughput::Elements(
            ceilings::flops_per_iteration(p.isa, p.dtype) * ITERS,
        ));
        g.bench_function(format!("flopcal/{}/{}", p.isa, p.dtype), |b| {
            b.iter(|| ceilings::fma_peak(&cfg).map(|m| m.samples_s[0]))
        });
    }
    #[cfg(target_arch = "x86_64")]
    for dtype in [Dtype::F32, Dtype::F64] {
        if let Some(k) = ceilings::reference::RefKernel::best_for(dtype) {
            g.throughput(Throughput::Elements(k.flops_per_iteration() * ITERS));
            g.bench_function(format!("c-reference/{k:?}"), |b| {
                b.iter(|| ceilings::reference::run(k, 1, ITERS, 1, 0).map(|m| m.samples_s[0]))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_peak);
criterion_main!(benches);
