//! `flopcal report RESULT... --out report.html`: a self-contained HTML report.

use std::path::PathBuf;

use clap::Args;

use crate::{Error, Outcome, Result};
use flopcal_bench::ceilings::PeakSection;
use flopcal_bench::report::{self, ReportInput};
use flopcal_bench::results::write_atomic;

/// Arguments of `flopcal report`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Examples:\n  flopcal report results/my-box.json --out report.html\n  flopcal report results/*.json --out history.html\n  flopcal report profile.json --peak peak.json --out report.html"
)]
pub struct ReportArgs {
    /// Result files (JSON from `flopcal profile --out`); several files of one host
    /// are shown over time, files of different hosts side by side.
    #[arg(required = true, value_name = "RESULT")]
    pub results: Vec<PathBuf>,
    /// Where to write the HTML file.
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// Take the roofline ceilings from this `flopcal peak --out` file for results
    /// that have no `peak` section of their own.
    #[arg(long, value_name = "FILE")]
    pub peak: Option<PathBuf>,
    /// Fleet files: flag a rank whose median is more than this far below the fleet
    /// median on a compute-bound kernel. A fraction or a percentage.
    #[arg(long, default_value = "5%", value_parser = super::values::parse_fraction)]
    pub straggler: f64,
}

/// Run `flopcal report`.
pub fn run(args: &ReportArgs) -> Result<Outcome> {
    if args.out.extension().is_some_and(|e| e == "json") {
        return Err(Error::Usage(format!(
            "--out {}: refusing to write HTML over a .json file; give a name such as report.html",
            args.out.display()
        )));
    }
    flopcal_bench::results::check_writable(&args.out)?;
    let peak = args
        .peak
        .as_deref()
        .map(PeakSection::from_file)
        .transpose()?;
    // Comm and fleet files get sections of their own.
    let (extra, profiles) = super::fleet::report_sections(&args.results, args.straggler)?;
    let mut inputs = Vec::with_capacity(args.results.len());
    for p in &profiles {
        let mut inp = ReportInput::load(p)?;
        if inp.peak.is_none() {
            inp.peak = peak.clone();
        }
        inputs.push(inp);
    }
    let html = if inputs.is_empty() {
        report::page(&format!("<h1>flopcal report</h1>{}", extra.html))
    } else {
        report::page(&(report::render_body(&inputs)? + &extra.html))
    };
    write_atomic(&args.out, html.as_bytes())?;
    eprintln!(
        "wrote {} ({} plots, {} KiB)",
        args.out.display(),
        if inputs.is_empty() {
            0
        } else {
            report::plot_count(&inputs)
        } + extra.plots,
        html.len().div_ceil(1024)
    );
    Ok(Outcome::Success)
}
