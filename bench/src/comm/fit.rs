//! The α–β (latency–bandwidth) model of a collective: `time = α + β · bytes`,
//! fitted over a sweep of sizes.
//!
//! α is the time at the smallest size (pure latency), and β the least-squares slope
//! of `time − α` over the largest sizes (within 16× of the largest: the asymptotic
//! bandwidth a gradient reduction sees). A single fit over the whole sweep cannot do
//! both: measured over 2 ranks on one host, protocol switches (eager to rendezvous)
//! and cache effects bend the curve in the middle, and a least-squares line through
//! eight decades of sizes then missed the 256 MiB bandwidth by a factor of ten. The
//! largest relative residual over every point is kept in the file to show that bend.

/// How the fit is made, as written in result files.
pub const METHOD: &str = "alpha = median time at the smallest size less its beta*bytes; beta = least-squares slope of (time - alpha) over the sizes within 16x of the largest";

/// A fitted α–β line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlphaBeta {
    /// Seconds.
    pub alpha: f64,
    /// Seconds per byte.
    pub beta: f64,
    /// Largest |measured − fitted| / measured over the points.
    pub max_rel_residual: f64,
}

impl AlphaBeta {
    /// Predicted seconds at `bytes`.
    pub fn time(&self, bytes: f64) -> f64 {
        self.alpha + self.beta * bytes
    }
}

/// Fit `(bytes, seconds)` points. `None` with fewer than two distinct sizes, a
/// non-positive or non-finite time, or no positive slope.
pub fn alpha_beta(points: &[(f64, f64)]) -> Option<AlphaBeta> {
    if points
        .iter()
        .any(|&(x, t)| !(x.is_finite() && t.is_finite() && x > 0.0 && t > 0.0))
    {
        return None;
    }
    let smallest = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let largest = points.iter().map(|p| p.0).fold(0.0, f64::max);
    if largest <= smallest {
        return None;
    }
    let t_small = points
        .iter()
        .filter(|p| p.0 == smallest)
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min);
    // The smallest size's own transfer time (β·x) comes off α; a few rounds of
    // this fixed point converge (each shrinks the error by x_small / x_large).
    let (mut alpha, mut beta) = (t_small, 0.0);
    for _ in 0..3 {
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for &(x, t) in points
            .iter()
            .filter(|p| p.0 > smallest && p.0 * 16.0 >= largest)
        {
            sxy += x * (t - alpha);
            sxx += x * x;
        }
        beta = sxy / sxx;
        alpha = (t_small - beta * smallest).max(0.0);
    }
    if !(beta > 0.0 && beta.is_finite()) {
        return None;
    }
    let line = AlphaBeta {
        alpha,
        beta,
        max_rel_residual: 0.0,
    };
    let max_rel_residual = points
        .iter()
        .map(|&(x, t)| (line.time(x) - t).abs() / t)
        .fold(0.0, f64::max);
    Some(AlphaBeta {
        max_rel_residual,
        ..line
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_line_is_recovered_across_eight_decades() {
        let (a, b) = (5e-6, 1.0 / 4e9);
        let pts: Vec<(f64, f64)> = (3..28)
            .map(|k| {
                let x = (1u64 << k) as f64;
                (x, a + b * x)
            })
            .collect();
        let f = alpha_beta(&pts).unwrap();
        assert!((f.alpha / a - 1.0).abs() < 1e-9, "{f:?}");
        assert!((f.beta / b - 1.0).abs() < 1e-9, "{f:?}");
        assert!(f.max_rel_residual < 1e-9);
    }

    #[test]
    fn latency_comes_from_small_sizes_and_bandwidth_from_large_ones_despite_a_bend() {
        // A protocol switch makes mid sizes 3x slower than the line; neither end of
        // the fit may move with it.
        let (a, b) = (2e-6, 1.0 / 10e9);
        let pts: Vec<(f64, f64)> = (3..29)
            .map(|k| {
                let x = (1u64 << k) as f64;
                let bend = if (12..20).contains(&k) { 3.0 } else { 1.0 };
                (x, (a + b * x) * bend)
            })
            .collect();
        let f = alpha_beta(&pts).unwrap();
        assert!((f.alpha / a - 1.0).abs() < 0.01, "{f:?}");
        assert!((f.beta / b - 1.0).abs() < 0.01, "{f:?}");
        assert!(f.max_rel_residual > 0.5, "the bend shows in the residual");
    }

    #[test]
    fn one_size_or_a_flat_or_bad_sweep_has_no_fit() {
        assert!(alpha_beta(&[(8.0, 1e-6), (8.0, 2e-6)]).is_none());
        assert!(alpha_beta(&[(8.0, 2e-6), (1e6, 1e-6)]).is_none());
        assert!(alpha_beta(&[(8.0, 0.0), (16.0, 1e-6)]).is_none());
        assert!(alpha_beta(&[]).is_none());
    }
}
