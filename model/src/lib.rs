//! `flopcal-model`: transformer FLOP accounting, the embedded catalog, the cost model
//! and calibration against published training runs. It knows nothing of candle, so the
//! cost model can be tested and benchmarked without any kernel.
//!
//! The pieces, in the order a caller uses them:
//!
//! - [`config::ModelConfig`]: the architecture (GQA, gated FFN, MoE, encoder–decoder,
//!   ...), from a catalog name or a Hugging Face `config.json` ([`hf`]);
//! - [`flops`]: the weight matmuls of a block ([`flops::block_matmuls`]), per-op training
//!   FLOPs and parameter counts (total and active) summed from them, and `6·N·D`;
//! - [`catalog::Catalog`]: hardware (peaks, bandwidth, link tiers, prices by provider,
//!   reference GEMM tables), models, published runs (embedded TOML, overridable);
//! - [`calibrate::calibrate`]: implied MFU of every published run, the fit of system
//!   efficiency by hardware class, and a leave-one-out check ([`calibrate::Fit`]);
//! - [`cost::estimate`]: FLOPs → hours → dollars, energy and CO2, with a low–high band.
//!
//! A measured kernel efficiency (from `flopcal profile`) enters through
//! [`calibrate::Fit::measured_mfu`] → [`cost::MfuSource::Measured`].

pub mod calibrate;
pub mod catalog;
pub mod collective;
pub mod comm;
pub mod config;
pub mod cost;
pub mod error;
pub mod fit;
pub mod flops;
pub mod forecast;
pub mod framework;
pub mod gemm_rate;
pub mod hf;
pub mod layout;
pub mod memory;
pub mod network;
pub mod nvidia;
pub mod onprem;
pub mod op_rate;
pub mod prices;
pub mod published;
pub mod run;
pub mod search;
pub mod stack;
pub mod stats;
pub mod step;
pub mod suggest;
pub mod system;

pub use calibrate::{calibrate, Calibration, Fit};
pub use catalog::{builtin, builtin_names, Catalog, Hardware, Unit};
pub use config::{FfnKind, ModelConfig, Position};
pub use cost::{estimate, Assumptions, Estimate, MfuSource, Plan, Workload};
pub use error::ModelError;
pub use flops::{FlopOptions, FlopReport, Phase, Recompute};
