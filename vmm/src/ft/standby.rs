//! `vmm standby --supervised`: the warm standby of `vmm supervise`. It
//! waits on its stdin for the supervisor's frames: each `Load` restores
//! that checkpoint into a new VM and prepares it to run (the dirty log on,
//! KVM's capabilities asked, the first checkpoint taken: the file itself),
//! then says `Loaded`; `Go` makes it the active VMM from where it is, in a
//! fraction of the time a new process needs to get there. The end of its
//! stdin (the supervisor gone) ends it.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::args::FtArgs;
use super::channel::{read_frame, ChildChannel, LinkError};
use super::metrics::RunMetrics;
use super::output::OutputGate;
use super::session::{Release, Session, SessionOptions};
use super::wire::Frame;
use super::FtError;
use crate::snapshot::file;
use crate::vm::{SerialIo, Vm, VmError};

fn channel_err(doing: &'static str) -> impl FnOnce(std::io::Error) -> VmError {
    move |source| VmError::Ft(Box::new(FtError::Channel { doing, source }))
}

fn link_err(e: LinkError) -> VmError {
    let source = match e {
        LinkError::Io(e) => e,
        LinkError::Frame(f) => std::io::Error::new(std::io::ErrorKind::InvalidData, f),
    };
    VmError::Ft(Box::new(FtError::Channel { doing: "reading the supervisor's frames", source }))
}

/// A checkpoint to restore, and whether to run it at once.
struct Next {
    seq: u64,
    path: PathBuf,
    go: Option<u32>,
}

/// Runs the standby until it is promoted (then until the guest ends) or
/// its supervisor is gone; returns the exit status.
///
/// # Errors
///
/// A checkpoint that cannot be restored, the channel failing, or, once
/// promoted, the failure that ended the run.
pub fn run(
    args: &FtArgs,
    opts: SessionOptions,
    input: Option<Box<dyn Read + Send>>,
    out: Box<dyn Write + Send>,
    err: &mut (dyn Write + Send),
) -> Result<i32, VmError> {
    let mut input = input.unwrap_or_else(|| Box::new(std::io::empty()));
    let mut channel = ChildChannel::new(out);
    channel.send(&Frame::Hello { pid: std::process::id(), standby: true }).map_err(channel_err("saying hello"))?;
    let mut buf = Vec::new();
    let Some(mut next) = wait(&mut input, &mut buf)? else { return Ok(0) };
    loop {
        let snapshot = file::read_state(&next.path).map_err(VmError::Snapshot)?;
        let mem = file::map_memory(&next.path, &snapshot, true).map_err(VmError::Snapshot)?;
        let (gate, uart) = OutputGate::new();
        let mut vm = Vm::restore(&snapshot, mem, SerialIo { out: Box::new(uart), input: None }, &[])?;
        let mut ft = args.clone();
        (ft.checkpoint_seq, ft.resumed) = (next.seq, true);
        let plan = ft.plan(Some(next.path.clone()), Arc::new(RunMetrics::default()));
        let release = Release::Supervisor { channel: channel.clone(), gate };
        let mut session = Session::new(&mut vm, &plan, release)?;
        let seq = next.seq;
        if let Some(attempt) = next.go {
            session.set_attempt(attempt);
            return finish(session.run(opts, err)?, &plan, err);
        }
        channel.send(&Frame::Loaded { seq }).map_err(channel_err("saying the checkpoint is loaded"))?;
        let Some(then) = wait(&mut input, &mut buf)? else { return Ok(0) };
        if then.seq == seq {
            if let Some(attempt) = then.go {
                session.set_attempt(attempt);
                return finish(session.run(opts, err)?, &plan, err);
            }
        }
        next = then;
    }
}

fn finish(report: super::session::FtReport, plan: &super::FtPlan, err: &mut dyn Write) -> Result<i32, VmError> {
    super::args::render(&report, plan, err);
    let status = report.status();
    report.outcome.map(|_| status)
}

/// The next `Load` or `Go`; `None` when the supervisor is gone.
fn wait(input: &mut dyn Read, buf: &mut Vec<u8>) -> Result<Option<Next>, VmError> {
    loop {
        match read_frame(input, buf).map_err(link_err)? {
            None => return Ok(None),
            Some(Frame::Load { seq, path }) => return Ok(Some(Next { seq, path: path.into(), go: None })),
            Some(Frame::Go { seq, path, attempt }) => {
                return Ok(Some(Next { seq, path: path.into(), go: Some(attempt) }))
            }
            Some(_) => {}
        }
    }
}
