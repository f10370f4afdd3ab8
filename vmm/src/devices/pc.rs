//! Two small devices of the PC that kernels written for QEMU expect: the
//! i8042 keyboard controller's reset line (how Linux's `reboot=k` and many
//! tutorial kernels reset the machine), and the IRQ lines of QEMU's
//! `pc-testdev` (ports 0x2000-0x2017, which kvm-unit-tests use to raise
//! an interrupt on demand).

use super::{DeviceError, DeviceState};
use crate::bus::{BusDevice, DeviceRequest};

/// Offset of the command/status port (0x64) from the data port (0x60).
pub const I8042_COMMAND: u64 = 4;
/// The command that pulses the CPU's reset line.
pub const I8042_CMD_RESET: u8 = 0xfe;
/// Status register: nothing to read, ready for a command (no keyboard).
const I8042_STATUS_IDLE: u8 = 0x00;

/// The i8042 at 0x60-0x64: no keyboard behind it, a reset line in front.
#[derive(Debug, Default)]
pub struct I8042;

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(I8042_STATUS_IDLE);
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest {
        match (offset, data.first()) {
            (I8042_COMMAND, Some(&I8042_CMD_RESET)) => DeviceRequest::Reset,
            _ => DeviceRequest::None,
        }
    }
    fn save(&mut self) -> DeviceState {
        DeviceState::I8042
    }
    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError> {
        match state {
            DeviceState::I8042 => Ok(()),
            other => Err(DeviceError::WrongKind { expected: "i8042 keyboard controller", found: other.kind() }),
        }
    }
}

/// Interrupt lines that can be held high or low (the in-kernel irqchip's GSIs).
pub trait IrqLevels: Send {
    /// Sets line `gsi` to `level`.
    fn set(&self, gsi: u32, level: bool);
}

/// Lines of `pc-testdev`: one port per GSI.
pub const TESTDEV_IRQ_LINES: u64 = 24;

/// `pc-testdev`'s IRQ ports: a write of a non-zero value to 0x2000 + n
/// raises GSI n, of zero lowers it.
pub struct TestDevIrq {
    lines: Box<dyn IrqLevels>,
}

impl std::fmt::Debug for TestDevIrq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDevIrq").finish_non_exhaustive()
    }
}

impl TestDevIrq {
    /// The device, driving `lines`.
    pub fn new(lines: Box<dyn IrqLevels>) -> Self {
        TestDevIrq { lines }
    }
}

impl BusDevice for TestDevIrq {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest {
        if let Ok(gsi) = u32::try_from(offset) {
            self.lines.set(gsi, data.iter().any(|&b| b != 0));
        }
        DeviceRequest::None
    }
    fn save(&mut self) -> DeviceState {
        DeviceState::TestDevIrq
    }
    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError> {
        match state {
            DeviceState::TestDevIrq => Ok(()),
            other => Err(DeviceError::WrongKind { expected: "pc-testdev IRQ ports", found: other.kind() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_reset_command_on_port_0x64_resets_and_nothing_else_does() {
        let mut k = I8042;
        assert_eq!(k.write(I8042_COMMAND, &[I8042_CMD_RESET]), DeviceRequest::Reset);
        assert_eq!(k.write(0, &[I8042_CMD_RESET]), DeviceRequest::None, "0xfe on the data port is a key code");
        assert_eq!(k.write(I8042_COMMAND, &[0xaa]), DeviceRequest::None);
        let mut status = [0xff];
        k.read(I8042_COMMAND, &mut status);
        assert_eq!(status, [0], "no output waiting, input buffer empty");
        assert_eq!(k.save(), DeviceState::I8042);
        assert!(k.restore(&DeviceState::DebugExit).is_err());
    }

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(u32, bool)>>>);
    impl IrqLevels for Recorder {
        fn set(&self, gsi: u32, level: bool) {
            self.0.lock().unwrap().push((gsi, level));
        }
    }

    #[test]
    fn testdev_ports_raise_and_lower_their_gsi() {
        let r = Recorder::default();
        let mut d = TestDevIrq::new(Box::new(r.clone()));
        d.write(11, &1u32.to_le_bytes());
        d.write(11, &0u32.to_le_bytes());
        d.write(4, &[0x80]);
        assert_eq!(*r.0.lock().unwrap(), [(11, true), (11, false), (4, true)]);
    }
}
