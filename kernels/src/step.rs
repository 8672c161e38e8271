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

/// Split `[T, 3a]` QKV activations into `[3, B·heads, s, d]` with one copy.
fn split_heads(
    qkv: &Tensor,
    b: usize,
    s: usize,
    heads: usize,
    d: usize,
) -> candle_core::Result<Tensor> {
    qkv.reshape((b, s, 3, heads, d))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()?
        .reshape((3, b * heads, s, d))
}

/// Merge `[B·heads, s, d]` attention outputs back into `[T, a]` with one copy.
fn merge_heads(
    o: &Tensor,
    b: usize,
    s: usize,
    heads: usize,
    d: usize,
) -> candle_core::Result<Tensor> {
    o.reshape((b, heads, s, d))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b * s, heads * d))
}

/// Scaled, optionally masked, attention probabilities from raw `Q·Kᵀ` scores.
fn attention_probs(
    scores: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let scores = (scores * scale)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    softmax(&scores)
}

/// Token embedding lookup plus position embedding: `[T, h]`.
fn embed(
    tok: &Tensor,
    pos: &Tensor,
    ids: &Tensor,
    b: usize,
    s: usize,
) -> candle_core::Result<Tensor> {
    let h = tok.dim(1)?;
    tok.embedding(ids)?
        .reshape((b, s, h))?
        .broadcast_add(pos)?
        .reshape((b * s, h))
}

/// Mean cross-entropy of `logits: [T, V]` against `targets: [T, 1]` (u32).
fn cross_entropy(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let z = logits.broadcast_sub(&max)?;
    let lse = z.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let logp = z.broadcast_sub(&lse)?;
    logp.gather(targets, D::Minus1)?.mean_all()?.neg()
}

fn causal_mask(s: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..s * s)
        .map(|i| {
            if i % s > i / s {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(values, (s, s), device)?.to_dtype(dtype)?)
}

fn random_ids(n: usize, below: usize, seed: u64, device: &Device) -> Result<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let ids: Vec<u32> = (0..n).map(|_| rng.random_range(0..below as u32)).collect();
    Ok(Tensor::from_vec(ids, n, device)?)
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
        let t = cfg.tokens();
        let mask = if cfg.causal {
            Some(causal_mask(cfg.seq, dt, device)?)
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
            ids: random_ids(t, v, 0x57e9, device)?,
            targets: random_ids(t, v, 0x7a9e, device)?.reshape((t, 1))?,
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
        let (b, s, heads, d) = (c.batch, c.seq, c.heads, c.head_dim);
        let scale = 1.0 / (d as f64).sqrt();
        let mut x = embed(
            self.tok_emb.as_tensor(),
            self.pos_emb.as_tensor(),
            &self.ids,
            b,
            s,
        )?;
        for blk in &self.blocks {
            // Attention: one QKV GEMM, split into heads with one copy.
            let hn = layer_norm(&x, blk.ln1.0.as_tensor(), blk.ln1.1.as_tensor())?;
            let qkv = split_heads(&hn.matmul(blk.w_qkv.as_tensor())?, b, s, heads, d)?;
            let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
            let probs = attention_probs(&q.matmul(&k.t()?)?, scale, self.mask.as_ref())?;
            let o = merge_heads(&probs.matmul(&v)?, b, s, heads, d)?;
            x = (x + o.matmul(blk.w_o.as_tensor())?)?;
            // FFN.
            let hn = layer_norm(&x, blk.ln2.0.as_tensor(), blk.ln2.1.as_tensor())?;
            let u = hn.matmul(blk.w_in.as_tensor())?.gelu()?;
            x = (x + u.matmul(blk.w_out.as_tensor())?)?;
        }
        let hn = layer_norm(&x, self.ln_f.0.as_tensor(), self.ln_f.1.as_tensor())?;
        let logits = hn.matmul(self.w_vocab.as_tensor())?;
        Ok(cross_entropy(&logits, &self.targets)?)
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

/// A memory-bound piece of the training step, run forward *and* backward through
/// autograd with exactly the code the step uses, so the prediction can count it.
/// Backward is seeded with ones (candle's `backward` on a non-scalar output), standing
/// in for the upstream gradient the step would deliver.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainOp {
    /// Layernorm of `[tokens, hidden]` with learned γ, β.
    LayerNorm {
        /// Rows.
        tokens: usize,
        /// Normalised width.
        hidden: usize,
    },
    /// Scale, optional causal mask and softmax of `[heads_total, seq, seq]` scores.
    Softmax {
        /// `batch · heads`.
        heads_total: usize,
        /// Sequence length.
        seq: usize,
        /// Causal mask added before the softmax.
        causal: bool,
    },
    /// GELU of `[tokens, ffn]`.
    Gelu {
        /// Rows.
        tokens: usize,
        /// FFN width.
        ffn: usize,
    },
    /// Residual add `x + y` of two `[tokens, hidden]` tensors.
    Residual {
        /// Rows.
        tokens: usize,
        /// Width.
        hidden: usize,
    },
    /// Head split of `[T, 3a]` QKV activations and head merge of `[T, a]` outputs.
    Heads {
        /// Sequences.
        batch: usize,
        /// Sequence length.
        seq: usize,
        /// Heads.
        heads: usize,
        /// Head width.
        head_dim: usize,
    },
    /// Token + position embedding of `batch × seq` ids from a `vocab × hidden` table.
    Embedding {
        /// Sequences.
        batch: usize,
        /// Sequence length.
        seq: usize,
        /// Vocabulary.
        vocab: usize,
        /// Width.
        hidden: usize,
    },
    /// Cross-entropy loss over `[tokens, vocab]` logits.
    CrossEntropy {
        /// Rows.
        tokens: usize,
        /// Vocabulary.
        vocab: usize,
    },
    /// Autograd's gradient accumulation for one tensor of `elements` values: a zero
    /// tensor plus an add (candle's `GradStore::or_insert` then `add`), which the
    /// backward of every GEMM pays on each operand on top of the GEMM itself.
    Accumulate {
        /// Elements of the gradient.
        elements: usize,
    },
}

impl TrainOp {
    fn name(&self) -> &'static str {
        match self {
            TrainOp::LayerNorm { .. } => "layernorm",
            TrainOp::Softmax { .. } => "softmax",
            TrainOp::Gelu { .. } => "gelu",
            TrainOp::Residual { .. } => "residual",
            TrainOp::Heads { .. } => "heads",
            TrainOp::Embedding { .. } => "embedding",
            TrainOp::CrossEntropy { .. } => "xent",
            TrainOp::Accumulate { .. } => "grad_accum",
        }
    }

    /// Elements of the main tensor the op streams (forward output size).
    pub fn elements(&self) -> u64 {
        let n = match *self {
            TrainOp::LayerNorm { tokens, hidden } | TrainOp::Residual { tokens, hidden } => {
                tokens * hidden
            }
            TrainOp::Softmax {
                heads_total, seq, ..
            } => heads_total * seq * seq,
            TrainOp::Gelu { tokens, ffn } => tokens * ffn,
            TrainOp::Heads {
                batch,
                seq,
                heads,
                head_dim,
            } => 4 * batch * seq * heads * head_dim,
            TrainOp::Embedding {
                batch, seq, hidden, ..
            } => batch * seq * hidden,
            TrainOp::CrossEntropy { tokens, vocab } => tokens * vocab,
            TrainOp::Accumulate { elements } => elements,
        };
        n as u64
    }
}

/// A [`TrainOp`] as a kernel (f32), labelled `<op>.train`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOpKernel {
    /// The op and its sizes.
    pub op: TrainOp,
    /// Element type.
    pub dtype: DType,
}

impl crate::Kernel for TrainOpKernel {
    fn kind(&self) -> crate::KernelKind {
        match self.op {
            TrainOp::LayerNorm { .. } => crate::KernelKind::LayerNorm,
            TrainOp::Softmax { .. } | TrainOp::CrossEntropy { .. } => crate::KernelKind::Softmax,
            TrainOp::Gelu { .. } => crate::KernelKind::Gelu,
            _ => crate::KernelKind::Bandwidth,
        }
    }

    fn label(&self) -> String {
        match self.op {
            TrainOp::Softmax { causal: true, .. } => "softmax.causal.train".into(),
            _ => format!("{}.train", self.op.name()),
        }
    }

    fn dims(&self) -> Vec<(&'static str, u64)> {
        let u = |v: usize| v as u64;
        match self.op {
            TrainOp::LayerNorm { tokens, hidden } | TrainOp::Residual { tokens, hidden } => {
                vec![("rows", u(tokens)), ("cols", u(hidden))]
            }
            TrainOp::Softmax {
                heads_total, seq, ..
            } => vec![("b", u(heads_total)), ("s", u(seq))],
            TrainOp::Gelu { tokens, ffn } => vec![("rows", u(tokens)), ("cols", u(ffn))],
            TrainOp::Heads {
                batch,
                seq,
                heads,
                head_dim,
            } => vec![
                ("b", u(batch)),
                ("s", u(seq)),
                ("h", u(heads)),
                ("d", u(head_dim)),
            ],
            TrainOp::Embedding {
                batch,
                seq,
                vocab,
                hidden,
            } => vec![
                ("b", u(batch)),
                ("s", u(seq)),
                ("v", u(vocab)),
                ("h", u(hidden)),
            ],
            TrainOp::CrossEntropy { tokens, vocab } => {
                vec![("rows", u(tokens)), ("cols", u(vocab))]
            }
            TrainOp::Accumulate { elements } => vec![("n", u(elements))],
        }
    }

    fn dtype(&self) -> DType {
        self.dtype
    }

    /// Forward and backward each stream the op's main tensor a few times; the FLOPs
    /// are not meaningful for these memory-bound ops and are reported as one per
    /// element, bytes as one read and one write per element in each direction.
    fn work(&self) -> crate::Work {
        let n = self.op.elements();
        crate::Work {
            flops: n,
            model_flops: 0,
            bytes: 4 * n * dtype_size(self.dtype),
        }
    }

    fn memory_bytes(&self) -> u64 {
        let extra = match self.op {
            TrainOp::Embedding { vocab, hidden, .. } => 3 * (vocab * hidden) as u64,
            _ => 0,
        };
        (24 * self.op.elements() + extra) * dtype_size(self.dtype)
    }

    fn prepare(&self, device: &Device) -> Result<Box<dyn Prepared>> {
        if self.op.elements() == 0 {
            return Err(KernelError::InvalidShape {
                kernel: self.label(),
                reason: "every dimension must be positive".into(),
            });
        }
        let dt = self.dtype;
        let var = |shape: &[usize]| -> Result<Var> {
            Ok(Var::from_tensor(&crate::randn(shape, dt, device)?)?)
        };
        let mut vars = Vec::new();
        let mut fixed = Vec::new();
        match self.op {
            TrainOp::LayerNorm { tokens, hidden } => {
                vars.extend([var(&[tokens, hidden])?, var(&[hidden])?, var(&[hidden])?]);
            }
            TrainOp::Softmax {
                heads_total,
                seq,
                causal,
            } => {
                vars.push(var(&[heads_total, seq, seq])?);
                if causal {
                    fixed.push(causal_mask(seq, dt, device)?);
                }
            }
            TrainOp::Gelu { tokens, ffn } => vars.push(var(&[tokens, ffn])?),
            TrainOp::Residual { tokens, hidden } => {
                vars.extend([var(&[tokens, hidden])?, var(&[tokens, hidden])?]);
            }
            TrainOp::Heads {
                batch,
                seq,
                heads,
                head_dim,
            } => {
                let t = batch * seq;
                vars.extend([
                    var(&[t, 3 * heads * head_dim])?,
                    var(&[batch * heads, seq, head_dim])?,
                ]);
            }
            TrainOp::Embedding {
                batch,
                seq,
                vocab,
                hidden,
            } => {
                vars.extend([var(&[vocab, hidden])?, var(&[seq, hidden])?]);
                fixed.push(random_ids(batch * seq, vocab, 0x57e9, device)?);
            }
            TrainOp::CrossEntropy { tokens, vocab } => {
                vars.push(var(&[tokens, vocab])?);
                fixed.push(random_ids(tokens, vocab, 0x7a9e, device)?.reshape((tokens, 1))?);
            }
            TrainOp::Accumulate { elements } => vars.push(var(&[elements])?),
        }
        Ok(Box::new(PreparedTrainOp {
            op: self.op.clone(),
            device: device.clone(),
            vars,
            fixed,
            grads: None,
        }))
    }
}

struct PreparedTrainOp {
    op: TrainOp,
    device: Device,
    vars: Vec<Var>,
    fixed: Vec<Tensor>,
    grads: Option<GradStore>,
}

impl PreparedTrainOp {
    fn var(&self, i: usize) -> Result<&Tensor> {
        self.vars
            .get(i)
            .map(|v| v.as_tensor())
            .ok_or_else(|| KernelError::InvalidShape {
                kernel: self.op.name().into(),
                reason: "input was not prepared".into(),
            })
    }

    fn forward(&self) -> Result<Tensor> {
        Ok(match self.op {
            TrainOp::LayerNorm { .. } => layer_norm(self.var(0)?, self.var(1)?, self.var(2)?)?,
            TrainOp::Softmax { seq, .. } => {
                attention_probs(self.var(0)?, 1.0 / (seq as f64).sqrt(), self.fixed.first())?
            }
            TrainOp::Gelu { .. } => self.var(0)?.gelu()?,
            TrainOp::Residual { .. } => (self.var(0)? + self.var(1)?)?,
            TrainOp::Heads {
                batch,
                seq,
                heads,
                head_dim,
            } => {
                let split = split_heads(self.var(0)?, batch, seq, heads, head_dim)?;
                let merged = merge_heads(self.var(1)?, batch, seq, heads, head_dim)?;
                // The step takes q, k, v apart with `get` (whose backward pads each
                // gradient back to the full split tensor); one scalar output so that
                // one backward covers all the copies.
                let mut total = merged.sum_all()?;
                for i in 0..3 {
                    total = (total + split.get(i)?.sum_all()?)?;
                }
                total
            }
            TrainOp::Embedding { batch, seq, .. } => {
                let ids = self
                    .fixed
                    .first()
                    .ok_or_else(|| KernelError::InvalidShape {
                        kernel: "embedding".into(),
                        reason: "ids were not prepared".into(),
                    })?;
                embed(self.var(0)?, self.var(1)?, ids, batch, seq)?
            }
            TrainOp::CrossEntropy { .. } => {
                let targets = self
                    .fixed
                    .first()
                    .ok_or_else(|| KernelError::InvalidShape {
                        kernel: "xent".into(),
                        reason: "targets were not prepared".into(),
                    })?;
                cross_entropy(self.var(0)?, targets)?
            }
            TrainOp::Accumulate { .. } => {
                // The accumulation itself, outside autograd: zeros, then add.
                let g = self.var(0)?;
                g.zeros_like()?.add(g)?
            }
        })
    }
}

impl Prepared for PreparedTrainOp {
    fn run(&mut self) -> Result<()> {
        let y = self.forward()?;
        if !matches!(self.op, TrainOp::Accumulate { .. }) {
            self.grads = Some(y.backward()?);
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(self.device.synchronize()?)
    }

    /// Checks that every input gets a finite gradient of the right shape.
    fn verify(&mut self) -> Result<Verification> {
        self.run()?;
        let mut v = Verification::new(0.0);
        if matches!(self.op, TrainOp::Accumulate { .. }) {
            let y = self
                .forward()?
                .flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            let x = self
                .var(0)?
                .flatten_all()?
                .to_dtype(DType::F64)?
                .to_vec1::<f64>()?;
            for i in crate::verify::sample_indices(x.len(), 64, 0xacc) {
                v.check(y[i], x[i], 1.0);
            }
            return Ok(v);
        }
        for var in &self.vars {
            let g = self.grads.as_ref().and_then(|g| g.get(var.as_tensor()));
            let ok = match g {
                Some(g) if g.shape() == var.as_tensor().shape() => g
                    .flatten_all()?
                    .to_dtype(DType::F64)?
                    .to_vec1::<f64>()?
                    .iter()
                    .all(|x| x.is_finite()),
                _ => false,
            };
            v.check(if ok { 0.0 } else { f64::NAN }, 0.0, 1.0);
        }
        Ok(v)
    }
}

/// Bytes of operands a [`HandoverKernel`] rotates through at least: more than a large
/// L3 cache (32 MiB), so that each GEMM finds its operands out of cache, as in the step.
pub const COLD_BYTES: u64 = 40 << 20;

/// Most bytes of the shared operand pool ([`cold_pool_bytes`]).
pub const MAX_POOL_BYTES: u64 = 1 << 30;

/// Most GEMM copies a [`HandoverKernel`] rotates through where its GEMM cannot take
/// operands from the shared pool (bounds its memory).
pub const MAX_COPIES: u64 = 16;

/// Bytes of the operand pool the hand-over GEMMs share on `device`: on a CPU, twice
/// its last-level cache (a VM may report its host's whole L3: 480 MiB on this
/// project's 2-core VMs), within [`COLD_BYTES`] and [`MAX_POOL_BYTES`]; elsewhere
/// [`COLD_BYTES`].
pub fn cold_pool_bytes(device: &Device) -> u64 {
    match (device.is_cpu(), crate::cpu_cache::last_level_cache_bytes()) {
        (true, Some(llc)) => llc.saturating_mul(2).clamp(COLD_BYTES, MAX_POOL_BYTES),
        _ => COLD_BYTES,
    }
}

/// The shared pool of random operands of `dtype` on `device` (one per process, made
/// on first use): every hand-over GEMM takes views into it, so its memory is paid once,
/// not per kernel.
fn cold_pool(device: &Device, dtype: DType) -> Result<Tensor> {
    use std::sync::{Mutex, OnceLock};
    type Pools = Mutex<Vec<(String, DType, Tensor)>>;
    static POOLS: OnceLock<Pools> = OnceLock::new();
    let key = format!("{:?}", device.location());
    let pools = POOLS.get_or_init(|| Mutex::new(Vec::new()));
    let mut pools = pools
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, t)) = pools.iter().find(|(k, d, _)| *k == key && *d == dtype) {
        return Ok(t.clone());
    }
    let elems = (cold_pool_bytes(device) / dtype_size(dtype).max(1)) as usize;
    let t = crate::randn(&[elems], dtype, device)?;
    pools.push((key, dtype, t.clone()));
    Ok(t)
}

/// A GEMM as the step runs it: right after a gradient accumulation (`zeros + add`)
/// over its first operand's size, and with its operands out of cache.
///
/// Two things make a GEMM inside the step slower than the same GEMM repeated on its
/// own, and this kernel contains both:
/// - on the CPU, candle runs GEMMs on rayon's pool and element-wise ops on its own
///   spinning barrier pool; after an element-wise op the barrier pool's workers spin
///   for a while, competing with the GEMM's threads for the cores, and a parked pool
///   has to be woken;
/// - the step touches hundreds of megabytes between two uses of a weight, so each GEMM
///   streams its weight from memory, while a GEMM repeated on its own finds it in
///   cache. The GEMM takes its operands in turn from a pool of random values twice
///   the last-level cache ([`cold_pool_bytes`]), shared by every hand-over kernel, so
///   each run finds them evicted (a GEMM that cannot rotates through prepared copies
///   of itself: at least [`COLD_BYTES`], at most [`MAX_COPIES`]).
///
/// `time(handover) − time(GEMM) − time(accumulation)` is the GEMM's overhead in the
/// step, measured for each GEMM shape.
pub struct HandoverKernel {
    /// The GEMM (a suite kernel).
    pub gemm: Box<dyn crate::Kernel>,
    /// Elements of the accumulation before it (the GEMM's first operand).
    pub elements: usize,
}

impl crate::Kernel for HandoverKernel {
    fn kind(&self) -> crate::KernelKind {
        self.gemm.kind()
    }

    fn label(&self) -> String {
        format!("handover.{}", self.gemm.label())
    }

    fn dims(&self) -> Vec<(&'static str, u64)> {
        self.gemm.dims()
    }

    fn dtype(&self) -> DType {
        self.gemm.dtype()
    }

    fn work(&self) -> crate::Work {
        let mut w = self.gemm.work();
        w.bytes += 3 * self.elements as u64 * dtype_size(self.dtype());
        w
    }

    fn memory_bytes(&self) -> u64 {
        self.gemm.memory_bytes() + 3 * self.elements as u64 * dtype_size(self.dtype())
    }

    fn prepare(&self, device: &Device) -> Result<Box<dyn Prepared>> {
        let accumulate = TrainOpKernel {
            op: TrainOp::Accumulate {
                elements: self.elements,
            },
            dtype: self.dtype(),
        };
        let pool = cold_pool(device, self.dtype())?;
        let gemms = match self.gemm.prepare_pooled(device, &pool) {
            Some(pooled) => vec![pooled?],
            None => {
                let copies = COLD_BYTES
                    .div_ceil(self.gemm.memory_bytes().max(1))
                    .clamp(1, MAX_COPIES) as usize;
                (0..copies)
                    .map(|_| self.gemm.prepare(device))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(Box::new(PreparedHandover {
            accumulate: crate::Kernel::prepare(&accumulate, device)?,
            gemms,
            next: 0,
        }))
    }
}

struct PreparedHandover {
    accumulate: Box<dyn Prepared>,
    gemms: Vec<Box<dyn Prepared>>,
    next: usize,
}

impl Prepared for PreparedHandover {
    fn run(&mut self) -> Result<()> {
        self.accumulate.run()?;
        let n = self.gemms.len();
        let gemm =
            self.gemms
                .get_mut(self.next % n.max(1))
                .ok_or_else(|| KernelError::InvalidShape {
                    kernel: "handover".into(),
                    reason: "no GEMM was prepared".into(),
                })?;
        self.next = (self.next + 1) % n.max(1);
        gemm.run()
    }

    fn synchronize(&self) -> Result<()> {
        match self.gemms.first() {
            Some(g) => g.synchronize(),
            None => Ok(()),
        }
    }

    fn idle(&mut self) {
        for g in &mut self.gemms {
            g.idle();
        }
    }

    /// The first GEMM copy's own check (the copies run the same code on other
    /// random inputs), and the accumulation's.
    fn verify(&mut self) -> Result<Verification> {
        let mut v = self.accumulate.verify()?;
        for g in self.gemms.iter_mut().take(1) {
            let gv = g.verify()?;
            v.passed &= gv.passed;
            v.checked += gv.checked;
            v.max_rel_err = v.max_rel_err.max(gv.max_rel_err);
            v.tolerance = v.tolerance.max(gv.tolerance);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_twice_the_cache_within_its_bounds_and_shared() {
        let bytes = cold_pool_bytes(&Device::Cpu);
        assert!((COLD_BYTES..=MAX_POOL_BYTES).contains(&bytes), "{bytes}");
        if let Some(llc) = crate::cpu_cache::last_level_cache_bytes() {
            assert_eq!(bytes, (2 * llc).clamp(COLD_BYTES, MAX_POOL_BYTES));
        }
        let (a, b) = (
            cold_pool(&Device::Cpu, DType::F32).unwrap(),
            cold_pool(&Device::Cpu, DType::F32).unwrap(),
        );
        assert_eq!(a.id(), b.id());
        assert_eq!(a.elem_count() as u64 * 4, bytes);
    }

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
    fn every_train_op_runs_forward_and_backward_with_finite_gradients() {
        use crate::Kernel;
        for op in [
            TrainOp::LayerNorm {
                tokens: 6,
                hidden: 8,
            },
            TrainOp::Softmax {
                heads_total: 3,
                seq: 5,
                causal: true,
            },
            TrainOp::Softmax {
                heads_total: 3,
                seq: 5,
                causal: false,
            },
            TrainOp::Gelu { tokens: 6, ffn: 16 },
            TrainOp::Residual {
                tokens: 6,
                hidden: 8,
            },
            TrainOp::Heads {
                batch: 2,
                seq: 3,
                heads: 2,
                head_dim: 4,
            },
            TrainOp::Embedding {
                batch: 2,
                seq: 3,
                vocab: 11,
                hidden: 8,
            },
            TrainOp::CrossEntropy {
                tokens: 6,
                vocab: 11,
            },
            TrainOp::Accumulate { elements: 100 },
        ] {
            let k = TrainOpKernel {
                op: op.clone(),
                dtype: DType::F32,
            };
            let v = k.prepare(&Device::Cpu).unwrap().verify().unwrap();
            assert!(v.passed && v.checked > 0, "{op:?}: {v:?}");
            assert!(k.id().contains(".train/"), "{}", k.id());
        }
    }

    #[test]
    fn handover_runs_an_accumulation_then_rotating_gemm_copies_that_verify() {
        use crate::Kernel;
        let k = HandoverKernel {
            gemm: Box::new(crate::gemm::Matmul::square(8, DType::F32)),
            elements: 64,
        };
        assert!(k.label().starts_with("handover."), "{}", k.label());
        assert_eq!(k.dims(), k.gemm.dims());
        let mut p = k.prepare(&Device::Cpu).unwrap();
        let v = p.verify().unwrap();
        assert!(v.passed && v.checked > 0, "{v:?}");
        for _ in 0..2 * MAX_COPIES {
            p.run().unwrap();
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
