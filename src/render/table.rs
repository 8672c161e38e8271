//! The human format: tables, lines and the number formats a reader takes in at a
//! glance. Commands build the whole text, then print it with [`super::stdout`].

use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};

/// `writeln!` into a `String` (writing to a `String` cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use outln;

/// A table with the house style and this header.
pub fn new<T: Into<comfy_table::Cell>>(header: impl IntoIterator<Item = T>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let s = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Dollars with thousands separators, or a dash when there is no figure.
pub fn usd(x: Option<f64>) -> String {
    x.map(|v| format!("${}", thousands(v)))
        .unwrap_or_else(|| "—".into())
}

/// A number at the precision its size needs, or a dash.
pub fn num(x: Option<f64>) -> String {
    x.map(|v| {
        if v.abs() >= 100.0 {
            thousands(v)
        } else {
            format!("{v:.2}")
        }
    })
    .unwrap_or_else(|| "—".into())
}

/// Scientific notation, or a dash.
pub fn sci(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3e}")).unwrap_or_else(|| "—".into())
}

/// A fraction as a percentage, or a dash.
pub fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "—".into())
}

/// Wall-clock duration in the unit a reader takes in at a glance.
pub fn human_hours(h: f64) -> String {
    if !h.is_finite() {
        "—".into()
    } else if h < 48.0 {
        format!("{h:.1} h")
    } else if h < 24.0 * 365.0 {
        format!("{:.1} days", h / 24.0)
    } else {
        format!("{:.1} years", h / (24.0 * 365.25))
    }
}

/// One line of a layout, as a reader writes it.
pub fn layout_text(l: &flopcal_model::layout::Layout) -> String {
    format!(
        "tp {}{} pp {} dp {}{} b {} v {}{} zero {} recompute {} {}",
        l.tp,
        if l.cp > 1 {
            format!(" cp {}", l.cp)
        } else {
            String::new()
        },
        l.pp,
        l.dp,
        if l.ep > 1 {
            format!(" ep {}", l.ep)
        } else {
            String::new()
        },
        l.microbatch,
        l.virtual_stages,
        if l.sequence_parallel { " sp" } else { "" },
        l.zero.level(),
        l.recompute_text(),
        l.attention.as_str()
    )
}
