//! Guest image loading: flat binaries at a chosen address, ELF64 kernels
//! (entered in long mode), and ELF files with a PVH note (entered in 32-bit
//! protected mode with EBX pointing at `hvm_start_info`).

use std::fmt;

use crate::arch::x86_64::layout::Region;
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
    #[error("ELF segment {index} at {addr:#x}+{len:#x} runs past the end of guest RAM ({ram} bytes): raise --mem to at least {} MiB", (addr.saturating_add(*len)).div_ceil(1 << 20))]
    SegmentOutsideRam { index: usize, addr: u64, len: u64, ram: u64 },
    #[error("ELF segment {index} at {addr:#x}+{len:#x} overlaps the VMM's {what} at {start:#x}..{end:#x}: link the kernel at 1 MiB or above (ld -Ttext=0x100000)")]
    SegmentOverVmm { index: usize, addr: u64, len: u64, what: &'static str, start: u64, end: u64 },
    #[error("every loadable ELF segment lies outside guest RAM ({ram} bytes; the lowest at {lowest:#x}): raise --mem or link the kernel lower")]
    NothingInRam { lowest: u64, ram: u64 },
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

/// What became of one PT_LOAD segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLoad {
    /// Its index among the program headers.
    pub index: usize,
    pub addr: u64,
    pub filesz: u64,
    pub memsz: u64,
    /// False if it lies wholly outside guest RAM and was skipped.
    pub loaded: bool,
}

impl fmt::Display for SegmentLoad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.loaded { "loaded" } else { "skipped: wholly outside guest RAM, as QEMU skips it" };
        write!(
            f,
            "ELF segment {} at {:#x}+{:#x} ({:#x} from the file): {what}",
            self.index, self.addr, self.memsz, self.filesz
        )
    }
}

/// An ELF image in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedElf {
    /// The PVH note's entry, else `e_entry` (see [`load_elf`]).
    pub entry: ImageEntry,
    /// `e_entry` of the file, whatever the note says.
    pub e_entry: u64,
    /// True for ELF64.
    pub is64: bool,
    /// Every PT_LOAD segment with a size, in file order, loaded or skipped.
    pub segments: Vec<SegmentLoad>,
    /// End of the highest loaded segment (its memory size included).
    pub end: u64,
}

fn elf_header(file: &Bytes<'_>) -> Result<bool, LoaderError> {
    if !is_elf(file.0) {
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
    Ok(is64)
}

/// Copies one PT_LOAD segment, or skips it if it lies wholly outside RAM
/// (QEMU's `-kernel` does not load those either). A segment partly outside
/// RAM, or over one of the VMM's `reserved` regions, is an error.
fn load_segment(
    mem: &GuestMemoryMmap,
    file: &Bytes<'_>,
    index: usize,
    seg: &Segment,
    reserved: &[Region],
) -> Result<SegmentLoad, LoaderError> {
    let ram = memory::ram_size(mem);
    if seg.filesz > seg.memsz {
        return Err(LoaderError::MalformedElf("segment file size exceeds its memory size"));
    }
    let data = file.slice(seg.offset, seg.filesz)?;
    let load = SegmentLoad { index, addr: seg.paddr, filesz: seg.filesz, memsz: seg.memsz, loaded: false };
    if seg.paddr >= ram {
        return Ok(load);
    }
    let end = seg.paddr.checked_add(seg.memsz);
    if end.is_none_or(|e| e > ram) {
        return Err(LoaderError::SegmentOutsideRam { index, addr: seg.paddr, len: seg.memsz, ram });
    }
    if let Some(r) = reserved.iter().find(|r| r.overlaps(seg.paddr, seg.memsz)) {
        return Err(LoaderError::SegmentOverVmm {
            index,
            addr: seg.paddr,
            len: seg.memsz,
            what: r.name,
            start: r.start,
            end: r.start + r.len,
        });
    }
    memory::write(mem, seg.paddr, data).map_err(|_| LoaderError::SegmentOutsideRam {
        index,
        addr: seg.paddr,
        len: seg.memsz,
        ram,
    })?;
    Ok(SegmentLoad { loaded: true, ..load })
}

/// Loads every PT_LOAD segment at its physical address, as QEMU's `-kernel`
/// does: a segment wholly outside RAM is skipped (and listed in the result),
/// one partly outside RAM or over one of the VMM's `reserved` regions is an
/// error. Picks the entry: the PVH note if present, else `e_entry` (long
/// mode for ELF64, protected mode for ELF32).
///
/// # Errors
///
/// A [`LoaderError`] naming what is wrong with the file or which segment
/// does not fit, and how to fix it.
pub fn load_elf(mem: &GuestMemoryMmap, image: &[u8], reserved: &[Region]) -> Result<LoadedElf, LoaderError> {
    if image.is_empty() {
        return Err(LoaderError::Empty);
    }
    let file = Bytes(image);
    let is64 = elf_header(&file)?;
    let e_entry = file.word(0x18, is64)?;
    let segs = segments(&file, is64)?;
    let mut loads = Vec::new();
    for (index, seg) in segs.iter().enumerate().filter(|(_, s)| s.kind == PT_LOAD) {
        if seg.memsz == 0 && seg.filesz == 0 {
            continue;
        }
        loads.push(load_segment(mem, &file, index, seg, reserved)?);
    }
    if loads.is_empty() {
        return Err(LoaderError::MalformedElf("no loadable segment"));
    }
    let Some(end) = loads.iter().filter(|l| l.loaded).map(|l| l.addr + l.memsz).max() else {
        let ram = memory::ram_size(mem);
        let lowest = loads.iter().map(|l| l.addr).min().unwrap_or(0);
        return Err(LoaderError::NothingInRam { lowest, ram });
    };
    let entry = match pvh_entry(&file, &segs)? {
        Some(rip) => ImageEntry { mode: EntryMode::Protected, rip, pvh: true },
        None if is64 => ImageEntry { mode: EntryMode::Long, rip: e_entry, pvh: false },
        None => ImageEntry { mode: EntryMode::Protected, rip: e_entry, pvh: false },
    };
    Ok(LoadedElf { entry, e_entry, is64, segments: loads, end })
}

#[cfg(test)]
mod tests;
