//! The translation of floating-point instructions (their XMM copies are
//! managed in `xmm`).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::emit::Emitter;
use crate::isa::{FloatBitsOp, FloatCompareOp, FloatOp, FloatToIntOp, Instr, IntToFloatOp};

impl Emitter {
    /// Float arithmetic, in XMM registers.
    pub(super) fn float_instr(&mut self, op: FloatOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let (a, b, c) = (i.a, i.b, i.c);
        let round = match op {
            FloatOp::FFloor => Some(9),
            FloatOp::FCeil => Some(10),
            FloatOp::FTrunc => Some(11),
            FloatOp::FNearest => Some(8),
            FloatOp::FSqrt => Some(0),
            _ => None,
        };
        if let Some(mode) = round {
            // (rounding mode | 8: no precision exception)
            if mode != 0 && !self.layout.cpu.round {
                let stub = self.interpret_stub(k);
                return self.a.jmp(stub);
            }
            let x = self.fsrc(b, &[])?;
            let xd = self.xmm_alloc(a, &[x]);
            if mode == 0 {
                self.a.sqrtsd(xd, x)?;
            } else {
                self.a.roundsd(xd, x, mode)?;
            }
            return self.fput(a, xd, k);
        }
        let x1 = self.fsrc(b, &[])?;
        let x2 = self.fsrc(c, &[x1])?;
        // Compute in a's copy (or in xmm0 when a is the second source and
        // would be overwritten before it is read).
        let xd = if a == c && a != b {
            xmm0
        } else {
            self.xmm_of(a).filter(|_| a == b).unwrap_or_else(|| self.xmm_alloc(a, &[x1, x2]))
        };
        if xd != x1 {
            self.a.movapd(xd, x1)?;
        }
        match op {
            FloatOp::FAdd => self.a.addsd(xd, x2)?,
            FloatOp::FSub => self.a.subsd(xd, x2)?,
            FloatOp::FMul => self.a.mulsd(xd, x2)?,
            FloatOp::FDiv => self.a.divsd(xd, x2)?,
            FloatOp::FMin | FloatOp::FMax => self.min_max(op == FloatOp::FMax, xd, x2)?,
            FloatOp::FSqrt | FloatOp::FFloor | FloatOp::FCeil | FloatOp::FTrunc | FloatOp::FNearest => {}
        }
        if xd == xmm0 {
            self.a.movapd(x2, xmm0)?;
            self.fput(a, x2, k)
        } else {
            self.fput(a, xd, k)
        }
    }

    /// Float comparisons to 0/1 (false when an operand is NaN).
    pub(super) fn float_compare(&mut self, op: FloatCompareOp, i: &Instr) -> Result<(), IcedError> {
        let x1 = self.fsrc(i.b, &[])?;
        let x2 = self.fsrc(i.c, &[x1])?;
        match op {
            FloatCompareOp::FEq => {
                self.a.ucomisd(x1, x2)?;
                self.a.sete(al)?;
                self.a.setnp(cl)?;
                self.a.and(al, cl)?;
            }
            FloatCompareOp::FLt => {
                self.a.ucomisd(x2, x1)?;
                self.a.seta(al)?;
            }
            FloatCompareOp::FLe => {
                self.a.ucomisd(x2, x1)?;
                self.a.setae(al)?;
            }
            FloatCompareOp::FNe => {
                self.a.ucomisd(x1, x2)?;
                self.a.setne(al)?;
                self.a.setp(cl)?;
                self.a.or(al, cl)?;
            }
        }
        self.a.movzx(rax, al)?;
        self.forget(i.a);
        self.put(i.a, rax)
    }

    /// `fneg`, `fabs`, `fcopysign`: the sign bit, in an integer register.
    pub(super) fn float_bits(&mut self, op: FloatBitsOp, i: &Instr) -> Result<(), IcedError> {
        self.load(rax, i.b)?;
        match op {
            FloatBitsOp::FNeg => self.a.btc(rax, 63)?,
            FloatBitsOp::FAbs => self.a.btr(rax, 63)?,
            FloatBitsOp::FCopysign => {
                self.load(rcx, i.c)?;
                self.a.btr(rax, 63)?;
                self.a.shr(rcx, 63)?;
                self.a.shl(rcx, 63)?;
                self.a.or(rax, rcx)?;
            }
        }
        self.put(i.a, rax)
    }

    /// xd = min(xd, x2) (or max) as WebAssembly's `fmin`/`fmax`: a NaN
    /// operand wins, quieted (what `addsd` returns), and -0 < +0 (the or,
    /// or the and, of equal operands' bits). `semantics::fmin` is the same.
    fn min_max(&mut self, max: bool, xd: AsmRegisterXmm, x2: AsmRegisterXmm) -> Result<(), IcedError> {
        let mut nan = self.a.create_label();
        let mut equal = self.a.create_label();
        let mut done = self.a.create_label();
        self.a.ucomisd(xd, x2)?;
        self.a.jp(nan)?;
        self.a.je(equal)?;
        if max {
            self.a.maxsd(xd, x2)?;
        } else {
            self.a.minsd(xd, x2)?;
        }
        self.a.jmp(done)?;
        self.bind(&mut equal)?;
        if max {
            self.a.andpd(xd, x2)?;
        } else {
            self.a.orpd(xd, x2)?;
        }
        self.a.jmp(done)?;
        self.bind(&mut nan)?;
        self.a.addsd(xd, x2)?;
        self.bind(&mut done).map(|_| ())
    }

    /// `itof`: into the destination's XMM copy.
    pub(super) fn int_to_float(&mut self, op: IntToFloatOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        match op {
            IntToFloatOp::IToF => {
                let r = self.get(i.b, rax)?;
                let xd = self.xmm_alloc(i.a, &[]);
                self.a.xorps(xd, xd)?; // no false dependency on its old value
                self.a.cvtsi2sd(xd, r)?;
                self.fput(i.a, xd, k)
            }
        }
    }

    /// `ftoi`.
    pub(super) fn float_to_int(&mut self, op: FloatToIntOp, i: &Instr) -> Result<(), IcedError> {
        match op {
            FloatToIntOp::FToI => self.ftoi(i.a, i.b),
        }
    }
}
