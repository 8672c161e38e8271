//! Catalog models: architectures and, where published, training schedules and
//! parameter counts.

use serde::{Deserialize, Serialize};

use super::norm;
use crate::config::{Family, FfnKind, ModelConfig, Norm, Position};
use crate::flops::Phase;

/// One model of the catalog: its architecture and, when published, its schedule.
/// Fields after `causal` default to the family's conventions ([`Family::defaults`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Canonical name, e.g. `bert-large`.
    pub name: String,
    /// Other accepted names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Family, for the parameter count.
    #[serde(default)]
    pub family: Family,
    /// Transformer blocks.
    pub layers: u64,
    /// Model width.
    pub hidden: u64,
    /// Attention heads.
    pub heads: u64,
    /// Width of one head.
    pub head_dim: u64,
    /// FFN width (per expert).
    pub ffn: u64,
    /// Vocabulary.
    pub vocab: u64,
    /// Maximum sequence length.
    pub seq: u64,
    /// Causal attention.
    pub causal: bool,
    /// Key/value heads (grouped-query attention).
    #[serde(default)]
    pub kv_heads: Option<u64>,
    /// FFN kind.
    #[serde(default)]
    pub ffn_kind: FfnKind,
    /// Routed experts.
    #[serde(default)]
    pub experts: Option<u64>,
    /// Experts per token.
    #[serde(default)]
    pub top_k: Option<u64>,
    /// Shared experts.
    #[serde(default)]
    pub shared_experts: Option<u64>,
    /// Tied input/output embeddings (default: tied).
    #[serde(default)]
    pub tied: Option<bool>,
    /// Parallel attention + FFN block.
    #[serde(default)]
    pub parallel: bool,
    /// Position embedding kind (default: the family's).
    #[serde(default)]
    pub position: Option<Position>,
    /// Decoder blocks of an encoder–decoder model.
    #[serde(default)]
    pub decoder_layers: Option<u64>,
    /// Biases (default: the family's).
    #[serde(default)]
    pub biases: Option<bool>,
    /// Norm kind (default: the family's).
    #[serde(default)]
    pub norm: Option<Norm>,
    /// Parameter count the source publishes, to check the architecture against: the
    /// figure as printed (`"2.7B"`, `"70,426,624"`) or a number.
    #[serde(default)]
    pub published_params: Option<PublishedParams>,
    /// A model no one published: flopcal built it (e.g. for a size a paper names
    /// without an architecture). Shown in output.
    #[serde(default)]
    pub constructed: bool,
    /// Where the architecture comes from.
    pub source: String,
    /// When (YYYY-MM).
    pub date: String,
    /// Where the training schedule comes from.
    #[serde(default)]
    pub training_source: Option<String>,
    /// Pre-training schedule, when published.
    #[serde(default)]
    pub training: Vec<Phase>,
}

/// The relative tolerance every published parameter count gets at least (the issue's
/// target: within 1%).
pub const PARAMS_TOLERANCE: f64 = 0.01;

/// A parameter count as its source publishes it: the printed figure (`"2.7B"`,
/// `"340M"`, `"176,247,271,424"`; suffixes K, M, B, T) or a plain number. A printed
/// figure is as precise as its last digit: a count matches it within half a unit of
/// that digit ("2.7B": 0.05B) or within [`PARAMS_TOLERANCE`], whichever is larger; a
/// number matches within [`PARAMS_TOLERANCE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PublishedParams {
    /// A number, e.g. `6.738e9`.
    Count(f64),
    /// The figure as printed, e.g. `"2.7B"`.
    Printed(String),
}

impl PublishedParams {
    /// The value and half a unit of its last printed digit (0 for a number).
    pub fn parse(&self) -> Result<(f64, f64), String> {
        let text = match self {
            PublishedParams::Count(v) => return Ok((*v, 0.0)),
            PublishedParams::Printed(t) => t.trim(),
        };
        let (digits, scale) = match text.char_indices().last() {
            Some((i, c)) if c.is_ascii_alphabetic() => {
                let scale = match c.to_ascii_uppercase() {
                    'K' => 1e3,
                    'M' => 1e6,
                    'B' | 'G' => 1e9,
                    'T' => 1e12,
                    _ => return Err(format!("`{text}`: unknown suffix `{c}` (K, M, B or T)")),
                };
                (text[..i].trim_end(), scale)
            }
            _ => (text, 1.0),
        };
        let plain: String = digits.chars().filter(|&c| c != ',' && c != '_').collect();
        let ok = !plain.is_empty()
            && plain.chars().all(|c| c.is_ascii_digit() || c == '.')
            && plain.matches('.').count() <= 1
            && plain.chars().any(|c| c.is_ascii_digit());
        if !ok {
            return Err(format!(
                "`{text}` is not a printed count (digits with an optional K, M, B or T)"
            ));
        }
        let decimals = plain.split_once('.').map_or(0, |(_, d)| d.len());
        let value: f64 = plain.parse().map_err(|e| format!("`{text}`: {e}"))?;
        let unit = scale / 10f64.powi(decimals as i32);
        Ok((value * scale, unit / 2.0))
    }

    /// The published value.
    pub fn value(&self) -> Result<f64, String> {
        self.parse().map(|(v, _)| v)
    }

    /// The absolute tolerance of a match: half a unit of the last printed digit or
    /// [`PARAMS_TOLERANCE`] of the value, whichever is larger.
    pub fn tolerance(&self) -> Result<f64, String> {
        self.parse()
            .map(|(v, half_unit)| half_unit.max(PARAMS_TOLERANCE * v.abs()))
    }

    /// Whether a computed count `got` matches the published figure.
    pub fn matches(&self, got: f64) -> Result<bool, String> {
        Ok((got - self.value()?).abs() <= self.tolerance()?)
    }
}

impl ModelEntry {
    /// The architecture as a [`ModelConfig`], family defaults filled in.
    pub fn config(&self) -> ModelConfig {
        let (biases, norm, position) = self.family.defaults();
        ModelConfig {
            name: self.name.clone(),
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            head_dim: self.head_dim,
            ffn: self.ffn,
            vocab: self.vocab,
            seq: self.seq,
            causal: self.causal,
            family: self.family,
            kv_heads: self.kv_heads,
            ffn_kind: self.ffn_kind,
            experts: self.experts,
            top_k: self.top_k,
            shared_experts: self.shared_experts,
            tied: self.tied.unwrap_or(true),
            parallel: self.parallel,
            position: self.position.unwrap_or(position),
            decoder_layers: self.decoder_layers,
            biases: self.biases.unwrap_or(biases),
            norm: self.norm.unwrap_or(norm),
        }
    }

    pub(super) fn matches(&self, wanted: &str) -> bool {
        norm(&self.name) == wanted || self.aliases.iter().any(|a| norm(a) == wanted)
    }
}
