//! `flopcal profile`: measure achieved FLOP/s of a model's training-step kernels.
//! The flags become a [`ProfileSpec`]; the run itself is [`flopcal_bench::profile_run`].

use std::path::PathBuf;

use clap::Args;

use crate::render::{self, OutputFormat};
use crate::{Error, Outcome, Result};
use flopcal_bench::device::DeviceChoice;
use flopcal_bench::profile_run::{execute, ProfileSpec};
use flopcal_bench::report_table;
use flopcal_bench::results::{self, ResultFile, Status};

/// Arguments of `flopcal profile`.
#[derive(Debug, Args, Clone)]
#[command(
    after_long_help = "Examples:\n  flopcal profile --quick\n  flopcal profile --model bert-large --seq 512 --batch 8 --out results/my-box.json\n  flopcal profile --model gpt2 --dtype f32,bf16 --format json\n  flopcal profile --hidden 512 --heads 8 --ffn 2048 --layers 6 --vocab 32000 --seq 256"
)]
pub struct ProfileArgs {
    /// Built-in model whose kernel suite to run: bert-base, bert-large, xlnet-large,
    /// gpt2, gpt2-xl, t5-11b. Individual dimensions can be overridden with the
    /// flags below. Default: bert-base (--quick) or bert-large.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// Sequence length. Default: 128 with --quick, else the model's own (512 for BERT).
    #[arg(long)]
    pub seq: Option<usize>,
    /// Sequences per step (tokens per step = batch × seq).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Override: number of transformer blocks.
    #[arg(long)]
    pub layers: Option<u64>,
    /// Override: hidden size (d_model).
    #[arg(long)]
    pub hidden: Option<u64>,
    /// Override: attention heads (head width = hidden / heads unless --head-dim).
    #[arg(long)]
    pub heads: Option<u64>,
    /// Override: width of one attention head.
    #[arg(long)]
    pub head_dim: Option<u64>,
    /// Override: FFN inner width.
    #[arg(long)]
    pub ffn: Option<u64>,
    /// Override: vocabulary size.
    #[arg(long)]
    pub vocab: Option<u64>,
    /// Override: causal (decoder) attention mask.
    #[arg(long)]
    pub causal: Option<bool>,
    /// Dtypes of the model kernels, comma-separated: f32, bf16, f16. On CPU candle
    /// computes bf16 matmuls by widening to f32 and f16 through gemm's f16 path.
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    pub dtype: Vec<String>,
    /// Square GEMM sizes for peer comparison (f32), comma-separated; `0` for none.
    #[arg(long, value_delimiter = ',')]
    pub squares: Option<Vec<usize>>,
    /// Dtypes of the --squares GEMMs, comma-separated: f32, bf16, f16 (each size is
    /// measured in each dtype).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "f32",
        requires = "squares"
    )]
    pub square_dtype: Vec<String>,
    /// Quick profile (under a minute on 2 cores): BERT-base at seq 128, short warm-up,
    /// 3% CI target, 0.6 s per kernel.
    #[arg(long)]
    pub quick: bool,
    /// Stop sampling a kernel once the 95% CI of its median is this narrow (relative).
    #[arg(long, value_name = "FRACTION", allow_negative_numbers = true)]
    pub target_ci: Option<f64>,
    /// Total time budget in seconds for the whole profile; kernels share what is left.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub budget: Option<f64>,
    /// Measure every kernel in this many rounds through the suite and pool the samples,
    /// so each kernel's samples span the whole run and its confidence interval covers
    /// the machine's slow and fast phases, not one burst.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Fewest samples per kernel (at least 10 unless you lower it here).
    #[arg(long)]
    pub min_samples: Option<usize>,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// CPU threads for kernels (default: all physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Refuse kernels needing more than this many GiB (default: available memory).
    #[arg(long, value_name = "GIB", allow_negative_numbers = true)]
    pub max_memory: Option<f64>,
    /// Only run kernels whose id contains this text (e.g. `matmul/qkv`); several
    /// alternatives separated by commas (`qkv,layernorm`) run every kernel matching any.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Skip measuring the machine's compute and bandwidth ceilings first (without
    /// them the table has no %peak or roofline class).
    #[arg(long)]
    pub no_peak: bool,
    /// Seconds per ceiling measurement (FMA per ISA and dtype, bandwidth).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0.3,
        allow_negative_numbers = true
    )]
    pub peak_duration: f64,
    /// Under mpirun (a fleet profile): seconds rank 0 waits at the gather without
    /// hearing from a rank. It then names the silent rank(s), saves the profiles it
    /// has (marked partial) and ends the launch with exit 2. Ranks that finish their
    /// profiles further apart than this end the run too.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 300.0,
        allow_negative_numbers = true
    )]
    pub timeout: f64,
    /// Write the result file (JSON) here, and its CSV twin next to it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

impl ProfileArgs {
    /// The plain request these flags ask for.
    pub fn spec(&self) -> ProfileSpec {
        ProfileSpec {
            model: self.model.clone(),
            seq: self.seq,
            batch: self.batch,
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            head_dim: self.head_dim,
            ffn: self.ffn,
            vocab: self.vocab,
            causal: self.causal,
            dtype: self.dtype.clone(),
            squares: self.squares.clone(),
            square_dtype: self.square_dtype.clone(),
            quick: self.quick,
            target_ci: self.target_ci,
            budget: self.budget,
            rounds: self.rounds,
            min_samples: self.min_samples,
            device: self.device,
            threads: self.threads,
            max_memory: self.max_memory,
            filter: self.filter.clone(),
            no_peak: self.no_peak,
            peak_duration: self.peak_duration,
            timeout: self.timeout,
            out: self.out.clone(),
        }
    }
}

/// `flopcal` with no arguments: the quick profile of this machine.
/// It ends with a short estimate table: BERT pre-training on this machine (measured)
/// next to catalog accelerators.
pub fn run_default() -> Result<Outcome> {
    let spec = ProfileSpec {
        quick: true,
        ..ProfileSpec::default()
    };
    run_then(&spec, OutputFormat::Table, |file| {
        render::stdout(&crate::planning::default_run_table(file))
    })
}

/// Run `flopcal profile`.
pub fn run(args: &ProfileArgs) -> Result<Outcome> {
    run_then(&args.spec(), args.format, |_| Ok(()))
}

/// Run a profile, print it, then call `then` with the result (table format only).
fn run_then(
    spec: &ProfileSpec,
    format: OutputFormat,
    then: impl FnOnce(&ResultFile) -> Result<()>,
) -> Result<Outcome> {
    // Under an MPI launcher every rank profiles and rank 0 gathers (fleet mode).
    #[cfg(feature = "mpi")]
    if flopcal_bench::comm::launch::launched_size().is_some() {
        return crate::commands::fleet::run_profile(spec, format);
    }
    let run = execute(spec)?;
    match format {
        OutputFormat::Json => render::json::print(&run.file)?,
        OutputFormat::Csv => render::stdout(&results::to_csv(&run.file)?)?,
        OutputFormat::Table => {
            render::stdout(&format!(
                "{}\n{}\n",
                report_table::profile_table(&run.file),
                report_table::profile_findings(&run.file)
            ))?;
            then(&run.file)?;
            if let Some(p) = &run.saved {
                eprintln!(
                    "saved {} and {}",
                    p.display(),
                    results::csv_twin(p).display()
                );
            }
        }
    }
    if run.file.header.partial {
        return Err(Error::Interrupted { saved: run.saved });
    }
    if run
        .file
        .benchmarks
        .iter()
        .any(|b| b.status == Status::VerificationFailed)
    {
        return Err(Error::Usage(
            "some kernels produced wrong results (status verification_failed); their timings were not recorded".into(),
        ));
    }
    Ok(Outcome::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches as _;

    #[test]
    fn no_flags_ask_for_the_default_spec() {
        let m = ProfileArgs::augment_args(clap::Command::new("profile"))
            .try_get_matches_from(["profile"])
            .unwrap();
        let args = ProfileArgs::from_arg_matches(&m).unwrap();
        assert_eq!(
            format!("{:?}", args.spec()),
            format!("{:?}", ProfileSpec::default())
        );
        assert_eq!(args.format, OutputFormat::Table);
    }
}
