//! The run: what a training plan costs on N chips of some hardware by the step model.
//! Its MFU and the band around it, the global batch when none is given, an
//! architecture for a bare parameter count, and the layouts ranked with their hours
//! and dollars (`plan`). The commands' library side (`estimate`, `plan`, `compare`)
//! builds the inputs; this module decides.

use std::path::PathBuf;

use crate::cost::{MfuSource, Plan, Workload};
use crate::error::ModelError;
use crate::fit;
use crate::flops::Phase;
use crate::forecast::{self, Forecast};
use crate::layout::Attention;
use crate::network::{MeasuredLinks, MeasuredNetwork};
use crate::search::Constraints;
use crate::system::System;
use crate::{Hardware, ModelConfig};

/// Tokens per global batch when none is given: 4M, the batch of Llama 2 (Touvron et
/// al. 2023, §2.2), rounded up to a multiple of the device count.
pub const DEFAULT_BATCH_TOKENS: f64 = 4_194_304.0;

/// A dense decoder of about `n` non-embedding parameters, for `--params` without an
/// architecture: `12·L·h² = n` at `L = h/128` (the depth-to-width ratio of Llama 2 7B
/// and GPT-3 6.7B, h 4096 with 32 layers), `h` a multiple of 128, heads of 128, FFN
/// `4h`, vocabulary 32,000.
pub fn dense_for_params(n: f64, seq: u64) -> ModelConfig {
    let h = ((n * 128.0 / 12.0).cbrt() / 128.0).round().max(1.0) * 128.0;
    let layers = (n / (12.0 * h * h)).round().max(1.0) as u64;
    let h = h as u64;
    ModelConfig {
        name: format!("dense-{:.3e}", n),
        layers,
        hidden: h,
        heads: h / 128,
        head_dim: 128,
        ffn: 4 * h,
        vocab: 32000,
        seq,
        causal: true,
        ..ModelConfig::default()
    }
}

/// The global batch for `seq` on `devices` when none is given.
pub fn default_batch(seq: u64, devices: u64) -> u64 {
    let seqs = (DEFAULT_BATCH_TOKENS / seq.max(1) as f64).ceil() as u64;
    seqs.div_ceil(devices.max(1)).max(1) * devices.max(1)
}

/// A step-model estimate: the MFU source for the cost model and the forecast behind it.
#[derive(Debug, Clone)]
pub struct Modelled {
    /// MFU for [`crate::cost::estimate`] (train FLOPs as counted / (devices × peak × time)).
    pub source: MfuSource,
    /// The forecast.
    pub forecast: Forecast,
    /// The architecture the step model ran (`--params` builds one).
    pub config: ModelConfig,
    /// Notes for the assumptions list.
    pub notes: Vec<String>,
}

/// A `flopcal comm` result file read for `--network`: where it came from (for
/// messages) and its measured α–β lines.
#[derive(Debug, Clone)]
pub struct NetworkFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its measured α–β lines.
    pub net: MeasuredNetwork,
}

/// How [`modelled`] searches: the fixed layout dimensions, the plans kept, `--seq`
/// (for `--params`) and a measured network.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchOptions<'a> {
    /// Fixed layout dimensions.
    pub constraints: Constraints,
    /// Plans to keep.
    pub keep: usize,
    /// `--seq`, for `--params`.
    pub seq: Option<u64>,
    /// `--network`.
    pub network: Option<&'a NetworkFile>,
    /// `--framework` (`None`: unknown).
    pub framework: Option<&'a crate::framework::Framework>,
    /// The step model's fit with a team's own runs (`--own-runs`); `None`: the embedded fit.
    pub fit: Option<&'a fit::StepFit>,
    /// With no layout dimension given, price a production run's layout
    /// ([`forecast::PRODUCTION_RECOMPUTE`]), as `estimate` does; `plan` lists every
    /// layout. Not for a profiled device, whose forecast is what it measured.
    pub production_layout: bool,
}

/// The step model's estimate of `plan` on `chips` of `hw`, or `None` where it cannot
/// run: hardware without link tiers or memory bandwidth in the catalog, a fractional
/// chip count, or a duration-only plan. Bad layouts and models that fit no layout are
/// errors (exit 2).
pub fn modelled(
    plan: &Plan,
    hw: &Hardware,
    chips: f64,
    dtype: Option<&str>,
    search: &SearchOptions<'_>,
) -> Result<Option<Modelled>, ModelError> {
    modelled_with(plan, hw, chips, dtype, search, None)
}

/// [`modelled`], with what a profile of the device measured when `measured` is given
/// (GEMM rates and memory-bound op times, and for this machine the device itself):
/// then the step model reads those instead of the catalog's shape model and bandwidth,
/// and the MFU band is the prediction itself (no fitted efficiency to span).
pub fn modelled_with(
    plan: &Plan,
    hw: &Hardware,
    chips: f64,
    dtype: Option<&str>,
    search: &SearchOptions<'_>,
    measured: Option<&forecast::Measured>,
) -> Result<Option<Modelled>, ModelError> {
    let SearchOptions {
        constraints,
        keep,
        seq: seq_flag,
        network,
        framework,
        fit: own_fit,
        production_layout,
    } = *search;
    let own_system = measured.is_some_and(|m| m.system.is_some());
    if chips.fract() != 0.0 || chips < 1.0 {
        return Ok(None);
    }
    let mut constraints = constraints;
    let mut notes = vec![];
    if own_system && constraints.attention.is_none() {
        // The profiled framework (candle, as `flopcal validate` times it) runs attention
        // as the materialised products the profile measured, not a fused kernel.
        constraints.attention = Some(Attention::Materialized);
        notes.push("this machine runs materialised attention (the products the profile timed); --attention flash to ask otherwise".to_string());
    }
    let sys = if own_system {
        None
    } else {
        if hw.links.is_empty() || hw.memory_bw_gbs.is_none() || hw.memory_gib.is_none() {
            return Ok(None);
        }
        // Present but invalid figures (a zero bandwidth, a malformed tier) are named.
        Some(System::from_hardware(hw, dtype)?)
    };
    let links = match (network, &sys) {
        (Some(n), Some(sys)) => Some(
            MeasuredLinks::new(n.net.clone(), sys, &n.path.display().to_string()).map_err(
                |e| ModelError::InvalidInput(format!("{}: {e}", n.path.display())),
            )?,
        ),
        (Some(n), None) => {
            return Err(ModelError::InvalidInput(format!(
                "--network {}: this machine as profiled is one device with no link tier to replace; use it with catalog hardware (--hardware NAME)",
                n.path.display()
            )))
        }
        (None, _) => None,
    };
    let devices = chips as u64;
    let Some(report) = plan.flops()? else {
        return Ok(None);
    };
    let (config, phases) = match &plan.workload {
        Workload::Config { config, phases, .. } => {
            let phases: Vec<Phase> = phases
                .iter()
                .map(|p| {
                    if p.batch == 1 && p.steps > 1 {
                        let batch = default_batch(p.seq, devices);
                        Phase {
                            steps: (p.tokens() / (batch * p.seq) as f64).ceil().max(1.0) as u64,
                            batch,
                            seq: p.seq,
                        }
                    } else {
                        *p
                    }
                })
                .collect();
            for (p, asked) in phases.iter().zip(phases_of(plan)) {
                let step_tokens = (p.batch * p.seq) as f64;
                if asked.tokens() < step_tokens {
                    return Err(ModelError::InvalidInput(format!(
                        "the token budget ({:.3e} tokens) is smaller than one step of batch {} x seq {} ({:.3e} tokens): lower the batch or raise --tokens",
                        asked.tokens(),
                        p.batch,
                        p.seq,
                        step_tokens
                    )));
                }
            }
            if phases != *phases_of(plan) {
                notes.push(format!(
                    "no global batch given: {} sequences per step (4M tokens, Llama 2's batch, rounded to a multiple of the devices)",
                    phases[0].batch
                ));
            }
            (config.clone(), phases)
        }
        Workload::ParamsTokens { params, tokens } => {
            let seq = seq_flag.unwrap_or(2048);
            let cfg = dense_for_params(*params, seq);
            let batch = default_batch(seq, devices);
            notes.push(format!(
                "--params without an architecture: the step model runs a dense decoder of {} layers x {} wide ({} heads of 128, FFN 4h, vocab 32000, seq {seq}), L = h/128 as in Llama 2 7B; batch {batch} sequences (4M tokens)",
                cfg.layers, cfg.hidden, cfg.heads
            ));
            let steps = (tokens / (batch * seq) as f64).ceil().max(1.0) as u64;
            (cfg, vec![Phase { steps, batch, seq }])
        }
        Workload::Duration => return Ok(None),
    };
    let fit = match own_fit {
        Some(f) => f,
        None => fit::embedded_parameters()?,
    };
    let req = forecast::ForecastRequest {
        cfg: &config,
        phases: &phases,
        hw,
        dtype,
        devices,
        constraints,
        rates: None,
        keep,
        gemm_efficiency: None,
        network: links.as_ref(),
        framework,
        production_layout: production_layout && measured.is_none(),
    };
    let f = match measured {
        Some(m) => forecast::forecast_measured(&req, m)?,
        None => forecast::forecast(&req, fit)?,
    };
    let tokens: f64 = phases.iter().map(Phase::tokens).sum();
    let peak = hw.peak_flops(dtype)?;
    let model_flops = plan.model_flops(&report)?;
    let run_mfu = |step_seconds: f64| {
        let seconds = step_seconds / tokens * report.tokens;
        (model_flops / (chips * peak * seconds)).min(1.0)
    };
    let mfu = run_mfu(f.step_seconds);
    let band = f.efficiency.band;
    let (mfu_low, mfu_high) = if measured.is_some() {
        (mfu, mfu)
    } else {
        (
            run_mfu(f.step_seconds * band.high),
            run_mfu(f.step_seconds * band.low),
        )
    };
    notes.push(format!("GEMM rates: {}", f.rate_source));
    // The search chose the layout on catalog hardware: the layout gap applies.
    let searched = measured.is_none() && !constraints.fixes_layout();
    if searched && !production_layout && f.efficiency.layout_gap < 1.0 {
        notes.push(format!(
            "layout left to the search: its time is divided by the layout gap {:.3} (the production runs that state their layout ran that much slower than the best layout flopcal finds for them; `flopcal calibrate` prints it)",
            f.efficiency.layout_gap
        ));
    }
    // With no stack named and no layout given, the stack seen in production runs on
    // this class that the forecast took the run to use.
    let free_stack = f
        .efficiency
        .free_stack
        .as_deref()
        .and_then(|s| crate::framework::lookup(s).ok().flatten());
    if let Some(st) = free_stack {
        notes.push(format!(
            "stack unknown and no layout given: taken to be {}, the one stack seen in production runs on {} (its recomputation, loss and overlaps; the factor is the MFU source's); name --framework to change it",
            st.id, hw.class
        ));
    }
    let stack = framework.or(free_stack);
    if searched && production_layout {
        let recompute = f.best.layout.recompute;
        notes.push(format!(
            "layout left to the search, priced as a production run's: recomputation held to `{}` ({}), and the step is the best such layout's divided by the layout gap {:.3} (the production runs that state their layout ran that much slower than the best layout flopcal finds for them so; `flopcal calibrate` prints it); give --tp, --pp, --recompute, ... to price the layout you will run",
            recompute.as_str(),
            match stack {
                Some(st) if recompute != forecast::PRODUCTION_RECOMPUTE => {
                    format!("what {} states for its production runs", st.id)
                }
                _ => "the production runs that state their recomputation all recompute activations: Pythia's GPT-NeoX configs every layer, MT-NLG in full, PaLM 89 of 118 layers".to_string(),
            },
            f.efficiency.layout_gap
        ));
    }
    if let Some(st) = stack.filter(|st| measured.is_none() && st.unfused_loss_on(&hw.class)) {
        notes.push(format!(
            "loss: {} on {} runs the unfused vocabulary-parallel cross entropy on fp32 logits, {:.0} bytes per logit at HBM speed (megatron/mpu/cross_entropy.py: a cast and five passes forward, two backward), where a fused kernel moves 20",
            st.id,
            hw.class,
            crate::op_rate::UNFUSED_LOSS_BYTES
        ));
    }
    if let Some(st) = stack.filter(|st| {
        measured.is_none()
            && st.overlaps_tp_on(&hw.class)
            && f.best.layout.tp > 1
            && f.best.layout.sequence_parallel
    }) {
        notes.push(format!(
            "tensor-parallel traffic overlapped: {} on {} splits each sequence-parallel all-gather and reduce-scatter into tp chunks pipelined with the GEMM it feeds (Transformer Engine userbuffers, on in NVIDIA's H100 and B200 recipes); one chunk stays exposed, and what the GEMMs cannot cover",
            st.id, hw.class
        ));
    }
    if own_system {
        notes.push(
            "this machine as profiled: its measured FMA peak and memory bandwidth, one device; usable memory 95% of capacity".into(),
        );
    } else {
        if let (Some(l), Some(sys)) = (&links, &sys) {
            notes.push(l.describe(sys));
        }
        notes.push(format!(
            "links at {:.0}% and HBM at {:.0}% of nominal bandwidth (flopcal assumptions); usable memory 95% of capacity",
            fit::LINK_EFFICIENCY * 100.0,
            fit::HBM_EFFICIENCY * 100.0
        ));
        if sys.as_ref().is_some_and(System::fp8_gemms) {
            notes.push(
                "FP8: weight GEMMs at the FP8 ceiling, the attention core and the vocabulary projection (outside Transformer Engine in Megatron-Core) at their 16-bit rate; each GEMM input and output gradient cast to FP8 with a transposed copy, 4 bytes per element at the achievable HBM bandwidth (flopcal assumption)".into(),
            );
        }
    }
    if measured.is_none() {
        notes.push(format!(
            "band: {:.0}% prediction interval of the step time, x{:.2} to x{:.2}: normal on the root-mean-square leave-one-source-out error of {} published runs {}",
            band.level * 100.0,
            band.low,
            band.high,
            band.residuals,
            match framework {
                _ if band.layout_unknown => "predicted with neither their layout nor their framework (production training runs; the best production layout over the layout gap)".to_string(),
                Some(f) if band.own_stack => format!("on {}", f.id),
                Some(_) => format!("predicted with the framework unknown{} (fewer than 3 sources of its own)", on_family(&band, hw)),
                None => format!("predicted with the framework unknown{}", on_family(&band, hw)),
            }
        ));
        if band.class_spread > 0.0 {
            notes.push(format!(
                "band widened: no published run is on {} hardware, so what not knowing the class adds to the error ({:.2} in ln: published runs predicted from a fit without their whole hardware class, against their source alone left out; `flopcal calibrate` prints it) is added in quadrature",
                hw.class, band.class_spread
            ));
        }
    }
    Ok(Some(Modelled {
        source: MfuSource::Modelled {
            mfu,
            mfu_low,
            mfu_high,
            basis: f.efficiency.basis.clone(),
        },
        forecast: f,
        config,
        notes,
    }))
}

/// ` on gpu hardware` where a band rests on one device family's rows, else nothing.
fn on_family(band: &fit::StepBand, hw: &Hardware) -> String {
    if band.one_family {
        format!(" on {} hardware", fit::family(&hw.class))
    } else {
        String::new()
    }
}

fn phases_of(plan: &Plan) -> &Vec<Phase> {
    static NONE: Vec<Phase> = Vec::new();
    match &plan.workload {
        Workload::Config { phases, .. } => phases,
        _ => &NONE,
    }
}

/// What `plan` (and the step side of `estimate`) needs from the flags.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    /// What is trained.
    pub plan: Plan,
    /// Catalog hardware.
    pub hw: Hardware,
    /// Chips.
    pub chips: f64,
    /// Training dtype.
    pub dtype: Option<String>,
    /// Fixed layout dimensions.
    pub constraints: Constraints,
    /// `--seq`, for `--params`.
    pub seq: Option<u64>,
    /// On-demand price per chip-hour overriding the catalog's.
    pub price: Option<f64>,
    /// A measured network (`--network`).
    pub network: Option<NetworkFile>,
    /// `--framework` (`None`: unknown).
    pub framework: Option<&'static crate::framework::Framework>,
    /// The step model's fit with a team's own runs (`--own-runs`); `None`: the embedded fit.
    pub fit: Option<fit::StepFit>,
    /// A global batch and no token budget (`plan --batch B`): layouts are ranked by
    /// step time, and the run's hours and dollars are left out.
    pub per_step: bool,
    /// Lines from reading the flags (where an HF config's sequence length came from),
    /// listed with the plan's assumptions.
    pub notes: Vec<String>,
}

/// One ranked layout with its run time and cost.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanRow {
    /// The layout.
    pub layout: crate::layout::Layout,
    /// Seconds per step (of the schedule's largest phase).
    pub step_time_s: f64,
    /// By part.
    pub step_breakdown_s: crate::step::Breakdown,
    /// Memory per device, bytes.
    pub memory_per_device_bytes: crate::memory::Memory,
    /// Model FLOPs utilisation.
    pub mfu: f64,
    /// Hardware FLOPs utilisation.
    pub hfu: f64,
    /// Tokens per second.
    pub tokens_per_s: f64,
    /// The largest part of the step.
    pub bottleneck: String,
    /// Wall-clock hours of the whole schedule (null for a per-step plan: no token
    /// budget was given).
    pub wall_hours: Option<f64>,
    /// Chip-hours (null for a per-step plan); kept under this name for scripts, as
    /// `chip_hours`.
    pub device_hours: Option<f64>,
    /// Chip-hours (null for a per-step plan).
    pub chip_hours: Option<f64>,
    /// Training days (null for a per-step plan).
    pub training_days: Option<f64>,
    /// On-demand cost, USD.
    pub cost_usd: Option<f64>,
    /// Other layouts with the same prediction, folded into this row.
    pub equivalent_layouts: Vec<crate::layout::Layout>,
}

/// `plan`'s result.
#[derive(Debug, Clone)]
pub struct PlanReport {
    /// Model name.
    pub model: String,
    /// Hardware name.
    pub hardware: String,
    /// Chips.
    pub devices: u64,
    /// Ranked layouts.
    pub rows: Vec<PlanRow>,
    /// The search of the schedule's largest phase.
    pub search: crate::search::SearchResult,
    /// What the GEMM efficiency rests on.
    pub basis: String,
    /// Assumptions.
    pub notes: Vec<String>,
}

/// Search the layouts of `inp`, keeping the `top` fastest.
pub fn plan(inp: &PlanInputs, top: usize) -> Result<PlanReport, ModelError> {
    let m = modelled(
        &inp.plan,
        &inp.hw,
        inp.chips,
        inp.dtype.as_deref(),
        &SearchOptions {
            constraints: inp.constraints,
            keep: top,
            seq: inp.seq,
            network: inp.network.as_ref(),
            framework: inp.framework,
            fit: inp.fit.as_ref(),
            production_layout: false,
        },
    )?
    .ok_or_else(|| {
        ModelError::InvalidInput(format!(
            "plan needs a catalog accelerator with memory bandwidth and link tiers and a whole --devices count (`{}` with {} chips has not)",
            inp.hw.name, inp.chips
        ))
    })?;
    let f = &m.forecast;
    let best_step = f.best.step_time_s;
    let dominant = f
        .phases
        .iter()
        .max_by(|a, b| a.phase.tokens().total_cmp(&b.phase.tokens()))
        .ok_or_else(|| ModelError::InvalidInput("empty schedule".into()))?;
    let price = inp.price.or_else(|| inp.hw.price_per_chip_hour(false));
    let rows = dominant
        .search
        .plans
        .iter()
        .map(|p| {
            let wall = (!inp.per_step).then(|| p.step_time_s * f.step_seconds / best_step / 3600.0);
            let dev = wall.map(|w| w * inp.chips);
            PlanRow {
                layout: p.layout,
                step_time_s: p.step_time_s,
                step_breakdown_s: p.step_breakdown_s,
                memory_per_device_bytes: p.memory_per_device_bytes,
                mfu: p.mfu,
                hfu: p.hfu,
                tokens_per_s: p.tokens_per_s,
                bottleneck: p.bottleneck.clone(),
                wall_hours: wall,
                device_hours: dev,
                chip_hours: dev,
                training_days: wall.map(|w| w / 24.0),
                cost_usd: price.zip(dev).map(|(c, d)| c * d),
                equivalent_layouts: p.equivalent_layouts.clone(),
            }
        })
        .collect();
    Ok(PlanReport {
        model: m.config.name.clone(),
        hardware: inp.hw.name.clone(),
        devices: inp.chips as u64,
        rows,
        search: dominant.search.clone(),
        basis: f.efficiency.basis.clone(),
        notes: inp.notes.iter().chain(&m.notes).cloned().collect(),
    })
}
