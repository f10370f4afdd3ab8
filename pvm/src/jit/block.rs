//! What a translated block is and what it is translated against: the
//! machine's layout as the generated code bakes it in, the map of guest to
//! host registers, the block's guest instructions and what translation
//! produces. Types only the translator's other modules share; this module
//! uses none of them.

use iced_x86::code_asm::*;

use crate::isa::{Instr, INSTR_SIZE, NUM_REGS, SP};
use crate::machine::Machine;

/// Most guest instructions in one block.
pub const MAX_BLOCK: usize = 96;
/// Host registers that can hold guest registers.
pub(super) const HOST_POOL: [AsmRegister64; 9] = [rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegMap(pub [Option<AsmRegister64>; NUM_REGS]);

impl RegMap {
    /// Gives host registers to the guest registers the code names most,
    /// a use inside a loop (between a backward branch and its target)
    /// counting ten times per level of nesting.
    /// `instrs` are the code section's instructions from `code_start` on
    /// (`None` where the bytes do not decode), walked twice.
    pub fn for_code(instrs: impl Iterator<Item = Option<Instr>> + Clone, code_start: u64) -> Self {
        let n = instrs.clone().count();
        // Loops covering each instruction, capped at 4: a difference array
        // (a loop adds one from its target to its backward branch), not a
        // walk over every loop's body, which is quadratic in a big function.
        // (one table lookup per instruction: `info` is not inlined, and
        // this runs over a whole libc at start-up)
        let mut starts = vec![0i64; n + 1];
        for (k, i) in instrs.clone().enumerate() {
            let Some(i) = i else { continue };
            if !i.op.info().format.has_target() {
                continue;
            }
            let from = u64::from(i.imm as u32).wrapping_sub(code_start) / INSTR_SIZE;
            if from <= k as u64 {
                starts[from as usize] += 1;
                starts[k + 1] -= 1;
            }
        }
        let mut open = 0i64;
        let mut uses = [0u64; NUM_REGS];
        for (i, &d) in instrs.zip(&starts[..n]) {
            open += d;
            let Some(i) = i else { continue };
            let info = i.op.info();
            let weight = [1, 10, 100, 1000, 10_000][open.clamp(0, 4) as usize];
            for &f in &[i.a, i.b, i.c][..info.format.named_fields()] {
                uses[usize::from(f)] += weight;
            }
            if info.class.moves_sp() {
                uses[usize::from(SP)] += weight;
            }
        }
        let mut order: Vec<usize> = (0..NUM_REGS).filter(|&g| uses[g] > 0).collect();
        order.sort_by_key(|&g| (std::cmp::Reverse(uses[g]), g));
        let mut map = [None; NUM_REGS];
        for (g, host) in order.into_iter().zip(HOST_POOL) {
            map[g] = Some(host);
        }
        RegMap(map)
    }
}

/// Facts about the machine that the generated code bakes in.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub mem_size: u64,
    pub code_start: u64,
    pub code_end: u64,
    pub stack_limit: u64,
    pub fuel_limited: bool,
    /// What the host CPU has beyond x86-64's baseline (instructions the
    /// translator uses only when they are there).
    pub cpu: Cpu,
    /// Bytes every bounds check lets through past its limit: 0, unless a
    /// demonstration of the guard regions asks for more (`--bounds-slack`).
    pub bounds_slack: u64,
    /// Executable address of the common exit in the trampoline.
    pub exit_addr: u64,
    /// Shared handler of interpret stubs: rax = rewind << 32 | guest pc.
    pub interpret_addr: u64,
    /// Shared handler of direct-exit stubs: rax = exit code << 32 | target pc.
    pub direct_addr: u64,
}

/// Host CPU features the translator can use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// `lzcnt` (ABM).
    pub lzcnt: bool,
    /// `tzcnt` (BMI1).
    pub tzcnt: bool,
    pub popcnt: bool,
    /// `roundsd`/`roundss` (SSE4.1).
    pub round: bool,
}

impl Cpu {
    /// This machine's.
    pub fn detect() -> Cpu {
        Cpu {
            lzcnt: std::arch::is_x86_feature_detected!("lzcnt"),
            tzcnt: std::arch::is_x86_feature_detected!("bmi1"),
            popcnt: std::arch::is_x86_feature_detected!("popcnt"),
            round: std::arch::is_x86_feature_detected!("sse4.1"),
        }
    }
}

impl Layout {
    /// True if `t` is the address of an instruction of the code section.
    pub fn is_code(&self, t: u64) -> bool {
        t >= self.code_start && t < self.code_end && (t - self.code_start).is_multiple_of(INSTR_SIZE)
    }
}

/// Offsets in the trampoline code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrampolineOffsets {
    pub exit: usize,
    pub interpret: usize,
    pub direct: usize,
}

/// A patchable direct exit of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitSite {
    /// Offset in the block of the patchable `jmp rel32`, `call rel32` or
    /// `jcc rel32`.
    pub jump_offset: usize,
    /// Offset in the block of the stub the jump goes to until chained.
    pub stub_offset: usize,
    /// Guest pc the exit continues at.
    pub target: u64,
    /// `Some(n)`: the jump follows an `add r13, imm32` adding n; chained,
    /// the add takes in the target's own count and the jump skips it.
    pub retired: Option<i32>,
}

/// One translated block, ready to be copied to its executable address.
#[derive(Clone, Debug)]
pub struct Translated {
    pub code: Vec<u8>,
    pub guest_start: u64,
    /// Guest instructions in the block.
    pub len: u32,
    /// What the block's own count add at its start adds: the instructions
    /// up to its first side exit (all of them if it has none).
    pub entry_count: u32,
    /// Offset of the code right after the block's own count add, where
    /// chained exits may jump (`None` if the block starts by loading pinned
    /// floats, which a jump there would skip).
    pub body_offset: Option<usize>,
    pub exits: Vec<ExitSite>,
    /// The trap table, sorted by offset.
    pub traps: Vec<TrapSite>,
}

/// A guest access in a block's code and where a fault there resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrapSite {
    /// Offset of the access in the block.
    pub at: u32,
    /// Offset of its instruction's interpret stub in the block.
    pub stub: u32,
    /// The access relies on the guard regions past guest memory (it was
    /// checked against a linear memory's end only): a fault is expected.
    pub guarded: bool,
}

/// Reads the block at `pc`: up to `MAX_BLOCK` instructions, ending at the
/// first unconditional transfer (jmp, jr, call, callr, ret, sys), before an
/// undecodable instruction, or at the end of code. Conditional branches do
/// not end it: they become side exits (a superblock), so a translation
/// covers more code and hot paths run straight through.
pub fn scan(m: &Machine, pc: u64) -> Vec<Instr> {
    let mut out = Vec::new();
    let mut at = pc;
    while out.len() < MAX_BLOCK && m.is_code_addr(at) {
        let Some(Ok(i)) = m.fetch(at).map(Instr::decode) else { break };
        out.push(i);
        if i.op.info().ends_superblock() {
            break;
        }
        at += INSTR_SIZE;
    }
    out
}

/// Low 8, 16 and 32 bits of `HOST_POOL`, in the same order, for narrow stores.
pub(super) const HOST_POOL8: [AsmRegister8; 9] = [bl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b];
pub(super) const HOST_POOL16: [AsmRegister16; 9] = [bx, bp, si, di, r8w, r9w, r10w, r11w, r12w];
pub(super) const HOST_POOL32: [AsmRegister32; 9] = [ebx, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d];

/// The low 8 and 16 bits of a register the translator computes in.
pub(super) fn low8(r: AsmRegister64) -> AsmRegister8 {
    if r == rax {
        al
    } else if r == rcx {
        cl
    } else if r == rdx {
        dl
    } else {
        HOST_POOL.iter().position(|&p| p == r).map_or(al, |i| HOST_POOL8[i])
    }
}
pub(super) fn low16(r: AsmRegister64) -> AsmRegister16 {
    if r == rax {
        ax
    } else if r == rcx {
        cx
    } else if r == rdx {
        dx
    } else {
        HOST_POOL.iter().position(|&p| p == r).map_or(ax, |i| HOST_POOL16[i])
    }
}

/// The low 32 bits of a register the translator computes in: a host
/// register of the pool or a scratch one (rax, rcx, rdx).
pub(super) fn r32(r: AsmRegister64) -> AsmRegister32 {
    if r == rax {
        eax
    } else if r == rcx {
        ecx
    } else if r == rdx {
        edx
    } else {
        HOST_POOL.iter().position(|&p| p == r).map_or(eax, |i| HOST_POOL32[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Opcode;

    #[test]
    fn registers_used_in_nested_loops_get_host_registers_first() {
        let add = |g: u8| Instr::new(Opcode::Add, g, g, g, 0);
        let top = 0x1000 + 20 * INSTR_SIZE as i32;
        // 20 uses of r1 outside any loop (60 names), one of r2 two loops
        // deep (3 x 100), r3 in the inner (100) and the outer branch (10).
        let mut code: Vec<Instr> = vec![add(1); 20];
        code.extend([add(2), Instr::new(Opcode::Bnez, 3, 0, 0, top), Instr::new(Opcode::Bnez, 3, 0, 0, top)]);
        let map = RegMap::for_code(code.iter().map(|&i| Some(i)), 0x1000);
        assert_eq!((map.0[2], map.0[3], map.0[1], map.0[4]), (Some(rbx), Some(rbp), Some(rsi), None));
    }
}
