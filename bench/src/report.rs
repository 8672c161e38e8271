//! Self-contained HTML report of one or more result files.
//!
//! One file, no network: inline CSS, inline SVG plots drawn with `plotters`' SVG
//! backend, and a few lines of inline script that only record in the DOM that the
//! page loaded and how many plots rendered (the browser test reads them).
//!
//! Contents: the host fingerprint; a roofline plot per host (arithmetic intensity vs
//! achieved FLOP/s, with the measured compute ceiling, the DRAM bandwidth slope and
//! the spec peak when the file has a `peak` section); GFLOP/s per kernel with 95% CI
//! error bars; for several files of one host, throughput over time; for several
//! hosts, kernels side by side; the estimate table when a file has one; and the full
//! benchmark table of each file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::ceilings::PeakSection;
use crate::regress::median_flops;
use crate::report_table::{fmt_duration, fmt_giga};
use crate::results::{Benchmark, ResultFile, Status};
use crate::{BenchError, Result};

/// One loaded input of the report.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// Where it was read from.
    pub path: PathBuf,
    /// The result file.
    pub file: ResultFile,
    /// The `estimate` object of the raw JSON, when the file carries one.
    pub estimate: Option<serde_json::Value>,
    /// The peak section (from the file, or from `--peak`), when it parses.
    pub peak: Option<PeakSection>,
}

impl ReportInput {
    /// Load a result file for the report (validated like every reader).
    pub fn load(path: &Path) -> Result<ReportInput> {
        let file = crate::results::load(path)?;
        if !file.benchmarks.iter().any(|b| !b.samples_s.is_empty()) {
            return Err(BenchError::BadFile {
                path: path.to_path_buf(),
                reason: "no benchmark has any samples; nothing to report".into(),
            });
        }
        let raw: serde_json::Value = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(serde_json::Value::Null);
        let estimate = raw.get("estimate").cloned().filter(|v| !v.is_null());
        let peak = file.peak.clone();
        Ok(ReportInput {
            path: path.to_path_buf(),
            file,
            estimate,
            peak,
        })
    }

    fn label(&self) -> String {
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| self.path.display().to_string());
        format!("{name} ({})", short_time(&self.file.header.created_at))
    }
}

fn short_time(rfc3339: &str) -> String {
    rfc3339.get(..16).unwrap_or(rfc3339).replace('T', " ")
}

/// Key under which files count as "the same host" (the fields `regress` compares).
pub fn host_key(f: &ResultFile) -> String {
    let mut feats = f.host.build_features.clone();
    feats.sort();
    format!(
        "{} | {} | {} | {} threads | [{}]",
        f.host.cpu_model,
        f.host.device,
        f.host.device_name,
        f.host.threads,
        feats.join(",")
    )
}

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A tick label with no more digits than its magnitude needs (`0.25`, `3.5`, `600`).
fn axis_number(v: f64) -> String {
    let a = v.abs();
    if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub(crate) fn plot_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Usage(format!("cannot draw a plot: {e}"))
}

const DTYPE_COLORS: [(&str, RGBColor); 5] = [
    ("f32", RGBColor(31, 119, 180)),
    ("bf16", RGBColor(255, 127, 14)),
    ("f16", RGBColor(44, 160, 44)),
    ("f64", RGBColor(148, 103, 189)),
    ("other", RGBColor(127, 127, 127)),
];

fn dtype_color(dtype: &str) -> RGBColor {
    DTYPE_COLORS
        .iter()
        .find(|(d, _)| *d == dtype)
        .map(|(_, c)| *c)
        .unwrap_or(DTYPE_COLORS[4].1)
}

/// A categorical palette for series (files, benchmarks).
pub(crate) fn series_color(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// Median FLOP/s with the 95% CI (slow end, fast end) of a measured benchmark.
fn flops_with_ci(b: &Benchmark) -> Option<(f64, f64, f64)> {
    if b.status != Status::Ok {
        return None;
    }
    match &b.summary {
        Some(s) if s.flops_per_s > 0.0 => {
            let (lo, hi) = s
                .widest_flops_interval()
                .unwrap_or((s.flops_per_s, s.flops_per_s));
            Some((s.flops_per_s, lo, hi))
        }
        _ => {
            // No stored summary (e.g. a hand-made file): recompute from the samples.
            let sum = crate::harness::summarize(&b.samples_s)?;
            let f = b.flops_per_iter as f64;
            let (lo, hi) = sum.ci.unwrap_or((sum.median, sum.median));
            (sum.median > 0.0 && lo > 0.0).then(|| (f / sum.median, f / hi, f / lo))
        }
    }
}

pub(crate) fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    entries: &[(String, RGBColor, bool)],
) -> Result<()> {
    let font = ("sans-serif", 13).into_font();
    for (i, (name, color, dashed)) in entries.iter().enumerate() {
        let y = 40 + 20 * i as i32;
        if *dashed {
            area.draw(&PathElement::new(
                vec![(6, y), (12, y)],
                color.stroke_width(2),
            ))
            .map_err(plot_err)?;
            area.draw(&PathElement::new(
                vec![(16, y), (22, y)],
                color.stroke_width(2),
            ))
            .map_err(plot_err)?;
        } else {
            area.draw(&Rectangle::new([(6, y - 5), (22, y + 5)], color.filled()))
                .map_err(plot_err)?;
        }
        area.draw(&Text::new(name.clone(), (28, y - 7), font.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// The roofline plot of one file: every measured kernel at (FLOP/byte, GFLOP/s),
/// coloured by dtype, under the measured ceilings when the peak section is known.
pub fn roofline_svg(input: &ReportInput) -> Result<String> {
    let points: Vec<(f64, f64, String)> = input
        .file
        .benchmarks
        .iter()
        .filter_map(|b| {
            let (f, _, _) = flops_with_ci(b)?;
            let i = b.intensity();
            (i.is_finite() && i > 0.0).then(|| (i, f / 1e9, b.dtype.clone()))
        })
        .collect();
    let mut dtypes: Vec<String> = points.iter().map(|p| p.2.clone()).collect();
    dtypes.sort();
    dtypes.dedup();
    let peak = input.peak.as_ref();
    let bw = peak.and_then(|p| p.dram_bandwidth()).map(|b| b / 1e9);
    let ceilings: Vec<(String, f64)> = dtypes
        .iter()
        .filter_map(|d| Some((d.clone(), peak?.best_flops(d)? / 1e9)))
        .collect();
    let specs: Vec<(String, f64)> = dtypes
        .iter()
        .filter_map(|d| Some((d.clone(), peak?.spec_flops(d)? / 1e9)))
        .collect();

    let (mut x0, mut x1) = points.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| {
        (lo.min(p.0), hi.max(p.0))
    });
    let (mut y0, mut y1) = points.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    for (_, c) in ceilings.iter().chain(specs.iter()) {
        y1 = y1.max(*c);
        if let Some(bw) = bw {
            x0 = x0.min(c / bw / 4.0);
            x1 = x1.max(c / bw * 4.0);
        }
    }
    if !x0.is_finite() || x1 <= 0.0 {
        (x0, x1) = (0.1, 1000.0);
    }
    if !y0.is_finite() || y1 <= 0.0 {
        (y0, y1) = (0.1, 1000.0);
    }
    let (x0, x1) = (x0 / 2.0, x1 * 2.0);
    let (y0, y1) = (y0 / 3.0, y1 * 2.0);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (plot_area, legend_area) = root.split_horizontally(760);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption("Roofline", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("arithmetic intensity (FLOP / byte)")
            .y_desc("achieved GFLOP/s")
            .x_label_formatter(&|v| axis_number(*v))
            .y_label_formatter(&|v| axis_number(*v))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        let mut legend: Vec<(String, RGBColor, bool)> = Vec::new();
        let xs: Vec<f64> = (0..=60)
            .map(|i| x0 * (x1 / x0).powf(i as f64 / 60.0))
            .collect();
        for (d, c) in &ceilings {
            let color = dtype_color(d);
            let line: Vec<(f64, f64)> = xs
                .iter()
                .map(|&x| (x, bw.map_or(*c, |bw| c.min(x * bw))))
                .collect();
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(plot_err)?;
            legend.push((format!("measured peak {d}: {c:.0} GFLOP/s"), color, false));
        }
        if let Some(bw) = bw {
            if ceilings.is_empty() {
                let line: Vec<(f64, f64)> = xs.iter().map(|&x| (x, x * bw)).collect();
                chart
                    .draw_series(LineSeries::new(line, BLACK.stroke_width(1)))
                    .map_err(plot_err)?;
            }
            legend.push((format!("DRAM bandwidth: {bw:.1} GB/s"), BLACK, false));
        }
        for (d, s) in &specs {
            let color = dtype_color(d);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0, *s), (x1, *s)],
                    6,
                    4,
                    color.stroke_width(1),
                ))
                .map_err(plot_err)?;
            legend.push((format!("spec peak {d}: {s:.0} GFLOP/s"), color, true));
        }
        for d in &dtypes {
            let color = dtype_color(d);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| &p.2 == d)
                        .map(|p| Circle::new((p.0, p.1), 4, color.filled())),
                )
                .map_err(plot_err)?;
            legend.push((format!("kernels, {d}"), color, false));
        }
        if ceilings.is_empty() {
            legend.push((
                "no peak section: ceilings unknown".into(),
                RGBColor(200, 200, 200),
                false,
            ));
        }
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// GFLOP/s per kernel with 95% CI error bars, one colour per file (several files
/// are drawn side by side per kernel).
pub fn kernels_svg(inputs: &[&ReportInput]) -> Result<String> {
    // Kernel ids in first-seen order across the files.
    let mut ids: Vec<String> = Vec::new();
    for inp in inputs {
        for b in &inp.file.benchmarks {
            if flops_with_ci(b).is_some() && !ids.contains(&b.id) {
                ids.push(b.id.clone());
            }
        }
    }
    let k = inputs.len().max(1) as i32;
    let stride = k + 1;
    let rows = ids.len() as i32 * stride;
    let mut xmax = 0f64;
    let mut bars: Vec<(i32, f64, f64, f64, usize)> = Vec::new();
    for (bi, id) in ids.iter().enumerate() {
        for (fi, inp) in inputs.iter().enumerate() {
            let found = inp.file.benchmarks.iter().find(|b| &b.id == id);
            if let Some((f, lo, hi)) = found.and_then(flops_with_ci) {
                // Top-down: the first kernel at the top of the chart.
                let y = rows - 1 - (bi as i32 * stride + fi as i32);
                xmax = xmax.max(hi / 1e9);
                bars.push((y, lo / 1e9, f / 1e9, hi / 1e9, fi));
            }
        }
    }
    if xmax <= 0.0 {
        xmax = 1.0;
    }
    let height = (90 + 16 * rows.max(1)) as u32;
    let labels: BTreeMap<i32, String> = ids
        .iter()
        .enumerate()
        .map(|(bi, id)| (rows - 1 - (bi as i32 * stride + (k - 1) / 2), id.clone()))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (plot_area, legend_area) = if inputs.len() > 1 {
            let (a, b) = root.split_horizontally(700);
            (a, Some(b))
        } else {
            (root.clone(), None)
        };
        let mut chart = ChartBuilder::on(&plot_area)
            .caption("GFLOP/s per kernel (median, 95% CI)", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(300)
            .build_cartesian_2d(0f64..xmax * 1.08, -1i32..rows)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("GFLOP/s")
            .y_labels((rows + 2).max(2) as usize)
            .y_label_formatter(&|y| labels.get(y).cloned().unwrap_or_default())
            .y_label_style(("monospace", 11))
            .disable_y_mesh()
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        for &(y, lo, f, hi, fi) in &bars {
            let color = if inputs.len() > 1 {
                series_color(fi)
            } else {
                dtype_color(dtype_of(&ids, y, rows, stride))
            };
            // The bar: a thick line from zero to the median.
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, y), (f, y)],
                    color.mix(0.45).stroke_width(10),
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(ErrorBar::new_horizontal(
                    y,
                    lo,
                    f,
                    hi,
                    BLACK.stroke_width(1),
                    8,
                )))
                .map_err(plot_err)?;
            chart
                .draw_series(std::iter::once(Circle::new((f, y), 3, color.filled())))
                .map_err(plot_err)?;
        }
        if let Some(area) = legend_area {
            let entries: Vec<(String, RGBColor, bool)> = inputs
                .iter()
                .enumerate()
                .map(|(i, inp)| {
                    let name = format!("{}: {}", inp.file.host.device_name, inp.label());
                    (name, series_color(i), false)
                })
                .collect();
            draw_legend(&area, &entries)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The dtype (last id component) of the kernel drawn at row `y`.
fn dtype_of(ids: &[String], y: i32, rows: i32, stride: i32) -> &str {
    let bi = ((rows - 1 - y) / stride.max(1)) as usize;
    ids.get(bi)
        .and_then(|id| id.rsplit('/').next())
        .unwrap_or("other")
}

/// Throughput over time of the kernels of several files of one host (files in time
/// order; one line per kernel, at most `max_series` kernels).
pub fn over_time_svg(inputs: &[&ReportInput], max_series: usize) -> Result<String> {
    let mut ids: Vec<String> = Vec::new();
    for inp in inputs {
        for b in &inp.file.benchmarks {
            if median_flops(b).is_some() && b.status == Status::Ok && !ids.contains(&b.id) {
                ids.push(b.id.clone());
            }
        }
    }
    // Prefer kernels measured in the most runs (a stable sort keeps suite order).
    let runs_with = |id: &String| {
        inputs
            .iter()
            .filter(|inp| {
                inp.file
                    .benchmarks
                    .iter()
                    .any(|b| &b.id == id && b.status == Status::Ok)
            })
            .count()
    };
    ids.sort_by_key(|id| std::cmp::Reverse(runs_with(id)));
    ids.truncate(max_series);
    let series: Vec<(String, Vec<(i32, f64)>)> = ids
        .iter()
        .map(|id| {
            let pts = inputs
                .iter()
                .enumerate()
                .filter_map(|(i, inp)| {
                    let b = inp.file.benchmarks.iter().find(|b| &b.id == id)?;
                    (b.status == Status::Ok).then_some(())?;
                    Some((i as i32, median_flops(b)? / 1e9))
                })
                .collect();
            (id.clone(), pts)
        })
        .collect();
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0f64, f64::max)
        .max(1e-3);
    let n = inputs.len() as i32;
    let times: Vec<String> = inputs
        .iter()
        .map(|i| short_time(&i.file.header.created_at))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (plot_area, legend_area) = root.split_horizontally(620);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption("Throughput over time", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(60)
            .build_cartesian_2d(-1i32..n, 0f64..ymax * 1.1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("run (time order)")
            .y_desc("median GFLOP/s")
            .x_labels((n + 2) as usize)
            .x_label_formatter(&|i| {
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| times.get(i).cloned())
                    .unwrap_or_default()
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        let mut legend = Vec::new();
        for (si, (id, pts)) in series.iter().enumerate() {
            let color = series_color(si);
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(plot_err)?;
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(plot_err)?;
            legend.push((id.clone(), color, false));
        }
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

fn fingerprint_table(inp: &ReportInput) -> String {
    let h = &inp.file.host;
    let gib = h.memory_bytes as f64 / (1u64 << 30) as f64;
    let rows = [
        ("CPU", h.cpu_model.clone()),
        ("architecture", h.arch.clone()),
        (
            "cores",
            format!("{} physical, {} logical", h.physical_cores, h.logical_cpus),
        ),
        ("ISA features", h.isa_features.join(", ")),
        ("memory", format!("{gib:.1} GiB")),
        ("OS", format!("{} (kernel {})", h.os, h.kernel)),
        ("device", format!("{} — {}", h.device, h.device_name)),
        ("threads", h.threads.to_string()),
        ("candle", h.candle_version.clone()),
        ("build features", h.build_features.join(", ")),
        (
            "flopcal",
            format!(
                "{} ({})",
                inp.file.header.tool.version, inp.file.header.tool.git_commit
            ),
        ),
    ];
    let mut s = String::from("<table class=\"kv\">");
    for (k, v) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    s.push_str("</table>");
    s
}

fn benchmark_table(inp: &ReportInput) -> String {
    let mut s = String::from(
        "<table><thead><tr><th>benchmark</th><th>dtype</th><th>FLOP/byte</th><th>median</th>\
         <th>GFLOP/s</th><th>95% CI</th><th>GB/s</th><th>n</th><th>status</th></tr></thead><tbody>",
    );
    for b in &inp.file.benchmarks {
        let status = match b.status {
            Status::Ok if b.verified => "ok".to_string(),
            Status::Ok => "ok (unverified)".to_string(),
            Status::VerificationFailed => "FAILED verification".to_string(),
            Status::Error => format!("error: {}", b.message.clone().unwrap_or_default()),
            Status::Skipped => "skipped".to_string(),
        };
        let (median, gflops, ci, gbs, n) = match (&b.summary, flops_with_ci(b)) {
            (Some(s), Some((f, lo, hi))) => (
                fmt_duration(s.median_s),
                fmt_giga(f),
                format!("{} – {}", fmt_giga(lo), fmt_giga(hi)),
                fmt_giga(s.bytes_per_s),
                s.n.to_string(),
            ),
            (None, Some((f, lo, hi))) => (
                "—".into(),
                fmt_giga(f),
                format!("{} – {}", fmt_giga(lo), fmt_giga(hi)),
                "—".into(),
                b.samples_s.len().to_string(),
            ),
            _ => ("—".into(), "—".into(), "—".into(), "—".into(), "0".into()),
        };
        let intensity = b.intensity();
        let intensity = if intensity.is_finite() {
            format!("{intensity:.2}")
        } else {
            "—".into()
        };
        let _ = write!(
            s,
            "<tr><td class=\"id\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&b.id),
            esc(&b.dtype),
            intensity,
            median,
            gflops,
            ci,
            gbs,
            n,
            esc(&status)
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, x, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten_json(&format!("{prefix}[{i}]"), x, out);
            }
        }
        serde_json::Value::Number(n) => {
            let text = match n.as_f64() {
                Some(f) if f.abs() >= 1e6 || (f != 0.0 && f.abs() < 1e-3) => format!("{f:.4e}"),
                Some(f) if f.fract() != 0.0 => format!("{f:.4}"),
                _ => n.to_string(),
            };
            out.push((prefix.to_string(), text));
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        serde_json::Value::Bool(b) => out.push((prefix.to_string(), b.to_string())),
        serde_json::Value::Null => out.push((prefix.to_string(), "—".into())),
    }
}

fn estimate_table(v: &serde_json::Value) -> String {
    let mut rows = Vec::new();
    flatten_json("", v, &mut rows);
    let mut s = String::from("<table class=\"kv\">");
    for (k, val) in rows {
        let _ = write!(s, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&val));
    }
    s.push_str("</table>");
    s
}

fn side_by_side_table(inputs: &[&ReportInput]) -> String {
    let mut ids: Vec<String> = Vec::new();
    for inp in inputs {
        for b in &inp.file.benchmarks {
            if !ids.contains(&b.id) {
                ids.push(b.id.clone());
            }
        }
    }
    let mut s = String::from("<table><thead><tr><th>benchmark</th>");
    for inp in inputs {
        let _ = write!(
            s,
            "<th>{}<br><small>{}</small></th>",
            esc(&inp.label()),
            esc(&inp.file.host.device_name)
        );
    }
    s.push_str("</tr></thead><tbody>");
    for id in &ids {
        let _ = write!(s, "<tr><td class=\"id\">{}</td>", esc(id));
        for inp in inputs {
            let cell = inp
                .file
                .benchmarks
                .iter()
                .find(|b| &b.id == id)
                .and_then(flops_with_ci)
                .map(|(f, lo, hi)| {
                    format!(
                        "{} <small>({}–{})</small>",
                        fmt_giga(f),
                        fmt_giga(lo),
                        fmt_giga(hi)
                    )
                })
                .unwrap_or_else(|| "—".into());
            let _ = write!(s, "<td class=\"num\">{cell}</td>");
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody><caption>median GFLOP/s (95% CI)</caption></table>");
    s
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 12px}\
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}\
.sub{color:#666;margin-top:4px}table{border-collapse:collapse;margin:8px 0;font-size:13px}\
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}thead th{background:#f4f6f8}\
table.kv th{background:#f4f6f8;width:11em}td.num{text-align:right;font-variant-numeric:tabular-nums}\
td.id{font-family:ui-monospace,monospace;font-size:12px}caption{caption-side:bottom;color:#666;font-size:12px}\
.plot{margin:12px 0}.plot svg{max-width:100%;height:auto;border:1px solid #eee}\
.note{color:#666;font-size:13px}details{margin:8px 0}summary{cursor:pointer;color:#1f77b4}";

/// Render the report for `inputs` (any order; sorted by time inside).
pub fn render(inputs: &[ReportInput]) -> Result<String> {
    Ok(page(&render_body(inputs)?))
}

/// The body of [`render`]'s page (for callers that add sections of their own).
pub fn render_body(inputs: &[ReportInput]) -> Result<String> {
    if inputs.is_empty() {
        return Err(BenchError::Usage("give at least one result file".into()));
    }
    let mut sorted: Vec<&ReportInput> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.file.header.created_at.cmp(&b.file.header.created_at));
    // Group by host, hosts in order of first appearance.
    let mut groups: Vec<(String, Vec<&ReportInput>)> = Vec::new();
    for inp in &sorted {
        let key = host_key(&inp.file);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(inp),
            None => groups.push((key, vec![inp])),
        }
    }

    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>flopcal report</h1><p class=\"sub\">{} result file{} from {} host{}; generated {} by flopcal {}</p><ul>",
        sorted.len(),
        if sorted.len() == 1 { "" } else { "s" },
        groups.len(),
        if groups.len() == 1 { "" } else { "s" },
        esc(&chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()),
        esc(env!("CARGO_PKG_VERSION")),
    );
    for inp in &sorted {
        let _ = write!(
            body,
            "<li><code>{}</code> — {} — run {}{}</li>",
            esc(&inp.path.display().to_string()),
            esc(&inp.file.header.created_at),
            esc(&inp.file.header.run_id),
            if inp.file.header.partial {
                " (partial)"
            } else {
                ""
            }
        );
    }
    body.push_str("</ul>");

    for (gi, (_, files)) in groups.iter().enumerate() {
        let Some(latest) = files.last() else { continue };
        let _ = write!(
            body,
            "<h2 id=\"host-{}\">Host {}: {}</h2>",
            gi + 1,
            gi + 1,
            esc(&latest.file.host.device_name)
        );
        body.push_str(&fingerprint_table(latest));
        let _ = write!(
            body,
            "<h3>Roofline — {}</h3><div class=\"plot\" data-plot=\"roofline\">{}</div>",
            esc(&latest.label()),
            roofline_svg(latest)?
        );
        if latest.peak.is_none() {
            body.push_str("<p class=\"note\">This file has no <code>peak</code> section, so the measured compute ceiling and bandwidth slope are not drawn; run <code>flopcal peak</code> and profile again to include them.</p>");
        }
        if files.len() > 1 {
            let _ = write!(
                body,
                "<h3>Over time ({} runs)</h3><div class=\"plot\" data-plot=\"over-time\">{}</div>",
                files.len(),
                over_time_svg(files, 10)?
            );
        }
        let _ = write!(
            body,
            "<h3>Kernels — {}</h3><div class=\"plot\" data-plot=\"kernels\">{}</div>",
            esc(&latest.label()),
            kernels_svg(&[latest])?
        );
    }

    if groups.len() > 1 {
        let latest: Vec<&ReportInput> = groups
            .iter()
            .filter_map(|(_, f)| f.last().copied())
            .collect();
        let _ = write!(
            body,
            "<h2 id=\"side-by-side\">Hosts side by side</h2><div class=\"plot\" data-plot=\"side-by-side\">{}</div>{}",
            kernels_svg(&latest)?,
            side_by_side_table(&latest)
        );
    }

    for inp in &sorted {
        if let Some(est) = &inp.estimate {
            let _ = write!(
                body,
                "<h2>Estimate — {}</h2>{}",
                esc(&inp.label()),
                estimate_table(est)
            );
        }
    }

    body.push_str("<h2>Benchmarks</h2>");
    for (i, inp) in sorted.iter().enumerate() {
        let open = if i + 1 == sorted.len() { " open" } else { "" };
        let _ = write!(
            body,
            "<details{open}><summary>{}</summary>{}</details>",
            esc(&inp.label()),
            benchmark_table(inp)
        );
    }

    Ok(body)
}

/// A whole self-contained HTML page around `body`: the report's style, and the
/// script that records in the DOM that the page loaded and how many plots rendered.
pub fn page(body: &str) -> String {
    // Records in the DOM that the page loaded, how many plots rendered with a real
    // size, and any script errors: the headless-browser test reads these.
    let script = "<script>window.addEventListener('error',function(e){document.documentElement.setAttribute('data-errors',(document.documentElement.getAttribute('data-errors')||'')+e.message+';');});\
window.addEventListener('load',function(){var s=document.querySelectorAll('.plot svg'),n=0;for(var i=0;i<s.length;i++){var r=s[i].getBoundingClientRect();if(r.width>100&&r.height>100)n++;}\
document.documentElement.setAttribute('data-plots-rendered',String(n));document.documentElement.setAttribute('data-loaded','yes');});</script>";
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>flopcal report</title><style>{CSS}</style></head><body>{body}{script}</body></html>\n"
    )
}

/// Number of plots [`render`] draws for `inputs` (for tests and messages).
pub fn plot_count(inputs: &[ReportInput]) -> usize {
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    for i in inputs {
        *groups.entry(host_key(&i.file)).or_insert(0) += 1;
    }
    let per_host: usize = groups.values().map(|&n| if n > 1 { 3 } else { 2 }).sum();
    per_host + usize::from(groups.len() > 1)
}
