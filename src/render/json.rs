//! JSON output: the value pretty-printed, nothing else on stdout.

/// Print `value` as pretty JSON on stdout.
pub fn print<T: serde::Serialize>(value: &T) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| crate::Error::Usage(format!("cannot serialise output as JSON: {e}")))?;
    super::stdout(&format!("{text}\n"))
}
