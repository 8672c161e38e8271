//! Measured reference GEMM tables shipped as data (`catalog/gemm/*.csv`): what a chip
//! reached on each GEMM shape, read into [`GemmTable`].

use serde::Serialize;

use crate::error::ModelError;

/// Measured reference GEMM tables shipped as data, by canonical hardware name.
pub(super) const GEMM_TABLES: &[(&str, &str)] = &[
    ("b200", include_str!("gemm/b200.csv")),
    ("mi300x", include_str!("gemm/mi300x.csv")),
];

/// One measured GEMM: `b` independent `m×k · k×n` products in `dtype` ran at `flops`
/// FLOP/s, counting `2·b·m·n·k` FLOPs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemmPoint {
    /// Data type (`bf16`).
    pub dtype: String,
    /// Batch of independent matmuls.
    pub b: u64,
    /// Rows of the output.
    pub m: u64,
    /// Columns of the output.
    pub n: u64,
    /// Reduction dimension.
    pub k: u64,
    /// Achieved FLOP/s.
    pub flops: f64,
}

/// A published table of measured GEMM throughput for one accelerator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemmTable {
    /// Where the table comes from: its header comment (file, repository, commit).
    pub source: String,
    /// The measured points.
    pub points: Vec<GemmPoint>,
}

/// Parse a GEMM table: `#` comment lines (the source), a `dtype,b,m,n,k,flops`
/// header, then one point per line; errors name `path` and the line.
pub fn parse_gemm_table(path: &str, text: &str) -> Result<GemmTable, ModelError> {
    let bad = |line: usize, reason: String| ModelError::BadCatalog {
        path: path.to_string(),
        line: Some(line),
        field: "gemm".into(),
        reason,
    };
    let mut source = vec![];
    let mut points = vec![];
    let mut header = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(c) = line.strip_prefix('#') {
            source.push(c.trim().to_string());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if !header {
            if line != "dtype,b,m,n,k,flops" {
                return Err(bad(
                    i + 1,
                    format!("expected the header dtype,b,m,n,k,flops (got `{line}`)"),
                ));
            }
            header = true;
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 6 {
            return Err(bad(i + 1, format!("expected 6 fields (got {})", f.len())));
        }
        let dim = |j: usize| {
            f[j].parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad(i + 1, format!("`{}` is not a positive whole number", f[j])))
        };
        let flops = f[5]
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| bad(i + 1, format!("`{}` is not a positive FLOP/s", f[5])))?;
        points.push(GemmPoint {
            dtype: f[0].to_ascii_lowercase(),
            b: dim(1)?,
            m: dim(2)?,
            n: dim(3)?,
            k: dim(4)?,
            flops,
        });
    }
    Ok(GemmTable {
        source: source.join(" "),
        points,
    })
}
