//! The MPI side shared by `comm` and fleet profiles: initialising MPI once, the
//! start-up check that every rank runs the same flopcal with the same settings,
//! exchanging byte strings between ranks, and the watchdog that stops a rank whose
//! peers died or hang.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::Count;

use crate::{Error, Result};

/// An initialised MPI world. Dropping it finalises MPI.
pub struct Session {
    /// Keeps MPI initialised.
    _universe: mpi::environment::Universe,
    /// Every rank of the launch.
    pub world: SimpleCommunicator,
    /// This rank.
    pub rank: u32,
    /// Ranks in the launch.
    pub size: u32,
}

impl Session {
    /// Initialise MPI, refusing a process no launcher started (`command` names the
    /// subcommand for the how-to-launch line).
    pub fn init(command: &str) -> Result<Session> {
        if super::launch::launched_size().is_none() {
            return Err(Error::Usage(super::launch::how_to_launch(command)));
        }
        let universe = mpi::initialize()
            .ok_or_else(|| Error::Usage("MPI was already initialised in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as u32, world.size() as u32);
        Ok(Session {
            _universe: universe,
            world,
            rank,
            size,
        })
    }

    /// Whether this is rank 0, the one that prints and writes files.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Wait for every rank.
    pub fn barrier(&self) {
        self.world.barrier();
    }

    /// Host name of this rank.
    pub fn host(&self) -> String {
        mpi::environment::processor_name().unwrap_or_else(|_| "unknown".into())
    }

    /// The MPI library's version string (first line).
    pub fn library(&self) -> String {
        mpi::environment::library_version()
            .ok()
            .and_then(|v| {
                v.lines()
                    .next()
                    .map(|l| l.trim_end_matches('\0').trim().to_string())
            })
            .unwrap_or_else(|| "unknown MPI".into())
    }

    /// Every rank's `bytes`, indexed by rank (an all-gather of variable length).
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let len = bytes.len() as Count;
        let mut lens = vec![0 as Count; self.size as usize];
        self.world.all_gather_into(&len, &mut lens[..]);
        let displs: Vec<Count> = lens
            .iter()
            .scan(0, |acc, &n| {
                let d = *acc;
                *acc += n;
                Some(d)
            })
            .collect();
        let total: Count = lens.iter().sum();
        let mut all = vec![0u8; total as usize];
        {
            let mut part = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
            self.world.all_gather_varcount_into(bytes, &mut part);
        }
        lens.iter()
            .zip(&displs)
            .map(|(&n, &d)| all[d as usize..(d + n) as usize].to_vec())
            .collect()
    }

    /// Refuse the run unless every rank has the same `identity` (flopcal version,
    /// commit and the settings that define the suite). Every rank learns the
    /// verdict; the error names the ranks that differ from rank 0.
    pub fn check_same(&self, identity: &str) -> Result<()> {
        let all = self.all_gather_bytes(identity.as_bytes());
        let odd: Vec<(usize, String)> = all
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, b)| *b != &all[0])
            .map(|(r, b)| (r, String::from_utf8_lossy(b).into_owned()))
            .collect();
        if odd.is_empty() {
            return Ok(());
        }
        let ranks: Vec<String> = odd.iter().map(|(r, _)| r.to_string()).collect();
        Err(Error::Usage(format!(
            "refused: rank(s) {} run a different flopcal or different settings than rank 0 ({} vs rank 0: {}); launch the same binary with the same flags on every rank",
            ranks.join(", "),
            odd[0].1,
            String::from_utf8_lossy(&all[0])
        )))
    }
}

/// What must agree across ranks besides the settings: the flopcal build.
pub fn build_identity() -> String {
    let t = crate::results::Tool::current();
    format!("flopcal {} ({})", t.version, t.git_commit)
}

/// A watchdog thread: when no progress is reported for `timeout`, it prints one
/// line naming this rank and what happened, and exits the process with status 2
/// (rank 0 has already kept what was measured, marked partial).
pub struct Watchdog {
    last: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    start: Instant,
}

impl Watchdog {
    /// Start watching; `what` describes the run for the message.
    pub fn start(rank: u32, timeout: Duration, what: String) -> Watchdog {
        let start = Instant::now();
        let last = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (l, d) = (Arc::clone(&last), Arc::clone(&done));
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            if d.load(Ordering::SeqCst) {
                return;
            }
            let idle = start.elapsed().as_millis() as u64 - l.load(Ordering::SeqCst);
            if idle > timeout.as_millis() as u64 {
                eprintln!(
                    "error: rank {rank}: no progress for {:.0} s in {what} (a peer rank died or hangs); stopping; rank 0 keeps the partial file",
                    timeout.as_secs_f64()
                );
                std::process::exit(2);
            }
        });
        Watchdog { last, done, start }
    }

    /// Report progress.
    pub fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}
