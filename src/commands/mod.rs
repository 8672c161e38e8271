//! One module per subcommand: its clap `Args` struct and its `run` function; and the
//! flags several commands share (`estimate_args`, `model_args`, `values`).

pub mod calibrate;
pub mod comm;
pub mod compare;
pub mod estimate;
pub mod estimate_args;
pub mod fleet;
pub mod history;
pub mod migrate;
pub mod model_args;
pub mod peak;
pub mod plan;
pub mod profile;
pub mod regress;
pub mod report;
pub mod validate;
pub mod values;
