//! Value parsers for flags that several commands share.

/// Parse a fraction given as `0.05` or `5%`.
pub fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("`{s}` is not a number; give a fraction (0.05) or a percentage (5%)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("`{s}` must be a non-negative fraction"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse_as_decimals_or_percentages() {
        assert_eq!(parse_fraction("0.05").unwrap(), 0.05);
        assert!((parse_fraction("5%").unwrap() - 0.05).abs() < 1e-12);
        assert!(parse_fraction("five").is_err());
        assert!(parse_fraction("-1").is_err());
    }
}
