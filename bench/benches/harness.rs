//! Criterion benches of flopcal's own overhead: the statistics must be negligible
//! next to the kernels they describe (target: under 1 ms for 10k samples).
//!
//! `cargo bench -p flopcal-bench --bench harness`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flopcal_bench::harness::{machine, measure, stats, HarnessConfig, MockExecutor};
use flopcal_bench::profiling::{measure_round, skeleton};
use flopcal_bench::suite::{Entry, Group};
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

fn round_readings(c: &mut Criterion) {
    // The per-round machine readings (two snapshots of /proc/stat and the process
    // clock, one frequency read): their cost against one round of a real kernel is
    // the overhead they add to a profile (target: under 1%).
    c.bench_function("machine/snapshot_and_reading", |b| {
        b.iter(|| machine::reading(&machine::snapshot()))
    });
    let entry = Entry {
        group: Group::Square,
        kernel: Box::new(flopcal_kernels::gemm::Matmul::square(
            256,
            candle_core::DType::F32,
        )),
    };
    let device = candle_core::Device::Cpu;
    // One round of a quick profile's shape: a short warm-up and a 0.1 s budget.
    let cfg = HarnessConfig {
        warmup_s: 0.02,
        budget_s: 0.1,
        min_samples: 4,
        ..HarnessConfig::quick()
    };
    let mut bench = skeleton(&entry);
    measure_round(&mut bench, &entry, &device, &cfg, true, None, false);
    let mut g = c.benchmark_group("round");
    g.sample_size(10);
    for read in [false, true] {
        let name = if read {
            "with_readings"
        } else {
            "without_readings"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                // Keep the record from growing over criterion's iterations.
                bench.samples_s.clear();
                bench.round_sizes.clear();
                bench.round_readings.clear();
                measure_round(&mut bench, &entry, &device, &cfg, false, None, read)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, statistics, sampling_loop, round_readings);
criterion_main!(benches);
