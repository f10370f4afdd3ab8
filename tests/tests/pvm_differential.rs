//! Differential tests: the interpreter and the translator must agree to the
//! last bit on every program (see `tests::diff`).

use pvm::interp::Outcome;
use pvm::machine::BufferIo;
use pvm::programs::PROGRAMS;
use pvm::run::{self, Engine, LoadOptions, RunConfig};
use tests::diff::{agree, agree_at_fuel_points, run_on};
use tests::Rng;

#[test]
fn every_program_agrees_on_both_engines() {
    for p in PROGRAMS {
        for bf_optimize in [true, false] {
            if !bf_optimize && p.kind != "b" {
                continue;
            }
            let image =
                run::build(p.name, p.kind, p.source.as_bytes(), LoadOptions { bf_optimize, ..LoadOptions::default() })
                    .unwrap();
            let fuel = p
                .expectation()
                .args
                .iter()
                .position(|a| a == "--fuel")
                .map(|i| p.expectation().args[i + 1].parse().unwrap());
            agree(p.name, &image, RunConfig { fuel, ..Default::default() }, b"input for echo\n");
        }
    }
}

#[test]
fn fuel_runs_out_at_the_same_instruction_on_both_engines() {
    for name in ["fib", "recursion", "selfmod", "indirect", "isa", "mandelbrot", "loops_bf"] {
        let p = pvm::programs::find(name).unwrap();
        let image = run::build(p.name, p.kind, p.source.as_bytes(), LoadOptions::default()).unwrap();
        for fuel in [0, 1, 7, 100, 1001, 54_321] {
            agree(
                &format!("{name} with fuel {fuel}"),
                &image,
                RunConfig { fuel: Some(fuel), ..Default::default() },
                b"",
            );
        }
    }
}

#[test]
fn a_tiny_cache_flushes_and_still_agrees() {
    let mut flushes = 0;
    for name in ["isa", "recursion", "selfmod", "demo", "hello_bf"] {
        let p = pvm::programs::find(name).unwrap();
        let image = run::build(p.name, p.kind, p.source.as_bytes(), LoadOptions::default()).unwrap();
        let stats = agree(name, &image, RunConfig { cache_size: 8192, ..Default::default() }, b"");
        flushes += stats.flushes;
    }
    assert!(flushes > 0, "an 8 KiB cache never filled up");
}

#[test]
fn self_modifying_code_invalidates_translated_blocks() {
    let p = pvm::programs::find("selfmod").unwrap();
    let image = run::build(p.name, p.kind, p.source.as_bytes(), LoadOptions::default()).unwrap();
    let stats = agree("selfmod", &image, RunConfig::default(), b"");
    assert!(stats.invalidations >= 10, "{stats:?}");
}

#[test]
fn random_programs_agree_on_both_engines_with_a_tiny_cache() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    let (mut flushes, mut invalidations, mut cases) = (0, 0, 0);
    for n in 0..1500 {
        let len = 1 + rng.below(40);
        let image = tests::random_program(&mut rng, len);
        if pvm::verify::verify(&image).is_err() {
            continue;
        }
        cases += 1;
        // A cache of 1 KiB holds the trampoline and a few blocks: it flushes
        // often. A block too big for it is a clean error, not a comparison.
        let cache_size = if n % 2 == 0 { 1024 } else { 1 << 20 };
        let tiny = RunConfig {
            engine: Engine::Jit,
            jit_threshold: 1,
            mem_mib: 1,
            fuel: Some(20_000),
            cache_size,
            ..Default::default()
        };
        let mut io = BufferIo::default();
        if let Err(e) = run::run_image(&image, &tiny, None, None, &mut io) {
            assert!(matches!(e, run::LoadError::Jit(pvm::jit::JitError::CacheTooSmall(_))), "{e}");
            continue;
        }
        let stats = agree(
            &format!("random program {n}:\n{}", pvm::disasm::disassemble(&image)),
            &image,
            RunConfig { mem_mib: 1, fuel: Some(20_000), cache_size, ..Default::default() },
            b"abc",
        );
        flushes += stats.flushes;
        invalidations += stats.invalidations;
    }
    assert!(cases > 300, "only {cases} random programs verified");
    assert!(flushes > 0 && invalidations > 0, "flushes {flushes}, invalidations {invalidations}");
}

#[test]
fn division_by_constants_agrees_on_edge_values() {
    // Every divisor shape the translator special-cases (±1, ±2^k, the
    // multiply-by-magic rest) on values at the edges, with the destination
    // the source itself, another register, or one that lives in the context.
    let values: [i64; 9] = [0, 1, -1, 7, -7, 0x1234_5678_9abc, i64::MAX, i64::MIN, i64::MIN + 1];
    let divisors: [i32; 16] = [1, -1, 2, -2, 8, -8, 1 << 30, i32::MIN, 3, -3, 7, 10, 15, 31, -1000, i32::MAX];
    let dests = [1u8, 2, 14, 15];
    let mut src = String::from(".text\nmain: li r0, out\n");
    for (n, v) in values.iter().enumerate() {
        for (m, d) in divisors.iter().enumerate() {
            for op in ["divsi", "remsi"] {
                let dst = dests[(n + m) % dests.len()];
                src += &format!("li r1, {}\nlih r1, {}\n", *v as i32, (*v >> 32) as i32);
                src += &format!("{op} r{dst}, r1, {d}\nst64 r{dst}, [r0]\naddi r0, r0, 8\n");
            }
        }
    }
    src += "li r1, 0\nsys 0\n.data\nout: .zero 4096\n";
    let image = pvm::asm::assemble("division", &src).expect("assembles");
    agree("constant division", &image, RunConfig::default(), b"");
}

#[test]
fn branches_over_one_instruction_agree_at_every_fuel_limit() {
    // The translator turns these into conditional moves: each branch kind
    // over each kind of simple instruction, taken and not taken at random,
    // in a loop; then stopped by the fuel at many points (the retired count
    // drops by one exactly when the branch is taken).
    let branches = ["beq", "bne", "blt", "bge", "bltu", "bgeu"];
    let simple = [
        "li r3, -5",
        "mov r3, r4",
        "add r3, r3, r4",
        "sub r12, r3, r4",
        "mul r3, r4, r4",
        "and r3, r3, r5",
        "or r14, r3, r4",
        "xor r3, r4, r5",
        "addi r3, r3, 1",
        "subi r13, r13, 3",
        "muli r3, r3, 7",
        "andi r3, r3, 255",
        "ori r3, r3, 8",
        "xori r14, r14, -1",
    ];
    let mut src = String::from(".text\nmain: li r1, 0\nli r2, 400\nli r4, 12345\nli r5, 3\n");
    src += "top: muli r4, r4, 1103515245\naddi r4, r4, 12345\nandi r5, r4, 7\nsubi r5, r5, 3\n";
    for (n, s) in simple.iter().enumerate() {
        let b = branches[n % branches.len()];
        src += &format!("{b} r5, r1, skip{n}\n{s}\nskip{n}: add r6, r6, r3\n");
    }
    for (n, b) in branches.iter().enumerate() {
        src += &format!("{b} r4, r5, over{n}\naddi r7, r7, {n}\nover{n}: xor r6, r6, r7\n");
    }
    src += "addi r1, r1, 1\nblt r1, r2, top\nmov r1, r6\nsys 0\n";
    let image = pvm::asm::assemble("ifconvert", &src).expect("assembles");
    let full = agree_at_fuel_points("branches over one instruction", &image, 61);
    assert!(full.retired > 10_000, "{full:?}");
}

#[test]
fn calls_and_returns_agree_however_the_guest_plays_with_them() {
    // The translator turns guest calls into host calls (up to a depth) and
    // checks each guest `ret` against its frame: recursion deeper than the
    // host frames, returns to an address the callee changed, a return
    // address popped and jumped to, and the fuel running out anywhere.
    let src = "
        .text
main:   li r5, 0
        li r1, 3000
        call deep
        add r5, r5, r0
        li r1, 40
loop:   call skipper
        addi r5, r5, 1000
        subi r1, r1, 1
        bne r1, r9, loop
        call popper
        addi r5, r5, 7
        li r1, 25
        call deep
        add r5, r5, r0
        mov r1, r5
        sys 0
deep:   beq r1, r9, base
        push r1
        subi r1, r1, 1
        call deep
        pop r1
        add r0, r0, r1
        ret
base:   li r0, 0
        ret
skipper: pop r2
        addi r2, r2, 8
        push r2
        addi r5, r5, 1
        ret
popper: pop r3
        jr r3
";
    let image = pvm::asm::assemble("calls", src).expect("assembles");
    let full = agree_at_fuel_points("calls and returns", &image, 41);
    assert_eq!(full.regs[5], 3000 * 3001 / 2 + 40 + 7 + 25 * 26 / 2, "{full:?}");
}

#[test]
fn blocks_that_assume_a_value_agree_when_it_changes() {
    // The translator may assume that a register a loop only reads keeps
    // its value (0 next to a remainder test, 2.0 in a multiplication),
    // guarded at the block's entry. The second pass changes both values:
    // the guards must fail and the blocks be translated again.
    let src = "
        .text
main:   li r9, 0
        lif r13, 2.0
        li r7, 0
again:  li r2, 27
        li r5, 200
        call steps
        lif r12, 1.5
        li r5, 20
        call scale
        addi r7, r7, 1
        li r9, 1
        lif r13, 3.0
        li r10, 3
        blt r7, r10, again
        mov r1, r3
        sys 0
steps:  remsi r4, r2, 2
        bne r4, r9, odd
        addi r3, r3, 1
        jmp next
odd:    addi r3, r3, 100
next:   muli r2, r2, 5
        addi r2, r2, 1
        subi r5, r5, 1
        bne r5, r0, steps
        ret
scale:  fmul r12, r13, r12
        subi r5, r5, 1
        bne r5, r0, scale
        ftoi r6, r12
        add r3, r3, r6
        ret
";
    let image = pvm::asm::assemble("assumptions", src).expect("assembles");
    let stats = agree("assumed values", &image, RunConfig::default(), b"");
    assert!(stats.guard_failures >= 2, "{stats:?}");
    agree_at_fuel_points("assumed values", &image, 31);
}

#[test]
fn a_run_of_pops_at_the_top_of_memory_traps_at_the_right_pop() {
    // One check covers a run of pops (and the ret after them): when only
    // the first fits, the first still pops and the second traps, on both
    // engines. The same for a run of pushes reaching the stack limit.
    let cfg = RunConfig { mem_mib: 1, ..Default::default() };
    let top = (1u64 << 20) - 16;
    let pops =
        format!(".text\nmain: li r15, {top}\nli r3, 5\nst64 r3, [r15]\npop r1\npop r2\naddi r4, r4, 1\npop r5\nret\n");
    let image = pvm::asm::assemble("pops", &pops).expect("assembles");
    let (f, _) = run_on(&image, RunConfig { engine: Engine::Interp, ..cfg }, b"");
    assert!(matches!(f.outcome, Outcome::Trapped(_)) && f.regs[1] == 5, "{f:?}");
    agree("pops at the top", &image, cfg, b"");
    let pushes =
        ".text\nmain: li r15, limit+24\npush r1\npush r2\naddi r4, r4, 1\npush r3\ncall main\n.data\nlimit: .zero 16\n";
    let image = pvm::asm::assemble("pushes", pushes).expect("assembles");
    let (f, _) = run_on(&image, RunConfig { engine: Engine::Interp, ..cfg }, b"");
    assert!(matches!(f.outcome, Outcome::Trapped(_)) && f.retired == 2, "{f:?}");
    agree("pushes at the limit", &image, cfg, b"");
}

#[test]
fn returns_with_no_call_open_go_on_or_trap_at_the_ret() {
    // With no call open, a `ret` finds no host frame to return through: it
    // goes where it returns through the lookup table (back to the start of
    // the code, elsewhere), or traps at the `ret` itself if that is no code.
    let src = "
        .text
main:   addi r5, r5, 1
        li r6, 4
        bge r5, r6, other
        li r1, main
        push r1
        ret
other:  li r1, done
        push r1
        ret
done:   li r1, 12345
        push r1
        ret
";
    let image = pvm::asm::assemble("returns", src).expect("assembles");
    let full = agree_at_fuel_points("returns with no call open", &image, 23);
    let Outcome::Trapped(t) = &full.outcome else { panic!("{full:?}") };
    assert!(matches!(t.kind, pvm::trap::TrapKind::BadJumpTarget(12345)), "{full:?}");
    assert_eq!((full.regs[5], full.pc), (4, 0x1000 + 11 * 8), "{full:?}");
}

#[test]
fn multiplications_by_constants_agree_on_edge_values() {
    // The translator multiplies by 2^k with a shift, by 3, 5 and 9 with a
    // lea, by 2^k - 1 with a shift and a subtraction (into another
    // register), and folds an `addi` right after into the lea: every shape, with
    // wrapping values, the destination the source, another register or
    // one in the context, and an `addi` that does not fit the fold.
    let values: [i64; 6] = [0, 1, -7, 0x1234_5678_9abc, i64::MAX, i64::MIN + 1];
    let factors: [i32; 17] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 1 << 30, i32::MAX, -1, -3, i32::MIN];
    let dests = [1u8, 2, 14, 15];
    let mut src = String::from(".text\nmain: li r0, out\n");
    for (n, v) in values.iter().enumerate() {
        for (m, f) in factors.iter().enumerate() {
            let d = dests[(n + m) % dests.len()];
            let add = [0, 1, -5, i32::MAX][m % 4];
            src += &format!("li r1, {}\nlih r1, {}\n", *v as i32, (*v >> 32) as i32);
            src += &format!("muli r{d}, r1, {f}\nst64 r{d}, [r0]\n");
            src += &format!("muli r{d}, r1, {f}\naddi r{d}, r{d}, {add}\nst64 r{d}, [r0+8]\n");
            src += &format!("muli r{d}, r1, {f}\naddi r3, r{d}, {add}\nst64 r3, [r0+16]\naddi r0, r0, 24\n");
        }
    }
    src += "li r1, 0\nsys 0\n.data\nout: .zero 4096\n";
    let image = pvm::asm::assemble("multiplication", &src).expect("assembles");
    agree_at_fuel_points("constant multiplication", &image, 17);
}

#[test]
fn remainders_tested_against_zero_agree_on_every_path() {
    // Next to `bne rem, zero`, the translator tests the dividend's low bits
    // and computes the remainder only on the way to the branch target (0
    // on the other way): remainders by 2, 4 and -8 of negative and
    // positive values, used on the taken path, a branch back to its own
    // block, one ending its block, and a destination in the context.
    let src = "
        .text
main:   li r9, 0
        li r2, -41
        li r10, 41
        li r0, out
loop:   remsi r4, r2, 2
        bne r4, r9, odd
        addi r3, r3, 1
        jmp by4
odd:    add r5, r5, r4
        st64 r4, [r0]
by4:    remsi r11, r2, 4
        bne r11, r9, odd4
        addi r3, r3, 7
        jmp by8
odd4:   mul r6, r11, r11
        add r5, r5, r6
by8:    remsi r14, r2, -8
        bne r14, r9, odd8
        addi r3, r3, 13
odd8:   add r5, r5, r14
        st64 r14, [r0+8]
        addi r0, r0, 16
        addi r2, r2, 1
        blt r2, r10, loop
self:   addi r2, r2, 3
        remsi r12, r2, 2
        bne r12, r9, self
        add r5, r5, r12
        li r2, 7
        remsi r13, r2, 4
        bne r13, r9, last
last:   add r5, r5, r13
        mov r1, r5
        sys 0
        .data
out:    .zero 2048
";
    let image = pvm::asm::assemble("remainders", src).expect("assembles");
    agree_at_fuel_points("remainder tests", &image, 29);
}

#[test]
fn pushes_and_pops_that_move_sp_late_agree_wherever_sp_is_seen() {
    // The translator moves sp's host register once per run of pushes and
    // pops (their accesses addressed from the old value): every way the
    // guest can see sp in between must see it moved (read as a register,
    // pushed, compared, a branch, the block's end), a trap in the middle
    // of a run included (the out-of-bounds load at the end, after a pop).
    let src = "
        .text
main:   li r8, 5
        li r9, 0
loop:   push r8
        push r9
        mov r1, sp
        addi r9, r9, 1
        push r1
        pop r2
        sub r3, r1, r2
        pop r4
        push sp
        pop r5
        sub r5, r5, sp
        add r6, r6, r5
        pop r7
        push r7
        push r8
        ld64 r10, [r9+2040]
        pop r7
        pop r7
        push r4
        pop r4
        blt r9, r8, loop
        pop r11
        li r12, 1000000000
        ld64 r13, [r12]
        mov r1, r6
        sys 0
";
    let image = pvm::asm::assemble("late sp", src).expect("assembles");
    let full = agree_at_fuel_points("sp moved late", &image, 37);
    assert!(matches!(full.outcome, Outcome::Trapped(_)), "{full:?}");
}
