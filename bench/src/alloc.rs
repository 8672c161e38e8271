//! Allocator policy: keep freed pages, as a training framework's caching allocator does.
//!
//! candle allocates a fresh output for every op. The binary uses mimalloc as its global
//! allocator (glibc turned every large buffer into a fresh `mmap`, so memory-bound
//! kernels measured page faults: STREAM scale on 64 MiB arrays 2.8 GB/s with glibc vs
//! 16.9 GB/s with mimalloc). mimalloc still purges (decommits) freed memory after a
//! delay and commits arena memory lazily, so a kernel re-faults its buffers whenever
//! they were purged between iterations. Measured on the 2-core VM, same run (median of
//! `profile --quick --no-peak`, f32):
//!
//! | kernel | default | purge off | purge off + eager arena commit |
//! |---|---|---|---|
//! | layernorm 1024×768 | 7.26 ms | 0.56 ms | 0.25 ms |
//! | softmax 12288×128 | 7.07 ms | 2.85 ms | 1.69 ms |
//! | SDPA b8 h12 s128 | 15.7 ms | 8.6 ms | 6.8 ms |
//!
//! PyTorch's and JAX's allocators never hand memory back during training, so flopcal
//! measures with both options set: the kernel, not the kernel's page faults.

use std::os::raw::{c_int, c_long};

/// `mi_option_arena_eager_commit` in `mi_option_e` (mimalloc v2 and v3).
const MI_OPTION_ARENA_EAGER_COMMIT: c_int = 4;
/// `mi_option_purge_delay` in `mi_option_e` (mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: c_int = 15;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

/// Keep freed pages for reuse and commit arena memory eagerly. Call once at start-up,
/// before the first kernel runs.
pub fn keep_freed_pages() {
    // Naming the crate makes sure the mimalloc library is linked into every binary
    // that links this one (the `flopcal` binary uses it as its global allocator).
    let _ = mimalloc::MiMalloc;
    // SAFETY: mimalloc's option setters take plain integers and are thread-safe;
    // a purge delay of -1 means "never purge", 1 means "enabled".
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 1);
    }
}

/// Whether the options are in force (for tests and the result fingerprint).
pub fn pages_kept() -> bool {
    // SAFETY: reading an option has no side effects beyond its lazy initialisation.
    unsafe {
        mi_option_get(MI_OPTION_PURGE_DELAY) == -1
            && mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_the_policy_is_visible_through_mimallocs_own_getters() {
        keep_freed_pages();
        assert!(pages_kept());
    }
}
