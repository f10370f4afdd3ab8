//! Every load and store width at every offset around every boundary of the
//! layout (address 0, the code's start and end, the top of memory), in
//! small, odd and the largest memories, with the code at 0x1000 or ending
//! at the very top, the address split between base and offset three ways,
//! and the base in a host register or in the context: both engines must
//! agree on each, to the last bit.

use pvm::image::{Image, Section};
use pvm::isa::{Class, Instr, Opcode};
use pvm::run::RunConfig;
use tests::diff::both;

/// Registers the filler loop uses, so that r14 (the base, in the context
/// variant) gets no host register.
const FILLER: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

fn ins(op: Opcode, a: u8, b: u8, imm: i32) -> Instr {
    Instr::new(op, a, b, 0, imm)
}

/// The program: (a loop that never loops, to weigh ten other registers
/// into the host registers), base = `base`, the access, exit.
fn program(code_at: Option<u64>, mem: u64, op: Opcode, base: i64, imm: i32, in_context: bool) -> Image {
    let b = if in_context { 14 } else { 10 };
    let mut code = Vec::new();
    if in_context {
        for w in FILLER.chunks(3) {
            code.push(Instr::new(Opcode::Add, w[0], w[1 % w.len()], w[2 % w.len()], 0));
        }
        code.push(ins(Opcode::Bne, 9, 9, 0)); // target patched below
    }
    code.push(ins(Opcode::Li, b, 0, base as i32));
    code.push(ins(Opcode::Lih, b, 0, (base >> 32) as i32));
    code.push(ins(op, 11, b, imm));
    code.push(ins(Opcode::Li, 1, 0, 0));
    code.push(ins(Opcode::Sys, 0, 0, 0));
    let len = code.len() as u64 * 8;
    let start = code_at.unwrap_or(mem - len);
    if in_context {
        code[4].imm = start as i32;
    }
    let bytes = code.iter().flat_map(Instr::encode).collect();
    Image::new(start, Section { addr: start, bytes }, vec![])
}

#[test]
fn every_access_around_every_boundary_agrees_on_both_engines() {
    // Every width of both kinds (the translator handles ld32u and sign
    // extension apart), every offset that puts a width's last byte on
    // either side of a boundary.
    let ops: Vec<Opcode> =
        Opcode::ALL.iter().copied().filter(|o| matches!(o.info().class, Class::Load | Class::Store)).collect();
    let ops: Vec<Opcode> = ops.into_iter().filter(|o| !matches!(o, Opcode::Ld8S | Opcode::Ld16U)).collect();
    let offsets = [-9i64, -8, -7, -5, -4, -3, -2, -1, 0, 1, 2, 7, 8, 9];
    let mut runs = 0u64;
    let mut traps = 0u64;
    for mib in [1u64, 3, 2047] {
        let mem = mib << 20;
        for code_at in [Some(0x1000), None] {
            for in_context in [false, true] {
                let len = if in_context { 10 * 8 } else { 5 * 8 };
                let start = code_at.unwrap_or(mem - len);
                for boundary in [0, start, start + len, mem] {
                    for d in offsets {
                        let addr = boundary as i64 + d;
                        // all in the base, all in the offset, split
                        let splits = [(addr, 0), (0, addr), (addr - 0x800, 0x800)];
                        for (base, imm) in splits {
                            let Ok(imm) = i32::try_from(imm) else { continue };
                            for &op in &ops {
                                let image = program(code_at, mem, op, base, imm, in_context);
                                let cfg = RunConfig { mem_mib: mib, cache_size: 64 << 10, ..Default::default() };
                                let (interp, jit, _) = both(&image, cfg, b"");
                                let what = format!(
                                    "{op:?} at {boundary:#x}{d:+} ({base:#x} + {imm:#x}), {mib} MiB, code at {start:#x}, base in {}",
                                    if in_context { "the context" } else { "a host register" }
                                );
                                assert_eq!(interp, jit, "{what}: the engines disagree");
                                runs += 1;
                                traps += u64::from(matches!(interp.outcome, pvm::interp::Outcome::Trapped(_)));
                            }
                        }
                    }
                }
            }
        }
    }
    // Both sides of every boundary were reached: some accesses trap, most do not.
    assert!(traps > runs / 10 && traps < runs / 2, "{traps} of {runs} runs trapped");
}
