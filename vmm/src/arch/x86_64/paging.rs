//! Identity page tables for long-mode entry, and a page walk that turns a
//! guest-linear address into a guest-physical one (for the exit trace).

use crate::memory::{self, GuestMemoryMmap, MemoryError};

use super::layout::{IDENTITY_MAP_GIB, PDPT_START, PD_START, PML4_START};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const TWO_MIB: u64 = 2 << 20;

/// Writes a PML4, one PDPT and `IDENTITY_MAP_GIB` page directories that
/// identity-map the low `IDENTITY_MAP_GIB` GiB with 2 MiB pages.
/// Returns the value for CR3.
pub fn write_identity_tables(mem: &GuestMemoryMmap) -> Result<u64, MemoryError> {
    memory::write(mem, PML4_START, &(PDPT_START | PRESENT | WRITABLE).to_le_bytes())?;
    for gib in 0..IDENTITY_MAP_GIB {
        let pd = PD_START + gib * 0x1000;
        memory::write(mem, PDPT_START + gib * 8, &(pd | PRESENT | WRITABLE).to_le_bytes())?;
        let entries: Vec<u8> = (0..512u64)
            .map(|i| ((gib << 30) + i * TWO_MIB) | PRESENT | WRITABLE | PAGE_SIZE_BIT)
            .flat_map(u64::to_le_bytes)
            .collect();
        memory::write(mem, pd, &entries)?;
    }
    Ok(PML4_START)
}

/// The paging mode the guest's control registers select.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    /// CR0.PG clear: linear = physical.
    Off,
    /// 32-bit paging, 4 KiB or 4 MiB pages.
    TwoLevel,
    /// PAE paging (32-bit mode, 64-bit entries).
    Pae,
    /// 4-level paging (long mode).
    FourLevel,
}

impl PagingMode {
    /// Picks the mode from CR0, CR4 and EFER as the CPU does.
    pub fn from_registers(cr0: u64, cr4: u64, efer: u64) -> Self {
        const CR0_PG: u64 = 1 << 31;
        const CR4_PAE: u64 = 1 << 5;
        const EFER_LMA: u64 = 1 << 10;
        if cr0 & CR0_PG == 0 {
            PagingMode::Off
        } else if efer & EFER_LMA != 0 {
            PagingMode::FourLevel
        } else if cr4 & CR4_PAE != 0 {
            PagingMode::Pae
        } else {
            PagingMode::TwoLevel
        }
    }
}

/// Translates a guest-linear address through the guest's page tables.
/// `None` when a table entry on the way is not present or not in RAM.
pub fn translate(mem: &GuestMemoryMmap, mode: PagingMode, cr3: u64, linear: u64) -> Option<u64> {
    match mode {
        PagingMode::Off => Some(linear & 0xffff_ffff),
        PagingMode::TwoLevel => {
            let read32 = |addr: u64| {
                let mut b = [0u8; 4];
                memory::read(mem, addr, &mut b).ok().map(|()| u64::from(u32::from_le_bytes(b)))
            };
            let pde = read32((cr3 & 0xffff_f000) + ((linear >> 22) & 0x3ff) * 4)?;
            if pde & PRESENT == 0 {
                return None;
            }
            if pde & PAGE_SIZE_BIT != 0 {
                return Some((pde & 0xffc0_0000) | (linear & 0x3f_ffff));
            }
            let pte = read32((pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4)?;
            (pte & PRESENT != 0).then_some((pte & 0xffff_f000) | (linear & 0xfff))
        }
        PagingMode::Pae => {
            let pdpte = memory::read_u64(mem, (cr3 & 0xffff_ffe0) + ((linear >> 30) & 3) * 8).ok()?;
            walk(mem, pdpte, linear, &[21, 12])
        }
        PagingMode::FourLevel => {
            let pml4e = memory::read_u64(mem, (cr3 & ADDR_MASK) + ((linear >> 39) & 0x1ff) * 8).ok()?;
            walk(mem, pml4e, linear, &[30, 21, 12])
        }
    }
}

/// Follows 64-bit entries from `entry` down the levels whose index starts at
/// the given bit shifts; a large page ends the walk early.
fn walk(mem: &GuestMemoryMmap, mut entry: u64, linear: u64, shifts: &[u32]) -> Option<u64> {
    for &shift in shifts {
        if entry & PRESENT == 0 {
            return None;
        }
        let index = (linear >> shift) & 0x1ff;
        entry = memory::read_u64(mem, (entry & ADDR_MASK) + index * 8).ok()?;
        if shift > 12 && entry & PAGE_SIZE_BIT != 0 && entry & PRESENT != 0 {
            let page_mask = (1u64 << shift) - 1;
            return Some((entry & ADDR_MASK & !page_mask) | (linear & page_mask));
        }
    }
    (entry & PRESENT != 0).then_some((entry & ADDR_MASK) | (linear & 0xfff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_tables_read_back() {
        let mem = memory::create(1).unwrap();
        let cr3 = write_identity_tables(&mem).unwrap();
        assert_eq!(cr3, PML4_START);
        assert_eq!(memory::read_u64(&mem, PML4_START).unwrap(), PDPT_START | 3);
        assert_eq!(memory::read_u64(&mem, PDPT_START + 8).unwrap(), (PD_START + 0x1000) | 3);
        // second 2 MiB page of the first GiB
        assert_eq!(memory::read_u64(&mem, PD_START + 8).unwrap(), TWO_MIB | 0x83);
        // last 2 MiB page of the fourth GiB
        let last = memory::read_u64(&mem, PD_START + 3 * 0x1000 + 511 * 8).unwrap();
        assert_eq!(last, ((4u64 << 30) - TWO_MIB) | 0x83);
    }

    #[test]
    fn four_level_walk_is_the_identity_on_the_built_tables() {
        let mem = memory::create(1).unwrap();
        let cr3 = write_identity_tables(&mem).unwrap();
        for addr in [0u64, 0x7c00, 0x10_0123, 0x4020_0001, 0xd000_0008, 0xffff_ffff] {
            assert_eq!(translate(&mem, PagingMode::FourLevel, cr3, addr), Some(addr));
        }
        assert_eq!(translate(&mem, PagingMode::FourLevel, cr3, 1 << 39), None);
    }

    #[test]
    fn two_level_walk_with_4k_and_4m_pages() {
        let mem = memory::create(1).unwrap();
        let cr3 = 0x3000;
        // PDE 0 -> page table at 0x4000; PDE 1 -> 4 MiB page at 0x0080_0000
        memory::write(&mem, cr3, &(0x4000u32 | 3).to_le_bytes()).unwrap();
        memory::write(&mem, cr3 + 4, &(0x0080_0000u32 | 0x83).to_le_bytes()).unwrap();
        memory::write(&mem, 0x4000 + 5 * 4, &(0x9000u32 | 3).to_le_bytes()).unwrap();
        assert_eq!(translate(&mem, PagingMode::TwoLevel, cr3, 0x5123), Some(0x9123));
        assert_eq!(translate(&mem, PagingMode::TwoLevel, cr3, 0x40_0010), Some(0x80_0010));
        assert_eq!(translate(&mem, PagingMode::TwoLevel, cr3, 0x6000), None);
    }

    #[test]
    fn mode_follows_the_control_registers() {
        assert_eq!(PagingMode::from_registers(1, 0, 0), PagingMode::Off);
        assert_eq!(PagingMode::from_registers(1 << 31, 0, 0), PagingMode::TwoLevel);
        assert_eq!(PagingMode::from_registers(1 << 31, 1 << 5, 0), PagingMode::Pae);
        assert_eq!(PagingMode::from_registers(1 << 31, 1 << 5, 1 << 10), PagingMode::FourLevel);
    }
}
