//! The translation of loads, stores, pushes and pops (their checks and
//! sp's pending move are in `emit`).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::block::{HOST_POOL, HOST_POOL16, HOST_POOL32, HOST_POOL8};
use super::emit::{ctx_reg, Emitter, Pushed};
use crate::isa::{Instr, LoadOp, StackOp, StoreOp, SP};

impl Emitter {
    /// Loads, bounds-checked.
    pub(super) fn load_instr(&mut self, op: LoadOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let a = i.a;
        let Some(at) = self.address(i.b, i.imm, 0, op.bytes(), k)? else { return Ok(()) };
        let dst = self.host(a).unwrap_or(rax);
        self.guest_access(k);
        match op {
            LoadOp::Ld8U => self.a.movzx(dst, byte_ptr(at))?,
            LoadOp::Ld8S => self.a.movsx(dst, byte_ptr(at))?,
            LoadOp::Ld16U => self.a.movzx(dst, word_ptr(at))?,
            LoadOp::Ld16S => self.a.movsx(dst, word_ptr(at))?,
            // (a 32-bit load zero-extends: through eax)
            LoadOp::Ld32U => self.a.mov(eax, dword_ptr(at))?,
            LoadOp::Ld32S => self.a.movsxd(dst, dword_ptr(at))?,
            LoadOp::Ld64 => self.a.mov(dst, qword_ptr(at))?,
        }
        if op == LoadOp::Ld32U || dst == rax {
            self.put(a, rax)?;
        }
        Ok(())
    }

    /// Stores, bounds-checked and above the code (below it, the
    /// interpreter stores and the dispatcher invalidates what it hit).
    pub(super) fn store_instr(&mut self, op: StoreOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let a = i.a;
        let Some(at) = self.address(i.b, i.imm, self.layout.code_end, op.bytes(), k)? else { return Ok(()) };
        let slot = self.host_slot(a);
        if slot.is_none() {
            self.a.mov(rcx, ctx_reg(a))?;
        }
        self.guest_access(k);
        match (op, slot) {
            (StoreOp::St8, Some(s)) => self.a.mov(byte_ptr(at), HOST_POOL8[s]),
            (StoreOp::St16, Some(s)) => self.a.mov(word_ptr(at), HOST_POOL16[s]),
            (StoreOp::St32, Some(s)) => self.a.mov(dword_ptr(at), HOST_POOL32[s]),
            (StoreOp::St64, Some(s)) => self.a.mov(qword_ptr(at), HOST_POOL[s]),
            (StoreOp::St8, None) => self.a.mov(byte_ptr(at), cl),
            (StoreOp::St16, None) => self.a.mov(word_ptr(at), cx),
            (StoreOp::St32, None) => self.a.mov(dword_ptr(at), ecx),
            (StoreOp::St64, None) => self.a.mov(qword_ptr(at), rcx),
        }
    }

    /// `push` and `pop`; a run of them shares one check.
    pub(super) fn stack_instr(&mut self, op: StackOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let a = i.a;
        match op {
            StackOp::Push => {
                // The value before sp moves (push sp pushes the old sp).
                let v = if a == SP {
                    self.load(rdx, a)?;
                    rdx
                } else {
                    self.get(a, rdx)?
                };
                self.push_room(k)?;
                self.push_value(k, Pushed::Reg(v))
            }
            StackOp::Pop => match (self.host(SP), self.host(a)) {
                (Some(h_sp), Some(d)) if self.pops_into_host(i) => {
                    self.pop_room(k, h_sp)?;
                    let top = self.stack_top(h_sp);
                    self.guest_access(k);
                    self.a.mov(d, top)?;
                    self.sp_pending += 8;
                    Ok(())
                }
                _ => {
                    // (sp is read whole here: its host register took its
                    // pending move before)
                    self.load(rax, SP)?;
                    self.pop_room(k, rax)?;
                    self.guest_access(k);
                    self.a.mov(rcx, qword_ptr(r14 + rax))?;
                    self.a.add(rax, 8)?;
                    self.put(SP, rax)?;
                    self.put(a, rcx)
                }
            },
        }
    }
}
