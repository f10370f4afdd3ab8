//! Exit statistics: exits by kind and device, time in the VMM per exit,
//! time in the guest.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use crate::vcpu::ExitKind;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Row {
    count: u64,
    vmm: Duration,
}

/// Counters filled by the run loop when `--stats` is on.
#[derive(Clone, Debug, Default)]
pub struct ExitStats {
    rows: BTreeMap<(ExitKind, &'static str), Row>,
    /// Time inside KVM_RUN (the guest, and KVM's in-kernel handling).
    pub guest: Duration,
}

impl ExitStats {
    /// Counts one exit handled by `device` that took `vmm` in the VMM.
    pub fn record(&mut self, kind: ExitKind, device: &'static str, vmm: Duration) {
        let row = self.rows.entry((kind, device)).or_default();
        row.count += 1;
        row.vmm += vmm;
    }

    /// Adds `other`'s counts and times to these (one vCPU's to the total).
    pub fn merge(&mut self, other: &ExitStats) {
        for (key, row) in &other.rows {
            let mine = self.rows.entry(*key).or_default();
            mine.count += row.count;
            mine.vmm += row.vmm;
        }
        self.guest += other.guest;
    }

    /// Total exits counted.
    pub fn exits(&self) -> u64 {
        self.rows.values().map(|r| r.count).sum()
    }

    /// Exits of one kind and device.
    pub fn count(&self, kind: ExitKind, device: &str) -> u64 {
        self.rows.iter().filter(|((k, d), _)| *k == kind && *d == device).map(|(_, r)| r.count).sum()
    }

    /// Writes the table.
    pub fn render(&self, out: &mut dyn Write, wall: Duration) -> io::Result<()> {
        writeln!(out, "{:<14} {:<12} {:>9} {:>13} {:>11}", "exit", "device", "count", "vmm total", "vmm mean")?;
        let mut vmm_total = Duration::ZERO;
        for ((kind, device), row) in &self.rows {
            vmm_total += row.vmm;
            let mean = row.vmm / u32::try_from(row.count.max(1)).unwrap_or(u32::MAX);
            writeln!(
                out,
                "{:<14} {:<12} {:>9} {:>11.1}µs {:>9.2}µs",
                kind.name(),
                device,
                row.count,
                row.vmm.as_secs_f64() * 1e6,
                mean.as_secs_f64() * 1e6
            )?;
        }
        writeln!(out, "{:<27} {:>9} {:>11.1}µs", "total", self.exits(), vmm_total.as_secs_f64() * 1e6)?;
        writeln!(
            out,
            "time in guest (KVM_RUN): {:.3}ms, in the VMM: {:.3}ms, wall: {:.3}ms",
            self.guest.as_secs_f64() * 1e3,
            vmm_total.as_secs_f64() * 1e3,
            wall.as_secs_f64() * 1e3
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_rows_and_guest_time() {
        let (mut a, mut b) = (ExitStats::default(), ExitStats::default());
        a.record(ExitKind::IoOut, "uart", Duration::from_micros(2));
        b.record(ExitKind::IoOut, "uart", Duration::from_micros(3));
        b.record(ExitKind::Hlt, "-", Duration::from_micros(1));
        b.guest = Duration::from_millis(1);
        a.merge(&b);
        assert_eq!((a.exits(), a.count(ExitKind::IoOut, "uart"), a.guest), (3, 2, Duration::from_millis(1)));
    }

    #[test]
    fn counts_by_kind_and_device_and_renders_a_table() {
        let mut s = ExitStats::default();
        s.record(ExitKind::IoOut, "uart", Duration::from_micros(2));
        s.record(ExitKind::IoOut, "uart", Duration::from_micros(4));
        s.record(ExitKind::MmioRead, "scratch", Duration::from_micros(1));
        assert_eq!((s.exits(), s.count(ExitKind::IoOut, "uart")), (3, 2));
        let mut out = Vec::new();
        s.render(&mut out, Duration::from_millis(1)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("io-out         uart                 2         6.0µs      3.00µs"), "{text}");
        assert!(text.contains("total                               3"), "{text}");
    }
}
