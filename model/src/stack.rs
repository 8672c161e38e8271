//! What a software stack brings to a forecast, apart from its fitted factor's value:
//! the stated link and HBM efficiencies, the shape model a chip's GEMMs run under, and
//! the factor on GEMM rates chosen for a run with its prediction interval. A leaf
//! shared by the forecast ([`crate::forecast`]) and the calibration that fits the
//! factors ([`crate::fit`]), so neither needs the other's internals.

use serde::Serialize;

use crate::framework::Framework;
use crate::gemm_rate::ShapeModel;
use crate::step::Efficiency;
use crate::system::System;

/// Achieved fraction of nominal link bandwidth (flopcal assumption: NCCL's bus
/// bandwidth on NVLink and InfiniBand is typically 75–85% of the link rate).
pub const LINK_EFFICIENCY: f64 = 0.8;

/// Achieved fraction of HBM bandwidth by memory-bound kernels (flopcal assumption).
pub const HBM_EFFICIENCY: f64 = 0.8;

/// Level of the printed prediction intervals.
pub const BAND_LEVEL: f64 = 0.8;

/// The stated efficiencies of links and memory, with a GEMM factor.
pub fn efficiency(gemm: f64) -> Efficiency {
    Efficiency {
        link: LINK_EFFICIENCY,
        hbm: HBM_EFFICIENCY,
        gemm,
        dp_overlap: true,
        tp_overlap: false,
        unfused_loss: false,
    }
}

/// [`efficiency`] for a stack on hardware of `class`: the stack states whether its
/// gradient reduction overlaps the backward pass there, whether its tensor-parallel
/// collectives overlap the GEMMs, and whether its loss is unfused (an unknown stack:
/// neither).
pub fn stack_efficiency(gemm: f64, framework: Option<&Framework>, class: &str) -> Efficiency {
    Efficiency {
        dp_overlap: framework.is_none_or(|f| f.overlaps_dp_on(class)),
        tp_overlap: framework.is_some_and(|f| f.overlaps_tp_on(class)),
        unfused_loss: framework.is_some_and(|f| f.unfused_loss_on(class)),
        ..efficiency(gemm)
    }
}

/// The shape model of `sys` (16-bit operands) under its measured GEMM ceiling.
pub fn shape_model(sys: &System) -> ShapeModel {
    ShapeModel {
        peak_flops: sys.peak_flops,
        hbm_bw: sys.hbm_bw,
        compute_units: sys.compute_units,
        elem_bytes: 2.0,
        efficiency: sys.ceiling_fraction(),
    }
}

/// The standard normal's `(1 + level) / 2` quantile: a central interval at `level` is
/// `±z` standard deviations.
fn z_of(level: f64) -> f64 {
    use statrs::distribution::ContinuousCDF;
    statrs::distribution::Normal::standard().inverse_cdf(0.5 + level / 2.0)
}

/// A prediction interval on step time, as multipliers of the point prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepBand {
    /// Level (0.8: 80% of left-out runs fall inside).
    pub level: f64,
    /// Low end / prediction.
    pub low: f64,
    /// High end / prediction.
    pub high: f64,
    /// Left-out rows the band rests on.
    pub residuals: usize,
    /// Whether they are the named stack's own rows (else rows predicted with the stack
    /// unknown).
    pub own_stack: bool,
    /// Whether the rows are restricted to the hardware's device family (`gpu`, `tpu`:
    /// the part of a hardware class before its year); else every family.
    pub one_family: bool,
    /// Whether the rows were predicted with their layout left to the search (the band
    /// of an estimate given no layout dimension).
    pub layout_unknown: bool,
    /// Where no published run is on the hardware's class: what not knowing the class
    /// adds to the error (a standard deviation in `ln`, from published runs predicted
    /// without their whole class), added in quadrature to the residuals' scale; 0
    /// otherwise.
    pub class_spread: f64,
}

impl StepBand {
    /// No band (nothing fitted behind the prediction).
    pub fn none() -> StepBand {
        StepBand {
            level: BAND_LEVEL,
            low: 1.0,
            high: 1.0,
            residuals: 0,
            own_stack: false,
            one_family: false,
            layout_unknown: false,
            class_spread: 0.0,
        }
    }

    /// The normal interval at [`BAND_LEVEL`] whose scale is the root-mean-square of
    /// the `ln(published / predicted)` residuals (bias included): `exp(±z · rms)`,
    /// `z` the standard normal's `(1 + level) / 2` quantile. A few dozen residuals pin
    /// a scale better than they pin the 10th and 90th percentiles.
    pub fn from_rms(res: &[f64]) -> StepBand {
        if res.len() < 2 {
            return StepBand::none();
        }
        let rms = (res.iter().map(|r| r * r).sum::<f64>() / res.len() as f64).sqrt();
        let z = z_of(BAND_LEVEL);
        StepBand {
            level: BAND_LEVEL,
            low: (-z * rms).exp(),
            high: (z * rms).exp(),
            residuals: res.len(),
            own_stack: false,
            one_family: false,
            layout_unknown: false,
            class_spread: 0.0,
        }
    }

    /// The band widened for a class no published run is on: its scale `√(rms² + s²)`,
    /// `s` what not knowing the class adds ([`StepBand::class_spread`]).
    /// A band with nothing fitted behind it stays as it is.
    pub fn widened(self, spread: f64) -> StepBand {
        if self.residuals < 2 || spread <= 0.0 {
            return self;
        }
        let z = z_of(self.level);
        let rms = (self.high / self.low).ln() / (2.0 * z);
        let scale = (rms * rms + spread * spread).sqrt();
        StepBand {
            low: (-z * scale).exp(),
            high: (z * scale).exp(),
            class_spread: spread,
            ..self
        }
    }

    /// `high / low`.
    pub fn width(&self) -> f64 {
        self.high / self.low
    }
}

/// The device family of a hardware class: `gpu-2022` → `gpu`.
pub fn family(class: &str) -> &str {
    class.split('-').next().unwrap_or(class)
}

/// Where a factor for a prediction came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chosen {
    /// The factor on GEMM rates.
    pub gemm_efficiency: f64,
    /// Lowest solved factor among the runs it rests on.
    pub low: f64,
    /// Highest.
    pub high: f64,
    /// In words: which parameter, fitted on which sources.
    pub basis: String,
    /// The prediction interval on step time.
    pub band: StepBand,
    /// Best-layout step over the step of the layouts production runs stated
    /// ([`crate::fit::StepFit::layout_gap`]): a forecast that fixes no layout dimension
    /// divides its step time by it; 1: none.
    pub layout_gap: f64,
    /// The prediction interval of such a forecast (its layout and the stack's effect
    /// on it unknown): from the left-out errors of production runs predicted so.
    pub free_band: StepBand,
    /// With the stack unknown, the factor and its basis for such a forecast: the mean
    /// over the stacks seen in production runs on the class (`None`: the same as
    /// [`Chosen::gemm_efficiency`]).
    pub free_factor: Option<(f64, String)>,
    /// With the stack unknown, the stack such a forecast takes the run to use: the one
    /// seen in production runs on the class (its recomputation, loss and overlap; the
    /// factor is [`Chosen::free_factor`]). `None`: several or none, so no stack's rules.
    /// In a forecast's result, the stack it took (`None`: it took none).
    pub free_stack: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_adds_the_spread_in_quadrature_and_leaves_an_empty_band_alone() {
        // Residuals of ±0.3: rms 0.3; widened by 0.4 the scale is 0.5.
        let b = StepBand::from_rms(&[0.3, -0.3]);
        let w = b.widened(0.4);
        let z = z_of(BAND_LEVEL);
        assert!((w.high.ln() - z * 0.5).abs() < 1e-12, "{}", w.high);
        assert!((w.low.ln() + z * 0.5).abs() < 1e-12, "{}", w.low);
        assert_eq!(w.class_spread, 0.4);
        assert_eq!(w.residuals, 2);
        assert_eq!(b.widened(0.0), b);
        assert_eq!(StepBand::none().widened(0.4), StepBand::none());
    }
}
