//! A fault-tolerant run: the guest runs in attempts. Each attempt is a
//! vCPU thread (under its seccomp filter) and the controller loop of
//! [`super::serve`] on the calling thread, which takes the checkpoints,
//! watches the IB700, sends the heartbeats and releases the output. When
//! an attempt fails (a triple fault, an emulation failure, the watchdog,
//! an injected fault), the vCPU thread has ended: this thread puts the
//! latest checkpoint back into the same VM (memory, VM-wide state, vCPU
//! registers, devices), drops the output held since, and starts the next
//! attempt, until `--max-restarts` rollbacks have been made.
//!
//! The state is set from this thread, outside the vCPU filter, so the
//! filter never allows a `KVM_SET_*` ioctl; the vCPU thread only makes the
//! read-only saves of the pause, as in any run that snapshots.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::channel::ChildChannel;
use super::checkpoint::{CheckpointStats, CheckpointStore, StoreOptions};
use super::inject::FaultInjector;
use super::metrics::RunMetrics;
use super::output::{OutputDelay, OutputGate};
use super::serve::{Serve, Served};
use super::wire::{Counters, Frame};
use super::{FtError, FtPlan, OnFailure, VcpuHooks, VmParts, WatchdogAction};
use crate::control::{self, Control};
use crate::controller::{Controller, SnapshotPlan, SnapshotTaken};
use crate::devices::ib700::Expiry;
use crate::kvmstate::VcpuCaps;
use crate::runloop::{Link, VcpuRun};
use crate::seccomp::{self, KvmFds};
use crate::stats::ExitStats;
use crate::vm::{RunReport, Vm, VmError};

/// Where the guest's output and the run's reports go.
pub enum Release {
    /// Output on stdout (through the gate when output commit is on).
    Stdout { out: Box<dyn Write + Send>, gate: Option<OutputGate> },
    /// Everything to a supervisor, as frames.
    Supervisor { channel: ChildChannel, gate: OutputGate },
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Release::Stdout { .. } => "Release::Stdout",
            Release::Supervisor { .. } => "Release::Supervisor",
        })
    }
}

fn channel_err(doing: &'static str) -> impl FnOnce(std::io::Error) -> FtError {
    move |source| FtError::Channel { doing, source }
}

impl Release {
    /// Output to `out`, held by `gate` if there is one.
    pub fn stdout(out: Box<dyn Write + Send>, gate: Option<OutputGate>) -> Self {
        Release::Stdout { out, gate }
    }

    /// True if a supervisor gets the frames.
    pub fn supervised(&self) -> bool {
        matches!(self, Release::Supervisor { .. })
    }

    fn gate(&self) -> Option<&OutputGate> {
        match self {
            Release::Stdout { gate, .. } => gate.as_ref(),
            Release::Supervisor { gate, .. } => Some(gate),
        }
    }

    /// Sends what the gate holds on (output commit off, or a commit).
    pub(crate) fn flush(&mut self, metrics: &RunMetrics) -> Result<(), FtError> {
        let Some(gate) = self.gate() else { return Ok(()) };
        let bytes = gate.release(Instant::now());
        let delay = gate.delay();
        metrics.output_released_bytes.store(delay.bytes, std::sync::atomic::Ordering::Relaxed);
        let max = u64::try_from(delay.max.as_nanos()).unwrap_or(u64::MAX);
        metrics.output_delay_max_ns.store(max, std::sync::atomic::Ordering::Relaxed);
        metrics.output_held_bytes.store(0, std::sync::atomic::Ordering::Relaxed);
        if bytes.is_empty() {
            return Ok(());
        }
        match self {
            // A closed stdout must not stop the guest.
            Release::Stdout { out, .. } => {
                let _ = out.write_all(&bytes).and_then(|()| out.flush());
                Ok(())
            }
            Release::Supervisor { channel, .. } => channel.output(&bytes).map_err(channel_err("sending output")),
        }
    }

    /// A checkpoint is kept: what was held before it goes out.
    pub(crate) fn commit(
        &mut self,
        seq: u64,
        path: Option<&std::path::Path>,
        exits: u64,
        took: Duration,
        metrics: &RunMetrics,
    ) -> Result<(), FtError> {
        self.flush(metrics)?;
        if let Release::Supervisor { channel, .. } = self {
            let path = path.map(|p| p.display().to_string()).unwrap_or_default();
            let took_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            channel
                .send(&Frame::Commit { seq, path, exits, took_ns })
                .map_err(channel_err("committing a checkpoint"))?;
        }
        Ok(())
    }

    /// A rollback: what was held since the checkpoint is dropped.
    fn discard(&mut self) -> Result<usize, FtError> {
        let n = self.gate().map_or(0, OutputGate::discard);
        if let Release::Supervisor { channel, .. } = self {
            channel.send(&Frame::Discard).map_err(channel_err("discarding output"))?;
        }
        Ok(n)
    }

    pub(crate) fn heartbeat(&mut self, seq: u64, counters: Counters) -> Result<(), FtError> {
        match self {
            Release::Supervisor { channel, .. } => {
                channel.send(&Frame::Heartbeat { seq, counters }).map_err(channel_err("sending a heartbeat"))
            }
            Release::Stdout { .. } => Ok(()),
        }
    }

    /// Tells the supervisor (if any) something; a supervisor that is gone cannot hear it.
    fn tell(&mut self, frame: &Frame) {
        if let Release::Supervisor { channel, .. } = self {
            let _ = channel.send(frame);
        }
    }

    /// The delays of the output released so far.
    pub fn delay(&self) -> OutputDelay {
        self.gate().map(OutputGate::delay).unwrap_or_default()
    }
}

/// How a run goes, beyond its fault tolerance.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    pub trace: bool,
    pub stats: bool,
    /// The whole run's bound, over all attempts.
    pub timeout: Option<Duration>,
    pub seccomp: bool,
    pub snapshot: Option<SnapshotPlan>,
}

/// One rollback.
#[derive(Clone, Debug)]
pub struct Rollback {
    /// The attempt that failed.
    pub attempt: u32,
    pub cause: String,
    /// The checkpoint gone back to, and the exits it had seen.
    pub seq: u64,
    pub exits: u64,
    pub pages: u64,
    pub took: Duration,
    /// Output bytes dropped.
    pub discarded: usize,
}

/// What a fault-tolerant run did.
#[derive(Debug)]
pub struct FtReport {
    /// How the last attempt ended: the guest's end, or the failure that ended the run.
    pub outcome: Result<RunReport, VmError>,
    pub rollbacks: Vec<Rollback>,
    pub checkpoints: CheckpointStats,
    /// Where checkpoints were kept.
    pub in_dir: bool,
    pub expiries: Vec<Expiry>,
    pub output: OutputDelay,
    pub output_commit: bool,
    pub snapshots: Vec<SnapshotTaken>,
}

impl FtReport {
    /// The process exit status.
    pub fn status(&self) -> i32 {
        match &self.outcome {
            Ok(r) => r.status(),
            Err(e) => e.exit_code() as i32,
        }
    }
}

/// A `Write` that locks a shared sink for each write: the trace (vCPU
/// thread) and the controller's reports (this thread) share stderr.
struct LogSink<'m, 'e>(&'m Mutex<&'e mut (dyn Write + Send)>);

impl Write for LogSink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut w) => w.write(buf),
            Err(_) => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A VM prepared for a fault-tolerant run: the first checkpoint taken.
pub struct Session<'v> {
    parts: VmParts<'v>,
    plan: FtPlan,
    caps: VcpuCaps,
    store: CheckpointStore,
    release: Release,
    metrics: Arc<RunMetrics>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("plan", &self.plan).finish_non_exhaustive()
    }
}

/// Runs `vm` fault-tolerantly as `plan` says (see the module docs).
///
/// # Errors
///
/// What stops the run from starting (KVM calls, the first checkpoint);
/// the guest's own failures are in [`FtReport::outcome`].
pub fn run(
    vm: &mut Vm,
    plan: &FtPlan,
    release: Release,
    opts: SessionOptions,
    err: &mut (dyn Write + Send),
) -> Result<FtReport, VmError> {
    Session::new(vm, plan, release)?.run(opts, err)
}

fn ft_err(e: FtError) -> VmError {
    VmError::Ft(Box::new(e))
}

impl<'v> Session<'v> {
    /// Turns on the dirty log, asks KVM what it can save, takes the first
    /// checkpoint (or, with `plan.resume`, takes the file the VM was
    /// restored from as it).
    ///
    /// # Errors
    ///
    /// A failed KVM call, or a first checkpoint that cannot be kept.
    pub fn new(vm: &'v mut Vm, plan: &FtPlan, release: Release) -> Result<Self, VmError> {
        if let Some(action) = plan.watchdog {
            vm.add_watchdog().map_err(|_| ft_err(FtError::NoWatchdog(action)))?;
        }
        let mut parts = vm.parts()?;
        let caps = VcpuCaps::probe(parts.kvm, parts.vm, parts.vcpu, parts.machine.timers).map_err(VmError::State)?;
        let opts = StoreOptions {
            dir: plan.checkpoint_dir.clone(),
            full: plan.full_checkpoints,
            keep_boot: plan.watchdog == Some(WatchdogAction::Reset),
            first_seq: plan.first_seq,
            resume: plan.resume.clone(),
        };
        let store = CheckpointStore::start(&mut parts, &caps, opts).map_err(|e| ft_err(FtError::Checkpoint(e)))?;
        let metrics = plan.metrics.clone().unwrap_or_default();
        Ok(Session { parts, plan: plan.clone(), caps, store, release, metrics })
    }

    /// The number of the first checkpoint.
    pub fn first_seq(&self) -> u64 {
        self.store.latest().seq
    }

    /// Sets the attempt number (a standby learns it when it is promoted).
    pub fn set_attempt(&mut self, attempt: u32) {
        self.plan.attempt = attempt;
    }

    /// Runs the attempts; `err` gets the trace and the reports.
    ///
    /// # Errors
    ///
    /// A failure of the machinery itself (a thread, the filter, the
    /// supervisor's channel); the guest's failures are in the report.
    pub fn run(mut self, opts: SessionOptions, err: &mut (dyn Write + Send)) -> Result<FtReport, VmError> {
        let log = Mutex::new(err);
        let start = Instant::now();
        if opts.snapshot.is_some() {
            control::install_signal_handlers();
        }
        let latest = self.store.latest();
        let first = (latest.seq, latest.path.clone(), latest.exits);
        self.release.commit(first.0, first.1.as_deref(), first.2, Duration::ZERO, &self.metrics).map_err(ft_err)?;
        self.release.tell(&Frame::Running { seq: first.0 });
        let fds = KvmFds { vcpu: self.parts.vcpu.as_raw_fd(), vm: self.parts.vm.as_raw_fd() };
        let filter = if opts.seccomp { Some(seccomp::vcpu_filter(fds, true).map_err(VmError::Seccomp)?) } else { None };
        let mut report = FtReport {
            outcome: Err(VmError::Ft(Box::new(FtError::Options("no attempt ran".into())))),
            rollbacks: Vec::new(),
            checkpoints: CheckpointStats::default(),
            in_dir: self.plan.checkpoint_dir.is_some(),
            expiries: Vec::new(),
            output: OutputDelay::default(),
            output_commit: self.plan.output_commit,
            snapshots: Vec::new(),
        };
        let mut attempt = self.plan.attempt;
        loop {
            let timeout = opts.timeout.map(|t| t.saturating_sub(start.elapsed()));
            let snapshot_after =
                opts.snapshot.as_ref().and_then(|p| p.after_exits).filter(|_| report.rollbacks.is_empty());
            let (outcome, served) = self.attempt(attempt, &opts, timeout, snapshot_after, filter.as_ref(), &log)?;
            report.expiries.extend(served.expiries);
            report.snapshots.extend(served.snapshots);
            let failure = match outcome {
                Ok(run) => {
                    self.release.flush(&self.metrics).map_err(ft_err)?;
                    if let crate::control::RunEnd::Guest(status) = run.end {
                        self.release.tell(&Frame::End { status });
                    }
                    report.outcome = Ok(run);
                    break;
                }
                Err(e) => e,
            };
            match self.recover(&failure, attempt, report.rollbacks.len(), &log)? {
                Some(rollback) => {
                    report.rollbacks.push(rollback);
                    attempt += 1;
                }
                None => {
                    let _ = self.release.flush(&self.metrics);
                    let cause = short_cause(&failure);
                    let unix_ns = unix_ns();
                    self.release.tell(&Frame::Failure { status: failure.exit_code() as u8, cause, unix_ns });
                    report.outcome = Err(failure);
                    break;
                }
            }
        }
        report.checkpoints = self.store.stats;
        report.output = self.release.delay();
        Ok(report)
    }

    /// Rolls back after `failure` if the plan allows it; `None` if the run ends.
    fn recover(
        &mut self,
        failure: &VmError,
        attempt: u32,
        done: usize,
        log: &Mutex<&mut (dyn Write + Send)>,
    ) -> Result<Option<Rollback>, VmError> {
        let recoverable =
            matches!(failure, VmError::Guest { .. } | VmError::HaltedForever { .. } | VmError::VcpuKilled { .. });
        let (wanted, to_boot) = match failure {
            VmError::Watchdog { .. } => match self.plan.watchdog {
                Some(WatchdogAction::Reset) => (true, true),
                Some(WatchdogAction::Rollback) => (true, false),
                _ => (false, false),
            },
            _ => (recoverable && self.plan.on_failure == OnFailure::Rollback, false),
        };
        let cause = short_cause(failure);
        let mut sink = LogSink(log);
        if !wanted {
            return Ok(None);
        }
        if done >= self.plan.max_restarts as usize {
            let _ = writeln!(
                sink,
                "vmm: giving up after {done} rollbacks (--max-restarts {}): {cause}",
                self.plan.max_restarts
            );
            return Ok(None);
        }
        // A reset is a reboot, not a re-execution: what the guest printed before it stays shown.
        let discarded = if to_boot {
            self.release.flush(&self.metrics).map_err(ft_err)?;
            0
        } else {
            self.release.discard().map_err(ft_err)?
        };
        let age = self.store.latest().taken.elapsed();
        let rolled = self.store.rollback(&mut self.parts, to_boot).map_err(|e| ft_err(FtError::Checkpoint(e)))?;
        self.metrics.rollbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let target = if to_boot {
            format!("the first checkpoint, the guest's start (a reset; now checkpoint {})", rolled.seq)
        } else {
            format!("checkpoint {} (taken {:.1} ms before)", rolled.seq, age.as_secs_f64() * 1e3)
        };
        let _ = writeln!(
            sink,
            "vmm: rollback {} of at most {}: {cause}; back to {target}, {} pages restored in {:.3} ms, {discarded} bytes of output dropped",
            done + 1,
            self.plan.max_restarts,
            rolled.pages,
            rolled.took.as_secs_f64() * 1e3
        );
        Ok(Some(Rollback {
            attempt,
            cause,
            seq: rolled.seq,
            exits: rolled.exits,
            pages: rolled.pages,
            took: rolled.took,
            discarded,
        }))
    }

    /// One attempt: the vCPU thread and the controller loop.
    #[allow(clippy::type_complexity)]
    fn attempt(
        &mut self,
        attempt: u32,
        opts: &SessionOptions,
        timeout: Option<Duration>,
        snapshot_after: Option<u64>,
        filter: Option<&sandbox::seccompiler::BpfProgram>,
        log: &Mutex<&mut (dyn Write + Send)>,
    ) -> Result<(Result<RunReport, VmError>, Served), VmError> {
        let control = Arc::new(Control::default());
        let (events, paused) = mpsc::channel();
        let hooks = VcpuHooks { faults: FaultInjector::new(&self.plan.faults, attempt), metrics: self.metrics.clone() };
        let link = Link { control: control.clone(), events, caps: self.caps.clone(), snapshot_after, ft: Some(hooks) };
        let mut trace = LogSink(log);
        let p = &mut self.parts;
        let run = VcpuRun {
            vcpu: &mut *p.vcpu,
            buses: (&mut *p.buses).into(),
            mem: p.mem,
            trace: if opts.trace { Some(&mut trace as &mut (dyn Write + Send)) } else { None },
            stats: opts.stats.then(ExitStats::default),
            timeout,
            link: Some(link),
            exits: 0,
            debug: None,
            seat: None,
        };
        std::thread::scope(|scope| {
            let vcpu = std::thread::Builder::new()
                .name("vcpu0".into())
                .spawn_scoped(scope, move || run.run(filter))
                .map_err(|source| VmError::Thread { name: "vCPU", source })?;
            let ctl = Controller {
                vm: p.vm,
                mem: p.mem,
                machine: p.machine,
                cpuid: p.cpuid,
                tsc_khz: p.tsc_khz,
                written: &mut *p.written,
                control: &control,
                paused,
                snapshot: opts.snapshot.clone(),
                migrate: None,
            };
            let serve = Serve {
                ctl,
                store: &mut self.store,
                release: &mut self.release,
                plan: &self.plan,
                metrics: &self.metrics,
                log: &mut LogSink(log),
                watchdog: p.watchdog.clone(),
                attempt,
                timeout: timeout.zip(opts.timeout).map(|(left, whole)| (Instant::now() + left, whole)),
            };
            let served = serve.serve();
            let outcome = vcpu.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            Ok((outcome, served))
        })
    }
}

/// A failure in a few words, for the rollback lines and the supervisor's log.
pub fn short_cause(e: &VmError) -> String {
    let injected = |d: &crate::error::Diagnosis| d.note.as_deref().is_some_and(|n| n.starts_with("injected"));
    match e {
        VmError::Guest { error, diagnosis } => {
            let what = match error {
                crate::vcpu::VcpuError::Shutdown => "a triple fault (KVM_EXIT_SHUTDOWN)",
                crate::vcpu::VcpuError::InternalError => "an emulation failure (KVM_EXIT_INTERNAL_ERROR)",
                crate::vcpu::VcpuError::FailEntry { .. } => "a failed VM entry (KVM_EXIT_FAIL_ENTRY)",
                crate::vcpu::VcpuError::SystemEvent { .. } => "a system event (KVM_EXIT_SYSTEM_EVENT)",
                crate::vcpu::VcpuError::Unexpected(_) => "an exit the VMM does not handle",
            };
            let rip = diagnosis.regs.rip;
            if injected(diagnosis) {
                format!("{what} at rip {rip:#x}, injected by --inject-fault")
            } else {
                format!("{what} at rip {rip:#x}")
            }
        }
        VmError::HaltedForever { diagnosis } => {
            format!("HLT with interrupts disabled at rip {:#x}", diagnosis.regs.rip)
        }
        VmError::Watchdog { expiry, .. } => format!(
            "the IB700 watchdog expired {:.3} s after the last pet ({} s timeout)",
            (expiry.noticed.saturating_sub(expiry.last_pet)).as_secs_f64(),
            expiry.timeout.as_secs()
        ),
        VmError::VcpuKilled { exits } => format!("the vCPU thread died at exit {exits}, injected by --inject-fault"),
        other => crate::cli::chain(other).lines().next().unwrap_or("").to_string(),
    }
}

/// Nanoseconds since the Unix epoch (for the supervisor's detection times).
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
