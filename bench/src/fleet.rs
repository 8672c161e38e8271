//! Fleet profiles: the same suite profiled on every rank of an MPI launch, gathered
//! by rank 0 into one file, and the straggler verdict over it.
//!
//! A rank is a **straggler** on a kernel when its median throughput is more than
//! the threshold (default 5%) below the fleet median (the median over ranks of each
//! rank's median) *and* the fast end of its own 95% CI is below that line too, so a
//! rank is not flagged for noise its own samples cannot rule out. Only compute-bound
//! kernels are judged (at or above the roofline ridge when the file has a peak
//! section, else the matmuls): one slow chip sets the pace of a synchronous step,
//! and memory-bound kernels of ranks sharing a host compete for one memory system.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ceilings::{Bound, PeakSection};
use crate::fingerprint::Fingerprint;
use crate::harness::stats;
use crate::results::{self, Benchmark, FileHeader, ProfileConfig, Status};
use crate::{BenchError, Result};

/// `kind` of a fleet file.
pub const FLEET_KIND: &str = "fleet";

/// Default straggler threshold: 5% below the fleet median.
pub const DEFAULT_STRAGGLER: f64 = 0.05;

/// One rank's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRank {
    /// MPI rank.
    pub rank: u32,
    /// Host name.
    pub host: String,
    /// The rank's machine and build.
    pub fingerprint: Fingerprint,
    /// The rank's own run id.
    pub run_id: String,
    /// The rank's run was interrupted.
    pub partial: bool,
    /// The rank's measured ceilings, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<PeakSection>,
    /// The rank's benchmarks (the profile schema, raw samples kept).
    pub benchmarks: Vec<Benchmark>,
}

/// One rank's throughput on one kernel, against the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankStat {
    /// MPI rank.
    pub rank: u32,
    /// Median FLOP/s (quiet rounds' samples).
    pub median_flops_per_s: f64,
    /// FLOP/s at the slow end of the 95% CI of the median.
    pub ci_low_flops_per_s: f64,
    /// FLOP/s at the fast end of the 95% CI of the median.
    pub ci_high_flops_per_s: f64,
    /// 1 − median / fleet median (positive: slower than the fleet).
    pub deficit: f64,
    /// Flagged as a straggler on this kernel.
    pub straggler: bool,
}

/// The spread of one kernel across ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelSpread {
    /// Benchmark id.
    pub id: String,
    /// Judged for stragglers (compute-bound).
    pub compute_bound: bool,
    /// Median over ranks of the rank medians, FLOP/s.
    pub fleet_median_flops_per_s: f64,
    /// Slowest rank median / fastest rank median − 1 (negative).
    pub spread: f64,
    /// Every rank that measured it.
    pub ranks: Vec<RankStat>,
}

/// The verdict over a fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetSummary {
    /// Threshold used (0.05 = 5% below the fleet median).
    pub straggler_threshold: f64,
    /// Per kernel.
    pub kernels: Vec<KernelSpread>,
    /// Ranks flagged on at least one compute-bound kernel, ascending.
    pub stragglers: Vec<u32>,
}

/// A gathered fleet file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetFile {
    /// Schema version, `kind` (always [`FLEET_KIND`]), the fleet run's id, creation
    /// time, the binary (the same on every rank; checked at start), and whether some
    /// rank's run was interrupted, failed or never reached the gather, with why when
    /// rank 0 knows (no reason in older files).
    #[serde(flatten)]
    pub header: FileHeader,
    /// What was profiled (the same on every rank).
    pub profile: ProfileConfig,
    /// Every rank's results.
    pub ranks: Vec<FleetRank>,
    /// The fleet summary at the threshold the run was given.
    pub summary: FleetSummary,
}

/// Median FLOP/s and its CI (slow end, fast end) from a benchmark's quiet samples.
fn rank_rate(b: &Benchmark) -> Option<(f64, f64, f64)> {
    if b.status != Status::Ok || b.flops_per_iter == 0 {
        return None;
    }
    let s = crate::harness::summarize(&b.quiet_samples())?;
    let f = b.flops_per_iter as f64;
    let (lo, hi) = s.ci?;
    (s.median > 0.0 && lo > 0.0).then(|| (f / s.median, f / hi, f / lo))
}

fn compute_bound(b: &Benchmark, peak: Option<&PeakSection>) -> bool {
    match peak.and_then(|p| p.classify(b.intensity(), &b.dtype)) {
        Some(bound) => bound == Bound::Compute,
        None => b.kernel == "matmul",
    }
}

/// The spread and straggler verdict over `ranks` at `threshold`.
pub fn summarize(ranks: &[FleetRank], threshold: f64) -> FleetSummary {
    let mut ids: Vec<&str> = Vec::new();
    for r in ranks {
        for b in &r.benchmarks {
            if !ids.contains(&b.id.as_str()) {
                ids.push(&b.id);
            }
        }
    }
    let peak = ranks.first().and_then(|r| r.peak.as_ref());
    let mut kernels = Vec::new();
    for id in ids {
        let mut per: Vec<(u32, (f64, f64, f64))> = Vec::new();
        let mut bound = false;
        for r in ranks {
            if let Some(b) = r.benchmarks.iter().find(|b| b.id == id) {
                bound |= compute_bound(b, peak);
                if let Some(rate) = rank_rate(b) {
                    per.push((r.rank, rate));
                }
            }
        }
        if per.is_empty() {
            continue;
        }
        let medians = stats::sorted(&per.iter().map(|p| p.1 .0).collect::<Vec<_>>());
        let fleet = stats::median_sorted(&medians);
        let line = (1.0 - threshold) * fleet;
        let judged = bound && per.len() > 1;
        kernels.push(KernelSpread {
            id: id.to_string(),
            compute_bound: bound,
            fleet_median_flops_per_s: fleet,
            spread: medians[0] / medians[medians.len() - 1] - 1.0,
            ranks: per
                .iter()
                .map(|&(rank, (m, lo, hi))| RankStat {
                    rank,
                    median_flops_per_s: m,
                    ci_low_flops_per_s: lo,
                    ci_high_flops_per_s: hi,
                    deficit: 1.0 - m / fleet,
                    straggler: judged && m < line && hi < line,
                })
                .collect(),
        });
    }
    let mut stragglers: Vec<u32> = kernels
        .iter()
        .flat_map(|k| k.ranks.iter().filter(|r| r.straggler).map(|r| r.rank))
        .collect();
    stragglers.sort_unstable();
    stragglers.dedup();
    FleetSummary {
        straggler_threshold: threshold,
        kernels,
        stragglers,
    }
}

/// Check a `--straggler` threshold.
pub fn check_threshold(t: f64) -> Result<()> {
    if t > 0.0 && t < 1.0 {
        Ok(())
    } else {
        Err(BenchError::Usage(format!(
            "--straggler {t}: must be a fraction between 0 and 1, e.g. 0.05 (or 5%)"
        )))
    }
}

/// One line per straggler: the statistics behind each verdict.
pub fn verdict_lines(s: &FleetSummary) -> Vec<String> {
    let mut out = Vec::new();
    for k in &s.kernels {
        for r in k.ranks.iter().filter(|r| r.straggler) {
            out.push(format!(
                "rank {} is a straggler on {}: median {:.2} GFLOP/s (95% CI {:.2}–{:.2}) is {:.1}% below the fleet median {:.2} GFLOP/s (threshold {:.1}%)",
                r.rank,
                k.id,
                r.median_flops_per_s / 1e9,
                r.ci_low_flops_per_s / 1e9,
                r.ci_high_flops_per_s / 1e9,
                r.deficit * 100.0,
                k.fleet_median_flops_per_s / 1e9,
                s.straggler_threshold * 100.0
            ));
        }
    }
    out
}

/// The spread as CSV: one row per kernel and rank (with the rank's host), the fleet's
/// median and spread repeated on each of the kernel's rows.
pub fn spread_csv(s: &FleetSummary, ranks: &[FleetRank]) -> Result<String> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record([
        "kernel",
        "compute_bound",
        "fleet_median_flops_per_s",
        "spread",
        "rank",
        "host",
        "median_flops_per_s",
        "ci_low_flops_per_s",
        "ci_high_flops_per_s",
        "deficit",
        "straggler",
    ])
    .map_err(results::csv_error)?;
    for k in &s.kernels {
        for r in &k.ranks {
            let host = ranks
                .iter()
                .find(|x| x.rank == r.rank)
                .map_or("", |x| x.host.as_str());
            w.write_record([
                k.id.clone(),
                k.compute_bound.to_string(),
                k.fleet_median_flops_per_s.to_string(),
                k.spread.to_string(),
                r.rank.to_string(),
                host.to_string(),
                r.median_flops_per_s.to_string(),
                r.ci_low_flops_per_s.to_string(),
                r.ci_high_flops_per_s.to_string(),
                r.deficit.to_string(),
                r.straggler.to_string(),
            ])
            .map_err(results::csv_error)?;
        }
    }
    results::csv_text(w)
}

/// The report's section for a fleet file: the spread of every kernel across ranks
/// and the straggler verdict with the statistics behind it.
pub fn html_section(path: &Path, file: &FleetFile) -> String {
    use crate::report::esc;
    use std::fmt::Write as _;
    let s = &file.summary;
    let mut out = format!(
        "<h2>Fleet — <code>{}</code></h2><p class=\"sub\">{} ranks; straggler threshold {:.1}% below the fleet median on compute-bound kernels{}</p>",
        esc(&path.display().to_string()),
        file.ranks.len(),
        s.straggler_threshold * 100.0,
        if file.header.partial { " — <b>partial</b>" } else { "" }
    );
    if s.stragglers.is_empty() {
        out.push_str("<p>No straggler.</p>");
    } else {
        out.push_str("<ul class=\"stragglers\">");
        for l in verdict_lines(s) {
            let _ = write!(out, "<li><b>{}</b></li>", esc(&l));
        }
        out.push_str("</ul>");
    }
    out.push_str("<table><tr><th>kernel</th><th>judged</th><th>fleet median GFLOP/s</th><th>spread</th><th>rank: median GFLOP/s [95% CI] (vs fleet)</th></tr>");
    for k in &s.kernels {
        let ranks: Vec<String> = k
            .ranks
            .iter()
            .map(|r| {
                format!(
                    "{}: {:.2} [{:.2}–{:.2}] ({:+.1}%){}",
                    r.rank,
                    r.median_flops_per_s / 1e9,
                    r.ci_low_flops_per_s / 1e9,
                    r.ci_high_flops_per_s / 1e9,
                    -r.deficit * 100.0,
                    if r.straggler { " <b>straggler</b>" } else { "" }
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}%</td><td>{}</td></tr>",
            esc(&k.id),
            if k.compute_bound {
                "compute-bound"
            } else {
                "—"
            },
            k.fleet_median_flops_per_s / 1e9,
            k.spread * 100.0,
            ranks.join("<br>")
        );
    }
    out.push_str("</table>");
    out
}

/// Write a fleet file atomically.
pub fn save(file: &FleetFile, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(file)
        .map_err(|e| BenchError::Usage(format!("cannot serialise the fleet file: {e}")))?;
    results::write_atomic(path, &json)
}

/// Read a fleet file.
pub fn load(path: &Path) -> Result<FleetFile> {
    let value = crate::comm::read_kind(path, FLEET_KIND, "fleet file")?;
    serde_json::from_value(value).map_err(|e| BenchError::BadFile {
        path: path.to_path_buf(),
        reason: format!("does not match the fleet schema: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rank whose one matmul ran at `seconds` per iteration (30 samples, ±0.5%).
    fn rank(r: u32, seconds: f64) -> FleetRank {
        let b: Benchmark = serde_json::from_value(serde_json::json!({
            "id": "matmul/square/m512.n512.k512/f32", "kernel": "matmul", "label": "square",
            "group": "square", "dtype": "f32", "shape": {"m": 512}, "flops_per_iter": 268435456u64,
            "model_flops_per_iter": 268435456u64, "bytes_per_iter": 3145728, "iters_per_sample": 1,
            "samples_s": (0..30).map(|i| seconds * (1.0 + 0.005 * f64::from(i % 3) - 0.005)).collect::<Vec<_>>(),
            "summary": null, "verified": true, "verification": null, "status": "ok"
        }))
        .unwrap();
        let mut stream = b.clone();
        stream.id = "stream/triad/f32".into();
        stream.kernel = "stream".into();
        stream.samples_s = stream
            .samples_s
            .iter()
            .map(|s| s * if r == 1 { 2.0 } else { 1.0 })
            .collect();
        FleetRank {
            rank: r,
            host: "h".into(),
            fingerprint: serde_json::from_value(serde_json::json!({"cpu_model": "c", "arch": "x86_64", "physical_cores": 2, "logical_cpus": 2,
                "isa_features": [], "memory_bytes": 1, "os": "l", "kernel": "k", "device": "cpu",
                "device_name": "c", "threads": 1, "candle_version": "0.11.1", "build_features": []})).unwrap(),
            run_id: format!("r{r}"),
            partial: false,
            peak: None,
            benchmarks: vec![b, stream],
        }
    }

    #[test]
    fn a_rank_ten_percent_slow_on_a_matmul_is_flagged_with_its_statistics() {
        let s = summarize(
            &[rank(0, 1e-3), rank(1, 1.25e-3), rank(2, 1e-3)],
            DEFAULT_STRAGGLER,
        );
        assert_eq!(s.stragglers, vec![1]);
        let lines = verdict_lines(&s);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("rank 1") && lines[0].contains("20.0% below"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn equal_ranks_and_a_slow_memory_bound_kernel_are_not_flagged() {
        // Rank 1's stream kernel is 2x slower but it is not compute-bound.
        let s = summarize(&[rank(0, 1e-3), rank(1, 1.01e-3)], DEFAULT_STRAGGLER);
        assert!(s.stragglers.is_empty(), "{s:?}");
        assert_eq!(s.kernels.len(), 2);
        assert!(!s.kernels[1].compute_bound);
    }

    #[test]
    fn a_deficit_within_the_ranks_own_noise_is_not_flagged() {
        let mut slow = rank(1, 1.12e-3);
        // Wide samples: its CI reaches above the line.
        slow.benchmarks[0].samples_s = (0..12)
            .map(|i| if i % 2 == 0 { 0.7e-3 } else { 1.6e-3 })
            .collect();
        let s = summarize(&[rank(0, 1e-3), slow], DEFAULT_STRAGGLER);
        assert!(s.stragglers.is_empty(), "{:?}", s.kernels[0].ranks);
    }
}
