//! The α–β (latency–bandwidth) model of a collective: `time = α + β · bytes`,
//! fitted over a sweep of sizes.
//!
//! Least squares on *relative* residuals (weights 1/t²): the sweep spans eight
//! decades of size, and ordinary least squares would let the largest sizes decide
//! everything, leaving α as noise. Relative weighting makes the small sizes pin α and
//! the large ones pin β. A negative α (possible when protocol switches bend the
//! curve) is refitted with α = 0.

/// How the fit is made, as written in result files.
pub const METHOD: &str = "least squares on relative residuals (weights 1/t^2) over the verified median times; alpha >= 0";

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
    let first = points.first()?.0;
    if points.iter().all(|&(x, _)| x == first) {
        return None;
    }
    // Weighted normal equations, w = 1/t².
    let (mut sw, mut swx, mut swxx, mut swt, mut swxt) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(x, t) in points {
        let w = 1.0 / (t * t);
        sw += w;
        swx += w * x;
        swxx += w * x * x;
        swt += w * t;
        swxt += w * x * t;
    }
    let det = sw * swxx - swx * swx;
    let (mut alpha, mut beta) = if det > 0.0 {
        (
            (swxx * swt - swx * swxt) / det,
            (sw * swxt - swx * swt) / det,
        )
    } else {
        (-1.0, 0.0)
    };
    if alpha < 0.0 {
        alpha = 0.0;
        beta = swxt / swxx;
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
    fn latency_is_pinned_by_small_sizes_not_drowned_by_large_ones() {
        // 10% noise on the largest sizes must not move alpha by a factor.
        let (a, b) = (2e-6, 1.0 / 10e9);
        let pts: Vec<(f64, f64)> = (3..28)
            .map(|k| {
                let x = (1u64 << k) as f64;
                let noise = if k > 24 { 1.1 } else { 1.0 };
                (x, (a + b * x) * noise)
            })
            .collect();
        let f = alpha_beta(&pts).unwrap();
        assert!((f.alpha / a - 1.0).abs() < 0.1, "{f:?}");
    }

    #[test]
    fn one_size_or_a_flat_or_bad_sweep_has_no_fit() {
        assert!(alpha_beta(&[(8.0, 1e-6), (8.0, 2e-6)]).is_none());
        assert!(alpha_beta(&[(8.0, 2e-6), (1e6, 1e-6)]).is_none());
        assert!(alpha_beta(&[(8.0, 0.0), (16.0, 1e-6)]).is_none());
        assert!(alpha_beta(&[]).is_none());
    }
}
