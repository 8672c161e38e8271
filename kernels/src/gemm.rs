//! Dense and batched matrix multiplication in the layouts a training step uses.
//!
//! A linear layer `Y = X·W` with `X: [T, in]`, `W: [in, out]` runs three GEMMs per
//! training step, each with `2·T·in·out` FLOPs:
//! forward `X·W`, grad-input `dY·Wᵀ`, and grad-weight `Xᵀ·dY`. The operands are stored
//! the way a framework stores them and the transposes are strided views, exactly as
//! autograd issues them; candle hands the strides to `gemm` without copying.

use candle_core::{DType, Device, Tensor};

use crate::verify::{host_f64, reduction_tolerance, sample_indices, Verification};
use crate::{dtype_size, randn, Kernel, KernelError, KernelKind, Prepared, Result, Work};

/// Which GEMM of a linear layer's training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmPass {
    /// Forward `X·W`: both operands row-major.
    Forward,
    /// Grad-input `dY·Wᵀ`: right operand transposed.
    GradInput,
    /// Grad-weight `Xᵀ·dY`: left operand transposed.
    GradWeight,
}

impl GemmPass {
    /// Short name used in labels: `fwd`, `dgrad`, `wgrad`.
    pub fn as_str(self) -> &'static str {
        match self {
            GemmPass::Forward => "fwd",
            GemmPass::GradInput => "dgrad",
            GemmPass::GradWeight => "wgrad",
        }
    }

    /// All three training layouts.
    pub const ALL: [GemmPass; 3] = [GemmPass::Forward, GemmPass::GradInput, GemmPass::GradWeight];
}

/// `C[batch, m, n] = op(A)[batch, m, k] · op(B)[batch, k, n]`, where `op` is either the
/// identity or a transpose of a row-major stored operand.
#[derive(Debug, Clone, PartialEq)]
pub struct Matmul {
    /// What this matmul is in the model, e.g. `qkv.fwd`.
    pub label: String,
    /// Batch count; 1 gives a plain 2-D GEMM.
    pub batch: usize,
    /// Rows of the output.
    pub m: usize,
    /// Columns of the output.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// `A` is stored as `[k, m]` and used transposed.
    pub trans_a: bool,
    /// `B` is stored as `[n, k]` and used transposed.
    pub trans_b: bool,
    /// Element type.
    pub dtype: DType,
}

impl Matmul {
    /// A square `n×n×n` GEMM, for roofline and peer comparison.
    pub fn square(n: usize, dtype: DType) -> Self {
        Matmul {
            label: "square".into(),
            batch: 1,
            m: n,
            n,
            k: n,
            trans_a: false,
            trans_b: false,
            dtype,
        }
    }

    /// The GEMM of one training layout of a linear layer `[tokens, d_in] → [tokens, d_out]`.
    pub fn linear(
        name: &str,
        layout: GemmPass,
        tokens: usize,
        d_in: usize,
        d_out: usize,
        dtype: DType,
    ) -> Self {
        let (m, n, k, trans_a, trans_b) = match layout {
            GemmPass::Forward => (tokens, d_out, d_in, false, false),
            GemmPass::GradInput => (tokens, d_in, d_out, false, true),
            GemmPass::GradWeight => (d_in, d_out, tokens, true, false),
        };
        Matmul {
            label: format!("{name}.{}", layout.as_str()),
            batch: 1,
            m,
            n,
            k,
            trans_a,
            trans_b,
            dtype,
        }
    }

    fn stored_a(&self) -> [usize; 2] {
        if self.trans_a {
            [self.k, self.m]
        } else {
            [self.m, self.k]
        }
    }

    fn stored_b(&self) -> [usize; 2] {
        if self.trans_b {
            [self.n, self.k]
        } else {
            [self.k, self.n]
        }
    }

    fn shape_of(&self, two_d: [usize; 2]) -> Vec<usize> {
        if self.batch == 1 {
            two_d.to_vec()
        } else {
            vec![self.batch, two_d[0], two_d[1]]
        }
    }

    /// Allocate the operands; the concrete type exposes [`PreparedMatmul::verify_output`].
    pub fn prepare_matmul(&self, device: &Device) -> Result<PreparedMatmul> {
        self.check()?;
        let a = randn(&self.shape_of(self.stored_a()), self.dtype, device)?;
        let b = randn(&self.shape_of(self.stored_b()), self.dtype, device)?;
        Ok(self.with_operands(device, a, b))
    }

    /// A runnable instance on the stored operands `a` and `b`.
    fn with_operands(&self, device: &Device, a: Tensor, b: Tensor) -> PreparedMatmul {
        PreparedMatmul {
            spec: self.clone(),
            device: device.clone(),
            a,
            b,
            out: None,
            pooled: Vec::new(),
            next: 0,
            recent: std::collections::VecDeque::new(),
            ring_bytes: 0,
        }
    }

    fn check(&self) -> Result<()> {
        if self.batch == 0 || self.m == 0 || self.n == 0 || self.k == 0 {
            return Err(KernelError::InvalidShape {
                kernel: self.label.clone(),
                reason: "every dimension must be positive".into(),
            });
        }
        Ok(())
    }
}

/// Transpose the last two dimensions as a strided view (no copy).
fn view_t(t: &Tensor) -> Result<Tensor> {
    let rank = t.rank();
    Ok(t.transpose(rank - 2, rank - 1)?)
}

impl Kernel for Matmul {
    fn kind(&self) -> KernelKind {
        KernelKind::Matmul
    }

    fn label(&self) -> String {
        self.label.clone()
    }

    fn dims(&self) -> Vec<(&'static str, u64)> {
        let mut d = Vec::with_capacity(4);
        if self.batch > 1 {
            d.push(("b", self.batch as u64));
        }
        d.extend([
            ("m", self.m as u64),
            ("n", self.n as u64),
            ("k", self.k as u64),
        ]);
        d
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    fn work(&self) -> Work {
        let (b, m, n, k) = (
            self.batch as u64,
            self.m as u64,
            self.n as u64,
            self.k as u64,
        );
        let flops = 2 * b * m * n * k;
        Work {
            flops,
            model_flops: flops,
            bytes: b * (m * k + k * n + m * n) * dtype_size(self.dtype),
        }
    }

    fn memory_bytes(&self) -> u64 {
        let base = self.work().bytes;
        // candle's CPU bf16 matmul widens both operands and the output to f32.
        if self.dtype == DType::BF16 {
            base * 3
        } else {
            base
        }
    }

    fn prepare(&self, device: &Device) -> Result<Box<dyn Prepared>> {
        Ok(Box::new(self.prepare_matmul(device)?))
    }

    fn prepare_pooled(&self, device: &Device, pool: &Tensor) -> Option<Result<Box<dyn Prepared>>> {
        self.prepare_matmul_pooled(device, pool)
            .map(|p| p.map(|p| Box::new(p) as Box<dyn Prepared>))
    }
}

impl Matmul {
    /// [`Kernel::prepare_pooled`] for a matmul: its operand pairs cut one after another
    /// from `pool` (as many whole pairs as fit), `None` where not one fits or the dtype
    /// differs.
    pub fn prepare_matmul_pooled(
        &self,
        device: &Device,
        pool: &Tensor,
    ) -> Option<Result<PreparedMatmul>> {
        if let Err(e) = self.check() {
            return Some(Err(e));
        }
        let (a, b) = (
            self.shape_of(self.stored_a()),
            self.shape_of(self.stored_b()),
        );
        let (na, nb): (usize, usize) = (a.iter().product(), b.iter().product());
        let pair = na + nb;
        let len = pool.elem_count();
        if pool.dtype() != self.dtype || pool.rank() != 1 || pair == 0 || pair > len {
            return None;
        }
        let view = |offset: usize, n: usize, shape: &[usize]| -> Result<Tensor> {
            Ok(pool.narrow(0, offset, n)?.reshape(shape)?)
        };
        let pairs: Result<Vec<(Tensor, Tensor)>> = (0..len / pair)
            .map(|i| Ok((view(i * pair, na, &a)?, view(i * pair + na, nb, &b)?)))
            .collect();
        Some(pairs.map(|pooled| {
            // Verification runs on the first pair (the operands the first run gets).
            let (a0, b0) = pooled[0].clone();
            PreparedMatmul {
                pooled,
                ring_bytes: len * dtype_size(self.dtype) as usize,
                ..self.with_operands(device, a0, b0)
            }
        }))
    }
}

/// A [`Matmul`] with its operands allocated.
pub struct PreparedMatmul {
    spec: Matmul,
    device: Device,
    a: Tensor,
    b: Tensor,
    out: Option<Tensor>,
    /// Operand pairs taken in turn, run after run ([`Kernel::prepare_pooled`]); empty:
    /// `a` and `b` every run.
    pooled: Vec<(Tensor, Tensor)>,
    next: usize,
    /// Recent outputs kept alive, up to `ring_bytes`, so that each run writes its
    /// output to memory it has not touched for that many bytes (in a training step a
    /// GEMM's output is a fresh tensor while earlier activations are still held);
    /// released by [`Prepared::idle`].
    recent: std::collections::VecDeque<Tensor>,
    ring_bytes: usize,
}

impl PreparedMatmul {
    fn operands(&self) -> Result<(Tensor, Tensor)> {
        let a = if self.spec.trans_a {
            view_t(&self.a)?
        } else {
            self.a.clone()
        };
        let b = if self.spec.trans_b {
            view_t(&self.b)?
        } else {
            self.b.clone()
        };
        Ok((a, b))
    }

    /// Check `out` (logical `[batch, m, n]`) against an f64 recomputation of sampled
    /// entries. Public so a deliberately corrupted output can be shown to fail.
    pub fn verify_output(&self, out: &Tensor) -> Result<Verification> {
        let s = &self.spec;
        let (a, b) = self.operands()?;
        let (a, b, c) = (host_f64(&a)?, host_f64(&b)?, host_f64(out)?);
        let total = s.batch * s.m * s.n;
        if c.len() != total {
            return Err(KernelError::InvalidShape {
                kernel: s.label.clone(),
                reason: format!("output has {} elements, expected {total}", c.len()),
            });
        }
        let mut v = Verification::new(reduction_tolerance(s.dtype, s.k));
        for idx in sample_indices(total, 256, 0x5eed) {
            let (bi, rem) = (idx / (s.m * s.n), idx % (s.m * s.n));
            let (i, j) = (rem / s.n, rem % s.n);
            let a_row = &a[bi * s.m * s.k + i * s.k..][..s.k];
            let b_base = bi * s.k * s.n;
            let (mut want, mut scale) = (0.0, 0.0);
            for (p, &av) in a_row.iter().enumerate() {
                let prod = av * b[b_base + p * s.n + j];
                want += prod;
                scale += prod.abs();
            }
            v.check(c[idx], want, scale);
        }
        Ok(v)
    }
}

impl Prepared for PreparedMatmul {
    fn run(&mut self) -> Result<()> {
        if let Some((a, b)) = self.pooled.get(self.next) {
            (self.a, self.b) = (a.clone(), b.clone());
            self.next = (self.next + 1) % self.pooled.len();
        }
        let (a, b) = self.operands()?;
        let out = a.matmul(&b)?;
        if self.ring_bytes > 0 {
            let bytes = out.elem_count() * out.dtype().size_in_bytes();
            self.recent.push_back(out.clone());
            while self.recent.len() * bytes > self.ring_bytes {
                self.recent.pop_front();
            }
        }
        self.out = Some(out);
        Ok(())
    }

    fn idle(&mut self) {
        self.recent.clear();
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.device.synchronize()?)
    }

    fn verify(&mut self) -> Result<Verification> {
        if self.out.is_none() {
            self.run()?;
        }
        let out = self.out.clone().ok_or_else(|| KernelError::InvalidShape {
            kernel: self.spec.label.clone(),
            reason: "no output after run".into(),
        })?;
        self.verify_output(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(layout: GemmPass, dtype: DType) -> Matmul {
        Matmul::linear("t", layout, 37, 29, 41, dtype)
    }

    #[test]
    fn every_training_layout_verifies_in_f32() {
        for layout in GemmPass::ALL {
            let k = small(layout, DType::F32);
            let mut p = k.prepare(&Device::Cpu).unwrap();
            let v = p.verify().unwrap();
            assert!(v.passed, "{layout:?}: {v:?}");
            assert!(v.checked > 100);
        }
    }

    #[test]
    fn a_pooled_matmul_verifies_and_takes_each_run_the_next_operands_of_the_pool() {
        let k = small(GemmPass::GradInput, DType::F32);
        let pair = 37 * 41 + 29 * 41;
        let pool = crate::randn(&[3 * pair + 5], DType::F32, &Device::Cpu).unwrap();
        let mut p = k
            .prepare_matmul_pooled(&Device::Cpu, &pool)
            .unwrap()
            .unwrap();
        assert_eq!(p.pooled.len(), 3);
        let first = |p: &PreparedMatmul| p.a.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
        let at = |i: usize| pool.to_vec1::<f32>().unwrap()[i * pair];
        // Runs take pairs 0, 1, 2, then 0 again; each output checks against its own.
        for i in [0, 1, 2, 0] {
            p.run().unwrap();
            assert_eq!(first(&p), at(i));
            assert!(p.verify().unwrap().passed);
        }
        // Recent outputs stay alive up to the pool's bytes (37 x 29 f32 each, against
        // the pool's 3 pairs), so each run writes fresh memory; idle releases them.
        let ring = (3 * pair + 5) / (37 * 29);
        for _ in 0..ring + 3 {
            p.run().unwrap();
        }
        assert_eq!(p.recent.len(), ring);
        p.idle();
        assert!(p.recent.is_empty());
        // A pool smaller than one pair, or of another dtype, is declined.
        let short = crate::randn(&[pair - 1], DType::F32, &Device::Cpu).unwrap();
        assert!(k.prepare_pooled(&Device::Cpu, &short).is_none());
        let half = pool.to_dtype(DType::BF16).unwrap();
        assert!(k.prepare_pooled(&Device::Cpu, &half).is_none());
    }

    #[test]
    fn half_precision_matmuls_verify_against_their_rounded_inputs() {
        for dtype in [DType::BF16, DType::F16] {
            let mut p = small(GemmPass::GradWeight, dtype)
                .prepare(&Device::Cpu)
                .unwrap();
            let v = p.verify().unwrap();
            assert!(v.passed, "{dtype:?}: {v:?}");
        }
    }

    #[test]
    fn batched_transposed_matmul_verifies() {
        let k = Matmul {
            label: "scores".into(),
            batch: 3,
            m: 16,
            n: 16,
            k: 8,
            trans_a: false,
            trans_b: true,
            dtype: DType::F32,
        };
        let v = k.prepare(&Device::Cpu).unwrap().verify().unwrap();
        assert!(v.passed, "{v:?}");
    }

    #[test]
    fn a_wrong_matmul_output_fails_verification() {
        let mut p = small(GemmPass::GradInput, DType::F32)
            .prepare_matmul(&Device::Cpu)
            .unwrap();
        p.run().unwrap();
        let good = p.out.clone().unwrap();
        assert!(p.verify_output(&good).unwrap().passed);
        // A 0.1% error in every element is far above f32 roundoff.
        let scaled = (&good * 1.001).unwrap();
        assert!(!p.verify_output(&scaled).unwrap().passed);
        // The classic silent bug: the right operand read without its transpose.
        let a = p.a.clone();
        let b_untransposed = p.b.reshape((41, 29)).unwrap();
        let wrong = a.matmul(&b_untransposed).unwrap();
        assert!(!p.verify_output(&wrong).unwrap().passed);
    }

    #[test]
    fn flops_count_a_multiply_add_as_two() {
        let k = Matmul::square(64, DType::F32);
        assert_eq!(k.work().flops, 2 * 64 * 64 * 64);
        assert_eq!(k.work().bytes, 3 * 64 * 64 * 4);
        let l = Matmul::linear("qkv", GemmPass::GradWeight, 4096, 1024, 3072, DType::F32);
        assert_eq!((l.m, l.n, l.k), (1024, 3072, 4096));
        assert_eq!(l.work().flops, 2 * 4096 * 1024 * 3072);
        assert_eq!(l.id(), "matmul/qkv.wgrad/m1024.n3072.k4096/f32");
    }

    #[test]
    fn zero_dimension_is_refused_before_allocating() {
        let mut k = Matmul::square(8, DType::F32);
        k.k = 0;
        assert!(matches!(
            k.prepare(&Device::Cpu),
            Err(KernelError::InvalidShape { .. })
        ));
    }
}
