//! From the step model to a whole run: the best layout (searched under the caller's
//! fixed dimensions) for every phase of a schedule, the run's time and MFU, and the
//! calibrated GEMM efficiency it rests on.

use serde::Serialize;

use crate::catalog::Hardware;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::flops::{Phase, Recompute};
use crate::framework::Framework;
use crate::gemm_rate::{Gemm, MeasuredTable, RateSource, ShapeModel};
use crate::layout::{
    check_batch, check_devices, check_experts, check_heads, check_stages, Attention,
};
use crate::network::MeasuredLinks;
use crate::op_rate::OpTable;
use crate::search::{search, Constraints, SearchResult};
use crate::stack::{self, Chosen, StepBand};
use crate::step::{usable_memory, Batch, Efficiency, Prediction, StepModel};
use crate::system::{System, GIB};

/// What to forecast.
#[derive(Debug, Clone)]
pub struct ForecastRequest<'a> {
    /// The architecture.
    pub cfg: &'a ModelConfig,
    /// The schedule (each phase: steps × global batch × seq).
    pub phases: &'a [Phase],
    /// Catalog hardware.
    pub hw: &'a Hardware,
    /// Training dtype (default: the hardware's).
    pub dtype: Option<&'a str>,
    /// Chips.
    pub devices: u64,
    /// Fixed layout dimensions.
    pub constraints: Constraints,
    /// Measured GEMM rates (a profile); `None`: the fitted shape model.
    pub rates: Option<RateSource>,
    /// Plans to keep per phase.
    pub keep: usize,
    /// Factor on GEMM rates to use instead of the fitted one.
    pub gemm_efficiency: Option<f64>,
    /// A measured network (`--network`) in place of one link tier's catalog figures.
    pub network: Option<&'a MeasuredLinks>,
    /// The software stack (`--framework`); `None`: unknown.
    pub framework: Option<&'a Framework>,
    /// With no layout dimension given, price the layout a production run would take
    /// ([`PRODUCTION_RECOMPUTE`]) rather than every layout (`plan` lists them all).
    pub production_layout: bool,
}

/// The recomputation a forecast given no layout dimension holds its search to, where
/// it prices a production run ([`ForecastRequest::production_layout`]): the production
/// runs that state their recomputation all recompute activations (Pythia's GPT-NeoX
/// configs checkpoint every layer, MT-NLG recomputes in full, PaLM rematerialised 89
/// of 118 layers). The best layout that recomputes in full steps in 93% to 105% of
/// the time of the layouts the production runs state, where the best of all layouts
/// takes 71% to 98% (`flopcal calibrate` prints the layout gap that is left). A stack
/// may state its own ([`Framework::production_recompute`]).
pub const PRODUCTION_RECOMPUTE: Recompute = Recompute::Full;

/// One phase's plans.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhasePlans {
    /// The phase.
    pub phase: Phase,
    /// The search.
    pub search: SearchResult,
}

/// A forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The best plan of the phase with the most tokens.
    pub best: Prediction,
    /// Every phase, best plans first.
    pub phases: Vec<PhasePlans>,
    /// Seconds of stepping for the whole schedule.
    pub step_seconds: f64,
    /// Run MFU: model FLOPs / (devices × peak × seconds).
    pub mfu: f64,
    /// The GEMM efficiency used and what it was fitted on.
    pub efficiency: Chosen,
    /// Where GEMM rates came from.
    pub rate_source: String,
}

/// Refuse fixed dimensions that cannot work, with the arithmetic.
pub fn check_constraints(
    cfg: &ModelConfig,
    devices: u64,
    batch: u64,
    c: &Constraints,
) -> Result<(), ModelError> {
    let bad = |s: String| Err(ModelError::InvalidInput(s));
    if devices > u64::from(u32::MAX) {
        return bad(format!(
            "--devices {devices} is more than the {} devices a layout degree can describe",
            u32::MAX
        ));
    }
    let t = c.tp.map(u64::from);
    let p = c.pp.map(u64::from);
    let d = c.dp.map(u64::from);
    let cp = c.cp.map(u64::from);
    let ep = c.ep.map(u64::from);
    for (name, v) in [("tp", t), ("cp", cp), ("pp", p), ("dp", d), ("ep", ep)] {
        if v == Some(0) {
            return bad(format!("--{name} must be at least 1"));
        }
    }
    if let Some(e) = ep {
        check_experts(cfg, e, d)?;
    }
    if let (Some(t), Some(p), Some(d)) = (t, p, d) {
        check_devices(t, cp.unwrap_or(1), p, d, devices)?;
    }
    let Some(fixed) = [t, cp, p, d]
        .iter()
        .flatten()
        .try_fold(1u64, |a, x| a.checked_mul(*x))
    else {
        return bad(format!(
            "the fixed degrees multiply to more than --devices {devices}"
        ));
    };
    if !devices.is_multiple_of(fixed) {
        return bad(format!(
            "the fixed degrees multiply to {fixed}, which does not divide --devices {devices} ({devices} / {fixed} = {:.2})",
            devices as f64 / fixed as f64
        ));
    }
    if let Some(p) = p.filter(|&p| p > cfg.layers) {
        return bad(format!(
            "pp {p} exceeds the {} layers: every pipeline stage needs at least one",
            cfg.layers
        ));
    }
    if let (Some(p), false) = (p, c.uneven_stages) {
        check_stages(cfg.layers, p, c.virtual_stages.map_or(1, u64::from))?;
    }
    if let Some(t) = t {
        check_heads(cfg.heads, t)?;
    }
    if let (Some(d), Some(b)) = (d, c.microbatch.map(u64::from)) {
        check_batch(batch, d, b)?;
    }
    Ok(())
}

/// Where GEMM rates come from for catalog hardware without a profile: its measured
/// reference table if the catalog ships one, else the shape model.
pub fn rate_source(hw: &Hardware, dtype: Option<&str>, shape: &ShapeModel) -> RateSource {
    match reference_rates(hw, dtype) {
        Some(t) => RateSource::Reference(t),
        None => RateSource::Shape(shape.clone()),
    }
}

/// Hardware classes FlashAttention does not run on, so every stack materialises the
/// attention scores there: Pascal and Volta GPUs. FlashAttention needs a Turing or
/// Ampere GPU and FlashAttention-2 an Ampere, Ada or Hopper one (Dao-AILab/flash-attention
/// README, installation requirements).
pub const NO_FLASH_CLASSES: &[&str] = &["gpu-2017"];

/// `c` with the dimensions a stack states on `hw`'s class filled in where the caller
/// left them open: the attention kernel (materialised where the hardware runs no flash
/// kernel), and sequence parallelism off.
pub fn with_stack_defaults(
    mut c: Constraints,
    hw: &Hardware,
    framework: Option<&Framework>,
) -> Constraints {
    if c.attention.is_none() {
        c.attention = framework
            .and_then(|f| f.attention_on(&hw.class))
            .map(|r| r.kernel)
            .or_else(|| {
                NO_FLASH_CLASSES
                    .contains(&hw.class.as_str())
                    .then_some(Attention::Materialized)
            });
    }
    if c.sequence_parallel.is_none()
        && framework.is_some_and(|f| f.no_sequence_parallel_on(&hw.class))
    {
        c.sequence_parallel = Some(false);
    }
    c
}

/// Where a forecast gets its factor on GEMM rates for a stack on a hardware class:
/// the calibration ([`crate::fit::StepFit`]) implements it.
pub trait FactorSource {
    /// The factor for hardware of `class` run by `framework` (`None`: unknown), with
    /// its basis and band.
    fn choose(&self, class: &str, framework: Option<&str>) -> Result<Chosen, ModelError>;
}

/// Forecast `req` with the factor on GEMM rates `fit` gives its stack on the
/// hardware's class.
pub fn forecast(req: &ForecastRequest<'_>, fit: &dyn FactorSource) -> Result<Forecast, ModelError> {
    let sys = System::from_hardware(req.hw, req.dtype)?;
    let mut chosen = fit.choose(&req.hw.class, req.framework.map(|f| f.id.as_str()))?;
    // No layout and no stack named: a production run by an unknown team, so the
    // stacks seen in production runs on this class, not the tuned benchmarks.
    if let (false, Some((v, basis))) = (req.constraints.fixes_layout(), chosen.free_factor.take()) {
        chosen.gemm_efficiency = v;
        chosen.basis = basis;
    }
    if let Some(g) = req.gemm_efficiency {
        chosen.gemm_efficiency = g;
    }
    let shape = stack::shape_model(&sys);
    let rates = match &req.rates {
        Some(r) => r.clone(),
        None => rate_source(req.hw, req.dtype, &shape),
    };
    let mut req = req.clone();
    // With the stack unknown too, the run is taken to use the stack seen in production
    // runs on this class, where there is one: its recomputation, loss and overlaps.
    // `chosen.free_stack` then says which stack the forecast took.
    if req.framework.is_some() || !req.production_layout || req.constraints.fixes_layout() {
        chosen.free_stack = None;
    }
    if let Some(taken) = chosen.free_stack.as_deref() {
        req.framework = crate::framework::lookup(taken).ok().flatten();
    }
    req.constraints = with_stack_defaults(req.constraints, req.hw, req.framework);
    let eff = stack::stack_efficiency(chosen.gemm_efficiency, req.framework, &req.hw.class);
    run(&req, &sys, &rates, &shape, eff, None, chosen)
}

/// What a profile of the device measured, for [`forecast_measured`].
#[derive(Debug, Clone)]
pub struct Measured {
    /// The device as measured (its FMA peak, memory, measured bandwidth, no network
    /// beyond one device); `None`: the catalog row of [`Request::hw`].
    pub system: Option<System>,
    /// The profile's GEMM rates.
    pub rates: MeasuredTable,
    /// Its memory-bound op times.
    pub ops: OpTable,
}

/// Forecast `req` from a profile of the device: GEMM rates from its measured table
/// (rate source #1; the shape model under the device's ceiling only for a table that
/// cannot answer; no fitted factor), memory-bound ops from its op table where it
/// measured them.
/// On the measured system itself, its bandwidth is an achieved one (no efficiency on
/// top); on a catalog row, the stated link and HBM efficiencies apply.
pub fn forecast_measured(req: &ForecastRequest<'_>, m: &Measured) -> Result<Forecast, ModelError> {
    let (sys, eff) = match &m.system {
        Some(s) => {
            s.check()?;
            (
                s.clone(),
                Efficiency {
                    link: stack::LINK_EFFICIENCY,
                    hbm: 1.0,
                    gemm: 1.0,
                    dp_overlap: true,
                    tp_overlap: false,
                    unfused_loss: false,
                },
            )
        }
        None => (
            System::from_hardware(req.hw, req.dtype)?,
            stack::efficiency(1.0),
        ),
    };
    let shape = stack::shape_model(&sys);
    let chosen = Chosen {
        gemm_efficiency: 1.0,
        low: 1.0,
        high: 1.0,
        basis: format!(
            "GEMM rates and {} memory-bound op time(s) measured by the profile ({} GEMM shapes, interpolated); no fitted parameter (the shape model at the device's peak answers only shapes the table cannot)",
            m.ops.points.len(),
            m.rates.points.len(),
        ),
        band: StepBand::none(),
        layout_gap: 1.0,
        free_band: StepBand::none(),
        free_factor: None,
        free_stack: None,
    };
    let rates = RateSource::Profile(m.rates.clone());
    run(req, &sys, &rates, &shape, eff, Some(&m.ops), chosen)
}

/// The recomputation of a production run on `framework` (`None`: unknown): the one
/// the stack states, else [`PRODUCTION_RECOMPUTE`].
pub fn production_recompute(framework: Option<&Framework>) -> Recompute {
    framework
        .and_then(Framework::stated_production_recompute)
        .unwrap_or(PRODUCTION_RECOMPUTE)
}

/// `req`'s constraints, held to its stack's [`production_recompute`] where it prices a
/// production run and fixes no layout dimension.
fn production_constraints(req: &ForecastRequest<'_>) -> Constraints {
    if req.production_layout && !req.constraints.fixes_layout() {
        Constraints {
            recompute: Some(production_recompute(req.framework)),
            ..req.constraints
        }
    } else {
        req.constraints
    }
}

fn run(
    req: &ForecastRequest<'_>,
    sys: &System,
    rates: &RateSource,
    shape: &ShapeModel,
    eff: Efficiency,
    ops: Option<&OpTable>,
    chosen: Chosen,
) -> Result<Forecast, ModelError> {
    if req.phases.is_empty() {
        return Err(ModelError::InvalidInput(
            "a training schedule needs at least one phase".into(),
        ));
    }
    let free = !req.constraints.fixes_layout();
    let constraints = production_constraints(req);
    let mut phases = vec![];
    let (mut seconds, mut model_flops) = (0.0, 0.0);
    let mut best: Option<(f64, Prediction)> = None;
    for ph in req.phases {
        check_constraints(req.cfg, req.devices, ph.batch, &constraints)?;
        let mut m =
            StepModel::new(req.cfg, sys, rates, shape, eff, ph.seq).with_network(req.network);
        if let Some(o) = ops {
            m = m.with_ops(o);
        }
        let batch = Batch {
            global_batch: ph.batch,
            seq: ph.seq,
        };
        let mut r = search(&m, req.devices, batch, &constraints, req.keep.max(1))?;
        // A stack's own production recomputation that fits no layout gives way to the
        // default, which needs the least memory.
        if r.plans.is_empty()
            && constraints.recompute != req.constraints.recompute
            && constraints.recompute != Some(PRODUCTION_RECOMPUTE)
        {
            let fallback = Constraints {
                recompute: Some(PRODUCTION_RECOMPUTE),
                ..constraints
            };
            r = search(&m, req.devices, batch, &fallback, req.keep.max(1))?;
        }
        let Some(top) = r.plans.first().cloned() else {
            return Err(no_plan(req, sys, ph, &r));
        };
        seconds += ph.steps as f64 * top.step_time_s;
        model_flops += ph.steps as f64 * top.model_flops_per_step;
        let tokens = ph.tokens();
        if best.as_ref().is_none_or(|(t, _)| tokens > *t) {
            best = Some((tokens, top));
        }
        phases.push(PhasePlans {
            phase: *ph,
            search: r,
        });
    }
    let best = best.map(|b| b.1).ok_or_else(|| {
        ModelError::InvalidInput("a training schedule needs at least one phase".into())
    })?;
    // No layout dimension given: the search's best layout is faster than the layouts
    // production runs chose; the step is that layout's divided by the layout gap.
    let mut chosen = chosen;
    if free {
        seconds /= chosen.layout_gap;
        chosen.band = chosen.free_band;
    }
    let mut rate_source = rates.describe();
    if matches!(rates, RateSource::Shape(_)) {
        if let Ok((_, ceiling)) = req.hw.gemm_ceiling(req.dtype) {
            rate_source.push_str(&format!("; ceiling: {ceiling}"));
        }
    }
    if let Some(o) = ops.filter(|o| !o.points.is_empty()) {
        rate_source.push_str(&format!("; memory-bound op times: {}", o.source));
    }
    Ok(Forecast {
        best,
        phases,
        step_seconds: seconds,
        mfu: model_flops / (req.devices as f64 * sys.peak_flops * seconds),
        efficiency: chosen,
        rate_source,
    })
}

/// The hardware's measured reference GEMM table for `dtype` (the rate source preferred
/// over the shape model; the fitted factor comes on top), if the catalog ships one.
///
/// The table gives how the rate varies with shape; the chip's cited GEMM ceiling for
/// that dtype ([`Hardware::gemm_ceiling`]) sets its level: every point is scaled by
/// ceiling ÷ the table's best. Two measurements of one chip can disagree: OpenXLA's
/// B200 table peaks at 804 TFLOP/s (its own GEMM emitter) where torch.matmul reaches
/// 1,745, and the stacks fitted here run cuBLAS. Without a cited ceiling the table's
/// best is the ceiling and nothing changes.
pub fn reference_rates(hw: &Hardware, dtype: Option<&str>) -> Option<MeasuredTable> {
    let want = hw.dtype_or_default(dtype);
    let t = hw.reference_gemm()?;
    let points: Vec<(Gemm, f64)> = t
        .points
        .iter()
        .filter(|p| p.dtype.eq_ignore_ascii_case(&want))
        .map(|p| {
            (
                Gemm {
                    batch: p.b,
                    m: p.m,
                    n: p.n,
                    k: p.k,
                },
                p.flops,
            )
        })
        .collect();
    let best = points.iter().map(|p| p.1).fold(0.0, f64::max);
    if points.is_empty() || best <= 0.0 {
        return None;
    }
    let ceiling = hw.gemm_ceiling(dtype).map_or(best, |c| c.0);
    let scale = ceiling / best;
    let source = if (scale - 1.0).abs() < 1e-9 {
        t.source.clone()
    } else {
        format!(
            "{}; scaled by {scale:.3} so its best ({:.0} TFLOP/s) meets the chip's cited {want} GEMM ceiling ({:.0} TFLOP/s): the table sets the shape dependence, the ceiling the level",
            t.source,
            best / 1e12,
            ceiling / 1e12
        )
    };
    Some(MeasuredTable {
        points: points.into_iter().map(|(g, r)| (g, r * scale)).collect(),
        source,
    })
}

fn no_plan(req: &ForecastRequest<'_>, sys: &System, ph: &Phase, r: &SearchResult) -> ModelError {
    let fits_reason = r
        .rejected
        .iter()
        .any(|x| x.reason == "does not fit in memory");
    if let (true, Some(min)) = (fits_reason, r.smallest_memory_bytes) {
        return ModelError::InvalidInput(format!(
            "`{}` fits no layout on {} x {} (batch {} x seq {}): the smallest needs {:.1} GiB per device, {:.1} GiB usable of {:.0} GiB; use more devices or more memory",
            req.cfg.name,
            req.devices,
            req.hw.name,
            ph.batch,
            ph.seq,
            min / GIB,
            usable_memory(sys) / GIB,
            sys.memory_bytes / GIB
        ));
    }
    let why: Vec<String> = r
        .rejected
        .iter()
        .map(|x| format!("{} ({} layouts, e.g. {})", x.reason, x.count, x.example))
        .collect();
    ModelError::InvalidInput(format!(
        "no layout of `{}` runs on {} x {} with batch {}: {}",
        req.cfg.name,
        req.devices,
        req.hw.name,
        ph.batch,
        if why.is_empty() {
            "no candidate".to_string()
        } else {
            why.join("; ")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::fit;

    fn req<'a>(
        cfg: &'a ModelConfig,
        phases: &'a [Phase],
        hw: &'a Hardware,
        n: u64,
    ) -> ForecastRequest<'a> {
        ForecastRequest {
            cfg,
            phases,
            hw,
            dtype: None,
            devices: n,
            constraints: Constraints::default(),
            rates: None,
            keep: 3,
            gemm_efficiency: None,
            network: None,
            framework: None,
            production_layout: false,
        }
    }

    #[test]
    fn megatron_on_a100_runs_its_papers_defaults_unless_told_otherwise() {
        use crate::layout::Attention;
        let cat = Catalog::embedded();
        let (a100, h100) = (
            cat.hardware("a100-80gb").unwrap(),
            cat.hardware("h100").unwrap(),
        );
        let megatron = crate::framework::lookup("megatron").unwrap();
        let tp8 = Constraints {
            tp: Some(8),
            ..Constraints::default()
        };
        let on_a100 = with_stack_defaults(tp8, a100, megatron);
        assert_eq!(on_a100.sequence_parallel, Some(false));
        assert_eq!(on_a100.attention, Some(Attention::Materialized));
        // Asked for, it is kept; on H100, or for another stack, nothing is filled in.
        let asked = Constraints {
            sequence_parallel: Some(true),
            ..tp8
        };
        assert_eq!(
            with_stack_defaults(asked, a100, megatron).sequence_parallel,
            Some(true)
        );
        assert_eq!(
            with_stack_defaults(tp8, h100, megatron).sequence_parallel,
            None
        );
        let deepspeed = crate::framework::lookup("deepspeed").unwrap();
        assert_eq!(
            with_stack_defaults(tp8, a100, deepspeed).sequence_parallel,
            None
        );
        // A default is not a layout dimension: the layout stays the search's.
        assert!(!with_stack_defaults(Constraints::default(), a100, megatron).fixes_layout());
    }

    #[test]
    fn on_volta_every_stack_materialises_attention_unless_asked_for_flash() {
        let cat = Catalog::embedded();
        let open = Constraints::default();
        for name in ["v100", "v100-32gb", "p100-sxm2"] {
            let hw = cat.hardware(name).unwrap();
            for stack in [None, crate::framework::lookup("deepspeed").unwrap()] {
                let c = with_stack_defaults(open, hw, stack);
                assert_eq!(c.attention, Some(Attention::Materialized), "{name}");
                assert!(!c.fixes_layout(), "{name}");
            }
            let asked = Constraints {
                attention: Some(Attention::Flash),
                ..open
            };
            let kept = with_stack_defaults(asked, hw, None).attention;
            assert_eq!(kept, Some(Attention::Flash));
        }
        let a100 = cat.hardware("a100").unwrap();
        assert_eq!(with_stack_defaults(open, a100, None).attention, None);
    }

    #[test]
    fn a_model_too_big_for_the_devices_names_the_smallest_memory() {
        let cat = Catalog::embedded();
        let cfg = cat.model("llama3-405b").unwrap().config();
        let hw = cat.hardware("h100").unwrap();
        let ph = [Phase {
            steps: 10,
            batch: 8,
            seq: 8192,
        }];
        let fit = fit::embedded_parameters().unwrap();
        let e = forecast(&req(&cfg, &ph, hw, 8), fit)
            .unwrap_err()
            .to_string();
        assert!(e.contains("smallest needs") && e.contains("GiB"), "{e}");
    }

    #[test]
    fn fixed_degrees_that_do_not_multiply_to_the_devices_are_refused() {
        let cat = Catalog::embedded();
        let cfg = cat.model("megatron-18.4b").unwrap().config();
        let c = Constraints {
            tp: Some(8),
            pp: Some(4),
            dp: Some(3),
            ..Constraints::default()
        };
        let e = check_constraints(&cfg, 128, 512, &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tp 8 x pp 4 x dp 3 = 96"), "{e}");
        let c = Constraints {
            pp: Some(3),
            ..Constraints::default()
        };
        let e = check_constraints(&cfg, 96, 512, &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not divide the 40 layers"), "{e}");
    }

    #[test]
    fn a_reference_table_keeps_its_shape_dependence_at_the_cited_ceiling() {
        let cat = Catalog::embedded();
        let b200 = cat.hardware("b200").unwrap();
        let raw = b200.reference_gemm().unwrap();
        let t = reference_rates(b200, Some("bf16")).unwrap();
        let (ceiling, _) = b200.gemm_ceiling(Some("bf16")).unwrap();
        let best = t.points.iter().map(|p| p.1).fold(0.0, f64::max);
        assert!((best / ceiling - 1.0).abs() < 1e-9, "{best} vs {ceiling}");
        let raw_best = raw.points.iter().map(|p| p.flops).fold(0.0, f64::max);
        assert!(
            raw_best < 0.5 * ceiling,
            "the raw table peaks at {raw_best}"
        );
        // Every point moves by one factor: the ratios between shapes are the table's.
        for ((g, r), p) in t.points.iter().zip(raw.points.iter()) {
            assert_eq!((g.m, g.n, g.k), (p.m, p.n, p.k));
            assert!((r / p.flops - ceiling / raw_best).abs() < 1e-9);
        }
        assert!(t.source.contains("scaled by"), "{}", t.source);
    }

    #[test]
    fn a_reference_gemm_table_is_preferred_to_the_shape_model() {
        let cat = Catalog::embedded();
        let cfg = cat.model("megatron-7.5b").unwrap().config();
        let b200 = cat.hardware("b200").unwrap();
        assert!(reference_rates(b200, None).is_some());
        let ph = [Phase {
            steps: 10,
            batch: 512,
            seq: 2048,
        }];
        let fit = fit::embedded_parameters().unwrap();
        let f = forecast(&req(&cfg, &ph, b200, 64), fit).unwrap();
        assert!(
            f.rate_source.contains("reference table"),
            "{}",
            f.rate_source
        );
        // OpenXLA publishes no A100 entry: the shape model answers.
        let a100 = cat.hardware("a100").unwrap();
        assert!(reference_rates(a100, None).is_none());
        let g = forecast(&req(&cfg, &ph, a100, 64), fit).unwrap();
        assert!(g.rate_source.contains("shape model"), "{}", g.rate_source);
    }

    #[test]
    fn more_devices_finish_sooner_but_not_for_free() {
        let cat = Catalog::embedded();
        let cfg = cat.model("megatron-7.5b").unwrap().config();
        let hw = cat.hardware("a100-80gb").unwrap();
        let ph = [Phase {
            steps: 1000,
            batch: 512,
            seq: 2048,
        }];
        let fit = fit::embedded_parameters().unwrap();
        let small = forecast(&req(&cfg, &ph, hw, 64), fit).unwrap();
        let big = forecast(&req(&cfg, &ph, hw, 512), fit).unwrap();
        assert!(big.step_seconds < small.step_seconds);
        assert!(big.mfu < small.mfu, "{} vs {}", big.mfu, small.mfu);
    }

    #[test]
    fn a_production_run_with_no_layout_given_recomputes_as_its_stack_does() {
        let cat = Catalog::embedded();
        let cfg = cat.model("megatron-7.5b").unwrap().config();
        let ph = [Phase {
            steps: 1,
            batch: 512,
            seq: 2048,
        }];
        let fit = fit::embedded_parameters().unwrap();
        let a100 = cat.hardware("a100-80gb").unwrap();
        let production = |hw, framework, constraints| {
            let r = ForecastRequest {
                framework,
                constraints,
                production_layout: true,
                ..req(&cfg, &ph, hw, 64)
            };
            forecast(&r, fit).unwrap()
        };
        let open = Constraints::default();
        // A 7.5B model on 64 A100s needs no recomputation, and `plan` (no production
        // layout) finds a faster layout without it.
        let searched = forecast(&req(&cfg, &ph, a100, 64), fit).unwrap();
        assert_eq!(searched.best.layout.recompute, Recompute::None);
        let priced = production(a100, None, open);
        assert_eq!(priced.best.layout.recompute, PRODUCTION_RECOMPUTE);
        assert!(priced.best.step_time_s > searched.best.step_time_s);
        // A stack that states it keeps its activations (TensorFlow 1.x), on its own
        // or as the only stack seen in production on the class (TPU v3), keeps them.
        let tf = crate::framework::lookup("tensorflow").unwrap();
        assert_eq!(
            production(a100, tf, open).best.layout.recompute,
            Recompute::None
        );
        let tpu_v3 = cat.hardware("tpu-v3").unwrap();
        assert_eq!(
            production(tpu_v3, None, open).best.layout.recompute,
            Recompute::None
        );
        // Where keeping every activation fits no layout (GPT-3 175B on 16 GB V100s,
        // where only TensorFlow was seen), the default recomputation gives way.
        let gpt3 = cat.model("gpt3-175b").unwrap().config();
        let v100 = cat.hardware("v100").unwrap();
        let r = ForecastRequest {
            production_layout: true,
            ..req(&gpt3, &ph, v100, 1024)
        };
        assert_eq!(
            forecast(&r, fit).unwrap().best.layout.recompute,
            PRODUCTION_RECOMPUTE
        );
        // A layout dimension given is the user's layout: nothing is held.
        let tp = Constraints {
            tp: Some(1),
            ..open
        };
        assert_eq!(
            production(a100, None, tp).best.layout.recompute,
            Recompute::None
        );
    }
}
