//! The translation of f32 arithmetic and comparisons (f32 bits in the low
//! 32 bits of a register: through xmm0 and xmm1, no XMM copies kept) and
//! of the conversions between integers, f32 and f64. What SSE computes is
//! what `semantics` says, bit for bit; the rare cases SSE cannot decide in
//! one instruction (a trapping or saturating truncation out of range, an
//! unsigned 64-bit value past 2^63) go to the interpreter.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::block::r32;
use super::emit::Emitter;
use crate::isa::{ConvertOp, Float32Op, Instr};

impl Emitter {
    /// f32 arithmetic, min/max, roundings, sign bits and comparisons.
    pub(super) fn float32_instr(&mut self, op: Float32Op, i: &Instr, k: usize) -> Result<(), IcedError> {
        // Sign bit operations, in an integer register.
        if matches!(op, Float32Op::FAbs32 | Float32Op::FNeg32 | Float32Op::FCopysign32) {
            self.load(rax, i.b)?;
            match op {
                Float32Op::FAbs32 => self.a.and(eax, 0x7fff_ffff)?,
                Float32Op::FNeg32 => self.a.xor(eax, i32::MIN)?,
                _ => {
                    self.load(rcx, i.c)?;
                    self.a.and(eax, 0x7fff_ffff)?;
                    self.a.and(ecx, i32::MIN)?;
                    self.a.or(eax, ecx)?;
                }
            }
            return self.put(i.a, rax);
        }
        let round = match op {
            Float32Op::FFloor32 => Some(9),
            Float32Op::FCeil32 => Some(10),
            Float32Op::FTrunc32 => Some(11),
            Float32Op::FNearest32 => Some(8),
            _ => None,
        };
        if round.is_some() && !self.layout.cpu.round {
            let stub = self.interpret_stub(k);
            return self.a.jmp(stub);
        }
        let x = self.get(i.b, rax)?;
        self.a.movd(xmm0, r32(x))?;
        if i.op.info().format == crate::isa::Format::R3 {
            let y = self.get(i.c, rcx)?;
            self.a.movd(xmm1, r32(y))?;
        }
        match op {
            Float32Op::FAdd32 => self.a.addss(xmm0, xmm1)?,
            Float32Op::FSub32 => self.a.subss(xmm0, xmm1)?,
            Float32Op::FMul32 => self.a.mulss(xmm0, xmm1)?,
            Float32Op::FDiv32 => self.a.divss(xmm0, xmm1)?,
            Float32Op::FSqrt32 => self.a.sqrtss(xmm0, xmm0)?,
            Float32Op::FMin32 | Float32Op::FMax32 => self.min_max32(op == Float32Op::FMax32)?,
            Float32Op::FFloor32 | Float32Op::FCeil32 | Float32Op::FTrunc32 | Float32Op::FNearest32 => {
                self.a.roundss(xmm0, xmm0, round.unwrap_or(8))?
            }
            Float32Op::FEq32 | Float32Op::FNe32 | Float32Op::FLt32 | Float32Op::FLe32 => {
                return self.compare32(op, i.a);
            }
            Float32Op::FAbs32 | Float32Op::FNeg32 | Float32Op::FCopysign32 => {}
        }
        self.a.movd(eax, xmm0)?;
        self.put(i.a, rax)
    }

    /// xmm0 = min(xmm0, xmm1) or max, as `semantics::fmin32`.
    fn min_max32(&mut self, max: bool) -> Result<(), IcedError> {
        let mut nan = self.a.create_label();
        let mut equal = self.a.create_label();
        let mut done = self.a.create_label();
        self.a.ucomiss(xmm0, xmm1)?;
        self.a.jp(nan)?;
        self.a.je(equal)?;
        if max {
            self.a.maxss(xmm0, xmm1)?;
        } else {
            self.a.minss(xmm0, xmm1)?;
        }
        self.a.jmp(done)?;
        self.bind(&mut equal)?;
        if max {
            self.a.andps(xmm0, xmm1)?;
        } else {
            self.a.orps(xmm0, xmm1)?;
        }
        self.a.jmp(done)?;
        self.bind(&mut nan)?;
        self.a.addss(xmm0, xmm1)?;
        self.bind(&mut done).map(|_| ())
    }

    /// a = xmm0 `op` xmm1 (f32), 0 or 1; false when either is NaN (`fne32`: true).
    fn compare32(&mut self, op: Float32Op, a: u8) -> Result<(), IcedError> {
        match op {
            Float32Op::FEq32 => {
                self.a.ucomiss(xmm0, xmm1)?;
                self.a.sete(al)?;
                self.a.setnp(cl)?;
                self.a.and(al, cl)?;
            }
            Float32Op::FNe32 => {
                self.a.ucomiss(xmm0, xmm1)?;
                self.a.setne(al)?;
                self.a.setp(cl)?;
                self.a.or(al, cl)?;
            }
            Float32Op::FLt32 => {
                self.a.ucomiss(xmm1, xmm0)?;
                self.a.seta(al)?;
            }
            _ => {
                self.a.ucomiss(xmm1, xmm0)?;
                self.a.setae(al)?;
            }
        }
        self.a.movzx(rax, al)?;
        self.put(a, rax)
    }

    /// Conversions between integers, f32 and f64.
    pub(super) fn convert_instr(&mut self, op: ConvertOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let x = self.get(i.b, rcx)?;
        match op {
            // Truncations: SSE's, unless the result is its "indefinite"
            // value or out of the unsigned range: then the interpreter
            // decides (a trap, a saturated value, or the exact value).
            ConvertOp::I32TruncF32S | ConvertOp::I32TruncSatF32S => {
                self.a.movd(xmm0, r32(x))?;
                self.a.cvttss2si(eax, xmm0)?;
                self.unless_indefinite32(k)?;
            }
            ConvertOp::I32TruncF64S | ConvertOp::I32TruncSatF64S => {
                self.a.movq(xmm0, x)?;
                self.a.cvttsd2si(eax, xmm0)?;
                self.unless_indefinite32(k)?;
            }
            ConvertOp::I64TruncF32S | ConvertOp::I64TruncSatF32S => {
                self.a.movd(xmm0, r32(x))?;
                self.a.cvttss2si(rax, xmm0)?;
                self.unless_indefinite64(k)?;
            }
            ConvertOp::I64TruncF64S => {
                self.a.movq(xmm0, x)?;
                self.a.cvttsd2si(rax, xmm0)?;
                self.unless_indefinite64(k)?;
            }
            ConvertOp::I32TruncF32U | ConvertOp::I32TruncSatF32U => {
                self.a.movd(xmm0, r32(x))?;
                self.a.cvttss2si(rax, xmm0)?;
                self.unless_above(u64::from(u32::MAX), k)?;
            }
            ConvertOp::I32TruncF64U | ConvertOp::I32TruncSatF64U => {
                self.a.movq(xmm0, x)?;
                self.a.cvttsd2si(rax, xmm0)?;
                self.unless_above(u64::from(u32::MAX), k)?;
            }
            ConvertOp::I64TruncF32U | ConvertOp::I64TruncSatF32U => {
                self.a.movd(xmm0, r32(x))?;
                self.a.cvttss2si(rax, xmm0)?;
                self.unless_above(i64::MAX as u64, k)?;
            }
            ConvertOp::I64TruncF64U | ConvertOp::I64TruncSatF64U => {
                self.a.movq(xmm0, x)?;
                self.a.cvttsd2si(rax, xmm0)?;
                self.unless_above(i64::MAX as u64, k)?;
            }
            ConvertOp::F32ConvertI32S => self.int_to(true, false, r32(x).into(), k)?,
            ConvertOp::F64ConvertI32S => self.int_to(false, false, r32(x).into(), k)?,
            ConvertOp::F32ConvertI32U | ConvertOp::F64ConvertI32U => {
                // a u32 is exact as a non-negative i64
                self.a.mov(eax, r32(x))?;
                self.int_to(op == ConvertOp::F32ConvertI32U, false, rax.into(), k)?;
            }
            ConvertOp::F32ConvertI64S => self.int_to(true, false, x.into(), k)?,
            ConvertOp::F32ConvertI64U | ConvertOp::F64ConvertI64U => {
                self.int_to(op == ConvertOp::F32ConvertI64U, true, x.into(), k)?
            }
            ConvertOp::F32DemoteF64 => {
                self.a.movq(xmm0, x)?;
                self.a.cvtsd2ss(xmm0, xmm0)?;
                self.a.movd(eax, xmm0)?;
            }
            ConvertOp::F64PromoteF32 => {
                self.a.movd(xmm0, r32(x))?;
                self.a.cvtss2sd(xmm0, xmm0)?;
                self.a.movq(rax, xmm0)?;
            }
        }
        self.put(i.a, rax)
    }

    /// Goes to the interpreter if eax is 0x8000_0000 (SSE's answer for
    /// NaN and out of range; also the exact value of -2^31), and
    /// zero-extends it otherwise (it is, as a 32-bit result).
    fn unless_indefinite32(&mut self, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        self.a.cmp(eax, i32::MIN)?;
        self.a.je(stub)
    }

    /// The same for rax and 0x8000_0000_0000_0000.
    fn unless_indefinite64(&mut self, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        self.a.mov(rdx, i64::MIN)?;
        self.a.cmp(rax, rdx)?;
        self.a.je(stub)
    }

    /// Goes to the interpreter if rax, read as unsigned, is above `max`
    /// (a negative truncation, SSE's indefinite value, or out of range).
    fn unless_above(&mut self, max: u64, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        self.a.mov(rdx, max)?;
        self.a.cmp(rax, rdx)?;
        self.a.ja(stub)
    }

    /// rax = the bits of `src` as an f32 (`to_f32`) or f64; `unsigned`: a
    /// 64-bit source with its top bit set goes to the interpreter.
    fn int_to(&mut self, to_f32: bool, unsigned: bool, src: IntSrc, k: usize) -> Result<(), IcedError> {
        if let (true, IntSrc::R64(r)) = (unsigned, src) {
            let stub = self.interpret_stub(k);
            self.a.test(r, r)?;
            self.a.js(stub)?;
        }
        self.a.xorps(xmm0, xmm0)?; // no false dependency on its old value
        match (src, to_f32) {
            (IntSrc::R32(r), true) => self.a.cvtsi2ss(xmm0, r)?,
            (IntSrc::R32(r), false) => self.a.cvtsi2sd(xmm0, r)?,
            (IntSrc::R64(r), true) => self.a.cvtsi2ss(xmm0, r)?,
            (IntSrc::R64(r), false) => self.a.cvtsi2sd(xmm0, r)?,
        }
        if to_f32 {
            self.a.movd(eax, xmm0)
        } else {
            self.a.movq(rax, xmm0)
        }
    }
}

/// An integer conversion's source register, 32 or 64 bits.
#[derive(Clone, Copy)]
enum IntSrc {
    R32(AsmRegister32),
    R64(AsmRegister64),
}

impl From<AsmRegister32> for IntSrc {
    fn from(r: AsmRegister32) -> Self {
        IntSrc::R32(r)
    }
}

impl From<AsmRegister64> for IntSrc {
    fn from(r: AsmRegister64) -> Self {
        IntSrc::R64(r)
    }
}
