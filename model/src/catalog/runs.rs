//! Published training runs (hardware, chips, hours, cost) and AI21's published cost
//! ranges.

use serde::{Deserialize, Serialize};

use super::Unit;
use crate::flops::Phase;

/// Which catalog price a published cost was computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceBasis {
    /// List (on-demand) price.
    OnDemand,
    /// Preemptible price.
    Preemptible,
}

/// A published training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Identifier, e.g. `bert-large`.
    pub id: String,
    /// Catalog model.
    pub model: String,
    /// Catalog hardware.
    pub hardware: String,
    /// How many `unit`s.
    pub count: f64,
    /// Unit of `count`.
    pub unit: Unit,
    /// Data type of the run (selects the peak).
    pub dtype: String,
    /// Wall-clock duration, hours (absent when not published).
    #[serde(default)]
    pub hours: Option<f64>,
    /// Whether the schedule (tokens) is known; runs without it are not fitted.
    #[serde(default = "yes")]
    pub tokens_known: bool,
    /// Schedule override (default: the model's catalog schedule).
    #[serde(default)]
    pub training: Vec<Phase>,
    /// Price the published arithmetic used.
    pub price_basis: PriceBasis,
    /// Published cost, USD (on `price_basis`).
    #[serde(default)]
    pub published_cost_usd: Option<f64>,
    /// Relative tolerance of an approximate published cost ("~$25k": 0.05).
    #[serde(default)]
    pub published_cost_tolerance: Option<f64>,
    /// Published preemptible cost, USD.
    #[serde(default)]
    pub published_cost_preemptible_usd: Option<f64>,
    /// Published cost per hour, USD.
    #[serde(default)]
    pub published_cost_per_hour_usd: Option<f64>,
    /// Published lower bound of the cost, USD ("well above $1.3M").
    #[serde(default)]
    pub published_cost_min_usd: Option<f64>,
    /// The duration the published cost multiplied by, hours, where the cost's source
    /// priced another duration than `hours` (Synced priced XLNet at the preprint's 2.5
    /// days; the paper's final version says 5.5). Default: `hours`.
    #[serde(default)]
    pub published_cost_hours: Option<f64>,
    /// A second reading of the hardware count (e.g. cores instead of chips).
    #[serde(default)]
    pub alt_unit: Option<Unit>,
    /// The published cost under the second reading.
    #[serde(default)]
    pub alt_published_cost_usd: Option<f64>,
    /// Where the figures come from.
    pub source: String,
    /// When (YYYY-MM).
    pub date: String,
    /// Which interpretation flopcal uses, and why.
    #[serde(default)]
    pub interpretation: String,
}

fn yes() -> bool {
    true
}

/// A published cost range for a model size (AI21).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostRange {
    /// Identifier.
    pub id: String,
    /// The catalog model used for this size.
    pub model: String,
    /// flopcal's reading, in words.
    pub assumption: String,
    /// Parameter count the source quoted.
    pub params: f64,
    /// Cost of one run, USD (low end).
    pub single_run_usd: f64,
    /// Fully-loaded cost, USD (high end).
    pub fully_loaded_usd: f64,
    /// Configurations tried.
    pub configs: u32,
    /// Runs per configuration.
    pub runs: u32,
    /// Where from.
    pub source: String,
    /// When (YYYY-MM).
    pub date: String,
}
