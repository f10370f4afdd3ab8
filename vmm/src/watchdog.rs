//! The run-time watchdog: after `--timeout`, kicks the vCPU thread out of
//! KVM_RUN with a signal (repeating until the run loop notices), so a
//! guest that never finishes cannot hang the VMM.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::Duration;

/// Interval between kicks once the deadline has passed.
const KICK_INTERVAL: Duration = Duration::from_millis(1);

extern "C" fn on_kick(_signal: libc::c_int) {}

pub(crate) fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// Installs a do-nothing handler so the kick interrupts KVM_RUN with EINTR
/// instead of killing the process.
pub(crate) fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sigaction with a zeroed struct, an empty mask and a handler
        // that touches nothing is async-signal-safe; SA_RESTART is left out
        // on purpose so that KVM_RUN returns EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_kick as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(kick_signal(), &action, std::ptr::null_mut());
        }
    });
}

/// A running watchdog; dropping it stops the thread.
#[derive(Debug)]
pub struct Watchdog {
    expired: Arc<AtomicBool>,
    /// Signals sent to the vCPU thread so far.
    kicks: Arc<AtomicU64>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts watching the calling thread (the vCPU thread).
    ///
    /// # Errors
    ///
    /// The OS error if the watchdog's thread cannot be started.
    pub fn start(timeout: Duration) -> std::io::Result<Self> {
        install_handler();
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let expired = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let kicks = Arc::new(AtomicU64::new(0));
        let (flag, sent) = (expired.clone(), kicks.clone());
        let thread = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
            if stopped.recv_timeout(timeout) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            flag.store(true, Ordering::SeqCst);
            while stopped.recv_timeout(KICK_INTERVAL) == Err(RecvTimeoutError::Timeout) {
                // Counted first, so a kick that has arrived is always counted.
                sent.fetch_add(1, Ordering::SeqCst);
                // SAFETY: `target` is the vCPU thread, which outlives this
                // thread: `Watchdog::drop` joins us before it can exit.
                unsafe { libc::pthread_kill(target, kick_signal()) };
            }
        })?;
        Ok(Watchdog { expired, kicks, stop: Some(stop), thread: Some(thread) })
    }

    /// True once the deadline has passed.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    /// Kick signals sent to the vCPU thread so far.
    pub fn kicks(&self) -> u64 {
        self.kicks.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_and_interrupts_a_blocking_call() {
        let w = Watchdog::start(Duration::from_millis(20)).unwrap();
        assert!(!w.expired());
        // A blocking sleep stands in for KVM_RUN: the kick ends it early with EINTR.
        let mut ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
        let start = std::time::Instant::now();
        // SAFETY: nanosleep writes the remaining time into `ts`, which we own.
        let rc = unsafe { libc::nanosleep(&ts.clone(), &mut ts) };
        assert_eq!(rc, -1);
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(w.expired());
        assert!(w.kicks() >= 1);
    }

    #[test]
    fn dropping_before_the_deadline_stops_it() {
        const DEADLINE: Duration = Duration::from_millis(200);
        // The watchdog runs on a thread of its own so that a drop that hangs
        // fails this test after a bound instead of hanging it.
        let (done, report) = mpsc::channel();
        std::thread::spawn(move || {
            let w = Watchdog::start(DEADLINE).unwrap();
            let (expired, kicks) = (w.expired.clone(), w.kicks.clone());
            let dropping = std::time::Instant::now();
            drop(w);
            let drop_took = dropping.elapsed();
            // Wait well past the deadline: a watchdog still running would expire and kick now.
            std::thread::sleep(DEADLINE * 3);
            let _ = done.send((drop_took, expired.load(Ordering::SeqCst), kicks.load(Ordering::SeqCst)));
        });
        let (drop_took, expired, kicks) =
            report.recv_timeout(Duration::from_secs(10)).expect("dropping the watchdog did not return within 10 s");
        assert!(drop_took < Duration::from_millis(100), "drop took {drop_took:?}");
        assert!(!expired, "the watchdog expired after it was dropped");
        assert_eq!(kicks, 0, "the watchdog kicked the vCPU thread after it was dropped");
    }
}
