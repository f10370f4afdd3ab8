//! `--threads hybrid:K` (many-to-many): guest threads multiplexed over K OS
//! worker threads. Each worker has a run queue and its own machine view and
//! engine; a new or woken thread goes to the worker `--placement` chooses,
//! a worker runs the thread at the front of its queue for `--quantum`
//! instructions (or until it blocks, yields or ends) and puts it back at
//! the end; with `--steal`, a worker with an empty queue takes the thread
//! at the back of the longest other queue. A blocking syscall blocks its
//! worker only. Code writes travel as under `kernel` (see [`CodeLog`]).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::engine::{SharedIo, SliceEngine};
use super::kernel::MakeEngine;
use super::parallel::{End, Ending};
use super::placement::{steal_from, Placer};
use super::stats::{ModelStats, ThreadReport};
use super::table::{Step, Table};
use super::ThreadConfig;
use crate::interp::{trap_at, Outcome};
use crate::jit::JitError;
use crate::machine::{Machine, SysIo};
use crate::trap::TrapKind;

/// The scheduler's state, behind one lock.
struct Sched {
    table: Table,
    queues: Vec<VecDeque<u64>>,
    /// The thread each worker runs.
    running: Vec<Option<u64>>,
    placer: Placer,
    counters: ModelStats,
}

struct Shared<'a> {
    sched: Mutex<Sched>,
    wakeup: Condvar,
    ending: Ending,
    quantum: u64,
    steal: bool,
    io: SharedIo<'a>,
}

/// Runs every thread from `m`'s state (stopped before a thread instruction
/// of the main thread) on `workers` OS threads, the calling one worker 0.
///
/// # Errors
///
/// A failure of a translator.
pub fn run(
    engine: SliceEngine,
    m: Machine,
    io: &mut dyn SysIo,
    cfg: &ThreadConfig,
    workers: usize,
    fuel: u64,
    make_engine: &MakeEngine<'_>,
) -> Result<(Outcome, ThreadReport, Machine), JitError> {
    let workers = workers.max(1);
    let mut running = vec![None; workers];
    running[0] = Some(0);
    let sched = Sched {
        table: Table::new(cfg.max_threads, false, m.started.0),
        queues: vec![VecDeque::new(); workers],
        running,
        placer: Placer::new(cfg.placement, cfg.seed),
        counters: ModelStats::default(),
    };
    let sh = Shared {
        sched: Mutex::new(sched),
        wakeup: Condvar::new(),
        ending: Ending::new(m.retired, fuel),
        quantum: cfg.quantum.max(1),
        steal: cfg.steal,
        io: SharedIo::new(io),
    };
    let main = std::thread::scope(|s| {
        for w in 1..workers {
            let wm = m.share();
            let sh = &sh;
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || match make_engine(&wm) {
                Ok(engine) => {
                    worker(sh, w, wm, engine, None);
                }
                Err(e) => sh.finish(Err(e)),
            });
            if let Err(e) = spawned {
                let t = trap_at(&m, TrapKind::TooManyThreads { max: w as u64 }, m.pc);
                let _ = e;
                sh.finish(Ok((Outcome::Trapped(t), Vec::new())));
            }
        }
        worker(&sh, 0, m, engine, Some(0))
    });
    let mut main = main;
    main.retired = sh.ending.retired();
    let (outcome, deadlock) = sh.ending.take()?;
    let s = sh.lock();
    let threads = s.table.threads.iter().map(|t| t.stats.clone()).collect();
    let counters = ModelStats { blocks: s.table.blocks, wakes: s.table.wakes, ..s.counters.clone() };
    Ok((outcome, ThreadReport { model: format!("hybrid:{workers}"), threads, counters, deadlock }, main))
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, end: End) {
        self.ending.record(end);
        let _s = self.lock();
        self.wakeup.notify_all();
    }
}

impl Sched {
    /// Places the threads made ready since the last call.
    fn place_ready(&mut self) -> bool {
        let ready: Vec<u64> = self.table.made_ready.drain(..).collect();
        for &id in &ready {
            let loads: Vec<usize> =
                self.queues.iter().zip(&self.running).map(|(q, r)| q.len() + usize::from(r.is_some())).collect();
            let w = self.placer.choose(&loads);
            self.queues[w].push_back(id);
        }
        !ready.is_empty()
    }

    /// The next thread for worker `me`: its own queue's front, or with
    /// stealing the back of the longest other queue.
    fn next_for(&mut self, me: usize, steal: bool) -> Option<u64> {
        if let Some(id) = self.queues[me].pop_front() {
            return Some(id);
        }
        if !steal {
            return None;
        }
        let queued: Vec<usize> = self.queues.iter().map(VecDeque::len).collect();
        let from = steal_from(me, &queued)?;
        let id = self.queues[from].pop_back()?;
        self.counters.steals += 1;
        self.table.threads[id as usize].stats.steals += 1;
        Some(id)
    }
}

/// Worker `me`: runs threads from its queue until the program ends.
/// `current` is the thread it holds at the start (worker 0: the main
/// thread, stopped before a thread instruction). Returns its machine.
fn worker(sh: &Shared, me: usize, mut m: Machine, mut engine: SliceEngine, mut current: Option<u64>) -> Machine {
    let mut seen = 0;
    let mut io = &sh.io;
    let mut pending = current.map(|_| Outcome::ThreadOp);
    // (the main thread's instructions before its first thread one are its own)
    let mut slice_start = 0;
    let mut slice_end = m.retired.saturating_add(sh.quantum);
    let mut last: Option<u64> = current;
    loop {
        if sh.ending.stopped() {
            break;
        }
        let Some(id) = current else {
            match pick(sh, me, &mut m) {
                Some(id) => {
                    current = Some(id);
                    if last != Some(id) && last.is_some() {
                        sh.lock().counters.switches += 1;
                    }
                    last = Some(id);
                    slice_start = m.retired;
                    slice_end = m.retired.saturating_add(sh.quantum);
                    continue;
                }
                None => break,
            }
        };
        let o = match pending.take() {
            Some(o) => o,
            None => match sh.ending.slice(&mut engine, &mut m, &mut io, slice_end, &mut seen) {
                Ok(o) => o,
                Err(end) => {
                    sh.finish(end);
                    break;
                }
            },
        };
        let mut s = sh.lock();
        let step = match o {
            Outcome::Trapped(ref t) if t.kind == TrapKind::FuelExhausted => {
                s.counters.preemptions += 1;
                Step::Yield
            }
            Outcome::ThreadOp => {
                let before = m.retired;
                let step = s.table.perform(id, &mut m, &mut io);
                sh.ending.count(m.retired - before);
                if s.place_ready() {
                    sh.wakeup.notify_all();
                }
                step
            }
            other => Step::Finished(other),
        };
        if step == Step::Continue && m.retired < slice_end {
            continue;
        }
        let t = &mut s.table.threads[id as usize];
        t.stats.retired += m.retired - slice_start;
        match step {
            Step::Finished(o) => {
                drop(s);
                sh.finish(Ok((o, Vec::new())));
                break;
            }
            Step::Ended => {}
            Step::Block => (t.regs, t.pc) = (m.regs, m.pc),
            Step::Continue | Step::Yield => {
                (t.regs, t.pc) = (m.regs, m.pc);
                s.queues[me].push_back(id);
            }
        }
        s.running[me] = None;
        current = None;
        if matches!(step, Step::Block | Step::Ended) && s.table.all_blocked() {
            let end = s.table.deadlock(&m, id);
            drop(s);
            sh.finish(Ok(end));
            break;
        }
    }
    m
}

/// Waits for a thread worker `me` may run and loads it into `m`; `None`
/// once the program ended.
fn pick(sh: &Shared, me: usize, m: &mut Machine) -> Option<u64> {
    let mut s = sh.lock();
    loop {
        if sh.ending.stopped() {
            return None;
        }
        if let Some(id) = s.next_for(me, sh.steal) {
            s.running[me] = Some(id);
            let now = if s.table.threads[id as usize].stats.first_run_ns.is_none() { s.table.now_ns() } else { 0 };
            let t = &mut s.table.threads[id as usize];
            if t.stats.first_run_ns.is_some() && t.stats.worker != me {
                t.stats.migrations += 1;
            }
            t.stats.first_run_ns.get_or_insert(now);
            t.stats.worker = me;
            (m.regs, m.pc) = (t.regs, t.pc);
            return Some(id);
        }
        s = sh.wakeup.wait(s).unwrap_or_else(PoisonError::into_inner);
    }
}
