//! One real transformer training step (forward + backward) on candle-core autograd.
//!
//! The model is a pre-LN transformer (GPT-2 style, BERT-sized when asked): token and
//! position embeddings; `layers` blocks of `x + Attn(LN(x))` then `x + FFN(LN(x))`;
//! a final layernorm; an untied vocabulary projection; and mean token cross-entropy.
//! Linear layers carry no biases (their cost is a broadcast add, negligible next to
//! the GEMMs, and it keeps the op count the prediction models small).
//!
//! Every weight is a [`candle_core::Var`]; the loss's `backward()` fills a
//! [`candle_core::backprop::GradStore`]. candle-nn's fused softmax and layernorm do not
//! propagate gradients, so every op here is composed from candle-core primitives:
//! - layernorm: mean, centre, square, mean, `+ε`, sqrt, recip, scale, `·γ`, `+β`;
//! - attention softmax: `exp(s − max)/Σ` with the row max detached (softmax is
//!   shift-invariant, so the gradient is unchanged and no argmax backward is needed);
//! - GELU: candle-core's tanh-approximation unary op, which has a backward;
//! - cross-entropy: log-softmax (detached max, `log Σ exp`) and a `gather` of the
//!   target log-probabilities.
//!
//! One timed iteration ([`Prepared::run`]) is forward + backward. There is no optimizer
//! update: it is one memory-bound pass over the parameters and is not part of what
//! flopcal's kernel suite predicts.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var, D};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::verify::Verification;
use crate::{dtype_size, KernelError, Prepared, Result};

const LN_EPS: f64 = 1e-5;
/// Standard deviation of the random-normal weight initialisation (GPT-2's).
pub const INIT_STD: f64 = 0.02;

/// The sizes of one training step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepConfig {
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size `h`.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of one head (attention width `a = heads · head_dim`).
    pub head_dim: usize,
    /// FFN inner width `f`.
    pub ffn: usize,
    /// Vocabulary size `V`.
    pub vocab: usize,
    /// Sequence length `s`.
    pub seq: usize,
    /// Sequences per step `B`.
    pub batch: usize,
    /// Causal (decoder) attention mask.
    pub causal: bool,
    /// Element type of weights and activations (f32 or f64 on CPU).
    pub dtype: DType,
}

impl StepConfig {
    /// Tokens per step, `B·s`.
    pub fn tokens(&self) -> usize {
        self.batch * self.seq
    }

    /// Attention width `heads · head_dim`.
    pub fn attn_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Trainable parameters (embeddings included).
    pub fn parameters(&self) -> u64 {
        let (h, a, f, v, s) = (
            self.hidden as u64,
            self.attn_dim() as u64,
            self.ffn as u64,
            self.vocab as u64,
            self.seq as u64,
        );
        let block = h * 3 * a + a * h + h * f + f * h + 4 * h;
        v * h + s * h + self.layers as u64 * block + 2 * h + h * v
    }

    /// Rough peak memory of one step: weights, gradients and the activations autograd
    /// keeps (about a dozen `T×h`-sized tensors, the `T×f` FFN tensors and the `s×s`
    /// attention tensors per layer, and the `T×V` logits several times).
    pub fn memory_bytes(&self) -> u64 {
        let (t, h, f, v, s) = (
            self.tokens() as u64,
            self.hidden as u64,
            self.ffn as u64,
            self.vocab as u64,
            self.seq as u64,
        );
        let bh = (self.batch * self.heads) as u64;
        let per_layer = 16 * t * h + 6 * t * f + 6 * bh * s * s;
        let elems = 3 * self.parameters() + self.layers as u64 * per_layer + 8 * t * v;
        elems * dtype_size(self.dtype)
    }

    fn check(&self) -> Result<()> {
        let dims = [
            self.layers,
            self.hidden,
            self.heads,
            self.head_dim,
            self.ffn,
            self.vocab,
            self.seq,
            self.batch,
        ];
        if dims.contains(&0) {
            return Err(KernelError::InvalidShape {
                kernel: "step".into(),
                reason: "every dimension must be positive".into(),
            });
        }
        if !matches!(self.dtype, DType::F32 | DType::F64) {
            return Err(KernelError::UnsupportedDtype {
                dtype: self.dtype.as_str().into(),
                reason: "the training step runs in f32 (or f64 for checks)".into(),
            });
        }
        Ok(())
    }
}

/// The weights of one block.
struct Block {
    ln1: (Var, Var),
    w_qkv: Var,
    w_o: Var,
    ln2: (Var, Var),
    w_in: Var,
    w_out: Var,
}

/// A prepared training step: weights, a fixed random batch of token ids and targets.
pub struct TrainingStep {
    cfg: StepConfig,
    device: Device,
    tok_emb: Var,
    pos_emb: Var,
    blocks: Vec<Block>,
    ln_f: (Var, Var),
    w_vocab: Var,
    ids: Tensor,
    targets: Tensor,
    mask: Option<Tensor>,
    loss: Option<f64>,
    grads: Option<GradStore>,
}

fn normal(shape: &[usize], std: f64, dtype: DType, device: &Device) -> Result<Var> {
    let t = Tensor::randn(0f32, 1f32, shape, device)?.to_dtype(dtype)?;
    Ok(Var::from_tensor(&(t * std)?)?)
}

fn constant(n: usize, value: f64, dtype: DType, device: &Device) -> Result<Var> {
    Ok(Var::from_tensor(
        &(Tensor::ones(n, dtype, device)? * value)?,
    )?)
}

/// Layernorm over the last dimension, composed from primitives.
fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let inv_std = (var + LN_EPS)?.sqrt()?.recip()?;
    centred
        .broadcast_mul(&inv_std)?
        .broadcast_mul(gamma)?
        .broadcast_add(beta)
}

/// Row softmax over the last dimension, with the max detached.
fn softmax(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let exp = x.broadcast_sub(&max)?.exp()?;
    let sum = exp.sum_keepdim(D::Minus1)?;
    exp.broadcast_div(&sum)
}

impl TrainingStep {
    /// Allocate random-normal weights (std [`INIT_STD`], layernorm γ = 1, β = 0) and a
    /// random batch of token ids and targets, from a fixed seed.
    pub fn new(cfg: &StepConfig, device: &Device) -> Result<Self> {
        cfg.check()?;
        let (h, a, f, v, dt) = (cfg.hidden, cfg.attn_dim(), cfg.ffn, cfg.vocab, cfg.dtype);
        let ln = || -> Result<(Var, Var)> {
            Ok((constant(h, 1.0, dt, device)?, constant(h, 0.0, dt, device)?))
        };
        let blocks = (0..cfg.layers)
            .map(|_| {
                Ok(Block {
                    ln1: ln()?,
                    w_qkv: normal(&[h, 3 * a], INIT_STD, dt, device)?,
                    w_o: normal(&[a, h], INIT_STD, dt, device)?,
                    ln2: ln()?,
                    w_in: normal(&[h, f], INIT_STD, dt, device)?,
                    w_out: normal(&[f, h], INIT_STD, dt, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rng = StdRng::seed_from_u64(0x57e9);
        let t = cfg.tokens();
        let ids: Vec<u32> = (0..t).map(|_| rng.random_range(0..v as u32)).collect();
        let targets: Vec<u32> = (0..t).map(|_| rng.random_range(0..v as u32)).collect();
        let mask = if cfg.causal {
            let s = cfg.seq;
            let values: Vec<f32> = (0..s * s)
                .map(|i| {
                    if i % s > i / s {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            Some(Tensor::from_vec(values, (s, s), device)?.to_dtype(dt)?)
        } else {
            None
        };
        Ok(TrainingStep {
            cfg: cfg.clone(),
            device: device.clone(),
            tok_emb: normal(&[v, h], INIT_STD, dt, device)?,
            pos_emb: normal(&[cfg.seq, h], INIT_STD, dt, device)?,
            blocks,
            ln_f: ln()?,
            w_vocab: normal(&[h, v], INIT_STD, dt, device)?,
            ids: Tensor::from_vec(ids, t, device)?,
            targets: Tensor::from_vec(targets, (t, 1), device)?,
            mask,
            loss: None,
            grads: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StepConfig {
        &self.cfg
    }

    /// Every trainable variable, in a fixed order (embeddings, blocks, final LN, vocab).
    pub fn vars(&self) -> Vec<&Var> {
        let mut out = vec![&self.tok_emb, &self.pos_emb];
        for b in &self.blocks {
            out.extend([
                &b.ln1.0, &b.ln1.1, &b.w_qkv, &b.w_o, &b.ln2.0, &b.ln2.1, &b.w_in, &b.w_out,
            ]);
        }
        out.extend([&self.ln_f.0, &self.ln_f.1, &self.w_vocab]);
        out
    }

    /// The forward pass: mean cross-entropy loss over all `B·s` tokens (a scalar).
    pub fn forward(&self) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, s, h, heads, d) = (c.batch, c.seq, c.hidden, c.heads, c.head_dim);
        let (t, a) = (c.tokens(), c.attn_dim());
        let scale = 1.0 / (d as f64).sqrt();
        let x = self.tok_emb.as_tensor().embedding(&self.ids)?;
        let mut x = x
            .reshape((b, s, h))?
            .broadcast_add(self.pos_emb.as_tensor())?
            .reshape((t, h))?;
        for blk in &self.blocks {
            // Attention: one QKV GEMM, split into heads with one copy.
            let hn = layer_norm(&x, blk.ln1.0.as_tensor(), blk.ln1.1.as_tensor())?;
            let qkv = hn
                .matmul(blk.w_qkv.as_tensor())?
                .reshape((b, s, 3, heads, d))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            let q = qkv.get(0)?.reshape((b * heads, s, d))?;
            let k = qkv.get(1)?.reshape((b * heads, s, d))?;
            let v = qkv.get(2)?.reshape((b * heads, s, d))?;
            let scores = (q.matmul(&k.t()?)? * scale)?;
            let scores = match &self.mask {
                Some(m) => scores.broadcast_add(m)?,
                None => scores,
            };
            let probs = softmax(&scores)?;
            let o = probs
                .matmul(&v)?
                .reshape((b, heads, s, d))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((t, a))?;
            x = (x + o.matmul(blk.w_o.as_tensor())?)?;
            // FFN.
            let hn = layer_norm(&x, blk.ln2.0.as_tensor(), blk.ln2.1.as_tensor())?;
            let u = hn.matmul(blk.w_in.as_tensor())?.gelu()?;
            x = (x + u.matmul(blk.w_out.as_tensor())?)?;
        }
        let hn = layer_norm(&x, self.ln_f.0.as_tensor(), self.ln_f.1.as_tensor())?;
        let logits = hn.matmul(self.w_vocab.as_tensor())?;
        // Cross-entropy: −mean log_softmax(logits)[target].
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let z = logits.broadcast_sub(&max)?;
        let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
        let logp = z.broadcast_sub(&lse)?;
        let picked = logp.gather(&self.targets, D::Minus1)?;
        Ok(picked.mean_all()?.neg()?)
    }

    /// Forward and backward: returns the loss and the gradients of every variable.
    pub fn forward_backward(&self) -> Result<(f64, GradStore)> {
        let loss = self.forward()?;
        let grads = loss.backward()?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok((value, grads))
    }

    /// The loss of the last run, if any.
    pub fn last_loss(&self) -> Option<f64> {
        self.loss
    }

    /// The gradients of the last run, if any.
    pub fn last_grads(&self) -> Option<&GradStore> {
        self.grads.as_ref()
    }
}

impl Prepared for TrainingStep {
    fn run(&mut self) -> Result<()> {
        let loss = self.forward()?;
        let grads = loss.backward()?;
        // Keep the results (dropping the previous ones) without reading the loss back,
        // so a GPU run stays asynchronous until `synchronize`.
        self.grads = Some(grads);
        self.loss = None;
        drop(loss);
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.device.synchronize()?)
    }

    /// Checks that the loss at initialisation is within 10% of `ln V` (random weights
    /// give near-uniform predictions) and that every gradient exists and is finite.
    fn verify(&mut self) -> Result<Verification> {
        let (loss, grads) = self.forward_backward()?;
        self.loss = Some(loss);
        let want = (self.cfg.vocab as f64).ln();
        let mut v = Verification::new(0.1);
        v.check(loss, want, want.max(1.0));
        for var in self.vars() {
            match grads.get(var.as_tensor()) {
                Some(g) => {
                    let host = g.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
                    let finite = host.iter().all(|x| x.is_finite());
                    v.check(if finite { 0.0 } else { f64::NAN }, 0.0, 1.0);
                }
                None => v.check(f64::NAN, 0.0, 1.0),
            }
        }
        self.grads = Some(grads);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(dtype: DType, causal: bool) -> StepConfig {
        StepConfig {
            layers: 2,
            hidden: 16,
            heads: 2,
            head_dim: 8,
            ffn: 32,
            vocab: 50,
            seq: 6,
            batch: 2,
            causal,
            dtype,
        }
    }

    #[test]
    fn loss_at_init_is_near_ln_vocab_and_every_gradient_is_finite() {
        for causal in [false, true] {
            let mut step = TrainingStep::new(&tiny(DType::F32, causal), &Device::Cpu).unwrap();
            let v = step.verify().unwrap();
            assert!(v.passed, "{v:?}");
            let loss = step.last_loss().unwrap();
            assert!((loss - 50f64.ln()).abs() < 0.05 * 50f64.ln(), "loss {loss}");
            assert_eq!(v.checked, 1 + step.vars().len());
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let cfg = StepConfig {
            vocab: 20,
            ..tiny(DType::F64, true)
        };
        let step = TrainingStep::new(&cfg, &Device::Cpu).unwrap();
        let (_, grads) = step.forward_backward().unwrap();
        let eps = 1e-5;
        let mut rng = StdRng::seed_from_u64(7);
        for var in step.vars() {
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let orig = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let shape = var.as_tensor().shape().clone();
            for _ in 0..3 {
                let i = rng.random_range(0..orig.len());
                let eval = |delta: f64| {
                    let mut p = orig.clone();
                    p[i] += delta;
                    var.set(&Tensor::from_vec(p, shape.clone(), &Device::Cpu).unwrap())
                        .unwrap();
                    let l = step.forward().unwrap().to_scalar::<f64>().unwrap();
                    var.set(&Tensor::from_vec(orig.clone(), shape.clone(), &Device::Cpu).unwrap())
                        .unwrap();
                    l
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                let err = (fd - g[i]).abs();
                assert!(
                    err <= 1e-6 + 1e-4 * fd.abs().max(g[i].abs()),
                    "var {shape:?}[{i}]: autograd {} vs finite difference {fd}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn a_zero_dimension_is_refused() {
        let cfg = StepConfig {
            heads: 0,
            ..tiny(DType::F32, false)
        };
        assert!(TrainingStep::new(&cfg, &Device::Cpu).is_err());
    }

    #[test]
    fn parameter_count_matches_the_variables() {
        let step = TrainingStep::new(&tiny(DType::F32, false), &Device::Cpu).unwrap();
        let n: usize = step.vars().iter().map(|v| v.as_tensor().elem_count()).sum();
        assert_eq!(n as u64, step.config().parameters());
    }
}
