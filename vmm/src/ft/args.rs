//! The command-line side of fault tolerance: the options `vmm run`,
//! `restore`, `standby` and `supervise` share ([`FtArgs`], flattened into
//! the run options), the wrapping of the guest's serial output, and the
//! run with its end-of-run reports.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::RestartPolicy;
use super::channel::ChildChannel;
use super::child::ChannelKind;
use super::inject::FaultSpec;
use super::metrics::{MetricsServer, RunMetrics};
use super::output::OutputGate;
use super::session::{self, FtReport, Release, SessionOptions};
use super::wire::Frame;
use super::{FtError, FtPlan, OnFailure, WatchdogAction};
use crate::vm::{SerialIo, Vm, VmError};

/// Fault-tolerance options of a run.
#[derive(clap::Args, Clone, Debug)]
pub struct FtArgs {
    /// Take a checkpoint every MS milliseconds (in memory, or in --checkpoint-dir).
    #[arg(long, value_name = "MS")]
    pub checkpoint_every: Option<u64>,
    /// Keep checkpoints in DIR as snapshot files (slot-0 and slot-1, each with its .mem, used in turn), not in memory.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// What a guest failure (triple fault, emulation failure, injected fault) does.
    #[arg(long, value_enum, value_name = "WHAT", default_value_t = OnFailure::Stop)]
    pub on_failure: OnFailure,
    /// Rollbacks (`run`) or restarts (`supervise`) allowed before a failure is final.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_restarts: u32,
    /// Release the serial output as it comes instead of when the next checkpoint is taken.
    #[arg(long)]
    pub no_output_commit: bool,
    /// Put the IB700 watchdog (ports 0x441/0x443) on the bus and do ACTION when it expires.
    #[arg(long, value_enum, value_name = "ACTION")]
    pub watchdog_action: Option<WatchdogAction>,
    /// Break something on purpose (repeatable): shutdown-after-exits=N, kill-vcpu-after-exits=N,
    /// random=P[,seed=S], hang-after-ms=T, crash-after-ms=T; option attempts=K|all.
    #[arg(long = "inject-fault", value_name = "SPEC", value_parser = parse_fault)]
    pub inject_fault: Vec<FaultSpec>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks one, printed on stderr).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics: Option<String>,
    /// Send a heartbeat to the supervisor this often.
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub heartbeat_ms: u64,
    /// This run's attempt number: the supervisor passes its restarts, injected faults depend on it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub attempt: u32,
    /// stdout and stdin are a `vmm supervise` channel.
    #[arg(long, hide = true)]
    pub supervised: bool,
    /// The first checkpoint's number.
    #[arg(long, hide = true, value_name = "N", default_value_t = 0)]
    pub checkpoint_seq: u64,
    /// The VM was restored from checkpoint --checkpoint-seq of --checkpoint-dir.
    #[arg(long, hide = true)]
    pub resumed: bool,
    /// Copy every page ever written at each checkpoint, not only the dirty ones.
    #[arg(long, hide = true)]
    pub full_checkpoints: bool,
}

/// Cold or warm standby.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Standby {
    Cold,
    Warm,
}

/// The supervisor's own options.
#[derive(clap::Args, Clone, Debug)]
pub struct SuperviseFlags {
    /// How restarts are spaced.
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = RestartPolicy::Exponential)]
    pub restart: RestartPolicy,
    /// The first restart's delay (and the unit of the others).
    #[arg(long, value_name = "MS", default_value_t = 10)]
    pub backoff_base_ms: u64,
    /// The longest delay.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub backoff_max_ms: u64,
    /// Seed of the jittered policies.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub backoff_seed: u64,
    /// cold: restore the latest checkpoint in a new VMM on a failure; warm: keep one restored, waiting.
    #[arg(long, value_enum, default_value_t = Standby::Cold)]
    pub standby: Standby,
    /// Declare the VMM failed once this many heartbeats in a row have not arrived (K + 1 periods of silence).
    #[arg(long, value_name = "K", default_value_t = 5)]
    pub heartbeat_misses: u32,
    /// The channel to each child.
    #[arg(long, value_enum, default_value_t = ChannelKind::Socket)]
    pub channel: ChannelKind,
    /// Write the JSON decision log to FILE (default: stderr).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

fn parse_fault(s: &str) -> Result<FaultSpec, String> {
    FaultSpec::parse(s).map_err(|e| e.to_string())
}

impl FtArgs {
    /// True if the run needs the fault-tolerant path.
    pub fn active(&self) -> bool {
        self.checkpoint_every.is_some()
            || self.checkpoint_dir.is_some()
            || self.on_failure != OnFailure::Stop
            || self.watchdog_action.is_some()
            || !self.inject_fault.is_empty()
            || self.metrics.is_some()
            || self.supervised
    }

    /// True if a rollback can happen, so output commit is on unless turned off.
    fn output_commit(&self) -> bool {
        let rollback = self.on_failure == OnFailure::Rollback
            || matches!(self.watchdog_action, Some(WatchdogAction::Rollback | WatchdogAction::Reset));
        self.supervised || (rollback && !self.no_output_commit)
    }

    /// The plan these options give, the file a restore came from taken as
    /// its first checkpoint with `--resumed`.
    pub fn plan(&self, restored_from: Option<PathBuf>, metrics: Arc<RunMetrics>) -> FtPlan {
        FtPlan {
            checkpoint_every: self.checkpoint_every.map(Duration::from_millis),
            checkpoint_dir: self.checkpoint_dir.clone(),
            first_seq: self.checkpoint_seq,
            resume: restored_from.filter(|_| self.resumed && self.checkpoint_dir.is_some()),
            full_checkpoints: self.full_checkpoints,
            on_failure: self.on_failure,
            max_restarts: self.max_restarts,
            output_commit: self.output_commit(),
            watchdog: self.watchdog_action,
            faults: self.inject_fault.clone(),
            attempt: self.attempt,
            heartbeat: Duration::from_millis(self.heartbeat_ms.max(1)),
            metrics: Some(metrics),
        }
    }
}

/// Where a fault-tolerant run's output goes, set up before the VM is built.
pub struct FtIo {
    release: Release,
    /// The supervisor's control channel (a standby reads it).
    pub control: Option<Box<dyn std::io::Read + Send>>,
}

impl std::fmt::Debug for FtIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtIo").field("release", &self.release).finish_non_exhaustive()
    }
}

/// Puts the output gate between the UART and `io.out` (output commit), or
/// makes stdout the supervision channel (`--supervised`, where stdin is the
/// supervisor's, not the guest's). `None` for a plain run.
pub fn prepare(args: &FtArgs, io: SerialIo) -> (SerialIo, Option<FtIo>) {
    if !args.active() {
        return (io, None);
    }
    if args.supervised {
        let mut channel = ChildChannel::new(io.out);
        let pid = std::process::id();
        // A supervisor that is gone is noticed at the first heartbeat.
        let _ = channel.send(&Frame::Hello { pid, standby: false });
        let (gate, uart) = OutputGate::new();
        let serial = SerialIo { out: Box::new(uart), input: None };
        return (serial, Some(FtIo { release: Release::Supervisor { channel, gate }, control: io.input }));
    }
    if args.output_commit() {
        let (gate, uart) = OutputGate::new();
        let serial = SerialIo { out: Box::new(uart), input: io.input };
        return (serial, Some(FtIo { release: Release::stdout(io.out, Some(gate)), control: None }));
    }
    let release = Release::stdout(Box::new(std::io::sink()), None);
    (io, Some(FtIo { release, control: None }))
}

/// Starts `--metrics`, announcing the address on `err`.
///
/// # Errors
///
/// The address cannot be bound.
pub fn metrics_server(
    addr: Option<&str>,
    render: Arc<dyn Fn() -> String + Send + Sync>,
    err: &mut dyn Write,
) -> Result<Option<MetricsServer>, VmError> {
    let Some(addr) = addr else { return Ok(None) };
    let server = MetricsServer::start(addr, render).map_err(|e| VmError::Ft(Box::new(FtError::Metrics(e))))?;
    let _ = writeln!(err, "vmm: metrics on http://{}/metrics", server.local_addr());
    Ok(Some(server))
}

/// Runs `vm` with `args`; the reports go to `err`. Returns the exit status.
///
/// # Errors
///
/// What stops the run from starting, or the failure that ended it.
pub fn run(
    mut vm: Vm,
    args: &FtArgs,
    io: FtIo,
    restored_from: Option<PathBuf>,
    opts: SessionOptions,
    err: &mut (dyn Write + Send),
) -> Result<i32, VmError> {
    let metrics = Arc::new(RunMetrics::default());
    let page = metrics.clone();
    let _server = metrics_server(args.metrics.as_deref(), Arc::new(move || page.render()), err)?;
    let plan = args.plan(restored_from, metrics);
    let report = session::run(&mut vm, &plan, io.release, opts, err)?;
    render(&report, &plan, err);
    let status = report.status();
    report.outcome.map(|_| status)
}

/// The end-of-run lines: statistics, checkpoints, output commit, snapshots.
pub fn render(report: &FtReport, plan: &FtPlan, err: &mut dyn Write) {
    if let Ok(run) = &report.outcome {
        if let Some(stats) = &run.stats {
            let _ = stats.render(err, run.wall);
        }
    }
    let c = &report.checkpoints;
    if plan.checkpoint_every.is_some() {
        let mean = if c.count == 0 { Duration::ZERO } else { c.total / u32::try_from(c.count).unwrap_or(u32::MAX) };
        let _ = writeln!(
            err,
            "vmm: {} checkpoints {}, {:.3} ms each on average, {:.3} ms at most (vCPU paused), {} pages kept",
            c.count,
            if report.in_dir { "in the checkpoint directory" } else { "in memory" },
            mean.as_secs_f64() * 1e3,
            c.max.as_secs_f64() * 1e3,
            c.pages
        );
    }
    if report.output_commit && (plan.checkpoint_every.is_some() || !report.rollbacks.is_empty()) {
        let d = &report.output;
        let _ = writeln!(
            err,
            "vmm: output commit: {} bytes released, held {:.3} ms on average and {:.3} ms at most until their checkpoint; {} bytes dropped by rollbacks",
            d.bytes,
            d.mean().as_secs_f64() * 1e3,
            d.max.as_secs_f64() * 1e3,
            d.discarded
        );
    }
    for s in &report.snapshots {
        let _ = writeln!(
            err,
            "vmm: snapshot written to {} after {} exits: {} pages of memory, {} bytes of state, in {:.3} ms",
            s.path.display(),
            s.exits,
            s.written.pages,
            s.written.state_bytes,
            s.took.as_secs_f64() * 1e3
        );
    }
}
