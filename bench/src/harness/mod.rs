//! The measurement harness: warm-up, batching of short kernels, adaptive sampling
//! until the median's confidence interval is tight enough, and statistics.
//!
//! # Optional stopping
//!
//! Stopping at the first sample whose interval looks narrow enough biases that
//! interval narrow. So the interval is only looked at on a fixed geometric schedule
//! of sample counts ([`look_schedule`]: `min_samples`, then ×1.5 up to
//! `max_samples`), and every look uses the Bonferroni-corrected level
//! `1 − 0.05 / looks` ([`look_alpha`]). Whichever look sampling stops at, the
//! probability that *any* look's interval misses the true median is at most 5%, so
//! the reported interval is a true ≥ 95% interval despite the data-dependent stop.
//! The time budget is checked at the same looks (sampling stops at a look when the
//! next one would end past the budget), so it cannot pick the stopping point either.
//! Only an interrupt or a whole-run `hard_limit_s` stops between looks.
//!
//! The harness never reads a clock itself: an [`Executor`] runs a batch of iterations
//! and reports how long they took. [`KernelExecutor`] times a prepared kernel with
//! device synchronisation around the clock reads; tests use [`MockExecutor`] to drive
//! the statistics deterministically, as hyperfine does with its mock executor.

pub mod compare;
pub mod contention;
pub mod machine;
pub mod stats;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use stats::{summarize, summarize_at, Summary};

/// How a kernel is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HarnessConfig {
    /// Longest warm-up per kernel, in seconds; warm-up ends earlier once three
    /// consecutive iteration times agree within 5%.
    pub warmup_s: f64,
    /// Fewest samples taken, whatever the CI or budget says.
    pub min_samples: usize,
    /// Most samples taken.
    pub max_samples: usize,
    /// Stop once the 95% CI of the median is this narrow relative to the median.
    pub target_ci: f64,
    /// Time budget per kernel, in seconds of measured time (after warm-up).
    pub budget_s: f64,
    /// Short kernels are batched so one sample lasts at least this long, in seconds.
    pub min_sample_s: f64,
    /// Hard cap on warm-up plus sampling, in seconds, that overrides `min_samples`
    /// (set from a whole-run `--budget`, which the user asked to be respected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_limit_s: Option<f64>,
}

impl HarnessConfig {
    /// The default: 2% CI target, 10 to 10,000 samples, 1 ms samples, 3 s per kernel.
    pub fn standard() -> Self {
        HarnessConfig {
            warmup_s: 0.5,
            min_samples: 10,
            max_samples: 10_000,
            target_ci: 0.02,
            budget_s: 3.0,
            min_sample_s: 1e-3,
            hard_limit_s: None,
        }
    }

    /// The `--quick` profile: shorter warm-up and budget, same 10-sample floor.
    pub fn quick() -> Self {
        HarnessConfig {
            warmup_s: 0.1,
            budget_s: 0.6,
            target_ci: 0.03,
            ..Self::standard()
        }
    }
}

/// Why sampling stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The CI reached the target width.
    Converged,
    /// The time budget ran out first (the CI is wider than the target).
    Budget,
    /// `max_samples` was reached.
    MaxSamples,
    /// The user interrupted; the samples so far are kept.
    Interrupted,
}

/// Runs a batch of iterations of the thing being measured.
pub trait Executor {
    /// Run `iters` iterations back to back and return the elapsed seconds, with the
    /// device synchronised before the clock is read at both ends.
    fn run_batch(&mut self, iters: u64) -> Result<f64, flopcal_kernels::KernelError>;
}

/// Times a prepared kernel with the wall clock.
pub struct KernelExecutor<'a> {
    kernel: &'a mut dyn flopcal_kernels::Prepared,
}

impl<'a> KernelExecutor<'a> {
    /// Wrap a prepared kernel.
    pub fn new(kernel: &'a mut dyn flopcal_kernels::Prepared) -> Self {
        KernelExecutor { kernel }
    }
}

impl Executor for KernelExecutor<'_> {
    fn run_batch(&mut self, iters: u64) -> Result<f64, flopcal_kernels::KernelError> {
        self.kernel.synchronize()?;
        let start = Instant::now();
        for _ in 0..iters {
            self.kernel.run()?;
        }
        self.kernel.synchronize()?;
        Ok(start.elapsed().as_secs_f64())
    }
}

/// A deterministic executor for tests: per-iteration times come from a function of
/// the call index, so statistics can be checked without a clock.
pub struct MockExecutor<F: FnMut(usize) -> f64> {
    next: F,
    calls: usize,
}

impl<F: FnMut(usize) -> f64> MockExecutor<F> {
    /// `per_iter(i)` gives the per-iteration seconds of the `i`-th batch.
    pub fn new(per_iter: F) -> Self {
        MockExecutor {
            next: per_iter,
            calls: 0,
        }
    }

    /// Batches run so far (warm-up included).
    pub fn calls(&self) -> usize {
        self.calls
    }
}

impl<F: FnMut(usize) -> f64> Executor for MockExecutor<F> {
    fn run_batch(&mut self, iters: u64) -> Result<f64, flopcal_kernels::KernelError> {
        let t = (self.next)(self.calls);
        self.calls += 1;
        Ok(t * iters as f64)
    }
}

/// Everything measured for one kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Per-iteration seconds, one entry per sample (a sample's time over its batch).
    pub samples: Vec<f64>,
    /// Iterations per sample.
    pub iters_per_sample: u64,
    /// Iterations run during warm-up.
    pub warmup_iters: u64,
    /// Statistics of `samples`; `None` only when interrupted before any sample.
    pub summary: Option<Summary>,
    /// Why sampling stopped.
    pub stop: StopReason,
}

/// Growth factor between successive looks at the interval.
pub const LOOK_RATIO: f64 = 1.5;

/// Confidence level the harness guarantees for every reported interval.
pub const CONFIDENCE: f64 = 0.95;

/// The sample counts at which [`measure`] looks at the interval: `min_samples`
/// (at least 1), then each ×[`LOOK_RATIO`] (rounded up), ending at `max_samples`.
pub fn look_schedule(config: &HarnessConfig) -> Vec<usize> {
    let max = config.max_samples.max(1);
    let mut n = config.min_samples.clamp(1, max);
    let mut looks = vec![n];
    while n < max {
        n = ((n as f64 * LOOK_RATIO).ceil() as usize)
            .max(n + 1)
            .min(max);
        looks.push(n);
    }
    looks
}

/// The most samples the plan of one kernel allows for: `max_samples`, or fewer
/// when samples of `sample_s` seconds (the warm-up's pace) would spend twice the
/// budget first; never below `min_samples`.
pub fn planned_max_samples(config: &HarnessConfig, sample_s: f64) -> usize {
    let affordable = if sample_s > 0.0 && config.budget_s.is_finite() {
        (2.0 * config.budget_s / sample_s)
            .ceil()
            .min(config.max_samples as f64) as usize
    } else {
        config.max_samples
    };
    affordable.clamp(
        config.min_samples.min(config.max_samples),
        config.max_samples.max(1),
    )
}

/// The per-look `alpha` of the Bonferroni correction: `(1 − CONFIDENCE) / looks`.
pub fn look_alpha(config: &HarnessConfig) -> f64 {
    (1.0 - CONFIDENCE) / look_schedule(config).len() as f64
}

/// The plan of one round when a kernel is measured in `rounds` rounds: its share of
/// the sample floor (at least 2) and of the budget.
pub fn round_config(config: &HarnessConfig, rounds: usize) -> HarnessConfig {
    let rounds = rounds.max(1);
    HarnessConfig {
        min_samples: config.min_samples.div_ceil(rounds).max(2),
        budget_s: config.budget_s / rounds as f64,
        ..config.clone()
    }
}

/// Measure with `exec` under `config`. `interrupted` is polled between samples.
pub fn measure(
    exec: &mut dyn Executor,
    config: &HarnessConfig,
    interrupted: &dyn Fn() -> bool,
) -> Result<Measurement, flopcal_kernels::KernelError> {
    // Warm-up: single iterations until three agree within 5%, or the warm-up budget.
    let mut warm: Vec<f64> = Vec::new();
    let mut warm_total = 0.0;
    loop {
        let t = exec.run_batch(1)?;
        warm.push(t);
        warm_total += t;
        let settled = warm.len() >= 3 && {
            let last = &warm[warm.len() - 3..];
            let (lo, hi) = last
                .iter()
                .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
            hi <= lo * 1.05
        };
        let capped = config.hard_limit_s.is_some_and(|h| warm_total >= h);
        if settled || capped || warm_total >= config.warmup_s || interrupted() {
            break;
        }
    }
    let per_iter = stats::median_sorted(&stats::sorted(&warm[warm.len().saturating_sub(3)..]));
    let iters = if per_iter > 0.0 {
        // The factor absorbs float error so an exact ratio does not round up.
        ((config.min_sample_s / per_iter * (1.0 - 1e-9)).ceil() as u64).clamp(1, 1 << 24)
    } else {
        1 << 10
    };

    // Looks beyond what the budget can pay for at the warm-up's pace never happen;
    // planning them would only dilute the correction. The plan is fixed before the
    // first sample (the warm-up iterations are not samples), so the guarantee holds.
    let planned = HarnessConfig {
        max_samples: planned_max_samples(config, per_iter * iters as f64),
        ..config.clone()
    };
    let schedule = look_schedule(&planned);
    let alpha = look_alpha(&planned);
    let mut next_look = schedule.iter().copied().peekable();
    let mut samples = Vec::with_capacity(config.min_samples.max(64));
    let mut spent = 0.0;
    let stop = loop {
        if interrupted() {
            break StopReason::Interrupted;
        }
        let t = exec.run_batch(iters)?;
        spent += t;
        samples.push(t / iters as f64);
        let n = samples.len();
        if n >= config.max_samples {
            break StopReason::MaxSamples;
        }
        // Stop when one more sample like this one would cross the hard limit.
        if config
            .hard_limit_s
            .is_some_and(|h| warm_total + spent + t >= h)
        {
            break StopReason::Budget;
        }
        if next_look.peek() != Some(&n) {
            continue;
        }
        next_look.next();
        if summarize_at(&samples, alpha).is_some_and(|s| s.ci_rel_width() <= config.target_ci) {
            break StopReason::Converged;
        }
        // Would the next look end past the budget (at this look's pace)?
        let projected = next_look
            .peek()
            .map_or(f64::INFINITY, |&m| spent * m as f64 / n as f64);
        if projected > config.budget_s {
            break StopReason::Budget;
        }
    };
    Ok(Measurement {
        summary: summarize_at(&samples, alpha),
        samples,
        iters_per_sample: iters,
        warmup_iters: warm.len() as u64,
        stop,
    })
}

/// Wall-clock budget tracker for a whole run of many kernels.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    start: Instant,
    budget: Option<Duration>,
}

impl Deadline {
    /// Start now; `None` means unlimited.
    pub fn new(budget: Option<Duration>) -> Self {
        Deadline {
            start: Instant::now(),
            budget,
        }
    }

    /// Seconds since start.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Whether the budget is spent.
    pub fn expired(&self) -> bool {
        self.budget.is_some_and(|b| self.start.elapsed() >= b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    #[test]
    fn constant_timings_converge_after_the_minimum_samples() {
        let mut exec = MockExecutor::new(|_| 0.01);
        let m = measure(&mut exec, &HarnessConfig::standard(), &never).unwrap();
        assert_eq!(m.stop, StopReason::Converged);
        assert_eq!(m.samples.len(), 10);
        assert_eq!(m.warmup_iters, 3);
        assert_eq!(m.summary.unwrap().median, 0.01);
    }

    #[test]
    fn short_kernels_are_batched_to_at_least_the_minimum_sample_time() {
        let mut exec = MockExecutor::new(|_| 1e-6);
        let m = measure(&mut exec, &HarnessConfig::standard(), &never).unwrap();
        assert_eq!(m.iters_per_sample, 1000);
        assert!((m.summary.unwrap().median - 1e-6).abs() < 1e-15);
    }

    #[test]
    fn noisy_timings_sample_until_the_budget_when_the_ci_stays_wide() {
        // Alternating ±30% around 10 ms never gives a 2% CI... until many samples.
        let mut exec = MockExecutor::new(|i| if i % 2 == 0 { 0.013 } else { 0.007 });
        let config = HarnessConfig {
            budget_s: 0.5,
            ..HarnessConfig::standard()
        };
        let m = measure(&mut exec, &config, &never).unwrap();
        assert_eq!(m.stop, StopReason::Budget);
        // Sampling stops at the last look whose successor would overrun the budget.
        let spent: f64 = m.samples.iter().sum::<f64>() * m.iters_per_sample as f64;
        assert!((0.5 / LOOK_RATIO..=0.5).contains(&spent), "spent {spent}");
        // Only the looks the budget pays for were planned: a milder correction.
        assert!(m.summary.unwrap().alpha > look_alpha(&config));
    }

    #[test]
    fn looks_follow_a_fixed_geometric_schedule_and_share_the_five_percent() {
        let c = HarnessConfig {
            max_samples: 100,
            ..HarnessConfig::standard()
        };
        assert_eq!(look_schedule(&c), vec![10, 15, 23, 35, 53, 80, 100]);
        assert!((look_alpha(&c) - 0.05 / 7.0).abs() < 1e-15);
        // The default plan still allows an interval at the 10-sample floor.
        let d = HarnessConfig::standard();
        assert!(stats::min_samples_for_ci(look_alpha(&d)) <= d.min_samples);
    }

    #[test]
    fn fewer_samples_than_an_interval_needs_are_never_converged() {
        // Constant times would "converge" at once, but 4 samples have no interval
        // at any level: the harness samples on to a look where one exists.
        let mut exec = MockExecutor::new(|_| 0.01);
        let config = HarnessConfig {
            min_samples: 4,
            ..HarnessConfig::standard()
        };
        let m = measure(&mut exec, &config, &never).unwrap();
        assert_eq!(m.stop, StopReason::Converged);
        let need = stats::min_samples_for_ci(look_alpha(&config));
        assert!(m.samples.len() >= need, "{} < {need}", m.samples.len());
        assert!(m.summary.unwrap().ci.is_some());
    }

    /// Noise models of the coverage simulations.
    #[derive(Debug, Clone, Copy)]
    enum Noise {
        /// 10 ms ± 3% normal.
        Normal,
        /// 10 ms × exp(N(0, 0.2)): right-skewed like preempted timings.
        LogNormal,
        /// 70% near 10 ms, 30% near 13 ms (two clock or placement states).
        Bimodal,
    }

    impl Noise {
        fn draw(self, rng: &mut rand::rngs::StdRng) -> f64 {
            use rand::Rng;
            let (u, v): (f64, f64) = (rng.random(), rng.random());
            let z = (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            match self {
                Noise::Normal => 0.01 * (1.0 + 0.03 * z),
                Noise::LogNormal => 0.01 * (0.2 * z).exp(),
                Noise::Bimodal if rng.random::<f64>() < 0.7 => 0.01 * (1.0 + 0.01 * z),
                Noise::Bimodal => 0.013 * (1.0 + 0.01 * z),
            }
        }

        fn true_median(self) -> f64 {
            use statrs::distribution::{ContinuousCDF, Normal};
            match self {
                Noise::Normal | Noise::LogNormal => 0.01,
                // 0.7·Φ((m − 10 ms)/0.1 ms) = 0.5; the 13 ms mode adds nothing there.
                Noise::Bimodal => {
                    let z = Normal::standard().inverse_cdf(0.5 / 0.7);
                    0.01 * (1.0 + 0.01 * z)
                }
            }
        }
    }

    /// Fraction of 1,000 seeded runs of [`measure`] whose reported interval holds
    /// the true median.
    fn coverage(noise: Noise, config: &HarnessConfig, seed: u64) -> f64 {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let truth = noise.true_median();
        let runs = 1000;
        let covered = (0..runs)
            .filter(|_| {
                let mut exec = MockExecutor::new(|_| noise.draw(&mut rng));
                let m = measure(&mut exec, config, &never).unwrap();
                let (lo, hi) = m.summary.and_then(|s| s.ci).expect("an interval");
                lo <= truth && truth <= hi
            })
            .count();
        covered as f64 / runs as f64
    }

    #[test]
    fn reported_intervals_cover_the_true_median_at_fixed_and_adaptive_sample_counts() {
        for (i, noise) in [Noise::Normal, Noise::LogNormal, Noise::Bimodal]
            .into_iter()
            .enumerate()
        {
            for n in [10, 30, 100] {
                let sim = HarnessConfig {
                    warmup_s: 0.0,
                    min_sample_s: 0.0,
                    budget_s: 1e9,
                    ..HarnessConfig::standard()
                };
                // A fixed plan of exactly n samples.
                let fixed = HarnessConfig {
                    min_samples: n,
                    max_samples: n,
                    target_ci: 0.0,
                    ..sim.clone()
                };
                // Adaptive: looks from 10 up to n, with a target that some runs meet
                // early and some never, so the stop depends on the data.
                let adaptive = HarnessConfig {
                    min_samples: 10,
                    max_samples: n,
                    target_ci: 0.05,
                    ..sim.clone()
                };
                // Adaptive under a time budget that pays for about n samples of 10 ms:
                // the plan ends near n, the budget stops at a look.
                let budgeted = HarnessConfig {
                    budget_s: 0.005 * n as f64,
                    ..adaptive.clone()
                };
                for (plan, config) in [
                    ("fixed", fixed),
                    ("adaptive", adaptive),
                    (
                        "budgeted",
                        HarnessConfig {
                            max_samples: 10_000,
                            ..budgeted
                        },
                    ),
                ] {
                    let c = coverage(noise, &config, 1000 * i as u64 + n as u64);
                    assert!(c >= 0.94, "{noise:?} {plan} n = {n}: coverage {c}");
                }
            }
        }
    }

    #[test]
    fn moderate_noise_converges_once_the_ci_is_narrow_enough() {
        // Deterministic pseudo-noise of ±5%: the CI of the median shrinks like 1/sqrt(n).
        let mut state = 12345u64;
        let mut exec = MockExecutor::new(move |_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            0.01 * (0.95 + 0.1 * u)
        });
        let config = HarnessConfig {
            budget_s: 100.0,
            ..HarnessConfig::standard()
        };
        let m = measure(&mut exec, &config, &never).unwrap();
        assert_eq!(m.stop, StopReason::Converged);
        let s = m.summary.unwrap();
        assert!(s.ci_rel_width() <= 0.02);
        assert!(
            m.samples.len() > 10,
            "needed more than the floor: {}",
            m.samples.len()
        );
    }

    #[test]
    fn an_interrupt_stops_sampling_and_keeps_what_was_measured() {
        let polls = std::cell::Cell::new(0);
        let interrupted = || {
            polls.set(polls.get() + 1);
            polls.get() > 8
        };
        // Constant times settle the warm-up after three iterations.
        let mut exec = MockExecutor::new(|_| 0.01);
        let m = measure(&mut exec, &HarnessConfig::standard(), &interrupted).unwrap();
        assert_eq!(m.stop, StopReason::Interrupted);
        // Two polls during warm-up (before three timings exist), then one per sample.
        assert_eq!(m.samples.len(), 6);
        assert!(m.summary.is_some());
    }

    #[test]
    fn a_hard_limit_overrides_the_minimum_sample_count() {
        let mut exec = MockExecutor::new(|_| 0.1);
        let config = HarnessConfig {
            hard_limit_s: Some(0.75),
            ..HarnessConfig::standard()
        };
        let m = measure(&mut exec, &config, &never).unwrap();
        assert_eq!(m.stop, StopReason::Budget);
        // Three warm-up iterations (0.3 s), then samples while one more still fits.
        assert_eq!(m.samples.len(), 4);
    }

    #[test]
    fn max_samples_caps_sampling() {
        let mut exec = MockExecutor::new(|i| if i % 2 == 0 { 0.013 } else { 0.007 });
        let config = HarnessConfig {
            max_samples: 15,
            budget_s: 1e9,
            ..HarnessConfig::standard()
        };
        let m = measure(&mut exec, &config, &never).unwrap();
        assert_eq!(m.stop, StopReason::MaxSamples);
        assert_eq!(m.samples.len(), 15);
    }
}
