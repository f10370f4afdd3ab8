//! The translation of moves, integer arithmetic and division.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::block::{low16, low8, r32};
use super::emit::{ctx_reg, Emitter};
use super::magic;
use super::ops::{Alu, Count, Ext, IntForm, Width};
use crate::isa::{DivOp, Instr, IntOp, MoveOp};

impl Emitter {
    /// `nop`, `mov`, `li`, `lih`.
    pub(super) fn move_instr(&mut self, op: MoveOp, i: &Instr) -> Result<(), IcedError> {
        let (a, b, imm) = (i.a, i.b, i.imm);
        match op {
            MoveOp::Nop => Ok(()),
            MoveOp::Mov => match self.host(a) {
                // (from the context straight into the host register)
                Some(h) => self.load(h, b),
                None => {
                    let s = self.get(b, rax)?;
                    self.put(a, s)
                }
            },
            MoveOp::Li => match self.host(a) {
                Some(h) => self.a.mov(h, i64::from(imm)),
                None => self.a.mov(ctx_reg(a), imm),
            },
            MoveOp::Lih => {
                self.load(rax, a)?;
                self.a.mov(eax, eax)?;
                self.a.mov(rcx, u64::from(imm as u32) << 32)?;
                self.a.or(rax, rcx)?;
                self.put(a, rax)
            }
        }
    }

    /// Integer arithmetic, logic, shifts, rotates, comparisons, bit counts
    /// and extensions.
    pub(super) fn int_instr(&mut self, op: IntOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        match IntForm::of(op) {
            IntForm::Alu(alu, true, Width::W64) => self.alu_ri(alu, i, k),
            IntForm::Alu(alu, false, Width::W64) => self.alu_rr(alu, i),
            IntForm::Alu(alu, imm, Width::W32) => self.alu32(alu, imm, i),
            IntForm::Set(cond, imm, width) => {
                // Compared where the operands are; the 0/1 straight into
                // the destination's host register when it has one.
                let x = self.get(i.b, rax)?;
                match (imm, width) {
                    (true, Width::W64) => self.a.cmp(x, i.imm)?,
                    (true, Width::W32) => self.a.cmp(r32(x), i.imm)?,
                    (false, Width::W64) => {
                        let y = self.get(i.c, rcx)?;
                        self.a.cmp(x, y)?;
                    }
                    (false, Width::W32) => {
                        let y = self.get(i.c, rcx)?;
                        self.a.cmp(r32(x), r32(y))?;
                    }
                }
                cond.setcc(&mut self.a, al)?;
                let dst = self.host(i.a).unwrap_or(rax);
                self.a.movzx(dst, al)?;
                self.put(i.a, dst)
            }
            IntForm::Shift(shift, imm, width) => {
                self.load(rax, i.b)?;
                match (imm, width) {
                    (true, Width::W64) => shift.by(&mut self.a, rax, (i.imm & 63) as u32)?,
                    (true, Width::W32) => shift.by32(&mut self.a, eax, (i.imm & 31) as u32)?,
                    (false, w) => {
                        self.load(rcx, i.c)?;
                        if w == Width::W64 {
                            shift.by_cl(&mut self.a, rax)?;
                        } else {
                            shift.by_cl32(&mut self.a, eax)?;
                        }
                    }
                }
                self.put(i.a, rax)
            }
            IntForm::Count(count, width) => self.count(count, width, i, k),
            IntForm::Ext(ext) => {
                let x = self.get(i.b, rax)?;
                let dst = self.host(i.a).unwrap_or(rax);
                match ext {
                    Ext::Sign8 => self.a.movsx(dst, low8(x))?,
                    Ext::Sign16 => self.a.movsx(dst, low16(x))?,
                    Ext::Sign32 => self.a.movsxd(dst, r32(x))?,
                    Ext::Zero32 => self.a.mov(r32(dst), r32(x))?,
                    Ext::Sign8To32 => self.a.movsx(r32(dst), low8(x))?,
                    Ext::Sign16To32 => self.a.movsx(r32(dst), low16(x))?,
                }
                self.put(i.a, dst)
            }
        }
    }

    /// The 32-bit ALU forms, in the destination's host register where it
    /// is not the second source.
    fn alu32(&mut self, alu: Alu, imm: bool, i: &Instr) -> Result<(), IcedError> {
        let (a, b, c) = if imm { (i.a, i.b, i.c) } else { alu.commuted(i) };
        let dst = match self.host(a) {
            Some(h) if imm || a == b || a != c => h,
            _ => rax,
        };
        self.load(dst, b)?;
        if imm {
            alu.ri32(&mut self.a, r32(dst), i.imm)?;
        } else {
            let x = self.get(c, rcx)?;
            alu.rr32(&mut self.a, r32(dst), r32(x))?;
        }
        // (an operation on a 32-bit register zero-extends it)
        self.put(a, dst)
    }

    /// clz, ctz, popcnt: one instruction where the CPU has it, the
    /// interpreter otherwise.
    fn count(&mut self, count: Count, width: Width, i: &Instr, k: usize) -> Result<(), IcedError> {
        let has = match count {
            Count::LeadingZeros => self.layout.cpu.lzcnt,
            Count::TrailingZeros => self.layout.cpu.tzcnt,
            Count::Ones => self.layout.cpu.popcnt,
        };
        if !has {
            let stub = self.interpret_stub(k);
            return self.a.jmp(stub);
        }
        let x = self.get(i.b, rcx)?;
        match (count, width) {
            (Count::LeadingZeros, Width::W64) => self.a.lzcnt(rax, x)?,
            (Count::TrailingZeros, Width::W64) => self.a.tzcnt(rax, x)?,
            (Count::Ones, Width::W64) => self.a.popcnt(rax, x)?,
            (Count::LeadingZeros, Width::W32) => self.a.lzcnt(eax, r32(x))?,
            (Count::TrailingZeros, Width::W32) => self.a.tzcnt(eax, r32(x))?,
            (Count::Ones, Width::W32) => self.a.popcnt(eax, r32(x))?,
        }
        self.put(i.a, rax)
    }

    /// The register forms of add, sub, mul, and, or, xor.
    fn alu_rr(&mut self, alu: Alu, i: &Instr) -> Result<(), IcedError> {
        let (a, b, c) = alu.commuted(i);
        // Work in the destination's own host register unless it is also
        // the second source.
        let dst = match self.host(a) {
            Some(h) if a == b || a != c => h,
            _ => rax,
        };
        self.load(dst, b)?;
        let x = self.get(c, rcx)?;
        alu.rr(&mut self.a, dst, x)?;
        self.put(a, dst)
    }

    /// The immediate forms: in place, as a `lea`, a multiply by shifts, or
    /// fused with the `addi` after a `muli` (the plan merges it).
    fn alu_ri(&mut self, alu: Alu, i: &Instr, k: usize) -> Result<(), IcedError> {
        let (a, b, imm) = (i.a, i.b, i.imm);
        if let (Some(h), true) = (self.host(a), a == b && matches!(alu, Alu::Add | Alu::Sub)) {
            return alu.ri(&mut self.a, h, imm);
        }
        // Straight into the destination's host register when it has one.
        let dst = self.host(a).unwrap_or(rax);
        let src = self.get(b, rax)?;
        if let Some(add) = self.plan.steps[k].fused_add {
            // x * 3 + c and the like: one lea
            match imm {
                2 | 4 | 8 => self.a.lea(dst, qword_ptr(src * imm + add))?,
                _ => self.a.lea(dst, qword_ptr(src + src * (imm - 1) + add))?,
            }
            return self.put(a, dst);
        }
        match alu {
            Alu::Add if src != dst => self.a.lea(dst, qword_ptr(src + imm))?,
            Alu::Sub if src != dst && imm != i32::MIN => self.a.lea(dst, qword_ptr(src - imm))?,
            Alu::Mul => self.mul_imm(dst, src, imm)?,
            Alu::Add | Alu::Sub | Alu::And | Alu::Or | Alu::Xor => {
                if src != dst {
                    self.a.mov(dst, src)?;
                }
                alu.ri(&mut self.a, dst, imm)?;
            }
        }
        self.put(a, dst)
    }

    /// Division and remainder: a zero divisor goes to the interpreter
    /// (which traps); constant divisors multiply by a magic number or shift.
    pub(super) fn div_instr(&mut self, op: DivOp, i: &Instr, k: usize) -> Result<(), IcedError> {
        let (a, b, c, imm) = (i.a, i.b, i.c, i.imm);
        match op {
            DivOp::DivS | DivOp::DivU | DivOp::RemS | DivOp::RemU => {
                self.load(rcx, c)?;
                let stub = self.interpret_stub(k);
                self.a.test(rcx, rcx)?;
                self.a.jz(stub)?;
                self.load(rax, b)?;
                self.divide(op, a)
            }
            DivOp::DivUI | DivOp::RemUI => self.div_unsigned_const(op == DivOp::RemUI, a, b, imm, k),
            DivOp::DivSI | DivOp::RemSI => {
                if op == DivOp::RemSI && self.plan.steps[k].deferred_remainder {
                    return Ok(());
                }
                self.div_signed_const(op == DivOp::RemSI, a, b, imm, k)
            }
            DivOp::DivST => {
                // MIN / -1 traps here: the interpreter reports it.
                self.load(rcx, c)?;
                let stub = self.interpret_stub(k);
                self.a.test(rcx, rcx)?;
                self.a.jz(stub)?;
                self.load(rax, b)?;
                let mut normal = self.a.create_label();
                self.a.cmp(rcx, -1)?;
                self.a.jne(normal)?;
                self.a.mov(rdx, i64::MIN)?;
                self.a.cmp(rax, rdx)?;
                self.a.je(stub)?;
                self.bind(&mut normal)?;
                self.a.cqo()?;
                self.a.idiv(rcx)?;
                self.put(a, rax)
            }
            DivOp::DivS32 | DivOp::DivU32 | DivOp::RemS32 | DivOp::RemU32 => {
                self.load(rcx, c)?;
                let stub = self.interpret_stub(k);
                self.a.test(ecx, ecx)?;
                self.a.jz(stub)?;
                self.load(rax, b)?;
                self.divide32(op, a, stub)
            }
        }
    }

    /// eax / ecx (ecx != 0), 32 bits, into guest register d: a signed
    /// `MIN / -1` goes to `overflow` (it traps), `MIN % -1` is 0.
    fn divide32(&mut self, op: DivOp, d: u8, overflow: CodeLabel) -> Result<(), IcedError> {
        let rem = matches!(op, DivOp::RemS32 | DivOp::RemU32);
        if matches!(op, DivOp::DivS32 | DivOp::RemS32) {
            let mut normal = self.a.create_label();
            let mut done = self.a.create_label();
            self.a.cmp(ecx, -1)?;
            self.a.jne(normal)?;
            if rem {
                self.a.xor(edx, edx)?;
            } else {
                self.a.cmp(eax, i32::MIN)?;
                self.a.je(overflow)?;
                self.a.neg(eax)?;
            }
            self.a.jmp(done)?;
            self.bind(&mut normal)?;
            self.a.cdq()?;
            self.a.idiv(ecx)?;
            self.bind(&mut done)?;
        } else {
            self.a.xor(edx, edx)?;
            self.a.div(ecx)?;
        }
        // (32-bit results, zero-extended by the operations that made them)
        if rem {
            self.a.mov(edx, edx)?;
            self.put(d, rdx)
        } else {
            self.a.mov(eax, eax)?;
            self.put(d, rax)
        }
    }

    /// a = b / imm or b % imm (signed), imm a constant.
    fn div_signed_const(&mut self, rem: bool, a: u8, b: u8, imm: i32, k: usize) -> Result<(), IcedError> {
        let Some(plan) = magic::plan(i64::from(imm)) else {
            let stub = self.interpret_stub(k);
            return self.a.jmp(stub);
        };
        if let magic::ConstDiv::Shift { k, negative } = plan {
            return self.div_rem_pow2(rem, a, b, k, negative);
        }
        // From b's own host register where it has one.
        let x = self.get(b, rcx)?;
        self.div_by_constant(plan, x)?;
        if !rem {
            return self.put(a, rax);
        }
        self.remainder_of_quotient(a, x, imm)
    }

    /// a = b / imm or b % imm (unsigned), imm a constant (sign-extended,
    /// as the interpreter reads it): a multiply and shifts, no `div`.
    fn div_unsigned_const(&mut self, rem: bool, a: u8, b: u8, imm: i32, k: usize) -> Result<(), IcedError> {
        let Some(plan) = magic::plan_unsigned(i64::from(imm) as u64) else {
            let stub = self.interpret_stub(k);
            return self.a.jmp(stub);
        };
        let x = self.get(b, rcx)?;
        if let (true, magic::UConstDiv::Shift { .. }) = (rem, plan) {
            // n % 2^k = n & (2^k - 1); a power of two from an immediate is
            // at most 2^30
            self.a.mov(rax, x)?;
            self.a.and(rax, imm - 1)?;
            return self.put(a, rax);
        }
        self.divu_by_constant(plan, x)?;
        if !rem {
            return self.put(a, rax);
        }
        self.remainder_of_quotient(a, x, imm)
    }

    /// Guest a = x - rax * imm: the remainder, rax holding the quotient of
    /// x by imm.
    fn remainder_of_quotient(&mut self, a: u8, x: AsmRegister64, imm: i32) -> Result<(), IcedError> {
        // (rdx is free again)
        self.mul_imm(rdx, rax, imm)?;
        match self.host(a) {
            Some(h) if h == x => self.a.sub(h, rdx),
            Some(h) => {
                self.a.mov(h, x)?;
                self.a.sub(h, rdx)
            }
            None => {
                self.a.mov(rax, x)?;
                self.a.sub(rax, rdx)?;
                self.put(a, rax)
            }
        }
    }
}
