//! flopcal: measure transformer kernels on this machine, calibrate against published
//! training runs, and estimate training time and cost with honest uncertainty.

pub mod cli;
pub mod commands;
pub mod comparing;
pub mod efficiency;
pub mod error;
pub mod estimating;
pub mod model_spec;
pub mod planning;
pub mod render;
pub mod validate;
pub mod validate_run;

pub use error::{Error, Outcome, Result};
