//! PVH boot structures: `struct hvm_start_info` and its memory map, as in
//! Xen's `arch-x86/hvm/start_info.h` (the layout QEMU and Firecracker use).

use crate::memory::{self, GuestMemoryMmap, MemoryError};

use super::e820;
use super::layout::{PVH_CMDLINE_START, PVH_INFO_START, PVH_MEMMAP_START, PVH_MODLIST_START};

/// `hvm_start_info.magic`: "xEn3" with the high bit of the first byte set.
pub const HVM_START_MAGIC: u32 = 0x336e_c578;
/// Version 1 of the structure carries the memory map fields.
const HVM_START_VERSION: u32 = 1;

/// The memory map PVH guests see (the one of [`e820::memory_map`]) as
/// (address, size, type).
pub fn memmap(ram_size: u64) -> Vec<(u64, u64, u32)> {
    e820::memory_map(ram_size).iter().map(|e| (e.addr, e.size, e.kind)).collect()
}

/// Encodes `struct hvm_start_info` (56 bytes) for a guest with `entries`
/// memory-map entries, a command line present or not, and `modules` modules.
pub fn start_info_bytes(entries: u32, has_cmdline: bool) -> Vec<u8> {
    start_info_with_modules(entries, has_cmdline, 0)
}

/// [`start_info_bytes`] with `modules` entries in the module list.
pub fn start_info_with_modules(entries: u32, has_cmdline: bool, modules: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(56);
    b.extend(HVM_START_MAGIC.to_le_bytes());
    b.extend(HVM_START_VERSION.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // flags
    b.extend(modules.to_le_bytes()); // nr_modules
    b.extend((if modules > 0 { PVH_MODLIST_START } else { 0 }).to_le_bytes());
    b.extend((if has_cmdline { PVH_CMDLINE_START } else { 0 }).to_le_bytes());
    b.extend(0u64.to_le_bytes()); // rsdp_paddr
    b.extend(PVH_MEMMAP_START.to_le_bytes());
    b.extend(entries.to_le_bytes());
    b.extend(0u32.to_le_bytes()); // reserved
    b
}

/// Encodes the memory map as `struct hvm_memmap_table_entry[]` (24 bytes each).
pub fn memmap_bytes(map: &[(u64, u64, u32)]) -> Vec<u8> {
    map.iter()
        .flat_map(|&(addr, size, kind)| {
            let mut e = Vec::with_capacity(24);
            e.extend(addr.to_le_bytes());
            e.extend(size.to_le_bytes());
            e.extend(kind.to_le_bytes());
            e.extend(0u32.to_le_bytes());
            e
        })
        .collect()
}

/// Encodes one `struct hvm_modlist_entry` (32 bytes): address, size,
/// command line address (0: none), reserved.
pub fn modlist_entry_bytes(addr: u64, size: u64) -> Vec<u8> {
    [addr, size, 0, 0].iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes the start info, memory map and command line; returns the start
/// info's address, the value for EBX at entry.
pub fn write_start_info(mem: &GuestMemoryMmap, cmdline: &str) -> Result<u64, MemoryError> {
    write_start_info_with_initrd(mem, cmdline, None)
}

/// [`write_start_info`] with an initrd already in guest memory at
/// (address, size), passed as module 0 (how Linux takes its initramfs
/// through PVH).
pub fn write_start_info_with_initrd(
    mem: &GuestMemoryMmap,
    cmdline: &str,
    initrd: Option<(u64, u64)>,
) -> Result<u64, MemoryError> {
    let map = memmap(memory::ram_size(mem));
    memory::write(mem, PVH_MEMMAP_START, &memmap_bytes(&map))?;
    if !cmdline.is_empty() {
        let mut c = cmdline.as_bytes().to_vec();
        c.push(0);
        memory::write(mem, PVH_CMDLINE_START, &c)?;
    }
    if let Some((addr, size)) = initrd {
        memory::write(mem, PVH_MODLIST_START, &modlist_entry_bytes(addr, size))?;
    }
    let info = start_info_with_modules(map.len() as u32, !cmdline.is_empty(), u32::from(initrd.is_some()));
    memory::write(mem, PVH_INFO_START, &info)?;
    Ok(PVH_INFO_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_info_layout_matches_xen() {
        let b = start_info_bytes(2, false);
        assert_eq!(b.len(), 56);
        assert_eq!(&b[0..4], &HVM_START_MAGIC.to_le_bytes());
        assert_eq!(&b[40..48], &PVH_MEMMAP_START.to_le_bytes());
        assert_eq!(&b[48..52], &2u32.to_le_bytes());
        assert_eq!(&b[24..32], &0u64.to_le_bytes());
    }

    #[test]
    fn written_structures_read_back() {
        let mem = memory::create(4).unwrap();
        let ebx = write_start_info(&mem, "console=ttyS0").unwrap();
        assert_eq!(ebx, PVH_INFO_START);
        let mut info = [0u8; 56];
        memory::read(&mem, ebx, &mut info).unwrap();
        assert_eq!(u32::from_le_bytes(info[0..4].try_into().unwrap()), HVM_START_MAGIC);
        assert_eq!(u64::from_le_bytes(info[24..32].try_into().unwrap()), PVH_CMDLINE_START);
        // fourth memmap entry (after low RAM, the EBDA and the BIOS area): 1 MiB .. 4 MiB
        assert_eq!(memory::read_u64(&mem, PVH_MEMMAP_START + 3 * 24).unwrap(), e820::HIGH_RAM_START);
        assert_eq!(memory::read_u64(&mem, PVH_MEMMAP_START + 3 * 24 + 8).unwrap(), 3 << 20);
        let mut cmd = [0u8; 14];
        memory::read(&mem, PVH_CMDLINE_START, &mut cmd).unwrap();
        assert_eq!(&cmd, b"console=ttyS0\0");
    }

    #[test]
    fn an_initrd_is_module_zero() {
        let mem = memory::create(4).unwrap();
        write_start_info_with_initrd(&mem, "", Some((0x20_0000, 0x1234))).unwrap();
        let mut info = [0u8; 56];
        memory::read(&mem, PVH_INFO_START, &mut info).unwrap();
        assert_eq!(u32::from_le_bytes(info[12..16].try_into().unwrap()), 1, "nr_modules");
        assert_eq!(u64::from_le_bytes(info[16..24].try_into().unwrap()), PVH_MODLIST_START);
        assert_eq!(memory::read_u64(&mem, PVH_MODLIST_START).unwrap(), 0x20_0000);
        assert_eq!(memory::read_u64(&mem, PVH_MODLIST_START + 8).unwrap(), 0x1234);
    }
}
