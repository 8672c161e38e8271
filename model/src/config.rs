//! Transformer architecture configurations: the built-in presets and custom configs.
//!
//! A config is all that FLOP accounting and kernel-suite derivation need: layer count,
//! hidden size, attention heads and head width, FFN width, vocabulary, sequence length,
//! and whether attention is causal (decoder) or bidirectional (encoder).

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// One dense transformer architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Canonical name, e.g. `bert-large`.
    pub name: String,
    /// Number of transformer blocks (encoder + decoder blocks for encoder-decoder models).
    pub layers: u64,
    /// Model width `h` (d_model).
    pub hidden: u64,
    /// Attention heads.
    pub heads: u64,
    /// Width of one head. `heads * head_dim` is usually `hidden`, but not for T5-11B.
    pub head_dim: u64,
    /// FFN inner width `f` (4h for BERT and GPT-2).
    pub ffn: u64,
    /// Vocabulary size `V` (output projection).
    pub vocab: u64,
    /// Default (maximum) training sequence length.
    pub seq: u64,
    /// Causal (decoder-only) attention: scores and P·V FLOPs are halved.
    pub causal: bool,
}

impl ModelConfig {
    /// Inner attention width, `heads * head_dim`.
    pub fn attn_dim(&self) -> u64 {
        self.heads * self.head_dim
    }

    /// Check that every dimension is positive and the head split is consistent.
    pub fn validate(&self) -> Result<(), ModelError> {
        for (field, v) in [
            ("layers", self.layers),
            ("hidden", self.hidden),
            ("heads", self.heads),
            ("head_dim", self.head_dim),
            ("ffn", self.ffn),
            ("vocab", self.vocab),
            ("seq", self.seq),
        ] {
            if v == 0 {
                return Err(ModelError::InvalidConfig {
                    model: self.name.clone(),
                    reason: format!("`{field}` must be positive"),
                });
            }
        }
        Ok(())
    }
}

/// Built-in presets: the models of the embedded catalog (`src/catalog/models.toml`),
/// each with the paper it comes from.
fn presets() -> Vec<ModelConfig> {
    crate::catalog::Catalog::embedded()
        .models
        .iter()
        .map(|m| m.config())
        .collect()
}

/// Names of the built-in presets, for `--help` and suggestions.
pub fn builtin_names() -> Vec<String> {
    presets().into_iter().map(|m| m.name).collect()
}

/// Look up a built-in preset by name or alias (case-insensitive; `_` and `-` are
/// equivalent). Unknown names get the nearest known name as a suggestion.
pub fn builtin(name: &str) -> Result<ModelConfig, ModelError> {
    // Aliases (`gpt2-1.5b` → `gpt2-xl`, ...) are in the catalog.
    crate::catalog::Catalog::embedded()
        .model(name)
        .map(|m| m.config())
}
