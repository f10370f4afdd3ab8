//! A hash map keyed by guest addresses, with a multiplicative hash instead
//! of SipHash: the keys are the guest's own pcs and futex addresses, hashed
//! on every block lookup and every `wait`/`wake`, where SipHash's cost
//! showed (and its flooding resistance buys nothing: a guest slowing its
//! own lookups only slows itself).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from guest addresses.
pub type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// Hashes one u64 (anything else, byte by byte, the same way).
#[derive(Clone, Copy, Debug, Default)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        // (instructions and doublewords are 8-byte aligned: the low bits
        // carry nothing; the fold brings the product's high bits down)
        let h = self.0.rotate_right(3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_the_low_bits() {
        let hash = |a: u64| {
            let mut h = AddrHasher::default();
            h.write_u64(a);
            h.finish()
        };
        let buckets: std::collections::HashSet<u64> = (0..1024u64).map(|k| hash(0x1000 + 8 * k) & 1023).collect();
        assert!(buckets.len() > 600, "{} of 1024 buckets", buckets.len());
        let mut m: AddrMap<u32> = AddrMap::default();
        m.insert(u64::MAX, 1);
        m.insert(0, 2);
        assert_eq!((m.get(&u64::MAX), m.get(&0), m.get(&8)), (Some(&1), Some(&2), None));
    }
}
