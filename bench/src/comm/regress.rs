//! `regress` for comm files: bus bandwidth per (collective, dtype, size), judged with
//! the same statistics as kernel throughput (bootstrap CI of the change and a
//! one-sided Mann–Whitney test on the raw per-operation times; at a fixed size bus
//! bandwidth is inversely proportional to time, so the relative change is the same).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CommFile, CommResult};
use crate::regress::{
    compare_samples, host_differences, RegressOptions, SampleComparison, Verdict,
};

/// One matched (collective, dtype, bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommRow {
    /// `collective/dtype/bytes`.
    pub id: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Whether this row fails the run.
    pub fails: bool,
    /// Baseline bus bandwidth, 1e9 B/s.
    pub baseline_busbw_gb_s: Option<f64>,
    /// Candidate bus bandwidth, 1e9 B/s.
    pub candidate_busbw_gb_s: Option<f64>,
    /// Statistics, when both sides were measured and verified.
    #[serde(flatten)]
    pub stats: Option<SampleComparison>,
    /// Why there is no statistical verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The comparison of two comm files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommComparison {
    /// Always `comm`.
    pub kind: &'static str,
    /// Settings used.
    pub options: RegressOptions,
    /// Differences in rank count or rank 0's host that make the runs incomparable.
    pub host_differences: Vec<String>,
    /// One row per point in either file.
    pub rows: Vec<CommRow>,
    /// Rows that fail the run.
    pub failures: usize,
    /// Count of each verdict.
    pub counts: BTreeMap<String, usize>,
}

impl CommComparison {
    /// Whether any point regressed beyond the threshold or broke.
    pub fn failed(&self) -> bool {
        self.failures > 0
    }
}

fn id(r: &CommResult) -> String {
    format!("{}/{}/{}", r.collective.as_str(), r.dtype.as_str(), r.bytes)
}

/// Compare every point of `cand` with the same point of `base`.
pub fn compare(base: &CommFile, cand: &CommFile, opts: &RegressOptions) -> CommComparison {
    let mut diffs = Vec::new();
    if base.ranks != cand.ranks {
        diffs.push(format!("ranks: {} → {}", base.ranks, cand.ranks));
    }
    if base.tier() != cand.tier() {
        diffs.push(format!("tier: {} → {}", base.tier(), cand.tier()));
    }
    if let (Some(a), Some(b)) = (base.hosts.first(), cand.hosts.first()) {
        diffs.extend(host_differences(&a.fingerprint, &b.fingerprint));
    }
    let comparable = diffs.is_empty() || opts.allow_different_hosts;
    let mut rows: Vec<CommRow> = Vec::new();
    let row =
        |verdict, b: Option<&CommResult>, c: Option<&CommResult>, note: Option<String>| CommRow {
            id: id(b.or(c).expect("one side exists")),
            verdict,
            fails: verdict == Verdict::Broken,
            baseline_busbw_gb_s: b.map(|r| r.busbw_gb_s),
            candidate_busbw_gb_s: c.map(|r| r.busbw_gb_s),
            stats: None,
            note,
        };
    for b in &base.results {
        let c = cand
            .results
            .iter()
            .find(|c| c.collective == b.collective && c.dtype == b.dtype && c.bytes == b.bytes);
        let r = match c {
            None => row(Verdict::Missing, Some(b), None, None),
            Some(c) if !b.verified => row(
                Verdict::Unmeasured,
                Some(b),
                Some(c),
                Some("baseline unverified".into()),
            ),
            Some(c) if !c.verified => row(
                Verdict::Broken,
                Some(b),
                Some(c),
                Some("candidate produced wrong values".into()),
            ),
            Some(c) if !comparable => row(
                Verdict::Incomparable,
                Some(b),
                Some(c),
                Some("different ranks or hosts".into()),
            ),
            Some(c) => match compare_samples(&b.samples_s, &c.samples_s, opts) {
                Some(s) => CommRow {
                    verdict: s.verdict,
                    fails: s.fails,
                    stats: Some(s),
                    ..row(s.verdict, Some(b), Some(c), None)
                },
                None => row(
                    Verdict::Unmeasured,
                    Some(b),
                    Some(c),
                    Some("no valid samples".into()),
                ),
            },
        };
        rows.push(r);
    }
    for c in &cand.results {
        if !base
            .results
            .iter()
            .any(|b| c.collective == b.collective && c.dtype == b.dtype && c.bytes == b.bytes)
        {
            rows.push(row(Verdict::New, None, Some(c), None));
        }
    }
    let mut counts = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.verdict.as_str().to_string()).or_insert(0) += 1;
    }
    CommComparison {
        kind: super::COMM_KIND,
        options: opts.clone(),
        host_differences: diffs,
        failures: rows.iter().filter(|r| r.fails).count(),
        rows,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::{Collective, CommDtype};

    pub(crate) fn point(c: Collective, bytes: u64, t: f64, verified: bool) -> CommResult {
        let samples: Vec<f64> = (0..30)
            .map(|i| t * (1.0 + 0.002 * f64::from(i % 5)))
            .collect();
        CommResult {
            collective: c,
            dtype: CommDtype::F32,
            bytes,
            time_s: t,
            ci95_low_s: Some(t),
            ci95_high_s: Some(t),
            algbw_gb_s: bytes as f64 / t / 1e9,
            busbw_gb_s: bytes as f64 / t / 1e9,
            verified,
            checked_elements: 1,
            max_rel_err: 0.0,
            warmup_iters: 5,
            loop_time_s: None,
            loop_algbw_gb_s: None,
            loop_busbw_gb_s: None,
            loop_iters: None,
            samples_s: samples,
        }
    }

    fn file(results: Vec<CommResult>) -> CommFile {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "kind": "comm", "run_id": "r", "created_at": "2026-01-01T00:00:00Z",
            "tool": {"name": "flopcal", "version": "0", "git_commit": "x"}, "partial": false,
            "ranks": 2, "library": "Open MPI", "hosts": [],
            "config": {"min_bytes": 8, "max_bytes": 8, "collectives": ["all_reduce"], "dtypes": ["f32"],
                       "warmup_iters": 5, "min_iters": 10, "max_iters": 100, "time_per_size_s": 0.1, "timeout_s": 60.0},
            "results": results, "fits": []
        }))
        .unwrap()
    }

    #[test]
    fn a_halved_bus_bandwidth_is_a_failing_regression_and_an_equal_one_is_not() {
        let base = file(vec![
            point(Collective::AllReduce, 1 << 20, 1e-3, true),
            point(Collective::AllGather, 1 << 20, 1e-3, true),
        ]);
        let cand = file(vec![
            point(Collective::AllReduce, 1 << 20, 2e-3, true),
            point(Collective::AllGather, 1 << 20, 1e-3, true),
        ]);
        let c = compare(&base, &cand, &RegressOptions::default());
        assert_eq!(c.rows[0].verdict, Verdict::Regression);
        assert!(c.rows[0].fails);
        assert_eq!(c.rows[1].verdict, Verdict::Same);
        assert!(c.failed());
    }

    #[test]
    fn a_wrong_answer_in_the_candidate_is_broken_and_fails() {
        let base = file(vec![point(Collective::AllReduce, 8, 1e-6, true)]);
        let cand = file(vec![point(Collective::AllReduce, 8, 1e-7, false)]);
        let c = compare(&base, &cand, &RegressOptions::default());
        assert_eq!(c.rows[0].verdict, Verdict::Broken);
        assert!(c.failed());
    }

    #[test]
    fn a_different_rank_count_is_incomparable() {
        let base = file(vec![point(Collective::AllReduce, 8, 1e-6, true)]);
        let mut cand = file(vec![point(Collective::AllReduce, 8, 2e-6, true)]);
        cand.ranks = 4;
        let c = compare(&base, &cand, &RegressOptions::default());
        assert_eq!(c.rows[0].verdict, Verdict::Incomparable);
        assert!(!c.failed());
    }
}
