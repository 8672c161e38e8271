//! Compiles the independent C FMA reference (csrc/fma_ref.c) used to cross-check the
//! peak microkernels. Optional: without an x86-64 GNU-compatible C compiler the crate
//! builds without it (the `flopcal_cref` cfg stays off).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(flopcal_cref)");
    println!("cargo::rerun-if-changed=csrc/fma_ref.c");
    println!("cargo::rerun-if-changed=build.rs");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if arch != "x86_64" || env == "msvc" {
        return;
    }
    match cc::Build::new()
        .file("csrc/fma_ref.c")
        .opt_level(2)
        .warnings(true)
        .try_compile("flopcal_fma_ref")
    {
        Ok(()) => println!("cargo::rustc-cfg=flopcal_cref"),
        Err(e) => {
            println!("cargo::warning=C FMA reference not built ({e}); peak cross-check disabled")
        }
    }
}
