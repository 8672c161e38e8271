//! Calibration against published runs.
//!
//! For every published run: the implied MFU, `train FLOPs / (chips × peak × seconds)`;
//! the published cost reproduced from the source's own arithmetic (chips × hours ×
//! catalog price). Then the fit of `MFU = kernel efficiency × system efficiency`: each
//! run gives a system efficiency, implied MFU / the hardware's kernel efficiency, and a
//! hardware class gets the geometric mean of its runs (mid) and their min–max (band).
//! A class with a single run keeps its value and borrows the pooled relative spread; a
//! class with none uses the pooled fit. Leave-one-out: each fitted run's device-hours are
//! predicted from a fit without it and compared with the published ones.

use serde::Serialize;

use crate::catalog::{Catalog, CostRange, Hardware, PriceBasis, Run};
use crate::cost::{estimate, Assumptions, Band, MfuSource, Plan, SystemEfficiency, Workload};
use crate::error::ModelError;
use crate::fit;
use crate::flops::{self, check_fraction, FlopOptions};
use crate::forecast;
use crate::search::Constraints;
use crate::stats;

/// One run's system efficiency, the unit of the fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitPoint {
    /// Run id.
    pub run: String,
    /// Hardware class.
    pub class: String,
    /// Implied MFU / kernel efficiency.
    pub system_efficiency: f64,
}

/// The fitted system efficiencies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit {
    /// The points it rests on.
    pub points: Vec<FitPoint>,
}

fn geomean(xs: &[f64]) -> f64 {
    (xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp()
}

fn spread(xs: &[f64]) -> Band {
    let mid = geomean(xs);
    let low = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let high = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Band { mid, low, high }
}

impl Fit {
    /// Fit from the catalog's published runs.
    pub fn from_catalog(cat: &Catalog) -> Result<Fit, ModelError> {
        let mut points = vec![];
        for run in &cat.runs {
            if let Some(p) = run_point(cat, run)? {
                points.push(p);
            }
        }
        Ok(Fit { points })
    }

    /// The same fit without one run (leave-one-out).
    pub fn without(&self, run: &str) -> Fit {
        Fit {
            points: self
                .points
                .iter()
                .filter(|p| p.run != run)
                .cloned()
                .collect(),
        }
    }

    /// System efficiency for a hardware class (see the module docs for the fallbacks).
    pub fn system_efficiency(&self, class: &str) -> Result<SystemEfficiency, ModelError> {
        if self.points.is_empty() {
            return Err(ModelError::InvalidInput(
                "no published run with a known duration and schedule to calibrate from: pass --mfu"
                    .into(),
            ));
        }
        let all: Vec<f64> = self.points.iter().map(|p| p.system_efficiency).collect();
        let pooled = spread(&all);
        let own: Vec<&FitPoint> = self.points.iter().filter(|p| p.class == class).collect();
        let ids = |ps: &[&FitPoint]| ps.iter().map(|p| p.run.clone()).collect::<Vec<_>>();
        Ok(match own.len() {
            0 => SystemEfficiency {
                class: class.to_string(),
                band: pooled,
                runs: ids(&self.points.iter().collect::<Vec<_>>()),
                pooled: true,
            },
            1 => {
                let v = own[0].system_efficiency;
                SystemEfficiency {
                    class: class.to_string(),
                    band: Band {
                        mid: v,
                        low: v * (pooled.low / pooled.mid).min(1.0),
                        high: v * (pooled.high / pooled.mid).max(1.0),
                    },
                    runs: ids(&own),
                    pooled: false,
                }
            }
            _ => {
                let xs: Vec<f64> = own.iter().map(|p| p.system_efficiency).collect();
                SystemEfficiency {
                    class: class.to_string(),
                    band: spread(&xs),
                    runs: ids(&own),
                    pooled: false,
                }
            }
        })
    }

    /// MFU source for catalog hardware: its reference kernel efficiency × the fit.
    pub fn calibrated_mfu(&self, hw: &Hardware) -> Result<MfuSource, ModelError> {
        Ok(MfuSource::Calibrated {
            kernel_efficiency: hw.kernel_efficiency_value(),
            system: self.system_efficiency(&hw.class)?,
        })
    }

    /// MFU source from a *measured* kernel efficiency (e.g. `flopcal profile` on this
    /// machine) × the system efficiency fitted for `hw`'s class.
    pub fn measured_mfu(
        &self,
        hw: &Hardware,
        kernel_efficiency: f64,
    ) -> Result<MfuSource, ModelError> {
        check_fraction("measured kernel efficiency", kernel_efficiency)?;
        Ok(MfuSource::Measured {
            kernel_efficiency,
            system: self.system_efficiency(&hw.class)?,
        })
    }
}

/// Training FLOPs of a run, when its schedule is known.
fn run_flops(cat: &Catalog, run: &Run) -> Result<Option<f64>, ModelError> {
    if !run.tokens_known {
        return Ok(None);
    }
    let model = cat.model(&run.model)?;
    let phases = cat.run_schedule(run)?;
    Ok(Some(
        flops::train_flops(&model.config(), &phases, &FlopOptions::default())?.train_flops,
    ))
}

fn implied_mfu(cat: &Catalog, run: &Run) -> Result<Option<(f64, f64)>, ModelError> {
    let hw = cat.hardware(&run.hardware)?;
    let (Some(hours), Some(f)) = (run.hours, run_flops(cat, run)?) else {
        return Ok(None);
    };
    let chips = hw.chips(run.count, run.unit);
    let peak = hw.peak_flops(Some(&run.dtype))?;
    Ok(Some((f / (chips * peak * hours * 3600.0), f)))
}

fn run_point(cat: &Catalog, run: &Run) -> Result<Option<FitPoint>, ModelError> {
    let hw = cat.hardware(&run.hardware)?;
    Ok(implied_mfu(cat, run)?.map(|(mfu, _)| FitPoint {
        run: run.id.clone(),
        class: hw.class.clone(),
        system_efficiency: mfu / hw.kernel_efficiency_value(),
    }))
}

/// Calibration result for one published run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunCalibration {
    /// Run id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Hardware.
    pub hardware: String,
    /// Hardware class.
    pub class: String,
    /// As published: count and unit.
    pub published_count: f64,
    /// Unit of `published_count`.
    pub published_unit: String,
    /// Chips under flopcal's reading.
    pub chips: f64,
    /// Wall-clock hours (if published).
    pub hours: Option<f64>,
    /// The hours the published cost priced, where its source used another duration.
    pub published_cost_hours: Option<f64>,
    /// Tokens (if the schedule is known).
    pub tokens: Option<f64>,
    /// Training FLOPs (if the schedule is known).
    pub train_flops: Option<f64>,
    /// Published cost (on `price_basis`).
    pub published_cost_usd: Option<f64>,
    /// Cost reproduced from chips × hours × catalog price on `price_basis`.
    pub reproduced_cost_usd: Option<f64>,
    /// `on-demand` or `preemptible`.
    pub price_basis: String,
    /// Published preemptible cost.
    pub published_cost_preemptible_usd: Option<f64>,
    /// Reproduced preemptible cost.
    pub reproduced_cost_preemptible_usd: Option<f64>,
    /// Published cost per hour.
    pub published_cost_per_hour_usd: Option<f64>,
    /// Reproduced cost per hour.
    pub reproduced_cost_per_hour_usd: Option<f64>,
    /// Second reading (unit).
    pub alt_unit: Option<String>,
    /// Published cost under the second reading.
    pub alt_published_cost_usd: Option<f64>,
    /// Reproduced cost under the second reading.
    pub alt_reproduced_cost_usd: Option<f64>,
    /// Published lower bound of the cost.
    pub published_cost_min_usd: Option<f64>,
    /// Cost predicted by the full fit (for runs without a published duration).
    pub predicted_cost_usd: Option<f64>,
    /// Low end of the predicted cost (highest calibrated MFU).
    pub predicted_cost_low_usd: Option<f64>,
    /// High end of the predicted cost (lowest calibrated MFU).
    pub predicted_cost_high_usd: Option<f64>,
    /// Whether every published cost is reproduced (to the dollar, or within the
    /// published tolerance; a lower bound must be exceeded by the prediction).
    pub cost_reproduced: bool,
    /// Implied MFU.
    pub implied_mfu: Option<f64>,
    /// Hardware kernel efficiency (catalog).
    pub kernel_efficiency: f64,
    /// Implied MFU / kernel efficiency.
    pub implied_system_efficiency: Option<f64>,
    /// Whether the run is in the fit.
    pub used_in_fit: bool,
    /// Published chip-hours (chips × hours).
    pub published_device_hours: Option<f64>,
    /// MFU predicted from the other runs.
    pub loo_predicted_mfu: Option<f64>,
    /// Chip-hours predicted from the other runs.
    pub loo_predicted_device_hours: Option<f64>,
    /// Predicted / published chip-hours.
    pub loo_ratio: Option<f64>,
    /// `|ln(loo_ratio)|`.
    pub loo_abs_log_error: Option<f64>,
    /// What the prediction rested on.
    pub loo_basis: Option<String>,
    /// Source of the figures.
    pub source: String,
    /// Interpretation flopcal used.
    pub interpretation: String,
}

/// Summary of the leave-one-out check and of the cost reproductions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationSummary {
    /// Runs in the fit.
    pub runs_fitted: usize,
    /// Median `|ln(predicted / published)|` over the fitted runs.
    pub median_abs_log_error: Option<f64>,
    /// Worst `|ln(predicted / published)|`.
    pub worst_abs_log_error: Option<f64>,
    /// The run with the worst error.
    pub worst_run: Option<String>,
    /// `exp(median_abs_log_error)`: the typical factor off.
    pub median_factor: Option<f64>,
    /// Whether every published cost was reproduced.
    pub all_costs_reproduced: bool,
    /// Fitted system efficiency per class.
    pub classes: Vec<SystemEfficiency>,
}

/// The one set of assumptions every AI21 range is estimated under: AI21 state BERT's
/// data (Wikipedia + Books) and quote Google's list prices, but not hardware, schedule
/// or efficiency. flopcal reads every size the same way: BERT's schedule (1M steps ×
/// 256 sequences, 90% at 128 tokens, 10% at 512; Devlin et al. 2018), Cloud TPU v3 at
/// its on-demand list price, 16 devices (64 chips, BERT-large's count), the step model
/// at the best layout with the GEMM efficiency fitted for the hardware's class, and
/// the central estimate. Fully loaded = AI21's 2 configurations × 10 runs.
pub const AI21_ASSUMPTION: &str = "BERT schedule (1M steps x 256, 90% at seq 128, 10% at 512), Cloud TPU v3 list price, 64 chips, step model at the best layout, central estimate; fully loaded = 2 configurations x 10 runs";
const AI21_HARDWARE: &str = "tpu-v3";
const AI21_CHIPS: u64 = 64;
const AI21_SCHEDULE_OF: &str = "bert-large";

/// A published cost range (AI21) against flopcal's estimate under [`AI21_ASSUMPTION`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeCheck {
    /// Range id.
    pub id: String,
    /// Model used.
    pub model: String,
    /// Hardware used.
    pub hardware: String,
    /// Which end of flopcal's band is compared: always `mid` (kept for the JSON
    /// interface; the per-row choice is gone).
    pub band_end: String,
    /// flopcal's reading, in words: the same for every row.
    pub assumption: String,
    /// Published single-run cost.
    pub published_single_run_usd: f64,
    /// flopcal's single-run cost (central).
    pub estimated_single_run_usd: f64,
    /// Estimated / published.
    pub single_run_ratio: f64,
    /// Published fully-loaded cost.
    pub published_fully_loaded_usd: f64,
    /// flopcal's fully-loaded cost (central).
    pub estimated_fully_loaded_usd: f64,
    /// Estimated / published.
    pub fully_loaded_ratio: f64,
    /// flopcal's single-run band, low end.
    pub estimated_single_run_low_usd: f64,
    /// flopcal's single-run band, high end.
    pub estimated_single_run_high_usd: f64,
    /// Whether the model is constructed (no one published it), as the 1.5B is.
    pub constructed: bool,
}

/// Estimate one published range under [`AI21_ASSUMPTION`] (the row's own hardware,
/// schedule and band-end fields are not used).
pub fn check_range(cat: &Catalog, g: &CostRange) -> Result<RangeCheck, ModelError> {
    let m = cat.model(&g.model)?;
    let hw = cat.hardware(AI21_HARDWARE)?;
    let phases = cat.model(AI21_SCHEDULE_OF)?.training.clone();
    let cfg = m.config();
    let step_fit = fit::embedded_parameters()?;
    let req = forecast::ForecastRequest {
        cfg: &cfg,
        phases: &phases,
        hw,
        dtype: None,
        devices: AI21_CHIPS,
        constraints: Constraints::default(),
        rates: None,
        keep: 1,
        gemm_efficiency: None,
        network: None,
        framework: None,
        production_layout: true,
    };
    let f = forecast::forecast(&req, step_fit)?;
    let band = f.efficiency.band;
    let plan = Plan {
        label: m.name.clone(),
        workload: Workload::Config {
            config: cfg.clone(),
            family: m.family,
            phases: phases.clone(),
            options: FlopOptions::default(),
        },
    };
    let chips = AI21_CHIPS as f64;
    let peak = hw.peak_flops(None)?;
    let flops = plan
        .flops()?
        .map(|r| r.train_flops)
        .ok_or_else(|| ModelError::InvalidInput("no FLOPs".into()))?;
    let mfu_of = |secs: f64| (flops / (chips * peak * secs)).min(1.0);
    let mut a = Assumptions::new(
        chips,
        MfuSource::Modelled {
            mfu: mfu_of(f.step_seconds),
            mfu_low: mfu_of(f.step_seconds * band.high),
            mfu_high: mfu_of(f.step_seconds * band.low),
            basis: f.efficiency.basis.clone(),
        },
    );
    a.configs = g.configs;
    a.runs = g.runs;
    let e = estimate(&plan, hw, &a)?;
    let missing =
        || ModelError::InvalidInput(format!("hardware `{}` has no on-demand price", hw.name));
    let single = e.cost_usd.ok_or_else(missing)?;
    let fully = e.fully_loaded_cost_usd.ok_or_else(missing)?;
    Ok(RangeCheck {
        id: g.id.clone(),
        model: m.name.clone(),
        hardware: hw.name.clone(),
        band_end: "mid".into(),
        assumption: AI21_ASSUMPTION.into(),
        published_single_run_usd: g.single_run_usd,
        estimated_single_run_usd: single,
        single_run_ratio: single / g.single_run_usd,
        published_fully_loaded_usd: g.fully_loaded_usd,
        estimated_fully_loaded_usd: fully,
        fully_loaded_ratio: fully / g.fully_loaded_usd,
        estimated_single_run_low_usd: e.cost_usd_low.ok_or_else(missing)?,
        estimated_single_run_high_usd: e.cost_usd_high.ok_or_else(missing)?,
        constructed: m.source.to_ascii_lowercase().contains("constructed"),
    })
}

/// One source's rows predicted with the whole source left out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceCheck {
    /// The source (one paper's table, or one vendor release on one system).
    pub group: String,
    /// Its software stack.
    pub framework: String,
    /// Its hardware.
    pub hardware: String,
    /// Rows.
    pub runs: usize,
    /// Median left-out `|ln(predicted / published)|`.
    pub median_abs_log_error: f64,
    /// Worst.
    pub worst_abs_log_error: f64,
    /// Median signed left-out `ln(predicted / published)`.
    pub median_log_error: f64,
    /// Rows inside their band.
    pub in_band: usize,
}

/// The step model's calibration: its parameters and every published run checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepCalibration {
    /// One factor on GEMM rates per (software stack, hardware class), pooled, with the
    /// sources it rests on.
    pub parameters: Vec<fit::StackParameter>,
    /// Each stack's pooled value across classes.
    pub stacks: Vec<(String, f64)>,
    /// The population value.
    pub population: f64,
    /// Prior weight of the pooling, in sources.
    pub pooling: f64,
    /// Best-layout step over the stated layout's, over the production sources that
    /// state one ([`fit::StepFit::layout_gap`]): applied where no layout dimension is
    /// given.
    pub layout_gap: f64,
    /// Sources behind [`StepCalibration::layout_gap`].
    pub layout_gap_sources: usize,
    /// Rows that state a layout, predicted left out as `estimate` does given neither
    /// their layout nor their framework ([`fit::StepCheck::loo_free_predicted_s`]).
    pub free_layout_runs: usize,
    /// Their median `|ln(predicted / published)|`.
    pub free_layout_median_abs_log_error: Option<f64>,
    /// Their median `ln(predicted / published)` (negative: predicted too fast).
    pub free_layout_median_log_error: Option<f64>,
    /// The same two medians over the production runs among them.
    pub free_layout_production: (Option<f64>, Option<f64>),
    /// And over the benchmark tables' rows.
    pub free_layout_benchmark: (Option<f64>, Option<f64>),
    /// Production rows inside their no-layout band (built without their source), of
    /// those with one: the band's coverage where it applies.
    pub free_layout_production_in_band: (usize, usize),
    /// Every run with a published step time or duration.
    pub runs: Vec<fit::StepCheck>,
    /// Per source, left out whole.
    pub sources: Vec<SourceCheck>,
    /// Runs checked.
    pub runs_checked: usize,
    /// Median leave-one-source-out `|ln(predicted / published)|` (the headline).
    pub median_abs_log_error: Option<f64>,
    /// Worst.
    pub worst_abs_log_error: Option<f64>,
    /// The run with the worst.
    pub worst_run: Option<String>,
    /// Median in-sample `|ln(predicted / published)|` (the full fit; labelled as such).
    pub in_sample_median_abs_log_error: Option<f64>,
    /// Level of the bands.
    pub band_level: f64,
    /// Left-out rows inside their own band (built without their source).
    pub band_coverage: f64,
    /// Hardware classes left out whole, one at a time
    /// ([`fit::StepCheck::class_out_predicted_s`]).
    pub class_out_classes: usize,
    /// Median `|ln(predicted / published)|` of every row predicted without its class.
    pub class_out_median_abs_log_error: Option<f64>,
    /// Rows inside their band so predicted (widened as for an unseen class).
    pub class_out_in_band: usize,
    /// Per device family, what not knowing the hardware class adds to the error (a
    /// standard deviation in `ln`): how much a band on a class no published run is on
    /// is widened, in quadrature.
    pub class_spread: Vec<(String, f64)>,
    /// Goodput applied to whole-run durations.
    pub goodput: f64,
    /// Published rows of NVIDIA's tables not used, by reason, with a count.
    pub excluded: Vec<(String, usize)>,
    /// Link efficiency used (a stated constant).
    pub link_efficiency: f64,
    /// HBM efficiency used (a stated constant).
    pub hbm_efficiency: f64,
}

/// The step model's calibration from the embedded fit.
pub fn step_calibration() -> Result<StepCalibration, ModelError> {
    step_calibration_with(Catalog::embedded(), &[])
}

/// [`step_calibration`] with a team's own runs (`--own-runs`) beside the published ones
/// (fitted afresh; without them, the embedded fit computed once per process).
pub fn step_calibration_with(
    cat: &Catalog,
    yours: &[crate::published::StepRun],
) -> Result<StepCalibration, ModelError> {
    let owned;
    let (f, checks) = if yours.is_empty() {
        let e = fit::embedded_fit()?;
        (&e.0, &e.1)
    } else {
        owned = fit::fit_steps_with(cat, yours)?;
        (&owned.0, &owned.1)
    };
    let mut errs: Vec<f64> = checks.iter().map(|c| c.loo_abs_log_error).collect();
    let mut ins: Vec<f64> = checks.iter().map(|c| (1.0 + c.error).ln().abs()).collect();
    let worst = checks
        .iter()
        .max_by(|a, b| a.loo_abs_log_error.total_cmp(&b.loo_abs_log_error));
    let mut sources: Vec<SourceCheck> = vec![];
    for g in f.groups() {
        let rows: Vec<&fit::StepCheck> = checks.iter().filter(|c| c.group == g).collect();
        let Some(first) = rows.first() else { continue };
        let mut abs: Vec<f64> = rows.iter().map(|c| c.loo_abs_log_error).collect();
        let mut signed: Vec<f64> = rows
            .iter()
            .map(|c| (c.loo_predicted_s / c.published_s).ln())
            .collect();
        sources.push(SourceCheck {
            framework: first.framework.clone(),
            hardware: first.hardware.clone(),
            runs: rows.len(),
            median_abs_log_error: stats::median(&mut abs).unwrap_or(f64::NAN),
            worst_abs_log_error: abs.iter().copied().fold(0.0, f64::max),
            median_log_error: stats::median(&mut signed).unwrap_or(f64::NAN),
            in_band: rows.iter().filter(|c| c.in_band).count(),
            group: g,
        });
    }
    let free: Vec<(bool, f64)> = checks
        .iter()
        .filter_map(|c| {
            c.loo_free_predicted_s
                .map(|s| (c.production, (s / c.published_s).ln()))
        })
        .collect();
    // (median |ln err|, median ln err) of the rows of one kind (`None`: every row).
    let medians = |production: Option<bool>| {
        let mut xs: Vec<f64> = free
            .iter()
            .filter(|r| production.is_none_or(|p| r.0 == p))
            .map(|r| r.1)
            .collect();
        let mut abs: Vec<f64> = xs.iter().map(|x| x.abs()).collect();
        (stats::median(&mut abs), stats::median(&mut xs))
    };
    let (free_abs, free_signed) = medians(None);
    let mut class_out: Vec<f64> = checks
        .iter()
        .map(|c| (c.class_out_predicted_s / c.published_s).ln().abs())
        .collect();
    let mut classes: Vec<&str> = checks.iter().map(|c| c.class.as_str()).collect();
    classes.sort_unstable();
    classes.dedup();
    Ok(StepCalibration {
        parameters: f.parameters.clone(),
        stacks: f.stacks.clone(),
        population: f.population,
        pooling: f.pooling,
        layout_gap: f.layout_gap,
        layout_gap_sources: f.layout_gap_sources,
        free_layout_runs: free.len(),
        free_layout_median_abs_log_error: free_abs,
        free_layout_median_log_error: free_signed,
        free_layout_production: medians(Some(true)),
        free_layout_benchmark: medians(Some(false)),
        free_layout_production_in_band: (
            checks
                .iter()
                .filter(|c| c.loo_free_in_band == Some(true))
                .count(),
            checks
                .iter()
                .filter(|c| c.loo_free_in_band.is_some())
                .count(),
        ),
        runs: checks.clone(),
        sources,
        runs_checked: checks.len(),
        median_abs_log_error: stats::median(&mut errs),
        worst_abs_log_error: worst.map(|w| w.loo_abs_log_error),
        worst_run: worst.map(|w| w.id.clone()),
        in_sample_median_abs_log_error: stats::median(&mut ins),
        band_level: fit::BAND_LEVEL,
        band_coverage: checks.iter().filter(|c| c.in_band).count() as f64
            / checks.len().max(1) as f64,
        class_out_classes: classes.len(),
        class_out_median_abs_log_error: stats::median(&mut class_out),
        class_out_in_band: checks.iter().filter(|c| c.class_out_in_band).count(),
        class_spread: {
            let mut fams: Vec<&str> = f
                .parameters
                .iter()
                .map(|p| crate::stack::family(&p.class))
                .collect();
            fams.sort_unstable();
            fams.dedup();
            fams.into_iter()
                .map(|fam| (fam.to_string(), f.family_class_spread(fam)))
                .collect()
        },
        goodput: fit::GOODPUT,
        excluded: {
            let mut by: Vec<(String, usize)> = vec![];
            let reasons = crate::nvidia::excluded()
                .iter()
                .map(|(_, why)| why.to_string())
                .chain(f.dropped.iter().map(|_| {
                    "no layout of the step model runs it as published (memory or divisibility)"
                        .to_string()
                }));
            for why in reasons {
                match by.iter_mut().find(|b| b.0 == why) {
                    Some(b) => b.1 += 1,
                    None => by.push((why, 1)),
                }
            }
            by
        },
        link_efficiency: fit::LINK_EFFICIENCY,
        hbm_efficiency: fit::HBM_EFFICIENCY,
    })
}

/// Everything `flopcal calibrate` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// One row per published run.
    pub runs: Vec<RunCalibration>,
    /// Published cost ranges (AI21) against flopcal's estimates.
    pub ranges: Vec<RangeCheck>,
    /// Summary.
    pub summary: CalibrationSummary,
    /// The fit, for estimates.
    pub fit: Fit,
    /// The step model's calibration (the one estimates use).
    pub step: StepCalibration,
}

fn matches(published: Option<f64>, reproduced: Option<f64>, tol: Option<f64>) -> bool {
    match (published, reproduced) {
        (Some(p), Some(r)) => match tol {
            Some(t) => ((r - p) / p).abs() <= t,
            None => (r - p).abs() <= 0.5 + 1e-9,
        },
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Calibrate against every published run of the catalog.
pub fn calibrate(cat: &Catalog) -> Result<Calibration, ModelError> {
    calibrate_with(cat, &[])
}

/// [`calibrate`] with a team's own runs (`--own-runs`) in the step model's fit.
pub fn calibrate_with(
    cat: &Catalog,
    yours: &[crate::published::StepRun],
) -> Result<Calibration, ModelError> {
    let fit = Fit::from_catalog(cat)?;
    let mut rows = vec![];
    for run in &cat.runs {
        let hw = cat.hardware(&run.hardware)?;
        let chips = hw.chips(run.count, run.unit);
        let price = |pre: bool| hw.price_per_chip_hour(pre);
        let basis_pre = run.price_basis == PriceBasis::Preemptible;
        let cost_hours = run.published_cost_hours.or(run.hours);
        let repro = |pre: bool, ch: f64| cost_hours.zip(price(pre)).map(|(h, p)| ch * h * p);
        let reproduced = repro(basis_pre, chips);
        let reproduced_pe = repro(true, chips);
        let per_hour = price(basis_pre).map(|p| p * chips);
        let alt_reproduced = run
            .alt_unit
            .and_then(|u| repro(basis_pre, hw.chips(run.count, u)));
        let flops = run_flops(cat, run)?;
        let implied = implied_mfu(cat, run)?.map(|(m, _)| m);
        let k = hw.kernel_efficiency_value();
        let used = implied.is_some();
        let peak = hw.peak_flops(Some(&run.dtype))?;

        let (loo_mfu, loo_hours, loo_basis) = if used && fit.points.len() > 1 {
            let sys = fit.without(&run.id).system_efficiency(&hw.class)?;
            let mfu = (k * sys.band.mid).min(1.0);
            let hrs = flops.map(|f| f / (peak * mfu) / 3600.0);
            let basis = format!(
                "{} from {}",
                if sys.pooled {
                    "pooled (no other run in class)".to_string()
                } else {
                    format!("class {}", sys.class)
                },
                sys.runs.join(", ")
            );
            (Some(mfu), hrs, Some(basis))
        } else {
            (None, None, None)
        };
        let published_hours = run.hours.map(|h| h * chips);
        let loo_ratio = loo_hours.zip(published_hours).map(|(p, q)| p / q);

        // Runs without a duration: predict their cost from the full fit.
        let predicted = if run.hours.is_none() {
            match (flops, price(basis_pre)) {
                (Some(f), Some(p)) => {
                    let mfu = fit.calibrated_mfu(hw)?.band();
                    Some(mfu.invert_times(f / peak / 3600.0 * p))
                }
                _ => None,
            }
        } else {
            None
        };
        let predicted_cost = predicted.map(|b| b.mid);
        let min_ok = match run.published_cost_min_usd {
            Some(m) => predicted_cost.or(reproduced).is_some_and(|c| c > m),
            None => true,
        };
        let ok = matches(
            run.published_cost_usd,
            reproduced,
            run.published_cost_tolerance,
        ) && matches(run.published_cost_preemptible_usd, reproduced_pe, None)
            && matches(run.published_cost_per_hour_usd, per_hour, None)
            && matches(run.alt_published_cost_usd, alt_reproduced, None)
            && min_ok;

        rows.push(RunCalibration {
            id: run.id.clone(),
            model: run.model.clone(),
            hardware: hw.name.clone(),
            class: hw.class.clone(),
            published_count: run.count,
            published_unit: run.unit.as_str().into(),
            chips,
            hours: run.hours,
            published_cost_hours: run.published_cost_hours,
            tokens: if run.tokens_known {
                Some(cat.run_schedule(run)?.iter().map(|p| p.tokens()).sum())
            } else {
                None
            },
            train_flops: flops,
            published_cost_usd: run.published_cost_usd,
            reproduced_cost_usd: reproduced,
            price_basis: match run.price_basis {
                PriceBasis::OnDemand => "on-demand".into(),
                PriceBasis::Preemptible => "preemptible".into(),
            },
            published_cost_preemptible_usd: run.published_cost_preemptible_usd,
            reproduced_cost_preemptible_usd: reproduced_pe,
            published_cost_per_hour_usd: run.published_cost_per_hour_usd,
            reproduced_cost_per_hour_usd: per_hour,
            alt_unit: run.alt_unit.map(|u| u.as_str().to_string()),
            alt_published_cost_usd: run.alt_published_cost_usd,
            alt_reproduced_cost_usd: alt_reproduced,
            published_cost_min_usd: run.published_cost_min_usd,
            predicted_cost_usd: predicted_cost,
            predicted_cost_low_usd: predicted.map(|b| b.low),
            predicted_cost_high_usd: predicted.map(|b| b.high),
            cost_reproduced: ok,
            implied_mfu: implied,
            kernel_efficiency: k,
            implied_system_efficiency: implied.map(|m| m / k),
            used_in_fit: used,
            published_device_hours: published_hours,
            loo_predicted_mfu: loo_mfu,
            loo_predicted_device_hours: loo_hours,
            loo_ratio,
            loo_abs_log_error: loo_ratio.map(|r| r.ln().abs()),
            loo_basis,
            source: run.source.clone(),
            interpretation: run.interpretation.clone(),
        });
    }

    let mut errs: Vec<(f64, &str)> = rows
        .iter()
        .filter_map(|r| r.loo_abs_log_error.map(|e| (e, r.id.as_str())))
        .collect();
    errs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = if errs.is_empty() {
        None
    } else if errs.len() % 2 == 1 {
        Some(errs[errs.len() / 2].0)
    } else {
        Some((errs[errs.len() / 2 - 1].0 + errs[errs.len() / 2].0) / 2.0)
    };
    let worst = errs.last().copied();
    let mut classes: Vec<String> = fit.points.iter().map(|p| p.class.clone()).collect();
    classes.sort();
    classes.dedup();
    let classes = classes
        .iter()
        .map(|c| fit.system_efficiency(c))
        .collect::<Result<Vec<_>, _>>()?;
    let summary = CalibrationSummary {
        runs_fitted: fit.points.len(),
        median_abs_log_error: median,
        worst_abs_log_error: worst.map(|w| w.0),
        worst_run: worst.map(|w| w.1.to_string()),
        median_factor: median.map(f64::exp),
        all_costs_reproduced: rows.iter().all(|r| r.cost_reproduced),
        classes,
    };
    let ranges = cat
        .ranges
        .iter()
        .map(|g| check_range(cat, g))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Calibration {
        runs: rows,
        ranges,
        summary,
        fit,
        step: step_calibration_with(cat, yours)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_cost_reproduces_and_loo_is_finite() {
        let c = calibrate(Catalog::embedded()).unwrap();
        assert!(c.summary.all_costs_reproduced);
        for r in &c.runs {
            assert!(r.cost_reproduced, "{}", r.id);
            if r.used_in_fit {
                let ratio = r.loo_ratio.unwrap();
                assert!(ratio.is_finite() && ratio > 0.0);
            }
        }
        assert!(c.summary.runs_fitted >= 5);
        assert!(c.summary.worst_abs_log_error.unwrap() < 1.5);
    }

    #[test]
    fn ai21_ranges_under_one_reading_scale_with_size() {
        let c = calibrate(Catalog::embedded()).unwrap();
        assert_eq!(c.ranges.len(), 3);
        for g in &c.ranges {
            eprintln!(
                "{}: single {:.0} vs {:.0} (x{:.2}), band {:.0}-{:.0}",
                g.id,
                g.estimated_single_run_usd,
                g.published_single_run_usd,
                g.single_run_ratio,
                g.estimated_single_run_low_usd,
                g.estimated_single_run_high_usd
            );
            assert_eq!(g.assumption, AI21_ASSUMPTION);
            assert_eq!(g.hardware, "tpu-v3");
            // Fully loaded is exactly 20 single runs, as AI21 (and flopcal) define it.
            assert!(
                (g.estimated_fully_loaded_usd / g.estimated_single_run_usd - 20.0).abs() < 1e-9
            );
        }
        // Cost grows with the model, as AI21's does.
        let s: Vec<f64> = c
            .ranges
            .iter()
            .map(|g| g.estimated_single_run_usd)
            .collect();
        assert!(s[0] < s[1] && s[1] < s[2], "{s:?}");
    }

    #[test]
    fn t5_predicted_above_published_floor() {
        let c = calibrate(Catalog::embedded()).unwrap();
        let t5 = c.runs.iter().find(|r| r.id == "t5-11b").unwrap();
        assert!(t5.predicted_cost_usd.unwrap() > t5.published_cost_min_usd.unwrap());
    }

    #[test]
    fn measured_kernel_efficiency_on_custom_hardware() {
        use crate::cost::{estimate, Assumptions, Plan, Workload};
        let fit = Fit::from_catalog(Catalog::embedded()).unwrap();
        let hw = Hardware::custom(
            "this-cpu",
            "cpu-local",
            "fp32",
            2.0,
            "flopcal profile",
            "2025-01",
        );
        let mfu = fit.measured_mfu(&hw, 0.6).unwrap();
        let sys = fit.system_efficiency("cpu-local").unwrap();
        assert!(sys.pooled);
        assert!((mfu.band().mid - 0.6 * sys.band.mid).abs() < 1e-12);
        let plan = Plan {
            label: "x".into(),
            workload: Workload::ParamsTokens {
                params: 1e6,
                tokens: 1e9,
            },
        };
        let e = estimate(&plan, &hw, &Assumptions::new(1.0, mfu)).unwrap();
        assert!(e.cost_usd.is_none() && e.energy_kwh.is_none());
        let want = 6e15 / (2e12 * 0.6 * sys.band.mid) / 3600.0;
        assert!((e.device_hours - want).abs() < 1e-9 * want);
    }

    #[test]
    fn class_without_runs_falls_back_to_pooled() {
        let fit = Fit::from_catalog(Catalog::embedded()).unwrap();
        let s = fit.system_efficiency("gpu-2022").unwrap();
        assert!(s.pooled);
        assert!(s.band.low <= s.band.mid && s.band.mid <= s.band.high);
        let hw = Catalog::embedded().hardware("h100").unwrap();
        assert!(fit.measured_mfu(hw, 1.5).is_err());
        assert!(fit.measured_mfu(hw, 0.6).is_ok());
    }
}
