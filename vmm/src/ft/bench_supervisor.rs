//! The figures that need `vmm supervise` child processes of this binary:
//! detection by the channel's end (SIGKILL), by heartbeats (SIGSTOP) and by
//! the child's report (an injected triple fault); failover with cold and
//! warm standby; heartbeat false positives against the timeout with and
//! without CPU-bound neighbours; lost and duplicated lines of supervised
//! runs with random failures. The times come from the supervisor's JSON
//! log (`--log`), whose wall-clock stamps compare with this process's.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::bench::{bench_err, count_output, line_errors, median, WatchdogFigures};
use super::jsonlog::field;
use super::session::unix_ns;
use crate::vm::VmError;

/// A `vmm supervise` child and its log.
struct Supervised {
    child: Child,
    log: PathBuf,
    read: usize,
    lines: Vec<String>,
}

impl Supervised {
    fn start(args: &[&str], stdout: Stdio) -> Result<Self, VmError> {
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!("vmm-bench-supervise-{}-{n}.json", std::process::id()));
        let exe = std::env::current_exe().map_err(|e| bench_err(format!("cannot find this binary: {e}")))?;
        let child = Command::new(exe)
            .arg("supervise")
            .args(args)
            .args(["--log", &log.display().to_string()])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| bench_err(format!("cannot start vmm supervise: {e}")))?;
        Ok(Supervised { child, log, read: 0, lines: Vec::new() })
    }

    /// Reads the log's new lines.
    fn poll(&mut self) {
        let Ok(text) = std::fs::read_to_string(&self.log) else { return };
        let Some(new) = text.get(self.read..) else { return };
        let complete = new.rfind('\n').map_or(0, |i| i + 1);
        self.lines.extend(new[..complete].lines().map(String::from));
        self.read += complete;
    }

    /// Waits up to `timeout` for the `n`-th line of `event` (counted from 1).
    fn wait_event(&mut self, event: &str, n: usize, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            self.poll();
            let found = self.lines.iter().filter(|l| field(l, "event").as_deref() == Some(event)).nth(n - 1);
            if let Some(line) = found {
                return Some(line.clone());
            }
            if Instant::now() > until || matches!(self.child.try_wait(), Ok(Some(_))) {
                self.poll();
                return self.lines.iter().filter(|l| field(l, "event").as_deref() == Some(event)).nth(n - 1).cloned();
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The values of `key` in every `event` line so far.
    fn values(&mut self, event: &str, key: &str) -> Vec<String> {
        self.poll();
        self.lines
            .iter()
            .filter(|l| field(l, "event").as_deref() == Some(event))
            .filter_map(|l| field(l, key))
            .collect()
    }

    /// The pid of the active child most recently spawned.
    fn active_pid(&mut self) -> Option<i32> {
        self.poll();
        let spawned =
            self.lines.iter().rev().find(|l| {
                field(l, "event").as_deref() == Some("spawn") && field(l, "role").as_deref() == Some("active")
            })?;
        field(spawned, "pid")?.parse().ok()
    }

    fn stop(mut self) -> Option<std::process::ExitStatus> {
        // SIGTERM: the supervisor kills its children before it ends.
        // SAFETY: kill with a child's pid and a signal number has no memory effects.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().ok();
        let _ = std::fs::remove_file(&self.log);
        status
    }
}

fn numbers(v: &[String]) -> Vec<f64> {
    v.iter().filter_map(|s| s.parse().ok()).collect()
}

fn summary(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".to_string();
    }
    let mut sorted = v.to_vec();
    let med = median(&mut sorted);
    format!("{med:.2} ms ({:.2}-{:.2}, {} runs)", sorted[0], sorted[sorted.len() - 1], v.len())
}

/// Kills the active child with `signal` `runs` times; each time, the time
/// from the signal to the supervisor's declaration.
fn signal_detection(signal: i32, runs: u32) -> Result<Vec<f64>, VmError> {
    let args = ["ib700", "--cmdline", "pets=100000000", "--backoff-base-ms", "0", "--max-restarts", "1000"];
    let mut s = Supervised::start(&args, Stdio::null())?;
    let mut times = Vec::new();
    for i in 1..=runs as usize {
        // Let the child run the guest (and send heartbeats) a while first.
        std::thread::sleep(Duration::from_millis(300));
        let pid = s.active_pid().ok_or_else(|| bench_err("the supervisor started no child"))?;
        let at = unix_ns();
        // SAFETY: kill with a child's pid and a signal number has no memory effects.
        unsafe { libc::kill(pid, signal) };
        let failure =
            s.wait_event("failure", i, Duration::from_secs(10)).ok_or_else(|| bench_err("no failure was declared"))?;
        let declared: f64 = field(&failure, "unix_ms").and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
        times.push(declared - at as f64 / 1e6);
    }
    let _ = s.stop();
    Ok(times)
}

/// Detection time of each detector.
pub(crate) fn detection(runs: u32, watchdog: &WatchdogFigures, out: &mut dyn Write) -> Result<(), VmError> {
    let crash = signal_detection(libc::SIGKILL, runs)?;
    let stopped = signal_detection(libc::SIGSTOP, runs)?;
    let args = ["count", "--cmdline", "n=1000000 work=2000", "--inject-fault", "shutdown-after-exits=300,attempts=all"];
    let restarts = runs.to_string();
    let mut s = Supervised::start(
        &[&args[..], &["--backoff-base-ms", "0", "--max-restarts", &restarts]].concat(),
        Stdio::null(),
    )?;
    let _ = s.wait_event("give-up", 1, Duration::from_secs(60));
    let reported = numbers(&s.values("failure", "detection_ms"));
    let _ = s.stop();
    let _ = writeln!(out, "detection time, from the failure to its declaration (median, range, runs):");
    let _ = writeln!(out, "| failure | detector | setting | detection |");
    let _ = writeln!(out, "|---|---|---|---:|");
    let _ = writeln!(out, "| VMM killed (SIGKILL) | the channel's end (EOF) | - | {} |", summary(&crash));
    let _ = writeln!(
        out,
        "| VMM stopped (SIGSTOP) | heartbeats | --heartbeat-ms 10 --heartbeat-misses 5 (60 ms of silence) | {} |",
        summary(&stopped)
    );
    let _ = writeln!(
        out,
        "| guest triple fault (injected) | the child's report, then its exit | - | {} |",
        summary(&reported)
    );
    let _ = writeln!(
        out,
        "| guest hung (stops petting) | IB700 watchdog, from the last pet | 2 s timeout (value 14) | {} |",
        summary(&watchdog.since_pet)
    );
    let _ = writeln!(out, "| (the same) | IB700 watchdog, past its deadline | | {} |", summary(&watchdog.late));
    Ok(())
}

/// Failover time, cold against warm standby.
pub(crate) fn failover(runs: u32, out: &mut dyn Write) -> Result<(), VmError> {
    let _ = writeln!(out, "failover: from the restart decision (backoff 0) to the guest running again, `count` failing at exit 3000 of every attempt (some 0.5 s in, so that the next standby is ready), checkpoints every 50 ms:");
    let _ = writeln!(
        out,
        "| standby | failover (median, range) | from the declaration | standby had the checkpoint loaded |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for standby in ["cold", "warm"] {
        let restarts = runs.to_string();
        let args = [
            "count",
            "--cmdline",
            "n=1000000 work=2000",
            "--inject-fault",
            "shutdown-after-exits=3000,attempts=all",
            "--checkpoint-every",
            "50",
            "--backoff-base-ms",
            "0",
            "--max-restarts",
            &restarts,
            "--standby",
            standby,
        ];
        let mut s = Supervised::start(&args, Stdio::null())?;
        let _ = s.wait_event("give-up", 1, Duration::from_secs(120));
        let took = numbers(&s.values("running", "failover_ms"));
        let since = numbers(&s.values("running", "since_declared_ms"));
        let loaded = s.values("running", "preloaded");
        let _ = s.stop();
        let preloaded = loaded.iter().filter(|v| *v == "true").count();
        let share = if standby == "warm" { format!("{preloaded} of {}", loaded.len()) } else { "-".to_string() };
        let _ = writeln!(out, "| {standby} | {} | {} | {share} |", summary(&took), summary(&since));
    }
    Ok(())
}

/// Busy-loop processes, one per CPU, until dropped.
struct Neighbours(Vec<Child>);

impl Neighbours {
    fn start(n: usize) -> Result<Self, VmError> {
        let spawn = || Command::new("sh").args(["-c", "while :; do :; done"]).stdin(Stdio::null()).spawn();
        let children = (0..n).map(|_| spawn()).collect::<Result<Vec<_>, _>>();
        children.map(Neighbours).map_err(|e| bench_err(format!("cannot start a busy-loop neighbour: {e}")))
    }
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Heartbeat false positives against the timeout, idle and loaded.
pub(crate) fn heartbeat(rounds: u32, out: &mut dyn Write) -> Result<(), VmError> {
    let seconds = 4 * u64::from(rounds);
    let configs: [(u64, u32); 8] = [(1, 1), (2, 1), (5, 1), (5, 3), (10, 1), (10, 3), (10, 5), (20, 5)];
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _ = writeln!(out, "heartbeat false positives: a healthy `ib700` guest (pets forever) supervised {seconds} s per setting; loaded = {cpus} busy-loop neighbours (`sh -c 'while :; do :; done'`) on {cpus} CPUs:");
    let _ = writeln!(out, "| --heartbeat-ms | --heartbeat-misses | timeout (silence declared) | false positives idle | per minute | longest silence | false positives loaded | per minute | longest silence |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (period, misses) in configs {
        let mut cells = Vec::new();
        for loaded in [false, true] {
            let _load = if loaded { Some(Neighbours::start(cpus)?) } else { None };
            let (p, k) = (period.to_string(), misses.to_string());
            let args = [
                "ib700",
                "--cmdline",
                "pets=100000000",
                "--heartbeat-ms",
                &p,
                "--heartbeat-misses",
                &k,
                "--backoff-base-ms",
                "0",
                "--max-restarts",
                "100000",
            ];
            let mut s = Supervised::start(&args, Stdio::null())?;
            std::thread::sleep(Duration::from_secs(seconds));
            let declared = s.values("failure", "detector").iter().filter(|d| *d == "heartbeat").count();
            let longest = numbers(&s.values("heartbeat-miss", "since_ms")).into_iter().fold(0.0f64, f64::max);
            let _ = s.stop();
            let per_minute = declared as f64 * 60.0 / seconds as f64;
            cells.push(format!("{declared} | {per_minute:.1} | {longest:.1} ms"));
        }
        let timeout = period * (u64::from(misses) + 1);
        let _ = writeln!(out, "| {period} | {misses} | {timeout} ms | {} | {} |", cells[0], cells[1]);
    }
    Ok(())
}

/// `runs` supervised runs of `count` with random failures and a warm standby.
pub(crate) fn output_commit(runs: u32, out: &mut dyn Write) -> Result<(), VmError> {
    const N: u64 = 40;
    let (mut lost, mut dup, mut order, mut bad, mut restarts) = (0, 0, 0, 0, 0usize);
    for run in 1..=runs {
        let spec = format!("random=0.003,seed={run}");
        let args = [
            "count",
            "--cmdline",
            "n=40 work=2000",
            "--inject-fault",
            &spec,
            "--checkpoint-every",
            "10",
            "--standby",
            "warm",
            "--backoff-base-ms",
            "0",
            "--max-restarts",
            "1000",
        ];
        let mut s = Supervised::start(&args, Stdio::piped())?;
        let mut text = String::new();
        if let Some(mut stdout) = s.child.stdout.take() {
            let _ = stdout.read_to_string(&mut text);
        }
        let status = s.child.wait().ok().and_then(|st| st.code());
        restarts += s.values("restart", "attempt").len();
        let _ = std::fs::remove_file(&s.log);
        let (l, d, o) = line_errors(&text, N);
        (lost, dup, order) = (lost + l, dup + d, order + o);
        bad += u32::from(status != Some(0) || text != count_output(N, 2000, 0));
    }
    let _ = writeln!(
        out,
        "output commit, supervised (warm standby): {runs} runs of `count` (n={N} work=2000) with --inject-fault random=0.003,seed=1..{runs}, checkpoints every 10 ms: {restarts} restarts; {lost} lines lost, {dup} duplicated, {order} out of order; {bad} runs whose output differs from the uninterrupted run's"
    );
    Ok(())
}
