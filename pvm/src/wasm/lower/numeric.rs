//! Every WebAssembly numeric instruction as pvm instructions: one map,
//! exhaustive over the numeric operators the front end accepts.
//!
//! i32 values live zero-extended in 64-bit registers and f32 values as
//! their bits, also zero-extended, so i32 equality and unsigned order are
//! the 64-bit ones, extending an i32 unsigned and every reinterpretation
//! cost nothing.

use wasmparser::Operator;

use crate::isa::Opcode;

/// A comparison, which a following `br_if`, `if` or `select` may turn
/// into a branch instead of a 0/1 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpKind {
    Eq,
    Ne,
    LtS,
    LtU,
    GtS,
    GtU,
    LeS,
    LeU,
    GeS,
    GeU,
}

/// An integer comparison of 32- or 64-bit operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmp {
    pub kind: CmpKind,
    pub wide: bool,
}

impl Cmp {
    /// The comparison that is true when this one is false.
    pub fn negate(self) -> Cmp {
        use CmpKind::*;
        let kind = match self.kind {
            Eq => Ne,
            Ne => Eq,
            LtS => GeS,
            GeS => LtS,
            LtU => GeU,
            GeU => LtU,
            GtS => LeS,
            LeS => GtS,
            GtU => LeU,
            LeU => GtU,
        };
        Cmp { kind, wide: self.wide }
    }

    /// The set-on-compare instruction (register form, immediate form) and
    /// whether it takes the operands swapped.
    pub fn set_op(self) -> (Opcode, Opcode, bool) {
        use CmpKind::*;
        use Opcode as O;
        let w = self.wide;
        let pick = |a: (Opcode, Opcode), b: (Opcode, Opcode)| if w { a } else { b };
        let (rr, ri) = match self.kind {
            Eq => pick((O::Seq, O::SeqI), (O::Seq32, O::SeqI32)),
            Ne => pick((O::Sne, O::SneI), (O::Sne32, O::SneI32)),
            LtS | GtS => pick((O::Slt, O::SltI), (O::Slt32, O::SltI32)),
            LtU | GtU => pick((O::Sltu, O::SltuI), (O::Sltu32, O::SltuI32)),
            LeS | GeS => pick((O::Sle, O::SleI), (O::Sle32, O::SleI32)),
            LeU | GeU => pick((O::Sleu, O::SleuI), (O::Sleu32, O::SleuI32)),
        };
        (rr, ri, matches!(self.kind, GtS | GtU | GeS | GeU))
    }

    /// The branch taken when the comparison holds, and whether it takes
    /// the operands swapped. (Zero-extended i32 values compare equal and
    /// unsigned as 64-bit ones; signed order needs the 32-bit branches.)
    pub fn branch_op(self) -> (Opcode, bool) {
        use CmpKind::*;
        use Opcode as O;
        let (lt, ge) = if self.wide { (O::Blt, O::Bge) } else { (O::Blt32, O::Bge32) };
        match self.kind {
            Eq => (O::Beq, false),
            Ne => (O::Bne, false),
            LtS => (lt, false),
            GeS => (ge, false),
            GtS => (lt, true),
            LeS => (ge, true),
            LtU => (O::Bltu, false),
            GeU => (O::Bgeu, false),
            GtU => (O::Bltu, true),
            LeU => (O::Bgeu, true),
        }
    }
}

/// How a numeric operator is lowered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Num {
    /// rd = a op b. `ri`: the immediate form, for a constant b; `wide`: its
    /// immediate is sign-extended to 64 bits, so only constants that fit
    /// an i32 can use it (the 32-bit forms use the immediate's 32 bits).
    /// `swap`: the instruction takes (b, a); `commutes`: a constant a may
    /// trade places with b.
    Bin { rr: Opcode, ri: Option<Opcode>, wide: bool, swap: bool, commutes: bool },
    /// Rotate right: by a register, or as a rotate left by bits - n.
    Rotr { rr: Opcode, rotl_imm: Opcode, bits: u32 },
    /// rd = op a.
    Un(Opcode),
    /// The value's bits do not change.
    Same,
    /// An integer comparison.
    Cmp(Cmp),
    /// `eqz`: a comparison with zero.
    Eqz { wide: bool },
}

const fn bin(rr: Opcode, ri: Option<Opcode>, wide: bool, commutes: bool) -> Num {
    Num::Bin { rr, ri, wide, swap: false, commutes }
}

const fn float(rr: Opcode, swap: bool, commutes: bool) -> Num {
    Num::Bin { rr, ri: None, wide: true, swap, commutes }
}

const fn cmp(kind: CmpKind, wide: bool) -> Num {
    Num::Cmp(Cmp { kind, wide })
}

/// The lowering of `op`, if it is a numeric operator.
pub fn numeric(op: &Operator<'_>) -> Option<Num> {
    use CmpKind::*;
    use Opcode as O;
    use Operator as W;
    Some(match op {
        W::I32Eqz => Num::Eqz { wide: false },
        W::I64Eqz => Num::Eqz { wide: true },
        W::I32Eq => cmp(Eq, false),
        W::I32Ne => cmp(Ne, false),
        W::I32LtS => cmp(LtS, false),
        W::I32LtU => cmp(LtU, false),
        W::I32GtS => cmp(GtS, false),
        W::I32GtU => cmp(GtU, false),
        W::I32LeS => cmp(LeS, false),
        W::I32LeU => cmp(LeU, false),
        W::I32GeS => cmp(GeS, false),
        W::I32GeU => cmp(GeU, false),
        W::I64Eq => cmp(Eq, true),
        W::I64Ne => cmp(Ne, true),
        W::I64LtS => cmp(LtS, true),
        W::I64LtU => cmp(LtU, true),
        W::I64GtS => cmp(GtS, true),
        W::I64GtU => cmp(GtU, true),
        W::I64LeS => cmp(LeS, true),
        W::I64LeU => cmp(LeU, true),
        W::I64GeS => cmp(GeS, true),
        W::I64GeU => cmp(GeU, true),

        W::F32Eq => float(O::FEq32, false, true),
        W::F32Ne => float(O::FNe32, false, true),
        W::F32Lt => float(O::FLt32, false, false),
        W::F32Gt => float(O::FLt32, true, false),
        W::F32Le => float(O::FLe32, false, false),
        W::F32Ge => float(O::FLe32, true, false),
        W::F64Eq => float(O::FEq, false, true),
        W::F64Ne => float(O::FNe, false, true),
        W::F64Lt => float(O::FLt, false, false),
        W::F64Gt => float(O::FLt, true, false),
        W::F64Le => float(O::FLe, false, false),
        W::F64Ge => float(O::FLe, true, false),

        W::I32Clz => Num::Un(O::Clz32),
        W::I32Ctz => Num::Un(O::Ctz32),
        W::I32Popcnt => Num::Un(O::Popcnt32),
        W::I32Add => bin(O::Add32, Some(O::AddI32), false, true),
        W::I32Sub => bin(O::Sub32, Some(O::SubI32), false, false),
        W::I32Mul => bin(O::Mul32, Some(O::MulI32), false, true),
        W::I32DivS => bin(O::DivS32, None, false, false),
        W::I32DivU => bin(O::DivU32, None, false, false),
        W::I32RemS => bin(O::RemS32, None, false, false),
        W::I32RemU => bin(O::RemU32, None, false, false),
        W::I32And => bin(O::And32, Some(O::AndI32), false, true),
        W::I32Or => bin(O::Or32, Some(O::OrI32), false, true),
        W::I32Xor => bin(O::Xor32, Some(O::XorI32), false, true),
        W::I32Shl => bin(O::Shl32, Some(O::ShlI32), false, false),
        W::I32ShrS => bin(O::Sar32, Some(O::SarI32), false, false),
        W::I32ShrU => bin(O::Shr32, Some(O::ShrI32), false, false),
        W::I32Rotl => bin(O::Rotl32, Some(O::RotlI32), false, false),
        W::I32Rotr => Num::Rotr { rr: O::Rotr32, rotl_imm: O::RotlI32, bits: 32 },

        W::I64Clz => Num::Un(O::Clz),
        W::I64Ctz => Num::Un(O::Ctz),
        W::I64Popcnt => Num::Un(O::Popcnt),
        W::I64Add => bin(O::Add, Some(O::AddI), true, true),
        W::I64Sub => bin(O::Sub, Some(O::SubI), true, false),
        W::I64Mul => bin(O::Mul, Some(O::MulI), true, true),
        W::I64DivS => bin(O::DivST, None, true, false),
        W::I64DivU => bin(O::DivU, Some(O::DivUI), true, false),
        W::I64RemS => bin(O::RemS, Some(O::RemSI), true, false),
        W::I64RemU => bin(O::RemU, Some(O::RemUI), true, false),
        W::I64And => bin(O::And, Some(O::AndI), true, true),
        W::I64Or => bin(O::Or, Some(O::OrI), true, true),
        W::I64Xor => bin(O::Xor, Some(O::XorI), true, true),
        W::I64Shl => bin(O::Shl, Some(O::ShlI), true, false),
        W::I64ShrS => bin(O::Sar, Some(O::SarI), true, false),
        W::I64ShrU => bin(O::Shr, Some(O::ShrI), true, false),
        W::I64Rotl => bin(O::Rotl, Some(O::RotlI), true, false),
        W::I64Rotr => Num::Rotr { rr: O::Rotr, rotl_imm: O::RotlI, bits: 64 },

        W::F32Abs => Num::Un(O::FAbs32),
        W::F32Neg => Num::Un(O::FNeg32),
        W::F32Ceil => Num::Un(O::FCeil32),
        W::F32Floor => Num::Un(O::FFloor32),
        W::F32Trunc => Num::Un(O::FTrunc32),
        W::F32Nearest => Num::Un(O::FNearest32),
        W::F32Sqrt => Num::Un(O::FSqrt32),
        W::F32Add => float(O::FAdd32, false, false),
        W::F32Sub => float(O::FSub32, false, false),
        W::F32Mul => float(O::FMul32, false, false),
        W::F32Div => float(O::FDiv32, false, false),
        W::F32Min => float(O::FMin32, false, false),
        W::F32Max => float(O::FMax32, false, false),
        W::F32Copysign => float(O::FCopysign32, false, false),
        W::F64Abs => Num::Un(O::FAbs),
        W::F64Neg => Num::Un(O::FNeg),
        W::F64Ceil => Num::Un(O::FCeil),
        W::F64Floor => Num::Un(O::FFloor),
        W::F64Trunc => Num::Un(O::FTrunc),
        W::F64Nearest => Num::Un(O::FNearest),
        W::F64Sqrt => Num::Un(O::FSqrt),
        W::F64Add => float(O::FAdd, false, false),
        W::F64Sub => float(O::FSub, false, false),
        W::F64Mul => float(O::FMul, false, false),
        W::F64Div => float(O::FDiv, false, false),
        W::F64Min => float(O::FMin, false, false),
        W::F64Max => float(O::FMax, false, false),
        W::F64Copysign => float(O::FCopysign, false, false),

        W::I32WrapI64 => Num::Un(O::Zext32),
        W::I64ExtendI32S => Num::Un(O::Sext32),
        W::I64ExtendI32U
        | W::I32ReinterpretF32
        | W::F32ReinterpretI32
        | W::I64ReinterpretF64
        | W::F64ReinterpretI64 => Num::Same,
        W::I32Extend8S => Num::Un(O::Sext8To32),
        W::I32Extend16S => Num::Un(O::Sext16To32),
        W::I64Extend8S => Num::Un(O::Sext8),
        W::I64Extend16S => Num::Un(O::Sext16),
        W::I64Extend32S => Num::Un(O::Sext32),
        W::I32TruncF32S => Num::Un(O::I32TruncF32S),
        W::I32TruncF32U => Num::Un(O::I32TruncF32U),
        W::I32TruncF64S => Num::Un(O::I32TruncF64S),
        W::I32TruncF64U => Num::Un(O::I32TruncF64U),
        W::I64TruncF32S => Num::Un(O::I64TruncF32S),
        W::I64TruncF32U => Num::Un(O::I64TruncF32U),
        W::I64TruncF64S => Num::Un(O::I64TruncF64S),
        W::I64TruncF64U => Num::Un(O::I64TruncF64U),
        W::I32TruncSatF32S => Num::Un(O::I32TruncSatF32S),
        W::I32TruncSatF32U => Num::Un(O::I32TruncSatF32U),
        W::I32TruncSatF64S => Num::Un(O::I32TruncSatF64S),
        W::I32TruncSatF64U => Num::Un(O::I32TruncSatF64U),
        W::I64TruncSatF32S => Num::Un(O::I64TruncSatF32S),
        W::I64TruncSatF32U => Num::Un(O::I64TruncSatF32U),
        W::I64TruncSatF64S => Num::Un(O::FToI),
        W::I64TruncSatF64U => Num::Un(O::I64TruncSatF64U),
        W::F32ConvertI32S => Num::Un(O::F32ConvertI32S),
        W::F32ConvertI32U => Num::Un(O::F32ConvertI32U),
        W::F32ConvertI64S => Num::Un(O::F32ConvertI64S),
        W::F32ConvertI64U => Num::Un(O::F32ConvertI64U),
        W::F64ConvertI32S => Num::Un(O::F64ConvertI32S),
        W::F64ConvertI32U => Num::Un(O::F64ConvertI32U),
        W::F64ConvertI64S => Num::Un(O::IToF),
        W::F64ConvertI64U => Num::Un(O::F64ConvertI64U),
        W::F32DemoteF64 => Num::Un(O::F32DemoteF64),
        W::F64PromoteF32 => Num::Un(O::F64PromoteF32),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negation_is_an_involution_and_flips_the_branch() {
        use CmpKind::*;
        for kind in [Eq, Ne, LtS, LtU, GtS, GtU, LeS, LeU, GeS, GeU] {
            for wide in [false, true] {
                let c = Cmp { kind, wide };
                assert_eq!(c.negate().negate(), c);
                assert_ne!(c.negate().branch_op(), c.branch_op());
            }
        }
    }

    #[test]
    fn every_mvp_numeric_operator_has_a_lowering() {
        // Sample the table through the operators' semantics: see the
        // front end's differential tests for the values.
        assert_eq!(numeric(&Operator::I64DivS), Some(bin(Opcode::DivST, None, true, false)));
        assert_eq!(numeric(&Operator::I64ExtendI32U), Some(Num::Same));
        assert_eq!(numeric(&Operator::Nop), None);
    }
}
