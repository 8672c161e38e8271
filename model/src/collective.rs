//! The collective operations the step model times, and their ring costs: a leaf,
//! shared by the link model ([`crate::comm`]) and measured links
//! ([`crate::network`]).

/// A collective operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingCollective {
    /// Ring all-reduce.
    AllReduce,
    /// Ring all-gather.
    AllGather,
    /// Ring reduce-scatter.
    ReduceScatter,
    /// All-to-all (expert dispatch and combine).
    AllToAll,
    /// One send to a neighbour (pipeline stages).
    SendRecv,
}

impl RingCollective {
    /// `(bandwidth factor, latency steps)` for a group of `k`.
    pub fn factors(self, k: u64) -> (f64, f64) {
        let k = k.max(1) as f64;
        match self {
            RingCollective::AllReduce => (2.0 * (k - 1.0) / k, 2.0 * (k - 1.0)),
            RingCollective::AllGather
            | RingCollective::ReduceScatter
            | RingCollective::AllToAll => ((k - 1.0) / k, k - 1.0),
            RingCollective::SendRecv => (1.0, 1.0),
        }
    }
}
