//! Predict the time of one real training step from measured kernels.
//!
//! The prediction is `Σ count × median` over the kernels one step runs, every count
//! exact for the step in `flopcal_kernels::step` (pre-LN transformer, no biases):
//!
//! | kernel (profile id label)                          | count per step        |
//! |----------------------------------------------------|-----------------------|
//! | `qkv`, `attn_out`, `ffn_in`, `ffn_out` × `fwd`/`dgrad`/`wgrad` | `L` each  |
//! | `vocab.fwd`/`.dgrad`/`.wgrad`                      | 1 each                |
//! | `scores.fwd`/`.dgrad_q`/`.dgrad_k`, `pv.fwd`/`.dgrad_p`/`.dgrad_v` | `L` each |
//! | `layernorm.train` (fwd + bwd, `[T, h]`)            | `2L + 1`              |
//! | `softmax.train` (scale, mask, softmax, fwd + bwd)  | `L`                   |
//! | `gelu.train` (fwd + bwd, `[T, f]`)                 | `L`                   |
//! | `residual.train` (`x + y`, fwd + bwd)              | `2L`                  |
//! | `heads.train` (head split + merge copies, fwd + bwd) | `L`                 |
//! | `embedding.train`, `xent.train`                    | 1 each                |
//! | `grad_accum.train` (zeros + add, per GEMM operand gradient) | one per operand |
//!
//! The GEMMs and batched products are the standard profile suite's. The memory-bound
//! ops are measured forward *and* backward through autograd (`*.train` kernels) because
//! candle's backward of an op composed from primitives costs several times its forward
//! and no fixed ratio holds across ops. `grad_accum` is the framework overhead the GEMM
//! kernels do not contain: candle's backward zero-fills a gradient for each GEMM
//! operand and adds the product into it, so each of the `dX`, `dW` of every linear
//! layer and the `dQ`, `dK` (twice: once through `Kᵀ`), `dV`, `dP` of attention costs
//! one accumulation of its size.
//!
//! The interval of the prediction combines the kernels' bootstrap 95% intervals:
//! each kernel's half-widths scale with its count (the same measurement is reused),
//! and different kernels are independent, so half-widths add in quadrature.

use std::collections::{BTreeMap, HashMap};

use candle_core::DType;
use flopcal_kernels::step::{StepConfig, TrainOp, TrainOpKernel};
use flopcal_model::ModelConfig;
use serde::Serialize;

use crate::results::{Benchmark, ResultFile, Status};
use crate::suite::{self, Entry, Group, SuiteSpec};
use crate::{Error, Result};

/// A validate-only model preset: architecture and default batch / sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// Name used with `--model`.
    pub name: &'static str,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Attention heads.
    pub heads: usize,
    /// FFN width.
    pub ffn: usize,
    /// Vocabulary.
    pub vocab: usize,
    /// Default sequence length.
    pub seq: usize,
    /// Default batch.
    pub batch: usize,
}

/// The presets: small enough that a step takes well under a second on 2 CPU cores.
pub const PRESETS: [Preset; 3] = [
    Preset {
        name: "tiny",
        layers: 2,
        hidden: 128,
        heads: 2,
        ffn: 512,
        vocab: 2048,
        seq: 64,
        batch: 4,
    },
    Preset {
        name: "small",
        layers: 4,
        hidden: 256,
        heads: 4,
        ffn: 1024,
        vocab: 8192,
        seq: 128,
        batch: 4,
    },
    Preset {
        name: "base-short",
        layers: 12,
        hidden: 768,
        heads: 12,
        ffn: 3072,
        vocab: 30522,
        seq: 64,
        batch: 2,
    },
];

/// Look up a preset by name, or say which exist.
pub fn preset(name: &str) -> Result<Preset> {
    PRESETS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.trim()))
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            Error::Usage(format!(
                "--model {name:?}: unknown; validate knows {}",
                names.join(", ")
            ))
        })
}

/// The model config the profile suite is derived from, for a step config.
pub fn model_config(step: &StepConfig, name: &str) -> ModelConfig {
    ModelConfig {
        name: name.into(),
        layers: step.layers as u64,
        hidden: step.hidden as u64,
        heads: step.heads as u64,
        head_dim: step.head_dim as u64,
        ffn: step.ffn as u64,
        vocab: step.vocab as u64,
        seq: step.seq as u64,
        causal: step.causal,
    }
}

/// One kernel the step runs, with how many times per step.
pub struct Need {
    /// The kernel (to measure it, or to name its id).
    pub entry: Entry,
    /// Times per step.
    pub count: f64,
}

/// The standard-suite kernels and the `*.train` kernels one step runs, with counts.
pub fn needed_kernels(step: &StepConfig) -> Result<Vec<Need>> {
    let (l, t, h, a, f, v) = (
        step.layers as f64,
        step.tokens(),
        step.hidden,
        step.attn_dim(),
        step.ffn,
        step.vocab,
    );
    let spec = SuiteSpec {
        model: model_config(step, "validate"),
        seq: step.seq,
        batch: step.batch,
        dtypes: vec![DType::F32],
        squares: Vec::new(),
        stream_elements: 0,
    };
    let mut needs = Vec::new();
    for entry in suite::derive(&spec)? {
        let label = entry.kernel.label();
        let count = if label.starts_with("vocab.") {
            1.0
        } else if ["qkv.", "attn_out.", "ffn_in.", "ffn_out.", "scores.", "pv."]
            .iter()
            .any(|p| label.starts_with(p))
        {
            l
        } else {
            continue;
        };
        needs.push(Need { entry, count });
    }
    let bh = step.batch * step.heads;
    let mut train = vec![
        (
            TrainOp::LayerNorm {
                tokens: t,
                hidden: h,
            },
            2.0 * l + 1.0,
        ),
        (
            TrainOp::Softmax {
                heads_total: bh,
                seq: step.seq,
                causal: step.causal,
            },
            l,
        ),
        (TrainOp::Gelu { tokens: t, ffn: f }, l),
        (
            TrainOp::Residual {
                tokens: t,
                hidden: h,
            },
            2.0 * l,
        ),
        (
            TrainOp::Heads {
                batch: step.batch,
                seq: step.seq,
                heads: step.heads,
                head_dim: step.head_dim,
            },
            l,
        ),
        (
            TrainOp::Embedding {
                batch: step.batch,
                seq: step.seq,
                vocab: v,
                hidden: h,
            },
            1.0,
        ),
        (
            TrainOp::CrossEntropy {
                tokens: t,
                vocab: v,
            },
            1.0,
        ),
    ];
    // Gradient accumulations of GEMM operands, grouped by size.
    let mut accum: BTreeMap<usize, f64> = BTreeMap::new();
    let per_layer = [
        t * h,                    // dX of qkv (layernorm output)
        h * 3 * a,                // dW qkv
        t * a,                    // dX of attn_out (merged heads)
        a * h,                    // dW attn_out
        t * h,                    // dX of ffn_in
        h * f,                    // dW ffn_in
        t * f,                    // dX of ffn_out (GELU output)
        f * h,                    // dW ffn_out
        t * a,                    // dQ
        t * a,                    // dKᵀ
        t * a,                    // dK
        t * a,                    // dV
        bh * step.seq * step.seq, // dP
    ];
    for n in per_layer {
        *accum.entry(n).or_default() += l;
    }
    for n in [t * h, h * v] {
        *accum.entry(n).or_default() += 1.0;
    }
    train.extend(
        accum
            .into_iter()
            .map(|(elements, c)| (TrainOp::Accumulate { elements }, c)),
    );
    for (op, count) in train {
        needs.push(Need {
            entry: Entry {
                group: Group::Model,
                kernel: Box::new(TrainOpKernel {
                    op,
                    dtype: DType::F32,
                }),
            },
            count,
        });
    }
    Ok(needs)
}

/// One term of the prediction.
#[derive(Debug, Clone, Serialize)]
pub struct Term {
    /// Kernel id in the profile.
    pub id: String,
    /// Times per step.
    pub count: f64,
    /// Median seconds per run of the kernel.
    pub median_s: f64,
    /// `count × median_s`.
    pub total_s: f64,
}

/// The predicted step time with its interval and the terms it sums.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// Predicted seconds per step.
    pub step_s: f64,
    /// Lower end of its 95% interval.
    pub ci_low_s: f64,
    /// Upper end of its 95% interval.
    pub ci_high_s: f64,
    /// The terms, largest first.
    pub terms: Vec<Term>,
}

/// Kernels that a profile lacks (absent, or not measured successfully).
pub fn missing(needs: &[Need], file: &ResultFile) -> Vec<String> {
    let have: HashMap<&str, &Benchmark> =
        file.benchmarks.iter().map(|b| (b.id.as_str(), b)).collect();
    needs
        .iter()
        .map(|n| n.entry.kernel.id())
        .filter(|id| {
            !have
                .get(id.as_str())
                .is_some_and(|b| b.status == Status::Ok && b.summary.is_some())
        })
        .collect()
}

/// Predict the step time from a profile that holds every needed kernel.
pub fn predict(needs: &[Need], file: &ResultFile) -> Result<Prediction> {
    let lacking = missing(needs, file);
    if !lacking.is_empty() {
        return Err(Error::Usage(format!(
            "the profile lacks {} kernel(s) this step needs: {}",
            lacking.len(),
            lacking.join(", ")
        )));
    }
    let by_id: HashMap<&str, &Benchmark> =
        file.benchmarks.iter().map(|b| (b.id.as_str(), b)).collect();
    let (mut total, mut var_low, mut var_high) = (0.0, 0.0, 0.0);
    let mut terms = Vec::with_capacity(needs.len());
    for n in needs {
        let id = n.entry.kernel.id();
        let Some(s) = by_id.get(id.as_str()).and_then(|b| b.summary.as_ref()) else {
            continue;
        };
        total += n.count * s.median_s;
        var_low += (n.count * (s.median_s - s.ci95_low_s).max(0.0)).powi(2);
        var_high += (n.count * (s.ci95_high_s - s.median_s).max(0.0)).powi(2);
        terms.push(Term {
            id,
            count: n.count,
            median_s: s.median_s,
            total_s: n.count * s.median_s,
        });
    }
    terms.sort_by(|a, b| b.total_s.total_cmp(&a.total_s));
    Ok(Prediction {
        step_s: total,
        ci_low_s: total - var_low.sqrt(),
        ci_high_s: total + var_high.sqrt(),
        terms,
    })
}

/// Ratio predicted / measured and its interval from the two intervals (interval
/// arithmetic: lowest prediction over highest measurement and vice versa).
pub fn ratio(pred: &Prediction, measured: f64, m_low: f64, m_high: f64) -> (f64, f64, f64) {
    let safe = |x: f64| x.max(f64::MIN_POSITIVE);
    (
        pred.step_s / safe(measured),
        pred.ci_low_s / safe(m_high),
        pred.ci_high_s / safe(m_low),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::BenchSummary;

    fn cfg(layers: usize) -> StepConfig {
        let p = preset("tiny").unwrap();
        StepConfig {
            layers,
            hidden: p.hidden,
            heads: p.heads,
            head_dim: p.hidden / p.heads,
            ffn: p.ffn,
            vocab: p.vocab,
            seq: p.seq,
            batch: p.batch,
            causal: false,
            dtype: DType::F32,
        }
    }

    #[test]
    fn every_needed_gemm_flop_of_the_step_is_counted_once() {
        // 3 × forward FLOPs of every linear and attention product, per layer and vocab.
        let c = cfg(3);
        let needs = needed_kernels(&c).unwrap();
        let gemm: f64 = needs
            .iter()
            .filter(|n| n.entry.kernel.kind() == flopcal_kernels::KernelKind::Matmul)
            .map(|n| n.count * n.entry.kernel.work().flops as f64)
            .sum();
        let (t, h, f, v, s) = (256.0, 128.0, 512.0, 2048.0, 64.0);
        let fwd = 3.0 * t * (8.0 * h * h + 4.0 * h * f + 4.0 * s * h) + t * 2.0 * h * v;
        assert_eq!(gemm, 3.0 * fwd);
    }

    #[test]
    fn layer_count_scales_every_per_layer_term() {
        let one: f64 = needed_kernels(&cfg(1))
            .unwrap()
            .iter()
            .map(|n| n.count)
            .sum();
        let two: f64 = needed_kernels(&cfg(2))
            .unwrap()
            .iter()
            .map(|n| n.count)
            .sum();
        let three: f64 = needed_kernels(&cfg(3))
            .unwrap()
            .iter()
            .map(|n| n.count)
            .sum();
        assert!((three - two - (two - one)).abs() < 1e-9);
    }

    #[test]
    fn prediction_sums_counts_times_medians_and_widens_in_quadrature() {
        let needs = needed_kernels(&cfg(1)).unwrap();
        let benchmarks = needs
            .iter()
            .map(|n| Benchmark {
                id: n.entry.kernel.id(),
                kernel: String::new(),
                label: String::new(),
                group: "model".into(),
                dtype: "f32".into(),
                shape: Default::default(),
                flops_per_iter: 0,
                model_flops_per_iter: 0,
                bytes_per_iter: 0,
                iters_per_sample: 1,
                samples_s: vec![],
                summary: Some(BenchSummary {
                    median_s: 1e-3,
                    mad_s: 0.0,
                    mean_s: 1e-3,
                    min_s: 1e-3,
                    max_s: 1e-3,
                    ci95_low_s: 0.9e-3,
                    ci95_high_s: 1.1e-3,
                    flops_per_s: 0.0,
                    flops_per_s_ci_low: 0.0,
                    flops_per_s_ci_high: 0.0,
                    bytes_per_s: 0.0,
                    n: 10,
                    outliers: 0,
                    rel_noise: 0.0,
                    stop: crate::harness::StopReason::Converged,
                }),
                verified: true,
                verification: None,
                status: Status::Ok,
                message: None,
            })
            .collect();
        let file = fake_file(benchmarks);
        let p = predict(&needs, &file).unwrap();
        let counts: f64 = needs.iter().map(|n| n.count).sum();
        assert!((p.step_s - counts * 1e-3).abs() < 1e-12);
        let hw: f64 = needs
            .iter()
            .map(|n| (n.count * 0.1e-3).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((p.ci_high_s - p.step_s - hw).abs() < 1e-12);
        // Dropping one kernel makes it missing, by id.
        let mut partial = file.clone();
        let gone = partial.benchmarks.remove(0).id;
        assert_eq!(missing(&needs, &partial), vec![gone.clone()]);
        let e = predict(&needs, &partial).unwrap_err().to_string();
        assert!(e.contains(&gone), "{e}");
    }

    fn fake_file(benchmarks: Vec<Benchmark>) -> ResultFile {
        ResultFile {
            schema_version: crate::results::SCHEMA_VERSION,
            run_id: "test".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            tool: crate::results::Tool::current(),
            partial: false,
            host: crate::fingerprint::collect(&candle_core::Device::Cpu, 1),
            harness: crate::harness::HarnessConfig::quick(),
            profile: crate::results::ProfileConfig {
                model: model_config(&cfg(1), "tiny"),
                seq: 64,
                batch: 4,
                dtypes: vec!["f32".into()],
                quick: true,
            },
            peak: None,
            benchmarks,
        }
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = preset("huge").unwrap_err().to_string();
        assert!(e.contains("tiny") && e.contains("base-short"), "{e}");
    }
}
