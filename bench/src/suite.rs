//! Derive the kernel suite of a training step from a model config.
//!
//! For a model with hidden size `h`, attention width `a`, FFN width `f`, vocabulary `V`,
//! at sequence length `s` and batch `B` (so `T = B·s` tokens), one training step runs:
//! - five linear layers — QKV `h→3a`, attention output `a→h`, FFN in `h→f`, FFN out
//!   `f→h`, vocab projection `h→V` — each in the three layouts forward, grad-input and
//!   grad-weight;
//! - the batched attention products over `B·heads` heads: scores `Q·Kᵀ` and `P·V` with
//!   their four backward products;
//! - attention as a whole (scores, mask, softmax, P·V), layernorm, softmax, GELU;
//!
//! plus, for peer comparison and the roofline, square GEMMs and streaming bandwidth
//! kernels that do not depend on the model.

use candle_core::DType;
use flopcal_kernels::attention::AttentionKernel;
use flopcal_kernels::elementwise::{Elementwise, Op};
use flopcal_kernels::gemm::{GemmPass, Matmul};
use flopcal_kernels::Kernel;
use flopcal_model::ModelConfig;

use crate::{BenchError, Result};

/// What to build a suite for.
#[derive(Debug, Clone)]
pub struct SuiteSpec {
    /// The architecture.
    pub model: ModelConfig,
    /// Sequence length.
    pub seq: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Dtypes of the model's own kernels.
    pub dtypes: Vec<DType>,
    /// Square GEMM sizes `(n, dtype)` for peer comparison.
    pub squares: Vec<(usize, DType)>,
    /// Elements per array of the streaming bandwidth kernels (0 to skip them).
    pub stream_elements: usize,
}

/// Which part of the suite a kernel belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// One of the model's own training-step kernels.
    Model,
    /// A fixed square GEMM.
    Square,
    /// A streaming bandwidth kernel.
    Stream,
}

impl Group {
    /// Lower-case name used in result files.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Model => "model",
            Group::Square => "square",
            Group::Stream => "stream",
        }
    }
}

/// One entry of a suite.
pub struct Entry {
    /// Which part of the suite.
    pub group: Group,
    /// The kernel.
    pub kernel: Box<dyn Kernel>,
}

fn usize_dim(name: &str, v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| BenchError::Usage(format!("{name} = {v} is too large")))
}

/// Build the suite. Fails on zero sizes or a head split that does not divide.
pub fn derive(spec: &SuiteSpec) -> Result<Vec<Entry>> {
    let m = &spec.model;
    m.validate()?;
    if spec.seq == 0 || spec.batch == 0 {
        return Err(BenchError::Usage(
            "--seq and --batch must be at least 1".into(),
        ));
    }
    let tokens = spec
        .seq
        .checked_mul(spec.batch)
        .ok_or_else(|| BenchError::Usage("--seq × --batch overflows".into()))?;
    let h = usize_dim("hidden", m.hidden)?;
    let a = usize_dim("attention width", m.attn_dim())?;
    let f = usize_dim("ffn", m.ffn)?;
    let v = usize_dim("vocab", m.vocab)?;
    let heads = usize_dim("heads", m.heads)?;
    let d = usize_dim("head_dim", m.head_dim)?;
    let (s, bh) = (spec.seq, spec.batch * heads);

    let mut out: Vec<Entry> = Vec::new();
    let mut push = |group: Group, k: Box<dyn Kernel>| out.push(Entry { group, kernel: k });
    for &dt in &spec.dtypes {
        for (name, d_in, d_out) in [
            ("qkv", h, 3 * a),
            ("attn_out", a, h),
            ("ffn_in", h, f),
            ("ffn_out", f, h),
            ("vocab", h, v),
        ] {
            for layout in GemmPass::ALL {
                push(
                    Group::Model,
                    Box::new(Matmul::linear(name, layout, tokens, d_in, d_out, dt)),
                );
            }
        }
        let bmm = |label: &str, m_: usize, n_: usize, k_: usize, ta: bool, tb: bool| Matmul {
            label: label.to_string(),
            batch: bh,
            m: m_,
            n: n_,
            k: k_,
            trans_a: ta,
            trans_b: tb,
            dtype: dt,
        };
        for k in [
            bmm("scores.fwd", s, s, d, false, true),
            bmm("scores.dgrad_q", s, d, s, false, false),
            bmm("scores.dgrad_k", s, d, s, true, false),
            bmm("pv.fwd", s, d, s, false, false),
            bmm("pv.dgrad_p", s, s, d, false, true),
            bmm("pv.dgrad_v", s, d, s, true, false),
        ] {
            push(Group::Model, Box::new(k));
        }
        push(
            Group::Model,
            Box::new(AttentionKernel {
                label: "sdpa".into(),
                batch: spec.batch,
                heads,
                seq: s,
                head_dim: d,
                causal: m.causal,
                dtype: dt,
            }),
        );
        for (label, op, rows, cols) in [
            ("layernorm", Op::LayerNorm, tokens, h),
            ("softmax", Op::Softmax, bh * s, s),
            ("gelu", Op::Gelu, tokens, f),
        ] {
            push(
                Group::Model,
                Box::new(Elementwise {
                    label: label.into(),
                    op,
                    rows,
                    cols,
                    dtype: dt,
                }),
            );
        }
    }
    for &(n, dt) in &spec.squares {
        push(Group::Square, Box::new(Matmul::square(n, dt)));
    }
    if spec.stream_elements > 0 {
        for op in [Op::Scale, Op::Triad] {
            push(
                Group::Stream,
                Box::new(Elementwise::bandwidth(op, spec.stream_elements, DType::F32)),
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, seq: usize, batch: usize) -> SuiteSpec {
        SuiteSpec {
            model: flopcal_model::builtin(name).unwrap(),
            seq,
            batch,
            dtypes: vec![DType::F32],
            squares: vec![(512, DType::F32)],
            stream_elements: 1 << 20,
        }
    }

    #[test]
    fn bert_large_suite_has_the_models_exact_gemm_shapes() {
        let suite = derive(&spec("bert-large", 512, 8)).unwrap();
        let ids: Vec<String> = suite.iter().map(|e| e.kernel.id()).collect();
        // T = 4096 tokens, h = 1024, f = 4096, V = 30522, 16 heads of 64.
        for want in [
            "matmul/qkv.fwd/m4096.n3072.k1024/f32",
            "matmul/qkv.dgrad/m4096.n1024.k3072/f32",
            "matmul/qkv.wgrad/m1024.n3072.k4096/f32",
            "matmul/attn_out.fwd/m4096.n1024.k1024/f32",
            "matmul/ffn_in.fwd/m4096.n4096.k1024/f32",
            "matmul/ffn_out.wgrad/m4096.n1024.k4096/f32",
            "matmul/vocab.fwd/m4096.n30522.k1024/f32",
            "matmul/scores.fwd/b128.m512.n512.k64/f32",
            "matmul/pv.fwd/b128.m512.n64.k512/f32",
            "attention/sdpa/b8.h16.s512.d64/f32",
            "matmul/square/m512.n512.k512/f32",
            "bandwidth/triad/n1048576/f32",
        ] {
            assert!(ids.iter().any(|i| i == want), "missing {want} in {ids:#?}");
        }
        assert_eq!(ids.len(), 15 + 6 + 1 + 3 + 1 + 2);
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "ids must be unique");
    }

    #[test]
    fn linear_layer_flops_per_step_match_the_model_accounting() {
        // Forward linear FLOPs per token per layer: 6h² + 2h² + 4hf (see flopcal_model::flops).
        let s = spec("bert-base", 128, 2);
        let suite = derive(&s).unwrap();
        let fwd: u64 = suite
            .iter()
            .filter(|e| {
                e.kernel.label().ends_with(".fwd") && !e.kernel.label().starts_with("vocab")
            })
            .filter(|e| e.kernel.dims().len() == 3)
            .map(|e| e.kernel.work().flops)
            .sum();
        let (h, f, t) = (768u64, 3072u64, 256u64);
        assert_eq!(fwd, t * (6 * h * h + 2 * h * h + 4 * h * f));
    }

    #[test]
    fn gpt2_attention_is_causal() {
        let suite = derive(&spec("gpt2", 64, 1)).unwrap();
        assert!(suite.iter().any(|e| e.kernel.label() == "sdpa.causal"));
    }

    #[test]
    fn zero_batch_is_refused() {
        assert!(derive(&spec("bert-base", 128, 0)).is_err());
    }
}
