//! `flopcal compare`: on-prem vs cloud for one training plan.
//!
//! The plan and the hardware are those of `flopcal estimate` (its flags, `--profile`
//! and `--hardware local` included): the run's chip-hours come from the same estimate.
//! On-prem: purchase price amortised over a lifetime, power × PUE × $/kWh, operations
//! overhead per year (catalog defaults, each overridable) at a utilisation; cloud:
//! on-demand, preemptible and committed-use prices. The computation is
//! [`crate::comparing`]; the cost model is `flopcal_model::onprem`.

use clap::Args;
use comfy_table::{Cell, CellAlignment};

use crate::commands::estimate_args::EstimateArgs;
use crate::comparing::{compute, CompareReport, CompareRequest};
use crate::render::table::{human_hours, outln, thousands};
use crate::render::{self, warn_stale, OutputFormat};
use crate::{Outcome, Result};

/// Arguments of `flopcal compare`.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Examples:\n  flopcal compare --model bert-large --hardware a100 --devices 8\n  flopcal compare --model bert-large --hardware a100 --cloud tpu-v3 --utilisation 0.3\n  flopcal compare --model bert-base --hardware local --purchase-price 3000 --chip-watts 200 --cloud a100 --format json"
)]
pub struct CompareArgs {
    /// The training plan and the on-prem hardware (as for `flopcal estimate`).
    #[command(flatten)]
    pub plan: EstimateArgs,
    /// Cloud hardware to rent (default: the same as --hardware).
    #[arg(long, value_name = "NAME")]
    pub cloud: Option<String>,
    /// On-prem purchase price, USD per chip (GPU) with its share of the server
    /// (default: the catalog's).
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub purchase_price: Option<f64>,
    /// On-prem depreciation lifetime, years (default: the catalog's, else 4).
    #[arg(long, value_name = "YEARS", allow_negative_numbers = true)]
    pub lifetime: Option<f64>,
    /// On-prem operations overhead, USD per chip per year (default: the catalog's,
    /// else 10% of the purchase price).
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub ops_per_year: Option<f64>,
    /// Fraction of the year the on-prem hardware does useful work, (0, 1] (default 0.5).
    #[arg(
        long,
        alias = "utilization",
        value_name = "FRACTION",
        allow_negative_numbers = true
    )]
    pub utilisation: Option<f64>,
    /// Committed-use cloud price, USD per chip-hour (default: the catalog's).
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub committed_price: Option<f64>,
    /// On-prem purchase price per server (a DGX/HGX with its share of networking,
    /// storage and facility), USD; divided by --chips-per-server.
    #[arg(
        long,
        value_name = "USD",
        allow_negative_numbers = true,
        conflicts_with = "purchase_price"
    )]
    pub server_price: Option<f64>,
    /// Chips (GPUs) per server for --server-price (default 8: an HGX/DGX board).
    #[arg(long, value_name = "N", default_value_t = 8, requires = "server_price")]
    pub chips_per_server: u32,
    /// One cloud row per provider with a price for the cloud hardware (its newest
    /// on-demand price, else committed, else spot), cheapest first, each with its
    /// break-even utilisation.
    #[arg(long)]
    pub cloud_all: bool,
}

impl CompareArgs {
    /// The plain request these flags make.
    pub fn request(&self) -> CompareRequest {
        CompareRequest {
            estimate: self.plan.request(),
            cloud: self.cloud.clone(),
            purchase_price: self.purchase_price,
            lifetime: self.lifetime,
            ops_per_year: self.ops_per_year,
            utilisation: self.utilisation,
            committed_price: self.committed_price,
            server_price: self.server_price,
            chips_per_server: self.chips_per_server,
            cloud_all: self.cloud_all,
        }
    }
}

fn usd(x: f64) -> String {
    format!("${}", thousands(x))
}

fn pct(x: Option<f64>) -> String {
    match x {
        Some(v) if v > 1.0 => format!("{:.0}% (unreachable)", v * 100.0),
        Some(v) => format!("{:.1}%", v * 100.0),
        None => "never".into(),
    }
}

fn table_text(r: &CompareReport) -> String {
    let c = &r.comparison;
    let mut out = String::new();
    outln!(
        out,
        "{}: on-prem {} x {} vs cloud {}; one run = {} on-prem ({} chip-hours), {} cloud chip-hours",
        r.model,
        c.onprem_chips,
        r.onprem_hardware,
        r.cloud_hardware,
        human_hours(c.onprem_wall_hours),
        thousands(c.onprem_chip_hours),
        thousands(c.cloud_chip_hours)
    );
    let mut t = render::table::new(vec![
        "option",
        "USD per chip-hour",
        "per run",
        "per year",
        "on-prem breaks even at",
    ]);
    let right = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    t.add_row(vec![
        Cell::new(format!(
            "on-prem at {:.0}% utilisation",
            r.onprem.utilisation * 100.0
        )),
        right(format!("${:.2}", c.onprem_cost_per_chip_hour)),
        right(usd(c.onprem_cost_per_run)),
        right(usd(c.onprem_cost_per_year)),
        right("".into()),
    ]);
    for o in &c.cloud {
        t.add_row(vec![
            Cell::new(format!("cloud {}", o.kind)),
            right(format!("${:.2}", o.price_per_chip_hour)),
            right(usd(o.cost_per_run)),
            right(usd(o.cost_per_year)),
            right(pct(o.break_even_utilisation)),
        ]);
    }
    outln!(out, "{t}");
    outln!(
        out,
        "per year = {:.1} runs, what the on-prem chips finish in a year at {:.0}% utilisation",
        c.runs_per_year,
        r.onprem.utilisation * 100.0
    );
    outln!(out, "verdict: {}", c.verdict);
    if r.model_constructed {
        outln!(
            out,
            "note: {} is a model flopcal constructed (no one published it); see its catalog source",
            r.model
        );
    }
    outln!(out, "on-prem figures:");
    for i in &r.inputs {
        let v = if i.value >= 100.0 {
            thousands(i.value)
        } else {
            format!("{}", (i.value * 1000.0).round() / 1000.0)
        };
        let unit = if i.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", i.unit)
        };
        outln!(out, "  - {} {v}{unit}: {}", i.name, i.source);
    }
    outln!(
        out,
        "  = ${:.2} per useful chip-hour: (purchase / lifetime + ops) / (8766 h x utilisation) + electricity ${:.3}",
        c.onprem_cost_per_chip_hour,
        c.onprem_energy_per_chip_hour
    );
    outln!(out, "cloud prices:");
    for o in &c.cloud {
        outln!(
            out,
            "  - {} ${:.2} per chip-hour: {}",
            o.kind,
            o.price_per_chip_hour,
            o.source
        );
    }
    if !r.price_ages.is_empty() {
        outln!(out, "price dates:");
        for a in &r.price_ages {
            outln!(out, "  - {}", a.note());
        }
    }
    outln!(out, "time: on-prem MFU source: {}", r.onprem_mfu_source);
    if !r.assumptions.is_empty() {
        outln!(
            out,
            "{} flopcal assumption(s), not published figures (override the first ones with flags, the catalog's with --catalog):",
            r.assumptions.len()
        );
        for a in &r.assumptions {
            outln!(out, "  - {}: {}", a.figure, a.source);
        }
    }
    out
}

/// The table's rows as CSV: on-prem first, then each cloud option (empty break-even
/// where there is none).
fn print_csv(r: &CompareReport) -> Result<()> {
    let c = &r.comparison;
    let mut w = render::csv::writer();
    let csv_err = render::csv::error;
    w.write_record([
        "option",
        "usd_per_chip_hour",
        "cost_per_run_usd",
        "cost_per_year_usd",
        "break_even_utilisation",
    ])
    .map_err(csv_err)?;
    w.write_record([
        format!("on-prem at {}", r.onprem.utilisation),
        c.onprem_cost_per_chip_hour.to_string(),
        c.onprem_cost_per_run.to_string(),
        c.onprem_cost_per_year.to_string(),
        String::new(),
    ])
    .map_err(csv_err)?;
    for o in &c.cloud {
        w.write_record([
            format!("cloud {}", o.kind),
            o.price_per_chip_hour.to_string(),
            o.cost_per_run.to_string(),
            o.cost_per_year.to_string(),
            o.break_even_utilisation
                .map(|u| u.to_string())
                .unwrap_or_default(),
        ])
        .map_err(csv_err)?;
    }
    render::csv::print(w)
}

/// Run `flopcal compare`.
pub fn run(args: &CompareArgs) -> Result<Outcome> {
    let r = compute(&args.request())?;
    warn_stale(&r.price_ages);
    match args.plan.format {
        OutputFormat::Json => render::json::print(&r)?,
        OutputFormat::Csv => print_csv(&r)?,
        OutputFormat::Table => render::stdout(&table_text(&r))?,
    }
    Ok(Outcome::Success)
}
