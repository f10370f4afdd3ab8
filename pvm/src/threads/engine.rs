//! One engine, as the thread models drive it: run the machine's current
//! thread until a retired-count limit, a thread instruction or the end.

use std::sync::Arc;

use crate::interp::{InterpStats, Interpreter, Outcome};
use crate::jit::{Jit, JitError};
use crate::kick::Kick;
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
            SliceEngine::Interp(i) if i.kick().is_some() => Ok(i.run_kickable(m, io, limit)),
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

    /// Makes this the engine of a thread of a parallel run: `kick` stops
    /// its runs at the next block boundary, and so does a code write of its
    /// own (see `crate::kick`).
    pub fn set_kick(&mut self, kick: Arc<Kick>) {
        match self {
            SliceEngine::Interp(i) => i.set_kick(kick),
            SliceEngine::Jit(j) => j.set_kick(kick),
        }
    }

    /// The kick `set_kick` gave it.
    pub fn kick(&self) -> Option<&Kick> {
        match self {
            SliceEngine::Interp(i) => i.kick(),
            SliceEngine::Jit(j) => j.kick(),
        }
    }

    /// Code at `[addr, addr + len)` changed behind the engine's back.
    pub fn code_written(&mut self, m: &Machine, addr: u64, len: u64) {
        match self {
            SliceEngine::Interp(i) => i.refresh_code(m, addr, len),
            SliceEngine::Jit(j) => j.code_written(m, addr, len),
        }
    }

    /// The code this engine's thread overwrote since the last call.
    pub fn take_code_writes(&mut self) -> Vec<(u64, u64)> {
        match self {
            SliceEngine::Interp(i) => i.take_code_writes(),
            SliceEngine::Jit(j) => j.take_code_writes(),
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

/// The program's stdin and stdout shared by the guest threads of several
/// OS threads: every call takes a lock, so one thread's `write` is whole.
pub struct SharedIo<'a> {
    inner: std::sync::Mutex<SendIo<'a>>,
}

struct SendIo<'a>(&'a mut dyn SysIo);

// SAFETY: the `SysIo` behind it is reached only under `SharedIo`'s mutex,
// one thread at a time, and only while the run that was handed it
// exclusively (`run_image`'s `io`) lasts: its OS threads are scoped and
// joined before it returns. (A `SysIo` tied to the thread that made it,
// through thread-locals, would see calls from others: ours are not.)
unsafe impl Send for SendIo<'_> {}

impl<'a> SharedIo<'a> {
    pub fn new(io: &'a mut dyn SysIo) -> Self {
        SharedIo { inner: std::sync::Mutex::new(SendIo(io)) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut dyn SysIo) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut *g.0)
    }
}

/// (`sleep` is the default one: it sleeps the calling thread without
/// holding the lock, so the other threads' I/O goes on meanwhile.)
impl SysIo for &SharedIo<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.with(|io| io.write(bytes));
    }
    fn read(&mut self, buf: &mut [u8]) -> usize {
        self.with(|io| io.read(buf))
    }
    fn flush(&mut self) {
        self.with(|io| io.flush());
    }
    fn read_ready(&mut self) -> bool {
        self.with(|io| io.read_ready())
    }
    fn write_err(&mut self, bytes: &[u8]) {
        self.with(|io| io.write_err(bytes));
    }
    fn host_call(
        &mut self,
        n: u32,
        regs: &mut [u64; crate::isa::NUM_REGS],
        mem: &mut [u8],
    ) -> Result<crate::machine::Syscall, crate::trap::TrapKind> {
        self.with(|io| io.host_call(n, regs, mem))
    }
}

impl std::fmt::Debug for SharedIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedIo").finish_non_exhaustive()
    }
}
