//! Terminal tables for profile results.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::results::{Benchmark, ResultFile, Status};

/// Format seconds with a unit that keeps three significant digits.
pub fn fmt_duration(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

/// Format a rate in giga-units with no more decimals than meaningful.
pub fn fmt_giga(x: f64) -> String {
    let g = x / 1e9;
    if g >= 100.0 {
        format!("{g:.0}")
    } else if g >= 10.0 {
        format!("{g:.1}")
    } else {
        format!("{g:.2}")
    }
}

fn right(s: impl Into<String>) -> Cell {
    Cell::new(s.into()).set_alignment(CellAlignment::Right)
}

fn status_cell(b: &Benchmark) -> String {
    match b.status {
        Status::Ok => "yes".into(),
        Status::VerificationFailed => "FAILED".into(),
        Status::Error => "error".into(),
        Status::Skipped => "skipped".into(),
    }
}

/// Roofline columns of one benchmark: achieved FLOP/s as % of the measured peak for
/// its dtype, and whether its arithmetic intensity puts it under the compute roof or
/// the bandwidth slope (measured ridge point).
fn roofline_cells(file: &ResultFile, b: &Benchmark, flops_per_s: f64) -> [String; 2] {
    let Some(peak) = &file.peak else {
        return ["-".into(), "-".into()];
    };
    let pct = peak
        .percent_of_peak(flops_per_s, &b.dtype)
        .map(|p| format!("{p:.0}%"))
        .unwrap_or_else(|| "-".into());
    let bound = peak
        .classify(b.intensity(), &b.dtype)
        .map(|c| c.as_str().to_string())
        .unwrap_or_else(|| "-".into());
    [pct, bound]
}

/// One row per benchmark: kernel, shape, dtype, median time, GFLOP/s with the
/// half-widths of its sampling CI (`none` where too few samples for a 95% one) and
/// of its prediction interval for another run, GB/s, % of the measured peak,
/// roofline class, samples, verified.
pub fn profile_table(file: &ResultFile) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "kernel", "shape", "dtype", "median", "GFLOP/s", "±CI", "±PI", "GB/s", "%peak", "bound",
        "n", "verified",
    ]);
    for b in &file.benchmarks {
        let name = format!("{} {}", b.kernel, b.label);
        let shape = b.shape_text();
        match &b.summary {
            Some(s) => {
                let [pct_peak, bound] = roofline_cells(file, b, s.flops_per_s);
                let half_pct = |lo: Option<f64>, hi: Option<f64>, none: &str| match lo.zip(hi) {
                    Some((lo, hi)) if s.flops_per_s > 0.0 => {
                        format!("{:.1}%", 50.0 * (hi - lo) / s.flops_per_s)
                    }
                    _ => none.to_string(),
                };
                let ci = half_pct(s.flops_per_s_ci_low, s.flops_per_s_ci_high, "none");
                let pi = half_pct(s.flops_per_s_pi_low, s.flops_per_s_pi_high, "-");
                t.add_row(vec![
                    Cell::new(name),
                    Cell::new(shape),
                    Cell::new(&b.dtype),
                    right(fmt_duration(s.median_s)),
                    right(fmt_giga(s.flops_per_s)),
                    right(ci),
                    right(pi),
                    right(fmt_giga(s.bytes_per_s)),
                    right(pct_peak),
                    Cell::new(bound),
                    right(s.n.to_string()),
                    Cell::new(status_cell(b)),
                ]);
            }
            None => {
                t.add_row(vec![
                    Cell::new(name),
                    Cell::new(shape),
                    Cell::new(&b.dtype),
                    right("-"),
                    right("-"),
                    right("-"),
                    right("-"),
                    right("-"),
                    right("-"),
                    Cell::new("-"),
                    right("0"),
                    Cell::new(format!(
                        "{}{}",
                        status_cell(b),
                        b.message
                            .as_deref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )),
                ]);
            }
        }
    }
    t.to_string()
}

fn measured(file: &ResultFile) -> impl Iterator<Item = (&Benchmark, f64)> {
    file.benchmarks.iter().filter_map(|b| {
        b.summary
            .as_ref()
            .filter(|_| b.status == Status::Ok)
            .map(|s| (b, s.median_s))
    })
}

/// A few lines saying what the profile found: the best GEMM throughput, the
/// aggregate throughput of the model's distinct training-step GEMM shapes (total FLOPs
/// over total time, each shape once), and bandwidth.
pub fn profile_findings(file: &ResultFile) -> String {
    let mut lines = Vec::new();
    let h = &file.host;
    lines.push(format!(
        "host: {} ({} cores, {} threads, {:.1} GiB), device {}, candle {}{}",
        h.cpu_model,
        h.physical_cores,
        h.threads,
        h.memory_bytes as f64 / (1u64 << 30) as f64,
        h.device,
        h.candle_version,
        if file.header.partial {
            " — PARTIAL (interrupted)"
        } else {
            ""
        }
    ));
    if let Some(p) = &file.peak {
        let mut ceil = Vec::new();
        for dt in ["f32", "bf16"] {
            if let Some(c) = p.best_path(dt) {
                ceil.push(format!(
                    "{dt} peak {} GFLOP/s ({})",
                    fmt_giga(c.total_flops_per_s),
                    c.isa
                ));
            }
        }
        if let Some(c) = p.best_path("int8") {
            ceil.push(format!(
                "int8 peak {:.2} TOPS ({}, integer ops)",
                c.total_flops_per_s / 1e12,
                c.isa
            ));
        }
        if let Some(bw) = p.dram_bandwidth() {
            ceil.push(format!("DRAM triad {} GB/s", fmt_giga(bw)));
        }
        if let Some(r) = p.ridge_point("f32") {
            ceil.push(format!("f32 ridge point {r:.1} FLOP/byte"));
        }
        if !ceil.is_empty() {
            lines.push(format!("measured ceilings: {}", ceil.join(", ")));
        }
    }
    let best_square = measured(file)
        .filter(|(b, _)| b.group == "square" && b.dtype == "f32")
        .map(|(b, s)| (b, b.flops_per_iter as f64 / s))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((b, rate)) = best_square {
        lines.push(format!(
            "best f32 square GEMM: {} GFLOP/s ({})",
            fmt_giga(rate),
            b.shape
                .get("n")
                .map(|n| format!("{n}³"))
                .unwrap_or_default()
        ));
    }
    if let Some(line) = bf16_gap_line(file) {
        lines.push(line);
    }
    let (mut flops, mut secs) = (0.0, 0.0);
    for (b, s) in measured(file).filter(|(b, _)| b.group == "model" && b.kernel == "matmul") {
        flops += b.model_flops_per_iter as f64;
        secs += s;
    }
    if secs > 0.0 {
        lines.push(format!(
            "{} training-step GEMMs (seq {}, batch {}): {} GFLOP/s aggregate over its {} distinct shapes, each once (estimates weight them by their share of training FLOPs)",
            file.profile.model.name,
            file.profile.seq,
            file.profile.batch,
            fmt_giga(flops / secs),
            measured(file)
                .filter(|(b, _)| b.group == "model" && b.kernel == "matmul")
                .count()
        ));
    }
    if let Some((_, bw)) = measured(file)
        .filter(|(b, _)| b.group == "stream")
        .map(|(b, s)| (b, b.bytes_per_iter as f64 / s))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        lines.push(format!(
            "streaming bandwidth (candle, 64 MiB arrays): {} GB/s",
            fmt_giga(bw)
        ));
    }
    if let Some(line) = contention_line(file) {
        lines.push(line);
    }
    let no_interval = file
        .benchmarks
        .iter()
        .filter(|b| b.summary.as_ref().is_some_and(|s| s.ci95_low_s.is_none()))
        .count();
    if no_interval > 0 {
        lines.push(format!(
            "{no_interval} kernel(s) have no 95% interval (±CI none): too few samples for a distribution-free one; raise --min-samples or drop --quick"
        ));
    }
    let failed = file
        .benchmarks
        .iter()
        .filter(|b| b.status == Status::VerificationFailed)
        .count();
    if failed > 0 {
        lines.push(format!("{failed} kernel(s) FAILED verification"));
    }
    lines.join("\n")
}

/// How far candle's best bf16 GEMM is from the machine's bf16 ceiling, and why; with
/// the reason AMX did not run when it did not.
fn bf16_gap_line(file: &ResultFile) -> Option<String> {
    let peak = file.peak.as_ref()?;
    let ceiling = peak.best_path("bf16")?;
    let (b, rate) = measured(file)
        .filter(|(b, _)| b.kernel == "matmul" && b.dtype == "bf16")
        .map(|(b, s)| (b, b.flops_per_iter as f64 / s))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let cpu = file.host.device == "cpu";
    let mut line = format!(
        "bf16: candle's best bf16 GEMM ({}) runs at {} GFLOP/s, {:.0}% of the bf16 ceiling {} GFLOP/s ({}){}",
        b.shape_text(),
        fmt_giga(rate),
        100.0 * rate / ceiling.total_flops_per_s,
        fmt_giga(ceiling.total_flops_per_s),
        ceiling.isa,
        if cpu {
            ": candle's CPU backend widens bf16 to f32 and runs the f32 GEMM, so it never uses vdpbf16ps or AMX tiles"
        } else {
            ""
        }
    );
    if ceiling.isa != "amx-bf16" {
        if let Some(reason) = peak.skip_reason("amx-bf16", "bf16") {
            line.push_str(&format!("; AMX not measured ({reason})"));
        }
    }
    Some(line)
}

/// What slowed the machine in the rounds judged contended, one phrase per signal:
/// `steal 14% of CPU in 9 rounds` (the mean over the rounds beyond the steal
/// threshold), `other processes 40% of CPU in 5 rounds`, `probe layernorm over 2.0×
/// its best time in 3 rounds`.
pub fn contention_causes(file: &ResultFile) -> Vec<String> {
    use crate::harness::machine::{FOREIGN_CONTENDED, STEAL_CONTENDED};
    let readings: Vec<_> = file
        .benchmarks
        .iter()
        .flat_map(|b| b.round_readings.iter())
        .collect();
    let mut causes = Vec::new();
    let mut beyond = |what: &str, values: Vec<f64>| {
        if !values.is_empty() {
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            causes.push(format!(
                "{what} {:.0}% of CPU in {} round{}",
                100.0 * mean,
                values.len(),
                if values.len() == 1 { "" } else { "s" }
            ));
        }
    };
    beyond(
        "steal",
        readings
            .iter()
            .filter_map(|r| r.steal_frac.filter(|s| *s > STEAL_CONTENDED))
            .collect(),
    );
    beyond(
        "other processes",
        readings
            .iter()
            .filter_map(|r| r.foreign_frac.filter(|f| *f > FOREIGN_CONTENDED))
            .collect(),
    );
    if let Some(c) = &file.contention {
        let probed = file
            .benchmarks
            .iter()
            .flat_map(|b| b.round_probe_s.iter())
            .filter(|&&p| crate::harness::contention::is_contended(p, c.best_probe_s))
            .count();
        if probed > 0 {
            causes.push(format!(
                "probe layernorm over {:.1}× its best time in {probed} round{}",
                c.threshold_ratio,
                if probed == 1 { "" } else { "s" }
            ));
        }
    }
    causes
}

/// What the contention watch saw, when any round ran under contention.
fn contention_line(file: &ResultFile) -> Option<String> {
    let contended = file.contention.as_ref().map_or_else(
        || file.benchmarks.iter().map(|b| b.contended_rounds()).sum(),
        |c| c.contended_rounds,
    );
    if contended == 0 {
        return None;
    }
    let rounds: usize = file.benchmarks.iter().map(|b| b.round_sizes.len()).sum();
    let unresolved = file.benchmarks.iter().filter(|b| b.all_contended()).count();
    let mut causes = contention_causes(file);
    if causes.is_empty() {
        causes.push("cause not recorded".into());
    }
    let mut line = format!(
        "contention: {contended} of {rounds} kernel rounds ran while something outside flopcal slowed this machine ({})",
        causes.join("; ")
    );
    if let Some(c) = &file.contention {
        line.push_str(&format!(
            "; {} re-measured after {:.1} s of waiting",
            c.retried_rounds, c.waited_s
        ));
    }
    line.push_str(", statistics use the quiet rounds");
    if unresolved > 0 {
        line.push_str(&format!(
            "; {unresolved} kernel(s) had no quiet round and report contended figures"
        ));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> ResultFile {
        serde_json::from_str(include_str!("../../results/amd-epyc-2core-quick.json"))
            .expect("the committed reference profile parses")
    }

    #[test]
    fn the_bf16_finding_measures_candle_against_the_highest_bf16_path_and_says_why() {
        let mut f = reference();
        let line = bf16_gap_line(&f).expect("the reference has a bf16 GEMM and ceilings");
        assert!(line.contains("widens bf16 to f32"), "{line}");
        let peak = f.peak.as_mut().expect("peak section");
        let mut amx = peak.best_path("bf16").expect("a bf16 ceiling").clone();
        (amx.isa, amx.total_flops_per_s) = ("amx-bf16".into(), 6.2e12);
        peak.compute.push(amx);
        let line = bf16_gap_line(&f).unwrap();
        assert!(
            line.contains("(amx-bf16)") && !line.contains("AMX not measured"),
            "{line}"
        );
        // The reference's best bf16 GEMM ran at ~0.2 TFLOP/s: a few percent of 6.2.
        let pct: f64 = line
            .split("GFLOP/s, ")
            .nth(1)
            .and_then(|r| r.split('%').next())
            .and_then(|p| p.parse().ok())
            .expect("a percentage");
        assert!(pct < 10.0, "{line}");
    }

    #[test]
    fn a_run_without_contended_rounds_says_nothing_about_contention() {
        let mut f = reference();
        if let Some(c) = f.contention.as_mut() {
            c.contended_rounds = 0;
        }
        assert_eq!(contention_line(&f), None);
    }

    #[test]
    fn contended_rounds_and_kernels_left_without_a_quiet_round_are_reported() {
        let mut f = reference();
        let c = f
            .contention
            .as_mut()
            .expect("the reference run was watched");
        c.contended_rounds = 4;
        c.retried_rounds = 3;
        let b = &mut f.benchmarks[0];
        b.round_contended = vec![true; b.round_sizes.len()];
        let line = contention_line(&f).unwrap();
        assert!(line.starts_with("contention: 4 of "), "{line}");
        assert!(line.contains("3 re-measured"), "{line}");
        assert!(line.contains("1 kernel(s) had no quiet round"), "{line}");
    }

    #[test]
    fn the_findings_line_names_the_steal_and_other_processes_that_slowed_the_machine() {
        use crate::harness::machine::RoundReading;
        let mut f = reference();
        let quiet = RoundReading {
            wall_s: 1.0,
            process_cpu_s: Some(1.9),
            steal_frac: Some(0.01),
            foreign_frac: Some(0.02),
            cpu_mhz: Some(2000.0),
        };
        for b in f.benchmarks.iter_mut() {
            b.round_readings = vec![quiet; b.round_sizes.len()];
            b.round_probe_s.clear();
        }
        let b = &mut f.benchmarks[0];
        b.round_readings[0].steal_frac = Some(0.12);
        b.round_readings[1].steal_frac = Some(0.16);
        b.round_readings[1].foreign_frac = Some(0.40);
        b.round_contended = vec![true, true]
            .into_iter()
            .chain(std::iter::repeat(false))
            .take(b.round_sizes.len())
            .collect();
        f.contention.as_mut().expect("watched").contended_rounds = 2;
        let line = contention_line(&f).unwrap();
        assert!(line.contains("steal 14% of CPU in 2 rounds"), "{line}");
        assert!(
            line.contains("other processes 40% of CPU in 1 round)"),
            "{line}"
        );
        assert!(
            !line.contains("probe layernorm"),
            "no probe reading was slow: {line}"
        );
    }
}
