//! `flopcal comm` in the default build (no `mpi` feature): one line saying how to
//! get it, exit 2.
#![cfg(not(feature = "mpi"))]
#![allow(clippy::unwrap_used)]

mod common;

#[test]
fn comm_without_the_mpi_feature_says_how_to_build_it_and_exits_2() {
    let o = common::flopcal()
        .args(["comm", "--max-bytes", "1K"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--features mpi") && err.contains("mpirun"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}
