//! `flopcal validate`: time one real training step and compare it with the time
//! flopcal predicts from the kernel profile of the same machine.

use std::path::PathBuf;

use candle_core::DType;
use clap::Args;
use flopcal_kernels::step::{StepConfig, TrainingStep};
use flopcal_kernels::Prepared;
use serde::Serialize;

use crate::commands::profile::{self, ProfileArgs};
use crate::device::{self, DeviceChoice};
use crate::harness::{self, HarnessConfig, KernelExecutor};
use crate::output::{print_json, OutputFormat};
use crate::report_table::fmt_duration;
use crate::results::{self, ResultFile};
use crate::validate::{self, Prediction, Term};
use crate::{interrupt, Error, Outcome, Result};

/// Arguments of `flopcal validate`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Examples:\n  flopcal validate --quick\n  flopcal validate --model small --format json\n  flopcal validate --model base-short --batch 2 --seq 64 --bound 0.1\n  flopcal validate --model tiny --out tiny.json && flopcal validate --model tiny --profile tiny.json"
)]
pub struct ValidateArgs {
    /// Model preset: tiny (2 × 128), small (4 × 256), base-short (BERT-base dims,
    /// 12 × 768, seq 64). All fit a 2-core CPU in seconds per step.
    #[arg(long, value_name = "NAME", default_value = "tiny")]
    pub model: String,
    /// Sequences per step (default: the preset's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Sequence length (default: the preset's).
    #[arg(long)]
    pub seq: Option<usize>,
    /// Override the number of transformer blocks.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Causal (decoder) attention mask.
    #[arg(long)]
    pub causal: bool,
    /// Exit 1 when predicted/measured is off by more than this fraction (0.15 = ±15%).
    #[arg(long, default_value_t = 0.15, value_name = "FRACTION")]
    pub bound: f64,
    /// Predict from this profile file instead of profiling now. It must be of this
    /// schema version, from the requested device, and hold every kernel the step needs
    /// (`flopcal validate --out FILE` writes one).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Save the profile this run measured (suite and `*.train` kernels) here.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Quick mode: the harness's quick settings (under two minutes for `tiny` on 2 cores).
    #[arg(long)]
    pub quick: bool,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// CPU threads (default: all physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

impl Default for ValidateArgs {
    fn default() -> Self {
        ValidateArgs {
            model: "tiny".into(),
            batch: None,
            seq: None,
            layers: None,
            causal: false,
            bound: 0.15,
            profile: None,
            out: None,
            quick: false,
            device: DeviceChoice::Auto,
            threads: None,
            format: OutputFormat::Table,
        }
    }
}

/// What `validate --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// The preset.
    pub model: String,
    /// The step's sizes.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Sequence length.
    pub seq: usize,
    /// Batch.
    pub batch: usize,
    /// Causal mask.
    pub causal: bool,
    /// Device the step ran on.
    pub device: String,
    /// Predicted seconds per step (Σ count × kernel median).
    pub predicted_step_s: f64,
    /// 95% interval of the prediction.
    pub predicted_ci95_s: [f64; 2],
    /// Measured median seconds per step.
    pub measured_step_s: f64,
    /// 95% interval of the measured median.
    pub measured_ci95_s: [f64; 2],
    /// predicted / measured.
    pub ratio: f64,
    /// 95% interval of the ratio.
    pub ratio_ci95: [f64; 2],
    /// The bound (fraction).
    pub bound: f64,
    /// `|ratio − 1| ≤ bound`.
    pub within_bound: bool,
    /// Loss of the verified step (≈ ln V at initialisation).
    pub loss_at_init: Option<f64>,
    /// Where the profile came from: `measured in this run` or a file.
    pub profile_source: String,
    /// The prediction's terms, largest first.
    pub terms: Vec<Term>,
}

fn step_config(args: &ValidateArgs) -> Result<StepConfig> {
    let p = validate::preset(&args.model)?;
    let positive = |flag: &str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(Error::Usage(format!("--{flag} must be at least 1"))),
        Some(v) => Ok(v),
        None => Ok(default),
    };
    if !(args.bound.is_finite() && args.bound > 0.0) {
        return Err(Error::Usage(format!(
            "--bound {}: must be a positive fraction, e.g. 0.15 for ±15%",
            args.bound
        )));
    }
    Ok(StepConfig {
        layers: positive("layers", args.layers, p.layers)?,
        hidden: p.hidden,
        heads: p.heads,
        head_dim: p.hidden / p.heads,
        ffn: p.ffn,
        vocab: p.vocab,
        seq: positive("seq", args.seq, p.seq)?,
        batch: positive("batch", args.batch, p.batch)?,
        causal: args.causal,
        dtype: DType::F32,
    })
}

/// The `flopcal profile` arguments that measure this step's suite kernels.
fn profile_args(args: &ValidateArgs, c: &StepConfig) -> ProfileArgs {
    ProfileArgs {
        seq: Some(c.seq),
        batch: c.batch,
        layers: Some(c.layers as u64),
        hidden: Some(c.hidden as u64),
        heads: Some(c.heads as u64),
        head_dim: Some(c.head_dim as u64),
        ffn: Some(c.ffn as u64),
        vocab: Some(c.vocab as u64),
        causal: Some(c.causal),
        squares: Some(vec![0]),
        quick: args.quick,
        device: args.device,
        threads: args.threads,
        filter: Some("matmul/".into()),
        ..ProfileArgs::default()
    }
}

fn suggest(args: &ValidateArgs, c: &StepConfig) -> String {
    let mut cmd = format!(
        "flopcal validate --model {} --batch {} --seq {} --layers {}",
        args.model, c.batch, c.seq, c.layers
    );
    if c.causal {
        cmd.push_str(" --causal");
    }
    cmd.push_str(" --out FILE");
    cmd
}

/// Load `--profile` and check it can predict this step on this device.
fn load_profile(
    path: &std::path::Path,
    args: &ValidateArgs,
    c: &StepConfig,
    needs: &[validate::Need],
    device_name: &str,
) -> Result<ResultFile> {
    let file = results::load(path)?;
    if file.host.device != device_name {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "profile was measured on device `{}` but this run uses `{device_name}`; profile this device (`{}`) or pass --device to match",
                file.host.device,
                suggest(args, c)
            ),
        });
    }
    let lacking = validate::missing(needs, &file);
    if !lacking.is_empty() {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "profile lacks {} kernel(s) this step needs: {}. Measure them with `{}` (or run validate without --profile to measure everything now)",
                lacking.len(),
                lacking.join(", "),
                suggest(args, c)
            ),
        });
    }
    Ok(file)
}

/// Profile the suite GEMMs and the `*.train` kernels in this run.
fn measure_profile(
    args: &ValidateArgs,
    c: &StepConfig,
    needs: &[validate::Need],
    device: &candle_core::Device,
) -> Result<ResultFile> {
    let mut run = profile::execute(&profile_args(args, c))?;
    if let Some(out) = &args.out {
        results::check_writable(out)?;
    }
    let config = if args.quick {
        HarnessConfig::quick()
    } else {
        HarnessConfig::standard()
    };
    for need in needs {
        let id = need.entry.kernel.id();
        if run.file.benchmarks.iter().any(|b| b.id == id) {
            continue;
        }
        if interrupt::requested() {
            run.file.partial = true;
            break;
        }
        run.file
            .benchmarks
            .push(profile::measure_one(&need.entry, device, &config));
    }
    Ok(run.file)
}

/// Time the real training step; returns (median, ci low, ci high, loss at init).
fn measure_step(
    c: &StepConfig,
    device: &candle_core::Device,
    quick: bool,
) -> Result<(f64, f64, f64, Option<f64>)> {
    let mut step = TrainingStep::new(c, device)?;
    let v = step.verify()?;
    if !v.passed {
        return Err(Error::Usage(format!(
            "the training step failed its check (loss {:?} vs ln V = {:.3}, or a non-finite gradient)",
            step.last_loss(),
            (c.vocab as f64).ln()
        )));
    }
    let loss = step.last_loss();
    let mut config = if quick {
        HarnessConfig::quick()
    } else {
        HarnessConfig::standard()
    };
    // A step lasts tens of milliseconds or more: give it at least as many samples
    // as a kernel gets, and the time that takes.
    config.budget_s = config.budget_s.max(2.0);
    let mut exec = KernelExecutor::new(&mut step);
    let m = harness::measure(&mut exec, &config, &interrupt::requested)?;
    let s = m.summary.ok_or(Error::Interrupted { saved: None })?;
    Ok((s.median, s.ci_low, s.ci_high, loss))
}

fn print_table(r: &ValidateReport, pred: &Prediction) {
    println!(
        "flopcal validate: {} ({} layers × {} hidden, batch {}, seq {}{}) on {}",
        r.model,
        r.layers,
        r.hidden,
        r.batch,
        r.seq,
        if r.causal { ", causal" } else { "" },
        r.device
    );
    println!("  profile:   {}", r.profile_source);
    println!(
        "  predicted: {}  (95% CI {} – {})",
        fmt_duration(r.predicted_step_s),
        fmt_duration(r.predicted_ci95_s[0]),
        fmt_duration(r.predicted_ci95_s[1])
    );
    println!(
        "  measured:  {}  (95% CI {} – {})",
        fmt_duration(r.measured_step_s),
        fmt_duration(r.measured_ci95_s[0]),
        fmt_duration(r.measured_ci95_s[1])
    );
    println!(
        "  ratio:     {:.3}  (95% CI {:.3} – {:.3}); bound ±{:.0}%: {}",
        r.ratio,
        r.ratio_ci95[0],
        r.ratio_ci95[1],
        r.bound * 100.0,
        if r.within_bound { "within" } else { "OUTSIDE" }
    );
    println!("  largest terms of the prediction:");
    for t in pred.terms.iter().take(8) {
        println!(
            "    {:>10}  {:>5.1} × {:>10}  {}",
            fmt_duration(t.total_s),
            t.count,
            fmt_duration(t.median_s),
            t.id
        );
    }
}

/// Run `flopcal validate`.
pub fn run(args: &ValidateArgs) -> Result<Outcome> {
    let c = step_config(args)?;
    let needs = validate::needed_kernels(&c)?;
    let threads = device::configure_threads(args.threads)?;
    let _ = threads;
    let dev = device::open(args.device)?;
    let device_name = device::device_name(&dev);
    interrupt::install();
    let (file, source) = match &args.profile {
        Some(path) => (
            load_profile(path, args, &c, &needs, &device_name)?,
            path.display().to_string(),
        ),
        None => (
            measure_profile(args, &c, &needs, &dev)?,
            "measured in this run".to_string(),
        ),
    };
    if file.partial || interrupt::requested() {
        return Err(Error::Interrupted { saved: None });
    }
    if let (None, Some(out)) = (&args.profile, &args.out) {
        results::save(&file, out)?;
        eprintln!("saved {}", out.display());
    }
    let pred = validate::predict(&needs, &file)?;
    let (measured, m_low, m_high, loss) = measure_step(&c, &dev, args.quick)?;
    let (ratio, r_low, r_high) = validate::ratio(&pred, measured, m_low, m_high);
    let within = (ratio - 1.0).abs() <= args.bound;
    let report = ValidateReport {
        model: args.model.clone(),
        layers: c.layers,
        hidden: c.hidden,
        seq: c.seq,
        batch: c.batch,
        causal: c.causal,
        device: device_name,
        predicted_step_s: pred.step_s,
        predicted_ci95_s: [pred.ci_low_s, pred.ci_high_s],
        measured_step_s: measured,
        measured_ci95_s: [m_low, m_high],
        ratio,
        ratio_ci95: [r_low, r_high],
        bound: args.bound,
        within_bound: within,
        loss_at_init: loss,
        profile_source: source,
        terms: pred.terms.clone(),
    };
    match args.format {
        OutputFormat::Json => print_json(&report)?,
        OutputFormat::Csv => {
            println!("model,layers,hidden,batch,seq,causal,predicted_step_s,measured_step_s,ratio,ratio_ci_low,ratio_ci_high,within_bound");
            println!(
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                report.model,
                report.layers,
                report.hidden,
                report.batch,
                report.seq,
                report.causal,
                report.predicted_step_s,
                report.measured_step_s,
                report.ratio,
                r_low,
                r_high,
                within
            );
        }
        OutputFormat::Table => print_table(&report, &pred),
    }
    Ok(if within {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
