//! The translator: one guest basic block to x86-64 with iced-x86's
//! `CodeAssembler`.
//!
//! Host registers: r15 = `JitContext`, r14 = guest memory base, r13 =
//! retired instructions, rax/rcx/rdx/xmm0/xmm1 scratch; nine more hold the
//! nine most used guest registers (`RegMap`), the rest live in the context.
//! Anything the block cannot finish by itself (a trap, a syscall, a store
//! into code, an indirect target not in the lookup table) leaves through a
//! stub that rewinds the retired count to that instruction and asks the
//! dispatcher to interpret it: precise state, same trap, same count.

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, IcedError};

use super::context::*;
use super::magic::{self, ConstDiv};
use crate::isa::{Format, Instr, Opcode, INSTR_SIZE, NUM_REGS, SP};
use crate::machine::Machine;

/// Most guest instructions in one block.
pub const MAX_BLOCK: usize = 96;
/// Host registers that can hold guest registers.
const HOST_POOL: [AsmRegister64; 9] = [rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12];
/// Their low 8, 16 and 32 bits, in the same order, for narrow stores.
const HOST_POOL8: [AsmRegister8; 9] = [bl, bpl, sil, dil, r8b, r9b, r10b, r11b, r12b];
const HOST_POOL16: [AsmRegister16; 9] = [bx, bp, si, di, r8w, r9w, r10w, r11w, r12w];
const HOST_POOL32: [AsmRegister32; 9] = [ebx, ebp, esi, edi, r8d, r9d, r10d, r11d, r12d];

/// Which guest registers live in which host registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegMap(pub [Option<AsmRegister64>; NUM_REGS]);

impl RegMap {
    /// Gives host registers to the guest registers the code names most.
    pub fn for_code(code: &[u8]) -> Self {
        let mut uses = [0u32; NUM_REGS];
        for chunk in code.chunks_exact(8) {
            let Ok(i) = Instr::decode(chunk.try_into().unwrap_or([0xff; 8])) else { continue };
            let fields: &[u8] = match i.op.info().format {
                Format::None | Format::Jump | Format::Sys => &[],
                Format::R2 | Format::RI | Format::Load | Format::Store | Format::Branch => &[i.a, i.b],
                Format::R3 => &[i.a, i.b, i.c],
                Format::LoadImm | Format::Src | Format::Dst => &[i.a],
            };
            for &f in fields {
                uses[usize::from(f)] += 1;
            }
            if matches!(i.op, Opcode::Push | Opcode::Pop | Opcode::Call | Opcode::CallR | Opcode::Ret) {
                uses[usize::from(SP)] += 1;
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
    /// Executable address of the common exit in the trampoline.
    pub exit_addr: u64,
    /// Shared handler of interpret stubs: rax = rewind << 32 | guest pc.
    pub interpret_addr: u64,
    /// Shared handler of direct-exit stubs: rax = exit code << 32 | target pc.
    pub direct_addr: u64,
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
    /// Offset in the block of the 5-byte `jmp rel32`.
    pub jump_offset: usize,
    /// Offset in the block of the stub the jump goes to until chained.
    pub stub_offset: usize,
    /// Guest pc the exit continues at.
    pub target: u64,
}

/// One translated block, ready to be copied to its executable address.
#[derive(Clone, Debug)]
pub struct Translated {
    pub code: Vec<u8>,
    pub guest_start: u64,
    /// Guest instructions in the block.
    pub len: u32,
    pub exits: Vec<ExitSite>,
}

enum StubKind {
    /// Rewind to instruction k and let the dispatcher interpret it.
    Interpret(usize),
    /// A direct exit, with its id.
    Direct { target: u64, id: u32 },
}

struct Emitter {
    a: CodeAssembler,
    /// Guest instructions in the block being translated.
    len: usize,
    map: RegMap,
    layout: Layout,
    stubs: Vec<(CodeLabel, StubKind)>,
    next_exit_id: u32,
    /// (label of the patchable jmp, once set; index of its stub; target)
    exits: Vec<(CodeLabel, usize, u64)>,
}

fn ctx_reg(g: u8) -> AsmMemoryOperand {
    qword_ptr(r15 + 8 * i32::from(g))
}

impl Emitter {
    fn host(&self, g: u8) -> Option<AsmRegister64> {
        self.map.0[usize::from(g & 15)]
    }

    /// dst = guest register g.
    fn load(&mut self, dst: AsmRegister64, g: u8) -> Result<(), IcedError> {
        match self.host(g) {
            Some(h) if h == dst => Ok(()),
            Some(h) => self.a.mov(dst, h),
            None => self.a.mov(dst, ctx_reg(g)),
        }
    }

    /// A host register holding g: its own, or `scratch` loaded with it.
    fn get(&mut self, g: u8, scratch: AsmRegister64) -> Result<AsmRegister64, IcedError> {
        match self.host(g) {
            Some(h) => Ok(h),
            None => {
                self.a.mov(scratch, ctx_reg(g))?;
                Ok(scratch)
            }
        }
    }

    /// guest register g = src.
    fn put(&mut self, g: u8, src: AsmRegister64) -> Result<(), IcedError> {
        match self.host(g) {
            Some(h) if h == src => Ok(()),
            Some(h) => self.a.mov(h, src),
            None => self.a.mov(ctx_reg(g), src),
        }
    }

    fn interpret_stub(&mut self, k: usize) -> CodeLabel {
        // One stub per instruction serves all its checks.
        if let Some((label, _)) = self.stubs.iter().find(|(_, kind)| matches!(kind, StubKind::Interpret(j) if *j == k))
        {
            return *label;
        }
        let label = self.a.create_label();
        self.stubs.push((label, StubKind::Interpret(k)));
        label
    }

    /// A patchable `jmp rel32` to `target`, going to its stub until chained.
    fn direct_exit(&mut self, target: u64) -> Result<(), IcedError> {
        let jump = self.a.create_label();
        self.direct_exit_at(target, jump)
    }

    /// The same, at a label created (and maybe jumped to) earlier.
    fn direct_exit_at(&mut self, target: u64, mut jump: CodeLabel) -> Result<(), IcedError> {
        let stub = self.a.create_label();
        let id = self.next_exit_id;
        self.next_exit_id += 1;
        self.stubs.push((stub, StubKind::Direct { target, id }));
        // A label records its instruction when set: keep the set copy.
        self.a.set_label(&mut jump)?;
        self.exits.push((jump, self.stubs.len() - 1, target));
        self.a.db(&[0xe9, 0, 0, 0, 0])
    }

    /// rax = guest register b + imm, checked for an access of n bytes.
    fn address(&mut self, b: u8, imm: i32, n: u64, k: usize) -> Result<(), IcedError> {
        match self.host(b) {
            Some(h) => self.a.lea(rax, qword_ptr(h + imm))?,
            None => {
                self.a.mov(rax, ctx_reg(b))?;
                if imm != 0 {
                    self.a.add(rax, imm)?;
                }
            }
        }
        self.bounds(rax, self.layout.mem_size - n, k)
    }

    /// Goes to the interpret stub of k if `reg` > `limit` (unsigned).
    /// Memory is at most 2 GiB, so every limit is a positive imm32.
    fn bounds(&mut self, reg: AsmRegister64, limit: u64, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        self.a.cmp(reg, limit as i32)?;
        self.a.ja(stub)
    }

    /// rcx = guest pc of the entry for rdx in the lookup table; jumps to the
    /// interpret stub of k unless it holds rdx.
    fn lookup(&mut self, k: usize) -> Result<(), IcedError> {
        let stub = self.interpret_stub(k);
        self.a.mov(rcx, rdx)?;
        self.a.shr(rcx, 3)?;
        self.a.and(ecx, (LOOKUP_ENTRIES - 1) as i32)?;
        self.a.shl(rcx, 4)?;
        self.a.add(rcx, qword_ptr(r15 + OFF_LOOKUP))?;
        self.a.cmp(qword_ptr(rcx), rdx)?;
        self.a.jne(stub)
    }

    /// sp - 8 into rax, checked against the stack limit and the memory top.
    fn push_slot(&mut self, k: usize) -> Result<(), IcedError> {
        self.load(rax, SP)?;
        self.a.sub(rax, 8)?;
        let stub = self.interpret_stub(k);
        self.a.cmp(rax, self.layout.stack_limit as i32)?;
        self.a.jb(stub)?;
        self.bounds(rax, self.layout.mem_size - 8, k)
    }

    fn instr(&mut self, i: &Instr, k: usize, pc: u64) -> Result<(), IcedError> {
        let (a, b, c) = (i.a, i.b, i.c);
        let imm = i.imm;
        match i.op {
            Opcode::Nop => {}
            Opcode::Mov => {
                let s = self.get(b, rax)?;
                self.put(a, s)?;
            }
            Opcode::Li => match self.host(a) {
                Some(h) => self.a.mov(h, i64::from(imm))?,
                None => self.a.mov(ctx_reg(a), imm)?,
            },
            Opcode::Lih => {
                self.load(rax, a)?;
                self.a.mov(eax, eax)?;
                self.a.mov(rcx, u64::from(imm as u32) << 32)?;
                self.a.or(rax, rcx)?;
                self.put(a, rax)?;
            }
            Opcode::Add | Opcode::Sub | Opcode::Mul | Opcode::And | Opcode::Or | Opcode::Xor => {
                // Work in the destination's own host register unless it is
                // also the second source.
                let dst = match self.host(a) {
                    Some(h) if a == b || a != c => h,
                    _ => rax,
                };
                self.load(dst, b)?;
                let x = self.get(c, rcx)?;
                match i.op {
                    Opcode::Add => self.a.add(dst, x)?,
                    Opcode::Sub => self.a.sub(dst, x)?,
                    Opcode::Mul => self.a.imul_2(dst, x)?,
                    Opcode::And => self.a.and(dst, x)?,
                    Opcode::Or => self.a.or(dst, x)?,
                    _ => self.a.xor(dst, x)?,
                }
                self.put(a, dst)?;
            }
            Opcode::AddI | Opcode::SubI | Opcode::MulI | Opcode::AndI | Opcode::OrI | Opcode::XorI => {
                if let (Some(h), true) = (self.host(a), a == b && matches!(i.op, Opcode::AddI | Opcode::SubI)) {
                    if i.op == Opcode::AddI {
                        self.a.add(h, imm)?;
                    } else {
                        self.a.sub(h, imm)?;
                    }
                    return Ok(());
                }
                self.load(rax, b)?;
                match i.op {
                    Opcode::AddI => self.a.add(rax, imm)?,
                    Opcode::SubI => self.a.sub(rax, imm)?,
                    Opcode::MulI => self.a.imul_3(rax, rax, imm)?,
                    Opcode::AndI => self.a.and(rax, imm)?,
                    Opcode::OrI => self.a.or(rax, imm)?,
                    _ => self.a.xor(rax, imm)?,
                }
                self.put(a, rax)?;
            }
            Opcode::Shl | Opcode::Shr | Opcode::Sar => {
                self.load(rcx, c)?;
                self.load(rax, b)?;
                match i.op {
                    Opcode::Shl => self.a.shl(rax, cl)?,
                    Opcode::Shr => self.a.shr(rax, cl)?,
                    _ => self.a.sar(rax, cl)?,
                }
                self.put(a, rax)?;
            }
            Opcode::ShlI | Opcode::ShrI | Opcode::SarI => {
                self.load(rax, b)?;
                let n = (imm & 63) as u32;
                match i.op {
                    Opcode::ShlI => self.a.shl(rax, n)?,
                    Opcode::ShrI => self.a.shr(rax, n)?,
                    _ => self.a.sar(rax, n)?,
                }
                self.put(a, rax)?;
            }
            Opcode::Seq | Opcode::Sne | Opcode::Slt | Opcode::Sltu | Opcode::Sle | Opcode::Sleu => {
                self.load(rax, b)?;
                let x = self.get(c, rcx)?;
                self.a.cmp(rax, x)?;
                self.setcc(i.op)?;
                self.put(a, rax)?;
            }
            Opcode::SeqI | Opcode::SneI | Opcode::SltI | Opcode::SltuI | Opcode::SleI | Opcode::SleuI => {
                self.load(rax, b)?;
                self.a.cmp(rax, imm)?;
                self.setcc(i.op)?;
                self.put(a, rax)?;
            }
            Opcode::DivS | Opcode::DivU | Opcode::RemS | Opcode::RemU => {
                self.load(rcx, c)?;
                let stub = self.interpret_stub(k);
                self.a.test(rcx, rcx)?;
                self.a.jz(stub)?;
                self.load(rax, b)?;
                self.divide(i.op, a)?;
            }
            Opcode::DivUI | Opcode::RemUI => {
                let d = i64::from(imm) as u64;
                if d == 0 {
                    let stub = self.interpret_stub(k);
                    return self.a.jmp(stub);
                }
                self.a.mov(rcx, d)?;
                self.load(rax, b)?;
                self.divide(if i.op == Opcode::DivUI { Opcode::DivU } else { Opcode::RemU }, a)?;
            }
            Opcode::DivSI | Opcode::RemSI => {
                let Some(plan) = magic::plan(i64::from(imm)) else {
                    let stub = self.interpret_stub(k);
                    return self.a.jmp(stub);
                };
                self.load(rcx, b)?;
                self.div_by_constant(plan)?;
                if i.op == Opcode::RemSI {
                    self.a.imul_3(rax, rax, imm)?;
                    self.a.sub(rcx, rax)?;
                    self.put(a, rcx)?;
                } else {
                    self.put(a, rax)?;
                }
            }
            Opcode::FAdd | Opcode::FSub | Opcode::FMul | Opcode::FDiv => {
                let x = self.get(b, rax)?;
                self.a.movq(xmm0, x)?;
                let y = self.get(c, rcx)?;
                self.a.movq(xmm1, y)?;
                match i.op {
                    Opcode::FAdd => self.a.addsd(xmm0, xmm1)?,
                    Opcode::FSub => self.a.subsd(xmm0, xmm1)?,
                    Opcode::FMul => self.a.mulsd(xmm0, xmm1)?,
                    _ => self.a.divsd(xmm0, xmm1)?,
                }
                self.a.movq(rax, xmm0)?;
                self.put(a, rax)?;
            }
            Opcode::FEq | Opcode::FLt | Opcode::FLe => {
                let x = self.get(b, rax)?;
                self.a.movq(xmm0, x)?;
                let y = self.get(c, rcx)?;
                self.a.movq(xmm1, y)?;
                match i.op {
                    Opcode::FEq => {
                        self.a.ucomisd(xmm0, xmm1)?;
                        self.a.sete(al)?;
                        self.a.setnp(cl)?;
                        self.a.and(al, cl)?;
                    }
                    Opcode::FLt => {
                        self.a.ucomisd(xmm1, xmm0)?;
                        self.a.seta(al)?;
                    }
                    _ => {
                        self.a.ucomisd(xmm1, xmm0)?;
                        self.a.setae(al)?;
                    }
                }
                self.a.movzx(rax, al)?;
                self.put(a, rax)?;
            }
            Opcode::FSqrt => {
                let x = self.get(b, rax)?;
                self.a.movq(xmm0, x)?;
                self.a.sqrtsd(xmm0, xmm0)?;
                self.a.movq(rax, xmm0)?;
                self.put(a, rax)?;
            }
            Opcode::FNeg => {
                self.load(rax, b)?;
                self.a.btc(rax, 63)?;
                self.put(a, rax)?;
            }
            Opcode::IToF => {
                let x = self.get(b, rax)?;
                self.a.cvtsi2sd(xmm0, x)?;
                self.a.movq(rax, xmm0)?;
                self.put(a, rax)?;
            }
            Opcode::FToI => self.ftoi(a, b)?,
            Opcode::Ld8U
            | Opcode::Ld8S
            | Opcode::Ld16U
            | Opcode::Ld16S
            | Opcode::Ld32U
            | Opcode::Ld32S
            | Opcode::Ld64 => {
                let n = match i.op {
                    Opcode::Ld8U | Opcode::Ld8S => 1,
                    Opcode::Ld16U | Opcode::Ld16S => 2,
                    Opcode::Ld32U | Opcode::Ld32S => 4,
                    _ => 8,
                };
                self.address(b, imm, n, k)?;
                let dst = self.host(a).unwrap_or(rax);
                match i.op {
                    Opcode::Ld8U => self.a.movzx(dst, byte_ptr(r14 + rax))?,
                    Opcode::Ld8S => self.a.movsx(dst, byte_ptr(r14 + rax))?,
                    Opcode::Ld16U => self.a.movzx(dst, word_ptr(r14 + rax))?,
                    Opcode::Ld16S => self.a.movsx(dst, word_ptr(r14 + rax))?,
                    Opcode::Ld32U => self.a.mov(eax, dword_ptr(r14 + rax))?,
                    Opcode::Ld32S => self.a.movsxd(dst, dword_ptr(r14 + rax))?,
                    _ => self.a.mov(dst, qword_ptr(r14 + rax))?,
                }
                if i.op == Opcode::Ld32U || dst == rax {
                    self.put(a, rax)?;
                }
            }
            Opcode::St8 | Opcode::St16 | Opcode::St32 | Opcode::St64 => {
                let n = match i.op {
                    Opcode::St8 => 1,
                    Opcode::St16 => 2,
                    Opcode::St32 => 4,
                    _ => 8,
                };
                self.address(b, imm, n, k)?;
                // A store below the end of the code may overwrite code: the
                // interpreter does it, and the dispatcher invalidates blocks.
                let stub = self.interpret_stub(k);
                self.a.cmp(rax, self.layout.code_end as i32)?;
                self.a.jb(stub)?;
                let slot = self.host(a).and_then(|h| HOST_POOL.iter().position(|&p| p == h));
                match (i.op, slot) {
                    (Opcode::St8, Some(s)) => self.a.mov(byte_ptr(r14 + rax), HOST_POOL8[s])?,
                    (Opcode::St16, Some(s)) => self.a.mov(word_ptr(r14 + rax), HOST_POOL16[s])?,
                    (Opcode::St32, Some(s)) => self.a.mov(dword_ptr(r14 + rax), HOST_POOL32[s])?,
                    (_, Some(s)) => self.a.mov(qword_ptr(r14 + rax), HOST_POOL[s])?,
                    (_, None) => {
                        self.a.mov(rcx, ctx_reg(a))?;
                        match i.op {
                            Opcode::St8 => self.a.mov(byte_ptr(r14 + rax), cl)?,
                            Opcode::St16 => self.a.mov(word_ptr(r14 + rax), cx)?,
                            Opcode::St32 => self.a.mov(dword_ptr(r14 + rax), ecx)?,
                            _ => self.a.mov(qword_ptr(r14 + rax), rcx)?,
                        }
                    }
                }
            }
            Opcode::Push => {
                self.load(rdx, a)?;
                self.push_slot(k)?;
                self.a.mov(qword_ptr(r14 + rax), rdx)?;
                self.put(SP, rax)?;
            }
            Opcode::Pop => {
                self.load(rax, SP)?;
                self.bounds(rax, self.layout.mem_size - 8, k)?;
                self.a.mov(rcx, qword_ptr(r14 + rax))?;
                self.a.add(rax, 8)?;
                self.put(SP, rax)?;
                self.put(a, rcx)?;
            }
            Opcode::Jmp => self.direct_or_trap(i, k)?,
            Opcode::Beq | Opcode::Bne | Opcode::Blt | Opcode::Bge | Opcode::Bltu | Opcode::Bgeu => {
                let x = self.get(a, rax)?;
                let y = self.get(b, rcx)?;
                self.a.cmp(x, y)?;
                let target = i.imm as u32 as u64;
                if !self.valid_target(target) {
                    // Taking it traps: let the interpreter report that.
                    let stub = self.interpret_stub(k);
                    self.jcc(i.op, false, stub)?;
                    if k + 1 == self.len {
                        self.direct_exit(pc + INSTR_SIZE)?;
                    }
                } else if k + 1 == self.len {
                    // Last instruction: two chainable exits.
                    let taken = self.a.create_label();
                    self.jcc(i.op, false, taken)?;
                    self.direct_exit(pc + INSTR_SIZE)?;
                    self.direct_exit_at(target, taken)?;
                } else {
                    // A side exit; the block goes on with the fall-through.
                    let mut skip = self.a.create_label();
                    self.jcc(i.op, true, skip)?;
                    self.a.sub(r13, (self.len - k - 1) as i32)?;
                    self.direct_exit(target)?;
                    self.a.set_label(&mut skip)?;
                    self.a.nop()?;
                }
            }
            Opcode::Jr => {
                self.load(rdx, a)?;
                self.lookup(k)?;
                self.a.jmp(qword_ptr(rcx + 8))?;
            }
            Opcode::Call => {
                let target = i.imm as u32 as u64;
                if !self.valid_target(target) {
                    let stub = self.interpret_stub(k);
                    return self.a.jmp(stub);
                }
                self.push_slot(k)?;
                self.a.mov(qword_ptr(r14 + rax), (pc + INSTR_SIZE) as i32)?;
                self.put(SP, rax)?;
                self.direct_exit(target)?;
            }
            Opcode::CallR => {
                self.load(rdx, a)?;
                self.lookup(k)?;
                self.push_slot(k)?;
                self.a.mov(qword_ptr(r14 + rax), (pc + INSTR_SIZE) as i32)?;
                self.put(SP, rax)?;
                self.a.jmp(qword_ptr(rcx + 8))?;
            }
            Opcode::Ret => {
                self.load(rax, SP)?;
                self.bounds(rax, self.layout.mem_size - 8, k)?;
                self.a.mov(rdx, qword_ptr(r14 + rax))?;
                self.lookup(k)?;
                self.a.add(rax, 8)?;
                self.put(SP, rax)?;
                self.a.jmp(qword_ptr(rcx + 8))?;
            }
            Opcode::Sys => {
                let stub = self.interpret_stub(k);
                self.a.jmp(stub)?;
            }
        }
        Ok(())
    }

    /// Jumps to `to` if the branch `op` is taken (or, `inverse`, not taken),
    /// after a `cmp` of its two registers.
    fn jcc(&mut self, op: Opcode, inverse: bool, to: CodeLabel) -> Result<(), IcedError> {
        match (op, inverse) {
            (Opcode::Beq, false) | (Opcode::Bne, true) => self.a.je(to),
            (Opcode::Bne, false) | (Opcode::Beq, true) => self.a.jne(to),
            (Opcode::Blt, false) | (Opcode::Bge, true) => self.a.jl(to),
            (Opcode::Bge, false) | (Opcode::Blt, true) => self.a.jge(to),
            (Opcode::Bltu, false) | (Opcode::Bgeu, true) => self.a.jb(to),
            _ => self.a.jae(to),
        }
    }

    fn valid_target(&self, t: u64) -> bool {
        t >= self.layout.code_start
            && t < self.layout.code_end
            && (t - self.layout.code_start).is_multiple_of(INSTR_SIZE)
    }

    fn direct_or_trap(&mut self, i: &Instr, k: usize) -> Result<(), IcedError> {
        let target = i.imm as u32 as u64;
        if self.valid_target(target) {
            self.direct_exit(target)
        } else {
            let stub = self.interpret_stub(k);
            self.a.jmp(stub)
        }
    }

    fn setcc(&mut self, op: Opcode) -> Result<(), IcedError> {
        match op {
            Opcode::Seq | Opcode::SeqI => self.a.sete(al)?,
            Opcode::Sne | Opcode::SneI => self.a.setne(al)?,
            Opcode::Slt | Opcode::SltI => self.a.setl(al)?,
            Opcode::Sltu | Opcode::SltuI => self.a.setb(al)?,
            Opcode::Sle | Opcode::SleI => self.a.setle(al)?,
            _ => self.a.setbe(al)?,
        }
        self.a.movzx(rax, al)
    }

    /// rax / rcx (rcx != 0) into guest register d, as `op` says.
    fn divide(&mut self, op: Opcode, d: u8) -> Result<(), IcedError> {
        let signed = matches!(op, Opcode::DivS | Opcode::RemS);
        let rem = matches!(op, Opcode::RemS | Opcode::RemU);
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
            self.a.set_label(&mut normal)?;
            self.a.cqo()?;
            self.a.idiv(rcx)?;
            self.a.set_label(&mut done)?;
        } else {
            self.a.xor(edx, edx)?;
            self.a.div(rcx)?;
        }
        self.put(d, if rem { rdx } else { rax })
    }

    /// rax = rcx / d for the constant behind `plan`; rcx is kept.
    fn div_by_constant(&mut self, plan: ConstDiv) -> Result<(), IcedError> {
        match plan {
            ConstDiv::Identity => self.a.mov(rax, rcx),
            ConstDiv::Negate => {
                self.a.mov(rax, rcx)?;
                self.a.neg(rax)
            }
            ConstDiv::Shift { k, negative } => {
                self.a.mov(rax, rcx)?;
                self.a.sar(rax, 63)?;
                self.a.shr(rax, 64 - k)?;
                self.a.add(rax, rcx)?;
                self.a.sar(rax, k)?;
                if negative {
                    self.a.neg(rax)?;
                }
                Ok(())
            }
            ConstDiv::Magic { m, s, add } => {
                self.a.mov(rax, m)?;
                self.a.imul(rcx)?;
                match add {
                    1 => self.a.add(rdx, rcx)?,
                    -1 => self.a.sub(rdx, rcx)?,
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

    /// f64 to i64, truncating, saturating, NaN to 0 (as `semantics::ftoi`).
    fn ftoi(&mut self, a: u8, b: u8) -> Result<(), IcedError> {
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
        self.a.set_label(&mut nan)?;
        self.a.xor(eax, eax)?;
        self.a.set_label(&mut done)?;
        self.put(a, rax)
    }
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
        if i.op.info().ends_block && i.op.info().format != Format::Branch {
            break;
        }
        at += INSTR_SIZE;
    }
    out
}

/// Translates the block at `pc` for execution at address `at`. `None` if
/// there is no instruction to translate there (the dispatcher interprets).
pub fn translate(
    m: &Machine,
    pc: u64,
    layout: &Layout,
    map: RegMap,
    at: u64,
    first_exit_id: u32,
) -> Result<Option<Translated>, IcedError> {
    translate_with(CodeAssembler::new(64)?, m, pc, layout, map, at, first_exit_id).map(|(t, _)| t)
}

/// [`translate`] reusing an assembler (cleared first), which it hands back.
pub fn translate_with(
    mut assembler: CodeAssembler,
    m: &Machine,
    pc: u64,
    layout: &Layout,
    map: RegMap,
    at: u64,
    first_exit_id: u32,
) -> Result<(Option<Translated>, CodeAssembler), IcedError> {
    let instrs = scan(m, pc);
    if instrs.is_empty() {
        return Ok((None, assembler));
    }
    assembler.reset();
    let len = instrs.len();
    let mut e = Emitter {
        a: assembler,
        len,
        map,
        layout: *layout,
        stubs: Vec::new(),
        next_exit_id: first_exit_id,
        exits: Vec::new(),
    };
    // Retired count, and the fuel check if there is a limit.
    e.a.add(r13, len as i32)?;
    if layout.fuel_limited {
        let stub = e.interpret_stub(0);
        e.a.cmp(r13, qword_ptr(r15 + OFF_FUEL))?;
        e.a.ja(stub)?;
    }
    for (k, i) in instrs.iter().enumerate() {
        e.instr(i, k, pc + k as u64 * INSTR_SIZE)?;
    }
    if !instrs[len - 1].op.info().ends_block {
        e.direct_exit(pc + len as u64 * INSTR_SIZE)?;
    }
    // (a last conditional branch made its own two exits)
    // Stubs, out of the hot path.
    let stubs = std::mem::take(&mut e.stubs);
    let mut stub_labels = Vec::with_capacity(stubs.len());
    for (mut label, kind) in stubs {
        e.a.set_label(&mut label)?;
        stub_labels.push(label);
        // Two instructions each: rax packs what the shared handler in the
        // trampoline needs (see `trampoline`).
        match kind {
            StubKind::Interpret(k) => {
                let guest = pc + k as u64 * INSTR_SIZE;
                e.a.mov(rax, ((len - k) as u64) << 32 | guest)?;
                e.a.jmp(layout.interpret_addr)?;
            }
            StubKind::Direct { target, id } => {
                e.a.mov(rax, u64::from(EXIT_DIRECT + id) << 32 | target)?;
                e.a.jmp(layout.direct_addr)?;
            }
        }
    }
    let result = e.a.assemble_options(at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let mut code = result.inner.code_buffer.clone();
    let mut exits = Vec::new();
    for (jump, stub, target) in &e.exits {
        let j = (result.label_ip(jump)? - at) as usize;
        let s = (result.label_ip(&stub_labels[*stub])? - at) as usize;
        let rel = (s as i64 - (j as i64 + 5)) as i32;
        code[j + 1..j + 5].copy_from_slice(&rel.to_le_bytes());
        exits.push(ExitSite { jump_offset: j, stub_offset: s, target: *target });
    }
    Ok((Some(Translated { code, guest_start: pc, len: len as u32, exits }), e.a))
}

/// The entry and exit trampoline, for execution at `at`: returns the code
/// and the offset of the common exit.
///
/// `enter(ctx, host_address) -> exit code` saves the callee-saved registers,
/// loads the mapped guest registers from the context and jumps; the common
/// exit stores them back and returns the code left in eax.
pub fn trampoline(map: RegMap, at: u64) -> Result<(Vec<u8>, TrampolineOffsets), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r)?;
    }
    a.sub(rsp, 8)?;
    a.mov(r15, rdi)?;
    a.mov(rax, rsi)?; // rsi and rdi may hold guest registers below
    a.mov(r14, qword_ptr(r15 + OFF_MEM))?;
    a.mov(r13, qword_ptr(r15 + OFF_RETIRED))?;
    for (g, h) in map.0.iter().enumerate() {
        if let Some(h) = *h {
            a.mov(h, ctx_reg(g as u8))?;
        }
    }
    a.jmp(rax)?;
    // Interpret stubs: rewind the retired count, record the pc, code 0.
    let mut interpret = a.create_label();
    let mut exit = a.create_label();
    a.set_label(&mut interpret)?;
    a.mov(rcx, rax)?;
    a.shr(rcx, 32)?;
    a.sub(r13, rcx)?;
    a.mov(eax, eax)?;
    a.mov(qword_ptr(r15 + OFF_EXIT_PC), rax)?;
    a.mov(eax, EXIT_INTERPRET)?;
    a.jmp(exit)?;
    // Direct-exit stubs: record the target pc, return the exit code.
    let mut direct = a.create_label();
    a.set_label(&mut direct)?;
    a.mov(ecx, eax)?;
    a.mov(qword_ptr(r15 + OFF_EXIT_PC), rcx)?;
    a.shr(rax, 32)?;
    a.set_label(&mut exit)?;
    for (g, h) in map.0.iter().enumerate() {
        if let Some(h) = *h {
            a.mov(ctx_reg(g as u8), h)?;
        }
    }
    a.mov(qword_ptr(r15 + OFF_RETIRED), r13)?;
    a.add(rsp, 8)?;
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r)?;
    }
    a.ret()?;
    let result = a.assemble_options(at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let offset = |l: &CodeLabel| result.label_ip(l).map(|ip| (ip - at) as usize);
    let offsets = TrampolineOffsets { exit: offset(&exit)?, interpret: offset(&interpret)?, direct: offset(&direct)? };
    Ok((result.inner.code_buffer.clone(), offsets))
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore]
    fn translation_speed() {
        let p = crate::programs::find("isa").unwrap();
        let image = crate::run::build(p.name, p.kind, p.source.as_bytes(), Default::default()).unwrap();
        let m = Machine::new(&image, 16).unwrap();
        let map = RegMap::for_code(&m.mem[m.code_start as usize..m.code_end as usize]);
        let layout = Layout {
            mem_size: m.mem.len() as u64,
            code_start: m.code_start,
            code_end: m.code_end,
            stack_limit: m.stack_limit,
            fuel_limited: false,
            exit_addr: 0x7000_0000,
            interpret_addr: 0x7000_0040,
            direct_addr: 0x7000_0080,
        };
        let pcs: Vec<u64> = (0..(m.code_end - m.code_start) / 8).map(|k| m.code_start + k * 8).collect();
        let mut asm = CodeAssembler::new(64).unwrap();
        let mut n = 0u64;
        let t = std::time::Instant::now();
        let mut scan_t = std::time::Duration::ZERO;
        for _ in 0..20 {
            for &pc in &pcs {
                let s = std::time::Instant::now();
                let len = scan(&m, pc).len();
                scan_t += s.elapsed();
                let (tr, a) = translate_with(asm, &m, pc, &layout, map, 0x7100_0000, 0).unwrap();
                asm = a;
                n += u64::from(tr.map_or(0, |t| t.len));
                let _ = len;
            }
        }
        let el = t.elapsed();
        eprintln!("{} guest instrs in {:?}: {:.0} ns each; scan {:?}", n, el, el.as_nanos() as f64 / n as f64, scan_t);
    }
}
#[cfg(test)]
mod asm_cost {
    use super::*;
    #[test]
    #[ignore]
    fn assemble_cost() {
        for n in [1usize, 10, 100, 1000] {
            let mut a = CodeAssembler::new(64).unwrap();
            let t = std::time::Instant::now();
            let reps = 2000 / n.max(1) + 10;
            for _ in 0..reps {
                a.reset();
                for _ in 0..n {
                    a.add(rax, qword_ptr(r15 + 8)).unwrap();
                }
                let mut l = a.create_label();
                a.set_label(&mut l).unwrap();
                a.jmp(0x7000_1000u64).unwrap();
                a.assemble_options(0x7000_0000, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS).unwrap();
            }
            let per = t.elapsed().as_nanos() as f64 / reps as f64;
            eprintln!("n={n}: {per:.0} ns per assemble, {:.0} per instr", per / n as f64);
        }
    }
}
