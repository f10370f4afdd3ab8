//! Integer arithmetic helpers of the translator: multiplication by
//! constants (shifts and `lea`), division and remainder (by a register, by
//! ±2^k, by a magic constant from `magic`).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::emit::Emitter;
use super::magic::{ConstDiv, UConstDiv};
use crate::isa::DivOp;

impl Emitter {
    /// dst = src * imm (wrapping), by 3, 5 and 9 with one `lea`, by 2^k
    /// with a shift (one cycle each, not the three of `imul`), and, into
    /// another register, by 2^k - 1 with a shift and a subtraction.
    pub(super) fn mul_imm(&mut self, dst: AsmRegister64, src: AsmRegister64, imm: i32) -> Result<(), IcedError> {
        let below_pow2 = i64::from(imm) > 3 && (i64::from(imm) + 1).count_ones() == 1;
        match imm {
            3 | 5 | 9 => self.a.lea(dst, qword_ptr(src + src * (imm - 1))),
            7 if src != dst => {
                self.a.lea(dst, qword_ptr(src * 8))?;
                self.a.sub(dst, src)
            }
            _ if src != dst && below_pow2 => {
                self.a.mov(dst, src)?;
                self.a.shl(dst, (i64::from(imm) + 1).trailing_zeros())?;
                self.a.sub(dst, src)
            }
            _ if imm > 1 && (imm & (imm - 1)) == 0 => {
                if src != dst {
                    self.a.mov(dst, src)?;
                }
                match imm.trailing_zeros() {
                    1 => self.a.add(dst, dst),
                    k => self.a.shl(dst, k),
                }
            }
            _ => self.a.imul_3(dst, src, imm),
        }
    }

    /// rax / rcx (rcx != 0) into guest register d, as `op` says.
    pub(super) fn divide(&mut self, op: DivOp, d: u8) -> Result<(), IcedError> {
        let signed = matches!(op, DivOp::DivS | DivOp::RemS);
        let rem = matches!(op, DivOp::RemS | DivOp::RemU);
        if signed {
            // x86 faults on MIN / -1; the ISA wraps: q = -x, r = 0.
            let mut normal = self.a.create_label();
            let mut done = self.a.create_label();
            self.a.cmp(rcx, -1)?;
            self.a.jne(normal)?;
            if rem {
                self.a.xor(edx, edx)?;
            } else {
                self.a.neg(rax)?;
            }
            self.a.jmp(done)?;
            self.bind(&mut normal)?;
            self.a.cqo()?;
            self.a.idiv(rcx)?;
            self.bind(&mut done)?;
        } else {
            self.a.xor(edx, edx)?;
            self.a.div(rcx)?;
        }
        self.put(d, if rem { rdx } else { rax })
    }

    /// rax = x / d for the constant behind `plan`; x (neither rax nor rdx)
    /// is kept, rdx clobbered.
    pub(super) fn div_by_constant(&mut self, plan: ConstDiv, x: AsmRegister64) -> Result<(), IcedError> {
        match plan {
            ConstDiv::Identity => self.a.mov(rax, x),
            ConstDiv::Negate => {
                self.a.mov(rax, x)?;
                self.a.neg(rax)
            }
            ConstDiv::Shift { k, negative } => {
                self.bias_pow2(x, k)?;
                self.a.add(rax, x)?;
                self.a.sar(rax, k)?;
                if negative {
                    self.a.neg(rax)?;
                }
                Ok(())
            }
            ConstDiv::Magic { m, s, add } => {
                self.a.mov(rax, m)?;
                self.a.imul(x)?;
                match add {
                    1 => self.a.add(rdx, x)?,
                    -1 => self.a.sub(rdx, x)?,
                    _ => {}
                }
                if s > 0 {
                    self.a.sar(rdx, s)?;
                }
                self.a.mov(rax, rdx)?;
                self.a.shr(rax, 63)?;
                self.a.add(rax, rdx)
            }
        }
    }

    /// rax = x / d (unsigned) as `plan` says (`magic::divu_by_constant`'s
    /// steps); clobbers rdx.
    pub(super) fn divu_by_constant(&mut self, plan: UConstDiv, x: AsmRegister64) -> Result<(), IcedError> {
        match plan {
            UConstDiv::Shift { k } => {
                self.a.mov(rax, x)?;
                if k > 0 {
                    self.a.shr(rax, k)?;
                }
                Ok(())
            }
            UConstDiv::Magic { m, l } => {
                // t = mulhi(x, m) in rdx; q = (t + ((x - t) >> 1)) >> (l - 1)
                self.a.mov(rax, m)?;
                self.a.mul(x)?;
                self.a.mov(rax, x)?;
                self.a.sub(rax, rdx)?;
                self.a.shr(rax, 1)?;
                self.a.add(rax, rdx)?;
                if l > 1 {
                    self.a.shr(rax, l - 1)?;
                }
                Ok(())
            }
        }
    }

    /// rax = 2^k - 1 if x < 0, else 0: the bias that makes an arithmetic
    /// shift round toward zero.
    fn bias_pow2(&mut self, x: AsmRegister64, k: u32) -> Result<(), IcedError> {
        self.a.mov(rax, x)?;
        if k > 1 {
            self.a.sar(rax, 63)?;
        }
        self.a.shr(rax, 64 - k)
    }

    /// Guest a = b / ±2^k (or b % ±2^k, `rem`), rounding toward zero, from
    /// b's own host register where it has one.
    pub(super) fn div_rem_pow2(&mut self, rem: bool, a: u8, b: u8, k: u32, negative: bool) -> Result<(), IcedError> {
        let x = self.get(b, rcx)?;
        self.bias_pow2(x, k)?;
        if rem {
            // n % ±2^k = n - ((n + bias) & -2^k)
            self.a.add(rax, x)?;
            let mask = -(1i64 << k);
            match i32::try_from(mask) {
                Ok(m) => self.a.and(rax, m)?,
                Err(_) => {
                    self.a.mov(rdx, mask)?;
                    self.a.and(rax, rdx)?;
                }
            }
            return match self.host(a) {
                Some(h) if h == x => self.a.sub(h, rax),
                Some(h) if h != rax => {
                    self.a.mov(h, x)?;
                    self.a.sub(h, rax)
                }
                _ => {
                    self.a.neg(rax)?;
                    self.a.add(rax, x)?;
                    self.put(a, rax)
                }
            };
        }
        match self.host(a) {
            Some(h) if h == x => {
                self.a.add(h, rax)?;
                self.a.sar(h, k)?;
                if negative {
                    self.a.neg(h)?;
                }
                Ok(())
            }
            _ => {
                self.a.add(rax, x)?;
                self.a.sar(rax, k)?;
                if negative {
                    self.a.neg(rax)?;
                }
                self.put(a, rax)
            }
        }
    }
}
