//! `flopcal plan`: search every layout of a model on N devices and print the best ones
//! ranked (step time, MFU, memory, training days, cost) and the ones refused, and why.

use clap::Args;
use comfy_table::{Cell, CellAlignment};
use serde::Serialize;

use crate::commands::estimate_args::EstimateArgs;
use crate::estimating::{plan_inputs, price_age_notes};
use crate::model_spec::run_date;
use crate::render::table::layout_text;
use crate::render::table::{human_hours, outln, usd};
use crate::render::{self, warn_stale, OutputFormat};
use crate::{Outcome, Result};
use flopcal_model::run::{self, PlanRow};

/// Arguments of `flopcal plan`: those of `estimate` (model, hardware, devices, batch,
/// seq, tokens, fixed layout dimensions, prices) and how many plans to show.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// What to train and where, as for `estimate`.
    #[command(flatten)]
    pub run: EstimateArgs,
    /// Plans to show, best first.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

#[derive(Serialize)]
struct PlanJson<'a> {
    model: &'a str,
    hardware: &'a str,
    devices: u64,
    plans: &'a [PlanRow],
    evaluated: u64,
    feasible: u64,
    dominated: u64,
    rejected: &'a [flopcal_model::search::Rejected],
    gemm_efficiency_basis: &'a str,
    assumptions: &'a [String],
    /// True when no token budget was given (`--batch` alone): hours and cost are null.
    per_step: bool,
}

/// A row's layout and, below it, the layouts with the same prediction, each by how it
/// differs (`= recompute selective`).
fn with_equivalents(
    l: &flopcal_model::layout::Layout,
    eq: &[flopcal_model::layout::Layout],
) -> String {
    let mut s = layout_text(l);
    for e in eq {
        s.push_str(&format!("\n  = {}", l.differences(e).join(", ")));
    }
    s
}

/// One CSV row per ranked layout (the table's columns, in plain units; empty hours
/// and cost for a per-step plan).
fn print_csv(rows: &[PlanRow]) -> Result<()> {
    let mut w = render::csv::writer();
    let f = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let csv_err = render::csv::error;
    w.write_record([
        "rank",
        "layout",
        "tp",
        "pp",
        "dp",
        "microbatch",
        "virtual_stages",
        "step_time_s",
        "mfu",
        "hfu",
        "tokens_per_s",
        "memory_per_device_bytes",
        "bottleneck",
        "wall_hours",
        "device_hours",
        "training_days",
        "cost_usd",
        "equivalent_layouts",
        "chip_hours",
    ])
    .map_err(csv_err)?;
    for (i, p) in rows.iter().enumerate() {
        let l = &p.layout;
        w.write_record([
            (i + 1).to_string(),
            layout_text(l),
            l.tp.to_string(),
            l.pp.to_string(),
            l.dp.to_string(),
            l.microbatch.to_string(),
            l.virtual_stages.to_string(),
            p.step_time_s.to_string(),
            p.mfu.to_string(),
            p.hfu.to_string(),
            p.tokens_per_s.to_string(),
            p.memory_per_device_bytes.total.to_string(),
            p.bottleneck.clone(),
            f(p.wall_hours),
            f(p.device_hours),
            f(p.training_days),
            f(p.cost_usd),
            p.equivalent_layouts
                .iter()
                .map(layout_text)
                .collect::<Vec<_>>()
                .join("; "),
            f(p.chip_hours),
        ])
        .map_err(csv_err)?;
    }
    render::csv::print(w)
}

/// Run `flopcal plan`.
pub fn run(args: &PlanArgs) -> Result<Outcome> {
    let inputs = plan_inputs(&args.run.request())?;
    let mut r = run::plan(&inputs, args.top.max(1))?;
    // The on-demand price the plans are costed at, with its date.
    let ages = flopcal_model::prices::price_ages(
        &inputs.hw,
        &run_date()?,
        inputs.price.is_some(),
        true,
        false,
    );
    warn_stale(&ages);
    r.notes.extend(price_age_notes(&ages));
    match args.run.format {
        OutputFormat::Json => render::json::print(&PlanJson {
            model: &r.model,
            hardware: &r.hardware,
            devices: r.devices,
            plans: &r.rows,
            evaluated: r.search.evaluated,
            feasible: r.search.feasible,
            dominated: r.search.dominated,
            rejected: &r.search.rejected,
            gemm_efficiency_basis: &r.basis,
            assumptions: &r.notes,
            per_step: inputs.per_step,
        })?,
        OutputFormat::Csv => print_csv(&r.rows)?,
        OutputFormat::Table => {
            let mut out = String::new();
            outln!(
                out,
                "{} on {} x {}: {} layouts considered, {} feasible",
                r.model,
                r.devices,
                r.hardware,
                r.search.evaluated,
                r.search.feasible
            );
            let mut t = render::table::new(vec![
                "#",
                "layout",
                "step",
                "MFU",
                "memory/device",
                "bottleneck",
                "training",
                "on demand",
            ]);
            let rc = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
            for (i, p) in r.rows.iter().enumerate() {
                t.add_row(vec![
                    rc(format!("{}", i + 1)),
                    Cell::new(with_equivalents(&p.layout, &p.equivalent_layouts)),
                    rc(format!("{:.3} s", p.step_time_s)),
                    rc(format!("{:.1}%", p.mfu * 100.0)),
                    rc(format!(
                        "{:.1} GiB",
                        p.memory_per_device_bytes.total / (1024.0 * 1024.0 * 1024.0)
                    )),
                    Cell::new(&p.bottleneck),
                    rc(p.wall_hours.map_or_else(|| "—".into(), human_hours)),
                    rc(usd(p.cost_usd)),
                ]);
            }
            outln!(out, "{t}");
            if r.search.dominated > 0 {
                outln!(
                    out,
                    "not listed: {} feasible layouts as fast as a listed one but needing more memory",
                    r.search.dominated
                );
            }
            if !r.search.rejected.is_empty() {
                outln!(out, "rejected:");
                for x in &r.search.rejected {
                    outln!(out, "  {} x {}: e.g. {}", x.count, x.reason, x.example);
                }
            }
            if inputs.per_step {
                outln!(
                    out,
                    "per-step plan: --batch without --tokens or --steps, so training time and cost are left out (add --tokens D for them)"
                );
            }
            outln!(out, "GEMM efficiency: {}", r.basis);
            for n in &r.notes {
                outln!(out, "  - {n}");
            }
            render::stdout(&out)?;
        }
    }
    Ok(Outcome::Success)
}
