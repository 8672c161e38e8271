//! A measured interconnect: the α–β fit per collective from a `flopcal comm` result
//! file, for the performance model to use in place of the catalog's link figures.
//!
//! `time_s(collective, bytes) = alpha_s + beta_s_per_byte × bytes`, where `bytes` is
//! the collective's size in the nccl-tests convention (all-reduce and broadcast: the
//! buffer; all-gather: the gathered output; reduce-scatter: the input before
//! scattering; all-to-all: one rank's whole buffer; send/recv: the message). The time
//! is measured end to end, so the algorithm's factor (2(k−1)/k for a ring
//! all-reduce, ...) is already in it: do not apply it again. The fit holds for the
//! group size it was measured at (`ranks`) and the link tier that group spans.

use serde::Deserialize;

use crate::collective::RingCollective;
use crate::system::System;
use crate::ModelError;

/// One collective's measured α–β line.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredCollective {
    /// `all_reduce`, `all_gather`, `reduce_scatter`, `broadcast`, `all_to_all` or
    /// `send_recv`.
    pub collective: String,
    /// Ranks in the measured group.
    pub ranks: u32,
    /// Latency, seconds (≥ 0).
    pub alpha_s: f64,
    /// Seconds per byte of the collective's size (> 0).
    pub beta_s_per_byte: f64,
    /// Link tier the measured group spanned: `intra_node` or `inter_node`.
    pub tier: String,
}

/// The measured collectives of one `flopcal comm` run.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredNetwork {
    /// One entry per collective (from the f32 fit when the file has several dtypes).
    pub collectives: Vec<MeasuredCollective>,
}

#[derive(Deserialize)]
struct RawFile {
    kind: Option<String>,
    ranks: Option<u32>,
    fits: Option<Vec<RawFit>>,
}

#[derive(Deserialize)]
struct RawFit {
    collective: Option<String>,
    dtype: Option<String>,
    ranks: Option<u32>,
    alpha_s: Option<f64>,
    beta_s_per_byte: Option<f64>,
    tier: Option<String>,
}

/// `all-reduce`, `AllReduce` and `all_reduce` name the same collective.
fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl MeasuredNetwork {
    /// Parse and validate the JSON of a `flopcal comm --out` file. Errors name the
    /// offending field (`fits[2].beta_s_per_byte`).
    pub fn from_json_str(text: &str) -> Result<MeasuredNetwork, ModelError> {
        let bad = |field: &str, reason: &str| {
            ModelError::InvalidInput(format!("comm file: field `{field}`: {reason}"))
        };
        let raw: RawFile = serde_json::from_str(text).map_err(|e| {
            ModelError::InvalidInput(format!(
                "comm file: not valid JSON of a flopcal comm result ({e})"
            ))
        })?;
        match raw.kind.as_deref() {
            Some("comm") => {}
            Some(k) => {
                return Err(bad(
                    "kind",
                    &format!("is `{k}`, expected `comm` (a `flopcal comm --out` file)"),
                ))
            }
            None => return Err(bad("kind", "missing; not a `flopcal comm --out` file")),
        }
        let file_ranks = raw.ranks.ok_or_else(|| bad("ranks", "missing"))?;
        let fits = raw.fits.ok_or_else(|| bad("fits", "missing"))?;
        let mut collectives: Vec<(MeasuredCollective, bool)> = Vec::new();
        for (i, f) in fits.iter().enumerate() {
            let field = |name: &str| format!("fits[{i}].{name}");
            let collective = f
                .collective
                .clone()
                .filter(|c| !c.trim().is_empty())
                .ok_or_else(|| bad(&field("collective"), "missing"))?;
            let alpha_s = f.alpha_s.ok_or_else(|| bad(&field("alpha_s"), "missing"))?;
            if !(alpha_s.is_finite() && alpha_s >= 0.0) {
                return Err(bad(
                    &field("alpha_s"),
                    &format!("{alpha_s}: latency must be a finite number of seconds >= 0"),
                ));
            }
            let beta = f
                .beta_s_per_byte
                .ok_or_else(|| bad(&field("beta_s_per_byte"), "missing"))?;
            if !(beta.is_finite() && beta > 0.0) {
                return Err(bad(
                    &field("beta_s_per_byte"),
                    &format!("{beta}: zero, negative or infinite bandwidth; must be seconds per byte > 0"),
                ));
            }
            let ranks = f.ranks.unwrap_or(file_ranks);
            if ranks == 0 {
                return Err(bad(&field("ranks"), "must be at least 1"));
            }
            let is_f32 = f.dtype.as_deref().is_none_or(|d| d == "f32");
            let tier = f.tier.clone().unwrap_or_else(|| "intra_node".into());
            if tier != "intra_node" && tier != "inter_node" {
                return Err(bad(
                    &field("tier"),
                    &format!("is `{tier}`, expected `intra_node` or `inter_node`"),
                ));
            }
            let entry = MeasuredCollective {
                collective,
                ranks,
                alpha_s,
                beta_s_per_byte: beta,
                tier,
            };
            let key = normalise(&entry.collective);
            match collectives
                .iter_mut()
                .find(|(c, _)| normalise(&c.collective) == key && c.ranks == ranks)
            {
                Some(slot) if is_f32 && !slot.1 => *slot = (entry, true),
                Some(_) => {}
                None => collectives.push((entry, is_f32)),
            }
        }
        if collectives.is_empty() {
            return Err(bad(
                "fits",
                "empty; the comm run fitted no collective (were all results unverified?)",
            ));
        }
        Ok(MeasuredNetwork {
            collectives: collectives.into_iter().map(|(c, _)| c).collect(),
        })
    }

    /// The measured line of `collective` (any spelling: `all-reduce`, `all_reduce`).
    pub fn collective(&self, collective: &str) -> Option<&MeasuredCollective> {
        let key = normalise(collective);
        self.collectives
            .iter()
            .find(|c| normalise(&c.collective) == key)
    }

    /// Predicted seconds for one `collective` of `bytes` (nccl-tests size convention)
    /// over the measured group; `None` when the file did not measure it.
    pub fn time_s(&self, collective: &str, bytes: f64) -> Option<f64> {
        self.collective(collective)
            .map(|c| c.alpha_s + c.beta_s_per_byte * bytes.max(0.0))
    }
}

/// The collectives the step model times, by the names a comm file uses.
pub const STEP_MODEL_COLLECTIVES: [(RingCollective, &str); 5] = [
    (RingCollective::AllReduce, "all_reduce"),
    (RingCollective::AllGather, "all_gather"),
    (RingCollective::ReduceScatter, "reduce_scatter"),
    (RingCollective::AllToAll, "all_to_all"),
    (RingCollective::SendRecv, "send_recv"),
];

fn file_name(op: RingCollective) -> &'static str {
    STEP_MODEL_COLLECTIVES
        .iter()
        .find(|(c, _)| *c == op)
        .map_or("", |(_, n)| n)
}

/// A measured network standing in for one link tier of a [`System`]: the tier the
/// comm run's group spanned (`intra_node`: the first, scale-up tier; `inter_node`:
/// the last, scale-out tier).
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredLinks {
    /// Name of the system tier the measurement replaces.
    pub tier: String,
    /// The measured lines.
    pub net: MeasuredNetwork,
    /// Where they came from (the file), for output.
    pub source: String,
}

impl MeasuredLinks {
    /// Put `net` (read from `source`) in place of the tier of `sys` its group spanned.
    /// Refused, naming what is wrong: a group of fewer than 2 ranks (it measured no
    /// link), fits from both tiers, or a collective the step model times missing.
    pub fn new(
        net: MeasuredNetwork,
        sys: &System,
        source: &str,
    ) -> Result<MeasuredLinks, ModelError> {
        let bad = |why: String| ModelError::InvalidInput(format!("comm file {source}: {why}"));
        for (_, name) in STEP_MODEL_COLLECTIVES {
            if net.collective(name).is_none() {
                return Err(bad(format!(
                    "no fit for `{name}`; the performance model needs {} (run `flopcal comm` with every collective)",
                    STEP_MODEL_COLLECTIVES.map(|(_, n)| n).join(", ")
                )));
            }
        }
        if let Some(c) = net.collectives.iter().find(|c| c.ranks < 2) {
            return Err(bad(format!(
                "`{}` was measured over {} rank: a single rank measures no link (launch with 2 or more ranks)",
                c.collective, c.ranks
            )));
        }
        let tier = net.collectives[0].tier.clone();
        if net.collectives.iter().any(|c| c.tier != tier) {
            return Err(bad(
                "fits from both intra_node and inter_node groups; give one tier's measurement"
                    .into(),
            ));
        }
        let at = if tier == "inter_node" {
            sys.tiers.len().saturating_sub(1)
        } else {
            0
        };
        let name = sys
            .tiers
            .get(at)
            .map(|t| t.name.clone())
            .ok_or_else(|| bad(format!("hardware `{}` has no link tier", sys.name)))?;
        Ok(MeasuredLinks {
            tier: name,
            net,
            source: source.to_string(),
        })
    }

    /// Seconds for `op` of `n_bytes` over `k` devices on tier `tier`, from the measured
    /// line; `None` for another tier. At the measured group size this is the measured
    /// `α + β·n` as it is (its algorithm factor included, not applied again); for another
    /// group size `k` the line is rescaled by the ring algorithm's factors
    /// ([`Collective::factors`]): latency by the steps, `steps(k)/steps(ranks)`, and
    /// bytes by the bus-bandwidth factor, `factor(k)/factor(ranks)` (bus bandwidth, the
    /// nccl-tests figure that does not depend on the group size, held fixed).
    pub fn time_s(&self, tier: &str, op: RingCollective, n_bytes: f64, k: u64) -> Option<f64> {
        if tier != self.tier {
            return None;
        }
        if k <= 1 && op != RingCollective::SendRecv {
            return Some(0.0);
        }
        let c = self.net.collective(file_name(op))?;
        let (fk, sk) = op.factors(k);
        let (fm, sm) = op.factors(u64::from(c.ranks));
        Some(c.alpha_s * sk / sm + c.beta_s_per_byte * n_bytes.max(0.0) * fk / fm)
    }

    /// One line for output: which tier's figures came from the file.
    pub fn describe(&self, sys: &System) -> String {
        let c = &self.net.collectives[0];
        let others: Vec<&str> = sys
            .tiers
            .iter()
            .filter(|t| t.name != self.tier)
            .map(|t| t.name.as_str())
            .collect();
        format!(
            "link tier `{}` from {}: measured alpha-beta of {} over {} ranks ({}), used as measured (no link efficiency applied) and rescaled to each group size by the ring factors{}",
            self.tier,
            self.source,
            STEP_MODEL_COLLECTIVES.map(|(_, n)| n).join(", "),
            c.ranks,
            c.tier,
            if others.is_empty() {
                String::new()
            } else {
                format!("; {} from the catalog", others.join(", "))
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(fits: &str) -> String {
        format!(
            r#"{{"schema_version": 1, "kind": "comm", "ranks": 2, "results": [], "fits": [{fits}]}}"#
        )
    }

    #[test]
    fn a_comm_file_predicts_alpha_plus_beta_times_bytes() {
        let n = MeasuredNetwork::from_json_str(&file(
            r#"{"collective": "all_reduce", "dtype": "bf16", "ranks": 2, "alpha_s": 1e-5, "beta_s_per_byte": 1e-9},
               {"collective": "all_reduce", "dtype": "f32", "ranks": 2, "alpha_s": 2e-6, "beta_s_per_byte": 2.5e-10}"#,
        ))
        .unwrap();
        assert_eq!(
            n.collectives.len(),
            1,
            "one entry per collective, the f32 fit"
        );
        let t = n.time_s("all-reduce", 4e9).unwrap();
        assert!((t - (2e-6 + 1.0)).abs() < 1e-12, "{t}");
        assert_eq!(n.time_s("all_gather", 8.0), None);
    }

    #[test]
    fn zero_or_negative_bandwidth_is_refused_naming_the_field() {
        for beta in ["0", "-1e-9"] {
            let e = MeasuredNetwork::from_json_str(&file(&format!(
                r#"{{"collective": "all_reduce", "alpha_s": 1e-6, "beta_s_per_byte": {beta}}}"#
            )))
            .unwrap_err()
            .to_string();
            assert!(e.contains("fits[0].beta_s_per_byte"), "{e}");
        }
        let e = MeasuredNetwork::from_json_str(&file(
            r#"{"collective": "x", "alpha_s": -1, "beta_s_per_byte": 1e-9}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("fits[0].alpha_s"), "{e}");
    }

    #[test]
    fn malformed_or_foreign_files_are_refused_with_the_reason() {
        assert!(MeasuredNetwork::from_json_str("{")
            .unwrap_err()
            .to_string()
            .contains("not valid JSON"));
        let e = MeasuredNetwork::from_json_str(r#"{"schema_version": 1, "benchmarks": []}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kind`"), "{e}");
        let e =
            MeasuredNetwork::from_json_str(&file(r#"{"alpha_s": 1e-6, "beta_s_per_byte": 1e-9}"#))
                .unwrap_err()
                .to_string();
        assert!(e.contains("fits[0].collective"), "{e}");
        let e = MeasuredNetwork::from_json_str(&file(""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`fits`"), "{e}");
    }

    fn net(ranks: u32) -> MeasuredNetwork {
        let fits: Vec<String> = STEP_MODEL_COLLECTIVES
            .iter()
            .map(|(_, n)| {
                format!(
                    r#"{{"collective": "{n}", "dtype": "f32", "ranks": {ranks}, "tier": "intra_node", "alpha_s": 2e-6, "beta_s_per_byte": 1e-10}}"#
                )
            })
            .collect();
        MeasuredNetwork::from_json_str(&file(&fits.join(","))).unwrap()
    }

    fn links(ranks: u32) -> MeasuredLinks {
        let sys = unit_system(vec![
            crate::system::Tier {
                name: "nvlink".into(),
                group_size: 8,
                bw: 1e11,
                latency_s: 0.0,
            },
            crate::system::Tier {
                name: "ib".into(),
                group_size: 0,
                bw: 1e10,
                latency_s: 0.0,
            },
        ]);
        MeasuredLinks::new(net(ranks), &sys, "f.json").unwrap()
    }

    /// A system whose only figures that matter are its link `tiers`.
    fn unit_system(tiers: Vec<crate::system::Tier>) -> System {
        System {
            name: "s".into(),
            peak_flops: 1.0,
            gemm_ceiling_flops: None,
            attention_flops: None,
            memory_bytes: 1.0,
            hbm_bw: 1.0,
            compute_units: None,
            tiers,
        }
    }

    #[test]
    fn at_the_measured_group_size_the_measured_time_is_used_as_is() {
        let l = links(2);
        assert_eq!(
            l.tier, "nvlink",
            "an intra-node group replaces the first tier"
        );
        let t = l
            .time_s("nvlink", RingCollective::AllReduce, 1e9, 2)
            .unwrap();
        assert!(
            (t - (2e-6 + 0.1)).abs() < 1e-12,
            "{t}: no second algorithm factor"
        );
        assert_eq!(l.time_s("ib", RingCollective::AllReduce, 1e9, 2), None);
    }

    #[test]
    fn another_group_size_rescales_by_the_ring_factors() {
        let l = links(2);
        // All-reduce over 8: bus factor 2·7/8 = 1.75 vs 1 at 2 ranks; steps 14 vs 2.
        let t = l
            .time_s("nvlink", RingCollective::AllReduce, 1e9, 8)
            .unwrap();
        assert!((t - (2e-6 * 7.0 + 0.1 * 1.75)).abs() < 1e-12, "{t}");
        let s = l
            .time_s("nvlink", RingCollective::SendRecv, 1e9, 2)
            .unwrap();
        assert!((s - (2e-6 + 0.1)).abs() < 1e-12, "{s}");
    }

    #[test]
    fn a_file_without_a_collective_the_model_times_is_refused_naming_it() {
        let only_ar = MeasuredNetwork::from_json_str(&file(
            r#"{"collective": "all_reduce", "ranks": 2, "alpha_s": 1e-6, "beta_s_per_byte": 1e-9}"#,
        ))
        .unwrap();
        let sys = unit_system(vec![]);
        let e = MeasuredLinks::new(only_ar, &sys, "f.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no fit for `all_gather`"), "{e}");
        let e = MeasuredLinks::new(net(1), &sys, "f.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("single rank"), "{e}");
    }
}
