//! Load balancing: the hybrid model's placement policies, with and without
//! stealing, on uniform, heavy-tailed and bursty task lists: makespan and
//! mean wait (first run - spawn, from the model's per-thread figures).

use super::guest::{self, reply, with_params};
use super::runner::{run_guest, Model, Placement, PLACEMENTS};
use super::stats::{mean, median_f64};
use super::workload::{generate, to_quads, Shape, Task, Workload};
use super::{Sizes, ThreadBenchError};
use crate::run::Engine;

/// The load the task lists put on the machine's two cores (arrivals are
/// spaced so that the work arrives at this fraction of what they can do).
pub const UTILIZATION: f64 = 0.8;
/// The cores the arrival rate is computed for (this machine's).
pub const CORES: f64 = 2.0;

/// One workload under one hybrid configuration.
#[derive(Clone, Debug)]
pub struct BalanceRow {
    pub workload: Workload,
    pub workers: usize,
    pub placement: Placement,
    pub steal: bool,
    pub makespan_ms: f64,
    pub mean_wait_ms: f64,
    /// Threads an idle worker took from another's queue (the model's count).
    pub steals: f64,
}

impl BalanceRow {
    /// The series name of the chart and the table (`round-robin +steal`).
    pub fn policy(&self) -> String {
        format!("{}{}", self.placement.name(), if self.steal { " +steal" } else { "" })
    }
}

/// The driver's source for `tasks` and the output it must give.
pub fn driver_source(tasks: &[Task], unit: u64) -> Result<(String, String), ThreadBenchError> {
    guest::check_size("tasks", tasks.len(), guest::MAX_TASKS)?;
    let (arrivals, works) = to_quads(tasks);
    let src = with_params(
        guest::BALANCE.source,
        &[("n_tasks", tasks.len().to_string()), ("unit", unit.to_string()), ("arrivals", arrivals), ("works", works)],
    )?;
    let sum: u64 = tasks.iter().enumerate().map(|(i, t)| reply(i as u64, t.work * unit)).sum();
    Ok((src, format!("balance {} tasks, checksum {sum}\n", tasks.len())))
}

/// µs per work unit: all the work as one task on one user-level thread.
fn unit_us(s: &Sizes, rounds: u32) -> Result<f64, ThreadBenchError> {
    let one = [Task { arrival_us: 0, work: (s.tasks as u64 * s.task_mean_work).max(1) }];
    let (src, want) = driver_source(&one, s.task_unit)?;
    let mut v = Vec::new();
    for _ in 0..rounds {
        let r = run_guest("balance", &src, &want, Model::User, Engine::Interp, 1)?;
        v.push(r.output.one("span")? as f64 / one[0].work as f64);
    }
    Ok(median_f64(&v).max(1e-3))
}

/// The mean over the spawned threads (all but main) of first run - spawn,
/// from the thread model's per-thread figures.
fn mean_wait_ms(report: Option<&crate::threads::ThreadReport>) -> Result<f64, ThreadBenchError> {
    let report = report.ok_or(ThreadBenchError::NoThreadStats)?;
    let waits: Vec<f64> = report
        .threads
        .iter()
        .skip(1)
        .map(|t| t.first_run_ns.map(|f| f.saturating_sub(t.spawn_ns) as f64 / 1e6))
        .collect::<Option<_>>()
        .ok_or(ThreadBenchError::NoThreadStats)?;
    Ok(mean(&waits))
}

/// Measures every workload under hybrid:2 and hybrid:4, each placement,
/// with and without stealing.
///
/// # Errors
/// If a run fails or the driver's output is wrong.
pub fn measure(s: &Sizes, rounds: u32, seed: u64) -> Result<Vec<BalanceRow>, ThreadBenchError> {
    let per_unit = unit_us(s, rounds)?;
    let gap_us = (s.task_mean_work as f64 * per_unit / (CORES * UTILIZATION)).round() as u64;
    let shape = Shape { tasks: s.tasks, mean_work: s.task_mean_work, gap_us };
    let mut rows = Vec::new();
    for workload in Workload::ALL {
        let (src, want) = driver_source(&generate(workload, shape, seed), s.task_unit)?;
        for workers in [2, 4] {
            for placement in PLACEMENTS {
                for steal in [false, true] {
                    let model = Model::Hybrid { workers, placement, steal };
                    let (mut span, mut wait, mut steals) = (Vec::new(), Vec::new(), Vec::new());
                    for _ in 0..rounds {
                        let r = run_guest("balance", &src, &want, model, Engine::Interp, seed)?;
                        span.push(r.output.one("span")? as f64 / 1e3);
                        wait.push(mean_wait_ms(r.threads.as_ref())?);
                        steals.push(r.threads.as_ref().map_or(0.0, |t| t.counters.steals as f64));
                    }
                    rows.push(BalanceRow {
                        workload,
                        workers,
                        placement,
                        steal,
                        makespan_ms: median_f64(&span),
                        mean_wait_ms: median_f64(&wait),
                        steals: median_f64(&steals),
                    });
                }
            }
        }
    }
    Ok(rows)
}

/// The chart: makespan per workload and worker count, one bar per policy.
pub fn svg(rows: &[BalanceRow]) -> String {
    let mut series: Vec<String> = Vec::new();
    let mut groups: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for r in rows {
        let g = format!("{} hybrid:{}", r.workload, r.workers);
        if !series.contains(&r.policy()) {
            series.push(r.policy());
        }
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, v)) => v.push((r.policy(), r.makespan_ms)),
            None => groups.push((g, vec![(r.policy(), r.makespan_ms)])),
        }
    }
    let chart = crate::plot::Chart {
        title: "Makespan (ms; lower is better) per workload and hybrid worker count, one bar per placement policy (2 cores: hybrid:4 is oversubscribed)",
        unit: " ms",
        series,
        groups,
        label_series: None,
    };
    chart.svg()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_source_carries_every_task_and_its_expected_checksum() {
        let tasks = [Task { arrival_us: 0, work: 2 }, Task { arrival_us: 30, work: 1 }];
        let (src, want) = driver_source(&tasks, 10).unwrap();
        assert!(src.contains("arrivals: .quad 0, 30\n") && src.contains("works: .quad 2, 1\n"));
        assert!(src.contains("n_tasks: .quad 2\n") && src.contains("unit: .quad 10\n"));
        assert_eq!(want, format!("balance 2 tasks, checksum {}\n", reply(0, 20) + reply(1, 10)));
        assert!(driver_source(&[], 10).is_err(), "an empty list would be an empty .quad line");
    }

    #[test]
    fn the_mean_wait_is_over_the_spawned_threads_and_needs_each_to_have_run() {
        use crate::threads::{ThreadReport, ThreadStats};
        let t = |spawn_ns, first: Option<u64>| ThreadStats { spawn_ns, first_run_ns: first, ..Default::default() };
        let mut r = ThreadReport {
            threads: vec![t(0, Some(0)), t(1_000_000, Some(2_000_000)), t(0, Some(3_000_000))],
            ..Default::default()
        };
        assert_eq!(mean_wait_ms(Some(&r)).unwrap(), 2.0);
        r.threads.push(t(5, None));
        assert!(matches!(mean_wait_ms(Some(&r)), Err(ThreadBenchError::NoThreadStats)));
        assert!(matches!(mean_wait_ms(None), Err(ThreadBenchError::NoThreadStats)));
    }

    #[test]
    fn the_chart_has_a_bar_per_row() {
        let row = |w, k, p, steal, m| BalanceRow {
            workload: w,
            workers: k,
            placement: p,
            steal,
            makespan_ms: m,
            mean_wait_ms: 0.0,
            steals: 0.0,
        };
        let rows = [
            row(Workload::Uniform, 2, Placement::Random, false, 10.0),
            row(Workload::Uniform, 2, Placement::Random, true, 8.0),
            row(Workload::Bursty, 4, Placement::Random, false, 12.0),
        ];
        let svg = svg(&rows);
        assert!(svg.contains("<title>uniform hybrid:2 random +steal: 8.00 ms</title>"), "{svg}");
        assert!(svg.contains("<title>bursty hybrid:4 random: 12.00 ms</title>"));
        assert_eq!(svg.matches("<title>").count(), 3);
    }
}
