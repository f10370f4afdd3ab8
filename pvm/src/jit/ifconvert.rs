//! If-conversion: a conditional branch that only skips one simple register
//! instruction (`beq r3, r9, skip; addi r5, r5, 1; skip:`) becomes a
//! conditional move, so a branch that goes either way at random (a count of
//! the set flags of an array, say) costs no misprediction. The retired count
//! drops by one when the branch is taken, as in the interpreter.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::emit::{ctx_reg, Emitter};
use super::ops::{Alu, Compare, Cond, IntForm};
use crate::isa::{Instr, Kind, MoveOp};

impl Emitter {
    /// Translates the branch at k together with instruction k + 1, which
    /// it skips (the plan found it convertible).
    pub(super) fn if_convert(
        &mut self,
        cond: Cond,
        compare: Compare,
        branch: &Instr,
        k: usize,
    ) -> Result<(), IcedError> {
        let i = self.plan.instrs[k + 1];
        // rdx = what instruction k + 1 would write (guest state untouched).
        match (i.op.kind(), IntForm::alu(i.op.kind())) {
            (Kind::Move(MoveOp::Li), _) => self.a.mov(rdx, i64::from(i.imm))?,
            (Kind::Move(MoveOp::Mov), _) => self.load(rdx, i.b)?,
            (_, Some((Alu::Mul, true))) => {
                let x = self.get(i.b, rax)?;
                self.mul_imm(rdx, x, i.imm)?;
            }
            (_, Some((alu, true))) => {
                self.load(rdx, i.b)?;
                alu.ri(&mut self.a, rdx, i.imm)?;
            }
            (_, Some((alu, false))) => {
                self.load(rdx, i.b)?;
                let y = self.get(i.c, rcx)?;
                alu.rr(&mut self.a, rdx, y)?;
            }
            // (the plan converts only the instructions above)
            (_, None) => return Ok(()),
        }
        self.compare(compare, branch)?;
        // Not taken: the instruction runs. Taken: one instruction fewer retired.
        self.forget(i.a);
        match self.host(i.a) {
            Some(h) => cond.not().cmov(&mut self.a, h, rdx)?,
            None => {
                self.a.mov(rax, ctx_reg(i.a))?;
                cond.not().cmov(&mut self.a, rax, rdx)?;
                self.a.mov(ctx_reg(i.a), rax)?;
            }
        }
        // (a flag into rdx, not a cmov of r13: the count's dependency chain
        // gains one cycle, not two)
        cond.setcc(&mut self.a, dl)?;
        self.a.movzx(edx, dl)?;
        self.a.sub(r13, rdx)
    }
}
