//! Calls: direct, to another instance, to the host, and indirect through a
//! table with WebAssembly's checks. The caller saves the registers whose
//! values are read after the call, passes arguments in r0.. (beyond
//! twelve on the stack, last pushed first) and takes results from r0...

use super::stack::{Entry, Operand};
use super::{Callee, FuncLower, Loc, LowerError, LIN, S1, S2, SP, VALUE_REGS};
use crate::isa::Opcode;
use crate::machine::sys;
use crate::wasm::module::FuncType;

/// How the callee is reached.
#[derive(Clone, Copy, Debug)]
enum Target {
    Direct(u32),
    Foreign {
        addr: u64,
        desc: Option<u64>,
    },
    /// Code address in S2.
    Indirect,
}

impl FuncLower<'_, '_> {
    /// Registers holding values needed after the call at `pos`: entries
    /// below the arguments and the locals that may be read before they
    /// are written again.
    fn live_after_call(&self, base: usize) -> u16 {
        let mut mask = self.a.live_after.get(self.pos).copied().unwrap_or(u16::MAX);
        for d in 0..base {
            if let (Entry::Home, Loc::Reg(r)) = (self.stack[d], self.a.homes[d]) {
                mask |= 1 << r;
            }
        }
        mask
    }

    fn save(&mut self, mask: u16, restore: bool) {
        let Some(area) = self.a.save_area else { return };
        for r in 0..VALUE_REGS as u8 {
            if mask & (1 << r) != 0 {
                let op = if restore { Opcode::Ld64 } else { Opcode::St64 };
                self.emit(op, r, SP, 0, area + 8 * i32::from(r));
            }
        }
    }

    /// Arguments of `ty` are the top entries: entries below them go home
    /// (so the saves cover them), then the arguments move to r0...
    fn prepare_args(&mut self, ty: &FuncType, clobbered: u16) -> (usize, u16) {
        let n = ty.params.len();
        let base = self.stack.len() - n;
        let producer = self.take_producer(base, n);
        for d in 0..base {
            if matches!(self.stack[d], Entry::Local(_) | Entry::Cmp { .. }) {
                self.materialize(d);
            }
        }
        // Nothing is read after a call whose results the function returns.
        let tail = self.returns_next(ty.results.len());
        let mask = if tail { 0 } else { self.live_after_call(base) & clobbered };
        self.save(mask, false);
        for i in (VALUE_REGS..n).rev() {
            let v = self.operand_at(base + i);
            let r = self.reg(v, S1);
            self.emit(Opcode::Push, r, 0, 0, 0);
            self.sp_delta += 8;
        }
        let mut moves = Vec::with_capacity(n.min(VALUE_REGS));
        for i in 0..n.min(VALUE_REGS) {
            let src = match producer {
                Some(_) if i == n - 1 => Operand::Loc(Loc::Reg(i as u8)),
                _ => self.operand_at(base + i),
            };
            moves.push((Loc::Reg(i as u8), src));
        }
        if let Some(mut p) = producer {
            // Into the argument register, unless another argument is read
            // from it (then into its home, as before).
            let last = n as u8 - 1;
            if moves[..n - 1].iter().any(|m| m.1 == Operand::Loc(Loc::Reg(last))) {
                moves[n - 1].1 = Operand::Loc(Loc::Reg(p.a));
            } else {
                p.a = last;
            }
            self.emit(p.op, p.a, p.b, p.c, p.imm);
        }
        self.parallel_move(&moves);
        (base, mask)
    }

    /// If the last argument (of `n`, from depth `base`) was computed by
    /// the instruction just before the call into its home register, takes
    /// that instruction back: [`prepare_args`](Self::prepare_args) emits
    /// it after the saves, into the argument register. Nothing between
    /// reads or writes what it reads or writes: the saves read other
    /// registers (the home belongs to the argument's depth), the
    /// materializations below `base` and of the other arguments write
    /// homes of other depths and read locals it does not write.
    fn take_producer(&mut self, base: usize, n: usize) -> Option<crate::isa::Instr> {
        let (op, at, h) = self.produced.take()?;
        let top = (base + n).checked_sub(1)?;
        let ok = (1..=VALUE_REGS).contains(&n)
            && op + 1 == self.pos
            && at + 1 == self.code.instrs.len()
            && self.stack.len() == base + n
            && self.stack[top] == Entry::Home
            && self.a.homes[top] == Loc::Reg(h);
        if !ok {
            return None;
        }
        self.code.pop_plain()
    }

    /// After the call: stack arguments dropped, results to their homes,
    /// saved registers back; or, if the function returns the results next,
    /// it returns at once.
    fn finish_call(&mut self, ty: &FuncType, base: usize, mask: u16, clobbered: u16) {
        let stacked = ty.params.len().saturating_sub(VALUE_REGS);
        if stacked > 0 {
            self.emit(Opcode::AddI, SP, SP, 0, 8 * stacked as i32);
            self.sp_delta = 0;
        }
        if self.returns_next(ty.results.len()) {
            self.epilogue();
            return;
        }
        self.stack.truncate(base);
        let moves: Vec<(Loc, Operand)> =
            (0..ty.results.len()).map(|j| (self.a.homes[base + j], Operand::Loc(Loc::Reg(j as u8)))).collect();
        self.parallel_move(&moves);
        self.stack.extend(std::iter::repeat_n(Entry::Home, ty.results.len()));
        self.save(mask, true);
        self.load_consts(clobbered);
    }

    fn restore_own_memory(&mut self) {
        if let Some(m) = self.env.memories.first() {
            self.emit(Opcode::Li, S2, 0, 0, 0);
            self.emit(Opcode::Ld64, LIN, S2, 0, m.desc as i32);
        }
    }

    fn wasm_call(&mut self, ty: &FuncType, target: Target) -> Result<(), LowerError> {
        if ty.results.len() > VALUE_REGS {
            return Err(LowerError::TooManyResults { offset: self.offset(), n: ty.results.len() });
        }
        let (base, mask) = self.prepare_args(ty, u16::MAX);
        match target {
            Target::Direct(f) => self.code.call(f),
            Target::Foreign { addr, desc } => {
                if let Some(d) = desc {
                    self.emit(Opcode::Li, S2, 0, 0, 0);
                    self.emit(Opcode::Ld64, LIN, S2, 0, d as i32);
                }
                self.emit(Opcode::Call, 0, 0, 0, addr as i32);
            }
            Target::Indirect => self.emit(Opcode::CallR, S2, 0, 0, 0),
        }
        if !matches!(target, Target::Direct(_)) && self.env.cross_instance {
            self.restore_own_memory();
        }
        self.finish_call(ty, base, mask, u16::MAX);
        Ok(())
    }

    fn host_call(&mut self, ty: &FuncType, id: u32) -> Result<(), LowerError> {
        let n = ty.params.len().max(ty.results.len());
        if n > VALUE_REGS {
            return Err(LowerError::TooManyResults { offset: self.offset(), n });
        }
        let clobbered = ((1u32 << n) - 1) as u16;
        let (base, mask) = self.prepare_args(ty, clobbered);
        let imm = sys::HOST.saturating_add_unsigned(id);
        self.emit(Opcode::Sys, 0, 0, 0, imm);
        self.finish_call(ty, base, mask, clobbered);
        Ok(())
    }

    pub(super) fn call(&mut self, f: u32) -> Result<(), LowerError> {
        let ty = self.env.module.func_type(f).clone();
        match self.env.funcs.get(f as usize).copied() {
            Some(Callee::Host(id)) => self.host_call(&ty, id),
            Some(Callee::Foreign { addr, desc }) => self.wasm_call(&ty, Target::Foreign { addr, desc }),
            _ => self.wasm_call(&ty, Target::Direct(f)),
        }
    }

    /// `call_indirect`: the index must be in the table (else "undefined
    /// element"), the entry set ("uninitialized element") and of the
    /// expected type ("indirect call type mismatch").
    pub(super) fn call_indirect(&mut self, type_index: u32, table_index: u32) -> Result<(), LowerError> {
        let ty = self.env.module.types[type_index as usize].clone();
        let want = self.env.type_ids[type_index as usize];
        let table = self.env.tables[table_index as usize];
        let idx = self.pop();
        let rx = self.reg(idx, S2);
        let undefined = self.trap_label(crate::wasm::TRAP_UNDEFINED);
        let uninitialized = self.trap_label(crate::wasm::TRAP_UNINITIALIZED);
        let mismatch = self.trap_label(crate::wasm::TRAP_MISMATCH);
        let size = i32::try_from(table.size).unwrap_or(i32::MAX);
        self.emit(Opcode::SltuI, S1, rx, 0, size);
        self.code.branch(Opcode::Beqz, S1, 0, undefined);
        self.emit(Opcode::ShlI, S2, rx, 0, 4);
        let entry = table.addr as i32;
        self.emit(Opcode::Ld32U, S1, S2, 0, entry + 4);
        self.code.branch(Opcode::Beqz, S1, 0, uninitialized);
        self.emit(Opcode::SneI, S1, S1, 0, want as i32);
        self.code.branch(Opcode::Bnez, S1, 0, mismatch);
        if self.env.cross_instance {
            self.emit(Opcode::Ld64, S1, S2, 0, entry + 8);
            let same = self.code.label();
            self.code.branch(Opcode::Beqz, S1, 0, same);
            self.emit(Opcode::Ld64, LIN, S1, 0, 0);
            self.code.bind(same);
        }
        self.emit(Opcode::Ld32U, S2, S2, 0, entry);
        self.wasm_call(&ty, Target::Indirect)
    }
}
