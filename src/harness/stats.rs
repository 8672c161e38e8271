//! Robust summary statistics of timing samples.
//!
//! The median is the location estimate (timings are right-skewed: a preempted sample
//! is slow, never fast). Its 95% confidence interval is the *exact* bootstrap
//! percentile interval: the bootstrap distribution of the sample median has a closed
//! form over the order statistics (Efron 1982; Maritz & Jarrett 1978), so no random
//! resampling is needed — the interval is deterministic and costs one sort plus a
//! few binomial tail evaluations, which keeps statistics over 10k samples well under
//! a millisecond. Outliers are flagged by the MAD rule (modified z-score > 3.5,
//! Iglewicz & Hoaglin), and kept: they are reported, not silently dropped.

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
    /// Lower end of the 95% confidence interval of the median.
    pub ci_low: f64,
    /// Upper end of the 95% confidence interval of the median.
    pub ci_high: f64,
    /// Samples flagged as outliers by the MAD rule.
    pub outliers: usize,
}

impl Summary {
    /// Width of the confidence interval relative to the median (e.g. 0.02 = 2%).
    pub fn ci_rel_width(&self) -> f64 {
        if self.median > 0.0 {
            (self.ci_high - self.ci_low) / self.median
        } else {
            f64::INFINITY
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

/// Order-statistic ranks (0-based, inclusive) of the exact bootstrap percentile
/// interval of the median at confidence `1 - alpha`.
///
/// With `n` sorted values, the bootstrap order statistic of rank `m` (1-based) is
/// `≤ x(j)` exactly when at least `m` of the `n` draws are `≤ x(j)`, a count that is
/// Binomial(n, j/n): `P(x*(m) ≤ x(j)) = P(Bin(n, j/n) ≥ m)`. For odd `n` the median
/// has rank `(n+1)/2`; for even `n` the lower bound uses the lower middle rank and
/// the upper bound the upper middle rank, which keeps the interval symmetric.
pub fn median_ci_ranks(n: usize, alpha: f64) -> (usize, usize) {
    if n < 2 {
        return (0, n.saturating_sub(1));
    }
    let at_least = |m: u64, j: usize| -> f64 {
        if j >= n {
            return 1.0;
        }
        match Binomial::new(j as f64 / n as f64, n as u64) {
            Ok(b) => 1.0 - b.cdf(m - 1),
            Err(_) => 1.0,
        }
    };
    // Smallest 1-based j with P(x*(m) ≤ x(j)) ≥ q; increasing in j, so bisect.
    let find = |m: u64, q: f64| -> usize {
        let (mut lo, mut hi) = (1usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at_least(m, mid) >= q {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    };
    let m_low = n.div_ceil(2) as u64;
    let m_high = (n / 2 + 1) as u64;
    (
        find(m_low, alpha / 2.0) - 1,
        find(m_high, 1.0 - alpha / 2.0) - 1,
    )
}

/// Summarise raw per-iteration times. Returns `None` for an empty slice.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
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
    let (lo, hi) = median_ci_ranks(n, 0.05);
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
        ci_low: s[lo],
        ci_high: s[hi],
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
        assert!(lo < iid.ci_low && hi > iid.ci_high, "{lo} {hi} vs {iid:?}");
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
        // (x(2), x(9)) 1-based; the exact bootstrap interval agrees.
        assert_eq!(median_ci_ranks(10, 0.05), (1, 8));
        // Symmetric and centred for larger n, about 1.96·sqrt(n)/2 ranks each side.
        let (lo, hi) = median_ci_ranks(1001, 0.05);
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
            let s = summarize(&xs).unwrap();
            if s.ci_low <= std::f64::consts::LN_2 && std::f64::consts::LN_2 <= s.ci_high {
                covered += 1;
            }
        }
        let rate = covered as f64 / trials as f64;
        assert!((0.92..=0.995).contains(&rate), "coverage {rate}");
    }

    #[test]
    fn constant_samples_have_zero_width_and_no_outliers() {
        let s = summarize(&[2.0; 20]).unwrap();
        assert_eq!(s.ci_rel_width(), 0.0);
        assert_eq!(s.outliers, 0);
    }
}
