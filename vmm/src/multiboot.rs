//! Multiboot 1: the header a kernel carries in its first 8 KiB, loading
//! it (its ELF program headers, or the a.out kludge's addresses), its
//! modules, and the machine state it is entered in: 32-bit protected mode,
//! paging off, EAX = 0x2BADB002, EBX = the information block
//! ([`crate::arch::x86_64::multiboot`]). QEMU's `-kernel` is the model:
//! what it accepts is accepted here, and its notes are ours.

use std::fmt;

use crate::arch::x86_64::layout::Region;
use crate::loader::{self, LoaderError, SegmentLoad};
use crate::memory::{self, GuestMemoryMmap};

/// `magic` of the Multiboot header.
pub const HEADER_MAGIC: u32 = 0x1bad_b002;
/// EAX at the kernel's entry.
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header lies, 32-bit aligned, within this many bytes of the file's start.
pub const SEARCH_LIMIT: usize = 8192;
/// Flag 0: modules must be page-aligned.
pub const FLAG_PAGE_ALIGN: u32 = 1 << 0;
/// Flag 1: the kernel needs `mem_*` and the memory map.
pub const FLAG_MEMORY_INFO: u32 = 1 << 1;
/// Flag 2: the kernel wants a video mode.
pub const FLAG_VIDEO_MODE: u32 = 1 << 2;
/// Flag 16: the header's address fields say where to load the image (the a.out kludge).
pub const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
const PAGE: u64 = 0x1000;

/// Errors of Multiboot loading.
#[derive(Debug, thiserror::Error)]
pub enum MultibootError {
    #[error("the Multiboot header at offset {offset:#x} asks for the a.out kludge but the file ends inside it")]
    TruncatedHeader { offset: usize },
    #[error("the Multiboot header's addresses do not add up: {0} (fix the header or link the kernel as ELF without flag 16)")]
    BadAddresses(&'static str),
    #[error("the Multiboot kernel at {start:#x}..{end:#x} does not fit in {ram} bytes of guest RAM: raise --mem to at least {} MiB", end.div_ceil(1 << 20))]
    KernelOutsideRam { start: u64, end: u64, ram: u64 },
    #[error(
        "the Multiboot kernel at {start:#x}..{end:#x} overlaps the VMM's {what} at {at:#x}: load it at 1 MiB or above"
    )]
    KernelOverVmm { start: u64, end: u64, what: &'static str, at: u64 },
    #[error("the Multiboot kernel has no a.out kludge (flag 16), so it must be an ELF file")]
    NotElf(#[source] LoaderError),
    #[error("module {name} ({size} bytes) does not fit in guest RAM above the kernel (at {at:#x} of {ram} bytes): raise --mem")]
    ModuleOutsideRam { name: String, size: u64, at: u64, ram: u64 },
    #[error("the Multiboot information does not fit in the {room} bytes the VMM keeps for it: shorten --cmdline or the module names")]
    InfoTooLarge { room: u64 },
    #[error("cannot write the Multiboot structures into guest memory")]
    Memory(#[source] crate::memory::MemoryError),
}

/// The a.out kludge's address fields (header offsets 12-28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AoutKludge {
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

/// A Multiboot header found in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its offset in the file.
    pub offset: usize,
    pub flags: u32,
    /// The load addresses, when flag 16 asks for them.
    pub aout: Option<AoutKludge>,
}

fn u32_at(image: &[u8], at: usize) -> Option<u32> {
    image.get(at..at.checked_add(4)?).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
}

/// Finds the Multiboot header: the magic at a 32-bit aligned offset within
/// the first 8 KiB, with a checksum that makes magic + flags + checksum 0.
/// `None` if there is none; an error if its a.out fields are cut off.
///
/// # Errors
///
/// [`MultibootError::TruncatedHeader`] when flag 16 is set and the file
/// ends before the address fields.
pub fn find_header(image: &[u8]) -> Option<Result<Header, MultibootError>> {
    let limit = image.len().min(SEARCH_LIMIT);
    let offset = (0..limit.saturating_sub(11)).step_by(4).find(|&at| {
        let field = |k: usize| u32_at(image, at + 4 * k).unwrap_or(0);
        field(0) == HEADER_MAGIC && field(0).wrapping_add(field(1)).wrapping_add(field(2)) == 0
    })?;
    let flags = u32_at(image, offset + 4).unwrap_or(0);
    if flags & FLAG_AOUT_KLUDGE == 0 {
        return Some(Ok(Header { offset, flags, aout: None }));
    }
    let field = |k: usize| u32_at(image, offset + 12 + 4 * k).ok_or(MultibootError::TruncatedHeader { offset });
    let kludge = (|| {
        Ok(AoutKludge {
            header_addr: field(0)?,
            load_addr: field(1)?,
            load_end_addr: field(2)?,
            bss_end_addr: field(3)?,
            entry_addr: field(4)?,
        })
    })();
    Some(kludge.map(|k| Header { offset, flags, aout: Some(k) }))
}

/// Where the a.out kludge puts the image: (file offset, load address,
/// bytes loaded, bytes loaded plus bss), computed as QEMU does.
///
/// # Errors
///
/// [`MultibootError::BadAddresses`] when the fields contradict each other
/// or the file.
pub fn aout_placement(
    k: &AoutKludge,
    header_offset: usize,
    file_len: usize,
) -> Result<(u64, u64, u64, u64), MultibootError> {
    let bad = MultibootError::BadAddresses;
    if k.header_addr < k.load_addr {
        return Err(bad("header_addr is below load_addr"));
    }
    let text_offset = (header_offset as u64)
        .checked_sub(u64::from(k.header_addr - k.load_addr))
        .ok_or(bad("the header lies before the start of what load_addr loads"))?;
    let file_len = file_len as u64;
    let load_size = if k.load_end_addr != 0 {
        k.load_end_addr.checked_sub(k.load_addr).map(u64::from).ok_or(bad("load_end_addr is below load_addr"))?
    } else {
        file_len.checked_sub(text_offset).ok_or(bad("the file ends before the text"))?
    };
    if text_offset + load_size > file_len {
        return Err(bad("load_end_addr asks for more than the file holds"));
    }
    let load = u64::from(k.load_addr);
    if load + load_size > u64::from(u32::MAX) {
        return Err(bad("the image would end above 4 GiB"));
    }
    let total = if k.bss_end_addr != 0 {
        u64::from(k.bss_end_addr)
            .checked_sub(load)
            .filter(|&t| t >= load_size)
            .ok_or(bad("bss_end_addr is below the end of the loaded image"))?
    } else {
        load_size
    };
    Ok((text_offset, load, load_size, total))
}

/// A Multiboot kernel in guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedKernel {
    pub header: Header,
    /// The 32-bit entry point.
    pub entry: u64,
    /// Where its image lies: (start, end), bss included.
    pub start: u64,
    pub end: u64,
    /// The ELF segments, for an ELF kernel.
    pub segments: Vec<SegmentLoad>,
    /// What the user should know (features asked for but not given).
    pub notes: Vec<String>,
}

/// Loads the kernel `image` whose header is `header`, keeping clear of `reserved`.
///
/// # Errors
///
/// A [`MultibootError`] naming what does not fit or add up.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    image: &[u8],
    header: Header,
    reserved: &[Region],
) -> Result<LoadedKernel, MultibootError> {
    let mut notes = Vec::new();
    if header.flags & FLAG_VIDEO_MODE != 0 {
        notes.push("the Multiboot kernel asks for a video mode (flag 2); this VMM has no display, so none is set (as QEMU does)".to_string());
    }
    let unknown = header.flags & 0xfff8;
    if unknown != 0 {
        notes.push(format!("the Multiboot kernel asks for features this loader does not know (flags {unknown:#x}); it boots without them, as under QEMU"));
    }
    let Some(k) = header.aout else {
        let elf = loader::load_elf(mem, image, reserved).map_err(MultibootError::NotElf)?;
        let start = elf.segments.iter().filter(|s| s.loaded).map(|s| s.addr).min().unwrap_or(0);
        return Ok(LoadedKernel { header, entry: elf.e_entry, start, end: elf.end, segments: elf.segments, notes });
    };
    let (offset, load, size, total) = aout_placement(&k, header.offset, image.len())?;
    let ram = memory::ram_size(mem);
    let end = load + total;
    if end > ram {
        return Err(MultibootError::KernelOutsideRam { start: load, end, ram });
    }
    if let Some(r) = reserved.iter().find(|r| r.overlaps(load, total)) {
        return Err(MultibootError::KernelOverVmm { start: load, end, what: r.name, at: r.start });
    }
    let text = image
        .get(offset as usize..(offset + size) as usize)
        .ok_or(MultibootError::BadAddresses("the text lies past the end of the file"))?;
    memory::write(mem, load, text).map_err(MultibootError::Memory)?;
    Ok(LoadedKernel { header, entry: u64::from(k.entry_addr), start: load, end, segments: Vec::new(), notes })
}

/// A module in guest memory, as the information block lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedModule {
    pub start: u64,
    pub end: u64,
    /// Its string (QEMU passes the file name).
    pub name: String,
}

impl fmt::Display for PlacedModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Multiboot module {} at {:#x}..{:#x}", self.name, self.start, self.end)
    }
}

/// Copies `modules` (name, bytes) one after the other, page-aligned, from
/// the first page after `after` (the kernel's end), as QEMU places them.
///
/// # Errors
///
/// [`MultibootError::ModuleOutsideRam`] for the first one that does not fit.
pub fn place_modules(
    mem: &GuestMemoryMmap,
    after: u64,
    modules: &[(&str, &[u8])],
) -> Result<Vec<PlacedModule>, MultibootError> {
    let ram = memory::ram_size(mem);
    let mut at = after.next_multiple_of(PAGE);
    let mut placed = Vec::new();
    for &(name, bytes) in modules {
        let size = bytes.len() as u64;
        let too_big = || MultibootError::ModuleOutsideRam { name: name.to_string(), size, at, ram };
        let end = at.checked_add(size).filter(|&e| e <= ram && e <= u64::from(u32::MAX)).ok_or_else(too_big)?;
        memory::write(mem, at, bytes).map_err(|_| too_big())?;
        placed.push(PlacedModule { start: at, end, name: name.to_string() });
        at = end.next_multiple_of(PAGE).max(at + PAGE);
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with `flags` at `offset` of a file of `len` bytes, and the a.out fields.
    fn image_with_header(len: usize, offset: usize, flags: u32, aout: [u32; 5]) -> Vec<u8> {
        let mut f = vec![0u8; len];
        let words = [HEADER_MAGIC, flags, 0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags))];
        for (i, w) in words.iter().chain(&aout).enumerate() {
            if let Some(b) = f.get_mut(offset + 4 * i..offset + 4 * i + 4) {
                b.copy_from_slice(&w.to_le_bytes());
            }
        }
        f
    }

    #[test]
    fn the_header_is_found_aligned_within_8k_with_its_checksum() {
        let f = image_with_header(0x3000, 0x40, 3, [0; 5]);
        assert_eq!(find_header(&f).unwrap().unwrap(), Header { offset: 0x40, flags: 3, aout: None });
        assert!(find_header(&image_with_header(0x3000, 0x2000, 3, [0; 5])).is_none(), "past 8 KiB");
        assert!(find_header(&image_with_header(0x3000, 0x42, 3, [0; 5])).is_none(), "unaligned");
        let mut bad = image_with_header(0x3000, 0x40, 3, [0; 5]);
        bad[0x48] ^= 1;
        assert!(find_header(&bad).is_none(), "wrong checksum");
        assert!(find_header(&[]).is_none());
        let cut = image_with_header(0x50, 0x40, FLAG_AOUT_KLUDGE, [0; 5]);
        assert!(matches!(find_header(&cut), Some(Err(MultibootError::TruncatedHeader { offset: 0x40 }))));
    }

    #[test]
    fn the_aout_kludge_places_the_image_as_qemu_does() {
        // header at file offset 0x40, linked so that file offset 0 is at 1 MiB
        let k = AoutKludge {
            header_addr: 0x10_0040,
            load_addr: 0x10_0000,
            load_end_addr: 0,
            bss_end_addr: 0,
            entry_addr: 0x10_0080,
        };
        assert_eq!(aout_placement(&k, 0x40, 0x1000).unwrap(), (0, 0x10_0000, 0x1000, 0x1000));
        let with_bss = AoutKludge { load_end_addr: 0x10_0800, bss_end_addr: 0x10_4000, ..k };
        assert_eq!(aout_placement(&with_bss, 0x40, 0x1000).unwrap(), (0, 0x10_0000, 0x800, 0x4000));
        for (bad, why) in [
            (AoutKludge { header_addr: 0xf_0000, ..k }, "header_addr is below load_addr"),
            (AoutKludge { load_end_addr: 0xf_0000, ..k }, "load_end_addr is below load_addr"),
            (AoutKludge { load_end_addr: 0x10_2000, ..k }, "load_end_addr asks for more than the file holds"),
            (AoutKludge { bss_end_addr: 0x10_0010, ..k }, "bss_end_addr is below the end of the loaded image"),
            (AoutKludge { header_addr: 0x10_0100, ..k }, "the header lies before the start of what load_addr loads"),
        ] {
            let e = aout_placement(&bad, 0x40, 0x1000).unwrap_err();
            assert!(matches!(e, MultibootError::BadAddresses(w) if w == why), "{e}");
        }
    }

    #[test]
    fn an_aout_kernel_is_loaded_and_checked_against_ram_and_the_vmm() {
        let mem = memory::create(2).unwrap();
        let aout = [0x10_0000, 0x10_0000, 0, 0x10_2000, 0x10_000c];
        let mut f = image_with_header(0x100, 0, FLAG_AOUT_KLUDGE | FLAG_MEMORY_INFO, aout);
        f[0x80] = 0xf4;
        let header = find_header(&f).unwrap().unwrap();
        let k = load_kernel(&mem, &f, header, &[]).unwrap();
        assert_eq!((k.entry, k.start, k.end), (0x10_000c, 0x10_0000, 0x10_2000));
        let mut b = [0u8; 1];
        memory::read(&mem, 0x10_0080, &mut b).unwrap();
        assert_eq!(b, [0xf4]);
        let high = image_with_header(0x100, 0, FLAG_AOUT_KLUDGE, [0x30_0000, 0x30_0000, 0, 0, 0x30_0000]);
        let e = load_kernel(&mem, &high, find_header(&high).unwrap().unwrap(), &[]).unwrap_err();
        assert!(e.to_string().contains("raise --mem to at least 4 MiB"), "{e}");
        let low = image_with_header(0x100, 0, FLAG_AOUT_KLUDGE, [0x1000, 0x1000, 0, 0, 0x1000]);
        let region = crate::arch::x86_64::layout::PVH_REGION;
        let e = load_kernel(&mem, &low, find_header(&low).unwrap().unwrap(), &[region]).unwrap_err();
        assert!(matches!(e, MultibootError::KernelOverVmm { what: "PVH start info", .. }), "{e}");
    }

    #[test]
    fn a_kernel_without_the_kludge_must_be_elf_and_video_is_a_note() {
        let mem = memory::create(2).unwrap();
        let f = image_with_header(0x100, 0, FLAG_VIDEO_MODE, [0; 5]);
        let e = load_kernel(&mem, &f, find_header(&f).unwrap().unwrap(), &[]).unwrap_err();
        assert!(matches!(e, MultibootError::NotElf(LoaderError::MalformedElf("no ELF magic"))), "{e}");
        let mut ok = image_with_header(
            0x100,
            0,
            FLAG_VIDEO_MODE | FLAG_AOUT_KLUDGE | 0x8,
            [0x10_0000, 0x10_0000, 0, 0, 0x10_0000],
        );
        ok[0x20] = 0xf4;
        let k = load_kernel(&mem, &ok, find_header(&ok).unwrap().unwrap(), &[]).unwrap();
        assert_eq!(k.notes.len(), 2, "{:?}", k.notes);
        assert!(k.notes[0].contains("video mode"), "{:?}", k.notes);
    }

    #[test]
    fn modules_follow_the_kernel_page_aligned() {
        let mem = memory::create(2).unwrap();
        let placed = place_modules(&mem, 0x10_0123, &[("env", b"NR_CPUS=1\n"), ("empty", b"")]).unwrap();
        assert_eq!(placed[0], PlacedModule { start: 0x10_1000, end: 0x10_100a, name: "env".into() });
        assert_eq!((placed[1].start, placed[1].end), (0x10_2000, 0x10_2000));
        let mut b = [0u8; 10];
        memory::read(&mem, 0x10_1000, &mut b).unwrap();
        assert_eq!(&b, b"NR_CPUS=1\n");
        let big = vec![0u8; 2 << 20];
        assert!(matches!(
            place_modules(&mem, 0x10_0000, &[("big", &big)]),
            Err(MultibootError::ModuleOutsideRam { .. })
        ));
    }
}
