//! The `flopcal` binary: parse the command line, run it, map the result to an exit code.

use clap::Parser;

/// mimalloc, configured by [`flopcal_bench::alloc::keep_freed_pages`], so memory-bound
/// kernels are measured rather than their page faults (see that module for numbers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    flopcal_bench::alloc::keep_freed_pages();
    flopcal::render::exit_quietly_when_stdout_closes();
    let cli = flopcal::cli::Cli::parse();
    let code = match flopcal::cli::run(cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(flopcal::Error::StdoutClosed) => 0,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}
