//! The controller: the VMM's main thread while a guest that may be
//! snapshotted or migrated runs. It waits for the vCPU's pauses, for
//! SIGUSR1 and SIGUSR2 and for the migration's start, reads the VM-wide
//! state and the memory, writes snapshots and runs the migration's source.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use kvm_bindings::kvm_cpuid_entry2;
use kvm_ioctls::VmFd;

use crate::control::{self, Control, PauseReason, Paused, RunEnd, Verdict};
use crate::kvmstate;
use crate::memory::{self, GuestMemoryMmap, PageSet};
use crate::migration::source::{self, MigratePlan};
use crate::migration::MigrationReport;
use crate::snapshot::file::{self, Written};
use crate::snapshot::state::{Machine, MemoryLayout, Snapshot};
use crate::vm::VmError;

/// How often the controller looks at the signal requests.
const POLL: Duration = Duration::from_millis(5);

/// When and where to write a snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotPlan {
    /// The state file; the memory file is `path.mem`.
    pub path: PathBuf,
    /// Pause after this many exits (a deterministic point); SIGUSR1 also asks.
    pub after_exits: Option<u64>,
    /// End the run once it is written (`--snapshot-and-stop`).
    pub stop: bool,
}

/// A snapshot written during a run.
#[derive(Clone, Debug)]
pub struct SnapshotTaken {
    pub path: PathBuf,
    /// Exits the run had handled when it paused.
    pub exits: u64,
    pub written: Written,
    /// From the vCPU's pause to both files written.
    pub took: Duration,
}

/// What the controller did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub snapshots: Vec<SnapshotTaken>,
    /// Snapshots that failed while the guest carried on.
    pub failures: Vec<String>,
    /// A failure that ended the run (a snapshot with `--snapshot-and-stop`).
    pub fatal: Option<VmError>,
    /// Every migration attempt, migrated or aborted.
    pub migrations: Vec<MigrationReport>,
}

/// The VM-wide side of a run.
pub(crate) struct Controller<'a> {
    pub vm: &'a VmFd,
    pub mem: &'a GuestMemoryMmap,
    pub machine: Machine,
    /// The BSP's CPUID table (the APs' differ in their APIC ids only).
    pub cpuid: &'a [kvm_cpuid_entry2],
    pub tsc_khz: Option<u32>,
    pub written: &'a mut PageSet,
    pub control: &'a Control,
    pub paused: Receiver<Paused>,
    pub snapshot: Option<SnapshotPlan>,
    pub migrate: Option<MigratePlan>,
}

impl Controller<'_> {
    /// Serves the run until the vCPU thread ends (and drops its sender).
    pub fn serve(mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let mut wanted = 0;
        if self.snapshot.is_some() {
            wanted |= control::SIGNAL_SNAPSHOT;
        }
        if self.migrate.is_some() {
            wanted |= control::SIGNAL_MIGRATE;
        }
        let mut migrate_at = self.migrate.as_ref().and_then(|p| p.after).map(|after| Instant::now() + after);
        loop {
            match self.paused.recv_timeout(POLL) {
                Ok(paused) => self.on_pause(paused, &mut outcome),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return outcome,
            }
            let signals = control::take_signals(wanted);
            if signals & control::SIGNAL_SNAPSHOT != 0 {
                self.control.request_pause(PauseReason::Snapshot);
            }
            let due = migrate_at.is_some_and(|t| Instant::now() >= t);
            if let (Some(plan), true) = (self.migrate.clone(), due || signals & control::SIGNAL_MIGRATE != 0) {
                migrate_at = None;
                let report = source::migrate(&mut self, &plan, &mut outcome);
                outcome.migrations.push(report);
            }
        }
    }

    /// Answers a vCPU paused for a snapshot.
    pub(crate) fn on_pause(&mut self, paused: Paused, outcome: &mut Outcome) {
        let Some(plan) = self.snapshot.clone() else {
            let _ = paused.reply.send(Verdict::Resume);
            return;
        };
        let verdict = match self.write_snapshot(&plan, &paused) {
            Ok(taken) => {
                outcome.snapshots.push(taken);
                if plan.stop {
                    Verdict::Stop(RunEnd::Snapshotted)
                } else {
                    Verdict::Resume
                }
            }
            Err(e) if plan.stop => {
                outcome.fatal = Some(e);
                Verdict::Stop(RunEnd::Snapshotted)
            }
            Err(e) => {
                outcome.failures.push(crate::cli::chain(&e));
                Verdict::Resume
            }
        };
        let _ = paused.reply.send(verdict);
    }

    /// The pages the guest dirtied since the last call; they join the pages ever written.
    pub(crate) fn collect_dirty(&mut self) -> Result<PageSet, VmError> {
        let dirty = memory::take_dirty(self.vm, self.mem).map_err(VmError::Memory)?;
        self.written.union_with(&dirty);
        Ok(dirty)
    }

    /// The paused vCPU's state with everything KVM holds beyond it.
    pub(crate) fn machine_state(&self, paused: &Paused) -> Result<Snapshot, VmError> {
        let vm = kvmstate::save_vm(self.vm, self.machine.timers).map_err(VmError::State)?;
        let mut vcpus = paused.vcpus.clone();
        let count = vcpus.len() as u32;
        for (id, v) in vcpus.iter_mut().enumerate() {
            v.cpuid = crate::smp::cpuid_of(self.cpuid, id as u32, count);
            v.tsc_khz = self.tsc_khz;
        }
        let memory = MemoryLayout::default();
        Ok(Snapshot { machine: self.machine, vcpus, vm, devices: paused.devices.clone(), memory })
    }

    fn write_snapshot(&mut self, plan: &SnapshotPlan, paused: &Paused) -> Result<SnapshotTaken, VmError> {
        self.collect_dirty()?;
        let snapshot = self.machine_state(paused)?;
        let written = file::write(&plan.path, snapshot, self.mem, self.written).map_err(VmError::Snapshot)?;
        Ok(SnapshotTaken { path: plan.path.clone(), exits: paused.exits, written, took: paused.at.elapsed() })
    }
}
