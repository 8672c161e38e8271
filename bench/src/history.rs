//! History of a machine: a directory of result files summarised in time order.
//!
//! Per benchmark: its median throughput in every run, the trend (Theil–Sen slope of
//! log throughput per run, robust to a single odd run) and the change points: the
//! runs where throughput moved significantly and beyond the noise threshold relative
//! to the previous run of the same benchmark, judged with the same statistics as
//! `flopcal regress` (bootstrap CI of the change, one-sided Mann–Whitney). A run on a
//! different host (see [`crate::regress::host_differences`]) is marked as a host
//! change, not as a statistical change point.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::regress::{
    compare_benchmarks, host_differences, median_flops, pair_drift, RegressOptions, Verdict,
};
use crate::results::{ResultFile, Status};
use crate::{BenchError, Result};

/// One loaded run.
#[derive(Debug, Clone)]
pub struct HistoryRun {
    /// File it came from.
    pub path: PathBuf,
    /// The result file.
    pub file: ResultFile,
}

/// Load every result file (`*.json`) in `dir`, oldest first. JSON files that are not
/// result files (no `benchmarks` array, e.g. a `flopcal peak --out` file) are
/// skipped and named in the returned list; a broken result file is an error.
pub fn load_dir(dir: &Path) -> Result<(Vec<HistoryRun>, Vec<PathBuf>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| BenchError::io(dir, e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut runs = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        // A parseable JSON object without `benchmarks` is some other flopcal file.
        let is_other = std::fs::read_to_string(&p)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.is_object() && v.get("benchmarks").is_none());
        if is_other {
            skipped.push(p);
            continue;
        }
        let file = crate::results::load(&p)?;
        crate::regress::validate(&file, &p)?;
        runs.push(HistoryRun { path: p, file });
    }
    if runs.is_empty() {
        return Err(BenchError::Usage(format!(
            "{}: no flopcal result files (*.json) found",
            dir.display()
        )));
    }
    runs.sort_by(|a, b| {
        a.file
            .header
            .created_at
            .cmp(&b.file.header.created_at)
            .then_with(|| a.path.cmp(&b.path))
    });
    Ok((runs, skipped))
}

/// One run of one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Index of the run (time order).
    pub run: usize,
    /// When the run was made.
    pub created_at: String,
    /// Median FLOP/s.
    pub flops_per_s: f64,
    /// Samples.
    pub n: usize,
}

/// A significant move between two consecutive runs of a benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    /// Run index where the new level starts.
    pub run: usize,
    /// When that run was made.
    pub created_at: String,
    /// `regression`, `improvement`, `host_changed`, or `contended` (a change seen
    /// where one of the two runs had no quiet round: the neighbour, not the kernel).
    pub kind: String,
    /// Relative change of median throughput against the previous run.
    pub change: f64,
    /// 95% CI of the change (absent for host changes).
    pub ci: Option<(f64, f64)>,
    /// What changed on the host, for host changes; why a change is `contended`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The history of one benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Benchmark id.
    pub id: String,
    /// Measured runs, oldest first.
    pub points: Vec<Point>,
    /// Change from the first to the last run.
    pub total_change: f64,
    /// Theil–Sen slope of throughput, as a relative change per run.
    pub trend_per_run: f64,
    /// `improving`, `degrading`, `flat` or `single run`.
    pub trend: String,
    /// Change points, oldest first.
    pub change_points: Vec<ChangePoint>,
}

/// The whole history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Runs, oldest first: (path, created_at, run_id).
    pub runs: Vec<(PathBuf, String, String)>,
    /// One series per benchmark id, in first-seen order.
    pub series: Vec<Series>,
}

/// Theil–Sen slope of `(x, y)`: the median of pairwise slopes.
pub fn theil_sen(points: &[(f64, f64)]) -> f64 {
    let mut slopes = Vec::new();
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    if slopes.is_empty() {
        return 0.0;
    }
    crate::harness::stats::median_sorted(&crate::harness::stats::sorted(&slopes))
}

/// Summarise `runs` (oldest first).
pub fn summarise(runs: &[HistoryRun], opts: &RegressOptions) -> History {
    let mut ids: Vec<String> = Vec::new();
    for r in runs {
        for b in &r.file.benchmarks {
            if !ids.contains(&b.id) {
                ids.push(b.id.clone());
            }
        }
    }
    // Typical between-round drift of each pair of runs compared, computed once.
    let mut drifts: std::collections::HashMap<(usize, usize), Option<f64>> =
        std::collections::HashMap::new();
    let series = ids
        .into_iter()
        .map(|id| {
            let mut points = Vec::new();
            let mut change_points = Vec::new();
            let mut prev: Option<(usize, &crate::results::Benchmark)> = None;
            for (ri, run) in runs.iter().enumerate() {
                let Some(b) = run
                    .file
                    .benchmarks
                    .iter()
                    .find(|b| b.id == id && b.status == Status::Ok)
                else {
                    continue;
                };
                let Some(f) = median_flops(b) else { continue };
                points.push(Point {
                    run: ri,
                    created_at: run.file.header.created_at.clone(),
                    flops_per_s: f,
                    n: b.quiet_samples().len(),
                });
                if let Some((pi, pb)) = prev {
                    let change = median_flops(pb).map_or(0.0, |p| f / p - 1.0);
                    let diffs = host_differences(&runs[pi].file.host, &run.file.host);
                    if !diffs.is_empty() {
                        change_points.push(ChangePoint {
                            run: ri,
                            created_at: run.file.header.created_at.clone(),
                            kind: "host_changed".into(),
                            change,
                            ci: None,
                            note: Some(diffs.join("; ")),
                        });
                    } else if pb.flops_per_iter == b.flops_per_iter {
                        let drift = *drifts
                            .entry((pi, ri))
                            .or_insert_with(|| pair_drift(&runs[pi].file, &run.file));
                        if let Some((s, _)) = compare_benchmarks(pb, b, drift, opts) {
                            let kind = match s.verdict {
                                Verdict::Regression => Some("regression"),
                                Verdict::Faster if s.ci_low > opts.noise => Some("improvement"),
                                _ => None,
                            };
                            // A side measured only under contention shows the
                            // neighbour, not the kernel (as in `regress`).
                            let contended = pb.all_contended() || b.all_contended();
                            if let Some(kind) = kind {
                                change_points.push(ChangePoint {
                                    run: ri,
                                    created_at: run.file.header.created_at.clone(),
                                    kind: if contended { "contended" } else { kind }.into(),
                                    change: s.change,
                                    ci: Some((s.ci_low, s.ci_high)),
                                    note: contended.then(|| {
                                        "measured only under contention (no quiet round) in one of the two runs".into()
                                    }),
                                });
                            }
                        }
                    }
                }
                prev = Some((ri, b));
            }
            let total_change = match (points.first(), points.last()) {
                (Some(a), Some(z)) if points.len() > 1 => z.flops_per_s / a.flops_per_s - 1.0,
                _ => 0.0,
            };
            let xy: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (p.run as f64, p.flops_per_s.ln()))
                .collect();
            let trend_per_run = theil_sen(&xy).exp_m1();
            let span = points.last().map_or(0, |p| p.run) - points.first().map_or(0, |p| p.run);
            let trend_total = (1.0 + trend_per_run).powi(span as i32) - 1.0;
            let trend = if points.len() < 2 {
                "single run"
            } else if trend_total > opts.noise {
                "improving"
            } else if trend_total < -opts.noise {
                "degrading"
            } else {
                "flat"
            };
            Series {
                id,
                points,
                total_change,
                trend_per_run,
                trend: trend.into(),
                change_points,
            }
        })
        .collect();
    History {
        runs: runs
            .iter()
            .map(|r| {
                (
                    r.path.clone(),
                    r.file.header.created_at.clone(),
                    r.file.header.run_id.clone(),
                )
            })
            .collect(),
        series,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn theil_sen_ignores_one_wild_point() {
        let pts = [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (3.0, 30.0), (4.0, 4.0)];
        assert!((theil_sen(&pts) - 1.0).abs() < 1e-12);
        assert_eq!(theil_sen(&[(0.0, 1.0)]), 0.0);
    }
}
