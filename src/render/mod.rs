//! Everything a command prints, one module per output format: [`table`] (the human
//! format: tables, lines and number formats), [`csv`], [`json`] and [`markdown`].
//! Each builds text; [`stdout`] is the one way it reaches stdout.

use clap::ValueEnum;

pub mod csv;
pub mod json;
pub mod markdown;
pub mod table;

/// How a command prints its results on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable table (default).
    #[default]
    Table,
    /// Machine-readable JSON; nothing else is printed on stdout.
    Json,
    /// One CSV row per result.
    Csv,
}

/// Write `text` to stdout and flush it. A closed stdout (broken pipe) is
/// [`crate::Error::StdoutClosed`], which ends the program quietly with exit 0.
pub fn stdout(text: &str) -> crate::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => crate::Error::StdoutClosed,
            _ => crate::Error::io("<stdout>", e),
        })
}

/// Make a closed stdout end the program quietly with exit 0 wherever it is noticed.
///
/// [`stdout`] reports it as an error; a `print!` anywhere (a dependency's, or one
/// added by mistake) would panic instead ("failed printing to stdout"). This panic
/// hook turns exactly that panic into `exit(0)` (the reader is gone, nothing is left
/// to say to it) and leaves every other panic to the default hook.
pub fn exit_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Print the warning of each stale price in `ages` on stderr.
pub fn warn_stale(ages: &[flopcal_model::prices::PriceAge]) {
    for w in ages
        .iter()
        .filter_map(flopcal_model::prices::PriceAge::warning)
    {
        eprintln!("warning: {w}");
    }
}
