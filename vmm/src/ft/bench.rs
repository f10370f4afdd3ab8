//! `vmm bench --only detection|failover|checkpoint|backoff|heartbeat|output-commit`:
//! the fault-tolerance figures of `docs/benchmarks.md`.
//!
//! In this process: the checkpoint overhead (the `count` guest's
//! throughput with checkpoints every 10, 50 and 200 ms, in memory and in a
//! directory, against none), the restart delays of each backoff policy
//! (and their plot), the IB700's detection time, and lost or duplicated
//! lines over runs with random injected failures. With `vmm supervise`
//! child processes ([`super::bench_supervisor`]): detection by heartbeat and
//! by the channel's end, failover with cold and warm standby, heartbeat
//! false positives under load.

use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::backoff::{Backoff, RestartPolicy};
use super::checkpoint::CheckpointStats;
use super::inject::FaultSpec;
use super::output::{OutputDelay, OutputGate};
use super::plot::{self, Series};
use super::session::{self, Release, Session, SessionOptions};
use super::{bench_supervisor, FtError, FtPlan, OnFailure, WatchdogAction};
use crate::vm::{RunOptions, SerialIo, Vm, VmConfig, VmError};
use crate::SharedBuffer;

/// One of the figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    Detection,
    Failover,
    Checkpoint,
    Backoff,
    Heartbeat,
    OutputCommit,
}

/// Measures `figure` (`repeat` runs or rounds) and writes its tables to `out`.
///
/// # Errors
///
/// A run that fails or whose output is not the guest's.
pub fn run(figure: Figure, repeat: u32, plot: Option<&Path>, out: &mut dyn Write) -> Result<(), VmError> {
    let repeat = repeat.max(1);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("unknown");
    let _ = writeln!(out, "({figure:?}: the machine's load average was {load} when it started)");
    match figure {
        Figure::Detection => {
            let watchdog = ib700_detection(repeat)?;
            bench_supervisor::detection(repeat, &watchdog, out)
        }
        Figure::Failover => bench_supervisor::failover(repeat.max(5), out),
        Figure::Checkpoint => checkpoint_overhead(repeat, out),
        Figure::Backoff => backoff(plot, out),
        Figure::Heartbeat => bench_supervisor::heartbeat(repeat, out),
        Figure::OutputCommit => {
            output_commit(repeat, out)?;
            bench_supervisor::output_commit(repeat, out)
        }
    }
}

/// A benchmark's own failure.
pub(crate) fn bench_err(why: impl Into<String>) -> VmError {
    VmError::Ft(Box::new(FtError::Bench(why.into())))
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The `count` guest booted with `cmdline`, its output to `out`.
fn count_vm(cmdline: &str, mem_mib: u64, out: Box<dyn Write + Send>) -> Result<Vm, VmError> {
    let guest = guests::find("count").ok_or_else(|| bench_err("the count guest is missing"))?;
    let (image, config) = crate::builtin_image(guest);
    let config = VmConfig { mem_mib, cmdline: cmdline.to_string(), ..config };
    Vm::boot(&config, &image, SerialIo { out, input: None })
}

/// The output `count` prints for `n` lines, work `work`, `pages` pages.
pub(crate) fn count_output(n: u64, work: u64, pages: u64) -> String {
    let mut s = format!("count: {n} lines, work {work}, pages {pages}\n");
    for i in 1..=n {
        s.push_str(&format!("count {i}\n"));
    }
    s.push_str("count: done\n");
    s
}

/// One case of the checkpoint-overhead figure.
struct Case {
    name: &'static str,
    every: Option<u64>,
    dir: bool,
    full: bool,
}

const CASES: [Case; 9] = [
    Case { name: "none", every: None, dir: false, full: false },
    Case { name: "every 200 ms, in memory", every: Some(200), dir: false, full: false },
    Case { name: "every 50 ms, in memory", every: Some(50), dir: false, full: false },
    Case { name: "every 10 ms, in memory", every: Some(10), dir: false, full: false },
    Case { name: "every 200 ms, directory", every: Some(200), dir: true, full: false },
    Case { name: "every 50 ms, directory", every: Some(50), dir: true, full: false },
    Case { name: "every 10 ms, directory", every: Some(10), dir: true, full: false },
    Case { name: "every 10 ms, in memory, every written page", every: Some(10), dir: false, full: true },
    Case { name: "every 10 ms, directory, every written page", every: Some(10), dir: true, full: true },
];
const LINES: u64 = 150;
const WORK: u64 = 4000;
const PAGES: u64 = 16;
const TOUCH: u64 = 1024;

struct CaseRun {
    wall: Duration,
    /// User and system time of this process (the vCPU thread, the guest in it, the controller).
    cpu: Duration,
    checkpoints: CheckpointStats,
    output: OutputDelay,
}

fn run_case(case: &Case, dir: &Path) -> Result<CaseRun, VmError> {
    let cmdline = format!("n={LINES} work={WORK} pages={PAGES} touch={TOUCH}");
    let expected = count_output(LINES, WORK, PAGES);
    let shown = SharedBuffer::default();
    let Some(every) = case.every else {
        let mut vm = count_vm(&cmdline, 64, Box::new(shown.clone()))?;
        let (start, cpu) = (Instant::now(), cpu_time());
        let report = vm.run(RunOptions::default())?;
        let (wall, cpu) = (start.elapsed(), cpu_time().saturating_sub(cpu));
        if report.status() != 0 || shown.take() != expected.as_bytes() {
            return Err(bench_err("the count guest did not print its lines"));
        }
        return Ok(CaseRun { wall, cpu, checkpoints: CheckpointStats::default(), output: OutputDelay::default() });
    };
    let (gate, uart) = OutputGate::new();
    let mut vm = count_vm(&cmdline, 64, Box::new(uart))?;
    let _ = std::fs::remove_dir_all(dir);
    let plan = FtPlan {
        checkpoint_every: Some(Duration::from_millis(every)),
        checkpoint_dir: case.dir.then(|| dir.to_path_buf()),
        full_checkpoints: case.full,
        on_failure: OnFailure::Rollback,
        ..FtPlan::default()
    };
    let session = Session::new(&mut vm, &plan, Release::stdout(Box::new(shown.clone()), Some(gate)))?;
    let (start, cpu) = (Instant::now(), cpu_time());
    let report = session.run(SessionOptions::default(), &mut io::sink())?;
    let (wall, cpu) = (start.elapsed(), cpu_time().saturating_sub(cpu));
    if report.status() != 0 || shown.take() != expected.as_bytes() {
        return Err(bench_err(format!("the count guest did not print its lines with checkpoints {}", case.name)));
    }
    Ok(CaseRun { wall, cpu, checkpoints: report.checkpoints, output: report.output })
}

/// This process's user and system time so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given and touches nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs()) + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The guest's throughput with checkpoints against none.
fn checkpoint_overhead(rounds: u32, out: &mut dyn Write) -> Result<(), VmError> {
    let dir = std::env::temp_dir().join(format!("vmm-bench-checkpoints-{}", std::process::id()));
    let mut runs: Vec<Vec<CaseRun>> = CASES.iter().map(|_| Vec::new()).collect();
    // Interleaved, so that the machine's slower spells hit every case alike.
    for _ in 0..rounds {
        for (case, runs) in CASES.iter().zip(&mut runs) {
            runs.push(run_case(case, &dir)?);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = writeln!(
        out,
        "checkpoint overhead: `count` with --cmdline \"n={LINES} work={WORK} pages={PAGES} touch={TOUCH}\" (--mem 64; {PAGES} pages dirtied per line, {TOUCH} written once), median of {rounds} interleaved rounds"
    );
    let _ = writeln!(out, "| checkpoints | run (wall) | lines/s | throughput vs none (wall) | CPU time | throughput vs none (CPU time) | checkpoints | vCPU paused (mean / max) | paused share of the run | pages kept per checkpoint | output held (mean / max) |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (mut none, mut none_cpu) = (f64::NAN, f64::NAN);
    for (case, runs) in CASES.iter().zip(&runs) {
        let mut walls: Vec<f64> = runs.iter().map(|r| ms(r.wall)).collect();
        let wall = median(&mut walls);
        let mut cpus: Vec<f64> = runs.iter().map(|r| ms(r.cpu)).collect();
        let cpu = median(&mut cpus);
        if case.every.is_none() {
            (none, none_cpu) = (wall, cpu);
        }
        let count: u64 = runs.iter().map(|r| r.checkpoints.count).sum();
        let total: Duration = runs.iter().map(|r| r.checkpoints.total).sum();
        let max = runs.iter().map(|r| r.checkpoints.max).max().unwrap_or_default();
        let pages: u64 = runs.iter().map(|r| r.checkpoints.pages).sum();
        let per = |v: f64| if count == 0 { 0.0 } else { v / count as f64 };
        let held = runs.iter().map(|r| r.output.mean()).sum::<Duration>() / rounds;
        let walls: Duration = runs.iter().map(|r| r.wall).sum();
        let share = if walls.is_zero() { 0.0 } else { total.as_secs_f64() / walls.as_secs_f64() * 100.0 };
        let held_max = runs.iter().map(|r| r.output.max).max().unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {wall:.0} ms | {:.0} | {:.1}% | {cpu:.0} ms | {:.1}% | {} | {:.3} / {:.3} ms | {share:.2}% | {:.0} | {:.1} / {:.1} ms |",
            case.name,
            LINES as f64 / wall * 1e3,
            none / wall * 100.0,
            none_cpu / cpu * 100.0,
            count / u64::from(rounds),
            per(ms(total)),
            ms(max),
            per(pages as f64),
            ms(held),
            ms(held_max)
        );
    }
    Ok(())
}

/// The delays of every policy over ten failures, the band over 1000 seeds, and the plot.
fn backoff(plot: Option<&Path>, out: &mut dyn Write) -> Result<(), VmError> {
    const FAILURES: usize = 10;
    let (base, cap) = (Duration::from_millis(10), Duration::from_millis(1000));
    let delays = |policy, seed| -> Vec<f64> {
        let mut b = Backoff::new(policy, base, cap, seed);
        (0..FAILURES).map(|_| b.next_delay().map_or(f64::NAN, ms)).collect()
    };
    let mut series = Vec::new();
    let _ = writeln!(out, "restart delays (ms) over {FAILURES} failures, --backoff-base-ms 10 --backoff-max-ms 1000, --backoff-seed 1; mean over seeds 1-1000 below each jittered row:");
    let _ =
        writeln!(out, "| policy | {} | total |", (1..=FAILURES).map(|i| i.to_string()).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(out, "|---|{}---:|", "---:|".repeat(FAILURES));
    for policy in RestartPolicy::RESTARTING {
        let one = delays(policy, 1);
        let all: Vec<Vec<f64>> = (1..=1000).map(|seed| delays(policy, seed)).collect();
        let band: Vec<(f64, f64)> = (0..FAILURES)
            .map(|i| all.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), d| (lo.min(d[i]), hi.max(d[i]))))
            .collect();
        let cells: Vec<String> = one.iter().map(|d| format!("{d:.1}")).collect();
        let _ = writeln!(out, "| {} | {} | {:.1} |", policy.name(), cells.join(" | "), one.iter().sum::<f64>());
        let mean: Vec<f64> = (0..FAILURES).map(|i| all.iter().map(|d| d[i]).sum::<f64>() / all.len() as f64).collect();
        if band.iter().any(|(lo, hi)| hi > lo) {
            let cells: Vec<String> = mean.iter().map(|d| format!("{d:.1}")).collect();
            let _ = writeln!(out, "| (mean) | {} | {:.1} |", cells.join(" | "), mean.iter().sum::<f64>());
        }
        series.push(Series { name: policy.name().to_string(), delays: one, mean, band });
    }
    if let Some(path) = plot {
        let svg = plot::delays_svg(
            &series,
            "Restart delays, base 10 ms, cap 1000 ms: seed 1 (line); mean, range over 1000 seeds (dashed, shaded)",
            1000.0,
        );
        std::fs::write(path, svg)
            .map_err(|e| bench_err(format!("cannot write the plot to {}: {e}", path.display())))?;
        let _ = writeln!(out, "plot written to {}", path.display());
    }
    Ok(())
}

/// The IB700's detection: from the last pet to the expiry noticed, `runs` times.
pub(crate) struct WatchdogFigures {
    pub since_pet: Vec<f64>,
    pub late: Vec<f64>,
}

fn ib700_detection(runs: u32) -> Result<WatchdogFigures, VmError> {
    let guest = guests::find("ib700").ok_or_else(|| bench_err("the ib700 guest is missing"))?;
    let (image, config) = crate::builtin_image(guest);
    let config = VmConfig { cmdline: "pets=2 hang=2 every=2000".into(), ..config };
    let mut figures = WatchdogFigures { since_pet: Vec::new(), late: Vec::new() };
    for _ in 0..runs {
        let (gate, uart) = OutputGate::new();
        let mut vm = Vm::boot(&config, &image, SerialIo { out: Box::new(uart), input: None })?;
        let plan = FtPlan { watchdog: Some(WatchdogAction::Shutdown), output_commit: false, ..FtPlan::default() };
        let release = Release::stdout(Box::new(io::sink()), Some(gate));
        let report = session::run(&mut vm, &plan, release, SessionOptions::default(), &mut io::sink())?;
        match report.outcome {
            Err(VmError::Watchdog { expiry, .. }) => {
                figures.since_pet.push(ms(expiry.noticed.saturating_sub(expiry.last_pet)));
                figures.late.push(ms(expiry.lateness()));
            }
            _ => return Err(bench_err("the ib700 guest's watchdog did not expire")),
        }
    }
    Ok(figures)
}

/// Lost, duplicated and misordered lines of `shown` against `count`'s `n` lines.
pub(crate) fn line_errors(shown: &str, n: u64) -> (u64, u64, u64) {
    let numbers: Vec<u64> =
        shown.lines().filter_map(|l| l.strip_prefix("count ").and_then(|v| v.parse().ok())).collect();
    let mut seen = vec![0u64; n as usize + 1];
    for &v in &numbers {
        if let Some(c) = seen.get_mut(v as usize) {
            *c += 1;
        }
    }
    let lost = seen.iter().skip(1).filter(|&&c| c == 0).count() as u64;
    let duplicated = seen.iter().map(|&c| c.saturating_sub(1)).sum();
    let misordered = numbers.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
    (lost, duplicated, misordered)
}

/// `runs` runs of `count` with random injected failures, rolled back in
/// this process; then a fifth as many without output commit, to show what it prevents.
fn output_commit(runs: u32, out: &mut dyn Write) -> Result<(), VmError> {
    for commit in [true, false] {
        let runs = if commit { runs } else { runs.div_ceil(5) };
        output_commit_runs(runs, commit, out)?;
    }
    Ok(())
}

fn output_commit_runs(runs: u32, commit: bool, out: &mut dyn Write) -> Result<(), VmError> {
    const N: u64 = 40;
    let (mut lost, mut dup, mut order, mut failures, mut bad_runs) = (0, 0, 0, 0usize, 0);
    let mut delays = Vec::new();
    for run in 0..runs {
        let shown = SharedBuffer::default();
        let (gate, uart) = OutputGate::new();
        let (uart, release): (Box<dyn Write + Send>, Release) = if commit {
            (Box::new(uart), Release::stdout(Box::new(shown.clone()), Some(gate)))
        } else {
            (Box::new(shown.clone()), Release::stdout(Box::new(io::sink()), None))
        };
        let mut vm = count_vm(&format!("n={N} work=2000"), 128, uart)?;
        let spec = FaultSpec::parse(&format!("random=0.005,seed={}", run + 1)).map_err(|e| bench_err(e.to_string()))?;
        let plan = FtPlan {
            checkpoint_every: Some(Duration::from_millis(5)),
            on_failure: OnFailure::Rollback,
            max_restarts: 1000,
            output_commit: commit,
            faults: vec![spec],
            ..FtPlan::default()
        };
        let report = session::run(&mut vm, &plan, release, SessionOptions::default(), &mut io::sink())?;
        let text = String::from_utf8_lossy(&shown.take()).into_owned();
        let (l, d, o) = line_errors(&text, N);
        (lost, dup, order) = (lost + l, dup + d, order + o);
        bad_runs += u32::from(report.status() != 0 || text != count_output(N, 2000, 0));
        failures += report.rollbacks.len();
        delays.push(report.output.mean());
    }
    let mean = delays.iter().sum::<Duration>() / runs.max(1);
    let how = if commit { "with output commit" } else { "WITHOUT output commit (--no-output-commit)" };
    let _ = writeln!(
        out,
        "rolled back in the VMM, {how}: {runs} runs of `count` (n={N} work=2000) with --inject-fault random=0.005,seed=1..{runs} and checkpoints every 5 ms: {failures} failures rolled back; {lost} lines missing (lost, or garbled by a repeated part), {dup} duplicated, {order} out of order; {bad_runs} runs whose output differs from the uninterrupted run's; output held {:.2} ms on average",
        ms(mean)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_errors_count_what_is_lost_doubled_and_out_of_order() {
        let good = count_output(3, 0, 0);
        assert_eq!(line_errors(&good, 3), (0, 0, 0));
        assert_eq!(line_errors("count 1\ncount 3\ncount 3\ncount 2\n", 3), (0, 1, 2));
        assert_eq!(line_errors("count 1\n", 3), (2, 0, 0));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }
}
