//! The CPU thread pool kernels and the training step run on. Its own test binary:
//! rayon's global pool is built once per process.

use flopcal_bench::device::configure_threads;

#[test]
fn the_calling_thread_is_worker_zero_so_parallel_ops_split_over_it_and_n_minus_one_workers() {
    assert_eq!(configure_threads(Some(2)).unwrap(), 2);
    assert_eq!(rayon::current_num_threads(), 2);
    assert_eq!(rayon::current_thread_index(), Some(0));
    // A join from this thread runs its first half here, as a GEMM's split does.
    let (here, _) = rayon::join(rayon::current_thread_index, || ());
    assert_eq!(here, Some(0));
}
