//! Predict the time of one real training step with the step model (the one `estimate`
//! and `plan` use, `flopcal_model::step`) fed with kernels measured on this machine,
//! and judge it against the step's measured time.
//!
//! The step (`flopcal_kernels::step`: pre-LN transformer, no biases, candle autograd)
//! is the step model's single-device layout: data, tensor and pipeline degree 1, one
//! micro-batch of the whole batch, materialised attention, no recomputation. The model
//! reads two measured rate sources, both built here from the profile:
//!
//! - GEMM rates (its rate source #1, a profile): every GEMM of the step at its shape,
//!   forward and both backward layouts, and the six attention products, each timed as
//!   the step runs it: the hand-over kernel ([`flopcal_kernels::step::HandoverKernel`])
//!   runs the GEMM after an element-wise op with its operands out of cache, and the
//!   op, measured on its own (`grad_accum.train` of the GEMM's first operand), is
//!   subtracted. On a 2-core CPU that adds 0.3–1 ms per large GEMM to the GEMM
//!   repeated alone: candle's element-wise thread pool spins after each op while the
//!   GEMM's rayon threads need the cores, and the step streams each weight from
//!   memory;
//! - memory-bound op times (`flopcal_model::op_rate::OpTable`): the `*.train` kernels,
//!   each op forward *and* backward through autograd with exactly the step's code,
//!   because candle's backward of an op composed from primitives costs several times
//!   its forward and no fixed ratio holds across ops (measured: GELU's backward
//!   dominates the `tiny` step). They are the layernorms (`2L + 1`), softmax (`L`),
//!   GELU (`L`), residual adds (`2L`), head split and merge (`L`), embedding and
//!   cross-entropy (1 each), and autograd's accumulation of every GEMM operand's
//!   gradient (`grad_accum.train`: a zero-filled tensor plus an add, for the `dX`,
//!   `dW` of every linear layer and the `dQ`, `dK` (twice: once through `Kᵀ`), `dV`,
//!   `dP` of attention).
//!
//! The step model counts those ops and GEMMs from the architecture ([`needed_kernels`]
//! lists the kernels it needs; its counts are the model's, see the tests). The
//! candle step has no optimizer update, so the model's optimizer part is left out of
//! the compared time and reported.
//!
//! The kernels enter through their *mean* times and the step is judged by its mean
//! time (see [`predict`]): means add exactly, medians do not, and on a shared machine
//! the difference is the pre-emptions every kernel pays now and then and the step,
//! hundreds of kernels long, pays on average. The interval of the prediction combines
//! the kernels' 95% intervals of their means in quadrature.

use std::collections::{BTreeMap, HashMap};

use candle_core::DType;
use flopcal_kernels::step::{HandoverKernel, StepConfig, TrainOp, TrainOpKernel};
use flopcal_kernels::Kernel;
use flopcal_model::gemm_rate::{Gemm, MeasuredTable};
use flopcal_model::op_rate::{MemOp, OpPoint, OpTable};
use flopcal_model::ModelConfig;
use serde::Serialize;

use crate::{Error, Result};
use flopcal_bench::results::{Benchmark, ResultFile, Status};
use flopcal_bench::suite::{self, Entry, Group, SuiteSpec};

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
    /// For a `*.train` kernel: the step model's memory-bound op it measures and that
    /// op's size.
    pub mem_op: Option<(MemOp, u64)>,
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
            mem_op: None,
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
        let mem_op = Some((mem_op_of(&op), op.elements()));
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
            mem_op,
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
            mem_op: None,
        });
    }
    Ok(needs)
}

/// One term of the prediction: a part of the step model's single-device step.
#[derive(Debug, Clone, Serialize)]
pub struct Term {
    /// The part: a GEMM and its pass (`qkv.fwd`, `scores.bwd`, ...) or a memory-bound
    /// op (`layernorm.train`, forward and backward).
    pub id: String,
    /// Times per step (the layers, or 1 for the vocabulary end).
    pub count: f64,
    /// Seconds of one, from the kernels' mean times.
    pub mean_s: f64,
    /// Seconds of one, from the kernels' median times (for reference).
    pub median_s: f64,
    /// `count × mean_s`.
    pub total_s: f64,
}

/// The step model's prediction of the step, with its interval and its parts.
#[derive(Debug, Clone, Serialize)]
pub struct StepPrediction {
    /// Predicted seconds per step: the step model's single-device step fed with the
    /// kernels' mean times, less its optimizer update (the candle step has none).
    pub step_s: f64,
    /// Lower end of its 95% interval.
    pub ci_low_s: f64,
    /// Upper end of its 95% interval.
    pub ci_high_s: f64,
    /// The same step model fed with the kernels' median times, for reference: below
    /// `step_s` by the kernels' tails.
    pub median_sum_s: f64,
    /// The step model's optimizer update, left out of `step_s`.
    pub optimizer_s: f64,
    /// Where the GEMM rates came from.
    pub gemm_source: String,
    /// Where the memory-bound op times came from.
    pub ops_source: String,
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

/// The step model's memory-bound op of a `*.train` kernel.
fn mem_op_of(op: &TrainOp) -> MemOp {
    match op {
        TrainOp::LayerNorm { .. } => MemOp::LayerNorm,
        TrainOp::Softmax { .. } => MemOp::Softmax,
        TrainOp::Gelu { .. } => MemOp::Activation,
        TrainOp::Residual { .. } => MemOp::Residual,
        TrainOp::Heads { .. } => MemOp::Heads,
        TrainOp::Embedding { .. } => MemOp::Embedding,
        TrainOp::CrossEntropy { .. } => MemOp::Loss,
        TrainOp::Accumulate { .. } => MemOp::GradAccum,
    }
}

/// A kernel's time, with the half-widths of its 95% interval below and above.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timed {
    time: f64,
    low: f64,
    high: f64,
}

/// Every benchmark's mean (from its samples; the stored mean without them) with the
/// interval of the mean, or its median with the median's interval.
fn kernel_times(file: &ResultFile, median: bool) -> HashMap<String, Timed> {
    file.benchmarks
        .iter()
        .filter(|b| b.status == Status::Ok)
        .filter_map(|b| {
            let s = b.summary.as_ref()?;
            let (lo, hi) = s.widest_interval_s().unwrap_or((s.median_s, s.median_s));
            let from_median = Timed {
                time: s.median_s,
                low: (s.median_s - lo).max(0.0),
                high: (hi - s.median_s).max(0.0),
            };
            let t = if median {
                from_median
            } else {
                match mean_and_half_width(&b.samples_s) {
                    Some((mean, half)) => Timed {
                        time: mean,
                        low: half,
                        high: half,
                    },
                    None => Timed {
                        time: s.mean_s,
                        ..from_median
                    },
                }
            };
            Some((b.id.clone(), t))
        })
        .collect()
}

/// The rate sources the step model reads, from kernel times: every GEMM at its shape,
/// timed as the step runs it (its hand-over kernel, after an element-wise op with its
/// operands out of cache, less that op) when the needs hold one, else on its own; and
/// every `*.train` kernel as the forward + backward time of its op at its size.
fn rate_tables(
    needs: &[Need],
    times: &HashMap<String, f64>,
    source: &str,
) -> (MeasuredTable, OpTable) {
    let mut in_step: HashMap<&str, f64> = HashMap::new();
    for n in needs {
        if let [gemm, accum] = n.minus.as_slice() {
            if let (Some(h), Some(a)) = (times.get(&n.entry.kernel.id()), times.get(accum)) {
                in_step.insert(gemm.as_str(), h - a);
            }
        }
    }
    let mut points = Vec::new();
    let mut ops = Vec::new();
    for n in needs.iter().filter(|n| n.minus.is_empty()) {
        let id = n.entry.kernel.id();
        if let Some((op, elements)) = n.mem_op {
            if let Some(&t) = times.get(&id) {
                ops.push(OpPoint {
                    op,
                    elements,
                    seconds: t,
                });
            }
            continue;
        }
        let Some(t) = in_step.get(id.as_str()).or_else(|| times.get(&id)).copied() else {
            continue;
        };
        let dims = n.entry.kernel.dims();
        let dim = |name: &str| dims.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let (Some(m), Some(nn), Some(k)) = (dim("m"), dim("n"), dim("k")) else {
            continue;
        };
        let g = Gemm {
            batch: dim("b").unwrap_or(1),
            m,
            n: nn,
            k,
        };
        // A non-positive time (a hand-over faster than the op it follows) gives no rate;
        // the table's other shapes answer for it.
        if t > 0.0 {
            points.push((g, g.flops() / t));
        }
    }
    (
        MeasuredTable {
            points,
            source: format!("{source}: GEMMs as the step runs them (hand-over kernels)"),
        },
        OpTable {
            points: ops,
            source: format!("{source}: *.train kernels, forward + backward through autograd"),
        },
    )
}

/// The step model's single-device step on this machine.
struct ModelStep {
    /// Seconds without the optimizer.
    step_s: f64,
    /// The optimizer's seconds.
    optimizer_s: f64,
    /// `(id, count, seconds each)`.
    terms: Vec<(String, f64, f64)>,
    gemm_source: String,
    ops_source: String,
}

/// The step model's single-device step of `step` on this machine from kernel times.
fn model_step(
    needs: &[Need],
    times: &HashMap<String, f64>,
    step: &StepConfig,
    file: &ResultFile,
) -> Result<ModelStep> {
    use flopcal_model::gemm_rate::{RateSource, ShapeModel};
    use flopcal_model::layout::Layout;
    use flopcal_model::step::{Batch, Efficiency, StepModel};
    use flopcal_model::system::{System, Tier};

    let cfg = model_config(step, "validate");
    let (table, ops) = rate_tables(needs, times, &format!("profile {}", file.header.run_id));
    let peak = table.points.iter().map(|p| p.1).fold(0.0, f64::max);
    let bw = crate::efficiency::measured_bandwidth(file).unwrap_or(0.0);
    if table.points.is_empty() || !(peak > 0.0 && bw > 0.0) {
        return Err(Error::Usage(
            "the profile has no measured GEMM or memory-bound kernel to predict from".into(),
        ));
    }
    let sys = System {
        name: file.host.device_name.clone(),
        peak_flops: peak,
        gemm_ceiling_flops: None,
        attention_flops: None,
        memory_bytes: (file.host.memory_bytes as f64).max(1.0),
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
    let gemm_source = table.source.clone();
    let ops_source = ops.source.clone();
    let rates = RateSource::Profile(table);
    // Measured rates are achieved rates: no efficiency on top.
    let eff = Efficiency {
        link: 1.0,
        hbm: 1.0,
        gemm: 1.0,
        dp_overlap: true,
        tp_overlap: false,
        unfused_loss: false,
    };
    let seq = step.seq as u64;
    let m = StepModel::new(&cfg, &sys, &rates, &shape, eff, seq).with_ops(&ops);
    let layout = Layout::single(step.batch.max(1) as u32);
    let layer = m.layer_cost(&layout, seq);
    let batch = Batch {
        global_batch: step.batch.max(1) as u64,
        seq,
    };
    let p = m.predict_with(&layout, batch, &layer);
    let opt = p.step_breakdown_s.optimizer;
    let l = step.layers as f64;
    let mut terms: Vec<(String, f64, f64)> = Vec::new();
    let items = m
        .layer_items(&layout, seq)
        .into_iter()
        .map(|i| (i, l))
        .chain(m.vocab_items(&layout, seq).into_iter().map(|i| (i, 1.0)));
    for (i, count) in items {
        let id = format!("{}.{}", i.name, i.pass);
        match terms.iter_mut().find(|t| t.0 == id && t.1 == count) {
            Some(t) => t.2 += i.seconds,
            None => terms.push((id, count, i.seconds)),
        }
    }
    Ok(ModelStep {
        step_s: p.step_time_s - opt,
        optimizer_s: opt,
        terms,
        gemm_source,
        ops_source,
    })
}

/// Predict the step time with the step model from a profile that holds every needed
/// kernel: the single-device layout (materialised attention, no recomputation) of
/// the step's architecture, GEMM rates from the profile's GEMMs at the step's shapes
/// as the step runs them, memory-bound ops from its `*.train` kernels, and the step
/// model's optimizer update left out (the candle step has none).
///
/// The kernels enter through their *mean* times: the expected time of a sum is the
/// sum of the expected times whatever the distributions, while medians drop every
/// kernel's tail (a pre-emption, a slow allocation) that the step, running all of them
/// in a row, pays on average. The interval: the step model is linear in the kernel
/// times, so each kernel's interval moves the prediction by the model evaluated at
/// that end, and independent kernels' shifts add in quadrature.
pub fn predict(needs: &[Need], file: &ResultFile, step: &StepConfig) -> Result<StepPrediction> {
    let lacking = missing(needs, file);
    if !lacking.is_empty() {
        return Err(Error::Usage(format!(
            "the profile lacks {} kernel(s) this step needs: {}",
            lacking.len(),
            lacking.join(", ")
        )));
    }
    let ids: Vec<String> = needs.iter().map(|n| n.entry.kernel.id()).collect();
    let pick = |all: &HashMap<String, Timed>| -> HashMap<String, Timed> {
        ids.iter()
            .filter_map(|id| all.get(id).map(|t| (id.clone(), *t)))
            .collect()
    };
    let means = pick(&kernel_times(file, false));
    let medians = pick(&kernel_times(file, true));
    let at = |m: &HashMap<String, Timed>| -> HashMap<String, f64> {
        m.iter().map(|(k, v)| (k.clone(), v.time)).collect()
    };
    let base = at(&means);
    let ModelStep {
        step_s,
        optimizer_s,
        terms: mean_terms,
        gemm_source,
        ops_source,
    } = model_step(needs, &base, step, file)?;
    let median = model_step(needs, &at(&medians), step, file)?;
    let (median_s, median_terms) = (median.step_s, median.terms);
    let (mut var_low, mut var_high) = (0.0, 0.0);
    for (id, t) in &means {
        for (half, up) in [(t.high, true), (t.low, false)] {
            if half <= 0.0 {
                continue;
            }
            let mut moved = base.clone();
            moved.insert(id.clone(), if up { t.time + half } else { t.time - half });
            let d = model_step(needs, &moved, step, file)?.step_s - step_s;
            if d > 0.0 {
                var_high += d * d;
            } else {
                var_low += d * d;
            }
        }
    }
    let mut terms: Vec<Term> = mean_terms
        .into_iter()
        .map(|(id, count, mean)| {
            let median = median_terms
                .iter()
                .find(|t| t.0 == id && t.1 == count)
                .map_or(mean, |t| t.2);
            Term {
                id,
                count,
                mean_s: mean,
                median_s: median,
                total_s: count * mean,
            }
        })
        .filter(|t| t.total_s != 0.0)
        .collect();
    terms.sort_by(|a, b| b.total_s.total_cmp(&a.total_s));
    Ok(StepPrediction {
        step_s,
        ci_low_s: (step_s - var_low.sqrt()).max(0.0),
        ci_high_s: step_s + var_high.sqrt(),
        median_sum_s: median_s,
        optimizer_s,
        gemm_source,
        ops_source,
        terms,
    })
}

/// Add another round's per-iteration samples to a benchmark and recompute its
/// summary (median, its 95% interval, spread and rates) over all the samples.
pub fn pool_samples(b: &mut Benchmark, more: &[f64]) {
    b.samples_s.extend_from_slice(more);
    let Some(s) = flopcal_bench::harness::stats::summarize(&b.samples_s) else {
        return;
    };
    let stop = b
        .summary
        .as_ref()
        .map_or(flopcal_bench::harness::StopReason::Budget, |old| old.stop);
    b.summary = Some(flopcal_bench::results::BenchSummary::from_stats(
        &s,
        stop,
        b.flops_per_iter,
        b.bytes_per_iter,
    ));
}

/// Ratio predicted / measured and its interval from the two intervals (interval
/// arithmetic: lowest prediction over highest measurement and vice versa).
pub fn ratio(pred: &StepPrediction, measured: f64, m_low: f64, m_high: f64) -> (f64, f64, f64) {
    let safe = |x: f64| x.max(f64::MIN_POSITIVE);
    (
        pred.step_s / safe(measured),
        pred.ci_low_s / safe(m_high),
        pred.ci_high_s / safe(m_low),
    )
}

/// Predicted against measured, and whether it is within the bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoundVerdict {
    /// Mean measured seconds per step.
    pub measured_s: f64,
    /// 95% interval of that mean.
    pub measured_ci95_s: [f64; 2],
    /// Median measured seconds per step.
    pub measured_median_s: f64,
    /// predicted / measured.
    pub ratio: f64,
    /// Its 95% interval.
    pub ratio_ci95: [f64; 2],
    /// `|ratio − 1| ≤ bound`.
    pub within_bound: bool,
}

/// Judge `pred` against the step's timed samples: the ratio of the prediction to the
/// samples' mean and whether it is within `bound` (a fraction). `None` without samples.
pub fn judge(pred: &StepPrediction, samples: &[f64], bound: f64) -> Option<BoundVerdict> {
    let (mean, half) = mean_and_half_width(samples)?;
    let median = flopcal_bench::harness::stats::summarize(samples)?.median;
    let (low, high) = ((mean - half).max(0.0), mean + half);
    let (r, r_low, r_high) = ratio(pred, mean, low, high);
    Some(BoundVerdict {
        measured_s: mean,
        measured_ci95_s: [low, high],
        measured_median_s: median,
        ratio: r,
        ratio_ci95: [r_low, r_high],
        within_bound: (r - 1.0).abs() <= bound,
    })
}

impl BoundVerdict {
    /// Success within the bound, failure (exit 1) outside it.
    pub fn outcome(&self) -> crate::Outcome {
        if self.within_bound {
            crate::Outcome::Success
        } else {
            crate::Outcome::Failed
        }
    }
}

/// Time `exec` for about `budget_s`: `untimed` iterations first (the previous kernel
/// or step left the caches in another state), then samples of `iters` iterations
/// until the budget is spent, at least one. Returns per-iteration seconds.
pub fn time_slice(
    exec: &mut dyn flopcal_bench::harness::Executor,
    untimed: u64,
    iters: u64,
    budget_s: f64,
) -> Result<Vec<f64>> {
    exec.run_batch(untimed)?;
    let iters = iters.max(1);
    let mut out = Vec::new();
    let mut spent = 0.0;
    while out.is_empty() || (spent < budget_s && !flopcal_bench::interrupt::requested()) {
        let t = exec.run_batch(iters)?;
        spent += t;
        out.push(t / iters as f64);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flopcal_bench::results::BenchSummary;

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

    /// Seconds per element of each `*.train` op in the synthetic profiles: distinct,
    /// so a count applied to the wrong op shows.
    fn per_element(op: MemOp) -> f64 {
        match op {
            MemOp::LayerNorm => 4e-9,
            MemOp::Residual => 2e-9,
            MemOp::Activation => 50e-9,
            MemOp::Softmax => 3e-9,
            MemOp::Heads => 1e-9,
            MemOp::Embedding => 1.5e-9,
            MemOp::Loss => 10e-9,
            MemOp::GradAccum => 0.5e-9,
            MemOp::Permute => 0.7e-9,
        }
    }

    /// GEMM rate of the synthetic profiles and the hand-over overhead of each GEMM.
    const RATE: f64 = 5e9;
    const HANDOVER: f64 = 50e-6;

    /// A profile of every kernel `needs` lists, each at a synthetic time with `samples`
    /// scaled to it (a 1 ms sample is the kernel's time): GEMMs at [`RATE`], `*.train`
    /// ops at [`per_element`], each hand-over kernel its GEMM plus the accumulation it
    /// follows plus [`HANDOVER`].
    fn synthetic(needs: &[Need], samples: &[f64]) -> ResultFile {
        let time_of = |n: &Need| -> f64 {
            match n.mem_op {
                Some((op, e)) => per_element(op) * e as f64,
                None => n.entry.kernel.work().flops as f64 / RATE,
            }
        };
        let by_id: HashMap<String, f64> = needs
            .iter()
            .filter(|n| n.minus.is_empty())
            .map(|n| (n.entry.kernel.id(), time_of(n)))
            .collect();
        let benchmarks = needs
            .iter()
            .map(|n| {
                let t = if n.minus.is_empty() {
                    by_id[&n.entry.kernel.id()]
                } else {
                    n.minus.iter().map(|m| by_id[m]).sum::<f64>() + HANDOVER
                };
                let mut b = bench(
                    n.entry.kernel.id(),
                    samples.iter().map(|x| x * t / 1e-3).collect(),
                );
                b.kernel = if n.mem_op.is_some() {
                    "bandwidth"
                } else {
                    "matmul"
                }
                .into();
                b.bytes_per_iter = n.entry.kernel.work().bytes;
                if let Some(s) = b.summary.as_mut() {
                    s.median_s = t;
                    s.mean_s = t;
                    s.ci95_low_s = Some(0.9 * t);
                    s.ci95_high_s = Some(1.1 * t);
                }
                b
            })
            .collect();
        fake_file(benchmarks)
    }

    /// The `tiny` step's time with the synthetic profile's kernels, counted by hand from
    /// the candle step (`flopcal_kernels::step`), not from the needs or the step model.
    fn tiny_step_by_hand(layers: f64) -> f64 {
        let (t, h, a, f, v, s, bh) = (256.0, 128.0, 128.0, 512.0, 2048.0, 64.0, 8.0);
        let l = layers;
        // Forward FLOPs: four linear layers and two attention products per layer, the
        // vocabulary once; the backward twice that.
        let fwd = l * 2.0 * t * (3.0 * h * a + a * h + 2.0 * h * f)
            + l * 4.0 * bh * s * s * 64.0
            + 2.0 * t * h * v;
        let gemms = 3.0 * fwd / RATE;
        // 18 GEMMs per layer (4 linear × 3 passes, 6 attention products), 3 for the vocabulary.
        let handover = (18.0 * l + 3.0) * HANDOVER;
        let pe = per_element;
        let ops = (2.0 * l + 1.0) * t * h * pe(MemOp::LayerNorm)
            + 2.0 * l * t * h * pe(MemOp::Residual)
            + l * t * f * pe(MemOp::Activation)
            + l * bh * s * s * pe(MemOp::Softmax)
            + l * 4.0 * t * a * pe(MemOp::Heads)
            + t * h * pe(MemOp::Embedding)
            + t * v * pe(MemOp::Loss);
        let per_layer_grads = t * h
            + h * 3.0 * a
            + t * a
            + a * h
            + t * h
            + h * f
            + t * f
            + f * h
            + 4.0 * t * a
            + bh * s * s;
        let accum = (l * per_layer_grads + t * h + h * v) * pe(MemOp::GradAccum);
        gemms + handover + ops + accum
    }

    #[test]
    fn the_step_model_on_the_profile_predicts_the_step_counted_by_hand() {
        for layers in [1, 2, 3] {
            let c = cfg(layers);
            let needs = needed_kernels(&c).unwrap();
            let file = synthetic(&needs, &[]);
            let p = predict(&needs, &file, &c).unwrap();
            let want = tiny_step_by_hand(layers as f64);
            assert!(
                (p.step_s / want - 1.0).abs() < 1e-9,
                "{layers} layers: predicted {} vs {want}",
                p.step_s
            );
            // Without samples the stored means and medians are the same times.
            assert!((p.median_sum_s / p.step_s - 1.0).abs() < 1e-9);
            assert!(p.optimizer_s > 0.0, "the model's update is reported");
            let terms: f64 = p.terms.iter().map(|t| t.total_s).sum();
            assert!(
                (terms / p.step_s - 1.0).abs() < 1e-9,
                "{terms} vs {}",
                p.step_s
            );
            assert!(p.ci_low_s < p.step_s && p.step_s < p.ci_high_s);
        }
        // Dropping one kernel makes it missing, by id.
        let c = cfg(1);
        let needs = needed_kernels(&c).unwrap();
        let mut partial = synthetic(&needs, &[]);
        let gone = partial.benchmarks.remove(0).id;
        assert_eq!(missing(&needs, &partial), vec![gone.clone()]);
        let e = predict(&needs, &partial, &c).unwrap_err().to_string();
        assert!(e.contains(&gone), "{e}");
    }

    #[test]
    fn a_step_three_times_what_its_kernels_imply_fails_validation_and_the_right_one_passes() {
        use flopcal_bench::harness::MockExecutor;
        let c = cfg(2);
        let needs = needed_kernels(&c).unwrap();
        let file = synthetic(&needs, &[]);
        let pred = predict(&needs, &file, &c).unwrap();
        let truth = tiny_step_by_hand(2.0);
        // The step as `validate` times it, through an executor: here a mock whose step
        // takes `factor` × what the kernels imply, with ±2% alternation for noise.
        let verdict = |factor: f64| {
            let mut exec =
                MockExecutor::new(move |i| factor * truth * if i % 2 == 0 { 0.98 } else { 1.02 });
            let mut samples = Vec::new();
            for _ in 0..5 {
                samples.extend(time_slice(&mut exec, 1, 1, 0.0).unwrap());
            }
            judge(&pred, &samples, 0.15).unwrap()
        };
        let right = verdict(1.0);
        assert!(right.within_bound, "{right:?}");
        assert!((right.ratio - 1.0).abs() < 0.03, "{right:?}");
        assert_eq!(right.outcome(), crate::Outcome::Success);
        let wrong = verdict(3.0);
        assert!(!wrong.within_bound, "{wrong:?}");
        assert!((wrong.ratio - 1.0 / 3.0).abs() < 0.02, "{wrong:?}");
        assert_eq!(wrong.outcome(), crate::Outcome::Failed, "exit 1");
        // Judged against the step counted by hand, so a prediction logic that drops or
        // miscounts a part fails the right step above too.
        assert!((pred.step_s / truth - 1.0).abs() < 1e-9);
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
            round_readings: Vec::new(),
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
                stop: flopcal_bench::harness::StopReason::Converged,
            }),
            verified: true,
            verification: None,
            status: Status::Ok,
            message: None,
        }
    }

    #[test]
    fn prediction_uses_the_means_of_stored_samples_so_tails_count() {
        // One slow sample in four: the median ignores it, the step pays it on average.
        let c = cfg(1);
        let needs = needed_kernels(&c).unwrap();
        let file = synthetic(&needs, &[1e-3, 1e-3, 1e-3, 5e-3]);
        let p = predict(&needs, &file, &c).unwrap();
        let by_hand = tiny_step_by_hand(1.0);
        // Means are twice the 1 ms-scaled times, medians the times themselves.
        assert!(
            (p.step_s / (2.0 * by_hand) - 1.0).abs() < 1e-9,
            "{}",
            p.step_s
        );
        assert!((p.median_sum_s / by_hand - 1.0).abs() < 1e-9);
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
        assert_eq!(s.stop, flopcal_bench::harness::StopReason::Converged);
    }

    fn fake_file(benchmarks: Vec<Benchmark>) -> ResultFile {
        ResultFile {
            header: flopcal_bench::results::FileHeader {
                run_id: "test".into(),
                created_at: "2025-01-01T00:00:00Z".into(),
                ..flopcal_bench::results::FileHeader::new(None, &chrono::Utc::now())
            },
            host: flopcal_bench::fingerprint::collect(&candle_core::Device::Cpu, 1),
            harness: flopcal_bench::harness::HarnessConfig::quick(),
            profile: flopcal_bench::results::ProfileConfig {
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
            round_readings_note: None,
            benchmarks,
        }
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = preset("huge").unwrap_err().to_string();
        assert!(e.contains("tiny") && e.contains("base-short"), "{e}");
    }
}
