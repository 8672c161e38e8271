//! Command-line interface (clap derive). Every flag is documented here; `--help` is
//! generated from these doc comments.

use clap::{Parser, Subcommand};

use crate::commands;

/// flopcal measures what this machine really does on transformer workloads and turns
/// it into honest training-time and cost estimates.
///
/// With no subcommand it runs a quick profile of this machine (about a minute) and
/// prints what it found.
#[derive(Debug, Parser)]
#[command(name = "flopcal", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// What to do; `flopcal` alone runs `profile --quick`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure achieved FLOP/s of a model's transformer kernels on this machine.
    Profile(commands::profile::ProfileArgs),
    /// Measure this machine's compute (FMA) and memory-bandwidth ceilings.
    Peak(commands::peak::PeakArgs),
    /// Measure collective communication (all-reduce, all-gather, ...) across MPI ranks:
    /// latency, algorithm and bus bandwidth, α–β fit. Launch with `mpirun -np N`.
    Comm(commands::comm::CommArgs),
    /// Estimate training time, cost, energy and CO2 for a model and token budget.
    Estimate(commands::estimate_args::EstimateArgs),
    /// Search every parallel layout of a model on N devices: the best ones ranked, and
    /// the ones refused with the reason.
    Plan(commands::plan::PlanArgs),
    /// On-prem vs cloud for one training plan: cost per run and per year, break-even
    /// utilisation, verdict.
    Compare(commands::compare::CompareArgs),
    /// Relate published training runs to hardware peaks: implied MFU, leave-one-out check.
    Calibrate(commands::calibrate::CalibrateArgs),
    /// Compare two result files; exit 1 when throughput regressed significantly.
    Regress(commands::regress::RegressArgs),
    /// Time one real training step and compare it with the time predicted from the profile.
    Validate(commands::validate::ValidateArgs),
    /// Write a self-contained HTML report (roofline, kernels, history) of result files.
    Report(commands::report::ReportArgs),
    /// Summarise a directory of result files in time order: trends and change points.
    History(commands::history::HistoryArgs),
    /// Rewrite a result file of an older schema in the current one.
    Migrate(commands::migrate::MigrateArgs),
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> crate::Result<crate::Outcome> {
    match cli.command {
        None => commands::profile::run_default(),
        Some(Command::Profile(args)) => commands::profile::run(&args),
        Some(Command::Peak(args)) => commands::peak::run(&args),
        Some(Command::Comm(args)) => commands::comm::run(&args),
        Some(Command::Estimate(args)) => commands::estimate::run(&args),
        Some(Command::Plan(args)) => commands::plan::run(&args),
        Some(Command::Compare(args)) => commands::compare::run(&args),
        Some(Command::Calibrate(args)) => commands::calibrate::run(&args),
        Some(Command::Regress(args)) => commands::regress::run(&args),
        Some(Command::Validate(args)) => commands::validate::run(&args),
        Some(Command::Report(args)) => commands::report::run(&args),
        Some(Command::History(args)) => commands::history::run(&args),
        Some(Command::Migrate(args)) => commands::migrate::run(&args),
    }
}
