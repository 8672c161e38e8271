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
            let entry = MeasuredCollective {
                collective,
                ranks,
                alpha_s,
                beta_s_per_byte: beta,
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
}
