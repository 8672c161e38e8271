//! Output formats shared by every command that prints results.

use clap::ValueEnum;

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

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::Error::Usage(format!("cannot serialise output as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
