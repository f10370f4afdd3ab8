//! What a snapshot holds: the machine's options, every vCPU's state, the
//! in-kernel devices, the device models and the memory map. Plain data,
//! shared by the state file ([`super::format`]) and the migration stream.

use std::fmt::{self, Write as _};

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state, kvm_mp_state,
    kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
};

use crate::arch::x86_64::layout::MMIO_START;
use crate::bus::Placement;
use crate::devices::DeviceState;

/// Most vCPUs a snapshot can hold.
pub const MAX_VCPUS: usize = 254;
/// 32-bit words of the legacy 4 KiB XSAVE area (`struct kvm_xsave`).
pub const XSAVE_WORDS: usize = 1024;
/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;

/// A whole machine at one instant.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub machine: Machine,
    /// One per vCPU, by id.
    pub vcpus: Vec<VcpuState>,
    pub vm: VmState,
    pub devices: Vec<DeviceRecord>,
    pub memory: MemoryLayout,
}

/// The options a snapshot was made with; a restore must match them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Guest RAM in MiB (`--mem`).
    pub ram_mib: u64,
    /// In-kernel irqchip and PIT (`--timers`).
    pub timers: bool,
    /// Number of vCPUs.
    pub vcpus: u32,
}

impl Machine {
    /// Guest RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.ram_mib << 20
    }
    /// Guest RAM in pages.
    pub fn ram_pages(&self) -> u64 {
        self.ram_bytes() / PAGE_SIZE
    }
}

/// One vCPU, as KVM reports it after a re-entry with `immediate_exit` set.
#[derive(Clone, Debug)]
pub struct VcpuState {
    pub id: u32,
    /// The CPUID table the guest sees.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub tsc_khz: Option<u32>,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub fpu: kvm_fpu,
    /// The XSAVE area, where KVM has KVM_CAP_XSAVE.
    pub xsave: Option<Box<[u32; XSAVE_WORDS]>>,
    pub xcrs: Option<kvm_xcrs>,
    /// (index, value) of every MSR of KVM_GET_MSR_INDEX_LIST that KVM could read.
    pub msrs: Vec<(u32, u64)>,
    /// The in-kernel LAPIC (with `--timers` only).
    pub lapic: Option<kvm_lapic_state>,
    pub events: kvm_vcpu_events,
    pub mp_state: kvm_mp_state,
    pub debugregs: kvm_debugregs,
}

/// One chip of the in-kernel irqchip (`kvm_irqchip` has no `Debug`).
#[derive(Clone, Copy)]
pub struct Chip(pub kvm_irqchip);

impl fmt::Debug for Chip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Chip({})", self.0.chip_id)
    }
}

/// KVM's VM-wide devices.
#[derive(Clone, Debug, Default)]
pub struct VmState {
    /// PIC master, PIC slave, IOAPIC (chip ids 0, 1, 2), with `--timers`.
    pub irqchip: Option<[Chip; 3]>,
    /// The PIT, with `--timers`.
    pub pit: Option<kvm_pit_state2>,
    /// The KVM clock.
    pub clock: Option<kvm_clock_data>,
}

/// A device model: where it sits and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    pub placement: Placement,
    pub state: DeviceState,
}

/// Which pages the memory file holds. Pages outside every range are zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryLayout {
    /// Binds the state file to its memory file (the same id is in both).
    pub id: u64,
    /// Sorted, disjoint runs of pages.
    pub ranges: Vec<PageRange>,
}

/// A run of pages in the memory file, with the CRC-32C of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRange {
    pub first: u64,
    pub count: u64,
    pub crc: u32,
}

impl MemoryLayout {
    /// Pages the memory file holds.
    pub fn pages(&self) -> u64 {
        self.ranges.iter().map(|r| r.count).sum()
    }
}

impl Snapshot {
    /// Checks what the format alone cannot: sizes in range, vCPU ids, the
    /// parts `--timers` implies, memory ranges inside RAM, in order.
    ///
    /// # Errors
    ///
    /// A sentence naming the contradiction.
    pub fn check_consistent(&self) -> Result<(), String> {
        let m = &self.machine;
        if m.ram_mib == 0 || m.ram_mib > MMIO_START >> 20 {
            return Err(format!("{} MiB of RAM is outside 1 to {} MiB", m.ram_mib, MMIO_START >> 20));
        }
        if m.vcpus as usize != self.vcpus.len() || self.vcpus.is_empty() || self.vcpus.len() > MAX_VCPUS {
            return Err(format!(
                "the machine has {} vCPUs but the snapshot holds {} vcpu sections",
                m.vcpus,
                self.vcpus.len()
            ));
        }
        for (i, v) in self.vcpus.iter().enumerate() {
            if v.id as usize != i {
                return Err(format!("vcpu section {i} holds vCPU {}: the ids must be 0, 1, 2, ... in order", v.id));
            }
            if v.lapic.is_some() != m.timers {
                return Err(format!(
                    "vCPU {i} {} LAPIC state, but the machine was made {} --timers",
                    has(v.lapic.is_some()),
                    with(m.timers)
                ));
            }
        }
        let chips = self.vm.irqchip.as_ref().map(|c| [c[0].0.chip_id, c[1].0.chip_id, c[2].0.chip_id]);
        if chips.is_some_and(|ids| ids != [0, 1, 2]) {
            return Err(format!("the irqchip chips are {chips:?}, not the PIC master, PIC slave and IOAPIC (0, 1, 2)"));
        }
        if self.vm.irqchip.is_some() != m.timers || self.vm.pit.is_some() != m.timers {
            return Err(format!(
                "the vm section {} irqchip state and {} PIT state, but the machine was made {} --timers",
                has(self.vm.irqchip.is_some()),
                has(self.vm.pit.is_some()),
                with(m.timers)
            ));
        }
        let mut next = 0u64;
        for r in &self.memory.ranges {
            let end = r.first.saturating_add(r.count);
            if r.count == 0 || r.first < next || end > m.ram_pages() {
                return Err(format!(
                    "memory range of {} pages at page {:#x} is empty, out of order or past the {} pages of RAM",
                    r.count,
                    r.first,
                    m.ram_pages()
                ));
            }
            next = end;
        }
        Ok(())
    }

    /// A human-readable account of what the snapshot holds (`vmm snapshot-info`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(s, "format: virtlab snapshot version {}", super::format::VERSION);
        let _ = writeln!(s, "machine: {} MiB RAM, {} vCPU(s), {} --timers", m.ram_mib, m.vcpus, with(m.timers));
        for v in &self.vcpus {
            let r = &v.regs;
            let mode = crate::trace::CpuView::new(&v.regs, &v.sregs).mode_name();
            let _ = writeln!(
                s,
                "vcpu {}: rip={:#x} rsp={:#x} rflags={:#x} ({mode}), cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
                v.id, r.rip, r.rsp, r.rflags, v.sregs.cr0, v.sregs.cr3, v.sregs.cr4, v.sregs.efer
            );
            let _ = writeln!(
                s,
                "  {} CPUID entries, {} MSRs, XSAVE {}, XCRs {}, LAPIC {}, mp_state {}, TSC {}",
                v.cpuid.len(),
                v.msrs.len(),
                yes(v.xsave.is_some()),
                yes(v.xcrs.is_some()),
                yes(v.lapic.is_some()),
                v.mp_state.mp_state,
                v.tsc_khz.map_or("unknown".to_string(), |k| format!("{k} kHz"))
            );
        }
        let vm = &self.vm;
        let _ = writeln!(
            s,
            "vm: irqchip {}, PIT {}, KVM clock {}",
            yes(vm.irqchip.is_some()),
            yes(vm.pit.is_some()),
            vm.clock.map_or("no".to_string(), |c| format!("{} ns", c.clock))
        );
        for d in &self.devices {
            let p = &d.placement;
            let _ = writeln!(
                s,
                "device {} at {} {:#x}+{:#x}: {}",
                p.name,
                p.bus.name(),
                p.base,
                p.len,
                describe_device(&d.state)
            );
        }
        let mem = &self.memory;
        let _ = writeln!(
            s,
            "memory: {} of {} pages in {} range(s) ({} KiB of {} MiB), id {:#018x}",
            mem.pages(),
            m.ram_pages(),
            mem.ranges.len(),
            mem.pages() * PAGE_SIZE / 1024,
            m.ram_mib,
            mem.id
        );
        s
    }
}

fn describe_device(state: &DeviceState) -> String {
    match state {
        DeviceState::Serial(u) => format!(
            "IER={:#04x} LCR={:#04x} MCR={:#04x} divisor={}, {} byte(s) in the FIFO, {} pending",
            u.ier,
            u.lcr,
            u.mcr,
            u.divisor,
            u.rx.len(),
            u.pending.len()
        ),
        DeviceState::DebugExit => "no state".to_string(),
        DeviceState::PostCode { last } => format!("last code {last:#04x}"),
        DeviceState::Scratch { value } => format!("register {value:#x}"),
        DeviceState::I8042 | DeviceState::TestDevIrq => "no state".to_string(),
        DeviceState::Ib700 { remaining_ns: Some(ns), timeout_s } => {
            format!("running, {:.3} s left of a {timeout_s} s timeout", *ns as f64 / 1e9)
        }
        DeviceState::Ib700 { remaining_ns: None, timeout_s } => format!("stopped (last timeout {timeout_s} s)"),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn has(b: bool) -> &'static str {
    if b {
        "holds"
    } else {
        "has no"
    }
}

fn with(b: bool) -> &'static str {
    if b {
        "with"
    } else {
        "without"
    }
}
