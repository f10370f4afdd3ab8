//! The Linux zero page (`struct boot_params`, 4 KiB) for the 64-bit boot
//! protocol, from the kernel's own setup header (read with rust-vmm's
//! `linux-loader` types) and the VMM's memory map, command line and initrd.

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use vm_memory::ByteValued;

use super::e820::E820Entry;

/// Offset of the setup header in a bzImage and in the zero page.
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `type_of_loader` 0xff: a boot loader without an assigned ID.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `loadflags` bit 0: the protected-mode kernel is loaded at 1 MiB or above.
pub const LOADFLAGS_LOADED_HIGH: u8 = 0x01;
/// `loadflags` bit 7: `heap_end_ptr` is valid.
pub const LOADFLAGS_CAN_USE_HEAP: u8 = 0x80;
/// `xloadflags` bit 0: the kernel has the 64-bit entry at its load address + 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// Offset of the 64-bit entry point from the protected-mode kernel's start.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// Entries the zero page's `e820_table` holds.
pub const E820_MAX: usize = 128;

/// Reads the setup header of a bzImage; `None` if the file is too short.
pub fn read_setup_header(image: &[u8]) -> Option<setup_header> {
    let size = std::mem::size_of::<setup_header>();
    let bytes = image.get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size)?;
    setup_header::from_slice(bytes).copied()
}

/// What the VMM puts in the zero page besides the kernel's own header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroPageInputs<'a> {
    /// Where the protected-mode kernel was loaded.
    pub load: u64,
    pub map: &'a [E820Entry],
    /// Guest-physical address of the NUL-terminated command line.
    pub cmdline: u64,
    /// The initrd: (address, size).
    pub initrd: Option<(u64, u64)>,
}

/// Builds the zero page from the kernel's setup header `hdr`.
pub fn zero_page(hdr: &setup_header, inputs: &ZeroPageInputs<'_>) -> boot_params {
    let mut params = boot_params { hdr: *hdr, ..Default::default() };
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.loadflags |= LOADFLAGS_CAN_USE_HEAP | LOADFLAGS_LOADED_HIGH;
    params.hdr.heap_end_ptr = 0xfe00;
    params.hdr.code32_start = inputs.load as u32;
    params.hdr.cmd_line_ptr = inputs.cmdline as u32;
    params.ext_cmd_line_ptr = (inputs.cmdline >> 32) as u32;
    if let Some((addr, size)) = inputs.initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
        params.ext_ramdisk_image = (addr >> 32) as u32;
        params.ext_ramdisk_size = (size >> 32) as u32;
    }
    let n = inputs.map.len().min(E820_MAX);
    for (slot, e) in params.e820_table.iter_mut().zip(&inputs.map[..n]) {
        *slot = boot_e820_entry { addr: e.addr, size: e.size, r#type: e.kind };
    }
    params.e820_entries = n as u8;
    params
}

/// The zero page as the bytes to write into guest memory.
pub fn zero_page_bytes(params: &boot_params) -> Vec<u8> {
    params.as_slice().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::e820;

    fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
        b[at..at + N].try_into().unwrap()
    }

    #[test]
    fn the_zero_page_reads_back_at_the_documented_offsets() {
        let hdr = setup_header { header: 0x5372_6448, version: 0x020f, setup_sects: 30, ..Default::default() };
        let map = e820::memory_map(256 << 20);
        let inputs =
            ZeroPageInputs { load: 0x100_0000, map: &map, cmdline: 0x2_0000, initrd: Some((0xf00_0000, 0x1234)) };
        let b = zero_page_bytes(&zero_page(&hdr, &inputs));
        assert_eq!(b.len(), 4096);
        assert_eq!(b[0x1e8], 4, "e820_entries");
        assert_eq!(u64::from_le_bytes(field(&b, 0x2d0 + 3 * 20)), 0x10_0000, "RAM from 1 MiB, the fourth entry");
        assert_eq!(u32::from_le_bytes(field(&b, 0x2d0 + 3 * 20 + 16)), 1, "its type");
        assert_eq!(u32::from_le_bytes(field(&b, 0x2d0 + 20 + 16)), 2, "the EBDA, reserved");
        assert_eq!(u32::from_le_bytes(field(&b, 0x202)), 0x5372_6448, "HdrS");
        assert_eq!(b[0x210], LOADER_TYPE_UNDEFINED, "type_of_loader");
        assert_eq!(b[0x211] & 0x81, 0x81, "loadflags");
        assert_eq!(u32::from_le_bytes(field(&b, 0x214)), 0x100_0000, "code32_start");
        assert_eq!(u32::from_le_bytes(field(&b, 0x218)), 0xf00_0000, "ramdisk_image");
        assert_eq!(u32::from_le_bytes(field(&b, 0x21c)), 0x1234, "ramdisk_size");
        assert_eq!(u32::from_le_bytes(field(&b, 0x228)), 0x2_0000, "cmd_line_ptr");
        assert_eq!(b[0x1f1], 30, "setup_sects");
    }

    #[test]
    fn the_setup_header_is_read_from_its_offset() {
        let mut image = vec![0u8; 0x300];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        let hdr = read_setup_header(&image).unwrap();
        assert_eq!({ hdr.header }, 0x5372_6448);
        assert_eq!({ hdr.version }, 0x020f);
        assert!(read_setup_header(&image[..0x210]).is_none());
    }
}
