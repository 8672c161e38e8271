//! Hugging Face `config.json` → [`ModelConfig`].
//!
//! Every modern checkpoint ships a `config.json` whose `model_type` names the family
//! and whose fields name the shape. The fields differ by family (`hidden_size` vs
//! `n_embd` vs `d_model`), so each family has a reader; all of them end in
//! [`ModelConfig::validate`], so contradictory fields (heads not dividing the width,
//! kv-heads not dividing heads, top-k above the expert count) are refused the same way
//! as on the command line.
//!
//! The training context length is `rope_scaling.original_max_position_embeddings` when
//! present (Llama 3.1 extends 8,192 to 131,072 after pre-training), else the family's
//! maximum-position field up to [`PRETRAIN_SEQ_CAP`]: a maximum position is a context
//! limit, not the length a model was pre-trained at. [`parse_noted`] says which rule
//! chose it; pass `--seq` to say otherwise.

use std::path::Path;

use serde_json::{Map, Value};

use crate::config::{Family, FfnKind, ModelConfig, Norm, Position};
use crate::error::ModelError;
use crate::suggest;

/// The Llama-style `model_type`s: RMSNorm, rotary positions, no biases, a gated FFN.
const LLAMA_STYLE: &[&str] = &[
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "gemma3_text",
    "olmo",
    "olmo2",
    "granite",
    "phi3",
];

/// The other `model_type`s read by name, each with its own reader.
const OTHER_FAMILIES: &[&str] = &[
    "phi",
    "starcoder2",
    "gpt2",
    "gptj",
    "gpt_neo",
    "gpt_neox",
    "gpt_bigcode",
    "falcon",
    "bloom",
    "mpt",
    "opt",
    "bert",
    "roberta",
    "t5",
];

/// The `model_type`s this module reads by name. Any other `model_type` whose config has
/// the standard fields ([`STANDARD_FIELDS`]) is read as a Llama-style decoder, with a
/// note saying so.
pub fn families() -> impl Iterator<Item = &'static str> {
    LLAMA_STYLE.iter().chain(OTHER_FAMILIES).copied()
}

/// The fields of most Hugging Face decoder configs. With all of them present, a config
/// of a `model_type` not in [`families`] is read as a Llama-style decoder.
pub const STANDARD_FIELDS: &[&str] = &[
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "intermediate_size",
    "vocab_size",
];

/// Read and convert the config file at `path`.
pub fn load(path: &Path) -> Result<ModelConfig, ModelError> {
    load_noted(path).map(|(c, _)| c)
}

/// The longest sequence taken from a maximum-position field: 8,192, the length Llama 3
/// pre-trained at (Llama Team 2024, "The Llama 3 Herd of Models", §3.4.1: batches of
/// 8,192-token sequences, the context extended only at the end of pre-training).
pub const PRETRAIN_SEQ_CAP: u64 = 8192;

/// [`parse`] of the file at `path`, with its notes ([`parse_noted`]).
pub fn load_noted(path: &Path) -> Result<(ModelConfig, Vec<String>), ModelError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ModelError::InvalidInput(format!("{shown}: cannot read: {e}")))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hf-config".into());
    parse_noted(&shown, &text, &stem)
}

/// Convert the text of a `config.json` (named `path` in errors); `fallback_name`
/// names the model when the file has no `_name_or_path`.
pub fn parse(path: &str, text: &str, fallback_name: &str) -> Result<ModelConfig, ModelError> {
    parse_noted(path, text, fallback_name).map(|(c, _)| c)
}

/// [`parse`], with notes: first the line saying which rule set the training sequence
/// length, then any saying how a config flopcal does not know by name was read.
pub fn parse_noted(
    path: &str,
    text: &str,
    fallback_name: &str,
) -> Result<(ModelConfig, Vec<String>), ModelError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        ModelError::InvalidInput(format!(
            "{path}:{}:{}: malformed JSON: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let top = v.as_object().ok_or_else(|| {
        ModelError::InvalidInput(format!("{path}: a config.json is a JSON object"))
    })?;
    let name = top
        .get("_name_or_path")
        .and_then(Value::as_str)
        .and_then(|s| s.trim_end_matches('/').rsplit('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| fallback_name.to_string());
    let mut notes = Vec::new();
    // A multimodal checkpoint (Gemma 3, Llama 4, Mistral 3, LLaVA) keeps its language
    // model's shape under `text_config`: that is what is priced, and the note says the
    // vision encoder is not.
    let obj = match top.get("text_config") {
        Some(Value::Object(text_cfg)) if text_cfg.contains_key("hidden_size") => {
            notes.push(format!(
                "model: the language model under `text_config` (model_type `{}`); the vision encoder is left out",
                top.get("model_type").and_then(Value::as_str).unwrap_or("?")
            ));
            text_cfg
        }
        _ => top,
    };
    let r = Reader { path, obj };
    // A `text_config` without its own `model_type` goes by the checkpoint's.
    let model_type = match obj.get("model_type") {
        None if !std::ptr::eq(obj, top) => Reader { path, obj: top }.string("model_type")?,
        _ => r.string("model_type")?,
    };
    if let Some(rank) = r.opt(&["kv_lora_rank"])? {
        return Err(r.err(format!(
            "model_type `{model_type}` uses multi-head latent attention (kv_lora_rank {rank}), which the block model does not price; describe an equivalent shape with --layers --hidden --heads --kv-heads --ffn --experts --top-k instead of --hf-config"
        )));
    }
    let mut cfg = match model_type.as_str() {
        t if LLAMA_STYLE.contains(&t) => r.llama(t)?,
        "phi" => r.parallel_rotary("phi", &HF)?,
        "starcoder2" => r.starcoder2()?,
        "gptj" => r.parallel_rotary("gptj", &GPT2)?,
        "gpt_neo" => r.gpt_neo()?,
        "gpt2" => r.gpt2()?,
        "gpt_neox" => r.neox()?,
        "gpt_bigcode" => r.bigcode()?,
        "falcon" => r.falcon()?,
        "bloom" => r.bloom()?,
        "mpt" => r.mpt()?,
        "opt" => r.opt_family()?,
        "bert" | "roberta" => r.bert()?,
        "t5" => r.t5()?,
        other if STANDARD_FIELDS.iter().all(|k| r.has(k)) => {
            let cfg = r.llama(other)?;
            notes.push(format!(
                "model: model_type `{other}` is not one flopcal knows by name; read as a Llama-style decoder from its standard fields ({}): RMSNorm, rotary positions, no biases, {} FFN{}",
                STANDARD_FIELDS.join(", "),
                cfg.ffn_kind.as_str(),
                if cfg.is_moe() { ", experts as given" } else { "" }
            ));
            cfg
        }
        other => {
            let known: Vec<String> = families().map(str::to_string).collect();
            let hint = suggest::did_you_mean(other, &known);
            return Err(ModelError::InvalidInput(format!(
                "{path}: unknown model_type `{other}`{hint} (known: {}; any other is read as a Llama-style decoder when it has {})",
                known.join(", "),
                STANDARD_FIELDS.join(", ")
            )));
        }
    };
    cfg.name = name;
    let note = if r.rope_original().is_some() {
        format!(
            "seq {}: the config's rope_scaling.original_max_position_embeddings, the length before context extension (--seq to change)",
            cfg.seq
        )
    } else if cfg.seq > PRETRAIN_SEQ_CAP {
        let limit = cfg.seq;
        cfg.seq = PRETRAIN_SEQ_CAP;
        format!(
            "seq {PRETRAIN_SEQ_CAP}: the config's maximum position ({limit}) is a context limit, not a training length; capped at the length Llama 3 pre-trained at (Llama 3 paper, sec. 3.4.1) (--seq to change)"
        )
    } else {
        format!(
            "seq {}: the config's maximum position field (--seq to change)",
            cfg.seq
        )
    };
    cfg.validate()
        .map_err(|e| ModelError::InvalidInput(format!("{path}: {e}")))?;
    notes.insert(0, note);
    Ok((cfg, notes))
}

/// Where a family keeps its shape fields (the first key present wins).
struct Keys {
    hidden: &'static [&'static str],
    heads: &'static [&'static str],
    layers: &'static [&'static str],
    ffn: &'static [&'static str],
    /// Without it the FFN is 4 × hidden.
    ffn_required: bool,
    seq: &'static [&'static str],
    seq_default: u64,
}

/// The names most Hugging Face configs use.
const HF: Keys = Keys {
    hidden: &["hidden_size"],
    heads: &["num_attention_heads"],
    layers: &["num_hidden_layers"],
    ffn: &["intermediate_size"],
    ffn_required: true,
    seq: &["max_position_embeddings"],
    seq_default: 2048,
};

/// GPT-2's names (also GPT-BigCode's).
const GPT2: Keys = Keys {
    hidden: &["n_embd"],
    heads: &["n_head"],
    layers: &["n_layer"],
    ffn: &["n_inner"],
    ffn_required: false,
    seq: &["n_positions", "n_ctx"],
    seq_default: 1024,
};

struct Reader<'a> {
    path: &'a str,
    obj: &'a Map<String, Value>,
}

impl Reader<'_> {
    fn err(&self, msg: String) -> ModelError {
        ModelError::InvalidInput(format!("{}: {msg}", self.path))
    }

    /// Whether `key` is present and not null.
    fn has(&self, key: &str) -> bool {
        !matches!(self.obj.get(key), None | Some(Value::Null))
    }

    fn string(&self, key: &str) -> Result<String, ModelError> {
        match self.obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.err(format!("`{key}` must be a string (got {other})"))),
            None => Err(self.err(format!("missing required field `{key}`"))),
        }
    }

    /// The first of `keys` present (null counts as absent), as a positive integer.
    fn opt(&self, keys: &[&str]) -> Result<Option<u64>, ModelError> {
        for k in keys {
            match self.obj.get(*k) {
                None | Some(Value::Null) => continue,
                Some(v) => {
                    return match v.as_u64() {
                        Some(0) | None => {
                            Err(self
                                .err(format!("`{k}` must be a positive whole number (got {v})")))
                        }
                        Some(n) => Ok(Some(n)),
                    }
                }
            }
        }
        Ok(None)
    }

    fn req(&self, family: &str, keys: &[&str]) -> Result<u64, ModelError> {
        self.opt(keys)?.ok_or_else(|| {
            self.err(format!(
                "model_type `{family}` needs `{}`: missing required field",
                keys.join("` or `")
            ))
        })
    }

    fn flag(&self, key: &str, default: bool) -> Result<bool, ModelError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.err(format!("`{key}` must be true or false (got {other})"))),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if x > 0.0 => Ok(Some(x)),
                _ => Err(self.err(format!("`{key}` must be a positive number (got {v})"))),
            },
        }
    }

    /// `head_dim` as given, else `hidden / heads`, refusing heads that do not divide it.
    fn head_dim(&self, hidden: u64, heads: u64, given: Option<u64>) -> Result<u64, ModelError> {
        match given {
            Some(d) => Ok(d),
            None if hidden.is_multiple_of(heads) => Ok(hidden / heads),
            None => Err(self.err(format!(
                "{heads} attention heads do not divide hidden size {hidden}"
            ))),
        }
    }

    /// `rope_scaling.original_max_position_embeddings`, when positive.
    fn rope_original(&self) -> Option<u64> {
        self.obj
            .get("rope_scaling")
            .and_then(|r| r.get("original_max_position_embeddings"))
            .and_then(Value::as_u64)
            .filter(|n| *n > 0)
    }

    /// Training context: the pre-extension length of a RoPE-scaled model, else `keys`.
    fn seq(&self, keys: &[&str], default: u64) -> Result<u64, ModelError> {
        Ok(match self.rope_original() {
            Some(n) => n,
            None => self.opt(keys)?.unwrap_or(default),
        })
    }

    /// The shape fields every family has, under the family's names: width, heads
    /// (and `head_dim` when given), layers, FFN width (4 × width when optional and
    /// absent), vocabulary and context; causal unless the family says otherwise.
    fn shape(&self, t: &str, k: &Keys) -> Result<ModelConfig, ModelError> {
        let hidden = self.req(t, k.hidden)?;
        let heads = self.req(t, k.heads)?;
        let ffn = if k.ffn_required {
            self.req(t, k.ffn)?
        } else {
            self.opt(k.ffn)?.unwrap_or(4 * hidden)
        };
        Ok(ModelConfig {
            layers: self.req(t, k.layers)?,
            hidden,
            heads,
            head_dim: self.head_dim(hidden, heads, self.opt(&["head_dim"])?)?,
            ffn,
            vocab: self.req(t, &["vocab_size"])?,
            seq: self.seq(k.seq, k.seq_default)?,
            causal: true,
            ..ModelConfig::default()
        })
    }

    /// Llama and its descendants: RMSNorm, rotary, no biases, gated FFN.
    fn llama(&self, t: &str) -> Result<ModelConfig, ModelError> {
        let gemma = t.starts_with("gemma");
        let act = self
            .obj
            .get("hidden_activation")
            .or_else(|| self.obj.get("hidden_act"))
            .and_then(Value::as_str)
            .unwrap_or(if gemma { "gelu" } else { "silu" });
        let experts = self
            .opt(&["num_local_experts", "num_experts", "n_routed_experts"])?
            .filter(|&n| n > 1);
        let base = self.shape(t, &HF)?;
        let (ffn, shared_experts) = match experts {
            Some(_) => self.expert_widths(base.ffn)?,
            None => (base.ffn, None),
        };
        Ok(ModelConfig {
            family: Family::Llama,
            kv_heads: self.opt(&["num_key_value_heads"])?,
            ffn_kind: if act.starts_with("gelu") {
                FfnKind::GeGlu
            } else {
                FfnKind::SwiGlu
            },
            experts,
            top_k: match experts {
                Some(_) => self.opt(&["num_experts_per_tok"])?,
                None => None,
            },
            shared_experts,
            tied: self.flag("tie_word_embeddings", gemma)?,
            position: Position::Rotary,
            biases: false,
            norm: Norm::RmsNorm,
            ffn,
            ..base
        })
    }

    /// A mixture of experts' expert width (`moe_intermediate_size` where the config
    /// gives one, as Qwen-MoE and DeepSeekMoE do, else the FFN width) and its shared
    /// experts in units of that width: `n_shared_experts`, or Qwen-MoE's one shared
    /// expert `shared_expert_intermediate_size` wide.
    fn expert_widths(&self, ffn: u64) -> Result<(u64, Option<u64>), ModelError> {
        let width = self.opt(&["moe_intermediate_size"])?.unwrap_or(ffn);
        let shared = match self.opt(&["n_shared_experts"])? {
            Some(n) => Some(n),
            None => match self.opt(&["shared_expert_intermediate_size"])? {
                Some(w) if w.is_multiple_of(width) => Some(w / width),
                Some(w) => {
                    return Err(self.err(format!(
                        "shared_expert_intermediate_size {w} is not a whole number of experts {width} wide"
                    )))
                }
                None => None,
            },
        };
        Ok((width, shared))
    }

    /// GPT-J (GPT-2's names) and Phi-1/2 (the standard names): plain GELU MLP,
    /// attention and FFN in parallel, rotary positions, biases, LayerNorm, untied.
    fn parallel_rotary(&self, t: &str, keys: &Keys) -> Result<ModelConfig, ModelError> {
        Ok(ModelConfig {
            parallel: true,
            tied: self.flag("tie_word_embeddings", false)?,
            position: Position::Rotary,
            ..self.shape(t, keys)?
        })
    }

    /// StarCoder2: plain GELU MLP, grouped-query attention, biases, LayerNorm.
    fn starcoder2(&self) -> Result<ModelConfig, ModelError> {
        Ok(ModelConfig {
            kv_heads: self.opt(&["num_key_value_heads"])?,
            tied: self.flag("tie_word_embeddings", true)?,
            position: Position::Rotary,
            biases: self.flag("use_bias", true)?,
            ..self.shape("starcoder2", &HF)?
        })
    }

    /// GPT-Neo: learned positions, a 4h MLP unless `intermediate_size` says otherwise.
    fn gpt_neo(&self) -> Result<ModelConfig, ModelError> {
        let keys = Keys {
            heads: &["num_heads"],
            layers: &["num_layers"],
            ffn_required: false,
            ..HF
        };
        Ok(ModelConfig {
            family: Family::Gpt,
            tied: self.flag("tie_word_embeddings", true)?,
            ..self.shape("gpt_neo", &keys)?
        })
    }

    fn gpt2(&self) -> Result<ModelConfig, ModelError> {
        Ok(ModelConfig {
            family: Family::Gpt,
            tied: self.flag("tie_word_embeddings", true)?,
            ..self.shape("gpt2", &GPT2)?
        })
    }

    fn neox(&self) -> Result<ModelConfig, ModelError> {
        let keys = Keys {
            ffn_required: false,
            ..HF
        };
        Ok(ModelConfig {
            tied: self.flag("tie_word_embeddings", false)?,
            parallel: self.flag("use_parallel_residual", true)?,
            position: Position::Rotary,
            ..self.shape("gpt_neox", &keys)?
        })
    }

    fn bigcode(&self) -> Result<ModelConfig, ModelError> {
        let keys = Keys {
            seq: &["n_positions"],
            seq_default: 2048,
            ..GPT2
        };
        Ok(ModelConfig {
            family: Family::Gpt,
            kv_heads: self.flag("multi_query", true)?.then_some(1),
            ..self.shape("gpt_bigcode", &keys)?
        })
    }

    fn falcon(&self) -> Result<ModelConfig, ModelError> {
        let keys = Keys {
            heads: &["num_attention_heads", "n_head"],
            layers: &["num_hidden_layers", "n_layer"],
            ffn: &["ffn_hidden_size"],
            ffn_required: false,
            ..HF
        };
        let new_arch = self.flag("new_decoder_architecture", false)?;
        let kv_heads = if new_arch {
            self.opt(&["num_kv_heads", "n_head_kv"])?
        } else if self.flag("multi_query", true)? {
            Some(1)
        } else {
            None
        };
        Ok(ModelConfig {
            kv_heads,
            tied: self.flag("tie_word_embeddings", true)?,
            parallel: new_arch || self.flag("parallel_attn", true)?,
            position: if self.flag("alibi", false)? {
                Position::None
            } else {
                Position::Rotary
            },
            biases: self.flag("bias", false)?,
            ..self.shape("falcon", &keys)?
        })
    }

    fn bloom(&self) -> Result<ModelConfig, ModelError> {
        // BLOOM's config has no context field; it was trained at 2,048 (Le Scao et al.
        // 2022, section 3.5). Its FFN is 4h.
        let keys = Keys {
            hidden: &["hidden_size", "n_embed"],
            heads: &["n_head", "num_attention_heads"],
            layers: &["n_layer", "num_hidden_layers"],
            ffn: &[],
            ffn_required: false,
            seq: &["seq_length"],
            seq_default: 2048,
        };
        Ok(ModelConfig {
            position: Position::None,
            ..self.shape("bloom", &keys)?
        })
    }

    fn mpt(&self) -> Result<ModelConfig, ModelError> {
        let keys = Keys {
            hidden: &["d_model"],
            heads: &["n_heads"],
            layers: &["n_layers"],
            ffn: &[],
            ffn_required: false,
            seq: &["max_seq_len"],
            seq_default: 2048,
        };
        let base = self.shape("mpt", &keys)?;
        let ratio = self.float("expansion_ratio")?.unwrap_or(4.0);
        let alibi = self
            .obj
            .get("attn_config")
            .and_then(|a| a.get("alibi"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(ModelConfig {
            ffn: (ratio * base.hidden as f64).round() as u64,
            position: if alibi {
                Position::None
            } else {
                Position::Learned
            },
            biases: !self.flag("no_bias", true)?,
            ..base
        })
    }

    fn opt_family(&self) -> Result<ModelConfig, ModelError> {
        let keys = Keys {
            ffn: &["ffn_dim"],
            ..HF
        };
        Ok(ModelConfig {
            family: Family::Gpt,
            tied: self.flag("tie_word_embeddings", true)?,
            ..self.shape("opt", &keys)?
        })
    }

    fn bert(&self) -> Result<ModelConfig, ModelError> {
        let keys = Keys {
            seq_default: 512,
            ..HF
        };
        Ok(ModelConfig {
            causal: false,
            family: Family::Bert,
            ..self.shape("bert", &keys)?
        })
    }

    fn t5(&self) -> Result<ModelConfig, ModelError> {
        let t = "t5";
        let enc = self.req(t, &["num_layers"])?;
        let dec = self.opt(&["num_decoder_layers"])?.unwrap_or(enc);
        let proj = self
            .obj
            .get("feed_forward_proj")
            .and_then(Value::as_str)
            .unwrap_or("relu");
        Ok(ModelConfig {
            layers: enc + dec,
            hidden: self.req(t, &["d_model"])?,
            heads: self.req(t, &["num_heads"])?,
            head_dim: self.req(t, &["d_kv"])?,
            ffn: self.req(t, &["d_ff"])?,
            vocab: self.req(t, &["vocab_size"])?,
            seq: self.seq(&["n_positions"], 512)?,
            causal: false,
            family: Family::T5,
            ffn_kind: if proj.starts_with("gated") {
                FfnKind::GeGlu
            } else {
                FfnKind::Mlp
            },
            tied: self.flag("tie_word_embeddings", true)?,
            position: Position::Relative,
            decoder_layers: Some(dec),
            biases: false,
            norm: Norm::RmsNorm,
            ..ModelConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flops::params;

    fn fixture_path(name: &str) -> String {
        format!(
            "{}/../tests/fixtures/hf/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn fixture(name: &str) -> ModelConfig {
        load(Path::new(&fixture_path(name))).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn fixture_text(name: &str) -> String {
        std::fs::read_to_string(fixture_path(name)).unwrap()
    }

    fn within(got: f64, want: f64, tol: f64) -> bool {
        ((got - want) / want).abs() < tol
    }

    /// Each fixture is the published `config.json` of the checkpoint (its shape fields),
    /// and its parameter count is the one the model card or paper publishes.
    #[test]
    fn every_family_parses_and_matches_its_published_parameter_count() {
        for (name, want) in [
            ("llama-2-7b", 6.738e9),
            ("llama-2-70b", 68.98e9),
            ("llama-3.1-8b", 8.03e9),
            ("mistral-7b-v0.1", 7.24e9),
            ("mixtral-8x7b-v0.1", 46.7e9),
            ("qwen2.5-7b", 7.62e9),
            ("gemma-7b", 8.54e9),
            ("gemma-2-9b", 9.24e9),
            ("gpt2", 124.44e6),
            ("pythia-70m", 70.43e6),
            ("falcon-7b", 6.92e9),
            ("bloom", 176.25e9),
            ("mpt-7b", 6.65e9),
            ("opt-1.3b", 1.316e9),
            ("bert-base-uncased", 109.48e6),
            ("roberta-base", 124.65e6),
            ("t5-11b", 11.31e9),
            // EleutherAI's GPT-J-6B model card: 6,053,381,344 parameters.
            ("gpt-j-6b", 6.053e9),
            // Abdin et al. 2024, "Phi-3 Technical Report", §1: phi-3-mini, 3.8B.
            ("phi-3-mini-4k", 3.8e9),
            // Qwen Team 2025, "Qwen3 Technical Report", Table 2: 30.5B total.
            ("qwen3-30b-a3b", 30.5e9),
        ] {
            let cfg = fixture(name);
            let got = params(&cfg).total;
            assert!(within(got, want, 0.01), "{name}: {got:.4e} vs {want:.4e}");
        }
    }

    #[test]
    fn mixtral_is_twelve_point_nine_billion_active() {
        let cfg = fixture("mixtral-8x7b-v0.1");
        assert_eq!((cfg.experts(), cfg.top_k()), (8, 2));
        // Mistral AI, "Mixtral of experts" (2024-01): 46.7B total, 12.9B active.
        assert!(within(params(&cfg).active, 12.9e9, 0.01));
    }

    #[test]
    fn qwen3_moe_reads_its_expert_width_and_is_three_point_three_billion_active() {
        let cfg = fixture("qwen3-30b-a3b");
        assert_eq!((cfg.experts(), cfg.top_k(), cfg.ffn), (128, 8, 768));
        // Qwen3 Technical Report, Table 2: 3.3B activated.
        assert!(within(params(&cfg).active, 3.3e9, 0.02));
    }

    fn read(json: &str) -> Result<(ModelConfig, Vec<String>), ModelError> {
        parse_noted("c.json", json, "x")
    }

    const STANDARD: &str = r#""hidden_size": 256, "num_attention_heads": 4,
        "num_hidden_layers": 2, "intermediate_size": 1024, "vocab_size": 1000"#;

    #[test]
    fn each_named_family_reads_its_block_as_the_family_builds_it() {
        let cfg = |t: &str, extra: &str| {
            read(&format!(r#"{{"model_type": "{t}", {STANDARD}{extra}}}"#))
                .unwrap_or_else(|e| panic!("{t}: {e}"))
                .0
        };
        for t in ["olmo", "olmo2", "qwen3", "granite", "phi3"] {
            let c = cfg(t, "");
            assert_eq!(
                (c.ffn_kind, c.norm, c.biases),
                (FfnKind::SwiGlu, Norm::RmsNorm, false),
                "{t}"
            );
        }
        let phi = cfg("phi", r#", "hidden_act": "gelu_new""#);
        assert_eq!(
            (phi.ffn_kind, phi.parallel, phi.biases),
            (FfnKind::Mlp, true, true)
        );
        let sc2 = cfg("starcoder2", r#", "num_key_value_heads": 2"#);
        assert_eq!(
            (sc2.ffn_kind, sc2.kv_heads(), sc2.biases),
            (FfnKind::Mlp, 2, true)
        );
        // Qwen1.5-MoE: one shared expert four routed experts wide.
        let qmoe = cfg(
            "qwen2_moe",
            r#", "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 128,
            "shared_expert_intermediate_size": 512"#,
        );
        assert_eq!(
            (
                qmoe.experts(),
                qmoe.top_k(),
                qmoe.ffn,
                qmoe.shared_experts()
            ),
            (8, 2, 128, 4)
        );
        let neo = read(
            r#"{"model_type": "gpt_neo", "hidden_size": 256, "num_heads": 4, "num_layers": 2,
            "intermediate_size": null, "vocab_size": 1000}"#,
        )
        .unwrap()
        .0;
        assert_eq!(
            (neo.ffn, neo.position, neo.parallel),
            (1024, Position::Learned, false)
        );
        let gptj = fixture("gpt-j-6b");
        assert_eq!(
            (gptj.ffn, gptj.position, gptj.parallel),
            (16384, Position::Rotary, true)
        );
    }

    #[test]
    fn an_unnamed_type_with_the_standard_fields_is_read_as_llama_style_and_says_so() {
        let (cfg, notes) = read(&format!(
            r#"{{"model_type": "stablelm", {STANDARD}, "num_key_value_heads": 2}}"#
        ))
        .unwrap();
        assert_eq!(
            (cfg.ffn_kind, cfg.kv_heads(), cfg.layers),
            (FfnKind::SwiGlu, 2, 2)
        );
        assert!(notes[0].starts_with("seq "), "{notes:?}");
        assert!(
            notes[1].contains("model_type `stablelm` is not one flopcal knows by name")
                && notes[1].contains("swiglu FFN"),
            "{notes:?}"
        );
        // Without the standard fields it is still refused, naming the rule.
        let e = read(r#"{"model_type": "stablelm", "hidden_size": 256}"#).unwrap_err();
        assert!(
            e.to_string().contains("unknown model_type `stablelm`"),
            "{e}"
        );
        assert!(e.to_string().contains("when it has hidden_size"), "{e}");
    }

    #[test]
    fn a_multimodal_config_is_read_from_its_text_config_and_says_so() {
        let (cfg, notes) = read(&format!(
            r#"{{"model_type": "gemma3", "vision_config": {{"hidden_size": 1152}},
            "text_config": {{"model_type": "gemma3_text", {STANDARD}}}}}"#
        ))
        .unwrap();
        assert_eq!((cfg.hidden, cfg.ffn_kind), (256, FfnKind::GeGlu));
        assert!(
            notes.iter().any(|n| n.contains("under `text_config`")),
            "{notes:?}"
        );
    }

    #[test]
    fn multi_head_latent_attention_is_refused_with_what_to_give_instead() {
        let e = read(&format!(
            r#"{{"model_type": "deepseek_v3", {STANDARD}, "kv_lora_rank": 512}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("c.json: model_type `deepseek_v3` uses multi-head latent attention"),
            "{e}"
        );
        assert!(e.contains("instead of --hf-config"), "{e}");
    }

    #[test]
    fn llama_3_1_trains_at_its_pre_extension_context() {
        assert_eq!(fixture("llama-3.1-8b").seq, 8192);
        assert_eq!(fixture("llama-2-70b").kv_heads(), 8);
        assert_eq!(fixture("starcoderbase-1b").kv_heads(), 1);
    }

    #[test]
    fn a_maximum_position_above_8192_is_a_context_limit_and_is_capped_with_a_note() {
        let noted = |name: &str| {
            let (cfg, notes) = load_noted(Path::new(&fixture_path(name))).unwrap();
            (cfg, notes[0].clone())
        };
        // Mistral 7B: max_position_embeddings 32,768; Qwen2.5 7B: 131,072.
        for name in ["mistral-7b-v0.1", "qwen2.5-7b"] {
            let (cfg, note) = noted(name);
            assert_eq!(cfg.seq, PRETRAIN_SEQ_CAP, "{name}");
            assert!(
                note.contains("is a context limit, not a training length"),
                "{note}"
            );
        }
        let (cfg, note) = noted("llama-3.1-8b");
        assert_eq!(cfg.seq, 8192);
        assert!(note.contains("original_max_position_embeddings"), "{note}");
        // At or below the cap the field stands, and the note says it is the field.
        let (cfg, note) = noted("llama-2-7b");
        assert_eq!(cfg.seq, 4096);
        assert!(
            note.starts_with("seq 4096: the config's maximum position field"),
            "{note}"
        );
    }

    #[test]
    fn the_name_is_the_last_segment_of_name_or_path() {
        let cfg = |name: &str| {
            let text =
                fixture_text("gpt2").replacen('{', &format!("{{\"_name_or_path\": \"{name}\","), 1);
            parse("c.json", &text, "fallback").unwrap().name
        };
        assert_eq!(cfg("openai-community/GPT2"), "gpt2");
        assert_eq!(cfg("./checkpoints/my-model/"), "my-model");
        assert_eq!(cfg("/"), "fallback");
    }

    #[test]
    fn malformed_json_names_file_line_and_column() {
        let e = parse("c.json", "{\n  \"model_type\": \"llama\",\n  oops\n}", "x").unwrap_err();
        assert!(
            e.to_string().starts_with("c.json:3:3: malformed JSON"),
            "{e}"
        );
    }

    #[test]
    fn unknown_type_and_missing_field_are_named() {
        let e = parse("c.json", r#"{"model_type": "lama"}"#, "x").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown model_type `lama` (did you mean `llama`?)"),
            "{e}"
        );
        let e = parse(
            "c.json",
            r#"{"model_type": "llama", "hidden_size": 64}"#,
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs `num_attention_heads`"), "{e}");
        let e = parse("c.json", r#"{"hidden_size": 64}"#, "x").unwrap_err();
        assert!(
            e.to_string()
                .contains("missing required field `model_type`"),
            "{e}"
        );
    }

    #[test]
    fn contradictory_and_non_positive_fields_are_refused() {
        let base = |extra: &str| {
            format!(
                r#"{{"model_type": "mixtral", "num_hidden_layers": 2, "vocab_size": 100,
                "intermediate_size": 256, {extra}}}"#
            )
        };
        let cases = [
            (
                r#""hidden_size": 100, "num_attention_heads": 3"#,
                "do not divide hidden size",
            ),
            (
                r#""hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 3"#,
                "kv_heads 3 must divide heads 8",
            ),
            (
                r#""hidden_size": 64, "num_attention_heads": 8, "num_local_experts": 4, "num_experts_per_tok": 5"#,
                "top_k 5 exceeds the 4 experts",
            ),
            (
                r#""hidden_size": -64, "num_attention_heads": 8"#,
                "`hidden_size` must be a positive whole number",
            ),
            (
                r#""hidden_size": 0, "num_attention_heads": 8"#,
                "`hidden_size` must be a positive whole number",
            ),
        ];
        for (extra, want) in cases {
            let e = parse("c.json", &base(extra), "x").unwrap_err().to_string();
            assert!(e.contains(want), "{extra}: {e}");
            assert!(e.starts_with("c.json: "), "{e}");
        }
    }
}
