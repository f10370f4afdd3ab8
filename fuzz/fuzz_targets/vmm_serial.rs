//! The 16550A UART model (`vmm::devices::Serial`) under arbitrary register
//! reads and writes (offsets 0-7, any data length: `rep insb`/`rep outsb`
//! hand it several bytes at once), bytes queued by the VMM and bytes
//! arriving on its input channel, compared with a model of the 16550A
//! registers written from the datasheet's rules:
//!
//! - LSR: THRE and TEMT always set (transmission is instant), DR set
//!   exactly when the receive FIFO holds a byte; the FIFO holds 64 bytes.
//! - RBR reads take bytes in arrival order; THR writes go to the output in
//!   order, every byte of a string write; with DLAB set, offsets 0 and 1
//!   are the divisor latch and data writes transmit nothing.
//! - Loopback (MCR bit 4): transmitted bytes come back into the receive
//!   FIFO instead of the output, MSR mirrors MCR's DTR/RTS/OUT1/OUT2.
//! - IIR: bit 0 clear exactly when an enabled interrupt is pending,
//!   received data before THR empty; reading IIR acknowledges THR empty;
//!   bits 6-7 set when FCR enabled the FIFOs. IER keeps its low 4 bits.
//! - The IRQ line pulses only for an enabled interrupt.
//! - SCR, LCR and MCR (5 bits) read back what was written.
#![no_main]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vmm::bus::{BusDevice, DeviceRequest};
use vmm::devices::{IrqLine, Serial};

const FIFO: usize = 64;

#[derive(Arbitrary, Debug)]
enum Op {
    Write {
        offset: u8,
        data: Vec<u8>,
    },
    WriteByte {
        offset: u8,
        value: u8,
    },
    Read {
        offset: u8,
        len: u8,
    },
    /// The VMM queues bytes (`enqueue_input`).
    Enqueue(Vec<u8>),
    /// Bytes arrive on the input channel (the VMM's stdin thread).
    Arrive(Vec<u8>),
}

struct Pulses(Arc<AtomicUsize>);
impl IrqLine for Pulses {
    fn trigger(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The registers as the datasheet describes them.
#[derive(Debug)]
struct Model {
    ier: u8,
    lcr: u8,
    mcr: u8,
    fcr: u8,
    scr: u8,
    divisor: u16,
    rx: VecDeque<u8>,
    /// Bytes sent to the input channel, not yet in the FIFO.
    arriving: VecDeque<u8>,
    thr_empty_pending: bool,
    out: Vec<u8>,
}

impl Model {
    fn dlab(&self) -> bool {
        self.lcr & 0x80 != 0
    }

    /// The device takes arrived bytes into its FIFO whenever the guest
    /// reads a register; returns whether that raises an interrupt.
    fn pull(&mut self) -> bool {
        let mut got = false;
        while self.rx.len() < FIFO {
            let Some(b) = self.arriving.pop_front() else { break };
            self.rx.push_back(b);
            got = true;
        }
        got && self.ier & 1 != 0
    }

    fn iir(&mut self) -> u8 {
        let fifo = if self.fcr & 1 != 0 { 0xc0 } else { 0 };
        let id = if self.ier & 1 != 0 && !self.rx.is_empty() {
            0x04
        } else if self.ier & 2 != 0 && self.thr_empty_pending {
            self.thr_empty_pending = false;
            0x02
        } else {
            0x01
        };
        fifo | id
    }

    /// Expected value of reading `offset` once (after `pull`).
    fn read_register(&mut self, offset: u8) -> u8 {
        match (offset, self.dlab()) {
            (0, true) => self.divisor as u8,
            (0, false) => self.rx.pop_front().unwrap_or(0),
            (1, true) => (self.divisor >> 8) as u8,
            (1, false) => self.ier,
            (2, _) => self.iir(),
            (3, _) => self.lcr,
            (4, _) => self.mcr,
            (5, _) => 0x60 | u8::from(!self.rx.is_empty()),
            (6, _) if self.mcr & 0x10 != 0 => {
                let m = self.mcr;
                ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
            }
            (6, _) => 0xb0,
            _ => self.scr,
        }
    }

    /// A write; returns whether it raises an interrupt.
    fn write(&mut self, offset: u8, data: &[u8]) -> bool {
        let Some(&v) = data.first() else { return false };
        match (offset, self.dlab()) {
            (0, true) => self.divisor = (self.divisor & 0xff00) | u16::from(v),
            (0, false) => {
                if self.mcr & 0x10 != 0 {
                    let room = FIFO - self.rx.len();
                    self.rx.extend(data.iter().take(room));
                } else {
                    self.out.extend_from_slice(data);
                }
                if self.ier & 2 != 0 {
                    self.thr_empty_pending = true;
                    return true;
                }
            }
            (1, true) => self.divisor = (self.divisor & 0x00ff) | (u16::from(v) << 8),
            (1, false) => {
                let enabling = v & 2 != 0 && self.ier & 2 == 0;
                self.ier = v & 0x0f;
                if enabling {
                    self.thr_empty_pending = true;
                    return true;
                }
            }
            (2, _) => {
                self.fcr = v;
                if v & 2 != 0 {
                    self.rx.clear();
                }
            }
            (3, _) => self.lcr = v,
            (4, _) => self.mcr = v & 0x1f,
            (7, _) => self.scr = v,
            _ => {} // LSR and MSR are read-only
        }
        false
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let pulses = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let mut uart = Serial::new(Vec::new()).with_irq(Box::new(Pulses(pulses.clone()))).with_input(rx);
    let mut model = Model {
        ier: 0,
        lcr: 0x03,
        mcr: 0x08,
        fcr: 0,
        scr: 0,
        divisor: 1,
        rx: VecDeque::new(),
        arriving: VecDeque::new(),
        thr_empty_pending: false,
        out: Vec::new(),
    };
    for op in ops.iter().take(256) {
        let before = pulses.load(Ordering::SeqCst);
        let mut irq = false;
        match op {
            Op::Write { offset, data } => {
                let offset = offset % 8;
                let data = &data[..data.len().min(80)];
                assert_eq!(uart.write(u64::from(offset), data), DeviceRequest::None);
                irq = model.write(offset, data);
            }
            Op::WriteByte { offset, value } => {
                let offset = offset % 8;
                uart.write(u64::from(offset), &[*value]);
                irq = model.write(offset, &[*value]);
            }
            Op::Read { offset, len } => {
                let offset = offset % 8;
                let mut got = vec![0x5au8; usize::from(len % 9)];
                uart.read(u64::from(offset), &mut got);
                irq = model.pull();
                let expected: Vec<u8> = if offset == 0 && !model.dlab() {
                    got.iter().map(|_| model.read_register(0)).collect()
                } else if got.is_empty() {
                    // Reading no bytes still reads the register once (IIR acknowledges).
                    model.read_register(offset);
                    Vec::new()
                } else {
                    vec![model.read_register(offset); got.len()]
                };
                assert_eq!(got, expected, "read of {} bytes at offset {offset}, {model:?}", got.len());
            }
            Op::Enqueue(bytes) => {
                let room = FIFO - model.rx.len();
                let taken = uart.enqueue_input(bytes);
                assert_eq!(taken, room.min(bytes.len()), "enqueue_input");
                model.rx.extend(&bytes[..taken]);
                irq = taken > 0 && model.ier & 1 != 0;
            }
            Op::Arrive(bytes) => {
                for &b in bytes {
                    let _ = tx.send(b);
                }
                model.arriving.extend(bytes);
            }
        }
        let pulsed = pulses.load(Ordering::SeqCst) - before;
        assert_eq!(pulsed, usize::from(irq), "{op:?}: IRQ pulses, {model:?}");
        assert!(model.ier != 0 || pulsed == 0, "pulsed with every interrupt disabled");
        assert_eq!(uart.output(), &model.out, "transmitted bytes");
        // LSR and IIR after each step (reading IIR could acknowledge THR
        // empty, so the model reads it too).
        let before = pulses.load(Ordering::SeqCst);
        let mut lsr = [0u8];
        uart.read(5, &mut lsr);
        let irq = model.pull();
        assert_eq!(pulses.load(Ordering::SeqCst) - before, usize::from(irq), "IRQ pulses reading LSR");
        assert_eq!(lsr[0], model.read_register(5), "LSR, {model:?}");
        assert_eq!(lsr[0] & 0x60, 0x60, "THRE and TEMT");
        assert_eq!(lsr[0] & 1 != 0, !model.rx.is_empty(), "LSR.DR and the FIFO");
    }
});
