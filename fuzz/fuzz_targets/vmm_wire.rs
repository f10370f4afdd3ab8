//! The live-migration wire decoder (`vmm::migration::decode`), on the
//! input as it is and with the first frame's checksum recomputed
//! (`vmm::migration::reseal`), so that changes reach the payload decoders.
//!
//! Checks: no panic; every input is a frame of at most its length or a
//! named error; a decoded message encodes to a frame that decodes to the
//! same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::migration::{decode, reseal, wire};

fn round_trip(bytes: &[u8]) {
    match decode(bytes) {
        Ok((msg, n)) => {
            assert!(n <= bytes.len(), "frame of {n} bytes in {}", bytes.len());
            let mut again = Vec::new();
            wire::encode(&msg, &mut again);
            let (back, m) = decode(&again).expect("an encoded frame decodes");
            assert_eq!((back, m), (msg, again.len()), "encode/decode round trip");
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
