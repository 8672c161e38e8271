//! Per-device time of one optimizer step (the performance model).
//!
//! For a model config, a [`System`], a [`Layout`] and a batch, the step is what the
//! busiest device does:
//!
//! - **compute**: every weight GEMM of a block from [`flops::block_matmuls`] at its
//!   per-device shape after the tensor (and expert) split, forward `X·W` and both
//!   backward layouts (`dY·Wᵀ`, `Xᵀ·dY`), each at the rate its shape gets from the
//!   [`RateSource`]; the attention core as batched GEMMs (materialised: the full
//!   `s×s` products, the backward's four at their own shapes; flash: causal blocks
//!   skipped and 2.5 forwards in the backward, Dao 2023); the memory-bound ops
//!   ([`MemOp`]) measured by a profile where one is given ([`OpTable`], forward and
//!   backward as the framework runs them), else as bytes ÷ achievable HBM bandwidth:
//!   per token and layer 22·h bytes forward for two norms and two dropout+residual
//!   passes (split by `t` with sequence parallelism), 4·f (MLP) or 6·f (gated) for
//!   the activation, and 9 bytes per score for softmax and dropout when scores are
//!   materialised; the backward moves twice the forward's bytes. The head split and
//!   merge, the embedding and autograd's accumulation of every GEMM operand's
//!   gradient cost only what a profile measured (a tuned GPU framework fuses them).
//!   Recomputation adds a forward of the blocks (full) or of the attention core
//!   (selective). The last stage adds the vocabulary projection, the loss (`20·V/t`
//!   bytes per token), the final layernorm and the embedding.
//! - **tensor parallel**: per layer, forward and backward, one all-reduce (or
//!   reduce-scatter + all-gather with sequence parallelism, the same bytes) of the
//!   micro-batch's `b·s·h` activations after attention and one after the FFN (one
//!   in all for a parallel block); full recomputation repeats the forward's. A stack
//!   that overlaps them ([`Efficiency::tp_overlap`], sequence parallelism only) splits
//!   each into `t` chunks pipelined with the weight GEMMs: one chunk stays exposed,
//!   and what the GEMMs cannot cover.
//! - **expert parallel**: per MoE layer a dispatch and a combine all-to-all forward and
//!   backward of `b·s·h·top_k`.
//! - **pipeline**: per micro-batch `2·v` sends of `b·s·h/t` (Megatron's scatter/gather)
//!   between stages, and the bubble `(p−1)/v` micro-batch times (interleaved 1F1B).
//! - **data parallel**: the gradient reduction of the device's parameters (all-reduce,
//!   or reduce-scatter + all-gather when sharded, the same bytes) overlapped with the
//!   last micro-batch's backward; ZeRO-3 also all-gathers the weights twice per
//!   micro-batch, overlapped with compute.
//! - **optimizer**: Adam reads and writes 28 bytes per local parameter at HBM speed.
//!
//! Groups are laid out tensor-fastest, then data, then pipeline, so a tensor group
//! spans `t` devices, a data group `t·d` and a stage boundary `t·d + 1`; each
//! collective runs on the innermost link tier that holds its span.

use serde::Serialize;

use crate::comm::{self, RingCollective};
use crate::config::{FfnKind, ModelConfig};
use crate::error::ModelError;
use crate::flops::{self, FlopOptions, Recompute, TpSplit};
use crate::gemm_rate::{Gemm, RateSource, ShapeModel};
use crate::layout::{Attention, Layout, Zero};
use crate::memory::{self, Memory, ParamSplit};
use crate::network::MeasuredLinks;
use crate::op_rate::{MemOp, OpTable};
use crate::system::System;

/// Bytes per activation element on the wire and in memory-bound passes (bf16).
const ACT_BYTES: f64 = 2.0;
/// Adam's traffic per parameter: read fp32 master, momentum, variance and the bf16
/// gradient, write the three fp32 states and the bf16 weight.
const ADAM_BYTES: f64 = 28.0;

/// Calibration parameters of the physics that are not GEMM rates (see
/// [`crate::calibrate`]): what fraction of nominal link and memory bandwidth a
/// framework reaches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Efficiency {
    /// Achieved fraction of a link tier's nominal bandwidth.
    pub link: f64,
    /// Achieved fraction of HBM bandwidth by memory-bound ops.
    pub hbm: f64,
    /// The software stack's factor on GEMM rates, in (0, 1]: what its kernels, launch
    /// gaps and overlap leave of the rate the rate source gives (fitted per stack and
    /// hardware generation, [`crate::fit`]; 1 for a measured step).
    pub gemm: f64,
    /// Whether the data-parallel gradient reduction overlaps the backward pass (a
    /// property of the software stack, [`crate::framework`]).
    pub dp_overlap: bool,
    /// Whether sequence-parallel tensor-parallel collectives overlap the weight GEMMs
    /// they feed (Transformer Engine's userbuffers; a property of the software stack on
    /// a hardware class, [`crate::framework`]).
    pub tp_overlap: bool,
    /// Whether the loss is the unfused vocabulary-parallel cross entropy on fp32 logits
    /// ([`crate::op_rate::UNFUSED_LOSS_BYTES`] per logit; a property of the software
    /// stack on a hardware class, [`crate::framework`]).
    pub unfused_loss: bool,
}

/// The batch of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// Sequences per step (global batch).
    pub global_batch: u64,
    /// Tokens per sequence.
    pub seq: u64,
}

/// Step time by part, seconds (the JSON `step_breakdown_s`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Breakdown {
    /// GEMMs and memory-bound ops, recomputation included.
    pub compute: f64,
    /// Exposed tensor-parallel communication.
    pub tp_comm: f64,
    /// Exposed context-parallel communication (the key/value ring beyond what
    /// attention hides).
    pub cp_comm: f64,
    /// Pipeline sends.
    pub pp_comm: f64,
    /// Exposed data-parallel communication.
    pub dp_comm: f64,
    /// Expert-parallel all-to-all.
    pub ep_comm: f64,
    /// Pipeline bubble.
    pub bubble: f64,
    /// Optimizer update.
    pub optimizer: f64,
}

impl Breakdown {
    /// Sum of the parts.
    pub fn total(&self) -> f64 {
        self.compute
            + self.tp_comm
            + self.cp_comm
            + self.pp_comm
            + self.dp_comm
            + self.ep_comm
            + self.bubble
            + self.optimizer
    }
}

/// Per micro-batch, per layer, on one device.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LayerCost {
    /// GEMM seconds, forward + backward + recomputation.
    pub gemm: f64,
    /// Memory-bound seconds, forward + backward + recomputation.
    pub memory_bound: f64,
    /// Backward seconds (the window data-parallel reduction can hide in).
    pub backward: f64,
    /// Tensor-parallel seconds.
    pub tp: f64,
    /// Context-parallel seconds: the key/value ring attention does not hide.
    pub cp: f64,
    /// Expert all-to-all seconds.
    pub ep: f64,
}

impl LayerCost {
    /// The average layer of a stage that recomputes `share` of its layers in full
    /// (costing `full` each) and keeps every activation of the rest (`kept`).
    pub fn mix(full: &LayerCost, kept: &LayerCost, share: f64) -> LayerCost {
        let mix = |x: f64, y: f64| share * x + (1.0 - share) * y;
        LayerCost {
            gemm: mix(full.gemm, kept.gemm),
            memory_bound: mix(full.memory_bound, kept.memory_bound),
            backward: mix(full.backward, kept.backward),
            tp: mix(full.tp, kept.tp),
            cp: mix(full.cp, kept.cp),
            ep: mix(full.ep, kept.ep),
        }
    }
}

/// One priced part of a layer or of the step's ends (see [`StepModel::layer_items`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Item {
    /// The GEMM (`qkv`, `ffn_in`, `vocab`, `scores`, ...) or memory-bound op
    /// (`layernorm`, `grad_accum`, ...).
    pub name: &'static str,
    /// `fwd`, `dgrad`, `wgrad` or `bwd` for a GEMM; `train` (forward and backward) for
    /// a memory-bound op.
    pub pass: &'static str,
    /// Seconds per micro-batch on one device.
    pub seconds: f64,
}

/// A sink for the `*_parts` walks that keeps each part as an [`Item`] in `out`.
fn item_sink(out: &mut Vec<Item>) -> impl FnMut(&'static str, &'static str, f64) + '_ {
    move |name, pass, seconds| {
        out.push(Item {
            name,
            pass,
            seconds,
        })
    }
}

/// The prediction for one layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The layout.
    pub layout: Layout,
    /// Seconds per optimizer step.
    pub step_time_s: f64,
    /// By part.
    pub step_breakdown_s: Breakdown,
    /// Tokens per second, whole run.
    pub tokens_per_s: f64,
    /// Model FLOPs per step (flopcal's accounting, no recomputation).
    pub model_flops_per_step: f64,
    /// Hardware FLOPs per step (with recomputation).
    pub hardware_flops_per_step: f64,
    /// Model FLOPs utilisation.
    pub mfu: f64,
    /// Hardware FLOPs utilisation.
    pub hfu: f64,
    /// Memory per device, bytes (the JSON `memory_per_device_bytes`).
    pub memory_per_device_bytes: Memory,
    /// Whether it fits in the device's memory.
    pub fits: bool,
    /// The largest part of the step.
    pub bottleneck: String,
    /// Other layouts with the same prediction (step time, breakdown and memory), which
    /// a search folded into this one (e.g. selective recomputation with a flash
    /// kernel, which recomputes nothing more than no recomputation does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub equivalent_layouts: Vec<Layout>,
}

/// Everything the step model reads besides the layout.
#[derive(Debug, Clone)]
pub struct StepModel<'a> {
    /// The architecture.
    pub cfg: &'a ModelConfig,
    /// The chips and their network.
    pub system: &'a System,
    /// GEMM rates.
    pub rates: &'a RateSource,
    /// The shape model, for shapes the rate source cannot answer.
    pub shape: &'a ShapeModel,
    /// Link and memory efficiencies.
    pub eff: Efficiency,
    /// Measured memory-bound ops (a profile's); `None`: every op at its bytes.
    pub ops: Option<&'a OpTable>,
    /// A measured network replacing one link tier's catalog figures
    /// ([`StepModel::with_network`]); `None`: the catalog's.
    pub network: Option<&'a MeasuredLinks>,
    params: ParamSplit,
    seq: u64,
    /// Training FLOPs per token at `seq`: no recomputation, selective, full.
    per_token: [f64; 3],
}

fn per_token_flops(cfg: &ModelConfig, seq: u64) -> [f64; 3] {
    [Recompute::None, Recompute::Selective, Recompute::Full].map(|recompute| {
        flops::train_per_token(
            cfg,
            seq,
            &FlopOptions {
                recompute,
                ..FlopOptions::default()
            },
        )
        .total()
    })
}

impl<'a> StepModel<'a> {
    /// A step model of `cfg` on `system` for sequences of `seq` tokens.
    pub fn new(
        cfg: &'a ModelConfig,
        system: &'a System,
        rates: &'a RateSource,
        shape: &'a ShapeModel,
        eff: Efficiency,
        seq: u64,
    ) -> StepModel<'a> {
        StepModel {
            cfg,
            system,
            rates,
            shape,
            eff,
            ops: None,
            network: None,
            params: ParamSplit::of(cfg),
            seq,
            per_token: per_token_flops(cfg, seq),
        }
    }

    /// The same model with memory-bound ops priced by `ops` where it measured them.
    pub fn with_ops(mut self, ops: &'a OpTable) -> StepModel<'a> {
        self.ops = Some(ops);
        self
    }

    /// Time the tier `network` replaces from its measurement.
    pub fn with_network(mut self, network: Option<&'a MeasuredLinks>) -> StepModel<'a> {
        self.network = network;
        self
    }

    /// Parameters on one device of `layout`.
    pub fn params_per_device(&self, layout: &Layout) -> f64 {
        self.params.per_device(layout)
    }

    /// Memory per device of `layout` with `micro_batches` per step.
    pub fn memory(&self, layout: &Layout, micro_batches: u64) -> Memory {
        memory::per_device(
            self.cfg,
            layout,
            self.seq,
            micro_batches,
            self.params.per_device(layout),
        )
    }

    fn gemm(&self, g: Gemm) -> f64 {
        self.rates.seconds(&g, self.shape) / self.eff.gemm
    }

    /// The attention core's products: at their own (16-bit) rate where the weight
    /// GEMMs run in FP8, else as any GEMM.
    fn attention_gemm(&self, g: Gemm) -> f64 {
        match self.system.attention_flops {
            Some((peak, ceiling)) => {
                let shape = ShapeModel {
                    peak_flops: peak,
                    efficiency: (ceiling / peak).min(1.0),
                    elem_bytes: 2.0,
                    ..self.shape.clone()
                };
                shape.seconds(&g) / self.eff.gemm
            }
            None => self.gemm(g),
        }
    }

    /// Forward, data-gradient and weight-gradient seconds of `[m×k]·[k×n]`, `batch`
    /// times.
    fn train_gemm(&self, batch: u64, m: u64, k: u64, n: u64) -> (f64, f64, f64) {
        let fwd = self.gemm(Gemm { batch, m, n, k });
        let dgrad = self.gemm(Gemm {
            batch,
            m,
            n: k,
            k: n,
        });
        let wgrad = self.gemm(Gemm {
            batch,
            m: k,
            n,
            k: m,
        });
        (fwd, dgrad, wgrad)
    }

    /// [`StepModel::train_gemm`] at the 16-bit rate where the weight GEMMs run in FP8:
    /// the vocabulary projection, which Megatron-Core builds as its own
    /// `tensor_parallel.ColumnParallelLinear` (a plain matmul, outside Transformer
    /// Engine's FP8 modules; `megatron/core/models/gpt/gpt_model.py`), so FP8 training
    /// leaves it in BF16.
    fn sixteen_bit_train_gemm(&self, batch: u64, m: u64, k: u64, n: u64) -> (f64, f64, f64) {
        if !self.system.fp8_gemms() {
            return self.train_gemm(batch, m, k, n);
        }
        (
            self.attention_gemm(Gemm { batch, m, n, k }),
            self.attention_gemm(Gemm {
                batch,
                m,
                n: k,
                k: n,
            }),
            self.attention_gemm(Gemm {
                batch,
                m: k,
                n,
                k: m,
            }),
        )
    }

    /// Seconds of the FP8 casts around one weight GEMM of `m` rows, `k` in and `n` out,
    /// forward and backward; zero unless the GEMMs run in FP8. Transformer Engine casts
    /// the 16-bit input to FP8 and keeps a transposed FP8 copy for the weight gradient
    /// (read 2, write 1 + 1 bytes per element), and the output gradient likewise, so
    /// 4 bytes per input and per output-gradient element at the achievable bandwidth
    /// (flopcal assumption: the byte count of an unfused cast-transpose; weights are
    /// cast once per step and left out).
    fn fp8_cast(&self, m: f64, k: f64, n: f64) -> f64 {
        if !self.system.fp8_gemms() {
            return 0.0;
        }
        self.hbm(4.0 * m * (k + n))
    }

    fn hbm(&self, bytes: f64) -> f64 {
        bytes / (self.system.hbm_bw * self.eff.hbm)
    }

    /// Cost of one layer for one micro-batch on one device.
    /// With only some layers recomputed ([`Layout::recompute_layers`]) it is the
    /// average layer of the device's stage: the recomputed share at the full-recompute
    /// cost, the rest at the cost of keeping every activation.
    pub fn layer_cost(&self, layout: &Layout, seq: u64) -> LayerCost {
        if layout.recompute != Recompute::Full || layout.recompute_layers.is_none() {
            return self.layer_parts(layout, seq, &mut |_, _, _| {});
        }
        LayerCost::mix(
            &self.layer_parts(&layout.recomputing_all(), seq, &mut |_, _, _| {}),
            &self.layer_parts(&layout.keeping_all(), seq, &mut |_, _, _| {}),
            layout.full_recompute_share(self.cfg.layers),
        )
    }

    /// The parts of one layer for one micro-batch on one device, each as
    /// `(name, pass, seconds)`: the GEMMs by pass (`fwd`, `dgrad`, `wgrad`; the
    /// attention products `scores` and `pv` by `fwd` and `bwd`) and the memory-bound ops
    /// (pass `train`, forward and backward). Recomputation and communication are not
    /// listed; [`StepModel::layer_cost`] has them.
    pub fn layer_items(&self, layout: &Layout, seq: u64) -> Vec<Item> {
        let mut out = Vec::new();
        self.layer_parts(layout, seq, &mut item_sink(&mut out));
        out
    }

    /// Forward + backward seconds of `count` instances of `op` of `elements` each:
    /// measured when the op table has it, else its bytes at the achievable bandwidth.
    fn mem_op(&self, op: MemOp, elements: f64, count: f64) -> f64 {
        let measured = self
            .ops
            .and_then(|t| t.seconds(op, elements.round().max(1.0) as u64));
        count
            * match measured {
                Some(s) => s,
                None => self.hbm(op.train_bytes(self.cfg.ffn_kind != FfnKind::Mlp) * elements),
            }
    }

    fn layer_parts<F: FnMut(&'static str, &'static str, f64)>(
        &self,
        layout: &Layout,
        seq: u64,
        sink: &mut F,
    ) -> LayerCost {
        let cfg = self.cfg;
        let t = u64::from(layout.tp);
        let c = u64::from(layout.cp.max(1));
        let local = layout.local_seq(seq);
        let tokens = u64::from(layout.microbatch) * local;
        let (h, f) = (cfg.hidden as f64, cfg.ffn as f64);
        let sp = layout.sequence_parallel && layout.tp > 1;
        let tf = t as f64;

        // Weight GEMMs, autograd's accumulation of each operand's gradient, and the
        // FP8 casts around them.
        let (mut gemm_f, mut gemm_b, mut accum, mut cast) = (0.0, 0.0, 0.0, 0.0);
        for mm in flops::block_matmuls(cfg) {
            let (k, n) = match mm.split {
                TpSplit::Column => (mm.k, mm.n.div_ceil(t)),
                TpSplit::Row => (mm.k.div_ceil(t), mm.n),
                TpSplit::Replicated => (mm.k, mm.n),
            };
            let (batch, m) = if mm.expert {
                let e = cfg.experts();
                let ep = u64::from(layout.ep);
                let local = e.div_ceil(ep);
                let routed = (tokens as f64 * mm.per_token * ep as f64 / e as f64).ceil() as u64;
                (local, routed.max(1))
            } else {
                (1, (tokens as f64 * mm.per_token).ceil().max(1.0) as u64)
            };
            let (fw, dg, wg) = self.train_gemm(batch, m, k, n);
            sink(mm.name, "fwd", fw);
            sink(mm.name, "dgrad", dg);
            sink(mm.name, "wgrad", wg);
            gemm_f += fw;
            gemm_b += dg + wg;
            let b = batch as f64;
            accum += self.mem_op(MemOp::GradAccum, b * (m * k) as f64, 1.0)
                + self.mem_op(MemOp::GradAccum, b * (k * n) as f64, 1.0);
            cast += self.fp8_cast(b * m as f64, k as f64, n as f64);
        }
        sink("fp8_cast", "train", cast);

        // Attention core: per head, `Q·Kᵀ` (s×s×d) and `P·V` (s×d×s); materialised,
        // the backward runs `dP = dO·Vᵀ` at the first's shape and `dQ = dS·K`,
        // `dK = dSᵀ·Q`, `dV = Pᵀ·dO` at the second's.
        // With context parallelism a rank's `s/c` queries meet all `s` keys (causal
        // work balanced across the ring, as Megatron orders the chunks).
        let heads = cfg.heads.div_ceil(t) * u64::from(layout.microbatch);
        let d = cfg.head_dim;
        let s = seq;
        let causal = if cfg.causal { 0.5 } else { 1.0 };
        let qk = Gemm {
            batch: heads,
            m: local,
            n: s,
            k: d,
        };
        let pv = Gemm {
            batch: heads,
            m: local,
            n: d,
            k: s,
        };
        let (hd, ss) = ((heads * local * d) as f64, (heads * local * s) as f64);
        let (attn_f, attn_b) = match layout.attention {
            Attention::Materialized => {
                let (a, b) = (self.attention_gemm(qk), self.attention_gemm(pv));
                sink("scores", "fwd", a);
                sink("pv", "fwd", b);
                sink("scores", "bwd", 2.0 * b);
                sink("pv", "bwd", a + b);
                // dQ, dKᵀ and K (the transpose is a node of its own), dV; dP.
                accum +=
                    self.mem_op(MemOp::GradAccum, hd, 4.0) + self.mem_op(MemOp::GradAccum, ss, 1.0);
                (a + b, a + 3.0 * b)
            }
            Attention::Flash => {
                let f = causal * (self.attention_gemm(qk) + self.attention_gemm(pv));
                sink("flash", "fwd", f);
                sink("flash", "bwd", 2.5 * f);
                accum += self.mem_op(MemOp::GradAccum, hd, 3.0);
                (f, 2.5 * f)
            }
        };
        sink(MemOp::GradAccum.name(), "train", accum);

        // Memory-bound ops, forward and backward (their forward a third of it, as in
        // the physics).
        let tk = tokens as f64;
        let th = tk * h / if sp { tf } else { 1.0 };
        let experts = (cfg.top_k() + cfg.shared_experts()) as f64;
        let mut mem = accum + cast;
        let mut op = |o: MemOp, elements: f64, count: f64| {
            let x = self.mem_op(o, elements, count);
            sink(o.name(), "train", x);
            mem += x;
            x
        };
        op(MemOp::LayerNorm, th, 2.0);
        op(MemOp::Residual, th, 2.0);
        op(MemOp::Activation, tk * f * experts / tf, 1.0);
        op(MemOp::Heads, 4.0 * tk * cfg.attn_dim() as f64 / tf, 1.0);
        if cfg.is_moe() {
            op(MemOp::Permute, th * cfg.top_k() as f64, 1.0);
        }
        let softmax = match layout.attention {
            Attention::Materialized => op(MemOp::Softmax, ss, 1.0),
            Attention::Flash => 0.0,
        };
        let mem_f = mem / 3.0;
        let mem_b = mem - mem_f;

        // Recomputation.
        let (re_gemm, re_mem) = match layout.recompute {
            Recompute::None => (0.0, 0.0),
            Recompute::Full => (gemm_f + attn_f, mem_f),
            Recompute::Selective => match layout.attention {
                Attention::Materialized => (attn_f, softmax / 3.0),
                Attention::Flash => (0.0, 0.0),
            },
        };

        // Tensor parallel.
        let tp = if t > 1 {
            let tier = self.system.tier_for(t);
            let n = tk * h * ACT_BYTES;
            let per_pass = if cfg.parallel_block() { 1.0 } else { 2.0 };
            let passes = per_pass
                * if layout.recompute == Recompute::Full {
                    3.0
                } else {
                    2.0
                };
            let time = passes
                * comm::time_with(
                    RingCollective::AllReduce,
                    n,
                    t,
                    tier,
                    self.eff.link,
                    self.network,
                );
            if self.eff.tp_overlap && sp {
                // Each all-gather or reduce-scatter is split in `t` chunks pipelined
                // with the GEMM it feeds: one chunk stays exposed, and what the weight
                // GEMMs (recomputed forward included) cannot cover.
                let recomputed = if layout.recompute == Recompute::Full {
                    gemm_f
                } else {
                    0.0
                };
                (time - (gemm_f + gemm_b + recomputed)).max(time / tf)
            } else {
                time
            }
        } else {
            0.0
        };

        // Context parallel: `c - 1` ring steps pass each rank's keys and values on in
        // the forward, and keys, values and their gradients in the backward; each
        // step overlaps the attention of the chunk in hand.
        let cp = if c > 1 {
            let tier = self.system.tier_for(t * c);
            let kv = 2.0 * tokens as f64 * cfg.kv_dim() as f64 / tf * ACT_BYTES;
            let hop = |bytes: f64| {
                (c - 1) as f64
                    * comm::time_with(
                        RingCollective::SendRecv,
                        bytes,
                        2,
                        tier,
                        self.eff.link,
                        self.network,
                    )
            };
            let forwards = if layout.recompute == Recompute::Full {
                2.0
            } else {
                1.0
            };
            forwards * (hop(kv) - attn_f).max(0.0) + (hop(2.0 * kv) - attn_b).max(0.0)
        } else {
            0.0
        };

        // Expert parallel.
        let ep = if cfg.is_moe() && layout.ep > 1 {
            let k = u64::from(layout.ep);
            let n = tk * h * ACT_BYTES * cfg.top_k() as f64 / tf;
            let passes = if layout.recompute == Recompute::Full {
                6.0
            } else {
                4.0
            };
            passes
                * comm::group_time_with(
                    RingCollective::AllToAll,
                    n,
                    k,
                    t,
                    self.system,
                    self.eff.link,
                    self.network,
                )
        } else {
            0.0
        };

        LayerCost {
            gemm: gemm_f + gemm_b + attn_f + attn_b + re_gemm,
            memory_bound: mem + re_mem,
            backward: gemm_b + attn_b + mem_b + re_gemm + re_mem,
            tp,
            cp,
            ep,
        }
    }

    /// Vocabulary projection and loss for one micro-batch on the last stage:
    /// `(gemm seconds, memory-bound seconds)`. The memory-bound part is the loss, the
    /// final layernorm, the embedding and the accumulation of the projection's operand
    /// gradients.
    pub fn vocab_cost(&self, layout: &Layout, seq: u64) -> (f64, f64) {
        let (gemm, mem) = self.vocab_parts(layout, seq, &mut |_, _, _| {});
        (gemm, mem)
    }

    /// The parts of [`StepModel::vocab_cost`], as [`StepModel::layer_items`] lists them.
    pub fn vocab_items(&self, layout: &Layout, seq: u64) -> Vec<Item> {
        let mut out = Vec::new();
        self.vocab_parts(layout, seq, &mut item_sink(&mut out));
        out
    }

    fn vocab_parts<F: FnMut(&'static str, &'static str, f64)>(
        &self,
        layout: &Layout,
        seq: u64,
        sink: &mut F,
    ) -> (f64, f64) {
        let vm = flops::vocab_matmul(self.cfg);
        let t = u64::from(layout.tp);
        let tokens = u64::from(layout.microbatch) * layout.local_seq(seq);
        let n = vm.n.div_ceil(t);
        let (fw, dg, wg) = self.sixteen_bit_train_gemm(1, tokens, vm.k, n);
        sink(vm.name, "fwd", fw);
        sink(vm.name, "dgrad", dg);
        sink(vm.name, "wgrad", wg);
        let (tk, h) = (tokens as f64, self.cfg.hidden as f64);
        let mut mem = 0.0;
        let mut op = |o: MemOp, elements: f64, count: f64| {
            let x = self.mem_op(o, elements, count);
            sink(o.name(), "train", x);
            mem += x;
        };
        let loss_passes = if self.eff.unfused_loss {
            crate::op_rate::UNFUSED_LOSS_BYTES / MemOp::Loss.train_bytes(false)
        } else {
            1.0
        };
        op(
            MemOp::Loss,
            tk * self.cfg.vocab as f64 / t as f64,
            loss_passes,
        );
        op(MemOp::LayerNorm, tk * h, 1.0);
        op(MemOp::Embedding, tk * h, 1.0);
        let accum = self.mem_op(MemOp::GradAccum, (tokens * vm.k) as f64, 1.0)
            + self.mem_op(MemOp::GradAccum, (vm.k * n) as f64, 1.0);
        sink(MemOp::GradAccum.name(), "train", accum);
        (fw + dg + wg, mem + accum)
    }

    /// Predict one step of `layout` with `batch`, given the per-layer cost (from
    /// [`StepModel::layer_cost`], which callers may cache: it depends only on the tensor
    /// degree, micro-batch, sequence parallelism, recomputation, attention and expert
    /// degree).
    pub fn predict_with(&self, layout: &Layout, batch: Batch, layer: &LayerCost) -> Prediction {
        let vocab = self.vocab_cost(layout, batch.seq);
        let m = layout.micro_batches(batch.global_batch).max(1);
        let mem = self.memory_at(layout, batch.seq, m);
        self.predict_parts(layout, batch, layer, vocab, mem)
    }

    /// Memory per device of `layout` at sequence length `seq` with `micro_batches`.
    pub fn memory_at(&self, layout: &Layout, seq: u64, micro_batches: u64) -> Memory {
        memory::per_device(
            self.cfg,
            layout,
            seq,
            micro_batches,
            self.params.per_device(layout),
        )
    }

    /// Seconds of one step of `layout` given its per-layer cost and its vocabulary
    /// cost (from [`StepModel::vocab_cost`], which depends only on the tensor degree and
    /// the micro-batch): the [`Prediction::step_time_s`] of
    /// [`StepModel::predict_parts`], without building the rest of the prediction.
    pub fn step_seconds(
        &self,
        layout: &Layout,
        batch: Batch,
        layer: &LayerCost,
        vocab: (f64, f64),
    ) -> f64 {
        self.breakdown(layout, batch, layer, vocab).total()
    }

    /// The step by part.
    fn breakdown(
        &self,
        layout: &Layout,
        batch: Batch,
        layer: &LayerCost,
        (vocab_gemm, vocab_mem): (f64, f64),
    ) -> Breakdown {
        let cfg = self.cfg;
        let sys = self.system;
        let (t, p) = (u64::from(layout.tp), u64::from(layout.pp));
        // Context-parallel ranks hold the same weights: gradients reduce, and ZeRO
        // shards, over the `dp · cp` replicas.
        let d = layout.replicas();
        let v = f64::from(layout.virtual_stages);
        let m = layout.micro_batches(batch.global_batch).max(1);
        let mf = m as f64;
        let per_stage = crate::layout::stage_layers(cfg.layers, layout.pp);

        let compute = mf * (per_stage * (layer.gemm + layer.memory_bound) + vocab_gemm + vocab_mem);
        let tp_comm = mf * per_stage * layer.tp;
        let cp_comm = mf * per_stage * layer.cp;
        let ep_comm = mf * per_stage * layer.ep;

        let tokens = f64::from(layout.microbatch) * layout.local_seq(batch.seq) as f64;
        let send = if p > 1 {
            let tier = sys.tier_for(t * d + 1);
            let n = tokens * cfg.hidden as f64 * ACT_BYTES / t as f64;
            2.0 * v
                * comm::time_with(
                    RingCollective::SendRecv,
                    n,
                    2,
                    tier,
                    self.eff.link,
                    self.network,
                )
        } else {
            0.0
        };
        let pp_comm = mf * send;
        let stage_mb =
            per_stage * (layer.gemm + layer.memory_bound + layer.tp + layer.cp + layer.ep) + send;
        let bubble = (p - 1) as f64 / v * stage_mb;

        let params = self.params.per_device(layout);
        let grads = params * memory::GRAD_BYTES;
        let reduce = comm::group_time_with(
            RingCollective::AllReduce,
            grads,
            d,
            t,
            sys,
            self.eff.link,
            self.network,
        );
        let window = if self.eff.dp_overlap {
            per_stage * layer.backward
        } else {
            0.0
        };
        let mut dp_comm = (reduce - window).max(0.0);
        if layout.zero == Zero::Full {
            let gather = comm::group_time_with(
                RingCollective::AllGather,
                params * memory::WEIGHT_BYTES,
                d,
                t,
                sys,
                self.eff.link,
                self.network,
            );
            dp_comm += (2.0 * mf * gather - compute).max(0.0);
        }
        let local = if layout.zero == Zero::None {
            params
        } else {
            params / d as f64
        };
        let optimizer = self.hbm(local * ADAM_BYTES);
        Breakdown {
            compute,
            tp_comm,
            cp_comm,
            pp_comm,
            dp_comm,
            ep_comm,
            bubble,
            optimizer,
        }
    }

    /// Predict one step of `layout` from its per-layer cost, its vocabulary cost and
    /// its memory per device (as [`StepModel::memory`] gives it for the layout's
    /// micro-batches): what [`StepModel::predict_with`] computes, for callers that
    /// cache the parts.
    pub fn predict_parts(
        &self,
        layout: &Layout,
        batch: Batch,
        layer: &LayerCost,
        vocab: (f64, f64),
        mem: Memory,
    ) -> Prediction {
        let cfg = self.cfg;
        let sys = self.system;
        let b = self.breakdown(layout, batch, layer, vocab);
        let mf = layout.micro_batches(batch.global_batch).max(1) as f64;
        let per_stage = crate::layout::stage_layers(cfg.layers, layout.pp);
        let step = b.total();
        let devices = layout.devices() as f64;
        let seq_tokens = batch.global_batch as f64 * batch.seq as f64;
        let per_token = if batch.seq == self.seq {
            self.per_token
        } else {
            per_token_flops(cfg, batch.seq)
        };
        let model = per_token[0] * seq_tokens;
        let kept = match layout.attention {
            Attention::Flash => per_token[1],
            Attention::Materialized => per_token[0],
        };
        let hardware = seq_tokens
            * match layout.recompute {
                Recompute::Full => {
                    let share = layout.full_recompute_share(cfg.layers);
                    share * per_token[2] + (1.0 - share) * kept
                }
                Recompute::Selective => per_token[1],
                Recompute::None => kept,
            };
        let gemm_total = mf * (per_stage * layer.gemm + vocab.0);
        let parts = [
            ("gemm compute", gemm_total),
            ("memory-bound ops", b.compute - gemm_total),
            ("tensor-parallel communication", b.tp_comm),
            ("context-parallel communication", b.cp_comm),
            ("pipeline sends", b.pp_comm),
            ("data-parallel communication", b.dp_comm),
            ("expert all-to-all", b.ep_comm),
            ("pipeline bubble", b.bubble),
            ("optimizer", b.optimizer),
        ];
        let bottleneck = parts
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|p| p.0.to_string())
            .unwrap_or_default();
        Prediction {
            layout: *layout,
            step_time_s: step,
            step_breakdown_s: b,
            tokens_per_s: seq_tokens / step,
            model_flops_per_step: model,
            hardware_flops_per_step: hardware,
            mfu: model / (devices * sys.peak_flops * step),
            hfu: hardware / (devices * sys.peak_flops * step),
            memory_per_device_bytes: mem,
            fits: mem.total <= usable_memory(sys),
            bottleneck,
            equivalent_layouts: vec![],
        }
    }

    /// Check `layout` for `devices` and `batch`, then predict its step.
    pub fn predict(
        &self,
        layout: &Layout,
        devices: u64,
        batch: Batch,
    ) -> Result<Prediction, ModelError> {
        self.system.check()?;
        layout.check(self.cfg, devices, batch.global_batch)?;
        let layer = self.layer_cost(layout, batch.seq);
        Ok(self.predict_with(layout, batch, &layer))
    }
}

/// Memory a layout may use: 95% of capacity (allocator fragmentation and framework
/// workspace; flopcal assumption).
pub fn usable_memory(sys: &System) -> f64 {
    0.95 * sys.memory_bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op_rate::OpPoint;
    use crate::system::Tier;

    fn cfg() -> ModelConfig {
        ModelConfig {
            name: "t".into(),
            layers: 2,
            hidden: 128,
            heads: 2,
            head_dim: 64,
            ffn: 512,
            vocab: 2048,
            seq: 64,
            causal: false,
            ..ModelConfig::default()
        }
    }

    fn system() -> System {
        System {
            name: "test".into(),
            peak_flops: 1e11,
            gemm_ceiling_flops: None,
            attention_flops: None,
            memory_bytes: 1e10,
            hbm_bw: 1e10,
            compute_units: None,
            tiers: vec![Tier {
                name: "one".into(),
                group_size: 0,
                bw: 1e9,
                latency_s: 0.0,
            }],
        }
    }

    /// The shape model of `sys` at its peak in f32, and no efficiency lost anywhere.
    fn ideal(sys: &System) -> (ShapeModel, Efficiency) {
        (
            ShapeModel {
                peak_flops: sys.peak_flops,
                hbm_bw: sys.hbm_bw,
                compute_units: None,
                elem_bytes: 4.0,
                efficiency: 1.0,
            },
            Efficiency {
                link: 1.0,
                hbm: 1.0,
                gemm: 1.0,
                dp_overlap: true,
                tp_overlap: false,
                unfused_loss: false,
            },
        )
    }

    /// Two pipeline stages, micro-batch 2, flash attention, with `recompute` of
    /// `recompute_layers` layers per device.
    fn at(recompute: Recompute, recompute_layers: Option<u32>) -> Layout {
        Layout {
            pp: 2,
            recompute,
            recompute_layers,
            attention: Attention::Flash,
            ..Layout::single(2)
        }
    }

    #[test]
    fn recomputing_k_of_a_stages_layers_costs_and_saves_k_shares_of_full_recompute() {
        let c = ModelConfig { layers: 8, ..cfg() };
        let sys = system();
        let (shape, eff) = ideal(&sys);
        let rates = RateSource::Shape(shape.clone());
        let model = StepModel::new(&c, &sys, &rates, &shape, eff, 64);
        // Two stages of four layers; one of each device's four recomputed.
        let (none, full, block) = (
            at(Recompute::None, None),
            at(Recompute::Full, None),
            at(Recompute::Full, Some(1)),
        );
        assert_eq!(block.full_recompute_share(c.layers), 0.25);
        let cost = |l: &Layout| model.layer_cost(l, 64);
        let (n, f, b) = (cost(&none), cost(&full), cost(&block));
        assert!(f.gemm > n.gemm);
        assert!((b.gemm - (0.25 * f.gemm + 0.75 * n.gemm)).abs() < 1e-15);
        assert!((b.memory_bound - (0.25 * f.memory_bound + 0.75 * n.memory_bound)).abs() < 1e-15);
        // Memory: one layer of four keeps only its input, plus the working layer that
        // any full recomputation needs.
        let act = |l: &Layout| memory::stage_layer_activations(&c, l, 64, 4);
        let one_layer = (act(&none) - act(&full) + memory::layer_activations(&c, &none, 64)) / 4.0;
        assert!(act(&block) < act(&none) && act(&block) > act(&full));
        let want = act(&none) - one_layer + memory::layer_activations(&c, &none, 64);
        assert!(
            (act(&block) - want).abs() < 1e-6 * want,
            "{} vs {want}",
            act(&block)
        );
        // Hardware FLOPs: a quarter of the extra forward.
        let batch = Batch {
            global_batch: 8,
            seq: 64,
        };
        let hfu = |l: &Layout| {
            model
                .predict_with(l, batch, &cost(l))
                .hardware_flops_per_step
        };
        let want = 0.25 * hfu(&full) + 0.75 * hfu(&none);
        assert!((hfu(&block) - want).abs() < 1e-9 * want);
        assert_eq!(block.recompute_text(), "block 1");
    }

    #[test]
    fn a_search_short_of_memory_recomputes_only_the_layers_it_must() {
        use crate::search::{search, Constraints};
        let c = ModelConfig { layers: 8, ..cfg() };
        let mut sys = system();
        let (shape, eff) = ideal(&sys);
        let rates = RateSource::Shape(shape.clone());
        let batch = Batch {
            global_batch: 8,
            seq: 64,
        };
        let fixed = Constraints {
            tp: Some(1),
            pp: Some(2),
            microbatch: Some(2),
            virtual_stages: Some(1),
            attention: Some(Attention::Flash),
            zero: Some(Zero::None),
            ..Constraints::default()
        };
        let need = |sys: &System, l: &Layout| {
            StepModel::new(&c, sys, &rates, &shape, eff, 64)
                .memory_at(l, 64, 4)
                .total
        };
        // Usable memory just under what keeping every activation needs, so selective
        // (no saving with flash attention) does not fit and full recomputation does.
        let none = need(&sys, &at(Recompute::None, None));
        sys.memory_bytes = (none - 1.0) / 0.95;
        let model = StepModel::new(&c, &sys, &rates, &shape, eff, 64);
        let found = search(&model, 2, batch, &fixed, 1).unwrap();
        let best = &found.plans[0];
        assert_eq!(best.layout.recompute, Recompute::Full);
        // The fewest layers that fit: one fewer does not.
        let k = best.layout.recompute_layers.expect("block recomputation");
        assert!((1..4).contains(&k), "{:?}", best.layout);
        assert!(need(&sys, &at(Recompute::Full, Some(k))) <= usable_memory(&sys));
        assert!(need(&sys, &at(Recompute::Full, Some(k - 1))) > usable_memory(&sys));
        let full = model.predict_with(
            &at(Recompute::Full, None),
            batch,
            &model.layer_cost(&at(Recompute::Full, None), 64),
        );
        assert!(best.step_time_s < full.step_time_s);
        // Told to recompute in full, it recomputes every layer.
        let told = Constraints {
            recompute: Some(Recompute::Full),
            ..fixed
        };
        let found = search(&model, 2, batch, &told, 1).unwrap();
        assert_eq!(found.plans[0].layout.recompute_layers, None);
    }

    #[test]
    fn under_fp8_the_vocabulary_projection_keeps_the_sixteen_bit_rate() {
        let c = cfg();
        let sixteen = system();
        // The same chip running its weight GEMMs in FP8 at twice the 16-bit peak.
        let fp8 = System {
            peak_flops: 2.0 * sixteen.peak_flops,
            attention_flops: Some((sixteen.peak_flops, sixteen.peak_flops)),
            ..system()
        };
        let shape_of = |sys: &System| ShapeModel {
            peak_flops: sys.peak_flops,
            hbm_bw: sys.hbm_bw,
            compute_units: None,
            elem_bytes: 2.0,
            efficiency: 1.0,
        };
        let (s16, s8) = (shape_of(&sixteen), shape_of(&fp8));
        let (r16, r8) = (
            RateSource::Shape(s16.clone()),
            RateSource::Shape(s8.clone()),
        );
        let (_, eff) = ideal(&sixteen);
        let m16 = StepModel::new(&c, &sixteen, &r16, &s16, eff, 64);
        let m8 = StepModel::new(&c, &fp8, &r8, &s8, eff, 64);
        let layout = Layout::single(4);
        let (v16, v8) = (m16.vocab_cost(&layout, 64), m8.vocab_cost(&layout, 64));
        assert!((v8.0 / v16.0 - 1.0).abs() < 1e-12, "{} vs {}", v8.0, v16.0);
        // The block's weight GEMMs do run faster.
        let gemms = |m: &StepModel<'_>| {
            m.layer_items(&layout, 64)
                .iter()
                .filter(|i| i.name == "qkv")
                .map(|i| i.seconds)
                .sum::<f64>()
        };
        assert!(gemms(&m8) < 0.6 * gemms(&m16));
    }

    #[test]
    fn a_measured_op_replaces_its_bytes_and_the_others_keep_theirs() {
        let (c, sys) = (cfg(), system());
        let (shape, eff) = ideal(&sys);
        let rates = RateSource::Shape(shape.clone());
        let layout = Layout::single(4);
        let th = 4.0 * 64.0 * 128.0;
        let table = OpTable {
            points: vec![OpPoint {
                op: MemOp::LayerNorm,
                elements: th as u64,
                seconds: 1e-3,
            }],
            source: "test".into(),
        };
        let plain = StepModel::new(&c, &sys, &rates, &shape, eff, 64);
        let measured = StepModel::new(&c, &sys, &rates, &shape, eff, 64).with_ops(&table);
        let (a, b) = (
            plain.layer_cost(&layout, 64),
            measured.layer_cost(&layout, 64),
        );
        // Two layernorms per layer: 12 bytes per element at 10 GB/s become 1 ms each.
        let bytes = 2.0 * 12.0 * th / 1e10;
        assert!(
            (b.memory_bound - a.memory_bound - (2e-3 - bytes)).abs() < 1e-12,
            "{} vs {}",
            b.memory_bound,
            a.memory_bound
        );
        assert_eq!(a.gemm, b.gemm);
        // Without a measurement the physics is 66·h bytes per token for norms and
        // residuals, 12·f for the activation and 27 per score, forward and backward.
        let tokens = 4.0 * 64.0;
        let want =
            (66.0 * tokens * 128.0 + 12.0 * tokens * 512.0 + 27.0 * 8.0 * 64.0 * 64.0) / 1e10;
        assert!((a.memory_bound - want).abs() < 1e-12, "{}", a.memory_bound);
        // The items add up to the layer's GEMMs and memory-bound ops.
        let items: f64 = measured
            .layer_items(&layout, 64)
            .iter()
            .map(|i| i.seconds)
            .sum();
        assert!((items - b.gemm - b.memory_bound).abs() < 1e-12);
    }

    #[test]
    fn a_mixture_of_experts_layer_pays_its_token_permutation_and_a_dense_one_none() {
        let (sys, layout) = (system(), Layout::single(4));
        let (shape, eff) = ideal(&sys);
        let rates = RateSource::Shape(shape.clone());
        let permute = |c: &ModelConfig| -> Vec<f64> {
            StepModel::new(c, &sys, &rates, &shape, eff, 64)
                .layer_items(&layout, 64)
                .iter()
                .filter(|i| i.name == "permute")
                .map(|i| i.seconds)
                .collect()
        };
        assert!(permute(&cfg()).is_empty());
        let moe = ModelConfig {
            experts: Some(8),
            top_k: Some(2),
            ..cfg()
        };
        // 18 bytes per routed value: 4 x 64 tokens, 2 experts each, hidden 128, at 10 GB/s.
        let want = 18.0 * (4.0 * 64.0) * 2.0 * 128.0 / 1e10;
        let got = permute(&moe);
        assert_eq!(got.len(), 1);
        assert!((got[0] - want).abs() < 1e-15, "{got:?} vs {want}");
    }

    #[test]
    fn materialised_attention_backward_runs_its_four_products_at_their_own_shapes() {
        // Four heads of 32: Q·Kᵀ is 64×64×32, P·V 64×32×64, for 4 × 4 = 16 heads.
        let c = ModelConfig {
            heads: 4,
            head_dim: 32,
            ..cfg()
        };
        let sys = system();
        let shape = ShapeModel {
            peak_flops: sys.peak_flops,
            hbm_bw: sys.hbm_bw,
            compute_units: None,
            elem_bytes: 4.0,
            efficiency: 1.0,
        };
        let g = |m, n, k| Gemm { batch: 16, m, n, k };
        // Q·Kᵀ's shape at 1 GFLOP/s, P·V's at 4: the same FLOPs each.
        let table = crate::gemm_rate::MeasuredTable {
            points: vec![(g(64, 64, 32), 1e9), (g(64, 32, 64), 4e9)],
            source: "test".into(),
        };
        let rates = RateSource::Profile(table);
        let eff = Efficiency {
            link: 1.0,
            hbm: 1.0,
            gemm: 1.0,
            dp_overlap: true,
            tp_overlap: false,
            unfused_loss: false,
        };
        let m = StepModel::new(&c, &sys, &rates, &shape, eff, 64);
        let items = m.layer_items(&Layout::single(4), 64);
        let get = |n: &str, p: &str| {
            items
                .iter()
                .find(|i| i.name == n && i.pass == p)
                .map(|i| i.seconds)
                .unwrap()
        };
        let f = g(64, 64, 32).flops();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-15;
        assert!(close(get("scores", "fwd"), f / 1e9));
        assert!(close(get("pv", "fwd"), f / 4e9));
        // dQ = dS·K and dK = dSᵀ·Q at P·V's shape; dP = dO·Vᵀ at Q·Kᵀ's, dV = Pᵀ·dO at P·V's.
        assert!(close(get("scores", "bwd"), 2.0 * f / 4e9));
        assert!(close(get("pv", "bwd"), f / 1e9 + f / 4e9));
    }

    #[test]
    fn context_parallelism_halves_a_ranks_tokens_and_pays_for_the_ring() {
        let c = cfg();
        let mut sys = system();
        // A link slow enough (1 MB/s) that the ring outlasts the attention it overlaps.
        sys.tiers[0].bw = 1e6;
        let (shape, eff) = ideal(&sys);
        let rates = RateSource::Shape(shape.clone());
        let m = StepModel::new(&c, &sys, &rates, &shape, eff, 64);
        let one = Layout {
            dp: 2,
            attention: Attention::Flash,
            ..Layout::single(4)
        };
        let two = Layout {
            cp: 2,
            dp: 1,
            ..one
        };
        assert_eq!(two.devices(), one.devices());
        let (a, b) = (m.layer_cost(&one, 64), m.layer_cost(&two, 64));
        // Each rank holds 32 of the 64 positions: half the rows of every weight GEMM
        // and half the attention (its 32 queries meet all 64 keys), so half the FLOPs
        // (smaller tiles run a little slower), and half the memory-bound bytes.
        let ratio = b.gemm / a.gemm;
        assert!((0.5..0.7).contains(&ratio), "{} vs {}", b.gemm, a.gemm);
        assert!((b.memory_bound / a.memory_bound - 0.5).abs() < 0.05);
        // The ring of keys and values (2 x 32 positions x 4 sequences x 128 x 2 bytes
        // per step, once forward and twice backward) shows where it outlasts the
        // attention.
        assert_eq!(a.cp, 0.0);
        assert!(b.cp > 0.0, "{b:?}");
        // Activations and the optimizer's shards follow: half the positions, and the
        // context-parallel ranks share ZeRO's shards as data-parallel ones do.
        let ma = m.memory_at(
            &Layout {
                zero: Zero::Optimizer,
                ..one
            },
            64,
            1,
        );
        let mb = m.memory_at(
            &Layout {
                zero: Zero::Optimizer,
                ..two
            },
            64,
            1,
        );
        assert!((mb.activations / ma.activations - 0.5).abs() < 0.01);
        assert_eq!(mb.optimizer, ma.optimizer);
    }

    #[test]
    fn an_overlapping_stack_hides_sequence_parallel_traffic_under_the_gemms_but_one_chunk() {
        let c = cfg();
        let sys = system();
        let (shape, eff) = ideal(&sys);
        let rates = RateSource::Shape(shape.clone());
        let overlapping = Efficiency {
            tp_overlap: true,
            ..eff
        };
        let plain = StepModel::new(&c, &sys, &rates, &shape, eff, 64);
        let hiding = StepModel::new(&c, &sys, &rates, &shape, overlapping, 64);
        let sp = Layout {
            tp: 2,
            sequence_parallel: true,
            ..Layout::single(4)
        };
        let (a, b) = (plain.layer_cost(&sp, 64), hiding.layer_cost(&sp, 64));
        // At 1 GB/s the collectives take far less than the weight GEMMs, so all but one
        // of the `t = 2` chunks hides; the GEMMs themselves are unchanged.
        assert!(a.tp > 0.0);
        assert!((b.tp - a.tp / 2.0).abs() < 1e-15, "{} vs {}", b.tp, a.tp);
        assert_eq!(b.gemm, a.gemm);
        // Without sequence parallelism there are all-reduces, which it does not split.
        let ar = Layout {
            sequence_parallel: false,
            ..sp
        };
        assert_eq!(hiding.layer_cost(&ar, 64).tp, plain.layer_cost(&ar, 64).tp);
        // On a link slow enough (1 MB/s) that the traffic outlasts the GEMMs, what
        // they cannot cover stays exposed.
        let mut slow = system();
        slow.tiers[0].bw = 1e6;
        let plain = StepModel::new(&c, &slow, &rates, &shape, eff, 64);
        let hiding = StepModel::new(&c, &slow, &rates, &shape, overlapping, 64);
        let (a, b) = (plain.layer_cost(&sp, 64), hiding.layer_cost(&sp, 64));
        assert!(b.tp > a.tp / 2.0 && b.tp < a.tp, "{} vs {}", b.tp, a.tp);
    }

    #[test]
    fn a_stack_running_the_unfused_cross_entropy_moves_its_bytes_per_logit() {
        let c = cfg();
        let sys = system();
        let (shape, eff) = ideal(&sys);
        let rates = RateSource::Shape(shape.clone());
        let unfused = Efficiency {
            unfused_loss: true,
            ..eff
        };
        let fused = StepModel::new(&c, &sys, &rates, &shape, eff, 64);
        let plain = StepModel::new(&c, &sys, &rates, &shape, unfused, 64);
        let layout = Layout::single(4);
        let loss = |m: &StepModel<'_>| {
            m.vocab_items(&layout, 64)
                .iter()
                .find(|i| i.name == "loss")
                .map(|i| i.seconds)
                .unwrap()
        };
        // 4 x 64 positions x 2,048 logits at 20 bytes and at 52, over 10 GB/s.
        let logits = 4.0 * 64.0 * 2048.0;
        assert!((loss(&fused) - logits * 20.0 / 1e10).abs() < 1e-12);
        assert!((loss(&plain) - logits * crate::op_rate::UNFUSED_LOSS_BYTES / 1e10).abs() < 1e-12);
        // Only the loss moves: the projection's GEMMs are the same.
        assert_eq!(
            plain.vocab_cost(&layout, 64).0,
            fused.vocab_cost(&layout, 64).0
        );
    }
}
