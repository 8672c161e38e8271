//! Two-sample statistics for comparing two sets of timing samples.
//!
//! - [`bootstrap_log_ratio`]: the change in median throughput between a baseline and
//!   a candidate with a percentile bootstrap confidence interval. Both sample sets are
//!   resampled independently (each run is its own population) and the statistic is
//!   computed in log space, `ln(median(base)) − ln(median(cand))`, so a change is
//!   symmetric (×1.1 and ÷1.1 are equally far from zero) and the interval maps back
//!   to a relative change with `exp(x) − 1`. The RNG is seeded: the same inputs give
//!   the same interval, which keeps CI verdicts reproducible.
//! - [`mann_whitney_slower`]: the one-sided Mann–Whitney U test that the candidate's
//!   times are stochastically larger (slower) than the baseline's, with the normal
//!   approximation, tie correction and continuity correction. It is rank based, so a
//!   few preempted samples cannot fake or hide a regression.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal};

use super::stats::{median_sorted, sorted};

/// Default number of bootstrap resamples.
pub const DEFAULT_RESAMPLES: usize = 2000;

/// Default seed of the bootstrap RNG.
pub const DEFAULT_SEED: u64 = 0x0F10_CCA1;

/// Change in median throughput between two sets of per-iteration times.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogRatio {
    /// `ln(median(base) / median(cand))`: positive when the candidate is faster.
    pub log_change: f64,
    /// Lower end of the bootstrap CI of `log_change`.
    pub ci_low: f64,
    /// Upper end of the bootstrap CI of `log_change`.
    pub ci_high: f64,
}

impl LogRatio {
    /// Relative change in throughput, e.g. `-0.10` for 10% slower.
    pub fn change(&self) -> f64 {
        self.log_change.exp_m1()
    }

    /// Lower end of the CI of the relative change.
    pub fn change_low(&self) -> f64 {
        self.ci_low.exp_m1()
    }

    /// Upper end of the CI of the relative change.
    pub fn change_high(&self) -> f64 {
        self.ci_high.exp_m1()
    }
}

fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, |a, b| a.total_cmp(b));
    let hi = *hi;
    if n % 2 == 1 {
        hi
    } else {
        // The lower middle is the largest of the left part.
        let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        0.5 * (lo + hi)
    }
}

fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let pos = q * (n - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(n - 1);
    let frac = pos - i as f64;
    sorted[i] + (sorted[j] - sorted[i]) * frac
}

/// Bootstrap CI at confidence `1 − alpha` of the log ratio of median times
/// (baseline over candidate; positive = candidate faster), from `resamples`
/// independent resamples of both sets drawn with an RNG seeded by `seed`.
///
/// Returns `None` when either set is empty or holds a non-positive or non-finite time.
pub fn bootstrap_log_ratio(
    base: &[f64],
    cand: &[f64],
    resamples: usize,
    alpha: f64,
    seed: u64,
) -> Option<LogRatio> {
    let valid = |xs: &[f64]| !xs.is_empty() && xs.iter().all(|x| x.is_finite() && *x > 0.0);
    if !valid(base) || !valid(cand) {
        return None;
    }
    let lb: Vec<f64> = base.iter().map(|x| x.ln()).collect();
    let lc: Vec<f64> = cand.iter().map(|x| x.ln()).collect();
    let point = median_sorted(&sorted(&lb)) - median_sorted(&sorted(&lc));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rb = vec![0.0; lb.len()];
    let mut rc = vec![0.0; lc.len()];
    let mut stats = Vec::with_capacity(resamples.max(1));
    for _ in 0..resamples.max(1) {
        for x in rb.iter_mut() {
            *x = lb[rng.random_range(0..lb.len())];
        }
        for x in rc.iter_mut() {
            *x = lc[rng.random_range(0..lc.len())];
        }
        stats.push(median_in_place(&mut rb) - median_in_place(&mut rc));
    }
    stats.sort_unstable_by(|a, b| a.total_cmp(b));
    Some(LogRatio {
        log_change: point,
        ci_low: percentile_sorted(&stats, alpha / 2.0),
        ci_high: percentile_sorted(&stats, 1.0 - alpha / 2.0),
    })
}

/// Result of a one-sided Mann–Whitney U test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitney {
    /// U statistic of the candidate: pairs (base, cand) with cand > base, ties ½.
    pub u: f64,
    /// One-sided p-value for "candidate times are larger" (candidate slower).
    pub p_slower: f64,
    /// One-sided p-value for "candidate times are smaller" (candidate faster).
    pub p_faster: f64,
}

/// One-sided Mann–Whitney U tests of candidate vs baseline times, normal
/// approximation with tie and continuity corrections. Returns `None` for an empty set.
pub fn mann_whitney(base: &[f64], cand: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (base.len(), cand.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    // Rank the pooled samples, averaging ranks over ties.
    let mut pooled: Vec<(f64, bool)> = base
        .iter()
        .map(|&x| (x, false))
        .chain(cand.iter().map(|&x| (x, true)))
        .collect();
    pooled.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let n = pooled.len();
    let mut rank_sum_cand = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && pooled[j].0 == pooled[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        for item in &pooled[i..j] {
            if item.1 {
                rank_sum_cand += avg_rank;
            }
        }
        tie_term += t * t * t - t;
        i = j;
    }
    let (f1, f2, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_cand - f2 * (f2 + 1.0) / 2.0;
    let mean = f1 * f2 / 2.0;
    let var = f1 * f2 / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)).max(1.0));
    if var <= 0.0 {
        // Every sample identical: no evidence either way.
        return Some(MannWhitney {
            u,
            p_slower: 1.0,
            p_faster: 1.0,
        });
    }
    let sd = var.sqrt();
    let normal = Normal::standard();
    let z_slower = (u - mean - 0.5) / sd;
    let z_faster = (mean - u - 0.5) / sd;
    Some(MannWhitney {
        u,
        p_slower: 1.0 - normal.cdf(z_slower),
        p_faster: 1.0 - normal.cdf(z_faster),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lognormal(rng: &mut StdRng, n: usize, median: f64, sigma: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                // Box–Muller.
                let u1: f64 = 1.0 - rng.random::<f64>();
                let u2: f64 = rng.random::<f64>();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (median.ln() + sigma * z).exp()
            })
            .collect()
    }

    #[test]
    fn the_log_ratio_of_a_known_slowdown_is_recovered_within_its_ci() {
        let mut rng = StdRng::seed_from_u64(1);
        let base = lognormal(&mut rng, 60, 1.0, 0.02);
        let cand = lognormal(&mut rng, 60, 1.1, 0.02);
        let r = bootstrap_log_ratio(&base, &cand, 2000, 0.05, 7).unwrap();
        let truth = (1.0f64 / 1.1).ln();
        assert!(r.ci_low <= truth && truth <= r.ci_high, "{r:?}");
        assert!(r.change() < -0.07 && r.change() > -0.12, "{}", r.change());
    }

    #[test]
    fn the_bootstrap_is_deterministic_for_a_seed() {
        let base = [1.0, 1.1, 0.9, 1.05, 0.97];
        let cand = [1.2, 1.1, 1.3, 1.15, 1.22];
        let a = bootstrap_log_ratio(&base, &cand, 500, 0.05, 3).unwrap();
        let b = bootstrap_log_ratio(&base, &cand, 500, 0.05, 3).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_bootstrap_refuses_empty_or_non_positive_samples() {
        assert!(bootstrap_log_ratio(&[], &[1.0], 10, 0.05, 1).is_none());
        assert!(bootstrap_log_ratio(&[1.0, 0.0], &[1.0], 10, 0.05, 1).is_none());
        assert!(bootstrap_log_ratio(&[1.0], &[f64::NAN], 10, 0.05, 1).is_none());
    }

    #[test]
    fn mann_whitney_matches_a_hand_computed_case() {
        // Base all smaller than candidate: U = n1·n2 = 9, maximal evidence of "slower".
        let m = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(m.u, 9.0);
        // Exact one-sided p = 1/20 = 0.05; the normal approximation is close.
        assert!((0.03..0.07).contains(&m.p_slower), "{m:?}");
        assert!(m.p_faster > 0.9);
    }

    #[test]
    fn mann_whitney_handles_ties_and_identical_sets() {
        let m = mann_whitney(&[1.0; 5], &[1.0; 5]).unwrap();
        assert_eq!(m.p_slower, 1.0);
        let m = mann_whitney(&[1.0, 1.0, 2.0, 2.0], &[2.0, 2.0, 3.0, 3.0]).unwrap();
        assert_eq!(m.u, 14.0);
        assert!(m.p_slower < 0.05, "{m:?}");
    }

    #[test]
    fn mann_whitney_p_values_are_roughly_uniform_under_the_null() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut rejections = 0;
        for _ in 0..400 {
            let a = lognormal(&mut rng, 30, 1.0, 0.05);
            let b = lognormal(&mut rng, 30, 1.0, 0.05);
            if mann_whitney(&a, &b).unwrap().p_slower < 0.05 {
                rejections += 1;
            }
        }
        assert!((5..=35).contains(&rejections), "{rejections} of 400");
    }
}
