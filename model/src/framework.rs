//! Software stacks (`--framework`): what a user names so that the estimate uses the
//! calibration of the stack that will run the job. The calibration fits one GEMM-time
//! factor per stack and hardware generation ([`crate::fit`]); a stack may also state
//! the attention kernel it runs on a hardware class where the user does not say.
//! `unknown` (the default) is no stack: the estimate then rests on every stack seen on
//! the hardware generation, and its band spans them; with no layout given either, on
//! the stacks seen in production runs there ([`crate::stack::Chosen::free_factor`]).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::flops::Recompute;
use crate::layout::Attention;

const FRAMEWORKS_TOML: &str = include_str!("catalog/frameworks.toml");

/// The name that selects no stack.
pub const UNKNOWN: &str = "unknown";

/// A stack's attention kernel on some hardware classes, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionRule {
    /// Hardware classes (`gpu-2020`, ...).
    pub classes: Vec<String>,
    /// The kernel it runs there.
    pub kernel: Attention,
    /// Why, with the source.
    pub why: String,
}

/// One software stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    /// Canonical name (`megatron`).
    pub id: String,
    /// Other accepted names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// What it is.
    pub description: String,
    /// Attention kernels it runs where the user does not choose one.
    #[serde(default)]
    pub attention: Vec<AttentionRule>,
    /// Hardware classes on which its data-parallel gradient reduction runs after the
    /// backward pass instead of overlapping it, with the reason.
    #[serde(default)]
    pub dp_reduce_after_backward: Vec<ClassRule>,
    /// Hardware classes on which it runs without sequence parallelism where the user
    /// does not ask for it, with the reason.
    #[serde(default)]
    pub no_sequence_parallel: Vec<ClassRule>,
    /// Hardware classes on which its sequence-parallel tensor-parallel all-gathers and
    /// reduce-scatters overlap the GEMMs they feed, with the reason.
    #[serde(default)]
    pub tp_overlap: Vec<ClassRule>,
    /// Hardware classes on which its loss is the unfused vocabulary-parallel cross
    /// entropy on fp32 logits ([`crate::op_rate::UNFUSED_LOSS_BYTES`]), with the reason.
    #[serde(default)]
    pub unfused_loss: Vec<ClassRule>,
    /// The recomputation its production runs take where the layout is not given, if it
    /// is not [`crate::forecast::PRODUCTION_RECOMPUTE`], with the reason.
    #[serde(default)]
    pub production_recompute: Option<RecomputeRule>,
}

/// A stack's recomputation in production runs, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecomputeRule {
    /// The policy.
    pub recompute: Recompute,
    /// Why, with the source.
    pub why: String,
}

/// A stack's behaviour on some hardware classes, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassRule {
    /// Hardware classes.
    pub classes: Vec<String>,
    /// Why, with the source.
    pub why: String,
}

/// Whether one of `rules` covers hardware `class`.
fn covers(rules: &[ClassRule], class: &str) -> bool {
    rules.iter().any(|r| r.classes.iter().any(|c| c == class))
}

impl Framework {
    /// Whether its gradient reduction overlaps the backward pass on `class`.
    pub fn overlaps_dp_on(&self, class: &str) -> bool {
        !covers(&self.dp_reduce_after_backward, class)
    }

    /// Whether its sequence-parallel tensor-parallel collectives overlap the GEMMs on
    /// `class`.
    pub fn overlaps_tp_on(&self, class: &str) -> bool {
        covers(&self.tp_overlap, class)
    }

    /// Whether its loss is the unfused vocabulary-parallel cross entropy on `class`.
    pub fn unfused_loss_on(&self, class: &str) -> bool {
        covers(&self.unfused_loss, class)
    }

    /// The recomputation its production runs take, where it states one.
    pub fn stated_production_recompute(&self) -> Option<Recompute> {
        self.production_recompute.as_ref().map(|r| r.recompute)
    }

    /// Whether it runs without sequence parallelism on `class` unless asked.
    pub fn no_sequence_parallel_on(&self, class: &str) -> bool {
        covers(&self.no_sequence_parallel, class)
    }

    /// The attention kernel this stack runs on hardware of `class`, if it states one.
    pub fn attention_on(&self, class: &str) -> Option<&AttentionRule> {
        self.attention
            .iter()
            .find(|r| r.classes.iter().any(|c| c == class))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrameworksFile {
    framework: Vec<Framework>,
}

/// The embedded stacks (parsed once; the unit tests check the file).
pub fn embedded() -> &'static [Framework] {
    static ALL: OnceLock<Vec<Framework>> = OnceLock::new();
    ALL.get_or_init(|| {
        toml::from_str::<FrameworksFile>(FRAMEWORKS_TOML)
            .map(|f| f.framework)
            .unwrap_or_default()
    })
}

/// Every accepted canonical name, `unknown` last.
pub fn names() -> Vec<&'static str> {
    let mut v: Vec<&str> = embedded().iter().map(|f| f.id.as_str()).collect();
    v.push(UNKNOWN);
    v
}

/// The stack called `name` (an id or alias, any case); `None` for `unknown`. An
/// unknown name is refused with the list.
pub fn lookup(name: &str) -> Result<Option<&'static Framework>, ModelError> {
    let n = name.trim().to_ascii_lowercase();
    if n == UNKNOWN {
        return Ok(None);
    }
    embedded()
        .iter()
        .find(|f| f.id == n || f.aliases.contains(&n))
        .map(Some)
        .ok_or_else(|| {
            ModelError::InvalidInput(format!(
                "unknown framework `{name}` (known: {})",
                names().join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_stacks_parse_with_unique_names() {
        let parsed: FrameworksFile = toml::from_str(FRAMEWORKS_TOML).unwrap();
        assert_eq!(parsed.framework.len(), embedded().len());
        let mut seen = std::collections::HashSet::new();
        for f in embedded() {
            for n in std::iter::once(&f.id).chain(&f.aliases) {
                assert!(seen.insert(n.clone()), "{n} named twice");
            }
        }
        assert!(!seen.contains(UNKNOWN));
    }

    #[test]
    fn aliases_resolve_and_unknown_names_list_the_choices() {
        assert_eq!(lookup("NeMo").unwrap().unwrap().id, "megatron");
        assert_eq!(lookup("tf-tpu").unwrap().unwrap().id, "tensorflow");
        assert!(lookup("unknown").unwrap().is_none());
        let e = lookup("caffe").unwrap_err().to_string();
        assert!(e.contains("unknown framework `caffe`"), "{e}");
        assert!(
            e.contains("megatron, deepspeed, fsdp, jax, tensorflow, unknown"),
            "{e}"
        );
    }

    #[test]
    fn megatron_states_materialised_attention_on_a100_only() {
        let m = lookup("megatron").unwrap().unwrap();
        assert_eq!(
            m.attention_on("gpu-2020").map(|r| r.kernel),
            Some(Attention::Materialized)
        );
        assert!(m.attention_on("gpu-2022").is_none());
    }

    #[test]
    fn megatron_overlaps_tensor_parallel_traffic_on_hopper_and_later_only() {
        let m = lookup("megatron").unwrap().unwrap();
        assert!(!m.overlaps_tp_on("gpu-2020"));
        assert!(m.overlaps_tp_on("gpu-2022"));
        assert!(m.overlaps_tp_on("gpu-2024"));
        assert!(!lookup("fsdp").unwrap().unwrap().overlaps_tp_on("gpu-2022"));
    }

    #[test]
    fn the_stacks_built_on_megatrons_old_cross_entropy_state_its_unfused_loss() {
        let stack = |n: &str| lookup(n).unwrap().unwrap();
        assert!(stack("deepspeed").unfused_loss_on("gpu-2020"));
        assert!(stack("deepspeed").unfused_loss_on("gpu-2022"));
        assert!(stack("megatron").unfused_loss_on("gpu-2020"));
        assert!(!stack("megatron").unfused_loss_on("gpu-2022"));
        assert!(!stack("fsdp").unfused_loss_on("gpu-2020"));
        assert!(!stack("jax").unfused_loss_on("tpu-2021"));
    }
}
