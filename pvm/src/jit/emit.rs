//! Emission helpers of the translator: guest registers in host registers
//! or the context, the retired count's segments, exits and stubs, bounds
//! checks, the stack and the indirect-jump lookup (arithmetic: `arith`;
//! XMM copies of floats: `xmm`).

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use super::block::{Layout, RegMap, HOST_POOL};
use super::context::*;
use super::ops::Cond;
use super::plan::Plan;
use crate::isa::{Class, Instr, Opcode, SP};

/// What a push stores.
#[derive(Clone, Copy)]
pub(super) enum Pushed {
    /// A host register (neither rax nor rcx).
    Reg(AsmRegister64),
    /// A guest return address.
    Imm(i32),
}

#[derive(Clone, Copy)]
pub(super) enum StubKind {
    /// Rewind the retired count by `rewind` to instruction k, add the
    /// stack pointer's pending move `sp_move` (see `Emitter::sp_pending`), and
    /// let the dispatcher interpret it.
    Interpret { k: usize, rewind: usize, sp_move: i32 },
    /// A direct exit, with its id.
    Direct { target: u64, id: u32 },
    /// A failed guard: rewind the count by `rewind` to the block's start
    /// and ask for a translation without assumptions (see `specialize`).
    Despecialize { rewind: usize },
    /// Computes the deferred remainder of instruction `rem`, then goes to
    /// `target` (see `specialize::deferred_remainder`).
    Remainder { rem: usize, target: u64 },
}

pub(super) struct Emitter {
    pub(super) a: CodeAssembler,
    /// Within a block, guest registers whose value is also in an XMM
    /// register (`XMM_POOL[i]` holds guest `xmm[i]`). The general register
    /// stays the truth; this copy only spares float code the crossings
    /// between the register files. Any other write to the guest register
    /// drops its copy.
    pub(super) xmm: [Option<u8>; 14],
    pub(super) next_victim: usize,
    /// Slots whose guest register's general register is stale: the XMM
    /// copy is its only value (see `fput`).
    pub(super) sole: [bool; 14],
    /// Slots whose guest register keeps its XMM copy for the whole block,
    /// loop back-edges included (see `pinned_floats`).
    pub(super) pinned: [bool; 14],
    /// Instruction count right after the last `bind`: a second label before
    /// any instruction needs a nop to sit on.
    pub(super) bound_at: Option<usize>,
    /// The block's loop head (its count add, after the pinned loads and the
    /// guards): a branch back to the block's own start jumps there
    /// directly, never through an exit.
    pub(super) entry: CodeLabel,
    /// What was decided about the block before emitting it.
    pub(super) plan: Plan,
    /// Instructions of the block the retired count holds at the point being
    /// emitted: the count is added a segment at a time, each segment ending
    /// at a side exit (see `count_segment`), so that a side exit's jump
    /// goes straight to its target with the count already exact.
    pub(super) counted: usize,
    pub(super) map: RegMap,
    pub(super) layout: Layout,
    pub(super) stubs: Vec<(CodeLabel, StubKind)>,
    pub(super) next_exit_id: u32,
    /// Pops (and a ret) still covered by the check of an earlier pop.
    pub(super) pop_covered: usize,
    /// Pushes still covered by the room check of an earlier push of their run.
    pub(super) push_covered: usize,
    /// What pushes and pops since the last update have moved the guest sp
    /// by, which its host register does not have yet: their accesses are
    /// addressed from the old value, and one add updates it before
    /// anything else reads sp or the block leaves (a stub that leaves adds
    /// it itself). So a run of pushes and a call, or of pops and a ret,
    /// puts one operation on sp's dependency chain, not one per
    /// instruction. Always 0 for a guest sp in the context.
    pub(super) sp_pending: i32,
    /// (instruction index of the patchable jmp; index of its stub; target;
    /// retired-count adjustment before it)
    pub(super) exits: Vec<(usize, usize, u64, Option<i32>)>,
    /// (instruction index of a guest access; index of its instruction's
    /// interpret stub; whether the access relies on the guard regions):
    /// the block's trap table, once encoded.
    pub(super) trap_sites: Vec<(usize, usize, bool)>,
}

/// Whether sp's pending move may wait past `i` (see `Emitter::sp_pending`):
/// `i` does not name sp and cannot leave the block other than through a
/// stub (pushes, pops, calls and returns handle the move themselves).
pub(super) fn sp_may_wait(i: &Instr) -> bool {
    let leaves = matches!(i.op.info().class, Class::Branch | Class::System)
        || matches!(i.op, Opcode::Jmp | Opcode::Jr | Opcode::CallR);
    !leaves && !i.named_regs().any(|g| g & 15 == SP)
}

/// Whether `i` sets sp otherwise than by pushing (a run of pushes ends there).
fn moves_sp(i: &Instr) -> bool {
    i.dest() == Some(SP) || matches!(i.op, Opcode::Pop | Opcode::Ret | Opcode::Sys)
}

pub(super) fn ctx_reg(g: u8) -> AsmMemoryOperand {
    qword_ptr(r15 + 8 * i32::from(g))
}

impl Emitter {
    pub(super) fn host(&self, g: u8) -> Option<AsmRegister64> {
        self.map.0[usize::from(g & 15)]
    }

    /// The index in `HOST_POOL` (and its narrow twins) of g's host register.
    pub(super) fn host_slot(&self, g: u8) -> Option<usize> {
        self.host(g).and_then(|h| HOST_POOL.iter().position(|&p| p == h))
    }

    /// dst = guest register g.
    pub(super) fn load(&mut self, dst: AsmRegister64, g: u8) -> Result<(), IcedError> {
        match self.host(g) {
            Some(h) if h == dst => Ok(()),
            Some(h) => self.a.mov(dst, h),
            None => self.a.mov(dst, ctx_reg(g)),
        }
    }

    /// A host register holding g: its own, or `scratch` loaded with it.
    pub(super) fn get(&mut self, g: u8, scratch: AsmRegister64) -> Result<AsmRegister64, IcedError> {
        match self.host(g) {
            Some(h) => Ok(h),
            None => {
                self.a.mov(scratch, ctx_reg(g))?;
                Ok(scratch)
            }
        }
    }

    /// guest register g = src.
    pub(super) fn put(&mut self, g: u8, src: AsmRegister64) -> Result<(), IcedError> {
        match self.host(g) {
            Some(h) if h == src => Ok(()),
            Some(h) => self.a.mov(h, src),
            None => self.a.mov(ctx_reg(g), src),
        }
    }

    /// Puts `label` on the next instruction emitted (iced-x86 allows one
    /// label per instruction; a nop separates two in a row), and returns
    /// that instruction's index.
    pub(super) fn bind(&mut self, label: &mut CodeLabel) -> Result<usize, IcedError> {
        if self.bound_at == Some(self.a.instructions().len()) {
            self.a.nop()?;
        }
        self.a.set_label(label)?;
        let at = self.a.instructions().len();
        self.bound_at = Some(at);
        Ok(at)
    }

    pub(super) fn interpret_stub(&mut self, k: usize) -> CodeLabel {
        let i = self.interpret_stub_index(k);
        self.stubs[i].0
    }

    /// The index in `stubs` of instruction k's interpret stub, made now if
    /// it has none: it rewinds to the state before k (its count and sp's
    /// pending move as they are now), so a memory instruction makes it
    /// before it changes either.
    fn interpret_stub_index(&mut self, k: usize) -> usize {
        // One stub per instruction serves all its checks (which all come
        // before a side exit of k ends its segment) and its trap sites.
        if let Some(i) =
            self.stubs.iter().position(|(_, kind)| matches!(kind, StubKind::Interpret { k: j, .. } if *j == k))
        {
            return i;
        }
        let label = self.a.create_label();
        debug_assert!(self.counted > k, "instruction {k} is counted before it can trap");
        self.stubs.push((label, StubKind::Interpret { k, rewind: self.counted - k, sp_move: self.sp_pending }));
        self.stubs.len() - 1
    }

    /// Marks the next instruction emitted as a guest access of instruction
    /// k: a fault there resumes at k's interpret stub (see `jit::fault`).
    pub(super) fn guest_access(&mut self, k: usize) {
        let stub = self.interpret_stub_index(k);
        self.trap_sites.push((self.a.instructions().len(), stub, false));
    }

    /// The same for an access that relies on the guard regions past the
    /// end of guest memory (a linear-memory access): a fault there is
    /// expected, not a check gone wrong.
    pub(super) fn guest_access_guarded(&mut self, k: usize) {
        let stub = self.interpret_stub_index(k);
        self.trap_sites.push((self.a.instructions().len(), stub, true));
    }

    /// Adds to the retired count the instructions from `from` through the
    /// next side exit (or the end of the block).
    pub(super) fn count_segment(&mut self, from: usize) -> Result<(), IcedError> {
        let len = self.plan.len();
        let end = (from..len).find(|&j| self.plan.steps[j].side_exit).map_or(len, |j| j + 1);
        self.counted = end;
        self.a.add(r13, (end - from) as i32)
    }

    /// A side exit: a patchable `jcc rel32`, taken when `cond` holds,
    /// going to its stub until chained to the start of `target`'s block
    /// (whose own count add then runs: the count here is exact).
    pub(super) fn jcc_exit(&mut self, cond: Cond, target: u64) -> Result<(), IcedError> {
        self.exit_at(target, &[0x0f, 0x80 | cond.code()], None)
    }

    /// A direct exit to `target` that first adds `retired` to the retired
    /// count (minus the instructions of this block that did not run): a
    /// patchable `add r13, imm32` then a patchable `jmp rel32`, going to its
    /// stub until chained. Chaining retargets the jump past the target
    /// block's own count add and folds that add into this one, so a hop
    /// from block to block costs one add, not two.
    pub(super) fn direct_exit(&mut self, target: u64, retired: i32) -> Result<(), IcedError> {
        self.exit_at(target, &[0xe9], Some(retired))
    }

    /// The same with a `call rel32` (the stub leaves generated code, which
    /// drops the host frame).
    pub(super) fn call_exit(&mut self, target: u64) -> Result<(), IcedError> {
        self.exit_at(target, &[0xe8], None)
    }

    /// A patchable `jmp rel32` to `target` that adds nothing to the count
    /// (chained to the target block's start).
    pub(super) fn jump_exit(&mut self, target: u64) -> Result<(), IcedError> {
        self.exit_at(target, &[0xe9], None)
    }

    /// A patchable exit: `opcode` (e9 jmp, e8 call, 0f 8x jcc) and a rel32
    /// to its stub, after an `add r13, imm32` of `retired` if there is one.
    fn exit_at(&mut self, target: u64, opcode: &[u8], retired: Option<i32>) -> Result<(), IcedError> {
        let stub = self.a.create_label();
        let id = self.next_exit_id;
        self.next_exit_id += 1;
        self.stubs.push((stub, StubKind::Direct { target, id }));
        if let Some(n) = retired {
            let n = n.to_le_bytes();
            self.a.db(&[0x49, 0x81, 0xc5, n[0], n[1], n[2], n[3]])?; // add r13, imm32
        }
        self.exits.push((self.a.instructions().len(), self.stubs.len() - 1, target, retired));
        let mut bytes = [0u8; 6];
        bytes[..opcode.len()].copy_from_slice(opcode);
        self.a.db(&bytes[..opcode.len() + 4])
    }

    /// The host address of guest register b + imm, checked for an access of
    /// n bytes at or above `low` (stores check that they stay above the
    /// code), with one unsigned compare: the access is allowed when
    /// `low <= b + imm <= mem_size - n`, that is when `b + imm - low` (mod
    /// 2^64) is at most `mem_size - n - low`. `None` when no address passes
    /// (the code reaches within n bytes of the top of memory): the
    /// instruction always goes to the interpreter. Clobbers rax and rcx.
    pub(super) fn address(
        &mut self,
        b: u8,
        imm: i32,
        low: u64,
        n: u64,
        k: usize,
    ) -> Result<Option<AsmMemoryOperand>, IcedError> {
        let limit = self.layout.mem_size.checked_sub(n).and_then(|top| top.checked_sub(low));
        let (Some(limit), Ok(minus_low)) = (limit, i32::try_from(-i128::from(low))) else {
            let stub = self.interpret_stub(k);
            self.a.jmp(stub)?;
            return Ok(None);
        };
        let disp = i32::try_from(i64::from(imm) - low as i64);
        match (self.host(b), disp) {
            (Some(h), Ok(0)) => {
                self.bounds(h, limit, k)?;
                Ok(Some(qword_ptr(r14 + h + imm)))
            }
            (Some(h), Ok(disp)) => {
                self.a.lea(rcx, qword_ptr(h + disp))?;
                self.bounds(rcx, limit, k)?;
                Ok(Some(qword_ptr(r14 + h + imm)))
            }
            _ => {
                self.load(rax, b)?;
                if imm != 0 {
                    self.a.add(rax, imm)?;
                }
                if low == 0 {
                    self.bounds(rax, limit, k)?;
                } else {
                    self.a.lea(rcx, qword_ptr(rax + minus_low))?;
                    self.bounds(rcx, limit, k)?;
                }
                Ok(Some(qword_ptr(r14 + rax)))
            }
        }
    }

    /// Goes to the interpret stub of k if `reg` > `limit` (unsigned). The
    /// compare's imm32 is sign-extended, so only a limit below 2^31 is
    /// what it says; memory is at most 2047 MiB, so every limit is, but a
    /// larger one sends every access to the interpreter rather than
    /// compare against a truncated or negative bound.
    pub(super) fn bounds(&mut self, reg: AsmRegister64, limit: u64, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        // (`--bounds-slack` loosens every check on purpose: the guard
        // regions must catch what it lets through)
        match i32::try_from(limit.saturating_add(self.layout.bounds_slack)) {
            Ok(limit) => {
                self.a.cmp(reg, limit)?;
                self.a.ja(stub)
            }
            Err(_) => self.a.jmp(stub),
        }
    }

    /// rcx = guest pc of the entry for rdx in the lookup table; jumps to the
    /// interpret stub of k unless it holds rdx.
    pub(super) fn lookup(&mut self, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        // slot * 16 = ((pc >> 3) & mask) << 4 = (pc << 1) & (mask << 4)
        self.a.lea(rcx, qword_ptr(rdx + rdx))?;
        self.a.and(ecx, ((LOOKUP_ENTRIES - 1) << 4) as i32)?;
        self.a.add(rcx, qword_ptr(r15 + OFF_LOOKUP))?;
        self.a.cmp(qword_ptr(rcx), rdx)?;
        self.a.jne(stub)
    }

    /// Checks that instruction k's push has room (stack limit <= sp - 8 and
    /// sp - 8 <= memory top - 8), with one unsigned compare. The first push
    /// of a run (pushes and calls with nothing else moving sp between them)
    /// checks room for the whole run and the others check nothing: if the
    /// run does not fit, the first push goes to the interpreter and the
    /// dispatcher continues from the instruction after it, so each push
    /// still traps exactly where the interpreter would.
    pub(super) fn push_room(&mut self, k: usize) -> Result<(), IcedError> {
        if self.push_covered > 0 {
            self.push_covered -= 1;
            return Ok(());
        }
        let run = self.plan.instrs[k..]
            .iter()
            .take_while(|i| matches!(i.op, Opcode::Push | Opcode::Call | Opcode::CallR) || !moves_sp(i))
            .filter(|i| matches!(i.op, Opcode::Push | Opcode::Call | Opcode::CallR))
            .count()
            .max(1);
        self.push_covered = run - 1;
        let bytes = 8 * run as u64;
        // The run fits when stack_limit + bytes <= sp <= mem_size, that is
        // when sp - (stack_limit + bytes) is at most mem_size - (stack_limit
        // + bytes), unsigned; the displacement from the host register folds
        // in sp's pending move.
        let floor = self.layout.stack_limit.checked_add(bytes);
        let room = floor.and_then(|f| self.layout.mem_size.checked_sub(f));
        let disp = floor.and_then(|f| i32::try_from(-i128::from(f)).ok());
        let (Some(room), Some(disp)) = (room, disp.and_then(|d| d.checked_add(self.sp_pending))) else {
            // No run this long fits anywhere: let the interpreter push.
            let stub = self.interpret_stub(k);
            return self.a.jmp(stub);
        };
        match self.host(SP) {
            Some(h) => self.a.lea(rcx, qword_ptr(h + disp))?,
            None => {
                self.a.mov(rcx, ctx_reg(SP))?;
                self.a.add(rcx, disp)?;
            }
        }
        self.bounds(rcx, room, k)
    }

    /// Checks that the pop (or ret) at k can read the stack (sp <= memory
    /// top - 8, as a load). As with pushes, the first of a run of pops
    /// (ending with a ret, maybe) checks for the whole run: if the run does
    /// not fit, the first pop goes to the interpreter and the next one
    /// checks again in a block of its own.
    pub(super) fn pop_room(&mut self, k: usize, top: AsmRegister64) -> Result<(), IcedError> {
        if self.pop_covered > 0 {
            self.pop_covered -= 1;
            return Ok(());
        }
        let pops = |i: &Instr| i.op == Opcode::Ret || (i.op == Opcode::Pop && i.a & 15 != SP);
        let stack_op = |i: &Instr| moves_sp(i) || matches!(i.op, Opcode::Push | Opcode::Call | Opcode::CallR);
        let run =
            self.plan.instrs[k..].iter().take_while(|i| pops(i) || !stack_op(i)).filter(|i| pops(i)).count().max(1);
        self.pop_covered = run - 1;
        // The run fits when sp + bytes <= mem_size.
        let Some(room) = self.layout.mem_size.checked_sub(8 * run as u64) else {
            let stub = self.interpret_stub(k);
            return self.a.jmp(stub);
        };
        if self.sp_pending != 0 && Some(top) == self.host(SP) {
            self.a.lea(rcx, qword_ptr(top + self.sp_pending))?;
            return self.bounds(rcx, room, k);
        }
        self.bounds(top, room, k)
    }

    /// sp -= 8; [sp] = `value`, for instruction k (after `push_room`). A
    /// host register's update waits (`sp_pending`); a guest sp in the
    /// context is written back after the store, so that a fault at the
    /// store leaves it as it was before k.
    pub(super) fn push_value(&mut self, k: usize, value: Pushed) -> Result<(), IcedError> {
        let top = match self.host(SP) {
            Some(h) => {
                self.sp_pending -= 8;
                qword_ptr(r14 + h + self.sp_pending)
            }
            None => {
                self.a.mov(rax, ctx_reg(SP))?;
                self.a.sub(rax, 8)?;
                qword_ptr(r14 + rax)
            }
        };
        self.guest_access(k);
        match value {
            Pushed::Reg(r) => self.a.mov(top, r)?,
            Pushed::Imm(v) => self.a.mov(top, v)?,
        }
        match self.host(SP) {
            Some(_) => Ok(()),
            None => self.a.mov(ctx_reg(SP), rax),
        }
    }

    /// The top of the stack for a pop or ret that read sp into `top` (its
    /// host register, or rax for a guest sp in the context).
    pub(super) fn stack_top(&self, top: AsmRegister64) -> AsmMemoryOperand {
        if Some(top) == self.host(SP) {
            qword_ptr(r14 + top + self.sp_pending)
        } else {
            qword_ptr(r14 + top)
        }
    }

    /// sp += 8, for a `ret` that read sp into `top` (its host register, or
    /// rax for a guest sp in the context), with the pending move.
    pub(super) fn pop_sp(&mut self, top: AsmRegister64) -> Result<(), IcedError> {
        if top == rax {
            self.a.add(rax, 8)?;
            self.put(SP, rax)
        } else {
            self.a.add(top, 8 + self.sp_pending)
        }
    }

    /// Whether the pop `i` takes the fast path: sp and the destination in
    /// host registers, so the pop reads from sp plus its pending move and
    /// only adds 8 to that move (any other pop reads sp whole, and sp
    /// takes its pending move first).
    pub(super) fn pops_into_host(&self, i: &Instr) -> bool {
        i.a & 15 != SP && self.host(SP).is_some() && self.host(i.a).is_some()
    }

    /// Gives sp's host register its pending move (before anything reads sp
    /// or the block leaves).
    pub(super) fn flush_sp(&mut self) -> Result<(), IcedError> {
        let pending = std::mem::take(&mut self.sp_pending);
        match self.host(SP) {
            Some(h) if pending != 0 => self.a.add(h, pending),
            _ => Ok(()),
        }
    }

    /// True if `t` is an instruction of the code section.
    pub(super) fn valid_target(&self, t: u64) -> bool {
        self.layout.is_code(t)
    }

    pub(super) fn direct_or_trap(&mut self, i: &Instr, k: usize) -> Result<(), IcedError> {
        let target = i.imm as u32 as u64;
        if target == self.plan.pc {
            self.a.jmp(self.entry)
        } else if self.valid_target(target) {
            self.direct_exit(target, 0)
        } else {
            let stub = self.interpret_stub(k);
            self.a.jmp(stub)
        }
    }
}
