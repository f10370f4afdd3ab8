//! An address bus: devices registered by address range, looked up with a
//! `BTreeMap`, and handed only `(offset, data)`. One type serves both the
//! port-I/O bus and the MMIO bus.

use std::collections::{BTreeMap, BTreeSet};

use crate::devices::{DeviceError, DeviceState};

/// What a device asks of the VMM after an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    /// Nothing: resume the guest.
    None,
    /// End the run with this guest status (the debug-exit port).
    Exit(u8),
    /// The guest pulsed the reset line (the i8042's 0xfe): end the run.
    Reset,
}

/// A device model: knows nothing of KVM, only offsets within its range.
/// `data` may be longer than one register access: `rep outsb` hands a
/// device a whole string in one exit.
pub trait BusDevice: Send {
    /// Fills `data` with what a read of `data.len()` bytes at `offset` returns.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Takes a write of `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest;
    /// The device's state, for a snapshot or a migration (mutable: the UART
    /// takes in the input that has arrived, so that it is part of the state).
    fn save(&mut self) -> DeviceState;
    /// Takes back a state [`BusDevice::save`] gave.
    ///
    /// # Errors
    ///
    /// [`DeviceError::WrongKind`] for the state of another kind of device.
    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError>;
}

/// Where a device sits: its bus, range and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub bus: BusKind,
    pub base: u64,
    pub len: u64,
    pub name: String,
}

/// The two buses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    Pio,
    Mmio,
}

impl BusKind {
    /// Name for messages.
    pub fn name(self) -> &'static str {
        match self {
            BusKind::Pio => "port",
            BusKind::Mmio => "MMIO",
        }
    }
}

/// Errors of device registration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    #[error("device {name} at {base:#x}+{len:#x} overlaps {other}")]
    Overlap { name: &'static str, base: u64, len: u64, other: &'static str },
    #[error("device {name} has an empty or wrapping range {base:#x}+{len:#x}")]
    BadRange { name: &'static str, base: u64, len: u64 },
}

struct Slot {
    len: u64,
    name: &'static str,
    device: Box<dyn BusDevice>,
}

/// Result of an access: which device took it, or none (unclaimed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Name of the device that took the access; `None` if unclaimed.
    pub device: Option<&'static str>,
    /// True the first time an unclaimed address is seen.
    pub first_unclaimed: bool,
    /// What the device asks for.
    pub request: DeviceRequest,
}

/// Devices by address range.
#[derive(Default)]
pub struct Bus {
    slots: BTreeMap<u64, Slot>,
    unclaimed: BTreeSet<u64>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (base, slot) in &self.slots {
            m.entry(&format_args!("{base:#x}+{:#x}", slot.len), &slot.name);
        }
        m.finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `device` for `[base, base + len)`; overlaps are rejected.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        name: &'static str,
        device: Box<dyn BusDevice>,
    ) -> Result<(), BusError> {
        let end = base.checked_add(len).filter(|_| len > 0).ok_or(BusError::BadRange { name, base, len })?;
        // The nearest range starting below `end` is the only one that can overlap.
        if let Some((&b, other)) = self.slots.range(..end).next_back() {
            if b + other.len > base {
                return Err(BusError::Overlap { name, base, len, other: other.name });
            }
        }
        self.slots.insert(base, Slot { len, name, device });
        Ok(())
    }

    fn resolve(&mut self, addr: u64) -> Option<(u64, &mut Slot)> {
        let (&base, slot) = self.slots.range_mut(..=addr).next_back()?;
        (addr - base < slot.len).then_some((addr - base, slot))
    }

    /// Name of the device owning `addr`, if any.
    pub fn owner(&self, addr: u64) -> Option<&'static str> {
        let (&base, slot) = self.slots.range(..=addr).next_back()?;
        (addr - base < slot.len).then_some(slot.name)
    }

    /// Reads at `addr`; unclaimed reads return all ones.
    pub fn read(&mut self, addr: u64, data: &mut [u8]) -> Dispatch {
        match self.resolve(addr) {
            Some((offset, slot)) => {
                slot.device.read(offset, data);
                Dispatch { device: Some(slot.name), first_unclaimed: false, request: DeviceRequest::None }
            }
            None => {
                data.fill(0xff);
                self.unclaimed_access(addr)
            }
        }
    }

    /// Writes at `addr`; unclaimed writes are dropped.
    pub fn write(&mut self, addr: u64, data: &[u8]) -> Dispatch {
        match self.resolve(addr) {
            Some((offset, slot)) => {
                let request = slot.device.write(offset, data);
                Dispatch { device: Some(slot.name), first_unclaimed: false, request }
            }
            None => self.unclaimed_access(addr),
        }
    }

    fn unclaimed_access(&mut self, addr: u64) -> Dispatch {
        let first_unclaimed = self.unclaimed.insert(addr);
        Dispatch { device: None, first_unclaimed, request: DeviceRequest::None }
    }

    /// Every device with its range and name, by address.
    pub fn devices_mut(&mut self) -> impl Iterator<Item = (u64, u64, &'static str, &mut dyn BusDevice)> + '_ {
        self.slots.iter_mut().map(|(&base, slot)| (base, slot.len, slot.name, &mut *slot.device as &mut dyn BusDevice))
    }

    /// Distinct unclaimed addresses seen so far.
    pub fn unclaimed(&self) -> &BTreeSet<u64> {
        &self.unclaimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = std::sync::Arc<std::sync::Mutex<Vec<(u64, Vec<u8>)>>>;

    /// Records accesses; reads return the offset.
    #[derive(Default)]
    struct Probe {
        writes: Log,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest {
            self.writes.lock().unwrap().push((offset, data.to_vec()));
            DeviceRequest::None
        }
        fn save(&mut self) -> DeviceState {
            DeviceState::DebugExit
        }
        fn restore(&mut self, _state: &DeviceState) -> Result<(), DeviceError> {
            Ok(())
        }
    }

    #[test]
    fn overlaps_are_rejected() {
        let mut bus = Bus::new();
        bus.insert(0x3f8, 8, "uart", Box::new(Probe::default())).unwrap();
        let err = bus.insert(0x3f0, 9, "other", Box::new(Probe::default())).unwrap_err();
        assert!(matches!(err, BusError::Overlap { other: "uart", .. }));
        assert!(bus.insert(0x3ff, 1, "x", Box::new(Probe::default())).is_err());
        assert!(bus.insert(0x3f0, 8, "below", Box::new(Probe::default())).is_ok());
        assert!(bus.insert(0x400, 1, "above", Box::new(Probe::default())).is_ok());
        assert!(matches!(bus.insert(5, 0, "empty", Box::new(Probe::default())), Err(BusError::BadRange { .. })));
        assert!(matches!(bus.insert(u64::MAX, 2, "wrap", Box::new(Probe::default())), Err(BusError::BadRange { .. })));
    }

    #[test]
    fn lookup_by_range_hands_out_offsets() {
        let mut bus = Bus::new();
        let probe = Probe::default();
        let writes = probe.writes.clone();
        bus.insert(0x3f8, 8, "uart", Box::new(probe)).unwrap();
        let mut data = [0u8; 1];
        assert_eq!(bus.read(0x3fd, &mut data).device, Some("uart"));
        assert_eq!(data, [5]);
        assert_eq!(bus.write(0x3f8, b"hi").device, Some("uart"));
        assert_eq!(writes.lock().unwrap()[0], (0, b"hi".to_vec()));
        assert_eq!(bus.owner(0x3ff), Some("uart"));
        assert_eq!(bus.owner(0x400), None);
        assert_eq!(bus.owner(0x3f7), None);
    }

    #[test]
    fn unclaimed_reads_are_all_ones_and_reported_once() {
        let mut bus = Bus::new();
        let mut data = [0u8; 4];
        let first = bus.read(0x2f8, &mut data);
        assert_eq!(data, [0xff; 4]);
        assert_eq!((first.device, first.first_unclaimed), (None, true));
        assert!(!bus.write(0x2f8, &[1]).first_unclaimed);
        assert!(bus.write(0x2f9, &[1]).first_unclaimed);
        assert_eq!(bus.unclaimed().len(), 2);
    }
}
