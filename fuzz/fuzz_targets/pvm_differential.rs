//! The interpreter against the translator, on programs and layouts the
//! input bytes choose through the project's differential generator
//! (`tests::gen`: memories of 1 to 2047 MiB, code at the top or the bottom,
//! data at both edges, stacks at their limit, snippets aimed at what the
//! translator does differently).
//!
//! Checks: both engines end the same way (exit status or trap, with its
//! pc and retired count), with the same output, registers, pc and memory;
//! no access gets past the translator's bounds checks (none is left for
//! the guard regions to catch); nothing panics or crashes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tests::gen::{self, Bytes, Verdict};

fuzz_target!(|data: &[u8]| {
    let case = gen::case(&mut Bytes::new(data));
    match gen::check(&case) {
        Ok(Verdict::Agree(_, stats)) => {
            assert_eq!(stats.faults_recovered, 0, "an access got past its bounds check");
        }
        Ok(Verdict::Skipped(_)) => {}
        Err(disagreement) => panic!("{disagreement}"),
    }
});
