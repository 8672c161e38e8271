//! Text output shared by the commands: writing to stdout (a closed pipe is not an
//! error), CSV in memory, and number formats a reader takes in at a glance.

use crate::{Error, Result};

/// `writeln!` into a `String` (writing to a `String` cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
pub(crate) use outln;

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic or a message.
pub fn emit(text: &str) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes()).and_then(|()| o.flush());
}

/// The error of writing CSV, into memory or to stdout.
pub fn csv_error(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("cannot write CSV: {e}"))
}

/// Finish a CSV writer that wrote into memory: its text.
pub fn csv_string(w: csv::Writer<Vec<u8>>) -> Result<String> {
    String::from_utf8(w.into_inner().map_err(csv_error)?).map_err(csv_error)
}

/// Finish a CSV writer that wrote into memory and print it.
pub fn emit_csv(w: csv::Writer<Vec<u8>>) -> Result<()> {
    emit(&csv_string(w)?);
    Ok(())
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

pub fn usd(x: Option<f64>) -> String {
    x.map(|v| format!("${}", thousands(v)))
        .unwrap_or_else(|| "—".into())
}

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

pub fn sci(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3e}")).unwrap_or_else(|| "—".into())
}

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
        l.recompute.as_str(),
        l.attention.as_str()
    )
}
