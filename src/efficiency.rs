//! Kernel efficiency of a model measured by a profile.
//!
//! `kernel_efficiency = achieved / peak`, where *achieved* is the FLOP/s of the model's
//! own GEMM suite weighted by each kernel's share of the model's training FLOPs, and
//! *peak* is the machine's measured FMA ceiling (the profile's `peak` section) or, for
//! catalog hardware, its spec peak.
//!
//! The weights come from the per-op accounting of `flopcal-model` summed over the
//! plan's phases: each linear layer (QKV, attention output, FFN in and out, vocabulary)
//! runs forward `X·W`, grad-input `dY·Wᵀ` and grad-weight `Xᵀ·dY`, one forward's FLOPs
//! each (recomputation adds its extra forward to the forward layout; the FFN's FLOPs
//! split evenly between its two matmuls); the attention products `Q·Kᵀ` and `P·V` run
//! one forward and two backward products each. Each kernel `i` with FLOPs `Fᵢ` at a
//! measured rate `rᵢ` takes `Fᵢ / rᵢ`, so the suite's rate is the time-weighted harmonic
//! mean `ΣFᵢ / Σ(Fᵢ / rᵢ)`.
//!
//! Not counted: layernorm, softmax, GELU and other memory-bound ops. They carry no
//! model FLOPs; their time is part of what the *system* efficiency (fitted from
//! published runs) covers. For a causal model the measured `Q·Kᵀ`/`P·V` matmuls compute
//! the full `s×s` product while the model accounting credits half, so they are credited
//! at half their executed rate.

use std::collections::BTreeMap;

use flopcal_model::flops::{self, FlopOptions, OpFlops, Phase};
use flopcal_model::gemm_rate::{Gemm, MeasuredTable};
use flopcal_model::op_rate::{MemOp, OpPoint, OpTable};
use flopcal_model::ModelConfig;
use serde::Serialize;

use flopcal_bench::results::{Benchmark, ResultFile, Status};
use flopcal_bench::suite::{self, Group, SuiteSpec};

/// What to weigh the profile's kernels by.
#[derive(Debug, Clone)]
pub struct KernelWeights<'a> {
    /// The model to be trained (its kernels must be in the profile).
    pub config: &'a ModelConfig,
    /// The training schedule (weights are summed over its phases).
    pub phases: &'a [Phase],
    /// Recomputation and vocabulary options of the FLOP count.
    pub options: FlopOptions,
    /// Data type of the kernels to use (default: the profile's first).
    pub dtype: Option<&'a str>,
    /// The peak to divide by, FLOP/s; `None`: the profile's measured FMA peak.
    pub peak_flops: Option<(f64, String)>,
}

/// One kernel's part in the estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelShare {
    /// Benchmark id in the profile.
    pub id: String,
    /// Role in the model (`qkv.fwd`, `scores.dgrad_q`, ...).
    pub label: String,
    /// Share of the model's training FLOPs, 0–1.
    pub flop_share: f64,
    /// Share of the predicted kernel time, 0–1.
    pub time_share: f64,
    /// Model FLOP/s credited to the kernel (executed rate, halved for causal attention).
    pub flops_per_s: f64,
    /// `flops_per_s / peak`.
    pub efficiency: f64,
}

/// The kernel efficiency a profile gives for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelEfficiency {
    /// `achieved / peak`, clamped to (0, 1].
    pub kernel_efficiency: f64,
    /// Suite FLOP/s: the FLOP-weighted harmonic mean of the kernels' rates.
    pub achieved_flops_per_s: f64,
    /// Peak the efficiency is relative to, FLOP/s.
    pub peak_flops_per_s: f64,
    /// Where the peak comes from.
    pub peak_source: String,
    /// Data type of the kernels used.
    pub dtype: String,
    /// The profile's run id.
    pub profile_run_id: String,
    /// When the profile was measured.
    pub profile_created_at: String,
    /// Device of the profile (`cpu`, `cuda:0`).
    pub device: String,
    /// Device (CPU or GPU) name of the profile.
    pub device_name: String,
    /// Model the profile was measured for.
    pub profile_model: String,
    /// Sequence length of the profile.
    pub profile_seq: usize,
    /// Batch of the profile.
    pub profile_batch: usize,
    /// Kernels, most time first.
    pub kernels: Vec<KernelShare>,
    /// Caveats (shape mismatch, clamping, causal crediting).
    pub notes: Vec<String>,
}

impl KernelEfficiency {
    /// One line naming the kernels that dominate time and the efficiency each reached.
    pub fn dominant(&self, n: usize) -> String {
        self.kernels
            .iter()
            .take(n)
            .map(|k| {
                format!(
                    "{} {:.0}% of time at {:.0}% of peak",
                    k.label,
                    k.time_share * 100.0,
                    k.efficiency * 100.0
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a profile cannot give a kernel efficiency.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EfficiencyError {
    /// Kernels the model needs are not in the profile (or were not measured).
    #[error("profile lacks {} kernel(s) the model needs: {}", ids.len(), ids.join(", "))]
    Missing {
        /// Expected benchmark ids.
        ids: Vec<String>,
    },
    /// The profile has no measured peak for the dtype.
    #[error(
        "profile has no measured compute peak for {dtype} (it was run with --no-peak or --filter)"
    )]
    NoPeak {
        /// The dtype.
        dtype: String,
    },
    /// The dtype was not profiled.
    #[error("profile measured the model kernels in {have}, not {dtype}")]
    Dtype {
        /// Requested.
        dtype: String,
        /// Profiled, comma-separated.
        have: String,
    },
    /// Anything else (a bad config or schedule).
    #[error("{0}")]
    Invalid(String),
}

fn add_scaled(acc: &mut OpFlops, o: &OpFlops, k: f64) {
    acc.qkv += o.qkv * k;
    acc.attn_out += o.attn_out * k;
    acc.ffn += o.ffn * k;
    acc.scores += o.scores * k;
    acc.pv += o.pv * k;
    acc.vocab += o.vocab * k;
}

/// Training FLOPs of each suite kernel label over the schedule.
pub fn label_weights(
    config: &ModelConfig,
    phases: &[Phase],
    options: &FlopOptions,
) -> BTreeMap<&'static str, f64> {
    let (mut fwd, mut train) = (OpFlops::default(), OpFlops::default());
    for p in phases {
        let t = p.tokens();
        add_scaled(
            &mut fwd,
            &flops::forward_per_token(config, p.seq, options.vocab_fraction),
            t,
        );
        add_scaled(
            &mut train,
            &flops::train_per_token(config, p.seq, options),
            t,
        );
    }
    let mut w = BTreeMap::new();
    let mut three = |names: [&'static str; 3], f: f64, tr: f64, share: f64| {
        w.insert(names[0], (tr - 2.0 * f).max(0.0) * share);
        w.insert(names[1], f * share);
        w.insert(names[2], f * share);
    };
    three(
        ["qkv.fwd", "qkv.dgrad", "qkv.wgrad"],
        fwd.qkv,
        train.qkv,
        1.0,
    );
    three(
        ["attn_out.fwd", "attn_out.dgrad", "attn_out.wgrad"],
        fwd.attn_out,
        train.attn_out,
        1.0,
    );
    three(
        ["ffn_in.fwd", "ffn_in.dgrad", "ffn_in.wgrad"],
        fwd.ffn,
        train.ffn,
        0.5,
    );
    three(
        ["ffn_out.fwd", "ffn_out.dgrad", "ffn_out.wgrad"],
        fwd.ffn,
        train.ffn,
        0.5,
    );
    three(
        ["vocab.fwd", "vocab.dgrad", "vocab.wgrad"],
        fwd.vocab,
        train.vocab,
        1.0,
    );
    three(
        ["scores.fwd", "scores.dgrad_q", "scores.dgrad_k"],
        fwd.scores,
        train.scores,
        1.0,
    );
    three(
        ["pv.fwd", "pv.dgrad_p", "pv.dgrad_v"],
        fwd.pv,
        train.pv,
        1.0,
    );
    w
}

/// The benchmark ids of the model's GEMM suite at the profile's shape, by label.
fn expected_ids(
    config: &ModelConfig,
    seq: usize,
    batch: usize,
    dtype: &str,
) -> Result<BTreeMap<String, String>, EfficiencyError> {
    let dt =
        flopcal_kernels::parse_dtype(dtype).map_err(|e| EfficiencyError::Invalid(e.to_string()))?;
    let spec = SuiteSpec {
        model: config.clone(),
        seq,
        batch,
        dtypes: vec![dt],
        squares: vec![],
        stream_elements: 0,
    };
    let suite = suite::derive(&spec).map_err(|e| EfficiencyError::Invalid(e.to_string()))?;
    Ok(suite
        .iter()
        .filter(|e| e.group == Group::Model)
        .map(|e| (e.kernel.label(), e.kernel.id()))
        .collect())
}

fn normalise(dtype: &str) -> String {
    flopcal_kernels::parse_dtype(dtype)
        .map(|d| d.as_str().to_string())
        .unwrap_or_else(|_| dtype.trim().to_ascii_lowercase())
}

/// Kernel efficiency of `req.config` from the measurements in `file`.
pub fn from_profile(
    file: &ResultFile,
    req: &KernelWeights<'_>,
) -> Result<KernelEfficiency, EfficiencyError> {
    let have: Vec<String> = file.profile.dtypes.iter().map(|d| normalise(d)).collect();
    let dtype = match req.dtype {
        Some(d) => normalise(d),
        None => have.first().cloned().unwrap_or_else(|| "f32".into()),
    };
    if !have.contains(&dtype) {
        return Err(EfficiencyError::Dtype {
            dtype,
            have: have.join(", "),
        });
    }
    req.config
        .validate()
        .map_err(|e| EfficiencyError::Invalid(e.to_string()))?;
    if req.phases.is_empty() {
        return Err(EfficiencyError::Invalid(
            "a training schedule is needed to weigh the kernels".into(),
        ));
    }
    let weights = label_weights(req.config, req.phases, &req.options);
    let ids = expected_ids(req.config, file.profile.seq, file.profile.batch, &dtype)?;
    let (peak, peak_source) = match &req.peak_flops {
        Some((p, s)) => (*p, s.clone()),
        None => {
            let p = file
                .peak
                .as_ref()
                .and_then(|p| p.best_flops(&dtype))
                .filter(|p| p.is_finite() && *p > 0.0)
                .ok_or_else(|| EfficiencyError::NoPeak {
                    dtype: dtype.clone(),
                })?;
            (
                p,
                format!(
                    "measured FMA peak ({dtype}) of profile {} on {}",
                    file.header.run_id, file.host.device_name
                ),
            )
        }
    };
    if !(peak.is_finite() && peak > 0.0) {
        return Err(EfficiencyError::Invalid(format!(
            "peak must be a positive FLOP/s (got {peak})"
        )));
    }
    let mut missing = vec![];
    let mut found = vec![];
    let mut notes = vec![];
    let total: f64 = weights.values().sum();
    for (label, &w) in &weights {
        if w <= 0.0 {
            continue;
        }
        let Some(id) = ids.get(*label) else {
            return Err(EfficiencyError::Invalid(format!(
                "suite has no kernel labelled {label}"
            )));
        };
        let rate = file
            .benchmarks
            .iter()
            .find(|b| &b.id == id && b.status == Status::Ok)
            .and_then(|b| b.summary.as_ref())
            .map(|s| s.flops_per_s)
            .filter(|r| r.is_finite() && *r > 0.0);
        match rate {
            Some(r) => {
                let attention = label.starts_with("scores.") || label.starts_with("pv.");
                let credited = if attention && req.config.causal {
                    r * 0.5
                } else {
                    r
                };
                found.push((id.clone(), label.to_string(), w, credited));
            }
            None => missing.push(id.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(EfficiencyError::Missing { ids: missing });
    }
    let time: f64 = found.iter().map(|(_, _, w, r)| w / r).sum();
    let achieved = total / time;
    let mut kernels: Vec<KernelShare> = found
        .into_iter()
        .map(|(id, label, w, r)| KernelShare {
            id,
            label,
            flop_share: w / total,
            time_share: (w / r) / time,
            flops_per_s: r,
            efficiency: r / peak,
        })
        .collect();
    kernels.sort_by(|a, b| b.time_share.total_cmp(&a.time_share));
    let seqs: Vec<u64> = req.phases.iter().map(|p| p.seq).collect();
    if seqs.iter().any(|&s| s != file.profile.seq as u64) {
        let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
        notes.push(format!(
            "profile measured seq {} x batch {}; the plan trains at seq {}: kernel efficiency is shape-dependent, so this is an approximation",
            file.profile.seq,
            file.profile.batch,
            list.join(", ")
        ));
    }
    if req.config.causal {
        notes.push(
            "causal attention: the measured Q·Kᵀ and P·V compute the full s×s product; credited at half their executed rate".into(),
        );
    }
    if file.header.partial {
        notes.push("the profile was interrupted (partial)".into());
    }
    let mut eff = achieved / peak;
    if eff > 1.0 {
        notes.push(format!(
            "the suite ran at {:.0}% of the peak; clamped to 100% (the peak was probably measured under load: re-run `flopcal peak`)",
            eff * 100.0
        ));
        eff = 1.0;
    }
    notes.push(
        "layernorm, softmax, GELU and other memory-bound ops carry no model FLOPs and are not in the kernel efficiency (the step model prices them; the older whole-run fit leaves them to the system efficiency)".into(),
    );
    Ok(KernelEfficiency {
        kernel_efficiency: eff,
        achieved_flops_per_s: achieved,
        peak_flops_per_s: peak,
        peak_source,
        dtype,
        profile_run_id: file.header.run_id.clone(),
        profile_created_at: file.header.created_at.clone(),
        device: file.host.device.clone(),
        device_name: file.host.device_name.clone(),
        profile_model: file.profile.model.name.clone(),
        profile_seq: file.profile.seq,
        profile_batch: file.profile.batch,
        kernels,
        notes,
    })
}

/// The profile's measured GEMMs as a per-shape rate source for the step model (the
/// first of its sources): every `matmul` benchmark of `dtype` (default: the profile's
/// first) that ran, at its `(b, m, n, k)` shape and median FLOP/s. Where the profile
/// also timed the GEMM as a training step runs it (a `handover.<label>` kernel of
/// `flopcal validate --out`: after an element-wise op, its operands out of cache), that
/// time less the op's (`grad_accum.train` of the GEMM's first operand) is the GEMM's.
/// Attention and memory-bound kernels are not GEMM rates and are left out.
pub fn gemm_table(file: &ResultFile, dtype: Option<&str>) -> MeasuredTable {
    let want = dtype
        .map(normalise)
        .or_else(|| file.profile.dtypes.first().map(|d| normalise(d)));
    let ok = |b: &&Benchmark| {
        b.status == Status::Ok
            && b.summary.is_some()
            && want.as_deref().is_none_or(|d| normalise(&b.dtype) == d)
    };
    let median = |b: &Benchmark| b.summary.as_ref().map_or(0.0, |s| s.median_s);
    let dim = |b: &Benchmark, k: &str| b.shape.get(k).copied().filter(|v| *v > 0);
    let accum: Vec<(u64, f64)> = file
        .benchmarks
        .iter()
        .filter(ok)
        .filter(|b| b.label == "grad_accum.train")
        .filter_map(|b| Some((dim(b, "n")?, median(b))))
        .collect();
    let mut in_step: BTreeMap<(String, Vec<(String, u64)>), f64> = BTreeMap::new();
    for b in file
        .benchmarks
        .iter()
        .filter(ok)
        .filter(|b| b.kernel == "matmul")
    {
        let Some(plain) = b.label.strip_prefix("handover.") else {
            continue;
        };
        let first = dim(b, "b").unwrap_or(1) * dim(b, "m").unwrap_or(0) * dim(b, "k").unwrap_or(0);
        if let Some((_, a)) = accum.iter().find(|(n, _)| *n == first) {
            let shape = b.shape.iter().map(|(k, v)| (k.clone(), *v)).collect();
            in_step.insert((plain.to_string(), shape), median(b) - a);
        }
    }
    let mut handover = false;
    let points = file
        .benchmarks
        .iter()
        .filter(ok)
        .filter(|b| b.kernel == "matmul" && !b.label.starts_with("handover."))
        .filter_map(|b| {
            let g = Gemm {
                batch: dim(b, "b").or_else(|| dim(b, "batch")).unwrap_or(1),
                m: dim(b, "m")?,
                n: dim(b, "n")?,
                k: dim(b, "k")?,
            };
            let shape: Vec<(String, u64)> = b.shape.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let rate = match in_step.get(&(b.label.clone(), shape)) {
                Some(&t) if t > 0.0 => {
                    handover = true;
                    g.flops() / t
                }
                _ => b.summary.as_ref()?.flops_per_s,
            };
            (rate.is_finite() && rate > 0.0).then_some((g, rate))
        })
        .collect();
    MeasuredTable {
        points,
        source: format!(
            "flopcal profile {} of {} ({}){}",
            file.header.run_id,
            file.host.device_name,
            file.header.created_at,
            if handover {
                ", GEMMs as a training step runs them (hand-over kernels)"
            } else {
                ""
            }
        ),
    }
}

/// The step model's memory-bound op of a profile benchmark and its size: the
/// `*.train` kernels (forward and backward through autograd) of `flopcal validate
/// --out`, and the forward-only `layernorm`, `softmax` and `gelu` of the standard
/// suite (`forward = true`).
fn mem_op_of(b: &Benchmark) -> Option<(MemOp, u64, bool)> {
    let d = |k: &str| b.shape.get(k).copied().unwrap_or(0);
    let (name, forward) = match b.label.strip_suffix(".train") {
        Some(n) => (n.trim_end_matches(".causal"), false),
        None => (b.label.as_str(), true),
    };
    let rows_cols = d("rows") * d("cols");
    let (op, elements) = match (name, forward) {
        ("layernorm", _) => (MemOp::LayerNorm, rows_cols),
        ("gelu", _) => (MemOp::Activation, rows_cols),
        ("softmax", true) => (MemOp::Softmax, rows_cols),
        ("softmax", false) => (MemOp::Softmax, d("b") * d("s") * d("s")),
        ("residual", false) => (MemOp::Residual, rows_cols),
        ("xent", false) => (MemOp::Loss, rows_cols),
        ("heads", false) => (MemOp::Heads, 4 * d("b") * d("s") * d("h") * d("d")),
        ("embedding", false) => (MemOp::Embedding, d("b") * d("s") * d("h")),
        ("grad_accum", false) => (MemOp::GradAccum, d("n")),
        _ => return None,
    };
    (elements > 0).then_some((op, elements, forward))
}

/// Times the step model's forward-only memory-bound measurements are multiplied by
/// for forward + backward: the backward moves twice the forward's bytes, as in the
/// step model's physics (`flopcal_model::op_rate::MemOp::train_bytes`).
pub const FORWARD_TO_TRAIN: f64 = 3.0;

/// The profile's memory-bound ops as the step model's op times, median seconds each:
/// the `*.train` kernels as measured (forward + backward), and for an op without one
/// the standard suite's forward kernel × [`FORWARD_TO_TRAIN`].
pub fn op_table(file: &ResultFile, dtype: Option<&str>) -> OpTable {
    let want = dtype
        .map(normalise)
        .or_else(|| file.profile.dtypes.first().map(|d| normalise(d)));
    let found: Vec<(MemOp, u64, bool, f64)> = file
        .benchmarks
        .iter()
        .filter(|b| b.status == Status::Ok)
        .filter(|b| want.as_deref().is_none_or(|d| normalise(&b.dtype) == d))
        .filter_map(|b| {
            let (op, e, fwd) = mem_op_of(b)?;
            Some((op, e, fwd, b.summary.as_ref()?.median_s))
        })
        .collect();
    let trained: Vec<MemOp> = found.iter().filter(|f| !f.2).map(|f| f.0).collect();
    let mut forward_only = Vec::new();
    let points = found
        .iter()
        .filter(|f| !f.2 || !trained.contains(&f.0))
        .map(|&(op, elements, fwd, t)| {
            if fwd && !forward_only.contains(&op.name()) {
                forward_only.push(op.name());
            }
            OpPoint {
                op,
                elements,
                seconds: if fwd { t * FORWARD_TO_TRAIN } else { t },
            }
        })
        .collect();
    let mut source = format!(
        "flopcal profile {} of {}: median times",
        file.header.run_id, file.host.device_name
    );
    if !forward_only.is_empty() {
        source.push_str(&format!(
            "; {} measured forward only, the backward at twice its bytes (x{FORWARD_TO_TRAIN})",
            forward_only.join(", ")
        ));
    }
    OpTable { points, source }
}

/// The best memory bandwidth a profile measured, bytes/s: its STREAM kernels, else
/// any memory-bound kernel; `None` without either.
pub fn measured_bandwidth(file: &ResultFile) -> Option<f64> {
    let best = |stream: bool| {
        file.benchmarks
            .iter()
            .filter(|b| b.status == Status::Ok && b.kernel != "matmul" && b.bytes_per_iter > 0)
            .filter(|b| !stream || b.kernel == "bandwidth" && b.group == "stream")
            .filter_map(|b| {
                b.summary
                    .as_ref()
                    .map(|s| b.bytes_per_iter as f64 / s.median_s)
            })
            .filter(|r| r.is_finite() && *r > 0.0)
            .fold(0.0, f64::max)
    };
    [best(true), best(false)].into_iter().find(|r| *r > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flopcal_bench::harness::HarnessConfig;
    use flopcal_bench::results::Benchmark;

    fn tiny() -> ModelConfig {
        ModelConfig {
            name: "tiny".into(),
            layers: 2,
            hidden: 64,
            heads: 4,
            head_dim: 16,
            ffn: 256,
            vocab: 1000,
            seq: 32,
            causal: false,
            ..ModelConfig::default()
        }
    }

    fn phases(seq: u64) -> Vec<Phase> {
        vec![Phase {
            steps: 100,
            batch: 2,
            seq,
        }]
    }

    /// A synthetic result file for `cfg` at seq 32 × batch 2 whose GEMM kernels run at
    /// `rate(label)` FLOP/s, with a measured f32 peak of `peak`.
    fn file(cfg: &ModelConfig, peak: Option<f64>, rate: impl Fn(&str) -> f64) -> ResultFile {
        let peak_json = peak.map(|p| {
            serde_json::json!({
                "schema_version": 1, "cpu_model": "c", "arch": "x86_64", "physical_cores": 2,
                "threads": 2, "max_isa": "avx2", "cpu_features": [], "reported_clock_mhz": null,
                "duration_s": 0.1,
                "compute": [{"isa": "avx2", "dtype": "f32", "threads": 2, "pinned": false,
                    "flops_per_rep": 1, "samples_s": [1.0], "total_flops_per_s": p,
                    "per_core_flops_per_s": p / 2.0, "median_total_flops_per_s": p,
                    "flops_per_cycle_at_reported_clock": null, "verified": true}],
                "skipped": [], "bandwidth": [], "reference": null,
                "spec": {"status": "unknown", "flops_per_s": [], "note": ""}
            })
        });
        let json = serde_json::json!({
            "schema_version": 1, "run_id": "r1", "created_at": "2026-01-01T00:00:00Z",
            "tool": {"name": "flopcal", "version": "0", "git_commit": "x"},
            "partial": false,
            "host": {"cpu_model": "c", "arch": "x86_64", "physical_cores": 2, "logical_cpus": 2,
                     "isa_features": [], "memory_bytes": 1, "os": "l", "kernel": "k", "device": "cpu",
                     "device_name": "Test CPU", "threads": 2, "candle_version": "0.11.1", "build_features": []},
            "harness": HarnessConfig::quick(),
            "profile": {"model": cfg, "seq": 32, "batch": 2, "dtypes": ["f32"], "quick": true},
            "peak": peak_json,
            "benchmarks": []
        });
        let mut f: ResultFile = serde_json::from_value(json).unwrap();
        let ids = expected_ids(cfg, 32, 2, "f32").unwrap();
        for (label, id) in ids {
            let r = rate(&label);
            let summary = serde_json::json!({
                "median_s": 1e9 / r, "mad_s": 0.0, "mean_s": 1e9 / r, "min_s": 1e9 / r,
                "max_s": 1e9 / r, "ci95_low_s": 1e9 / r, "ci95_high_s": 1e9 / r,
                "flops_per_s": r, "flops_per_s_ci_low": r, "flops_per_s_ci_high": r,
                "bytes_per_s": 0.0, "n": 10, "outliers": 0, "rel_noise": 0.0, "stop": "converged"
            });
            let b = serde_json::json!({
                "id": id, "kernel": "matmul", "label": label, "group": "model", "dtype": "f32",
                "shape": {}, "flops_per_iter": 1_000_000_000u64, "model_flops_per_iter": 1_000_000_000u64,
                "bytes_per_iter": 1, "iters_per_sample": 1, "samples_s": [],
                "summary": summary, "verified": true, "verification": null, "status": "ok"
            });
            f.benchmarks
                .push(serde_json::from_value::<Benchmark>(b).unwrap());
        }
        f
    }

    fn req<'a>(cfg: &'a ModelConfig, ph: &'a [Phase]) -> KernelWeights<'a> {
        KernelWeights {
            config: cfg,
            phases: ph,
            options: FlopOptions::default(),
            dtype: None,
            peak_flops: None,
        }
    }

    #[test]
    fn a_profile_becomes_a_per_shape_gemm_rate_source() {
        let cfg = tiny();
        let mut f = file(&cfg, None, |label| {
            if label.starts_with("ffn") {
                80e9
            } else {
                20e9
            }
        });
        // Give each GEMM the shape its id names (`.../m64.n384.k128/f32`).
        for b in &mut f.benchmarks {
            let dims = b.id.split('/').nth(2).unwrap_or("").to_string();
            for part in dims.split('.') {
                let (k, v) = part.split_at(1);
                if let Ok(v) = v.parse::<u64>() {
                    b.shape.insert(k.to_string(), v);
                }
            }
        }
        let t = gemm_table(&f, None);
        assert!(!t.points.is_empty());
        let ffn = f
            .benchmarks
            .iter()
            .find(|b| b.label.starts_with("ffn_in.fwd"))
            .unwrap();
        let g = Gemm {
            batch: 1,
            m: ffn.shape["m"],
            n: ffn.shape["n"],
            k: ffn.shape["k"],
        };
        assert_eq!(t.flops_per_s(&g), Some(80e9));
        assert!(gemm_table(&f, Some("bf16")).points.is_empty());
    }

    #[test]
    fn uniform_rates_give_rate_over_peak() {
        let cfg = tiny();
        let ph = phases(32);
        let f = file(&cfg, Some(100e9), |_| 50e9);
        let k = from_profile(&f, &req(&cfg, &ph)).unwrap();
        assert!((k.kernel_efficiency - 0.5).abs() < 1e-12);
        assert!((k.achieved_flops_per_s - 50e9).abs() < 1.0);
        let shares: f64 = k.kernels.iter().map(|s| s.time_share).sum();
        assert!((shares - 1.0).abs() < 1e-12);
        assert!(k.notes.iter().all(|n| !n.contains("shape-dependent")));
    }

    #[test]
    fn weighting_is_the_flop_weighted_harmonic_mean() {
        let cfg = tiny();
        let ph = phases(32);
        // FFN kernels at 20 GFLOP/s, everything else at 80.
        let rate = |l: &str| if l.starts_with("ffn") { 20e9 } else { 80e9 };
        let f = file(&cfg, Some(100e9), rate);
        let k = from_profile(&f, &req(&cfg, &ph)).unwrap();
        let w = label_weights(&cfg, &ph, &FlopOptions::default());
        let total: f64 = w.values().sum();
        let time: f64 = w.iter().map(|(l, x)| x / rate(l)).sum();
        assert!((k.achieved_flops_per_s - total / time).abs() / (total / time) < 1e-12);
        // Slow kernels dominate time: the FFN comes first.
        assert!(k.kernels[0].label.starts_with("ffn"), "{:?}", k.kernels[0]);
        assert!(k.dominant(2).contains("of peak"));
        let arith = 0.5 * (20e9 + 80e9);
        assert!(k.achieved_flops_per_s < arith);
    }

    #[test]
    fn weights_sum_to_the_models_training_flops() {
        let cfg = tiny();
        let ph = vec![
            Phase {
                steps: 9,
                batch: 4,
                seq: 16,
            },
            Phase {
                steps: 1,
                batch: 4,
                seq: 32,
            },
        ];
        for opts in [
            FlopOptions::default(),
            FlopOptions {
                recompute: flopcal_model::Recompute::Full,
                vocab_fraction: 0.15,
            },
        ] {
            let w = label_weights(&cfg, &ph, &opts);
            let want = flops::train_flops(&cfg, &ph, &opts).unwrap().train_flops;
            let got: f64 = w.values().sum();
            assert!((got - want).abs() / want < 1e-12, "{got} vs {want}");
            assert_eq!(w.len(), 21);
        }
    }

    #[test]
    fn missing_kernels_are_named_by_id() {
        let cfg = tiny();
        let ph = phases(32);
        let mut f = file(&cfg, Some(100e9), |_| 50e9);
        f.benchmarks.retain(|b| !b.label.starts_with("vocab"));
        match from_profile(&f, &req(&cfg, &ph)) {
            Err(EfficiencyError::Missing { ids }) => {
                assert_eq!(ids.len(), 3);
                assert!(
                    ids.iter().all(|i| i.starts_with("matmul/vocab.")),
                    "{ids:?}"
                );
            }
            other => panic!("expected Missing, got {other:?}"),
        }
    }

    #[test]
    fn a_profile_of_another_architecture_lacks_every_kernel() {
        let cfg = tiny();
        let ph = phases(32);
        let f = file(&cfg, Some(100e9), |_| 50e9);
        let wider = ModelConfig {
            hidden: 128,
            ffn: 512,
            head_dim: 32,
            ..tiny()
        };
        let e = from_profile(&f, &req(&wider, &ph)).unwrap_err();
        assert!(
            matches!(e, EfficiencyError::Missing { ref ids } if ids.len() == 21),
            "{e}"
        );
    }

    #[test]
    fn no_peak_no_dtype_and_other_shapes() {
        let cfg = tiny();
        let ph = phases(32);
        let f = file(&cfg, None, |_| 50e9);
        assert!(matches!(
            from_profile(&f, &req(&cfg, &ph)),
            Err(EfficiencyError::NoPeak { .. })
        ));
        // An explicit peak (catalog hardware) needs no measured one.
        let k = from_profile(
            &f,
            &KernelWeights {
                peak_flops: Some((200e9, "spec".into())),
                ..req(&cfg, &ph)
            },
        )
        .unwrap();
        assert!((k.kernel_efficiency - 0.25).abs() < 1e-12);
        let e = from_profile(
            &f,
            &KernelWeights {
                dtype: Some("bf16"),
                ..req(&cfg, &ph)
            },
        )
        .unwrap_err();
        assert!(matches!(e, EfficiencyError::Dtype { .. }), "{e}");
        // Another sequence length is allowed, with a note.
        let f = file(&cfg, Some(100e9), |_| 50e9);
        let ph128 = phases(128);
        let k = from_profile(&f, &req(&cfg, &ph128)).unwrap();
        assert!(k.notes.iter().any(|n| n.contains("shape-dependent")));
    }

    #[test]
    fn faster_than_peak_is_clamped_and_causal_attention_is_credited_half() {
        let cfg = tiny();
        let ph = phases(32);
        let f = file(&cfg, Some(10e9), |_| 50e9);
        let k = from_profile(&f, &req(&cfg, &ph)).unwrap();
        assert_eq!(k.kernel_efficiency, 1.0);
        assert!(k.notes.iter().any(|n| n.contains("clamped")));

        let causal = ModelConfig {
            causal: true,
            ..tiny()
        };
        let f = file(&causal, Some(100e9), |_| 50e9);
        let k = from_profile(&f, &req(&causal, &ph)).unwrap();
        let s = k.kernels.iter().find(|s| s.label == "scores.fwd").unwrap();
        assert!((s.flops_per_s - 25e9).abs() < 1.0);
        assert!(k.kernel_efficiency < 0.5);
    }
}
