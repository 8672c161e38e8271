//! flopcal's measuring crate: what this machine and its links really do.
//!
//! - [`harness`]: the executor, sampling, statistics and contention watch behind every
//!   timed kernel;
//! - [`suite`], [`profiling`], [`profile_run`]: a model's kernel suite measured in
//!   rounds into a result file;
//! - [`peak`]: the compute and bandwidth ceilings of this machine (`flopcal peak`);
//! - [`results`]: the result files (one header, one atomic writer, CSV twins,
//!   migration of older schemas);
//! - [`comm`], [`fleet`] and `fleet_run` (with the `mpi` feature): collectives and
//!   profiles across MPI ranks;
//! - [`regress`], [`history`], [`report`], [`report_table`]: comparing, tracking and
//!   showing measurements;
//! - [`device`], [`fingerprint`], [`alloc`], [`interrupt`]: the machine a run is on and
//!   how it ends.
//!
//! The performance model is `flopcal-model`; the command line is the `flopcal` crate.

pub mod alloc;
pub mod ceilings;
pub mod comm;
pub mod device;
pub mod error;
pub mod fingerprint;
pub mod fleet;
#[cfg(feature = "mpi")]
pub mod fleet_run;
pub mod harness;
pub mod history;
pub mod interrupt;
pub mod profile_run;
pub mod profiling;
pub mod regress;
pub mod report;
pub mod report_table;
pub mod results;
pub mod suite;

pub use error::{BenchError, Result};
