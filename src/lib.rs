//! flopcal: measure transformer kernels on this machine, calibrate against published
//! training runs, and estimate training time and cost with honest uncertainty.

pub mod alloc;
pub mod cli;
pub mod comm;
pub mod commands;
pub mod comparing;
pub mod device;
pub mod efficiency;
pub mod error;
pub mod estimating;
pub mod fingerprint;
pub mod fleet;
pub mod harness;
pub mod history;
pub mod interrupt;
pub mod model_spec;
pub mod peak;
pub mod planning;
pub mod profile_run;
pub mod profiling;
pub mod regress;
pub mod render;
pub mod report;
pub mod report_table;
pub mod results;
pub mod suite;
pub mod validate;

pub use error::{Error, Outcome, Result};
