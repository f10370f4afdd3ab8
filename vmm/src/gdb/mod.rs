//! A gdb stub: `vmm run GUEST --gdb 127.0.0.1:1234` serves the GDB remote
//! protocol through the `gdbstub` crate, like QEMU's `-s`; `--gdb-wait`
//! also holds the guest before its first instruction, like `-S`.
//!
//! The vCPU runs on its thread as usual (under its seccomp filter); this
//! module's stub runs on the VMM's main thread, which holds the socket.
//! When gdb connects to a running guest, or sends Ctrl-C, the stub pauses
//! the vCPU as a snapshot would ([`crate::control`]); the stopped vCPU then
//! answers the stub's commands ([`vcpu`]). Registers are given in the
//! layout of the mode the guest is in when gdb connects (i386 for 16- and
//! 32-bit code, x86-64 in long mode), memory is read and written at linear
//! addresses through the guest's page tables, breakpoints are the debug
//! registers DR0-DR3 (int3 beyond four, where KVM can run it), watchpoints
//! too where KVM makes them fire; what this KVM can do is probed first
//! ([`probe`]) and said on stderr and by `monitor caps` in gdb.

pub mod probe;
pub mod regs;
mod target;
pub mod vcpu;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use kvm_ioctls::{Kvm, VcpuFd};
use sandbox::seccompiler::BpfProgram;

use crate::control::{Control, PauseReason};
use crate::memory::GuestMemoryMmap;
use crate::runloop::VcpuRun;
use crate::stats::ExitStats;
use crate::vcpu::Buses;
use crate::vm::{RunReport, VmError};
use vcpu::{Command, Ending, Event, Stop, VcpuDebug};

/// How often the stub looks for gdb's bytes while the guest runs.
const POLL: Duration = Duration::from_millis(5);

/// `--gdb ADDR` and `--gdb-wait`.
pub struct GdbPlan {
    /// Where to listen (HOST:PORT; port 0 picks one, said on `notes`).
    pub listen: SocketAddr,
    /// Hold the guest before its first instruction until gdb resumes it.
    pub wait: bool,
    /// Where the stub tells the user what it does and what KVM cannot.
    pub notes: Box<dyn Write + Send>,
}

impl std::fmt::Debug for GdbPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdbPlan").field("listen", &self.listen).field("wait", &self.wait).finish_non_exhaustive()
    }
}

/// Errors of the gdb stub.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    #[error("cannot listen for gdb on {addr}: pick another port with --gdb HOST:PORT")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("gdb killed the guest")]
    Killed,
    #[error("the vCPU thread stopped answering the gdb stub")]
    VcpuGone,
}

/// What of the VM a debugged run borrows.
pub struct VmParts<'a> {
    pub kvm: &'a Kvm,
    pub vcpu: &'a mut VcpuFd,
    pub buses: &'a mut Buses,
    pub mem: &'a GuestMemoryMmap,
}

impl std::fmt::Debug for VmParts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmParts").finish_non_exhaustive()
    }
}

/// The stub's end of the link to the vCPU.
pub(crate) struct StubLink {
    pub control: Arc<Control>,
    pub events: Receiver<Event>,
    pub commands: Sender<Command>,
}

/// Runs the guest with the stub: the vCPU on its own thread, the stub on this one.
///
/// # Errors
///
/// What the run returns, [`GdbError::Listen`] if the address cannot be bound.
pub fn run(
    parts: VmParts<'_>,
    mut plan: GdbPlan,
    trace: Option<&mut (dyn Write + Send)>,
    stats: Option<ExitStats>,
    timeout: Option<Duration>,
    filter: Option<&BpfProgram>,
) -> Result<RunReport, VmError> {
    let caps = probe::probe(parts.kvm);
    let listener = TcpListener::bind(plan.listen)
        .map_err(|source| VmError::Gdb(GdbError::Listen { addr: plan.listen, source }))?;
    let local = listener.local_addr().unwrap_or(plan.listen);
    let _ = writeln!(plan.notes, "vmm: gdb: listening on {local} (gdb: target remote {local})");
    let _ = writeln!(plan.notes, "vmm: gdb: {}", caps.describe());
    let control = Arc::new(Control::default());
    let (debug, events, commands) = VcpuDebug::link(control.clone(), plan.wait);
    let VmParts { vcpu, buses, mem, .. } = parts;
    let buses = buses.into();
    let run = VcpuRun { vcpu, buses, mem, trace, stats, timeout, link: None, exits: 0, debug: Some(debug), seat: None };
    std::thread::scope(|scope| {
        let vcpu = std::thread::Builder::new()
            .name("vcpu0".into())
            .spawn_scoped(scope, || run.run(filter))
            .map_err(|source| VmError::Thread { name: "vCPU", source })?;
        let link = StubLink { control, events, commands };
        serve(&listener, link, mem, caps, &mut *plan.notes, plan.wait);
        vcpu.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Waits for gdb (or the guest's end), stops the guest for it, and serves
/// gdb until it detaches, kills the guest or the guest ends.
fn serve(
    listener: &TcpListener,
    link: StubLink,
    mem: &GuestMemoryMmap,
    caps: probe::Caps,
    notes: &mut dyn Write,
    wait: bool,
) {
    let Some((stream, stopped)) = accept(listener, &link.events) else { return };
    let peer = stream.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    let _ = writeln!(notes, "vmm: gdb: connected from {peer}");
    if !stopped {
        if !wait {
            link.control.request_pause(PauseReason::Debug);
        }
        match wait_stop(&link.events) {
            Some(Event::Stopped(_)) => {}
            Some(Event::Ended(ending)) => return note_end(notes, &ending),
            _ => return,
        }
    }
    let end = target::debug(stream, link, mem, caps);
    let _ = writeln!(notes, "vmm: gdb: {end}");
}

fn note_end(notes: &mut dyn Write, ending: &Ending) {
    let _ = match ending {
        Ending::Exited(status) => {
            writeln!(notes, "vmm: gdb: the guest ended (status {status}) before gdb could stop it")
        }
        Ending::Failed(e) => writeln!(notes, "vmm: gdb: the run failed before gdb could stop it: {e}"),
    };
}

/// The first event that is a stop or the end (replies left over are dropped).
pub(crate) fn wait_stop(events: &Receiver<Event>) -> Option<Event> {
    loop {
        match events.recv() {
            Ok(e @ (Event::Stopped(_) | Event::Ended(_))) => return Some(e),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Accepts gdb's connection, unless the run ends first; true if the vCPU
/// has already stopped for it (`--gdb-wait`).
fn accept(listener: &TcpListener, events: &Receiver<Event>) -> Option<(TcpStream, bool)> {
    listener.set_nonblocking(true).ok()?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).ok()?;
                let _ = stream.set_nodelay(true);
                return Some((stream, false));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
        match events.recv_timeout(POLL) {
            Ok(Event::Ended(_)) | Err(RecvTimeoutError::Disconnected) => return None,
            // A stop before gdb is there (--gdb-wait): keep it for when gdb comes.
            Ok(Event::Stopped(Stop::Start)) => return accept_blocking(listener).map(|s| (s, true)),
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Accepts with the guest held (it cannot end while it waits for gdb).
fn accept_blocking(listener: &TcpListener) -> Option<TcpStream> {
    listener.set_nonblocking(false).ok()?;
    let (stream, _) = listener.accept().ok()?;
    let _ = stream.set_nodelay(true);
    Some(stream)
}
