//! Device selection (`--device cpu|cuda|metal|auto`) and thread configuration.

use candle_core::Device;
use clap::ValueEnum;

use crate::{BenchError, Result};

/// Which device to run kernels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DeviceChoice {
    /// A GPU if this build has one and it is present, else the CPU.
    #[default]
    Auto,
    /// The host CPU (always available).
    Cpu,
    /// NVIDIA GPU 0 (needs a build with `--features cuda`).
    Cuda,
    /// Apple GPU (needs a build with `--features metal`).
    Metal,
}

/// Open the requested device, or say clearly why it cannot be had.
pub fn open(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => open_cuda(),
        DeviceChoice::Metal => open_metal(),
        DeviceChoice::Auto => {
            if cfg!(feature = "cuda") {
                if let Ok(d) = open_cuda() {
                    return Ok(d);
                }
            }
            if cfg!(feature = "metal") {
                if let Ok(d) = open_metal() {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
    }
}

fn open_cuda() -> Result<Device> {
    if !cfg!(feature = "cuda") {
        return Err(BenchError::Device(
            "--device cuda: this build has no CUDA support; rebuild with `cargo build --release --features cuda` (see README)".into(),
        ));
    }
    Device::new_cuda(0)
        .map_err(|e| BenchError::Device(format!("--device cuda: no usable CUDA GPU: {e}")))
}

fn open_metal() -> Result<Device> {
    if !cfg!(feature = "metal") {
        return Err(BenchError::Device(
            "--device metal: this build has no Metal support; rebuild with `cargo build --release --features metal` on macOS".into(),
        ));
    }
    Device::new_metal(0)
        .map_err(|e| BenchError::Device(format!("--device metal: no usable Metal GPU: {e}")))
}

/// Short device name for result files: `cpu`, `cuda:0`, `metal:0`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

/// Physical cores of this machine: sysinfo's count, else one CPU per core from the
/// topology the peak microkernels pin to, else the logical CPUs.
pub fn physical_cores() -> usize {
    sysinfo::System::physical_core_count()
        .filter(|n| *n > 0)
        .or_else(|| {
            let cpus = flopcal_kernels::ceilings::physical_core_cpus();
            (!cpus.is_empty()).then_some(cpus.len())
        })
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1)
}

/// Configure the CPU thread count for rayon and for candle's `gemm` calls, which read
/// `RAYON_NUM_THREADS`. Must run before any kernel executes. Returns the count used.
pub fn configure_threads(requested: Option<usize>) -> Result<usize> {
    let n = match requested {
        Some(0) => return Err(BenchError::Usage("--threads must be at least 1".into())),
        Some(n) => n,
        None => physical_cores(),
    };
    // SAFETY of set_var: called at start-up from the main thread, before any other
    // thread (rayon's pool included) exists.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    // The calling thread joins the pool as worker 0, as OpenMP's master thread does in
    // PyTorch's CPU kernels: a GEMM then splits over this thread and n - 1 workers, and
    // the serial ops between GEMMs do not share the cores with n idle workers spinning
    // before they sleep. (Outside the pool, n workers plus this thread contend for n
    // cores after every parallel op: `flopcal validate --model tiny` measured its step
    // at 26.4 ms outside and 23.0-24.0 ms inside, on 2 cores, while the kernels measured
    // alone moved by half as much.) With one thread there is
    // nothing to share, and a pool of only this thread would leave work sent from any
    // other thread unrun.
    let builder = rayon::ThreadPoolBuilder::new().num_threads(n);
    let builder = if n > 1 {
        builder.use_current_thread()
    } else {
        builder
    };
    // A pool built earlier in this process keeps its size; ignore that case quietly
    // since the env var above still steers candle's gemm parallelism.
    let _ = builder.build_global();
    Ok(n)
}
