//! Testing a filter: run a body in a forked child under it and see how
//! the child ended.

use std::io::Read;
use std::os::fd::FromRawFd;

/// How a child process ended: its `waitpid` status and its stderr.
#[derive(Debug)]
pub struct Child {
    pub status: libc::c_int,
    pub stderr: String,
}

impl Child {
    /// It died of SIGSYS.
    pub fn killed_by_sigsys(&self) -> bool {
        libc::WIFSIGNALED(self.status) && libc::WTERMSIG(self.status) == libc::SIGSYS
    }

    /// It exited with `code`.
    pub fn exited_with(&self, code: libc::c_int) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == code
    }
}

/// Forks; the child sends its stderr to a pipe, turns core dumps off,
/// calls `install` (which puts it under a filter compiled before the
/// fork), runs `body` and exits with 0 (100 if `install` failed). Between
/// fork and exit the child must make only async-signal-safe calls.
///
/// # Panics
///
/// If the pipe or the fork cannot be made, or waiting for the child fails:
/// this is for tests.
pub fn in_child(install: impl FnOnce() -> bool, body: fn()) -> Child {
    let mut pipe = [0; 2];
    // SAFETY: pipe writes two descriptors into the array it is given.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: the child only calls dup2, setrlimit, what `install` and
    // `body` call, and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: async-signal-safe calls on descriptors this process owns.
        unsafe {
            libc::dup2(pipe[1], 2);
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        }
        let code = if install() {
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
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid, "waitpid");
    Child { status, stderr: String::from_utf8_lossy(&stderr).into_owned() }
}
