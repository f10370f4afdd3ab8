//! Boot protocols: which one a kernel file speaks, decided as QEMU's
//! `-kernel` decides it (the Linux boot protocol's `HdrS`, then a Multiboot
//! header, then ELF with or without a PVH note), and the one function that
//! loads it and writes what its entry needs. Each protocol has a module of
//! its own ([`crate::loader`] for flat and ELF/PVH, [`crate::multiboot`],
//! [`crate::linux`]); the structures they write are pure builders in
//! [`crate::arch::x86_64`].

use std::sync::Arc;

use crate::arch::x86_64::layout::*;
use crate::arch::x86_64::multiboot::{self as mbinfo, ModuleEntry};
use crate::arch::x86_64::regs::{EntryMode, EntryPoint, GdtLayout};
use crate::arch::x86_64::{e820, gdt, paging, pvh};
use crate::loader::{self, ImageEntry, LoaderError};
use crate::memory::{self, GuestMemoryMmap, MemoryError};
use crate::multiboot::{self, MultibootError};
use crate::vm::{Image, VmConfig};

/// The protocols a kernel file can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A bzImage: the setup header's `HdrS` at offset 0x202.
    Linux,
    /// A Multiboot 1 header in the first 8 KiB.
    Multiboot,
    /// ELF: PVH if it has the note, else its `e_entry`.
    Elf,
    /// None of those: a flat binary.
    Flat,
}

impl Protocol {
    /// Its name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Linux => "Linux boot protocol (bzImage)",
            Protocol::Multiboot => "Multiboot",
            Protocol::Elf => "ELF",
            Protocol::Flat => "flat binary",
        }
    }

    /// True for the protocols of PC kernels, which expect the interrupt
    /// controllers and timer of a PC (the in-kernel irqchip and PIT).
    pub fn wants_pc(self) -> bool {
        matches!(self, Protocol::Linux | Protocol::Multiboot)
    }
}

/// `HdrS` at offset 0x202 of a bzImage.
pub const LINUX_HEADER_MAGIC: u32 = 0x5372_6448;

/// The protocol of `image`, in QEMU's order: Linux, Multiboot, ELF, flat.
pub fn detect(image: &[u8]) -> Protocol {
    let hdrs = image.get(0x202..0x206).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    if hdrs == Some(LINUX_HEADER_MAGIC) {
        Protocol::Linux
    } else if multiboot::find_header(image).is_some() {
        Protocol::Multiboot
    } else if loader::is_elf(image) {
        Protocol::Elf
    } else {
        Protocol::Flat
    }
}

/// A file handed to the guest: the initrd, or Multiboot module 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Its name as the guest sees it (the path given, as QEMU passes it).
    pub name: String,
    pub bytes: Arc<[u8]>,
}

/// Boot options beyond the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// The kernel's file name: Multiboot's command line starts with it, as
    /// under QEMU and GRUB.
    pub kernel_name: String,
    /// `--initrd`: Linux's initramfs, Multiboot's module 0, PVH's module 0.
    pub initrd: Option<Module>,
    /// `--cpuid-mask`: CPUID features the guest does not see.
    pub cpuid_mask: Vec<&'static crate::arch::x86_64::cpuid::Feature>,
}

/// What the boot put where, and what the user should know about it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    /// The protocol the image was booted with.
    pub protocol: Option<Protocol>,
    /// One line per thing placed in guest memory or skipped (`--trace`).
    pub placed: Vec<String>,
    /// What the user should be told even without `--trace` (a skipped
    /// segment, a feature asked for and not given).
    pub notes: Vec<String>,
}

/// Errors of booting an image.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("cannot load the image")]
    Loader(#[source] LoaderError),
    #[error("cannot boot the Multiboot kernel")]
    Multiboot(#[source] MultibootError),
    #[error("cannot boot the Linux kernel")]
    Linux(#[source] crate::linux::LinuxError),
    #[error("cannot write the boot structures into guest memory")]
    Memory(#[source] MemoryError),
    #[error(
        "{0} is not a kernel this VMM can boot from a file: give --mode, --load-addr and --entry for a flat binary"
    )]
    NotAKernel(&'static str),
    #[error("--initrd is given but {0} kernels take no initrd: leave it out")]
    InitrdUnused(&'static str),
}

/// An image loaded and ready to enter.
#[derive(Debug)]
pub struct Booted {
    pub entry: EntryPoint,
    pub report: BootReport,
}

/// What the VMM writes for an ELF's entry, PVH or long mode: its segments
/// must keep clear of it.
const ELF_RESERVED: [Region; 4] = [GDT_REGION, PVH_REGION, PAGE_TABLE_REGION, BOOT_STACK_REGION];

/// Loads `image` into `mem` and writes what its protocol's entry needs.
///
/// # Errors
///
/// A [`BootError`] naming what does not fit or is malformed, and the fix.
pub fn prepare(mem: &GuestMemoryMmap, image: &Image<'_>, config: &VmConfig) -> Result<Booted, BootError> {
    let mut report = BootReport::default();
    let opts = &config.boot;
    let loaded = match *image {
        Image::Flat { bytes, mode, load, entry } => {
            report.protocol = Some(Protocol::Flat);
            loader::load_flat(mem, bytes, load, entry, mode).map_err(BootError::Loader)?
        }
        Image::Elf(bytes) => elf(mem, bytes, &mut report)?,
        Image::Kernel(bytes) => match detect(bytes) {
            Protocol::Linux => return crate::linux::boot(mem, bytes, config).map_err(BootError::Linux),
            Protocol::Multiboot => return boot_multiboot(mem, bytes, config),
            Protocol::Elf => elf(mem, bytes, &mut report)?,
            Protocol::Flat => return Err(BootError::NotAKernel(Protocol::Flat.name())),
        },
    };
    if opts.initrd.is_some() && !loaded.pvh {
        return Err(BootError::InitrdUnused(if loaded.mode == EntryMode::Long { "ELF64" } else { "these" }));
    }
    let entry = write_boot_structures(mem, &loaded, &config.cmdline, opts, &mut report)?;
    Ok(Booted { entry, report })
}

/// Loads an ELF, PVH or not, and lists its segments.
fn elf(mem: &GuestMemoryMmap, bytes: &[u8], report: &mut BootReport) -> Result<ImageEntry, BootError> {
    report.protocol = Some(Protocol::Elf);
    let elf = loader::load_elf(mem, bytes, &ELF_RESERVED).map_err(BootError::Loader)?;
    for s in &elf.segments {
        report.placed.push(s.to_string());
        if !s.loaded {
            report.notes.push(s.to_string());
        }
    }
    Ok(elf.entry)
}

/// Writes the GDT, the page tables and (for PVH) the start info and the
/// initrd; returns the entry registers.
fn write_boot_structures(
    mem: &GuestMemoryMmap,
    entry: &ImageEntry,
    cmdline: &str,
    opts: &BootOptions,
    report: &mut BootReport,
) -> Result<EntryPoint, BootError> {
    let mut point = EntryPoint {
        mode: entry.mode,
        rip: entry.rip,
        rsp: BOOT_STACK_TOP,
        rbx: 0,
        rax: 0,
        rsi: 0,
        gdt: GdtLayout::Vmm,
    };
    let m = BootError::Memory;
    match entry.mode {
        EntryMode::Real => point.rsp = REAL_MODE_LOAD,
        EntryMode::Protected => memory::write(mem, GDT_START, &gdt::gdt_bytes()).map_err(m)?,
        EntryMode::Long => {
            memory::write(mem, GDT_START, &gdt::gdt_bytes()).map_err(m)?;
            paging::write_identity_tables(mem).map_err(m)?;
        }
    }
    if entry.pvh {
        let initrd = match &opts.initrd {
            Some(module) => {
                let placed =
                    crate::linux::place_initrd(mem, module, 0, u64::from(u32::MAX)).map_err(BootError::Linux)?;
                report.placed.push(format!("initrd {} at {:#x}+{:#x} (PVH module 0)", module.name, placed.0, placed.1));
                Some(placed)
            }
            None => None,
        };
        point.rbx = pvh::write_start_info_with_initrd(mem, cmdline, initrd).map_err(m)?;
        report.placed.push(format!("PVH start info at {:#x}, command line {cmdline:?}", point.rbx));
    }
    Ok(point)
}

/// Boots a Multiboot kernel: its image, module 0 (`--initrd`) after it,
/// the information block, and a 32-bit protected-mode entry with EAX =
/// 0x2BADB002 and EBX = the block.
fn boot_multiboot(mem: &GuestMemoryMmap, bytes: &[u8], config: &VmConfig) -> Result<Booted, BootError> {
    let mb = BootError::Multiboot;
    let mut report = BootReport { protocol: Some(Protocol::Multiboot), ..BootReport::default() };
    let header = match multiboot::find_header(bytes) {
        Some(header) => header.map_err(mb)?,
        None => return Err(BootError::NotAKernel("an image without a Multiboot header")),
    };
    let reserved = [GDT_REGION, MULTIBOOT_REGION, BOOT_STACK_REGION];
    let kernel = multiboot::load_kernel(mem, bytes, header, &reserved).map_err(mb)?;
    for s in &kernel.segments {
        report.placed.push(s.to_string());
        if !s.loaded {
            report.notes.push(s.to_string());
        }
    }
    report
        .placed
        .push(format!("Multiboot kernel at {:#x}..{:#x}, entry {:#x}", kernel.start, kernel.end, kernel.entry));
    report.notes.extend(kernel.notes.iter().cloned());
    let opts = &config.boot;
    let modules: Vec<(&str, &[u8])> = opts.initrd.iter().map(|m| (m.name.as_str(), &*m.bytes)).collect();
    let placed = multiboot::place_modules(mem, kernel.end, &modules).map_err(mb)?;
    report.placed.extend(placed.iter().map(ToString::to_string));
    let entries: Vec<ModuleEntry> = placed
        .iter()
        .map(|p| ModuleEntry { start: p.start as u32, end: p.end as u32, string: p.name.clone() })
        .collect();
    // As QEMU and GRUB do, the command line starts with the kernel's name.
    let cmdline = [opts.kernel_name.as_str(), config.cmdline.as_str()].join(" ");
    let map = e820::memory_map(memory::ram_size(mem));
    let room = (MULTIBOOT_INFO_END - MULTIBOOT_INFO_START) as usize;
    let info = mbinfo::info_bytes(MULTIBOOT_INFO_START, room, &map, cmdline.trim_end(), &entries)
        .map_err(|_| mb(MultibootError::InfoTooLarge { room: room as u64 }))?;
    memory::write(mem, MULTIBOOT_INFO_START, &info).map_err(BootError::Memory)?;
    memory::write(mem, GDT_START, &gdt::gdt_bytes()).map_err(BootError::Memory)?;
    write_bios_ivt(mem).map_err(BootError::Memory)?;
    report
        .placed
        .push(format!("Multiboot information at {MULTIBOOT_INFO_START:#x}, command line {:?}", cmdline.trim_end()));
    let entry = EntryPoint {
        mode: EntryMode::Protected,
        rip: kernel.entry,
        rsp: BOOT_STACK_TOP,
        rbx: MULTIBOOT_INFO_START,
        rax: u64::from(multiboot::BOOTLOADER_MAGIC),
        rsi: 0,
        gdt: GdtLayout::Vmm,
    };
    Ok(Booted { entry, report })
}

/// The real-mode IVT a BIOS leaves: every vector at an `iret` ([`BIOS_IRET`]).
fn write_bios_ivt(mem: &GuestMemoryMmap) -> Result<(), MemoryError> {
    let vector = (0xf000u32 << 16) | (BIOS_IRET - 0xf_0000) as u32;
    let ivt: Vec<u8> = (0..256).flat_map(|_| vector.to_le_bytes()).collect();
    memory::write(mem, 0, &ivt)?;
    memory::write(mem, BIOS_IRET, &[0xcf])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_detected_in_qemus_order() {
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(detect(&bz), Protocol::Linux);
        let mut mb = b"\x7fELF".to_vec();
        mb.resize(0x100, 0);
        let words = [multiboot::HEADER_MAGIC, 0, 0u32.wrapping_sub(multiboot::HEADER_MAGIC)];
        for (i, w) in words.iter().enumerate() {
            mb[0x40 + 4 * i..0x44 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        assert_eq!(detect(&mb), Protocol::Multiboot, "an ELF with a Multiboot header is Multiboot");
        assert_eq!(detect(guests::find("hello").unwrap().image), Protocol::Elf);
        assert_eq!(detect(&[0xf4]), Protocol::Flat);
        assert!(Protocol::Multiboot.wants_pc() && !Protocol::Elf.wants_pc());
    }

    #[test]
    fn every_real_mode_vector_points_at_the_bios_iret() {
        let mem = memory::create(2).unwrap();
        write_bios_ivt(&mem).unwrap();
        let mut ivt = [0u8; 1024];
        memory::read(&mem, 0, &mut ivt).unwrap();
        assert!(ivt.chunks(4).all(|v| v == [0x53, 0xff, 0x00, 0xf0]), "F000:FF53 in every entry");
        let mut iret = [0u8; 1];
        memory::read(&mem, 0xf_ff53, &mut iret).unwrap();
        assert_eq!(iret, [0xcf]);
    }
}
