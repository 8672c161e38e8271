//! Memory per device of a layout: weights, gradients and optimizer state by precision
//! and sharding, and activations by Korthikanti et al. 2022 ("Reducing Activation
//! Recomputation in Large Transformer Models", §4).
//!
//! **States** (mixed-precision Adam, Rajbhandari et al. 2020, "ZeRO", §3.1): 2 bytes
//! of bf16/fp16 weights, 2 bytes of gradients and 12 bytes of fp32 master weights,
//! momentum and variance per parameter. ZeRO-1 shards the 12 across the data-parallel
//! group, ZeRO-3 all 16. A device holds its stage's `L/p` layers split `t` ways (the
//! routed experts further `ep` ways) and, on the first (and, with a pipeline, last)
//! stage, the embedding.
//!
//! **Activations** of one layer for one micro-batch of `b` sequences of `s` tokens
//! (bytes, 16-bit activations, 1-byte dropout masks), generalising Korthikanti's
//! `s·b·h·(34 + 5·a·s/h)` to grouped-query attention, gated FFNs and experts:
//!
//! - replicated across the tensor group without sequence parallelism:
//!   `10·s·b·h` (two norm inputs, the QKV and FFN inputs, two dropout masks);
//! - split by `t`: `s·b·(4·a + 4·kv)` (Q, K, V, the output projection's input) plus
//!   the FFN's intermediates `4·f` (MLP: the activation's input and output) or `6·f`
//!   (gated: the `2·f`-wide up-and-gate output, and the `f`-wide product the down
//!   projection reads; Megatron-LM's fused `BiasSwiGLUFunction`,
//!   `megatron/core/fusions/fused_bias_swiglu.py`, saves only its input and recomputes
//!   the SiLU in the backward), times `top_k` for experts;
//! - the attention scores `5·heads·s²·b` (scores, softmax, dropout mask and output),
//!   split by `t`, absent with selective recomputation or a flash kernel.
//!
//! Sequence parallelism splits the replicated part by `t` too; full recomputation keeps
//! only each layer's input, `2·s·b·h` (`/t` with sequence parallelism), plus one
//! layer's activations while it is recomputed. Under 1F1B the first stage holds
//! `min(m, p)` micro-batches of its `L/p` layers, and the interleaved schedule
//! `1 + (p−1)/(p·v)` times that (Korthikanti §4.2.3). The last stage also holds the
//! logits of one micro-batch, `6·s·b·V/t` (bf16 logits and fp32 for the loss).

use serde::Serialize;

use crate::config::{FfnKind, ModelConfig};
use crate::flops::{self, Recompute, TpSplit};
use crate::layout::{Attention, Layout, Zero};

/// Bytes per parameter of the weights (bf16).
pub const WEIGHT_BYTES: f64 = 2.0;
/// Bytes per parameter of the gradients (bf16).
pub const GRAD_BYTES: f64 = 2.0;
/// Bytes per parameter of Adam's fp32 master weights, momentum and variance.
pub const OPTIMIZER_BYTES: f64 = 12.0;

/// Memory of one device, bytes (the busiest stage).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Memory {
    /// Weights.
    pub weights: f64,
    /// Gradients.
    pub gradients: f64,
    /// Optimizer state.
    pub optimizer: f64,
    /// Activations.
    pub activations: f64,
    /// Sum of the above.
    pub total: f64,
}

/// A model's parameters as the layouts split them, counted once per model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSplit {
    /// Per layer: matmul weights split by tensor parallelism.
    pub split: f64,
    /// Per layer: replicated matmul weights (the MoE router).
    pub replicated: f64,
    /// Per layer: routed-expert weights, every expert (split by `t` and `ep`).
    pub expert: f64,
    /// Per layer: biases and norms.
    pub small: f64,
    /// Embeddings (and an untied output projection).
    pub embedding: f64,
    /// One `V × h` table.
    pub vocab_table: f64,
    /// Layers.
    pub layers: f64,
}

impl ParamSplit {
    /// Count `cfg`'s parameters by how they split.
    pub fn of(cfg: &ModelConfig) -> ParamSplit {
        let (mut split, mut replicated, mut expert) = (0.0, 0.0, 0.0);
        for m in flops::block_matmuls(cfg) {
            let w = m.k as f64 * m.n as f64;
            if m.expert {
                expert += w * cfg.experts() as f64;
            } else if m.split == TpSplit::Replicated {
                replicated += w * m.per_token;
            } else {
                split += w * m.per_token;
            }
        }
        let counts = flops::params(cfg);
        let layers = cfg.layers as f64;
        ParamSplit {
            split,
            replicated,
            expert,
            small: ((counts.total - counts.embedding - counts.non_embedding) / layers).max(0.0),
            embedding: counts.embedding,
            vocab_table: cfg.vocab as f64 * cfg.hidden as f64,
            layers,
        }
    }

    /// Parameters one device holds: its stage's `⌈L/p⌉` layers split by the layout,
    /// plus the embedding (on the first stage; with a pipeline the last stage holds
    /// the output table, as large).
    pub fn per_device(&self, layout: &Layout) -> f64 {
        let t = f64::from(layout.tp);
        let ep = f64::from(layout.ep);
        let per_layer = self.split / t + self.replicated + self.expert / t / ep + self.small;
        let embedding = if layout.pp == 1 {
            self.embedding / t
        } else {
            self.vocab_table / t
        };
        crate::layout::stage_layers(self.layers as u64, layout.pp) * per_layer + embedding
    }
}

/// Activation bytes of one layer for one micro-batch on one device (see the module
/// docs), at context `seq`.
pub fn layer_activations(cfg: &ModelConfig, layout: &Layout, seq: u64) -> f64 {
    // A context-parallel rank holds `s/c` positions (its queries' scores span all `s`).
    let full = seq as f64;
    let (s, b) = (layout.local_seq(seq) as f64, f64::from(layout.microbatch));
    let (h, a, kv, f) = (
        cfg.hidden as f64,
        cfg.attn_dim() as f64,
        cfg.kv_dim() as f64,
        cfg.ffn as f64,
    );
    let t = f64::from(layout.tp);
    let sp = layout.sequence_parallel && layout.tp > 1;
    if layout.recompute == Recompute::Full {
        return 2.0 * s * b * h / if sp { t } else { 1.0 };
    }
    let replicated = 10.0 * s * b * h;
    let ffn_mult = match cfg.ffn_kind {
        FfnKind::Mlp => 4.0,
        FfnKind::SwiGlu | FfnKind::GeGlu => 6.0,
    };
    let experts = (cfg.top_k() + cfg.shared_experts()) as f64;
    let split = s * b * (4.0 * a + 4.0 * kv + ffn_mult * f * experts);
    let scores = if layout.recompute == Recompute::Selective || layout.attention == Attention::Flash
    {
        0.0
    } else {
        5.0 * cfg.heads as f64 * s * full * b
    };
    let replicated = if sp { replicated / t } else { replicated };
    replicated + (split + scores) / t
}

/// Activation bytes the first stage holds for its layers (the Korthikanti Figure 1
/// quantity): `L/p` layers × `min(m, p)` micro-batches in flight × the interleaving
/// factor.
pub fn stage_layer_activations(
    cfg: &ModelConfig,
    layout: &Layout,
    seq: u64,
    micro_batches: u64,
) -> f64 {
    let p = f64::from(layout.pp);
    let v = f64::from(layout.virtual_stages);
    let in_flight = (micro_batches.max(1) as f64).min(p);
    let interleave = if layout.virtual_stages > 1 {
        1.0 + (p - 1.0) / (p * v)
    } else {
        1.0
    };
    let mut bytes = in_flight * interleave * stage_activations(cfg, layout, seq);
    if layout.recompute == Recompute::Full {
        bytes += layer_activations(cfg, &layout.keeping_all(), seq);
    }
    bytes
}

/// Activation bytes of one micro-batch over a device's `⌈L/p⌉` layers: the layers
/// recomputed in full keep only their input ([`Layout::full_recompute_share`] of
/// them), the others everything.
fn stage_activations(cfg: &ModelConfig, layout: &Layout, seq: u64) -> f64 {
    let per_stage = crate::layout::stage_layers(cfg.layers, layout.pp);
    if layout.recompute != Recompute::Full || layout.recompute_layers.is_none() {
        return per_stage * layer_activations(cfg, layout, seq);
    }
    let recomputed = per_stage * layout.full_recompute_share(cfg.layers);
    recomputed * layer_activations(cfg, &layout.recomputing_all(), seq)
        + (per_stage - recomputed) * layer_activations(cfg, &layout.keeping_all(), seq)
}

/// Logits of one micro-batch on the last stage.
fn logits(cfg: &ModelConfig, layout: &Layout, seq: u64) -> f64 {
    6.0 * layout.local_seq(seq) as f64 * f64::from(layout.microbatch) * cfg.vocab as f64
        / f64::from(layout.tp)
}

/// Memory per device of `layout` (the busier of the first and last stage), for a
/// device holding `params` parameters ([`ParamSplit::per_device`]).
pub fn per_device(
    cfg: &ModelConfig,
    layout: &Layout,
    seq: u64,
    micro_batches: u64,
    params: f64,
) -> Memory {
    let d = layout.replicas() as f64;
    let (wd, gd, od) = match layout.zero {
        Zero::None => (1.0, 1.0, 1.0),
        Zero::Optimizer => (1.0, 1.0, d),
        Zero::Full => (d, d, d),
    };
    let weights = params * WEIGHT_BYTES / wd;
    let gradients = params * GRAD_BYTES / gd;
    let optimizer = params * OPTIMIZER_BYTES / od;
    let first = stage_layer_activations(cfg, layout, seq, micro_batches);
    let activations = if layout.pp == 1 {
        first + logits(cfg, layout, seq)
    } else {
        let last = stage_activations(cfg, layout, seq);
        first.max(last + logits(cfg, layout, seq))
    };
    Memory {
        weights,
        gradients,
        optimizer,
        activations,
        total: weights + gradients + optimizer + activations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::GIB;

    /// Korthikanti et al. 2022, Table 3 settings: A100-80GB, s = 2048, V = 51,200,
    /// TP 8; (heads, h, layers, PP, micro-batch, batch, interleaving).
    fn korthikanti() -> Vec<(&'static str, ModelConfig, u32, u32, u64, u32)> {
        let m = |heads: u64, h: u64, l: u64| ModelConfig {
            name: "k".into(),
            layers: l,
            hidden: h,
            heads,
            head_dim: h / heads,
            ffn: 4 * h,
            vocab: 51200,
            seq: 2048,
            causal: true,
            ..ModelConfig::default()
        };
        vec![
            ("22B", m(64, 6144, 48), 1, 4, 4, 1),
            ("175B", m(96, 12288, 96), 8, 1, 64, 3),
            ("530B", m(128, 20480, 105), 35, 1, 280, 3),
            ("1T", m(160, 25600, 128), 64, 1, 512, 1),
        ]
    }

    #[test]
    fn activation_memory_matches_korthikanti_figure_1_within_5_percent() {
        // Figure 1, GiB: no recompute (TP only) / selective + sequence parallel.
        let want = [
            (59.25, 9.56),
            (66.84, 12.35),
            (114.02, 23.08),
            (131.25, 26.56),
        ];
        for ((name, cfg, pp, b, batch, v), (base, sel)) in korthikanti().into_iter().zip(want) {
            let mut l = Layout {
                tp: 8,
                cp: 1,
                pp,
                dp: 1,
                ep: 1,
                microbatch: b,
                virtual_stages: v,
                sequence_parallel: false,
                zero: Zero::None,
                recompute: Recompute::None,
                recompute_layers: None,
                attention: Attention::Materialized,
            };
            let m = l.micro_batches(batch);
            let got = stage_layer_activations(&cfg, &l, 2048, m) / GIB;
            assert!(
                (got / base - 1.0).abs() < 0.05,
                "{name} baseline {got} vs {base}"
            );
            l.sequence_parallel = true;
            l.recompute = Recompute::Selective;
            let got = stage_layer_activations(&cfg, &l, 2048, m) / GIB;
            assert!(
                (got / sel - 1.0).abs() < 0.05,
                "{name} selective+SP {got} vs {sel}"
            );
        }
    }

    #[test]
    fn zero_shards_states_and_full_recompute_shrinks_activations() {
        let (_, cfg, _, _, _, _) = korthikanti().remove(0);
        let mut l = Layout {
            tp: 8,
            cp: 1,
            dp: 4,
            ..Layout::single(1)
        };
        let split = ParamSplit::of(&cfg);
        let p = split.per_device(&l);
        let plain = per_device(&cfg, &l, 2048, 4, p);
        l.zero = Zero::Optimizer;
        let z1 = per_device(&cfg, &l, 2048, 4, p);
        assert!((z1.optimizer * 4.0 - plain.optimizer).abs() < 1.0);
        assert_eq!(z1.weights, plain.weights);
        l.zero = Zero::Full;
        let z3 = per_device(&cfg, &l, 2048, 4, p);
        assert!((z3.weights * 4.0 - plain.weights).abs() < 1.0);
        l.recompute = Recompute::Full;
        let full = per_device(&cfg, &l, 2048, 4, p);
        assert!(full.activations < z3.activations / 4.0);
        // 16 bytes per parameter in total without sharding (ZeRO §3.1).
        let states = plain.weights + plain.gradients + plain.optimizer;
        assert!((states / p - 16.0).abs() < 1e-9);
    }
}
