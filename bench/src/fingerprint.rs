//! Host fingerprint: what machine, OS, device, library versions and build features a
//! result was measured with. `regress` uses it to refuse comparing apples with pears.

use serde::{Deserialize, Serialize};

/// Identity of the machine and build that produced a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// CPU model string, e.g. `AMD EPYC 9R45`.
    pub cpu_model: String,
    /// CPU architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// Physical cores.
    pub physical_cores: usize,
    /// Logical CPUs.
    pub logical_cpus: usize,
    /// SIMD / matrix ISA extensions detected at run time.
    pub isa_features: Vec<String>,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// OS name and version.
    pub os: String,
    /// Kernel version.
    pub kernel: String,
    /// Device the kernels ran on (`cpu`, `cuda:0`).
    pub device: String,
    /// Human name of the device (the CPU model, or the GPU name).
    pub device_name: String,
    /// Threads used for CPU kernels.
    pub threads: usize,
    /// candle-core version compiled in.
    pub candle_version: String,
    /// Cargo features this binary was built with.
    pub build_features: Vec<String>,
}

/// SIMD features relevant to kernel throughput, detected on this CPU.
pub fn isa_features() -> Vec<String> {
    let mut f: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($name:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($name) { f.push($name); }
            )*};
        }
        probe!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512bf16",
            "avx512fp16",
            "avx512vnni"
        );
        // AMX is not detectable through is_x86_feature_detected! on stable Rust; the
        // peak microkernels read CPUID for it, so take their answer.
        f.extend(
            flopcal_kernels::ceilings::cpu_features()
                .into_iter()
                .filter(|name| name.starts_with("amx")),
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! probe {
            ($($name:tt),*) => {$(
                if std::arch::is_aarch64_feature_detected!($name) { f.push($name); }
            )*};
        }
        probe!("neon", "fp16", "bf16", "i8mm", "sve", "sve2");
    }
    f.into_iter().map(String::from).collect()
}

/// Cargo features compiled into this binary.
pub fn build_features() -> Vec<String> {
    let mut f = Vec::new();
    if cfg!(feature = "cuda") {
        f.push("cuda".to_string());
    }
    if cfg!(feature = "metal") {
        f.push("metal".to_string());
    }
    if cfg!(target_arch = "x86_64") {
        f.push("gemm-x86-v4".to_string());
    }
    // The allocator policy changes memory-bound timings severalfold (see `alloc`).
    if crate::alloc::pages_kept() {
        f.push("mimalloc-keep-pages".to_string());
    }
    f
}

/// Collect the fingerprint of this host for `device` run with `threads` threads.
pub fn collect(device: &candle_core::Device, threads: usize) -> Fingerprint {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let cpu_model = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown CPU".into());
    let device_label = crate::device::device_name(device);
    let device_name = if device.is_cpu() {
        cpu_model.clone()
    } else {
        device_label.clone()
    };
    Fingerprint {
        arch: std::env::consts::ARCH.to_string(),
        physical_cores: crate::device::physical_cores(),
        logical_cpus: sys.cpus().len().max(1),
        isa_features: isa_features(),
        memory_bytes: sys.total_memory(),
        os: sysinfo::System::long_os_version().unwrap_or_else(|| std::env::consts::OS.into()),
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        device: device_label,
        device_name,
        threads,
        candle_version: env!("FLOPCAL_CANDLE_VERSION").to_string(),
        build_features: build_features(),
        cpu_model,
    }
}

/// Available memory in bytes right now (for refusing shapes that cannot fit).
pub fn available_memory() -> u64 {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    sys.available_memory()
}
