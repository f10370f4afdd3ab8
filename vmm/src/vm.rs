//! The VM: creates KVM objects, lays out guest memory, loads the image,
//! sets the entry registers, wires the devices to the buses and runs the
//! vCPU, handing every exit to [`handle_exit`].

use std::fmt;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{
    kvm_pit_config, kvm_regs, kvm_sregs, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO, KVM_MAX_CPUID_ENTRIES,
    KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use sandbox::seccompiler::BpfProgram;

use crate::arch::x86_64::layout::*;
use crate::arch::x86_64::regs::{self, EntryMode, EntryPoint};
use crate::arch::x86_64::{gdt, paging, pvh};
use crate::bus::BusError;
use crate::devices::{spawn_input, DebugExit, IrqLine, PostCode, Scratch, Serial};
use crate::loader::{self, ImageEntry, LoaderError};
use crate::memory::{self, GuestMemoryMmap, MemoryError};
use crate::seccomp::{self, KvmFds, SeccompError};
use crate::stats::ExitStats;
use crate::trace::{self, CpuView, Instruction, TraceLine};
use crate::vcpu::{handle_exit, Buses, ExitKind, VcpuAction, VcpuError};
use crate::watchdog::Watchdog;

/// The hypervisor signature the guest reads from CPUID leaf 0x40000000.
pub const HYPERVISOR_SIGNATURE: &[u8; 12] = b"VirtLabVMM\0\0";
const RFLAGS_IF: u64 = 1 << 9;

/// Process exit statuses of the `vmm` binary when the VMM, not the guest,
/// ends the run. A guest's own status (debug-exit port) is passed through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ExitCode {
    /// Bad command line (clap's own code).
    Usage = 2,
    /// A KVM call or device set-up failed.
    Internal = 70,
    /// /dev/kvm is missing or not accessible.
    NoKvm = 71,
    /// The image is missing, empty, too large or a malformed ELF.
    BadImage = 72,
    /// The guest shut down: a triple fault.
    TripleFault = 73,
    /// KVM_EXIT_INTERNAL_ERROR: an emulation failure.
    EmulationFailure = 74,
    /// KVM_EXIT_FAIL_ENTRY: invalid guest state.
    FailedEntry = 75,
    /// The guest did not finish within `--timeout`.
    Timeout = 76,
    /// HLT with interrupts disabled and nothing to wake the vCPU.
    HaltedForever = 77,
    /// Any other exit the VMM does not handle (system events, ...).
    UnhandledExit = 78,
}

/// The image to boot.
#[derive(Clone, Copy, Debug)]
pub enum Image<'a> {
    /// A flat binary copied to `load` and entered at `entry` in `mode`.
    Flat { bytes: &'a [u8], mode: EntryMode, load: u64, entry: u64 },
    /// An ELF: PVH note, or ELF64 entry.
    Elf(&'a [u8]),
}

/// Machine configuration.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Guest RAM in MiB.
    pub mem_mib: u64,
    /// Create KVM's in-kernel irqchip (PIC, IOAPIC, LAPIC) and PIT.
    pub timers: bool,
    /// PVH command line.
    pub cmdline: String,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig { mem_mib: DEFAULT_MEM_MIB, timers: false, cmdline: String::new() }
    }
}

/// Registers, mode and instruction at the moment a run went wrong.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub mode: &'static str,
    pub instruction: Option<Instruction>,
    /// What KVM said beyond the exit reason.
    pub note: Option<String>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, s) = (&self.regs, &self.sregs);
        match &self.instruction {
            Some(i) => writeln!(f, "  at rip={:#x} ({}): {i}", r.rip, self.mode)?,
            None => writeln!(f, "  at rip={:#x} ({}): instruction not readable", r.rip, self.mode)?,
        }
        if let Some(note) = &self.note {
            writeln!(f, "  {note}")?;
        }
        writeln!(f, "  rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}", r.rax, r.rbx, r.rcx, r.rdx)?;
        writeln!(f, "  rsi={:#018x} rdi={:#018x} rsp={:#018x} rbp={:#018x}", r.rsi, r.rdi, r.rsp, r.rbp)?;
        writeln!(f, "  r8 ={:#018x} r9 ={:#018x} r10={:#018x} r11={:#018x}", r.r8, r.r9, r.r10, r.r11)?;
        writeln!(f, "  r12={:#018x} r13={:#018x} r14={:#018x} r15={:#018x}", r.r12, r.r13, r.r14, r.r15)?;
        writeln!(
            f,
            "  rflags={:#x} cs={:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            r.rflags, s.cs.selector, s.cr0, s.cr3, s.cr4, s.efer
        )?;
        write!(f, "  idt={:#x}+{:#x} gdt={:#x}+{:#x}", s.idt.base, s.idt.limit, s.gdt.base, s.gdt.limit)
    }
}

/// Errors of a VM's life.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm: {hint}")]
    NoKvm {
        hint: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("KVM call {call} failed")]
    Kvm {
        call: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error("guest memory set-up failed")]
    Memory(#[source] MemoryError),
    #[error("cannot load the guest image")]
    Loader(#[source] LoaderError),
    #[error("cannot place a device on the bus")]
    Bus(#[source] BusError),
    #[error("cannot sandbox the vCPU thread")]
    Seccomp(#[source] SeccompError),
    #[error("cannot start the {name} thread")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{error}\n{diagnosis}")]
    Guest { error: VcpuError, diagnosis: Box<Diagnosis> },
    #[error("the guest did not finish within {timeout:?}; the vCPU was kicked out of KVM_RUN\n{diagnosis}")]
    Timeout { timeout: Duration, diagnosis: Box<Diagnosis> },
    #[error("the guest executed HLT with interrupts disabled and nothing can wake it\n{diagnosis}")]
    HaltedForever { diagnosis: Box<Diagnosis> },
}

impl VmError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            VmError::NoKvm { .. } => ExitCode::NoKvm,
            VmError::Kvm { .. }
            | VmError::Memory(_)
            | VmError::Bus(_)
            | VmError::Seccomp(_)
            | VmError::Thread { .. } => ExitCode::Internal,
            VmError::Loader(_) => ExitCode::BadImage,
            VmError::Guest { error, .. } => match error {
                VcpuError::Shutdown => ExitCode::TripleFault,
                VcpuError::InternalError => ExitCode::EmulationFailure,
                VcpuError::FailEntry { .. } => ExitCode::FailedEntry,
                VcpuError::SystemEvent { .. } | VcpuError::Unexpected(_) => ExitCode::UnhandledExit,
            },
            VmError::Timeout { .. } => ExitCode::Timeout,
            VmError::HaltedForever { .. } => ExitCode::HaltedForever,
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

/// What one run returns.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The guest's debug-exit status.
    pub status: u8,
    /// Exits handled by the VMM.
    pub exits: u64,
    /// Filled when statistics were asked for.
    pub stats: Option<ExitStats>,
    /// Wall time of the run loop.
    pub wall: Duration,
}

/// Options of one run.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Where to write one line per exit.
    pub trace: Option<&'a mut (dyn Write + Send)>,
    /// Collect exit statistics.
    pub stats: bool,
    /// Kick the vCPU out and fail after this long.
    pub timeout: Option<Duration>,
    /// Run the vCPU on a thread of its own, under the seccomp filter of
    /// [`crate::seccomp`] from before the guest's first instruction.
    pub seccomp: bool,
}

impl fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("trace", &self.trace.is_some())
            .field("stats", &self.stats)
            .field("timeout", &self.timeout)
            .field("seccomp", &self.seccomp)
            .finish()
    }
}

/// A VM with one vCPU, ready to run.
pub struct Vm {
    _kvm: Kvm,
    vm: Arc<VmFd>,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
    buses: Buses,
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
        let kvm = open_kvm()?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?);
        vm.set_tss_address(KVM_TSS_ADDRESS).map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        if config.timers {
            vm.create_irq_chip().map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
            let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
            vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        }
        let mem = memory::create(config.mem_mib).map_err(VmError::Memory)?;
        memory::register(&vm, &mem).map_err(VmError::Memory)?;

        let entry = match *image {
            Image::Flat { bytes, mode, load, entry } => loader::load_flat(&mem, bytes, load, entry, mode),
            Image::Elf(bytes) => loader::load_elf(&mem, bytes),
        }
        .map_err(VmError::Loader)?;
        let entry_point = write_boot_structures(&mem, &entry, &config.cmdline).map_err(VmError::Memory)?;

        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        for e in cpuid.as_mut_slice().iter_mut().filter(|e| e.function == 0x4000_0000) {
            let word = |i: usize| u32::from_le_bytes([0, 1, 2, 3].map(|j| HYPERVISOR_SIGNATURE[i * 4 + j]));
            (e.ebx, e.ecx, e.edx) = (word(0), word(1), word(2));
        }
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
        if config.timers {
            let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
            regs::route_legacy_interrupts(&mut lapic);
            vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))?;
        }
        let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        regs::set_entry_sregs(&mut sregs, &entry_point);
        vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))?;
        vcpu.set_regs(&regs::entry_regs(&entry_point)).map_err(kvm_err("KVM_SET_REGS"))?;

        let mut serial = Serial::new(serial_out);
        if let Some(input) = serial_in {
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
        buses
            .pio
            .insert(PIO_SCRATCH_BASE, SCRATCH_PIO_LEN, "scratch", Box::new(Scratch::default()))
            .map_err(VmError::Bus)?;
        buses
            .mmio
            .insert(MMIO_SCRATCH_BASE, SCRATCH_MMIO_LEN, "scratch", Box::new(Scratch::default()))
            .map_err(VmError::Bus)?;

        Ok(Vm { _kvm: kvm, vm, vcpu, mem, buses })
    }

    /// The VM's guest memory.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    fn diagnose(&mut self, kind: ExitKind, note: Option<String>) -> Box<Diagnosis> {
        let regs = self.vcpu.get_regs().unwrap_or_default();
        let sregs = self.vcpu.get_sregs().unwrap_or_default();
        let view = CpuView::new(&regs, &sregs);
        let instruction = trace::trapping_instruction(&self.mem, &view, kind, None);
        Box::new(Diagnosis { regs, sregs, mode: view.mode_name(), instruction, note })
    }

    /// What KVM put in `kvm_run.internal` for an internal-error exit.
    fn internal_error_note(&mut self) -> Option<String> {
        let run = self.vcpu.get_kvm_run();
        if run.exit_reason != KVM_EXIT_INTERNAL_ERROR {
            return None;
        }
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so the kernel filled
        // the `internal` member of the union.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let meaning = match internal.suberror {
            1 => "emulation failure: KVM's instruction emulator could not emulate the instruction at RIP (on a nested, software-assisted KVM such as kvm_pvm this includes int n, int3, 32-bit iret and xgetbv; on hardware KVM, usually an MMIO access with an unusual instruction)",
            2 => "a second exception arrived while KVM was delivering one (simultaneous exceptions)",
            3 => "an exception or interrupt could not be delivered (bad IDT or stack)",
            4 => "the hardware reported an exit reason KVM does not know",
            _ => "unknown suberror",
        };
        let n = (internal.ndata as usize).min(internal.data.len());
        let data: Vec<String> = internal.data[..n].iter().map(|d| format!("{d:#x}")).collect();
        Some(format!("suberror {}: {meaning}; data [{}]", internal.suberror, data.join(", ")))
    }

    /// Bytes per element of the last port-I/O exit (KVM's `io.size`).
    fn io_size(&mut self) -> Option<u8> {
        let run = self.vcpu.get_kvm_run();
        if run.exit_reason != KVM_EXIT_IO {
            return None;
        }
        // SAFETY: the `io` member of the union is valid when exit_reason is KVM_EXIT_IO.
        Some(unsafe { run.__bindgen_anon_1.io.size })
    }

    /// Runs the guest until it writes the debug-exit port or fails. With
    /// `opts.seccomp`, the vCPU runs on a thread of its own that installs
    /// the vCPU filter before the guest's first instruction; the calling
    /// thread only waits for it, and stays free of the filter.
    ///
    /// # Errors
    ///
    /// A [`VmError`] for every way a run can fail: the guest's fatal exits
    /// (with a diagnosis), the timeout, HLT with nothing to wake the vCPU,
    /// a failed KVM call, a filter that cannot be installed.
    pub fn run(&mut self, opts: RunOptions<'_>) -> Result<RunReport, VmError> {
        if !opts.seccomp {
            return self.run_vcpu(opts, None);
        }
        // Compiled here, so that the vCPU thread only has to install it.
        let fds = KvmFds { vcpu: self.vcpu.as_raw_fd(), vm: self.vm.as_raw_fd() };
        let filter = seccomp::vcpu_filter(fds).map_err(VmError::Seccomp)?;
        std::thread::scope(|scope| {
            let vcpu = std::thread::Builder::new()
                .name("vcpu0".into())
                .spawn_scoped(scope, || self.run_vcpu(opts, Some(&filter)))
                .map_err(|source| VmError::Thread { name: "vCPU", source })?;
            vcpu.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// The run loop, on the vCPU thread: the watchdog (a thread started
    /// before the filter, so outside it), the filter, then KVM_RUN until the end.
    fn run_vcpu(&mut self, mut opts: RunOptions<'_>, filter: Option<&BpfProgram>) -> Result<RunReport, VmError> {
        let watchdog = match opts.timeout {
            Some(timeout) => {
                Some(Watchdog::start(timeout).map_err(|source| VmError::Thread { name: "watchdog", source })?)
            }
            None => None,
        };
        if let Some(filter) = filter {
            seccomp::apply(filter).map_err(VmError::Seccomp)?;
        }
        let start = Instant::now();
        let mut stats = opts.stats.then(ExitStats::default);
        let mut exits = 0u64;
        loop {
            if watchdog.as_ref().is_some_and(Watchdog::expired) {
                let timeout = opts.timeout.unwrap_or_default();
                return Err(VmError::Timeout { timeout, diagnosis: self.diagnose(ExitKind::Other, None) });
            }
            let entered = stats.as_ref().map(|_| Instant::now());
            let exit = match self.vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(source) => return Err(VmError::Kvm { call: "KVM_RUN", source }),
            };
            let exited = entered.map(|t| (t, Instant::now()));
            let handled = handle_exit(exit, &mut self.buses);
            exits += 1;
            if let (Some(s), Some((t0, t1))) = (stats.as_mut(), exited) {
                s.guest += t1 - t0;
                let kind = handled.as_ref().map_or_else(VcpuError::kind, |h| h.kind);
                let device = handled
                    .as_ref()
                    .ok()
                    .and_then(|h| h.access)
                    .map_or("-", |a| a.dispatch.device.unwrap_or("unclaimed"));
                s.record(kind, device, t1.elapsed());
            }
            if let Some(out) = opts.trace.as_deref_mut() {
                self.trace_exit(out, exits, start.elapsed(), &handled);
            }
            let handled = match handled {
                Ok(h) => h,
                Err(error) => {
                    let note = if error == VcpuError::InternalError { self.internal_error_note() } else { None };
                    let diagnosis = self.diagnose(error.kind(), note);
                    return Err(VmError::Guest { error, diagnosis });
                }
            };
            match handled.action {
                VcpuAction::Resume => {}
                VcpuAction::Exit(status) => {
                    return Ok(RunReport { status, exits, stats, wall: start.elapsed() });
                }
                VcpuAction::Halted => {
                    // Without an in-kernel irqchip nothing can raise an interrupt, so
                    // HLT with IF set is resumed at once; with IF clear it is final.
                    let rflags = self.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?.rflags;
                    if rflags & RFLAGS_IF == 0 {
                        return Err(VmError::HaltedForever { diagnosis: self.diagnose(ExitKind::Hlt, None) });
                    }
                }
            }
        }
    }

    fn trace_exit(
        &mut self,
        out: &mut dyn Write,
        seq: u64,
        elapsed: Duration,
        handled: &Result<crate::vcpu::Handled, VcpuError>,
    ) {
        let kind = handled.as_ref().map_or_else(VcpuError::kind, |h| h.kind);
        let access = handled.as_ref().ok().and_then(|h| h.access);
        let io_size = self.io_size();
        let regs = self.vcpu.get_regs().unwrap_or_default();
        let sregs = self.vcpu.get_sregs().unwrap_or_default();
        let view = CpuView::new(&regs, &sregs);
        let size = match (io_size, access) {
            (Some(s), _) => Some(usize::from(s)),
            (None, Some(a)) => Some(a.len),
            (None, None) => None,
        };
        let instruction = trace::trapping_instruction(&self.mem, &view, kind, size);
        let line = TraceLine { seq, elapsed, kind, rip: regs.rip, instruction: instruction.as_ref(), access, io_size };
        // The trace is best effort: a closed stderr must not stop the guest.
        let _ = writeln!(out, "{line}");
    }

    /// The benchmark floor: KVM_RUN in a loop, no device dispatch, until a
    /// write to the debug-exit port. Returns the number of exits.
    pub fn run_bare(&mut self) -> Result<u64, VmError> {
        let mut exits = 0u64;
        loop {
            match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, _)) if u64::from(port) == DEBUG_EXIT_PORT => return Ok(exits + 1),
                Ok(VcpuExit::IoOut(..) | VcpuExit::IoIn(..)) => exits += 1,
                Ok(other) => {
                    let error = VcpuError::Unexpected(format!("{other:?}"));
                    let diagnosis = self.diagnose(ExitKind::Other, None);
                    return Err(VmError::Guest { error, diagnosis });
                }
                Err(e) if e.errno() == libc::EINTR => {}
                Err(source) => return Err(VmError::Kvm { call: "KVM_RUN", source }),
            }
        }
    }
}

/// Writes the GDT, the page tables and (for PVH) the start info; returns
/// the entry registers.
fn write_boot_structures(mem: &GuestMemoryMmap, entry: &ImageEntry, cmdline: &str) -> Result<EntryPoint, MemoryError> {
    let mut point = EntryPoint { mode: entry.mode, rip: entry.rip, rsp: BOOT_STACK_TOP, rbx: 0 };
    match entry.mode {
        EntryMode::Real => point.rsp = REAL_MODE_LOAD,
        EntryMode::Protected => memory::write(mem, GDT_START, &gdt::gdt_bytes())?,
        EntryMode::Long => {
            memory::write(mem, GDT_START, &gdt::gdt_bytes())?;
            paging::write_identity_tables(mem)?;
        }
    }
    if entry.pvh {
        point.rbx = pvh::write_start_info(mem, cmdline)?;
    }
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_forbidden_kvm_says_how_to_fix_it() {
        let e = VmError::NoKvm { hint: kvm_open_hint(libc::ENOENT), source: kvm_ioctls::Error::new(libc::ENOENT) };
        assert!(e.to_string().contains("modprobe kvm_intel"), "{e}");
        assert_eq!(e.exit_code(), ExitCode::NoKvm);
        assert!(kvm_open_hint(libc::EACCES).contains("kvm group"));
        assert!(kvm_open_hint(libc::EPERM).contains("run as root"));
    }

    #[test]
    fn each_fatal_exit_has_its_own_status() {
        let diagnosis = Box::new(Diagnosis {
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
            mode: "16-bit real mode",
            instruction: None,
            note: Some("suberror 1".into()),
        });
        let guest = |error| VmError::Guest { error, diagnosis: diagnosis.clone() };
        assert_eq!(guest(VcpuError::Shutdown).exit_code(), ExitCode::TripleFault);
        assert_eq!(guest(VcpuError::InternalError).exit_code(), ExitCode::EmulationFailure);
        assert_eq!(guest(VcpuError::FailEntry { reason: 0x21 }).exit_code(), ExitCode::FailedEntry);
        assert_eq!(guest(VcpuError::SystemEvent { kind: 2 }).exit_code(), ExitCode::UnhandledExit);
        let text = guest(VcpuError::FailEntry { reason: 0x21 }).to_string();
        assert!(text.contains("hardware entry failure reason 0x21"), "{text}");
        assert!(text.contains("instruction not readable") && text.contains("suberror 1"), "{text}");
    }
}
