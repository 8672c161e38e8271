//! `flopcal comm`: collective-communication benchmarks across the ranks of an MPI
//! launch (`mpirun -np N flopcal comm`). Needs the `mpi` feature.

use std::path::PathBuf;

use clap::Args;

use crate::render::{self, OutputFormat};
use crate::{Error, Outcome, Result};
use flopcal_bench::comm::{self, Collective, CommConfig, CommDtype, CommFile};

/// Arguments of `flopcal comm`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Launch it with MPI, one process per rank:\n  mpirun -np 2 flopcal comm --out comm.json\n  mpirun -np 8 flopcal comm --collective all-reduce --dtype bf16 --max-bytes 1G\n  srun -n 16 flopcal comm --format json > comm.json\n\nConventions are those of nccl-tests: time per operation after warm-up, measured two ways on the same number of operations: time_s is the median over operations each barrier-synchronised and timed on the slowest rank; loop_time_s is nccl-tests' own timing (operations back to back, one clock around the loop, divided by the count, averaged over ranks), with its loop_algbw_gb_s and loop_busbw_gb_s; algbw = bytes / time; busbw = algbw x 2(n-1)/n (all-reduce), x (n-1)/n (all-gather, reduce-scatter, all-to-all), x 1 (broadcast, send-recv). Every result is verified against the expected values."
)]
pub struct CommArgs {
    /// Collectives to measure, comma-separated: all-reduce, all-gather,
    /// reduce-scatter, broadcast, all-to-all, send-recv. Default: all.
    #[arg(long, value_delimiter = ',', value_name = "NAME")]
    pub collective: Vec<String>,
    /// Element types, comma-separated: f32, bf16, f16.
    #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
    pub dtype: Vec<String>,
    /// Smallest size (bytes; K, M, G suffixes are powers of 1024).
    #[arg(long, default_value = "8", value_parser = parse_bytes)]
    pub min_bytes: u64,
    /// Largest size; sizes double from --min-bytes up to this.
    #[arg(long, default_value = "256M", value_parser = parse_bytes)]
    pub max_bytes: u64,
    /// Warm-up operations per size.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Fewest timed operations per size.
    #[arg(long, default_value_t = 10)]
    pub min_iters: u64,
    /// Most timed operations per size.
    #[arg(long, default_value_t = 1000)]
    pub max_iters: u64,
    /// Seconds of timed operations to aim for per size.
    #[arg(long, default_value_t = 0.05, value_name = "SECONDS")]
    pub time_per_size: f64,
    /// Seconds without progress after which the run ends. Rank 0 names any rank it
    /// has not heard from for this long, keeps what was measured (marked partial)
    /// and exits 2; each rank's own watchdog ends it 5 s later at the latest (a
    /// peer died or hangs inside a collective).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub timeout: f64,
    /// Write the comm result file (JSON) here (rank 0 writes it).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Output format on stdout (rank 0 prints).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// What moves the data: `mpi` (host memory, any MPI) or `nccl` (GPU memory, one
    /// GPU per rank; needs a build with `--features cuda,mpi` and libnccl).
    #[arg(long, value_enum, default_value_t = Backend::Mpi)]
    pub backend: Backend,
    /// Test hook: the last rank aborts after this many measured points.
    #[arg(long, hide = true)]
    pub die_after: Option<usize>,
    /// Test hook: the last rank sleeps forever after this many measured points.
    #[arg(long, hide = true)]
    pub hang_after: Option<usize>,
}

/// The transports `comm` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// MPI collectives on host memory.
    Mpi,
    /// NCCL collectives on GPU memory.
    Nccl,
}

/// Parse a byte count such as `8`, `64K`, `256M`, `1G`.
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .trim_end_matches(['B', 'b', 'i'])
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a byte count; use e.g. 8, 64K, 256M, 1G"))?;
    n.checked_mul(mul)
        .filter(|&b| b > 0)
        .ok_or_else(|| format!("`{s}` must be a positive byte count"))
}

/// The sweep settings the flags describe.
pub fn config(args: &CommArgs) -> Result<CommConfig> {
    let collectives = if args.collective.is_empty() {
        Collective::ALL.to_vec()
    } else {
        args.collective
            .iter()
            .map(|c| Collective::parse(c))
            .collect::<flopcal_bench::Result<_>>()?
    };
    let dtypes = args
        .dtype
        .iter()
        .map(|d| CommDtype::parse(d))
        .collect::<flopcal_bench::Result<Vec<_>>>()?;
    if args.min_bytes > args.max_bytes {
        return Err(Error::Usage(format!(
            "--min-bytes {} is above --max-bytes {}",
            args.min_bytes, args.max_bytes
        )));
    }
    for (flag, v) in [
        ("--time-per-size", args.time_per_size),
        ("--timeout", args.timeout),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::Usage(format!(
                "{flag} {v}: must be a positive number of seconds"
            )));
        }
    }
    if args.min_iters == 0 || args.max_iters < args.min_iters {
        return Err(Error::Usage(format!(
            "--min-iters {} / --max-iters {}: need 1 <= min <= max",
            args.min_iters, args.max_iters
        )));
    }
    Ok(CommConfig {
        min_bytes: args.min_bytes,
        max_bytes: args.max_bytes,
        collectives,
        dtypes,
        warmup_iters: args.warmup,
        min_iters: args.min_iters,
        max_iters: args.max_iters,
        time_per_size_s: args.time_per_size,
        timeout_s: args.timeout,
    })
}

/// Run `flopcal comm`.
pub fn run(args: &CommArgs) -> Result<Outcome> {
    let config = config(args)?;
    if let Some(out) = &args.out {
        flopcal_bench::results::check_writable(out)?;
    }
    execute(args, config)
}

#[cfg(not(feature = "mpi"))]
fn execute(_args: &CommArgs, _config: CommConfig) -> Result<Outcome> {
    Err(Error::Usage(comm::launch::needs_mpi_feature("comm")))
}

#[cfg(feature = "mpi")]
fn execute(args: &CommArgs, config: CommConfig) -> Result<Outcome> {
    let session = comm::session::Session::init("comm")?;
    if session.size == 1 && session.is_root() {
        eprintln!(
            "note: a single-rank launch: collectives move no data between ranks (bus bandwidth is 0 by definition); launch with mpirun -np 2 or more to measure a link"
        );
    }
    let opts = comm::run::CommOptions {
        config,
        out: args.out.clone(),
        die_after: args.die_after,
        hang_after: args.hang_after,
    };
    let result = match args.backend {
        Backend::Mpi => comm::run::execute(&session, &opts).map_err(Error::from),
        #[cfg(feature = "cuda")]
        Backend::Nccl => comm::nccl::execute(&session, &opts).map_err(Error::from),
        #[cfg(not(feature = "cuda"))]
        Backend::Nccl => Err(Error::Usage(
            "--backend nccl needs a build with `--features cuda,mpi` (and libnccl on the GPU machine)".into(),
        )),
    };
    if let Err(e) = &result {
        // Rank 0 says why; every rank waits until it has, then exits (a rank that
        // exits first makes the launcher end the others, rank 0's line unprinted).
        if session.is_root() {
            eprintln!("error: {e}");
        }
        session.barrier();
        let code = e.exit_code();
        drop(session);
        std::process::exit(code);
    }
    if !session.is_root() {
        drop(session);
        std::process::exit(0);
    }
    let run = result?;
    let Some(file) = run.file else {
        return Ok(Outcome::Success);
    };
    print_file(&file, args.format)?;
    if let Some(p) = &args.out {
        eprintln!("saved {}", p.display());
    }
    let wrong: Vec<String> = file
        .results
        .iter()
        .filter(|r| !r.verified)
        .map(|r| {
            format!(
                "{} {} {} B",
                r.collective.as_str(),
                r.dtype.as_str(),
                r.bytes
            )
        })
        .collect();
    if !wrong.is_empty() {
        return Err(Error::Usage(format!(
            "wrong results from {} (verified: false); their timings are not bandwidths",
            wrong.join(", ")
        )));
    }
    Ok(Outcome::Success)
}

/// Print a comm file in `format`.
pub fn print_file(file: &CommFile, format: OutputFormat) -> Result<()> {
    match format {
        OutputFormat::Json => render::json::print(file),
        OutputFormat::Csv => {
            let mut w = render::csv::writer();
            w.write_record([
                "collective",
                "dtype",
                "bytes",
                "time_s",
                "algbw_gb_s",
                "busbw_gb_s",
                "verified",
            ])
            .map_err(render::csv::error)?;
            for r in &file.results {
                w.write_record([
                    r.collective.as_str().to_string(),
                    r.dtype.as_str().to_string(),
                    r.bytes.to_string(),
                    format!("{:e}", r.time_s),
                    r.algbw_gb_s.to_string(),
                    r.busbw_gb_s.to_string(),
                    r.verified.to_string(),
                ])
                .map_err(render::csv::error)?;
            }
            render::csv::print(w)
        }
        OutputFormat::Table => render::stdout(&format!(
            "{}\n{}\n",
            flopcal_bench::comm::table::results_table(file),
            flopcal_bench::comm::table::fits_table(file)
        )),
    }
}
