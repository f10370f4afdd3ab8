//! The exit handler (`vmm::vcpu::handle_exit`) on made-up exits, with the
//! port and MMIO buses wired as `vm.rs` wires the real VM's (COM1 UART,
//! debug-exit, POST and scratch ports; the MMIO scratch page).
//!
//! Checks: every port and MMIO access, of any length (a `rep outsb`
//! string included), is reported with its address, length and first bytes
//! and reaches the device the layout puts there, or none: unclaimed reads
//! are all ones and an address counts as unclaimed once; a write to the
//! debug-exit ports ends the run with its first byte; reads return what
//! the devices hold (POST: last code written; debug-exit: 0; scratch: ID
//! then the 8-byte register, as written); bytes written to the UART's data
//! port with DLAB and loopback off come out of the UART in order; HLT
//! halts; SHUTDOWN, INTERNAL_ERROR, FAIL_ENTRY and SYSTEM_EVENT are their
//! own errors and every other exit is "unexpected", never a panic.
#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use kvm_bindings::kvm_debug_exit_arch;
use kvm_ioctls::{HypercallExit, MsrExitReason, ReadMsrExit, VcpuExit, WriteMsrExit};
use libfuzzer_sys::fuzz_target;
use vmm::arch::x86_64::layout::{
    COM1_BASE, DEBUG_EXIT_PORT, MMIO_SCRATCH_BASE, PIO_SCRATCH_BASE, POST_PORT, SCRATCH_MMIO_LEN, SCRATCH_PIO_LEN,
};
use vmm::devices::{DebugExit, PostCode, Scratch, Serial};
use vmm::vcpu::{handle_exit, Buses, ExitKind, VcpuAction, VcpuError};
use vmm::SharedBuffer;

/// `vm.rs`'s wiring: (bus is MMIO, base, length, name).
const LAYOUT: [(bool, u64, u64, &str); 5] = [
    (false, COM1_BASE, 8, "uart"),
    (false, DEBUG_EXIT_PORT, 4, "debug-exit"),
    (false, POST_PORT, 1, "post"),
    (false, PIO_SCRATCH_BASE, SCRATCH_PIO_LEN, "scratch"),
    (true, MMIO_SCRATCH_BASE, SCRATCH_MMIO_LEN, "scratch"),
];

fn buses(uart: SharedBuffer) -> Buses {
    let mut b = Buses::default();
    for (mmio, base, len, name) in LAYOUT {
        let device: Box<dyn vmm::bus::BusDevice> = match name {
            "uart" => Box::new(Serial::new(uart.clone())),
            "debug-exit" => Box::new(DebugExit),
            "post" => Box::new(PostCode::default()),
            _ => Box::new(Scratch::default()),
        };
        let bus = if mmio { &mut b.mmio } else { &mut b.pio };
        if let Err(e) = bus.insert(base, len, name, device) {
            panic!("the VM's layout does not fit on the bus: {e}");
        }
    }
    b
}

/// An address: near one of the devices of the layout, or anywhere.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Device(u8, i16),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Exit {
    IoOut(Addr, Vec<u8>),
    IoIn(Addr, u8),
    MmioWrite(Addr, Vec<u8>),
    MmioRead(Addr, u8),
    Hlt,
    Shutdown,
    InternalError,
    FailEntry(u64, u32),
    SystemEvent(u32, Vec<u64>),
    Unknown,
    Exception,
    Nmi,
    IrqWindowOpen,
    Intr,
    Debug(u32, u32, u64),
    Hypercall(u64, [u64; 6], u32),
    IoapicEoi(u8),
    Rdmsr(u32),
    Wrmsr(u32, u64),
    MemoryFault(u64, u64, u64),
    Unsupported(u32),
}

/// The state of the devices as the layout's documentation describes it.
#[derive(Debug, Default)]
struct Model {
    post: u8,
    /// The scratch register of the port and of the MMIO device.
    scratch: [u64; 2],
    lcr: u8,
    mcr: u8,
    uart_out: Vec<u8>,
    unclaimed: [HashSet<u64>; 2],
}

impl Model {
    fn scratch_bytes(&self, which: usize) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&u64::from(vmm::devices::simple::SCRATCH_ID).to_le_bytes());
        b[8..].copy_from_slice(&self.scratch[which].to_le_bytes());
        b
    }
}

/// The address an exit carries: 16 bits on the port bus.
fn addr(a: Addr, mmio: bool) -> u64 {
    let a = match a {
        Addr::Device(i, d) => {
            let on_bus: Vec<u64> = LAYOUT.iter().filter(|l| l.0 == mmio).map(|l| l.1).collect();
            on_bus[usize::from(i) % on_bus.len()].wrapping_add_signed(i64::from(d))
        }
        Addr::Raw(a) => a,
    };
    if mmio {
        a
    } else {
        u64::from(a as u16)
    }
}

/// (name, offset) of the device the layout puts at `addr`.
fn owner(addr: u64, mmio: bool) -> Option<(&'static str, u64)> {
    LAYOUT.iter().find(|l| l.0 == mmio && addr >= l.1 && addr - l.1 < l.2).map(|l| (l.3, addr - l.1))
}

fn first_bytes(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Checks an access exit and updates the model.
fn check_access(model: &mut Model, mmio: bool, write: bool, a: u64, data: &[u8], h: &vmm::vcpu::Handled) {
    let kind = match (mmio, write) {
        (false, false) => ExitKind::IoIn,
        (false, true) => ExitKind::IoOut,
        (true, false) => ExitKind::MmioRead,
        (true, true) => ExitKind::MmioWrite,
    };
    assert_eq!(h.kind, kind);
    let access = h.access.unwrap_or_else(|| panic!("{kind:?} without an access"));
    assert_eq!((access.addr, access.len, access.value), (a, data.len(), first_bytes(data)));
    let owner = owner(a, mmio);
    assert_eq!(access.dispatch.device, owner.map(|o| o.0), "device at {a:#x}");
    let mut action = VcpuAction::Resume;
    let scratch = usize::from(mmio);
    match owner {
        None => {
            assert_eq!(access.dispatch.first_unclaimed, model.unclaimed[scratch].insert(a));
            if !write {
                assert!(data.iter().all(|&b| b == 0xff), "unclaimed read gave {data:?}");
            }
        }
        Some((name, offset)) => {
            assert!(!access.dispatch.first_unclaimed);
            match (name, write) {
                ("debug-exit", true) => {
                    if let Some(&status) = data.first() {
                        action = VcpuAction::Exit(status);
                    }
                }
                ("debug-exit", false) => assert!(data.iter().all(|&b| b == 0), "debug-exit read {data:?}"),
                ("post", true) => model.post = data.last().copied().unwrap_or(model.post),
                ("post", false) => assert!(data.iter().all(|&b| b == model.post), "POST read {data:?}"),
                ("scratch", true) => {
                    let mut regs = model.scratch_bytes(scratch);
                    for (i, &b) in data.iter().enumerate() {
                        if let Some(at @ 8..=15) = offset.checked_add(i as u64) {
                            regs[at as usize] = b;
                        }
                    }
                    model.scratch[scratch] = u64::from_le_bytes(regs[8..].try_into().unwrap_or_default());
                }
                ("scratch", false) => {
                    let regs = model.scratch_bytes(scratch);
                    let expected: Vec<u8> = (0..data.len() as u64)
                        .map(|i| offset.checked_add(i).and_then(|o| regs.get(o as usize)).copied().unwrap_or(0))
                        .collect();
                    assert_eq!(data, expected, "scratch read at {offset:#x}");
                }
                ("uart", true) => match (offset, data.first()) {
                    (_, None) => {}
                    (0, Some(_)) if model.lcr & 0x80 == 0 && model.mcr & 0x10 == 0 => {
                        model.uart_out.extend_from_slice(data)
                    }
                    (3, Some(&v)) => model.lcr = v,
                    (4, Some(&v)) => model.mcr = v & 0x1f,
                    _ => {}
                },
                _ => {} // UART reads: the vmm_serial target checks them
            }
        }
    }
    assert_eq!(h.action, action, "{kind:?} at {a:#x} of {data:?}");
}

fuzz_target!(|exits: Vec<Exit>| {
    let uart = SharedBuffer::default();
    let mut buses = buses(uart.clone());
    let mut model = Model { lcr: 0x03, mcr: 0x08, ..Model::default() };
    for exit in exits.iter().take(256) {
        let (mut ret, mut error, mut msr) = (0u64, 0u8, 0u64);
        let expected_error = match exit {
            Exit::IoOut(a, data) | Exit::MmioWrite(a, data) => {
                let mmio = matches!(exit, Exit::MmioWrite(..));
                let at = addr(*a, mmio);
                let e = if mmio { VcpuExit::MmioWrite(at, data) } else { VcpuExit::IoOut(at as u16, data) };
                let h = handle_exit(e, &mut buses).unwrap_or_else(|e| panic!("access failed: {e}"));
                check_access(&mut model, mmio, true, at, data, &h);
                continue;
            }
            Exit::IoIn(a, len) | Exit::MmioRead(a, len) => {
                let mmio = matches!(exit, Exit::MmioRead(..));
                let at = addr(*a, mmio);
                let mut data = vec![0x5a; usize::from(len % 9)];
                let e = if mmio { VcpuExit::MmioRead(at, &mut data) } else { VcpuExit::IoIn(at as u16, &mut data) };
                let h = handle_exit(e, &mut buses).unwrap_or_else(|e| panic!("access failed: {e}"));
                check_access(&mut model, mmio, false, at, &data, &h);
                continue;
            }
            Exit::Hlt => {
                let h = handle_exit(VcpuExit::Hlt, &mut buses).unwrap_or_else(|e| panic!("HLT failed: {e}"));
                assert_eq!((h.kind, h.access, h.action), (ExitKind::Hlt, None, VcpuAction::Halted));
                continue;
            }
            Exit::Shutdown => (VcpuExit::Shutdown, Some(VcpuError::Shutdown)),
            Exit::InternalError => (VcpuExit::InternalError, Some(VcpuError::InternalError)),
            Exit::FailEntry(reason, cpu) => {
                (VcpuExit::FailEntry(*reason, *cpu), Some(VcpuError::FailEntry { reason: *reason }))
            }
            Exit::SystemEvent(kind, data) => {
                (VcpuExit::SystemEvent(*kind, data), Some(VcpuError::SystemEvent { kind: *kind }))
            }
            Exit::Unknown => (VcpuExit::Unknown, None),
            Exit::Exception => (VcpuExit::Exception, None),
            Exit::Nmi => (VcpuExit::Nmi, None),
            Exit::IrqWindowOpen => (VcpuExit::IrqWindowOpen, None),
            Exit::Intr => (VcpuExit::Intr, None),
            Exit::Debug(exception, pad, pc) => {
                let arch = kvm_debug_exit_arch { exception: *exception, pad: *pad, pc: *pc, ..Default::default() };
                (VcpuExit::Debug(arch), None)
            }
            Exit::Hypercall(nr, args, longmode) => {
                (VcpuExit::Hypercall(HypercallExit { nr: *nr, args: *args, ret: &mut ret, longmode: *longmode }), None)
            }
            Exit::IoapicEoi(v) => (VcpuExit::IoapicEoi(*v), None),
            Exit::Rdmsr(index) => {
                let reason = MsrExitReason::Unknown;
                (VcpuExit::X86Rdmsr(ReadMsrExit { error: &mut error, reason, index: *index, data: &mut msr }), None)
            }
            Exit::Wrmsr(index, data) => {
                let reason = MsrExitReason::Filter;
                (VcpuExit::X86Wrmsr(WriteMsrExit { error: &mut error, reason, index: *index, data: *data }), None)
            }
            Exit::MemoryFault(flags, gpa, size) => {
                (VcpuExit::MemoryFault { flags: *flags, gpa: *gpa, size: *size }, None)
            }
            Exit::Unsupported(n) => (VcpuExit::Unsupported(*n), None),
        };
        let (e, expected) = expected_error;
        match (handle_exit(e, &mut buses), expected) {
            (Err(got), Some(want)) => assert_eq!(got, want),
            (Err(VcpuError::Unexpected(what)), None) => assert!(!what.is_empty(), "unexpected exit with no name"),
            (got, want) => panic!("{exit:?}: handled as {got:?}, expected {want:?}"),
        }
    }
    assert_eq!(uart.take(), model.uart_out, "bytes out of the UART");
});
