//! The guest's operations as the x86-64 ones that perform them: two-operand
//! ALU operations and condition codes. Each is found by an exhaustive match
//! over its ISA class, so a new opcode of the class must say which it is
//! (or that it is none).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use crate::isa::{BranchOp, IntOp, Kind};

/// dst = dst `op` src.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Alu {
    Add,
    Sub,
    Mul,
    And,
    Or,
    Xor,
}

impl Alu {
    /// The ALU operation of a register (`false`) or immediate (`true`) form.
    pub(super) const fn of(op: IntOp) -> Option<(Alu, bool)> {
        match op {
            IntOp::Add => Some((Alu::Add, false)),
            IntOp::Sub => Some((Alu::Sub, false)),
            IntOp::Mul => Some((Alu::Mul, false)),
            IntOp::And => Some((Alu::And, false)),
            IntOp::Or => Some((Alu::Or, false)),
            IntOp::Xor => Some((Alu::Xor, false)),
            IntOp::AddI => Some((Alu::Add, true)),
            IntOp::SubI => Some((Alu::Sub, true)),
            IntOp::MulI => Some((Alu::Mul, true)),
            IntOp::AndI => Some((Alu::And, true)),
            IntOp::OrI => Some((Alu::Or, true)),
            IntOp::XorI => Some((Alu::Xor, true)),
            IntOp::Shl
            | IntOp::Shr
            | IntOp::Sar
            | IntOp::Seq
            | IntOp::Sne
            | IntOp::Slt
            | IntOp::Sltu
            | IntOp::Sle
            | IntOp::Sleu
            | IntOp::ShlI
            | IntOp::ShrI
            | IntOp::SarI
            | IntOp::SeqI
            | IntOp::SneI
            | IntOp::SltI
            | IntOp::SltuI
            | IntOp::SleI
            | IntOp::SleuI => None,
        }
    }

    /// The same for an instruction of any class.
    pub(super) const fn of_kind(kind: Kind) -> Option<(Alu, bool)> {
        match kind {
            Kind::Int(op) => Alu::of(op),
            _ => None,
        }
    }

    /// dst = dst `op` src.
    pub(super) fn rr(self, a: &mut CodeAssembler, dst: AsmRegister64, src: AsmRegister64) -> Result<(), IcedError> {
        match self {
            Alu::Add => a.add(dst, src),
            Alu::Sub => a.sub(dst, src),
            Alu::Mul => a.imul_2(dst, src),
            Alu::And => a.and(dst, src),
            Alu::Or => a.or(dst, src),
            Alu::Xor => a.xor(dst, src),
        }
    }

    /// dst = dst `op` imm.
    pub(super) fn ri(self, a: &mut CodeAssembler, dst: AsmRegister64, imm: i32) -> Result<(), IcedError> {
        match self {
            Alu::Add => a.add(dst, imm),
            Alu::Sub => a.sub(dst, imm),
            Alu::Mul => a.imul_3(dst, dst, imm),
            Alu::And => a.and(dst, imm),
            Alu::Or => a.or(dst, imm),
            Alu::Xor => a.xor(dst, imm),
        }
    }
}

/// A condition on the flags of `cmp x, y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cond {
    Eq,
    Ne,
    /// Signed.
    Lt,
    Ge,
    Le,
    Gt,
    /// Unsigned.
    Ltu,
    Geu,
    Leu,
    Gtu,
}

impl Cond {
    /// The condition a branch is taken on.
    pub(super) const fn of_branch(op: BranchOp) -> Cond {
        match op {
            BranchOp::Beq => Cond::Eq,
            BranchOp::Bne => Cond::Ne,
            BranchOp::Blt => Cond::Lt,
            BranchOp::Bge => Cond::Ge,
            BranchOp::Bltu => Cond::Ltu,
            BranchOp::Bgeu => Cond::Geu,
        }
    }

    /// The condition a set-on-compare instruction sets 1 on, if it is one.
    pub(super) const fn of_set(op: IntOp) -> Option<Cond> {
        match op {
            IntOp::Seq | IntOp::SeqI => Some(Cond::Eq),
            IntOp::Sne | IntOp::SneI => Some(Cond::Ne),
            IntOp::Slt | IntOp::SltI => Some(Cond::Lt),
            IntOp::Sltu | IntOp::SltuI => Some(Cond::Ltu),
            IntOp::Sle | IntOp::SleI => Some(Cond::Le),
            IntOp::Sleu | IntOp::SleuI => Some(Cond::Leu),
            IntOp::Add
            | IntOp::Sub
            | IntOp::Mul
            | IntOp::And
            | IntOp::Or
            | IntOp::Xor
            | IntOp::Shl
            | IntOp::Shr
            | IntOp::Sar
            | IntOp::AddI
            | IntOp::SubI
            | IntOp::MulI
            | IntOp::AndI
            | IntOp::OrI
            | IntOp::XorI
            | IntOp::ShlI
            | IntOp::ShrI
            | IntOp::SarI => None,
        }
    }

    /// The opposite condition.
    pub(super) const fn not(self) -> Cond {
        match self {
            Cond::Eq => Cond::Ne,
            Cond::Ne => Cond::Eq,
            Cond::Lt => Cond::Ge,
            Cond::Ge => Cond::Lt,
            Cond::Le => Cond::Gt,
            Cond::Ltu => Cond::Geu,
            Cond::Geu => Cond::Ltu,
            Cond::Leu => Cond::Gtu,
            Cond::Gt => Cond::Le,
            Cond::Gtu => Cond::Leu,
        }
    }

    /// The x86 condition code (the low nibble of `jcc`, `setcc`, `cmovcc`).
    pub(super) const fn code(self) -> u8 {
        match self {
            Cond::Ltu => 0x2,
            Cond::Geu => 0x3,
            Cond::Eq => 0x4,
            Cond::Ne => 0x5,
            Cond::Leu => 0x6,
            Cond::Gtu => 0x7,
            Cond::Lt => 0xc,
            Cond::Ge => 0xd,
            Cond::Le => 0xe,
            Cond::Gt => 0xf,
        }
    }

    /// Jumps to `to` if the condition holds.
    pub(super) fn jcc(self, a: &mut CodeAssembler, to: CodeLabel) -> Result<(), IcedError> {
        match self {
            Cond::Eq => a.je(to),
            Cond::Ne => a.jne(to),
            Cond::Lt => a.jl(to),
            Cond::Ge => a.jge(to),
            Cond::Le => a.jle(to),
            Cond::Gt => a.jg(to),
            Cond::Ltu => a.jb(to),
            Cond::Geu => a.jae(to),
            Cond::Leu => a.jbe(to),
            Cond::Gtu => a.ja(to),
        }
    }

    /// dst = 1 if the condition holds, else 0 (byte register).
    pub(super) fn setcc(self, a: &mut CodeAssembler, dst: AsmRegister8) -> Result<(), IcedError> {
        match self {
            Cond::Eq => a.sete(dst),
            Cond::Ne => a.setne(dst),
            Cond::Lt => a.setl(dst),
            Cond::Ge => a.setge(dst),
            Cond::Le => a.setle(dst),
            Cond::Gt => a.setg(dst),
            Cond::Ltu => a.setb(dst),
            Cond::Geu => a.setae(dst),
            Cond::Leu => a.setbe(dst),
            Cond::Gtu => a.seta(dst),
        }
    }

    /// dst = src if the condition holds.
    pub(super) fn cmov(self, a: &mut CodeAssembler, dst: AsmRegister64, src: AsmRegister64) -> Result<(), IcedError> {
        match self {
            Cond::Eq => a.cmove(dst, src),
            Cond::Ne => a.cmovne(dst, src),
            Cond::Lt => a.cmovl(dst, src),
            Cond::Ge => a.cmovge(dst, src),
            Cond::Le => a.cmovle(dst, src),
            Cond::Gt => a.cmovg(dst, src),
            Cond::Ltu => a.cmovb(dst, src),
            Cond::Geu => a.cmovae(dst, src),
            Cond::Leu => a.cmovbe(dst, src),
            Cond::Gtu => a.cmova(dst, src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_their_opposites_are_x86s() {
        let all =
            [Cond::Eq, Cond::Ne, Cond::Lt, Cond::Ge, Cond::Le, Cond::Gt, Cond::Ltu, Cond::Geu, Cond::Leu, Cond::Gtu];
        for c in all {
            assert_eq!(c.not().not(), c);
            // x86 pairs each condition with its opposite in the low bit
            assert_eq!(c.code() ^ 1, c.not().code(), "{c:?}");
        }
    }
}
