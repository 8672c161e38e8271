//! The hardware as the step model sees it: plain numbers per chip (peak FLOP/s of the
//! training dtype, HBM capacity and bandwidth, compute units) and the link tiers of the
//! network. Built from a catalog [`Hardware`] row ([`System::from_hardware`]) or by a
//! caller that measured the numbers (`flopcal validate` on this machine).

use serde::Serialize;

use crate::catalog::Hardware;
use crate::error::ModelError;

/// One tier of the interconnect: a domain of `group_size` devices (0 = unbounded,
/// the scale-out network) in which each device sends `bw` bytes/s one way.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tier {
    /// Name (`nvlink`, `infiniband`, `ici`, ...).
    pub name: String,
    /// Devices in one domain of this tier; 0 = every device (scale-out).
    pub group_size: u32,
    /// Bandwidth per device, one direction, bytes/s.
    pub bw: f64,
    /// Latency per message, seconds.
    pub latency_s: f64,
}

impl Tier {
    /// Whether a group whose members lie within `span` consecutive devices fits in one
    /// domain of this tier.
    pub fn holds(&self, span: u64) -> bool {
        self.group_size == 0 || span <= u64::from(self.group_size)
    }
}

/// One chip type and its network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct System {
    /// Name, for output.
    pub name: String,
    /// Dense peak of the training dtype, FLOP/s per chip.
    pub peak_flops: f64,
    /// Achievable dense GEMM rate of the training dtype, FLOP/s per chip (a measured
    /// ceiling, [`Hardware::gemm_ceiling`]); `None`: the peak.
    pub gemm_ceiling_flops: Option<f64>,
    /// `(peak, achievable)` FLOP/s of the attention core's products where they run in
    /// another precision than the weight GEMMs (FP8 training keeps attention in 16
    /// bits); `None`: as the weight GEMMs.
    pub attention_flops: Option<(f64, f64)>,
    /// Memory per chip, bytes.
    pub memory_bytes: f64,
    /// Memory bandwidth per chip, bytes/s.
    pub hbm_bw: f64,
    /// Streaming multiprocessors / compute units / matrix units per chip (wave
    /// quantisation of the shape model); `None`: not modelled.
    pub compute_units: Option<u32>,
    /// Link tiers, innermost first; the last one should be unbounded.
    pub tiers: Vec<Tier>,
}

/// GiB in bytes.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

impl System {
    /// The step model's view of a catalog row for `dtype` (default: the row's).
    /// Missing memory bandwidth, capacity or link tiers are named in the error: the
    /// step model cannot run without them.
    pub fn from_hardware(hw: &Hardware, dtype: Option<&str>) -> Result<System, ModelError> {
        let need = |field: &str| {
            ModelError::InvalidInput(format!(
                "hardware `{}` has no `{field}`: the performance model needs it (add it in a --catalog file)",
                hw.name
            ))
        };
        let memory = hw.memory_gib.as_ref().ok_or_else(|| need("memory_gib"))?;
        let bw = hw
            .memory_bw_gbs
            .as_ref()
            .ok_or_else(|| need("memory_bw_gbs"))?;
        if hw.links.is_empty() {
            return Err(need("links"));
        }
        let tiers = hw
            .links
            .iter()
            .map(|l| Tier {
                name: l.name.clone(),
                group_size: l.group_size,
                bw: l.bw_gbs.value * 1e9,
                latency_s: l.latency_us.value * 1e-6,
            })
            .collect();
        let want = hw.dtype_or_default(dtype);
        let attention_flops = if want.starts_with("fp8") || want.starts_with("mxfp8") {
            let sixteen = hw
                .peak_tflops
                .iter()
                .find(|p| {
                    p.dtype.eq_ignore_ascii_case("bf16") || p.dtype.eq_ignore_ascii_case("fp16")
                })
                .map(|p| p.dtype.clone());
            match sixteen {
                Some(d) => Some((hw.peak_flops(Some(&d))?, hw.gemm_ceiling(Some(&d))?.0)),
                None => None,
            }
        } else {
            None
        };
        let s = System {
            name: hw.name.clone(),
            peak_flops: hw.peak_flops(dtype)?,
            gemm_ceiling_flops: Some(hw.gemm_ceiling(dtype)?.0),
            attention_flops,
            memory_bytes: memory.value * GIB,
            hbm_bw: bw.value * 1e9,
            compute_units: hw.compute_units.as_ref().map(|c| c.value.round() as u32),
            tiers,
        };
        s.check()?;
        Ok(s)
    }

    /// Achievable fraction of the peak for a large, well-shaped GEMM (the measured
    /// ceiling over the peak; 1 without a ceiling).
    pub fn ceiling_fraction(&self) -> f64 {
        self.gemm_ceiling_flops
            .map_or(1.0, |c| (c / self.peak_flops).clamp(f64::MIN_POSITIVE, 1.0))
    }

    /// Whether the weight GEMMs run in FP8 (the attention core then keeps its own,
    /// 16-bit rate).
    pub fn fp8_gemms(&self) -> bool {
        self.attention_flops.is_some()
    }

    /// Every number positive and finite; one line naming the field otherwise.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |field: String, v: f64| {
            ModelError::InvalidInput(format!(
                "hardware `{}`: `{field}` must be a positive number (got {v})",
                self.name
            ))
        };
        for (field, v) in [
            ("peak_tflops", self.peak_flops),
            ("memory_gib", self.memory_bytes),
            ("memory_bw_gbs", self.hbm_bw),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(field.into(), v));
            }
        }
        if self.compute_units == Some(0) {
            return Err(bad("compute_units".into(), 0.0));
        }
        if self.tiers.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "hardware `{}`: `links` needs at least one tier",
                self.name
            )));
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if !(t.bw.is_finite() && t.bw > 0.0) {
                return Err(bad(format!("links[{i}].bw_gbs"), t.bw));
            }
            if !(t.latency_s.is_finite() && t.latency_s >= 0.0) {
                return Err(ModelError::InvalidInput(format!(
                    "hardware `{}`: `links[{i}].latency_us` must be a number >= 0 (got {})",
                    self.name, t.latency_s
                )));
            }
            if i + 1 < self.tiers.len() && t.group_size == 0 {
                return Err(ModelError::InvalidInput(format!(
                    "hardware `{}`: `links[{i}].group_size` is 0 (unbounded) but is not the last tier",
                    self.name
                )));
            }
            if i > 0 {
                let prev = self.tiers[i - 1].group_size;
                if t.group_size != 0 && t.group_size <= prev {
                    return Err(ModelError::InvalidInput(format!(
                        "hardware `{}`: `links[{i}].group_size` {} must exceed the tier inside it ({prev})",
                        self.name, t.group_size
                    )));
                }
            }
        }
        Ok(())
    }

    /// The innermost tier holding a group that spans `span` consecutive devices (the
    /// outermost tier when none does).
    pub fn tier_for(&self, span: u64) -> &Tier {
        self.tiers
            .iter()
            .find(|t| t.holds(span))
            .unwrap_or_else(|| &self.tiers[self.tiers.len() - 1])
    }

    /// Devices in the scale-up domain (the first tier); tensor parallelism stays in it.
    pub fn scale_up(&self) -> u64 {
        match self.tiers.first().map(|t| t.group_size) {
            Some(0) | None => u64::MAX,
            Some(g) => u64::from(g),
        }
    }
}
