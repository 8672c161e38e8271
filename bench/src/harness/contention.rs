//! Contention detection: is the machine slower right now than it can be?
//!
//! Shared VMs have episodes, from a few seconds to about a minute long, in which
//! something outside the guest slows it. On the 2-core AVX-512 VM flopcal was built
//! on, a candle layernorm over 1024×768 f32 took 0.25 ms outside such episodes and
//! 0.55–0.65 ms inside; softmax and SDPA slowed by 1.3–1.6×, GEMMs by up to 10%.
//! Back-to-back `profile --quick --filter layernorm,softmax` runs for three minutes
//! showed the episodes come and go with time (a six-round profile switches state
//! between rounds), so they are neither the process's memory layout nor its threads.
//! A 4 MiB copy and an FMA loop barely notice them, so the probe is the most
//! sensitive kernel itself. Two profiles of the same machine disagree far beyond
//! their confidence intervals when one of them ran through an episode, whatever the
//! sampling.
//!
//! The harness therefore brackets every kernel round with a [`Probe`] reading. The
//! fastest reading of the run is the machine's uncontended speed; a round whose
//! bracketing readings are more than [`CONTENDED_RATIO`] slower ran under contention.
//! Such rounds are kept in the result file (raw samples and readings) but left out of
//! the statistics, and re-measured once the machine is quiet again when time allows.

/// A fixed reference workload, timed.
pub trait Probe {
    /// Seconds the reference workload took now.
    fn read(&mut self) -> f64;
}

/// A reading this much slower than the run's fastest one means contention. On the
/// 2-core VM (six-round quick profiles, four runs) quiet rounds read 1.1–1.6× the
/// best (the slower of two bracketing readings), contended ones 2.4–3.3×.
pub const CONTENDED_RATIO: f64 = 2.0;

/// Whether a reading shows contention, given the fastest reading of the run.
pub fn is_contended(reading: f64, best: f64) -> bool {
    reading.is_finite() && best.is_finite() && best > 0.0 && reading > best * CONTENDED_RATIO
}

/// The real probe: a prepared kernel, the fastest of three runs.
pub struct KernelProbe {
    kernel: Box<dyn flopcal_kernels::Prepared>,
}

impl KernelProbe {
    /// Probe with `kernel` (prepared outside any timing).
    pub fn new(kernel: Box<dyn flopcal_kernels::Prepared>) -> Self {
        KernelProbe { kernel }
    }
}

impl Probe for KernelProbe {
    fn read(&mut self) -> f64 {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let start = std::time::Instant::now();
            if self
                .kernel
                .run()
                .and_then(|_| self.kernel.synchronize())
                .is_err()
            {
                return f64::NAN;
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        best
    }
}

/// What [`layernorm_monitor`] probes with, as recorded in result files.
pub const LAYERNORM_PROBE: &str = "fastest of three candle layernorms over 1024×768 f32";

/// A monitor probing with a candle layernorm over 1024×768 f32 on `device`, the
/// kernel the episodes slow most; three readings are taken to settle it.
pub fn layernorm_monitor(
    device: &candle_core::Device,
) -> Result<Monitor, flopcal_kernels::KernelError> {
    let probe = flopcal_kernels::elementwise::Elementwise {
        label: "probe".into(),
        op: flopcal_kernels::elementwise::Op::LayerNorm,
        rows: 1024,
        cols: 768,
        dtype: candle_core::DType::F32,
    };
    let kernel = flopcal_kernels::Kernel::prepare(&probe, device)?;
    let mut m = Monitor::new(Box::new(KernelProbe::new(kernel)));
    for _ in 0..3 {
        m.read();
    }
    Ok(m)
}

/// A probe for tests: readings come from a function of the call index.
pub struct MockProbe<F: FnMut(usize) -> f64> {
    next: F,
    calls: usize,
}

impl<F: FnMut(usize) -> f64> MockProbe<F> {
    /// `reading(i)` is the `i`-th reading.
    pub fn new(reading: F) -> Self {
        MockProbe {
            next: reading,
            calls: 0,
        }
    }
}

impl<F: FnMut(usize) -> f64> Probe for MockProbe<F> {
    fn read(&mut self) -> f64 {
        let t = (self.next)(self.calls);
        self.calls += 1;
        t
    }
}

/// Keeps the run's fastest reading.
pub struct Monitor {
    probe: Box<dyn Probe>,
    best: f64,
    readings: usize,
}

impl Monitor {
    /// Watch with `probe`.
    pub fn new(probe: Box<dyn Probe>) -> Self {
        Monitor {
            probe,
            best: f64::INFINITY,
            readings: 0,
        }
    }

    /// Take a reading (and remember it if it is the fastest so far).
    pub fn read(&mut self) -> f64 {
        let t = self.probe.read();
        self.readings += 1;
        if t.is_finite() && t > 0.0 {
            self.best = self.best.min(t);
        }
        t
    }

    /// Whether the machine is contended right now, judged against the fastest
    /// reading so far.
    pub fn contended_now(&mut self) -> bool {
        let t = self.read();
        is_contended(t, self.best)
    }

    /// Fastest reading so far (infinite before the first).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Readings taken.
    pub fn readings(&self) -> usize {
        self.readings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_beyond_the_ratio_of_the_best_is_contended_and_one_within_is_not() {
        assert!(!is_contended(1.9, 1.0));
        assert!(is_contended(2.1, 1.0));
        assert!(!is_contended(f64::NAN, 1.0), "no reading, no verdict");
        assert!(!is_contended(2.0, f64::INFINITY), "no best yet");
    }

    #[test]
    fn the_monitor_keeps_the_fastest_reading_and_judges_against_it() {
        let readings = [2.5, 1.0, 1.5, 3.0];
        let mut m = Monitor::new(Box::new(MockProbe::new(move |i| readings[i])));
        assert!(!m.contended_now(), "the first reading is its own best");
        assert!(!m.contended_now());
        assert_eq!(m.best(), 1.0);
        assert!(!m.contended_now());
        assert!(m.contended_now());
        assert_eq!(m.readings(), 4);
    }
}
