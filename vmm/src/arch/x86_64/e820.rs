//! The guest's memory map, as one list that every boot protocol hands on in
//! its own format: PVH's `hvm_memmap_table_entry`, Multiboot's mmap and
//! `mem_lower`/`mem_upper`, and the Linux zero page's `e820_table`.

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;
/// End of conventional memory: the extended BIOS data area follows, as
/// on a PC, QEMU's SeaBIOS and Firecracker.
pub const LOW_RAM_END: u64 = 0x9_fc00;
/// End of the EBDA: the VGA hole starts here.
pub const EBDA_END: u64 = 0xa_0000;
/// The system BIOS area (the dummy `iret` of a Multiboot boot lies there).
pub const BIOS_START: u64 = 0xf_0000;
/// Start of extended memory.
pub const HIGH_RAM_START: u64 = 0x10_0000;

/// One range of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The memory map of a guest with `ram_size` bytes of RAM from address 0:
/// conventional memory up to the EBDA (639 KiB), the EBDA and the system
/// BIOS area reserved (the VGA hole and option ROMs are not listed), and
/// RAM from 1 MiB to the end.
pub fn memory_map(ram_size: u64) -> Vec<E820Entry> {
    let mut map = vec![E820Entry { addr: 0, size: LOW_RAM_END.min(ram_size), kind: E820_RAM }];
    if ram_size > HIGH_RAM_START {
        map.push(E820Entry { addr: LOW_RAM_END, size: EBDA_END - LOW_RAM_END, kind: E820_RESERVED });
        map.push(E820Entry { addr: BIOS_START, size: HIGH_RAM_START - BIOS_START, kind: E820_RESERVED });
        map.push(E820Entry { addr: HIGH_RAM_START, size: ram_size - HIGH_RAM_START, kind: E820_RAM });
    }
    map
}

/// Multiboot's `mem_lower` and `mem_upper` in KiB: memory from 0 and from
/// 1 MiB up to the first hole.
pub fn lower_upper_kib(map: &[E820Entry]) -> (u32, u32) {
    let kib = |addr: u64| {
        map.iter()
            .find(|e| e.kind == E820_RAM && e.addr == addr)
            .map_or(0, |e| u32::try_from(e.size / 1024).unwrap_or(u32::MAX))
    };
    (kib(0), kib(HIGH_RAM_START))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_has_low_ram_and_ram_from_one_mib() {
        let map = memory_map(128 << 20);
        assert_eq!(
            map,
            vec![
                E820Entry { addr: 0, size: 0x9_fc00, kind: E820_RAM },
                E820Entry { addr: 0x9_fc00, size: 0x400, kind: E820_RESERVED },
                E820Entry { addr: 0xf_0000, size: 0x1_0000, kind: E820_RESERVED },
                E820Entry { addr: 0x10_0000, size: (128 << 20) - 0x10_0000, kind: E820_RAM },
            ]
        );
        assert_eq!(lower_upper_kib(&map), (639, 127 * 1024));
    }

    #[test]
    fn a_guest_smaller_than_one_mib_has_low_ram_only() {
        let map = memory_map(512 << 10);
        assert_eq!(map, vec![E820Entry { addr: 0, size: 512 << 10, kind: E820_RAM }]);
        assert_eq!(lower_upper_kib(&map), (512, 0));
    }
}
