//! Regression tests for the bugs the layout-varying differential fuzzer
//! found in the translator (issue 9), and for the wrap audit of every
//! limit, offset and size the translator computes. Each test states what
//! the interpreter does (the reference) and checks the translator agrees.

use pvm::interp::Outcome;
use pvm::run::{self, Engine, RunConfig};
use pvm::trap::TrapKind;
use tests::diff::{agree, both, run_on};

fn asm(name: &str, src: &str) -> pvm::image::Image {
    let image = pvm::asm::assemble(name, src).unwrap_or_else(|e| panic!("{name}: {e}"));
    pvm::verify::verify(&image).unwrap_or_else(|e| panic!("{name}: {e}"));
    image
}

fn mem(mib: u64) -> RunConfig {
    RunConfig { mem_mib: mib, ..Default::default() }
}

/// `body` placed so that the code section ends exactly at the top of a
/// memory of `mib` MiB (padded with `nop`s in front when `pad`, as a user
/// would write it; placed with `.org` otherwise).
fn at_top(mib: u64, body: &[&str], pad: bool) -> pvm::image::Image {
    let top = mib << 20;
    let src = if pad {
        let n = (top - pvm::image::CODE_BASE) / 8 - body.len() as u64;
        format!(".text\n{}\n{}", body.join("\n"), "nop\n".repeat(n as usize))
    } else {
        format!(".text\n.org {:#x}\n{}\n", top - 8 * body.len() as u64, body.join("\n"))
    };
    asm("at_top", &src)
}

fn trap_of(f: &tests::diff::Final) -> (TrapKind, u64, u64) {
    match &f.outcome {
        Outcome::Trapped(t) => (t.kind, t.pc, t.retired),
        other => panic!("expected a trap, got {other:?}: {f:?}"),
    }
}

#[test]
fn a_store_past_memory_traps_when_the_code_ends_at_the_top() {
    // The reproduction of the issue: --mem 1, code from 0x1000 to 0x100000.
    // The translator's store limit, mem_size - n - code_end, wrapped.
    for addr in ["0x200000", "0x7ff00000", "-4096", "0x100000", "-8"] {
        for (op, n) in [("st8", 1), ("st16", 2), ("st32", 4), ("st64", 8)] {
            let body = ["main: li r1, 7", &format!("li r2, {addr}"), &format!("{op} r1, [r2+0]"), "li r1, 0", "sys 0"];
            let image = at_top(1, &body, true);
            let (interp, jit, _) = both(&image, mem(1), b"");
            let a = pvm::asm::assemble("n", &format!("li r1, {addr}\n")).unwrap().code.bytes;
            let want = i64::from(i32::from_le_bytes([a[4], a[5], a[6], a[7]])) as u64;
            assert_eq!(trap_of(&interp), (TrapKind::OutOfBounds { addr: want, size: n }, 0x1010, 2), "{op} {addr}");
            assert_eq!(interp, jit, "{op} at {addr}: the engines disagree");
        }
    }
}

#[test]
fn stores_and_loads_with_the_code_at_the_top_of_every_memory_size() {
    // Code placed at the very top (.org), for small, odd and the largest
    // memories: a store just below the top writes the code's last
    // instruction (self-modifying), one past it traps; loads likewise.
    for mib in [1, 2, 3, 17, 2047] {
        let top = mib << 20;
        let body = [
            "main: li r2, 0",
            &format!("li r3, {}", top - 8),
            "li r1, 5",
            "ld64 r4, [r3+0]", // the last instruction's bytes
            "st64 r4, [r3+0]", // rewrites it with itself
            &format!("ld8u r5, [r2+{}]", top - 1),
            &format!("st8 r1, [r2+{}]", top),
            "li r1, 0",
            "sys 0",
        ];
        let image = at_top(mib, &body, false);
        let (interp, jit, stats) = both(&image, mem(mib), b"");
        assert_eq!(trap_of(&interp), (TrapKind::OutOfBounds { addr: top, size: 1 }, top - 24, 6), "{mib} MiB");
        assert_eq!(interp, jit, "{mib} MiB: the engines disagree");
        assert!(stats.invalidations >= 1, "{mib} MiB: the store into code invalidated nothing: {stats:?}");
    }
}

#[test]
fn a_store_whose_offset_equals_the_code_end_keeps_its_offset() {
    // The translator dropped the immediate when it equalled the code end
    // (the store limit's displacement was 0): it wrote at address 0.
    let src = "
        .text
main:   li r2, 0
        li r1, 65
        st8 r1, [r2+end]
        ld8u r1, [r2+end]
        sys 3
        li r1, 32
        sys 5
        ld8u r1, [r2+0]
        sys 3
        li r1, 0
        sys 0
end:
";
    let image = asm("offset", src);
    let (interp, jit, _) = both(&image, RunConfig::default(), b"");
    assert_eq!((interp.outcome.clone(), interp.stdout.as_slice()), (Outcome::Exited(0), &b"65 0"[..]));
    assert_eq!(interp, jit, "the engines disagree");
    // With another base the dropped immediate sent the store into code,
    // without invalidating it: the loop must still run its three rounds.
    let src = "
        .text
main:   li r2, 0x1000
        li r6, 3
loop:   li r1, 66
        st8 r1, [r2+0x1000]
        subi r6, r6, 1
        bne r6, r9, loop
        ld8u r1, [r2+0x1000]
        sys 3
        li r1, 0
        sys 0
";
    let image = asm("offset2", src);
    let (interp, jit, _) = both(&image, RunConfig::default(), b"");
    assert_eq!(interp.stdout, b"66");
    assert_eq!(interp, jit, "the engines disagree");
}

#[test]
fn a_call_at_the_end_of_the_code_traps_at_its_return() {
    // The callee returns to the code end: the interpreter traps at the
    // `ret`; the translator's host-frame return retired the `ret` and
    // trapped one instruction later. The calls are chained (the callee
    // drops its return address and jumps back twice) so a host frame is
    // live when the `ret` runs.
    let src = "
        .text
main:   li r3, 4
        jmp last
f:      addi r1, r1, 1
        subi r3, r3, 1
        bne r3, r0, again
        ret
again:  pop r4
        jmp last
last:   call f
";
    let image = asm("last call", src);
    let (interp, jit, _) = both(&image, RunConfig::default(), b"");
    assert_eq!(trap_of(&interp), (TrapKind::BadJumpTarget(0x1048), 0x1028, 24));
    assert_eq!(interp, jit, "the engines disagree");
    // The same with callr.
    let image = asm("last callr", &src.replace("last:   call f", "last:   li r7, f\n        callr r7"));
    let (interp, jit, _) = both(&image, RunConfig::default(), b"");
    assert_eq!(trap_of(&interp), (TrapKind::BadJumpTarget(0x1050), 0x1028, 28));
    assert_eq!(interp, jit, "the engines disagree");
}

fn li_r1(v: i32) -> Vec<u8> {
    pvm::isa::Instr::new(pvm::isa::Opcode::Li, 1, 0, 0, v).encode().to_vec()
}

#[test]
fn a_read_into_the_code_is_a_store_into_code() {
    // `sys 2` writing instructions: the interpreter ran its stale decoded
    // copy. Whole instruction, part of one (the decoded li keeps its
    // register, not its immediate), and a read spanning two.
    let src = "
        .text
main:   li r1, patch
        li r2, 8
        sys 2
patch:  li r1, 1
        sys 3
        li r1, 0
        sys 0
";
    let image = asm("read into code", src);
    let cases: [(&[u8], &[u8]); 3] = [(&li_r1(2), b"2"), (&li_r1(77)[..6], b"77"), (b"", b"1")];
    for (input, want) in cases {
        let (interp, jit, _) = both(&image, RunConfig::default(), input);
        assert_eq!((interp.outcome.clone(), interp.stdout.as_slice()), (Outcome::Exited(0), want), "{input:?}");
        assert_eq!(interp, jit, "{input:?}: the engines disagree");
    }
    // Two instructions at once: a stale second slot would print "53".
    let putc = pvm::isa::Instr::new(pvm::isa::Opcode::Sys, 0, 0, 0, 5).encode().to_vec();
    let two = [li_r1(i32::from(b'5')), putc].concat();
    let image = asm("read two", &src.replace("li r2, 8", "li r2, 16"));
    let (interp, jit, _) = both(&image, RunConfig::default(), &two);
    assert_eq!(interp.stdout, b"5");
    assert_eq!(interp, jit, "the engines disagree");
}

#[test]
fn direct_transfers_written_into_code_trap_at_themselves_with_the_target_they_name() {
    // The verifier refuses bad direct targets, so only code written at run
    // time has them: the interpreter keeps a transfer's target as a slot
    // index and must still name the address the instruction holds.
    let src = "
        .text
main:   li r1, patch
        li r2, 8
        li r3, 1
        sys 2
patch:  nop
        li r1, 0
        sys 0
";
    let image = asm("transfer into code", src);
    let patch = 0x1020i64;
    let instr = |op, a, target: i64| pvm::isa::Instr::new(op, a, 0, 0, target as i32).encode().to_vec();
    use pvm::isa::Opcode::{Bnez, Call, Jmp};
    for target in [patch + 4, 0x1038, 0x1040, 0x10_0000, 0x7fff_fff8, -8i64] {
        for op in [Jmp, Call, Bnez] {
            let (interp, jit, _) = both(&image, RunConfig::default(), &instr(op, 3, target));
            let want = TrapKind::BadJumpTarget(target as u32 as u64);
            assert_eq!(trap_of(&interp), (want, patch as u64, 4), "{op:?} {target:#x}: {interp:?}");
            assert_eq!(interp, jit, "{op:?} {target:#x}: the engines disagree");
        }
    }
    // A good target written the same way is followed: to `sys 0`, with r1
    // still the patch's address (so it skipped `li r1, 0`; the status is
    // its low byte).
    for op in [Jmp, Bnez] {
        let (interp, jit, _) = both(&image, RunConfig::default(), &instr(op, 3, 0x1030));
        assert_eq!((&interp.outcome, interp.regs[1]), (&Outcome::Exited(0x20), 0x1020), "{op:?}: {interp:?}");
        assert_eq!(interp, jit, "{op:?}: the engines disagree");
    }
}

#[test]
fn a_pop_into_a_context_register_sees_the_pending_sp_move() {
    // sp in a host register with a push's move pending, then a pop into a
    // register that lives in the context: the pop read the stale sp.
    let src = "
        .text
main:   subi sp, sp, 64
top:    add r0, r1, r2
        add r3, r4, r5
        add r6, r7, sp
        bne r0, r0, top
        li r1, 111
        push r1
        pop r14
        mov r1, r14
        sys 3
        li r1, 0
        sys 0
";
    let image = asm("pop", src);
    let (interp, jit, _) = both(&image, RunConfig::default(), b"");
    assert_eq!(interp.stdout, b"111");
    assert_eq!(interp, jit, "the engines disagree");
    // Two pushes pending, pops into context registers and sp itself.
    let image = asm(
        "pops",
        &src.replace("pop r14\n", "push r1\n        pop r13\n        pop r14\n        push r13\n        pop sp\n"),
    );
    let (interp, jit, _) = both(&image, RunConfig::default(), b"");
    assert_eq!(interp.stdout, b"111");
    assert_eq!(interp, jit, "the engines disagree");
}

#[test]
fn itof_into_a_float_register_a_loop_keeps_in_xmm() {
    // The block keeps r0 in an XMM register across its back-edge; itof
    // wrote r0 and dropped that copy, so the loop read a stale 1.0.
    let src = "
        .text
main:   lif r0, 1.0
        li r13, 3
loop:   fadd r3, r0, r0
        itof r0, r13
        subi r13, r13, 1
        bne r13, r12, loop
        mov r1, r3
        sys 4
        li r1, 0
        sys 0
";
    let image = asm("itof", src);
    let (interp, jit, _) = both(&image, RunConfig::default(), b"");
    assert_eq!(interp.stdout, b"4");
    assert_eq!(interp, jit, "the engines disagree");
}

#[test]
fn push_runs_at_the_stack_limit_and_pop_runs_at_the_top() {
    // A run of three pushes that fits exactly, one that misses by 8 bytes
    // (the second push traps), and pops that reach exactly the top or one
    // past it: the run checks' limits, with sp's move pending.
    // (the image ends at limit + 16, where the stack may go down to)
    for (start, trap) in [(40, None), (32, Some((0x1020, 4))), (24, Some((0x1018, 3)))] {
        let src = format!(
            ".text\nmain: li r15, limit+{start}\npush r1\naddi r2, r2, 1\npush r2\npush r3\nli r1, 0\nsys 0\n.data\nlimit: .zero 16\n"
        );
        let image = asm("pushes", &src);
        let (interp, jit, _) = both(&image, mem(1), b"");
        match trap {
            None => assert_eq!(interp.outcome, Outcome::Exited(0)),
            Some((pc, retired)) => assert_eq!(trap_of(&interp), (TrapKind::StackOverflow, pc, retired)),
        }
        assert_eq!(interp, jit, "pushes from limit+{start}: the engines disagree");
    }
    let top = 1u64 << 20;
    for (sp, exits) in [(top - 24, true), (top - 16, false), (top - 8, false), (top, false)] {
        let src = format!(".text\nmain: li r15, {sp}\npop r1\npop r2\naddi r4, r4, 1\npop r3\nli r1, 0\nsys 0\n");
        let image = asm("pops", &src);
        let (interp, jit, _) = both(&image, mem(1), b"");
        assert_eq!(matches!(interp.outcome, Outcome::Exited(0)), exits, "sp {sp:#x}: {interp:?}");
        assert_eq!(interp, jit, "pops from {sp:#x}: the engines disagree");
    }
    // Code at the very top: the stack limit is the top, so no push fits.
    let image = at_top(1, &["main: li r1, 3", "push r1", "li r1, 0", "sys 0"], false);
    let (interp, jit, _) = both(&image, mem(1), b"");
    assert_eq!(trap_of(&interp), (TrapKind::StackOverflow, (1 << 20) - 24, 1));
    assert_eq!(interp, jit, "push under code at the top: the engines disagree");
}

#[test]
fn jumps_to_the_code_end_and_beyond_trap_at_the_jump() {
    // Through the indirect-jump table: the code end, a misaligned pc,
    // the top of memory and past it, all no instruction.
    for target in ["end", "main+4", "0x100000", "0x7fffffff", "-8"] {
        let src = format!(".text\nmain: li r1, {target}\njr r1\nend:\n");
        let image = asm("jr", &src);
        let (interp, jit, _) = both(&image, mem(1), b"");
        assert!(matches!(trap_of(&interp), (TrapKind::BadJumpTarget(_), 0x1008, 1)), "{target}: {interp:?}");
        assert_eq!(interp, jit, "jr {target}: the engines disagree");
    }
    // A block that runs off the end of the code.
    let image = asm("off the end", ".text\nmain: li r1, 1\naddi r1, r1, 1\n");
    let (interp, jit, _) = both(&image, mem(1), b"");
    assert_eq!(trap_of(&interp), (TrapKind::BadJumpTarget(0x1010), 0x1010, 2));
    assert_eq!(interp, jit, "the engines disagree");
}

#[test]
fn the_largest_fuel_limits_count_like_no_limit() {
    // The translator clamps its fuel so that count + block length cannot
    // wrap: u64::MAX and its neighbours run like an unlimited run.
    let p = pvm::programs::find("recursion").unwrap();
    let image = run::build(p.name, p.kind, p.source.as_bytes(), run::LoadOptions::default()).unwrap();
    let (unlimited, _) = run_on(&image, RunConfig { engine: Engine::Interp, ..Default::default() }, b"");
    for fuel in [u64::MAX, u64::MAX - 1, u64::MAX - 200, 1 << 63] {
        let cfg = RunConfig { fuel: Some(fuel), ..Default::default() };
        agree(&format!("fuel {fuel}"), &image, cfg, b"");
        let (jit, _) = run_on(&image, RunConfig { engine: Engine::Jit, ..cfg }, b"");
        assert_eq!(jit, unlimited, "fuel {fuel}");
    }
}

#[test]
fn a_code_cache_too_large_for_rel32_jumps_is_a_clean_error() {
    let image = asm("tiny", ".text\nmain: li r1, 0\nsys 0\n");
    let cfg = RunConfig { engine: Engine::Jit, cache_size: pvm::jit::MAX_CACHE_SIZE + 1, ..Default::default() };
    let mut io = pvm::machine::BufferIo::default();
    let e = run::run_image(&image, &cfg, None, None, &mut io).unwrap_err();
    assert!(matches!(e, run::LoadError::Jit(pvm::jit::JitError::CacheTooLarge(_))), "{e}");
    let cfg = RunConfig { cache_size: pvm::jit::MAX_CACHE_SIZE, ..cfg };
    assert_eq!(run::run_image(&image, &cfg, None, None, &mut io).unwrap().outcome, Outcome::Exited(0));
}

/// The input of CI's `pvm_differential` timeout (2026-12-02): a loop that
/// stores into its own block every iteration, in a 1 MiB memory with an
/// 8 KiB code cache. The translator dropped and translated the block
/// again at every iteration, at every threshold: 18,200 translations in
/// 100,000 instructions, 220 times the interpreter's time. A start
/// rewritten over and over now backs off (`pvm::jit::tier`).
#[test]
fn a_block_rewritten_every_iteration_is_not_translated_every_iteration() {
    let input = include_bytes!("../../fuzz/regressions/pvm_differential/self-patching-loop-translated-every-iteration");
    let case = tests::gen::case(&mut tests::gen::Bytes::new(input));
    assert_eq!(case.cfg.fuel, Some(100_000));
    match tests::gen::check(&case) {
        Ok(tests::gen::Verdict::Agree(f, stats)) => {
            assert_eq!(f.retired, 100_000, "{f:?}");
            assert!(stats.blocks_translated < 100 && stats.invalidations < 100, "{stats:?}");
            assert!(stats.cold_blocks > 1000, "the rewritten block ran interpreted: {stats:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// The input of CI's `pvm_image` timeout (2026-12-02): an image whose
/// program asks `sys 7` for 167.77 s. The interpreter slept the fuzzer's
/// thread that long whatever its I/O; a sleep now goes through the
/// embedder's `SysIo::sleep` (the fuzzer's records it and does not wait).
#[test]
fn a_sleep_goes_to_the_embedder_which_need_not_wait() {
    use pvm::machine::SysIo;
    #[derive(Default)]
    struct Log(Vec<std::time::Duration>, Vec<u8>);
    impl SysIo for Log {
        fn write(&mut self, bytes: &[u8]) {
            self.1.extend_from_slice(bytes);
        }
        fn read(&mut self, _: &mut [u8]) -> usize {
            0
        }
        fn sleep(&mut self, time: std::time::Duration) {
            self.0.push(time);
        }
    }
    let input = include_bytes!("../../fuzz/regressions/pvm_image/sleep-for-days");
    let image = pvm::image::Image::from_bytes(input).expect("the artifact parses");
    pvm::verify::verify(&image).expect("and verifies");
    for engine in [Engine::Interp, Engine::Jit] {
        let mut io = Log::default();
        let cfg = RunConfig { engine, mem_mib: 1, fuel: Some(2000), ..Default::default() };
        let started = std::time::Instant::now();
        let run = run::run_image(&image, &cfg, None, None, &mut io).expect("runs");
        assert_eq!(io.0, [std::time::Duration::from_micros(167_772_160)], "{engine:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{engine:?} waited");
        assert!(run.machine.retired <= 2000, "{engine:?}: {:?}", run.outcome);
    }
}
