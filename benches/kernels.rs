//! Criterion benches of the kernels at representative shapes (BERT-base at seq 128,
//! batch 8: 1024 tokens), so kernel speed claims live in a bench, not a unit test.
//!
//! `cargo bench --bench kernels`; `-- --quick` for a fast pass.

use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flopcal_kernels::attention::AttentionKernel;
use flopcal_kernels::elementwise::{Elementwise, Op};
use flopcal_kernels::gemm::{GemmPass, Matmul};
use flopcal_kernels::Kernel;

fn bench_kernel(c: &mut Criterion, group: &str, kernel: &dyn Kernel) {
    let mut prepared = kernel.prepare(&Device::Cpu).expect("prepare");
    assert!(
        prepared.verify().expect("verify").passed,
        "{} is wrong",
        kernel.id()
    );
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.throughput(Throughput::Elements(kernel.work().flops));
    g.bench_function(kernel.id(), |b| {
        b.iter(|| {
            prepared.run().expect("run");
            prepared.synchronize().expect("sync");
        })
    });
    g.finish();
}

fn gemm(c: &mut Criterion) {
    for layout in GemmPass::ALL {
        bench_kernel(
            c,
            "gemm",
            &Matmul::linear("ffn_in", layout, 1024, 768, 3072, DType::F32),
        );
    }
    bench_kernel(c, "gemm", &Matmul::square(2048, DType::F32));
    bench_kernel(c, "gemm", &Matmul::square(1024, DType::BF16));
    bench_kernel(c, "gemm", &Matmul::square(1024, DType::F16));
}

fn attention(c: &mut Criterion) {
    for causal in [false, true] {
        bench_kernel(
            c,
            "attention",
            &AttentionKernel {
                label: "sdpa".into(),
                batch: 8,
                heads: 12,
                seq: 128,
                head_dim: 64,
                causal,
                dtype: DType::F32,
            },
        );
    }
}

fn memory_bound(c: &mut Criterion) {
    for (label, op, rows, cols) in [
        ("layernorm", Op::LayerNorm, 1024, 768),
        ("softmax", Op::Softmax, 12 * 8 * 128, 128),
        ("gelu", Op::Gelu, 1024, 3072),
    ] {
        bench_kernel(
            c,
            "memory_bound",
            &Elementwise {
                label: label.into(),
                op,
                rows,
                cols,
                dtype: DType::F32,
            },
        );
    }
    bench_kernel(
        c,
        "memory_bound",
        &Elementwise::bandwidth(Op::Triad, 1 << 24, DType::F32),
    );
}

criterion_group!(benches, gemm, attention, memory_bound);
criterion_main!(benches);
