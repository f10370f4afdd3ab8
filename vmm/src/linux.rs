//! The Linux boot protocol for a 64-bit bzImage: the protected-mode kernel
//! loaded by rust-vmm's `linux-loader` (which checks the setup header), the
//! command line, the initramfs and the zero page placed by us, and the
//! 64-bit entry (load address + 0x200) in long mode on identity page tables
//! with RSI = the zero page, CS = 0x10 and DS = ES = SS = 0x18, as
//! `Documentation/arch/x86/boot.rst` asks. A vmlinux with a PVH note boots
//! through [`crate::loader`]'s PVH path instead, its initramfs as module 0.

use std::io::Cursor;

use linux_loader::loader::{bzimage::BzImage, KernelLoader};
use vm_memory::GuestAddress;

use crate::arch::x86_64::e820::{self, HIGH_RAM_START};
use crate::arch::x86_64::layout::*;
use crate::arch::x86_64::regs::{EntryMode, EntryPoint, GdtLayout};
use crate::arch::x86_64::zeropage::{self, ZeroPageInputs, ENTRY_64_OFFSET, XLF_KERNEL_64};
use crate::arch::x86_64::{gdt, paging};
use crate::boot::{BootReport, Booted, Module, Protocol};
use crate::memory::{self, GuestMemoryMmap, MemoryError};
use crate::vm::VmConfig;

/// The oldest boot protocol with `cmdline_size`, `pref_address` and
/// `init_size` (2.10) and the 64-bit entry flag (2.12).
pub const MIN_PROTOCOL: u16 = 0x020c;
const PAGE: u64 = 0x1000;

/// Errors of booting a bzImage.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    #[error("the file is too short to hold a Linux setup header")]
    NoHeader,
    #[error("the kernel speaks boot protocol {major}.{minor:02}, older than 2.12: this VMM boots 64-bit kernels of Linux 3.8 and later")]
    TooOld { major: u16, minor: u16 },
    #[error("the kernel has no 64-bit entry point (xloadflags bit 0): build it for x86_64")]
    Not64Bit,
    #[error("the kernel needs {need} bytes from {load:#x} (its init_size) and guest RAM has {ram}: raise --mem to at least {} MiB", (load + need).div_ceil(1 << 20))]
    KernelOutsideRam { load: u64, need: u64, ram: u64 },
    #[error("linux-loader refused the bzImage: {0}")]
    BzImage(linux_loader::loader::Error),
    #[error("the command line is {len} bytes and this kernel takes at most {max}: shorten --cmdline")]
    CmdlineTooLong { len: usize, max: u64 },
    #[error("the initrd {name} ({size} bytes) does not fit between {above:#x} and {limit:#x}: raise --mem or use a smaller initrd")]
    InitrdOutsideRam { name: String, size: u64, above: u64, limit: u64 },
    #[error("cannot write the Linux boot structures into guest memory")]
    Memory(#[source] MemoryError),
}

/// Places `module` as high as it fits, page-aligned, above `above` and
/// ending at or below `limit` and the end of RAM (where QEMU puts an
/// initrd); returns (address, size).
///
/// # Errors
///
/// [`LinuxError::InitrdOutsideRam`] if it does not fit.
pub fn place_initrd(mem: &GuestMemoryMmap, module: &Module, above: u64, limit: u64) -> Result<(u64, u64), LinuxError> {
    let size = module.bytes.len() as u64;
    let limit = limit.min(memory::ram_size(mem));
    let outside = || LinuxError::InitrdOutsideRam { name: module.name.clone(), size, above, limit };
    let start = limit.checked_sub(size).map(|s| s & !(PAGE - 1)).filter(|&s| s >= above).ok_or_else(outside)?;
    memory::write(mem, start, &module.bytes).map_err(|_| outside())?;
    Ok((start, size))
}

/// Where the protected-mode kernel goes: its preferred address if it is
/// relocatable and fits, else 1 MiB.
fn load_address(hdr: &linux_loader::loader::bootparam::setup_header, ram: u64) -> u64 {
    let (pref, init) = (hdr.pref_address, u64::from(hdr.init_size));
    if hdr.relocatable_kernel != 0 && pref >= HIGH_RAM_START && pref.saturating_add(init) <= ram {
        pref
    } else {
        HIGH_RAM_START
    }
}

/// Boots the bzImage `image`: see the module's documentation.
///
/// # Errors
///
/// A [`LinuxError`] naming what is missing or does not fit, and the fix.
pub fn boot(mem: &GuestMemoryMmap, image: &[u8], config: &VmConfig) -> Result<Booted, LinuxError> {
    let hdr = zeropage::read_setup_header(image).ok_or(LinuxError::NoHeader)?;
    let version = hdr.version;
    if version < MIN_PROTOCOL {
        return Err(LinuxError::TooOld { major: version >> 8, minor: version & 0xff });
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::Not64Bit);
    }
    let ram = memory::ram_size(mem);
    let load = load_address(&hdr, ram);
    let need = u64::from(hdr.init_size).max(image.len() as u64);
    if load.saturating_add(need) > ram {
        return Err(LinuxError::KernelOutsideRam { load, need, ram });
    }
    let loaded =
        BzImage::load(mem, Some(GuestAddress(load)), &mut Cursor::new(image), Some(GuestAddress(HIGH_RAM_START)))
            .map_err(LinuxError::BzImage)?;
    let header = loaded.setup_header.unwrap_or(hdr);
    let mut report = BootReport { protocol: Some(Protocol::Linux), ..BootReport::default() };
    report.placed.push(format!(
        "Linux kernel (boot protocol {}.{:02}) at {load:#x}..{:#x}, init_size {:#x}, 64-bit entry {:#x}",
        version >> 8,
        version & 0xff,
        loaded.kernel_end,
        { header.init_size },
        load + ENTRY_64_OFFSET
    ));
    let cmdline = write_cmdline(mem, &config.cmdline, u64::from(header.cmdline_size))?;
    let initrd = match &config.boot.initrd {
        Some(module) => {
            let limit = u64::from(header.initrd_addr_max).saturating_add(1);
            let placed = place_initrd(mem, module, load + need, limit)?;
            report.placed.push(format!("initrd {} at {:#x}+{:#x}", module.name, placed.0, placed.1));
            Some(placed)
        }
        None => None,
    };
    let map = e820::memory_map(ram);
    let inputs = ZeroPageInputs { load, map: &map, cmdline, initrd };
    let params = zeropage::zero_page(&header, &inputs);
    let m = LinuxError::Memory;
    memory::write(mem, ZERO_PAGE_START, &zeropage::zero_page_bytes(&params)).map_err(m)?;
    memory::write(mem, GDT_START, &gdt::linux_gdt_bytes()).map_err(m)?;
    let cr3 = paging::write_identity_tables(mem).map_err(m)?;
    report.placed.push(format!(
        "zero page at {ZERO_PAGE_START:#x} ({} e820 entries), command line at {cmdline:#x} {:?}, page tables at {cr3:#x}",
        map.len(),
        config.cmdline
    ));
    let entry = EntryPoint {
        mode: EntryMode::Long,
        rip: load + ENTRY_64_OFFSET,
        rsp: BOOT_STACK_TOP,
        rbx: 0,
        rax: 0,
        rsi: ZERO_PAGE_START,
        gdt: GdtLayout::LinuxBoot,
    };
    Ok(Booted { entry, report })
}

/// Writes the NUL-terminated command line; `max` is the kernel's
/// `cmdline_size` (its length without the NUL).
fn write_cmdline(mem: &GuestMemoryMmap, cmdline: &str, max: u64) -> Result<u64, LinuxError> {
    let max = max.min(LINUX_CMDLINE_MAX - 1);
    if cmdline.len() as u64 > max {
        return Err(LinuxError::CmdlineTooLong { len: cmdline.len(), max });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    memory::write(mem, LINUX_CMDLINE_START, &bytes).map_err(LinuxError::Memory)?;
    Ok(LINUX_CMDLINE_START)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::BootOptions;
    use std::sync::Arc;

    /// A bzImage-shaped file: a setup header of protocol `version` with the
    /// given xloadflags, one setup sector, then `kernel` bytes.
    fn bzimage(version: u16, xloadflags: u16, kernel: usize) -> Vec<u8> {
        let mut f = vec![0u8; 1024 + kernel];
        f[0x1f1] = 1; // setup_sects
        f[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        f[0x202..0x206].copy_from_slice(b"HdrS");
        f[0x206..0x208].copy_from_slice(&version.to_le_bytes());
        f[0x211] = 1; // loadflags: LOADED_HIGH
        f[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
        f[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        f[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes()); // kernel_alignment
        f[0x234] = 1; // relocatable
        f[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
        f[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
        f[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
        f[0x260..0x264].copy_from_slice(&0x40_0000u32.to_le_bytes()); // init_size
        f[1024] = 0xf4;
        f
    }

    fn config(cmdline: &str, initrd: Option<&[u8]>) -> VmConfig {
        let initrd = initrd.map(|b| Module { name: "initrd.img".into(), bytes: Arc::from(b) });
        VmConfig {
            cmdline: cmdline.into(),
            boot: BootOptions { initrd, ..BootOptions::default() },
            ..VmConfig::default()
        }
    }

    #[test]
    fn a_bzimage_is_entered_at_its_64_bit_entry_with_the_zero_page() {
        let mem = memory::create(64).unwrap();
        let image = bzimage(0x020f, XLF_KERNEL_64, 0x1000);
        let booted = boot(&mem, &image, &config("console=ttyS0", Some(b"initramfs"))).unwrap();
        let e = booted.entry;
        assert_eq!((e.mode, e.rip, e.rsi, e.gdt), (EntryMode::Long, 0x100_0200, ZERO_PAGE_START, GdtLayout::LinuxBoot));
        let mut b = [0u8; 1];
        memory::read(&mem, 0x100_0000, &mut b).unwrap();
        assert_eq!(b, [0xf4], "the protected-mode kernel at its preferred address");
        let mut cmd = [0u8; 14];
        memory::read(&mem, LINUX_CMDLINE_START, &mut cmd).unwrap();
        assert_eq!(&cmd, b"console=ttyS0\0");
        let mut zp = [0u8; 4096];
        memory::read(&mem, ZERO_PAGE_START, &mut zp).unwrap();
        let ramdisk = u32::from_le_bytes(zp[0x218..0x21c].try_into().unwrap());
        assert_eq!(ramdisk, (64 << 20) - 0x1000, "the initrd in the last page of RAM");
        assert!(booted.report.placed.iter().any(|l| l.contains("boot protocol 2.15")), "{:?}", booted.report.placed);
    }

    #[test]
    fn old_32_bit_and_oversized_kernels_are_refused_with_the_fix() {
        let mem = memory::create(8).unwrap();
        let old = boot(&mem, &bzimage(0x0206, XLF_KERNEL_64, 16), &config("", None)).unwrap_err();
        assert!(matches!(old, LinuxError::TooOld { major: 2, minor: 6 }), "{old}");
        let k32 = boot(&mem, &bzimage(0x020f, 0, 16), &config("", None)).unwrap_err();
        assert!(matches!(k32, LinuxError::Not64Bit), "{k32}");
        let mut big = bzimage(0x020f, XLF_KERNEL_64, 16);
        big[0x260..0x264].copy_from_slice(&0x100_0000u32.to_le_bytes());
        let e = boot(&mem, &big, &config("", None)).unwrap_err();
        assert!(e.to_string().contains("raise --mem to at least 17 MiB"), "{e}");
        let long = "x".repeat(3000);
        let e =
            boot(&memory::create(64).unwrap(), &bzimage(0x020f, XLF_KERNEL_64, 16), &config(&long, None)).unwrap_err();
        assert!(matches!(e, LinuxError::CmdlineTooLong { len: 3000, max: 2048 }), "{e}");
        assert!(matches!(boot(&mem, &[0u8; 100], &config("", None)), Err(LinuxError::NoHeader)));
    }

    #[test]
    fn an_initrd_that_does_not_fit_is_named() {
        let mem = memory::create(8).unwrap();
        let module = Module { name: "big.img".into(), bytes: Arc::from(vec![0u8; 8 << 20]) };
        let e = place_initrd(&mem, &module, 0x40_0000, u64::MAX).unwrap_err();
        assert!(e.to_string().starts_with("the initrd big.img (8388608 bytes) does not fit"), "{e}");
    }
}
