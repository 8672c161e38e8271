//! On-prem vs cloud: the purchase price amortised over a
//! lifetime, plus power × PUE × $/kWh, plus an operations overhead, against cloud
//! prices per chip-hour; the cost of one run, of a year of runs, and the utilisation
//! at which on-prem breaks even.
//!
//! Per chip, with `H` = 8766 hours per year and utilisation `u` (the fraction of the
//! year the hardware does useful work):
//!
//! - fixed cost per year `F = purchase / lifetime + ops`;
//! - energy per busy chip-hour `e = W × PUE / 1000 × $/kWh` (idle power is not costed);
//! - on-prem cost per useful chip-hour `c(u) = F / (H·u) + e`.
//!
//! A run of `n_o` on-prem chip-hours against a cloud run of `n_c` chip-hours at `p` per
//! chip-hour breaks even where `n_o · c(u) = n_c · p`:
//! `u* = n_o·F / (H · (n_c·p − n_o·e))` — for the same hardware `u* = F / (H·(p − e))`.
//! When the cloud's price does not even cover on-prem electricity there is no break-even.

use serde::Serialize;

use crate::error::ModelError;
use crate::flops::{check_fraction, check_positive};

/// Hours per (Julian) year.
pub const HOURS_PER_YEAR: f64 = 8766.0;
/// Default electricity price, USD per kWh.
pub const DEFAULT_KWH_PRICE: f64 = 0.10;
/// Where [`DEFAULT_KWH_PRICE`] comes from.
pub const KWH_PRICE_SOURCE: &str = "flopcal assumption: $0.10/kWh, between the US average industrial and commercial retail electricity prices (US EIA)";
/// Default utilisation of owned hardware.
pub const DEFAULT_UTILISATION: f64 = 0.5;
/// Where [`DEFAULT_UTILISATION`] comes from.
pub const UTILISATION_SOURCE: &str =
    "flopcal assumption: 50% of the year doing useful training work";
/// Default lifetime when the catalog has none, years.
pub const DEFAULT_LIFETIME_YEARS: f64 = 4.0;
/// Default operations overhead when the catalog has none, fraction of the purchase
/// price per year.
pub const DEFAULT_OPS_FRACTION: f64 = 0.10;

/// On-prem figures, per chip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnPrem {
    /// Purchase price, USD per chip (with its share of the server).
    pub purchase_usd: f64,
    /// Depreciation lifetime, years.
    pub lifetime_years: f64,
    /// Operations overhead, USD per chip per year.
    pub ops_usd_per_year: f64,
    /// Power per chip while busy, W.
    pub watts: f64,
    /// Power usage effectiveness.
    pub pue: f64,
    /// Electricity, USD per kWh.
    pub kwh_price: f64,
    /// Fraction of the year the hardware does useful work, (0, 1].
    pub utilisation: f64,
}

impl OnPrem {
    /// Check every figure.
    pub fn check(&self) -> Result<(), ModelError> {
        check_positive("purchase price", self.purchase_usd)?;
        check_positive("lifetime", self.lifetime_years)?;
        check_positive("power", self.watts)?;
        check_fraction("utilisation", self.utilisation)?;
        for (what, x) in [
            ("ops overhead", self.ops_usd_per_year),
            ("electricity price", self.kwh_price),
        ] {
            if !(x.is_finite() && x >= 0.0) {
                return Err(ModelError::InvalidInput(format!(
                    "{what} must be a number >= 0 (got {x})"
                )));
            }
        }
        if !(self.pue.is_finite() && self.pue >= 1.0) {
            return Err(ModelError::InvalidInput(format!(
                "PUE must be a number >= 1 (got {})",
                self.pue
            )));
        }
        Ok(())
    }

    /// Fixed cost per chip per year: depreciation + operations.
    pub fn fixed_per_year(&self) -> f64 {
        self.purchase_usd / self.lifetime_years + self.ops_usd_per_year
    }

    /// Electricity per busy chip-hour, USD.
    pub fn energy_per_hour(&self) -> f64 {
        self.watts * self.pue / 1000.0 * self.kwh_price
    }

    /// Cost per useful chip-hour at utilisation `u`.
    pub fn cost_per_hour_at(&self, u: f64) -> f64 {
        self.fixed_per_year() / (HOURS_PER_YEAR * u) + self.energy_per_hour()
    }

    /// Cost per useful chip-hour at the configured utilisation.
    pub fn cost_per_hour(&self) -> f64 {
        self.cost_per_hour_at(self.utilisation)
    }

    /// Utilisation at which `onprem_hours` on-prem chip-hours cost as much as
    /// `cloud_hours` cloud chip-hours at `price` each; `None` when the cloud is cheaper
    /// than on-prem electricity alone. May exceed 1 (on-prem cannot break even).
    pub fn break_even(&self, onprem_hours: f64, cloud_hours: f64, price: f64) -> Option<f64> {
        let margin = cloud_hours * price - onprem_hours * self.energy_per_hour();
        (margin > 0.0).then(|| onprem_hours * self.fixed_per_year() / (HOURS_PER_YEAR * margin))
    }
}

/// One way of renting the work in the cloud.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudOption {
    /// `on demand`, `preemptible`, `committed use`.
    pub kind: String,
    /// USD per chip-hour.
    pub price_per_chip_hour: f64,
    /// Where the price comes from.
    pub source: String,
    /// Cost of one run.
    pub cost_per_run: f64,
    /// Cost of the runs on-prem does in a year at its utilisation.
    pub cost_per_year: f64,
    /// Utilisation at which on-prem costs the same; `None`: never.
    pub break_even_utilisation: Option<f64>,
}

/// On-prem against the cloud for one training plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostComparison {
    /// Chips of the on-prem run.
    pub onprem_chips: f64,
    /// Chip-hours of one run on-prem.
    pub onprem_chip_hours: f64,
    /// Wall-clock hours of one run on-prem.
    pub onprem_wall_hours: f64,
    /// Chip-hours of one run in the cloud.
    pub cloud_chip_hours: f64,
    /// On-prem cost per useful chip-hour.
    pub onprem_cost_per_chip_hour: f64,
    /// Of which electricity.
    pub onprem_energy_per_chip_hour: f64,
    /// On-prem cost of one run.
    pub onprem_cost_per_run: f64,
    /// Runs the on-prem chips finish in a year at the utilisation.
    pub runs_per_year: f64,
    /// On-prem cost per year: owning and running the chips at the utilisation.
    pub onprem_cost_per_year: f64,
    /// The cloud options.
    pub cloud: Vec<CloudOption>,
    /// The cheapest cloud option at this utilisation (by cost per run).
    pub cheapest_cloud: Option<String>,
    /// Whether on-prem is cheaper than every cloud option at the utilisation.
    pub onprem_wins: bool,
    /// One sentence.
    pub verdict: String,
}

/// Compare `onprem` for a run of `onprem_chip_hours` on `chips` chips taking
/// `wall_hours`, with `cloud_chip_hours` in the cloud at each of `prices`
/// (`(kind, USD per chip-hour, source)`).
pub fn compare(
    onprem: &OnPrem,
    chips: f64,
    onprem_chip_hours: f64,
    wall_hours: f64,
    cloud_chip_hours: f64,
    prices: &[(String, f64, String)],
) -> Result<CostComparison, ModelError> {
    onprem.check()?;
    check_positive("chips", chips)?;
    check_positive("on-prem chip-hours", onprem_chip_hours)?;
    check_positive("wall-clock hours", wall_hours)?;
    check_positive("cloud chip-hours", cloud_chip_hours)?;
    let per_hour = onprem.cost_per_hour();
    let per_run = onprem_chip_hours * per_hour;
    let runs_per_year = HOURS_PER_YEAR * onprem.utilisation / wall_hours;
    let per_year = chips
        * (onprem.fixed_per_year()
            + onprem.energy_per_hour() * HOURS_PER_YEAR * onprem.utilisation);
    let mut cloud = vec![];
    for (kind, p, source) in prices {
        check_positive(&format!("{kind} price"), *p)?;
        let run = cloud_chip_hours * p;
        cloud.push(CloudOption {
            kind: kind.clone(),
            price_per_chip_hour: *p,
            source: source.clone(),
            cost_per_run: run,
            cost_per_year: run * runs_per_year,
            break_even_utilisation: onprem.break_even(onprem_chip_hours, cloud_chip_hours, *p),
        });
    }
    let cheapest = cloud
        .iter()
        .min_by(|a, b| a.cost_per_run.total_cmp(&b.cost_per_run));
    let u = onprem.utilisation * 100.0;
    let (wins, verdict) = match cheapest {
        None => (
            true,
            "no cloud price to compare with: pass --price / --committed-price".to_string(),
        ),
        Some(c) if per_run < c.cost_per_run => (
            true,
            format!(
                "on-prem: at {u:.0}% utilisation a run costs ${:.0} on-prem vs ${:.0} for the cheapest cloud option ({}); on-prem stays cheaper down to {} utilisation",
                per_run,
                c.cost_per_run,
                c.kind,
                pct(c.break_even_utilisation)
            ),
        ),
        Some(c) => (
            false,
            match c.break_even_utilisation {
                Some(b) if b <= 1.0 => format!(
                    "cloud ({}): at {u:.0}% utilisation a run costs ${:.0} on-prem vs ${:.0}; on-prem needs at least {} utilisation to beat it",
                    c.kind,
                    per_run,
                    c.cost_per_run,
                    pct(Some(b))
                ),
                _ => format!(
                    "cloud ({}): a run costs ${:.0} on-prem at {u:.0}% utilisation vs ${:.0}; on-prem cannot beat it even at 100% utilisation",
                    c.kind, per_run, c.cost_per_run
                ),
            },
        ),
    };
    Ok(CostComparison {
        onprem_chips: chips,
        onprem_chip_hours,
        onprem_wall_hours: wall_hours,
        cloud_chip_hours,
        onprem_cost_per_chip_hour: per_hour,
        onprem_energy_per_chip_hour: onprem.energy_per_hour(),
        onprem_cost_per_run: per_run,
        runs_per_year,
        onprem_cost_per_year: per_year,
        cheapest_cloud: cheapest.map(|c| c.kind.clone()),
        onprem_wins: wins,
        cloud,
        verdict,
    })
}

fn pct(x: Option<f64>) -> String {
    match x {
        Some(v) => format!("{:.1}%", v * 100.0),
        None => "no".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a100() -> OnPrem {
        OnPrem {
            purchase_usd: 24_875.0,
            lifetime_years: 4.0,
            ops_usd_per_year: 2_487.5,
            watts: 400.0,
            pue: 1.58,
            kwh_price: 0.10,
            utilisation: 0.5,
        }
    }

    #[test]
    fn break_even_is_the_closed_form_for_the_same_hardware() {
        let o = a100();
        let p = 4.10;
        let f = 24_875.0 / 4.0 + 2_487.5;
        let e = 400.0 * 1.58 / 1000.0 * 0.10;
        let u = o.break_even(100.0, 100.0, p).unwrap();
        assert!((u - f / (HOURS_PER_YEAR * (p - e))).abs() < 1e-12);
        // At that utilisation on-prem costs exactly the cloud price per hour.
        assert!((o.cost_per_hour_at(u) - p).abs() < 1e-9);
    }

    #[test]
    fn break_even_scales_with_the_chip_hours_of_each_side() {
        let o = a100();
        // The cloud needs twice the chip-hours: on-prem breaks even at a lower utilisation.
        let same = o.break_even(100.0, 100.0, 4.10).unwrap();
        let double = o.break_even(100.0, 200.0, 4.10).unwrap();
        assert!(double < same);
        assert!((100.0 * o.cost_per_hour_at(double) - 200.0 * 4.10).abs() < 1e-6);
    }

    #[test]
    fn no_break_even_when_the_cloud_is_cheaper_than_electricity() {
        let o = a100();
        assert_eq!(o.break_even(1.0, 1.0, o.energy_per_hour() * 0.9), None);
        // Above 100%: reported, but on-prem can never reach it.
        assert!(o.break_even(1.0, 1.0, o.energy_per_hour() + 0.01).unwrap() > 1.0);
    }

    #[test]
    fn verdict_follows_the_cheapest_option() {
        let prices = |od: f64| {
            vec![
                ("on demand".to_string(), od, "s".to_string()),
                ("committed use".to_string(), od * 0.63, "s".to_string()),
            ]
        };
        let c = compare(&a100(), 8.0, 800.0, 100.0, 800.0, &prices(4.10)).unwrap();
        assert!(c.onprem_wins, "{}", c.verdict);
        assert_eq!(c.cheapest_cloud.as_deref(), Some("committed use"));
        assert!((c.runs_per_year - HOURS_PER_YEAR * 0.5 / 100.0).abs() < 1e-9);
        let low = OnPrem {
            utilisation: 0.05,
            ..a100()
        };
        let c = compare(&low, 8.0, 800.0, 100.0, 800.0, &prices(4.10)).unwrap();
        assert!(!c.onprem_wins);
        assert!(
            c.verdict.starts_with("cloud (committed use)"),
            "{}",
            c.verdict
        );
        // Per year: the cloud does the same number of runs.
        let od = &c.cloud[0];
        assert!((od.cost_per_year - od.cost_per_run * c.runs_per_year).abs() < 1e-6);
    }

    #[test]
    fn bad_figures_are_refused() {
        for o in [
            OnPrem {
                utilisation: 0.0,
                ..a100()
            },
            OnPrem {
                utilisation: 1.5,
                ..a100()
            },
            OnPrem { pue: 0.9, ..a100() },
            OnPrem {
                lifetime_years: 0.0,
                ..a100()
            },
            OnPrem {
                kwh_price: -1.0,
                ..a100()
            },
        ] {
            assert!(compare(&o, 1.0, 1.0, 1.0, 1.0, &[]).is_err());
        }
    }

    proptest! {
        #[test]
        fn cost_per_hour_falls_with_utilisation_and_meets_the_price_at_break_even(
            u1 in 0.01f64..1.0, du in 0.0f64..0.5, price in 0.5f64..50.0,
        ) {
            let o = a100();
            let u2 = (u1 + du).min(1.0);
            prop_assert!(o.cost_per_hour_at(u2) <= o.cost_per_hour_at(u1));
            if let Some(b) = o.break_even(10.0, 10.0, price) {
                prop_assert!((o.cost_per_hour_at(b) - price).abs() < 1e-6 * price);
            }
        }
    }
}
