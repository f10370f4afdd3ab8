//! Seeded task lists for the load-balancing runs: when each task arrives
//! and how much work it carries, uniform, heavy-tailed or bursty (drawn
//! with the placement module's generator).

use std::fmt;

pub use crate::threads::placement::Rng;

/// A draw of `rng` uniform in [0, 1).
pub fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The shape of a task list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Equal work, evenly spaced arrivals.
    Uniform,
    /// Pareto (alpha 1.2) work: most tasks small, a few huge; even arrivals.
    HeavyTailed,
    /// Equal work, arriving in clumps separated by quiet gaps.
    Bursty,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::Uniform, Workload::HeavyTailed, Workload::Bursty];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Uniform => "uniform",
            Workload::HeavyTailed => "heavy-tailed",
            Workload::Bursty => "bursty",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One task: it arrives `arrival_us` after the start and carries `work`
/// units (one unit is a fixed loop of the guest program).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Task {
    pub arrival_us: u64,
    pub work: u64,
}

/// How big a task list is: `tasks` tasks of `mean_work` units on average,
/// one arriving every `gap_us` on average.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub tasks: usize,
    pub mean_work: u64,
    pub gap_us: u64,
}

const PARETO_ALPHA: f64 = 1.2;
/// Tasks per burst of the bursty workload.
pub const BURST: usize = 8;

/// The task list of `kind` and `shape`, the same for the same `seed`.
/// Arrivals are non-decreasing; every task has at least one unit.
pub fn generate(kind: Workload, shape: Shape, seed: u64) -> Vec<Task> {
    let mut rng = Rng::new(seed ^ (kind as u64).wrapping_mul(0x5851_f42d_4c95_7f2d));
    let mean = shape.mean_work.max(1) as f64;
    // Pareto with minimum xm has mean xm * alpha / (alpha - 1).
    let xm = mean * (PARETO_ALPHA - 1.0) / PARETO_ALPHA;
    (0..shape.tasks)
        .map(|i| {
            let (arrival_us, work) = match kind {
                Workload::Uniform => (i as u64 * shape.gap_us, mean),
                Workload::HeavyTailed => {
                    let u = 1.0 - unit(&mut rng); // (0, 1]
                    (i as u64 * shape.gap_us, (xm / u.powf(1.0 / PARETO_ALPHA)).min(mean * 200.0))
                }
                // A burst of BURST tasks at once, then a gap as long as the
                // burst would have taken at the even rate.
                Workload::Bursty => ((i / BURST * BURST) as u64 * shape.gap_us, mean),
            };
            Task { arrival_us, work: (work.round() as u64).max(1) }
        })
        .collect()
}

/// The list as two `.quad` lines for a guest program's data section.
pub fn to_quads(tasks: &[Task]) -> (String, String) {
    let join = |f: fn(&Task) -> u64| tasks.iter().map(|t| f(t).to_string()).collect::<Vec<_>>().join(", ");
    (join(|t| t.arrival_us), join(|t| t.work))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape { tasks: 400, mean_work: 100, gap_us: 50 };

    fn stats(t: &[Task]) -> (f64, u64) {
        let mean = t.iter().map(|t| t.work as f64).sum::<f64>() / t.len() as f64;
        (mean, t.iter().map(|t| t.work).max().unwrap_or(0))
    }

    #[test]
    fn the_same_seed_gives_the_same_list_and_another_seed_another() {
        for k in Workload::ALL {
            assert_eq!(generate(k, SHAPE, 7), generate(k, SHAPE, 7));
        }
        assert_ne!(generate(Workload::HeavyTailed, SHAPE, 7), generate(Workload::HeavyTailed, SHAPE, 8));
    }

    #[test]
    fn uniform_tasks_are_equal_and_evenly_spaced() {
        let t = generate(Workload::Uniform, SHAPE, 1);
        assert_eq!(t.len(), SHAPE.tasks);
        assert!(t.iter().all(|t| t.work == 100));
        assert!(t.windows(2).all(|w| w[1].arrival_us - w[0].arrival_us == 50));
    }

    #[test]
    fn heavy_tailed_has_a_max_far_above_its_mean_and_a_small_median() {
        let t = generate(Workload::HeavyTailed, SHAPE, 3);
        let (mean, max) = stats(&t);
        assert!((mean - 100.0).abs() < 50.0, "mean {mean}");
        assert!(max as f64 > 8.0 * mean, "max {max}, mean {mean}");
        let mut w: Vec<u64> = t.iter().map(|t| t.work).collect();
        w.sort_unstable();
        assert!((w[w.len() / 2] as f64) < mean, "median below the mean");
    }

    #[test]
    fn bursty_arrivals_come_in_clumps_with_gaps_between() {
        let t = generate(Workload::Bursty, SHAPE, 1);
        let same = t.windows(2).filter(|w| w[0].arrival_us == w[1].arrival_us).count();
        assert_eq!(same, SHAPE.tasks - SHAPE.tasks / BURST, "all but the first of each burst share its time");
        let gaps: Vec<u64> = t.windows(2).map(|w| w[1].arrival_us - w[0].arrival_us).filter(|&g| g > 0).collect();
        assert!(gaps.iter().all(|&g| g == BURST as u64 * 50));
        // The same total span as the uniform list: only the clumping differs.
        assert_eq!(t.last().map(|t| t.arrival_us), Some((SHAPE.tasks - BURST) as u64 * 50));
    }

    #[test]
    fn edges_no_tasks_and_zero_work_still_give_valid_lists() {
        assert!(generate(Workload::Bursty, Shape { tasks: 0, ..SHAPE }, 1).is_empty());
        let t = generate(Workload::HeavyTailed, Shape { mean_work: 0, ..SHAPE }, 1);
        assert!(t.iter().all(|t| t.work >= 1));
        assert_eq!(to_quads(&t[..2]).0, "0, 50");
        assert_eq!(to_quads(&[]), (String::new(), String::new()));
    }

    #[test]
    fn the_unit_interval_stays_in_range() {
        let mut r = Rng::new(0);
        assert!((0..10_000).map(|_| unit(&mut r)).all(|u| (0.0..1.0).contains(&u)));
    }
}
