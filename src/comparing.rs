//! On-prem against cloud for one training plan, from a plain [`CompareRequest`]: the
//! run's chip-hours come from the estimate of [`crate::estimating`] (on the on-prem
//! hardware, and on the cloud hardware when it differs); each on-prem figure comes from
//! the request, else the price sheet or the catalog, else a stated default, and says
//! which. The cost model itself is `flopcal_model::onprem`.

use flopcal_model::catalog::{Figure, Unit, ASSUMPTION};
use flopcal_model::onprem::{self, CostComparison, OnPrem};
use flopcal_model::prices::PriceAge;
use serde::Serialize;

use crate::estimating::{compute_full, EstimateRequest};
use crate::model_spec::{run_date, PriceSpec};
use crate::planning::load_catalog;
use crate::render::table::thousands;
use crate::{Error, Result};

/// What to compare: an estimate's plan and on-prem hardware, the cloud hardware, and
/// the on-prem figures that override the catalog's. The plain request behind
/// `compare`'s flags; each field is the flag of the same name.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    /// The training plan and the on-prem hardware, as for an estimate.
    pub estimate: EstimateRequest,
    /// Cloud hardware to rent (default: the same as --hardware).
    pub cloud: Option<String>,
    /// On-prem purchase price, USD per chip (GPU) with its share of the server
    /// (default: the catalog's).
    pub purchase_price: Option<f64>,
    /// On-prem depreciation lifetime, years (default: the catalog's, else 4).
    pub lifetime: Option<f64>,
    /// On-prem operations overhead, USD per chip per year (default: the catalog's,
    /// else 10% of the purchase price).
    pub ops_per_year: Option<f64>,
    /// Fraction of the year the on-prem hardware does useful work, (0, 1] (default 0.5).
    pub utilisation: Option<f64>,
    /// Committed-use cloud price, USD per chip-hour (default: the catalog's).
    pub committed_price: Option<f64>,
    /// On-prem purchase price per server (a DGX/HGX with its share of networking,
    /// storage and facility), USD; divided by --chips-per-server.
    pub server_price: Option<f64>,
    /// Chips (GPUs) per server for --server-price (default 8: an HGX/DGX board).
    pub chips_per_server: u32,
    /// One cloud row per provider with a price for the cloud hardware (its newest
    /// on-demand price, else committed, else spot), cheapest first, each with its
    /// break-even utilisation.
    pub cloud_all: bool,
}

/// One on-prem figure with its provenance.
#[derive(Debug, Clone, Serialize)]
pub struct OnPremInput {
    /// What it is.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Unit.
    pub unit: String,
    /// Where it comes from.
    pub source: String,
}

/// The comparison (what `compare --format json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// Model (plan label).
    pub model: String,
    /// On-prem hardware.
    pub onprem_hardware: String,
    /// Cloud hardware.
    pub cloud_hardware: String,
    /// On-prem MFU and where it came from.
    pub onprem_mfu: Option<f64>,
    /// Where the on-prem MFU came from.
    pub onprem_mfu_source: String,
    /// Cloud MFU.
    pub cloud_mfu: Option<f64>,
    /// The on-prem figures used.
    pub onprem: OnPrem,
    /// Each figure with its source.
    pub inputs: Vec<OnPremInput>,
    /// The comparison.
    pub comparison: CostComparison,
    /// Figures that are flopcal assumptions rather than published (names).
    pub assumed: Vec<String>,
    /// The model is one flopcal constructed (no one published it), e.g. `bert-1.5b`.
    pub model_constructed: bool,
    /// The provider the cloud prices come from (`null`: the catalog's default).
    pub price_source: Option<String>,
    /// Every flopcal assumption this comparison relied on: the on-prem and cloud
    /// figures above and the catalog figures of both hardware rows that the time
    /// estimate reads (link tiers, memory), each with its stated source.
    pub assumptions: Vec<AssumedFigure>,
    /// The date and age of each catalog or --prices price used.
    pub price_ages: Vec<PriceAge>,
    /// The warning for each price used that is more than 12 months older than the run
    /// date (also printed on stderr).
    pub price_warnings: Vec<String>,
}

/// One figure that no public source states.
#[derive(Debug, Clone, Serialize)]
pub struct AssumedFigure {
    /// Which figure (`power`, `h100-sxm links.nvlink.latency_us`, ...).
    pub figure: String,
    /// The assumption, as the catalog or flopcal states it.
    pub source: String,
}

fn given(flag: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(Error::Usage(format!(
            "--{flag} must be a number >= 0 (got {v})"
        )))
    }
}

/// Pick the flag, else the catalog figure (per device → per chip), else a default.
fn figure(
    name: &str,
    unit: &str,
    flag: Option<(&str, f64)>,
    catalog: Option<(&Figure, f64)>,
    default: Option<(f64, String)>,
) -> Result<Option<OnPremInput>> {
    let (value, source) = match (flag, catalog, default) {
        (Some((f, v)), _, _) => (given(f, v)?, format!("--{f}")),
        (None, Some((fig, per)), _) => (fig.value / per, format!("{} ({})", fig.source, fig.date)),
        (None, None, Some((v, s))) => (v, s),
        (None, None, None) => return Ok(None),
    };
    Ok(Some(OnPremInput {
        name: name.into(),
        value,
        unit: unit.into(),
        source,
    }))
}

/// Compute the comparison (no printing).
pub fn compute(req: &CompareRequest) -> Result<CompareReport> {
    let mut cat = load_catalog(req.estimate.catalog.as_deref())?;
    let cloud_flag = req.cloud.as_deref().or(req.estimate.hardware.as_deref());
    let today = run_date()?;
    let sheet = req.estimate.prices.apply(
        &mut cat,
        cloud_flag.filter(|h| !h.eq_ignore_ascii_case("local")),
    )?;
    let chosen = req.estimate.prices.price_source.is_some();
    // The provider chooses the cloud prices; the on-prem run of other hardware than
    // the cloud's is estimated at the catalog's default prices (its cost is not used).
    let mut onprem_req = req.estimate.clone();
    if req.cloud.is_some() {
        onprem_req.prices = PriceSpec::default();
    }
    let onprem_run = compute_full(&onprem_req)?;
    let e = &onprem_run.estimate;
    let local = onprem_run.kernel_efficiency.is_some()
        && req
            .estimate
            .hardware
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case("local"));
    let onprem_hw = if local {
        None
    } else {
        req.estimate
            .hardware
            .as_deref()
            .map(|h| cat.hardware(h))
            .transpose()?
    };
    let per = onprem_hw
        .map(|h| f64::from(h.chips_per_device))
        .unwrap_or(1.0);

    // Cloud side: the same hardware, or --cloud priced at its own estimate.
    let cloud_name = match (&req.cloud, onprem_hw) {
        (Some(c), _) => c.clone(),
        (None, Some(h)) => h.name.clone(),
        (None, None) => {
            return Err(Error::Usage(
                "this machine has no cloud price: name the cloud hardware to compare with, e.g. --cloud a100".into(),
            ))
        }
    };
    let cloud_hw = cat.hardware(&cloud_name)?;
    let same = onprem_hw.is_some_and(|h| h.name == cloud_hw.name);
    let cloud_est = if same {
        e.clone()
    } else {
        let mut ca = req.estimate.clone();
        ca.hardware = Some(cloud_hw.name.clone());
        ca.profile = None;
        ca.devices = None;
        ca.unit = Unit::Chip;
        ca.dtype = None;
        ca.kernel_efficiency = None;
        compute_full(&ca)?.estimate
    };
    let cper = f64::from(cloud_hw.chips_per_device);
    let mut prices: Vec<(String, f64, String)> = vec![];
    let mut price_ages: Vec<PriceAge> = vec![];
    let src = |f: &Option<Figure>| {
        f.as_ref()
            .map(|x| format!("{} ({})", x.source, x.date))
            .unwrap_or_default()
    };
    // With --price-source the catalog prices of that provider replace the ones the
    // estimate read (the default provider's); --price and --preemptible-price win.
    let pick = |flag: Option<f64>, est: Option<f64>, pre: bool| match flag {
        Some(_) => est,
        None if chosen => cloud_hw.price_per_chip_hour(pre),
        None => est,
    };
    if let Some(p) = pick(req.estimate.price, cloud_est.price_per_device_hour, false) {
        let s = if req.estimate.price.is_some() {
            "--price".into()
        } else {
            src(&cloud_hw.price_on_demand)
        };
        prices.push(("on demand".into(), p, s));
    }
    if let Some(p) = pick(
        req.estimate.preemptible_price,
        cloud_est.preemptible_price_per_device_hour,
        true,
    ) {
        let s = if req.estimate.preemptible_price.is_some() {
            "--preemptible-price".into()
        } else {
            src(&cloud_hw.price_preemptible)
        };
        prices.push(("preemptible".into(), p, s));
    }
    match (req.committed_price, &cloud_hw.price_committed) {
        (Some(p), _) => prices.push((
            "committed use".into(),
            given("committed-price", p)?,
            "--committed-price".into(),
        )),
        (None, Some(f)) => prices.push((
            "committed use".into(),
            f.value / cper,
            src(&cloud_hw.price_committed),
        )),
        (None, None) => {}
    }
    if req.cloud_all {
        // One row per provider, cheapest first; flag prices stay as given.
        prices.retain(|(k, _, _)| {
            (k == "on demand" && req.estimate.price.is_some())
                || (k == "preemptible" && req.estimate.preemptible_price.is_some())
                || (k == "committed use" && req.committed_price.is_some())
        });
        for p in flopcal_model::prices::provider_prices(cloud_hw) {
            let what = format!("{} {} ({})", cloud_hw.name, p.kind.as_str(), p.provider);
            let fig = Figure {
                value: p.per_chip_hour,
                source: p.source.clone(),
                date: p.date.clone(),
            };
            price_ages.push(PriceAge::of(&what, &fig, &today));
            prices.push((
                format!("{} {}", p.provider, p.kind.as_str()),
                p.per_chip_hour,
                format!("{} ({})", p.source, p.date),
            ));
        }
        prices.sort_by(|a, b| a.1.total_cmp(&b.1));
    } else {
        let given_committed = req.committed_price.is_some();
        price_ages = flopcal_model::prices::price_ages(
            cloud_hw,
            &today,
            req.estimate.price.is_some(),
            req.estimate.preemptible_price.is_some(),
            !given_committed,
        );
    }
    if prices.is_empty() {
        return Err(Error::Usage(format!(
            "{} has no cloud price in the catalog: pass --price (and --committed-price)",
            cloud_hw.name
        )));
    }

    // On-prem figures.
    let hw_name = onprem_hw
        .map(|h| h.name.clone())
        .unwrap_or_else(|| e.hardware.clone());
    let sheet_onprem = sheet.as_ref().and_then(|s| s.onprem_for(&hw_name));
    let from_sheet =
        |f: Option<&Figure>| f.map(|f| (f.value, format!("{} ({})", f.source, f.date)));
    let server = match req.server_price {
        Some(v) => {
            let v = given("server-price", v)?;
            if req.chips_per_server == 0 {
                return Err(Error::Usage("--chips-per-server must be at least 1".into()));
            }
            let n = req.chips_per_server;
            Some((
                v / f64::from(n),
                format!("--server-price ${} / --chips-per-server {n}", thousands(v)),
            ))
        }
        None => None,
    };
    let purchase = figure(
        "purchase price",
        "USD per chip",
        req.purchase_price.map(|v| ("purchase-price", v)),
        onprem_hw
            .filter(|_| server.is_none())
            .and_then(|h| h.purchase_price.as_ref().map(|f| (f, per))),
        server,
    )?
    .ok_or_else(|| {
        Error::Usage(format!(
            "the catalog has no purchase price for {hw_name} (it is not sold, or this is your machine): pass --purchase-price USD per chip"
        ))
    })?;
    let lifetime = figure(
        "lifetime",
        "years",
        req.lifetime.map(|v| ("lifetime", v)),
        onprem_hw.and_then(|h| h.lifetime_years.as_ref().map(|f| (f, 1.0))),
        Some((
            onprem::DEFAULT_LIFETIME_YEARS,
            "flopcal assumption: 4-year depreciation".into(),
        )),
    )?
    .ok_or_else(|| Error::Usage("no lifetime".into()))?;
    let ops = figure(
        "operations overhead",
        "USD per chip per year",
        req.ops_per_year.map(|v| ("ops-per-year", v)),
        // An overhead derived from the catalog's purchase price does not follow
        // --server-price; the rule below applies to the server's share instead.
        onprem_hw
            .filter(|h| {
                req.server_price.is_none() || !h.derived.iter().any(|d| d == "ops_per_year")
            })
            .and_then(|h| h.ops_per_year.as_ref().map(|f| (f, per))),
        Some({
            // The catalog's rule, as for catalog hardware: purchase × fraction.
            let r = &cat.rules.ops_fraction_per_year;
            (
                r.value * purchase.value,
                format!("{}; derived: purchase × {} per year", r.source, r.value),
            )
        }),
    )?
    .ok_or_else(|| Error::Usage("no ops overhead".into()))?;
    let sheet_watts = sheet_onprem.and_then(|o| o.watts.as_ref());
    let watts = figure(
        "power",
        "W per chip",
        req.estimate.chip_watts.map(|v| ("chip-watts", v)),
        onprem_hw
            .filter(|_| sheet_watts.is_none())
            .and_then(|h| h.tdp_w.as_ref().map(|f| (f, 1.0))),
        from_sheet(sheet_watts),
    )?
    .map(|mut w| {
        if req.estimate.chip_watts.is_none() && sheet_watts.is_none() {
            w.source = format!(
                "chip TDP only, no host share (pass --chip-watts to include it): {}",
                w.source
            );
        }
        w
    })
    .ok_or_else(|| {
        Error::Usage(format!(
            "no power figure for {hw_name}: pass --chip-watts W per chip (with its share of the host)"
        ))
    })?;
    let default_pue = (req.estimate.pue - flopcal_model::cost::DEFAULT_PUE).abs() < 1e-12;
    let pue = match (default_pue, sheet_onprem.and_then(|o| o.pue.as_ref())) {
        (true, Some(f)) => OnPremInput {
            name: "PUE".into(),
            value: f.value,
            unit: "".into(),
            source: format!("{} ({})", f.source, f.date),
        },
        _ => OnPremInput {
            name: "PUE".into(),
            value: req.estimate.pue,
            unit: "".into(),
            source: if default_pue {
                "Strubell et al. 2019: 2018 global average data-centre PUE (Uptime Institute)"
                    .into()
            } else {
                "--pue".into()
            },
        },
    };
    let kwh = figure(
        "electricity",
        "USD per kWh",
        req.estimate.kwh_price.map(|v| ("kwh-price", v)),
        None,
        from_sheet(sheet_onprem.and_then(|o| o.kwh_price.as_ref())).or(Some((
            onprem::DEFAULT_KWH_PRICE,
            onprem::KWH_PRICE_SOURCE.into(),
        ))),
    )?
    .ok_or_else(|| Error::Usage("no electricity price".into()))?;
    let util = figure(
        "utilisation",
        "fraction of the year",
        req.utilisation.map(|v| ("utilisation", v)),
        None,
        Some((
            onprem::DEFAULT_UTILISATION,
            onprem::UTILISATION_SOURCE.into(),
        )),
    )?
    .ok_or_else(|| Error::Usage("no utilisation".into()))?;
    if !(util.value > 0.0 && util.value <= 1.0) {
        return Err(Error::Usage(format!(
            "--utilisation must be in (0, 1] (got {})",
            util.value
        )));
    }
    let o = OnPrem {
        purchase_usd: purchase.value,
        lifetime_years: lifetime.value,
        ops_usd_per_year: ops.value,
        watts: watts.value,
        pue: pue.value,
        kwh_price: kwh.value,
        utilisation: util.value,
    };
    let comparison = onprem::compare(
        &o,
        e.devices,
        e.device_hours,
        e.wall_hours,
        cloud_est.device_hours,
        &prices,
    )?;
    let inputs = vec![purchase, lifetime, ops, watts, pue, kwh, util];
    let mut assumptions: Vec<AssumedFigure> = inputs
        .iter()
        .map(|i| (i.name.clone(), i.source.clone()))
        .chain(
            prices
                .iter()
                .map(|(k, _, s)| (format!("{k} price"), s.clone())),
        )
        .filter(|(_, s)| s.contains(ASSUMPTION))
        .map(|(figure, source)| AssumedFigure { figure, source })
        .collect();
    let assumed: Vec<String> = assumptions.iter().map(|a| a.figure.clone()).collect();
    // Stale prices are published figures, not flopcal assumptions: listed apart.
    let price_warnings: Vec<String> = price_ages.iter().filter_map(PriceAge::warning).collect();
    // The time estimate reads the hardware rows' memory and link tiers.
    let mut rows = vec![cloud_hw];
    rows.extend(onprem_hw.filter(|h| h.name != cloud_hw.name));
    for h in rows {
        for (field, f) in h.assumptions() {
            if field.starts_with("links.") || field.starts_with("memory") {
                assumptions.push(AssumedFigure {
                    figure: format!("{} {field}", h.name),
                    source: f.source.clone(),
                });
            }
        }
    }
    Ok(CompareReport {
        model: e.model.clone(),
        onprem_hardware: e.hardware.clone(),
        cloud_hardware: cloud_hw.name.clone(),
        onprem_mfu: e.mfu,
        onprem_mfu_source: e.mfu_source.clone(),
        cloud_mfu: cloud_est.mfu,
        onprem: o,
        inputs,
        comparison,
        assumed,
        model_constructed: onprem_run.model_constructed,
        price_source: req.estimate.prices.price_source.clone(),
        assumptions,
        price_ages,
        price_warnings,
    })
}
