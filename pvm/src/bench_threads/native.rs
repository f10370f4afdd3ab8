//! The native baselines of the cost table: the same two operations (null
//! fork, signal-wait) with host threads and host processes.
//!
//! A signal-wait is one hand-off: signal the other side, then wait until
//! it signals back. Two sides ping-ponging `n` round trips make `2n`
//! hand-offs, so each figure is the elapsed time over `2n`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::ThreadBenchError;

/// Null fork of a host thread: `std::thread::spawn` of an empty closure,
/// then `join`, `n` times. Returns the time per fork.
///
/// # Errors
/// If a thread cannot be created.
pub fn thread_null_fork(n: u32) -> Result<Duration, ThreadBenchError> {
    let start = Instant::now();
    for _ in 0..n {
        let h = std::thread::Builder::new().spawn(|| {}).map_err(|e| ThreadBenchError::Native("spawn", e))?;
        h.join().map_err(|_| ThreadBenchError::NativePanic)?;
    }
    Ok(start.elapsed() / n.max(1))
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT reads the u32 at `word`, which is a live
    // AtomicU32 for the whole call; the null timeout means "no timeout".
    // A spurious or early return is fine: the callers loop on the value.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address of `word` as a key; it is
    // a live AtomicU32.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
    }
}

/// Waits until `turn` is `mine`, then hands it to the other side.
fn futex_hand_off(turn: &AtomicU32, mine: u32) {
    loop {
        let t = turn.load(Ordering::Acquire);
        if t == mine {
            break;
        }
        futex_wait(turn, t);
    }
    turn.store(1 - mine, Ordering::Release);
    futex_wake(turn);
}

/// Signal-wait between two host threads through a raw futex word (whose
/// turn it is), no spinning: every hand-off is a FUTEX_WAKE and a
/// FUTEX_WAIT. Returns the time per hand-off.
///
/// # Errors
/// If the partner thread cannot be created.
pub fn futex_signal_wait(n: u32) -> Result<Duration, ThreadBenchError> {
    let turn = Arc::new(AtomicU32::new(0));
    let other = Arc::clone(&turn);
    let partner = std::thread::Builder::new()
        .spawn(move || (0..n).for_each(|_| futex_hand_off(&other, 1)))
        .map_err(|e| ThreadBenchError::Native("spawn", e))?;
    let start = Instant::now();
    (0..n).for_each(|_| futex_hand_off(&turn, 0));
    partner.join().map_err(|_| ThreadBenchError::NativePanic)?;
    Ok(start.elapsed() / (2 * n.max(1)))
}

type Turn = (Mutex<u32>, Condvar);

fn condvar_hand_off(turn: &Turn, mine: u32) -> Result<(), ThreadBenchError> {
    let (lock, cv) = turn;
    let mut t = lock.lock().map_err(|_| ThreadBenchError::NativePanic)?;
    while *t != mine {
        t = cv.wait(t).map_err(|_| ThreadBenchError::NativePanic)?;
    }
    *t = 1 - mine;
    cv.notify_one();
    Ok(())
}

/// Signal-wait between two host threads through a `Mutex` + `Condvar`.
/// Returns the time per hand-off.
///
/// # Errors
/// If the partner thread cannot be created or panics.
pub fn condvar_signal_wait(n: u32) -> Result<Duration, ThreadBenchError> {
    let turn: Arc<Turn> = Arc::new((Mutex::new(0), Condvar::new()));
    let other = Arc::clone(&turn);
    let partner = std::thread::Builder::new()
        .spawn(move || (0..n).try_for_each(|_| condvar_hand_off(&other, 1)))
        .map_err(|e| ThreadBenchError::Native("spawn", e))?;
    let start = Instant::now();
    (0..n).try_for_each(|_| condvar_hand_off(&turn, 0))?;
    partner.join().map_err(|_| ThreadBenchError::NativePanic)??;
    Ok(start.elapsed() / (2 * n.max(1)))
}

fn os_error(what: &'static str) -> ThreadBenchError {
    ThreadBenchError::Native(what, std::io::Error::last_os_error())
}

/// Forks a child that runs `child` (which must only make async-signal-safe
/// calls), `_exit`s with the status it returns, and returns its pid.
fn fork_child(child: impl FnOnce() -> i32) -> Result<libc::pid_t, ThreadBenchError> {
    // SAFETY: fork has no memory-safety preconditions; in a multithreaded
    // parent the child may only make async-signal-safe calls, which is
    // what every `child` here does (read, write, close, _exit).
    match unsafe { libc::fork() } {
        -1 => Err(os_error("fork")),
        0 => exit_child(child()),
        pid => Ok(pid),
    }
}

fn wait_child(pid: libc::pid_t) -> Result<(), ThreadBenchError> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into a live local.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(os_error("waitpid"));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(ThreadBenchError::ChildFailed(status));
    }
    Ok(())
}

fn exit_child(status: i32) -> ! {
    // SAFETY: _exit ends the child at once, without running the parent's
    // atexit handlers or destructors (async-signal-safe).
    unsafe { libc::_exit(status) }
}

/// Null fork of a host process: `fork`, the child `_exit(0)`s, the parent
/// `waitpid`s, `n` times. Returns the time per fork.
///
/// # Errors
/// If fork or waitpid fails, or a child does not exit with 0.
pub fn process_null_fork(n: u32) -> Result<Duration, ThreadBenchError> {
    let start = Instant::now();
    for _ in 0..n {
        let pid = fork_child(|| 0)?;
        wait_child(pid)?;
    }
    Ok(start.elapsed() / n.max(1))
}

fn pipe() -> Result<[libc::c_int; 2], ThreadBenchError> {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the 2-element array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_error("pipe"));
    }
    Ok(fds)
}

fn close(fd: libc::c_int) {
    // SAFETY: closing a descriptor this module opened and owns.
    unsafe { libc::close(fd) };
}

/// Writes or reads one byte on `fd`; false if it did not move.
fn byte_io(fd: libc::c_int, write: bool) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: one byte to or from a live one-byte buffer.
    let n = unsafe {
        if write {
            libc::write(fd, b.as_ptr().cast(), 1)
        } else {
            libc::read(fd, b.as_mut_ptr().cast(), 1)
        }
    };
    n == 1
}

/// Signal-wait between two host processes: one byte ping-ponged over a
/// pair of pipes. Returns the time per hand-off.
///
/// # Errors
/// If a pipe, fork or waitpid fails, or the child does not echo.
pub fn process_signal_wait(n: u32) -> Result<Duration, ThreadBenchError> {
    let [ping_r, ping_w] = pipe()?;
    let [pong_r, pong_w] = pipe()?;
    let pid = fork_child(|| {
        close(ping_w);
        close(pong_r);
        // Echo n bytes (not "until EOF": a child forked at the same time
        // by another thread may hold a copy of the write end).
        i32::from(!(0..n).all(|_| byte_io(ping_r, false) && byte_io(pong_w, true)))
    })?;
    close(ping_r);
    close(pong_w);
    let start = Instant::now();
    let ok = (0..n).all(|_| byte_io(ping_w, true) && byte_io(pong_r, false));
    let elapsed = start.elapsed();
    close(ping_w);
    close(pong_r);
    wait_child(pid)?;
    if !ok {
        return Err(ThreadBenchError::ChildFailed(-1));
    }
    Ok(elapsed / (2 * n.max(1)))
}

/// parsum natively, the control of the parallel speedup: the same sum
/// split over `threads` scoped threads. Returns the time and the total.
///
/// # Errors
/// If a thread panics.
pub fn parsum(n: u64, threads: u64) -> Result<(Duration, u64), ThreadBenchError> {
    let t = threads.max(1);
    let start = Instant::now();
    let total = std::thread::scope(|s| {
        let parts: Vec<_> = (0..t)
            .map(|k| {
                s.spawn(move || {
                    let (lo, hi) = (k * n / t, (k + 1) * n / t);
                    (lo..hi).map(|i| std::hint::black_box((i.wrapping_mul(i) ^ i) & 1023)).sum::<u64>()
                })
            })
            .collect();
        parts.into_iter().map(|h| h.join().map_err(|_| ThreadBenchError::NativePanic)).sum::<Result<u64, _>>()
    })?;
    Ok((start.elapsed(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_baseline_runs_and_gives_a_positive_time() {
        for (name, t) in [
            ("thread fork", thread_null_fork(20)),
            ("futex", futex_signal_wait(200)),
            ("condvar", condvar_signal_wait(200)),
            ("process fork", process_null_fork(5)),
            ("pipes", process_signal_wait(50)),
        ] {
            let t = t.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(t > Duration::ZERO, "{name}");
        }
    }

    #[test]
    fn native_parsum_gives_the_guests_total_on_any_number_of_threads() {
        let want = crate::bench_threads::guest::parsum_total(10_001);
        for t in [0, 1, 2, 3, 7] {
            assert_eq!(parsum(10_001, t).unwrap().1, want, "{t} threads");
        }
        assert_eq!(parsum(0, 2).unwrap().1, 0);
    }

    #[test]
    fn zero_operations_are_not_a_division_by_zero() {
        assert!(futex_signal_wait(0).is_ok());
        assert!(process_signal_wait(0).is_ok());
        assert!(thread_null_fork(0).is_ok());
    }
}
