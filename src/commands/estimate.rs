//! `flopcal estimate`: training FLOPs → hours → dollars (on demand, preemptible, fully
//! loaded), energy and CO2, with a low–high band from the calibrated MFU spread.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};
use flopcal_model::catalog::{Catalog, Unit, CATALOG_ENV};
use flopcal_model::cost::{estimate, Assumptions, Estimate, MfuSource, Plan, Workload};
use flopcal_model::flops::{Family, FlopOptions, Phase, Recompute};
use flopcal_model::{calibrate::Fit, ModelConfig};

use crate::output::{print_json, OutputFormat};
use crate::{Error, Outcome, Result};

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

/// Arguments of `flopcal estimate`.
#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// Catalog model (e.g. bert-large, gpt2-xl, t5-11b); its published schedule is used
    /// unless --tokens or --steps/--batch are given. Config flags override its fields.
    #[arg(long)]
    pub model: Option<String>,
    /// Transformer blocks (custom config, or override of --model).
    #[arg(long)]
    pub layers: Option<f64>,
    /// Model width h (custom config, or override).
    #[arg(long)]
    pub hidden: Option<f64>,
    /// Attention heads (custom config, or override).
    #[arg(long)]
    pub heads: Option<f64>,
    /// Width of one head (default: hidden / heads).
    #[arg(long)]
    pub head_dim: Option<f64>,
    /// FFN width (default: 4 × hidden).
    #[arg(long)]
    pub ffn: Option<f64>,
    /// Vocabulary size (default for a custom config: 32000).
    #[arg(long)]
    pub vocab: Option<f64>,
    /// Causal (decoder) attention: halves the score and P·V FLOPs.
    #[arg(long)]
    pub causal: bool,
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
    /// Sequence length (default: the model's).
    #[arg(long, allow_negative_numbers = true)]
    pub seq: Option<f64>,
    /// Activation recomputation.
    #[arg(long, value_enum, default_value_t = RecomputeArg::None)]
    pub recompute: RecomputeArg,
    /// Fraction of positions through the vocabulary projection (BERT's MLM: 0.15).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub vocab_fraction: f64,
    /// Catalog hardware (e.g. tpu-v3, v100, a100, h100).
    #[arg(long)]
    pub hardware: String,
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
    #[arg(long, allow_negative_numbers = true, conflicts_with = "mfu")]
    pub kernel_efficiency: Option<f64>,
    /// On-demand price, USD per chip (GPU) hour, instead of the catalog's.
    #[arg(long, allow_negative_numbers = true)]
    pub price: Option<f64>,
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
    /// Catalog override file (TOML with [[hardware]], [[models]], [[runs]]); also
    /// taken from the FLOPCAL_CATALOG environment variable.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// `writeln!` into a `String` (writing to a `String` cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use outln;

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic or a message.
pub(crate) fn emit(text: &str) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

/// Finish a CSV writer that wrote into memory and print it.
pub(crate) fn emit_csv(w: csv::Writer<Vec<u8>>) -> Result<()> {
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Usage(format!("cannot write CSV: {e}")))?;
    emit(&String::from_utf8_lossy(&bytes));
    Ok(())
}

/// The embedded catalog, overridden by `--catalog` or `$FLOPCAL_CATALOG`.
pub fn load_catalog(flag: Option<&Path>) -> Result<Catalog> {
    let env = std::env::var_os(CATALOG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = flag.map(Path::to_path_buf).or(env);
    Ok(Catalog::load(path.as_deref())?)
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

fn count(flag: &str, v: f64) -> Result<u64> {
    let v = positive(flag, v)?;
    if v.fract() != 0.0 || v > 9.0e15 {
        return Err(Error::Usage(format!(
            "--{flag} must be a whole number (got {v})"
        )));
    }
    Ok(v as u64)
}

fn opt_count(flag: &str, v: Option<f64>) -> Result<Option<u64>> {
    v.map(|x| count(flag, x)).transpose()
}

/// Build the plan (what is trained) from the arguments.
pub fn plan_from_args(args: &EstimateArgs, cat: &Catalog) -> Result<Plan> {
    let options = FlopOptions {
        recompute: match args.recompute {
            RecomputeArg::None => Recompute::None,
            RecomputeArg::Full => Recompute::Full,
            RecomputeArg::Selective => Recompute::Selective,
        },
        vocab_fraction: args.vocab_fraction,
    };
    let has_config = args.layers.is_some() || args.hidden.is_some() || args.heads.is_some();
    if let Some(p) = args.params {
        if args.model.is_some() || has_config {
            return Err(Error::Usage("--params is for a 6·N·D estimate without an architecture: drop --model / config flags, or drop --params".into()));
        }
        let tokens = match (args.tokens, args.steps, args.batch) {
            (Some(t), _, _) => positive("tokens", t)?,
            (None, Some(s), Some(b)) => {
                let seq = args.seq.ok_or_else(|| {
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
        return Ok(Plan {
            label: "custom (6ND)".into(),
            workload: Workload::ParamsTokens {
                params: positive("params", p)?,
                tokens,
            },
        });
    }
    let (mut cfg, family, schedule) = match &args.model {
        Some(name) => {
            let m = cat.model(name)?;
            (m.config(), m.family, m.training.clone())
        }
        None if has_config => {
            let hidden = count(
                "hidden",
                args.hidden.ok_or_else(|| {
                    Error::Usage("a custom config needs --layers, --hidden and --heads".into())
                })?,
            )?;
            let heads = count(
                "heads",
                args.heads.ok_or_else(|| {
                    Error::Usage("a custom config needs --layers, --hidden and --heads".into())
                })?,
            )?;
            let layers = count(
                "layers",
                args.layers.ok_or_else(|| {
                    Error::Usage("a custom config needs --layers, --hidden and --heads".into())
                })?,
            )?;
            (
                ModelConfig {
                    name: "custom".into(),
                    layers,
                    hidden,
                    heads,
                    head_dim: (hidden / heads).max(1),
                    ffn: 4 * hidden,
                    vocab: 32000,
                    seq: 2048,
                    causal: args.causal,
                },
                Family::Generic,
                vec![],
            )
        }
        None => {
            if args.hours.is_some() {
                return Ok(Plan {
                    label: "-".into(),
                    workload: Workload::Duration,
                });
            }
            return Err(Error::Usage(
                "say what to train: --model NAME, a config (--layers --hidden --heads), or --params N --tokens D (or cost a known duration with --hours)".into(),
            ));
        }
    };
    if let Some(v) = opt_count("layers", args.layers)? {
        cfg.layers = v;
    }
    if let Some(v) = opt_count("hidden", args.hidden)? {
        cfg.hidden = v;
    }
    if let Some(v) = opt_count("heads", args.heads)? {
        cfg.heads = v;
    }
    if let Some(v) = opt_count("head-dim", args.head_dim)? {
        cfg.head_dim = v;
    } else if args.model.is_none() || args.hidden.is_some() || args.heads.is_some() {
        cfg.head_dim = (cfg.hidden / cfg.heads).max(1);
    }
    if let Some(v) = opt_count("ffn", args.ffn)? {
        cfg.ffn = v;
    } else if args.model.is_none() {
        cfg.ffn = 4 * cfg.hidden;
    }
    if let Some(v) = opt_count("vocab", args.vocab)? {
        cfg.vocab = v;
    }
    if args.causal {
        cfg.causal = true;
    }
    let seq = opt_count("seq", args.seq)?;
    if let Some(s) = seq {
        cfg.seq = s;
    }
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
        (None, Some(st), Some(b)) => vec![Phase {
            steps: count("steps", st)?,
            batch: count("batch", b)?,
            seq: cfg.seq,
        }],
        (None, None, None) => {
            if schedule.is_empty() {
                if args.hours.is_some() {
                    return Ok(Plan {
                        label: cfg.name.clone(),
                        workload: Workload::Duration,
                    });
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
    Ok(Plan {
        label: cfg.name.clone(),
        workload: Workload::Config {
            config: cfg,
            family,
            phases,
            options,
        },
    })
}

/// Compute the estimate for the arguments (no printing).
pub fn compute(args: &EstimateArgs) -> Result<Estimate> {
    let cat = load_catalog(args.catalog.as_deref())?;
    let hw = cat.hardware(&args.hardware)?;
    let plan = plan_from_args(args, &cat)?;
    let chips = match args.devices {
        Some(d) => {
            let d = positive("devices", d)?;
            hw.chips(
                d,
                match args.unit {
                    DeviceUnit::Chip => Unit::Chip,
                    DeviceUnit::Core => Unit::Core,
                    DeviceUnit::Device => Unit::Device,
                },
            )
        }
        None => f64::from(hw.chips_per_device),
    };
    let mfu = match (args.mfu, args.kernel_efficiency) {
        (Some(m), _) => {
            if !(m.is_finite() && m > 0.0 && m <= 1.0) {
                return Err(Error::Usage(format!("--mfu must be in (0, 1] (got {m})")));
            }
            MfuSource::User { mfu: m }
        }
        (None, Some(k)) => Fit::from_catalog(&cat)?.measured_mfu(hw, k)?,
        (None, None) => {
            if args.hours.is_some() {
                MfuSource::User { mfu: 1.0 }
            } else {
                Fit::from_catalog(&cat)?.calibrated_mfu(hw)?
            }
        }
    };
    let mut a = Assumptions::new(chips, mfu);
    a.dtype = args.dtype.clone();
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
    if args.hours.is_some() && (args.mfu.is_some() || args.kernel_efficiency.is_some()) {
        return Err(Error::Usage(
            "--hours fixes the duration: drop --mfu / --kernel-efficiency".into(),
        ));
    }
    Ok(estimate(&plan, hw, &a)?)
}

/// Run `flopcal estimate`.
pub fn run(args: &EstimateArgs) -> Result<Outcome> {
    let e = compute(args)?;
    match args.format {
        OutputFormat::Json => print_json(&e)?,
        OutputFormat::Csv => print_csv(&e)?,
        OutputFormat::Table => print_table(&e),
    }
    Ok(Outcome::Success)
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

fn usd(x: Option<f64>) -> String {
    x.map(|v| format!("${}", thousands(v)))
        .unwrap_or_else(|| "—".into())
}

fn num(x: Option<f64>) -> String {
    x.map(|v| {
        if v.abs() >= 100.0 {
            thousands(v)
        } else {
            format!("{v:.2}")
        }
    })
    .unwrap_or_else(|| "—".into())
}

fn sci(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3e}")).unwrap_or_else(|| "—".into())
}

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn print_table(e: &Estimate) {
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
    emit(&out);
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
    ];
    let csv_err = |err: csv::Error| Error::Usage(format!("cannot write CSV: {err}"));
    w.write_record(rows.iter().map(|r| r.0)).map_err(csv_err)?;
    w.write_record(rows.iter().map(|r| r.1.as_str()))
        .map_err(csv_err)?;
    emit_csv(w)
}
