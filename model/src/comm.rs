//! Collective communication cost: `α·steps + factor·n / bw` on the link tier a group
//! spans (the α–β model, Hockney 1994; ring factors as in Thakur, Rabenseifner & Gropp
//! 2005 and NCCL's "bus bandwidth" convention).
//!
//! `n` is the full buffer per device (the gradient for an all-reduce, the gathered
//! tensor for an all-gather). With `k` devices in a ring:
//!
//! | collective | bytes sent per device | latency steps |
//! |---|---|---|
//! | all-reduce | `2(k−1)/k · n` | `2(k−1)` |
//! | all-gather, reduce-scatter | `(k−1)/k · n` | `k−1` |
//! | all-to-all | `(k−1)/k · n` | `k−1` |
//! | point-to-point | `n` | 1 |
//!
//! `bw` is the tier's per-device one-way bandwidth times the achievable fraction
//! (`link_efficiency`, a calibration parameter: nominal link rates are not reached).

use crate::network::MeasuredLinks;
use crate::system::{System, Tier};

pub use crate::collective::RingCollective;

/// Seconds for `op` over `k` devices of `n` bytes each on `tier`, reaching
/// `link_efficiency` of its nominal bandwidth. Zero for a group of one.
pub fn time(op: RingCollective, n_bytes: f64, k: u64, tier: &Tier, link_efficiency: f64) -> f64 {
    if k <= 1 && op != RingCollective::SendRecv {
        return 0.0;
    }
    let (beta, steps) = op.factors(k);
    steps * tier.latency_s + beta * n_bytes / (tier.bw * link_efficiency)
}

/// As [`time`], but from the measured line where `measured` replaces `tier`'s figures
/// ([`MeasuredLinks::time_s`]; no link efficiency is applied to a measurement).
pub fn time_with(
    op: RingCollective,
    n_bytes: f64,
    k: u64,
    tier: &Tier,
    link_efficiency: f64,
    measured: Option<&MeasuredLinks>,
) -> f64 {
    measured
        .and_then(|m| m.time_s(&tier.name, op, n_bytes, k))
        .unwrap_or_else(|| time(op, n_bytes, k, tier, link_efficiency))
}

/// [`group_time_with`] on the catalog's figures only.
pub fn group_time(
    op: RingCollective,
    n_bytes: f64,
    k: u64,
    stride: u64,
    sys: &System,
    link_efficiency: f64,
) -> f64 {
    group_time_with(op, n_bytes, k, stride, sys, link_efficiency, None)
}

/// Seconds for `op` over a group of `k` devices placed `stride` apart, hierarchically
/// when the group spans two tiers: `k₁` (the largest divisor of `k` that fits) members share an inner domain and `k₂ = k/k₁`
/// domains talk over the outer tier. All-reduce = inner reduce-scatter + outer
/// all-reduce of `n/k₁` + inner all-gather; all-gather (reduce-scatter) = outer
/// on `n/k₁` + inner on `n`; all-to-all = the slower of the outer tier carrying the
/// share bound for other domains and the inner tier carrying the rest; sends run on
/// the outer tier. A tier that
/// `measured` replaces is timed from its measured lines.
pub fn group_time_with(
    op: RingCollective,
    n_bytes: f64,
    k: u64,
    stride: u64,
    sys: &System,
    link_efficiency: f64,
    measured: Option<&MeasuredLinks>,
) -> f64 {
    let time = |op, n, k, tier, e| time_with(op, n, k, tier, e, measured);
    let outer = sys.tier_for(stride.saturating_mul(k));
    let inner = sys.tier_for(stride);
    let per_domain = if inner.group_size == 0 {
        k
    } else {
        (u64::from(inner.group_size) / stride.max(1)).clamp(1, k)
    };
    // The largest divisor of k that fits in one inner domain.
    let k1 = (1..=per_domain)
        .rev()
        .find(|d| k.is_multiple_of(*d))
        .unwrap_or(1);
    let k2 = k / k1;
    if k1 == 1 || k2 == 1 || std::ptr::eq(inner, outer) {
        return time(op, n_bytes, k, outer, link_efficiency);
    }
    let e = link_efficiency;
    match op {
        RingCollective::AllReduce => {
            time(RingCollective::ReduceScatter, n_bytes, k1, inner, e)
                + time(RingCollective::AllReduce, n_bytes / k1 as f64, k2, outer, e)
                + time(RingCollective::AllGather, n_bytes, k1, inner, e)
        }
        RingCollective::AllGather | RingCollective::ReduceScatter => {
            time(op, n_bytes / k1 as f64, k2, outer, e) + time(op, n_bytes, k1, inner, e)
        }
        // A rank's buffer splits k ways: the (k₂−1)/k₂ bound for other domains crosses
        // the outer tier (an all-to-all of the whole buffer among the k₂ domains), the
        // (k₁−1)/k for its own domain's other ranks stays on the inner tier. NCCL posts
        // every send at once, so the two tiers carry their shares concurrently.
        RingCollective::AllToAll => {
            time(op, n_bytes, k2, outer, e).max(time(op, n_bytes / k2 as f64, k1, inner, e))
        }
        RingCollective::SendRecv => time(op, n_bytes, k, outer, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tier() -> Tier {
        Tier {
            name: "t".into(),
            group_size: 8,
            bw: 100e9,
            latency_s: 0.0,
        }
    }

    #[test]
    fn ring_factors_match_the_algorithms() {
        let n = 1e9;
        let t = tier();
        let ar = time(RingCollective::AllReduce, n, 8, &t, 1.0);
        let ag = time(RingCollective::AllGather, n, 8, &t, 1.0);
        let rs = time(RingCollective::ReduceScatter, n, 8, &t, 1.0);
        assert!((ar - 2.0 * 7.0 / 8.0 * 0.01).abs() < 1e-12);
        assert!((ag + rs - ar).abs() < 1e-12, "RS + AG = AR");
        assert_eq!(time(RingCollective::AllReduce, n, 1, &t, 1.0), 0.0);
        assert!((time(RingCollective::SendRecv, n, 2, &t, 0.5) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn a_group_over_two_tiers_sends_only_its_share_over_the_slow_one() {
        let sys = System {
            name: "s".into(),
            peak_flops: 1.0,
            gemm_ceiling_flops: None,
            attention_flops: None,
            memory_bytes: 1.0,
            hbm_bw: 1.0,
            compute_units: None,
            tiers: vec![
                tier(),
                Tier {
                    name: "ib".into(),
                    group_size: 0,
                    bw: 10e9,
                    latency_s: 0.0,
                },
            ],
        };
        let n = 1e9;
        let flat = time(RingCollective::AllReduce, n, 32, &sys.tiers[1], 1.0);
        let hier = group_time(RingCollective::AllReduce, n, 32, 1, &sys, 1.0);
        let want = 2.0 * 7.0 / 8.0 * n / 100e9 + 2.0 * 3.0 / 4.0 * (n / 8.0) / 10e9;
        assert!(
            (hier - want).abs() < 1e-12 && hier < flat,
            "{hier} vs {want}"
        );
        // Members 8 apart never share a domain of 8: all on the outer tier.
        let strided = group_time(RingCollective::AllReduce, n, 4, 8, &sys, 1.0);
        assert!(
            (strided - time(RingCollective::AllReduce, n, 4, &sys.tiers[1], 1.0)).abs() < 1e-12
        );
        // An all-to-all over 16 ranks in two domains of 8: half of each buffer is bound
        // for the other domain and crosses the slow tier, 7/16 stays on the fast one.
        let a2a = group_time(RingCollective::AllToAll, n, 16, 1, &sys, 1.0);
        let outer = 0.5 * n / 10e9;
        assert!((a2a - outer).abs() < 1e-12, "{a2a} vs {outer}");
        let flat = time(RingCollective::AllToAll, n, 16, &sys.tiers[1], 1.0);
        assert!((flat / a2a - 15.0 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn latency_counts_per_ring_step() {
        let t = Tier {
            latency_s: 1e-5,
            ..tier()
        };
        let small = time(RingCollective::AllReduce, 8.0, 4, &t, 1.0);
        assert!((small - 6.0 * 1e-5).abs() < 1e-9);
    }
}
