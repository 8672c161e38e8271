//! The flags that say which model to train, shared by `estimate`, `plan` and
//! `compare`: a catalog name, a Hugging Face `config.json`, or a custom shape, each
//! field overridable, and whose prices to use. They become the plain
//! [`ModelSpec`] and [`PriceSpec`] the library resolves.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use flopcal_model::FfnKind;

use crate::model_spec::{ModelSpec, PriceSpec};

/// FFN kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FfnKindArg {
    /// Two matrices with an activation between (GPT, BERT, OPT).
    Mlp,
    /// Gated, SiLU gate: three matrices (Llama, Mistral, Qwen).
    Swiglu,
    /// Gated, GELU gate: three matrices (Gemma, T5 v1.1).
    Geglu,
}

impl From<FfnKindArg> for FfnKind {
    fn from(k: FfnKindArg) -> FfnKind {
        match k {
            FfnKindArg::Mlp => FfnKind::Mlp,
            FfnKindArg::Swiglu => FfnKind::SwiGlu,
            FfnKindArg::Geglu => FfnKind::GeGlu,
        }
    }
}

/// Which model: `--model NAME`, `--hf-config FILE`, or a custom shape
/// (`--layers --hidden --heads`), with every field overridable.
#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// Catalog model (e.g. bert-large, llama2-70b, mixtral-8x7b); its published schedule
    /// is used unless --tokens or --steps/--batch are given. Config flags override its
    /// fields.
    #[arg(long, conflicts_with = "hf_config")]
    pub model: Option<String>,
    /// A Hugging Face config.json (llama, mistral, mixtral, qwen2, gemma, gemma2, gpt2,
    /// gpt_neox, gpt_bigcode, falcon, bloom, mpt, opt, bert, roberta, t5). Config flags
    /// override its fields.
    #[arg(long, value_name = "FILE")]
    pub hf_config: Option<PathBuf>,
    /// Transformer blocks (custom config, or override of --model).
    #[arg(long)]
    pub layers: Option<f64>,
    /// Model width h (custom config, or override).
    #[arg(long)]
    pub hidden: Option<f64>,
    /// Attention heads (custom config, or override).
    #[arg(long)]
    pub heads: Option<f64>,
    /// Width of one head (default: hidden / heads).
    #[arg(long)]
    pub head_dim: Option<f64>,
    /// FFN width (default: 4 × hidden); per expert with --experts.
    #[arg(long)]
    pub ffn: Option<f64>,
    /// Vocabulary size (default for a custom config: 32000).
    #[arg(long)]
    pub vocab: Option<f64>,
    /// Sequence length (default: the model's).
    #[arg(long, allow_negative_numbers = true)]
    pub seq: Option<f64>,
    /// Causal (decoder) attention: halves the score and P·V FLOPs.
    #[arg(long)]
    pub causal: bool,
    /// Key/value heads: grouped-query attention (1 = multi-query; default: --heads).
    #[arg(long, allow_negative_numbers = true)]
    pub kv_heads: Option<f64>,
    /// FFN kind (a gated FFN has three h×f matrices).
    #[arg(long, value_enum)]
    pub ffn_kind: Option<FfnKindArg>,
    /// Separate input and output embedding matrices (default: tied, or the model's).
    #[arg(long)]
    pub untied_embeddings: bool,
    /// Routed experts per layer (mixture of experts).
    #[arg(long, allow_negative_numbers = true)]
    pub experts: Option<f64>,
    /// Experts each token is routed to (with --experts; default 1).
    #[arg(long, allow_negative_numbers = true, requires = "experts")]
    pub top_k: Option<f64>,
}

/// Which provider's published prices to use, for `compare` and `estimate`.
#[derive(Debug, Clone, Default, Args)]
pub struct PriceArgs {
    /// Cloud provider whose published prices to use (aws, azure, coreweave, gcp,
    /// lambda, nebius, oci, runpod, or one a --prices file names; default: the first
    /// provider the --prices file or the catalog lists for the hardware).
    #[arg(long, value_name = "PROVIDER")]
    pub price_source: Option<String>,
    /// Your own price sheet (CSV, or TOML with [[prices]] tables): dated cloud prices
    /// per chip or per instance (provider, hardware, unit, chips_per_instance,
    /// on_demand, preemptible, committed, currency, date, source) and on-prem rows
    /// (provider = on-prem: purchase_per_chip or purchase_per_server with
    /// chips_per_server, lifetime_years, ops_per_year, watts, pue, kwh_price). Its
    /// prices go before the catalog's; see README "Your own prices".
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

impl ModelArgs {
    /// The plain request these flags make.
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            model: self.model.clone(),
            hf_config: self.hf_config.clone(),
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            head_dim: self.head_dim,
            ffn: self.ffn,
            vocab: self.vocab,
            seq: self.seq,
            causal: self.causal,
            kv_heads: self.kv_heads,
            ffn_kind: self.ffn_kind.map(FfnKind::from),
            untied_embeddings: self.untied_embeddings,
            experts: self.experts,
            top_k: self.top_k,
        }
    }
}

impl PriceArgs {
    /// The plain request these flags make.
    pub fn spec(&self) -> PriceSpec {
        PriceSpec {
            price_source: self.price_source.clone(),
            prices: self.prices.clone(),
        }
    }
}
