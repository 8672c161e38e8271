//! Predict the time of one real training step from measured kernels.
//!
//! The prediction is `Σ count × mean` over the kernels one step runs, every count
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
//! | `handover.<gemm>` − `<gemm>` − `grad_accum` of its first operand | the GEMM's count |
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
//! The prediction sums the kernels' *mean* times and is compared with the step's mean
//! time (see [`predict`]): means add exactly, medians do not, and on a shared machine
//! the difference is the pre-emptions every kernel pays now and then and the step,
//! hundreds of kernels long, pays on average.
//!
//! The `handover` terms are the GEMMs' overhead inside the step, each measured by a
//! kernel ([`flopcal_kernels::step::HandoverKernel`]) that runs the GEMM as the step
//! does, after an element-wise op and with its operands out of cache, less the GEMM
//! and the accumulation measured on their own. On a 2-core CPU it is 0.3–1 ms per
//! large GEMM: candle's element-wise thread pool spins after each op while the GEMM's
//! rayon threads need the cores, and the step streams each weight from memory. On
//! one thread it is near zero.
//!
//! The interval of the prediction combines the kernels' 95% intervals of their means:
//! each kernel's half-widths scale with its count (the same measurement is reused),
//! and different kernels are independent, so half-widths add in quadrature.

use std::collections::{BTreeMap, HashMap};

use candle_core::DType;
use flopcal_kernels::step::{HandoverKernel, StepConfig, TrainOp, TrainOpKernel};
use flopcal_kernels::Kernel;
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
        ..ModelConfig::default()
    }
}

/// One kernel the step runs, with how many times per step.
pub struct Need {
    /// The kernel (to measure it, or to name its id).
    pub entry: Entry,
    /// Times per step (0 for a kernel measured only to be subtracted, see `overhead`).
    pub count: f64,
    /// For an overhead term: the ids of the kernels whose times are subtracted from
    /// this one's (a GEMM and the accumulation it runs after); the term is
    /// `count × (time − Σ subtracted times)`.
    pub minus: Vec<String>,
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
    let mut handovers = Vec::new();
    let mut again = suite::derive(&spec)?.into_iter();
    for entry in suite::derive(&spec)? {
        let copy = again.next();
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
        if let Some(copy) = copy {
            let dim = |name: &str| {
                copy.kernel
                    .dims()
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map_or(1, |(_, v)| *v as usize)
            };
            let elements = dim("b") * dim("m") * dim("k");
            handovers.push((copy, elements, count));
        }
        needs.push(Need {
            entry,
            count,
            minus: Vec::new(),
        });
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
    // Every GEMM runs after an element-wise op; the accumulation of its first
    // operand's size stands for that op. Those sizes are measured (count 0 unless the
    // step accumulates that size anyway) so that the hand-over term can subtract them.
    for (_, elements, _) in &handovers {
        accum.entry(*elements).or_default();
    }
    let accum_id = |elements: usize| {
        TrainOpKernel {
            op: TrainOp::Accumulate { elements },
            dtype: DType::F32,
        }
        .id()
    };
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
            minus: Vec::new(),
        });
    }
    for (gemm, elements, count) in handovers {
        let minus = vec![gemm.kernel.id(), accum_id(elements)];
        needs.push(Need {
            entry: Entry {
                group: Group::Model,
                kernel: Box::new(HandoverKernel {
                    gemm: gemm.kernel,
                    elements,
                }),
            },
            count,
            minus,
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
    /// Mean seconds per run of the kernel (what the prediction sums).
    pub mean_s: f64,
    /// Median seconds per run of the kernel (for reference).
    pub median_s: f64,
    /// `count × mean_s`.
    pub total_s: f64,
}

/// The predicted step time with its interval and the terms it sums.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// Predicted seconds per step: `Σ count × mean`.
    pub step_s: f64,
    /// Lower end of its 95% interval.
    pub ci_low_s: f64,
    /// Upper end of its 95% interval.
    pub ci_high_s: f64,
    /// `Σ count × median`, for reference: below `step_s` by the kernels' tails.
    pub median_sum_s: f64,
    /// The terms, largest first.
    pub terms: Vec<Term>,
}

/// Mean of per-iteration samples and the half-width of its 95% interval
/// (`1.96 · sd / √n`; zero for a single sample). `None` when empty.
pub fn mean_and_half_width(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    if samples.len() < 2 {
        return Some((mean, 0.0));
    }
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, 1.96 * (var / n).sqrt()))
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
///
/// The prediction sums `count × mean`, not medians: the expected time of a sum is the
/// sum of the expected times whatever the distributions, while a sum of medians drops
/// every kernel's tail (a pre-emption, a slow allocation) that the step, running all of
/// them in a row, pays on average. The kernels' intervals are those of their means
/// (from the stored samples; the stored median interval when a file has none), scaled
/// by the count, and independent kernels' half-widths add in quadrature.
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
    // Mean and interval half-widths (below, above) of one kernel.
    let stats_of = |b: &Benchmark| -> Option<(f64, f64, f64, f64)> {
        let s = b.summary.as_ref()?;
        let (lo, hi) = s.widest_interval_s().unwrap_or((s.median_s, s.median_s));
        Some(match mean_and_half_width(&b.samples_s) {
            Some((mean, half)) => (mean, half, half, s.median_s),
            None => (
                s.mean_s,
                (s.median_s - lo).max(0.0),
                (hi - s.median_s).max(0.0),
                s.median_s,
            ),
        })
    };
    let (mut total, mut median_sum, mut var_low, mut var_high) = (0.0, 0.0, 0.0, 0.0);
    let mut terms = Vec::with_capacity(needs.len());
    for n in needs {
        if n.count == 0.0 {
            continue;
        }
        let id = n.entry.kernel.id();
        let Some((mut mean, low, high, mut median)) =
            by_id.get(id.as_str()).and_then(|b| stats_of(b))
        else {
            continue;
        };
        // An overhead term: its kernel's time less the parts measured on their own.
        let (mut v_low, mut v_high) = (low * low, high * high);
        for other in &n.minus {
            if let Some((m, lo, hi, med)) = by_id.get(other.as_str()).and_then(|b| stats_of(b)) {
                mean -= m;
                median -= med;
                // Subtracting swaps which side of the interval each part widens.
                v_low += hi * hi;
                v_high += lo * lo;
            }
        }
        total += n.count * mean;
        median_sum += n.count * median;
        var_low += n.count * n.count * v_low;
        var_high += n.count * n.count * v_high;
        terms.push(Term {
            id: if n.minus.is_empty() {
                id
            } else {
                format!("{id} − GEMM − accumulation")
            },
            count: n.count,
            mean_s: mean,
            median_s: median,
            total_s: n.count * mean,
        });
    }
    terms.sort_by(|a, b| b.total_s.total_cmp(&a.total_s));
    Ok(Prediction {
        step_s: total,
        ci_low_s: (total - var_low.sqrt()).max(0.0),
        ci_high_s: total + var_high.sqrt(),
        median_sum_s: median_sum,
        terms,
    })
}

/// Add another round's per-iteration samples to a benchmark and recompute its
/// summary (median, its 95% interval, spread and rates) over all the samples.
pub fn pool_samples(b: &mut Benchmark, more: &[f64]) {
    b.samples_s.extend_from_slice(more);
    let Some(s) = crate::harness::stats::summarize(&b.samples_s) else {
        return;
    };
    let stop = b
        .summary
        .as_ref()
        .map_or(crate::harness::StopReason::Budget, |old| old.stop);
    b.summary = Some(crate::results::BenchSummary::from_stats(
        &s,
        stop,
        b.flops_per_iter,
        b.bytes_per_iter,
    ));
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

/// The step model's prediction of this step on this machine (the model crate's, the
/// one `estimate` and `plan` use): the single-device layout (materialised attention,
/// no recomputation), GEMM rates from the profile interpolated across shapes, and the
/// memory-bound ops at the best bandwidth the profile measured. Reported beside the
/// kernel sum; `None` without GEMM and bandwidth measurements.
pub fn step_model_prediction(
    file: &ResultFile,
    cfg: &ModelConfig,
    batch: u64,
    seq: u64,
) -> Option<f64> {
    use flopcal_model::gemm_rate::{RateSource, ShapeModel};
    use flopcal_model::layout::Layout;
    use flopcal_model::step::{Batch, StepModel};
    use flopcal_model::system::{System, Tier};

    let table = crate::efficiency::gemm_table(file, None);
    let peak = table.points.iter().map(|p| p.1).fold(0.0, f64::max);
    let bw = file
        .benchmarks
        .iter()
        .filter(|b| b.kernel == "bandwidth" && b.status == Status::Ok)
        .filter_map(|b| {
            b.summary
                .as_ref()
                .map(|s| b.bytes_per_iter as f64 / s.median_s)
        })
        .filter(|r| r.is_finite() && *r > 0.0)
        .fold(0.0, f64::max);
    if table.points.is_empty() || bw <= 0.0 {
        return None;
    }
    let sys = System {
        name: file.host.device_name.clone(),
        peak_flops: peak,
        memory_bytes: file.host.memory_bytes as f64,
        hbm_bw: bw,
        compute_units: None,
        tiers: vec![Tier {
            name: "none (one device)".into(),
            group_size: 0,
            bw: 1.0,
            latency_s: 0.0,
        }],
    };
    let shape = ShapeModel {
        peak_flops: peak,
        hbm_bw: bw,
        compute_units: None,
        elem_bytes: 4.0,
        efficiency: 1.0,
    };
    let rates = RateSource::Profile(table);
    let eff = flopcal_model::step::Efficiency {
        link: 1.0,
        hbm: 1.0,
    };
    let m = StepModel::new(cfg, &sys, &rates, &shape, eff, seq);
    let layout = Layout::single(batch.max(1) as u32);
    let layer = m.layer_cost(&layout, seq);
    let b = Batch {
        global_batch: batch.max(1),
        seq,
    };
    Some(m.predict_with(&layout, b, &layer).step_time_s)
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
            .filter(|n| n.minus.is_empty())
            .map(|n| n.count * n.entry.kernel.work().flops as f64)
            .sum();
        let (t, h, f, v, s) = (256.0, 128.0, 512.0, 2048.0, 64.0);
        let fwd = 3.0 * t * (8.0 * h * h + 4.0 * h * f + 4.0 * s * h) + t * 2.0 * h * v;
        assert_eq!(gemm, 3.0 * fwd);
    }

    #[test]
    fn every_gemm_has_a_handover_term_that_subtracts_it_and_a_measured_accumulation() {
        let needs = needed_kernels(&cfg(2)).unwrap();
        let ids: Vec<String> = needs.iter().map(|n| n.entry.kernel.id()).collect();
        let gemms: Vec<&Need> = needs
            .iter()
            .filter(|n| n.minus.is_empty() && n.entry.kernel.label().contains(".fwd"))
            .filter(|n| n.entry.kernel.kind() == flopcal_kernels::KernelKind::Matmul)
            .collect();
        assert!(!gemms.is_empty());
        for g in gemms {
            let id = g.entry.kernel.id();
            let h = needs
                .iter()
                .find(|n| n.minus.first() == Some(&id))
                .unwrap_or_else(|| panic!("no handover for {id}"));
            assert_eq!(h.count, g.count);
            assert!(h.entry.kernel.label().starts_with("handover."));
            assert!(ids.contains(&h.minus[1]), "{} is not measured", h.minus[1]);
        }
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
    fn without_samples_the_prediction_sums_stored_means_and_widens_in_quadrature() {
        let needs = needed_kernels(&cfg(1)).unwrap();
        let benchmarks = needs
            .iter()
            .map(|n| bench(n.entry.kernel.id(), vec![]))
            .collect();
        let file = fake_file(benchmarks);
        let p = predict(&needs, &file).unwrap();
        // An overhead term subtracts its parts: 1 ms − 1 ms − 1 ms.
        let counts: f64 = needs
            .iter()
            .map(|n| n.count * (1.0 - n.minus.len() as f64))
            .sum();
        assert!((p.step_s - counts * 1e-3).abs() < 1e-12);
        let hw: f64 = needs
            .iter()
            .map(|n| (1 + n.minus.len()) as f64 * (n.count * 0.1e-3).powi(2))
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

    /// A measured benchmark: median 1 ms (CI 0.9–1.1 ms), mean 1 ms, these samples.
    fn bench(id: String, samples_s: Vec<f64>) -> Benchmark {
        Benchmark {
            id,
            kernel: String::new(),
            label: String::new(),
            group: "model".into(),
            dtype: "f32".into(),
            shape: Default::default(),
            flops_per_iter: 1000,
            model_flops_per_iter: 0,
            bytes_per_iter: 0,
            iters_per_sample: 1,
            samples_s,
            round_sizes: Vec::new(),
            round_probe_s: Vec::new(),
            round_contended: Vec::new(),
            summary: Some(BenchSummary {
                median_s: 1e-3,
                mad_s: 0.0,
                mean_s: 1e-3,
                min_s: 1e-3,
                max_s: 1e-3,
                ci95_low_s: Some(0.9e-3),
                ci95_high_s: Some(1.1e-3),
                ci_level: 0.95,
                pi95_low_s: None,
                pi95_high_s: None,
                flops_per_s: 0.0,
                flops_per_s_ci_low: Some(0.0),
                flops_per_s_ci_high: Some(0.0),
                flops_per_s_pi_low: None,
                flops_per_s_pi_high: None,
                interval_note: None,
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
        }
    }

    #[test]
    fn prediction_sums_the_means_of_stored_samples_so_tails_count() {
        // One slow sample in four: the median ignores it, the step pays it on average.
        let needs = needed_kernels(&cfg(1)).unwrap();
        let samples = vec![1e-3, 1e-3, 1e-3, 5e-3];
        let file = fake_file(
            needs
                .iter()
                .map(|n| bench(n.entry.kernel.id(), samples.clone()))
                .collect(),
        );
        let p = predict(&needs, &file).unwrap();
        let counts: f64 = needs
            .iter()
            .map(|n| n.count * (1.0 - n.minus.len() as f64))
            .sum();
        assert!((p.step_s - counts * 2e-3).abs() < 1e-12, "{}", p.step_s);
        assert!((p.median_sum_s - counts * 1e-3).abs() < 1e-12);
        assert!(p.ci_low_s < p.step_s && p.step_s < p.ci_high_s);
    }

    #[test]
    fn mean_half_width_is_1_96_standard_errors_and_zero_for_one_sample() {
        let (m, h) = mean_and_half_width(&[1.0, 3.0]).unwrap();
        assert_eq!(m, 2.0);
        // sd = √2, se = √2/√2 = 1.
        assert!((h - 1.96).abs() < 1e-12);
        assert_eq!(mean_and_half_width(&[4.0]), Some((4.0, 0.0)));
        assert_eq!(mean_and_half_width(&[]), None);
    }

    #[test]
    fn pooling_a_round_recomputes_the_summary_over_all_samples() {
        let mut b = bench("k".into(), vec![1.0, 1.0, 1.0]);
        pool_samples(&mut b, &[3.0, 3.0, 3.0, 3.0]);
        assert_eq!(b.samples_s.len(), 7);
        let s = b.summary.unwrap();
        assert_eq!(s.n, 7);
        assert_eq!(s.median_s, 3.0);
        assert_eq!((s.min_s, s.max_s), (1.0, 3.0));
        assert!((s.flops_per_s - 1000.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.stop, crate::harness::StopReason::Converged);
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
                rounds: 1,
            },
            peak: None,
            contention: None,
            round_drift_sd: None,
            benchmarks,
        }
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = preset("huge").unwrap_err().to_string();
        assert!(e.contains("tiny") && e.contains("base-short"), "{e}");
    }
}
