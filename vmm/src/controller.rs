//! The controller: the VMM's main thread while a guest that may be
//! snapshotted or migrated runs. It waits for the vCPU's pauses and for
//! SIGUSR1, reads the VM-wide state and the memory, and writes snapshots.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use kvm_bindings::kvm_cpuid_entry2;
use kvm_ioctls::VmFd;

use crate::control::{self, Control, PauseReason, Paused, RunEnd, Verdict};
use crate::kvmstate;
use crate::memory::{self, GuestMemoryMmap, PageSet};
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
}

/// The VM-wide side of a run.
pub(crate) struct Controller<'a> {
    pub vm: &'a VmFd,
    pub mem: &'a GuestMemoryMmap,
    pub machine: Machine,
    pub cpuid: &'a [kvm_cpuid_entry2],
    pub tsc_khz: Option<u32>,
    pub written: &'a mut PageSet,
    pub control: &'a Control,
    pub paused: Receiver<Paused>,
    pub snapshot: Option<SnapshotPlan>,
}

impl Controller<'_> {
    /// Serves the run until the vCPU thread ends (and drops its sender).
    pub fn serve(mut self) -> Outcome {
        let mut outcome = Outcome::default();
        let wanted = if self.snapshot.is_some() { control::SIGNAL_SNAPSHOT } else { 0 };
        loop {
            match self.paused.recv_timeout(POLL) {
                Ok(paused) => self.on_pause(paused, &mut outcome),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return outcome,
            }
            if control::take_signals(wanted) & control::SIGNAL_SNAPSHOT != 0 {
                self.control.request_pause(PauseReason::Snapshot);
            }
        }
    }

    fn on_pause(&mut self, paused: Paused, outcome: &mut Outcome) {
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

    /// Everything KVM holds beyond the vCPU, and the pages ever written.
    pub(crate) fn machine_state(&mut self, paused: &Paused) -> Result<Snapshot, VmError> {
        let dirty = memory::take_dirty(self.vm, self.mem).map_err(VmError::Memory)?;
        self.written.union_with(&dirty);
        let vm = kvmstate::save_vm(self.vm, self.machine.timers).map_err(VmError::State)?;
        let mut vcpus = paused.vcpus.clone();
        for v in &mut vcpus {
            v.cpuid = self.cpuid.to_vec();
            v.tsc_khz = self.tsc_khz;
        }
        let memory = MemoryLayout::default();
        Ok(Snapshot { machine: self.machine, vcpus, vm, devices: paused.devices.clone(), memory })
    }

    fn write_snapshot(&mut self, plan: &SnapshotPlan, paused: &Paused) -> Result<SnapshotTaken, VmError> {
        let snapshot = self.machine_state(paused)?;
        let written = file::write(&plan.path, snapshot, self.mem, self.written).map_err(VmError::Snapshot)?;
        Ok(SnapshotTaken { path: plan.path.clone(), exits: paused.exits, written, took: paused.at.elapsed() })
    }
}
