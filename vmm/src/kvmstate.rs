//! KVM state out of a running VM and into a new one: every vCPU's
//! registers, FPU and XSAVE area, XCRs, MSRs, LAPIC, events, MP state and
//! debug registers, and the VM's in-kernel PIC, IOAPIC, PIT and clock.
//! The ioctls of snapshots live here; the data types in [`crate::snapshot`].
//!
//! A vCPU's state is only consistent after the run loop has re-entered
//! `KVM_RUN` with `immediate_exit` set (KVM completes the last exit's I/O
//! then), so [`save_vcpu`] is called at that point, on the vCPU thread.

use kvm_bindings::{
    kvm_irqchip, kvm_msr_entry, kvm_xsave, Msrs, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_MAX_MSR_ENTRIES,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use crate::snapshot::state::{Chip, VcpuState, VmState};

/// Errors of reading or writing KVM state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("KVM call {call} failed while {doing} the machine state")]
    Kvm {
        call: &'static str,
        doing: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error(
        "KVM could not {doing} MSR {index:#x}: the snapshot was made on a CPU this KVM does not emulate the same way"
    )]
    Msr { doing: &'static str, index: u32 },
    #[error("this KVM's XSAVE area is {size} bytes (KVM_CAP_XSAVE2), larger than the 4096 bytes snapshots hold (AMX state is not supported)")]
    XsaveTooLarge { size: i32 },
    #[error("the snapshot has {count} MSRs or CPUID entries, more than KVM takes in one call ({max})")]
    TooMany { count: usize, max: usize },
}

fn saving(call: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> StateError {
    move |source| StateError::Kvm { call, doing: "saving", source }
}

fn restoring(call: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> StateError {
    move |source| StateError::Kvm { call, doing: "restoring", source }
}

/// Parts of the state a restore can be told to leave out: a negative
/// control for the tests, which must then see the guest go wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StatePart {
    Regs,
    Sregs,
    Fpu,
    Msrs,
    Lapic,
    Events,
    Irqchip,
    Pit,
    Clock,
    Devices,
    Memory,
}

/// What this KVM can save, found once before the guest runs (the vCPU
/// thread's filter does not allow the system ioctls that ask).
#[derive(Clone, Debug, Default)]
pub struct VcpuCaps {
    pub xsave: bool,
    pub xcrs: bool,
    /// An in-kernel LAPIC exists (`--timers`).
    pub lapic: bool,
    /// The MSRs of KVM_GET_MSR_INDEX_LIST that this vCPU can read.
    pub msrs: Vec<u32>,
}

impl VcpuCaps {
    /// Asks KVM what it can save for `vcpu`.
    ///
    /// # Errors
    ///
    /// A failed KVM call, or an XSAVE area larger than 4 KiB.
    pub fn probe(kvm: &Kvm, vm: &VmFd, vcpu: &VcpuFd, lapic: bool) -> Result<Self, StateError> {
        let xsave2 = vm.check_extension_int(Cap::Xsave2);
        if xsave2 > 4096 {
            return Err(StateError::XsaveTooLarge { size: xsave2 });
        }
        let list = kvm.get_msr_index_list().map_err(saving("KVM_GET_MSR_INDEX_LIST"))?;
        let readable = read_msrs(vcpu, list.as_slice())?;
        Ok(VcpuCaps {
            xsave: vm.check_extension(Cap::Xsave),
            xcrs: vm.check_extension(Cap::Xcrs),
            lapic,
            msrs: readable.iter().map(|&(i, _)| i).collect(),
        })
    }
}

/// Reads `indices`, skipping those KVM refuses: (index, value) of the others.
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<(u32, u64)>, StateError> {
    let mut values = Vec::with_capacity(indices.len());
    let mut start = 0;
    while start < indices.len() {
        let chunk = &indices[start..(start + KVM_MAX_MSR_ENTRIES).min(indices.len())];
        let entries: Vec<kvm_msr_entry> =
            chunk.iter().map(|&index| kvm_msr_entry { index, ..Default::default() }).collect();
        let mut msrs = Msrs::from_entries(&entries)
            .map_err(|_| StateError::TooMany { count: chunk.len(), max: KVM_MAX_MSR_ENTRIES })?;
        let n = vcpu.get_msrs(&mut msrs).map_err(saving("KVM_GET_MSRS"))?.min(chunk.len());
        values.extend(msrs.as_slice()[..n].iter().map(|e| (e.index, e.data)));
        start += n;
        // KVM stops at the first MSR it cannot read: skip that one.
        if n < chunk.len() {
            start += 1;
        }
    }
    Ok(values)
}

/// Reads one vCPU's state (the CPUID table and TSC frequency are filled by
/// the caller, which set them). Call it only after a re-entry with `immediate_exit`.
///
/// # Errors
///
/// A failed KVM call, naming it.
pub fn save_vcpu(vcpu: &VcpuFd, id: u32, caps: &VcpuCaps) -> Result<VcpuState, StateError> {
    let mp_state = vcpu.get_mp_state().map_err(saving("KVM_GET_MP_STATE"))?;
    let regs = vcpu.get_regs().map_err(saving("KVM_GET_REGS"))?;
    let sregs = vcpu.get_sregs().map_err(saving("KVM_GET_SREGS"))?;
    let fpu = vcpu.get_fpu().map_err(saving("KVM_GET_FPU"))?;
    let xsave = if caps.xsave {
        let x = vcpu.get_xsave().map_err(saving("KVM_GET_XSAVE"))?;
        Some(Box::new(x.region))
    } else {
        None
    };
    let xcrs = if caps.xcrs { Some(vcpu.get_xcrs().map_err(saving("KVM_GET_XCRS"))?) } else { None };
    let debugregs = vcpu.get_debug_regs().map_err(saving("KVM_GET_DEBUGREGS"))?;
    let lapic = if caps.lapic { Some(vcpu.get_lapic().map_err(saving("KVM_GET_LAPIC"))?) } else { None };
    let msrs = read_msrs(vcpu, &caps.msrs)?;
    // Last, as Firecracker does: reading the other state may queue events.
    let events = vcpu.get_vcpu_events().map_err(saving("KVM_GET_VCPU_EVENTS"))?;
    Ok(VcpuState {
        id,
        cpuid: Vec::new(),
        tsc_khz: None,
        regs,
        sregs,
        fpu,
        xsave,
        xcrs,
        msrs,
        lapic,
        events,
        mp_state,
        debugregs,
    })
}

/// Writes one vCPU's state into a fresh vCPU, in the order KVM needs
/// (CPUID first, events last), leaving out the parts in `omit`.
///
/// # Errors
///
/// A failed KVM call, naming it, or an MSR KVM refuses.
pub fn restore_vcpu(vcpu: &VcpuFd, s: &VcpuState, omit: &[StatePart]) -> Result<(), StateError> {
    let cpuid = kvm_bindings::CpuId::from_entries(&s.cpuid)
        .map_err(|_| StateError::TooMany { count: s.cpuid.len(), max: kvm_bindings::KVM_MAX_CPUID_ENTRIES })?;
    vcpu.set_cpuid2(&cpuid).map_err(restoring("KVM_SET_CPUID2"))?;
    if let Some(khz) = s.tsc_khz {
        if vcpu.get_tsc_khz().ok() != Some(khz) {
            vcpu.set_tsc_khz(khz).map_err(restoring("KVM_SET_TSC_KHZ"))?;
        }
    }
    load_vcpu_state(vcpu, s, omit)
}

/// Writes one vCPU's state but its CPUID table and TSC frequency, which a
/// vCPU that has run keeps: a rollback to a checkpoint of the same vCPU.
///
/// # Errors
///
/// A failed KVM call, naming it, or an MSR KVM refuses.
pub fn load_vcpu_state(vcpu: &VcpuFd, s: &VcpuState, omit: &[StatePart]) -> Result<(), StateError> {
    let keep = |p: StatePart| !omit.contains(&p);
    vcpu.set_mp_state(s.mp_state).map_err(restoring("KVM_SET_MP_STATE"))?;
    if keep(StatePart::Regs) {
        vcpu.set_regs(&s.regs).map_err(restoring("KVM_SET_REGS"))?;
    }
    if keep(StatePart::Sregs) {
        vcpu.set_sregs(&s.sregs).map_err(restoring("KVM_SET_SREGS"))?;
    }
    if keep(StatePart::Fpu) {
        vcpu.set_fpu(&s.fpu).map_err(restoring("KVM_SET_FPU"))?;
        if let Some(region) = &s.xsave {
            let x = kvm_xsave { region: **region, ..Default::default() };
            // SAFETY: `probe` refused any KVM whose XSAVE area (KVM_CAP_XSAVE2)
            // is larger than 4096 bytes, so the kernel reads no further than
            // the 4096-byte `region` of this `kvm_xsave`.
            unsafe { vcpu.set_xsave(&x) }.map_err(restoring("KVM_SET_XSAVE"))?;
        }
    }
    if let Some(xcrs) = &s.xcrs {
        vcpu.set_xcrs(xcrs).map_err(restoring("KVM_SET_XCRS"))?;
    }
    vcpu.set_debug_regs(&s.debugregs).map_err(restoring("KVM_SET_DEBUGREGS"))?;
    if let (Some(lapic), true) = (&s.lapic, keep(StatePart::Lapic)) {
        vcpu.set_lapic(lapic).map_err(restoring("KVM_SET_LAPIC"))?;
    }
    if keep(StatePart::Msrs) {
        write_msrs(vcpu, &s.msrs)?;
    }
    if keep(StatePart::Events) {
        vcpu.set_vcpu_events(&s.events).map_err(restoring("KVM_SET_VCPU_EVENTS"))?;
    }
    Ok(())
}

fn write_msrs(vcpu: &VcpuFd, msrs: &[(u32, u64)]) -> Result<(), StateError> {
    let mut start = 0;
    while start < msrs.len() {
        let chunk = &msrs[start..(start + KVM_MAX_MSR_ENTRIES).min(msrs.len())];
        let entries: Vec<kvm_msr_entry> =
            chunk.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
        let list = Msrs::from_entries(&entries)
            .map_err(|_| StateError::TooMany { count: chunk.len(), max: KVM_MAX_MSR_ENTRIES })?;
        let n = vcpu.set_msrs(&list).map_err(restoring("KVM_SET_MSRS"))?.min(chunk.len());
        start += n;
        if n < chunk.len() {
            // KVM refuses some writes that are no-ops here (an async-PF
            // vector without an in-kernel LAPIC): fine if the value is already it.
            let (index, data) = chunk[n];
            let current = read_msrs(vcpu, &[index])?;
            if current.first() != Some(&(index, data)) {
                return Err(StateError::Msr { doing: "restore", index });
            }
            start += 1;
        }
    }
    Ok(())
}

/// Reads the VM's in-kernel devices: irqchip and PIT with `timers`, and the clock.
///
/// # Errors
///
/// A failed KVM call, naming it.
pub fn save_vm(vm: &VmFd, timers: bool) -> Result<VmState, StateError> {
    let mut state = VmState { clock: Some(vm.get_clock().map_err(saving("KVM_GET_CLOCK"))?), ..Default::default() };
    if timers {
        let chip = |chip_id| -> Result<Chip, StateError> {
            let mut c = kvm_irqchip { chip_id, ..Default::default() };
            vm.get_irqchip(&mut c).map_err(saving("KVM_GET_IRQCHIP"))?;
            Ok(Chip(c))
        };
        state.irqchip =
            Some([chip(KVM_IRQCHIP_PIC_MASTER)?, chip(KVM_IRQCHIP_PIC_MASTER + 1)?, chip(KVM_IRQCHIP_IOAPIC)?]);
        state.pit = Some(vm.get_pit2().map_err(saving("KVM_GET_PIT2"))?);
    }
    Ok(state)
}

/// Writes the VM's in-kernel devices, leaving out the parts in `omit`.
///
/// # Errors
///
/// A failed KVM call, naming it.
pub fn restore_vm(vm: &VmFd, s: &VmState, omit: &[StatePart]) -> Result<(), StateError> {
    let keep = |p: StatePart| !omit.contains(&p);
    if let (Some(pit), true) = (&s.pit, keep(StatePart::Pit)) {
        vm.set_pit2(pit).map_err(restoring("KVM_SET_PIT2"))?;
    }
    if let (Some(clock), true) = (&s.clock, keep(StatePart::Clock)) {
        // The exact value, not adjusted by the time that passed (no KVM_CLOCK_REALTIME).
        let clock = kvm_bindings::kvm_clock_data { clock: clock.clock, ..Default::default() };
        vm.set_clock(&clock).map_err(restoring("KVM_SET_CLOCK"))?;
    }
    if let (Some(chips), true) = (&s.irqchip, keep(StatePart::Irqchip)) {
        for c in chips {
            vm.set_irqchip(&c.0).map_err(restoring("KVM_SET_IRQCHIP"))?;
        }
    }
    Ok(())
}
