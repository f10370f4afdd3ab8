//! Output commit, as Remus does it for the network (Cully et al., NSDI
//! 2008): the guest's serial output produced after the latest checkpoint
//! is held back, and released only once the next checkpoint is taken. A
//! rollback discards what is held, so the output the world has seen is
//! always the output of an execution the checkpoints can reproduce: no
//! line twice after a rollback, none lost. The price is the delay: a byte
//! waits up to a checkpoint interval; [`OutputGate`] measures it.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    /// When each run of held bytes was written, and how many bytes it holds.
    writes: VecDeque<(Instant, usize)>,
}

/// How long released bytes were held.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OutputDelay {
    /// Bytes released.
    pub bytes: u64,
    /// The sum over released bytes of the time each was held.
    pub byte_time: Duration,
    /// The longest any byte was held.
    pub max: Duration,
    /// Bytes discarded by rollbacks.
    pub discarded: u64,
}

impl OutputDelay {
    /// The mean time a released byte was held.
    pub fn mean(&self) -> Duration {
        if self.bytes == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.byte_time.as_secs_f64() / self.bytes as f64)
    }
}

/// The gate between the UART and the world.
#[derive(Clone, Debug, Default)]
pub struct OutputGate {
    held: Arc<Mutex<Held>>,
    delay: Arc<Mutex<OutputDelay>>,
}

/// The UART's side of the gate: what it writes is held.
#[derive(Clone, Debug)]
pub struct GateWriter(Arc<Mutex<Held>>);

impl Write for GateWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut held) = self.0.lock() {
            held.bytes.extend_from_slice(buf);
            held.writes.push_back((Instant::now(), buf.len()));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl OutputGate {
    /// A gate and the writer to hand the UART.
    pub fn new() -> (Self, GateWriter) {
        let gate = OutputGate::default();
        let writer = GateWriter(gate.held.clone());
        (gate, writer)
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.lock().map_or(0, |h| h.bytes.len())
    }

    /// Releases everything held (a checkpoint committed, or the run ended),
    /// counting how long each byte waited until `now`.
    pub fn release(&self, now: Instant) -> Vec<u8> {
        let Ok(mut held) = self.held.lock() else { return Vec::new() };
        let bytes = std::mem::take(&mut held.bytes);
        let writes = std::mem::take(&mut held.writes);
        drop(held);
        if let Ok(mut d) = self.delay.lock() {
            for (at, n) in writes {
                let waited = now.saturating_duration_since(at);
                d.bytes += n as u64;
                d.byte_time += waited * u32::try_from(n).unwrap_or(u32::MAX);
                d.max = d.max.max(waited);
            }
        }
        bytes
    }

    /// Drops everything held (a rollback); returns how many bytes.
    pub fn discard(&self) -> usize {
        let Ok(mut held) = self.held.lock() else { return 0 };
        held.writes.clear();
        let n = std::mem::take(&mut held.bytes).len();
        drop(held);
        if let Ok(mut d) = self.delay.lock() {
            d.discarded += n as u64;
        }
        n
    }

    /// The delays of everything released so far.
    pub fn delay(&self) -> OutputDelay {
        self.delay.lock().map(|d| *d).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_held_until_released_and_a_discard_drops_it() {
        let (gate, mut uart) = OutputGate::new();
        uart.write_all(b"count 1\n").unwrap();
        uart.write_all(b"count 2\n").unwrap();
        assert_eq!(gate.held(), 16);
        let t0 = Instant::now();
        assert_eq!(gate.release(t0 + Duration::from_millis(10)), b"count 1\ncount 2\n");
        assert_eq!(gate.held(), 0);
        uart.write_all(b"count 3\n").unwrap();
        assert_eq!(gate.discard(), 8, "a rollback drops what came after the checkpoint");
        assert!(gate.release(Instant::now()).is_empty());
        let d = gate.delay();
        assert_eq!((d.bytes, d.discarded), (16, 8));
        assert!(d.max >= Duration::from_millis(10) && d.mean() >= Duration::from_millis(10), "{d:?}");
    }

    #[test]
    fn the_mean_delay_is_weighted_by_bytes() {
        let (gate, mut uart) = OutputGate::new();
        let t0 = Instant::now();
        uart.write_all(&[b'a'; 3]).unwrap();
        let released = gate.release(t0);
        assert_eq!(released.len(), 3);
        let d = gate.delay();
        assert!(d.mean() <= d.max);
        assert_eq!(OutputDelay::default().mean(), Duration::ZERO);
    }
}
