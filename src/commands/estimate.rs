//! `flopcal estimate`: training FLOPs → hours → dollars (on demand, preemptible, fully
//! loaded), energy and CO2, with a low–high band from the calibrated MFU spread.

use std::path::{Path, PathBuf};

use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use flopcal_model::catalog::{Catalog, Unit};
use flopcal_model::cost::{
    estimate, relied_on, Assumption, Assumptions, Estimate, MfuSource, Plan, Workload,
};
use flopcal_model::flops::{FlopOptions, Phase, Recompute};
use flopcal_model::layout::{Attention, Layout, Zero};
use flopcal_model::memory::Memory;
use flopcal_model::search::Constraints;
use flopcal_model::step::Breakdown;
use flopcal_model::{calibrate::Fit, ModelConfig};

use crate::planning::{load_catalog, local_hardware};
use crate::text::{emit, emit_csv, layout_text, num, outln, pct, sci, thousands, usd};

use crate::commands::model_args::{count, opt_count, run_date, ModelArgs, PriceArgs};
use crate::device::DeviceChoice;
use crate::efficiency::{self, EfficiencyError, KernelEfficiency};
use crate::output::{print_json, OutputFormat};
use crate::results::ResultFile;
use crate::{Error, Outcome, Result};
use flopcal_model::prices::{price_ages, PriceAge};

/// Unit of `--devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceUnit {
    /// Chips (a GPU is one chip).
    Chip,
    /// Cores (TPU v2/v3 have 2 per chip).
    Core,
    /// Priced devices as the catalog lists them (a 2019 Cloud TPU = 4 chips).
    Device,
}

/// Activation recomputation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecomputeArg {
    /// No recomputation (training = 3 × forward).
    None,
    /// Recompute every block (+1 forward of the blocks).
    Full,
    /// Recompute the attention core only (+1 forward of scores and P·V).
    Selective,
}

/// Attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttentionArg {
    /// Scores materialised in memory (batched GEMMs, softmax as memory passes).
    Materialized,
    /// A fused flash-style kernel.
    Flash,
}

fn recompute_of(r: RecomputeArg) -> Recompute {
    match r {
        RecomputeArg::None => Recompute::None,
        RecomputeArg::Full => Recompute::Full,
        RecomputeArg::Selective => Recompute::Selective,
    }
}

/// The layout dimensions the flags fix.
pub fn constraints(args: &EstimateArgs) -> Constraints {
    Constraints {
        tp: args.tp,
        cp: args.cp,
        pp: args.pp,
        dp: args.dp,
        ep: None,
        microbatch: args.microbatch,
        virtual_stages: args.virtual_stages,
        sequence_parallel: args.sequence_parallel,
        zero: args.zero.and_then(Zero::from_level),
        recompute: args.recompute.map(recompute_of),
        attention: args.attention.map(|a| match a {
            AttentionArg::Materialized => Attention::Materialized,
            AttentionArg::Flash => Attention::Flash,
        }),
        // A pipeline degree you name is taken even where it does not divide the layers
        // (the busiest stage sets the pace); the search itself splits evenly.
        uneven_stages: args.pp.is_some(),
    }
}

/// Arguments of `flopcal estimate`.
#[derive(Debug, Clone, Args)]
pub struct EstimateArgs {
    /// Which model: --model, --hf-config or a custom shape, each field overridable.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Non-embedding parameters N, for a 6·N·D estimate without an architecture (e.g. 1.5e9).
    #[arg(long, allow_negative_numbers = true)]
    pub params: Option<f64>,
    /// Training tokens D (e.g. 3e11).
    #[arg(long, allow_negative_numbers = true)]
    pub tokens: Option<f64>,
    /// Optimizer steps (with --batch; tokens = steps × batch × seq).
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<f64>,
    /// Sequences per step (global batch).
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<f64>,
    /// Activation recomputation: counted in the training FLOPs and fixed in the layout
    /// (unset: searched, and the FLOPs counted without recomputation).
    #[arg(long, value_enum)]
    pub recompute: Option<RecomputeArg>,
    /// Tensor-parallel degree (unset: searched within the scale-up domain).
    #[arg(long)]
    pub tp: Option<u32>,
    /// Context-parallel degree: each rank holds seq / cp positions of every sequence
    /// and passes keys and values around a ring for attention, for sequences whose
    /// activations fit no other way (default 1; not searched).
    #[arg(long)]
    pub cp: Option<u32>,
    /// Pipeline stages (unset: searched among divisors of the layers).
    #[arg(long)]
    pub pp: Option<u32>,
    /// Data-parallel degree (unset: devices / (tp x cp x pp)).
    #[arg(long)]
    pub dp: Option<u32>,
    /// Micro-batch, sequences (unset: searched).
    #[arg(long)]
    pub microbatch: Option<u32>,
    /// Virtual pipeline stages per device, interleaved 1F1B (unset: searched).
    #[arg(long)]
    pub virtual_stages: Option<u32>,
    /// Sequence parallelism on (`--sequence-parallel` or `=true`) or off (`=false`);
    /// unset: searched.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub sequence_parallel: Option<bool>,
    /// Optimizer sharding: 0 none, 1 ZeRO-1 / distributed optimizer, 3 ZeRO-3 / FSDP
    /// (unset: searched).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["0", "1", "3"]).map(|s| s.parse::<u8>().unwrap_or(0)))]
    pub zero: Option<u8>,
    /// Attention kernel (unset: what --framework runs on the hardware, else searched).
    #[arg(long, value_enum)]
    pub attention: Option<AttentionArg>,
    /// The software stack that will run the job: megatron (also nemo,
    /// megatron-bridge), deepspeed (also gpt-neox), fsdp (also pytorch, torchtitan),
    /// jax, tensorflow (also tf-tpu), or unknown. The estimate uses that stack's
    /// calibrated factor on GEMM rates for the hardware (see `flopcal calibrate`);
    /// unknown uses the stacks seen on that hardware, with a wider band.
    #[arg(long, default_value = "unknown")]
    pub framework: String,
    /// Fraction of wall-clock time that makes progress (after failures, restarts and
    /// evaluation), in (0, 1]: wall-clock = steps x step time / goodput. Default: 0.9,
    /// from the Llama 3 paper's >90% effective training time.
    #[arg(long, allow_negative_numbers = true)]
    pub goodput: Option<f64>,
    /// Fraction of positions through the vocabulary projection (BERT's MLM: 0.15).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub vocab_fraction: f64,
    /// Catalog hardware (e.g. tpu-v3, v100, a100, h100), or `local`: this machine,
    /// measured by --profile FILE or, without one, by a quick profile run now. With
    /// --profile alone the hardware is the machine the profile was measured on.
    #[arg(long)]
    pub hardware: Option<String>,
    /// A result file of `flopcal profile` for the model: its measured kernel FLOP/s,
    /// weighted by each kernel's share of the training FLOPs, give the kernel
    /// efficiency (MFU = that × the calibrated system efficiency) instead of the
    /// catalog's. Must be of this schema version and of the requested device.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mfu", "kernel_efficiency", "hours"])]
    pub profile: Option<PathBuf>,
    /// Device the profile must come from (and that `--hardware local` profiles).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// How many --unit the run uses (default: one priced device of the catalog).
    #[arg(long, allow_negative_numbers = true)]
    pub devices: Option<f64>,
    /// Unit of --devices.
    #[arg(long, value_enum, default_value_t = DeviceUnit::Chip)]
    pub unit: DeviceUnit,
    /// Data type selecting the peak (default: the hardware's, e.g. bf16 on TPUs).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Model FLOPs utilisation in (0, 1], instead of the calibrated one (no band).
    #[arg(long, allow_negative_numbers = true)]
    pub mfu: Option<f64>,
    /// Measured kernel efficiency in (0, 1] (e.g. from `flopcal profile`): MFU = this ×
    /// the calibrated system efficiency of the hardware's class.
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["mfu", "profile"])]
    pub kernel_efficiency: Option<f64>,
    /// On-demand price, USD per chip (GPU) hour, instead of the catalog's.
    #[arg(long, allow_negative_numbers = true)]
    pub price: Option<f64>,
    /// A `flopcal comm --out` result file: its measured α–β per collective replaces the
    /// catalog's figures of the link tier its group spanned (intra-node: the first,
    /// scale-up tier; inter-node: the scale-out tier).
    #[arg(long, value_name = "FILE")]
    pub network: Option<PathBuf>,
    /// Preemptible price, USD per chip (GPU) hour, instead of the catalog's.
    #[arg(long, allow_negative_numbers = true)]
    pub preemptible_price: Option<f64>,
    /// Price the fully-loaded cost at the preemptible rate.
    #[arg(long)]
    pub preemptible: bool,
    /// Configurations tried, for the fully-loaded cost (default: AI21's 2).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub configs: f64,
    /// Runs per configuration, for the fully-loaded cost (default: AI21's 10).
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub runs: f64,
    /// Power usage effectiveness of the data centre (Strubell et al.: 1.58).
    #[arg(long, default_value_t = flopcal_model::cost::DEFAULT_PUE, allow_negative_numbers = true)]
    pub pue: f64,
    /// Electricity price, USD per kWh (adds the energy cost).
    #[arg(long, allow_negative_numbers = true)]
    pub kwh_price: Option<f64>,
    /// Emissions, lb CO2e per kWh (Strubell et al., US average: 0.954).
    #[arg(long, default_value_t = flopcal_model::cost::DEFAULT_CO2_LB_PER_KWH, allow_negative_numbers = true)]
    pub co2_per_kwh: f64,
    /// Power per chip, W, instead of the catalog TDP.
    #[arg(long, allow_negative_numbers = true)]
    pub chip_watts: Option<f64>,
    /// Host power (CPU + DRAM) for the whole run, W.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub host_watts: f64,
    /// Known wall-clock duration, hours: cost it directly (MFU is then implied).
    #[arg(long, allow_negative_numbers = true)]
    pub hours: Option<f64>,
    /// Which provider's published cloud prices to use.
    #[command(flatten)]
    pub prices: PriceArgs,
    /// Catalog override file (TOML with [[hardware]], [[models]], [[runs]]); also
    /// taken from the FLOPCAL_CATALOG environment variable.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Your own runs (TOML [[runs]] tables in the format of the embedded published
    /// runs: id, hardware, framework, group, devices, batch, model or arch, layout,
    /// published step_time_s / tokens_per_s / gpu_hours with tokens, source, date).
    /// They join the step model's calibration as sources of their own, so the stack
    /// that ran them is fitted from them, pooled with the published runs. See README
    /// "Your own runs". (--runs is the fully-loaded cost's runs per configuration.)
    #[arg(long, value_name = "FILE")]
    pub own_runs: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
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

/// Build the plan (what is trained) from the arguments, with the line saying where an
/// `--hf-config`'s training length came from ([`ModelArgs::resolve_noted`]).
pub fn plan_from_args(args: &EstimateArgs, cat: &Catalog) -> Result<(Plan, Option<String>)> {
    let options = FlopOptions {
        recompute: args.recompute.map_or(Recompute::None, recompute_of),
        vocab_fraction: args.vocab_fraction,
    };
    if let Some(p) = args.params {
        if args.model.is_given() {
            return Err(Error::Usage("--params is for a 6·N·D estimate without an architecture: drop --model / --hf-config / config flags, or drop --params".into()));
        }
        let tokens = match (args.tokens, args.steps, args.batch) {
            (Some(t), _, _) => positive("tokens", t)?,
            (None, Some(s), Some(b)) => {
                let seq = args.model.seq.ok_or_else(|| {
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
            None,
        ));
    }
    if !args.model.is_given() {
        if args.hours.is_some() {
            return Ok((
                Plan {
                    label: "-".into(),
                    workload: Workload::Duration,
                },
                None,
            ));
        }
        return Err(Error::Usage(
            "say what to train: --model NAME, --hf-config FILE, a config (--layers --hidden --heads), or --params N --tokens D (or cost a known duration with --hours)".into(),
        ));
    }
    let (cfg, context) = args.model.resolve_noted(cat)?;
    let family = cfg.family;
    let schedule = args.model.schedule(cat)?;
    let seq = opt_count("seq", args.model.seq)?;
    let phases = match (args.tokens, args.steps, args.batch) {
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
                if args.hours.is_some() {
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

/// Print the warning of each stale price in `ages` on stderr.
pub fn warn_stale(ages: &[PriceAge]) {
    for w in ages.iter().filter_map(PriceAge::warning) {
        eprintln!("warning: {w}");
    }
}

/// Compute the estimate for the arguments (no printing).
pub fn compute(args: &EstimateArgs) -> Result<Estimate> {
    compute_full(args).map(|c| c.estimate)
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
fn profile_command(args: &EstimateArgs, cfg: &ModelConfig, seq: u64, batch: usize) -> String {
    let mut cmd = String::from("flopcal profile");
    let m = &args.model;
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
    if let Some(d) = &args.dtype {
        cmd.push_str(&format!(
            " --dtype {}",
            d.to_ascii_lowercase().replace("fp", "f")
        ));
    }
    match args.device {
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
    args: &EstimateArgs,
    hw: Option<&flopcal_model::Hardware>,
    suggest: &str,
) -> Result<()> {
    let bad = |reason: String| Error::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let dev = file.host.device.as_str();
    let want = match args.device {
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
    if is_local(args.hardware.as_deref()) {
        let here = crate::fingerprint::collect(&candle_core::Device::Cpu, 1).cpu_model;
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
fn profile_now(args: &EstimateArgs, cfg: &ModelConfig) -> Result<ResultFile> {
    let pa = crate::profile_run::ProfileSpec {
        model: None,
        layers: Some(cfg.layers),
        hidden: Some(cfg.hidden),
        heads: Some(cfg.heads),
        head_dim: Some(cfg.head_dim),
        ffn: Some(cfg.ffn),
        vocab: Some(cfg.vocab),
        causal: Some(cfg.causal),
        dtype: vec![args
            .dtype
            .as_deref()
            .map(|d| d.to_ascii_lowercase().replace("fp", "f"))
            .unwrap_or_else(|| "f32".into())],
        squares: Some(vec![]),
        quick: true,
        budget: Some(60.0),
        device: args.device,
        ..crate::profile_run::ProfileSpec::default()
    };
    eprintln!(
        "profiling this machine: {} kernels at seq 128 x batch {} (quick, up to a minute)...",
        cfg.name, pa.batch
    );
    let run = crate::profile_run::execute(&pa)?;
    if run.file.header.partial {
        return Err(Error::Interrupted { saved: None });
    }
    Ok(run.file)
}

/// Compute the estimate and the kernel efficiency behind it (no printing).
/// `--framework`, resolved (`None`: unknown); an unknown name is refused with the list.
pub fn framework_of(
    args: &EstimateArgs,
) -> Result<Option<&'static flopcal_model::framework::Framework>> {
    Ok(flopcal_model::framework::lookup(&args.framework)?)
}

/// `--goodput`, checked to lie in (0, 1], or the calibrated default.
pub fn goodput_of(args: &EstimateArgs) -> Result<f64> {
    match args.goodput {
        None => Ok(flopcal_model::fit::GOODPUT),
        Some(g) if g.is_finite() && g > 0.0 && g <= 1.0 => Ok(g),
        Some(g) => Err(Error::Usage(format!(
            "--goodput must be in (0, 1] (got {g})"
        ))),
    }
}

pub fn compute_full(args: &EstimateArgs) -> Result<Computed> {
    let mut cat = load_catalog(args.catalog.as_deref())?;
    let local = is_local(args.hardware.as_deref());
    args.prices
        .apply(&mut cat, args.hardware.as_deref().filter(|_| !local))?;
    let cat = cat;
    let own_fit = crate::planning::own_fit(args.own_runs.as_deref(), &cat)?;
    let (plan, context) = plan_from_args(args, &cat)?;
    let catalog_hw = match args.hardware.as_deref() {
        Some(name) if !local => Some(cat.hardware(name)?),
        _ => None,
    };
    let uses_profile = args.profile.is_some() || local;
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
        let (file, path) = match &args.profile {
            Some(p) => (crate::results::load(p)?, Some(p.clone())),
            None => (profile_now(args, config)?, None),
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
            profile_command(args, config, file.profile.seq as u64, file.profile.batch)
        } else {
            profile_command(args, config, config.seq, 8)
        };
        if let Some(p) = &path {
            check_profile(p, &file, args, catalog_hw, &suggest)?;
        }
        let peak = match catalog_hw {
            Some(hw) => {
                let dt = file
                    .profile
                    .dtypes
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "f32".into());
                let dt = args
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
                args.dtype
                    .as_deref()
                    .map(|d| d.to_ascii_lowercase().replace("fp", "f"))
            });
        let req = efficiency::Request {
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
        let k = efficiency::from_profile(&file, &req).map_err(|e| {
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
        let chips = match (args.devices, local_hw.as_ref().or(catalog_hw)) {
            (Some(d), Some(h)) => h.chips(positive("devices", d)?, unit_of(args.unit)),
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
    let chips = match args.devices {
        Some(d) => {
            let d = positive("devices", d)?;
            hw.chips(d, unit_of(args.unit))
        }
        None => f64::from(hw.chips_per_device),
    };
    let fixed = args.mfu.is_some()
        || args.kernel_efficiency.is_some()
        || (measured.is_some() && profiled.is_none())
        || args.hours.is_some();
    let dtype = if local_hw.is_some() {
        None
    } else {
        kernel_dtype.as_deref().or(args.dtype.as_deref())
    };
    let network = args
        .network
        .as_deref()
        .map(crate::planning::load_network)
        .transpose()?;
    let modelled = if fixed {
        None
    } else {
        crate::planning::modelled_with(
            &plan,
            hw,
            chips,
            dtype,
            &crate::planning::SearchOptions {
                constraints: constraints(args),
                keep: 1,
                seq: opt_count("seq", args.model.seq)?,
                network: network.as_ref(),
                framework: framework_of(args)?,
                fit: own_fit.as_ref(),
            },
            profiled.as_ref(),
        )?
    };
    if network.is_some() && modelled.is_none() {
        return Err(Error::Usage(
            "--network feeds the step model, which this estimate does not use (a fixed --mfu, --kernel-efficiency, --profile or --hours, or hardware without link tiers): drop --network or those".into(),
        ));
    }
    let mfu = match (args.mfu, args.kernel_efficiency, &measured) {
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
            if args.hours.is_some() {
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
            args.dtype.clone()
        }
    });
    a.price_per_chip_hour = args.price;
    a.preemptible_price_per_chip_hour = args.preemptible_price;
    a.preemptible = args.preemptible;
    a.configs = count("configs", args.configs)? as u32;
    a.runs = count("runs", args.runs)? as u32;
    a.pue = args.pue;
    a.kwh_price = args.kwh_price;
    a.co2_lb_per_kwh = args.co2_per_kwh;
    a.chip_watts = args.chip_watts;
    a.host_watts = args.host_watts;
    a.hours = args.hours;
    if modelled.is_some() {
        a.goodput = goodput_of(args)?;
    }
    if args.hours.is_some() && (args.mfu.is_some() || args.kernel_efficiency.is_some()) {
        return Err(Error::Usage(
            "--hours fixes the duration: drop --mfu / --kernel-efficiency".into(),
        ));
    }
    let mut e = estimate(&plan, hw, &a)?;
    let entry = match (&args.model.model, &args.model.hf_config) {
        (Some(m), None) => Some(cat.model(m)?),
        _ => None,
    };
    let flopcal_assumptions = relied_on(hw, &a, entry);
    let price_ages =
        if e.price_per_device_hour.is_some() || e.preemptible_price_per_device_hour.is_some() {
            price_ages(
                hw,
                &run_date()?,
                args.price.is_some(),
                args.preemptible_price.is_some(),
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
        price_source: args.prices.price_source.clone(),
        price_ages,
    })
}

/// What `plan` needs from the flags (catalog hardware only).
pub fn plan_inputs(args: &EstimateArgs) -> Result<crate::planning::PlanInputs> {
    let mut cat = load_catalog(args.catalog.as_deref())?;
    args.prices.apply(
        &mut cat,
        args.hardware.as_deref().filter(|h| !is_local(Some(h))),
    )?;
    let cat = cat;
    // `plan --batch B` alone asks for the best layout of one step at that batch.
    let per_step = args.params.is_none()
        && args.tokens.is_none()
        && args.steps.is_none()
        && args.batch.is_some();
    let (plan, context) = if per_step {
        let mut one = args.clone();
        one.steps = Some(1.0);
        plan_from_args(&one, &cat)?
    } else {
        plan_from_args(args, &cat)?
    };
    let name = args.hardware.as_deref().ok_or_else(|| {
        Error::Usage(
            "plan needs --hardware NAME (a catalog accelerator such as a100, h100, tpu-v4)".into(),
        )
    })?;
    if is_local(Some(name)) || args.profile.is_some() {
        return Err(Error::Usage(
            "plan searches catalog hardware: give --hardware NAME (not local or --profile)".into(),
        ));
    }
    let hw = cat.hardware(name)?.clone();
    let chips = match args.devices {
        Some(d) => hw.chips(positive("devices", d)?, unit_of(args.unit)),
        None => f64::from(hw.chips_per_device),
    };
    Ok(crate::planning::PlanInputs {
        plan,
        hw,
        chips,
        dtype: args.dtype.clone(),
        constraints: constraints(args),
        seq: opt_count("seq", args.model.seq)?,
        price: args.price,
        network: args
            .network
            .as_deref()
            .map(crate::planning::load_network)
            .transpose()?,
        framework: framework_of(args)?,
        fit: crate::planning::own_fit(args.own_runs.as_deref(), &cat)?,
        per_step,
        notes: context.into_iter().collect(),
    })
}

fn unit_of(u: DeviceUnit) -> Unit {
    match u {
        DeviceUnit::Chip => Unit::Chip,
        DeviceUnit::Core => Unit::Core,
        DeviceUnit::Device => Unit::Device,
    }
}

/// Run `flopcal estimate`.
pub fn run(args: &EstimateArgs) -> Result<Outcome> {
    let c = compute_full(args)?;
    warn_stale(&c.price_ages);
    match args.format {
        OutputFormat::Json => print_json(&c)?,
        OutputFormat::Csv => print_csv(&c.estimate)?,
        OutputFormat::Table => {
            let mut out = render_table(&c.estimate);
            out.push_str(&step_lines(&c));
            out.push_str(&assumption_lines(&c));
            if let Some(k) = &c.kernel_efficiency {
                out.push_str(&kernel_table(k, 8));
            }
            emit(&out);
        }
    }
    Ok(Outcome::Success)
}

/// The kernels behind a measured kernel efficiency, most time first (`top` rows, the
/// rest summed), and a line naming the ones that dominate.
pub fn kernel_table(k: &KernelEfficiency, top: usize) -> String {
    let mut out = String::new();
    outln!(
        out,
        "kernel efficiency {:.1}% ({} kernels of {} on {}, {}): suite {} GFLOP/s of {} GFLOP/s peak",
        k.kernel_efficiency * 100.0,
        k.dtype,
        k.profile_model,
        k.device_name,
        k.profile_run_id,
        crate::report_table::fmt_giga(k.achieved_flops_per_s),
        crate::report_table::fmt_giga(k.peak_flops_per_s)
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "kernel",
        "share of FLOPs",
        "share of time",
        "GFLOP/s",
        "% of peak",
    ]);
    let r = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for s in k.kernels.iter().take(top) {
        t.add_row(vec![
            Cell::new(&s.label),
            r(format!("{:.1}%", s.flop_share * 100.0)),
            r(format!("{:.1}%", s.time_share * 100.0)),
            r(crate::report_table::fmt_giga(s.flops_per_s)),
            r(format!("{:.0}%", s.efficiency * 100.0)),
        ]);
    }
    let rest = &k.kernels[top.min(k.kernels.len())..];
    if !rest.is_empty() {
        let f: f64 = rest.iter().map(|s| s.flop_share).sum();
        let tm: f64 = rest.iter().map(|s| s.time_share).sum();
        t.add_row(vec![
            Cell::new(format!("{} others", rest.len())),
            r(format!("{:.1}%", f * 100.0)),
            r(format!("{:.1}%", tm * 100.0)),
            r("".into()),
            r("".into()),
        ]);
    }
    outln!(out, "{t}");
    outln!(out, "dominant: {}", k.dominant(3));
    out
}

fn render_table(e: &Estimate) -> String {
    let mut out = String::new();
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(vec!["quantity", "estimate", "low", "high"]);
    let mut row = |name: &str, mid: String, low: String, high: String| {
        t.add_row(vec![
            Cell::new(name),
            Cell::new(mid).set_alignment(CellAlignment::Right),
            Cell::new(low).set_alignment(CellAlignment::Right),
            Cell::new(high).set_alignment(CellAlignment::Right),
        ]);
    };
    let same = |s: String| (s.clone(), s.clone(), s);
    let (a, b, c) = same(sci(e.train_flops));
    row("train FLOPs (per-op)", a, b, c);
    let (a, b, c) = same(sci(e.flops_6nd));
    row("6·N·D", a, b, c);
    let (a, b, c) = same(
        e.ratio_exact_to_6nd
            .map(|r| format!("{r:.3}"))
            .unwrap_or_else(|| "—".into()),
    );
    row("per-op / 6ND", a, b, c);
    row("MFU", pct(e.mfu), pct(e.mfu_low), pct(e.mfu_high));
    row(
        "device-hours (chip)",
        num(Some(e.device_hours)),
        num(Some(e.device_hours_low)),
        num(Some(e.device_hours_high)),
    );
    row(
        "wall-clock hours",
        num(Some(e.wall_hours)),
        num(Some(e.wall_hours_low)),
        num(Some(e.wall_hours_high)),
    );
    row(
        "cost, on demand",
        usd(e.cost_usd),
        usd(e.cost_usd_low),
        usd(e.cost_usd_high),
    );
    row(
        "cost, preemptible",
        usd(e.cost_usd_preemptible),
        usd(e.cost_usd_preemptible_low),
        usd(e.cost_usd_preemptible_high),
    );
    row(
        &format!("fully loaded ({}x)", e.fully_loaded_multiplier),
        usd(e.fully_loaded_cost_usd),
        usd(e.fully_loaded_cost_usd_low),
        usd(e.fully_loaded_cost_usd_high),
    );
    row(
        "energy, kWh",
        num(e.energy_kwh),
        num(e.energy_kwh_low),
        num(e.energy_kwh_high),
    );
    row(
        "CO2e, kg",
        num(e.co2_kg),
        num(e.co2_kg_low),
        num(e.co2_kg_high),
    );
    row(
        "CO2e, lb",
        num(e.co2_lb),
        num(e.co2_lb_low),
        num(e.co2_lb_high),
    );
    outln!(
        out,
        "{} on {} x {} {} ({}), {} tokens",
        e.model,
        e.devices,
        e.hardware,
        e.device_unit,
        e.dtype,
        e.tokens
            .map(|t| format!("{t:.3e}"))
            .unwrap_or_else(|| "—".into())
    );
    outln!(out, "{t}");
    if let Some(r) = &e.flops {
        let o = &r.by_op;
        let total = o.total();
        if total > 0.0 {
            let share = |x: f64| format!("{:.1}%", 100.0 * x / total);
            outln!(out,
                "per-op training FLOPs: QKV {}, attention out {}, FFN {}, scores {}, P·V {}, vocab {}{}",
                share(o.qkv),
                share(o.attn_out),
                share(o.ffn),
                share(o.scores),
                share(o.pv),
                share(o.vocab),
                if r.causal_halved { " (scores and P·V halved: causal mask)" } else { "" }
            );
        }
    }
    if let Some(p) = e.cost_usd_per_hour {
        outln!(out, "on-demand cost per wall-clock hour: ${}", thousands(p));
    }
    if let Some(c) = e.energy_cost_usd {
        outln!(out, "electricity: ${}", thousands(c));
    }
    outln!(out, "MFU source: {}", e.mfu_source);
    outln!(out, "assumptions:");
    for a in &e.assumptions {
        outln!(out, "  - {a}");
    }
    out
}

fn assumption_lines(c: &Computed) -> String {
    let mut out = String::new();
    if c.model_constructed {
        outln!(
            out,
            "model {} is constructed: no one published it (see its catalog source)",
            c.estimate.model
        );
    }
    if let Some(p) = &c.price_source {
        outln!(out, "prices from: {p}");
    }
    outln!(
        out,
        "{} flopcal assumption(s) relied on, not published figures (override with flags, or the catalog's with --catalog):",
        c.flopcal_assumption_count
    );
    for a in &c.flopcal_assumptions {
        outln!(out, "  - {}: {}", a.figure, a.source);
    }
    out
}

fn step_lines(c: &Computed) -> String {
    let mut out = String::new();
    if let (Some(l), Some(t), Some(b), Some(m)) = (
        &c.layout,
        c.step_time_s,
        &c.step_breakdown_s,
        &c.memory_per_device_bytes,
    ) {
        let gib = |x: f64| x / (1024.0 * 1024.0 * 1024.0);
        outln!(out, "layout: {}", layout_text(l));
        outln!(
            out,
            "step {t:.3} s: compute {:.3}, tp {:.3}{}, pp {:.3}, dp {:.3}, bubble {:.3}, optimizer {:.3}; bottleneck: {}; HFU {}, {} tokens/s",
            b.compute,
            b.tp_comm,
            if l.cp > 1 {
                format!(", cp {:.3}", b.cp_comm)
            } else {
                String::new()
            },
            b.pp_comm,
            b.dp_comm,
            b.bubble,
            b.optimizer,
            c.bottleneck.as_deref().unwrap_or("-"),
            pct(c.hfu),
            num(c.tokens_per_s)
        );
        outln!(
            out,
            "memory per device: {:.1} GiB (weights {:.1}, gradients {:.1}, optimizer {:.1}, activations {:.1})",
            gib(m.total),
            gib(m.weights),
            gib(m.gradients),
            gib(m.optimizer),
            gib(m.activations)
        );
    }
    out
}

fn print_csv(e: &Estimate) -> Result<()> {
    let mut w = csv::Writer::from_writer(vec![]);
    let f = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let rows: Vec<(&str, String)> = vec![
        ("model", e.model.clone()),
        ("hardware", e.hardware.clone()),
        ("dtype", e.dtype.clone()),
        ("devices", e.devices.to_string()),
        ("tokens", f(e.tokens)),
        ("train_flops", f(e.train_flops)),
        ("flops_6nd", f(e.flops_6nd)),
        ("mfu", f(e.mfu)),
        ("mfu_low", f(e.mfu_low)),
        ("mfu_high", f(e.mfu_high)),
        ("device_hours", e.device_hours.to_string()),
        ("device_hours_low", e.device_hours_low.to_string()),
        ("device_hours_high", e.device_hours_high.to_string()),
        ("wall_hours", e.wall_hours.to_string()),
        ("cost_usd", f(e.cost_usd)),
        ("cost_usd_low", f(e.cost_usd_low)),
        ("cost_usd_high", f(e.cost_usd_high)),
        ("cost_usd_preemptible", f(e.cost_usd_preemptible)),
        ("fully_loaded_cost_usd", f(e.fully_loaded_cost_usd)),
        ("fully_loaded_cost_usd_low", f(e.fully_loaded_cost_usd_low)),
        (
            "fully_loaded_cost_usd_high",
            f(e.fully_loaded_cost_usd_high),
        ),
        ("energy_kwh", f(e.energy_kwh)),
        ("co2_kg", f(e.co2_kg)),
        ("co2_lb", f(e.co2_lb)),
        ("chip_hours", e.chip_hours.to_string()),
        ("chip_hours_low", e.chip_hours_low.to_string()),
        ("chip_hours_high", e.chip_hours_high.to_string()),
    ];
    let csv_err = |err: csv::Error| Error::Usage(format!("cannot write CSV: {err}"));
    w.write_record(rows.iter().map(|r| r.0)).map_err(csv_err)?;
    w.write_record(rows.iter().map(|r| r.1.as_str()))
        .map_err(csv_err)?;
    emit_csv(w)
}
