//! `flopcal peak`: measure this machine's compute (FMA) and memory-bandwidth ceilings.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use comfy_table::{Cell, CellAlignment};
use flopcal_kernels::ceilings::IsaLimit;
use serde::Serialize;

use crate::render::table::outln;
use crate::render::{self, OutputFormat};
use flopcal_bench::ceilings::{self, PeakOptions, PeakSection};

/// Arguments of `flopcal peak`.
#[derive(Debug, Args)]
pub struct PeakArgs {
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Target seconds per measurement (each ISA × dtype and each bandwidth kernel).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    pub duration: f64,
    /// Fast, rougher run: 0.2 s per measurement and a smaller DRAM working set.
    #[arg(long)]
    pub quick: bool,
    /// Worker threads, each pinned to its own physical core [default: physical cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Widest instruction set to use: scalar, avx2 (= simd, neon), avx512 or native.
    /// Lower it to force (and test) the fallback path.
    #[arg(long, value_name = "ISA", default_value = "native", value_parser = parse_limit)]
    pub max_isa: IsaLimit,
    /// Total DRAM working set in MiB [default: max(256, 8 × last-level cache)].
    #[arg(long, value_name = "MIB")]
    pub dram_mib: Option<u64>,
    /// Skip the cross-check against the independent C FMA microbenchmark.
    #[arg(long)]
    pub no_reference: bool,
    /// Measure only the widest available ISA per dtype (the ceilings a roofline needs).
    #[arg(long)]
    pub widest_only: bool,
    /// Also write the result (JSON, with the `peak` section) to FILE, atomically.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn parse_limit(s: &str) -> Result<IsaLimit, String> {
    s.parse()
}

/// What `flopcal peak` prints in JSON mode and writes with `--out`.
#[derive(Debug, Serialize)]
pub struct PeakReport<'a> {
    /// Version of this document's layout.
    pub schema_version: u32,
    /// `flopcal`.
    pub tool: &'static str,
    /// flopcal's version.
    pub version: &'static str,
    /// When the measurement finished (RFC 3339, UTC).
    pub created_at: String,
    /// The measured ceilings.
    pub peak: &'a PeakSection,
}

/// Run `flopcal peak`.
pub fn run(args: &PeakArgs) -> crate::Result<crate::Outcome> {
    if let Some(0) = args.threads {
        return Err(crate::Error::Usage("--threads must be at least 1".into()));
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 600.0) {
        return Err(crate::Error::Usage(format!(
            "--duration must be between 0 and 600 seconds, got {}",
            args.duration
        )));
    }
    if args.dram_mib == Some(0) {
        return Err(crate::Error::Usage("--dram-mib must be at least 1".into()));
    }
    let opts = PeakOptions {
        duration_s: if args.quick { 0.2 } else { args.duration },
        threads: args
            .threads
            .unwrap_or_else(flopcal_bench::device::physical_cores),
        limit: args.max_isa,
        reference: !args.no_reference,
        dram_bytes: args
            .dram_mib
            .map(|m| m << 20)
            .or(args.quick.then_some(128 << 20)),
        widest_only: args.widest_only,
    };
    let show_progress = std::io::stderr().is_terminal();
    let section = ceilings::measure(&opts, |line| {
        if show_progress {
            eprintln!("{line}");
        }
    })?;
    let report = PeakReport {
        schema_version: 1,
        tool: "flopcal",
        version: env!("CARGO_PKG_VERSION"),
        created_at: chrono::Utc::now().to_rfc3339(),
        peak: &section,
    };
    if let Some(path) = &args.out {
        write_atomic(path, &report)?;
    }
    match args.format {
        OutputFormat::Json => render::json::print(&report)?,
        OutputFormat::Csv => print_csv(&section)?,
        OutputFormat::Table => print_table(&section)?,
    }
    for r in section.reference.iter().chain(&section.tile_reference) {
        if !r.within_tolerance {
            eprintln!(
                "warning: flopcal/C-reference ratio {:.3} for {} {} is outside ±{:.0}% (a busy machine?)",
                r.ratio,
                r.isa,
                r.dtype,
                ceilings::REFERENCE_TOLERANCE * 100.0
            );
        }
    }
    Ok(crate::Outcome::Success)
}

/// Write JSON to `path` through the one atomic writer of result files (temp file,
/// fsync, rename, directory fsync; the usual 0644 mode).
fn write_atomic<T: Serialize>(path: &Path, value: &T) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::Error::Usage(format!("cannot serialise result: {e}")))?;
    Ok(flopcal_bench::results::write_atomic(
        path,
        format!("{text}\n").as_bytes(),
    )?)
}

fn giga(x: f64) -> String {
    format!("{:.1}", x / 1e9)
}

fn print_table(s: &PeakSection) -> crate::Result<()> {
    let mut out = String::new();
    outln!(
        out,
        "{} ({}), {} threads on {} physical cores, max ISA {}",
        s.cpu_model,
        s.arch,
        s.threads,
        s.physical_cores,
        s.max_isa
    );
    outln!(out, "features: {}", s.cpu_features.join(" "));

    // Floating-point ceilings in GFLOP/s; int8 ones in integer ops (TOPS), apart.
    let (ints, floats): (Vec<_>, Vec<_>) = s.compute.iter().partition(|c| c.dtype == "int8");
    for (rows, unit, scale) in [(floats, "GFLOP/s", 1e9), (ints, "TOPS", 1e12)] {
        if rows.is_empty() {
            continue;
        }
        let per_cycle = if unit == "TOPS" {
            "ops/cycle/core*"
        } else {
            "FLOP/cycle/core*"
        };
        let mut t = render::table::new(vec![
            "ISA".to_string(),
            "dtype".into(),
            "threads".into(),
            format!("{unit} per core"),
            format!("{unit} total"),
            "median total".into(),
            per_cycle.into(),
            "verified".into(),
        ]);
        let fmt = |x: f64| {
            if unit == "TOPS" {
                format!("{:.3}", x / scale)
            } else {
                format!("{:.1}", x / scale)
            }
        };
        for c in rows {
            t.add_row(vec![
                Cell::new(&c.isa),
                Cell::new(&c.dtype),
                Cell::new(c.threads).set_alignment(CellAlignment::Right),
                Cell::new(fmt(c.per_core_flops_per_s)).set_alignment(CellAlignment::Right),
                Cell::new(fmt(c.total_flops_per_s)).set_alignment(CellAlignment::Right),
                Cell::new(fmt(c.median_total_flops_per_s)).set_alignment(CellAlignment::Right),
                Cell::new(
                    c.flops_per_cycle_at_reported_clock
                        .map_or("-".into(), |f| format!("{f:.1}")),
                )
                .set_alignment(CellAlignment::Right),
                Cell::new(if c.verified { "yes" } else { "NO" }),
            ]);
        }
        outln!(out, "{t}");
    }
    if let Some(mhz) = s.reported_clock_mhz {
        outln!(
            out,
            "* at the {mhz} MHz the OS reports (nominal; turbo raises the real clock)"
        );
    }
    for k in &s.skipped {
        outln!(out, "skipped {} {}: {}", k.isa, k.dtype, k.reason);
    }

    let mut b = render::table::new(vec![
        "kernel",
        "level",
        "working set",
        "threads",
        "code",
        "GB/s",
        "median GB/s",
        "verified",
    ]);
    for w in &s.bandwidth {
        let ws = if w.working_set_bytes >= 1 << 20 {
            format!("{} MiB", w.working_set_bytes >> 20)
        } else {
            format!("{} KiB", w.working_set_bytes >> 10)
        };
        b.add_row(vec![
            Cell::new(&w.kind),
            Cell::new(&w.level),
            Cell::new(ws).set_alignment(CellAlignment::Right),
            Cell::new(w.threads).set_alignment(CellAlignment::Right),
            Cell::new(&w.isa),
            Cell::new(giga(w.bytes_per_s)).set_alignment(CellAlignment::Right),
            Cell::new(giga(w.median_bytes_per_s)).set_alignment(CellAlignment::Right),
            Cell::new(if w.verified { "yes" } else { "NO" }),
        ]);
    }
    outln!(out, "{b}");
    outln!(
        out,
        "bytes: STREAM convention (copy 16, triad 24 per element; write-allocate not counted)"
    );

    if !s.gpu.is_empty() {
        let mut g = render::table::new(vec![
            "GPU",
            "dtype",
            "GEMM n",
            "measured TFLOP/s",
            "spec TFLOP/s",
            "% of spec",
        ]);
        for p in &s.gpu {
            g.add_row(vec![
                Cell::new(&p.device),
                Cell::new(&p.dtype),
                Cell::new(p.size).set_alignment(CellAlignment::Right),
                Cell::new(format!("{:.1}", p.flops_per_s / 1e12))
                    .set_alignment(CellAlignment::Right),
                Cell::new(
                    p.spec_flops_per_s
                        .map_or("unknown".into(), |f| format!("{:.1}", f / 1e12)),
                )
                .set_alignment(CellAlignment::Right),
                Cell::new(
                    p.spec_flops_per_s
                        .map_or("-".into(), |f| format!("{:.0}%", 100.0 * p.flops_per_s / f)),
                )
                .set_alignment(CellAlignment::Right),
            ]);
        }
        outln!(out, "{g}");
    }
    if let Some(l) = s.load_average_1m {
        if l > 0.5 {
            outln!(
                out,
                "note: 1-minute load average was {l:.1} when this started; other work on the \
                 machine lowers every figure"
            );
        }
    }
    for dtype in ["f32", "f64", "bf16"] {
        if let Some(r) = s.ridge_point(dtype) {
            outln!(
                out,
                "ridge point {dtype}: {r:.1} FLOP/byte (peak / DRAM triad bandwidth)"
            );
        }
    }
    if s.reference.is_none() {
        outln!(out, "C reference: not run");
    }
    for r in s.reference.iter().chain(&s.tile_reference) {
        let unit = if r.dtype == "int8" {
            "Gop/s"
        } else {
            "GFLOP/s"
        };
        outln!(
            out,
            "C reference ({} {}, {} threads): flopcal {} {unit} vs reference {} {unit}, ratio {:.3} ({})",
            r.isa,
            r.dtype,
            r.threads,
            giga(r.flopcal_flops_per_s),
            giga(r.reference_flops_per_s),
            r.ratio,
            if r.within_tolerance { "within ±10%" } else { "OUTSIDE ±10%" }
        );
    }
    outln!(out, "spec peak: {} ({})", s.spec.status, s.spec.note);
    render::stdout(&out)
}

fn print_csv(s: &PeakSection) -> crate::Result<()> {
    let err = render::csv::error;
    let mut w = render::csv::writer();
    w.write_record([
        "section", "name", "variant", "threads", "value", "per_core", "median", "unit", "verified",
        "note",
    ])
    .map_err(err)?;
    for c in &s.compute {
        w.write_record([
            "compute",
            &c.isa,
            &c.dtype,
            &c.threads.to_string(),
            &c.total_flops_per_s.to_string(),
            &c.per_core_flops_per_s.to_string(),
            &c.median_total_flops_per_s.to_string(),
            if c.dtype == "int8" { "op/s" } else { "flop/s" },
            &c.verified.to_string(),
            "",
        ])
        .map_err(err)?;
    }
    for k in &s.skipped {
        w.write_record([
            "skipped", &k.isa, &k.dtype, "", "", "", "", "", "", &k.reason,
        ])
        .map_err(err)?;
    }
    for b in &s.bandwidth {
        w.write_record([
            "bandwidth",
            &b.kind,
            &b.level,
            &b.threads.to_string(),
            &b.bytes_per_s.to_string(),
            &(b.bytes_per_s / b.threads as f64).to_string(),
            &b.median_bytes_per_s.to_string(),
            "byte/s",
            &b.verified.to_string(),
            &format!("working set {} bytes", b.working_set_bytes),
        ])
        .map_err(err)?;
    }
    for g in &s.gpu {
        w.write_record([
            "gpu",
            &g.device,
            &g.dtype,
            "",
            &g.flops_per_s.to_string(),
            "",
            "",
            "flop/s",
            "true",
            &format!(
                "GEMM n={}; spec {}",
                g.size,
                g.spec_flops_per_s
                    .map_or("unknown".into(), |f| f.to_string())
            ),
        ])
        .map_err(err)?;
    }
    for r in s.reference.iter().chain(&s.tile_reference) {
        w.write_record([
            "reference",
            &r.isa,
            &r.dtype,
            &r.threads.to_string(),
            &r.ratio.to_string(),
            "",
            "",
            "ratio",
            &r.within_tolerance.to_string(),
            &format!(
                "flopcal {} flop/s, C reference {} flop/s",
                r.flopcal_flops_per_s, r.reference_flops_per_s
            ),
        ])
        .map_err(err)?;
    }
    render::csv::print(w)
}
