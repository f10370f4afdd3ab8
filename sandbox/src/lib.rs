//! The common parts of the workspace's two seccomp sandboxes (the vmm's
//! vCPU thread and `pvm run`), built with rust-vmm's `seccompiler` as
//! Firecracker builds its filters: helpers for the rules, a table of system
//! call names, the SIGSYS handler that reports a forbidden call, and a
//! harness that tests a filter in a forked child.
//!
//! A filter traps what it does not allow (`SeccompAction::Trap`); the
//! handler [`install`] puts in place writes one line naming the call on
//! stderr and the process dies of SIGSYS, so a forbidden call is "killed
//! with SIGSYS and reported as such".
//!
//! ```no_run
//! use sandbox::{compile, install, Report};
//!
//! static ALLOWED: &[(i64, &str, &str)] = &[(libc::SYS_write, "write", "output"), (libc::SYS_exit_group, "exit_group", "the end")];
//! static REPORT: Report = Report { who: "demo: the process", off: "demo --no-seccomp", allowed: ALLOWED };
//! let rules = ALLOWED.iter().map(|&(nr, _, _)| (nr, vec![])).collect();
//! install(&compile(rules)?, &REPORT)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicPtr, Ordering};

pub use seccompiler;
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

pub mod testing;

/// Errors of installing a filter.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot install the SIGSYS handler that reports forbidden system calls")]
    Handler(#[source] std::io::Error),
    #[error("the kernel refused the seccomp filter (it needs seccomp-bpf)")]
    Install(#[source] seccompiler::Error),
}

/// What the report of a forbidden call says: who made it, how to turn the
/// filter off, and the allowed calls (for their names).
#[derive(Debug)]
pub struct Report {
    /// E.g. "vmm: seccomp: the vCPU thread".
    pub who: &'static str,
    /// E.g. "vmm run --no-seccomp".
    pub off: &'static str,
    /// (number, name, why) of each allowed call.
    pub allowed: &'static [(i64, &'static str, &'static str)],
}

/// Condition: argument `index` (as a 32-bit value) compared with `value`.
///
/// # Errors
///
/// seccompiler's, for an argument index past 5.
pub fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, BackendError> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
}

/// One rule per value: argument `index` equal to it (an OR of the values).
///
/// # Errors
///
/// seccompiler's, for an argument index past 5.
pub fn any_of(index: u8, values: &[i32]) -> Result<Vec<SeccompRule>, BackendError> {
    values.iter().map(|&v| SeccompRule::new(vec![arg(index, SeccompCmpOp::Eq, v as u64)?])).collect()
}

/// W^X at the system-call level: the protection argument `index` may have
/// PROT_WRITE or PROT_EXEC, not both.
///
/// # Errors
///
/// seccompiler's, for an argument index past 5.
pub fn not_writable_and_executable(index: u8) -> Result<Vec<SeccompRule>, BackendError> {
    let wx = (libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    [0, libc::PROT_WRITE as u64, libc::PROT_EXEC as u64]
        .into_iter()
        .map(|v| SeccompRule::new(vec![arg(index, SeccompCmpOp::MaskedEq(wx), v)?]))
        .collect()
}

/// No executable memory: the protection argument `index` has no PROT_EXEC.
///
/// # Errors
///
/// seccompiler's, for an argument index past 5.
pub fn never_executable(index: u8) -> Result<Vec<SeccompRule>, BackendError> {
    Ok(vec![SeccompRule::new(vec![arg(index, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)?])?])
}

/// Compiles `rules` (system call number to its rules, none meaning any
/// arguments) into a filter that traps everything else.
///
/// # Errors
///
/// seccompiler's, for rules it rejects (a bug of the caller).
pub fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>) -> Result<BpfProgram, BackendError> {
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)?;
    BpfProgram::try_from(filter)
}

/// Installs the SIGSYS handler with `report`, then `filter`, on the
/// calling thread (no TSYNC: other threads stay as they are).
///
/// # Errors
///
/// [`SandboxError::Handler`] if the handler cannot be installed,
/// [`SandboxError::Install`] if the kernel refuses the filter.
pub fn install(filter: &BpfProgram, report: &'static Report) -> Result<(), SandboxError> {
    REPORT.store(std::ptr::from_ref(report).cast_mut(), Ordering::SeqCst);
    install_sigsys_handler().map_err(SandboxError::Handler)?;
    seccompiler::apply_filter(filter).map_err(SandboxError::Install)
}

/// The report the handler writes (the last one installed).
static REPORT: AtomicPtr<Report> = AtomicPtr::new(std::ptr::null_mut());

/// Names of the system calls a report knows besides the allowed ones: the
/// forbidden ones most likely to be tried.
const NAMES: &[(i64, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_open, "open"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_close, "close"),
    (libc::SYS_stat, "stat"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_ioctl, "ioctl"),
    (libc::SYS_rt_sigaction, "rt_sigaction"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_pipe2, "pipe2"),
    (libc::SYS_dup, "dup"),
    (libc::SYS_dup3, "dup3"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_bind, "bind"),
    (libc::SYS_listen, "listen"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_clone, "clone"),
    (libc::SYS_clone3, "clone3"),
    (libc::SYS_fork, "fork"),
    (libc::SYS_vfork, "vfork"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_execveat, "execveat"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_kill, "kill"),
    (libc::SYS_prctl, "prctl"),
    (libc::SYS_seccomp, "seccomp"),
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_getrandom, "getrandom"),
    (libc::SYS_sched_getaffinity, "sched_getaffinity"),
    (libc::SYS_rseq, "rseq"),
    (libc::SYS_set_robust_list, "set_robust_list"),
    (libc::SYS_unlink, "unlink"),
    (libc::SYS_unlinkat, "unlinkat"),
    (libc::SYS_mkdir, "mkdir"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_poll, "poll"),
    (libc::SYS_ppoll, "ppoll"),
];

/// The name of system call `nr`, if `allowed` or the table knows it.
pub fn syscall_name(allowed: &[(i64, &'static str, &'static str)], nr: i64) -> Option<&'static str> {
    let allowed = allowed.iter().map(|&(n, name, _)| (n, name));
    allowed.chain(NAMES.iter().copied()).find(|&(n, _)| n == nr).map(|(_, name)| name)
}

/// A line in a fixed buffer: the SIGSYS handler may not allocate.
#[derive(Debug)]
pub struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Line {
    fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }
    fn number(&mut self, mut value: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }

    /// The bytes of the line.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The line the SIGSYS handler writes for system call `nr` under `report`.
pub fn sigsys_report(report: &Report, nr: i64) -> Line {
    let mut line = Line { buf: [0; 256], len: 0 };
    line.push(report.who.as_bytes()).push(b" made system call ");
    if nr < 0 {
        line.push(b"-");
    }
    let name = syscall_name(report.allowed, nr).unwrap_or("unknown");
    line.number(nr.unsigned_abs()).push(b" (").push(name.as_bytes());
    line.push(b"), which its filter does not allow: killed with SIGSYS (").push(report.off.as_bytes());
    line.push(b" turns the filter off)\n");
    line
}

/// Offset of `si_syscall` in a SIGSYS `siginfo_t` on x86-64, in `i32`s
/// (after si_signo, si_errno, si_code, padding and `si_call_addr`), as
/// Firecracker reads it.
const SI_OFF_SYSCALL: usize = 6;

extern "C" fn on_sigsys(_signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t for a SA_SIGINFO handler;
    // for a seccomp SIGSYS its `_sigsys` member holds the call number at
    // SI_OFF_SYSCALL, inside the 128-byte structure.
    let nr = unsafe { *info.cast::<i32>().add(SI_OFF_SYSCALL) };
    // SAFETY: REPORT is null or points at a `&'static Report`.
    let report = unsafe { REPORT.load(Ordering::SeqCst).as_ref() };
    let fallback = Report { who: "seccomp: a thread", off: "--no-seccomp", allowed: &[] };
    let line = sigsys_report(report.unwrap_or(&fallback), i64::from(nr));
    // SAFETY: write, getpid, gettid and tgkill are async-signal-safe and
    // allowed by the filters; the line's buffer is valid for its length.
    // SA_RESETHAND made SIGSYS's action the default again and SA_NODEFER
    // left it unblocked, so the tgkill ends the process with SIGSYS.
    unsafe {
        libc::write(2, line.as_bytes().as_ptr().cast(), line.len);
        libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), libc::SIGSYS);
    }
}

fn install_sigsys_handler() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction with an empty mask and a handler that only
    // makes async-signal-safe calls; the kernel copies the structure.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESETHAND;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static ALLOWED: &[(i64, &str, &str)] = &[(libc::SYS_exit_group, "exit_group", "the end")];
    static REPORT: Report = Report { who: "test: the child", off: "test --no-seccomp", allowed: ALLOWED };

    #[test]
    fn the_report_names_known_calls_and_unknown_ones_by_number() {
        let text = |nr| String::from_utf8(sigsys_report(&REPORT, nr).as_bytes().to_vec()).unwrap();
        assert_eq!(
            text(libc::SYS_socket),
            "test: the child made system call 41 (socket), which its filter does not allow: killed with SIGSYS \
             (test --no-seccomp turns the filter off)\n"
        );
        assert!(text(1023).starts_with("test: the child made system call 1023 (unknown), "));
        assert!(text(-1).starts_with("test: the child made system call -1 (unknown), "));
        assert_eq!(syscall_name(ALLOWED, libc::SYS_exit_group), Some("exit_group"));
        assert_eq!(syscall_name(&[], libc::SYS_openat), Some("openat"));
    }

    #[test]
    fn a_forbidden_call_in_a_child_is_killed_with_sigsys_and_reported() {
        let rules = ALLOWED.iter().map(|&(nr, _, _)| (nr, Vec::new())).chain([(libc::SYS_write, vec![])]).collect();
        let filter = compile(rules).unwrap();
        let child = testing::in_child(
            || install(&filter, &REPORT).is_ok(),
            || {
                // SAFETY: a plain system call; the filter traps it.
                unsafe { libc::getppid() };
            },
        );
        assert!(child.killed_by_sigsys(), "{child:?}");
        assert_eq!(
            child.stderr,
            String::from_utf8(sigsys_report(&REPORT, libc::SYS_getppid).as_bytes().to_vec()).unwrap()
        );
    }
}
