//! `vmm bench`: the cost of an exit and of booting, measured in-process.
//!
//! (a) the floor: a bare KVM_RUN loop on the `exits` guest, no dispatch;
//! (b) the same guest through the full VMM (exit handler, bus, devices);
//! (c) create-VM-to-guest-exit for `hello`;
//! (d) the IPI round trip between two vCPUs of the `smp` guest, which
//!     times its ping-pong with the TSC and leaves the ticks at 0x6000.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::vm::{RunOptions, Vm, VmError};

/// The figures of one `vmm bench` run.
#[derive(Clone, Debug)]
pub struct BenchReport {
    pub exits_per_run: u64,
    /// Fastest ns per exit over the rounds, bare loop.
    pub floor_ns: f64,
    /// Fastest ns per exit over the rounds, full VMM.
    pub full_ns: f64,
    /// Median create-VM-to-exit time for `hello`.
    pub boot_median: Duration,
    /// Fastest create-VM-to-exit time for `hello`.
    pub boot_min: Duration,
}

fn exits_vm() -> Result<Vm, VmError> {
    let guest = guests::find("exits").ok_or_else(|| missing("exits"))?;
    let (image, config) = crate::builtin_image(guest);
    Vm::new(&config, &image, Box::new(io::sink()))
}

fn missing(name: &str) -> VmError {
    VmError::Loader(crate::loader::LoaderError::Read {
        path: name.to_string(),
        source: io::Error::new(io::ErrorKind::NotFound, "built-in guest missing"),
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the three measurements; `rounds` repetitions of each exit run,
/// interleaved (bare, full, bare, full, ...) so drift hits both alike.
pub fn run(rounds: u32, boots: u32) -> Result<BenchReport, VmError> {
    let mut floor_ns = f64::INFINITY;
    let mut full_ns = f64::INFINITY;
    let mut exits_per_run = 0;
    for _ in 0..rounds.max(1) {
        let mut vm = exits_vm()?;
        let t = Instant::now();
        let exits = vm.run_bare()?;
        floor_ns = floor_ns.min(t.elapsed().as_nanos() as f64 / exits as f64);

        let mut vm = exits_vm()?;
        let t = Instant::now();
        let report = vm.run(RunOptions::default())?;
        full_ns = full_ns.min(t.elapsed().as_nanos() as f64 / report.exits as f64);
        exits_per_run = report.exits;
    }
    let hello = guests::find("hello").ok_or_else(|| missing("hello"))?;
    let mut boots_t = Vec::new();
    for _ in 0..boots.max(1) {
        let t = Instant::now();
        let (image, config) = crate::builtin_image(hello);
        let mut vm = Vm::new(&config, &image, Box::new(io::sink()))?;
        vm.run(RunOptions::default())?;
        boots_t.push(t.elapsed());
    }
    let boot_min = boots_t.iter().min().copied().unwrap_or_default();
    Ok(BenchReport { exits_per_run, floor_ns, full_ns, boot_median: median(boots_t), boot_min })
}

/// Where the `smp` guest leaves its ping-pong's TSC ticks and round trips.
const IPI_RESULT: u64 = 0x6000;

/// The IPI round trip of `vmm bench --only smp`.
#[derive(Clone, Debug)]
pub struct IpiReport {
    pub runs: usize,
    pub round_trips: u64,
    /// Median and fastest ns per round trip over the runs.
    pub median_ns: f64,
    pub min_ns: f64,
}

/// Runs `smp` with two vCPUs `runs` times; each run's round-trip time is
/// its TSC ticks over its round trips, at this vCPU's TSC frequency.
///
/// # Errors
///
/// A failed run, a guest that left no figure, a KVM with no TSC frequency.
pub fn ipi(runs: u32) -> Result<IpiReport, VmError> {
    let guest = guests::find("smp").ok_or_else(|| missing("smp"))?;
    let mut per_trip = Vec::new();
    let mut round_trips = 0;
    for _ in 0..runs.max(1) {
        let (image, config) = crate::builtin_image(guest);
        let mut vm = Vm::new(&crate::vm::VmConfig { vcpus: 2, ..config }, &image, Box::new(io::sink()))?;
        vm.run(RunOptions::default())?;
        let mut words = [0u8; 16];
        crate::memory::read(vm.memory(), IPI_RESULT, &mut words).map_err(VmError::Memory)?;
        let ticks = u64::from_le_bytes(words[..8].try_into().unwrap_or_default());
        round_trips = u64::from_le_bytes(words[8..].try_into().unwrap_or_default());
        let khz = vm.tsc_khz().ok_or_else(|| missing("the TSC frequency (KVM_GET_TSC_KHZ) of"))?;
        if round_trips == 0 {
            return Err(missing("the IPI figure of smp"));
        }
        per_trip.push(ticks as f64 * 1e6 / f64::from(khz) / round_trips as f64);
    }
    per_trip.sort_by(f64::total_cmp);
    let median_ns = per_trip[per_trip.len() / 2];
    Ok(IpiReport { runs: per_trip.len(), round_trips, median_ns, min_ns: per_trip[0] })
}

impl IpiReport {
    /// One line.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "(d) smp, IPI round trip vCPU 0 -> 1 -> 0: {:>8.0} ns median, {:.0} ns fastest ({} runs of {} round trips)",
            self.median_ns, self.min_ns, self.runs, self.round_trips
        )
    }
}

impl BenchReport {
    /// Writes the figures as a small table.
    pub fn render(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "exits guest: {} port-I/O exits per run (fastest round shown)", self.exits_per_run)?;
        writeln!(out, "(a) floor, bare KVM_RUN loop:        {:>8.0} ns/exit", self.floor_ns)?;
        writeln!(
            out,
            "(b) full VMM (handler, bus, device): {:>8.0} ns/exit  ({:.3}x the floor)",
            self.full_ns,
            self.full_ns / self.floor_ns
        )?;
        writeln!(
            out,
            "(c) hello: create VM to guest exit:  {:>8.3} ms median, {:.3} ms fastest",
            self.boot_median.as_secs_f64() * 1e3,
            self.boot_min.as_secs_f64() * 1e3
        )
    }
}
