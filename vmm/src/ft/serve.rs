//! The controller of one attempt of a fault-tolerant run, on the VMM's
//! main thread while the vCPU thread runs the guest. It wakes at the
//! earliest of: the next checkpoint, the IB700's deadline, the next
//! heartbeat, an injected hang or crash, and a poll interval; it asks the
//! vCPU to pause for a checkpoint or a watchdog action and answers the
//! pause ([`crate::control`]).
//!
//! A checkpoint's output is released while the vCPU is still paused, so
//! what goes out is exactly the output of the execution up to the
//! checkpoint. A failure of the machinery itself (the supervisor gone)
//! ends the attempt at the next pause with that error.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::checkpoint::CheckpointStore;
use super::inject::timed_faults;
use super::metrics::RunMetrics;
use super::session::Release;
use super::{FtError, FtPlan, WatchdogAction};
use crate::control::{self, PauseReason, Paused, RunEnd, Verdict};
use crate::controller::{Controller, SnapshotTaken};
use crate::devices::ib700::Expiry;
use crate::devices::WatchdogTimer;
use crate::error::Diagnosis;
use crate::snapshot::file;
use crate::trace::{self, CpuView};
use crate::vcpu::ExitKind;
use crate::vm::VmError;

/// The longest the controller sleeps.
const POLL: Duration = Duration::from_millis(5);
/// A pause asked for and not come by then is asked for again (a request
/// made as the vCPU left its previous pause is cleared with it).
const ASK_AGAIN: Duration = Duration::from_millis(20);

/// What an attempt's controller saw.
#[derive(Debug, Default)]
pub struct Served {
    pub expiries: Vec<Expiry>,
    pub snapshots: Vec<SnapshotTaken>,
}

/// One attempt's controller.
pub(crate) struct Serve<'a, 'b> {
    pub ctl: Controller<'a>,
    pub store: &'b mut CheckpointStore,
    pub release: &'b mut Release,
    pub plan: &'b FtPlan,
    pub metrics: &'b RunMetrics,
    pub log: &'b mut (dyn Write + Send),
    pub watchdog: Option<Arc<WatchdogTimer>>,
    pub attempt: u32,
    /// When the run's `--timeout` passes (a guest paused by the watchdog stays paused until then).
    pub timeout: Option<(Instant, Duration)>,
}

/// The controller's state between wake-ups.
#[derive(Default)]
struct Pending {
    next_checkpoint: Option<Instant>,
    next_beat: Option<Instant>,
    beats: u64,
    /// An expiry waiting for the vCPU to pause.
    expiry: Option<Expiry>,
    /// The vCPU paused by `--watchdog-action pause`.
    held: Option<Paused>,
    /// The machinery failed: the next pause ends the attempt with this.
    fatal: Option<VmError>,
    /// When the pause now wanted was last asked for.
    asked: Option<Instant>,
    served: Served,
}

fn ft_err(e: FtError) -> VmError {
    VmError::Ft(Box::new(e))
}

impl Serve<'_, '_> {
    /// Serves the attempt until the vCPU thread ends.
    pub fn serve(mut self) -> Served {
        let start = Instant::now();
        let mut s = Pending {
            next_checkpoint: self.plan.checkpoint_every.map(|e| start + e),
            next_beat: self.release.supervised().then_some(start),
            ..Pending::default()
        };
        let (hang, crash) = timed_faults(&self.plan.faults, self.attempt);
        let (hang, crash) = (hang.map(|d| start + d), crash.map(|d| start + d));
        loop {
            let now = Instant::now();
            let deadline = self.watchdog.as_ref().and_then(|t| t.deadline().map(|d| t.instant(d)));
            let held_until = self.timeout.map(|(t, _)| t).filter(|_| s.held.is_some());
            let checkpoint = s.next_checkpoint.filter(|_| s.asked.is_none());
            let wake = [checkpoint, deadline, s.next_beat, hang, crash, held_until].into_iter().flatten().min();
            let wait = wake.map_or(POLL, |w| w.saturating_duration_since(now).min(POLL));
            match self.ctl.paused.recv_timeout(wait) {
                Ok(p) => self.on_pause(p, &mut s),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return s.served,
            }
            let now = Instant::now();
            if hang.is_some_and(|t| now >= t) {
                self.hang();
            }
            if crash.is_some_and(|t| now >= t) {
                let _ = writeln!(self.log, "vmm: injected crash: the VMM kills itself with SIGKILL");
                // SAFETY: kill with this process's id and a signal number has no memory effects.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            self.tick(now, &mut s);
        }
    }

    /// The timed work: the watchdog, heartbeats, output, pause requests.
    fn tick(&mut self, now: Instant, s: &mut Pending) {
        if let Some(timer) = &self.watchdog {
            if let Some(e) = timer.take_expiry(timer.now()) {
                self.metrics.watchdog_expiries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let action = self.plan.watchdog.unwrap_or(WatchdogAction::None);
                let _ = writeln!(self.log, "vmm: watchdog: {e}; --watchdog-action {}", action_name(action));
                s.served.expiries.push(e);
                if action != WatchdogAction::None {
                    s.expiry = Some(e);
                }
            }
        }
        if s.next_beat.is_some_and(|t| now >= t) {
            s.beats += 1;
            if let Err(e) = self.release.heartbeat(s.beats, self.metrics.counters()) {
                s.fatal.get_or_insert(ft_err(e));
            }
            s.next_beat = Some(now + self.plan.heartbeat);
        }
        if !self.plan.output_commit {
            if let Err(e) = self.release.flush(self.metrics) {
                s.fatal.get_or_insert(ft_err(e));
            }
        }
        if control::take_signals(control::SIGNAL_SNAPSHOT) != 0 {
            match s.held.take() {
                Some(p) => {
                    self.snapshot(&p, s);
                    s.held = Some(p);
                }
                None => self.ctl.control.request_pause(PauseReason::Snapshot),
            }
        }
        if let (Some(p), Some((at, timeout))) = (&s.held, self.timeout) {
            if now >= at {
                let diagnosis = self.diagnosis(p, "paused by the watchdog until --timeout");
                s.fatal = Some(VmError::Timeout { timeout, diagnosis });
            }
        }
        if s.held.is_some() {
            if let Some(error) = s.fatal.take() {
                if let Some(p) = s.held.take() {
                    let _ = p.reply.send(Verdict::Fail(Box::new(error)));
                }
            }
            return;
        }
        let want = if s.fatal.is_some() || s.expiry.is_some() {
            Some(PauseReason::Watchdog)
        } else if s.next_checkpoint.is_some_and(|t| now >= t) {
            Some(PauseReason::Checkpoint)
        } else {
            None
        };
        if let Some(reason) = want {
            if s.asked.is_none_or(|at| now.duration_since(at) >= ASK_AGAIN) {
                self.ctl.control.request_pause(reason);
                s.asked = Some(now);
            }
        }
    }

    /// Answers a paused vCPU. A pending failure or expiry takes whatever pause comes first.
    fn on_pause(&mut self, p: Paused, s: &mut Pending) {
        s.asked = None;
        if let Some(error) = s.fatal.take() {
            let _ = p.reply.send(Verdict::Fail(Box::new(error)));
            return;
        }
        if let Some(expiry) = s.expiry.take() {
            return self.watchdog_action(p, expiry, s);
        }
        let verdict = match p.reason {
            PauseReason::Checkpoint => {
                self.checkpoint(&p, s);
                match s.fatal.take() {
                    Some(error) => Verdict::Fail(Box::new(error)),
                    None => Verdict::Resume,
                }
            }
            PauseReason::Snapshot => self.snapshot(&p, s),
            // A supervised run has no gdb stub; migration pauses are not asked for here.
            PauseReason::Watchdog | PauseReason::Migration | PauseReason::Debug => Verdict::Resume,
        };
        let _ = p.reply.send(verdict);
    }

    fn checkpoint(&mut self, p: &Paused, s: &mut Pending) {
        s.next_checkpoint = self.plan.checkpoint_every.map(|e| Instant::now() + e);
        let kept = self.store.take(&mut self.ctl, p).map(|c| (c.seq, c.path.clone(), c.exits));
        match kept {
            Ok((seq, path, exits)) => {
                let took = p.at.elapsed();
                self.metrics.checkpoint(took);
                if let Err(e) = self.release.commit(seq, path.as_deref(), exits, took, self.metrics) {
                    s.fatal = Some(ft_err(e));
                }
            }
            Err(e) => {
                let _ = writeln!(
                    self.log,
                    "vmm: checkpoint failed, the previous one stays the latest: {}",
                    crate::cli::chain(&e)
                );
            }
        }
    }

    fn watchdog_action(&mut self, p: Paused, expiry: Expiry, s: &mut Pending) {
        match self.plan.watchdog.unwrap_or(WatchdogAction::None) {
            WatchdogAction::Pause => {
                let until = if self.timeout.is_some() { "until --timeout passes" } else { "until the VMM is killed" };
                let _ = writeln!(
                    self.log,
                    "vmm: watchdog: the guest is paused {until}; with --snapshot, SIGUSR1 writes its snapshot"
                );
                s.held = Some(p);
            }
            WatchdogAction::None => {
                let _ = p.reply.send(Verdict::Resume);
            }
            WatchdogAction::Shutdown | WatchdogAction::Reset | WatchdogAction::Rollback => {
                let diagnosis = self.diagnosis(&p, "where the vCPU was when the watchdog's action paused it");
                let _ = p.reply.send(Verdict::Fail(Box::new(VmError::Watchdog { expiry, diagnosis })));
            }
        }
    }

    /// Writes `--snapshot` from a paused vCPU; the pages it takes from the
    /// dirty log are kept for the next rollback.
    fn snapshot(&mut self, p: &Paused, s: &mut Pending) -> Verdict {
        let Some(plan) = self.ctl.snapshot.clone() else { return Verdict::Resume };
        let written = self.ctl.collect_dirty().and_then(|dirty| {
            self.store.note_dirty(&dirty);
            let state = self.ctl.machine_state(p)?;
            file::write(&plan.path, state, self.ctl.mem, self.ctl.written).map_err(VmError::Snapshot)
        });
        match written {
            Ok(written) => {
                let took = p.at.elapsed();
                s.served.snapshots.push(SnapshotTaken { path: plan.path.clone(), exits: p.exits, written, took });
                if plan.stop {
                    return Verdict::Stop(RunEnd::Snapshotted);
                }
            }
            Err(e) if plan.stop => return Verdict::Fail(Box::new(e)),
            Err(e) => {
                let _ = writeln!(self.log, "vmm: snapshot failed, the guest carried on: {}", crate::cli::chain(&e));
            }
        }
        Verdict::Resume
    }

    /// Registers and instruction of a paused vCPU.
    fn diagnosis(&self, p: &Paused, note: &str) -> Box<Diagnosis> {
        let (regs, sregs) = p.vcpus.first().map(|v| (v.regs, v.sregs)).unwrap_or_default();
        let view = CpuView::new(&regs, &sregs);
        let instruction = trace::trapping_instruction(self.ctl.mem, &view, ExitKind::Other, None);
        Box::new(Diagnosis {
            regs,
            sregs,
            mode: view.mode_name(),
            instruction,
            note: Some(note.to_string()),
            vcpu: None,
        })
    }

    /// `--inject-fault hang-after-ms`: the controller stops for good, as a
    /// deadlocked one would: no heartbeat, checkpoint, output or answer.
    fn hang(&mut self) -> ! {
        let _ = writeln!(self.log, "vmm: injected hang: the controller stops answering (attempt {})", self.attempt);
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// The name of an action on the command line.
pub fn action_name(action: WatchdogAction) -> &'static str {
    match action {
        WatchdogAction::Reset => "reset",
        WatchdogAction::Shutdown => "shutdown",
        WatchdogAction::Pause => "pause",
        WatchdogAction::None => "none",
        WatchdogAction::Rollback => "rollback",
    }
}
