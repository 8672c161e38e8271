//! Catalog hardware: peaks per dtype, memory, links, power and dated prices, each
//! figure with its source, and the rules that derive the figures no source states.

use serde::{Deserialize, Serialize};

use super::gemm_table::{parse_gemm_table, GemmTable, GEMM_TABLES};
use super::norm;
use crate::error::ModelError;

/// A number with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// The value, in the unit the field name states.
    pub value: f64,
    /// Where it comes from (document, table, page; or "flopcal assumption: ...").
    pub source: String,
    /// When the source published it (YYYY-MM).
    pub date: String,
}

/// Prefix of the source of a figure that no public source states.
pub const ASSUMPTION: &str = "flopcal assumption";

impl Figure {
    /// Whether no public source states this figure (its source says "flopcal assumption").
    pub fn is_assumption(&self) -> bool {
        self.source.trim_start().starts_with(ASSUMPTION)
    }
}

/// One tier of the interconnect, as seen by one device: the devices it reaches at this
/// tier's bandwidth (an NVLink domain of 8 GPUs, a TPU slice) and the bandwidth and
/// latency of one transfer. The step model puts a collective on the smallest tier whose
/// group holds all the collective's devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTier {
    /// `nvlink`, `infiniband`, `ici`, `dcn`, ...
    pub name: String,
    /// Devices in this tier's domain; 0 = unbounded (scale-out network).
    pub group_size: u32,
    /// Bandwidth per device, one direction, GB/s (10⁹ bytes per second).
    pub bw_gbs: Figure,
    /// Latency of one message, µs.
    pub latency_us: Figure,
}

/// Kind of a cloud price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriceKind {
    /// On-demand (list) price.
    OnDemand,
    /// Spot / preemptible price (varies; the row's date says when).
    Spot,
    /// One-year committed use / reservation / savings plan.
    #[serde(rename = "committed-1y")]
    Committed1y,
    /// Three-year committed use.
    #[serde(rename = "committed-3y")]
    Committed3y,
}

impl PriceKind {
    /// Name as in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            PriceKind::OnDemand => "on-demand",
            PriceKind::Spot => "spot",
            PriceKind::Committed1y => "committed-1y",
            PriceKind::Committed3y => "committed-3y",
        }
    }
}

/// One published cloud price: what the provider charges for an instance (or a chip),
/// and how many chips that buys; the per-chip price is computed from the two.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Provider, lower case: `aws`, `gcp`, `azure`, `oci`, `lambda`, ...
    pub provider: String,
    /// Kind of price.
    pub kind: PriceKind,
    /// Instance type (or `per chip`) and region.
    pub instance: String,
    /// USD per hour of the instance as published.
    pub usd_per_hour: f64,
    /// Chips in the instance.
    pub chips: u32,
    /// The pricing page (or paper) and what it says.
    pub source: String,
    /// When (YYYY-MM).
    pub date: String,
}

impl Price {
    /// USD per chip-hour: `usd_per_hour / chips`.
    pub fn per_chip_hour(&self) -> f64 {
        self.usd_per_hour / f64::from(self.chips.max(1))
    }
}

/// Dense peak throughput for one data type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeakFigure {
    /// Data type, e.g. `bf16`, `fp16`, `fp32`, `tf32`.
    pub dtype: String,
    /// TFLOP/s per chip.
    pub value: f64,
    /// Where it comes from.
    pub source: String,
    /// When (YYYY-MM).
    pub date: String,
}

/// One accelerator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Canonical name, e.g. `tpu-v3`.
    pub name: String,
    /// Other accepted names.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Why fewer than two clouds are priced, when that is so: who rents it (Cloud TPUs:
    /// only Google Cloud), or that no cloud publishes a price (MI250X, Gaudi).
    #[serde(default)]
    pub cloud: Option<String>,
    /// Hardware class / era for the system-efficiency fit, e.g. `tpu-2018`.
    pub class: String,
    /// Chips per priced device (a 2019 Cloud TPU device = 4 chips; a GPU = 1).
    pub chips_per_device: u32,
    /// Cores per chip (TPU v2/v3: 2).
    pub cores_per_chip: u32,
    /// Data type used when none is given.
    pub default_dtype: String,
    /// Dense peak per chip, per data type.
    pub peak_tflops: Vec<PeakFigure>,
    /// Achievable dense matmul rate per chip, per data type, as a cited benchmark
    /// measured it ([`Hardware::gemm_ceiling`]).
    #[serde(default)]
    pub gemm_ceiling_tflops: Vec<PeakFigure>,
    /// Memory per chip, GiB.
    #[serde(default)]
    pub memory_gib: Option<Figure>,
    /// Thermal design power per chip, W.
    #[serde(default)]
    pub tdp_w: Option<Figure>,
    /// On-demand (list) price, USD per device-hour.
    #[serde(default)]
    pub price_on_demand: Option<Figure>,
    /// Preemptible / spot price, USD per device-hour.
    #[serde(default)]
    pub price_preemptible: Option<Figure>,
    /// Reference kernel efficiency (achieved / peak on the kernel suite), in (0, 1];
    /// an assumption of the MFU model that the step model replaces (issue 12).
    #[serde(default)]
    pub kernel_efficiency: Option<Figure>,
    /// HBM bandwidth per chip, GB/s.
    #[serde(default)]
    pub memory_bw_gbs: Option<Figure>,
    /// Compute units per chip: SMs (NVIDIA), CUs (AMD), MMEs+TPCs (Gaudi) or
    /// TensorCores×MXUs (TPU), for the wave-quantisation model.
    #[serde(default)]
    pub compute_units: Option<Figure>,
    /// Interconnect tiers, innermost first.
    #[serde(default)]
    pub links: Vec<LinkTier>,
    /// Every published cloud price, all providers; `price_on_demand`,
    /// `price_preemptible` and `price_committed` are chosen from these
    /// ([`Catalog::select_price_source`]) when a row does not set them.
    #[serde(default)]
    pub prices: Vec<Price>,
    /// Committed-use (1-year) cloud price, USD per device-hour.
    #[serde(default)]
    pub price_committed: Option<Figure>,
    /// On-prem purchase price, USD per device, including its share of the server.
    #[serde(default)]
    pub purchase_price: Option<Figure>,
    /// On-prem depreciation lifetime, years.
    #[serde(default)]
    pub lifetime_years: Option<Figure>,
    /// On-prem operations overhead (support, admin, space), USD per device per year.
    /// When absent it is derived: `purchase_price × ops_fraction_per_year` ([`Rules`]).
    #[serde(default)]
    pub ops_per_year: Option<Figure>,
    /// Fields of this row that were computed from others (prices chosen from
    /// `prices`, committed price and ops overhead by a [`Rules`] factor), not typed in.
    #[serde(skip)]
    pub derived: Vec<String>,
    /// For a GPU without a measured ceiling: per dtype, the median ceiling ÷ peak of the
    /// catalog's GPUs that have one, with the rows it rests on
    /// ([`crate::catalog::Catalog`] fills it after every merge).
    #[serde(skip)]
    pub peer_ceilings: Vec<PeerCeiling>,
}

/// The achievable share of peak that measured GPUs reach, for a GPU that has no
/// measurement of its own ([`Hardware::gemm_ceiling`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerCeiling {
    /// Data type, lower case.
    pub dtype: String,
    /// Median of the measured rows' ceiling ÷ peak.
    pub ratio: f64,
    /// The rows and their ratios, e.g. `a100-80gb 86.9%, h100-sxm 80.3%`.
    pub rows: String,
}

/// For every GPU row lacking a measured ceiling for a dtype it has a peak for, the
/// median ceiling ÷ peak of the GPU rows that have one for that dtype. A datasheet
/// peak is what no GPU's matmul reaches (the measured rows reach 51–97% of theirs),
/// and the step model's fitted factors are fractions of the *achievable* rate, so a
/// GPU priced at its peak would be priced faster than any measured GPU relative to
/// its datasheet. TPUs keep their peak: their stacks' factors are fitted against it.
pub fn fill_peer_ceilings(hardware: &mut [Hardware]) {
    let dtypes: Vec<String> = {
        let mut d: Vec<String> = hardware
            .iter()
            .flat_map(|h| h.peak_tflops.iter().map(|p| p.dtype.to_ascii_lowercase()))
            .collect();
        d.sort();
        d.dedup();
        d
    };
    let mut peers: Vec<PeerCeiling> = Vec::new();
    for dtype in dtypes {
        let mut measured: Vec<(String, f64)> = hardware
            .iter()
            .filter(|h| h.is_gpu())
            .filter_map(|h| {
                h.measured_ceiling_ratio(&dtype)
                    .map(|r| (h.name.clone(), r))
            })
            .collect();
        let mut ratios: Vec<f64> = measured.iter().map(|m| m.1).collect();
        let Some(ratio) = crate::stats::median(&mut ratios) else {
            continue;
        };
        measured.sort_by(|a, b| a.1.total_cmp(&b.1));
        let rows = measured
            .iter()
            .map(|(name, r)| format!("{name} {:.1}%", r * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        peers.push(PeerCeiling { dtype, ratio, rows });
    }
    for h in hardware.iter_mut() {
        h.peer_ceilings = if h.is_gpu() {
            peers
                .iter()
                .filter(|p| h.measured_ceiling_ratio(&p.dtype).is_none())
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
    }
}

/// The factors of the derived figures, each with its source: the catalog computes a
/// figure from its inputs and these, and states the rule in the figure's source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Discount of a 1-year commitment off on-demand, for hardware whose provider
    /// publishes no committed price: `committed = on-demand × (1 − discount)`.
    pub committed_discount_1y: Figure,
    /// Yearly operations overhead as a fraction of the purchase price:
    /// `ops_per_year = purchase_price × fraction`.
    pub ops_fraction_per_year: Figure,
}

/// How a published run counted its hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Chips (a GPU is one chip).
    Chip,
    /// Cores (TPU v2/v3 have 2 per chip).
    Core,
    /// Priced devices (a 2019 Cloud TPU device = 4 chips).
    Device,
}

impl Unit {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Chip => "chip",
            Unit::Core => "core",
            Unit::Device => "device",
        }
    }
}

impl Hardware {
    /// Peak FLOP/s per chip for `dtype` (or the default dtype).
    pub fn peak_flops(&self, dtype: Option<&str>) -> Result<f64, ModelError> {
        let want = dtype.unwrap_or(&self.default_dtype).to_ascii_lowercase();
        self.peak_tflops
            .iter()
            .find(|p| p.dtype.eq_ignore_ascii_case(&want))
            .map(|p| p.value * 1e12)
            .ok_or_else(|| {
                let have: Vec<&str> = self.peak_tflops.iter().map(|p| p.dtype.as_str()).collect();
                ModelError::InvalidInput(format!(
                    "hardware `{}` has no peak for dtype `{want}` (known: {})",
                    self.name,
                    have.join(", ")
                ))
            })
    }

    /// Whether this row is a GPU (its class names a GPU generation).
    pub fn is_gpu(&self) -> bool {
        self.class.starts_with("gpu-")
    }

    /// Measured ceiling ÷ peak for `dtype`, when the row has a cited ceiling for it.
    pub fn measured_ceiling_ratio(&self, dtype: &str) -> Option<f64> {
        let c = self
            .gemm_ceiling_tflops
            .iter()
            .find(|c| c.dtype.eq_ignore_ascii_case(dtype))?;
        let peak = self.peak_flops(Some(dtype)).ok()?;
        Some((c.value * 1e12 / peak).min(1.0))
    }

    /// The dtype that `dtype` resolves to.
    /// The achievable dense GEMM rate for `dtype`, FLOP/s per chip, and where it comes
    /// from: the cited measured ceiling; else the best rate of the reference GEMM table;
    /// else, for a GPU, the median share of peak of the GPUs that have a measured one
    /// ([`fill_peer_ceilings`]); else the datasheet peak (no measured ceiling, said
    /// so). Never above the peak.
    pub fn gemm_ceiling(&self, dtype: Option<&str>) -> Result<(f64, String), ModelError> {
        let peak = self.peak_flops(dtype)?;
        let want = self.dtype_or_default(dtype);
        if let Some(c) = self
            .gemm_ceiling_tflops
            .iter()
            .find(|c| c.dtype.eq_ignore_ascii_case(&want))
        {
            return Ok((
                (c.value * 1e12).min(peak),
                format!(
                    "achievable {want} GEMM {:.0} of {:.0} TFLOP/s: {} ({})",
                    c.value,
                    peak / 1e12,
                    c.source,
                    c.date
                ),
            ));
        }
        let table_best = self.reference_gemm().and_then(|t| {
            t.points
                .iter()
                .filter(|p| p.dtype.eq_ignore_ascii_case(&want))
                .map(|p| p.flops)
                .reduce(f64::max)
                .map(|f| (f, t.source.clone()))
        });
        if let Some((f, src)) = table_best {
            return Ok((
                f.min(peak),
                format!(
                    "achievable {want} GEMM {:.0} of {:.0} TFLOP/s: the best rate of the reference GEMM table ({src})",
                    f / 1e12,
                    peak / 1e12
                ),
            ));
        }
        if let Some(p) = self.peer_ceilings.iter().find(|p| p.dtype == want) {
            return Ok((
                p.ratio * peak,
                format!(
                    "no measured {want} GEMM ceiling for {}: {:.1}% of its {:.0} TFLOP/s peak, the median share of peak that the catalog's measured GPUs reach ({}; a `flopcal peak` or profile of the device would measure its own)",
                    self.name,
                    p.ratio * 100.0,
                    peak / 1e12,
                    p.rows
                ),
            ));
        }
        Ok((
            peak,
            format!(
                "no measured {want} GEMM ceiling for {}: the datasheet peak {:.0} TFLOP/s bounds GEMMs (a `flopcal peak` or profile of the device would measure it)",
                self.name,
                peak / 1e12
            ),
        ))
    }

    /// The training dtype, lower case (the hardware's default when none is given).
    pub fn dtype_or_default(&self, dtype: Option<&str>) -> String {
        dtype.unwrap_or(&self.default_dtype).to_ascii_lowercase()
    }

    /// Price per chip-hour (on demand, or preemptible), if the catalog has one.
    pub fn price_per_chip_hour(&self, preemptible: bool) -> Option<f64> {
        let fig = if preemptible {
            self.price_preemptible.as_ref()
        } else {
            self.price_on_demand.as_ref()
        };
        fig.map(|f| f.value / f64::from(self.chips_per_device))
    }

    /// The catalog's kernel efficiency, 1 where the row has none (transitional: the
    /// MFU model that reads it is being replaced by the step model, issue 12).
    pub fn kernel_efficiency_value(&self) -> f64 {
        self.kernel_efficiency.as_ref().map_or(1.0, |f| f.value)
    }

    /// Every figure of this row whose source is a flopcal assumption, by field name.
    pub fn assumptions(&self) -> Vec<(String, &Figure)> {
        let mut out: Vec<(String, &Figure)> = [
            ("memory_gib", &self.memory_gib),
            ("memory_bw_gbs", &self.memory_bw_gbs),
            ("compute_units", &self.compute_units),
            ("tdp_w", &self.tdp_w),
            ("kernel_efficiency", &self.kernel_efficiency),
            ("price_on_demand", &self.price_on_demand),
            ("price_preemptible", &self.price_preemptible),
            ("price_committed", &self.price_committed),
            ("purchase_price", &self.purchase_price),
            ("lifetime_years", &self.lifetime_years),
            ("ops_per_year", &self.ops_per_year),
        ]
        .into_iter()
        .filter_map(|(k, f)| f.as_ref().map(|f| (k.to_string(), f)))
        .collect();
        for l in &self.links {
            out.push((format!("links.{}.bw_gbs", l.name), &l.bw_gbs));
            out.push((format!("links.{}.latency_us", l.name), &l.latency_us));
        }
        out.retain(|(_, f)| f.is_assumption());
        out
    }

    /// The measured reference GEMM table shipped for this hardware, if one is
    /// published (OpenXLA's for B200 and MI300X).
    pub fn reference_gemm(&self) -> Option<GemmTable> {
        GEMM_TABLES
            .iter()
            .find(|(name, _)| *name == self.name)
            .map(|(name, text)| {
                // The embedded tables are checked by the unit tests.
                parse_gemm_table(&format!("<embedded>/gemm/{name}.csv"), text)
                    .expect("embedded GEMM table is valid")
            })
    }

    /// The providers with a published price for this hardware, in catalog order.
    pub fn price_providers(&self) -> Vec<&str> {
        let mut v: Vec<&str> = vec![];
        for p in &self.prices {
            if !v.contains(&p.provider.as_str()) {
                v.push(&p.provider);
            }
        }
        v
    }

    /// The newest published price of `kind` from `provider` (from the first provider
    /// listed with such a price when `None`); of prices with the same date, the first
    /// listed. Older prices stay in `prices` as history.
    pub fn price(&self, kind: PriceKind, provider: Option<&str>) -> Option<&Price> {
        let provider = provider.or_else(|| {
            self.prices
                .iter()
                .find(|p| p.kind == kind)
                .map(|p| p.provider.as_str())
        })?;
        self.prices
            .iter()
            .filter(|p| p.kind == kind && p.provider.eq_ignore_ascii_case(provider))
            .fold(None, |best: Option<&Price>, p| match best {
                Some(b) if b.date >= p.date => Some(b),
                _ => Some(p),
            })
    }

    /// Fill the price fields from the published `prices` of `provider` (the first
    /// listed provider when `None`), and the committed price and ops overhead by the
    /// catalog's [`Rules`] where no figure is published. Fields set in the file are
    /// kept; fields derived before are recomputed. Errors when `provider` is named
    /// and sells nothing of this hardware.
    pub fn derive(&mut self, rules: &Rules, provider: Option<&str>) -> Result<(), ModelError> {
        if let Some(want) = provider {
            if self.price(PriceKind::OnDemand, Some(want)).is_none() {
                return Err(ModelError::InvalidInput(format!(
                    "hardware `{}` has no on-demand price from `{want}` (price sources: {})",
                    self.name,
                    match self.price_providers().join(", ") {
                        p if p.is_empty() => "none".to_string(),
                        p => p,
                    }
                )));
            }
        }
        for f in std::mem::take(&mut self.derived) {
            match f.as_str() {
                "price_on_demand" => self.price_on_demand = None,
                "price_preemptible" => self.price_preemptible = None,
                "price_committed" => self.price_committed = None,
                "ops_per_year" => self.ops_per_year = None,
                _ => {}
            }
        }
        let provider: Option<String> = provider
            .or_else(|| self.price_providers().first().copied())
            .map(str::to_string);
        let per_device = f64::from(self.chips_per_device);
        let from_row = |p: &Price| Figure {
            value: p.per_chip_hour() * per_device,
            source: format!(
                "{}: {} ${}/h for {} chip(s) = ${:.4} per chip-hour ({})",
                p.provider,
                p.instance,
                p.usd_per_hour,
                p.chips,
                p.per_chip_hour(),
                p.source
            ),
            date: p.date.clone(),
        };
        let mut derived = vec![];
        for (field, kind) in [
            ("price_on_demand", PriceKind::OnDemand),
            ("price_preemptible", PriceKind::Spot),
            ("price_committed", PriceKind::Committed1y),
        ] {
            let found = provider
                .as_deref()
                .and_then(|want| self.price(kind, Some(want)))
                .map(from_row);
            let slot = match field {
                "price_on_demand" => &mut self.price_on_demand,
                "price_preemptible" => &mut self.price_preemptible,
                _ => &mut self.price_committed,
            };
            if slot.is_none() {
                if let Some(f) = found {
                    *slot = Some(f);
                    derived.push(field.to_string());
                }
            }
        }
        if self.price_committed.is_none() {
            if let Some(od) = &self.price_on_demand {
                let d = &rules.committed_discount_1y;
                self.price_committed = Some(Figure {
                    value: od.value * (1.0 - d.value),
                    source: format!(
                        "{}; derived: on-demand ${:.4} × (1 − {}) [on-demand: {}]",
                        d.source, od.value, d.value, od.source
                    ),
                    date: od.date.clone(),
                });
                derived.push("price_committed".into());
            }
        }
        if self.ops_per_year.is_none() {
            if let Some(buy) = &self.purchase_price {
                let r = &rules.ops_fraction_per_year;
                self.ops_per_year = Some(Figure {
                    value: buy.value * r.value,
                    source: format!(
                        "{}; derived: purchase ${} × {} per year",
                        r.source, buy.value, r.value
                    ),
                    date: r.date.clone(),
                });
                derived.push("ops_per_year".into());
            }
        }
        self.derived = derived;
        Ok(())
    }

    /// Chips in `count` units.
    pub fn chips(&self, count: f64, unit: Unit) -> f64 {
        match unit {
            Unit::Chip => count,
            Unit::Core => count / f64::from(self.cores_per_chip),
            Unit::Device => count * f64::from(self.chips_per_device),
        }
    }

    pub(super) fn matches(&self, wanted: &str) -> bool {
        norm(&self.name) == wanted || self.aliases.iter().any(|a| norm(a) == wanted)
    }

    /// Hardware that is not in the catalog, e.g. this machine as measured by
    /// `flopcal profile`: one chip per device, no price or power unless set afterwards,
    /// and a kernel efficiency of 1 (pass the measured one through
    /// [`crate::calibrate::Fit::measured_mfu`]). `class` picks the system-efficiency fit
    /// (an unknown class uses the pooled fit).
    pub fn custom(
        name: &str,
        class: &str,
        dtype: &str,
        peak_tflops: f64,
        source: &str,
        date: &str,
    ) -> Hardware {
        let fig = |value: f64| Figure {
            value,
            source: source.to_string(),
            date: date.to_string(),
        };
        Hardware {
            name: name.to_string(),
            aliases: vec![],
            description: String::new(),
            cloud: None,
            class: class.to_string(),
            chips_per_device: 1,
            cores_per_chip: 1,
            default_dtype: dtype.to_ascii_lowercase(),
            peak_tflops: vec![PeakFigure {
                dtype: dtype.to_ascii_lowercase(),
                value: peak_tflops,
                source: source.to_string(),
                date: date.to_string(),
            }],
            gemm_ceiling_tflops: vec![],
            memory_gib: None,
            tdp_w: None,
            price_on_demand: None,
            price_preemptible: None,
            kernel_efficiency: Some(fig(1.0)),
            memory_bw_gbs: None,
            compute_units: None,
            links: vec![],
            prices: vec![],
            price_committed: None,
            purchase_price: None,
            lifetime_years: None,
            ops_per_year: None,
            derived: vec![],
            peer_ceilings: vec![],
        }
    }
}
