//! The `flopcal` binary: parse the command line, run it, map the result to an exit code.

use clap::Parser;

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
