//! The CPU caches Linux reports for core 0 (`/sys/devices/system/cpu/cpu0/cache`):
//! what sizes the working sets that must live in, or fall out of, a cache level (the
//! stream ceilings' levels, the hand-over GEMMs' cold operand pool).

use std::path::PathBuf;

/// One cache of core 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuCache {
    /// Level (1 for L1).
    pub level: u32,
    /// An instruction cache (not data or unified).
    pub instruction: bool,
    /// Size in bytes.
    pub bytes: u64,
}

/// Core 0's caches in sysfs index order; empty where sysfs reports none (not Linux).
pub fn cpu0_caches() -> Vec<CpuCache> {
    let Ok(entries) = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache") else {
        return Vec::new();
    };
    let mut indexed: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let n = e
                .file_name()
                .to_str()?
                .strip_prefix("index")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    indexed.sort();
    indexed
        .into_iter()
        .filter_map(|(_, dir)| {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
            Some(CpuCache {
                level: read("level")?.trim().parse().ok()?,
                instruction: read("type").is_some_and(|t| t.trim() == "Instruction"),
                bytes: parse_cache_size(read("size")?.trim())?,
            })
        })
        .collect()
}

/// The largest data or unified cache core 0 reports (the last level); `None` where it
/// reports none.
pub fn last_level_cache_bytes() -> Option<u64> {
    cpu0_caches()
        .iter()
        .filter(|c| !c.instruction)
        .map(|c| c.bytes)
        .max()
}

/// `32K`, `2048K`, `480M` or a plain byte count, as sysfs prints a cache size.
fn parse_cache_size(s: &str) -> Option<u64> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_read_as_sysfs_prints_them() {
        assert_eq!(parse_cache_size("32K"), Some(32 << 10));
        assert_eq!(parse_cache_size("491520K"), Some(480 << 20));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("4096"), Some(4096));
        assert_eq!(parse_cache_size("12X"), None);
        assert_eq!(parse_cache_size(""), None);
    }
}
