//! The one error type of `flopcal-model`.

use thiserror::Error;

/// Everything that can go wrong in FLOP accounting, catalog loading or costing.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A model name that is not in the catalog.
    #[error("unknown model `{name}`{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownModel {
        /// What the user typed.
        name: String,
        /// The nearest known name, if one is close.
        suggestion: Option<String>,
    },
    /// A config with a zero or inconsistent dimension.
    #[error("invalid config for `{model}`: {reason}")]
    InvalidConfig {
        /// Model name.
        model: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A hardware name that is not in the catalog.
    #[error("unknown hardware `{name}`{} (known: {known})", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownHardware {
        /// What the user typed.
        name: String,
        /// The nearest known name, if one is close.
        suggestion: Option<String>,
        /// Every known name, comma-separated.
        known: String,
    },
    /// A catalog file (embedded or user override) that does not parse or validate.
    #[error("{path}:{}: field `{field}`: {reason}", line.map(|l| l.to_string()).unwrap_or_else(|| "-".into()))]
    BadCatalog {
        /// The file.
        path: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// The offending field (`entry.field` for semantic errors).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A numeric input out of range (zero or negative count, MFU outside (0, 1], ...).
    #[error("{0}")]
    InvalidInput(String),
}
