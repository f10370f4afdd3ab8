//! The vCPU run loop: `KVM_RUN`, [`handle_exit`], the trace and the
//! statistics, the watchdog, and the pause that hands a consistent state
//! to the controller ([`crate::control`]).

use std::io::Write;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_bindings::{KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO};
use kvm_ioctls::VcpuFd;
use sandbox::seccompiler::BpfProgram;

use crate::bus::{BusKind, Placement};
use crate::control::{Control, PauseReason, Paused, RunEnd, Verdict};
use crate::kvmstate::{self, VcpuCaps};
use crate::memory::GuestMemoryMmap;
use crate::seccomp;
use crate::smp::Seat;
use crate::snapshot::state::DeviceRecord;
use crate::stats::ExitStats;
use crate::trace::{self, CpuView, TraceLine};
use crate::vcpu::{handle_exit, BusRef, Buses, ExitKind, Handled, VcpuAction, VcpuError};
use crate::vm::{Diagnosis, RunReport, VmError};
use crate::watchdog::Watchdog;

use crate::gdb::vcpu::{Ending, Resumed, Stop, VcpuDebug};
use kvm_bindings::kvm_debug_exit_arch;
use kvm_ioctls::VcpuExit;

/// What one `KVM_RUN` gave, owned (so the vCPU is free again).
enum Ran {
    Handled(Result<Handled, VcpuError>),
    Debug(kvm_debug_exit_arch),
    Interrupted,
}

const RFLAGS_IF: u64 = 1 << 9;

/// The link from the vCPU thread to the controller.
pub(crate) struct Link {
    pub control: Arc<Control>,
    pub events: Sender<Paused>,
    pub caps: VcpuCaps,
    /// Pause for a snapshot once this many exits are handled.
    pub snapshot_after: Option<u64>,
    /// Exit counters and injected faults of a fault-tolerant run.
    pub ft: Option<crate::ft::VcpuHooks>,
}

/// One vCPU's run: what the loop borrows from the VM, and its counters.
pub(crate) struct VcpuRun<'a, 't> {
    pub vcpu: &'a mut VcpuFd,
    pub buses: BusRef<'a>,
    pub mem: &'a GuestMemoryMmap,
    pub trace: Option<&'t mut (dyn Write + Send + 't)>,
    pub stats: Option<ExitStats>,
    pub timeout: Option<Duration>,
    pub link: Option<Link>,
    pub exits: u64,
    /// The gdb stub's link, with `--gdb`.
    pub debug: Option<VcpuDebug>,
    /// This vCPU's place among the vCPUs of an SMP guest.
    pub seat: Option<Seat>,
}

/// What one pass of the loop decided.
enum Step {
    Continue,
    End(RunEnd),
}

impl VcpuRun<'_, '_> {
    /// The loop, on the vCPU thread: the watchdog (a thread started before
    /// the filter, so outside it), the filter, then KVM_RUN until the end.
    pub fn run(mut self, filter: Option<&BpfProgram>) -> Result<RunReport, VmError> {
        let result = self.run_loop(filter);
        if let Some(control) = self.control() {
            control.detach();
        }
        if let Some(seat) = &self.seat {
            seat.crew.end(seat.index);
        }
        if let Some(debug) = &self.debug {
            debug.ended(match &result {
                Ok(report) => Ending::Exited(report.status()),
                Err(e) => Ending::Failed(crate::cli::chain(e)),
            });
        }
        result
    }

    fn run_loop(&mut self, filter: Option<&BpfProgram>) -> Result<RunReport, VmError> {
        let watchdog = match self.timeout {
            Some(timeout) => {
                Some(Watchdog::start(timeout).map_err(|source| VmError::Thread { name: "watchdog", source })?)
            }
            None => None,
        };
        if let Some(control) = self.control() {
            let flag = &mut self.vcpu.get_kvm_run().immediate_exit as *mut u8;
            // SAFETY: the flag lies in the vCPU's kvm_run mapping, which lives
            // as long as the VcpuFd borrowed for this whole run; from here on
            // only `Control` touches it.
            unsafe { control.attach(flag) };
        }
        if let Some(filter) = filter {
            seccomp::apply(filter).map_err(VmError::Seccomp)?;
        }
        let start = Instant::now();
        if self.debug.as_ref().is_some_and(|d| d.wait_first) {
            if let Step::End(end) = self.debug_stop(Stop::Start)? {
                return Ok(self.report(end, start));
            }
        }
        loop {
            if self.seat.as_ref().is_some_and(|s| s.crew.ended()) {
                // Another vCPU ended the run (its own result is the run's);
                // this report only carries this vCPU's counters.
                return Ok(self.report(RunEnd::Guest(0), start));
            }
            if watchdog.as_ref().is_some_and(Watchdog::expired) {
                let timeout = self.timeout.unwrap_or_default();
                return Err(VmError::Timeout { timeout, diagnosis: self.diagnose(ExitKind::Other, None) });
            }
            if let Some(reason) = self.pause_wanted() {
                if let Step::End(end) = self.pause(reason, start)? {
                    return Ok(self.report(end, start));
                }
                continue;
            }
            if let Step::End(end) = self.step(start)? {
                return Ok(self.report(end, start));
            }
        }
    }

    fn report(&mut self, end: RunEnd, start: Instant) -> RunReport {
        RunReport {
            end,
            exits: self.exits,
            stats: self.stats.take(),
            per_vcpu: Vec::new(),
            wall: start.elapsed(),
            snapshots: Vec::new(),
            snapshot_failures: Vec::new(),
            migrations: Vec::new(),
        }
    }

    /// The pause control of the controller or of the gdb stub.
    fn control(&self) -> Option<Arc<Control>> {
        let debug = self.debug.as_ref().map(|d| d.control.clone());
        let seat = self.seat.as_ref().map(|s| s.control());
        self.link.as_ref().map(|l| l.control.clone()).or(debug).or(seat)
    }

    /// Hands a stop to the gdb stub and waits until it resumes the vCPU.
    fn debug_stop(&mut self, stop: Stop) -> Result<Step, VmError> {
        let Some(debug) = self.debug.as_mut() else { return Ok(Step::Continue) };
        match debug.stop(self.vcpu, stop) {
            Resumed::Run => Ok(Step::Continue),
            Resumed::Kill => Err(VmError::Gdb(crate::gdb::GdbError::Killed)),
        }
    }

    /// After a single step exited for port I/O or MMIO: completes the
    /// access with `immediate_exit` and stops there, whether or not this
    /// KVM reports the step's own debug exit.
    fn finish_step(&mut self, start: Instant) -> Result<Step, VmError> {
        let Some(control) = self.control() else { return Ok(Step::Continue) };
        control.set_immediate_exit(true);
        let stop = loop {
            match self.run_once() {
                Ok(Ran::Interrupted) => break Stop::StepDone,
                Ok(Ran::Debug(arch)) => break Stop::Debug(arch),
                Ok(Ran::Handled(handled)) => {
                    if let Step::End(end) = self.after_exit(handled, None, start)? {
                        control.set_immediate_exit(false);
                        return Ok(Step::End(end));
                    }
                }
                Err(e) => {
                    control.set_immediate_exit(false);
                    return Err(e);
                }
            }
        };
        control.set_immediate_exit(false);
        self.debug_stop(stop)
    }

    /// One KVM_RUN: a handled exit, a debug exit for the stub, or EINTR.
    fn run_once(&mut self) -> Result<Ran, VmError> {
        let debugging = self.debug.is_some();
        match self.vcpu.run() {
            Ok(VcpuExit::Debug(arch)) if debugging => Ok(Ran::Debug(arch)),
            Ok(exit) => Ok(Ran::Handled(handle_exit(exit, &mut self.buses.lock()))),
            // EINTR: a kick (watchdog, pause); EAGAIN: an AP's first KVM_RUN may say so.
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Ok(Ran::Interrupted),
            Err(source) => Err(VmError::Kvm { call: "KVM_RUN", source }),
        }
    }

    fn pause_wanted(&self) -> Option<PauseReason> {
        if let Some(debug) = &self.debug {
            if debug.control.pending_pause() == Some(PauseReason::Debug) {
                return Some(PauseReason::Debug);
            }
        }
        if let Some(reason) = self.seat.as_ref().and_then(Seat::ap_pause) {
            return Some(reason);
        }
        let link = self.link.as_ref()?;
        if link.snapshot_after.is_some_and(|n| self.exits >= n) {
            return Some(PauseReason::Snapshot);
        }
        link.control.pending_pause()
    }

    /// One KVM_RUN and the exit it returns.
    fn step(&mut self, start: Instant) -> Result<Step, VmError> {
        let entered = self.stats.as_ref().map(|_| Instant::now());
        let handled = match self.run_once()? {
            Ran::Handled(handled) => handled,
            Ran::Debug(arch) => return self.debug_stop(Stop::Debug(arch)),
            Ran::Interrupted => return Ok(Step::Continue),
        };
        let accessed = handled.as_ref().is_ok_and(|h| h.access.is_some());
        let step = self.after_exit(handled, entered, start)?;
        if accessed && self.debug.as_ref().is_some_and(|d| d.stepping) {
            if let Step::Continue = step {
                return self.finish_step(start);
            }
        }
        Ok(step)
    }

    /// Counts, traces and acts on one handled exit.
    fn after_exit(
        &mut self,
        handled: Result<Handled, VcpuError>,
        entered: Option<Instant>,
        start: Instant,
    ) -> Result<Step, VmError> {
        self.exits += 1;
        let kind = handled.as_ref().map_or_else(VcpuError::kind, |h| h.kind);
        let hooks = self.link.as_mut().and_then(|l| l.ft.as_mut());
        if let Some(fault) = hooks.and_then(|h| h.after_exit(kind, self.exits)) {
            return Err(self.injected(fault));
        }
        if let Some(s) = self.stats.as_mut() {
            let t1 = Instant::now();
            s.guest += t1 - entered.unwrap_or(t1);
            let device =
                handled.as_ref().ok().and_then(|h| h.access).map_or("-", |a| a.dispatch.device.unwrap_or("unclaimed"));
            s.record(kind, device, t1.elapsed());
        }
        if self.trace.is_some() {
            self.trace_exit(start.elapsed(), &handled);
        }
        let handled = match handled {
            Ok(h) => h,
            Err(error) => {
                let note = if error == VcpuError::InternalError { self.internal_error_note() } else { None };
                let diagnosis = self.diagnose(error.kind(), note);
                return Err(VmError::Guest { error, diagnosis });
            }
        };
        match handled.action {
            VcpuAction::Resume => Ok(Step::Continue),
            VcpuAction::Exit(status) => Ok(Step::End(RunEnd::Guest(status))),
            VcpuAction::Reset => Ok(Step::End(RunEnd::Reset)),
            VcpuAction::Halted => {
                // Without an in-kernel irqchip nothing can raise an interrupt, so
                // HLT with IF set is resumed at once; with IF clear it is final.
                let rflags =
                    self.vcpu.get_regs().map_err(|source| VmError::Kvm { call: "KVM_GET_REGS", source })?.rflags;
                if rflags & RFLAGS_IF == 0 {
                    return Err(VmError::HaltedForever { diagnosis: self.diagnose(ExitKind::Hlt, None) });
                }
                Ok(Step::Continue)
            }
        }
    }

    /// Re-enters KVM_RUN with `immediate_exit` until it returns EINTR (a
    /// string I/O may still exit first, handled as usual), then hands the
    /// consistent state to the controller and waits for its verdict.
    fn pause(&mut self, reason: PauseReason, start: Instant) -> Result<Step, VmError> {
        let at = Instant::now();
        let Some(control) = self.control() else { return Ok(Step::Continue) };
        loop {
            control.set_immediate_exit(true);
            let handled = match self.vcpu.run() {
                Err(e) if e.errno() == libc::EINTR => break,
                Err(e) if e.errno() == libc::EAGAIN => continue,
                Err(source) => return Err(VmError::Kvm { call: "KVM_RUN", source }),
                // An exit before the pause point (the next element of a string
                // I/O): handle it like any other.
                Ok(exit) => handle_exit(exit, &mut self.buses.lock()),
            };
            if let Step::End(end) = self.after_exit(handled, None, start)? {
                return Ok(Step::End(end));
            }
        }
        if reason == PauseReason::Debug {
            control.clear_pause();
            return self.debug_stop(Stop::Interrupted);
        }
        if let Some(seat) = self.seat.as_ref().filter(|s| s.index > 0) {
            seat.crew.park(seat.index, self.vcpu);
            control.clear_pause();
            return Ok(Step::Continue);
        }
        let Some(link) = self.link.as_mut() else { return Ok(Step::Continue) };
        if reason == PauseReason::Snapshot {
            link.snapshot_after = None; // taken: once per run
        }
        let mut vcpus = vec![kvmstate::save_vcpu(self.vcpu, 0, &link.caps).map_err(VmError::State)?];
        let mut resumes = Vec::new();
        if let Some(seat) = &self.seat {
            let Some(gathered) = seat.crew.gather(reason)? else {
                control.clear_pause(); // an AP ended the run: no pause
                return Ok(Step::Continue);
            };
            vcpus.extend(gathered.states);
            resumes = gathered.resumes;
        }
        let devices = save_devices(&mut self.buses.lock());
        let (reply, verdict) = mpsc::channel();
        let paused = Paused { reason, vcpus, devices, exits: self.exits, at, reply };
        // A controller that has gone away cannot answer: carry on.
        let verdict = match link.events.send(paused) {
            Ok(()) => verdict.recv().unwrap_or(Verdict::Resume),
            Err(_) => Verdict::Resume,
        };
        if let (Some(seat), false) = (&self.seat, matches!(verdict, Verdict::Resume)) {
            seat.crew.end(seat.index); // before the APs go on: they stop instead
        }
        drop(resumes);
        control.clear_pause();
        match verdict {
            Verdict::Resume => Ok(Step::Continue),
            Verdict::Stop(end) => Ok(Step::End(end)),
            Verdict::Fail(error) => Err(*error),
        }
    }

    /// The error of an injected fault (`--inject-fault`).
    fn injected(&mut self, fault: crate::ft::inject::ExitFault) -> VmError {
        match fault {
            crate::ft::inject::ExitFault::KillVcpu => VmError::VcpuKilled { exits: self.exits },
            crate::ft::inject::ExitFault::TripleFault => {
                let note = format!("injected by --inject-fault at exit {}: KVM reported no such exit", self.exits);
                VmError::Guest { error: VcpuError::Shutdown, diagnosis: self.diagnose(ExitKind::Shutdown, Some(note)) }
            }
        }
    }

    fn diagnose(&mut self, kind: ExitKind, note: Option<String>) -> Box<Diagnosis> {
        let mut diagnosis = diagnose(self.vcpu, self.mem, kind, note);
        diagnosis.vcpu = self.seat.as_ref().map(|s| s.index);
        diagnosis
    }

    /// What KVM put in `kvm_run.internal` for an internal-error exit.
    fn internal_error_note(&mut self) -> Option<String> {
        let run = self.vcpu.get_kvm_run();
        if run.exit_reason != KVM_EXIT_INTERNAL_ERROR {
            return None;
        }
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so the kernel filled
        // the `internal` member of the union.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let meaning = match internal.suberror {
            1 => "emulation failure: KVM's instruction emulator could not emulate the instruction at RIP (on a nested, software-assisted KVM such as kvm_pvm this includes int n, int3, 32-bit iret and xgetbv; on hardware KVM, usually an MMIO access with an unusual instruction)",
            2 => "a second exception arrived while KVM was delivering one (simultaneous exceptions)",
            3 => "an exception or interrupt could not be delivered (bad IDT or stack)",
            4 => "the hardware reported an exit reason KVM does not know",
            _ => "unknown suberror",
        };
        let n = (internal.ndata as usize).min(internal.data.len());
        let data: Vec<String> = internal.data[..n].iter().map(|d| format!("{d:#x}")).collect();
        Some(format!("suberror {}: {meaning}; data [{}]", internal.suberror, data.join(", ")))
    }

    /// Bytes per element of the last port-I/O exit (KVM's `io.size`).
    fn io_size(&mut self) -> Option<u8> {
        let run = self.vcpu.get_kvm_run();
        if run.exit_reason != KVM_EXIT_IO {
            return None;
        }
        // SAFETY: the `io` member of the union is valid when exit_reason is KVM_EXIT_IO.
        Some(unsafe { run.__bindgen_anon_1.io.size })
    }

    fn trace_exit(&mut self, elapsed: Duration, handled: &Result<Handled, VcpuError>) {
        let kind = handled.as_ref().map_or_else(VcpuError::kind, |h| h.kind);
        let access = handled.as_ref().ok().and_then(|h| h.access);
        let io_size = self.io_size();
        let regs = self.vcpu.get_regs().unwrap_or_default();
        let sregs = self.vcpu.get_sregs().unwrap_or_default();
        let view = CpuView::new(&regs, &sregs);
        let size = match (io_size, access) {
            (Some(s), _) => Some(usize::from(s)),
            (None, Some(a)) => Some(a.len),
            (None, None) => None,
        };
        let instruction = trace::trapping_instruction(self.mem, &view, kind, size);
        let seq = self.exits;
        let line = TraceLine { seq, elapsed, kind, rip: regs.rip, instruction: instruction.as_ref(), access, io_size };
        // The trace is best effort: a closed stderr must not stop the guest.
        if let Some(out) = self.trace.as_deref_mut() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// Registers, mode and instruction of `vcpu` now.
pub(crate) fn diagnose(vcpu: &VcpuFd, mem: &GuestMemoryMmap, kind: ExitKind, note: Option<String>) -> Box<Diagnosis> {
    let regs = vcpu.get_regs().unwrap_or_default();
    let sregs = vcpu.get_sregs().unwrap_or_default();
    let view = CpuView::new(&regs, &sregs);
    let instruction = trace::trapping_instruction(mem, &view, kind, None);
    Box::new(Diagnosis { regs, sregs, mode: view.mode_name(), instruction, note, vcpu: None })
}

/// Every device's placement and state (the UART takes in arrived input).
pub(crate) fn save_devices(buses: &mut Buses) -> Vec<DeviceRecord> {
    let mut out = Vec::new();
    for (kind, bus) in [(BusKind::Pio, &mut buses.pio), (BusKind::Mmio, &mut buses.mmio)] {
        for (base, len, name, device) in bus.devices_mut() {
            let placement = Placement { bus: kind, base, len, name: name.to_string() };
            out.push(DeviceRecord { placement, state: device.save() });
        }
    }
    out
}
