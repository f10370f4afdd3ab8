//! The flat GDT the VMM gives protected- and long-mode guests, and the
//! `kvm_segment` values that match its descriptors.

use kvm_bindings::kvm_segment;

use super::layout::{CODE32_SELECTOR, CODE64_SELECTOR, DATA_SELECTOR};

/// Access byte and flags of a descriptor, as written in the Intel SDM
/// (flags nibble in bits 12..16, access byte in bits 0..8).
const CODE64_FLAGS: u16 = 0xa09b; // G, L; present, DPL 0, code, execute/read, accessed
const CODE32_FLAGS: u16 = 0xc09b; // G, D/B; present, code, execute/read, accessed
const DATA_FLAGS: u16 = 0xc093; // G, D/B; present, data, read/write, accessed

/// Encodes one segment descriptor.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
}

/// The GDT: null, 64-bit code (0x08), 32-bit code (0x10), flat data (0x18).
pub const GDT: [u64; 4] =
    [0, gdt_entry(CODE64_FLAGS, 0, 0xfffff), gdt_entry(CODE32_FLAGS, 0, 0xfffff), gdt_entry(DATA_FLAGS, 0, 0xfffff)];

/// The GDT of the Linux 64-bit boot protocol: `__BOOT_CS` (0x10) is 64-bit
/// code and `__BOOT_DS` (0x18) flat data; 0x08 is left null.
pub const LINUX_GDT: [u64; 4] = [0, 0, gdt_entry(CODE64_FLAGS, 0, 0xfffff), gdt_entry(DATA_FLAGS, 0, 0xfffff)];

/// The Linux boot GDT as bytes.
pub fn linux_gdt_bytes() -> Vec<u8> {
    LINUX_GDT.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// Code (0x10) and data (0x18) segments of [`LINUX_GDT`].
pub fn linux_boot_segments() -> (kvm_segment, kvm_segment) {
    (segment_from_entry(LINUX_GDT[2], 0x10), segment_from_entry(LINUX_GDT[3], DATA_SELECTOR))
}

/// The GDT as the bytes to write into guest memory.
pub fn gdt_bytes() -> Vec<u8> {
    GDT.iter().flat_map(|e| e.to_le_bytes()).collect()
}

/// Decodes the descriptor `entry` found at `selector` into a `kvm_segment`.
pub fn segment_from_entry(entry: u64, selector: u16) -> kvm_segment {
    let base = ((entry >> 16) & 0x00ff_ffff) | ((entry >> 32) & 0xff00_0000);
    let raw_limit = ((entry & 0xffff) | ((entry >> 32) & 0x000f_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    // With G set the limit counts 4 KiB pages: KVM wants the byte limit.
    let limit = if g == 1 { (raw_limit << 12) | 0xfff } else { raw_limit };
    kvm_segment {
        base,
        limit,
        selector,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from(((entry >> 47) & 1) == 0),
        padding: 0,
    }
}

/// The segment for a selector of the VMM's GDT.
pub fn segment(selector: u16) -> kvm_segment {
    segment_from_entry(GDT[usize::from(selector >> 3)], selector)
}

/// Code and data segments for 64-bit long mode.
pub fn long_mode_segments() -> (kvm_segment, kvm_segment) {
    (segment(CODE64_SELECTOR), segment(DATA_SELECTOR))
}

/// Code and data segments for 32-bit protected mode.
pub fn protected_mode_segments() -> (kvm_segment, kvm_segment) {
    (segment(CODE32_SELECTOR), segment(DATA_SELECTOR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_the_well_known_encodings() {
        assert_eq!(GDT[1], 0x00af_9b00_0000_ffff);
        assert_eq!(GDT[2], 0x00cf_9b00_0000_ffff);
        assert_eq!(GDT[3], 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn segments_read_back_from_the_descriptors() {
        let (code, data) = long_mode_segments();
        assert_eq!((code.selector, code.l, code.db, code.type_), (0x08, 1, 0, 0xb));
        assert_eq!((code.present, code.s, code.dpl, code.g), (1, 1, 0, 1));
        assert_eq!(code.limit, 0xffff_ffff);
        assert_eq!((data.selector, data.l, data.db, data.type_), (0x18, 0, 1, 0x3));
        let (code32, _) = protected_mode_segments();
        assert_eq!((code32.selector, code32.l, code32.db), (0x10, 0, 1));
        assert_eq!(code32.base, 0);
    }

    #[test]
    fn base_and_limit_round_trip() {
        let e = gdt_entry(0x4093, 0x1234_5678, 0xabcde);
        let s = segment_from_entry(e, 0x18);
        assert_eq!(s.base, 0x1234_5678);
        assert_eq!(s.limit, 0xabcde);
        assert_eq!(s.g, 0);
        assert_eq!(s.unusable, 0);
        assert_eq!(gdt_bytes().len(), 32);
        assert_eq!(&gdt_bytes()[8..16], &GDT[1].to_le_bytes());
    }
}
