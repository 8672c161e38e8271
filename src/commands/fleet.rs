//! Fleet mode of `flopcal profile` (every rank of an MPI launch profiles its own
//! device; rank 0 gathers one file) and the printing of fleet files by `profile`,
//! `regress` and `report`. Not a subcommand: `profile` under `mpirun` lands here.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::render::{self, OutputFormat};
#[cfg(feature = "mpi")]
use crate::Outcome;
use crate::Result;
use flopcal_bench::fleet::{self, FleetFile, FleetSummary};
use flopcal_bench::report_table::fmt_giga;

/// The spread table: one row per kernel, one column per rank.
pub fn spread_table(s: &FleetSummary) -> String {
    let ranks: Vec<u32> = {
        let mut r: Vec<u32> = s
            .kernels
            .iter()
            .flat_map(|k| k.ranks.iter().map(|r| r.rank))
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    };
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec![
        "kernel".to_string(),
        "judged".into(),
        "fleet median GFLOP/s".into(),
        "spread".into(),
    ];
    header.extend(ranks.iter().map(|r| format!("rank {r}")));
    t.set_header(header);
    for k in &s.kernels {
        let mut row = vec![
            Cell::new(&k.id),
            Cell::new(if k.compute_bound {
                "compute-bound"
            } else {
                "-"
            }),
            Cell::new(fmt_giga(k.fleet_median_flops_per_s)).set_alignment(CellAlignment::Right),
            Cell::new(format!("{:.1}%", k.spread * 100.0)).set_alignment(CellAlignment::Right),
        ];
        for r in &ranks {
            let text = k
                .ranks
                .iter()
                .find(|x| x.rank == *r)
                .map(|x| {
                    format!(
                        "{} ({:+.1}%){}",
                        fmt_giga(x.median_flops_per_s),
                        -x.deficit * 100.0,
                        if x.straggler { " STRAGGLER" } else { "" }
                    )
                })
                .unwrap_or_else(|| "—".into());
            row.push(Cell::new(text).set_alignment(CellAlignment::Right));
        }
        t.add_row(row);
    }
    let verdict = if s.stragglers.is_empty() {
        format!(
            "no straggler: no rank's median is more than {:.1}% below the fleet median on a compute-bound kernel (with its 95% CI below too)",
            s.straggler_threshold * 100.0
        )
    } else {
        let mut lines = fleet::verdict_lines(s);
        lines.insert(
            0,
            format!(
                "stragglers: rank(s) {}",
                s.stragglers
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        lines.join("\n")
    };
    format!("{t}\n{verdict}")
}

/// Print a fleet file (table: the spread and the verdict; CSV: the spread, a row per
/// kernel and rank).
pub fn print_file(file: &FleetFile, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Json => render::json::print(file),
        OutputFormat::Csv => render::stdout(&fleet::spread_csv(&file.summary, &file.ranks)?),
        OutputFormat::Table => {
            let mut hosts: Vec<&str> = file.ranks.iter().map(|r| r.host.as_str()).collect();
            hosts.sort_unstable();
            hosts.dedup();
            render::stdout(&format!(
                "fleet of {} ranks on {} host(s){}\n{}\n",
                file.ranks.len(),
                hosts.len(),
                if file.header.partial {
                    " — PARTIAL"
                } else {
                    ""
                },
                spread_table(&file.summary)
            ))
        }
    }
}

/// Fleet mode: profile on every rank, gather on rank 0, which prints the fleet file;
/// every rank then ends the process together (this never returns).
#[cfg(feature = "mpi")]
pub fn run_profile(
    args: &flopcal_bench::profile_run::ProfileSpec,
    format: OutputFormat,
) -> Result<Outcome> {
    let flopcal_bench::fleet_run::FleetEnd {
        file,
        error,
        finish,
    } = flopcal_bench::fleet_run::execute(args)?;
    let outcome = file
        .as_ref()
        .map_or(Ok(()), |f| print_file(f, format))
        .and_then(|()| match error {
            Some(e) => Err(crate::Error::from(e)),
            None => Ok(Outcome::Success),
        });
    // Rank 0 prints first; then every rank exits (a rank that exits first makes the
    // launcher end the others before rank 0 has written and said anything).
    if let Err(e) = &outcome {
        if finish.is_root() {
            eprintln!("error: {e}");
        }
    }
    let code = match &outcome {
        Ok(o) => o.exit_code(),
        Err(e) => e.exit_code(),
    };
    finish.exit(code)
}

/// Report sections for the comm and fleet files among `paths`.
pub struct Sections {
    /// Their HTML, in the order given.
    pub html: String,
    /// Plots drawn.
    pub plots: usize,
}

/// Split `paths` into comm/fleet files (rendered here) and profile files (returned).
pub fn report_sections(
    paths: &[std::path::PathBuf],
    straggler: f64,
) -> Result<(Sections, Vec<std::path::PathBuf>)> {
    fleet::check_threshold(straggler)?;
    let mut out = Sections {
        html: String::new(),
        plots: 0,
    };
    let mut profiles = Vec::new();
    for p in paths {
        match flopcal_bench::comm::file_kind(p)?.as_deref() {
            Some(flopcal_bench::comm::COMM_KIND) => {
                out.html +=
                    &flopcal_bench::comm::report::section(p, &flopcal_bench::comm::load(p)?)?;
                out.plots += 1;
            }
            Some(fleet::FLEET_KIND) => {
                let mut f = fleet::load(p)?;
                f.summary = fleet::summarize(&f.ranks, straggler);
                out.html += &fleet::html_section(p, &f);
            }
            _ => profiles.push(p.clone()),
        }
    }
    Ok((out, profiles))
}
