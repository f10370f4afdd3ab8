//! The fault-tolerance inputs from outside: the supervision channel's
//! frame decoder (`vmm::ft::wire::decode`, what a supervisor reads from a
//! child and a standby from its supervisor) and the `--inject-fault` spec
//! parser (`vmm::ft::inject::FaultSpec::parse`).
//!
//! Checks: no panic; a frame is at most the input's length or a named
//! error, and a decoded frame encodes to one that decodes to the same
//! frame; a spec is parsed or refused with a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::ft::inject::FaultSpec;
use vmm::ft::wire::{decode, encode};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok((frame, n)) => {
            assert!(n <= data.len(), "frame of {n} bytes in {}", data.len());
            let mut again = Vec::new();
            encode(&frame, &mut again);
            let (back, m) = decode(&again).expect("an encoded frame decodes");
            assert_eq!((back, m), (frame, again.len()), "encode/decode round trip");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = FaultSpec::parse(text) {
            assert!(!e.to_string().is_empty());
        }
    }
});
