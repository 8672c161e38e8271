//! FLOP accounting for a dense transformer, per operation, and the `6·N·D` rule of thumb.
//!
//! Conventions: a multiply-add is 2 FLOPs. With `h` the
//! model width, `a = heads · head_dim` the inner attention width (equal to `h` except for
//! models such as T5-11B), `f` the FFN width, `s` the sequence length and `V` the
//! vocabulary, the **forward** FLOPs per token and per layer are
//!
//! | op | FLOPs |
//! |---|---|
//! | QKV projection | `2·3·h·a = 6·h·a` |
//! | attention output | `2·a·h` |
//! | FFN (two matmuls) | `2·h·f + 2·f·h = 4·h·f` |
//! | scores `Q·Kᵀ` | `2·s·a`, **halved** with a causal mask |
//! | `P·V` | `2·s·a`, **halved** with a causal mask |
//!
//! plus the output (vocabulary) projection `2·h·V` per token, once per model, applied to
//! a fraction of the positions (`vocab_fraction`, 1.0 by default: every position, which
//! is what Megatron's closed form assumes; BERT's MLM head only scores the ~15% masked
//! positions, pass 0.15 to model that). Causal halving credits only the lower triangle,
//! which is what an efficient kernel computes; a dense-then-masked kernel does 2× that
//! attention work, which is counted as lost efficiency, not as model FLOPs.
//!
//! Training is forward + backward = **3× forward** (the backward pass computes both the
//! gradient with respect to the input and to the weights, 2× forward). Activation
//! recomputation adds one more forward of the recomputed part: all transformer blocks
//! ([`Recompute::Full`]) or only the attention core, scores and `P·V`
//! ([`Recompute::Selective`]); the vocabulary projection is never recomputed.
//!
//! Elementwise work (softmax, layer norms, GELU, residuals, optimizer) is left out, as in
//! Megatron and Kaplan et al.: it is `O(s·h)` per token against `O(h²)` for the matmuls.

use serde::{Deserialize, Serialize};

pub use crate::config::Family;
use crate::config::{ModelConfig, Norm, Position};
use crate::error::ModelError;

/// Activation recomputation (gradient checkpointing) policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recompute {
    /// No recomputation: training = 3 × forward.
    #[default]
    None,
    /// Recompute every transformer block in the backward pass: + 1 forward of the blocks.
    Full,
    /// Recompute only the attention core (scores, softmax, `P·V`), as in Korthikanti
    /// et al. 2022: + 1 forward of scores and `P·V`.
    Selective,
}

impl Recompute {
    /// Short name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Recompute::None => "none",
            Recompute::Full => "full",
            Recompute::Selective => "selective",
        }
    }
}

/// One phase of a training schedule: `steps` optimizer steps of `batch` sequences of
/// `seq` tokens. BERT uses two phases (90% of steps at 128 tokens, 10% at 512).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Optimizer steps in this phase.
    pub steps: u64,
    /// Sequences per step (global batch).
    pub batch: u64,
    /// Tokens per sequence (also the attention context length).
    pub seq: u64,
}

impl Phase {
    /// Tokens processed in this phase, `steps · batch · seq`.
    pub fn tokens(&self) -> f64 {
        self.steps as f64 * self.batch as f64 * self.seq as f64
    }
}

/// Forward FLOPs per token, by operation, summed over all layers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OpFlops {
    /// QKV projections, `L · 6·h·a`.
    pub qkv: f64,
    /// Attention output projection, `L · 2·a·h`.
    pub attn_out: f64,
    /// FFN, `L · 4·h·f`.
    pub ffn: f64,
    /// Attention scores, `L · 2·s·a` (× ½ if causal).
    pub scores: f64,
    /// `P·V`, `L · 2·s·a` (× ½ if causal).
    pub pv: f64,
    /// Output projection onto the vocabulary, `2·h·V · vocab_fraction`.
    pub vocab: f64,
}

impl OpFlops {
    /// Sum of all operations.
    pub fn total(&self) -> f64 {
        self.qkv + self.attn_out + self.ffn + self.scores + self.pv + self.vocab
    }

    /// The transformer blocks only (everything but the vocabulary projection).
    pub fn blocks(&self) -> f64 {
        self.total() - self.vocab
    }

    fn scaled(&self, k: f64) -> OpFlops {
        OpFlops {
            qkv: self.qkv * k,
            attn_out: self.attn_out * k,
            ffn: self.ffn * k,
            scores: self.scores * k,
            pv: self.pv * k,
            vocab: self.vocab * k,
        }
    }

    fn add(&self, o: &OpFlops) -> OpFlops {
        OpFlops {
            qkv: self.qkv + o.qkv,
            attn_out: self.attn_out + o.attn_out,
            ffn: self.ffn + o.ffn,
            scores: self.scores + o.scores,
            pv: self.pv + o.pv,
            vocab: self.vocab + o.vocab,
        }
    }
}

/// Options of the FLOP count that are not part of the architecture.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlopOptions {
    /// Activation recomputation policy.
    pub recompute: Recompute,
    /// Fraction of positions that go through the vocabulary projection (0, 1].
    pub vocab_fraction: f64,
}

impl Default for FlopOptions {
    fn default() -> Self {
        FlopOptions {
            recompute: Recompute::None,
            vocab_fraction: 1.0,
        }
    }
}

/// How tensor parallelism splits a weight matmul `[k × n]` (Megatron-LM, Shoeybi et
/// al. 2019): column-parallel splits `n`, row-parallel splits `k`, replicated
/// matmuls (the MoE router) run whole on every device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TpSplit {
    /// `n` is split across the tensor-parallel group (QKV, FFN in, vocabulary).
    Column,
    /// `k` is split across the group, followed by a reduction (attention out, FFN out).
    Row,
    /// Not split.
    Replicated,
}

/// One weight matmul of a block: per token it multiplies a `k`-vector by a `k × n`
/// weight, `per_token` times, so its forward FLOPs per token are `2·k·n·per_token`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightMatmul {
    /// `qkv`, `attn_out`, `ffn_in`, `ffn_out`, `router`, `shared_ffn_in`,
    /// `shared_ffn_out`, `cross_q`, `cross_kv`, `cross_out` or `vocab`.
    pub name: &'static str,
    /// Inner (reduction) dimension.
    pub k: u64,
    /// Output dimension (a gated FFN's gate and up projections are one fused `n = 2f`).
    pub n: u64,
    /// Times per token: 1 for a dense matmul; `top_k` for routed experts; the number
    /// of shared experts; and for the cross-attention of an encoder–decoder model the
    /// fraction of blocks that are decoder blocks, so that `layers ×` the block's sum
    /// is the model's.
    pub per_token: f64,
    /// How tensor parallelism splits it.
    pub split: TpSplit,
    /// A routed-expert matmul (split by expert parallelism, dispatched by all-to-all).
    pub expert: bool,
}

impl WeightMatmul {
    /// Forward FLOPs per token, `2·k·n·per_token`.
    pub fn flops_per_token(&self) -> f64 {
        2.0 * self.k as f64 * self.n as f64 * self.per_token
    }

    /// Weights of this matmul; `instances` of them (routed experts) when `all` is set.
    fn weights(&self, cfg: &ModelConfig, all: bool) -> f64 {
        let copies = if self.expert && all {
            cfg.experts() as f64
        } else {
            self.per_token
        };
        self.k as f64 * self.n as f64 * copies
    }
}

/// The weight matmuls of one transformer block, per token, in execution order.
///
/// QKV is one fused projection of width `heads·d + 2·kv_heads·d` (grouped-query
/// attention narrows K and V); a gated FFN's gate and up projections are one fused
/// `h × 2f` matmul. A mixture-of-experts block has a replicated router `h × E` and
/// routed expert FFNs used `top_k` times per token, plus any shared experts.
/// Encoder–decoder models add the decoder's cross-attention (Q on the decoder stream,
/// K and V on the encoder's output, output projection), weighted by the fraction of
/// blocks that are decoder blocks.
pub fn block_matmuls(cfg: &ModelConfig) -> Vec<WeightMatmul> {
    let (h, a, kv, f) = (cfg.hidden, cfg.attn_dim(), cfg.kv_dim(), cfg.ffn);
    let gate = cfg.ffn_matrices() - 1;
    let mm = |name, k, n, per_token, split, expert| WeightMatmul {
        name,
        k,
        n,
        per_token,
        split,
        expert,
    };
    let mut v = vec![
        mm("qkv", h, a + 2 * kv, 1.0, TpSplit::Column, false),
        mm("attn_out", a, h, 1.0, TpSplit::Row, false),
    ];
    if cfg.encoder_decoder() {
        let frac = cfg.decoder_layers() as f64 / cfg.layers as f64;
        v.push(mm("cross_q", h, a, frac, TpSplit::Column, false));
        v.push(mm("cross_kv", h, 2 * kv, frac, TpSplit::Column, false));
        v.push(mm("cross_out", a, h, frac, TpSplit::Row, false));
    }
    if cfg.is_moe() {
        let k = cfg.top_k() as f64;
        v.push(mm(
            "router",
            h,
            cfg.experts(),
            1.0,
            TpSplit::Replicated,
            false,
        ));
        v.push(mm("ffn_in", h, gate * f, k, TpSplit::Column, true));
        v.push(mm("ffn_out", f, h, k, TpSplit::Row, true));
        let shared = cfg.shared_experts() as f64;
        if shared > 0.0 {
            v.push(mm(
                "shared_ffn_in",
                h,
                gate * f,
                shared,
                TpSplit::Column,
                false,
            ));
            v.push(mm("shared_ffn_out", f, h, shared, TpSplit::Row, false));
        }
    } else {
        v.push(mm("ffn_in", h, gate * f, 1.0, TpSplit::Column, false));
        v.push(mm("ffn_out", f, h, 1.0, TpSplit::Row, false));
    }
    v
}

/// The output projection onto the vocabulary, `h × V`, column-parallel.
pub fn vocab_matmul(cfg: &ModelConfig) -> WeightMatmul {
    WeightMatmul {
        name: "vocab",
        k: cfg.hidden,
        n: cfg.vocab,
        per_token: 1.0,
        split: TpSplit::Column,
        expert: false,
    }
}

/// Forward FLOPs of one block's attention core per token at context length `seq`:
/// scores `Q·Kᵀ` and `P·V`, `2·s·a` each, halved with a causal mask; plus, for an
/// encoder–decoder model, the cross-attention core `4·s·a` weighted by the fraction
/// of decoder blocks (never causal). Returns `(scores, pv)`.
pub fn attention_core_per_token(cfg: &ModelConfig, seq: u64) -> (f64, f64) {
    let s = seq as f64;
    let a = cfg.attn_dim() as f64;
    let causal = if cfg.causal { 0.5 } else { 1.0 };
    let cross = if cfg.encoder_decoder() {
        cfg.decoder_layers() as f64 / cfg.layers as f64
    } else {
        0.0
    };
    let one = 2.0 * s * a * (causal + cross);
    (one, one)
}

/// Forward FLOPs per token per layer at context length `seq` (no vocabulary term):
/// the sums of [`block_matmuls`] by operation plus [`attention_core_per_token`].
pub fn forward_per_token_layer(cfg: &ModelConfig, seq: u64) -> OpFlops {
    let mut ops = OpFlops::default();
    for m in block_matmuls(cfg) {
        let slot = match m.name {
            "qkv" | "cross_q" | "cross_kv" => &mut ops.qkv,
            "attn_out" | "cross_out" => &mut ops.attn_out,
            _ => &mut ops.ffn,
        };
        *slot += m.flops_per_token();
    }
    (ops.scores, ops.pv) = attention_core_per_token(cfg, seq);
    ops
}

/// Forward FLOPs per token for the whole model at context length `seq`.
pub fn forward_per_token(cfg: &ModelConfig, seq: u64, vocab_fraction: f64) -> OpFlops {
    let mut ops = forward_per_token_layer(cfg, seq).scaled(cfg.layers as f64);
    ops.vocab = vocab_matmul(cfg).flops_per_token() * vocab_fraction;
    ops
}

/// Training FLOPs per token (forward + backward, plus recomputation) by operation.
pub fn train_per_token(cfg: &ModelConfig, seq: u64, opts: &FlopOptions) -> OpFlops {
    let fwd = forward_per_token(cfg, seq, opts.vocab_fraction);
    let base = fwd.scaled(3.0);
    let extra = match opts.recompute {
        Recompute::None => OpFlops::default(),
        Recompute::Full => OpFlops { vocab: 0.0, ..fwd },
        Recompute::Selective => OpFlops {
            scores: fwd.scores,
            pv: fwd.pv,
            ..OpFlops::default()
        },
    };
    base.add(&extra)
}

/// Parameter counts of a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParamCount {
    /// Weights of the transformer blocks' matmuls (every expert counted): the `N` of
    /// `6·N·D` for a dense model (Kaplan et al. 2020, no biases, norms or embeddings).
    pub non_embedding: f64,
    /// As `non_embedding`, counting only the experts a token uses (`top_k` routed plus
    /// the shared ones): the `N` of `6·N·D` for a mixture-of-experts model.
    pub non_embedding_active: f64,
    /// Token (and, when learned, position/segment) embeddings, and an untied output
    /// projection.
    pub embedding: f64,
    /// Everything: matmul weights, biases, norms, embeddings and any heads.
    pub total: f64,
    /// As `total`, counting only the experts one token uses.
    pub active: f64,
}

/// Parameter counts of `cfg` under the conventions of its own family.
pub fn params(cfg: &ModelConfig) -> ParamCount {
    param_count(cfg, cfg.family)
}

/// Parameter counts of `cfg`: matmul weights from [`block_matmuls`] (every expert),
/// biases and norms as the config says, embeddings (tied or untied, position table if
/// learned), and the extras of `family` (BERT's segments, embedding norm and pooler).
pub fn param_count(cfg: &ModelConfig, family: Family) -> ParamCount {
    let (l, h, a, kv, f, v, s) = (
        cfg.layers as f64,
        cfg.hidden as f64,
        cfg.attn_dim() as f64,
        cfg.kv_dim() as f64,
        cfg.ffn as f64,
        cfg.vocab as f64,
        cfg.seq as f64,
    );
    let blocks = block_matmuls(cfg);
    let total_mm: f64 = blocks.iter().map(|m| m.weights(cfg, true)).sum();
    let active_mm: f64 = blocks.iter().map(|m| m.weights(cfg, false)).sum();
    let norm = match cfg.norm {
        Norm::LayerNorm => 2.0 * h,
        Norm::RmsNorm => h,
    };
    let dec_frac = if cfg.encoder_decoder() {
        cfg.decoder_layers() as f64 / l
    } else {
        0.0
    };
    // Per block: attention biases (q, k, v, out; cross-attention in decoder blocks),
    // FFN biases per expert instance, and two norms (three in decoder blocks).
    let attn_bias = (a + 2.0 * kv + h) * (1.0 + dec_frac);
    let ffn_bias = (cfg.ffn_matrices() - 1) as f64 * f + h;
    let instances = |all: bool| {
        let routed = if all { cfg.experts() } else { cfg.top_k() };
        (routed + cfg.shared_experts()) as f64
    };
    let bias = |all: bool| {
        if cfg.biases {
            attn_bias + ffn_bias * instances(all)
        } else {
            0.0
        }
    };
    let norms = norm * (2.0 + dec_frac);
    let stacks = if cfg.encoder_decoder() { 2.0 } else { 1.0 };
    let positions = match cfg.position {
        Position::Learned => s * h,
        Position::Relative => 32.0 * cfg.heads as f64 * stacks,
        Position::Rotary | Position::None => 0.0,
    };
    let output = if cfg.tied { 0.0 } else { v * h };
    let (embedding, extra) = match family {
        // Segment embeddings and embedding LayerNorm; pooler `h² + h`.
        Family::Bert => (v * h + positions + 2.0 * h + output, 2.0 * h + h * h + h),
        _ => (v * h + positions + output, norm * stacks),
    };
    let all = |all: bool| {
        let mm = if all { total_mm } else { active_mm };
        embedding + extra + l * (mm + bias(all) + norms)
    };
    ParamCount {
        non_embedding: l * total_mm,
        non_embedding_active: l * active_mm,
        embedding,
        total: all(true),
        active: all(false),
    }
}

/// A complete FLOP report for one training run: both ways, and their ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlopReport {
    /// Tokens processed, `D`.
    pub tokens: f64,
    /// Exact per-op training FLOPs, summed over all phases.
    pub train_flops: f64,
    /// Training FLOPs by operation, summed over all phases.
    pub by_op: OpFlops,
    /// `N` of `6·N·D`: non-embedding parameters (those a token uses, for MoE).
    pub params_non_embedding: f64,
    /// `6·N·D`.
    pub flops_6nd: f64,
    /// `train_flops / flops_6nd`: above 1 where attention and the vocabulary projection
    /// matter (short, wide models; long sequences), below 1 with causal masking.
    pub ratio_exact_to_6nd: f64,
    /// Whether the scores and `P·V` terms were halved for a causal mask.
    pub causal_halved: bool,
    /// The options used.
    pub options: FlopOptions,
}

/// Training FLOPs of `cfg` over a schedule of phases.
pub fn train_flops(
    cfg: &ModelConfig,
    phases: &[Phase],
    opts: &FlopOptions,
) -> Result<FlopReport, ModelError> {
    cfg.validate()?;
    check_fraction("vocab fraction", opts.vocab_fraction)?;
    if phases.is_empty() {
        return Err(ModelError::InvalidInput(
            "a training schedule needs at least one phase (steps × batch × seq)".into(),
        ));
    }
    let mut by_op = OpFlops::default();
    let mut tokens = 0.0;
    for p in phases {
        if p.steps == 0 || p.batch == 0 || p.seq == 0 {
            return Err(ModelError::InvalidInput(format!(
                "steps, batch and seq must be positive (got {} × {} × {})",
                p.steps, p.batch, p.seq
            )));
        }
        let t = p.tokens();
        tokens += t;
        by_op = by_op.add(&train_per_token(cfg, p.seq, opts).scaled(t));
    }
    let n = param_count(cfg, cfg.family).non_embedding_active;
    let train = by_op.total();
    let nd6 = 6.0 * n * tokens;
    Ok(FlopReport {
        tokens,
        train_flops: train,
        by_op,
        params_non_embedding: n,
        flops_6nd: nd6,
        ratio_exact_to_6nd: train / nd6,
        causal_halved: cfg.causal,
        options: *opts,
    })
}

/// `6·N·D` only, for `--params N --tokens D` (no architecture known).
pub fn flops_6nd(params: f64, tokens: f64) -> Result<FlopReport, ModelError> {
    check_positive("params", params)?;
    check_positive("tokens", tokens)?;
    let f = 6.0 * params * tokens;
    Ok(FlopReport {
        tokens,
        train_flops: f,
        by_op: OpFlops::default(),
        params_non_embedding: params,
        flops_6nd: f,
        ratio_exact_to_6nd: 1.0,
        causal_halved: false,
        options: FlopOptions::default(),
    })
}

/// Megatron-LM's closed form for one training step without recomputation
/// (Narayanan et al. 2021, eq. 3 with the recomputation forward removed):
/// `72·B·s·L·h²·(1 + s/(6h) + V/(12·L·h))`. Valid for `f = 4h`, `a = h`, no causal halving.
pub fn megatron_step_flops(batch: f64, seq: f64, layers: f64, hidden: f64, vocab: f64) -> f64 {
    72.0 * batch
        * seq
        * layers
        * hidden
        * hidden
        * (1.0 + seq / (6.0 * hidden) + vocab / (12.0 * layers * hidden))
}

/// Error unless `x` is finite and > 0.
pub fn check_positive(what: &str, x: f64) -> Result<(), ModelError> {
    if x.is_finite() && x > 0.0 {
        Ok(())
    } else {
        Err(ModelError::InvalidInput(format!(
            "{what} must be a positive number (got {x})"
        )))
    }
}

/// Error unless `x` is in (0, 1].
pub fn check_fraction(what: &str, x: f64) -> Result<(), ModelError> {
    if x.is_finite() && x > 0.0 && x <= 1.0 {
        Ok(())
    } else {
        Err(ModelError::InvalidInput(format!(
            "{what} must be in (0, 1] (got {x})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn megatron_cfg(l: u64, h: u64, v: u64, s: u64) -> ModelConfig {
        ModelConfig {
            name: "m".into(),
            layers: l,
            hidden: h,
            heads: 1,
            head_dim: h,
            ffn: 4 * h,
            vocab: v,
            seq: s,
            ..ModelConfig::default()
        }
    }

    fn rel(a: f64, b: f64) -> f64 {
        ((a - b) / b).abs()
    }

    #[test]
    fn matches_megatron_closed_form() {
        for (b, s, l, h, v) in [
            (8u64, 512u64, 24u64, 1024u64, 30522u64),
            (512, 1024, 48, 1600, 50257),
            (1, 2048, 96, 12288, 51200),
        ] {
            let cfg = megatron_cfg(l, h, v, s);
            let phase = Phase {
                steps: 1,
                batch: b,
                seq: s,
            };
            let r = train_flops(&cfg, &[phase], &FlopOptions::default()).unwrap();
            let m = megatron_step_flops(b as f64, s as f64, l as f64, h as f64, v as f64);
            assert!(rel(r.train_flops, m) < 1e-12, "{} vs {m}", r.train_flops);
        }
    }

    #[test]
    fn full_recompute_matches_megatron_96_form() {
        // Narayanan et al. 2021 eq. 3: 96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h)).
        let (b, s, l, h, v) = (4.0, 2048.0, 40.0, 5120.0, 51200.0);
        let cfg = megatron_cfg(40, 5120, 51200, 2048);
        let opts = FlopOptions {
            recompute: Recompute::Full,
            vocab_fraction: 1.0,
        };
        let r = train_flops(
            &cfg,
            &[Phase {
                steps: 1,
                batch: 4,
                seq: 2048,
            }],
            &opts,
        )
        .unwrap();
        let m = 96.0 * b * s * l * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * l * h));
        assert!(rel(r.train_flops, m) < 1e-12);
    }

    proptest! {
        #[test]
        fn flops_are_finite_positive_and_monotone(
            l in 1u64..200, h in 1u64..20_000, heads in 1u64..256, hd in 1u64..256,
            f in 1u64..100_000, v in 1u64..300_000, s in 1u64..100_000,
            steps in 1u64..10_000_000, batch in 1u64..10_000, causal: bool,
            frac in 0.001f64..=1.0,
        ) {
            let cfg = ModelConfig { name: "p".into(), layers: l, hidden: h, heads, head_dim: hd,
                ffn: f, vocab: v, seq: s, causal, ..ModelConfig::default() };
            let opts = FlopOptions { recompute: Recompute::None, vocab_fraction: frac };
            let p = Phase { steps, batch, seq: s };
            let r = train_flops(&cfg, &[p], &opts).unwrap();
            prop_assert!(r.train_flops.is_finite() && r.train_flops > 0.0);
            prop_assert!(r.flops_6nd.is_finite() && r.flops_6nd > 0.0);
            let full = train_flops(&cfg, &[p], &FlopOptions { recompute: Recompute::Full, ..opts }).unwrap();
            prop_assert!(full.train_flops > r.train_flops);
            let longer = train_flops(&cfg, &[Phase { steps, batch, seq: s + 1 }], &opts).unwrap();
            prop_assert!(longer.train_flops > r.train_flops);
        }
    }
}
