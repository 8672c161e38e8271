//! `flopcal estimate`: training FLOPs → hours → dollars (on demand, preemptible, fully
//! loaded), energy and CO2, with a low–high band from the calibrated MFU spread. The
//! flags are [`EstimateArgs`]; the computation is [`crate::estimating`].

use comfy_table::{Cell, CellAlignment};
use flopcal_model::cost::Estimate;

use crate::commands::estimate_args::EstimateArgs;
use crate::efficiency::KernelEfficiency;
use crate::estimating::{compute_full, Computed};
use crate::render::table::{layout_text, num, outln, pct, sci, thousands, usd};
use crate::render::{self, warn_stale, OutputFormat};
use crate::{Error, Outcome, Result};

/// Run `flopcal estimate`.
pub fn run(args: &EstimateArgs) -> Result<Outcome> {
    let c = compute_full(&args.request())?;
    warn_stale(&c.price_ages);
    match args.format {
        OutputFormat::Json => render::json::print(&c)?,
        OutputFormat::Csv => print_csv(&c.estimate)?,
        OutputFormat::Table => {
            let mut out = render_table(&c.estimate);
            out.push_str(&step_lines(&c));
            out.push_str(&assumption_lines(&c));
            if let Some(k) = &c.kernel_efficiency {
                out.push_str(&kernel_table(k, 8));
            }
            render::stdout(&out)?;
        }
    }
    Ok(Outcome::Success)
}

/// The kernels behind a measured kernel efficiency, most time first (`top` rows, the
/// rest summed), and a line naming the ones that dominate.
pub fn kernel_table(k: &KernelEfficiency, top: usize) -> String {
    let mut out = String::new();
    outln!(
        out,
        "kernel efficiency {:.1}% ({} kernels of {} on {}, {}): suite {} GFLOP/s of {} GFLOP/s peak",
        k.kernel_efficiency * 100.0,
        k.dtype,
        k.profile_model,
        k.device_name,
        k.profile_run_id,
        flopcal_bench::report_table::fmt_giga(k.achieved_flops_per_s),
        flopcal_bench::report_table::fmt_giga(k.peak_flops_per_s)
    );
    let mut t = render::table::new(vec![
        "kernel",
        "share of FLOPs",
        "share of time",
        "GFLOP/s",
        "% of peak",
    ]);
    let r = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    for s in k.kernels.iter().take(top) {
        t.add_row(vec![
            Cell::new(&s.label),
            r(format!("{:.1}%", s.flop_share * 100.0)),
            r(format!("{:.1}%", s.time_share * 100.0)),
            r(flopcal_bench::report_table::fmt_giga(s.flops_per_s)),
            r(format!("{:.0}%", s.efficiency * 100.0)),
        ]);
    }
    let rest = &k.kernels[top.min(k.kernels.len())..];
    if !rest.is_empty() {
        let f: f64 = rest.iter().map(|s| s.flop_share).sum();
        let tm: f64 = rest.iter().map(|s| s.time_share).sum();
        t.add_row(vec![
            Cell::new(format!("{} others", rest.len())),
            r(format!("{:.1}%", f * 100.0)),
            r(format!("{:.1}%", tm * 100.0)),
            r("".into()),
            r("".into()),
        ]);
    }
    outln!(out, "{t}");
    outln!(out, "dominant: {}", k.dominant(3));
    out
}

fn render_table(e: &Estimate) -> String {
    let mut out = String::new();
    let mut t = render::table::new(vec!["quantity", "estimate", "low", "high"]);
    let mut row = |name: &str, mid: String, low: String, high: String| {
        t.add_row(vec![
            Cell::new(name),
            Cell::new(mid).set_alignment(CellAlignment::Right),
            Cell::new(low).set_alignment(CellAlignment::Right),
            Cell::new(high).set_alignment(CellAlignment::Right),
        ]);
    };
    let same = |s: String| (s.clone(), s.clone(), s);
    let (a, b, c) = same(sci(e.train_flops));
    row("train FLOPs (per-op)", a, b, c);
    let (a, b, c) = same(sci(e.flops_6nd));
    row("6·N·D", a, b, c);
    let (a, b, c) = same(
        e.ratio_exact_to_6nd
            .map(|r| format!("{r:.3}"))
            .unwrap_or_else(|| "—".into()),
    );
    row("per-op / 6ND", a, b, c);
    row("MFU", pct(e.mfu), pct(e.mfu_low), pct(e.mfu_high));
    row(
        "device-hours (chip)",
        num(Some(e.device_hours)),
        num(Some(e.device_hours_low)),
        num(Some(e.device_hours_high)),
    );
    row(
        "wall-clock hours",
        num(Some(e.wall_hours)),
        num(Some(e.wall_hours_low)),
        num(Some(e.wall_hours_high)),
    );
    row(
        "cost, on demand",
        usd(e.cost_usd),
        usd(e.cost_usd_low),
        usd(e.cost_usd_high),
    );
    row(
        "cost, preemptible",
        usd(e.cost_usd_preemptible),
        usd(e.cost_usd_preemptible_low),
        usd(e.cost_usd_preemptible_high),
    );
    row(
        &format!("fully loaded ({}x)", e.fully_loaded_multiplier),
        usd(e.fully_loaded_cost_usd),
        usd(e.fully_loaded_cost_usd_low),
        usd(e.fully_loaded_cost_usd_high),
    );
    row(
        "energy, kWh",
        num(e.energy_kwh),
        num(e.energy_kwh_low),
        num(e.energy_kwh_high),
    );
    row(
        "CO2e, kg",
        num(e.co2_kg),
        num(e.co2_kg_low),
        num(e.co2_kg_high),
    );
    row(
        "CO2e, lb",
        num(e.co2_lb),
        num(e.co2_lb_low),
        num(e.co2_lb_high),
    );
    outln!(
        out,
        "{} on {} x {} {} ({}), {} tokens",
        e.model,
        e.devices,
        e.hardware,
        e.device_unit,
        e.dtype,
        e.tokens
            .map(|t| format!("{t:.3e}"))
            .unwrap_or_else(|| "—".into())
    );
    outln!(out, "{t}");
    if let Some(r) = &e.flops {
        let o = &r.by_op;
        let total = o.total();
        if total > 0.0 {
            let share = |x: f64| format!("{:.1}%", 100.0 * x / total);
            outln!(out,
                "per-op training FLOPs: QKV {}, attention out {}, FFN {}, scores {}, P·V {}, vocab {}{}",
                share(o.qkv),
                share(o.attn_out),
                share(o.ffn),
                share(o.scores),
                share(o.pv),
                share(o.vocab),
                if r.causal_halved { " (scores and P·V halved: causal mask)" } else { "" }
            );
        }
    }
    if let Some(p) = e.cost_usd_per_hour {
        outln!(out, "on-demand cost per wall-clock hour: ${}", thousands(p));
    }
    if let Some(c) = e.energy_cost_usd {
        outln!(out, "electricity: ${}", thousands(c));
    }
    outln!(out, "MFU source: {}", e.mfu_source);
    outln!(out, "assumptions:");
    for a in &e.assumptions {
        outln!(out, "  - {a}");
    }
    out
}

fn assumption_lines(c: &Computed) -> String {
    let mut out = String::new();
    if c.model_constructed {
        outln!(
            out,
            "model {} is constructed: no one published it (see its catalog source)",
            c.estimate.model
        );
    }
    if let Some(p) = &c.price_source {
        outln!(out, "prices from: {p}");
    }
    outln!(
        out,
        "{} flopcal assumption(s) relied on, not published figures (override with flags, or the catalog's with --catalog):",
        c.flopcal_assumption_count
    );
    for a in &c.flopcal_assumptions {
        outln!(out, "  - {}: {}", a.figure, a.source);
    }
    out
}

fn step_lines(c: &Computed) -> String {
    let mut out = String::new();
    if let (Some(l), Some(t), Some(b), Some(m)) = (
        &c.layout,
        c.step_time_s,
        &c.step_breakdown_s,
        &c.memory_per_device_bytes,
    ) {
        let gib = |x: f64| x / (1024.0 * 1024.0 * 1024.0);
        outln!(out, "layout: {}", layout_text(l));
        outln!(
            out,
            "step {t:.3} s: compute {:.3}, tp {:.3}{}, pp {:.3}, dp {:.3}, bubble {:.3}, optimizer {:.3}; bottleneck: {}; HFU {}, {} tokens/s",
            b.compute,
            b.tp_comm,
            if l.cp > 1 {
                format!(", cp {:.3}", b.cp_comm)
            } else {
                String::new()
            },
            b.pp_comm,
            b.dp_comm,
            b.bubble,
            b.optimizer,
            c.bottleneck.as_deref().unwrap_or("-"),
            pct(c.hfu),
            num(c.tokens_per_s)
        );
        outln!(
            out,
            "memory per device: {:.1} GiB (weights {:.1}, gradients {:.1}, optimizer {:.1}, activations {:.1})",
            gib(m.total),
            gib(m.weights),
            gib(m.gradients),
            gib(m.optimizer),
            gib(m.activations)
        );
    }
    out
}

fn print_csv(e: &Estimate) -> Result<()> {
    let mut w = render::csv::writer();
    let f = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    let rows: Vec<(&str, String)> = vec![
        ("model", e.model.clone()),
        ("hardware", e.hardware.clone()),
        ("dtype", e.dtype.clone()),
        ("devices", e.devices.to_string()),
        ("tokens", f(e.tokens)),
        ("train_flops", f(e.train_flops)),
        ("flops_6nd", f(e.flops_6nd)),
        ("mfu", f(e.mfu)),
        ("mfu_low", f(e.mfu_low)),
        ("mfu_high", f(e.mfu_high)),
        ("device_hours", e.device_hours.to_string()),
        ("device_hours_low", e.device_hours_low.to_string()),
        ("device_hours_high", e.device_hours_high.to_string()),
        ("wall_hours", e.wall_hours.to_string()),
        ("cost_usd", f(e.cost_usd)),
        ("cost_usd_low", f(e.cost_usd_low)),
        ("cost_usd_high", f(e.cost_usd_high)),
        ("cost_usd_preemptible", f(e.cost_usd_preemptible)),
        ("fully_loaded_cost_usd", f(e.fully_loaded_cost_usd)),
        ("fully_loaded_cost_usd_low", f(e.fully_loaded_cost_usd_low)),
        (
            "fully_loaded_cost_usd_high",
            f(e.fully_loaded_cost_usd_high),
        ),
        ("energy_kwh", f(e.energy_kwh)),
        ("co2_kg", f(e.co2_kg)),
        ("co2_lb", f(e.co2_lb)),
        ("chip_hours", e.chip_hours.to_string()),
        ("chip_hours_low", e.chip_hours_low.to_string()),
        ("chip_hours_high", e.chip_hours_high.to_string()),
    ];
    let csv_err = |err: csv::Error| Error::Usage(format!("cannot write CSV: {err}"));
    w.write_record(rows.iter().map(|r| r.0)).map_err(csv_err)?;
    w.write_record(rows.iter().map(|r| r.1.as_str()))
        .map_err(csv_err)?;
    render::csv::print(w)
}
