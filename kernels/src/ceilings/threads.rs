//! Pinned worker threads released together by a barrier, and the one-CPU-per-physical-
//! core list they are pinned to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::Instant;

/// One logical CPU id per physical core among the CPUs this process may run on, in
/// ascending order. On Linux this reads the SMT sibling lists in sysfs, so SMT siblings
/// are never both chosen; elsewhere (or if sysfs is unreadable) it is `0..n` for the
/// `n` CPUs the standard library reports.
pub fn physical_core_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    if let Some(cpus) = linux::physical_core_cpus() {
        if !cpus.is_empty() {
            return cpus;
        }
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

/// Pin the calling thread to `cpu`; false where the OS refused or pinning is unsupported.
fn pin_current(cpu: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::pin_current(cpu)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        false
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::BTreeSet;

    /// Parse a sysfs CPU list such as `0-3,8,10-11`.
    pub(super) fn parse_list(s: &str) -> Option<Vec<usize>> {
        let mut out = Vec::new();
        for part in s.trim().split(',').filter(|p| !p.is_empty()) {
            match part.split_once('-') {
                Some((a, b)) => {
                    let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                    out.extend(a..=b);
                }
                None => out.push(part.parse().ok()?),
            }
        }
        Some(out)
    }

    fn allowed_cpus() -> Option<Vec<usize>> {
        // SAFETY: cpu_set_t is a plain bit array; zeroed is a valid empty set, and
        // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        if rc != 0 {
            return None;
        }
        // SAFETY: CPU_ISSET only reads the bit array of a valid set.
        Some(
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
                .collect(),
        )
    }

    pub(super) fn physical_core_cpus() -> Option<Vec<usize>> {
        let allowed = allowed_cpus()?;
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for cpu in allowed {
            let path = format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list");
            let siblings = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| parse_list(&s))
                .unwrap_or_else(|| vec![cpu]);
            let key = siblings.iter().copied().min().unwrap_or(cpu);
            if seen.insert(key) {
                out.push(cpu);
            }
        }
        Some(out)
    }

    pub(super) fn pin_current(cpu: usize) -> bool {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        // SAFETY: zeroed cpu_set_t is a valid empty set; CPU_SET writes one bit in range
        // (checked above); sched_setaffinity reads the set we pass with its exact size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0
        }
    }

    #[cfg(test)]
    mod tests {
        use super::parse_list;

        #[test]
        fn peak_parses_cpu_lists() {
            assert_eq!(parse_list("0-2,5,7-8\n"), Some(vec![0, 1, 2, 5, 7, 8]));
            assert_eq!(parse_list("3"), Some(vec![3]));
            assert_eq!(parse_list("x"), None);
        }
    }
}

/// What [`run_pinned`] measured.
pub(super) struct Timed<R> {
    /// Wall time of every repetition (warm-up ones included), seconds: from the
    /// earliest start to the latest finish among the workers.
    pub samples_s: Vec<f64>,
    /// Whether every worker was pinned.
    pub pinned: bool,
    /// Each worker's `finish` value, in thread order.
    pub results: Vec<R>,
}

/// Run `threads` workers, worker `i` pinned to the `i`-th physical-core CPU (wrapping
/// if there are more threads than cores). Each builds its state with `setup` (so memory
/// is first touched by the thread that uses it), then runs `rep` `reps` times; a barrier
/// releases all workers into each repetition together.
///
/// Every worker reads the clock itself just before and after its part of a repetition;
/// a repetition lasts from the earliest start to the latest finish. (Timing from a
/// coordinating thread would be wrong on a busy machine: if it is descheduled between
/// the release and its clock read, the repetition looks shorter than it was.)
/// `setup`, `rep` and `finish` must not panic.
pub(super) fn run_pinned<S, R, FS, FR, FF>(
    threads: usize,
    reps: usize,
    setup: FS,
    rep: FR,
    finish: FF,
) -> Timed<R>
where
    R: Send,
    FS: Fn(usize) -> S + Sync,
    FR: Fn(&mut S) + Sync,
    FF: Fn(S) -> R + Sync,
{
    let cpus = physical_core_cpus();
    let barrier = Barrier::new(threads);
    let pinned = AtomicBool::new(true);
    let per_thread: Vec<(Vec<(Instant, Instant)>, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, pinned, cpus) = (&barrier, &pinned, &cpus);
                let (setup, rep, finish) = (&setup, &rep, &finish);
                scope.spawn(move || {
                    let cpu = cpus.get(i % cpus.len().max(1)).copied().unwrap_or(i);
                    if !pin_current(cpu) {
                        pinned.store(false, Ordering::Relaxed);
                    }
                    let mut state = setup(i);
                    let mut spans = Vec::with_capacity(reps);
                    for _ in 0..reps {
                        barrier.wait();
                        let t0 = Instant::now();
                        rep(&mut state);
                        spans.push((t0, Instant::now()));
                    }
                    (spans, finish(state))
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let samples_s = (0..reps)
        .map(|r| {
            let spans = per_thread.iter().filter_map(|(s, _)| s.get(r));
            let start = spans.clone().map(|s| s.0).min();
            let end = spans.map(|s| s.1).max();
            match (start, end) {
                (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
                _ => f64::NAN,
            }
        })
        .collect();
    Timed {
        samples_s,
        pinned: pinned.load(Ordering::Relaxed) && threads <= cpus.len(),
        results: per_thread.into_iter().map(|(_, r)| r).collect(),
    }
}
