//! One engine, as the thread models drive it: run the machine's current
//! thread until a retired-count limit, a thread instruction or the end.

use crate::interp::{InterpStats, Interpreter, Outcome};
use crate::jit::{Jit, JitError};
use crate::machine::{Machine, SysIo};

/// The interpreter or the translator, for one OS thread.
#[derive(Debug)]
pub enum SliceEngine {
    Interp(Interpreter),
    Jit(Box<Jit>),
}

impl SliceEngine {
    /// Runs `m` from its pc until `limit` instructions have retired in all
    /// (then a `FuelExhausted` trap at the next instruction, which the
    /// models read as the end of a quantum), a thread instruction, or the
    /// program's end.
    ///
    /// # Errors
    ///
    /// A failure of the translator itself.
    pub fn run(&mut self, m: &mut Machine, io: &mut dyn SysIo, limit: u64) -> Result<Outcome, JitError> {
        match self {
            SliceEngine::Interp(i) => {
                let mut st = InterpStats::default();
                Ok(i.run::<false, false>(m, io, limit, &mut st, &mut std::io::sink()))
            }
            SliceEngine::Jit(j) => {
                j.set_fuel(limit);
                j.run(m, io)
            }
        }
    }

    /// Code at `[addr, addr + len)` changed behind the engine's back.
    pub fn code_written(&mut self, m: &Machine, addr: u64, len: u64) {
        match self {
            SliceEngine::Interp(i) => i.refresh_code(m, addr, len),
            SliceEngine::Jit(j) => j.code_written(m, addr, len),
        }
    }

    /// Whether jacketed blocking syscalls stop the engine for the scheduler.
    pub fn set_defer_blocking(&mut self, on: bool) {
        match self {
            SliceEngine::Interp(i) => i.set_defer_blocking(on),
            SliceEngine::Jit(j) => j.set_defer_blocking(on),
        }
    }
}
