//! Calibration of the step model against published runs with a layout
//! ([`crate::published`]): what the physics does not capture, fitted as **one GEMM
//! efficiency per hardware class and software era** (the achieved fraction of the
//! shape model's ceiling), and judged by leave-one-out.
//!
//! For each run, the layout is the best plan under the run's stated dimensions (at a
//! starting efficiency), and the efficiency that makes the predicted step equal the
//! published one is solved by bisection. A (class, era) gets the geometric mean of its
//! runs. Leave-one-out predicts each run with its own row removed: from the rest of
//! its era, else the rest of its class, else every other run. Link and memory
//! efficiencies are stated constants ([`LINK_EFFICIENCY`], [`HBM_EFFICIENCY`]), not
//! fitted. Goodput (progress per wall-clock hour after failures and restarts) is kept
//! apart: every figure here is a step time.

use serde::Serialize;

use crate::catalog::{Catalog, Hardware};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::gemm_rate::{RateSource, ShapeModel};
use crate::layout::Layout;
use crate::published::{self, StepRun};
use crate::search::{search, Constraints};
use crate::step::{Batch, Efficiency, Prediction, StepModel};
use crate::system::System;

/// Achieved fraction of nominal link bandwidth (flopcal assumption: NCCL's bus
/// bandwidth on NVLink and InfiniBand is typically 75–85% of the link rate).
pub const LINK_EFFICIENCY: f64 = 0.8;
/// Achieved fraction of HBM bandwidth by memory-bound kernels (flopcal assumption).
pub const HBM_EFFICIENCY: f64 = 0.8;
/// Efficiency the layout choice starts from before the fit.
const START: f64 = 0.7;

/// The stated efficiencies of links and memory.
pub fn efficiency() -> Efficiency {
    Efficiency {
        link: LINK_EFFICIENCY,
        hbm: HBM_EFFICIENCY,
    }
}

/// The shape model of `sys` at GEMM efficiency `eta` (16-bit operands).
pub fn shape_model(sys: &System, eta: f64) -> ShapeModel {
    ShapeModel {
        peak_flops: sys.peak_flops,
        hbm_bw: sys.hbm_bw,
        compute_units: sys.compute_units,
        elem_bytes: 2.0,
        efficiency: eta,
    }
}

/// One fitted parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EraEfficiency {
    /// Hardware class.
    pub class: String,
    /// Software era.
    pub era: String,
    /// GEMM efficiency (geometric mean of the runs' solved efficiencies).
    pub gemm_efficiency: f64,
    /// The runs it was fitted on.
    pub runs: Vec<String>,
    /// Latest source date among them (YYYY-MM).
    pub date: String,
}

/// One run's solved efficiency.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Point {
    id: String,
    class: String,
    era: String,
    date: String,
    eta: f64,
}

/// The fit: one GEMM efficiency per (hardware class, era).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepFit {
    /// The parameters.
    pub parameters: Vec<EraEfficiency>,
    points: Vec<Point>,
}

/// Where an efficiency for a prediction came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chosen {
    /// The value.
    pub gemm_efficiency: f64,
    /// Lowest solved efficiency among the runs it rests on.
    pub low: f64,
    /// Highest.
    pub high: f64,
    /// In words: which parameter, fitted on which runs.
    pub basis: String,
}

fn geomean(xs: &[f64]) -> f64 {
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

impl StepFit {
    fn from_points(points: Vec<Point>) -> StepFit {
        let mut keys: Vec<(String, String)> = points
            .iter()
            .map(|p| (p.class.clone(), p.era.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        let parameters = keys
            .into_iter()
            .map(|(class, era)| {
                let own: Vec<&Point> = points
                    .iter()
                    .filter(|p| p.class == class && p.era == era)
                    .collect();
                EraEfficiency {
                    gemm_efficiency: geomean(&own.iter().map(|p| p.eta).collect::<Vec<_>>()),
                    runs: own.iter().map(|p| p.id.clone()).collect(),
                    date: own.iter().map(|p| p.date.clone()).max().unwrap_or_default(),
                    class,
                    era,
                }
            })
            .collect();
        StepFit { parameters, points }
    }

    fn without(&self, id: &str) -> StepFit {
        StepFit::from_points(self.points.iter().filter(|p| p.id != id).cloned().collect())
    }

    /// The efficiency for `class` in `era`. Without an era (a new run, whose software
    /// is unknown), or for an era without runs, the geometric mean of the class's runs
    /// across its eras, with their lowest and highest as the band; a class without runs
    /// falls back to all runs.
    pub fn choose(&self, class: &str, era: Option<&str>) -> Result<Chosen, ModelError> {
        let exact = era.and_then(|e| {
            self.parameters
                .iter()
                .find(|p| p.class == class && p.era == e)
        });
        if let Some(p) = exact {
            let own: Vec<f64> = self
                .points
                .iter()
                .filter(|x| x.class == class && x.era == p.era)
                .map(|x| x.eta)
                .collect();
            return Ok(Chosen {
                gemm_efficiency: p.gemm_efficiency,
                low: own.iter().copied().fold(f64::INFINITY, f64::min),
                high: own.iter().copied().fold(0.0, f64::max),
                basis: format!(
                    "GEMM efficiency {:.3} of class {} in era {}, fitted on {}",
                    p.gemm_efficiency,
                    p.class,
                    p.era,
                    p.runs.join(", ")
                ),
            });
        }
        let pool: Vec<&Point> = {
            let c: Vec<&Point> = self.points.iter().filter(|p| p.class == class).collect();
            if c.is_empty() {
                self.points.iter().collect()
            } else {
                c
            }
        };
        if pool.is_empty() {
            return Err(ModelError::InvalidInput(
                "no published run to calibrate the step model from".into(),
            ));
        }
        let etas: Vec<f64> = pool.iter().map(|p| p.eta).collect();
        let v = geomean(&etas);
        let (low, high) = (
            etas.iter().copied().fold(f64::INFINITY, f64::min),
            etas.iter().copied().fold(0.0, f64::max),
        );
        let mut eras: Vec<&str> = pool.iter().map(|p| p.era.as_str()).collect();
        eras.sort_unstable();
        eras.dedup();
        let scope = if pool.iter().all(|p| p.class == class) {
            format!("class {class}, pooled over its eras")
        } else {
            format!("every class (no run of class {class})")
        };
        Ok(Chosen {
            gemm_efficiency: v,
            low,
            high,
            basis: format!(
                "GEMM efficiency {v:.3} (its runs {low:.3}-{high:.3}) of {scope} {}: {}",
                eras.join(", "),
                pool.iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }
}

/// A published run checked against the step model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepCheck {
    /// Run id.
    pub id: String,
    /// Hardware.
    pub hardware: String,
    /// Hardware class.
    pub class: String,
    /// Software era.
    pub era: String,
    /// Chips.
    pub devices: u64,
    /// Published seconds per step (computed from the published figure).
    pub published_step_s: f64,
    /// Predicted with the full fit.
    pub predicted_step_s: f64,
    /// `predicted / published − 1`.
    pub error: f64,
    /// Predicted from a fit without this run.
    pub loo_predicted_step_s: f64,
    /// `|ln(loo_predicted / published)|`.
    pub loo_abs_log_error: f64,
    /// What the leave-one-out prediction rested on.
    pub loo_basis: String,
    /// The run's own solved GEMM efficiency.
    pub solved_gemm_efficiency: f64,
    /// The layout predicted (the best plan under the stated dimensions).
    pub layout: Layout,
    /// Predicted MFU.
    pub mfu: f64,
    /// Source.
    pub source: String,
}

struct Prepared<'a> {
    run: &'a StepRun,
    cfg: ModelConfig,
    hw: &'a Hardware,
    sys: System,
    seq: u64,
    constraints: Constraints,
}

impl Prepared<'_> {
    fn batch(&self) -> Batch {
        Batch {
            global_batch: self.run.batch,
            seq: self.seq,
        }
    }

    /// Best plan at efficiency `eta`.
    fn best(&self, eta: f64) -> Result<Prediction, ModelError> {
        let shape = shape_model(&self.sys, eta);
        let rates = RateSource::Shape(shape.clone());
        let m = StepModel::new(&self.cfg, &self.sys, &rates, &shape, efficiency(), self.seq);
        let r = search(&m, self.run.devices, self.batch(), &self.constraints, 1)?;
        r.plans.into_iter().next().ok_or_else(|| {
            ModelError::InvalidInput(format!(
                "published run `{}`: no layout fits ({})",
                self.run.id,
                r.rejected
                    .iter()
                    .map(|x| format!("{} x {}: {}", x.count, x.reason, x.example))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })
    }

    /// Step seconds of `layout` at efficiency `eta`.
    fn step(&self, layout: &Layout, eta: f64) -> f64 {
        let shape = shape_model(&self.sys, eta);
        let rates = RateSource::Shape(shape.clone());
        let m = StepModel::new(&self.cfg, &self.sys, &rates, &shape, efficiency(), self.seq);
        let layer = m.layer_cost(layout, self.seq);
        m.predict_with(layout, self.batch(), &layer).step_time_s
    }

    /// The efficiency at which the best layout's step equals the published one.
    fn solve(&self, want: f64) -> Result<f64, ModelError> {
        let layout = self.best(START)?.layout;
        let (mut lo, mut hi) = (0.02f64, 1.0f64);
        for _ in 0..50 {
            let mid = (lo * hi).sqrt();
            if self.step(&layout, mid) > want {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok((lo * hi).sqrt())
    }
}

fn prepare<'a>(cat: &'a Catalog, run: &'a StepRun) -> Result<Prepared<'a>, ModelError> {
    let cfg = run.config(cat)?;
    let hw = cat.hardware(&run.hardware)?;
    let sys = System::from_hardware(hw, None)?;
    let seq = run.seq(&cfg);
    Ok(Prepared {
        constraints: run.layout.constraints()?,
        run,
        cfg,
        hw,
        sys,
        seq,
    })
}

/// Fit the step model on every embedded published run and check each one, in full and
/// by leave-one-out.
pub fn fit_steps(cat: &Catalog) -> Result<(StepFit, Vec<StepCheck>), ModelError> {
    let runs = published::embedded();
    let prepared = runs
        .iter()
        .map(|r| prepare(cat, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut points = vec![];
    let mut wants = vec![];
    for p in &prepared {
        let want = p.run.published_step_s(&p.cfg)?;
        wants.push(want);
        points.push(Point {
            id: p.run.id.clone(),
            class: p.hw.class.clone(),
            era: p.run.era.clone(),
            date: p.run.date.clone(),
            eta: p.solve(want)?,
        });
    }
    let fit = StepFit::from_points(points);
    let mut checks = vec![];
    for (p, want) in prepared.iter().zip(wants) {
        let full = fit.choose(&p.hw.class, Some(&p.run.era))?;
        let pred = p.best(full.gemm_efficiency)?;
        let loo = fit
            .without(&p.run.id)
            .choose(&p.hw.class, Some(&p.run.era))?;
        let loo_pred = p.best(loo.gemm_efficiency)?;
        let solved = fit
            .points
            .iter()
            .find(|x| x.id == p.run.id)
            .map_or(f64::NAN, |x| x.eta);
        checks.push(StepCheck {
            id: p.run.id.clone(),
            hardware: p.hw.name.clone(),
            class: p.hw.class.clone(),
            era: p.run.era.clone(),
            devices: p.run.devices,
            published_step_s: want,
            predicted_step_s: pred.step_time_s,
            error: pred.step_time_s / want - 1.0,
            loo_predicted_step_s: loo_pred.step_time_s,
            loo_abs_log_error: (loo_pred.step_time_s / want).ln().abs(),
            loo_basis: loo.basis,
            solved_gemm_efficiency: solved,
            layout: pred.layout,
            mfu: pred.mfu,
            source: p.run.source.clone(),
        });
    }
    Ok((fit, checks))
}

/// The embedded fit, computed once.
pub fn embedded_fit() -> Result<&'static (StepFit, Vec<StepCheck>), ModelError> {
    static FIT: std::sync::OnceLock<Result<(StepFit, Vec<StepCheck>), String>> =
        std::sync::OnceLock::new();
    FIT.get_or_init(|| fit_steps(Catalog::embedded()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ModelError::InvalidInput(e.clone()))
}

/// Median of `xs` (NaN-free).
pub fn median(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks() -> &'static [StepCheck] {
        &embedded_fit().unwrap().1
    }

    fn rows(prefix: &str) -> Vec<&'static StepCheck> {
        checks()
            .iter()
            .filter(|c| c.id.starts_with(prefix))
            .collect()
    }

    #[test]
    fn korthikanti_table_5_within_10_percent_each_and_3_percent_mean() {
        let table5: Vec<_> = rows("korthikanti-")
            .into_iter()
            .filter(|c| !c.id.ends_with("dp8"))
            .collect();
        assert_eq!(table5.len(), 8);
        for c in &table5 {
            assert!(c.error.abs() <= 0.10, "{}: {:+.1}%", c.id, c.error * 100.0);
        }
        let mean = table5.iter().map(|c| c.error.abs()).sum::<f64>() / 8.0;
        assert!(mean <= 0.03, "mean |error| {:.2}%", mean * 100.0);
    }

    #[test]
    fn narayanan_table_1_within_10_percent() {
        let t1 = rows("narayanan-");
        assert_eq!(t1.len(), 10);
        for c in t1 {
            assert!(c.error.abs() <= 0.10, "{}: {:+.1}%", c.id, c.error * 100.0);
        }
    }

    #[test]
    fn llama3_and_palm_within_15_percent() {
        for id in ["llama3-405b-8k", "llama3-405b-16k", "palm-540b"] {
            let c = checks().iter().find(|c| c.id == id).unwrap();
            assert!(c.error.abs() <= 0.15, "{id}: {:+.1}%", c.error * 100.0);
        }
    }

    #[test]
    fn leave_one_out_median_within_a_factor_of_1_25() {
        let mut e: Vec<f64> = checks().iter().map(|c| c.loo_abs_log_error).collect();
        let med = median(&mut e).unwrap();
        assert!(med <= 1.25f64.ln(), "median |ln err| {med}");
    }

    #[test]
    fn a_wrong_published_time_shows_up_as_an_error() {
        // The fit absorbs a uniform bias but not one row's: doubling one Korthikanti
        // time moves that row's leave-one-out error to about ln 2.
        let cat = Catalog::embedded();
        let run = published::embedded()
            .iter()
            .find(|r| r.id == "korthikanti-175b-selective")
            .unwrap();
        let p = prepare(cat, run).unwrap();
        let (fit, _) = embedded_fit().unwrap();
        let eta = fit
            .without(&run.id)
            .choose(&p.hw.class, Some(&run.era))
            .unwrap();
        let pred = p.best(eta.gemm_efficiency).unwrap().step_time_s;
        let want = 2.0 * run.published_step_s(&p.cfg).unwrap();
        assert!((pred / want).ln().abs() > 0.5);
    }
}
