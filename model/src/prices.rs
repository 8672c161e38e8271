//! How old a price is, and a team's own price sheet.
//!
//! Every catalog price carries the month its page was read (`YYYY-MM`). [`RunDate`] is
//! the day a command runs (the clock, or `$FLOPCAL_TODAY` for reproducible runs and
//! tests); [`PriceAge`] says how many whole months separate the two and warns past
//! [`STALE_AFTER_MONTHS`].
//!
//! A price sheet (`--prices FILE`, CSV or TOML) adds dated prices to the catalog, or
//! replaces those of the same provider, kind and date, and can carry on-prem figures.
//! Its rows go in front of the catalog's, so a sheet's provider is the default for the
//! hardware it prices. Fields:
//!
//! - cloud rows: `provider`, `hardware`, `unit` (`chip` or `instance`),
//!   `chips_per_instance` (for `instance`), at least one of `on_demand`, `preemptible`,
//!   `committed` (USD per unit-hour), `currency` (`USD`), `date` (`YYYY-MM` or
//!   `YYYY-MM-DD`, not after the run date), `source`;
//! - on-prem rows (`provider = on-prem`): `hardware`, `currency`, `date`, `source` and
//!   any of `purchase_per_chip`, `purchase_per_server` with `chips_per_server`,
//!   `lifetime_years`, `ops_per_year` (USD per chip), `watts` (per chip), `pue`,
//!   `kwh_price`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::{Catalog, Figure, Hardware, Price, PriceKind};
use crate::error::ModelError;

/// Environment variable that fixes the run date (`YYYY-MM-DD`), for reproducible runs.
pub const TODAY_ENV: &str = "FLOPCAL_TODAY";
/// A price more than this many months older than the run date is warned about.
pub const STALE_AFTER_MONTHS: i64 = 12;
/// The provider name of a price sheet's on-prem rows.
pub const ONPREM_PROVIDER: &str = "on-prem";

/// The day a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunDate {
    /// Year.
    pub year: i32,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, 1-31.
    pub day: u32,
}

impl RunDate {
    /// `$FLOPCAL_TODAY` if set (a bad value is an error naming it), else the clock (UTC).
    pub fn today() -> Result<RunDate, ModelError> {
        match std::env::var(TODAY_ENV) {
            Ok(v) if !v.trim().is_empty() => RunDate::parse(v.trim()).ok_or_else(|| {
                ModelError::InvalidInput(format!(
                    "${TODAY_ENV} must be a date YYYY-MM-DD (got `{v}`)"
                ))
            }),
            _ => {
                let secs = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                Ok(RunDate::from_days((secs / 86_400) as i64))
            }
        }
    }

    /// A `YYYY-MM-DD` date.
    pub fn parse(s: &str) -> Option<RunDate> {
        let (y, m, d) = parse_date(s)?;
        Some(RunDate {
            year: y,
            month: m,
            day: d?,
        })
    }

    /// The civil date `days` days after 1970-01-01 (Hinnant's algorithm).
    fn from_days(days: i64) -> RunDate {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        RunDate { year, month, day }
    }

    /// `YYYY-MM-DD`.
    pub fn to_text(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn months(&self) -> i64 {
        i64::from(self.year) * 12 + i64::from(self.month) - 1
    }
}

/// `YYYY-MM` or `YYYY-MM-DD` as (year, month, day).
pub fn parse_date(s: &str) -> Option<(i32, u32, Option<u32>)> {
    let parts: Vec<&str> = s.trim().split('-').collect();
    let num = |p: &str, len: usize| -> Option<u32> {
        (p.len() == len && p.chars().all(|c| c.is_ascii_digit()))
            .then(|| p.parse().ok())
            .flatten()
    };
    let (y, m) = (num(parts.first()?, 4)?, num(parts.get(1)?, 2)?);
    if !(1..=12).contains(&m) {
        return None;
    }
    let d = match parts.get(2) {
        None => None,
        Some(p) => {
            let d = num(p, 2)?;
            if !(1..=31).contains(&d) {
                return None;
            }
            Some(d)
        }
    };
    if parts.len() > 3 {
        return None;
    }
    Some((y as i32, m, d))
}

/// Whole months from the month of `date` to the run date's month (negative: a date
/// after it); `None` when `date` is not `YYYY-MM[-DD]`.
pub fn months_old(date: &str, today: &RunDate) -> Option<i64> {
    let (y, m, _) = parse_date(date)?;
    Some(today.months() - (i64::from(y) * 12 + i64::from(m) - 1))
}

/// Whether `date` is after the run date.
pub fn is_future(date: &str, today: &RunDate) -> bool {
    match parse_date(date) {
        Some((y, m, d)) => (y, m, d.unwrap_or(1)) > (today.year, today.month, today.day),
        None => false,
    }
}

/// The age of one price a command used.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PriceAge {
    /// Which price (`h100-sxm on-demand (aws)`).
    pub what: String,
    /// The date its source states (`YYYY-MM`).
    pub date: String,
    /// Whole months before the run date (`None`: the date does not parse).
    pub months_old: Option<i64>,
    /// More than [`STALE_AFTER_MONTHS`] old.
    pub stale: bool,
}

impl PriceAge {
    /// The age of `fig`, named `what`, on `today`.
    pub fn of(what: &str, fig: &Figure, today: &RunDate) -> PriceAge {
        let months = months_old(&fig.date, today);
        PriceAge {
            what: what.to_string(),
            date: fig.date.clone(),
            months_old: months,
            stale: months.is_some_and(|m| m > STALE_AFTER_MONTHS),
        }
    }

    /// `h100-sxm on-demand price dated 2026-11 (1 month old)`.
    pub fn note(&self) -> String {
        let age = match self.months_old {
            Some(1) => " (1 month old)".to_string(),
            Some(m) => format!(" ({m} months old)"),
            None => " (undated)".to_string(),
        };
        format!("{} price dated {}{age}", self.what, self.date)
    }

    /// The warning for a stale price: `h100-sxm on-demand (aws): price from 2023-07,
    /// 41 months old; pass --price or --prices FILE`.
    pub fn warning(&self) -> Option<String> {
        self.stale.then(|| {
            format!(
                "{}: price from {}, {} months old; pass --price or --prices FILE",
                self.what,
                self.date.get(..7).unwrap_or(&self.date),
                self.months_old.unwrap_or_default()
            )
        })
    }
}

/// The ages of the cloud prices of `hw` a command uses: on-demand unless
/// `on_demand_given`, preemptible unless `preemptible_given`, committed when `committed`.
pub fn price_ages(
    hw: &Hardware,
    today: &RunDate,
    on_demand_given: bool,
    preemptible_given: bool,
    committed: bool,
) -> Vec<PriceAge> {
    let mut out = vec![];
    for (use_it, kind, fig) in [
        (!on_demand_given, "on-demand", &hw.price_on_demand),
        (!preemptible_given, "preemptible", &hw.price_preemptible),
        (committed, "committed", &hw.price_committed),
    ] {
        if let (true, Some(f)) = (use_it, fig) {
            let who = f
                .source
                .split_once(':')
                .map(|(p, _)| p.trim())
                .filter(|p| !p.contains(' '))
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            out.push(PriceAge::of(&format!("{} {kind}{who}", hw.name), f, today));
        }
    }
    out
}

/// One provider's price for a hardware row, for `compare --cloud-all`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProviderPrice {
    /// Provider.
    pub provider: String,
    /// Kind of the price (on-demand where the provider publishes one).
    pub kind: PriceKind,
    /// USD per chip-hour.
    pub per_chip_hour: f64,
    /// Date of the price.
    pub date: String,
    /// Its source.
    pub source: String,
}

/// One price per provider of `hw`: its newest on-demand price, else its newest
/// committed, else its newest spot; cheapest first.
pub fn provider_prices(hw: &Hardware) -> Vec<ProviderPrice> {
    let mut out: Vec<ProviderPrice> = hw
        .price_providers()
        .into_iter()
        .filter_map(|p| {
            [PriceKind::OnDemand, PriceKind::Committed1y, PriceKind::Spot]
                .into_iter()
                .find_map(|k| hw.price(k, Some(p)))
        })
        .map(|p: &Price| ProviderPrice {
            provider: p.provider.clone(),
            kind: p.kind,
            per_chip_hour: p.per_chip_hour(),
            date: p.date.clone(),
            source: format!(
                "{}: {} ${}/h for {} chip(s) ({})",
                p.provider, p.instance, p.usd_per_hour, p.chips, p.source
            ),
        })
        .collect();
    out.sort_by(|a, b| a.per_chip_hour.total_cmp(&b.per_chip_hour));
    out
}

/// Unit of a price sheet's cloud price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SheetUnit {
    /// Per chip-hour.
    Chip,
    /// Per instance-hour of `chips_per_instance` chips.
    Instance,
}

/// One cloud row of a price sheet.
#[derive(Debug, Clone, PartialEq)]
pub struct SheetPrice {
    /// Where it is in the file (`row 3`, `prices[2]`).
    pub at: String,
    /// Provider, lower case.
    pub provider: String,
    /// The catalog name of the hardware.
    pub hardware: String,
    /// Unit of the prices.
    pub unit: SheetUnit,
    /// Chips the unit holds.
    pub chips: u32,
    /// On-demand, preemptible and committed, USD per unit-hour.
    pub on_demand: Option<f64>,
    /// Preemptible / spot.
    pub preemptible: Option<f64>,
    /// Committed use.
    pub committed: Option<f64>,
    /// `YYYY-MM[-DD]`.
    pub date: String,
    /// Where the figures come from.
    pub source: String,
}

/// On-prem figures of a price sheet for one hardware row, per chip.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SheetOnPrem {
    /// Where it is in the file.
    pub at: String,
    /// The catalog name of the hardware.
    pub hardware: String,
    /// Purchase price per chip (from `purchase_per_chip`, or `purchase_per_server` /
    /// `chips_per_server`).
    pub purchase_per_chip: Option<Figure>,
    /// The server price and its chips, when the row gives one.
    pub server: Option<(f64, u32)>,
    /// Depreciation lifetime, years.
    pub lifetime_years: Option<Figure>,
    /// Operations overhead, USD per chip per year.
    pub ops_per_year: Option<Figure>,
    /// Power per chip, W.
    pub watts: Option<Figure>,
    /// Power usage effectiveness.
    pub pue: Option<Figure>,
    /// Electricity, USD per kWh.
    pub kwh_price: Option<Figure>,
}

/// A parsed, checked price sheet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceSheet {
    /// The file, as named in messages.
    pub path: String,
    /// Cloud prices, in file order.
    pub prices: Vec<SheetPrice>,
    /// On-prem figures.
    pub onprem: Vec<SheetOnPrem>,
}

fn bad(path: &str, at: &str, field: &str, reason: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidInput(format!("{path} {at}: field `{field}`: {reason}"))
}

/// Split one CSV line into trimmed fields (double quotes around a field; `""` inside
/// is `"`; no embedded newlines). Shared by the price sheet and the NVIDIA tables.
pub(crate) fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

type Record = (String, BTreeMap<String, String>);

fn csv_records(text: &str) -> Vec<Record> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return vec![];
    };
    let names: Vec<String> = csv_fields(header)
        .into_iter()
        .map(|h| h.to_ascii_lowercase().replace([' ', '-'], "_"))
        .collect();
    lines
        .map(|(i, l)| {
            let rec = names
                .iter()
                .cloned()
                .zip(csv_fields(l))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            (format!("row {}", i + 1), rec)
        })
        .collect()
}

fn toml_records(path: &str, text: &str) -> Result<Vec<Record>, ModelError> {
    let doc: toml::Table = toml::from_str(text)
        .map_err(|e| ModelError::InvalidInput(format!("{path}: {}", e.message().trim())))?;
    let rows = match doc.get("prices") {
        Some(toml::Value::Array(a)) => a.clone(),
        _ => {
            return Err(ModelError::InvalidInput(format!(
                "{path}: a TOML price sheet needs [[prices]] tables"
            )))
        }
    };
    let mut out = vec![];
    for (i, r) in rows.iter().enumerate() {
        let at = format!("prices[{}]", i + 1);
        let t = r.as_table().ok_or_else(|| {
            ModelError::InvalidInput(format!("{path} {at}: must be a table of fields"))
        })?;
        let mut rec = BTreeMap::new();
        for (k, v) in t {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Datetime(d) => d.to_string(),
                other => return Err(bad(path, &at, k, format!("unexpected value {other}"))),
            };
            if !s.trim().is_empty() {
                rec.insert(
                    k.to_ascii_lowercase().replace('-', "_"),
                    s.trim().to_string(),
                );
            }
        }
        out.push((at, rec));
    }
    Ok(out)
}

const KNOWN_FIELDS: &[&str] = &[
    "provider",
    "hardware",
    "unit",
    "chips_per_instance",
    "on_demand",
    "preemptible",
    "committed",
    "currency",
    "date",
    "source",
    "instance",
    "purchase_per_chip",
    "purchase_per_server",
    "chips_per_server",
    "lifetime_years",
    "ops_per_year",
    "watts",
    "pue",
    "kwh_price",
];

impl PriceSheet {
    /// Read and check the sheet at `path` (`.toml`: TOML, anything else: CSV).
    pub fn load(path: &Path, cat: &Catalog, today: &RunDate) -> Result<PriceSheet, ModelError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ModelError::InvalidInput(format!("{shown}: cannot read: {e}")))?;
        let toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        PriceSheet::parse(&shown, &text, toml, cat, today)
    }

    /// Parse and check sheet `text` (named `path` in errors).
    pub fn parse(
        path: &str,
        text: &str,
        toml: bool,
        cat: &Catalog,
        today: &RunDate,
    ) -> Result<PriceSheet, ModelError> {
        let records = if toml {
            toml_records(path, text)?
        } else {
            csv_records(text)
        };
        if records.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "{path}: no price rows (a CSV needs a header line and rows)"
            )));
        }
        let mut sheet = PriceSheet {
            path: path.to_string(),
            ..PriceSheet::default()
        };
        let mut seen: Vec<(String, String, String, String)> = vec![];
        for (at, rec) in &records {
            if let Some(k) = rec.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
                return Err(bad(
                    path,
                    at,
                    k,
                    format!("unknown field (known: {})", KNOWN_FIELDS.join(", ")),
                ));
            }
            let need = |f: &str| {
                rec.get(f)
                    .cloned()
                    .ok_or_else(|| bad(path, at, f, "missing"))
            };
            let provider = need("provider")?.to_ascii_lowercase();
            let hw_name = need("hardware")?;
            let hardware = cat
                .hardware(&hw_name)
                .map_err(|e| bad(path, at, "hardware", e))?
                .name
                .clone();
            let currency = need("currency")?;
            if !currency.eq_ignore_ascii_case("usd") {
                return Err(bad(
                    path,
                    at,
                    "currency",
                    format!("unknown currency `{currency}` (prices are in USD)"),
                ));
            }
            let date = need("date")?;
            if parse_date(&date).is_none() {
                return Err(bad(
                    path,
                    at,
                    "date",
                    format!("`{date}` is not a date YYYY-MM or YYYY-MM-DD"),
                ));
            }
            if is_future(&date, today) {
                return Err(bad(
                    path,
                    at,
                    "date",
                    format!("{date} is after the run date {}", today.to_text()),
                ));
            }
            let source = need("source")?;
            let positive = |f: &str| -> Result<Option<f64>, ModelError> {
                rec.get(f)
                    .map(|v| match v.parse::<f64>() {
                        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
                        _ => Err(bad(
                            path,
                            at,
                            f,
                            format!("must be a positive number (got `{v}`)"),
                        )),
                    })
                    .transpose()
            };
            let whole = |f: &str| -> Result<Option<u32>, ModelError> {
                rec.get(f)
                    .map(|v| match v.parse::<u32>() {
                        Ok(n) if n >= 1 => Ok(n),
                        _ => Err(bad(
                            path,
                            at,
                            f,
                            format!("must be a whole number >= 1 (got `{v}`)"),
                        )),
                    })
                    .transpose()
            };
            if let Some((_, _, _, first)) = seen
                .iter()
                .find(|(p, h, d, _)| *p == provider && *h == hardware && *d == date)
            {
                return Err(ModelError::InvalidInput(format!(
                    "{path}: {first} and {at} both price {provider} {hardware} on {date}; keep one"
                )));
            }
            seen.push((provider.clone(), hardware.clone(), date.clone(), at.clone()));
            let fig = |value: f64, what: &str| Figure {
                value,
                source: format!("{path} {at} ({what}): {source}"),
                date: date.clone(),
            };
            if provider == ONPREM_PROVIDER || provider == "onprem" {
                let per_chip = positive("purchase_per_chip")?;
                let server = positive("purchase_per_server")?;
                let chips_per_server = whole("chips_per_server")?;
                let server = match (server, chips_per_server) {
                    (Some(s), Some(n)) => Some((s, n)),
                    (Some(_), None) => return Err(bad(path, at, "chips_per_server", "missing")),
                    _ => None,
                };
                let o = SheetOnPrem {
                    at: at.clone(),
                    hardware,
                    purchase_per_chip: per_chip.map(|v| fig(v, "purchase per chip")).or_else(
                        || {
                            server.map(|(s, n)| {
                                fig(
                                    s / f64::from(n),
                                    &format!("purchase ${s} per server / {n} chips"),
                                )
                            })
                        },
                    ),
                    server,
                    lifetime_years: positive("lifetime_years")?.map(|v| fig(v, "lifetime")),
                    ops_per_year: positive("ops_per_year")?.map(|v| fig(v, "ops per chip-year")),
                    watts: positive("watts")?.map(|v| fig(v, "W per chip")),
                    pue: positive("pue")?.map(|v| fig(v, "PUE")),
                    kwh_price: positive("kwh_price")?.map(|v| fig(v, "USD per kWh")),
                };
                if o.purchase_per_chip.is_none()
                    && o.lifetime_years.is_none()
                    && o.ops_per_year.is_none()
                    && o.watts.is_none()
                    && o.pue.is_none()
                    && o.kwh_price.is_none()
                {
                    return Err(bad(
                        path,
                        at,
                        "purchase_per_chip",
                        "an on-prem row needs at least one figure (purchase_per_chip, purchase_per_server, lifetime_years, ops_per_year, watts, pue, kwh_price)",
                    ));
                }
                if let Some(p) = &o.pue {
                    if p.value < 1.0 {
                        return Err(bad(
                            path,
                            at,
                            "pue",
                            format!("must be >= 1 (got {})", p.value),
                        ));
                    }
                }
                sheet.onprem.push(o);
                continue;
            }
            let unit = match need("unit")?.to_ascii_lowercase().as_str() {
                "chip" | "gpu" => SheetUnit::Chip,
                "instance" => SheetUnit::Instance,
                other => {
                    return Err(bad(
                        path,
                        at,
                        "unit",
                        format!("`{other}` is not chip or instance"),
                    ))
                }
            };
            let chips = match unit {
                SheetUnit::Chip => 1,
                SheetUnit::Instance => whole("chips_per_instance")?
                    .ok_or_else(|| bad(path, at, "chips_per_instance", "missing"))?,
            };
            let p = SheetPrice {
                at: at.clone(),
                provider,
                hardware,
                unit,
                chips,
                on_demand: positive("on_demand")?,
                preemptible: positive("preemptible")?,
                committed: positive("committed")?,
                date: date.clone(),
                source: rec
                    .get("instance")
                    .map(|i| format!("{i}: {source}"))
                    .unwrap_or(source),
            };
            if p.on_demand.is_none() && p.preemptible.is_none() && p.committed.is_none() {
                return Err(bad(
                    path,
                    at,
                    "on_demand",
                    "missing (a price row needs on_demand, preemptible or committed)",
                ));
            }
            sheet.prices.push(p);
        }
        Ok(sheet)
    }

    /// Put the sheet's prices and on-prem purchase, lifetime and ops figures into `cat`:
    /// a price of the same provider, kind and date replaces the catalog's, and the
    /// sheet's rows go first so that its provider is the hardware's default.
    pub fn apply(&self, cat: &mut Catalog) -> Result<(), ModelError> {
        for hw in &mut cat.hardware {
            let mine: Vec<Price> = self
                .prices
                .iter()
                .filter(|p| p.hardware == hw.name)
                .flat_map(|p| {
                    [
                        (PriceKind::OnDemand, p.on_demand),
                        (PriceKind::Spot, p.preemptible),
                        (PriceKind::Committed1y, p.committed),
                    ]
                    .into_iter()
                    .filter_map(move |(kind, v)| {
                        v.map(|usd| Price {
                            provider: p.provider.clone(),
                            kind,
                            instance: format!(
                                "{} {} ({})",
                                self.path,
                                p.at,
                                match p.unit {
                                    SheetUnit::Chip => "per chip".to_string(),
                                    SheetUnit::Instance => format!("{} chips", p.chips),
                                }
                            ),
                            usd_per_hour: usd,
                            chips: p.chips,
                            source: p.source.clone(),
                            date: p.date.clone(),
                        })
                    })
                })
                .collect();
            if !mine.is_empty() {
                hw.prices.retain(|old| {
                    !mine.iter().any(|n| {
                        n.kind == old.kind
                            && n.date == old.date
                            && n.provider.eq_ignore_ascii_case(&old.provider)
                    })
                });
                let rest = std::mem::take(&mut hw.prices);
                hw.prices = mine.into_iter().chain(rest).collect();
            }
            for o in self.onprem.iter().filter(|o| o.hardware == hw.name) {
                let per = f64::from(hw.chips_per_device);
                let scaled = |f: &Figure| Figure {
                    value: f.value * per,
                    ..f.clone()
                };
                if let Some(f) = &o.purchase_per_chip {
                    hw.purchase_price = Some(scaled(f));
                    // An ops overhead derived from the old purchase price is recomputed.
                    if hw.derived.iter().any(|d| d == "ops_per_year") {
                        hw.ops_per_year = None;
                    }
                }
                if let Some(f) = &o.lifetime_years {
                    hw.lifetime_years = Some(f.clone());
                }
                if let Some(f) = &o.ops_per_year {
                    hw.ops_per_year = Some(scaled(f));
                    hw.derived.retain(|d| d != "ops_per_year");
                }
            }
        }
        let src = cat.price_source.clone();
        cat.select_price_source(src.as_deref())
    }

    /// The on-prem figures the sheet gives for `hardware` (catalog name).
    pub fn onprem_for(&self, hardware: &str) -> Option<&SheetOnPrem> {
        self.onprem.iter().rev().find(|o| o.hardware == hardware)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn today() -> RunDate {
        RunDate::parse("2026-12-02").unwrap()
    }

    #[test]
    fn a_2023_07_price_is_41_months_old_on_2026_12_02_and_stale() {
        let f = Figure {
            value: 1.0,
            source: "x".into(),
            date: "2023-07".into(),
        };
        let a = PriceAge::of("h100-sxm on-demand (aws)", &f, &today());
        assert_eq!(a.months_old, Some(41));
        assert_eq!(
            a.warning().unwrap(),
            "h100-sxm on-demand (aws): price from 2023-07, 41 months old; pass --price or --prices FILE"
        );
        let fresh = Figure {
            date: "2025-12".into(),
            ..f
        };
        let a = PriceAge::of("x", &fresh, &today());
        assert_eq!(
            (a.months_old, a.stale, a.warning()),
            (Some(12), false, None)
        );
    }

    #[test]
    fn the_clock_converts_days_to_the_civil_date() {
        assert_eq!(RunDate::from_days(0).to_text(), "1970-01-01");
        assert_eq!(RunDate::from_days(20_425).to_text(), "2025-12-03");
        assert_eq!(RunDate::from_days(11_016).to_text(), "2000-02-29");
    }

    #[test]
    fn dates_parse_strictly_and_future_ones_are_found() {
        assert_eq!(parse_date("2026-09"), Some((2026, 9, None)));
        assert_eq!(parse_date("2026-09-30"), Some((2026, 9, Some(30))));
        for bad in ["2026-13", "26-09", "2026/09", "2026-09-3", ""] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert!(is_future("2026-12-03", &today()));
        assert!(!is_future("2026-12-02", &today()));
        assert!(is_future("2027-01", &today()));
        assert!(!is_future("2026-12", &today()));
    }

    #[test]
    fn a_sheet_price_goes_first_and_becomes_the_default() {
        let mut cat = Catalog::embedded().clone();
        let csv = "provider,hardware,unit,chips_per_instance,on_demand,currency,date,source\nacme,h100,instance,8,16,USD,2026-11,negotiated quote\n";
        let s = PriceSheet::parse("p.csv", csv, false, &cat, &today()).unwrap();
        s.apply(&mut cat).unwrap();
        let h = cat.hardware("h100").unwrap();
        assert_eq!(h.price_providers()[0], "acme");
        assert_eq!(h.price_on_demand.as_ref().unwrap().value, 2.0);
    }

    #[test]
    fn bad_rows_name_the_row_and_the_field() {
        let cat = Catalog::embedded();
        let head = "provider,hardware,unit,on_demand,currency,date,source\n";
        for (row, want) in [
            (
                "acme,h100,chip,2,USD,2026-11,\n",
                "row 2: field `source`: missing",
            ),
            (
                "acme,h100,chip,-2,USD,2026-11,x\n",
                "row 2: field `on_demand`: must be a positive",
            ),
            (
                "acme,h100,chip,0,USD,2026-11,x\n",
                "row 2: field `on_demand`",
            ),
            (
                "acme,h1000,chip,2,USD,2026-11,x\n",
                "row 2: field `hardware`: unknown hardware",
            ),
            (
                "acme,h100,chip,2,EUR,2026-11,x\n",
                "row 2: field `currency`",
            ),
            (
                "acme,h100,chip,2,USD,2027-01,x\n",
                "row 2: field `date`: 2027-01 is after",
            ),
        ] {
            let e = PriceSheet::parse("p.csv", &format!("{head}{row}"), false, cat, &today())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        let dup =
            format!("{head}acme,h100,chip,2,USD,2026-11,x\nacme,h100-sxm,chip,3,USD,2026-11,y\n");
        let e = PriceSheet::parse("p.csv", &dup, false, cat, &today())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("row 2 and row 3 both price acme h100-sxm on 2026-11"),
            "{e}"
        );
    }

    #[test]
    fn toml_sheets_carry_on_prem_server_prices() {
        let cat = Catalog::embedded();
        let t = r#"
[[prices]]
provider = "on-prem"
hardware = "h100"
purchase_per_server = 300000
chips_per_server = 8
currency = "USD"
date = "2026-10"
source = "our quote"
"#;
        let s = PriceSheet::parse("p.toml", t, true, cat, &today()).unwrap();
        let o = s.onprem_for("h100-sxm").unwrap();
        assert_eq!(o.purchase_per_chip.as_ref().unwrap().value, 37_500.0);
        assert_eq!(o.server, Some((300_000.0, 8)));
    }
}
