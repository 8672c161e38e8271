//! The catalog: hardware (peaks, memory, power, prices), models (configs and training
//! schedules), published training runs and AI21's published cost ranges.
//!
//! Three TOML files are embedded at build time (`src/catalog/{hardware,models,runs}.toml`).
//! A user file with the same sections (`[[hardware]]`, `[[models]]`, `[[runs]]`,
//! `[[ranges]]`) overrides entries by name (or id) and adds new ones; see
//! [`Catalog::load`]. Every figure carries a source and a date.

use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::flops::Phase;
use crate::suggest;

mod gemm_table;
mod hardware;
mod models;
mod runs;

pub use gemm_table::{parse_gemm_table, GemmPoint, GemmTable};
pub use hardware::{
    Figure, Hardware, LinkTier, PeakFigure, PeerCeiling, Price, PriceKind, Rules, Unit, ASSUMPTION,
};
pub use models::{ModelEntry, PublishedParams, PARAMS_TOLERANCE};
pub use runs::{CostRange, PriceBasis, Run};

/// Environment variable naming a catalog override file (the `--catalog` flag wins).
pub const CATALOG_ENV: &str = "FLOPCAL_CATALOG";

const HARDWARE_TOML: &str = include_str!("catalog/hardware.toml");
const MODELS_TOML: &str = include_str!("catalog/models.toml");
const RUNS_TOML: &str = include_str!("catalog/runs.toml");

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    hardware: Vec<Hardware>,
    #[serde(default)]
    models: Vec<ModelEntry>,
    #[serde(default)]
    runs: Vec<Run>,
    #[serde(default)]
    ranges: Vec<CostRange>,
    #[serde(default)]
    rules: Option<Rules>,
}

/// The merged catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Catalog {
    /// Hardware entries.
    pub hardware: Vec<Hardware>,
    /// Model entries.
    pub models: Vec<ModelEntry>,
    /// Published runs.
    pub runs: Vec<Run>,
    /// Published cost ranges.
    pub ranges: Vec<CostRange>,
    /// Factors of the derived figures.
    pub rules: Rules,
    /// The provider prices are chosen from (`None`: each row's first).
    pub price_source: Option<String>,
}

fn norm(s: &str) -> String {
    s.trim().to_ascii_lowercase().replace('_', "-")
}

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(1)
}

/// The `key` of a `key = value` line, if the line is one.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (k, _) = l.split_once('=')?;
    let k = k.trim().trim_start_matches('{').trim();
    (!k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    .then(|| k.to_string())
}

fn parse_file(path: &str, text: &str) -> Result<CatalogFile, ModelError> {
    toml::from_str::<CatalogFile>(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let msg = e.message().trim().to_string();
        let field = extract_backticked(&msg)
            .or_else(|| line.and_then(|l| key_on_line(text, l)))
            .unwrap_or_else(|| "-".to_string());
        ModelError::BadCatalog {
            path: path.to_string(),
            line,
            field,
            reason: msg,
        }
    })
}

fn extract_backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// Where an entry's field is, for semantic errors: the line of `field` after the line
/// that names the entry (`name = "x"` or `id = "x"`).
fn locate(text: &str, entry: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let name_pat = |l: &str| {
        let t = l.trim();
        (t.starts_with("name") || t.starts_with("id")) && t.contains(&format!("\"{entry}\""))
    };
    let start = lines.iter().position(|l| name_pat(l))?;
    for (i, l) in lines.iter().enumerate().skip(start) {
        if i > start && l.trim().starts_with("[[") {
            break;
        }
        let t = l.trim_start();
        if t.starts_with(field)
            || t.contains(&format!(" {field} "))
            || t.contains(&format!("{{ {field}"))
        {
            return Some(i + 1);
        }
    }
    Some(start + 1)
}

impl Catalog {
    /// The embedded catalog (parsed once).
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            // The embedded files are checked by the unit tests; failing here is a bug.
            Self::parse_embedded().expect("embedded catalog is valid")
        })
    }

    fn parse_embedded() -> Result<Catalog, ModelError> {
        let hw = parse_file("<embedded>/hardware.toml", HARDWARE_TOML)?;
        let rules = hw.rules.clone().ok_or_else(|| ModelError::BadCatalog {
            path: "<embedded>/hardware.toml".into(),
            line: None,
            field: "rules".into(),
            reason: "the embedded catalog needs a [rules] table".into(),
        })?;
        let mut cat = Catalog {
            hardware: vec![],
            models: vec![],
            runs: vec![],
            ranges: vec![],
            rules,
            price_source: None,
        };
        cat.merge(hw);
        cat.validate("<embedded>/hardware.toml", HARDWARE_TOML)?;
        for (name, text) in [
            ("<embedded>/models.toml", MODELS_TOML),
            ("<embedded>/runs.toml", RUNS_TOML),
        ] {
            let f = parse_file(name, text)?;
            cat.merge(f);
            cat.validate(name, text)?;
        }
        Ok(cat)
    }

    /// The embedded catalog, overridden by the file at `path` if given.
    pub fn load(path: Option<&Path>) -> Result<Catalog, ModelError> {
        let mut cat = Self::embedded().clone();
        if let Some(p) = path {
            let shown = p.display().to_string();
            let text = std::fs::read_to_string(p).map_err(|e| ModelError::BadCatalog {
                path: shown.clone(),
                line: None,
                field: "-".into(),
                reason: format!("cannot read: {e}"),
            })?;
            cat.apply_override(&shown, &text)?;
        }
        Ok(cat)
    }

    /// Merge override text (named `path` in errors) into this catalog, then validate.
    pub fn apply_override(&mut self, path: &str, text: &str) -> Result<(), ModelError> {
        let f = parse_file(path, text)?;
        self.merge(f);
        self.validate(path, text)
    }

    /// Choose every row's prices from `provider` (`None`: each row's first listed
    /// provider), recomputing the figures derived from them. Errors when no hardware
    /// has an on-demand price from `provider`; rows that it does not sell keep their
    /// defaults (ask [`Hardware::derive`] on one row for a per-row error).
    pub fn select_price_source(&mut self, provider: Option<&str>) -> Result<(), ModelError> {
        let provider = provider.map(|p| p.trim().to_ascii_lowercase());
        if let Some(want) = &provider {
            let known = self.price_sources();
            if !known.iter().any(|k| k == want) {
                let hint = suggest::did_you_mean(want, &known);
                return Err(ModelError::InvalidInput(format!(
                    "unknown price source `{want}`{hint} (known: {})",
                    known.join(", ")
                )));
            }
        }
        self.price_source = provider;
        self.derive_all();
        Ok(())
    }

    /// Every provider with a price in the catalog, sorted.
    pub fn price_sources(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .hardware
            .iter()
            .flat_map(|h| h.price_providers().into_iter().map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn derive_all(&mut self) {
        let rules = self.rules.clone();
        for h in &mut self.hardware {
            let src = self.price_source.as_deref();
            let chosen = src.filter(|p| h.price(PriceKind::OnDemand, Some(p)).is_some());
            // A provider that does not sell this row leaves it on its default.
            let _ = h.derive(&rules, chosen);
        }
    }

    fn merge(&mut self, f: CatalogFile) {
        if let Some(r) = f.rules {
            self.rules = r;
        }
        for h in f.hardware {
            let key = norm(&h.name);
            match self.hardware.iter_mut().find(|x| norm(&x.name) == key) {
                Some(x) => *x = h,
                None => self.hardware.push(h),
            }
        }
        for m in f.models {
            let key = norm(&m.name);
            match self.models.iter_mut().find(|x| norm(&x.name) == key) {
                Some(x) => *x = m,
                None => self.models.push(m),
            }
        }
        for r in f.runs {
            match self.runs.iter_mut().find(|x| x.id == r.id) {
                Some(x) => *x = r,
                None => self.runs.push(r),
            }
        }
        for r in f.ranges {
            match self.ranges.iter_mut().find(|x| x.id == r.id) {
                Some(x) => *x = r,
                None => self.ranges.push(r),
            }
        }
        hardware::fill_peer_ceilings(&mut self.hardware);
        self.derive_all();
    }

    /// Check values and cross-references; errors point into `text` (the file `path`).
    fn validate(&self, path: &str, text: &str) -> Result<(), ModelError> {
        let bad = |entry: &str, field: &str, reason: String| ModelError::BadCatalog {
            path: path.to_string(),
            line: locate(text, entry, field),
            field: format!("{entry}.{field}"),
            reason,
        };
        let pos = |entry: &str, field: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(
                    entry,
                    field,
                    format!("must be a positive number (got {v})"),
                ))
            }
        };
        for h in &self.hardware {
            let n = h.name.as_str();
            if h.chips_per_device == 0 {
                return Err(bad(n, "chips_per_device", "must be at least 1".into()));
            }
            if h.cores_per_chip == 0 {
                return Err(bad(n, "cores_per_chip", "must be at least 1".into()));
            }
            if h.peak_tflops.is_empty() {
                return Err(bad(n, "peak_tflops", "needs at least one dtype".into()));
            }
            for p in &h.peak_tflops {
                pos(n, "peak_tflops", p.value)?;
            }
            h.peak_flops(None)
                .map_err(|e| bad(n, "default_dtype", e.to_string()))?;
            for (field, fig) in [
                ("memory_gib", &h.memory_gib),
                ("memory_bw_gbs", &h.memory_bw_gbs),
                ("compute_units", &h.compute_units),
                ("tdp_w", &h.tdp_w),
                ("price_on_demand", &h.price_on_demand),
                ("price_preemptible", &h.price_preemptible),
                ("price_committed", &h.price_committed),
                ("purchase_price", &h.purchase_price),
                ("lifetime_years", &h.lifetime_years),
                ("ops_per_year", &h.ops_per_year),
            ] {
                if let Some(f) = fig {
                    pos(n, field, f.value)?;
                }
            }
            if let Some(k) = h.kernel_efficiency.as_ref().map(|f| f.value) {
                if !(k.is_finite() && k > 0.0 && k <= 1.0) {
                    return Err(bad(
                        n,
                        "kernel_efficiency",
                        format!("must be in (0, 1] (got {k})"),
                    ));
                }
            }
            for l in &h.links {
                if l.name.trim().is_empty() {
                    return Err(bad(n, "links", "a link tier needs a name".into()));
                }
                pos(n, "bw_gbs", l.bw_gbs.value)?;
                if !(l.latency_us.value.is_finite() && l.latency_us.value >= 0.0) {
                    return Err(bad(
                        n,
                        "latency_us",
                        format!(
                            "link `{}`: must be zero or positive (got {})",
                            l.name, l.latency_us.value
                        ),
                    ));
                }
            }
            for w in h.links.windows(2) {
                let inner = w[0].group_size;
                let outer = w[1].group_size;
                if inner == 0 || (outer != 0 && outer < inner) {
                    return Err(bad(
                        n,
                        "group_size",
                        format!(
                            "link tiers go innermost first: `{}` ({inner}) cannot enclose `{}` ({outer})",
                            w[0].name, w[1].name
                        ),
                    ));
                }
            }
            for p in &h.prices {
                pos(n, "usd_per_hour", p.usd_per_hour)?;
                if p.chips == 0 {
                    return Err(bad(n, "chips", "a price needs chips >= 1".into()));
                }
                if p.provider.trim().is_empty() || p.source.trim().is_empty() {
                    return Err(bad(
                        n,
                        "prices",
                        "a price needs a provider and a source".into(),
                    ));
                }
            }
        }
        for (field, f) in [
            ("committed_discount_1y", &self.rules.committed_discount_1y),
            ("ops_fraction_per_year", &self.rules.ops_fraction_per_year),
        ] {
            if !(f.value.is_finite() && f.value >= 0.0 && f.value < 1.0) {
                return Err(bad(
                    "rules",
                    field,
                    format!("must be in [0, 1) (got {})", f.value),
                ));
            }
        }
        for m in &self.models {
            m.config()
                .validate()
                .map_err(|e| bad(&m.name, "layers", e.to_string()))?;
            if let Some(p) = &m.published_params {
                let v = p.value().map_err(|e| bad(&m.name, "published_params", e))?;
                pos(&m.name, "published_params", v)?;
            }
            for p in &m.training {
                if p.steps == 0 || p.batch == 0 || p.seq == 0 {
                    return Err(bad(
                        &m.name,
                        "training",
                        "steps, batch and seq must be positive".into(),
                    ));
                }
            }
        }
        for r in &self.runs {
            let id = r.id.as_str();
            pos(id, "count", r.count)?;
            if let Some(hrs) = r.hours {
                pos(id, "hours", hrs)?;
            }
            if let Some(hrs) = r.published_cost_hours {
                pos(id, "published_cost_hours", hrs)?;
            }
            let hw = self
                .hardware(&r.hardware)
                .map_err(|e| bad(id, "hardware", e.to_string()))?;
            hw.peak_flops(Some(&r.dtype))
                .map_err(|e| bad(id, "dtype", e.to_string()))?;
            let model = self
                .model(&r.model)
                .map_err(|e| bad(id, "model", e.to_string()))?;
            if r.tokens_known && r.training.is_empty() && model.training.is_empty() {
                return Err(bad(
                    id,
                    "tokens_known",
                    format!("model `{}` has no training schedule; add `training` or set tokens_known = false", model.name),
                ));
            }
            for (field, v) in [
                ("published_cost_usd", r.published_cost_usd),
                (
                    "published_cost_preemptible_usd",
                    r.published_cost_preemptible_usd,
                ),
                ("published_cost_per_hour_usd", r.published_cost_per_hour_usd),
                ("published_cost_min_usd", r.published_cost_min_usd),
                ("alt_published_cost_usd", r.alt_published_cost_usd),
                ("published_cost_tolerance", r.published_cost_tolerance),
            ] {
                if let Some(v) = v {
                    pos(id, field, v)?;
                }
            }
        }
        for g in &self.ranges {
            self.model(&g.model)
                .map_err(|e| bad(&g.id, "model", e.to_string()))?;
            pos(&g.id, "single_run_usd", g.single_run_usd)?;
            pos(&g.id, "fully_loaded_usd", g.fully_loaded_usd)?;
            if g.configs == 0 || g.runs == 0 {
                return Err(bad(
                    &g.id,
                    "configs",
                    "configs and runs must be at least 1".into(),
                ));
            }
        }
        Ok(())
    }

    /// Hardware by name or alias (case-insensitive); unknown names get a suggestion.
    pub fn hardware(&self, name: &str) -> Result<&Hardware, ModelError> {
        let wanted = norm(name);
        self.hardware
            .iter()
            .find(|h| h.matches(&wanted))
            .ok_or_else(|| ModelError::UnknownHardware {
                name: name.to_string(),
                suggestion: suggest::closest(name, &self.hardware_names()),
                known: self
                    .hardware
                    .iter()
                    .map(|h| h.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Model by name or alias (case-insensitive); unknown names get a suggestion.
    pub fn model(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        let wanted = norm(name);
        self.models
            .iter()
            .find(|m| m.matches(&wanted))
            .ok_or_else(|| ModelError::UnknownModel {
                name: name.to_string(),
                suggestion: suggest::closest(name, &self.model_names()),
            })
    }

    /// A published run by id.
    pub fn run(&self, id: &str) -> Option<&Run> {
        self.runs.iter().find(|r| r.id.eq_ignore_ascii_case(id))
    }

    /// All hardware names and aliases.
    pub fn hardware_names(&self) -> Vec<String> {
        self.hardware
            .iter()
            .flat_map(|h| std::iter::once(h.name.clone()).chain(h.aliases.iter().cloned()))
            .collect()
    }

    /// All model names and aliases.
    pub fn model_names(&self) -> Vec<String> {
        self.models
            .iter()
            .flat_map(|m| std::iter::once(m.name.clone()).chain(m.aliases.iter().cloned()))
            .collect()
    }

    /// The training schedule of a run: its own, or its model's.
    pub fn run_schedule(&self, run: &Run) -> Result<Vec<Phase>, ModelError> {
        if !run.training.is_empty() {
            return Ok(run.training.clone());
        }
        Ok(self.model(&run.model)?.training.clone())
    }
}

/// Names of the built-in models, for `--help` and suggestions.
pub fn builtin_names() -> Vec<String> {
    Catalog::embedded()
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect()
}

/// Look up a built-in model by name or alias (case-insensitive; `_` and `-` are
/// equivalent). Unknown names get the nearest known name as a suggestion.
pub fn builtin(name: &str) -> Result<ModelConfig, ModelError> {
    Catalog::embedded().model(name).map(|m| m.config())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn embedded_catalog_parses_and_resolves() {
        let c = Catalog::embedded();
        assert!(c.hardware.len() >= 8);
        assert!(c.run("bert-large").is_some());
        assert_eq!(c.hardware("TPU_V3").unwrap().name, "tpu-v3");
        assert_eq!(c.hardware("v100").unwrap().name, "v100-sxm2");
        assert_eq!(c.ranges.len(), 3);
    }

    #[test]
    fn every_figure_has_source_and_date() {
        let c = Catalog::embedded();
        let ok = |f: &Figure, what: &str| {
            assert!(!f.source.is_empty() && f.date.len() == 7, "{what}");
            assert!(!f.source.contains("DESIGN.md"), "{what} cites DESIGN.md");
        };
        for h in &c.hardware {
            let figs = [
                &h.memory_gib,
                &h.memory_bw_gbs,
                &h.compute_units,
                &h.tdp_w,
                &h.price_on_demand,
                &h.price_preemptible,
                &h.price_committed,
                &h.purchase_price,
                &h.lifetime_years,
                &h.ops_per_year,
            ];
            for f in figs
                .into_iter()
                .flatten()
                .chain(h.kernel_efficiency.as_ref())
            {
                ok(f, &h.name);
            }
            for l in &h.links {
                ok(&l.bw_gbs, &h.name);
                ok(&l.latency_us, &h.name);
            }
            for p in &h.peak_tflops {
                assert!(!p.source.is_empty() && p.date.len() == 7, "{}", h.name);
                assert!(!p.source.contains("DESIGN.md"), "{}", h.name);
            }
            for p in &h.prices {
                assert!(!p.source.is_empty() && p.date.len() == 7, "{}", h.name);
                // A price cites the provider's own page, not a copy of it (issue 21).
                assert!(
                    !p.source.contains("github.com") && !p.source.contains("transcri"),
                    "{}: secondary price source {}",
                    h.name,
                    p.source
                );
            }
        }
        for r in &c.runs {
            assert!(!r.source.is_empty() && r.date.len() == 7, "{}", r.id);
        }
    }

    /// The accelerators issue 13 asks the catalog for, by their catalog names.
    const ISSUE_ACCELERATORS: [&str; 20] = [
        "v100-sxm2",
        "a100-40gb",
        "a100-80gb",
        "h100-sxm",
        "h100-pcie",
        "h200",
        "b200",
        "l4",
        "l40s",
        "a10g",
        "mi250x",
        "mi300x",
        "gaudi2",
        "gaudi3",
        "tpu-v2",
        "tpu-v3",
        "tpu-v4",
        "tpu-v5e",
        "tpu-v5p",
        "tpu-v6e",
    ];

    #[test]
    fn the_issue_s_hardware_is_all_there_with_memory_bandwidth_and_links() {
        let c = Catalog::embedded();
        for name in ISSUE_ACCELERATORS {
            let h = c.hardware(name).unwrap();
            assert!(
                h.memory_gib.is_some() && h.memory_bw_gbs.is_some(),
                "{name}"
            );
            assert!(h.compute_units.is_some() && !h.links.is_empty(), "{name}");
            assert!(h.peak_flops(None).unwrap() > 0.0, "{name}");
        }
    }

    #[test]
    fn committed_prices_and_ops_are_derived_by_the_stated_rule() {
        let c = Catalog::embedded();
        let a100 = c.hardware("a100").unwrap();
        let od = a100.price_on_demand.as_ref().unwrap().value;
        assert!(
            (od - 40.96 / 8.0).abs() < 1e-12,
            "aws is listed first, and its newest price (2023-01) is used"
        );
        let d = c.rules.committed_discount_1y.value;
        let committed = a100.price_committed.as_ref().unwrap();
        assert!((committed.value - od * (1.0 - d)).abs() < 1e-12);
        assert!(committed.is_assumption() && committed.source.contains("derived"));
        let ops = a100.ops_per_year.as_ref().unwrap().value;
        let buy = a100.purchase_price.as_ref().unwrap().value;
        assert!((ops - buy * c.rules.ops_fraction_per_year.value).abs() < 1e-9);
        // A published committed price wins over the rule.
        let v5e = c.hardware("tpu-v5e").unwrap();
        assert_eq!(v5e.price_committed.as_ref().unwrap().value, 0.84);
        assert!(!v5e.price_committed.as_ref().unwrap().is_assumption());
        // A 2019 TPU device is 4 chips: the device price is 4 chip prices.
        assert_eq!(
            c.hardware("tpu-v3").unwrap().price_per_chip_hour(false),
            Some(2.0)
        );
    }

    #[test]
    fn price_source_chooses_a_provider_and_keeps_the_others() {
        let mut c = Catalog::embedded().clone();
        // An older Lambda point, listed after the newer one: it stays as history and
        // the newest (2024-06) is used whatever the order.
        let h100 = c
            .hardware
            .iter_mut()
            .find(|h| h.name == "h100-sxm")
            .unwrap();
        let mut old = h100
            .prices
            .iter()
            .find(|p| p.provider == "lambda")
            .unwrap()
            .clone();
        old.usd_per_hour = 8.0 * 2.49;
        old.date = "2023-06".into();
        h100.prices.push(old);
        c.select_price_source(Some("Lambda")).unwrap();
        let h100 = c.hardware("h100-sxm").unwrap();
        assert_eq!(
            h100.price_per_chip_hour(false),
            Some(2.99),
            "Lambda's newest price (2024-06), not its 2023-06 one"
        );
        assert!(
            h100.prices.iter().any(|p| p.provider == "aws"),
            "rows are kept"
        );
        assert!(
            h100.prices
                .iter()
                .any(|p| p.provider == "lambda" && p.date == "2023-06"),
            "old points are kept as history"
        );
        // Hardware that Lambda does not sell keeps its default provider.
        assert_eq!(
            c.hardware("tpu-v4").unwrap().price_per_chip_hour(false),
            Some(3.22)
        );
        let e = c
            .select_price_source(Some("lamda"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `lambda`"), "{e}");
        let mut v4 = c.hardware("tpu-v4").unwrap().clone();
        let e = v4.derive(&c.rules, Some("aws")).unwrap_err().to_string();
        assert!(
            e.contains("no on-demand price from `aws` (price sources: gcp)"),
            "{e}"
        );
    }

    #[test]
    fn reference_gemm_tables_load_and_stay_under_the_peak() {
        let c = Catalog::embedded();
        for (name, want) in [("b200", 75), ("mi300x", 50)] {
            let hw = c.hardware(name).unwrap();
            let t = hw.reference_gemm().unwrap();
            assert_eq!(t.points.len(), want, "{name}");
            assert!(t.source.contains("336bb15c"), "{name}");
            let peak = hw.peak_flops(Some("bf16")).unwrap();
            for p in &t.points {
                assert!(p.flops > 0.0 && p.flops < peak, "{name} {p:?}");
            }
            // Larger problems run faster: the 4096-cubed point beats the smallest.
            let at = |m, n, k| {
                t.points
                    .iter()
                    .filter(|p| p.m == m && p.n == n && p.k == k)
                    .map(|p| p.flops)
                    .fold(0.0, f64::max)
            };
            assert!(at(4096, 4096, 4096) > at(4096, 256, 256), "{name}");
        }
        assert!(c.hardware("h100-sxm").unwrap().reference_gemm().is_none());
        let e = parse_gemm_table("g.csv", "dtype,b,m,n,k,flops\nbf16,1,0,2,2,5\n").unwrap_err();
        assert!(e.to_string().starts_with("g.csv:2:"), "{e}");
    }

    #[test]
    fn a_gpu_without_a_measured_ceiling_reaches_the_median_share_of_the_measured_ones() {
        let c = Catalog::embedded();
        let mut shares: Vec<f64> = c
            .hardware
            .iter()
            .filter(|h| h.is_gpu())
            .filter_map(|h| h.measured_ceiling_ratio("bf16"))
            .collect();
        assert!(shares.len() >= 5, "{shares:?}");
        shares.sort_by(f64::total_cmp);
        let n = shares.len();
        let median = if n % 2 == 1 {
            shares[n / 2]
        } else {
            (shares[n / 2 - 1] + shares[n / 2]) / 2.0
        };
        let l40s = c.hardware("l40s").unwrap();
        let (ceiling, source) = l40s.gemm_ceiling(Some("bf16")).unwrap();
        let peak = l40s.peak_flops(Some("bf16")).unwrap();
        assert!((ceiling / peak - median).abs() < 1e-12, "{source}");
        assert!(source.contains("median share of peak"), "{source}");
        // A measured row keeps its own; a TPU keeps its peak (its stacks are fitted on it).
        let a100 = c.hardware("a100").unwrap();
        let own = a100.gemm_ceiling(Some("bf16")).unwrap().0;
        assert!((own - 271.2e12).abs() < 1e6, "{own}");
        let v4 = c.hardware("tpu-v4").unwrap();
        assert_eq!(
            v4.gemm_ceiling(None).unwrap().0,
            v4.peak_flops(None).unwrap()
        );
    }

    #[test]
    fn accelerators_are_priced_by_two_clouds_or_say_why_not() {
        let c = Catalog::embedded();
        for name in ISSUE_ACCELERATORS {
            let hw = c.hardware(name).unwrap();
            let mut on_demand: Vec<&str> = hw
                .prices
                .iter()
                .filter(|p| p.kind == PriceKind::OnDemand)
                .map(|p| p.provider.as_str())
                .collect();
            on_demand.sort_unstable();
            on_demand.dedup();
            assert!(
                on_demand.len() >= 2 || hw.cloud.is_some(),
                "{name}: on-demand prices from {on_demand:?} and no `cloud` note"
            );
            for p in &hw.prices {
                assert!(p.date.len() == 7 && !p.source.is_empty(), "{name}: {p:?}");
            }
        }
        // Several clouds rent these, but a primary source prices H200 and L40S for one
        // cloud only and B200 for none (issue 21: no secondary figure is carried); each
        // says so.
        for (name, priced) in [("h200", true), ("l40s", true), ("b200", false)] {
            let hw = c.hardware(name).unwrap();
            let note = hw.cloud.as_deref().unwrap_or_default();
            assert!(
                note.contains("primary source"),
                "{name}: `cloud` is {note:?}"
            );
            assert_eq!(hw.price_on_demand.is_some(), priced, "{name}");
        }
        for name in ["mi250x", "gaudi2", "gaudi3"] {
            let hw = c.hardware(name).unwrap();
            assert!(hw.prices.is_empty(), "{name}");
            assert!(hw.cloud.as_deref().unwrap().starts_with("no cloud price"));
        }
    }

    #[test]
    fn assumptions_are_listed_by_field() {
        let c = Catalog::embedded();
        let a = c.hardware("h100-sxm").unwrap().assumptions();
        let names: Vec<&str> = a.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"links.nvlink.latency_us"), "{names:?}");
        assert!(names.contains(&"purchase_price"), "{names:?}");
        assert!(
            !names.contains(&"price_committed"),
            "AWS publishes a committed (Capacity Block) H100 price"
        );
        assert!(!names.contains(&"memory_bw_gbs"));
        let a = c.hardware("a100").unwrap().assumptions();
        assert!(
            a.iter().any(|(n, _)| n == "price_committed"),
            "no A100 80GB committed price is published: derived by the rule"
        );
    }

    /// Every model with a published count: (name, computed, published, tolerance).
    fn published_counts(c: &Catalog) -> Vec<(String, f64, f64, f64)> {
        c.models
            .iter()
            .filter_map(|m| {
                let p = m.published_params.as_ref()?;
                let got = crate::flops::params(&m.config()).total;
                Some((
                    m.name.clone(),
                    got,
                    p.value().unwrap(),
                    p.tolerance().unwrap(),
                ))
            })
            .collect()
    }

    #[test]
    fn every_published_parameter_count_is_matched_within_its_printed_precision() {
        let rows = published_counts(Catalog::embedded());
        let mut table = String::new();
        for (name, got, want, tol) in &rows {
            table.push_str(&format!(
                "{name:<18} computed {got:>18.0}  published {want:>18.0}  {:+.2}% (tolerance {:.2}%)\n",
                (got - want) / want * 100.0,
                tol / want * 100.0
            ));
        }
        println!("{table}");
        for (name, got, want, tol) in &rows {
            assert!(
                (got - want).abs() <= *tol,
                "{name}: computed {got:.4e} vs published {want:.4e}\n{table}"
            );
        }
        assert!(
            rows.len() >= 50,
            "only {} models carry a published count",
            rows.len()
        );
    }

    #[test]
    fn a_printed_count_is_as_precise_as_its_last_digit_and_never_below_one_percent() {
        let p = |s: &str| PublishedParams::Printed(s.into());
        assert_eq!(p("2.7B").parse().unwrap(), (2.7e9, 0.05e9));
        assert_eq!(p("340M").parse().unwrap(), (340e6, 0.5e6));
        assert_eq!(p("1008.0B").parse().unwrap().1, 0.05e9);
        assert_eq!(
            p("176,247,271,424").parse().unwrap(),
            (176_247_271_424.0, 0.5)
        );
        // Half a unit of "2.7B" (1.85%) is wider than 1%; "175B" gets 1%.
        assert!(p("2.7B").matches(2.651e9).unwrap());
        assert!(!p("2.7B").matches(2.649e9).unwrap());
        assert!((p("175B").tolerance().unwrap() - 1.75e9).abs() < 1.0);
        assert!(!PublishedParams::Count(1e9).matches(1.011e9).unwrap());
        for bad in ["", "2.7X", "1.2.3B", "B", "abc"] {
            assert!(p(bad).parse().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_architecture_mistake_moves_the_count_outside_its_tolerance() {
        let c = Catalog::embedded();
        let check = |name: &str, change: &dyn Fn(&mut ModelConfig)| {
            let m = c.model(name).unwrap();
            let p = m.published_params.as_ref().unwrap();
            let mut cfg = m.config();
            assert!(
                p.matches(crate::flops::params(&cfg).total).unwrap(),
                "{name}"
            );
            change(&mut cfg);
            let got = crate::flops::params(&cfg).total;
            assert!(
                !p.matches(got).unwrap(),
                "{name}: {got:.4e} still matches {p:?}"
            );
        };
        check("megatron-1.7b", &|c| c.tied = false);
        check("falcon-7b", &|c| c.kv_heads = None);
        check("llama2-70b", &|c| c.kv_heads = None);
        check("t5-11b", &|c| {
            c.layers = 24;
            c.decoder_layers = None;
        });
        check("gpt3-2.7b", &|c| c.ffn *= 2);
        check("bert-large", &|c| c.vocab = 50257);
    }

    #[test]
    fn a_bad_printed_count_in_an_override_is_named() {
        let mut c = Catalog::embedded().clone();
        let text = r#"[[models]]
name = "m"
layers = 2
hidden = 64
heads = 1
head_dim = 64
ffn = 256
vocab = 100
seq = 16
causal = true
published_params = "2.7X"
source = "me"
date = "2025-01"
"#;
        let e = c.apply_override("m.toml", text).unwrap_err().to_string();
        assert!(e.contains("published_params"), "{e}");
        assert!(e.contains("2.7X"), "{e}");
    }

    #[test]
    fn the_constructed_bert_is_marked() {
        let c = Catalog::embedded();
        assert!(c.model("bert-1.5b").unwrap().constructed);
        assert!(!c.model("bert-large").unwrap().constructed);
    }

    #[test]
    fn unknown_hardware_suggests() {
        let e = Catalog::embedded()
            .hardware("tpu-v33")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tpu-v3"), "{e}");
    }

    #[test]
    fn override_replaces_and_adds() {
        let mut c = Catalog::embedded().clone();
        let text = r#"
[[hardware]]
name = "my-gpu"
class = "gpu-2022"
chips_per_device = 1
cores_per_chip = 1
default_dtype = "bf16"
peak_tflops = [ { dtype = "bf16", value = 100.0, source = "me", date = "2025-01" } ]
price_on_demand = { value = 1.0, source = "me", date = "2025-01" }
kernel_efficiency = { value = 0.5, source = "me", date = "2025-01" }
"#;
        c.apply_override("x.toml", text).unwrap();
        assert_eq!(
            c.hardware("my-gpu").unwrap().price_per_chip_hour(false),
            Some(1.0)
        );
    }

    #[test]
    fn malformed_override_names_file_line_and_field() {
        let mut c = Catalog::embedded().clone();
        let text = "[[hardware]]\nname = \"x\"\nclass = \"c\"\nchips_per_device = \"four\"\n";
        let e = c.apply_override("over.toml", text).unwrap_err().to_string();
        assert!(e.starts_with("over.toml:4:"), "{e}");
        assert!(e.contains("chips_per_device"), "{e}");

        let mut c = Catalog::embedded().clone();
        let text = r#"[[hardware]]
name = "neg"
class = "c"
chips_per_device = 1
cores_per_chip = 1
default_dtype = "bf16"
peak_tflops = [ { dtype = "bf16", value = -3.0, source = "s", date = "2025-01" } ]
kernel_efficiency = { value = 0.5, source = "me", date = "2025-01" }
"#;
        let e = c.apply_override("neg.toml", text).unwrap_err().to_string();
        assert!(e.starts_with("neg.toml:7:"), "{e}");
        assert!(e.contains("peak_tflops"), "{e}");

        let mut c = Catalog::embedded().clone();
        let e = c
            .apply_override("m.toml", "[[models]]\nname = \"x\"\nlayers = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.toml:"), "{e}");
        assert!(e.contains("hidden") || e.contains("missing"), "{e}");
    }

    /// FLOP accounting on the catalog's models (here, so flops.rs needs no catalog).
    mod flops_on_catalog_models {
        use crate::catalog::builtin;
        use crate::flops::*;

        fn rel(a: f64, b: f64) -> f64 {
            ((a - b) / b).abs()
        }

        #[test]
        fn causal_halves_scores_and_pv_only() {
            let mut cfg = builtin("gpt2").unwrap();
            let c = forward_per_token_layer(&cfg, 1024);
            cfg.causal = false;
            let d = forward_per_token_layer(&cfg, 1024);
            assert_eq!(c.scores * 2.0, d.scores);
            assert_eq!(c.pv * 2.0, d.pv);
            assert_eq!(c.qkv, d.qkv);
            assert_eq!(c.ffn, d.ffn);
        }

        #[test]
        fn t5_uses_attention_width_not_hidden() {
            let cfg = builtin("t5-11b").unwrap();
            assert_ne!(cfg.attn_dim(), cfg.hidden);
            let ops = forward_per_token_layer(&cfg, 512);
            // Half the blocks are decoder blocks with cross-attention: × 1.5 per block.
            assert_eq!(ops.qkv, 6.0 * 1024.0 * 16384.0 * 1.5);
            assert_eq!(ops.attn_out, 2.0 * 16384.0 * 1024.0 * 1.5);
            assert_eq!(ops.scores, 2.0 * 512.0 * 16384.0 * 1.5);
        }

        #[test]
        fn bert_parameter_counts_within_two_percent() {
            let base = param_count(&builtin("bert-base").unwrap(), Family::Bert).total;
            let large = param_count(&builtin("bert-large").unwrap(), Family::Bert).total;
            assert!(rel(base, 110e6) < 0.02, "bert-base {base}");
            assert!(rel(large, 340e6) < 0.02, "bert-large {large}");
        }

        #[test]
        fn gpt2_xl_is_one_and_a_half_billion() {
            let p = param_count(&builtin("gpt2-xl").unwrap(), Family::Gpt).total;
            assert!(rel(p, 1.558e9) < 0.02, "gpt2-xl {p}");
        }

        #[test]
        fn exact_is_close_to_6nd_for_large_models() {
            let cfg = builtin("gpt2-xl").unwrap();
            let r = train_flops(
                &cfg,
                &[Phase {
                    steps: 1000,
                    batch: 512,
                    seq: 1024,
                }],
                &FlopOptions::default(),
            )
            .unwrap();
            assert!(r.ratio_exact_to_6nd > 1.0 && r.ratio_exact_to_6nd < 1.2);
        }

        #[test]
        fn rejects_zero_and_bad_fractions() {
            let cfg = builtin("bert-base").unwrap();
            let p = Phase {
                steps: 0,
                batch: 1,
                seq: 1,
            };
            assert!(train_flops(&cfg, &[p], &FlopOptions::default()).is_err());
            assert!(train_flops(&cfg, &[], &FlopOptions::default()).is_err());
            let bad = FlopOptions {
                vocab_fraction: 1.5,
                ..FlopOptions::default()
            };
            let ok = Phase {
                steps: 1,
                batch: 1,
                seq: 1,
            };
            assert!(train_flops(&cfg, &[ok], &bad).is_err());
            assert!(flops_6nd(-1.0, 1.0).is_err());
            assert!(flops_6nd(1.0, f64::NAN).is_err());
        }
    }

    proptest! {
        #[test]
        fn parser_never_panics_on_garbage(s in "\\PC{0,400}") {
            let mut c = Catalog::embedded().clone();
            let _ = c.apply_override("g.toml", &s);
        }

        #[test]
        fn parser_never_panics_on_mutated_catalog(pos in 0usize..20_000, byte in any::<u8>(), del in 0usize..40) {
            let mut text = HARDWARE_TOML.as_bytes().to_vec();
            let p = pos % text.len();
            let end = (p + del).min(text.len());
            text.splice(p..end, std::iter::once(byte));
            let s = String::from_utf8_lossy(&text).into_owned();
            let mut c = Catalog::embedded().clone();
            if let Err(e) = c.apply_override("mut.toml", &s) {
                prop_assert!(e.to_string().starts_with("mut.toml"));
            }
        }
    }
}
