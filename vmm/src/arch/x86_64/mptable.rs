//! The Intel MultiProcessor table (MP spec 1.4), as Firecracker's
//! `arch/x86_64/mptable.rs` writes it: a floating pointer structure
//! (`_MP_`) that a kernel finds by scanning the BIOS area, pointing at a
//! configuration table (`PCMP`) with one processor entry per vCPU (the
//! BSP flagged), one ISA bus, the in-kernel IOAPIC, an interrupt
//! assignment per IOAPIC pin (ISA IRQ n on pin n, KVM's default routing)
//! and the local interrupts (ExtINT on LINT0, NMI on LINT1).
//!
//! vCPU `i` has local APIC id `i`, as KVM gives it and as CPUID leaves 1
//! and 0xB say ([`crate::arch::x86_64::cpuid::set_apic_id`]).
//!
//! ```
//! use vmm::arch::x86_64::mptable;
//! let table = mptable::table_bytes(0xf_0000, 4, mptable::CpuId::default()).unwrap();
//! assert_eq!(&table[..4], b"_MP_");
//! assert_eq!(mptable::parse_cpus(&table, 0xf_0000), Some(vec![0, 1, 2, 3]));
//! ```

/// Largest vCPU count the table describes: APIC ids are one byte, 0xff is
/// the broadcast id and the IOAPIC takes the id after the last CPU.
pub const MAX_CPUS: u32 = 254;
/// The local APIC's MMIO base every CPU sees.
pub const LAPIC_ADDRESS: u32 = 0xfee0_0000;
/// The in-kernel IOAPIC's MMIO base.
pub const IOAPIC_ADDRESS: u32 = 0xfec0_0000;
/// Pins of KVM's IOAPIC (and interrupt assignment entries written).
pub const IOAPIC_PINS: u8 = 24;
/// Local APIC version reported (an integrated xAPIC, as KVM's).
const LAPIC_VERSION: u8 = 0x14;
/// IOAPIC version reported (82093AA, as KVM's).
const IOAPIC_VERSION: u8 = 0x11;
/// MP spec revision 1.4.
const SPEC_REV: u8 = 4;

const FLOATING_LEN: usize = 16;
const HEADER_LEN: usize = 44;
const PROCESSOR_LEN: usize = 20;
const SHORT_ENTRY_LEN: usize = 8;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_VECTORED: u8 = 0;
const INT_NMI: u8 = 1;
const INT_EXTINT: u8 = 3;
const CPU_ENABLED: u8 = 1;
const CPU_BSP: u8 = 2;
const ISA_BUS_ID: u8 = 0;

/// CPUID leaf 1's signature (EAX) and feature flags (EDX) the processor
/// entries carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuId {
    pub signature: u32,
    pub features: u32,
}

/// Errors of building the table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MpTableError {
    #[error("an MP table needs at least one CPU")]
    NoCpus,
    #[error("{cpus} vCPUs do not fit an MP table, which describes at most {MAX_CPUS} (one-byte APIC ids): use fewer --vcpus")]
    TooManyCpus { cpus: u32 },
}

/// Bytes of the whole structure (floating pointer and table) for `cpus` CPUs.
pub fn size(cpus: u32) -> usize {
    FLOATING_LEN + HEADER_LEN + PROCESSOR_LEN * cpus as usize + SHORT_ENTRY_LEN * (4 + usize::from(IOAPIC_PINS))
}

/// The byte that makes `bytes` sum to zero (mod 256).
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

fn interrupt(kind: u8, int_type: u8, source_irq: u8, dest_id: u8, dest_pin: u8) -> [u8; 8] {
    // Flags 0: polarity and trigger conform to the bus (ISA: high, edge).
    [kind, int_type, 0, 0, ISA_BUS_ID, source_irq, dest_id, dest_pin]
}

/// The configuration table's entries, in the spec's order (by type).
fn entries(cpus: u32, cpu: CpuId) -> (Vec<u8>, u16) {
    let mut out = Vec::new();
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BSP } else { 0 };
        out.extend_from_slice(&[ENTRY_PROCESSOR, id as u8, LAPIC_VERSION, flags]);
        out.extend_from_slice(&cpu.signature.to_le_bytes());
        out.extend_from_slice(&cpu.features.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
    }
    out.extend_from_slice(&[ENTRY_BUS, ISA_BUS_ID]);
    out.extend_from_slice(b"ISA   ");
    let ioapic_id = cpus as u8;
    out.extend_from_slice(&[ENTRY_IOAPIC, ioapic_id, IOAPIC_VERSION, 1]);
    out.extend_from_slice(&IOAPIC_ADDRESS.to_le_bytes());
    for pin in 0..IOAPIC_PINS {
        out.extend_from_slice(&interrupt(ENTRY_IO_INTERRUPT, INT_VECTORED, pin, ioapic_id, pin));
    }
    out.extend_from_slice(&interrupt(ENTRY_LOCAL_INTERRUPT, INT_EXTINT, 0, 0, 0));
    out.extend_from_slice(&interrupt(ENTRY_LOCAL_INTERRUPT, INT_NMI, 0, 0xff, 1));
    let count = cpus as u16 + 4 + u16::from(IOAPIC_PINS); // bus, IOAPIC, LINT0, LINT1
    (out, count)
}

/// The floating pointer at `base`, then the configuration table right
/// after it, for `cpus` CPUs with APIC ids 0..cpus (0 the BSP).
///
/// # Errors
///
/// [`MpTableError`] for 0 CPUs or more than [`MAX_CPUS`].
pub fn table_bytes(base: u64, cpus: u32, cpu: CpuId) -> Result<Vec<u8>, MpTableError> {
    match cpus {
        0 => return Err(MpTableError::NoCpus),
        n if n > MAX_CPUS => return Err(MpTableError::TooManyCpus { cpus: n }),
        _ => {}
    }
    let (body, count) = entries(cpus, cpu);
    let table_len = (HEADER_LEN + body.len()) as u16;
    let mut table = Vec::with_capacity(usize::from(table_len));
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&table_len.to_le_bytes());
    table.extend_from_slice(&[SPEC_REV, 0]); // checksum filled below
    table.extend_from_slice(b"VIRTLAB ");
    table.extend_from_slice(b"VMM SMP     ");
    table.extend_from_slice(&[0; 6]); // OEM table pointer and size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&LAPIC_ADDRESS.to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&body);
    table[7] = checksum(&table);

    let table_addr = (base + FLOATING_LEN as u64) as u32;
    let mut out = Vec::with_capacity(FLOATING_LEN + table.len());
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(&table_addr.to_le_bytes());
    // Length in 16-byte units, revision, checksum, then feature byte 1 = 0
    // (a table is present) and IMCRP clear (virtual-wire mode).
    out.extend_from_slice(&[1, SPEC_REV, 0, 0, 0, 0, 0, 0]);
    out[10] = checksum(&out);
    out.extend_from_slice(&table);
    Ok(out)
}

/// The APIC ids of the enabled processors in a structure that
/// [`table_bytes`] wrote at `base`, checking both signatures and
/// checksums: what a guest does with it, for the tests.
pub fn parse_cpus(bytes: &[u8], base: u64) -> Option<Vec<u8>> {
    let floating = bytes.get(..FLOATING_LEN)?;
    if &floating[..4] != b"_MP_" || checksum(floating) != 0 {
        return None;
    }
    let addr = u64::from(u32::from_le_bytes(floating[4..8].try_into().ok()?));
    let start = usize::try_from(addr.checked_sub(base)?).ok()?;
    let header = bytes.get(start..start + HEADER_LEN)?;
    let len = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let table = bytes.get(start..start + len)?;
    if &header[..4] != b"PCMP" || checksum(table) != 0 {
        return None;
    }
    let count = u16::from_le_bytes([header[34], header[35]]);
    let (mut at, mut ids) = (HEADER_LEN, Vec::new());
    for _ in 0..count {
        let kind = *table.get(at)?;
        if kind == ENTRY_PROCESSOR {
            if table.get(at + 3)? & CPU_ENABLED != 0 {
                ids.push(table[at + 1]);
            }
            at += PROCESSOR_LEN;
        } else {
            at += SHORT_ENTRY_LEN;
        }
    }
    (at == len).then_some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::layout::{self, MPTABLE_REGION, MPTABLE_START};

    const CPU: CpuId = CpuId { signature: 0x806c1, features: 0x0781_abfd };

    #[test]
    fn both_checksums_are_zero_and_the_cpus_are_listed_with_the_bsp_first() {
        for cpus in [1, 2, 4, MAX_CPUS] {
            let t = table_bytes(MPTABLE_START, cpus, CPU).unwrap();
            assert_eq!(t.len(), size(cpus));
            assert_eq!(checksum(&t[..16]), 0);
            assert_eq!(checksum(&t[16..]), 0);
            let ids = parse_cpus(&t, MPTABLE_START).unwrap();
            assert_eq!(ids, (0..cpus).map(|i| i as u8).collect::<Vec<_>>());
            assert_eq!(t[16 + HEADER_LEN + 3], CPU_ENABLED | CPU_BSP, "vCPU 0 is the BSP");
            if cpus > 1 {
                assert_eq!(t[16 + HEADER_LEN + PROCESSOR_LEN + 3], CPU_ENABLED, "only vCPU 0 is the BSP");
            }
        }
    }

    #[test]
    fn entry_counts_and_lengths_match_the_header() {
        let t = table_bytes(MPTABLE_START, 3, CPU).unwrap();
        let table = &t[16..];
        assert_eq!(u16::from_le_bytes([table[34], table[35]]), 3 + 1 + 1 + 24 + 2);
        assert_eq!(usize::from(u16::from_le_bytes([table[4], table[5]])), table.len());
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()) as u64, MPTABLE_START + 16);
        assert_eq!(u32::from_le_bytes(table[36..40].try_into().unwrap()), LAPIC_ADDRESS);
        let kinds: Vec<u8> = {
            let mut at = HEADER_LEN;
            let mut v = Vec::new();
            while at < table.len() {
                v.push(table[at]);
                at += if table[at] == 0 { PROCESSOR_LEN } else { SHORT_ENTRY_LEN };
            }
            v
        };
        assert_eq!(kinds.iter().filter(|&&k| k == ENTRY_IO_INTERRUPT).count(), 24);
        assert!(kinds.windows(2).all(|w| w[0] <= w[1]), "entries sorted by type: {kinds:?}");
        let ioapic = HEADER_LEN + 3 * PROCESSOR_LEN + SHORT_ENTRY_LEN;
        assert_eq!(&table[ioapic..ioapic + 4], &[ENTRY_IOAPIC, 3, IOAPIC_VERSION, 1], "IOAPIC id after the CPUs");
    }

    #[test]
    fn zero_and_too_many_cpus_are_refused() {
        assert_eq!(table_bytes(MPTABLE_START, 0, CPU), Err(MpTableError::NoCpus));
        assert_eq!(table_bytes(MPTABLE_START, MAX_CPUS + 1, CPU), Err(MpTableError::TooManyCpus { cpus: 255 }));
        assert!(table_bytes(MPTABLE_START, MAX_CPUS, CPU).is_ok());
    }

    #[test]
    fn a_corrupted_table_is_not_parsed() {
        let mut t = table_bytes(MPTABLE_START, 2, CPU).unwrap();
        t[16 + HEADER_LEN + 1] ^= 1;
        assert_eq!(parse_cpus(&t, MPTABLE_START), None, "table checksum");
        let mut t = table_bytes(MPTABLE_START, 2, CPU).unwrap();
        t[5] ^= 1;
        assert_eq!(parse_cpus(&t, MPTABLE_START), None, "floating pointer checksum");
    }

    #[test]
    fn the_largest_table_fits_its_region_below_one_mib_clear_of_the_vmms_other_structures() {
        assert!(size(MAX_CPUS) as u64 <= MPTABLE_REGION.len);
        const {
            assert!(MPTABLE_START.is_multiple_of(16), "the floating pointer is paragraph-aligned");
            assert!(MPTABLE_START + MPTABLE_REGION.len <= 0x10_0000, "below 1 MiB");
            assert!(MPTABLE_START >= crate::arch::x86_64::e820::BIOS_START, "in the BIOS area Linux scans");
        }
        for other in [
            layout::GDT_REGION,
            layout::PVH_REGION,
            layout::MULTIBOOT_REGION,
            layout::ZERO_PAGE_REGION,
            layout::LINUX_CMDLINE_REGION,
            layout::PAGE_TABLE_REGION,
            layout::BOOT_STACK_REGION,
        ] {
            assert!(!other.overlaps(MPTABLE_START, MPTABLE_REGION.len), "{} overlaps the MP table", other.name);
        }
        assert!(!MPTABLE_REGION.overlaps(layout::BIOS_IRET, 1), "the BIOS iret of a Multiboot boot");
    }
}
