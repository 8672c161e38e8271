//! The flags of `flopcal estimate`, which `plan` and `compare` take too, and the plain
//! [`EstimateRequest`] they make.

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use flopcal_model::catalog::Unit;
use flopcal_model::flops::Recompute;
use flopcal_model::layout::Attention;

use crate::commands::model_args::{ModelArgs, PriceArgs};
use crate::estimating::EstimateRequest;
use crate::render::OutputFormat;
use flopcal_bench::device::DeviceChoice;

/// Unit of `--devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceUnit {
    /// Chips (a GPU is one chip).
    Chip,
    /// Cores (TPU v2/v3 have 2 per chip).
    Core,
    /// Priced devices as the catalog lists them (a 2019 Cloud TPU = 4 chips).
    Device,
}

/// Activation recomputation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecomputeArg {
    /// No recomputation (training = 3 × forward).
    None,
    /// Recompute every block (+1 forward of the blocks).
    Full,
    /// Recompute the attention core only (+1 forward of scores and P·V).
    Selective,
}

/// Attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttentionArg {
    /// Scores materialised in memory (batched GEMMs, softmax as memory passes).
    Materialized,
    /// A fused flash-style kernel.
    Flash,
}

fn recompute_of(r: RecomputeArg) -> Recompute {
    match r {
        RecomputeArg::None => Recompute::None,
        RecomputeArg::Full => Recompute::Full,
        RecomputeArg::Selective => Recompute::Selective,
    }
}

fn attention_of(a: AttentionArg) -> Attention {
    match a {
        AttentionArg::Materialized => Attention::Materialized,
        AttentionArg::Flash => Attention::Flash,
    }
}

fn unit_of(u: DeviceUnit) -> Unit {
    match u {
        DeviceUnit::Chip => Unit::Chip,
        DeviceUnit::Core => Unit::Core,
        DeviceUnit::Device => Unit::Device,
    }
}

/// Arguments of `flopcal estimate`.
#[derive(Debug, Clone, Args)]
pub struct EstimateArgs {
    /// Which model: --model, --hf-config or a custom shape, each field overridable.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Non-embedding parameters N, for a 6·N·D estimate without an architecture (e.g. 1.5e9).
    #[arg(long, allow_negative_numbers = true)]
    pub params: Option<f64>,
    /// Training tokens D (e.g. 3e11).
    #[arg(long, allow_negative_numbers = true)]
    pub tokens: Option<f64>,
    /// Optimizer steps (with --batch; tokens = steps × batch × seq).
    #[arg(long, allow_negative_numbers = true)]
    pub steps: Option<f64>,
    /// Sequences per step (global batch).
    #[arg(long, allow_negative_numbers = true)]
    pub batch: Option<f64>,
    /// Activation recomputation: counted in the training FLOPs and fixed in the layout
    /// (unset: searched, and the FLOPs counted without recomputation).
    #[arg(long, value_enum)]
    pub recompute: Option<RecomputeArg>,
    /// Recompute only K of each device's layers in full and keep every activation of
    /// the rest (Megatron's --recompute-method block --recompute-num-layers K), as the
    /// search does by itself when a layout is a few GiB over; implies --recompute
    /// full. Its recomputed forward is hardware work: in HFU and the step time, not in
    /// the FLOP count.
    #[arg(long, value_name = "K")]
    pub recompute_layers: Option<u32>,
    /// Tensor-parallel degree (unset: searched within the scale-up domain).
    #[arg(long)]
    pub tp: Option<u32>,
    /// Context-parallel degree: each rank holds seq / cp positions of every sequence
    /// and passes keys and values around a ring for attention, for sequences whose
    /// activations fit no other way (default 1; not searched).
    #[arg(long)]
    pub cp: Option<u32>,
    /// Pipeline stages (unset: searched among divisors of the layers).
    #[arg(long)]
    pub pp: Option<u32>,
    /// Expert-parallel degree of a mixture of experts: each data-parallel rank holds
    /// experts / ep of every MoE layer's experts, and tokens reach theirs by all-to-all
    /// (unset: searched among the divisors of dp that divide the experts).
    #[arg(long)]
    pub ep: Option<u32>,
    /// Data-parallel degree (unset: devices / (tp x cp x pp)).
    #[arg(long)]
    pub dp: Option<u32>,
    /// Micro-batch, sequences (unset: searched).
    #[arg(long)]
    pub microbatch: Option<u32>,
    /// Virtual pipeline stages per device, interleaved 1F1B (unset: searched).
    #[arg(long)]
    pub virtual_stages: Option<u32>,
    /// Sequence parallelism on (`--sequence-parallel` or `=true`) or off (`=false`);
    /// unset: searched.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub sequence_parallel: Option<bool>,
    /// Optimizer sharding: 0 none, 1 ZeRO-1 / distributed optimizer, 3 ZeRO-3 / FSDP
    /// (unset: searched).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["0", "1", "3"]).map(|s| s.parse::<u8>().unwrap_or(0)))]
    pub zero: Option<u8>,
    /// Attention kernel (unset: what --framework runs on the hardware, else searched).
    #[arg(long, value_enum)]
    pub attention: Option<AttentionArg>,
    /// The software stack that will run the job: megatron (also nemo,
    /// megatron-bridge), deepspeed (also gpt-neox), fsdp (also pytorch, torchtitan),
    /// jax, tensorflow (also tf-tpu), or unknown. The estimate uses that stack's
    /// calibrated factor on GEMM rates for the hardware (see `flopcal calibrate`);
    /// unknown uses the stacks seen on that hardware, with a wider band.
    #[arg(long, default_value = "unknown")]
    pub framework: String,
    /// Fraction of wall-clock time that makes progress (after failures, restarts and
    /// evaluation), in (0, 1]: wall-clock = steps x step time / goodput. Default: 0.9,
    /// from the Llama 3 paper's >90% effective training time.
    #[arg(long, allow_negative_numbers = true)]
    pub goodput: Option<f64>,
    /// Fraction of positions through the vocabulary projection (BERT's MLM: 0.15).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub vocab_fraction: f64,
    /// Catalog hardware (e.g. tpu-v3, v100, a100, h100), or `local`: this machine,
    /// measured by --profile FILE or, without one, by a quick profile run now. With
    /// --profile alone the hardware is the machine the profile was measured on.
    #[arg(long)]
    pub hardware: Option<String>,
    /// A result file of `flopcal profile` for the model: its measured kernel FLOP/s,
    /// weighted by each kernel's share of the training FLOPs, give the kernel
    /// efficiency (MFU = that × the calibrated system efficiency) instead of the
    /// catalog's. Must be of this schema version and of the requested device.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mfu", "kernel_efficiency", "hours"])]
    pub profile: Option<PathBuf>,
    /// Device the profile must come from (and that `--hardware local` profiles).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// How many --unit the run uses (default: one priced device of the catalog).
    #[arg(long, allow_negative_numbers = true)]
    pub devices: Option<f64>,
    /// Unit of --devices.
    #[arg(long, value_enum, default_value_t = DeviceUnit::Chip)]
    pub unit: DeviceUnit,
    /// Data type selecting the peak (default: the hardware's, e.g. bf16 on TPUs).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Model FLOPs utilisation in (0, 1], instead of the calibrated one (no band).
    #[arg(long, allow_negative_numbers = true)]
    pub mfu: Option<f64>,
    /// Measured kernel efficiency in (0, 1] (e.g. from `flopcal profile`): MFU = this ×
    /// the calibrated system efficiency of the hardware's class.
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["mfu", "profile"])]
    pub kernel_efficiency: Option<f64>,
    /// On-demand price, USD per chip (GPU) hour, instead of the catalog's.
    #[arg(long, allow_negative_numbers = true)]
    pub price: Option<f64>,
    /// A `flopcal comm --out` result file: its measured α–β per collective replaces the
    /// catalog's figures of the link tier its group spanned (intra-node: the first,
    /// scale-up tier; inter-node: the scale-out tier).
    #[arg(long, value_name = "FILE")]
    pub network: Option<PathBuf>,
    /// Preemptible price, USD per chip (GPU) hour, instead of the catalog's.
    #[arg(long, allow_negative_numbers = true)]
    pub preemptible_price: Option<f64>,
    /// Price the fully-loaded cost at the preemptible rate.
    #[arg(long)]
    pub preemptible: bool,
    /// Configurations tried, for the fully-loaded cost (default: AI21's 2).
    #[arg(long, default_value_t = 2.0, allow_negative_numbers = true)]
    pub configs: f64,
    /// Runs per configuration, for the fully-loaded cost (default: AI21's 10).
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub runs: f64,
    /// Power usage effectiveness of the data centre (Strubell et al.: 1.58).
    #[arg(long, default_value_t = flopcal_model::cost::DEFAULT_PUE, allow_negative_numbers = true)]
    pub pue: f64,
    /// Electricity price, USD per kWh (adds the energy cost).
    #[arg(long, allow_negative_numbers = true)]
    pub kwh_price: Option<f64>,
    /// Emissions, lb CO2e per kWh (Strubell et al., US average: 0.954).
    #[arg(long, default_value_t = flopcal_model::cost::DEFAULT_CO2_LB_PER_KWH, allow_negative_numbers = true)]
    pub co2_per_kwh: f64,
    /// Power per chip, W, instead of the catalog TDP.
    #[arg(long, allow_negative_numbers = true)]
    pub chip_watts: Option<f64>,
    /// Host power (CPU + DRAM) for the whole run, W.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub host_watts: f64,
    /// Known wall-clock duration, hours: cost it directly (MFU is then implied).
    #[arg(long, allow_negative_numbers = true)]
    pub hours: Option<f64>,
    /// Which provider's published cloud prices to use.
    #[command(flatten)]
    pub prices: PriceArgs,
    /// Catalog override file (TOML with [[hardware]], [[models]], [[runs]]); also
    /// taken from the FLOPCAL_CATALOG environment variable.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Your own runs (TOML [[runs]] tables in the format of the embedded published
    /// runs: id, hardware, framework, group, devices, batch, model or arch, layout,
    /// published step_time_s / tokens_per_s / gpu_hours with tokens, source, date).
    /// They join the step model's calibration as sources of their own, so the stack
    /// that ran them is fitted from them, pooled with the published runs. See README
    /// "Your own runs". (--runs is the fully-loaded cost's runs per configuration.)
    #[arg(long, value_name = "FILE")]
    pub own_runs: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

impl EstimateArgs {
    /// The plain request these flags make.
    pub fn request(&self) -> EstimateRequest {
        EstimateRequest {
            model: self.model.spec(),
            params: self.params,
            tokens: self.tokens,
            steps: self.steps,
            batch: self.batch,
            recompute: match (self.recompute, self.recompute_layers) {
                (None, Some(_)) => Some(Recompute::Full),
                (r, _) => r.map(recompute_of),
            },
            recompute_layers: self.recompute_layers,
            tp: self.tp,
            cp: self.cp,
            pp: self.pp,
            ep: self.ep,
            dp: self.dp,
            microbatch: self.microbatch,
            virtual_stages: self.virtual_stages,
            sequence_parallel: self.sequence_parallel,
            zero: self.zero,
            attention: self.attention.map(attention_of),
            framework: self.framework.clone(),
            goodput: self.goodput,
            vocab_fraction: self.vocab_fraction,
            hardware: self.hardware.clone(),
            profile: self.profile.clone(),
            device: self.device,
            devices: self.devices,
            unit: unit_of(self.unit),
            dtype: self.dtype.clone(),
            mfu: self.mfu,
            kernel_efficiency: self.kernel_efficiency,
            price: self.price,
            network: self.network.clone(),
            preemptible_price: self.preemptible_price,
            preemptible: self.preemptible,
            configs: self.configs,
            runs: self.runs,
            pue: self.pue,
            kwh_price: self.kwh_price,
            co2_per_kwh: self.co2_per_kwh,
            chip_watts: self.chip_watts,
            host_watts: self.host_watts,
            hours: self.hours,
            prices: self.prices.spec(),
            catalog: self.catalog.clone(),
            own_runs: self.own_runs.clone(),
        }
    }
}
