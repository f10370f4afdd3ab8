//! The guest image loaders: `load_flat` with arbitrary load address, entry
//! and mode, and `load_elf` on arbitrary bytes and, structure-aware, on
//! valid ELF32-PVH and ELF64 images with edited header, program-header and
//! note fields (`virtlab_fuzz::elf`).
//!
//! Input: byte 0 picks the loader (0: `load_elf` on the rest as a file;
//! 1: `load_flat`; 2: `load_elf` on an edited built-in image), byte 1 the
//! guest RAM (1-8 MiB); the rest is the file, or the `arbitrary` encoding
//! of the flat case or of the base image and its edits.
//!
//! Checks: nothing panics. `load_flat` succeeds exactly when the image is
//! non-empty, fits in RAM at `load` and the entry lies inside it, and then
//! the image is in guest memory at `load`. A successful `load_elf` read a
//! file with the ELF magic, a known class and an x86 machine; every PT_LOAD
//! fits in RAM and (unless a later one overlaps it) its file bytes are in
//! guest memory at its physical address; the entry is the PVH note's in
//! protected mode when there is one, else `e_entry` in long mode (ELF64)
//! or protected mode (ELF32).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use virtlab_fuzz::elf::{self, PT_LOAD};
use vmm::arch::x86_64::layout::{self, Region};
use vmm::arch::x86_64::regs::EntryMode;
use vmm::loader::{self, ImageEntry, LoaderError};
use vmm::memory;

#[derive(Arbitrary, Debug)]
enum Mode {
    Real,
    Protected,
    Long,
}

#[derive(Arbitrary, Debug)]
enum Addr {
    /// Near the real-mode load address.
    BootSector(i16),
    /// Near 1 MiB.
    Kernel(i16),
    /// Near the end of RAM.
    RamEnd(i32),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
struct FlatCase {
    load: Addr,
    /// The entry relative to `load`.
    entry: i32,
    mode: Mode,
    image: Vec<u8>,
}

fn flat(case: FlatCase, mem: &memory::GuestMemoryMmap, ram: u64) {
    let load = match case.load {
        Addr::BootSector(d) => 0x7c00u64.wrapping_add_signed(i64::from(d)),
        Addr::Kernel(d) => 0x10_0000u64.wrapping_add_signed(i64::from(d)),
        Addr::RamEnd(d) => ram.wrapping_add_signed(i64::from(d)),
        Addr::Raw(a) => a,
    };
    let entry = load.wrapping_add_signed(i64::from(case.entry));
    let mode = match case.mode {
        Mode::Real => EntryMode::Real,
        Mode::Protected => EntryMode::Protected,
        Mode::Long => EntryMode::Long,
    };
    let len = case.image.len() as u64;
    let result = loader::load_flat(mem, &case.image, load, entry, mode);
    let fits = load.checked_add(len).is_some_and(|end| end <= ram);
    let inside = entry >= load && entry - load < len;
    match result {
        Ok(e) => {
            assert!(fits && inside && len > 0, "accepted {len} bytes at {load:#x}, entry {entry:#x}, RAM {ram:#x}");
            assert_eq!(e, ImageEntry { mode, rip: entry, pvh: false });
            let mut back = vec![0u8; case.image.len()];
            memory::read(mem, load, &mut back).unwrap_or_else(|e| panic!("loaded image unreadable: {e}"));
            assert_eq!(back, case.image, "guest memory does not hold the image");
        }
        Err(LoaderError::Empty) => assert_eq!(len, 0),
        Err(LoaderError::TooLarge { .. }) => assert!(len > 0 && !fits),
        Err(LoaderError::EntryOutside { .. }) => assert!(len > 0 && fits && !inside),
        Err(e) => panic!("load_flat failed with an unexpected error: {e}"),
    }
}

/// The regions the VMM writes for an ELF entry (as `vmm::boot` passes them).
const RESERVED: [Region; 4] =
    [layout::GDT_REGION, layout::PVH_REGION, layout::PAGE_TABLE_REGION, layout::BOOT_STACK_REGION];

fn elf_file(bytes: &[u8], mem: &memory::GuestMemoryMmap, ram: u64) {
    let Ok(loaded) = loader::load_elf(mem, bytes, &RESERVED) else { return };
    let entry = loaded.entry;
    assert!(loader::is_elf(bytes), "no magic");
    assert!(matches!(bytes[4], 1 | 2), "class {}", bytes[4]);
    let machine = u16::from_le_bytes([bytes[0x12], bytes[0x13]]);
    assert!(machine == 3 || machine == 62, "machine {machine}");
    let segments = elf::segments(bytes);
    let loads: Vec<elf::Segment> =
        segments.iter().copied().filter(|s| s.kind == PT_LOAD && (s.memsz > 0 || s.filesz > 0)).collect();
    assert_eq!(loads.len(), loaded.segments.len(), "every sized PT_LOAD is listed");
    assert!(loaded.segments.iter().any(|s| s.loaded), "loaded without a segment in RAM");
    let loads: Vec<elf::Segment> = loads
        .into_iter()
        .zip(&loaded.segments)
        .filter(|(s, l)| {
            assert_eq!((l.addr, l.memsz, l.loaded), (s.paddr, s.memsz, s.paddr < ram), "{s:?} listed as {l:?}");
            l.loaded
        })
        .map(|(s, _)| s)
        .collect();
    for (i, s) in loads.iter().enumerate() {
        assert!(s.filesz <= s.memsz && s.paddr.checked_add(s.memsz).is_some_and(|e| e <= ram), "{s:?}");
        assert!(!RESERVED.iter().any(|r| r.overlaps(s.paddr, s.memsz)), "{s:?} over the VMM's regions");
        let later_overlaps =
            loads[i + 1..].iter().any(|t| t.paddr < s.paddr + s.filesz && s.paddr < t.paddr.saturating_add(t.filesz));
        if later_overlaps {
            continue;
        }
        let (start, len) = (s.offset as usize, s.filesz as usize);
        let mut back = vec![0u8; len];
        memory::read(mem, s.paddr, &mut back).unwrap_or_else(|e| panic!("segment unreadable: {e}"));
        assert_eq!(back, bytes[start..start + len], "segment {s:?} not in guest memory");
    }
    let expected = match elf::pvh_note(bytes) {
        Some(desc) => {
            let rip = match desc.len() {
                4 => u64::from(u32::from_le_bytes([desc[0], desc[1], desc[2], desc[3]])),
                8 => u64::from_le_bytes(desc[..8].try_into().unwrap_or_default()),
                n => panic!("accepted a PVH note of {n} bytes"),
            };
            ImageEntry { mode: EntryMode::Protected, rip, pvh: true }
        }
        None => {
            let mode = if elf::is64(bytes) { EntryMode::Long } else { EntryMode::Protected };
            ImageEntry { mode, rip: elf::entry(bytes).unwrap_or_default(), pvh: false }
        }
    };
    assert_eq!(entry, expected);
}

fuzz_target!(|data: &[u8]| {
    let [which, mib, rest @ ..] = data else { return };
    let mib = u64::from(mib % 8) + 1;
    let Ok(mem) = memory::create(mib) else { return };
    let ram = memory::ram_size(&mem);
    match which % 3 {
        0 => elf_file(rest, &mem, ram),
        1 => {
            if let Ok(case) = FlatCase::arbitrary_take_rest(Unstructured::new(rest)) {
                flat(case, &mem, ram);
            }
        }
        _ => {
            if let Some(image) = elf::edited_image(rest, ram) {
                elf_file(&image, &mem, ram);
            }
        }
    }
});
