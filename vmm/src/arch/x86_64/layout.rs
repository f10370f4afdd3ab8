//! The guest memory map and I/O map: every fixed guest-physical address and
//! port the VMM uses, in one place.
//!
//! ```text
//! 0x0000_0000  real-mode IVT and BIOS data area (left zero)
//! 0x0000_0500  GDT built by the VMM (4 entries)
//! 0x0000_1000  PVH struct hvm_start_info
//! 0x0000_1040  PVH memory map (struct hvm_memmap_table_entry[])
//! 0x0000_1800  PVH module list (struct hvm_modlist_entry[]: the initrd)
//! 0x0000_2000  PVH command line (NUL-terminated)
//! 0x0000_3000  Multiboot information block, its mmap, module list and strings
//! 0x0000_7000  Linux zero page (struct boot_params)
//! 0x0000_7c00  real-mode flat images load here (like a boot sector)
//! 0x0000_9000  PML4, then PDPT at 0xa000, then 4 PDs at 0xb000..0xf000
//! 0x0002_0000  Linux command line
//! 0x0007_f000  boot stack page (the stack grows down from 0x8_0000)
//! 0x000f_0000  MP table: floating pointer, then the configuration table
//! 0x0010_0000  protected/long-mode flat images and ELF kernels (1 MiB)
//!   ...        kernel, then Multiboot modules (page-aligned, after the kernel)
//!   ...        Linux initrd (page-aligned, as high as RAM and the kernel allow)
//!   ...        guest RAM up to --mem MiB (at most MMIO_START)
//! 0xd000_0000  MMIO hole: the scratch device, then unclaimed
//! ```

/// Start of guest RAM.
pub const RAM_START: u64 = 0;
/// Default guest RAM size in MiB (`--mem`). Mapped lazily.
pub const DEFAULT_MEM_MIB: u64 = 128;
/// Guest RAM ends below the MMIO hole.
pub const MMIO_START: u64 = 0xd000_0000;

/// The GDT the VMM builds for protected- and long-mode entry.
pub const GDT_START: u64 = 0x500;
/// Where PVH's `struct hvm_start_info` goes; its address is passed in EBX.
pub const PVH_INFO_START: u64 = 0x1000;
/// PVH memory map, right after the start info.
pub const PVH_MEMMAP_START: u64 = 0x1040;
/// PVH module list: one `hvm_modlist_entry` (32 bytes) per module.
pub const PVH_MODLIST_START: u64 = 0x1800;
/// PVH command line.
pub const PVH_CMDLINE_START: u64 = 0x2000;
/// Largest PVH command line, including its NUL.
pub const PVH_CMDLINE_MAX: usize = 0x1000;
/// The Multiboot information block; its mmap, module list and strings follow it.
pub const MULTIBOOT_INFO_START: u64 = 0x3000;
/// End of the space for the Multiboot information (exclusive).
pub const MULTIBOOT_INFO_END: u64 = 0x7000;
/// The Linux zero page (`struct boot_params`, 4 KiB).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// The Linux command line.
pub const LINUX_CMDLINE_START: u64 = 0x2_0000;
/// Largest Linux command line we place, including its NUL (the kernel's
/// own limit, `cmdline_size` in its setup header, may be lower).
pub const LINUX_CMDLINE_MAX: u64 = 0x1_0000;
/// Default load address of real-mode flat binaries (CS:IP = 0000:7c00).
pub const REAL_MODE_LOAD: u64 = 0x7c00;
/// Level-4 page table; the PDPT and page directories follow it.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table.
pub const PDPT_START: u64 = 0xa000;
/// First of the page directories (one per GiB identity-mapped).
pub const PD_START: u64 = 0xb000;
/// GiB identity-mapped with 2 MiB pages for long-mode entry (covers the MMIO hole).
pub const IDENTITY_MAP_GIB: u64 = 4;
/// Initial stack pointer for protected- and long-mode entry.
pub const BOOT_STACK_TOP: u64 = 0x8_0000;
/// The page below [`BOOT_STACK_TOP`], which a kernel's first pushes use.
pub const BOOT_STACK_PAGE: u64 = BOOT_STACK_TOP - 0x1000;
/// Default load address of protected/long-mode flat binaries.
pub const KERNEL_LOAD: u64 = 0x10_0000;
/// The MP table's floating pointer (the configuration table follows it),
/// in the system BIOS area a kernel scans for it.
pub const MPTABLE_START: u64 = 0xf_0000;
/// KVM's TSS for real-mode emulation on Intel (3 pages), just below 4 GiB.
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;

/// COM1: a 16550A UART, 8 registers.
pub const COM1_BASE: u64 = 0x3f8;
/// Legacy IRQ line of COM1.
pub const COM1_IRQ: u32 = 4;
/// The debug-exit port: a write ends the run with that status byte.
pub const DEBUG_EXIT_PORT: u64 = 0xf4;
/// POST diagnostic port: remembers the last code written.
pub const POST_PORT: u64 = 0x80;
/// The scratch device on the port bus (16 ports).
pub const PIO_SCRATCH_BASE: u64 = 0x700;
/// The scratch device on the MMIO bus (one page).
pub const MMIO_SCRATCH_BASE: u64 = MMIO_START;
/// Size of the scratch device's window, on either bus.
pub const SCRATCH_PIO_LEN: u64 = 0x10;
/// Size of the MMIO scratch device's window.
pub const SCRATCH_MMIO_LEN: u64 = 0x1000;
/// The IB700 watchdog (with `--watchdog-action`), where QEMU's `-device
/// ib700` puts it: stop at 0x441, start or refresh at 0x443.
pub const IB700_BASE: u64 = 0x441;
/// Ports of the IB700 watchdog (0x441-0x444).
pub const IB700_LEN: u64 = 4;

/// The i8042 keyboard controller's data and command/status ports
/// (0x60 and 0x64): its reset line ends the run (Linux's `reboot=k`).
pub const I8042_DATA_PORT: u64 = 0x60;
/// Port distance from the i8042's data port to its command port.
pub const I8042_PORT_SPAN: u64 = 5;

/// Where a PC BIOS keeps its dummy interrupt handler, an `iret` (F000:FF53):
/// every real-mode IVT vector of a Multiboot boot points there, as after a
/// BIOS, so an interrupt taken in real mode returns instead of running zeros.
pub const BIOS_IRET: u64 = 0xf_ff53;

/// QEMU's `pc-testdev` IRQ ports: 0x2000 + n drives GSI n.
pub const TESTDEV_IRQ_BASE: u64 = 0x2000;

/// A range of guest memory the VMM writes at boot, which a kernel's
/// segments must not overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// What the VMM keeps there, for messages.
    pub name: &'static str,
    pub start: u64,
    pub len: u64,
}

impl Region {
    /// True if `[start, start + len)` and this region share a byte.
    pub fn overlaps(&self, start: u64, len: u64) -> bool {
        len > 0 && start < self.start.saturating_add(self.len) && self.start < start.saturating_add(len)
    }
}

/// The GDT.
pub const GDT_REGION: Region = Region { name: "GDT", start: GDT_START, len: 0x20 };
/// The PVH start info, memory map, module list and command line.
pub const PVH_REGION: Region = Region { name: "PVH start info", start: PVH_INFO_START, len: 0x2000 };
/// The Multiboot information and everything it points to.
pub const MULTIBOOT_REGION: Region = Region {
    name: "Multiboot information",
    start: MULTIBOOT_INFO_START,
    len: MULTIBOOT_INFO_END - MULTIBOOT_INFO_START,
};
/// The Linux zero page.
pub const ZERO_PAGE_REGION: Region = Region { name: "Linux zero page", start: ZERO_PAGE_START, len: 0x1000 };
/// The Linux command line.
pub const LINUX_CMDLINE_REGION: Region =
    Region { name: "Linux command line", start: LINUX_CMDLINE_START, len: LINUX_CMDLINE_MAX };
/// The identity page tables of a long-mode entry.
pub const PAGE_TABLE_REGION: Region =
    Region { name: "page tables", start: PML4_START, len: PD_START + IDENTITY_MAP_GIB * 0x1000 - PML4_START };
/// The MP table, room for [`super::mptable::MAX_CPUS`] CPUs.
pub const MPTABLE_REGION: Region = Region { name: "MP table", start: MPTABLE_START, len: 0x2000 };
/// The boot stack's page.
pub const BOOT_STACK_REGION: Region = Region { name: "boot stack", start: BOOT_STACK_PAGE, len: 0x1000 };

/// Selector of the 64-bit code segment in the VMM-built GDT.
pub const CODE64_SELECTOR: u16 = 0x08;
/// Selector of the 32-bit code segment.
pub const CODE32_SELECTOR: u16 = 0x10;
/// Selector of the flat data segment.
pub const DATA_SELECTOR: u16 = 0x18;
