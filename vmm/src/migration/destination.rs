//! The receiving side, `vmm receive`: waits for one guest, builds a blank
//! VM as soon as the source says what it offers (so the pre-copy rounds
//! write straight into guest memory), loads the state, and resumes the
//! guest only after the source's `Go` and once it could answer `Resumed`.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use super::{Address, Message, MigrationError, Stream, PEER_TIMEOUT};
use crate::memory::{Bytes, GuestAddress, PageSet, PAGE_SIZE};
use crate::snapshot::state::MAX_VCPUS;
use crate::vm::{SerialIo, Vm};

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    /// Binds `addr` (TCP port 0 picks a free port: see [`Listener::local`]).
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub fn bind(addr: &Address) -> Result<Self, MigrationError> {
        let failed = |source| MigrationError::Connect { doing: "listen on", addr: addr.to_string(), source };
        Ok(match addr {
            Address::Tcp(a) => Listener::Tcp(TcpListener::bind(a).map_err(failed)?),
            Address::Unix(p) => Listener::Unix(UnixListener::bind(p).map_err(failed)?, p.clone()),
        })
    }

    /// The address it listens on, with the port the kernel picked.
    pub fn local(&self) -> String {
        match self {
            Listener::Tcp(l) => l.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string()),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        }
    }

    fn accept(&self) -> Result<(Stream, String), MigrationError> {
        let failed = |source| MigrationError::Io { doing: "waiting for the source", source };
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().map_err(failed)?;
                (Stream::Tcp(s), peer.to_string())
            }
            Listener::Unix(l, p) => (Stream::Unix(l.accept().map_err(failed)?.0), format!("unix:{}", p.display())),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A guest that arrived whole and now belongs to this VMM.
#[derive(Debug)]
pub struct Received {
    pub vm: Vm,
    pub from: String,
    pub pages: u64,
}

/// Receives one guest on `listener`.
///
/// # Errors
///
/// Any failure before the source's `Go` (and the `Resumed` answer): then no
/// guest runs here, and the source keeps running it.
pub fn receive(listener: &Listener, serial: SerialIo) -> Result<Received, MigrationError> {
    let (mut stream, from) = listener.accept()?;
    stream
        .set_timeouts(PEER_TIMEOUT)
        .map_err(|source| MigrationError::Io { doing: "setting up the connection", source })?;
    let mut buf = Vec::new();
    let machine = match stream.receive(&mut buf, "waiting for the source's offer")? {
        Message::Hello { machine } => machine,
        other => return Err(MigrationError::Protocol { expected: "hello", got: other.name() }),
    };
    let refuse = |stream: &mut Stream, e: MigrationError| {
        let _ = stream.send(&Message::Refuse { reason: &crate::cli::chain(&e) }, "refusing");
        e
    };
    if machine.vcpus as usize > MAX_VCPUS || machine.vcpus == 0 {
        let e =
            MigrationError::Refused(format!("the guest has {} vCPUs: this VMM runs 1 to {MAX_VCPUS}", machine.vcpus));
        return Err(refuse(&mut stream, e));
    }
    let mut vm = match Vm::blank(&machine, serial) {
        Ok(vm) => vm,
        Err(e) => return Err(refuse(&mut stream, MigrationError::Vm(Box::new(e)))),
    };
    stream.send(&Message::Accept, "accepting the guest")?;
    let ram_pages = machine.ram_pages();
    let mut received = PageSet::new(ram_pages);
    let mut state = None;
    loop {
        match stream.receive(&mut buf, "receiving the guest")? {
            Message::Pages { first, data, .. } => {
                let count = data.len() as u64 / PAGE_SIZE;
                if first.checked_add(count).is_none_or(|end| end > ram_pages) {
                    return Err(MigrationError::PagesOutside { first, pages: ram_pages });
                }
                vm.memory()
                    .write_slice(data, GuestAddress(first * PAGE_SIZE))
                    .map_err(|_| MigrationError::PagesOutside { first, pages: ram_pages })?;
                received.insert_run(first, count);
            }
            Message::State { snapshot } => {
                state = Some(crate::snapshot::parse(snapshot).map_err(MigrationError::State)?)
            }
            Message::Done { .. } => break,
            other => return Err(MigrationError::Protocol { expected: "pages, state or done", got: other.name() }),
        }
    }
    let Some(snapshot) = state else { return Err(MigrationError::Protocol { expected: "state", got: "done" }) };
    if snapshot.machine != machine {
        let e = MigrationError::Refused(format!("the state is of a {:?}, the offer was {machine:?}", snapshot.machine));
        return Err(refuse(&mut stream, e));
    }
    if let Err(e) = vm.load_state(&snapshot, &[]) {
        return Err(refuse(&mut stream, MigrationError::Vm(Box::new(e))));
    }
    let pages = received.len();
    vm.set_written(received);
    stream.send(&Message::Ready, "telling the source the state is loaded")?;
    match stream.receive(&mut buf, "waiting for the source to hand the guest over")? {
        Message::Go => {}
        other => return Err(MigrationError::Protocol { expected: "go", got: other.name() }),
    }
    // Run only if the source can know it: a failed answer leaves it to the source.
    stream.send(&Message::Resumed, "telling the source the guest runs here")?;
    Ok(Received { vm, from, pages })
}
