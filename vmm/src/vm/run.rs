//! Running a built VM: one vCPU on the calling thread or its own, with a
//! controller for snapshots and migration, or several ([`crate::smp`]).

use std::fmt;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use kvm_ioctls::VcpuExit;

use super::{ExitCode, Vm, VmError};
use crate::arch::x86_64::layout::DEBUG_EXIT_PORT;
use crate::control::{self, Control, RunEnd};
use crate::controller::{Controller, SnapshotPlan, SnapshotTaken};
use crate::kvmstate::VcpuCaps;
use crate::memory::PageSet;
use crate::runloop::{self, Link, VcpuRun};
use crate::seccomp::{self, KvmFds};
use crate::smp::{Crew, SmpParts, SmpRun};
use crate::stats::ExitStats;
use crate::vcpu::{ExitKind, VcpuError};

/// What one run returns.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// How the run ended.
    pub end: RunEnd,
    /// Exits handled by the VMM.
    pub exits: u64,
    /// Filled when statistics were asked for (with several vCPUs, their sum).
    pub stats: Option<ExitStats>,
    /// Each vCPU's statistics, with several vCPUs and `--stats`.
    pub per_vcpu: Vec<ExitStats>,
    /// Wall time of the run loop.
    pub wall: Duration,
    /// The snapshots written during the run.
    pub snapshots: Vec<SnapshotTaken>,
    /// Snapshots that could not be written (the guest carried on).
    pub snapshot_failures: Vec<String>,
    /// Every migration attempt, migrated or aborted.
    pub migrations: Vec<crate::migration::MigrationReport>,
}

impl RunReport {
    /// The process exit status for this end: the guest's status, or 79/80.
    pub fn status(&self) -> i32 {
        match self.end {
            RunEnd::Guest(status) => i32::from(status),
            RunEnd::Snapshotted => ExitCode::Snapshotted as i32,
            RunEnd::Migrated => ExitCode::Migrated as i32,
            RunEnd::Reset => ExitCode::GuestReset as i32,
        }
    }

    /// This report with what the controller did during the run (its
    /// snapshots and migrations), or the failure that ended the run.
    fn with_controller(mut self, outcome: crate::controller::Outcome) -> Result<Self, VmError> {
        if let Some(fatal) = outcome.fatal {
            return Err(fatal);
        }
        self.snapshots = outcome.snapshots;
        self.snapshot_failures = outcome.failures;
        self.migrations = outcome.migrations;
        Ok(self)
    }
}

/// Options of one run.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Where to write one line per exit.
    pub trace: Option<&'a mut (dyn Write + Send)>,
    /// Collect exit statistics.
    pub stats: bool,
    /// Kick the vCPU out and fail after this long.
    pub timeout: Option<Duration>,
    /// Run the vCPU on a thread of its own, under the seccomp filter of
    /// [`crate::seccomp`] from before the guest's first instruction.
    pub seccomp: bool,
    /// Write a snapshot after a number of exits or on SIGUSR1.
    pub snapshot: Option<SnapshotPlan>,
    /// Migrate the guest live, after a delay or on SIGUSR2.
    pub migrate: Option<crate::migration::source::MigratePlan>,
    /// Serve gdb's remote protocol ([`crate::gdb`]).
    pub gdb: Option<crate::gdb::GdbPlan>,
}

impl fmt::Debug for RunOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("trace", &self.trace.is_some())
            .field("stats", &self.stats)
            .field("timeout", &self.timeout)
            .field("seccomp", &self.seccomp)
            .field("snapshot", &self.snapshot)
            .field("migrate", &self.migrate)
            .field("gdb", &self.gdb)
            .finish()
    }
}

impl Vm {
    /// Runs the guest until it writes the debug-exit port or fails. With
    /// `opts.seccomp`, the vCPU runs on a thread of its own that installs
    /// the vCPU filter before the guest's first instruction; the calling
    /// thread only waits for it, and stays free of the filter. With a
    /// snapshot plan, the calling thread is the controller that writes it.
    ///
    /// # Errors
    ///
    /// A [`VmError`] for every way a run can fail: the guest's fatal exits
    /// (with a diagnosis), the timeout, HLT with nothing to wake the vCPU,
    /// a failed KVM call, a filter that cannot be installed, a snapshot that
    /// cannot be written with `--snapshot-and-stop`.
    pub fn run(&mut self, opts: RunOptions<'_>) -> Result<RunReport, VmError> {
        let RunOptions { trace, stats, timeout, seccomp, snapshot, migrate, gdb } = opts;
        let controlled = snapshot.is_some() || migrate.is_some();
        let fds = KvmFds { vcpu: self.vcpu.as_raw_fd(), vm: self.vm.as_raw_fd() };
        // Compiled here, so that the vCPU thread only has to install it.
        let filter = match seccomp {
            true => Some(seccomp::vcpu_filter_for(fds, controlled, gdb.is_some()).map_err(VmError::Seccomp)?),
            false => None,
        };
        if !self.aps.is_empty() {
            return self.run_smp(RunOptions { trace, stats, timeout, seccomp, snapshot, migrate, gdb });
        }
        let stats = stats.then(ExitStats::default);
        if let Some(plan) = gdb {
            let parts =
                crate::gdb::VmParts { kvm: &self.kvm, vcpu: &mut self.vcpu, buses: &mut self.buses, mem: &self.mem };
            return crate::gdb::run(parts, plan, trace, stats, timeout, filter.as_ref());
        }
        if !controlled {
            let run = VcpuRun {
                vcpu: &mut self.vcpu,
                buses: (&mut self.buses).into(),
                mem: &self.mem,
                trace,
                stats,
                timeout,
                link: None,
                exits: 0,
                debug: None,
                seat: None,
            };
            let Some(filter) = filter else { return run.run(None) };
            return std::thread::scope(|scope| {
                let vcpu = std::thread::Builder::new()
                    .name("vcpu0".into())
                    .spawn_scoped(scope, || run.run(Some(&filter)))
                    .map_err(|source| VmError::Thread { name: "vCPU", source })?;
                vcpu.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            });
        }
        self.track_writes()?;
        let caps = VcpuCaps::probe(&self.kvm, &self.vm, &self.vcpu, self.config.timers).map_err(VmError::State)?;
        control::install_signal_handlers();
        let control = Arc::new(Control::default());
        let (events, paused) = mpsc::channel();
        let snapshot_after = snapshot.as_ref().and_then(|p| p.after_exits);
        let link = Link { control: control.clone(), events, caps, snapshot_after, ft: None };
        let machine = self.machine();
        let Vm { vm, vcpu, mem, buses, cpuid, tsc_khz, written, .. } = self;
        let written = written.get_or_insert_with(|| PageSet::new(machine.ram_pages()));
        let buses = buses.into();
        let run =
            VcpuRun { vcpu, buses, mem, trace, stats, timeout, link: Some(link), exits: 0, debug: None, seat: None };
        std::thread::scope(|scope| {
            let vcpu = std::thread::Builder::new()
                .name("vcpu0".into())
                .spawn_scoped(scope, || run.run(filter.as_ref()))
                .map_err(|source| VmError::Thread { name: "vCPU", source })?;
            let controller = Controller {
                vm,
                mem,
                machine,
                cpuid,
                tsc_khz: *tsc_khz,
                written,
                control: &control,
                paused,
                snapshot,
                migrate,
            };
            let outcome = controller.serve();
            let report = vcpu.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            report.with_controller(outcome)
        })
    }

    /// [`Vm::run`] with several vCPUs ([`crate::smp`]), with the
    /// controller on this thread for snapshots and migration: what is not
    /// supported yet (`--gdb`) is refused, never run wrongly.
    fn run_smp(&mut self, opts: RunOptions<'_>) -> Result<RunReport, VmError> {
        let n = self.vcpu_count();
        let refuse = |what| Err(VmError::Smp(crate::smp::SmpError::Unsupported { what, vcpus: n }));
        if opts.gdb.is_some() {
            return refuse("--gdb");
        }
        let RunOptions { trace, stats, timeout, seccomp, snapshot, migrate, .. } = opts;
        if snapshot.is_none() && migrate.is_none() {
            let crew = Arc::new(Crew::new(n, None));
            let opts = SmpRun { trace, stats, timeout, sandbox: seccomp, link: None, crew };
            let vcpus = std::iter::once(&mut self.vcpu).chain(self.aps.iter_mut()).collect();
            let parts = SmpParts { vm: &self.vm, vcpus, buses: &mut self.buses, mem: &self.mem };
            return crate::smp::run(parts, opts, || ()).0;
        }
        self.track_writes()?;
        // The MSR list is probed on the BSP: every vCPU has the same CPUID.
        let caps = VcpuCaps::probe(&self.kvm, &self.vm, &self.vcpu, true).map_err(VmError::State)?;
        control::install_signal_handlers();
        let (events, paused) = mpsc::channel();
        let crew = Arc::new(Crew::new(n, Some(caps.clone())));
        let control = crew.control(0);
        let snapshot_after = snapshot.as_ref().and_then(|p| p.after_exits);
        let link = Link { control: control.clone(), events, caps, snapshot_after, ft: None };
        let machine = self.machine();
        let Vm { vm, vcpu, aps, mem, buses, cpuid, tsc_khz, written, .. } = self;
        let written = written.get_or_insert_with(|| PageSet::new(machine.ram_pages()));
        let vcpus = std::iter::once(vcpu).chain(aps.iter_mut()).collect();
        let parts = SmpParts { vm, vcpus, buses, mem };
        let opts = SmpRun { trace, stats, timeout, sandbox: seccomp, link: Some(link), crew };
        let (vm, tsc_khz) = (&**vm, *tsc_khz);
        let serve = || {
            let control = &*control;
            Controller { vm, mem, machine, cpuid, tsc_khz, written, control, paused, snapshot, migrate }.serve()
        };
        let (report, outcome) = crate::smp::run(parts, opts, serve);
        match outcome {
            Some(outcome) => report?.with_controller(outcome),
            None => report,
        }
    }

    /// The benchmark floor: KVM_RUN in a loop, no device dispatch, until a
    /// write to the debug-exit port. Returns the number of exits.
    pub fn run_bare(&mut self) -> Result<u64, VmError> {
        let mut exits = 0u64;
        loop {
            match self.vcpu.run() {
                Ok(VcpuExit::IoOut(port, _)) if u64::from(port) == DEBUG_EXIT_PORT => return Ok(exits + 1),
                Ok(VcpuExit::IoOut(..) | VcpuExit::IoIn(..)) => exits += 1,
                Ok(other) => {
                    let error = VcpuError::Unexpected(format!("{other:?}"));
                    let diagnosis = runloop::diagnose(&self.vcpu, &self.mem, ExitKind::Other, None);
                    return Err(VmError::Guest { error, diagnosis });
                }
                Err(e) if e.errno() == libc::EINTR => {}
                Err(source) => return Err(VmError::Kvm { call: "KVM_RUN", source }),
            }
        }
    }
}
