//! SMP guests: several vCPUs, each on a host thread of its own running the
//! same run loop and [`crate::vcpu::handle_exit`] (the one-to-one model).
//!
//! vCPU 0 is the bootstrap processor and boots as a single vCPU would; the
//! others (application processors) are created with the in-kernel irqchip,
//! whose LAPIC puts them in KVM's wait-for-SIPI state until the guest
//! sends them INIT-SIPI-SIPI. The devices are shared behind one lock
//! ([`crate::vcpu::BusRef::Shared`]). The first vCPU whose loop ends (the
//! guest's debug-exit, any vCPU's fatal exit, the BSP's `--timeout`) ends
//! the run: it sets the [`Crew`]'s flag and kicks every other vCPU thread
//! out of `KVM_RUN` (`immediate_exit` and the watchdog's signal, as a
//! pause does), so an AP that never got its SIPI cannot keep the run
//! alive. For a snapshot or a migration's stop-and-copy the controller
//! pauses the BSP, which pauses the APs (`Crew::gather`); each AP saves
//! its own state on its own thread (`Crew::park`).

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kvm_bindings::kvm_cpuid_entry2;
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use crate::arch::x86_64::layout::MPTABLE_START;
use crate::arch::x86_64::mptable;

use crate::control::{Control, PauseReason};
use crate::kvmstate::{self, StateError, VcpuCaps};
use crate::memory::GuestMemoryMmap;
use crate::runloop::{Link, VcpuRun};
use crate::seccomp::{self, KvmFds};
use crate::snapshot::state::VcpuState;
use crate::stats::ExitStats;
use crate::vcpu::{BusRef, Buses};
use crate::vm::{RunReport, VmError};

/// Errors of an SMP configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmpError {
    #[error("--vcpus 0: a guest needs at least one vCPU")]
    NoVcpus,
    #[error("--vcpus {asked} is more than {max}, the most {why}: use fewer")]
    TooMany { asked: u32, max: u32, why: &'static str },
    #[error("{what} with --vcpus {vcpus} is not supported yet: run the guest with one vCPU")]
    Unsupported { what: &'static str, vcpus: usize },
}

/// The largest vCPU count this VMM runs on `kvm`, and what sets it.
pub fn max_vcpus(kvm: &Kvm) -> (u32, &'static str) {
    // KVM_CAP_MAX_VCPUS, or KVM_CAP_NR_VCPUS on kernels that lack it, as the API says.
    let kvm_max = match kvm.check_extension_int(Cap::MaxVcpus) {
        n if n > 0 => n,
        _ => kvm.check_extension_int(Cap::NrVcpus).max(1),
    };
    let kvm_max = u32::try_from(kvm_max).unwrap_or(1);
    let table = crate::arch::x86_64::mptable::MAX_CPUS;
    if kvm_max < table {
        (kvm_max, "this KVM runs in one VM (KVM_CAP_MAX_VCPUS)")
    } else {
        (table, "an MP table describes (one-byte APIC ids)")
    }
}

/// A note for the user when `vcpus` is more than KVM recommends
/// (KVM_CAP_NR_VCPUS: the host's CPUs): allowed, but they take turns.
pub fn oversubscription_note(kvm: &Kvm, vcpus: u32) -> Option<String> {
    let recommended = u32::try_from(kvm.check_extension_int(Cap::NrVcpus)).unwrap_or(0);
    (recommended > 0 && vcpus > recommended).then(|| {
        format!("{vcpus} vCPUs, more than the {recommended} KVM recommends (KVM_CAP_NR_VCPUS, the host's CPUs): their threads share them")
    })
}

/// Checks `--vcpus` against [`max_vcpus`].
///
/// # Errors
///
/// [`SmpError::NoVcpus`] or [`SmpError::TooMany`].
pub fn check_count(asked: u32, limit: (u32, &'static str)) -> Result<(), SmpError> {
    let (max, why) = limit;
    match asked {
        0 => Err(SmpError::NoVcpus),
        n if n > max => Err(SmpError::TooMany { asked: n, max, why }),
        _ => Ok(()),
    }
}

/// vCPU `id`'s CPUID table: the BSP's, with its own APIC id.
pub fn cpuid_of(bsp: &[kvm_cpuid_entry2], id: u32, count: u32) -> Vec<kvm_cpuid_entry2> {
    let mut table = bsp.to_vec();
    crate::arch::x86_64::cpuid::set_apic_id(&mut table, id, count);
    table
}

/// Writes the MP table for `count` vCPUs at [`MPTABLE_START`]; returns the
/// line for the boot report.
///
/// # Errors
///
/// A count the table cannot describe, memory that cannot be written.
pub fn write_mptable(mem: &GuestMemoryMmap, cpuid: &[kvm_cpuid_entry2], count: u32) -> Result<String, VmError> {
    let leaf1 = cpuid.iter().find(|e| e.function == 1);
    let cpu = mptable::CpuId { signature: leaf1.map_or(0, |e| e.eax), features: leaf1.map_or(0, |e| e.edx) };
    let bytes = mptable::table_bytes(MPTABLE_START, count, cpu).map_err(|_| {
        VmError::Smp(SmpError::TooMany { asked: count, max: mptable::MAX_CPUS, why: "an MP table describes" })
    })?;
    crate::memory::write(mem, MPTABLE_START, &bytes).map_err(VmError::Memory)?;
    Ok(format!(
        "MP table at {MPTABLE_START:#x}+{:#x}: {count} CPU(s), APIC ids 0..{count}, IOAPIC id {count}",
        bytes.len()
    ))
}

/// What the vCPU threads of one run share: whether the run has ended,
/// which vCPU ended it, how to kick each of them, and, in runs that
/// snapshot, where the APs hand their state to the BSP.
#[derive(Debug)]
pub struct Crew {
    ended: AtomicBool,
    first: AtomicUsize,
    controls: Vec<Arc<Control>>,
    pauses: Option<Pauses>,
}

/// The APs' side of a pause: each saves its own state on its own thread
/// and hands it to the BSP, which pauses them and hands the whole machine
/// to the controller.
#[derive(Debug)]
struct Pauses {
    caps: VcpuCaps,
    to_bsp: Mutex<Sender<ApPaused>>,
    from_aps: Mutex<Receiver<ApPaused>>,
}

/// One paused AP's state, and how the BSP lets it go on.
#[derive(Debug)]
struct ApPaused {
    index: usize,
    state: Result<VcpuState, StateError>,
    resume: Sender<()>,
}

/// The paused APs: their states by vCPU index, and what lets them go on
/// (dropping it).
#[derive(Debug)]
pub(crate) struct Gathered {
    pub states: Vec<VcpuState>,
    pub resumes: Vec<Sender<()>>,
}

/// How often the BSP, waiting for the APs to pause, checks that the run
/// has not ended meanwhile.
const GATHER_POLL: Duration = Duration::from_millis(5);

impl Crew {
    /// A crew of `vcpus`, not yet ended; with `caps`, one that can pause
    /// for snapshots.
    pub fn new(vcpus: usize, caps: Option<VcpuCaps>) -> Self {
        let pauses = caps.map(|caps| {
            let (to_bsp, from_aps) = mpsc::channel();
            Pauses { caps, to_bsp: Mutex::new(to_bsp), from_aps: Mutex::new(from_aps) }
        });
        let controls = (0..vcpus).map(|_| Arc::default()).collect();
        Crew { ended: AtomicBool::new(false), first: AtomicUsize::new(0), controls, pauses }
    }

    /// vCPU `index`'s control (its kick, its pause requests).
    pub fn control(&self, index: usize) -> Arc<Control> {
        self.controls[index].clone()
    }

    /// True once a vCPU has ended the run.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// The vCPU whose end is the run's.
    pub fn first(&self) -> usize {
        self.first.load(Ordering::SeqCst)
    }

    /// vCPU `index`'s loop has ended: the first to say so ends the run, and
    /// every other vCPU is kicked out of `KVM_RUN`.
    pub fn end(&self, index: usize) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.first.store(index, Ordering::SeqCst);
        }
        for (i, control) in self.controls.iter().enumerate() {
            if i != index {
                control.kick();
            }
        }
    }

    /// On the BSP, paused itself: pauses every AP for `reason` and returns
    /// their states (by vCPU index) and what lets them go on; `None` if the
    /// run ended meanwhile (an AP's fatal exit).
    ///
    /// # Errors
    ///
    /// An AP whose state could not be read.
    pub(crate) fn gather(&self, reason: PauseReason) -> Result<Option<Gathered>, VmError> {
        let Some(pauses) = &self.pauses else { return Ok(Some(Gathered { states: Vec::new(), resumes: Vec::new() })) };
        for control in &self.controls[1..] {
            control.request_pause(reason);
        }
        let from_aps = pauses.from_aps.lock().unwrap_or_else(PoisonError::into_inner);
        let mut got: Vec<Option<ApPaused>> = (1..self.controls.len()).map(|_| None).collect();
        while got.iter().any(Option::is_none) {
            match from_aps.recv_timeout(GATHER_POLL) {
                Ok(paused) => {
                    let slot = paused.index - 1;
                    got[slot] = Some(paused);
                }
                Err(_) if self.ended() => return Ok(None),
                Err(_) => {}
            }
        }
        let (mut states, mut resumes) = (Vec::new(), Vec::new());
        for paused in got.into_iter().flatten() {
            resumes.push(paused.resume);
            states.push(paused.state.map_err(VmError::State)?);
        }
        Ok(Some(Gathered { states, resumes }))
    }

    /// On an AP asked to pause (after its `immediate_exit` re-entry):
    /// saves its state, hands it to the BSP and waits until the BSP lets
    /// it go on (or is gone).
    pub(crate) fn park(&self, index: usize, vcpu: &VcpuFd) {
        let Some(pauses) = &self.pauses else { return };
        let state = kvmstate::save_vcpu(vcpu, index as u32, &pauses.caps);
        let (resume, resumed) = mpsc::channel();
        let sent = pauses.to_bsp.lock().unwrap_or_else(PoisonError::into_inner).send(ApPaused { index, state, resume });
        if sent.is_ok() {
            let _ = resumed.recv();
        }
    }
}

/// One vCPU's place in a [`Crew`].
#[derive(Clone, Debug)]
pub struct Seat {
    pub crew: Arc<Crew>,
    pub index: usize,
}

impl Seat {
    /// This vCPU's control.
    pub fn control(&self) -> Arc<Control> {
        self.crew.control(self.index)
    }

    /// A pause asked of this AP by the BSP (never for the BSP: its
    /// controller asks through its link).
    pub fn ap_pause(&self) -> Option<PauseReason> {
        (self.index > 0).then(|| self.crew.controls[self.index].pending_pause()).flatten()
    }
}

/// A trace writer of one vCPU: whole lines, tagged `[vcpu N]`, into the
/// trace all vCPUs share.
pub struct TaggedTrace<'s, 't> {
    index: usize,
    shared: &'s Mutex<&'t mut (dyn Write + Send)>,
    line: Vec<u8>,
}

impl<'s, 't> TaggedTrace<'s, 't> {
    pub fn new(index: usize, shared: &'s Mutex<&'t mut (dyn Write + Send)>) -> Self {
        TaggedTrace { index, shared, line: Vec::new() }
    }
}

impl std::fmt::Debug for TaggedTrace<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaggedTrace").field("index", &self.index).finish_non_exhaustive()
    }
}

impl Write for TaggedTrace<'_, '_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for &b in data {
            self.line.push(b);
            if b == b'\n' {
                let mut out = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
                write!(out, "[vcpu {}] ", self.index)?;
                out.write_all(&self.line)?;
                self.line.clear();
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner).flush()
    }
}

/// What an SMP run borrows from the VM.
pub(crate) struct SmpParts<'a> {
    pub vm: &'a VmFd,
    pub vcpus: Vec<&'a mut VcpuFd>,
    pub buses: &'a mut Buses,
    pub mem: &'a GuestMemoryMmap,
}

/// How an SMP run goes: the options of [`crate::vm::RunOptions`] it
/// supports, the BSP's link to a controller, the crew.
pub(crate) struct SmpRun<'t> {
    pub trace: Option<&'t mut (dyn Write + Send)>,
    pub stats: bool,
    pub timeout: Option<Duration>,
    pub sandbox: bool,
    pub link: Option<Link>,
    pub crew: Arc<Crew>,
}

/// Runs every vCPU on a thread of its own, and `serve` (the controller,
/// if any) on this thread, until the first vCPU ends; then stops and
/// joins the others. The run's result is that first vCPU's; statistics
/// are kept per vCPU and summed. `serve`'s result is `None` if the vCPU
/// threads could not all be started.
///
/// # Errors
///
/// The first vCPU's error (naming that vCPU), a filter that cannot be
/// compiled, a thread that cannot be started.
pub(crate) fn run<T>(
    parts: SmpParts<'_>,
    opts: SmpRun<'_>,
    serve: impl FnOnce() -> T,
) -> (Result<RunReport, VmError>, Option<T>) {
    let SmpParts { vm, vcpus, buses, mem } = parts;
    let SmpRun { trace, stats, timeout, sandbox, link, crew } = opts;
    let snapshots = link.is_some();
    let mut filters = Vec::with_capacity(vcpus.len());
    for vcpu in &vcpus {
        let fds = KvmFds { vcpu: vcpu.as_raw_fd(), vm: vm.as_raw_fd() };
        filters.push(match sandbox {
            true => match seccomp::smp_vcpu_filter(fds, snapshots) {
                Ok(filter) => Some(filter),
                Err(e) => return (Err(VmError::Seccomp(e)), None),
            },
            false => None,
        });
    }
    // Before the filters: installing the kick's handler is not allowed after.
    crate::watchdog::install_handler();
    let shared = Mutex::new(std::mem::take(buses));
    let sink = trace.map(Mutex::new);
    let mut traces: Vec<Option<TaggedTrace<'_, '_>>> =
        (0..vcpus.len()).map(|i| sink.as_ref().map(|s| TaggedTrace::new(i, s))).collect();
    let mut link = link;
    let (results, served) = std::thread::scope(|scope| {
        let mut threads = Vec::new();
        for (index, ((vcpu, filter), trace)) in vcpus.into_iter().zip(&filters).zip(traces.iter_mut()).enumerate() {
            let run = VcpuRun {
                vcpu,
                buses: BusRef::Shared(&shared),
                mem,
                trace: trace.as_mut().map(|t| t as &mut (dyn Write + Send)),
                stats: stats.then(ExitStats::default),
                // The BSP's watchdog bounds the run: its end stops every AP.
                timeout: if index == 0 { timeout } else { None },
                link: if index == 0 { link.take() } else { None },
                exits: 0,
                debug: None,
                seat: Some(Seat { crew: crew.clone(), index }),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn_scoped(scope, || run.run(filter.as_ref()));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(source) => {
                    crew.end(index); // the threads started stop; the scope joins them
                    return (Err(VmError::Thread { name: "vCPU", source }), None);
                }
            }
        }
        let served = serve();
        let joined = threads.into_iter().map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        (Ok(joined.collect()), Some(served))
    });
    *buses = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
    (results.and_then(|r| combine(r, crew.first())), served)
}

/// The run's report from every vCPU's: the first vCPU's end or error, the
/// exits and statistics of all.
fn combine(results: Vec<Result<RunReport, VmError>>, first: usize) -> Result<RunReport, VmError> {
    let mut per_vcpu = Vec::new();
    let mut exits = 0;
    let mut chosen = None;
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(report) => {
                exits += report.exits;
                per_vcpu.push(report.stats.clone().unwrap_or_default());
                if index == first {
                    chosen = Some(Ok(report));
                }
            }
            // A later vCPU's failure while it was being stopped is not the run's.
            Err(error) if index == first => chosen = Some(Err(error)),
            Err(_) => per_vcpu.push(ExitStats::default()),
        }
    }
    // The first vCPU to end is always one that ran, so `chosen` is set.
    let mut report = chosen.unwrap_or(Err(VmError::Smp(SmpError::NoVcpus)))?;
    if report.stats.is_some() {
        let mut total = ExitStats::default();
        for s in &per_vcpu {
            total.merge(s);
        }
        report.stats = Some(total);
        report.per_vcpu = per_vcpu;
    }
    report.exits = exits;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::RunEnd;
    use crate::vcpu::ExitKind;

    #[test]
    fn zero_and_too_many_vcpus_are_refused_with_the_limit_and_why() {
        let limit = (4, "this KVM runs in one VM (KVM_CAP_MAX_VCPUS)");
        assert_eq!(check_count(0, limit), Err(SmpError::NoVcpus));
        assert_eq!(check_count(1, limit), Ok(()));
        assert_eq!(check_count(4, limit), Ok(()));
        let e = check_count(5, limit).unwrap_err();
        assert!(e.to_string().contains("--vcpus 5 is more than 4, the most this KVM runs"), "{e}");
    }

    #[test]
    fn the_first_vcpu_to_end_ends_the_run_once() {
        let crew = Crew::new(3, None);
        assert!(!crew.ended());
        crew.end(2);
        crew.end(0);
        assert!(crew.ended());
        assert_eq!(crew.first(), 2);
    }

    #[test]
    fn trace_lines_are_tagged_with_their_vcpu_and_kept_whole() {
        let mut out: Vec<u8> = Vec::new();
        {
            let sink: Mutex<&mut (dyn Write + Send)> = Mutex::new(&mut out);
            let (mut a, mut b) = (TaggedTrace::new(0, &sink), TaggedTrace::new(1, &sink));
            write!(a, "io-out ").unwrap();
            writeln!(b, "hlt").unwrap();
            writeln!(a, "0x3f8").unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "[vcpu 1] hlt\n[vcpu 0] io-out 0x3f8\n");
    }

    fn report(exits: u64, end: RunEnd) -> RunReport {
        let mut stats = ExitStats::default();
        for _ in 0..exits {
            stats.record(ExitKind::IoOut, "uart", Duration::from_micros(1));
        }
        RunReport {
            end,
            exits,
            stats: Some(stats),
            per_vcpu: Vec::new(),
            wall: Duration::ZERO,
            snapshots: Vec::new(),
            snapshot_failures: Vec::new(),
            migrations: Vec::new(),
        }
    }

    #[test]
    fn per_vcpu_statistics_sum_to_the_total_and_the_first_end_wins() {
        let results = vec![Ok(report(5, RunEnd::Guest(0))), Ok(report(3, RunEnd::Guest(7)))];
        let r = combine(results, 1).unwrap();
        assert_eq!(r.end, RunEnd::Guest(7));
        assert_eq!((r.exits, r.stats.unwrap().exits()), (8, 8));
        assert_eq!(r.per_vcpu.iter().map(ExitStats::exits).collect::<Vec<_>>(), [5, 3]);
        let failed = vec![Ok(report(1, RunEnd::Guest(0))), Err(VmError::Smp(SmpError::NoVcpus))];
        assert!(matches!(combine(failed, 1), Err(VmError::Smp(SmpError::NoVcpus))));
    }
}
