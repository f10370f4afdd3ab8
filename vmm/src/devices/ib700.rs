//! The IB700 watchdog timer, as QEMU's `-device ib700` models it
//! (`hw/watchdog/wdt_ib700.c`), so guest code written for QEMU works
//! unchanged: a write of any width to port 0x443 (offsets 2-3 of the
//! device) starts the timer, or refreshes it, with the timeout that the low
//! four bits of the value select in [`TIMEOUT_TABLE`]; a write to port
//! 0x441 (offsets 0-1) stops it. Reads return all ones, as QEMU leaves
//! them unassigned.
//!
//! The device knows nothing of KVM or of what an expiry does: it keeps its
//! deadline in a [`WatchdogTimer`] shared with the VMM's controller, which
//! watches the deadline (a guest that hangs makes no exits, so the device
//! itself would never run again) and carries out `--watchdog-action`.
//! QEMU counts the timeout in guest virtual time; here it is the host's
//! monotonic clock, so a vCPU paused for a checkpoint still ages the timer
//! by the pause (a few milliseconds against timeouts of seconds).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{DeviceError, DeviceState};
use crate::bus::{BusDevice, DeviceRequest};

/// Seconds of timeout for each value of the low four bits written to 0x443.
pub const TIMEOUT_TABLE: [u32; 16] = [30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0];
/// Offsets of the stop register (port 0x441 and the one after it).
const STOP: std::ops::Range<u64> = 0..2;
/// Offsets of the start/refresh register (port 0x443 and the one after it).
const START: std::ops::Range<u64> = 2..4;
/// No deadline: the timer is stopped.
const DISARMED: u64 = u64::MAX;

/// The timer's state, shared by the device (the guest's writes) and the
/// controller (the expiry). Times are nanoseconds since `epoch`.
#[derive(Debug)]
pub struct WatchdogTimer {
    epoch: Instant,
    deadline: AtomicU64,
    last_pet: AtomicU64,
    timeout_s: AtomicU32,
    pets: AtomicU64,
}

/// An expiry, as the controller reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// When the guest last started or refreshed the timer (since the epoch).
    pub last_pet: Duration,
    /// The timeout that pet set.
    pub timeout: Duration,
    /// When the expiry was noticed (since the epoch).
    pub noticed: Duration,
    /// Pets since the VMM started.
    pub pets: u64,
}

impl Expiry {
    /// From the deadline to the moment the expiry was noticed.
    pub fn lateness(&self) -> Duration {
        self.noticed.saturating_sub(self.last_pet + self.timeout)
    }
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the IB700 watchdog expired: the guest last petted it {:.3} s into the run with a {} s timeout, \
             and it was noticed {:.3} s after that pet ({:.1} ms past the deadline; {} pets in all)",
            self.last_pet.as_secs_f64(),
            self.timeout.as_secs(),
            (self.noticed - self.last_pet.min(self.noticed)).as_secs_f64(),
            self.lateness().as_secs_f64() * 1e3,
            self.pets
        )
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

impl WatchdogTimer {
    /// A stopped timer whose clock starts now.
    pub fn new() -> Arc<Self> {
        Self::with_epoch(Instant::now())
    }

    /// A stopped timer whose times count from `epoch`.
    pub fn with_epoch(epoch: Instant) -> Arc<Self> {
        Arc::new(WatchdogTimer {
            epoch,
            deadline: AtomicU64::new(DISARMED),
            last_pet: AtomicU64::new(0),
            timeout_s: AtomicU32::new(0),
            pets: AtomicU64::new(0),
        })
    }

    /// Time since the epoch.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The instant `since_epoch` after the epoch.
    pub fn instant(&self, since_epoch: Duration) -> Instant {
        self.epoch + since_epoch
    }

    /// The guest wrote `value` to the start register at `now`.
    pub fn pet_at(&self, now: Duration, value: u8) {
        let timeout = TIMEOUT_TABLE[usize::from(value & 0xf)];
        self.timeout_s.store(timeout, Ordering::SeqCst);
        self.last_pet.store(nanos(now), Ordering::SeqCst);
        self.pets.fetch_add(1, Ordering::SeqCst);
        self.deadline.store(nanos(now + Duration::from_secs(u64::from(timeout))), Ordering::SeqCst);
    }

    /// The guest wrote the stop register.
    pub fn stop(&self) {
        self.deadline.store(DISARMED, Ordering::SeqCst);
    }

    /// The deadline, if the timer runs.
    pub fn deadline(&self) -> Option<Duration> {
        let d = self.deadline.load(Ordering::SeqCst);
        (d != DISARMED).then(|| Duration::from_nanos(d))
    }

    /// Pets since the timer was made.
    pub fn pets(&self) -> u64 {
        self.pets.load(Ordering::SeqCst)
    }

    /// If the deadline has passed at `now`, stops the timer (as QEMU does
    /// after its action) and returns the expiry; a pet that raced with it wins.
    pub fn take_expiry(&self, now: Duration) -> Option<Expiry> {
        let deadline = self.deadline.load(Ordering::SeqCst);
        if deadline == DISARMED || nanos(now) < deadline {
            return None;
        }
        self.deadline.compare_exchange(deadline, DISARMED, Ordering::SeqCst, Ordering::SeqCst).ok()?;
        Some(Expiry {
            last_pet: Duration::from_nanos(self.last_pet.load(Ordering::SeqCst)),
            timeout: Duration::from_secs(u64::from(self.timeout_s.load(Ordering::SeqCst))),
            noticed: now,
            pets: self.pets(),
        })
    }

    /// The state a snapshot keeps: the time left, if running, and the timeout.
    fn save_at(&self, now: Duration) -> DeviceState {
        let remaining_ns = self.deadline().map(|d| nanos(d.saturating_sub(now)));
        DeviceState::Ib700 { remaining_ns, timeout_s: self.timeout_s.load(Ordering::SeqCst) }
    }

    /// Takes back a saved state at `now`: a running timer has its time left again.
    fn restore_at(&self, now: Duration, remaining_ns: Option<u64>, timeout_s: u32) {
        self.timeout_s.store(timeout_s.min(TIMEOUT_TABLE[0]), Ordering::SeqCst);
        match remaining_ns {
            Some(left) => {
                let timeout = Duration::from_secs(u64::from(timeout_s.min(TIMEOUT_TABLE[0])));
                let left = Duration::from_nanos(left).min(timeout);
                self.last_pet.store(nanos((now + left).saturating_sub(timeout)), Ordering::SeqCst);
                self.deadline.store(nanos(now + left), Ordering::SeqCst);
            }
            None => self.stop(),
        }
    }
}

/// The device on the port bus, at 0x441 for 4 ports.
#[derive(Debug)]
pub struct Ib700 {
    timer: Arc<WatchdogTimer>,
}

impl Ib700 {
    /// The device driving `timer`.
    pub fn new(timer: Arc<WatchdogTimer>) -> Self {
        Ib700 { timer }
    }
}

impl BusDevice for Ib700 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> DeviceRequest {
        match (offset, data.last()) {
            (o, Some(&value)) if START.contains(&o) => self.timer.pet_at(self.timer.now(), value),
            (o, Some(_)) if STOP.contains(&o) => self.timer.stop(),
            _ => {}
        }
        DeviceRequest::None
    }
    fn save(&mut self) -> DeviceState {
        self.timer.save_at(self.timer.now())
    }
    fn restore(&mut self, state: &DeviceState) -> Result<(), DeviceError> {
        match *state {
            DeviceState::Ib700 { remaining_ns, timeout_s } => {
                self.timer.restore_at(self.timer.now(), remaining_ns, timeout_s);
                Ok(())
            }
            ref other => Err(DeviceError::WrongKind { expected: "IB700 watchdog", found: other.kind() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_timeout_table_is_qemus() {
        // wdt_ib700.c: {30, 28, ..., 2, 0} seconds for values 0 to 15.
        for (value, &secs) in TIMEOUT_TABLE.iter().enumerate() {
            assert_eq!(secs, 30 - 2 * value as u32);
        }
        let t = WatchdogTimer::new();
        t.pet_at(S, 0x1e); // only the low four bits count: 14, 2 s
        assert_eq!(t.deadline(), Some(3 * S));
        t.pet_at(S, 0);
        assert_eq!(t.deadline(), Some(31 * S));
    }

    #[test]
    fn a_pet_refreshes_the_deadline_and_a_stop_write_disarms_it() {
        let t = WatchdogTimer::new();
        assert_eq!(t.take_expiry(100 * S), None, "a timer never started never expires");
        t.pet_at(S, 14);
        assert_eq!(t.take_expiry(2 * S), None);
        t.pet_at(2 * S, 14);
        assert_eq!(t.take_expiry(3 * S + S / 2), None, "the second pet moved the deadline to 4 s");
        let e = t.take_expiry(4 * S + S / 100).expect("expired at 4 s");
        assert_eq!((e.last_pet, e.timeout, e.pets), (2 * S, 2 * S, 2));
        assert_eq!(e.lateness(), S / 100);
        assert_eq!(t.take_expiry(10 * S), None, "an expiry stops the timer, as in QEMU");
        t.pet_at(11 * S, 13);
        t.stop();
        assert_eq!((t.deadline(), t.take_expiry(100 * S)), (None, None));
    }

    #[test]
    fn value_15_expires_at_once() {
        let t = WatchdogTimer::new();
        t.pet_at(5 * S, 15);
        assert_eq!(t.take_expiry(5 * S).map(|e| e.timeout), Some(Duration::ZERO));
    }

    #[test]
    fn the_device_decodes_its_ports_as_qemu_does() {
        let t = WatchdogTimer::new();
        let mut dev = Ib700::new(t.clone());
        dev.write(2, &[14]); // port 0x443
        let armed = t.deadline().expect("a write to 0x443 starts it");
        assert!(armed >= 2 * S && armed < 3 * S, "{armed:?}");
        dev.write(1, &[0]); // port 0x442: QEMU's stop register is two ports wide
        assert_eq!(t.deadline(), None);
        dev.write(3, &[0, 0]); // 0x444, a word: the last byte written counts
        assert!(t.deadline().is_some_and(|d| d >= 30 * S));
        dev.write(0, &[]); // an empty access changes nothing
        assert!(t.deadline().is_some());
        let mut b = [0u8; 2];
        dev.read(2, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        assert_eq!(t.pets(), 2);
    }

    #[test]
    fn a_saved_timer_restored_later_has_the_same_time_left() {
        let t = WatchdogTimer::new();
        t.pet_at(S, 14);
        let state = t.save_at(S + S / 2);
        assert_eq!(state, DeviceState::Ib700 { remaining_ns: Some(1_500_000_000), timeout_s: 2 });
        let u = WatchdogTimer::new();
        let DeviceState::Ib700 { remaining_ns, timeout_s } = state else { unreachable!() };
        u.restore_at(10 * S, remaining_ns, timeout_s);
        assert_eq!(u.deadline(), Some(11 * S + S / 2));
        let e = u.take_expiry(12 * S).unwrap();
        assert_eq!(e.last_pet, 9 * S + S / 2, "the pet is placed where it was relative to the deadline");
        u.restore_at(S, None, 2);
        assert_eq!(u.deadline(), None);
        // A corrupt time left is bounded by the timeout.
        u.restore_at(S, Some(u64::MAX), 2);
        assert_eq!(u.deadline(), Some(3 * S));
        let mut dev = Ib700::new(u);
        assert!(dev.restore(&DeviceState::DebugExit).is_err());
    }
}
