//! The `flopcal` binary: parse the command line, run it, map the result to an exit code.

use clap::Parser;

/// candle allocates a fresh output for every op. With glibc's default allocator every
/// large buffer is a new mmap, so each iteration of a memory-bound kernel pays for
/// page faults on fresh memory (measured: STREAM scale on 64 MiB arrays 6x slower).
/// mimalloc keeps freed pages for reuse, as a training framework's caching allocator
/// does, so flopcal measures the kernel rather than the kernel's page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = flopcal::cli::Cli::parse();
    let code = match flopcal::cli::run(cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    };
    std::process::exit(code);
}
