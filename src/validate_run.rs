//! One validation run: time a real training step and the kernels it is made of in
//! interleaved rounds, predict the step from that kernel profile with the step model,
//! and judge the prediction against the measurement. `flopcal validate` builds the
//! [`ValidateSpec`] from its flags and prints the [`ValidateReport`].

use std::path::PathBuf;

use candle_core::DType;
use flopcal_kernels::step::{StepConfig, TrainingStep};
use flopcal_kernels::Prepared;
use serde::Serialize;

use crate::validate::{self, StepPrediction, Term};
use crate::{Error, Result};
use flopcal_bench::device::{self, DeviceChoice};
use flopcal_bench::fingerprint;
use flopcal_bench::harness::{HarnessConfig, KernelExecutor};
use flopcal_bench::interrupt;
use flopcal_bench::profile_run::{self, ProfileSpec};
use flopcal_bench::results::{self, ResultFile};

/// What to validate and how: the plain request behind `flopcal validate`'s flags.
#[derive(Debug, Clone)]
pub struct ValidateSpec {
    /// Model preset: tiny (2 × 128), small (4 × 256), base-short (BERT-base dims,
    /// 12 × 768, seq 64). All fit a 2-core CPU in seconds per step.
    pub model: String,
    /// Sequences per step (default: the preset's).
    pub batch: Option<usize>,
    /// Sequence length (default: the preset's).
    pub seq: Option<usize>,
    /// Override the number of transformer blocks.
    pub layers: Option<usize>,
    /// Causal (decoder) attention mask.
    pub causal: bool,
    /// Exit 1 when predicted/measured is off by more than this fraction (0.15 = ±15%).
    pub bound: f64,
    /// Predict from this profile file instead of profiling now. It must be of this
    /// schema version, from the requested device, and hold every kernel the step needs
    /// (`flopcal validate --out FILE` writes one).
    pub profile: Option<PathBuf>,
    /// Save the profile this run measured (suite and `*.train` kernels) here.
    pub out: Option<PathBuf>,
    /// Quick mode: the harness's quick settings (under two minutes for `tiny` on 2 cores).
    pub quick: bool,
    /// Device to run on.
    pub device: DeviceChoice,
    /// CPU threads (default: all physical cores).
    pub threads: Option<usize>,
}

impl Default for ValidateSpec {
    fn default() -> Self {
        ValidateSpec {
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
    /// Predicted seconds per step: the step model's single-device step fed with this
    /// profile's kernel means, less its optimizer update.
    pub predicted_step_s: f64,
    /// 95% interval of the prediction.
    pub predicted_ci95_s: [f64; 2],
    /// Measured mean seconds per step.
    pub measured_step_s: f64,
    /// 95% interval of the measured mean.
    pub measured_ci95_s: [f64; 2],
    /// Measured median seconds per step (for reference).
    pub measured_median_s: f64,
    /// The step model fed with the kernels' medians (for reference; their tails left
    /// out).
    pub predicted_median_sum_s: f64,
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
    /// Measurement rounds (kernels and step measured in turn, samples pooled).
    pub rounds: usize,
    /// Step samples pooled over the rounds.
    pub step_samples: usize,
    /// Seconds of every timed step, in the order they ran (rounds one after the
    /// other), to see warm-up or load bursts.
    pub measured_samples_s: Vec<f64>,
    /// 1-minute load average at the start and at the end of the run (Linux), and
    /// the logical CPUs it is out of: how busy the machine was while measuring.
    pub load_average: Option<[f64; 2]>,
    /// Logical CPUs of this machine.
    pub logical_cpus: usize,
    /// The prediction's terms, largest first.
    pub terms: Vec<Term>,
    /// The step model's prediction (the judged figure, `predicted_step_s`).
    pub step_model_predicted_s: Option<f64>,
    /// `step_model_predicted_s / measured_step_s`.
    pub step_model_ratio: Option<f64>,
    /// The step model's optimizer update, seconds, left out of the prediction (the
    /// candle step has none).
    pub step_model_optimizer_s: f64,
    /// Where the step model's GEMM rates came from.
    pub gemm_rate_source: String,
    /// Where its memory-bound op times came from.
    pub op_time_source: String,
}

fn step_config(args: &ValidateSpec) -> Result<StepConfig> {
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

/// The profile request that measures this step's suite kernels.
fn profile_spec(args: &ValidateSpec, c: &StepConfig) -> ProfileSpec {
    ProfileSpec {
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
        // The first pass verifies and sizes the kernels; the interleaved rounds
        // give the samples that count.
        min_samples: Some(3),
        target_ci: Some(0.1),
        quick: args.quick,
        device: args.device,
        threads: args.threads,
        filter: Some("matmul/".into()),
        ..ProfileSpec::default()
    }
}

fn suggest(args: &ValidateSpec, c: &StepConfig) -> String {
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
    args: &ValidateSpec,
    c: &StepConfig,
    needs: &[validate::Need],
    device_name: &str,
    cpu_model: &str,
) -> Result<ResultFile> {
    let file = results::load(path)?;
    if file.host.cpu_model != cpu_model {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "profile was measured on CPU `{}` but this machine's CPU is `{cpu_model}`; a profile only predicts the machine it was measured on: profile this one (`{}`)",
                file.host.cpu_model,
                suggest(args, c)
            ),
        });
    }
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

/// Interleaved rounds. After a first pass that verifies every kernel (and gives the
/// saved profile its shape), the kernels and the step are timed in turn, `ROUNDS`
/// times: every kernel for `1/ROUNDS` of its budget, then the step for at least one
/// iteration. The prediction and the measurement use only these interleaved samples,
/// so on a shared machine, where the load changes within seconds (a compile starting,
/// another benchmark finishing), both sides see the same mix of quiet and busy
/// periods. Measured on a 2-core machine at load 3–4, the step's own samples were
/// bimodal (0.7 s quiet, 3.5 s busy, for `base-short`) with regimes lasting ~10 s; 3
/// or 5 coarse rounds of ~15 s each left the two sides in different regimes.
pub const ROUNDS: usize = 10;

/// Rounds in `--quick` mode: fewer, so that `base-short` stays near a minute.
pub const QUICK_ROUNDS: usize = 6;

/// The number of interleaved rounds for the mode.
pub fn rounds(quick: bool) -> usize {
    if quick {
        QUICK_ROUNDS
    } else {
        ROUNDS
    }
}

/// Harness settings of the first (verifying) pass: the mode's settings with a floor of
/// 3 samples, since the interleaved rounds provide the samples that count.
fn first_pass_config(quick: bool) -> HarnessConfig {
    let mut config = if quick {
        HarnessConfig::quick()
    } else {
        HarnessConfig::standard()
    };
    config.budget_s /= rounds(quick) as f64;
    config.min_samples = 3;
    config
}

/// Profile the suite GEMMs and the `*.train` kernels in this run (the first pass:
/// verification and a first estimate of iterations per sample).
fn measure_profile(
    args: &ValidateSpec,
    c: &StepConfig,
    needs: &[validate::Need],
    device: &candle_core::Device,
) -> Result<ResultFile> {
    let mut run = profile_run::execute(&profile_spec(args, c))?;
    if let Some(out) = &args.out {
        results::check_writable(out)?;
    }
    let config = first_pass_config(args.quick);
    for need in needs {
        let id = need.entry.kernel.id();
        if run.file.benchmarks.iter().any(|b| b.id == id) {
            continue;
        }
        if interrupt::requested() {
            run.file.header.partial = true;
            break;
        }
        run.file
            .benchmarks
            .push(flopcal_bench::profiling::measure_one(
                &need.entry,
                device,
                &config,
            ));
    }
    Ok(run.file)
}

/// One kernel kept prepared across the interleaved rounds.
struct Timed {
    id: String,
    prepared: Box<dyn Prepared>,
    iters_per_sample: u64,
    samples: Vec<f64>,
}

/// The interleaved rounds: kernels (when `file` is to be measured) then the step,
/// `ROUNDS` times. Replaces every kernel's samples in `file` with its interleaved ones.
fn interleave(
    file: Option<&mut ResultFile>,
    needs: &[validate::Need],
    timer: &mut StepTimer,
    device: &candle_core::Device,
    quick: bool,
) -> Result<()> {
    let base = if quick {
        HarnessConfig::quick()
    } else {
        HarnessConfig::standard()
    };
    let rounds = rounds(quick);
    let kernel_slice = base.budget_s / rounds as f64;
    let step_slice = base.budget_s.max(2.0) / rounds as f64;
    let mut kernels = Vec::new();
    if let Some(file) = file.as_deref() {
        for need in needs {
            let id = need.entry.kernel.id();
            let Some(b) = file.benchmarks.iter().find(|b| b.id == id) else {
                continue;
            };
            // Aim at the harness's minimum sample duration with the first pass's median.
            let median = b.summary.as_ref().map_or(0.0, |s| s.median_s);
            let iters = if median > 0.0 {
                (base.min_sample_s / median).ceil().max(1.0) as u64
            } else {
                b.iters_per_sample
            };
            kernels.push(Timed {
                id,
                prepared: need.entry.kernel.prepare(device)?,
                iters_per_sample: iters,
                samples: Vec::new(),
            });
        }
    }
    for round in 0..rounds {
        for k in &mut kernels {
            if interrupt::requested() {
                return Err(Error::Interrupted { saved: None });
            }
            let mut exec = KernelExecutor::new(k.prepared.as_mut());
            let got = validate::time_slice(&mut exec, 1, k.iters_per_sample, kernel_slice)?;
            k.prepared.idle();
            k.samples.extend(got);
        }
        if interrupt::requested() {
            return Err(Error::Interrupted { saved: None });
        }
        // The kernels' first runs took memory the step had freed: in the first round
        // the step needs two iterations to find its steady state again (measured: with
        // one, the first timed step of base-short took 1.1 s against 0.65 s).
        let untimed = if round == 0 { 3 } else { 1 };
        let mut exec = KernelExecutor::new(&mut timer.step);
        let got = validate::time_slice(&mut exec, untimed, 1, step_slice)?;
        timer.samples.extend(got);
    }
    if let Some(file) = file {
        for k in kernels {
            if let Some(b) = file.benchmarks.iter_mut().find(|b| b.id == k.id) {
                b.samples_s.clear();
                b.iters_per_sample = k.iters_per_sample;
                validate::pool_samples(b, &k.samples);
            }
        }
    }
    Ok(())
}

/// The real training step, verified, and its timed samples.
struct StepTimer {
    step: TrainingStep,
    samples: Vec<f64>,
    loss: Option<f64>,
}

impl StepTimer {
    /// Build and verify the step, then run it twice more so that the timed
    /// iterations find their activations' memory already allocated and faulted in.
    fn new(c: &StepConfig, device: &candle_core::Device) -> Result<Self> {
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
        for _ in 0..2 {
            step.run()?;
        }
        step.synchronize()?;
        Ok(StepTimer {
            step,
            samples: Vec::new(),
            loss,
        })
    }
}

/// The 1-minute load average (Linux), to report how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The prediction, the verdict and the report of one validation.
pub struct ValidateRun {
    /// What `validate --format json` prints.
    pub report: ValidateReport,
    /// The step model's prediction behind it.
    pub prediction: StepPrediction,
}

/// Validate: measure (or load) the kernel profile and the real step in interleaved
/// rounds, predict the step from the profile, and judge the prediction (no printing).
pub fn execute(args: &ValidateSpec) -> Result<ValidateRun> {
    let c = step_config(args)?;
    let needs = validate::needed_kernels(&c)?;
    let threads = device::configure_threads(args.threads)?;
    let dev = device::open(args.device)?;
    let device_name = device::device_name(&dev);
    let host = fingerprint::collect(&dev, threads);
    let load_start = load_average();
    interrupt::install();
    let mut file = match &args.profile {
        Some(path) => Some(load_profile(
            path,
            args,
            &c,
            &needs,
            &device_name,
            &host.cpu_model,
        )?),
        None => None,
    };
    // Verify the step before spending a minute on its kernels.
    let mut timer = StepTimer::new(&c, &dev)?;
    let source = match &args.profile {
        Some(path) => path.display().to_string(),
        None => {
            file = Some(measure_profile(args, &c, &needs, &dev)?);
            format!(
                "measured in this run, in {} rounds interleaved with the step",
                rounds(args.quick)
            )
        }
    };
    let mut file = file.ok_or(Error::Interrupted { saved: None })?;
    if file.header.partial || interrupt::requested() {
        return Err(Error::Interrupted { saved: None });
    }
    let measure_kernels = args.profile.is_none();
    interleave(
        measure_kernels.then_some(&mut file),
        &needs,
        &mut timer,
        &dev,
        args.quick,
    )?;
    if let (None, Some(out)) = (&args.profile, &args.out) {
        results::save(&file, out)?;
        eprintln!("saved {}", out.display());
    }
    let pred = validate::predict(&needs, &file, &c)?;
    let v = validate::judge(&pred, &timer.samples, args.bound)
        .ok_or(Error::Interrupted { saved: None })?;
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
        measured_step_s: v.measured_s,
        measured_ci95_s: v.measured_ci95_s,
        measured_median_s: v.measured_median_s,
        predicted_median_sum_s: pred.median_sum_s,
        ratio: v.ratio,
        ratio_ci95: v.ratio_ci95,
        bound: args.bound,
        within_bound: v.within_bound,
        loss_at_init: timer.loss,
        profile_source: source,
        rounds: rounds(args.quick),
        step_samples: timer.samples.len(),
        measured_samples_s: timer.samples.clone(),
        load_average: load_start.zip(load_average()).map(|(a, b)| [a, b]),
        logical_cpus: host.logical_cpus,
        terms: pred.terms.clone(),
        step_model_predicted_s: Some(pred.step_s),
        step_model_ratio: Some(v.ratio),
        step_model_optimizer_s: pred.optimizer_s,
        gemm_rate_source: pred.gemm_source.clone(),
        op_time_source: pred.ops_source.clone(),
    };
    Ok(ValidateRun {
        report,
        prediction: pred,
    })
}
