//! Scaled-dot-product attention built from candle-core primitives:
//! `softmax(Q·Kᵀ / sqrt(d) + mask) · V`, with an optional causal mask.
//!
//! FLOP convention. Executed FLOPs (`Work::flops`, the throughput basis) are the two
//! dense batched products, `2·s²·d` each per head, plus the softmax's elementwise work
//! on the `s×s` scores (scale, max, subtract, exp, sum, divide: 6 per score, and one
//! more for adding the mask when causal). candle computes the full products even when
//! a causal mask discards half of them, so executed FLOPs are not halved. The model's
//! FLOP accounting (`Work::model_flops`) counts the two products only and halves them
//! with a causal mask, as the model's FLOP accounting (flopcal-model's flops module) does.

use candle_core::{DType, Device, Tensor, D};

use crate::verify::{host_f64, sample_indices, Verification};
use crate::{dtype_size, randn, Kernel, KernelError, KernelKind, Prepared, Result, Work};

/// One attention forward over `batch × heads` independent heads.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionKernel {
    /// What this is in the model, e.g. `sdpa`.
    pub label: String,
    /// Sequences in the batch.
    pub batch: usize,
    /// Attention heads.
    pub heads: usize,
    /// Sequence length `s`.
    pub seq: usize,
    /// Head width `d`.
    pub head_dim: usize,
    /// Apply a causal (lower-triangular) mask.
    pub causal: bool,
    /// Element type.
    pub dtype: DType,
}

impl AttentionKernel {
    fn heads_total(&self) -> u64 {
        (self.batch * self.heads) as u64
    }

    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.heads == 0 || self.seq == 0 || self.head_dim == 0 {
            return Err(KernelError::InvalidShape {
                kernel: self.label.clone(),
                reason: "batch, heads, seq and head_dim must be positive".into(),
            });
        }
        Ok(())
    }

    /// Tolerance of the sampled f64 check: softmax amplifies score rounding, so the
    /// bound is empirical per dtype (about 10x the observed error of a correct kernel)
    /// and far below the error of a wrong scale, mask or layout.
    fn tolerance(&self) -> f64 {
        match self.dtype {
            DType::BF16 => 6e-2,
            DType::F16 => 1e-2,
            DType::F64 => 1e-10,
            _ => 1e-4,
        }
    }
}

impl Kernel for AttentionKernel {
    fn kind(&self) -> KernelKind {
        KernelKind::Attention
    }

    fn label(&self) -> String {
        if self.causal {
            format!("{}.causal", self.label)
        } else {
            self.label.clone()
        }
    }

    fn dims(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("b", self.batch as u64),
            ("h", self.heads as u64),
            ("s", self.seq as u64),
            ("d", self.head_dim as u64),
        ]
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn work(&self) -> Work {
        let (bh, s, d) = (self.heads_total(), self.seq as u64, self.head_dim as u64);
        let products = 4 * bh * s * s * d;
        let softmax = (6 + u64::from(self.causal)) * bh * s * s;
        Work {
            flops: products + softmax,
            model_flops: if self.causal { products / 2 } else { products },
            bytes: 4 * bh * s * d * dtype_size(self.dtype),
        }
    }

    fn memory_bytes(&self) -> u64 {
        let (bh, s, d) = (self.heads_total(), self.seq as u64, self.head_dim as u64);
        // Q, K, V, O plus about five live s×s temporaries (scores, shifted, exp, probs, mask).
        (4 * bh * s * d + 5 * bh * s * s) * dtype_size(self.dtype).max(4)
    }

    fn prepare(&self, device: &Device) -> Result<Box<dyn Prepared>> {
        Ok(Box::new(self.prepare_attention(device)?))
    }
}

impl AttentionKernel {
    fn prepare_attention(&self, device: &Device) -> Result<PreparedAttention> {
        self.check()?;
        let shape = [self.batch * self.heads, self.seq, self.head_dim];
        let q = randn(&shape, self.dtype, device)?;
        let k = randn(&shape, self.dtype, device)?;
        let v = randn(&shape, self.dtype, device)?;
        let mask = if self.causal {
            let s = self.seq;
            let values: Vec<f32> = (0..s * s)
                .map(|i| {
                    if i % s > i / s {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            Some(Tensor::from_vec(values, (s, s), device)?.to_dtype(self.dtype)?)
        } else {
            None
        };
        Ok(PreparedAttention {
            spec: self.clone(),
            device: device.clone(),
            q,
            k,
            v,
            mask,
            out: None,
        })
    }
}

struct PreparedAttention {
    spec: AttentionKernel,
    device: Device,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Option<Tensor>,
    out: Option<Tensor>,
}

impl Prepared for PreparedAttention {
    fn run(&mut self) -> Result<()> {
        let scale = 1.0 / (self.spec.head_dim as f64).sqrt();
        let scores = (self.q.matmul(&self.k.t()?)? * scale)?;
        let scores = match &self.mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None => scores,
        };
        let max = scores.max_keepdim(D::Minus1)?;
        let exp = scores.broadcast_sub(&max)?.exp()?;
        let sum = exp.sum_keepdim(D::Minus1)?;
        let probs = exp.broadcast_div(&sum)?;
        self.out = Some(probs.matmul(&self.v)?);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.device.synchronize()?)
    }

    fn verify(&mut self) -> Result<Verification> {
        if self.out.is_none() {
            self.run()?;
        }
        let Some(out) = &self.out else {
            return Err(KernelError::InvalidShape {
                kernel: self.spec.label.clone(),
                reason: "no output after run".into(),
            });
        };
        let (q, k, v, o) = (
            host_f64(&self.q)?,
            host_f64(&self.k)?,
            host_f64(&self.v)?,
            host_f64(out)?,
        );
        let (s, d) = (self.spec.seq, self.spec.head_dim);
        let scale = 1.0 / (d as f64).sqrt();
        let mut check = Verification::new(self.spec.tolerance());
        let rows = self.spec.batch * self.spec.heads * s;
        for row in sample_indices(rows, 24, 0xa77e) {
            let (head, i) = (row / s, row % s);
            let base = head * s * d;
            let keys = if self.spec.causal { i + 1 } else { s };
            let qi = &q[base + i * d..][..d];
            let scores: Vec<f64> = (0..keys)
                .map(|j| {
                    let kj = &k[base + j * d..][..d];
                    scale * qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let exp: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
            let total: f64 = exp.iter().sum();
            for c in 0..d {
                let (mut want, mut mag) = (0.0, 0.0);
                for (j, e) in exp.iter().enumerate() {
                    let term = e / total * v[base + j * d + c];
                    want += term;
                    mag += term.abs();
                }
                check.check(o[base + i * d + c], want, mag);
            }
        }
        Ok(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(causal: bool, dtype: DType) -> AttentionKernel {
        AttentionKernel {
            label: "sdpa".into(),
            batch: 2,
            heads: 3,
            seq: 33,
            head_dim: 16,
            causal,
            dtype,
        }
    }

    #[test]
    fn attention_verifies_with_and_without_a_causal_mask() {
        for causal in [false, true] {
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let v = spec(causal, dtype)
                    .prepare(&Device::Cpu)
                    .unwrap()
                    .verify()
                    .unwrap();
                assert!(v.passed, "causal={causal} {dtype:?}: {v:?}");
            }
        }
    }

    #[test]
    fn causal_mask_halves_model_flops_but_not_executed_flops() {
        let dense = spec(false, DType::F32).work();
        let causal = spec(true, DType::F32).work();
        let products = 4 * 6 * 33 * 33 * 16;
        assert_eq!(dense.model_flops, products);
        assert_eq!(causal.model_flops, products / 2);
        assert!(causal.flops > dense.flops);
    }

    #[test]
    fn a_missing_causal_mask_fails_verification() {
        let mut p = spec(true, DType::F32)
            .prepare_attention(&Device::Cpu)
            .unwrap();
        p.mask = None;
        p.run().unwrap();
        assert!(!p.verify().unwrap().passed);
    }
}
