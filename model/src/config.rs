//! Transformer architecture configurations: the bottom layer of the model crate.
//!
//! A config is all that FLOP accounting, parameter counts, the step model and
//! kernel-suite derivation need: layer count, hidden size, attention heads (query and
//! key/value) and head width, FFN width and kind, vocabulary, sequence length, whether
//! attention is causal, and the variants of today's models: grouped/multi-query
//! attention, gated FFNs, untied embeddings, position-embedding kind, parallel
//! attention+FFN blocks, encoder–decoder stacks and mixture-of-experts.
//!
//! Every field added after the first schema has a serde default that reproduces the
//! old meaning (a dense, multi-head, tied, learned-position MLP model), so result files
//! and catalogs written before still parse. The built-in presets are looked up in
//! [`crate::catalog`], which sits above this module.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Feed-forward network kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FfnKind {
    /// Two matrices, `h×f` then `f×h`, with an elementwise activation (GELU/ReLU).
    #[default]
    Mlp,
    /// SwiGLU (Shazeer 2020): gate and up projections `h×f` each, then `f×h`.
    SwiGlu,
    /// GeGLU (Shazeer 2020): as SwiGLU with a GELU gate.
    GeGlu,
}

impl FfnKind {
    /// Weight matrices of `h×f` in one FFN: 2 for an MLP, 3 for a gated FFN.
    pub fn matrices(self) -> u64 {
        match self {
            FfnKind::Mlp => 2,
            FfnKind::SwiGlu | FfnKind::GeGlu => 3,
        }
    }

    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FfnKind::Mlp => "mlp",
            FfnKind::SwiGlu => "swiglu",
            FfnKind::GeGlu => "geglu",
        }
    }
}

/// How positions enter the model; decides whether there is a position table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// A learned `seq × h` table (BERT, GPT-2, OPT).
    #[default]
    Learned,
    /// Rotary embeddings (Su et al. 2021): no parameters.
    Rotary,
    /// T5's relative position buckets: `32 × heads` per stack.
    Relative,
    /// No position parameters (ALiBi in BLOOM and MPT, or none at all).
    None,
}

/// Normalisation layer, for the parameter count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// LayerNorm with gain and bias: `2·h` parameters.
    #[default]
    LayerNorm,
    /// RMSNorm (or a LayerNorm without bias): `h` parameters.
    RmsNorm,
}

/// Architecture family, for the parts of the parameter count that the config's
/// fields do not describe (BERT's segment embeddings and pooler) and for the defaults
/// of the catalog's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// BERT: learned positions, 2 segment embeddings, embedding LayerNorm, biases
    /// everywhere, post-LN, pooler (`h² + h`). The MLM head's output layer is tied.
    Bert,
    /// GPT-2: learned positions, biases, pre-LN plus a final LayerNorm, tied output.
    Gpt,
    /// T5: relative position buckets, no biases, RMS norms, tied output.
    T5,
    /// Llama-style decoder: rotary positions, no biases, RMSNorm, SwiGLU.
    Llama,
    /// Generic: learned positions, biases, two LayerNorms per block, tied output.
    #[default]
    Generic,
}

impl Family {
    /// Defaults of the family: (biases, norm, position).
    pub fn defaults(self) -> (bool, Norm, Position) {
        match self {
            Family::T5 => (false, Norm::RmsNorm, Position::Relative),
            Family::Llama => (false, Norm::RmsNorm, Position::Rotary),
            Family::Bert | Family::Gpt | Family::Generic => {
                (true, Norm::LayerNorm, Position::Learned)
            }
        }
    }
}

fn yes() -> bool {
    true
}

/// One transformer architecture (dense or mixture-of-experts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Canonical name, e.g. `bert-large`.
    pub name: String,
    /// Number of transformer blocks (encoder + decoder blocks for encoder–decoder models).
    pub layers: u64,
    /// Model width `h` (d_model).
    pub hidden: u64,
    /// Attention (query) heads.
    pub heads: u64,
    /// Width of one head. `heads * head_dim` is usually `hidden`, but not for T5-11B.
    pub head_dim: u64,
    /// FFN inner width `f` (4h for BERT and GPT-2); per expert for MoE models.
    pub ffn: u64,
    /// Vocabulary size `V` (output projection).
    pub vocab: u64,
    /// Default (maximum) training sequence length.
    pub seq: u64,
    /// Causal (decoder-only) attention: scores and P·V FLOPs are halved.
    pub causal: bool,
    /// Family (parameter-count conventions that the fields below do not cover).
    #[serde(default)]
    pub family: Family,
    /// Key/value heads (grouped-query attention; 1 = multi-query). `None`: as `heads`.
    #[serde(default)]
    pub kv_heads: Option<u64>,
    /// FFN kind: plain MLP (2 matrices) or gated (3).
    #[serde(default)]
    pub ffn_kind: FfnKind,
    /// Routed experts per MoE layer. `None`: a dense model.
    #[serde(default)]
    pub experts: Option<u64>,
    /// Experts each token is routed to. `None`: 1 (or dense).
    #[serde(default)]
    pub top_k: Option<u64>,
    /// Always-on shared experts per MoE layer (DeepSeekMoE, Qwen-MoE), each `ffn` wide.
    #[serde(default)]
    pub shared_experts: Option<u64>,
    /// Input and output embeddings share one matrix.
    #[serde(default = "yes")]
    pub tied: bool,
    /// Attention and FFN read the same input and their outputs are summed
    /// (GPT-J, GPT-NeoX/Pythia, PaLM, Falcon) rather than run one after the other.
    #[serde(default)]
    pub parallel: bool,
    /// Position embedding kind.
    #[serde(default)]
    pub position: Position,
    /// Encoder–decoder model: how many of `layers` are decoder blocks (with
    /// cross-attention); the rest are encoder blocks. `None`: a single stack.
    #[serde(default)]
    pub decoder_layers: Option<u64>,
    /// The matmuls and norms have biases.
    #[serde(default = "yes")]
    pub biases: bool,
    /// Normalisation kind.
    #[serde(default)]
    pub norm: Norm,
}

impl Default for ModelConfig {
    /// A base for struct literals (`..ModelConfig::default()`): a dense, tied,
    /// learned-position MLP model with every dimension 0 (so it fails
    /// [`ModelConfig::validate`] until the dimensions are set).
    fn default() -> Self {
        ModelConfig {
            name: "custom".into(),
            layers: 0,
            hidden: 0,
            heads: 0,
            head_dim: 0,
            ffn: 0,
            vocab: 0,
            seq: 0,
            causal: false,
            family: Family::Generic,
            kv_heads: None,
            ffn_kind: FfnKind::Mlp,
            experts: None,
            top_k: None,
            shared_experts: None,
            tied: true,
            parallel: false,
            position: Position::Learned,
            decoder_layers: None,
            biases: true,
            norm: Norm::LayerNorm,
        }
    }
}

impl ModelConfig {
    /// Inner attention width, `heads * head_dim`.
    pub fn attn_dim(&self) -> u64 {
        self.heads * self.head_dim
    }

    /// Key/value heads (`heads` unless grouped- or multi-query).
    pub fn kv_heads(&self) -> u64 {
        self.kv_heads.unwrap_or(self.heads)
    }

    /// Width of the K (and of the V) projection, `kv_heads * head_dim`.
    pub fn kv_dim(&self) -> u64 {
        self.kv_heads() * self.head_dim
    }

    /// `h×f` matrices per FFN (2, or 3 when gated).
    pub fn ffn_matrices(&self) -> u64 {
        self.ffn_kind.matrices()
    }

    /// Routed experts per layer (1 for a dense model).
    pub fn experts(&self) -> u64 {
        self.experts.unwrap_or(1).max(1)
    }

    /// Routed experts per token (1 for a dense model).
    pub fn top_k(&self) -> u64 {
        if self.is_moe() {
            self.top_k.unwrap_or(1).max(1)
        } else {
            1
        }
    }

    /// Shared (always-active) experts per MoE layer (0 for a dense model).
    pub fn shared_experts(&self) -> u64 {
        if self.is_moe() {
            self.shared_experts.unwrap_or(0)
        } else {
            0
        }
    }

    /// Whether the FFN is a mixture of more than one routed expert.
    pub fn is_moe(&self) -> bool {
        self.experts() > 1
    }

    /// Input and output embeddings share one matrix.
    pub fn tied_embeddings(&self) -> bool {
        self.tied
    }

    /// Attention and FFN run in parallel on the same input.
    pub fn parallel_block(&self) -> bool {
        self.parallel
    }

    /// Position embedding kind.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Whether this is an encoder–decoder model.
    pub fn encoder_decoder(&self) -> bool {
        self.decoder_layers.is_some()
    }

    /// Encoder blocks: all blocks of a bidirectional single stack, none of a decoder.
    pub fn encoder_layers(&self) -> u64 {
        match self.decoder_layers {
            Some(d) => self.layers.saturating_sub(d),
            None if self.causal => 0,
            None => self.layers,
        }
    }

    /// Decoder blocks: all blocks of a causal single stack, none of an encoder.
    pub fn decoder_layers(&self) -> u64 {
        match self.decoder_layers {
            Some(d) => d.min(self.layers),
            None if self.causal => self.layers,
            None => 0,
        }
    }

    /// Check that every dimension is positive and the head and expert splits are
    /// consistent (kv-heads divide heads, top-k ≤ experts, decoder ≤ layers).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |reason: String| ModelError::InvalidConfig {
            model: self.name.clone(),
            reason,
        };
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
                return Err(bad(format!("`{field}` must be positive")));
            }
        }
        for (field, v) in [
            ("kv_heads", self.kv_heads),
            ("experts", self.experts),
            ("top_k", self.top_k),
        ] {
            if v == Some(0) {
                return Err(bad(format!("`{field}` must be positive")));
            }
        }
        let kv = self.kv_heads();
        if kv > self.heads || !self.heads.is_multiple_of(kv) {
            return Err(bad(format!(
                "kv_heads {kv} must divide heads {}",
                self.heads
            )));
        }
        if let Some(k) = self.top_k {
            if k > self.experts() {
                return Err(bad(format!(
                    "top_k {k} exceeds the {} experts",
                    self.experts()
                )));
            }
        }
        if let Some(d) = self.decoder_layers {
            if d == 0 || d >= self.layers {
                return Err(bad(format!(
                    "decoder_layers {d} must be between 1 and layers - 1 ({})",
                    self.layers - 1
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig {
            layers: 2,
            hidden: 64,
            heads: 8,
            head_dim: 8,
            ffn: 256,
            vocab: 100,
            seq: 16,
            ..ModelConfig::default()
        }
    }

    #[test]
    fn dense_defaults_are_the_old_meaning() {
        let c = cfg();
        assert_eq!(c.kv_heads(), 8);
        assert_eq!(c.kv_dim(), 64);
        assert_eq!(c.ffn_matrices(), 2);
        assert_eq!((c.experts(), c.top_k(), c.shared_experts()), (1, 1, 0));
        assert!(c.tied_embeddings() && !c.parallel_block());
        assert_eq!((c.encoder_layers(), c.decoder_layers()), (2, 0));
        c.validate().unwrap();
    }

    #[test]
    fn old_json_without_new_fields_parses() {
        let old = r#"{"name":"x","layers":2,"hidden":64,"heads":8,"head_dim":8,
            "ffn":256,"vocab":100,"seq":16,"causal":true}"#;
        let c: ModelConfig = serde_json::from_str(old).unwrap();
        assert_eq!(
            c,
            ModelConfig {
                causal: true,
                name: "x".into(),
                ..cfg()
            }
        );
    }

    #[test]
    fn contradictory_fields_are_rejected() {
        let e = ModelConfig {
            kv_heads: Some(3),
            ..cfg()
        }
        .validate()
        .unwrap_err();
        assert!(
            e.to_string().contains("kv_heads 3 must divide heads 8"),
            "{e}"
        );
        let e = ModelConfig {
            experts: Some(8),
            top_k: Some(9),
            ..cfg()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("top_k 9 exceeds"), "{e}");
        assert!(ModelConfig {
            kv_heads: Some(0),
            ..cfg()
        }
        .validate()
        .is_err());
        assert!(ModelConfig {
            decoder_layers: Some(2),
            ..cfg()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn encoder_decoder_splits_layers() {
        let c = ModelConfig {
            layers: 48,
            decoder_layers: Some(24),
            ..cfg()
        };
        assert_eq!((c.encoder_layers(), c.decoder_layers()), (24, 24));
        let d = ModelConfig {
            causal: true,
            ..cfg()
        };
        assert_eq!((d.encoder_layers(), d.decoder_layers()), (0, 2));
    }
}
