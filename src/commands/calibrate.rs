//! `flopcal calibrate`: the step model against every published run (Korthikanti,
//! Narayanan, Llama 3, PaLM, MT-NLG, Pythia, the seeds), its fitted parameters with
//! the runs they rest on, and the leave-one-out check; the seeds' published costs
//! reproduced as an arithmetic check of how the catalog reads them; AI21's ranges
//! under one stated reading.

use std::path::PathBuf;

use clap::Args;
use comfy_table::{Cell, CellAlignment};
use flopcal_model::calibrate::{calibrate_with, Calibration};
use serde::Serialize;

use crate::planning::load_catalog;
use crate::render::table::{layout_text, outln, thousands};
use crate::render::{self, OutputFormat};
use crate::{Error, Outcome, Result};

/// Arguments of `flopcal calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Catalog override file (TOML with [[hardware]], [[models]], [[runs]]); also
    /// taken from the FLOPCAL_CATALOG environment variable.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Your own runs (TOML [[runs]] tables in the format of the embedded published
    /// runs), calibrated and left out by source like the published ones; see README
    /// "Your own runs".
    #[arg(long, value_name = "FILE")]
    pub own_runs: Option<PathBuf>,
    /// Fail (exit 1) when the step model's worst leave-one-out |ln(predicted/published)|
    /// exceeds this.
    #[arg(long, allow_negative_numbers = true)]
    pub max_log_error: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// What `--format json` prints.
#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    runs: &'a [flopcal_model::calibrate::RunCalibration],
    summary: &'a flopcal_model::calibrate::CalibrationSummary,
    ranges: &'a [flopcal_model::calibrate::RangeCheck],
    step: &'a flopcal_model::calibrate::StepCalibration,
}

/// Run `flopcal calibrate`.
pub fn run(args: &CalibrateArgs) -> Result<Outcome> {
    if let Some(m) = args.max_log_error {
        if !(m.is_finite() && m > 0.0) {
            return Err(Error::Usage(format!(
                "--max-log-error must be a positive number (got {m})"
            )));
        }
    }
    let cat = load_catalog(args.catalog.as_deref())?;
    let yours = crate::planning::load_runs(args.own_runs.as_deref(), &cat)?;
    let c = calibrate_with(&cat, &yours)?;
    match args.format {
        OutputFormat::Json => render::json::print(&JsonOut {
            runs: &c.runs,
            summary: &c.summary,
            ranges: &c.ranges,
            step: &c.step,
        })?,
        OutputFormat::Csv => print_csv(&c)?,
        OutputFormat::Table => print_table(&c)?,
    }
    let bad_bound = match (args.max_log_error, c.step.worst_abs_log_error) {
        (Some(m), Some(w)) => w > m,
        _ => false,
    };
    if bad_bound || !c.summary.all_costs_reproduced {
        if args.format == OutputFormat::Table {
            eprintln!(
                "calibration missed its bound: {}",
                if bad_bound {
                    "worst leave-one-out log-error above --max-log-error"
                } else {
                    "a published cost was not reproduced"
                }
            );
        }
        return Ok(Outcome::Failed);
    }
    Ok(Outcome::Success)
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map(f).unwrap_or_else(|| "—".into())
}

fn usd(x: Option<f64>) -> String {
    opt(x, |v| format!("${}", thousands(v)))
}

fn right(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

fn print_table(c: &Calibration) -> Result<()> {
    let mut out = String::new();
    let st = &c.step;
    let mut t = render::table::new(vec![
        "run",
        "hardware",
        "framework",
        "source",
        "chips",
        "published",
        "in-sample",
        "error",
        "left out",
        "LOSO |ln err|",
        "in band",
        "solved",
        "layout",
    ]);
    let secs = |x: f64, whole: bool| {
        if whole {
            format!("{:.1} h", x / 3600.0)
        } else {
            format!("{x:.3} s")
        }
    };
    for r in &st.runs {
        t.add_row(vec![
            Cell::new(&r.id),
            Cell::new(&r.hardware),
            Cell::new(&r.framework),
            Cell::new(&r.group),
            right(r.devices.to_string()),
            right(secs(r.published_s, r.whole_run)),
            right(secs(r.predicted_s, r.whole_run)),
            right(format!("{:+.1}%", r.error * 100.0)),
            right(secs(r.loo_predicted_s, r.whole_run)),
            right(format!("{:.3}", r.loo_abs_log_error)),
            Cell::new(if r.in_band { "yes" } else { "no" }),
            right(format!("{:.3}", r.solved_gemm_efficiency)),
            Cell::new(layout_text(&r.layout)),
        ]);
    }
    outln!(
        out,
        "Step model against published runs (seconds per step; seed runs: hours of the whole run at goodput {:.2}). \"in-sample\" is what `estimate` prints with the run's flags and --framework; \"left out\" is predicted from a fit without the run's whole source:",
        st.goodput
    );
    outln!(out, "{t}");
    let mut s = render::table::new(vec![
        "source (left out whole)",
        "framework",
        "hardware",
        "runs",
        "median |ln err|",
        "worst",
        "median bias",
        "in band",
    ]);
    for g in &st.sources {
        s.add_row(vec![
            Cell::new(&g.group),
            Cell::new(&g.framework),
            Cell::new(&g.hardware),
            right(g.runs.to_string()),
            right(format!(
                "{:.3} (x{:.2})",
                g.median_abs_log_error,
                g.median_abs_log_error.exp()
            )),
            right(format!("{:.3}", g.worst_abs_log_error)),
            right(format!("{:+.1}%", (g.median_log_error.exp() - 1.0) * 100.0)),
            right(format!("{}/{}", g.in_band, g.runs)),
        ]);
    }
    outln!(out, "{s}");
    outln!(
        out,
        "leave-one-out by whole source, over {} runs in {} sources: median |ln(pred/pub)| = {} (x{}), worst = {} ({}); {:.0}% bands hold {:.0}% of the left-out runs",
        st.runs_checked,
        st.sources.len(),
        opt(st.median_abs_log_error, |x| format!("{x:.3}")),
        opt(st.median_abs_log_error, |x| format!("{:.2}", x.exp())),
        opt(st.worst_abs_log_error, |x| format!("{x:.3}")),
        st.worst_run.as_deref().unwrap_or("—"),
        st.band_level * 100.0,
        st.band_coverage * 100.0,
    );
    outln!(
        out,
        "leave-one-out by whole hardware class (each of {} classes in turn, as for hardware no published run is on): median |ln(pred/pub)| = {}; {} of {} runs inside their band, widened by what not knowing the class adds ({}; built without the class)",
        st.class_out_classes,
        opt(st.class_out_median_abs_log_error, |x| format!("{x:.3}")),
        st.class_out_in_band,
        st.runs_checked,
        st.class_spread
            .iter()
            .map(|(fam, x)| format!("{fam} {x:.2} in ln"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if !st.excluded.is_empty() {
        outln!(
            out,
            "rows of NVIDIA's performance tables not used ({} in all):",
            st.excluded.iter().map(|e| e.1).sum::<usize>()
        );
        for (why, n) in &st.excluded {
            outln!(out, "  {n:4} {why}");
        }
    }
    outln!(
        out,
        "in sample (every source in the fit): median |ln(pred/pub)| = {}",
        opt(st.in_sample_median_abs_log_error, |x| format!("{x:.3}")),
    );
    outln!(
        out,
        "fitted parameters: one factor on GEMM rates (under each chip's measured GEMM ceiling, so at most 1) per software stack and hardware class, pooled toward the stack and the population with a prior weight of {:.2} sources (estimated: within-cell over between-stack variance; population {:.3}; stacks: {}):",
        st.pooling,
        st.population,
        st.stacks
            .iter()
            .map(|(f, v)| format!("{f} {v:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for p in &st.parameters {
        outln!(
            out,
            "  {:10} {:9} {:.3} (own {:.3}, weight {:.2})  sources: {}",
            p.framework,
            p.class,
            p.gemm_efficiency,
            p.own,
            p.own_weight,
            p.sources.join(", ")
        );
    }
    outln!(
        out,
        "layout gap {:.3}: the best layout flopcal finds for a production run, with recomputation held to what production runs do (full, or what the stack states), steps this fraction of the time of the layout the run stated (geometric mean over {} production sources); an estimate given no layout dimension prices that layout and divides its step by it. Left to the search so (as `estimate` without layout flags or --framework), the {} rows that state a layout are predicted, left out, with median |ln(pred/pub)| = {} and median bias {}: production runs {} / {}, benchmark tables {} / {}; {} of {} production runs fall inside their 80% no-layout band (built without their source)",
        st.layout_gap,
        st.layout_gap_sources,
        st.free_layout_runs,
        opt(st.free_layout_median_abs_log_error, |x| format!("{x:.3} (x{:.2})", x.exp())),
        opt(st.free_layout_median_log_error, pct_ln),
        opt(st.free_layout_production.0, |x| format!("{x:.3}")),
        opt(st.free_layout_production.1, pct_ln),
        opt(st.free_layout_benchmark.0, |x| format!("{x:.3}")),
        opt(st.free_layout_benchmark.1, pct_ln),
        st.free_layout_production_in_band.0,
        st.free_layout_production_in_band.1,
    );
    outln!(
        out,
        "stated, not fitted: links at {:.0}% and HBM at {:.0}% of nominal bandwidth",
        st.link_efficiency * 100.0,
        st.hbm_efficiency * 100.0
    );
    let mut t = render::table::new(vec![
        "run",
        "hardware",
        "as published",
        "chips",
        "hours",
        "published $",
        "reproduced $",
        "implied MFU",
    ]);
    for r in &c.runs {
        let mut published = usd(r.published_cost_usd);
        let mut reproduced = usd(r.reproduced_cost_usd);
        if let (Some(p), Some(q)) = (
            r.published_cost_preemptible_usd,
            r.reproduced_cost_preemptible_usd,
        ) {
            published.push_str(&format!(" / {} pre.", usd(Some(p))));
            reproduced.push_str(&format!(" / {} pre.", usd(Some(q))));
        }
        if let (Some(p), Some(q), Some(u)) = (
            r.alt_published_cost_usd,
            r.alt_reproduced_cost_usd,
            &r.alt_unit,
        ) {
            published.push_str(&format!(" ({u}s: {})", usd(Some(p))));
            reproduced.push_str(&format!(" ({u}s: {})", usd(Some(q))));
        }
        if let Some(m) = r.published_cost_min_usd {
            published = format!("> {}", usd(Some(m)));
            reproduced = format!(
                "{} [{} – {}] (predicted)",
                usd(r.predicted_cost_usd),
                usd(r.predicted_cost_low_usd),
                usd(r.predicted_cost_high_usd)
            );
        }
        if r.price_basis == "preemptible" {
            published.push_str(" (pre.)");
        }
        t.add_row(vec![
            Cell::new(&r.id),
            Cell::new(&r.hardware),
            Cell::new(format!("{} {}s", r.published_count, r.published_unit)),
            right(format!("{}", r.chips)),
            right(opt(r.hours, |h| match r.published_cost_hours {
                Some(c) if c != h => format!("{h} (cost: {c})"),
                _ => format!("{h}"),
            })),
            right(published),
            right(format!(
                "{reproduced}{}",
                if r.cost_reproduced { "" } else { " ✗" }
            )),
            right(opt(r.implied_mfu, |m| format!("{:.1}%", m * 100.0))),
        ]);
    }
    outln!(
        out,
        "\nArithmetic checks, not calibration: each seed's published cost reproduced as chips x hours x catalog price (how the catalog reads the source: chips, cores or devices):"
    );
    outln!(out, "{t}");
    let s = &c.summary;
    outln!(
        out,
        "published costs reproduced: {}",
        if s.all_costs_reproduced {
            "all"
        } else {
            "NOT all (✗ above)"
        }
    );
    if !c.ranges.is_empty() {
        let mut t = render::table::new(vec![
            "range",
            "published 1 run",
            "flopcal 1 run",
            "ratio",
            "published fully loaded",
            "flopcal fully loaded",
            "ratio",
            "flopcal 1-run band",
        ]);
        for g in &c.ranges {
            t.add_row(vec![
                Cell::new(&g.id),
                right(usd(Some(g.published_single_run_usd))),
                right(usd(Some(g.estimated_single_run_usd))),
                right(format!("{:.2}", g.single_run_ratio)),
                right(usd(Some(g.published_fully_loaded_usd))),
                right(usd(Some(g.estimated_fully_loaded_usd))),
                right(format!("{:.2}", g.fully_loaded_ratio)),
                right(format!(
                    "{} – {}",
                    usd(Some(g.estimated_single_run_low_usd)),
                    usd(Some(g.estimated_single_run_high_usd))
                )),
            ]);
        }
        outln!(
            out,
            "\nAI21 ranges, every size under one reading: {}",
            flopcal_model::calibrate::AI21_ASSUMPTION
        );
        outln!(out, "{t}");
        for g in c.ranges.iter().filter(|g| g.constructed) {
            outln!(
                out,
                "  {}: `{}` is constructed (no one published a 1.5B BERT): a 48 x 1600 encoder",
                g.id,
                g.model
            );
        }
        outln!(out, "  {}", ai21_verdict(&c.ranges));
    }
    render::stdout(&out)
}

fn print_csv(c: &Calibration) -> Result<()> {
    let mut w = render::csv::writer();
    let f = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let csv_err = |err: csv::Error| Error::Usage(format!("cannot write CSV: {err}"));
    w.write_record([
        "id",
        "hardware",
        "chips",
        "hours",
        "published_cost_usd",
        "reproduced_cost_usd",
        "implied_mfu",
        "loo_predicted_device_hours",
        "published_device_hours",
        "loo_ratio",
    ])
    .map_err(csv_err)?;
    for r in &c.runs {
        w.write_record([
            r.id.clone(),
            r.hardware.clone(),
            r.chips.to_string(),
            f(r.hours),
            f(r.published_cost_usd),
            f(r.reproduced_cost_usd),
            f(r.implied_mfu),
            f(r.loo_predicted_device_hours),
            f(r.published_device_hours),
            f(r.loo_ratio),
        ])
        .map_err(csv_err)?;
    }
    render::csv::print(w)
}

/// What the AI21 table shows, read from its ratios (flopcal's single-run estimate over
/// AI21's published figure), not assumed.
fn ai21_verdict(ranges: &[flopcal_model::calibrate::RangeCheck]) -> String {
    let (lower, higher): (Vec<_>, Vec<_>) = ranges.iter().partition(|g| g.single_run_ratio < 1.0);
    let ids = |v: &[&flopcal_model::calibrate::RangeCheck]| {
        v.iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (lower.is_empty(), higher.is_empty()) {
        (false, true) => "flopcal is lower than AI21 at every size: AI21 published neither hardware, schedule nor efficiency; its figures imply a lower utilisation (or longer training) than the seeds' own runs, from which flopcal's TPU efficiency is fitted.".into(),
        (true, false) => "flopcal is higher than AI21 at every size: AI21's figures imply a higher utilisation (or shorter training) than the seeds' own runs, from which flopcal's TPU efficiency is fitted.".into(),
        (false, false) => format!(
            "flopcal is lower than AI21 for {} and higher for {}: AI21 published neither hardware, schedule nor efficiency.",
            ids(&lower),
            ids(&higher)
        ),
        (true, true) => "no AI21 range to compare.".into(),
    }
}

/// `ln r` as a signed percentage: `-0.1` → `-9.5%`.
fn pct_ln(x: f64) -> String {
    format!("{:+.1}%", (x.exp() - 1.0) * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ai21_sentence_follows_the_ratios_it_summarises() {
        let cat = flopcal_model::catalog::Catalog::embedded();
        let mut ranges = calibrate_with(cat, &[])
            .expect("embedded calibration")
            .ranges;
        assert!(ranges.len() >= 2);
        for g in &mut ranges {
            g.single_run_ratio = 0.5;
        }
        assert!(ai21_verdict(&ranges).starts_with("flopcal is lower than AI21 at every size"));
        for g in &mut ranges {
            g.single_run_ratio = 2.0;
        }
        assert!(ai21_verdict(&ranges).starts_with("flopcal is higher than AI21 at every size"));
        ranges[0].single_run_ratio = 0.5;
        let mixed = ai21_verdict(&ranges);
        assert!(
            mixed.contains(&format!("lower than AI21 for {} and higher", ranges[0].id)),
            "{mixed}"
        );
    }
}
