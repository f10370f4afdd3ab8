//! Value specialization: a block may assume that a register it reads but
//! never writes keeps the value it had when the block was translated, if a
//! guard at the block's entry checks it (as LuaJIT's traces guard their
//! assumptions). Two assumptions pay here:
//!
//! - a register holding 2.0 multiplies by adding (`fmul r0, r13, r8` with
//!   r13 = 2.0 becomes `r8 + r8`: the same bits, one add's latency);
//! - a register holding 0, compared with the remainder of a division by
//!   2^k (`remsi r4, r2, 2; bne r4, r9, odd`), lets the branch test the low
//!   bits of the dividend directly instead of waiting for the remainder.
//!
//! A failed guard leaves the block; the dispatcher then drops it and
//! translates that start again without assumptions, for good.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::emit::{ctx_reg, Emitter, StubKind, HOST_POOL32};
use super::ifconvert;
use super::magic::{self, ConstDiv};
use crate::isa::{Instr, Opcode, INSTR_SIZE, NUM_REGS, SP};

/// The bits of 2.0.
const TWO: u64 = 0x4000_0000_0000_0000;

/// Whether `i` writes guest register g.
fn writes(i: &Instr, g: u8) -> bool {
    i.dest() == Some(g) || i.op == Opcode::Sys
}

/// The mask of a remainder by ±2^k that the fused test can use.
fn low_bits(i: &Instr) -> Option<i32> {
    match (i.op, magic::plan(i64::from(i.imm))) {
        (Opcode::RemSI, Some(ConstDiv::Shift { k, .. })) if i.a & 15 != i.b & 15 => i32::try_from((1i64 << k) - 1).ok(),
        _ => None,
    }
}

/// If the branch at k compares the remainder computed just before it with
/// a register known to hold 0: the dividend's register and the mask.
pub(super) fn fused_remainder_test(instrs: &[Instr], k: usize, known: &[Option<u64>; NUM_REGS]) -> Option<(u8, i32)> {
    let br = instrs.get(k)?;
    let rem = instrs.get(k.checked_sub(1)?)?;
    if !matches!(br.op, Opcode::Beq | Opcode::Bne) {
        return None;
    }
    let mask = low_bits(rem)?;
    let zero = |g: u8| known[usize::from(g & 15)] == Some(0);
    let (a, b, r) = (br.a & 15, br.b & 15, rem.a & 15);
    ((a == r && zero(b)) || (b == r && zero(a))).then_some((rem.b, mask))
}

/// The values worth assuming for the block `instrs` (starting at `pc`),
/// given the registers now: only registers the block does not write before
/// its last use of them or its last jump back to its start, and only where
/// an assumption changes the code.
pub fn assumptions(instrs: &[Instr], pc: u64, regs: &[u64; NUM_REGS]) -> [Option<u64>; NUM_REGS] {
    let loops_until = instrs.iter().rposition(|i| i.target() == Some(pc)).unwrap_or(0);
    let mut known = [None; NUM_REGS];
    for g in 0..NUM_REGS as u8 {
        let v = regs[usize::from(g)];
        let mut only = [None; NUM_REGS];
        only[usize::from(g)] = Some(v);
        // The instructions whose translation the assumption would change.
        let uses: Vec<usize> = match v {
            0 => (1..instrs.len()).filter(|&k| fused_remainder_test(instrs, k, &only).is_some()).collect(),
            TWO => (0..instrs.len()).filter(|&k| doubling(&instrs[k], &only).is_some()).collect(),
            _ => Vec::new(),
        };
        let Some(&last) = uses.last() else { continue };
        let until = last.max(loops_until);
        if g != SP && !instrs[..=until].iter().any(|i| writes(i, g)) {
            known[usize::from(g)] = Some(v);
        }
    }
    known
}

/// `fmul a, b, c` with b or c known to hold 2.0: the same as `fadd a, x, x`
/// for the other operand x (2.0 * x and x + x are both exact or both
/// overflow, NaNs and signed zeros included).
pub(super) fn doubling(i: &Instr, known: &[Option<u64>; NUM_REGS]) -> Option<Instr> {
    if i.op != Opcode::FMul {
        return None;
    }
    let two = |g: u8| known[usize::from(g & 15)] == Some(TWO);
    let x = if two(i.b) {
        i.c
    } else if two(i.c) {
        i.b
    } else {
        return None;
    };
    Some(Instr::new(Opcode::FAdd, i.a, x, x, 0))
}

impl Emitter {
    /// Whether the remainder at k can wait: a `bne` right after it tests
    /// the dividend's low bits instead (`fused_remainder_test`), so on its
    /// fall-through path the remainder is 0, and only the way to its
    /// target computes it (in a stub, see `remainder_then`).
    pub(super) fn deferred_remainder(&self, k: usize) -> bool {
        let Some(br) = self.instrs.get(k + 1) else { return false };
        let pc = self.block_pc + (k as u64 + 1) * INSTR_SIZE;
        br.op == Opcode::Bne
            && fused_remainder_test(&self.instrs, k + 1, &self.known).is_some()
            && self.valid_target(br.imm as u32 as u64)
            && !ifconvert::convertible(&self.instrs, k + 1, pc)
    }

    /// The `bne` at k after a deferred remainder, once its test set the
    /// flags: the remainder's register gets 0 (a `mov`, which keeps the
    /// flags), and a taken branch goes to a stub that computes it and then
    /// goes on to `target`. Returns the stub's label.
    pub(super) fn remainder_then(&mut self, k: usize, target: u64) -> Result<CodeLabel, IcedError> {
        let r = self.instrs[k - 1].a;
        match self.host_slot(r) {
            Some(slot) => self.a.mov(HOST_POOL32[slot], 0)?,
            None => self.a.mov(ctx_reg(r), 0)?,
        }
        let label = self.a.create_label();
        self.stubs.push((label, StubKind::Remainder { rem: k - 1, target }));
        Ok(label)
    }

    /// The code of a `StubKind::Remainder` stub (at its bound label).
    pub(super) fn remainder_stub(&mut self, rem: usize, target: u64) -> Result<(), IcedError> {
        let i = self.instrs[rem];
        if let Some(ConstDiv::Shift { k, negative }) = magic::plan(i64::from(i.imm)) {
            self.div_rem_pow2(true, i.a, i.b, k, negative)?;
        }
        if target == self.block_pc {
            self.a.jmp(self.entry)
        } else {
            self.jump_exit(target)
        }
    }

    /// The guards of the block's assumptions (at its entry).
    pub(super) fn guards(&mut self) -> Result<(), IcedError> {
        let mut stub = None;
        for g in 0..NUM_REGS as u8 {
            let Some(v) = self.known[usize::from(g)] else { continue };
            let label = *stub.get_or_insert_with(|| {
                let l = self.a.create_label();
                self.stubs.push((l, StubKind::Despecialize { rewind: self.counted }));
                l
            });
            match (self.host(g), i32::try_from(v)) {
                (Some(h), Ok(v)) => self.a.cmp(h, v)?,
                (None, Ok(v)) => self.a.cmp(ctx_reg(g), v)?,
                (h, Err(_)) => {
                    self.a.mov(rax, v)?;
                    match h {
                        Some(h) => self.a.cmp(h, rax)?,
                        None => self.a.cmp(ctx_reg(g), rax)?,
                    }
                }
            }
            self.a.jne(label)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(op: Opcode, a: u8, b: u8, c: u8, imm: i32) -> Instr {
        Instr::new(op, a, b, c, imm)
    }

    const PC: u64 = 0x1000;

    /// `remsi r4, r2, 2; bne r4, r9, +16; addi r3, r3, 1; bne r2, r8, start`
    fn parity_loop() -> Vec<Instr> {
        vec![
            ins(Opcode::RemSI, 4, 2, 0, 2),
            ins(Opcode::Bne, 4, 9, 0, 0x1020),
            ins(Opcode::AddI, 3, 3, 0, 1),
            ins(Opcode::Bne, 2, 8, 0, PC as i32),
        ]
    }

    #[test]
    fn a_zero_next_to_a_remainder_test_is_assumed_and_fused() {
        let mut regs = [7u64; NUM_REGS];
        regs[9] = 0;
        let instrs = parity_loop();
        let known = assumptions(&instrs, PC, &regs);
        assert_eq!(known[9], Some(0));
        assert_eq!(known.iter().filter(|k| k.is_some()).count(), 1, "{known:?}");
        assert_eq!(fused_remainder_test(&instrs, 1, &known), Some((2, 1)));
        assert_eq!(fused_remainder_test(&instrs, 3, &known), None);
    }

    #[test]
    fn nothing_is_assumed_about_a_register_the_loop_writes_or_a_useless_value() {
        let mut instrs = parity_loop();
        instrs.insert(2, ins(Opcode::Li, 9, 0, 0, 0));
        assert_eq!(assumptions(&instrs, PC, &[0; NUM_REGS]), [None; NUM_REGS]);
        // r9 = 1 would not change the code
        let mut regs = [0u64; NUM_REGS];
        regs[9] = 1;
        assert_eq!(assumptions(&parity_loop(), PC, &regs)[9], None);
        // a remainder by 3 is no low-bits test
        let mut by3 = parity_loop();
        by3[0] = ins(Opcode::RemSI, 4, 2, 0, 3);
        assert_eq!(assumptions(&by3, PC, &[0; NUM_REGS]), [None; NUM_REGS]);
    }

    #[test]
    fn two_point_zero_turns_a_multiply_into_an_add() {
        let mul = ins(Opcode::FMul, 0, 13, 8, 0);
        let mut regs = [0u64; NUM_REGS];
        regs[13] = 2.0f64.to_bits();
        let known = assumptions(&[mul], PC, &regs);
        assert_eq!(known[13], Some(TWO));
        assert_eq!(doubling(&mul, &known), Some(ins(Opcode::FAdd, 0, 8, 8, 0)));
        regs[13] = 3.0f64.to_bits();
        assert_eq!(assumptions(&[mul], PC, &regs)[13], None);
        // 2.0 * x and x + x agree on every kind of double
        for x in [0.0, -0.0, 1.5, -3.25, f64::MAX, f64::MIN_POSITIVE / 4.0, f64::INFINITY, f64::NAN] {
            assert_eq!((2.0 * x).to_bits(), (x + x).to_bits(), "{x}");
        }
    }
}
