//! `plan`: search every layout of a model on `N` devices and rank the feasible ones by
//! step time.
//!
//! Enumerated: tensor degree `t` dividing `N` and the heads, within the scale-up
//! domain (the first link tier); pipeline degree `p` dividing `N/t` (and the layers);
//! `d = N/(t·p)`; expert degree dividing `d` and the experts (MoE only); micro-batch
//! `b` with `B` divisible by `d·b`; virtual stages `v` dividing the layers per stage
//! with `m` divisible by `p`; sequence parallelism (with `t > 1`); ZeRO 0/1/3 (with
//! `d > 1`); recomputation none/selective/full; materialised or flash attention. A
//! [`Constraints`] field that is set fixes that dimension. Memory is checked first
//! (cheap); the per-layer cost is computed once per distinct (t, b, sp, recompute,
//! attention, ep) and reused, the vocabulary cost once per (t, b); a layout's full
//! prediction is built only when its step time would rank.
//!
//! Layouts with the same prediction (step time, breakdown and memory per device) are
//! one plan: the first found is listed and the others are named in its
//! [`Prediction::equivalent_layouts`]. A layout as fast as a listed one but needing
//! more memory is dominated and dropped (counted in [`SearchResult::dominated`]); one
//! as fast but needing less replaces it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::Serialize;

use crate::error::ModelError;
use crate::flops::Recompute;
use crate::layout::{Attention, Layout, Zero};
use crate::step::{usable_memory, Batch, Breakdown, LayerCost, Prediction, StepModel};
use crate::system::GIB;

/// Dimensions the caller fixes; `None` = searched.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Constraints {
    /// Tensor degree.
    pub tp: Option<u32>,
    /// Context-parallel degree (`None`: 1; not searched).
    pub cp: Option<u32>,
    /// Pipeline degree.
    pub pp: Option<u32>,
    /// Data degree.
    pub dp: Option<u32>,
    /// Expert degree.
    pub ep: Option<u32>,
    /// Micro-batch.
    pub microbatch: Option<u32>,
    /// Virtual stages.
    pub virtual_stages: Option<u32>,
    /// Sequence parallelism.
    pub sequence_parallel: Option<bool>,
    /// Optimizer sharding.
    pub zero: Option<Zero>,
    /// Recomputation.
    pub recompute: Option<Recompute>,
    /// With full recomputation, the layers per device recomputed
    /// ([`Layout::recompute_layers`]; `None`: every layer, or searched when
    /// `recompute` is too).
    pub recompute_layers: Option<u32>,
    /// Attention kernel.
    pub attention: Option<Attention>,
    /// Allow pipelines that split the layers unevenly (published runs only).
    pub uneven_stages: bool,
}

impl Constraints {
    /// Whether any layout dimension is fixed (the attention kernel, sequence
    /// parallelism and uneven stages are not dimensions of the layout's shape, and a
    /// stack's stated defaults fill the first two in).
    pub fn fixes_layout(&self) -> bool {
        self.tp.is_some()
            || self.cp.is_some()
            || self.pp.is_some()
            || self.dp.is_some()
            || self.ep.is_some()
            || self.microbatch.is_some()
            || self.virtual_stages.is_some()
            || self.zero.is_some()
            || self.recompute.is_some()
            || self.recompute_layers.is_some()
    }
}

/// Layouts refused for one reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// The reason, e.g. `does not fit in memory`.
    pub reason: String,
    /// How many layouts.
    pub count: u64,
    /// One of them, with its numbers.
    pub example: String,
}

/// The result of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResult {
    /// Feasible layouts, fastest first (at most the number asked for).
    pub plans: Vec<Prediction>,
    /// Layouts considered.
    pub evaluated: u64,
    /// Feasible layouts found.
    pub feasible: u64,
    /// Refusals grouped by reason.
    pub rejected: Vec<Rejected>,
    /// The least memory per device any considered layout needed, bytes.
    pub smallest_memory_bytes: Option<f64>,
    /// Feasible layouts dropped because a listed one is as fast with less memory.
    pub dominated: u64,
}

fn divisors(n: u64) -> Vec<u64> {
    let mut v = vec![];
    let mut i = 1;
    while i * i <= n {
        if n.is_multiple_of(i) {
            v.push(i);
            if i * i != n {
                v.push(n / i);
            }
        }
        i += 1;
    }
    v.sort_unstable();
    v
}

fn pick<T: Copy>(fixed: Option<T>, all: &[T]) -> Vec<T> {
    match fixed {
        Some(x) => vec![x],
        None => all.to_vec(),
    }
}

struct Rejections(Vec<Rejected>);

impl Rejections {
    fn add(&mut self, reason: &str, example: impl FnOnce() -> String) {
        match self.0.iter_mut().find(|r| r.reason == reason) {
            Some(r) => r.count += 1,
            None => self.0.push(Rejected {
                reason: reason.to_string(),
                count: 1,
                example: example(),
            }),
        }
    }
}

/// A multiply-xor hasher for the small integer keys of the layer-cost cache (the
/// default SipHash was a tenth of a search's time).
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
}

type Cache<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// The part of the layer-cost cache key that recomputation sets (block recomputation
/// is mixed from the `None` and `Full` entries, never cached itself).
fn recompute_key(l: &Layout) -> u8 {
    match l.recompute {
        Recompute::None => 0,
        Recompute::Selective => 1,
        Recompute::Full => 2,
    }
}

/// Where keeping every activation of `base` (a full-recompute layout) does not fit in
/// `usable` bytes but recomputing every layer does: the layout that recomputes the
/// fewest of a device's layers and fits. Memory falls linearly with the layers
/// recomputed, so the count is solved for and then checked.
fn fewest_recomputed(
    model: &StepModel<'_>,
    base: &Layout,
    seq: u64,
    micro_batches: u64,
    usable: f64,
) -> Option<Layout> {
    let per_stage = crate::layout::stage_layers(model.cfg.layers, base.pp) as u32;
    let at = |k: u32| Layout {
        recompute_layers: Some(k),
        ..*base
    };
    let mem = |k: u32| model.memory_at(&at(k), seq, micro_batches).total;
    let (none, all) = (mem(0), mem(per_stage));
    if per_stage < 2 || none <= usable || all > usable {
        return None;
    }
    let per_layer = (none - all) / f64::from(per_stage);
    let first = ((none - usable) / per_layer).ceil().max(1.0) as u32;
    (first..per_stage).find(|&k| mem(k) <= usable).map(at)
}

/// Search the layouts of `model` on `devices` chips for `batch`, keeping the `keep`
/// fastest feasible ones. Errors only on a zero device count or batch; a search with
/// no feasible layout returns empty `plans` and the reasons.
pub fn search(
    model: &StepModel<'_>,
    devices: u64,
    batch: Batch,
    c: &Constraints,
    keep: usize,
) -> Result<SearchResult, ModelError> {
    if devices == 0 || batch.global_batch == 0 || batch.seq == 0 {
        return Err(ModelError::InvalidInput(format!(
            "devices, batch and seq must be positive (got {devices}, {}, {})",
            batch.global_batch, batch.seq
        )));
    }
    model.system.check()?;
    let cfg = model.cfg;
    let usable = usable_memory(model.system);
    let mut rej = Rejections(vec![]);
    let mut cache: Cache<(u32, u32, bool, u8, Attention, u32), LayerCost> = Cache::default();
    let mut vocab: Cache<(u32, u32), (f64, f64)> = Cache::default();
    let mut best = Ranked {
        plans: vec![],
        keep,
        dominated: 0,
    };
    let (mut evaluated, mut feasible) = (0u64, 0u64);
    let mut smallest = f64::INFINITY;
    let scale_up = model.system.scale_up();

    let cp = u64::from(c.cp.unwrap_or(1).max(1));
    let (seq_splits, devices_split) = (batch.seq.is_multiple_of(cp), devices.is_multiple_of(cp));
    if !seq_splits {
        rej.add("cp does not divide the sequence", || {
            format!("cp {cp}, seq {}", batch.seq)
        });
    }
    if !devices_split {
        rej.add("cp does not divide the devices", || {
            format!("cp {cp}, {devices} devices")
        });
    }
    // Searched over the devices one context-parallel rank stands for (none where cp
    // cannot work).
    let devices = if seq_splits && devices_split {
        devices / cp
    } else {
        0
    };
    let tps: Vec<u64> = match c.tp {
        Some(t) if devices > 0 => vec![u64::from(t)],
        Some(_) => vec![],
        None => divisors(devices),
    };
    for t in tps {
        if !devices.is_multiple_of(t) {
            rej.add("tp does not divide the devices", || {
                format!("tp {t}, {devices} devices")
            });
            continue;
        }
        if c.tp.is_none() && t > scale_up {
            rej.add("tp exceeds the scale-up domain", || {
                format!("tp {t} > {scale_up} devices on the first link tier")
            });
            continue;
        }
        if !cfg.heads.is_multiple_of(t) {
            rej.add("tp does not divide the attention heads", || {
                format!("tp {t}, {} heads", cfg.heads)
            });
            continue;
        }
        let pps = match c.pp {
            Some(p) => vec![u64::from(p)],
            None => divisors(devices / t),
        };
        for p in pps {
            if !(devices / t).is_multiple_of(p) {
                rej.add("tp x pp does not divide the devices", || {
                    format!("tp {t} x pp {p}, {devices} devices")
                });
                continue;
            }
            if p > cfg.layers {
                continue;
            }
            if !c.uneven_stages && !cfg.layers.is_multiple_of(p) {
                rej.add("pp does not divide the layers", || {
                    format!("pp {p}, {} layers", cfg.layers)
                });
                continue;
            }
            let d = devices / (t * p);
            if let Some(fd) = c.dp {
                if u64::from(fd) != d {
                    rej.add("tp x pp x dp is not the device count", || {
                        format!("tp {t} x pp {p} x dp {fd} != {devices}")
                    });
                    continue;
                }
            }
            let eps: Vec<u64> = if cfg.is_moe() {
                match c.ep {
                    Some(e) => vec![u64::from(e)],
                    None => divisors(d)
                        .into_iter()
                        .filter(|e| cfg.experts().is_multiple_of(*e))
                        .collect(),
                }
            } else {
                vec![1]
            };
            let per_dp = batch.global_batch / d;
            if !batch.global_batch.is_multiple_of(d) {
                rej.add("batch not divisible by dp", || {
                    format!("batch {} / dp {d}", batch.global_batch)
                });
                continue;
            }
            let bs: Vec<u64> = match c.microbatch {
                Some(b) => vec![u64::from(b)],
                None => divisors(per_dp).into_iter().filter(|b| *b <= 64).collect(),
            };
            for ep in eps {
                for &b in &bs {
                    if !per_dp.is_multiple_of(b) {
                        rej.add("batch not divisible by dp x microbatch", || {
                            format!("batch {} / (dp {d} x microbatch {b})", batch.global_batch)
                        });
                        continue;
                    }
                    let m = per_dp / b;
                    let chunks = cfg.layers / p;
                    let vs: Vec<u64> = match c.virtual_stages {
                        Some(v) => vec![u64::from(v)],
                        None if p == 1 => vec![1],
                        None => divisors(chunks.max(1))
                            .into_iter()
                            .filter(|v| *v <= 8)
                            .collect(),
                    };
                    for v in vs {
                        if v > 1 && (p == 1 || !m.is_multiple_of(p)) {
                            rej.add("interleaving needs micro-batches divisible by pp", || {
                                format!("v {v}, m {m}, pp {p}")
                            });
                            continue;
                        }
                        let sps = pick(
                            c.sequence_parallel,
                            if t > 1 { &[true, false] } else { &[false] },
                        );
                        let zeros = pick(
                            c.zero,
                            if d * cp > 1 {
                                &[Zero::Optimizer, Zero::None, Zero::Full]
                            } else {
                                &[Zero::None]
                            },
                        );
                        let recs = pick(
                            c.recompute,
                            &[Recompute::None, Recompute::Selective, Recompute::Full],
                        );
                        let atts = pick(c.attention, &[Attention::Flash, Attention::Materialized]);
                        for &sp in &sps {
                            for &zero in &zeros {
                                for &recompute in &recs {
                                    for &attention in &atts {
                                        let all = Layout {
                                            tp: t as u32,
                                            cp: cp as u32,
                                            pp: p as u32,
                                            dp: d as u32,
                                            ep: ep as u32,
                                            microbatch: b as u32,
                                            virtual_stages: v as u32,
                                            sequence_parallel: sp,
                                            zero,
                                            recompute,
                                            recompute_layers: c
                                                .recompute_layers
                                                .filter(|_| recompute == Recompute::Full),
                                            attention,
                                        };
                                        if let Some(k) = all.recompute_layers.filter(|&k| {
                                            f64::from(k)
                                                > crate::layout::stage_layers(cfg.layers, p as u32)
                                        }) {
                                            rej.add("more layers recomputed than a device holds", || {
                                                format!(
                                                    "recompute-layers {k} of the {} layers pp {p} leaves a device",
                                                    cfg.layers.div_ceil(p)
                                                )
                                            });
                                            continue;
                                        }
                                        // A free search also tries recomputing only as
                                        // many layers as memory needs.
                                        let block = (recompute == Recompute::Full
                                            && c.recompute.is_none()
                                            && c.recompute_layers.is_none())
                                        .then(|| {
                                            fewest_recomputed(model, &all, batch.seq, m, usable)
                                        })
                                        .flatten();
                                        for layout in std::iter::once(all).chain(block) {
                                            evaluated += 1;
                                            let mem = model.memory_at(&layout, batch.seq, m);
                                            smallest = smallest.min(mem.total);
                                            if mem.total > usable {
                                                rej.add("does not fit in memory", || {
                                                format!(
                                                    "tp {t}{} pp {p} dp {d} b {b} recompute {} zero {}: needs {:.1} GiB of {:.1} GiB usable",
                                                    if cp > 1 { format!(" cp {cp}") } else { String::new() },
                                                    layout.recompute_text(),
                                                    zero.level(),
                                                    mem.total / GIB,
                                                    usable / GIB
                                                )
                                            });
                                                continue;
                                            }
                                            feasible += 1;
                                            // Block recomputation mixes the two cached
                                            // costs: keeping everything and recomputing all.
                                            let mut cost = |l: &Layout| {
                                                let key = (
                                                    l.tp,
                                                    l.microbatch,
                                                    sp,
                                                    recompute_key(l),
                                                    attention,
                                                    l.ep,
                                                );
                                                *cache.entry(key).or_insert_with(|| {
                                                    model.layer_cost(l, batch.seq)
                                                })
                                            };
                                            let layer = if layout.recompute_layers.is_some() {
                                                LayerCost::mix(
                                                    &cost(&layout.recomputing_all()),
                                                    &cost(&layout.keeping_all()),
                                                    layout.full_recompute_share(cfg.layers),
                                                )
                                            } else {
                                                cost(&layout)
                                            };
                                            let voc = *vocab
                                                .entry((layout.tp, layout.microbatch))
                                                .or_insert_with(|| {
                                                    model.vocab_cost(&layout, batch.seq)
                                                });
                                            let secs =
                                                model.step_seconds(&layout, batch, &layer, voc);
                                            if best.ranks(secs) {
                                                best.offer(model.predict_parts(
                                                    &layout, batch, &layer, voc, mem,
                                                ));
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(SearchResult {
        plans: best.plans,
        dominated: best.dominated,
        evaluated,
        feasible,
        rejected: rej.0,
        smallest_memory_bytes: smallest.is_finite().then_some(smallest),
    })
}

/// Relative difference below which two step times or memories are the same.
const SAME: f64 = 1e-9;

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= SAME * a.abs().max(b.abs())
}

fn same_parts(a: &Breakdown, b: &Breakdown) -> bool {
    [
        (a.compute, b.compute),
        (a.tp_comm, b.tp_comm),
        (a.cp_comm, b.cp_comm),
        (a.pp_comm, b.pp_comm),
        (a.dp_comm, b.dp_comm),
        (a.ep_comm, b.ep_comm),
        (a.bubble, b.bubble),
        (a.optimizer, b.optimizer),
    ]
    .iter()
    .all(|(x, y)| same(*x, *y) || (x - y).abs() < 1e-15)
}

/// The fastest plans, sorted by step time, at most `keep` long, one per distinct
/// prediction.
struct Ranked {
    plans: Vec<Prediction>,
    keep: usize,
    dominated: u64,
}

impl Ranked {
    /// Whether a layout of `step_time_s` could enter (or join) the list.
    fn ranks(&self, step_time_s: f64) -> bool {
        self.keep > 0
            && (self.plans.len() < self.keep
                || self.plans.last().is_none_or(|w| {
                    w.step_time_s > step_time_s || same(w.step_time_s, step_time_s)
                }))
    }

    /// Add `p`: folded into a listed plan with the same prediction, dropped when a
    /// listed plan is as fast with no more memory, else inserted by step time (after
    /// the plans as fast, so the first layout found of a step time stays first).
    fn offer(&mut self, p: Prediction) {
        let mem = p.memory_per_device_bytes.total;
        if let Some(q) = self.plans.iter_mut().find(|q| {
            same(q.step_time_s, p.step_time_s)
                && q.memory_per_device_bytes.total <= mem * (1.0 + SAME)
        }) {
            if same(q.memory_per_device_bytes.total, mem)
                && same_parts(&q.step_breakdown_s, &p.step_breakdown_s)
            {
                q.equivalent_layouts.push(p.layout);
            } else {
                self.dominated += 1;
            }
            return;
        }
        if !self.ranks(p.step_time_s) {
            return;
        }
        let at = self
            .plans
            .partition_point(|x| x.step_time_s <= p.step_time_s);
        self.plans.insert(at, p);
        self.plans.truncate(self.keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisors_are_sorted_and_complete() {
        assert_eq!(divisors(12), vec![1, 2, 3, 4, 6, 12]);
        assert_eq!(divisors(1), vec![1]);
        assert_eq!(divisors(16384).len(), 15);
    }
}
