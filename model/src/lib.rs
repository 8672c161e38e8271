//! `flopcal-model`: transformer FLOP accounting, the embedded catalog, the cost model
//! and calibration against published training runs. It knows nothing of candle, so the
//! cost model can be tested and benchmarked without any kernel.
//!
//! The pieces, in the order a caller uses them:
//!
//! - [`catalog::Catalog`]: hardware, models, published runs (embedded TOML, overridable);
//! - [`flops`]: per-op training FLOPs of a [`ModelConfig`] and `6·N·D`;
//! - [`calibrate::calibrate`]: implied MFU of every published run, the fit of system
//!   efficiency by hardware class, and a leave-one-out check ([`calibrate::Fit`]);
//! - [`cost::estimate`]: FLOPs → hours → dollars, energy and CO2, with a low–high band.
//!
//! A measured kernel efficiency (from `flopcal profile`) enters through
//! [`calibrate::Fit::measured_mfu`] → [`cost::MfuSource::Measured`].

pub mod calibrate;
pub mod catalog;
pub mod config;
pub mod cost;
pub mod error;
pub mod flops;
pub mod network;
pub mod onprem;
pub mod suggest;

pub use calibrate::{calibrate, Calibration, Fit};
pub use catalog::{Catalog, Hardware, Unit};
pub use config::{builtin, builtin_names, ModelConfig};
pub use cost::{estimate, Assumptions, Estimate, MfuSource, Plan, Workload};
pub use error::ModelError;
pub use flops::{FlopOptions, FlopReport, Phase, Recompute};
