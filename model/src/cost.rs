//! The cost model: training FLOPs → device-hours → dollars,
//! fully-loaded dollars, energy and CO2, each with a low–high band.
//!
//! - `device_hours = train_FLOPs / (peak(dtype) × MFU) / 3600` (per chip; a GPU is one);
//!   `wall_hours = device_hours / chips`;
//! - MFU ([`MfuSource`]) from the step model's best layout ([`crate::forecast`]), with a
//!   band of the fit's typical leave-one-out error; or a user MFU (a point); or, for
//!   hardware the step model cannot describe (no link tiers or memory bandwidth in the
//!   catalog), the older `kernel efficiency × system efficiency` fitted on whole runs;
//! - `$ = device_hours × price per chip-hour` (on demand and preemptible);
//!   fully loaded = single run × configurations × runs per configuration;
//! - energy (Strubell et al. 2019): `kWh = PUE × (device_hours × P_chip + wall_hours ×
//!   P_host) / 1000`, `CO2e lb = 0.954 × kWh`, `kg = lb × 0.45359237`.

use serde::{Deserialize, Serialize};

use crate::catalog::{Hardware, ModelEntry};
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::flops::{self, check_fraction, check_positive, Family, FlopOptions, FlopReport, Phase};

/// Strubell et al. 2019 (§2): 2018 global average data-centre PUE (Uptime Institute).
pub const DEFAULT_PUE: f64 = 1.58;
/// Strubell et al. 2019 (§2): US EPA average, 0.954 lb CO2e per kWh.
pub const DEFAULT_CO2_LB_PER_KWH: f64 = 0.954;
/// AI21 (Sharir et al. 2020): fully loaded = 2 configurations ...
pub const DEFAULT_CONFIGS: u32 = 2;
/// ... × 10 runs per configuration.
pub const DEFAULT_RUNS: u32 = 10;
/// Kilograms per pound.
pub const KG_PER_LB: f64 = 0.453_592_37;

/// A central value with its low–high band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Central value.
    pub mid: f64,
    /// Low end.
    pub low: f64,
    /// High end.
    pub high: f64,
}

impl Band {
    /// A band of zero width.
    pub fn point(x: f64) -> Band {
        Band {
            mid: x,
            low: x,
            high: x,
        }
    }

    /// Multiply every end by `k`.
    pub fn scale(self, k: f64) -> Band {
        Band {
            mid: self.mid * k,
            low: self.low * k,
            high: self.high * k,
        }
    }

    /// `k / band`: the ends swap (a high MFU gives few hours).
    pub fn invert_times(self, k: f64) -> Band {
        Band {
            mid: k / self.mid,
            low: k / self.high,
            high: k / self.low,
        }
    }
}

/// A fitted system efficiency for one hardware class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemEfficiency {
    /// Hardware class the fit is for (or that it fell back from).
    pub class: String,
    /// Geometric mean (mid) and the spread (low, high) of the fitted runs.
    pub band: Band,
    /// Ids of the runs it rests on.
    pub runs: Vec<String>,
    /// True when the class had no run of its own and the fit pooled every class.
    pub pooled: bool,
}

/// Where an estimate's MFU comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MfuSource {
    /// Catalog kernel efficiency × system efficiency calibrated from published runs.
    Calibrated {
        /// Reference kernel efficiency of the hardware (catalog).
        kernel_efficiency: f64,
        /// Fitted system efficiency.
        system: SystemEfficiency,
    },
    /// Given by the user (`--mfu`): a point, no band.
    User {
        /// The MFU.
        mfu: f64,
    },
    /// Predicted by the step model ([`crate::forecast`]): the best layout's MFU, and
    /// the MFU at the ends of its prediction band (leave-one-source-out residuals).
    Modelled {
        /// The run's MFU.
        mfu: f64,
        /// At the lowest fitted efficiency.
        mfu_low: f64,
        /// At the highest.
        mfu_high: f64,
        /// What the prediction rests on, in words.
        basis: String,
    },
    /// Kernel efficiency measured by `flopcal profile` × calibrated system efficiency.
    Measured {
        /// Measured kernel efficiency (achieved / peak on the model's kernel suite).
        kernel_efficiency: f64,
        /// Fitted system efficiency.
        system: SystemEfficiency,
    },
}

impl MfuSource {
    /// The MFU band (each end clamped to (0, 1]).
    pub fn band(&self) -> Band {
        let b = match self {
            MfuSource::Calibrated {
                kernel_efficiency,
                system,
            }
            | MfuSource::Measured {
                kernel_efficiency,
                system,
            } => system.band.scale(*kernel_efficiency),
            MfuSource::User { mfu } => Band::point(*mfu),
            MfuSource::Modelled {
                mfu,
                mfu_low,
                mfu_high,
                ..
            } => Band {
                mid: *mfu,
                low: mfu_low.min(*mfu),
                high: mfu_high.max(*mfu),
            },
        };
        Band {
            mid: b.mid.min(1.0),
            low: b.low.min(1.0),
            high: b.high.min(1.0),
        }
    }

    /// One line saying where the MFU came from.
    pub fn describe(&self) -> String {
        match self {
            MfuSource::User { mfu } => format!("user (--mfu {mfu})"),
            MfuSource::Modelled {
                basis,
                mfu_low,
                mfu_high,
                ..
            } => {
                if mfu_low == mfu_high {
                    format!("step model at the best layout: {basis}")
                } else {
                    format!(
                        "step model at the best layout: {basis}; the band is the {:.0}% prediction interval from the leave-one-source-out errors (see the assumptions)",
                        crate::fit::BAND_LEVEL * 100.0
                    )
                }
            }
            MfuSource::Calibrated {
                kernel_efficiency,
                system,
            } => format!(
                "calibrated: kernel efficiency {kernel_efficiency:.2} (catalog) x system efficiency {:.3} [{:.3}-{:.3}] of class {}{} from runs {}",
                system.band.mid,
                system.band.low,
                system.band.high,
                system.class,
                if system.pooled { " (no run of its own: pooled over all classes)" } else { "" },
                system.runs.join(", ")
            ),
            MfuSource::Measured {
                kernel_efficiency,
                system,
            } => format!(
                "measured kernel efficiency {kernel_efficiency:.3} x system efficiency {:.3} [{:.3}-{:.3}] of class {}{} from runs {}",
                system.band.mid,
                system.band.low,
                system.band.high,
                system.class,
                if system.pooled { " (pooled)" } else { "" },
                system.runs.join(", ")
            ),
        }
    }
}

/// What is being trained.
#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    /// An architecture over a schedule: exact per-op FLOPs and `6·N·D`.
    Config {
        /// The architecture.
        config: ModelConfig,
        /// Family (parameter count conventions).
        family: Family,
        /// Schedule.
        phases: Vec<Phase>,
        /// Recomputation and vocabulary options.
        options: FlopOptions,
    },
    /// Only `N` and `D`: FLOPs = `6·N·D`.
    ParamsTokens {
        /// Non-embedding parameters.
        params: f64,
        /// Tokens.
        tokens: f64,
    },
    /// Nothing to count: a known duration is costed directly (`--hours`).
    Duration,
}

/// A workload with a label.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Label for output (the model name, or `custom`).
    pub label: String,
    /// The work.
    pub workload: Workload,
}

impl Plan {
    /// A catalog model trained on its published schedule (its `training` phases),
    /// with the default FLOP options.
    pub fn published(m: &ModelEntry) -> Plan {
        Plan {
            label: m.name.clone(),
            workload: Workload::Config {
                config: m.config(),
                family: m.family,
                phases: m.training.clone(),
                options: FlopOptions::default(),
            },
        }
    }

    /// The FLOP report, if the workload has FLOPs.
    pub fn flops(&self) -> Result<Option<FlopReport>, ModelError> {
        match &self.workload {
            Workload::Config {
                config,
                phases,
                options,
                ..
            } => flops::train_flops(config, phases, options).map(Some),
            Workload::ParamsTokens { params, tokens } => {
                flops::flops_6nd(*params, *tokens).map(Some)
            }
            Workload::Duration => Ok(None),
        }
    }

    /// Model FLOPs of the run whose count ([`Plan::flops`]) is `report`: the per-op
    /// training count without recomputation, what MFU divides by (recomputation is
    /// hardware work, counted in HFU only). Counted again only where `report` counts
    /// recomputation.
    pub fn model_flops(&self, report: &FlopReport) -> Result<f64, ModelError> {
        match &self.workload {
            Workload::Config { config, phases, .. }
                if report.options.recompute != flops::Recompute::None =>
            {
                let plain = FlopOptions {
                    recompute: flops::Recompute::None,
                    ..report.options
                };
                Ok(flops::train_flops(config, phases, &plain)?.train_flops)
            }
            _ => Ok(report.train_flops),
        }
    }

    /// Total parameters, when an architecture is known.
    pub fn params_total(&self) -> Option<f64> {
        match &self.workload {
            Workload::Config { config, family, .. } => {
                Some(flops::param_count(config, *family).total)
            }
            _ => None,
        }
    }

    /// Parameters one token goes through (mixture-of-experts: the shared weights plus
    /// `top_k` experts; equal to the total for a dense model), when an architecture is
    /// known. Model FLOPs count these.
    pub fn params_active(&self) -> Option<f64> {
        match &self.workload {
            Workload::Config { config, family, .. } => {
                Some(flops::param_count(config, *family).active)
            }
            _ => None,
        }
    }
}

/// Everything besides the workload and the hardware.
#[derive(Debug, Clone, PartialEq)]
pub struct Assumptions {
    /// Chips (GPUs) the run uses.
    pub chips: f64,
    /// Data type (selects the peak); `None` = the hardware's default.
    pub dtype: Option<String>,
    /// Where the MFU comes from.
    pub mfu: MfuSource,
    /// On-demand price per chip-hour, overriding the catalog.
    pub price_per_chip_hour: Option<f64>,
    /// Preemptible price per chip-hour, overriding the catalog.
    pub preemptible_price_per_chip_hour: Option<f64>,
    /// Price the fully-loaded cost at the preemptible rate.
    pub preemptible: bool,
    /// Configurations tried (fully loaded).
    pub configs: u32,
    /// Runs per configuration (fully loaded).
    pub runs: u32,
    /// Power usage effectiveness.
    pub pue: f64,
    /// Electricity price, USD per kWh (optional).
    pub kwh_price: Option<f64>,
    /// Emission factor, lb CO2e per kWh.
    pub co2_lb_per_kwh: f64,
    /// Power per chip, W, overriding the catalog TDP.
    pub chip_watts: Option<f64>,
    /// Host power (CPU + DRAM) for the whole run, W.
    pub host_watts: f64,
    /// Known wall-clock duration, hours: cost it directly instead of deriving it.
    pub hours: Option<f64>,
    /// Fraction of wall-clock time that makes progress (after failures, restarts and
    /// evaluation): hours derived from the MFU are divided by it. 1 = none lost.
    pub goodput: f64,
}

impl Assumptions {
    /// Defaults for `chips` chips with the given MFU source: fully loaded = AI21's
    /// 2 configurations × 10 runs, PUE 1.58, 0.954 lb/kWh, catalog prices and TDP, no
    /// host power.
    pub fn new(chips: f64, mfu: MfuSource) -> Assumptions {
        Assumptions {
            chips,
            dtype: None,
            mfu,
            price_per_chip_hour: None,
            preemptible_price_per_chip_hour: None,
            preemptible: false,
            configs: DEFAULT_CONFIGS,
            runs: DEFAULT_RUNS,
            pue: DEFAULT_PUE,
            kwh_price: None,
            co2_lb_per_kwh: DEFAULT_CO2_LB_PER_KWH,
            chip_watts: None,
            host_watts: 0.0,
            hours: None,
            goodput: 1.0,
        }
    }

    fn check(&self) -> Result<(), ModelError> {
        check_positive("device count", self.chips)?;
        check_fraction("goodput", self.goodput)?;
        match &self.mfu {
            MfuSource::User { mfu } => check_fraction("MFU", *mfu)?,
            MfuSource::Measured {
                kernel_efficiency, ..
            } => check_fraction("measured kernel efficiency", *kernel_efficiency)?,
            MfuSource::Modelled {
                mfu,
                mfu_low,
                mfu_high,
                ..
            } => {
                for m in [mfu, mfu_low, mfu_high] {
                    check_fraction("modelled MFU", *m)?;
                }
            }
            MfuSource::Calibrated { .. } => {}
        }
        if let Some(p) = self.price_per_chip_hour {
            check_positive("price", p)?;
        }
        if let Some(p) = self.preemptible_price_per_chip_hour {
            check_positive("preemptible price", p)?;
        }
        if self.configs == 0 || self.runs == 0 {
            return Err(ModelError::InvalidInput(
                "configs and runs must be at least 1".into(),
            ));
        }
        if !(self.pue.is_finite() && self.pue >= 1.0) {
            return Err(ModelError::InvalidInput(format!(
                "PUE must be a number >= 1 (got {})",
                self.pue
            )));
        }
        if let Some(k) = self.kwh_price {
            check_non_negative("electricity price", k)?;
        }
        check_non_negative("CO2 per kWh", self.co2_lb_per_kwh)?;
        check_non_negative("host watts", self.host_watts)?;
        if let Some(w) = self.chip_watts {
            check_positive("chip watts", w)?;
        }
        if let Some(h) = self.hours {
            check_positive("hours", h)?;
        }
        Ok(())
    }
}

fn check_non_negative(what: &str, x: f64) -> Result<(), ModelError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(ModelError::InvalidInput(format!(
            "{what} must be a number >= 0 (got {x})"
        )))
    }
}

/// The result of [`estimate`]: every money/time/energy figure has `_low`/`_high` ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// Model (or `custom`).
    pub model: String,
    /// Hardware name.
    pub hardware: String,
    /// Data type.
    pub dtype: String,
    /// Chips (GPUs).
    pub devices: f64,
    /// Unit of `devices` and `device_hours`.
    pub device_unit: String,
    /// Peak FLOP/s per chip.
    pub peak_flops_per_device: f64,
    /// Total parameters (when an architecture is known).
    pub params_total: Option<f64>,
    /// Active parameters per token (mixture-of-experts; = total when dense).
    pub params_active: Option<f64>,
    /// Non-embedding parameters `N`.
    pub params_non_embedding: Option<f64>,
    /// Tokens `D`.
    pub tokens: Option<f64>,
    /// Exact per-op training FLOPs.
    pub train_flops: Option<f64>,
    /// `6·N·D`.
    pub flops_6nd: Option<f64>,
    /// `train_flops / flops_6nd`.
    pub ratio_exact_to_6nd: Option<f64>,
    /// The full FLOP report (by op), when available.
    pub flops: Option<FlopReport>,
    /// MFU used (or implied, with `--hours`).
    pub mfu: Option<f64>,
    /// Low end of the MFU band.
    pub mfu_low: Option<f64>,
    /// High end of the MFU band.
    pub mfu_high: Option<f64>,
    /// Where the MFU came from.
    pub mfu_source: String,
    /// Chip-hours, whatever `--unit` counted `--devices` in (a TPU device of four chips
    /// counts four). Kept under this name for scripts; [`Estimate::chip_hours`] is the
    /// same figure under the name that says what it counts.
    pub device_hours: f64,
    /// Chip-hours, low end (high MFU); as [`Estimate::chip_hours_low`].
    pub device_hours_low: f64,
    /// Chip-hours, high end (low MFU); as [`Estimate::chip_hours_high`].
    pub device_hours_high: f64,
    /// Chip-hours (a GPU is one chip).
    pub chip_hours: f64,
    /// Chip-hours, low end (high MFU).
    pub chip_hours_low: f64,
    /// Chip-hours, high end (low MFU).
    pub chip_hours_high: f64,
    /// Wall-clock hours.
    pub wall_hours: f64,
    /// Wall-clock hours, low end.
    pub wall_hours_low: f64,
    /// Wall-clock hours, high end.
    pub wall_hours_high: f64,
    /// Fraction of wall-clock time that made progress: hours derived from the MFU were
    /// divided by it (1 where a duration was given or nothing is lost).
    pub goodput: f64,
    /// On-demand price per chip-hour used.
    pub price_per_device_hour: Option<f64>,
    /// Preemptible price per chip-hour used.
    pub preemptible_price_per_device_hour: Option<f64>,
    /// On-demand cost per wall-clock hour.
    pub cost_usd_per_hour: Option<f64>,
    /// One run, on demand.
    pub cost_usd: Option<f64>,
    /// One run, on demand, low end.
    pub cost_usd_low: Option<f64>,
    /// One run, on demand, high end.
    pub cost_usd_high: Option<f64>,
    /// One run, preemptible.
    pub cost_usd_preemptible: Option<f64>,
    /// One run, preemptible, low end.
    pub cost_usd_preemptible_low: Option<f64>,
    /// One run, preemptible, high end.
    pub cost_usd_preemptible_high: Option<f64>,
    /// Configurations × runs.
    pub fully_loaded_multiplier: f64,
    /// Fully loaded (on demand, or preemptible with `preemptible`).
    pub fully_loaded_cost_usd: Option<f64>,
    /// Fully loaded, low end.
    pub fully_loaded_cost_usd_low: Option<f64>,
    /// Fully loaded, high end.
    pub fully_loaded_cost_usd_high: Option<f64>,
    /// Energy of one run, kWh.
    pub energy_kwh: Option<f64>,
    /// Energy, low end.
    pub energy_kwh_low: Option<f64>,
    /// Energy, high end.
    pub energy_kwh_high: Option<f64>,
    /// Electricity cost of one run (with a kWh price).
    pub energy_cost_usd: Option<f64>,
    /// CO2e of one run, kg.
    pub co2_kg: Option<f64>,
    /// CO2e, kg, low end.
    pub co2_kg_low: Option<f64>,
    /// CO2e, kg, high end.
    pub co2_kg_high: Option<f64>,
    /// CO2e of one run, lb.
    pub co2_lb: Option<f64>,
    /// CO2e, lb, low end.
    pub co2_lb_low: Option<f64>,
    /// CO2e, lb, high end.
    pub co2_lb_high: Option<f64>,
    /// Every assumption, one line each, with its source.
    pub assumptions: Vec<String>,
}

/// One figure an estimate or comparison relied on that no public source states.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assumption {
    /// Which figure (`h100-sxm links.nvlink.latency_us`, `link efficiency`, `model`).
    pub figure: String,
    /// The assumption, as the catalog or flopcal states it.
    pub source: String,
}

/// The flopcal assumptions an estimate of `hw` under `a` relies on, in this order:
/// the catalog figures of `hw` it reads that are assumptions (memory, link tiers and
/// compute units when the step model ran; the kernel efficiency of the retired MFU
/// model; the TDP unless a power is given; the on-demand and preemptible prices
/// unless given), the step model's stated link and HBM efficiencies when it ran, and
/// the model itself when flopcal constructed it.
pub fn relied_on(hw: &Hardware, a: &Assumptions, model: Option<&ModelEntry>) -> Vec<Assumption> {
    let modelled = matches!(a.mfu, MfuSource::Modelled { .. });
    let reads = |field: &str| -> bool {
        if field.starts_with("links.") || field.starts_with("memory") || field == "compute_units" {
            return modelled;
        }
        match field {
            "kernel_efficiency" => matches!(a.mfu, MfuSource::Calibrated { .. }),
            "tdp_w" => a.chip_watts.is_none(),
            "price_on_demand" => a.price_per_chip_hour.is_none(),
            "price_preemptible" => a.preemptible_price_per_chip_hour.is_none(),
            _ => false,
        }
    };
    let mut out: Vec<Assumption> = hw
        .assumptions()
        .into_iter()
        .filter(|(field, _)| reads(field))
        .map(|(field, f)| Assumption {
            figure: format!("{} {field}", hw.name),
            source: f.source.clone(),
        })
        .collect();
    if modelled {
        out.push(Assumption {
            figure: "link efficiency".into(),
            source: format!(
                "{}: links reach {:.0}% of their nominal bandwidth (NCCL bus bandwidth on NVLink and InfiniBand is typically 75-85% of the link rate)",
                crate::catalog::ASSUMPTION,
                crate::fit::LINK_EFFICIENCY * 100.0
            ),
        });
        out.push(Assumption {
            figure: "HBM efficiency".into(),
            source: format!(
                "{}: memory-bound kernels reach {:.0}% of the HBM bandwidth",
                crate::catalog::ASSUMPTION,
                crate::fit::HBM_EFFICIENCY * 100.0
            ),
        });
    }
    if let Some(m) = model.filter(|m| m.constructed) {
        out.push(Assumption {
            figure: format!("model {}", m.name),
            source: format!("constructed, no one published it: {}", m.source),
        });
    }
    out
}

/// Estimate time, cost, energy and CO2 of `plan` on `hw` under `a`.
pub fn estimate(plan: &Plan, hw: &Hardware, a: &Assumptions) -> Result<Estimate, ModelError> {
    a.check()?;
    let report = plan.flops()?;
    let dtype = hw.dtype_or_default(a.dtype.as_deref());
    let peak = hw.peak_flops(Some(&dtype))?;
    let mut notes = vec![];
    notes.push(format!(
        "peak {:.1} TFLOP/s per chip ({dtype}): {}",
        peak / 1e12,
        hw.peak_tflops
            .iter()
            .find(|p| p.dtype.eq_ignore_ascii_case(&dtype))
            .map(|p| format!("{} ({})", p.source, p.date))
            .unwrap_or_default()
    ));

    // Chip-hours and MFU, on model FLOPs (recomputation is not model work).
    let model_flops = report.as_ref().map(|r| plan.model_flops(r)).transpose()?;
    let (hours_band, mfu_band, mfu_source) = match (a.hours, model_flops) {
        (Some(h), flops) => {
            let ch = h * a.chips;
            let implied = flops.map(|f| f / (a.chips * peak * h * 3600.0));
            notes.push(format!("duration given: {h} h on {} chips", a.chips));
            (
                Band::point(ch),
                implied.map(Band::point),
                "implied by the given duration (train FLOPs / (devices x peak x seconds))"
                    .to_string(),
            )
        }
        (None, Some(f)) => {
            let mfu = a.mfu.band();
            let hrs = mfu.invert_times(f / (peak * 3600.0)).scale(1.0 / a.goodput);
            if a.goodput < 1.0 {
                notes.push(format!(
                        "goodput {:.2}: wall-clock = step time x steps / {:.2} ({}); MFU is of the stepping time, override with --goodput",
                        a.goodput,
                        a.goodput,
                        if (a.goodput - crate::fit::GOODPUT).abs() < 1e-12 {
                            crate::fit::GOODPUT_SOURCE
                        } else {
                            "given"
                        }
                    ));
            }
            (hrs, Some(mfu), a.mfu.describe())
        }
        (None, None) => {
            return Err(ModelError::InvalidInput(
                "nothing to estimate: give a model and token budget, --params/--tokens, or --hours"
                    .into(),
            ))
        }
    };
    if let Some(r) = &report {
        notes.push(format!(
            "FLOPs: exact per-op count x3 for training (recompute: {}, vocab over {:.0}% of positions{}); 6ND with N = non-embedding parameters{}",
            r.options.recompute.as_str(),
            r.options.vocab_fraction * 100.0,
            if r.causal_halved { ", causal: scores and P.V halved" } else { "" },
            match (r.options.recompute, model_flops) {
                (flops::Recompute::None, _) | (_, None) => String::new(),
                (_, Some(m)) => format!("; MFU counts the {m:.3e} model FLOPs without recomputation, the recomputed work is in HFU only"),
            }
        ));
    }
    let wall = hours_band.scale(1.0 / a.chips);

    // Money.
    let od_price = a
        .price_per_chip_hour
        .or_else(|| hw.price_per_chip_hour(false));
    let pe_price = a
        .preemptible_price_per_chip_hour
        .or_else(|| hw.price_per_chip_hour(true));
    match (a.price_per_chip_hour, &hw.price_on_demand) {
        (Some(p), _) => notes.push(format!("on-demand price ${p:.4}/chip-h (user)")),
        (None, Some(f)) => notes.push(format!(
            "on-demand price ${:.2}/device-h = ${:.4}/chip-h ({} chips/device): {} ({})",
            f.value,
            f.value / f64::from(hw.chips_per_device),
            hw.chips_per_device,
            f.source,
            f.date
        )),
        (None, None) => notes.push("no on-demand price in the catalog: pass --price".into()),
    }
    match (a.preemptible_price_per_chip_hour, &hw.price_preemptible) {
        (Some(p), _) => notes.push(format!("preemptible price ${p:.4}/chip-h (user)")),
        (None, Some(f)) => notes.push(format!(
            "preemptible price ${:.2}/device-h: {} ({})",
            f.value, f.source, f.date
        )),
        (None, None) => notes.push("no preemptible price in the catalog".into()),
    }
    let cost = od_price.map(|p| hours_band.scale(p));
    let cost_pe = pe_price.map(|p| hours_band.scale(p));
    let mult = f64::from(a.configs) * f64::from(a.runs);
    notes.push(format!(
        "fully loaded = {} configurations x {} runs = {mult}x at the {} price (AI21 uses 2 x 10)",
        a.configs,
        a.runs,
        if a.preemptible {
            "preemptible"
        } else {
            "on-demand"
        }
    ));
    let fully = if a.preemptible { cost_pe } else { cost }.map(|c| c.scale(mult));

    // Energy.
    let watts = a.chip_watts.or(hw.tdp_w.as_ref().map(|f| f.value));
    match (a.chip_watts, &hw.tdp_w) {
        (Some(w), _) => notes.push(format!("chip power {w} W (user)")),
        (None, Some(f)) => notes.push(format!(
            "chip power {} W (TDP): {} ({})",
            f.value, f.source, f.date
        )),
        (None, None) => {
            notes.push("no chip power in the catalog: pass --chip-watts for energy".into())
        }
    }
    notes.push(format!(
        "energy = PUE {} x (chip-hours x chip W + wall-hours x host {} W) / 1000; CO2e {} lb/kWh (Strubell et al. 2019 defaults: PUE 1.58, 0.954 lb/kWh)",
        a.pue, a.host_watts, a.co2_lb_per_kwh
    ));
    let energy = watts.map(|w| Band {
        mid: a.pue * (hours_band.mid * w + wall.mid * a.host_watts) / 1000.0,
        low: a.pue * (hours_band.low * w + wall.low * a.host_watts) / 1000.0,
        high: a.pue * (hours_band.high * w + wall.high * a.host_watts) / 1000.0,
    });
    let co2_lb = energy.map(|e| e.scale(a.co2_lb_per_kwh));
    let co2_kg = co2_lb.map(|c| c.scale(KG_PER_LB));

    Ok(Estimate {
        model: plan.label.clone(),
        hardware: hw.name.clone(),
        dtype,
        devices: a.chips,
        device_unit: "chip".into(),
        peak_flops_per_device: peak,
        params_total: plan.params_total(),
        params_active: plan.params_active(),
        params_non_embedding: report.as_ref().map(|r| r.params_non_embedding),
        tokens: report.as_ref().map(|r| r.tokens),
        train_flops: report.as_ref().map(|r| r.train_flops),
        flops_6nd: report.as_ref().map(|r| r.flops_6nd),
        ratio_exact_to_6nd: report.as_ref().map(|r| r.ratio_exact_to_6nd),
        mfu: mfu_band.map(|b| b.mid),
        mfu_low: mfu_band.map(|b| b.low),
        mfu_high: mfu_band.map(|b| b.high),
        mfu_source,
        flops: report,
        device_hours: hours_band.mid,
        device_hours_low: hours_band.low,
        device_hours_high: hours_band.high,
        chip_hours: hours_band.mid,
        chip_hours_low: hours_band.low,
        chip_hours_high: hours_band.high,
        wall_hours: wall.mid,
        wall_hours_low: wall.low,
        wall_hours_high: wall.high,
        goodput: if a.hours.is_some() { 1.0 } else { a.goodput },
        price_per_device_hour: od_price,
        preemptible_price_per_device_hour: pe_price,
        cost_usd_per_hour: od_price.map(|p| p * a.chips),
        cost_usd: cost.map(|c| c.mid),
        cost_usd_low: cost.map(|c| c.low),
        cost_usd_high: cost.map(|c| c.high),
        cost_usd_preemptible: cost_pe.map(|c| c.mid),
        cost_usd_preemptible_low: cost_pe.map(|c| c.low),
        cost_usd_preemptible_high: cost_pe.map(|c| c.high),
        fully_loaded_multiplier: mult,
        fully_loaded_cost_usd: fully.map(|c| c.mid),
        fully_loaded_cost_usd_low: fully.map(|c| c.low),
        fully_loaded_cost_usd_high: fully.map(|c| c.high),
        energy_kwh: energy.map(|e| e.mid),
        energy_kwh_low: energy.map(|e| e.low),
        energy_kwh_high: energy.map(|e| e.high),
        energy_cost_usd: energy.zip(a.kwh_price).map(|(e, p)| e.mid * p),
        co2_kg: co2_kg.map(|c| c.mid),
        co2_kg_low: co2_kg.map(|c| c.low),
        co2_kg_high: co2_kg.map(|c| c.high),
        co2_lb: co2_lb.map(|c| c.mid),
        co2_lb_low: co2_lb.map(|c| c.low),
        co2_lb_high: co2_lb.map(|c| c.high),
        assumptions: notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use proptest::prelude::*;

    fn plan(params: f64, tokens: f64) -> Plan {
        Plan {
            label: "p".into(),
            workload: Workload::ParamsTokens { params, tokens },
        }
    }

    #[test]
    fn hours_mode_reproduces_bert_large() {
        let cat = Catalog::embedded();
        let run = cat.run("bert-large").unwrap();
        let hw = cat.hardware(&run.hardware).unwrap();
        let mut a = Assumptions::new(hw.chips(run.count, run.unit), MfuSource::User { mfu: 1.0 });
        a.hours = run.hours;
        let e = estimate(
            &Plan {
                label: "-".into(),
                workload: Workload::Duration,
            },
            hw,
            &a,
        )
        .unwrap();
        assert_eq!(e.cost_usd, run.published_cost_usd);
        assert_eq!(
            e.cost_usd_preemptible.map(f64::round),
            run.published_cost_preemptible_usd
        );
    }

    #[test]
    fn rejects_bad_assumptions() {
        let hw = Catalog::embedded().hardware("v100").unwrap();
        let p = plan(1e9, 1e10);
        for a in [
            Assumptions::new(0.0, MfuSource::User { mfu: 0.5 }),
            Assumptions::new(-1.0, MfuSource::User { mfu: 0.5 }),
            Assumptions::new(1.0, MfuSource::User { mfu: 0.0 }),
            Assumptions::new(1.0, MfuSource::User { mfu: 1.01 }),
            Assumptions {
                pue: 0.5,
                ..Assumptions::new(1.0, MfuSource::User { mfu: 0.5 })
            },
        ] {
            assert!(estimate(&p, hw, &a).is_err());
        }
    }

    proptest! {
        #[test]
        fn estimate_is_total_and_ordered(
            params in -1e12f64..1e13, tokens in -1e12f64..1e14, chips in -4f64..1e5,
            mfu in -0.5f64..1.5, pue in 0.5f64..3.0, hw_i in 0usize..8,
        ) {
            let cat = Catalog::embedded();
            let hw = &cat.hardware[hw_i % cat.hardware.len()];
            let mut a = Assumptions::new(chips, MfuSource::User { mfu });
            a.pue = pue;
            match estimate(&plan(params, tokens), hw, &a) {
                Ok(e) => {
                    prop_assert!(params > 0.0 && tokens > 0.0 && chips > 0.0 && mfu > 0.0 && mfu <= 1.0);
                    prop_assert!(e.device_hours.is_finite() && e.device_hours > 0.0);
                    prop_assert!(e.device_hours_low <= e.device_hours && e.device_hours <= e.device_hours_high);
                    if let (Some(c), Some(lo), Some(hi)) = (e.cost_usd, e.cost_usd_low, e.cost_usd_high) {
                        prop_assert!(lo <= c && c <= hi);
                    }
                }
                Err(_) => prop_assert!(!(params > 0.0 && tokens > 0.0 && chips > 0.0 && mfu > 0.0 && mfu <= 1.0 && pue >= 1.0)),
            }
        }

        #[test]
        fn calibrated_band_orders_cost(hw_i in 0usize..8, tokens in 1e6f64..1e13) {
            let cat = Catalog::embedded();
            let hw = &cat.hardware[hw_i % cat.hardware.len()];
            let fit = crate::calibrate::Fit::from_catalog(cat).unwrap();
            let a = Assumptions::new(1.0, fit.calibrated_mfu(hw).unwrap());
            let e = estimate(&plan(1e9, tokens), hw, &a).unwrap();
            let (lo, mid, hi) = (e.mfu_low.unwrap(), e.mfu.unwrap(), e.mfu_high.unwrap());
            prop_assert!(0.0 < lo && lo <= mid && mid <= hi && hi <= 1.0);
            prop_assert!(e.device_hours_low <= e.device_hours && e.device_hours <= e.device_hours_high);
        }
    }
}
