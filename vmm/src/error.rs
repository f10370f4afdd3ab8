//! What can go wrong in a VM's life, the diagnosis that goes with a
//! guest's fatal exit, and the process exit status of each.

use std::fmt;
use std::time::Duration;

use kvm_bindings::{kvm_regs, kvm_sregs};

use crate::bus::BusError;
use crate::kvmstate::StateError;
use crate::loader::LoaderError;
use crate::memory::MemoryError;
use crate::seccomp::SeccompError;
use crate::snapshot::file::SnapshotFileError;
use crate::trace::Instruction;
use crate::vcpu::VcpuError;

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
    /// The run stopped after writing a snapshot (`--snapshot-and-stop`).
    Snapshotted = 79,
    /// The guest migrated: it now runs on the destination.
    Migrated = 80,
    /// A snapshot could not be written, or a restore refused it.
    Snapshot = 81,
    /// `vmm receive`: no guest arrived whole; nothing runs here.
    NotReceived = 82,
    /// The guest reset the machine: the i8042's reset line (Linux's `reboot=k`).
    GuestReset = 90,
    /// The gdb stub ended the run: it cannot listen, or gdb killed the guest.
    Debugger = 91,
    /// The IB700 watchdog expired (`--watchdog-action shutdown`, or no rollback left).
    Watchdog = 83,
    /// The vCPU thread died (`--inject-fault kill-vcpu-after-exits` or `random`).
    VcpuKilled = 84,
    /// `vmm supervise`: the guest failed more often than `--max-restarts` allows.
    RestartsExhausted = 85,
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
    /// Which vCPU, in a guest with several.
    pub vcpu: Option<usize>,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (r, s) = (&self.regs, &self.sregs);
        match self.vcpu {
            Some(index) => write!(f, "  on vCPU {index} at")?,
            None => write!(f, "  at")?,
        }
        match &self.instruction {
            Some(i) => writeln!(f, " rip={:#x} ({}): {i}", r.rip, self.mode)?,
            None => writeln!(f, " rip={:#x} ({}): instruction not readable", r.rip, self.mode)?,
        }
        if let Some(note) = &self.note {
            writeln!(f, "  {note}")?;
        }
        let feature =
            self.instruction.as_ref().and_then(|i| crate::arch::x86_64::cpuid::feature_of_instruction(&i.text));
        if let Some(feature) = feature {
            writeln!(f, "  the guest uses {feature}, which CPUID offered it; if this KVM cannot run it, hide it: --cpuid-mask {feature}")?;
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
    #[error("cannot boot the guest image")]
    Boot(#[source] crate::boot::BootError),
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
    #[error("snapshot")]
    Snapshot(#[source] SnapshotFileError),
    #[error("cannot move the machine state in or out of KVM")]
    State(#[source] StateError),
    #[error("the snapshot does not fit this VMM: {0}")]
    Incompatible(String),
    #[error("no guest was received, nothing runs here")]
    Receive(#[source] crate::migration::MigrationError),
    #[error("the gdb stub ended the run")]
    Gdb(#[source] crate::gdb::GdbError),
    #[error("{expiry}\n{diagnosis}")]
    Watchdog { expiry: crate::devices::ib700::Expiry, diagnosis: Box<Diagnosis> },
    #[error("the vCPU thread died at exit {exits} (injected by --inject-fault): the guest stopped where it was")]
    VcpuKilled { exits: u64 },
    #[error("fault tolerance")]
    Ft(#[source] Box<crate::ft::FtError>),
    #[error("cannot run the guest with the vCPUs asked for")]
    Smp(#[source] crate::smp::SmpError),
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
            VmError::Loader(_) | VmError::Boot(_) => ExitCode::BadImage,
            VmError::Guest { error, .. } => match error {
                VcpuError::Shutdown => ExitCode::TripleFault,
                VcpuError::InternalError => ExitCode::EmulationFailure,
                VcpuError::FailEntry { .. } => ExitCode::FailedEntry,
                VcpuError::SystemEvent { .. } | VcpuError::Unexpected(_) => ExitCode::UnhandledExit,
            },
            VmError::Timeout { .. } => ExitCode::Timeout,
            VmError::HaltedForever { .. } => ExitCode::HaltedForever,
            VmError::Snapshot(_) | VmError::Incompatible(_) => ExitCode::Snapshot,
            VmError::State(_) => ExitCode::Internal,
            VmError::Receive(_) => ExitCode::NotReceived,
            VmError::Gdb(_) => ExitCode::Debugger,
            VmError::Watchdog { .. } => ExitCode::Watchdog,
            VmError::VcpuKilled { .. } => ExitCode::VcpuKilled,
            VmError::Ft(_) => ExitCode::Internal,
            VmError::Smp(_) => ExitCode::Usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::kvm_open_hint;

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
            vcpu: None,
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

    #[test]
    fn an_instruction_of_a_cpuid_feature_names_the_mask_that_hides_it() {
        let (_, text) = crate::trace::disassemble(&[0x0f, 0x01, 0xd0], 64, 0);
        let instruction = Some(crate::trace::Instruction { bytes: vec![0x0f, 0x01, 0xd0], text, access_size: 0 });
        let d = Diagnosis {
            regs: kvm_regs::default(),
            sregs: kvm_sregs::default(),
            mode: "64-bit long mode",
            instruction,
            note: None,
            vcpu: Some(2),
        };
        let shown = d.to_string();
        assert!(shown.contains("xgetbv") && shown.contains("--cpuid-mask xsave"), "{shown}");
        assert!(shown.starts_with("  on vCPU 2 at rip="), "the vCPU is named: {shown}");
    }
}
