//! The sending side of a live migration, run by the controller while the
//! guest runs: pre-copy rounds of the pages the dirty log reports, until
//! the next round would fit in `--max-downtime-ms` (at the bandwidth the
//! last round measured) or `--max-rounds` have been sent; then the pause,
//! the last dirty pages, the state, and the hand-over.

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{wire, Address, Message, MigrationError, MigrationReport, Round, Stream, PEER_TIMEOUT};
use crate::control::{PauseReason, Paused, RunEnd, Verdict};
use crate::controller::{Controller, Outcome};
use crate::memory::{Bytes, GuestAddress, PageSet, PAGE_SIZE};

/// Where and when to migrate.
#[derive(Clone, Debug)]
pub struct MigratePlan {
    pub to: Address,
    /// Start this long after the run starts; SIGUSR2 also starts it.
    pub after: Option<Duration>,
    /// Stop and copy once the dirty pages would take at most this long to send.
    pub max_downtime: Duration,
    /// Stop and copy after this many pre-copy rounds in any case.
    pub max_rounds: u32,
}

fn connect(to: &Address) -> Result<Stream, MigrationError> {
    let failed = |source| MigrationError::Connect { doing: "connect to", addr: to.to_string(), source };
    let stream = match to {
        Address::Tcp(a) => Stream::Tcp(TcpStream::connect(a).map_err(failed)?),
        Address::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(failed)?),
    };
    stream
        .set_timeouts(PEER_TIMEOUT)
        .map_err(|source| MigrationError::Io { doing: "setting up the connection", source })?;
    Ok(stream)
}

/// Migrates the guest to `plan.to`; whatever happens, the report says it.
pub(crate) fn migrate(ctl: &mut Controller<'_>, plan: &MigratePlan, outcome: &mut Outcome) -> MigrationReport {
    let start = Instant::now();
    let mut report = MigrationReport { to: plan.to.to_string(), ..Default::default() };
    let result = run(ctl, plan, outcome, &mut report);
    report.total = start.elapsed();
    if let Err(e) = result {
        report.aborted = Some(crate::cli::chain(&e));
    }
    report
}

fn run(
    ctl: &mut Controller<'_>,
    plan: &MigratePlan,
    outcome: &mut Outcome,
    report: &mut MigrationReport,
) -> Result<(), MigrationError> {
    let mut stream = connect(&plan.to)?;
    stream.send(&Message::Hello { machine: ctl.machine }, "offering the guest")?;
    let mut buf = Vec::new();
    match stream.receive(&mut buf, "waiting for the destination's answer")? {
        Message::Accept => {}
        Message::Refuse { reason } => return Err(MigrationError::Refused(reason.to_string())),
        other => return Err(MigrationError::Protocol { expected: "accept", got: other.name() }),
    }
    let vm_err = |e| MigrationError::Vm(Box::new(e));
    // Round 1: every page ever written; then what the guest dirtied meanwhile.
    let mut to_send = ctl.written.clone();
    to_send.union_with(&ctl.collect_dirty().map_err(vm_err)?);
    let mut frame = Vec::with_capacity((wire::PAGES_PER_FRAME * PAGE_SIZE) as usize + 64);
    for round in 1.. {
        let r = send_pages(ctl, &mut stream, &to_send, round, &mut frame, Some(&mut *outcome))?;
        report.rounds.push(r);
        report.total_bytes += r.bytes;
        to_send = ctl.collect_dirty().map_err(vm_err)?;
        let rate = r.bytes as f64 / r.took.as_secs_f64().max(1e-6);
        let estimate = Duration::from_secs_f64(to_send.len() as f64 * PAGE_SIZE as f64 / rate);
        if estimate <= plan.max_downtime || round >= plan.max_rounds {
            break;
        }
    }
    let paused_at = Instant::now();
    let paused = pause(ctl, outcome)?;
    report.pause = Some(paused_at.elapsed());
    let result = stop_and_copy(ctl, &mut stream, &paused, to_send, report, &mut frame);
    let verdict = match result {
        Ok(()) => {
            report.downtime = Some(paused_at.elapsed());
            Verdict::Stop(RunEnd::Migrated)
        }
        Err(_) => Verdict::Resume,
    };
    let _ = paused.reply.send(verdict);
    result
}

/// Asks the vCPU to pause and waits for it, serving snapshot pauses meanwhile.
fn pause(ctl: &mut Controller<'_>, outcome: &mut Outcome) -> Result<Paused, MigrationError> {
    loop {
        ctl.control.request_pause(PauseReason::Migration);
        match ctl.paused.recv() {
            Ok(p) if p.reason == PauseReason::Migration => return Ok(p),
            // A snapshot pause clears the request on its way out: ask again.
            Ok(p) => ctl.on_pause(p, outcome),
            Err(_) => return Err(MigrationError::GuestEnded),
        }
    }
}

fn stop_and_copy(
    ctl: &mut Controller<'_>,
    stream: &mut Stream,
    paused: &Paused,
    mut to_send: PageSet,
    report: &mut MigrationReport,
    frame: &mut Vec<u8>,
) -> Result<(), MigrationError> {
    let vm_err = |e| MigrationError::Vm(Box::new(e));
    let start = Instant::now();
    to_send.union_with(&ctl.collect_dirty().map_err(vm_err)?);
    let round = report.rounds.len() as u32 + 1;
    let mut r = send_pages(ctl, stream, &to_send, round, frame, None)?;
    let state = crate::snapshot::format::encode(&ctl.machine_state(paused).map_err(vm_err)?);
    stream.send(&Message::State { snapshot: &state }, "sending the state")?;
    let pages = report.rounds.iter().map(|r| r.pages).sum::<u64>() + r.pages;
    stream.send(&Message::Done { pages }, "sending the state")?;
    r.bytes += state.len() as u64;
    r.took = start.elapsed();
    r.stopped = true;
    report.rounds.push(r);
    report.total_bytes += r.bytes;
    let mut buf = Vec::new();
    let done = Instant::now();
    match stream.receive(&mut buf, "waiting for the destination to load the state")? {
        Message::Ready => report.load = Some(done.elapsed()),
        Message::Refuse { reason } => return Err(MigrationError::Refused(reason.to_string())),
        other => return Err(MigrationError::Protocol { expected: "ready", got: other.name() }),
    }
    stream.send(&Message::Go, "handing the guest over")?;
    match stream.receive(&mut buf, "waiting for the destination to resume the guest")? {
        Message::Resumed => Ok(()),
        other => Err(MigrationError::Protocol { expected: "resumed", got: other.name() }),
    }
}

/// Sends `pages` as frames of up to 256 pages; between frames, serves the
/// vCPU's snapshot pauses and notices the guest's end (when `outcome` is
/// given: the vCPU runs).
fn send_pages(
    ctl: &mut Controller<'_>,
    stream: &mut Stream,
    pages: &PageSet,
    round: u32,
    frame: &mut Vec<u8>,
    mut outcome: Option<&mut Outcome>,
) -> Result<Round, MigrationError> {
    let start = Instant::now();
    let mut r = Round { pages: 0, bytes: 0, took: Duration::ZERO, stopped: false };
    for (first, count) in pages.runs() {
        let mut page = first;
        while page < first + count {
            let n = (first + count - page).min(wire::PAGES_PER_FRAME);
            frame.clear();
            let data = wire::begin_pages(frame, round, page, n);
            ctl.mem
                .read_slice(&mut frame[data], GuestAddress(page * PAGE_SIZE))
                .map_err(|_| MigrationError::PagesOutside { first: page, pages: ctl.machine.ram_pages() })?;
            wire::seal(frame, 0);
            std::io::Write::write_all(stream, frame)
                .map_err(|source| MigrationError::Io { doing: "sending pages", source })?;
            r.pages += n;
            r.bytes += frame.len() as u64;
            page += n;
            if let Some(outcome) = outcome.as_deref_mut() {
                match ctl.paused.try_recv() {
                    Ok(p) => ctl.on_pause(p, outcome),
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return Err(MigrationError::GuestEnded),
                    Err(std::sync::mpsc::TryRecvError::Empty) => {}
                }
            }
        }
    }
    r.took = start.elapsed();
    Ok(r)
}
