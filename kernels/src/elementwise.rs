//! Memory-bound kernels: layernorm, softmax, GELU, and streaming bandwidth kernels,
//! all composed from candle-core primitives as a training framework on candle would.
//!
//! FLOP conventions (per element; transcendental functions count as one FLOP):
//! - layernorm: 7 (mean sum, centre, square, variance sum, scale by 1/σ, ·γ, +β);
//! - softmax: 5 (max, subtract, exp, sum, divide);
//! - GELU (tanh approximation): 9 (x³ is 2, ·0.044715, +x, ·sqrt(2/π), tanh, +1, ·x, ·0.5);
//! - scale `y = a·x + b`: 2; triad `a = b + s·c`: 2.
//!
//! Bytes are the algorithmic minimum (each input read once, each output written once);
//! candle materialises intermediates, so the achieved bandwidth it reports is lower
//! than the memory traffic it really causes — which is what a user of candle gets.

use candle_core::{DType, Device, Tensor, D};

use crate::verify::{host_f64, sample_indices, unit_roundoff, Verification};
use crate::{dtype_size, randn, Kernel, KernelError, KernelKind, Prepared, Result, Work};

/// Which memory-bound operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Layer normalisation over each row, with learned scale and shift.
    LayerNorm,
    /// Softmax over each row.
    Softmax,
    /// GELU, tanh approximation (GPT-2/BERT).
    Gelu,
    /// STREAM-style scale `y = a·x + b` (one read, one write).
    Scale,
    /// STREAM-style triad `a = b + s·c` (two reads, one write).
    Triad,
}

impl Op {
    fn flops_per_element(self) -> u64 {
        match self {
            Op::LayerNorm => 7,
            Op::Softmax => 5,
            Op::Gelu => 9,
            Op::Scale | Op::Triad => 2,
        }
    }

    fn arrays_moved(self) -> u64 {
        if self == Op::Triad {
            3
        } else {
            2
        }
    }

    fn kind(self) -> KernelKind {
        match self {
            Op::LayerNorm => KernelKind::LayerNorm,
            Op::Softmax => KernelKind::Softmax,
            Op::Gelu => KernelKind::Gelu,
            Op::Scale | Op::Triad => KernelKind::Bandwidth,
        }
    }
}

/// A memory-bound kernel over a `[rows, cols]` tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Elementwise {
    /// What this is in the model, e.g. `ln` or `ffn_act`.
    pub label: String,
    /// The operation.
    pub op: Op,
    /// Rows (tokens, or score rows).
    pub rows: usize,
    /// Columns (the normalised / reduced dimension).
    pub cols: usize,
    /// Element type.
    pub dtype: DType,
}

const LN_EPS: f64 = 1e-5;
const SCALE_A: f64 = 1.5;
const SCALE_B: f64 = 0.25;
const TRIAD_S: f64 = 3.0;

impl Elementwise {
    /// A streaming kernel over `elements` values (one row).
    pub fn bandwidth(op: Op, elements: usize, dtype: DType) -> Self {
        let label = if op == Op::Triad { "triad" } else { "scale" };
        Elementwise {
            label: label.into(),
            op,
            rows: 1,
            cols: elements,
            dtype,
        }
    }

    fn elements(&self) -> u64 {
        (self.rows * self.cols) as u64
    }

    /// Relative tolerance of the f64 check for this dtype.
    fn tolerance(&self) -> f64 {
        let u = unit_roundoff(self.dtype);
        match self.op {
            // Row statistics accumulate over `cols`; outputs are O(1).
            Op::LayerNorm | Op::Softmax => 64.0 * u * (1.0 + (self.cols as f64).sqrt() / 8.0),
            Op::Gelu | Op::Scale | Op::Triad => 16.0 * u,
        }
    }

    fn prepare_elementwise(&self, device: &Device) -> Result<PreparedElementwise> {
        if self.rows == 0 || self.cols == 0 {
            return Err(KernelError::InvalidShape {
                kernel: self.label.clone(),
                reason: "rows and cols must be positive".into(),
            });
        }
        let x = randn(&[self.rows, self.cols], self.dtype, device)?;
        let second = match self.op {
            Op::LayerNorm | Op::Triad => Some(randn(&[self.rows, self.cols], self.dtype, device)?),
            _ => None,
        };
        let params = if self.op == Op::LayerNorm {
            Some((
                randn(&[self.cols], self.dtype, device)?,
                randn(&[self.cols], self.dtype, device)?,
            ))
        } else {
            None
        };
        Ok(PreparedElementwise {
            spec: self.clone(),
            device: device.clone(),
            x,
            second: if self.op == Op::Triad { second } else { None },
            params,
            out: None,
        })
    }
}

impl Kernel for Elementwise {
    fn kind(&self) -> KernelKind {
        self.op.kind()
    }

    fn label(&self) -> String {
        self.label.clone()
    }

    fn dims(&self) -> Vec<(&'static str, u64)> {
        if self.rows == 1 {
            vec![("n", self.cols as u64)]
        } else {
            vec![("rows", self.rows as u64), ("cols", self.cols as u64)]
        }
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn work(&self) -> Work {
        let flops = self.op.flops_per_element() * self.elements();
        Work {
            flops,
            model_flops: flops,
            bytes: self.op.arrays_moved() * self.elements() * dtype_size(self.dtype),
        }
    }

    fn memory_bytes(&self) -> u64 {
        // Inputs, output and up to four full-size temporaries.
        (self.op.arrays_moved() + 4) * self.elements() * dtype_size(self.dtype)
    }

    fn prepare(&self, device: &Device) -> Result<Box<dyn Prepared>> {
        Ok(Box::new(self.prepare_elementwise(device)?))
    }
}

struct PreparedElementwise {
    spec: Elementwise,
    device: Device,
    x: Tensor,
    second: Option<Tensor>,
    params: Option<(Tensor, Tensor)>,
    out: Option<Tensor>,
}

fn missing(what: &str) -> KernelError {
    KernelError::InvalidShape {
        kernel: what.into(),
        reason: "input was not prepared".into(),
    }
}

impl Prepared for PreparedElementwise {
    fn run(&mut self) -> Result<()> {
        let x = &self.x;
        let out = match self.spec.op {
            Op::LayerNorm => {
                let (gamma, beta) = self.params.as_ref().ok_or_else(|| missing("layernorm"))?;
                let mean = x.mean_keepdim(D::Minus1)?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
                let inv_std = (var + LN_EPS)?.sqrt()?.recip()?;
                centred
                    .broadcast_mul(&inv_std)?
                    .broadcast_mul(gamma)?
                    .broadcast_add(beta)?
            }
            Op::Softmax => {
                let max = x.max_keepdim(D::Minus1)?;
                let exp = x.broadcast_sub(&max)?.exp()?;
                let sum = exp.sum_keepdim(D::Minus1)?;
                exp.broadcast_div(&sum)?
            }
            Op::Gelu => x.gelu()?,
            Op::Scale => x.affine(SCALE_A, SCALE_B)?,
            Op::Triad => {
                let c = self.second.as_ref().ok_or_else(|| missing("triad"))?;
                x.add(&c.affine(TRIAD_S, 0.0)?)?
            }
        };
        self.out = Some(out);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.device.synchronize()?)
    }

    fn verify(&mut self) -> Result<Verification> {
        if self.out.is_none() {
            self.run()?;
        }
        let out = host_f64(self.out.as_ref().ok_or_else(|| missing("output"))?)?;
        let x = host_f64(&self.x)?;
        let cols = self.spec.cols;
        let mut v = Verification::new(self.spec.tolerance());
        match self.spec.op {
            Op::LayerNorm | Op::Softmax => {
                let params = match &self.params {
                    Some((g, b)) => Some((host_f64(g)?, host_f64(b)?)),
                    None => None,
                };
                for row in sample_indices(self.spec.rows, 16, 0x1a7e) {
                    let xr = &x[row * cols..][..cols];
                    let want = match &params {
                        Some((g, b)) => layernorm_ref(xr, g, b),
                        None => softmax_ref(xr),
                    };
                    let scale = want.iter().map(|w| w.abs()).fold(1e-3, f64::max);
                    for (c, w) in want.iter().enumerate() {
                        v.check(out[row * cols + c], *w, scale);
                    }
                }
            }
            Op::Gelu | Op::Scale | Op::Triad => {
                let c = match &self.second {
                    Some(t) => Some(host_f64(t)?),
                    None => None,
                };
                for i in sample_indices(x.len(), 512, 0xe1e) {
                    let want = match self.spec.op {
                        Op::Gelu => gelu_ref(x[i]),
                        Op::Scale => SCALE_A * x[i] + SCALE_B,
                        _ => x[i] + TRIAD_S * c.as_ref().map_or(0.0, |c| c[i]),
                    };
                    v.check(out[i], want, want.abs().max(1.0));
                }
            }
        }
        Ok(v)
    }
}

fn layernorm_ref(x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + LN_EPS).sqrt();
    x.iter()
        .zip(gamma.iter().zip(beta))
        .map(|(v, (g, b))| (v - mean) * inv * g + b)
        .collect()
}

fn softmax_ref(x: &[f64]) -> Vec<f64> {
    let max = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

fn gelu_ref(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_memory_bound_kernel_verifies_in_every_dtype() {
        for op in [Op::LayerNorm, Op::Softmax, Op::Gelu, Op::Scale, Op::Triad] {
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let k = Elementwise {
                    label: "t".into(),
                    op,
                    rows: 19,
                    cols: 300,
                    dtype,
                };
                let v = k.prepare(&Device::Cpu).unwrap().verify().unwrap();
                assert!(v.passed, "{op:?} {dtype:?}: {v:?}");
            }
        }
    }

    #[test]
    fn a_wrong_layernorm_fails_verification() {
        let k = Elementwise {
            label: "ln".into(),
            op: Op::LayerNorm,
            rows: 8,
            cols: 64,
            dtype: DType::F32,
        };
        let mut p = k.prepare_elementwise(&Device::Cpu).unwrap();
        // Drop the shift: a plausible bug that leaves outputs of the right shape.
        if let Some((_, beta)) = &mut p.params {
            *beta = beta.zeros_like().unwrap();
        }
        p.run().unwrap();
        let kept = p.out.clone();
        let mut fresh = k.prepare_elementwise(&Device::Cpu).unwrap();
        fresh.x = p.x.clone();
        fresh.out = kept;
        assert!(!fresh.verify().unwrap().passed);
    }

    #[test]
    fn triad_moves_three_arrays_and_scale_two() {
        let t = Elementwise::bandwidth(Op::Triad, 1000, DType::F32).work();
        let s = Elementwise::bandwidth(Op::Scale, 1000, DType::F32).work();
        assert_eq!((t.bytes, s.bytes), (12_000, 8_000));
        assert_eq!((t.flops, s.flops), (2000, 2000));
    }
}
