//! What the machine did around a kernel round, read from the operating system
//! rather than inferred from a probe: the steal time and the CPU time of other
//! processes (`/proc/stat`), flopcal's own CPU time against the wall clock
//! (`CLOCK_PROCESS_CPUTIME_ID`), and the CPU frequency where the kernel reports it
//! (sysfs `cpufreq`, else `/proc/cpuinfo`).
//!
//! A [`Snapshot`] is taken before and after a round; [`reading`] turns the pair into
//! a [`RoundReading`]. Anything that cannot be read is `None` (null in the result
//! file), never an error: macOS and containers without procfs simply have no
//! steal figure. Counters that went backwards between the two snapshots (a wrap,
//! a hot-unplugged CPU) make that round's machine figures `None`, never negative.
//!
//! [`reading_contended`] judges a round by these figures alone, with the thresholds
//! [`STEAL_CONTENDED`] and [`FOREIGN_CONTENDED`].

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// A round whose steal time exceeds this share of the machine's CPU time ran while
/// the hypervisor gave this guest's vCPUs to someone else. Chosen, not fitted: one
/// vCPU of two descheduled for a tenth of the round is 5%, the size of slowdown the
/// regression gate is meant to catch.
pub const STEAL_CONTENDED: f64 = 0.05;

/// A round in which other processes used more than this share of the machine's CPU
/// time (all CPUs together) shared its cores with them. Chosen, not fitted: on two
/// CPUs, 25% is one other process busy on one core for half the round. Below it the
/// tick-sampled `/proc/stat` accounting (±1 tick per CPU) is too coarse to trust on
/// rounds of a few hundred milliseconds.
pub const FOREIGN_CONTENDED: f64 = 0.25;

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks (USER_HZ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// Time in user mode (guest time included, as the kernel counts it).
    pub user: u64,
    /// Time in user mode at low priority.
    pub nice: u64,
    /// Time in kernel mode.
    pub system: u64,
    /// Idle time.
    pub idle: u64,
    /// Idle time waiting for I/O.
    pub iowait: u64,
    /// Time servicing interrupts.
    pub irq: u64,
    /// Time servicing softirqs.
    pub softirq: u64,
    /// Time the hypervisor ran something else while this guest wanted to run.
    pub steal: u64,
}

impl CpuTimes {
    /// Busy ticks: everything but idle, iowait and steal.
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq
    }

    /// All ticks.
    pub fn total(&self) -> u64 {
        self.busy() + self.idle + self.iowait + self.steal
    }

    /// Per-field differences `later − self`; `None` when any counter went backwards.
    pub fn delta(&self, later: &CpuTimes) -> Option<CpuTimes> {
        Some(CpuTimes {
            user: later.user.checked_sub(self.user)?,
            nice: later.nice.checked_sub(self.nice)?,
            system: later.system.checked_sub(self.system)?,
            idle: later.idle.checked_sub(self.idle)?,
            iowait: later.iowait.checked_sub(self.iowait)?,
            irq: later.irq.checked_sub(self.irq)?,
            softirq: later.softirq.checked_sub(self.softirq)?,
            steal: later.steal.checked_sub(self.steal)?,
        })
    }
}

/// Parse the aggregate `cpu ` line of `/proc/stat` text. Kernels before 2.6.11 have
/// no steal column (read as 0); fewer than four numbers, or a number that does not
/// parse, is `None`.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let nums: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() < 4 {
        return None;
    }
    let at = |i: usize| nums.get(i).copied().unwrap_or(0);
    Some(CpuTimes {
        user: at(0),
        nice: at(1),
        system: at(2),
        idle: at(3),
        iowait: at(4),
        irq: at(5),
        softirq: at(6),
        steal: at(7),
    })
}

/// The mean `cpu MHz` over the processors of `/proc/cpuinfo` text.
pub fn parse_cpuinfo_mhz(text: &str) -> Option<f64> {
    let mhz: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("cpu MHz"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    (!mhz.is_empty()).then(|| mhz.iter().sum::<f64>() / mhz.len() as f64)
}

/// The CPU frequency now, MHz, averaged over CPUs: sysfs `scaling_cur_freq` (kHz)
/// where cpufreq is exposed, else `/proc/cpuinfo`'s `cpu MHz` (on many VMs that is
/// the nominal clock, not a measurement).
pub fn cpu_mhz() -> Option<f64> {
    let mut khz = Vec::new();
    for cpu in 0.. {
        let path = format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq");
        match std::fs::read_to_string(path) {
            Ok(s) => {
                if let Ok(v) = s.trim().parse::<f64>() {
                    khz.push(v);
                }
            }
            Err(_) => break,
        }
    }
    if !khz.is_empty() {
        return Some(khz.iter().sum::<f64>() / khz.len() as f64 / 1e3);
    }
    parse_cpuinfo_mhz(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

/// The machine's CPU counters now, if `/proc/stat` is readable.
pub fn proc_stat() -> Option<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Clock ticks per second of `/proc/stat` (USER_HZ).
#[cfg(unix)]
fn ticks_per_s() -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (t > 0).then_some(t as f64)
}

#[cfg(not(unix))]
fn ticks_per_s() -> Option<f64> {
    None
}

/// CPU seconds this process has used, all threads.
#[cfg(unix)]
pub fn process_cpu_s() -> Option<f64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// CPU seconds this process has used (not available on this platform).
#[cfg(not(unix))]
pub fn process_cpu_s() -> Option<f64> {
    None
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    cpu: Option<CpuTimes>,
    process_cpu_s: Option<f64>,
}

/// Read the counters now.
pub fn snapshot() -> Snapshot {
    Snapshot {
        at: Instant::now(),
        cpu: proc_stat(),
        process_cpu_s: process_cpu_s(),
    }
}

/// What the machine did over one round, as kept in the result file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundReading {
    /// Wall-clock seconds of the round (preparation and verification included on
    /// a kernel's first round).
    pub wall_s: f64,
    /// CPU seconds flopcal used over the round, all threads.
    pub process_cpu_s: Option<f64>,
    /// Steal time over the round as a share of the machine's CPU time (all CPUs).
    pub steal_frac: Option<f64>,
    /// CPU time of other processes over the round (the machine's busy time less
    /// flopcal's) as a share of the machine's CPU time; clamped at 0, since the
    /// kernel samples busy time in whole ticks.
    pub foreign_frac: Option<f64>,
    /// Mean CPU frequency at the end of the round, MHz, as the kernel reports it.
    pub cpu_mhz: Option<f64>,
}

/// The reading of a round between two snapshots, with the frequency `mhz`.
/// Machine figures are `None` without `/proc/stat`, when a counter went backwards,
/// or when no tick elapsed.
pub fn reading_between(before: &Snapshot, after: &Snapshot, mhz: Option<f64>) -> RoundReading {
    let wall_s = after.at.saturating_duration_since(before.at).as_secs_f64();
    let process_cpu_s = match (before.process_cpu_s, after.process_cpu_s) {
        (Some(a), Some(b)) if b >= a => Some(b - a),
        _ => None,
    };
    let delta = match (before.cpu, after.cpu) {
        (Some(a), Some(b)) => a.delta(&b).filter(|d| d.total() > 0),
        _ => None,
    };
    let (steal_frac, foreign_frac) = match delta {
        Some(d) => {
            let total = d.total() as f64;
            let foreign = match (process_cpu_s, ticks_per_s()) {
                (Some(own), Some(hz)) => Some(((d.busy() as f64 - own * hz) / total).max(0.0)),
                _ => None,
            };
            (Some(d.steal as f64 / total), foreign)
        }
        None => (None, None),
    };
    RoundReading {
        wall_s,
        process_cpu_s,
        steal_frac,
        foreign_frac,
        cpu_mhz: mhz,
    }
}

/// The reading of a round that began at `before` and ends now.
pub fn reading(before: &Snapshot) -> RoundReading {
    reading_between(before, &snapshot(), cpu_mhz())
}

/// Whether the round's own figures say the machine was shared: steal above
/// [`STEAL_CONTENDED`] or other processes above [`FOREIGN_CONTENDED`].
pub fn reading_contended(r: &RoundReading) -> bool {
    r.steal_frac.is_some_and(|s| s > STEAL_CONTENDED)
        || r.foreign_frac.is_some_and(|f| f > FOREIGN_CONTENDED)
}

/// A note for the result file when the machine counters cannot be read here.
pub fn availability_note() -> Option<String> {
    match std::fs::read_to_string("/proc/stat") {
        Ok(text) if parse_proc_stat(&text).is_some() => None,
        Ok(_) => Some(
            "/proc/stat has no aggregate cpu line: steal and other processes' CPU time were not recorded".into(),
        ),
        Err(e) => Some(format!(
            "/proc/stat unreadable ({e}): steal and other processes' CPU time were not recorded"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  67980 3026 4989 1819443 423 0 50 951 0 0\n\
cpu0 33938 1539 2228 910008 178 0 23 420 0 0\n\
cpu1 34041 1487 2760 909435 245 0 27 531 0 0\n\
intr 123 0 0\nctxt 456\n";

    #[test]
    fn the_aggregate_cpu_line_of_proc_stat_parses_with_its_steal_column() {
        let t = parse_proc_stat(STAT).unwrap();
        assert_eq!(t.user, 67980);
        assert_eq!(t.idle, 1819443);
        assert_eq!(t.steal, 951);
        assert_eq!(t.busy(), 67980 + 3026 + 4989 + 50);
        assert_eq!(t.total(), t.busy() + 1819443 + 423 + 951);
    }

    #[test]
    fn an_old_kernel_without_steal_reads_zero_steal_and_garbage_reads_nothing() {
        let t = parse_proc_stat("cpu 10 0 5 100\n").unwrap();
        assert_eq!((t.system, t.steal), (5, 0));
        assert_eq!(parse_proc_stat("cpu 10 x 5 100\n"), None);
        assert_eq!(parse_proc_stat("cpu 10 0\n"), None);
        assert_eq!(
            parse_proc_stat("cpu0 1 2 3 4 5\n"),
            None,
            "no aggregate line"
        );
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn cpuinfo_frequency_is_the_mean_over_processors() {
        let text = "processor\t: 0\ncpu MHz\t\t: 2000.000\nprocessor\t: 1\ncpu MHz\t\t: 3000.5\n";
        assert_eq!(parse_cpuinfo_mhz(text), Some(2500.25));
        assert_eq!(parse_cpuinfo_mhz("processor : 0\n"), None);
    }

    fn snap(cpu: Option<CpuTimes>, own: Option<f64>) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            cpu,
            process_cpu_s: own,
        }
    }

    #[test]
    fn steal_and_other_processes_are_shares_of_the_machines_cpu_time() {
        let hz = ticks_per_s().unwrap();
        let a = parse_proc_stat(STAT).unwrap();
        // 200 ticks in all: 20 steal, 120 busy of which flopcal used 60 ticks' worth.
        let b = CpuTimes {
            user: a.user + 100,
            system: a.system + 20,
            idle: a.idle + 60,
            steal: a.steal + 20,
            ..a
        };
        let r = reading_between(
            &snap(Some(a), Some(1.0)),
            &snap(Some(b), Some(1.0 + 60.0 / hz)),
            Some(2000.0),
        );
        assert!((r.steal_frac.unwrap() - 0.1).abs() < 1e-12, "{r:?}");
        assert!((r.foreign_frac.unwrap() - 0.3).abs() < 1e-9, "{r:?}");
        assert!((r.process_cpu_s.unwrap() - 60.0 / hz).abs() < 1e-12);
        assert_eq!(r.cpu_mhz, Some(2000.0));
        assert!(reading_contended(&r));
    }

    #[test]
    fn counters_that_go_backwards_give_no_reading_rather_than_a_negative_one() {
        let a = parse_proc_stat(STAT).unwrap();
        let b = CpuTimes {
            steal: a.steal - 1,
            idle: a.idle + 100,
            ..a
        };
        let r = reading_between(&snap(Some(a), Some(2.0)), &snap(Some(b), Some(1.0)), None);
        assert_eq!(
            (r.steal_frac, r.foreign_frac, r.process_cpu_s),
            (None, None, None)
        );
        assert!(!reading_contended(&r));
    }

    #[test]
    fn without_proc_stat_the_machine_figures_are_absent_and_nothing_fails() {
        let r = reading_between(&snap(None, Some(1.0)), &snap(None, Some(1.5)), None);
        assert_eq!((r.steal_frac, r.foreign_frac), (None, None));
        assert_eq!(r.process_cpu_s, Some(0.5));
        // No tick elapsed between the two readings: no share either.
        let a = parse_proc_stat(STAT).unwrap();
        let r = reading_between(&snap(Some(a), None), &snap(Some(a), None), None);
        assert_eq!(r.steal_frac, None);
    }

    #[test]
    fn a_quiet_round_is_not_contended_and_either_signal_above_its_threshold_is() {
        let quiet = RoundReading {
            wall_s: 1.0,
            process_cpu_s: Some(2.0),
            steal_frac: Some(0.01),
            foreign_frac: Some(0.05),
            cpu_mhz: None,
        };
        assert!(!reading_contended(&quiet));
        assert!(reading_contended(&RoundReading {
            steal_frac: Some(0.14),
            ..quiet
        }));
        assert!(reading_contended(&RoundReading {
            foreign_frac: Some(0.5),
            ..quiet
        }));
    }

    #[test]
    fn a_live_snapshot_pair_reads_this_process_and_this_machine() {
        let before = snapshot();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let r = reading(&before);
        assert!(r.wall_s > 0.0);
        if cfg!(target_os = "linux") {
            assert!(r.process_cpu_s.unwrap() > 0.0, "{r:?}");
        }
    }
}
