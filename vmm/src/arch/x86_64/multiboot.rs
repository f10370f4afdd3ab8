//! The Multiboot 1 information block (`struct multiboot_info`, 116 bytes)
//! and what it points to, packed in one blob: the memory map, the module
//! list and the strings (command line, boot loader name, module strings).

use super::e820::{self, E820Entry};

/// `flags` bit 0: `mem_lower` and `mem_upper` are valid.
pub const INFO_MEMORY: u32 = 1 << 0;
/// Bit 2: `cmdline` is valid.
pub const INFO_CMDLINE: u32 = 1 << 2;
/// Bit 3: `mods_count` and `mods_addr` are valid.
pub const INFO_MODS: u32 = 1 << 3;
/// Bit 6: `mmap_length` and `mmap_addr` are valid.
pub const INFO_MMAP: u32 = 1 << 6;
/// Bit 9: `boot_loader_name` is valid.
pub const INFO_LOADER_NAME: u32 = 1 << 9;
/// Size of `struct multiboot_info` up to the framebuffer fields.
pub const INFO_SIZE: usize = 116;
/// Size of one memory map entry, its `size` field included.
pub const MMAP_ENTRY_SIZE: usize = 24;
/// Size of one `struct multiboot_mod_list`.
pub const MODULE_ENTRY_SIZE: usize = 16;

/// The name in `boot_loader_name`.
pub const BOOT_LOADER_NAME: &str = "virtlab vmm";

/// A module as the block lists it: its range in guest memory and its string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleEntry {
    pub start: u32,
    pub end: u32,
    pub string: String,
}

/// Errors of building the block.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MultibootInfoError {
    #[error("the Multiboot information takes {size} bytes, more than the {room} the VMM keeps for it")]
    TooLarge { size: usize, room: usize },
    #[error("the Multiboot information does not reach below 4 GiB")]
    Above4G,
}

fn put(blob: &mut [u8], at: usize, value: u32) {
    if let Some(b) = blob.get_mut(at..at + 4) {
        b.copy_from_slice(&value.to_le_bytes());
    }
}

/// Builds the block for placement at guest-physical `base`, at most `room`
/// bytes: `flags`, `mem_lower`/`mem_upper` and the mmap from `map`, the
/// command line, the boot loader name and the modules.
///
/// # Errors
///
/// [`MultibootInfoError::TooLarge`] if it needs more than `room` bytes.
pub fn info_bytes(
    base: u64,
    room: usize,
    map: &[E820Entry],
    cmdline: &str,
    modules: &[ModuleEntry],
) -> Result<Vec<u8>, MultibootInfoError> {
    let mmap_at = INFO_SIZE.next_multiple_of(8);
    let mods_at = mmap_at + map.len() * MMAP_ENTRY_SIZE;
    let strings_at = mods_at + modules.len() * MODULE_ENTRY_SIZE;
    let mut strings: Vec<u8> = Vec::new();
    let mut string = |s: &str| {
        let at = strings_at + strings.len();
        strings.extend(s.as_bytes().iter().filter(|&&b| b != 0));
        strings.push(0);
        at
    };
    let cmdline_at = string(cmdline);
    let name_at = string(BOOT_LOADER_NAME);
    let module_strings: Vec<usize> = modules.iter().map(|m| string(&m.string)).collect();
    let size = strings_at + strings.len();
    if size > room {
        return Err(MultibootInfoError::TooLarge { size, room });
    }
    let addr = |offset: usize| u32::try_from(base + offset as u64).map_err(|_| MultibootInfoError::Above4G);
    let mut blob = vec![0u8; size];
    let (lower, upper) = e820::lower_upper_kib(map);
    let mut flags = INFO_MEMORY | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME;
    put(&mut blob, 4, lower);
    put(&mut blob, 8, upper);
    put(&mut blob, 16, addr(cmdline_at)?);
    if !modules.is_empty() {
        flags |= INFO_MODS;
        put(&mut blob, 20, modules.len() as u32);
        put(&mut blob, 24, addr(mods_at)?);
    }
    put(&mut blob, 44, (map.len() * MMAP_ENTRY_SIZE) as u32);
    put(&mut blob, 48, addr(mmap_at)?);
    put(&mut blob, 64, addr(name_at)?);
    put(&mut blob, 0, flags);
    for (i, e) in map.iter().enumerate() {
        let at = mmap_at + i * MMAP_ENTRY_SIZE;
        put(&mut blob, at, (MMAP_ENTRY_SIZE - 4) as u32);
        blob[at + 4..at + 12].copy_from_slice(&e.addr.to_le_bytes());
        blob[at + 12..at + 20].copy_from_slice(&e.size.to_le_bytes());
        put(&mut blob, at + 20, e.kind);
    }
    for (i, (m, &string_at)) in modules.iter().zip(&module_strings).enumerate() {
        let at = mods_at + i * MODULE_ENTRY_SIZE;
        put(&mut blob, at, m.start);
        put(&mut blob, at + 4, m.end);
        put(&mut blob, at + 8, addr(string_at)?);
    }
    blob[strings_at..].copy_from_slice(&strings);
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn string_at(b: &[u8], base: u64, addr: u32) -> String {
        let at = (u64::from(addr) - base) as usize;
        let end = b[at..].iter().position(|&c| c == 0).unwrap();
        String::from_utf8(b[at..at + end].to_vec()).unwrap()
    }

    #[test]
    fn the_block_reads_back_as_a_kernel_reads_it() {
        let base = 0x3000;
        let map = e820::memory_map(128 << 20);
        let modules = [ModuleEntry { start: 0x40_1000, end: 0x40_1020, string: "env.txt".into() }];
        let b = info_bytes(base, 0x4000, &map, "kernel.elf arg=1", &modules).unwrap();
        assert_eq!(word(&b, 0), INFO_MEMORY | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME);
        assert_eq!((word(&b, 4), word(&b, 8)), (639, 127 * 1024));
        assert_eq!(string_at(&b, base, word(&b, 16)), "kernel.elf arg=1");
        assert_eq!(string_at(&b, base, word(&b, 64)), BOOT_LOADER_NAME);
        assert_eq!((word(&b, 20), word(&b, 44)), (1, 4 * 24));
        let m = (u64::from(word(&b, 24)) - base) as usize;
        assert_eq!((word(&b, m), word(&b, m + 4)), (0x40_1000, 0x40_1020));
        assert_eq!(string_at(&b, base, word(&b, m + 8)), "env.txt");
        let mmap = (u64::from(word(&b, 48)) - base) as usize;
        // fourth entry: size 20, base 1 MiB, length 127 MiB, type 1
        let e = mmap + 3 * MMAP_ENTRY_SIZE;
        assert_eq!(word(&b, e), 20);
        assert_eq!(u64::from_le_bytes(b[e + 4..e + 12].try_into().unwrap()), 0x10_0000);
        assert_eq!(u64::from_le_bytes(b[e + 12..e + 20].try_into().unwrap()), 127 << 20);
        assert_eq!(word(&b, e + 20), 1);
    }

    #[test]
    fn without_modules_the_flag_is_clear_and_a_block_too_large_is_refused() {
        let map = e820::memory_map(8 << 20);
        let b = info_bytes(0x3000, 0x4000, &map, "", &[]).unwrap();
        assert_eq!(word(&b, 0) & INFO_MODS, 0);
        let long = "x".repeat(0x4000);
        assert!(matches!(info_bytes(0x3000, 0x4000, &map, &long, &[]), Err(MultibootInfoError::TooLarge { .. })));
        assert_eq!(info_bytes(u64::from(u32::MAX), 0x4000, &map, "", &[]), Err(MultibootInfoError::Above4G));
    }
}
