//! A whole profile run: a [`ProfileSpec`] (the model's kernel suite, the sampling
//! rules, the device) checked, measured in rounds through [`crate::profiling`], and
//! returned as a [`ResultFile`]. `flopcal profile` builds the spec from its flags;
//! `estimate --profile-now`, `validate` and the fleet mode build their own.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use candle_core::DType;
use flopcal_model::ModelConfig;

use crate::device::{self, DeviceChoice};
use crate::harness::contention::{self, Monitor};
use crate::harness::{self, HarnessConfig};
use crate::profiling::{
    finalize_rounds, measure_round, retry_contended, skeleton, snapshot, CHECKPOINT_EVERY_S,
};
use crate::results::{self, ProfileConfig, ResultFile, Status};
use crate::suite::{self, Entry, SuiteSpec};
use crate::{fingerprint, interrupt, BenchError, Result};

/// What to profile and how: the plain request behind `flopcal profile`'s flags, which
/// `estimate --profile-now`, `validate` and the fleet mode build too.
#[derive(Debug, Clone)]
pub struct ProfileSpec {
    /// Built-in model whose kernel suite to run: bert-base, bert-large, xlnet-large,
    /// gpt2, gpt2-xl, t5-11b. Individual dimensions can be overridden with the
    /// flags below. Default: bert-base (--quick) or bert-large.
    pub model: Option<String>,
    /// Sequence length. Default: 128 with --quick, else the model's own (512 for BERT).
    pub seq: Option<usize>,
    /// Sequences per step (tokens per step = batch × seq).
    pub batch: usize,
    /// Override: number of transformer blocks.
    pub layers: Option<u64>,
    /// Override: hidden size (d_model).
    pub hidden: Option<u64>,
    /// Override: attention heads (head width = hidden / heads unless --head-dim).
    pub heads: Option<u64>,
    /// Override: width of one attention head.
    pub head_dim: Option<u64>,
    /// Override: FFN inner width.
    pub ffn: Option<u64>,
    /// Override: vocabulary size.
    pub vocab: Option<u64>,
    /// Override: causal (decoder) attention mask.
    pub causal: Option<bool>,
    /// Dtypes of the model kernels, comma-separated: f32, bf16, f16. On CPU candle
    /// computes bf16 matmuls by widening to f32 and f16 through gemm's f16 path.
    pub dtype: Vec<String>,
    /// Square GEMM sizes for peer comparison (f32), comma-separated; `0` for none.
    pub squares: Option<Vec<usize>>,
    /// Dtypes of the --squares GEMMs, comma-separated: f32, bf16, f16 (each size is
    /// measured in each dtype).
    pub square_dtype: Vec<String>,
    /// Quick profile (under a minute on 2 cores): BERT-base at seq 128, short warm-up,
    /// 3% CI target, 0.6 s per kernel.
    pub quick: bool,
    /// Stop sampling a kernel once the 95% CI of its median is this narrow (relative).
    pub target_ci: Option<f64>,
    /// Total time budget in seconds for the whole profile; kernels share what is left.
    pub budget: Option<f64>,
    /// Measure every kernel in this many rounds through the suite and pool the samples,
    /// so each kernel's samples span the whole run and its confidence interval covers
    /// the machine's slow and fast phases, not one burst.
    pub rounds: usize,
    /// Fewest samples per kernel (at least 10 unless you lower it here).
    pub min_samples: Option<usize>,
    /// Device to run on.
    pub device: DeviceChoice,
    /// CPU threads for kernels (default: all physical cores).
    pub threads: Option<usize>,
    /// Refuse kernels needing more than this many GiB (default: available memory).
    pub max_memory: Option<f64>,
    /// Only run kernels whose id contains this text (e.g. `matmul/qkv`); several
    /// alternatives separated by commas (`qkv,layernorm`) run every kernel matching any.
    pub filter: Option<String>,
    /// Skip measuring the machine's compute and bandwidth ceilings first (without
    /// them the table has no %peak or roofline class).
    pub no_peak: bool,
    /// Seconds per ceiling measurement (FMA per ISA and dtype, bandwidth).
    pub peak_duration: f64,
    /// Under mpirun (a fleet profile): seconds rank 0 waits at the gather without
    /// hearing from a rank. It then names the silent rank(s), saves the profiles it
    /// has (marked partial) and ends the launch with exit 2. Ranks that finish their
    /// profiles further apart than this end the run too.
    pub timeout: f64,
    /// Write the result file (JSON) here, and its CSV twin next to it.
    pub out: Option<PathBuf>,
}

impl Default for ProfileSpec {
    fn default() -> Self {
        ProfileSpec {
            model: None,
            seq: None,
            batch: 8,
            layers: None,
            hidden: None,
            heads: None,
            head_dim: None,
            ffn: None,
            vocab: None,
            causal: None,
            dtype: vec!["f32".into()],
            squares: None,
            square_dtype: vec!["f32".into()],
            quick: false,
            target_ci: None,
            budget: None,
            min_samples: None,
            rounds: 3,
            device: DeviceChoice::Auto,
            threads: None,
            max_memory: None,
            filter: None,
            no_peak: false,
            peak_duration: 0.3,
            timeout: 300.0,
            out: None,
        }
    }
}

/// Resolve the model: a preset (or the default), with dimension overrides applied.
pub fn resolve_model(args: &ProfileSpec) -> Result<ModelConfig> {
    let custom = args.hidden.is_some() && args.heads.is_some();
    let base = match (&args.model, custom) {
        (Some(name), _) => flopcal_model::builtin(name)?,
        (None, true) => ModelConfig {
            name: "custom".into(),
            layers: 1,
            hidden: 1,
            heads: 1,
            head_dim: 1,
            ffn: 1,
            vocab: 32000,
            seq: 512,
            causal: false,
            ..ModelConfig::default()
        },
        (None, false) if args.quick => flopcal_model::builtin("bert-base")?,
        (None, false) => flopcal_model::builtin("bert-large")?,
    };
    let mut m = base;
    let positive = |flag: &str, v: u64| -> Result<u64> {
        if v == 0 {
            Err(BenchError::Usage(format!("--{flag} must be at least 1")))
        } else {
            Ok(v)
        }
    };
    if let Some(v) = args.layers {
        m.layers = positive("layers", v)?;
    }
    if let Some(v) = args.hidden {
        m.hidden = positive("hidden", v)?;
        m.ffn = 4 * m.hidden;
    }
    if let Some(v) = args.heads {
        m.heads = positive("heads", v)?;
    }
    if args.hidden.is_some() || args.heads.is_some() {
        if m.hidden % m.heads != 0 && args.head_dim.is_none() {
            return Err(BenchError::Usage(format!(
                "--hidden {} is not divisible by --heads {}; pass --head-dim explicitly",
                m.hidden, m.heads
            )));
        }
        m.head_dim = m.hidden / m.heads;
    }
    if let Some(v) = args.head_dim {
        m.head_dim = positive("head-dim", v)?;
    }
    if let Some(v) = args.ffn {
        m.ffn = positive("ffn", v)?;
    }
    if let Some(v) = args.vocab {
        m.vocab = positive("vocab", v)?;
    }
    if let Some(c) = args.causal {
        m.causal = c;
    }
    if m.name == "custom" && m.ffn == 1 {
        m.ffn = 4 * m.hidden;
    }
    m.validate()?;
    Ok(m)
}

fn harness_config(args: &ProfileSpec) -> Result<HarnessConfig> {
    let mut c = if args.quick {
        HarnessConfig::quick()
    } else {
        HarnessConfig::standard()
    };
    if let Some(t) = args.target_ci {
        if !(t > 0.0 && t < 1.0) {
            return Err(BenchError::Usage(format!(
                "--target-ci {t}: must be a fraction between 0 and 1, e.g. 0.02 for 2%"
            )));
        }
        c.target_ci = t;
    }
    if let Some(n) = args.min_samples {
        if n < 2 {
            return Err(BenchError::Usage("--min-samples must be at least 2".into()));
        }
        c.min_samples = n;
    }
    if let Some(b) = args.budget {
        if !(b.is_finite() && b > 0.0) {
            return Err(BenchError::Usage(format!(
                "--budget {b}: must be a positive number of seconds"
            )));
        }
    }
    check_timeout(args.timeout)?;
    Ok(c)
}

/// `--timeout` must be a positive number of seconds.
pub fn check_timeout(t: f64) -> Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(BenchError::Usage(format!(
            "--timeout {t}: must be a positive number of seconds"
        )))
    }
}

fn suite_spec(args: &ProfileSpec, model: ModelConfig) -> Result<SuiteSpec> {
    let dtypes = args
        .dtype
        .iter()
        .map(|d| {
            flopcal_kernels::parse_dtype(d).map_err(|e| BenchError::Usage(format!("--dtype: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let seq = match args.seq {
        Some(0) => return Err(BenchError::Usage("--seq must be at least 1".into())),
        Some(s) => s,
        None if args.quick => 128,
        None => usize::try_from(model.seq).unwrap_or(512),
    };
    if args.batch == 0 {
        return Err(BenchError::Usage("--batch must be at least 1".into()));
    }
    let square_dtypes = args
        .square_dtype
        .iter()
        .map(|d| {
            flopcal_kernels::parse_dtype(d)
                .map_err(|e| BenchError::Usage(format!("--square-dtype: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let squares: Vec<(usize, DType)> = match &args.squares {
        Some(list) => list
            .iter()
            .filter(|&&n| n > 0)
            .flat_map(|&n| square_dtypes.iter().map(move |&dt| (n, dt)))
            .collect(),
        None if args.quick => vec![
            (512, DType::F32),
            (1024, DType::F32),
            (2048, DType::F32),
            (1024, DType::BF16),
            (1024, DType::F16),
        ],
        None => [256, 512, 1024, 2048, 4096]
            .into_iter()
            .map(|n| (n, DType::F32))
            .chain([(2048, DType::BF16), (2048, DType::F16)])
            .collect(),
    };
    Ok(SuiteSpec {
        model,
        seq,
        batch: args.batch,
        dtypes,
        squares,
        // 16 Mi f32 per array = 64 MiB, well beyond the last-level cache of CPUs
        // flopcal targets; a triad streams 192 MiB per iteration.
        stream_elements: 1 << 24,
    })
}

/// Refuse before allocating when the largest kernel does not fit in memory.
fn check_memory(suite: &[Entry], args: &ProfileSpec) -> Result<()> {
    let available = fingerprint::available_memory();
    let (limit, source) = match args.max_memory {
        Some(g) if !(g.is_finite() && g > 0.0) => {
            return Err(BenchError::Usage(format!(
                "--max-memory {g}: must be a positive number of GiB"
            )))
        }
        Some(g) => ((g * (1u64 << 30) as f64) as u64, "--max-memory"),
        None => (available, "available memory"),
    };
    if let Some(big) = suite.iter().max_by_key(|e| e.kernel.memory_bytes()) {
        let need = big.kernel.memory_bytes();
        if limit > 0 && need > limit {
            return Err(BenchError::Usage(format!(
                "kernel {} needs about {:.2} GiB but {source} is {:.2} GiB; use a smaller --batch/--seq or raise --max-memory",
                big.kernel.id(),
                need as f64 / (1u64 << 30) as f64,
                limit as f64 / (1u64 << 30) as f64
            )));
        }
    }
    Ok(())
}

/// A progress bar on stderr, only when stderr is a terminal (never in pipes or CI).
fn progress_bar(len: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    ) {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Everything a profile run produced, for callers that go on to estimate.
pub struct ProfileRun {
    /// The result file (also written to `--out` when given).
    pub file: ResultFile,
    /// Where it was saved.
    pub saved: Option<PathBuf>,
}

/// Run a profile and return the result without printing it. With `--out`, the
/// file is also checkpointed (marked partial) every couple of seconds while it runs,
/// so a kill that leaves no time to save still leaves what was measured.
pub fn execute(args: &ProfileSpec) -> Result<ProfileRun> {
    match &args.out {
        Some(out) => execute_with(args, Some(&mut |snap| results::save(snap, out).map(|_| ()))),
        None => execute_with(args, None),
    }
}

/// Where a running profile's checkpoints go: called with each partial snapshot.
pub type Checkpoint<'a> = &'a mut dyn FnMut(&ResultFile) -> Result<()>;

/// [`execute`], handing each checkpoint to `checkpoint` instead (fleet mode's rank 0
/// wraps its own profile in a fleet file); with `None` no snapshot is taken. A
/// failing checkpoint is reported once and checkpointing stops: the final save
/// still happens.
pub fn execute_with(
    args: &ProfileSpec,
    mut checkpoint: Option<Checkpoint<'_>>,
) -> Result<ProfileRun> {
    // Validates --budget (among others) before it becomes a Duration.
    let config = harness_config(args)?;
    // The budget covers everything from here: the ceilings, preparation, verification.
    let deadline = harness::Deadline::new(args.budget.map(Duration::from_secs_f64));
    let model = resolve_model(args)?;
    let spec = suite_spec(args, model.clone())?;
    let mut suite = suite::derive(&spec)?;
    if let Some(f) = &args.filter {
        let wanted: Vec<&str> = f.split(',').filter(|t| !t.is_empty()).collect();
        suite.retain(|e| wanted.iter().any(|t| e.kernel.id().contains(t)));
        if suite.is_empty() {
            return Err(BenchError::Usage(format!(
                "--filter {f:?} matches no kernel of this suite"
            )));
        }
    }
    check_memory(&suite, args)?;
    if let Some(out) = &args.out {
        results::check_writable(out)?;
    }
    if !(args.peak_duration.is_finite() && args.peak_duration > 0.0 && args.peak_duration <= 60.0) {
        return Err(BenchError::Usage(format!(
            "--peak-duration {}: must be between 0 and 60 seconds",
            args.peak_duration
        )));
    }
    let threads = device::configure_threads(args.threads)?;
    let device = device::open(args.device)?;
    interrupt::install();
    let peak = if args.no_peak || args.filter.is_some() {
        None
    } else {
        // Under a --budget the ceilings (about seven measurements) get a tenth of it.
        let duration_s = match args.budget {
            Some(b) => args.peak_duration.min(b / 70.0),
            None => args.peak_duration,
        };
        let opts = crate::ceilings::PeakOptions {
            duration_s,
            threads,
            // The C cross-check and the narrower ISAs belong to `flopcal peak`; the
            // roofline needs only the widest ISA per dtype and the bandwidths.
            reference: false,
            widest_only: true,
            ..crate::ceilings::PeakOptions::new()
        };
        let pb = progress_bar(0);
        let section =
            crate::ceilings::measure(&opts, |what| pb.set_message(format!("ceiling: {what}")))?;
        pb.finish_and_clear();
        Some(section)
    };

    let mut file = ResultFile {
        header: results::FileHeader::new(None, &chrono::Utc::now()),
        host: fingerprint::collect(&device, threads),
        harness: config.clone(),
        profile: ProfileConfig {
            model,
            seq: spec.seq,
            batch: spec.batch,
            dtypes: spec.dtypes.iter().map(|d| d.as_str().to_string()).collect(),
            quick: args.quick,
            rounds: args.rounds,
        },
        peak,
        contention: None,
        round_drift_sd: None,
        round_readings_note: harness::machine::availability_note(),
        benchmarks: Vec::with_capacity(suite.len()),
    };

    if args.rounds == 0 {
        return Err(BenchError::Usage("--rounds must be at least 1".into()));
    }
    let rounds = args.rounds;
    // Each round takes its share of the per-kernel sample floor and budget.
    let round_cfg = harness::round_config(&config, rounds);
    let pb = progress_bar(suite.len() * rounds);
    // Something outside the process slows a shared host in episodes; a probe reading
    // around every kernel round tells those rounds apart (CPU only: the episodes
    // seen slow the host's own memory-bound kernels).
    let mut monitor = if device.is_cpu() {
        Some(contention::layernorm_monitor(&device)?)
    } else {
        None
    };
    let total = suite.len() * rounds;
    let mut done = 0;
    file.benchmarks = suite.iter().map(skeleton).collect();
    let mut last_checkpoint = std::time::Instant::now();
    'rounds: for round in 0..rounds {
        for (i, entry) in suite.iter().enumerate() {
            let bench = &mut file.benchmarks[i];
            if interrupt::requested() {
                file.header.partial = true;
                break 'rounds;
            }
            pb.set_message(format!(
                "round {}/{rounds} {}",
                round + 1,
                entry.kernel.id()
            ));
            let mut cfg = round_cfg.clone();
            if let Some(b) = args.budget {
                // Share what is left of the total budget equally among the remaining
                // kernel rounds (preparation and verification come out of the same
                // share); the hard limit stops even a kernel whose samples would not
                // fit, so every kernel gets measured and the total stays in budget.
                let share = (b - deadline.elapsed_s()).max(0.0) / (total - done) as f64;
                cfg.budget_s = cfg.budget_s.min(0.6 * share);
                cfg.warmup_s = cfg.warmup_s.min(0.2 * share);
                cfg.hard_limit_s = Some(0.8 * share);
            }
            done += 1;
            pb.inc(1);
            if deadline.expired() {
                if bench.summary.is_none() && bench.status == Status::Skipped {
                    bench.message = Some("skipped: --budget spent".into());
                }
                continue;
            }
            measure_round(
                bench,
                entry,
                &device,
                &cfg,
                round == 0,
                monitor.as_mut(),
                true,
            );
            if bench
                .summary
                .as_ref()
                .is_some_and(|s| s.stop == harness::StopReason::Interrupted)
            {
                file.header.partial = true;
            }
            if let Some(save) = checkpoint
                .as_mut()
                .filter(|_| last_checkpoint.elapsed().as_secs_f64() >= CHECKPOINT_EVERY_S)
            {
                let snap = snapshot(&file, &suite, monitor.as_ref().map(Monitor::best));
                if let Err(e) = save(&snap) {
                    pb.suspend(|| eprintln!("warning: checkpoint failed ({e}); the run goes on and saves at the end"));
                    checkpoint = None;
                }
                last_checkpoint = std::time::Instant::now();
            }
        }
    }
    // Retries may take half as long again as the planned rounds took (at least five
    // seconds). A --budget run has shared its time out already: it keeps its
    // contended rounds flagged but does not retry them.
    let (retried, waited) = match monitor.as_mut() {
        Some(m) if !interrupt::requested() && args.budget.is_none() => {
            let allowance = (0.5 * deadline.elapsed_s()).max(5.0);
            retry_contended(
                &mut file,
                &suite,
                &device,
                &round_cfg,
                m,
                allowance,
                &deadline,
                &|msg| pb.set_message(msg.to_string()),
            )
        }
        _ => (0, 0.0),
    };
    file.round_drift_sd = finalize_rounds(
        &mut file.benchmarks,
        &suite,
        monitor.as_ref().map(Monitor::best),
    );
    file.contention = monitor.map(|m| results::ContentionRecord {
        probe: contention::LAYERNORM_PROBE.into(),
        best_probe_s: m.best(),
        threshold_ratio: contention::CONTENDED_RATIO,
        readings: m.readings(),
        contended_rounds: file.benchmarks.iter().map(|b| b.contended_rounds()).sum(),
        retried_rounds: retried,
        waited_s: waited,
    });
    pb.finish_and_clear();
    if interrupt::requested() {
        file.header.partial = true;
    }
    let saved = match &args.out {
        Some(out) => {
            results::save(&file, out)?;
            Some(out.clone())
        }
        None => None,
    };
    Ok(ProfileRun { file, saved })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_dimensions_build_a_consistent_model() {
        let args = ProfileSpec {
            hidden: Some(512),
            heads: Some(8),
            layers: Some(6),
            vocab: Some(1000),
            ..ProfileSpec::default()
        };
        let m = resolve_model(&args).unwrap();
        assert_eq!((m.hidden, m.heads, m.head_dim, m.ffn), (512, 8, 64, 2048));
    }

    #[test]
    fn indivisible_heads_are_refused_with_a_fix() {
        let args = ProfileSpec {
            hidden: Some(500),
            heads: Some(8),
            ..ProfileSpec::default()
        };
        let e = resolve_model(&args).unwrap_err().to_string();
        assert!(e.contains("--head-dim"), "{e}");
    }
}
