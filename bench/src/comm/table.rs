//! Human-readable tables of a comm file: the sweep and the α–β fits.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use super::CommFile;

fn right(s: impl Into<String>) -> Cell {
    Cell::new(s.into()).set_alignment(CellAlignment::Right)
}

/// A size in bytes, in powers of 1024 (`8 B`, `64 KiB`, `256 MiB`).
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Seconds in the unit that reads best (`3.2 µs`, `41.0 ms`).
pub fn fmt_time(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s < 1e-3 {
        format!("{:.2} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

/// One row per measured point.
pub fn results_table(file: &CommFile) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "collective",
        "dtype",
        "size",
        "time (median)",
        "algbw GB/s",
        "busbw GB/s",
        "busbw GB/s (loop)",
        "n",
        "verified",
    ]);
    for r in &file.results {
        t.add_row(vec![
            Cell::new(r.collective.as_str()),
            Cell::new(r.dtype.as_str()),
            right(fmt_bytes(r.bytes)),
            right(fmt_time(r.time_s)),
            right(format!("{:.3}", r.algbw_gb_s)),
            right(format!("{:.3}", r.busbw_gb_s)),
            right(
                r.loop_busbw_gb_s
                    .map_or_else(|| "-".into(), |b| format!("{b:.3}")),
            ),
            right(r.samples_s.len().to_string()),
            Cell::new(if r.verified { "yes" } else { "NO" }),
        ]);
    }
    format!(
        "{} ranks ({}), {}{}\n{t}",
        file.ranks,
        file.tier(),
        file.library,
        if file.header.partial {
            " — PARTIAL"
        } else {
            ""
        }
    )
}

/// One row per fitted collective: latency, bandwidth, fit quality.
pub fn fits_table(file: &CommFile) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "collective",
        "dtype",
        "tier",
        "alpha (latency)",
        "1/beta GB/s",
        "measured at smallest size",
        "points",
        "max residual",
    ]);
    for f in &file.fits {
        let smallest = file
            .results
            .iter()
            .filter(|r| r.collective == f.collective && r.dtype == f.dtype && r.verified)
            .min_by_key(|r| r.bytes);
        t.add_row(vec![
            Cell::new(f.collective.as_str()),
            Cell::new(f.dtype.as_str()),
            Cell::new(&f.tier),
            right(fmt_time(f.alpha_s)),
            right(format!("{:.3}", 1.0 / f.beta_s_per_byte / 1e9)),
            right(
                smallest
                    .map(|r| format!("{} at {}", fmt_time(r.time_s), fmt_bytes(r.bytes)))
                    .unwrap_or_default(),
            ),
            right(f.points.to_string()),
            right(format!("{:.0}%", f.max_rel_residual * 100.0)),
        ]);
    }
    format!(
        "alpha-beta fit, time = alpha + beta x bytes ({})\n{t}",
        super::fit::METHOD
    )
}
