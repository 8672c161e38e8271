//! A parallel layout of a training run (Narayanan et al. 2021; Korthikanti et al. 2022;
//! Rajbhandari et al. 2020): how `devices = tp · pp · dp` chips split the model and
//! the batch, and the memory-saving choices. [`Layout::check`] refuses impossible
//! layouts with the arithmetic.

use serde::{Deserialize, Serialize, Serializer};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::flops::Recompute;

/// Optimizer-state sharding across the data-parallel group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Zero {
    /// Every data-parallel rank holds the whole optimizer state.
    #[default]
    None,
    /// ZeRO-1 / Megatron's distributed optimizer: optimizer state sharded.
    Optimizer,
    /// ZeRO-3 / FSDP: weights, gradients and optimizer state sharded; weights are
    /// all-gathered before use.
    Full,
}

impl Zero {
    /// The ZeRO stage number (0, 1 or 3), as on the command line and in JSON.
    pub fn level(self) -> u8 {
        match self {
            Zero::None => 0,
            Zero::Optimizer => 1,
            Zero::Full => 3,
        }
    }

    /// From a stage number; `None` for stages flopcal does not model.
    pub fn from_level(level: u8) -> Option<Zero> {
        match level {
            0 => Some(Zero::None),
            1 => Some(Zero::Optimizer),
            3 => Some(Zero::Full),
            _ => None,
        }
    }
}

impl Serialize for Zero {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.level())
    }
}

/// How the attention core runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    /// Scores materialised in memory (Megatron 2021–22): full `s×s` batched GEMMs,
    /// softmax and dropout as memory-bound passes.
    Materialized,
    /// A fused flash-style kernel (Dao et al. 2022): no `s×s` tensor in memory,
    /// causal blocks skipped, the forward recomputed in the backward pass.
    #[default]
    Flash,
}

impl Attention {
    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Attention::Materialized => "materialized",
            Attention::Flash => "flash",
        }
    }
}

/// One parallel layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// Tensor-parallel degree `t`.
    pub tp: u32,
    /// Context-parallel degree `c`: each rank holds `s/c` positions of every sequence
    /// and exchanges keys and values around a ring for attention (Megatron's context
    /// parallelism); 1 = none.
    pub cp: u32,
    /// Pipeline stages `p`.
    pub pp: u32,
    /// Data-parallel degree `d`.
    pub dp: u32,
    /// Expert-parallel degree (a divisor of `dp`; 1 for dense models).
    pub ep: u32,
    /// Micro-batch `b`, sequences.
    pub microbatch: u32,
    /// Virtual stages per device `v` (interleaved 1F1B; 1 = plain 1F1B).
    pub virtual_stages: u32,
    /// Sequence parallelism (norms and dropout split across the tensor group).
    pub sequence_parallel: bool,
    /// Optimizer sharding.
    pub zero: Zero,
    /// Activation recomputation.
    pub recompute: Recompute,
    /// With [`Recompute::Full`]: how many of a device's `⌈L/p⌉` layers are recomputed
    /// (Megatron's `--recompute-method block --recompute-num-layers`, summed over the
    /// device's virtual stages); the others keep every activation. `None`: all of them.
    /// A run a few GiB over its memory recomputes a few layers, not the whole stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recompute_layers: Option<u32>,
    /// Attention implementation.
    pub attention: Attention,
}

/// The recomputation a layout runs given a recompute policy and a count of layers to
/// recompute ([`Layout::recompute_layers`]): with a count, full (the policy may be
/// left out); refused at a count of 0 or beside another policy. `names` are how the
/// caller's input spells the two, e.g. `("--recompute-layers", "--recompute")`.
pub fn block_recompute(
    recompute: Option<Recompute>,
    layers: Option<u32>,
    names: (&str, &str),
) -> Result<Option<Recompute>, ModelError> {
    match (layers, recompute) {
        (None, r) => Ok(r),
        (Some(0), _) => Err(ModelError::InvalidInput(format!(
            "{} must be at least 1 (leave it out to recompute every layer)",
            names.0
        ))),
        (Some(_), None | Some(Recompute::Full)) => Ok(Some(Recompute::Full)),
        (Some(_), Some(r)) => Err(ModelError::InvalidInput(format!(
            "{} goes with {} full, not {}",
            names.0,
            names.1,
            r.as_str()
        ))),
    }
}

/// Layers on the busiest pipeline stage: `⌈L/p⌉`. With uneven stages (70 layers on
/// 12 stages, as DeepSpeed and Megatron place them) the slowest stage sets the pace
/// and holds the most memory; with even ones this is `L/p`.
pub fn stage_layers(layers: u64, pp: u32) -> f64 {
    layers.div_ceil(u64::from(pp.max(1))) as f64
}

impl Layout {
    /// One device, micro-batch `b`, nothing split.
    pub fn single(microbatch: u32) -> Layout {
        Layout {
            tp: 1,
            cp: 1,
            pp: 1,
            dp: 1,
            ep: 1,
            microbatch,
            virtual_stages: 1,
            sequence_parallel: false,
            zero: Zero::None,
            recompute: Recompute::None,
            recompute_layers: None,
            attention: Attention::Materialized,
        }
    }

    /// The share of a device's layers recomputed in full (`0` without full
    /// recomputation, `k / ⌈L/p⌉` with [`Layout::recompute_layers`] `k`, else `1`).
    pub fn full_recompute_share(&self, layers: u64) -> f64 {
        if self.recompute != Recompute::Full {
            return 0.0;
        }
        match self.recompute_layers {
            None => 1.0,
            Some(k) => (f64::from(k) / stage_layers(layers, self.pp)).min(1.0),
        }
    }

    /// The same layout recomputing every layer ([`Layout::recompute_layers`] cleared):
    /// the cost of each layer block recomputation recomputes.
    pub fn recomputing_all(&self) -> Layout {
        Layout {
            recompute_layers: None,
            ..*self
        }
    }

    /// The same layout keeping every activation: the cost of each layer block
    /// recomputation leaves alone.
    pub fn keeping_all(&self) -> Layout {
        Layout {
            recompute: Recompute::None,
            recompute_layers: None,
            ..*self
        }
    }

    /// `recompute full`, or `recompute block K` where only `K` layers per device are
    /// recomputed: the layout's recomputation as the command line writes it.
    pub fn recompute_text(&self) -> String {
        match (self.recompute, self.recompute_layers) {
            (Recompute::Full, Some(k)) => format!("block {k}"),
            (r, _) => r.as_str().to_string(),
        }
    }

    /// The dimensions in which `other` differs from this layout, as `name value`
    /// pairs (`recompute selective`, `sp off`), in the order of the fields.
    pub fn differences(&self, other: &Layout) -> Vec<String> {
        let mut v = vec![];
        let mut num = |name: &str, a: u32, b: u32| {
            if a != b {
                v.push(format!("{name} {b}"));
            }
        };
        num("tp", self.tp, other.tp);
        num("cp", self.cp, other.cp);
        num("pp", self.pp, other.pp);
        num("dp", self.dp, other.dp);
        num("ep", self.ep, other.ep);
        num("b", self.microbatch, other.microbatch);
        num("v", self.virtual_stages, other.virtual_stages);
        num(
            "zero",
            u32::from(self.zero.level()),
            u32::from(other.zero.level()),
        );
        if self.sequence_parallel != other.sequence_parallel {
            v.push(
                if other.sequence_parallel {
                    "sp on"
                } else {
                    "sp off"
                }
                .into(),
            );
        }
        if self.recompute != other.recompute || self.recompute_layers != other.recompute_layers {
            v.push(format!("recompute {}", other.recompute_text()));
        }
        if self.attention != other.attention {
            v.push(other.attention.as_str().to_string());
        }
        v
    }

    /// `tp · cp · pp · dp`.
    pub fn devices(&self) -> u64 {
        u64::from(self.tp) * u64::from(self.cp) * u64::from(self.pp) * u64::from(self.dp)
    }

    /// Positions of each sequence one rank holds: `s / cp`.
    pub fn local_seq(&self, seq: u64) -> u64 {
        (seq / u64::from(self.cp.max(1))).max(1)
    }

    /// Ranks that hold the same weights and reduce their gradients together (and
    /// share ZeRO's shards): `dp · cp`.
    pub fn replicas(&self) -> u64 {
        u64::from(self.dp) * u64::from(self.cp.max(1))
    }

    /// Micro-batches per step, `m = B / (d · b)`.
    pub fn micro_batches(&self, global_batch: u64) -> u64 {
        global_batch / (u64::from(self.dp) * u64::from(self.microbatch)).max(1)
    }

    /// Refuse a layout that cannot run `cfg` with `global_batch` sequences on
    /// `devices` chips; the message shows the arithmetic.
    pub fn check(
        &self,
        cfg: &ModelConfig,
        devices: u64,
        global_batch: u64,
    ) -> Result<(), ModelError> {
        self.check_stages(cfg, devices, global_batch, true)
    }

    /// As [`Layout::check`]; with `even_stages` false a pipeline may split the layers
    /// unevenly (published runs such as Llama 3 405B's 126 layers on 16 stages; the
    /// step model then balances `L/p` layers per stage).
    pub fn check_stages(
        &self,
        cfg: &ModelConfig,
        devices: u64,
        global_batch: u64,
        even_stages: bool,
    ) -> Result<(), ModelError> {
        let bad = |s: String| Err(ModelError::InvalidInput(s));
        for (name, v) in [
            ("tp", self.tp),
            ("cp", self.cp),
            ("pp", self.pp),
            ("dp", self.dp),
            ("ep", self.ep),
            ("microbatch", self.microbatch),
            ("virtual-stages", self.virtual_stages),
        ] {
            if v == 0 {
                return bad(format!("--{name} must be at least 1"));
            }
        }
        let (t, p, d, b, v) = (
            u64::from(self.tp),
            u64::from(self.pp),
            u64::from(self.dp),
            u64::from(self.microbatch),
            u64::from(self.virtual_stages),
        );
        check_devices(t, u64::from(self.cp), p, d, devices)?;
        if even_stages {
            check_stages(cfg.layers, p, v)?;
        }
        check_heads(cfg.heads, t)?;
        check_batch(global_batch, d, b)?;
        let m = global_batch / (d * b);
        if v > 1 && (p == 1 || !m.is_multiple_of(p)) {
            return bad(format!(
                "virtual stages {v} need pp > 1 and micro-batches divisible by pp: m = batch {global_batch} / (dp {d} x microbatch {b}) = {m}, pp = {p}"
            ));
        }
        check_experts(cfg, u64::from(self.ep), Some(d))
    }
}

/// An expert degree above 1 needs a mixture of experts, and must divide its experts
/// and, where it is known, the data-parallel degree.
pub fn check_experts(cfg: &ModelConfig, ep: u64, d: Option<u64>) -> Result<(), ModelError> {
    let bad = |s: String| Err(ModelError::InvalidInput(s));
    if ep <= 1 {
        return Ok(());
    }
    if !cfg.is_moe() {
        return bad(format!(
            "--ep {ep} needs a mixture of experts; this model is dense (give --experts and --top-k, or a MoE config)"
        ));
    }
    if !cfg.experts().is_multiple_of(ep) {
        return bad(format!(
            "--ep {ep} must divide the {} experts",
            cfg.experts()
        ));
    }
    if let Some(d) = d.filter(|d| !d.is_multiple_of(ep)) {
        return bad(format!("--ep {ep} must divide dp {d}"));
    }
    Ok(())
}

/// `tp · cp · pp · dp` must be the device count.
pub fn check_devices(t: u64, c: u64, p: u64, d: u64, devices: u64) -> Result<(), ModelError> {
    let product = [t, c, p, d].iter().try_fold(1u64, |a, x| a.checked_mul(*x));
    if product == Some(devices) {
        return Ok(());
    }
    let cp = if c > 1 {
        format!(" x cp {c}")
    } else {
        String::new()
    };
    Err(ModelError::InvalidInput(format!(
        "layout does not use the devices: tp {t}{cp} x pp {p} x dp {d} = {} but --devices is {devices}",
        product.map_or("more than 2^64".to_string(), |n| n.to_string())
    )))
}

/// `pp · v` must divide the layers.
pub fn check_stages(layers: u64, p: u64, v: u64) -> Result<(), ModelError> {
    if layers.is_multiple_of(p * v) {
        return Ok(());
    }
    Err(ModelError::InvalidInput(format!(
        "pp {p} x virtual stages {v} = {} does not divide the {layers} layers ({layers} / {} = {:.2})",
        p * v,
        p * v,
        layers as f64 / (p * v) as f64
    )))
}

/// `tp` must divide the attention heads.
pub fn check_heads(heads: u64, t: u64) -> Result<(), ModelError> {
    if heads.is_multiple_of(t) {
        return Ok(());
    }
    Err(ModelError::InvalidInput(format!(
        "tp {t} does not divide the {heads} attention heads ({heads} / {t} = {:.2})",
        heads as f64 / t as f64
    )))
}

/// `dp · microbatch` must divide the global batch.
pub fn check_batch(batch: u64, d: u64, b: u64) -> Result<(), ModelError> {
    if b > 0 && batch.is_multiple_of(d * b) {
        return Ok(());
    }
    Err(ModelError::InvalidInput(format!(
        "batch {batch} is not divisible by dp {d} x microbatch {b} = {} ({batch} / {} = {:.2})",
        d * b,
        d * b,
        batch as f64 / (d * b).max(1) as f64
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig {
            layers: 48,
            hidden: 6144,
            heads: 64,
            head_dim: 96,
            ffn: 4 * 6144,
            vocab: 51200,
            seq: 2048,
            causal: true,
            ..ModelConfig::default()
        }
    }

    fn layout(tp: u32, pp: u32, dp: u32, b: u32) -> Layout {
        Layout {
            tp,
            cp: 1,
            pp,
            dp,
            microbatch: b,
            ..Layout::single(b)
        }
    }

    #[test]
    fn refusals_show_the_arithmetic() {
        let c = cfg();
        let e = layout(8, 4, 3, 1)
            .check(&c, 128, 512)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("8 x pp 4 x dp 3 = 96") && e.contains("128"),
            "{e}"
        );
        let e = layout(1, 5, 1, 1)
            .check(&c, 5, 512)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not divide the 48 layers") && e.contains("9.60"),
            "{e}"
        );
        let e = layout(1, 1, 3, 4)
            .check(&c, 3, 512)
            .unwrap_err()
            .to_string();
        assert!(e.contains("dp 3 x microbatch 4 = 12"), "{e}");
        let e = layout(3, 1, 1, 1)
            .check(&c, 3, 512)
            .unwrap_err()
            .to_string();
        assert!(e.contains("64 attention heads"), "{e}");
        assert!(layout(8, 4, 4, 1).check(&c, 128, 512).is_ok());
        assert_eq!(layout(8, 4, 4, 2).micro_batches(512), 64);
    }

    #[test]
    fn interleaving_needs_a_pipeline_and_divisible_micro_batches() {
        let c = cfg();
        let mut l = layout(1, 1, 1, 1);
        l.virtual_stages = 2;
        assert!(l.check(&c, 1, 8).is_err());
        let mut l = layout(1, 4, 1, 1);
        l.virtual_stages = 2;
        assert!(l.check(&c, 4, 8).is_ok());
        assert!(l.check(&c, 4, 6).is_err());
    }
}
