//! Compiles the independent C references used to cross-check the peak microkernels:
//! FMA (csrc/fma_ref.c) and AMX tiles (csrc/amx_ref.c, which needs a compiler that
//! knows the AMX intrinsics, e.g. GCC ≥ 11). Optional: without an x86-64
//! GNU-compatible C compiler the crate builds without them (the `flopcal_cref` and
//! `flopcal_amx_cref` cfgs stay off).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(flopcal_cref)");
    println!("cargo::rustc-check-cfg=cfg(flopcal_amx_cref)");
    println!("cargo::rerun-if-changed=csrc/fma_ref.c");
    println!("cargo::rerun-if-changed=csrc/amx_ref.c");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if arch != "x86_64" || env == "msvc" {
        return;
    }
    reference(
        "fma_ref",
        "flopcal_cref",
        "C FMA reference not built; peak cross-check disabled",
    );
    reference(
        "amx_ref",
        "flopcal_amx_cref",
        "C AMX reference not built; AMX cross-check disabled",
    );
}

/// Compile `csrc/NAME.c` into `libflopcal_NAME.a`; on success set `cfg`, otherwise
/// warn with `why_not` and the compiler's error.
fn reference(name: &str, cfg: &str, why_not: &str) {
    match cc::Build::new()
        .file(format!("csrc/{name}.c"))
        .opt_level(2)
        .warnings(true)
        .try_compile(&format!("flopcal_{name}"))
    {
        Ok(()) => println!("cargo::rustc-cfg={cfg}"),
        Err(e) => println!("cargo::warning={why_not} ({e})"),
    }
}
