//! Published runs with a layout and a published step time or throughput
//! (`src/catalog/steps.toml`): the validation and calibration data of the step model.
//!
//! Each row gives what its source published: the architecture (from the source's
//! table, or a catalog model), the hardware, the device count, the batch, the layout
//! dimensions the source states (the rest are searched, the same rule for every row)
//! and the figure as published. [`StepRun::published_step_s`] turns that figure into
//! seconds per step in code.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::flops::{self, FlopOptions, Recompute};
use crate::layout::{Attention, Zero};
use crate::search::Constraints;

const STEPS_TOML: &str = include_str!("catalog/steps.toml");

/// Layout dimensions a source states; unset ones are searched.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutSpec {
    /// Tensor degree.
    pub tp: Option<u32>,
    /// Context-parallel degree (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cp: Option<u32>,
    /// Pipeline degree.
    pub pp: Option<u32>,
    /// Expert degree.
    pub ep: Option<u32>,
    /// Micro-batch.
    pub microbatch: Option<u32>,
    /// Virtual stages.
    pub virtual_stages: Option<u32>,
    /// Sequence parallelism.
    pub sequence_parallel: Option<bool>,
    /// ZeRO stage (0, 1, 3).
    pub zero: Option<u8>,
    /// Recomputation.
    pub recompute: Option<Recompute>,
    /// With full recomputation, the layers per device recomputed (Megatron's
    /// `--recompute-num-layers` with the block method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recompute_layers: Option<u32>,
    /// Attention kernel.
    pub attention: Option<Attention>,
}

impl LayoutSpec {
    /// As search constraints (uneven pipeline stages allowed: published runs used them).
    pub fn constraints(&self) -> Result<Constraints, ModelError> {
        let zero = match self.zero {
            None => None,
            Some(z) => Some(Zero::from_level(z).ok_or_else(|| {
                ModelError::InvalidInput(format!("zero must be 0, 1 or 3 (got {z})"))
            })?),
        };
        let recompute = crate::layout::block_recompute(
            self.recompute,
            self.recompute_layers,
            ("recompute_layers", "recompute ="),
        )?;
        Ok(Constraints {
            tp: self.tp,
            cp: self.cp,
            pp: self.pp,
            dp: None,
            ep: self.ep,
            microbatch: self.microbatch,
            virtual_stages: self.virtual_stages,
            sequence_parallel: self.sequence_parallel,
            zero,
            recompute,
            recompute_layers: self.recompute_layers,
            attention: self.attention,
            uneven_stages: true,
        })
    }
}

/// The figure as published (exactly one kind per row).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    /// Seconds per iteration.
    pub step_time_s: Option<f64>,
    /// Achieved TFLOP/s per GPU under `flops_convention`.
    pub tflops_per_gpu: Option<f64>,
    /// `megatron-eq3` or `flopcal`.
    pub flops_convention: Option<String>,
    /// Tokens per second, whole run.
    pub tokens_per_s: Option<f64>,
    /// GPU-hours for `tokens`.
    pub gpu_hours: Option<f64>,
    /// Tokens of the `gpu_hours`.
    pub tokens: Option<f64>,
}

/// One published run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRun {
    /// Identifier.
    pub id: String,
    /// Catalog hardware.
    pub hardware: String,
    /// Software era (framework and year), for reading the table.
    pub era: String,
    /// The software stack that ran it (a `--framework` name): the calibration fits one
    /// GEMM factor per stack and hardware class.
    pub framework: String,
    /// Its source for leave-one-source-out: one paper's table, or one vendor release on
    /// one system.
    pub group: String,
    /// A run that trained a model for real (its layout chosen for a long run), not a
    /// throughput table's tuned configuration: such runs that state their layout set
    /// the layout gap.
    #[serde(default)]
    pub production: bool,
    /// Training dtype (default: the hardware's).
    #[serde(default)]
    pub dtype: Option<String>,
    /// Chips.
    pub devices: u64,
    /// Sequences per step.
    pub batch: u64,
    /// Catalog model (or give `arch`).
    #[serde(default)]
    pub model: Option<String>,
    /// Architecture as the source's table gives it.
    #[serde(default)]
    pub arch: Option<toml::Table>,
    /// Sequence length (default: the architecture's).
    #[serde(default)]
    pub seq: Option<u64>,
    /// Layout dimensions the source states.
    #[serde(default)]
    pub layout: LayoutSpec,
    /// The figure.
    pub published: Published,
    /// Where from.
    pub source: String,
    /// When (YYYY-MM).
    pub date: String,
    /// flopcal's reading where the source is ambiguous.
    #[serde(default)]
    pub interpretation: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepsFile {
    runs: Vec<StepRun>,
}

/// The embedded rows (parsed once; the unit tests check the file).
pub fn embedded() -> &'static [StepRun] {
    static RUNS: OnceLock<Vec<StepRun>> = OnceLock::new();
    RUNS.get_or_init(|| {
        toml::from_str::<StepsFile>(STEPS_TOML)
            .map(|f| f.runs)
            .unwrap_or_default()
    })
}

/// A team's own runs (`--own-runs FILE`): `[[runs]]` tables in the format of the embedded
/// ones, each checked here (fields, hardware, framework, figure, date) with one line
/// naming the row and the field; whether its layout fits is checked when it is solved.
/// An id that one of `existing` (the published runs, [`crate::fit::published_runs`]) or
/// an earlier row already has is refused, naming both.
pub fn parse_user_runs(
    text: &str,
    origin: &str,
    cat: &Catalog,
    existing: &[StepRun],
) -> Result<Vec<StepRun>, ModelError> {
    let bad = |what: String| ModelError::InvalidInput(format!("{origin}: {what}"));
    let file: StepsFile = toml::from_str(text).map_err(|e| {
        bad(match e.span() {
            Some(s) => format!(
                "line {}: {}",
                crate::catalog::line_of(text, s.start),
                e.message()
            ),
            None => e.message().to_string(),
        })
    })?;
    if file.runs.is_empty() {
        return Err(bad("no [[runs]] table".into()));
    }
    let mut seen: Vec<&StepRun> = vec![];
    for r in &file.runs {
        let row = |field: &str, why: String| bad(format!("run `{}` {field}: {why}", r.id));
        if r.id.trim().is_empty() {
            return Err(bad("a run without an id".into()));
        }
        if let Some(e) = existing.iter().find(|e| e.id == r.id) {
            return Err(bad(format!(
                "run id `{}` is also an embedded run ({}); give yours another id",
                r.id, e.source
            )));
        }
        if seen.iter().any(|e| e.id == r.id) {
            return Err(bad(format!("run id `{}` appears twice", r.id)));
        }
        cat.hardware(&r.hardware)
            .map_err(|e| row("hardware", e.to_string()))?;
        if crate::framework::lookup(&r.framework)
            .map_err(|e| row("framework", e.to_string()))?
            .is_none()
        {
            return Err(row(
                "framework",
                format!(
                    "name the stack that ran it (one of {})",
                    crate::framework::names().join(", ")
                ),
            ));
        }
        for (field, v) in [("group", &r.group), ("source", &r.source)] {
            if v.trim().is_empty() {
                return Err(row(field, "must not be empty".into()));
            }
        }
        if r.devices == 0 {
            return Err(row("devices", "must be at least 1".into()));
        }
        if r.batch == 0 {
            return Err(row("batch", "must be at least 1".into()));
        }
        if !matches!(crate::prices::parse_date(&r.date), Some((_, _, None))) {
            return Err(row("date", format!("`{}` is not YYYY-MM", r.date)));
        }
        let cfg = r.config(cat).map_err(|e| row("model", e.to_string()))?;
        r.published_step_s(&cfg)
            .map_err(|e| row("published", e.to_string()))?;
        r.layout
            .constraints()
            .map_err(|e| row("layout", e.to_string()))?;
        seen.push(r);
    }
    Ok(file.runs)
}

/// Megatron-LM's FLOPs per iteration with full recomputation (Narayanan et al. 2021,
/// eq. 3): `96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h))`.
pub fn megatron_eq3(batch: f64, seq: f64, layers: f64, hidden: f64, vocab: f64) -> f64 {
    96.0 * batch
        * seq
        * layers
        * hidden
        * hidden
        * (1.0 + seq / (6.0 * hidden) + vocab / (16.0 * layers * hidden))
}

impl StepRun {
    /// The architecture.
    pub fn config(&self, cat: &Catalog) -> Result<ModelConfig, ModelError> {
        match (&self.model, &self.arch) {
            (Some(m), None) => Ok(cat.model(m)?.config()),
            (None, Some(a)) => {
                let mut t = a.clone();
                t.insert("name".into(), toml::Value::String(self.id.clone()));
                let cfg: ModelConfig = t.try_into().map_err(|e: toml::de::Error| {
                    ModelError::InvalidInput(format!("run `{}` arch: {}", self.id, e.message()))
                })?;
                cfg.validate()?;
                Ok(cfg)
            }
            _ => Err(ModelError::InvalidInput(format!(
                "run `{}`: give exactly one of `model` and `arch`",
                self.id
            ))),
        }
    }

    /// Sequence length.
    pub fn seq(&self, cfg: &ModelConfig) -> u64 {
        self.seq.unwrap_or(cfg.seq)
    }

    /// The published figure as seconds per step.
    pub fn published_step_s(&self, cfg: &ModelConfig) -> Result<f64, ModelError> {
        let p = &self.published;
        let s = self.seq(cfg) as f64;
        let b = self.batch as f64;
        let n = self.devices as f64;
        let bad =
            |why: &str| ModelError::InvalidInput(format!("run `{}` published: {why}", self.id));
        let t = match (p.step_time_s, p.tflops_per_gpu, p.tokens_per_s, p.gpu_hours) {
            (Some(t), None, None, None) => t,
            (None, Some(tf), None, None) => {
                let flops = match p.flops_convention.as_deref() {
                    Some("megatron-eq3") => {
                        megatron_eq3(b, s, cfg.layers as f64, cfg.hidden as f64, cfg.vocab as f64)
                    }
                    Some("flopcal") => {
                        flops::train_per_token(cfg, self.seq(cfg), &FlopOptions::default()).total()
                            * b
                            * s
                    }
                    _ => return Err(bad("flops_convention must be megatron-eq3 or flopcal")),
                };
                flops / (tf * 1e12 * n)
            }
            (None, None, Some(tps), None) => b * s / tps,
            (None, None, None, Some(h)) => {
                let tokens = p.tokens.ok_or_else(|| bad("gpu_hours needs tokens"))?;
                let steps = tokens / (b * s);
                h * 3600.0 / (n * steps)
            }
            _ => return Err(bad("give exactly one published figure")),
        };
        if t.is_finite() && t > 0.0 {
            Ok(t)
        } else {
            Err(bad("the figure must be positive"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_rows_parse_and_resolve() {
        let parsed: StepsFile = toml::from_str(STEPS_TOML).unwrap();
        assert_eq!(parsed.runs.len(), embedded().len());
        let cat = Catalog::embedded();
        for r in embedded() {
            let cfg = r.config(cat).unwrap();
            let t = r.published_step_s(&cfg).unwrap();
            assert!(t > 0.0, "{}", r.id);
            cat.hardware(&r.hardware).unwrap();
            r.layout.constraints().unwrap();
        }
    }

    #[test]
    fn narayanan_eq2_parameter_counts_reproduce_table_1() {
        // Eq. 2: P = 12·l·h²·(1 + 13/(12h) + (V + s)/(12·l·h)).
        let want = [
            ("narayanan-1.7b", 1.7),
            ("narayanan-3.6b", 3.6),
            ("narayanan-7.5b", 7.5),
            ("narayanan-18.4b", 18.4),
            ("narayanan-39.1b", 39.1),
            ("narayanan-76.1b", 76.1),
            ("narayanan-145.6b", 145.6),
            ("narayanan-310.1b", 310.1),
            ("narayanan-529.6b", 529.6),
            ("narayanan-1008b", 1008.0),
        ];
        let cat = Catalog::embedded();
        for (id, billions) in want {
            let r = embedded().iter().find(|r| r.id == id).unwrap();
            let c = r.config(cat).unwrap();
            let (l, h, v, s) = (
                c.layers as f64,
                c.hidden as f64,
                c.vocab as f64,
                c.seq as f64,
            );
            let p = 12.0 * l * h * h * (1.0 + 13.0 / (12.0 * h) + (v + s) / (12.0 * l * h));
            let got = p / 1e9;
            // Table 1 rounds to 0.1B (1008B to 1B).
            assert!(
                (got - billions).abs() <= 0.05 + 1e-9
                    || (billions > 1000.0 && (got - billions).abs() < 0.5),
                "{id}: {got}"
            );
        }
    }
}
