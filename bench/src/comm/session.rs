//! The MPI side shared by `comm` and fleet profiles: initialising MPI once, the
//! start-up check that every rank runs the same flopcal with the same settings,
//! exchanging byte strings between ranks, the timed check-in through which rank 0
//! names a rank that went silent, and the watchdog that stops a rank whose peers
//! died or hang.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpi::datatype::PartitionMut;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;
use mpi::{Count, Tag};

use crate::{BenchError, Result};

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
            return Err(BenchError::Usage(super::launch::how_to_launch(command)));
        }
        let universe = mpi::initialize().ok_or_else(|| {
            BenchError::Usage("MPI was already initialised in this process".into())
        })?;
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
        Err(BenchError::Usage(format!(
            "refused: rank(s) {} run a different flopcal or different settings than rank 0 ({} vs rank 0: {}); launch the same binary with the same flags on every rank",
            ranks.join(", "),
            odd[0].1,
            String::from_utf8_lossy(&all[0])
        )))
    }
}

/// Tag of the check-in messages (point-to-point, so they never match a collective).
const CHECK_IN_TAG: Tag = 0x0c4e;
/// Tag of rank 0's go-ahead to the other ranks.
const RELEASE_TAG: Tag = 0x0c4f;

/// How much longer than `--timeout` a rank's own watchdog waits: rank 0's check-in
/// gives up at `--timeout` and names the silent rank, and it must do so (and save)
/// before any watchdog ends the launch.
pub const WATCHDOG_GRACE: Duration = Duration::from_secs(5);

impl Session {
    /// Every rank hands `payload` to rank 0. Rank 0 gets every payload that came,
    /// indexed by rank (its own at 0, empty where none came), and the ranks it did
    /// not hear from before `timeout` passed without a new arrival (empty when all
    /// came). The other ranks get nothing back, once rank 0 has taken their payload.
    /// Rank 0 polls (matched probes) instead of blocking in a receive, so a rank
    /// that hangs cannot hang it.
    pub fn check_in(&self, payload: &[u8], timeout: Duration) -> CheckIn {
        if !self.is_root() {
            self.world
                .process_at_rank(0)
                .send_with_tag(payload, CHECK_IN_TAG);
            return CheckIn::default();
        }
        let mut got: Vec<Option<Vec<u8>>> = vec![None; self.size as usize];
        got[0] = Some(payload.to_vec());
        let mut last = Instant::now();
        let mut idle_polls = 0u32;
        while got.iter().any(Option::is_none) {
            let mut arrived = false;
            for (r, slot) in got.iter_mut().enumerate().skip(1) {
                if slot.is_some() {
                    continue;
                }
                if let Some(matched) = self
                    .world
                    .process_at_rank(r as i32)
                    .immediate_matched_probe_with_tag(CHECK_IN_TAG)
                {
                    *slot = Some(matched.matched_receive_vec::<u8>().0);
                    arrived = true;
                }
            }
            if arrived {
                last = Instant::now();
                idle_polls = 0;
            } else if last.elapsed() >= timeout {
                break;
            } else {
                idle_polls += 1;
                if idle_polls < 1000 {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        CheckIn {
            silent: silent_ranks(&got),
            payloads: got.into_iter().map(Option::unwrap_or_default).collect(),
        }
    }

    /// Rank 0 tells every other rank to go on; the others wait for it (their
    /// watchdog ends them if it never comes). Rank 0's messages are a byte each,
    /// sent eagerly, so a rank that never receives its one cannot block rank 0.
    pub fn release_from_root(&self) {
        if self.is_root() {
            for r in 1..self.size {
                self.world
                    .process_at_rank(r as i32)
                    .send_with_tag(&[1u8][..], RELEASE_TAG);
            }
        } else {
            let _ = self
                .world
                .process_at_rank(0)
                .receive_vec_with_tag::<u8>(RELEASE_TAG);
        }
    }
}

/// What rank 0 learned from a check-in (empty on the other ranks).
#[derive(Debug, Default)]
pub struct CheckIn {
    /// Each rank's payload, indexed by rank; empty for a silent rank.
    pub payloads: Vec<Vec<u8>>,
    /// The ranks rank 0 did not hear from in time.
    pub silent: Vec<u32>,
}

/// The ranks whose slot is still empty.
fn silent_ranks(got: &[Option<Vec<u8>>]) -> Vec<u32> {
    got.iter()
        .enumerate()
        .filter(|(_, g)| g.is_none())
        .map(|(r, _)| r as u32)
        .collect()
}

/// "1, 3": ranks for a message.
pub fn rank_list(ranks: &[u32]) -> String {
    ranks
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
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
