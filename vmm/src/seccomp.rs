//! The vCPU thread's sandbox: a seccomp-bpf filter, built with rust-vmm's
//! `seccompiler` as Firecracker builds its own, that the vCPU thread
//! installs once the VM is set up and before the guest runs. From then on
//! the thread that runs the guest and the device models may make only the
//! system calls the run loop needs (see [`ALLOWED`]); `ioctl` only with the
//! KVM requests of the run loop and the diagnosis, and only on the vCPU and
//! VM file descriptors. Any other call is trapped: a SIGSYS handler writes
//! one line naming the call on stderr, and the process dies of SIGSYS.
//!
//! The filter is per thread (no TSYNC): the threads started before it (the
//! watchdog, which only waits and sends the kick signal, and the serial
//! input reader, which only reads stdin) are not under it, and a caller
//! driving the VMM in-process keeps its own threads free.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use kvm_bindings::{kvm_irq_level, kvm_regs, kvm_sregs};
use sandbox::seccompiler::{self, BpfProgram, SeccompCmpOp, SeccompCondition, SeccompRule};
use sandbox::Report;

/// Errors of building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("cannot build the vCPU thread's seccomp filter")]
    Build(#[source] seccompiler::BackendError),
    #[error("cannot install the vCPU thread's seccomp filter; --no-seccomp runs without it")]
    Install(#[source] sandbox::SandboxError),
}

const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    const KVMIO: u64 = 0xae;
    (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
/// `KVM_RUN`, `_IO(KVMIO, 0x80)`.
pub const KVM_RUN: u64 = ioc(0, 0x80, 0);
/// `KVM_GET_REGS`, `_IOR(KVMIO, 0x81, struct kvm_regs)`: the trace, the diagnosis, the HLT check.
pub const KVM_GET_REGS: u64 = ioc(IOC_READ, 0x81, std::mem::size_of::<kvm_regs>());
/// `KVM_GET_SREGS`, `_IOR(KVMIO, 0x83, struct kvm_sregs)`: the trace and the diagnosis.
pub const KVM_GET_SREGS: u64 = ioc(IOC_READ, 0x83, std::mem::size_of::<kvm_sregs>());
/// `KVM_IRQ_LINE`, `_IOW(KVMIO, 0x61, struct kvm_irq_level)`: the UART's interrupt with `--timers`.
pub const KVM_IRQ_LINE: u64 = ioc(IOC_WRITE, 0x61, std::mem::size_of::<kvm_irq_level>());
/// `KVM_GET_MSRS`, `_IOWR(KVMIO, 0x88, struct kvm_msrs)`.
pub const KVM_GET_MSRS: u64 = ioc(IOC_READ | IOC_WRITE, 0x88, std::mem::size_of::<kvm_bindings::kvm_msrs>());
/// `KVM_GET_FPU`, `_IOR(KVMIO, 0x8c, struct kvm_fpu)`.
pub const KVM_GET_FPU: u64 = ioc(IOC_READ, 0x8c, std::mem::size_of::<kvm_bindings::kvm_fpu>());
/// `KVM_GET_LAPIC`, `_IOR(KVMIO, 0x8e, struct kvm_lapic_state)`.
pub const KVM_GET_LAPIC: u64 = ioc(IOC_READ, 0x8e, std::mem::size_of::<kvm_bindings::kvm_lapic_state>());
/// `KVM_GET_MP_STATE`, `_IOR(KVMIO, 0x98, struct kvm_mp_state)`.
pub const KVM_GET_MP_STATE: u64 = ioc(IOC_READ, 0x98, std::mem::size_of::<kvm_bindings::kvm_mp_state>());
/// `KVM_GET_VCPU_EVENTS`, `_IOR(KVMIO, 0x9f, struct kvm_vcpu_events)`.
pub const KVM_GET_VCPU_EVENTS: u64 = ioc(IOC_READ, 0x9f, std::mem::size_of::<kvm_bindings::kvm_vcpu_events>());
/// `KVM_GET_DEBUGREGS`, `_IOR(KVMIO, 0xa1, struct kvm_debugregs)`.
pub const KVM_GET_DEBUGREGS: u64 = ioc(IOC_READ, 0xa1, std::mem::size_of::<kvm_bindings::kvm_debugregs>());
/// `KVM_GET_XSAVE`, `_IOR(KVMIO, 0xa4, struct kvm_xsave)`.
pub const KVM_GET_XSAVE: u64 = ioc(IOC_READ, 0xa4, std::mem::size_of::<kvm_bindings::kvm_xsave>());
/// `KVM_GET_XCRS`, `_IOR(KVMIO, 0xa6, struct kvm_xcrs)`.
pub const KVM_GET_XCRS: u64 = ioc(IOC_READ, 0xa6, std::mem::size_of::<kvm_bindings::kvm_xcrs>());

/// `KVM_SET_REGS`, `_IOW(KVMIO, 0x82, struct kvm_regs)`.
pub const KVM_SET_REGS: u64 = ioc(IOC_WRITE, 0x82, std::mem::size_of::<kvm_regs>());
/// `KVM_SET_SREGS`, `_IOW(KVMIO, 0x84, struct kvm_sregs)`.
pub const KVM_SET_SREGS: u64 = ioc(IOC_WRITE, 0x84, std::mem::size_of::<kvm_sregs>());
/// `KVM_SET_GUEST_DEBUG`, `_IOW(KVMIO, 0x9b, struct kvm_guest_debug)`.
pub const KVM_SET_GUEST_DEBUG: u64 = ioc(IOC_WRITE, 0x9b, std::mem::size_of::<kvm_bindings::kvm_guest_debug>());

/// The vCPU ioctls a vCPU stopped for gdb makes (gdb writes registers, sets
/// breakpoints and single-steps), allowed only with `--gdb`.
pub const DEBUG_IOCTLS: &[(u64, &str)] =
    &[(KVM_SET_GUEST_DEBUG, "KVM_SET_GUEST_DEBUG"), (KVM_SET_REGS, "KVM_SET_REGS"), (KVM_SET_SREGS, "KVM_SET_SREGS")];

/// The read-only vCPU ioctls a paused vCPU makes to save its state, allowed
/// only in runs that snapshot or migrate ([`vcpu_filter`] with `snapshots`).
pub const SNAPSHOT_IOCTLS: &[(u64, &str)] = &[
    (KVM_GET_MP_STATE, "KVM_GET_MP_STATE"),
    (KVM_GET_FPU, "KVM_GET_FPU"),
    (KVM_GET_XSAVE, "KVM_GET_XSAVE"),
    (KVM_GET_XCRS, "KVM_GET_XCRS"),
    (KVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS"),
    (KVM_GET_LAPIC, "KVM_GET_LAPIC"),
    (KVM_GET_MSRS, "KVM_GET_MSRS"),
    (KVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS"),
];

/// The system calls the vCPU thread may make once the guest runs, and why.
/// `ioctl`, `mmap`, `mprotect` and `tgkill` are allowed only with the arguments
/// [`vcpu_filter`] names.
pub const ALLOWED: &[(i64, &str, &str)] = &[
    (libc::SYS_ioctl, "ioctl", "KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS on the vCPU; KVM_IRQ_LINE on the VM; the SNAPSHOT_IOCTLS on the vCPU in runs that snapshot or migrate; the DEBUG_IOCTLS on the vCPU with --gdb"),
    (libc::SYS_write, "write", "guest serial output on stdout, the trace on stderr"),
    (libc::SYS_futex, "futex", "locks: stdout, the serial input channel, the watchdog's join"),
    (libc::SYS_mmap, "mmap", "allocation (never executable)"),
    (libc::SYS_mprotect, "mprotect", "allocation: malloc grows a thread's arena (never executable)"),
    (libc::SYS_munmap, "munmap", "allocation"),
    (libc::SYS_mremap, "mremap", "allocation"),
    (libc::SYS_brk, "brk", "allocation"),
    (libc::SYS_madvise, "madvise", "allocation, the thread's stack at its exit"),
    (libc::SYS_rt_sigreturn, "rt_sigreturn", "return from the watchdog's kick handler"),
    (libc::SYS_rt_sigprocmask, "rt_sigprocmask", "thread exit and abort block signals"),
    (libc::SYS_sigaltstack, "sigaltstack", "the thread's signal stack is removed at its exit"),
    (libc::SYS_clock_gettime, "clock_gettime", "--stats and the run's wall time (when the vDSO falls back)"),
    (libc::SYS_sched_yield, "sched_yield", "lock contention"),
    (libc::SYS_getpid, "getpid", "the SIGSYS handler re-raises SIGSYS"),
    (libc::SYS_gettid, "gettid", "the SIGSYS handler re-raises SIGSYS"),
    (libc::SYS_tgkill, "tgkill", "SIGSYS (the handler's re-raise) and SIGABRT (abort) to itself only; with several vCPUs, the kick signal to the other vCPU threads"),
    (libc::SYS_exit, "exit", "the vCPU thread ends"),
    (libc::SYS_exit_group, "exit_group", "the process ends"),
];

/// The file descriptors the vCPU thread's ioctls may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmFds {
    pub vcpu: RawFd,
    pub vm: RawFd,
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, seccompiler::BackendError> {
    SeccompRule::new(conditions)
}

/// The ioctl rules: each allowed request, on its file descriptor only;
/// with `snapshots`, also the read-only requests that save a vCPU's state.
fn ioctl_rules(fds: KvmFds, snapshots: bool, debug: bool) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let on = |fd: RawFd, request: u64| {
        rule(vec![sandbox::arg(0, SeccompCmpOp::Eq, fd as u64)?, sandbox::arg(1, SeccompCmpOp::Eq, request)?])
    };
    let mut rules = vec![
        on(fds.vcpu, KVM_RUN)?,
        on(fds.vcpu, KVM_GET_REGS)?,
        on(fds.vcpu, KVM_GET_SREGS)?,
        on(fds.vm, KVM_IRQ_LINE)?,
    ];
    if snapshots {
        for &(request, _) in SNAPSHOT_IOCTLS {
            rules.push(on(fds.vcpu, request)?);
        }
    }
    if debug {
        for &(request, _) in DEBUG_IOCTLS {
            rules.push(on(fds.vcpu, request)?);
        }
    }
    Ok(rules)
}

/// Builds the vCPU thread's filter for the VM whose descriptors are `fds`;
/// `snapshots` adds the [`SNAPSHOT_IOCTLS`] (a run that snapshots or migrates).
///
/// # Errors
///
/// [`SeccompError::Build`] if seccompiler rejects the rules (a bug here,
/// not a property of the machine).
pub fn vcpu_filter(fds: KvmFds, snapshots: bool) -> Result<BpfProgram, SeccompError> {
    vcpu_filter_for(fds, snapshots, false)
}

/// [`vcpu_filter`], with the [`DEBUG_IOCTLS`] too when `debug` (`--gdb`).
///
/// # Errors
///
/// As [`vcpu_filter`].
pub fn vcpu_filter_for(fds: KvmFds, snapshots: bool, debug: bool) -> Result<BpfProgram, SeccompError> {
    filter(fds, snapshots, debug, &[libc::SIGSYS, libc::SIGABRT])
}

/// The filter of one vCPU thread of an SMP guest: [`vcpu_filter_for`], and
/// `tgkill` may also send the watchdog's kick signal, with which the vCPU
/// that ends the run kicks the others out of `KVM_RUN` ([`crate::smp`]).
///
/// # Errors
///
/// As [`vcpu_filter_for`].
pub fn smp_vcpu_filter(fds: KvmFds, snapshots: bool) -> Result<BpfProgram, SeccompError> {
    filter(fds, snapshots, false, &[libc::SIGSYS, libc::SIGABRT, crate::watchdog::kick_signal()])
}

fn filter(fds: KvmFds, snapshots: bool, debug: bool, signals: &[libc::c_int]) -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(nr, _, _) in ALLOWED {
        let conditions = match nr {
            libc::SYS_ioctl => ioctl_rules(fds, snapshots, debug),
            libc::SYS_mmap | libc::SYS_mprotect => sandbox::never_executable(2),
            libc::SYS_tgkill => sandbox::any_of(2, signals),
            _ => Ok(Vec::new()),
        };
        rules.insert(nr, conditions.map_err(SeccompError::Build)?);
    }
    sandbox::compile(rules).map_err(SeccompError::Build)
}

/// What the report of a forbidden call says.
static REPORT: Report = Report { who: "vmm: seccomp: the vCPU thread", off: "vmm run --no-seccomp", allowed: ALLOWED };

/// Installs `filter` on the calling thread, after the SIGSYS handler that
/// reports a forbidden call.
///
/// # Errors
///
/// [`SeccompError::Install`] if the handler cannot be installed or the
/// kernel refuses the filter.
pub fn apply(filter: &BpfProgram) -> Result<(), SeccompError> {
    sandbox::install(filter, &REPORT).map_err(SeccompError::Install)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox::testing::Child;

    /// Descriptor numbers for the test filter; nothing is open there.
    const FDS: KvmFds = KvmFds { vcpu: 900, vm: 901 };

    /// Forks; the child installs `filter`, runs `body` and exits with 0.
    fn in_child(filter: &BpfProgram, body: fn()) -> Child {
        sandbox::testing::in_child(|| apply(filter).is_ok(), body)
    }

    fn report(nr: i64, name: &str) -> String {
        format!(
            "vmm: seccomp: the vCPU thread made system call {nr} ({name}), which its filter does not allow: \
             killed with SIGSYS (vmm run --no-seccomp turns the filter off)\n"
        )
    }

    #[test]
    fn ioctl_numbers_are_the_ones_of_linux_kvm_h() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
    }

    #[test]
    fn a_socket_call_is_killed_with_sigsys_and_reported() {
        let filter = vcpu_filter(FDS, false).unwrap();
        let child = in_child(&filter, || {
            // SAFETY: a plain system call; the filter traps it.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        });
        assert!(child.killed_by_sigsys(), "status {:#x}, stderr {:?}", child.status, child.stderr);
        assert_eq!(child.stderr, report(libc::SYS_socket, "socket"));
    }

    #[test]
    fn an_execve_call_is_killed_with_sigsys_and_reported() {
        let filter = vcpu_filter(FDS, false).unwrap();
        let child = in_child(&filter, || {
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            // SAFETY: a NUL-terminated path and argv; the filter traps the call.
            unsafe { libc::execve(argv[0], argv.as_ptr(), [std::ptr::null()].as_ptr()) };
        });
        assert!(child.killed_by_sigsys(), "status {:#x}, stderr {:?}", child.status, child.stderr);
        assert_eq!(child.stderr, report(libc::SYS_execve, "execve"));
    }

    #[test]
    fn ioctls_are_allowed_only_with_the_kvm_requests_on_their_descriptors() {
        let filter = vcpu_filter(FDS, false).unwrap();
        let allowed = in_child(&filter, || {
            // SAFETY: ioctls on descriptors that are not open fail with EBADF.
            unsafe {
                libc::ioctl(FDS.vcpu, KVM_RUN as _);
                libc::ioctl(FDS.vcpu, KVM_GET_REGS as _, std::ptr::null_mut::<u8>());
                libc::ioctl(FDS.vcpu, KVM_GET_SREGS as _, std::ptr::null_mut::<u8>());
                libc::ioctl(FDS.vm, KVM_IRQ_LINE as _, std::ptr::null_mut::<u8>());
            }
        });
        assert!(allowed.exited_with(0), "status {:#x}, stderr {:?}", allowed.status, allowed.stderr);
        // A KVM_RUN on the VM descriptor, a KVM_IRQ_LINE on the vCPU's, a terminal ioctl.
        fn run_on_the_vm() {
            // SAFETY: the filter traps this ioctl before the kernel sees it.
            unsafe { libc::ioctl(FDS.vm, KVM_RUN as _) };
        }
        fn irq_line_on_the_vcpu() {
            // SAFETY: the filter traps this ioctl before the kernel sees it.
            unsafe { libc::ioctl(FDS.vcpu, KVM_IRQ_LINE as _, std::ptr::null_mut::<u8>()) };
        }
        fn terminal_request() {
            // SAFETY: the filter traps this ioctl before the kernel sees it.
            unsafe { libc::ioctl(0, libc::TCGETS as _, std::ptr::null_mut::<u8>()) };
        }
        let cases: [fn(); 3] = [run_on_the_vm, irq_line_on_the_vcpu, terminal_request];
        for body in cases {
            let child = in_child(&filter, body);
            assert!(child.killed_by_sigsys(), "status {:#x}, stderr {:?}", child.status, child.stderr);
            assert_eq!(child.stderr, report(libc::SYS_ioctl, "ioctl"));
        }
    }

    #[test]
    fn only_the_smp_filter_lets_a_vcpu_thread_send_the_kick_signal() {
        crate::watchdog::install_handler(); // inherited by the children: the kick does nothing
        fn kick_self() {
            // SAFETY: getpid and gettid have no preconditions; the kick's handler is installed.
            unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), crate::watchdog::kick_signal()) };
        }
        let smp = in_child(&smp_vcpu_filter(FDS, false).unwrap(), kick_self);
        assert!(smp.exited_with(0), "status {:#x}, stderr {:?}", smp.status, smp.stderr);
        let single = in_child(&vcpu_filter_for(FDS, false, false).unwrap(), kick_self);
        assert!(single.killed_by_sigsys(), "status {:#x}, stderr {:?}", single.status, single.stderr);
        assert_eq!(single.stderr, report(libc::SYS_tgkill, "tgkill"));
    }

    #[test]
    fn what_the_run_loop_does_is_allowed_but_executable_memory_is_not() {
        let filter = vcpu_filter(FDS, false).unwrap();
        let child = in_child(&filter, || {
            let len = 1 << 20;
            // SAFETY: an anonymous mapping, written, then unmapped; a write of
            // a static string; a yield; a clock read.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p != libc::MAP_FAILED {
                    p.cast::<u8>().write(1);
                    libc::munmap(p, len);
                }
                libc::write(2, b"ok".as_ptr().cast(), 2);
                libc::sched_yield();
                let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts);
            }
        });
        assert!(child.exited_with(0), "status {:#x}, stderr {:?}", child.status, child.stderr);
        assert_eq!(child.stderr, "ok");
        let exec = in_child(&filter, || {
            // SAFETY: the filter traps the mapping before the kernel makes it.
            unsafe {
                libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_EXEC, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            }
        });
        assert!(exec.killed_by_sigsys(), "status {:#x}, stderr {:?}", exec.status, exec.stderr);
        assert_eq!(exec.stderr, report(libc::SYS_mmap, "mmap"));
    }

    #[test]
    fn snapshot_ioctls_are_allowed_only_in_runs_that_snapshot_and_only_on_the_vcpu() {
        assert_eq!(KVM_GET_MSRS, 0xc008_ae88);
        assert_eq!(KVM_GET_FPU, 0x81a0_ae8c);
        assert_eq!(KVM_GET_LAPIC, 0x8400_ae8e);
        assert_eq!(KVM_GET_MP_STATE, 0x8004_ae98);
        assert_eq!(KVM_GET_VCPU_EVENTS, 0x8040_ae9f);
        assert_eq!(KVM_GET_DEBUGREGS, 0x8080_aea1);
        assert_eq!(KVM_GET_XSAVE, 0x9000_aea4);
        assert_eq!(KVM_GET_XCRS, 0x8188_aea6);
        let with = vcpu_filter(FDS, true).unwrap();
        let allowed = in_child(&with, || {
            for &(request, _) in SNAPSHOT_IOCTLS {
                // SAFETY: an ioctl on a descriptor that is not open fails with EBADF.
                unsafe { libc::ioctl(FDS.vcpu, request as _, std::ptr::null_mut::<u8>()) };
            }
        });
        assert!(allowed.exited_with(0), "status {:#x}, stderr {:?}", allowed.status, allowed.stderr);
        fn get_msrs_on_the_vcpu() {
            // SAFETY: the filter traps this ioctl before the kernel sees it.
            unsafe { libc::ioctl(FDS.vcpu, KVM_GET_MSRS as _, std::ptr::null_mut::<u8>()) };
        }
        fn get_lapic_on_the_vm() {
            // SAFETY: the filter traps this ioctl before the kernel sees it.
            unsafe { libc::ioctl(FDS.vm, KVM_GET_LAPIC as _, std::ptr::null_mut::<u8>()) };
        }
        fn set_regs_on_the_vcpu() {
            // KVM_SET_REGS, _IOW(KVMIO, 0x82, struct kvm_regs): writing state stays forbidden.
            let set_regs = ioc(IOC_WRITE, 0x82, std::mem::size_of::<kvm_regs>());
            // SAFETY: the filter traps this ioctl before the kernel sees it.
            unsafe { libc::ioctl(FDS.vcpu, set_regs as _, std::ptr::null_mut::<u8>()) };
        }
        let without = vcpu_filter(FDS, false).unwrap();
        for (filter, body) in
            [(&without, get_msrs_on_the_vcpu as fn()), (&with, get_lapic_on_the_vm), (&with, set_regs_on_the_vcpu)]
        {
            let child = in_child(filter, body);
            assert!(child.killed_by_sigsys(), "status {:#x}, stderr {:?}", child.status, child.stderr);
            assert_eq!(child.stderr, report(libc::SYS_ioctl, "ioctl"));
        }
    }

    #[test]
    fn the_report_names_the_vcpu_thread_and_the_call() {
        let line = sandbox::sigsys_report(&REPORT, libc::SYS_ioctl);
        assert_eq!(String::from_utf8_lossy(line.as_bytes()), report(libc::SYS_ioctl, "ioctl"));
    }
}
