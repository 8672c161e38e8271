//! The interconnect section of `flopcal report` for a comm file: bus bandwidth
//! against size for every collective (log–log), with the fitted α–β line drawn as
//! the bus bandwidth it implies, and the fit and sweep tables.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::table::{fmt_bytes, fmt_time};
use super::{Collective, CommDtype, CommFile};
use crate::report::{draw_legend, esc, plot_err, series_color};
use crate::Result;

/// Bus bandwidth (1e9 B/s) the fit predicts at `bytes`.
fn fitted_busbw(alpha: f64, beta: f64, bytes: f64, c: Collective, ranks: u32) -> f64 {
    bytes / (alpha + beta * bytes) / 1e9 * c.bus_factor(ranks)
}

/// The bandwidth-vs-size plot of one comm file.
pub fn bandwidth_svg(file: &CommFile) -> Result<String> {
    let pts: Vec<_> = file
        .results
        .iter()
        .filter(|r| r.verified && r.busbw_gb_s > 0.0 && r.busbw_gb_s.is_finite())
        .collect();
    let (x0, x1) = pts.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
        (lo.min(r.bytes as f64), hi.max(r.bytes as f64))
    });
    let (y0, y1) = pts.iter().fold((f64::INFINITY, 0f64), |(lo, hi), r| {
        (lo.min(r.busbw_gb_s), hi.max(r.busbw_gb_s))
    });
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0 / 1.5, x1 * 1.5)
    } else {
        (1.0, 1e9)
    };
    let (y0, y1) = if y0.is_finite() && y1 > 0.0 {
        (y0 / 3.0, y1 * 3.0)
    } else {
        (1e-3, 100.0)
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let (plot_area, legend_area) = root.split_horizontally(720);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(
                format!("Bus bandwidth, {} ranks ({})", file.ranks, file.tier()),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("size (bytes, nccl-tests convention)")
            .y_desc("bus bandwidth (GB/s)")
            .x_label_formatter(&|v| fmt_bytes(*v as u64))
            .y_label_formatter(&|v| format!("{v:.3}"))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(plot_err)?;
        let mut legend: Vec<(String, RGBColor, bool)> = Vec::new();
        let xs: Vec<f64> = (0..=80)
            .map(|i| x0 * (x1 / x0).powf(f64::from(i) / 80.0))
            .collect();
        for (i, c) in Collective::ALL.into_iter().enumerate() {
            let color = series_color(i);
            let mine: Vec<_> = pts.iter().filter(|r| r.collective == c).collect();
            if mine.is_empty() {
                continue;
            }
            chart
                .draw_series(
                    mine.iter()
                        .filter(|r| r.dtype == CommDtype::F32)
                        .map(|r| Circle::new((r.bytes as f64, r.busbw_gb_s), 4, color.filled())),
                )
                .map_err(plot_err)?;
            chart
                .draw_series(mine.iter().filter(|r| r.dtype != CommDtype::F32).map(|r| {
                    TriangleMarker::new((r.bytes as f64, r.busbw_gb_s), 5, color.stroke_width(1))
                }))
                .map_err(plot_err)?;
            let fit = file
                .fits
                .iter()
                .find(|f| f.collective == c && f.dtype == CommDtype::F32)
                .or_else(|| file.fits.iter().find(|f| f.collective == c));
            if let Some(f) = fit {
                let line: Vec<(f64, f64)> = xs
                    .iter()
                    .map(|&x| {
                        (
                            x,
                            fitted_busbw(f.alpha_s, f.beta_s_per_byte, x, c, file.ranks),
                        )
                    })
                    .filter(|p| p.1 >= y0 && p.1 <= y1)
                    .collect();
                chart
                    .draw_series(LineSeries::new(line, color.stroke_width(2)))
                    .map_err(plot_err)?;
                legend.push((
                    format!(
                        "{}: α {} , 1/β {:.2} GB/s ({})",
                        c.as_str(),
                        fmt_time(f.alpha_s),
                        1.0 / f.beta_s_per_byte / 1e9,
                        f.dtype.as_str()
                    ),
                    color,
                    false,
                ));
            } else {
                legend.push((format!("{} (no fit)", c.as_str()), color, false));
            }
        }
        legend.push((
            "dots f32, triangles 16-bit; lines: α–β fit".into(),
            RGBColor(120, 120, 120),
            true,
        ));
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The HTML section of one comm file.
pub fn section(path: &Path, file: &CommFile) -> Result<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<h2>Interconnect — <code>{}</code></h2><p class=\"sub\">{} ranks on {} host(s) ({}), {}; run {}{}</p>",
        esc(&path.display().to_string()),
        file.ranks,
        {
            let mut h: Vec<&str> = file.hosts.iter().map(|h| h.host.as_str()).collect();
            h.sort_unstable();
            h.dedup();
            h.len()
        },
        esc(file.tier()),
        esc(&file.library),
        esc(&file.header.run_id),
        if file.header.partial { " — <b>partial</b>" } else { "" }
    );
    let _ = write!(
        out,
        "<div class=\"plot\" data-plot=\"comm-bandwidth\">{}</div>",
        bandwidth_svg(file)?
    );
    out.push_str("<table><tr><th>collective</th><th>dtype</th><th>tier</th><th>α (latency)</th><th>1/β GB/s</th><th>points</th><th>max residual</th></tr>");
    for f in &file.fits {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td><td>{:.0}%</td></tr>",
            f.collective.as_str(),
            f.dtype.as_str(),
            esc(&f.tier),
            fmt_time(f.alpha_s),
            1.0 / f.beta_s_per_byte / 1e9,
            f.points,
            f.max_rel_residual * 100.0
        );
    }
    out.push_str("</table><details><summary>Every measured size</summary><table><tr><th>collective</th><th>dtype</th><th>size</th><th>time</th><th>algbw GB/s</th><th>busbw GB/s</th><th>verified</th></tr>");
    for r in &file.results {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td></tr>",
            r.collective.as_str(),
            r.dtype.as_str(),
            fmt_bytes(r.bytes),
            fmt_time(r.time_s),
            r.algbw_gb_s,
            r.busbw_gb_s,
            if r.verified { "yes" } else { "<b>NO</b>" }
        );
    }
    out.push_str("</table></details>");
    Ok(out)
}
