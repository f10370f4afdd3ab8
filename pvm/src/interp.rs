//! The interpreter: decode once into a compact array, then a tight loop
//! over it. Stores into the code section re-decode the slots they touch,
//! so self-modifying programs see their new instructions at once.

use std::io::Write;
use std::sync::Arc;

use crate::disasm;
use crate::isa::{Instr, Opcode, INSTR_SIZE};
use crate::kick::Kick;
use crate::machine::{Machine, SysIo};
use crate::trap::{Trap, TrapKind};

mod exec;
mod threaded;

/// A pre-decoded instruction, 8 bytes like the encoding, so the loop finds
/// slot `k` at `8 * k` with one addressing mode. A direct control transfer
/// holds the slot index of its target in `imm` instead of the address
/// ([`NO_TARGET`] if that is no instruction; the address is in
/// `Interpreter::imms`).
#[derive(Clone, Copy, Debug)]
struct Slot {
    /// `Trap` with `a` = [`UNDECODABLE`] for bytes that do not decode (the
    /// error is recomputed on the trap): the loop's dispatch then needs no
    /// check of its own for them.
    op: Opcode,
    a: u8,
    b: u8,
    c: u8,
    imm: i32,
}

const NO_TARGET: i32 = -1;
/// The `a` field of a slot whose bytes are no instruction (its op is
/// `Trap`; a decoded register is below 16).
const UNDECODABLE: u8 = u8::MAX;

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
    /// The immediate of each slot's instruction as encoded (a direct
    /// transfer's slot holds its target's index instead).
    imms: Vec<i32>,
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

/// The slot of the instruction at `addr`, and its immediate as encoded.
fn decode_slot(m: &Machine, addr: u64) -> (Slot, i32) {
    let bytes = m.fetch(addr).unwrap_or([0xff; 8]);
    match Instr::decode(bytes) {
        Ok(i) => {
            let imm = match i.target() {
                // Below 2^31: the code section is at most 4 GiB of 8-byte slots.
                Some(t) if m.is_code_addr(t) => i32::try_from((t - m.code_start) / INSTR_SIZE).unwrap_or(NO_TARGET),
                Some(_) => NO_TARGET,
                None => i.imm,
            };
            (Slot { op: i.op, a: i.a, b: i.b, c: i.c, imm }, i.imm)
        }
        Err(_) => (Slot { op: Opcode::Trap, a: UNDECODABLE, b: 0, c: 0, imm: 0 }, 0),
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
        let (slots, imms) = (0..n).map(|k| decode_slot(m, m.code_start + k as u64 * INSTR_SIZE)).unzip();
        Interpreter {
            slots,
            imms,
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
    #[cold]
    #[inline(never)]
    fn code_written(&mut self, m: &Machine, addr: u64, n: u64) {
        let start = addr.max(m.code_start);
        let end = addr.saturating_add(n).min(m.code_end);
        if start >= end {
            return;
        }
        let first = (start - self.code_start) / INSTR_SIZE;
        let last = (end - 1 - self.code_start) / INSTR_SIZE;
        for k in first..=last {
            (self.slots[k as usize], self.imms[k as usize]) = decode_slot(m, self.code_start + k * INSTR_SIZE);
        }
        // A direct branch elsewhere may now point at a changed slot: targets
        // are slot indices, so they stay valid.
        self.redecodes += 1;
        self.code_writes.push((addr, n));
    }

    /// The code section's instructions as decoded now (`None` where the
    /// bytes are no instruction).
    pub fn instrs(&self) -> impl Iterator<Item = Option<Instr>> + Clone + '_ {
        let decoded = |s: &Slot| !(s.op == Opcode::Trap && s.a == UNDECODABLE);
        self.slots.iter().zip(&self.imms).map(move |(s, &imm)| decoded(s).then(|| Instr::new(s.op, s.a, s.b, s.c, imm)))
    }

    /// The target address the direct transfer at slot `k` encodes (its
    /// slot holds the target's index).
    fn encoded_target(&self, k: usize) -> u64 {
        self.imms.get(k).map_or(0, |&imm| u64::from(imm as u32))
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
}
