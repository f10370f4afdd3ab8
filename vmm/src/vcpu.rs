//! The exit handler: one function turns every vCPU exit into an action.
//! It never looks at port numbers: the buses decide who owns an address.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};

use kvm_ioctls::VcpuExit;

use crate::bus::{Bus, DeviceRequest, Dispatch};

/// The port-I/O bus and the MMIO bus.
#[derive(Debug, Default)]
pub struct Buses {
    pub pio: Bus,
    pub mmio: Bus,
}

/// How a run loop reaches the buses: its own (one vCPU), or shared behind
/// a lock by every vCPU thread of an SMP guest.
#[derive(Debug)]
pub enum BusRef<'a> {
    Own(&'a mut Buses),
    Shared(&'a Mutex<Buses>),
}

impl<'a> From<&'a mut Buses> for BusRef<'a> {
    fn from(buses: &'a mut Buses) -> Self {
        BusRef::Own(buses)
    }
}

impl BusRef<'_> {
    /// The buses, for one exit (held while a device handles it).
    pub fn lock(&mut self) -> BusGuard<'_> {
        match self {
            BusRef::Own(buses) => BusGuard::Own(buses),
            // A device that panicked on another vCPU thread has already ended
            // the run; its state is still the buses' state.
            BusRef::Shared(buses) => BusGuard::Shared(buses.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }
}

/// The buses while one exit is handled.
#[derive(Debug)]
pub enum BusGuard<'g> {
    Own(&'g mut Buses),
    Shared(MutexGuard<'g, Buses>),
}

impl Deref for BusGuard<'_> {
    type Target = Buses;
    fn deref(&self) -> &Buses {
        match self {
            BusGuard::Own(b) => b,
            BusGuard::Shared(b) => b,
        }
    }
}

impl DerefMut for BusGuard<'_> {
    fn deref_mut(&mut self) -> &mut Buses {
        match self {
            BusGuard::Own(b) => b,
            BusGuard::Shared(b) => b,
        }
    }
}

/// Kinds of exit, for the trace and the statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExitKind {
    IoIn,
    IoOut,
    MmioRead,
    MmioWrite,
    Hlt,
    Shutdown,
    InternalError,
    FailEntry,
    SystemEvent,
    Other,
}

impl ExitKind {
    /// Short name used in the trace and the statistics table.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoIn => "io-in",
            ExitKind::IoOut => "io-out",
            ExitKind::MmioRead => "mmio-read",
            ExitKind::MmioWrite => "mmio-write",
            ExitKind::Hlt => "hlt",
            ExitKind::Shutdown => "shutdown",
            ExitKind::InternalError => "internal-error",
            ExitKind::FailEntry => "fail-entry",
            ExitKind::SystemEvent => "system-event",
            ExitKind::Other => "other",
        }
    }
}

/// A port or MMIO access and who took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Port number or guest-physical address.
    pub addr: u64,
    /// Bytes transferred (for `rep outsb`, the whole string).
    pub len: usize,
    /// The first (up to) 8 bytes transferred, little-endian.
    pub value: u64,
    /// Which device took it.
    pub dispatch: Dispatch,
}

/// What the run loop does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuAction {
    /// Run the guest again.
    Resume,
    /// The guest executed HLT and KVM has no in-kernel irqchip to wait on.
    Halted,
    /// End the run with this guest status.
    Exit(u8),
    /// The guest reset the machine: end the run.
    Reset,
}

/// The outcome of one exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handled {
    pub kind: ExitKind,
    pub access: Option<Access>,
    pub action: VcpuAction,
}

/// Exits that end the run as a failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VcpuError {
    #[error("the guest shut down (KVM_EXIT_SHUTDOWN): almost always a triple fault, an exception raised while delivering a double fault, e.g. with no usable IDT")]
    Shutdown,
    #[error("KVM could not handle an instruction (KVM_EXIT_INTERNAL_ERROR)")]
    InternalError,
    #[error("VM entry failed (KVM_EXIT_FAIL_ENTRY), hardware entry failure reason {reason:#x}: the register state is invalid for the mode, check the segments and control registers")]
    FailEntry { reason: u64 },
    #[error("the guest requested system event {kind} (1 = shutdown, 2 = reset, 3 = crash)")]
    SystemEvent { kind: u32 },
    #[error("unexpected exit {0}: this VMM does not handle it")]
    Unexpected(String),
}

impl VcpuError {
    /// The kind of exit behind the error.
    pub fn kind(&self) -> ExitKind {
        match self {
            VcpuError::Shutdown => ExitKind::Shutdown,
            VcpuError::InternalError => ExitKind::InternalError,
            VcpuError::FailEntry { .. } => ExitKind::FailEntry,
            VcpuError::SystemEvent { .. } => ExitKind::SystemEvent,
            VcpuError::Unexpected(_) => ExitKind::Other,
        }
    }
}

fn first_bytes(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

fn access(kind: ExitKind, addr: u64, data: &[u8], dispatch: Dispatch) -> Handled {
    let action = match dispatch.request {
        DeviceRequest::None => VcpuAction::Resume,
        DeviceRequest::Exit(status) => VcpuAction::Exit(status),
        DeviceRequest::Reset => VcpuAction::Reset,
    };
    let access = Access { addr, len: data.len(), value: first_bytes(data), dispatch };
    Handled { kind, access: Some(access), action }
}

/// Handles one exit: dispatches accesses to the buses, turns the rest into
/// an action or an error.
pub fn handle_exit(exit: VcpuExit<'_>, buses: &mut Buses) -> Result<Handled, VcpuError> {
    match exit {
        VcpuExit::IoOut(port, data) => {
            let d = buses.pio.write(u64::from(port), data);
            Ok(access(ExitKind::IoOut, u64::from(port), data, d))
        }
        VcpuExit::IoIn(port, data) => {
            let d = buses.pio.read(u64::from(port), data);
            Ok(access(ExitKind::IoIn, u64::from(port), data, d))
        }
        VcpuExit::MmioWrite(addr, data) => {
            let d = buses.mmio.write(addr, data);
            Ok(access(ExitKind::MmioWrite, addr, data, d))
        }
        VcpuExit::MmioRead(addr, data) => {
            let d = buses.mmio.read(addr, data);
            Ok(access(ExitKind::MmioRead, addr, data, d))
        }
        VcpuExit::Hlt => Ok(Handled { kind: ExitKind::Hlt, access: None, action: VcpuAction::Halted }),
        VcpuExit::Shutdown => Err(VcpuError::Shutdown),
        VcpuExit::InternalError => Err(VcpuError::InternalError),
        VcpuExit::FailEntry(reason, _cpu) => Err(VcpuError::FailEntry { reason }),
        VcpuExit::SystemEvent(kind, _data) => Err(VcpuError::SystemEvent { kind }),
        other => Err(VcpuError::Unexpected(format!("{other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{DebugExit, Scratch, Serial};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn buses(out: Shared) -> Buses {
        let mut b = Buses::default();
        b.pio.insert(0x3f8, 8, "uart", Box::new(Serial::new(out))).unwrap();
        b.pio.insert(0xf4, 1, "debug-exit", Box::new(DebugExit)).unwrap();
        b.mmio.insert(0xd000_0000, 0x1000, "scratch", Box::new(Scratch::default())).unwrap();
        b
    }

    #[test]
    fn port_writes_reach_the_uart() {
        let out = Shared::default();
        let mut b = buses(out.clone());
        let h = handle_exit(VcpuExit::IoOut(0x3f8, b"a"), &mut b).unwrap();
        assert_eq!((h.kind, h.action), (ExitKind::IoOut, VcpuAction::Resume));
        assert_eq!(h.access.unwrap().dispatch.device, Some("uart"));
        handle_exit(VcpuExit::IoOut(0x3f8, b"bcd"), &mut b).unwrap(); // rep outsb
        assert_eq!(&*out.0.lock().unwrap(), b"abcd");
    }

    #[test]
    fn debug_exit_ends_the_run() {
        let mut b = buses(Shared::default());
        let h = handle_exit(VcpuExit::IoOut(0xf4, &[3]), &mut b).unwrap();
        assert_eq!(h.action, VcpuAction::Exit(3));
    }

    #[test]
    fn reads_fill_the_buffer_and_unclaimed_reads_are_all_ones() {
        let mut b = buses(Shared::default());
        let mut data = [0u8; 1];
        let h = handle_exit(VcpuExit::IoIn(0x3fd, &mut data), &mut b).unwrap();
        assert_eq!((data[0], h.access.unwrap().value), (0x60, 0x60));
        let mut data = [0u8; 2];
        let h = handle_exit(VcpuExit::IoIn(0x2f8, &mut data), &mut b).unwrap();
        assert_eq!(data, [0xff, 0xff]);
        let a = h.access.unwrap();
        assert_eq!((a.dispatch.device, a.dispatch.first_unclaimed), (None, true));
    }

    #[test]
    fn mmio_goes_to_the_mmio_bus() {
        let mut b = buses(Shared::default());
        handle_exit(VcpuExit::MmioWrite(0xd000_0008, &[1, 2, 3, 4, 5, 6, 7, 8]), &mut b).unwrap();
        let mut data = [0u8; 8];
        let h = handle_exit(VcpuExit::MmioRead(0xd000_0008, &mut data), &mut b).unwrap();
        assert_eq!(h.access.unwrap().value, 0x0807_0605_0403_0201);
        assert_eq!(h.kind, ExitKind::MmioRead);
    }

    #[test]
    fn fatal_exits_become_errors() {
        let mut b = Buses::default();
        assert_eq!(handle_exit(VcpuExit::Shutdown, &mut b), Err(VcpuError::Shutdown));
        assert_eq!(handle_exit(VcpuExit::InternalError, &mut b), Err(VcpuError::InternalError));
        assert_eq!(handle_exit(VcpuExit::FailEntry(0x21, 0), &mut b), Err(VcpuError::FailEntry { reason: 0x21 }));
        assert_eq!(handle_exit(VcpuExit::Hlt, &mut b).unwrap().action, VcpuAction::Halted);
        assert!(matches!(handle_exit(VcpuExit::Nmi, &mut b), Err(VcpuError::Unexpected(_))));
    }
}
