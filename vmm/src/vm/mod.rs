//! The VM: creates KVM objects (one vCPU, or several with `--vcpus`),
//! lays out guest memory, loads the image, sets the entry registers and
//! the CPUID tables, wires the devices to the buses; [`Vm::run`] runs the
//! vCPUs, handing every exit to [`crate::vcpu::handle_exit`].

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use kvm_bindings::{kvm_cpuid_entry2, kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

pub use crate::error::{Diagnosis, ExitCode, VmError};
pub use run::{RunOptions, RunReport};

mod run;

use crate::arch::x86_64::layout::*;
use crate::arch::x86_64::regs::{self, EntryMode};
use crate::devices::pc::TESTDEV_IRQ_LINES;
use crate::devices::{
    spawn_input, DebugExit, Ib700, IrqLine, PostCode, Scratch, Serial, TestDevIrq, WatchdogTimer, I8042,
};
use crate::kvmstate::{self, StatePart};
use crate::memory::{self, GuestMemoryMmap, PageSet};
use crate::runloop;
use crate::snapshot::state::{Machine, Snapshot};
use crate::vcpu::Buses;

/// The IB700 watchdog's name on the bus (a snapshot that has it gets it back).
pub const IB700_NAME: &str = "ib700";

/// The hypervisor signature the guest reads from CPUID leaf 0x40000000.
pub const HYPERVISOR_SIGNATURE: &[u8; 12] = b"VirtLabVMM\0\0";

/// The image to boot.
#[derive(Clone, Copy, Debug)]
pub enum Image<'a> {
    /// A flat binary copied to `load` and entered at `entry` in `mode`.
    Flat { bytes: &'a [u8], mode: EntryMode, load: u64, entry: u64 },
    /// An ELF: PVH note, or ELF64 entry.
    Elf(&'a [u8]),
    /// A kernel file, booted by the protocol it speaks as QEMU's `-kernel`
    /// would ([`crate::boot::detect`]): Linux, Multiboot or ELF/PVH.
    Kernel(&'a [u8]),
}

/// Machine configuration.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Create KVM's in-kernel irqchip (PIC, IOAPIC, LAPIC) and PIT.
    pub timers: bool,
    /// The kernel's command line (PVH, Multiboot, Linux).
    pub cmdline: String,
    /// Initrd, kernel name, CPUID mask.
    pub boot: crate::boot::BootOptions,
    /// vCPUs (`--vcpus`); more than one needs the in-kernel irqchip, which
    /// is then created whatever `timers` says.
    pub vcpus: u32,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            mem_mib: DEFAULT_MEM_MIB,
            timers: false,
            cmdline: String::new(),
            boot: crate::boot::BootOptions::default(),
            vcpus: 1,
        }
    }
}

fn kvm_err(call: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { call, source }
}

/// Raises an interrupt line of the in-kernel irqchip (an edge: high, low).
struct KvmIrq {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl IrqLine for KvmIrq {
    fn trigger(&self) {
        // A failed KVM_IRQ_LINE loses one interrupt; the guest's driver polls LSR too.
        let _ = self.vm.set_irq_line(self.gsi, true);
        let _ = self.vm.set_irq_line(self.gsi, false);
    }
}

/// Holds the in-kernel irqchip's lines high or low (`pc-testdev`).
struct KvmIrqLevels {
    vm: Arc<VmFd>,
}

impl crate::devices::IrqLevels for KvmIrqLevels {
    fn set(&self, gsi: u32, level: bool) {
        // A failed KVM_IRQ_LINE loses the level change; the test that asked for it then fails visibly.
        let _ = self.vm.set_irq_line(gsi, level);
    }
}

/// Where the guest's serial port goes: output, and optionally input.
pub struct SerialIo {
    pub out: Box<dyn Write + Send>,
    pub input: Option<Box<dyn std::io::Read + Send>>,
}

impl fmt::Debug for SerialIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialIo").field("input", &self.input.is_some()).finish_non_exhaustive()
    }
}

/// A VM with its vCPUs, ready to run.
pub struct Vm {
    kvm: Kvm,
    vm: Arc<VmFd>,
    /// vCPU 0, the bootstrap processor.
    vcpu: VcpuFd,
    /// vCPUs 1.., the application processors (waiting for a SIPI).
    aps: Vec<VcpuFd>,
    mem: GuestMemoryMmap,
    buses: Buses,
    config: VmConfig,
    /// The CPUID table the vCPU was given (a snapshot carries it).
    cpuid: Vec<kvm_cpuid_entry2>,
    tsc_khz: Option<u32>,
    /// Pages ever written, not counting the dirty log KVM still holds;
    /// `Some` once dirty logging is on.
    written: Option<PageSet>,
    dirty_logging: bool,
    /// What the boot placed where (empty for a restored VM).
    boot_report: crate::boot::BootReport,
    /// The IB700's timer, once the watchdog is on the bus.
    watchdog: Option<Arc<WatchdogTimer>>,
}

impl fmt::Debug for Vm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vm").field("buses", &self.buses).finish_non_exhaustive()
    }
}

/// How to fix a failure to open /dev/kvm with this errno.
pub fn kvm_open_hint(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => "the device does not exist: load the kvm module (modprobe kvm_intel or kvm_amd) or enable virtualization for this machine",
        libc::EACCES | libc::EPERM => "permission denied: add yourself to the kvm group (sudo usermod -aG kvm $USER, then log in again) or run as root",
        _ => "KVM is not usable on this machine",
    }
}

/// Opens /dev/kvm, explaining how to fix the usual failures.
pub fn open_kvm() -> Result<Kvm, VmError> {
    Kvm::new().map_err(|source| VmError::NoKvm { hint: kvm_open_hint(source.errno()), source })
}

impl Vm {
    /// Builds the VM: memory, image, boot structures, registers, devices.
    pub fn new(config: &VmConfig, image: &Image<'_>, serial_out: Box<dyn Write + Send>) -> Result<Self, VmError> {
        Self::with_serial_input(config, image, serial_out, None)
    }

    /// The same, with a source of bytes the guest receives on COM1.
    pub fn with_serial_input(
        config: &VmConfig,
        image: &Image<'_>,
        serial_out: Box<dyn Write + Send>,
        serial_in: Option<Box<dyn std::io::Read + Send>>,
    ) -> Result<Self, VmError> {
        Self::boot(config, image, SerialIo { out: serial_out, input: serial_in })
    }

    /// Boots `image`: the VM, the image in memory, the boot structures and
    /// the entry registers.
    ///
    /// # Errors
    ///
    /// A failed KVM call, a bad image, a device that cannot be placed.
    pub fn boot(config: &VmConfig, image: &Image<'_>, serial: SerialIo) -> Result<Self, VmError> {
        let mem = memory::create(config.mem_mib).map_err(VmError::Memory)?;
        let mut vm = Self::create(config, mem, serial)?;
        let booted = crate::boot::prepare(&vm.mem, image, config).map_err(VmError::Boot)?;
        let entry_point = booted.entry;
        vm.boot_report = booted.report;
        vm.boot_report.notes.extend(crate::smp::oversubscription_note(&vm.kvm, config.vcpus));

        let mut cpuid =
            vm.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        for e in cpuid.as_mut_slice().iter_mut().filter(|e| e.function == 0x4000_0000) {
            let word = |i: usize| u32::from_le_bytes([0, 1, 2, 3].map(|j| HYPERVISOR_SIGNATURE[i * 4 + j]));
            (e.ebx, e.ecx, e.edx) = (word(0), word(1), word(2));
        }
        crate::arch::x86_64::cpuid::apply_mask(cpuid.as_mut_slice(), &config.boot.cpuid_mask);
        vm.cpuid = crate::smp::cpuid_of(cpuid.as_slice(), 0, vm.vcpu_count() as u32);
        vm.set_cpuids()?;
        if vm.config.timers {
            let mut lapic = vm.vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
            regs::route_legacy_interrupts(&mut lapic);
            vm.vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))?;
            vm.write_mptable(image)?;
        }
        let mut sregs = vm.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        regs::set_entry_sregs(&mut sregs, &entry_point);
        vm.vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
        vm.vcpu.set_regs(&regs::entry_regs(&entry_point)).map_err(kvm_err("KVM_SET_REGS"))?;
        Ok(vm)
    }

    /// Gives every vCPU the CPUID table of [`Vm::boot`] with its own APIC id.
    fn set_cpuids(&self) -> Result<(), VmError> {
        let count = self.vcpu_count() as u32;
        for (id, vcpu) in std::iter::once(&self.vcpu).chain(&self.aps).enumerate() {
            let entries = crate::smp::cpuid_of(&self.cpuid, id as u32, count);
            let table = kvm_bindings::CpuId::from_entries(&entries).map_err(|_| {
                VmError::State(kvmstate::StateError::TooMany { count: entries.len(), max: KVM_MAX_CPUID_ENTRIES })
            })?;
            vcpu.set_cpuid2(&table).map_err(kvm_err("KVM_SET_CPUID2"))?;
        }
        Ok(())
    }

    /// Writes the MP table of the in-kernel irqchip's APICs, unless a flat
    /// image lies where it goes (then the boot notes say so).
    fn write_mptable(&mut self, image: &Image<'_>) -> Result<(), VmError> {
        if let Image::Flat { bytes, load, .. } = *image {
            if MPTABLE_REGION.overlaps(load, bytes.len() as u64) {
                let note = format!("no MP table: the image at {load:#x} covers {MPTABLE_START:#x}");
                self.boot_report.notes.push(note);
                return Ok(());
            }
        }
        let placed = crate::smp::write_mptable(&self.mem, &self.cpuid, self.vcpu_count() as u32)?;
        self.boot_report.placed.push(placed);
        Ok(())
    }

    /// The vCPUs' TSC frequency in kHz, if KVM says.
    pub fn tsc_khz(&self) -> Option<u32> {
        self.tsc_khz
    }

    /// vCPUs of this VM.
    pub fn vcpu_count(&self) -> usize {
        1 + self.aps.len()
    }

    /// Restores `snapshot` into a new VM whose RAM is `mem` (the snapshot's
    /// memory file, mapped), leaving out the parts in `omit` (a test's
    /// negative control).
    ///
    /// # Errors
    ///
    /// A failed KVM call, a snapshot whose devices differ from this VMM's,
    /// state that KVM refuses.
    pub fn restore(
        snapshot: &Snapshot,
        mem: GuestMemoryMmap,
        serial: SerialIo,
        omit: &[StatePart],
    ) -> Result<Self, VmError> {
        let m = &snapshot.machine;
        let config = VmConfig { mem_mib: m.ram_mib, timers: m.timers, vcpus: m.vcpus, ..VmConfig::default() };
        let mut vm = Self::create(&config, mem, serial)?;
        vm.load_state(snapshot, omit)?;
        vm.written = Some(crate::snapshot::file::layout_pages(&snapshot.memory, snapshot.machine.ram_pages()));
        Ok(vm)
    }

    /// A VM with blank memory and the devices of `machine`, waiting for a
    /// migration's pages and then its state ([`Vm::load_state`]).
    ///
    /// # Errors
    ///
    /// A failed KVM call or memory set-up.
    pub fn blank(machine: &Machine, serial: SerialIo) -> Result<Self, VmError> {
        let config =
            VmConfig { mem_mib: machine.ram_mib, timers: machine.timers, vcpus: machine.vcpus, ..VmConfig::default() };
        let mem = memory::create(config.mem_mib).map_err(VmError::Memory)?;
        Self::create(&config, mem, serial)
    }

    /// The KVM objects, memory (registered before the irqchip: restoring
    /// state is then 4-8 ms faster here) and the devices.
    fn create(config: &VmConfig, mem: GuestMemoryMmap, serial: SerialIo) -> Result<Self, VmError> {
        let kvm = open_kvm()?;
        crate::smp::check_count(config.vcpus, crate::smp::max_vcpus(&kvm)).map_err(VmError::Smp)?;
        let config = &VmConfig { timers: config.timers || config.vcpus > 1, ..config.clone() };
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?);
        vm.set_tss_address(KVM_TSS_ADDRESS).map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        memory::register(&vm, &mem, false).map_err(VmError::Memory)?;
        if config.timers {
            vm.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
            let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
            vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        }
        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        // With the in-kernel LAPIC, KVM starts these in wait-for-SIPI (KVM_MP_STATE_UNINITIALIZED).
        let aps = (1..config.vcpus)
            .map(|id| vm.create_vcpu(u64::from(id)).map_err(kvm_err("KVM_CREATE_VCPU")))
            .collect::<Result<Vec<_>, _>>()?;
        let tsc_khz = vcpu.get_tsc_khz().ok();
        let buses = Self::devices(config, &vm, serial)?;
        Ok(Vm {
            kvm,
            vm,
            vcpu,
            aps,
            mem,
            buses,
            config: config.clone(),
            cpuid: Vec::new(),
            tsc_khz,
            written: None,
            dirty_logging: false,
            boot_report: crate::boot::BootReport::default(),
            watchdog: None,
        })
    }

    fn devices(config: &VmConfig, vm: &Arc<VmFd>, io: SerialIo) -> Result<Buses, VmError> {
        let mut serial = Serial::new(io.out);
        if let Some(input) = io.input {
            let input = spawn_input(input).map_err(|source| VmError::Thread { name: "serial input", source })?;
            serial = serial.with_input(input);
        }
        if config.timers {
            serial = serial.with_irq(Box::new(KvmIrq { vm: vm.clone(), gsi: COM1_IRQ }));
        }
        let mut buses = Buses::default();
        buses.pio.insert(COM1_BASE, 8, "uart", Box::new(serial)).map_err(VmError::Bus)?;
        buses.pio.insert(DEBUG_EXIT_PORT, 4, "debug-exit", Box::new(DebugExit)).map_err(VmError::Bus)?;
        buses.pio.insert(POST_PORT, 1, "post", Box::new(PostCode::default())).map_err(VmError::Bus)?;
        if config.timers {
            // The PC's reset line and QEMU's pc-testdev IRQ ports, for the kernels that expect them.
            buses.pio.insert(I8042_DATA_PORT, I8042_PORT_SPAN, "i8042", Box::new(I8042)).map_err(VmError::Bus)?;
            let lines = Box::new(TestDevIrq::new(Box::new(KvmIrqLevels { vm: vm.clone() })));
            buses.pio.insert(TESTDEV_IRQ_BASE, TESTDEV_IRQ_LINES, "pc-testdev", lines).map_err(VmError::Bus)?;
        }
        buses
            .pio
            .insert(PIO_SCRATCH_BASE, SCRATCH_PIO_LEN, "scratch", Box::new(Scratch::default()))
            .map_err(VmError::Bus)?;
        buses
            .mmio
            .insert(MMIO_SCRATCH_BASE, SCRATCH_MMIO_LEN, "scratch", Box::new(Scratch::default()))
            .map_err(VmError::Bus)?;
        Ok(buses)
    }

    /// Puts a snapshot's vCPU, in-kernel and device state into this VM.
    ///
    /// # Errors
    ///
    /// Devices that differ from this VMM's (named), more vCPUs than this
    /// VMM runs, state KVM refuses.
    pub fn load_state(&mut self, snapshot: &Snapshot, omit: &[StatePart]) -> Result<(), VmError> {
        if snapshot.vcpus.len() != self.vcpu_count() || snapshot.vcpus.is_empty() {
            let (theirs, ours) = (snapshot.vcpus.len(), self.vcpu_count());
            return Err(VmError::Incompatible(format!("it has {theirs} vCPU(s) and this VM {ours}")));
        }
        if self.watchdog.is_none() && snapshot.devices.iter().any(|d| d.placement.name == IB700_NAME) {
            self.add_watchdog()?;
        }
        let ours = runloop::save_devices(&mut self.buses);
        let theirs: Vec<_> = snapshot.devices.iter().map(|d| &d.placement).collect();
        if let Some(diff) = device_difference(&ours.iter().map(|d| &d.placement).collect::<Vec<_>>(), &theirs) {
            return Err(VmError::Incompatible(diff));
        }
        kvmstate::restore_vm(&self.vm, &snapshot.vm, omit).map_err(VmError::State)?;
        for (fd, vcpu) in std::iter::once(&self.vcpu).chain(&self.aps).zip(&snapshot.vcpus) {
            kvmstate::restore_vcpu(fd, vcpu, omit).map_err(VmError::State)?;
        }
        self.cpuid = snapshot.vcpus[0].cpuid.clone();
        self.tsc_khz = snapshot.vcpus[0].tsc_khz.or(self.tsc_khz);
        if !omit.contains(&StatePart::Devices) {
            let devices = snapshot.devices.iter();
            let buses = self.buses.pio.devices_mut().chain(self.buses.mmio.devices_mut());
            for ((_, _, name, device), record) in buses.zip(devices) {
                device.restore(&record.state).map_err(|e| VmError::Incompatible(format!("device {name}: {e}")))?;
            }
        }
        Ok(())
    }

    /// Puts the IB700 watchdog on the port bus (`--watchdog-action`) and
    /// returns its timer, which the controller watches.
    ///
    /// # Errors
    ///
    /// [`VmError::Bus`] if the ports are taken.
    pub fn add_watchdog(&mut self) -> Result<Arc<WatchdogTimer>, VmError> {
        if let Some(timer) = &self.watchdog {
            return Ok(timer.clone());
        }
        let timer = WatchdogTimer::new();
        let device = Box::new(Ib700::new(timer.clone()));
        self.buses.pio.insert(IB700_BASE, IB700_LEN, IB700_NAME, device).map_err(VmError::Bus)?;
        self.watchdog = Some(timer.clone());
        Ok(timer)
    }

    /// The IB700's timer, if the VM has the watchdog.
    pub fn watchdog(&self) -> Option<&Arc<WatchdogTimer>> {
        self.watchdog.as_ref()
    }

    /// Every part a run that drives the vCPU itself needs ([`crate::ft`]),
    /// with KVM's dirty log on.
    pub(crate) fn parts(&mut self) -> Result<crate::ft::VmParts<'_>, VmError> {
        self.track_writes()?;
        let machine = self.machine();
        let Vm { kvm, vm, vcpu, mem, buses, cpuid, tsc_khz, written, watchdog, .. } = self;
        let written = written.get_or_insert_with(|| PageSet::new(machine.ram_pages()));
        let (tsc_khz, watchdog) = (*tsc_khz, watchdog.clone());
        Ok(crate::ft::VmParts { kvm, vm, vcpu, mem, buses, machine, cpuid, tsc_khz, written, watchdog })
    }

    /// Marks pages as written (a migration's destination, for its own snapshots).
    pub fn set_written(&mut self, pages: PageSet) {
        self.written = Some(pages);
    }

    /// What the boot placed where, and its notes for the user.
    pub fn boot_report(&self) -> &crate::boot::BootReport {
        &self.boot_report
    }

    /// The VM's guest memory.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The machine's options, as a snapshot records them.
    pub fn machine(&self) -> Machine {
        Machine { ram_mib: self.config.mem_mib, timers: self.config.timers, vcpus: self.vcpu_count() as u32 }
    }

    /// Turns KVM's dirty log on; what was written before is what is resident now.
    fn track_writes(&mut self) -> Result<(), VmError> {
        if self.written.is_none() {
            self.written = Some(memory::resident(&self.mem).map_err(VmError::Memory)?);
        }
        if !self.dirty_logging {
            memory::register(&self.vm, &self.mem, true).map_err(VmError::Memory)?;
            self.dirty_logging = true;
        }
        Ok(())
    }
}

/// The first difference between this VMM's devices and a snapshot's.
fn device_difference(ours: &[&crate::bus::Placement], theirs: &[&crate::bus::Placement]) -> Option<String> {
    let show = |p: &crate::bus::Placement| format!("{} at {} {:#x}+{:#x}", p.name, p.bus.name(), p.base, p.len);
    for p in theirs {
        if !ours.contains(p) {
            return Some(format!("the snapshot has device {}, this VMM has no such device", show(p)));
        }
    }
    for p in ours {
        if !theirs.contains(p) {
            return Some(format!("this VMM has device {}, the snapshot has none", show(p)));
        }
    }
    (ours != theirs).then(|| "the snapshot lists the same devices in another order".to_string())
}
