//! `flopcal validate`: time one real training step and compare it with the time the
//! step model predicts from the kernel profile of the same machine. The flags become a
//! [`ValidateSpec`]; the run is [`crate::validate_run`].

use std::path::PathBuf;

use clap::Args;

use crate::render::table::outln;
use crate::render::{self, OutputFormat};
use crate::validate::StepPrediction;
use crate::validate_run::{execute, ValidateReport, ValidateSpec};
use crate::{Outcome, Result};
use flopcal_bench::device::DeviceChoice;
use flopcal_bench::report_table::fmt_duration;

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

impl ValidateArgs {
    /// The plain request these flags make.
    pub fn spec(&self) -> ValidateSpec {
        ValidateSpec {
            model: self.model.clone(),
            batch: self.batch,
            seq: self.seq,
            layers: self.layers,
            causal: self.causal,
            bound: self.bound,
            profile: self.profile.clone(),
            out: self.out.clone(),
            quick: self.quick,
            device: self.device,
            threads: self.threads,
        }
    }
}

/// Measurement rounds of a validation (re-exported for the tests that count them).
pub use crate::validate_run::rounds;

fn print_table(r: &ValidateReport, pred: &StepPrediction) -> Result<()> {
    let mut out = String::new();
    outln!(
        out,
        "flopcal validate: {} ({} layers × {} hidden, batch {}, seq {}{}) on {}",
        r.model,
        r.layers,
        r.hidden,
        r.batch,
        r.seq,
        if r.causal { ", causal" } else { "" },
        r.device
    );
    outln!(out, "  profile:   {}", r.profile_source);
    if let Some([a, b]) = r.load_average {
        outln!(
            out,
            "  load:      1-min load average {a:.1} at the start, {b:.1} at the end, on {} logical CPUs",
            r.logical_cpus
        );
    }
    outln!(
            out,
        "  predicted: {}  (step model, single device, fed with this profile's kernel means; 95% CI {} – {})",
        fmt_duration(r.predicted_step_s),
        fmt_duration(r.predicted_ci95_s[0]),
        fmt_duration(r.predicted_ci95_s[1])
    );
    outln!(
        out,
        "  measured:  {}  (mean; 95% CI {} – {}; {} steps over {} rounds)",
        fmt_duration(r.measured_step_s),
        fmt_duration(r.measured_ci95_s[0]),
        fmt_duration(r.measured_ci95_s[1]),
        r.step_samples,
        r.rounds
    );
    outln!(
        out,
        "  ratio:     {:.3}  (95% CI {:.3} – {:.3}); bound ±{:.0}%: {}",
        r.ratio,
        r.ratio_ci95[0],
        r.ratio_ci95[1],
        r.bound * 100.0,
        if r.within_bound { "within" } else { "OUTSIDE" }
    );
    outln!(
        out,
        "  medians:   step model on kernel medians {}, step median {} (reference only)",
        fmt_duration(r.predicted_median_sum_s),
        fmt_duration(r.measured_median_s)
    );
    outln!(
        out,
        "  left out:  the step model's optimizer update, {} (the candle step has none)",
        fmt_duration(r.step_model_optimizer_s)
    );
    outln!(out, "  GEMM rates: {}", r.gemm_rate_source);
    outln!(out, "  op times:   {}", r.op_time_source);
    outln!(
        out,
        "  largest terms of the prediction (count × seconds each):"
    );
    for t in pred.terms.iter().take(8) {
        outln!(
            out,
            "    {:>10}  {:>5.1} × {:>10}  {}",
            fmt_duration(t.total_s),
            t.count,
            fmt_duration(t.mean_s),
            t.id
        );
    }
    render::stdout(&out)
}

/// Run `flopcal validate`.
pub fn run(args: &ValidateArgs) -> Result<Outcome> {
    let crate::validate_run::ValidateRun {
        report,
        prediction: pred,
    } = execute(&args.spec())?;
    match args.format {
        OutputFormat::Json => render::json::print(&report)?,
        OutputFormat::Csv => {
            let mut w = render::csv::writer();
            w.write_record([
                "model",
                "layers",
                "hidden",
                "batch",
                "seq",
                "causal",
                "predicted_step_s",
                "measured_step_s",
                "ratio",
                "ratio_ci_low",
                "ratio_ci_high",
                "within_bound",
            ])
            .map_err(render::csv::error)?;
            w.write_record([
                report.model.to_string(),
                report.layers.to_string(),
                report.hidden.to_string(),
                report.batch.to_string(),
                report.seq.to_string(),
                report.causal.to_string(),
                report.predicted_step_s.to_string(),
                report.measured_step_s.to_string(),
                report.ratio.to_string(),
                report.ratio_ci95[0].to_string(),
                report.ratio_ci95[1].to_string(),
                report.within_bound.to_string(),
            ])
            .map_err(render::csv::error)?;
            render::csv::print(w)?;
        }
        OutputFormat::Table => print_table(&report, &pred)?,
    }
    Ok(if report.within_bound {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
