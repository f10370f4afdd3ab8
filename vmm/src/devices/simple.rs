//! The small devices: debug-exit port, POST code port, scratch register file.

use super::{DeviceError, DeviceState};
use crate::bus::{BusDevice, DeviceRequest};

/// The debug-exit port: a write ends the run with its first byte as status.
#[derive(Debug, Default)]
pub struct DebugExit;

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) -> DeviceRequest {
        data.first().map_or(DeviceRequest::None, |&status| DeviceRequest::Exit(status))
    }
    fn save(&mut self) -> DeviceState {
        DeviceState::DebugExit
    }
    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError> {
        match state {
            DeviceState::DebugExit => Ok(()),
            other => Err(DeviceError::WrongKind { expected: "debug-exit port", found: other.kind() }),
        }
    }
}

/// POST diagnostic port 0x80: remembers the last code written.
#[derive(Debug, Default)]
pub struct PostCode {
    last: u8,
}

impl BusDevice for PostCode {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.last);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) -> DeviceRequest {
        if let Some(&b) = data.last() {
            self.last = b;
        }
        DeviceRequest::None
    }
    fn save(&mut self) -> DeviceState {
        DeviceState::PostCode { last: self.last }
    }
    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError> {
        match *state {
            DeviceState::PostCode { last } => {
                self.last = last;
                Ok(())
            }
            ref other => Err(DeviceError::WrongKind { expected: "POST code port", found: other.kind() }),
        }
    }
}

/// Identification value of the scratch device ("virt" in ASCII).
pub const SCRATCH_ID: u32 = 0x7669_7274;
/// Offset of the read-only ID register.
pub const SCRATCH_ID_OFFSET: u64 = 0;
/// Offset of the 64-bit read/write scratch register.
pub const SCRATCH_REG_OFFSET: u64 = 8;

/// A register file of two 64-bit registers: a read-only ID at offset 0 and
/// a scratch register at offset 8. Accesses of any width at any offset
/// read or write the matching bytes, little-endian; others read as zero.
#[derive(Debug, Default)]
pub struct Scratch {
    scratch: u64,
}

impl Scratch {
    fn bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&u64::from(SCRATCH_ID).to_le_bytes());
        b[8..].copy_from_slice(&self.scratch.to_le_bytes());
        b
    }
}

impl BusDevice for Scratch {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let regs = self.bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset).ok().and_then(|o| regs.get(o + i)).copied().unwrap_or(0);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest {
        let mut regs = self.bytes();
        for (i, &b) in data.iter().enumerate() {
            // The ID and anything past the registers are read-only.
            if let Ok(at @ 8..=15) = usize::try_from(offset).map(|o| o + i) {
                regs[at] = b;
            }
        }
        self.scratch = u64::from_le_bytes(regs[8..].try_into().unwrap_or_default());
        DeviceRequest::None
    }
    fn save(&mut self) -> DeviceState {
        DeviceState::Scratch { value: self.scratch }
    }
    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError> {
        match *state {
            DeviceState::Scratch { value } => {
                self.scratch = value;
                Ok(())
            }
            ref other => Err(DeviceError::WrongKind { expected: "scratch device", found: other.kind() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_exit_stops_with_the_status_byte() {
        assert_eq!(DebugExit.write(0, &[7, 0, 0, 0]), DeviceRequest::Exit(7));
        assert_eq!(DebugExit.write(0, &[]), DeviceRequest::None);
    }

    #[test]
    fn post_code_remembers_the_last_byte() {
        let mut p = PostCode::default();
        p.write(0, &[0x12]);
        let mut b = [0];
        p.read(0, &mut b);
        assert_eq!(b, [0x12]);
    }

    #[test]
    fn scratch_reads_back_writes_of_every_width() {
        let mut s = Scratch::default();
        let mut id = [0u8; 4];
        s.read(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), SCRATCH_ID);
        s.write(8, &0xbeefu16.to_le_bytes());
        let mut w = [0u8; 2];
        s.read(8, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0xbeef);
        s.write(8, &0x1122_3344_5566_7788u64.to_le_bytes());
        let mut q = [0u8; 8];
        s.read(8, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0x1122_3344_5566_7788);
        s.write(0, &[0; 4]); // the ID is read-only
        s.read(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), SCRATCH_ID);
        let mut past = [9u8; 4];
        s.read(0x20, &mut past);
        assert_eq!(past, [0; 4]);
    }

    #[test]
    fn small_devices_hand_out_their_state_and_take_it_back() {
        let mut s = Scratch::default();
        s.write(8, &0xfeed_u64.to_le_bytes());
        let state = s.save();
        let mut t = Scratch::default();
        t.restore(&state).unwrap();
        assert_eq!(t.save(), DeviceState::Scratch { value: 0xfeed });
        let mut p = PostCode::default();
        p.write(0, &[0x42]);
        let mut q = PostCode::default();
        q.restore(&p.save()).unwrap();
        assert_eq!(q.last, 0x42);
        let err = q.restore(&state).unwrap_err();
        assert_eq!(err.to_string(), "the state of a scratch device cannot be given to a POST code port");
        assert!(DebugExit.restore(&DeviceState::PostCode { last: 1 }).is_err());
        assert_eq!(DebugExit.save(), DeviceState::DebugExit);
    }
}
