//! The interpreter: decode once into a compact array, then a tight loop
//! over it. Stores into the code section re-decode the slots they touch,
//! so self-modifying programs see their new instructions at once.

use std::io::Write;
use std::sync::Arc;

use crate::disasm;
use crate::isa::{Class, DecodeError, Instr, Opcode, INSTR_SIZE, SP};
use crate::kick::Kick;
use crate::machine::{sys, Machine, Rmw, SysIo, Syscall};
use crate::semantics as sem;
use crate::trap::{Trap, TrapKind};

mod threaded;

/// A pre-decoded instruction: the fields, and for direct control transfers
/// the slot index of the target (`NO_TARGET` if it is not an instruction).
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// `None` for bytes that do not decode; the error is recomputed on a trap.
    op: Option<Opcode>,
    a: u8,
    b: u8,
    c: u8,
    imm: i32,
    target: u32,
    /// The translator's block ends after it (see `jit::block::scan`).
    ends_block: bool,
}

const NO_TARGET: u32 = u32::MAX;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `sys exit` with this status.
    Exited(i32),
    /// `sys return`: the embedder takes over (the machine can run on).
    Returned,
    /// A trap.
    Trapped(Trap),
    /// Stopped before a thread instruction at the machine's pc (or a
    /// blocking syscall the scheduler jackets), not yet retired: the
    /// thread scheduler performs it (see `crate::threads`).
    ThreadOp,
}

/// Counters of a run, filled when asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterpStats {
    /// Retired instructions per opcode byte.
    pub histogram: Vec<u64>,
    /// Times pre-decoded slots were refreshed after a store into code.
    pub redecodes: u64,
}

/// The interpreter's pre-decoded view of the code section.
#[derive(Debug)]
pub struct Interpreter {
    slots: Vec<Slot>,
    code_start: u64,
    redecodes: u64,
    /// Stores into the code section since the last `take_code_writes`.
    code_writes: Vec<(u64, u64)>,
    /// Stop before `sys 7` (sleep) and `sys 2` (read) too: the scheduler
    /// turns them into a park plus a switch (`--jacket`).
    defer_blocking: bool,
    /// Another thread's request to stop (`run_kickable`).
    kick: Option<Arc<Kick>>,
}

fn decode_slot(m: &Machine, addr: u64) -> Slot {
    let bytes = m.fetch(addr).unwrap_or([0xff; 8]);
    match Instr::decode(bytes) {
        Ok(i) => {
            let target = match i.target() {
                Some(t) if m.is_code_addr(t) => ((t - m.code_start) / INSTR_SIZE) as u32,
                _ => NO_TARGET,
            };
            let info = i.op.info();
            let ends_block = info.ends_block && info.class != Class::Branch;
            Slot { op: Some(i.op), a: i.a, b: i.b, c: i.c, imm: i.imm, target, ends_block }
        }
        Err(_) => Slot { op: None, a: 0, b: 0, c: 0, imm: 0, target: NO_TARGET, ends_block: true },
    }
}

/// Builds the trap record for `kind` at `pc`.
pub fn trap_at(m: &Machine, kind: TrapKind, pc: u64) -> Trap {
    Trap { kind, pc, instruction: disasm::describe(m.fetch(pc)), retired: m.retired }
}

/// How a run that stopped before the instruction at `m.pc` (its fuel, a
/// slice's limit, a kick) ends: a fuel trap there, which the thread models
/// read as the end of a slice.
pub fn stopped_at(m: &Machine) -> Outcome {
    Outcome::Trapped(trap_at(m, TrapKind::FuelExhausted, m.pc))
}

impl Interpreter {
    /// Decodes the machine's code section.
    pub fn new(m: &Machine) -> Self {
        let n = ((m.code_end - m.code_start) / INSTR_SIZE) as usize;
        let slots = (0..n).map(|k| decode_slot(m, m.code_start + k as u64 * INSTR_SIZE)).collect();
        Interpreter {
            slots,
            code_start: m.code_start,
            redecodes: 0,
            code_writes: Vec::new(),
            defer_blocking: false,
            kick: None,
        }
    }

    /// Whether `sys 7` and `sys 2` stop the run for the scheduler
    /// ([`Outcome::ThreadOp`]) instead of blocking.
    pub fn set_defer_blocking(&mut self, on: bool) {
        self.defer_blocking = on;
    }

    /// Re-decodes the slots of code another thread overwrote (its stores
    /// reach this interpreter's view at its next stop).
    pub fn refresh_code(&mut self, m: &Machine, addr: u64, n: u64) {
        let writes = self.code_writes.len();
        self.code_written(m, addr, n);
        self.code_writes.truncate(writes);
    }

    /// Re-decodes the slots a store of `n` bytes at `addr` touched.
    fn code_written(&mut self, m: &Machine, addr: u64, n: u64) {
        let start = addr.max(m.code_start);
        let end = addr.saturating_add(n).min(m.code_end);
        if start >= end {
            return;
        }
        let first = (start - self.code_start) / INSTR_SIZE;
        let last = (end - 1 - self.code_start) / INSTR_SIZE;
        for k in first..=last {
            self.slots[k as usize] = decode_slot(m, self.code_start + k * INSTR_SIZE);
        }
        // A direct branch elsewhere may now point at a changed slot: targets
        // are slot indices, so they stay valid.
        self.redecodes += 1;
        self.code_writes.push((addr, n));
    }

    /// The code section's instructions as decoded now (`None` where the
    /// bytes are no instruction).
    pub fn instrs(&self) -> impl Iterator<Item = Option<Instr>> + Clone + '_ {
        self.slots.iter().map(|s| s.op.map(|op| Instr::new(op, s.a, s.b, s.c, s.imm)))
    }

    /// The ranges `(address, length)` of code overwritten since the last call.
    pub fn take_code_writes(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.code_writes)
    }

    /// Runs from `m.pc` until exit or trap, retiring at most `fuel`
    /// instructions in all. `STATS` fills `stats`; `TRACE` writes one line
    /// per retired instruction to `trace`.
    pub fn run<const STATS: bool, const TRACE: bool>(
        &mut self,
        m: &mut Machine,
        io: &mut dyn SysIo,
        fuel: u64,
        stats: &mut InterpStats,
        trace: &mut dyn Write,
    ) -> Outcome {
        self.exec::<STATS, TRACE, false, false>(m, io, fuel, stats, trace).unwrap_or_else(|| stopped_at(m))
    }

    /// Runs from `m.pc` until exit or trap, or until `limit` instructions
    /// have retired in all: `None` then, with the machine before the next
    /// instruction (no trap record is built: the translator's dispatcher
    /// steps through instructions this way).
    pub fn run_until(&mut self, m: &mut Machine, io: &mut dyn SysIo, limit: u64) -> Option<Outcome> {
        self.exec::<false, false, false, false>(m, io, limit, &mut InterpStats::default(), &mut std::io::sink())
    }

    /// [`Interpreter::run_until`], stopping too at the end of the block the
    /// translator would make at `m.pc` (after its last instruction, see
    /// `jit::block::scan`) or after a taken branch: the dispatcher runs a
    /// block that is not hot yet this way, and counts where it went.
    pub fn run_block(&mut self, m: &mut Machine, io: &mut dyn SysIo, limit: u64) -> Option<Outcome> {
        self.exec::<false, false, true, false>(m, io, limit, &mut InterpStats::default(), &mut std::io::sink())
    }

    /// The interpreter loop: `None` when it stopped at `fuel`, or with
    /// `BLOCK` at the end of a block, or with `KICK` after a code write or
    /// at a block boundary after a kick, before the next instruction.
    fn exec<const STATS: bool, const TRACE: bool, const BLOCK: bool, const KICK: bool>(
        &mut self,
        m: &mut Machine,
        io: &mut dyn SysIo,
        fuel: u64,
        stats: &mut InterpStats,
        trace: &mut dyn Write,
    ) -> Option<Outcome> {
        if STATS && stats.histogram.len() < 256 {
            stats.histogram.resize(256, 0);
        }
        let base = self.code_start;
        let mut idx = if m.is_code_addr(m.pc) { ((m.pc - base) / INSTR_SIZE) as usize } else { usize::MAX };
        // Kept in a local (a register) and written back on every way out.
        let mut retired = m.retired;
        macro_rules! pc {
            () => {
                base + idx as u64 * INSTR_SIZE
            };
        }
        macro_rules! trap {
            ($kind:expr) => {{
                m.pc = pc!();
                m.retired = retired;
                let t = trap_at(m, $kind, m.pc);
                stats.redecodes = self.redecodes;
                return Some(Outcome::Trapped(t));
            }};
        }
        macro_rules! tryt {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(kind) => trap!(kind),
                }
            };
        }
        loop {
            let Some(&slot) = self.slots.get(idx) else {
                let addr = if idx == usize::MAX { m.pc } else { pc!() };
                m.pc = addr;
                m.retired = retired;
                stats.redecodes = self.redecodes;
                return Some(Outcome::Trapped(trap_at(m, TrapKind::BadJumpTarget(addr), addr)));
            };
            if retired >= fuel {
                m.pc = pc!();
                m.retired = retired;
                stats.redecodes = self.redecodes;
                return None;
            }
            let op = match slot.op {
                Some(op) => op,
                None => {
                    let bytes = m.fetch(pc!()).unwrap_or([0xff; 8]);
                    let e = Instr::decode(bytes).err().unwrap_or(DecodeError::UnknownOpcode(bytes[0]));
                    trap!(TrapKind::InvalidInstruction(e))
                }
            };
            let (a, b, c) = (usize::from(slot.a & 15), usize::from(slot.b & 15), usize::from(slot.c & 15));
            let imm = slot.imm as i64 as u64;
            let before = if TRACE { m.regs } else { [0; 16] };
            let mut next = idx + 1;
            macro_rules! branch {
                ($cond:expr) => {
                    if $cond {
                        if slot.target == NO_TARGET {
                            trap!(TrapKind::BadJumpTarget(slot.imm as u32 as u64));
                        }
                        next = slot.target as usize;
                    }
                };
            }
            macro_rules! jump_to {
                ($addr:expr) => {{
                    let t: u64 = $addr;
                    if !m.is_code_addr(t) {
                        trap!(TrapKind::BadJumpTarget(t));
                    }
                    next = ((t - base) / INSTR_SIZE) as usize;
                }};
            }
            macro_rules! load {
                ($n:literal, $ext:expr) => {{
                    let v = tryt!(m.load::<$n>(m.regs[b].wrapping_add(imm)));
                    m.regs[a] = $ext(v);
                }};
            }
            macro_rules! linear_load {
                ($n:literal, $ext:expr) => {{
                    let addr = tryt!(sem::linear_address(m.regs[b], slot.imm, $n, m.regs[c]));
                    let v = tryt!(m.load::<$n>(addr));
                    m.regs[a] = $ext(v);
                }};
            }
            macro_rules! linear_store {
                ($n:literal) => {{
                    let addr = tryt!(sem::linear_address(m.regs[b], slot.imm, $n, m.regs[c]));
                    let v = m.regs[a];
                    tryt!(m.store::<$n>(addr, v));
                    if m.touches_code(addr, $n) {
                        self.code_written(m, addr, $n);
                    }
                }};
            }
            macro_rules! atomic {
                ($rmw:expr) => {{
                    let addr = m.regs[b].wrapping_add(imm);
                    m.regs[a] = tryt!(m.atomic(addr, $rmw));
                    if m.touches_code(addr, 8) {
                        self.code_written(m, addr, 8);
                    }
                }};
            }
            macro_rules! store {
                ($n:literal) => {{
                    let (addr, v) = (m.regs[b].wrapping_add(imm), m.regs[a]);
                    tryt!(m.store::<$n>(addr, v));
                    if m.touches_code(addr, $n) {
                        self.code_written(m, addr, $n);
                    }
                }};
            }
            match op {
                Opcode::Nop => {}
                Opcode::Mov => m.regs[a] = m.regs[b],
                Opcode::Li => m.regs[a] = imm,
                Opcode::Lih => m.regs[a] = sem::lih(m.regs[a], slot.imm),
                Opcode::Add => m.regs[a] = sem::add(m.regs[b], m.regs[c]),
                Opcode::Sub => m.regs[a] = sem::sub(m.regs[b], m.regs[c]),
                Opcode::Mul => m.regs[a] = sem::mul(m.regs[b], m.regs[c]),
                Opcode::DivS => m.regs[a] = tryt!(sem::div_s(m.regs[b], m.regs[c])),
                Opcode::DivU => m.regs[a] = tryt!(sem::div_u(m.regs[b], m.regs[c])),
                Opcode::RemS => m.regs[a] = tryt!(sem::rem_s(m.regs[b], m.regs[c])),
                Opcode::RemU => m.regs[a] = tryt!(sem::rem_u(m.regs[b], m.regs[c])),
                Opcode::And => m.regs[a] = m.regs[b] & m.regs[c],
                Opcode::Or => m.regs[a] = m.regs[b] | m.regs[c],
                Opcode::Xor => m.regs[a] = m.regs[b] ^ m.regs[c],
                Opcode::Shl => m.regs[a] = sem::shl(m.regs[b], m.regs[c]),
                Opcode::Shr => m.regs[a] = sem::shr(m.regs[b], m.regs[c]),
                Opcode::Sar => m.regs[a] = sem::sar(m.regs[b], m.regs[c]),
                Opcode::Seq => m.regs[a] = sem::seq(m.regs[b], m.regs[c]),
                Opcode::Sne => m.regs[a] = sem::sne(m.regs[b], m.regs[c]),
                Opcode::Slt => m.regs[a] = sem::slt(m.regs[b], m.regs[c]),
                Opcode::Sltu => m.regs[a] = sem::sltu(m.regs[b], m.regs[c]),
                Opcode::Sle => m.regs[a] = sem::sle(m.regs[b], m.regs[c]),
                Opcode::Sleu => m.regs[a] = sem::sleu(m.regs[b], m.regs[c]),
                Opcode::AddI => m.regs[a] = sem::add(m.regs[b], imm),
                Opcode::SubI => m.regs[a] = sem::sub(m.regs[b], imm),
                Opcode::MulI => m.regs[a] = sem::mul(m.regs[b], imm),
                Opcode::DivSI => m.regs[a] = tryt!(sem::div_s(m.regs[b], imm)),
                Opcode::DivUI => m.regs[a] = tryt!(sem::div_u(m.regs[b], imm)),
                Opcode::RemSI => m.regs[a] = tryt!(sem::rem_s(m.regs[b], imm)),
                Opcode::RemUI => m.regs[a] = tryt!(sem::rem_u(m.regs[b], imm)),
                Opcode::AndI => m.regs[a] = m.regs[b] & imm,
                Opcode::OrI => m.regs[a] = m.regs[b] | imm,
                Opcode::XorI => m.regs[a] = m.regs[b] ^ imm,
                Opcode::ShlI => m.regs[a] = sem::shl(m.regs[b], imm),
                Opcode::ShrI => m.regs[a] = sem::shr(m.regs[b], imm),
                Opcode::SarI => m.regs[a] = sem::sar(m.regs[b], imm),
                Opcode::SeqI => m.regs[a] = sem::seq(m.regs[b], imm),
                Opcode::SneI => m.regs[a] = sem::sne(m.regs[b], imm),
                Opcode::SltI => m.regs[a] = sem::slt(m.regs[b], imm),
                Opcode::SltuI => m.regs[a] = sem::sltu(m.regs[b], imm),
                Opcode::SleI => m.regs[a] = sem::sle(m.regs[b], imm),
                Opcode::SleuI => m.regs[a] = sem::sleu(m.regs[b], imm),
                Opcode::Rotl => m.regs[a] = sem::rotl(m.regs[b], m.regs[c]),
                Opcode::Rotr => m.regs[a] = sem::rotr(m.regs[b], m.regs[c]),
                Opcode::RotlI => m.regs[a] = sem::rotl(m.regs[b], imm),
                Opcode::Clz => m.regs[a] = sem::clz(m.regs[b]),
                Opcode::Ctz => m.regs[a] = sem::ctz(m.regs[b]),
                Opcode::Popcnt => m.regs[a] = sem::popcnt(m.regs[b]),
                Opcode::Sext8 => m.regs[a] = sem::sext8(m.regs[b]),
                Opcode::Sext16 => m.regs[a] = sem::sext16(m.regs[b]),
                Opcode::Sext32 => m.regs[a] = sem::sext32(m.regs[b]),
                Opcode::Zext32 => m.regs[a] = sem::zext32(m.regs[b]),
                Opcode::Sext8To32 => m.regs[a] = sem::sext8_32(m.regs[b]),
                Opcode::Sext16To32 => m.regs[a] = sem::sext16_32(m.regs[b]),
                Opcode::Add32 => m.regs[a] = sem::add32(m.regs[b], m.regs[c]),
                Opcode::Sub32 => m.regs[a] = sem::sub32(m.regs[b], m.regs[c]),
                Opcode::Mul32 => m.regs[a] = sem::mul32(m.regs[b], m.regs[c]),
                Opcode::And32 => m.regs[a] = sem::and32(m.regs[b], m.regs[c]),
                Opcode::Or32 => m.regs[a] = sem::or32(m.regs[b], m.regs[c]),
                Opcode::Xor32 => m.regs[a] = sem::xor32(m.regs[b], m.regs[c]),
                Opcode::Shl32 => m.regs[a] = sem::shl32(m.regs[b], m.regs[c]),
                Opcode::Shr32 => m.regs[a] = sem::shr32(m.regs[b], m.regs[c]),
                Opcode::Sar32 => m.regs[a] = sem::sar32(m.regs[b], m.regs[c]),
                Opcode::Rotl32 => m.regs[a] = sem::rotl32(m.regs[b], m.regs[c]),
                Opcode::Rotr32 => m.regs[a] = sem::rotr32(m.regs[b], m.regs[c]),
                Opcode::Seq32 => m.regs[a] = sem::seq32(m.regs[b], m.regs[c]),
                Opcode::Sne32 => m.regs[a] = sem::sne32(m.regs[b], m.regs[c]),
                Opcode::Slt32 => m.regs[a] = sem::slt32(m.regs[b], m.regs[c]),
                Opcode::Sltu32 => m.regs[a] = sem::sltu32(m.regs[b], m.regs[c]),
                Opcode::Sle32 => m.regs[a] = sem::sle32(m.regs[b], m.regs[c]),
                Opcode::Sleu32 => m.regs[a] = sem::sleu32(m.regs[b], m.regs[c]),
                Opcode::Clz32 => m.regs[a] = sem::clz32(m.regs[b]),
                Opcode::Ctz32 => m.regs[a] = sem::ctz32(m.regs[b]),
                Opcode::Popcnt32 => m.regs[a] = sem::popcnt32(m.regs[b]),
                Opcode::AddI32 => m.regs[a] = sem::add32(m.regs[b], imm),
                Opcode::SubI32 => m.regs[a] = sem::sub32(m.regs[b], imm),
                Opcode::MulI32 => m.regs[a] = sem::mul32(m.regs[b], imm),
                Opcode::AndI32 => m.regs[a] = sem::and32(m.regs[b], imm),
                Opcode::OrI32 => m.regs[a] = sem::or32(m.regs[b], imm),
                Opcode::XorI32 => m.regs[a] = sem::xor32(m.regs[b], imm),
                Opcode::ShlI32 => m.regs[a] = sem::shl32(m.regs[b], imm),
                Opcode::ShrI32 => m.regs[a] = sem::shr32(m.regs[b], imm),
                Opcode::SarI32 => m.regs[a] = sem::sar32(m.regs[b], imm),
                Opcode::RotlI32 => m.regs[a] = sem::rotl32(m.regs[b], imm),
                Opcode::SeqI32 => m.regs[a] = sem::seq32(m.regs[b], imm),
                Opcode::SneI32 => m.regs[a] = sem::sne32(m.regs[b], imm),
                Opcode::SltI32 => m.regs[a] = sem::slt32(m.regs[b], imm),
                Opcode::SltuI32 => m.regs[a] = sem::sltu32(m.regs[b], imm),
                Opcode::SleI32 => m.regs[a] = sem::sle32(m.regs[b], imm),
                Opcode::SleuI32 => m.regs[a] = sem::sleu32(m.regs[b], imm),
                Opcode::DivST => m.regs[a] = tryt!(sem::div_st(m.regs[b], m.regs[c])),
                Opcode::DivS32 => m.regs[a] = tryt!(sem::div_s32(m.regs[b], m.regs[c])),
                Opcode::DivU32 => m.regs[a] = tryt!(sem::div_u32(m.regs[b], m.regs[c])),
                Opcode::RemS32 => m.regs[a] = tryt!(sem::rem_s32(m.regs[b], m.regs[c])),
                Opcode::RemU32 => m.regs[a] = tryt!(sem::rem_u32(m.regs[b], m.regs[c])),
                Opcode::FMin => m.regs[a] = sem::fmin(m.regs[b], m.regs[c]),
                Opcode::FMax => m.regs[a] = sem::fmax(m.regs[b], m.regs[c]),
                Opcode::FFloor => m.regs[a] = sem::ffloor(m.regs[b]),
                Opcode::FCeil => m.regs[a] = sem::fceil(m.regs[b]),
                Opcode::FTrunc => m.regs[a] = sem::ftrunc(m.regs[b]),
                Opcode::FNearest => m.regs[a] = sem::fnearest(m.regs[b]),
                Opcode::FNe => m.regs[a] = sem::fne(m.regs[b], m.regs[c]),
                Opcode::FAbs => m.regs[a] = sem::fabs(m.regs[b]),
                Opcode::FCopysign => m.regs[a] = sem::fcopysign(m.regs[b], m.regs[c]),
                Opcode::FAdd32 => m.regs[a] = sem::fadd32(m.regs[b], m.regs[c]),
                Opcode::FSub32 => m.regs[a] = sem::fsub32(m.regs[b], m.regs[c]),
                Opcode::FMul32 => m.regs[a] = sem::fmul32(m.regs[b], m.regs[c]),
                Opcode::FDiv32 => m.regs[a] = sem::fdiv32(m.regs[b], m.regs[c]),
                Opcode::FSqrt32 => m.regs[a] = sem::fsqrt32(m.regs[b]),
                Opcode::FMin32 => m.regs[a] = sem::fmin32(m.regs[b], m.regs[c]),
                Opcode::FMax32 => m.regs[a] = sem::fmax32(m.regs[b], m.regs[c]),
                Opcode::FAbs32 => m.regs[a] = sem::fabs32(m.regs[b]),
                Opcode::FNeg32 => m.regs[a] = sem::fneg32(m.regs[b]),
                Opcode::FCopysign32 => m.regs[a] = sem::fcopysign32(m.regs[b], m.regs[c]),
                Opcode::FFloor32 => m.regs[a] = sem::ffloor32(m.regs[b]),
                Opcode::FCeil32 => m.regs[a] = sem::fceil32(m.regs[b]),
                Opcode::FTrunc32 => m.regs[a] = sem::ftrunc32(m.regs[b]),
                Opcode::FNearest32 => m.regs[a] = sem::fnearest32(m.regs[b]),
                Opcode::FEq32 => m.regs[a] = sem::feq32(m.regs[b], m.regs[c]),
                Opcode::FNe32 => m.regs[a] = sem::fne32(m.regs[b], m.regs[c]),
                Opcode::FLt32 => m.regs[a] = sem::flt32(m.regs[b], m.regs[c]),
                Opcode::FLe32 => m.regs[a] = sem::fle32(m.regs[b], m.regs[c]),
                Opcode::I32TruncF32S => m.regs[a] = tryt!(sem::i32_trunc_f32_s(m.regs[b])),
                Opcode::I32TruncF32U => m.regs[a] = tryt!(sem::i32_trunc_f32_u(m.regs[b])),
                Opcode::I32TruncF64S => m.regs[a] = tryt!(sem::i32_trunc_f64_s(m.regs[b])),
                Opcode::I32TruncF64U => m.regs[a] = tryt!(sem::i32_trunc_f64_u(m.regs[b])),
                Opcode::I64TruncF32S => m.regs[a] = tryt!(sem::i64_trunc_f32_s(m.regs[b])),
                Opcode::I64TruncF32U => m.regs[a] = tryt!(sem::i64_trunc_f32_u(m.regs[b])),
                Opcode::I64TruncF64S => m.regs[a] = tryt!(sem::i64_trunc_f64_s(m.regs[b])),
                Opcode::I64TruncF64U => m.regs[a] = tryt!(sem::i64_trunc_f64_u(m.regs[b])),
                Opcode::I32TruncSatF32S => m.regs[a] = sem::i32_trunc_sat_f32_s(m.regs[b]),
                Opcode::I32TruncSatF32U => m.regs[a] = sem::i32_trunc_sat_f32_u(m.regs[b]),
                Opcode::I32TruncSatF64S => m.regs[a] = sem::i32_trunc_sat_f64_s(m.regs[b]),
                Opcode::I32TruncSatF64U => m.regs[a] = sem::i32_trunc_sat_f64_u(m.regs[b]),
                Opcode::I64TruncSatF32S => m.regs[a] = sem::i64_trunc_sat_f32_s(m.regs[b]),
                Opcode::I64TruncSatF32U => m.regs[a] = sem::i64_trunc_sat_f32_u(m.regs[b]),
                Opcode::I64TruncSatF64U => m.regs[a] = sem::i64_trunc_sat_f64_u(m.regs[b]),
                Opcode::F32ConvertI32S => m.regs[a] = sem::f32_convert_i32_s(m.regs[b]),
                Opcode::F32ConvertI32U => m.regs[a] = sem::f32_convert_i32_u(m.regs[b]),
                Opcode::F32ConvertI64S => m.regs[a] = sem::f32_convert_i64_s(m.regs[b]),
                Opcode::F32ConvertI64U => m.regs[a] = sem::f32_convert_i64_u(m.regs[b]),
                Opcode::F64ConvertI32S => m.regs[a] = sem::f64_convert_i32_s(m.regs[b]),
                Opcode::F64ConvertI32U => m.regs[a] = sem::f64_convert_i32_u(m.regs[b]),
                Opcode::F64ConvertI64U => m.regs[a] = sem::f64_convert_i64_u(m.regs[b]),
                Opcode::F32DemoteF64 => m.regs[a] = sem::f32_demote_f64(m.regs[b]),
                Opcode::F64PromoteF32 => m.regs[a] = sem::f64_promote_f32(m.regs[b]),
                Opcode::Lw8U => linear_load!(1, |v| v),
                Opcode::Lw8S => linear_load!(1, sem::sext8),
                Opcode::Lw16U => linear_load!(2, |v| v),
                Opcode::Lw16S => linear_load!(2, sem::sext16),
                Opcode::Lw32U => linear_load!(4, |v| v),
                Opcode::Lw32S => linear_load!(4, sem::sext32),
                Opcode::Lw64 => linear_load!(8, |v| v),
                Opcode::Lw8S32 => linear_load!(1, sem::sext8_32),
                Opcode::Lw16S32 => linear_load!(2, sem::sext16_32),
                Opcode::Sw8 => linear_store!(1),
                Opcode::Sw16 => linear_store!(2),
                Opcode::Sw32 => linear_store!(4),
                Opcode::Sw64 => linear_store!(8),
                Opcode::Blt32 => branch!(sem::slt32(m.regs[a], m.regs[b]) != 0),
                Opcode::Bge32 => branch!(sem::slt32(m.regs[a], m.regs[b]) == 0),
                Opcode::Beqz => branch!(m.regs[a] == 0),
                Opcode::Bnez => branch!(m.regs[a] != 0),
                Opcode::Trap => trap!(TrapKind::Raised(slot.imm as u32)),
                Opcode::Spawn
                | Opcode::Join
                | Opcode::Yield
                | Opcode::TExit
                | Opcode::Tid
                | Opcode::Wait
                | Opcode::Wake => {
                    // The scheduler performs it, from the state before it.
                    m.pc = pc!();
                    m.retired = retired;
                    stats.redecodes = self.redecodes;
                    return Some(Outcome::ThreadOp);
                }
                Opcode::Cas => atomic!(Rmw::Cas { expected: m.regs[a], new: m.regs[c] }),
                Opcode::XAdd => atomic!(Rmw::Add(m.regs[c])),
                Opcode::XChg => atomic!(Rmw::Swap(m.regs[c])),
                Opcode::Fence => std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst),
                Opcode::FAdd => m.regs[a] = sem::fadd(m.regs[b], m.regs[c]),
                Opcode::FSub => m.regs[a] = sem::fsub(m.regs[b], m.regs[c]),
                Opcode::FMul => m.regs[a] = sem::fmul(m.regs[b], m.regs[c]),
                Opcode::FDiv => m.regs[a] = sem::fdiv(m.regs[b], m.regs[c]),
                Opcode::FEq => m.regs[a] = sem::feq(m.regs[b], m.regs[c]),
                Opcode::FLt => m.regs[a] = sem::flt(m.regs[b], m.regs[c]),
                Opcode::FLe => m.regs[a] = sem::fle(m.regs[b], m.regs[c]),
                Opcode::FSqrt => m.regs[a] = sem::fsqrt(m.regs[b]),
                Opcode::FNeg => m.regs[a] = sem::fneg(m.regs[b]),
                Opcode::IToF => m.regs[a] = sem::itof(m.regs[b]),
                Opcode::FToI => m.regs[a] = sem::ftoi(m.regs[b]),
                Opcode::Ld8U => load!(1, |v| v),
                Opcode::Ld8S => load!(1, sem::sext8),
                Opcode::Ld16U => load!(2, |v| v),
                Opcode::Ld16S => load!(2, sem::sext16),
                Opcode::Ld32U => load!(4, |v| v),
                Opcode::Ld32S => load!(4, sem::sext32),
                Opcode::Ld64 => load!(8, |v| v),
                Opcode::St8 => store!(1),
                Opcode::St16 => store!(2),
                Opcode::St32 => store!(4),
                Opcode::St64 => store!(8),
                Opcode::Push => {
                    let v = m.regs[a];
                    tryt!(m.push(v));
                    if m.touches_code(m.regs[usize::from(SP)], 8) {
                        let sp = m.regs[usize::from(SP)];
                        self.code_written(m, sp, 8);
                    }
                }
                Opcode::Pop => m.regs[a] = tryt!(m.pop()),
                Opcode::Jmp => branch!(true),
                Opcode::Beq => branch!(m.regs[a] == m.regs[b]),
                Opcode::Bne => branch!(m.regs[a] != m.regs[b]),
                Opcode::Blt => branch!(sem::lt(m.regs[a], m.regs[b])),
                Opcode::Bge => branch!(sem::ge(m.regs[a], m.regs[b])),
                Opcode::Bltu => branch!(m.regs[a] < m.regs[b]),
                Opcode::Bgeu => branch!(m.regs[a] >= m.regs[b]),
                Opcode::Jr => jump_to!(m.regs[a]),
                Opcode::Call | Opcode::CallR => {
                    let target = if op == Opcode::Call { slot.imm as u32 as u64 } else { m.regs[a] };
                    if op == Opcode::Call && slot.target == NO_TARGET || !m.is_code_addr(target) {
                        trap!(TrapKind::BadJumpTarget(target));
                    }
                    tryt!(m.push(pc!() + INSTR_SIZE));
                    if m.touches_code(m.regs[usize::from(SP)], 8) {
                        let sp = m.regs[usize::from(SP)];
                        self.code_written(m, sp, 8);
                    }
                    next = ((target - base) / INSTR_SIZE) as usize;
                }
                Opcode::Ret => {
                    let sp = m.regs[usize::from(SP)];
                    let t = tryt!(m.load::<8>(sp));
                    if !m.is_code_addr(t) {
                        trap!(TrapKind::BadJumpTarget(t));
                    }
                    m.regs[usize::from(SP)] = sp.wrapping_add(8);
                    next = ((t - base) / INSTR_SIZE) as usize;
                }
                Opcode::Sys if self.defer_blocking && matches!(slot.imm, sys::SLEEP | sys::READ) => {
                    // A jacketed blocking call: the scheduler decides.
                    m.pc = pc!();
                    m.retired = retired;
                    stats.redecodes = self.redecodes;
                    return Some(Outcome::ThreadOp);
                }
                Opcode::Sys => {
                    m.pc = pc!();
                    match tryt!(m.syscall(io, slot.imm)) {
                        end @ (Syscall::Exit(_) | Syscall::Return) => {
                            m.retired = retired + 1;
                            if STATS {
                                stats.histogram[op as usize] += 1;
                            }
                            stats.redecodes = self.redecodes;
                            return Some(match end {
                                Syscall::Exit(status) => Outcome::Exited(status),
                                _ => Outcome::Returned,
                            });
                        }
                        // A read into the code section is a store into code.
                        Syscall::Wrote { addr, len } if m.touches_code(addr, len) => self.code_written(m, addr, len),
                        Syscall::Wrote { .. } | Syscall::Done => {}
                    }
                }
            }
            if STATS {
                stats.histogram[op as usize] += 1;
            }
            if TRACE {
                let pc = pc!();
                let changed: Vec<String> = (0..16)
                    .filter(|&k| m.regs[k] != before[k])
                    .map(|k| format!("{}={:#x}", disasm::reg(k as u8), m.regs[k]))
                    .collect();
                let text = disasm::describe(m.fetch(pc));
                let _ = writeln!(trace, "{pc:#08x}  {text:<28} {}", changed.join(" "));
            }
            retired += 1;
            let boundary = next != idx + 1 || slot.ends_block;
            if (BLOCK && boundary) || (KICK && (!self.code_writes.is_empty() || (boundary && self.kicked()))) {
                idx = next;
                m.pc = pc!();
                m.retired = retired;
                stats.redecodes = self.redecodes;
                return None;
            }
            idx = next;
        }
    }
}
