//! Fault tolerance: detecting failures, tolerating them, recovering.
//!
//! - **Detection.** The IB700 watchdog the guest pets
//!   ([`crate::devices::ib700`]; `--watchdog-action`), heartbeats from a
//!   VMM to its supervisor ([`wire`]; `--heartbeat-ms`, `--heartbeat-misses`),
//!   and the failures KVM reports (triple faults, emulation failures).
//!   [`inject`] breaks things on purpose (`--inject-fault`).
//! - **Recovery in the VMM.** [`session`] takes a checkpoint
//!   ([`checkpoint`]) every `--checkpoint-every` ms and, on a failure, rolls
//!   the guest back to the latest one and carries on (`--on-failure
//!   rollback`), up to `--max-restarts` times; [`output`] holds the serial
//!   output back until the checkpoint after it commits, so that a rollback
//!   never shows a line twice nor loses one.
//! - **Recovery around the VMM.** [`supervisor`] (`vmm supervise`) runs the
//!   VMM as a child process, restarts it from its latest checkpoint file
//!   with a backoff ([`backoff`]), from a cold start or by promoting a warm
//!   standby ([`standby`]) that has the checkpoint loaded already, and logs
//!   every decision as a JSON line.
//! - [`metrics`]: the counters of both, in the Prometheus text format.
//!
//! ```no_run
//! use vmm::ft::{inject::FaultSpec, session, FtPlan, OnFailure};
//! use vmm::vm::{Image, Vm, VmConfig};
//!
//! // The count guest, rolled back after an injected triple fault at exit 200.
//! let count = guests::find("count").unwrap();
//! let (gate, uart) = vmm::ft::output::OutputGate::new();
//! let serial = vmm::vm::SerialIo { out: Box::new(uart), input: None };
//! let mut vm = Vm::boot(&VmConfig::default(), &Image::Elf(count.image), serial)?;
//! let plan = FtPlan {
//!     checkpoint_every: Some(std::time::Duration::from_millis(10)),
//!     on_failure: OnFailure::Rollback,
//!     faults: vec![FaultSpec::parse("shutdown-after-exits=200").unwrap()],
//!     ..FtPlan::default()
//! };
//! let sink = session::Release::stdout(Box::new(std::io::stdout()), Some(gate));
//! let report = session::run(&mut vm, &plan, sink, Default::default(), &mut std::io::stderr())?;
//! assert_eq!(report.status(), 0);
//! assert_eq!(report.rollbacks.len(), 1);
//! # Ok::<(), vmm::vm::VmError>(())
//! ```

pub mod args;
pub mod backoff;
pub mod bench;
pub mod bench_supervisor;
pub mod channel;
pub mod checkpoint;
pub mod child;
pub mod disk;
pub mod inject;
pub mod jsonlog;
pub mod metrics;
pub mod output;
pub mod plot;
pub mod serve;
pub mod session;
pub mod standby;
pub mod supervisor;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kvm_bindings::kvm_cpuid_entry2;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::devices::WatchdogTimer;
use crate::memory::{GuestMemoryMmap, PageSet};
use crate::snapshot::state::Machine;
use crate::vcpu::{Buses, ExitKind};

/// What `--watchdog-action` does when the IB700 expires (QEMU's actions,
/// and a rollback to the latest checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchdogAction {
    /// Start the guest again from its first checkpoint (its boot or restore).
    Reset,
    /// End the run (status 83).
    Shutdown,
    /// Keep the guest paused until `--timeout` (SIGUSR1 can snapshot it).
    Pause,
    /// Report it and let the guest run on.
    None,
    /// Go back to the latest checkpoint.
    Rollback,
}

/// What a failure of the guest does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailure {
    /// End the run with the failure's status.
    #[default]
    Stop,
    /// Go back to the latest checkpoint and carry on.
    Rollback,
}

/// Everything a fault-tolerant run does beyond a plain one.
#[derive(Clone, Debug)]
pub struct FtPlan {
    /// Take a checkpoint this often.
    pub checkpoint_every: Option<Duration>,
    /// Keep checkpoints here (as snapshot files), else in memory.
    pub checkpoint_dir: Option<PathBuf>,
    /// The number of the first checkpoint (a supervisor's restarts go on counting).
    pub first_seq: u64,
    /// The VM was restored from checkpoint `first_seq` of `checkpoint_dir`, this file.
    pub resume: Option<PathBuf>,
    /// Copy every page ever written at each checkpoint (the benchmark's comparison).
    pub full_checkpoints: bool,
    pub on_failure: OnFailure,
    /// Rollbacks allowed before a failure ends the run.
    pub max_restarts: u32,
    /// Hold serial output until the next checkpoint.
    pub output_commit: bool,
    pub watchdog: Option<WatchdogAction>,
    pub faults: Vec<inject::FaultSpec>,
    /// This run's attempt number (a supervisor passes its restarts).
    pub attempt: u32,
    /// Heartbeats to a supervisor this often (when the release goes to one).
    pub heartbeat: Duration,
    pub metrics: Option<Arc<metrics::RunMetrics>>,
}

impl Default for FtPlan {
    fn default() -> Self {
        FtPlan {
            checkpoint_every: None,
            checkpoint_dir: None,
            first_seq: 0,
            resume: None,
            full_checkpoints: false,
            on_failure: OnFailure::Stop,
            max_restarts: 3,
            output_commit: true,
            watchdog: None,
            faults: Vec::new(),
            attempt: 0,
            heartbeat: Duration::from_millis(10),
            metrics: None,
        }
    }
}

/// The parts of a [`crate::vm::Vm`] a fault-tolerant run drives itself.
pub(crate) struct VmParts<'a> {
    pub kvm: &'a Kvm,
    pub vm: &'a Arc<VmFd>,
    pub vcpu: &'a mut VcpuFd,
    pub mem: &'a GuestMemoryMmap,
    pub buses: &'a mut Buses,
    pub machine: Machine,
    pub cpuid: &'a [kvm_cpuid_entry2],
    pub tsc_khz: Option<u32>,
    pub written: &'a mut PageSet,
    pub watchdog: Option<Arc<WatchdogTimer>>,
}

/// What a fault-tolerant run adds to the vCPU thread's exit path: the
/// exit counters and the injected faults (no system call: an atomic add).
pub(crate) struct VcpuHooks {
    pub faults: inject::FaultInjector,
    pub metrics: Arc<metrics::RunMetrics>,
}

impl VcpuHooks {
    /// Counts exit number `exits`, of `kind`; the fault to suffer now, if any.
    pub fn after_exit(&mut self, kind: ExitKind, exits: u64) -> Option<inject::ExitFault> {
        self.metrics.exit(kind);
        self.faults.at_exit(exits)
    }
}

/// The name of a signal a child may die of.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGSYS => "SIGSYS: a system call the seccomp filter does not allow",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGPIPE => "SIGPIPE",
        _ => "another signal",
    }
}

/// Errors of the fault-tolerance machinery itself (not of the guest).
#[derive(Debug, thiserror::Error)]
pub enum FtError {
    #[error("checkpoint")]
    Checkpoint(#[source] checkpoint::CheckpointError),
    #[error("the supervisor is gone: the channel to it failed while {doing}")]
    Channel {
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics")]
    Metrics(#[source] metrics::MetricsError),
    #[error("--watchdog-action {0:?} needs the IB700 on the bus; this VM has none")]
    NoWatchdog(WatchdogAction),
    #[error("{0}")]
    Options(String),
    #[error("the benchmark could not be run: {0}")]
    Bench(String),
}
