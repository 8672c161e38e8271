//! The one error type of the measuring crate and its mapping to exit codes: 2 bad
//! input or any other error, with one line naming the problem; 130 interrupted.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can make a measurement fail.
#[derive(Debug, Error)]
pub enum BenchError {
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
    /// A device requested that this build or this machine does not have.
    #[error("{0}")]
    Device(String),
    /// A kernel failed to prepare, run or verify.
    #[error(transparent)]
    Kernel(#[from] flopcal_kernels::KernelError),
    /// FLOP accounting, catalog or cost-model error.
    #[error(transparent)]
    Model(#[from] flopcal_model::ModelError),
    /// The user interrupted the run (Ctrl-C / SIGTERM); partial results were saved.
    #[error("interrupted{}", saved.as_ref().map(|p| format!("; partial results saved to {}", p.display())).unwrap_or_default())]
    Interrupted {
        /// Where the partial results went, if anywhere.
        saved: Option<PathBuf>,
    },
}

impl BenchError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            BenchError::Interrupted { .. } => 130,
            _ => 2,
        }
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for the measuring crate.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
