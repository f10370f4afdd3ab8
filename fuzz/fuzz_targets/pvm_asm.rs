//! The assembler on arbitrary text, and the round trips the disassembler
//! promises ("instructions back to `.pasm` text that the assembler
//! accepts, so assemble → disassemble → assemble gives the same image").
//!
//! Checks: nothing panics; errors name a line of the source and a column
//! from 1; an assembled image encodes to `.pbc` and parses back to itself;
//! its disassembly assembles, to the same image. Sources whose padding
//! directives could ask for more than 64 KiB are skipped (see
//! `padding_bound`): the assembler builds images up to 2 GiB by design.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvm::image::Image;
use virtlab_fuzz::padding_bound;

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    if padding_bound(&source) > 64 << 10 {
        return;
    }
    let image = match pvm::asm::assemble("fuzz.pasm", &source) {
        Ok(image) => image,
        Err(e) => {
            let lines = source.lines().count().max(1);
            assert!(e.line >= 1 && e.line <= lines, "error on line {} of {lines}: {e}", e.line);
            assert!(e.col >= 1, "column 0: {e}");
            return;
        }
    };
    assert_eq!(Image::from_bytes(&image.to_bytes()).as_ref(), Ok(&image), ".pbc round trip");
    let text = pvm::disasm::disassemble(&image);
    match pvm::asm::assemble("disasm.pasm", &text) {
        Ok(again) => assert_eq!(again, image, "disassembly reassembles to another image:\n{text}"),
        Err(e) => panic!("the disassembly does not assemble: {e}\n{text}"),
    }
});
