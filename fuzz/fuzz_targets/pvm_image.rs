//! `.pbc` images: the parser, the verifier, `run::build` (on text too),
//! and the interpreter on whatever the verifier accepts.
//!
//! Checks: nothing panics; a parsed image encodes back to bytes that parse
//! to the same image; `build` accepts exactly the images that parse and
//! verify; a verified image runs on the interpreter to an exit or a trap
//! (fuel 2000, 1 MiB); its disassembly, when it assembles, gives the same
//! code bytes (the disassembler promises assemblable text for what the
//! assembler produced; an arbitrary image may have sections it cannot
//! place, so only the code is compared).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pvm::image::Image;
use pvm::interp::{InterpStats, Interpreter, Outcome};
use pvm::machine::Machine;
use pvm::run::{build, LoadOptions};
use pvm::trap::TrapKind;
use virtlab_fuzz::{padding_bound, BoundedIo};

fuzz_target!(|data: &[u8]| {
    if !Image::is_image(data) {
        // Text: `build` assembles it (the pvm_asm target's subject), with
        // the same budget on padding.
        if padding_bound(&String::from_utf8_lossy(data)) <= 64 << 10 {
            let _ = build("fuzz.pasm", "pasm", data, LoadOptions::default());
        }
        return;
    }
    let built = build("fuzz.pbc", "pasm", data, LoadOptions::default());
    let Ok(image) = Image::from_bytes(data) else {
        assert!(built.is_err(), "build accepted an image the parser rejects");
        return;
    };
    assert_eq!(Image::from_bytes(&image.to_bytes()).as_ref(), Ok(&image), "encoding round trip");
    let verified = pvm::verify::verify(&image);
    assert_eq!(verified.is_ok(), built.is_ok(), "build and verify disagree: {verified:?} vs {built:?}");
    if let Ok(b) = &built {
        assert_eq!(b, &image, "build returned another image");
    }
    if verified.is_err() {
        return;
    }
    let text = pvm::disasm::disassemble(&image);
    if let Ok(again) = pvm::asm::assemble("disasm.pasm", &text) {
        assert_eq!(again.code.bytes, image.code.bytes, "disassembly reassembles to other code:\n{text}");
    }
    if let Ok(mut m) = Machine::new(&image, 1) {
        let mut io = BoundedIo::new(b"input", 256);
        let outcome = Interpreter::new(&m).run::<false, false>(
            &mut m,
            &mut io,
            2000,
            &mut InterpStats::default(),
            &mut std::io::sink(),
        );
        assert!(m.retired <= 2000, "retired {} instructions on 2000 fuel", m.retired);
        match &outcome {
            Outcome::Exited(status) => assert!((0..=255).contains(status), "exit status {status}"),
            // `sys return` with no embedder: the run ends there.
            Outcome::Returned => {}
            // A thread instruction: the interpreter stops before it, for
            // a scheduler (there is none here).
            Outcome::ThreadOp => assert!(m.retired <= 2000),
            Outcome::Trapped(t) if t.kind == TrapKind::FuelExhausted => {
                assert_eq!(m.retired, 2000, "fuel ran out early: {t}")
            }
            Outcome::Trapped(t) => assert_eq!(t.retired, m.retired, "the trap and the machine disagree"),
        }
    }
});
