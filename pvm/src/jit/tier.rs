//! Tiering: a block start is translated only once the dispatcher has
//! entered it `threshold` times (LuaJIT's `hotloop`, V8's tiering). Before
//! that the dispatcher runs the block on its interpreter, to the block's end
//! or its first taken branch, and counts the next start: most blocks of a
//! short program run once or twice, and translating one costs about as much
//! as interpreting it a few hundred times.
//!
//! Chained and indirect jumps reach translated blocks only, so a jump into a
//! start that is not hot yet comes back to the dispatcher, which counts it.
//! The interpreter and the translator share the machine, the fuel limit and
//! the code-write log: counts, traps and self-modifying code are exact
//! whatever the threshold.

use super::{block, Jit, JitError};
use crate::addr_map::AddrMap;
use crate::interp::Outcome;
use crate::machine::{Machine, SysIo};

/// The threshold `pvm run` uses unless told otherwise, chosen by measuring
/// hello world and the benchmarks (see `docs/benchmarks.md`).
pub const DEFAULT_THRESHOLD: u32 = 50;

/// How many rewrites of a block start's translated code are taken as they
/// come (each translated again at the threshold); each further one doubles
/// the entries the start needs, up to `threshold << MAX_BACKOFF`.
const FREE_REWRITES: u32 = 8;
const MAX_BACKOFF: u32 = 16;

/// Entries into block starts not translated yet, and how often each
/// start's translation was dropped because its code was overwritten.
///
/// Code written a few times (a loader, a patched call site) is translated
/// again at the threshold; code rewritten over and over (a loop that patches
/// itself) would be translated at nearly every entry, each time costing
/// hundreds of interpreted runs, so it backs off exponentially and runs on
/// the interpreter between translations (Smith & Nair, 3.4: "self-modifying
/// code"). Stable again, it gets hot again.
#[derive(Debug)]
pub(super) struct Hotness {
    threshold: u32,
    counts: AddrMap<u32>,
    rewrites: AddrMap<u32>,
}

impl Hotness {
    pub(super) fn new(threshold: u32) -> Self {
        Hotness { threshold: threshold.max(1), counts: AddrMap::default(), rewrites: AddrMap::default() }
    }

    pub(super) fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The entries `pc` needs before it is translated.
    fn needed(&self, pc: u64) -> u32 {
        // (most runs rewrite no translated code: no lookup then)
        if self.rewrites.is_empty() {
            return self.threshold;
        }
        let backoff = self.rewrites.get(&pc).map_or(0, |&k| k.saturating_sub(FREE_REWRITES).min(MAX_BACKOFF));
        self.threshold.saturating_mul(1 << backoff)
    }

    /// Counts an entry into `pc`; whether it is hot now (translate it).
    /// (A start stays hot until its code is overwritten.)
    pub(super) fn enter(&mut self, pc: u64) -> bool {
        let needed = self.needed(pc);
        if needed <= 1 {
            return true;
        }
        let n = self.counts.entry(pc).or_insert(0);
        *n = n.saturating_add(1);
        *n >= needed
    }

    /// The translation of the block at `pc` was dropped because its code
    /// was overwritten: it counts its entries from zero again.
    pub(super) fn rewritten(&mut self, pc: u64) {
        let k = self.rewrites.entry(pc).or_insert(0);
        *k = k.saturating_add(1);
        self.counts.remove(&pc);
    }
}

/// Where the dispatcher goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Into this translated block.
    Block(usize),
    /// A block start not hot yet: interpret its block.
    Cold,
    /// One instruction on the interpreter (fuel exhausted, not code, or
    /// nothing to translate there).
    Interpret,
}

impl Jit {
    /// Sets how many entries make a block start hot (1: translate at the
    /// first entry). Counts taken so far stay.
    pub fn set_threshold(&mut self, threshold: u32) {
        self.hotness.threshold = threshold.max(1);
        self.stats.threshold = self.hotness.threshold();
    }

    /// Decides where the dispatcher continues at `m.pc`, translating the
    /// block there if it just became hot.
    pub(super) fn next_at(&mut self, m: &Machine) -> Result<Next, JitError> {
        if m.retired >= self.fuel || !m.is_code_addr(m.pc) {
            return Ok(Next::Interpret);
        }
        self.stats.cache_lookups += 1;
        if let Some(b) = self.cache.get(m.pc) {
            self.stats.cache_hits += 1;
            return Ok(Next::Block(b));
        }
        if !self.hotness.enter(m.pc) {
            return Ok(Next::Cold);
        }
        self.stats.cache_misses += 1;
        Ok(match self.translate_at(m, m.pc)? {
            Some(b) => Next::Block(b),
            None => Next::Interpret,
        })
    }

    /// Runs the block at `m.pc` on the interpreter: to its end, its first
    /// taken branch, or the fuel limit. `Some` ends the run.
    pub(super) fn interpret_cold(&mut self, m: &mut Machine, io: &mut dyn SysIo) -> Option<Outcome> {
        let before = m.retired;
        let limit = self.fuel.min(m.retired.saturating_add(block::MAX_BLOCK as u64));
        let outcome = self.interp.run_block(m, io, limit);
        self.stats.cold_blocks += 1;
        self.stats.cold_instructions += m.retired - before;
        self.drop_overwritten_code();
        // (stopped at the fuel limit: the next step reports it exactly as
        // the interpreter would, through `interpret_one`)
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm;
    use crate::machine::BufferIo;
    use crate::trap::TrapKind;

    fn machine(src: &str) -> Machine {
        Machine::new(&asm::assemble("t", src).unwrap(), 1).unwrap()
    }

    /// Counts to 1000 in a loop, then writes one byte and exits 7.
    const LOOP: &str = "
        li r1, 0
        li r2, 1000
    top:
        addi r1, r1, 1
        blt r1, r2, top
        li r1, 65
        sys 5
        li r1, 7
        sys 0
    ";

    fn run(src: &str, threshold: u32, fuel: Option<u64>) -> (Outcome, Machine, Vec<u8>, super::super::JitStats) {
        let mut m = machine(src);
        let mut jit = Jit::new(&m, 1 << 20, fuel).unwrap();
        jit.set_threshold(threshold);
        let mut io = BufferIo::default();
        let o = jit.run(&mut m, &mut io).unwrap();
        (o, m, io.output, jit.stats)
    }

    #[test]
    fn a_start_gets_hot_on_its_threshold_th_entry() {
        let mut h = Hotness::new(3);
        assert_eq!([h.enter(8), h.enter(8), h.enter(16), h.enter(8), h.enter(8)], [false, false, false, true, true]);
        assert!(Hotness::new(0).enter(8), "0 means 1: translate at once");
    }

    #[test]
    fn a_start_rewritten_again_and_again_backs_off_exponentially() {
        for t in [1, 3] {
            let mut h = Hotness::new(t);
            let entries_to_hot = |h: &mut Hotness| (1..=u32::MAX).find(|_| h.enter(8)).unwrap();
            assert_eq!(entries_to_hot(&mut h), t);
            // (written a few times: the threshold again, counted from zero)
            for k in 1..=FREE_REWRITES {
                h.rewritten(8);
                assert_eq!(entries_to_hot(&mut h), t, "T={t}, rewrite {k}");
            }
            for k in 1..=MAX_BACKOFF + 2 {
                h.rewritten(8);
                assert_eq!(entries_to_hot(&mut h), t << k.min(MAX_BACKOFF), "T={t}, rewrite {}", FREE_REWRITES + k);
            }
            // hot, it stays hot; other starts are not affected
            assert!(h.enter(8));
            assert_eq!((1..).find(|_| h.enter(16)).unwrap(), t);
        }
    }

    /// A loop that rewrites an immediate of its own block 10,000 times:
    /// the sum of 0..10000 in r3.
    const SELF_PATCHING_LOOP: &str = "
        li r9, 0
        li r3, 0
        li r4, 0
        li r5, 10000
    loop:
        st32 r4, [r9+bump+4]
    bump:
        addi r3, r3, 0
        addi r4, r4, 1
        blt r4, r5, loop
        mov r1, r3
        sys 3
        li r1, 0
        sys 0
    ";

    #[test]
    fn a_block_that_rewrites_itself_every_iteration_is_not_translated_every_iteration() {
        let mut m = machine(SELF_PATCHING_LOOP);
        let expected = crate::interp::Interpreter::new(&m).run::<false, false>(
            &mut m,
            &mut BufferIo::default(),
            u64::MAX,
            &mut Default::default(),
            &mut std::io::sink(),
        );
        for t in [1, 2, 50] {
            let (o, mt, out, s) = run(SELF_PATCHING_LOOP, t, None);
            assert_eq!((&o, mt.retired, mt.regs), (&expected, m.retired, m.regs), "T={t}");
            assert_eq!(out, b"49995000", "T={t}");
            // (without the back-off: a translation per iteration, 10,000)
            assert!(s.blocks_translated < 64 && s.invalidations < 64, "T={t}: {s:?}");
            assert!(s.invalidations > FREE_REWRITES.into(), "T={t}: {s:?}");
            assert!(s.cold_blocks > 9000, "T={t}: the rewritten block ran interpreted: {s:?}");
        }
    }

    #[test]
    fn the_loop_gets_translated_and_the_rest_runs_interpreted() {
        let (o1, m1, out1, s1) = run(LOOP, 1, None);
        let (o4, m4, out4, s4) = run(LOOP, 4, None);
        assert_eq!((&o1, m1.retired, &out1), (&o4, m4.retired, &out4));
        assert_eq!(o4, Outcome::Exited(7));
        assert_eq!(s1.cold_blocks, 0);
        assert_eq!(s4.threshold, 4);
        // (the entry block, three loop iterations, and the tail after the loop)
        assert!(s4.cold_blocks >= 4, "{s4:?}");
        assert!(s4.cold_instructions >= 3 * 2, "{s4:?}");
        assert!(s4.blocks_translated >= 1 && s4.blocks_translated < s1.blocks_translated + 1, "{s4:?}");
        assert_eq!(m1.regs, m4.regs);
    }

    #[test]
    fn the_fuel_stops_an_interpreted_block_at_the_same_instruction() {
        let (full, m, ..) = run(LOOP, 1, None);
        assert_eq!(full, Outcome::Exited(7));
        for fuel in [1, 2, 3, 5, 8, 1000, m.retired - 1] {
            let (o1, m1, ..) = run(LOOP, 1, Some(fuel));
            for t in [2, 50, 10_000] {
                let (o, mt, ..) = run(LOOP, t, Some(fuel));
                assert_eq!((&o, mt.retired, mt.pc, mt.regs), (&o1, m1.retired, m1.pc, m1.regs), "fuel {fuel}, T={t}");
                assert!(matches!(&o, Outcome::Trapped(t) if t.kind == TrapKind::FuelExhausted && t.retired == fuel));
            }
        }
    }

    #[test]
    fn a_block_interpreted_stops_after_its_taken_branch() {
        let mut m = machine(LOOP);
        let mut interp = crate::interp::Interpreter::new(&m);
        let mut io = BufferIo::default();
        // li, li, addi, blt (taken): back at `top`
        assert_eq!(interp.run_block(&mut m, &mut io, 1000), None);
        assert_eq!((m.retired, m.pc), (4, m.code_start + 16));
        // the limit stops it first
        assert_eq!(interp.run_block(&mut m, &mut io, 5), None);
        assert_eq!((m.retired, m.pc), (5, m.code_start + 24));
    }
}
