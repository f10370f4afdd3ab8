//! If-conversion: a conditional branch that only skips one simple register
//! instruction (`beq r3, r9, skip; addi r5, r5, 1; skip:`) becomes a
//! conditional move, so a branch that goes either way at random (a count of
//! the set flags of an array, say) costs no misprediction. The retired count
//! drops by one when the branch is taken, as in the interpreter.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::emit::{ctx_reg, Emitter};
use crate::isa::{Instr, Opcode, INSTR_SIZE};

/// Whether `i` can be computed into a scratch register without side effects
/// (no memory, no trap, no flags read).
fn simple(i: &Instr) -> bool {
    matches!(
        i.op,
        Opcode::Li
            | Opcode::Mov
            | Opcode::Add
            | Opcode::Sub
            | Opcode::Mul
            | Opcode::And
            | Opcode::Or
            | Opcode::Xor
            | Opcode::AddI
            | Opcode::SubI
            | Opcode::MulI
            | Opcode::AndI
            | Opcode::OrI
            | Opcode::XorI
    )
}

/// Whether the branch at k of `instrs` (at guest `pc`) skips just the one
/// simple instruction after it, inside the block: `if_convert` takes it.
pub(super) fn convertible(instrs: &[Instr], k: usize, pc: u64) -> bool {
    k + 2 < instrs.len() && instrs[k].imm as u32 as u64 == pc + 2 * INSTR_SIZE && simple(&instrs[k + 1])
}

impl Emitter {
    /// Translates the branch at k together with instruction k + 1 if the
    /// branch skips just that one simple instruction inside the block.
    /// Returns false (emitting nothing) otherwise.
    pub(super) fn if_convert(&mut self, branch: &Instr, k: usize, pc: u64) -> Result<bool, IcedError> {
        if !convertible(&self.instrs, k, pc) {
            return Ok(false);
        }
        let i = self.instrs[k + 1];
        // rdx = what instruction k + 1 would write (guest state untouched).
        match i.op {
            Opcode::Li => self.a.mov(rdx, i64::from(i.imm))?,
            Opcode::Mov => self.load(rdx, i.b)?,
            Opcode::MulI => {
                let x = self.get(i.b, rax)?;
                self.mul_imm(rdx, x, i.imm)?;
            }
            Opcode::AddI | Opcode::SubI | Opcode::AndI | Opcode::OrI | Opcode::XorI => {
                self.load(rdx, i.b)?;
                self.alu_imm(i.op, rdx, i.imm)?;
            }
            _ => {
                self.load(rdx, i.b)?;
                let y = self.get(i.c, rcx)?;
                self.alu(i.op, rdx, y)?;
            }
        }
        let x = self.get(branch.a, rax)?;
        let y = self.get(branch.b, rcx)?;
        self.a.cmp(x, y)?;
        // Not taken: the instruction runs. Taken: one instruction fewer retired.
        self.forget(i.a);
        match self.host(i.a) {
            Some(h) => self.cmov(branch.op, true, h, rdx)?,
            None => {
                self.a.mov(rax, ctx_reg(i.a))?;
                self.cmov(branch.op, true, rax, rdx)?;
                self.a.mov(ctx_reg(i.a), rax)?;
            }
        }
        // (a flag into rdx, not a cmov of r13: the count's dependency chain
        // gains one cycle, not two)
        match branch.op {
            Opcode::Beq => self.a.sete(dl)?,
            Opcode::Bne => self.a.setne(dl)?,
            Opcode::Blt => self.a.setl(dl)?,
            Opcode::Bge => self.a.setge(dl)?,
            Opcode::Bltu => self.a.setb(dl)?,
            _ => self.a.setae(dl)?,
        }
        self.a.movzx(edx, dl)?;
        self.a.sub(r13, rdx)?;
        Ok(true)
    }

    /// dst = src if the branch `op` is taken (or, `inverse`, not taken),
    /// after a `cmp` of its two registers.
    fn cmov(&mut self, op: Opcode, inverse: bool, dst: AsmRegister64, src: AsmRegister64) -> Result<(), IcedError> {
        match (op, inverse) {
            (Opcode::Beq, false) | (Opcode::Bne, true) => self.a.cmove(dst, src),
            (Opcode::Bne, false) | (Opcode::Beq, true) => self.a.cmovne(dst, src),
            (Opcode::Blt, false) | (Opcode::Bge, true) => self.a.cmovl(dst, src),
            (Opcode::Bge, false) | (Opcode::Blt, true) => self.a.cmovge(dst, src),
            (Opcode::Bltu, false) | (Opcode::Bgeu, true) => self.a.cmovb(dst, src),
            _ => self.a.cmovae(dst, src),
        }
    }
}
