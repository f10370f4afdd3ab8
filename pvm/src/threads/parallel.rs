//! What the OS threads of the parallel models (`kernel`, `hybrid`) share
//! besides their scheduler: how the run ends, the log of code writes, the
//! retired count against the fuel; and one slice of a thread on an engine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::codelog::CodeLog;
use super::engine::SliceEngine;
use crate::interp::{stopped_at, Outcome};
use crate::jit::JitError;
use crate::machine::{Machine, SysIo};

/// How the run ended: the outcome and a deadlock's report, or a
/// translator's failure.
pub type End = Result<(Outcome, Vec<String>), JitError>;

/// The end of a parallel run, and what every slice counts against.
#[derive(Debug)]
pub struct Ending {
    stop: AtomicBool,
    end: Mutex<Option<End>>,
    code_log: CodeLog,
    retired: AtomicU64,
    fuel: u64,
}

impl Ending {
    /// A run whose machine has retired `retired` instructions of `fuel`.
    pub fn new(retired: u64, fuel: u64) -> Self {
        Ending {
            stop: AtomicBool::new(false),
            end: Mutex::new(None),
            code_log: CodeLog::default(),
            retired: AtomicU64::new(retired),
            fuel,
        }
    }

    /// The program has ended: every thread stops.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Records how the program ends (the first end counts) and tells every
    /// thread to stop; the caller wakes those that sleep.
    pub fn record(&self, end: End) {
        let mut e = self.end.lock().unwrap_or_else(PoisonError::into_inner);
        e.get_or_insert(end);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Counts `n` instructions retired outside a slice (a thread instruction).
    pub fn count(&self, n: u64) {
        self.retired.fetch_add(n, Ordering::SeqCst);
    }

    /// Every thread's retired instructions together.
    pub fn retired(&self) -> u64 {
        self.retired.load(Ordering::SeqCst)
    }

    /// The recorded end; an exit with status 0 if none was (every thread
    /// ended with `texit`).
    pub fn take(&self) -> End {
        let end = self.end.lock().unwrap_or_else(PoisonError::into_inner).take();
        end.unwrap_or_else(|| Ok((Outcome::Exited(0), Vec::new())))
    }

    /// Runs `m` on `engine` until `limit` retired instructions, with the
    /// other threads' code writes applied first and this slice's published
    /// after. The slice ends early, at a block boundary, when another
    /// thread writes code, and right after a code write of its own, so a
    /// store into code reaches every running thread by its next block
    /// boundary. `Err` is the end of the program: a translator's failure, or
    /// the fuel of every thread together running out.
    pub fn slice(
        &self,
        engine: &mut SliceEngine,
        m: &mut Machine,
        io: &mut dyn SysIo,
        limit: u64,
        seen: &mut usize,
    ) -> Result<Outcome, End> {
        if engine.kick().is_none() {
            engine.set_kick(self.code_log.enlist());
        }
        // (a kick for writes published so far: catching up applies them)
        if let Some(k) = engine.kick() {
            k.take();
        }
        self.code_log.catch_up(engine, m, seen);
        let before = m.retired;
        let o = engine.run(m, io, limit).map_err(Err)?;
        let writes = engine.take_code_writes();
        self.code_log.publish(writes, seen, engine.kick());
        let ran = m.retired - before;
        let total = self.retired.fetch_add(ran, Ordering::SeqCst) + ran;
        if total >= self.fuel && !matches!(o, Outcome::Exited(_) | Outcome::Returned) {
            return Err(Ok((stopped_at(m), Vec::new())));
        }
        Ok(o)
    }
}
