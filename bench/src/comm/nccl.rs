//! The NCCL backend of `flopcal comm --backend nccl` (features `cuda` and `mpi`):
//! the same sweep, conventions and verification as over MPI, with the data in GPU
//! memory and the collectives run by NCCL through cudarc (the CUDA stack candle
//! links). MPI only starts the ranks, hands NCCL's unique id from rank 0 to the
//! others, and provides the barriers and the gathering of timings.
//!
//! Each rank takes the GPU of its local rank (`OMPI_COMM_WORLD_LOCAL_RANK`,
//! `MPI_LOCALRANKID`, `SLURM_LOCALID` or `LOCAL_RANK`) modulo the GPUs present.

use std::os::raw::c_char;
use std::sync::Arc;

use candle_core::cuda_backend::cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};
use candle_core::cuda_backend::cudarc::nccl::result::{group_end, group_start, NcclError};
use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, NcclType, ReduceOp};
use mpi::traits::*;

use super::run::{measure, sweep, CommOptions, CommRun, Point};
use super::session::Session;
use super::verify::{self, Check};
use super::{Collective, CommDtype};
use crate::{BenchError, Result};

fn nccl_err(e: NcclError) -> BenchError {
    BenchError::Device(format!("NCCL: {e:?}"))
}

fn cuda_err(e: impl std::fmt::Debug) -> BenchError {
    BenchError::Device(format!("CUDA: {e:?}"))
}

/// This rank's GPU ordinal.
fn local_ordinal(rank: u32) -> Result<usize> {
    let local = [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
        "LOCAL_RANK",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.trim().parse::<usize>().ok())
    .unwrap_or(rank as usize);
    let gpus = CudaContext::device_count().map_err(cuda_err)?;
    if gpus < 1 {
        return Err(BenchError::Device(
            "--backend nccl: no CUDA GPU on this host".into(),
        ));
    }
    Ok(local % gpus as usize)
}

/// Run the sweep over NCCL on every rank of `session`.
pub fn execute(session: &Session, opts: &CommOptions) -> Result<CommRun> {
    let ctx = CudaContext::new(local_ordinal(session.rank)?).map_err(cuda_err)?;
    let stream = ctx.default_stream();
    let mut raw = [0u8; 128];
    if session.is_root() {
        let id = Id::new().map_err(nccl_err)?;
        for (d, s) in raw.iter_mut().zip(id.internal()) {
            *d = *s as u8;
        }
    }
    session
        .world
        .process_at_rank(0)
        .broadcast_into(&mut raw[..]);
    let mut internal = [0 as c_char; 128];
    for (d, s) in internal.iter_mut().zip(raw) {
        *d = s as c_char;
    }
    let comm = Comm::from_rank(
        Arc::clone(&stream),
        session.rank as usize,
        session.size as usize,
        Id::uninit(internal),
    )
    .map_err(nccl_err)?;
    let cfg = &opts.config;
    sweep(session, opts, "nccl", |c, d, count, wd| {
        let ctx = Ctx {
            s: session,
            comm: &comm,
            stream: &stream,
            c,
            d,
            count,
        };
        match d {
            CommDtype::F32 => {
                let mut p = NcclPoint::new(ctx, |v| v as f32, f64::from)?;
                measure(session, c, d, count, cfg, wd, &mut p)
            }
            CommDtype::Bf16 => {
                let mut p = NcclPoint::new(ctx, half::bf16::from_f64, half::bf16::to_f64)?;
                measure(session, c, d, count, cfg, wd, &mut p)
            }
            CommDtype::F16 => {
                let mut p = NcclPoint::new(ctx, half::f16::from_f64, half::f16::to_f64)?;
                measure(session, c, d, count, cfg, wd, &mut p)
            }
        }
    })
}

/// What every point shares.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    s: &'a Session,
    comm: &'a Comm,
    stream: &'a Arc<CudaStream>,
    c: Collective,
    d: CommDtype,
    count: u64,
}

/// One point's GPU buffers.
struct NcclPoint<'a, T> {
    x: Ctx<'a>,
    send: CudaSlice<T>,
    recv: CudaSlice<T>,
    decode: fn(T) -> f64,
}

impl<'a, T: NcclType + DeviceRepr + ValidAsZeroBits + Copy> NcclPoint<'a, T> {
    fn new(x: Ctx<'a>, encode: fn(f64) -> T, decode: fn(T) -> f64) -> Result<Self> {
        let (slen, rlen) = verify::buffer_lens(x.c, x.count, x.s.size);
        // Broadcast is out of place here: the root's send buffer holds the data.
        let host: Vec<T> = if x.c == Collective::Broadcast {
            (0..x.count).map(|i| encode(verify::value(0, i))).collect()
        } else {
            (0..slen)
                .map(|i| encode(verify::input(x.c, x.s.rank, i)))
                .collect()
        };
        Ok(NcclPoint {
            send: x.stream.clone_htod(&host).map_err(cuda_err)?,
            recv: x.stream.alloc_zeros::<T>(rlen as usize).map_err(cuda_err)?,
            x,
            decode,
        })
    }

    fn launch(&mut self) -> std::result::Result<(), NcclError> {
        let Ctx {
            s, comm, c, count, ..
        } = self.x;
        let (rank, n) = (s.rank as i32, s.size as i32);
        let block = (count / u64::from(s.size)) as usize;
        match c {
            Collective::AllReduce => comm
                .all_reduce(&self.send, &mut self.recv, &ReduceOp::Sum)
                .map(drop),
            Collective::AllGather => comm.all_gather(&self.send, &mut self.recv).map(drop),
            Collective::ReduceScatter => comm
                .reduce_scatter(&self.send, &mut self.recv, &ReduceOp::Sum)
                .map(drop),
            Collective::Broadcast => {
                let send = (rank == 0).then_some(&self.send);
                comm.broadcast(send, &mut self.recv, 0).map(drop)
            }
            Collective::AllToAll => {
                group_start()?;
                for p in 0..n as usize {
                    comm.send(&self.send.slice(p * block..(p + 1) * block), p as i32)?;
                    comm.recv(
                        &mut self.recv.slice_mut(p * block..(p + 1) * block),
                        p as i32,
                    )?;
                }
                group_end().map(drop)
            }
            Collective::SendRecv => {
                group_start()?;
                comm.send(&self.send, (rank + 1) % n)?;
                comm.recv(&mut self.recv, (rank + n - 1) % n)?;
                group_end().map(drop)
            }
        }
    }
}

impl<T: NcclType + DeviceRepr + ValidAsZeroBits + Copy> Point for NcclPoint<'_, T> {
    fn reset(&mut self) -> Result<()> {
        self.x
            .stream
            .memset_zeros(&mut self.recv)
            .map_err(cuda_err)?;
        self.x.stream.synchronize().map_err(cuda_err)
    }

    fn once(&mut self) -> Result<()> {
        self.launch().map_err(nccl_err)?;
        self.x.stream.synchronize().map_err(cuda_err)
    }

    fn check(&mut self) -> Result<Check> {
        let host: Vec<T> = self.x.stream.clone_dtoh(&self.recv).map_err(cuda_err)?;
        let dec = self.decode;
        let x = self.x;
        Ok(verify::check(
            x.c,
            x.d,
            x.s.rank,
            x.s.size,
            x.count,
            host.len() as u64,
            |i| dec(host[i as usize]),
        ))
    }
}
