//! The translation of loads, stores, pushes and pops (their checks and
//! sp's pending move are in `emit`).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::block::{low16, low8, r32, HOST_POOL, HOST_POOL16, HOST_POOL32, HOST_POOL8};
use super::emit::{ctx_reg, Emitter, Pushed};
use crate::isa::{Instr, LinearLoadOp, LinearStoreOp, LoadOp, StackOp, StoreOp, SP};

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

    /// The address of a linear-memory access of n bytes at the low 32 bits
    /// of b plus imm, checked against the linear memory's end in c (one
    /// compare: the zero-extended base plus imm plus n is at most the end).
    /// Past the end of guest memory there is no check: the access lands in
    /// the guard regions (below 2^33 bytes above the base) and faults, and
    /// the interpreter reports the trap. Stores below the code end go to
    /// the interpreter (it stores and the dispatcher invalidates). rcx =
    /// the zero-extended base; clobbers rax and rdx.
    fn linear_address(
        &mut self,
        i: &Instr,
        n: u64,
        k: usize,
        store: bool,
    ) -> Result<Option<AsmMemoryOperand>, IcedError> {
        let stub = self.interpret_stub(k);
        let Ok(end_disp) = i32::try_from(i64::from(i.imm) + n as i64) else {
            self.a.jmp(stub)?;
            return Ok(None);
        };
        let base = self.get(i.b, rcx)?;
        self.a.mov(ecx, r32(base))?;
        self.a.lea(rax, qword_ptr(rcx + end_disp))?;
        let end = self.get(i.c, rdx)?;
        self.a.cmp(rax, end)?;
        self.a.ja(stub)?;
        // A store's lowest address is imm, the base being at least 0.
        if store && i64::from(i.imm) < self.layout.code_end as i64 {
            let Ok(disp) = i32::try_from(i64::from(i.imm) - self.layout.code_end as i64) else {
                self.a.jmp(stub)?;
                return Ok(None);
            };
            self.a.lea(rax, qword_ptr(rcx + disp))?;
            self.a.test(rax, rax)?;
            self.a.js(stub)?;
        }
        Ok(Some(qword_ptr(r14 + rcx + i.imm)))
    }

    /// Linear-memory loads (WebAssembly's).
    pub(super) fn linear_load(&mut self, op: LinearLoadOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let n = match op {
            LinearLoadOp::Lw8U | LinearLoadOp::Lw8S | LinearLoadOp::Lw8S32 => 1,
            LinearLoadOp::Lw16U | LinearLoadOp::Lw16S | LinearLoadOp::Lw16S32 => 2,
            LinearLoadOp::Lw32U | LinearLoadOp::Lw32S => 4,
            LinearLoadOp::Lw64 => 8,
        };
        let Some(at) = self.linear_address(i, n, k, false)? else { return Ok(()) };
        self.guest_access_guarded(k);
        match op {
            LinearLoadOp::Lw8U => self.a.movzx(eax, byte_ptr(at))?,
            LinearLoadOp::Lw8S => self.a.movsx(rax, byte_ptr(at))?,
            LinearLoadOp::Lw16U => self.a.movzx(eax, word_ptr(at))?,
            LinearLoadOp::Lw16S => self.a.movsx(rax, word_ptr(at))?,
            LinearLoadOp::Lw32U => self.a.mov(eax, dword_ptr(at))?,
            LinearLoadOp::Lw32S => self.a.movsxd(rax, dword_ptr(at))?,
            LinearLoadOp::Lw64 => self.a.mov(rax, qword_ptr(at))?,
            LinearLoadOp::Lw8S32 => self.a.movsx(eax, byte_ptr(at))?,
            LinearLoadOp::Lw16S32 => self.a.movsx(eax, word_ptr(at))?,
        }
        self.put(i.a, rax)
    }

    /// Linear-memory stores.
    pub(super) fn linear_store(&mut self, op: LinearStoreOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let n = match op {
            LinearStoreOp::Sw8 => 1,
            LinearStoreOp::Sw16 => 2,
            LinearStoreOp::Sw32 => 4,
            LinearStoreOp::Sw64 => 8,
        };
        let Some(at) = self.linear_address(i, n, k, true)? else { return Ok(()) };
        let v = self.get(i.a, rax)?;
        self.guest_access_guarded(k);
        match op {
            LinearStoreOp::Sw8 => self.a.mov(byte_ptr(at), low8(v)),
            LinearStoreOp::Sw16 => self.a.mov(word_ptr(at), low16(v)),
            LinearStoreOp::Sw32 => self.a.mov(dword_ptr(at), r32(v)),
            LinearStoreOp::Sw64 => self.a.mov(qword_ptr(at), v),
        }
    }
}
