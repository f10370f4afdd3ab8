//! The translation of atomics (`cas`, `xadd`, `xchg`: x86 `lock cmpxchg`,
//! `lock xadd`, `xchg`), `fence` (`mfence`), and the thread instructions,
//! which leave the block for the scheduler.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::emit::Emitter;
use crate::isa::{AtomicOp, FenceOp, Instr, ThreadOp};

impl Emitter {
    /// An atomic read-modify-write: the same bounds check as a store of 8
    /// bytes above the code (below it, the interpreter performs it and the
    /// dispatcher invalidates), then the alignment check; either failing
    /// goes to the interpreter, which reports the trap.
    pub(super) fn atomic_instr(&mut self, op: AtomicOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        let low = self.layout.code_end;
        let limit = self.layout.mem_size.checked_sub(8).and_then(|top| top.checked_sub(low));
        let (Some(limit), Ok(minus_low)) = (limit, i32::try_from(-i128::from(low))) else {
            return self.a.jmp(stub);
        };
        // rdx = the guest address (wrapping: a wrapped address is below
        // `low` or past the end, and the unsigned check catches both).
        self.load(rdx, i.b)?;
        if i.imm != 0 {
            self.a.add(rdx, i.imm)?;
        }
        self.a.lea(rcx, qword_ptr(rdx + minus_low))?;
        self.bounds(rcx, limit, k)?;
        self.a.test(dl, 7)?;
        self.a.jnz(stub)?;
        let at = qword_ptr(r14 + rdx);
        match op {
            AtomicOp::Cas => {
                self.load(rax, i.a)?;
                self.load(rcx, i.c)?;
                self.guest_access(k);
                self.a.lock().cmpxchg(at, rcx)?;
                self.put(i.a, rax)
            }
            AtomicOp::XAdd => {
                self.load(rcx, i.c)?;
                self.guest_access(k);
                self.a.lock().xadd(at, rcx)?;
                self.put(i.a, rcx)
            }
            AtomicOp::XChg => {
                self.load(rcx, i.c)?;
                self.guest_access(k);
                self.a.xchg(at, rcx)?;
                self.put(i.a, rcx)
            }
        }
    }

    /// `fence`.
    pub(super) fn fence_instr(&mut self, op: FenceOp) -> Result<(), IcedError> {
        match op {
            FenceOp::Fence => self.a.mfence(),
        }
    }

    /// Thread instructions: the interpreter stops before them and the
    /// scheduler performs them.
    pub(super) fn thread_instr(&mut self, op: ThreadOp, k: usize) -> Result<(), IcedError> {
        match op {
            ThreadOp::Spawn
            | ThreadOp::Join
            | ThreadOp::Yield
            | ThreadOp::TExit
            | ThreadOp::Tid
            | ThreadOp::Wait
            | ThreadOp::Wake => {
                let stub = self.interpret_stub(k);
                self.a.jmp(stub)
            }
        }
    }
}
