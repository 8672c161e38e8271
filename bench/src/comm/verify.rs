//! What every rank sends and what it must receive, element by element, so each
//! collective's output is checked against values computed independently of MPI.
//!
//! Rank r's input element i is the small integer `(7r + i) mod 5 + 1` (never zero,
//! so a collective that leaves a buffer untouched or zeroed fails). Sums of such
//! integers are exact in f32, and in bf16/f16 while they stay within the format's
//! integer range (5·ranks ≤ 256 for bf16, ≤ 2048 for f16); beyond that a tolerance
//! of the format's rounding per reduction step applies.

use super::{Collective, CommDtype};

/// Rank `rank`'s input value at global index `i`.
pub fn value(rank: u32, i: u64) -> f64 {
    ((u64::from(rank) * 7 + i) % 5 + 1) as f64
}

/// Elements in the send and receive buffers of one rank, for `count` elements of
/// the named size (see [`super::element_count`]).
pub fn buffer_lens(collective: Collective, count: u64, ranks: u32) -> (u64, u64) {
    let block = count / u64::from(ranks.max(1));
    match collective {
        Collective::AllGather => (block, count),
        Collective::ReduceScatter => (count, block),
        Collective::Broadcast => (0, count),
        _ => (count, count),
    }
}

/// Initial value of `rank`'s send buffer at `i` (for broadcast: of its one buffer,
/// which only the root fills).
pub fn input(collective: Collective, rank: u32, i: u64) -> f64 {
    match collective {
        Collective::Broadcast if rank != 0 => 0.0,
        Collective::Broadcast => value(0, i),
        _ => value(rank, i),
    }
}

/// What `rank` must hold at receive index `i` afterwards.
pub fn expected(collective: Collective, rank: u32, ranks: u32, count: u64, i: u64) -> f64 {
    let n = ranks.max(1);
    let block = count / u64::from(n);
    match collective {
        Collective::AllReduce => (0..n).map(|q| value(q, i)).sum(),
        Collective::AllGather => value((i / block) as u32, i % block),
        Collective::ReduceScatter => (0..n).map(|q| value(q, u64::from(rank) * block + i)).sum(),
        Collective::Broadcast => value(0, i),
        Collective::AllToAll => value((i / block) as u32, u64::from(rank) * block + i % block),
        Collective::SendRecv => value((rank + n - 1) % n, i),
    }
}

/// Relative error allowed in `dtype` for a reduction over `ranks` inputs.
pub fn tolerance(dtype: CommDtype, ranks: u32) -> f64 {
    let largest = 5.0 * f64::from(ranks.max(1));
    let (exact_to, eps) = match dtype {
        CommDtype::F32 => (16_777_216.0, f64::from(f32::EPSILON)),
        CommDtype::Bf16 => (256.0, 1.0 / 128.0),
        CommDtype::F16 => (2048.0, 1.0 / 1024.0),
    };
    if largest <= exact_to {
        0.0
    } else {
        eps * f64::from(ranks).log2().ceil()
    }
}

/// Outcome of checking one rank's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    /// Elements compared.
    pub checked: u64,
    /// Largest relative error.
    pub max_rel_err: f64,
    /// Whether every element was within tolerance.
    pub passed: bool,
}

/// Compare `len` received elements, read through `got`, with [`expected`].
pub fn check(
    collective: Collective,
    dtype: CommDtype,
    rank: u32,
    ranks: u32,
    count: u64,
    len: u64,
    got: impl Fn(u64) -> f64,
) -> Check {
    let tol = tolerance(dtype, ranks);
    let mut worst: f64 = 0.0;
    for i in 0..len {
        let want = expected(collective, rank, ranks, count, i);
        let have = got(i);
        let err = if have.is_finite() {
            (have - want).abs() / want.abs()
        } else {
            f64::INFINITY
        };
        worst = worst.max(err);
    }
    Check {
        checked: len,
        max_rel_err: worst,
        passed: worst <= tol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulate a collective in plain Rust from the inputs, to pin `expected`
    /// against the collective's definition rather than against itself.
    fn simulate(c: Collective, ranks: u32, count: u64) -> Vec<Vec<f64>> {
        let (send, recv) = buffer_lens(c, count, ranks);
        let block = count / u64::from(ranks);
        let inputs: Vec<Vec<f64>> = (0..ranks)
            .map(|r| {
                (0..send.max(if c == Collective::Broadcast { count } else { 0 }))
                    .map(|i| input(c, r, i))
                    .collect()
            })
            .collect();
        (0..ranks)
            .map(|r| {
                (0..recv)
                    .map(|i| match c {
                        Collective::AllReduce => inputs.iter().map(|b| b[i as usize]).sum(),
                        Collective::AllGather => inputs[(i / block) as usize][(i % block) as usize],
                        Collective::ReduceScatter => inputs
                            .iter()
                            .map(|b| b[(u64::from(r) * block + i) as usize])
                            .sum(),
                        Collective::Broadcast => inputs[0][i as usize],
                        Collective::AllToAll => {
                            inputs[(i / block) as usize]
                                [(u64::from(r) * block + i % block) as usize]
                        }
                        Collective::SendRecv => {
                            inputs[((r + ranks - 1) % ranks) as usize][i as usize]
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn expected_values_match_a_plain_simulation_of_every_collective() {
        for c in Collective::ALL {
            for ranks in [1, 2, 3, 4] {
                let count = 12;
                let out = simulate(c, ranks, count);
                for (r, buf) in out.iter().enumerate() {
                    let chk = check(
                        c,
                        CommDtype::F32,
                        r as u32,
                        ranks,
                        count,
                        buf.len() as u64,
                        |i| buf[i as usize],
                    );
                    assert!(chk.passed, "{c:?} ranks {ranks} rank {r}: {chk:?}");
                }
            }
        }
    }

    #[test]
    fn a_collective_that_does_nothing_or_mixes_up_ranks_fails() {
        let count = 8;
        let zeros = check(
            Collective::AllReduce,
            CommDtype::F32,
            0,
            2,
            count,
            count,
            |_| 0.0,
        );
        assert!(!zeros.passed);
        let stale = check(
            Collective::AllReduce,
            CommDtype::F32,
            0,
            2,
            count,
            count,
            |i| input(Collective::AllReduce, 0, i),
        );
        assert!(!stale.passed);
        // Rank 1 receiving its own block instead of rank 0's.
        let swapped = check(
            Collective::SendRecv,
            CommDtype::F32,
            1,
            2,
            count,
            count,
            |i| value(1, i),
        );
        assert!(!swapped.passed);
        let nan = check(
            Collective::Broadcast,
            CommDtype::Bf16,
            1,
            2,
            count,
            count,
            |_| f64::NAN,
        );
        assert!(!nan.passed);
    }

    #[test]
    fn small_groups_are_checked_exactly_even_in_bf16() {
        assert_eq!(tolerance(CommDtype::Bf16, 8), 0.0);
        assert!(tolerance(CommDtype::Bf16, 64) > 0.0);
    }
}
