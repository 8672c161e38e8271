//! `flopcal migrate OLD NEW`: rewrite a result file of an older schema as the current one.

use std::path::PathBuf;

use clap::Args;

use crate::{Error, Outcome, Result};
use flopcal_bench::results;

/// Arguments of `flopcal migrate`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Schema 1 → 2: the drift-widened interval in summary.ci95_* moves to summary.pi95_* (a prediction interval for another run's median); ci95_* is recomputed from the raw samples as the sampling interval of this run's median.\n\nExamples:\n  flopcal migrate old.json new.json\n  flopcal migrate results/box.json results/box.json"
)]
pub struct MigrateArgs {
    /// A result file of any schema this flopcal reads.
    pub old: PathBuf,
    /// Where to write it in the current schema (JSON, plus its CSV twin); may be
    /// the same path (replaced atomically).
    pub new: PathBuf,
}

/// Run `flopcal migrate`.
pub fn run(args: &MigrateArgs) -> Result<Outcome> {
    if args.new.extension().is_some_and(|e| e == "csv") {
        return Err(Error::Usage(format!(
            "NEW {}: give the .json name; the CSV twin is written next to it",
            args.new.display()
        )));
    }
    results::check_writable(&args.new)?;
    let (file, from) = results::load_any(&args.old)?;
    let file = results::migrate::upgraded(file);
    results::save(&file, &args.new)?;
    eprintln!(
        "wrote {} (schema {from} → {})",
        args.new.display(),
        results::SCHEMA_VERSION
    );
    Ok(Outcome::Success)
}
