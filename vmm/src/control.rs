//! Pausing a running vCPU at a consistent point, for a snapshot or the end
//! of a migration's pre-copy, and the signals that ask for it.
//!
//! The thread that wants the pause (the controller, on the VMM's main
//! thread) sets the pause flag, sets `immediate_exit` in the vCPU's
//! `kvm_run` and kicks the vCPU thread with the watchdog's signal, so
//! `KVM_RUN` returns at once whether the vCPU is inside it or about to enter
//! it. The vCPU thread then re-enters `KVM_RUN` with `immediate_exit` set:
//! KVM completes the last exit's I/O and returns `EINTR` without running a
//! guest instruction, and only then is the state consistent (the KVM API
//! guarantees it at that point). The vCPU thread saves its registers and
//! its devices, hands them over as [`Paused`] and waits for a [`Verdict`].
//!
//! `SIGUSR1` (snapshot now) and `SIGUSR2` (migrate now) only set a bit
//! that the controller polls: a signal handler can do nothing else safely.

use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Mutex, Once, PoisonError};

use crate::snapshot::state::{DeviceRecord, VcpuState};

/// Why the vCPU was paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// Write a snapshot (`--snapshot-after-exits`, SIGUSR1).
    Snapshot,
    /// Stop-and-copy: the last step of a live migration.
    Migration,
    /// The gdb stub wants the vCPU stopped (Ctrl-C, gdb connecting).
    Debug,
    /// Take a checkpoint (`--checkpoint-every`).
    Checkpoint,
    /// Carry out `--watchdog-action`, or end an attempt whose controller failed.
    Watchdog,
}

/// How a run ended, when it ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest wrote this status to the debug-exit port.
    Guest(u8),
    /// A snapshot was written and the run stopped (`--snapshot-and-stop`).
    Snapshotted,
    /// The guest now runs on the migration's destination.
    Migrated,
    /// The guest reset the machine (the i8042's reset line).
    Reset,
}

/// What the controller tells a paused vCPU.
#[derive(Debug)]
pub enum Verdict {
    /// Carry on.
    Resume,
    /// End the run.
    Stop(RunEnd),
    /// End the run with this failure (a watchdog action, a failed controller).
    Fail(Box<crate::vm::VmError>),
}

/// A paused vCPU's state, handed to the controller.
#[derive(Debug)]
pub struct Paused {
    pub reason: PauseReason,
    pub vcpus: Vec<VcpuState>,
    pub devices: Vec<DeviceRecord>,
    /// Exits handled so far in this run.
    pub exits: u64,
    /// When the vCPU started to pause.
    pub at: std::time::Instant,
    /// Where the controller sends its verdict.
    pub reply: Sender<Verdict>,
}

const NO_PAUSE: u8 = 0;
const PAUSE_SNAPSHOT: u8 = 1;
const PAUSE_MIGRATION: u8 = 2;
const PAUSE_DEBUG: u8 = 3;
const PAUSE_CHECKPOINT: u8 = 4;
const PAUSE_WATCHDOG: u8 = 5;

/// The shared state of one run between the vCPU thread and the controller.
#[derive(Debug, Default)]
pub struct Control {
    pause: AtomicU8,
    /// `&kvm_run.immediate_exit` of the vCPU, set by the vCPU thread.
    immediate_exit: AtomicPtr<u8>,
    /// The vCPU thread's `pthread_t`, 0 until it runs and once it has ended.
    thread: AtomicU64,
    /// Held while the thread is signalled and while it detaches, so no
    /// signal goes to a thread that has ended (and may have been joined).
    signalling: Mutex<()>,
}

impl Control {
    /// Called on the vCPU thread before its loop: where to poke it.
    ///
    /// # Safety
    ///
    /// `immediate_exit` must point into the vCPU's `kvm_run` mapping and
    /// stay valid as long as this `Control` can be used (the run's scope),
    /// and from now on it may only be accessed through [`Control`].
    pub unsafe fn attach(&self, immediate_exit: *mut u8) {
        self.immediate_exit.store(immediate_exit, Ordering::SeqCst);
        // SAFETY: pthread_self has no preconditions.
        self.thread.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
    }

    /// Called on the vCPU thread as its run ends: from now on nobody
    /// signals it (its `pthread_t` dies with it once it is joined).
    pub fn detach(&self) {
        let _held = self.signalling.lock().unwrap_or_else(PoisonError::into_inner);
        self.thread.store(0, Ordering::SeqCst);
    }

    /// Sends the kick signal to the vCPU thread, if it is attached.
    fn signal(&self) {
        let _held = self.signalling.lock().unwrap_or_else(PoisonError::into_inner);
        let thread = self.thread.load(Ordering::SeqCst);
        if thread != 0 {
            crate::watchdog::install_handler();
            // SAFETY: the thread is attached, so it has not reached `detach`
            // and cannot until we release the lock: its pthread_t is valid.
            unsafe { libc::pthread_kill(thread as libc::pthread_t, crate::watchdog::kick_signal()) };
        }
    }

    fn flag(&self) -> Option<&AtomicU8> {
        let p = self.immediate_exit.load(Ordering::SeqCst);
        // SAFETY: `attach`'s contract: `p` points into the live kvm_run
        // mapping and is only accessed atomically through here; u8 needs no alignment.
        (!p.is_null()).then(|| unsafe { AtomicU8::from_ptr(p) })
    }

    /// Sets or clears `immediate_exit`.
    pub fn set_immediate_exit(&self, on: bool) {
        if let Some(flag) = self.flag() {
            flag.store(u8::from(on), Ordering::SeqCst);
        }
    }

    /// Asks the vCPU to pause for `reason` (from any thread).
    pub fn request_pause(&self, reason: PauseReason) {
        let code = match reason {
            PauseReason::Snapshot => PAUSE_SNAPSHOT,
            PauseReason::Migration => PAUSE_MIGRATION,
            PauseReason::Debug => PAUSE_DEBUG,
            PauseReason::Checkpoint => PAUSE_CHECKPOINT,
            PauseReason::Watchdog => PAUSE_WATCHDOG,
        };
        self.pause.store(code, Ordering::SeqCst);
        self.set_immediate_exit(true);
        self.signal();
    }

    /// Kicks the vCPU out of `KVM_RUN` for good, without asking for a
    /// pause: `immediate_exit` stays set and the thread gets the signal
    /// (the end of an SMP run, [`crate::smp::Crew::end`]).
    pub fn kick(&self) {
        self.set_immediate_exit(true);
        self.signal();
    }

    /// The pause asked for, if any (on the vCPU thread).
    pub fn pending_pause(&self) -> Option<PauseReason> {
        match self.pause.load(Ordering::SeqCst) {
            PAUSE_SNAPSHOT => Some(PauseReason::Snapshot),
            PAUSE_MIGRATION => Some(PauseReason::Migration),
            PAUSE_DEBUG => Some(PauseReason::Debug),
            PAUSE_CHECKPOINT => Some(PauseReason::Checkpoint),
            PAUSE_WATCHDOG => Some(PauseReason::Watchdog),
            _ => None,
        }
    }

    /// Clears the pause request and `immediate_exit` (after a pause).
    pub fn clear_pause(&self) {
        self.pause.store(NO_PAUSE, Ordering::SeqCst);
        self.set_immediate_exit(false);
    }
}

/// SIGUSR1 asked for a snapshot.
pub const SIGNAL_SNAPSHOT: u32 = 1;
/// SIGUSR2 asked for a migration.
pub const SIGNAL_MIGRATE: u32 = 2;
static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_request(signal: libc::c_int) {
    let bit = if signal == libc::SIGUSR1 { SIGNAL_SNAPSHOT } else { SIGNAL_MIGRATE };
    SIGNALS.fetch_or(bit, Ordering::SeqCst);
}

/// Makes SIGUSR1 and SIGUSR2 requests instead of their default (ending the
/// process). Called only by runs that snapshot or migrate.
pub fn install_signal_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in [libc::SIGUSR1, libc::SIGUSR2] {
            // SAFETY: a zeroed sigaction with an empty mask and a handler that
            // only does an atomic fetch_or, which is async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_request as *const () as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
    });
}

/// Takes the signal requests that arrived since the last call (bits
/// [`SIGNAL_SNAPSHOT`], [`SIGNAL_MIGRATE`]) among `wanted`.
pub fn take_signals(wanted: u32) -> u32 {
    SIGNALS.fetch_and(!wanted, Ordering::SeqCst) & wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_request_sets_immediate_exit_and_is_cleared_after() {
        let control = Control::default();
        let mut run_flag = 0u8;
        // SAFETY: `run_flag` outlives `control` and is only read through it below.
        unsafe { control.attach(&mut run_flag) };
        assert_eq!(control.pending_pause(), None);
        control.request_pause(PauseReason::Migration);
        assert_eq!(control.pending_pause(), Some(PauseReason::Migration));
        assert_eq!(control.flag().map(|f| f.load(Ordering::SeqCst)), Some(1));
        control.clear_pause();
        assert_eq!(control.pending_pause(), None);
        assert_eq!(control.flag().map(|f| f.load(Ordering::SeqCst)), Some(0));
    }

    #[test]
    fn a_detached_thread_is_no_longer_signalled_but_its_flag_still_set() {
        let control = Control::default();
        let mut run_flag = 0u8;
        // SAFETY: `run_flag` outlives `control` and is only read through it below.
        unsafe { control.attach(&mut run_flag) };
        assert_ne!(control.thread.load(Ordering::SeqCst), 0);
        control.detach();
        assert_eq!(control.thread.load(Ordering::SeqCst), 0, "no pthread_t of an ended thread is kept");
        control.kick(); // no signal: it would go to an ended thread
        assert_eq!(control.flag().map(|f| f.load(Ordering::SeqCst)), Some(1));
    }

    #[test]
    fn signals_become_requests_that_are_taken_once() {
        install_signal_handlers();
        // SAFETY: raise sends SIGUSR2 to this thread; the handler above takes it.
        unsafe { libc::raise(libc::SIGUSR2) };
        assert_eq!(take_signals(SIGNAL_SNAPSHOT), 0, "only the asked-for bits are taken");
        assert_eq!(take_signals(SIGNAL_MIGRATE), SIGNAL_MIGRATE);
        assert_eq!(take_signals(SIGNAL_MIGRATE), 0);
    }
}
