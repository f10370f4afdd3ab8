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

use super::block::{scan, ExitSite, Layout, RegMap, TrampolineOffsets, Translated, TrapSite};
use super::code_memory::rel32_at;
use super::context::*;
use super::emit::{ctx_reg, Emitter, StubKind};
use super::encode::BlockEncoding;
use super::plan::Plan;
use super::JitError;
use crate::isa::{INSTR_SIZE, SP};
use crate::machine::Machine;

/// Bytes of a direct-exit stub: `mov rax, imm64; jmp rel32`.
const DIRECT_STUB_LEN: u64 = 15;

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
    let plan = Plan::new(instrs, pc, &m.regs, layout, specialize);
    let entry = assembler.create_label();
    let mut body = assembler.create_label();
    let mut e = Emitter {
        counted: 0,
        sp_pending: 0,
        pinned: [false; 14],
        bound_at: None,
        entry,
        a: assembler,
        xmm: [None; 14],
        next_victim: 0,
        sole: [false; 14],
        map,
        layout: *layout,
        stubs: Vec::new(),
        next_exit_id: first_exit_id,
        exits: Vec::new(),
        plan,
        push_covered: 0,
        pop_covered: 0,
        trap_sites: Vec::new(),
    };
    // Float registers of a loop stay in XMM registers across its back-edge:
    // loaded here, before the loop head the back-edge jumps to.
    let pinned = e.plan.pinned.clone();
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
        if !e.plan.steps[k].merged {
            e.instr(k, pc + k as u64 * INSTR_SIZE)?;
        }
    }
    if !e.plan.instrs[len - 1].op.info().ends_block {
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
    let body_offset =
        (pinned.is_empty() && e.plan.known.iter().all(Option::is_none)).then(|| encoding.offsets[body_at]);
    let mut traps: Vec<TrapSite> = e
        .trap_sites
        .iter()
        .map(|&(at, stub, guarded)| TrapSite {
            at: encoding.offsets[at] as u32,
            stub: stub_offsets[stub] as u32,
            guarded,
        })
        .collect();
    traps.sort_unstable_by_key(|t| t.at);
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
