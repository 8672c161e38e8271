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

use crate::catalog::{Catalog, Hardware, Run};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::flops::Phase;
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
    /// Whether the figure is a whole run's wall-clock duration (a seed run) rather
    /// than one step.
    pub whole_run: bool,
    /// Published seconds: one step (computed from the published figure), or the run.
    pub published_s: f64,
    /// Predicted with the full fit.
    pub predicted_s: f64,
    /// `predicted / published − 1`.
    pub error: f64,
    /// Predicted from a fit without this run.
    pub loo_predicted_s: f64,
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

/// Era of the runs in `runs.toml` (the seeds: TensorFlow on TPU v2/v3 and P100).
pub const SEED_ERA: &str = "tensorflow-2017-19";

/// A run made ready for the step model: one phase of one step for a step run; the
/// whole schedule for a seed run (whose published figure is its wall-clock duration).
struct Prepared<'a> {
    id: String,
    era: String,
    date: String,
    source: String,
    devices: u64,
    cfg: ModelConfig,
    hw: &'a Hardware,
    sys: System,
    phases: Vec<Phase>,
    constraints: Constraints,
    /// Published seconds (one step, or the whole run).
    want: f64,
    whole_run: bool,
}

impl Prepared<'_> {
    fn model<'b>(
        &'b self,
        shape: &'b ShapeModel,
        rates: &'b RateSource,
        seq: u64,
    ) -> StepModel<'b> {
        StepModel::new(&self.cfg, &self.sys, rates, shape, efficiency(), seq)
    }

    /// Best plan of each phase at efficiency `eta`.
    fn best(&self, eta: f64) -> Result<Vec<Prediction>, ModelError> {
        let shape = shape_model(&self.sys, eta);
        let rates = RateSource::Shape(shape.clone());
        self.phases
            .iter()
            .map(|ph| {
                let m = self.model(&shape, &rates, ph.seq);
                let batch = Batch {
                    global_batch: ph.batch,
                    seq: ph.seq,
                };
                let r = search(&m, self.devices, batch, &self.constraints, 1)?;
                r.plans.into_iter().next().ok_or_else(|| {
                    ModelError::InvalidInput(format!(
                        "published run `{}`: no layout fits ({})",
                        self.id,
                        r.rejected
                            .iter()
                            .map(|x| format!("{} x {}: {}", x.count, x.reason, x.example))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))
                })
            })
            .collect()
    }

    /// Predicted seconds of the best plans at `eta`.
    fn seconds(&self, plans: &[Prediction]) -> f64 {
        self.phases
            .iter()
            .zip(plans)
            .map(|(ph, p)| ph.steps as f64 * p.step_time_s)
            .sum()
    }

    /// Seconds of fixed layouts at efficiency `eta`.
    fn seconds_of(&self, layouts: &[Layout], eta: f64) -> f64 {
        let shape = shape_model(&self.sys, eta);
        let rates = RateSource::Shape(shape.clone());
        self.phases
            .iter()
            .zip(layouts)
            .map(|(ph, l)| {
                let m = self.model(&shape, &rates, ph.seq);
                let layer = m.layer_cost(l, ph.seq);
                let batch = Batch {
                    global_batch: ph.batch,
                    seq: ph.seq,
                };
                ph.steps as f64 * m.predict_with(l, batch, &layer).step_time_s
            })
            .sum()
    }

    /// The efficiency at which the best layouts' time equals the published one.
    fn solve(&self) -> Result<f64, ModelError> {
        let layouts: Vec<Layout> = self.best(START)?.iter().map(|p| p.layout).collect();
        let (mut lo, mut hi) = (0.01f64, 1.0f64);
        for _ in 0..32 {
            let mid = (lo * hi).sqrt();
            if self.seconds_of(&layouts, mid) > self.want {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok((lo * hi).sqrt())
    }
}

fn prepare_step<'a>(cat: &'a Catalog, run: &StepRun) -> Result<Prepared<'a>, ModelError> {
    let cfg = run.config(cat)?;
    let hw = cat.hardware(&run.hardware)?;
    let sys = System::from_hardware(hw, None)?;
    let seq = run.seq(&cfg);
    Ok(Prepared {
        id: run.id.clone(),
        era: run.era.clone(),
        date: run.date.clone(),
        source: run.source.clone(),
        devices: run.devices,
        constraints: run.layout.constraints()?,
        want: run.published_step_s(&cfg)?,
        phases: vec![Phase {
            steps: 1,
            batch: run.batch,
            seq,
        }],
        cfg,
        hw,
        sys,
        whole_run: false,
    })
}

/// A seed run of `runs.toml` with a published duration and schedule, on hardware the
/// step model can describe; `None` otherwise (it stays a cost reproduction only).
fn prepare_seed<'a>(cat: &'a Catalog, run: &Run) -> Result<Option<Prepared<'a>>, ModelError> {
    let (Some(hours), true) = (run.hours, run.tokens_known) else {
        return Ok(None);
    };
    let hw = cat.hardware(&run.hardware)?;
    if hw.links.is_empty() || hw.memory_bw_gbs.is_none() {
        return Ok(None);
    }
    let chips = hw.chips(run.count, run.unit);
    if chips.fract() != 0.0 {
        return Ok(None);
    }
    let sys = System::from_hardware(hw, Some(&run.dtype))?;
    Ok(Some(Prepared {
        id: run.id.clone(),
        era: SEED_ERA.into(),
        date: run.date.clone(),
        source: run.source.clone(),
        devices: chips as u64,
        cfg: cat.model(&run.model)?.config(),
        hw,
        sys,
        phases: cat.run_schedule(run)?,
        constraints: Constraints::default(),
        want: hours * 3600.0,
        whole_run: true,
    }))
}

fn prepare_all(cat: &Catalog) -> Result<Vec<Prepared<'_>>, ModelError> {
    let mut prepared = published::embedded()
        .iter()
        .map(|r| prepare_step(cat, r))
        .collect::<Result<Vec<_>, _>>()?;
    for r in &cat.runs {
        if let Some(p) = prepare_seed(cat, r)? {
            prepared.push(p);
        }
    }
    Ok(prepared)
}

fn solve_all<'a, 'b: 'a>(
    prepared: impl IntoIterator<Item = &'a Prepared<'b>>,
) -> Result<StepFit, ModelError> {
    let mut points = vec![];
    for p in prepared {
        points.push(Point {
            id: p.id.clone(),
            class: p.hw.class.clone(),
            era: p.era.clone(),
            date: p.date.clone(),
            eta: p.solve()?,
        });
    }
    Ok(StepFit::from_points(points))
}

/// The fitted parameters only (what an estimate needs), from every embedded
/// published run.
pub fn fit_parameters(cat: &Catalog) -> Result<StepFit, ModelError> {
    solve_all(&prepare_all(cat)?)
}

/// The parameters a prediction on hardware of `class` can use: fitted only on the
/// runs of that class, or on every run when the class has none. For that class
/// [`StepFit::choose`] gives what it gives on the whole fit (it reads only the class's
/// runs, else all), at a fraction of the cost: an estimate solves only the runs it
/// rests on.
pub fn fit_parameters_for(cat: &Catalog, class: &str) -> Result<StepFit, ModelError> {
    let prepared = prepare_all(cat)?;
    if prepared.iter().any(|p| p.hw.class == class) {
        solve_all(prepared.iter().filter(|p| p.hw.class == class))
    } else {
        solve_all(&prepared)
    }
}

/// [`fit_parameters_for`] on the embedded catalog, computed once per class and
/// process.
pub fn embedded_parameters_for(class: &str) -> Result<&'static StepFit, ModelError> {
    type Fits = std::sync::Mutex<Vec<(String, &'static StepFit)>>;
    static FITS: std::sync::OnceLock<Fits> = std::sync::OnceLock::new();
    let fits = FITS.get_or_init(Fits::default);
    if let Some(f) = fits
        .lock()
        .ok()
        .and_then(|v| v.iter().find(|(c, _)| c == class).map(|(_, f)| *f))
    {
        return Ok(f);
    }
    let fit: &'static StepFit =
        Box::leak(Box::new(fit_parameters_for(Catalog::embedded(), class)?));
    if let Ok(mut v) = fits.lock() {
        v.push((class.to_string(), fit));
    }
    Ok(fit)
}

/// The embedded parameters, computed once per process.
pub fn embedded_parameters() -> Result<&'static StepFit, ModelError> {
    static FIT: std::sync::OnceLock<Result<StepFit, String>> = std::sync::OnceLock::new();
    FIT.get_or_init(|| fit_parameters(Catalog::embedded()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ModelError::InvalidInput(e.clone()))
}

/// Fit the step model on every embedded published run (the step runs of
/// `steps.toml` and the seed runs of `runs.toml` with a duration) and check each one,
/// in full and by leave-one-out.
pub fn fit_steps(cat: &Catalog) -> Result<(StepFit, Vec<StepCheck>), ModelError> {
    let prepared = prepare_all(cat)?;
    let fit = solve_all(&prepared)?;
    let mut checks = vec![];
    for p in &prepared {
        let full = fit.choose(&p.hw.class, Some(&p.era))?;
        let pred = p.best(full.gemm_efficiency)?;
        let loo = fit.without(&p.id).choose(&p.hw.class, Some(&p.era))?;
        let loo_s = p.seconds(&p.best(loo.gemm_efficiency)?);
        let predicted = p.seconds(&pred);
        let solved = fit
            .points
            .iter()
            .find(|x| x.id == p.id)
            .map_or(f64::NAN, |x| x.eta);
        let main = pred
            .iter()
            .zip(&p.phases)
            .max_by(|a, b| a.1.tokens().total_cmp(&b.1.tokens()))
            .map(|x| x.0.clone())
            .ok_or_else(|| ModelError::InvalidInput(format!("run `{}` has no phase", p.id)))?;
        checks.push(StepCheck {
            id: p.id.clone(),
            hardware: p.hw.name.clone(),
            class: p.hw.class.clone(),
            era: p.era.clone(),
            devices: p.devices,
            whole_run: p.whole_run,
            published_s: p.want,
            predicted_s: predicted,
            error: predicted / p.want - 1.0,
            loo_predicted_s: loo_s,
            loo_abs_log_error: (loo_s / p.want).ln().abs(),
            loo_basis: loo.basis,
            solved_gemm_efficiency: solved,
            layout: main.layout,
            mfu: main.mfu,
            source: p.source.clone(),
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
    fn leave_one_out_worst_within_a_factor_of_2() {
        let worst = checks()
            .iter()
            .max_by(|a, b| a.loo_abs_log_error.total_cmp(&b.loo_abs_log_error))
            .unwrap();
        assert!(
            worst.loo_abs_log_error <= 2f64.ln(),
            "worst |ln err| {} ({})",
            worst.loo_abs_log_error,
            worst.id
        );
    }

    #[test]
    fn a_class_fit_chooses_what_the_whole_fit_chooses() {
        let cat = Catalog::embedded();
        let whole = embedded_parameters().unwrap();
        for class in ["gpu-2020", "gpu-2022", "tpu-2018", "gpu-2024"] {
            let own = fit_parameters_for(cat, class).unwrap();
            assert_eq!(
                own.choose(class, None).unwrap(),
                whole.choose(class, None).unwrap(),
                "{class}"
            );
        }
        // A class with runs solves only those.
        let h100 = fit_parameters_for(cat, "gpu-2022").unwrap();
        assert!(h100.points.iter().all(|p| p.class == "gpu-2022"));
        assert!(h100.points.len() < whole.points.len());
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
        let p = prepare_step(cat, run).unwrap();
        let (fit, _) = embedded_fit().unwrap();
        let eta = fit
            .without(&run.id)
            .choose(&p.hw.class, Some(&run.era))
            .unwrap();
        let pred = p.seconds(&p.best(eta.gemm_efficiency).unwrap());
        let want = 2.0 * p.want;
        assert!((pred / want).ln().abs() > 0.5);
    }
}
