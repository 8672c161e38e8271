//! The sweep itself, over MPI: for every collective, dtype and size, verify, warm
//! up, time barrier-synchronised operations, verify again, and keep what rank 0
//! gathered in the comm file (checkpointed as it goes, so a run that dies keeps
//! what it measured, marked partial).

use std::os::raw::{c_int, c_void};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mpi::collective::{SystemOperation, UnsafeUserOperation};
use mpi::datatype::{Equivalence, SystemDatatype};
use mpi::topology::Communicator;
use mpi::traits::*;

use super::session::{build_identity, rank_list, Session, Watchdog, WATCHDOG_GRACE};
use super::verify::{self, Check};
use super::{
    element_count, sweep_sizes, Collective, CommConfig, CommDtype, CommFile, CommResult, RankHost,
};
use crate::{fingerprint, results, BenchError, Result};

/// What `flopcal comm` was asked to do.
#[derive(Debug, Clone)]
pub struct CommOptions {
    /// The sweep.
    pub config: CommConfig,
    /// Where rank 0 writes the file.
    pub out: Option<PathBuf>,
    /// Test hook: the last rank aborts after this many measured points.
    pub die_after: Option<usize>,
    /// Test hook: the last rank sleeps forever after this many measured points.
    pub hang_after: Option<usize>,
}

/// What a run returns: the file on rank 0, nothing on the others.
pub struct CommRun {
    /// This rank.
    pub rank: u32,
    /// The results (rank 0 only).
    pub file: Option<CommFile>,
}

/// An element type the sweep exchanges.
trait Elem: Equivalence + Copy + Default + 'static {
    fn encode(v: f64) -> Self;
    fn decode(self) -> f64;
    /// `self + other`, rounded to the format (through f32, which holds every bf16
    /// and f16 exactly).
    fn add(self, other: Self) -> Self;
}

impl Elem for f32 {
    fn encode(v: f64) -> Self {
        v as f32
    }
    fn decode(self) -> f64 {
        f64::from(self)
    }
    fn add(self, other: Self) -> Self {
        self + other
    }
}

/// A 16-bit float format as raw bits (`$name`, over the `half` type `$half`):
/// exchanged as MPI's 16-bit unsigned type, summed in its own format by the user
/// operation below.
macro_rules! half_elem {
    ($(#[$doc:meta])* $name:ident, $half:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default)]
        #[repr(transparent)]
        struct $name(u16);

        // SAFETY: `repr(transparent)` over u16, so MPI's 16-bit unsigned type
        // describes its layout exactly; reductions use the user operations below.
        unsafe impl Equivalence for $name {
            type Out = SystemDatatype;
            fn equivalent_datatype() -> Self::Out {
                u16::equivalent_datatype()
            }
        }

        impl Elem for $name {
            fn encode(v: f64) -> Self {
                $name(<$half>::from_f64(v).to_bits())
            }
            fn decode(self) -> f64 {
                <$half>::from_bits(self.0).to_f64()
            }
            fn add(self, other: Self) -> Self {
                let f = |x: Self| <$half>::from_bits(x.0).to_f32();
                $name(<$half>::from_f32(f(self) + f(other)).to_bits())
            }
        }
    };
}

half_elem!(
    /// bf16 bits, summed as bf16 in reductions.
    Bf16,
    half::bf16
);
half_elem!(
    /// f16 bits, summed as f16 in reductions.
    F16,
    half::f16
);

/// MPI user reduction: `inout[i] += in[i]` in the 16-bit format `T` (rounded to it
/// after each addition, as a bf16/f16 reduction on the wire does).
unsafe extern "C" fn sum16<T: Elem>(
    invec: *mut c_void,
    inoutvec: *mut c_void,
    len: *mut c_int,
    _datatype: *mut mpi::ffi::MPI_Datatype,
) {
    // SAFETY: MPI passes two buffers of `*len` elements of the datatype the
    // operation was used with, which the sweep only ever uses with `T`.
    let n = unsafe { *len }.max(0) as usize;
    let a = unsafe { std::slice::from_raw_parts(invec as *const T, n) };
    let b = unsafe { std::slice::from_raw_parts_mut(inoutvec as *mut T, n) };
    for (x, y) in a.iter().zip(b.iter_mut()) {
        *y = x.add(*y);
    }
}

/// Run the sweep on every rank of `session`.
pub fn execute(session: &Session, opts: &CommOptions) -> Result<CommRun> {
    let bf16_sum = unsafe { UnsafeUserOperation::commutative(sum16::<Bf16>) };
    let f16_sum = unsafe { UnsafeUserOperation::commutative(sum16::<F16>) };
    let cfg = &opts.config;
    sweep(session, opts, "mpi", |c, d, count, wd| match d {
        CommDtype::F32 => point::<f32, _>(session, c, d, count, cfg, wd, SystemOperation::sum()),
        CommDtype::Bf16 => point::<Bf16, _>(session, c, d, count, cfg, wd, &bf16_sum),
        CommDtype::F16 => point::<F16, _>(session, c, d, count, cfg, wd, &f16_sum),
    })
}

/// The sweep over `opts` on any backend: `measure_point(collective, dtype, count,
/// watchdog)` measures one point on every rank.
pub(crate) fn sweep(
    session: &Session,
    opts: &CommOptions,
    backend: &str,
    mut measure_point: impl FnMut(Collective, CommDtype, u64, &Watchdog) -> Result<CommResult>,
) -> Result<CommRun> {
    let cfg = &opts.config;
    let identity = format!(
        "{} backend {backend} settings {}",
        build_identity(),
        serde_json::to_string(cfg).unwrap_or_default()
    );
    session.check_same(&identity)?;
    let host = RankHost {
        rank: session.rank,
        host: session.host(),
        fingerprint: fingerprint::collect(&candle_core::Device::Cpu, 1),
    };
    let hosts: Vec<RankHost> = session
        .all_gather_bytes(&serde_json::to_vec(&host).unwrap_or_default())
        .iter()
        .map(|b| {
            serde_json::from_slice(b).map_err(|e| {
                BenchError::Usage(format!("a rank sent an unreadable fingerprint: {e}"))
            })
        })
        .collect::<Result<_>>()?;
    let mut file = CommFile {
        header: results::FileHeader {
            partial: true,
            partial_reason: Some(
                "the sweep stopped before its end (a rank died, hung past --timeout, or the run was interrupted)".into(),
            ),
            ..results::FileHeader::new(Some(super::COMM_KIND), &chrono::Utc::now())
        },
        ranks: session.size,
        backend: backend.into(),
        library: session.library(),
        hosts,
        config: cfg.clone(),
        results: Vec::new(),
        fits: Vec::new(),
    };
    let timeout = Duration::from_secs_f64(cfg.timeout_s);
    let watchdog = Watchdog::start(
        session.rank,
        timeout + WATCHDOG_GRACE,
        "flopcal comm".into(),
    );
    watchdog.touch();
    let sizes = sweep_sizes(cfg.min_bytes, cfg.max_bytes);
    let progress = super::progress(
        session.is_root(),
        cfg.collectives.len() * cfg.dtypes.len() * sizes.len(),
    );
    let mut measured = 0usize;
    let mut last_save: Option<Instant> = None;
    for &c in &cfg.collectives {
        for &d in &cfg.dtypes {
            for &bytes in &sizes {
                progress.set_message(format!("{} {} {} B", c.as_str(), d.as_str(), bytes));
                progress.inc(1);
                let Some(count) = element_count(c, d, bytes, session.size) else {
                    continue;
                };
                // Every rank checks in before each point, so a rank that went
                // silent between points is named rather than waited on.
                let silent = session.check_in(&[], timeout).silent;
                if !silent.is_empty() {
                    give_up(
                        &mut file,
                        opts,
                        &silent,
                        &format!("{} {} {bytes} B", c.as_str(), d.as_str()),
                    );
                }
                watchdog.touch();
                let r = measure_point(c, d, count, &watchdog)?;
                file.results.push(r);
                measured += 1;
                let last_rank = session.rank + 1 == session.size && session.size > 1;
                if opts.die_after == Some(measured) && last_rank {
                    eprintln!("rank {}: dying on purpose (test hook)", session.rank);
                    std::process::abort();
                }
                if opts.hang_after == Some(measured) && last_rank {
                    eprintln!("rank {}: hanging on purpose (test hook)", session.rank);
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                if session.is_root()
                    && last_save.is_none_or(|t| t.elapsed() > Duration::from_millis(500))
                {
                    if let Some(out) = &opts.out {
                        file.refit();
                        super::save(&file, out)?;
                    }
                    last_save = Some(Instant::now());
                }
            }
        }
    }
    progress.finish_and_clear();
    drop(watchdog);
    file.header.partial = false;
    file.header.partial_reason = None;
    file.refit();
    if session.is_root() {
        if let Some(out) = &opts.out {
            super::save(&file, out)?;
        }
    }
    session.world.barrier();
    Ok(CommRun {
        rank: session.rank,
        file: session.is_root().then_some(file),
    })
}

/// Rank 0, when `silent` ranks never checked in before the point `what`: save what
/// was measured, marked partial and naming them, say so, and end the launch (exit
/// 2 without finalising makes the launcher stop every rank, the silent ones too).
fn give_up(file: &mut CommFile, opts: &CommOptions, silent: &[u32], what: &str) -> ! {
    let reason = format!(
        "rank(s) {} sent nothing for {:.0} s before {what} (hung or stuck); {} point(s) measured before it are kept",
        rank_list(silent),
        opts.config.timeout_s,
        file.results.len()
    );
    let saved = match &opts.out {
        Some(out) => {
            file.header.partial_reason = Some(reason.clone());
            file.refit();
            match super::save(file, out) {
                Ok(()) => format!("; saved {} marked partial", out.display()),
                Err(e) => format!("; could not save {}: {e}", out.display()),
            }
        }
        None => String::new(),
    };
    eprintln!("error: {reason}{saved}");
    std::process::exit(2);
}

/// One (collective, dtype, size) on one backend: its buffers and the operation.
pub(crate) trait Point {
    /// Clear the output buffer (so a no-op fails the next check).
    fn reset(&mut self) -> Result<()>;
    /// Run the collective once and wait for it to complete.
    fn once(&mut self) -> Result<()>;
    /// Check the output buffer against the expected values.
    fn check(&mut self) -> Result<Check>;
}

/// The MPI backend's buffers for one point.
struct MpiPoint<'a, T: Elem, O> {
    s: &'a Session,
    c: Collective,
    d: CommDtype,
    count: u64,
    op: O,
    send: Vec<T>,
    recv: Vec<T>,
}

impl<T: Elem, O: mpi::collective::Operation + Copy> Point for MpiPoint<'_, T, O> {
    fn reset(&mut self) -> Result<()> {
        let (c, rank) = (self.c, self.s.rank);
        if c == Collective::Broadcast {
            for (i, x) in self.recv.iter_mut().enumerate() {
                *x = T::encode(verify::input(c, rank, i as u64));
            }
        } else {
            self.recv.iter_mut().for_each(|x| *x = T::default());
        }
        Ok(())
    }

    fn once(&mut self) -> Result<()> {
        let world = &self.s.world;
        let (rank, n) = (self.s.rank, self.s.size);
        let (send, recv) = (&self.send[..], &mut self.recv[..]);
        match self.c {
            Collective::AllReduce => world.all_reduce_into(send, recv, self.op),
            Collective::AllGather => world.all_gather_into(send, recv),
            Collective::ReduceScatter => world.reduce_scatter_block_into(send, recv, self.op),
            Collective::Broadcast => world.process_at_rank(0).broadcast_into(recv),
            Collective::AllToAll => world.all_to_all_into(send, recv),
            Collective::SendRecv => {
                let next = world.process_at_rank(((rank + 1) % n) as i32);
                let prev = world.process_at_rank(((rank + n - 1) % n) as i32);
                mpi::point_to_point::send_receive_into(send, &next, recv, &prev);
            }
        }
        Ok(())
    }

    fn check(&mut self) -> Result<Check> {
        let recv = &self.recv;
        Ok(verify::check(
            self.c,
            self.d,
            self.s.rank,
            self.s.size,
            self.count,
            recv.len() as u64,
            |i| recv[i as usize].decode(),
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn point<T: Elem, O: mpi::collective::Operation + Copy>(
    s: &Session,
    c: Collective,
    d: CommDtype,
    count: u64,
    cfg: &CommConfig,
    watchdog: &Watchdog,
    op: O,
) -> Result<CommResult> {
    let (slen, rlen) = verify::buffer_lens(c, count, s.size);
    let mut p = MpiPoint {
        s,
        c,
        d,
        count,
        op,
        send: (0..slen)
            .map(|i| T::encode(verify::input(c, s.rank, i)))
            .collect(),
        recv: vec![T::default(); rlen as usize],
    };
    measure(s, c, d, count, cfg, watchdog, &mut p)
}

/// Verify, warm up, time and verify again one point on every rank (any backend).
pub(crate) fn measure(
    s: &Session,
    c: Collective,
    d: CommDtype,
    count: u64,
    cfg: &CommConfig,
    watchdog: &Watchdog,
    p: &mut dyn Point,
) -> Result<CommResult> {
    let world = &s.world;
    let n = s.size;
    let rlen = verify::buffer_lens(c, count, n).1;
    // Verify on fresh buffers, untimed.
    p.reset()?;
    p.once()?;
    let first = p.check()?;
    watchdog.touch();
    // Warm up; the slowest rank's last warm-up time sets the iteration count.
    let mut est = f64::INFINITY;
    for _ in 0..cfg.warmup_iters.max(1) {
        world.barrier();
        let t0 = Instant::now();
        p.once()?;
        est = t0.elapsed().as_secs_f64();
        watchdog.touch();
    }
    let mut slowest = 0.0f64;
    world.all_reduce_into(&est, &mut slowest, SystemOperation::max());
    let lo = cfg.min_iters.max(1);
    let iters =
        ((cfg.time_per_size_s / slowest.max(1e-9)).ceil() as u64).clamp(lo, cfg.max_iters.max(lo));
    // nccl-tests' own timing: the operations back to back, one clock around the
    // loop, divided by the count, averaged over ranks (its `common.cu`, default
    // blocking mode).
    world.barrier();
    let t0 = Instant::now();
    for _ in 0..iters {
        p.once()?;
    }
    let loop_here = t0.elapsed().as_secs_f64() / iters as f64;
    watchdog.touch();
    let mut loop_sum = 0.0f64;
    world.all_reduce_into(&loop_here, &mut loop_sum, SystemOperation::sum());
    let loop_time = loop_sum / f64::from(n);
    let mut mine = Vec::with_capacity(iters as usize);
    for k in 0..iters {
        if k + 1 == iters {
            // The last timed operation writes into a cleared buffer: the check
            // after the loop is of a timed operation, not a leftover.
            p.reset()?;
        }
        world.barrier();
        let t0 = Instant::now();
        p.once()?;
        mine.push(t0.elapsed().as_secs_f64());
        watchdog.touch();
    }
    let second = p.check()?;
    let mut samples = vec![0.0f64; mine.len()];
    world.all_reduce_into(&mine[..], &mut samples[..], SystemOperation::max());
    let ok_here: i32 = i32::from(first.passed && second.passed);
    let mut ok_all = 0i32;
    world.all_reduce_into(&ok_here, &mut ok_all, SystemOperation::min());
    let err_here = first.max_rel_err.max(second.max_rel_err);
    let mut err_all = 0.0f64;
    world.all_reduce_into(&err_here, &mut err_all, SystemOperation::max());
    let bytes = count * d.size();
    let summary = crate::harness::summarize(&samples);
    let (time_s, ci) = summary.map_or((f64::NAN, None), |s| (s.median, s.ci));
    let algbw = bytes as f64 / time_s / 1e9;
    Ok(CommResult {
        collective: c,
        dtype: d,
        bytes,
        time_s,
        ci95_low_s: ci.map(|c| c.0),
        ci95_high_s: ci.map(|c| c.1),
        algbw_gb_s: algbw,
        busbw_gb_s: algbw * c.bus_factor(n),
        verified: ok_all == 1,
        checked_elements: rlen,
        max_rel_err: err_all,
        warmup_iters: cfg.warmup_iters.max(1),
        loop_time_s: Some(loop_time),
        loop_algbw_gb_s: Some(bytes as f64 / loop_time / 1e9),
        loop_busbw_gb_s: Some(bytes as f64 / loop_time / 1e9 * c.bus_factor(n)),
        loop_iters: Some(iters),
        samples_s: samples,
    })
}
