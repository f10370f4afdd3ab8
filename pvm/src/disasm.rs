//! The disassembler: instructions back to `.pasm` text that the assembler
//! accepts, so assemble → disassemble → assemble gives the same image.

use std::fmt::Write;

use crate::image::{Image, CODE_BASE};
use crate::isa::{Format, Instr, INSTR_SIZE, SP};

/// A register's name (`sp` for r15).
pub fn reg(r: u8) -> String {
    if r == SP {
        "sp".to_string()
    } else {
        format!("r{r}")
    }
}

fn mem_operand(base: u8, imm: i32) -> String {
    match imm {
        0 => format!("[{}]", reg(base)),
        i if i < 0 => format!("[{}-{}]", reg(base), -(i as i64)),
        i => format!("[{}+{i}]", reg(base)),
    }
}

/// One instruction as assembler text.
pub fn format_instr(i: &Instr) -> String {
    let info = i.op.info();
    let m = info.mnemonic;
    match info.format {
        Format::None => m.to_string(),
        Format::R2 => format!("{m} {}, {}", reg(i.a), reg(i.b)),
        Format::R3 => format!("{m} {}, {}, {}", reg(i.a), reg(i.b), reg(i.c)),
        Format::RI => format!("{m} {}, {}, {}", reg(i.a), reg(i.b), i.imm),
        Format::LoadImm => format!("{m} {}, {}", reg(i.a), i.imm),
        Format::Load | Format::Store => format!("{m} {}, {}", reg(i.a), mem_operand(i.b, i.imm)),
        Format::Branch => format!("{m} {}, {}, {:#x}", reg(i.a), reg(i.b), i.imm as u32),
        Format::BranchZ => format!("{m} {}, {:#x}", reg(i.a), i.imm as u32),
        Format::LinearLoad | Format::LinearStore | Format::Atomic => {
            format!("{m} {}, {}, {}", reg(i.a), mem_operand(i.b, i.imm), reg(i.c))
        }
        Format::Jump => format!("{m} {:#x}", i.imm as u32),
        Format::Src | Format::Dst => format!("{m} {}", reg(i.a)),
        Format::Sys => format!("{m} {}", i.imm),
    }
}

/// The 8 bytes at an address as text: the instruction, or what is wrong.
pub fn describe(bytes: Option<[u8; 8]>) -> String {
    match bytes.map(Instr::decode) {
        Some(Ok(i)) => format_instr(&i),
        Some(Err(e)) => format!("{e}"),
        None => "outside memory".to_string(),
    }
}

/// True if `i` is the encoding the assembler gives its text: the fields
/// its format does not show are zero. Decoding accepts any register number
/// below 16 and any immediate there, which the text cannot express.
fn is_canonical(i: &Instr) -> bool {
    let mut shown = [0u8; 3];
    for (field, r) in shown.iter_mut().zip(i.named_regs()) {
        *field = r;
    }
    let shows_imm = match i.op.info().format {
        Format::RI
        | Format::LoadImm
        | Format::Load
        | Format::Store
        | Format::LinearLoad
        | Format::LinearStore
        | Format::Atomic
        | Format::Branch
        | Format::BranchZ
        | Format::Jump
        | Format::Sys => true,
        Format::None | Format::R2 | Format::R3 | Format::Src | Format::Dst => false,
    };
    [i.a, i.b, i.c] == shown && (shows_imm || i.imm == 0)
}

/// A whole image as assembler text. Code bytes whose encoding the text of
/// their instruction would not give back are written as `.byte`.
pub fn disassemble(image: &Image) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "; pvm disassembly\n.entry {:#x}\n.text", image.entry);
    if image.code.addr != CODE_BASE {
        // (where the code starts, even when there is none: it is the image's)
        let _ = writeln!(out, ".org {:#x}", image.code.addr);
    }
    for (k, chunk) in image.code.bytes.chunks(8).enumerate() {
        let addr = image.code.addr + k as u64 * INSTR_SIZE;
        let text = match <[u8; 8]>::try_from(chunk).ok().map(Instr::decode) {
            Some(Ok(i)) if is_canonical(&i) => format_instr(&i),
            _ => format!(".byte {}", chunk.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")),
        };
        let _ = writeln!(out, "    {text:<32} ; {addr:#x}");
    }
    if !image.data.is_empty() {
        let _ = writeln!(out, ".data");
    }
    for s in &image.data {
        let _ = writeln!(out, ".org {:#x}", s.addr);
        for line in s.bytes.chunks(16) {
            let bytes: Vec<String> = line.iter().map(|b| format!("{b:#04x}")).collect();
            let _ = writeln!(out, "    .byte {}", bytes.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Opcode;

    #[test]
    fn formats_each_operand_shape() {
        assert_eq!(format_instr(&Instr::new(Opcode::Add, 1, 2, 3, 0)), "add r1, r2, r3");
        assert_eq!(format_instr(&Instr::new(Opcode::AddI, 15, 15, 0, -16)), "addi sp, sp, -16");
        assert_eq!(format_instr(&Instr::new(Opcode::Ld64, 1, 2, 0, -8)), "ld64 r1, [r2-8]");
        assert_eq!(format_instr(&Instr::new(Opcode::St8, 4, 5, 0, 0)), "st8 r4, [r5]");
        assert_eq!(format_instr(&Instr::new(Opcode::Blt, 1, 2, 0, 0x1040)), "blt r1, r2, 0x1040");
        assert_eq!(format_instr(&Instr::new(Opcode::Ret, 0, 0, 0, 0)), "ret");
        assert_eq!(format_instr(&Instr::new(Opcode::Sys, 0, 0, 0, 3)), "sys 3");
        assert_eq!(describe(Some([0xfe, 0, 0, 0, 0, 0, 0, 0])), "unknown opcode 0xfe");
    }

    #[test]
    fn fields_the_text_cannot_show_survive_the_round_trip_as_bytes() {
        // Found by the pvm_image fuzz target (fuzz/regressions/pvm_image/):
        // a nop with register fields and an immediate disassembled to
        // `nop`, which assembles to eight zero bytes.
        let odd_nop = [0, 1, 2, 0, 248, 255, 255, 0];
        let li_with_b = Instr::new(Opcode::Li, 1, 2, 0, 5).encode();
        let canonical = Instr::new(Opcode::Add, 1, 2, 3, 0).encode();
        let bytes = [odd_nop, li_with_b, canonical].concat();
        let image = Image::new(0x1000, crate::image::Section { addr: 0x1000, bytes }, vec![]);
        let text = disassemble(&image);
        assert!(text.contains(".byte 0, 1, 2, 0, 248, 255, 255, 0"), "{text}");
        assert!(text.contains("add r1, r2, r3"), "{text}");
        let again = crate::asm::assemble("again.pasm", &text).unwrap();
        assert_eq!(again.code, image.code, "{text}");
    }

    #[test]
    fn code_placed_by_org_reassembles_at_its_address_even_when_empty() {
        // Found by the pvm_asm fuzz target (fuzz/regressions/pvm_asm/
        // empty-code-at-org.pasm): `.org 0x1010` and no instruction gave an
        // empty code section at 0x1010, whose disassembly, without the
        // `.org`, reassembled at 0x1000.
        for src in [".org 0X1010\n", ".org 0xff000\nmain: nop\n sys 0\n", "main: nop\n"] {
            let image = crate::asm::assemble("x.pasm", src).unwrap();
            let text = disassemble(&image);
            assert_eq!(crate::asm::assemble("again.pasm", &text).unwrap(), image, "{src}:\n{text}");
        }
    }
}
