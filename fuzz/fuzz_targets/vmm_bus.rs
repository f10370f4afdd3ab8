//! The address bus (`vmm::bus::Bus`) against a reference model: a plain
//! list of ranges searched linearly.
//!
//! Checks: an insert succeeds exactly when the range is non-empty, does not
//! wrap past 2^64 and overlaps no registered range, and a rejected overlap
//! names a device it really overlaps; every read and write reaches the one
//! device whose range holds the address, with the offset from that range's
//! base and the data unchanged, and its request comes back; an address no
//! device holds reads as all ones, reaches no device, and is reported as
//! unclaimed the first time only; `owner` agrees with the model.
#![no_main]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use vmm::bus::{Bus, BusDevice, BusError, DeviceRequest};
use vmm::devices::{DeviceError, DeviceState};

const NAMES: [&str; 16] =
    ["d0", "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15"];

/// An address, mostly in a small window so ranges meet and overlap.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Addr {
    Low(u8),
    /// Near a registered range: its base plus this.
    Near(u8, i8),
    /// Near the top of the address space, where sums wrap.
    Top(u8),
    Raw(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Insert { base: Addr, len: Addr },
    Read { addr: Addr, len: u8 },
    Write { addr: Addr, data: Vec<u8> },
    Owner { addr: Addr },
}

/// What a probe saw: (device, write?, offset, data).
type Log = Arc<Mutex<Vec<(usize, bool, u64, Vec<u8>)>>>;

struct Probe {
    id: usize,
    log: Log,
}

impl BusDevice for Probe {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = (self.id as u8) ^ (offset as u8).wrapping_add(i as u8);
        }
        if let Ok(mut log) = self.log.lock() {
            log.push((self.id, false, offset, data.to_vec()));
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest {
        if let Ok(mut log) = self.log.lock() {
            log.push((self.id, true, offset, data.to_vec()));
        }
        // A recognisable request, so routing of the answer is checked too.
        match data.first() {
            Some(&b) if b == self.id as u8 => DeviceRequest::Exit(b),
            _ => DeviceRequest::None,
        }
    }
    // (the bus never saves or restores its devices itself)
    fn save(&mut self) -> DeviceState {
        DeviceState::Scratch { value: self.id as u64 }
    }
    fn restore(&mut self, _state: &DeviceState) -> Result<(), DeviceError> {
        Ok(())
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let log: Log = Arc::default();
    let mut bus = Bus::new();
    // The model: (base, len) of each device, by id.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut unclaimed = HashSet::new();
    let resolve = |a: Addr, ranges: &[(u64, u64)]| match a {
        Addr::Low(v) => u64::from(v),
        Addr::Near(i, d) => {
            ranges.get(usize::from(i) % ranges.len().max(1)).map_or(0, |&(b, _)| b).wrapping_add_signed(i64::from(d))
        }
        Addr::Top(v) => u64::MAX - u64::from(v),
        Addr::Raw(v) => v,
    };
    let owner = |addr: u64, ranges: &[(u64, u64)]| ranges.iter().position(|&(b, l)| addr >= b && addr - b < l);
    for op in ops.iter().take(512) {
        log.lock().map(|mut l| l.clear()).unwrap_or_default();
        match *op {
            Op::Insert { base, len } => {
                if ranges.len() == NAMES.len() {
                    continue;
                }
                let (base, len) = (resolve(base, &ranges), resolve(len, &ranges));
                let id = ranges.len();
                let result = bus.insert(base, len, NAMES[id], Box::new(Probe { id, log: log.clone() }));
                let end = base.checked_add(len).filter(|_| len > 0);
                let overlapping: Vec<&str> = ranges
                    .iter()
                    .enumerate()
                    .filter(|(_, &(b, l))| end.is_some_and(|e| b < e && base < b + l))
                    .map(|(i, _)| NAMES[i])
                    .collect();
                match result {
                    Ok(()) => {
                        assert!(end.is_some() && overlapping.is_empty(), "{base:#x}+{len:#x} overlaps {overlapping:?}");
                        ranges.push((base, len));
                    }
                    Err(BusError::BadRange { .. }) => assert!(end.is_none(), "{base:#x}+{len:#x} is a good range"),
                    Err(BusError::Overlap { other, .. }) => {
                        assert!(overlapping.contains(&other), "{base:#x}+{len:#x} does not overlap {other}")
                    }
                }
            }
            Op::Read { addr, len } => {
                let addr = resolve(addr, &ranges);
                let mut data = vec![0x5a; usize::from(len % 17)];
                let d = bus.read(addr, &mut data);
                let seen = log.lock().map(|l| l.clone()).unwrap_or_default();
                match owner(addr, &ranges) {
                    Some(id) => {
                        assert_eq!(d.device, Some(NAMES[id]));
                        assert!(!d.first_unclaimed);
                        assert_eq!(seen, vec![(id, false, addr - ranges[id].0, data.clone())], "read at {addr:#x}");
                    }
                    None => {
                        assert_eq!((d.device, d.first_unclaimed), (None, unclaimed.insert(addr)));
                        assert!(data.iter().all(|&b| b == 0xff), "unclaimed read gave {data:?}");
                        assert!(seen.is_empty(), "unclaimed read reached {seen:?}");
                    }
                }
                assert_eq!(d.request, DeviceRequest::None);
            }
            Op::Write { addr, ref data } => {
                let addr = resolve(addr, &ranges);
                let d = bus.write(addr, data);
                let seen = log.lock().map(|l| l.clone()).unwrap_or_default();
                match owner(addr, &ranges) {
                    Some(id) => {
                        assert_eq!(d.device, Some(NAMES[id]));
                        assert!(!d.first_unclaimed);
                        assert_eq!(seen, vec![(id, true, addr - ranges[id].0, data.clone())], "write at {addr:#x}");
                        let request = match data.first() {
                            Some(&b) if usize::from(b) == id => DeviceRequest::Exit(b),
                            _ => DeviceRequest::None,
                        };
                        assert_eq!(d.request, request);
                    }
                    None => {
                        assert_eq!((d.device, d.first_unclaimed), (None, unclaimed.insert(addr)));
                        assert_eq!(d.request, DeviceRequest::None);
                        assert!(seen.is_empty(), "unclaimed write reached {seen:?}");
                    }
                }
            }
            Op::Owner { addr } => {
                let addr = resolve(addr, &ranges);
                assert_eq!(bus.owner(addr), owner(addr, &ranges).map(|i| NAMES[i]), "owner of {addr:#x}");
            }
        }
    }
    assert_eq!(bus.unclaimed().len(), unclaimed.len());
});
