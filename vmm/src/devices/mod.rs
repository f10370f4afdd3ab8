//! Device models. None of them knows about KVM: each sees `(offset, data)`.
//! Each can also hand out its state and take it back ([`DeviceState`]), so
//! a snapshot or a migration carries the devices with the guest.

pub mod ib700;
pub mod pc;
pub mod serial;
pub mod simple;

pub use ib700::{Ib700, WatchdogTimer};
pub use pc::{IrqLevels, TestDevIrq, I8042};
pub use serial::{spawn_input, IrqLine, Serial, SerialState};
pub use simple::{DebugExit, PostCode, Scratch};

/// What a device model must remember to carry on elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// The 16550A: registers, receive FIFO, input not yet received.
    Serial(SerialState),
    /// The debug-exit port holds nothing.
    DebugExit,
    /// The POST port: the last code written.
    PostCode { last: u8 },
    /// The scratch device: its read/write register.
    Scratch { value: u64 },
    /// The i8042 holds nothing (no keyboard).
    I8042,
    /// `pc-testdev`'s IRQ ports hold nothing (the irqchip holds the lines).
    TestDevIrq,
    /// The IB700 watchdog: nanoseconds left if it runs, the timeout last set.
    Ib700 { remaining_ns: Option<u64>, timeout_s: u32 },
}

impl DeviceState {
    /// The kind of device this state belongs to, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceState::Serial(_) => "16550A UART",
            DeviceState::DebugExit => "debug-exit port",
            DeviceState::PostCode { .. } => "POST code port",
            DeviceState::Scratch { .. } => "scratch device",
            DeviceState::I8042 => "i8042 keyboard controller",
            DeviceState::TestDevIrq => "pc-testdev IRQ ports",
            DeviceState::Ib700 { .. } => "IB700 watchdog",
        }
    }
}

/// Errors of giving a device its state back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("the state of a {found} cannot be given to a {expected}")]
    WrongKind { expected: &'static str, found: &'static str },
}
