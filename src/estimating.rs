//! An estimate from a plain [`EstimateRequest`]: the plan (what is trained), the
//! hardware (catalog, a profile, or this machine profiled now), the MFU (the step
//! model, a measured kernel efficiency, or a given figure), then hours, dollars, energy
//! and the assumptions behind them. `estimate`, `plan` and `compare` build the request
//! from their flags and render what comes back.

use std::path::{Path, PathBuf};

use flopcal_model::catalog::{Catalog, Unit};
use flopcal_model::cost::{
    estimate, relied_on, Assumption, Assumptions, Estimate, MfuSource, Plan, Workload,
};
use flopcal_model::flops::{FlopOptions, Phase, Recompute};
use flopcal_model::layout::{block_recompute, Attention, Layout, Zero};
use flopcal_model::memory::Memory;
use flopcal_model::prices::{price_ages, PriceAge};
use flopcal_model::search::Constraints;
use flopcal_model::step::Breakdown;
use flopcal_model::{calibrate::Fit, ModelConfig};

use crate::efficiency::{self, EfficiencyError, KernelEfficiency};
use crate::model_spec::{count, opt_count, run_date, ModelSpec, PriceSpec};
use crate::planning::{load_catalog, local_hardware};
use crate::{Error, Result};
use flopcal_bench::device::DeviceChoice;
use flopcal_bench::results::ResultFile;

/// What to estimate: the model, the run, the hardware, the layout dimensions it
/// fixes, prices and costs. The plain request behind `estimate`'s flags (which
/// `plan` and `compare` share); each field is the flag of the same name.
#[derive(Debug, Clone)]
pub struct EstimateRequest {
    /// Which model: --model, --hf-config or a custom shape, each field overridable.
    pub model: ModelSpec,
    /// Non-embedding parameters N, for a 6·N·D estimate without an architecture (e.g. 1.5e9).
    pub params: Option<f64>,
    /// Training tokens D (e.g. 3e11).
    pub tokens: Option<f64>,
    /// Optimizer steps (with --batch; tokens = steps × batch × seq).
    pub steps: Option<f64>,
    /// Sequences per step (global batch).
    pub batch: Option<f64>,
    /// Activation recomputation: counted in the training FLOPs and fixed in the layout
    /// (unset: searched, and the FLOPs counted without recomputation).
    pub recompute: Option<Recompute>,
    /// With full recomputation, only this many layers per device recomputed.
    pub recompute_layers: Option<u32>,
    /// Tensor-parallel degree (unset: searched within the scale-up domain).
    pub tp: Option<u32>,
    /// Context-parallel degree: each rank holds seq / cp positions of every sequence
    /// and passes keys and values around a ring for attention, for sequences whose
    /// activations fit no other way (default 1; not searched).
    pub cp: Option<u32>,
    /// Pipeline stages (unset: searched among divisors of the layers).
    pub pp: Option<u32>,
    /// Expert-parallel degree of a mixture of experts (unset: searched).
    pub ep: Option<u32>,
    /// Data-parallel degree (unset: devices / (tp x cp x pp)).
    pub dp: Option<u32>,
    /// Micro-batch, sequences (unset: searched).
    pub microbatch: Option<u32>,
    /// Virtual pipeline stages per device, interleaved 1F1B (unset: searched).
    pub virtual_stages: Option<u32>,
    /// Sequence parallelism on (`--sequence-parallel` or `=true`) or off (`=false`);
    /// unset: searched.
    pub sequence_parallel: Option<bool>,
    /// Optimizer sharding: 0 none, 1 ZeRO-1 / distributed optimizer, 3 ZeRO-3 / FSDP
    /// (unset: searched).
    pub zero: Option<u8>,
    /// Attention kernel (unset: what --framework runs on the hardware, else searched).
    pub attention: Option<Attention>,
    /// The software stack that will run the job: megatron (also nemo,
    /// megatron-bridge), deepspeed (also gpt-neox), fsdp (also pytorch, torchtitan),
    /// jax, tensorflow (also tf-tpu), or unknown. The estimate uses that stack's
    /// calibrated factor on GEMM rates for the hardware (see `flopcal calibrate`);
    /// unknown uses the stacks seen on that hardware, with a wider band.
    pub framework: String,
    /// Fraction of wall-clock time that makes progress (after failures, restarts and
    /// evaluation), in (0, 1]: wall-clock = steps x step time / goodput. Default: 0.9,
    /// from the Llama 3 paper's >90% effective training time.
    pub goodput: Option<f64>,
    /// Fraction of positions through the vocabulary projection (BERT's MLM: 0.15).
    pub vocab_fraction: f64,
    /// Catalog hardware (e.g. tpu-v3, v100, a100, h100), or `local`: this machine,
    /// measured by --profile FILE or, without one, by a quick profile run now. With
    /// --profile alone the hardware is the machine the profile was measured on.
    pub hardware: Option<String>,
    /// A result file of `flopcal profile` for the model: its measured kernel FLOP/s,
    /// weighted by each kernel's share of the training FLOPs, give the kernel
    /// efficiency (MFU = that × the calibrated system efficiency) instead of the
    /// catalog's. Must be of this schema version and of the requested device.
    pub profile: Option<PathBuf>,
    /// Device the profile must come from (and that `--hardware local` profiles).
    pub device: DeviceChoice,
    /// How many --unit the run uses (default: one priced device of the catalog).
    pub devices: Option<f64>,
    /// Unit of --devices.
    pub unit: Unit,
    /// Data type selecting the peak (default: the hardware's, e.g. bf16 on TPUs).
    pub dtype: Option<String>,
    /// Model FLOPs utilisation in (0, 1], instead of the calibrated one (no band).
    pub mfu: Option<f64>,
    /// Measured kernel efficiency in (0, 1] (e.g. from `flopcal profile`): MFU = this ×
    /// the calibrated system efficiency of the hardware's class.
    pub kernel_efficiency: Option<f64>,
    /// On-demand price, USD per chip (GPU) hour, instead of the catalog's.
    pub price: Option<f64>,
    /// A `flopcal comm --out` result file: its measured α–β per collective replaces the
    /// catalog's figures of the link tier its group spanned (intra-node: the first,
    /// scale-up tier; inter-node: the scale-out tier).
    pub network: Option<PathBuf>,
    /// Preemptible price, USD per chip (GPU) hour, instead of the catalog's.
    pub preemptible_price: Option<f64>,
    /// Price the fully-loaded cost at the preemptible rate.
    pub preemptible: bool,
    /// Configurations tried, for the fully-loaded cost (default: AI21's 2).
    pub configs: f64,
    /// Runs per configuration, for the fully-loaded cost (default: AI21's 10).
    pub runs: f64,
    /// Power usage effectiveness of the data centre (Strubell et al.: 1.58).
    pub pue: f64,
    /// Electricity price, USD per kWh (adds the energy cost).
    pub kwh_price: Option<f64>,
    /// Emissions, lb CO2e per kWh (Strubell et al., US average: 0.954).
    pub co2_per_kwh: f64,
    /// Power per chip, W, instead of the catalog TDP.
    pub chip_watts: Option<f64>,
    /// Host power (CPU + DRAM) for the whole run, W.
    pub host_watts: f64,
    /// Known wall-clock duration, hours: cost it directly (MFU is then implied).
    pub hours: Option<f64>,
    /// Which provider's published cloud prices to use.
    pub prices: PriceSpec,
    /// Catalog override file (TOML with [[hardware]], [[models]], [[runs]]); also
    /// taken from the FLOPCAL_CATALOG environment variable.
    pub catalog: Option<PathBuf>,
    /// Your own runs (TOML [[runs]] tables in the format of the embedded published
    /// runs: id, hardware, framework, group, devices, batch, model or arch, layout,
    /// published step_time_s / tokens_per_s / gpu_hours with tokens, source, date).
    /// They join the step model's calibration as sources of their own, so the stack
    /// that ran them is fitted from them, pooled with the published runs. See README
    /// "Your own runs". (--runs is the fully-loaded cost's runs per configuration.)
    pub own_runs: Option<PathBuf>,
}

/// The layout dimensions the request fixes.
pub fn constraints(req: &EstimateRequest) -> Constraints {
    Constraints {
        tp: req.tp,
        cp: req.cp,
        pp: req.pp,
        dp: req.dp,
        ep: req.ep,
        microbatch: req.microbatch,
        virtual_stages: req.virtual_stages,
        sequence_parallel: req.sequence_parallel,
        zero: req.zero.and_then(Zero::from_level),
        recompute: req.recompute,
        recompute_layers: req.recompute_layers,
        attention: req.attention,
        // A pipeline degree you name is taken even where it does not divide the layers
        // (the busiest stage sets the pace); the search itself splits evenly.
        uneven_stages: req.pp.is_some(),
    }
}

fn positive(flag: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::Usage(format!(
            "--{flag} must be a positive number (got {v})"
        )))
    }
}

/// Build the plan (what is trained) from the request, with the lines saying where an
/// `--hf-config`'s training length came from and how it was read
/// ([`ModelSpec::resolve_noted`]).
pub fn plan_of(req: &EstimateRequest, cat: &Catalog) -> Result<(Plan, Vec<String>)> {
    let layout_recompute = block_recompute(
        req.recompute,
        req.recompute_layers,
        ("--recompute-layers", "--recompute"),
    )?;
    // Block recomputation's share depends on the pipeline degree: the FLOP count
    // leaves it out, as it does a searched recomputation, and HFU counts it.
    let recompute = match req.recompute_layers {
        Some(_) => Recompute::None,
        None => layout_recompute.unwrap_or(Recompute::None),
    };
    let options = FlopOptions {
        recompute,
        vocab_fraction: req.vocab_fraction,
    };
    if let Some(p) = req.params {
        if req.model.is_given() {
            return Err(Error::Usage("--params is for a 6·N·D estimate without an architecture: drop --model / --hf-config / config flags, or drop --params".into()));
        }
        let tokens = match (req.tokens, req.steps, req.batch) {
            (Some(t), _, _) => positive("tokens", t)?,
            (None, Some(s), Some(b)) => {
                let seq = req.model.seq.ok_or_else(|| {
                    Error::Usage("--steps/--batch with --params need --seq".into())
                })?;
                count("steps", s)? as f64 * count("batch", b)? as f64 * count("seq", seq)? as f64
            }
            _ => {
                return Err(Error::Usage(
                    "--params needs --tokens (or --steps --batch --seq)".into(),
                ))
            }
        };
        return Ok((
            Plan {
                label: "custom (6ND)".into(),
                workload: Workload::ParamsTokens {
                    params: positive("params", p)?,
                    tokens,
                },
            },
            Vec::new(),
        ));
    }
    if !req.model.is_given() {
        if req.hours.is_some() {
            return Ok((
                Plan {
                    label: "-".into(),
                    workload: Workload::Duration,
                },
                Vec::new(),
            ));
        }
        return Err(Error::Usage(
            "say what to train: --model NAME, --hf-config FILE, a config (--layers --hidden --heads), or --params N --tokens D (or cost a known duration with --hours)".into(),
        ));
    }
    let (cfg, context) = req.model.resolve_noted(cat)?;
    let family = cfg.family;
    let schedule = req.model.schedule(cat)?;
    let seq = opt_count("seq", req.model.seq)?;
    let phases = match (req.tokens, req.steps, req.batch) {
        (Some(t), None, None) => {
            let t = positive("tokens", t)?;
            let s = cfg.seq;
            vec![Phase {
                steps: (t / s as f64).ceil().max(1.0) as u64,
                batch: 1,
                seq: s,
            }]
        }
        (Some(t), None, Some(b)) => {
            let t = positive("tokens", t)?;
            let b = count("batch", b)?;
            vec![Phase {
                steps: (t / (b * cfg.seq) as f64).ceil().max(1.0) as u64,
                batch: b,
                seq: cfg.seq,
            }]
        }
        (None, Some(st), Some(b)) => vec![Phase {
            steps: count("steps", st)?,
            batch: count("batch", b)?,
            seq: cfg.seq,
        }],
        (None, None, None) => {
            if schedule.is_empty() {
                if req.hours.is_some() {
                    return Ok((
                        Plan {
                            label: cfg.name.clone(),
                            workload: Workload::Duration,
                        },
                        context,
                    ));
                }
                return Err(Error::Usage(format!(
                    "model `{}` has no published training schedule in the catalog: pass --tokens D or --steps N --batch B",
                    cfg.name
                )));
            }
            if seq.is_some() {
                schedule
                    .iter()
                    .map(|p| Phase { seq: cfg.seq, ..*p })
                    .collect()
            } else {
                schedule
            }
        }
        (Some(_), _, _) => {
            return Err(Error::Usage(
                "give either --tokens or --steps/--batch, not both".into(),
            ))
        }
        _ => return Err(Error::Usage("--steps and --batch go together".into())),
    };
    Ok((
        Plan {
            label: cfg.name.clone(),
            workload: Workload::Config {
                config: cfg,
                family,
                phases,
                options,
            },
        },
        context,
    ))
}

/// An estimate and, when a profile drove it, the kernel efficiency it measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Computed {
    /// The estimate.
    #[serde(flatten)]
    pub estimate: Estimate,
    /// Kernel efficiency from the profile (`--profile` / `--hardware local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel_efficiency: Option<KernelEfficiency>,
    /// The best layout (the step model's; null where it did not run).
    pub layout: Option<Layout>,
    /// Seconds per optimizer step.
    pub step_time_s: Option<f64>,
    /// The step by part, seconds.
    pub step_breakdown_s: Option<Breakdown>,
    /// Memory per device, bytes.
    pub memory_per_device_bytes: Option<Memory>,
    /// Hardware FLOPs utilisation (recomputation counted).
    pub hfu: Option<f64>,
    /// Tokens per second, whole run.
    pub tokens_per_s: Option<f64>,
    /// The largest part of the step.
    pub bottleneck: Option<String>,
    /// Every flopcal assumption (a figure no public source states) this estimate
    /// relied on, with its stated source.
    pub flopcal_assumptions: Vec<Assumption>,
    /// How many there are.
    pub flopcal_assumption_count: usize,
    /// The model is one flopcal constructed (no one published it), e.g. `bert-1.5b`.
    pub model_constructed: bool,
    /// The provider the catalog prices come from (`null`: the catalog's default).
    pub price_source: Option<String>,
    /// The date and age of each catalog price used (not those given by flags); the
    /// stale ones are warned about on stderr and listed in `assumptions`.
    pub price_ages: Vec<PriceAge>,
}

/// The date note of every price in `ages`, and a warning line for each stale one.
pub fn price_age_notes(ages: &[PriceAge]) -> Vec<String> {
    ages.iter()
        .map(|a| match a.warning() {
            Some(w) => format!("{}; warning: {w}", a.note()),
            None => a.note(),
        })
        .collect()
}

/// Compute the estimate for the request (no printing).
pub fn compute(req: &EstimateRequest) -> Result<Estimate> {
    compute_full(req).map(|c| c.estimate)
}

fn is_local(name: Option<&str>) -> bool {
    name.is_some_and(|h| h.trim().eq_ignore_ascii_case("local"))
}

/// Catalog spelling of a kernel dtype (`f32` → `fp32`).
fn catalog_dtype(kernel_dtype: &str) -> String {
    match kernel_dtype {
        "f32" => "fp32".into(),
        "f16" => "fp16".into(),
        "f64" => "fp64".into(),
        other => other.into(),
    }
}

/// The `flopcal profile` command that measures what `plan` needs, at `seq` × `batch`.
fn profile_command(req: &EstimateRequest, cfg: &ModelConfig, seq: u64, batch: usize) -> String {
    let mut cmd = String::from("flopcal profile");
    let m = &req.model;
    match &m.model {
        Some(name)
            if m.layers.is_none()
                && m.hidden.is_none()
                && m.heads.is_none()
                && m.ffn.is_none()
                && m.vocab.is_none()
                && m.head_dim.is_none() =>
        {
            cmd.push_str(&format!(" --model {name}"));
        }
        _ => cmd.push_str(&format!(
            " --layers {} --hidden {} --heads {} --head-dim {} --ffn {} --vocab {}{}",
            cfg.layers,
            cfg.hidden,
            cfg.heads,
            cfg.head_dim,
            cfg.ffn,
            cfg.vocab,
            if cfg.causal { " --causal true" } else { "" }
        )),
    }
    cmd.push_str(&format!(" --seq {seq} --batch {batch}"));
    if let Some(d) = &req.dtype {
        cmd.push_str(&format!(
            " --dtype {}",
            d.to_ascii_lowercase().replace("fp", "f")
        ));
    }
    match req.device {
        DeviceChoice::Cuda => cmd.push_str(" --device cuda"),
        DeviceChoice::Metal => cmd.push_str(" --device metal"),
        _ => {}
    }
    let name = m.model.as_deref().unwrap_or(&cfg.name);
    cmd.push_str(&format!(" --out results/{name}.json"));
    cmd
}

/// Check a loaded profile against what was asked: the device, this machine for
/// `--hardware local`, the catalog accelerator for `--hardware NAME`.
fn check_profile(
    path: &Path,
    file: &ResultFile,
    req: &EstimateRequest,
    hw: Option<&flopcal_model::Hardware>,
    suggest: &str,
) -> Result<()> {
    let bad = |reason: String| Error::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let dev = file.host.device.as_str();
    let want = match req.device {
        DeviceChoice::Cpu => Some("cpu"),
        DeviceChoice::Cuda => Some("cuda"),
        DeviceChoice::Metal => Some("metal"),
        DeviceChoice::Auto => None,
    };
    if let Some(w) = want {
        if !dev.starts_with(w) {
            return Err(bad(format!(
                "profile was measured on device `{dev}` ({}) but --device {w} was requested; profile that device (`{suggest}`) or drop --device",
                file.host.device_name
            )));
        }
    }
    if is_local(req.hardware.as_deref()) {
        let here = flopcal_bench::fingerprint::collect(&candle_core::Device::Cpu, 1).cpu_model;
        if file.host.cpu_model != here {
            return Err(bad(format!(
                "profile was measured on another machine (CPU `{}`), not this one (`{here}`) that --hardware local means; drop --hardware to estimate for the profiled machine, or profile this one (`{suggest}`)",
                file.host.cpu_model
            )));
        }
    }
    if let Some(hw) = hw {
        if dev == "cpu" {
            return Err(bad(format!(
                "profile was measured on the CPU `{}` but --hardware {} is an accelerator; profile that device, or drop --hardware to estimate for the profiled CPU",
                file.host.device_name, hw.name
            )));
        }
        // A GPU profile: its name must name the catalog entry when it is known.
        let mut names: Vec<String> = vec![file.host.device_name.to_ascii_lowercase()];
        if let Some(p) = &file.peak {
            names.extend(p.gpu.iter().map(|g| g.device.to_ascii_lowercase()));
        }
        let tokens: Vec<String> = std::iter::once(&hw.name)
            .chain(hw.aliases.iter())
            .filter_map(|n| n.split('-').next())
            .map(str::to_ascii_lowercase)
            .collect();
        let known = names.iter().any(|n| !n.starts_with(dev) && !n.is_empty());
        if known
            && !names
                .iter()
                .any(|n| tokens.iter().any(|t| n.contains(t.as_str())))
        {
            return Err(bad(format!(
                "profile was measured on `{}` but --hardware {} was requested; profile that hardware, or drop --hardware to estimate for the profiled device",
                file.host.device_name, hw.name
            )));
        }
    }
    Ok(())
}

/// Quick profile of this machine for the plan's model (`--hardware local` without
/// `--profile`): the model's own kernels at seq 128, within about a minute.
fn profile_now(req: &EstimateRequest, cfg: &ModelConfig) -> Result<ResultFile> {
    let pa = flopcal_bench::profile_run::ProfileSpec {
        model: None,
        layers: Some(cfg.layers),
        hidden: Some(cfg.hidden),
        heads: Some(cfg.heads),
        head_dim: Some(cfg.head_dim),
        ffn: Some(cfg.ffn),
        vocab: Some(cfg.vocab),
        causal: Some(cfg.causal),
        dtype: vec![req
            .dtype
            .as_deref()
            .map(|d| d.to_ascii_lowercase().replace("fp", "f"))
            .unwrap_or_else(|| "f32".into())],
        squares: Some(vec![]),
        quick: true,
        budget: Some(60.0),
        device: req.device,
        ..flopcal_bench::profile_run::ProfileSpec::default()
    };
    eprintln!(
        "profiling this machine: {} kernels at seq 128 x batch {} (quick, up to a minute)...",
        cfg.name, pa.batch
    );
    let run = flopcal_bench::profile_run::execute(&pa)?;
    if run.file.header.partial {
        return Err(Error::Interrupted { saved: None });
    }
    Ok(run.file)
}

/// `--framework`, resolved (`None`: unknown); an unknown name is refused with the list.
pub fn framework_of(
    req: &EstimateRequest,
) -> Result<Option<&'static flopcal_model::framework::Framework>> {
    Ok(flopcal_model::framework::lookup(&req.framework)?)
}

/// `--goodput`, checked to lie in (0, 1], or the calibrated default.
pub fn goodput_of(req: &EstimateRequest) -> Result<f64> {
    match req.goodput {
        None => Ok(flopcal_model::fit::GOODPUT),
        Some(g) if g.is_finite() && g > 0.0 && g <= 1.0 => Ok(g),
        Some(g) => Err(Error::Usage(format!(
            "--goodput must be in (0, 1] (got {g})"
        ))),
    }
}

/// Compute the estimate and the kernel efficiency behind it (no printing).
pub fn compute_full(req: &EstimateRequest) -> Result<Computed> {
    let mut cat = load_catalog(req.catalog.as_deref())?;
    let local = is_local(req.hardware.as_deref());
    req.prices
        .apply(&mut cat, req.hardware.as_deref().filter(|_| !local))?;
    let cat = cat;
    let own_fit = crate::planning::own_fit(req.own_runs.as_deref(), &cat)?;
    let (plan, context) = plan_of(req, &cat)?;
    let catalog_hw = match req.hardware.as_deref() {
        Some(name) if !local => Some(cat.hardware(name)?),
        _ => None,
    };
    let uses_profile = req.profile.is_some() || local;
    if catalog_hw.is_none() && !uses_profile {
        return Err(Error::Usage(
            "say where to train: --hardware NAME (a catalog entry such as tpu-v3, a100, h100), --hardware local (this machine, profiled now), or --profile FILE".into(),
        ));
    }
    let mut measured: Option<KernelEfficiency> = None;
    let mut profiled: Option<flopcal_model::forecast::Measured> = None;
    let mut local_hw: Option<flopcal_model::Hardware> = None;
    let mut kernel_dtype: Option<String> = None;
    if uses_profile {
        let Workload::Config {
            config,
            phases,
            options,
            ..
        } = &plan.workload
        else {
            return Err(Error::Usage(
                "--profile / --hardware local weigh the model's own kernels: give an architecture (--model NAME or --layers --hidden --heads), not --params".into(),
            ));
        };
        let (file, path) = match &req.profile {
            Some(p) => (flopcal_bench::results::load(p)?, Some(p.clone())),
            None => (profile_now(req, config)?, None),
        };
        let pm = &file.profile.model;
        let same_arch = (
            pm.hidden,
            pm.heads,
            pm.head_dim,
            pm.ffn,
            pm.vocab,
            pm.causal,
        ) == (
            config.hidden,
            config.heads,
            config.head_dim,
            config.ffn,
            config.vocab,
            config.causal,
        );
        let suggest = if same_arch {
            profile_command(req, config, file.profile.seq as u64, file.profile.batch)
        } else {
            profile_command(req, config, config.seq, 8)
        };
        if let Some(p) = &path {
            check_profile(p, &file, req, catalog_hw, &suggest)?;
        }
        let peak = match catalog_hw {
            Some(hw) => {
                let dt = file
                    .profile
                    .dtypes
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "f32".into());
                let dt = req
                    .dtype
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_else(|| catalog_dtype(&dt));
                let p = hw.peak_flops(Some(&dt))?;
                kernel_dtype = Some(dt.clone());
                Some((p, format!("catalog spec peak of {} ({dt})", hw.name)))
            }
            None => None,
        };
        let kd = kernel_dtype
            .as_deref()
            .map(|d| d.replace("fp", "f"))
            .or_else(|| {
                req.dtype
                    .as_deref()
                    .map(|d| d.to_ascii_lowercase().replace("fp", "f"))
            });
        let kernels = efficiency::KernelWeights {
            config,
            phases,
            options: *options,
            dtype: kd.as_deref(),
            peak_flops: peak,
        };
        let shown = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the profile just measured".into());
        let k = efficiency::from_profile(&file, &kernels).map_err(|e| {
            let reason = match &e {
                EfficiencyError::Missing { ids } => {
                    let shown: Vec<&str> = ids.iter().take(4).map(String::as_str).collect();
                    let more = if ids.len() > shown.len() {
                        format!(" and {} more", ids.len() - shown.len())
                    } else {
                        String::new()
                    };
                    let why = if same_arch {
                        String::new()
                    } else {
                        format!(
                            " (it measured {} with hidden {}, ffn {}, vocab {}; {} has hidden {}, ffn {}, vocab {})",
                            pm.name, pm.hidden, pm.ffn, pm.vocab, config.name, config.hidden, config.ffn, config.vocab
                        )
                    };
                    format!(
                        "profile lacks {} kernel(s) the model needs{why}: {}{more}. Measure them with `{suggest}` (or use --hardware local to profile this machine now)",
                        ids.len(),
                        shown.join(", ")
                    )
                }
                EfficiencyError::NoPeak { .. } => format!(
                    "{e}; re-run `{suggest}` without --no-peak"
                ),
                EfficiencyError::Dtype { .. } => format!("{e}; pass --dtype to match, or profile with `{suggest}`"),
                EfficiencyError::Invalid(_) => e.to_string(),
            };
            match &path {
                Some(p) => Error::BadFile {
                    path: p.clone(),
                    reason,
                },
                None => Error::Usage(format!("{shown}: {reason}")),
            }
        })?;
        if catalog_hw.is_none() {
            local_hw = Some(local_hardware(&k));
        }
        let chips = match (req.devices, local_hw.as_ref().or(catalog_hw)) {
            (Some(d), Some(h)) => h.chips(positive("devices", d)?, req.unit),
            (None, Some(h)) => f64::from(h.chips_per_device),
            (_, None) => 1.0,
        };
        profiled = crate::planning::measured_from_profile(&file, &k, catalog_hw.is_none(), chips);
        measured = Some(k);
    }
    let hw: &flopcal_model::Hardware = match (&local_hw, catalog_hw) {
        (Some(h), _) => h,
        (None, Some(h)) => h,
        (None, None) => {
            return Err(Error::Usage("no hardware to estimate for".into()));
        }
    };
    let chips = match req.devices {
        Some(d) => {
            let d = positive("devices", d)?;
            hw.chips(d, req.unit)
        }
        None => f64::from(hw.chips_per_device),
    };
    let fixed = req.mfu.is_some()
        || req.kernel_efficiency.is_some()
        || (measured.is_some() && profiled.is_none())
        || req.hours.is_some();
    let dtype = if local_hw.is_some() {
        None
    } else {
        kernel_dtype.as_deref().or(req.dtype.as_deref())
    };
    let network = req
        .network
        .as_deref()
        .map(crate::planning::load_network)
        .transpose()?;
    let modelled = if fixed {
        None
    } else {
        flopcal_model::run::modelled_with(
            &plan,
            hw,
            chips,
            dtype,
            &flopcal_model::run::SearchOptions {
                constraints: constraints(req),
                keep: 1,
                seq: opt_count("seq", req.model.seq)?,
                network: network.as_ref(),
                framework: framework_of(req)?,
                fit: own_fit.as_ref(),
                production_layout: true,
            },
            profiled.as_ref(),
        )?
    };
    if network.is_some() && modelled.is_none() {
        return Err(Error::Usage(
            "--network feeds the step model, which this estimate does not use (a fixed --mfu, --kernel-efficiency, --profile or --hours, or hardware without link tiers): drop --network or those".into(),
        ));
    }
    let mfu = match (req.mfu, req.kernel_efficiency, &measured) {
        _ if modelled.is_some() => modelled
            .as_ref()
            .map(|m| m.source.clone())
            .ok_or_else(|| Error::Usage("no modelled MFU".into()))?,
        (_, _, Some(k)) => Fit::from_catalog(&cat)?.measured_mfu(hw, k.kernel_efficiency)?,
        (Some(m), _, None) => {
            if !(m.is_finite() && m > 0.0 && m <= 1.0) {
                return Err(Error::Usage(format!("--mfu must be in (0, 1] (got {m})")));
            }
            MfuSource::User { mfu: m }
        }
        (None, Some(k), None) => Fit::from_catalog(&cat)?.measured_mfu(hw, k)?,
        (None, None, None) => {
            if req.hours.is_some() {
                MfuSource::User { mfu: 1.0 }
            } else {
                Fit::from_catalog(&cat)?.calibrated_mfu(hw)?
            }
        }
    };
    let mut a = Assumptions::new(chips, mfu);
    a.dtype = kernel_dtype.or_else(|| {
        if local_hw.is_some() {
            None
        } else {
            req.dtype.clone()
        }
    });
    a.price_per_chip_hour = req.price;
    a.preemptible_price_per_chip_hour = req.preemptible_price;
    a.preemptible = req.preemptible;
    a.configs = count("configs", req.configs)? as u32;
    a.runs = count("runs", req.runs)? as u32;
    a.pue = req.pue;
    a.kwh_price = req.kwh_price;
    a.co2_lb_per_kwh = req.co2_per_kwh;
    a.chip_watts = req.chip_watts;
    a.host_watts = req.host_watts;
    a.hours = req.hours;
    if modelled.is_some() {
        a.goodput = goodput_of(req)?;
    }
    if req.hours.is_some() && (req.mfu.is_some() || req.kernel_efficiency.is_some()) {
        return Err(Error::Usage(
            "--hours fixes the duration: drop --mfu / --kernel-efficiency".into(),
        ));
    }
    let mut e = estimate(&plan, hw, &a)?;
    let entry = match (&req.model.model, &req.model.hf_config) {
        (Some(m), None) => Some(cat.model(m)?),
        _ => None,
    };
    let flopcal_assumptions = relied_on(hw, &a, entry);
    let price_ages =
        if e.price_per_device_hour.is_some() || e.preemptible_price_per_device_hour.is_some() {
            price_ages(
                hw,
                &run_date()?,
                req.price.is_some(),
                req.preemptible_price.is_some(),
                false,
            )
        } else {
            vec![]
        };
    e.assumptions.extend(price_age_notes(&price_ages));
    e.assumptions.extend(context);
    if let Some(k) = &measured {
        e.assumptions.push(format!(
            "kernel efficiency {:.3} = suite {:.1} GFLOP/s / peak {:.1} GFLOP/s ({}); profile {} of {} ({}, seq {} x batch {}, {})",
            k.kernel_efficiency,
            k.achieved_flops_per_s / 1e9,
            k.peak_flops_per_s / 1e9,
            k.peak_source,
            k.profile_run_id,
            k.profile_model,
            k.device_name,
            k.profile_seq,
            k.profile_batch,
            k.profile_created_at
        ));
        e.assumptions.extend(k.notes.iter().cloned());
    }
    let best = modelled.as_ref().map(|m| &m.forecast.best);
    if let Some(m) = &modelled {
        e.assumptions.extend(m.notes.iter().cloned());
    }
    Ok(Computed {
        estimate: e,
        kernel_efficiency: measured,
        layout: best.map(|b| b.layout),
        step_time_s: best.map(|b| b.step_time_s),
        step_breakdown_s: best.map(|b| b.step_breakdown_s),
        memory_per_device_bytes: best.map(|b| b.memory_per_device_bytes),
        hfu: best.map(|b| b.hfu),
        tokens_per_s: best.map(|b| b.tokens_per_s),
        bottleneck: best.map(|b| b.bottleneck.clone()),
        flopcal_assumption_count: flopcal_assumptions.len(),
        flopcal_assumptions,
        model_constructed: entry.is_some_and(|m| m.constructed),
        price_source: req.prices.price_source.clone(),
        price_ages,
    })
}

/// What `plan` needs from the request (catalog hardware only).
pub fn plan_inputs(req: &EstimateRequest) -> Result<flopcal_model::run::PlanInputs> {
    let mut cat = load_catalog(req.catalog.as_deref())?;
    req.prices.apply(
        &mut cat,
        req.hardware.as_deref().filter(|h| !is_local(Some(h))),
    )?;
    let cat = cat;
    // `plan --batch B` alone asks for the best layout of one step at that batch.
    let per_step =
        req.params.is_none() && req.tokens.is_none() && req.steps.is_none() && req.batch.is_some();
    let (plan, context) = if per_step {
        let mut one = req.clone();
        one.steps = Some(1.0);
        plan_of(&one, &cat)?
    } else {
        plan_of(req, &cat)?
    };
    let name = req.hardware.as_deref().ok_or_else(|| {
        Error::Usage(
            "plan needs --hardware NAME (a catalog accelerator such as a100, h100, tpu-v4)".into(),
        )
    })?;
    if is_local(Some(name)) || req.profile.is_some() {
        return Err(Error::Usage(
            "plan searches catalog hardware: give --hardware NAME (not local or --profile)".into(),
        ));
    }
    let hw = cat.hardware(name)?.clone();
    let chips = match req.devices {
        Some(d) => hw.chips(positive("devices", d)?, req.unit),
        None => f64::from(hw.chips_per_device),
    };
    Ok(flopcal_model::run::PlanInputs {
        plan,
        hw,
        chips,
        dtype: req.dtype.clone(),
        constraints: constraints(req),
        seq: opt_count("seq", req.model.seq)?,
        price: req.price,
        network: req
            .network
            .as_deref()
            .map(crate::planning::load_network)
            .transpose()?,
        framework: framework_of(req)?,
        fit: crate::planning::own_fit(req.own_runs.as_deref(), &cat)?,
        per_step,
        notes: context.into_iter().collect(),
    })
}
