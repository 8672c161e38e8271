//! Statistical comparison of two result files: which benchmarks got faster, slower,
//! stayed the same, or regressed.
//!
//! Benchmarks are matched by id. Samples within one round of a profile are not
//! independent: the machine's speed drifts between rounds (profile measures it as
//! `round_drift_sd`), so pooling samples as i.i.d. reads drift as significance. When
//! both files measured a kernel in two or more rounds, the **round is the unit**
//! ([`compare_rounds`]): the change is the difference of the mean log round medians,
//! tested with a moderated t statistic (Smyth 2004, *Stat. Appl. Genet. Mol. Biol.*
//! 3(1) art. 3): the kernel's own between-round variance, pooled over both files,
//! is shrunk toward the typical between-round variance of all kernels of both files
//! ([`crate::harness::stats::typical_drift`]) with [`PRIOR_DF`] degrees of freedom,
//! so three rounds that happen to agree cannot claim a steadier machine than the run
//! saw. Files with one round per kernel (or hand-made ones) fall back to the
//! sample-level comparison: a bootstrap 95% CI of the change in median throughput
//! (both sets of raw samples resampled, log space; see [`crate::harness::compare`])
//! and a one-sided Mann–Whitney test, with a note that samples were treated as
//! independent. A benchmark is a
//! **regression** only when the slowdown is significant (`p < alpha`) *and* the whole
//! CI lies beyond the noise threshold (the CI's upper end is below `−noise`): a
//! significant 1% slowdown is real but is not worth failing a build over, and a large
//! but uncertain one is not yet evidence. A regression *fails* the run when its point
//! estimate is at least `threshold` (default: the noise threshold).
//!
//! Two runs are comparable only on the same kind of machine and build: the host
//! fingerprints must agree on CPU model, device, device name, thread count and build
//! features, or every benchmark is `incomparable` (unless `allow_different_hosts`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::harness::compare::{self, DEFAULT_RESAMPLES, DEFAULT_SEED};
use crate::results::{Benchmark, ResultFile, Status};
use crate::{BenchError, Result};

/// Default significance level of the one-sided Mann–Whitney test.
pub const DEFAULT_ALPHA: f64 = 0.01;

/// Default noise threshold: the CI of a regression must lie entirely beyond −5%.
pub const DEFAULT_NOISE: f64 = 0.05;

/// Confidence level of the reported CI of each change.
pub const CI_LEVEL: f64 = 0.95;

/// Settings of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressOptions {
    /// Significance level of the one-sided tests.
    pub alpha: f64,
    /// Relative noise threshold (0.05 = 5%).
    pub noise: f64,
    /// Slowdown (relative, point estimate) at which a regression fails the run.
    pub threshold: f64,
    /// Compare even when the host fingerprints differ.
    pub allow_different_hosts: bool,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap RNG seed.
    pub seed: u64,
    /// Control of false regressions over the whole suite: `none` tests each kernel
    /// at `alpha` on its own; `holm` holds the chance of any false verdict in the
    /// suite at `alpha` (Holm–Bonferroni step-down over the compared kernels).
    #[serde(default)]
    pub correct: Correction,
}

/// How `regress` controls false verdicts over many kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    /// Each kernel at `alpha` on its own (over a suite, some kernel is flagged more
    /// often than `alpha`).
    #[default]
    None,
    /// Holm–Bonferroni (Holm 1979, *Scand. J. Statist.* 6(2):65–70): the chance that
    /// any kernel of the suite is falsely flagged stays at most `alpha`, under any
    /// dependence between kernels.
    Holm,
}

impl Correction {
    /// Lower-case name as given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Correction::None => "none",
            Correction::Holm => "holm",
        }
    }
}

/// Holm's step-down adjusted p-values, in the order given: the `i`-th smallest
/// p-value of `m` is multiplied by `m − i` (i from 0), capped at 1, and made
/// non-decreasing in that order. A kernel is significant at family-wise level α
/// when its adjusted p-value is below α.
pub fn holm_adjust(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![1.0; m];
    let mut running = 0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

impl Default for RegressOptions {
    fn default() -> Self {
        RegressOptions {
            alpha: DEFAULT_ALPHA,
            noise: DEFAULT_NOISE,
            threshold: DEFAULT_NOISE,
            allow_different_hosts: false,
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
            correct: Correction::None,
        }
    }
}

impl RegressOptions {
    /// Check the ranges of the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(BenchError::Usage(format!(
                "--alpha {}: must be between 0 and 1 (exclusive), e.g. 0.01",
                self.alpha
            )));
        }
        if !(self.noise >= 0.0 && self.noise < 1.0) {
            return Err(BenchError::Usage(format!(
                "--noise {}: must be a fraction in [0, 1), e.g. 0.05 for 5%",
                self.noise
            )));
        }
        if !(self.threshold >= 0.0 && self.threshold < 1.0) {
            return Err(BenchError::Usage(format!(
                "--threshold {}: must be a fraction in [0, 1), e.g. 0.10 for 10%",
                self.threshold
            )));
        }
        if self.resamples < 100 {
            return Err(BenchError::Usage(format!(
                "--resamples {}: use at least 100 (default {DEFAULT_RESAMPLES})",
                self.resamples
            )));
        }
        Ok(())
    }
}

/// Verdict on one benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significantly faster (CI above zero).
    Faster,
    /// Significantly slower, but not beyond the noise threshold.
    Slower,
    /// No significant change.
    Same,
    /// Significantly slower and the whole CI beyond the noise threshold.
    Regression,
    /// Measured fine in the baseline but failed (error / verification) in the candidate.
    Broken,
    /// Not measured in one of the files (skipped or errored in the baseline).
    Unmeasured,
    /// Different hosts, dtype or work per iteration: not comparable.
    Incomparable,
    /// Only in the baseline.
    Missing,
    /// Only in the candidate.
    New,
}

impl Verdict {
    /// Lower-case name as printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Faster => "faster",
            Verdict::Slower => "slower",
            Verdict::Same => "same",
            Verdict::Regression => "regression",
            Verdict::Broken => "broken",
            Verdict::Unmeasured => "unmeasured",
            Verdict::Incomparable => "incomparable",
            Verdict::Missing => "missing",
            Verdict::New => "new",
        }
    }
}

/// Statistics of one matched pair of sample sets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleComparison {
    /// Relative change in median throughput (+0.1 = 10% faster, −0.1 = 10% slower).
    pub change: f64,
    /// Lower end of the 95% bootstrap CI of `change`.
    pub ci_low: f64,
    /// Upper end of the 95% bootstrap CI of `change`.
    pub ci_high: f64,
    /// One-sided Mann–Whitney p-value that the candidate is slower.
    pub p_slower: f64,
    /// One-sided Mann–Whitney p-value that the candidate is faster.
    pub p_faster: f64,
    /// The verdict (one of faster, slower, same, regression).
    pub verdict: Verdict,
    /// A regression at least `threshold` large: fails the run.
    pub fails: bool,
}

/// Degrees of freedom the run's typical between-round variance counts for in
/// [`compare_rounds`]: with the default three rounds per file a kernel's own spread
/// has 4, so its own rounds carry a third of the variance estimate and the two
/// files' typical drift two thirds.
pub const PRIOR_DF: f64 = 8.0;

/// The verdict and failure flag for a change with its CI and one-sided p-values.
fn judge(change: f64, ci: (f64, f64), p: (f64, f64), opts: &RegressOptions) -> (Verdict, bool) {
    let (p_slower, p_faster) = p;
    let verdict = if p_slower < opts.alpha && ci.1 < -opts.noise {
        Verdict::Regression
    } else if p_slower < opts.alpha && ci.1 < 0.0 {
        Verdict::Slower
    } else if p_faster < opts.alpha && ci.0 > 0.0 {
        Verdict::Faster
    } else {
        Verdict::Same
    };
    let fails = verdict == Verdict::Regression && -change >= opts.threshold;
    (verdict, fails)
}

/// Compare a kernel measured in rounds, the round as the unit. Each round is
/// summarised by its log median; the change in throughput is
/// `exp(mean(log base medians) − mean(log candidate medians)) − 1`. Its variance
/// comes from the rounds' spread about their file's mean (pooled over both files),
/// shrunk toward `prior_sd` (the typical between-round spread, log space) with
/// [`PRIOR_DF`] degrees of freedom; the test and the `CI_LEVEL` interval use
/// Student's t with the combined degrees of freedom. `None` unless both sides have
/// a non-empty round of positive, finite times, and either a prior or three rounds
/// in all (a spread to estimate).
pub fn compare_rounds(
    base: &[&[f64]],
    cand: &[&[f64]],
    prior_sd: Option<f64>,
    opts: &RegressOptions,
) -> Option<SampleComparison> {
    use crate::harness::stats::{median_sorted, sorted};
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let log_medians = |rounds: &[&[f64]]| -> Option<Vec<f64>> {
        let m: Vec<f64> = rounds
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| {
                let ok = r.iter().all(|x| x.is_finite() && *x > 0.0);
                ok.then(|| median_sorted(&sorted(r)).ln())
            })
            .collect::<Option<_>>()?;
        (!m.is_empty()).then_some(m)
    };
    let (a, b) = (log_medians(base)?, log_medians(cand)?);
    // A side with one round has no spread of its own; the prior must supply it.
    let has_prior = prior_sd.is_some_and(|s| s.is_finite() && s > 0.0);
    if a.len() + b.len() < 3 && !has_prior {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let ss: f64 = a.iter().map(|x| (x - ma).powi(2)).sum::<f64>()
        + b.iter().map(|x| (x - mb).powi(2)).sum::<f64>();
    let own_df = (a.len() + b.len() - 2) as f64;
    let (var, df) = match prior_sd.filter(|s| s.is_finite() && *s > 0.0) {
        Some(s0) => (
            (ss + PRIOR_DF * s0 * s0) / (own_df + PRIOR_DF),
            own_df + PRIOR_DF,
        ),
        None => (ss / own_df.max(1.0), own_df.max(1.0)),
    };
    let se = (var * (1.0 / a.len() as f64 + 1.0 / b.len() as f64))
        .sqrt()
        .max(1e-12);
    let t = StudentsT::new(0.0, 1.0, df).ok()?;
    // Log change in time: positive when the candidate is slower.
    let d = mb - ma;
    let p_slower = 1.0 - t.cdf(d / se);
    let p_faster = t.cdf(d / se);
    let q = t.inverse_cdf(0.5 + CI_LEVEL / 2.0);
    let change = (-d).exp_m1();
    let ci = ((-d - q * se).exp_m1(), (-d + q * se).exp_m1());
    let (verdict, fails) = judge(change, ci, (p_slower, p_faster), opts);
    Some(SampleComparison {
        change,
        ci_low: ci.0,
        ci_high: ci.1,
        p_slower,
        p_faster,
        verdict,
        fails,
    })
}

/// Compare two sets of per-iteration times (seconds) as independent samples.
/// `None` when either set is empty or holds a non-positive or non-finite time.
pub fn compare_samples(
    base: &[f64],
    cand: &[f64],
    opts: &RegressOptions,
) -> Option<SampleComparison> {
    let ratio =
        compare::bootstrap_log_ratio(base, cand, opts.resamples, 1.0 - CI_LEVEL, opts.seed)?;
    let mw = compare::mann_whitney(base, cand)?;
    let (change, ci_low, ci_high) = (ratio.change(), ratio.change_low(), ratio.change_high());
    let (verdict, fails) = judge(change, (ci_low, ci_high), (mw.p_slower, mw.p_faster), opts);
    Some(SampleComparison {
        change,
        ci_low,
        ci_high,
        p_slower: mw.p_slower,
        p_faster: mw.p_faster,
        verdict,
        fails,
    })
}

/// One row of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Benchmark id.
    pub id: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Whether this row fails the run (exit 1).
    pub fails: bool,
    /// Median FLOP/s in the baseline.
    pub baseline_flops_per_s: Option<f64>,
    /// Median FLOP/s in the candidate.
    pub candidate_flops_per_s: Option<f64>,
    /// Statistics, when both sides were measured and comparable.
    #[serde(flatten)]
    pub stats: Option<SampleComparison>,
    /// Samples in the baseline.
    pub baseline_n: usize,
    /// Samples in the candidate.
    pub candidate_n: usize,
    /// Why there is no statistical verdict, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Not comparable because a side has no quiet round: every round of the kernel
    /// ran while something outside flopcal slowed the machine.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub contended: bool,
    /// `p_slower` adjusted for the suite (`--correct holm`), the p-value the verdict
    /// rests on; absent without a correction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_slower_adjusted: Option<f64>,
}

/// The comparison of two result files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressComparison {
    /// Baseline file.
    pub baseline: PathBuf,
    /// Candidate file.
    pub candidate: PathBuf,
    /// Settings used.
    pub options: RegressOptions,
    /// Host fingerprint fields that differ, as `field: baseline → candidate`.
    pub host_differences: Vec<String>,
    /// Set when the two runs' fastest contention-probe readings differ by more than
    /// [`PROBE_MISMATCH`]: one run may have sat inside a contention episode throughout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_state_warning: Option<String>,
    /// Typical between-round drift of the two runs (log space), which the
    /// round-clustered comparisons shrink each kernel's own spread toward.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_drift_sd: Option<f64>,
    /// One row per benchmark id in either file (baseline order, then new ones).
    pub rows: Vec<Row>,
    /// Rows that fail the run.
    pub failures: usize,
    /// Count of each verdict.
    pub counts: BTreeMap<String, usize>,
}

impl RegressComparison {
    /// Whether any benchmark regressed beyond the threshold (exit 1).
    pub fn failed(&self) -> bool {
        self.failures > 0
    }
}

/// Host fingerprint fields that matter for throughput and differ between `a` and `b`.
pub fn host_differences(a: &Fingerprint, b: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, x: String, y: String| {
        if x != y {
            out.push(format!("{name}: {x} → {y}"));
        }
    };
    check("cpu_model", a.cpu_model.clone(), b.cpu_model.clone());
    check("device", a.device.clone(), b.device.clone());
    check("device_name", a.device_name.clone(), b.device_name.clone());
    check("threads", a.threads.to_string(), b.threads.to_string());
    let features = |f: &Fingerprint| {
        let mut v = f.build_features.clone();
        v.sort();
        format!("[{}]", v.join(", "))
    };
    check("build_features", features(a), features(b));
    out
}

/// Check that a loaded result file has something to compare: at least one measured
/// benchmark, and every benchmark marked `ok` has positive, finite samples.
pub fn validate(file: &ResultFile, path: &Path) -> Result<()> {
    let bad = |reason: String| BenchError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    if file.benchmarks.is_empty() {
        return Err(bad("holds no benchmarks; nothing to compare".into()));
    }
    for b in &file.benchmarks {
        if b.status != Status::Ok {
            continue;
        }
        if b.samples_s.is_empty() {
            return Err(bad(format!(
                "benchmark `{}` is marked ok but has zero samples; the file was edited or truncated — re-run the profile",
                b.id
            )));
        }
        if let Some(x) = b.samples_s.iter().find(|x| !(x.is_finite() && **x > 0.0)) {
            return Err(bad(format!(
                "benchmark `{}` has an invalid sample {x} (times must be positive seconds)",
                b.id
            )));
        }
        if b.flops_per_iter == 0 {
            return Err(bad(format!("benchmark `{}` has flops_per_iter 0", b.id)));
        }
    }
    if !file.benchmarks.iter().any(|b| b.status == Status::Ok) {
        return Err(bad(
            "no benchmark was measured (all skipped or failed); nothing to compare".into(),
        ));
    }
    Ok(())
}

/// Median FLOP/s of a benchmark's raw samples (those of its quiet rounds, see
/// [`Benchmark::quiet_samples`]), if it has any.
pub fn median_flops(b: &Benchmark) -> Option<f64> {
    let samples = b.quiet_samples();
    if samples.is_empty() {
        return None;
    }
    let m = crate::harness::stats::median_sorted(&crate::harness::stats::sorted(&samples));
    (m > 0.0).then(|| b.flops_per_iter as f64 / m)
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::VerificationFailed => "failed verification",
        Status::Error => "errored",
        Status::Skipped => "was skipped",
    }
}

/// Non-empty rounds a benchmark's statistics rest on.
fn round_count(b: &Benchmark) -> usize {
    b.quiet_rounds().iter().filter(|r| !r.is_empty()).count()
}

/// The typical between-round drift of two runs together: the median over every
/// measured kernel of both of its shrinkage-corrected between-round spread.
pub fn pair_drift(baseline: &ResultFile, candidate: &ResultFile) -> Option<f64> {
    let rounds: Vec<Vec<&[f64]>> = baseline
        .benchmarks
        .iter()
        .chain(&candidate.benchmarks)
        .filter(|b| b.status == Status::Ok)
        .map(Benchmark::quiet_rounds)
        .collect();
    crate::harness::stats::typical_drift(rounds.iter().map(Vec::as_slice))
}

/// Compare one kernel's quiet measurements in two runs: round by round
/// ([`compare_rounds`], with the runs' typical `drift`) when both measured it in
/// two or more rounds or the drift is known, else sample by sample ([`compare_samples`]). The flag says
/// whether the rounds were the unit.
pub fn compare_benchmarks(
    base: &Benchmark,
    cand: &Benchmark,
    drift: Option<f64>,
    opts: &RegressOptions,
) -> Option<(SampleComparison, bool)> {
    // Rounds are the unit when both runs measured in rounds, or when the runs'
    // typical drift is known (a side left with one quiet round then borrows it).
    let (rb, rc) = (round_count(base), round_count(cand));
    if (rb >= 2 && rc >= 2) || (drift.is_some() && rb >= 1 && rc >= 1) {
        compare_rounds(&base.quiet_rounds(), &cand.quiet_rounds(), drift, opts).map(|s| (s, true))
    } else {
        compare_samples(&base.quiet_samples(), &cand.quiet_samples(), opts).map(|s| (s, false))
    }
}

fn compare_pair(
    base: &Benchmark,
    cand: &Benchmark,
    hosts_ok: bool,
    drift: Option<f64>,
    opts: &RegressOptions,
) -> Row {
    let mut row = Row {
        id: base.id.clone(),
        verdict: Verdict::Incomparable,
        fails: false,
        baseline_flops_per_s: median_flops(base),
        candidate_flops_per_s: median_flops(cand),
        stats: None,
        baseline_n: base.quiet_samples().len(),
        candidate_n: cand.quiet_samples().len(),
        note: None,
        contended: false,
        p_slower_adjusted: None,
    };
    if !hosts_ok {
        row.note = Some("host fingerprints differ".into());
        return row;
    }
    if base.dtype != cand.dtype || base.flops_per_iter != cand.flops_per_iter {
        row.note = Some(format!(
            "different work: {} {} FLOP/iter vs {} {} FLOP/iter",
            base.dtype, base.flops_per_iter, cand.dtype, cand.flops_per_iter
        ));
        return row;
    }
    match (base.status, cand.status) {
        (Status::Ok, Status::Ok) => {}
        (Status::Ok, Status::Error | Status::VerificationFailed) => {
            row.verdict = Verdict::Broken;
            row.fails = true;
            row.note = Some(format!(
                "candidate {}{}",
                status_word(cand.status),
                cand.message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
            return row;
        }
        (b, c) => {
            row.verdict = Verdict::Unmeasured;
            row.note = Some(if b != Status::Ok {
                format!("baseline {}", status_word(b))
            } else {
                format!("candidate {}", status_word(c))
            });
            return row;
        }
    }
    // Rounds that ran while another tenant slowed the machine are left out on both
    // sides, as they are in each file's own statistics.
    let compared = compare_benchmarks(base, cand, drift, opts).map(|(s, by_rounds)| {
        if !by_rounds {
            row.note = Some(
                "one round on a side: samples compared as independent (no drift estimate)".into(),
            );
        }
        s
    });
    match compared {
        Some(s) => {
            row.verdict = s.verdict;
            row.fails = s.fails;
            row.stats = Some(s);
            // A side with no quiet round measured the contended machine, not the
            // kernel: show the change, but do not judge it.
            let contended: Vec<&str> = [("baseline", base), ("candidate", cand)]
                .into_iter()
                .filter(|(_, b)| b.all_contended())
                .map(|(side, _)| side)
                .collect();
            if !contended.is_empty() {
                row.verdict = Verdict::Incomparable;
                row.fails = false;
                row.contended = true;
                if let Some(st) = row.stats.as_mut() {
                    st.verdict = Verdict::Incomparable;
                    st.fails = false;
                }
                row.note = Some(format!(
                    "{} measured only under contention (no quiet round); re-run it on a quiet machine",
                    contended.join(" and ")
                ));
            }
        }
        None => {
            row.verdict = Verdict::Unmeasured;
            row.note = Some("no valid samples".into());
        }
    }
    row
}

/// Fastest probe readings further apart than this ratio mean the machine was in
/// different states for the two runs (the episodes seen slow the probe 2.4–3.3×).
pub const PROBE_MISMATCH: f64 = 1.25;

/// A warning when the runs' fastest contention-probe readings disagree.
fn machine_state_warning(baseline: &ResultFile, candidate: &ResultFile) -> Option<String> {
    let (a, b) = (
        baseline.contention.as_ref()?.best_probe_s,
        candidate.contention.as_ref()?.best_probe_s,
    );
    let ratio = a.max(b) / a.min(b);
    (ratio.is_finite() && ratio > PROBE_MISMATCH).then(|| {
        format!(
            "the contention probe's best reading was {:.0} µs in the baseline and {:.0} µs in the candidate ({ratio:.2}×): the {} run may have been slowed by another tenant throughout; re-run it before trusting the changes",
            a * 1e6,
            b * 1e6,
            if b > a { "candidate" } else { "baseline" }
        )
    })
}

/// Whether a row holds a statistical verdict (one of the family `--correct` controls).
fn tested(r: &Row) -> bool {
    r.stats.is_some()
        && matches!(
            r.verdict,
            Verdict::Faster | Verdict::Slower | Verdict::Same | Verdict::Regression
        )
}

/// Re-judge every tested row with its p-values Holm-adjusted over the tested rows
/// (slower and faster each as their own family). The CIs stay per kernel.
fn apply_holm(rows: &mut [Row], opts: &RegressOptions) {
    let family: Vec<usize> = (0..rows.len()).filter(|&i| tested(&rows[i])).collect();
    let p = |f: fn(&SampleComparison) -> f64| -> Vec<f64> {
        family
            .iter()
            .filter_map(|&i| rows[i].stats.as_ref().map(f))
            .collect()
    };
    let slower = holm_adjust(&p(|s| s.p_slower));
    let faster = holm_adjust(&p(|s| s.p_faster));
    for (k, &i) in family.iter().enumerate() {
        let r = &mut rows[i];
        let Some(s) = r.stats.as_mut() else { continue };
        let (verdict, fails) = judge(
            s.change,
            (s.ci_low, s.ci_high),
            (slower[k], faster[k]),
            opts,
        );
        s.verdict = verdict;
        s.fails = fails;
        r.verdict = verdict;
        r.fails = fails;
        r.p_slower_adjusted = Some(slower[k]);
    }
}

/// Compare `candidate` against `baseline`. Both files must have passed [`validate`].
pub fn compare_files(
    baseline: &ResultFile,
    baseline_path: &Path,
    candidate: &ResultFile,
    candidate_path: &Path,
    opts: &RegressOptions,
) -> RegressComparison {
    let host_differences = host_differences(&baseline.host, &candidate.host);
    let hosts_ok = host_differences.is_empty() || opts.allow_different_hosts;
    let cand_by_id: BTreeMap<&str, &Benchmark> = candidate
        .benchmarks
        .iter()
        .map(|b| (b.id.as_str(), b))
        .collect();
    let base_ids: std::collections::BTreeSet<&str> =
        baseline.benchmarks.iter().map(|b| b.id.as_str()).collect();
    let drift = pair_drift(baseline, candidate);
    let mut rows = Vec::new();
    for b in &baseline.benchmarks {
        match cand_by_id.get(b.id.as_str()) {
            Some(c) => rows.push(compare_pair(b, c, hosts_ok, drift, opts)),
            None => rows.push(Row {
                id: b.id.clone(),
                verdict: Verdict::Missing,
                fails: false,
                baseline_flops_per_s: median_flops(b),
                candidate_flops_per_s: None,
                stats: None,
                baseline_n: b.quiet_samples().len(),
                candidate_n: 0,
                note: Some("only in the baseline".into()),
                contended: false,
                p_slower_adjusted: None,
            }),
        }
    }
    for c in &candidate.benchmarks {
        if !base_ids.contains(c.id.as_str()) {
            rows.push(Row {
                id: c.id.clone(),
                verdict: Verdict::New,
                fails: false,
                baseline_flops_per_s: None,
                candidate_flops_per_s: median_flops(c),
                stats: None,
                baseline_n: 0,
                candidate_n: c.quiet_samples().len(),
                note: Some("only in the candidate".into()),
                contended: false,
                p_slower_adjusted: None,
            });
        }
    }
    if opts.correct == Correction::Holm {
        apply_holm(&mut rows, opts);
    }
    let mut counts = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.verdict.as_str().to_string()).or_insert(0) += 1;
    }
    RegressComparison {
        baseline: baseline_path.to_path_buf(),
        candidate: candidate_path.to_path_buf(),
        options: opts.clone(),
        host_differences,
        machine_state_warning: machine_state_warning(baseline, candidate),
        round_drift_sd: drift,
        failures: rows.iter().filter(|r| r.fails).count(),
        rows,
        counts,
    }
}

/// Format a relative change as a signed percentage, e.g. `-10.2%`.
pub fn fmt_pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

/// Format the CI of a change, e.g. `[-12.0%, -8.1%]`.
pub fn fmt_ci(lo: f64, hi: f64) -> String {
    format!("[{}, {}]", fmt_pct(lo), fmt_pct(hi))
}

/// Format a p-value compactly.
pub fn fmt_p(p: f64) -> String {
    if p < 1e-4 {
        "<1e-4".into()
    } else {
        format!("{p:.4}")
    }
}

/// The verdict as shown in tables: regressions that fail are upper-case.
pub fn verdict_label(r: &Row) -> String {
    match (r.verdict, r.fails) {
        (Verdict::Regression, true) => "REGRESSION".into(),
        (Verdict::Regression, false) => "regression (< threshold)".into(),
        (Verdict::Broken, _) => "BROKEN".into(),
        (Verdict::Incomparable, _) if r.contended => "not comparable (contended)".into(),
        (v, _) => v.as_str().into(),
    }
}

/// One-line summary of a comparison.
pub fn summary_line(c: &RegressComparison) -> String {
    let counts = c
        .counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let head = if c.failed() {
        format!("{} failing", c.failures)
    } else {
        "no regression".into()
    };
    let drift = c
        .round_drift_sd
        .map(|d| {
            format!(
                "; rounds compared as units, typical round drift {:.1}%",
                100.0 * d
            )
        })
        .unwrap_or_default();
    let control = match c.options.correct {
        Correction::None => "per kernel (no family-wise correction)".to_string(),
        Correction::Holm => format!(
            "family-wise over {} compared kernels (Holm)",
            c.rows
                .iter()
                .filter(|r| r.p_slower_adjusted.is_some())
                .count()
        ),
    };
    format!(
        "{head} ({counts}); α = {} {control}, noise {:.0}%, threshold {:.0}%{drift}",
        c.options.alpha,
        100.0 * c.options.noise,
        100.0 * c.options.threshold
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_large_slowdown_is_a_failing_regression() {
        let base: Vec<f64> = (0..30).map(|i| 1.0 + 0.001 * (i % 7) as f64).collect();
        let cand: Vec<f64> = base.iter().map(|x| x * 1.25).collect();
        let s = compare_samples(&base, &cand, &RegressOptions::default()).unwrap();
        assert_eq!(s.verdict, Verdict::Regression);
        assert!(s.fails);
        assert!((s.change - (1.0 / 1.25 - 1.0)).abs() < 1e-9, "{}", s.change);
    }

    #[test]
    fn a_regression_below_the_threshold_does_not_fail() {
        let base: Vec<f64> = (0..30).map(|i| 1.0 + 0.001 * (i % 7) as f64).collect();
        let cand: Vec<f64> = base.iter().map(|x| x * 1.10).collect();
        let opts = RegressOptions {
            threshold: 0.2,
            ..RegressOptions::default()
        };
        let s = compare_samples(&base, &cand, &opts).unwrap();
        assert_eq!(s.verdict, Verdict::Regression);
        assert!(!s.fails);
    }

    #[test]
    fn a_clear_speedup_is_faster() {
        let base: Vec<f64> = (0..30).map(|i| 1.0 + 0.001 * (i % 7) as f64).collect();
        let cand: Vec<f64> = base.iter().map(|x| x / 1.03).collect();
        let s = compare_samples(&base, &cand, &RegressOptions::default()).unwrap();
        assert_eq!(s.verdict, Verdict::Faster);
        assert!(!s.fails);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        let o = RegressOptions {
            alpha: 0.0,
            ..RegressOptions::default()
        };
        assert!(o.validate().is_err());
        let o = RegressOptions {
            noise: 1.5,
            ..RegressOptions::default()
        };
        assert!(o.validate().unwrap_err().to_string().contains("--noise"));
    }

    #[test]
    fn holm_multiplies_the_ith_smallest_p_value_by_the_kernels_left_and_keeps_the_order() {
        let adj = holm_adjust(&[0.04, 0.001, 0.03, 0.5]);
        // Sorted: 0.001×4, 0.03×3, 0.04×2 (raised to 0.09 by the running maximum), 0.5×1.
        let want = [0.09, 0.004, 0.09, 0.5];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm_adjust(&[0.9, 0.8]), vec![1.0, 1.0], "capped at 1");
        assert!(holm_adjust(&[]).is_empty());
    }
}
