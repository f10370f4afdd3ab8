//! Restart delays (`vmm supervise --restart`), as Marc Brooker's
//! "Exponential Backoff And Jitter" (AWS Architecture Blog, 2015) defines
//! them, with `attempt` counting the restarts before this one (0 first),
//! `base` and `cap` the `--backoff-base-ms` and `--backoff-max-ms`:
//!
//! | policy | delay |
//! |---|---|
//! | `none` | no restart: the first failure is final (systemd's `Restart=no`) |
//! | `linear` | min(cap, base * (attempt + 1)) |
//! | `exponential` | min(cap, base * 2^attempt) |
//! | `jitter-full` | random in [0, min(cap, base * 2^attempt)] |
//! | `jitter-equal` | v / 2 + random in [0, v / 2], v = min(cap, base * 2^attempt) |
//! | `jitter-decorrelated` | min(cap, random in [base, previous * 3]), previous starting at base |
//!
//! Jitter spreads the restarts of many clients that failed together so
//! they do not hit a shared resource in lockstep; the decorrelated form
//! grows without needing the attempt count. Pure: the generator is seeded.

use std::time::Duration;

use super::inject::SplitMix;

/// How the supervisor spaces its restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RestartPolicy {
    None,
    Linear,
    Exponential,
    JitterFull,
    JitterEqual,
    JitterDecorrelated,
}

impl RestartPolicy {
    /// Every policy that restarts, in the order of the figures.
    pub const RESTARTING: [RestartPolicy; 5] = [
        RestartPolicy::Linear,
        RestartPolicy::Exponential,
        RestartPolicy::JitterFull,
        RestartPolicy::JitterEqual,
        RestartPolicy::JitterDecorrelated,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::None => "none",
            RestartPolicy::Linear => "linear",
            RestartPolicy::Exponential => "exponential",
            RestartPolicy::JitterFull => "jitter-full",
            RestartPolicy::JitterEqual => "jitter-equal",
            RestartPolicy::JitterDecorrelated => "jitter-decorrelated",
        }
    }
}

/// The delays of one supervisor, restart after restart.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RestartPolicy,
    base: u64,
    cap: u64,
    attempt: u32,
    previous: u64,
    rng: SplitMix,
}

/// `base * 2^attempt`, saturating.
fn doubled(base: u64, attempt: u32) -> u64 {
    if attempt >= 64 {
        return if base == 0 { 0 } else { u64::MAX };
    }
    base.saturating_mul(1u64 << attempt)
}

impl Backoff {
    /// Delays for `policy` between `base` and `cap` (nanosecond resolution),
    /// the jitter drawn from a generator seeded with `seed`.
    pub fn new(policy: RestartPolicy, base: Duration, cap: Duration, seed: u64) -> Self {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let (base, cap) = (ns(base), ns(cap).max(ns(base)));
        Backoff { policy, base, cap, attempt: 0, previous: base, rng: SplitMix(seed) }
    }

    /// A number in [lo, hi].
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.rng.next_u64();
        }
        lo + self.rng.next_u64() % (span + 1)
    }

    /// The delay before the next restart; `None` if the policy never restarts.
    pub fn next_delay(&mut self) -> Option<Duration> {
        let (base, cap, attempt) = (self.base, self.cap, self.attempt);
        let capped = doubled(base, attempt).min(cap);
        let ns = match self.policy {
            RestartPolicy::None => return None,
            RestartPolicy::Linear => base.saturating_mul(u64::from(attempt) + 1).min(cap),
            RestartPolicy::Exponential => capped,
            RestartPolicy::JitterFull => self.between(0, capped),
            RestartPolicy::JitterEqual => capped / 2 + self.between(0, capped - capped / 2),
            RestartPolicy::JitterDecorrelated => {
                let next = self.between(base, self.previous.saturating_mul(3)).min(cap);
                self.previous = next;
                next
            }
        };
        self.attempt = self.attempt.saturating_add(1);
        Some(Duration::from_nanos(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn delays(policy: RestartPolicy, seed: u64, n: usize) -> Vec<Duration> {
        let mut b = Backoff::new(policy, 10 * MS, 1000 * MS, seed);
        (0..n).map(|_| b.next_delay().unwrap()).collect()
    }

    #[test]
    fn deterministic_policies_follow_their_formulas() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        assert_eq!(delays(RestartPolicy::Exponential, 1, 9), ms(&[10, 20, 40, 80, 160, 320, 640, 1000, 1000]));
        assert_eq!(delays(RestartPolicy::Linear, 1, 4), ms(&[10, 20, 30, 40]));
        assert_eq!(Backoff::new(RestartPolicy::None, MS, MS, 0).next_delay(), None);
    }

    #[test]
    fn jittered_delays_stay_within_their_bounds_for_any_seed() {
        for seed in 0..500 {
            for (i, d) in delays(RestartPolicy::JitterFull, seed, 12).into_iter().enumerate() {
                assert!(d <= (MS * (10 << i)).min(1000 * MS), "full {i}: {d:?}");
            }
            for (i, d) in delays(RestartPolicy::JitterEqual, seed, 12).into_iter().enumerate() {
                let v = (MS * (10 << i)).min(1000 * MS);
                assert!(d >= v / 2 && d <= v, "equal {i}: {d:?} for {v:?}");
            }
            let mut previous = 10 * MS;
            for d in delays(RestartPolicy::JitterDecorrelated, seed, 12) {
                assert!(d >= 10 * MS && d <= (previous * 3).min(1000 * MS), "decorrelated {d:?} after {previous:?}");
                previous = d;
            }
        }
    }

    #[test]
    fn jitter_spreads_the_delays_and_the_seed_fixes_them() {
        assert_eq!(delays(RestartPolicy::JitterFull, 9, 10), delays(RestartPolicy::JitterFull, 9, 10));
        let third: Vec<Duration> = (0..200).map(|s| delays(RestartPolicy::JitterFull, s, 3)[2]).collect();
        let mean = third.iter().sum::<Duration>() / 200;
        // Uniform on [0, 40 ms]: the mean is near 20 ms and the values differ.
        assert!(mean > 15 * MS && mean < 25 * MS, "{mean:?}");
        assert!(third.iter().any(|d| *d < 10 * MS) && third.iter().any(|d| *d > 30 * MS));
    }

    #[test]
    fn huge_bounds_saturate_instead_of_overflowing() {
        let mut b = Backoff::new(RestartPolicy::Exponential, Duration::MAX, Duration::MAX, 0);
        for _ in 0..100 {
            assert!(b.next_delay().is_some());
        }
        let mut z = Backoff::new(RestartPolicy::JitterDecorrelated, Duration::ZERO, Duration::ZERO, 3);
        assert_eq!(z.next_delay(), Some(Duration::ZERO));
        assert_eq!(doubled(0, 200), 0);
    }
}
