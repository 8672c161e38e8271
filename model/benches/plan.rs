//! Criterion benches of the step model's interactive paths (issue 12 targets: `plan`
//! for 16,384 devices within 200 ms, an estimate within 50 ms).

use criterion::{criterion_group, criterion_main, Criterion};
use flopcal_model::catalog::{Catalog, Hardware};
use flopcal_model::fit::{self, fit_steps};
use flopcal_model::flops::Phase;
use flopcal_model::forecast::{forecast, ForecastRequest};
use flopcal_model::search::Constraints;

fn bench(c: &mut Criterion) {
    let cat = Catalog::embedded();
    let step_fit = fit::embedded_parameters().expect("embedded fit");
    let h100 = cat.hardware("h100").expect("h100");
    let a100 = cat.hardware("a100").expect("a100");
    let llama = cat.model("llama3-405b").expect("llama3-405b").config();
    let llama2_70b = cat
        .model("megatron-76.1b")
        .expect("megatron-76.1b")
        .config();
    let seven_b = cat.model("megatron-7.5b").expect("megatron-7.5b").config();
    let m145 = cat
        .model("megatron-145.6b")
        .expect("megatron-145.6b")
        .config();

    // Every layout of Llama 3 405B on 16,384 H100 (batch 2,048 x 8,192), keeping 10.
    let phases = [Phase {
        steps: 1,
        batch: 2048,
        seq: 8192,
    }];
    let req = |cfg, hw, devices, phases| ForecastRequest {
        cfg,
        phases,
        hw,
        dtype: None,
        devices,
        constraints: Constraints::default(),
        rates: None,
        keep: 10,
        gemm_efficiency: None,
        network: None,
        framework: None,
        production_layout: false,
    };
    c.bench_function("plan_llama3_405b_16384_h100", |b| {
        b.iter(|| forecast(&req(&llama, h100, 16384, &phases), step_fit).map(|f| f.mfu))
    });
    // A model with many feasible layouts at that scale (80 layers: pipelines of
    // 1-16 stages, interleaving, every micro-batch, sharding and recomputation).
    let phases_145 = [Phase {
        steps: 1,
        batch: 8192,
        seq: 2048,
    }];
    c.bench_function("plan_145b_16384_a100", |b| {
        b.iter(|| forecast(&req(&m145, a100, 16384, &phases_145), step_fit).map(|f| f.mfu))
    });
    let phases_76 = [Phase {
        steps: 100_000,
        batch: 1792,
        seq: 2048,
    }];
    c.bench_function("plan_76b_2048_a100", |b| {
        b.iter(|| forecast(&req(&llama2_70b, a100, 2048, &phases_76), step_fit).map(|f| f.mfu))
    });
    // One estimate: the best layout only, the band's two extra forecasts included.
    let phases_7 = [Phase {
        steps: 500_000,
        batch: 2048,
        seq: 2048,
    }];
    c.bench_function("estimate_7b_512_h100_with_band", |b| {
        b.iter(|| {
            let mut r = req(&seven_b, h100, 512, &phases_7);
            r.keep = 1;
            r.production_layout = true;
            let mid = forecast(&r, step_fit).ok()?;
            Some(mid.mfu * mid.efficiency.band.width())
        })
    });
    // What one `flopcal estimate` process computes, from a fresh state: the fit of
    // every published run with its leave-one-source-out residuals (no cache) and the
    // estimate with its band.
    let estimate_fresh = |cfg, hw: &'static Hardware, devices, phases| {
        let f = fit::fit_parameters(cat).ok()?;
        let mut r = req(cfg, hw, devices, phases);
        r.keep = 1;
        r.production_layout = true;
        let mid = forecast(&r, &f).ok()?;
        Some(mid.mfu * mid.efficiency.band.width())
    };
    let llama2_70b_hf = cat.model("llama2-70b").expect("llama2-70b").config();
    let phases_70 = [Phase {
        steps: 238_419,
        batch: 2048,
        seq: 4096,
    }];
    let mut g = c.benchmark_group("fresh");
    g.sample_size(20);
    g.bench_function("estimate_7b_512_h100_with_fit", |b| {
        b.iter(|| estimate_fresh(&seven_b, h100, 512, &phases_7))
    });
    g.bench_function("estimate_llama2_70b_2048_a100_with_fit", |b| {
        b.iter(|| estimate_fresh(&llama2_70b_hf, a100, 2048, &phases_70))
    });
    g.finish();
    // The fit an estimate computes (every published run solved, each source left out
    // for the bands' residuals), and the checks `calibrate` adds.
    let mut g = c.benchmark_group("fit");
    g.sample_size(10);
    g.bench_function("fit_parameters_all_published_runs", |b| {
        b.iter(|| fit::fit_parameters(cat).map(|f| f.parameters.len()))
    });
    g.bench_function("fit_and_check_all_published_runs", |b| {
        b.iter(|| fit_steps(cat).map(|f| f.1.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
