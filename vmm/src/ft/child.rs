//! The supervisor's children: starting a VMM process with the supervision
//! channel on its stdin and stdout (a socket pair or two pipes), what the
//! supervisor knows of each, and the words for why one was declared failed.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::channel::FrameReader;
use super::supervisor::{SuperviseError, START_TIMEOUT};
use super::wire::{self, Frame};

/// The channel to each child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChannelKind {
    /// One Unix socket pair (the child's stdin and stdout).
    Socket,
    /// Two pipes.
    Pipe,
}

/// A running child VMM.
pub(crate) struct Child {
    pub process: std::process::Child,
    pub reader: FrameReader,
    pub control: File,
    pub standby: bool,
    pub spawned: Instant,
    pub last_beat: Option<Instant>,
    pub misses: u32,
    pub running: bool,
    /// The checkpoint a standby has loaded.
    pub loaded: Option<u64>,
    /// The checkpoint sent to load and not acknowledged yet.
    pub loading: Option<u64>,
    pub failure: Option<(u8, String, u64)>,
    pub ended: Option<u8>,
}

impl Child {
    /// Starts `vmm ARGS` with the channel on its stdin and stdout.
    pub fn spawn(args: &[String], channel: ChannelKind, standby: bool) -> Result<Child, SuperviseError> {
        let spawn = |what| move |source| SuperviseError::Spawn { what, source };
        let exe = std::env::current_exe().map_err(spawn("finding this binary"))?;
        let (ours_in, ours_out, theirs_in, theirs_out): (OwnedFd, OwnedFd, OwnedFd, OwnedFd) = match channel {
            ChannelKind::Socket => {
                let (ours, theirs) = UnixStream::pair().map_err(spawn("a socket pair"))?;
                let ours2 = ours.try_clone().map_err(spawn("a socket pair"))?;
                let theirs2 = theirs.try_clone().map_err(spawn("a socket pair"))?;
                (ours.into(), ours2.into(), theirs.into(), theirs2.into())
            }
            ChannelKind::Pipe => {
                let (from_child, child_out) = pipe().map_err(spawn("a pipe"))?;
                let (child_in, to_child) = pipe().map_err(spawn("a pipe"))?;
                (from_child, to_child, child_in, child_out)
            }
        };
        let process = Command::new(exe)
            .args(args)
            .stdin(Stdio::from(theirs_in))
            .stdout(Stdio::from(theirs_out))
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(spawn("spawning it"))?;
        Ok(Child {
            process,
            reader: FrameReader::new(ours_in),
            control: File::from(ours_out),
            standby,
            spawned: Instant::now(),
            last_beat: None,
            misses: 0,
            running: false,
            loaded: None,
            loading: None,
            failure: None,
            ended: None,
        })
    }

    pub fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        let mut buf = Vec::new();
        wire::encode(frame, &mut buf);
        self.control.write_all(&buf)
    }

    /// Sends SIGKILL and, if it has ended already, its status (without waiting for its teardown).
    pub fn kill_now(&mut self) -> Option<std::process::ExitStatus> {
        let _ = self.process.kill();
        self.process.try_wait().ok().flatten()
    }

    pub fn kill(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let _ = self.process.kill();
        self.process.wait()
    }
}

/// Why a child was declared failed.
pub(crate) enum Cause {
    Exited,
    Heartbeat(Duration),
    NotStarted,
    Channel(String),
}

/// The failure's words, its detector and, when known, the time from the
/// failure to now.
pub(crate) fn describe(
    cause: &Cause,
    child: &Child,
    status: Option<std::process::ExitStatus>,
    misses: u32,
    period: Duration,
) -> (String, &'static str, Option<Duration>) {
    let exit = match (status.and_then(|s| s.code()), status.and_then(|s| s.signal()), &child.failure) {
        (Some(c), _, _) => format!("exited with status {c}"),
        (None, Some(s), _) => format!("was killed by signal {s} ({})", crate::ft::signal_name(s)),
        // Not reaped yet (it is being torn down): the status it reported.
        (None, None, Some((c, _, _))) => format!("exited with status {c}"),
        (None, None, None) => "ended".to_string(),
    };
    match cause {
        Cause::Heartbeat(since) => (
            format!(
                "no heartbeat for {:.1} ms ({misses} missed, one every {} ms): the VMM hangs or is stopped",
                since.as_secs_f64() * 1e3,
                period.as_millis()
            ),
            "heartbeat",
            Some(*since),
        ),
        Cause::NotStarted => (format!("the child did not start the guest within {START_TIMEOUT:?}"), "start", None),
        Cause::Channel(e) => (format!("the child's channel broke ({e}); it {exit}"), "channel", None),
        Cause::Exited => match &child.failure {
            Some((_, text, unix_ns)) => {
                let first = text.lines().next().unwrap_or("");
                let since = super::session::unix_ns().saturating_sub(*unix_ns);
                (format!("the VMM {exit}: {first}"), "report", Some(Duration::from_nanos(since)))
            }
            None => (format!("the VMM {exit} without a word (a crash)"), "exit", None),
        },
    }
}

/// A pipe whose ends close on exec (the child gets its end as stdin or stdout).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created by pipe2 and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
