//! The one error type of the `flopcal` crate and its mapping to exit codes.
//!
//! Exit codes: 0 success; 1 a regression was found or a validation missed
//! its bound (reported through [`Outcome`], not as an error); 2 bad input or any other
//! error, with one line naming the problem; 130 interrupted.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can make a `flopcal` command fail.
#[derive(Debug, Error)]
pub enum Error {
    /// Bad command-line input: a flag value out of range, a conflicting combination.
    #[error("{0}")]
    Usage(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists but its content is not what flopcal expects.
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it, and how to fix it.
        reason: String,
    },
    /// A kernel failed to prepare, run or verify.
    #[error(transparent)]
    Kernel(#[from] flopcal_kernels::KernelError),
    /// FLOP accounting, catalog or cost-model error.
    #[error(transparent)]
    Model(#[from] flopcal_model::ModelError),
    /// A measurement failed, was interrupted, or read a bad file.
    #[error(transparent)]
    Bench(#[from] flopcal_bench::BenchError),
    /// Whoever read stdout closed it (`flopcal … | head`): not a failure, the reader
    /// has what it wanted, so the program ends quietly with exit 0.
    #[error("stdout was closed")]
    StdoutClosed,
    /// The user interrupted the run (Ctrl-C / SIGTERM); partial results were saved.
    #[error("interrupted{}", saved.as_ref().map(|p| format!("; partial results saved to {}", p.display())).unwrap_or_default())]
    Interrupted {
        /// Where the partial results went, if anywhere.
        saved: Option<PathBuf>,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted { .. } => 130,
            Error::StdoutClosed => 0,
            Error::Bench(e) => e.exit_code(),
            _ => 2,
        }
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the `flopcal` crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a command that ran to completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything passed: exit 0.
    Success,
    /// A regression was found or a validation missed its bound: exit 1.
    Failed,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
        }
    }
}
