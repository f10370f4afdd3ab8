//! XMM copies of guest registers used as floats: loaded once, kept across
//! a loop's back-edge when pinned, and, when nothing can see it before the
//! register is written again, the only copy of a float result; plus the
//! float-to-integer conversion.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::emit::{ctx_reg, Emitter};
use crate::isa::{Class, Format, Opcode};

/// XMM registers that cache guest registers used as floats (xmm0 and xmm1
/// are scratch).
pub(super) const XMM_POOL: [AsmRegisterXmm; 14] =
    [xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15];

impl Emitter {
    pub(super) fn xmm_of(&self, g: u8) -> Option<AsmRegisterXmm> {
        self.xmm.iter().position(|&c| c == Some(g)).map(|i| XMM_POOL[i])
    }

    /// Drops the XMM copy of guest register g (g is being written).
    pub(super) fn forget(&mut self, g: u8) {
        for (c, sole) in self.xmm.iter_mut().zip(&mut self.sole) {
            if *c == Some(g) {
                *c = None;
                *sole = false;
            }
        }
    }

    /// An XMM register to hold guest register g, not one of `keep`.
    pub(super) fn xmm_alloc(&mut self, g: u8, keep: &[AsmRegisterXmm]) -> AsmRegisterXmm {
        if let Some(i) = (0..XMM_POOL.len()).find(|&i| self.pinned[i] && self.xmm[i] == Some(g)) {
            return XMM_POOL[i];
        }
        self.forget(g);
        let free = (0..XMM_POOL.len()).find(|&i| self.xmm[i].is_none() && !self.pinned[i] && !self.sole[i]);
        let i = free.unwrap_or_else(|| {
            let mut i = self.next_victim;
            while keep.contains(&XMM_POOL[i]) || self.pinned[i] || self.sole[i] {
                i = (i + 1) % XMM_POOL.len();
            }
            self.next_victim = (i + 1) % XMM_POOL.len();
            i
        });
        self.xmm[i] = Some(g);
        XMM_POOL[i]
    }

    /// Loads each pinned guest register into its XMM slot (block entry,
    /// before the loop head).
    pub(super) fn pin(&mut self, regs: &[u8]) -> Result<(), IcedError> {
        // At most 8 pinned: with 3 sole slots and 2 kept ones, one slot is
        // always left to evict.
        for (i, &g) in regs.iter().enumerate().take(8) {
            let r = self.get(g, rax)?;
            self.a.movq(XMM_POOL[i], r)?;
            self.xmm[i] = Some(g);
            self.pinned[i] = true;
        }
        Ok(())
    }

    /// An XMM register holding guest register g's bits (loaded if needed).
    pub(super) fn fsrc(&mut self, g: u8, keep: &[AsmRegisterXmm]) -> Result<AsmRegisterXmm, IcedError> {
        if let Some(x) = self.xmm_of(g) {
            return Ok(x);
        }
        let r = self.get(g, rax)?;
        let x = self.xmm_alloc(g, keep);
        self.a.movq(x, r)?;
        Ok(x)
    }

    /// Guest register g = the float in `x` (and `x` becomes its copy), the
    /// result of instruction k. When nothing can see the general register
    /// before the block writes g again (no integer read of it, no way out of
    /// the block), only the XMM copy is kept: the slot is then marked
    /// `sole` and never evicted until g is written again.
    pub(super) fn fput(&mut self, g: u8, x: AsmRegisterXmm, k: usize) -> Result<(), IcedError> {
        let slot = XMM_POOL.iter().position(|&p| p == x);
        let sole = slot.is_some() && self.sole.iter().filter(|&&s| s).count() < 3 && !self.needed_after(g, k);
        if !sole {
            match self.host(g) {
                Some(h) => self.a.movq(h, x)?,
                None => {
                    self.a.movq(rax, x)?;
                    self.a.mov(ctx_reg(g), rax)?;
                }
            }
        }
        self.forget(g);
        if let Some(i) = slot {
            self.xmm[i] = Some(g);
            self.sole[i] = sole;
        }
        Ok(())
    }

    /// Whether guest register g, written by instruction k, may be read as an
    /// integer, or seen from outside the block, before the block writes it
    /// again.
    fn needed_after(&self, g: u8, k: usize) -> bool {
        for i in self.plan.instrs.iter().skip(k + 1) {
            let info = i.op.info();
            if info.ends_block || info.can_trap || info.class == Class::Branch {
                return true;
            }
            // (the registers read as integers: float operands are read from
            // their XMM copies)
            let int_reads: &[u8] = match info.format {
                _ if info.class.reads_floats() => &[],
                Format::None | Format::Jump | Format::Dst => &[],
                Format::LoadImm if i.op == Opcode::Lih => &[i.a],
                Format::LoadImm => &[],
                Format::R2 | Format::RI | Format::Load => &[i.b],
                Format::R3 => &[i.b, i.c],
                Format::Store | Format::Branch => &[i.a, i.b],
                Format::LinearLoad => &[i.b, i.c],
                Format::LinearStore | Format::Atomic => &[i.a, i.b, i.c],
                Format::Src | Format::BranchZ => &[i.a],
                Format::Sys => return true,
            };
            if int_reads.contains(&g) {
                return true;
            }
            if i.dest() == Some(g) {
                return false;
            }
        }
        true
    }

    /// f64 to i64, truncating, saturating, NaN to 0 (as `semantics::ftoi`).
    pub(super) fn ftoi(&mut self, a: u8, b: u8) -> Result<(), IcedError> {
        let x = self.get(b, rdx)?;
        self.a.movq(xmm0, x)?;
        self.a.cvttsd2si(rax, xmm0)?;
        let mut done = self.a.create_label();
        let mut nan = self.a.create_label();
        self.a.mov(rcx, i64::MIN)?;
        self.a.cmp(rax, rcx)?;
        self.a.jne(done)?;
        self.a.ucomisd(xmm0, xmm0)?;
        self.a.jp(nan)?;
        self.a.movq(rcx, xmm0)?;
        self.a.test(rcx, rcx)?;
        self.a.js(done)?;
        self.a.mov(rax, i64::MAX)?;
        self.a.jmp(done)?;
        self.bind(&mut nan)?;
        self.a.xor(eax, eax)?;
        self.bind(&mut done)?;
        self.put(a, rax)
    }
}
