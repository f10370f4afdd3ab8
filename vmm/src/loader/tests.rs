//! The loaders' unit tests: hand-made and mutated ELF, ELF64 and PVH images.

use super::*;
use crate::test_rng::Rng;

fn mem() -> GuestMemoryMmap {
    memory::create(4).unwrap()
}

const NONE: &[Region] = &[];

fn load_elf(m: &GuestMemoryMmap, image: &[u8]) -> Result<ImageEntry, LoaderError> {
    super::load_elf(m, image, NONE).map(|l| l.entry)
}

/// An ELF32 with two PT_LOAD segments: `code` at `code_at` and 16 bytes at `other_at`.
fn two_segments(code_at: u32, other_at: u32) -> Vec<u8> {
    let mut f = vec![0u8; 0x200];
    f[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    f[0x10] = 2; // ET_EXEC
    f[0x12] = EM_386 as u8;
    f[0x18..0x1c].copy_from_slice(&code_at.to_le_bytes());
    f[0x1c..0x20].copy_from_slice(&0x34u32.to_le_bytes()); // e_phoff
    f[0x2a] = 32; // e_phentsize
    f[0x2c] = 2; // e_phnum
    for (i, (addr, offset)) in [(code_at, 0x100u32), (other_at, 0x180)].into_iter().enumerate() {
        let h = 0x34 + 32 * i;
        f[h..h + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        f[h + 4..h + 8].copy_from_slice(&offset.to_le_bytes());
        f[h + 12..h + 16].copy_from_slice(&addr.to_le_bytes());
        f[h + 16..h + 20].copy_from_slice(&16u32.to_le_bytes());
        f[h + 20..h + 24].copy_from_slice(&16u32.to_le_bytes());
    }
    f[0x100] = 0xf4;
    f[0x180..0x190].fill(0xaa);
    f
}

#[test]
fn a_segment_wholly_outside_ram_is_skipped_as_qemu_skips_it() {
    let m = mem();
    // Like `ld -m elf_i386 -Ttext=0x100000`: the note's own PT_LOAD at 0x80480b4.
    let image = two_segments(0x10_0000, 0x0804_80b4);
    let loaded = super::load_elf(&m, &image, NONE).unwrap();
    assert_eq!(loaded.segments.iter().map(|s| s.loaded).collect::<Vec<_>>(), [true, false]);
    assert_eq!(loaded.end, 0x10_0010);
    assert_eq!(
        loaded.segments[1].to_string(),
        "ELF segment 1 at 0x80480b4+0x10 (0x10 from the file): skipped: wholly outside guest RAM, as QEMU skips it"
    );
    let mut b = [0u8; 1];
    memory::read(&m, 0x10_0000, &mut b).unwrap();
    assert_eq!(b, [0xf4]);
}

#[test]
fn a_segment_partly_outside_ram_or_over_the_vmm_is_an_error_naming_it() {
    let m = mem();
    let e = super::load_elf(&m, &two_segments(0x10_0000, (4 << 20) - 8), NONE).unwrap_err();
    assert!(matches!(e, LoaderError::SegmentOutsideRam { index: 1, .. }), "{e}");
    assert!(e.to_string().contains("raise --mem to at least 5 MiB"), "{e}");
    let reserved = [crate::arch::x86_64::layout::PAGE_TABLE_REGION];
    let e = super::load_elf(&m, &two_segments(0x10_0000, 0xa000), &reserved).unwrap_err();
    assert!(matches!(e, LoaderError::SegmentOverVmm { index: 1, what: "page tables", .. }), "{e}");
    assert!(e.to_string().contains("link the kernel at 1 MiB or above"), "{e}");
    let e = super::load_elf(&m, &two_segments(0x8000_0000, 0x9000_0000), NONE).unwrap_err();
    assert!(matches!(e, LoaderError::NothingInRam { lowest: 0x8000_0000, .. }), "{e}");
}

#[test]
fn pvh_elf_gets_its_note_entry() {
    let m = mem();
    let e = load_elf(&m, guests::find("hello").unwrap().image).unwrap();
    assert_eq!(e, ImageEntry { mode: EntryMode::Protected, rip: 0x10_0000, pvh: true });
    let mut first = [0u8; 2];
    memory::read(&m, 0x10_0000, &mut first).unwrap();
    assert_eq!(first, [0x89, 0xdf], "mov %ebx,%edi at the entry");
}

#[test]
fn elf64_without_note_enters_long_mode() {
    let e = load_elf(&mem(), guests::HELLO64_ELF).unwrap();
    assert_eq!((e.mode, e.rip, e.pvh), (EntryMode::Long, 0x10_0000, false));
}

#[test]
fn flat_images_are_checked() {
    let m = mem();
    assert!(matches!(load_flat(&m, &[], 0x7c00, 0x7c00, EntryMode::Real), Err(LoaderError::Empty)));
    let big = vec![0u8; 5 << 20];
    assert!(matches!(load_flat(&m, &big, 0, 0, EntryMode::Real), Err(LoaderError::TooLarge { .. })));
    assert!(matches!(load_flat(&m, &[0x90], 0x1000, 0x2000, EntryMode::Real), Err(LoaderError::EntryOutside { .. })));
    assert!(load_flat(&m, &[0x90], u64::MAX, u64::MAX, EntryMode::Real).is_err());
    assert!(load_flat(&m, &[0xf4], 0x7c00, 0x7c00, EntryMode::Real).is_ok());
    assert!(load_flat(&m, &[0xf4], 0x10_ffef, 0x10_ffef, EntryMode::Real).is_ok());
    assert!(matches!(
        load_flat(&m, &[0xf4], 0x10_fff0, 0x10_fff0, EntryMode::Real),
        Err(LoaderError::EntryUnreachable { entry: 0x10_fff0, max: 0x10_ffef })
    ));
    assert!(load_flat(&m, &[0xf4], 0x20_0000, 0x20_0000, EntryMode::Protected).is_ok());
}

#[test]
fn malformed_elves_are_rejected_not_panicked_on() {
    let m = mem();
    let good = guests::find("hello").unwrap().image;
    for cut in [4, 5, 16, 0x20, 0x34, 60, 100] {
        assert!(load_elf(&m, &good[..cut]).is_err(), "cut at {cut}");
    }
    let mut bad_class = good.to_vec();
    bad_class[4] = 9;
    assert!(matches!(load_elf(&m, &bad_class), Err(LoaderError::MalformedElf(_))));
    let mut arm = good.to_vec();
    arm[0x12] = 40;
    assert!(matches!(load_elf(&m, &arm), Err(LoaderError::WrongMachine(40))));
    let mut far = good.to_vec();
    // first program header's p_paddr (ELF32, at e_phoff + 12) far above RAM
    let phoff = u32::from_le_bytes(far[0x1c..0x20].try_into().unwrap()) as usize;
    far[phoff + 12..phoff + 16].copy_from_slice(&0x8000_0000u32.to_le_bytes());
    assert!(matches!(load_elf(&m, &far), Err(LoaderError::NothingInRam { .. })));
}

/// Where the fields a mutation aims at sit in a valid image.
struct Layout {
    is64: bool,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    /// File offset of the PT_NOTE segment's contents, if any.
    note: Option<usize>,
}

fn le(bytes: &[u8], at: usize, n: usize) -> u64 {
    bytes[at..at + n].iter().rev().fold(0, |v, &b| v << 8 | u64::from(b))
}

fn layout(image: &[u8]) -> Layout {
    let is64 = image[4] == 2;
    let (phoff, phentsize, phnum) = if is64 {
        (le(image, 0x20, 8), le(image, 0x36, 2), le(image, 0x38, 2))
    } else {
        (le(image, 0x1c, 4), le(image, 0x2a, 2), le(image, 0x2c, 2))
    };
    let (phoff, phentsize, phnum) = (phoff as usize, phentsize as usize, phnum as usize);
    let note = (0..phnum).map(|i| phoff + i * phentsize).find(|&h| le(image, h, 4) == u64::from(PT_NOTE));
    let note = note.map(|h| le(image, h + if is64 { 8 } else { 4 }, if is64 { 8 } else { 4 }) as usize);
    Layout { is64, phoff, phentsize, phnum, note }
}

fn put(image: &mut [u8], at: usize, width: usize, value: u64) {
    if let Some(field) = image.get_mut(at..at + width) {
        field.copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

/// Values that sit on the edges the parsers check.
fn interesting(rng: &mut Rng, original: u64, file_len: usize) -> u64 {
    let edges = [0, 1, 3, 4, 8, 12, 0x20, 0x38, 0x80, 0xfff, 0x1000, 0xffff, 0x3f_ffff, 0x40_0000, 0x7fff_ffff];
    let more = [0xffff_ffff, u64::MAX, u64::MAX - 7, file_len as u64, file_len as u64 - 1];
    match rng.below(3) {
        0 => edges[rng.below(edges.len())],
        1 => more[rng.below(more.len())],
        _ => original.wrapping_add(rng.below(9) as u64).wrapping_sub(4),
    }
}

/// One mutation of a header field, a program header field, a note field,
/// a byte in one of those, or the file's length.
fn mutate(rng: &mut Rng, image: &mut Vec<u8>, l: &Layout) {
    let len = image.len();
    // (offset, width) of the field to set
    let field = match rng.below(7) {
        0 => Some(if l.is64 { (0x20, 8) } else { (0x1c, 4) }), // e_phoff
        1 => Some(if l.is64 { (0x36, 2) } else { (0x2a, 2) }), // e_phentsize
        2 => Some(if l.is64 { (0x38, 2) } else { (0x2c, 2) }), // e_phnum
        3 => {
            // p_type, p_offset, p_paddr, p_filesz, p_memsz of one program header
            let h = l.phoff + rng.below(l.phnum) * l.phentsize;
            let fields: [(usize, usize); 5] = if l.is64 {
                [(0, 4), (8, 8), (24, 8), (32, 8), (40, 8)]
            } else {
                [(0, 4), (4, 4), (12, 4), (16, 4), (20, 4)]
            };
            let (at, width) = fields[rng.below(fields.len())];
            Some((h + at, width))
        }
        // namesz, descsz, type of the PVH note
        4 => l.note.map(|n| (n + 4 * rng.below(3), 4)),
        5 => None,
        _ => {
            image.truncate(rng.below(len));
            return;
        }
    };
    match field {
        Some((at, width)) if at + width <= len => {
            let value = interesting(rng, le(image, at, width), len);
            put(image, at, width, value);
        }
        _ => {
            // a byte of the ELF header, the program headers or the note
            let regions = [(0, 0x40), (l.phoff, l.phnum * l.phentsize), (l.note.unwrap_or(0), 24)];
            let (start, n) = regions[rng.below(regions.len())];
            let at = (start + rng.below(n)).min(len - 1);
            image[at] ^= 1 << rng.below(8);
        }
    }
}

fn outcome(result: &Result<ImageEntry, LoaderError>) -> String {
    match result {
        Ok(e) if e.pvh => "loaded: PVH entry".into(),
        Ok(e) => format!("loaded: {:?} entry", e.mode),
        Err(LoaderError::MalformedElf(why)) => format!("malformed: {why}"),
        Err(LoaderError::SegmentOutsideRam { .. }) => "segment partly outside RAM".into(),
        Err(LoaderError::NothingInRam { .. }) => "no segment in RAM".into(),
        Err(LoaderError::WrongMachine(_)) => "wrong machine".into(),
        Err(LoaderError::Empty) => "empty".into(),
        Err(e) => format!("other: {e}"),
    }
}

#[test]
fn mutated_elf_and_pvh_images_reach_every_parser_and_never_panic() {
    let m = mem();
    let originals = [guests::find("hello").unwrap().image, guests::find("exits").unwrap().image, guests::HELLO64_ELF];
    let mut seen = std::collections::BTreeMap::<String, u32>::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for case in 0..6000 {
        let original = originals[case % originals.len()];
        let l = layout(original);
        let mut image = original.to_vec();
        for _ in 0..1 + rng.below(3) {
            if !image.is_empty() {
                mutate(&mut rng, &mut image, &l);
            }
        }
        *seen.entry(outcome(&load_elf(&m, &image))).or_default() += 1;
    }
    // Each of these is only reached past the class, endianness and machine
    // checks: in the program-header parser, the segment loader or the note parser.
    let must_reach = [
        "loaded: PVH entry",
        "loaded: Long entry",
        "loaded: Protected entry",
        "malformed: truncated file",
        "malformed: no program headers",
        "malformed: program header entries too small",
        "malformed: segment extends past the end of the file",
        "malformed: segment file size exceeds its memory size",
        "malformed: no loadable segment",
        "malformed: PVH entry note has a bad size",
        "segment partly outside RAM",
        "no segment in RAM",
        "malformed: unknown ELF class",
        "malformed: not little-endian",
        "wrong machine",
    ];
    for want in must_reach {
        assert!(seen.get(want).copied().unwrap_or(0) > 0, "no case reached {want:?}: {seen:#?}");
    }
    assert!(!seen.keys().any(|k| k.starts_with("other")), "unexpected outcomes: {seen:#?}");
}
