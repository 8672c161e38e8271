//! `flopcal comm` across MPI ranks: 2 local ranks over shared memory, launched with
//! Open MPI's `mpirun` (run with `cargo test --release --features mpi --test comm`).
//! Needs `mpirun` and `mpicc` (Debian: openmpi-bin, libopenmpi-dev).
#![cfg(feature = "mpi")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::mpi::{comm_file, mpirun, output_after, read_json, BIN};
use serde_json::Value;

fn run(c: &mut Command) -> Output {
    c.output().expect("mpirun is installed (openmpi-bin)")
}

#[test]
fn every_collective_and_size_over_two_ranks_is_verified_and_fitted() {
    let dir = tempfile::tempdir().unwrap();
    let f = comm_file(
        2,
        &["--max-bytes", "64K", "--time-per-size", "0.005"],
        dir.path(),
        "comm.json",
    );
    assert_eq!(f["kind"], "comm");
    assert_eq!(f["ranks"], 2);
    assert_eq!(f["partial"], false);
    assert_eq!(
        f["hosts"].as_array().unwrap().len(),
        2,
        "every rank's fingerprint"
    );
    let results = f["results"].as_array().unwrap();
    // 6 collectives × 2 dtypes × 14 sizes (8 B … 64 KiB doubling).
    assert_eq!(results.len(), 6 * 2 * 14);
    for r in results {
        assert_eq!(r["verified"], true, "{r}");
        assert!(common::f(r, "busbw_gb_s") > 0.0, "{r}");
        assert!(
            !r["samples_s"].as_array().unwrap().is_empty(),
            "raw samples kept"
        );
        let algbw = common::f(r, "bytes") / common::f(r, "time_s") / 1e9;
        assert!((common::f(r, "algbw_gb_s") / algbw - 1.0).abs() < 1e-9);
    }
    let eight: Vec<&Value> = results.iter().filter(|r| r["bytes"] == 8).collect();
    assert_eq!(
        eight.len(),
        12,
        "latency at 8 B for every collective and dtype"
    );
    assert_eq!(f["fits"].as_array().unwrap().len(), 12);
    // The performance model reads the same file.
    let text = std::fs::read_to_string(dir.path().join("comm.json")).unwrap();
    let net = flopcal_model::network::MeasuredNetwork::from_json_str(&text).unwrap();
    assert_eq!(net.collectives.len(), 6);
    let at_8 = net.time_s("all_reduce", 8.0).unwrap();
    let measured = results
        .iter()
        .find(|r| r["collective"] == "all_reduce" && r["dtype"] == "f32" && r["bytes"] == 8)
        .map(|r| common::f(r, "time_s"))
        .unwrap();
    assert!(
        at_8 > 0.2 * measured && at_8 < 5.0 * measured,
        "fit {at_8} vs measured {measured}"
    );
}

#[test]
fn bus_bandwidth_uses_the_nccl_tests_factor_of_each_collective() {
    // n = 2: all-reduce busbw = algbw × 2(n−1)/n = algbw; all-gather = algbw / 2.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--collective",
        "all-reduce,all-gather",
        "--dtype",
        "f32",
        "--max-bytes",
        "1K",
        "--time-per-size",
        "0.002",
    ];
    for r in comm_file(2, &args, dir.path(), "c.json")["results"]
        .as_array()
        .unwrap()
    {
        let ratio = common::f(r, "busbw_gb_s") / common::f(r, "algbw_gb_s");
        let want = if r["collective"] == "all_reduce" {
            1.0
        } else {
            0.5
        };
        assert!((ratio - want).abs() < 1e-12, "{r}");
    }
}

/// Bus bandwidth (GB/s) by both timing methods: nccl-tests' back-to-back loop
/// (mean per operation) and the barrier before every operation (median).
#[derive(Debug, Clone, Copy, Default)]
struct Busbw {
    looped: f64,
    median: f64,
}

impl Busbw {
    fn best(self, other: Busbw) -> Busbw {
        Busbw {
            looped: self.looped.max(other.looped),
            median: self.median.max(other.median),
        }
    }
}

/// Operations per timing method on both sides.
const PEER_ITERS: u64 = 20;

/// The C reference at `bytes`, its buffers on huge pages as flopcal's allocator
/// puts them (see benches/allreduce_ref.c).
fn reference_busbw(exe: &Path, bytes: u64) -> Busbw {
    let o =
        run(mpirun(2)
            .arg(exe)
            .args([bytes.to_string(), PEER_ITERS.to_string(), "huge".into()]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let field = |k: &str| -> f64 {
        text.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .parse()
            .unwrap()
    };
    Busbw {
        looped: field("loop_busbw_gb_s"),
        median: field("median_busbw_gb_s"),
    }
}

fn flopcal_busbw(dir: &Path, bytes: u64) -> Busbw {
    let b = bytes.to_string();
    let n = PEER_ITERS.to_string();
    let args = [
        "--collective",
        "all-reduce",
        "--dtype",
        "f32",
        "--min-bytes",
        &b,
        "--max-bytes",
        &b,
        "--min-iters",
        &n,
        "--max-iters",
        &n,
    ];
    let f = comm_file(2, &args, dir, "peer.json");
    let r = &f["results"][0];
    assert_eq!(r["verified"], true);
    assert_eq!(r["loop_iters"], PEER_ITERS);
    Busbw {
        looped: common::f(r, "loop_busbw_gb_s"),
        median: common::f(r, "busbw_gb_s"),
    }
}

#[test]
fn all_reduce_busbw_at_64_mib_is_at_least_nine_tenths_of_the_c_reference_timed_the_usual_way() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("allreduce_ref");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/allreduce_ref.c");
    let cc = Command::new("mpicc")
        .arg("-O2")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("mpicc is installed (libopenmpi-dev)");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let bytes = 64 << 20;
    // Interleaved rounds, alternating which side goes first; the best of each side,
    // so a burst of load on the shared machine during one run does not decide the
    // ratio (single runs on the 2-core VM spread by ±40% under load).
    let (mut ours, mut theirs) = (Busbw::default(), Busbw::default());
    for round in 0..10 {
        if round % 2 == 0 {
            ours = ours.best(flopcal_busbw(dir.path(), bytes));
            theirs = theirs.best(reference_busbw(&exe, bytes));
        } else {
            theirs = theirs.best(reference_busbw(&exe, bytes));
            ours = ours.best(flopcal_busbw(dir.path(), bytes));
        }
    }
    let looped = ours.looped / theirs.looped;
    let median = ours.median / theirs.median;
    eprintln!(
        "all-reduce 64 MiB busbw, back-to-back loop (nccl-tests): flopcal {:.3} GB/s, C reference {:.3} GB/s, ratio {looped:.3}; barrier per operation, median: flopcal {:.3}, C reference {:.3}, ratio {median:.3}",
        ours.looped, theirs.looped, ours.median, theirs.median
    );
    // The peer check's rule: at least 0.9× the reference timed the usual way, a
    // back-to-back loop (nccl-tests' and OSU's default). The barrier-per-operation
    // medians are compared too, more loosely: on a 2-core VM, best-of-ten medians
    // still scatter by about ±12% around parity (0.89–1.10 seen on a quiet machine).
    // On both, a gap like the 1.3× that 4 KiB reference pages caused means the two no
    // longer time the same thing, so it fails as well.
    for (what, ratio, low) in [("loop", looped, 0.9), ("median", median, 0.8)] {
        assert!(
            (low..=1.25).contains(&ratio),
            "{what}: flopcal / reference = {ratio:.3}, outside {low}..1.25 ({ours:?} vs {theirs:?})"
        );
    }
}

#[test]
fn outside_a_launcher_it_says_how_to_launch_and_exits_2() {
    let mut c = Command::new(BIN);
    c.args(["comm", "--max-bytes", "1K"]);
    for v in [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "SLURM_NTASKS",
    ] {
        c.env_remove(v);
    }
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("mpirun -np"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn a_single_rank_launch_runs_and_says_it_measured_no_link() {
    let args = [
        "comm",
        "--collective",
        "all-reduce",
        "--dtype",
        "f32",
        "--max-bytes",
        "64",
        "--time-per-size",
        "0.001",
        "--format",
        "json",
    ];
    let o = run(mpirun(1).arg(BIN).args(args));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("single-rank"));
    let f: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["ranks"], 1);
    assert_eq!(f["results"][0]["busbw_gb_s"], 0.0);
}

#[test]
fn ranks_launched_with_different_settings_are_refused_naming_the_rank() {
    let o = run(mpirun(1)
        .arg(BIN)
        .args(["comm", "--max-bytes", "1K"])
        .args([":", "-np", "1"])
        .arg(BIN)
        .args(["comm", "--max-bytes", "2K"]));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("refused: rank(s) 1 "), "{err}");
    assert!(o.stdout.is_empty(), "no results printed");
}

#[test]
fn a_rank_dying_mid_run_stops_the_others_and_keeps_a_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("comm.json");
    let start = Instant::now();
    let args = [
        "comm",
        "--max-bytes",
        "64K",
        "--time-per-size",
        "0.005",
        "--timeout",
        "10",
        "--die-after",
        "30",
        "--out",
    ];
    let o = run(mpirun(2).arg(BIN).args(args).arg(&out));
    assert!(!o.status.success());
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "the surviving rank stopped"
    );
    let f = read_json(&out);
    assert_eq!(f["partial"], true);
    assert!(f["partial_reason"]
        .as_str()
        .unwrap()
        .contains("stopped before its end"));
    let n = f["results"].as_array().unwrap().len();
    assert!(
        n > 0 && n <= 30,
        "what was measured before the death is kept: {n}"
    );
}

#[test]
fn a_rank_hanging_mid_run_is_named_and_every_rank_ends_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("comm.json");
    let args = [
        "comm",
        "--max-bytes",
        "64K",
        "--time-per-size",
        "0.005",
        "--timeout",
        "5",
        "--hang-after",
        "12",
        "--out",
    ];
    // Three ranks: the last sleeps forever after 12 points; rank 1 waits for it
    // inside the next point's collective, rank 0 at its check-in.
    let (o, after) = output_after(
        mpirun(3).arg(BIN).args(args).arg(&out),
        "hanging on purpose",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let after = after.unwrap_or_else(|| panic!("the hook never ran: {err}"));
    assert!(
        after < Duration::from_secs(5 + 10),
        "every rank ended {after:?} after the hang (timeout 5 s): {err}"
    );
    assert!(err.contains("rank(s) 2 sent nothing for 5 s"), "{err}");
    let f = read_json(&out);
    assert_eq!(f["partial"], true);
    assert!(
        f["partial_reason"].as_str().unwrap().contains("rank(s) 2 "),
        "{f}"
    );
    assert_eq!(
        f["results"].as_array().unwrap().len(),
        12,
        "every point measured before the hang is kept"
    );
}

#[test]
fn bad_sizes_are_refused_before_launching_anything() {
    let o = run(mpirun(1)
        .arg(BIN)
        .args(["comm", "--min-bytes", "1M", "--max-bytes", "1K"]));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--min-bytes"));
}
