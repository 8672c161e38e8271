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

/// Fleet mode: profile on every rank, gather on rank 0.
#[cfg(feature = "mpi")]
pub fn run_profile(
    args: &flopcal_bench::profile_run::ProfileSpec,
    format: OutputFormat,
) -> Result<Outcome> {
    use flopcal_bench::comm::session::{build_identity, Session, Watchdog, WATCHDOG_GRACE};
    flopcal_bench::profile_run::check_timeout(args.timeout)?;
    let timeout = std::time::Duration::from_secs_f64(args.timeout);
    let session = Session::init("profile")?;
    let mut local = args.clone();
    local.out = None;
    let identity = format!("{} suite {:?}", build_identity(), local);
    let writable = match &args.out {
        Some(out) if session.is_root() => flopcal_bench::results::check_writable(out),
        _ => Ok(()),
    };
    let checked = session.check_same(&identity);
    // Rank 0 checkpoints its own profile as a one-rank fleet file while it runs: a
    // rank that dies makes the launcher end the others within a second or so, which
    // may not reach a sample boundary, so what was measured must already be on disk.
    let (rank, host) = (session.rank, session.host());
    let own_rank = |file: &flopcal_bench::results::ResultFile| fleet::FleetRank {
        rank,
        host: host.clone(),
        fingerprint: file.host.clone(),
        run_id: file.header.run_id.clone(),
        partial: file.header.partial,
        peak: file.peak.clone(),
        benchmarks: file.benchmarks.clone(),
    };
    let only_rank_0 = format!(
        "only rank 0's profile: the other {} rank(s) never delivered theirs (a rank died, or the gather was interrupted)",
        session.size.saturating_sub(1)
    );
    let kept_at = args
        .out
        .as_ref()
        .filter(|_| session.is_root() && session.size > 1);
    let keep = |file: &flopcal_bench::results::ResultFile, out: &std::path::Path| {
        fleet::save(
            &fleet_file(
                &file.profile,
                vec![own_rank(file)],
                Some(only_rank_0.clone()),
            ),
            out,
        )
    };
    let measured = writable
        .and(checked)
        .and_then(|_| match kept_at {
            Some(out) => {
                flopcal_bench::profile_run::execute_with(&local, Some(&mut |snap| keep(snap, out)))
            }
            None => flopcal_bench::profile_run::execute_with(&local, None),
        })
        .map_err(crate::Error::from);
    // Every rank reaches the gather, failed or not, so none waits forever.
    let own = measured.as_ref().ok().map(|run| own_rank(&run.file));
    let mine = own
        .as_ref()
        .map(|r| serde_json::to_vec(r).unwrap_or_default())
        .unwrap_or_default();
    // Rank 0 keeps its own profile, marked partial, before anything depends on the
    // other ranks: a rank that dies makes the launcher end the whole job, and this is
    // the file that survives it. The barrier makes sure it is written first.
    let kept = match (kept_at, &measured) {
        (Some(out), Ok(run)) => keep(&run.file, out).map_err(crate::Error::from),
        _ => Ok(()),
    };
    // The other ranks wait for rank 0's go-ahead, given once that file is written;
    // their watchdog ends them if rank 0 goes silent.
    let watchdog = (!session.is_root()).then(|| {
        Watchdog::start(
            session.rank,
            timeout + WATCHDOG_GRACE,
            "the fleet gather (waiting for rank 0)".into(),
        )
    });
    session.release_from_root();
    if let Some(w) = &watchdog {
        w.touch();
    }
    test_hooks(&session);
    // Rank 0 takes each rank's profile as it comes and names the ranks still silent
    // after --timeout without a new one.
    let gathered = session.check_in(&mine, timeout);
    let outcome = if session.is_root() {
        kept.and_then(|_| {
            gather_on_root(args, format, measured, &gathered.payloads, &gathered.silent)
        })
    } else {
        measured.map(|_| Outcome::Success)
    };
    // Rank 0 prints first; then every rank exits (a rank that exits first makes the
    // launcher end the others before rank 0 has written and said anything).
    if let Err(e) = &outcome {
        if session.is_root() {
            eprintln!("error: {e}");
        }
    }
    if !gathered.silent.is_empty() {
        // A silent rank never reaches the barrier: exit 2 without finalising, which
        // makes the launcher end every rank.
        std::process::exit(2);
    }
    session.barrier();
    let code = match &outcome {
        Ok(o) => o.exit_code(),
        Err(e) => e.exit_code(),
    };
    drop(session);
    std::process::exit(code);
}

/// Test hook: with this environment variable set, the last rank of a fleet run
/// aborts after rank 0 has kept its own profile and before the gather.
#[cfg(feature = "mpi")]
const DIE_BEFORE_GATHER: &str = "FLOPCAL_TEST_DIE_BEFORE_GATHER";
/// Test hook: with this environment variable set, the last rank of a fleet run
/// sleeps forever at that same point.
#[cfg(feature = "mpi")]
const HANG_BEFORE_GATHER: &str = "FLOPCAL_TEST_HANG_BEFORE_GATHER";

/// The test hooks: the last rank (of two or more) dies or hangs before the gather.
#[cfg(feature = "mpi")]
fn test_hooks(session: &flopcal_bench::comm::session::Session) {
    if session.size < 2 || session.rank + 1 != session.size {
        return;
    }
    if std::env::var_os(DIE_BEFORE_GATHER).is_some() {
        eprintln!(
            "rank {}: dying on purpose before the gather (test hook {DIE_BEFORE_GATHER})",
            session.rank
        );
        std::process::abort();
    }
    if std::env::var_os(HANG_BEFORE_GATHER).is_some() {
        eprintln!(
            "rank {}: hanging on purpose before the gather (test hook {HANG_BEFORE_GATHER})",
            session.rank
        );
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// A fleet file of `ranks`, partial when `partial_reason` says why.
#[cfg(feature = "mpi")]
fn fleet_file(
    profile: &flopcal_bench::results::ProfileConfig,
    ranks: Vec<fleet::FleetRank>,
    partial_reason: Option<String>,
) -> FleetFile {
    FleetFile {
        header: flopcal_bench::results::FileHeader {
            partial: partial_reason.is_some(),
            partial_reason,
            ..flopcal_bench::results::FileHeader::new(Some(fleet::FLEET_KIND), &chrono::Utc::now())
        },
        profile: profile.clone(),
        summary: fleet::summarize(&ranks, fleet::DEFAULT_STRAGGLER),
        ranks,
    }
}

/// Rank 0's part of a fleet run: build, save and print the gathered file (`all`
/// indexed by rank; `silent`, the ranks that sent nothing before the timeout).
#[cfg(feature = "mpi")]
fn gather_on_root(
    args: &flopcal_bench::profile_run::ProfileSpec,
    format: OutputFormat,
    measured: Result<flopcal_bench::profile_run::ProfileRun>,
    all: &[Vec<u8>],
    silent: &[u32],
) -> Result<Outcome> {
    use flopcal_bench::comm::session::rank_list;
    let run = measured?;
    let failed: Vec<u32> = (0..all.len() as u32)
        .filter(|r| all[*r as usize].is_empty() && !silent.contains(r))
        .collect();
    let mut ranks = Vec::with_capacity(all.len());
    for b in all.iter().filter(|b| !b.is_empty()) {
        ranks.push(
            serde_json::from_slice::<fleet::FleetRank>(b).map_err(|e| {
                crate::Error::Usage(format!("a rank sent an unreadable profile: {e}"))
            })?,
        );
    }
    let hung = (!silent.is_empty()).then(|| {
        format!(
            "rank(s) {} sent no profile within {:.0} s at the gather (hung, or far slower than rank 0)",
            rank_list(silent),
            args.timeout
        )
    });
    let reason = hung
        .clone()
        .into_iter()
        .chain(
            (!failed.is_empty())
                .then(|| format!("rank(s) {} failed to profile", rank_list(&failed))),
        )
        .reduce(|a, b| format!("{a}; {b}"))
        .or_else(|| {
            ranks
                .iter()
                .any(|r| r.partial)
                .then(|| "a rank's profile was interrupted".to_string())
        });
    let file = fleet_file(&run.file.profile, ranks, reason);
    if let Some(out) = &args.out {
        fleet::save(&file, out)?;
        eprintln!("saved {}", out.display());
    }
    print_file(&file, format)?;
    if let Some(hung) = hung {
        return Err(crate::Error::Usage(format!(
            "{hung}; the fleet file holds the {} rank(s) that did, marked partial",
            file.ranks.len()
        )));
    }
    if !failed.is_empty() {
        return Err(crate::Error::Usage(format!(
            "rank(s) {} failed to profile (see their messages); the fleet file holds the others, marked partial",
            rank_list(&failed)
        )));
    }
    Ok(Outcome::Success)
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
