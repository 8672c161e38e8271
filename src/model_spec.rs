//! Which model to train and whose prices to use, as plain requests: a catalog name, a
//! Hugging Face `config.json`, or a custom shape, each field overridable
//! ([`ModelSpec::resolve`] turns it into a [`ModelConfig`]), and a provider or price
//! sheet ([`PriceSpec::apply`]). `estimate`, `plan` and `compare` build them from
//! their flags; the numbers stay as given so that errors name the flag.

use std::path::PathBuf;

use flopcal_model::catalog::Catalog;
use flopcal_model::flops::Phase;
use flopcal_model::prices::{PriceSheet, RunDate};
use flopcal_model::{FfnKind, ModelConfig};

use crate::{Error, Result};

/// Which model: a catalog name, an HF config file, or a custom shape, with every field
/// overridable (the `--model`, `--hf-config` and shape flags).
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    /// Catalog model name.
    pub model: Option<String>,
    /// A Hugging Face config.json.
    pub hf_config: Option<PathBuf>,
    /// Transformer blocks.
    pub layers: Option<f64>,
    /// Model width.
    pub hidden: Option<f64>,
    /// Attention heads.
    pub heads: Option<f64>,
    /// Width of one head.
    pub head_dim: Option<f64>,
    /// FFN width.
    pub ffn: Option<f64>,
    /// Vocabulary size.
    pub vocab: Option<f64>,
    /// Sequence length.
    pub seq: Option<f64>,
    /// Causal attention.
    pub causal: bool,
    /// Key/value heads.
    pub kv_heads: Option<f64>,
    /// FFN kind.
    pub ffn_kind: Option<FfnKind>,
    /// Separate input and output embeddings.
    pub untied_embeddings: bool,
    /// Routed experts per layer.
    pub experts: Option<f64>,
    /// Experts each token is routed to.
    pub top_k: Option<f64>,
}

/// Whose published prices to use: a provider, and a price sheet of one's own.
#[derive(Debug, Clone, Default)]
pub struct PriceSpec {
    /// Cloud provider whose prices to use (`None`: the first one listed).
    pub price_source: Option<String>,
    /// A price sheet (CSV or TOML) whose prices go before the catalog's.
    pub prices: Option<PathBuf>,
}

/// The run date prices are aged against: `$FLOPCAL_TODAY` (YYYY-MM-DD) or the clock.
pub fn run_date() -> Result<RunDate> {
    Ok(RunDate::today()?)
}

impl PriceSpec {
    /// Add the --prices sheet to `cat`, choose the provider, and check that it sells
    /// `hardware` (when named): an unknown provider, or one without a price for it, is
    /// a one-line error. Returns the sheet (for its on-prem figures).
    pub fn apply(&self, cat: &mut Catalog, hardware: Option<&str>) -> Result<Option<PriceSheet>> {
        let sheet = match &self.prices {
            Some(path) => {
                let s = PriceSheet::load(path, cat, &run_date()?)?;
                s.apply(cat)?;
                Some(s)
            }
            None => None,
        };
        let Some(want) = self.price_source.as_deref() else {
            return Ok(sheet);
        };
        cat.select_price_source(Some(want))?;
        if let Some(name) = hardware {
            let mut hw = cat.hardware(name)?.clone();
            hw.derive(&cat.rules, Some(&want.to_ascii_lowercase()))?;
        }
        Ok(sheet)
    }
}

/// A whole, positive flag value (`--layers 24`), or a usage error naming the flag.
pub fn count(flag: &str, v: f64) -> Result<u64> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::Usage(format!(
            "--{flag} must be a positive number (got {v})"
        )));
    }
    if v.fract() != 0.0 || v > 9.0e15 {
        return Err(Error::Usage(format!(
            "--{flag} must be a whole number (got {v})"
        )));
    }
    Ok(v as u64)
}

/// [`count`] of an optional flag.
pub fn opt_count(flag: &str, v: Option<f64>) -> Result<Option<u64>> {
    v.map(|x| count(flag, x)).transpose()
}

/// An HF config's model, its sequence length from the catalog model of the same shape
/// (its published pre-training length) where there is one, else by the config's own
/// rule; with a line saying which, and any saying how the config was read.
fn hf_base(path: &std::path::Path, cat: &Catalog) -> Result<(ModelConfig, String, Vec<String>)> {
    let (mut cfg, mut notes) = flopcal_model::hf::load_noted(path)?;
    let note = if notes.is_empty() {
        String::new()
    } else {
        notes.remove(0)
    };
    let same = cat.models.iter().find(|m| {
        let c = m.config();
        (c.layers, c.hidden, c.heads, c.ffn, c.vocab, c.kv_heads())
            == (
                cfg.layers,
                cfg.hidden,
                cfg.heads,
                cfg.ffn,
                cfg.vocab,
                cfg.kv_heads(),
            )
    });
    Ok(match same {
        Some(m) => {
            cfg.seq = m.seq;
            let note = format!(
                "seq {}: the training length of the catalog's {}, which has this config's shape (--seq to change)",
                m.seq, m.name
            );
            (cfg, note, notes)
        }
        None => (cfg, note, notes),
    })
}

impl ModelSpec {
    /// Whether any shape flag is given (a custom config or overrides).
    pub fn has_config(&self) -> bool {
        self.layers.is_some() || self.hidden.is_some() || self.heads.is_some()
    }

    /// Whether any flag names a model at all (`--model`, `--hf-config` or a shape).
    pub fn is_given(&self) -> bool {
        self.model.is_some() || self.hf_config.is_some() || self.has_config()
    }

    /// The catalog model's published schedule (empty for a config file or a shape).
    pub fn schedule(&self, cat: &Catalog) -> Result<Vec<Phase>> {
        Ok(match &self.model {
            Some(name) => cat.model(name)?.training.clone(),
            None => vec![],
        })
    }

    /// The model these flags describe: the base (catalog model, config file, or a
    /// custom shape that needs --layers --hidden --heads) with every given flag
    /// applied, validated.
    pub fn resolve(&self, cat: &Catalog) -> Result<ModelConfig> {
        self.resolve_noted(cat).map(|(c, _)| c)
    }

    /// [`ModelSpec::resolve`], with where an `--hf-config`'s training length came from
    /// when `--seq` does not set it, and how the config was read where flopcal does not
    /// know its family by name (empty for every other way of naming a model).
    pub fn resolve_noted(&self, cat: &Catalog) -> Result<(ModelConfig, Vec<String>)> {
        let based = self.model.is_some() || self.hf_config.is_some();
        let mut context = Vec::new();
        let mut cfg = match (&self.model, &self.hf_config) {
            (Some(name), _) => cat.model(name)?.config(),
            (None, Some(path)) => {
                let (cfg, note, reading) = hf_base(path, cat)?;
                context.extend(self.seq.is_none().then_some(note));
                context.extend(reading);
                cfg
            }
            (None, None) => {
                let required = |flag: &str, v: Option<f64>| {
                    count(
                        flag,
                        v.ok_or_else(|| {
                            Error::Usage(
                                "a custom config needs --layers, --hidden and --heads".into(),
                            )
                        })?,
                    )
                };
                let hidden = required("hidden", self.hidden)?;
                let heads = required("heads", self.heads)?;
                ModelConfig {
                    name: "custom".into(),
                    layers: required("layers", self.layers)?,
                    hidden,
                    heads,
                    head_dim: (hidden / heads).max(1),
                    ffn: 4 * hidden,
                    vocab: 32000,
                    seq: 2048,
                    causal: self.causal,
                    ..ModelConfig::default()
                }
            }
        };
        if let Some(v) = opt_count("layers", self.layers)? {
            cfg.layers = v;
        }
        if let Some(v) = opt_count("hidden", self.hidden)? {
            cfg.hidden = v;
        }
        if let Some(v) = opt_count("heads", self.heads)? {
            cfg.heads = v;
        }
        if let Some(v) = opt_count("head-dim", self.head_dim)? {
            cfg.head_dim = v;
        } else if !based || self.hidden.is_some() || self.heads.is_some() {
            cfg.head_dim = (cfg.hidden / cfg.heads).max(1);
        }
        if let Some(v) = opt_count("ffn", self.ffn)? {
            cfg.ffn = v;
        } else if !based {
            cfg.ffn = 4 * cfg.hidden;
        }
        if let Some(v) = opt_count("vocab", self.vocab)? {
            cfg.vocab = v;
        }
        if self.causal {
            cfg.causal = true;
        }
        if let Some(s) = opt_count("seq", self.seq)? {
            cfg.seq = s;
        }
        if let Some(k) = opt_count("kv-heads", self.kv_heads)? {
            cfg.kv_heads = Some(k);
        }
        if let Some(k) = self.ffn_kind {
            cfg.ffn_kind = k;
        }
        if self.untied_embeddings {
            cfg.tied = false;
        }
        if let Some(e) = opt_count("experts", self.experts)? {
            cfg.experts = Some(e);
        }
        if let Some(k) = opt_count("top-k", self.top_k)? {
            cfg.top_k = Some(k);
        }
        cfg.validate().map_err(|e| Error::Usage(e.to_string()))?;
        Ok((cfg, context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ModelSpec {
        ModelSpec::default()
    }

    #[test]
    fn a_custom_shape_gets_the_documented_defaults() {
        let a = ModelSpec {
            layers: Some(2.0),
            hidden: Some(64.0),
            heads: Some(4.0),
            ..args()
        };
        let c = a.resolve(Catalog::embedded()).unwrap();
        assert_eq!((c.head_dim, c.ffn, c.vocab, c.seq), (16, 256, 32000, 2048));
        assert!(c.tied_embeddings() && !c.is_moe());
    }

    #[test]
    fn new_flags_reach_the_config() {
        let a = ModelSpec {
            model: Some("llama2-7b".into()),
            kv_heads: Some(8.0),
            ffn_kind: Some(FfnKind::GeGlu),
            experts: Some(8.0),
            top_k: Some(2.0),
            ..args()
        };
        let c = a.resolve(Catalog::embedded()).unwrap();
        assert_eq!((c.kv_heads(), c.experts(), c.top_k()), (8, 8, 2));
        assert_eq!(c.ffn_kind, FfnKind::GeGlu);
        assert_eq!(c.ffn, 11008, "a catalog model keeps its FFN width");
    }

    #[test]
    fn contradictions_and_bad_numbers_are_usage_errors() {
        let base = ModelSpec {
            layers: Some(2.0),
            hidden: Some(64.0),
            heads: Some(8.0),
            ..args()
        };
        for (a, want) in [
            (
                ModelSpec {
                    kv_heads: Some(3.0),
                    ..base.clone()
                },
                "kv_heads 3 must divide heads 8",
            ),
            (
                ModelSpec {
                    experts: Some(4.0),
                    top_k: Some(5.0),
                    ..base.clone()
                },
                "top_k 5 exceeds",
            ),
            (
                ModelSpec {
                    layers: Some(-1.0),
                    ..base.clone()
                },
                "--layers must be a positive number",
            ),
            (
                ModelSpec {
                    hidden: Some(6.5),
                    ..base.clone()
                },
                "--hidden must be a whole number",
            ),
            (
                ModelSpec {
                    layers: None,
                    ..base.clone()
                },
                "a custom config needs",
            ),
        ] {
            let e = a.resolve(Catalog::embedded()).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }
}
