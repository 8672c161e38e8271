//! Measuring a suite in rounds: one kernel's round (the first prepares and
//! verifies it), the statistics recomputed over its quiet rounds, the retry of
//! rounds that ran under contention, and the partial snapshot a checkpoint saves.
//! `flopcal profile` orchestrates these; `validate` measures single kernels here.

use std::time::Duration;

use crate::harness::contention::{is_contended, Monitor};
use crate::harness::{self, machine, HarnessConfig, KernelExecutor};
use crate::interrupt;
use crate::results::{self, BenchSummary, Benchmark, ResultFile, Status};
use crate::suite::Entry;

fn summary_of(m: &harness::Measurement, work: flopcal_kernels::Work) -> Option<BenchSummary> {
    let s = m.summary.as_ref()?;
    Some(BenchSummary::from_stats(s, m.stop, work.flops, work.bytes))
}

pub fn skeleton(entry: &Entry) -> Benchmark {
    let k = &entry.kernel;
    let work = k.work();
    Benchmark {
        id: k.id(),
        kernel: k.kind().as_str().into(),
        label: k.label(),
        group: entry.group.as_str().into(),
        dtype: k.dtype().as_str().into(),
        shape: k
            .dims()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        flops_per_iter: work.flops,
        model_flops_per_iter: work.model_flops,
        bytes_per_iter: work.bytes,
        iters_per_sample: 0,
        samples_s: Vec::new(),
        round_sizes: Vec::new(),
        round_probe_s: Vec::new(),
        round_contended: Vec::new(),
        round_readings: Vec::new(),
        summary: None,
        verified: false,
        verification: None,
        status: Status::Skipped,
        message: None,
    }
}

/// Prepare, verify and measure one kernel.
pub fn measure_one(
    entry: &Entry,
    device: &candle_core::Device,
    config: &HarnessConfig,
) -> Benchmark {
    let mut b = skeleton(entry);
    let mut prepared = match entry.kernel.prepare(device) {
        Ok(p) => p,
        Err(e) => {
            b.status = Status::Error;
            b.message = Some(format!("prepare: {e}"));
            return b;
        }
    };
    match prepared.verify() {
        Ok(v) => {
            b.verified = v.passed;
            b.verification = Some(results::VerificationRecord {
                checked: v.checked,
                max_rel_err: v.max_rel_err,
                tolerance: v.tolerance,
            });
            if !v.passed {
                b.status = Status::VerificationFailed;
                b.message = Some(format!(
                    "output differs from the f64 reference: max relative error {:.3e} > tolerance {:.3e}",
                    v.max_rel_err, v.tolerance
                ));
                return b;
            }
        }
        Err(e) => {
            b.status = Status::Error;
            b.message = Some(format!("run: {e}"));
            return b;
        }
    }
    let mut exec = KernelExecutor::new(prepared.as_mut());
    match harness::measure(&mut exec, config, &interrupt::requested) {
        Ok(m) => {
            b.summary = summary_of(&m, entry.kernel.work());
            b.iters_per_sample = m.iters_per_sample;
            b.round_sizes = vec![m.samples.len()];
            b.samples_s = m.samples;
            b.status = if b.summary.is_some() {
                Status::Ok
            } else {
                Status::Skipped
            };
        }
        Err(e) => {
            b.status = Status::Error;
            b.message = Some(format!("run: {e}"));
        }
    }
    b
}

/// Order of severity of stop reasons, for a benchmark measured in several rounds.
fn severity(stop: harness::StopReason) -> u8 {
    match stop {
        harness::StopReason::Converged => 0,
        harness::StopReason::MaxSamples => 1,
        harness::StopReason::Budget => 2,
        harness::StopReason::Interrupted => 3,
    }
}

/// One more round of an already verified kernel: prepare it afresh, sample, and pool
/// the new samples with the earlier rounds' (the summary is recomputed over all).
fn measure_again(
    b: &mut Benchmark,
    entry: &Entry,
    device: &candle_core::Device,
    config: &HarnessConfig,
) {
    let measured = entry.kernel.prepare(device).and_then(|mut p| {
        let mut exec = KernelExecutor::new(p.as_mut());
        harness::measure(&mut exec, config, &interrupt::requested)
    });
    match measured {
        Ok(m) => {
            let stop = match &b.summary {
                Some(s) if severity(s.stop) > severity(m.stop) => s.stop,
                _ => m.stop,
            };
            b.round_sizes.push(m.samples.len());
            b.samples_s.extend(m.samples);
            resummarize(b, entry.kernel.work(), stop, None, None);
        }
        Err(e) => {
            b.status = Status::Error;
            b.message = Some(format!("run (round 2+): {e}"));
        }
    }
}

/// Recompute a benchmark's statistics from its quiet rounds (every round when none
/// was flagged, or none was quiet): the pooled median with its sampling interval
/// (order statistics at the harness's corrected level, widened by the two-level
/// rounds-then-samples bootstrap, which accounts for the rounds disagreeing).
/// With `drift_sd`, the prediction interval for another run's median is that
/// interval widened for the machine's speed moving between rounds (see
/// [`harness::stats::widen_for_drift`]).
fn resummarize(
    b: &mut Benchmark,
    work: flopcal_kernels::Work,
    stop: harness::StopReason,
    drift_sd: Option<f64>,
    slowdown: Option<f64>,
) {
    let alpha = b
        .summary
        .as_ref()
        .map_or(1.0 - harness::CONFIDENCE, |s| 1.0 - s.ci_level);
    let rounds = b.quiet_rounds();
    let pooled: Vec<f64> = rounds.concat();
    let mut summary = harness::summarize_at(&pooled, alpha);
    if let Some(s) = summary.as_mut() {
        s.ci = harness::stats::sampling_ci(&rounds, alpha);
    }
    let measured = harness::Measurement {
        summary: summary.clone(),
        samples: Vec::new(),
        iters_per_sample: b.iters_per_sample,
        warmup_iters: 0,
        stop,
    };
    b.summary = summary_of(&measured, work);
    let (Some(s), Some(stats)) = (b.summary.as_mut(), summary) else {
        return;
    };
    let mut pi = match (stats.ci, drift_sd) {
        (Some(ci), Some(sd)) => Some(harness::stats::widen_for_drift(stats.median, ci, sd)),
        _ => None,
    };
    // Every round ran under contention: the quiet machine may be faster by as much as
    // the probe (the most sensitive kernel) was slowed, and no more.
    if let (Some(k), Some(base)) = (slowdown.filter(|k| *k > 1.0), pi.or(stats.ci)) {
        pi = Some((base.0.min(stats.median / k), base.1));
    }
    if let Some(pi) = pi {
        s.set_prediction(pi, work.flops);
    }
}

/// Measure one round of `entry` (the first prepares and verifies it), bracketed by
/// contention probe readings when a monitor watches (the rounds are judged against
/// the run's fastest reading once it is known, in [`judge_rounds`]) and, with
/// `read_machine`, by snapshots of the machine's counters (steal, other processes,
/// own CPU time, frequency; see [`machine`]). Returns whether a round of samples was
/// added.
pub fn measure_round(
    bench: &mut Benchmark,
    entry: &Entry,
    device: &candle_core::Device,
    cfg: &HarnessConfig,
    first: bool,
    mut monitor: Option<&mut Monitor>,
    read_machine: bool,
) -> bool {
    let before_rounds = bench.round_sizes.len();
    if !first && bench.status != Status::Ok {
        return false;
    }
    let before = monitor.as_deref_mut().map(Monitor::read);
    let counters = read_machine.then(machine::snapshot);
    if first {
        *bench = measure_one(entry, device, cfg);
    } else {
        measure_again(bench, entry, device, cfg);
    }
    let added = bench.round_sizes.len() > before_rounds;
    if let (true, Some(counters)) = (added, counters) {
        bench.round_readings.push(machine::reading(&counters));
    }
    if let (true, Some(m), Some(before)) = (added, monitor, before) {
        bench.round_probe_s.push(before.max(m.read()));
    }
    added
}

/// Judge every round: contended when its probe reading is beyond the threshold over
/// the run's fastest (`best`, known only now), or when the machine's own counters
/// ([`machine::reading_contended`]) say steal or other processes took more than
/// their threshold of its CPU time. Kernels with neither probe readings nor machine
/// readings for every round keep their flags as they are.
fn judge_rounds(benchmarks: &mut [Benchmark], best: Option<f64>) {
    for b in benchmarks {
        let n = b.round_sizes.len();
        let probed = best.filter(|_| b.round_probe_s.len() == n);
        let read = b.round_readings.len() == n;
        if probed.is_none() && !read {
            continue;
        }
        b.round_contended = (0..n)
            .map(|i| {
                probed.is_some_and(|best| is_contended(b.round_probe_s[i], best))
                    || (read && machine::reading_contended(&b.round_readings[i]))
            })
            .collect();
    }
}

/// Final statistics of a multi-round run: judge the rounds (when a contention
/// monitor watched), then recompute every summary from its quiet rounds with the
/// interval widened for drift between rounds. A kernel's drift is the larger of its
/// own between-round spread and the run's typical one (the median over kernels, each
/// corrected for the shrinkage of a few-round spread), so three rounds that happen
/// to agree do not claim a machine steadier than it is.
/// Returns the run's typical drift.
pub fn finalize_rounds(
    benchmarks: &mut [Benchmark],
    suite: &[Entry],
    best: Option<f64>,
) -> Option<f64> {
    judge_rounds(benchmarks, best);
    // Each measured kernel's own spread, and the run's typical (shrinkage-corrected).
    let quiet: Vec<Vec<&[f64]>> = benchmarks
        .iter()
        .map(|b| {
            if b.summary.is_some() {
                b.quiet_rounds()
            } else {
                Vec::new()
            }
        })
        .collect();
    let spreads: Vec<Option<f64>> = quiet
        .iter()
        .map(|r| harness::stats::between_round_sd(r))
        .collect();
    let typical = harness::stats::typical_drift(quiet.iter().map(Vec::as_slice));
    drop(quiet);
    for ((b, entry), spread) in benchmarks.iter_mut().zip(suite).zip(spreads) {
        let Some(stop) = b.summary.as_ref().map(|s| s.stop) else {
            continue;
        };
        let drift = match (spread, typical) {
            (Some(o), Some(t)) => Some(o.max(t)),
            (o, t) => o.or(t),
        };
        let slowdown = best.filter(|_| b.all_contended()).and_then(|best| {
            let least = b
                .round_probe_s
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            (least.is_finite() && best > 0.0).then(|| least / best)
        });
        resummarize(
            b,
            entry.kernel.work(),
            stop,
            drift.filter(|_| b.round_sizes.len() > 1),
            slowdown,
        );
    }
    typical
}

/// Re-measure rounds that ran under contention, once the machine is quiet again,
/// within `allowance_s` seconds (waiting included) and the run's deadline. Each
/// contended round earns at most one retry. `say` hears what it is doing, for a
/// progress line. Returns the rounds retried and the seconds spent waiting.
#[allow(clippy::too_many_arguments)]
pub fn retry_contended(
    file: &mut ResultFile,
    suite: &[Entry],
    device: &candle_core::Device,
    cfg: &HarnessConfig,
    monitor: &mut Monitor,
    allowance_s: f64,
    deadline: &harness::Deadline,
    say: &dyn Fn(&str),
) -> (usize, f64) {
    let start = std::time::Instant::now();
    let left = || allowance_s - start.elapsed().as_secs_f64();
    let (mut retried, mut waited) = (0, 0.0);
    judge_rounds(&mut file.benchmarks, Some(monitor.best()));
    let owed: Vec<(usize, usize)> = file
        .benchmarks
        .iter()
        .enumerate()
        .filter(|(_, b)| b.status == Status::Ok)
        .map(|(i, b)| (i, b.contended_rounds()))
        .filter(|&(_, n)| n > 0)
        .collect();
    'kernels: for (i, n) in owed {
        for _ in 0..n {
            // Wait for the episode to pass, in short naps that cost no CPU time.
            while monitor.contended_now() {
                if left() <= 0.0 || deadline.expired() || interrupt::requested() {
                    break 'kernels;
                }
                say("waiting for the machine to become quiet (contention)");
                let nap = 0.25f64.min(left().max(0.0));
                std::thread::sleep(Duration::from_secs_f64(nap));
                waited += nap;
            }
            if left() <= 0.0 || deadline.expired() || interrupt::requested() {
                break 'kernels;
            }
            say(&format!("re-measuring {}", suite[i].kernel.id()));
            if measure_round(
                &mut file.benchmarks[i],
                &suite[i],
                device,
                cfg,
                false,
                Some(monitor),
                true,
            ) {
                retried += 1;
            }
        }
    }
    (retried, waited)
}

/// Seconds between checkpoints of a running profile.
pub const CHECKPOINT_EVERY_S: f64 = 2.0;

/// What a profile that ends now would hold: the rounds so far, summarised as the
/// final file would be, marked partial.
pub fn snapshot(file: &ResultFile, suite: &[Entry], best_probe: Option<f64>) -> ResultFile {
    let mut snap = file.clone();
    snap.header.partial = true;
    snap.round_drift_sd = finalize_rounds(&mut snap.benchmarks, suite, best_probe);
    snap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite;
    use candle_core::DType;

    /// A measured square GEMM with three rounds of five samples at these medians,
    /// each round bracketed by these probe readings.
    fn three_rounds(medians: [f64; 3], probes: [f64; 3]) -> (Benchmark, Entry) {
        let entry = Entry {
            group: suite::Group::Square,
            kernel: Box::new(flopcal_kernels::gemm::Matmul::square(64, DType::F32)),
        };
        let mut b = skeleton(&entry);
        b.status = Status::Ok;
        b.iters_per_sample = 1;
        for m in medians {
            b.samples_s
                .extend((0..5).map(|i| m * (1.0 + 0.001 * i as f64)));
            b.round_sizes.push(5);
        }
        b.round_probe_s = probes.to_vec();
        resummarize(
            &mut b,
            entry.kernel.work(),
            harness::StopReason::Converged,
            None,
            None,
        );
        (b, entry)
    }

    #[test]
    fn a_round_under_contention_is_kept_in_the_file_but_left_out_of_the_statistics() {
        let (b, entry) = three_rounds([1.0, 2.5, 1.0], [1.0, 3.0, 1.1]);
        let mut benches = vec![b];
        finalize_rounds(&mut benches, std::slice::from_ref(&entry), Some(1.0));
        let b = &benches[0];
        assert_eq!(b.round_contended, vec![false, true, false]);
        assert_eq!(b.samples_s.len(), 15, "raw samples all kept");
        let s = b.summary.as_ref().unwrap();
        assert_eq!(s.n, 10);
        assert!(s.median_s < 1.01 && s.ci95_high_s.unwrap() < 1.1, "{s:?}");
        assert_eq!(b.contended_rounds(), 1);
    }

    #[test]
    fn without_a_quiet_round_every_round_counts_and_the_interval_reaches_down_by_the_probes_slowdown(
    ) {
        let (b, entry) = three_rounds([2.5, 2.5, 2.5], [3.0, 3.0, 3.0]);
        let mut benches = vec![b];
        finalize_rounds(&mut benches, std::slice::from_ref(&entry), Some(1.0));
        let s = benches[0].summary.as_ref().unwrap();
        assert_eq!(s.n, 15);
        // The probe ran 3x slower than its best: the quiet figure may be that much
        // faster, and the interval says so.
        assert!(
            (s.pi95_low_s.unwrap() - s.median_s / 3.0).abs() < 1e-12,
            "{s:?}"
        );
        assert!(s.pi95_high_s.unwrap() >= s.median_s);
        // The sampling interval says nothing about the quiet machine.
        assert!(s.ci95_low_s.unwrap() > s.median_s / 2.0, "{s:?}");
    }

    #[test]
    fn rounds_that_agree_still_get_the_runs_typical_drift() {
        // One kernel whose rounds moved by 4%, one whose rounds agree exactly: the
        // second's interval widens to the run's typical drift, not its own zero.
        let (steady, entry) = three_rounds([1.0, 1.0, 1.0], [1.0; 3]);
        let (drifting, _) = three_rounds([1.0, 1.04, 0.98], [1.0; 3]);
        let narrow = steady.summary.clone().unwrap();
        let mut benches = vec![steady, drifting.clone(), drifting];
        let suite: Vec<Entry> = (0..3)
            .map(|_| Entry {
                group: suite::Group::Square,
                kernel: Box::new(flopcal_kernels::gemm::Matmul::square(64, DType::F32)),
            })
            .collect();
        drop(entry);
        let typical = finalize_rounds(&mut benches, &suite, None).unwrap();
        assert!(typical > 0.02 && typical < 0.04, "{typical}");
        let wide = benches[0].summary.as_ref().unwrap();
        let (nlo, nhi) = narrow.widest_interval_s().unwrap();
        assert!(
            wide.pi95_high_s.unwrap() > nhi * 1.03,
            "{wide:?} vs {narrow:?}"
        );
        assert!(wide.pi95_low_s.unwrap() < nlo / 1.03);
        // Its sampling interval stays its own.
        assert_eq!(wide.ci95_low_s, narrow.ci95_low_s);
    }

    #[test]
    fn a_round_with_steal_beyond_the_threshold_is_contended_though_the_probe_read_quiet() {
        let (mut b, entry) = three_rounds([1.0, 1.3, 1.0], [1.0, 1.1, 1.0]);
        let quiet = machine::RoundReading {
            wall_s: 0.5,
            process_cpu_s: Some(1.0),
            steal_frac: Some(0.01),
            foreign_frac: Some(0.0),
            cpu_mhz: None,
        };
        b.round_readings = vec![
            quiet,
            machine::RoundReading {
                steal_frac: Some(0.14),
                ..quiet
            },
            quiet,
        ];
        let mut benches = vec![b];
        finalize_rounds(&mut benches, std::slice::from_ref(&entry), Some(1.0));
        assert_eq!(benches[0].round_contended, vec![false, true, false]);
        assert_eq!(benches[0].summary.as_ref().unwrap().n, 10);
        // Without a probe (no monitor), the readings alone judge the rounds.
        benches[0].round_probe_s.clear();
        benches[0].round_contended.clear();
        finalize_rounds(&mut benches, std::slice::from_ref(&entry), None);
        assert_eq!(benches[0].round_contended, vec![false, true, false]);
    }
}
