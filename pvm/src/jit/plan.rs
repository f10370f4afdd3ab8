//! What the translator decides about a block before it emits anything:
//! the block's instructions, the values it may assume, the float
//! registers it keeps in XMM registers across its back-edge, and per
//! instruction whether it is a side exit, is translated together with the
//! next one (a conditional move, a multiply-add), or is a remainder or a
//! branch that value specialization changes. The emitter reads the plan;
//! the analyses here are pure functions of the guest code and the layout.

use super::block::Layout;
use super::magic::{self, ConstDiv};
use crate::isa::{Class, Format, Instr, Kind, MoveOp, Opcode, INSTR_SIZE, NUM_REGS, SP};

/// What the emitter does with one instruction of the block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Step {
    /// A conditional branch that leaves the block mid-way (to valid code,
    /// not the last instruction, not if-converted): it ends a segment of
    /// the retired count.
    pub(super) side_exit: bool,
    /// A branch over the next instruction alone: both become a conditional
    /// move (see `ifconvert`).
    pub(super) if_converted: bool,
    /// Translated with the instruction before it (an if-converted branch's
    /// skipped instruction, a multiply's fused add): emits nothing itself.
    pub(super) merged: bool,
    /// `muli` then `addi` on the same register: the add's immediate.
    pub(super) fused_add: Option<i32>,
    /// A remainder by 2^k whose `bne` right after tests the dividend's low
    /// bits: computed only on the way to the branch's target.
    pub(super) deferred_remainder: bool,
    /// A branch comparing the remainder just before it with a register
    /// known to hold 0: it tests these low bits (dividend register, mask).
    pub(super) remainder_test: Option<(u8, i32)>,
    /// The instruction to translate in its place (a multiply by a known
    /// 2.0 becomes an add).
    pub(super) rewritten: Option<Instr>,
}

/// The decisions about one block.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) pc: u64,
    pub(super) instrs: Vec<Instr>,
    /// Values the block assumes registers hold (checked at its entry).
    pub(super) known: [Option<u64>; NUM_REGS],
    /// Guest registers kept in XMM registers for the whole block.
    pub(super) pinned: Vec<u8>,
    pub(super) steps: Vec<Step>,
}

impl Plan {
    /// Plans the block `instrs` at `pc`, assuming values from `regs` if
    /// `specialize` (and assuming nothing otherwise).
    pub(super) fn new(instrs: Vec<Instr>, pc: u64, regs: &[u64; NUM_REGS], layout: &Layout, specialize: bool) -> Plan {
        let known = if specialize { assumptions(&instrs, pc, regs) } else { [None; NUM_REGS] };
        let pinned = pinned_floats(&instrs, pc);
        let at = |k: usize| pc + k as u64 * INSTR_SIZE;
        let mut steps = vec![Step::default(); instrs.len()];
        for k in 0..instrs.len() {
            let i = instrs[k];
            let branch = i.op.info().class == Class::Branch;
            let converted = branch && convertible(&instrs, k, at(k));
            steps[k].if_converted = converted;
            steps[k].side_exit = branch && k + 1 < instrs.len() && layout.is_code(i.imm as u32 as u64) && !converted;
            steps[k].fused_add = fused_add(&instrs, k);
            steps[k].remainder_test = fused_remainder_test(&instrs, k, &known);
            steps[k].rewritten = doubling(&i, &known);
            if let Some(br) = instrs.get(k + 1) {
                steps[k].deferred_remainder = br.op == Opcode::Bne
                    && fused_remainder_test(&instrs, k + 1, &known).is_some()
                    && layout.is_code(br.imm as u32 as u64)
                    && !convertible(&instrs, k + 1, at(k + 1));
            }
        }
        for k in 1..instrs.len() {
            let before = steps[k - 1];
            steps[k].merged = !before.merged && (before.if_converted || before.fused_add.is_some());
        }
        Plan { pc, instrs, known, pinned, steps }
    }

    /// Guest instructions in the block.
    pub(super) fn len(&self) -> usize {
        self.instrs.len()
    }
}

/// If instruction k is `muli a, b, m` (m 2, 3, 4, 5, 8 or 9) and the next
/// one `addi a, a, c` in the same block: c (the two make one lea).
fn fused_add(instrs: &[Instr], k: usize) -> Option<i32> {
    let (i, j) = (instrs[k], *instrs.get(k + 1)?);
    let fits = i.op == Opcode::MulI && matches!(i.imm, 2..=5 | 8 | 9);
    (fits && j.op == Opcode::AddI && j.a & 15 == i.a & 15 && j.b & 15 == i.a & 15).then_some(j.imm)
}

/// Whether `i` can be computed into a scratch register without side effects
/// (no memory, no trap, no flags read): `li`, `mov`, and the ALU operations
/// add, sub, mul, and, or, xor with a register or an immediate.
fn simple(i: &Instr) -> bool {
    matches!(i.op.kind(), Kind::Move(MoveOp::Li | MoveOp::Mov)) || super::ops::IntForm::alu(i.op.kind()).is_some()
}

/// Whether the branch at k of `instrs` (at guest `pc`) skips just the one
/// simple instruction after it, inside the block: `if_convert` takes it.
pub(super) fn convertible(instrs: &[Instr], k: usize, pc: u64) -> bool {
    k + 2 < instrs.len() && instrs[k].imm as u32 as u64 == pc + 2 * INSTR_SIZE && simple(&instrs[k + 1])
}

/// Guest registers worth keeping in XMM registers for a whole block: the
/// block loops to its own start, the registers are read by float
/// instructions, and every write to them in the block is a float result
/// (which updates the XMM copy). Empty for blocks that do not loop.
pub(super) fn pinned_floats(instrs: &[Instr], pc: u64) -> Vec<u8> {
    if !instrs.iter().any(|i| i.target() == Some(pc)) {
        return Vec::new();
    }
    let mut out: Vec<u8> = Vec::new();
    for i in instrs.iter().filter(|i| i.op.info().class.reads_floats()) {
        let reads: &[u8] = if i.op.info().format == Format::R3 { &[i.b, i.c] } else { &[i.b] };
        for &g in reads {
            if !out.contains(&g) {
                out.push(g);
            }
        }
    }
    let other_write = |g: u8| {
        instrs.iter().any(|i| {
            let class = i.op.info().class;
            (i.dest() == Some(g) && !class.float_result()) || (class.moves_sp() && g == SP)
        })
    };
    out.retain(|&g| !other_write(g));
    out
}

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
pub(super) fn assumptions(instrs: &[Instr], pc: u64, regs: &[u64; NUM_REGS]) -> [Option<u64>; NUM_REGS] {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::NUM_REGS;

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
