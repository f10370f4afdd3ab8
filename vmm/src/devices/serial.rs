//! A 16550A UART: enough of its registers that a driver's probe succeeds
//! (scratch register, loopback test, divisor latch), transmit to any
//! `impl Write`, a receive FIFO, and interrupts on an optional IRQ line.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver};

use super::{DeviceError, DeviceState};
use crate::bus::{BusDevice, DeviceRequest};

// Register offsets from the base port.
pub const DATA: u64 = 0; // RBR (read) / THR (write); DLL when LCR.DLAB
pub const IER: u64 = 1; // interrupt enable; DLM when LCR.DLAB
pub const IIR: u64 = 2; // interrupt identification (read) / FCR (write)
pub const LCR: u64 = 3; // line control
pub const MCR: u64 = 4; // modem control
pub const LSR: u64 = 5; // line status
pub const MSR: u64 = 6; // modem status
pub const SCR: u64 = 7; // scratch

const LCR_DLAB: u8 = 0x80;
const IER_RX_DATA: u8 = 0x01;
const IER_THR_EMPTY: u8 = 0x02;
const IIR_NONE: u8 = 0x01;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RX_DATA: u8 = 0x04;
const IIR_FIFO_ENABLED: u8 = 0xc0;
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_IDLE: u8 = 0x40;
const MCR_LOOP: u8 = 0x10;
const MSR_DEFAULT: u8 = 0xb0; // DCD, DSR, CTS asserted
/// Divisor for 115200 baud from the 1.8432 MHz clock.
const DEFAULT_DIVISOR: u16 = 1;
/// Bytes the receive FIFO holds.
pub const RX_FIFO_CAPACITY: usize = 64;

/// The UART's state: its registers, the receive FIFO, and the input that
/// has arrived from outside but not yet entered the FIFO.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerialState {
    pub ier: u8,
    pub lcr: u8,
    pub mcr: u8,
    pub fcr: u8,
    pub scr: u8,
    pub divisor: u16,
    pub thr_empty_pending: bool,
    /// The receive FIFO, oldest byte first (at most [`RX_FIFO_CAPACITY`]).
    pub rx: Vec<u8>,
    /// Received input waiting for room in the FIFO, oldest first.
    pub pending: Vec<u8>,
}

/// An interrupt line the device can raise (edge: one pulse per event).
pub trait IrqLine: Send {
    fn trigger(&self);
}

/// The 16550A.
pub struct Serial<W: Write + Send> {
    out: W,
    irq: Option<Box<dyn IrqLine>>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    fcr: u8,
    scr: u8,
    divisor: u16,
    thr_empty_pending: bool,
    rx: VecDeque<u8>,
    /// Input taken from the channel that has not entered the FIFO yet
    /// (what a snapshot took in), delivered before the channel's.
    pending: VecDeque<u8>,
    /// Bytes arriving from outside (the VMM's stdin), taken into the
    /// receive FIFO whenever the guest reads a register.
    input: Option<Receiver<u8>>,
}

/// Reads `source` on its own thread and hands the bytes over a channel,
/// so a UART can take them without blocking the vCPU. The thread ends at
/// end of input or when the receiver is gone.
///
/// # Errors
///
/// The OS error if the reader thread cannot be started.
pub fn spawn_input(mut source: Box<dyn Read + Send>) -> std::io::Result<Receiver<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name("serial-input".into()).spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if buf[..n].iter().any(|&b| tx.send(b).is_err()) {
                        return;
                    }
                }
            }
        }
    })?;
    Ok(rx)
}

impl<W: Write + Send> std::fmt::Debug for Serial<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serial").field("ier", &self.ier).field("lcr", &self.lcr).finish_non_exhaustive()
    }
}

impl<W: Write + Send> Serial<W> {
    /// A UART whose transmitted bytes go to `out`.
    pub fn new(out: W) -> Self {
        Serial {
            out,
            irq: None,
            ier: 0,
            lcr: 0x03, // 8N1
            mcr: 0x08, // OUT2
            fcr: 0,
            scr: 0,
            divisor: DEFAULT_DIVISOR,
            thr_empty_pending: false,
            rx: VecDeque::new(),
            pending: VecDeque::new(),
            input: None,
        }
    }

    /// Connects a source of received bytes (see [`spawn_input`]).
    pub fn with_input(mut self, input: Receiver<u8>) -> Self {
        self.input = Some(input);
        self
    }

    /// Moves bytes that arrived from the input into the receive FIFO.
    fn pull_input(&mut self) {
        let mut got = false;
        while self.rx.len() < RX_FIFO_CAPACITY {
            let next = match self.pending.pop_front() {
                Some(b) => Some(b),
                None => self.input.as_ref().and_then(|input| input.try_recv().ok()),
            };
            match next {
                Some(b) => {
                    self.rx.push_back(b);
                    got = true;
                }
                None => break,
            }
        }
        if got && self.ier & IER_RX_DATA != 0 {
            self.raise();
        }
    }

    /// Connects the UART's interrupt output.
    pub fn with_irq(mut self, irq: Box<dyn IrqLine>) -> Self {
        self.irq = Some(irq);
        self
    }

    /// The sink transmitted bytes went to.
    pub fn output(&self) -> &W {
        &self.out
    }

    /// Queues bytes for the guest to receive; returns how many fit.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = RX_FIFO_CAPACITY.saturating_sub(self.rx.len()).min(bytes.len());
        self.rx.extend(&bytes[..room]);
        if room > 0 && self.ier & IER_RX_DATA != 0 {
            self.raise();
        }
        room
    }

    fn raise(&self) {
        if let Some(irq) = &self.irq {
            irq.trigger();
        }
    }

    fn iir(&mut self) -> u8 {
        let fifo = if self.fcr & FCR_ENABLE != 0 { IIR_FIFO_ENABLED } else { 0 };
        let id = if self.ier & IER_RX_DATA != 0 && !self.rx.is_empty() {
            IIR_RX_DATA
        } else if self.ier & IER_THR_EMPTY != 0 && self.thr_empty_pending {
            // Reading IIR acknowledges the THR-empty interrupt.
            self.thr_empty_pending = false;
            IIR_THR_EMPTY
        } else {
            IIR_NONE
        };
        fifo | id
    }

    fn msr(&self) -> u8 {
        if self.mcr & MCR_LOOP == 0 {
            return MSR_DEFAULT;
        }
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        let m = self.mcr;
        ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
    }

    fn transmit(&mut self, bytes: &[u8]) {
        if self.mcr & MCR_LOOP != 0 {
            self.rx.extend(bytes.iter().take(RX_FIFO_CAPACITY - self.rx.len().min(RX_FIFO_CAPACITY)));
        } else {
            // A console that went away must not stop the guest: drop the bytes.
            let _ = self.out.write_all(bytes).and_then(|()| self.out.flush());
        }
        if self.ier & IER_THR_EMPTY != 0 {
            self.thr_empty_pending = true;
            self.raise();
        }
    }
}

impl<W: Write + Send> Serial<W> {
    fn state(&mut self) -> SerialState {
        // Input that has arrived is part of the state: a restored guest must
        // still receive it.
        if let Some(input) = &self.input {
            self.pending.extend(input.try_iter());
        }
        SerialState {
            ier: self.ier,
            lcr: self.lcr,
            mcr: self.mcr,
            fcr: self.fcr,
            scr: self.scr,
            divisor: self.divisor,
            thr_empty_pending: self.thr_empty_pending,
            rx: self.rx.iter().copied().collect(),
            pending: self.pending.iter().copied().collect(),
        }
    }

    fn set_state(&mut self, s: &SerialState) {
        (self.ier, self.lcr, self.mcr, self.fcr, self.scr) = (s.ier, s.lcr, s.mcr, s.fcr, s.scr);
        self.divisor = s.divisor;
        self.thr_empty_pending = s.thr_empty_pending;
        self.rx = s.rx.iter().copied().take(RX_FIFO_CAPACITY).collect();
        self.pending = s.pending.iter().copied().collect();
    }
}

impl<W: Write + Send> BusDevice for Serial<W> {
    fn save(&mut self) -> DeviceState {
        DeviceState::Serial(self.state())
    }

    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError> {
        match state {
            DeviceState::Serial(s) => {
                self.set_state(s);
                Ok(())
            }
            other => Err(DeviceError::WrongKind { expected: "16550A UART", found: other.kind() }),
        }
    }

    fn read(&mut self, offset: u64, data: &mut [u8]) {
        self.pull_input();
        let dlab = self.lcr & LCR_DLAB != 0;
        if offset == DATA && !dlab {
            // String input (`rep insb`) drains the FIFO one byte per element.
            for b in data.iter_mut() {
                *b = self.rx.pop_front().unwrap_or(0);
            }
            return;
        }
        let value = match offset {
            DATA => self.divisor as u8,
            IER if dlab => (self.divisor >> 8) as u8,
            IER => self.ier,
            IIR => self.iir(),
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => LSR_THR_EMPTY | LSR_IDLE | if self.rx.is_empty() { 0 } else { LSR_DATA_READY },
            MSR => self.msr(),
            SCR => self.scr,
            _ => 0xff,
        };
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest {
        let dlab = self.lcr & LCR_DLAB != 0;
        let Some(&value) = data.first() else { return DeviceRequest::None };
        match offset {
            DATA if dlab => self.divisor = (self.divisor & 0xff00) | u16::from(value),
            DATA => self.transmit(data),
            IER if dlab => self.divisor = (self.divisor & 0x00ff) | (u16::from(value) << 8),
            IER => {
                let was = self.ier;
                self.ier = value & 0x0f;
                // Enabling the THR-empty interrupt fires it at once: THR is empty.
                if self.ier & IER_THR_EMPTY != 0 && was & IER_THR_EMPTY == 0 {
                    self.thr_empty_pending = true;
                    self.raise();
                }
            }
            IIR => {
                self.fcr = value;
                if value & FCR_CLEAR_RX != 0 {
                    self.rx.clear();
                }
            }
            LCR => self.lcr = value,
            MCR => self.mcr = value & 0x1f,
            SCR => self.scr = value,
            _ => {} // LSR and MSR are read-only
        }
        DeviceRequest::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counter(Arc<AtomicUsize>);
    impl IrqLine for Counter {
        fn trigger(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn read(s: &mut Serial<Vec<u8>>, offset: u64) -> u8 {
        let mut b = [0u8];
        s.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn transmits_single_bytes_and_strings_to_the_sink() {
        let mut s = Serial::new(Vec::new());
        s.write(DATA, b"H");
        s.write(DATA, b"ello\n"); // rep outsb: several bytes in one access
        assert_eq!(s.output(), b"Hello\n");
        assert_eq!(read(&mut s, LSR) & (LSR_THR_EMPTY | LSR_IDLE), 0x60);
    }

    #[test]
    fn scratch_and_divisor_latch() {
        let mut s = Serial::new(Vec::new());
        s.write(SCR, &[0x5a]);
        assert_eq!(read(&mut s, SCR), 0x5a);
        s.write(LCR, &[0x83]); // DLAB on
        s.write(DATA, &[0x0c]); // 9600 baud
        s.write(IER, &[0x00]);
        assert_eq!((read(&mut s, DATA), read(&mut s, IER)), (0x0c, 0));
        s.write(LCR, &[0x03]);
        assert_eq!(s.divisor, 12);
        assert!(s.output().is_empty(), "divisor writes are not data");
    }

    #[test]
    fn loopback_probe_as_linux_does_it() {
        let mut s = Serial::new(Vec::new());
        s.write(MCR, &[0x10 | 0x0a]); // loop, RTS, OUT2
        assert_eq!(read(&mut s, MSR) & 0xf0, 0x90);
        s.write(DATA, b"x");
        assert!(s.output().is_empty());
        assert_eq!(read(&mut s, LSR) & LSR_DATA_READY, 1);
        assert_eq!(read(&mut s, DATA), b'x');
        assert_eq!(read(&mut s, LSR) & LSR_DATA_READY, 0);
    }

    #[test]
    fn input_from_a_reader_reaches_the_receive_fifo() {
        let mut s = Serial::new(Vec::new()).with_input(spawn_input(Box::new(&b"ok"[..])).unwrap());
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 2 && std::time::Instant::now() < deadline {
            if read(&mut s, LSR) & LSR_DATA_READY != 0 {
                got.push(read(&mut s, DATA));
            }
        }
        assert_eq!(got, b"ok");
        assert_eq!(read(&mut s, LSR) & LSR_DATA_READY, 0);
    }

    #[test]
    fn the_state_carries_registers_fifo_and_input_not_yet_received() {
        let (tx, rx) = mpsc::channel();
        let mut s = Serial::new(Vec::new()).with_input(rx);
        s.write(LCR, &[0x83]);
        s.write(DATA, &[0x0c]);
        s.write(LCR, &[0x03]);
        s.write(SCR, &[0x77]);
        s.write(IER, &[IER_RX_DATA]);
        for b in b"abc" {
            tx.send(*b).unwrap();
        }
        assert_eq!(read(&mut s, DATA), b'a'); // takes "abc" into the FIFO, reads 'a'
        tx.send(b'd').unwrap(); // arrived, not yet in the FIFO
        let state = s.save();
        let DeviceState::Serial(inner) = &state else { panic!("{state:?}") };
        assert_eq!((inner.rx.as_slice(), inner.pending.as_slice()), (&b"bc"[..], &b"d"[..]));
        assert_eq!((inner.divisor, inner.scr, inner.ier), (12, 0x77, IER_RX_DATA));

        let mut t = Serial::new(Vec::new());
        t.restore(&state).unwrap();
        let got: Vec<u8> = (0..3).map(|_| read(&mut t, DATA)).collect();
        assert_eq!(got, b"bcd");
        assert_eq!(read(&mut t, LSR) & LSR_DATA_READY, 0);
        assert_eq!((read(&mut t, SCR), t.divisor), (0x77, 12));
        assert!(t.restore(&DeviceState::DebugExit).is_err());
    }

    #[test]
    fn interrupts_for_thr_empty_and_received_data() {
        let count = Arc::new(AtomicUsize::new(0));
        let mut s = Serial::new(Vec::new()).with_irq(Box::new(Counter(count.clone())));
        assert_eq!(read(&mut s, IIR), IIR_NONE);
        s.write(IER, &[IER_THR_EMPTY]);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert_eq!(read(&mut s, IIR), IIR_THR_EMPTY);
        assert_eq!(read(&mut s, IIR), IIR_NONE, "reading IIR acknowledges");
        s.write(DATA, b"a");
        assert_eq!(count.load(Ordering::SeqCst), 2);
        s.write(IER, &[IER_RX_DATA]);
        assert_eq!(s.enqueue_input(b"ok"), 2);
        assert_eq!(count.load(Ordering::SeqCst), 3);
        assert_eq!(read(&mut s, IIR), IIR_RX_DATA);
        s.write(IIR, &[FCR_ENABLE | FCR_CLEAR_RX]);
        assert_eq!(read(&mut s, IIR), IIR_FIFO_ENABLED | IIR_NONE);
    }
}
