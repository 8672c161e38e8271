//! `flopcal regress BASELINE CANDIDATE`: fail CI when throughput regresses.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use comfy_table::{Cell, CellAlignment};

use super::values::parse_fraction;
use crate::render::{self, markdown};
use flopcal_bench::regress::{
    self, fmt_ci, fmt_p, fmt_pct, summary_line, verdict_label, RegressComparison, RegressOptions,
    Row,
};
use flopcal_bench::report_table::fmt_giga;

use crate::{Outcome, Result};
use flopcal_bench::results;

/// Output formats of `regress` (the shared ones plus Markdown for pull requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum RegressFormat {
    /// Human-readable table (default).
    #[default]
    Table,
    /// Machine-readable JSON; nothing else on stdout.
    Json,
    /// One CSV row per benchmark.
    Csv,
    /// A Markdown table to paste into a pull request.
    Markdown,
}

/// Arguments of `flopcal regress`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Exit status: 0 no regression, 1 at least one regression (or a kernel that broke), 2 error.\n\nExamples:\n  flopcal regress results/main.json results/pr.json\n  flopcal regress base.json cand.json --noise 3% --threshold 10%\n  flopcal regress base.json cand.json --format markdown >> $GITHUB_STEP_SUMMARY"
)]
pub struct RegressArgs {
    /// The reference result file (JSON from `flopcal profile --out`).
    pub baseline: PathBuf,
    /// The result file to check against it.
    pub candidate: PathBuf,
    /// Significance level of the one-sided Mann–Whitney test.
    #[arg(long, default_value_t = regress::DEFAULT_ALPHA)]
    pub alpha: f64,
    /// Noise threshold: a slowdown is a regression only when its whole 95% CI lies
    /// beyond it. A fraction (0.05) or a percentage (5%).
    #[arg(long, default_value = "5%", value_parser = parse_fraction)]
    pub noise: f64,
    /// Slowdown (point estimate) at which a regression fails the run; defaults to
    /// the noise threshold. A fraction or a percentage.
    #[arg(long, value_parser = parse_fraction)]
    pub threshold: Option<f64>,
    /// Compare even when the host fingerprints (CPU model, device, threads, build
    /// features) differ; otherwise such benchmarks are `incomparable`.
    #[arg(long)]
    pub allow_different_hosts: bool,
    /// Bootstrap resamples for the CI of each change.
    #[arg(long, default_value_t = flopcal_bench::harness::compare::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    /// Seed of the bootstrap RNG (results are reproducible for a seed).
    #[arg(long, default_value_t = flopcal_bench::harness::compare::DEFAULT_SEED)]
    pub seed: u64,
    /// Control of false regressions over the whole suite: `none` judges each kernel
    /// at --alpha on its own; `holm` keeps the chance that any kernel of the suite
    /// is falsely flagged at --alpha (Holm–Bonferroni). Use `holm` to gate CI.
    #[arg(long, value_enum, default_value_t = regress::Correction::None)]
    pub correct: regress::Correction,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RegressFormat::Table)]
    pub format: RegressFormat,
    /// Fleet files: flag a rank whose median is more than this far below the fleet
    /// median on a compute-bound kernel. A fraction or a percentage.
    #[arg(long, default_value = "5%", value_parser = parse_fraction)]
    pub straggler: f64,
}

/// Run `flopcal regress`.
pub fn run(args: &RegressArgs) -> Result<Outcome> {
    let opts = RegressOptions {
        alpha: args.alpha,
        noise: args.noise,
        threshold: args.threshold.unwrap_or(args.noise),
        allow_different_hosts: args.allow_different_hosts,
        resamples: args.resamples,
        seed: args.seed,
        correct: args.correct,
    };
    opts.validate()?;
    // Comm and fleet files have their own comparisons.
    let kind = flopcal_bench::comm::file_kind(&args.candidate)?;
    if kind.is_some() && args.correct != regress::Correction::None {
        eprintln!(
            "note: --correct {} applies to profile result files; this comparison judges each row at --alpha on its own",
            args.correct.as_str()
        );
    }
    match kind.as_deref() {
        Some(flopcal_bench::comm::COMM_KIND) => return comm_files(args, &opts),
        Some(flopcal_bench::fleet::FLEET_KIND) => return fleet_file(args),
        _ => {}
    }
    let base = results::load(&args.baseline)?;
    regress::validate(&base, &args.baseline)?;
    let cand = results::load(&args.candidate)?;
    regress::validate(&cand, &args.candidate)?;
    let cmp = regress::compare_files(&base, &args.baseline, &cand, &args.candidate, &opts);
    if !cmp.host_differences.is_empty() {
        let what = if opts.allow_different_hosts {
            "compared anyway (--allow-different-hosts)"
        } else {
            "benchmarks are incomparable; pass --allow-different-hosts to compare anyway"
        };
        eprintln!(
            "warning: the host fingerprints differ ({}); {what}",
            cmp.host_differences.join("; ")
        );
    }
    if let Some(w) = &cmp.machine_state_warning {
        eprintln!("warning: {w}");
    }
    match args.format {
        RegressFormat::Table => render::stdout(&format!("{}\n", table(&cmp)))?,
        RegressFormat::Json => render::json::print(&cmp)?,
        RegressFormat::Csv => render::stdout(&csv(&cmp)?)?,
        RegressFormat::Markdown => render::stdout(&markdown(&cmp))?,
    }
    Ok(if cmp.failed() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

fn giga(x: Option<f64>) -> String {
    x.map(fmt_giga).unwrap_or_else(|| "—".into())
}

fn change_cells(r: &Row) -> (String, String, String) {
    match &r.stats {
        Some(s) => (
            fmt_pct(s.change),
            fmt_ci(s.ci_low, s.ci_high),
            fmt_p(s.p_slower),
        ),
        None => ("—".into(), "—".into(), "—".into()),
    }
}

/// The columns of a comparison, in the table and in Markdown.
const COLUMNS: [&str; 7] = [
    "benchmark",
    "base GFLOP/s",
    "cand GFLOP/s",
    "change",
    "95% CI",
    "p(slower)",
    "verdict",
];

/// The terminal table of a comparison.
pub fn table(c: &RegressComparison) -> String {
    let mut t = render::table::new(COLUMNS);
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for r in &c.rows {
        let (change, ci, p) = change_cells(r);
        let mut verdict = verdict_label(r);
        if let Some(n) = &r.note {
            verdict = format!("{verdict} ({n})");
        }
        t.add_row(vec![
            Cell::new(&r.id),
            right(giga(r.baseline_flops_per_s)),
            right(giga(r.candidate_flops_per_s)),
            right(change),
            right(ci),
            right(p),
            Cell::new(verdict),
        ]);
    }
    format!("{t}\n{}", summary_line(c))
}

/// The CSV form: one row per benchmark.
pub fn csv(c: &RegressComparison) -> Result<String> {
    let mut w = render::csv::writer();
    let err = render::csv::error;
    w.write_record([
        "id",
        "verdict",
        "fails",
        "baseline_flops_per_s",
        "candidate_flops_per_s",
        "change",
        "ci_low",
        "ci_high",
        "p_slower",
        "p_faster",
        "baseline_n",
        "candidate_n",
        "note",
    ])
    .map_err(err)?;
    let num = |x: Option<f64>| x.map(|v| format!("{v:e}")).unwrap_or_default();
    for r in &c.rows {
        let s = r.stats.as_ref();
        w.write_record([
            r.id.clone(),
            r.verdict.as_str().into(),
            r.fails.to_string(),
            num(r.baseline_flops_per_s),
            num(r.candidate_flops_per_s),
            num(s.map(|s| s.change)),
            num(s.map(|s| s.ci_low)),
            num(s.map(|s| s.ci_high)),
            num(s.map(|s| s.p_slower)),
            num(s.map(|s| s.p_faster)),
            r.baseline_n.to_string(),
            r.candidate_n.to_string(),
            r.note.clone().unwrap_or_default(),
        ])
        .map_err(err)?;
    }
    render::csv::finish(w)
}

/// A Markdown report for a pull request.
pub fn markdown(c: &RegressComparison) -> String {
    let mut out = String::new();
    let icon = if c.failed() { "❌" } else { "✅" };
    out.push_str(&format!(
        "### {icon} flopcal regress: {}\n\n",
        summary_line(c)
    ));
    out.push_str(&format!(
        "Baseline `{}` → candidate `{}`.\n\n",
        c.baseline.display(),
        c.candidate.display()
    ));
    if !c.host_differences.is_empty() {
        out.push_str(&format!(
            "> **Hosts differ:** {}\n\n",
            markdown::escape(&c.host_differences.join("; "))
        ));
    }
    out.push_str(&markdown::head(&COLUMNS, "lrrrrrl"));
    for r in &c.rows {
        let (change, ci, p) = change_cells(r);
        let mut verdict = verdict_label(r);
        if r.fails {
            verdict = format!("**{verdict}**");
        }
        if let Some(n) = &r.note {
            verdict = format!("{verdict} ({n})");
        }
        out.push_str(&markdown::row([
            format!("`{}`", markdown::escape(&r.id)),
            giga(r.baseline_flops_per_s),
            giga(r.candidate_flops_per_s),
            change,
            ci,
            p,
            markdown::escape(&verdict),
        ]));
    }
    out
}

/// `regress` given comm files: bus bandwidth per (collective, dtype, size).
fn comm_files(args: &RegressArgs, opts: &RegressOptions) -> Result<Outcome> {
    let base = flopcal_bench::comm::load(&args.baseline)?;
    let cand = flopcal_bench::comm::load(&args.candidate)?;
    let cmp = flopcal_bench::comm::regress::compare(&base, &cand, opts);
    if !cmp.host_differences.is_empty() {
        eprintln!(
            "warning: the runs differ ({}); {}",
            cmp.host_differences.join("; "),
            if opts.allow_different_hosts {
                "compared anyway (--allow-different-hosts)"
            } else {
                "points are incomparable; pass --allow-different-hosts to compare anyway"
            }
        );
    }
    let cells = |r: &flopcal_bench::comm::regress::CommRow| -> [String; 6] {
        let gb = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "—".into());
        let (change, ci, p) = match &r.stats {
            Some(s) => (
                fmt_pct(s.change),
                fmt_ci(s.ci_low, s.ci_high),
                fmt_p(s.p_slower),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        let mut verdict = r.verdict.as_str().to_string();
        if r.fails {
            verdict = format!("{verdict} (fails)");
        }
        if let Some(n) = &r.note {
            verdict = format!("{verdict} ({n})");
        }
        [
            gb(r.baseline_busbw_gb_s),
            gb(r.candidate_busbw_gb_s),
            change,
            ci,
            p,
            verdict,
        ]
    };
    let header = [
        "point",
        "base busbw GB/s",
        "cand busbw GB/s",
        "change",
        "95% CI",
        "p(slower)",
        "verdict",
    ];
    let summary = format!(
        "{} points compared; {} fail ({})",
        cmp.rows.len(),
        cmp.failures,
        cmp.counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match args.format {
        RegressFormat::Json => render::json::print(&cmp)?,
        RegressFormat::Csv => {
            // Through the CSV writer: the CI cell ("[-1.0%, +2.0%]") holds a comma.
            let mut w = render::csv::writer();
            w.write_record(header).map_err(render::csv::error)?;
            for r in &cmp.rows {
                w.write_record(std::iter::once(r.id.clone()).chain(cells(r)))
                    .map_err(render::csv::error)?;
            }
            render::csv::print(w)?;
        }
        RegressFormat::Markdown => {
            let mut out = format!("### flopcal regress (comm): {summary}\n\n");
            out.push_str(&markdown::head(&header, "lrrrrrl"));
            for r in &cmp.rows {
                out.push_str(&markdown::row(
                    std::iter::once(format!("`{}`", r.id)).chain(cells(r)),
                ));
            }
            render::stdout(&out)?;
        }
        RegressFormat::Table => {
            let mut t = render::table::new(header);
            for r in &cmp.rows {
                let mut row = vec![comfy_table::Cell::new(&r.id)];
                row.extend(cells(r).into_iter().map(comfy_table::Cell::new));
                t.add_row(row);
            }
            render::stdout(&format!("{t}\n{summary}\n"))?;
        }
    }
    Ok(if cmp.failed() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}

/// `regress` given a fleet file as the candidate: the spread and straggler verdict
/// at `--straggler`; exit 1 when a rank straggles.
fn fleet_file(args: &RegressArgs) -> Result<Outcome> {
    flopcal_bench::fleet::check_threshold(args.straggler)?;
    let mut file = flopcal_bench::fleet::load(&args.candidate)?;
    file.summary = flopcal_bench::fleet::summarize(&file.ranks, args.straggler);
    match args.format {
        RegressFormat::Json => render::json::print(&file.summary)?,
        RegressFormat::Csv => render::stdout(&flopcal_bench::fleet::spread_csv(
            &file.summary,
            &file.ranks,
        )?)?,
        _ => render::stdout(&format!("{}\n", super::fleet::spread_table(&file.summary)))?,
    }
    Ok(if file.summary.stragglers.is_empty() {
        Outcome::Success
    } else {
        Outcome::Failed
    })
}
