//! The dynamic binary translator (`--engine jit`): guest basic blocks become
//! x86-64 the first time the dispatcher reaches them, kept in a block cache,
//! chained to each other, and left only for what needs the dispatcher.
//!
//! The dispatcher and the interpreter share one `Machine`: whatever a block
//! cannot finish (a trap, a syscall, a store into code, the last few
//! instructions before the fuel runs out) is handed to the interpreter for
//! exactly one instruction, so both engines report the same trap at the same
//! pc after the same number of retired instructions.

mod arith;
pub mod block;
pub mod cache;
pub mod code_memory;
pub mod context;
mod emit;
mod emit_atomic;
mod emit_control;
mod emit_f32;
mod emit_float;
mod emit_instr;
mod emit_int;
mod emit_mem;
pub mod encode;
mod fault;
mod ifconvert;
pub mod magic;
mod ops;
mod plan;
mod specialize;
mod tier;
pub mod translate;
mod xmm;

pub use self::tier::DEFAULT_THRESHOLD;

use std::io::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

use self::block::{Layout, RegMap};
use self::cache::BlockCache;
use self::context::{JitContext, RunContext, EXIT_DESPECIALIZE, EXIT_DIRECT, EXIT_INTERPRET};
use self::tier::Next;
use crate::disasm;
use crate::interp::{stopped_at, Interpreter, Outcome};
use crate::isa::INSTR_SIZE;
use crate::kick::Kick;
use crate::machine::{Machine, SysIo};

/// Default size of the code cache in bytes.
pub const DEFAULT_CACHE_SIZE: usize = 32 << 20;
/// Largest code cache: every jump between blocks, stubs and the trampoline
/// must stay within a rel32 displacement.
pub const MAX_CACHE_SIZE: usize = 1 << 30;
/// Largest fuel limit the translator counts to: a block checks that the
/// retired count plus its length stays within the limit, and that sum must
/// not wrap (nobody retires 2^64 instructions; the limit changes nothing).
const MAX_FUEL: u64 = u64::MAX - 4 * block::MAX_BLOCK as u64;
/// Exit ids the cache hands out before it is flushed: an exit's code
/// (`EXIT_DIRECT + id`) must stay below `EXIT_DESPECIALIZE`.
const MAX_EXIT_ID: u32 = EXIT_DESPECIALIZE - EXIT_DIRECT - 1 - 2 * block::MAX_BLOCK as u32;

/// Errors of the translator itself (not of the guest).
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("cannot allocate the code cache")]
    CodeMemory(#[from] code_memory::CodeMemoryError),
    #[error("the x86-64 assembler failed: {0}")]
    Assembler(String),
    #[error("cannot encode a translated block")]
    Encode(#[from] encode::EncodeError),
    #[error("a single block does not fit in a code cache of {0} bytes: raise --cache-size")]
    CacheTooSmall(usize),
    #[error("a code cache of {0} bytes is too large: generated code jumps with 32-bit displacements, so at most {MAX_CACHE_SIZE} bytes")]
    CacheTooLarge(usize),
    #[error("guest memory of {0} bytes is too large for the translator: its addresses and limits are 32-bit immediates (at most 2047 MiB)")]
    MemoryTooLarge(u64),
}

impl From<iced_x86::IcedError> for JitError {
    fn from(e: iced_x86::IcedError) -> Self {
        JitError::Assembler(e.to_string())
    }
}

/// What the translator did during a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JitStats {
    pub blocks_translated: u64,
    pub guest_instructions_translated: u64,
    pub host_bytes: u64,
    pub translate_time: Duration,
    /// The median time one block took to translate: what translation costs
    /// when the first-time and cold-cache costs of a few blocks, and the
    /// host's interruptions, are left aside.
    pub median_block_translation: Duration,
    /// The slowest block's translation, and its guest pc.
    pub slowest_block_translation: Duration,
    pub slowest_block_pc: u64,
    /// Times the dispatcher entered generated code.
    pub dispatcher_entries: u64,
    pub cache_lookups: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub chains: u64,
    pub invalidations: u64,
    pub flushes: u64,
    /// Instructions the dispatcher handed to the interpreter one at a time.
    pub interpreted: u64,
    /// Entries a block start takes to be translated (see `tier`).
    pub threshold: u32,
    /// Blocks run on the interpreter because their start was not hot yet,
    /// and the instructions they retired.
    pub cold_blocks: u64,
    pub cold_instructions: u64,
    /// Blocks that left because a value they assumed changed (and were
    /// translated again without assumptions).
    pub guard_failures: u64,
    /// Guest accesses that passed their bounds check and faulted in the
    /// guard regions, turned into the interpreter's handling of their
    /// instruction (0 unless the checks are loosened on purpose).
    pub faults_recovered: u64,
    /// Linear-memory accesses past the end of guest memory, which rely on
    /// the guard regions: their faults became the interpreter's trap.
    pub guard_faults: u64,
}

type EnterFn = unsafe extern "sysv64" fn(*mut JitContext, u64) -> u32;

/// The translator and its cache for one machine.
pub struct Jit {
    cache: BlockCache,
    layout: Layout,
    map: RegMap,
    enter_addr: u64,
    interp: Interpreter,
    fuel: u64,
    /// Reused for every block: allocating one per block costs more than
    /// translating a short block.
    assembler: Option<iced_x86::code_asm::CodeAssembler>,
    encoding: encode::BlockEncoding,
    /// Block starts whose assumptions failed: translated without any.
    generic: std::collections::HashSet<u64>,
    /// How long each translation took (for the median in the stats).
    block_times: Vec<Duration>,
    /// Keep the code this translator's guest thread overwrote, for the
    /// other threads' translators (`--threads kernel`).
    log_code_writes: bool,
    code_writes: Vec<(u64, u64)>,
    /// Another thread's request to stop (see `crate::kick`).
    kick: Option<Arc<Kick>>,
    /// How many block times the median in the stats was taken of.
    median_of: usize,
    hotness: tier::Hotness,
    pub stats: JitStats,
}

impl std::fmt::Debug for Jit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jit")
            .field("cache", &self.cache)
            .field("map", &self.map)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Jit {
    /// Prepares a translator for `m`, with a code cache of `cache_size`
    /// bytes and an optional fuel limit.
    ///
    /// # Errors
    ///
    /// A cache too large for rel32 jumps or too small for the trampoline,
    /// a memory too large for 32-bit limits, or a failure to map the cache.
    pub fn new(m: &Machine, cache_size: usize, fuel: Option<u64>) -> Result<Self, JitError> {
        if cache_size > MAX_CACHE_SIZE {
            return Err(JitError::CacheTooLarge(cache_size));
        }
        // Every guest address, pc and limit the generated code holds as an
        // imm32 is below the memory size: below 2^31, they are what they say.
        let mem_size = m.mem.len() as u64;
        if i32::try_from(mem_size).is_err() {
            return Err(JitError::MemoryTooLarge(mem_size));
        }
        let interp = Interpreter::new(m);
        let map = RegMap::for_code(interp.instrs(), m.code_start);
        let mut cache = BlockCache::new(cache_size)?;
        let at = cache.next_exec_addr();
        let (tramp, offsets) = translate::trampoline(map, at)?;
        let offset = cache.reserve(&tramp).ok_or(JitError::CacheTooSmall(cache_size))?;
        let enter_addr = cache.memory().exec_addr(offset);
        let layout = Layout {
            mem_size: m.mem.len() as u64,
            code_start: m.code_start,
            code_end: m.code_end,
            stack_limit: m.stack_limit,
            fuel_limited: fuel.is_some(),
            cpu: block::Cpu::detect(),
            bounds_slack: 0,
            exit_addr: enter_addr + offsets.exit as u64,
            interpret_addr: enter_addr + offsets.interpret as u64,
            direct_addr: enter_addr + offsets.direct as u64,
        };
        Ok(Jit {
            cache,
            layout,
            map,
            enter_addr,
            interp,
            fuel: fuel.map_or(u64::MAX, |f| f.min(MAX_FUEL)),
            assembler: None,
            encoding: encode::BlockEncoding::new(),
            generic: std::collections::HashSet::new(),
            block_times: Vec::new(),
            log_code_writes: false,
            median_of: 0,
            code_writes: Vec::new(),
            kick: None,
            hotness: tier::Hotness::new(DEFAULT_THRESHOLD),
            stats: JitStats { threshold: DEFAULT_THRESHOLD, ..JitStats::default() },
        })
    }

    /// Loosens every bounds check of the blocks translated from now on by
    /// `bytes`, on purpose: accesses up to that far past the end of memory
    /// pass the checks, fault in the guard regions and are turned into the
    /// guest's trap by the fault handler (a demonstration, and its test).
    pub fn set_bounds_slack(&mut self, bytes: u64) {
        self.layout.bounds_slack = bytes;
    }

    /// Stops the next runs once `limit` instructions have retired in all
    /// (a thread's quantum). Blocks translated before without a fuel check
    /// are dropped: from now on every block checks it.
    pub fn set_fuel(&mut self, limit: u64) {
        self.fuel = limit.min(MAX_FUEL);
        if !self.layout.fuel_limited {
            self.layout.fuel_limited = true;
            self.cache.flush();
        }
    }

    /// Whether `sys 7` and `sys 2` stop the run for the scheduler.
    pub fn set_defer_blocking(&mut self, on: bool) {
        self.interp.set_defer_blocking(on);
    }

    /// Makes this a thread of a parallel run: another OS thread's
    /// [`Kick::kick`] stops the run at its next block entry, and so does a
    /// code write of its own (after the instruction), so every thread
    /// hears of it at once; the code writes are logged from now on.
    pub fn set_kick(&mut self, kick: Arc<Kick>) {
        self.kick = Some(kick);
        self.log_code_writes = true;
    }

    /// The kick `set_kick` gave it.
    pub fn kick(&self) -> Option<&Kick> {
        self.kick.as_deref()
    }

    /// The code this machine's thread overwrote since the last call (kept
    /// only once asked for: the first call turns the log on).
    pub fn take_code_writes(&mut self) -> Vec<(u64, u64)> {
        self.log_code_writes = true;
        std::mem::take(&mut self.code_writes)
    }

    /// Code at `[addr, addr + len)` changed behind the translator's back
    /// (the scheduler's read, another thread's store): its blocks go.
    pub fn code_written(&mut self, m: &Machine, addr: u64, len: u64) {
        self.interp.refresh_code(m, addr, len);
        self.drop_blocks(addr, len);
    }

    /// Drops the blocks over `[addr, addr + len)`, just overwritten.
    fn drop_blocks(&mut self, addr: u64, len: u64) {
        for start in self.cache.invalidate(addr, len) {
            self.hotness.rewritten(start);
        }
    }

    /// The block at `pc`, translated now if needed (flushing a full cache).
    fn block_at(&mut self, m: &Machine, pc: u64) -> Result<Option<usize>, JitError> {
        self.stats.cache_lookups += 1;
        if let Some(b) = self.cache.get(pc) {
            self.stats.cache_hits += 1;
            return Ok(Some(b));
        }
        self.stats.cache_misses += 1;
        self.translate_at(m, pc)
    }

    /// Translates the block at `pc` (flushing a full cache).
    fn translate_at(&mut self, m: &Machine, pc: u64) -> Result<Option<usize>, JitError> {
        if self.cache.next_exit_id() > MAX_EXIT_ID {
            self.cache.flush();
        }
        for attempt in 0..2 {
            let start = Instant::now();
            let at = self.cache.next_exec_addr();
            let asm = match self.assembler.take() {
                Some(a) => a,
                None => iced_x86::code_asm::CodeAssembler::new(64)?,
            };
            let (t, asm) = translate::translate(
                asm,
                &mut self.encoding,
                m,
                pc,
                &self.layout,
                self.map,
                at,
                self.cache.next_exit_id(),
                !self.generic.contains(&pc),
            )?;
            self.assembler = Some(asm);
            let took = start.elapsed();
            self.stats.translate_time += took;
            self.block_times.push(took);
            if took > self.stats.slowest_block_translation {
                self.stats.slowest_block_translation = took;
                self.stats.slowest_block_pc = pc;
            }
            let Some(t) = t else { return Ok(None) };
            if let Some(id) = self.cache.insert(&t) {
                self.stats.blocks_translated += 1;
                self.stats.guest_instructions_translated += u64::from(t.len);
                self.stats.host_bytes += t.code.len() as u64;
                return Ok(Some(id));
            }
            if attempt == 0 {
                self.cache.flush();
            }
        }
        Err(JitError::CacheTooSmall(self.cache.memory().size()))
    }

    /// Runs one instruction in the interpreter (or, with the fuel exhausted,
    /// reports the trap). `Some` ends the run.
    fn interpret_one(&mut self, m: &mut Machine, io: &mut dyn SysIo) -> Option<Outcome> {
        self.stats.interpreted += 1;
        let limit = self.fuel.min(m.retired + 1);
        let outcome = self.interp.run_until(m, io, limit);
        self.drop_overwritten_code();
        match outcome {
            None if m.retired < self.fuel => None,
            None => Some(stopped_at(m)),
            other => other,
        }
    }

    /// Drops the blocks of the code the interpreter just overwrote.
    fn drop_overwritten_code(&mut self) {
        for (addr, len) in self.interp.take_code_writes() {
            self.drop_blocks(addr, len);
            if self.log_code_writes {
                self.code_writes.push((addr, len));
            }
        }
    }

    /// Runs `m` from its pc to the end.
    pub fn run(&mut self, m: &mut Machine, io: &mut dyn SysIo) -> Result<Outcome, JitError> {
        let ctx = RunContext::new(JitContext {
            regs: m.regs,
            mem: m.mem.base_ptr(),
            retired: m.retired,
            exit_pc: m.pc,
            lookup: self.cache.lookup_table(),
            fuel: AtomicU64::new(self.fuel),
            host_sp_base: 0,
            host_sp_limit: 0,
        });
        let kick = self.kick.clone();
        let _attached = kick.as_deref().map(|k| k.attach(ctx.fuel()));
        // SAFETY: `enter_addr` is the trampoline generated by
        // `translate::trampoline`, published in the executable view; it
        // follows the System V ABI for `fn(*mut JitContext, u64) -> u32`.
        let enter: EnterFn = unsafe { std::mem::transmute::<u64, EnterFn>(self.enter_addr) };
        let (guard_start, guard_len) = m.mem.reservation();
        let armed = fault::Armed::new(guard_start, guard_len);
        let mut pending: Option<Next> = None;
        let outcome = loop {
            // (a thread of a parallel run: it leaves when another thread
            // wrote code, or when it did, so they all see it; see `kick`)
            if let Some(k) = &kick {
                if (k.pending() && k.take()) || !self.code_writes.is_empty() {
                    break stopped_at(m);
                }
            }
            let next = match pending.take() {
                Some(n) => n,
                None => self.next_at(m)?,
            };
            let block = match next {
                Next::Block(b) => b,
                Next::Cold => match self.interpret_cold(m, io) {
                    Some(outcome) => break outcome,
                    None => continue,
                },
                Next::Interpret => match self.interpret_one(m, io) {
                    Some(outcome) => break outcome,
                    None => continue,
                },
            };
            self.cache.publish(m.pc, block);
            ctx.load(&m.regs, m.retired, self.cache.lookup_table());
            self.stats.dispatcher_entries += 1;
            let entry = self.cache.entry(block);
            // SAFETY: the block's code was generated for this machine's
            // layout and register map and published in the executable view.
            // `ctx.mem` points at `m.mem`, which is neither moved nor resized
            // while generated code runs. Every guest access in generated
            // code is checked against a limit below 2^31, so even a wrong
            // limit keeps it inside the guard reservation around `m.mem`
            // (see `crate::memory`), where a fault resumes at the access's
            // interpret stub (see `fault`). Generated code only reaches
            // `ctx`, guest memory, the lookup table and other blocks.
            let code = armed.run(&self.cache, || unsafe { enter(ctx.as_ptr(), entry) });
            (m.regs, m.retired, m.pc) = ctx.state();
            if code == EXIT_INTERPRET {
                pending = Some(Next::Interpret);
                continue;
            }
            if code == EXIT_DESPECIALIZE {
                // A guard failed: translate this start again, assuming nothing.
                self.generic.insert(m.pc);
                self.cache.invalidate(m.pc, INSTR_SIZE);
                self.stats.guard_failures += 1;
                continue;
            }
            // A direct exit: chain the jump to its target once that is
            // translated (a target not hot yet comes back here, counted).
            let exit_id = code - EXIT_DIRECT;
            let next = self.next_at(m)?;
            if let Next::Block(target) = next {
                if self.cache.exit(exit_id).is_some_and(|e| e.target == m.pc) {
                    self.cache.chain(exit_id, target);
                }
            }
            pending = Some(next);
        };
        self.stats.faults_recovered += armed.recovered();
        self.stats.guard_faults += armed.guarded();
        Ok(self.finish(outcome))
    }

    fn finish(&mut self, outcome: Outcome) -> Outcome {
        // (a threaded run ends a run at every switch: the median only
        // changes when blocks were translated)
        if self.block_times.len() != self.median_of {
            let mut times = self.block_times.clone();
            times.sort_unstable();
            self.stats.median_block_translation = times.get(times.len() / 2).copied().unwrap_or_default();
            self.median_of = times.len();
        }
        self.stats.chains = self.cache.chains;
        self.stats.invalidations = self.cache.invalidations;
        self.stats.flushes = self.cache.flushes;
        outcome
    }

    /// Translates the block starting at every instruction of the code
    /// section (a translation-throughput measurement; nothing runs).
    /// Returns the guest instructions translated.
    pub fn translate_everything(&mut self, m: &Machine) -> Result<u64, JitError> {
        let before = self.stats.guest_instructions_translated;
        let mut pc = m.code_start;
        while pc < m.code_end {
            if self.cache.get(pc).is_none() {
                self.block_at(m, pc)?;
            }
            pc += INSTR_SIZE;
        }
        Ok(self.stats.guest_instructions_translated - before)
    }

    /// Writes the guest block at `pc` next to the x86-64 it became
    /// (translating it now if it is not in the cache).
    pub fn dump_block(&mut self, m: &Machine, pc: u64, out: &mut dyn Write) -> Result<(), JitError> {
        let Some(id) = self.block_at(m, pc)? else {
            let _ = writeln!(out, "no block at {pc:#x}: not an instruction of the code section");
            return Ok(());
        };
        let b = self.cache.block(id).clone();
        let _ = writeln!(out, "guest block {:#x}..{:#x} ({} instructions):", b.guest_start, b.guest_end(), b.len);
        for k in 0..u64::from(b.len) {
            let at = b.guest_start + k * INSTR_SIZE;
            let _ = writeln!(out, "  {at:#08x}  {}", disasm::describe(m.fetch(at)));
        }
        let addr = self.cache.entry(id);
        let _ = writeln!(out, "x86-64 at {addr:#x} ({} bytes):", b.host_len);
        let bytes = self.cache.memory().bytes(b.offset, b.host_len);
        let mut decoder = Decoder::with_ip(64, bytes, addr, DecoderOptions::NONE);
        let mut formatter = IntelFormatter::new();
        let mut text = String::new();
        for instr in &mut decoder {
            text.clear();
            formatter.format(&instr, &mut text);
            let _ = writeln!(out, "  {:#x}  {text}", instr.ip());
        }
        Ok(())
    }
}
