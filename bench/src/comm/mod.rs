//! Collective-communication benchmarks (`flopcal comm`): the result file, the
//! nccl-tests conventions (sizes, algorithm and bus bandwidth), verification of the
//! exchanged values and the α–β fit. Everything here but [`run`] is plain data and
//! arithmetic, compiled in every build so `regress` and `report` read comm files
//! without MPI; [`run`] drives MPI and needs the `mpi` feature.
//!
//! Conventions follow nccl-tests (`doc/PERFORMANCE.md`): `bytes` is the size the
//! collective is named by (all-gather: the gathered output; reduce-scatter: the input
//! that is scattered; all-to-all: one rank's whole buffer), time is per operation,
//! algorithm bandwidth = bytes / time, bus bandwidth = algbw × 2(n−1)/n for
//! all-reduce and × (n−1)/n for all-gather, reduce-scatter and all-to-all (the
//! factor in nccl-tests' `alltoall.cu`), × 1 for broadcast and send/recv.

pub mod fit;
pub mod launch;
#[cfg(all(feature = "mpi", feature = "cuda"))]
pub mod nccl;
pub mod regress;
pub mod report;
#[cfg(feature = "mpi")]
pub mod run;
#[cfg(feature = "mpi")]
pub mod session;
pub mod table;
pub mod verify;

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::fingerprint::Fingerprint;
use crate::results::{self, FileHeader};
use crate::{BenchError, Result};

/// `kind` of a comm result file (profile files have no `kind`).
pub const COMM_KIND: &str = "comm";

/// The collectives `flopcal comm` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Collective {
    /// Every rank ends with the element-wise sum of every rank's buffer.
    AllReduce,
    /// Every rank ends with the concatenation of every rank's block.
    AllGather,
    /// The element-wise sum, block r of it delivered to rank r.
    ReduceScatter,
    /// Rank 0's buffer copied to every rank.
    Broadcast,
    /// Block j of rank i's buffer delivered as block i of rank j's.
    AllToAll,
    /// Each rank sends its buffer to the next rank and receives the previous one's
    /// (a ring of point-to-point transfers, as nccl-tests' `sendrecv`).
    SendRecv,
}

impl Collective {
    /// Every collective, in the order they are measured.
    pub const ALL: [Collective; 6] = [
        Collective::AllReduce,
        Collective::AllGather,
        Collective::ReduceScatter,
        Collective::Broadcast,
        Collective::AllToAll,
        Collective::SendRecv,
    ];

    /// Name as written in files (`all_reduce`).
    pub fn as_str(self) -> &'static str {
        match self {
            Collective::AllReduce => "all_reduce",
            Collective::AllGather => "all_gather",
            Collective::ReduceScatter => "reduce_scatter",
            Collective::Broadcast => "broadcast",
            Collective::AllToAll => "all_to_all",
            Collective::SendRecv => "send_recv",
        }
    }

    /// Parse a name: `all-reduce`, `all_reduce` and `allreduce` are the same.
    pub fn parse(s: &str) -> Result<Collective> {
        let key: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        Collective::ALL
            .into_iter()
            .find(|c| c.as_str().replace('_', "") == key)
            .ok_or_else(|| {
                BenchError::Usage(format!(
                    "unknown collective `{s}`; use all-reduce, all-gather, reduce-scatter, broadcast, all-to-all or send-recv"
                ))
            })
    }

    /// nccl-tests' bus-bandwidth factor for `n` ranks: busbw = algbw × factor.
    pub fn bus_factor(self, n: u32) -> f64 {
        let n = f64::from(n.max(1));
        match self {
            Collective::AllReduce => 2.0 * (n - 1.0) / n,
            Collective::AllGather | Collective::ReduceScatter | Collective::AllToAll => {
                (n - 1.0) / n
            }
            Collective::Broadcast | Collective::SendRecv => 1.0,
        }
    }

    /// Whether the size is split into one block per rank (so it must be a multiple
    /// of ranks × element size).
    pub fn blocked(self) -> bool {
        matches!(
            self,
            Collective::AllGather | Collective::ReduceScatter | Collective::AllToAll
        )
    }
}

/// Element types exchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommDtype {
    /// IEEE single precision.
    F32,
    /// bfloat16 (reductions in bf16, as NCCL does).
    Bf16,
    /// IEEE half precision.
    F16,
}

impl CommDtype {
    /// Name as written in files.
    pub fn as_str(self) -> &'static str {
        match self {
            CommDtype::F32 => "f32",
            CommDtype::Bf16 => "bf16",
            CommDtype::F16 => "f16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            CommDtype::F32 => 4,
            CommDtype::Bf16 | CommDtype::F16 => 2,
        }
    }

    /// Parse `f32`, `bf16` or `f16`.
    pub fn parse(s: &str) -> Result<CommDtype> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float" | "float32" => Ok(CommDtype::F32),
            "bf16" | "bfloat16" => Ok(CommDtype::Bf16),
            "f16" | "half" | "float16" => Ok(CommDtype::F16),
            _ => Err(BenchError::Usage(format!(
                "unknown dtype `{s}` for comm; use f32, bf16 or f16"
            ))),
        }
    }
}

/// The sizes of a sweep: `min_bytes`, doubling, up to `max_bytes` (inclusive).
pub fn sweep_sizes(min_bytes: u64, max_bytes: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut b = min_bytes.max(1);
    while b <= max_bytes {
        out.push(b);
        match b.checked_mul(2) {
            Some(n) => b = n,
            None => break,
        }
    }
    out
}

/// Elements per rank buffer for `collective` at nominal `bytes`: the count the
/// named size holds, rounded down so blocked collectives split evenly over `ranks`.
/// `None` when not even one element per block fits.
pub fn element_count(
    collective: Collective,
    dtype: CommDtype,
    bytes: u64,
    ranks: u32,
) -> Option<u64> {
    let elems = bytes / dtype.size();
    let count = if collective.blocked() {
        elems / u64::from(ranks.max(1)) * u64::from(ranks.max(1))
    } else {
        elems
    };
    (count > 0 && (!collective.blocked() || count >= u64::from(ranks))).then_some(count)
}

/// One measured (collective, dtype, size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommResult {
    /// Which collective.
    pub collective: Collective,
    /// Element type.
    pub dtype: CommDtype,
    /// Size in bytes (nccl-tests convention; see the module docs).
    pub bytes: u64,
    /// Median seconds per operation (each iteration's time is the slowest rank's).
    pub time_s: f64,
    /// Lower end of the 95% CI of the median, seconds; absent when too few
    /// iterations ran for a 95% order-statistic interval to exist.
    #[serde(default)]
    pub ci95_low_s: Option<f64>,
    /// Upper end of the 95% CI of the median, seconds (absent as above).
    #[serde(default)]
    pub ci95_high_s: Option<f64>,
    /// Algorithm bandwidth, 1e9 bytes/s: bytes / time_s.
    pub algbw_gb_s: f64,
    /// Bus bandwidth, 1e9 bytes/s: algbw × the collective's factor.
    pub busbw_gb_s: f64,
    /// Every rank's output matched the expected values, before and after timing.
    pub verified: bool,
    /// Elements checked on each rank.
    pub checked_elements: u64,
    /// Largest relative error of any checked element on any rank.
    pub max_rel_err: f64,
    /// Warm-up operations before timing.
    pub warmup_iters: u64,
    /// Seconds per operation the way nccl-tests reports time: the same number of
    /// operations run back to back without barriers, one clock around the loop,
    /// divided by the count, averaged over ranks. Absent in files written before
    /// it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_time_s: Option<f64>,
    /// Algorithm bandwidth of the back-to-back loop, 1e9 bytes/s: bytes /
    /// loop_time_s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_algbw_gb_s: Option<f64>,
    /// Bus bandwidth of the back-to-back loop, 1e9 bytes/s (nccl-tests' `busbw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_busbw_gb_s: Option<f64>,
    /// Operations in the back-to-back loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_iters: Option<u64>,
    /// Raw per-operation seconds (slowest rank per iteration), in order.
    pub samples_s: Vec<f64>,
}

/// The α–β fit of one collective: time(bytes) = alpha_s + beta_s_per_byte × bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectiveFit {
    /// Which collective.
    pub collective: Collective,
    /// Element type of the points fitted.
    pub dtype: CommDtype,
    /// Ranks in the group.
    pub ranks: u32,
    /// Link tier the group spans: `intra_node` (every rank on one host) or
    /// `inter_node`.
    pub tier: String,
    /// Latency term, seconds.
    pub alpha_s: f64,
    /// Inverse bandwidth, seconds per byte of the collective's size.
    pub beta_s_per_byte: f64,
    /// Sizes fitted (every verified point of the sweep).
    pub points: usize,
    /// Largest |measured − fitted| / measured over the points.
    pub max_rel_residual: f64,
    /// What was fitted and how.
    pub method: String,
}

/// One rank's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankHost {
    /// MPI rank.
    pub rank: u32,
    /// Host name (MPI processor name).
    pub host: String,
    /// The rank's machine and build.
    pub fingerprint: Fingerprint,
}

/// Settings of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommConfig {
    /// Smallest size, bytes.
    pub min_bytes: u64,
    /// Largest size, bytes.
    pub max_bytes: u64,
    /// Collectives measured.
    pub collectives: Vec<Collective>,
    /// Dtypes measured.
    pub dtypes: Vec<CommDtype>,
    /// Warm-up operations per size.
    pub warmup_iters: u64,
    /// Fewest timed operations per size.
    pub min_iters: u64,
    /// Most timed operations per size.
    pub max_iters: u64,
    /// Target seconds of timed operations per size (the count is derived from the
    /// warm-up and clamped to [min_iters, max_iters]).
    pub time_per_size_s: f64,
    /// Seconds without progress after which a rank gives up on its peers.
    pub timeout_s: f64,
}

/// A whole comm result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommFile {
    /// Schema version, `kind` (always [`COMM_KIND`]), run id, creation time, the
    /// binary (the same on every rank; checked at start), and whether the sweep is
    /// still under way or stopped early, with why.
    #[serde(flatten)]
    pub header: FileHeader,
    /// Ranks in the launch.
    pub ranks: u32,
    /// What moved the data: `mpi` (host memory) or `nccl` (GPU memory).
    #[serde(default)]
    pub backend: String,
    /// The MPI library (its version string).
    pub library: String,
    /// Every rank's host and fingerprint.
    pub hosts: Vec<RankHost>,
    /// Sweep settings.
    pub config: CommConfig,
    /// One entry per (collective, dtype, size), in measuring order.
    pub results: Vec<CommResult>,
    /// α–β fit per (collective, dtype).
    pub fits: Vec<CollectiveFit>,
}

impl CommFile {
    /// The link tier the world group spans.
    pub fn tier(&self) -> &'static str {
        tier_of(self.hosts.iter().map(|h| h.host.as_str()))
    }

    /// Recompute the fits from the verified results.
    pub fn refit(&mut self) {
        let tier = self.tier().to_string();
        let mut keys: Vec<(Collective, CommDtype)> = self
            .results
            .iter()
            .map(|r| (r.collective, r.dtype))
            .collect();
        keys.dedup();
        keys.sort();
        keys.dedup();
        self.fits = keys
            .into_iter()
            .filter_map(|(c, d)| {
                let pts: Vec<(f64, f64)> = self
                    .results
                    .iter()
                    .filter(|r| r.collective == c && r.dtype == d && r.verified)
                    .map(|r| (r.bytes as f64, r.time_s))
                    .collect();
                let f = fit::alpha_beta(&pts)?;
                Some(CollectiveFit {
                    collective: c,
                    dtype: d,
                    ranks: self.ranks,
                    tier: tier.clone(),
                    alpha_s: f.alpha,
                    beta_s_per_byte: f.beta,
                    points: pts.len(),
                    max_rel_residual: f.max_rel_residual,
                    method: fit::METHOD.into(),
                })
            })
            .collect();
    }
}

/// `intra_node` when every rank runs on one host, else `inter_node`.
pub fn tier_of<'a>(mut hosts: impl Iterator<Item = &'a str>) -> &'static str {
    match hosts.next() {
        Some(first) if hosts.all(|h| h == first) => "intra_node",
        Some(_) => "inter_node",
        None => "intra_node",
    }
}

/// A progress bar on stderr, shown only on rank 0 and only when stderr is a terminal.
pub fn progress(root: bool, len: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !(root && std::io::stderr().is_terminal()) {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
    ) {
        pb.set_style(style);
    }
    pb
}

/// Write a comm file atomically (JSON).
pub fn save(file: &CommFile, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(file)
        .map_err(|e| BenchError::Usage(format!("cannot serialise comm results: {e}")))?;
    results::write_atomic(path, &json)
}

/// The `kind` field of a JSON result file: `None` for a profile, `Some("comm")`,
/// `Some("fleet")`. Errors only when the file cannot be read or is not JSON (the
/// readers of each kind then say what else is wrong).
pub fn file_kind(path: &Path) -> Result<Option<String>> {
    let bytes = std::fs::read(path).map_err(|e| BenchError::io(path, e))?;
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(None);
    };
    Ok(value.get("kind").and_then(|k| k.as_str()).map(String::from))
}

/// Read `path` as JSON of the current schema version whose `kind` is `kind` (the
/// reader of comm and fleet files; `what` names such a file in the errors).
pub fn read_kind(path: &Path, kind: &str, what: &str) -> Result<serde_json::Value> {
    let bytes = std::fs::read(path).map_err(|e| BenchError::io(path, e))?;
    let bad = |reason: String| BenchError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("not valid JSON ({e}); was the file truncated?")))?;
    if value.get("kind").and_then(|k| k.as_str()) != Some(kind) {
        return Err(bad(format!("not a {what} (no `\"kind\": \"{kind}\"`)")));
    }
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(results::SCHEMA_VERSION) => Ok(value),
        Some(v) => Err(bad(format!(
            "schema_version {v} is not supported by this flopcal (reads version {})",
            results::SCHEMA_VERSION
        ))),
        None => Err(bad("no `schema_version` field".into())),
    }
}

/// Read and validate a comm file.
pub fn load(path: &Path) -> Result<CommFile> {
    let value = read_kind(path, COMM_KIND, "comm result file")?;
    serde_json::from_value(value).map_err(|e| BenchError::BadFile {
        path: path.to_path_buf(),
        reason: format!("does not match the comm schema: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_factors_are_those_of_nccl_tests() {
        assert_eq!(Collective::AllReduce.bus_factor(2), 1.0);
        assert_eq!(Collective::AllReduce.bus_factor(8), 1.75);
        assert_eq!(Collective::AllGather.bus_factor(4), 0.75);
        assert_eq!(Collective::ReduceScatter.bus_factor(4), 0.75);
        assert_eq!(Collective::Broadcast.bus_factor(8), 1.0);
        assert_eq!(Collective::SendRecv.bus_factor(8), 1.0);
    }

    #[test]
    fn the_default_sweep_runs_from_8_bytes_to_256_mib_doubling() {
        let s = sweep_sizes(8, 256 << 20);
        assert_eq!(s.len(), 26);
        assert_eq!((s[0], s[25]), (8, 256 << 20));
    }

    #[test]
    fn blocked_collectives_round_down_to_whole_blocks() {
        assert_eq!(
            element_count(Collective::AllGather, CommDtype::F32, 8, 2),
            Some(2)
        );
        assert_eq!(
            element_count(Collective::AllGather, CommDtype::F32, 8, 3),
            None
        );
        assert_eq!(
            element_count(Collective::AllGather, CommDtype::Bf16, 16, 3),
            Some(6)
        );
        assert_eq!(
            element_count(Collective::AllReduce, CommDtype::F32, 8, 3),
            Some(2)
        );
    }

    #[test]
    fn collective_names_parse_in_any_spelling() {
        for s in ["all-reduce", "all_reduce", "AllReduce"] {
            assert_eq!(Collective::parse(s).unwrap(), Collective::AllReduce);
        }
        assert!(Collective::parse("gossip")
            .unwrap_err()
            .to_string()
            .contains("gossip"));
    }

    #[test]
    fn one_host_is_intra_node_and_two_are_inter_node() {
        assert_eq!(tier_of(["a", "a"].into_iter()), "intra_node");
        assert_eq!(tier_of(["a", "b"].into_iter()), "inter_node");
    }
}
