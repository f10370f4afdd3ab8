//! Where a thread goes when it is spawned or woken under `--threads
//! hybrid:K`, and which run queue an idle worker steals from: pure
//! functions of the queues' lengths, so experiments drive the same code.

/// A placement policy (`--placement`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// A worker drawn uniformly at random (`--seed` fixes the draws).
    Random,
    /// Worker 0, 1, .. K-1, 0, .. in turn.
    #[default]
    RoundRobin,
    /// The worker with the shortest run queue (the lowest index on a tie).
    LeastLoaded,
}

/// A small deterministic generator (xorshift64*) for `Random`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; 0 is mapped to a fixed odd one).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// The next draw.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A draw below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The state a policy keeps between choices (round-robin's turn, the
/// random generator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placer {
    pub policy: Placement,
    turn: usize,
    rng: Rng,
}

impl Placer {
    pub fn new(policy: Placement, seed: u64) -> Self {
        Placer { policy, turn: 0, rng: Rng::new(seed) }
    }

    /// The worker for a new or woken thread, given each worker's load
    /// (threads queued or running on it). `loads` must not be empty.
    pub fn choose(&mut self, loads: &[usize]) -> usize {
        self.policy.choose(loads, &mut self.turn, &mut self.rng)
    }
}

impl Placement {
    /// The worker for a new or woken thread; `turn` is round-robin's next
    /// worker (advanced here), `rng` random's draws. Always below
    /// `loads.len()` (0 if it is empty).
    pub fn choose(&self, loads: &[usize], turn: &mut usize, rng: &mut Rng) -> usize {
        let k = loads.len();
        if k == 0 {
            return 0;
        }
        match self {
            Placement::Random => rng.below(k),
            Placement::RoundRobin => {
                let w = *turn % k;
                *turn = (w + 1) % k;
                w
            }
            Placement::LeastLoaded => loads.iter().enumerate().min_by_key(|&(i, &l)| (l, i)).map_or(0, |(i, _)| i),
        }
    }

    /// The name `--placement` takes.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Random => "random",
            Placement::RoundRobin => "round-robin",
            Placement::LeastLoaded => "least-loaded",
        }
    }
}

impl std::str::FromStr for Placement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Placement::Random),
            "round-robin" => Ok(Placement::RoundRobin),
            "least-loaded" => Ok(Placement::LeastLoaded),
            _ => Err(format!("unknown placement {s:?}: use random, round-robin or least-loaded")),
        }
    }
}

/// The stealing rule: an idle worker `me` takes from the longest run queue
/// of another worker holding at least one waiting thread (the lowest index
/// on a tie); `queued` counts each worker's waiting threads (not the one
/// it runs). `None`: nothing to steal.
pub fn steal_from(me: usize, queued: &[usize]) -> Option<usize> {
    queued
        .iter()
        .enumerate()
        .filter(|&(i, &q)| i != me && q > 0)
        .max_by_key(|&(i, &q)| (q, std::cmp::Reverse(i)))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles_through_every_worker() {
        let mut p = Placer::new(Placement::RoundRobin, 1);
        let picks: Vec<usize> = (0..7).map(|_| p.choose(&[9, 0, 4])).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
        // A single worker always gets it; no worker gives 0.
        assert_eq!(Placer::new(Placement::RoundRobin, 1).choose(&[5]), 0);
        assert_eq!(Placer::new(Placement::LeastLoaded, 1).choose(&[]), 0);
    }

    #[test]
    fn least_loaded_takes_the_shortest_queue_and_the_lowest_on_ties() {
        let mut p = Placer::new(Placement::LeastLoaded, 1);
        assert_eq!(p.choose(&[3, 1, 2]), 1);
        assert_eq!(p.choose(&[2, 0, 0]), 1);
        assert_eq!(p.choose(&[0, 0, 0]), 0);
        assert_eq!(p.choose(&[usize::MAX, usize::MAX - 1]), 1);
    }

    #[test]
    fn random_stays_in_range_is_seeded_and_reaches_every_worker() {
        let draws = |seed| {
            let mut p = Placer::new(Placement::Random, seed);
            (0..200).map(|_| p.choose(&[0; 4])).collect::<Vec<_>>()
        };
        let a = draws(7);
        assert_eq!(a, draws(7));
        assert_ne!(a, draws(8));
        assert!(a.iter().all(|&w| w < 4));
        assert!((0..4).all(|w| a.contains(&w)));
        assert_eq!(draws(0).len(), 200);
    }

    #[test]
    fn stealing_takes_from_the_longest_other_queue() {
        assert_eq!(steal_from(0, &[0, 2, 5, 5]), Some(2));
        assert_eq!(steal_from(2, &[0, 2, 5, 1]), Some(1));
        assert_eq!(steal_from(1, &[0, 9]), None);
        assert_eq!(steal_from(0, &[0, 0, 0]), None);
        assert_eq!(steal_from(0, &[]), None);
    }

    #[test]
    fn names_parse_back() {
        for p in [Placement::Random, Placement::RoundRobin, Placement::LeastLoaded] {
            assert_eq!(p.name().parse::<Placement>(), Ok(p));
        }
        assert!("fastest".parse::<Placement>().is_err());
    }
}
