//! `flopcal history DIR`: a machine's results over time, per benchmark.

use std::path::PathBuf;

use clap::Args;
use comfy_table::{Cell, CellAlignment};

use crate::commands::values::parse_fraction;
use crate::render::{self, OutputFormat};
use crate::{Error, Outcome, Result};
use flopcal_bench::history::{self, History};
use flopcal_bench::regress::{self, fmt_pct, RegressOptions};
use flopcal_bench::report_table::fmt_giga;

/// Arguments of `flopcal history`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Examples:\n  flopcal history results/\n  flopcal history results/ --format json"
)]
pub struct HistoryArgs {
    /// Directory of result files (`*.json`); they are ordered by their creation time.
    pub dir: PathBuf,
    /// Significance level for change points (as in `regress`).
    #[arg(long, default_value_t = regress::DEFAULT_ALPHA)]
    pub alpha: f64,
    /// Noise threshold for change points and trends: a fraction or a percentage.
    #[arg(long, default_value = "5%", value_parser = parse_fraction)]
    pub noise: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// Run `flopcal history`.
pub fn run(args: &HistoryArgs) -> Result<Outcome> {
    let opts = RegressOptions {
        alpha: args.alpha,
        noise: args.noise,
        threshold: args.noise,
        ..RegressOptions::default()
    };
    opts.validate()?;
    if !args.dir.is_dir() {
        return Err(Error::Usage(format!(
            "{}: not a directory; give the folder that holds the result files",
            args.dir.display()
        )));
    }
    let (runs, skipped) = history::load_dir(&args.dir)?;
    for p in &skipped {
        eprintln!(
            "note: {}: not a result file (no benchmarks); skipped",
            p.display()
        );
    }
    let h = history::summarise(&runs, &opts);
    match args.format {
        OutputFormat::Json => render::json::print(&h)?,
        OutputFormat::Csv => render::stdout(&csv(&h)?)?,
        _ => render::stdout(&format!("{}\n", table(&h)))?,
    }
    Ok(Outcome::Success)
}

fn change_points_text(s: &history::Series) -> String {
    s.change_points
        .iter()
        .map(|c| match (&c.ci, &c.note) {
            (Some((lo, hi)), _) => format!(
                "run {} ({}): {} {} [{}, {}]",
                c.run + 1,
                c.created_at.get(..10).unwrap_or(&c.created_at),
                c.kind,
                fmt_pct(c.change),
                fmt_pct(*lo),
                fmt_pct(*hi)
            ),
            (None, note) => format!(
                "run {} ({}): host changed ({})",
                c.run + 1,
                c.created_at.get(..10).unwrap_or(&c.created_at),
                note.clone().unwrap_or_default()
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Terminal table: one row per benchmark.
pub fn table(h: &History) -> String {
    let mut t = render::table::new([
        "benchmark",
        "runs",
        "first GFLOP/s",
        "last GFLOP/s",
        "total",
        "trend/run",
        "trend",
        "change points",
    ]);
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for s in &h.series {
        let first = s
            .points
            .first()
            .map(|p| fmt_giga(p.flops_per_s))
            .unwrap_or_default();
        let last = s
            .points
            .last()
            .map(|p| fmt_giga(p.flops_per_s))
            .unwrap_or_default();
        t.add_row(vec![
            Cell::new(&s.id),
            right(s.points.len().to_string()),
            right(first),
            right(last),
            right(fmt_pct(s.total_change)),
            right(fmt_pct(s.trend_per_run)),
            Cell::new(&s.trend),
            Cell::new(change_points_text(s)),
        ]);
    }
    let span = match (h.runs.first(), h.runs.last()) {
        (Some(a), Some(z)) => format!("{} → {}", a.1, z.1),
        _ => String::new(),
    };
    format!("{t}\n{} runs, {span}", h.runs.len())
}

/// CSV: one row per benchmark and run.
pub fn csv(h: &History) -> Result<String> {
    let mut w = render::csv::writer();
    let err = render::csv::error;
    w.write_record([
        "id",
        "run",
        "created_at",
        "flops_per_s",
        "n",
        "change_point",
        "change",
    ])
    .map_err(err)?;
    for s in &h.series {
        for p in &s.points {
            let cp = s.change_points.iter().find(|c| c.run == p.run);
            w.write_record([
                s.id.clone(),
                p.run.to_string(),
                p.created_at.clone(),
                format!("{:e}", p.flops_per_s),
                p.n.to_string(),
                cp.map(|c| c.kind.clone()).unwrap_or_default(),
                cp.map(|c| format!("{:e}", c.change)).unwrap_or_default(),
            ])
            .map_err(err)?;
        }
    }
    render::csv::finish(w)
}
