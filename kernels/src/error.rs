//! The one error type of `flopcal-kernels`.

use thiserror::Error;

/// What can go wrong preparing, running or verifying a kernel.
#[derive(Debug, Error)]
pub enum KernelError {
    /// An error from candle (allocation, unsupported op on this device, driver error).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// A dtype the kernel or device cannot run.
    #[error("dtype `{dtype}` not supported: {reason}")]
    UnsupportedDtype {
        /// The dtype requested.
        dtype: String,
        /// Why, and what to use instead.
        reason: String,
    },
    /// A zero or inconsistent dimension.
    #[error("invalid shape for {kernel}: {reason}")]
    InvalidShape {
        /// Which kernel.
        kernel: String,
        /// What is wrong.
        reason: String,
    },
}
