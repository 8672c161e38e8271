//! Robust summary statistics of timing samples.
//!
//! The median is the location estimate (timings are right-skewed: a preempted sample
//! is slow, never fast). Its confidence interval is the distribution-free
//! order-statistic interval `[x(k), x(n+1−k)]` with the largest `k` whose exact
//! binomial coverage `1 − 2·P(Bin(n, ½) ≤ k−1)` is at least the asked level
//! (Hahn & Meeker 1991, §5.2): a true ≥ 95% interval at every `n` for any continuous
//! distribution, costing one sort plus a few binomial tail evaluations. Where no such
//! interval exists (fewer than [`min_samples_for_ci`] samples: 6 at 95%) there is
//! none, and the summary says so rather than printing a narrower one. Outliers are
//! flagged by the MAD rule (modified z-score > 3.5, Iglewicz & Hoaglin), and kept:
//! they are reported, not silently dropped.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, DiscreteCDF};

/// Scale factor that makes the MAD a consistent estimator of σ for normal data.
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// Modified z-score beyond which a sample is an outlier (Iglewicz & Hoaglin 1993).
pub const OUTLIER_Z: f64 = 3.5;

/// Summary of a set of per-iteration times, in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// Median absolute deviation from the median (raw, not scaled to σ).
    pub mad: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Fastest sample.
    pub min: f64,
    /// Slowest sample.
    pub max: f64,
    /// The confidence interval of the median at level `1 − alpha`, `(low, high)`;
    /// `None` when `n` is too small for one to exist (see [`min_samples_for_ci`]).
    pub ci: Option<(f64, f64)>,
    /// One minus the confidence level of `ci` (0.05 for a 95% interval).
    pub alpha: f64,
    /// Samples flagged as outliers by the MAD rule.
    pub outliers: usize,
}

impl Summary {
    /// Width of the confidence interval relative to the median (e.g. 0.02 = 2%);
    /// infinite when there is no interval.
    pub fn ci_rel_width(&self) -> f64 {
        match self.ci {
            Some((lo, hi)) if self.median > 0.0 => (hi - lo) / self.median,
            _ => f64::INFINITY,
        }
    }

    /// Relative noise: MAD scaled to σ, over the median.
    pub fn rel_noise(&self) -> f64 {
        if self.median > 0.0 {
            self.mad * MAD_TO_SIGMA / self.median
        } else {
            0.0
        }
    }
}

/// Median of sorted data (mean of the middle two for even lengths).
pub fn median_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// Sort a copy of `samples`, treating NaN as largest.
pub fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut v = samples.to_vec();
    v.sort_unstable_by(|a, b| a.total_cmp(b));
    v
}

/// Order-statistic ranks (0-based, inclusive) of the distribution-free confidence
/// interval of the median at level `1 − alpha`: `(k−1, n−k)` for the largest `k ≥ 1`
/// with `2·P(Bin(n, ½) ≤ k−1) ≤ alpha`, so the interval `[x(k), x(n+1−k)]` covers
/// the true median with probability at least `1 − alpha` for any continuous
/// distribution. `None` when even `[min, max]` falls short (`2·2⁻ⁿ > alpha`).
pub fn median_ci_ranks(n: usize, alpha: f64) -> Option<(usize, usize)> {
    if n == 0 || !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    let b = Binomial::new(0.5, n as u64).ok()?;
    // P(Bin ≤ j) is increasing in j: bisect for the largest k with 2·cdf(k−1) ≤ alpha.
    let ok = |k: usize| 2.0 * b.cdf(k as u64 - 1) <= alpha;
    if !ok(1) {
        return None;
    }
    let (mut lo, mut hi) = (1usize, n.div_ceil(2));
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some((lo - 1, n - lo))
}

/// Fewest samples for which a distribution-free interval of the median at level
/// `1 − alpha` exists: the smallest `n` with `2·2⁻ⁿ ≤ alpha` (6 at 95%).
pub fn min_samples_for_ci(alpha: f64) -> usize {
    (1..=64)
        .find(|&n| 2f64.powi(1 - n as i32) <= alpha)
        .unwrap_or(64)
}

/// Summarise raw per-iteration times with a 95% interval of the median. Returns
/// `None` for an empty slice.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    summarize_at(samples, 0.05)
}

/// Summarise raw per-iteration times with a `1 − alpha` interval of the median.
/// Returns `None` for an empty slice.
pub fn summarize_at(samples: &[f64], alpha: f64) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let s = sorted(samples);
    let n = s.len();
    let median = median_sorted(&s);
    let mut dev: Vec<f64> = s.iter().map(|x| (x - median).abs()).collect();
    dev.sort_unstable_by(|a, b| a.total_cmp(b));
    let mad = median_sorted(&dev);
    let mean = s.iter().sum::<f64>() / n as f64;
    let outliers = if mad > 0.0 {
        s.iter()
            .filter(|x| 0.6745 * (*x - median).abs() / mad > OUTLIER_Z)
            .count()
    } else {
        0
    };
    Some(Summary {
        n,
        median,
        mad,
        mean,
        min: s[0],
        max: s[n - 1],
        ci: median_ci_ranks(n, alpha).map(|(lo, hi)| (s[lo], s[hi])),
        alpha,
        outliers,
    })
}

/// 95% CI of the median of samples taken in several rounds (clusters), by a two-level
/// bootstrap: resample whole rounds with replacement, then samples within each drawn
/// round. Samples within one round are correlated (a slow phase of a shared machine
/// slows a whole burst), so an i.i.d. interval over the pooled samples is too narrow;
/// this one widens with the disagreement between rounds. Deterministic (fixed seed).
/// Returns `None` with fewer than two non-empty rounds.
pub fn clustered_median_ci(rounds: &[&[f64]], resamples: usize) -> Option<(f64, f64)> {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let rounds: Vec<&[f64]> = rounds.iter().copied().filter(|r| !r.is_empty()).collect();
    if rounds.len() < 2 || resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(0x00c1_05e5);
    let mut medians = Vec::with_capacity(resamples);
    let mut pool = Vec::new();
    for _ in 0..resamples {
        pool.clear();
        for _ in 0..rounds.len() {
            let r = rounds[rng.random_range(0..rounds.len())];
            pool.extend((0..r.len()).map(|_| r[rng.random_range(0..r.len())]));
        }
        pool.sort_unstable_by(|a, b| a.total_cmp(b));
        medians.push(median_sorted(&pool));
    }
    medians.sort_unstable_by(|a, b| a.total_cmp(b));
    let at = |q: f64| medians[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Some((at(0.025), at(0.975)))
}

/// The sampling interval of the median of samples taken in rounds, at level
/// `1 − alpha`: the order-statistic interval of the pooled samples, widened to
/// cover the two-level bootstrap interval ([`clustered_median_ci`]) when there are
/// several rounds. `None` when too few samples for an order-statistic interval.
pub fn sampling_ci(rounds: &[&[f64]], alpha: f64) -> Option<(f64, f64)> {
    let pooled: Vec<f64> = rounds.concat();
    let (lo, hi) = summarize_at(&pooled, alpha)?.ci?;
    Some(match clustered_median_ci(rounds, 1000) {
        Some((clo, chi)) => (lo.min(clo), hi.max(chi)),
        None => (lo, hi),
    })
}

/// Why `n` samples have no interval at level `1 − alpha`, in words for files and
/// tables.
pub fn no_interval_note(n: usize, alpha: f64) -> String {
    format!(
        "no {:.1}% interval of the median from {n} samples: a distribution-free one needs at least {}",
        100.0 * (1.0 - alpha),
        min_samples_for_ci(alpha)
    )
}

/// Standard deviation of the log round medians: how much a kernel's speed moved
/// between rounds of one run (0.02 = about 2%). `None` with fewer than two rounds.
pub fn between_round_sd(rounds: &[&[f64]]) -> Option<f64> {
    let logs: Vec<f64> = rounds
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| median_sorted(&sorted(r)).ln())
        .filter(|x| x.is_finite())
        .collect();
    if logs.len() < 2 {
        return None;
    }
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64;
    Some(var.sqrt())
}

/// The median of the sample standard deviation of `n` normal values, as a fraction
/// of the true σ: `sqrt(median(χ²(n−1)) / (n−1))`, 0.83 for three values. A median
/// over kernels of three-round spreads, divided by this, estimates σ without the
/// small-sample shrinkage. 1 for fewer than two values.
pub fn sd_median_fraction(n: usize) -> f64 {
    use statrs::distribution::{ChiSquared, ContinuousCDF};
    if n < 2 {
        return 1.0;
    }
    let df = (n - 1) as f64;
    ChiSquared::new(df).map_or(1.0, |c| (c.inverse_cdf(0.5) / df).sqrt())
}

/// The run's typical drift between rounds: the median over kernels of each
/// kernel's between-round spread ([`between_round_sd`] of its rounds), each divided
/// by [`sd_median_fraction`] to undo the shrinkage of a few-round spread. `None`
/// when no kernel has two rounds.
pub fn typical_drift<'a>(kernels: impl IntoIterator<Item = &'a [&'a [f64]]>) -> Option<f64> {
    let mut corrected: Vec<f64> = kernels
        .into_iter()
        .filter_map(|rounds| {
            let n = rounds.iter().filter(|r| !r.is_empty()).count();
            between_round_sd(rounds).map(|sd| sd / sd_median_fraction(n))
        })
        .collect();
    corrected.sort_unstable_by(f64::total_cmp);
    (!corrected.is_empty()).then(|| median_sorted(&corrected))
}

/// Widen a 95% interval around `median` for drift of the machine's speed with
/// standard deviation `sd` (in log space): each side's half-width becomes
/// `sqrt(h² + (1.96·sd)²)`, where `h` is its sampling half-width. Another run of
/// the same kernel lands at a median that differs by that drift as well as by
/// sampling, so an interval meant to hold the next run's median needs both.
pub fn widen_for_drift(median: f64, ci: (f64, f64), sd: f64) -> (f64, f64) {
    if !(median > 0.0 && sd.is_finite() && sd > 0.0) {
        return ci;
    }
    let d = 1.96 * sd;
    let side = |end: f64| {
        let h = if end > 0.0 {
            (end / median).ln().abs()
        } else {
            0.0
        };
        (h * h + d * d).sqrt()
    };
    let lo = median * (-side(ci.0)).exp();
    let hi = median * side(ci.1).exp();
    (lo.min(ci.0), hi.max(ci.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    #[test]
    fn rounds_that_agree_have_no_drift_and_rounds_that_differ_by_ten_percent_do() {
        let same: Vec<f64> = vec![1.0; 5];
        assert_eq!(between_round_sd(&[&same, &same]), Some(0.0));
        let slow: Vec<f64> = vec![1.1; 5];
        let sd = between_round_sd(&[&same, &slow]).unwrap();
        // Two log medians 0 and ln 1.1: sd = ln(1.1)/sqrt(2).
        assert!((sd - 1.1f64.ln() / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(between_round_sd(&[&same]), None);
    }

    #[test]
    fn the_sample_sd_of_three_values_is_typically_five_sixths_of_sigma() {
        assert!((sd_median_fraction(3) - (2f64.ln() * 2.0 / 2.0).sqrt()).abs() < 1e-9);
        assert!(sd_median_fraction(1000) > 0.99);
        assert_eq!(sd_median_fraction(1), 1.0);
        // Check by simulation: the median sample sd of three N(0, 1) draws.
        let mut rng = StdRng::seed_from_u64(7);
        let mut sds: Vec<f64> = (0..20_000)
            .map(|_| {
                let x: Vec<f64> = (0..3)
                    .map(|_| {
                        // Box-Muller.
                        let (u, v): (f64, f64) = (rng.random(), rng.random());
                        (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
                    })
                    .collect();
                let m = x.iter().sum::<f64>() / 3.0;
                (x.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 2.0).sqrt()
            })
            .collect();
        sds.sort_unstable_by(f64::total_cmp);
        assert!(
            (sds[10_000] - sd_median_fraction(3)).abs() < 0.02,
            "{}",
            sds[10_000]
        );
    }

    #[test]
    fn drift_widens_a_narrow_interval_and_leaves_a_wide_one_nearly_alone() {
        let (lo, hi) = widen_for_drift(1.0, (0.999, 1.001), 0.02);
        assert!((hi.ln() - (0.001f64.powi(2) + 0.0392f64.powi(2)).sqrt()).abs() < 1e-3);
        assert!(lo < 0.965 && hi > 1.035, "{lo} {hi}");
        let (lo, hi) = widen_for_drift(1.0, (0.5, 2.0), 0.02);
        assert!(
            (0.49..=0.5).contains(&lo) && (2.0..2.03).contains(&hi),
            "{lo} {hi}"
        );
        assert_eq!(widen_for_drift(1.0, (0.9, 1.1), 0.0), (0.9, 1.1));
    }

    #[test]
    fn rounds_that_disagree_widen_the_interval_beyond_the_pooled_one() {
        // Three tight rounds at 10, 10.5 and 11 ms: pooled i.i.d. CI is narrow, but
        // another run could land anywhere between the rounds.
        let r: Vec<Vec<f64>> = [10.0, 10.5, 11.0]
            .iter()
            .map(|m| (0..10).map(|i| m + 0.001 * i as f64).collect())
            .collect();
        let refs: Vec<&[f64]> = r.iter().map(|v| v.as_slice()).collect();
        let pooled: Vec<f64> = r.concat();
        let iid = summarize(&pooled).unwrap();
        let (lo, hi) = clustered_median_ci(&refs, 1000).unwrap();
        let (ilo, ihi) = iid.ci.unwrap();
        assert!(lo < ilo && hi > ihi, "{lo} {hi} vs {iid:?}");
        assert!(lo >= 10.0 && hi <= 11.01);
        assert_eq!(
            clustered_median_ci(&refs, 1000),
            Some((lo, hi)),
            "deterministic"
        );
    }

    #[test]
    fn a_single_round_has_no_clustered_interval() {
        assert_eq!(clustered_median_ci(&[&[1.0, 2.0]], 100), None);
    }

    #[test]
    fn median_and_mad_of_a_known_set() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.mad, 1.0);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 100.0);
        assert_eq!(s.mean, 22.0);
        assert_eq!(s.outliers, 1, "100 is far beyond 3.5 robust sigmas");
    }

    #[test]
    fn even_length_median_is_the_mean_of_the_middle_pair() {
        assert_eq!(median_sorted(&[1.0, 2.0, 3.0, 10.0]), 2.5);
    }

    #[test]
    fn empty_samples_have_no_summary() {
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn median_ci_matches_the_textbook_order_statistics() {
        // For n = 10 the distribution-free 95% interval of the median is
        // (x(2), x(9)) 1-based, coverage 1 − 2·11/1024 = 97.9%.
        assert_eq!(median_ci_ranks(10, 0.05), Some((1, 8)));
        // n = 6: [min, max] covers with 1 − 2/64 = 96.9%; n = 5 only 93.75%: none.
        assert_eq!(median_ci_ranks(6, 0.05), Some((0, 5)));
        assert_eq!(median_ci_ranks(5, 0.05), None);
        assert_eq!(median_ci_ranks(1, 0.05), None);
        assert_eq!(min_samples_for_ci(0.05), 6);
        assert_eq!(min_samples_for_ci(0.01), 8);
        // Symmetric and centred for larger n, about 1.96·sqrt(n)/2 ranks each side.
        let (lo, hi) = median_ci_ranks(1001, 0.05).unwrap();
        assert!((lo as i64 - (500 - 31)).abs() <= 2, "lo = {lo}");
        assert!((hi as i64 - (500 + 31)).abs() <= 2, "hi = {hi}");
    }

    #[test]
    fn median_ci_covers_the_true_median_about_95_percent_of_the_time() {
        let mut rng = StdRng::seed_from_u64(42);
        let trials = 400;
        let mut covered = 0;
        for _ in 0..trials {
            // Exponential(1): true median ln 2, strongly skewed like timings.
            let xs: Vec<f64> = (0..51).map(|_| -(1.0 - rng.random::<f64>()).ln()).collect();
            let (lo, hi) = summarize(&xs).unwrap().ci.unwrap();
            if lo <= std::f64::consts::LN_2 && std::f64::consts::LN_2 <= hi {
                covered += 1;
            }
        }
        let rate = covered as f64 / trials as f64;
        assert!((0.92..=0.995).contains(&rate), "coverage {rate}");
    }

    #[test]
    fn every_interval_the_ranks_give_has_at_least_its_nominal_exact_coverage() {
        for n in 1..200usize {
            for alpha in [0.05, 0.01, 0.003] {
                let Some((lo, hi)) = median_ci_ranks(n, alpha) else {
                    assert!(n < min_samples_for_ci(alpha), "n = {n}, alpha = {alpha}");
                    continue;
                };
                assert_eq!(lo + hi, n - 1, "symmetric");
                let b = Binomial::new(0.5, n as u64).unwrap();
                let coverage = 1.0 - 2.0 * b.cdf(lo as u64);
                assert!(coverage >= 1.0 - alpha - 1e-12, "n {n}: {coverage}");
                // One rank narrower would fall short: the interval is the tightest.
                if hi - lo >= 2 {
                    assert!(1.0 - 2.0 * b.cdf(lo as u64 + 1) < 1.0 - alpha, "n {n}");
                }
            }
        }
    }

    #[test]
    fn too_few_samples_have_no_interval_and_say_so_by_infinite_width() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(s.ci, None);
        assert_eq!(s.ci_rel_width(), f64::INFINITY);
        assert_eq!(summarize(&[1.0]).unwrap().ci, None);
    }

    #[test]
    fn constant_samples_have_zero_width_and_no_outliers() {
        let s = summarize(&[2.0; 20]).unwrap();
        assert_eq!(s.ci_rel_width(), 0.0);
        assert_eq!(s.outliers, 0);
    }
}
