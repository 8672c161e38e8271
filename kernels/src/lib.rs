//! `flopcal-kernels`: the transformer kernels flopcal measures, on candle.
//!
//! Every kernel states its exact work (FLOPs and bytes for one iteration), prepares
//! random-normal inputs once outside any timed region, runs one iteration on demand,
//! and verifies its output against an independent f64 reference computed on the host.
//! This crate knows nothing about timing statistics or money.

pub mod attention;
pub mod ceilings;
pub mod cpu_cache;
pub mod elementwise;
pub mod error;
pub mod gemm;
pub mod step;
pub mod verify;

use candle_core::{DType, Device};

pub use error::KernelError;
pub use verify::Verification;

/// Result alias for this crate.
pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Exact work of one iteration of a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    /// Floating-point operations actually executed (a multiply-add counts as 2).
    pub flops: u64,
    /// FLOPs a model's FLOP accounting credits for this work. Equal to `flops` except
    /// for causal attention, where the model counts half of the dense score and P·V
    /// products (candle computes them densely and then masks).
    pub model_flops: u64,
    /// Minimum bytes that must cross the memory interface: every input read once and
    /// every output written once (the roofline convention). Framework temporaries
    /// are not counted, so memory-bound kernels built from primitives report an
    /// honest, lower achieved bandwidth.
    pub bytes: u64,
}

impl Work {
    /// Arithmetic intensity in FLOP per byte.
    pub fn intensity(&self) -> f64 {
        if self.bytes == 0 {
            f64::INFINITY
        } else {
            self.flops as f64 / self.bytes as f64
        }
    }
}

/// Which family a kernel belongs to; used for grouping and roofline classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// Dense or batched matrix multiplication.
    Matmul,
    /// Scaled-dot-product attention (scores, softmax, P·V).
    Attention,
    /// Layer normalisation over the last dimension.
    LayerNorm,
    /// Row softmax over the last dimension.
    Softmax,
    /// GELU activation (tanh approximation).
    Gelu,
    /// Streaming bandwidth kernels (scale, triad).
    Bandwidth,
}

impl KernelKind {
    /// Stable lower-case name used in ids and result files.
    pub fn as_str(self) -> &'static str {
        match self {
            KernelKind::Matmul => "matmul",
            KernelKind::Attention => "attention",
            KernelKind::LayerNorm => "layernorm",
            KernelKind::Softmax => "softmax",
            KernelKind::Gelu => "gelu",
            KernelKind::Bandwidth => "bandwidth",
        }
    }
}

/// A kernel description: cheap to build and clone, allocates nothing until prepared.
pub trait Kernel: Send + Sync {
    /// Kernel family.
    fn kind(&self) -> KernelKind;
    /// What this instance is in the model, e.g. `ffn_in.wgrad` or `square`.
    fn label(&self) -> String;
    /// Named dimensions, e.g. `[("m", 4096), ("n", 3072), ("k", 1024)]`.
    fn dims(&self) -> Vec<(&'static str, u64)>;
    /// Element type.
    fn dtype(&self) -> DType;
    /// Exact work of one iteration.
    fn work(&self) -> Work;
    /// Peak device memory the prepared kernel needs (inputs, outputs, temporaries),
    /// so callers can refuse shapes that do not fit before allocating.
    fn memory_bytes(&self) -> u64;
    /// Allocate random-normal inputs on `device` and return a runnable instance.
    fn prepare(&self, device: &Device) -> Result<Box<dyn Prepared>>;

    /// A runnable instance whose operands are views into `pool` (random values of
    /// this kernel's dtype, shared by every caller), taken in turn run after run across
    /// the whole pool: each run finds its operands out of cache, as in a training step,
    /// without a copy of them per run. `None`: this kernel has its own operands only.
    fn prepare_pooled(
        &self,
        _device: &Device,
        _pool: &candle_core::Tensor,
    ) -> Option<Result<Box<dyn Prepared>>> {
        None
    }

    /// Human-readable shape, e.g. `m=4096 n=3072 k=1024`.
    fn shape(&self) -> String {
        self.dims()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Stable identifier used to match benchmarks across result files:
    /// `kind/label/shape/dtype` with the shape as `m4096.n3072.k1024`.
    fn id(&self) -> String {
        let dims = self
            .dims()
            .iter()
            .map(|(k, v)| format!("{k}{v}"))
            .collect::<Vec<_>>()
            .join(".");
        format!(
            "{}/{}/{}/{}",
            self.kind().as_str(),
            self.label(),
            dims,
            self.dtype().as_str()
        )
    }
}

/// A kernel with its inputs allocated, ready to run.
pub trait Prepared {
    /// Run one iteration. Work may be queued asynchronously on a GPU: call
    /// [`Prepared::synchronize`] before reading a clock.
    fn run(&mut self) -> Result<()>;
    /// Wait until all queued work on the device has finished.
    fn synchronize(&self) -> Result<()>;
    /// Run once (if not yet run) and check the output against an f64 reference.
    fn verify(&mut self) -> Result<Verification>;
    /// Release what the instance keeps only so that its next runs find their memory
    /// out of cache (a pooled matmul's recent outputs); a caller that keeps several
    /// instances prepared calls it after each one's turn, so that only the one running
    /// holds that memory.
    fn idle(&mut self) {}
}

/// Parse a dtype name as used on the command line (`f32`, `f16`, `bf16`, `f64`).
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "f32" | "fp32" | "float32" => Ok(DType::F32),
        "f16" | "fp16" | "half" | "float16" => Ok(DType::F16),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f64" | "fp64" | "float64" => Ok(DType::F64),
        other => Err(KernelError::UnsupportedDtype {
            dtype: other.to_string(),
            reason: "expected one of f32, f16, bf16, f64".into(),
        }),
    }
}

/// Bytes per element of a floating-point dtype.
pub fn dtype_size(dtype: DType) -> u64 {
    dtype.size_in_bytes() as u64
}

/// Random-normal tensor (mean 0, std 1) of `dtype`: drawn in f32 and converted, so
/// half-precision inputs are the rounded values of the same distribution. Never zeros:
/// zeros flatter some hardware.
pub fn randn(shape: &[usize], dtype: DType, device: &Device) -> Result<candle_core::Tensor> {
    let t = candle_core::Tensor::randn(0f32, 1f32, shape, device)?;
    Ok(if dtype == DType::F32 {
        t
    } else {
        t.to_dtype(dtype)?
    })
}
