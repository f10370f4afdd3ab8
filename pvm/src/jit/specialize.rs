//! Value specialization: a block may assume that a register it reads but
//! never writes keeps the value it had when the block was translated, if a
//! guard at the block's entry checks it (as LuaJIT's traces guard their
//! assumptions). Two assumptions pay here:
//!
//! - a register holding 2.0 multiplies by adding (`fmul r0, r13, r8` with
//!   r13 = 2.0 becomes `r8 + r8`: the same bits, one add's latency);
//! - a register holding 0, compared with the remainder of a division by
//!   2^k (`remsi r4, r2, 2; bne r4, r9, odd`), lets the branch test the low
//!   bits of the dividend directly instead of waiting for the remainder.
//!
//! A failed guard leaves the block; the dispatcher then drops it and
//! translates that start again without assumptions, for good.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::block::HOST_POOL32;
use super::emit::{ctx_reg, Emitter, StubKind};
use super::magic::{self, ConstDiv};
use crate::isa::NUM_REGS;

impl Emitter {
    /// The `bne` at k after a deferred remainder, once its test set the
    /// flags: the remainder's register gets 0 (a `mov`, which keeps the
    /// flags), and a taken branch goes to a stub that computes it and then
    /// goes on to `target`. Returns the stub's label.
    pub(super) fn remainder_then(&mut self, k: usize, target: u64) -> Result<CodeLabel, IcedError> {
        let r = self.plan.instrs[k - 1].a;
        match self.host_slot(r) {
            Some(slot) => self.a.mov(HOST_POOL32[slot], 0)?,
            None => self.a.mov(ctx_reg(r), 0)?,
        }
        let label = self.a.create_label();
        self.stubs.push((label, StubKind::Remainder { rem: k - 1, target }));
        Ok(label)
    }

    /// The code of a `StubKind::Remainder` stub (at its bound label).
    pub(super) fn remainder_stub(&mut self, rem: usize, target: u64) -> Result<(), IcedError> {
        let i = self.plan.instrs[rem];
        if let Some(ConstDiv::Shift { k, negative }) = magic::plan(i64::from(i.imm)) {
            self.div_rem_pow2(true, i.a, i.b, k, negative)?;
        }
        if target == self.plan.pc {
            self.a.jmp(self.entry)
        } else {
            self.jump_exit(target)
        }
    }

    /// The guards of the block's assumptions (at its entry).
    pub(super) fn guards(&mut self) -> Result<(), IcedError> {
        let mut stub = None;
        for g in 0..NUM_REGS as u8 {
            let Some(v) = self.plan.known[usize::from(g)] else { continue };
            let label = *stub.get_or_insert_with(|| {
                let l = self.a.create_label();
                self.stubs.push((l, StubKind::Despecialize { rewind: self.counted }));
                l
            });
            match (self.host(g), i32::try_from(v)) {
                (Some(h), Ok(v)) => self.a.cmp(h, v)?,
                (None, Ok(v)) => self.a.cmp(ctx_reg(g), v)?,
                (h, Err(_)) => {
                    self.a.mov(rax, v)?;
                    match h {
                        Some(h) => self.a.cmp(h, rax)?,
                        None => self.a.cmp(ctx_reg(g), rax)?,
                    }
                }
            }
            self.a.jne(label)?;
        }
        Ok(())
    }
}
