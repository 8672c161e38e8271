//! Criterion benches of the interactive paths: `estimate` and `calibrate` over the whole
//! embedded catalog (target: well under 50 ms each).

use criterion::{criterion_group, criterion_main, Criterion};
use flopcal_model::calibrate::{calibrate, Fit};
use flopcal_model::catalog::Catalog;
use flopcal_model::cost::{estimate, Assumptions, Plan};

fn bench(c: &mut Criterion) {
    let cat = Catalog::embedded();

    c.bench_function("catalog_parse_embedded_plus_override", |b| {
        b.iter(|| Catalog::load(None).map(|c| c.runs.len()))
    });

    c.bench_function("calibrate_whole_catalog", |b| {
        b.iter(|| calibrate(cat).map(|c| c.summary.runs_fitted))
    });

    // Every catalog model with a schedule on every catalog hardware, calibrated MFU
    // (the fit included, as `flopcal estimate` does it once per call).
    c.bench_function("estimate_every_model_on_every_hardware", |b| {
        b.iter(|| {
            let fit = Fit::from_catalog(cat).ok()?;
            let mut total = 0.0;
            for m in cat.models.iter().filter(|m| !m.training.is_empty()) {
                let plan = Plan::published(m);
                for hw in &cat.hardware {
                    let a = Assumptions::new(
                        f64::from(hw.chips_per_device),
                        fit.calibrated_mfu(hw).ok()?,
                    );
                    total += estimate(&plan, hw, &a).ok()?.device_hours;
                }
            }
            Some(total)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
