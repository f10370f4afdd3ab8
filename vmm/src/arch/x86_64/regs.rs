//! Register state for entering a guest in real, protected or long mode:
//! pure functions that fill `kvm_sregs` and `kvm_regs`.

use kvm_bindings::{kvm_regs, kvm_sregs};

use super::gdt;
use super::layout::{GDT_START, PML4_START};

/// The CPU mode the guest starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMode {
    /// 16-bit real mode, DS = SS = 0, and CS = 0 for an entry below 64 KiB
    /// (else the segment that reaches it: see [`real_mode_cs_ip`]).
    Real,
    /// 32-bit protected mode, flat segments, paging off.
    Protected,
    /// 64-bit long mode on the identity page tables.
    Long,
}

/// Where and how the first instruction runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPoint {
    pub mode: EntryMode,
    pub rip: u64,
    pub rsp: u64,
    /// EBX at entry: the `hvm_start_info` address for PVH, the
    /// information block for Multiboot, else 0.
    pub rbx: u64,
    /// EAX at entry: Multiboot's boot loader magic, else 0.
    pub rax: u64,
    /// ESI/RSI at entry: the zero page for Linux, else 0.
    pub rsi: u64,
    /// Which GDT layout the segments come from.
    pub gdt: GdtLayout,
}

/// The GDT a protected- or long-mode entry runs on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GdtLayout {
    /// The VMM's: 64-bit code 0x08, 32-bit code 0x10, data 0x18.
    #[default]
    Vmm,
    /// The Linux boot protocol's: `__BOOT_CS` 0x10 (64-bit code), `__BOOT_DS` 0x18.
    LinuxBoot,
}

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always set.
const RFLAGS_RESERVED: u64 = 1 << 1;

/// The highest linear address 16-bit real mode reaches: FFFF:FFFF.
pub const REAL_MODE_MAX: u64 = 0x10_ffef;

/// The CS selector and IP that reach linear address `entry` in real mode:
/// CS = 0 up to 64 KiB (a boot sector's 0000:7c00), else the segment of
/// the entry's paragraph (FFFF above 1 MiB). `None` past [`REAL_MODE_MAX`].
pub fn real_mode_cs_ip(entry: u64) -> Option<(u16, u64)> {
    if entry <= 0xffff {
        return Some((0, entry));
    }
    if entry > REAL_MODE_MAX {
        return None;
    }
    let selector = (entry >> 4).min(0xffff);
    Some((selector as u16, entry - (selector << 4)))
}

/// Adjusts the vCPU's reset-state `sregs` for `entry`'s mode.
pub fn set_entry_sregs(sregs: &mut kvm_sregs, entry: &EntryPoint) {
    let mode = entry.mode;
    match mode {
        EntryMode::Real => {
            for seg in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.fs, &mut sregs.gs, &mut sregs.ss] {
                seg.selector = 0;
                seg.base = 0;
            }
            // The loader refuses entries real mode cannot reach.
            let (cs, _) = real_mode_cs_ip(entry.rip).unwrap_or((0, 0));
            sregs.cs.selector = cs;
            sregs.cs.base = u64::from(cs) << 4;
            sregs.cr0 &= !(CR0_PE | CR0_PG);
        }
        EntryMode::Protected | EntryMode::Long => {
            sregs.gdt.base = GDT_START;
            sregs.gdt.limit = (gdt::GDT.len() * 8 - 1) as u16;
            let (code, data) = match (mode, entry.gdt) {
                (EntryMode::Long, GdtLayout::LinuxBoot) => gdt::linux_boot_segments(),
                (EntryMode::Long, GdtLayout::Vmm) => gdt::long_mode_segments(),
                _ => gdt::protected_mode_segments(),
            };
            sregs.cs = code;
            sregs.ds = data;
            sregs.es = data;
            sregs.fs = data;
            sregs.gs = data;
            sregs.ss = data;
            sregs.cr0 |= CR0_PE;
            if mode == EntryMode::Long {
                sregs.cr3 = PML4_START;
                sregs.cr4 |= CR4_PAE;
                sregs.efer |= EFER_LME | EFER_LMA;
                sregs.cr0 |= CR0_PG;
            } else {
                sregs.cr0 &= !CR0_PG;
                sregs.efer &= !(EFER_LME | EFER_LMA);
            }
        }
    }
}

/// General-purpose registers at entry (in real mode, RIP is the offset in CS).
pub fn entry_regs(entry: &EntryPoint) -> kvm_regs {
    let rip = match entry.mode {
        EntryMode::Real => real_mode_cs_ip(entry.rip).map_or(entry.rip, |(_, ip)| ip),
        EntryMode::Protected | EntryMode::Long => entry.rip,
    };
    kvm_regs {
        rip,
        rsp: entry.rsp,
        rbp: entry.rsp,
        rbx: entry.rbx,
        rax: entry.rax,
        rsi: entry.rsi,
        rflags: RFLAGS_RESERVED,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mode: EntryMode, rip: u64) -> EntryPoint {
        EntryPoint { mode, rip, rsp: 0x8_0000, rbx: 0, rax: 0, rsi: 0, gdt: GdtLayout::Vmm }
    }

    #[test]
    fn long_mode_turns_on_paging_and_lma() {
        let mut s = kvm_sregs::default();
        set_entry_sregs(&mut s, &at(EntryMode::Long, 0x10_0000));
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(s.cr3, PML4_START);
        assert_ne!(s.cr4 & CR4_PAE, 0);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((s.cs.selector, s.cs.l), (0x08, 1));
        assert_eq!((s.gdt.base, s.gdt.limit), (GDT_START, 31));
    }

    #[test]
    fn the_linux_boot_protocol_gets_its_selectors() {
        let mut s = kvm_sregs::default();
        set_entry_sregs(&mut s, &EntryPoint { gdt: GdtLayout::LinuxBoot, ..at(EntryMode::Long, 0x100_0200) });
        assert_eq!((s.cs.selector, s.cs.l, s.ds.selector, s.ss.selector), (0x10, 1, 0x18, 0x18));
        assert_ne!(s.efer & EFER_LMA, 0);
    }

    #[test]
    fn protected_mode_has_no_paging() {
        let mut s = kvm_sregs { cr0: CR0_PG, efer: EFER_LME, ..Default::default() };
        set_entry_sregs(&mut s, &at(EntryMode::Protected, 0x10_0000));
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!(s.efer, 0);
        assert_eq!((s.cs.selector, s.cs.db, s.cs.l), (0x10, 1, 0));
        assert_eq!(s.ss.selector, 0x18);
    }

    #[test]
    fn real_mode_zeroes_the_segments() {
        let mut s = kvm_sregs::default();
        s.cs.base = 0xffff_0000;
        s.cs.selector = 0xf000;
        s.cr0 = CR0_PE;
        set_entry_sregs(&mut s, &at(EntryMode::Real, 0x7c00));
        assert_eq!((s.cs.base, s.cs.selector, s.cr0 & CR0_PE), (0, 0, 0));
        assert_eq!(entry_regs(&at(EntryMode::Real, 0x7c00)).rip, 0x7c00);
    }

    #[test]
    fn real_mode_entries_past_64k_get_the_segment_that_reaches_them() {
        assert_eq!(real_mode_cs_ip(0xffff), Some((0, 0xffff)));
        assert_eq!(real_mode_cs_ip(0x1_2345), Some((0x1234, 5)));
        assert_eq!(real_mode_cs_ip(0xf_fff0), Some((0xffff, 0)));
        assert_eq!(real_mode_cs_ip(0x10_0000), Some((0xffff, 0x10)));
        assert_eq!(real_mode_cs_ip(REAL_MODE_MAX), Some((0xffff, 0xffff)));
        assert_eq!(real_mode_cs_ip(REAL_MODE_MAX + 1), None);
        let mut s = kvm_sregs::default();
        let entry = at(EntryMode::Real, 0x2_0007);
        set_entry_sregs(&mut s, &entry);
        assert_eq!((s.cs.selector, s.cs.base, s.ds.base, s.ss.base), (0x2000, 0x2_0000, 0, 0));
        assert_eq!(entry_regs(&entry).rip, 7);
    }

    #[test]
    fn regs_carry_entry_stack_and_start_info() {
        let point = EntryPoint { rbx: 0x1000, rax: 7, rsi: 9, ..at(EntryMode::Protected, 0x10_0000) };
        let r = entry_regs(&point);
        assert_eq!((r.rip, r.rsp, r.rbx, r.rflags), (0x10_0000, 0x8_0000, 0x1000, 2));
        assert_eq!((r.rax, r.rsi), (7, 9));
    }
}

/// Offsets of the local APIC's LVT LINT0 and LINT1 registers.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

fn lapic_reg(lapic: &kvm_bindings::kvm_lapic_state, offset: usize) -> u32 {
    u32::from_le_bytes([0, 1, 2, 3].map(|i| lapic.regs[offset + i] as u8))
}

fn set_lapic_reg(lapic: &mut kvm_bindings::kvm_lapic_state, offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().into_iter().enumerate() {
        lapic.regs[offset + i] = b as _;
    }
}

/// Routes the 8259 PIC through the local APIC as a PC does: LINT0 in
/// ExtINT mode, LINT1 as NMI. Without this an enabled LAPIC drops PIC
/// interrupts and the guest never sees its timer.
pub fn route_legacy_interrupts(lapic: &mut kvm_bindings::kvm_lapic_state) {
    let with_mode = |reg: u32, mode: u32| (reg & !0x0001_0700) | (mode << 8);
    let lvt0 = lapic_reg(lapic, APIC_LVT0);
    set_lapic_reg(lapic, APIC_LVT0, with_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic_reg(lapic, APIC_LVT1);
    set_lapic_reg(lapic, APIC_LVT1, with_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod lapic_tests {
    use super::*;

    #[test]
    fn lint0_becomes_extint_and_unmasked() {
        let mut lapic = kvm_bindings::kvm_lapic_state::default();
        set_lapic_reg(&mut lapic, APIC_LVT0, 0x0001_0000); // masked at reset
        route_legacy_interrupts(&mut lapic);
        assert_eq!(lapic_reg(&lapic, APIC_LVT0), 0x700);
        assert_eq!(lapic_reg(&lapic, APIC_LVT1), 0x400);
    }
}
