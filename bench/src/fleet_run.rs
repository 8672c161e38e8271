//! Fleet mode of a profile: every rank of an MPI launch profiles its own device and
//! rank 0 gathers one fleet file. Rank 0 keeps its own profile on disk (as a one-rank
//! fleet file, marked partial) before anything depends on the others, every rank
//! reaches the gather whether or not it failed, and every rank ends the process
//! together ([`Finish::exit`]) so that rank 0's output is not cut short by the
//! launcher. `flopcal profile` under `mpirun` lands here and prints the result.

use crate::comm::session::{build_identity, rank_list, Session, Watchdog, WATCHDOG_GRACE};
use crate::fleet::{self, FleetFile};
use crate::profile_run::{self, ProfileRun, ProfileSpec};
use crate::results;
use crate::{BenchError, Result};

/// How a fleet run ended on this rank.
pub struct FleetEnd {
    /// The file rank 0 gathered and saved (`None` on the other ranks, or when rank 0
    /// failed before the gather).
    pub file: Option<FleetFile>,
    /// Why the run failed on this rank: its own profile, or on rank 0 the ranks that
    /// hung or failed (the file then holds the others, marked partial).
    pub error: Option<BenchError>,
    /// How the process must end.
    pub finish: Finish,
}

/// The end every rank of a fleet run goes through.
pub struct Finish {
    session: Session,
    any_silent: bool,
}

impl Finish {
    /// Whether this is rank 0 (the rank that prints).
    pub fn is_root(&self) -> bool {
        self.session.is_root()
    }

    /// End the process with `code` once every rank is here. A rank that sent nothing
    /// never reaches the barrier: then exit 2 without finalising, which makes the
    /// launcher end every rank.
    pub fn exit(self, code: i32) -> ! {
        if self.any_silent {
            std::process::exit(2);
        }
        self.session.barrier();
        drop(self.session);
        std::process::exit(code);
    }
}

/// Fleet mode: profile on every rank, gather on rank 0 (which saves the fleet file to
/// `args.out`). An error before the ranks meet is returned; after that every rank gets
/// a [`FleetEnd`] to print from and to end the process with.
pub fn execute(args: &ProfileSpec) -> Result<FleetEnd> {
    profile_run::check_timeout(args.timeout)?;
    let timeout = std::time::Duration::from_secs_f64(args.timeout);
    let session = Session::init("profile")?;
    let mut local = args.clone();
    local.out = None;
    let identity = format!("{} suite {:?}", build_identity(), local);
    let writable = match &args.out {
        Some(out) if session.is_root() => results::check_writable(out),
        _ => Ok(()),
    };
    let checked = session.check_same(&identity);
    // Rank 0 checkpoints its own profile as a one-rank fleet file while it runs: a
    // rank that dies makes the launcher end the others within a second or so, which
    // may not reach a sample boundary, so what was measured must already be on disk.
    let (rank, host) = (session.rank, session.host());
    let own_rank = |file: &results::ResultFile| fleet::FleetRank {
        rank,
        host: host.clone(),
        fingerprint: file.host.clone(),
        run_id: file.header.run_id.clone(),
        partial: file.header.partial,
        peak: file.peak.clone(),
        benchmarks: file.benchmarks.clone(),
    };
    let only_rank_0 = format!(
        "only rank 0's profile: the other {} rank(s) never delivered theirs (a rank died, or the gather was interrupted)",
        session.size.saturating_sub(1)
    );
    let kept_at = args
        .out
        .as_ref()
        .filter(|_| session.is_root() && session.size > 1);
    let keep = |file: &results::ResultFile, out: &std::path::Path| {
        fleet::save(
            &fleet_file(
                &file.profile,
                vec![own_rank(file)],
                Some(only_rank_0.clone()),
            ),
            out,
        )
    };
    let measured = writable.and(checked).and_then(|_| match kept_at {
        Some(out) => profile_run::execute_with(&local, Some(&mut |snap| keep(snap, out))),
        None => profile_run::execute_with(&local, None),
    });
    // Every rank reaches the gather, failed or not, so none waits forever.
    let own = measured.as_ref().ok().map(|run| own_rank(&run.file));
    let mine = own
        .as_ref()
        .map(|r| serde_json::to_vec(r).unwrap_or_default())
        .unwrap_or_default();
    // Rank 0 keeps its own profile, marked partial, before anything depends on the
    // other ranks: a rank that dies makes the launcher end the whole job, and this is
    // the file that survives it. The barrier makes sure it is written first.
    let kept = match (kept_at, &measured) {
        (Some(out), Ok(run)) => keep(&run.file, out),
        _ => Ok(()),
    };
    // The other ranks wait for rank 0's go-ahead, given once that file is written;
    // their watchdog ends them if rank 0 goes silent.
    let watchdog = (!session.is_root()).then(|| {
        Watchdog::start(
            session.rank,
            timeout + WATCHDOG_GRACE,
            "the fleet gather (waiting for rank 0)".into(),
        )
    });
    session.release_from_root();
    if let Some(w) = &watchdog {
        w.touch();
    }
    test_hooks(&session);
    // Rank 0 takes each rank's profile as it comes and names the ranks still silent
    // after --timeout without a new one.
    let gathered = session.check_in(&mine, timeout);
    let (file, error) = if session.is_root() {
        match kept
            .and_then(|_| gather_on_root(args, measured, &gathered.payloads, &gathered.silent))
        {
            Ok((file, error)) => (Some(file), error),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, measured.err())
    };
    Ok(FleetEnd {
        file,
        error,
        finish: Finish {
            session,
            any_silent: !gathered.silent.is_empty(),
        },
    })
}

/// Test hook: with this environment variable set, the last rank of a fleet run
/// aborts after rank 0 has kept its own profile and before the gather.
const DIE_BEFORE_GATHER: &str = "FLOPCAL_TEST_DIE_BEFORE_GATHER";
/// Test hook: with this environment variable set, the last rank of a fleet run
/// sleeps forever at that same point.
const HANG_BEFORE_GATHER: &str = "FLOPCAL_TEST_HANG_BEFORE_GATHER";

/// The test hooks: the last rank (of two or more) dies or hangs before the gather.
fn test_hooks(session: &Session) {
    if session.size < 2 || session.rank + 1 != session.size {
        return;
    }
    if std::env::var_os(DIE_BEFORE_GATHER).is_some() {
        eprintln!(
            "rank {}: dying on purpose before the gather (test hook {DIE_BEFORE_GATHER})",
            session.rank
        );
        std::process::abort();
    }
    if std::env::var_os(HANG_BEFORE_GATHER).is_some() {
        eprintln!(
            "rank {}: hanging on purpose before the gather (test hook {HANG_BEFORE_GATHER})",
            session.rank
        );
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// A fleet file of `ranks`, partial when `partial_reason` says why.
fn fleet_file(
    profile: &results::ProfileConfig,
    ranks: Vec<fleet::FleetRank>,
    partial_reason: Option<String>,
) -> FleetFile {
    FleetFile {
        header: results::FileHeader {
            partial: partial_reason.is_some(),
            partial_reason,
            ..results::FileHeader::new(Some(fleet::FLEET_KIND), &chrono::Utc::now())
        },
        profile: profile.clone(),
        summary: fleet::summarize(&ranks, fleet::DEFAULT_STRAGGLER),
        ranks,
    }
}

/// Rank 0's part of a fleet run: build and save the gathered file (`all` indexed by
/// rank; `silent`, the ranks that sent nothing before the timeout), with the error of
/// the ranks that hung or failed, if any.
fn gather_on_root(
    args: &ProfileSpec,
    measured: Result<ProfileRun>,
    all: &[Vec<u8>],
    silent: &[u32],
) -> Result<(FleetFile, Option<BenchError>)> {
    let run = measured?;
    let failed: Vec<u32> = (0..all.len() as u32)
        .filter(|r| all[*r as usize].is_empty() && !silent.contains(r))
        .collect();
    let mut ranks = Vec::with_capacity(all.len());
    for b in all.iter().filter(|b| !b.is_empty()) {
        ranks.push(
            serde_json::from_slice::<fleet::FleetRank>(b).map_err(|e| {
                BenchError::Usage(format!("a rank sent an unreadable profile: {e}"))
            })?,
        );
    }
    let hung = (!silent.is_empty()).then(|| {
        format!(
            "rank(s) {} sent no profile within {:.0} s at the gather (hung, or far slower than rank 0)",
            rank_list(silent),
            args.timeout
        )
    });
    let reason = hung
        .clone()
        .into_iter()
        .chain(
            (!failed.is_empty())
                .then(|| format!("rank(s) {} failed to profile", rank_list(&failed))),
        )
        .reduce(|a, b| format!("{a}; {b}"))
        .or_else(|| {
            ranks
                .iter()
                .any(|r| r.partial)
                .then(|| "a rank's profile was interrupted".to_string())
        });
    let file = fleet_file(&run.file.profile, ranks, reason);
    if let Some(out) = &args.out {
        fleet::save(&file, out)?;
        eprintln!("saved {}", out.display());
    }
    let error = match hung {
        Some(hung) => Some(BenchError::Usage(format!(
            "{hung}; the fleet file holds the {} rank(s) that did, marked partial",
            file.ranks.len()
        ))),
        None if !failed.is_empty() => Some(BenchError::Usage(format!(
            "rank(s) {} failed to profile (see their messages); the fleet file holds the others, marked partial",
            rank_list(&failed)
        ))),
        None => None,
    };
    Ok((file, error))
}
