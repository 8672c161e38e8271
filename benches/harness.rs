//! Criterion benches of flopcal's own overhead: the statistics must be negligible
//! next to the kernels they describe (target: under 1 ms for 10k samples).
//!
//! `cargo bench --bench harness`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flopcal::harness::{measure, stats, HarnessConfig, MockExecutor};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn samples(n: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|_| 0.01 * (1.0 - 0.05 * (1.0 - rng.random::<f64>()).ln()))
        .collect()
}

fn statistics(c: &mut Criterion) {
    let mut g = c.benchmark_group("summarize");
    for n in [100, 1_000, 10_000] {
        let xs = samples(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &xs, |b, xs| {
            b.iter(|| stats::summarize(std::hint::black_box(xs)))
        });
    }
    g.finish();
}

fn sampling_loop(c: &mut Criterion) {
    // The whole adaptive loop with a mock executor: its cost per sample is the
    // harness overhead added on top of every measured kernel.
    c.bench_function("measure/mock_1000_samples", |b| {
        b.iter(|| {
            let mut i = 0u64;
            let mut exec = MockExecutor::new(move |_| {
                i = i.wrapping_mul(6364136223846793005).wrapping_add(1);
                0.01 * (1.0 + ((i >> 40) as f64 / (1u64 << 24) as f64) * 0.5)
            });
            let config = HarnessConfig {
                max_samples: 1000,
                budget_s: 1e9,
                target_ci: 1e-9,
                ..HarnessConfig::standard()
            };
            measure(&mut exec, &config, &|| false)
        })
    });
}

criterion_group!(benches, statistics, sampling_loop);
criterion_main!(benches);
