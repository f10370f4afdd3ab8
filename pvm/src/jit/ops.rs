//! The guest's operations as the x86-64 ones that perform them: the forms
//! of the integer instructions (ALU operations, shifts, set-on-compare) and
//! condition codes. Each comes from an exhaustive match over its ISA class,
//! so a new opcode of the class must say what it is.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use crate::isa::{BranchOp, IntOp, Kind};

/// What an integer instruction does, and whether its second operand is an
/// immediate: one exhaustive map of the class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IntForm {
    Alu(Alu, bool),
    Shift(Shift, bool),
    /// 1 if the condition holds, else 0.
    Set(Cond, bool),
}

impl IntForm {
    pub(super) const fn of(op: IntOp) -> IntForm {
        use IntForm::{Alu as A, Set as C, Shift as S};
        match op {
            IntOp::Add => A(Alu::Add, false),
            IntOp::Sub => A(Alu::Sub, false),
            IntOp::Mul => A(Alu::Mul, false),
            IntOp::And => A(Alu::And, false),
            IntOp::Or => A(Alu::Or, false),
            IntOp::Xor => A(Alu::Xor, false),
            IntOp::AddI => A(Alu::Add, true),
            IntOp::SubI => A(Alu::Sub, true),
            IntOp::MulI => A(Alu::Mul, true),
            IntOp::AndI => A(Alu::And, true),
            IntOp::OrI => A(Alu::Or, true),
            IntOp::XorI => A(Alu::Xor, true),
            IntOp::Shl => S(Shift::Left, false),
            IntOp::Shr => S(Shift::Right, false),
            IntOp::Sar => S(Shift::RightSigned, false),
            IntOp::ShlI => S(Shift::Left, true),
            IntOp::ShrI => S(Shift::Right, true),
            IntOp::SarI => S(Shift::RightSigned, true),
            IntOp::Seq => C(Cond::Eq, false),
            IntOp::Sne => C(Cond::Ne, false),
            IntOp::Slt => C(Cond::Lt, false),
            IntOp::Sltu => C(Cond::Ltu, false),
            IntOp::Sle => C(Cond::Le, false),
            IntOp::Sleu => C(Cond::Leu, false),
            IntOp::SeqI => C(Cond::Eq, true),
            IntOp::SneI => C(Cond::Ne, true),
            IntOp::SltI => C(Cond::Lt, true),
            IntOp::SltuI => C(Cond::Ltu, true),
            IntOp::SleI => C(Cond::Le, true),
            IntOp::SleuI => C(Cond::Leu, true),
        }
    }

    /// The ALU operation of an instruction of any class, if it is one.
    pub(super) const fn alu(kind: Kind) -> Option<(Alu, bool)> {
        match kind {
            Kind::Int(op) => match IntForm::of(op) {
                IntForm::Alu(alu, imm) => Some((alu, imm)),
                IntForm::Shift(..) | IntForm::Set(..) => None,
            },
            _ => None,
        }
    }
}

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

/// A shift by a register's low 6 bits or by an immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shift {
    Left,
    /// Logical.
    Right,
    /// Arithmetic.
    RightSigned,
}

impl Shift {
    /// dst <<= cl (or >>=).
    pub(super) fn by_cl(self, a: &mut CodeAssembler, dst: AsmRegister64) -> Result<(), IcedError> {
        match self {
            Shift::Left => a.shl(dst, cl),
            Shift::Right => a.shr(dst, cl),
            Shift::RightSigned => a.sar(dst, cl),
        }
    }

    /// dst <<= n (or >>=).
    pub(super) fn by(self, a: &mut CodeAssembler, dst: AsmRegister64, n: u32) -> Result<(), IcedError> {
        match self {
            Shift::Left => a.shl(dst, n),
            Shift::Right => a.shr(dst, n),
            Shift::RightSigned => a.sar(dst, n),
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
