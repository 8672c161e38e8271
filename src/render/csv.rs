//! CSV output: one row per result, written into memory, then printed whole.

use crate::{Error, Result};

/// A CSV writer into memory (the crate's, with its default quoting).
pub fn writer() -> csv::Writer<Vec<u8>> {
    csv::Writer::from_writer(vec![])
}

/// The error of writing CSV (the result files' own, [`flopcal_bench::results::csv_error`]).
pub fn error(e: impl std::fmt::Display) -> Error {
    flopcal_bench::results::csv_error(e).into()
}

/// Finish a writer from [`writer`]: its text ([`flopcal_bench::results::csv_text`]).
pub fn finish(w: csv::Writer<Vec<u8>>) -> Result<String> {
    Ok(flopcal_bench::results::csv_text(w)?)
}

/// Finish a writer from [`writer`] and print its text.
pub fn print(w: csv::Writer<Vec<u8>>) -> Result<()> {
    super::stdout(&finish(w)?)
}
