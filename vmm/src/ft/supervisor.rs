//! `vmm supervise GUEST [run options]`: runs the VMM as a child process
//! (`vmm run --supervised`), watches it, and when it fails restarts the
//! guest from its latest committed checkpoint after a backoff delay.
//!
//! - **Detection.** The child's channel ([`super::wire`]) ends (a crash,
//!   SIGKILL: at once); no heartbeat for `--heartbeat-misses` periods of
//!   `--heartbeat-ms` (a hung VMM, SIGSTOP, `hang-after-ms`); the child
//!   reports a failure and exits (a triple fault, the IB700, ...).
//! - **Output.** The child's output arrives as it is produced and is held
//!   here until the checkpoint after it commits, so a restart from that
//!   checkpoint never repeats or loses a line.
//! - **Recovery.** Cold standby: a new `vmm restore DIR/ckpt-N` process.
//!   Warm standby: a second process (`vmm standby`) that has restored the
//!   latest checkpoint already (each commit is forwarded to it) and waits;
//!   on a failure it is told `Go` and runs, and a new standby is started.
//! - Statuses that a restart cannot change (bad command line, no KVM, bad
//!   image, `--timeout`) end the supervisor with that status; so does
//!   `--restart none` at the first failure. Exhausted restarts end it with
//!   status 85.
//!
//! Every decision is a JSON line ([`super::jsonlog`]) on stderr or `--log`.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::{metrics_server, FtArgs};
pub use super::args::{Standby, SuperviseFlags};
use super::backoff::Backoff;
use super::channel::wait_readable;
pub use super::child::ChannelKind;
use super::child::{describe, Cause, Child};
use super::jsonlog::{JsonLog, Value};
use super::metrics::SupervisorMetrics;
use super::wire::Frame;
use crate::error::ExitCode;

/// SIGTERM or SIGINT arrived: end the children, then the supervisor.
static ENDING: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_end(signal: libc::c_int) {
    ENDING.store(signal, Ordering::SeqCst);
}

/// Makes SIGTERM and SIGINT end the supervisor after its children.
fn install_end_handlers() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with an empty mask and a handler that
        // only stores to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_end as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// How long a child may take to start running the guest.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default checkpoint interval under a supervisor.
const DEFAULT_CHECKPOINT_MS: u64 = 50;

/// Errors of the supervisor itself.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("cannot start a child VMM ({what})")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the checkpoint directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for the child VMM")]
    Wait(#[source] std::io::Error),
    #[error("cannot open the log file {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("giving up: the guest failed {failures} times (--max-restarts {max}); the last failure: {cause}")]
    Exhausted { failures: u32, max: u32, cause: String },
    #[error("the guest failed and --restart none does not restart it: {why}")]
    NoRestart { status: i32, why: String },
    #[error("a restart cannot help: {why}")]
    Final { status: i32, why: String },
}

/// The command-line words every child gets, split by what accepts them.
#[derive(Clone, Debug, Default)]
pub struct ChildArgs {
    /// The guest and the options only `vmm run` takes (a boot).
    pub boot: Vec<String>,
    /// The run options every child takes.
    pub flags: Vec<String>,
}

/// Runs `vmm supervise`; returns the exit status.
pub fn main(
    child_args: ChildArgs,
    flags: &SuperviseFlags,
    ft: &FtArgs,
    out: Box<dyn Write + Send>,
    err: &mut (dyn Write + Send),
) -> i32 {
    let mut log_file = match &flags.log {
        Some(path) => match File::create(path) {
            Ok(f) => Some(f),
            Err(source) => {
                crate::cli::report(err, &SuperviseError::Log { path: path.clone(), source });
                return ExitCode::Internal as i32;
            }
        },
        None => None,
    };
    let metrics = Arc::new(SupervisorMetrics::default());
    let page = metrics.clone();
    let server = metrics_server(ft.metrics.as_deref(), Arc::new(move || page.render()), err);
    let _server = match server {
        Ok(s) => s,
        Err(e) => {
            crate::cli::report(err, &e);
            return e.exit_code() as i32;
        }
    };
    let (dir, made) = match &ft.checkpoint_dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("vmm-supervise-{}", std::process::id())), true),
    };
    let log = match log_file.as_mut() {
        Some(f) => JsonLog::new(f),
        None => JsonLog::new(&mut *err),
    };
    let mut s = Supervisor::new(child_args, flags, ft, dir.clone(), out, log, metrics);
    let result = s.supervise();
    drop(s);
    if made {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(status) => status,
        Err(e) => {
            crate::cli::report(err, &e);
            match e {
                SuperviseError::Exhausted { .. } => ExitCode::RestartsExhausted as i32,
                SuperviseError::NoRestart { status, .. } | SuperviseError::Final { status, .. } => status,
                _ => ExitCode::Internal as i32,
            }
        }
    }
}

struct Supervisor<'w> {
    args: ChildArgs,
    flags: SuperviseFlags,
    ft: FtArgs,
    dir: PathBuf,
    every: u64,
    heartbeat: Duration,
    out: Box<dyn Write + Send>,
    log: JsonLog<'w>,
    metrics: Arc<SupervisorMetrics>,
    backoff: Backoff,
    active: Option<Child>,
    standby: Option<Child>,
    committed: Option<(u64, PathBuf)>,
    pending: Vec<u8>,
    restarts: u32,
    attempt: u32,
    /// A restart under way.
    failover: Option<Failover>,
    /// Failed children killed and not reaped yet.
    reaping: Vec<Child>,
}

/// A restart under way: when the failure was declared, when the restart
/// began (after the backoff delay), which standby serves it, and whether a
/// warm standby had the checkpoint loaded already.
struct Failover {
    declared: Instant,
    began: Instant,
    standby: Standby,
    preloaded: Option<bool>,
}

impl<'w> Supervisor<'w> {
    fn new(
        args: ChildArgs,
        flags: &SuperviseFlags,
        ft: &FtArgs,
        dir: PathBuf,
        out: Box<dyn Write + Send>,
        log: JsonLog<'w>,
        metrics: Arc<SupervisorMetrics>,
    ) -> Self {
        let ms = Duration::from_millis;
        let backoff =
            Backoff::new(flags.restart, ms(flags.backoff_base_ms), ms(flags.backoff_max_ms), flags.backoff_seed);
        Supervisor {
            args,
            flags: flags.clone(),
            ft: ft.clone(),
            dir,
            every: ft.checkpoint_every.unwrap_or(DEFAULT_CHECKPOINT_MS),
            heartbeat: ms(ft.heartbeat_ms.max(1)),
            out,
            log,
            metrics,
            backoff,
            active: None,
            standby: None,
            committed: None,
            pending: Vec::new(),
            restarts: 0,
            attempt: ft.attempt,
            failover: None,
            reaping: Vec::new(),
        }
    }

    /// The words of a child of `attempt` whose first checkpoint is `seq`.
    fn own_args(&self, attempt: u32, seq: u64) -> Vec<String> {
        let dir = self.dir.display().to_string();
        let mut v = vec!["--supervised".to_string(), "--checkpoint-dir".into(), dir];
        v.extend(["--checkpoint-every".into(), self.every.to_string()]);
        v.extend(["--heartbeat-ms".into(), self.ft.heartbeat_ms.max(1).to_string()]);
        v.extend(["--attempt".into(), attempt.to_string(), "--checkpoint-seq".into(), seq.to_string()]);
        v
    }

    fn spawn(&mut self, args: Vec<String>, standby: bool) -> Result<Child, SuperviseError> {
        let child = Child::spawn(&args, self.flags.channel, standby)?;
        let role = if standby { "standby" } else { "active" };
        self.log.event(
            "spawn",
            &[
                ("pid", child.process.id().into()),
                ("role", role.into()),
                ("attempt", self.attempt.into()),
                ("command", args.first().cloned().unwrap_or_default().into()),
            ],
        );
        Ok(child)
    }

    /// A child that boots the guest, or restores the latest checkpoint.
    fn spawn_active(&mut self) -> Result<Child, SuperviseError> {
        let mut args = match self.committed.clone() {
            Some((seq, path)) => {
                let mut a = vec!["restore".to_string(), path.display().to_string()];
                a.extend(self.args.flags.iter().cloned());
                a.extend(self.own_args(self.attempt, seq));
                a.push("--resumed".into());
                a
            }
            None => {
                let mut a = vec!["run".to_string()];
                a.extend(self.args.boot.iter().cloned());
                a.extend(self.args.flags.iter().cloned());
                a.extend(self.own_args(self.attempt, 0));
                a
            }
        };
        args.shrink_to_fit();
        self.spawn(args, false)
    }

    fn spawn_standby(&mut self) -> Result<(), SuperviseError> {
        let mut args = vec!["standby".to_string()];
        args.extend(self.args.flags.iter().cloned());
        args.extend(self.own_args(self.attempt, 0));
        let child = self.spawn(args, true)?;
        self.standby = Some(child);
        self.forward_latest();
        Ok(())
    }

    /// Tells the standby to load the latest checkpoint, unless it is busy loading one.
    fn forward_latest(&mut self) {
        let (Some((seq, path)), Some(sb)) = (self.committed.clone(), self.standby.as_mut()) else { return };
        if sb.loading.is_none()
            && sb.loaded != Some(seq)
            && sb.send(&Frame::Load { seq, path: path.display().to_string() }).is_ok()
        {
            sb.loading = Some(seq);
        }
    }

    fn supervise(&mut self) -> Result<i32, SuperviseError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| SuperviseError::Dir { path: self.dir.clone(), source })?;
        install_end_handlers();
        self.active = Some(self.spawn_active()?);
        if self.flags.standby == Standby::Warm {
            self.spawn_standby()?;
        }
        loop {
            if let Some(status) = self.step()? {
                return Ok(status);
            }
        }
    }

    /// Waits for the children once and acts on what they said or did not say.
    fn step(&mut self) -> Result<Option<i32>, SuperviseError> {
        let signal = ENDING.load(Ordering::SeqCst);
        if signal != 0 {
            self.log.event("ended", &[("signal", u64::from(signal.unsigned_abs()).into())]);
            return Ok(Some(128 + signal));
        }
        self.reaping.retain_mut(|c| !matches!(c.process.try_wait(), Ok(Some(_))));
        let Some(active) = self.active.as_ref() else {
            return Err(SuperviseError::Final { status: ExitCode::Internal as i32, why: "no child runs".into() });
        };
        let mut fds = vec![active.reader.raw_fd()];
        fds.extend(self.standby.as_ref().map(|s| s.reader.raw_fd()));
        let ready = wait_readable(&fds, self.heartbeat).map_err(SuperviseError::Wait)?;
        if ready.get(1) == Some(&true) {
            self.serve_standby()?;
        }
        if ready[0] {
            let open = self.active.as_mut().map(|a| a.reader.fill()).transpose();
            let open = open.map_err(|e| SuperviseError::Spawn { what: "reading its channel", source: e })?;
            if let Some(status) = self.serve_active()? {
                return Ok(Some(status));
            }
            if open == Some(false) {
                return self.failed(Cause::Exited);
            }
        }
        self.check_heartbeat()
    }

    fn serve_active(&mut self) -> Result<Option<i32>, SuperviseError> {
        loop {
            let Some(active) = self.active.as_mut() else { return Ok(None) };
            let frame = match active.reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) => return self.failed(Cause::Channel(e.to_string())),
            };
            match frame {
                Frame::Heartbeat { counters, .. } => {
                    active.last_beat = Some(Instant::now());
                    active.misses = 0;
                    self.metrics.heartbeats.fetch_add(1, Ordering::Relaxed);
                    self.metrics.child(counters);
                }
                Frame::Output { bytes } => self.pending.extend_from_slice(&bytes),
                Frame::Discard => self.pending.clear(),
                Frame::Commit { seq, path, .. } => {
                    let _ = self.out.write_all(&self.pending).and_then(|()| self.out.flush());
                    self.pending.clear();
                    self.metrics.commits.fetch_add(1, Ordering::Relaxed);
                    if !path.is_empty() {
                        self.committed = Some((seq, PathBuf::from(path)));
                        self.forward_latest();
                    }
                }
                Frame::Running { seq } => {
                    active.running = true;
                    active.last_beat = Some(Instant::now());
                    self.running(seq);
                    if self.flags.standby == Standby::Warm && self.standby.is_none() && self.restarts > 0 {
                        self.spawn_standby()?;
                    }
                }
                Frame::Failure { status, cause, unix_ns } => active.failure = Some((status, cause, unix_ns)),
                Frame::End { status } => {
                    let _ = self.out.write_all(&self.pending).and_then(|()| self.out.flush());
                    self.pending.clear();
                    active.ended = Some(status);
                    let _ = active.process.wait();
                    self.log.event("exit", &[("status", u64::from(status).into()), ("restarts", self.restarts.into())]);
                    if let Some(mut sb) = self.standby.take() {
                        let _ = sb.kill();
                    }
                    return Ok(Some(i32::from(status)));
                }
                Frame::Hello { .. } | Frame::Load { .. } | Frame::Loaded { .. } | Frame::Go { .. } => {}
            }
        }
    }

    /// The guest runs: the first start ("started"), or the end of a failover ("running").
    fn running(&mut self, seq: u64) {
        let Some(Failover { declared, began, standby, preloaded }) = self.failover.take() else {
            let pid = self.active.as_ref().map_or(0, |a| a.process.id());
            self.log.event("started", &[("pid", pid.into()), ("attempt", self.attempt.into()), ("from", seq.into())]);
            return;
        };
        {
            let took = began.elapsed();
            let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            self.metrics.failover_last_ns.store(ns, Ordering::Relaxed);
            let counter =
                if standby == Standby::Warm { &self.metrics.failovers_warm } else { &self.metrics.failovers_cold };
            counter.fetch_add(1, Ordering::Relaxed);
            let name = if standby == Standby::Warm { "warm" } else { "cold" };
            self.log.event(
                "running",
                &[
                    ("attempt", self.attempt.into()),
                    ("from", seq.into()),
                    ("standby", name.into()),
                    ("failover_ms", Value::Ms(took.as_secs_f64() * 1e3)),
                    ("since_declared_ms", Value::Ms(declared.elapsed().as_secs_f64() * 1e3)),
                    ("preloaded", preloaded.map_or(Value::Null, |p| Value::Str(p.to_string()))),
                ],
            );
        }
    }

    fn serve_standby(&mut self) -> Result<(), SuperviseError> {
        let Some(sb) = self.standby.as_mut() else { return Ok(()) };
        let open = sb.reader.fill().unwrap_or(false);
        while let Ok(Some(frame)) = sb.reader.next_frame() {
            if let Frame::Loaded { seq } = frame {
                sb.loaded = Some(seq);
                sb.loading = None;
            }
        }
        if !open {
            let status = sb.kill().ok();
            let pid = sb.process.id();
            let code = status.and_then(|s| s.code()).map_or(Value::Null, |c| Value::Int(u64::from(c.unsigned_abs())));
            self.log.event("standby-failed", &[("pid", pid.into()), ("status", code)]);
            self.standby = None;
            // A standby that cannot start leaves cold restarts.
            if self.restarts <= self.ft.max_restarts {
                self.spawn_standby()?;
            }
            return Ok(());
        }
        self.forward_latest();
        Ok(())
    }

    fn check_heartbeat(&mut self) -> Result<Option<i32>, SuperviseError> {
        let Some(active) = self.active.as_mut() else { return Ok(None) };
        if !active.running {
            if active.spawned.elapsed() > START_TIMEOUT {
                return self.failed(Cause::NotStarted);
            }
            return Ok(None);
        }
        let since = active.last_beat.map_or(Duration::ZERO, |t| t.elapsed());
        // The heartbeat due one period after the last is missed once a second period has passed.
        let periods = u32::try_from(since.as_nanos() / self.heartbeat.as_nanos().max(1)).unwrap_or(u32::MAX);
        let periods = periods.saturating_sub(1);
        if periods > active.misses {
            let new = u64::from(periods - active.misses);
            active.misses = periods;
            self.metrics.heartbeat_misses.fetch_add(new, Ordering::Relaxed);
            let pid = active.process.id();
            self.log.event(
                "heartbeat-miss",
                &[("pid", pid.into()), ("misses", periods.into()), ("since_ms", Value::Ms(since.as_secs_f64() * 1e3))],
            );
            if periods >= self.flags.heartbeat_misses {
                return self.failed(Cause::Heartbeat(since));
            }
        }
        Ok(None)
    }

    /// Declares the active child failed and restarts the guest, or gives up.
    fn failed(&mut self, cause: Cause) -> Result<Option<i32>, SuperviseError> {
        let declared = Instant::now();
        let Some(mut child) = self.active.take() else { return Ok(None) };
        let pid = child.process.id();
        // A child that reported its failure is not waited for: the teardown of its VM takes
        // milliseconds, and the restart need not wait for it (it is reaped later).
        let status = match (&cause, &child.failure) {
            (Cause::Exited, Some(_)) | (Cause::Heartbeat(_) | Cause::NotStarted, _) => child.kill_now(),
            _ => Some(child.kill().map_err(SuperviseError::Wait)?),
        };
        let (text, detector, detection) = describe(&cause, &child, status, self.flags.heartbeat_misses, self.heartbeat);
        self.metrics.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = detection {
            self.metrics.detection_last_ns.store(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        let detection = detection.map_or(Value::Null, |d| Value::Ms(d.as_secs_f64() * 1e3));
        self.log.event(
            "failure",
            &[
                ("pid", pid.into()),
                ("attempt", self.attempt.into()),
                ("detector", detector.into()),
                ("cause", text.clone().into()),
                ("detection_ms", detection),
            ],
        );
        let reported = child.failure.as_ref().map(|f| i32::from(f.0));
        let code = status.and_then(|s| s.code()).or(reported).unwrap_or(ExitCode::Internal as i32);
        self.reaping.push(child);
        if matches!(code, 2 | 71 | 72 | 76) {
            self.release_pending();
            return Err(SuperviseError::Final { status: code, why: text });
        }
        let Some(delay) = self.backoff.next_delay() else {
            self.release_pending();
            return Err(SuperviseError::NoRestart { status: code, why: text });
        };
        if self.restarts >= self.ft.max_restarts {
            self.release_pending();
            self.log.event("give-up", &[("restarts", self.restarts.into()), ("cause", text.clone().into())]);
            return Err(SuperviseError::Exhausted {
                failures: self.restarts + 1,
                max: self.ft.max_restarts,
                cause: text,
            });
        }
        self.pending.clear();
        self.restarts += 1;
        self.attempt += 1;
        self.metrics.restarts.fetch_add(1, Ordering::Relaxed);
        let from = self.committed.as_ref().map_or(Value::Null, |(seq, _)| Value::Int(*seq));
        self.log.event(
            "restart",
            &[
                ("attempt", self.attempt.into()),
                ("policy", self.flags.restart.name().into()),
                ("delay_ms", Value::Ms(delay.as_secs_f64() * 1e3)),
                ("from", from),
                ("cause", text.into()),
            ],
        );
        std::thread::sleep(delay);
        self.restart(declared)?;
        Ok(None)
    }

    fn restart(&mut self, declared: Instant) -> Result<(), SuperviseError> {
        let began = Instant::now();
        let promoted = match (self.standby.take(), self.committed.clone()) {
            (Some(mut sb), Some((seq, path))) => {
                let go = Frame::Go { seq, path: path.display().to_string(), attempt: self.attempt };
                let preloaded = sb.loaded == Some(seq);
                match sb.send(&go) {
                    Ok(()) => Some((sb, preloaded)),
                    Err(_) => {
                        let _ = sb.kill();
                        None
                    }
                }
            }
            (sb, _) => {
                self.standby = sb;
                None
            }
        };
        match promoted {
            Some((mut sb, preloaded)) => {
                sb.standby = false;
                sb.spawned = Instant::now();
                self.active = Some(sb);
                // The next standby starts once this one runs the guest, not competing with it.
                self.failover = Some(Failover { declared, began, standby: Standby::Warm, preloaded: Some(preloaded) });
            }
            None => {
                self.active = Some(self.spawn_active()?);
                self.failover = Some(Failover { declared, began, standby: Standby::Cold, preloaded: None });
            }
        }
        Ok(())
    }

    /// Gives up: the failed execution's output goes out after all (it will not run again).
    fn release_pending(&mut self) {
        let _ = self.out.write_all(&self.pending).and_then(|()| self.out.flush());
        self.pending.clear();
        if let Some(mut sb) = self.standby.take() {
            let _ = sb.kill();
        }
    }
}

impl Drop for Supervisor<'_> {
    fn drop(&mut self) {
        for child in [self.active.as_mut(), self.standby.as_mut()].into_iter().flatten().chain(&mut self.reaping) {
            let _ = child.kill();
        }
    }
}
