//! Where a GEMM's achieved FLOP/s comes from, in the order the step model prefers:
//!
//! 1. [`RateSource::Profile`]: a `flopcal profile` of the device, interpolated across
//!    shapes ([`MeasuredTable`]);
//! 2. [`RateSource::Reference`]: a cited, measured table for catalog hardware, shipped
//!    as data;
//! 3. [`RateSource::Shape`]: a stated model ([`ShapeModel`]): a roofline (FLOPs at
//!    peak vs bytes at memory bandwidth) with tile and wave quantisation on the chip's
//!    compute units, times an achieved fraction of peak fitted per hardware class.

use serde::Serialize;

/// One (batched) matrix product `C[m×n] = A[m×k]·B[k×n]`, `batch` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Gemm {
    /// Independent products (heads × sequences for attention; 1 for a weight matmul).
    pub batch: u64,
    /// Rows of the output.
    pub m: u64,
    /// Columns of the output.
    pub n: u64,
    /// Reduction dimension.
    pub k: u64,
}

impl Gemm {
    /// `2·batch·m·n·k`.
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Bytes read and written once each (A, B and C) at `elem` bytes per element.
    pub fn bytes(&self, elem: f64) -> f64 {
        let (m, n, k) = (self.m as f64, self.n as f64, self.k as f64);
        self.batch as f64 * (m * k + k * n + m * n) * elem
    }
}

/// CUTLASS-style thread-block tiles `(rows, cols)` and how much of the large-tile rate
/// each reaches: smaller tiles reuse every loaded operand less (flopcal assumption,
/// stated as part of the shape model).
const TILES: [(u64, u64, f64); 5] = [
    (256, 128, 1.0),
    (128, 256, 1.0),
    (128, 128, 0.95),
    (64, 128, 0.85),
    (64, 64, 0.7),
];

/// Fixed cost of one tile's prologue and epilogue, in steps of the reduction
/// dimension: a tile reaches `k / (k + K_OVERHEAD)` of its steady rate (flopcal
/// assumption, part of the shape model).
const K_OVERHEAD: f64 = 64.0;

/// The shape model of a GEMM on one chip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShapeModel {
    /// Dense peak, FLOP/s.
    pub peak_flops: f64,
    /// Memory bandwidth, bytes/s.
    pub hbm_bw: f64,
    /// Compute units a wave of tiles fills; `None`: no wave quantisation.
    pub compute_units: Option<u32>,
    /// Bytes per element of the operands.
    pub elem_bytes: f64,
    /// Achieved fraction of peak for a large, well-shaped GEMM: the chip's measured
    /// GEMM ceiling over its peak ([`crate::system::System::ceiling_fraction`]), 1 where
    /// none is measured. Not fitted: the calibration's factor comes on top.
    pub efficiency: f64,
}

impl ShapeModel {
    /// Seconds for `g`.
    pub fn seconds(&self, g: &Gemm) -> f64 {
        if g.batch == 0 || g.m == 0 || g.n == 0 || g.k == 0 {
            return 0.0;
        }
        let k_eff = g.k as f64 / (g.k as f64 + K_OVERHEAD);
        let mut best = f64::INFINITY;
        for (tm, tn, tile_eff) in TILES {
            let (rm, rn) = (g.m.div_ceil(tm), g.n.div_ceil(tn));
            let tiles = g.batch * rm * rn;
            let padded = (rm * tm * rn * tn) as f64;
            let fill = (g.m * g.n) as f64 / padded;
            let wave = match self.compute_units {
                Some(u) if u > 0 => {
                    let u = u64::from(u);
                    tiles as f64 / (tiles.div_ceil(u) * u) as f64
                }
                _ => 1.0,
            };
            let rate = self.peak_flops * self.efficiency * tile_eff * fill * wave * k_eff;
            best = best.min(g.flops() / rate);
        }
        best.max(g.bytes(self.elem_bytes) / self.hbm_bw)
    }
}

/// Measured FLOP/s at some shapes; other shapes are interpolated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeasuredTable {
    /// `(shape, FLOP/s)`.
    pub points: Vec<(Gemm, f64)>,
    /// Where the measurements come from.
    pub source: String,
}

impl MeasuredTable {
    /// FLOP/s at `g`: the inverse-distance-weighted geometric mean of the four nearest
    /// measured shapes, distance being the Euclidean distance of `ln(batch·m), ln n,
    /// ln k`. An exact match returns its measurement (several at that shape: the
    /// harmonic mean of their rates, i.e. their mean time). Beyond the table's range the
    /// nearest measurements carry over (no extrapolation). `None` for an empty table.
    pub fn flops_per_s(&self, g: &Gemm) -> Option<f64> {
        let key = |x: &Gemm| {
            [
                ((x.batch.max(1) * x.m.max(1)) as f64).ln(),
                (x.n.max(1) as f64).ln(),
                (x.k.max(1) as f64).ln(),
            ]
        };
        let q = key(g);
        let mut near: Vec<(f64, f64)> = self
            .points
            .iter()
            .filter(|(_, r)| r.is_finite() && *r > 0.0)
            .map(|(p, r)| {
                let k = key(p);
                let d2: f64 = (0..3).map(|i| (k[i] - q[i]).powi(2)).sum();
                (d2, *r)
            })
            .collect();
        // Several measurements of one shape (a product and its transposed variants):
        // their mean time, the harmonic mean of the rates.
        let exact: Vec<f64> = near.iter().filter(|p| p.0 < 1e-12).map(|p| p.1).collect();
        if !exact.is_empty() {
            return Some(exact.len() as f64 / exact.iter().map(|r| 1.0 / r).sum::<f64>());
        }
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        near.truncate(4);
        near.first()?;
        let (mut wsum, mut lsum) = (0.0, 0.0);
        for (d2, r) in &near {
            let w = 1.0 / d2;
            wsum += w;
            lsum += w * r.ln();
        }
        Some((lsum / wsum).exp())
    }
}

/// The rate of every GEMM of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RateSource {
    /// A `flopcal profile` of this device.
    Profile(MeasuredTable),
    /// A cited reference table for catalog hardware.
    Reference(MeasuredTable),
    /// The stated shape model.
    Shape(ShapeModel),
}

impl RateSource {
    /// Seconds for `g` (the shape model for shapes a table cannot answer).
    pub fn seconds(&self, g: &Gemm, fallback: &ShapeModel) -> f64 {
        match self {
            RateSource::Profile(t) | RateSource::Reference(t) => match t.flops_per_s(g) {
                Some(r) => g.flops() / r,
                None => fallback.seconds(g),
            },
            RateSource::Shape(s) => s.seconds(g),
        }
    }

    /// `profile`, `reference` or `shape-model`.
    pub fn kind(&self) -> &'static str {
        match self {
            RateSource::Profile(_) => "profile",
            RateSource::Reference(_) => "reference",
            RateSource::Shape(_) => "shape-model",
        }
    }

    /// One line saying where GEMM rates come from.
    pub fn describe(&self) -> String {
        match self {
            RateSource::Profile(t) => format!(
                "GEMM FLOP/s measured by flopcal profile ({} shapes, interpolated): {}",
                t.points.len(),
                t.source
            ),
            RateSource::Reference(t) => format!(
                "GEMM FLOP/s from a measured reference table ({} shapes, interpolated): {}",
                t.points.len(),
                t.source
            ),
            RateSource::Shape(s) => format!(
                "GEMM FLOP/s from the shape model: roofline ({:.0} TFLOP/s, {:.0} GB/s) with tile and wave quantisation on {} compute units, {}",
                s.peak_flops / 1e12,
                s.hbm_bw / 1e9,
                s.compute_units
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "unmodelled".into()),
                if s.efficiency < 1.0 {
                    format!(
                        "at {:.3} of peak for large GEMMs (the chip's GEMM ceiling, not fitted)",
                        s.efficiency
                    )
                } else {
                    "at peak for large GEMMs (no measured GEMM ceiling for this chip)".to_string()
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a100() -> ShapeModel {
        ShapeModel {
            peak_flops: 312e12,
            hbm_bw: 2.0e12,
            compute_units: Some(108),
            elem_bytes: 2.0,
            efficiency: 1.0,
        }
    }

    fn g(m: u64, n: u64, k: u64) -> Gemm {
        Gemm { batch: 1, m, n, k }
    }

    #[test]
    fn large_gemms_approach_the_efficiency_and_small_ones_are_memory_bound() {
        let s = a100();
        let big = g(16384, 16384, 16384);
        let r = big.flops() / s.seconds(&big);
        assert!(r > 0.9 * 312e12 && r <= 312e12, "{r}");
        let thin = g(16, 4096, 4096);
        let t = s.seconds(&thin);
        assert!((t - thin.bytes(2.0) / 2.0e12).abs() < 1e-12, "memory bound");
    }

    #[test]
    fn one_tile_more_than_a_wave_costs_a_wave() {
        let s = ShapeModel {
            compute_units: Some(4),
            ..a100()
        };
        // 4 tiles of 256×128 fill one wave; 5 need two.
        let four = g(512, 256, 8192);
        let five = g(640, 256, 8192);
        let r4 = four.flops() / s.seconds(&four);
        let r5 = five.flops() / s.seconds(&five);
        assert!(r5 < r4, "{r5} vs {r4}");
    }

    #[test]
    fn table_returns_measurements_and_interpolates_between_them() {
        let t = MeasuredTable {
            points: vec![(g(1024, 1024, 1024), 100e12), (g(4096, 4096, 4096), 200e12)],
            source: "test".into(),
        };
        assert_eq!(t.flops_per_s(&g(1024, 1024, 1024)), Some(100e12));
        let twice = MeasuredTable {
            points: vec![(g(64, 64, 64), 1e9), (g(64, 64, 64), 3e9)],
            source: "test".into(),
        };
        // 1 s and 1/3 s for the same FLOPs: a mean time of 2/3 s, so 1.5 GFLOP/s.
        let r = twice.flops_per_s(&g(64, 64, 64)).unwrap();
        assert!((r - 1.5e9).abs() < 1.0, "{r}");
        let mid = t.flops_per_s(&g(2048, 2048, 2048)).unwrap();
        assert!(mid > 100e12 && mid < 200e12, "{mid}");
        let beyond = t.flops_per_s(&g(65536, 65536, 65536)).unwrap();
        assert!(beyond <= 200e12 && beyond > 150e12, "{beyond}");
        let empty = MeasuredTable {
            points: vec![],
            source: "none".into(),
        };
        assert_eq!(empty.flops_per_s(&g(8, 8, 8)), None);
    }
}
