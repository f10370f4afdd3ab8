//! Every register-to-register instruction of the ISA (integer, 32-bit
//! forms, divisions, f64, f32, conversions) on edge values (zero, ±1, the
//! 32- and 64-bit extremes, shift counts at their limits, ±0, ±∞, quiet and
//! signalling NaNs with payloads, values just inside and outside each
//! conversion's range), with operands and destination in host registers or
//! in the context: both engines must agree on every result, trap and count.

use pvm::image::{Image, Section, CODE_BASE};
use pvm::isa::{Class, Format, Instr, Opcode};
use pvm::run::RunConfig;
use tests::diff::both;

/// Integer operands: zero, ±1, the 32- and 64-bit extremes, shift counts.
const INTS: [u64; 16] = [
    0,
    1,
    u64::MAX,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0xffff_ffff_8000_0000,
    i64::MAX as u64,
    i64::MIN as u64,
    31,
    32,
    63,
    64,
    0x1234_5678_9abc_def0,
    0xffff_ffff_ffff_fffe,
];

/// f64 bit patterns: ±0, ±1, ±∞, NaNs (quiet, signalling, payloads, both
/// signs), extremes, halves, and the conversions' range edges.
const F64S: [u64; 24] = [
    0,
    1 << 63,
    0x3ff0_0000_0000_0000,
    0xbff0_0000_0000_0000,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x7ff8_0000_0000_0000,
    0xfff8_0000_0000_1234,
    0x7ff4_0000_0000_0abc,
    0x0000_0000_0000_0001,
    0x7fef_ffff_ffff_ffff,
    0x4004_0000_0000_0000, // 2.5
    0xc004_0000_0000_0000, // -2.5
    0x3fe0_0000_0000_0000, // 0.5
    0x41e0_0000_0000_0000, // 2^31
    0xc1e0_0000_0020_0000, // -2^31 - 1
    0x41df_ffff_ffc0_0000, // 2^31 - 1
    0x41f0_0000_0000_0000, // 2^32
    0x43e0_0000_0000_0000, // 2^63
    0xc3e0_0000_0000_0000, // -2^63
    0x43f0_0000_0000_0000, // 2^64
    0xbfef_ffff_ffff_ffff, // -0.999...
    0x43df_ffff_ffff_ffff, // just below 2^63
    0x4330_0000_0000_0001, // 2^52 + 1
];

/// f32 bit patterns, the same kinds.
const F32S: [u64; 18] = [
    0,
    0x8000_0000,
    0x3f80_0000,
    0xbf80_0000,
    0x7f80_0000,
    0xff80_0000,
    0x7fc0_0000,
    0xffc0_1234,
    0x7fa0_0abc,
    0x0000_0001,
    0x4020_0000, // 2.5
    0x3f00_0000, // 0.5
    0x4f00_0000, // 2^31
    0xcf00_0001, // just below -2^31
    0x4f80_0000, // 2^32
    0x5f00_0000, // 2^63
    0x5f80_0000, // 2^64
    0xbf7f_ffff, // -0.99999994
];

/// The values an instruction's operands take: integers and the bits of
/// the float kind it reads.
fn operands(op: Opcode) -> Vec<u64> {
    let floats: &[u64] = match op.info().class {
        Class::Float32 => &F32S,
        Class::Float | Class::FloatCompare | Class::FloatBits | Class::FloatToInt => &F64S,
        Class::Convert if op.info().mnemonic.contains("_f32") && !op.info().mnemonic.starts_with("f32_convert") => {
            &F32S
        }
        Class::Convert if op.info().mnemonic.contains("_f64") => &F64S,
        _ => &[],
    };
    if floats.is_empty() {
        INTS.to_vec()
    } else {
        floats.to_vec()
    }
}

/// `li`+`lih` of a 64-bit value into register r.
fn li(r: u8, v: u64) -> [Instr; 2] {
    [Instr::new(Opcode::Li, r, 0, 0, v as i32), Instr::new(Opcode::Lih, r, 0, 0, (v >> 32) as i32)]
}

/// The program: (in the context variant, a loop that never loops, to give
/// ten other registers the host registers), the operands, the
/// instruction, exit with the result's low byte.
fn program(i: Instr, x: u64, y: u64, in_context: bool) -> Image {
    let mut code = Vec::new();
    if in_context {
        for w in [[0u8, 1, 2], [3, 4, 5], [6, 7, 8], [9, 9, 9]] {
            code.push(Instr::new(Opcode::Add, w[0], w[1], w[2], 0));
        }
        code.push(Instr::new(Opcode::Bne, 9, 9, 0, CODE_BASE as i32));
    }
    code.extend(li(i.b, x));
    if i.c != i.b {
        code.extend(li(i.c, y));
    }
    code.push(i);
    code.push(Instr::new(Opcode::Mov, 1, i.a, 0, 0));
    code.push(Instr::new(Opcode::Sys, 0, 0, 0, 0));
    let bytes = code.iter().flat_map(Instr::encode).collect();
    Image::new(CODE_BASE, Section { addr: CODE_BASE, bytes }, vec![])
}

fn pure(op: Opcode) -> bool {
    matches!(
        op.info().class,
        Class::Int
            | Class::Div
            | Class::Float
            | Class::FloatCompare
            | Class::FloatBits
            | Class::IntToFloat
            | Class::FloatToInt
            | Class::Float32
            | Class::Convert
    )
}

#[test]
fn every_register_instruction_agrees_on_edge_values() {
    let cfg = RunConfig { mem_mib: 1, cache_size: 64 << 10, ..Default::default() };
    let (mut runs, mut traps) = (0u64, 0u64);
    for &op in Opcode::ALL.iter().filter(|&&op| pure(op)) {
        let format = op.info().format;
        let values = operands(op);
        // (registers: the destination the first source, or apart; in the
        // context variant r13, r14 and r12 have no host register)
        for in_context in [false, true] {
            let (a, b, c) = if in_context { (13, 14, 12) } else { (3, 4, 5) };
            for (n, &x) in values.iter().enumerate() {
                let seconds: Vec<(u64, i32)> = match format {
                    Format::R3 => values.iter().map(|&y| (y, 0)).collect(),
                    Format::RI => [0i32, 1, -1, 31, 32, 63, i32::MIN, i32::MAX].iter().map(|&m| (0, m)).collect(),
                    _ => vec![(0, 0)],
                };
                for (m, (y, imm)) in seconds.into_iter().enumerate() {
                    let dst = if (n + m) % 3 == 0 { b } else { a };
                    let i = Instr::new(op, dst, b, if format == Format::R3 { c } else { 0 }, imm);
                    let image = program(i, x, y, in_context);
                    let (interp, jit, _) = both(&image, cfg, b"");
                    assert_eq!(
                        interp,
                        jit,
                        "{} with {x:#x}, {y:#x}, imm {imm}, context {in_context}",
                        pvm::disasm::format_instr(&i)
                    );
                    runs += 1;
                    traps += u64::from(matches!(interp.outcome, pvm::interp::Outcome::Trapped(_)));
                }
            }
        }
    }
    // The trapping instructions trapped on some operands, not on most.
    assert!(traps > 0 && traps * 10 < runs, "{traps} of {runs} runs trapped");
}

/// `divui` and `remui` by the divisors the translator turns into a
/// multiply by a magic number, a shift or a mask (small odd and even
/// ones, a large prime, 2^30, and negative immediates, which sign-extend
/// to divisors above 2^63), on the edge values: both engines agree, and
/// the interpreter's results are the division's.
#[test]
fn unsigned_division_by_constants_agrees_with_the_division() {
    let cfg = RunConfig { mem_mib: 1, cache_size: 64 << 10, ..Default::default() };
    for op in [Opcode::DivUI, Opcode::RemUI] {
        for imm in [3i32, 7, 10, 12, 641, 1_000_003, 1 << 30, 6, -7, -2, i32::MIN + 1] {
            let d = i64::from(imm) as u64;
            for &x in &INTS {
                let (interp, jit, _) = both(&program(Instr::new(op, 3, 4, 0, imm), x, 0, false), cfg, b"");
                let want = if op == Opcode::DivUI { x / d } else { x % d };
                assert_eq!(interp.regs[3], want, "{op:?} {x:#x} by {imm}");
                assert_eq!(interp, jit, "{op:?} {x:#x} by {imm}");
            }
        }
    }
}

/// `divsi` and `remsi` by the divisors both engines shift or mask for (1,
/// powers of two up to 2^30) and by the ones they must not (i32::MIN,
/// which is negative, other negatives, odd ones), on the edge values:
/// both engines agree, and the results are Rust's truncating division's.
#[test]
fn signed_division_by_constants_agrees_with_the_division() {
    let cfg = RunConfig { mem_mib: 1, cache_size: 64 << 10, ..Default::default() };
    for op in [Opcode::DivSI, Opcode::RemSI] {
        for imm in [1i32, 2, 4, 8, 1 << 16, 1 << 30, 3, 10, -1, -2, -8, i32::MIN, i32::MAX] {
            let d = i64::from(imm);
            for &x in &INTS {
                let (interp, jit, _) = both(&program(Instr::new(op, 3, 4, 0, imm), x, 0, false), cfg, b"");
                let want = if op == Opcode::DivSI { (x as i64).wrapping_div(d) } else { (x as i64).wrapping_rem(d) };
                assert_eq!(interp.regs[3], want as u64, "{op:?} {x:#x} by {imm}");
                assert_eq!(interp, jit, "{op:?} {x:#x} by {imm}");
            }
        }
    }
}
