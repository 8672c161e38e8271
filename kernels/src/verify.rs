//! Output verification against independent f64 references computed on the host.
//!
//! Full references of large kernels would cost as much as the kernel itself, so each
//! kernel checks a fixed-seed random sample of output elements (or rows), each
//! recomputed exactly in f64 from the very inputs the kernel read (after their
//! rounding to the kernel's dtype). A kernel that is fast but wrong fails loudly.

use candle_core::{DType, Tensor};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::Result;

/// Outcome of checking one kernel's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// How many output elements (or rows) were compared.
    pub checked: usize,
    /// Largest error observed, relative to the scale stated by the kernel
    /// (for a dot product, `sum |a_i * b_i|`; for a row op, the row's magnitude).
    pub max_rel_err: f64,
    /// Largest admissible relative error for this dtype and reduction length.
    pub tolerance: f64,
    /// Every checked value was finite and within tolerance.
    pub passed: bool,
}

impl Verification {
    /// Accumulate errors for checked values; a non-finite value fails outright.
    pub fn new(tolerance: f64) -> Self {
        Verification {
            checked: 0,
            max_rel_err: 0.0,
            tolerance,
            passed: true,
        }
    }

    /// Record one comparison of `got` against `want`, with `scale` the magnitude the
    /// error is measured against.
    pub fn check(&mut self, got: f64, want: f64, scale: f64) {
        self.checked += 1;
        if !got.is_finite() {
            self.passed = false;
            self.max_rel_err = f64::INFINITY;
            return;
        }
        let rel = (got - want).abs() / scale.max(f64::MIN_POSITIVE);
        if rel > self.max_rel_err {
            self.max_rel_err = rel;
        }
        if rel > self.tolerance {
            self.passed = false;
        }
    }
}

/// Unit roundoff of a dtype (half the distance from 1 to the next number).
pub fn unit_roundoff(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON / 2.0,
        DType::F16 => 2f64.powi(-11),
        DType::BF16 => 2f64.powi(-8),
        _ => f64::from(f32::EPSILON) / 2.0,
    }
}

/// Admissible relative error of a length-`n` reduction whose result is stored in
/// `dtype`: one rounding of the output plus a probabilistic accumulation bound
/// (`sqrt(n)` roundings of the accumulator, with margin). Half-precision kernels
/// accumulate in f32 on every backend flopcal supports.
pub fn reduction_tolerance(dtype: DType, n: usize) -> f64 {
    let acc = match dtype {
        DType::F64 => unit_roundoff(DType::F64),
        // f16 accumulation on some GPU paths: allow f16 roundoff per sqrt(n) steps.
        DType::F16 => unit_roundoff(DType::F16),
        _ => unit_roundoff(DType::F32),
    };
    2.0 * unit_roundoff(dtype) + 16.0 * (n as f64).sqrt() * acc
}

/// Copy a tensor to the host as f64 in logical (row-major) order, whatever its
/// layout, device or dtype.
pub fn host_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_device(&candle_core::Device::Cpu)?
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?)
}

/// Deterministic sample of `count` indices in `0..len`, always including both ends.
pub fn sample_indices(len: usize, count: usize, seed: u64) -> Vec<usize> {
    if len == 0 {
        return Vec::new();
    }
    if len <= count {
        return (0..len).collect();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..count.saturating_sub(2))
        .map(|_| rng.random_range(0..len))
        .collect();
    idx.push(0);
    idx.push(len - 1);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_outside_tolerance_fails_the_verification() {
        let mut v = Verification::new(1e-3);
        v.check(1.0, 1.0, 1.0);
        assert!(v.passed);
        v.check(1.01, 1.0, 1.0);
        assert!(!v.passed);
        assert!((v.max_rel_err - 0.01).abs() < 1e-12);
    }

    #[test]
    fn a_nan_output_fails_the_verification() {
        let mut v = Verification::new(1.0);
        v.check(f64::NAN, 0.0, 1.0);
        assert!(!v.passed);
    }

    #[test]
    fn sampled_indices_stay_in_range_and_cover_both_ends() {
        let idx = sample_indices(1000, 64, 7);
        assert_eq!(idx.len(), 64);
        assert!(idx.iter().all(|&i| i < 1000));
        assert!(idx.contains(&0) && idx.contains(&999));
        assert_eq!(sample_indices(5, 64, 7), vec![0, 1, 2, 3, 4]);
    }
}
