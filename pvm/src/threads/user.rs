//! `--threads user` (many-to-one): this OS thread runs every guest thread,
//! one at a time, switching after exactly `--quantum` retired instructions
//! (the fuel mechanism both engines share), at a blocking instruction or a
//! `yield`. Nothing here depends on time (but jacketed sleeps), so a run is
//! the same on both engines to the instruction.

use std::collections::VecDeque;

use super::engine::SliceEngine;
use super::stats::{ModelStats, ThreadReport};
use super::table::{State, Step, Table};
use super::ThreadConfig;
use crate::interp::Outcome;
use crate::jit::JitError;
use crate::machine::{Machine, SysIo};
use crate::trap::TrapKind;

/// Runs every thread from `m`'s state, which stopped before a thread
/// instruction of the main thread (id 0), to the end of the program.
///
/// # Errors
///
/// A failure of the translator itself.
pub fn run(
    engine: &mut SliceEngine,
    m: &mut Machine,
    io: &mut dyn SysIo,
    cfg: &ThreadConfig,
    fuel: u64,
) -> Result<(Outcome, ThreadReport), JitError> {
    let mut table = Table::new(cfg.max_threads, cfg.jacket, m.started.0);
    let mut counters = ModelStats::default();
    let mut ready: VecDeque<u64> = VecDeque::new();
    let quantum = cfg.quantum.max(1);
    let mut cur = 0u64;
    // The main thread's instructions so far count as its own.
    let mut slice_start = 0;
    let mut slice_end = m.retired.saturating_add(quantum);
    let mut outcome = Outcome::ThreadOp;
    let mut deadlock = Vec::new();
    let end = loop {
        let step = match outcome {
            Outcome::ThreadOp => {
                let step = table.perform(cur, m, io);
                for (addr, len) in table.code_writes.drain(..) {
                    engine.code_written(m, addr, len);
                }
                step
            }
            Outcome::Trapped(ref t) if t.kind == TrapKind::FuelExhausted && m.retired < fuel => {
                counters.preemptions += 1;
                Step::Yield
            }
            other => break other,
        };
        ready.extend(table.made_ready.drain(..));
        if step == Step::Continue && m.retired < slice_end {
            outcome = engine.run(m, io, fuel.min(slice_end))?;
            continue;
        }
        if let Step::Finished(o) = step {
            break o;
        }
        // Switch: save the thread (unless it ended), pick the next.
        let t = &mut table.threads[cur as usize];
        t.stats.retired += m.retired - slice_start;
        if step != Step::Ended {
            t.regs = m.regs;
            t.pc = m.pc;
        }
        if t.state == State::Ready && step != Step::Ended {
            ready.push_back(cur);
        }
        let next = loop {
            if let Some(n) = ready.pop_front() {
                break Some(n);
            }
            if !table.has_timed_waiters() {
                break None;
            }
            let until = table.poll_timed(io);
            ready.extend(table.made_ready.drain(..));
            if ready.is_empty() {
                // Nothing to run until a sleeper's time comes or input arrives.
                let pause = until.map_or(std::time::Duration::from_micros(200), |u| {
                    u.saturating_duration_since(std::time::Instant::now())
                });
                std::thread::sleep(pause.min(std::time::Duration::from_millis(10)));
            }
        };
        let Some(next) = next else {
            let (o, lines) = table.deadlock(m, cur);
            deadlock = lines;
            break o;
        };
        if next != cur {
            counters.switches += 1;
        }
        cur = next;
        if table.threads[cur as usize].stats.first_run_ns.is_none() {
            table.threads[cur as usize].stats.first_run_ns = Some(table.now_ns());
        }
        let t = &table.threads[cur as usize];
        m.regs = t.regs;
        m.pc = t.pc;
        slice_start = m.retired;
        slice_end = m.retired.saturating_add(quantum);
        outcome = engine.run(m, io, fuel.min(slice_end))?;
    };
    // The running thread's last instructions.
    if let Some(t) = table.threads.get_mut(cur as usize) {
        t.stats.retired += m.retired - slice_start;
    }
    counters.blocks = table.blocks;
    counters.wakes = table.wakes;
    let threads = table.threads.iter().map(|t| t.stats.clone()).collect();
    Ok((end, ThreadReport { model: "user".into(), threads, counters, deadlock }))
}
