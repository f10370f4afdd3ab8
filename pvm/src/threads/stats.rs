//! What a threaded run measured: per guest thread, and per thread model.

use std::io::Write;

/// One guest thread's figures (times in ns since the run started,
/// monotonic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadStats {
    /// The thread's id (its index in [`ThreadReport::threads`]).
    pub id: u64,
    pub spawn_ns: u64,
    /// When it first ran (`None`: never ran).
    pub first_run_ns: Option<u64>,
    /// When it ended with `texit` (`None`: it did not).
    pub end_ns: Option<u64>,
    /// Instructions it retired.
    pub retired: u64,
    /// The worker (OS thread) it last ran on.
    pub worker: usize,
    /// Times it ran on another worker than the time before.
    pub migrations: u64,
    /// Times an idle worker stole it from another's run queue.
    pub steals: u64,
}

/// The thread model's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// A worker changed the guest thread it runs.
    pub switches: u64,
    /// Of those, because the quantum ran out.
    pub preemptions: u64,
    /// A thread blocked (join, wait, jacketed sleep or read).
    pub blocks: u64,
    /// A blocked thread was made ready again by another.
    pub wakes: u64,
    /// A worker took a thread from another's run queue.
    pub steals: u64,
}

/// Everything a threaded run reports besides its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadReport {
    /// The model that ran it (`user`, `kernel`, `hybrid:K`).
    pub model: String,
    /// Per guest thread, by id.
    pub threads: Vec<ThreadStats>,
    pub counters: ModelStats,
    /// For a deadlock: each thread still alive and what it waits on.
    pub deadlock: Vec<String>,
}

impl ThreadReport {
    /// The `--stats` table.
    pub fn print(&self, out: &mut dyn Write) {
        let c = &self.counters;
        let _ = writeln!(
            out,
            "threads ({}): {} threads, {} switches, {} preemptions, {} blocks, {} wakes, {} steals",
            self.model,
            self.threads.len(),
            c.switches,
            c.preemptions,
            c.blocks,
            c.wakes,
            c.steals
        );
        let _ = writeln!(
            out,
            "  {:>5} {:>12} {:>12} {:>12} {:>14} {:>6} {:>6} {:>6}",
            "id", "spawn ns", "first run ns", "end ns", "retired", "worker", "migr", "stolen"
        );
        let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        for t in &self.threads {
            let _ = writeln!(
                out,
                "  {:>5} {:>12} {:>12} {:>12} {:>14} {:>6} {:>6} {:>6}",
                t.id,
                t.spawn_ns,
                opt(t.first_run_ns),
                opt(t.end_ns),
                t.retired,
                t.worker,
                t.migrations,
                t.steals
            );
        }
    }
}
