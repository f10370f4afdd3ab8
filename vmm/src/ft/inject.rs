//! Fault injection (`--inject-fault SPEC`), so that every detector and
//! every recovery path can be broken on purpose and measured.
//!
//! ```text
//! SPEC := KIND=VALUE [,OPTION=VALUE]...
//! shutdown-after-exits=N     a triple fault (a made-up KVM_EXIT_SHUTDOWN) at exit N of the attempt
//! kill-vcpu-after-exits=N    the vCPU thread dies at exit N (it ends without a word)
//! random=P                   at each exit, with probability P: a triple fault or a vCPU death
//! hang-after-ms=T            the VMM's controller hangs T ms into the attempt: no heartbeat, checkpoint or output
//! crash-after-ms=T           the VMM kills itself with SIGKILL T ms into the attempt
//! options: seed=S (random's generator), attempts=K|all (which attempts get the fault)
//! ```
//!
//! A fault depends on the attempt (0 for the first run, one more for each
//! rollback or restart), so that a retry can succeed, as transient faults
//! do: the deterministic kinds strike the first attempt only unless
//! `attempts` says otherwise, and `random` mixes the attempt into its seed.
//! [`FaultSpec::parse`] is pure (the fuzz target's entry).

use std::time::Duration;

/// Errors of parsing a fault spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    #[error("the fault spec is empty: give one of {KINDS}")]
    Empty,
    #[error("{kind:?} is not a kind of fault: use one of {KINDS}")]
    UnknownKind { kind: String },
    #[error("{part:?} in the fault spec is not KEY=VALUE")]
    NotKeyValue { part: String },
    #[error("{key}={value:?} is not a whole number (0 to 2^64-1)")]
    BadNumber { key: String, value: String },
    #[error("random={value:?} is not a probability: use a number from 0 to 1, such as 0.001")]
    BadProbability { value: String },
    #[error("{key:?} is not an option of {kind}: use {allowed}")]
    UnknownOption { key: String, kind: &'static str, allowed: &'static str },
    #[error("the option {key} is given twice")]
    Duplicate { key: String },
}

const KINDS: &str = "shutdown-after-exits=N, kill-vcpu-after-exits=N, random=P, hang-after-ms=T, crash-after-ms=T";

/// What to break, and when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FaultKind {
    /// A triple fault at this exit of the attempt (counted from 1).
    ShutdownAfterExits(u64),
    /// The vCPU thread dies at this exit of the attempt.
    KillVcpuAfterExits(u64),
    /// At each exit, with probability `p`, a triple fault or a vCPU death.
    Random { p: f64, seed: u64 },
    /// The controller hangs this long into the attempt.
    HangAfter(Duration),
    /// The process dies of SIGKILL this long into the attempt.
    CrashAfter(Duration),
}

/// One `--inject-fault`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// The fault strikes attempts `0..n` only; `None`: every attempt.
    pub attempts: Option<u32>,
}

fn number(key: &str, value: &str) -> Result<u64, FaultSpecError> {
    value.parse().map_err(|_| FaultSpecError::BadNumber { key: key.into(), value: value.into() })
}

impl FaultSpec {
    /// Parses `KIND=VALUE[,OPTION=VALUE]...`.
    ///
    /// # Errors
    ///
    /// A [`FaultSpecError`] naming the part that is wrong and what to write.
    pub fn parse(spec: &str) -> Result<Self, FaultSpecError> {
        let mut parts = spec.split(',').map(str::trim).filter(|p| !p.is_empty());
        let first = parts.next().ok_or(FaultSpecError::Empty)?;
        let (kind, value) = first.split_once('=').ok_or_else(|| match first {
            "shutdown-after-exits" | "kill-vcpu-after-exits" | "random" | "hang-after-ms" | "crash-after-ms" => {
                FaultSpecError::NotKeyValue { part: first.into() }
            }
            _ => FaultSpecError::UnknownKind { kind: first.into() },
        })?;
        let (mut seed, mut attempts, mut seen) = (None, None, Vec::new());
        let allowed = if kind == "random" { "seed=S, attempts=K|all" } else { "attempts=K|all" };
        for part in parts {
            let (key, v) = part.split_once('=').ok_or_else(|| FaultSpecError::NotKeyValue { part: part.into() })?;
            if seen.contains(&key) {
                return Err(FaultSpecError::Duplicate { key: key.into() });
            }
            seen.push(key);
            match key {
                "seed" if kind == "random" => seed = Some(number(key, v)?),
                "attempts" if v == "all" => attempts = Some(None),
                "attempts" => {
                    let n = number(key, v)?;
                    attempts = Some(Some(u32::try_from(n).unwrap_or(u32::MAX)));
                }
                _ => {
                    let kind_name = match kind {
                        "random" => "random",
                        "shutdown-after-exits" => "shutdown-after-exits",
                        "kill-vcpu-after-exits" => "kill-vcpu-after-exits",
                        "hang-after-ms" => "hang-after-ms",
                        "crash-after-ms" => "crash-after-ms",
                        _ => return Err(FaultSpecError::UnknownKind { kind: kind.into() }),
                    };
                    return Err(FaultSpecError::UnknownOption { key: key.into(), kind: kind_name, allowed });
                }
            }
        }
        let ms = |v: &str| number(kind, v).map(Duration::from_millis);
        let (kind, default_attempts) = match kind {
            "shutdown-after-exits" => (FaultKind::ShutdownAfterExits(number(kind, value)?), Some(1)),
            "kill-vcpu-after-exits" => (FaultKind::KillVcpuAfterExits(number(kind, value)?), Some(1)),
            "hang-after-ms" => (FaultKind::HangAfter(ms(value)?), Some(1)),
            "crash-after-ms" => (FaultKind::CrashAfter(ms(value)?), Some(1)),
            "random" => {
                let p: f64 = value.parse().map_err(|_| FaultSpecError::BadProbability { value: value.into() })?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(FaultSpecError::BadProbability { value: value.into() });
                }
                (FaultKind::Random { p, seed: seed.unwrap_or(1) }, None)
            }
            other => return Err(FaultSpecError::UnknownKind { kind: other.into() }),
        };
        Ok(FaultSpec { kind, attempts: attempts.unwrap_or(default_attempts) })
    }

    /// True if this fault strikes `attempt`.
    pub fn strikes(&self, attempt: u32) -> bool {
        self.attempts.is_none_or(|n| attempt < n)
    }
}

impl std::fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            FaultKind::ShutdownAfterExits(n) => write!(f, "shutdown-after-exits={n}")?,
            FaultKind::KillVcpuAfterExits(n) => write!(f, "kill-vcpu-after-exits={n}")?,
            FaultKind::Random { p, seed } => write!(f, "random={p},seed={seed}")?,
            FaultKind::HangAfter(d) => write!(f, "hang-after-ms={}", d.as_millis())?,
            FaultKind::CrashAfter(d) => write!(f, "crash-after-ms={}", d.as_millis())?,
        }
        match self.attempts {
            Some(n) => write!(f, ",attempts={n}"),
            None => write!(f, ",attempts=all"),
        }
    }
}

/// A fault the vCPU thread suffers at an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitFault {
    /// The exit turns into a triple fault.
    TripleFault,
    /// The vCPU thread ends at once.
    KillVcpu,
}

/// SplitMix64: a small generator whose every seed gives a good sequence.
#[derive(Clone, Debug)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The exit faults of one attempt, decided on the vCPU thread.
#[derive(Clone, Debug)]
pub struct FaultInjector {
    at_exit: Vec<(u64, ExitFault)>,
    random: Option<(f64, SplitMix)>,
    attempt: u32,
}

impl FaultInjector {
    /// The faults of `specs` that strike `attempt`.
    pub fn new(specs: &[FaultSpec], attempt: u32) -> Self {
        let mut injector = FaultInjector { at_exit: Vec::new(), random: None, attempt };
        for s in specs.iter().filter(|s| s.strikes(attempt)) {
            match s.kind {
                FaultKind::ShutdownAfterExits(n) => injector.at_exit.push((n, ExitFault::TripleFault)),
                FaultKind::KillVcpuAfterExits(n) => injector.at_exit.push((n, ExitFault::KillVcpu)),
                FaultKind::Random { p, seed } => {
                    let mixed = seed ^ u64::from(attempt).wrapping_mul(0xd1b5_4a32_d192_ed03);
                    injector.random = Some((p, SplitMix(mixed)));
                }
                FaultKind::HangAfter(_) | FaultKind::CrashAfter(_) => {}
            }
        }
        injector
    }

    /// The attempt this injector serves.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The fault to suffer at exit `exits` (counted from 1), if any.
    pub fn at_exit(&mut self, exits: u64) -> Option<ExitFault> {
        if let Some(&(_, fault)) = self.at_exit.iter().find(|(n, _)| *n == exits) {
            return Some(fault);
        }
        let (p, rng) = self.random.as_mut()?;
        if rng.unit() < *p {
            return Some(if rng.next_u64() & 1 == 0 { ExitFault::TripleFault } else { ExitFault::KillVcpu });
        }
        None
    }
}

/// When the controller of `attempt` should hang or crash, from `specs`.
pub fn timed_faults(specs: &[FaultSpec], attempt: u32) -> (Option<Duration>, Option<Duration>) {
    let mut hang = None;
    let mut crash = None;
    for s in specs.iter().filter(|s| s.strikes(attempt)) {
        match s.kind {
            FaultKind::HangAfter(d) => hang = Some(hang.map_or(d, |h: Duration| h.min(d))),
            FaultKind::CrashAfter(d) => crash = Some(crash.map_or(d, |c: Duration| c.min(d))),
            _ => {}
        }
    }
    (hang, crash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_their_defaults() {
        let s = FaultSpec::parse("shutdown-after-exits=40").unwrap();
        assert_eq!(s, FaultSpec { kind: FaultKind::ShutdownAfterExits(40), attempts: Some(1) });
        assert!(s.strikes(0) && !s.strikes(1), "a deterministic fault strikes the first attempt only");
        let r = FaultSpec::parse("random=0.01,seed=7").unwrap();
        assert_eq!(r, FaultSpec { kind: FaultKind::Random { p: 0.01, seed: 7 }, attempts: None });
        assert!(r.strikes(1000));
        let h = FaultSpec::parse("hang-after-ms=250, attempts=all").unwrap();
        assert_eq!((h.kind, h.attempts), (FaultKind::HangAfter(Duration::from_millis(250)), None));
        let k = FaultSpec::parse("kill-vcpu-after-exits=3,attempts=2").unwrap();
        assert!(k.strikes(1) && !k.strikes(2));
        assert_eq!(FaultSpec::parse("crash-after-ms=5").unwrap().kind, FaultKind::CrashAfter(Duration::from_millis(5)));
        for s in [k, r, h] {
            assert_eq!(FaultSpec::parse(&s.to_string()).unwrap(), s, "{s} reads back");
        }
    }

    #[test]
    fn bad_specs_say_what_to_write() {
        let cases = [
            ("", "the fault spec is empty"),
            ("explode=1", "\"explode\" is not a kind of fault: use one of shutdown-after-exits=N"),
            ("random", "\"random\" in the fault spec is not KEY=VALUE"),
            ("random=2", "random=\"2\" is not a probability"),
            ("random=nan", "is not a probability"),
            ("shutdown-after-exits=-1", "shutdown-after-exits=\"-1\" is not a whole number"),
            ("shutdown-after-exits=5,seed=1", "\"seed\" is not an option of shutdown-after-exits: use attempts=K|all"),
            ("random=0.5,seed=1,seed=2", "the option seed is given twice"),
            ("hang-after-ms=1,attempts", "\"attempts\" in the fault spec is not KEY=VALUE"),
        ];
        for (spec, expected) in cases {
            let e = FaultSpec::parse(spec).expect_err(spec).to_string();
            assert!(e.contains(expected), "{spec}: {e}");
        }
    }

    #[test]
    fn exit_faults_strike_at_their_exit_and_random_ones_depend_on_the_attempt() {
        let specs = [FaultSpec::parse("shutdown-after-exits=3").unwrap()];
        let mut first = FaultInjector::new(&specs, 0);
        assert_eq!((1..10).map(|e| first.at_exit(e)).filter(Option::is_some).count(), 1);
        assert_eq!(FaultInjector::new(&specs, 0).at_exit(3), Some(ExitFault::TripleFault));
        assert_eq!(FaultInjector::new(&specs, 1).at_exit(3), None, "the retry succeeds");
        let random = [FaultSpec::parse("random=0.01,seed=42").unwrap()];
        let strikes = |attempt| {
            let mut f = FaultInjector::new(&random, attempt);
            (1..=20_000u64).filter_map(|e| f.at_exit(e).map(|k| (e, k))).collect::<Vec<_>>()
        };
        let (a, b) = (strikes(0), strikes(1));
        assert_eq!(a, strikes(0), "the same attempt gives the same faults");
        assert_ne!(a, b, "another attempt gives other faults");
        // 200 expected in 20,000 exits at p = 0.01; both kinds occur.
        assert!((120..300).contains(&a.len()), "{} faults", a.len());
        assert!(
            a.iter().any(|(_, k)| *k == ExitFault::KillVcpu) && a.iter().any(|(_, k)| *k == ExitFault::TripleFault)
        );
        let never = [FaultSpec::parse("random=0").unwrap()];
        assert_eq!(FaultInjector::new(&never, 0).at_exit(1), None);
    }

    #[test]
    fn timed_faults_take_the_earliest_that_strikes() {
        let specs = [
            FaultSpec::parse("hang-after-ms=300").unwrap(),
            FaultSpec::parse("hang-after-ms=100,attempts=all").unwrap(),
            FaultSpec::parse("crash-after-ms=50,attempts=1").unwrap(),
        ];
        assert_eq!(timed_faults(&specs, 0), (Some(Duration::from_millis(100)), Some(Duration::from_millis(50))));
        assert_eq!(timed_faults(&specs, 1), (Some(Duration::from_millis(100)), None));
    }
}
