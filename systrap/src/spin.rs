//! When spinning pays.
//!
//! Both sides of a handoff (a stub thread waiting for its result, a worker
//! waiting for the next stop) may spin for a while before they sleep on a
//! futex. Spinning pays when the other side usually answers within the spin
//! window: the waiter then skips a futex sleep and the other side's wake-up
//! call, which on this kind of VM costs tens of microseconds across CPUs. It
//! does not pay when the answer usually comes later (a guest that computes
//! between syscalls, a syscall that blocks): the spin only burns a CPU.
//!
//! A [`SpinController`] watches the outcome of each spin (answered while
//! spinning: a hit; spin budget used up: a miss) over a window of handoffs.
//! When fewer than half of them were hits, it turns spinning off for a while
//! (counted in handoffs, so it costs no clock reads) and then probes again;
//! each failed probe doubles the pause, up to a limit. Each waiter owns its
//! controller (a worker, a guest thread's context), so nothing is shared.

/// Handoffs per decision.
const WINDOW: u32 = 64;
/// Handoffs without spinning after the first failed window.
const MIN_OFF: u32 = 64;
/// The longest pause between probes, in handoffs.
const MAX_OFF: u32 = 1 << 14;

/// Decides, handoff by handoff, whether a waiter should spin first.
#[derive(Clone, Debug, Default)]
pub struct SpinController {
    hits: u32,
    misses: u32,
    off_left: u32,
    backoff: u32,
    stats: SpinStats,
}

/// What a controller saw, for diagnostics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpinStats {
    /// Spins answered in time.
    pub hits: u64,
    /// Spins that ran out.
    pub misses: u64,
    /// Handoffs that slept at once because spinning was off.
    pub skipped: u64,
    /// Times spinning was turned off.
    pub turned_off: u64,
}

impl SpinController {
    /// Whether to spin before the next wait. Call once per wait; while
    /// spinning is off this counts the wait towards the next probe.
    pub fn should_spin(&mut self) -> bool {
        if self.off_left > 0 {
            self.off_left -= 1;
            self.stats.skipped += 1;
            false
        } else {
            true
        }
    }

    /// The outcome of a spin that `should_spin` allowed.
    pub fn record(&mut self, hit: bool) {
        if hit {
            self.hits += 1;
            self.stats.hits += 1;
        } else {
            self.misses += 1;
            self.stats.misses += 1;
        }
        if self.hits + self.misses < WINDOW {
            return;
        }
        if self.hits < self.misses {
            self.backoff = (self.backoff * 2).clamp(MIN_OFF, MAX_OFF);
            self.off_left = self.backoff;
            self.stats.turned_off += 1;
        } else {
            self.backoff = 0;
        }
        self.hits = 0;
        self.misses = 0;
    }

    /// Whether spinning is currently off.
    pub fn is_off(&self) -> bool {
        self.off_left > 0
    }

    pub fn stats(&self) -> SpinStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(c: &mut SpinController, n: u32, hit: bool) -> u32 {
        let mut spun = 0;
        for _ in 0..n {
            if c.should_spin() {
                spun += 1;
                c.record(hit);
            }
        }
        spun
    }

    #[test]
    fn keeps_spinning_while_it_pays() {
        let mut c = SpinController::default();
        assert_eq!(feed(&mut c, 10_000, true), 10_000);
        assert!(!c.is_off());
    }

    #[test]
    fn stops_spinning_when_it_does_not_pay_and_backs_off() {
        let mut c = SpinController::default();
        // The first window of misses turns it off for MIN_OFF handoffs.
        assert_eq!(feed(&mut c, WINDOW, false), WINDOW);
        assert!(c.is_off());
        assert_eq!(feed(&mut c, MIN_OFF, false), 0);
        // It probes again; another failed window doubles the pause.
        assert_eq!(feed(&mut c, WINDOW, false), WINDOW);
        assert_eq!(feed(&mut c, 2 * MIN_OFF, false), 0);
        assert_eq!(feed(&mut c, 1, false), 1);
        // Always missing: the pauses reach MAX_OFF and spinning stays rare.
        let spun = feed(&mut c, 1_000_000, false);
        assert!(spun < 1_000_000 / 50, "spun {spun} times");
        assert!(c.stats().turned_off >= 10);
    }

    #[test]
    fn a_good_probe_resets_the_backoff() {
        let mut c = SpinController::default();
        feed(&mut c, WINDOW, false);
        feed(&mut c, MIN_OFF, false);
        // The probe window is all hits: spinning stays on from now on.
        assert_eq!(feed(&mut c, 5 * WINDOW, true), 5 * WINDOW);
        assert!(!c.is_off());
        // A later bad window starts again at the shortest pause.
        feed(&mut c, WINDOW, false);
        assert_eq!(feed(&mut c, MIN_OFF, false), 0);
        assert_eq!(feed(&mut c, 1, true), 1);
    }
}
