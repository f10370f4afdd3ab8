//! The guest's operations as the x86-64 ones that perform them: the forms
//! of the integer instructions (ALU operations, shifts, set-on-compare) and
//! condition codes. Each comes from an exhaustive match over its ISA class,
//! so a new opcode of the class must say what it is.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use crate::isa::{BranchOp, IntOp, Kind};

/// The width an integer operation works on: 64 bits, or the low 32 bits
/// with the result zero-extended (x86's 32-bit forms do exactly that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Width {
    W64,
    W32,
}

/// What an integer instruction does: one exhaustive map of the class, so a
/// new integer opcode must say which form it has. `bool`: the second
/// operand is the immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum IntForm {
    Alu(Alu, bool, Width),
    Shift(Shift, bool, Width),
    /// 1 if the condition holds, else 0.
    Set(Cond, bool, Width),
    /// A bit count of the source.
    Count(Count, Width),
    /// A sign or zero extension of the source.
    Ext(Ext),
}

impl IntForm {
    pub(super) const fn of(op: IntOp) -> IntForm {
        use IntForm::{Alu as A, Count as N, Ext as E, Set as C, Shift as S};
        use Width::{W32, W64};
        match op {
            IntOp::Add => A(Alu::Add, false, W64),
            IntOp::Sub => A(Alu::Sub, false, W64),
            IntOp::Mul => A(Alu::Mul, false, W64),
            IntOp::And => A(Alu::And, false, W64),
            IntOp::Or => A(Alu::Or, false, W64),
            IntOp::Xor => A(Alu::Xor, false, W64),
            IntOp::AddI => A(Alu::Add, true, W64),
            IntOp::SubI => A(Alu::Sub, true, W64),
            IntOp::MulI => A(Alu::Mul, true, W64),
            IntOp::AndI => A(Alu::And, true, W64),
            IntOp::OrI => A(Alu::Or, true, W64),
            IntOp::XorI => A(Alu::Xor, true, W64),
            IntOp::Add32 => A(Alu::Add, false, W32),
            IntOp::Sub32 => A(Alu::Sub, false, W32),
            IntOp::Mul32 => A(Alu::Mul, false, W32),
            IntOp::And32 => A(Alu::And, false, W32),
            IntOp::Or32 => A(Alu::Or, false, W32),
            IntOp::Xor32 => A(Alu::Xor, false, W32),
            IntOp::AddI32 => A(Alu::Add, true, W32),
            IntOp::SubI32 => A(Alu::Sub, true, W32),
            IntOp::MulI32 => A(Alu::Mul, true, W32),
            IntOp::AndI32 => A(Alu::And, true, W32),
            IntOp::OrI32 => A(Alu::Or, true, W32),
            IntOp::XorI32 => A(Alu::Xor, true, W32),
            IntOp::Shl => S(Shift::Left, false, W64),
            IntOp::Shr => S(Shift::Right, false, W64),
            IntOp::Sar => S(Shift::RightSigned, false, W64),
            IntOp::Rotl => S(Shift::RotateLeft, false, W64),
            IntOp::Rotr => S(Shift::RotateRight, false, W64),
            IntOp::ShlI => S(Shift::Left, true, W64),
            IntOp::ShrI => S(Shift::Right, true, W64),
            IntOp::SarI => S(Shift::RightSigned, true, W64),
            IntOp::RotlI => S(Shift::RotateLeft, true, W64),
            IntOp::Shl32 => S(Shift::Left, false, W32),
            IntOp::Shr32 => S(Shift::Right, false, W32),
            IntOp::Sar32 => S(Shift::RightSigned, false, W32),
            IntOp::Rotl32 => S(Shift::RotateLeft, false, W32),
            IntOp::Rotr32 => S(Shift::RotateRight, false, W32),
            IntOp::ShlI32 => S(Shift::Left, true, W32),
            IntOp::ShrI32 => S(Shift::Right, true, W32),
            IntOp::SarI32 => S(Shift::RightSigned, true, W32),
            IntOp::RotlI32 => S(Shift::RotateLeft, true, W32),
            IntOp::Seq => C(Cond::Eq, false, W64),
            IntOp::Sne => C(Cond::Ne, false, W64),
            IntOp::Slt => C(Cond::Lt, false, W64),
            IntOp::Sltu => C(Cond::Ltu, false, W64),
            IntOp::Sle => C(Cond::Le, false, W64),
            IntOp::Sleu => C(Cond::Leu, false, W64),
            IntOp::SeqI => C(Cond::Eq, true, W64),
            IntOp::SneI => C(Cond::Ne, true, W64),
            IntOp::SltI => C(Cond::Lt, true, W64),
            IntOp::SltuI => C(Cond::Ltu, true, W64),
            IntOp::SleI => C(Cond::Le, true, W64),
            IntOp::SleuI => C(Cond::Leu, true, W64),
            IntOp::Seq32 => C(Cond::Eq, false, W32),
            IntOp::Sne32 => C(Cond::Ne, false, W32),
            IntOp::Slt32 => C(Cond::Lt, false, W32),
            IntOp::Sltu32 => C(Cond::Ltu, false, W32),
            IntOp::Sle32 => C(Cond::Le, false, W32),
            IntOp::Sleu32 => C(Cond::Leu, false, W32),
            IntOp::SeqI32 => C(Cond::Eq, true, W32),
            IntOp::SneI32 => C(Cond::Ne, true, W32),
            IntOp::SltI32 => C(Cond::Lt, true, W32),
            IntOp::SltuI32 => C(Cond::Ltu, true, W32),
            IntOp::SleI32 => C(Cond::Le, true, W32),
            IntOp::SleuI32 => C(Cond::Leu, true, W32),
            IntOp::Clz => N(Count::LeadingZeros, W64),
            IntOp::Ctz => N(Count::TrailingZeros, W64),
            IntOp::Popcnt => N(Count::Ones, W64),
            IntOp::Clz32 => N(Count::LeadingZeros, W32),
            IntOp::Ctz32 => N(Count::TrailingZeros, W32),
            IntOp::Popcnt32 => N(Count::Ones, W32),
            IntOp::Sext8 => E(Ext::Sign8),
            IntOp::Sext16 => E(Ext::Sign16),
            IntOp::Sext32 => E(Ext::Sign32),
            IntOp::Zext32 => E(Ext::Zero32),
            IntOp::Sext8To32 => E(Ext::Sign8To32),
            IntOp::Sext16To32 => E(Ext::Sign16To32),
        }
    }

    /// The 64-bit ALU operation of an instruction of any class, if it is
    /// one (what if-conversion and the multiply-add fusion take).
    pub(super) const fn alu(kind: Kind) -> Option<(Alu, bool)> {
        match kind {
            Kind::Int(op) => match IntForm::of(op) {
                IntForm::Alu(alu, imm, Width::W64) => Some((alu, imm)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Bit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Count {
    LeadingZeros,
    TrailingZeros,
    Ones,
}

/// Extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ext {
    Sign8,
    Sign16,
    Sign32,
    Zero32,
    /// To 32 bits, zero-extended to 64.
    Sign8To32,
    Sign16To32,
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
    /// The register form's (a, b, c), its sources exchanged when the
    /// destination is the second one and the operation commutes, so the
    /// result is computed in place (`add r2, r1, r2` as `add r2, r1`).
    pub(super) fn commuted(self, i: &crate::isa::Instr) -> (u8, u8, u8) {
        let (a, b, c) = (i.a, i.b, i.c);
        if a == c && a != b && self != Alu::Sub {
            (a, c, b)
        } else {
            (a, b, c)
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

    /// The same on 32-bit registers (which zero-extend).
    pub(super) fn rr32(self, a: &mut CodeAssembler, dst: AsmRegister32, src: AsmRegister32) -> Result<(), IcedError> {
        match self {
            Alu::Add => a.add(dst, src),
            Alu::Sub => a.sub(dst, src),
            Alu::Mul => a.imul_2(dst, src),
            Alu::And => a.and(dst, src),
            Alu::Or => a.or(dst, src),
            Alu::Xor => a.xor(dst, src),
        }
    }

    /// dst = dst `op` imm, on a 32-bit register.
    pub(super) fn ri32(self, a: &mut CodeAssembler, dst: AsmRegister32, imm: i32) -> Result<(), IcedError> {
        match self {
            Alu::Add => a.add(dst, imm),
            Alu::Sub => a.sub(dst, imm),
            Alu::Mul => a.imul_3(dst, dst, imm),
            Alu::And => a.and(dst, imm),
            Alu::Or => a.or(dst, imm),
            Alu::Xor => a.xor(dst, imm),
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

/// A shift or rotate by a register's low bits (6, or 5 for 32-bit forms)
/// or by an immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shift {
    Left,
    /// Logical.
    Right,
    /// Arithmetic.
    RightSigned,
    RotateLeft,
    RotateRight,
}

impl Shift {
    /// dst <<= cl (or >>=, rotates).
    pub(super) fn by_cl(self, a: &mut CodeAssembler, dst: AsmRegister64) -> Result<(), IcedError> {
        match self {
            Shift::Left => a.shl(dst, cl),
            Shift::Right => a.shr(dst, cl),
            Shift::RightSigned => a.sar(dst, cl),
            Shift::RotateLeft => a.rol(dst, cl),
            Shift::RotateRight => a.ror(dst, cl),
        }
    }

    /// The same on a 32-bit register (which zero-extends).
    pub(super) fn by_cl32(self, a: &mut CodeAssembler, dst: AsmRegister32) -> Result<(), IcedError> {
        match self {
            Shift::Left => a.shl(dst, cl),
            Shift::Right => a.shr(dst, cl),
            Shift::RightSigned => a.sar(dst, cl),
            Shift::RotateLeft => a.rol(dst, cl),
            Shift::RotateRight => a.ror(dst, cl),
        }
    }

    /// dst <<= n (or >>=, rotates).
    pub(super) fn by(self, a: &mut CodeAssembler, dst: AsmRegister64, n: u32) -> Result<(), IcedError> {
        match self {
            Shift::Left => a.shl(dst, n),
            Shift::Right => a.shr(dst, n),
            Shift::RightSigned => a.sar(dst, n),
            Shift::RotateLeft => a.rol(dst, n),
            Shift::RotateRight => a.ror(dst, n),
        }
    }

    /// The same on a 32-bit register.
    pub(super) fn by32(self, a: &mut CodeAssembler, dst: AsmRegister32, n: u32) -> Result<(), IcedError> {
        match self {
            Shift::Left => a.shl(dst, n),
            Shift::Right => a.shr(dst, n),
            Shift::RightSigned => a.sar(dst, n),
            Shift::RotateLeft => a.rol(dst, n),
            Shift::RotateRight => a.ror(dst, n),
        }
    }
}

/// What a branch compares: its two registers (64 or 32 bits), or its first
/// register with zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compare {
    Regs(Width),
    Zero,
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
    /// The condition a branch is taken on, and what it compares.
    pub(super) const fn of_branch(op: BranchOp) -> (Cond, Compare) {
        match op {
            BranchOp::Beq => (Cond::Eq, Compare::Regs(Width::W64)),
            BranchOp::Bne => (Cond::Ne, Compare::Regs(Width::W64)),
            BranchOp::Blt => (Cond::Lt, Compare::Regs(Width::W64)),
            BranchOp::Bge => (Cond::Ge, Compare::Regs(Width::W64)),
            BranchOp::Bltu => (Cond::Ltu, Compare::Regs(Width::W64)),
            BranchOp::Bgeu => (Cond::Geu, Compare::Regs(Width::W64)),
            BranchOp::Blt32 => (Cond::Lt, Compare::Regs(Width::W32)),
            BranchOp::Bge32 => (Cond::Ge, Compare::Regs(Width::W32)),
            BranchOp::Beqz => (Cond::Eq, Compare::Zero),
            BranchOp::Bnez => (Cond::Ne, Compare::Zero),
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
