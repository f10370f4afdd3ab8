//! The snapshot state-file parser (`vmm::snapshot::parse`), on the input
//! as it is and with its checksums recomputed (`vmm::snapshot::reseal`),
//! so that changes inside sections reach the section decoders.
//!
//! Checks: no panic; every input is a snapshot or a named error; a parsed
//! snapshot encodes to bytes that parse to a snapshot with the same
//! encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::snapshot::{format, parse, reseal};

fn round_trip(bytes: &[u8]) {
    match parse(bytes) {
        Ok(s) => {
            // (a snapshot holds KVM structures without equality: compared
            // by their encoding)
            let bytes = format::encode(&s);
            match parse(&bytes) {
                Ok(again) => assert_eq!(format::encode(&again), bytes, "encode/parse round trip"),
                Err(e) => panic!("an encoded snapshot does not parse: {e}"),
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    let mut sealed = data.to_vec();
    reseal(&mut sealed);
    round_trip(&sealed);
});
