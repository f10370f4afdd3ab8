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

use sandbox::seccompiler::{self, BpfProgram, SeccompRule};
use sandbox::Report;

/// Errors of building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot build the seccomp filter")]
    Build(#[source] seccompiler::BackendError),
    #[error("cannot install the seccomp filter; --no-seccomp runs without it")]
    Install(#[source] sandbox::SandboxError),
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
    (libc::SYS_sched_yield, "sched_yield", "lock contention, WASI sched_yield"),
    (libc::SYS_getrandom, "getrandom", "WASI random_get"),
    (libc::SYS_getpid, "getpid", "re-raising a fatal signal"),
    (libc::SYS_gettid, "gettid", "re-raising a fatal signal"),
    (libc::SYS_tgkill, "tgkill", "SIGSYS, SIGSEGV, SIGBUS, SIGABRT re-raised to itself only"),
    (libc::SYS_nanosleep, "nanosleep", "sys 7 (sleep), and an idle scheduler waiting for a sleeper"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep", "sys 7 (sleep), and an idle scheduler waiting for a sleeper"),
    (libc::SYS_poll, "poll", "a jacketed sys 2 asks whether stdin has input"),
    (libc::SYS_exit, "exit", "a thread ends"),
    (libc::SYS_exit_group, "exit_group", "the process ends"),
];

/// What `--threads kernel` (and `hybrid`) need besides: OS threads, and a
/// translator (its code cache, a memfd) per OS thread.
pub const THREADS_ALLOWED: &[(i64, &str, &str)] = &[
    (libc::SYS_clone3, "clone3", "an OS thread per guest thread or worker (kernel, hybrid)"),
    (libc::SYS_clone, "clone", "the same, where the C library falls back to clone"),
    (libc::SYS_set_robust_list, "set_robust_list", "a new thread's C library setup"),
    (libc::SYS_rseq, "rseq", "a new thread's C library setup"),
    (libc::SYS_sched_getaffinity, "sched_getaffinity", "the C library sizing a new thread"),
    (libc::SYS_memfd_create, "memfd_create", "a new thread's translator code cache (W^X: one memfd mapped twice)"),
    (libc::SYS_ftruncate, "ftruncate", "sizing that code cache's memfd"),
    (libc::SYS_close, "close", "the memfd once mapped"),
];

/// Builds the filter of a running program.
///
/// # Errors
///
/// [`SandboxError::Build`] if seccompiler rejects the rules (a bug here,
/// not a property of the machine).
pub fn filter() -> Result<BpfProgram, SandboxError> {
    filter_for(false)
}

/// [`filter`], with [`THREADS_ALLOWED`] too if `threads`.
///
/// # Errors
///
/// As [`filter`].
pub fn filter_for(threads: bool) -> Result<BpfProgram, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let extra = if threads { THREADS_ALLOWED } else { &[] };
    for &(nr, _, _) in ALLOWED.iter().chain(extra) {
        let conditions = match nr {
            libc::SYS_mmap | libc::SYS_mprotect => sandbox::not_writable_and_executable(2),
            libc::SYS_rt_sigaction => sandbox::any_of(0, &[libc::SIGSEGV, libc::SIGBUS]),
            libc::SYS_tgkill => sandbox::any_of(2, &[libc::SIGSYS, libc::SIGSEGV, libc::SIGBUS, libc::SIGABRT]),
            _ => Ok(Vec::new()),
        };
        rules.insert(nr, conditions.map_err(SandboxError::Build)?);
    }
    sandbox::compile(rules).map_err(SandboxError::Build)
}

/// What the report of a forbidden call says.
static REPORT: Report =
    Report { who: "pvm: seccomp: the running program's process", off: "pvm run --no-seccomp", allowed: ALLOWED };

/// Puts the calling thread under [`filter`], after installing the SIGSYS
/// handler that reports a forbidden call.
///
/// # Errors
///
/// [`SandboxError::Build`] (a bug), [`SandboxError::Install`] if the
/// handler cannot be installed or the kernel refuses the filter.
pub fn apply() -> Result<(), SandboxError> {
    install(&filter()?)
}

/// [`apply`] for a program whose guest threads are OS threads
/// (`--threads kernel` or `hybrid`): the threads they make inherit it.
///
/// # Errors
///
/// As [`apply`].
pub fn apply_threaded() -> Result<(), SandboxError> {
    install(&filter_for(true)?)
}

/// Installs `filter` on the calling thread, after the SIGSYS handler.
fn install(filter: &BpfProgram) -> Result<(), SandboxError> {
    sandbox::install(filter, &REPORT).map_err(SandboxError::Install)
}

#[cfg(test)]
mod tests {
    use super::*;

    use sandbox::testing::Child;

    /// Forks; the child installs the filter, runs `body` and exits with 0.
    fn in_child(body: fn()) -> Child {
        let filter = filter().unwrap();
        sandbox::testing::in_child(|| install(&filter).is_ok(), body)
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
    fn the_report_names_the_program_and_the_call() {
        let line = sandbox::sigsys_report(&REPORT, libc::SYS_socket);
        assert_eq!(String::from_utf8_lossy(line.as_bytes()), report(libc::SYS_socket, "socket"));
    }
}
