//! The library side of `estimate` and `plan`: the catalog as the flags name it, the
//! MFU an estimate rests on (the step model's best layout where the hardware has the
//! figures it needs, the older whole-run fit where it does not), and the table the
//! no-argument run ends with.

use std::path::{Path, PathBuf};

use comfy_table::{Cell, CellAlignment};
use flopcal_model::calibrate::Fit;
use flopcal_model::catalog::{Catalog, CATALOG_ENV};
use flopcal_model::cost::{estimate, Assumptions, Estimate, MfuSource, Plan, Workload};
use flopcal_model::fit;
use flopcal_model::flops::Phase;
use flopcal_model::forecast::{self, Forecast};
use flopcal_model::layout::Attention;
use flopcal_model::network::{MeasuredLinks, MeasuredNetwork};
use flopcal_model::published::StepRun;
use flopcal_model::search::Constraints;
use flopcal_model::system::System;
use flopcal_model::{Hardware, ModelConfig};

use crate::efficiency::{self, EfficiencyError, KernelEfficiency};
use crate::render;
use crate::render::table::{human_hours, num, outln, pct, usd};
use crate::Result;
use flopcal_bench::results::ResultFile;

/// The embedded catalog, overridden by `--catalog` or `$FLOPCAL_CATALOG`.
pub fn load_catalog(flag: Option<&Path>) -> Result<Catalog> {
    let env = std::env::var_os(CATALOG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = flag.map(Path::to_path_buf).or(env);
    Ok(Catalog::load(path.as_deref())?)
}

/// A team's own runs (`--own-runs FILE`), checked against `cat`; none without the flag.
pub fn load_runs(flag: Option<&Path>, cat: &Catalog) -> Result<Vec<StepRun>> {
    let Some(path) = flag else {
        return Ok(vec![]);
    };
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    Ok(flopcal_model::published::parse_user_runs(
        &text,
        &format!("--own-runs {}", path.display()),
        cat,
        flopcal_model::fit::published_runs(),
    )?)
}

/// The step model's fit with the runs of `--own-runs` beside the published ones, or
/// `None` without any (the embedded fit is then used).
pub fn own_fit(flag: Option<&Path>, cat: &Catalog) -> Result<Option<fit::StepFit>> {
    let yours = load_runs(flag, cat)?;
    if yours.is_empty() {
        return Ok(None);
    }
    Ok(Some(fit::fit_parameters_with(cat, &yours)?))
}

/// Hardware standing for the machine a profile measured: its measured peak.
pub fn local_hardware(k: &KernelEfficiency) -> flopcal_model::Hardware {
    let class = if k.device == "cpu" {
        "local-cpu"
    } else {
        "local-gpu"
    };
    let date = k.profile_created_at.get(..7).unwrap_or("-");
    let mut hw = flopcal_model::Hardware::custom(
        &format!("local ({})", k.device_name),
        class,
        &k.dtype,
        k.peak_flops_per_s / 1e12,
        &k.peak_source,
        date,
    );
    hw.description = format!("this machine as profiled ({})", k.profile_run_id);
    hw
}

/// What a profile measured, as the step model reads it ([`modelled_with`]): its GEMM
/// table ([`efficiency::gemm_table`]) and memory-bound op times
/// ([`efficiency::op_table`]) of the profiled dtype, and for this machine (`local`) the
/// device itself: the measured FMA peak, the host's memory and the best bandwidth the
/// profile measured, one device. `None` for this machine when the profile measured
/// no bandwidth or more than one device is asked for (this machine has no network to
/// model).
pub fn measured_from_profile(
    file: &ResultFile,
    k: &KernelEfficiency,
    local: bool,
    chips: f64,
) -> Option<forecast::Measured> {
    let rates = efficiency::gemm_table(file, Some(&k.dtype));
    if rates.points.is_empty() {
        return None;
    }
    let ops = efficiency::op_table(file, Some(&k.dtype));
    let system = if local {
        let bw = efficiency::measured_bandwidth(file)?;
        if chips != 1.0 {
            return None;
        }
        Some(System {
            name: local_hardware(k).name,
            peak_flops: k.peak_flops_per_s,
            gemm_ceiling_flops: None,
            attention_flops: None,
            memory_bytes: file.host.memory_bytes as f64,
            hbm_bw: bw,
            compute_units: None,
            tiers: vec![flopcal_model::system::Tier {
                name: "none (one device)".into(),
                group_size: 0,
                bw: 1.0,
                latency_s: 0.0,
            }],
        })
    } else {
        None
    };
    Some(forecast::Measured { system, rates, ops })
}

/// The published pre-training plan of a catalog model.
pub fn catalog_plan(cat: &Catalog, model: &str) -> Result<Plan> {
    Ok(Plan::published(cat.model(model)?))
}

/// Kernel efficiency of `model` from `file`, or of the profile's own model as a proxy
/// when the file lacks that model's kernels (the quick profile measures BERT-base only).
fn efficiency_for(
    file: &ResultFile,
    plan: &Plan,
) -> std::result::Result<(KernelEfficiency, bool), String> {
    let Workload::Config {
        config,
        phases,
        options,
        ..
    } = &plan.workload
    else {
        return Err("no architecture".into());
    };
    let req = efficiency::KernelWeights {
        config,
        phases,
        options: *options,
        dtype: None,
        peak_flops: None,
    };
    match efficiency::from_profile(file, &req) {
        Ok(k) => Ok((k, false)),
        Err(EfficiencyError::Missing { .. }) => {
            let own = vec![Phase {
                steps: 1,
                batch: file.profile.batch as u64,
                seq: file.profile.seq as u64,
            }];
            let req = efficiency::KernelWeights {
                config: &file.profile.model,
                phases: &own,
                ..req
            };
            efficiency::from_profile(file, &req)
                .map(|k| (k, true))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `plan` on this machine as `file` profiled it, and whether the step model made it:
/// the step model fed by the profile's measured GEMM rates, op times, FMA peak and
/// bandwidth on one device (as `estimate --profile FILE --hardware local` does), or,
/// where the profile cannot feed it (no bandwidth or GEMM table measured), the
/// measured kernel efficiency times the system efficiency fitted on published runs.
fn this_machine(
    file: &ResultFile,
    k: &KernelEfficiency,
    plan: &Plan,
    hw: &Hardware,
    fit: &Fit,
) -> (std::result::Result<Estimate, String>, bool) {
    if let Some(m) = measured_from_profile(file, k, true, 1.0) {
        let search = SearchOptions {
            keep: 1,
            ..SearchOptions::default()
        };
        match modelled_with(plan, hw, 1.0, None, &search, Some(&m)) {
            Ok(Some(md)) => {
                let e = estimate(plan, hw, &Assumptions::new(1.0, md.source));
                return (e.map_err(|e| e.to_string()), true);
            }
            Ok(None) => {}
            Err(e) => return (Err(e.to_string()), true),
        }
    }
    let e = fit
        .measured_mfu(hw, k.kernel_efficiency)
        .and_then(|m| estimate(plan, hw, &Assumptions::new(1.0, m)))
        .map_err(|e| e.to_string());
    (e, false)
}

/// The end of the no-argument run: BERT-base and BERT-large pre-training on this
/// machine (MFU from the profile just measured) next to TPU v3, A100 and H100
/// (catalog, calibrated MFU), one priced device each, with hours and dollars.
pub fn default_run_table(file: &ResultFile) -> String {
    let mut out = String::new();
    let cat = match load_catalog(None) {
        Ok(c) => c,
        Err(e) => {
            outln!(out, "no estimate table: {e}");
            return out;
        }
    };
    let fit = match Fit::from_catalog(&cat) {
        Ok(f) => f,
        Err(e) => {
            outln!(out, "no estimate table: {e}");
            return out;
        }
    };
    let mut t = render::table::new(vec![
        "pre-training",
        "hardware",
        "chips",
        "MFU",
        "wall-clock",
        "chip-hours",
        "on demand",
        "preemptible",
    ]);
    let r = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    let mut notes: Vec<String> = vec![];
    for model in ["bert-base", "bert-large"] {
        let plan = match catalog_plan(&cat, model) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("{model}: {e}"));
                continue;
            }
        };
        let mut rows: Vec<(String, std::result::Result<Estimate, String>)> = vec![];
        match efficiency_for(file, &plan) {
            Ok((k, proxy)) => {
                let hw = local_hardware(&k);
                let (e, stepped) = this_machine(file, &k, &plan, &hw, &fit);
                let label = if proxy {
                    format!("this machine* ({})", k.dtype)
                } else {
                    format!("this machine ({})", k.dtype)
                };
                if stepped {
                    notes.push(format!(
                        "{model} on this machine: the step model on the profile's measured GEMM rates and memory-bound op times{}, its {} GFLOP/s {} FMA peak and measured bandwidth, one device, materialised attention",
                        if proxy {
                            format!(" (* measured on {}'s kernels, interpolated across shapes; `flopcal profile --model {model} --out results/{model}.json` measures its own)", k.profile_model)
                        } else {
                            String::new()
                        },
                        flopcal_bench::report_table::fmt_giga(k.peak_flops_per_s),
                        k.dtype
                    ));
                } else if proxy {
                    notes.push(format!(
                        "* {model} on this machine uses the kernel efficiency of the {} kernels just measured ({:.1}%); profile its own with `flopcal profile --model {model} --out results/{model}.json` and `flopcal estimate --model {model} --profile results/{model}.json`",
                        k.profile_model,
                        k.kernel_efficiency * 100.0
                    ));
                } else {
                    notes.push(format!(
                        "{model} on this machine: kernel efficiency {:.1}% of the measured {} GFLOP/s {} peak; dominant: {}",
                        k.kernel_efficiency * 100.0,
                        flopcal_bench::report_table::fmt_giga(k.peak_flops_per_s),
                        k.dtype,
                        k.dominant(2)
                    ));
                }
                rows.push((label, e));
            }
            Err(why) => notes.push(format!("{model} on this machine: no estimate ({why})")),
        }
        for name in ["tpu-v3", "a100", "h100"] {
            let e = cat
                .hardware(name)
                .map_err(|e| e.to_string())
                .and_then(|hw| {
                    let chips = f64::from(hw.chips_per_device);
                    let mfu = match modelled(
                        &plan,
                        hw,
                        chips,
                        None,
                        &SearchOptions {
                            keep: 1,
                            ..SearchOptions::default()
                        },
                    ) {
                        Ok(Some(m)) => Ok(m.source),
                        Ok(None) => fit.calibrated_mfu(hw).map_err(crate::Error::from),
                        Err(e) => Err(e),
                    };
                    mfu.map_err(|e| e.to_string()).and_then(|m| {
                        estimate(&plan, hw, &Assumptions::new(chips, m)).map_err(|e| e.to_string())
                    })
                });
            rows.push((name.to_string(), e));
        }
        for (label, e) in rows {
            match e {
                Ok(e) => {
                    let hw = if label.starts_with("this machine") {
                        label
                    } else {
                        format!("{} ({})", e.hardware, e.dtype)
                    };
                    // Every figure with its band from the calibrated MFU spread.
                    let band = |mid: String, lo: String, hi: String| {
                        if lo == hi {
                            mid
                        } else {
                            format!("{mid} ({lo}–{hi})")
                        }
                    };
                    t.add_row(vec![
                        Cell::new(&e.model),
                        Cell::new(hw),
                        r(format!("{}", e.devices)),
                        r(band(pct(e.mfu), pct(e.mfu_low), pct(e.mfu_high))),
                        r(band(
                            human_hours(e.wall_hours),
                            human_hours(e.wall_hours_low),
                            human_hours(e.wall_hours_high),
                        )),
                        r(num(Some(e.device_hours))),
                        r(band(
                            usd(e.cost_usd),
                            usd(e.cost_usd_low),
                            usd(e.cost_usd_high),
                        )),
                        r(usd(e.cost_usd_preemptible)),
                    ]);
                }
                Err(why) => notes.push(format!("{model} on {label}: {why}")),
            }
        }
    }
    outln!(
        out,
        "\nEstimated pre-training (BERT's published schedule: 1M steps x 256 sequences, 90% at seq 128, 10% at 512); bands in brackets span the calibrated MFU:"
    );
    outln!(out, "{t}");
    for n in notes {
        outln!(out, "{n}");
    }
    outln!(
        out,
        "MFU: this machine = the step model on what the profile just measured (GEMM rates, memory-bound op times, FMA peak, bandwidth; one device), or where the profile cannot feed it, measured kernel efficiency x system efficiency fitted from published runs; a100 and h100 = the step model's best single-device layout at the GEMM efficiency fitted on published runs of their class; tpu-v3 (no link tiers in the catalog) = the whole-run fit of 2018-19 runs. This machine has no price: `flopcal compare` prices on-prem hardware against the cloud."
    );
    out
}

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
    /// MFU for [`estimate`] (train FLOPs as counted / (devices × peak × time)).
    pub source: MfuSource,
    /// The forecast.
    pub forecast: Forecast,
    /// The architecture the step model ran (`--params` builds one).
    pub config: ModelConfig,
    /// Notes for the assumptions list.
    pub notes: Vec<String>,
}

/// A `flopcal comm` result file read for `--network`.
#[derive(Debug, Clone)]
pub struct NetworkFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its measured α–β lines.
    pub net: MeasuredNetwork,
}

/// Read `--network FILE`: a missing, unreadable or malformed file, or a fit with a zero
/// or negative bandwidth, is one line naming the file and the field (exit 2).
pub fn load_network(path: &Path) -> Result<NetworkFile> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let net = MeasuredNetwork::from_json_str(&text).map_err(|e| crate::Error::BadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(NetworkFile {
        path: path.to_path_buf(),
        net,
    })
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
    pub framework: Option<&'a flopcal_model::framework::Framework>,
    /// The step model's fit with a team's own runs (`--own-runs`); `None`: the embedded fit.
    pub fit: Option<&'a fit::StepFit>,
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
) -> Result<Option<Modelled>> {
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
) -> Result<Option<Modelled>> {
    let SearchOptions {
        constraints,
        keep,
        seq: seq_flag,
        network,
        framework,
        fit: own_fit,
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
                |e| crate::Error::BadFile {
                    path: n.path.clone(),
                    reason: e.to_string(),
                },
            )?,
        ),
        (Some(n), None) => {
            return Err(crate::Error::Usage(format!(
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
                    return Err(crate::Error::Usage(format!(
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
    };
    let f = match measured {
        Some(m) => forecast::forecast_measured(&req, m)?,
        None => forecast::forecast(&req, fit)?,
    };
    let tokens: f64 = phases.iter().map(Phase::tokens).sum();
    let peak = hw.peak_flops(dtype)?;
    let run_mfu = |step_seconds: f64| {
        let seconds = step_seconds / tokens * report.tokens;
        (report.train_flops / (chips * peak * seconds)).min(1.0)
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
    if measured.is_none() && !constraints.fixes_layout() && f.efficiency.layout_gap < 1.0 {
        notes.push(format!(
            "layout left to the search: the step is its best layout's divided by the layout gap {:.3} (the production runs that state their layout ran that much slower than the best layout flopcal finds for them; `flopcal calibrate` prints it); give --tp, --pp, --recompute, ... to price the layout you will run",
            f.efficiency.layout_gap
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
                "FP8: weight GEMMs at the FP8 ceiling, the attention core at its 16-bit rate; each GEMM input and output gradient cast to FP8 with a transposed copy, 4 bytes per element at the achievable HBM bandwidth (flopcal assumption)".into(),
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
                _ if band.layout_unknown => "predicted with neither their layout nor their framework (production training runs; the search's best layout over the layout gap)".to_string(),
                Some(f) if band.own_stack => format!("on {}", f.id),
                Some(_) => format!("predicted with the framework unknown{} (fewer than 3 sources of its own)", on_family(&band, hw)),
                None => format!("predicted with the framework unknown{}", on_family(&band, hw)),
            }
        ));
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
    pub framework: Option<&'static flopcal_model::framework::Framework>,
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
    pub layout: flopcal_model::layout::Layout,
    /// Seconds per step (of the schedule's largest phase).
    pub step_time_s: f64,
    /// By part.
    pub step_breakdown_s: flopcal_model::step::Breakdown,
    /// Memory per device, bytes.
    pub memory_per_device_bytes: flopcal_model::memory::Memory,
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
    pub equivalent_layouts: Vec<flopcal_model::layout::Layout>,
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
    pub search: flopcal_model::search::SearchResult,
    /// What the GEMM efficiency rests on.
    pub basis: String,
    /// Assumptions.
    pub notes: Vec<String>,
}

/// Search the layouts of `inp`, keeping the `top` fastest.
pub fn plan(inp: &PlanInputs, top: usize) -> Result<PlanReport> {
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
        },
    )?
    .ok_or_else(|| {
        crate::Error::Usage(format!(
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
        .ok_or_else(|| crate::Error::Usage("empty schedule".into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed quick profile of the 2-core EPYC.
    fn quick_profile() -> ResultFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/amd-epyc-2core-quick.json");
        flopcal_bench::results::load(&path).unwrap()
    }

    #[test]
    fn the_default_run_estimates_this_machine_with_the_step_model_on_the_profile() {
        let file = quick_profile();
        let table = default_run_table(&file);
        assert!(
            table.contains(
                "bert-base on this machine: the step model on the profile's measured GEMM rates"
            ),
            "{table}"
        );
        assert!(
            !table.contains("on this machine: kernel efficiency"),
            "{table}"
        );
        assert!(
            !table.contains("uses the kernel efficiency of the"),
            "{table}"
        );
        // The row is the step model's prediction, the one `validate` checks.
        let cat = load_catalog(None).unwrap();
        let plan = catalog_plan(&cat, "bert-base").unwrap();
        let (k, _) = efficiency_for(&file, &plan).unwrap();
        let hw = local_hardware(&k);
        let m = measured_from_profile(&file, &k, true, 1.0).unwrap();
        let search = SearchOptions {
            keep: 1,
            ..SearchOptions::default()
        };
        let md = modelled_with(&plan, &hw, 1.0, None, &search, Some(&m))
            .unwrap()
            .unwrap();
        let fit = Fit::from_catalog(&cat).unwrap();
        let (e, stepped) = this_machine(&file, &k, &plan, &hw, &fit);
        assert!(stepped);
        let e = e.unwrap();
        let MfuSource::Modelled { mfu, .. } = md.source else {
            panic!("not modelled");
        };
        let got = e.mfu.unwrap();
        assert!((got - mfu).abs() < 1e-12, "{got} vs {mfu}");
    }

    #[test]
    fn a_profile_without_bandwidth_falls_back_to_the_kernel_efficiency_and_says_so() {
        // Only GEMMs: no kernel that moved bytes, so no bandwidth for the step model.
        let mut file = quick_profile();
        file.benchmarks.retain(|b| b.kernel == "matmul");
        let table = default_run_table(&file);
        assert!(
            table.contains("bert-base on this machine: kernel efficiency"),
            "{table}"
        );
    }
}
