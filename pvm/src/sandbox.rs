//! The sandbox of `pvm run`: a seccomp-bpf filter (rust-vmm's
//! `seccompiler`, as Firecracker uses it) installed once the program is
//! loaded and the engine is set up, before the first guest instruction.
//! From then on the process may make only the system calls an engine needs
//! (see [`ALLOWED`]): stdin, stdout and stderr, memory for the translator
//! (never writable and executable at once), and the signal paths of the
//! translator's fault handler. Any other call is trapped: a SIGSYS handler
//! writes one line naming the call on stderr and the process dies of SIGSYS.
//!
//! The filter is installed on the calling thread (no TSYNC): `pvm run` is
//! one thread, so that is the whole process; a library caller that asks
//! for it in-process puts only its own thread under it.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Errors of building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot build the seccomp filter")]
    Build(#[source] seccompiler::BackendError),
    #[error("cannot install the SIGSYS handler that reports forbidden system calls")]
    Handler(#[source] std::io::Error),
    #[error("cannot install the seccomp filter (the kernel needs seccomp-bpf); --no-seccomp runs without it")]
    Install(#[source] seccompiler::Error),
}

/// The system calls a running program's process may make, and why.
/// `mmap`, `mprotect`, `rt_sigaction` and `tgkill` are allowed only with
/// the arguments [`filter`] names.
pub const ALLOWED: &[(i64, &str, &str)] = &[
    (libc::SYS_read, "read", "the program's stdin (sys 2)"),
    (libc::SYS_write, "write", "the program's stdout, the trace and the reports on stderr"),
    (libc::SYS_mmap, "mmap", "allocation, the translator's code cache (never writable and executable)"),
    (libc::SYS_mprotect, "mprotect", "the code cache turned RW for writing, RX to run (never both)"),
    (libc::SYS_munmap, "munmap", "allocation"),
    (libc::SYS_mremap, "mremap", "allocation"),
    (libc::SYS_brk, "brk", "allocation"),
    (libc::SYS_madvise, "madvise", "allocation"),
    (libc::SYS_futex, "futex", "the stdout and stderr locks"),
    (libc::SYS_rt_sigreturn, "rt_sigreturn", "return from the translator's SIGSEGV handler"),
    (libc::SYS_sigaltstack, "sigaltstack", "the SIGSEGV handler's signal stack"),
    (libc::SYS_rt_sigprocmask, "rt_sigprocmask", "signal masks in the fault and abort paths"),
    (libc::SYS_rt_sigaction, "rt_sigaction", "SIGSEGV and SIGBUS only: a fault handler restoring the default"),
    (libc::SYS_clock_gettime, "clock_gettime", "--stats and the translator's timings (when the vDSO falls back)"),
    (libc::SYS_sched_yield, "sched_yield", "lock contention"),
    (libc::SYS_getpid, "getpid", "re-raising a fatal signal"),
    (libc::SYS_gettid, "gettid", "re-raising a fatal signal"),
    (libc::SYS_tgkill, "tgkill", "SIGSYS, SIGSEGV, SIGBUS, SIGABRT re-raised to itself only"),
    (libc::SYS_exit, "exit", "a thread ends"),
    (libc::SYS_exit_group, "exit_group", "the process ends"),
];

fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, SandboxError> {
    SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value).map_err(SandboxError::Build)
}

/// One rule per value: argument `index` equal to it (an OR of the values).
fn any_of(index: u8, values: &[i32]) -> Result<Vec<SeccompRule>, SandboxError> {
    values
        .iter()
        .map(|&v| SeccompRule::new(vec![arg(index, SeccompCmpOp::Eq, v as u64)?]).map_err(SandboxError::Build))
        .collect()
}

/// W^X at the system-call level: the protection argument `index` may have
/// PROT_WRITE or PROT_EXEC, not both.
fn not_writable_and_executable(index: u8) -> Result<Vec<SeccompRule>, SandboxError> {
    let wx = (libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    [0, libc::PROT_WRITE as u64, libc::PROT_EXEC as u64]
        .into_iter()
        .map(|v| SeccompRule::new(vec![arg(index, SeccompCmpOp::MaskedEq(wx), v)?]).map_err(SandboxError::Build))
        .collect()
}

/// Builds the filter of a running program.
///
/// # Errors
///
/// [`SandboxError::Build`] if seccompiler rejects the rules (a bug here,
/// not a property of the machine).
pub fn filter() -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &(nr, _, _) in ALLOWED {
        let conditions = match nr {
            libc::SYS_mmap | libc::SYS_mprotect => not_writable_and_executable(2)?,
            libc::SYS_rt_sigaction => any_of(0, &[libc::SIGSEGV, libc::SIGBUS])?,
            libc::SYS_tgkill => any_of(2, &[libc::SIGSYS, libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT])?,
            _ => Vec::new(),
        };
        rules.insert(nr, conditions);
    }
    let filter = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(SandboxError::Build)?;
    BpfProgram::try_from(filter).map_err(SandboxError::Build)
}

/// Puts the calling thread under [`filter`], after installing the SIGSYS
/// handler that reports a forbidden call.
///
/// # Errors
///
/// [`SandboxError::Build`] (a bug), [`SandboxError::Handler`] if the
/// handler cannot be installed, [`SandboxError::Install`] if the kernel
/// refuses the filter.
pub fn apply() -> Result<(), SandboxError> {
    install(&filter()?)
}

/// Installs `filter` on the calling thread, after the SIGSYS handler.
fn install(filter: &BpfProgram) -> Result<(), SandboxError> {
    install_sigsys_handler().map_err(SandboxError::Handler)?;
    seccompiler::apply_filter(filter).map_err(SandboxError::Install)
}

/// Names of the system calls the report knows: the allowed ones and the
/// forbidden ones most likely to be tried.
const NAMES: &[(i64, &str)] = &[
    (libc::SYS_open, "open"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_close, "close"),
    (libc::SYS_stat, "stat"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_ioctl, "ioctl"),
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
    (libc::SYS_unlink, "unlink"),
    (libc::SYS_unlinkat, "unlinkat"),
    (libc::SYS_mkdir, "mkdir"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_poll, "poll"),
];

/// The name of system call `nr`, if the report knows it.
pub fn syscall_name(nr: i64) -> Option<&'static str> {
    let allowed = ALLOWED.iter().map(|&(n, name, _)| (n, name));
    allowed.chain(NAMES.iter().copied()).find(|&(n, _)| n == nr).map(|(_, name)| name)
}

/// A line in a fixed buffer: the SIGSYS handler may not allocate.
struct Line {
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
}

/// The line the SIGSYS handler writes for system call `nr`.
fn sigsys_report(nr: i64) -> Line {
    let mut line = Line { buf: [0; 256], len: 0 };
    line.push(b"pvm: seccomp: the running program's process made system call ");
    if nr < 0 {
        line.push(b"-");
    }
    line.number(nr.unsigned_abs()).push(b" (").push(syscall_name(nr).unwrap_or("unknown").as_bytes());
    line.push(b"), which its filter does not allow: killed with SIGSYS (pvm run --no-seccomp turns the filter off)\n");
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
    let line = sigsys_report(i64::from(nr));
    // SAFETY: write, getpid, gettid and tgkill are async-signal-safe and
    // allowed by the filter; `line.buf` is valid for `line.len` bytes.
    // SA_RESETHAND made SIGSYS's action the default again and SA_NODEFER
    // left it unblocked, so the tgkill ends the process with SIGSYS.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
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
    use std::io::Read;
    use std::os::fd::FromRawFd;

    /// How a child process ended: its `waitpid` status and its stderr.
    struct Child {
        status: libc::c_int,
        stderr: String,
    }

    impl Child {
        fn killed_by_sigsys(&self) -> bool {
            libc::WIFSIGNALED(self.status) && libc::WTERMSIG(self.status) == libc::SIGSYS
        }
        fn exited_with(&self, code: libc::c_int) -> bool {
            libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == code
        }
    }

    /// Forks; the child installs the filter, runs `body` and exits with 0.
    /// Between fork and exit the child makes only async-signal-safe calls
    /// (the filter is compiled before the fork).
    fn in_child(body: fn()) -> Child {
        let filter = filter().unwrap();
        let mut pipe = [0; 2];
        // SAFETY: pipe writes two descriptors into the array it is given.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: the child only calls dup2, setrlimit, sigaction, prctl,
        // seccomp, the system calls of `body`, and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: async-signal-safe calls on descriptors this process owns.
            unsafe {
                libc::dup2(pipe[1], 2);
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            }
            let code = if install(&filter).is_ok() {
                body();
                0
            } else {
                100
            };
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        // SAFETY: the write end belongs to this process and is closed once.
        unsafe { libc::close(pipe[1]) };
        let mut stderr = Vec::new();
        // SAFETY: the read end belongs to this process; the File owns and closes it.
        let _ = unsafe { std::fs::File::from_raw_fd(pipe[0]) }.read_to_end(&mut stderr);
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        Child { status, stderr: String::from_utf8_lossy(&stderr).into_owned() }
    }

    fn report(nr: i64, name: &str) -> String {
        format!(
            "pvm: seccomp: the running program's process made system call {nr} ({name}), which its filter does \
             not allow: killed with SIGSYS (pvm run --no-seccomp turns the filter off)\n"
        )
    }

    fn assert_killed(child: &Child, nr: i64, name: &str) {
        assert!(child.killed_by_sigsys(), "status {:#x}, stderr {:?}", child.status, child.stderr);
        assert_eq!(child.stderr, report(nr, name));
    }

    #[test]
    fn a_socket_call_is_killed_with_sigsys_and_reported() {
        let child = in_child(|| {
            // SAFETY: a plain system call; the filter traps it.
            unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        });
        assert_killed(&child, libc::SYS_socket, "socket");
    }

    #[test]
    fn an_execve_or_open_call_is_killed_with_sigsys_and_reported() {
        let child = in_child(|| {
            let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
            // SAFETY: a NUL-terminated path and argv; the filter traps the call.
            unsafe { libc::execve(argv[0], argv.as_ptr(), [std::ptr::null()].as_ptr()) };
        });
        assert_killed(&child, libc::SYS_execve, "execve");
        let child = in_child(|| {
            // SAFETY: a NUL-terminated path; the filter traps the call.
            unsafe { libc::open(c"/etc/passwd".as_ptr(), libc::O_RDONLY) };
        });
        assert_killed(&child, libc::SYS_openat, "openat"); // glibc's open is openat
    }

    fn map(prot: libc::c_int) -> *mut libc::c_void {
        // SAFETY: an anonymous private mapping of one page at an address the kernel picks.
        unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) }
    }

    #[test]
    fn code_memory_may_be_writable_or_executable_but_never_both() {
        let child = in_child(|| {
            let page = map(libc::PROT_READ | libc::PROT_WRITE);
            if page == libc::MAP_FAILED {
                return;
            }
            // SAFETY: the page was just mapped writable; then it becomes RX, then is unmapped.
            unsafe {
                page.cast::<u8>().write(0xc3);
                libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC);
                libc::munmap(page, 4096);
                libc::write(2, b"ok".as_ptr().cast(), 2);
            }
        });
        assert!(child.exited_with(0), "status {:#x}, stderr {:?}", child.status, child.stderr);
        assert_eq!(child.stderr, "ok");
        let child = in_child(|| {
            map(libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC);
        });
        assert_killed(&child, libc::SYS_mmap, "mmap");
        let child = in_child(|| {
            let page = map(libc::PROT_READ);
            // SAFETY: changes the protection of the page mapped just above; the filter traps it.
            unsafe { libc::mprotect(page, 4096, libc::PROT_WRITE | libc::PROT_EXEC) };
        });
        assert_killed(&child, libc::SYS_mprotect, "mprotect");
    }

    #[test]
    fn a_fault_handler_may_restore_sigsegv_but_not_other_signals() {
        let child = in_child(|| {
            // SAFETY: reads SIGSEGV's action (no change) and reads stdin's end.
            unsafe {
                libc::sigaction(libc::SIGSEGV, std::ptr::null(), std::ptr::null_mut());
                let mut byte = 0u8;
                libc::read(0, (&raw mut byte).cast(), 0);
            }
        });
        assert!(child.exited_with(0), "status {:#x}, stderr {:?}", child.status, child.stderr);
        let child = in_child(|| {
            // SAFETY: reads SIGINT's action; the filter traps the call.
            unsafe { libc::sigaction(libc::SIGINT, std::ptr::null(), std::ptr::null_mut()) };
        });
        assert_killed(&child, libc::SYS_rt_sigaction, "rt_sigaction");
    }

    #[test]
    fn the_report_names_unknown_calls_by_number() {
        let line = sigsys_report(1023);
        let text = std::str::from_utf8(&line.buf[..line.len]).unwrap();
        assert!(text.starts_with("pvm: seccomp: the running program's process made system call 1023 (unknown), "));
        assert_eq!(syscall_name(libc::SYS_openat), Some("openat"));
        assert_eq!(syscall_name(libc::SYS_read), Some("read"));
    }
}
