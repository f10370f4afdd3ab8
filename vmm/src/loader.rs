//! Guest image loading: flat binaries at a chosen address, ELF64 kernels
//! (entered in long mode), and ELF files with a PVH note (entered in 32-bit
//! protected mode with EBX pointing at `hvm_start_info`).

use crate::arch::x86_64::regs::EntryMode;
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

    #[test]
    fn random_bytes_after_the_magic_never_panic() {
        let m = mem();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400usize {
            let mut image = b"\x7fELF".to_vec();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                image.push(seed as u8);
            }
            let _ = load_elf(&m, &image);
        }
    }
}
