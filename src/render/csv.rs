//! CSV output: one row per result, written into memory, then printed whole.

use crate::{Error, Result};

/// A CSV writer into memory (the crate's, with its default quoting).
pub fn writer() -> csv::Writer<Vec<u8>> {
    csv::Writer::from_writer(vec![])
}

/// The error of writing CSV.
pub fn error(e: impl std::fmt::Display) -> Error {
    Error::Usage(format!("cannot write CSV: {e}"))
}

/// Finish a writer from [`writer`]: its text.
pub fn finish(w: csv::Writer<Vec<u8>>) -> Result<String> {
    String::from_utf8(w.into_inner().map_err(error)?).map_err(error)
}

/// Finish a writer from [`writer`] and print its text.
pub fn print(w: csv::Writer<Vec<u8>>) -> Result<()> {
    super::stdout(&finish(w)?)
}
