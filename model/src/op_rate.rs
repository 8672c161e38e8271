//! Where the time of a memory-bound op of the step comes from: measured (a profile's
//! forward + backward time of that op at some sizes, interpolated across sizes) or,
//! for an op the profile did not measure, its bytes at the achievable memory
//! bandwidth (the step model's physics, [`MemOp::train_bytes`]).
//!
//! The ops are those of a transformer block and its ends as a framework runs them. The
//! last three ([`MemOp::Heads`], [`MemOp::Embedding`], [`MemOp::GradAccum`]) move no
//! bytes in the physics: a tuned GPU framework fuses the head split into its attention
//! kernel, the embedding lookup is a gather of `s·h` values, and Megatron's GEMMs
//! accumulate weight gradients in place. An autograd framework that runs them as
//! separate ops (candle on a CPU) pays them, and a profile that measured them says so.

use serde::Serialize;

/// A memory-bound op of the training step (one instance, forward and backward).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemOp {
    /// Layernorm of `tokens × hidden` values.
    LayerNorm,
    /// Residual add (and dropout) of `tokens × hidden` values.
    Residual,
    /// The FFN activation of `tokens × ffn` values.
    Activation,
    /// Scale, mask and softmax (and dropout) of `heads × s × s` attention scores.
    Softmax,
    /// Head split of the QKV activations and head merge of the attention output; its
    /// size is `4 · tokens · attention width` (the three inputs and the output).
    Heads,
    /// Token and position embedding of `tokens × hidden` values.
    Embedding,
    /// Cross-entropy loss over `tokens × vocab` logits.
    Loss,
    /// Autograd's accumulation of one GEMM operand's gradient of that many elements
    /// (a zero-filled tensor plus an add).
    GradAccum,
    /// A mixture-of-experts layer's token dispatch (each token copied to its `top_k`
    /// experts' rows, grouped by expert) and combine (the copies weighted and summed
    /// back), of `tokens × top_k × hidden` routed values.
    Permute,
}

/// Bytes per logit of the vocabulary-parallel cross entropy that Megatron-LM (its
/// 2021-22 papers' code) and GPT-NeoX run on fp32 logits, forward and backward, each
/// pass reading its input and writing its output once (`megatron/mpu/cross_entropy.py`
/// in both; the caller casts the logits with `output.float()`): the cast (2 read, 4
/// written), the max (4), the shift (8), the exp in place (8), the sum (4) and the
/// division in place (8) forward; the gradient's multiply in place (8) and its cast back
/// (6), so 52. Fused kernels move [`MemOp::Loss`]'s 20.
pub const UNFUSED_LOSS_BYTES: f64 = 52.0;

impl MemOp {
    /// Every op, in the order the step model reports them.
    pub const ALL: [MemOp; 9] = [
        MemOp::LayerNorm,
        MemOp::Residual,
        MemOp::Activation,
        MemOp::Softmax,
        MemOp::Heads,
        MemOp::Embedding,
        MemOp::Loss,
        MemOp::GradAccum,
        MemOp::Permute,
    ];

    /// Short name (`layernorm`, `residual`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MemOp::LayerNorm => "layernorm",
            MemOp::Residual => "residual",
            MemOp::Activation => "activation",
            MemOp::Softmax => "softmax",
            MemOp::Heads => "heads",
            MemOp::Embedding => "embedding",
            MemOp::Loss => "loss",
            MemOp::GradAccum => "grad_accum",
            MemOp::Permute => "permute",
        }
    }

    /// Bytes per element the physics moves forward and backward, in bf16 (flopcal
    /// assumption: every pass reads its inputs and writes its output once; backward
    /// moves twice the forward's bytes). `gated` is a gated FFN (two inputs to its
    /// activation). Zero for the ops a tuned framework fuses away (see the module).
    ///
    /// - layernorm: read `x`, write `y` forward (4 bytes), so 12;
    /// - residual with dropout: read two inputs, write the output and a 1-byte mask
    ///   forward (7 bytes), so 21;
    /// - activation: read and write forward (4 bytes; 6 with a gate), so 12 (18);
    /// - softmax with dropout: softmax read and write, dropout read, write and mask
    ///   forward (9 bytes), so 27;
    /// - loss: 20 bytes per logit in all (fp32 logits, log-softmax and its gradient),
    ///   as a fused kernel moves them; a stack that runs the unfused vocabulary-parallel
    ///   cross entropy moves [`UNFUSED_LOSS_BYTES`];
    /// - MoE permute: the dispatch reads and writes each routed value, the combine
    ///   reads it (6 bytes forward; the combine's `tokens × hidden` output, a `1/top_k`
    ///   share, is left out), so 18.
    pub fn train_bytes(self, gated: bool) -> f64 {
        match self {
            MemOp::LayerNorm => 12.0,
            MemOp::Residual => 21.0,
            MemOp::Activation => {
                if gated {
                    18.0
                } else {
                    12.0
                }
            }
            MemOp::Softmax => 27.0,
            MemOp::Loss => 20.0,
            MemOp::Permute => 18.0,
            MemOp::Heads | MemOp::Embedding | MemOp::GradAccum => 0.0,
        }
    }
}

/// One measurement: forward + backward seconds of one instance of `op` of `elements`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OpPoint {
    /// The op.
    pub op: MemOp,
    /// Its size ([`MemOp`] says of what).
    pub elements: u64,
    /// Seconds, forward and backward.
    pub seconds: f64,
}

/// Measured memory-bound ops; other sizes are interpolated.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct OpTable {
    /// The measurements.
    pub points: Vec<OpPoint>,
    /// Where they come from.
    pub source: String,
}

impl OpTable {
    /// Whether the table measured `op` at any size.
    pub fn has(&self, op: MemOp) -> bool {
        self.points.iter().any(|p| p.op == op && usable(p))
    }

    /// Forward + backward seconds of `op` at `elements`: the measurement at that size
    /// (the mean of several), else the two nearest sizes' seconds per element,
    /// interpolated in `ln(elements)` and times `elements`; beyond the measured range
    /// the nearest size's seconds per element. `None` when `op` was not measured.
    pub fn seconds(&self, op: MemOp, elements: u64) -> Option<f64> {
        if elements == 0 {
            return Some(0.0);
        }
        let q = (elements as f64).ln();
        let mut near: Vec<(f64, f64, f64)> = self
            .points
            .iter()
            .filter(|p| p.op == op && usable(p))
            .map(|p| {
                let x = (p.elements as f64).ln();
                (x - q, x, p.seconds / p.elements as f64)
            })
            .collect();
        if near.is_empty() {
            return None;
        }
        let exact: Vec<f64> = near
            .iter()
            .filter(|p| p.0.abs() < 1e-12)
            .map(|p| p.2)
            .collect();
        if !exact.is_empty() {
            return Some(exact.iter().sum::<f64>() / exact.len() as f64 * elements as f64);
        }
        near.sort_by(|a, b| a.0.abs().total_cmp(&b.0.abs()));
        let below = near.iter().find(|p| p.0 < 0.0);
        let above = near.iter().find(|p| p.0 > 0.0);
        let per = match (below, above) {
            (Some(lo), Some(hi)) => {
                let w = (q - lo.1) / (hi.1 - lo.1);
                (lo.2.ln() * (1.0 - w) + hi.2.ln() * w).exp()
            }
            (Some(p), None) | (None, Some(p)) => p.2,
            (None, None) => return None,
        };
        Some(per * elements as f64)
    }
}

fn usable(p: &OpPoint) -> bool {
    p.elements > 0 && p.seconds.is_finite() && p.seconds > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> OpTable {
        OpTable {
            points: vec![
                OpPoint {
                    op: MemOp::LayerNorm,
                    elements: 1000,
                    seconds: 1e-6,
                },
                OpPoint {
                    op: MemOp::LayerNorm,
                    elements: 100_000,
                    seconds: 4e-4,
                },
                OpPoint {
                    op: MemOp::GradAccum,
                    elements: 10,
                    seconds: 1e-6,
                },
                OpPoint {
                    op: MemOp::GradAccum,
                    elements: 10,
                    seconds: 3e-6,
                },
            ],
            source: "test".into(),
        }
    }

    #[test]
    fn a_measured_size_returns_its_time_and_repeats_average() {
        let t = table();
        assert_eq!(t.seconds(MemOp::LayerNorm, 1000), Some(1e-6));
        let a = t.seconds(MemOp::GradAccum, 10).unwrap();
        assert!((a - 2e-6).abs() < 1e-18, "{a}");
        assert_eq!(t.seconds(MemOp::Softmax, 10), None);
        assert!(t.has(MemOp::LayerNorm) && !t.has(MemOp::Loss));
    }

    #[test]
    fn between_sizes_the_time_per_element_is_interpolated_and_beyond_it_carries_over() {
        let t = table();
        // 1 ns/element at 1e3, 4 ns at 1e5: 2 ns at 1e4 (midway in ln size).
        let mid = t.seconds(MemOp::LayerNorm, 10_000).unwrap();
        assert!((mid - 2e-5).abs() < 1e-12, "{mid}");
        let big = t.seconds(MemOp::LayerNorm, 1_000_000).unwrap();
        assert!((big - 4e-3).abs() < 1e-12, "{big}");
        let small = t.seconds(MemOp::LayerNorm, 10).unwrap();
        assert!((small - 1e-8).abs() < 1e-20, "{small}");
    }
}
