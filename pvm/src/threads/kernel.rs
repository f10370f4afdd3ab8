//! `--threads kernel` (one-to-one): every guest thread is an OS thread with
//! its own machine (registers, pc, retired count) and its own engine (the
//! translator's code cache is per thread), running in parallel on the
//! host's cores over one shared guest memory. The thread table and futexes
//! are behind one mutex; a blocked thread sleeps on a condition variable.
//!
//! Code written by one thread reaches the others at their next exit to
//! the runtime: every thread leaves its engine at least every `--quantum`
//! instructions (the fuel check at block entry), applies the shared log of
//! code writes, and goes on (see docs/isa.md, "Memory model").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::Scope;

use super::engine::{SharedIo, SliceEngine};
use super::parallel::{End, Ending};
use super::stats::{ModelStats, ThreadReport};
use super::table::{State, Step, Table};
use super::ThreadConfig;
use crate::interp::{trap_at, Outcome};
use crate::jit::JitError;
use crate::machine::{Machine, SysIo};
use crate::trap::TrapKind;

/// Makes a thread's engine for its machine.
pub type MakeEngine<'a> = dyn Fn(&Machine) -> Result<SliceEngine, JitError> + Sync + 'a;

/// What every OS thread of the run shares.
struct Shared<'a> {
    table: Mutex<Table>,
    wakeup: Condvar,
    ending: Ending,
    preemptions: AtomicU64,
    quantum: u64,
    io: SharedIo<'a>,
    make_engine: &'a MakeEngine<'a>,
}

/// Runs every thread from `m`'s state, which stopped before a thread
/// instruction of the main thread, each on its own OS thread; the calling
/// thread runs the main one. Returns the outcome, the report, and the
/// main thread's machine (its retired count the total of every thread).
///
/// # Errors
///
/// A failure of a translator.
pub fn run(
    engine: SliceEngine,
    m: Machine,
    io: &mut dyn SysIo,
    cfg: &ThreadConfig,
    fuel: u64,
    make_engine: &MakeEngine<'_>,
) -> Result<(Outcome, ThreadReport, Machine), JitError> {
    let table = Table::new(cfg.max_threads, false, m.started.0);
    let sh = Shared {
        table: Mutex::new(table),
        wakeup: Condvar::new(),
        ending: Ending::new(m.retired, fuel),
        preemptions: AtomicU64::new(0),
        quantum: cfg.quantum.max(1),
        io: SharedIo::new(io),
        make_engine,
    };
    let mut main = std::thread::scope(|s| worker(&sh, s, 0, m, engine, Some(Outcome::ThreadOp)));
    main.retired = sh.ending.retired();
    let (outcome, deadlock) = sh.ending.take()?;
    let table = sh.lock();
    // (the main thread's count includes its instructions before the first
    // thread instruction: its machine counted them)
    let threads = table.threads.iter().map(|t| t.stats.clone()).collect();
    let counters = ModelStats {
        preemptions: sh.preemptions.load(Ordering::SeqCst),
        blocks: table.blocks,
        wakes: table.wakes,
        ..ModelStats::default()
    };
    Ok((outcome, ThreadReport { model: "kernel".into(), threads, counters, deadlock }, main))
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The program ends (the first end counts): every thread stops.
    fn finish(&self, end: End) {
        self.ending.record(end);
        let _t = self.lock();
        self.wakeup.notify_all();
    }
}

/// One guest thread's OS thread: runs it slice by slice until it ends or
/// the program does; returns its machine.
fn worker<'s, 'e>(
    sh: &'s Shared<'e>,
    scope: &'s Scope<'s, 'e>,
    me: u64,
    mut m: Machine,
    mut engine: SliceEngine,
    first: Option<Outcome>,
) -> Machine {
    let mut seen = 0;
    let mut io = &sh.io;
    let mut outcome = first;
    while !sh.ending.stopped() {
        let o = match outcome.take() {
            Some(o) => o,
            None => {
                let limit = m.retired.saturating_add(sh.quantum);
                match sh.ending.slice(&mut engine, &mut m, &mut io, limit, &mut seen) {
                    Ok(o) => o,
                    Err(end) => {
                        sh.finish(end);
                        break;
                    }
                }
            }
        };
        match o {
            Outcome::Trapped(ref t) if t.kind == TrapKind::FuelExhausted => {
                sh.preemptions.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::ThreadOp => {
                if !thread_op(sh, scope, me, &mut m, &mut io) {
                    break;
                }
            }
            other => {
                sh.finish(Ok((other, Vec::new())));
                break;
            }
        }
    }
    let mut t = sh.lock();
    if let Some(st) = t.threads.get_mut(me as usize) {
        st.stats.retired = m.retired;
    }
    m
}

/// Performs the thread instruction `me` stopped at; false if the thread
/// (or the program) ended.
fn thread_op<'s, 'e>(
    sh: &'s Shared<'e>,
    scope: &'s Scope<'s, 'e>,
    me: u64,
    m: &mut Machine,
    io: &mut &SharedIo,
) -> bool {
    let mut table = sh.lock();
    let before = m.retired;
    let step = table.perform(me, m, io);
    sh.ending.count(m.retired - before);
    if !table.made_ready.is_empty() {
        table.made_ready.clear();
        sh.wakeup.notify_all();
    }
    // Threads spawned now get their OS thread.
    let first_new = table.launched;
    table.launched = table.threads.len();
    let now = table.now_ns();
    let new: Vec<Machine> = (first_new..table.launched)
        .map(|id| {
            let t = &mut table.threads[id];
            t.stats.worker = id;
            t.stats.first_run_ns = Some(now);
            let mut nm = m.share();
            (nm.regs, nm.pc) = (t.regs, t.pc);
            nm
        })
        .collect();
    let mut go_on = match step {
        Step::Continue => true,
        Step::Yield => {
            drop(table);
            std::thread::yield_now();
            table = sh.lock();
            true
        }
        Step::Block => {
            let (t, go_on) = block(sh, table, me, m);
            table = t;
            go_on
        }
        Step::Ended => {
            if table.all_blocked() {
                // (the others wait for what nobody left can do)
                sh.ending.record(Ok(table.deadlock(m, me)));
                sh.wakeup.notify_all();
            }
            false
        }
        Step::Finished(o) => {
            drop(table);
            sh.finish(Ok((o, Vec::new())));
            return false;
        }
    };
    drop(table);
    for (k, nm) in new.into_iter().enumerate() {
        let id = (first_new + k) as u64;
        let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
            let engine = match (sh.make_engine)(&nm) {
                Ok(e) => e,
                Err(e) => {
                    sh.finish(Err(e));
                    return;
                }
            };
            worker(sh, scope, id, nm, engine, None);
        });
        if spawned.is_err() {
            let t = trap_at(m, TrapKind::TooManyThreads { max: id }, m.pc);
            sh.finish(Ok((Outcome::Trapped(t), Vec::new())));
            go_on = false;
        }
    }
    go_on
}

/// Parks `me` (in `join` or `wait`) until it is made ready; false if the
/// program ended meanwhile, or this was its deadlock.
fn block<'a>(
    sh: &'a Shared,
    mut table: MutexGuard<'a, Table>,
    me: u64,
    m: &mut Machine,
) -> (MutexGuard<'a, Table>, bool) {
    let t = &mut table.threads[me as usize];
    (t.regs, t.pc) = (m.regs, m.pc);
    if table.all_blocked() {
        sh.ending.record(Ok(table.deadlock(m, me)));
        sh.wakeup.notify_all();
        return (table, false);
    }
    while table.threads[me as usize].state != State::Ready {
        if sh.ending.stopped() {
            return (table, false);
        }
        table = sh.wakeup.wait(table).unwrap_or_else(PoisonError::into_inner);
    }
    m.regs = table.threads[me as usize].regs;
    (table, true)
}
