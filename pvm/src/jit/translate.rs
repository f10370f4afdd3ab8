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

use super::code_memory::rel32_at;
use super::context::*;
use super::emit::{ctx_reg, Emitter, StubKind};
use super::encode::BlockEncoding;
use super::JitError;
use crate::isa::{Format, Instr, INSTR_SIZE, NUM_REGS, SP};
use crate::machine::Machine;

/// Bytes of a direct-exit stub: `mov rax, imm64; jmp rel32`.
const DIRECT_STUB_LEN: u64 = 15;

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
    pub fn for_code(code: &[u8], code_start: u64) -> Self {
        let instrs: Vec<Option<Instr>> =
            code.chunks_exact(8).map(|c| Instr::decode(c.try_into().unwrap_or([0xff; 8])).ok()).collect();
        let mut depth = vec![0u32; instrs.len()];
        for (k, i) in instrs.iter().enumerate() {
            let Some(t) = i.and_then(|i| i.target()) else { continue };
            let from = t.wrapping_sub(code_start) / INSTR_SIZE;
            if from <= k as u64 {
                for d in &mut depth[from as usize..=k] {
                    *d = (*d + 1).min(4);
                }
            }
        }
        let mut uses = [0u64; NUM_REGS];
        for (k, i) in instrs.iter().enumerate() {
            let Some(i) = i else { continue };
            let weight = 10u64.pow(depth[k]);
            for f in i.named_regs() {
                uses[usize::from(f)] += weight;
            }
            if i.op.info().class.moves_sp() {
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
    /// The trap table: (offset of each guest access, offset of its
    /// instruction's interpret stub), sorted.
    pub traps: Vec<(u32, u32)>,
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

/// Guest registers worth keeping in XMM registers for a whole block: the
/// block loops to its own start, the registers are read by float
/// instructions, and every write to them in the block is a float result
/// (which updates the XMM copy). Empty for blocks that do not loop.
pub fn pinned_floats(instrs: &[Instr], pc: u64) -> Vec<u8> {
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

/// Translates the block at `pc` for execution at address `at`, with
/// `assembler` (cleared first), which it hands back for the next block, and
/// `encoding`'s buffers. `None` if there is no instruction to translate
/// there (the dispatcher interprets).
#[allow(clippy::too_many_arguments)]
pub fn translate(
    mut assembler: CodeAssembler,
    encoding: &mut BlockEncoding,
    m: &Machine,
    pc: u64,
    layout: &Layout,
    map: RegMap,
    at: u64,
    first_exit_id: u32,
    specialize: bool,
) -> Result<(Option<Translated>, CodeAssembler), JitError> {
    let instrs = scan(m, pc);
    if instrs.is_empty() {
        return Ok((None, assembler));
    }
    assembler.reset();
    let len = instrs.len();
    let known = if specialize { super::specialize::assumptions(&instrs, pc, &m.regs) } else { [None; NUM_REGS] };
    let pinned = pinned_floats(&instrs, pc);
    let entry = assembler.create_label();
    let mut body = assembler.create_label();
    let mut e = Emitter {
        counted: 0,
        sp_pending: 0,
        pinned: [false; 14],
        bound_at: None,
        entry,
        block_pc: pc,
        a: assembler,
        xmm: [None; 14],
        next_victim: 0,
        sole: [false; 14],
        len,
        map,
        layout: *layout,
        stubs: Vec::new(),
        next_exit_id: first_exit_id,
        exits: Vec::new(),
        known,
        instrs,
        push_covered: 0,
        pop_covered: 0,
        skip_next: false,
        trap_sites: Vec::new(),
    };
    // Float registers of a loop stay in XMM registers across its back-edge:
    // loaded here, before the loop head the back-edge jumps to.
    e.pin(&pinned)?;
    // The guards of the block's assumptions, which hold on its back-edges
    // (see `specialize::assumptions`): those jump past them, to the count.
    e.guards()?;
    // Retired count, and the fuel check if there is a limit.
    let mut entry = e.entry;
    e.bind(&mut entry)?;
    e.count_segment(0)?;
    let entry_count = e.counted as u32;
    let body_at = e.bind(&mut body)?;
    if layout.fuel_limited {
        // Enough fuel for the whole block, or one instruction at a time.
        let stub = e.interpret_stub(0);
        let rest = (len - e.counted) as i32;
        if rest == 0 {
            e.a.cmp(r13, qword_ptr(r15 + OFF_FUEL))?;
        } else {
            e.a.lea(rax, qword_ptr(r13 + rest))?;
            e.a.cmp(rax, qword_ptr(r15 + OFF_FUEL))?;
        }
        e.a.ja(stub)?;
    }
    for k in 0..len {
        if std::mem::take(&mut e.skip_next) {
            continue;
        }
        let i = e.instrs[k];
        e.instr(&i, k, pc + k as u64 * INSTR_SIZE)?;
    }
    if !e.instrs[len - 1].op.info().ends_block {
        e.flush_sp()?;
        e.direct_exit(pc + len as u64 * INSTR_SIZE, 0)?;
    }
    // (a last conditional branch made its own two exits)
    // Stubs, out of the hot path: two instructions each, rax packing what
    // the shared handler in the trampoline needs (see `trampoline`). Those
    // of direct exits, the most, are plain bytes after the encoded block
    // (only the exits' patched jumps reach them); the others are labels.
    // (a stub may add others: an index, not an iterator)
    // (where each stub is: an instruction index, or an index in `direct`)
    enum Place {
        Label(usize),
        Bytes(usize),
    }
    let mut stub_at = Vec::with_capacity(e.stubs.len());
    let mut direct = Vec::new();
    let mut n = 0;
    while n < e.stubs.len() {
        let (mut label, kind) = e.stubs[n];
        n += 1;
        match kind {
            StubKind::Remainder { rem, target } => {
                stub_at.push(Place::Label(e.bind(&mut label)?));
                e.remainder_stub(rem, target)?;
            }
            StubKind::Interpret { k, rewind, sp_move } => {
                stub_at.push(Place::Label(e.bind(&mut label)?));
                if let (Some(h), true) = (e.host(SP), sp_move != 0) {
                    e.a.add(h, sp_move)?;
                }
                let guest = pc + k as u64 * INSTR_SIZE;
                e.a.mov(rax, (rewind as u64) << 32 | guest)?;
                e.a.jmp(layout.interpret_addr)?;
            }
            StubKind::Direct { target, id } => {
                stub_at.push(Place::Bytes(direct.len()));
                direct.push(u64::from(EXIT_DIRECT + id) << 32 | target);
            }
            StubKind::Despecialize { rewind } => {
                stub_at.push(Place::Label(e.bind(&mut label)?));
                e.a.sub(r13, rewind as i32)?;
                e.a.mov(rax, u64::from(EXIT_DESPECIALIZE) << 32 | pc)?;
                e.a.jmp(layout.direct_addr)?;
            }
        }
    }
    let mut code = Vec::new();
    encoding.encode(e.a.instructions(), at, &mut code)?;
    let mut direct_at = Vec::with_capacity(direct.len());
    for packed in direct {
        // mov rax, imm64; jmp rel32
        let off = code.len();
        let rel = (layout.direct_addr as i64 - (at + off as u64 + DIRECT_STUB_LEN) as i64) as i32;
        code.extend_from_slice(&[0x48, 0xb8]);
        code.extend_from_slice(&packed.to_le_bytes());
        code.push(0xe9);
        code.extend_from_slice(&rel.to_le_bytes());
        direct_at.push(off);
    }
    let stub_offsets: Vec<usize> = stub_at
        .iter()
        .map(|p| match *p {
            Place::Label(k) => encoding.offsets[k],
            Place::Bytes(d) => direct_at[d],
        })
        .collect();
    let mut exits = Vec::with_capacity(e.exits.len());
    for &(jump, stub, target, retired) in &e.exits {
        let (j, s) = (encoding.offsets[jump], stub_offsets[stub]);
        debug_assert!(retired.is_none() || code[j - 7..j - 4] == [0x49, 0x81, 0xc5], "count add before its jump");
        let field = j + rel32_at(code[j]);
        let rel = (s as i64 - (field as i64 + 4)) as i32;
        code[field..field + 4].copy_from_slice(&rel.to_le_bytes());
        exits.push(ExitSite { jump_offset: j, stub_offset: s, target, retired });
    }
    // (a chained jump past the start would skip the pinned loads or guards)
    let body_offset = (pinned.is_empty() && e.known.iter().all(Option::is_none)).then(|| encoding.offsets[body_at]);
    let mut traps: Vec<(u32, u32)> =
        e.trap_sites.iter().map(|&(at, stub)| (encoding.offsets[at] as u32, stub_offsets[stub] as u32)).collect();
    traps.sort_unstable();
    let t = Translated { code, guest_start: pc, len: len as u32, entry_count, body_offset, exits, traps };
    Ok((Some(t), e.a))
}

/// The entry and exit trampoline, for execution at `at`: returns the code
/// and the offsets of its entry points.
///
/// `enter(ctx, host_address) -> exit code` saves the callee-saved registers,
/// loads the mapped guest registers from the context and jumps; the common
/// exit stores them back and returns the code left in eax.
pub fn trampoline(map: RegMap, at: u64) -> Result<(Vec<u8>, TrampolineOffsets), JitError> {
    let mut a = CodeAssembler::new(64)?;
    for r in [rbx, rbp, r12, r13, r14, r15] {
        a.push(r)?;
    }
    a.sub(rsp, 8)?;
    a.mov(r15, rdi)?;
    // Guest calls push host frames below here (see `Opcode::Call`).
    a.mov(qword_ptr(r15 + OFF_SP_BASE), rsp)?;
    a.lea(rcx, qword_ptr(rsp - 16 * HOST_FRAMES))?;
    a.mov(qword_ptr(r15 + OFF_SP_LIMIT), rcx)?;
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
    let interpret_at = a.instructions().len();
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
    let direct_at = a.instructions().len();
    a.set_label(&mut direct)?;
    a.mov(ecx, eax)?;
    a.mov(qword_ptr(r15 + OFF_EXIT_PC), rcx)?;
    a.shr(rax, 32)?;
    let exit_at = a.instructions().len();
    a.set_label(&mut exit)?;
    for (g, h) in map.0.iter().enumerate() {
        if let Some(h) = *h {
            a.mov(ctx_reg(g as u8), h)?;
        }
    }
    a.mov(qword_ptr(r15 + OFF_RETIRED), r13)?;
    // Drops the host frames of guest calls still open.
    a.mov(rsp, qword_ptr(r15 + OFF_SP_BASE))?;
    a.add(rsp, 8)?;
    for r in [r15, r14, r13, r12, rbp, rbx] {
        a.pop(r)?;
    }
    a.ret()?;
    let mut encoding = BlockEncoding::new();
    let mut code = Vec::new();
    encoding.encode(a.instructions(), at, &mut code)?;
    let o = &encoding.offsets;
    Ok((code, TrampolineOffsets { exit: o[exit_at], interpret: o[interpret_at], direct: o[direct_at] }))
}
