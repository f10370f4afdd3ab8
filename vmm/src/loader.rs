//! Guest image loading: flat binaries at a chosen address, ELF64 kernels
//! (entered in long mode), and ELF files with a PVH note (entered in 32-bit
//! protected mode with EBX pointing at `hvm_start_info`).

use crate::arch::x86_64::regs::{self, EntryMode};
use crate::memory::{self, GuestMemoryMmap};

/// ELF note `XEN_ELFNOTE_PHYS32_ENTRY`: the PVH 32-bit entry point.
pub const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;

/// Errors of image loading.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("cannot read guest image {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("guest image is empty: nothing to run")]
    Empty,
    #[error("guest image of {size} bytes at {load:#x} does not fit in {ram} bytes of guest RAM: raise --mem or lower --load-addr")]
    TooLarge { size: u64, load: u64, ram: u64 },
    #[error("malformed ELF: {0}")]
    MalformedElf(&'static str),
    #[error("ELF for machine {0} is not x86: this VMM runs x86 guests only")]
    WrongMachine(u16),
    #[error("ELF segment at {addr:#x}+{len:#x} lies outside guest RAM ({ram} bytes): raise --mem")]
    SegmentOutsideRam { addr: u64, len: u64, ram: u64 },
    #[error("entry point {entry:#x} is outside the loaded image")]
    EntryOutside { entry: u64 },
    #[error("entry point {entry:#x} is beyond what 16-bit real mode reaches ({max:#x}): lower --load-addr or --entry, or use --mode protected or long")]
    EntryUnreachable { entry: u64, max: u64 },
}

/// Where and how a loaded image starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    pub mode: EntryMode,
    pub rip: u64,
    /// True for a PVH entry: EBX must point at `hvm_start_info`.
    pub pvh: bool,
}

/// True if `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

/// Copies a flat binary to `load` and returns its entry.
pub fn load_flat(
    mem: &GuestMemoryMmap,
    image: &[u8],
    load: u64,
    entry: u64,
    mode: EntryMode,
) -> Result<ImageEntry, LoaderError> {
    if image.is_empty() {
        return Err(LoaderError::Empty);
    }
    let ram = memory::ram_size(mem);
    let size = image.len() as u64;
    let fits = load.checked_add(size).is_some_and(|end| end <= ram);
    if !fits {
        return Err(LoaderError::TooLarge { size, load, ram });
    }
    if entry < load || entry >= load + size {
        return Err(LoaderError::EntryOutside { entry });
    }
    if mode == EntryMode::Real && regs::real_mode_cs_ip(entry).is_none() {
        return Err(LoaderError::EntryUnreachable { entry, max: regs::REAL_MODE_MAX });
    }
    memory::write(mem, load, image).map_err(|_| LoaderError::TooLarge { size, load, ram })?;
    Ok(ImageEntry { mode, rip: entry, pvh: false })
}

/// A little-endian reader over the ELF file that fails instead of panicking.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn get<const N: usize>(&self, at: u64) -> Result<[u8; N], LoaderError> {
        let at = usize::try_from(at).map_err(|_| LoaderError::MalformedElf("offset out of range"))?;
        self.0
            .get(at..at.saturating_add(N))
            .and_then(|s| s.try_into().ok())
            .ok_or(LoaderError::MalformedElf("truncated file"))
    }
    fn u16(&self, at: u64) -> Result<u16, LoaderError> {
        self.get::<2>(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: u64) -> Result<u32, LoaderError> {
        self.get::<4>(at).map(u32::from_le_bytes)
    }
    fn u64(&self, at: u64) -> Result<u64, LoaderError> {
        self.get::<8>(at).map(u64::from_le_bytes)
    }
    /// Reads a 32-bit or 64-bit field.
    fn word(&self, at: u64, is64: bool) -> Result<u64, LoaderError> {
        if is64 {
            self.u64(at)
        } else {
            self.u32(at).map(u64::from)
        }
    }
    fn slice(&self, offset: u64, len: u64) -> Result<&[u8], LoaderError> {
        let start = usize::try_from(offset).map_err(|_| LoaderError::MalformedElf("offset out of range"))?;
        let len = usize::try_from(len).map_err(|_| LoaderError::MalformedElf("size out of range"))?;
        self.0
            .get(start..start.checked_add(len).ok_or(LoaderError::MalformedElf("size out of range"))?)
            .ok_or(LoaderError::MalformedElf("segment extends past the end of the file"))
    }
}

/// One program header, whatever the ELF class.
#[derive(Clone, Copy, Debug)]
struct Segment {
    kind: u32,
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

fn segments(file: &Bytes<'_>, is64: bool) -> Result<Vec<Segment>, LoaderError> {
    let (phoff, phentsize, phnum) = if is64 {
        (file.u64(0x20)?, file.u16(0x36)?, file.u16(0x38)?)
    } else {
        (u64::from(file.u32(0x1c)?), file.u16(0x2a)?, file.u16(0x2c)?)
    };
    let min_entsize = if is64 { 56 } else { 32 };
    if phnum == 0 {
        return Err(LoaderError::MalformedElf("no program headers"));
    }
    if phentsize < min_entsize {
        return Err(LoaderError::MalformedElf("program header entries too small"));
    }
    (0..u64::from(phnum))
        .map(|i| {
            let at = phoff
                .checked_add(i * u64::from(phentsize))
                .ok_or(LoaderError::MalformedElf("program header offset out of range"))?;
            Ok(if is64 {
                Segment {
                    kind: file.u32(at)?,
                    offset: file.u64(at + 8)?,
                    paddr: file.u64(at + 24)?,
                    filesz: file.u64(at + 32)?,
                    memsz: file.u64(at + 40)?,
                }
            } else {
                Segment {
                    kind: file.u32(at)?,
                    offset: u64::from(file.u32(at + 4)?),
                    paddr: u64::from(file.u32(at + 12)?),
                    filesz: u64::from(file.u32(at + 16)?),
                    memsz: u64::from(file.u32(at + 20)?),
                }
            })
        })
        .collect()
}

/// Finds the PVH entry in the PT_NOTE segments.
fn pvh_entry(file: &Bytes<'_>, segs: &[Segment]) -> Result<Option<u64>, LoaderError> {
    for seg in segs.iter().filter(|s| s.kind == PT_NOTE) {
        let notes = Bytes(file.slice(seg.offset, seg.filesz)?);
        let mut at = 0u64;
        while at + 12 <= seg.filesz {
            let namesz = u64::from(notes.u32(at)?);
            let descsz = u64::from(notes.u32(at + 4)?);
            let kind = notes.u32(at + 8)?;
            let name_at = at + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let name = notes.slice(name_at, namesz)?;
            if name == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                return match descsz {
                    4 => Ok(Some(u64::from(notes.u32(desc_at)?))),
                    8 => Ok(Some(notes.u64(desc_at)?)),
                    _ => Err(LoaderError::MalformedElf("PVH entry note has a bad size")),
                };
            }
            at = desc_at + descsz.next_multiple_of(4);
        }
    }
    Ok(None)
}

/// Loads every PT_LOAD segment at its physical address; picks the entry:
/// the PVH note if present, else `e_entry` (long mode for ELF64, protected
/// mode for ELF32).
pub fn load_elf(mem: &GuestMemoryMmap, image: &[u8]) -> Result<ImageEntry, LoaderError> {
    if image.is_empty() {
        return Err(LoaderError::Empty);
    }
    let file = Bytes(image);
    if !is_elf(image) {
        return Err(LoaderError::MalformedElf("no ELF magic"));
    }
    let is64 = match file.get::<1>(4)?[0] {
        1 => false,
        2 => true,
        _ => return Err(LoaderError::MalformedElf("unknown ELF class")),
    };
    if file.get::<1>(5)?[0] != 1 {
        return Err(LoaderError::MalformedElf("not little-endian"));
    }
    let machine = file.u16(0x12)?;
    if machine != EM_386 && machine != EM_X86_64 {
        return Err(LoaderError::WrongMachine(machine));
    }
    let e_entry = file.word(0x18, is64)?;
    let segs = segments(&file, is64)?;
    let ram = memory::ram_size(mem);
    let mut loaded = false;
    for seg in segs.iter().filter(|s| s.kind == PT_LOAD) {
        if seg.filesz > seg.memsz {
            return Err(LoaderError::MalformedElf("segment file size exceeds its memory size"));
        }
        let end = seg.paddr.checked_add(seg.memsz);
        if end.is_none_or(|e| e > ram) {
            return Err(LoaderError::SegmentOutsideRam { addr: seg.paddr, len: seg.memsz, ram });
        }
        let data = file.slice(seg.offset, seg.filesz)?;
        memory::write(mem, seg.paddr, data).map_err(|_| LoaderError::SegmentOutsideRam {
            addr: seg.paddr,
            len: seg.memsz,
            ram,
        })?;
        loaded = true;
    }
    if !loaded {
        return Err(LoaderError::MalformedElf("no loadable segment"));
    }
    match pvh_entry(&file, &segs)? {
        Some(rip) => Ok(ImageEntry { mode: EntryMode::Protected, rip, pvh: true }),
        None if is64 => Ok(ImageEntry { mode: EntryMode::Long, rip: e_entry, pvh: false }),
        None => Ok(ImageEntry { mode: EntryMode::Protected, rip: e_entry, pvh: false }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        memory::create(4).unwrap()
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
        assert!(matches!(
            load_flat(&m, &[0x90], 0x1000, 0x2000, EntryMode::Real),
            Err(LoaderError::EntryOutside { .. })
        ));
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
        assert!(matches!(load_elf(&m, &far), Err(LoaderError::SegmentOutsideRam { .. })));
    }

    /// A xorshift generator: reproducible mutations without a crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
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
            Err(LoaderError::SegmentOutsideRam { .. }) => "segment outside RAM".into(),
            Err(LoaderError::WrongMachine(_)) => "wrong machine".into(),
            Err(LoaderError::Empty) => "empty".into(),
            Err(e) => format!("other: {e}"),
        }
    }

    #[test]
    fn mutated_elf_and_pvh_images_reach_every_parser_and_never_panic() {
        let m = mem();
        let originals =
            [guests::find("hello").unwrap().image, guests::find("exits").unwrap().image, guests::HELLO64_ELF];
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
            "segment outside RAM",
            "malformed: unknown ELF class",
            "malformed: not little-endian",
            "wrong machine",
        ];
        for want in must_reach {
            assert!(seen.get(want).copied().unwrap_or(0) > 0, "no case reached {want:?}: {seen:#?}");
        }
        assert!(!seen.keys().any(|k| k.starts_with("other")), "unexpected outcomes: {seen:#?}");
    }
}
